/*
 * server.h — the HTTP server: event loops, connections, routing, subscriptions.
 *
 * Threads and ownership (docs/threads.md has the picture):
 *   - `loops` event-loop threads (default: one per CPU, at most 8), each with its own epoll,
 *     eventfd and connections; they share the listening socket (EPOLLEXCLUSIVE). A connection
 *     belongs to the loop that accepted it, for its whole life: no locks on connections.
 *   - The engine's writer thread calls back into a loop twice, both times only to queue and
 *     wake: append completions (loop->done list under loop->mu, then the eventfd) and the
 *     commit hook (loop->head, then the eventfd when the loop has subscribers).
 *   - The thread that called server_run waits for SIGINT/SIGTERM and then stops the loops.
 */
#ifndef FACTUM_SERVER_H
#define FACTUM_SERVER_H

#include "../auth/keys.h"
#include "../base/base.h"
#include "../sys/owners.h"
#include "http.h"

#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/types.h>

typedef struct server_config {
    const char *listen;         /* HOST:PORT; port 0 picks a free one */
    int loops;                  /* event-loop threads; 0 = one per CPU (at most 8) */
    size_t max_body;            /* bytes of a request body; 0 = 1 MiB */
    uint32_t header_timeout_ms; /* a request head must arrive within this; 0 = 10 s */
    uint32_t body_timeout_ms;   /* and its body within this after the head; 0 = 30 s */
    uint32_t idle_timeout_ms;   /* an idle keep-alive connection is closed after; 0 = 120 s */
    uint32_t heartbeat_ms;      /* SSE heartbeat comment interval; 0 = 15 s */
    size_t sub_buffer; /* unsent bytes a live subscriber may hold before it catches up from the log; 0 = 256 KiB */
    uint32_t max_connections;    /* per server; 0 = 10000 */
    uint32_t max_per_address;    /* connections from one client address; 0 = max_connections / 4 */
    uint64_t max_memory;         /* bytes of bodies, unsent answers and subscriber buffers; 0 = RAM / 4, <= 4 GiB */
    uint64_t scavenge_every_s;   /* a background scavenge this often; 0 = only when asked */
    const char *data_dir;        /* the data folder (projections' default SQLite files go under it) */
    const char *projections_dir; /* SQLite projection targets' folder (--projections-dir); NULL: data_dir */
    const char *tls_cert;        /* PEM certificate chain and key: HTTPS (both, or neither) */
    const char *tls_key;
    bool insecure;                   /* serve a non-loopback address without TLS or an admin key (logged at start) */
    const char *const *cors_origins; /* origins whose pages may call (--cors-origin); none: no CORS */
    size_t ncors_origins;
    const char *const *public_hosts; /* names the Host header may carry beside IP literals and localhost */
    size_t npublic_hosts;
    /* limits on definitions (limits.c, docs/limits.md); 0 = the default */
    uint64_t max_groups;      /* 0 = 1000 */
    uint64_t max_projections; /* 0 = 100 */
    uint64_t max_sagas;       /* 0 = 100 */
    uint64_t max_schedules;   /* pending ones; 0 = 100000 */
    int definition_threads;   /* the pool that runs projections and sagas; 0 = 4 */
    /* rate limits of API keys that set none of their own (--key-max-*-per-second, by
       auth_limit: appends, body bytes); 0 = none */
    uint64_t key_max_per_second[AUTH_LIMITS];
    /* logs (access.c): one line per request to access_log ("-": stdout; NULL: none), as
       access_json says; a request slower than slow_request_ms (0: never) is logged at warn */
    const char *access_log;
    bool access_json;
    uint32_t slow_request_ms;
    const char *version;
    struct cluster *cluster; /* cluster mode (src/cluster, docs/cluster.md), or NULL */
} server_config;

/*
 * Serves `db` until SIGINT or SIGTERM (blocked in the calling thread and the loops), then
 * drains: stops accepting, lets requests in flight finish (up to 5 s), closes subscriptions.
 * Prints "listening on http://HOST:PORT" (https:// with TLS) to stdout once bound. SIGHUP
 * reloads the TLS certificate and key. 0, or an error (bind failed, unusable TLS files).
 */
int server_run(factum_t *db, const server_config *cfg, factum_error_t *err);

/* ---- internals shared by the server's files (route handlers: api.h) ---- */

#define SERVER_HIST 16
extern const double server_latency_bounds[SERVER_HIST]; /* seconds; last = +Inf */

typedef struct loop loop;
typedef struct conn conn;
typedef struct server server;
typedef void (*append_done_fn)(conn *c);
typedef void (*job_fn)(conn *c);

#define SERVER_WORKERS 8 /* threads for blocking work: projection queries and definitions */

/* What one subscription reads and where it stands. */
typedef struct sub {
    bool all;                   /* /all, or one stream */
    bool live;                  /* caught up: woken by commits */
    bool announced;             /* the "caught-up" event was sent */
    bool behind;                /* live, but held back by the memory budget: the sweep pumps it again */
    bool system;                /* /all: include system streams */
    bool raw;                   /* version=raw: events as stored, not upcast (docs/schemas.md) */
    buf_t stream;               /* the stream name (NUL-terminated) */
    buf_t type, category, corr; /* /all filters */
    buf_t filters;              /* the three, NUL-separated: which subscribers may share a chunk */
    uint64_t next;              /* next revision (stream) or position (/all) to look at */
    uint64_t stream_key;        /* factum_stream_key of the stream: commits that miss it pass it by */
    char group[104];            /* push delivery of this consumer group, or "" */
    uint32_t max_in_flight;
    uint64_t beat_ms;       /* last event or heartbeat queued */
    factum_tag_query_t *tq; /* a tag query's subscription (GET /events, docs/dcb.md): owned */
} sub;

/* A request being read or answered. Its head is a private copy, so spans stay valid. */
typedef struct request {
    char *head;
    http_req h;
    size_t body_need; /* Content-Length body bytes, once the head is parsed */
    http_chunked chunk;
    buf_t body; /* decoded chunked body */
    uint64_t started_ns;
} request;

enum { C_HEAD, C_BODY, C_APPEND, C_SSE, C_WAIT };

/*
 * A connection parked on its loop (a subscription, a push member, a long-polling pull) is
 * driven by its owner's callbacks, as Redis's blocked.c keeps key -> waiting clients: the loop
 * knows whom a commit concerns (loop_listen's key) and when, never what they do.
 *   on_commit  a commit it listens for was made (the loop settles c after);
 *   on_tick    the sweep, every 100 ms, unless the loop cut c off (stalled, revoked, stopping):
 *              heartbeats, retries that fall due, a long poll's end (final: answer now);
 *   on_drain   its unsent output drained, or its turn on the ready list came (catching up);
 *   on_close   the connection ends: give back what it holds.
 * Any may be NULL.
 */
typedef struct park_ops {
    void (*on_commit)(conn *c);
    void (*on_tick)(conn *c, uint64_t now_ms, bool final);
    void (*on_drain)(conn *c);
    void (*on_close)(conn *c);
} park_ops;

struct conn {
    int fd;
    int state;
    loop *l;
    conn *prev, *next; /* the loop's connections */
    conn *done_next;   /* the loop's completed appends */
    conn *ready_next;  /* the loop's subscriptions to pump again soon */
    conn *closed_next; /* the loop's connections closed this turn (loop->closed) */
    bool released;     /* on that list: freed at the end of the turn */
    bool in_ready;
    bool in_paced;
    conn *paced_next;  /* the loop's pipelining connections waiting for their next turn */
    uint64_t paced_ns; /* when that is (clock_mono_ns) */
    uint64_t turn_ns;  /* when the turn that used up TURN_REQUESTS began; 0: none is over */
    bool pipelined;    /* it has used up a turn: its requests do not count as other clients' activity */
    buf_t in;
    size_t in_off;
    buf_t out;
    size_t out_off;
    bool close_after;     /* close once the output is sent */
    bool eof;             /* the peer sent FIN or reset */
    bool dead;            /* closed while its append was in flight; freed on the callback */
    uint32_t mask;        /* epoll events registered */
    uint64_t deadline_ms; /* 0 = none; for C_WAIT, when the long poll answers empty */
    uint64_t last_io_ms;  /* last byte in or out */
    uint64_t sent_ms;     /* last byte out, or last time nothing was owed: a reader that stalls */
    bool spoke;           /* the peer sent a byte: until then the header timeout applies */
    bool wblocked;        /* the socket took no more (EAGAIN): no send until EPOLLOUT says it will */
    bool in_stalled; /* requests read but not run (answers piled up, memory, or its turn is over): on the ready list */
    size_t charged;  /* bytes this connection counts in the memory budget (overload.c) */
    size_t reserved; /* of them, held for a body being received */
    unsigned char addr[16]; /* the peer's address (IPv4 mapped), for the per-address count */
    conn *iprev, *inext;    /* the loop's idle connections, oldest first, while idle */
    bool idle;
    request *req;
    sub *sub;
    const park_ops *park; /* while parked: its owner's callbacks */
    /* set by the append callback on the writer thread, read by the loop after done */
    int ar_rc;
    factum_append_result_t ar_res;
    char ar_msg[320];
    append_done_fn ar_done;
    factum_append_result_t *ar_results; /* a multi-stream append's, one per stream (owned by c->job) */
    uint32_t pull_max;                  /* a group pull's max, kept while it waits */
    bool pull_raw;                      /* and its version=raw: events as stored (docs/schemas.md) */
    uint64_t min_position;              /* a read waiting until the log holds this position (api_read.c) */
    bool waited_out;                    /* a waiting request's time is up: run it again to answer as it stands */
    char ar_note[128]; /* what the done function needs beyond the result (a schedule id, a group name) */
    int64_t ar_at;
    /* a job (server_submit_job): what it works on and answers with, owned by the API that made it */
    void *job;
    job_fn job_work;
    void (*job_free)(void *job); /* frees job when the connection went away before done ran */
    /* guard.c: the Authorization bytes that last proved a key here, and the proof; the key of
       the request at hand ("" = none); the peer's address (found when first asked) */
    char auth_hdr[96];
    uint8_t auth_len;
    bool loopback;
    bool audit; /* audit.c records this request's answer (an admin or operator change) */
    auth_who who;
    char req_key[AUTH_ID_LEN + 1];
    char peer[48];
    conn *job_next;
    /* commit listening (loop_listen): on one of its loop's wake lists while linked */
    conn *wprev, *wnext;
    bool wlinked;
    uint64_t wkey; /* a stream subscription's stream key; 0: woken by every commit */
    /* the admitted cross-origin request's Origin (origin.c), echoed in its answers; 0: none */
    char cors[256];
    uint16_t cors_len;
    /* TLS (tls.c): NULL on a plain connection */
    struct ssl_st *ssl;
    uint8_t tls_want; /* TLS_READ_WANTS_OUT, TLS_WRITE_WANTS_IN */
    bool tls_broken;  /* a fatal TLS error: no close_notify */
};

#define SERVER_WAKE_BUCKETS 4096 /* stream subscriptions are kept by key modulo this */
#define SERVER_WAKE_KEYS 4096    /* stream keys kept per loop between wake-ups before "all" */

struct loop {
    server *srv;
    pthread_t thread;
    int ep, efd;
    conn *conns;
    size_t nconns;
    pthread_mutex_t mu;
    conn *done;                /* appends the writer finished */
    size_t pending;            /* appends submitted and not yet called back */
    conn *ready;               /* catching-up subscriptions that used their turn and want another */
    conn *paced;               /* pipelining connections that used their turn, until paced_ns */
    conn *closed;              /* closed this turn, freed at its end (loop_free_closed) */
    _Atomic uint64_t head;     /* latest durable head the commit hook saw */
    uint64_t seen;             /* head up to which live subscribers were pumped */
    _Atomic uint32_t nsubs;    /* SSE subscriptions (and push members) on this loop */
    _Atomic uint32_t nwaiting; /* long-polling pulls on this loop */
    /* Who a commit wakes (loop_listen), so it wakes no one else and walks no idle connection:
       /all and push subscriptions and waiting pulls on every commit, a stream's subscriptions
       only when the commit touched it. Loop thread only. */
    conn *wake_every;
    conn *wake_by_key[SERVER_WAKE_BUCKETS];
    /* under mu: the stream keys of commits the loop has not handled yet (the writer adds) */
    uint64_t *keys, *spare_keys; /* spare: the loop's, swapped in at each wake-up */
    size_t nkeys, keys_cap;
    bool keys_all; /* more than keys_cap, or keys not known: every stream subscription looks */
    buf_t scratch; /* response bodies and rendered events */
    buf_t access;  /* access log lines of this turn, written at its end (access.c) */
    /* The SSE bytes of the last chunk of $all one of this loop's subscribers read (sse.c):
       [from, next) as the query from `from` with its filters (system streams or not) returned
       it, whole when it held all there was. Live subscribers with the same filters stand at the
       same position after each commit, so the first renders and the others copy. Loop thread only. */
    struct {
        uint64_t from, next;
        bool system, whole, valid;
        buf_t filters; /* the sub's filters, as sub.filters */
        buf_t bytes;
    } all_cache;
    /* metrics: one writer (this loop), read by /metrics on any loop */
    _Atomic uint64_t requests[6]; /* by status class 1xx..5xx (index 1..5) */
    _Atomic uint64_t status[600];
    _Atomic uint64_t lat[SERVER_HIST], lat_sum_us;
    _Atomic uint64_t accepted, sub_fallbacks, stalled_drops, memory_drops;
    conn *idle_first, *idle_last;    /* idle connections, oldest first: near the cap they make room */
    uint64_t accept_paused_until_ms; /* out of descriptors: not accepting until then (0 = accepting) */
    bool short_of_memory;            /* a subscriber was held back by the memory budget: loop_shed makes room */
    _Atomic uint32_t nidle;          /* connections on the idle list */
    _Atomic uint32_t evict_owed;     /* idle connections another loop, at the cap, asked this one to close */
};

typedef struct scavenger scavenger_t;
typedef struct server_tls server_tls;
typedef struct projections projections_t;
typedef struct sagas sagas_t;
typedef struct audit audit_t;
typedef struct connectors connectors_t;

/* The kinds of definitions with a limit (limits.c). */
enum { LIMIT_GROUPS, LIMIT_PROJECTIONS, LIMIT_SAGAS, LIMIT_SCHEDULES, LIMIT_KINDS };

struct server {
    factum_t *db;
    struct pool *pool; /* runs projections and sagas (sys/pool.h) */
    pthread_mutex_t limits_mu;
    uint64_t held[LIMIT_KINDS];      /* under limits_mu: new definitions checked and not yet applied */
    owners held_by_key[LIMIT_KINDS]; /* under limits_mu: the same, by the key that asked */
    scavenger_t *scav;
    struct timers *timers;
    struct groups *groups;
    projections_t *projections;
    sagas_t *sagas;
    connectors_t *connectors; /* src/connect/: HTTP sinks, each a thread of its own */
    struct jobs *jobs;
    struct schema_registry *schemas; /* event schemas (src/schema/registry.h); the store owns it */

    auth_keys_t *keys; /* API keys ($keys): guard.c checks requests against them */
    audit_t *audit;    /* $audit: admin and operator actions, refused requests */
    int access_fd;     /* the access log (access.c); -1: none */
    server_tls *tls;   /* NULL: plain HTTP */
    server_config cfg;
    int lfd;
    loop *loops;
    int nloops;
    _Atomic bool stopping;
    _Atomic uint32_t nconns;
    uint64_t drain_deadline_ms;
    struct overload *ov;        /* overload.c: per-address counts, the spare descriptor, the memory budget */
    _Atomic uint64_t others_ns; /* conn.c: when a connection that never pipelined a whole turn last began a
                                   request (clock_mono_ns): pipelining connections are paced while others are
                                   active */
    pthread_t follower;         /* follow.c: a cluster node's definitions thread */
    bool follower_started;
};

uint64_t server_now_ms(void);
/* A metric counter's increment: one writer (the loop), any reader. */
static inline void relaxed_add(_Atomic uint64_t *c, uint64_t v) {
    atomic_fetch_add_explicit(c, v, memory_order_relaxed);
}
/* server.c: wakes the loop (its eventfd); any thread. */
void loop_wake(loop *l);

/* conn.c: reads what the peer sent and runs complete requests; after any event, conn_settle
   sends what is queued and closes a connection that is over. */
void conn_readable(conn *c);
void conn_settle(conn *c);
void conn_resume(conn *c); /* on the ready list: run buffered requests (a turn's worth), then settle */
/* conn.c: the paced connections whose turn has come run; returns the nanoseconds until the next
   one's (UINT64_MAX: none waits). */
uint64_t loop_run_paced(loop *l);
/* conn.c: the loop's idle connections (between requests, nothing owed, or silent since accept):
   conn_track_idle keeps c's place right after any event; loop_evict_idle closes the oldest (false
   if there is none). Called outside the loop's walk of events, since it frees a connection. */
void conn_track_idle(conn *c);
bool loop_evict_idle(loop *l);
/* conn.c: the loop is over its memory budget, or a subscriber of the loop is held back near it:
   cuts connections that are not reading, then the others, largest unsent output first, until
   the budget is back under 7/8. */
void loop_shed(loop *l);
/* conn.c: a long poll is over (answered); the connection reads its next request. */
void conn_wait_over(conn *c);
/* conn.c: a parked request runs again from its start (its handler answers now, or parks again). */
void conn_wait_rerun(conn *c);
/* conn.c: the writer or a worker finished c's append or job (c came off the loop's done list):
   answers with its done function and reads the next request, or frees c if it went away. */
void conn_done(conn *c);
/* jobs.c: the worker threads, started with the server and stopped (after their queue) at the end. */
int jobs_open(struct jobs **out, factum_error_t *err);
void jobs_close(struct jobs *j);
/* Queues bytes on the connection and tries to send them now. */
void conn_send(conn *c, const void *p, size_t n);
/* A complete response with a body; `extra` are header lines ending in CRLF (or NULL). */
void conn_respond(conn *c, int status, const char *ctype, const char *extra, const char *body, size_t n);
/* The problem answer for a FACTUM_E* code: its status (400, 404, 409, 413, 503, 507, ...) and
   problem type, with msg as the detail. */
void server_problem(conn *c, int rc, const char *msg);
/* api_schemas.c: the 422 of an append a schema refused (FACTUM_ESCHEMA), listing its violations. */
void schema_problem(conn *c, const char *msg);
/* An application/problem+json response; `members` are extra JSON members ("\"a\":1") or NULL. */
void conn_problem(conn *c, int status, const char *slug, const char *members, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* The same with extra header lines (each ending in CRLF) and no extra members. */
void conn_problem_headers(conn *c, int status, const char *slug, const char *headers, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
void conn_flush(conn *c);
/* Frees the connections the turn closed (conn.c); the loop calls it at the end of each turn. */
void loop_free_closed(loop *l);
/* Whether the address reaches only this machine (127.0.0.0/8, ::1, v4-mapped loopback). */
bool server_addr_is_loopback(const struct sockaddr_storage *ss);
/* origin.c: admits the request on c (its Host, its Origin) or answers it (421, 403, or a CORS
   preflight) and returns false. */
bool origin_admit(conn *c);
/* Whether host (a Host header) names this server: an IP literal, localhost, a --public-host. */
bool origin_host_ok(const server_config *cfg, factum_str_t host);
/* The CORS header lines for c's answers into out (CRLF-ended); their length, 0 when none. */
size_t origin_headers(const conn *c, char *out, size_t cap);
void loop_observe_latency(loop *l, uint64_t ns);

/* Submits an append for c; once the writer calls back, the loop runs done(c) with the result in
   c->ar_rc / ar_res / ar_msg, and done answers the request. */
int server_submit_append(conn *c, factum_str_t stream, int64_t expected, const factum_event_t *ev, size_t n,
                         append_done_fn done, factum_error_t *err);
/* A multi-stream append with a condition (NULL: none), docs/dcb.md: each stream's result goes
   to results (which lives in c->job until done), the first's also to c->ar_res. */
int server_submit_append_streams(conn *c, const factum_stream_append_t *parts, size_t n, const factum_condition_t *cond,
                                 factum_append_result_t *results, append_done_fn done, factum_error_t *err);

/* Runs work(c) on a worker thread (blocking work: a database, a long wait), then done(c) on c's
   loop, as for an append. c->job carries what the two need. */
void server_submit_job(conn *c, job_fn work, append_done_fn done, void (*free_job)(void *job));

/* Why a new definition was refused (limits.c): the server's limit on its kind (--max-KIND), or
   the maximum of the key that asked (max_KIND); the maximum, and what is used of it. */
typedef struct limit_refusal {
    int kind; /* LIMIT_* */
    bool by_key;
    uint64_t max, used;
    char key[AUTH_ID_LEN + 1];
} limit_refusal;

/*
 * A job on a named resource (/projections/{name}, /sagas/{name}): the work reads name, body and
 * flag, and sets rc (an error, with err) or status and out. Answered on the loop: a 201 carries
 * "Location: LOCATION NAME"; FACTUM_ECONFLICT answers 409 with conflict_slug as the problem type
 * when one is given; other errors as server_problem says.
 */
typedef struct named_job {
    char name[128];
    buf_t body; /* the request body, copied: the connection may go away meanwhile */
    bool flag;  /* the API's own option (keep_data) */
    const char *location, *conflict_slug;
    int rc, status;
    buf_t out;
    factum_error_t err;
    bool limited; /* refused past a limit: answered by limits_problem(&limit) */
    limit_refusal limit;
} named_job;
/* Starts one (answers 503 itself if it cannot); the job is c->job while the work runs. */
void server_submit_named(conn *c, const char *name, factum_str_t body, bool flag, const char *location,
                         const char *conflict_slug, job_fn work);

/* The same for a metadata change (m) or, with m NULL, a deletion (factum_delete_stream). */
int server_submit_meta(conn *c, factum_str_t stream, const factum_meta_t *m, int64_t expected, int tombstone,
                       append_done_fn done, factum_error_t *err);

/* api_read.c: appends e as one line of CloudEvent JSON to b, rendering once in the common case. 0 or -1. */
int render_event(buf_t *b, const factum_event_t *e);

/* api_read.c: renders a read's events as a JSON array into l->scratch, stopping at READ_MAX_BYTES or at the
   first event at or past `until` (temporal reads; UINT64_MAX: none); returns how many. */
size_t render_events(loop *l, const factum_result_t *res, uint64_t until);

/* Renders a group's deliveries: elements of a JSON array (pull; a newline before each, a comma
   between) or SSE messages (push). */
struct groups_batch;
void groups_render_deliveries(buf_t *out, const struct groups_batch *b, bool sse, bool raw);
/* Parks c (a long poll) for up to ms, woken by every commit and the sweep through ops; the
   owner calls conn_wait_over once it answered. */
void server_wait(conn *c, uint64_t ms, const park_ops *ops);

/* api_admin.c: the scavenger thread. */
int scavenger_open(factum_t *db, uint64_t every_s, scavenger_t **out, factum_error_t *err);
void scavenger_close(scavenger_t *sv);

/* limits.c: the limits on definitions. The maximum of a kind (LIMIT_*). */
uint64_t limits_max(const server *s, int kind);
/* Whether c may make one more definition of kind when `used` are defined on the server (the
   count its caller holds a lock for): the server's limit, then the maximum of c's key (against
   what the key owns, limits_owned). false with *r when one of them refuses. */
bool limits_admit(conn *c, int kind, uint64_t used, limit_refusal *r);
/* How many live definitions of kind key owns (the engines count them from their records). */
uint64_t limits_owned(server *s, int kind, const char *key);
/* Answers 409 limit-reached: the limit, its maximum and what is used of it. */
void limits_problem(conn *c, const limit_refusal *r);
/* A place held for a new group or schedule from its check until it is applied (or not), on
   the server and for c's key: NULL, having answered limits_problem, when either is full. */
typedef struct limit_hold limit_hold;
limit_hold *limits_hold(conn *c, int kind);
/* The same without answering (for a worker thread): NULL with *r when either is full. */
limit_hold *limits_take(conn *c, int kind, limit_refusal *r);
void limits_release(limit_hold *h);
void limits_release_job(void *job); /* limits_release, as a connection's job_free */
/* The definitions' counts and limits, and the pool's state, as Prometheus lines. */
void limits_metrics(server *s, buf_t *b);

/* api_projections.c: the registry of projections ($projections), run on pool pl. */
int projections_open(factum_t *db, struct pool *pl, const char *data_dir, projections_t **out, factum_error_t *err);
/* How many there are; how many key owns (made first by it: docs/limits.md, "Keys"). */
size_t projections_count(projections_t *ps);
uint64_t projections_count_owned(projections_t *ps, const char *key);
/* Stops every projector (queries waiting on one end); the registry stays for close. */
void projections_stop(projections_t *ps);
void projections_close(projections_t *ps);
/* A cluster follower: starts, redefines and stops projections as $projections says the leader
   did since (a no-op on what this registry wrote itself). 0 or the read's error. */
int projections_follow(projections_t *ps, factum_error_t *err);
/* Prometheus lines of every projection's status, position, lag and failures. */
void projections_metrics(projections_t *ps, buf_t *b);

/* api_sagas.c: the registry of sagas ($sagas), a runner per saga on pool pl. */
int sagas_open(factum_t *db, struct pool *pl, sagas_t **out, factum_error_t *err);
size_t sagas_count(sagas_t *ss);
uint64_t sagas_count_owned(sagas_t *ss, const char *key);
void sagas_close(sagas_t *ss);
/* The same as projections_follow, for $sagas. */
int sagas_follow(sagas_t *ss, factum_error_t *err);
/* Prometheus lines of every saga's counts and durations. */
void sagas_metrics(sagas_t *ss, buf_t *b);

/* follow.c: a cluster node takes the definitions the leader made (a thread) and the secrets
   they need (docs/cluster.md). No-ops standalone. */
int server_follow_start(server *s, factum_error_t *err);
void server_follow_stop(server *s); /* after s->stopping is set */
/* Shares the secrets file at path (written, or removed) with the cluster's other nodes; the
   connectors' share_secret hook (ctx: the server). */
int server_share_secret(void *ctx, const char *path, factum_error_t *err);
/* Writes every secrets file the cluster shares where this node keeps it. */
int server_take_secrets(server *s, factum_error_t *err);

/* overload.c: what keeps a client, or many, from taking everything (docs/limits.md). */
int overload_open(server *s, factum_error_t *err); /* raises RLIMIT_NOFILE, opens the spare descriptor */
void overload_close(server *s);
/* Admits a new connection from addr (16 bytes) or answers it (429 past the per-address limit,
   503 at the cap with no idle connection to close) and closes fd; true when admitted. */
bool overload_admit(loop *l, int fd, const unsigned char addr[16]);
void overload_release(server *s, const unsigned char addr[16]); /* a connection from addr closed */
/* accept4 failed with errno e (EMFILE and the like): answers the waiting connections 503 with the
   spare descriptor, then pauses this loop's accepting briefly. Never spins. */
void overload_no_fds(loop *l, int e);
/* Answers 503 (status) or 429 with a problem body and closes fd; for a connection not yet admitted
   (on a TLS port it is only closed). */
void overload_refuse(const server *s, int fd, int status, const char *detail);
/* The memory budget: charge after any event, reserve before a body is read, over: stop growing. */
void overload_charge(conn *c);
void overload_uncharge(conn *c);
bool overload_reserve(conn *c, size_t n);
bool overload_over(const conn *c);
bool overload_server_over(const server *s);
uint64_t overload_memory_used(const server *s);
uint64_t overload_memory_target(const server *s); /* shedding stops under this */
void overload_metrics(server *s, buf_t *b);
uint64_t overload_nofile(const server *s);

/* guard.c: the loop's sweep closes a subscription or long poll whose key was revoked or ran
   out (or that was admitted while there were no keys, once there are). */
bool guard_lapsed(conn *c, int64_t now_us);

/* audit.c: the writer of $audit. audit_tick sends what refused requests the window held back
   (each loop's sweep calls it). */
int audit_open(factum_t *db, audit_t **out, factum_error_t *err);
void audit_close(audit_t *a);
void audit_tick(audit_t *a, uint64_t now_ms);
/* Records c's answer when its request is an audited change (c->audit) and keys exist. */
void audit_answered(conn *c, int status);
/* tls.c: the server's TLS context from the certificate and key files; tls_reload makes a new
   one from the same files for connections to come (the old one stays on failure, err says why). */
int tls_open(const char *cert, const char *key, server_tls **out, factum_error_t *err);
int tls_reload(server_tls *t, factum_error_t *err);
void tls_close(server_tls *t);
/* tls.c: a connection's TLS, in accept state (the handshake runs in its first reads); 0 or -1. */
int tls_accept(conn *c, server_tls *t);
/* tls.c: recv and send on c, through TLS when c has it: bytes moved, 0 at the end of input
   (recv), or -1 with errno (EAGAIN: retry when epoll says so; c->tls_want adds to the events). */
#define TLS_READ_WANTS_OUT 1 /* a TLS read waits for the socket to be writable */
#define TLS_WRITE_WANTS_IN 2 /* a TLS write waits for it to be readable */
ssize_t tls_recv(conn *c, void *p, size_t n);
ssize_t tls_send(conn *c, const void *p, size_t n);
/* tls.c: gives back c's TLS buffers when it has been idle a while (the loop's sweep calls it). */
void tls_idle(conn *c, uint64_t now_ms);
/* tls.c: bytes OpenSSL read from the socket that a read has not taken (epoll cannot see them). */
bool tls_pending(conn *c);
/* tls.c: sends close_notify (after no fatal error) and frees c's TLS; before its socket closes. */
void tls_end(conn *c);

/* access.c: the access log. access_open opens cfg.access_log (none: nothing to do);
   access_reopen opens it again where the name now points (logrotate: SIGHUP, SIGUSR1);
   access_request notes an answer of c (status, body bytes) once its head is queued, and logs
   a slow one; access_flush writes the loop's lines at the end of its turn. */
int access_open(server *s, factum_error_t *err);
void access_reopen(server *s);
void access_close(server *s);
void access_request(conn *c, int status, size_t bytes);
void access_flush(loop *l);

/* sse.c */
/* Starts a subscription on c (answers the head, or an error). */
void sse_start(conn *c, bool all, factum_str_t stream, const factum_query_t *q, uint64_t from, bool raw);
/* Starts push delivery of a consumer group on c. */
void sse_start_group(conn *c, const char *group, uint32_t max_in_flight, bool raw);
/* A subscription to the events a tag query selects, from position `from`; takes q. */
void sse_start_query(conn *c, factum_tag_query_t *q, uint64_t from);
/* Asks the loop to pump c again after the other connections had their turn. */
void loop_ready(conn *c);
/* server.c: c listens to commits: key 0 wakes it on every commit, a stream key on commits that
   touched that stream. loop_unlisten takes it off (no-op if it was not on). */
void loop_listen(conn *c, uint64_t key);
void loop_unlisten(conn *c);

#endif
