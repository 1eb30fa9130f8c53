/*
 * integrity.h — damage met by reads (integrity.c): the record a read decodes, under a guard that
 * turns a SIGBUS from the segment mapping into an error, and the store's memory of every damaged
 * position it has met, for /health, /metrics and factum_integrity().
 *
 * The state lives inside factum_t and is valid all zero (calloc), so opening needs no step for
 * it; it is guarded by a spin lock, taken only when damage is met or asked about.
 */
#ifndef FACTUM_INTEGRITY_H
#define FACTUM_INTEGRITY_H

#include "../base/base.h"
#include "segment.h"

#include <stdatomic.h>

typedef struct store_integrity {
    atomic_int lock;                       /* 0 free, 1 held */
    uint64_t count;                        /* distinct damaged positions, at most FACTUM_INTEGRITY_COUNT */
    bool more;                             /* more than that were met */
    uint64_t seen[FACTUM_INTEGRITY_COUNT]; /* the positions counted, sorted */
    size_t nkept;
    factum_damage_t kept[FACTUM_INTEGRITY_KEEP]; /* the first met, in order */
    factum_damage_t last;                        /* the latest newly met */
} store_integrity;

enum {
    STORE_READ_OK = 0,
    STORE_READ_GONE = 1,  /* a scavenge removed the event */
    STORE_READ_BAD = 2,   /* fails its checksum, or is not the record of that position */
    STORE_READ_FAULT = 3, /* the mapping could not be read (SIGBUS: a media error, a shortened file) */
};

/*
 * Decodes the record of `pos` from segment s (pos must be in s) into e, under the SIGBUS guard.
 * *off is the record's offset (0 if the fault came before it was known). STORE_READ_*.
 */
int store_record_read(const segment_t *s, uint64_t pos, factum_event_t *e, uint32_t *off);

/*
 * Remembers that the event at `pos` (record at `off` of segment s) cannot be read, and fills err
 * with a message that names the position, the offset and the file. Returns `code`
 * (FACTUM_ECORRUPT or FACTUM_EIO). Thread-safe.
 */
int store_damage(store_integrity *in, const segment_t *s, uint64_t pos, uint64_t off, int code, factum_error_t *err);

#endif
