/*
 * bench_archive.c — `factum bench archive` (issue 19): the read rate of a $all scan over sealed
 * segments on the fast disk beside the same scan over the same segments once they are archived,
 * in one run. The store (512 MiB, 128 MiB with --quick; 64 MiB segments) is filled, the sealed
 * part scanned, archived (factum_archive, timed: MB/s of the moves), and scanned again. In each
 * place, the best of three: a scan timed with the segment files' pages dropped from the page
 * cache before the open (posix_fadvise DONTNEED on those files only: the disk's cost) and one
 * right after (cached: the read path's own cost). The archive folder defaults to one
 * beside the data (the same disk;
 * --archive DIR puts it on another).
 */
#include "cli.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static double mono_s(void) { return (double)clock_mono_ns() / 1e9; }

/* Drops the cached pages of every *.seg in dir (clean after the fsyncs, so they go). */
static void drop_cache(const char *dir) {
    DIR *d = opendir(dir);
    struct dirent *de;
    while (d && (de = readdir(d))) {
        size_t n = strlen(de->d_name);
        if (n < 5 || strcmp(de->d_name + n - 4, ".seg")) continue;
        int fd = openat(dirfd(d), de->d_name, O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
            fdatasync(fd);
            posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
            close(fd);
        }
    }
    if (d) closedir(d);
}

typedef struct scan_figures {
    double seconds;
    uint64_t events, bytes;
} scan_figures;

/* $all from 0 to `end`, a page of 10,000 at a time; every event's data is touched. */
static int scan(factum_t *db, uint64_t end, scan_figures *f, factum_error_t *err) {
    *f = (scan_figures){0};
    double t0 = mono_s();
    volatile uint8_t sink = 0;
    for (uint64_t from = 0; from < end;) {
        factum_query_t q = {.from = from, .limit = 10000, .system = 1};
        factum_result_t *r;
        int rc = factum_read_all(db, &q, &r, err);
        if (rc) return rc;
        size_t n = factum_result_count(r);
        for (size_t i = 0; i < n; i++) {
            const factum_event_t *e = factum_result_event(r, i);
            if (e->position >= end) break;
            f->events++, f->bytes += e->data.len + e->type.len + e->stream.len + e->id.len;
            if (e->data.len) sink ^= (uint8_t)e->data.ptr[e->data.len - 1];
        }
        from = factum_result_next(r);
        factum_result_free(r);
        if (!n) break;
    }
    (void)sink;
    f->seconds = mono_s() - t0;
    return 0;
}

/* The best of three: the store opened after the segment files' pages in `segdir` were dropped
   (a mapping keeps its pages: they are dropped while nothing maps them), one scan timed at once
   (cold) and one right after (cached). */
static int scan_place(const char *data, const factum_options_t *o, const char *segdir, uint64_t end, scan_figures *cold,
                      scan_figures *warm, factum_error_t *err) {
    for (int k = 0; k < 3; k++) {
        factum_t *db;
        scan_figures c, w;
        drop_cache(segdir);
        int rc = factum_open(data, o, &db, err);
        if (!rc && !(rc = scan(db, end, &c, err))) rc = scan(db, end, &w, err);
        factum_close(db);
        if (rc) return rc;
        if (!k || c.seconds < cold->seconds) *cold = c;
        if (!k || w.seconds < warm->seconds) *warm = w;
    }
    return 0;
}

static void show(const char *what, const scan_figures *f) {
    printf("  %-34s %9llu events in %6.3f s: %10.0f events/s, %7.1f MB/s\n", what, (unsigned long long)f->events,
           f->seconds, (double)f->events / f->seconds, (double)f->bytes / 1e6 / f->seconds);
}

/* The first position of the newest segment in logdir, from its header (docs/format.md): the
   positions below it are in sealed segments. */
static uint64_t sealed_end(const char *logdir) {
    DIR *d = opendir(logdir);
    struct dirent *de;
    char newest[64] = "";
    while (d && (de = readdir(d)))
        if (strlen(de->d_name) == 12 && !strcmp(de->d_name + 8, ".seg") && strcmp(de->d_name, newest) > 0)
            snprintf(newest, sizeof newest, "%s", de->d_name);
    uint8_t h[8] = {0};
    int fd = d && newest[0] ? openat(dirfd(d), newest, O_RDONLY | O_CLOEXEC) : -1;
    if (fd >= 0 && pread(fd, h, 8, 24) != 8) memset(h, 0, 8);
    if (fd >= 0) close(fd);
    if (d) closedir(d);
    return load64(h);
}

int cli_bench_archive(int argc, char **argv) {
    uint64_t target = 512ull << 20;
    const char *base = ".", *cold_arg = NULL;
    for (int i = 2; i < argc; i++) {
        uint64_t mib;
        if (!strcmp(argv[i], "--quick"))
            target = 128ull << 20;
        else if (!strcmp(argv[i], "--dir") && i + 1 < argc)
            base = argv[++i];
        else if (!strcmp(argv[i], "--archive") && i + 1 < argc)
            cold_arg = argv[++i];
        else if (!strcmp(argv[i], "--mib") && i + 1 < argc && cli_parse_u64(argv[i + 1], &mib) && mib)
            target = mib << 20, i++;
        else
            return cli_fail(CLI_USAGE, "usage: factum bench archive [--quick] [--dir DIR] [--archive DIR] [--mib N]");
    }
    char dir[4096], data[4200], logdir[4300], cold[4200], cmd[9000];
    snprintf(dir, sizeof dir, "%s/factum-bench-archive-XXXXXX", base);
    if (!mkdtemp(dir)) return cli_fail(CLI_ERROR, "cannot make a folder in %s", base);
    snprintf(data, sizeof data, "%s/data", dir);
    snprintf(logdir, sizeof logdir, "%s/log", data);
    if (cold_arg)
        snprintf(cold, sizeof cold, "%s", cold_arg);
    else
        snprintf(cold, sizeof cold, "%s/cold", dir), mkdir(cold, 0755);
    factum_t *db;
    factum_error_t err;
    factum_options_t plain = {.segment_bytes = 64u << 20}, o = plain;
    o.archive_dir = cold;
    if (factum_open(data, &plain, &db, &err)) return cli_report(err.code, &err);
    printf("archive bench: filling %.2f GiB (200-byte events, 64 MiB segments); archive folder %s\n",
           (double)target / (1 << 30), cold);
    fflush(stdout);
    bench_fill(db, target);
    factum_close(db);
    uint64_t end = sealed_end(logdir);
    scan_figures hot_cold, hot_warm, arch_cold, arch_warm;
    int rc;
    /* On the fast disk. */
    if ((rc = scan_place(data, &plain, logdir, end, &hot_cold, &hot_warm, &err))) return cli_report(rc, &err);
    /* Moved: every sealed segment. */
    factum_archive_stats_t *st = malloc(sizeof *st);
    if (!st) return cli_fail(CLI_ERROR, "out of memory");
    if ((rc = factum_open(data, &o, &db, &err))) return cli_report(rc, &err);
    double t0 = mono_s();
    if ((rc = factum_archive(db, st, &err))) return cli_report(rc, &err);
    double move_s = mono_s() - t0;
    factum_close(db);
    /* In the archive (opened without archival options: the markers say where). */
    if ((rc = scan_place(data, &plain, cold, end, &arch_cold, &arch_warm, &err))) return cli_report(rc, &err);
    printf("  moved %llu sealed segments, %.0f MB in %.2f s (%.0f MB/s: copy, sync, read back, marker, removal)\n",
           (unsigned long long)st->moved_segments, (double)st->moved_bytes / 1e6, move_s,
           (double)st->moved_bytes / 1e6 / move_s);
    printf("  $all scan of positions 0 to %llu (the sealed segments):\n", (unsigned long long)end);
    show("hot, page cache dropped", &hot_cold);
    show("archived, page cache dropped", &arch_cold);
    show("hot, cached", &hot_warm);
    show("archived, cached", &arch_warm);
    printf("  archived / hot: %.2f (cache dropped), %.2f (cached)\n", hot_cold.seconds / arch_cold.seconds,
           hot_warm.seconds / arch_warm.seconds);
    free(st);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd)) fprintf(stderr, "factum: could not remove %s\n", dir);
    return CLI_OK;
}
