/*
 * test_docs.c — machines check what the docs promise: every status the server sends has its
 * reason phrase; docs/openapi.yaml passes a real linter and tells the truth about a real server
 * (tests/contract/); /metrics passes promtool.
 */
#include "../src/server/http.h"
#include "test_server.h"

#include <ctype.h>
#include <dirent.h>
#include <regex.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* RFC 9110 section 15: the reason phrase of every status code it defines (and 429 and 431 of
   RFC 6585). */
static const struct {
    int code;
    const char *phrase;
} rfc9110[] = {
    {100, "Continue"},
    {101, "Switching Protocols"},
    {200, "OK"},
    {201, "Created"},
    {202, "Accepted"},
    {203, "Non-Authoritative Information"},
    {204, "No Content"},
    {205, "Reset Content"},
    {206, "Partial Content"},
    {300, "Multiple Choices"},
    {301, "Moved Permanently"},
    {302, "Found"},
    {303, "See Other"},
    {304, "Not Modified"},
    {305, "Use Proxy"},
    {307, "Temporary Redirect"},
    {308, "Permanent Redirect"},
    {400, "Bad Request"},
    {401, "Unauthorized"},
    {402, "Payment Required"},
    {403, "Forbidden"},
    {404, "Not Found"},
    {405, "Method Not Allowed"},
    {406, "Not Acceptable"},
    {407, "Proxy Authentication Required"},
    {408, "Request Timeout"},
    {409, "Conflict"},
    {410, "Gone"},
    {411, "Length Required"},
    {412, "Precondition Failed"},
    {413, "Content Too Large"},
    {414, "URI Too Long"},
    {415, "Unsupported Media Type"},
    {416, "Range Not Satisfiable"},
    {417, "Expectation Failed"},
    {421, "Misdirected Request"},
    {422, "Unprocessable Content"},
    {426, "Upgrade Required"},
    {429, "Too Many Requests"},
    {431, "Request Header Fields Too Large"},
    {500, "Internal Server Error"},
    {501, "Not Implemented"},
    {502, "Bad Gateway"},
    {503, "Service Unavailable"},
    {504, "Gateway Timeout"},
    {505, "HTTP Version Not Supported"},
    {507, "Insufficient Storage"},
};

static const char *rfc_phrase(int code) {
    for (size_t i = 0; i < ARRAY_LEN(rfc9110); i++)
        if (rfc9110[i].code == code) return rfc9110[i].phrase;
    return NULL;
}

/* The whole file at path (NUL-terminated; the caller frees it), with C comments blanked out. */
static char *read_source(const char *path) {
    FILE *f = fopen(path, "rb");
    CHECK_MSG(f, "cannot open %s", path);
    buf_t b = {0};
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        buf_append(&b, chunk, n);
    fclose(f);
    buf_append(&b, "", 1);
    char *s = b.ptr;
    for (char *p = s; *p; p++) {
        if (*p == '"') { /* a string literal: skip it whole (it may hold slashes) */
            for (p++; *p && *p != '"'; p++)
                if (*p == '\\' && p[1]) p++;
            if (!*p) break;
        } else if (p[0] == '/' && p[1] == '*') {
            char *e = strstr(p + 2, "*/");
            char *end = e ? e + 2 : p + strlen(p);
            memset(p, ' ', (size_t)(end - p));
            p = end - 1;
        } else if (p[0] == '/' && p[1] == '/') {
            while (*p && *p != '\n')
                *p++ = ' ';
            if (!*p) break;
        }
    }
    return s;
}

/* Adds every status code (100-599) in s[0, len) to seen. */
static void codes_in(const char *s, size_t len, bool seen[600]) {
    for (size_t i = 0; i + 3 <= len; i++) {
        bool edge =
            (i == 0 || !isdigit((unsigned char)s[i - 1])) && (i + 3 == len || !isdigit((unsigned char)s[i + 3]));
        if (edge && s[i] >= '1' && s[i] <= '5' && isdigit((unsigned char)s[i + 1]) && isdigit((unsigned char)s[i + 2]))
            seen[(s[i] - '0') * 100 + (s[i + 1] - '0') * 10 + (s[i + 2] - '0')] = true;
    }
}

/*
 * The status codes the server's sources can send, by the ways a status is given there: the
 * status argument of conn_problem, conn_fail and conn_respond (ternaries included), the parser's
 * FAIL(status, ...), status variables (`status = 202`, `j->status == 201`), a hard-written
 * "HTTP/1.1 NNN" line or "\"status\":NNN" body, and `== -413` for a parser's negative answer.
 */
static void server_status_codes(bool seen[600]) {
    static const char *const patterns[] = {
        "(conn_problem|conn_problem_headers|conn_fail|conn_respond)\\([^,]*,([^,;]*)",
        "FAIL\\(([0-9]{3})",
        "status *==? *([0-9]{3})",
        "HTTP/1\\.1 ([0-9]{3})",
        "\\\\\"status\\\\\":([0-9]{3})",
        "== *-([0-9]{3})",
    };
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/src/server", test_root());
    DIR *d = opendir(dir);
    CHECK(d);
    struct dirent *de;
    int files = 0;
    while ((de = readdir(d))) {
        size_t nl = strlen(de->d_name);
        if (nl < 3 || strcmp(de->d_name + nl - 2, ".c")) continue;
        char path[4500];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        char *src = read_source(path);
        files++;
        for (size_t k = 0; k < ARRAY_LEN(patterns); k++) {
            regex_t re;
            CHECK(regcomp(&re, patterns[k], REG_EXTENDED) == 0);
            regmatch_t m[3];
            for (const char *p = src; regexec(&re, p, 3, m, 0) == 0; p += m[0].rm_eo) {
                int g = m[2].rm_so >= 0 ? 2 : 1;
                codes_in(p + m[g].rm_so, (size_t)(m[g].rm_eo - m[g].rm_so), seen);
            }
            regfree(&re);
        }
        /* A status line written by hand says the same phrase. */
        regex_t re;
        CHECK(regcomp(&re, "HTTP/1\\.1 ([0-9]{3}) ([A-Za-z -]+)\\\\r", REG_EXTENDED) == 0);
        regmatch_t m[3];
        for (const char *p = src; regexec(&re, p, 3, m, 0) == 0; p += m[0].rm_eo) {
            int code = atoi(p + m[1].rm_so);
            CHECK_MSG(rfc_phrase(code) &&
                          !strncmp(p + m[2].rm_so, rfc_phrase(code), (size_t)(m[2].rm_eo - m[2].rm_so)) &&
                          strlen(rfc_phrase(code)) == (size_t)(m[2].rm_eo - m[2].rm_so),
                      "%s: the status line '%.*s'", de->d_name, (int)(m[0].rm_eo - m[0].rm_so), p + m[0].rm_so);
        }
        regfree(&re);
        free(src);
    }
    closedir(d);
    CHECK(files > 5);
}

TEST(every_status_the_server_can_send_has_its_reason_phrase) {
    bool seen[600] = {0};
    server_status_codes(seen);
    /* The enumeration finds what is known to be sent (so a broken pattern cannot pass by
       finding nothing): the parser's, an append's, a scavenge's, a push without Accept, a
       query past its timeout. */
    const int known[] = {100, 200, 201, 202, 400, 404, 405, 406, 408, 409, 410,
                         412, 413, 415, 417, 431, 500, 503, 504, 505, 507};
    for (size_t i = 0; i < ARRAY_LEN(known); i++)
        CHECK_MSG(seen[known[i]], "status %d not found in src/server", known[i]);
    int n = 0;
    for (int code = 100; code < 600; code++) {
        if (!seen[code]) continue;
        n++;
        const char *want = rfc_phrase(code);
        CHECK_MSG(want, "src/server sends %d, which RFC 9110 does not define", code);
        CHECK_MSG(!strcmp(http_reason(code), want), "http_reason(%d) is '%s', not '%s'", code, http_reason(code), want);
    }
    CHECK(n >= (int)ARRAY_LEN(known));
}

TEST(a_status_line_and_problem_title_carry_the_reason_phrase) {
    srv s = srv_start(test_dir(), NULL);
    expect_status(s.port, "PUT", "/groups/g1", NULL, "{\"source\":{\"stream\":\"a-1\"}}", 201, NULL);
    resp r;
    http_do(s.port, "GET", "/groups/g1/messages", NULL, NULL, &r); /* push without Accept */
    CHECK_EQ(r.status, 406);
    CHECK_MSG(!strncmp(r.head, "HTTP/1.1 406 Not Acceptable\r\n", 29), "status line: %.40s", r.head);
    CHECK_MSG(strstr(r.body, "\"title\":\"Not Acceptable\""), "%s", r.body);
    resp_free(&r);
    http_do(s.port, "POST", "/admin/scavenge", NULL, NULL, &r);
    CHECK_EQ(r.status, 202);
    CHECK_MSG(!strncmp(r.head, "HTTP/1.1 202 Accepted\r\n", 23), "status line: %.40s", r.head);
    resp_free(&r);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}

#define JSON_HDR "Content-Type: application/json\r\n"

/* Polls GET path until its body holds `has` (the test's time limit bounds the wait). */
static void wait_for_body(int port, const char *path, const char *has) {
    for (;;) {
        resp r;
        http_do(port, "GET", path, NULL, NULL, &r);
        bool there = r.body && strstr(r.body, has);
        resp_free(&r);
        if (there) return;
        usleep(20000);
    }
}

/* A server that has done some of everything, so every metric family has values: appends, a
   consumer group with a delivery acked, a projection running and one failed, a saga that
   started an instance, a timer that fired, a scavenge. */
static srv busy_server(void) {
    srv s = srv_start(test_dir(), NULL);
    expect_status(s.port, "PUT", "/groups/shipping", JSON_HDR, "{\"source\":{\"category\":\"order\"}}", 201, NULL);
    expect_status(s.port, "PUT", "/connectors/hook", JSON_HDR,
                  "{\"kind\":\"http-sink\",\"url\":\"https://127.0.0.1:1/\",\"allow_unreachable\":true,"
                  "\"source\":{\"category\":\"order\"},\"paused\":true}",
                  201, NULL);
    expect_status(s.port, "PUT", "/projections/orders", JSON_HDR,
                  "{\"source\":{\"categories\":[\"order\"]},\"setup\":[\"CREATE TABLE orders (id TEXT PRIMARY KEY)\"],"
                  "\"handlers\":{\"OrderPlaced\":[\"INSERT INTO orders VALUES (:stream)\"]}}",
                  201, NULL);
    expect_status(s.port, "PUT", "/projections/strict", JSON_HDR,
                  "{\"source\":{\"categories\":[\"order\"]},\"setup\":[\"CREATE TABLE t (v TEXT NOT NULL)\"],"
                  "\"handlers\":{\"OrderPlaced\":[\"INSERT INTO t VALUES (:data.nosuch)\"]}}",
                  201, NULL);
    expect_status(s.port, "PUT", "/sagas/fulfil", JSON_HDR,
                  "{\"start_on\":\"OrderPlaced\",\"instance_id\":\"data.orderId\",\"steps\":[{\"name\":\"pay\","
                  "\"command\":{\"stream\":\"payment-commands\",\"type\":\"ReservePayment\",\"data\":{\"orderId\":\"{{"
                  "data.orderId}}\"}},"
                  "\"success\":[\"PaymentReserved\"],\"failure\":[\"PaymentDeclined\"]}]}",
                  201, NULL);
    /* a type whose schema only warns, and one event that fails it (a label with a quote) */
    expect_status(s.port, "PUT", "/schemas/Note%22d/versions/1?mode=warn", JSON_HDR, "{\"type\":\"string\"}", 201,
                  NULL);
    expect_status(s.port, "POST", "/streams/note-1", JSON_HDR, "{\"type\":\"Note\\\"d\",\"data\":1}", 201, NULL);
    for (int i = 1; i <= 3; i++) {
        char path[64], body[128];
        snprintf(path, sizeof path, "/streams/order-%d", i);
        snprintf(body, sizeof body, "{\"type\":\"OrderPlaced\",\"data\":{\"orderId\":\"o%d\"}}", i);
        expect_status(s.port, "POST", path, JSON_HDR, body, 201, NULL);
    }
    char *pulled = http_body(s.port, "POST", "/groups/shipping/messages?max=1", NULL, NULL, 200);
    char *id = strstr(pulled, "\"delivery_id\":\"");
    CHECK_MSG(id, "%s", pulled);
    char ack[128];
    snprintf(ack, sizeof ack, "{\"delivery_ids\":[\"%.*s\"]}", (int)strcspn(id + 15, "\""), id + 15);
    free(pulled);
    expect_status(s.port, "POST", "/groups/shipping/ack", JSON_HDR, ack, 200, NULL);
    char *sched = http_body(s.port, "POST", "/schedules", JSON_HDR,
                            "{\"delay_ms\":0,\"stream\":\"reminder-1\",\"event\":{\"type\":\"Remind\"}}", 201);
    char *sid = strstr(sched, "\"id\":\"");
    CHECK(sid);
    char spath[96];
    snprintf(spath, sizeof spath, "/schedules/%.*s", (int)strcspn(sid + 6, "\""), sid + 6);
    free(sched);
    wait_for_body(s.port, spath, "\"state\":\"fired\"");
    wait_for_body(s.port, "/projections/orders", "\"lag_events\":0");
    wait_for_body(s.port, "/projections/strict", "\"status\":\"failed\"");
    wait_for_body(s.port, "/sagas/fulfil", "\"running\":3");
    expect_status(s.port, "POST", "/admin/scavenge", NULL, NULL, 202, NULL);
    wait_for_body(s.port, "/admin/scavenge", "\"runs\":1");
    return s;
}

TEST_T(metrics_of_a_busy_server_pass_promtool_check_metrics, 120) {
    srv s = busy_server();
    char *m = http_body(s.port, "GET", "/metrics", NULL, NULL, 200);
    char path[4200];
    snprintf(path, sizeof path, "%s/metrics.txt", test_dir());
    FILE *f = fopen(path, "w");
    CHECK(f && fwrite(m, 1, strlen(m), f) == strlen(m));
    fclose(f);
    /* the families the busy server fed, with their values */
    const char *want[] = {"factum_timers_fired_total 1\n",
                          "factum_group_acked_total{group=\"shipping\"} 1\n",
                          "factum_saga_instances{saga=\"fulfil\",status=\"running\"} 3\n",
                          "factum_scavenges_total 1\n",
                          "factum_schema_violations_total{type=\"Note\\\"d\",action=\"warned\"} 1\n",
                          "factum_connector_up{connector=\"hook\",kind=\"http-sink\"} 0\n",
                          "factum_scavenge_segments ",
                          "factum_projection_status{projection=\"orders\",status=\"running\"} 1\n",
                          "factum_projection_status{projection=\"orders\",status=\"failed\"} 0\n",
                          "factum_projection_status{projection=\"strict\",status=\"failed\"} 1\n",
                          "factum_projection_lag_events{projection=\"orders\"} 0\n",
                          "factum_projection_lag_seconds{projection=\"orders\"} 0\n",
                          "factum_projection_applied_total{projection=\"orders\"} 3\n",
                          "factum_projection_failures_total{projection=\"orders\"} 0\n",
                          "factum_projection_failures_total{projection=\"strict\"} 1\n",
                          "# TYPE factum_projection_position gauge\n",
                          "factum_projection_position{projection=\"orders\"} "};
    for (size_t i = 0; i < ARRAY_LEN(want); i++)
        CHECK_MSG(strstr(m, want[i]), "metrics lack '%s':\n%s", want[i], m);
    free(m);
    char cmd[4400], out[8192];
    snprintf(cmd, sizeof cmd, "promtool check metrics < '%s' 2>&1", path);
    int st = test_run(cmd, out, sizeof out);
    CHECK_MSG(st == 0, "promtool check metrics (exit %d): %s", st, out);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}

TEST_T(openapi_yaml_passes_redoclys_linter_without_a_warning, 120) {
    char cmd[8400], out[16384];
    snprintf(cmd, sizeof cmd,
             "cd '%s/tests/contract' && REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true "
             "node_modules/.bin/redocly lint --config redocly.yaml --format=stylish '%s/docs/openapi.yaml' 2>&1",
             test_root(), test_root());
    int st = test_run(cmd, out, sizeof out);
    CHECK_MSG(st == 0 && strstr(out, "Your API description is valid") && !strstr(out, "You have"),
              "redocly lint (exit %d):\n%s", st, out);
}

TEST_T(openapi_yaml_tells_the_truth_about_a_real_server, 180) {
    char cold[1200], extra[1300]; /* an archive folder, for POST /admin/archive's 200 */
    snprintf(cold, sizeof cold, "%s-cold", test_dir());
    CHECK(mkdir(cold, 0755) == 0);
    snprintf(extra, sizeof extra, "--archive-dir %s", cold);
    srv s = srv_start(test_dir(), extra);
    char cmd[4400];
    static char out[1 << 16];
    snprintf(cmd, sizeof cmd, "node '%s/tests/contract/contract.mjs' http://127.0.0.1:%d 2>&1", test_root(), s.port);
    int st = test_run(cmd, out, sizeof out);
    CHECK_MSG(st == 0 && strstr(out, "contract: ok"), "tests/contract/contract.mjs (exit %d):\n%s", st, out);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}
