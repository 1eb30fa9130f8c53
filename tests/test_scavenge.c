/*
 * test_scavenge.c — giving disk back: a scavenge removes exactly the events no read can return,
 * keeps everything else byte for byte, runs while appends and reads go on, and a data folder
 * killed in the middle of one opens with nothing lost and nothing back from the dead.
 */
#include "test.h"
#include "../src/store/segment.h"

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
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

/* A compacted segment's header names how many positions it covers; more than a 4 GiB segment could
   hold is damage, refused before anything is allocated for them. */
TEST(a_compacted_segment_header_covering_more_positions_than_a_segment_holds_is_refused) {
    const char *dir = test_dir();
    char logdir[4096];
    snprintf(logdir, sizeof logdir, "%s/log", dir);
    CHECK(mkdir(logdir, 0755) == 0);
    uint64_t first = 1000;
    for (uint64_t span = SEGMENT_MAX_POSITIONS; span <= SEGMENT_MAX_POSITIONS + 1; span++) {
        char path[4200];
        snprintf(path, sizeof path, "%s/00000000.seg", logdir);
        uint8_t h[SEGMENT_HEADER];
        segment_header_encode(h, 0, SEGMENT_HEADER, first, 1, first + span);
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        CHECK(fd >= 0 && write(fd, h, sizeof h) == (ssize_t)sizeof h);
        close(fd);
        segment_t *s = NULL;
        factum_error_t err;
        int rc = segment_open(logdir, 0, &s, &err);
        if (span == SEGMENT_MAX_POSITIONS) {
            CHECK_RC(rc, 0);
            CHECK(s->end_pos == first + span);
            segment_close(s);
        } else {
            CHECK_RC(rc, FACTUM_ECORRUPT);
            CHECK(strstr(err.message, "00000000.seg") && strstr(err.message, "positions"));
        }
    }
}

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
        if (k % 8 == 0)
            CHECK_RC(factum_delete_stream(db, str_c(stream), FACTUM_EXPECT_ANY, 0, NULL, NULL), 0);
        else if (k % 8 == 2)
            CHECK_RC(factum_delete_stream(db, str_c(stream), FACTUM_EXPECT_ANY, 1, NULL, NULL), 0);
        else if (k % 8 == 4)
            CHECK_RC(factum_meta_set(db, str_c(stream), &m, NULL, NULL), 0);
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
    CHECK_MSG(st.events_removed > 1200 && st.events_removed < 1500 + 50, "removed %llu",
              (unsigned long long)st.events_removed);
    snapshot_all(db, &after);
    CHECK_MSG(before.len == after.len && !memcmp(before.ptr, after.ptr, before.len), "reads changed by the scavenge");
    uint64_t disk1 = log_disk_bytes(dir);
    CHECK_MSG(disk1 < disk0 * 6 / 10, "log on disk %llu -> %llu bytes", (unsigned long long)disk0,
              (unsigned long long)disk1);
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
        CHECK_MSG(before.len == after.len && !memcmp(before.ptr, after.ptr, before.len),
                  "reads changed by reopening (pass %d)", pass);
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

/* ---- kill -9 in the middle of scavenges, with appends, deletes and reads going on ---- */

#define CR_STREAMS 12
#define CR_CYCLES 22

typedef struct cr_ctx {
    factum_t *db;
    int log_fd;
    const char *dir;
    _Atomic bool stop;
} cr_ctx;

static void *cr_appender(void *arg) {
    cr_ctx *c = arg;
    for (uint64_t n = (uint64_t)getpid() * 1000000; !atomic_load(&c->stop); n++) {
        char stream[16], data[96], line[128];
        int k = (int)(n % CR_STREAMS);
        snprintf(stream, sizeof stream, "s-%d", k);
        snprintf(data, sizeof data, "{\"s\":\"%s\",\"n\":%llu,\"pad\":\"%060d\"}", stream, (unsigned long long)n, 0);
        factum_append_result_t res;
        if (test_append(c->db, stream, FACTUM_EXPECT_ANY, "E", data, NULL, &res) == 0) {
            int len = snprintf(line, sizeof line, "%d %llu %llu %llu\n", k, (unsigned long long)res.first_revision,
                               (unsigned long long)res.first_position, (unsigned long long)n);
            if (write(c->log_fd, line, (size_t)len) != len) abort();
        }
    }
    return NULL;
}

static void *cr_changer(void *arg) {
    cr_ctx *c = arg;
    uint64_t x = (uint64_t)getpid();
    while (!atomic_load(&c->stop)) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        int k = (int)((x >> 33) % CR_STREAMS), op = (int)((x >> 40) % 10);
        char stream[16];
        snprintf(stream, sizeof stream, "s-%d", k);
        int64_t last = factum_stream_revision(c->db, str_c(stream));
        factum_meta_t m = {0};
        if (op < 4)
            m.max_count = 3 + (x >> 20) % 40;
        else if (op < 7 && last > 10)
            m.truncate_before = (uint64_t)last - 10;
        if (op < 7)
            factum_meta_set(c->db, str_c(stream), &m, NULL, NULL);
        else if (op < 9)
            factum_delete_stream(c->db, str_c(stream), FACTUM_EXPECT_ANY, 0, NULL, NULL);
        else if (k >= CR_STREAMS - 2)
            factum_delete_stream(c->db, str_c(stream), FACTUM_EXPECT_ANY, 1, NULL, NULL);
        usleep(2000);
    }
    return NULL;
}

/* Reads while the segments change under it: every event must be whole and in its stream. */
static void *cr_reader(void *arg) {
    cr_ctx *c = arg;
    while (!atomic_load(&c->stop)) {
        factum_query_t q = {.limit = 5000};
        factum_result_t *r;
        if (factum_read_all(c->db, &q, &r, NULL)) continue;
        for (size_t i = 0; i < factum_result_count(r); i++) {
            const factum_event_t *e = factum_result_event(r, i);
            char want[32];
            snprintf(want, sizeof want, "{\"s\":\"%.*s\"", (int)e->stream.len, e->stream.ptr);
            if (e->data.len < strlen(want) || memcmp(e->data.ptr, want, strlen(want))) {
                char path[4200];
                snprintf(path, sizeof path, "%s/bad", c->dir);
                FILE *f = fopen(path, "w");
                if (f)
                    fprintf(f, "position %llu: %.*s\n", (unsigned long long)e->position, (int)e->data.len, e->data.ptr),
                        fclose(f);
            }
        }
        factum_result_free(r);
    }
    return NULL;
}

static _Noreturn void cr_child(const char *dir, const char *store) {
    char path[4200];
    snprintf(path, sizeof path, "%s/acked.log", dir);
    cr_ctx c = {.log_fd = open(path, O_WRONLY | O_APPEND | O_CREAT, 0644), .dir = dir};
    factum_error_t err;
    if (c.log_fd < 0 || factum_open(store, &small, &c.db, &err)) _exit(3);
    pthread_t t[3];
    pthread_create(&t[0], NULL, cr_appender, &c);
    pthread_create(&t[1], NULL, cr_changer, &c);
    pthread_create(&t[2], NULL, cr_reader, &c);
    for (;;)
        factum_scavenge(c.db, NULL); /* until killed */
}

typedef struct cr_event {
    uint64_t pos, nonce;
} cr_event;

/* Checks the store against what was acknowledged; floors[] (the first visible revision of
   each stream seen last time) may only rise. */
static void cr_verify(factum_t *db, const char *dir, uint64_t floors[CR_STREAMS]) {
    char path[4200];
    snprintf(path, sizeof path, "%s/bad", dir);
    CHECK_MSG(access(path, F_OK) != 0, "a reader saw a damaged event during a scavenge (see %s)", path);
    static cr_event acked[CR_STREAMS][20000];
    static uint8_t have[CR_STREAMS][20000];
    memset(have, 0, sizeof have);
    snprintf(path, sizeof path, "%s/acked.log", dir);
    FILE *f = fopen(path, "r");
    CHECK(f);
    int k;
    unsigned long long rev, pos, n;
    while (fscanf(f, "%d %llu %llu %llu", &k, &rev, &pos, &n) == 4)
        if (rev < 20000) acked[k][rev] = (cr_event){pos, n}, have[k][rev] = 1;
    fclose(f);
    size_t total = 0;
    for (k = 0; k < CR_STREAMS; k++) {
        char stream[16];
        snprintf(stream, sizeof stream, "s-%d", k);
        factum_meta_t m;
        CHECK_RC(factum_meta_get(db, str_c(stream), &m, NULL), 0);
        int64_t last = factum_stream_revision(db, str_c(stream));
        uint64_t floor = m.truncate_before;
        if (m.max_count && last >= 0 && (uint64_t)last + 1 > m.max_count)
            floor = MAX(floor, (uint64_t)last + 1 - m.max_count);
        if (m.tombstone || m.deleted) floor = (uint64_t)last + 1;
        factum_meta_free(&m);
        CHECK_MSG(floor >= floors[k], "%s: hidden events came back (floor %llu, before %llu)", stream,
                  (unsigned long long)floor, (unsigned long long)floors[k]);
        floors[k] = floor;
        /* Every acknowledged event at or above the floor is there, at its position, with its data. */
        uint64_t next = floor;
        for (;;) {
            factum_result_t *r;
            int rc = factum_read_stream(db, str_c(stream), next, 1000, 0, &r, NULL);
            if (rc == FACTUM_ENOTFOUND || rc == FACTUM_EDELETED) {
                CHECK_MSG((int64_t)floor > last, "%s reads as gone with revisions %llu..%lld visible", stream,
                          (unsigned long long)floor, (long long)last);
                break;
            }
            CHECK_RC(rc, 0);
            size_t cnt = factum_result_count(r);
            for (size_t i = 0; i < cnt; i++) {
                const factum_event_t *e = factum_result_event(r, i);
                CHECK_MSG(e->revision == next, "%s: revision %llu missing (got %llu)", stream, (unsigned long long)next,
                          (unsigned long long)e->revision);
                if (e->revision < 20000 && have[k][e->revision]) {
                    char nonce[32];
                    snprintf(nonce, sizeof nonce, "\"n\":%llu,", (unsigned long long)acked[k][e->revision].nonce);
                    CHECK_MSG(e->position == acked[k][e->revision].pos &&
                                  memmem(e->data.ptr, e->data.len, nonce, strlen(nonce)),
                              "%s/%llu is not the event acknowledged", stream, (unsigned long long)e->revision);
                }
                next++;
            }
            total += cnt;
            factum_result_free(r);
            if (cnt < 1000) break;
        }
        CHECK_MSG(next == (uint64_t)(last + 1) || (int64_t)floor > last, "%s: read up to %llu of %lld", stream,
                  (unsigned long long)next, (long long)last);
        for (uint64_t v = floor; v <= (uint64_t)MAX(last, 0) && v < 20000 && last >= 0; v++)
            CHECK_MSG(!have[k][v] || v < next, "%s: acknowledged revision %llu is lost", stream, (unsigned long long)v);
    }
    buf_t all = {0};
    snapshot_all(db, &all);
    size_t lines = 0;
    for (size_t i = 0; i < all.len; i++)
        lines += all.ptr[i] == '\n';
    CHECK_MSG(lines == total, "$all has %zu events, the streams %zu", lines, total);
    buf_free(&all);
}

TEST_T(kill_9_during_scavenges_loses_nothing_that_should_stay_and_brings_nothing_back, 240) {
    const char *dir = test_dir();
    char store[4200];
    snprintf(store, sizeof store, "%s/store", dir);
    uint64_t floors[CR_STREAMS] = {0};
    uint64_t rewritten = 0;
    for (int cycle = 0; cycle < CR_CYCLES; cycle++) {
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) cr_child(dir, store);
        usleep((useconds_t)(150000 + test_rand() % 450000));
        kill(pid, SIGKILL);
        int status;
        waitpid(pid, &status, 0);
        CHECK_MSG(WIFSIGNALED(status), "the child ended by itself (status %d)", status);
        factum_t *db = test_open(store, &small);
        cr_verify(db, dir, floors);
        factum_close(db);
    }
    /* A last full scavenge, then the same checks; something must have been rewritten. */
    factum_t *db = test_open(store, &small);
    CHECK_RC(factum_scavenge(db, NULL), 0);
    factum_scavenge_stats_t st;
    factum_scavenge_stats(db, &st);
    rewritten = st.segments_rewritten;
    cr_verify(db, dir, floors);
    factum_close(db);
    char path[4300];
    snprintf(path, sizeof path, "%s/log", store);
    DIR *d = opendir(path);
    size_t compacted = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        struct stat s;
        snprintf(path, sizeof path, "%s/log/%s", store, de->d_name);
        if (strstr(de->d_name, ".seg") && stat(path, &s) == 0 && s.st_size < (1 << 16)) compacted++;
    }
    closedir(d);
    CHECK_MSG(compacted >= 1, "%zu compacted segments (last run rewrote %llu)", compacted,
              (unsigned long long)rewritten);
}
