/*
 * bench_js.c — the cluster bench's baseline (bench/cluster.sh): raw JetStream publishing with
 * the C client, no Factum in between. It creates an R3 file-storage stream of its own on the
 * NATS servers given and publishes the payloads Factum's clients send (200 bytes of JSON per
 * event; one message per event, or one per batch of --batch events) asynchronously, with at
 * most --clients publishes unacknowledged at once (the concurrency of the HTTP clients). It
 * prints "events/s N".
 *
 * With --lag-every-ms MS, the reference for the cluster's replication lag: during the run a
 * probe publishes a message of its own every MS (synchronously, a connection of its own to the
 * first server) and an ordered consumer on a connection to the second server (as a Factum
 * follower reads the log) notes when each arrives; the line "lag p50 MS p99 MS max MS probes N
 * missing M" follows, the lag of a probe being its arrival minus its publish acknowledgement.
 *
 * With --as-cluster, JetStream used as a Factum cluster must use it (docs/cluster.md): every
 * publish carries Nats-Expected-Last-Sequence (pipelined: each expects the one before it) and a
 * Nats-Msg-Id, and one ordered consumer per server (as each node reads the log) receives every
 * message. The difference between the two is what the design costs before Factum does any work.
 *
 *   bench-js --nats URL[,URL...] --clients N [--batch B] [--seconds S] [--stream NAME] [--lag-every-ms MS]
 *            [--as-cluster]
 */
#include <nats/nats.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static _Atomic uint64_t acked, failed;

static void on_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure) {
    (void)js, (void)pae, (void)closure;
    if (pa)
        atomic_fetch_add(&acked, 1);
    else
        atomic_fetch_add(&failed, 1);
    natsMsg_Destroy(msg);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, natsStatus s) {
    fprintf(stderr, "bench-js: %s: %s\n", what, natsStatus_GetText(s));
    exit(1);
}

/* ---- the lag probe (--lag-every-ms) ---- */

#define PROBES 100000
static double probe_acked[PROBES], probe_seen[PROBES];
static _Atomic int probes;
static _Atomic bool probe_stop;
static int probe_every_ms;
static char probe_subject[96];

/* --as-cluster's readers: each takes every message, as a node does, and drops it. */
static void on_consume(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *closure) {
    (void)nc, (void)sub, (void)closure;
    natsMsg_Destroy(m);
}

static void on_probe(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *closure) {
    (void)nc, (void)sub, (void)closure;
    double t = now_s();
    int k = atoi(natsMsg_GetData(m));
    if (k > 0 && k < PROBES && !probe_seen[k]) probe_seen[k] = t;
    natsMsg_Destroy(m);
}

static void *probe_main(void *arg) {
    jsCtx *js = arg;
    double next = now_s();
    for (int k = 1; !atomic_load(&probe_stop) && k < PROBES; k++) {
        char msg[24];
        int len = snprintf(msg, sizeof msg, "%d", k);
        jsErrCode jerr = 0;
        natsStatus s = js_Publish(NULL, js, probe_subject, msg, len, NULL, &jerr);
        if (s != NATS_OK) die("probe publish", s);
        probe_acked[k] = now_s();
        atomic_store(&probes, k);
        next += probe_every_ms / 1e3;
        double t = now_s();
        if (next > t) usleep((useconds_t)((next - t) * 1e6));
    }
    return NULL;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Connects to one server of the list (the probe and its reader each get their own). */
static natsConnection *connect_one(const char *url, jsCtx **js) {
    natsConnection *nc = NULL;
    natsStatus s = natsConnection_ConnectTo(&nc, url);
    if (s == NATS_OK) s = natsConnection_JetStream(js, nc, NULL);
    if (s != NATS_OK) die("connect", s);
    return nc;
}

static void print_lag(int sent) {
    double *lag = malloc((size_t)(sent + 1) * sizeof *lag);
    int got = 0, missing = 0;
    for (int k = 1; k <= sent; k++)
        if (!probe_seen[k])
            missing++;
        else
            lag[got++] = probe_seen[k] > probe_acked[k] ? (probe_seen[k] - probe_acked[k]) * 1e3 : 0;
    qsort(lag, (size_t)got, sizeof *lag, cmp_double);
#define AT(p) (got ? lag[(size_t)((double)(got - 1) * (p))] : 0)
    printf("lag p50 %.2f p99 %.2f max %.2f probes %d missing %d\n", AT(0.5), AT(0.99), AT(1.0), sent, missing);
    free(lag);
}

int main(int argc, char **argv) {
    const char *urls = NULL, *stream = "RAWBENCH";
    int clients = 16, batch = 1;
    double seconds = 3;
    bool as_cluster = false;
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--as-cluster")) {
            as_cluster = true;
            memmove(argv + i, argv + i + 1, (size_t)(argc - i) * sizeof *argv);
            argc--, i--;
        }
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--nats"))
            urls = argv[i + 1];
        else if (!strcmp(argv[i], "--clients"))
            clients = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--batch"))
            batch = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--seconds"))
            seconds = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--stream"))
            stream = argv[i + 1];
        else if (!strcmp(argv[i], "--lag-every-ms"))
            probe_every_ms = atoi(argv[i + 1]);
    }
    if (!urls || clients < 1 || batch < 1) {
        fprintf(stderr, "usage: bench-js --nats URL[,URL...] --clients N [--batch B] [--seconds S] [--stream NAME] "
                        "[--lag-every-ms MS] [--as-cluster]\n");
        return 2;
    }
    const char *list[16];
    int n = 0;
    char *copy = strdup(urls), *save = NULL;
    for (char *u = strtok_r(copy, ",", &save); u && n < 16; u = strtok_r(NULL, ",", &save))
        list[n++] = u;
    natsOptions *o = NULL;
    natsConnection *nc = NULL;
    natsStatus s = natsOptions_Create(&o);
    if (s == NATS_OK) s = natsOptions_SetServers(o, list, n);
    if (s == NATS_OK) s = natsConnection_Connect(&nc, o);
    if (s != NATS_OK) die("connect", s);
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = 10000;
    jo.PublishAsync.MaxPending = clients;
    jo.PublishAsync.StallWait = 10000;
    jo.PublishAsync.AckHandler = on_ack;
    jsCtx *js = NULL;
    if ((s = natsConnection_JetStream(&js, nc, &jo)) != NATS_OK) die("jetstream", s);
    char subject[80], all[80];
    snprintf(subject, sizeof subject, "%s.x", stream);
    snprintf(all, sizeof all, "%s.*", stream);
    snprintf(probe_subject, sizeof probe_subject, "%s.probe", stream);
    const char *subjects[] = {all};
    jsStreamConfig sc;
    jsStreamConfig_Init(&sc);
    sc.Name = stream;
    sc.Subjects = subjects;
    sc.SubjectsLen = 1;
    sc.Storage = js_FileStorage;
    sc.Replicas = n < 3 ? n : 3;
    jsErrCode jerr = 0;
    js_DeleteStream(js, stream, NULL, &jerr);
    if ((s = js_AddStream(NULL, js, &sc, NULL, &jerr)) != NATS_OK) die("add stream", s);

    /* The bodies the HTTP clients send: one event, or a JSON array of `batch`. */
    char pad[160];
    memset(pad, 'x', 155), pad[155] = 0;
    size_t cap = (size_t)batch * 256 + 8, len = 0;
    char *body = malloc(cap);
    if (batch > 1) body[len++] = '[';
    for (int k = 0; k < batch; k++)
        len += (size_t)snprintf(body + len, cap - len, "%s{\"type\":\"BenchEvent\",\"data\":{\"n\":%d,\"pad\":\"%s\"}}",
                                k ? "," : "", k, pad);
    if (batch > 1) body[len++] = ']';

    natsConnection *pc = NULL, *rc = NULL;
    jsCtx *pjs = NULL, *rjs = NULL;
    natsSubscription *sub = NULL;
    pthread_t probe;
    if (probe_every_ms > 0) {
        pc = connect_one(list[0], &pjs);
        rc = connect_one(list[n > 1 ? 1 : 0], &rjs);
        jsSubOptions so;
        jsSubOptions_Init(&so);
        so.Stream = stream;
        so.Ordered = true;
        so.Config.DeliverPolicy = js_DeliverNew;
        if ((s = js_Subscribe(&sub, rjs, probe_subject, on_probe, NULL, NULL, &so, &jerr)) != NATS_OK)
            die("subscribe", s);
        pthread_create(&probe, NULL, probe_main, pjs);
    }
    natsConnection *cc[16] = {0};
    jsCtx *cjs[16] = {0};
    natsSubscription *csub[16] = {0};
    if (as_cluster)
        for (int i = 0; i < n; i++) {
            cc[i] = connect_one(list[i], &cjs[i]);
            jsSubOptions so;
            jsSubOptions_Init(&so);
            so.Stream = stream;
            so.Ordered = true;
            if ((s = js_Subscribe(&csub[i], cjs[i], subject, on_consume, NULL, NULL, &so, &jerr)) != NATS_OK)
                die("subscribe", s);
        }
    double t0 = now_s(), end = t0 + seconds;
    for (uint64_t seq = 0; now_s() < end; seq++) {
        if (!as_cluster) {
            if ((s = js_PublishAsync(js, subject, body, (int)len, NULL)) != NATS_OK) die("publish", s);
            continue;
        }
        char last[24], id[32];
        snprintf(last, sizeof last, "%llu", (unsigned long long)seq);
        snprintf(id, sizeof id, "bench:%llu", (unsigned long long)seq + 1);
        natsMsg *m = NULL;
        jsPubOptions po;
        jsPubOptions_Init(&po);
        po.MsgId = id;
        if ((s = natsMsg_Create(&m, subject, NULL, body, (int)len)) == NATS_OK)
            s = natsMsgHeader_Set(m, "Nats-Expected-Last-Sequence", last);
        if (s == NATS_OK) s = js_PublishMsgAsync(js, &m, &po);
        if (s != NATS_OK) die("publish", s);
    }
    uint64_t got = atomic_load(&acked);
    double t = now_s() - t0;
    if (probe_every_ms > 0) {
        int sent = atomic_load(&probes);
        usleep(2000000); /* the last probes arrive */
        atomic_store(&probe_stop, true);
        pthread_join(probe, NULL);
        print_lag(sent);
        natsSubscription_Destroy(sub);
        jsCtx_Destroy(pjs), jsCtx_Destroy(rjs);
        natsConnection_Destroy(pc), natsConnection_Destroy(rc);
    }
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = 10000;
    js_PublishAsyncComplete(js, &po);
    for (int i = 0; i < n && as_cluster; i++) {
        natsSubscription_Destroy(csub[i]);
        jsCtx_Destroy(cjs[i]);
        natsConnection_Destroy(cc[i]);
    }
    if (atomic_load(&failed)) fprintf(stderr, "bench-js: %llu publishes failed\n", (unsigned long long)failed);
    printf("events/s %.0f\n", (double)got * batch / t);
    js_DeleteStream(js, stream, NULL, &jerr);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    natsOptions_Destroy(o);
    free(body);
    free(copy);
    return 0;
}
