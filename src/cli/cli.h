/*
 * cli.h — shared pieces of the `factum` command: exit codes, error reporting, helpers.
 * The commands use the public API (include/factum.h) and the base layer only.
 */
#ifndef FACTUM_CLI_H
#define FACTUM_CLI_H

#include "../base/base.h"
#include "../base/json.h"
#include "factum_client.h"

#include <stdatomic.h>

enum {
    CLI_OK = 0,
    CLI_ERROR = 1,
    CLI_USAGE = 2,
    CLI_NOT_FOUND = 3,
    CLI_WRONG_REVISION = 4,
    CLI_UNREACHABLE = 5,
    CLI_DELETED = 6,
    CLI_DENIED = 7,
    CLI_CONDITION = 8
};

/* Prints "factum: MESSAGE" on stderr and returns code. */
int cli_fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The exit code for a FACTUM_E* code. */
int cli_exit_code(int rc);
/* Reports a library error on stderr; returns its exit code. */
int cli_report(int rc, const factum_error_t *err);
bool cli_parse_u64(const char *s, uint64_t *out);
/* An expected revision: any, no-stream, exists or a revision N. */
bool cli_parse_expect(const char *s, int64_t *out);
/* The value of option `name` at argv[*i], as "--name V" (advancing past V) or "--name=V", or
   NULL; a missing value prints the usage error and sets *usage_err. */
const char *cli_opt(int argc, char **argv, int *i, const char *name, int *usage_err);
/* The whole of a file (or stdin for "-"), NUL-terminated; prints the error. */
int cli_slurp(const char *path, char **out, size_t *len);
/* Opens the store in dir; a folder that holds none is exit 3, "no store at DIR": reads (and
   every command but the few that write) never make one. Prints the error. */
int cli_open(const char *dir, factum_t **db);
/* Opens the store in dir, making it if missing: for the commands that write (append, meta with
   a change, serve, tour). Prints the error. */
int cli_create(const char *dir, factum_t **db);
/* cli_open with options (o may be NULL). */
int cli_open_with(const char *dir, const factum_options_t *o, factum_t **db);
/* Prints one event as a JSON line on stdout, using line as scratch. */
int cli_print_event(const factum_event_t *e, buf_t *line);

/* The CA certificates for https:// servers (--cacert, or $FACTUM_CACERT), or NULL: the system's;
   the API key to send (--token, or $FACTUM_TOKEN), or NULL. */
extern const char *cli_cacert, *cli_token;
/* A client of the server at url, set up with the global options (cli_cacert, cli_token). */
struct factum_client;
int cli_client_new(const char *url, struct factum_client **out, factum_error_t *err);

/* One request against the server at url; prints the answer (an array one element per line when
   `lines`), or reports the error. A CLI_* code. */
int cli_call(const char *url, const char *method, const char *path, const char *body, bool lines);
/* The same for an ack or nack batch: exit 1 when the answer lists ids it did not take. */
int cli_call_batch(const char *url, const char *path, const char *body);
/* GET of a listing page, printed a line per item; counts them into *count and puts the last
   one's string `member` into *last (to continue after it). */
int cli_call_list(const char *url, const char *path, const char *member, buf_t *last, size_t *count);
/* `factum KIND apply FILE [--name NAME]` (argv[2] the file): PUT of the file's JSON to
   PREFIX NAME, NAME the file's name without .json unless --name; names longer than max_name
   are refused. A CLI_* code. */
int cli_apply_file(const char *url, const char *prefix, const char *kind, size_t max_name, int argc, char **argv);

/* dcb.c (docs/dcb.md): append's --tag and --fail-if, turned into the event's extension
   member (*ext, the text of tags; refused with --batch, whose events carry their own) and the
   condition's query (*q, or NULL); a CLI_* usage code, reported. */
int cli_append_extras(buf_t *tags, bool batch, const char *fail_if, uint64_t after, factum_str_t *ext,
                      factum_tag_query_t **q);
/* Adds one --tag to the member's text being built in tags; CLI_USAGE (reported) for a bad one. */
int cli_tag_add(buf_t *tags, const char *tag);
/* factum append --streams FILE [--fail-if QUERY [--after P]]: a multi-stream append, embedded or
   against url; prints {"first_position", "position", "streams": [...]}. */
int cli_append_streams(const char *dir, const char *url, const char *file, const char *fail_if, uint64_t after);
/* factum read --query QUERY [--from P] [--limit N] [--backward], embedded or against url. */
int cli_read_query(const char *dir, const char *url, int argc, char **argv);
/* dir_given: --data-dir or $FACTUM_DATA_DIR named dir (a configuration file's data-dir yields to them). */
int cli_serve(const char *dir, bool dir_given, int argc, char **argv);
int cli_projection(const char *url, int argc, char **argv);
int cli_connector(const char *url, int argc, char **argv);
int cli_saga(const char *url, int argc, char **argv);
int cli_schema(const char *url, int argc, char **argv);
/* check.c: factum check [--repair [--truncate-at P]] [--json] */
int cli_check(const char *dir, int argc, char **argv);
/* backup.c: factum backup --to DIR [--verify] (embedded, or against url), factum restore BACKUP --to DIR */
int cli_backup(const char *dir, const char *url, int argc, char **argv);
int cli_restore(int argc, char **argv);
int cli_group(const char *url, int argc, char **argv);
/* schedule.c: factum schedule ls [--state S] [--after ID] [--limit N], embedded or against url */
int cli_schedule_ls(const char *dir, const char *url, int argc, char **argv);
int cli_meta(const char *dir, const char *url, int argc, char **argv);
/* `factum streams` (categories false) and `factum categories` (streams.c). */
int cli_list(const char *dir, const char *url, bool categories, int argc, char **argv);
int cli_delete(const char *dir, const char *url, int argc, char **argv);
int cli_admin(const char *dir, const char *url, int argc, char **argv);
/* archive.c: factum admin archive [--run] [--archive-dir DIR] [--archive-after S], embedded or against url */
int cli_admin_archive(const char *dir, const char *url, int argc, char **argv);
int cli_tour(const char *dir, int argc, char **argv);
/* key.c: factum key create|ls|revoke, on the data folder or against url */
int cli_key(const char *dir, const char *url, int argc, char **argv);
int cli_bench(int argc, char **argv);
int cli_bench_scavenge(int argc, char **argv);
int cli_bench_backup(int argc, char **argv);
/* bench_archive.c: factum bench archive [--quick] [--dir DIR] [--archive DIR] [--mib N] */
int cli_bench_archive(int argc, char **argv);
int cli_bench_listing(int argc, char **argv);
int cli_bench_dcb(int argc, char **argv); /* bench_dcb.c: conditional appends, tag reads (docs/bench.md) */
/* bench_scavenge.c: fills db with about `bytes` of 200-byte events (4 writers, batches of 100,
   to streams keep-N and drop-N); the appends/s and latency of 16 writers (1 event each) until
   *stop, set by the caller or when `seconds` have passed or once *until is set. */
typedef struct bench_figures {
    double rate, p50, p99, seconds;
} bench_figures;
void bench_fill(factum_t *db, uint64_t bytes);
bench_figures bench_run_load(factum_t *db, _Atomic bool *stop, double seconds, _Atomic bool *until);

#endif
