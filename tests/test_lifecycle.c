/*
 * test_lifecycle.c — stream lifecycle (issue 5), what is built so far: aggregate snapshots and
 * reading from the latest one in one round trip.
 */
#include "test_server.h"

#include <signal.h>
#include <unistd.h>

#define CE "Content-Type: application/cloudevents+json\r\n"

TEST(snapshots_round_trip_and_from_snapshot_returns_the_tail_in_one_call) {
    srv s = srv_start(test_dir(), NULL);
    resp r;
    for (int i = 0; i < 8; i++) {
        char body[64];
        snprintf(body, sizeof body, "{\"type\":\"Added\",\"data\":{\"n\":%d}}", i);
        http_do(s.port, "POST", "/streams/cart-9", CE, body, &r);
        resp_free(&r);
    }
    /* Before any snapshot: null and every event. */
    http_do(s.port, "GET", "/streams/cart-9?from=snapshot", NULL, NULL, &r);
    CHECK_MSG(r.status == 200 && strstr(r.body, "{\"snapshot\":null,\"events\":[") && strstr(r.body, "\"revision\":0"), "%s", r.body);
    resp_free(&r);
    http_do(s.port, "GET", "/streams/cart-9/snapshot", NULL, NULL, &r);
    CHECK_EQ(r.status, 404);
    resp_free(&r);
    http_do(s.port, "PUT", "/streams/cart-9/snapshot", "Content-Type: application/json\r\n", "{\"revision\":3,\"state\":{\"count\":4}}", &r);
    CHECK_MSG(r.status == 201, "%d %s", r.status, r.body);
    resp_free(&r);
    http_do(s.port, "PUT", "/streams/cart-9/snapshot", "Content-Type: application/json\r\n", "{\"revision\":5,\"state\":{\"count\":6}}", &r);
    CHECK_EQ(r.status, 201);
    resp_free(&r);
    http_do(s.port, "GET", "/streams/cart-9/snapshot", NULL, NULL, &r);
    CHECK_MSG(r.status == 200 && strstr(r.body, "\"revision\":5") && strstr(r.body, "\"state\":{\"count\":6}"), "%s", r.body);
    resp_free(&r);
    http_do(s.port, "GET", "/streams/cart-9?from=snapshot", NULL, NULL, &r);
    CHECK_MSG(strstr(r.body, "\"snapshot\":{\"revision\":5") && !strstr(r.body, "\"revision\":5,\"position\"") &&
                  strstr(r.body, "\"revision\":6,") && strstr(r.body, "\"revision\":7,"),
              "%s", r.body);
    resp_free(&r);
    http_do(s.port, "GET", "/streams/cart-9?from=snapshot&limit=1", NULL, NULL, &r);
    char link[256];
    CHECK(strstr(resp_header(&r, "link", link, sizeof link), "from=7&limit=1"));
    resp_free(&r);
    /* Refused: past the last revision, unknown stream, bad body, system streams; nothing written. */
    const char *bad[][3] = {{"/streams/cart-9/snapshot", "{\"revision\":8,\"state\":1}", "400"},
                            {"/streams/none-1/snapshot", "{\"revision\":0,\"state\":1}", "404"},
                            {"/streams/cart-9/snapshot", "{\"state\":1}", "400"},
                            {"/streams/cart-9/snapshot", "{\"revision\":-1,\"state\":1}", "400"},
                            {"/streams/%24groups/snapshot", "{\"revision\":0,\"state\":1}", "400"}};
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        http_do(s.port, "PUT", bad[i][0], "Content-Type: application/json\r\n", bad[i][1], &r);
        CHECK_MSG(r.status == atoi(bad[i][2]), "%s %s: %d", bad[i][0], bad[i][1], r.status);
        resp_free(&r);
    }
    http_do(s.port, "GET", "/streams/cart-9/snapshot", NULL, NULL, &r);
    CHECK(strstr(r.body, "\"revision\":5"));
    resp_free(&r);
    /* Snapshots survive a restart; they stay out of /all. */
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    s = srv_start(test_dir(), NULL);
    http_do(s.port, "GET", "/streams/cart-9/snapshot", NULL, NULL, &r);
    CHECK(r.status == 200 && strstr(r.body, "\"count\":6"));
    resp_free(&r);
    http_do(s.port, "GET", "/all", NULL, NULL, &r);
    CHECK(!strstr(r.body, "Snapshot"));
    resp_free(&r);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}

/* Positions listed in a JSON array body, in order. */
static int positions(const char *body, int *out, int cap) {
    int n = 0;
    for (const char *p = body; n < cap && (p = strstr(p, "\"position\":")); p += 11) out[n++] = atoi(p + 11);
    return n;
}

TEST(temporal_reads_see_the_log_as_of_a_position_or_a_time) {
    srv s = srv_start(test_dir(), NULL);
    resp r;
    char t_mid[32] = "";
    for (int i = 0; i < 30; i++) {
        if (i == 15) {
            usleep(20000);
            time_format_rfc3339(clock_realtime_us(), t_mid);
            usleep(20000);
        }
        http_do(s.port, "POST", i % 2 ? "/streams/tmp-b" : "/streams/tmp-a", CE, "{\"type\":\"T\"}", &r);
        resp_free(&r);
    }
    /* The model: event i has position i; tmp-a holds the even positions. */
    int got[64], n;
    for (int until = 0; until < 31; until += 5) {
        char path[160];
        /* $all forward and backward */
        snprintf(path, sizeof path, "/all?until_position=%d&limit=100", until);
        http_do(s.port, "GET", path, NULL, NULL, &r);
        n = positions(r.body, got, 64);
        CHECK_MSG(n == MIN(until + 1, 30), "%s: %d events", path, n);
        for (int i = 0; i < n; i++) CHECK_EQ(got[i], i);
        resp_free(&r);
        snprintf(path, sizeof path, "/all?until_position=%d&direction=backward&limit=3", until);
        http_do(s.port, "GET", path, NULL, NULL, &r);
        n = positions(r.body, got, 64);
        int top = MIN(until, 29), want = MIN(3, top + 1);
        CHECK_MSG(n == want && got[0] == top && got[n - 1] == top - want + 1, "%s: %s", path, r.body);
        resp_free(&r);
        /* a stream forward and backward */
        snprintf(path, sizeof path, "/streams/tmp-a?until_position=%d&limit=100", until);
        http_do(s.port, "GET", path, NULL, NULL, &r);
        n = positions(r.body, got, 64);
        CHECK_MSG(n == MIN(until / 2 + 1, 15), "%s: %d", path, n);
        resp_free(&r);
        snprintf(path, sizeof path, "/streams/tmp-b?until_position=%d&direction=backward&limit=2", until);
        http_do(s.port, "GET", path, NULL, NULL, &r);
        n = positions(r.body, got, 64);
        int last_b = until >= 29 ? 29 : (until % 2 ? until : until - 1);
        if (last_b < 1) CHECK_MSG(n == 0, "%s: %s", path, r.body);
        else CHECK_MSG(n >= 1 && got[0] == last_b, "%s: %s", path, r.body);
        resp_free(&r);
    }
    /* (A backward read of $all without from starts at the end.) */
    http_do(s.port, "GET", "/all?direction=backward&limit=1", NULL, NULL, &r);
    CHECK_MSG(positions(r.body, got, 64) == 1 && got[0] == 29, "%s", r.body);
    resp_free(&r);
    /* As of a time: the first 15 events. */
    char path[160];
    snprintf(path, sizeof path, "/all?until_time=%s&limit=100", t_mid);
    http_do(s.port, "GET", path, NULL, NULL, &r);
    n = positions(r.body, got, 64);
    CHECK_MSG(n == 15 && got[14] == 14, "%s: %d", path, n);
    resp_free(&r);
    /* Paging keeps the view; bad values and subscriptions are refused. */
    http_do(s.port, "GET", "/all?until_position=9&limit=4", NULL, NULL, &r);
    char link[256];
    CHECK(strstr(resp_header(&r, "link", link, sizeof link), "until_position=9"));
    resp_free(&r);
    http_do(s.port, "GET", "/all?until_position=x", NULL, NULL, &r);
    CHECK_EQ(r.status, 400);
    resp_free(&r);
    http_do(s.port, "GET", "/all?until_time=yesterday", NULL, NULL, &r);
    CHECK_EQ(r.status, 400);
    resp_free(&r);
    http_do(s.port, "GET", "/all?until_position=3", "Accept: text/event-stream\r\n", NULL, &r);
    CHECK_EQ(r.status, 400);
    resp_free(&r);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}
