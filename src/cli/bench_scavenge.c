/*
 * bench_scavenge.c — `factum bench scavenge`: a log of about 2 GiB of which half belongs to
 * streams that are then deleted; one scavenge, timed, with the disk before and after beside the
 * live data, and the append throughput and p99 latency of 16 writers during it beside the same
 * load without it (issue 5). Its filling and its load are bench_fill and bench_run_load, which
 * the backup bench (bench_backup.c) uses too.
 */
#include "cli.h"

#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define STREAMS 2000 /* keep-N and drop-N, N < STREAMS / 2 */

static char pad[201];

static double mono_s(void) { return (double)clock_mono_ns() / 1e9; }

static uint64_t disk_bytes(const char *dir, const char *ext) {
    DIR *d = opendir(dir);
    uint64_t total = 0;
    struct dirent *de;
    while (d && (de = readdir(d))) {
        char path[8192];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        if ((!ext || strstr(de->d_name, ext)) && stat(path, &st) == 0 && S_ISREG(st.st_mode))
            total += (uint64_t)st.st_blocks * 512;
    }
    if (d) closedir(d);
    return total;
}

typedef struct load {
    factum_t *db;
    int id;
    _Atomic bool *stop;
    uint64_t fill_bytes; /* fill mode: stop once the log holds this much */
    uint64_t events;
    double *lat; /* load mode: latencies in ms */
    size_t nlat, cap;
} load;

static void *fill_worker(void *arg) {
    load *w = arg;
    factum_event_t ev[100];
    for (int i = 0; i < 100; i++)
        ev[i] = (factum_event_t){.type = str_c("Reading"), .data = {pad, 200}, .data_format = FACTUM_DATA_JSON};
    uint64_t x = (uint64_t)w->id * 7919 + 1;
    for (;;) {
        factum_stats_t st;
        factum_stats(w->db, &st);
        if (st.log_bytes >= w->fill_bytes) break;
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        char stream[32];
        unsigned n = (unsigned)((x >> 33) % STREAMS);
        snprintf(stream, sizeof stream, "%s-%u", n & 1 ? "drop" : "keep", n / 2);
        if (factum_append(w->db, str_c(stream), FACTUM_EXPECT_ANY, ev, 100, NULL, NULL)) exit(1);
        w->events += 100;
    }
    return NULL;
}

static void *load_worker(void *arg) {
    load *w = arg;
    factum_event_t ev = {.type = str_c("Reading"), .data = {pad, 200}, .data_format = FACTUM_DATA_JSON};
    uint64_t x = (uint64_t)w->id * 104729 + 7;
    while (!atomic_load(w->stop)) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        char stream[32];
        snprintf(stream, sizeof stream, "keep-%u", (unsigned)((x >> 33) % (STREAMS / 2)));
        uint64_t t0 = clock_mono_ns();
        if (factum_append(w->db, str_c(stream), FACTUM_EXPECT_ANY, &ev, 1, NULL, NULL)) exit(1);
        if (w->nlat == w->cap) {
            w->cap = w->cap ? w->cap * 2 : 65536;
            w->lat = realloc(w->lat, w->cap * sizeof *w->lat);
            if (!w->lat) exit(1);
        }
        w->lat[w->nlat++] = (double)(clock_mono_ns() - t0) / 1e6;
        w->events++;
    }
    return NULL;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* 16 writers, one event per append, until *stop (set by the caller's clock or by a scavenge). */
bench_figures bench_run_load(factum_t *db, _Atomic bool *stop, double seconds, _Atomic bool *until) {
    enum { W = 16 };
    load w[W];
    pthread_t t[W];
    double t0 = mono_s();
    for (int i = 0; i < W; i++) {
        w[i] = (load){.db = db, .id = i, .stop = stop};
        pthread_create(&t[i], NULL, load_worker, &w[i]);
    }
    while (until ? !atomic_load(until) : mono_s() - t0 < seconds)
        usleep(10000);
    atomic_store(stop, true);
    size_t n = 0;
    for (int i = 0; i < W; i++)
        pthread_join(t[i], NULL), n += w[i].nlat;
    double el = mono_s() - t0, *all = malloc((n ? n : 1) * sizeof *all);
    size_t k = 0;
    for (int i = 0; i < W; i++)
        memcpy(all + k, w[i].lat, w[i].nlat * sizeof *all), k += w[i].nlat, free(w[i].lat);
    qsort(all, n, sizeof *all, cmp_d);
    bench_figures f = {(double)n / el, n ? all[n / 2] : 0, n ? all[n * 99 / 100] : 0, el};
    free(all);
    return f;
}

typedef struct scav_run {
    factum_t *db;
    _Atomic bool done;
    double seconds;
} scav_run;

static void *scav_main(void *arg) {
    scav_run *s = arg;
    double t0 = mono_s();
    factum_error_t err;
    if (factum_scavenge(s->db, &err)) fprintf(stderr, "factum: scavenge failed: %s\n", err.message);
    s->seconds = mono_s() - t0;
    atomic_store(&s->done, true);
    return NULL;
}

void bench_fill(factum_t *db, uint64_t bytes) {
    memset(pad, 'x', 200);
    pad[0] = '"', pad[199] = '"';
    load fw[4];
    pthread_t t[4];
    for (int i = 0; i < 4; i++) {
        fw[i] = (load){.db = db, .id = i, .fill_bytes = bytes};
        pthread_create(&t[i], NULL, fill_worker, &fw[i]);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
}

int cli_bench_scavenge(int argc, char **argv) {
    uint64_t target = 2ull << 30, segment = 256u << 20;
    double base_s = 5;
    const char *base = ".";
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--quick"))
            target = 256u << 20, segment = 32u << 20, base_s = 2;
        else if (!strcmp(argv[i], "--dir") && i + 1 < argc)
            base = argv[++i];
        else
            return cli_fail(CLI_USAGE, "usage: factum bench scavenge [--quick] [--dir DIR]");
    }
    char dir[4096], logdir[4200];
    snprintf(dir, sizeof dir, "%s/factum-bench-scavenge-XXXXXX", base);
    if (!mkdtemp(dir)) return cli_fail(CLI_ERROR, "cannot make a folder in %s", base);
    snprintf(logdir, sizeof logdir, "%s/log", dir);
    factum_options_t o = {.segment_bytes = segment};
    factum_t *db;
    factum_error_t err;
    if (factum_open(dir, &o, &db, &err)) return cli_report(err.code, &err);
    printf("scavenge bench: filling %.2f GiB (200-byte events, %d streams, half of them to be deleted)\n",
           (double)target / (1 << 30), STREAMS);
    fflush(stdout);
    double t0 = mono_s();
    bench_fill(db, target);
    factum_stats_t st;
    factum_stats(db, &st);
    printf("  filled %llu events, %.0f MiB of records in %.1f s\n", (unsigned long long)st.head,
           (double)st.log_bytes / 1048576, mono_s() - t0);
    for (unsigned n = 0; n < STREAMS / 2; n++) {
        char stream[32];
        snprintf(stream, sizeof stream, "drop-%u", n);
        factum_delete_stream(db, str_c(stream), FACTUM_EXPECT_ANY, 0, NULL, NULL);
    }
    _Atomic bool stop = false;
    bench_figures without = bench_run_load(db, &stop, base_s, NULL);
    uint64_t disk0 = disk_bytes(logdir, NULL);
    scav_run sr = {.db = db};
    pthread_t th;
    pthread_create(&th, NULL, scav_main, &sr);
    atomic_store(&stop, false);
    bench_figures during = bench_run_load(db, &stop, 0, &sr.done);
    pthread_join(th, NULL);
    factum_scavenge_stats_t sc;
    factum_scavenge_stats(db, &sc);
    factum_stats(db, &st);
    uint64_t disk1 = disk_bytes(logdir, NULL), seg1 = disk_bytes(logdir, ".seg"),
             next1 = disk_bytes(logdir, ".seg.tmp");
    printf("  scavenge: %.1f s, %llu of %llu segments rewritten, %llu events removed, %.0f MiB given back\n",
           sr.seconds, (unsigned long long)sc.segments_rewritten, (unsigned long long)sc.segments_total,
           (unsigned long long)sc.events_removed, (double)sc.bytes_reclaimed_total / 1048576);
    printf(
        "  log on disk: %.0f MiB before, %.0f MiB after (segments %.0f MiB, of which the next one, prepared whole and "
        "zero-filled ahead of the writer, %.0f MiB; segment size %.0f MiB); live records %.0f MiB\n",
        (double)disk0 / 1048576, (double)disk1 / 1048576, (double)seg1 / 1048576, (double)next1 / 1048576,
        (double)segment / 1048576, (double)st.log_bytes / 1048576);
    /* The disk includes the active segment (its zero-filled tail is disk, not data), the
       position maps, and the next segment, prepared whole when the active one is half full
       (docs/format.md): at most one segment, whatever the size of the store. The target
       compares what a scavenge controls, as when it was set (the active segment was then
       preallocated whole, and no next one prepared), so it leaves the next one out; both
       figures are printed. */
    printf("  disk after / live data: %.3f with the prepared next segment, %.3f without it (target <= 1.10)\n",
           (double)disk1 / (double)st.log_bytes, (double)(disk1 - next1) / (double)st.log_bytes);
    printf("  appends, 16 writers x 1 event: %.0f/s without a scavenge (p50 %.2f ms, p99 %.2f ms), %.0f/s during it "
           "(p50 %.2f ms, p99 %.2f ms over %.1f s): %.2f of it (target >= 0.70)\n",
           without.rate, without.p50, without.p99, during.rate, during.p50, during.p99, during.seconds,
           during.rate / without.rate);
    factum_close(db);
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd)) fprintf(stderr, "factum: could not remove %s\n", dir);
    return CLI_OK;
}
