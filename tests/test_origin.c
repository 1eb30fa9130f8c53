/*
 * test_origin.c — who may address the server from where (src/server/origin.c): the Host check
 * against DNS rebinding, Origin checks and CORS, from raw HTTP and from a real browser.
 */
#include "test_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* A free loopback port (bound, read, closed: good enough for one test's helper server). */
static int free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t n = sizeof a;
    CHECK(fd >= 0 && !bind(fd, (struct sockaddr *)&a, sizeof a) && !getsockname(fd, (struct sockaddr *)&a, &n));
    close(fd);
    return ntohs(a.sin_port);
}

/* One raw request with exactly the head lines given (no Host added). */
static int raw_status(int port, const char *head, resp *r) {
    int fd = http_connect(port);
    http_send(fd, head, strlen(head));
    http_recv(fd, r);
    close(fd);
    return r->status;
}

TEST(a_host_that_is_not_a_name_of_the_server_is_refused_and_changes_nothing) {
    srv s = srv_start(test_dir(), "--public-host events.example.com --public-host api.example.org:8443");
    resp r;
    static const struct {
        const char *host;
        int status;
    } cases[] = {
        {"127.0.0.1", 200},
        {"127.0.0.1:7744", 200},
        {"localhost", 200},
        {"LOCALHOST:1", 200},
        {"[::1]:7744", 200},
        {"10.1.2.3", 200},
        {"events.example.com", 200},
        {"Events.Example.COM:1", 200},
        {"api.example.org:8443", 200},
        {"api.example.org", 421},
        {"api.example.org:8444", 421},
        {"attacker.example", 421},
        {"localhost.attacker.example", 421},
        {"x", 421},
        {"[::1", 421},
        {"", 421},
    };
    char head[512], v[256];
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        snprintf(head, sizeof head, "GET /health HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", cases[i].host);
        CHECK_MSG(raw_status(s.port, head, &r) == cases[i].status, "Host '%s': %d, want %d", cases[i].host, r.status,
                  cases[i].status);
        if (r.status == 421) {
            CHECK(strstr(r.body, "\"status\":421") && strstr(r.body, "--public-host"));
            CHECK(!strcmp(resp_header(&r, "content-type", v, sizeof v), "application/problem+json"));
        }
        resp_free(&r);
    }
    /* A refused append writes nothing. */
    snprintf(head, sizeof head,
             "POST /streams/rebind-1 HTTP/1.1\r\nHost: attacker.example:7744\r\nContent-Type: "
             "application/cloudevents+json\r\nContent-Length: 14\r\nConnection: close\r\n\r\n{\"type\":\"Bad\"}");
    CHECK_EQ(raw_status(s.port, head, &r), 421);
    resp_free(&r);
    expect_status(s.port, "GET", "/streams/rebind-1", NULL, NULL, 404, NULL);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}

TEST(requests_from_pages_of_other_origins_are_refused_unless_listed) {
    srv s = srv_start(test_dir(), "--cors-origin https://app.example.com,http://localhost:3000");
    static const char ev[] = "{\"type\":\"Tried\"}";
    char hdr[512], v[512];
    resp r;
    /* An unlisted origin: a simple POST (no preflight in a browser) is refused and writes nothing. */
    http_do(s.port, "POST", "/streams/web-1", "Origin: https://evil.example\r\nContent-Type: text/plain\r\n", ev, &r);
    CHECK_EQ(r.status, 403);
    CHECK(strstr(r.body, "--cors-origin") && strstr(r.body, "evil.example"));
    CHECK(!*resp_header(&r, "access-control-allow-origin", v, sizeof v));
    resp_free(&r);
    expect_status(s.port, "GET", "/streams/web-1", NULL, NULL, 404, NULL);
    /* Its preflight is refused too, and a GET from it cannot be read. */
    http_do(s.port, "OPTIONS", "/streams/web-1",
            "Origin: https://evil.example\r\nAccess-Control-Request-Method: POST\r\n", NULL, &r);
    CHECK_EQ(r.status, 403);
    CHECK(!*resp_header(&r, "access-control-allow-origin", v, sizeof v));
    resp_free(&r);
    expect_status(s.port, "GET", "/health", "Origin: https://evil.example\r\n", NULL, 403, "origin");
    /* "null" (sandboxed frames, files) and an origin that only starts like a listed one. */
    expect_status(s.port, "GET", "/health", "Origin: null\r\n", NULL, 403, NULL);
    expect_status(s.port, "GET", "/health", "Origin: https://app.example.com.evil.example\r\n", NULL, 403, NULL);
    /* A listed origin: the preflight names it, with the headers the API takes. */
    http_do(s.port, "OPTIONS", "/streams/web-1",
            "Origin: https://app.example.com\r\nAccess-Control-Request-Method: POST\r\n"
            "Access-Control-Request-Headers: authorization, content-type\r\n",
            NULL, &r);
    CHECK_EQ(r.status, 204);
    CHECK(!strcmp(resp_header(&r, "access-control-allow-origin", v, sizeof v), "https://app.example.com"));
    CHECK(strstr(resp_header(&r, "access-control-allow-methods", v, sizeof v), "POST"));
    CHECK(strstr(resp_header(&r, "access-control-allow-headers", v, sizeof v), "Authorization"));
    resp_free(&r);
    http_do(s.port, "POST", "/streams/web-1",
            "Origin: http://localhost:3000\r\nContent-Type: application/cloudevents+json\r\n", ev, &r);
    CHECK_EQ(r.status, 201);
    CHECK(!strcmp(resp_header(&r, "access-control-allow-origin", v, sizeof v), "http://localhost:3000"));
    CHECK(!strcmp(resp_header(&r, "vary", v, sizeof v), "Origin"));
    CHECK(strstr(resp_header(&r, "access-control-expose-headers", v, sizeof v), "ETag"));
    resp_free(&r);
    /* The server's own origin (a page it served) needs no listing; no CORS headers are added. */
    snprintf(hdr, sizeof hdr, "Origin: http://localhost\r\nContent-Type: application/cloudevents+json\r\n");
    http_do(s.port, "POST", "/streams/web-1", hdr, ev, &r);
    CHECK_EQ(r.status, 201);
    CHECK(!*resp_header(&r, "access-control-allow-origin", v, sizeof v));
    resp_free(&r);
    /* Without an Origin (curl, services) nothing changes; OPTIONS without one is not a preflight. */
    expect_status(s.port, "GET", "/streams/web-1", NULL, NULL, 200, "Tried");
    expect_status(s.port, "OPTIONS", "/streams/web-1", NULL, NULL, 400, "preflight");
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}

TEST(a_server_without_cors_origins_sends_no_cors_headers) {
    srv s = srv_start(test_dir(), NULL);
    resp r;
    char v[256];
    http_do(s.port, "GET", "/health", NULL, NULL, &r);
    CHECK_EQ(r.status, 200);
    CHECK(!*resp_header(&r, "access-control-allow-origin", v, sizeof v));
    resp_free(&r);
    http_do(s.port, "OPTIONS", "/streams/web-1", "Origin: http://elsewhere\r\nAccess-Control-Request-Method: POST\r\n",
            NULL, &r);
    CHECK_EQ(r.status, 403);
    resp_free(&r);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}

TEST(bad_cors_and_public_host_flags_are_refused_at_start) {
    static const char *bad[] = {
        "--cors-origin https://app.example.com/",
        "--cors-origin app.example.com",
        "--cors-origin https://",
        "--cors-origin ,",
    };
    char cmd[1024], out[4096];
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        snprintf(cmd, sizeof cmd, "%s serve --data-dir %s/d%zu --listen 127.0.0.1:0 %s 2>&1", test_bin(), test_dir(), i,
                 bad[i]);
        int st = test_run(cmd, out, sizeof out);
        CHECK_MSG(st == 2 && strstr(out, "--cors-origin"), "%s: status %d: %s", bad[i], st, out);
    }
}

TEST_T(a_browser_page_of_a_listed_origin_may_call_and_one_of_another_may_not, 120) {
    int page_port = free_port();
    char extra[128], cmd[4096], out[8192];
    snprintf(extra, sizeof extra, "--cors-origin http://localhost:%d", page_port);
    srv s = srv_start(test_dir(), extra);
    snprintf(cmd, sizeof cmd, "node %s/tests/browser/cors.mjs http://127.0.0.1:%d %d 2>&1", test_root(), s.port,
             page_port);
    int st = test_run(cmd, out, sizeof out);
    CHECK_MSG(st == 0 && strstr(out, "cors: ok"), "browser test (status %d): %s", st, out);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}
