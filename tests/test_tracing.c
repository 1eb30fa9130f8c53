/*
 * test_tracing.c — W3C Trace Context on events (issue 19, part 8) against a real server:
 * malformed traceparent / tracestate refused with nothing written, the attributes returned as
 * given on reads, SSE and group deliveries, the traceparent header of an HTTP request applied to
 * events without one, and the trace carried by what sagas and timers write because of an event;
 * and the tracestate grammar on its own, at each limit and one past.
 */
#include "../src/base/trace.h"
#include "test_server.h"

#include <signal.h>
#include <unistd.h>

#define CE "Content-Type: application/cloudevents+json\r\n"
#define JSON "Content-Type: application/json\r\n"
#define TRACE "4bf92f3577b34da6a3ce929d0e0e4736"
#define TP "00-" TRACE "-00f067aa0ba902b7-01"
#define TRACE2 "0af7651916cd43dd8448eb211c80319c"
#define TP2 "00-" TRACE2 "-b7ad6b7169203331-00"

/* An event of type T with extension members MEMBERS (JSON text, may be ""). */
static void event_with(char *out, size_t cap, const char *members) {
    snprintf(out, cap, "{\"type\":\"T\"%s%s,\"data\":{}}", *members ? "," : "", members);
}

/* A tracestate of n members k0=v,k1=v,... */
static void state_of(char *out, size_t cap, int n) {
    size_t len = 0;
    for (int i = 0; i < n; i++)
        len += (size_t)snprintf(out + len, cap - len, "%sk%d=v", i ? "," : "", i);
}

/* A tracestate of exactly total bytes: members of 100-byte values, the last one shorter. */
static void state_bytes(char *out, size_t total) {
    size_t len = 0;
    for (int i = 0; len < total; i++) {
        if (i) out[len++] = ',';
        int kn = sprintf(out + len, "k%d=", i);
        len += (size_t)kn;
        size_t vn = total - len > 200 ? 100 : total - len;
        memset(out + len, 'v', vn);
        len += vn;
    }
    out[len] = 0;
}

TEST(malformed_trace_context_is_refused_with_400_and_writes_nothing) {
    srv s = srv_start(test_dir(), NULL);
    char ev[4096], m[2048], st[1024];
    const char *bad[][2] = {
        {"\"traceparent\":\"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01\"", "lowercase hex"},
        {"\"traceparent\":\"00-00000000000000000000000000000000-00f067aa0ba902b7-01\"", "not all zero"},
        {"\"traceparent\":\"00-" TRACE "-0000000000000000-01\"", "not all zero"},
        {"\"traceparent\":\"01-" TRACE "-00f067aa0ba902b7-01\"", "version 00"},
        {"\"traceparent\":\"00-" TRACE "-00f067aa0ba902b7-01-extra\"", "55 characters"},
        {"\"traceparent\":\"0-" TRACE "-00f067aa0ba902b7-001\"", "55 characters"},
        {"\"traceparent\":\"00-" TRACE "-00f067aa0ba902b7-0G\"", "flags"},
        {"\"traceparent\":7", "must be a string"},
        {"\"tracestate\":\"a=1\"", "needs a traceparent"},
        {"\"traceparent\":\"" TP "\",\"tracestate\":\"Upper=1\"", "a key must be"},
        {"\"traceparent\":\"" TP "\",\"tracestate\":\"a=1,a=2\"", "appears twice"},
        {"\"traceparent\":\"" TP "\",\"tracestate\":\"a=x=y\"", "a value must be"},
    };
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        event_with(ev, sizeof ev, bad[i][0]);
        expect_status(s.port, "POST", "/streams/bad-1", CE, ev, 400, bad[i][1]);
    }
    /* One past each limit of a tracestate: 33 members, 513 bytes. At the limit, accepted. */
    state_of(st, sizeof st, 33);
    snprintf(m, sizeof m, "\"traceparent\":\"" TP "\",\"tracestate\":\"%s\"", st);
    event_with(ev, sizeof ev, m);
    expect_status(s.port, "POST", "/streams/bad-1", CE, ev, 400, "more than 32 list members");
    state_bytes(st, 513);
    CHECK_EQ(strlen(st), 513);
    snprintf(m, sizeof m, "\"traceparent\":\"" TP "\",\"tracestate\":\"%s\"", st);
    event_with(ev, sizeof ev, m);
    expect_status(s.port, "POST", "/streams/bad-1", CE, ev, 400, "longer than 512 bytes");
    /* A batch with one bad event writes none of it; binary mode and a bad header are refused too. */
    expect_status(s.port, "POST", "/streams/bad-1", "Content-Type: application/cloudevents-batch+json\r\n",
                  "[{\"type\":\"T\"},{\"type\":\"T\",\"traceparent\":\"00-x\"}]", 400, "event 1: traceparent");
    expect_status(s.port, "POST", "/streams/bad-1",
                  "ce-type: T\r\nce-traceparent: 00-" TRACE "-00F067AA0BA902B7-01\r\nContent-Type: text/plain\r\n", "x",
                  400, "parent id");
    expect_status(s.port, "POST", "/streams/bad-1", CE "traceparent: 00-" TRACE "\r\n", "{\"type\":\"T\"}", 400,
                  "trace context headers");
    expect_status(s.port, "POST", "/streams/bad-1", CE "traceparent: " TP "\r\ntracestate: =\r\n", "{\"type\":\"T\"}",
                  400, "trace context headers");
    expect_status(s.port, "GET", "/streams/bad-1", NULL, NULL, 404, NULL);
    /* At the limits, accepted: 32 members; 512 bytes (with empty members and spaces, as allowed). */
    state_of(st, sizeof st, 32);
    snprintf(m, sizeof m, "\"traceparent\":\"" TP "\",\"tracestate\":\"%s\"", st);
    event_with(ev, sizeof ev, m);
    expect_status(s.port, "POST", "/streams/good-1", CE, ev, 201, NULL);
    state_bytes(st, 512);
    snprintf(m, sizeof m, "\"traceparent\":\"" TP "\",\"tracestate\":\"%s\"", st);
    event_with(ev, sizeof ev, m);
    expect_status(s.port, "POST", "/streams/good-1", CE, ev, 201, NULL);
    event_with(ev, sizeof ev,
               "\"traceparent\":\"00-" TRACE "-00f067aa0ba902b7-ff\",\"tracestate\":\" , t@sys=a b ,,x=1 \"");
    expect_status(s.port, "POST", "/streams/good-1", CE, ev, 201, NULL);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}

/* Reads an SSE subscription of path until `until` has come; the text (free it). */
static char *sse_until(int port, const char *path, const char *until) {
    int fd = http_connect(port);
    char req[512];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n", path);
    http_send(fd, req, (size_t)n);
    size_t cap = 1 << 16, len = 0;
    char *buf = calloc(1, cap);
    while (len + 1 < cap && !strstr(buf, until)) {
        ssize_t got = read(fd, buf + len, cap - len - 1);
        CHECK_MSG(got > 0, "the subscription ended before %s: %s", until, buf);
        len += (size_t)got;
        buf[len] = 0;
    }
    close(fd);
    return buf;
}

TEST(trace_context_is_returned_as_given_on_reads_sse_and_group_deliveries) {
    srv s = srv_start(test_dir(), NULL);
    const char *members = "\"traceparent\":\"" TP "\",\"tracestate\":\"congo=t61rcWkgMzE,rojo=00f067aa0ba902b7\"";
    char ev[1024];
    event_with(ev, sizeof ev, members);
    expect_status(s.port, "POST", "/streams/t-1", CE, ev, 201, NULL);
    char *b = http_body(s.port, "GET", "/streams/t-1", NULL, NULL, 200);
    CHECK_MSG(strstr(b, members), "%s", b);
    free(b);
    b = http_body(s.port, "GET", "/all", NULL, NULL, 200);
    CHECK_MSG(strstr(b, members), "%s", b);
    free(b);
    b = sse_until(s.port, "/streams/t-1", "caught-up");
    CHECK_MSG(strstr(b, members), "%s", b);
    free(b);
    /* A group delivers the event from the log, so its trace context comes as stored: also when a
       parked event is replayed. */
    expect_status(s.port, "PUT", "/groups/g", JSON, "{\"source\":{\"stream\":\"t-1\"},\"start\":\"earliest\"}", 201,
                  NULL);
    b = http_body(s.port, "POST", "/groups/g/messages?max=10&wait_ms=0", NULL, NULL, 200);
    CHECK_MSG(strstr(b, members), "%s", b);
    const char *d = strstr(b, "\"delivery_id\":\"");
    CHECK(d);
    char id[64], body[200];
    snprintf(id, sizeof id, "%.*s", (int)strcspn(d + 15, "\""), d + 15);
    free(b);
    snprintf(body, sizeof body, "{\"delivery_ids\":[\"%s\"],\"action\":\"park\",\"reason\":\"test\"}", id);
    expect_status(s.port, "POST", "/groups/g/nack", JSON, body, 200, "\"nacked\":1");
    expect_status(s.port, "POST", "/groups/g/parked/replay", JSON, "{}", 200, "\"replayed\":1");
    b = http_body(s.port, "POST", "/groups/g/messages?max=10&wait_ms=5000", NULL, NULL, 200);
    CHECK_MSG(strstr(b, members), "%s", b);
    free(b);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}

/* The line of text that holds needle (free it). */
static char *line_of(const char *text, const char *needle) {
    const char *p = strstr(text, needle);
    CHECK_MSG(p, "no %s in %s", needle, text);
    while (p > text && p[-1] != '\n')
        p--;
    return strndup(p, strcspn(p, "\n"));
}

TEST(a_traceparent_header_goes_to_the_events_of_the_request_that_have_none) {
    srv s = srv_start(test_dir(), NULL);
    const char *hdr =
        "Content-Type: application/cloudevents-batch+json\r\ntraceparent: " TP2 "\r\ntracestate: vendor=1\r\n";
    expect_status(s.port, "POST", "/streams/h-1", hdr,
                  "[{\"type\":\"Own\",\"traceparent\":\"" TP "\"},{\"type\":\"None\",\"tenant\":7}]", 201, NULL);
    expect_status(s.port, "POST", "/streams/h-1",
                  "ce-type: Binary\r\nContent-Type: text/plain\r\ntraceparent: " TP2 "\r\n", "x", 201, NULL);
    char *b = http_body(s.port, "GET", "/streams/h-1", NULL, NULL, 200);
    /* the event's own attribute wins, with no tracestate added to it */
    char *own = line_of(b, "\"type\":\"Own\""), *none = line_of(b, "\"type\":\"None\""),
         *bin = line_of(b, "\"type\":\"Binary\"");
    CHECK_MSG(strstr(own, "\"traceparent\":\"" TP "\",\"stream\""), "%s", own);
    CHECK_MSG(strstr(none, "\"tenant\":7,\"traceparent\":\"" TP2 "\",\"tracestate\":\"vendor=1\""), "%s", none);
    CHECK_MSG(strstr(bin, "\"traceparent\":\"" TP2 "\",\"stream\""), "%s", bin);
    free(own), free(none), free(bin);
    free(b);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}

TEST(a_timer_fires_its_event_in_the_trace_of_the_request_that_scheduled_it) {
    srv s = srv_start(test_dir(), NULL);
    expect_status(s.port, "POST", "/schedules", JSON "traceparent: " TP "\r\ntracestate: a=1\r\n",
                  "{\"delay_ms\":0,\"stream\":\"timed-1\",\"event\":{\"type\":\"Reminder\",\"data\":{}}}", 201, NULL);
    /* the template's own traceparent wins over the header */
    expect_status(s.port, "POST", "/schedules", JSON "traceparent: " TP "\r\n",
                  "{\"delay_ms\":0,\"stream\":\"timed-2\",\"event\":{\"type\":\"Own\",\"traceparent\":\"" TP2 "\"}}",
                  201, NULL);
    expect_status(s.port, "POST", "/schedules", JSON "traceparent: 00-zz\r\n",
                  "{\"delay_ms\":0,\"stream\":\"timed-3\",\"event\":{\"type\":\"Bad\"}}", 400, "trace context headers");
    expect_status(s.port, "POST", "/schedules", JSON,
                  "{\"delay_ms\":0,\"stream\":\"timed-3\",\"event\":{\"type\":\"Bad\",\"traceparent\":\"x\"}}", 400,
                  "traceparent");
    CHECK(http_wait_body(s.port, "/streams/timed-1", "\"traceparent\":\"" TP "\",\"tracestate\":\"a=1\"", 30));
    CHECK(http_wait_body(s.port, "/streams/timed-2", "\"traceparent\":\"" TP2 "\"", 30));
    char *b = http_body(s.port, "GET", "/schedules?limit=10", NULL, NULL, 200);
    CHECK_MSG(!strstr(b, "timed-3"), "%s", b);
    free(b);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}

/* ---- sagas ---- */

/* pay (compensated without confirmation), then stock. */
static const char *SAGA =
    "{\"start_on\":\"OrderPlaced\",\"instance_id\":\"data.orderId\",\"steps\":["
    "{\"name\":\"pay\",\"command\":{\"stream\":\"payment-commands\",\"type\":\"ReservePayment\",\"data\":{}},"
    "\"success\":[\"PaymentReserved\"],\"failure\":[\"PaymentDeclined\"],"
    "\"compensation\":{\"stream\":\"payment-commands\",\"type\":\"ReleasePayment\",\"data\":{}}},"
    "{\"name\":\"stock\",\"command\":{\"stream\":\"inventory-commands\",\"type\":\"ReserveStock\",\"data\":{}},"
    "\"success\":[\"StockReserved\"],\"failure\":[\"OutOfStock\"]}]}";

/* The line of the event of `type` in stream (waits for it); free it. */
static char *wait_event(int port, const char *stream, const char *type) {
    char path[200], want[100];
    snprintf(path, sizeof path, "/streams/%s", stream);
    snprintf(want, sizeof want, "\"type\":\"%s\"", type);
    CHECK_MSG(http_wait_body(port, path, want, 30), "no %s in %s", type, stream);
    char *b = http_body(port, "GET", path, NULL, NULL, 200), *line = line_of(b, want);
    free(b);
    return line;
}

/* The traceparent a saga gives command id in trace trace_id: its span id derived from the id. */
static void expected_parent(char *out, size_t cap, const char *trace_id, const char *id, const char *flags) {
    uint64_t span = hash64(id, strlen(id), 0);
    snprintf(out, cap, "\"traceparent\":\"00-%s-%016llx-%s\"", trace_id, (unsigned long long)(span ? span : 1), flags);
}

static int count_of(const char *s, const char *what) {
    int n = 0;
    for (const char *p = s; (p = strstr(p, what)); p++)
        n++;
    return n;
}

TEST(a_saga_carries_the_trace_of_its_order_into_each_command_and_record_the_same_after_a_restart) {
    char log[512], want[200];
    snprintf(log, sizeof log, "%s/server.log", test_dir());
    srv s = srv_start_log(test_dir(), NULL, log);
    expect_status(s.port, "PUT", "/sagas/order", JSON, SAGA, 201, NULL);
    expect_status(s.port, "POST", "/streams/order-o1", CE,
                  "{\"type\":\"OrderPlaced\",\"traceparent\":\"" TP "\",\"tracestate\":\"shop=1\","
                  "\"data\":{\"orderId\":\"o1\"}}",
                  201, NULL);
    /* The command: the order's trace id, a new parent id (from the command's id), its tracestate. */
    char *c = wait_event(s.port, "payment-commands", "ReservePayment");
    expected_parent(want, sizeof want, TRACE, "saga-order-o1-pay-do", "01");
    CHECK_MSG(strstr(c, want) && strstr(c, "\"tracestate\":\"shop=1\"") && !strstr(c, TP), "%s", c);
    free(c);
    /* A reply without trace context: the next command stays in the order's trace. */
    expect_status(s.port, "POST", "/streams/replies", CE,
                  "{\"type\":\"PaymentReserved\",\"correlationid\":\"o1\",\"data\":{}}", 201, NULL);
    c = wait_event(s.port, "inventory-commands", "ReserveStock");
    expected_parent(want, sizeof want, TRACE, "saga-order-o1-stock-do", "01");
    CHECK_MSG(strstr(c, want) && strstr(c, "\"tracestate\":\"shop=1\""), "%s", c);
    free(c);
    /* A reply with a trace context of its own: the compensation it causes is in that trace. */
    expect_status(s.port, "POST", "/streams/replies", CE,
                  "{\"type\":\"OutOfStock\",\"correlationid\":\"o1\",\"traceparent\":\"" TP2 "\",\"data\":{}}", 201,
                  NULL);
    c = wait_event(s.port, "payment-commands", "ReleasePayment");
    expected_parent(want, sizeof want, TRACE2, "saga-order-o1-pay-compensate", "00");
    CHECK_MSG(strstr(c, want) && !strstr(c, "tracestate"), "%s", c);
    free(c);
    free(wait_event(s.port, "$saga-order-o1", "SagaFailed"));
    /* Every state record is in one of the two traces, each with a span id of its own. */
    char *recs = http_body(s.port, "GET", "/streams/$saga-order-o1", NULL, NULL, 200);
    int n = count_of(recs, "\"specversion\""),
        t1 = count_of(recs, "\"correlationid\":\"o1\",\"traceparent\":\"00-" TRACE "-"),
        t2 = count_of(recs, "\"correlationid\":\"o1\",\"traceparent\":\"00-" TRACE2 "-");
    CHECK_MSG(n == 8 && t1 == 4 && t2 == 4 && !strstr(recs, TP) && !strstr(recs, TP2), "%s", recs);
    CHECK_EQ(srv_stop(&s, SIGKILL), SIGKILL);

    /* After a restart the commands are sent again (from the checkpoint): the same bytes, so each is
       an idempotent repeat, never a conflict; the state records are the same. */
    s = srv_start_log(test_dir(), NULL, log);
    expect_status(s.port, "POST", "/streams/order-o2", CE,
                  "{\"type\":\"OrderPlaced\",\"traceparent\":\"" TP "\",\"data\":{\"orderId\":\"o2\"}}", 201, NULL);
    CHECK(http_wait_body(s.port, "/streams/payment-commands", "saga-order-o2-pay-do", 30));
    char *b = http_body(s.port, "GET", "/streams/payment-commands", NULL, NULL, 200);
    CHECK_MSG(count_of(b, "\"type\":\"ReservePayment\"") == 2 && count_of(b, "\"type\":\"ReleasePayment\"") == 1, "%s",
              b);
    free(b);
    b = http_body(s.port, "GET", "/streams/$saga-order-o1", NULL, NULL, 200);
    CHECK_MSG(!strcmp(b, recs), "%s\n---\n%s", b, recs);
    free(b), free(recs);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    FILE *f = fopen(log, "r");
    CHECK(f);
    char line[2048];
    while (fgets(line, sizeof line, f))
        CHECK_MSG(!strstr(line, "was refused") && !strstr(line, "write failed"), "%s", line); /* a conflict */
    fclose(f);
}

/* ---- the grammar, on its own ---- */

/* "KEY=VALUE" with a key of kn 'k's (at '@' position at, if not 0, then 's') and a value of vn 'v's. */
static factum_str_t member_of(char *buf, size_t kn, size_t at, size_t vn) {
    size_t n = 0;
    for (size_t i = 0; i < kn; i++)
        buf[n++] = at && i == at ? '@' : at && i > at ? 's' : 'k';
    buf[n++] = '=';
    memset(buf + n, 'v', vn);
    n += vn;
    buf[n] = 0;
    return (factum_str_t){buf, n};
}

TEST(tracestate_keys_and_values_are_taken_at_their_limits_and_refused_one_past) {
    char b[1024];
    CHECK(!trace_state_check(member_of(b, 256, 0, 1)));                             /* a simple key: 256 */
    CHECK(trace_state_check(member_of(b, 257, 0, 1)));                              /* 257 */
    CHECK(!trace_state_check(member_of(b, 241 + 1 + 14, 241, 1)));                  /* tenant 241 @ system 14 */
    CHECK(trace_state_check(member_of(b, 242 + 1 + 14, 242, 1)));                   /* tenant 242 */
    CHECK(trace_state_check(member_of(b, 241 + 1 + 15, 241, 1)));                   /* system 15 */
    CHECK(!trace_state_check(member_of(b, 1, 0, 256)));                             /* a value: 256 */
    CHECK(trace_state_check(member_of(b, 1, 0, 257)));                              /* 257 */
    CHECK(trace_state_check(member_of(b, 1, 0, 0)));                                /* empty */
    CHECK(trace_state_check(str_c("1a=v")) && !trace_state_check(str_c("1a@s=v"))); /* a digit starts tenants only */
    CHECK(trace_state_check(str_c("a@1=v")) && trace_state_check(str_c("a=\x7f")));
    CHECK(!trace_state_check(str_c("")) && !trace_state_check(str_c(" ,\t, ")) && !trace_state_check(str_c("a= b")) &&
          !trace_state_check(str_c("a=v ")) /* space after a member is list whitespace */);
    CHECK(!trace_parent_check(str_c(TP)) && trace_parent_check(str_c("ff-" TRACE "-00f067aa0ba902b7-01")));
}
