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
    snprintf(body, sizeof body, "{\"at\":\"%s\",\"stream\":\"%s\",\"event\":{\"type\":\"%s\",\"data\":{\"t\":\"%s\"}}}", at,
             stream, type, type);
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
    for (const char *p = body; (p = strstr(p, needle)); p++) n++;
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
    const char *bad[] = {"{\"at\":\"soon\",\"stream\":\"x-1\",\"event\":{\"type\":\"A\"}}",
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
    for (int i = 0; i < N; i++) CHECK_MSG(seen[i], "timer %s never fired", ids[i]);
    factum_close(db);
}
