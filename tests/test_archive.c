/*
 * test_archive.c — archival to cold storage (docs/operations.md, "Archival"): sealed segments
 * whose newest event is old enough move to the archive folder (their files appear there and
 * leave log/) and every read returns exactly what it returned before — $all, streams, an SSE
 * catch-up from 0, a consumer group from the beginning — also after a restart; a kill -9 at
 * each step of a move leaves every event readable; a missing archive folder is reported (the
 * start's log, /health, the read's error) and nothing is silently skipped; a scavenge leaves
 * archived segments as they are; a backup copies them; bad option values are refused.
 *
 * Ages come from a wall clock the test steps (test_clock_step), never from waiting; the waits
 * below are for a state to appear, bounded, never on how long something took.
 */
#include "test_server.h"

#include <dirent.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define CE "Content-Type: application/cloudevents+json\r\n"
#define EVENTS 450
#define HOUR_US (3600ll * 1000000)

static bool exists(const char *dir, const char *name) {
    char p[1300];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return access(p, F_OK) == 0;
}

/* How many files in dir end in `ext`. */
static int count_ext(const char *dir, const char *ext) {
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *de;
    while (d && (de = readdir(d))) {
        size_t l = strlen(de->d_name), e = strlen(ext);
        if (l > e && !strcmp(de->d_name + l - e, ext)) n++;
    }
    if (d) closedir(d);
    return n;
}

/* EVENTS events of about 600 bytes over three streams: several 64 KiB segments. */
static void post_events(int port) {
    char body[800], path[64];
    for (int i = 0; i < EVENTS; i++) {
        snprintf(body, sizeof body, "{\"type\":\"T\",\"id\":\"e-%d\",\"data\":{\"i\":%d,\"pad\":\"%0500d\"}}", i, i, i);
        snprintf(path, sizeof path, "/streams/ar-%d", i % 3);
        expect_status(port, "POST", path, CE, body, 201, NULL);
    }
}

/* What the reads answer: $all and each stream, whole. */
typedef struct reads {
    char *all, *stream[3];
} reads;

static void take_reads(int port, reads *r) {
    r->all = http_body(port, "GET", "/all?limit=1000", NULL, NULL, 200);
    for (int k = 0; k < 3; k++) {
        char path[64];
        snprintf(path, sizeof path, "/streams/ar-%d?limit=1000", k);
        r->stream[k] = http_body(port, "GET", path, NULL, NULL, 200);
    }
}

static void same_reads(int port, const reads *want, const char *when) {
    reads got;
    take_reads(port, &got);
    CHECK_MSG(!strcmp(got.all, want->all), "%s: $all differs", when);
    for (int k = 0; k < 3; k++) {
        CHECK_MSG(!strcmp(got.stream[k], want->stream[k]), "%s: stream ar-%d differs", when, k);
        free(got.stream[k]);
    }
    free(got.all);
}

static void free_reads(reads *r) {
    free(r->all);
    for (int k = 0; k < 3; k++)
        free(r->stream[k]);
}

/* Makes the archive folder "cold"; the options of a server with 64 KiB segments archiving there. */
static void cold_options(char *opts, size_t cap, int after_s) {
    mkdir(test_path("cold"), 0755);
    snprintf(opts, cap, "--segment-bytes 65536 --archive-dir %s --archive-after %d", test_path("cold"), after_s);
}

/* POST /admin/archive: the pass's answer (the caller frees it). */
static char *archive_now(int port, int status) { return http_body(port, "POST", "/admin/archive", NULL, NULL, status); }

/* An SSE catch-up of $all from 0: every position comes, in order, up to `n`. */
static void sse_catch_up_from_zero(int port, int n) {
    int fd = http_connect(port);
    const char *req = "GET /all?from=0 HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n";
    http_send(fd, req, strlen(req));
    buf_t b = {0};
    char want[32], chunk[65536];
    snprintf(want, sizeof want, "\nid: %d\n", n - 1);
    while (!memmem(b.ptr ? b.ptr : "", b.len, want, strlen(want))) {
        ssize_t k = recv(fd, chunk, sizeof chunk, 0); /* the socket times out after 10 s */
        CHECK_MSG(k > 0, "the subscription ended after %zu bytes", b.len);
        buf_append(&b, chunk, (size_t)k);
    }
    close(fd);
    buf_append(&b, "", 1);
    CHECK_MSG(strstr(b.ptr, " 200 "), "subscription refused: %.200s", b.ptr);
    int next = 0;
    for (const char *p = strstr(b.ptr, "\nid: "); p; p = strstr(p + 1, "\nid: ")) {
        CHECK_MSG(atoi(p + 5) == next, "position %d came where %d was due", atoi(p + 5), next);
        next++;
    }
    CHECK_EQ(next, n);
    buf_free(&b);
}

/* A consumer group over a stream from its beginning: every event of it is delivered. */
static void group_reads_from_the_beginning(int port, const char *group, int want) {
    char path[128], body[256];
    snprintf(path, sizeof path, "/groups/%s", group);
    snprintf(body, sizeof body, "{\"source\":{\"stream\":\"ar-1\"},\"start\":\"earliest\"}");
    expect_status(port, "PUT", path, "Content-Type: application/json\r\n", body, 201, NULL);
    snprintf(path, sizeof path, "/groups/%s/messages?max=1000", group);
    int got = 0;
    for (int tries = 0; got < want && tries < 50; tries++) {
        char *r = http_body(port, "POST", path, NULL, "", 200);
        for (const char *p = strstr(r, "\"delivery_id\""); p; p = strstr(p + 1, "\"delivery_id\""))
            got++;
        free(r);
    }
    CHECK_EQ(got, want);
}

TEST_T(archival_moves_sealed_segments_and_reads_return_the_same_events, 180) {
    test_clock_fake();
    char opts[1200];
    cold_options(opts, sizeof opts, 3600);
    srv s = srv_start(test_path("data"), opts);
    post_events(s.port);
    reads before;
    take_reads(s.port, &before);
    /* Younger than an hour: a pass moves nothing. */
    char *r = archive_now(s.port, 200);
    CHECK_EQ(json_u64(r, "moved_segments"), 0);
    free(r);
    int sealed = count_ext(test_path("data/log"), ".seg") - 1;
    CHECK_MSG(sealed >= 3, "%d sealed segments", sealed);
    CHECK_EQ(count_ext(test_path("cold"), ".seg"), 0);
    /* Two hours later every sealed segment goes: its file in the archive, gone from log/. */
    test_clock_step(2 * HOUR_US);
    r = archive_now(s.port, 200);
    CHECK_EQ(json_u64(r, "moved_segments"), (uint64_t)sealed);
    CHECK_EQ(json_u64(r, "archived_segments"), (uint64_t)sealed);
    CHECK_EQ(json_u64(r, "hot_segments"), 1);
    free(r);
    CHECK_EQ(count_ext(test_path("cold"), ".seg"), sealed);
    CHECK_EQ(count_ext(test_path("data/log"), ".seg"), 1);
    CHECK_EQ(count_ext(test_path("data/log"), ".arch"), sealed);
    CHECK(exists(test_path("cold"), "00000000.seg") && !exists(test_path("data/log"), "00000000.seg"));
    CHECK_EQ(srv_metric(s.port, "factum_archive_segments"), sealed);
    CHECK(srv_metric(s.port, "factum_archive_bytes") > 0);
    CHECK_EQ(srv_metric(s.port, "factum_hot_segments"), 1);
    /* Reads across the boundary: exactly the same. */
    same_reads(s.port, &before, "after the move");
    sse_catch_up_from_zero(s.port, EVENTS);
    group_reads_from_the_beginning(s.port, "g1", EVENTS / 3);
    r = http_body(s.port, "GET", "/admin/archive", NULL, NULL, 200);
    CHECK(strstr(r, "\"enabled\":true") && strstr(r, "\"error\":null"));
    free(r);
    expect_status(s.port, "GET", "/health", NULL, NULL, 200, NULL);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    /* A restart reads them where they are. */
    s = srv_start(test_path("data"), opts);
    same_reads(s.port, &before, "after a restart");
    sse_catch_up_from_zero(s.port, EVENTS);
    group_reads_from_the_beginning(s.port, "g2", EVENTS / 3);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    free_reads(&before);
    /* The folder says format 3 once a segment is archived: a factum older than archival refuses
       it as newer instead of finding segments missing. */
    char format[4096], out[8192];
    snprintf(format, sizeof format, "%s/FORMAT", test_path("data"));
    FILE *ff = fopen(format, "r");
    CHECK(ff && fgets(out, sizeof out, ff) && !strcmp(out, "factum-format 3\n"));
    if (ff) fclose(ff);
    /* factum check follows the markers into the archive; factum admin archive says what is where. */
    CHECK_EQ(run_factum(out, sizeof out, "check --data-dir %s", test_path("data")), 0);
    CHECK_MSG(strstr(out, "clean"), "%s", out);
    CHECK_EQ(run_factum(out, sizeof out, "admin archive --data-dir %s", test_path("data")), 0);
    CHECK_EQ(json_u64(out, "archived_segments"), (uint64_t)sealed);
}

/* Waits (bounded) until the server has made `name` in dir and, when `also` is given, it is
   still there too. */
static void wait_for(const char *dir, const char *name, const char *also) {
    for (int i = 0; i < 3000; i++) {
        if (exists(dir, name) && (!also || exists(dir, also))) return;
        usleep(10000);
    }
    CHECK_MSG(false, "%s/%s never came", dir, name);
}

TEST_T(kill_9_during_an_archival_pass_leaves_every_event_readable, 180) {
    srv s = srv_start(test_path("data"), "--segment-bytes 65536");
    post_events(s.port);
    reads before;
    take_reads(s.port, &before);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    char opts[1200];
    cold_options(opts, sizeof opts, 0);
    /* Each move pauses after its copy and after its marker (FACTUM_TEST_ARCHIVE_SLEEP_MS). */
    setenv("FACTUM_TEST_ARCHIVE_SLEEP_MS", "2000", 1);
    /* Killed while the first segment is copied (or copied, not yet recorded). */
    s = srv_start(test_path("data"), opts);
    wait_for(test_path("cold"), "00000000.seg", NULL);
    srv_stop(&s, SIGKILL);
    CHECK(exists(test_path("data/log"), "00000000.seg"));
    s = srv_start(test_path("data"), opts);
    same_reads(s.port, &before, "after a kill during the copy");
    /* Killed after the marker, before the segment left log/: both places hold it. */
    wait_for(test_path("data/log"), "00000000.arch", "00000000.seg");
    srv_stop(&s, SIGKILL);
    CHECK(exists(test_path("data/log"), "00000000.seg") && exists(test_path("cold"), "00000000.seg"));
    unsetenv("FACTUM_TEST_ARCHIVE_SLEEP_MS");
    /* The open finishes that move (the copy checks out), and the pass moves the rest. */
    s = srv_start(test_path("data"), opts);
    CHECK(!exists(test_path("data/log"), "00000000.seg"));
    same_reads(s.port, &before, "after a kill between the marker and the removal");
    char *r = archive_now(s.port, 200);
    CHECK(json_u64(r, "archived_segments") >= 3);
    free(r);
    same_reads(s.port, &before, "after the pass finished");
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    free_reads(&before);
    char out[8192];
    CHECK_EQ(run_factum(out, sizeof out, "check --data-dir %s", test_path("data")), 0);
    CHECK_MSG(strstr(out, "clean"), "%s", out);
}

TEST_T(a_missing_archive_folder_is_reported_and_reads_of_archived_events_fail_clearly, 120) {
    char opts[1200];
    cold_options(opts, sizeof opts, 0);
    srv s = srv_start(test_path("data"), opts);
    post_events(s.port);
    reads before;
    take_reads(s.port, &before);
    free(archive_now(s.port, 200));
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    CHECK(rename(test_path("cold"), test_path("cold-away")) == 0);
    /* The start says so, naming the folder; /health is degraded; reads of archived events fail
       naming it, and events on the fast disk still read. */
    s = srv_start_log(test_path("data"), opts, test_path("serve.log"));
    char out[8192], want[1200];
    CHECK_EQ(run_factum(out, sizeof out, "admin archive --server http://127.0.0.1:%d", s.port), 0);
    CHECK(json_u64(out, "unavailable_segments") >= 3);
    snprintf(want, sizeof want, "the archive folder %s cannot be used", test_path("cold"));
    char log[8192] = "";
    FILE *lf = fopen(test_path("serve.log"), "r");
    CHECK(lf);
    log[fread(log, 1, sizeof log - 1, lf)] = 0;
    fclose(lf);
    CHECK_MSG(strstr(log, want), "the start's log: %s", log);
    resp h;
    http_do(s.port, "GET", "/health", NULL, NULL, &h);
    CHECK_MSG(h.status == 503 && strstr(h.body, "\"degraded\"") && strstr(h.body, want), "/health: %d %s", h.status,
              h.body);
    resp_free(&h);
    snprintf(want, sizeof want, "archived as %s/00000000.seg, which cannot be read", test_path("cold"));
    expect_status(s.port, "GET", "/all?limit=1000", NULL, NULL, 503, want);
    expect_status(s.port, "GET", "/streams/ar-0?limit=1000", NULL, NULL, 503, "cannot be read");
    char path[64];
    snprintf(path, sizeof path, "/all?from=%d", EVENTS - 1);
    expect_status(s.port, "GET", path, NULL, NULL, 200, "\"position\":449");
    CHECK_EQ(srv_metric(s.port, "factum_archive_unavailable_segments"), json_u64(out, "unavailable_segments"));
    expect_status(s.port, "POST", "/admin/archive", NULL, NULL, 503, "cannot be used");
    /* The folder back: the next pass finds it, and everything reads as before. */
    CHECK(rename(test_path("cold-away"), test_path("cold")) == 0);
    free(archive_now(s.port, 200));
    expect_status(s.port, "GET", "/health", NULL, NULL, 200, NULL);
    same_reads(s.port, &before, "with the folder back");
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    free_reads(&before);
}

TEST_T(a_scavenge_after_archival_leaves_archived_segments_as_they_are, 120) {
    char opts[1200];
    cold_options(opts, sizeof opts, 0);
    srv s = srv_start(test_path("data"), opts);
    post_events(s.port);
    free(archive_now(s.port, 200));
    int archived = count_ext(test_path("cold"), ".seg");
    CHECK(archived >= 3);
    struct stat st0;
    CHECK(stat(test_path("cold/00000000.seg"), &st0) == 0);
    /* ar-0 deleted: its events are everywhere, archived ones included. */
    expect_status(s.port, "DELETE", "/streams/ar-0", NULL, NULL, 200, NULL);
    char *keep = http_body(s.port, "GET", "/streams/ar-1?limit=1000", NULL, NULL, 200);
    srv_scavenge(s.port);
    char *r = http_body(s.port, "GET", "/admin/scavenge", NULL, NULL, 200);
    CHECK_EQ(json_u64(r, "segments_archived"), (uint64_t)archived);
    free(r);
    /* The archive is as it was; the deleted stream stays deleted; the others read the same. */
    struct stat st1;
    CHECK(stat(test_path("cold/00000000.seg"), &st1) == 0);
    CHECK_EQ(st1.st_size, st0.st_size);
    CHECK_EQ(st1.st_mtime, st0.st_mtime);
    CHECK_EQ(count_ext(test_path("cold"), ".seg"), archived);
    expect_status(s.port, "GET", "/streams/ar-0", NULL, NULL, 404, NULL);
    char *again = http_body(s.port, "GET", "/streams/ar-1?limit=1000", NULL, NULL, 200);
    CHECK(!strcmp(keep, again));
    free(keep);
    free(again);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}

TEST(an_embedded_store_archives_and_a_backup_copies_the_archived_segments) {
    mkdir(test_path("cold"), 0755);
    factum_options_t o = {.segment_bytes = 1u << 16, .archive_dir = test_path("cold"), .archive_after_s = 0};
    factum_t *db = test_open(test_path("data"), &o);
    char data[600];
    for (int i = 0; i < EVENTS; i++) {
        snprintf(data, sizeof data, "{\"i\":%d,\"pad\":\"%0500d\"}", i, i);
        CHECK_RC(test_append(db, "emb", FACTUM_EXPECT_ANY, "T", data, NULL, NULL), 0);
    }
    factum_archive_stats_t st;
    factum_error_t err;
    CHECK_RC(factum_archive(db, &st, &err), 0);
    CHECK(st.archived_segments >= 3 && st.hot_segments == 1 && st.archived_bytes > 0);
    factum_result_t *res;
    CHECK_RC(factum_read_stream(db, str_c("emb"), 0, 1000, 0, &res, &err), 0);
    CHECK_EQ(factum_result_count(res), EVENTS);
    for (size_t i = 0; i < factum_result_count(res); i++)
        CHECK_EQ(factum_result_event(res, i)->revision, i);
    factum_result_free(res);
    /* The backup is a whole data folder: archived segments copied into its log/, no markers. */
    factum_backup_stats_t bst;
    CHECK_RC(factum_backup(db, test_path("bk"), NULL, NULL, &bst, &err), 0);
    CHECK_EQ(bst.position, EVENTS);
    factum_close(db);
    CHECK_EQ(count_ext(test_path("bk/log"), ".arch"), 0);
    CHECK_EQ(count_ext(test_path("bk/log"), ".seg"), (int)st.archived_segments + 1);
    db = test_open(test_path("bk"), NULL);
    CHECK_RC(factum_read_stream(db, str_c("emb"), 0, 1000, 0, &res, &err), 0);
    CHECK_EQ(factum_result_count(res), EVENTS);
    factum_result_free(res);
    factum_close(db);
    /* Without it: a pass is refused, the archive folder cannot be inside the data folder. */
    db = test_open(test_path("other"), NULL);
    CHECK_RC(factum_archive(db, NULL, &err), FACTUM_EINVAL);
    factum_close(db);
    factum_options_t inside = {.archive_dir = test_path("data/cold")};
    CHECK_RC(factum_open(test_path("data"), &inside, &db, &err), FACTUM_EINVAL);
    CHECK_MSG(strstr(err.message, "outside"), "%s", err.message);
}

TEST(bad_archive_options_are_refused_one_past_their_limits) {
    char out[8192];
    /* --archive-after: 100 years is the most. */
    CHECK_EQ(run_factum(out, sizeof out, "serve --data-dir %s --archive-after 3153600001", test_path("data")), 2);
    CHECK_MSG(strstr(out, "--archive-after wants seconds from 0"), "%s", out);
    CHECK(access(test_path("data"), F_OK) != 0); /* nothing made */
    CHECK_EQ(run_factum(out, sizeof out, "serve --data-dir %s --archive-after -1", test_path("data")), 2);
    FILE *f = fopen(test_path("factum.conf"), "w");
    fprintf(f, "archive-dir = /tmp\narchive-after = 3153600000\n");
    fclose(f);
    CHECK_EQ(run_factum(out, sizeof out, "config check %s", test_path("factum.conf")), 0);
    f = fopen(test_path("factum.conf"), "w");
    fprintf(f, "archive-dir = /tmp\narchive-after = 3153600001\narchive-dir =\n");
    fclose(f);
    CHECK_EQ(run_factum(out, sizeof out, "config check %s", test_path("factum.conf")), 1);
    CHECK_MSG(strstr(out, "factum.conf:2: archive-after wants seconds"), "%s", out);
    CHECK_MSG(strstr(out, "factum.conf:3: archive-dir needs a value"), "%s", out);
    /* The library: one past the age, a path one byte too long, and one inside the data folder. */
    factum_t *db;
    factum_error_t err;
    factum_options_t o = {.archive_dir = "/tmp", .archive_after_s = FACTUM_MAX_ARCHIVE_AFTER_S + 1};
    CHECK_RC(factum_open(test_path("lib"), &o, &db, &err), FACTUM_EINVAL);
    char *longp = malloc(FACTUM_MAX_DIR + 2);
    snprintf(longp, FACTUM_MAX_DIR + 2, "%s", test_dir());
    while (strlen(longp) + 201 < FACTUM_MAX_DIR) { /* folders of 200 bytes down to the limit */
        size_t n = strlen(longp);
        longp[n] = '/';
        memset(longp + n + 1, 'a', 200);
        longp[n + 201] = 0;
        CHECK(mkdir(longp, 0755) == 0);
    }
    size_t n = strlen(longp);
    longp[n] = '/';
    memset(longp + n + 1, 'b', FACTUM_MAX_DIR - n - 1);
    longp[FACTUM_MAX_DIR] = 0;
    CHECK(mkdir(longp, 0755) == 0);
    o = (factum_options_t){.archive_dir = longp};
    CHECK_RC(factum_open(test_path("lib"), &o, &db, &err), 0); /* at the limit: taken */
    factum_close(db);
    longp[FACTUM_MAX_DIR] = 'b', longp[FACTUM_MAX_DIR + 1] = 0;
    CHECK_RC(factum_open(test_path("lib"), &o, &db, &err), FACTUM_EINVAL);
    free(longp);
    /* A folder that is missing is the store's problem, shown, and a pass fails naming it. */
    o = (factum_options_t){.archive_dir = test_path("nowhere")};
    CHECK_RC(factum_open(test_path("lib"), &o, &db, &err), 0);
    factum_archive_stats_t st;
    factum_archive_stats(db, &st);
    CHECK(st.folder_unusable && strstr(st.error, "cannot be used"));
    CHECK_RC(factum_archive(db, NULL, &err), FACTUM_EIO);
    CHECK_MSG(strstr(err.message, test_path("nowhere")), "%s", err.message);
    factum_close(db);
    /* A server without --archive-dir: a pass is refused (409), what is where is shown. */
    srv s = srv_start(test_path("plain"), NULL);
    expect_status(s.port, "POST", "/admin/archive", NULL, NULL, 409, "no archive folder");
    expect_status(s.port, "POST", "/admin/archive", NULL, "{}", 400, "no body");
    expect_status(s.port, "GET", "/admin/archive", NULL, NULL, 200, "\"enabled\":false");
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    /* factum admin archive --run needs a folder on a data folder. */
    CHECK_EQ(run_factum(out, sizeof out, "admin archive --run --data-dir %s", test_path("lib")), 2);
    CHECK_MSG(strstr(out, "--archive-dir"), "%s", out);
}
