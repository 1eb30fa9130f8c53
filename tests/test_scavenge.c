/*
 * test_scavenge.c — giving disk back: a scavenge removes exactly the events no read can return,
 * keeps everything else byte for byte, runs while appends and reads go on, and a data folder
 * killed in the middle of one opens with nothing lost and nothing back from the dead.
 */
#include "test.h"

#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* Bytes the log's segment files take on disk (allocated blocks). */
static uint64_t log_disk_bytes(const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/log", dir);
    DIR *d = opendir(path);
    CHECK(d);
    uint64_t total = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!strstr(de->d_name, ".seg")) continue;
        struct stat st;
        snprintf(path, sizeof path, "%s/log/%s", dir, de->d_name);
        if (stat(path, &st) == 0) total += (uint64_t)st.st_blocks * 512;
    }
    closedir(d);
    return total;
}

/* Every visible event of every stream, as "stream/revision/position/data" lines. */
static void snapshot_all(factum_t *db, buf_t *out) {
    out->len = 0;
    factum_query_t q = {.limit = 100000};
    for (;;) {
        factum_result_t *r;
        CHECK_RC(factum_read_all(db, &q, &r, NULL), 0);
        for (size_t i = 0; i < factum_result_count(r); i++) {
            const factum_event_t *e = factum_result_event(r, i);
            buf_printf(out, "%.*s/%llu/%llu/%.*s\n", (int)e->stream.len, e->stream.ptr, (unsigned long long)e->revision,
                       (unsigned long long)e->position, (int)e->data.len, e->data.ptr);
        }
        size_t n = factum_result_count(r);
        q.from = factum_result_next(r);
        factum_result_free(r);
        if (n < q.limit) break;
    }
}

static const factum_options_t small = {.segment_bytes = 1u << 16};

TEST(a_scavenge_removes_what_reads_no_longer_return_and_keeps_the_rest_byte_for_byte) {
    const char *dir = test_dir();
    factum_t *db = test_open(dir, &small);
    char data[200];
    memset(data, 'x', sizeof data);
    for (int i = 0; i < 3000; i++) {
        char stream[32], d[260];
        snprintf(stream, sizeof stream, "s-%d", i % 20);
        snprintf(d, sizeof d, "{\"i\":%d,\"pad\":\"%.150s\"}", i, data);
        CHECK_RC(test_append(db, stream, FACTUM_EXPECT_ANY, "E", d, NULL, NULL), 0);
    }
    /* Half the streams go: deleted, tombstoned, cut to 5 events, truncated. */
    for (int k = 0; k < 20; k += 2) {
        char stream[32];
        snprintf(stream, sizeof stream, "s-%d", k);
        factum_meta_t m = {.max_count = 5};
        if (k % 8 == 0) CHECK_RC(factum_delete_stream(db, str_c(stream), FACTUM_EXPECT_ANY, 0, NULL, NULL), 0);
        else if (k % 8 == 2) CHECK_RC(factum_delete_stream(db, str_c(stream), FACTUM_EXPECT_ANY, 1, NULL, NULL), 0);
        else if (k % 8 == 4) CHECK_RC(factum_meta_set(db, str_c(stream), &m, NULL, NULL), 0);
        else {
            m = (factum_meta_t){.truncate_before = 140};
            CHECK_RC(factum_meta_set(db, str_c(stream), &m, NULL, NULL), 0);
        }
    }
    /* Superseded metadata goes too. */
    for (int j = 0; j < 50; j++) {
        factum_meta_t m = {.max_count = 1000 + (uint64_t)j};
        CHECK_RC(factum_meta_set(db, str_c("s-1"), &m, NULL, NULL), 0);
    }
    buf_t before = {0}, after = {0};
    snapshot_all(db, &before);
    uint64_t disk0 = log_disk_bytes(dir);
    factum_error_t err;
    CHECK_RC(factum_scavenge(db, &err), 0);
    factum_scavenge_stats_t st;
    factum_scavenge_stats(db, &st);
    CHECK(!st.running && st.runs == 1 && st.segments_rewritten > 0 && st.segments_done == st.segments_total);
    CHECK_MSG(st.events_removed > 1200 && st.events_removed < 1500 + 50, "removed %llu", (unsigned long long)st.events_removed);
    snapshot_all(db, &after);
    CHECK_MSG(before.len == after.len && !memcmp(before.ptr, after.ptr, before.len), "reads changed by the scavenge");
    uint64_t disk1 = log_disk_bytes(dir);
    CHECK_MSG(disk1 < disk0 * 6 / 10, "log on disk %llu -> %llu bytes", (unsigned long long)disk0, (unsigned long long)disk1);
    /* Revisions continue after the deleted stream's old last one; metadata is intact. */
    factum_append_result_t res;
    CHECK_RC(test_append(db, "s-0", FACTUM_EXPECT_NO_STREAM, "E", "{}", NULL, &res), 0);
    CHECK_EQ(res.first_revision, 150);
    CHECK_RC(test_append(db, "s-2", FACTUM_EXPECT_ANY, "E", "{}", NULL, NULL), FACTUM_EDELETED);
    snapshot_all(db, &before);
    /* A second scavenge finds nothing more but what the append made visible stays. */
    CHECK_RC(factum_scavenge(db, &err), 0);
    factum_close(db);
    /* Reopen: through the written position maps, then with them and the index rebuilt. */
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1) {
            char cmd[4096];
            snprintf(cmd, sizeof cmd, "rm -rf %s/log/*.pmap %s/index", dir, dir);
            CHECK_EQ(system(cmd), 0);
        }
        db = test_open(dir, &small);
        snapshot_all(db, &after);
        CHECK_MSG(before.len == after.len && !memcmp(before.ptr, after.ptr, before.len), "reads changed by reopening (pass %d)", pass);
        factum_meta_t m;
        CHECK_RC(factum_meta_get(db, str_c("s-1"), &m, NULL), 0);
        CHECK_EQ(m.max_count, 1049);
        CHECK_EQ(factum_stream_revision(db, str_c("s-2")), 149);
        CHECK_EQ(factum_position_at(db, 0), 0);
        factum_close(db);
    }
    buf_free(&before);
    buf_free(&after);
}
