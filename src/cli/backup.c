/*
 * backup.c — `factum backup` and `factum restore` (docs/operations.md). A backup is made in
 * this process on a data folder nobody has open (--data-dir), or by the server that has it
 * open (--server: POST /admin/backup, the folder is then on the server's machine). Each prints
 * one JSON object on stdout; progress goes to stderr when it is a terminal. --verify runs
 * `factum check` on the copy.
 */
#include "cli.h"

#include "factum_client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *usage_backup =
    "usage: factum backup --to DIR [--verify] [--data-dir DIR | --server URL]\n"
    "\n"
    "Copies the store into DIR while appends go on, up to the position it prints (every event\n"
    "acknowledged before the backup started is in it). DIR is new, empty, or an earlier backup:\n"
    "then only what changed is copied (sealed segments never change). The copy is a data folder:\n"
    "`factum serve --data-dir DIR` and `factum check --data-dir DIR` take it, and\n"
    "`factum restore DIR --to NEW` copies it to a new folder. A backup stopped half-way is\n"
    "refused by serve and restore until a backup into DIR finishes.\n"
    "\n"
    "With --server the server makes the copy (an admin key): DIR is a folder on its machine\n"
    "(a relative DIR is made absolute here). Without, the data folder must not be open.\n"
    "\n"
    "options:\n"
    "  --to DIR    where the copy goes (required)\n"
    "  --verify    check the copy afterwards as `factum check` does (exit 1 if it is not clean)\n"
    "\n"
    "prints {\"position\",\"bytes_total\",\"bytes_copied\",\"files_copied\",\"files_reused\",\"seconds\"}\n";

static const char *usage_restore =
    "usage: factum restore BACKUP --to DIR\n"
    "\n"
    "Copies the backup BACKUP (made by factum backup) into DIR, which must be new or empty, as a\n"
    "data folder to serve. An unfinished backup is refused. Prints {\"position\",\"bytes\",...}.\n";

/* Progress on stderr, when it is a terminal: bytes and percent, on one line rewritten. */
static void show_progress(void *ctx, const factum_backup_stats_t *st) {
    const char *what = ctx;
    double total = (double)(st->bytes_total ? st->bytes_total : 1);
    fprintf(stderr, "\r%s: %.1f of %.1f MiB (%.0f%%), %.1f MiB copied  ", what, (double)st->bytes_done / 1048576,
            (double)st->bytes_total / 1048576, 100.0 * (double)MIN(st->bytes_done, st->bytes_total) / total,
            (double)st->bytes_copied / 1048576);
}

static int backup_server(const char *url, const char *to, bool verify) {
    buf_t body = {0};
    char cwd[4096];
    buf_printf(&body, "{\"to\":");
    if (to[0] != '/' && getcwd(cwd, sizeof cwd)) {
        buf_t abs = {0};
        buf_printf(&abs, "%s/%s", cwd, to);
        json_escape(&body, abs.ptr, abs.len);
        buf_free(&abs);
    } else {
        json_escape(&body, to, strlen(to));
    }
    buf_printf(&body, ",\"verify\":%s}", verify ? "true" : "false");
    factum_client_t *c;
    factum_error_t err = {0};
    char *resp = NULL;
    int status = 0, rc = cli_client_new(url, &c, &err);
    if (isatty(2) && !rc) fprintf(stderr, "backup: the server at %s is copying its store to %s...\n", url, to);
    if (!rc) rc = factum_client_call(c, "POST", "/admin/backup", body.ptr, &status, &resp, &err);
    factum_client_free(c);
    buf_free(&body);
    if (rc) {
        free(resp);
        return cli_report(rc, &err);
    }
    printf("%s\n", resp);
    rc = verify && !strstr(resp, "\"clean\":true") ? CLI_ERROR : CLI_OK;
    free(resp);
    return rc;
}

int cli_backup(const char *dir, const char *url, int argc, char **argv) {
    const char *to = NULL, *v;
    bool verify = false;
    int bad = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help")) return printf("%s", usage_backup), CLI_OK;
        if ((v = cli_opt(argc, argv, &i, "--to", &bad)))
            to = v;
        else if (!strcmp(argv[i], "--verify"))
            verify = true;
        else if (bad)
            return CLI_USAGE;
        else if (argv[i][0] == '-')
            return cli_fail(CLI_USAGE, "unknown option %s (see factum backup --help)", argv[i]);
        else
            return cli_fail(CLI_USAGE, "factum backup takes no arguments, only options (see factum backup --help)");
    }
    if (!to || !*to) return cli_fail(CLI_USAGE, "factum backup needs --to DIR: the folder the copy goes to");
    if (url) return backup_server(url, to, verify);
    factum_t *db;
    int rc = cli_open(dir, &db);
    if (rc) return rc;
    factum_backup_stats_t st;
    factum_error_t err = {0};
    bool tty = isatty(2);
    rc = factum_backup(db, to, tty ? show_progress : NULL, "backup", &st, &err);
    if (tty) fputc('\n', stderr);
    factum_close(db);
    if (rc) return cli_report(rc, &err);
    char out[512];
    factum_backup_json(&st, out, sizeof out);
    printf("%s\n", out);
    fflush(stdout);
    if (!verify) return CLI_OK;
    char *check_argv[] = {"check", NULL};
    return cli_check(to, 1, check_argv);
}

int cli_restore(int argc, char **argv) {
    const char *from = NULL, *to = NULL, *v;
    int bad = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help")) return printf("%s", usage_restore), CLI_OK;
        if ((v = cli_opt(argc, argv, &i, "--to", &bad)))
            to = v;
        else if (bad)
            return CLI_USAGE;
        else if (argv[i][0] == '-')
            return cli_fail(CLI_USAGE, "unknown option %s (see factum restore --help)", argv[i]);
        else if (!from)
            from = argv[i];
        else
            return cli_fail(CLI_USAGE, "factum restore takes one backup folder (see factum restore --help)");
    }
    if (!from) return cli_fail(CLI_USAGE, "usage: factum restore BACKUP --to DIR");
    if (!to || !*to) return cli_fail(CLI_USAGE, "factum restore needs --to DIR: the new folder to restore into");
    factum_backup_stats_t st;
    factum_error_t err = {0};
    bool tty = isatty(2);
    int rc = factum_restore(from, to, tty ? show_progress : NULL, "restore", &st, &err);
    if (tty) fputc('\n', stderr);
    if (rc) return cli_report(rc, &err);
    printf("{\"position\":%llu,\"bytes\":%llu,\"files\":%llu,\"seconds\":%.3f}\n", (unsigned long long)st.position,
           (unsigned long long)st.bytes_copied, (unsigned long long)st.files_copied, st.seconds);
    return CLI_OK;
}
