/*
 * bench_backup.c — `factum bench backup` (issue 19): a store of about 2 GiB (512 MiB with
 * --quick) copied by `cp -r` and by factum_backup in the same run: seconds and MB/s of each
 * (cp also with the sync that makes its copy durable, which a backup includes), the append
 * throughput of 16 writers during the backup beside the same load without it, and a second,
 * incremental backup after more appends.
 */
#include "cli.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static double mono_s(void) { return (double)clock_mono_ns() / 1e9; }

typedef struct backup_run {
    factum_t *db;
    const char *to;
    _Atomic bool done;
    int rc;
    factum_backup_stats_t st;
    factum_error_t err;
} backup_run;

static void *backup_main(void *arg) {
    backup_run *b = arg;
    b->rc = factum_backup(b->db, b->to, NULL, NULL, &b->st, &b->err);
    atomic_store(&b->done, true);
    return NULL;
}

static double shell_s(const char *cmd) {
    double t0 = mono_s();
    if (system(cmd)) fprintf(stderr, "factum: '%s' failed\n", cmd);
    return mono_s() - t0;
}

int cli_bench_backup(int argc, char **argv) {
    uint64_t target = 2ull << 30;
    double base_s = 5;
    const char *base = ".";
    for (int i = 2; i < argc; i++) {
        uint64_t mib;
        if (!strcmp(argv[i], "--quick"))
            target = 512ull << 20, base_s = 2;
        else if (!strcmp(argv[i], "--dir") && i + 1 < argc)
            base = argv[++i];
        else if (!strcmp(argv[i], "--mib") && i + 1 < argc && cli_parse_u64(argv[i + 1], &mib) && mib)
            target = mib << 20, i++;
        else
            return cli_fail(CLI_USAGE, "usage: factum bench backup [--quick] [--dir DIR] [--mib N]");
    }
    char dir[4096], data[4200], cp[4200], bk[4200], cmd[13000];
    snprintf(dir, sizeof dir, "%s/factum-bench-backup-XXXXXX", base);
    if (!mkdtemp(dir)) return cli_fail(CLI_ERROR, "cannot make a folder in %s", base);
    snprintf(data, sizeof data, "%s/data", dir);
    snprintf(cp, sizeof cp, "%s/cp", dir);
    snprintf(bk, sizeof bk, "%s/backup", dir);
    factum_t *db;
    factum_error_t err;
    if (factum_open(data, &(factum_options_t){0}, &db, &err)) return cli_report(err.code, &err);
    printf("backup bench: filling %.2f GiB (200-byte events, 256 MiB segments)\n", (double)target / (1 << 30));
    fflush(stdout);
    double t0 = mono_s();
    bench_fill(db, target);
    factum_stats_t fs;
    factum_stats(db, &fs);
    printf("  filled %llu events, %.0f MiB of records in %.1f s\n", (unsigned long long)fs.head,
           (double)fs.log_bytes / 1048576, mono_s() - t0);
    _Atomic bool stop = false;
    bench_figures without = bench_run_load(db, &stop, base_s, NULL);
    /* cp -r of the same folder (open, as a backup finds it), then the sync that makes it durable. */
    snprintf(cmd, sizeof cmd, "cp -r '%s' '%s'", data, cp);
    double cp_s = shell_s(cmd);
    snprintf(cmd, sizeof cmd, "sync -f '%s/log'", cp);
    double sync_s = shell_s(cmd);
    snprintf(cmd, sizeof cmd, "du -sb '%s' | cut -f1", cp);
    FILE *p = popen(cmd, "r");
    unsigned long long cp_bytes = 0;
    if (!p || fscanf(p, "%llu", &cp_bytes) != 1) cp_bytes = 0;
    if (p) pclose(p);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", cp);
    shell_s(cmd);
    /* The backup, with the same load going on. */
    backup_run br = {.db = db, .to = bk};
    pthread_t th;
    pthread_create(&th, NULL, backup_main, &br);
    atomic_store(&stop, false);
    bench_figures during = bench_run_load(db, &stop, 0, &br.done);
    pthread_join(th, NULL);
    if (br.rc) return cli_report(br.rc, &br.err);
    double mbs = (double)br.st.bytes_copied / 1e6 / br.st.seconds, cp_mbs = (double)cp_bytes / 1e6 / cp_s,
           cps_mbs = (double)cp_bytes / 1e6 / (cp_s + sync_s);
    printf("  cp -r: %.0f MB in %.2f s (%.0f MB/s); with its sync %.2f s (%.0f MB/s)\n", (double)cp_bytes / 1e6, cp_s,
           cp_mbs, cp_s + sync_s, cps_mbs);
    printf("  backup: %.0f MB in %.2f s (%.0f MB/s, every file synced): %.2f of cp -r, %.2f of cp -r + sync "
           "(target >= 0.80)\n",
           (double)br.st.bytes_copied / 1e6, br.st.seconds, mbs, mbs / cp_mbs, mbs / cps_mbs);
    printf("  appends, 16 writers x 1 event: %.0f/s without a backup (p99 %.2f ms), %.0f/s during it (p99 %.2f ms over "
           "%.1f s): %.2f of it (target >= 0.70)\n",
           without.rate, without.p99, during.rate, during.p99, during.seconds, during.rate / without.rate);
    /* Incremental: what was appended since, and the segment that was being written. */
    backup_run again = {.db = db, .to = bk};
    backup_main(&again);
    if (again.rc) return cli_report(again.rc, &again.err);
    printf("  second backup after %.0f more appends: %.0f MB of %.0f MB copied in %.2f s, %llu files unchanged\n",
           (during.rate * during.seconds), (double)again.st.bytes_copied / 1e6, (double)again.st.bytes_total / 1e6,
           again.st.seconds, (unsigned long long)again.st.files_reused);
    factum_close(db);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd)) fprintf(stderr, "factum: could not remove %s\n", dir);
    return CLI_OK;
}
