/*
 * bench.c — `factum bench engine [--json] [--quick] [--dir DIR]`: in-process figures for the
 * engine, durable, 200-byte event data, each append figure beside the raw ceiling of this disk
 * measured in the same run: a preallocated file, the same bytes per event, one pwrite and one
 * fdatasync per group of whatever the same number of writers queued (minimal group commit).
 * Prints a table, or with --json one object per figure:
 *   {"name":…,"value":…,"unit":…,"ceiling":…,"ratio":…}
 */
#include "cli.h"

#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static bool json_out;
static double seconds = 3;

static void figure(const char *name, double value, const char *unit, double ceiling) {
    if (json_out) {
        printf("{\"name\":\"%s\",\"value\":%.1f,\"unit\":\"%s\"", name, value, unit);
        if (ceiling > 0) printf(",\"ceiling\":%.1f,\"ratio\":%.3f", ceiling, value / ceiling);
        printf("}\n");
    } else if (ceiling > 0) {
        printf("%-44s %12.0f %-9s ceiling %10.0f  ratio %.2f\n", name, value, unit, ceiling, value / ceiling);
    } else {
        printf("%-44s %12.1f %s\n", name, value, unit);
    }
    fflush(stdout);
}

static double now_s(void) { return (double)clock_mono_ns() / 1e9; }

/* ---- the raw ceiling: minimal group commit on a preallocated file ----
   Writers queue a request and sleep on their own semaphore; one syncer takes the whole
   queue, writes its bytes with one pwrite, syncs with one fdatasync and wakes exactly those
   writers: the engine's shape, without any of its work. */

typedef struct creq {
    struct creq *next;
    int batch;
    sem_t done;
} creq_t;

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t work;
    creq_t *head;
    int fd;
    size_t event_bytes;
    uint64_t off;
    bool stop;
    char *bytes;
} ceiling_t;

static void *ceiling_syncer(void *arg) {
    ceiling_t *c = arg;
    for (;;) {
        pthread_mutex_lock(&c->mu);
        while (!c->head && !c->stop) pthread_cond_wait(&c->work, &c->mu);
        creq_t *list = c->head;
        c->head = NULL;
        bool stop = c->stop && !list;
        pthread_mutex_unlock(&c->mu);
        if (stop) return NULL;
        size_t len = 0;
        for (creq_t *r = list; r; r = r->next) len += (size_t)r->batch * c->event_bytes;
        if (c->off + len > (1ull << 30)) c->off = 0;
        for (size_t done = 0; done < len;) {
            size_t k = MIN(len - done, 1u << 20);
            if (pwrite(c->fd, c->bytes, k, (off_t)(c->off + done)) < 0) break;
            done += k;
        }
        if (fdatasync(c->fd)) {}
        c->off += len;
        for (creq_t *r = list, *next; r; r = next) {
            next = r->next;
            sem_post(&r->done);
        }
    }
}

typedef struct {
    ceiling_t *c;
    int batch;
    double until;
    uint64_t events;
} cworker_t;

static void *ceiling_worker(void *arg) {
    cworker_t *w = arg;
    ceiling_t *c = w->c;
    creq_t r = {.batch = w->batch};
    sem_init(&r.done, 0, 0);
    while (now_s() < w->until) {
        pthread_mutex_lock(&c->mu);
        r.next = c->head;
        c->head = &r;
        pthread_cond_signal(&c->work);
        pthread_mutex_unlock(&c->mu);
        while (sem_wait(&r.done)) {}
        w->events += (uint64_t)w->batch;
    }
    sem_destroy(&r.done);
    return NULL;
}

static double run_ceiling(const char *dir, int writers, int batch, size_t event_bytes) {
    char path[4096];
    snprintf(path, sizeof path, "%s/ceiling.dat", dir);
    ceiling_t c = {.event_bytes = event_bytes};
    pthread_mutex_init(&c.mu, NULL);
    pthread_cond_init(&c.work, NULL);
    c.fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (c.fd < 0 || fallocate(c.fd, 0, 0, 1ll << 30)) return 0;
    c.bytes = calloc(1, 1u << 20);
    memset(c.bytes, 'x', 1u << 20);
    pthread_t syncer, th[64];
    cworker_t w[64];
    pthread_create(&syncer, NULL, ceiling_syncer, &c);
    double t0 = now_s();
    for (int i = 0; i < writers; i++) {
        w[i] = (cworker_t){&c, batch, t0 + seconds, 0};
        pthread_create(&th[i], NULL, ceiling_worker, &w[i]);
    }
    uint64_t total = 0;
    for (int i = 0; i < writers; i++) pthread_join(th[i], NULL), total += w[i].events;
    double dt = now_s() - t0;
    pthread_mutex_lock(&c.mu);
    c.stop = true;
    pthread_cond_signal(&c.work);
    pthread_mutex_unlock(&c.mu);
    pthread_join(syncer, NULL);
    close(c.fd);
    unlink(path);
    free(c.bytes);
    return (double)total / dt;
}

/* ---- engine appends ---- */

static char data200[201];

typedef struct {
    factum_t *db;
    int batch, id;
    uint32_t streams; /* 0: one stream */
    double until;
    uint64_t events, limit;
    uint64_t rng;
} eworker_t;

static void *engine_worker(void *arg) {
    eworker_t *w = arg;
    factum_event_t ev[100];
    for (int i = 0; i < w->batch; i++)
        ev[i] = (factum_event_t){.type = str_c("BenchEvent"), .data = {data200, 200}, .data_format = FACTUM_DATA_JSON};
    char stream[32];
    while ((w->limit ? w->events < w->limit : now_s() < w->until)) {
        w->rng = w->rng * 6364136223846793005u + 1442695040888963407u;
        if (w->streams) snprintf(stream, sizeof stream, "s-%u", (uint32_t)((w->rng >> 33) % w->streams));
        else snprintf(stream, sizeof stream, "bench-1");
        factum_error_t err;
        int rc = factum_append(w->db, str_c(stream), FACTUM_EXPECT_ANY, ev, (size_t)w->batch, NULL, &err);
        if (rc) {
            fprintf(stderr, "factum: bench append failed: %s\n", err.message);
            exit(1);
        }
        w->events += (uint64_t)w->batch;
    }
    return NULL;
}

/* Runs writers for `seconds` (or until `limit` events in all); returns events/s. */
static double run_engine(factum_t *db, int writers, int batch, uint32_t streams, uint64_t limit) {
    pthread_t th[64];
    eworker_t w[64];
    double t0 = now_s();
    for (int i = 0; i < writers; i++) {
        w[i] = (eworker_t){db, batch, i, streams, t0 + seconds, 0, limit ? (limit + (uint64_t)writers - 1) / (uint64_t)writers : 0,
                           (uint64_t)i * 7919 + 1};
        pthread_create(&th[i], NULL, engine_worker, &w[i]);
    }
    uint64_t total = 0;
    for (int i = 0; i < writers; i++) pthread_join(th[i], NULL), total += w[i].events;
    return (double)total / (now_s() - t0);
}

/* Appends one event to each of the streams s-<first>, s-<first+64>, ... below `end`. */
typedef struct {
    factum_t *db;
    uint64_t first, end;
    int failed;
} mem_worker_t;

static void *mem_worker(void *arg) {
    mem_worker_t *w = arg;
    factum_event_t ev = {.type = str_c("BenchEvent"), .data = {data200, 200}, .data_format = FACTUM_DATA_JSON};
    char stream[32];
    for (uint64_t i = w->first; i < w->end && !w->failed; i += 64) {
        snprintf(stream, sizeof stream, "s-%llu", (unsigned long long)i);
        w->failed = factum_append(w->db, str_c(stream), FACTUM_EXPECT_NO_STREAM, &ev, 1, NULL, NULL) != 0;
    }
    return NULL;
}

static long rss_kib(const char *field) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    size_t n = strlen(field);
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, field, n)) v = atol(line + n + 1);
    if (f) fclose(f);
    return v;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static factum_t *bench_open(const char *dir) {
    factum_t *db;
    factum_error_t err;
    if (factum_open(dir, NULL, &db, &err)) {
        fprintf(stderr, "factum: %s\n", err.message);
        exit(1);
    }
    return db;
}

int cli_bench(int argc, char **argv) {
    const char *base = NULL;
    uint64_t recover_events = 10000000, mem_streams = 1000000;
    if (argc > 1 && !strcmp(argv[1], "scavenge")) return cli_bench_scavenge(argc, argv);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "engine")) continue;
        if (!strcmp(argv[i], "--json")) json_out = true;
        else if (!strcmp(argv[i], "--quick")) seconds = 1, recover_events = 1000000, mem_streams = 200000;
        else if (!strcmp(argv[i], "--dir") && i + 1 < argc) base = argv[++i];
        else if (!strcmp(argv[i], "--help")) {
            printf("usage: factum bench engine [--json] [--quick] [--dir DIR]\n");
            return CLI_OK;
        } else return cli_fail(CLI_USAGE, "usage: factum bench engine [--json] [--quick] [--dir DIR]");
    }
    char tmpl[4096];
    snprintf(tmpl, sizeof tmpl, "%s/factum-bench-XXXXXX", base ? base : ".");
    if (!mkdtemp(tmpl)) return cli_fail(CLI_ERROR, "cannot make a folder in %s", base ? base : ".");
    memset(data200, 'x', 200);
    data200[0] = '"', data200[199] = '"';
    char dir[4200];
    factum_event_t probe = {.type = str_c("BenchEvent"), .id = str_c("01234567-0123-7123-8123-0123456789ab"),
                            .source = str_c("/streams/bench-1"), .data = {data200, 200}, .data_format = FACTUM_DATA_JSON};
    size_t ebytes = 64 + 7 + probe.id.len + probe.type.len + probe.source.len + 200;
    if (!json_out)
        printf("factum bench engine: durable appends of 200-byte events (%zu bytes stored each), %.0fs per figure\n\n",
               ebytes, seconds);

    static const struct {
        int writers, batch;
    } shapes[] = {{1, 1}, {1, 100}, {16, 1}, {64, 1}, {16, 100}};
    for (int mode = 0; mode < 2; mode++) {
        uint32_t streams = mode ? 1000000 : 0;
        snprintf(dir, sizeof dir, "%s/appends-%d", tmpl, mode);
        factum_t *db = bench_open(dir);
        for (size_t s = 0; s < ARRAY_LEN(shapes); s++) {
            double ceil = run_ceiling(tmpl, shapes[s].writers, shapes[s].batch, ebytes);
            double v = run_engine(db, shapes[s].writers, shapes[s].batch, streams, 0);
            char name[96];
            snprintf(name, sizeof name, "append %s, %d writer%s, batch %d", mode ? "1M streams" : "1 stream",
                     shapes[s].writers, shapes[s].writers > 1 ? "s" : "", shapes[s].batch);
            figure(name, v, "events/s", ceil);
        }
        factum_close(db);
    }

    /* Reads of one 100-event stream. */
    snprintf(dir, sizeof dir, "%s/reads", tmpl);
    factum_t *db = bench_open(dir);
    factum_event_t ev[100];
    for (int i = 0; i < 100; i++)
        ev[i] = (factum_event_t){.type = str_c("BenchEvent"), .data = {data200, 200}, .data_format = FACTUM_DATA_JSON};
    factum_append(db, str_c("order-100"), FACTUM_EXPECT_ANY, ev, 100, NULL, NULL);
    run_engine(db, 16, 100, 100000, 2000000); /* other streams around it */
    enum { READS = 20000 };
    double *lat = malloc(READS * sizeof *lat);
    for (int i = 0; i < READS; i++) {
        double t0 = now_s();
        factum_result_t *res;
        if (factum_read_stream(db, str_c("order-100"), 0, 100, 0, &res, NULL) || factum_result_count(res) != 100)
            return cli_fail(CLI_ERROR, "bench: stream read failed");
        factum_result_free(res);
        lat[i] = (now_s() - t0) * 1e6;
    }
    qsort(lat, READS, sizeof *lat, cmp_double);
    figure("read 100-event stream p50", lat[READS / 2], "us", 0);
    figure("read 100-event stream p99", lat[READS * 99 / 100], "us", 0);
    free(lat);
    factum_close(db);

    /* A log of recover_events events: $all scan, clean reopen, reopen with the index rebuilt. */
    snprintf(dir, sizeof dir, "%s/recovery", tmpl);
    db = bench_open(dir);
    double rate = run_engine(db, 16, 100, 100000, recover_events);
    uint64_t n = factum_head_position(db);
    if (!json_out) printf("\n(wrote %llu events for the next figures at %.0f events/s)\n", (unsigned long long)n, rate);
    double t0 = now_s();
    uint64_t seen = 0;
    for (uint64_t from = 0; from < n;) {
        factum_query_t q = {.from = from, .limit = 100000};
        factum_result_t *res;
        if (factum_read_all(db, &q, &res, NULL)) return cli_fail(CLI_ERROR, "bench: scan failed");
        seen += factum_result_count(res);
        from = factum_result_next(res);
        factum_result_free(res);
    }
    figure("$all forward scan", (double)seen / (now_s() - t0), "events/s", 0);
    factum_close(db);
    char label[96];
    t0 = now_s();
    db = bench_open(dir);
    snprintf(label, sizeof label, "reopen %.0fM events (clean)", (double)n / 1e6);
    figure(label, now_s() - t0, "s", 0);
    factum_close(db);
    char cmd[4400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s/index'", dir);
    if (system(cmd)) return cli_fail(CLI_ERROR, "bench: cannot remove the index");
    t0 = now_s();
    db = bench_open(dir);
    snprintf(label, sizeof label, "reopen %.0fM events (index rebuilt)", (double)n / 1e6);
    figure(label, now_s() - t0, "s", 0);
    factum_close(db);

    /* Resident memory per stream: one event in each of mem_streams streams. */
    snprintf(dir, sizeof dir, "%s/memory", tmpl);
    /* Give what the earlier figures freed back to the system first, or new streams would reuse
       it unseen (or the system would take it back during the measurement: a negative figure). */
    malloc_trim(0);
    long before = rss_kib("VmRSS:"), anon_before = rss_kib("RssAnon:");
    db = bench_open(dir);
    pthread_t th[64];
    mem_worker_t mw[64];
    for (int i = 0; i < 64; i++) {
        mw[i] = (mem_worker_t){db, (uint64_t)i, mem_streams, 0};
        pthread_create(&th[i], NULL, mem_worker, &mw[i]);
    }
    for (int i = 0; i < 64; i++) {
        pthread_join(th[i], NULL);
        if (mw[i].failed) return cli_fail(CLI_ERROR, "bench: append failed");
    }
    long after = rss_kib("VmRSS:"), anon_after = rss_kib("RssAnon:");
    snprintf(label, sizeof label, "resident memory per stream (%.1fM streams)", (double)mem_streams / 1e6);
    figure(label, (double)(after - before) * 1024 / (double)mem_streams, "bytes", 0);
    figure("  of which anonymous (heap)", (double)(anon_after - anon_before) * 1024 / (double)mem_streams, "bytes", 0);
    factum_close(db);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpl);
    if (system(cmd)) {}
    return CLI_OK;
}
