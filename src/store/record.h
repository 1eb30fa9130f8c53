/*
 * record.h — one event as stored in a log segment. The layout is in docs/format.md; this file
 * is its only encoder and decoder. Callers encode in their own thread (record_size, then
 * record_encode); the writer thread stamps position, revision and time and computes the
 * checksum (record_seal). record_decode verifies everything before trusting a byte.
 */
#ifndef FACTUM_RECORD_H
#define FACTUM_RECORD_H

#include "../base/base.h"

#include <assert.h>

#define RECORD_MAGIC 0x31564546u /* "FEV1" */
#define RECORD_HEADER 64
#define RECORD_ALIGN 8
#define RECORD_MIN 72 /* header + 1-byte stream, id and type, padded */

enum {
    RECORD_BATCH_END = 1u << 0, /* last event of its append: a batch is whole only with this */
    RECORD_FORMAT_SHIFT = 1,    /* bits 1-2: FACTUM_DATA_* */
    RECORD_FORMAT_MASK = 3u << 1,
    RECORD_GROUP_SHIFT = 8, /* bits 8-31: positions since its commit group's first (recovery) */
    RECORD_GROUP_MAX = (1u << 24) - 1,
};

/* Field offsets inside the header. */
enum {
    R_MAGIC = 0,
    R_LENGTH = 4,
    R_CRC = 8,
    R_FLAGS = 12,
    R_POSITION = 16,
    R_REVISION = 24,
    R_TIME = 32,
    R_STREAM_LEN = 40,
    R_ID_LEN = 42,
    R_TYPE_LEN = 44,
    R_CORR_LEN = 46,
    R_CAUSE_LEN = 48,
    R_SOURCE_LEN = 50,
    R_SUBJECT_LEN = 52,
    R_CTYPE_LEN = 54,
    R_EXT_LEN = 56,
    R_DATA_LEN = 60,
};
static_assert(R_DATA_LEN + 4 == RECORD_HEADER, "record header is 64 bytes");

/* Bytes the encoded event takes (header, fields, padding). */
size_t record_size(factum_str_t stream, const factum_event_t *e);
/* Encodes into p (record_size bytes); position, revision, time and crc are left zero. */
void record_encode(uint8_t *p, factum_str_t stream, const factum_event_t *e);
/* Stamps the writer's fields and the checksum. group_first: the first position of the commit
   group the record is in (the distance is stored capped at RECORD_GROUP_MAX). */
void record_seal(uint8_t *p, uint64_t position, uint64_t revision, int64_t time_us, int batch_end,
                 uint64_t group_first);
/* The first position of the commit group of a valid record at `position`. A capped distance
   names a later start than the true one, which recovery reads the safe way (as corruption). */
static inline uint64_t record_group_first(const uint8_t *p, uint64_t position) {
    uint32_t d = (uint32_t)(p[R_FLAGS + 1] | p[R_FLAGS + 2] << 8 | (uint32_t)p[R_FLAGS + 3] << 16);
    return position - (d <= position ? d : position); /* record_decode refuses d > position */
}

enum {
    RECORD_OK = 0,
    RECORD_EMPTY = 1, /* zero bytes: the end of written data */
    RECORD_BAD = 2,   /* not a valid record (torn or corrupt) */
};
/*
 * Checks the record at p (at most `avail` bytes). On RECORD_OK fills e (borrowing p) when e is
 * not NULL, and *len with the record's length.
 */
int record_decode(const uint8_t *p, size_t avail, factum_event_t *e, uint32_t *len);

/* Fills e from a record known to be well formed (one this process encoded). No checks. */
void record_parse(const uint8_t *p, factum_event_t *e);

/* Content equality for idempotency: every attribute a client gives (not time or position). */
bool record_same_content(const factum_event_t *a, const factum_event_t *b);

#endif
