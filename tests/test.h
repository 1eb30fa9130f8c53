/*
 * test.h — Factum's test harness: TEST(name) registers a test; the runner (runner.c) runs each
 * in its own process with a time limit and prints "N passed, N failed". CHECK fails the test
 * with the file, line and expression. Test names read as sentences.
 */
#ifndef FACTUM_TEST_H
#define FACTUM_TEST_H

#include "../src/base/base.h"

#include <stdio.h>
#include <stdlib.h>

typedef void (*test_fn)(void);
void test_register(const char *name, test_fn fn, int timeout_s);
_Noreturn void test_fail(const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#define TEST_T(name, timeout)                                                                                          \
    static void name(void);                                                                                            \
    __attribute__((constructor)) static void reg_##name(void) { test_register(#name, name, timeout); }                 \
    static void name(void)
#define TEST(name) TEST_T(name, 60)

#define CHECK(cond)                                                                                                    \
    do {                                                                                                               \
        if (!(cond)) test_fail(__FILE__, __LINE__, "%s", #cond);                                                       \
    } while (0)
#define CHECK_MSG(cond, ...)                                                                                           \
    do {                                                                                                               \
        if (!(cond)) test_fail(__FILE__, __LINE__, __VA_ARGS__);                                                       \
    } while (0)
#define CHECK_EQ(a, b)                                                                                                 \
    do {                                                                                                               \
        long long a_ = (long long)(a), b_ = (long long)(b);                                                            \
        if (a_ != b_) test_fail(__FILE__, __LINE__, "%s == %s (%lld != %lld)", #a, #b, a_, b_);                        \
    } while (0)
#define CHECK_RC(expr, want)                                                                                           \
    do {                                                                                                               \
        int rc_ = (expr);                                                                                              \
        if (rc_ != (want))                                                                                             \
            test_fail(__FILE__, __LINE__, "%s returned %s, expected %s", #expr, factum_errname(rc_),                   \
                      factum_errname(want));                                                                           \
    } while (0)

/* Ends the test as skipped (the machine cannot run it: not root, no loop devices, ...): the
   runner shows "skip" with the reason and counts it apart, never as passed. */
#define TEST_SKIP_EXIT 75
_Noreturn void test_skip(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A fresh empty folder for this test, removed when the test's process ends. */
const char *test_dir(void);
/* test_dir()/name, in one of four static buffers (so a call can use a few at once). */
char *test_path(const char *name);
/* Writes text to the file `name` in test_dir(); its path (as test_path's). */
const char *test_file(const char *name, const char *text);
/* A deterministic random number generator, seeded per test (FACTUM_SEED overrides). */
uint64_t test_rand(void);
uint64_t test_seed(void);
/* The repository root and the built factum binary. */
const char *test_root(void);
const char *test_bin(void);

/* Store helpers. */
factum_t *test_open(const char *dir, const factum_options_t *o);
/* Appends one JSON event; returns the result code. */
int test_append(factum_t *db, const char *stream, int64_t expect, const char *type, const char *data, const char *id,
                factum_append_result_t *res);
/* Flips one bit (0x10) of the byte at `off` of the file at `path`: damage on purpose. */
void test_flip_bit(const char *path, uint64_t off);
/* Runs a shell command, captures stdout (up to cap) and returns its exit status. */
int test_run(const char *cmd, char *out, size_t cap);

#endif
