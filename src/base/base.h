/*
 * base.h — the bottom layer every subsystem may use: error reporting, checksums, hashing,
 * clocks, UUIDv7, growable buffers and little-endian load/store. Nothing here does I/O on files
 * (but for the test-only clock shift of misc.c).
 */
#ifndef FACTUM_BASE_H
#define FACTUM_BASE_H

#include "factum.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define STRINGIFY_(x) #x
#define STRINGIFY(x) STRINGIFY_(x) /* a macro's value as a string literal */
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))

/* Fills err (if not NULL) with code and a printf-style message; returns code. */
int err_set(factum_error_t *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Storage invariants: stay on in release builds, like TigerBeetle's assertions. */
#define ENSURE(cond)                                                                                                   \
    do {                                                                                                               \
        if (!(cond)) base_panic(__FILE__, __LINE__, #cond);                                                            \
    } while (0)
_Noreturn void base_panic(const char *file, int line, const char *what);

/* CRC32C (Castagnoli); SSE4.2 when the CPU has it. crc32c_extend continues a running value. */
uint32_t crc32c(const void *p, size_t n);
uint32_t crc32c_extend(uint32_t crc, const void *p, size_t n);

/* 64-bit hash of a byte string under a seed (XXH3). */
uint64_t hash64(const void *p, size_t n, uint64_t seed);

/*
 * Clocks. Waiting (timeouts, deadlines, retry delays, periods) is measured on CLOCK_MONOTONIC,
 * which no one can step; the wall clock is only for what a person reads or asked for ("at
 * 10:00", event times). See docs/timers.md, "Clocks".
 */
/* Microseconds since the epoch. Test only: shifted by FACTUM_TEST_CLOCK_FILE (misc.c). */
int64_t clock_realtime_us(void);
uint64_t clock_mono_ns(void);
int64_t clock_mono_us(void);
/* pthread_cond_init with CLOCK_MONOTONIC for pthread_cond_timedwait; 0 or an errno value. */
int clock_mono_cond_init(pthread_cond_t *cond);
/* The CLOCK_MONOTONIC time `us` microseconds from now (0 if negative), for such a condition. */
struct timespec clock_mono_after(int64_t us);

/* Writes a fresh UUIDv7 (36 chars + NUL) into out. */
void uuid7_make(char out[37]);

/* Formats microseconds since the epoch as RFC 3339 UTC with 6 decimals (27 chars + NUL). */
void time_format_rfc3339(int64_t us, char out[32]);
/* Parses an RFC 3339 date-time (any offset, any fraction digits, cut to microseconds) into
   microseconds since the epoch. 0, or -1 if it is not one. */
int time_parse(factum_str_t s, int64_t *us);
/* time_parse, with 0 for anything that is not a date-time. */
int64_t time_parse_rfc3339(factum_str_t s);
/* Writes v in decimal with a NUL; returns its length (without the NUL). */
size_t u64_format(uint64_t v, char out[21]);

/* A growable byte buffer. The library returns FACTUM_ENOMEM when it cannot grow. */
typedef struct buf {
    char *ptr;
    size_t len, cap;
} buf_t;
int buf_reserve(buf_t *b, size_t extra);
int buf_append(buf_t *b, const void *p, size_t n);
int buf_printf(buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends s percent-encoded for a URL path segment or query value (unreserved characters kept). */
int buf_url_encode(buf_t *b, const char *s, size_t n);

/* A whole unsigned decimal number (digits only, no sign, no overflow) into *out. */
bool str_u64(factum_str_t s, uint64_t *out);
/* True if stream is in category cat: the text before its first '-' (or all of it) is cat. */
bool stream_in_category(factum_str_t stream, factum_str_t cat);
void buf_free(buf_t *b);
/* Copies b into out (at most cap - 1 bytes, then a NUL; nothing when cap is 0), frees b, and
   returns b's length: what the *_json functions of the API answer. */
size_t buf_give(buf_t *b, char *out, size_t cap);

static inline bool str_eq(factum_str_t a, factum_str_t b) {
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}
static inline factum_str_t str_c(const char *s) { return (factum_str_t){s, s ? strlen(s) : 0}; }

static inline uint16_t load16(const void *p) {
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}
static inline uint32_t load32(const void *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}
static inline uint64_t load64(const void *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}
static inline void store16(void *p, uint16_t v) { memcpy(p, &v, 2); }
static inline void store32(void *p, uint32_t v) { memcpy(p, &v, 4); }
static inline void store64(void *p, uint64_t v) { memcpy(p, &v, 8); }

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "Factum's on-disk format is little-endian and the loaders above assume a little-endian host"
#endif

#endif
