/*
 * runner.c — runs every registered test in a child process (so a crash, an abort or a leak
 * check failure is that test's failure alone), with a per-test time limit, then prints the
 * summary line "N passed, N failed". Arguments filter tests by substring.
 */
#include "test.h"

#include <execinfo.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    const char *name;
    test_fn fn;
    int timeout_s;
} test_case;

static test_case tests[512];
static size_t ntests;
static char dir_buf[256];
static uint64_t rng_state, seed;

void test_register(const char *name, test_fn fn, int timeout_s) {
    if (ntests < ARRAY_LEN(tests)) tests[ntests++] = (test_case){name, fn, timeout_s};
}

void test_fail(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "    %s:%d: ", file, line);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (seed %llu)\n", (unsigned long long)seed);
    va_end(ap);
    fflush(stderr);
    _exit(1);
}

void test_skip(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    printf("    skipped: ");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    fflush(NULL);
    _exit(TEST_SKIP_EXIT);
}

const char *test_dir(void) {
    if (!dir_buf[0]) {
        snprintf(dir_buf, sizeof dir_buf, "/tmp/factum-test-XXXXXX");
        if (!mkdtemp(dir_buf)) test_fail(__FILE__, __LINE__, "mkdtemp failed");
    }
    return dir_buf;
}

char *test_path(const char *name) {
    static char p[4][1024];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s", test_dir(), name);
    return p[k];
}

const char *test_file(const char *name, const char *text) {
    const char *path = test_path(name);
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fclose(f)) test_fail(__FILE__, __LINE__, "cannot write %s", path);
    return path;
}

uint64_t test_seed(void) { return seed; }

void test_flip_bit(const char *path, uint64_t off) {
    int fd = open(path, O_RDWR);
    if (fd < 0) test_fail(__FILE__, __LINE__, "cannot open %s to damage it", path);
    unsigned char b;
    if (pread(fd, &b, 1, (off_t)off) != 1)
        test_fail(__FILE__, __LINE__, "%s has no byte at %llu", path, (unsigned long long)off);
    b ^= 0x10;
    if (pwrite(fd, &b, 1, (off_t)off) != 1) test_fail(__FILE__, __LINE__, "cannot write %s", path);
    close(fd);
}
uint64_t test_rand(void) {
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15u);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
    return z ^ (z >> 31);
}

const char *test_root(void) {
    const char *r = getenv("FACTUM_ROOT");
    return r ? r : ".";
}
const char *test_bin(void) {
    const char *b = getenv("FACTUM_BIN");
    return b ? b : "build/factum";
}

factum_t *test_open(const char *dir, const factum_options_t *o) {
    factum_t *db = NULL;
    factum_error_t err = {0};
    int rc = factum_open(dir, o, &db, &err);
    if (rc) test_fail(__FILE__, __LINE__, "factum_open(%s): %s", dir, err.message);
    return db;
}

int test_append(factum_t *db, const char *stream, int64_t expect, const char *type, const char *data, const char *id,
                factum_append_result_t *res) {
    factum_event_t e = {.type = str_c(type), .id = str_c(id)};
    if (data) e.data = str_c(data), e.data_format = FACTUM_DATA_JSON;
    return factum_append(db, str_c(stream), expect, &e, 1, res, NULL);
}

int test_run(const char *cmd, char *out, size_t cap) {
    FILE *p = popen(cmd, "r");
    if (!p) test_fail(__FILE__, __LINE__, "popen failed");
    size_t n = out && cap ? fread(out, 1, cap - 1, p) : 0;
    if (out && cap) out[n] = 0;
    char sink[4096];
    while (fread(sink, 1, sizeof sink, p) > 0) {
    }
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* A crashing test prints where it crashed, then dies of the same signal. */
static void on_crash(int sig) {
    void *frames[48];
    int n = backtrace(frames, 48);
    static const char msg[] = "    crashed; backtrace (addr2line -e build/factum-tests -f ADDR):\n";
    if (write(2, msg, sizeof msg - 1)) {
    }
    backtrace_symbols_fd(frames, n, 2);
    signal(sig, SIG_DFL);
    raise(sig);
}

static void remove_tree(const char *path) {
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    if (system(cmd)) {
    }
}

int main(int argc, char **argv) {
    int passed = 0, failed = 0, skipped = 0;
    const char *env_seed = getenv("FACTUM_SEED");
    uint64_t base_seed = env_seed ? strtoull(env_seed, NULL, 10) : (uint64_t)time(NULL);
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (size_t i = 0; i < ntests; i++) {
        fflush(NULL); /* nothing buffered may be written twice by a child's exit() */
        bool wanted = argc < 2;
        for (int a = 1; a < argc; a++)
            wanted |= strstr(tests[i].name, argv[a]) != NULL;
        if (!wanted) continue;
        uint64_t t0 = clock_mono_ns();
        seed = base_seed + i;
        char dir[256];
        snprintf(dir, sizeof dir, "/tmp/factum-test-XXXXXX");
        if (!mkdtemp(dir)) return 1;
        pid_t pid = fork();
        if (pid == 0) {
            rng_state = seed;
            snprintf(dir_buf, sizeof dir_buf, "%s", dir);
            alarm((unsigned)tests[i].timeout_s);
            signal(SIGSEGV, on_crash);
            signal(SIGBUS, on_crash);
            signal(SIGABRT, on_crash);
            tests[i].fn();
            exit(0); /* not _exit: LeakSanitizer checks for leaks at exit under make asan */
        }
        int st = 0;
        waitpid(pid, &st, 0);
        remove_tree(dir);
        double secs = (double)(clock_mono_ns() - t0) / 1e9;
        if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
            passed++;
            printf("ok   %s (%.2fs)\n", tests[i].name, secs);
        } else if (WIFEXITED(st) && WEXITSTATUS(st) == TEST_SKIP_EXIT) {
            skipped++;
            printf("skip %s (the reason is above)\n", tests[i].name);
        } else {
            failed++;
            if (WIFSIGNALED(st))
                printf("FAIL %s: killed by signal %d%s (seed %llu)\n", tests[i].name, WTERMSIG(st),
                       WTERMSIG(st) == SIGALRM ? " (time limit)" : "", (unsigned long long)seed);
            else
                printf("FAIL %s (seed %llu)\n", tests[i].name, (unsigned long long)seed);
        }
    }
    if (skipped) printf("%d skipped: this machine cannot run them (each says why above)\n", skipped);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
