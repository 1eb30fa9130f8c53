/*
 * test_clock.c — waits are measured on CLOCK_MONOTONIC and only what a user asked for "at" a
 * time follows the wall clock (docs/timers.md, "Clocks"). Each test starts a real server whose
 * wall clock it steps by an hour through FACTUM_TEST_CLOCK_FILE (src/base/misc.c; the machine's
 * clock is never touched) and shows that ack deadlines, retry delays, timers asked for as a
 * delay and saga step timeouts are neither held back by a step back nor brought forward by a
 * step forward, while a timer asked for at a time fires when the wall clock reads that time.
 *
 * No assertion is on a tight time: "comes within 20 s" where a held-back wait would take an
 * hour, and "has not happened 2 s after the step" where it is due 8 s after it.
 */
#include "test_server.h"

#include <signal.h>
#include <unistd.h>

#define JSON "Content-Type: application/json\r\n"
#define HOUR_US (3600ll * 1000000)
#define PATIENCE_S 20 /* a wait that was held back by the step would take an hour */

static double elapsed_s(uint64_t since_ns) { return (double)(clock_mono_ns() - since_ns) / 1e9; }

static bool body_has(int port, const char *path, const char *want) {
    resp r;
    http_do(port, "GET", path, NULL, NULL, &r);
    bool ok = r.status == 200 && strstr(r.body, want);
    resp_free(&r);
    return ok;
}

/* ---- consumer groups ---- */

/* One pull of at most one message; its delivery id into id ("" if none came). */
static void pull_one(int port, const char *group, char id[32]) {
    char path[160];
    snprintf(path, sizeof path, "/groups/%s/messages?max=1", group);
    resp r;
    http_do(port, "POST", path, NULL, "", &r);
    CHECK_MSG(r.status == 200, "pull: %d %s", r.status, r.body);
    const char *p = strstr(r.body, "\"delivery_id\":\"");
    id[0] = 0;
    if (p) snprintf(id, 32, "%.*s", (int)(strchr(p + 15, '"') - p - 15), p + 15);
    resp_free(&r);
}

/* Pulls until a message comes, for up to limit_s; its delivery id into id ("" if none). */
static void pull_within(int port, const char *group, int limit_s, char id[32]) {
    uint64_t t0 = clock_mono_ns();
    do {
        pull_one(port, group, id);
        if (id[0]) return;
        usleep(100000);
    } while (elapsed_s(t0) < limit_s);
}

static void post_group(int port, const char *group, const char *what, const char *body, int want) {
    char path[160];
    snprintf(path, sizeof path, "/groups/%s/%s", group, what);
    expect_status(port, "POST", path, JSON, body, want, NULL);
}

TEST_T(ack_deadlines_and_retry_delays_are_not_held_back_by_a_wall_clock_stepped_back, 120) {
    test_clock_fake();
    srv s = srv_start(test_dir(), NULL);
    expect_status(s.port, "POST", "/streams/clk-1", JSON, "{\"type\":\"Job\"}", 201, NULL);
    expect_status(s.port, "PUT", "/groups/g", JSON,
                  "{\"source\":{\"stream\":\"clk-1\"},\"start\":\"earliest\",\"ack_timeout_ms\":1000,"
                  "\"retry\":{\"min_delay_ms\":500,\"max_delay_ms\":500}}",
                  201, NULL);
    char id[32];
    pull_one(s.port, "g", id);
    CHECK_MSG(!strcmp(id, "0.1"), "first delivery: '%s'", id);

    /* Not acknowledged, and the wall clock goes back an hour: it comes again after its ack
       timeout (1 s) and retry delay (0.5 s) all the same. */
    test_clock_step(-HOUR_US);
    pull_within(s.port, "g", PATIENCE_S, id);
    CHECK_MSG(!strcmp(id, "0.2"), "after the ack timeout: '%s' (held back by the step?)", id);

    /* A nack with a delay, then another hour back: the delay is what counts. */
    post_group(s.port, "g", "nack", "{\"delivery_ids\":[\"0.2\"],\"action\":\"retry\",\"delay_ms\":1000}", 200);
    test_clock_step(-HOUR_US);
    pull_within(s.port, "g", PATIENCE_S, id);
    CHECK_MSG(!strcmp(id, "0.3"), "after the nack delay: '%s'", id);

    /* A retry due time is written on the wall clock; after a restart with the wall clock an hour
       further back it is due after what was left of its delay, not an hour later. */
    post_group(s.port, "g", "nack", "{\"delivery_ids\":[\"0.3\"],\"action\":\"retry\",\"delay_ms\":2000}", 200);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    test_clock_step(-HOUR_US);
    s = srv_start(test_dir(), NULL);
    pull_within(s.port, "g", PATIENCE_S, id);
    CHECK_MSG(!strcmp(id, "0.4"), "after a restart: '%s'", id);
    post_group(s.port, "g", "ack", "{\"delivery_ids\":[\"0.4\"]}", 200);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}

TEST_T(a_wall_clock_stepped_forward_neither_expires_an_ack_deadline_nor_ends_a_retry_delay_early, 120) {
    test_clock_fake();
    srv s = srv_start(test_dir(), NULL);
    expect_status(s.port, "POST", "/streams/clk-1", JSON, "{\"type\":\"Job\"}", 201, NULL);
    expect_status(s.port, "PUT", "/groups/g", JSON,
                  "{\"source\":{\"stream\":\"clk-1\"},\"start\":\"earliest\",\"ack_timeout_ms\":8000,"
                  "\"retry\":{\"min_delay_ms\":0,\"max_delay_ms\":0}}",
                  201, NULL);
    char id[32];
    pull_one(s.port, "g", id);
    CHECK_MSG(!strcmp(id, "0.1"), "first delivery: '%s'", id);
    uint64_t t0 = clock_mono_ns();
    test_clock_step(HOUR_US);
    usleep(2000000); /* the keeper looks every 50 ms */
    pull_one(s.port, "g", id);
    CHECK_MSG(!id[0] || elapsed_s(t0) >= 8, "delivered again early, as %s", id);
    /* Still in flight: the acknowledgement is taken. */
    post_group(s.port, "g", "ack", "{\"delivery_ids\":[\"0.1\"]}", 200);

    /* A retry delay, with the wall clock an hour further on: not due before its 8 s. */
    expect_status(s.port, "POST", "/streams/clk-1", JSON, "{\"type\":\"Job\"}", 201, NULL);
    pull_one(s.port, "g", id);
    CHECK_MSG(!strcmp(id, "1.1"), "second event: '%s'", id);
    post_group(s.port, "g", "nack", "{\"delivery_ids\":[\"1.1\"],\"action\":\"retry\",\"delay_ms\":8000}", 200);
    t0 = clock_mono_ns();
    test_clock_step(HOUR_US);
    usleep(2000000);
    pull_one(s.port, "g", id);
    CHECK_MSG(!id[0] || elapsed_s(t0) >= 8, "retried early, as %s", id);
    pull_within(s.port, "g", PATIENCE_S, id);
    CHECK_MSG(!strcmp(id, "1.2"), "after the delay: '%s'", id);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}

/* ---- timers ---- */

/* POST /schedules with `when` ("\"at\":\"...\"" or "\"delay_ms\":N"); the id into id. */
static void schedule(int port, const char *when, const char *type, char id[37]) {
    char body[512];
    snprintf(body, sizeof body, "{%s,\"stream\":\"clk-t\",\"event\":{\"type\":\"%s\"}}", when, type);
    resp r;
    http_do(port, "POST", "/schedules", JSON, body, &r);
    CHECK_MSG(r.status == 201, "schedule: %d %s", r.status, r.body);
    const char *p = strstr(r.body, "\"id\":\"");
    CHECK(p);
    snprintf(id, 37, "%s", p + 6);
    resp_free(&r);
}

static void schedule_at(int port, int64_t at_us, const char *type, char id[37]) {
    char at[32], when[64];
    time_format_rfc3339(at_us, at);
    snprintf(when, sizeof when, "\"at\":\"%s\"", at);
    schedule(port, when, type, id);
}

static void schedule_after(int port, int64_t delay_ms, const char *type, char id[37]) {
    char when[64];
    snprintf(when, sizeof when, "\"delay_ms\":%lld", (long long)delay_ms);
    schedule(port, when, type, id);
}

static const char *schedule_path(const char *id) {
    static char path[2][80];
    static int k;
    k ^= 1;
    snprintf(path[k], sizeof path[k], "/schedules/%s", id);
    return path[k];
}

TEST_T(a_timer_asked_for_as_a_delay_fires_on_time_when_the_wall_clock_steps_back, 120) {
    test_clock_fake();
    srv s = srv_start(test_dir(), NULL);
    char rel[37], abs[37];
    schedule_after(s.port, 2000, "Relative", rel);
    schedule_at(s.port, test_clock_now_us() + 2000000, "Absolute", abs);
    expect_status(s.port, "GET", schedule_path(rel), NULL, NULL, 200, "\"delay_ms\":2000");
    test_clock_step(-HOUR_US);
    CHECK_MSG(http_wait_body(s.port, schedule_path(rel), "\"state\":\"fired\"", PATIENCE_S),
              "the delay was held back by the step");
    /* The one asked for at a time waits for the wall clock to read that time... */
    usleep(2000000);
    CHECK_MSG(body_has(s.port, schedule_path(abs), "\"state\":\"pending\""),
              "fired before the wall clock read its time");
    /* ...which it does once the clock is put right again. */
    test_clock_step(HOUR_US);
    CHECK(http_wait_body(s.port, schedule_path(abs), "\"state\":\"fired\"", PATIENCE_S));
    expect_status(s.port, "GET", "/streams/clk-t", NULL, NULL, 200, "\"type\":\"Absolute\"");

    /* After a restart with the clock an hour back, a delay is what was left of it, no more. */
    schedule_after(s.port, 3000, "AfterRestart", rel);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    test_clock_step(-HOUR_US);
    s = srv_start(test_dir(), NULL);
    CHECK_MSG(http_wait_body(s.port, schedule_path(rel), "\"state\":\"fired\"", PATIENCE_S),
              "held back after a restart");
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}

TEST_T(a_wall_clock_stepped_forward_fires_timers_at_its_time_but_not_delays_early, 120) {
    test_clock_fake();
    srv s = srv_start(test_dir(), NULL);
    char rel[37], abs[37], later[37];
    schedule_after(s.port, 8000, "Relative", rel);
    schedule_at(s.port, test_clock_now_us() + HOUR_US / 2, "HalfAnHour", abs);
    schedule_at(s.port, test_clock_now_us() + 2 * HOUR_US, "TwoHours", later);
    uint64_t t0 = clock_mono_ns();
    test_clock_step(HOUR_US);
    /* The wall clock now reads past "in half an hour": the user asked for that time. */
    CHECK(http_wait_body(s.port, schedule_path(abs), "\"state\":\"fired\"", PATIENCE_S));
    /* A delay of 8 s is 8 s, whatever the wall clock reads. */
    CHECK_MSG(body_has(s.port, schedule_path(rel), "\"state\":\"pending\"") || elapsed_s(t0) >= 8,
              "a delay fired early");
    CHECK(body_has(s.port, schedule_path(later), "\"state\":\"pending\""));
    CHECK(http_wait_body(s.port, schedule_path(rel), "\"state\":\"fired\"", PATIENCE_S));
    CHECK(body_has(s.port, schedule_path(later), "\"state\":\"pending\""));
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}

TEST(a_schedule_takes_at_or_a_delay_up_to_366_days_but_not_both) {
    test_clock_fake();
    srv s = srv_start(test_dir(), NULL);
    const char *ev = "\"stream\":\"clk-t\",\"event\":{\"type\":\"T\"}}";
    char body[256];
    snprintf(body, sizeof body, "{\"delay_ms\":31622400000,%s", ev);
    expect_status(s.port, "POST", "/schedules", JSON, body, 201, "\"state\":\"pending\"");
    snprintf(body, sizeof body, "{\"delay_ms\":31622400001,%s", ev);
    expect_status(s.port, "POST", "/schedules", JSON, body, 400, "delay_ms");
    snprintf(body, sizeof body, "{\"delay_ms\":-1,%s", ev);
    expect_status(s.port, "POST", "/schedules", JSON, body, 400, "delay_ms");
    snprintf(body, sizeof body, "{\"delay_ms\":\"5\",%s", ev);
    expect_status(s.port, "POST", "/schedules", JSON, body, 400, "delay_ms");
    snprintf(body, sizeof body, "{\"delay_ms\":5,\"at\":\"2030-01-01T00:00:00Z\",%s", ev);
    expect_status(s.port, "POST", "/schedules", JSON, body, 400, "instead of 'at'");
    snprintf(body, sizeof body, "{%s", ev);
    expect_status(s.port, "POST", "/schedules", JSON, body, 400, "'at' must be");
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}

/* ---- sagas ---- */

/* One step that times out unless answered: timeout_ms given. */
static void put_saga(int port, int timeout_ms) {
    char def[512];
    snprintf(def, sizeof def,
             "{\"start_on\":\"Go\",\"instance_id\":\"data.id\",\"steps\":[{\"name\":\"wait\","
             "\"command\":{\"stream\":\"clk-cmd\",\"type\":\"Do\"},\"success\":[\"Done\"],\"timeout_ms\":%d}]}",
             timeout_ms);
    expect_status(port, "PUT", "/sagas/clk", JSON, def, 201, NULL);
}

static void start_instance(int port, const char *id) {
    char ev[128];
    snprintf(ev, sizeof ev, "{\"type\":\"Go\",\"data\":{\"id\":\"%s\"}}", id);
    expect_status(port, "POST", "/streams/go-1", JSON, ev, 201, NULL);
}

static const char *instance_path(const char *id) {
    static char path[80];
    snprintf(path, sizeof path, "/sagas/clk/instances/%s", id);
    return path;
}

TEST_T(a_saga_step_times_out_on_time_when_the_wall_clock_steps_back, 120) {
    test_clock_fake();
    srv s = srv_start(test_dir(), NULL);
    put_saga(s.port, 1500);
    /* Started, then the clock goes back. */
    start_instance(s.port, "a");
    CHECK(http_wait_body(s.port, instance_path("a"), "\"status\":\"running\"", PATIENCE_S));
    test_clock_step(-HOUR_US);
    CHECK_MSG(http_wait_body(s.port, instance_path("a"), "\"status\":\"failed\"", PATIENCE_S),
              "the timeout was held back");
    /* Started after the step: its start event's commit time may be ahead of the wall clock
       (commit times do not go back); the timeout is still 1.5 s. */
    start_instance(s.port, "b");
    CHECK_MSG(http_wait_body(s.port, instance_path("b"), "\"status\":\"failed\"", PATIENCE_S),
              "the timeout was held back");
    expect_status(s.port, "GET", instance_path("b"), NULL, NULL, 200, "timed out");
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}

TEST_T(a_wall_clock_stepped_forward_does_not_time_a_saga_step_out_early, 120) {
    test_clock_fake();
    srv s = srv_start(test_dir(), NULL);
    put_saga(s.port, 8000);
    start_instance(s.port, "c");
    CHECK(http_wait_body(s.port, instance_path("c"), "\"status\":\"running\"", PATIENCE_S));
    uint64_t t0 = clock_mono_ns();
    test_clock_step(HOUR_US);
    usleep(2000000);
    expect_status(s.port, "POST", "/streams/clk-replies", JSON, "{\"type\":\"Done\",\"correlationid\":\"c\"}", 201,
                  NULL);
    if (elapsed_s(t0) < 8) CHECK(http_wait_body(s.port, instance_path("c"), "\"status\":\"completed\"", PATIENCE_S));
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}

/* ---- commit times ---- */

/* The commit times of the events of stream s, in order, into t (at most n); how many. */
static size_t commit_times(int port, const char *s, int64_t *t, size_t n) {
    char path[160];
    snprintf(path, sizeof path, "/streams/%s?from=0&limit=100", s);
    resp r;
    http_do(port, "GET", path, NULL, NULL, &r);
    CHECK_EQ(r.status, 200);
    size_t k = 0;
    for (const char *p = r.body; k < n && (p = strstr(p, "\"time\":\"")); k++) {
        p += 8;
        const char *q = strchr(p, '"');
        CHECK(q && time_parse((factum_str_t){p, (size_t)(q - p)}, &t[k]) == 0);
        p = q;
    }
    resp_free(&r);
    return k;
}

TEST(commit_times_neither_go_back_nor_freeze_when_the_wall_clock_steps_back) {
    test_clock_fake();
    srv s = srv_start(test_dir(), "");
    expect_status(s.port, "POST", "/streams/ct", JSON, "{\"type\":\"T\",\"data\":{\"n\":0}}", 201, NULL);
    test_clock_step(-HOUR_US);
    expect_status(s.port, "POST", "/streams/ct", JSON, "{\"type\":\"T\",\"data\":{\"n\":1}}", 201, NULL);
    usleep(1000000);
    expect_status(s.port, "POST", "/streams/ct", JSON, "{\"type\":\"T\",\"data\":{\"n\":2}}", 201, NULL);
    int64_t t[3];
    CHECK_EQ(commit_times(s.port, "ct", t, 3), 3);
    CHECK_MSG(t[1] > t[0] && t[2] > t[1], "times %lld %lld %lld", (long long)t[0], (long long)t[1], (long long)t[2]);
    /* A second apart on the monotonic clock is about a second apart in commit time, not 1 µs. */
    CHECK_MSG(t[2] - t[1] >= 500000, "frozen: %lld µs between events appended a second apart",
              (long long)(t[2] - t[1]));
    CHECK_MSG(t[2] - t[0] < HOUR_US / 2, "times jumped: %lld µs", (long long)(t[2] - t[0]));
    srv_stop(&s, SIGTERM);
}
