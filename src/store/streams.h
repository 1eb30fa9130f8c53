/*
 * streams.h — the writer's memory of each stream's last revision, for expected-revision checks
 * without an index lookup. Bounded: two generations of at most `cap` streams each; when the
 * young one fills, the old one is dropped and the young one becomes old (an LRU
 * approximation). A miss costs an index lookup, never a wrong answer. A stream is identified
 * by two independent 64-bit hashes of its name (128 bits). Owned by the writer thread alone.
 */
#ifndef FACTUM_STREAMS_H
#define FACTUM_STREAMS_H

#include "../base/base.h"

typedef struct stream_slot {
    uint64_t h1, h2;
    int64_t last; /* last revision; -1 never happens here (absent streams are not cached) */
} stream_slot;

typedef struct stream_gen {
    stream_slot *slots;
    size_t mask, count;
} stream_gen;

typedef struct stream_cache {
    stream_gen young, old;
    size_t cap;
} stream_cache;

void streams_init(stream_cache *c, size_t cap);
void streams_free(stream_cache *c);
void streams_hash(factum_str_t name, uint64_t *h1, uint64_t *h2);
/* The cached last revision, or -1 if the stream is not cached. */
int64_t streams_get(stream_cache *c, uint64_t h1, uint64_t h2);
/* Records the last revision. Dropping entries when memory runs short is allowed. */
void streams_put(stream_cache *c, uint64_t h1, uint64_t h2, int64_t last);

#endif
