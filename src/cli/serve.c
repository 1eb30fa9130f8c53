/*
 * serve.c — `factum serve`: opens the data folder and runs the HTTP server (src/server) on it
 * until SIGINT or SIGTERM, then drains and closes the store cleanly.
 */
#include "cli.h"

#include "../server/server.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    "  --sub-buffer BYTES      unsent bytes a live subscriber may hold before it is\n"
    "                          disconnected (default 4194304)\n"
    "  --max-connections N     default 10000\n"
    "  --scavenge-every S      scavenge (give back the disk of deleted and expired events)\n"
    "                          every S seconds (default 3600; 0: only on POST /admin/scavenge)\n"
    "  --segment-bytes BYTES   size of new log segments (default 268435456)\n"
    "  --tls-cert FILE         serve HTTPS (TLS 1.2 and 1.3) with this PEM certificate chain\n"
    "  --tls-key FILE          and this PEM private key (both, or neither)\n";

int cli_serve(const char *dir, int argc, char **argv) {
    server_config cfg = {.listen = getenv("FACTUM_LISTEN"), .version = FACTUM_VERSION, .scavenge_every_s = 3600};
    uint64_t segment_bytes = 0;
    if (cfg.listen && !*cfg.listen) cfg.listen = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return printf("%s", usage_serve), CLI_OK;
        if (i + 1 >= argc)
            return cli_fail(CLI_USAGE, "unknown option or missing value: %s (see factum serve --help)", a);
        const char *v = argv[++i];
        uint64_t n = 0;
        if (!strcmp(a, "--listen")) {
            cfg.listen = v;
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
        bool zero_ok = !strcmp(a, "--scavenge-every");
        if (!cli_parse_u64(v, &n) || (n == 0 && !zero_ok) || n > UINT32_MAX)
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
        else if (!strcmp(a, "--scavenge-every"))
            cfg.scavenge_every_s = n;
        else if (!strcmp(a, "--segment-bytes"))
            segment_bytes = n;
        else
            return cli_fail(CLI_USAGE, "unknown option %s (see factum serve --help)", a);
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
    if (rc) return cli_report(rc, &err);
    fprintf(stderr, "factum %s: data in %s\n", FACTUM_VERSION, dir);
    char *abs = realpath(dir, NULL); /* projections' default files: where the data is, wherever the cwd */
    cfg.data_dir = abs ? abs : dir;
    rc = server_run(db, &cfg, &err);
    free(abs);
    factum_close(db);
    if (rc) return cli_report(rc, &err);
    fprintf(stderr, "factum: stopped cleanly\n");
    return CLI_OK;
}
