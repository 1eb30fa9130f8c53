/*
 * test_bench.c — `factum bench engine` as `make bench` and a profiler run it: its options are
 * checked one past each limit (exit 2, nothing measured), and one short workload prints its
 * figure with the latency columns. No figure is asserted: benchmarks print numbers.
 */
#include "test.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int bench(char *out, size_t cap, const char *args) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s bench engine --dir %s %s 2>%s/stderr", test_bin(), test_dir(), args, test_dir());
    return test_run(cmd, out, cap);
}

TEST(bench_engine_refuses_options_one_past_their_limits) {
    char out[4096];
    CHECK_EQ(bench(out, sizeof out, "--only 65x1"), 2);
    CHECK_EQ(bench(out, sizeof out, "--only 0x1"), 2);
    CHECK_EQ(bench(out, sizeof out, "--only 16x101"), 2);
    CHECK_EQ(bench(out, sizeof out, "--only 16x100:2M"), 2);
    CHECK_EQ(bench(out, sizeof out, "--seconds 3601"), 2);
    CHECK_EQ(bench(out, sizeof out, "--seconds 0"), 2);
    CHECK_EQ(bench(out, sizeof out, "--memtable 1023"), 2);
    CHECK_EQ(bench(out, sizeof out, "--frobnicate"), 2);
    CHECK_EQ(bench(out, sizeof out, "--help"), 0);
    CHECK(strstr(out, "--only WRITERSxBATCH"));
}

TEST(bench_engine_runs_one_workload_and_prints_its_latency) {
    char out[4096];
    CHECK_EQ(bench(out, sizeof out, "--only 64x100:1 --no-ceiling --seconds 0.05 --memtable 1024"), 0);
    CHECK_MSG(strstr(out, "append 1 stream, 64 writers, batch 100") && strstr(out, " p99 ") &&
                  strstr(out, "groups/s of") && !strstr(out, "1M streams") && !strstr(out, "ceiling"),
              "%s", out);
}

/* With the ceiling: the workload's figure has the true ceiling and the same ceiling paying for
   its zero-fill (a second thread zero-filling as much as it writes), and the files both used are
   gone afterwards. */
TEST(bench_engine_prints_the_ceiling_paying_for_its_zero_fill_beside_the_true_one) {
    char out[8192];
    CHECK_EQ(bench(out, sizeof out, "--json --only 16x1:1 --seconds 0.05"), 0);
    const char *f = strstr(out, "\"name\":\"append 1 stream, 16 writers, batch 1\"");
    CHECK_MSG(f, "%s", out);
    const char *c = strstr(f, "\"ceiling\":"), *p = strstr(f, "\"ceiling_zero_fill_paid\":");
    const char *r = strstr(f, "\"ratio_zero_fill_paid\":");
    CHECK_MSG(c && p && r && atof(c + 10) > 0 && atof(p + 25) > 0 && atof(r + 23) > 0, "%s", f);
    char cmd[4200], left[256];
    snprintf(cmd, sizeof cmd, "find %s -name 'ceiling-*' | head -3", test_dir());
    CHECK_EQ(test_run(cmd, left, sizeof left), 0);
    CHECK_MSG(!left[0], "left behind: %s", left);
}

/* `factum bench listing` (the dashboard's streams page, bench/ui.sh): its limits one past, and a
   small run that prints a figure for each kind of page, the store of --keep left where it says. */
TEST(bench_listing_prints_each_page_kind_and_refuses_sizes_one_past_its_limits) {
    char cmd[4096], out[8192];
    snprintf(cmd, sizeof cmd, "%s bench listing --dir %s --streams 1999 2>&1", test_bin(), test_dir());
    CHECK_EQ(test_run(cmd, out, sizeof out), 2);
    snprintf(cmd, sizeof cmd, "%s bench listing --dir %s --streams 100000001 2>&1", test_bin(), test_dir());
    CHECK_EQ(test_run(cmd, out, sizeof out), 2);
    snprintf(cmd, sizeof cmd, "%s bench listing --dir %s --frobnicate 2>&1", test_bin(), test_dir());
    CHECK_EQ(test_run(cmd, out, sizeof out), 2);
    snprintf(cmd, sizeof cmd, "%s bench listing --dir %s --streams 2000 --keep 2>&1", test_bin(), test_dir());
    CHECK_EQ(test_run(cmd, out, sizeof out), 0);
    static const char *const kinds[] = {"first page", "page after the middle", "prefix page", "category page",
                                        "categories"};
    for (size_t i = 0; i < ARRAY_LEN(kinds); i++)
        CHECK_MSG(strstr(out, kinds[i]) && strstr(out, "2000 streams: p50"), "%s: %s", kinds[i], out);
    char *kept = strstr(out, "kept: ");
    CHECK_MSG(kept, "%s", out);
    char dir[2048];
    CHECK_EQ(sscanf(kept + 6, "%2047s", dir), 1);
    snprintf(cmd, sizeof cmd, "%s/log", dir);
    CHECK_MSG(access(cmd, F_OK) == 0, "no store kept at %s", dir);
}

/* Every port the bench scripts in bench/ give a server is below Linux's ephemeral range
   (32768-60999 by default, and this machine's ip_local_port_range): a port in it may be held by
   a client socket just after a load test, and then the server fails to start. A port is a
   number after "-p ", "port=", "PORT=" or "127.0.0.1:". */
TEST(the_bench_scripts_give_their_servers_no_port_of_the_ephemeral_range) {
    long lo = 32768, hi = 60999, sys_lo = lo, sys_hi = hi;
    FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
    if (f) {
        if (fscanf(f, "%ld %ld", &sys_lo, &sys_hi) != 2) sys_lo = lo, sys_hi = hi;
        fclose(f);
    }
    static const char *const scripts[] = {"lib.sh", "http.sh", "groups.sh", "projections.sh", "sagas.sh", "ui.sh"};
    static const char *const before[] = {"-p ", "port=", "PORT=", "127.0.0.1:"};
    int ports = 0;
    for (size_t i = 0; i < ARRAY_LEN(scripts); i++) {
        char path[1024], text[16384];
        snprintf(path, sizeof path, "%s/bench/%s", test_root(), scripts[i]);
        f = fopen(path, "r");
        CHECK_MSG(f, "no %s", path);
        text[fread(text, 1, sizeof text - 1, f)] = 0;
        fclose(f);
        for (size_t b = 0; b < ARRAY_LEN(before); b++)
            for (const char *p = text; (p = strstr(p, before[b])); p++) {
                const char *d = p + strlen(before[b]);
                if (*d < '0' || *d > '9') continue;
                long port = strtol(d, NULL, 10);
                if (port == 0) continue; /* 0: the kernel picks a free one */
                ports++;
                CHECK_MSG((port < lo || port > hi) && (port < sys_lo || port > sys_hi),
                          "bench/%s listens on %ld, inside the ephemeral port range", scripts[i], port);
            }
    }
    CHECK(ports >= 2); /* PostgreSQL's and nats-server's */
}
