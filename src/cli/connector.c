/*
 * connector.c — `factum connector …`: connectors (HTTP sinks, outbox relays) from the command
 * line, in client mode (they run in the server). Each subcommand is one request of
 * docs/connectors.md.
 */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *usage_connector =
    "usage: factum --server URL connector COMMAND ...\n"
    "\n"
    "  apply FILE [--name NAME]   define or redefine (NAME: the file's name without .json)\n"
    "  ls                         every connector with its status, one per line\n"
    "  status NAME                definition (no secret) and status: state, lag, parked, last error\n"
    "  pause NAME                 stop delivering (holds across restarts)\n"
    "  resume NAME\n"
    "  delete NAME                stop it, delete its group (a sink) or slot (an outbox) and secrets\n"
    "\n"
    "Connectors run in the server, so this needs --server (or $FACTUM_URL). docs/connectors.md has\n"
    "the definition format; a sink's parked events are `factum group parked sink.NAME`.\n";

int cli_connector(const char *url, int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help")) return printf("%s", usage_connector), argc < 2 ? CLI_USAGE : CLI_OK;
    if (!url) return cli_fail(CLI_USAGE, "connectors run in the server: give --server URL (or set FACTUM_URL)");
    const char *sub = argv[1];
    if (!strcmp(sub, "apply")) return cli_apply_file(url, "/connectors/", "connector", 64, argc, argv);
    if (!strcmp(sub, "ls") || !strcmp(sub, "list")) return cli_call(url, "GET", "/connectors", NULL, true);
    if (argc != 3)
        return cli_fail(CLI_USAGE, "factum connector %s takes a connector name (see factum connector --help)", sub);
    if (strlen(argv[2]) > 64) return cli_fail(CLI_USAGE, "a connector name is at most 64 characters");
    char path[200];
    snprintf(path, sizeof path, "/connectors/%s", argv[2]);
    if (!strcmp(sub, "status")) return cli_call(url, "GET", path, NULL, false);
    if (!strcmp(sub, "delete")) return cli_call(url, "DELETE", path, NULL, false);
    if (!strcmp(sub, "pause") || !strcmp(sub, "resume")) {
        strcat(path, !strcmp(sub, "pause") ? "/pause" : "/resume");
        return cli_call(url, "POST", path, NULL, false);
    }
    return cli_fail(CLI_USAGE, "unknown connector command %s (see factum connector --help)", sub);
}
