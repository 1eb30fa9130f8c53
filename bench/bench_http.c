/*
 * bench_http.c — the load generator of `make bench` for the server (issue 3). It drives a
 * running `factum serve` over loopback with 200-byte events and, when given a conninfo, a
 * PostgreSQL event table the same way (one event per transaction, synchronous_commit=on),
 * and prints the figures side by side. bench/http.sh starts both servers. With --tls-port, a
 * second `factum serve` with TLS: single-event appends at 64 clients over HTTPS (with the key
 * --tls-token, if given) beside the same over plain HTTP, in turns. With --key-port and --token,
 * the same appends to a server that holds keys, with the key, beside the server without: the cost
 * of the check. Those appends carry their key in the request they build once (auth_line), so no
 * per-request copy is measured; $TOKEN (hclient.h) still goes with every other request.
 *
 *   bench-http --port P --pid PID [--tls-port P [--tls-token T]] [--key-port P --token T] [--pg CONNINFO]
 *              [--seconds S] [--catchup N] [--only noisy|fanout|appends|catchup]
 *
 * --only noisy prints the noisy-neighbour figure alone (the server must allow 5,300 connections
 * from one address: --max-connections-per-address). --only appends prints "appends A B C":
 * single-event appends/s at 16 and at 64 clients, batch-100 events/s at 16 (bench/cluster.sh).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MIN_TAIL(x) ((size_t)((x) < 32 ? (x) : 32))

#include "hclient.h"

static double seconds = 3;
static const char *pg;
static char pad[160];
static char auth_line[128]; /* "Authorization: Bearer T\r\n" for the appends, or "" */

static size_t event_json(char *out, size_t cap, int i) {
    return (size_t)snprintf(out, cap, "{\"type\":\"BenchEvent\",\"data\":{\"n\":%d,\"pad\":\"%s\"}}", i, pad);
}

/* ---- appends over HTTP ---- */

typedef struct {
    int id, batch;
    _Atomic bool *stop;
    uint64_t events;
} worker;

static void *http_worker(void *p) {
    worker *w = p;
    hconn *c = hconn_new(1 << 16);
    size_t cap = (size_t)w->batch * 256 + 512;
    char *body = malloc(cap), *req = malloc(cap + 512);
    /* One request, built once: the generator must not eat the CPU the server needs. Ids are
       made by the server, so repeating the body appends new events. */
    size_t bl = 0;
    if (w->batch > 1) body[bl++] = '[';
    for (int k = 0; k < w->batch; k++) {
        if (k) body[bl++] = ',';
        bl += event_json(body + bl, cap - bl, k);
    }
    if (w->batch > 1) body[bl++] = ']';
    int hl = snprintf(req, 512,
                      "POST /streams/bench-%d HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n%s"
                      "Content-Length: %zu\r\n\r\n",
                      w->id, auth_line, bl);
    memcpy(req + hl, body, bl);
    while (!*w->stop) {
        int st = roundtrip(c, req, (size_t)hl + bl, NULL);
        if (st != 201) die("an append was not answered 201");
        w->events += (uint64_t)w->batch;
    }
    hconn_free(c);
    free(body);
    free(req);
    return NULL;
}

/* ---- the PostgreSQL reference ---- */

static void *pg_worker(void *p) {
    worker *w = p;
    PGconn *db = PQconnectdb(pg);
    if (PQstatus(db) != CONNECTION_OK) die(PQerrorMessage(db));
    char stream[32], rev[24], data[256];
    snprintf(stream, sizeof stream, "bench-%d", w->id);
    for (long i = 0; !*w->stop; i++) {
        snprintf(rev, sizeof rev, "%ld", i);
        event_json(data, sizeof data, (int)i);
        const char *v[] = {stream, rev, data};
        PGresult *r = PQexecParams(db,
                                   "INSERT INTO events(stream, revision, type, data) VALUES ($1, $2, 'BenchEvent', $3) "
                                   "RETURNING position",
                                   3, NULL, v, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_TUPLES_OK) die(PQresultErrorMessage(r));
        PQclear(r);
        w->events++;
    }
    PQfinish(db);
    return NULL;
}

static double run(void *(*fn)(void *), int clients, int batch, int base) {
    _Atomic bool stop = false;
    worker *w = calloc((size_t)clients, sizeof *w);
    pthread_t *th = calloc((size_t)clients, sizeof *th);
    for (int i = 0; i < clients; i++) {
        w[i] = (worker){base + i, batch, &stop, 0};
        pthread_create(&th[i], NULL, fn, &w[i]);
    }
    uint64_t t0 = now_ns();
    usleep((useconds_t)(seconds * 1e6));
    stop = true;
    uint64_t total = 0;
    for (int i = 0; i < clients; i++) {
        pthread_join(th[i], NULL);
        total += w[i].events;
    }
    double s = (double)(now_ns() - t0) / 1e9;
    free(w);
    free(th);
    return (double)total / s;
}

/* ---- SSE ---- */

static void sse_subscribe(int fd, const char *path) {
    char req[1536];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: localhost\r\n%sAccept: text/event-stream\r\n\r\n", path,
                     auth);
    if (send(fd, req, (size_t)n, 0) != n) die("subscribe failed");
}

static uint64_t head_position(void) {
    hconn *c = hconn_new(1 << 16);
    const char *body;
    static const char req[] = "GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n";
    roundtrip(c, req, sizeof req - 1, &body);
    const char *p = strstr(body, "\"position\":");
    uint64_t v = p ? strtoull(p + 11, NULL, 10) : 0;
    hconn_free(c);
    return v;
}

/* Fills the log to n events with batches of 1000, then times one subscriber reading them. */
static double sse_catchup(uint64_t n) {
    hconn *c = hconn_new(1 << 16);
    size_t cap = 1000 * 256 + 512;
    char *req = malloc(cap + 512), *body = malloc(cap);
    while (head_position() < n) {
        size_t bl = 0;
        body[bl++] = '[';
        for (int k = 0; k < 1000; k++) {
            if (k) body[bl++] = ',';
            bl += event_json(body + bl, cap - bl, k);
        }
        body[bl++] = ']';
        int hl = snprintf(req, 512,
                          "POST /streams/fill-%d HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                          "Content-Length: %zu\r\n\r\n",
                          rand() % 1000, bl);
        memcpy(req + hl, body, bl);
        if (roundtrip(c, req, (size_t)hl + bl, NULL) != 201) die("fill append failed");
    }
    hconn_free(c);
    free(req);
    free(body);
    int fd = dial();
    sse_subscribe(fd, "/all?from=0");
    static char buf[1 << 20];
    uint64_t seen = 0, t0 = now_ns();
    size_t carry = 0;
    while (seen < n) {
        ssize_t r = recv(fd, buf + carry, sizeof buf - carry, 0);
        if (r <= 0) die("the subscription ended");
        size_t len = carry + (size_t)r;
        char *p = buf, *end = buf + len;
        /* Count "\nid: " markers; keep a short tail in case one is split. */
        for (char *q; (q = memmem(p, (size_t)(end - p), "\nid: ", 5)) != NULL; p = q + 5)
            seen++;
        carry = MIN_TAIL(end - p);
        memmove(buf, end - carry, carry);
    }
    double s = (double)(now_ns() - t0) / 1e9;
    close(fd);
    return (double)seen / s;
}

/* ---- append -> subscriber latency ---- */

#define SUBS 100
#define LAT_EVENTS 2000
static uint64_t sent_ns[LAT_EVENTS], acked_ns[LAT_EVENTS];
static uint64_t pos_base;
static uint64_t *recv_ns; /* [SUBS][LAT_EVENTS] */
static _Atomic int lat_done;

static void *lat_reader(void *arg) {
    int *fds = arg, ep = epoll_create1(0);
    static char bufs[SUBS][8192];
    static size_t carry[SUBS];
    for (int i = 0; i < SUBS; i++) {
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev);
    }
    struct epoll_event evs[SUBS];
    while (!lat_done) {
        int n = epoll_wait(ep, evs, SUBS, 100);
        uint64_t t = now_ns();
        for (int k = 0; k < n; k++) {
            int i = (int)evs[k].data.u32;
            ssize_t r = recv(fds[i], bufs[i] + carry[i], sizeof bufs[i] - 1 - carry[i], 0);
            if (r <= 0) continue;
            size_t len = carry[i] + (size_t)r;
            bufs[i][len] = 0;
            char *p = bufs[i];
            for (char *q; (q = strstr(p, "\nid: ")) != NULL; p = q + 5) {
                char *e = strchr(q + 5, '\n');
                if (!e) break;
                uint64_t pos = strtoull(q + 5, NULL, 10);
                if (pos >= pos_base && pos < pos_base + LAT_EVENTS)
                    recv_ns[(size_t)i * LAT_EVENTS + (pos - pos_base)] = t;
            }
            carry[i] = MIN_TAIL(bufs[i] + len - p);
            memmove(bufs[i], bufs[i] + len - carry[i], carry[i]);
        }
    }
    close(ep);
    return NULL;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double pct(uint64_t *v, size_t n, double p) {
    qsort(v, n, sizeof *v, cmp_u64);
    return n ? (double)v[(size_t)((double)(n - 1) * p)] / 1e6 : 0;
}

static void latency(void) {
    int fds[SUBS];
    recv_ns = calloc((size_t)SUBS * LAT_EVENTS, sizeof *recv_ns);
    for (int i = 0; i < SUBS; i++) {
        fds[i] = dial();
        sse_subscribe(fds[i], "/all?from=end");
    }
    usleep(300000);
    pos_base = head_position();
    pthread_t th;
    pthread_create(&th, NULL, lat_reader, fds);
    usleep(100000);
    hconn *c = hconn_new(1 << 16);
    char req[1024], body[300];
    for (int i = 0; i < LAT_EVENTS; i++) {
        size_t bl = event_json(body, sizeof body, i);
        int hl = snprintf(req, sizeof req,
                          "POST /streams/lat-1 HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                          "Content-Length: %zu\r\n\r\n%s",
                          bl, body);
        sent_ns[i] = now_ns();
        const char *rb;
        if (roundtrip(c, req, (size_t)hl, &rb) != 201) die("latency append failed");
        acked_ns[i] = now_ns();
        const char *pp = strstr(rb, "\"position\":");
        if (!pp || strtoull(pp + 11, NULL, 10) != pos_base + (uint64_t)i)
            die("another writer interfered with the latency run");
        usleep(500);
    }
    usleep(500000);
    lat_done = 1;
    pthread_join(th, NULL);
    uint64_t *deliver = malloc((size_t)SUBS * LAT_EVENTS * sizeof *deliver),
             *beyond = malloc((size_t)SUBS * LAT_EVENTS * sizeof *beyond);
    uint64_t ack[LAT_EVENTS];
    size_t n = 0, missing = 0;
    for (int i = 0; i < SUBS; i++)
        for (int e = 0; e < LAT_EVENTS; e++) {
            uint64_t t = recv_ns[(size_t)i * LAT_EVENTS + e];
            if (!t) {
                missing++;
                continue;
            }
            deliver[n] = t - sent_ns[e];
            beyond[n] = t > acked_ns[e] ? t - acked_ns[e] : 0;
            n++;
        }
    for (int e = 0; e < LAT_EVENTS; e++)
        ack[e] = acked_ns[e] - sent_ns[e];
    printf("  append -> subscriber, %d subscribers x %d events (%zu missing):\n", SUBS, LAT_EVENTS, missing);
    printf("    append alone          p50 %7.3f ms   p99 %7.3f ms\n", pct(ack, LAT_EVENTS, 0.5),
           pct(ack, LAT_EVENTS, 0.99));
    printf("    append -> delivered   p50 %7.3f ms   p99 %7.3f ms\n", pct(deliver, n, 0.5), pct(deliver, n, 0.99));
    printf("    beyond the append ack p50 %7.3f ms   p99 %7.3f ms   (target p99 < 5 ms)\n", pct(beyond, n, 0.5),
           pct(beyond, n, 0.99));
    for (int i = 0; i < SUBS; i++)
        close(fds[i]);
    hconn_free(c);
    free(deliver);
    free(beyond);
    free(recv_ns);
}

/* ---- durable timers ---- */

#define TIMERS 100000
static int64_t timers_base_us;

static int64_t wall_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (int64_t)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

static void fmt_time(int64_t us, char out[32]) {
    time_t s = (time_t)(us / 1000000);
    struct tm tm;
    gmtime_r(&s, &tm);
    snprintf(out, 32, "%04u-%02u-%02uT%02u:%02u:%02u.%06uZ", (unsigned)(tm.tm_year + 1900) % 10000u,
             (unsigned)(tm.tm_mon + 1) % 100u, (unsigned)tm.tm_mday % 100u, (unsigned)tm.tm_hour % 100u,
             (unsigned)tm.tm_min % 100u, (unsigned)tm.tm_sec % 100u, (unsigned)(us % 1000000));
}

static void *timer_worker(void *p) {
    worker *w = p;
    hconn *c = hconn_new(1 << 16);
    char req[1024], body[512], at[32];
    for (int i = w->id; i < TIMERS; i += w->batch) {
        int64_t due = timers_base_us + (int64_t)i * 10; /* spread over one second */
        fmt_time(due, at);
        int bl =
            snprintf(body, sizeof body,
                     "{\"at\":\"%s\",\"stream\":\"timer-%d\",\"event\":{\"type\":\"Due\",\"data\":{\"at_us\":%lld}}}",
                     at, i % 100, (long long)due);
        int hl = snprintf(req, sizeof req,
                          "POST /schedules HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                          "Content-Length: %d\r\n\r\n%s",
                          bl, body);
        if (roundtrip(c, req, (size_t)hl, NULL) != 201) die("schedule failed");
        w->events++;
    }
    hconn_free(c);
    return NULL;
}

static void timers_bench(void) {
    enum { CLIENTS = 16 };
    timers_base_us = wall_us() + 8000000;
    pthread_t th[CLIENTS];
    worker w[CLIENTS];
    uint64_t t0 = now_ns();
    for (int i = 0; i < CLIENTS; i++) {
        w[i] = (worker){i, CLIENTS, NULL, 0};
        pthread_create(&th[i], NULL, timer_worker, &w[i]);
    }
    for (int i = 0; i < CLIENTS; i++)
        pthread_join(th[i], NULL);
    double sched_s = (double)(now_ns() - t0) / 1e9;
    if (wall_us() > timers_base_us)
        printf("  (scheduling took past the first due time; lateness below includes that)\n");
    /* Wait until the last is due, then read every fired event back and compare its commit time
       with the time it was due. */
    while (wall_us() < timers_base_us + 1000000 + 500000)
        usleep(100000);
    uint64_t *late = calloc(TIMERS, sizeof *late);
    size_t n = 0;
    hconn *c = hconn_new(64u << 20); /* pages of up to 10,000 events */
    for (int s = 0; s < 100; s++) {
        char req[256];
        int hl = snprintf(req, sizeof req, "GET /streams/timer-%d?limit=10000 HTTP/1.1\r\nHost: localhost\r\n\r\n", s);
        const char *body;
        if (roundtrip(c, req, (size_t)hl, &body) != 200) die("reading fired timers failed");
        for (const char *p = body; (p = strstr(p, "\"time\":\"")) != NULL; p += 8) {
            struct tm tm = {0};
            int us = 0;
            if (sscanf(p + 8, "%4d-%2d-%2dT%2d:%2d:%2d.%6dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
                       &tm.tm_min, &tm.tm_sec, &us) != 7)
                continue;
            tm.tm_year -= 1900, tm.tm_mon -= 1;
            int64_t t = (int64_t)timegm(&tm) * 1000000 + us;
            const char *a = strstr(p, "\"at_us\":");
            if (!a) continue;
            int64_t due = strtoll(a + 8, NULL, 10);
            late[n++] = t > due ? (uint64_t)(t - due) * 1000 : 0;
        }
    }
    hconn_free(c);
    printf("  %d timers: scheduled in %.2f s (%.0f/s, 16 clients); %zu fired; lateness p50 %.3f ms, p99 %.3f ms, max "
           "%.3f ms\n",
           TIMERS, sched_s, TIMERS / sched_s, n, pct(late, n, 0.5), pct(late, n, 0.99), pct(late, n, 1.0));
    free(late);
}

/* ---- snapshot + tail ---- */

static void snapshot_bench(void) {
    hconn *c = hconn_new(8u << 20);
    static char batch[1000 * 256 + 512];
    char req[1024];
    for (int done = 0; done < 100000; done += 1000) {
        size_t bl = 0;
        batch[bl++] = '[';
        for (int k = 0; k < 1000; k++) {
            if (k) batch[bl++] = ',';
            bl += event_json(batch + bl, sizeof batch - bl, done + k);
        }
        batch[bl++] = ']';
        int hl = snprintf(req, sizeof req,
                          "POST /streams/aggregate-1 HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                          "Content-Length: %zu\r\n\r\n",
                          bl);
        char *full = malloc((size_t)hl + bl);
        memcpy(full, req, (size_t)hl);
        memcpy(full + hl, batch, bl);
        if (roundtrip(c, full, (size_t)hl + bl, NULL) != 201) die("aggregate append failed");
        free(full);
    }
    const char *snap = "{\"revision\":99989,\"state\":{\"total\":12345,\"items\":[1,2,3]}}";
    int hl = snprintf(req, sizeof req,
                      "PUT /streams/aggregate-1/snapshot HTTP/1.1\r\nHost: localhost\r\nContent-Length: %zu\r\n\r\n%s",
                      strlen(snap), snap);
    if (roundtrip(c, req, (size_t)hl, NULL) != 201) die("snapshot failed");
    enum { N = 2000 };
    static uint64_t lat[N];
    static const char get[] = "GET /streams/aggregate-1?from=snapshot HTTP/1.1\r\nHost: localhost\r\n\r\n";
    for (int i = 0; i < N; i++) {
        uint64_t t0 = now_ns();
        const char *body;
        if (roundtrip(c, get, sizeof get - 1, &body) != 200 || !strstr(body, "\"revision\":99999"))
            die("snapshot read failed");
        lat[i] = now_ns() - t0;
    }
    printf("  snapshot + tail of a 100,000-event aggregate (snapshot 10 events from the end), %d reads:"
           " p50 %.3f ms, p99 %.3f ms   (target p99 < 2 ms)\n",
           N, pct(lat, N, 0.5), pct(lat, N, 0.99));
    hconn_free(c);
}

/* ---- fan-out: 1,000 live subscribers while 16 clients append (issue 15) ---- */

#define FAN_SUBS 1000
#define FAN_CLIENTS 16
#define FAN_RATE 1000 /* events/s from all the clients together: 1,000,000 deliveries/s */
#define FAN_N 20000   /* positions followed */
static uint64_t fan_base, *fan_sent, *fan_acked, *fan_recv; /* fan_recv: [FAN_SUBS][FAN_N] */
static int fan_fds[FAN_SUBS];
static _Atomic bool fan_stop, fan_appending;

static void *fan_reader(void *arg) {
    int half = (int)(intptr_t)arg, from = half * FAN_SUBS / 2, to = from + FAN_SUBS / 2, ep = epoll_create1(0);
    static char bufs[FAN_SUBS][8192];
    static size_t carry[FAN_SUBS];
    for (int i = from; i < to; i++) {
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        epoll_ctl(ep, EPOLL_CTL_ADD, fan_fds[i], &ev);
    }
    struct epoll_event evs[256];
    while (!fan_stop) {
        int n = epoll_wait(ep, evs, 256, 100);
        uint64_t t = now_ns();
        for (int k = 0; k < n; k++) {
            int i = (int)evs[k].data.u32;
            ssize_t r = recv(fan_fds[i], bufs[i] + carry[i], sizeof bufs[i] - 1 - carry[i], 0);
            if (r <= 0) continue;
            size_t len = carry[i] + (size_t)r;
            bufs[i][len] = 0;
            char *p = bufs[i];
            for (char *q; (q = strstr(p, "\nid: ")) != NULL; p = q + 5) {
                if (!strchr(q + 5, '\n')) break;
                uint64_t pos = strtoull(q + 5, NULL, 10) - fan_base;
                if (pos < FAN_N && !fan_recv[(size_t)i * FAN_N + pos]) fan_recv[(size_t)i * FAN_N + pos] = t;
            }
            carry[i] = MIN_TAIL(bufs[i] + len - p);
            memmove(bufs[i], bufs[i] + len - carry[i], carry[i]);
        }
    }
    close(ep);
    return NULL;
}

/* Each client appends one event every FAN_CLIENTS/FAN_RATE seconds, and notes when. */
static void *fan_appender(void *arg) {
    int id = (int)(intptr_t)arg;
    hconn *c = hconn_new(1 << 16);
    char req[1024], body[300];
    size_t bl = event_json(body, sizeof body, id);
    int hl = snprintf(req, sizeof req,
                      "POST /streams/fan-%d HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                      "Content-Length: %zu\r\n\r\n%s",
                      id, bl, body);
    uint64_t period = 1000000000ull * FAN_CLIENTS / FAN_RATE, next = now_ns() + period * (uint64_t)id / FAN_CLIENTS;
    while (fan_appending) {
        uint64_t t = now_ns();
        if (t < next) {
            usleep((useconds_t)((next - t) / 1000));
            continue;
        }
        next += period;
        const char *rb;
        uint64_t sent = now_ns();
        if (roundtrip(c, req, (size_t)hl, &rb) != 201) die("a fan-out append failed");
        uint64_t acked = now_ns();
        const char *pp = strstr(rb, "\"position\":");
        uint64_t pos = pp ? strtoull(pp + 11, NULL, 10) - fan_base : FAN_N;
        if (pos < FAN_N) fan_sent[pos] = sent, fan_acked[pos] = acked;
    }
    hconn_free(c);
    return NULL;
}

/* utime + stime of a process, in microseconds. */
static uint64_t cpu_us(int pid) {
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f) fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    unsigned long long ut = 0, st = 0;
    if (p) sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st);
    return (ut + st) * 1000000ull / (uint64_t)sysconf(_SC_CLK_TCK);
}

static void fanout(int pid) {
    fan_sent = calloc(FAN_N, sizeof *fan_sent), fan_acked = calloc(FAN_N, sizeof *fan_acked);
    fan_recv = calloc((size_t)FAN_SUBS * FAN_N, sizeof *fan_recv);
    for (int i = 0; i < FAN_SUBS; i++) {
        fan_fds[i] = dial();
        sse_subscribe(fan_fds[i], "/all?from=end");
    }
    usleep(500000);
    fan_base = head_position();
    pthread_t rd[2], ap[FAN_CLIENTS];
    for (int i = 0; i < 2; i++)
        pthread_create(&rd[i], NULL, fan_reader, (void *)(intptr_t)i);
    uint64_t cpu0 = pid ? cpu_us(pid) : 0;
    fan_appending = true;
    for (int i = 0; i < FAN_CLIENTS; i++)
        pthread_create(&ap[i], NULL, fan_appender, (void *)(intptr_t)i);
    usleep((useconds_t)(seconds * 1e6));
    fan_appending = false; /* the readers take what is still on its way */
    for (int i = 0; i < FAN_CLIENTS; i++)
        pthread_join(ap[i], NULL);
    usleep(500000);
    uint64_t cpu = pid ? cpu_us(pid) - cpu0 : 0;
    fan_stop = true;
    for (int i = 0; i < 2; i++)
        pthread_join(rd[i], NULL);
    size_t events = 0, got = 0, missing = 0;
    uint64_t *ack = malloc(FAN_N * sizeof *ack), *deliver = malloc((size_t)FAN_SUBS * FAN_N * sizeof *deliver);
    for (size_t e = 0; e < FAN_N; e++) {
        if (!fan_sent[e]) continue;
        ack[events++] = fan_acked[e] - fan_sent[e];
        for (int i = 0; i < FAN_SUBS; i++) {
            uint64_t t = fan_recv[(size_t)i * FAN_N + e];
            if (t)
                deliver[got++] = t - fan_sent[e];
            else
                missing++;
        }
    }
    double a99 = pct(ack, events, 0.99), d99 = pct(deliver, got, 0.99);
    printf("  %d live subscribers of /all, %d clients appending %d events/s in all: %zu events, %zu deliveries (%zu "
           "missing)\n",
           FAN_SUBS, FAN_CLIENTS, FAN_RATE, events, got, missing);
    printf("    append p50 %.3f ms p99 %.3f ms; append -> delivered p50 %.3f ms p99 %.3f ms (target p99 <= %.3f ms); "
           "server CPU %.2f us per delivered event\n",
           pct(ack, events, 0.5), a99, pct(deliver, got, 0.5), d99, a99 + 1, got ? (double)cpu / (double)got : 0);
    for (int i = 0; i < FAN_SUBS; i++)
        close(fan_fds[i]);
    free(ack), free(deliver), free(fan_sent), free(fan_acked), free(fan_recv);
}

/* ---- memory of idle connections ---- */

static long rss_kb(int pid) {
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6)) kb = atol(line + 6);
    if (f) fclose(f);
    return kb;
}

static void idle_memory(int pid) {
    enum { N = 1000 };
    static hconn *conns[N];
    long before = rss_kb(pid);
    static const char req[] = "GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n";
    for (int i = 0; i < N; i++) {
        conns[i] = hconn_new(4096);
        roundtrip(conns[i], req, sizeof req - 1, NULL);
    }
    usleep(200000);
    long after = rss_kb(pid);
    printf("  1,000 idle keep-alive connections: server RSS %ld -> %ld KiB (%+.0f bytes per connection)\n", before,
           after, (double)(after - before) * 1024 / N);
    for (int i = 0; i < N; i++)
        hconn_free(conns[i]);
}

/* ---- the commit path with many idle connections (issue 15) ---- */

/* Single-event appends at 16 clients with no other connection, then beside `idle` keep-alive
   connections that sent one request and wait, and 100 subscribers of other streams: a commit
   wakes only whom it concerns, so the rate should not fall with the idle ones. */
static void idle_commit_path(int idle) {
    static hconn **conns;
    int subs[100];
    double quiet = run(http_worker, 16, 1, 300);
    conns = calloc((size_t)idle, sizeof *conns);
    static const char req[] = "GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n";
    int opened = 0;
    for (; opened < idle; opened++) {
        conns[opened] = hconn_new(4096);
        if (roundtrip(conns[opened], req, sizeof req - 1, NULL) != 200) break;
    }
    for (int i = 0; i < 100; i++) {
        char path[64];
        subs[i] = dial();
        snprintf(path, sizeof path, "/streams/elsewhere-%d?from=end", i);
        sse_subscribe(subs[i], path);
    }
    usleep(300000);
    double busy = run(http_worker, 16, 1, 400);
    printf("  single-event appends/s, 16 clients: %.0f alone, %.0f beside %d idle connections and 100 stream "
           "subscribers (%.2f of it)\n",
           quiet, busy, opened, quiet ? busy / quiet : 0);
    for (int i = 0; i < 100; i++)
        close(subs[i]);
    for (int i = 0; i < opened; i++)
        hconn_free(conns[i]);
    free(conns);
}

/* ---- a noisy neighbour (issue 17) ---- */

/* A connection from 127.0.0.2: the server counts it against another address than the clients'. */
static int dial_noisy(int rcvbuf) {
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    if (rcvbuf) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(0x7f000002u);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a)) die("cannot bind 127.0.0.2");
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)port);
    if (connect(fd, (struct sockaddr *)&a, sizeof a)) die("cannot connect to the server");
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    /* closed with a reset: thousands per turn would otherwise use up 127.0.0.2's ports in TIME_WAIT */
    struct linger lg = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    return fd;
}

#define NOISY_SUBS 200
static _Atomic bool noisy_stop;

/* NOISY_NICE=N runs the noisy client's threads at nice N (default 0): in a deployment the noisy
   client runs on a machine of its own; here its own work is counted against the server. */
static void noisy_thread_nice(void) {
    const char *v = getenv("NOISY_NICE");
    int nice = v ? atoi(v) : 0;
    if (nice) setpriority(PRIO_PROCESS, (id_t)gettid(), nice);
}
static _Atomic uint64_t noisy_resubscribed, noisy_answers;

/* Subscribers that never read: one the server cuts off subscribes again at once. */
static void *noisy_subscribers(void *arg) {
    (void)arg;
    noisy_thread_nice();
    int ep = epoll_create1(0), fds[NOISY_SUBS];
    for (int i = 0; i < NOISY_SUBS; i++) {
        fds[i] = dial_noisy(4096);
        sse_subscribe(fds[i], "/all?from=end");
        struct epoll_event ev = {.events = EPOLLRDHUP, .data.u32 = (uint32_t)i};
        epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev);
    }
    struct epoll_event evs[NOISY_SUBS];
    while (!noisy_stop) {
        int n = epoll_wait(ep, evs, NOISY_SUBS, 100);
        for (int k = 0; k < n; k++) {
            int i = (int)evs[k].data.u32;
            close(fds[i]);
            fds[i] = dial_noisy(4096);
            sse_subscribe(fds[i], "/all?from=end");
            struct epoll_event ev = {.events = EPOLLRDHUP, .data.u32 = (uint32_t)i};
            epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev);
            noisy_resubscribed++;
        }
    }
    for (int i = 0; i < NOISY_SUBS; i++)
        close(fds[i]);
    close(ep);
    return NULL;
}

/* Pipelined GETs, 200 at a time, as fast as the answers come back. */
static void *noisy_pipeliner(void *arg) {
    (void)arg;
    noisy_thread_nice();
    static const char req[] = "GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n";
    enum { BATCH = 200 };
    char *batch = malloc(BATCH * (sizeof req - 1)), buf[65536];
    for (int i = 0; i < BATCH; i++)
        memcpy(batch + (size_t)i * (sizeof req - 1), req, sizeof req - 1);
    int fd = dial_noisy(0);
    while (!noisy_stop) {
        for (size_t off = 0; off < BATCH * (sizeof req - 1);) {
            ssize_t w = send(fd, batch + off, BATCH * (sizeof req - 1) - off, MSG_NOSIGNAL);
            if (w <= 0) die("the pipelined flood was cut off");
            off += (size_t)w;
        }
        int seen = 0;
        while (seen < BATCH) { /* count status lines; one cut in two is rare and only costs a batch's count */
            ssize_t r = recv(fd, buf, sizeof buf - 1, 0);
            if (r <= 0) die("the pipelined flood was cut off");
            buf[r] = 0;
            for (char *p = buf; (p = memmem(p, (size_t)(buf + r - p), "HTTP/1.1 ", 9)) != NULL; p += 9)
                seen++;
        }
        noisy_answers += (uint64_t)seen;
    }
    close(fd);
    free(batch);
    return NULL;
}

/* Single-event appends of 16 clients alone, then while a client of another address holds 5,000
   idle connections, 200 subscribers that never read and a pipelined flood on 2 connections; in
   NOISY_ROUNDS alternating turns (3 by default, the time split between them), so that the
   drift of a shared machine's disk falls on both sides alike. The figure is the busy turns'
   appends over the quiet turns'. */
static void noisy_neighbour(void) {
    enum { FLOODS = 2 };
    /* NOISY=idle,subs,flood picks the parts (all by default), to see which one costs what. */
    const char *parts = getenv("NOISY") ? getenv("NOISY") : "idle,subs,flood";
    int IDLE = strstr(parts, "idle") ? 5000 : 0, nfloods = strstr(parts, "flood") ? FLOODS : 0;
    bool with_subs = strstr(parts, "subs") != NULL;
    int rounds = getenv("NOISY_ROUNDS") ? atoi(getenv("NOISY_ROUNDS")) : 3;
    if (rounds < 1) rounds = 1;
    double total_seconds = seconds, quiet = 0, busy = 0, answers = 0;
    seconds = total_seconds / rounds;
    static int idle[5000];
    static const char req[] = "GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n";
    char buf[4096], turns[512];
    size_t tl = 0;
    turns[0] = 0;
    for (int r = 0; r < rounds; r++) {
        double q = run(http_worker, 16, 1, 500);
        for (int i = 0; i < IDLE; i++) {
            idle[i] = dial_noisy(0);
            if (send(idle[i], req, sizeof req - 1, 0) != (ssize_t)(sizeof req - 1) ||
                recv(idle[i], buf, sizeof buf, 0) <= 0)
                die("an idle connection was refused");
        }
        noisy_stop = false;
        pthread_t subs, floods[FLOODS];
        if (with_subs) pthread_create(&subs, NULL, noisy_subscribers, NULL);
        for (int i = 0; i < nfloods; i++)
            pthread_create(&floods[i], NULL, noisy_pipeliner, NULL);
        usleep(300000);
        uint64_t answers0 = noisy_answers;
        double b = run(http_worker, 16, 1, 600);
        answers += (double)(noisy_answers - answers0);
        noisy_stop = true;
        if (with_subs) pthread_join(subs, NULL);
        for (int i = 0; i < nfloods; i++)
            pthread_join(floods[i], NULL);
        for (int i = 0; i < IDLE; i++)
            close(idle[i]);
        quiet += q, busy += b;
        if (tl < sizeof turns)
            tl += (size_t)snprintf(turns + tl, sizeof turns - tl, "%s%.0f/%.0f", r ? ", " : "", q, b);
    }
    seconds = total_seconds;
    quiet /= rounds, busy /= rounds;
    printf("  noisy neighbour: single-event appends/s, 16 clients: %.0f alone, %.0f beside %d idle connections, %d "
           "subscribers that never read (%llu cut off and back) and a pipelined flood (%.0f answers/s): %.2f of it  "
           "(target >= 0.8; turns alone/beside: %s)\n",
           quiet, busy, IDLE, with_subs ? NOISY_SUBS : 0, (unsigned long long)noisy_resubscribed,
           answers / total_seconds, quiet ? busy / quiet : 0, turns);
}

int main(int argc, char **argv) {
    hclient_init();
    int pid = 0, key_port = 0, tls_port = 0;
    const char *token = NULL, *tls_token = NULL;
    uint64_t catchup = 1000000;
    bool only_noisy = false, only_fanout = false, only_appends = false, only_catchup = false;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--port"))
            port = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--pid"))
            pid = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--tls-port"))
            tls_port = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--tls-token"))
            tls_token = argv[i + 1];
        else if (!strcmp(argv[i], "--pg"))
            pg = argv[i + 1];
        else if (!strcmp(argv[i], "--seconds"))
            seconds = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--catchup"))
            catchup = strtoull(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--key-port"))
            key_port = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--token"))
            token = argv[i + 1];
        else if (!strcmp(argv[i], "--only") && !strcmp(argv[i + 1], "noisy"))
            only_noisy = true;
        else if (!strcmp(argv[i], "--only") && !strcmp(argv[i + 1], "fanout"))
            only_fanout = true;
        else if (!strcmp(argv[i], "--only") && !strcmp(argv[i + 1], "catchup"))
            only_catchup = true;
        else if (!strcmp(argv[i], "--only") && !strcmp(argv[i + 1], "appends"))
            only_appends = true;
        else
            die("usage: bench-http --port P --pid PID [--tls-port P [--tls-token T]] [--key-port P --token T] "
                "[--pg CONNINFO] [--seconds S] [--catchup N] [--only noisy|fanout|appends|catchup]");
    }
    if (!port) die("--port is required");
    int plain_port = port;
    memset(pad, 'x', 155); /* 200 bytes of JSON per event */
    if (only_catchup) {
        printf("  SSE catch-up of %llu events: %.0f events/s\n", (unsigned long long)catchup, sse_catchup(catchup));
        return 0;
    }
    if (only_noisy || only_fanout) {
        if (only_noisy) noisy_neighbour();
        if (only_fanout) fanout(pid);
        return 0;
    }
    if (only_appends) { /* for bench/cluster.sh: the three append figures on one line */
        double a = run(http_worker, 16, 1, 0), b = run(http_worker, 64, 1, 100), c = run(http_worker, 16, 100, 200);
        printf("appends %.0f %.0f %.0f\n", a, b, c);
        return 0;
    }
    if (pid) idle_memory(pid); /* first, on a fresh server */
    char probe[512];
    printf("server appends over HTTP (events of %zu bytes of JSON, %.0f s each):\n", event_json(probe, sizeof probe, 0),
           seconds);
    double f16 = run(http_worker, 16, 1, 0), f64 = run(http_worker, 64, 1, 100), b16 = run(http_worker, 16, 100, 200);
    double h64 = 0, t64 = 0;
    if (tls_port) /* the same workers over plain HTTP and TLS in turn, so the machine's other load falls on both */
        for (int i = 0; i < 3; i++) {
            h64 += run(http_worker, 64, 1, 100) / 3;
            port = tls_port, tls = hclient_tls();
            if (tls_token) snprintf(auth_line, sizeof auth_line, "Authorization: Bearer %s\r\n", tls_token);
            t64 += run(http_worker, 64, 1, 100) / 3;
            port = plain_port, tls = NULL, auth_line[0] = 0;
        }
    double p16 = 0, p64 = 0;
    if (pg) {
        p16 = run(pg_worker, 16, 1, 0);
        p64 = run(pg_worker, 64, 1, 100);
    }
    printf("  %-34s %12s %12s %8s\n", "", "factum", "postgresql", "ratio");
    printf("  %-34s %12.0f %12.0f %8.2f\n", "single-event appends/s, 16 clients", f16, p16, p16 ? f16 / p16 : 0);
    printf("  %-34s %12.0f %12.0f %8.2f   (target >= 3)\n", "single-event appends/s, 64 clients", f64, p64,
           p64 ? f64 / p64 : 0);
    printf("  %-34s %12.0f %12s %8s   (target >= 500,000)\n", "batch-100 events/s, 16 clients", b16, "-", "");
    if (key_port && token) {
        /* The same appends to a second server that holds keys, each with the key in its header:
           what checking keys costs (src/server/guard.c). Taking turns, so both see the same machine. */
        double k[2] = {0}, f[2] = {0};
        port = key_port; /* a warm-up: the other server has served the runs above already */
        snprintf(auth_line, sizeof auth_line, "Authorization: Bearer %s\r\n", token);
        run(http_worker, 64, 1, 700);
        /* Four turns each, in the order ABBA, so neither server always follows the other. */
        for (int i = 0; i < 2; i++)
            for (int turn = 0; turn < 4; turn++) {
                bool keyed = turn == 0 || turn == 3;
                port = keyed ? key_port : plain_port;
                if (keyed)
                    snprintf(auth_line, sizeof auth_line, "Authorization: Bearer %s\r\n", token);
                else
                    auth_line[0] = 0;
                *(keyed ? &k[i] : &f[i]) += run(http_worker, i ? 64 : 16, 1, 300 + 100 * i) / 2;
            }
        port = plain_port, auth_line[0] = 0;
        printf("  %-34s %12s %12s %8s\n", "", "no key", "with a key", "ratio");
        for (int i = 0; i < 2; i++)
            printf("  single-event appends/s, %2d clients %12.0f %12.0f %8.2f\n", i ? 64 : 16, f[i], k[i], k[i] / f[i]);
    }
    if (tls_port)
        printf("  single-event appends/s, 64 clients, 3 turns each: %.0f over HTTPS%s, %.0f over HTTP without: %.2f   "
               "(target >= 0.8)\n",
               t64, tls_token ? " with a key" : "", h64, h64 ? t64 / h64 : 0);
    double rate = sse_catchup(catchup);
    printf("  SSE catch-up of %llu events: %.0f events/s   (target >= 500,000)\n", (unsigned long long)catchup, rate);
    latency();
    fanout(pid);
    idle_commit_path(9800); /* with the 116 others, within the default --max-connections 10000 */
    noisy_neighbour();
    timers_bench();
    snapshot_bench();
    return 0;
}
