/*
 * fuzz_open.c — opening a damaged data folder. Two shapes of input:
 *
 *   anything else    the body of the only segment, after a valid header: a log cut, flipped or
 *                    filled with junk anywhere.
 *   'C' g d0 d1 d2   a sealed segment that a scavenge rewrote (generation g, positions 0 to the
 *   BODY...          24-bit little-endian d), exactly as long as its header and BODY, followed by
 *                    an empty active segment that starts at d.
 *
 * factum check runs on the folder first: it must not crash, and where it finds no damage, opening
 * must succeed. Opening must succeed or fail with a clear code, never crash or hang. When it succeeds every
 * event reads back in rising positions below the head, an append works, and a second open
 * (which now finds the position map written by the first) reads the same events.
 */
#include "../src/store/record.h"
#include "../src/store/segment.h"
#include "fuzz.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define SEG_BYTES (1u << 16)

/* Writes segment no: a valid header, then body; the file is size bytes. */
static void put_segment(const char *dir, uint32_t no, uint64_t size, uint64_t first_pos, uint32_t generation,
                        uint64_t end_pos, const uint8_t *body, size_t len) {
    char path[128];
    snprintf(path, sizeof path, "%s/log/%08x.seg", dir, no);
    uint8_t h[SEGMENT_HEADER];
    segment_header_encode(h, no, size, first_pos, generation, end_pos);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return;
    if (ftruncate(fd, (off_t)size) == 0 && pwrite(fd, h, sizeof h, 0) == (ssize_t)sizeof h)
        if (pwrite(fd, body, len < size - SEGMENT_HEADER ? len : size - SEGMENT_HEADER, SEGMENT_HEADER) < 0) {
        }
    close(fd);
}

/* Reads $all page by page (a page stops after a window of positions, scavenged gaps included):
   positions rise and stay below the head. Returns how many events there are. */
static size_t read_back(factum_t *db) {
    uint64_t head = factum_head_position(db), last = 0;
    size_t n = 0;
    factum_query_t q = {.limit = 100000};
    while (q.from < head) {
        factum_result_t *res;
        ENSURE(factum_read_all(db, &q, &res, NULL) == 0);
        for (size_t i = 0; i < factum_result_count(res); i++, n++) {
            const factum_event_t *e = factum_result_event(res, i);
            ENSURE(e->position < head && (n == 0 || e->position > last));
            last = e->position;
        }
        ENSURE(factum_result_next(res) > q.from);
        q.from = factum_result_next(res);
        factum_result_free(res);
    }
    ENSURE(n <= head);
    return n;
}

static void ignore_finding(void *ctx, const factum_check_finding_t *f) { (void)ctx, (void)f; }

FUZZ_TARGET(open) {
    char dir[] = "/tmp/factum-fuzz-open-XXXXXX", path[128];
    if (!mkdtemp(dir)) return 0;
    snprintf(path, sizeof path, "%s/log", dir);
    mkdir(path, 0755);
    bool compacted = size >= 5 && data[0] == 'C';
    if (compacted) {
        uint64_t end_pos = data[2] | (uint64_t)data[3] << 8 | (uint64_t)data[4] << 16;
        size_t len = MIN(size - 5, SEG_BYTES - SEGMENT_HEADER);
        put_segment(dir, 0, SEGMENT_HEADER + len, 0, data[1], end_pos, data + 5, len);
        put_segment(dir, 1, SEG_BYTES, end_pos, 0, 0, NULL, 0);
    } else {
        put_segment(dir, 0, SEG_BYTES, 0, 0, 0, data, size);
    }
    /* factum check reads the folder as it is, before open repairs anything: it must not crash,
       and where it finds no damage, open must succeed. */
    factum_check_summary_t sum;
    int checked = factum_check(dir, NULL, ignore_finding, NULL, &sum, NULL);
    factum_t *db;
    factum_options_t o = {.segment_bytes = SEG_BYTES};
    int opened = factum_open(dir, &o, &db, NULL);
    ENSURE(checked != 0 || sum.damage > 0 || opened == 0);
    if (opened == 0) {
        size_t n = read_back(db);
        if (!compacted) ENSURE(n == factum_head_position(db));
        factum_event_t e = {.type = str_c("After")};
        ENSURE(factum_append(db, str_c("s"), FACTUM_EXPECT_ANY, &e, 1, NULL, NULL) == 0);
        factum_close(db);
        ENSURE(factum_open(dir, &o, &db, NULL) == 0);
        ENSURE(read_back(db) == n + 1);
        factum_close(db);
    }
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) {
    }
    return 0;
}
