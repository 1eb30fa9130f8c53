/*
 * misc.c — small helpers of the base layer: hashing, clocks, UUIDv7, RFC 3339 time, buffers.
 */
#include "base.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

uint64_t hash64(const void *p, size_t n, uint64_t seed) { return XXH3_64bits_withSeed(p, n, seed); }

/*
 * Test only: a wall clock that a test can step without touching the machine's. When the
 * environment variable FACTUM_TEST_CLOCK_FILE names a file, its first 8 bytes (an int64 in the
 * machine's byte order: microseconds) are added to every clock_realtime_us(). The file is mapped
 * shared on first use, so a test steps a running server's wall clock by writing those bytes.
 * Unset, which is always the case outside tests, it costs one pthread_once check per call.
 * CLOCK_MONOTONIC is never shifted: that is the point (docs/timers.md, "Clocks").
 */
static const _Atomic int64_t *clock_shift_us;
static pthread_once_t clock_shift_once = PTHREAD_ONCE_INIT;

static void clock_shift_map(void) {
    const char *path = getenv("FACTUM_TEST_CLOCK_FILE");
    if (!path || !*path) return;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    void *p = MAP_FAILED;
    if (fd >= 0 && fstat(fd, &st) == 0 && st.st_size >= 8) p = mmap(NULL, 8, PROT_READ, MAP_SHARED, fd, 0);
    if (fd >= 0) close(fd);
    if (p == MAP_FAILED) {
        fprintf(stderr,
                "factum: FACTUM_TEST_CLOCK_FILE %s: cannot map its first 8 bytes; the wall clock is not shifted\n",
                path);
        return;
    }
    clock_shift_us = p;
}

int64_t clock_realtime_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    int64_t us = (int64_t)t.tv_sec * 1000000 + t.tv_nsec / 1000;
    pthread_once(&clock_shift_once, clock_shift_map);
    if (clock_shift_us) us += atomic_load_explicit(clock_shift_us, memory_order_relaxed);
    return us;
}

uint64_t clock_mono_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

int64_t clock_mono_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

int clock_mono_cond_init(pthread_cond_t *cond) {
    pthread_condattr_t a;
    int rc = pthread_condattr_init(&a);
    if (!rc) rc = pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    if (!rc) rc = pthread_cond_init(cond, &a);
    pthread_condattr_destroy(&a);
    return rc;
}

struct timespec clock_mono_after(int64_t us) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    if (us < 0) us = 0;
    int64_t ns = t.tv_nsec + (us % 1000000) * 1000;
    t.tv_sec += (time_t)(us / 1000000 + ns / 1000000000);
    t.tv_nsec = (long)(ns % 1000000000);
    return t;
}

/* Random bytes from the kernel, 4 KiB at a time per thread (one syscall per 409 UUIDs: a
   batch of 100 events without ids takes 100). */
static bool random_bytes(uint8_t *out, size_t n) {
    static _Thread_local uint8_t pool[4096];
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
    for (int i = 0; i < 6; i++)
        b[i] = (uint8_t)(ms >> (40 - 8 * i));
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
    for (int i = width - 1; i >= 0; i--, v /= 10)
        p[i] = (char)('0' + v % 10);
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

/* Reads exactly n digits at s. */
static bool digits_at(const char *s, int n, int64_t *out) {
    int64_t v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

int time_parse(factum_str_t str, int64_t *us) {
    /* RFC 3339 date-time: YYYY-MM-DD("T"|"t"|" ")HH:MM:SS[.frac]("Z"|"z"|+HH:MM|-HH:MM). */
    const char *p = str.ptr;
    size_t n = str.len;
    int64_t y, mo, d, h, mi, se, frac = 0, off = 0;
    if (n < 20 || !digits_at(p, 4, &y) || p[4] != '-' || !digits_at(p + 5, 2, &mo) || p[7] != '-' ||
        !digits_at(p + 8, 2, &d) || (p[10] != 'T' && p[10] != 't' && p[10] != ' ') || !digits_at(p + 11, 2, &h) ||
        p[13] != ':' || !digits_at(p + 14, 2, &mi) || p[16] != ':' || !digits_at(p + 17, 2, &se))
        return -1;
    size_t i = 19;
    if (i < n && p[i] == '.') {
        size_t k = ++i;
        int64_t scale = 100000;
        for (; i < n && p[i] >= '0' && p[i] <= '9'; i++, scale /= 10)
            if (scale) frac += (p[i] - '0') * scale;
        if (i == k) return -1;
    }
    if (i < n && (p[i] == 'Z' || p[i] == 'z'))
        i++;
    else if (i + 6 == n && (p[i] == '+' || p[i] == '-')) {
        int64_t oh, om;
        if (!digits_at(p + i + 1, 2, &oh) || p[i + 3] != ':' || !digits_at(p + i + 4, 2, &om) || oh > 23 || om > 59)
            return -1;
        off = (oh * 60 + om) * 60 * (p[i] == '+' ? 1 : -1);
        i += 6;
    } else
        return -1;
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (i != n || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h > 23 || mi > 59 || se > 60) return -1;
    if (mo == 2 && d == 29 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0)) return -1;
    if (se == 60) se = 59; /* a leap second reads as the second before */
    /* Days from civil (H. Hinnant). */
    int64_t yy = y - (mo <= 2), era = (yy >= 0 ? yy : yy - 399) / 400;
    int64_t yoe = yy - era * 400, mp = (mo + 9) % 12, doy = (153 * mp + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy, days = era * 146097 + doe - 719468;
    *us = ((days * 86400 + h * 3600 + mi * 60 + se - off) * 1000000) + frac;
    return 0;
}

int64_t time_parse_rfc3339(factum_str_t s) {
    int64_t us;
    return time_parse(s, &us) ? 0 : us;
}

size_t u64_format(uint64_t v, char out[21]) {
    char tmp[20];
    size_t n = 0;
    do
        tmp[n++] = (char)('0' + v % 10), v /= 10;
    while (v);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
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

size_t buf_give(buf_t *b, char *out, size_t cap) {
    size_t n = b->len;
    if (cap) {
        memcpy(out, b->ptr ? b->ptr : "", MIN(n, cap - 1));
        out[MIN(n, cap - 1)] = 0;
    }
    buf_free(b);
    return n;
}

int buf_url_encode(buf_t *b, const char *s, size_t n) {
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        unsigned char ch = (unsigned char)s[i];
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || strchr("-._~", ch))
            rc = buf_append(b, s + i, 1);
        else
            rc = buf_printf(b, "%%%02X", ch);
    }
    return rc;
}

bool str_u64(factum_str_t s, uint64_t *out) {
    if (s.len == 0 || s.len > 20) return false;
    uint64_t v = 0;
    for (size_t i = 0; i < s.len; i++) {
        if (s.ptr[i] < '0' || s.ptr[i] > '9') return false;
        uint64_t d = (uint64_t)(s.ptr[i] - '0');
        if (v > (UINT64_MAX - d) / 10) return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

bool stream_in_category(factum_str_t stream, factum_str_t cat) {
    const char *dash = memchr(stream.ptr, '-', stream.len);
    size_t len = dash ? (size_t)(dash - stream.ptr) : stream.len;
    return len == cat.len && memcmp(stream.ptr, cat.ptr, len) == 0;
}
