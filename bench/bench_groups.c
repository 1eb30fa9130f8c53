/*
 * bench_groups.c — consumer groups under load (issue 4), beside NATS JetStream in the same run.
 * Four members consume one group and acknowledge every event (200-byte events):
 *   - throughput: N events already there, delivered + acked per second;
 *   - latency: a producer appends one event at a time; append -> delivery p50/p99.
 * Factum: members pull 100 at a time over HTTP and ack each batch in one request (answered
 * once durable). JetStream: a durable pull consumer with explicit acks, members fetch 100 at a
 * time and ack each message (natsMsg_Ack, which the server does not confirm), through libnats.
 * bench/groups.sh starts nats-server (JetStream, file storage) and factum.
 *
 *   bench-groups --port P --nats URL [--events N]
 */
#include "hclient.h"

#include <nats/nats.h>
#include <pthread.h>
#include <stdatomic.h>

#define MEMBERS 4
#define MIN_OF(a, b) ((a) < (b) ? (a) : (b))
#define LAT_EVENTS 2000

static int events = 100000;
static const char *nats_url;
static char pad[160];
static _Atomic long consumed;
static _Atomic bool stop;
static uint64_t lat_ns[MEMBERS * LAT_EVENTS * 2], beyond_ns[MEMBERS * LAT_EVENTS * 2];
static _Atomic size_t nlat;
static _Atomic int64_t acked_at[LAT_EVENTS]; /* when each latency event's append was acknowledged */

static int64_t wall_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* An event body of 200 bytes carrying its send time and number. */
static int event_body(char *out, size_t cap, int64_t t, int i) {
    return snprintf(out, cap, "{\"type\":\"Work\",\"data\":{\"t\":%lld,\"i\":%d,\"pad\":\"%s\"}}", (long long)t, i,
                    pad);
}

static void record_latency(const char *data) {
    const char *t = strstr(data, "\"t\":");
    if (!t) return;
    int64_t sent = strtoll(t + 4, NULL, 10), now = wall_ns();
    const char *ip = strstr(t, "\"i\":");
    int k = ip ? atoi(ip + 4) : -1;
    int64_t acked = k >= 0 && k < LAT_EVENTS ? acked_at[k] : 0;
    size_t i = atomic_fetch_add(&nlat, 1);
    if (i < sizeof lat_ns / sizeof *lat_ns) {
        lat_ns[i] = (uint64_t)(now > sent ? now - sent : 0);
        beyond_ns[i] = (uint64_t)(acked && now > acked ? now - acked : 0); /* 0 when it came before the ack */
    }
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double pctl(uint64_t *v, size_t n, double p) {
    qsort(v, n, sizeof *v, cmp_u64);
    return n ? (double)v[(size_t)((double)(n - 1) * p)] / 1e6 : 0;
}

static void report_latency(const char *who) {
    size_t n = MIN_OF(nlat, sizeof lat_ns / sizeof *lat_ns);
    printf("  %-10s append -> delivery p50 %7.3f ms  p99 %7.3f ms;  beyond the append's ack p50 %6.3f  p99 %6.3f ms  "
           "(%zu)\n",
           who, pctl(lat_ns, n, 0.5), pctl(lat_ns, n, 0.99), pctl(beyond_ns, n, 0.5), pctl(beyond_ns, n, 0.99), n);
}

/* ---- Factum ---- */

static void factum_post(hconn *c, const char *path, const char *body, int want) {
    size_t bl = strlen(body), cap = bl + 512;
    char *req = malloc(cap);
    int n = snprintf(
        req, cap,
        "POST %s HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s", path,
        bl, body);
    if (roundtrip(c, req, (size_t)n, NULL) != want) die(path);
    free(req);
}

static void *factum_member(void *arg) {
    bool measure = arg != NULL;
    hconn *c = hconn_new(8u << 20), *a = hconn_new(1 << 16);
    char ack[16384];
    static const char req[] =
        "POST /groups/bench/messages?max=100&wait_ms=100 HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n";
    while (!stop) {
        const char *body;
        if (roundtrip(c, req, sizeof req - 1, &body) != 200) die("pull failed");
        int n = 0, len = snprintf(ack, sizeof ack, "{\"delivery_ids\":[");
        for (const char *p = body; (p = strstr(p, "\"delivery_id\":\"")); p += 15) {
            const char *e = strchr(p + 15, '"');
            if (measure) record_latency(p);
            len += snprintf(ack + len, sizeof ack - (size_t)len, "%s\"%.*s\"", n ? "," : "", (int)(e - p - 15), p + 15);
            n++;
        }
        if (!n) continue;
        snprintf(ack + len, sizeof ack - (size_t)len, "]}");
        factum_post(a, "/groups/bench/ack", ack, 200);
        consumed += n;
    }
    hconn_free(c);
    hconn_free(a);
    return NULL;
}

static void bench_factum(void) {
    hconn *c = hconn_new(1 << 16);
    /* Fill: batches of 1000 across 100 streams. */
    static char batch[1000 * 256];
    for (int done = 0; done < events; done += 1000) {
        int len = snprintf(batch, sizeof batch, "[");
        for (int i = 0; i < 1000; i++) {
            if (i) batch[len++] = ',';
            len += event_body(batch + len, sizeof batch - (size_t)len, 0, -1);
        }
        snprintf(batch + len, sizeof batch - (size_t)len, "]");
        char path[64];
        snprintf(path, sizeof path, "/streams/work-%d", done / 1000 % 100);
        factum_post(c, path, batch, 201);
    }
    char def[256];
    snprintf(def, sizeof def, "{\"source\":{\"category\":\"work\"},\"start\":\"earliest\"}");
    char req[512];
    int n = snprintf(req, sizeof req, "PUT /groups/bench HTTP/1.1\r\nHost: localhost\r\nContent-Length: %zu\r\n\r\n%s",
                     strlen(def), def);
    if (roundtrip(c, req, (size_t)n, NULL) != 201) die("group create failed");
    pthread_t th[MEMBERS];
    uint64_t t0 = now_ns();
    consumed = 0;
    stop = false;
    for (int i = 0; i < MEMBERS; i++)
        pthread_create(&th[i], NULL, factum_member, NULL);
    while (consumed < events)
        usleep(1000);
    double s = (double)(now_ns() - t0) / 1e9;
    stop = true;
    for (int i = 0; i < MEMBERS; i++)
        pthread_join(th[i], NULL);
    printf("  %-10s %d events delivered and acked by %d members: %.0f events/s\n", "factum", events, MEMBERS,
           events / s);
    /* Latency: members wait (long poll) while a producer appends one event at a time. */
    consumed = 0;
    stop = false;
    nlat = 0;
    for (int i = 0; i < MEMBERS; i++)
        pthread_create(&th[i], NULL, factum_member, (void *)1);
    usleep(200000);
    char body[512];
    for (int i = 0; i < LAT_EVENTS; i++) {
        event_body(body, sizeof body, wall_ns(), i);
        factum_post(c, "/streams/work-lat", body, 201);
        acked_at[i] = wall_ns();
        usleep(1000);
    }
    while (consumed < LAT_EVENTS)
        usleep(1000);
    stop = true;
    for (int i = 0; i < MEMBERS; i++)
        pthread_join(th[i], NULL);
    report_latency("factum");
    hconn_free(c);
}

/* ---- NATS JetStream ---- */

static void check(natsStatus s, const char *what) {
    if (s != NATS_OK) {
        fprintf(stderr, "bench: %s: %s (%s)\n", what, natsStatus_GetText(s), nats_GetLastError(NULL));
        exit(1);
    }
}

static void *nats_member(void *arg) {
    bool measure = ((uintptr_t)arg & 1) != 0;
    natsConnection *nc;
    jsCtx *js;
    natsSubscription *sub;
    check(natsConnection_ConnectTo(&nc, nats_url), "connect");
    check(natsConnection_JetStream(&js, nc, NULL), "jetstream");
    jsSubOptions so;
    jsSubOptions_Init(&so);
    if (measure) so.Config.DeliverPolicy = js_DeliverNew; /* the latency run: only what is published from now */
    check(js_PullSubscribe(&sub, js, "work.>", measure ? "lat" : "workers", NULL, &so, NULL), "pull subscribe");
    while (!stop) {
        natsMsgList list = {0};
        natsStatus s = natsSubscription_Fetch(&list, sub, 100, 100, NULL);
        if (s == NATS_TIMEOUT || (s != NATS_OK && stop)) continue;
        check(s, "fetch");
        for (int i = 0; i < list.Count; i++) {
            if (measure) record_latency(natsMsg_GetData(list.Msgs[i]));
            natsMsg_Ack(list.Msgs[i], NULL);
        }
        consumed += list.Count;
        natsMsgList_Destroy(&list);
    }
    natsSubscription_Destroy(sub); /* not Unsubscribe: that deletes the durable under the other members */
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    return NULL;
}

static void bench_nats(void) {
    natsConnection *nc;
    jsCtx *js;
    check(natsConnection_ConnectTo(&nc, nats_url), "connect");
    check(natsConnection_JetStream(&js, nc, NULL), "jetstream");
    jsStreamConfig cfg;
    jsStreamConfig_Init(&cfg);
    const char *subjects[] = {"work.>"};
    cfg.Name = "WORK";
    cfg.Subjects = subjects;
    cfg.SubjectsLen = 1;
    cfg.Storage = js_FileStorage;
    check(js_AddStream(NULL, js, &cfg, NULL, NULL), "add stream");
    char body[512], subj[64];
    for (int i = 0; i < events; i++) {
        int n = event_body(body, sizeof body, 0, -1);
        snprintf(subj, sizeof subj, "work.%d", i % 100);
        check(js_PublishAsync(js, subj, body, n, NULL), "publish");
    }
    check(js_PublishAsyncComplete(js, NULL), "publish complete");
    pthread_t th[MEMBERS];
    uint64_t t0 = now_ns();
    consumed = 0;
    stop = false;
    for (int i = 0; i < MEMBERS; i++)
        pthread_create(&th[i], NULL, nats_member, (void *)0);
    while (consumed < events)
        usleep(1000);
    double s = (double)(now_ns() - t0) / 1e9;
    stop = true;
    for (int i = 0; i < MEMBERS; i++)
        pthread_join(th[i], NULL);
    printf("  %-10s %d events delivered and acked by %d members: %.0f events/s\n", "jetstream", events, MEMBERS,
           events / s);
    /* Latency: a new durable consumer from now on; publish one at a time, each acknowledged. */
    consumed = 0;
    stop = false;
    nlat = 0;
    memset((void *)acked_at, 0, sizeof acked_at);
    for (int i = 0; i < MEMBERS; i++)
        pthread_create(&th[i], NULL, nats_member, (void *)1);
    usleep(300000);
    consumed = 0;
    nlat = 0;
    for (int i = 0; i < LAT_EVENTS; i++) {
        int n = event_body(body, sizeof body, wall_ns(), i);
        check(js_Publish(NULL, js, "work.lat", body, n, NULL, NULL), "publish");
        acked_at[i] = wall_ns();
        usleep(1000);
    }
    while (consumed < LAT_EVENTS)
        usleep(1000);
    stop = true;
    for (int i = 0; i < MEMBERS; i++)
        pthread_join(th[i], NULL);
    report_latency("jetstream");
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
}

int main(int argc, char **argv) {
    hclient_init();
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--port"))
            port = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--nats"))
            nats_url = argv[i + 1];
        else if (!strcmp(argv[i], "--events"))
            events = atoi(argv[i + 1]);
        else
            die("usage: bench-groups --port P --nats URL [--events N]");
    }
    memset(pad, 'x', 137); /* 200 bytes of JSON per event */
    char probe[512];
    printf("consumer groups: %d members, one ack per event, events of %d bytes\n", MEMBERS,
           event_body(probe, sizeof probe, wall_ns(), 0));
    bench_factum();
    if (nats_url) bench_nats();
    return 0;
}
