/*
 * segment.h — log segment files. A segment is a file of at most `size` bytes (its capacity): a
 * 64-byte header, then records back to back, then zeros. The file is zero-filled ahead of the
 * writer (zero.c) and grows in steps; `filled` is how much of it exists. Every segment has a position map (pmap):
 * pmap[i] is the byte offset of the record at position first_pos + i. The active segment's
 * pmap lives in memory; a sealed segment's is written to a .pmap file, which is derived state
 * (checked by checksum, rebuilt by a scan when missing or bad).
 *
 * Ownership: the writer thread owns the active segment's tail (end, count, pmap growth);
 * readers only touch positions below the durable position, whose pmap entries and bytes were
 * written before that position was published.
 */
#ifndef FACTUM_SEGMENT_H
#define FACTUM_SEGMENT_H

#include "../base/base.h"
#include "../io/io.h"
#include "record.h"

#include <limits.h>
#include <stdatomic.h>

#define SEGMENT_MAGIC 0x47455346u /* "FSEG" */
#define SEGMENT_VERSION 1
#define SEGMENT_HEADER 64
#define SEGMENT_MAX_POSITIONS ((1ull << 32) / RECORD_MIN) /* events one segment of at most 4 GiB can hold */
#define PMAP_MAGIC 0x504D5046u                            /* "FPMP" */
#define PMAP_HEADER 64

typedef struct segment {
    uint32_t no;
    int fd;
    uint8_t *map;            /* PROT_READ, MAP_SHARED, the whole file */
    uint64_t size;           /* capacity, from the header; the mapping covers all of it */
    _Atomic uint64_t filled; /* bytes of the file that exist (zero-filled or written) */
    uint64_t first_pos;
    uint64_t count;      /* positions: records, and in a compacted segment the removed ones too */
    uint64_t end;        /* offset just past the last record */
    uint32_t generation; /* 0 as written; +1 each time a scavenge rewrites it */
    uint64_t end_pos;    /* compacted segments: the position after its last (header); 0 otherwise */
    uint32_t *pmap;
    size_t pmap_cap;   /* entries the pmap can hold */
    size_t pmap_bytes; /* length of its mapping */
    bool pmap_is_file; /* mapped from the .pmap file (sealed, read-only) */
    bool archived;     /* the file is in the archive folder (archive.c); path says where */
    int unavailable;   /* archived, and its file cannot be read now: the errno (map is NULL) */
    char path[PATH_MAX];
} segment_t;

/* The 64-byte segment header (docs/format.md): generation and end_pos are 0 unless compacted. */
void segment_header_encode(uint8_t h[SEGMENT_HEADER], uint32_t no, uint64_t size, uint64_t first_pos,
                           uint32_t generation, uint64_t end_pos);
/* Makes DIR/log/NNNNNNNN.seg.tmp holding `fill` durable zeros; *fd is its descriptor. The zeroer
   prepares the next segment this way before the writer needs it. */
int segment_prepare(const char *logdir, uint32_t no, uint64_t fill, io_vfs *vfs, int *fd, factum_error_t *err);
/* Turns a prepared NNNNNNNN.seg.tmp (fd, `fill` bytes) into segment `no` of capacity `size`:
   header written and synced, renamed, folder synced, mapped. Takes fd in every case. */
int segment_install(const char *logdir, uint32_t no, uint64_t size, uint64_t first_pos, int fd, uint64_t fill,
                    io_vfs *vfs, segment_t **out, factum_error_t *err);
/* segment_prepare with `fill` bytes, then segment_install. */
int segment_create(const char *logdir, uint32_t no, uint64_t size, uint64_t first_pos, uint64_t fill, io_vfs *vfs,
                   segment_t **out, factum_error_t *err);
/* How many bytes of s may be read: the file's length, never past its capacity. */
static inline uint64_t segment_limit(const segment_t *s) {
    uint64_t f = atomic_load_explicit(&s->filled, memory_order_acquire);
    return f < s->size ? f : s->size;
}
/* Opens and maps an existing segment; checks the header. count/end/pmap are not set yet. */
int segment_open(const char *logdir, uint32_t no, segment_t **out, factum_error_t *err);
/* The same for a sealed segment in the archive folder `dir`: opened read-only, marked archived. */
int segment_open_archived(const char *dir, uint32_t no, segment_t **out, factum_error_t *err);
void segment_close(segment_t *s);
/* The first position segment `no` holds, from its header (checked). */
int segment_peek_first(const char *logdir, uint32_t no, uint64_t *first_pos, factum_error_t *err);

/* Loads the .pmap of a sealed segment. 0, or nonzero if it is missing or does not match. */
int segment_load_pmap(segment_t *s, const char *logdir);
/* Writes the .pmap for a sealed segment (no fsync: it is derived and checksummed). */
int segment_write_pmap(segment_t *s, const char *logdir);
/* Gives the segment an in-memory pmap large enough for any number of records it can hold. */
int segment_alloc_pmap(segment_t *s);

/* Result of reading a segment from its start. */
typedef struct segment_scan {
    uint64_t count;   /* records in complete batches */
    uint64_t end;     /* offset just past the last complete batch */
    uint64_t stop_at; /* where scanning stopped (first byte not part of a valid record) */
    bool clean;       /* stopped at zeros right after a complete batch */
} segment_scan_t;

/* Walks records from the header on, filling the in-memory pmap. Never fails on bad data. */
void segment_scan(segment_t *s, segment_scan_t *r);

/*
 * For a sealed segment (not compacted) whose scan stopped at damage: finds its way around it.
 * From each bad record it looks ahead, 8 bytes at a time, for the next record that decodes with
 * a later position, and points every position in between at the bad offset (a read of one of
 * them then fails its checksum there, naming it). Damage reaching the end of the records takes
 * the count from end_pos, the position the next segment starts at. Returns how many positions
 * are damaged (0: none after all), with the first in *first_bad and its offset in *bad_off.
 */
uint64_t segment_scan_around(segment_t *s, uint64_t end_pos, uint64_t *first_bad, uint64_t *bad_off);

/*
 * For the tail segment after a scan: decides torn tail versus corruption. If the commit mark
 * says positions below `acked` were acknowledged and the scan kept fewer, the damage is to
 * acknowledged events: FACTUM_ECORRUPT naming the file, offset and position. Otherwise it looks
 * at most `window` bytes past r->stop_at for a valid record of a later commit group; if one is
 * there, the same. Otherwise it zeroes any bytes past r->end (the torn tail, never
 * acknowledged), syncs, and sets s->end/s->count.
 */
int segment_repair_tail(segment_t *s, const segment_scan_t *r, uint64_t window, uint64_t acked, io_vfs *vfs,
                        factum_error_t *err);

/*
 * The rule recovery and factum check share (docs/format.md, "Recovery"): after a tail scan kept
 * the events below position `kept`, ending at offset kept_end, and stopped at stop_at, the
 * offset of the first intact record in [stop_at, limit) of a later commit group than the one the
 * damage is in (its event in *found), or 0 if there is none: then what follows kept_end is a torn
 * write, and *dirty_end (if not NULL) is where its bytes end. map holds fill readable bytes.
 */
uint64_t segment_later_group(const uint8_t *map, uint64_t fill, uint64_t kept_end, uint64_t stop_at, uint64_t limit,
                             uint64_t kept, factum_event_t *found, uint64_t *dirty_end);

/*
 * Writes a compacted copy of a sealed segment as NNNNNNNN.seg.scav: the same header with the
 * next generation and end_pos, then the records for which keep[i] is set (i = position -
 * first_pos), byte for byte. Fills pmap (count entries; 0 = removed) and *size. Synced before
 * it returns; the caller renames it over the segment. io_bytes limits dirty data between syncs.
 */
int segment_write_compacted(const segment_t *s, const char *logdir, const uint8_t *keep, uint32_t *pmap, uint64_t *size,
                            factum_error_t *err);
/* Renames NNNNNNNN.seg.scav over NNNNNNNN.seg and syncs the folder. */
int segment_install_compacted(const char *logdir, uint32_t no, factum_error_t *err);

/* Offset of the last record of a sealed segment (0 if a scavenge left none). */
static inline uint64_t segment_last_record(const segment_t *s) {
    for (uint64_t k = s->count; k > 0; k--)
        if (s->pmap[k - 1]) return s->pmap[k - 1];
    return 0;
}

/* Offset of the record at `pos` (which must be in this segment); 0 if a scavenge removed it. */
static inline uint32_t segment_offset(const segment_t *s, uint64_t pos) { return s->pmap[pos - s->first_pos]; }

#endif
