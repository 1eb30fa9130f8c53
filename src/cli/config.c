/*
 * config.c — the options of `factum serve` and where they come from. Every option has one name
 * ("max-body") that is the same in three places, read in this order, each overriding the one
 * before: a configuration file (`--config FILE`, INI read by libinih: `name = value` lines,
 * optionally under a `[serve]` section), the environment (FACTUM_MAX_BODY), and the command
 * line (--max-body). One function (serve_option) checks and sets a value whatever its source,
 * so a value means the same and is refused with the same words everywhere; a refusal names
 * where the value came from (FILE:LINE, the variable, or the flag). `factum config check FILE`
 * runs the file through the same function and reports every error with its line.
 */
#include "config.h"

#include "../base/log.h"
#include "../sys/pool.h"

#include <errno.h>
#include <ini.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Every option a file or the environment may set (the flags are the same names with --). */
static const char *const names[] = {"listen",
                                    "data-dir",
                                    "max-body",
                                    "loops",
                                    "header-timeout",
                                    "body-timeout",
                                    "idle-timeout",
                                    "heartbeat",
                                    "sub-buffer",
                                    "max-connections",
                                    "max-connections-per-address",
                                    "max-memory",
                                    "scavenge-every",
                                    "segment-bytes",
                                    "archive-dir",
                                    "archive-after",
                                    "max-groups",
                                    "max-projections",
                                    "max-sagas",
                                    "max-schedules",
                                    "definition-threads",
                                    "key-max-appends-per-second",
                                    "key-max-bytes-per-second",
                                    "cors-origin",
                                    "public-host",
                                    "tls-cert",
                                    "tls-key",
                                    "projections-dir",
                                    "insecure",
                                    "access-log",
                                    "access-log-format",
                                    "slow-request-ms",
                                    "log-level",
                                    "log-format",
                                    "cluster",
                                    "node",
                                    "advertise",
                                    "cluster-stream"};

void serve_options_init(serve_options *o) {
    memset(o, 0, sizeof *o);
    o->cfg.version = FACTUM_VERSION;
    o->cfg.scavenge_every_s = 3600;
    o->cfg.slow_request_ms = 1000;
    o->log_level = LOG_LEVEL_INFO;
    o->cfg.cors_origins = o->origins;
    o->cfg.public_hosts = o->hosts;
}

void serve_options_free(serve_options *o) {
    while (o->kept) {
        serve_kept *k = o->kept;
        o->kept = k->next;
        free(k);
    }
}

/* A copy of s that lives as long as o. */
static char *keep(serve_options *o, const char *s) {
    size_t n = strlen(s) + 1;
    serve_kept *k = malloc(sizeof *k + n);
    if (!k) return NULL;
    memcpy(k->s, s, n);
    k->next = o->kept;
    o->kept = k;
    return k->s;
}

static int refuse(char *why, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int refuse(char *why, size_t cap, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, cap, fmt, ap);
    va_end(ap);
    return SERVE_OPT_BAD;
}

/* The comma-separated values of v into list (at most SERVE_MAX_NAMES); a source sets the whole
   list, replacing what an earlier source set, and adds to it when it repeats the option. */
static int set_names(serve_options *o, int source, int which, const char *name, const char *v, char *why, size_t cap) {
    const char **list = which ? o->hosts : o->origins;
    size_t *n = which ? &o->cfg.npublic_hosts : &o->cfg.ncors_origins;
    if (o->names_source[which] != source) *n = 0, o->names_source[which] = source;
    char *copy = keep(o, v);
    if (!copy) return refuse(why, cap, "out of memory");
    size_t added = 0;
    bool bad = !*v || *v == ',' || v[strlen(v) - 1] == ',' || strstr(v, ",,");
    for (char *save = NULL, *tok = strtok_r(copy, ",", &save); tok && !bad; tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ')
            tok++;
        bad = *n == SERVE_MAX_NAMES || !*tok || strlen(tok) > 255;
        if (!bad) list[(*n)++] = tok, added++;
    }
    if (bad || !added)
        return refuse(why, cap, "%s wants up to %d non-empty values of at most 255 bytes (got '%s')", name,
                      SERVE_MAX_NAMES, v);
    return SERVE_OPT_OK;
}

int serve_option(serve_options *o, int source, const char *opt, const char *v, char *why, size_t cap) {
    char name[64]; /* how the source spells it, for the message */
    snprintf(name, sizeof name, "%s%s", source == SERVE_FROM_FLAG ? "--" : "", opt);
    server_config *cfg = &o->cfg;
    if (!strcmp(opt, "insecure")) {
        if (!v || !strcmp(v, "true") || !strcmp(v, "1") || !strcmp(v, "yes"))
            cfg->insecure = true;
        else if (!strcmp(v, "false") || !strcmp(v, "0") || !strcmp(v, "no"))
            cfg->insecure = false;
        else
            return refuse(why, cap, "%s is true or false (got '%s')", name, v);
        return SERVE_OPT_OK;
    }
    bool known = false;
    for (size_t i = 0; i < ARRAY_LEN(names) && !known; i++)
        known = !strcmp(opt, names[i]);
    if (!known) return SERVE_OPT_UNKNOWN;
    if (!v) return refuse(why, cap, "%s needs a value", name);
    if (!strcmp(opt, "cors-origin") || !strcmp(opt, "public-host"))
        return set_names(o, source, opt[0] == 'p', name, v, why, cap);
    if (!strcmp(opt, "access-log-format") || !strcmp(opt, "log-format")) {
        bool json = !strcmp(v, "json");
        if (!json && strcmp(v, opt[0] == 'a' ? "common" : "text"))
            return refuse(why, cap, "%s is %s or json (got '%s')", name, opt[0] == 'a' ? "common" : "text", v);
        *(opt[0] == 'a' ? &cfg->access_json : &o->log_json) = json;
        return SERVE_OPT_OK;
    }
    if (!strcmp(opt, "log-level")) {
        if (!log_level_parse(v, &o->log_level))
            return refuse(why, cap, "%s is error, warn, info or debug (got '%s')", name, v);
        return SERVE_OPT_OK;
    }
    if (!strcmp(opt, "slow-request-ms")) {
        uint64_t ms;
        if (!cli_parse_u64(v, &ms) || ms > 3600000)
            return refuse(why, cap, "%s wants milliseconds from 0 (never) to 3600000 (got '%s')", name, v);
        cfg->slow_request_ms = (uint32_t)ms;
        return SERVE_OPT_OK;
    }
    if (!strcmp(opt, "archive-after")) {
        uint64_t s;
        if (!cli_parse_u64(v, &s) || s > FACTUM_MAX_ARCHIVE_AFTER_S)
            return refuse(why, cap, "%s wants seconds from 0 (as soon as a segment is sealed) to %llu (got '%s')", name,
                          (unsigned long long)FACTUM_MAX_ARCHIVE_AFTER_S, v);
        o->archive_after_s = s;
        return SERVE_OPT_OK;
    }
    const char **str = !strcmp(opt, "listen")            ? &cfg->listen
                       : !strcmp(opt, "access-log")      ? &cfg->access_log
                       : !strcmp(opt, "tls-cert")        ? &cfg->tls_cert
                       : !strcmp(opt, "tls-key")         ? &cfg->tls_key
                       : !strcmp(opt, "projections-dir") ? &o->projections_dir
                       : !strcmp(opt, "data-dir")        ? &o->data_dir
                       : !strcmp(opt, "archive-dir")     ? &o->archive_dir
                       : !strcmp(opt, "cluster")         ? &o->cluster.urls
                       : !strcmp(opt, "node")            ? &o->cluster.node
                       : !strcmp(opt, "advertise")       ? &o->cluster.advertise
                       : !strcmp(opt, "cluster-stream")  ? &o->cluster.stream
                                                         : NULL;
    if (str) {
        if (!*v) return refuse(why, cap, "%s needs a value", name);
        if (!(*str = keep(o, v))) return refuse(why, cap, "out of memory");
        return SERVE_OPT_OK;
    }
    uint64_t n = 0;
    if (!strcmp(opt, "key-max-appends-per-second") || !strcmp(opt, "key-max-bytes-per-second")) {
        auth_limit l = opt[8] == 'a' ? AUTH_LIMIT_APPENDS : AUTH_LIMIT_BYTES;
        if (!cli_parse_u64(v, &n) || n > (uint64_t)auth_limit_max(l))
            return refuse(why, cap, "%s wants a whole number from 0 (no limit) to %lld (got '%s')", name,
                          (long long)auth_limit_max(l), v);
        cfg->key_max_per_second[l] = n;
        return SERVE_OPT_OK;
    }
    bool zero_ok = !strcmp(opt, "scavenge-every"), wide = !strcmp(opt, "max-memory");
    if (!cli_parse_u64(v, &n) || (n == 0 && !zero_ok) || n > (wide ? (1ull << 50) : UINT32_MAX))
        return refuse(why, cap, "%s wants a %s number (got '%s')", name, zero_ok ? "whole" : "positive", v);
    if (!strcmp(opt, "max-body"))
        cfg->max_body = n;
    else if (!strcmp(opt, "loops"))
        cfg->loops = (int)MIN(n, 64);
    else if (!strcmp(opt, "header-timeout"))
        cfg->header_timeout_ms = (uint32_t)n;
    else if (!strcmp(opt, "body-timeout"))
        cfg->body_timeout_ms = (uint32_t)n;
    else if (!strcmp(opt, "idle-timeout"))
        cfg->idle_timeout_ms = (uint32_t)n;
    else if (!strcmp(opt, "heartbeat"))
        cfg->heartbeat_ms = (uint32_t)n;
    else if (!strcmp(opt, "sub-buffer"))
        cfg->sub_buffer = n;
    else if (!strcmp(opt, "max-connections"))
        cfg->max_connections = (uint32_t)n;
    else if (!strcmp(opt, "max-connections-per-address"))
        cfg->max_per_address = (uint32_t)n;
    else if (!strcmp(opt, "max-memory"))
        cfg->max_memory = n;
    else if (!strcmp(opt, "scavenge-every"))
        cfg->scavenge_every_s = n;
    else if (!strcmp(opt, "segment-bytes"))
        o->segment_bytes = n;
    else if (!strcmp(opt, "max-groups"))
        cfg->max_groups = n;
    else if (!strcmp(opt, "max-projections"))
        cfg->max_projections = n;
    else if (!strcmp(opt, "max-sagas"))
        cfg->max_sagas = n;
    else if (!strcmp(opt, "max-schedules"))
        cfg->max_schedules = n;
    else if (n > POOL_MAX_WORKERS) /* definition-threads */
        return refuse(why, cap, "%s takes 1 to %d (got '%s')", name, POOL_MAX_WORKERS, v);
    else
        cfg->definition_threads = (int)n;
    return SERVE_OPT_OK;
}

/* ---- the file ---- */

typedef struct file_read {
    serve_options *o;
    FILE *f, *report;
    const char *path;
    int line;     /* of the line libinih has at hand */
    int errors;   /* reported */
    int reported; /* the line of the last error reported (libinih's own errors are lines too) */
    char *buf;
    size_t cap;
} file_read;

static void file_error(file_read *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void file_error(file_read *r, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(r->report, "%s:%d: ", r->path, r->line);
    vfprintf(r->report, fmt, ap);
    fputc('\n', r->report);
    va_end(ap);
    r->errors++;
    r->reported = r->line;
}

/* libinih's reader: one line at a time, so that the handler knows its number. A line longer than
   libinih's buffer would be cut in two: it is an error, and libinih gets an empty line instead. */
static char *read_line(char *str, int num, void *stream) {
    file_read *r = stream;
    ssize_t n = getline(&r->buf, &r->cap, r->f);
    if (n < 0) return NULL;
    r->line++;
    if (n >= num) {
        file_error(r, "the line is longer than %d bytes", num - 1);
        str[0] = '\n', str[1] = 0;
        return str;
    }
    memcpy(str, r->buf, (size_t)n + 1);
    return str;
}

static int on_value(void *user, const char *section, const char *name, const char *value) {
    file_read *r = user;
    char why[400];
    if (*section && strcmp(section, "serve")) {
        file_error(r, "unknown section [%s]: options go at the top or under [serve]", section);
        return 1;
    }
    int rc = serve_option(r->o, SERVE_FROM_FILE, name, value, why, sizeof why);
    if (rc == SERVE_OPT_UNKNOWN)
        file_error(r, "unknown option '%s' (factum serve --help lists them)", name);
    else if (rc)
        file_error(r, "%s", why);
    return 1; /* go on: every error is reported */
}

int serve_options_file(serve_options *o, const char *path, FILE *report) {
    file_read r = {.o = o, .report = report, .path = path};
    if (!(r.f = fopen(path, "r"))) {
        fprintf(report, "%s: cannot open: %s\n", path, strerror(errno));
        return -1;
    }
    int bad = ini_parse_stream(read_line, &r, on_value, &r);
    /* libinih's own refusals (a line that is not `name = value` nor a [section]) come back as
       the first such line's number; later ones are not counted, and it goes on after them. */
    if (bad > 0 && bad != r.reported) {
        r.line = bad;
        file_error(&r, "not a 'name = value' line nor a [section]");
    }
    free(r.buf);
    fclose(r.f);
    return r.errors;
}

/* ---- the environment ---- */

int serve_options_env(serve_options *o, FILE *report) {
    int errors = 0;
    for (size_t i = 0; i < ARRAY_LEN(names); i++) {
        if (!strcmp(names[i], "data-dir")) continue; /* FACTUM_DATA_DIR is every command's (main.c) */
        char var[80], why[400];
        int n = snprintf(var, sizeof var, "FACTUM_");
        for (const char *p = names[i]; *p; p++)
            var[n++] = *p == '-' ? '_' : (char)(*p - 'a' + 'A');
        var[n] = 0;
        const char *v = getenv(var);
        if (!v || !*v) continue;
        int rc = serve_option(o, SERVE_FROM_ENV, names[i], v, why, sizeof why);
        if (rc) fprintf(report, "$%s: %s\n", var, why), errors++;
    }
    return errors;
}

/* ---- what the options say together ---- */

int serve_options_check(const serve_options *o, char *why, size_t cap) {
    const server_config *cfg = &o->cfg;
    for (size_t k = 0; k < cfg->ncors_origins; k++) { /* an Origin is scheme://host[:port], nothing after */
        const char *v = o->origins[k], *rest = !strncmp(v, "http://", 7)    ? v + 7
                                               : !strncmp(v, "https://", 8) ? v + 8
                                                                            : NULL;
        if (!rest || !*rest || strpbrk(rest, "/?# "))
            return refuse(
                why, cap,
                "--cors-origin (cors-origin in a file) wants an origin like https://app.example.com:8443 (got '%s')",
                v);
    }
    if (!o->cluster.urls != !o->cluster.node)
        return refuse(why, cap, "--cluster and --node go together (see docs/cluster.md)");
    if (!cfg->tls_cert != !cfg->tls_key)
        return refuse(why, cap, "--tls-cert and --tls-key go together (tls-cert and tls-key in a file; got only %s)",
                      cfg->tls_cert ? "tls-cert" : "tls-key");
    return SERVE_OPT_OK;
}

/* ---- factum config check FILE ---- */

static const char *usage_config = "usage: factum config check FILE\n"
                                  "\n"
                                  "Reads a configuration file of `factum serve` (what --config takes) and\n"
                                  "reports every error with its line: unknown options and sections, values\n"
                                  "out of range, lines that are not `name = value`. Exit 0 when the file is\n"
                                  "good, 1 when it is not.\n";

int cli_config(int argc, char **argv) {
    if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) return printf("%s", usage_config), CLI_OK;
    if (argc != 3 || strcmp(argv[1], "check")) {
        fprintf(stderr, "%s", usage_config);
        return CLI_USAGE;
    }
    serve_options o;
    serve_options_init(&o);
    int errors = serve_options_file(&o, argv[2], stderr);
    char why[400];
    if (errors == 0 && serve_options_check(&o, why, sizeof why)) {
        fprintf(stderr, "%s: %s\n", argv[2], why);
        errors = 1;
    }
    serve_options_free(&o);
    if (errors < 0) return CLI_ERROR;
    if (errors) return cli_fail(CLI_ERROR, "%s: %d error%s", argv[2], errors, errors == 1 ? "" : "s");
    printf("%s: ok\n", argv[2]);
    return CLI_OK;
}
