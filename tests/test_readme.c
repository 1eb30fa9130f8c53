/*
 * test_readme.c — the README is executed. Its shell blocks (```sh) are taken from README.md in
 * order, each command (a line, with its \ continuations, without its # comment) is run in one
 * shell as a reader pasting them would, against a fresh server and data folder, and each must
 * answer as the table below says: its exit status and what its output (stdout and stderr) must
 * hold. A README command the table does not know fails the test, and so does a table entry the
 * README no longer has: an edit of the README that breaks a command fails `make test`.
 *
 * What differs from pasting, and only this:
 *  - 127.0.0.1:7744 is the test server's address (srv_start, a free port, a fresh data folder);
 *  - build/factum is the factum being tested ($FACTUM_BIN: make asan's under make asan);
 *  - /tmp/ is the test's own folder, so that runs side by side do not share /tmp/shop;
 *  - `make run` is that server, already started; `make` and `make test` run nothing (make test
 *    built everything and is what runs this test);
 *  - a command that follows for ever (curl -N, factum tail) runs in the background under
 *    `timeout 120` (only so that nothing outlives a failed test) with its output to a file; the
 *    test waits until the server counts it as a subscriber, then, at once (curl -N) or after the
 *    last command (factum tail), until its output has what the table says, and stops it;
 *  - the shell runs in a folder of the test's where examples/ is the repository's, so relative
 *    paths resolve, with no FACTUM_* variable set.
 * Afterwards both example projections must hold rows of the tours' events and be running.
 */
#include "test_server.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

enum { RUN, NOT_RUN, FOLLOW_NOW, FOLLOW_TO_END };

typedef struct step {
    const char *cmd; /* as the README has it: continuations joined with one space, comment dropped */
    int mode;
    int rc;             /* its exit status (RUN) */
    const char *has[4]; /* each in its output */
} step;

static const step steps[] = {
    /* Two commands */
    {"make run", NOT_RUN, 0, {0}},
    {"make test", NOT_RUN, 0, {0}},
    /* A five-minute tour over HTTP */
    {"U=http://127.0.0.1:7744", RUN, 0, {0}},
    {"curl -i -X POST $U/streams/order-123 -H 'Content-Type: application/cloudevents+json' -H 'If-None-Match: *' "
     "-d '{\"type\":\"OrderCreated\",\"id\":\"c-1\",\"data\":{\"total\":59.98}}'",
     RUN,
     0,
     {"HTTP/1.1 201 Created", "ETag: \"0\"", "\"revision\":0"}},
    {"curl -i -X POST $U/streams/order-123 -H 'Content-Type: application/cloudevents+json' -H 'If-Match: \"5\"' "
     "-d '{\"type\":\"OrderPaid\"}'",
     RUN,
     0,
     {"HTTP/1.1 412 Precondition Failed", "application/problem+json", "\"detail\":"}},
    {"curl -X POST $U/streams/order-123 -H 'Content-Type: application/json' "
     "-d '[{\"type\":\"ItemAdded\",\"data\":{\"sku\":\"A\"}},{\"type\":\"ItemAdded\",\"data\":{\"sku\":\"B\"}}]'",
     RUN,
     0,
     {"\"first_revision\":1", "\"revision\":2"}},
    {"curl -X POST $U/streams/order-123 -H 'ce-type: Note' -H 'Content-Type: text/plain' -d 'fragile'",
     RUN,
     0,
     {"\"revision\":3"}},
    {"curl \"$U/streams/order-123?limit=2\"", RUN, 0, {"\"type\":\"OrderCreated\"", "\"sku\":\"A\""}},
    {"curl \"$U/all?category=order&direction=backward&limit=10\"",
     RUN,
     0,
     {"\"type\":\"Note\"", "\"type\":\"OrderCreated\""}},
    {"curl \"$U/streams?category=order\"", RUN, 0, {"{\"stream\":\"order-123\",\"first_position\":0,\"revision\":3"}},
    {"curl \"$U/categories\"", RUN, 0, {"[{\"category\":\"order\"}]"}},
    {"curl -N $U/all -H 'Accept: text/event-stream'", FOLLOW_NOW, 0, {"\"type\":\"Note\"", "event: caught-up"}},
    {"curl -X PUT $U/groups/billing -d '{\"source\":{\"category\":\"order\"},\"start\":\"earliest\"}'",
     RUN,
     0,
     {"\"name\":\"billing\""}},
    {"curl -X POST \"$U/groups/billing/messages?max=10&wait_ms=5000\"",
     RUN,
     0,
     {"\"delivery_id\":\"0.1\"", "\"type\":\"OrderCreated\""}},
    {"curl -X POST $U/groups/billing/ack -d '{\"delivery_ids\":[\"0.1\"]}'", RUN, 0, {"\"acked\":1"}},
    {"curl \"$U/all?from=2026-11-23T10:00:00Z\"", RUN, 0, {"\"type\":\"OrderCreated\""}},
    {"curl -X POST $U/schedules -d "
     "'{\"at\":\"2030-01-01T00:00:00Z\",\"stream\":\"order-123\",\"event\":{\"type\":\"Reminder\"}}'",
     RUN,
     0,
     {"\"id\":\"", "\"at\":\"2030-01-01T00:00:00"}},
    {"curl -X PUT $U/streams/sensor-7/metadata -d '{\"max_age_s\":86400,\"max_count\":1000}'",
     RUN,
     0,
     {"\"max_age_s\":86400,\"max_count\":1000"}},
    {"curl -X DELETE -H 'If-Match: \"3\"' $U/streams/order-123", RUN, 0, {"\"last_revision\":3,\"tombstone\":false"}},
    {"curl -X DELETE \"$U/streams/order-123?tombstone=true\"", RUN, 0, {"\"tombstone\":true"}},
    {"curl -X POST $U/admin/scavenge", RUN, 0, {"\"runs\":"}},
    {"curl -X PUT $U/projections/orders --data-binary @examples/projections/order_list.json",
     RUN,
     0,
     {"\"name\":\"orders\"", "\"status\":\"running\""}},
    {"P=$(curl -s -X POST $U/streams/order-124 -H 'Content-Type: application/json' "
     "-d '{\"type\":\"OrderCreated\",\"data\":{\"customerId\":\"cust-7\",\"total\":12.5}}' | grep -o "
     "'\"position\":[0-9]*' | cut -d: -f2)",
     RUN,
     0,
     {0}},
    {"curl -X POST $U/projections/orders/query -d '{\"sql\":\"SELECT order_id, status, total FROM order_list WHERE "
     "customer_id = :c\","
     "\"params\":{\"c\":\"cust-7\"},\"min_position\":'$P'}'",
     RUN,
     0,
     {"\"rows\":[[\"order-124\",\"CREATED\",12.5]]"}},
    {"curl $U/health; curl $U/metrics", RUN, 0, {"\"status\":\"ok\"", "factum_head_position"}},
    /* A tour of the command line (embedded mode) */
    {"make", NOT_RUN, 0, {0}},
    {"F=\"build/factum --data-dir /tmp/shop\"", RUN, 0, {0}},
    {"$F append order-123 OrderCreated '{\"orderId\":\"order-123\",\"total\":59.98}' --expect no-stream "
     "--correlation-id corr-1",
     RUN,
     0,
     {"{\"stream\":\"order-123\",\"revision\":0,\"position\":0}"}},
    {"$F append order-123 OrderPaid '{\"amount\":59.98}' --expect 0 --correlation-id corr-1",
     RUN,
     0,
     {"{\"stream\":\"order-123\",\"revision\":1,\"position\":1}"}},
    {"$F append payment-9 PaymentCaptured '{\"orderId\":\"order-123\"}' --correlation-id corr-1",
     RUN,
     0,
     {"{\"stream\":\"payment-9\",\"revision\":0,\"position\":2}"}},
    {"$F append order-123 OrderShipped --expect 0; echo \"exit $?\"",
     RUN,
     0,
     {"expected revision 0, actual 1", "exit 4"}},
    {"$F append order-123 OrderShipped '{\"carrier\":\"UPS\"}' --id ship-1",
     RUN,
     0,
     {"{\"stream\":\"order-123\",\"revision\":2,\"position\":3}"}},
    /* the same line again: the original result */
    {"$F read order-123", RUN, 0, {"\"type\":\"OrderCreated\"", "\"type\":\"OrderPaid\"", "\"id\":\"ship-1\""}},
    {"$F read order-123 --backward --limit 1", RUN, 0, {"\"id\":\"ship-1\""}},
    {"$F read --all --category order", RUN, 0, {"\"revision\":0", "\"revision\":2"}},
    {"$F read --all --correlation-id corr-1", RUN, 0, {"\"type\":\"PaymentCaptured\""}},
    {"$F streams order-", RUN, 0, {"{\"stream\":\"order-123\",\"first_position\":0,\"revision\":2"}},
    {"echo '[{\"type\":\"ItemAdded\",\"data\":{\"sku\":\"A\"}},{\"type\":\"ItemAdded\",\"data\":{\"sku\":\"B\"}}]' > "
     "/tmp/items.json",
     RUN,
     0,
     {0}},
    {"$F append cart-7 --batch /tmp/items.json",
     RUN,
     0,
     {"{\"stream\":\"cart-7\",\"first_revision\":0,\"revision\":1,\"position\":5}"}},
    {"$F meta cart-7 --max-count 100", RUN, 0, {"\"max_count\":100"}},
    {"$F delete cart-7 --expect 1", RUN, 0, {"\"last_revision\":1,\"tombstone\":false"}},
    {"$F admin scavenge", RUN, 0, {"\"runs\":1"}},
    {"$F check", RUN, 0, {": clean"}},
    /* ... against a server */
    {"export FACTUM_URL=http://127.0.0.1:7744", RUN, 0, {0}},
    {"build/factum append order-9 OrderCreated '{\"customerId\":\"cust-9\",\"total\":5}' --expect no-stream",
     RUN,
     0,
     {"{\"stream\":\"order-9\",\"revision\":0,"}},
    {"build/factum tail --all --category order", FOLLOW_TO_END, 0, {"\"type\":\"OrderPaid\""}},
    {"build/factum schedule +30 order-9 PaymentTimedOut '{\"orderId\":\"order-9\"}'",
     RUN,
     0,
     {"{\"id\":\"", "\"at\":\""}},
    {"build/factum schedule ls --state pending", RUN, 0, {"\"stream\":\"order-9\"", "\"state\":\"pending\""}},
    {"build/factum projection apply examples/projections/order_list.json",
     RUN,
     0,
     {"\"name\":\"order_list\"", "\"status\":\"running\""}},
    {"P=$(build/factum append order-9 OrderPaid --expect 0 | grep -o '\"position\":[0-9]*' | cut -d: -f2)",
     RUN,
     0,
     {0}},
    {"build/factum projection query order_list 'SELECT order_id, status, total FROM order_list WHERE customer_id = :c' "
     "--params '{\"c\":\"cust-9\"}' --min-position $P",
     RUN,
     0,
     {"{\"columns\":[\"order_id\",\"status\",\"total\"],\"rows\":[[\"order-9\",\"PAID\",5]]}"}},
};

/* ---- the README's commands ---- */

/* The command of a line: without a # comment (one that starts a word outside quotes). */
static void drop_comment(char *s) {
    char q = 0;
    for (char *p = s; *p; p++) {
        if (q) {
            if (*p == q) q = 0;
        } else if (*p == '\'' || *p == '"') {
            q = *p;
        } else if (*p == '#' && (p == s || *(p - 1) == ' ' || *(p - 1) == '\t')) {
            *p = 0;
            break;
        }
    }
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        s[--n] = 0;
}

/* The commands of README.md's sh blocks, in order (malloc'd, n of them). */
static char **readme_commands(size_t *n) {
    char path[1024];
    snprintf(path, sizeof path, "%s/README.md", test_root());
    FILE *f = fopen(path, "r");
    CHECK_MSG(f, "no %s", path);
    char **cmds = calloc(256, sizeof *cmds);
    char line[4096];
    buf_t cur = {0};
    bool in_sh = false;
    *n = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        if (!in_sh) {
            in_sh = !strcmp(line, "```sh");
            continue;
        }
        if (!strncmp(line, "```", 3)) {
            in_sh = false;
            continue;
        }
        size_t len = strlen(line);
        bool more = len && line[len - 1] == '\\';
        if (more) /* "a \" then "    b" is "a b" */
            while (len && (line[len - 1] == '\\' || line[len - 1] == ' '))
                line[--len] = 0;
        const char *text = line;
        if (cur.len)
            while (*text == ' ')
                text++;
        buf_printf(&cur, "%s%s", cur.len ? " " : "", text);
        if (more) continue;
        buf_append(&cur, "", 1);
        char *c = cur.ptr;
        drop_comment(c);
        if (*c) {
            CHECK(*n < 256);
            cmds[(*n)++] = strdup(c);
        }
        cur.len = 0;
    }
    fclose(f);
    buf_free(&cur);
    return cmds;
}

static const step *step_of(const char *cmd) {
    for (size_t i = 0; i < ARRAY_LEN(steps); i++)
        if (!strcmp(steps[i].cmd, cmd)) return &steps[i];
    return NULL;
}

/* cmd with the test's substitutions (see the top): malloc'd. */
static char *substitute(const char *cmd, int port) {
    static const char *from[] = {"/tmp/", "127.0.0.1:7744", "build/factum"};
    char to[3][1200];
    snprintf(to[0], sizeof to[0], "%s/", test_dir());
    snprintf(to[1], sizeof to[1], "127.0.0.1:%d", port);
    snprintf(to[2], sizeof to[2], "%s", test_bin());
    char *s = strdup(cmd);
    for (int k = 0; k < 3; k++) {
        buf_t b = {0};
        const char *p = s, *hit;
        while ((hit = strstr(p, from[k]))) {
            buf_append(&b, p, (size_t)(hit - p));
            buf_printf(&b, "%s", to[k]);
            p = hit + strlen(from[k]);
        }
        buf_printf(&b, "%s", p);
        free(s);
        s = b.ptr;
    }
    return s;
}

/* ---- one shell for all of them ---- */

typedef struct shell {
    pid_t pid;
    int in, out;
    buf_t got;
} shell;

static shell shell_start(const char *cwd) {
    int in[2], out[2];
    CHECK(pipe(in) == 0 && pipe(out) == 0);
    shell sh = {.pid = fork()};
    if (sh.pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        dup2(out[1], 2);
        close(in[0]), close(in[1]), close(out[0]), close(out[1]);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (chdir(cwd)) _exit(127);
        unsetenv("FACTUM_URL"), unsetenv("FACTUM_DATA_DIR"), unsetenv("FACTUM_LISTEN");
        execl("/bin/sh", "sh", (char *)NULL);
        _exit(127);
    }
    close(in[0]), close(out[1]);
    sh.in = in[1], sh.out = out[0];
    return sh;
}

#define DONE "@@readme-step-done "

/* Runs text in the shell and returns what it printed (in sh->got, NUL-terminated) and its exit
   status, or for a text that ends in the background (`... &`) the pid of what it started. */
static long shell_run(shell *sh, const char *text, bool background) {
    buf_t script = {0};
    buf_printf(&script, "%s\nprintf '\\n" DONE "%%d\\n' $%s\n", text, background ? "!" : "?");
    CHECK(write(sh->in, script.ptr, script.len) == (ssize_t)script.len);
    buf_free(&script);
    sh->got.len = 0;
    for (;;) {
        char chunk[4096];
        ssize_t n = read(sh->out, chunk, sizeof chunk);
        CHECK_MSG(n > 0, "the shell ended (%s)", strerror(errno));
        buf_append(&sh->got, chunk, (size_t)n);
        buf_append(&sh->got, "", 1);
        sh->got.len--;
        char *done = strstr(sh->got.ptr, "\n" DONE);
        if (done && strchr(done + 1, '\n')) {
            long v = strtol(done + 1 + strlen(DONE), NULL, 10);
            *done = 0;
            return v;
        }
    }
}

/* factum_subscribers of /metrics. */
static long subscribers(int port) {
    char *m = http_body(port, "GET", "/metrics", NULL, NULL, 200);
    const char *p = strstr(m, "\nfactum_subscribers ");
    CHECK_MSG(p, "no factum_subscribers in /metrics");
    long n = strtol(p + 20, NULL, 10);
    free(m);
    return n;
}

typedef struct follower {
    const step *st;
    long pid; /* of its `timeout` */
    char file[700];
} follower;

/* What the follower printed so far (a static buffer), after failing the test if it has ended:
   a follower that ends by itself will never give what is waited for. */
static const char *follower_output(const follower *fo) {
    static char text[1 << 16];
    FILE *f = fopen(fo->file, "r");
    size_t n = f ? fread(text, 1, sizeof text - 1, f) : 0;
    if (f) fclose(f);
    text[n] = 0;
    char stat_path[64], st[512] = "";
    snprintf(stat_path, sizeof stat_path, "/proc/%ld/stat", fo->pid);
    f = fopen(stat_path, "r");
    if (f) {
        if (!fgets(st, sizeof st, f)) st[0] = 0;
        fclose(f);
    }
    const char *state = strrchr(st, ')');
    CHECK_MSG(state && state[2] != 'Z', "README command ended by itself: %s\n%s", fo->st->cmd, text);
    return text;
}

/* Waits until the server counts the follower as a subscriber (some) or counts none (!fo). */
static void wait_subscribers(int port, const follower *fo) {
    while ((subscribers(port) > 0) != (fo != NULL)) {
        if (fo) follower_output(fo);
        usleep(20000);
    }
}

/* Waits until the follower printed every one of its step's `has` (the test's time limit is the
   only bound), then stops it. */
static void follower_stop(const follower *fo) {
    for (;;) {
        const char *text = follower_output(fo);
        bool all = true;
        for (int k = 0; k < 4 && fo->st->has[k]; k++)
            all &= strstr(text, fo->st->has[k]) != NULL;
        if (all) break;
        usleep(50000);
    }
    kill((pid_t)fo->pid, SIGTERM);
}

TEST_T(the_readme_commands_work_when_pasted_in_order, 180) {
    char data[600], cwd[600], link[700], examples[1200];
    snprintf(data, sizeof data, "%s/server-data", test_dir());
    snprintf(cwd, sizeof cwd, "%s/tour", test_dir());
    CHECK(mkdir(cwd, 0755) == 0);
    snprintf(link, sizeof link, "%s/examples", cwd);
    snprintf(examples, sizeof examples, "%s/examples", test_root());
    if (examples[0] != '/') { /* FACTUM_ROOT relative: from the runner's folder */
        char here[600];
        CHECK(getcwd(here, sizeof here));
        snprintf(examples, sizeof examples, "%s/%s/examples", here, test_root());
    }
    CHECK(symlink(examples, link) == 0);
    srv s = srv_start(data, NULL);
    size_t n;
    char **cmds = readme_commands(&n);
    bool used[ARRAY_LEN(steps)] = {0};
    shell sh = shell_start(cwd);
    follower fo[4];
    int nfo = 0;
    for (size_t i = 0; i < n; i++) {
        const step *st = step_of(cmds[i]);
        CHECK_MSG(st, "README command %zu is not in tests/test_readme.c's table (say what it must answer there):\n%s",
                  i + 1, cmds[i]);
        CHECK_MSG(!used[st - steps] || st->mode == RUN, "README command %zu comes twice: %s", i + 1, cmds[i]);
        used[st - steps] = true;
        if (st->mode == NOT_RUN) continue;
        char *run = substitute(cmds[i], s.port);
        buf_t text = {0};
        if (st->mode == RUN) {
            buf_printf(&text, "{ %s\n} </dev/null", run);
            long rc = shell_run(&sh, text.ptr, false);
            if (getenv("FACTUM_TEST_VERBOSE")) fprintf(stderr, "$ %s\n%s\n[exit %ld]\n", run, sh.got.ptr, rc);
            CHECK_MSG(rc == st->rc, "README command %zu exited %ld, not %d:\n%s\n%s", i + 1, rc, st->rc, cmds[i],
                      sh.got.ptr);
            for (int k = 0; k < 4 && st->has[k]; k++)
                CHECK_MSG(strstr(sh.got.ptr, st->has[k]), "README command %zu: no '%s' in its output:\n%s\n%s", i + 1,
                          st->has[k], cmds[i], sh.got.ptr);
        } else {
            CHECK(nfo < 4);
            follower *f = &fo[nfo++];
            f->st = st;
            snprintf(f->file, sizeof f->file, "%s/follow-%zu.out", test_dir(), i + 1);
            wait_subscribers(s.port, NULL); /* the one before is gone */
            buf_printf(&text, "timeout 120 %s </dev/null >%s 2>&1 &\n", run, f->file);
            f->pid = shell_run(&sh, text.ptr, true);
            CHECK(f->pid > 0);
            wait_subscribers(s.port, f); /* it follows: what comes next reaches it */
            if (st->mode == FOLLOW_NOW) follower_stop(f);
        }
        buf_free(&text);
        free(run);
    }
    for (int i = 0; i < nfo; i++)
        if (fo[i].st->mode == FOLLOW_TO_END) follower_stop(&fo[i]);
    for (size_t i = 0; i < ARRAY_LEN(steps); i++)
        CHECK_MSG(used[i], "the README no longer has: %s", steps[i].cmd);
    /* The example projections on what the tours appended: rows, and running (not failed). The
       tours applied order_list (twice: as orders and as order_list); daily_order_stats here. */
    char *def, path[1200];
    snprintf(path, sizeof path, "%s/projections/daily_order_stats.json", link);
    FILE *f = fopen(path, "r");
    CHECK(f);
    def = calloc(1, 1 << 16);
    CHECK(fread(def, 1, (1 << 16) - 1, f) > 0);
    fclose(f);
    free(http_body(s.port, "PUT", "/projections/daily_order_stats", NULL, def, 201));
    free(def);
    static const char *const models[] = {"orders", "order_list", "daily_order_stats"};
    for (size_t i = 0; i < ARRAY_LEN(models); i++) {
        snprintf(path, sizeof path, "/projections/%s", models[i]);
        for (;;) {
            char *st = http_body(s.port, "GET", path, NULL, NULL, 200);
            CHECK_MSG(!strstr(st, "\"status\":\"failed\""), "%s", st);
            bool settled = strstr(st, "\"lag_events\":0,") && strstr(st, "\"status\":\"running\"");
            free(st);
            if (settled) break;
            usleep(20000);
        }
    }
    char *b = http_body(s.port, "POST", "/projections/daily_order_stats/query", NULL,
                        "{\"sql\":\"SELECT sum(order_count), sum(total_value) FROM daily_order_stats\"}", 200);
    CHECK_MSG(strstr(b, "\"rows\":[[2,17.5]]"), "daily_order_stats on the tour's events: %s",
              b); /* order-124 and order-9 */
    free(b);
    b = http_body(s.port, "POST", "/projections/order_list/query", NULL,
                  "{\"sql\":\"SELECT order_id, status FROM order_list ORDER BY order_id\"}", 200);
    CHECK_MSG(strstr(b, "\"rows\":[[\"order-124\",\"CREATED\"],[\"order-9\",\"PAID\"]]"),
              "order_list on the tour's events: %s", b);
    free(b);
    close(sh.in);
    waitpid(sh.pid, NULL, 0);
    close(sh.out);
    buf_free(&sh.got);
    for (size_t i = 0; i < n; i++)
        free(cmds[i]);
    free(cmds);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}
