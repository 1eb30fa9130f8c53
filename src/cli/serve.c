/*
 * serve.c — `factum serve`: opens the data folder and runs the HTTP server (src/server) on it
 * until SIGINT or SIGTERM, then drains and closes the store cleanly.
 */
#include "cli.h"

#include "../server/server.h"
#include "../sys/pool.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *usage_serve =
    "usage: factum serve [--data-dir DIR] [--listen HOST:PORT] [options]\n"
    "\n"
    "Serves the HTTP API (docs/http.md) on the data folder, made if missing (default\n"
    "./factum-data, or $FACTUM_DATA_DIR). Port 0 picks a free port; the\n"
    "address bound is printed as 'listening on http://HOST:PORT' (https:// with TLS).\n"
    "SIGINT/SIGTERM drain connections and close the store; SIGHUP reloads the TLS\n"
    "certificate and key for new connections (open ones keep theirs).\n"
    "\n"
    "options:\n"
    "  --listen HOST:PORT      default 127.0.0.1:7744 (or $FACTUM_LISTEN)\n"
    "  --max-body BYTES        largest request body (default 1048576)\n"
    "  --loops N               event-loop threads (default: one per CPU, at most 8)\n"
    "  --header-timeout MS     a request head must arrive within this (default 10000)\n"
    "  --body-timeout MS       a request body must arrive within this (default 30000)\n"
    "  --idle-timeout MS       idle keep-alive connections close after (default 120000)\n"
    "  --heartbeat MS          SSE heartbeat interval (default 15000)\n"
    "  --sub-buffer BYTES      unsent bytes a live subscriber may hold before it goes\n"
    "                          back to catching up from the log (default 262144)\n"
    "  --max-connections N     default 10000; at the limit the oldest idle connection\n"
    "                          makes room, else 503\n"
    "  --max-connections-per-address N\n"
    "                          from one client address (default: a quarter of\n"
    "                          --max-connections); past it 429\n"
    "  --max-memory BYTES      request bodies, unsent answers and subscriber buffers\n"
    "                          together (default: a quarter of RAM, at most 4 GiB);\n"
    "                          docs/limits.md says what a client sees past each limit\n"
    "  --scavenge-every S      scavenge (give back the disk of deleted and expired events)\n"
    "                          every S seconds (default 3600; 0: only on POST /admin/scavenge)\n"
    "  --segment-bytes BYTES   size of new log segments (default 268435456)\n"
    "  --max-groups N          consumer groups that may be defined (default 1000)\n"
    "  --max-projections N     projections that may be defined (default 100)\n"
    "  --max-sagas N           sagas that may be defined (default 100)\n"
    "  --max-schedules N       schedules that may be pending at once (default 100000)\n"
    "  --definition-threads N  threads that run every projection and saga (default 4)\n"
    "                          (past a --max-* limit a new definition gets 409; docs/limits.md)\n"
    "  --key-max-appends-per-second N\n"
    "                          events an API key may append per second, for keys that set\n"
    "                          no limit of their own (default 0: no limit); past it 429\n"
    "  --key-max-bytes-per-second N\n"
    "                          request-body bytes per second on the routes that append, the\n"
    "                          same way (default 0: no limit)\n"
    "  --cors-origin ORIGIN    let pages of ORIGIN (e.g. https://app.example.com) call the\n"
    "                          server from a browser; repeat or separate with commas\n"
    "                          (default: none; requests carrying another Origin get 403)\n"
    "  --public-host NAME      a name clients reach the server by (Host header), beside IP\n"
    "                          addresses and localhost; NAME:PORT for that port only\n"
    "  --tls-cert FILE         serve HTTPS (TLS 1.2 and 1.3) with this PEM certificate chain\n"
    "  --tls-key FILE          and this PEM private key (both, or neither)\n"
    "  --projections-dir DIR   the folder SQLite projection targets live in (default: the data\n"
    "                          folder); paths in definitions are taken from it and stay in it\n"
    "  --insecure              on an address other machines reach, serve even without TLS\n"
    "                          and an admin key (refused otherwise; logged at every start)\n";

#define SERVE_MAX_NAMES 16 /* --cors-origin and --public-host values, each */

/* Adds the comma-separated values of v to list (at most SERVE_MAX_NAMES); false when full or
   a value is empty or too long. */
static bool add_names(char *v, const char **list, size_t *n) {
    size_t added = 0;
    for (char *save = NULL, *tok = strtok_r(v, ",", &save); tok; tok = strtok_r(NULL, ",", &save), added++) {
        if (*n == SERVE_MAX_NAMES || strlen(tok) > 255) return false;
        list[(*n)++] = tok;
    }
    return added > 0;
}

int cli_serve(const char *dir, int argc, char **argv) {
    server_config cfg = {.listen = getenv("FACTUM_LISTEN"), .version = FACTUM_VERSION, .scavenge_every_s = 3600};
    uint64_t segment_bytes = 0;
    const char *projections_dir = NULL;
    static const char *origins[SERVE_MAX_NAMES], *hosts[SERVE_MAX_NAMES];
    cfg.cors_origins = origins, cfg.public_hosts = hosts;
    if (cfg.listen && !*cfg.listen) cfg.listen = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return printf("%s", usage_serve), CLI_OK;
        if (!strcmp(a, "--insecure")) {
            cfg.insecure = true;
            continue;
        }
        if (i + 1 >= argc)
            return cli_fail(CLI_USAGE, "unknown option or missing value: %s (see factum serve --help)", a);
        const char *v = argv[++i];
        uint64_t n = 0;
        if (!strcmp(a, "--listen")) {
            cfg.listen = v;
            continue;
        }
        if (!strcmp(a, "--cors-origin") || !strcmp(a, "--public-host")) {
            bool cors = a[2] == 'c';
            if (!add_names(argv[i], cors ? origins : hosts, cors ? &cfg.ncors_origins : &cfg.npublic_hosts))
                return cli_fail(CLI_USAGE, "%s wants up to %d non-empty values of at most 255 bytes (got '%s')", a,
                                SERVE_MAX_NAMES, v);
            continue;
        }
        if (!strcmp(a, "--projections-dir")) {
            projections_dir = v;
            continue;
        }
        if (!strcmp(a, "--tls-cert")) {
            cfg.tls_cert = v;
            continue;
        }
        if (!strcmp(a, "--tls-key")) {
            cfg.tls_key = v;
            continue;
        }
        if (!strcmp(a, "--key-max-appends-per-second") || !strcmp(a, "--key-max-bytes-per-second")) {
            auth_limit l = a[10] == 'a' ? AUTH_LIMIT_APPENDS : AUTH_LIMIT_BYTES;
            if (!cli_parse_u64(v, &n) || n > (uint64_t)auth_limit_max(l))
                return cli_fail(CLI_USAGE, "%s wants a whole number from 0 (no limit) to %lld (got '%s')", a,
                                (long long)auth_limit_max(l), v);
            cfg.key_max_per_second[l] = n;
            continue;
        }
        bool zero_ok = !strcmp(a, "--scavenge-every"), wide = !strcmp(a, "--max-memory");
        if (!cli_parse_u64(v, &n) || (n == 0 && !zero_ok) || n > (wide ? (1ull << 50) : UINT32_MAX))
            return cli_fail(CLI_USAGE, "%s wants a %s number (got '%s')", a, zero_ok ? "whole" : "positive", v);
        if (!strcmp(a, "--max-body"))
            cfg.max_body = n;
        else if (!strcmp(a, "--loops"))
            cfg.loops = (int)MIN(n, 64);
        else if (!strcmp(a, "--header-timeout"))
            cfg.header_timeout_ms = (uint32_t)n;
        else if (!strcmp(a, "--body-timeout"))
            cfg.body_timeout_ms = (uint32_t)n;
        else if (!strcmp(a, "--idle-timeout"))
            cfg.idle_timeout_ms = (uint32_t)n;
        else if (!strcmp(a, "--heartbeat"))
            cfg.heartbeat_ms = (uint32_t)n;
        else if (!strcmp(a, "--sub-buffer"))
            cfg.sub_buffer = n;
        else if (!strcmp(a, "--max-connections"))
            cfg.max_connections = (uint32_t)n;
        else if (!strcmp(a, "--max-connections-per-address"))
            cfg.max_per_address = (uint32_t)n;
        else if (!strcmp(a, "--max-memory"))
            cfg.max_memory = n;
        else if (!strcmp(a, "--scavenge-every"))
            cfg.scavenge_every_s = n;
        else if (!strcmp(a, "--segment-bytes"))
            segment_bytes = n;
        else if (!strcmp(a, "--max-groups"))
            cfg.max_groups = n;
        else if (!strcmp(a, "--max-projections"))
            cfg.max_projections = n;
        else if (!strcmp(a, "--max-sagas"))
            cfg.max_sagas = n;
        else if (!strcmp(a, "--max-schedules"))
            cfg.max_schedules = n;
        else if (!strcmp(a, "--definition-threads")) {
            if (n > POOL_MAX_WORKERS)
                return cli_fail(CLI_USAGE, "--definition-threads takes 1 to %d (got '%s')", POOL_MAX_WORKERS, v);
            cfg.definition_threads = (int)n;
        } else
            return cli_fail(CLI_USAGE, "unknown option %s (see factum serve --help)", a);
    }
    for (size_t k = 0; k < cfg.ncors_origins; k++) { /* an Origin is scheme://host[:port], nothing after */
        const char *o = origins[k], *rest = !strncmp(o, "http://", 7)    ? o + 7
                                            : !strncmp(o, "https://", 8) ? o + 8
                                                                         : NULL;
        if (!rest || !*rest || strpbrk(rest, "/?# "))
            return cli_fail(CLI_USAGE, "--cors-origin wants an origin like https://app.example.com:8443 (got '%s')", o);
    }
    if (!cfg.tls_cert != !cfg.tls_key)
        return cli_fail(CLI_USAGE, "--tls-cert and --tls-key go together (got only %s)",
                        cfg.tls_cert ? "--tls-cert" : "--tls-key");
    factum_error_t err;
    server_tls *probe; /* unusable files are refused before the store is opened (or made) */
    if (cfg.tls_cert) {
        int rc = tls_open(cfg.tls_cert, cfg.tls_key, &probe, &err);
        if (rc) return cli_report(rc, &err);
        tls_close(probe);
    }
    char *pabs = projections_dir ? realpath(projections_dir, NULL) : NULL; /* checked before the store is made too */
    struct stat st;
    if (projections_dir && (!pabs || stat(pabs, &st) || !S_ISDIR(st.st_mode))) {
        free(pabs);
        return cli_fail(CLI_USAGE, "--projections-dir %s is not a folder (make it first)", projections_dir);
    }
    cfg.projections_dir = pabs;
    /* SIGINT, SIGTERM and SIGHUP are taken by server_run's sigwait. Blocked here, before the store and the
       server start their threads, so that every thread inherits the block: a signal that
       reached a thread not blocking it would end the process at once instead of draining. */
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
    factum_t *db;
    factum_options_t o = {.max_data_bytes = cfg.max_body ? (uint32_t)MIN(cfg.max_body, UINT32_MAX) : 0,
                          .segment_bytes = segment_bytes};
    int rc = factum_open(dir, &o, &db, &err);
    if (rc) {
        free(pabs);
        return cli_report(rc, &err);
    }
    fprintf(stderr, "factum %s: data in %s\n", FACTUM_VERSION, dir);
    if (factum_format_found(db) < FACTUM_FORMAT_VERSION)
        fprintf(stderr,
                "factum: %s was written by an older factum (format version %d): upgraded to version %d (see "
                "docs/format.md, \"Format versions\")\n",
                dir, factum_format_found(db), FACTUM_FORMAT_VERSION);
    char *abs = realpath(dir, NULL); /* projections' default files: where the data is, wherever the cwd */
    cfg.data_dir = abs ? abs : dir;
    rc = server_run(db, &cfg, &err);
    free(abs);
    free(pabs);
    factum_close(db);
    if (rc) return cli_report(rc, &err);
    fprintf(stderr, "factum: stopped cleanly\n");
    return CLI_OK;
}
