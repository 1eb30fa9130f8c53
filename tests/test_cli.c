/*
 * test_cli.c — the `factum` command as a user runs it: output lines, exit codes (0 ok,
 * 1 error, 2 usage, 3 not found, 4 wrong expected revision), errors on one stderr line.
 */
#include "test.h"

#include <string.h>
#include <unistd.h>

static int run(char *out, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int run(char *out, size_t cap, const char *fmt, ...) {
    char args[2048], cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "%s --data-dir %s %s 2>%s/stderr", test_bin(), test_dir(), args, test_dir());
    return test_run(cmd, out, cap);
}

static void stderr_has(const char *want) {
    char path[512], *text;
    size_t len;
    snprintf(path, sizeof path, "%s/stderr", test_dir());
    FILE *f = fopen(path, "r");
    CHECK(f);
    text = calloc(1, 4096);
    len = fread(text, 1, 4095, f);
    fclose(f);
    CHECK_MSG(strstr(text, want) && strncmp(text, "factum: ", 8) == 0 && memchr(text, '\n', len) == text + len - 1,
              "stderr '%s' lacks '%s' or is not one line", text, want);
    free(text);
}

TEST(cli_appends_and_reads_with_documented_output_and_exit_codes) {
    char out[8192];
    CHECK_EQ(run(out, sizeof out, "append order-1 OrderCreated '{\"total\":5}' --id a1 --expect no-stream --correlation-id c9"), 0);
    CHECK_MSG(strcmp(out, "{\"stream\":\"order-1\",\"revision\":0,\"position\":0}\n") == 0, "%s", out);
    CHECK_EQ(run(out, sizeof out, "append order-1 OrderCreated '{\"total\":5}' --id a1 --correlation-id c9"), 0);
    CHECK(strstr(out, "\"revision\":0")); /* idempotent repeat */
    CHECK_EQ(run(out, sizeof out, "append order-1 OrderCreated '{\"total\":6}' --id a1"), 1);
    stderr_has("other content");
    CHECK_EQ(run(out, sizeof out, "append order-1 OrderPaid --expect 7"), 4);
    stderr_has("expected revision 7, actual 0");
    CHECK_EQ(run(out, sizeof out, "append order-1 OrderPaid --expect sometimes"), 2);
    stderr_has("--expect takes any, no-stream, exists");
    CHECK_EQ(run(out, sizeof out, "append order-1 OrderPaid '{bad'"), 1);
    stderr_has("not valid JSON");
    CHECK_EQ(run(out, sizeof out, "append order-1 ''"), 1);
    stderr_has("'type' is required");
    CHECK_EQ(run(out, sizeof out, "read order-1"), 0);
    CHECK(strstr(out, "\"type\":\"OrderCreated\"") && strstr(out, "\"data\":{\"total\":5}") && strchr(out, '\n'));
    CHECK_EQ(run(out, sizeof out, "read order-404"), 3);
    stderr_has("not found");
    CHECK_EQ(run(out, sizeof out, "read"), 2);
    CHECK_EQ(run(out, sizeof out, "frobnicate"), 2);
    stderr_has("unknown command");
    CHECK_EQ(run(out, sizeof out, "read order-1 --limit x"), 2);
    /* A batch from a file, atomic, then filters on --all. */
    char path[512];
    snprintf(path, sizeof path, "%s/batch.json", test_dir());
    FILE *f = fopen(path, "w");
    fputs("[{\"type\":\"ItemAdded\",\"data\":{\"sku\":1}},{\"type\":\"ItemAdded\",\"data\":{\"sku\":2},\"correlationid\":\"c9\"}]", f);
    fclose(f);
    CHECK_EQ(run(out, sizeof out, "append cart-7 --batch %s", path), 0);
    CHECK_MSG(strcmp(out, "{\"stream\":\"cart-7\",\"first_revision\":0,\"revision\":1,\"position\":2}\n") == 0, "%s", out);
    f = fopen(path, "w");
    fputs("[{\"type\":\"Ok\"},{\"data\":1}]", f);
    fclose(f);
    CHECK_EQ(run(out, sizeof out, "append cart-7 --batch %s", path), 1);
    stderr_has("event 1: 'type' is required");
    CHECK_EQ(run(out, sizeof out, "read --all --category cart"), 0);
    CHECK_EQ((long)(strchr(strchr(out, '\n') + 1, '\n') - out + 1), (long)strlen(out)); /* two lines */
    CHECK_EQ(run(out, sizeof out, "read --all --correlation-id c9"), 0);
    CHECK(strstr(out, "order-1") && strstr(out, "cart-7"));
    CHECK_EQ(run(out, sizeof out, "read --all --type ItemAdded --backward --limit 1"), 0);
    CHECK(strstr(out, "\"sku\":2") && !strstr(out, "\"sku\":1"));
    CHECK_EQ(run(out, sizeof out, "read cart-7 --backward"), 0);
    CHECK(strstr(out, "\"sku\":2") < strstr(out, "\"sku\":1"));
    CHECK_EQ(run(out, sizeof out, "--version"), 0);
    CHECK(strncmp(out, "factum ", 7) == 0);
    CHECK_EQ(run(out, sizeof out, "--help"), 0);
    CHECK(strstr(out, "exit codes"));
    CHECK_EQ(run(out, sizeof out, "append --help"), 0);
    CHECK(strstr(out, "--expect"));
    /* Data from stdin. */
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "echo '{\"from\":\"stdin\"}' | %s --data-dir %s append s-1 T -", test_bin(), test_dir());
    CHECK_EQ(test_run(cmd, out, sizeof out), 0);
    CHECK_EQ(run(out, sizeof out, "read s-1"), 0);
    CHECK(strstr(out, "\"data\":{\"from\":\"stdin\"}}"));
}

TEST(cli_refuses_a_folder_another_process_holds) {
    char out[256];
    factum_t *db = test_open(test_dir(), NULL); /* this process holds the folder */
    CHECK_EQ(run(out, sizeof out, "read s-1"), 1);
    char pid[64];
    snprintf(pid, sizeof pid, "in use by process %ld", (long)getpid());
    stderr_has(pid);
    factum_close(db);
    CHECK_EQ(run(out, sizeof out, "append s-1 T"), 0);
}
