/*
 * bench_sagas.c — `make bench`, sagas (issue 7), against a running `factum serve`:
 *
 *   1. the raw round trip, the reference: a client appends a request, a service pulls it from
 *      a consumer group and appends a response, the client pulls that from its own group — one
 *      at a time; its median is what one saga step needs at least (a command and a reply);
 *   2. one saga at a time, 4 steps: the median duration / 4 is the time per step;
 *   3. throughput: 100 sagas in flight, a service that replies at once (pulls its commands from
 *      a consumer group, appends the replies in one batch, acks): completed sagas per second,
 *      and p50/p99 saga duration (start event to SagaCompleted, commit times from the log).
 */
#include "hclient.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

static atomic_bool stop;
static atomic_long done4; /* final replies sent: sagas that will complete */

static int post(hconn *c, const char *path, const char *body) {
    size_t bl = strlen(body), cap = bl + 512;
    char *req = malloc(cap);
    int n = snprintf(
        req, cap,
        "POST %s HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s", path,
        bl, body);
    int st = roundtrip(c, req, (size_t)n, NULL);
    free(req);
    return st;
}

static int put(hconn *c, const char *path, const char *body) {
    size_t bl = strlen(body), cap = bl + 512;
    char *req = malloc(cap);
    int n = snprintf(
        req, cap,
        "PUT %s HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s", path,
        bl, body);
    int st = roundtrip(c, req, (size_t)n, NULL);
    free(req);
    return st;
}

static const char *get(hconn *c, const char *path) {
    char req[512];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: localhost\r\n\r\n", path);
    if (roundtrip(c, req, (size_t)n, NULL) != 200) die(path);
    return strstr(c->buf, "\r\n\r\n") + 4;
}

/* "key":"VALUE" after p, copied into out. */
static const char *field(const char *p, const char *key, char *out, size_t cap) {
    char k[64];
    snprintf(k, sizeof k, "\"%s\":\"", key);
    const char *s = strstr(p, k);
    if (!s) return NULL;
    s += strlen(k);
    const char *e = strchr(s, '"');
    snprintf(out, cap, "%.*s", (int)(e - s), s);
    return e;
}

/* A service on group `group`: answers each delivery with type map(type), correlated. */
typedef struct service {
    const char *group, *reply_stream;
    bool pong; /* the raw round trip: answer Ping with Pong */
} service;

static void *service_main(void *arg) {
    service *sv = arg;
    hconn *c = hconn_new(8u << 20), *w = hconn_new(1 << 16);
    char pull[256];
    snprintf(pull, sizeof pull,
             "POST /groups/%s/messages?max=200&wait_ms=50 HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n",
             sv->group);
    char *replies = malloc(1 << 20), *ack = malloc(1 << 20);
    while (!atomic_load(&stop)) {
        const char *body;
        if (roundtrip(c, pull, strlen(pull), &body) != 200) die("pull failed");
        size_t rl = 0, al = 0;
        int n = 0, finals = 0;
        rl += (size_t)snprintf(replies + rl, 64, "[");
        al += (size_t)snprintf(ack + al, 64, "{\"delivery_ids\":[");
        for (const char *p = body; (p = strstr(p, "{\"delivery_id\":\"")); p += 16) {
            char did[64], type[64], corr[128];
            field(p, "delivery_id", did, sizeof did);
            if (!field(p, "type", type, sizeof type) || !field(p, "correlationid", corr, sizeof corr)) corr[0] = 0;
            char rtype[80];
            if (sv->pong)
                snprintf(rtype, sizeof rtype, "Pong");
            else
                snprintf(rtype, sizeof rtype, "Done%s", type + 2); /* DoK -> DoneK */
            if (!sv->pong && !strcmp(type, "Do4")) finals++;
            rl += (size_t)snprintf(replies + rl, 512, "%s{\"type\":\"%s\",\"correlationid\":\"%s\"}", n ? "," : "",
                                   rtype, corr);
            al += (size_t)snprintf(ack + al, 128, "%s\"%s\"", n ? "," : "", did);
            n++;
        }
        if (!n) continue;
        snprintf(replies + rl, 8, "]");
        snprintf(ack + al, 8, "]}");
        char path[128];
        snprintf(path, sizeof path, "/streams/%s", sv->reply_stream);
        if (post(w, path, replies) != 201) die("reply failed");
        snprintf(path, sizeof path, "/groups/%s/ack", sv->group);
        if (post(w, path, ack) != 200) die("ack failed");
        atomic_fetch_add(&done4, finals);
    }
    free(replies), free(ack);
    hconn_free(c), hconn_free(w);
    return NULL;
}

#define STARTERS 4

typedef struct starter {
    atomic_long *next;
    long sagas, inflight, base;
} starter;

/* Starts sagas while fewer than `inflight` are under way. */
static void *starter_main(void *arg) {
    starter *st = arg;
    hconn *c = hconn_new(1 << 16);
    for (;;) {
        long i = atomic_fetch_add(st->next, 1);
        if (i >= st->sagas) break;
        while (i - (atomic_load(&done4) - st->base) >= st->inflight)
            usleep(50);
        char ev[128], path[64];
        snprintf(ev, sizeof ev, "{\"type\":\"BenchStart\",\"data\":{\"id\":\"b%ld\"}}", i);
        snprintf(path, sizeof path, "/streams/bench-b%ld", i);
        if (post(c, path, ev) != 201) die("start failed");
    }
    hconn_free(c);
    return NULL;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* RFC 3339 UTC with microseconds -> microseconds of the day (enough for differences here). */
static int64_t day_us(const char *t) {
    int h, m, s, us;
    if (sscanf(t + 11, "%d:%d:%d.%d", &h, &m, &s, &us) != 4) return 0;
    return (((int64_t)h * 60 + m) * 60 + s) * 1000000 + us;
}

static const char *SAGA = "{\"start_on\":\"BenchStart\",\"instance_id\":\"data.id\",\"steps\":["
                          "{\"name\":\"s1\",\"command\":{\"stream\":\"bench-cmd\",\"type\":\"Do1\",\"data\":{\"id\":\"{"
                          "{id}}\"}},\"success\":[\"Done1\"],\"timeout_ms\":60000},"
                          "{\"name\":\"s2\",\"command\":{\"stream\":\"bench-cmd\",\"type\":\"Do2\",\"data\":{\"id\":\"{"
                          "{id}}\"}},\"success\":[\"Done2\"],\"timeout_ms\":60000},"
                          "{\"name\":\"s3\",\"command\":{\"stream\":\"bench-cmd\",\"type\":\"Do3\",\"data\":{\"id\":\"{"
                          "{id}}\"}},\"success\":[\"Done3\"],\"timeout_ms\":60000},"
                          "{\"name\":\"s4\",\"command\":{\"stream\":\"bench-cmd\",\"type\":\"Do4\",\"data\":{\"id\":\"{"
                          "{id}}\"}},\"success\":[\"Done4\"],\"timeout_ms\":60000}]}";

int main(int argc, char **argv) {
    hclient_init();
    long sagas = 20000, rounds = 1000, inflight = 100;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--port"))
            port = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--sagas"))
            sagas = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--rounds"))
            rounds = atol(argv[i + 1]);
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    hconn *c = hconn_new(64u << 20);
    if (put(c, "/groups/rt-svc", "{\"source\":{\"stream\":\"rt-req\"},\"start\":\"earliest\"}") != 201 ||
        put(c, "/groups/rt-cli", "{\"source\":{\"stream\":\"rt-rep\"},\"start\":\"earliest\"}") != 201 ||
        put(c, "/groups/svc", "{\"source\":{\"stream\":\"bench-cmd\"},\"start\":\"earliest\"}") != 201 ||
        put(c, "/sagas/bench", SAGA) != 201)
        die("setup failed");
    service rt = {"rt-svc", "rt-rep", true}, sv = {"svc", "bench-replies", false};
    pthread_t t1, t2;
    pthread_create(&t1, NULL, service_main, &rt);
    pthread_create(&t2, NULL, service_main, &sv);

    /* 1. the raw round trip */
    uint64_t *rtt = calloc((size_t)rounds, sizeof *rtt);
    static const char pull[] =
        "POST /groups/rt-cli/messages?max=1&wait_ms=1000 HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n";
    for (long i = 0; i < rounds; i++) {
        char ev[128];
        snprintf(ev, sizeof ev, "{\"type\":\"Ping\",\"correlationid\":\"r%ld\"}", i);
        uint64_t t0 = now_ns();
        if (post(c, "/streams/rt-req", ev) != 201) die("ping failed");
        const char *body = NULL;
        do {
            if (roundtrip(c, pull, sizeof pull - 1, &body) != 200) die("pong pull failed");
        } while (!strstr(body, "delivery_id"));
        rtt[i] = now_ns() - t0;
        char did[64], ack[128];
        field(body, "delivery_id", did, sizeof did);
        snprintf(ack, sizeof ack, "{\"delivery_ids\":[\"%s\"]}", did);
        post(c, "/groups/rt-cli/ack", ack);
    }
    qsort(rtt, (size_t)rounds, sizeof *rtt, cmp_u64);
    double rt_ms = (double)rtt[rounds / 2] / 1e6;

    /* 2. one saga at a time */
    long one = rounds / 4;
    uint64_t *dur = calloc((size_t)one, sizeof *dur);
    for (long i = 0; i < one; i++) {
        char ev[128], path[64];
        snprintf(ev, sizeof ev, "{\"type\":\"BenchStart\",\"data\":{\"id\":\"one%ld\"}}", i);
        snprintf(path, sizeof path, "/streams/bench-one%ld", i);
        long before = atomic_load(&done4);
        uint64_t t0 = now_ns();
        if (post(c, path, ev) != 201) die("start failed");
        while (atomic_load(&done4) == before)
            usleep(50);
        dur[i] = now_ns() - t0;
    }
    qsort(dur, (size_t)one, sizeof *dur, cmp_u64);
    double step_ms = (double)dur[one / 2] / 1e6 / 4;

    /* 3. throughput with `inflight` sagas in flight, started by 4 clients */
    uint64_t t0 = now_ns();
    long base = atomic_load(&done4);
    starter st[STARTERS];
    pthread_t ts[STARTERS];
    atomic_long next = 0;
    for (int k = 0; k < STARTERS; k++) {
        st[k] = (starter){&next, sagas, inflight, base};
        pthread_create(&ts[k], NULL, starter_main, &st[k]);
    }
    for (int k = 0; k < STARTERS; k++)
        pthread_join(ts[k], NULL);
    while (atomic_load(&done4) - base < sagas)
        usleep(200);
    /* until the last SagaCompleted is in */
    for (;;) {
        const char *st = get(c, "/sagas/bench");
        const char *p = strstr(st, "\"completed\":");
        if (p && atol(p + 12) >= sagas + one) break;
        usleep(1000);
    }
    double secs = (double)(now_ns() - t0) / 1e9;
    atomic_store(&stop, true);
    pthread_join(t1, NULL), pthread_join(t2, NULL);

    /* durations from the log: BenchStart and SagaCompleted commit times */
    int64_t *start = calloc((size_t)sagas, sizeof *start);
    uint64_t *d = calloc((size_t)sagas, sizeof *d);
    long nd = 0;
    for (int pass = 0; pass < 2; pass++) {
        for (uint64_t from = 0;;) {
            char path[160];
            snprintf(path, sizeof path, "/all?from=%llu&limit=10000&type=%s%s", (unsigned long long)from,
                     pass ? "SagaCompleted" : "BenchStart", pass ? "&system=true" : "");
            const char *body = get(c, path);
            const char *p = body;
            int n = 0;
            char stream[96], t[40], pos[32];
            while ((p = field(p, "time", t, sizeof t))) {
                field(p, "stream", stream, sizeof stream);
                const char *q = strstr(p, "\"position\":");
                snprintf(pos, sizeof pos, "%ld", q ? atol(q + 11) : 0);
                from = strtoull(pos, NULL, 10) + 1;
                const char *b = strstr(stream, pass ? "-bench-b" : "bench-b");
                if (b) {
                    long k = atol(b + (pass ? 8 : 7));
                    if (k >= 0 && k < sagas) {
                        if (!pass)
                            start[k] = day_us(t);
                        else if (start[k])
                            d[nd++] = (uint64_t)(day_us(t) - start[k]);
                    }
                }
                n++;
                p = q ? q : p + 1;
            }
            if (n < 10000) break;
        }
    }
    qsort(d, (size_t)nd, sizeof *d, cmp_u64);
    printf("sagas: 4 steps, one service that replies at once (consumer group pull, one append of replies, ack)\n");
    printf("  raw round trip (append -> group -> reply -> group), median       %8.3f ms\n", rt_ms);
    printf("  one saga at a time: time per step, median                          %8.3f ms   %.2fx the raw round trip "
           "(target < 2x)\n",
           step_ms, step_ms / rt_ms);
    printf("  %ld sagas, %ld in flight: %.0f completed sagas/s (target >= 2000); duration p50 %.1f ms, p99 %.1f ms "
           "(%ld measured)\n",
           sagas, inflight, (double)sagas / secs, nd ? (double)d[nd / 2] / 1e3 : 0,
           nd ? (double)d[nd * 99 / 100] / 1e3 : 0, nd);
    free(rtt), free(dur), free(start), free(d);
    hconn_free(c);
    return 0;
}
