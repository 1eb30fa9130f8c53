/*
 * test_http.c — the HTTP API against a real server on loopback: every endpoint and status,
 * problem+json errors that change nothing, the request-smuggling and limits corpus, slow
 * clients, SSE catch-up and live with no gap or duplicate, resume by Last-Event-ID, the slow
 * subscriber limit, graceful shutdown.
 */
#include "test_server.h"

#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define CE "Content-Type: application/cloudevents+json\r\n"

static uint64_t head_of(int port) {
    resp r;
    http_do(port, "GET", "/health", NULL, NULL, &r);
    CHECK_EQ(r.status, 200);
    const char *p = strstr(r.body, "\"position\":");
    CHECK(p);
    uint64_t v = strtoull(p + 11, NULL, 10);
    resp_free(&r);
    return v;
}

TEST(appends_in_every_mode_and_reads_answer_as_documented) {
    srv s = srv_start(test_dir(), NULL);
    resp r;
    char v[256];
    /* structured mode */
    http_do(s.port, "POST", "/streams/order-1", CE, "{\"type\":\"OrderCreated\",\"id\":\"e1\",\"data\":{\"total\":5}}",
            &r);
    CHECK_EQ(r.status, 201);
    CHECK(strstr(r.body, "\"stream\":\"order-1\",\"first_revision\":0,\"revision\":0"));
    CHECK(!strcmp(resp_header(&r, "etag", v, sizeof v), "\"0\""));
    resp_free(&r);
    /* the idempotent repeat: 200 with the original result */
    http_do(s.port, "POST", "/streams/order-1", CE, "{\"type\":\"OrderCreated\",\"id\":\"e1\",\"data\":{\"total\":5}}",
            &r);
    CHECK_EQ(r.status, 200);
    CHECK(strstr(r.body, "\"revision\":0,\"first_position\":0,\"position\":0,\"idempotent\":true"));
    resp_free(&r);
    /* same id, other content */
    expect_status(s.port, "POST", "/streams/order-1", CE,
                  "{\"type\":\"OrderCreated\",\"id\":\"e1\",\"data\":{\"total\":6}}", 409, "other content");
    /* batches: cloudevents-batch and a plain JSON array, with If-Match */
    expect_status(
        s.port, "POST", "/streams/order-1", "Content-Type: application/cloudevents-batch+json\r\nIf-Match: \"0\"\r\n",
        "[{\"type\":\"A\",\"data\":1},{\"type\":\"B\",\"data\":2}]", 201, "\"first_revision\":1,\"revision\":2");
    expect_status(s.port, "POST", "/streams/order-1",
                  "Content-Type: application/json; charset=utf-8\r\nIf-Match: *\r\n", "[{\"type\":\"C\",\"data\":3}]",
                  201, "\"revision\":3");
    /* expected revision misses: 412 naming expected and actual */
    expect_status(s.port, "POST", "/streams/order-1", CE "If-Match: \"1\"\r\n", "{\"type\":\"X\"}", 412,
                  "\"expected\":1,\"actual\":3");
    expect_status(s.port, "POST", "/streams/order-1", CE "If-None-Match: *\r\n", "{\"type\":\"X\"}", 412,
                  "\"expected\":\"no stream\",\"actual\":3");
    expect_status(s.port, "POST", "/streams/fresh-1", CE "If-Match: *\r\n", "{\"type\":\"X\"}", 412,
                  "\"expected\":\"exists\",\"actual\":-1");
    expect_status(s.port, "POST", "/streams/fresh-1", CE "If-None-Match: *\r\n", "{\"type\":\"X\"}", 201,
                  "\"revision\":0");
    /* binary mode: attributes in ce-* headers, the body is the data */
    expect_status(
        s.port, "POST", "/streams/order-1",
        "ce-type: Shipped\r\nce-id: b%2D1\r\nce-specversion: 1.0\r\nce-correlationid: corr-7\r\n"
        "ce-traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\nContent-Type: text/plain\r\n",
        "parcel", 201, "\"revision\":4");
    expect_status(s.port, "POST", "/streams/order-1", "ce-type: Priced\r\nContent-Type: application/json\r\n",
                  "{\"p\": 1}", 201, "\"revision\":5");
    /* reads: forward with paging, backward, HEAD */
    http_do(s.port, "GET", "/streams/order-1?limit=2", NULL, NULL, &r);
    CHECK_EQ(r.status, 200);
    CHECK(!strcmp(resp_header(&r, "etag", v, sizeof v), "\"5\""));
    CHECK(strstr(resp_header(&r, "link", v, sizeof v),
                 "</streams/order-1?from=2&limit=2&direction=forward>; rel=\"next\""));
    CHECK(strstr(r.body, "\"id\":\"e1\"") && strstr(r.body, "\"revision\":1") && !strstr(r.body, "\"revision\":2"));
    resp_free(&r);
    http_do(s.port, "GET", "/streams/order-1?direction=backward&limit=1", NULL, NULL, &r);
    CHECK(strstr(r.body, "\"type\":\"Priced\"") && strstr(r.body, "\"data\":{\"p\": 1}"));
    CHECK(strstr(resp_header(&r, "link", v, sizeof v), "from=4&limit=1&direction=backward"));
    resp_free(&r);
    http_do(s.port, "GET", "/streams/order-1?from=4&limit=1", NULL, NULL, &r);
    CHECK(strstr(r.body, "\"id\":\"b-1\"") && strstr(r.body, "\"correlationid\":\"corr-7\"") &&
          strstr(r.body, "\"traceparent\":\"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\"") &&
          strstr(r.body, "\"datacontenttype\":\"text/plain\"") && strstr(r.body, "\"data_base64\":\"cGFyY2Vs\""));
    resp_free(&r);
    http_do(s.port, "HEAD", "/streams/order-1", NULL, NULL, &r);
    CHECK_EQ(r.status, 200);
    CHECK(!strcmp(resp_header(&r, "etag", v, sizeof v), "\"5\""));
    resp_free(&r);
    expect_status(s.port, "GET", "/streams/nobody-1", NULL, NULL, 404, "not found");
    /* $all: filters by type, category, correlation id */
    expect_status(s.port, "GET", "/all?type=Shipped", NULL, NULL, 200, "\"type\":\"Shipped\"");
    http_do(s.port, "GET", "/all?category=fresh", NULL, NULL, &r);
    CHECK(strstr(r.body, "\"stream\":\"fresh-1\"") && !strstr(r.body, "order-1"));
    resp_free(&r);
    http_do(s.port, "GET", "/all?correlation_id=corr-7", NULL, NULL, &r);
    CHECK(strstr(r.body, "\"id\":\"b-1\"") && !strstr(r.body, "\"id\":\"e1\""));
    resp_free(&r);
    http_do(s.port, "GET", "/all?from=0&limit=3", NULL, NULL, &r);
    CHECK(strstr(resp_header(&r, "link", v, sizeof v), "</all?from=3&limit=3&direction=forward>"));
    resp_free(&r);
    http_do(s.port, "GET", "/all?from=end&direction=backward&limit=1", NULL, NULL, &r);
    CHECK(strstr(r.body, "\"type\":\"Priced\""));
    resp_free(&r);
    expect_status(s.port, "GET", "/health", NULL, NULL, 200, "\"status\":\"ok\",\"position\":7");
    expect_status(s.port, "GET", "/", NULL, NULL, 200, "\"name\":\"factum\"");
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}

TEST(bad_requests_get_problem_json_and_change_nothing) {
    srv s = srv_start(test_dir(), "--max-body 1000");
    expect_status(s.port, "POST", "/streams/a-1", CE, "{\"type\":\"A\"}", 201, NULL);
    uint64_t head = head_of(s.port);
    expect_status(s.port, "POST", "/streams/a-1", CE, "{\"type\":\"A\",}", 400, "malformed");
    expect_status(s.port, "POST", "/streams/a-1", CE, "{\"data\":1}", 400, "'type' is required");
    expect_status(s.port, "POST", "/streams/a-1", "Content-Type: application/json\r\n",
                  "[{\"type\":\"A\"},{\"data\":1}]", 400, "event 1");
    expect_status(s.port, "POST", "/streams/a-1", "Content-Type: application/json\r\n", "[]", 400, "at least one");
    expect_status(s.port, "POST", "/streams/%24all", CE, "{\"type\":\"A\"}", 400, "written by the server");
    expect_status(s.port, "POST", "/streams/%24schedules", CE, "{\"type\":\"A\"}", 400, "written by the server");
    expect_status(s.port, "POST", "/streams/a%2Fb", CE, "{\"type\":\"A\"}", 400, "stream name");
    expect_status(s.port, "POST", "/streams/a%zz", CE, "{\"type\":\"A\"}", 400, "percent-escape");
    char name[300];
    memset(name, 'n', 256);
    snprintf(name, sizeof name, "/streams/%.*s", 256,
             "nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn"
             "nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn"
             "nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn");
    expect_status(s.port, "POST", name, CE, "{\"type\":\"A\"}", 400, "1 to 255 bytes");
    name[strlen(name) - 1] = 0; /* 255 bytes: fine */
    expect_status(s.port, "POST", name, CE, "{\"type\":\"A\"}", 201, NULL);
    head++;
    expect_status(s.port, "POST", "/streams/a-1", "Content-Type: text/plain\r\n", "hi", 415, "cloudevents");
    expect_status(s.port, "POST", "/streams/a-1", CE "If-Match: W/\"1\"\r\n", "{\"type\":\"A\"}", 400, "strong ETag");
    expect_status(s.port, "POST", "/streams/a-1", CE "If-Match: *\r\nIf-None-Match: *\r\n", "{\"type\":\"A\"}", 400,
                  "not both");
    expect_status(s.port, "POST", "/streams/a-1", "ce-type: A\r\nce-specversion: 0.3\r\n", "", 400, "specversion");
    /* the body limit, and one byte past it */
    char body[1100];
    int pad = 1000 - (int)strlen("{\"type\":\"A\",\"data\":\"\"}");
    snprintf(body, sizeof body, "{\"type\":\"A\",\"data\":\"%0*d\"}", pad, 0);
    CHECK_EQ(strlen(body), 1000);
    expect_status(s.port, "POST", "/streams/big-1", CE, body, 201, NULL);
    head++;
    snprintf(body, sizeof body, "{\"type\":\"A\",\"data\":\"%0*d\"}", pad + 1, 0);
    expect_status(s.port, "POST", "/streams/big-1", CE, body, 413, "limit is 1000");
    /* reads */
    expect_status(s.port, "GET", "/streams/a-1?limit=0", NULL, NULL, 400, "limit");
    expect_status(s.port, "GET", "/streams/a-1?limit=10001", NULL, NULL, 400, "limit");
    expect_status(s.port, "GET", "/streams/a-1?limit=10000", NULL, NULL, 200, NULL);
    expect_status(s.port, "GET", "/streams/a-1?from=x", NULL, NULL, 400, "from");
    expect_status(s.port, "GET", "/streams/a-1?direction=sideways", NULL, NULL, 400, "direction");
    expect_status(s.port, "GET", "/streams/a-1?colour=red", NULL, NULL, 400, "unknown query parameter");
    expect_status(s.port, "DELETE", "/all", NULL, NULL, 405, "GET, HEAD");
    expect_status(s.port, "PUT", "/streams/a-1", NULL, "", 405, NULL);
    expect_status(s.port, "GET", "/nothing", NULL, NULL, 404, NULL);
    expect_status(s.port, "GET", "/streams/a-1/zzz", NULL, NULL, 404, NULL);
    expect_status(s.port, "POST", "/streams/a-1", CE, NULL, 400, NULL); /* no body at all */
    CHECK_EQ(head_of(s.port), head);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}

/* Each vector is answered with the status and the connection is closed. */
static const struct {
    const char *name, *req;
    int status;
} vectors[] = {
    {"CL and TE",
     "POST /streams/a-1 HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4\r\nTransfer-Encoding: "
     "chunked\r\n\r\n0\r\n\r\n",
     400},
    {"TE and CL",
     "POST /streams/a-1 HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nContent-Length: "
     "4\r\n\r\n0\r\n\r\n",
     400},
    {"TE obfuscated", "POST /streams/a-1 HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
     400},
    {"TE list", "POST /streams/a-1 HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
     400},
    {"TE twice",
     "POST /streams/a-1 HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: "
     "chunked\r\n\r\n0\r\n\r\n",
     400},
    {"TE in 1.0", "POST /streams/a-1 HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
    {"CL twice", "POST /streams/a-1 HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}",
     400},
    {"CL signed", "POST /streams/a-1 HTTP/1.1\r\nHost: localhost\r\nContent-Length: +2\r\n\r\n{}", 400},
    {"CL hex", "POST /streams/a-1 HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0x2\r\n\r\n{}", 400},
    {"CL list", "POST /streams/a-1 HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2, 2\r\n\r\n{}", 400},
    {"bare LF", "GET /all HTTP/1.1\nHost: x\n\n", 400},
    {"bare LF in header", "GET /all HTTP/1.1\r\nHost: x\nX: y\r\n\r\n", 400},
    {"bare CR", "GET /all HTTP/1.1\r\nHost: x\rX: y\r\n\r\n", 400},
    {"space before colon", "GET /all HTTP/1.1\r\nHost : x\r\n\r\n", 400},
    {"tab before colon", "GET /all HTTP/1.1\r\nHost\t: x\r\n\r\n", 400},
    {"folded header", "GET /all HTTP/1.1\r\nHost: localhost\r\nX-A: 1\r\n  continued\r\n\r\n", 400},
    {"no host", "GET /all HTTP/1.1\r\n\r\n", 400},
    {"two hosts", "GET /all HTTP/1.1\r\nHost: localhost\r\nHost: localhost\r\n\r\n", 400},
    {"NUL in header", "GET /all HTTP/1.1\r\nHost: localhost\r\nX: a\0b\r\n\r\n", 400},
    {"bad header name", "GET /all HTTP/1.1\r\nHost: localhost\r\nX(y): 1\r\n\r\n", 400},
    {"lowercase version", "GET /all http/1.1\r\nHost: localhost\r\n\r\n", 400},
    {"extra in request line", "GET /all HTTP/1.1 x\r\nHost: localhost\r\n\r\n", 400},
    {"absolute form", "GET http://x/all HTTP/1.1\r\nHost: localhost\r\n\r\n", 400},
    {"space in target", "GET /a ll HTTP/1.1\r\nHost: localhost\r\n\r\n", 400},
    {"bad chunk size",
     "POST /streams/a-1 HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n", 400},
    {"chunk size overflow",
     "POST /streams/a-1 HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: "
     "chunked\r\n\r\n10000000000000002\r\n{}\r\n0\r\n\r\n",
     400},
    {"chunk longer than size",
     "POST /streams/a-1 HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n{}\r\n0\r\n\r\n", 400},
    {"chunk bare LF",
     "POST /streams/a-1 HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n2\n{}\r\n0\r\n\r\n", 400},
    {"CL over limit", "POST /streams/a-1 HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1048577\r\n\r\n", 413},
    {"chunked over limit",
     "POST /streams/a-1 HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n100001\r\n", 413},
};

TEST(smuggling_and_limit_vectors_are_refused_and_the_connection_closed) {
    srv s = srv_start(test_dir(), NULL);
    for (size_t i = 0; i < ARRAY_LEN(vectors); i++) {
        int fd = http_connect(s.port);
        size_t len = strlen(vectors[i].req);
        if (strstr(vectors[i].name, "NUL"))
            len = strlen(vectors[i].req) + 1 + strlen(vectors[i].req + strlen(vectors[i].req) + 1);
        http_send(fd, vectors[i].req, len);
        resp r;
        http_recv(fd, &r);
        CHECK_MSG(r.status == vectors[i].status, "%s: got %d, want %d", vectors[i].name, r.status, vectors[i].status);
        CHECK_MSG(r.closed, "%s: the connection stayed open", vectors[i].name);
        CHECK(strstr(r.head, "application/problem+json"));
        resp_free(&r);
        close(fd);
    }
    /* Oversized head: one header line past the limit, too many headers, and a huge head. */
    static char big[80000];
    const char *cases[][2] = {{"line", "X-Long: "}, {"count", "X-H: 1\r\n"}};
    for (int k = 0; k < 2; k++) {
        int n = snprintf(big, sizeof big, "GET /all HTTP/1.1\r\nHost: localhost\r\n");
        if (k == 0) {
            n += snprintf(big + n, sizeof big - (size_t)n, "%s", cases[k][1]);
            memset(big + n, 'a', 8200), n += 8200;
            n += snprintf(big + n, sizeof big - (size_t)n, "\r\n\r\n");
        } else {
            for (int h = 0; h < 70; h++)
                n += snprintf(big + n, sizeof big - (size_t)n, "%s", cases[k][1]);
            n += snprintf(big + n, sizeof big - (size_t)n, "\r\n");
        }
        int fd = http_connect(s.port);
        http_send(fd, big, (size_t)n);
        resp r;
        http_recv(fd, &r);
        CHECK_MSG(r.status == 431, "oversized %s: got %d", cases[k][0], r.status);
        CHECK(r.closed);
        resp_free(&r);
        close(fd);
    }
    /* Exactly at the line limit passes the parser (8192 bytes of header line). */
    int n = snprintf(big, sizeof big, "GET /health HTTP/1.1\r\nHost: localhost\r\nX-Long: ");
    memset(big + n, 'a', 8192 - 8), n += 8192 - 8;
    n += snprintf(big + n, sizeof big - (size_t)n, "\r\n\r\n");
    int fd = http_connect(s.port);
    http_send(fd, big, (size_t)n);
    resp r;
    http_recv(fd, &r);
    CHECK_EQ(r.status, 200);
    resp_free(&r);
    close(fd);
    /* Nothing was appended by any of it; a well-formed chunked request and pipelining work. */
    CHECK_EQ(head_of(s.port), 0);
    fd = http_connect(s.port);
    const char *two =
        "POST /streams/c-1 HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n\r\n5;ext=1\r\n{\"typ\r\n9\r\ne\":\"A\"}\r\n\r\n0\r\nTrailer: t\r\n\r\n"
        "GET /streams/c-1 HTTP/1.1\r\nHost: localhost\r\n\r\n";
    http_send(fd, two, strlen(two));
    http_recv(fd, &r);
    CHECK_EQ(r.status, 201);
    resp_free(&r);
    http_recv(fd, &r);
    CHECK_EQ(r.status, 200);
    CHECK(strstr(r.body, "\"type\":\"A\""));
    resp_free(&r);
    close(fd);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}

TEST(slow_clients_time_out_without_starving_others) {
    srv s = srv_start(test_dir(), "--header-timeout 300 --body-timeout 300");
    int slow_head = http_connect(s.port), slow_body = http_connect(s.port);
    const char *head = "GET /all HTTP/1.1\r\nHo", *body =
                                                      "POST /streams/a-1 HTTP/1.1\r\nHost: localhost\r\nContent-Type: "
                                                      "application/json\r\nContent-Length: 50\r\n\r\n{";
    http_send(slow_head, head, strlen(head));
    http_send(slow_body, body, strlen(body));
    /* Others are served meanwhile. */
    for (int i = 0; i < 5; i++)
        expect_status(s.port, "GET", "/health", NULL, NULL, 200, NULL);
    resp r;
    http_recv(slow_head, &r);
    CHECK_EQ(r.status, 408);
    CHECK(r.closed);
    resp_free(&r);
    http_recv(slow_body, &r);
    CHECK_EQ(r.status, 408);
    CHECK(r.closed);
    resp_free(&r);
    close(slow_head);
    close(slow_body);
    CHECK_EQ(head_of(s.port), 0);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}

/* ---- SSE ---- */

typedef struct sse_msg {
    long long id; /* -1 if none */
    char event[64];
    char *data;
} sse_msg;

typedef struct sse_client {
    int fd;
    char *buf;
    size_t len, cap;
    bool eof;
} sse_client;

static sse_client sse_open(int port, const char *path, const char *extra) {
    sse_client c = {http_connect(port), NULL, 0, 0, false};
    char req[1024];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n%s\r\n", path,
                     extra ? extra : "");
    http_send(c.fd, req, (size_t)n);
    return c;
}

/* Next message (skipping the response head, comments and retry lines); false at EOF. */
static bool sse_next(sse_client *c, sse_msg *m) {
    for (;;) {
        char *end = c->len ? memmem(c->buf, c->len, "\n\n", 2) : NULL;
        if (end) {
            size_t blen = (size_t)(end - c->buf) + 2;
            *end = 0;
            m->id = -1, m->event[0] = 0, m->data = NULL;
            bool any = false;
            for (char *line = c->buf, *nl; line && *line; line = nl) {
                nl = strchr(line, '\n');
                if (nl) *nl++ = 0;
                if (!strncmp(line, "HTTP/1.1 ", 9)) {
                    CHECK_MSG(!strncmp(line + 9, "200", 3), "subscription refused: %s", line);
                    char *hend = strstr(nl ? nl : "", "\r\n\r\n");
                    if (hend) nl = hend + 4;
                    continue;
                }
                if (!strncmp(line, "id: ", 4))
                    m->id = atoll(line + 4), any = true;
                else if (!strncmp(line, "event: ", 7))
                    snprintf(m->event, sizeof m->event, "%s", line + 7), any = true;
                else if (!strncmp(line, "data: ", 6))
                    m->data = strdup(line + 6), any = true;
            }
            memmove(c->buf, c->buf + blen, c->len - blen);
            c->len -= blen;
            if (any) return true;
            continue;
        }
        if (c->eof) return false;
        if (c->len + 65536 > c->cap) c->buf = realloc(c->buf, c->cap = c->cap * 2 + 65536);
        ssize_t n = recv(c->fd, c->buf + c->len, c->cap - c->len - 1, 0);
        if (n <= 0)
            c->eof = true;
        else
            c->len += (size_t)n;
    }
}

static void sse_close(sse_client *c) {
    close(c->fd);
    free(c->buf);
}

typedef struct {
    int port, thread, count;
    const char *stream_fmt;
} appender;

static void *append_thread(void *arg) {
    appender *a = arg;
    for (int i = 0; i < a->count; i++) {
        char path[64], body[128];
        snprintf(path, sizeof path, a->stream_fmt, a->thread % 3);
        snprintf(body, sizeof body, "{\"type\":\"T%d\",\"id\":\"t%d-%d\",\"data\":{\"i\":%d}}", a->thread, a->thread, i,
                 i);
        resp r;
        http_do(a->port, "POST", path, CE, body, &r);
        CHECK_MSG(r.status == 201, "append: %d %s", r.status, r.body);
        resp_free(&r);
    }
    return NULL;
}

TEST_T(subscriptions_catch_up_then_go_live_with_no_gap_and_no_duplicate, 120) {
    srv s = srv_start(test_dir(), NULL);
    appender pre = {s.port, 0, 400, "/streams/sub-%d"};
    append_thread(&pre); /* history to catch up on */
    sse_client all = sse_open(s.port, "/all", NULL), one = sse_open(s.port, "/streams/sub-1", NULL);
    pthread_t th[4];
    appender a[4];
    for (int t = 0; t < 4; t++) {
        a[t] = (appender){s.port, t + 1, 150, "/streams/sub-%d"};
        pthread_create(&th[t], NULL, append_thread, &a[t]);
    }
    for (int t = 0; t < 4; t++)
        pthread_join(th[t], NULL);
    uint64_t head = head_of(s.port);
    CHECK_EQ(head, 1000);
    /* $all: positions 0..head-1 exactly once, in order, one caught-up marker. */
    long long want = 0;
    int caught = 0;
    sse_msg m;
    while (want < (long long)head && sse_next(&all, &m)) {
        if (!strcmp(m.event, "caught-up")) {
            caught++;
            CHECK(m.id == -1);
        } else {
            CHECK_MSG(m.id == want, "$all: got id %lld, want %lld", m.id, want);
            CHECK(m.data && strstr(m.data, "\"position\":") && m.data[0] == '{');
            want++;
        }
        free(m.data);
    }
    CHECK_EQ(want, head);
    CHECK_EQ(caught, 1);
    /* sub-1 (threads 1 and 4): revisions 0.. exactly once. */
    resp r;
    http_do(s.port, "HEAD", "/streams/sub-1", NULL, NULL, &r);
    char etag[32];
    long long last = atoll(resp_header(&r, "etag", etag, sizeof etag) + 1);
    resp_free(&r);
    want = 0, caught = 0;
    while (want <= last && sse_next(&one, &m)) {
        if (!strcmp(m.event, "caught-up"))
            caught++;
        else {
            CHECK_MSG(m.id == want, "stream: got id %lld, want %lld", m.id, want);
            CHECK(strstr(m.data, "\"stream\":\"sub-1\""));
            want++;
        }
        free(m.data);
    }
    CHECK_EQ(want, last + 1);
    CHECK_EQ(caught, 1);
    sse_close(&all);
    sse_close(&one);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}

TEST(a_subscription_resumes_after_last_event_id_and_filters_apply_live) {
    srv s = srv_start(test_dir(), "--heartbeat 200");
    appender pre = {s.port, 0, 10, "/streams/res-%d"};
    append_thread(&pre);
    sse_client c = sse_open(s.port, "/streams/res-0", "Last-Event-ID: 6\r\n");
    sse_msg m;
    CHECK(sse_next(&c, &m) && m.id == 7);
    free(m.data);
    CHECK(sse_next(&c, &m) && m.id == 8);
    free(m.data);
    CHECK(sse_next(&c, &m) && m.id == 9);
    free(m.data);
    CHECK(sse_next(&c, &m) && !strcmp(m.event, "caught-up") && strstr(m.data, "\"revision\":9"));
    free(m.data);
    /* A heartbeat comment comes while idle (the reader skips it; look at the raw bytes). */
    usleep(300000);
    char raw[64] = {0};
    CHECK(recv(c.fd, raw, sizeof raw - 1, MSG_PEEK) > 0 && strstr(raw, ": heartbeat"));
    sse_close(&c);
    /* A filtered live subscription on $all from the end sees only its type. */
    sse_client f = sse_open(s.port, "/all?from=end&type=Wanted", NULL);
    CHECK(sse_next(&f, &m) && !strcmp(m.event, "caught-up"));
    free(m.data);
    expect_status(s.port, "POST", "/streams/res-0", CE, "{\"type\":\"Other\"}", 201, NULL);
    expect_status(s.port, "POST", "/streams/res-5", CE, "{\"type\":\"Wanted\"}", 201, NULL);
    CHECK(sse_next(&f, &m) && !strcmp(m.event, "Wanted") && m.id == 11);
    free(m.data);
    sse_close(&f);
    /* A subscription to a stream that does not exist yet waits for it. */
    sse_client w = sse_open(s.port, "/streams/later-1", NULL);
    CHECK(sse_next(&w, &m) && !strcmp(m.event, "caught-up"));
    free(m.data);
    expect_status(s.port, "POST", "/streams/later-1", CE, "{\"type\":\"Born\"}", 201, NULL);
    CHECK(sse_next(&w, &m) && !strcmp(m.event, "Born") && m.id == 0);
    free(m.data);
    sse_close(&w);
    expect_status(s.port, "GET", "/streams/res-0", "Accept: text/event-stream\r\nLast-Event-ID: x\r\n", NULL, 400,
                  NULL);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}

/* Live /all subscribers with different filters on one loop share rendered chunks only with
   those of the same filters: each gets exactly its events, in order. */
TEST(subscribers_with_different_filters_on_one_loop_each_get_exactly_their_events) {
    srv s = srv_start(test_dir(), "--loops 1");
    static const char *paths[] = {"/all?from=end",        "/all?from=end&type=A",
                                  "/all?from=end&type=B", "/all?from=end&category=mix",
                                  "/all?from=end&type=A", "/all?from=end"};
    enum { NSUB = 6, N = 60 };
    sse_client c[NSUB];
    sse_msg m;
    for (int i = 0; i < NSUB; i++) {
        c[i] = sse_open(s.port, paths[i], NULL);
        CHECK(sse_next(&c[i], &m) && !strcmp(m.event, "caught-up"));
        free(m.data);
    }
    /* Event k: type A, B or C by k % 3, on stream mix-k or other-k by k % 2, in batches of 5. */
    for (int k = 0; k < N; k += 5) {
        char body[1024];
        int n = snprintf(body, sizeof body, "[");
        for (int j = k; j < k + 5; j++)
            n += snprintf(body + n, sizeof body - (size_t)n, "%s{\"type\":\"%c\",\"data\":{\"k\":%d}}",
                          j > k ? "," : "", "ABC"[j % 3], j);
        snprintf(body + n, sizeof body - (size_t)n, "]");
        char path[64];
        snprintf(path, sizeof path, "/streams/%s-%d", (k / 5) % 2 ? "other" : "mix", k);
        expect_status(s.port, "POST", path, "Content-Type: application/json\r\n", body, 201, NULL);
    }
    for (int i = 0; i < NSUB; i++) {
        for (int k = 0; k < N; k++) {
            bool want = strstr(paths[i], "type=A")     ? k % 3 == 0
                        : strstr(paths[i], "type=B")   ? k % 3 == 1
                        : strstr(paths[i], "category") ? (k / 5) % 2 == 0
                                                       : true;
            if (!want) continue;
            CHECK_MSG(sse_next(&c[i], &m), "%s: nothing for event %d", paths[i], k);
            char needle[32];
            snprintf(needle, sizeof needle, "\"k\":%d}", k);
            CHECK_MSG(m.id == k && strstr(m.data, needle), "%s: event %d, got id %lld %s", paths[i], k, m.id, m.data);
            free(m.data);
        }
        sse_close(&c[i]);
    }
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}

/* Read-your-writes: a read with min_position waits (parked on its loop) until the log holds
   that position, then answers with it; past 5 s it is 503 not-caught-up. */
TEST_T(a_read_with_min_position_waits_for_it_and_answers_503_when_it_does_not_come, 60) {
    srv s = srv_start(test_dir(), NULL);
    expect_status(s.port, "POST", "/streams/ryw-1", CE, "{\"type\":\"First\"}", 201, NULL);
    /* position 1 is not written yet: the read waits for it, on another connection */
    int fd = http_connect(s.port);
    static const char req[] = "GET /all?from=1&min_position=1 HTTP/1.1\r\nHost: localhost\r\n\r\n";
    http_send(fd, req, sizeof req - 1);
    usleep(200000);
    char peek[16];
    CHECK(recv(fd, peek, sizeof peek, MSG_DONTWAIT) < 0); /* nothing answered yet */
    expect_status(s.port, "POST", "/streams/ryw-1", CE, "{\"type\":\"Second\"}", 201, NULL);
    resp r;
    http_recv(fd, &r);
    CHECK_MSG(r.status == 200 && strstr(r.body, "\"type\":\"Second\""), "%d %s", r.status, r.body);
    resp_free(&r);
    /* the same connection goes on with the next request */
    http_send(fd, req, sizeof req - 1);
    http_recv(fd, &r);
    CHECK_EQ(r.status, 200);
    resp_free(&r);
    close(fd);
    /* already there: at once; the header works the same; bad values are 400 */
    expect_status(s.port, "GET", "/streams/ryw-1?min_position=0", NULL, NULL, 200, "First");
    expect_status(s.port, "GET", "/streams/ryw-1", "Factum-Min-Position: 1\r\n", NULL, 200, "Second");
    expect_status(s.port, "GET", "/all?min_position=x", NULL, NULL, 400, "min_position must be a position");
    expect_status(s.port, "GET", "/all", "Factum-Min-Position: -1\r\n", NULL, 400, "Factum-Min-Position");
    expect_status(s.port, "GET", "/all?min_position=5&min_position_wait_ms=60001", NULL, NULL, 400,
                  "min_position_wait_ms must be 0 to 60000");
    /* a position that does not come: 503 after the wait (5 s by default), with Retry-After */
    http_do(s.port, "GET", "/all?min_position=1000&min_position_wait_ms=300", NULL, NULL, &r);
    char ra[16];
    CHECK_MSG(r.status == 503 && strstr(r.body, "not-caught-up") && resp_header(&r, "Retry-After", ra, sizeof ra),
              "%d %s", r.status, r.body);
    resp_free(&r);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}

TEST_T(a_subscriber_that_cannot_keep_up_catches_up_from_the_log_and_misses_nothing, 120) {
    srv s = srv_start(test_dir(), "--sub-buffer 65536");
    /* A subscriber that does not read while 30 MB go by: more than both sockets' buffers hold
       (a tiny receive window would make reading them back later crawl). */
    sse_client c = sse_open(s.port, "/all?from=end", NULL);
    sse_msg m;
    CHECK(sse_next(&c, &m) && !strcmp(m.event, "caught-up"));
    free(m.data);
    static char batch[200000];
    int total = 0;
    for (int b = 0; b < 300; b++) {
        int n = snprintf(batch, sizeof batch, "[");
        for (int i = 0; i < 100; i++)
            n += snprintf(batch + n, sizeof batch - (size_t)n, "%s{\"type\":\"Big\",\"data\":\"%0900d\"}", i ? "," : "",
                          i);
        snprintf(batch + n, sizeof batch - (size_t)n, "]");
        expect_status(s.port, "POST", "/streams/flood-1", "Content-Type: application/json\r\n", batch, 201, NULL);
        total += 100;
    }
    /* 30 MB of events went by: the server stopped feeding it live once 64 KiB piled up, and
       holds no more than that and one chunk read from the log for it. */
    CHECK(srv_metric(s.port, "factum_subscriber_fallbacks_total") >= 1);
    double held = srv_metric(s.port, "factum_memory_used_bytes");
    CHECK_MSG(held < 4 << 20, "%.0f bytes held", held);
    CHECK_EQ(srv_metric(s.port, "factum_subscriber_disconnects_total{reason=\"memory\"}"), 0);
    /* Reading now, it gets every event, in order, once, from the log and then live again
       (with no second "caught-up"). */
    long long last = -1;
    while (last < total - 1 && sse_next(&c, &m)) {
        CHECK_MSG(strcmp(m.event, "caught-up"), "a second caught-up at %lld", last);
        if (m.id >= 0) {
            CHECK_EQ(m.id, last + 1);
            last = m.id;
        }
        free(m.data);
    }
    CHECK_EQ(last, total - 1);
    expect_status(s.port, "POST", "/streams/flood-1", "Content-Type: application/json\r\n",
                  "{\"type\":\"After\",\"data\":{}}", 201, NULL);
    CHECK(sse_next(&c, &m) && m.id == total && strstr(m.data, "After"));
    free(m.data);
    sse_close(&c);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}

TEST(sigterm_drains_and_a_second_server_on_the_folder_is_refused) {
    srv s = srv_start(test_dir(), NULL);
    char cmd[8192], out[4096];
    snprintf(cmd, sizeof cmd, "%s --data-dir %s serve --listen 127.0.0.1:0 2>&1", test_bin(), test_dir());
    int st = test_run(cmd, out, sizeof out);
    CHECK_MSG(st != 0 && strstr(out, "in use by process"), "second server: %d %s", st, out);
    /* An idle keep-alive connection and a subscriber do not hold the shutdown up. */
    int idle = http_connect(s.port);
    const char *req = "GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n";
    http_send(idle, req, strlen(req));
    resp r;
    http_recv(idle, &r);
    CHECK_EQ(r.status, 200);
    resp_free(&r);
    sse_client sub = sse_open(s.port, "/all", NULL);
    sse_msg m;
    CHECK(sse_next(&sub, &m));
    free(m.data);
    expect_status(s.port, "POST", "/streams/d-1", CE, "{\"type\":\"A\"}", 201, NULL);
    uint64_t t0 = clock_mono_ns();
    st = srv_stop(&s, SIGTERM);
    CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "server status %d", st);
    CHECK_MSG(clock_mono_ns() - t0 < 3000000000ull, "shutdown took %llu ms",
              (unsigned long long)((clock_mono_ns() - t0) / 1000000));
    char x;
    CHECK(recv(idle, &x, 1, 0) == 0);
    while (sse_next(&sub, &m))
        free(m.data);
    close(idle);
    sse_close(&sub);
    /* The store was closed cleanly: it reopens with the event. */
    factum_t *db = test_open(test_dir(), NULL);
    CHECK_EQ(factum_head_position(db), 1);
    factum_close(db);
}

TEST(metrics_are_prometheus_text_without_stream_names) {
    srv s = srv_start(test_dir(), NULL);
    expect_status(s.port, "POST", "/streams/secret-stream-name", CE, "{\"type\":\"A\"}", 201, NULL);
    resp r;
    http_do(s.port, "GET", "/metrics", NULL, NULL, &r);
    CHECK_EQ(r.status, 200);
    const char *want[] = {"factum_appends_total 1",
                          "factum_append_events_total 1",
                          "factum_append_bytes_total ",
                          "factum_append_duration_seconds_bucket{le=\"+Inf\"} 1",
                          "factum_fsync_duration_seconds_count ",
                          "factum_events_per_fsync_bucket{le=\"1\"} ",
                          "factum_subscribers 0",
                          "factum_connections ",
                          "factum_log_bytes ",
                          "factum_build_info{version=\"",
                          "# TYPE factum_append_duration_seconds histogram",
                          "factum_http_responses_total{code=\"201\"} 1"};
    for (size_t i = 0; i < ARRAY_LEN(want); i++)
        CHECK_MSG(strstr(r.body, want[i]), "metrics lack %s", want[i]);
    CHECK(!strstr(r.body, "secret"));
    /* this connection, and perhaps the previous one the server has not yet seen closed */
    const char *conns = strstr(r.body, "\nfactum_connections ");
    CHECK(conns && atoi(conns + 20) >= 1 && atoi(conns + 20) <= 2);
    resp_free(&r);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}

TEST_T(a_browser_eventsource_catches_up_then_goes_live, 120) {
    srv s = srv_start(test_dir(), NULL);
    char cmd[4096], out[8192];
    snprintf(cmd, sizeof cmd, "node %s/tests/browser/eventsource.mjs http://127.0.0.1:%d 2>&1", test_root(), s.port);
    int st = test_run(cmd, out, sizeof out);
    CHECK_MSG(st == 0 && strstr(out, "eventsource: ok"), "browser test (status %d): %s", st, out);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}

TEST(catching_up_on_large_events_is_cut_by_bytes_and_loses_nothing) {
    srv s = srv_start(test_dir(), NULL);
    static char body[700000];
    int n = snprintf(body, sizeof body, "{\"type\":\"Big\",\"data\":\"");
    memset(body + n, 'b', 600000);
    snprintf(body + n + 600000, sizeof body - (size_t)n - 600000, "\"}");
    for (int i = 0; i < 6; i++)
        expect_status(s.port, "POST", "/streams/big-1", CE, body, 201, NULL);
    sse_client c = sse_open(s.port, "/streams/big-1", NULL), a = sse_open(s.port, "/all", NULL);
    sse_msg m;
    for (int i = 0; i < 6; i++) {
        CHECK(sse_next(&c, &m) && m.id == i && strlen(m.data) > 600000);
        free(m.data);
        CHECK(sse_next(&a, &m) && m.id == i);
        free(m.data);
    }
    CHECK(sse_next(&c, &m) && !strcmp(m.event, "caught-up"));
    free(m.data);
    sse_close(&c);
    sse_close(&a);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}

TEST(reads_and_subscriptions_start_from_a_point_in_time) {
    srv s = srv_start(test_dir(), NULL);
    for (int i = 0; i < 5; i++)
        expect_status(s.port, "POST", "/streams/t-1", CE, "{\"type\":\"Early\"}", 201, NULL);
    usleep(20000);
    char t[32], path[128], enc[96];
    time_format_rfc3339(clock_realtime_us(), t);
    usleep(20000);
    for (int i = 0; i < 5; i++)
        expect_status(s.port, "POST", "/streams/t-1", CE, "{\"type\":\"Late\"}", 201, NULL);
    /* The same instant written with an offset: 2026-...T10:00:00Z is 2026-...T11:00:00+01:00. */
    int hour = atoi(t + 11);
    snprintf(enc, sizeof enc, "%.11s%02d%.13s%s", t, hour < 23 ? hour + 1 : hour - 1, t + 13,
             hour < 23 ? "%2B01:00" : "-01:00");
    const char *forms[] = {t, enc};
    for (int k = 0; k < 2; k++) {
        snprintf(path, sizeof path, "/all?from=%s", forms[k]);
        resp r;
        http_do(s.port, "GET", path, NULL, NULL, &r);
        CHECK_MSG(r.status == 200, "%s: %d %s", path, r.status, r.body);
        CHECK_MSG(!strstr(r.body, "Early") && strstr(r.body, "\"position\":5") && strstr(r.body, "\"position\":9"),
                  "%s: %s", path, r.body);
        resp_free(&r);
    }
    snprintf(path, sizeof path, "/all?from=%s", t);
    sse_client c = sse_open(s.port, path, NULL);
    sse_msg m;
    CHECK(sse_next(&c, &m) && m.id == 5 && !strcmp(m.event, "Late"));
    free(m.data);
    sse_close(&c);
    snprintf(path, sizeof path, "/streams/t-1?from=%s", t);
    expect_status(s.port, "GET", path, NULL, NULL, 400, "revision");
    snprintf(path, sizeof path, "/all?from=%s&direction=backward", t);
    expect_status(s.port, "GET", path, NULL, NULL, 400, "forward");
    expect_status(s.port, "GET", "/all?from=2026-02-30T00:00:00Z", NULL, NULL, 400, "RFC 3339");
    /* The CLI, in client mode and (after the server stops) embedded. */
    char cmd[4096], out[8192];
    snprintf(cmd, sizeof cmd, "%s --server http://127.0.0.1:%d read --all --from %s", test_bin(), s.port, t);
    CHECK_EQ(test_run(cmd, out, sizeof out), 0);
    CHECK(!strstr(out, "Early") && strstr(out, "\"position\":5"));
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    snprintf(cmd, sizeof cmd, "%s --data-dir %s read --all --from %s", test_bin(), test_dir(), t);
    CHECK_EQ(test_run(cmd, out, sizeof out), 0);
    CHECK(!strstr(out, "Early") && strstr(out, "\"position\":5"));
}
