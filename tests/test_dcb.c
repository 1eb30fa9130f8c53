/*
 * test_dcb.c — dynamic consistency boundaries through a real server (docs/dcb.md): query reads
 * on GET /events, conditional appends on POST /events (409 naming the conflicting position,
 * nothing written), bad input, and 32 clients racing for the last seats of courses.
 */
#include "test_server.h"

#include "factum_client.h"

#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* GET /events?query=Q&rest, the query URL-encoded. */
static void query_path(char *out, size_t cap, const char *q, const char *rest) {
    size_t n = (size_t)snprintf(out, cap, "/events?query=");
    for (const char *p = q; *p && n + 4 < cap; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || strchr("-_.", *p))
            out[n++] = *p;
        else
            n += (size_t)snprintf(out + n, cap - n, "%%%02X", (unsigned char)*p);
    }
    snprintf(out + n, cap - n, "%s%s", rest[0] ? "&" : "", rest);
}

static size_t count(const char *body, const char *what) {
    size_t n = 0;
    for (const char *p = body; (p = strstr(p, what)); p++)
        n++;
    return n;
}

/* POST /events with one event; the status. */
static int post(int port, const char *stream, const char *type, const char *tags, const char *cond, resp *r) {
    char body[2048];
    snprintf(body, sizeof body, "{\"events\":[{\"type\":\"%s\",\"stream\":\"%s\",\"tags\":%s,\"data\":{}}]%s%s%s}",
             type, stream, tags, cond ? ",\"condition\":" : "", cond ? cond : "", "");
    http_do(port, "POST", "/events", "Content-Type: application/json\r\n", body, r);
    return r->status;
}

TEST(http_conditional_append_answers_409_naming_the_first_conflicting_position_and_writes_nothing) {
    srv s = srv_start(test_dir(), "");
    resp r;
    const char *uniq =
        "{\"failIfEventsMatch\":{\"items\":[{\"types\":[\"UserRegistered\"],\"tags\":[\"username:ann\"]}]}}";
    CHECK_EQ(post(s.port, "user-1", "UserRegistered", "[\"username:ann\"]", uniq, &r), 201);
    CHECK_MSG(json_u64(r.body, "position") == 0, "%s", r.body);
    resp_free(&r);
    CHECK_EQ(post(s.port, "user-2", "UserRegistered", "[\"username:ann\"]", uniq, &r), 409);
    CHECK_MSG(strstr(r.body, "condition-failed") && json_u64(r.body, "position") == 0 &&
                  strstr(r.head, "application/problem+json"),
              "%s", r.body);
    resp_free(&r);
    const char *bob =
        "{\"failIfEventsMatch\":{\"items\":[{\"types\":[\"UserRegistered\"],\"tags\":[\"username:bob\"]}]}}";
    CHECK_EQ(post(s.port, "user-2", "UserRegistered", "[\"username:bob\"]", bob, &r), 201); /* another name */
    resp_free(&r);
    /* after: only events past the position the client saw count. */
    const char *after = "{\"failIfEventsMatch\":{\"items\":[{\"tags\":[\"username:ann\"]}]},\"after\":0}";
    CHECK_EQ(post(s.port, "user-1", "UsernameChanged", "[\"username:ann\"]", after, &r), 201);
    resp_free(&r);
    CHECK_EQ(post(s.port, "user-1", "UsernameChanged", "[\"username:ann\"]", after, &r), 409);
    CHECK_MSG(json_u64(r.body, "position") == 2, "%s", r.body);
    resp_free(&r);
    char *all = http_body(s.port, "GET", "/all", NULL, NULL, 200);
    CHECK_EQ(count(all, "\"type\""), 3);
    CHECK_MSG(strstr(all, "\"tags\":\"username:ann\""), "%s", all); /* CloudEvents: one string */
    free(all);
    srv_stop(&s, 15);
}

TEST(http_query_reads_page_forward_and_backward_and_state_their_head) {
    srv s = srv_start(test_dir(), "");
    resp r;
    for (int i = 0; i < 12; i++) {
        char stream[16], tags[64];
        snprintf(stream, sizeof stream, "c-%d", i % 3);
        snprintf(tags, sizeof tags, "[\"course:c%d\",\"all\"]", i % 2);
        CHECK_EQ(post(s.port, stream, i % 4 ? "Subscribed" : "Defined", tags, NULL, &r), 201);
        resp_free(&r);
    }
    char path[1024], h[256];
    query_path(path, sizeof path, "{\"items\":[{\"types\":[\"Subscribed\"],\"tags\":[\"course:c1\"]}]}", "limit=2");
    http_do(s.port, "GET", path, NULL, NULL, &r);
    CHECK_EQ(r.status, 200);
    CHECK_MSG(count(r.body, "\"type\":\"Subscribed\"") == 2 && strstr(r.body, "\"position\":1,") &&
                  strstr(r.body, "\"position\":3,"),
              "%s", r.body);
    CHECK_MSG(!strcmp(resp_header(&r, "Factum-Head", h, sizeof h), "12"), "%s", r.head);
    CHECK_MSG(strstr(resp_header(&r, "Link", h, sizeof h), "from=4&limit=2&direction=forward&query="), "%s", h);
    resp_free(&r);
    query_path(path, sizeof path, "{\"items\":[{\"tags\":[\"stream:c-2\"]},{\"types\":[\"Defined\"]}]}",
               "direction=backward&limit=3");
    http_do(s.port, "GET", path, NULL, NULL, &r);
    CHECK_EQ(r.status, 200);
    /* c-2 is 2, 5, 8, 11; Defined is 0, 4, 8: backward 11, 8, 5 */
    const char *p11 = strstr(r.body, "\"position\":11,"), *p8 = strstr(r.body, "\"position\":8,"),
               *p5 = strstr(r.body, "\"position\":5,");
    CHECK_MSG(p11 && p8 && p5 && p11 < p8 && p8 < p5 && count(r.body, "\"position\"") == 3, "%s", r.body);
    resp_free(&r);
    srv_stop(&s, 15);
}

TEST(http_bad_queries_and_conditions_get_400_and_write_nothing) {
    srv s = srv_start(test_dir(), "");
    resp r;
    CHECK_EQ(post(s.port, "x", "T", "[\"a\"]", NULL, &r), 201);
    resp_free(&r);
    const char *bad[] = {
        "{\"items\":[]}",
        "{\"items\":[{}]}",
        "{\"items\":[{\"tags\":[\"\"]}]}",
        "{\"items\":[{\"tags\":[\"a\"],\"colour\":[\"red\"]}]}",
        "{\"items\":[{\"tags\":\"a\"}]}",
        "{\"things\":[]}",
        "[1]",
    };
    char path[8192];
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        query_path(path, sizeof path, bad[i], "");
        expect_status(s.port, "GET", path, NULL, NULL, 400, "bad-query");
        char cond[512];
        snprintf(cond, sizeof cond, "{\"failIfEventsMatch\":%s}", bad[i]);
        CHECK_MSG(post(s.port, "y", "T", "[\"a\"]", cond, &r) == 400, "%s: %s", bad[i], r.body);
        resp_free(&r);
    }
    /* one past the limits: 33 items, 33 tags in an item, a tag of 256 bytes */
    char q[8192];
    size_t n = (size_t)snprintf(q, sizeof q, "{\"items\":[");
    for (int i = 0; i < 33; i++)
        n += (size_t)snprintf(q + n, sizeof q - n, "%s{\"tags\":[\"t\"]}", i ? "," : "");
    snprintf(q + n, sizeof q - n, "]}");
    query_path(path, sizeof path, q, "");
    expect_status(s.port, "GET", path, NULL, NULL, 400, "at most 32 items");
    n = (size_t)snprintf(q, sizeof q, "{\"items\":[{\"tags\":[");
    for (int i = 0; i < 33; i++)
        n += (size_t)snprintf(q + n, sizeof q - n, "%s\"t%d\"", i ? "," : "", i);
    snprintf(q + n, sizeof q - n, "]}]}");
    query_path(path, sizeof path, q, "");
    expect_status(s.port, "GET", path, NULL, NULL, 400, "at most 32 tags");
    char big[300];
    memset(big, 'b', 256), big[256] = 0;
    snprintf(q, sizeof q, "{\"items\":[{\"tags\":[\"%s\"]}]}", big);
    query_path(path, sizeof path, q, "");
    expect_status(s.port, "GET", path, NULL, NULL, 400, "at most 255 bytes");
    expect_status(s.port, "GET", "/events", NULL, NULL, 400, "give the query");
    /* after beyond the head; a condition member it does not know */
    CHECK_EQ(
        post(s.port, "y", "T", "[\"a\"]", "{\"failIfEventsMatch\":{\"items\":[{\"tags\":[\"a\"]}]},\"after\":1}", &r),
        400);
    CHECK_MSG(strstr(r.body, "'after' is 1"), "%s", r.body);
    resp_free(&r);
    CHECK_EQ(
        post(s.port, "y", "T", "[\"a\"]", "{\"failIfEventsMatch\":{\"items\":[{\"tags\":[\"a\"]}]},\"before\":1}", &r),
        400);
    resp_free(&r);
    /* bad tags on the event: 400, and one past the tag count: 413 as every limit of an event */
    CHECK_EQ(post(s.port, "y", "T", "[\"stream:z\"]", NULL, &r), 400);
    resp_free(&r);
    n = (size_t)snprintf(q, sizeof q, "[");
    for (int i = 0; i < 33; i++)
        n += (size_t)snprintf(q + n, sizeof q - n, "%s\"t%d\"", i ? "," : "", i);
    snprintf(q + n, sizeof q - n, "]");
    CHECK_EQ(post(s.port, "y", "T", q, NULL, &r), 413);
    resp_free(&r);
    char *all = http_body(s.port, "GET", "/all", NULL, NULL, 200);
    CHECK_EQ(count(all, "\"type\""), 1);
    free(all);
    srv_stop(&s, 15);
}

/* ---- 32 clients race for the last seats ---- */

#define CLIENTS 32
#define COURSES 100
#define SEATS 3

typedef struct racer {
    int port, id;
    int won[COURSES];
    int refused;
} racer;

static void *race(void *arg) {
    racer *rc = arg;
    char q[256], path[1024], cond[512], stream[32], tags[64], h[32];
    for (int course = 0; course < COURSES; course++) {
        snprintf(q, sizeof q, "{\"items\":[{\"types\":[\"Subscribed\"],\"tags\":[\"course:c%d\"]}]}", course);
        query_path(path, sizeof path, q, "limit=100");
        for (;;) {
            resp r;
            http_do(rc->port, "GET", path, NULL, NULL, &r);
            CHECK_EQ(r.status, 200);
            size_t taken = count(r.body, "\"type\":\"Subscribed\"");
            uint64_t head = strtoull(resp_header(&r, "Factum-Head", h, sizeof h), NULL, 10);
            resp_free(&r);
            if (taken >= SEATS) break;
            /* Decided on what the read saw: no new subscription after its head. */
            if (head)
                snprintf(cond, sizeof cond, "{\"failIfEventsMatch\":%s,\"after\":%llu}", q,
                         (unsigned long long)head - 1);
            else
                snprintf(cond, sizeof cond, "{\"failIfEventsMatch\":%s}", q);
            snprintf(stream, sizeof stream, "student-%d", rc->id);
            snprintf(tags, sizeof tags, "[\"course:c%d\",\"student:s%d\"]", course, rc->id);
            int st = post(rc->port, stream, "Subscribed", tags, cond, &r);
            CHECK_MSG(st == 201 || st == 409, "%d %s", st, r.body);
            resp_free(&r);
            if (st == 201) rc->won[course]++;
            if (st == 409) rc->refused++;
        }
    }
    return NULL;
}

TEST_T(thirty_two_clients_racing_for_the_last_seats_fill_each_course_exactly, 300) {
    srv s = srv_start(test_dir(), "");
    racer r[CLIENTS];
    pthread_t t[CLIENTS];
    for (int i = 0; i < CLIENTS; i++) {
        r[i] = (racer){.port = s.port, .id = i};
        CHECK(pthread_create(&t[i], NULL, race, &r[i]) == 0);
    }
    int refused = 0;
    for (int i = 0; i < CLIENTS; i++) {
        pthread_join(t[i], NULL);
        refused += r[i].refused;
    }
    for (int c = 0; c < COURSES; c++) {
        int won = 0;
        for (int i = 0; i < CLIENTS; i++)
            won += r[i].won[c];
        CHECK_MSG(won == SEATS, "course %d: %d subscriptions acknowledged, %d seats", c, won, SEATS);
    }
    char *all = http_body(s.port, "GET", "/all?limit=10000", NULL, NULL, 200);
    CHECK_EQ(count(all, "\"type\":\"Subscribed\""), COURSES * SEATS);
    free(all);
    printf("  %d conditional appends refused by the writer\n", refused);
    srv_stop(&s, 15);
}

TEST(http_multi_stream_appends_check_each_expected_revision_and_write_all_or_nothing) {
    srv s = srv_start(test_dir(), "");
    resp r;
    const char *body = "{\"events\":[{\"id\":\"o-1\",\"type\":\"OrderPlaced\",\"stream\":\"order-1\"},"
                       "{\"id\":\"o-2\",\"type\":\"OrderPaid\",\"stream\":\"order-1\"},"
                       "{\"id\":\"s-1\",\"type\":\"StockReserved\",\"stream\":\"stock-7\"}],"
                       "\"expected_revision\":{\"order-1\":\"no_stream\",\"stock-7\":\"exists\"}}";
    http_do(s.port, "POST", "/events", NULL, body, &r);
    CHECK_MSG(r.status == 412 && strstr(r.body, "stock-7"), "%d %s", r.status, r.body);
    resp_free(&r);
    char *all = http_body(s.port, "GET", "/all", NULL, NULL, 200);
    CHECK_MSG(!strcmp(all, "[]"), "%s", all);
    free(all);
    char ok[1024];
    snprintf(ok, sizeof ok, "%s", body);
    memcpy(strstr(ok, "\"exists\""), "\"any\"   ", 8); /* still valid JSON */
    http_do(s.port, "POST", "/events", NULL, ok, &r);
    CHECK_MSG(r.status == 201 && json_u64(r.body, "first_position") == 0 && strstr(r.body, "\"stream\":\"stock-7\"") &&
                  strstr(r.body, "\"first_position\":2,\"position\":2}"),
              "%d %s", r.status, r.body);
    resp_free(&r);
    http_do(s.port, "POST", "/events", NULL, ok, &r); /* the same ids: an idempotent repeat */
    CHECK_MSG(r.status == 200 && strstr(r.body, "\"idempotent\":true"), "%d %s", r.status, r.body);
    resp_free(&r);
    expect_status(s.port, "POST", "/events", NULL,
                  "{\"events\":[{\"type\":\"A\",\"stream\":\"a\"},{\"type\":\"B\",\"stream\":\"b\"},"
                  "{\"type\":\"A\",\"stream\":\"a\"}]}",
                  400, "next to each other");
    expect_status(s.port, "POST", "/events", NULL,
                  "{\"events\":[{\"type\":\"A\",\"stream\":\"a\"},{\"type\":\"B\",\"stream\":\"b\"}],"
                  "\"expected_revision\":3}",
                  400, "an object by stream");
    expect_status(s.port, "POST", "/events", NULL,
                  "{\"events\":[{\"type\":\"A\",\"stream\":\"a\"}],\"expected_revision\":{\"zz\":3}}", 400,
                  "does not write");
    all = http_body(s.port, "GET", "/all", NULL, NULL, 200);
    CHECK_EQ(count(all, "\"type\""), 3);
    free(all);
    srv_stop(&s, 15);
}

/* The command line, embedded and against the server: --tag, --fail-if, --after, read --query. */
static void cli_round(const char *mode) {
    char out[8192];
    const char *q = "'{\"items\":[{\"types\":[\"Registered\"],\"tags\":[\"username:ann\"]}]}'";
    CHECK_EQ(run_factum(out, sizeof out,
                        "%s append user-1 Registered '{}' --tag username:ann --tag team:x --fail-if %s", mode, q),
             0);
    CHECK_MSG(strstr(out, "\"position\":0"), "%s", out);
    CHECK_EQ(run_factum(out, sizeof out, "%s append user-2 Registered '{}' --tag username:ann --fail-if %s", mode, q),
             8);
    CHECK_MSG(strstr(out, "position 0"), "%s", out);
    CHECK_EQ(run_factum(out, sizeof out, "%s append user-2 Registered '{}' --tag username:ann --fail-if %s --after 0",
                        mode, q),
             0);
    CHECK_EQ(run_factum(out, sizeof out, "%s read --query %s", mode, q), 0);
    CHECK_MSG(count(out, "\n") == 2 && strstr(out, "\"tags\":\"username:ann team:x\""), "%s", out);
    CHECK_EQ(run_factum(out, sizeof out, "%s read --query %s --backward --limit 1", mode, q), 0);
    CHECK_MSG(count(out, "\n") == 1 && strstr(out, "\"stream\":\"user-2\""), "%s", out);
    CHECK_EQ(run_factum(out, sizeof out, "%s read --query '{\"items\":[]}'", mode), 2);
    /* a multi-stream append from a file, all or none, with a condition */
    char file[1200]; /* a copy: test_path's buffers are reused */
    snprintf(file, sizeof file, "%s",
             test_file("streams.json", "[{\"type\":\"OrderPlaced\",\"stream\":\"order-9\",\"tags\":[\"order:9\"]},"
                                       "{\"type\":\"StockReserved\",\"stream\":\"stock-9\",\"tags\":[\"order:9\"]}]"));
    const char *once = "'{\"items\":[{\"tags\":[\"order:9\"]}]}'";
    CHECK_EQ(run_factum(out, sizeof out, "%s append --streams %s --fail-if %s", mode, file, once), 0);
    CHECK_MSG(strstr(out, "\"streams\":[{\"stream\":\"order-9\",\"revision\":0,\"position\":2},"
                          "{\"stream\":\"stock-9\",\"revision\":0,\"position\":3}]"),
              "%s", out);
    CHECK_EQ(run_factum(out, sizeof out, "%s append --streams %s --fail-if %s", mode, file, once), 8);
    CHECK_EQ(run_factum(out, sizeof out, "%s append order-9 T --streams %s", mode, file), 2);
    CHECK_EQ(run_factum(out, sizeof out, "%s append user-3 T --tag 'a b'", mode), 2);
    CHECK_EQ(run_factum(out, sizeof out, "%s append user-3 T --after 3", mode), 2);
}

TEST(the_cli_appends_with_tags_and_conditions_and_reads_by_query_in_both_modes) {
    char mode[1300];
    snprintf(mode, sizeof mode, "--data-dir %s/embedded", test_dir());
    cli_round(mode);
    srv s = srv_start(test_dir(), "");
    snprintf(mode, sizeof mode, "--server http://127.0.0.1:%d", s.port);
    cli_round(mode);
    srv_stop(&s, 15);
}

/* Reads the subscription on fd into b until it holds `want`; false at EOF or the timeout. */
static bool sse_until(int fd, buf_t *b, const char *want) {
    while (!(b->len && memmem(b->ptr, b->len, want, strlen(want)))) {
        char chunk[4096];
        ssize_t n = recv(fd, chunk, sizeof chunk, 0);
        if (n <= 0) return false;
        buf_append(b, chunk, (size_t)n);
        buf_append(b, "", 1), b->len--;
    }
    return true;
}

TEST(a_subscription_to_a_query_catches_up_goes_live_and_resumes_after_last_event_id) {
    srv s = srv_start(test_dir(), "");
    resp r;
    const char *tags[] = {"[\"t\"]", "[\"u\"]", "[\"t\",\"u\"]"};
    for (int i = 0; i < 3; i++) {
        CHECK_EQ(post(s.port, "s-1", "E", tags[i], NULL, &r), 201);
        resp_free(&r);
    }
    char path[1024], req[1400];
    query_path(path, sizeof path, "{\"items\":[{\"tags\":[\"t\"]}]}", "");
    int fd = http_connect(s.port);
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n", path);
    http_send(fd, req, (size_t)n);
    buf_t b = {0};
    CHECK_MSG(sse_until(fd, &b, "event: caught-up\ndata: {\"position\":3}"), "%.*s", (int)b.len, b.ptr);
    CHECK_MSG(strstr(b.ptr, "id: 0\n") && strstr(b.ptr, "id: 2\n") && !strstr(b.ptr, "id: 1\n"), "%s", b.ptr);
    CHECK_EQ(post(s.port, "s-2", "E", "[\"u\"]", NULL, &r), 201); /* 3: not for it */
    resp_free(&r);
    CHECK_EQ(post(s.port, "s-2", "E", "[\"t\"]", NULL, &r), 201); /* 4: live */
    resp_free(&r);
    CHECK_MSG(sse_until(fd, &b, "id: 4\n"), "%s", b.ptr);
    CHECK(!strstr(b.ptr, "id: 3\n"));
    close(fd);
    b.len = 0;
    fd = http_connect(s.port);
    n = snprintf(req, sizeof req,
                 "GET %s HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\nLast-Event-ID: 2\r\n\r\n", path);
    http_send(fd, req, (size_t)n);
    CHECK_MSG(sse_until(fd, &b, "event: caught-up"), "%s", b.ptr ? b.ptr : "");
    CHECK_MSG(strstr(b.ptr, "id: 4\n") && !strstr(b.ptr, "id: 2\n") && !strstr(b.ptr, "id: 0\n"), "%s", b.ptr);
    close(fd);
    buf_free(&b);
    srv_stop(&s, 15);
}

/* One event per stream, n streams (or n events of one stream to /dcb/append). */
static char *many(int n, bool dcb) {
    size_t cap = (size_t)n * 64 + 64, len = 0;
    char *b = malloc(cap);
    len += (size_t)snprintf(b, cap, "{\"events\":[");
    for (int i = 0; i < n; i++)
        len += (size_t)snprintf(b + len, cap - len,
                                dcb ? "%s{\"type\":\"T\"}" : "%s{\"type\":\"T\",\"stream\":\"m-%d\"}", i ? "," : "", i);
    snprintf(b + len, cap - len, "]}");
    return b;
}

TEST(multi_stream_and_dcb_appends_are_refused_one_past_their_limits) {
    srv s = srv_start(test_dir(), "");
    char *b = many(64, false);
    expect_status(s.port, "POST", "/events", NULL, b, 201, NULL);
    free(b);
    b = many(65, false);
    expect_status(s.port, "POST", "/events", NULL, b, 400, "at most 64 streams");
    free(b);
    b = many(64, true);
    expect_status(s.port, "POST", "/dcb/append", NULL, b, 200, NULL);
    free(b);
    b = many(65, true);
    expect_status(s.port, "POST", "/dcb/append", NULL, b, 400, "at most 64 events");
    free(b);
    char *all = http_body(s.port, "GET", "/all?limit=1000", NULL, NULL, 200);
    CHECK_EQ(count(all, "\"type\":\"T\""), 128);
    free(all);
    srv_stop(&s, 15);
}

TEST(the_c_client_appends_to_several_streams_with_a_condition_and_reads_by_query) {
    srv s = srv_start(test_dir(), "");
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", s.port);
    factum_client_t *c;
    CHECK_RC(factum_client_new(url, &c, NULL), 0);
    factum_event_t a[2] = {
        {.type = str_c("OrderPlaced"), .id = str_c("o-1"), .extensions = str_c("\"tags\":\"order:1\"")},
        {.type = str_c("OrderPaid"), .id = str_c("o-2"), .extensions = str_c("\"tags\":\"order:1\"")}};
    factum_event_t b[1] = {
        {.type = str_c("StockReserved"), .id = str_c("s-1"), .extensions = str_c("\"tags\":\"order:1\"")}};
    factum_stream_append_t parts[2] = {{str_c("order-1"), FACTUM_EXPECT_NO_STREAM, a, 2, {0}},
                                       {str_c("stock-7"), 4, b, 1, {0}}};
    factum_error_t err;
    CHECK_RC(factum_client_append_streams(c, parts, 2, NULL, &err), FACTUM_EREVISION);
    CHECK_MSG(strstr(err.message, "stock-7"), "%s", err.message);
    parts[1].expected = FACTUM_EXPECT_ANY;
    CHECK_RC(factum_client_append_streams(c, parts, 2, NULL, &err), 0);
    CHECK_EQ(parts[0].res.last_position, 1);
    CHECK_EQ(parts[1].res.first_position, 2);
    CHECK_RC(factum_client_append_streams(c, parts, 2, NULL, &err), 0); /* the same ids again */
    CHECK(parts[0].res.idempotent && parts[1].res.first_position == 2);
    factum_str_t tag = str_c("order:1");
    factum_query_item_t it = {NULL, 0, &tag, 1};
    factum_condition_t cond = {{&it, 1}, 1};
    factum_event_t late = {.type = str_c("OrderShipped")};
    factum_append_result_t r;
    CHECK_RC(factum_client_append_if(c, "order-1", FACTUM_EXPECT_ANY, &late, 1, &cond, &r, &err), FACTUM_ECONDITION);
    CHECK_EQ(r.conflict_position, 2);
    factum_events_t *got;
    uint64_t head, next;
    CHECK_RC(factum_client_read_tagged(c, &cond.fail_if, 0, 2, 0, &head, &next, &got, &err), 0);
    CHECK_EQ(factum_events_count(got), 2);
    CHECK_EQ(head, 3);
    CHECK_EQ(next, 2);
    factum_events_free(got);
    factum_client_free(c);
    srv_stop(&s, 15);
}
