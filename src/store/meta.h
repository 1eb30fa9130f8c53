/*
 * meta.h — stream metadata: retention (max_age_s, max_count), truncate_before, soft deletion,
 * tombstones and the user's own keys. Each change is a record in the system stream
 * "$metadata" holding the stream's whole new metadata; this table is what those records say,
 * rebuilt at open by reading that stream.
 *
 * The writer thread is the only one that changes the table (after the record is durable, before
 * the position is published), so a reader that sees the record sees its effect and nobody sees
 * the effect of a record that is not on disk. Readers look rules up per stream under a read
 * lock and copy them out. Entries are never freed while the store is open, so a pointer the
 * writer holds stays good.
 */
#ifndef FACTUM_META_H
#define FACTUM_META_H

#include "../base/base.h"

#include <pthread.h>
#include <stdatomic.h>

#define META_STREAM "$metadata"

/* What a read needs to know about a stream to hide events. */
typedef struct meta_rules {
    uint64_t tb;        /* events below this revision are hidden */
    uint64_t max_count; /* 0: no limit */
    uint64_t max_age_s; /* 0: no limit */
    int64_t last;       /* the stream's last revision as the writer last published it */
    bool deleted;       /* soft-deleted: reads as not found while last < tb */
    bool tombstone;     /* deleted forever */
} meta_rules;

typedef struct meta_entry {
    uint64_t h1, h2; /* streams_hash of the name */
    meta_rules r;
    uint64_t pos; /* position of the $metadata record that set it */
    char *doc;    /* that record's data: the metadata document, JSON */
    size_t doc_len;
} meta_entry;

typedef struct meta_map {
    pthread_rwlock_t lock;
    meta_entry **slots; /* open addressing on h1 */
    size_t mask, n;
    _Atomic size_t count; /* readers skip the lock entirely while this is 0 */
} meta_map;

void meta_init(meta_map *m);
void meta_free(meta_map *m);

/* Without the lock: for the writer thread, which is the only one that changes the map. */
meta_entry *meta_find(meta_map *m, uint64_t h1, uint64_t h2);
/* Copies the stream's rules out under the read lock; false if it has none. */
bool meta_rules_get(meta_map *m, uint64_t h1, uint64_t h2, meta_rules *out);

/* The first revision a read may return (tombstones aside): truncate_before and max_count. */
static inline uint64_t meta_floor(const meta_rules *r) {
    uint64_t f = r->tb;
    if (r->max_count && r->last >= 0 && (uint64_t)r->last + 1 > r->max_count)
        f = MAX(f, (uint64_t)r->last + 1 - r->max_count);
    return f;
}
/* True if an event of the stream at this revision and commit time is hidden at time `now_us`. */
static inline bool meta_hides(const meta_rules *r, uint64_t revision, int64_t time_us, int64_t now_us) {
    if (r->tombstone || revision < meta_floor(r)) return true;
    return r->max_age_s && time_us < now_us - (int64_t)MIN(r->max_age_s, (uint64_t)INT64_MAX / 2000000) * 1000000;
}
/* True while a soft-deleted stream has had nothing appended since its deletion. */
static inline bool meta_reads_deleted(const meta_rules *r) {
    return r->tombstone || (r->deleted && r->last < (int64_t)r->tb);
}

/* The parsed content of a $metadata record. */
typedef struct meta_doc {
    factum_str_t stream; /* borrowed from the record */
    meta_rules r;        /* r.last is not part of the document */
    factum_str_t custom; /* raw JSON object, or empty */
} meta_doc;

/* Parses the data of a $metadata record. 0, or -1 if it is not one this build wrote. */
int meta_doc_parse(factum_str_t data, meta_doc *out, buf_t *name);
/* Writes the document for a stream: what meta_doc_parse reads back. */
int meta_doc_write(buf_t *b, factum_str_t stream, const meta_rules *r, factum_str_t custom);

/* Applies a document (writer thread, or open): replaces the stream's entry. 0 or FACTUM_ENOMEM. */
int meta_apply(meta_map *m, uint64_t h1, uint64_t h2, const meta_rules *r, uint64_t pos, factum_str_t doc);
/* Records a stream's newly published last revision, if it has an entry (writer thread). */
void meta_note_last(meta_map *m, meta_entry *e, int64_t last);

#endif
