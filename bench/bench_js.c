/*
 * bench_js.c — the cluster bench's baseline (bench/cluster.sh): raw JetStream publishing with
 * the C client, no Factum in between. It creates an R3 file-storage stream of its own on the
 * NATS servers given and publishes the payloads Factum's clients send (200 bytes of JSON per
 * event; one message per event, or one per batch of --batch events) asynchronously, with at
 * most --clients publishes unacknowledged at once (the concurrency of the HTTP clients). It
 * prints "events/s N".
 *
 *   bench-js --nats URL[,URL...] --clients N [--batch B] [--seconds S] [--stream NAME]
 */
#include <nats/nats.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

int main(int argc, char **argv) {
    const char *urls = NULL, *stream = "RAWBENCH";
    int clients = 16, batch = 1;
    double seconds = 3;
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
    }
    if (!urls || clients < 1 || batch < 1) {
        fprintf(stderr, "usage: bench-js --nats URL[,URL...] --clients N [--batch B] [--seconds S] [--stream NAME]\n");
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
    char subject[80];
    snprintf(subject, sizeof subject, "%s.x", stream);
    const char *subjects[] = {subject};
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

    double t0 = now_s(), end = t0 + seconds;
    while (now_s() < end)
        if ((s = js_PublishAsync(js, subject, body, (int)len, NULL)) != NATS_OK) die("publish", s);
    uint64_t got = atomic_load(&acked);
    double t = now_s() - t0;
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = 10000;
    js_PublishAsyncComplete(js, &po);
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
