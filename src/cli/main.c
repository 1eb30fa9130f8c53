/*
 * main.c — the `factum` command: argument parsing and the embedded-mode commands (append,
 * read), which open the data folder in-process through include/factum.h. The global options
 * (--data-dir, --server, --token, --cacert, --help, --version) are taken wherever they stand and the command gets
 * the rest; an explicit one wins over the environment. Only the commands that write make a
 * store (cli_create); the others need one (cli_open: exit 3 "no store at DIR"). Exit codes:
 * 0 ok, 1 error, 2 usage, 3 stream (or store) not found, 4 wrong expected revision, 5 server
 * unreachable, 6 deleted for ever, 7 not authorized (the server refused the key), 8 an append
 * condition failed. Errors are one line on stderr.
 * `factum bench` lives in bench.c.
 */
#include "cli.h"
#include "config.h"

#include "factum_client.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *usage_main =
    "usage: factum COMMAND [ARGS] [--data-dir DIR | --server URL]\n"
    "\n"
    "Factum is an event store: append CloudEvents to streams, read them back.\n"
    "\n"
    "commands:\n"
    "  append STREAM TYPE [JSON|-]   append one event (data from JSON text or stdin)\n"
    "  append STREAM --batch FILE    append a JSON array of CloudEvents atomically\n"
    "  read STREAM                   print a stream's events, one JSON line each\n"
    "  read --all                    print the global log, filtered\n"
    "  tail STREAM|--all             follow new events live, one JSON line each\n"
    "  streams [PREFIX]              list streams by name (--category C, --after NAME, --limit N)\n"
    "  categories                    list categories by name\n"
    "  schedule AT STREAM TYPE [JSON] append an event at a time (server only)\n"
    "  schedule ls [--state S]       list durable timers (pending, fired, failed, cancelled)\n"
    "  group COMMAND ...             consumer groups: create, pull, ack, nack, parked, replay\n"
    "  meta STREAM [--max-count N ...] show or change a stream's metadata (retention)\n"
    "  projection COMMAND ...        SQL read models: apply, ls, status, reset, query, delete\n"
    "  connector COMMAND ...         HTTP sinks and outbox relays: apply, ls, status, pause, resume, delete\n"
    "  saga COMMAND ...              sagas: apply, ls, show, instances, parked, delete\n"
    "  schema COMMAND ...            event schemas: put, check, upcast, ls, show\n"
    "  delete STREAM [--tombstone]   delete a stream (soft, or for ever)\n"
    "  admin scavenge                give back the disk of deleted and expired events\n"
    "  admin archive [--run]         what is on the fast disk and in the archive; --run moves now\n"
    "  check [--repair]              check a closed data folder offline (exit 1: damage found)\n"
    "  backup --to DIR [--verify]    copy the store while it runs (incremental into an earlier backup)\n"
    "  restore BACKUP --to DIR       copy a backup into a new data folder\n"
    "  key create|ls|revoke          API keys: who may call the server, and what they may do\n"
    "  serve [--listen HOST:PORT]    run the HTTP server (default 127.0.0.1:7744)\n"
    "  config check FILE             check a configuration file of serve (--config FILE)\n"
    "  tour                          a short demonstration on the data folder\n"
    "  bench engine|scavenge         measure the engine against this disk's ceiling\n"
    "\n"
    "options (anywhere on the line, before or after the command):\n"
    "  --data-dir DIR   the data folder (default ./factum-data, or $FACTUM_DATA_DIR)\n"
    "  --server URL     talk to a server instead (or $FACTUM_URL), e.g. http://127.0.0.1:7744;\n"
    "                   several, separated by commas: the next when one refuses the connection;\n"
    "                   append, read and tail work the same way and give the same exit codes\n"
    "  --token TOKEN    the API key to send to the server (or $FACTUM_TOKEN)\n"
    "  --cacert FILE    verify an https:// server against these CA certificates (PEM) instead\n"
    "                   of the system's (or $FACTUM_CACERT)\n"
    "  --help, -h       this text; COMMAND --help for one command (and nothing else is done)\n"
    "  --version        print the version\n"
    "\n"
    "An option on the line wins over the environment: --data-dir over $FACTUM_URL, --server\n"
    "over $FACTUM_DATA_DIR; giving both is a usage error. With neither, $FACTUM_URL wins.\n"
    "Only append, meta with a change, serve and tour make a store in a folder that has none;\n"
    "every other command there exits 3 with 'no store at DIR'.\n"
    "\n"
    "exit codes: 0 ok, 1 error, 2 usage, 3 stream (or store) not found, 4 wrong expected revision,\n"
    "            5 server unreachable, 6 stream deleted for ever, 7 not authorized,\n"
    "            8 append condition failed (--fail-if)\n";

static const char *usage_tail =
    "usage: factum tail STREAM [--from R]\n"
    "       factum tail --all [--from P] [--type T] [--category C] [--correlation-id X]\n"
    "\n"
    "Prints events as they are appended, one CloudEvent JSON per line, until interrupted.\n"
    "Without --from it starts at the end (only new events); --from starts at that revision or\n"
    "position and catches up first. Against a server it reconnects and resumes by itself.\n";

static const char *usage_schedule =
    "usage: factum --server URL schedule AT STREAM TYPE [JSON|-] [--id ID]\n"
    "       factum --server URL schedule --cancel ID\n"
    "       factum schedule ls [--state S] [--after ID] [--limit N]   (see schedule ls --help)\n"
    "\n"
    "A durable timer: the server appends the event to STREAM at AT (an RFC 3339 time, or +N for\n"
    "N seconds from now), once, unless it is cancelled first. Prints {\"id\",\"at\"}. Timers are\n"
    "kept and fired by the server, so this needs --server (or $FACTUM_URL).\n";

/* The server of client mode (--server or $FACTUM_URL), or NULL for embedded mode. */
static const char *server_url;

static const char *usage_append =
    "usage: factum append STREAM TYPE [JSON|-] [options]\n"
    "       factum append STREAM --batch FILE|- [--expect E]\n"
    "       factum append --streams FILE|- [--fail-if QUERY [--after P]]\n"
    "\n"
    "Appends after the event is on disk and prints {\"stream\",\"revision\",\"position\"}\n"
    "(a batch also prints \"first_revision\"). JSON is the event's data; - reads it from stdin.\n"
    "\n"
    "options:\n"
    "  --id ID                 the event id (default: a new UUIDv7); re-sending the same id\n"
    "                          with the same content is a no-op that returns the original\n"
    "  --expect E              any (default), no-stream, exists, or the last revision N\n"
    "  --source S              CloudEvents source (default /streams/STREAM)\n"
    "  --subject S             CloudEvents subject\n"
    "  --correlation-id X      correlation id\n"
    "  --causation-id Y        causation id\n"
    "  --batch FILE            a JSON array of CloudEvents, appended atomically\n"
    "  --tag T                 a tag of the event (repeat for more; docs/dcb.md)\n"
    "  --fail-if QUERY         append only if no event matches QUERY, JSON {\"items\":[{\"types\":[..],\n"
    "                          \"tags\":[..]}]} (after --after P only); else exit 8, nothing written\n"
    "  --after P               with --fail-if: only events after position P count\n"
    "  --streams FILE          a JSON array of CloudEvents each with its \"stream\" (those of one\n"
    "                          stream next to each other), appended to them all or none\n";

static const char *usage_read =
    "usage: factum read STREAM [--from R] [--limit N] [--backward]\n"
    "       factum read --query QUERY [--from P] [--limit N] [--backward]\n"
    "       factum read --all [--from P] [--limit N] [--backward] [--type T] [--category C]\n"
    "                         [--correlation-id X]\n"
    "\n"
    "Prints one CloudEvent JSON per line. Revisions and positions are 0-based; --from is\n"
    "inclusive. Without --limit every matching event is printed. --query reads the events a tag\n"
    "query selects, JSON {\"items\":[{\"types\":[..],\"tags\":[..]}]} (docs/dcb.md).\n";

int cli_fail(int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("factum: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return code;
}

int cli_exit_code(int rc) {
    switch (rc) {
    case 0: return CLI_OK;
    case FACTUM_ENOTFOUND: return CLI_NOT_FOUND;
    case FACTUM_EREVISION: return CLI_WRONG_REVISION;
    case FACTUM_EUNREACHABLE: return CLI_UNREACHABLE;
    case FACTUM_EDELETED: return CLI_DELETED;
    case FACTUM_EDENIED: return CLI_DENIED;
    case FACTUM_ECONDITION: return CLI_CONDITION;
    default: return CLI_ERROR;
    }
}

int cli_report(int rc, const factum_error_t *err) {
    if (rc == FACTUM_EUNREACHABLE)
        return cli_fail(CLI_UNREACHABLE, "%s\n  start a server with `factum serve` (or `make run` in the source tree)",
                        err->message);
    return cli_fail(cli_exit_code(rc), "%s", err->message[0] ? err->message : factum_strerror(rc));
}

/* Parses a whole unsigned decimal number. */
bool cli_parse_u64(const char *s, uint64_t *out) {
    if (!s || !*s || *s == '-' || *s == '+') return false;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end) return false;
    *out = v;
    return true;
}

/* Reads a whole file (or stdin for "-") into memory. */
int cli_slurp(const char *path, char **out, size_t *len) {
    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    if (!f) return cli_fail(CLI_ERROR, "cannot open %s: %s", path, strerror(errno));
    size_t cap = 65536, n = 0;
    char *buf = malloc(cap);
    size_t k;
    while (buf && (k = fread(buf + n, 1, cap - n, f)) > 0) {
        n += k;
        if (n == cap) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb) free(buf);
            buf = nb;
        }
    }
    int bad = ferror(f);
    if (f != stdin) fclose(f);
    if (!buf) return cli_fail(CLI_ERROR, "out of memory reading %s", path);
    if (bad) {
        free(buf);
        return cli_fail(CLI_ERROR, "cannot read %s", path);
    }
    buf[n] = 0; /* there is always room: the buffer grows when full */
    *out = buf;
    *len = n;
    return 0;
}

bool cli_parse_expect(const char *s, int64_t *out) {
    uint64_t n;
    if (!strcmp(s, "any"))
        *out = FACTUM_EXPECT_ANY;
    else if (!strcmp(s, "no-stream"))
        *out = FACTUM_EXPECT_NO_STREAM;
    else if (!strcmp(s, "exists"))
        *out = FACTUM_EXPECT_EXISTS;
    else if (cli_parse_u64(s, &n) && n <= INT64_MAX)
        *out = (int64_t)n;
    else
        return false;
    return true;
}

/* Option table walking: returns the value of --name at argv[*i] ("--name V", advancing past
   V, or "--name=V"), or NULL. */
const char *cli_opt(int argc, char **argv, int *i, const char *name, int *usage_err) {
    size_t n = strlen(name);
    if (!strncmp(argv[*i], name, n) && argv[*i][n] == '=') return argv[*i] + n + 1;
    if (strcmp(argv[*i], name)) return NULL;
    if (*i + 1 >= argc) {
        cli_fail(CLI_USAGE, "%s needs a value", name);
        *usage_err = 1;
        return NULL;
    }
    return argv[++*i];
}

static int open_with(const char *dir, const factum_options_t *o, factum_t **db) {
    factum_error_t err = {0};
    int rc = factum_open(dir, o, db, &err);
    if (rc) return cli_report(rc, &err);
    /* The event schemas of the folder, as a server on it has them: appends are checked, reads upcast. */
    if ((rc = factum_schemas_open(*db, &err))) {
        factum_close(*db);
        *db = NULL;
        return cli_report(rc, &err);
    }
    return 0;
}

int cli_create(const char *dir, factum_t **db) { return open_with(dir, NULL, db); }

int cli_open(const char *dir, factum_t **db) { return cli_open_with(dir, NULL, db); }

int cli_open_with(const char *dir, const factum_options_t *o, factum_t **db) {
    /* A store is a folder with its log in it (docs/format.md: DIR/log); anything else, a
       mistyped --data-dir above all, is not one, and opening it would make one. */
    char log[FACTUM_MAX_DIR + 8];
    struct stat st;
    snprintf(log, sizeof log, "%s/log", dir);
    if (strlen(dir) <= FACTUM_MAX_DIR && (stat(log, &st) || !S_ISDIR(st.st_mode)))
        return cli_fail(CLI_NOT_FOUND, "no store at %s (only append, meta with a change, serve and tour make one)",
                        dir);
    return open_with(dir, o, db);
}

static int cmd_append(const char *dir, int argc, char **argv) {
    const char *pos[3] = {0}, *batch = NULL, *v;
    int npos = 0, bad = 0;
    int64_t expect = FACTUM_EXPECT_ANY;
    factum_event_t ev = {0};
    buf_t tags = {0}; /* the extension member "tags":"a b" of --tag */
    const char *fail_if = NULL, *streams_file = NULL;
    uint64_t after = FACTUM_AFTER_NONE;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help")) return printf("%s", usage_append), CLI_OK;
        if ((v = cli_opt(argc, argv, &i, "--id", &bad)))
            ev.id = str_c(v);
        else if ((v = cli_opt(argc, argv, &i, "--source", &bad)))
            ev.source = str_c(v);
        else if ((v = cli_opt(argc, argv, &i, "--subject", &bad)))
            ev.subject = str_c(v);
        else if ((v = cli_opt(argc, argv, &i, "--correlation-id", &bad)))
            ev.correlationid = str_c(v);
        else if ((v = cli_opt(argc, argv, &i, "--causation-id", &bad)))
            ev.causationid = str_c(v);
        else if ((v = cli_opt(argc, argv, &i, "--batch", &bad)))
            batch = v;
        else if ((v = cli_opt(argc, argv, &i, "--tag", &bad))) {
            if ((bad = cli_tag_add(&tags, v))) break;
        } else if ((v = cli_opt(argc, argv, &i, "--fail-if", &bad)))
            fail_if = v;
        else if ((v = cli_opt(argc, argv, &i, "--streams", &bad)))
            streams_file = v;
        else if ((v = cli_opt(argc, argv, &i, "--after", &bad))) {
            if (!cli_parse_u64(v, &after)) return cli_fail(CLI_USAGE, "--after takes a position, not '%s'", v);
        } else if ((v = cli_opt(argc, argv, &i, "--expect", &bad))) {
            if (!cli_parse_expect(v, &expect))
                return cli_fail(CLI_USAGE, "--expect takes any, no-stream, exists or a revision number, not '%s'", v);
        } else if (bad)
            return CLI_USAGE;
        else if (argv[i][0] == '-' && argv[i][1] == '-')
            return cli_fail(CLI_USAGE, "unknown option %s (see factum append --help)", argv[i]);
        else if (npos < 3)
            pos[npos++] = argv[i];
        else
            return cli_fail(CLI_USAGE, "too many arguments (see factum append --help)");
    }
    factum_tag_query_t *cond_q = NULL;
    if (streams_file && !bad && !npos && !batch && !tags.len)
        return cli_append_streams(dir, server_url, streams_file, fail_if, after);
    if (streams_file && !bad) bad = cli_fail(CLI_USAGE, "--streams takes no STREAM, TYPE, --batch or --tag");
    int urc = bad ? CLI_USAGE : cli_append_extras(&tags, batch != NULL, fail_if, after, &ev.extensions, &cond_q);
    if (!urc && (npos < 1 || (!batch && npos < 2) || (batch && npos > 1)))
        urc = cli_fail(CLI_USAGE, "usage: factum append STREAM TYPE [JSON|-] | factum append STREAM --batch FILE");
    if (urc) {
        buf_free(&tags);
        factum_tag_query_free(cond_q);
        return urc;
    }
    factum_condition_t cond = {cond_q ? *cond_q : (factum_tag_query_t){0}, after};
    char *text = NULL;
    size_t len = 0;
    factum_events_t *set = NULL;
    factum_error_t err = {0};
    int rc;
    const factum_event_t *events = &ev;
    size_t n = 1;
    if (batch) {
        if ((rc = cli_slurp(batch, &text, &len))) return rc;
        if ((rc = factum_events_parse(text, len, 1, &set, &err))) {
            free(text);
            return cli_report(rc, &err);
        }
        events = factum_events_get(set, 0);
        n = factum_events_count(set);
    } else {
        ev.type = str_c(pos[1]);
        if (npos == 3) {
            if (!strcmp(pos[2], "-")) {
                if ((rc = cli_slurp("-", &text, &len))) return rc;
                while (len && (text[len - 1] == '\n' || text[len - 1] == '\r'))
                    len--;
                ev.data = (factum_str_t){text, len};
            } else {
                ev.data = str_c(pos[2]);
            }
            ev.data_format = FACTUM_DATA_JSON;
            ev.datacontenttype = str_c("application/json");
        }
    }
    factum_t *db = NULL;
    factum_client_t *client = NULL;
    factum_append_result_t res;
    if (server_url) {
        if ((rc = cli_client_new(server_url, &client, &err))) {
            rc = cli_report(rc, &err);
            goto out;
        }
        rc = cond_q ? factum_client_append_if(client, pos[0], expect, events, n, &cond, &res, &err)
                    : factum_client_append(client, pos[0], expect, events, n, &res, &err);
    } else {
        if ((rc = cli_create(dir, &db))) goto out;
        rc = cond_q ? factum_append_if(db, str_c(pos[0]), expect, events, n, &cond, &res, &err)
                    : factum_append(db, str_c(pos[0]), expect, events, n, &res, &err);
    }
    if (rc)
        rc = cli_report(rc, &err);
    else {
        buf_t b = {0};
        json_escape(&b, pos[0], strlen(pos[0]));
        if (batch)
            printf("{\"stream\":%s,\"first_revision\":%llu,\"revision\":%llu,\"position\":%llu}\n", b.ptr,
                   (unsigned long long)res.first_revision, (unsigned long long)res.last_revision,
                   (unsigned long long)res.last_position);
        else
            printf("{\"stream\":%s,\"revision\":%llu,\"position\":%llu}\n", b.ptr,
                   (unsigned long long)res.last_revision, (unsigned long long)res.last_position);
        buf_free(&b);
    }
    factum_close(db);
    factum_client_free(client);
out:
    factum_events_free(set);
    free(text);
    buf_free(&tags);
    factum_tag_query_free(cond_q);
    return rc;
}

int cli_print_event(const factum_event_t *e, buf_t *line) {
    size_t need = factum_event_json(e, line->ptr, line->cap);
    if (need >= line->cap) {
        if (buf_reserve(line, need + 1)) return cli_fail(CLI_ERROR, "out of memory");
        factum_event_json(e, line->ptr, line->cap);
    }
    line->ptr[need] = '\n';
    return fwrite(line->ptr, 1, need + 1, stdout) == need + 1 ? 0 : cli_fail(CLI_ERROR, "cannot write output");
}

static int read_server(const char *stream, factum_query_t *q, uint64_t from, uint64_t limit, int backward);

/* What read and tail take: STREAM or --all, --from, the $all filters; read also --limit and
   --backward. */
typedef struct target {
    const char *stream;
    int all, backward;
    bool from_set;
    uint64_t from, limit;
    factum_query_t q;
} target;

#define HELP_SHOWN (-1)

/* 0, HELP_SHOWN, or an exit code for bad usage (already reported). */
static int parse_target(int argc, char **argv, const char *cmd, const char *usage, bool reading, target *t) {
    const char *v;
    int bad = 0;
    *t = (target){.limit = UINT64_MAX};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help")) return printf("%s", usage), HELP_SHOWN;
        if (!strcmp(argv[i], "--all"))
            t->all = 1;
        else if (reading && !strcmp(argv[i], "--backward"))
            t->backward = 1;
        else if ((v = cli_opt(argc, argv, &i, "--from", &bad))) {
            if (!cli_parse_u64(v, &t->from) && (time_parse(str_c(v), &t->q.from_time) || !t->q.from_time))
                return cli_fail(CLI_USAGE, "--from takes a number or an RFC 3339 time, not '%s'", v);
            t->from_set = true;
        } else if (reading && (v = cli_opt(argc, argv, &i, "--limit", &bad))) {
            if (!cli_parse_u64(v, &t->limit)) return cli_fail(CLI_USAGE, "--limit takes a number, not '%s'", v);
        } else if ((v = cli_opt(argc, argv, &i, "--type", &bad)))
            t->q.type = str_c(v);
        else if ((v = cli_opt(argc, argv, &i, "--category", &bad)))
            t->q.category = str_c(v);
        else if ((v = cli_opt(argc, argv, &i, "--correlation-id", &bad)))
            t->q.correlationid = str_c(v);
        else if (bad)
            return CLI_USAGE;
        else if (argv[i][0] == '-' && argv[i][1] == '-')
            return cli_fail(CLI_USAGE, "unknown option %s (see factum %s --help)", argv[i], cmd);
        else if (!t->stream)
            t->stream = argv[i];
        else
            return cli_fail(CLI_USAGE, "too many arguments (see factum %s --help)", cmd);
    }
    if (bad) return CLI_USAGE;
    if (t->all == !!t->stream)
        return cli_fail(CLI_USAGE, "usage: factum %s STREAM | factum %s --all (see --help)", cmd, cmd);
    if (t->stream && (t->q.type.len || t->q.category.len || t->q.correlationid.len))
        return cli_fail(CLI_USAGE, "--type, --category and --correlation-id filter --all, not a stream");
    if (t->q.from_time && (t->stream || t->backward)) return cli_fail(CLI_USAGE, "--from TIME reads --all forward");
    return 0;
}

static int cmd_read(const char *dir, int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (!strncmp(argv[i], "--query", 7)) return cli_read_query(dir, server_url, argc, argv);
    target t;
    int prc = parse_target(argc, argv, "read", usage_read, true, &t);
    if (prc) return prc == HELP_SHOWN ? CLI_OK : prc;
    const char *stream = t.stream;
    int backward = t.backward;
    uint64_t from = t.from, limit = t.limit;
    bool from_set = t.from_set;
    factum_query_t q = t.q;
    if (backward && !from_set) from = FACTUM_END;
    if (server_url) return read_server(stream, &q, from, limit, backward);
    factum_t *db;
    int rc = cli_open(dir, &db);
    if (rc) return rc;
    factum_error_t err = {0};
    buf_t line = {0};
    buf_reserve(&line, 4096);
    uint64_t printed = 0, end = factum_head_position(db);
    while (printed < limit && !rc) {
        factum_result_t *res;
        size_t chunk = (size_t)MIN(limit - printed, 1000);
        if (stream)
            rc = factum_read_stream(db, str_c(stream), from, chunk, backward, &res, &err);
        else {
            q.from = from, q.limit = chunk, q.backward = backward;
            rc = factum_read_all(db, &q, &res, &err);
            q.from_time = 0; /* a time places the first page; the pages after follow `next` */
        }
        if (rc) {
            rc = cli_report(rc, &err);
            break;
        }
        size_t n = factum_result_count(res);
        for (size_t i = 0; i < n && !rc; i++)
            rc = cli_print_event(factum_result_event(res, i), &line);
        printed += n;
        uint64_t next = factum_result_next(res);
        factum_result_free(res);
        /* Done when a backward read reached the start, or a forward one the end of the log. */
        if (next == FACTUM_END || (!backward && (stream ? n < chunk : next >= end))) break;
        from = next;
    }
    buf_free(&line);
    factum_close(db);
    return rc;
}

static int print_set(factum_events_t *set, buf_t *line, uint64_t *printed) {
    int rc = 0;
    for (size_t i = 0; i < factum_events_count(set) && !rc; i++, ++*printed)
        rc = cli_print_event(factum_events_get(set, i), line);
    return rc;
}

/* read in client mode: page through the server's answers. */
static int read_server(const char *stream, factum_query_t *q, uint64_t from, uint64_t limit, int backward) {
    factum_client_t *c;
    factum_error_t err = {0};
    int rc = cli_client_new(server_url, &c, &err);
    if (rc) return cli_report(rc, &err);
    buf_t line = {0};
    uint64_t printed = 0;
    while (printed < limit && !rc) {
        factum_events_t *set;
        uint64_t next;
        q->from = from, q->limit = (size_t)MIN(limit - printed, 10000), q->backward = backward;
        if ((rc = factum_client_read(c, stream, q, &set, &next, &err))) {
            rc = cli_report(rc, &err);
            break;
        }
        q->from_time = 0; /* a time places the first page; the pages after follow `next` */
        rc = print_set(set, &line, &printed);
        factum_events_free(set);
        if (next == FACTUM_END) break;
        from = next;
    }
    buf_free(&line);
    factum_client_free(c);
    return rc;
}

static int tail_print(void *ctx, const factum_event_t *e) {
    if (!e) return 0; /* caught up */
    int rc = cli_print_event(e, ctx);
    fflush(stdout);
    return rc;
}

static int cmd_tail(const char *dir, int argc, char **argv) {
    target t;
    int prc = parse_target(argc, argv, "tail", usage_tail, false, &t);
    if (prc) return prc == HELP_SHOWN ? CLI_OK : prc;
    const char *stream = t.stream;
    factum_query_t q = t.q;
    q.from = t.from_set ? t.from : FACTUM_END;
    factum_error_t err = {0};
    buf_t line = {0};
    int rc;
    if (server_url) {
        factum_client_t *c;
        if ((rc = cli_client_new(server_url, &c, &err)) == 0)
            rc = factum_client_subscribe(c, stream, &q, tail_print, &line, &err);
        factum_client_free(c);
        if (rc) rc = cli_report(rc, &err);
        buf_free(&line);
        return rc;
    }
    /* Embedded: read from a cursor, then wait for the next commit. */
    factum_t *db;
    if ((rc = cli_open(dir, &db))) return rc;
    uint64_t from = q.from_time ? factum_position_at(db, q.from_time) : q.from;
    q.from_time = 0;
    if (from == FACTUM_END)
        from = stream ? (uint64_t)(factum_stream_revision(db, str_c(stream)) + 1) : factum_head_position(db);
    while (!rc) {
        uint64_t head = factum_head_position(db);
        factum_result_t *res;
        if (stream)
            rc = factum_read_stream(db, str_c(stream), from, 1000, 0, &res, &err);
        else {
            q.from = from, q.limit = 1000;
            rc = factum_read_all(db, &q, &res, &err);
        }
        if (rc == FACTUM_ENOTFOUND)
            rc = 0, res = NULL;
        else if (rc) {
            rc = cli_report(rc, &err);
            break;
        }
        for (size_t i = 0; i < factum_result_count(res) && !rc; i++)
            rc = tail_print(&line, factum_result_event(res, i));
        if (res) from = factum_result_next(res);
        size_t n = factum_result_count(res);
        factum_result_free(res);
        if (n < 1000) factum_wait(db, head, 1000);
    }
    buf_free(&line);
    factum_close(db);
    return rc;
}

static int cmd_schedule(int argc, char **argv) {
    const char *pos[4] = {0}, *cancel = NULL, *id = NULL, *v;
    int npos = 0, bad = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help")) return printf("%s", usage_schedule), CLI_OK;
        if ((v = cli_opt(argc, argv, &i, "--cancel", &bad)))
            cancel = v;
        else if ((v = cli_opt(argc, argv, &i, "--id", &bad)))
            id = v;
        else if (bad)
            return CLI_USAGE;
        else if (argv[i][0] == '-' && argv[i][1] == '-')
            return cli_fail(CLI_USAGE, "unknown option %s (see factum schedule --help)", argv[i]);
        else if (npos < 4)
            pos[npos++] = argv[i];
        else
            return cli_fail(CLI_USAGE, "too many arguments (see factum schedule --help)");
    }
    if (!server_url) return cli_fail(CLI_USAGE, "timers are kept by the server: give --server URL (or set FACTUM_URL)");
    if (!cancel && npos < 3) return cli_fail(CLI_USAGE, "usage: factum schedule AT STREAM TYPE [JSON] | --cancel ID");
    if (cancel && npos) return cli_fail(CLI_USAGE, "--cancel takes only the schedule id");
    factum_client_t *c;
    factum_error_t err = {0};
    int rc = cli_client_new(server_url, &c, &err);
    if (rc) return cli_report(rc, &err);
    if (cancel) {
        if (!(rc = factum_client_cancel_schedule(c, cancel, &err)))
            printf("{\"id\":\"%s\",\"state\":\"cancelled\"}\n", cancel);
        else
            rc = cli_report(rc, &err);
        factum_client_free(c);
        return rc;
    }
    int64_t at;
    uint64_t secs;
    if (pos[0][0] == '+' && cli_parse_u64(pos[0] + 1, &secs))
        at = clock_realtime_us() + (int64_t)secs * 1000000;
    else if (time_parse(str_c(pos[0]), &at)) {
        factum_client_free(c);
        return cli_fail(CLI_USAGE, "AT must be an RFC 3339 time or +SECONDS, not '%s'", pos[0]);
    }
    char *text = NULL;
    size_t len = 0;
    factum_event_t ev = {.type = str_c(pos[2]), .id = str_c(id)};
    if (npos == 4) {
        if (!strcmp(pos[3], "-")) {
            if ((rc = cli_slurp("-", &text, &len))) {
                factum_client_free(c);
                return rc;
            }
            ev.data = (factum_str_t){text, len};
        } else {
            ev.data = str_c(pos[3]);
        }
        ev.data_format = FACTUM_DATA_JSON;
    }
    char sid[37], at_text[32];
    if ((rc = factum_client_schedule(c, at, pos[1], &ev, sid, &err)))
        rc = cli_report(rc, &err);
    else {
        time_format_rfc3339(at, at_text);
        printf("{\"id\":\"%s\",\"at\":\"%s\"}\n", sid, at_text);
    }
    free(text);
    factum_client_free(c);
    return rc;
}

/* The options every command takes wherever they stand on the line (before or after the
   command, as natscli and kcat take theirs). take_globals removes them from argv. */
typedef struct globals {
    const char *dir, *url, *token, *cacert; /* given on the line, or NULL */
    bool help, version;
} globals;

static int take_globals(int *argc, char **argv, globals *g) {
    int kept = 1, bad = 0;
    for (int i = 1; i < *argc; i++) {
        const char *v;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
            g->help = true;
        else if (!strcmp(argv[i], "--version"))
            g->version = true;
        else if ((v = cli_opt(*argc, argv, &i, "--data-dir", &bad)))
            g->dir = v;
        else if ((v = cli_opt(*argc, argv, &i, "--server", &bad)))
            g->url = v;
        else if ((v = cli_opt(*argc, argv, &i, "--token", &bad)))
            g->token = v;
        else if ((v = cli_opt(*argc, argv, &i, "--cacert", &bad)))
            g->cacert = v;
        else if (bad)
            return CLI_USAGE;
        else
            argv[kept++] = argv[i];
    }
    if ((g->dir && !*g->dir) || (g->url && !*g->url) || (g->cacert && !*g->cacert))
        return cli_fail(CLI_USAGE, "--data-dir, --server and --cacert need a value");
    *argc = kept;
    argv[kept] = NULL;
    return 0;
}

/* Commands that work on a data folder only: --server makes no sense for them. */
static bool local_only(const char *cmd) {
    return !strcmp(cmd, "serve") || !strcmp(cmd, "check") || !strcmp(cmd, "tour") || !strcmp(cmd, "bench") ||
           !strcmp(cmd, "config") || !strcmp(cmd, "restore");
}

int main(int argc, char **argv) {
    globals g = {0};
    int rc = take_globals(&argc, argv, &g);
    if (rc) return rc;
    if (g.version) return printf("factum %s\n", FACTUM_VERSION), CLI_OK;
    if (argc < 2) {
        fprintf(g.help ? stdout : stderr, "%s", usage_main);
        return g.help ? CLI_OK : CLI_USAGE;
    }
    if (g.help) {
        /* COMMAND ... --help: the command's help and nothing else, wherever --help stood. Every
           command answers argv[1] == "--help" with its usage before anything else. There is
           room: take_globals took at least that --help out of the array. */
        memmove(argv + 3, argv + 2, (size_t)(argc - 2) * sizeof *argv);
        argv[2] = "--help";
        argv[++argc] = NULL;
    } else if (g.dir && g.url) {
        return cli_fail(CLI_USAGE,
                        "--data-dir and --server both given: a command works on a data folder or talks to a server");
    } else if (g.url && local_only(argv[1])) {
        return cli_fail(CLI_USAGE, "factum %s works on a data folder: give --data-dir, not --server", argv[1]);
    }
    /* An explicit option wins over the environment: --data-dir over $FACTUM_URL, --server over
       $FACTUM_DATA_DIR. With neither, $FACTUM_URL (client mode) before $FACTUM_DATA_DIR. */
    const char *env_url = getenv("FACTUM_URL"), *env_dir = getenv("FACTUM_DATA_DIR");
    server_url = g.url ? g.url : !g.dir && env_url && *env_url ? env_url : NULL;
    const char *env_token = getenv("FACTUM_TOKEN");
    cli_token = g.token ? g.token : env_token && *env_token ? env_token : NULL;
    const char *dir = g.dir ? g.dir : env_dir && *env_dir ? env_dir : "./factum-data";
    const char *env_ca = getenv("FACTUM_CACERT");
    cli_cacert = g.cacert ? g.cacert : env_ca && *env_ca ? env_ca : NULL;
    const char *cmd = argv[1];
    argc -= 1, argv += 1;
    if (!strcmp(cmd, "append")) return cmd_append(dir, argc, argv);
    if (!strcmp(cmd, "read")) return cmd_read(dir, argc, argv);
    if (!strcmp(cmd, "tail")) return cmd_tail(dir, argc, argv);
    if (!strcmp(cmd, "schedule") && argc > 1 && !strcmp(argv[1], "ls"))
        return cli_schedule_ls(dir, server_url, argc - 1, argv + 1);
    if (!strcmp(cmd, "schedule")) return cmd_schedule(argc, argv);
    if (!strcmp(cmd, "streams")) return cli_list(dir, server_url, false, argc, argv);
    if (!strcmp(cmd, "categories")) return cli_list(dir, server_url, true, argc, argv);
    if (!strcmp(cmd, "group")) return cli_group(server_url, argc, argv);
    if (!strcmp(cmd, "projection")) return cli_projection(server_url, argc, argv);
    if (!strcmp(cmd, "connector")) return cli_connector(server_url, argc, argv);
    if (!strcmp(cmd, "saga")) return cli_saga(server_url, argc, argv);
    if (!strcmp(cmd, "schema")) return cli_schema(server_url, argc, argv);
    if (!strcmp(cmd, "meta")) return cli_meta(dir, server_url, argc, argv);
    if (!strcmp(cmd, "delete")) return cli_delete(dir, server_url, argc, argv);
    if (!strcmp(cmd, "admin")) return cli_admin(dir, server_url, argc, argv);
    if (!strcmp(cmd, "key")) return cli_key(dir, server_url, argc, argv);
    if (!strcmp(cmd, "check")) return cli_check(dir, argc, argv);
    if (!strcmp(cmd, "backup")) return cli_backup(dir, server_url, argc, argv);
    if (!strcmp(cmd, "restore")) return cli_restore(argc, argv);
    if (!strcmp(cmd, "serve")) return cli_serve(dir, g.dir || (env_dir && *env_dir), argc, argv);
    if (!strcmp(cmd, "config")) return cli_config(argc, argv);
    if (!strcmp(cmd, "tour")) return cli_tour(dir, argc, argv);
    if (!strcmp(cmd, "bench")) return cli_bench(argc, argv);
    if (cmd[0] == '-') return cli_fail(CLI_USAGE, "unknown option %s (see factum --help)", cmd);
    return cli_fail(CLI_USAGE, "unknown command '%s' (see factum --help)", cmd);
}
