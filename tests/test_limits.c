/*
 * test_limits.c — the limits on definitions (issue 17, docs/limits.md "Definitions") against a
 * real server: each limit accepts up to it and refuses one past it with 409 limit-reached and
 * writes nothing; redefining a name is not a new definition; /metrics shows use and limit. And
 * the definitions' pool: 200 projections and 200 sagas add no thread, an idle projection gives
 * its descriptors back, and SIGTERM ends the process and says what it waited for.
 */
#include "test_defs.h"
#include "test_server.h"

#include <dirent.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define JSON "Content-Type: application/json\r\n"

/* The log's head: nothing at all was written while it stays. */
static uint64_t head(int port) { return (uint64_t)srv_metric(port, "factum_head_position"); }

/* How many events system stream `enc` (percent-encoded) holds. */
static int events_in(int port, const char *enc) {
    char path[200];
    snprintf(path, sizeof path, "/streams/%s", enc);
    resp r;
    http_do(port, "GET", path, NULL, NULL, &r);
    int n = 0;
    for (const char *p = r.status == 200 ? r.body : ""; (p = strstr(p, "\"specversion\"")); p++)
        n++;
    resp_free(&r);
    return n;
}

typedef struct kind {
    const char *method, *path, *body, *flag, *stream, *metric;
} kind;

static const kind kinds[] = {
    {"PUT", "/projections/p%d", PROJ, "max-projections", "%24projections", "projections"},
    {"PUT", "/sagas/s%d", SAGA, "max-sagas", "%24sagas", "sagas"},
    {"PUT", "/groups/g%d", GROUP, "max-groups", "%24groups", "groups"},
    {"POST", "/schedules", SCHEDULE, "max-schedules", "%24schedules", "schedules"},
};

static int define(int port, const kind *k, int i, resp *r) {
    char path[100];
    snprintf(path, sizeof path, k->path, i);
    http_do(port, k->method, path, JSON, k->body, r);
    return r->status;
}

TEST(each_definition_limit_takes_up_to_it_and_refuses_one_past_it_writing_nothing) {
    srv s = srv_start(test_dir(), "--max-projections 2 --max-sagas 2 --max-groups 2 --max-schedules 2");
    for (size_t k = 0; k < ARRAY_LEN(kinds); k++) {
        const kind *kd = &kinds[k];
        resp r;
        for (int i = 0; i < 2; i++) {
            CHECK_MSG(define(s.port, kd, i, &r) == 201, "%s #%d: %d %s", kd->flag, i, r.status, r.body);
            resp_free(&r);
        }
        char line[100];
        snprintf(line, sizeof line, "factum_definitions{kind=\"%s\"}", kd->metric);
        CHECK_MSG(srv_metric(s.port, line) == 2, "%s", line);
        snprintf(line, sizeof line, "factum_definitions_max{kind=\"%s\"}", kd->metric);
        CHECK_MSG(srv_metric(s.port, line) == 2, "%s", line);
        uint64_t h = head(s.port);
        int n = events_in(s.port, kd->stream);
        CHECK_MSG(define(s.port, kd, 2, &r) == 409, "%s one past: %d %s", kd->flag, r.status, r.body);
        char limit[100];
        snprintf(limit, sizeof limit, "\"limit\":\"%s\",\"max\":2,\"current\":2", kd->flag);
        CHECK_MSG(strstr(r.body, "limit-reached") && strstr(r.body, limit) && strstr(r.body, kd->flag) &&
                      strstr(r.head, "application/problem+json"),
                  "%s", r.body);
        resp_free(&r);
        CHECK_MSG(head(s.port) == h, "%s: the refused definition wrote something", kd->flag);
        CHECK_EQ(events_in(s.port, kd->stream), n);
    }
    /* Nor did the refused projection make its database. */
    char path[4200];
    snprintf(path, sizeof path, "%s/projections/p2.sqlite", test_dir());
    struct stat st;
    CHECK_MSG(stat(path, &st) != 0, "%s was made", path);
    srv_stop(&s, SIGTERM);
}

TEST(redefining_a_name_at_the_limit_is_not_a_new_definition) {
    srv s = srv_start(test_dir(), "--max-projections 1 --max-sagas 1 --max-groups 1");
    for (int k = 0; k < 3; k++) {
        resp r;
        CHECK_MSG(define(s.port, &kinds[k], 0, &r) == 201, "%d %s", r.status, r.body);
        resp_free(&r);
        CHECK_MSG(define(s.port, &kinds[k], 0, &r) == 200, "again: %d %s", r.status, r.body);
        resp_free(&r);
        CHECK_MSG(define(s.port, &kinds[k], 1, &r) == 409, "another: %d %s", r.status, r.body);
        resp_free(&r);
    }
    /* A deletion makes room again. */
    expect_status(s.port, "DELETE", "/projections/p0", NULL, NULL, 200, NULL);
    resp r;
    CHECK_MSG(define(s.port, &kinds[0], 1, &r) == 201, "%d %s", r.status, r.body);
    resp_free(&r);
    srv_stop(&s, SIGTERM);
}

/* The server process's Threads and open descriptors. */
static void usage_of(pid_t pid, int *threads, int *fds) {
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    CHECK(f);
    *threads = -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "Threads:", 8)) *threads = atoi(line + 8);
    fclose(f);
    snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    CHECK(d);
    *fds = 0;
    for (struct dirent *e; (e = readdir(d));)
        *fds += e->d_name[0] != '.';
    closedir(d);
}

TEST_T(two_hundred_projections_and_sagas_add_no_thread_and_sigterm_says_what_it_waited_for, 300) {
    char log[4200];
    snprintf(log, sizeof log, "%s/server.log", test_dir());
    srv s = srv_start_log(test_dir(), "--max-projections 200 --max-sagas 200", log);
    int threads0, fds0, threads, fds;
    usage_of(s.pid, &threads0, &fds0);
    kind pk = kinds[0], sk = kinds[1];
    for (int i = 0; i < 200; i++) {
        resp r;
        CHECK_MSG(define(s.port, &pk, i, &r) == 201, "projection %d: %d %s", i, r.status, r.body);
        resp_free(&r);
        CHECK_MSG(define(s.port, &sk, i, &r) == 201, "saga %d: %d %s", i, r.status, r.body);
        resp_free(&r);
    }
    usage_of(s.pid, &threads, &fds);
    CHECK_MSG(threads == threads0, "threads: %d before, %d with 400 definitions", threads0, threads);
    /* Idle projections close their SQLite files (2 s after their last batch). */
    for (int i = 0; i < 300 && fds > fds0 + 10; i++) {
        usleep(100000);
        usage_of(s.pid, &threads, &fds);
    }
    CHECK_MSG(fds <= fds0 + 10, "descriptors: %d before, %d with 400 idle definitions", fds0, fds);
    /* Some work in flight when the signal comes. */
    for (int i = 0; i < 20; i++) {
        char body[200];
        snprintf(body, sizeof body,
                 "[{\"type\":\"X\",\"data\":{\"i\":%d}},{\"type\":\"OrderPlaced\",\"data\":{\"orderId\":"
                 "\"o%d\"}}]",
                 i, i);
        resp r;
        http_do(s.port, "POST", "/streams/order-1", JSON, body, &r);
        CHECK_MSG(r.status == 201 || r.status == 200, "append: %d %s", r.status, r.body);
        resp_free(&r);
    }
    int st = srv_stop(&s, SIGTERM);
    CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %d", st);
    char cmd[4300], out[8192];
    snprintf(cmd, sizeof cmd, "cat %s", log);
    CHECK_EQ(test_run(cmd, out, sizeof out), 0);
    CHECK_MSG(strstr(out, "stopping 200 projections and 200 sagas: waited ") && strstr(out, "batches in progress") &&
                  strstr(out, "stopped cleanly"),
              "%s", out);
}
