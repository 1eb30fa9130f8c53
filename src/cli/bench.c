/*
 * bench.c — `factum bench engine [--json] [--quick] [--dir DIR] [--seconds S] [--only WxB]
 * [--no-ceiling] [--memtable N]`: in-process figures for the engine, durable, 200-byte event
 * data, each append figure beside the true ceiling of this disk measured in the same run, in
 * turns with it (tally_t).
 * --only WxB[:1|:1M] runs one append workload (in one stream, in 1M streams, or both) and
 * nothing else; with --no-ceiling it is the engine alone, for a profiler. --memtable N opens the
 * stores with that many index entries per memtable, to try other sizes.
 *
 * The ceiling is minimal group commit with none of the engine's work: writers queue a request
 * and sleep, one syncer takes the whole queue (the same groups the engine forms for the same
 * writers), writes the group's bytes at the tail with one pwrite and makes them durable with one
 * fdatasync. Its file is preallocated AND zero-filled (and synced) before any timed loop, so a
 * group's fdatasync is a pure data flush. An fallocate-only file, which the ceiling used before,
 * leaves its extents unwritten: a sync of newly written pages then also has to convert and write
 * extent metadata (a journal commit where there is a journal), and that ceiling understates the
 * disk. Both are printed once per run, per workload, so the difference stays visible; the
 * engine's ratios are to the true one. Each append figure also gets the true ceiling measured
 * again while a second thread zero-fills as much as it writes (a log that grows must: zero.c),
 * the bound for an engine that zero-fills its segments.
 * docs/bench.md has the method and what to read into the figures.
 *
 * Prints a table, or with --json one object per figure:
 *   {"name":…,"value":…,"unit":…,"ceiling":…,"ratio":…,"p50_us":…,"p99_us":…,
 *    "groups_per_s":…,"events_per_group":…,"fdatasync_us":…}
 * and one per workload for the two ceilings: {"name":"ceiling …","value":…,"fallocate_old":…}.
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

/* Append latency of one workload: what a factum_append caller waits, encoding included. */
typedef struct {
    double p50_us, p99_us;
} latency_t;

/* Commit groups of one figure, to see why a ratio is what it is. */
typedef struct {
    double per_s, events, sync_us; /* groups per second, events per group, mean fdatasync */
} groups_t;

static bool show_groups; /* --only: a line of group figures under each append figure */

/*
 * What one kind of run (the true ceiling, the ceiling paying for its zero-fill, the engine) did
 * over all its slices of one figure. A figure's time is cut into slices and the kinds take
 * turns (C P E, then E P C, ...), so that all three meet the same disk: its speed drifts by
 * a third from one second to the next on a shared machine, and a ceiling measured in other
 * seconds than the engine made their ratio move as much.
 */
typedef struct {
    uint64_t events, groups, sync_ns;
    double seconds;
    uint32_t *lat_ns; /* the engine's: each append's latency, capped at ~4 s */
    size_t nlat, caplat;
    uint64_t zeroed, zero_at, written; /* the paying ceiling's zeroer, carried from slice to slice */
} tally_t;

static double tally_rate(const tally_t *t) { return t->seconds > 0 ? (double)t->events / t->seconds : 0; }

static groups_t tally_groups(const tally_t *t) {
    return (groups_t){t->seconds > 0 ? (double)t->groups / t->seconds : 0,
                      t->groups ? (double)t->events / (double)t->groups : 0,
                      t->groups ? (double)t->sync_ns / 1e3 / (double)t->groups : 0};
}

static void groups_line(const char *who, const groups_t *g) {
    if (!json_out && show_groups)
        printf("    %-8s %8.0f groups/s of %7.1f events, fdatasync %6.0f us, so %3.0f%% of the time in fdatasync\n",
               who, g->per_s, g->events, g->sync_us, g->per_s * g->sync_us / 1e4);
}

static void figure_lat(const char *name, double value, const char *unit, double ceiling, const latency_t *lat,
                       const groups_t *grp, double paid) {
    if (json_out) {
        printf("{\"name\":\"%s\",\"value\":%.1f,\"unit\":\"%s\"", name, value, unit);
        if (ceiling > 0) printf(",\"ceiling\":%.1f,\"ratio\":%.3f", ceiling, value / ceiling);
        if (paid > 0) printf(",\"ceiling_zero_fill_paid\":%.1f,\"ratio_zero_fill_paid\":%.3f", paid, value / paid);
        if (lat) printf(",\"p50_us\":%.1f,\"p99_us\":%.1f", lat->p50_us, lat->p99_us);
        if (grp)
            printf(",\"groups_per_s\":%.1f,\"events_per_group\":%.1f,\"fdatasync_us\":%.1f", grp->per_s, grp->events,
                   grp->sync_us);
        printf("}\n");
    } else if (ceiling > 0 || lat) {
        printf("%-44s %10.0f %-8s", name, value, unit);
        if (ceiling > 0) printf(" ceiling %10.0f  ratio %.2f", ceiling, value / ceiling);
        if (lat) printf("  p50 %6.0f us  p99 %6.0f us", lat->p50_us, lat->p99_us);
        printf("\n");
        if (paid > 0)
            printf("    %-40s ceiling %10.0f  ratio %.2f  (the same ceiling, also zero-filling as it grows)\n", "",
                   paid, value / paid);
    } else {
        printf("%-44s %10.1f %s\n", name, value, unit);
    }
    fflush(stdout);
}

static void figure(const char *name, double value, const char *unit, double ceiling) {
    figure_lat(name, value, unit, ceiling, NULL, NULL, 0);
}

static double now_s(void) { return (double)clock_mono_ns() / 1e9; }

/* ---- the ceiling: minimal group commit on a preallocated file ----
   Writers queue a request and sleep on their own semaphore; one syncer takes the whole
   queue, writes its bytes with one pwrite at the tail, syncs with one fdatasync and wakes
   exactly those writers: the engine's shape, without any of its work. */

#define CEILING_BYTES (1ull << 30) /* the tail wraps to 0 past this */

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
    uint64_t groups, sync_ns; /* the syncer's: groups synced, time in fdatasync */
    /* Paying for its zero-fill: a second thread writes as many zeros as the syncer writes log,
       ZERO_AHEAD ahead of it, as the engine's zeroer prepares its next segment. */
    int zfd;                  /* -1: the ceiling does not pay for zeros */
    _Atomic uint64_t written; /* bytes the syncer has written (in all slices) */
    uint64_t zeroed, zero_at; /* the zeroer's: bytes zeroed (in all slices), and where in its file */
} ceiling_t;

static void *ceiling_syncer(void *arg) {
    ceiling_t *c = arg;
    for (;;) {
        pthread_mutex_lock(&c->mu);
        while (!c->head && !c->stop)
            pthread_cond_wait(&c->work, &c->mu);
        creq_t *list = c->head;
        c->head = NULL;
        bool stop = c->stop && !list;
        pthread_mutex_unlock(&c->mu);
        if (stop) return NULL;
        size_t len = 0;
        for (creq_t *r = list; r; r = r->next)
            len += (size_t)r->batch * c->event_bytes;
        if (c->off + len > CEILING_BYTES) c->off = 0;
        for (size_t done = 0; done < len;) {
            size_t k = MIN(len - done, 1u << 20);
            if (pwrite(c->fd, c->bytes, k, (off_t)(c->off + done)) < 0) break;
            done += k;
        }
        uint64_t t0 = clock_mono_ns();
        if (fdatasync(c->fd)) {
        }
        c->sync_ns += clock_mono_ns() - t0;
        c->groups++;
        c->off += len;
        atomic_fetch_add(&c->written, len);
        for (creq_t *r = list, *next; r; r = next) {
            next = r->next;
            sem_post(&r->done);
        }
    }
}

#define ZERO_AHEAD (64ull << 20) /* the engine's zeroer: at most this far ahead (zero.c) */
#define ZERO_FILE (256ull << 20) /* then a new file, as a new segment */
#define ZERO_CHUNK (8ull << 20)

/* Zero-fills as the engine's zeroer does: O_DIRECT writes of zeros, an fdatasync per chunk,
   keeping ZERO_AHEAD ahead of what the syncer wrote; a new (truncated) file every ZERO_FILE. */
static void *ceiling_zeroer(void *arg) {
    ceiling_t *c = arg;
    void *zeros = NULL;
    if (posix_memalign(&zeros, 4096, 1u << 20)) return NULL;
    memset(zeros, 0, 1u << 20);
    uint64_t zeroed = c->zeroed, at = c->zero_at;
    for (;;) {
        pthread_mutex_lock(&c->mu);
        bool stop = c->stop;
        pthread_mutex_unlock(&c->mu);
        if (stop) break;
        if (zeroed >= atomic_load(&c->written) + ZERO_AHEAD) {
            usleep(500);
            continue;
        }
        if (at == ZERO_FILE) {
            if (ftruncate(c->zfd, 0)) break;
            at = 0;
        }
        for (uint64_t k = 0; k < ZERO_CHUNK; k += 1u << 20)
            if (pwrite(c->zfd, zeros, 1u << 20, (off_t)(at + k)) != 1 << 20) goto out;
        if (fdatasync(c->zfd)) break;
        at += ZERO_CHUNK, zeroed += ZERO_CHUNK;
    }
out:
    c->zeroed = zeroed, c->zero_at = at;
    free(zeros);
    return NULL;
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
        while (sem_wait(&r.done)) {
        }
        w->events += (uint64_t)w->batch;
    }
    sem_destroy(&r.done);
    return NULL;
}

/* The old ceiling's file: fallocate only, made afresh for each figure (its extents unwritten). */
static int ceiling_file_fallocated(const char *path) {
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0 && fallocate(fd, 0, 0, (off_t)CEILING_BYTES)) close(fd), fd = -1;
    return fd;
}

/* The true ceiling's file: preallocated, then zeros written over all of it and synced, as a
   database that zero-fills its log ahead of the writer has it. Made once per run: what the
   figures write over it is written data too. */
static int ceiling_file_zeroed(const char *path) {
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    char *zeros = calloc(1, 1u << 20);
    bool ok = fd >= 0 && zeros && !fallocate(fd, 0, 0, (off_t)CEILING_BYTES);
    for (uint64_t off = 0; ok && off < CEILING_BYTES; off += 1u << 20)
        ok = pwrite(fd, zeros, 1u << 20, (off_t)off) == 1 << 20;
    ok = ok && !fsync(fd);
    free(zeros);
    if (!ok && fd >= 0) close(fd), fd = -1;
    return fd;
}

/* One slice of `secs` of minimal group commit into fd (from offset 0) for this workload, added
   to *t; its events/s. zfd >= 0: the ceiling also pays for zero-filling as much as it writes,
   in that (O_DIRECT-capable) file, going on where t's last slice left it. */
static double run_ceiling(int fd, int zfd, int writers, int batch, size_t event_bytes, double secs, tally_t *t) {
    ceiling_t c = {.event_bytes = event_bytes, .fd = fd, .zfd = zfd, .zeroed = t->zeroed, .zero_at = t->zero_at};
    atomic_store(&c.written, t->written);
    c.off = t->written % CEILING_BYTES; /* on from where the last slice stopped */
    pthread_mutex_init(&c.mu, NULL);
    pthread_cond_init(&c.work, NULL);
    c.bytes = malloc(1u << 20);
    if (!c.bytes) return 0;
    memset(c.bytes, 'x', 1u << 20);
    pthread_t syncer, zeroer, th[64];
    cworker_t w[64];
    pthread_create(&syncer, NULL, ceiling_syncer, &c);
    if (zfd >= 0) pthread_create(&zeroer, NULL, ceiling_zeroer, &c);
    double t0 = now_s();
    for (int i = 0; i < writers; i++) {
        w[i] = (cworker_t){&c, batch, t0 + secs, 0};
        pthread_create(&th[i], NULL, ceiling_worker, &w[i]);
    }
    uint64_t total = 0;
    for (int i = 0; i < writers; i++)
        pthread_join(th[i], NULL), total += w[i].events;
    double dt = now_s() - t0;
    pthread_mutex_lock(&c.mu);
    c.stop = true;
    pthread_cond_signal(&c.work);
    pthread_mutex_unlock(&c.mu);
    pthread_join(syncer, NULL);
    if (zfd >= 0) pthread_join(zeroer, NULL);
    free(c.bytes);
    pthread_mutex_destroy(&c.mu);
    pthread_cond_destroy(&c.work);
    t->events += total, t->seconds += dt, t->groups += c.groups, t->sync_ns += c.sync_ns;
    t->zeroed = c.zeroed, t->zero_at = c.zero_at, t->written = atomic_load(&c.written);
    return (double)total / dt;
}

/* The old ceiling: a fresh fallocate-only file for this one figure. */
static double run_ceiling_fallocated(const char *dir, int writers, int batch, size_t event_bytes) {
    char path[4200];
    snprintf(path, sizeof path, "%s/ceiling-fallocate.dat", dir);
    int fd = ceiling_file_fallocated(path);
    tally_t t = {0};
    double v = fd < 0 ? 0 : run_ceiling(fd, -1, writers, batch, event_bytes, seconds, &t);
    if (fd >= 0) close(fd);
    unlink(path);
    return v;
}

/* ---- engine appends ---- */

static char data200[201];

enum { LAT_MAX_SAMPLES = 1 << 22 }; /* per writer; appends past it go unsampled */

typedef struct {
    factum_t *db;
    int batch, id;
    uint32_t streams; /* 0: one stream */
    double until;
    uint64_t events, limit;
    uint64_t rng;
    uint32_t *lat_ns; /* each append's latency, capped at ~4 s */
    size_t nlat, caplat;
} eworker_t;

static void lat_add(eworker_t *w, uint64_t ns) {
    if (w->nlat == w->caplat) {
        size_t cap = w->caplat ? w->caplat * 2 : 4096;
        uint32_t *p = cap <= LAT_MAX_SAMPLES ? realloc(w->lat_ns, cap * sizeof *p) : NULL;
        if (!p) return;
        w->lat_ns = p, w->caplat = cap;
    }
    w->lat_ns[w->nlat++] = (uint32_t)MIN(ns, UINT32_MAX);
}

static void *engine_worker(void *arg) {
    eworker_t *w = arg;
    factum_event_t ev[100];
    for (int i = 0; i < w->batch; i++)
        ev[i] = (factum_event_t){.type = str_c("BenchEvent"), .data = {data200, 200}, .data_format = FACTUM_DATA_JSON};
    char stream[32];
    while ((w->limit ? w->events < w->limit : now_s() < w->until)) {
        w->rng = w->rng * 6364136223846793005u + 1442695040888963407u;
        if (w->streams)
            snprintf(stream, sizeof stream, "s-%u", (uint32_t)((w->rng >> 33) % w->streams));
        else
            snprintf(stream, sizeof stream, "bench-1");
        factum_error_t err;
        uint64_t t0 = clock_mono_ns();
        int rc = factum_append(w->db, str_c(stream), FACTUM_EXPECT_ANY, ev, (size_t)w->batch, NULL, &err);
        if (rc) {
            fprintf(stderr, "factum: bench append failed: %s\n", err.message);
            exit(1);
        }
        lat_add(w, clock_mono_ns() - t0);
        w->events += (uint64_t)w->batch;
    }
    return NULL;
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* Moves the writers' latency samples into t (or frees them, t NULL). */
static void lat_gather(tally_t *t, eworker_t *w, int writers) {
    for (int i = 0; i < writers; i++) {
        if (t && w[i].nlat) {
            if (t->nlat + w[i].nlat > t->caplat) {
                size_t cap = MAX(t->caplat * 2, t->nlat + w[i].nlat);
                uint32_t *p = realloc(t->lat_ns, cap * sizeof *p);
                if (p) t->lat_ns = p, t->caplat = cap;
            }
            if (t->nlat + w[i].nlat <= t->caplat) {
                memcpy(t->lat_ns + t->nlat, w[i].lat_ns, w[i].nlat * sizeof *t->lat_ns);
                t->nlat += w[i].nlat;
            }
        }
        free(w[i].lat_ns);
    }
}

/* p50 and p99 over all of t's samples; frees them. */
static latency_t tally_latency(tally_t *t) {
    latency_t l = {0, 0};
    if (t->nlat) {
        qsort(t->lat_ns, t->nlat, sizeof *t->lat_ns, cmp_u32);
        l.p50_us = t->lat_ns[t->nlat / 2] / 1e3, l.p99_us = t->lat_ns[MIN(t->nlat - 1, t->nlat * 99 / 100)] / 1e3;
    }
    free(t->lat_ns);
    t->lat_ns = NULL, t->nlat = t->caplat = 0;
    return l;
}

/* Runs writers for `secs` (or until `limit` events in all); returns events/s, and adds the
   events, time, commit groups and latencies to *t when given. */
static double run_engine(factum_t *db, int writers, int batch, uint32_t streams, uint64_t limit, double secs,
                         tally_t *t) {
    pthread_t th[64];
    eworker_t w[64];
    factum_stats_t st0, st1;
    factum_stats(db, &st0);
    double t0 = now_s();
    for (int i = 0; i < writers; i++) {
        w[i] = (eworker_t){db,
                           batch,
                           i,
                           streams,
                           t0 + secs,
                           0,
                           limit ? (limit + (uint64_t)writers - 1) / (uint64_t)writers : 0,
                           (uint64_t)i * 7919 + 1,
                           NULL,
                           0,
                           0};
        pthread_create(&th[i], NULL, engine_worker, &w[i]);
    }
    uint64_t total = 0;
    for (int i = 0; i < writers; i++)
        pthread_join(th[i], NULL), total += w[i].events;
    double dt = now_s() - t0;
    factum_stats(db, &st1);
    lat_gather(t, w, writers);
    if (t)
        t->events += total, t->seconds += dt, t->groups += st1.fsyncs - st0.fsyncs,
            t->sync_ns += (st1.fsync_us_sum - st0.fsync_us_sum) * 1000;
    return (double)total / dt;
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

static factum_options_t open_opts; /* --memtable: to try the index's memtable size */

static factum_t *bench_open(const char *dir) {
    factum_t *db;
    factum_error_t err;
    if (factum_open(dir, &open_opts, &db, &err)) {
        fprintf(stderr, "factum: %s\n", err.message);
        exit(1);
    }
    return db;
}

#define BENCH_USAGE                                                                                                    \
    "usage: factum bench engine [--json] [--quick] [--dir DIR] [--seconds S] [--only WRITERSxBATCH[:1|:1M]] "          \
    "[--no-ceiling] [--memtable ENTRIES]\n"                                                                            \
    "       factum bench scavenge [--quick] [--dir DIR]\n"                                                             \
    "       factum bench backup [--quick] [--dir DIR] [--mib N]\n"                                                     \
    "       factum bench archive [--quick] [--dir DIR] [--archive DIR] [--mib N]\n"                                    \
    "       factum bench listing [--quick] [--dir DIR] [--streams N] [--keep]\n"                                       \
    "       factum bench dcb [--quick] [--dir DIR] [--seconds S] [--events N]\n"                                       \
    "\n"                                                                                                               \
    "Measures in a new folder made in DIR (default .) and removed after; docs/bench.md says what each figure means."

int cli_bench(int argc, char **argv) {
    const char *base = NULL;
    uint64_t recover_events = 10000000, mem_streams = 1000000;
    int only_w = 0, only_b = 0; /* --only: that append workload alone (for profiling), nothing else */
    int only_mode = -1;         /* --only ...:1 or :1M: that mode alone */
    bool no_ceiling = false;
    if (argc > 1 && !strcmp(argv[1], "scavenge")) return cli_bench_scavenge(argc, argv);
    if (argc > 1 && !strcmp(argv[1], "backup")) return cli_bench_backup(argc, argv);
    if (argc > 1 && !strcmp(argv[1], "archive")) return cli_bench_archive(argc, argv);
    if (argc > 1 && !strcmp(argv[1], "listing")) return cli_bench_listing(argc, argv);
    if (argc > 1 && !strcmp(argv[1], "dcb")) return cli_bench_dcb(argc, argv);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "engine")) continue;
        if (!strcmp(argv[i], "--json"))
            json_out = true;
        else if (!strcmp(argv[i], "--quick"))
            seconds = 1, recover_events = 1000000, mem_streams = 200000;
        else if (!strcmp(argv[i], "--dir") && i + 1 < argc)
            base = argv[++i];
        else if (!strcmp(argv[i], "--no-ceiling"))
            no_ceiling = true;
        else if (!strcmp(argv[i], "--memtable") && i + 1 < argc) {
            uint64_t v;
            if (!cli_parse_u64(argv[++i], &v) || v < 1024 || v > UINT32_MAX)
                return cli_fail(CLI_USAGE, "--memtable takes index entries, 1024 to %u", UINT32_MAX);
            open_opts.memtable_events = (uint32_t)v;
        } else if (!strcmp(argv[i], "--seconds") && i + 1 < argc) {
            seconds = atof(argv[++i]);
            if (!(seconds > 0 && seconds <= 3600))
                return cli_fail(CLI_USAGE, "--seconds must be above 0 and at most 3600");
        } else if (!strcmp(argv[i], "--only") && i + 1 < argc) {
            char streams[4] = "";
            int got = sscanf(argv[++i], "%dx%d:%3s", &only_w, &only_b, streams);
            only_mode = got == 3 ? (!strcmp(streams, "1") ? 0 : !strcmp(streams, "1M") ? 1 : -2) : -1;
            if (got < 2 || only_w < 1 || only_w > 64 || only_b < 1 || only_b > 100 || only_mode == -2)
                return cli_fail(CLI_USAGE, "--only takes WRITERSxBATCH[:1|:1M], 1-64 writers, batches of 1-100, "
                                           "and optionally one stream or 1M streams");
        } else if (!strcmp(argv[i], "--help")) {
            printf("%s\n", BENCH_USAGE);
            return CLI_OK;
        } else
            return cli_fail(CLI_USAGE, "unknown option or missing value: %s (see factum bench --help)", argv[i]);
    }
    char tmpl[4096];
    snprintf(tmpl, sizeof tmpl, "%s/factum-bench-XXXXXX", base ? base : ".");
    if (!mkdtemp(tmpl)) return cli_fail(CLI_ERROR, "cannot make a folder in %s", base ? base : ".");
    memset(data200, 'x', 200);
    data200[0] = '"', data200[199] = '"';
    char dir[4200];
    factum_event_t probe = {.type = str_c("BenchEvent"),
                            .id = str_c("01234567-0123-7123-8123-0123456789ab"),
                            .source = str_c("/streams/bench-1"),
                            .data = {data200, 200},
                            .data_format = FACTUM_DATA_JSON};
    size_t ebytes = 64 + 7 + probe.id.len + probe.type.len + probe.source.len + 200;
    show_groups = only_w > 0;
    if (!json_out)
        printf("factum bench engine: durable appends of 200-byte events (%zu bytes stored each), %gs per figure\n\n",
               ebytes, seconds);

    struct shape {
        int writers, batch;
    };
    static const struct shape all_shapes[] = {{1, 1}, {1, 100}, {16, 1}, {64, 1}, {16, 100}};
    struct shape one[1] = {{only_w, only_b}};
    const struct shape *shapes = only_w ? one : all_shapes;
    size_t nshapes = only_w ? 1 : ARRAY_LEN(all_shapes);
    char zpath[4200], gpath[4200];
    snprintf(zpath, sizeof zpath, "%s/ceiling-zeroed.dat", tmpl);
    snprintf(gpath, sizeof gpath, "%s/ceiling-growth.dat", tmpl);
    int zfd = -1, gfd = -1;
    if (!no_ceiling) {
        /* O_DIRECT, as the engine's zeroer writes its zeros (io.c); buffered where refused. */
        gfd = open(gpath, O_RDWR | O_CREAT | O_TRUNC | O_DIRECT, 0644);
        if (gfd < 0) gfd = open(gpath, O_RDWR | O_CREAT | O_TRUNC, 0644);
        double tz = now_s();
        zfd = ceiling_file_zeroed(zpath);
        if (zfd < 0)
            return cli_fail(CLI_ERROR, "bench: cannot zero-fill %llu bytes in %s", (unsigned long long)CEILING_BYTES,
                            zpath);
        tz = now_s() - tz;

        /* Once per run: the old ceiling beside the true one, to see what the change of method did. */
        if (!json_out)
            printf("ceilings (zero-filling %.0f MiB took %.1fs, not timed):\n", (double)CEILING_BYTES / (1 << 20), tz);
        for (size_t s = 0; s < nshapes; s++) {
            double old = run_ceiling_fallocated(tmpl, shapes[s].writers, shapes[s].batch, ebytes);
            tally_t tt = {0};
            double tru = run_ceiling(zfd, -1, shapes[s].writers, shapes[s].batch, ebytes, seconds, &tt);
            char name[96];
            snprintf(name, sizeof name, "%d writer%s, batch %d", shapes[s].writers, shapes[s].writers > 1 ? "s" : "",
                     shapes[s].batch);
            if (json_out)
                printf("{\"name\":\"ceiling %s\",\"value\":%.1f,\"unit\":\"events/s\",\"fallocate_old\":%.1f}\n", name,
                       tru, old);
            else
                printf(
                    "  %-22s ceiling (fallocate, old): %9.0f ev/s   ceiling (zero-filled, true): %9.0f ev/s  (x%.2f)\n",
                    name, old, tru, old > 0 ? tru / old : 0);
            fflush(stdout);
        }
        if (!json_out) printf("\n");
    }

    for (int mode = 0; mode < 2; mode++) {
        if (only_mode >= 0 && mode != only_mode) continue;
        uint32_t streams = mode ? 1000000 : 0;
        snprintf(dir, sizeof dir, "%s/appends-%d", tmpl, mode);
        factum_t *db = bench_open(dir);
        for (size_t s = 0; s < nshapes; s++) {
            /* The true ceiling, the same paying for its zero-fill as a log that grows must, and
               the engine, taking turns in slices of a quarter of a second (tally_t). */
            int slices = MAX(2, (int)(seconds * 4 + 0.5)), w = shapes[s].writers, b = shapes[s].batch;
            double slice = seconds / slices;
            tally_t tc = {0}, tp = {0}, te = {0};
            for (int k = 0; k < slices; k++)
                for (int turn = 0; turn < 3; turn++) {
                    int kind = k % 2 ? 2 - turn : turn; /* 0 C, 1 P, 2 E; backwards every other slice */
                    if (kind == 0 && !no_ceiling) run_ceiling(zfd, -1, w, b, ebytes, slice, &tc);
                    if (kind == 1 && !no_ceiling && gfd >= 0) run_ceiling(zfd, gfd, w, b, ebytes, slice, &tp);
                    if (kind == 2) {
                        /* What the engine's slice left for its background threads (index runs
                           and merges, zeros ahead) is done before a ceiling runs, on the
                           engine's clock: the ceilings meet a quiet disk, and the engine pays
                           for all the work its appends made. */
                        run_engine(db, w, b, streams, 0, slice, &te);
                        double t0 = now_s();
                        factum_settle(db);
                        te.seconds += now_s() - t0;
                    }
                }
            groups_t cg = tally_groups(&tc), eg = tally_groups(&te);
            double ceil = tally_rate(&tc), paid = tally_rate(&tp), v = tally_rate(&te);
            latency_t lat = tally_latency(&te);
            char name[96];
            snprintf(name, sizeof name, "append %s, %d writer%s, batch %d", mode ? "1M streams" : "1 stream",
                     shapes[s].writers, shapes[s].writers > 1 ? "s" : "", shapes[s].batch);
            figure_lat(name, v, "events/s", ceil, &lat, &eg, paid);
            groups_line("engine", &eg);
            if (!no_ceiling) groups_line("ceiling", &cg);
        }
        factum_close(db);
    }
    if (zfd >= 0) close(zfd), unlink(zpath);
    if (gfd >= 0) close(gfd), unlink(gpath);
    if (only_w) {
        snprintf(dir, sizeof dir, "rm -rf '%s'", tmpl);
        return system(dir) ? CLI_ERROR : CLI_OK;
    }

    /* Reads of one 100-event stream. */
    snprintf(dir, sizeof dir, "%s/reads", tmpl);
    factum_t *db = bench_open(dir);
    factum_event_t ev[100];
    for (int i = 0; i < 100; i++)
        ev[i] = (factum_event_t){.type = str_c("BenchEvent"), .data = {data200, 200}, .data_format = FACTUM_DATA_JSON};
    factum_append(db, str_c("order-100"), FACTUM_EXPECT_ANY, ev, 100, NULL, NULL);
    run_engine(db, 16, 100, 100000, 2000000, 0, NULL); /* other streams around it */
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
    double rate = run_engine(db, 16, 100, 100000, recover_events, 0, NULL);
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
    if (system(cmd)) {
    }
    return CLI_OK;
}
