/*
 * run.c — the index's run files (run.h): loading and checking one, searching it through its
 * bloom filter and fences, and writing a new one from sorted entries and names.
 */
#include "run.h"

#include "../io/io.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* A blocked bloom filter: the key picks one 64-byte block, and all its probes fall in that
   block, so a lookup costs one cache miss per run instead of one per probe. */
#define BLOOM_BLOCK_BITS 512
static_assert(RUN_HEADER % 8 == 0 && BLOOM_BLOCK_BITS % 64 == 0,
              "the fences after the bloom filter stay 8-byte aligned");
static inline uint64_t bloom_mix(uint64_t key) { return (key ^ (key >> 31)) * 0x9E3779B97F4A7C15u; }
static inline const uint8_t *bloom_block(const uint8_t *bloom, uint64_t nbits, uint64_t key) {
    uint64_t nblocks = nbits / BLOOM_BLOCK_BITS;
    return bloom + (uint64_t)(((__uint128_t)bloom_mix(key) * nblocks) >> 64) * (BLOOM_BLOCK_BITS / 8);
}
/* The i-th probe's bit inside the block: 9 bits each from a second mix of the key. */
static inline unsigned bloom_probe(uint64_t h2, int i) { return (unsigned)(h2 >> (i * 9)) & (BLOOM_BLOCK_BITS - 1); }

/* First name >= x, or with strict, > x. */
size_t run_name_bound(const run *r, factum_str_t x, bool strict) {
    size_t lo = 0, hi = r->nnames;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = name_cmp(run_name(r, mid, NULL), x);
        if (c < 0 || (strict && c == 0))
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

bool run_may_have(const run *r, uint64_t key) {
    const uint8_t *b = bloom_block(r->bloom, r->bloom_bits, key);
    uint64_t h2 = bloom_mix(key ^ 0x5851F42D4C957F2Du);
    for (int i = 0; i < BLOOM_K; i++) {
        unsigned bit = bloom_probe(h2, i);
        if (!(b[bit >> 3] & (1u << (bit & 7)))) return false;
    }
    return true;
}

/* Compares entry i with (key, x). */
static inline int run_cmp(const run *r, size_t i, uint64_t key, idx_hit x) {
    uint64_t k = run_key(r, i);
    return k != key ? (k < key ? -1 : 1) : hit_cmp(run_hit(r, i), x);
}

/* First entry >= (key, x), or with strict, > (key, x). */
size_t run_bound(const run *r, uint64_t key, idx_hit x, bool strict) {
    /* Fences bound the search to the entries whose key can equal `key`: from the block before
       the first fence >= key, up to the first fence > key. */
    size_t flo = 0, fhi = r->nfences;
    while (flo < fhi) {
        size_t mid = (flo + fhi) / 2;
        if (r->fences[mid] < key)
            flo = mid + 1;
        else
            fhi = mid;
    }
    size_t fup = flo, fend = r->nfences;
    while (fup < fend) {
        size_t mid = (fup + fend) / 2;
        if (r->fences[mid] <= key)
            fup = mid + 1;
        else
            fend = mid;
    }
    size_t lo = flo ? (flo - 1) * FENCE_EVERY : 0, hi = MIN(r->count, fup * FENCE_EVERY);
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = run_cmp(r, mid, key, x);
        if (c < 0 || (strict && c == 0))
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

size_t run_range(const run *r, uint64_t key, idx_hit from, bool backward, size_t max, uint64_t pos_limit,
                 idx_hit *out) {
    if (!r->count || !run_may_have(r, key)) return 0;
    size_t n = 0;
    if (!backward) {
        for (size_t i = run_bound(r, key, from, false); i < r->count && n < max && run_key(r, i) == key; i++) {
            idx_hit h = run_hit(r, i);
            if (h.pos < pos_limit) out[n++] = h;
        }
    } else {
        for (size_t i = run_bound(r, key, from, true); i-- > 0 && n < max && run_key(r, i) == key;) {
            idx_hit h = run_hit(r, i);
            if (h.pos < pos_limit) out[n++] = h;
        }
    }
    return n;
}

void run_free(run *r) {
    if (!r) return;
    if (r->map) munmap(r->map, r->map_len);
    free(r);
}

void run_path(char *out, const char *dir, uint32_t id) { snprintf(out, PATH_MAX, "%s/run-%08x.idx", dir, id); }

run *run_load(const char *dir, uint32_t id, bool fresh) {
    char path[PATH_MAX];
    run_path(path, dir, id);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return NULL;
    struct stat st;
    run *r = calloc(1, sizeof *r);
    if (!r || fstat(fd, &st) || st.st_size < RUN_HEADER) goto fail;
    r->map_len = (size_t)st.st_size;
    r->map = mmap(NULL, r->map_len, PROT_READ, MAP_SHARED, fd, 0);
    if (r->map == MAP_FAILED) {
        r->map = NULL;
        goto fail;
    }
    const uint8_t *h = r->map;
    r->id = id;
    r->count = load64(h + 8);
    r->pos_lo = load64(h + 16);
    r->pos_hi = load64(h + 24);
    r->level = load32(h + 32);
    r->bloom_bits = load64(h + 40);
    r->nnames = load32(h + 36);
    r->name_bytes_len = load64(h + 52);
    r->nfences = (r->count + FENCE_EVERY - 1) / FENCE_EVERY;
    uint64_t bloom_bytes = r->bloom_bits / 8; /* whole 64-byte blocks, so the fences are aligned */
    uint64_t body = r->count * RUN_ENTRY + bloom_bytes + r->nfences * 8 + r->nnames * 8 + r->name_bytes_len;
    if (load32(h) != RUN_MAGIC || load32(h + 60) != crc32c(h, 60) || load32(h + 4) != RUN_VERSION ||
        r->count > r->map_len || r->nnames > r->map_len || r->name_bytes_len > r->map_len ||
        RUN_HEADER + body != r->map_len || !r->bloom_bits || r->bloom_bits % BLOOM_BLOCK_BITS ||
        (!fresh && load32(h + 48) != crc32c(h + RUN_HEADER, body)))
        goto fail;
    r->entries = h + RUN_HEADER;
    r->bloom = r->entries + r->count * RUN_ENTRY;
    r->fences = (const uint64_t *)(r->bloom + bloom_bytes);
    r->name_offs = (const uint8_t *)(r->fences + r->nfences);
    r->name_bytes = r->name_offs + r->nnames * 8;
    for (uint64_t i = 0; i < r->nnames; i++) { /* every name lies inside the file */
        uint64_t off = load64(r->name_offs + i * 8);
        if (off > r->name_bytes_len || r->name_bytes_len - off < NAME_HEAD ||
            r->name_bytes_len - off - NAME_HEAD < load16(r->name_bytes + off + 8))
            goto fail;
    }
    close(fd);
    return r;
fail:
    close(fd);
    run_free(r);
    return NULL;
}

static int rw_flush(run_writer *w) {
    w->crc = crc32c_extend(w->crc, w->buf, w->blen); /* the entries' checksum, a buffer at a time */
    if (w->blen && !w->err) {
        struct iovec iov = {w->buf, w->blen};
        w->err = io_write_all(io_vfs_default(), w->fd, &iov, 1, RUN_HEADER + w->written * RUN_ENTRY - w->blen);
        if (!w->err) io_write_behind(w->fd, RUN_HEADER + w->written * RUN_ENTRY, &w->behind);
    }
    w->blen = 0;
    return w->err;
}

int rw_begin(run_writer *w, const char *dir, uint32_t id, uint64_t count) {
    w->blen = 0, w->err = 0, w->written = 0, w->crc = 0; /* buf is filled as entries come */
    w->name_offs = (buf_t){0}, w->name_bytes = (buf_t){0}, w->nnames = 0;
    w->behind = (io_behind){RUN_HEADER, RUN_HEADER}; /* the header is written last */
    w->fences = malloc(MAX(1, (count + FENCE_EVERY - 1) / FENCE_EVERY) * sizeof *w->fences);
    snprintf(w->tmp, PATH_MAX, "%s/run-%08x.tmp", dir, id);
    w->count = count;
    w->bloom_bits = (MAX(1, count * BLOOM_BITS_PER_KEY) + BLOOM_BLOCK_BITS - 1) / BLOOM_BLOCK_BITS * BLOOM_BLOCK_BITS;
    w->bloom = calloc(w->bloom_bits / 8, 1);
    w->fd = open(w->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (!w->bloom || !w->fences || w->fd < 0) {
        free(w->bloom);
        free(w->fences);
        if (w->fd >= 0) close(w->fd);
        return -1;
    }
    return 0;
}

void rw_put(run_writer *w, uint64_t key, idx_hit h) {
    uint8_t *e = w->buf + w->blen;
    if (w->written % FENCE_EVERY == 0) w->fences[w->written / FENCE_EVERY] = key;
    store64(e, key), store64(e + 8, h.seq), store64(e + 16, h.pos);
    w->blen += RUN_ENTRY;
    /* Entries come in key order: a key already in the bloom (a stream's every event) adds no bits. */
    if (w->written++ && key == w->last_key) {
        if (w->blen == sizeof w->buf) rw_flush(w);
        return;
    }
    w->last_key = key;
    uint8_t *blk = (uint8_t *)bloom_block(w->bloom, w->bloom_bits, key);
    uint64_t h2 = bloom_mix(key ^ 0x5851F42D4C957F2Du);
    for (int i = 0; i < BLOOM_K; i++) {
        unsigned bit = bloom_probe(h2, i);
        blk[bit >> 3] |= (uint8_t)(1u << (bit & 7));
    }
    if (w->blen == sizeof w->buf) rw_flush(w);
}

/* Adds a stream name; names come in name order, after or between the entries. */
void rw_put_name(run_writer *w, factum_str_t name, uint64_t pos) {
    uint8_t off[8], head[NAME_HEAD];
    store64(off, w->name_bytes.len);
    store64(head, pos);
    store16(head + 8, (uint16_t)name.len);
    if (buf_append(&w->name_offs, off, 8) || buf_append(&w->name_bytes, head, NAME_HEAD) ||
        buf_append(&w->name_bytes, name.ptr, name.len))
        w->err = FACTUM_ENOMEM;
    w->nnames++;
}

static void rw_free(run_writer *w) {
    free(w->bloom);
    free(w->fences);
    buf_free(&w->name_offs);
    buf_free(&w->name_bytes);
}

/* Gives up a run being written: no file is left. */
void rw_abort(run_writer *w) {
    close(w->fd);
    unlink(w->tmp);
    rw_free(w);
}

/* Finishes the file: bloom, header, fsync, rename to its final name. 0 or -1. */
int rw_end(run_writer *w, const char *dir, uint32_t id, uint32_t level, uint64_t pos_lo, uint64_t pos_hi) {
    ENSURE(w->written == w->count);
    rw_flush(w);
    size_t bl = w->bloom_bits / 8, nf = (w->count + FENCE_EVERY - 1) / FENCE_EVERY;
    w->crc = crc32c_extend(w->crc, w->bloom, bl);
    w->crc = crc32c_extend(w->crc, w->fences, nf * 8);
    w->crc = crc32c_extend(w->crc, w->name_offs.ptr, w->name_offs.len);
    w->crc = crc32c_extend(w->crc, w->name_bytes.ptr, w->name_bytes.len);
    if (w->nnames > UINT32_MAX) w->err = FACTUM_ENOMEM;
    uint8_t h[RUN_HEADER] = {0};
    store32(h, RUN_MAGIC);
    store32(h + 4, RUN_VERSION);
    store64(h + 8, w->count);
    store64(h + 16, pos_lo);
    store64(h + 24, pos_hi);
    store32(h + 32, level);
    store32(h + 36, (uint32_t)w->nnames);
    store64(h + 40, w->bloom_bits);
    store32(h + 48, w->crc);
    store64(h + 52, w->name_bytes.len);
    store32(h + 60, crc32c(h, 60));
    struct iovec b[4] = {{w->bloom, bl},
                         {w->fences, nf * 8},
                         {w->name_offs.ptr, w->name_offs.len},
                         {w->name_bytes.ptr, w->name_bytes.len}},
                 hd = {h, sizeof h};
    char path[PATH_MAX];
    run_path(path, dir, id);
    int rc = w->err;
    /* The sections after the entries, a piece at a time, written back as they go too. */
    uint64_t off = RUN_HEADER + w->count * RUN_ENTRY;
    for (int i = 0; i < 4 && !rc; i++)
        for (size_t done = 0; done < b[i].iov_len && !rc;) {
            struct iovec piece = {(uint8_t *)b[i].iov_base + done, MIN(b[i].iov_len - done, IO_BEHIND_BYTES)};
            rc = io_write_all(io_vfs_default(), w->fd, &piece, 1, off);
            off += piece.iov_len, done += piece.iov_len;
            if (!rc) io_write_behind(w->fd, off, &w->behind);
        }
    if (!rc) rc = io_write_all(io_vfs_default(), w->fd, &hd, 1, 0);
    if (!rc && fdatasync(w->fd)) rc = -errno;
    close(w->fd);
    rw_free(w);
    if (!rc && rename(w->tmp, path)) rc = -errno;
    if (rc) unlink(w->tmp);
    return rc ? -1 : 0;
}
