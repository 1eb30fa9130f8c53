/*
 * index.h — the store's derived indexes, one LSM of 24-byte entries (key, seq, pos):
 *
 *   stream      key = index_key_stream(stream)        seq = revision   pos = position
 *   event id    key = index_key_id(stream, id)        seq = position   pos = position
 *   correlation key = index_key_corr(correlationid)   seq = position   pos = position
 *   tag         key = index_key_tag(prefix, tag)      seq = position   pos = position
 *
 * Keys are a 2-bit index tag and a 62-bit hash, so two names of one index can share a key:
 * callers check each hit against the record it points to. Appends go to an in-memory memtable (no random page writes);
 * a full memtable is frozen and a background thread writes it as a sorted run file, then merges runs of equal level
 * four at a time. A MANIFEST names the runs; they cover positions [0, covered). Everything here can be rebuilt from the
 * log, and is when it is missing or damaged.
 *
 * Threads: the writer thread calls index_add under index_write_lock; any thread may call
 * index_range. Lookups see memtables and runs consistently through one rwlock.
 */
#ifndef FACTUM_INDEX_H
#define FACTUM_INDEX_H

#include "../base/base.h"

typedef struct idx_hit {
    uint64_t seq, pos;
} idx_hit;

typedef struct index index_t;

uint64_t index_key_stream(factum_str_t stream);
/* For tests only: keys keep this many bits of hash (default 62), so that names collide. */
extern unsigned index_key_bits;
uint64_t index_key_id(factum_str_t stream, factum_str_t id);
/* The same in two steps, for many ids of one stream: the stream's part once. */
uint64_t index_id_seed(factum_str_t stream);
uint64_t index_key_id_seeded(uint64_t seed, factum_str_t id);
uint64_t index_key_corr(factum_str_t corr);
/* A tag's key (tags.c): the tag is prefix then rest ("stream:" and "type:" are the implicit
   tags' prefixes, "" an explicit tag's). Never 0 (an empty memtable slot). */
uint64_t index_key_tag(factum_str_t prefix, factum_str_t rest);

/*
 * Opens DIR (creating it), loads the runs its MANIFEST names, starts the background thread.
 * A missing or damaged manifest or run empties the folder and starts from nothing; the caller
 * learns what is covered from index_covered() and replays the log from there.
 */
int index_open(const char *dir, uint32_t memtable_max, index_t **out, factum_error_t *err);
/* Positions [0, covered) are in run files. */
uint64_t index_covered(const index_t *ix);
/* Stops the thread. With flush_below > covered, first writes memtable entries below it as runs. */
void index_close(index_t *ix, uint64_t flush_below);

void index_write_lock(index_t *ix);
void index_write_unlock(index_t *ix);
/* Adds one entry to the active memtable; the write lock must be held. 0 or FACTUM_ENOMEM. */
int index_add(index_t *ix, uint64_t key, uint64_t seq, uint64_t pos);
/* Starts loading the memtable slot where key's entry goes (the write lock held): the table is
   larger than the caches, so a writer adding many entries asks for them before it adds them. */
void index_prefetch(index_t *ix, uint64_t key);
/*
 * Called by the writer between commit groups with the durable position: freezes the active
 * memtable if it is full, so the background thread can write it out.
 */
void index_maybe_rotate(index_t *ix, uint64_t durable);

/*
 * Stream names: each stream's name is kept once, with the position of its first event (the
 * writer adds it for revision 0; a rebuild, for the first event the log still holds). Runs hold
 * them in name order beside their entries. The write lock must be held. 0 or FACTUM_ENOMEM.
 */
int index_add_name(index_t *ix, factum_str_t name, uint64_t pos);
/* How many stream names the index holds: each stream once (it is added with its first event),
   so the count of streams ever written, deleted and system ones included. A sum, no walk. */
uint64_t index_name_count(index_t *ix);

/* Names compare as bytes; a prefix sorts before what extends it. */
static inline int name_cmp(factum_str_t a, factum_str_t b) {
    int c = a.len && b.len ? memcmp(a.ptr, b.ptr, MIN(a.len, b.len)) : 0;
    return c ? c : (a.len > b.len) - (a.len < b.len);
}

static inline bool name_has_prefix(factum_str_t a, factum_str_t prefix) {
    return a.len >= prefix.len && (!prefix.len || memcmp(a.ptr, prefix.ptr, prefix.len) == 0);
}
typedef struct index_name {
    factum_str_t name;
    uint64_t pos;
} index_name;
/*
 * Up to max names, in byte order, that start with `prefix`, come after `after` (from the first,
 * if `after` is empty) and were first written below pos_limit. The names are copied into
 * *bytes; out[i].name points there. Returns how many; 0 also when memory ran out.
 */
size_t index_names(index_t *ix, factum_str_t prefix, factum_str_t after, uint64_t pos_limit, size_t max, buf_t *bytes,
                   index_name *out);

/*
 * Where a paged walk continues after hit h: just past it in the direction of travel. False
 * when nothing can lie beyond it (a backward walk that reached (0, 0)).
 */
static inline bool index_after(idx_hit h, bool backward, idx_hit *next) {
    if (!backward)
        *next = (idx_hit){h.seq, h.pos + 1};
    else if (h.pos)
        *next = (idx_hit){h.seq, h.pos - 1};
    else if (h.seq)
        *next = (idx_hit){h.seq - 1, UINT64_MAX};
    else
        return false;
    return true;
}

/*
 * Up to `max` entries of `key` with pos < pos_limit, ordered by (seq, pos): ascending from
 * `from` inclusive, or with `backward` descending from `from` inclusive.
 */
size_t index_range(index_t *ix, uint64_t key, idx_hit from, bool backward, size_t max, uint64_t pos_limit,
                   idx_hit *out);

/*
 * For factum check: reads the runs DIR/MANIFEST names with the checks index_open makes, but
 * changes nothing (no folder made, no file deleted, no thread). Calls fn for every entry of
 * every run, in manifest order, then in the run's order, and name_fn for its stream names; `found` is false when a
 * lookup could not reach the entry (its bloom filter or fence disagrees). fn's nonzero return stops the walk and is
 * returned. 0 with *covered set; FACTUM_ENOTFOUND if there is no MANIFEST; FACTUM_ECORRUPT (err names the file) if it
 * or a run it names does not check out, which is what index_open throws away; FACTUM_EIO, FACTUM_ENOMEM.
 */
typedef struct index_run_info {
    uint32_t id, level;
    uint64_t count, pos_lo, pos_hi;
} index_run_info_t;
typedef int (*index_entry_fn)(void *ctx, const index_run_info_t *run, uint64_t i, uint64_t key, idx_hit h, bool found);
/* After a run's entries, its stream names in the run's order (name lives during the call). */
typedef int (*index_name_fn)(void *ctx, const index_run_info_t *run, uint64_t i, factum_str_t name, uint64_t pos);
int index_walk_runs(const char *dir, uint64_t *covered, index_entry_fn fn, index_name_fn name_fn, void *ctx,
                    factum_error_t *err);

/* Writes DIR/MANIFEST naming these runs (atomically, synced). 0 or -1. */
int index_manifest_write(const char *dir, const index_run_info_t *runs, size_t n);
/* The runs as they stand, oldest first, each with a read-only descriptor of its file (the
   caller closes them): files that stay readable whatever merges do next. Returns how many
   (at most cap, INDEX_MAX_RUNS is enough); *covered is the position they cover up to. */
#define INDEX_MAX_RUNS 64
size_t index_snapshot(index_t *ix, index_run_info_t *info, int *fds, size_t cap, uint64_t *covered);

/* Figures for tests and benchmarks. */
typedef struct index_stats {
    size_t runs, memtables;
    uint64_t run_entries, mem_entries;
    uint64_t flushes, merges;
} index_stats_t;
void index_stats(index_t *ix, index_stats_t *st);
/* Waits until no frozen memtable is waiting to be written (tests). */
void index_quiesce(index_t *ix);

#endif
