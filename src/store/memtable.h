/*
 * memtable.h — the index's in-memory table, private to the store: open addressing from a key
 * to its entries sorted by (seq, pos), and the names of the streams first written in it. The
 * writer adds to the active one under the index's write lock; a frozen one is only read.
 */
#ifndef FACTUM_MEMTABLE_H
#define FACTUM_MEMTABLE_H

#include "run.h"

#include <pthread.h>

typedef struct mslot {
    uint64_t key; /* 0 = empty */
    uint32_t n, cap;
    union {
        idx_hit one;
        idx_hit *many;
    };
} mslot;

/* A stream name the memtable holds: its bytes are at `off` in the memtable's name bytes. */
typedef struct mname {
    uint64_t pos;
    uint32_t off;
    uint16_t len;
} mname;

typedef struct memtable {
    mslot *slots;
    size_t mask, keys, entries;
    uint64_t pos_hi; /* once frozen: entries with pos < pos_hi are the memtable's content */
    mname *names;    /* streams first written here, in the order they came */
    size_t nnames, names_cap;
    buf_t name_bytes;
    pthread_mutex_t sort_mu; /* readers keep a sorted view of names[0 .. nsorted) */
    uint32_t *sorted;
    size_t nsorted;
} memtable;

static inline idx_hit *slot_hits(mslot *s) { return s->n > 1 ? s->many : &s->one; }

static inline factum_str_t mem_name(const memtable *m, size_t i) {
    return (factum_str_t){m->name_bytes.ptr + m->names[i].off, m->names[i].len};
}

/* An empty memtable, or NULL when out of memory. */
memtable *mem_new(void);
void mem_free(memtable *m);
/* key's slot, or NULL. */
mslot *mem_find(const memtable *m, uint64_t key);
/* Adds one entry (kept in (seq, pos) order within its key). 0 or FACTUM_ENOMEM. */
int mem_add(memtable *m, uint64_t key, idx_hit h);
/* Adds a stream name first written at pos. 0 or FACTUM_ENOMEM. */
int mem_add_name(memtable *m, factum_str_t name, uint64_t pos);
/* Up to max of key's hits from `from` (forward, or backward before it) with pos < pos_limit,
   into out; how many. */
size_t mem_range(const memtable *m, uint64_t key, idx_hit from, bool backward, size_t max, uint64_t pos_limit,
                 idx_hit *out);

#endif
