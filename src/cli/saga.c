/*
 * saga.c — `factum saga …`: sagas from the command line, in client mode (sagas run in the
 * server). Each subcommand is one request of docs/http.md.
 */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *usage_saga =
    "usage: factum --server URL saga COMMAND ...\n"
    "\n"
    "  apply FILE [--name NAME]        define or redefine (NAME: the file's name without .json)\n"
    "  ls                              every saga with its counts, one per line\n"
    "  show NAME [ID]                  the saga and its definition, or one instance with its history\n"
    "  instances NAME [--status S]     one instance per line (running, compensating, completed,\n"
    "                                  failed, compensation_failed)\n"
    "  parked NAME                     inputs set aside, one per line, with the reason\n"
    "  delete NAME\n"
    "\n"
    "Sagas run in the server, so this needs --server (or $FACTUM_URL). docs/sagas.md has the\n"
    "definition format.\n";

int cli_saga(const char *url, int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help")) return printf("%s", usage_saga), argc < 2 ? CLI_USAGE : CLI_OK;
    if (!url) return cli_fail(CLI_USAGE, "sagas run in the server: give --server URL (or set FACTUM_URL)");
    const char *sub = argv[1];
    if (!strcmp(sub, "ls") || !strcmp(sub, "list")) return cli_call(url, "GET", "/sagas", NULL, true);
    if (argc < 3) return cli_fail(CLI_USAGE, "factum saga %s needs a name (see factum saga --help)", sub);
    char path[600];
    if (!strcmp(sub, "apply")) {
        char name[128];
        const char *base = strrchr(argv[2], '/');
        base = base ? base + 1 : argv[2];
        size_t n = strlen(base);
        if (n > 5 && !strcmp(base + n - 5, ".json")) n -= 5;
        snprintf(name, sizeof name, "%.*s", (int)MIN(n, 100), base);
        if (argc == 5 && !strcmp(argv[3], "--name"))
            snprintf(name, sizeof name, "%.100s", argv[4]);
        else if (argc != 3)
            return cli_fail(CLI_USAGE, "factum saga apply FILE [--name NAME]");
        char *def;
        size_t len;
        int rc = cli_slurp(argv[2], &def, &len);
        if (rc) return rc;
        snprintf(path, sizeof path, "/sagas/%s", name);
        rc = cli_call(url, "PUT", path, def, false);
        free(def);
        return rc;
    }
    if (strlen(argv[2]) > 100) return cli_fail(CLI_USAGE, "a saga name is at most 100 characters");
    if (!strcmp(sub, "show")) {
        if (argc > 4) return cli_fail(CLI_USAGE, "factum saga show NAME [ID]");
        if (argc == 4) {
            buf_t p = {0};
            buf_printf(&p, "/sagas/%s/instances/", argv[2]);
            buf_url_encode(&p, argv[3], strlen(argv[3]));
            int rc = cli_call(url, "GET", p.ptr, NULL, false);
            buf_free(&p);
            return rc;
        }
        snprintf(path, sizeof path, "/sagas/%s", argv[2]);
        return cli_call(url, "GET", path, NULL, false);
    }
    if (!strcmp(sub, "instances")) {
        if (argc == 5 && !strcmp(argv[3], "--status"))
            snprintf(path, sizeof path, "/sagas/%s/instances?status=%.40s", argv[2], argv[4]);
        else if (argc == 3)
            snprintf(path, sizeof path, "/sagas/%s/instances", argv[2]);
        else
            return cli_fail(CLI_USAGE, "factum saga instances NAME [--status S]");
        return cli_call(url, "GET", path, NULL, true);
    }
    if (!strcmp(sub, "parked") && argc == 3) {
        snprintf(path, sizeof path, "/sagas/%s/parked", argv[2]);
        return cli_call(url, "GET", path, NULL, true);
    }
    if (!strcmp(sub, "delete") && argc == 3) {
        snprintf(path, sizeof path, "/sagas/%s", argv[2]);
        return cli_call(url, "DELETE", path, NULL, false);
    }
    return cli_fail(CLI_USAGE, "unknown saga command or arguments: %s (see factum saga --help)", sub);
}
