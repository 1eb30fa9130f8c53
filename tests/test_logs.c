/*
 * test_logs.c — what the server writes about itself: the access log (Common Log Format and
 * JSON, the key id, reopened on SIGUSR1 for logrotate), slow requests at warn, the level and
 * the JSON format of its own messages, and the bad values of each option.
 */
#include "test_server.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The whole of a file ("" when missing); the caller frees it. */
static char *slurp(const char *path) {
    FILE *f = fopen(path, "r");
    char *s = calloc(1, 1 << 20);
    if (f) {
        size_t n = fread(s, 1, (1 << 20) - 1, f);
        s[n] = 0;
        fclose(f);
    }
    return s;
}

/* Waits until the file holds `want` (a loop writes its lines at the end of its turn). */
static bool file_has(const char *path, const char *want) {
    for (int i = 0; i < 200; i++) {
        char *s = slurp(path);
        bool ok = strstr(s, want) != NULL;
        free(s);
        if (ok) return true;
        usleep(20000);
    }
    return false;
}

static char *key_create(const char *dir, const char *role) {
    char cmd[1024], out[512];
    snprintf(cmd, sizeof cmd, "%s --data-dir %s key create --role %s 2>/dev/null", test_bin(), dir, role);
    CHECK_EQ(test_run(cmd, out, sizeof out), 0);
    out[strcspn(out, "\n")] = 0;
    return strdup(out);
}

TEST(the_access_log_has_a_line_per_request_with_its_key_and_is_reopened_on_sigusr1) {
    char data[512], logf[600], extra[700], auth[300];
    snprintf(data, sizeof data, "%s/data", test_dir());
    snprintf(logf, sizeof logf, "%s/access.log", test_dir());
    char *token = key_create(data, "admin");
    char id[13];
    memcpy(id, token + 3, 12); /* fk_<12 hex id>_<secret> */
    id[12] = 0;
    snprintf(auth, sizeof auth, "Authorization: Bearer %s\r\n", token);
    snprintf(extra, sizeof extra, "--access-log %s", logf);
    srv s = srv_start(data, extra);
    char hdrs[600];
    snprintf(hdrs, sizeof hdrs, "%sContent-Type: application/cloudevents+json\r\n", auth);
    expect_status(s.port, "POST", "/streams/log-1", hdrs, "{\"type\":\"Logged\"}", 201, NULL);
    expect_status(s.port, "GET", "/streams/none-1?from=0&limit=5", auth, NULL, 404, NULL);
    expect_status(s.port, "GET", "/streams/log-1", NULL, NULL, 401, NULL); /* no key: "-" */
    /* each loop writes its lines at the end of its turn: in any order */
    CHECK(file_has(logf, "\"GET /streams/log-1 HTTP/1.1\" 401 "));
    CHECK(file_has(logf, "\"POST /streams/log-1 HTTP/1.1\" 201 "));
    CHECK(file_has(logf, "\"GET /streams/none-1?from=0&limit=5 HTTP/1.1\" 404 "));
    char *log = slurp(logf);
    char want[200];
    snprintf(want, sizeof want, "127.0.0.1 - %s [", id);
    CHECK_MSG(strstr(log, want), "%s", log);
    CHECK_MSG(strstr(log, "\"POST /streams/log-1 HTTP/1.1\" 201 "), "%s", log);
    CHECK_MSG(strstr(log, "\"GET /streams/none-1?from=0&limit=5 HTTP/1.1\" 404 "), "%s", log);
    CHECK_MSG(strstr(log, "127.0.0.1 - - ["), "%s", log);
    /* one line per request, each ending in the seconds it took */
    int lines = 0;
    for (char *p = log; (p = strchr(p, '\n')); p++)
        lines++;
    CHECK_EQ(lines, 3);
    free(log);
    /* logrotate: move the file away, SIGUSR1, and new lines go to a new file of the old name */
    char moved[700];
    snprintf(moved, sizeof moved, "%s.1", logf);
    CHECK(rename(logf, moved) == 0);
    kill(s.pid, SIGUSR1);
    for (int i = 0; i < 200 && access(logf, F_OK); i++) /* made again */
        usleep(20000);
    CHECK(access(logf, F_OK) == 0);
    expect_status(s.port, "GET", "/health", NULL, NULL, 200, NULL);
    CHECK(file_has(logf, "\"GET /health HTTP/1.1\" 200 "));
    log = slurp(moved);
    CHECK_MSG(!strstr(log, "/health"), "%s", log);
    free(log);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    free(token);
}

TEST(the_access_log_in_json_escapes_the_target_and_slow_requests_are_logged_at_warn) {
    char logf[600], errf[600], extra[800];
    snprintf(logf, sizeof logf, "%s/access.json", test_dir());
    snprintf(errf, sizeof errf, "%s/stderr.log", test_dir());
    snprintf(extra, sizeof extra, "--access-log %s --access-log-format json --slow-request-ms 100 --log-format json",
             logf);
    srv s = srv_start_log(test_dir(), extra, errf);
    expect_status(s.port, "GET", "/streams/a%22b", NULL, NULL, 404, NULL);
    /* A request whose body comes 300 ms after its head took at least that long. */
    int fd = http_connect(s.port);
    static const char head[] = "POST /streams/slow-1 HTTP/1.1\r\nHost: localhost\r\nContent-Type: "
                               "application/cloudevents+json\r\nContent-Length: 17\r\n\r\n";
    http_send(fd, head, sizeof head - 1);
    usleep(300000);
    http_send(fd, "{\"type\":\"Slow\"}  ", 17);
    resp r;
    http_recv(fd, &r);
    CHECK_EQ(r.status, 201);
    resp_free(&r);
    close(fd);
    CHECK(file_has(logf, "\"target\":\"/streams/slow-1\",\"status\":201,"));
    char *log = slurp(logf);
    CHECK_MSG(strstr(log, "\"method\":\"GET\",\"target\":\"/streams/a%22b\",\"status\":404,\"bytes\":"), "%s", log);
    CHECK_MSG(strstr(log, "\"remote\":\"127.0.0.1\",\"key\":\"-\""), "%s", log);
    free(log);
    CHECK(file_has(errf, "\"level\":\"warn\",\"msg\":\"slow request: POST /streams/slow-1 from 127.0.0.1 answered "
                         "201 after "));
    CHECK(file_has(errf, "{\"time\":\"")); /* the server's own lines are JSON too */
    char *err = slurp(errf);
    CHECK_MSG(!strstr(err, "slow request: GET"), "%s", err); /* the quick one is not logged */
    free(err);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}

TEST(log_level_error_keeps_the_info_lines_out_and_bad_log_options_are_refused) {
    char errf[600];
    snprintf(errf, sizeof errf, "%s/stderr.log", test_dir());
    srv s = srv_start_log(test_dir(), "--log-level error", errf);
    expect_status(s.port, "GET", "/health", NULL, NULL, 200, NULL);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    char *err = slurp(errf);
    CHECK_MSG(!strstr(err, "up to ") && !strstr(err, "stopped cleanly"), "%s", err);
    free(err);
    static const char *const bad[][2] = {
        {"--access-log-format xml", "--access-log-format is common or json (got 'xml')"},
        {"--log-format yaml", "--log-format is text or json (got 'yaml')"},
        {"--log-level loud", "--log-level is error, warn, info or debug (got 'loud')"},
        {"--slow-request-ms 3600001", "--slow-request-ms wants milliseconds from 0 (never) to 3600000"},
        {"--access-log /nonexistent-dir/x.log", "cannot open the access log /nonexistent-dir/x.log"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char cmd[1024], out[2048];
        snprintf(cmd, sizeof cmd, "%s --data-dir %s/d%zu serve --listen 127.0.0.1:0 %s 2>&1", test_bin(), test_dir(), i,
                 bad[i][0]);
        int st = test_run(cmd, out, sizeof out);
        CHECK_MSG(st != 0 && strstr(out, bad[i][1]), "%s: status %d: %s", bad[i][0], st, out);
    }
}
