/*
 * misc.c — small helpers of the base layer: hashing, clocks, UUIDv7, RFC 3339 time, buffers.
 */
#include "base.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>
#include <time.h>
#include <xxhash.h>

uint64_t hash64(const void *p, size_t n, uint64_t seed) { return XXH3_64bits_withSeed(p, n, seed); }

int64_t clock_realtime_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (int64_t)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

uint64_t clock_mono_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* Random bytes from the kernel, 256 at a time per thread (one syscall per 25 UUIDs). */
static bool random_bytes(uint8_t *out, size_t n) {
    static _Thread_local uint8_t pool[256];
    static _Thread_local size_t left;
    if (left < n) {
        if (getrandom(pool, sizeof pool, 0) != (ssize_t)sizeof pool) return false;
        left = sizeof pool;
    }
    memcpy(out, pool + sizeof pool - left, n);
    memset(pool + sizeof pool - left, 0, n); /* used bytes are not kept around */
    left -= n;
    return true;
}

/* RFC 9562 UUIDv7: 48-bit Unix milliseconds, version 7, 74 random bits, variant 10. */
void uuid7_make(char out[37]) {
    uint8_t b[16];
    uint64_t ms = (uint64_t)(clock_realtime_us() / 1000);
    if (!random_bytes(b + 6, 10)) {
        uint64_t x = clock_mono_ns() ^ (uint64_t)(uintptr_t)out;
        for (int i = 6; i < 16; i++) {
            x = x * 6364136223846793005u + 1442695040888963407u;
            b[i] = (uint8_t)(x >> 56);
        }
    }
    for (int i = 0; i < 6; i++) b[i] = (uint8_t)(ms >> (40 - 8 * i));
    b[6] = (uint8_t)(0x70 | (b[6] & 0x0f));
    b[8] = (uint8_t)(0x80 | (b[8] & 0x3f));
    static const char hex[] = "0123456789abcdef";
    char *o = out;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10) *o++ = '-';
        *o++ = hex[b[i] >> 4];
        *o++ = hex[b[i] & 15];
    }
    *o = 0;
}

/* Writes v as `width` digits (zero-padded) at p. */
static void put_digits(char *p, unsigned v, int width) {
    for (int i = width - 1; i >= 0; i--, v /= 10) p[i] = (char)('0' + v % 10);
}

void time_format_rfc3339(int64_t us, char out[32]) {
    /* Civil date from days since the epoch (H. Hinnant's algorithm): no gmtime, no printf,
       since subscriptions format a time per event. */
    int64_t s = us / 1000000, frac = us % 1000000;
    if (frac < 0) frac += 1000000, s--;
    int64_t days = s / 86400, sod = s % 86400;
    if (sod < 0) sod += 86400, days--;
    int64_t z = days + 719468, era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t y = (int64_t)yoe + era * 400;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100), mp = (5 * doy + 2) / 153;
    unsigned d = doy - (153 * mp + 2) / 5 + 1, m = mp < 10 ? mp + 3 : mp - 9;
    y += m <= 2;
    memcpy(out, "0000-00-00T00:00:00.000000Z", 28);
    put_digits(out, (unsigned)((y % 10000 + 10000) % 10000), 4);
    put_digits(out + 5, m, 2);
    put_digits(out + 8, d, 2);
    put_digits(out + 11, (unsigned)(sod / 3600), 2);
    put_digits(out + 14, (unsigned)(sod / 60 % 60), 2);
    put_digits(out + 17, (unsigned)(sod % 60), 2);
    put_digits(out + 20, (unsigned)frac, 6);
}

int64_t time_parse_rfc3339(factum_str_t s) {
    /* Exactly the form time_format_rfc3339 writes; anything else is 0 (the time is informative). */
    const char *p = s.ptr;
    if (s.len != 27 || p[4] != '-' || p[7] != '-' || p[10] != 'T' || p[13] != ':' || p[16] != ':' || p[19] != '.' ||
        p[26] != 'Z')
        return 0;
    int64_t f[7] = {0};
    const int at[7] = {0, 5, 8, 11, 14, 17, 20}, len[7] = {4, 2, 2, 2, 2, 2, 6};
    for (int k = 0; k < 7; k++)
        for (int i = 0; i < len[k]; i++) {
            char ch = p[at[k] + i];
            if (ch < '0' || ch > '9') return 0;
            f[k] = f[k] * 10 + (ch - '0');
        }
    /* Days from civil (H. Hinnant). */
    int64_t y = f[0] - (f[1] <= 2), era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400, mp = (f[1] + 9) % 12, doy = (153 * mp + 2) / 5 + f[2] - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy, days = era * 146097 + doe - 719468;
    return ((days * 86400 + f[3] * 3600 + f[4] * 60 + f[5]) * 1000000) + f[6];
}

size_t u64_format(uint64_t v, char out[21]) {
    char tmp[20];
    size_t n = 0;
    do tmp[n++] = (char)('0' + v % 10), v /= 10;
    while (v);
    for (size_t i = 0; i < n; i++) out[i] = tmp[n - 1 - i];
    out[n] = 0;
    return n;
}

int buf_reserve(buf_t *b, size_t extra) {
    if (b->cap - b->len >= extra) return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len < extra) {
        if (cap > SIZE_MAX / 2) return FACTUM_ENOMEM;
        cap *= 2;
    }
    char *p = realloc(b->ptr, cap);
    if (!p) return FACTUM_ENOMEM;
    b->ptr = p, b->cap = cap;
    return 0;
}

int buf_append(buf_t *b, const void *p, size_t n) {
    int rc = buf_reserve(b, n + 1);
    if (rc) return rc;
    if (n) memcpy(b->ptr + b->len, p, n);
    b->len += n;
    b->ptr[b->len] = 0;
    return 0;
}

int buf_printf(buf_t *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) return FACTUM_EINVAL;
    int rc = buf_reserve(b, (size_t)n + 1);
    if (rc) return rc;
    va_start(ap, fmt);
    vsnprintf(b->ptr + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

void buf_free(buf_t *b) {
    free(b->ptr);
    *b = (buf_t){0};
}
