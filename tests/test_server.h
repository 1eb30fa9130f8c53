/*
 * test_server.h — helpers for tests against a real `factum serve` on loopback: start it on a
 * free port, speak raw HTTP/1.1 to it, stop it with a signal.
 */
#ifndef FACTUM_TEST_SERVER_H
#define FACTUM_TEST_SERVER_H

#include "test.h"

#include <sys/types.h>

typedef struct srv {
    pid_t pid;
    int port;
    int out_fd; /* the server's stdout */
} srv;

/* Starts build/factum serve on dir with --listen 127.0.0.1:0 plus `extra` (space-separated). */
srv srv_start(const char *dir, const char *extra);
/* How long srv_start waits for the "listening on" line (a cluster node waits for NATS first). */
extern int srv_start_wait_ms;
/* The same, with the server's stderr written to the file `log`. */
srv srv_start_log(const char *dir, const char *extra, const char *log);
/* Sends sig and waits; returns the wait status. */
int srv_stop(srv *s, int sig);

typedef struct resp {
    int status;
    char head[8192];
    char *body; /* NUL-terminated; free with resp_free */
    size_t body_len;
    bool closed; /* the server closed the connection after it */
} resp;

/* A connection to the server (blocking, 10 s receive timeout). */
int http_connect(int port);
/* Sends raw bytes. */
void http_send(int fd, const char *p, size_t n);
/* Reads one response (Content-Length framed, or to EOF). status 0 = nothing came. */
void http_recv(int fd, resp *r);
/* One request on a fresh connection: method, path, extra header lines ("A: b\r\n"...), body. */
void http_do(int port, const char *method, const char *path, const char *headers, const char *body, resp *r);
/* The same, but never fails the test: the status, or 0 if the server was not there to answer
   (r->body may then be NULL; resp_free is still right). */
int http_try(int port, const char *method, const char *path, const char *headers, const char *body, resp *r);
/* The value of header `name` in r (case-insensitive) copied into out, or "" . */
const char *resp_header(const resp *r, const char *name, char *out, size_t cap);
void resp_free(resp *r);
/* Takes r's body (the caller frees it) and frees the rest of r. */
char *resp_take_body(resp *r);
/* One request on a fresh connection that must answer `status`; its body (the caller frees it). */
char *http_body(int port, const char *method, const char *path, const char *hdrs, const char *body, int status);
/* One request; fails the test unless the answer has `status` (and body_has in its body, if not
   NULL). Errors must be problem+json with a detail. */
void expect_status(int port, const char *method, const char *path, const char *hdrs, const char *body, int status,
                   const char *body_has);

/* GET path until the answer is 200 with `want` in its body; true if it came within limit_s. */
bool http_wait_body(int port, const char *path, const char *want, int limit_s);
/* Runs the factum command line (fmt: the arguments after the binary), its stderr with its
   stdout in out; its exit code. */
int run_factum(char *out, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* A sample of GET /metrics (from loopback, without a key): `line` is its name and labels
   ("factum_x{a=\"b\"}"); -1 if there is none. */
double srv_metric(int port, const char *line);
/* The number after "key": in a JSON body (fails the test if there is none). */
uint64_t json_u64(const char *body, const char *key);
/* POST /admin/scavenge and wait until it has finished; returns its events_removed. */
uint64_t srv_scavenge(int port);

/* A crash loop under load: `cycles` times, a server on test_dir() with `clients` threads
   running fn(&load) until the server is killed with SIGKILL after a random 20 to 170 ms or
   more (min_ms + up to spread_ms); then the threads are told to stop and joined. */
typedef struct kill_load {
    int port, cycle, client;
    _Atomic bool *stop;
} kill_load;
void srv_kill_cycles(int cycles, int clients, void *(*fn)(void *), unsigned min_ms, unsigned spread_ms);

/* A concrete path of a route pattern: each {param} becomes "x" (a stream, a group, a name, an id). */
void route_example(const char *pattern, char *out, size_t cap);

/* A wall clock the test steps: servers started after test_clock_fake read the machine's wall
   clock plus an offset the test changes with test_clock_step (FACTUM_TEST_CLOCK_FILE, a file in
   test_dir(); the machine's clock is never touched). test_clock_now_us is the servers' now. */
void test_clock_fake(void);
void test_clock_step(int64_t us);
int64_t test_clock_now_us(void);

#endif
