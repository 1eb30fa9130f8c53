/*
 * serve.c — `factum serve`: opens the data folder and runs the HTTP server (src/server) on it
 * until SIGINT or SIGTERM, then drains and closes the store cleanly.
 */
#include "config.h"

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
    "Every option may also be set in a file (--config FILE: 'name = value' lines, the\n"
    "names without --, e.g. 'max-body = 1048576', 'data-dir = /var/lib/factum') and in\n"
    "the environment (FACTUM_MAX_BODY=1048576); the file is read first, then the\n"
    "environment, then the line, each overriding the one before. 'factum config check\n"
    "FILE' checks a file.\n"
    "\n"
    "options:\n"
    "  --config FILE           read options from FILE first (docs/configuration.md)\n"
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
    "  --archive-dir DIR       move sealed segments to DIR (another disk, a mounted bucket; it\n"
    "                          must exist) once their newest event is --archive-after old;\n"
    "                          they stay readable there (docs/operations.md, \"Archival\")\n"
    "  --archive-after S       seconds (default 0: as soon as a segment is sealed)\n"
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
    "  --access-log FILE|-     one line per request (default: none); reopened on SIGHUP\n"
    "                          and SIGUSR1 (logrotate)\n"
    "  --access-log-format F   common (Common Log Format, plus key id and seconds taken)\n"
    "                          or json (default common)\n"
    "  --slow-request-ms MS    log requests slower than this at warn (default 1000; 0: never)\n"
    "  --log-level LEVEL       error, warn, info or debug (default info)\n"
    "  --log-format F          the server's messages as text or json (default text)\n"
    "  --cluster URL,URL,...   run as a node of a cluster on these NATS JetStream servers\n"
    "                          (docs/cluster.md); with --node NAME, this node's name,\n"
    "                          --advertise URL, how clients reach it (default: http://\n"
    "                          and --listen), --cluster-stream NAME (default FACTUM)\n"
    "  --insecure              on an address other machines reach, serve even without TLS\n"
    "                          and an admin key (refused otherwise; logged at every start)\n";

/* The options from the file (--config), the environment and the line, in that order. */
static int read_options(serve_options *o, int argc, char **argv) {
    const char *config = NULL;
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], "--config")) config = argv[i + 1];
    if (config) {
        int errors = serve_options_file(o, config, stderr);
        if (errors) return cli_fail(CLI_USAGE, "%s: not used (%s)", config, errors < 0 ? "unreadable" : "errors above");
    }
    if (serve_options_env(o, stderr)) return cli_fail(CLI_USAGE, "the environment's FACTUM_ options have errors");
    char why[400];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool flag = !strcmp(a, "--insecure");
        if (!flag && (strncmp(a, "--", 2) || i + 1 >= argc))
            return cli_fail(CLI_USAGE, "unknown option or missing value: %s (see factum serve --help)", a);
        const char *v = flag ? NULL : argv[++i];
        if (!strcmp(a, "--config")) continue;
        int r = serve_option(o, SERVE_FROM_FLAG, a + 2, v, why, sizeof why);
        if (r == SERVE_OPT_UNKNOWN || !strcmp(a, "--data-dir")) /* --data-dir is every command's (main.c) */
            return cli_fail(CLI_USAGE, "unknown option %s (see factum serve --help)", a);
        if (r) return cli_fail(CLI_USAGE, "%s", why);
    }
    if (serve_options_check(o, why, sizeof why)) return cli_fail(CLI_USAGE, "%s", why);
    return CLI_OK;
}

static int serve_run(serve_options *o, const char *dir, bool dir_given, int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return printf("%s", usage_serve), CLI_OK;
    int rc = read_options(o, argc, argv);
    if (rc) return rc;
    server_config cfg = o->cfg;
    log_setup(o->log_level, o->log_json);
    if (!dir_given && o->data_dir) dir = o->data_dir;
    const char *projections_dir = o->projections_dir;
    factum_error_t err;
    server_tls *probe; /* unusable files are refused before the store is opened (or made) */
    if (cfg.tls_cert) {
        if ((rc = tls_open(cfg.tls_cert, cfg.tls_key, &probe, &err))) return cli_report(rc, &err);
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
    sigaddset(&stop_signals, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
    factum_t *db;
    factum_options_t fo = {.max_data_bytes = cfg.max_body ? (uint32_t)MIN(cfg.max_body, UINT32_MAX) : 0,
                           .segment_bytes = o->segment_bytes,
                           .archive_dir = o->archive_dir,
                           .archive_after_s = o->archive_after_s};
    rc = factum_open(dir, &fo, &db, &err);
    if (rc) {
        free(pabs);
        return cli_report(rc, &err);
    }
    log_msg(LOG_LEVEL_INFO, "%s: data in %s", FACTUM_VERSION, dir);
    if (factum_format_found(db) < FACTUM_FORMAT_VERSION)
        log_msg(LOG_LEVEL_INFO,
                "%s was written by an older factum (format version %d): upgraded to version %d (see docs/format.md, "
                "\"Format versions\")",
                dir, factum_format_found(db), FACTUM_FORMAT_VERSION);
    factum_archive_stats_t *as = malloc(sizeof *as);
    if (as) factum_archive_stats(db, as);
    if (as && as->error[0]) log_msg(LOG_LEVEL_ERROR, "%s (reads of archived events fail until it is back)", as->error);
    free(as);
    char *abs = realpath(dir, NULL); /* projections' default files: where the data is, wherever the cwd */
    cfg.data_dir = abs ? abs : dir;
    cluster *cl = NULL;
    char advertise[300];
    cluster_config ccfg = o->cluster;
    if (ccfg.urls) { /* before the server: its first write already goes to the cluster */
        snprintf(advertise, sizeof advertise, "%s://%s", cfg.tls_cert ? "https" : "http",
                 cfg.listen ? cfg.listen : "127.0.0.1:7744");
        if (!ccfg.advertise) ccfg.advertise = advertise;
        ccfg.data_dir = cfg.data_dir;
        rc = cluster_start(db, &ccfg, &cl, &err);
        if (rc) {
            free(abs);
            free(pabs);
            factum_close(db);
            return cli_report(rc, &err);
        }
        cfg.cluster = cl;
    }
    rc = server_run(db, &cfg, &err);
    cluster_stop(cl);
    free(abs);
    free(pabs);
    factum_close(db);
    if (rc) return cli_report(rc, &err);
    log_msg(LOG_LEVEL_INFO, "stopped cleanly");
    return CLI_OK;
}

int cli_serve(const char *dir, bool dir_given, int argc, char **argv) {
    serve_options o;
    serve_options_init(&o);
    int rc = serve_run(&o, dir, dir_given, argc, argv);
    serve_options_free(&o);
    return rc;
}
