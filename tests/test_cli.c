/*
 * test_cli.c — the `factum` command as a user runs it: output lines, exit codes (0 ok,
 * 1 error, 2 usage, 3 not found, 4 wrong expected revision), errors on one stderr line.
 */
#include "test_server.h"

#include <dirent.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
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
    CHECK_EQ(run(out, sizeof out,
                 "append order-1 OrderCreated '{\"total\":5}' --id a1 --expect no-stream --correlation-id c9"),
             0);
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
    fputs("[{\"type\":\"ItemAdded\",\"data\":{\"sku\":1}},{\"type\":\"ItemAdded\",\"data\":{\"sku\":2},"
          "\"correlationid\":\"c9\"}]",
          f);
    fclose(f);
    CHECK_EQ(run(out, sizeof out, "append cart-7 --batch %s", path), 0);
    CHECK_MSG(strcmp(out, "{\"stream\":\"cart-7\",\"first_revision\":0,\"revision\":1,\"position\":2}\n") == 0, "%s",
              out);
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

/* Runs `factum ARGS` through sh with cwd `dir` and none of the FACTUM_* environment but `env`
   (e.g. "FACTUM_URL=x", or ""); stdout into out, stderr into test_dir()/stderr. */
static int run_in(const char *dir, const char *env, char *out, size_t cap, const char *args) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "cd %s && env -u FACTUM_URL -u FACTUM_DATA_DIR -u FACTUM_LISTEN %s %s %s 2>%s/stderr",
             dir, env, test_bin(), args, test_dir());
    return test_run(cmd, out, cap);
}

/* Whether the folder at path has nothing in it (false if it is not there). */
static bool folder_empty(const char *path) {
    DIR *d = opendir(path);
    if (!d) return false;
    struct dirent *de;
    int n = 0;
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) n++;
    closedir(d);
    return n == 0;
}

static bool exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

TEST(global_options_are_taken_anywhere_on_the_line) {
    char out[8192], d[600], args[1400];
    snprintf(d, sizeof d, "%s/d", test_dir());
    snprintf(args, sizeof args, "append order-1 OrderCreated '{\"total\":5}' --data-dir %s --expect no-stream", d);
    CHECK_EQ(run_in(test_dir(), "", out, sizeof out, args), 0);
    CHECK_MSG(!strcmp(out, "{\"stream\":\"order-1\",\"revision\":0,\"position\":0}\n"), "%s", out);
    snprintf(args, sizeof args, "read --data-dir=%s order-1 --limit 1", d);
    CHECK_EQ(run_in(test_dir(), "", out, sizeof out, args), 0);
    CHECK_MSG(strstr(out, "\"type\":\"OrderCreated\""), "%s", out);
    snprintf(args, sizeof args, "--data-dir %s read order-1 --data-dir %s", "nowhere", d); /* the last one counts */
    CHECK_EQ(run_in(test_dir(), "", out, sizeof out, args), 0);
    CHECK_EQ(run_in(test_dir(), "", out, sizeof out, "read order-1 --data-dir"), 2);
    stderr_has("--data-dir needs a value");
    CHECK_EQ(run_in(test_dir(), "", out, sizeof out, "read order-1 --server="), 2);
    stderr_has("need a value");
    CHECK_EQ(run_in(test_dir(), "", out, sizeof out, "read order-1 --version"), 0);
    CHECK(!strncmp(out, "factum ", 7));
    /* factum serve --data-dir X: srv_start puts --data-dir first; the later one counts. */
    char served[600], extra[700], log[700];
    snprintf(served, sizeof served, "%s/served", test_dir());
    snprintf(extra, sizeof extra, "--data-dir %s", served);
    srv s = srv_start(d, extra);
    snprintf(log, sizeof log, "%s/log", served);
    CHECK_MSG(exists(log), "serve --data-dir %s made no store there", served);
    snprintf(args, sizeof args, "read --all --server http://127.0.0.1:%d", s.port);
    CHECK_EQ(run_in(test_dir(), "", out, sizeof out, args), 0);
    CHECK_MSG(out[0] == 0, "the served folder is not the new one: %s", out);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}

TEST(an_explicit_option_wins_over_the_environment_and_both_options_are_a_usage_error) {
    char out[8192], args[1400];
    const char *dead = "http://127.0.0.1:1"; /* nobody listens there */
    snprintf(args, sizeof args, "--data-dir %s append s-1 T", test_dir());
    CHECK_EQ(run_in(test_dir(), "", out, sizeof out, args), 0);
    char env[700];
    snprintf(env, sizeof env, "FACTUM_URL=%s", dead);
    snprintf(args, sizeof args, "read s-1 --data-dir %s", test_dir());
    CHECK_EQ(run_in(test_dir(), env, out, sizeof out, args), 0); /* the folder, not the server */
    CHECK(strstr(out, "\"stream\":\"s-1\""));
    CHECK_EQ(run_in(test_dir(), env, out, sizeof out, "read s-1"), 5); /* no option: the environment's server */
    snprintf(env, sizeof env, "FACTUM_DATA_DIR=%s", test_dir());
    CHECK_EQ(run_in("/", env, out, sizeof out, "read s-1"), 0);
    snprintf(args, sizeof args, "read s-1 --server %s", dead);
    CHECK_EQ(run_in("/", env, out, sizeof out, args), 5); /* the server, not the folder */
    snprintf(args, sizeof args, "--data-dir %s read s-1 --server %s", test_dir(), dead);
    CHECK_EQ(run_in(test_dir(), "", out, sizeof out, args), 2);
    stderr_has("--data-dir and --server both given");
    snprintf(args, sizeof args, "serve --server %s", dead);
    CHECK_EQ(run_in(test_dir(), "", out, sizeof out, args), 2);
    stderr_has("works on a data folder");
}

/* Reads (and every command but append, meta with a change, serve and tour) never make a store:
   a mistyped --data-dir is exit 3 and nothing is created, whether the folder is missing or is
   there but empty. */
TEST(a_command_that_only_reads_never_creates_a_store) {
    static const char *const readers[] = {
        "read s-1",      "read --all", "tail s-1", "tail --all", "meta s-1", "delete s-1", "delete s-1 --tombstone",
        "admin scavenge"};
    char out[4096], args[1400], typo[600], empty[600];
    snprintf(typo, sizeof typo, "%s/dtaa", test_dir());
    snprintf(empty, sizeof empty, "%s/empty", test_dir());
    CHECK(mkdir(empty, 0755) == 0);
    for (size_t i = 0; i < ARRAY_LEN(readers); i++) {
        snprintf(args, sizeof args, "%s --data-dir %s", readers[i], typo);
        CHECK_MSG(run_in(test_dir(), "", out, sizeof out, args) == 3, "%s", args);
        stderr_has("no store at ");
        CHECK_MSG(!exists(typo), "%s made %s", readers[i], typo);
        snprintf(args, sizeof args, "%s --data-dir %s", readers[i], empty);
        CHECK_MSG(run_in(test_dir(), "", out, sizeof out, args) == 3, "%s", args);
        CHECK_MSG(folder_empty(empty), "%s wrote into %s", readers[i], empty);
    }
    CHECK_EQ(run_in(empty, "", out, sizeof out, "read --all"), 3); /* the default ./factum-data */
    CHECK(folder_empty(empty));
    /* The commands that write make it. */
    snprintf(args, sizeof args, "meta s-1 --max-count 3 --data-dir %s", typo);
    CHECK_EQ(run_in(test_dir(), "", out, sizeof out, args), 0);
    snprintf(args, sizeof args, "read --all --data-dir %s", typo);
    CHECK_EQ(run_in(test_dir(), "", out, sizeof out, args), 0);
    snprintf(args, sizeof args, "append s-1 T --data-dir %s", empty);
    CHECK_EQ(run_in(test_dir(), "", out, sizeof out, args), 0);
}

/* `--help` anywhere on the line, on every command and subcommand: the help on stdout, exit 0,
   and nothing else: no store made, no server asked (FACTUM_URL names one nobody listens on).
   The commands are the ones `factum --help` lists, so a new command is covered when listed. */
TEST(every_command_and_subcommand_prints_its_help_and_does_nothing_else) {
    static const char *const subs[] = {"group create g --category c",
                                       "group list",
                                       "group show g",
                                       "group delete g",
                                       "group pull g --max 1",
                                       "group ack g 0.1",
                                       "group nack g 0.1 --park",
                                       "group parked g",
                                       "group replay g",
                                       "group unpark g 0.1",
                                       "projection apply examples/projections/order_list.json",
                                       "projection ls",
                                       "projection status p",
                                       "projection reset p",
                                       "projection query p 'SELECT 1'",
                                       "projection delete p",
                                       "connector apply x.json",
                                       "connector ls",
                                       "connector status c",
                                       "connector pause c",
                                       "connector resume c",
                                       "connector delete c",
                                       "saga apply x.json",
                                       "saga ls",
                                       "saga show s",
                                       "saga instances s",
                                       "saga parked s",
                                       "saga delete s",
                                       "admin scavenge",
                                       "bench engine --quick",
                                       "bench scavenge --quick",
                                       "schedule +1 s-1 T",
                                       "schedule --cancel x",
                                       "append s-1 T '{}'",
                                       "append s-1 --batch x.json",
                                       "read s-1",
                                       "read --all --type T",
                                       "tail --all",
                                       "meta s-1 --max-count 3",
                                       "delete s-1 --tombstone",
                                       "check --repair",
                                       "serve --listen 127.0.0.1:0",
                                       "tour"};
    static char list[16384], out[16384];
    char empty[600], line[4200];
    snprintf(empty, sizeof empty, "%s/empty", test_dir());
    CHECK(mkdir(empty, 0755) == 0);
    CHECK_EQ(run_in(empty, "", list, sizeof list, "--help"), 0);
    char *cmds = strstr(list, "commands:\n");
    CHECK(cmds);
    int listed = 0;
    for (char *l = cmds + 10; *l == ' '; l = strchr(l, '\n') + 1, listed++) {
        char cmd[64];
        CHECK(sscanf(l, " %63[a-z]", cmd) == 1);
        for (int where = 0; where < 2; where++) {
            for (int env = 0; env < 2; env++) {
                snprintf(line, sizeof line, where ? "%s --help" : "--help %s", cmd);
                int rc = run_in(empty, env ? "FACTUM_URL=http://127.0.0.1:1" : "", out, sizeof out, line);
                CHECK_MSG(rc == 0 && !strncmp(out, "usage: factum", 13), "factum %s: exit %d, %.200s", line, rc, out);
                CHECK_MSG(folder_empty(empty), "factum %s made files", line);
            }
        }
    }
    CHECK(listed >= 14);
    for (size_t i = 0; i < ARRAY_LEN(subs); i++) {
        for (int env = 0; env < 2; env++) {
            const char *h = i % 2 ? "-h" : "--help";
            snprintf(line, sizeof line, "%s %s", subs[i], h);
            int rc = run_in(empty, env ? "FACTUM_URL=http://127.0.0.1:1" : "", out, sizeof out, line);
            CHECK_MSG(rc == 0 && !strncmp(out, "usage: factum", 13), "factum %s: exit %d, %.200s", line, rc, out);
            CHECK_MSG(folder_empty(empty), "factum %s made files", line);
        }
    }
}
