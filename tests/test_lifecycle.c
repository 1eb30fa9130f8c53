/*
 * test_lifecycle.c — stream lifecycle (issue 5), what is built so far: aggregate snapshots and
 * reading from the latest one in one round trip.
 */
#include "test_server.h"

#include <signal.h>

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
