/*
 * test_timers.c — durable timers through the real server: they fire on time and once,
 * cancelled ones never fire, they survive restarts (one due while the server was down fires
 * on start), and a server killed with SIGKILL while firing thousands leaves each timer's event
 * in its stream exactly once.
 */
#include "test_server.h"

#include <signal.h>
#include <unistd.h>

/* Schedules an event of `type` on `stream` at now + ms; returns the id in id (37 bytes). */
static void schedule_in(int port, int64_t ms, const char *stream, const char *type, char *id) {
    char at[32], body[512];
    time_format_rfc3339(clock_realtime_us() + ms * 1000, at);
    snprintf(body, sizeof body, "{\"at\":\"%s\",\"stream\":\"%s\",\"event\":{\"type\":\"%s\",\"data\":{\"t\":\"%s\"}}}",
             at, stream, type, type);
    resp r;
    http_do(port, "POST", "/schedules", "Content-Type: application/json\r\n", body, &r);
    CHECK_MSG(r.status == 201, "schedule: %d %s", r.status, r.body);
    const char *p = strstr(r.body, "\"id\":\"");
    CHECK(p);
    snprintf(id, 37, "%s", p + 6);
    resp_free(&r);
}

static int count_in(const char *body, const char *needle) {
    int n = 0;
    for (const char *p = body; (p = strstr(p, needle)); p++)
        n++;
    return n;
}

static char *get(int port, const char *path, int *status) {
    resp r;
    http_do(port, "GET", path, NULL, NULL, &r);
    *status = r.status;
    return r.body; /* the caller frees */
}

TEST_T(timers_fire_on_time_once_and_cancelled_ones_never, 60) {
    srv s = srv_start(test_dir(), NULL);
    char a[37], b[37], c[37], path[128];
    int64_t t0 = clock_realtime_us();
    schedule_in(s.port, 300, "tm-1", "First", a);
    schedule_in(s.port, 600, "tm-1", "Second", b);
    schedule_in(s.port, 500, "tm-1", "Cancelled", c);
    snprintf(path, sizeof path, "/schedules/%s", c);
    resp r;
    http_do(s.port, "DELETE", path, NULL, NULL, &r);
    CHECK_EQ(r.status, 200);
    resp_free(&r);
    http_do(s.port, "DELETE", path, NULL, NULL, &r);
    CHECK_EQ(r.status, 409);
    resp_free(&r);
    http_do(s.port, "DELETE", "/schedules/nope", NULL, NULL, &r);
    CHECK_EQ(r.status, 404);
    resp_free(&r);
    /* Nothing before its time. */
    int st;
    char *body = get(s.port, "/streams/tm-1", &st);
    CHECK_EQ(st, 404);
    free(body);
    usleep(1000000);
    body = get(s.port, "/streams/tm-1", &st);
    CHECK_EQ(st, 200);
    CHECK_EQ(count_in(body, "\"type\":\"First\""), 1);
    CHECK_EQ(count_in(body, "\"type\":\"Second\""), 1);
    CHECK_EQ(count_in(body, "\"type\":\"Cancelled\""), 0);
    /* Fired at (not before) their time: the event's commit time is at or after `at`. */
    const char *first = strstr(body, "\"type\":\"First\"");
    const char *tm = strstr(first, "\"time\":\"");
    int64_t fired = time_parse_rfc3339((factum_str_t){tm + 8, 27});
    CHECK_MSG(fired >= t0 + 300000 && fired < t0 + 300000 + 500000, "fired %lld us after scheduling",
              (long long)(fired - t0));
    char want[64];
    snprintf(want, sizeof want, "\"id\":\"%s\"", a);
    CHECK(strstr(body, want) != NULL); /* the event id is the schedule id */
    free(body);
    snprintf(path, sizeof path, "/schedules/%s", a);
    body = get(s.port, path, &st);
    CHECK(st == 200 && strstr(body, "\"state\":\"fired\"") && strstr(body, "\"position\":"));
    free(body);
    snprintf(path, sizeof path, "/schedules/%s", c);
    body = get(s.port, path, &st);
    CHECK(st == 200 && strstr(body, "\"state\":\"cancelled\""));
    free(body);
    /* $schedules stays out of /all, and bad schedules are refused. */
    body = get(s.port, "/all", &st);
    CHECK(!strstr(body, "$schedules"));
    free(body);
    const char *bad[] = {
        "{\"at\":\"soon\",\"stream\":\"x-1\",\"event\":{\"type\":\"A\"}}",
        "{\"at\":\"2026-01-01T00:00:00Z\",\"stream\":\"$x\",\"event\":{\"type\":\"A\"}}",
        "{\"at\":\"2026-01-01T00:00:00Z\",\"stream\":\"x-1\",\"event\":{\"data\":1}}",
        "{\"at\":\"2026-01-01T00:00:00Z\",\"stream\":\"x-1\"}", "[1]",
        /* an unknown member is refused, never ignored */
        "{\"at\":\"2026-01-01T00:00:00Z\",\"stream\":\"x-1\",\"event\":{\"type\":\"A\"},\"repeat\":\"daily\"}"};
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        http_do(s.port, "POST", "/schedules", "Content-Type: application/json\r\n", bad[i], &r);
        CHECK_MSG(r.status == 400, "%s: %d", bad[i], r.status);
        resp_free(&r);
    }
    expect_status(s.port, "POST", "/schedules", "Content-Type: application/json\r\n", bad[ARRAY_LEN(bad) - 1], 400,
                  "unknown member \\\"repeat\\\"");
    http_do(s.port, "GET", "/metrics", NULL, NULL, &r);
    CHECK(strstr(r.body, "factum_timers_fired_total 2") && strstr(r.body, "factum_timers_cancelled_total 1") &&
          strstr(r.body, "factum_timers_pending 0"));
    resp_free(&r);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}

TEST_T(a_timer_due_while_the_server_was_down_fires_on_start_once, 60) {
    srv s = srv_start(test_dir(), NULL);
    char a[37], b[37];
    schedule_in(s.port, 300, "down-1", "WhileDown", a);
    schedule_in(s.port, 60000, "down-1", "Later", b);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    usleep(500000);
    s = srv_start(test_dir(), NULL);
    usleep(300000);
    int st;
    char *body = get(s.port, "/streams/down-1", &st);
    CHECK_EQ(st, 200);
    CHECK_EQ(count_in(body, "\"type\":\"WhileDown\""), 1);
    CHECK_EQ(count_in(body, "\"type\":\"Later\""), 0);
    free(body);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    s = srv_start(test_dir(), NULL); /* and a second start fires nothing again */
    usleep(300000);
    body = get(s.port, "/streams/down-1", &st);
    CHECK_EQ(count_in(body, "\"type\":\"WhileDown\""), 1);
    free(body);
    char path[128];
    snprintf(path, sizeof path, "/schedules/%s", b);
    body = get(s.port, path, &st);
    CHECK(st == 200 && strstr(body, "\"state\":\"pending\""));
    free(body);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}

TEST_T(killing_the_server_while_timers_fire_leaves_each_event_once, 180) {
    enum { N = 3000 };
    srv s = srv_start(test_dir(), NULL);
    static char ids[N][37];
    for (int i = 0; i < N; i++) {
        char stream[32];
        snprintf(stream, sizeof stream, "boom-%d", i % 7);
        schedule_in(s.port, 1500 + (i % 50) * 10, stream, "Boom", ids[i]);
    }
    /* Kill it in the middle of firing, a few times. */
    for (int cycle = 0; cycle < 4; cycle++) {
        usleep((useconds_t)(cycle == 0 ? 1500000 + test_rand() % 300000 : 100000 + test_rand() % 200000));
        srv_stop(&s, SIGKILL);
        s = srv_start(test_dir(), NULL);
    }
    usleep(1500000);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    /* Every timer's event exactly once, with the timer's id. */
    factum_t *db = test_open(test_dir(), NULL);
    static char seen[N];
    for (int st = 0; st < 7; st++) {
        char stream[32];
        snprintf(stream, sizeof stream, "boom-%d", st);
        for (uint64_t from = 0;;) {
            factum_result_t *r;
            CHECK_RC(factum_read_stream(db, str_c(stream), from, 1000, 0, &r, NULL), 0);
            for (size_t k = 0; k < factum_result_count(r); k++) {
                factum_str_t id = factum_result_event(r, k)->id;
                int found = -1;
                for (int i = st; i < N && found < 0; i += 7)
                    if (id.len == 36 && !memcmp(ids[i], id.ptr, 36)) found = i;
                CHECK_MSG(found >= 0, "an event no timer made: %.*s", (int)id.len, id.ptr);
                CHECK_MSG(!seen[found], "timer %s fired twice", ids[found]);
                seen[found] = 1;
            }
            size_t n = factum_result_count(r);
            from = factum_result_next(r);
            factum_result_free(r);
            if (n < 1000) break;
        }
    }
    for (int i = 0; i < N; i++)
        CHECK_MSG(seen[i], "timer %s never fired", ids[i]);
    factum_close(db);
}

#define HOUR_US (3600ll * 1000000)

/* Waits (for up to limit_s) until the metric reaches at least `want`. */
static bool metric_reaches(int port, const char *name, uint64_t want, int limit_s) {
    for (int i = 0; i < limit_s * 10; i++) {
        if (srv_metric(port, name) >= want) return true;
        usleep(100000);
    }
    return false;
}

TEST(a_timer_into_a_stream_deleted_for_ever_reports_failed_with_the_error) {
    srv s = srv_start(test_dir(), NULL);
    expect_status(s.port, "POST", "/streams/tomb-1", "Content-Type: application/cloudevents+json\r\n",
                  "{\"type\":\"A\"}", 201, NULL);
    expect_status(s.port, "DELETE", "/streams/tomb-1?tombstone=true", NULL, NULL, 200, NULL);
    char id[37], path[128];
    schedule_in(s.port, 0, "tomb-1", "TooLate", id);
    snprintf(path, sizeof path, "/schedules/%s", id);
    if (!http_wait_body(s.port, path, "\"state\":\"failed\"", 30)) {
        char *b = http_body(s.port, "GET", path, NULL, NULL, 200);
        CHECK_MSG(false, "the timer never ended as failed: %s", b);
    }
    for (int round = 0; round < 2; round++) { /* and the same after a restart */
        char *b = http_body(s.port, "GET", path, NULL, NULL, 200);
        /* The store's refusal, and no position (position 0 is another stream's event). */
        CHECK_MSG(strstr(b, "\"state\":\"failed\",\"error\":\"") && strstr(b, "deleted") && !strstr(b, "\"position\""),
                  "%s", b);
        free(b);
        CHECK_EQ(srv_metric(s.port, "factum_timers_failed_total"), 1);
        CHECK_EQ(srv_metric(s.port, "factum_timers_fired_total"), 0);
        expect_status(s.port, "DELETE", path, NULL, NULL, 409, "failed already");
        CHECK_EQ(srv_stop(&s, SIGTERM), 0);
        if (round == 0) s = srv_start(test_dir(), NULL);
    }
}

/* The ids of a GET /schedules page into ids (from *n on); the Link's after= into next ("" if none). */
static void list_page(int port, const char *path, char ids[][37], int *n, char next[128]) {
    resp r;
    http_do(port, "GET", path, NULL, NULL, &r);
    CHECK_MSG(r.status == 200, "%s: %d %s", path, r.status, r.body);
    for (const char *p = r.body; (p = strstr(p, "{\"id\":\"")); p += 7)
        snprintf(ids[(*n)++], 37, "%s", p + 7);
    char link[256];
    resp_header(&r, "link", link, sizeof link);
    const char *a = strstr(link, "/schedules?");
    next[0] = 0;
    if (a) snprintf(next, 128, "%.*s", (int)(strchr(a, '>') - a), a);
    resp_free(&r);
}

static int by_str(const void *a, const void *b) { return strcmp(a, b); }

TEST_T(pending_schedules_are_listed_in_pages_over_http_and_by_the_cli, 60) {
    srv s = srv_start(test_dir(), NULL);
    char pending[5][37], fired[37], path[128], next[128];
    for (int i = 0; i < 5; i++)
        schedule_in(s.port, 3600000, "later-1", "Later", pending[i]);
    schedule_in(s.port, 0, "now-1", "Now", fired);
    snprintf(path, sizeof path, "/schedules/%s", fired);
    CHECK(http_wait_body(s.port, path, "\"state\":\"fired\"", 30));
    /* Two at a time, following the Link, in id order: the five pending ones and no other. */
    char got[8][37];
    int n = 0, pages = 0;
    snprintf(next, sizeof next, "/schedules?state=pending&limit=2");
    while (next[0] && pages++ < 5) {
        snprintf(path, sizeof path, "%s", next);
        list_page(s.port, path, got, &n, next);
    }
    CHECK_EQ(n, 5);
    CHECK_EQ(pages, 3);
    qsort(pending, 5, sizeof pending[0], by_str);
    for (int i = 0; i < 5; i++)
        CHECK_MSG(!strcmp(got[i], pending[i]), "listed %s, want %s", got[i], pending[i]);
    char *b = http_body(s.port, "GET", "/schedules?state=fired", NULL, NULL, 200);
    CHECK_MSG(strstr(b, fired) && strstr(b, "\"state\":\"fired\",\"position\":") && !strstr(b, pending[0]), "%s", b);
    free(b);
    b = http_body(s.port, "GET", "/schedules", NULL, NULL, 200); /* every state */
    CHECK_MSG(strstr(b, fired) && strstr(b, pending[4]), "%s", b);
    free(b);
    expect_status(s.port, "GET", "/schedules?state=cancelled", NULL, NULL, 200, "[]");
    expect_status(s.port, "GET", "/schedules?state=sleeping", NULL, NULL, 400, "state");
    expect_status(s.port, "GET", "/schedules?limit=0", NULL, NULL, 400, "limit");
    expect_status(s.port, "GET", "/schedules?limit=1001", NULL, NULL, 400, "limit");
    expect_status(s.port, "GET", "/schedules?limit=1000", NULL, NULL, 200, NULL);
    expect_status(s.port, "GET", "/schedules?after=zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz", NULL, NULL, 200,
                  "[]"); /* 39 bytes, after every id */
    expect_status(s.port, "GET", "/schedules?after=0123456789012345678901234567890123456789", NULL, NULL, 400, "after");
    expect_status(s.port, "GET", "/schedules?colour=red", NULL, NULL, 400, "colour");
    expect_status(s.port, "PUT", "/schedules", NULL, "{}", 405, NULL);
    /* The CLI, against the server and then on the data folder itself. */
    char cmd[1024], out[16384];
    snprintf(cmd, sizeof cmd, "FACTUM_URL=http://127.0.0.1:%d %s schedule ls --state pending", s.port, test_bin());
    CHECK_EQ(test_run(cmd, out, sizeof out), 0);
    CHECK_EQ(count_in(out, "\n"), 5);
    CHECK(strstr(out, pending[0]) == out + 7 && !strstr(out, fired)); /* one JSON object a line, first id first */
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    snprintf(cmd, sizeof cmd, "%s --data-dir %s schedule ls", test_bin(), test_dir());
    CHECK_EQ(test_run(cmd, out, sizeof out), 0);
    CHECK_EQ(count_in(out, "\n"), 6);
    CHECK(strstr(out, fired) && strstr(out, "\"state\":\"fired\""));
    snprintf(cmd, sizeof cmd, "%s --data-dir %s schedule ls --state pending --after %s --limit 2", test_bin(),
             test_dir(), pending[1]);
    CHECK_EQ(test_run(cmd, out, sizeof out), 0);
    CHECK_EQ(count_in(out, "\n"), 2);
    CHECK(strstr(out, pending[2]) == out + 7 && strstr(out, pending[3]));
    snprintf(cmd, sizeof cmd, "%s --data-dir %s schedule ls --state later 2>/dev/null", test_bin(), test_dir());
    CHECK_EQ(test_run(cmd, out, sizeof out), 2);
    /* Nothing fired while the CLI looked. */
    s = srv_start(test_dir(), NULL);
    CHECK_EQ(srv_metric(s.port, "factum_timers_pending"), 5);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}

TEST_T(fired_and_cancelled_timer_records_are_reclaimed_and_pending_timers_still_fire_once, 300) {
    enum { N = 1100 };
    test_clock_fake();
    srv s = srv_start(test_dir(), "--segment-bytes 65536 --scavenge-every 0");
    /* Three timers an hour away, one cancelled: they outlive the compaction. */
    char late[3][37], gone[37], path[128], at[32], body[1024];
    for (int i = 0; i < 4; i++) {
        time_format_rfc3339(test_clock_now_us() + HOUR_US, at);
        snprintf(body, sizeof body, "{\"at\":\"%s\",\"stream\":\"late-1\",\"event\":{\"type\":\"Late\"}}", at);
        char *b = http_body(s.port, "POST", "/schedules", "Content-Type: application/json\r\n", body, 201);
        snprintf(i < 3 ? late[i] : gone, 37, "%s", strstr(b, "\"id\":\"") + 6);
        free(b);
    }
    snprintf(path, sizeof path, "/schedules/%s", gone);
    expect_status(s.port, "DELETE", path, NULL, NULL, 200, NULL);
    /* And 150 ten hours away whose records together pass a segment: copied a part at a time. */
    for (int i = 0; i < 150; i++) {
        time_format_rfc3339(test_clock_now_us() + 10 * HOUR_US, at);
        snprintf(body, sizeof body,
                 "{\"at\":\"%s\",\"stream\":\"far-1\",\"event\":{\"type\":\"Far\",\"data\":\"%0400d\"}}", at, i);
        expect_status(s.port, "POST", "/schedules", "Content-Type: application/json\r\n", body, 201, NULL);
    }
    /* Enough timers fire to compact $schedules once. */
    static char soon[N][37];
    for (int i = 0; i < N; i++) {
        char stream[32];
        snprintf(stream, sizeof stream, "soon-%d", i % 5);
        schedule_in(s.port, 0, stream, "Soon", soon[i]);
    }
    CHECK_MSG(metric_reaches(s.port, "factum_timers_fired_total", N, 120), "the timers did not all fire");
    CHECK_MSG(metric_reaches(s.port, "factum_timers_compactions_total", 1, 60), "no compaction");
    /* What ended before the compaction is gone from reads (and forgotten); the pending are not. */
    snprintf(path, sizeof path, "/schedules/%s", soon[0]);
    expect_status(s.port, "GET", path, NULL, NULL, 404, NULL);
    char *b = http_body(s.port, "GET", "/streams/%24schedules?limit=10000", NULL, NULL, 200);
    int visible = count_in(b, "\"stream\":\"$schedules\"");
    CHECK_MSG(visible < N / 2, "%d records of $schedules still visible", visible);
    for (int i = 0; i < 3; i++)
        CHECK_MSG(strstr(b, late[i]), "no copy of %s", late[i]);
    free(b);
    /* A scavenge takes them off the disk. */
    uint64_t removed = srv_scavenge(s.port);
    CHECK_MSG(removed >= N, "a scavenge removed %llu events", (unsigned long long)removed);
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "/schedules/%s", late[i]);
        expect_status(s.port, "GET", path, NULL, NULL, 200, "\"state\":\"pending\"");
    }
    /* After a restart the pending timers are there, and fire once when their time comes. */
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    s = srv_start(test_dir(), "--segment-bytes 65536 --scavenge-every 0");
    CHECK_EQ(srv_metric(s.port, "factum_timers_pending"), 153);
    test_clock_step(2 * HOUR_US);
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "/schedules/%s", late[i]);
        CHECK_MSG(http_wait_body(s.port, path, "\"state\":\"fired\"", 30), "%s did not fire", late[i]);
    }
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    s = srv_start(test_dir(), NULL);
    b = http_body(s.port, "GET", "/streams/late-1", NULL, NULL, 200);
    CHECK_EQ(count_in(b, "\"type\":\"Late\""), 3);
    for (int i = 0; i < 3; i++)
        CHECK_EQ(count_in(b, late[i]), 1);
    free(b);
    CHECK_EQ(srv_metric(s.port, "factum_timers_pending"), 150);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}
