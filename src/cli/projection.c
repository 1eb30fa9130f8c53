/*
 * projection.c — `factum projection …`: projections from the command line, in client mode
 * (projections run in the server). Each subcommand is one request of docs/http.md.
 */
#include "cli.h"

#include "../base/json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *usage_projection =
    "usage: factum --server URL projection COMMAND ...\n"
    "\n"
    "  apply FILE [--name NAME]   define or redefine (NAME: the file's name without .json)\n"
    "  ls                         every projection's status, one per line\n"
    "  status NAME                status and definition\n"
    "  reset NAME                 drop what the setup made and rebuild from the first event\n"
    "  query NAME SQL [--params JSON] [--min-position P] [--timeout-ms T]\n"
    "                             a read-only query: {\"columns\",\"rows\"}\n"
    "  delete NAME [--keep-data]\n"
    "\n"
    "Projections run in the server, so this needs --server (or $FACTUM_URL). docs/projections.md\n"
    "has the definition format.\n";

static int query(const char *url, const char *name, int argc, char **argv) {
    if (argc < 4) return cli_fail(CLI_USAGE, "factum projection query needs NAME and SQL");
    buf_t b = {0};
    buf_append(&b, "{\"sql\":", 7);
    json_escape(&b, argv[3], strlen(argv[3]));
    int usage = 0;
    for (int i = 4; i < argc; i++) {
        const char *v;
        uint64_t n;
        if ((v = cli_opt(argc, argv, &i, "--params", &usage))) {
            int kind;
            if (!json_valid(v, strlen(v), &kind) || kind != JSON_OBJECT) {
                buf_free(&b);
                return cli_fail(CLI_USAGE, "--params wants a JSON object (got '%s')", v);
            }
            buf_printf(&b, ",\"params\":%s", v);
        } else if (!usage && (v = cli_opt(argc, argv, &i, "--min-position", &usage))) {
            if (!cli_parse_u64(v, &n))
                return buf_free(&b), cli_fail(CLI_USAGE, "--min-position wants a position (got '%s')", v);
            buf_printf(&b, ",\"min_position\":%llu", (unsigned long long)n);
        } else if (!usage && (v = cli_opt(argc, argv, &i, "--timeout-ms", &usage))) {
            if (!cli_parse_u64(v, &n))
                return buf_free(&b), cli_fail(CLI_USAGE, "--timeout-ms wants milliseconds (got '%s')", v);
            buf_printf(&b, ",\"timeout_ms\":%llu", (unsigned long long)n);
        } else {
            buf_free(&b);
            return usage ? CLI_USAGE : cli_fail(CLI_USAGE, "unknown option %s (see factum projection --help)", argv[i]);
        }
    }
    buf_printf(&b, "}");
    char path[200];
    snprintf(path, sizeof path, "/projections/%s/query", name);
    int rc = cli_call(url, "POST", path, b.ptr, false);
    buf_free(&b);
    return rc;
}

int cli_projection(const char *url, int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help")) return printf("%s", usage_projection), argc < 2 ? CLI_USAGE : CLI_OK;
    if (!url) return cli_fail(CLI_USAGE, "projections run in the server: give --server URL (or set FACTUM_URL)");
    const char *sub = argv[1];
    if (!strcmp(sub, "apply")) return cli_apply_file(url, "/projections/", "projection", 100, argc, argv);
    if (!strcmp(sub, "ls") || !strcmp(sub, "list")) return cli_call(url, "GET", "/projections", NULL, true);
    if (argc < 3)
        return cli_fail(CLI_USAGE, "factum projection %s needs a projection name (see factum projection --help)", sub);
    if (strlen(argv[2]) > 100) return cli_fail(CLI_USAGE, "a projection name is at most 100 characters");
    char path[200];
    snprintf(path, sizeof path, "/projections/%s", argv[2]);
    if (!strcmp(sub, "status"))
        return argc == 3 ? cli_call(url, "GET", path, NULL, false) : cli_fail(CLI_USAGE, "status takes only a name");
    if (!strcmp(sub, "reset")) {
        strcat(path, "/reset");
        return argc == 3 ? cli_call(url, "POST", path, NULL, false) : cli_fail(CLI_USAGE, "reset takes only a name");
    }
    if (!strcmp(sub, "query")) return query(url, argv[2], argc, argv);
    if (!strcmp(sub, "delete")) {
        if (argc > 4 || (argc == 4 && strcmp(argv[3], "--keep-data")))
            return cli_fail(CLI_USAGE, "delete takes a name and --keep-data");
        if (argc == 4) strcat(path, "?keep_data=true");
        return cli_call(url, "DELETE", path, NULL, false);
    }
    return cli_fail(CLI_USAGE, "unknown projection command %s (see factum projection --help)", sub);
}
