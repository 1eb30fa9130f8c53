/*
 * schema.c — `factum schema …`: the schema registry from the command line, in client mode (the
 * registry lives in the server). Each subcommand is one request of docs/schemas.md.
 */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *usage_schema =
    "usage: factum --server URL schema COMMAND ...\n"
    "\n"
    "  put TYPE VERSION FILE [--compatibility C] [--mode M]\n"
    "                             register version VERSION (the next one) of TYPE's schema:\n"
    "                             C backward (default), forward, full or none; M enforce\n"
    "                             (default), warn or off\n"
    "  check TYPE VERSION FILE [--compatibility C]\n"
    "                             the same as a dry run: how many stored TYPE events would\n"
    "                             fail the schema, and the first few, and how it differs from\n"
    "                             the version before (forward); nothing is registered\n"
    "  upcast TYPE VERSION FILE   the steps from VERSION-1 to VERSION, applied when older events\n"
    "                             are read: {\"steps\":[{\"op\":\"rename\",\"from\":\"/a\",\"to\":\"/b\"},...]}\n"
    "  ls                         every type with a schema, one per line\n"
    "  show TYPE [VERSION]        a type's versions, or one version's schema document\n"
    "\n"
    "docs/schemas.md has the keywords a schema may use and how events name their version.\n";

/* /schemas/TYPE[/versions/VERSION], TYPE percent-encoded. */
static void schema_path(buf_t *b, const char *type, const char *version) {
    buf_append(b, "/schemas/", 9);
    buf_url_encode(b, type, strlen(type));
    if (version) buf_printf(b, "/versions/%s", version);
}

static int put(const char *url, bool dry_run, int argc, char **argv) {
    if (argc < 5) return cli_fail(CLI_USAGE, "factum schema %s needs TYPE, VERSION and FILE", argv[1]);
    uint64_t v;
    if (!cli_parse_u64(argv[3], &v) || !v)
        return cli_fail(CLI_USAGE, "VERSION is a whole number from 1 (got '%s')", argv[3]);
    buf_t path = {0};
    schema_path(&path, argv[2], argv[3]);
    buf_printf(&path, "?dry_run=%s", dry_run ? "true" : "false");
    int usage = 0;
    for (int i = 5; i < argc; i++) {
        const char *o;
        if ((o = cli_opt(argc, argv, &i, "--compatibility", &usage)))
            buf_printf(&path, "&compatibility=%s", o);
        else if (!usage && !dry_run && (o = cli_opt(argc, argv, &i, "--mode", &usage)))
            buf_printf(&path, "&mode=%s", o);
        else {
            buf_free(&path);
            return usage ? CLI_USAGE : cli_fail(CLI_USAGE, "unknown option %s (see factum schema --help)", argv[i]);
        }
    }
    char *doc;
    size_t len;
    int rc = cli_slurp(argv[4], &doc, &len);
    if (!rc) {
        rc = cli_call(url, "PUT", path.ptr, doc, false);
        free(doc);
    }
    buf_free(&path);
    return rc;
}

int cli_schema(const char *url, int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help")) return printf("%s", usage_schema), argc < 2 ? CLI_USAGE : CLI_OK;
    if (!url) return cli_fail(CLI_USAGE, "the schema registry is in the server: give --server URL (or set FACTUM_URL)");
    const char *sub = argv[1];
    if (!strcmp(sub, "put")) return put(url, false, argc, argv);
    if (!strcmp(sub, "check")) return put(url, true, argc, argv);
    if (!strcmp(sub, "upcast")) {
        if (argc != 5) return cli_fail(CLI_USAGE, "factum schema upcast needs TYPE, VERSION and FILE");
        char *doc;
        size_t len;
        int rc = cli_slurp(argv[4], &doc, &len);
        if (rc) return rc;
        buf_t path = {0};
        schema_path(&path, argv[2], argv[3]);
        buf_append(&path, "/upcast", 8); /* with the NUL */
        rc = cli_call(url, "PUT", path.ptr, doc, false);
        buf_free(&path);
        free(doc);
        return rc;
    }
    if (!strcmp(sub, "ls") || !strcmp(sub, "list"))
        return argc == 2 ? cli_call(url, "GET", "/schemas", NULL, true) : cli_fail(CLI_USAGE, "ls takes nothing");
    if (!strcmp(sub, "show")) {
        if (argc < 3 || argc > 4) return cli_fail(CLI_USAGE, "factum schema show needs TYPE and maybe VERSION");
        buf_t path = {0};
        schema_path(&path, argv[2], argc == 4 ? argv[3] : NULL);
        int rc = cli_call(url, "GET", path.ptr, NULL, false);
        buf_free(&path);
        return rc;
    }
    return cli_fail(CLI_USAGE, "unknown schema command %s (see factum schema --help)", sub);
}
