/*
 * check.c — `factum check`: the offline checker of a data folder (factum_check in
 * include/factum.h does the work; this prints it). One line per finding, then a summary; or
 * with --json one JSON object per line, the summary last. Exit codes: 0 clean, 1 damage or
 * derived files that do not check out, 2 not checked (usage, folder in use, I/O error, or a
 * --truncate-at that cannot be cut: then nothing changed).
 */
#include "cli.h"

#include <stdio.h>
#include <string.h>

static const char *usage_check =
    "usage: factum check [--data-dir DIR] [--json]\n"
    "       factum check --repair [--truncate-at POSITION] [--json]\n"
    "\n"
    "Checks a data folder that no process has open, without opening it (recovery does not run):\n"
    "segment headers and numbering, every record's checksum and position, the tail (a torn\n"
    "write the next open will cut, or damage to acknowledged events, told apart by the commit\n"
    "mark), the position maps (.pmap) and the index against the log. Prints one line per\n"
    "finding (kind, file, offset, position, what), then a summary.\n"
    "\n"
    "kinds: damage   the log itself: acknowledged events damaged or missing\n"
    "       derived  a .pmap or index file missing, damaged or disagreeing with the log;\n"
    "                no event is lost (--repair, or the next open, rebuilds it)\n"
    "       note     as designed: a torn tail never acknowledged, an index behind the log\n"
    "\n"
    "options:\n"
    "  --repair               rebuild the derived files that do not check out, then check again\n"
    "  --truncate-at POSITION with --repair: cut the log so that every event at or past POSITION\n"
    "                         is gone, and set the commit mark there (POSITION must be a batch\n"
    "                         boundary at or before the end of the intact log). Nothing is ever\n"
    "                         cut without it.\n"
    "  --json                 one JSON object per finding, then {\"summary\":...}\n"
    "\n"
    "exit codes: 0 clean, 1 damage or derived findings (left after --repair),\n"
    "            2 not checked: usage, folder in use, I/O error, a refused --truncate-at\n";

static const char *kind_name(int kind) {
    switch (kind) {
    case FACTUM_CHECK_NOTE: return "note";
    case FACTUM_CHECK_DERIVED: return "derived";
    case FACTUM_CHECK_DAMAGE: return "damage";
    default: return "repaired";
    }
}

typedef struct printer {
    bool json;
    int pass;
} printer;

static void print_finding(void *ctx, const factum_check_finding_t *f) {
    printer *p = ctx;
    if (p->json) {
        buf_t b = {0};
        buf_printf(&b, "{\"kind\":\"%s\",\"pass\":%d,\"file\":", kind_name(f->kind), f->pass);
        json_escape(&b, f->file, strlen(f->file));
        if (f->offset != FACTUM_END) buf_printf(&b, ",\"offset\":%llu", (unsigned long long)f->offset);
        if (f->position != FACTUM_END) buf_printf(&b, ",\"position\":%llu", (unsigned long long)f->position);
        buf_printf(&b, ",\"message\":");
        json_escape(&b, f->message, strlen(f->message));
        if (b.ptr) printf("%s}\n", b.ptr);
        buf_free(&b);
        return;
    }
    if (f->pass != p->pass) {
        p->pass = f->pass;
        printf("after repairing:\n");
    }
    printf("%-8s %s", kind_name(f->kind), f->file[0] ? f->file : "-");
    if (f->offset != FACTUM_END) printf(" offset %llu", (unsigned long long)f->offset);
    if (f->position != FACTUM_END) printf(" position %llu", (unsigned long long)f->position);
    printf(": %s\n", f->message);
}

int cli_check(const char *dir, int argc, char **argv) {
    factum_check_options_t o = {0};
    printer p = {.pass = 1};
    const char *v;
    int bad = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help")) return printf("%s", usage_check), CLI_OK;
        if (!strcmp(argv[i], "--repair"))
            o.repair = 1;
        else if (!strcmp(argv[i], "--json"))
            p.json = true;
        else if ((v = cli_opt(argc, argv, &i, "--truncate-at", &bad))) {
            if (!cli_parse_u64(v, &o.truncate_at) || o.truncate_at == FACTUM_END)
                return cli_fail(CLI_USAGE, "--truncate-at takes a position (a whole number), not '%s'", v);
            o.truncate = 1;
        } else if (bad)
            return CLI_USAGE;
        else if (argv[i][0] == '-')
            return cli_fail(CLI_USAGE, "unknown option %s (see factum check --help)", argv[i]);
        else
            return cli_fail(CLI_USAGE, "factum check takes no arguments, only options (see factum check --help)");
    }
    if (bad) return CLI_USAGE;
    if (o.truncate && !o.repair)
        return cli_fail(CLI_USAGE,
                        "--truncate-at cuts the log: give --repair with it to say so (see factum check --help)");
    factum_check_summary_t s;
    factum_error_t err = {0};
    int rc = factum_check(dir, &o, print_finding, &p, &s, &err);
    fflush(stdout);
    if (rc && !s.repairs) return cli_fail(CLI_USAGE, "%s", err.message[0] ? err.message : factum_strerror(rc));
    if (rc) return cli_fail(CLI_USAGE, "repair stopped: %s", err.message[0] ? err.message : factum_strerror(rc));
    bool clean = !s.damage && !s.derived;
    if (p.json) {
        printf("{\"summary\":{\"segments\":%llu,\"events\":%llu,\"removed\":%llu,\"bytes\":%llu,\"head\":%llu,"
               "\"mark\":%llu,\"index_covered\":%llu,\"index_entries\":%llu,\"damage\":%llu,\"derived\":%llu,"
               "\"notes\":%llu,\"repairs\":%llu},\"clean\":%s}\n",
               (unsigned long long)s.segments, (unsigned long long)s.events, (unsigned long long)s.removed,
               (unsigned long long)s.bytes, (unsigned long long)s.head, (unsigned long long)s.mark,
               (unsigned long long)s.index_covered, (unsigned long long)s.index_entries, (unsigned long long)s.damage,
               (unsigned long long)s.derived, (unsigned long long)s.notes, (unsigned long long)s.repairs,
               clean ? "true" : "false");
    } else {
        printf("checked %s: %llu segments, %llu events", dir, (unsigned long long)s.segments,
               (unsigned long long)s.events);
        if (s.removed) printf(" (%llu positions removed by a scavenge)", (unsigned long long)s.removed);
        printf(", %llu bytes; head %llu, commit mark %llu, index covers %llu (%llu entries)\n",
               (unsigned long long)s.bytes, (unsigned long long)s.head, (unsigned long long)s.mark,
               (unsigned long long)s.index_covered, (unsigned long long)s.index_entries);
        printf("%llu damage, %llu derived, %llu notes", (unsigned long long)s.damage, (unsigned long long)s.derived,
               (unsigned long long)s.notes);
        if (s.repairs) printf(", %llu repairs", (unsigned long long)s.repairs);
        printf(": %s\n", clean      ? "clean"
                         : s.damage ? "damage found"
                                    : "derived files to rebuild (factum check --repair)");
    }
    return clean ? CLI_OK : CLI_ERROR;
}
