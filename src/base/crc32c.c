/*
 * crc32c.c — CRC32C (Castagnoli, reflected 0x82F63B78) for records, segment headers and index
 * files. Uses the SSE4.2 crc32 instruction when the CPU has it, a table otherwise; both give
 * the same values (a unit test checks the RFC 3720 vectors on both).
 */
#include "base.h"

#include <cpuid.h>
#include <nmmintrin.h>

static uint32_t table[8][256];
static int have_sse42 = -1;

static void table_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++)
            table[t][i] = (table[t - 1][i] >> 8) ^ table[0][table[t - 1][i] & 0xff];
}

uint32_t crc32c_soft(uint32_t crc, const void *p, size_t n);
uint32_t crc32c_soft(uint32_t crc, const void *p, size_t n) {
    const uint8_t *s = p;
    crc = ~crc;
    while (n >= 8) {
        uint64_t w = load64(s) ^ crc;
        crc = table[7][w & 0xff] ^ table[6][(w >> 8) & 0xff] ^ table[5][(w >> 16) & 0xff] ^ table[4][(w >> 24) & 0xff] ^
              table[3][(w >> 32) & 0xff] ^ table[2][(w >> 40) & 0xff] ^ table[1][(w >> 48) & 0xff] ^ table[0][w >> 56];
        s += 8, n -= 8;
    }
    while (n--)
        crc = (crc >> 8) ^ table[0][(crc ^ *s++) & 0xff];
    return ~crc;
}

__attribute__((target("sse4.2"))) static uint32_t crc32c_hw(uint32_t crc, const void *p, size_t n) {
    const uint8_t *s = p;
    uint64_t c = ~crc;
    while (n >= 8) {
        c = _mm_crc32_u64(c, load64(s));
        s += 8, n -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    while (n--)
        c32 = _mm_crc32_u8(c32, *s++);
    return ~c32;
}

__attribute__((constructor)) static void crc32c_init(void) {
    unsigned a, b, c, d;
    table_init();
    have_sse42 = __get_cpuid(1, &a, &b, &c, &d) && (c & bit_SSE4_2);
}

uint32_t crc32c_extend(uint32_t crc, const void *p, size_t n) {
    return have_sse42 ? crc32c_hw(crc, p, n) : crc32c_soft(crc, p, n);
}

uint32_t crc32c(const void *p, size_t n) { return crc32c_extend(0, p, n); }
