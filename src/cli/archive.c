/*
 * archive.c — `factum admin archive`: what is on the fast disk and what is in the archive
 * folder, and with --run an archival pass now (docs/operations.md, "Archival"). Against a
 * server (--server) it is GET or POST /admin/archive; on a data folder nobody has open it opens
 * the store with the archive options given here. Prints the JSON the HTTP API answers.
 */
#include "cli.h"

#include "factum_client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *usage_archive =
    "usage: factum admin archive [--run] [--archive-dir DIR] [--archive-after S]\n"
    "\n"
    "Prints what is where: segments and bytes on the fast disk and in the archive folder, and\n"
    "the last archival pass. --run moves every sealed segment whose newest event is at least\n"
    "--archive-after seconds old (default 0) to the archive folder now, then prints the same.\n"
    "Against a server (--server) the server's own options apply (GET or POST /admin/archive,\n"
    "an admin key); on a data folder --run needs --archive-dir.\n";

int cli_admin_archive(const char *dir, const char *url, int argc, char **argv) {
    const char *v;
    bool run = false;
    int bad = 0;
    factum_options_t o = {0};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help")) return printf("%s", usage_archive), CLI_OK;
        if (!strcmp(argv[i], "--run")) {
            run = true;
        } else if ((v = cli_opt(argc, argv, &i, "--archive-dir", &bad))) {
            o.archive_dir = v;
        } else if ((v = cli_opt(argc, argv, &i, "--archive-after", &bad))) {
            if (!cli_parse_u64(v, &o.archive_after_s) || o.archive_after_s > FACTUM_MAX_ARCHIVE_AFTER_S)
                return cli_fail(CLI_USAGE, "--archive-after wants seconds from 0 to %llu (got '%s')",
                                (unsigned long long)FACTUM_MAX_ARCHIVE_AFTER_S, v);
        } else if (bad) {
            return CLI_USAGE;
        } else {
            return cli_fail(CLI_USAGE, "unknown option %s (see factum admin archive --help)", argv[i]);
        }
    }
    if (url) {
        if (o.archive_dir || o.archive_after_s)
            return cli_fail(CLI_USAGE, "against a server the server's --archive-dir and --archive-after apply");
        return cli_call(url, run ? "POST" : "GET", "/admin/archive", NULL, false);
    }
    if (run && !o.archive_dir) return cli_fail(CLI_USAGE, "--run on a data folder needs --archive-dir DIR");
    factum_t *db;
    int rc = cli_open_with(dir, &o, &db);
    if (rc) return rc;
    factum_archive_stats_t *st = malloc(sizeof *st);
    char *out = malloc(4096 + FACTUM_MAX_DIR);
    factum_error_t err = {0};
    if (!st || !out) {
        rc = cli_fail(CLI_ERROR, "out of memory");
    } else {
        rc = run ? factum_archive(db, st, &err) : 0;
        if (!run) factum_archive_stats(db, st);
        factum_archive_json(st, out, 4096 + FACTUM_MAX_DIR);
        printf("%s\n", out);
        rc = rc ? cli_report(rc, &err) : CLI_OK;
    }
    free(st);
    free(out);
    factum_close(db);
    return rc;
}
