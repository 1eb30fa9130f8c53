/*
 * test_server.c — the helpers of test_server.h.
 */
#include "test_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/prctl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

srv srv_start(const char *dir, const char *extra) { return srv_start_log(dir, extra, NULL); }

int srv_start_wait_ms = 10000;

/* The last `max` bytes of a server's log, for a failure message ("" if none). */
static const char *log_tail(const char *log, char *out, size_t max) {
    out[0] = 0;
    int fd = log ? open(log, O_RDONLY) : -1;
    if (fd < 0) return out;
    off_t end = lseek(fd, 0, SEEK_END), from = end > (off_t)max - 1 ? end - (off_t)max + 1 : 0;
    ssize_t n = pread(fd, out, max - 1, from);
    out[n > 0 ? n : 0] = 0;
    close(fd);
    return out;
}

srv srv_start_log(const char *dir, const char *extra, const char *log) {
    int p[2];
    CHECK(pipe(p) == 0);
    srv s = {0};
    s.pid = fork();
    if (s.pid == 0) {
        dup2(p[1], 1);
        if (log) {
            int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
            dup2(fd, 2);
        } else if (!getenv("FACTUM_TEST_VERBOSE")) {
            int devnull = open("/dev/null", O_WRONLY);
            dup2(devnull, 2);
        }
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* a failed test does not leave its server behind */
        close(p[0]);
        close(p[1]);
        char *argv[64];
        int n = 0;
        static char buf[1024];
        argv[n++] = (char *)test_bin();
        if (dir) { /* NULL: the data folder comes from elsewhere (a configuration file) */
            argv[n++] = "--data-dir";
            argv[n++] = (char *)dir;
        }
        argv[n++] = "serve";
        argv[n++] = "--listen";
        argv[n++] = "127.0.0.1:0";
        snprintf(buf, sizeof buf, "%s", extra ? extra : "");
        for (char *t = strtok(buf, " "); t && n < 62; t = strtok(NULL, " "))
            argv[n++] = t;
        argv[n] = NULL;
        execv(argv[0], argv);
        _exit(127);
    }
    close(p[1]);
    s.out_fd = p[0];
    char line[256];
    size_t len = 0;
    for (;;) {
        struct pollfd pfd = {p[0], POLLIN, 0};
        CHECK_MSG(poll(&pfd, 1, srv_start_wait_ms) == 1, "server did not say where it listens");
        ssize_t n = read(p[0], line + len, 1);
        if (n != 1) {
            char tail[1500];
            CHECK_MSG(0, "server ended before it listened%s%s%s%s", log ? " (its log " : "", log ? log : "",
                      log ? " ends:)\n" : "", log_tail(log, tail, sizeof tail));
        }
        if (line[len] == '\n') break;
        if (++len == sizeof line - 1) break;
    }
    line[len] = 0;
    const char *colon = strrchr(line, ':');
    CHECK_MSG((strstr(line, "listening on http://") || strstr(line, "listening on https://")) && colon,
              "unexpected first line: %s", line);
    s.port = atoi(colon + 1);
    return s;
}

int srv_stop(srv *s, int sig) {
    int st = 0;
    if (s->pid <= 0) return 0;
    kill(s->pid, sig);
    waitpid(s->pid, &st, 0);
    close(s->out_fd);
    s->pid = 0;
    return st;
}

int http_connect(int port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK_MSG(connect(fd, (struct sockaddr *)&a, sizeof a) == 0, "connect: %s", strerror(errno));
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

void http_send(int fd, const char *p, size_t n) {
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0) return; /* the server may have closed: the response says why */
        p += w, n -= (size_t)w;
    }
}

const char *resp_header(const resp *r, const char *name, char *out, size_t cap) {
    out[0] = 0;
    size_t nl = strlen(name);
    for (const char *l = strstr(r->head, "\r\n"); l && l[2]; l = strstr(l + 2, "\r\n")) {
        const char *h = l + 2;
        if (!strncasecmp(h, name, nl) && h[nl] == ':') {
            const char *v = h + nl + 1, *e = strstr(v, "\r\n");
            while (*v == ' ')
                v++;
            snprintf(out, cap, "%.*s", (int)(e - v), v);
            break;
        }
    }
    return out;
}

static void recv_response(int fd, resp *r, bool head_only) {
    memset(r, 0, sizeof *r);
    size_t hl = 0;
    char *end = NULL;
    while (!end && hl < sizeof r->head - 1) {
        ssize_t n = recv(fd, r->head + hl, sizeof r->head - 1 - hl, MSG_PEEK);
        if (n <= 0) {
            r->closed = true;
            return;
        }
        r->head[hl + (size_t)n] = 0;
        end = strstr(r->head, "\r\n\r\n");
        size_t take = end ? (size_t)(end + 4 - r->head) - hl : (size_t)n;
        if (recv(fd, r->head + hl, take, 0) != (ssize_t)take) {
            r->closed = true;
            return;
        }
        hl += take;
        r->head[hl] = 0;
    }
    if (!end) {
        r->closed = true; /* no response head: status stays 0 */
        return;
    }
    r->status = atoi(r->head + 9);
    char v[64];
    resp_header(r, "content-length", v, sizeof v);
    bool has_len = v[0] != 0;
    head_only |= r->status == 304; /* a 304 never has a body (RFC 9110, 15.4.5) */
    size_t want = head_only ? 0 : has_len ? (size_t)atoll(v) : SIZE_MAX, cap = has_len ? want + 1 : 65536;
    r->body = malloc(cap);
    while (r->body_len < want) {
        if (r->body_len + 1 >= cap) r->body = realloc(r->body, cap *= 2);
        ssize_t n = recv(fd, r->body + r->body_len, MIN(cap - 1 - r->body_len, want - r->body_len), 0);
        if (n <= 0) {
            r->closed = true;
            break;
        }
        r->body_len += (size_t)n;
    }
    r->body[r->body_len] = 0;
    resp_header(r, "connection", v, sizeof v);
    if (!strcasecmp(v, "close") && !r->closed) {
        char x;
        r->closed = recv(fd, &x, 1, 0) == 0;
    }
}

void http_recv(int fd, resp *r) { recv_response(fd, r, false); }

void http_do(int port, const char *method, const char *path, const char *headers, const char *body, resp *r) {
    int fd = http_connect(port);
    char head[16384];
    size_t bl = body ? strlen(body) : 0;
    int n =
        snprintf(head, sizeof head, "%s %s HTTP/1.1\r\nHost: localhost\r\n%s", method, path, headers ? headers : "");
    if (body) n += snprintf(head + n, sizeof head - (size_t)n, "Content-Length: %zu\r\n", bl);
    n += snprintf(head + n, sizeof head - (size_t)n, "\r\n");
    http_send(fd, head, (size_t)n);
    if (body) http_send(fd, body, bl);
    recv_response(fd, r, !strcmp(method, "HEAD"));
    close(fd);
}

void resp_free(resp *r) {
    free(r->body);
    r->body = NULL;
}

int http_try(int port, const char *method, const char *path, const char *headers, const char *body, resp *r) {
    memset(r, 0, sizeof *r);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a)) {
        if (fd >= 0) close(fd);
        return 0;
    }
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char head[16384];
    size_t bl = body ? strlen(body) : 0;
    int n = snprintf(head, sizeof head, "%s %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n%s", method, path,
                     headers ? headers : "");
    if (body) n += snprintf(head + n, sizeof head - (size_t)n, "Content-Length: %zu\r\n", bl);
    n += snprintf(head + n, sizeof head - (size_t)n, "\r\n");
    http_send(fd, head, (size_t)n);
    if (body) http_send(fd, body, bl);
    recv_response(fd, r, false);
    close(fd);
    return r->status;
}

char *resp_take_body(resp *r) {
    char *b = r->body;
    r->body = NULL;
    resp_free(r);
    return b;
}

char *http_body(int port, const char *method, const char *path, const char *hdrs, const char *body, int status) {
    resp r;
    http_do(port, method, path, hdrs, body, &r);
    CHECK_MSG(r.status == status, "%s %s: got %d, want %d: %s", method, path, r.status, status, r.body);
    return resp_take_body(&r);
}

void expect_status(int port, const char *method, const char *path, const char *hdrs, const char *body, int status,
                   const char *body_has) {
    resp r;
    http_do(port, method, path, hdrs, body, &r);
    CHECK_MSG(r.status == status, "%s %s: got %d, want %d: %s", method, path, r.status, status, r.body);
    if (body_has) CHECK_MSG(strstr(r.body, body_has), "%s %s: body lacks %s: %s", method, path, body_has, r.body);
    if (status >= 400) {
        char ct[128];
        CHECK_MSG(!strcmp(resp_header(&r, "content-type", ct, sizeof ct), "application/problem+json"),
                  "%s %s: error content type %s", method, path, ct);
        CHECK(strstr(r.body, "\"detail\":\""));
    }
    resp_free(&r);
}

bool http_wait_body(int port, const char *path, const char *want, int limit_s) {
    uint64_t t0 = clock_mono_ns();
    do {
        resp r;
        http_do(port, "GET", path, NULL, NULL, &r);
        bool ok = r.status == 200 && strstr(r.body, want);
        resp_free(&r);
        if (ok) return true;
        usleep(100000);
    } while (clock_mono_ns() - t0 < (uint64_t)limit_s * 1000000000u);
    return false;
}

int run_factum(char *out, size_t cap, const char *fmt, ...) {
    char args[2048], cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "%s %s 2>&1", test_bin(), args);
    return test_run(cmd, out, cap);
}

double srv_metric(int port, const char *line) {
    char *m = http_body(port, "GET", "/metrics", NULL, NULL, 200);
    char want[200];
    snprintf(want, sizeof want, "\n%s ", line);
    const char *at = strstr(m, want);
    double v = at ? strtod(at + strlen(want), NULL) : -1;
    free(m);
    return v;
}

uint64_t json_u64(const char *body, const char *key) {
    char k[64];
    snprintf(k, sizeof k, "\"%s\":", key);
    const char *p = strstr(body, k);
    CHECK_MSG(p, "no %s in %s", key, body);
    return strtoull(p + strlen(k), NULL, 10);
}

uint64_t srv_scavenge(int port) {
    char *b = http_body(port, "GET", "/admin/scavenge", NULL, NULL, 200);
    const char *p = strstr(b, "\"runs\":");
    CHECK(p);
    char want[64];
    snprintf(want, sizeof want, "\"running\":false,\"runs\":%d,", atoi(p + 7) + 1);
    free(b);
    expect_status(port, "POST", "/admin/scavenge", NULL, "", 202, NULL);
    CHECK_MSG(http_wait_body(port, "/admin/scavenge", want, 60), "the scavenge did not finish");
    b = http_body(port, "GET", "/admin/scavenge", NULL, NULL, 200);
    p = strstr(b, "\"events_removed\":");
    CHECK(p);
    uint64_t removed = strtoull(p + 17, NULL, 10);
    free(b);
    return removed;
}

static _Atomic int64_t *clock_shift_us; /* the servers' wall clock offset, shared through the file */

void test_clock_fake(void) {
    char path[512];
    snprintf(path, sizeof path, "%s/clock", test_dir());
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    CHECK(fd >= 0);
    int64_t zero = 0;
    CHECK(pwrite(fd, &zero, sizeof zero, 0) == (ssize_t)sizeof zero);
    void *p = mmap(NULL, sizeof zero, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    CHECK(p != MAP_FAILED);
    close(fd);
    clock_shift_us = p;
    CHECK(setenv("FACTUM_TEST_CLOCK_FILE", path, 1) == 0);
}

void test_clock_step(int64_t us) { atomic_fetch_add(clock_shift_us, us); }

int64_t test_clock_now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (int64_t)t.tv_sec * 1000000 + t.tv_nsec / 1000 + atomic_load(clock_shift_us);
}

void route_example(const char *pattern, char *out, size_t cap) {
    size_t n = 0;
    for (const char *q = pattern; *q && n + 2 < cap;)
        if (*q == '{') {
            out[n++] = 'x';
            while (*q && *q++ != '}')
                ;
        } else {
            out[n++] = *q++;
        }
    out[n] = 0;
}

void srv_kill_cycles(int cycles, int clients, void *(*fn)(void *), unsigned min_ms, unsigned spread_ms) {
    kill_load *args = calloc((size_t)clients, sizeof *args);
    pthread_t *th = calloc((size_t)clients, sizeof *th);
    for (int cycle = 0; cycle < cycles; cycle++) {
        srv s = srv_start(test_dir(), NULL);
        _Atomic bool stop = false;
        for (int t = 0; t < clients; t++) {
            args[t] = (kill_load){s.port, cycle, t, &stop};
            pthread_create(&th[t], NULL, fn, &args[t]);
        }
        usleep((useconds_t)(min_ms + test_rand() % (spread_ms + 1)) * 1000);
        srv_stop(&s, SIGKILL);
        stop = true;
        for (int t = 0; t < clients; t++)
            pthread_join(th[t], NULL);
    }
    free(args);
    free(th);
}
