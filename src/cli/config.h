/*
 * config.h — the options of `factum serve`, from a configuration file, the environment and the
 * command line (config.c).
 */
#ifndef FACTUM_CLI_CONFIG_H
#define FACTUM_CLI_CONFIG_H

#include "cli.h"

#include "../base/log.h"
#include "../cluster/cluster.h"
#include "../server/server.h"

#include <stdio.h>

#define SERVE_MAX_NAMES 16 /* cors-origin and public-host values, each */

/* Where a value came from, in the order they are read (a later one overrides). */
enum { SERVE_FROM_FILE = 1, SERVE_FROM_ENV, SERVE_FROM_FLAG };
/* serve_option's answers. */
enum { SERVE_OPT_OK = 0, SERVE_OPT_BAD = -1, SERVE_OPT_UNKNOWN = 1 };

typedef struct serve_kept {
    struct serve_kept *next;
    char s[];
} serve_kept;

typedef struct serve_options {
    server_config cfg;
    uint64_t segment_bytes;
    const char *projections_dir;
    const char *archive_dir;  /* --archive-dir: sealed segments move there when --archive-after old */
    uint64_t archive_after_s; /* --archive-after */
    const char *data_dir;     /* from the file: used when neither --data-dir nor $FACTUM_DATA_DIR is given */
    const char *origins[SERVE_MAX_NAMES], *hosts[SERVE_MAX_NAMES];
    cluster_config cluster; /* --cluster, --node, --advertise, --cluster-stream (docs/cluster.md) */
    log_level log_level;    /* --log-level, --log-format: log_setup's */
    bool log_json;
    int names_source[2]; /* the source that set cors-origin, public-host: another one replaces the list */
    serve_kept *kept;    /* the strings the options point into */
} serve_options;

void serve_options_init(serve_options *o);
void serve_options_free(serve_options *o);
/* Sets option `name` (without --) to v (NULL: a flag given without a value) from source:
   SERVE_OPT_OK, SERVE_OPT_UNKNOWN, or SERVE_OPT_BAD with the reason in why. */
int serve_option(serve_options *o, int source, const char *name, const char *v, char *why, size_t cap);
/* Reads a configuration file; each error is reported as "FILE:LINE: why" on report. Returns the
   number of errors, or -1 when the file cannot be read. */
int serve_options_file(serve_options *o, const char *path, FILE *report);
/* Reads FACTUM_<NAME> for every option (FACTUM_MAX_BODY); returns the number of errors reported. */
int serve_options_env(serve_options *o, FILE *report);
/* What the options say together (tls-cert with tls-key, origins' shape): SERVE_OPT_BAD with why. */
int serve_options_check(const serve_options *o, char *why, size_t cap);
/* factum config check FILE */
int cli_config(int argc, char **argv);

#endif
