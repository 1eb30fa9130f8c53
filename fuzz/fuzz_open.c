/*
 * fuzz_open.c — opening a damaged data folder. The input becomes the body of the only
 * segment (after a valid header) — a log cut, flipped or filled with junk anywhere. Opening
 * must succeed or fail with a clear code, never crash or hang; when it succeeds, every
 * event must read back.
 */
#include "../src/store/record.h"
#include "../src/store/segment.h"
#include "fuzz.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

FUZZ_TARGET(open) {
    char dir[] = "/tmp/factum-fuzz-open-XXXXXX", path[128];
    if (!mkdtemp(dir)) return 0;
    snprintf(path, sizeof path, "%s/log", dir);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/log/00000000.seg", dir);
    uint64_t seg = 1 << 16;
    uint8_t h[SEGMENT_HEADER] = {0};
    store32(h, SEGMENT_MAGIC);
    store32(h + 4, SEGMENT_VERSION);
    store64(h + 16, seg);
    store32(h + 60, crc32c(h, 60));
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
        if (ftruncate(fd, (off_t)seg) == 0 && pwrite(fd, h, sizeof h, 0) == (ssize_t)sizeof h)
            if (pwrite(fd, data, size < seg - SEGMENT_HEADER ? size : seg - SEGMENT_HEADER, SEGMENT_HEADER) < 0) {}
        close(fd);
    }
    factum_t *db;
    factum_options_t o = {.segment_bytes = seg};
    if (factum_open(dir, &o, &db, NULL) == 0) {
        factum_query_t q = {.limit = 100000};
        factum_result_t *res;
        ENSURE(factum_read_all(db, &q, &res, NULL) == 0);
        ENSURE(factum_result_count(res) == factum_head_position(db));
        factum_result_free(res);
        factum_event_t e = {.type = str_c("After")};
        ENSURE(factum_append(db, str_c("s"), FACTUM_EXPECT_ANY, &e, 1, NULL, NULL) == 0);
        factum_close(db);
    }
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) {}
    return 0;
}
