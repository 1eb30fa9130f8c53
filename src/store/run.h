/*
 * run.h — the index's run files, private to the store: a run is a sorted array of (key, seq,
 * pos) entries in one file, with a blocked bloom filter, fences (every FENCE_EVERY-th key) and
 * the names of the streams first written in its positions. run.c loads, searches and writes
 * them; index.c decides when to write and merge them. The layout is in docs/format.md.
 */
#ifndef FACTUM_RUN_H
#define FACTUM_RUN_H

#include "../io/io.h"
#include "index.h"

#include <assert.h>
#include <limits.h>

#define RUN_MAGIC 0x58444946u /* "FIDX" */
#define RUN_HEADER 64
#define RUN_VERSION                                                                                                    \
    6 /* 2: fences in the file; 3: keys carry their index tag; 4: blocked bloom; 5: stream names; 6: tags */
#define NAME_HEAD 10 /* a stored name: its first position (8 bytes), its length (2), its bytes */
#define RUN_ENTRY 24
#define FENCE_EVERY 64
#define BLOOM_BITS_PER_KEY 10
#define BLOOM_K 7

static_assert(RUN_ENTRY == 3 * sizeof(uint64_t), "an entry is key, seq and pos");
static_assert(FACTUM_MAX_STREAM_NAME <= UINT16_MAX, "a stored name's length is 16 bits");

static inline int hit_cmp(idx_hit a, idx_hit b) {
    return a.seq != b.seq ? (a.seq < b.seq ? -1 : 1) : a.pos != b.pos ? (a.pos < b.pos ? -1 : 1) : 0;
}

typedef struct run {
    uint32_t id, level;
    uint64_t count, pos_lo, pos_hi;
    uint8_t *map;
    size_t map_len;
    const uint8_t *entries;
    const uint8_t *bloom;
    uint64_t bloom_bits;
    const uint64_t *fences; /* key of every FENCE_EVERY-th entry, stored in the file */
    size_t nfences;
    uint64_t nnames;          /* streams first written in [pos_lo, pos_hi), in name order */
    const uint8_t *name_offs; /* nnames offsets (8 bytes each) into name_bytes */
    const uint8_t *name_bytes;
    uint64_t name_bytes_len;
} run;

static inline uint64_t run_key(const run *r, size_t i) { return load64(r->entries + i * RUN_ENTRY); }
static inline idx_hit run_hit(const run *r, size_t i) {
    const uint8_t *e = r->entries + i * RUN_ENTRY;
    return (idx_hit){load64(e + 8), load64(e + 16)};
}

static inline factum_str_t run_name(const run *r, size_t i, uint64_t *pos) {
    const uint8_t *e = r->name_bytes + load64(r->name_offs + i * 8);
    if (pos) *pos = load64(e);
    return (factum_str_t){(const char *)e + NAME_HEAD, load16(e + 8)};
}

/* First name >= x, or with strict, > x. */
size_t run_name_bound(const run *r, factum_str_t x, bool strict);
/* Whether the bloom filter lets key be in r (false: it is not). */
bool run_may_have(const run *r, uint64_t key);
/* First entry >= (key, x), or with strict, > (key, x). */
size_t run_bound(const run *r, uint64_t key, idx_hit x, bool strict);
/* Up to max of key's hits from `from` (forward, or backward before it) with pos < pos_limit,
   into out; how many. */
size_t run_range(const run *r, uint64_t key, idx_hit from, bool backward, size_t max, uint64_t pos_limit, idx_hit *out);
/* Maps DIR/run-ID.idx and checks it (header, checksums, every name inside the file): the run,
   or NULL when it is missing or does not check out. fresh: the run was just written by this
   process (rw_end), so the body's checksum, computed as it was written, is not computed again
   over the same bytes in the page cache; the header and its sizes are still checked. */
run *run_load(const char *dir, uint32_t id, bool fresh);
void run_free(run *r);
/* DIR/run-ID.idx into out (PATH_MAX bytes). */
void run_path(char *out, const char *dir, uint32_t id);

/* Streams sorted entries into a new run file; the caller gives the exact count up front. */
typedef struct run_writer {
    uint64_t *fences;
    int fd;
    char tmp[PATH_MAX];
    uint8_t *bloom;
    uint64_t bloom_bits, count, written, last_key;
    uint32_t crc;
    uint8_t buf[RUN_ENTRY * 2048];
    size_t blen;
    int err;
    buf_t name_offs, name_bytes; /* the names section, kept in memory until rw_end */
    uint64_t nnames;
    io_behind behind; /* written back as it goes (io_write_behind) */
} run_writer;

/* Starts DIR/run-ID.tmp for exactly count entries. 0 or -1. */
int rw_begin(run_writer *w, const char *dir, uint32_t id, uint64_t count);
/* Adds the next entry; entries come in (key, seq, pos) order. */
void rw_put(run_writer *w, uint64_t key, idx_hit h);
/* Adds a stream name; names come in name order, after or between the entries. */
void rw_put_name(run_writer *w, factum_str_t name, uint64_t pos);
/* Gives up a run being written: no file is left. */
void rw_abort(run_writer *w);
/* Finishes the file: bloom, header, fsync, rename to its final name. 0 or -1. */
int rw_end(run_writer *w, const char *dir, uint32_t id, uint32_t level, uint64_t pos_lo, uint64_t pos_hi);

#endif
