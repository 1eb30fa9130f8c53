/*
 * test_bench.c — `factum bench engine` as `make bench` and a profiler run it: its options are
 * checked one past each limit (exit 2, nothing measured), and one short workload prints its
 * figure with the latency columns. No figure is asserted: benchmarks print numbers.
 */
#include "test.h"

#include <string.h>

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
