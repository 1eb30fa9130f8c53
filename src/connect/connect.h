/*
 * connect.h — connectors (docs/connectors.md): named definitions that move events across
 * Factum's edge. An `http-sink` delivers the events of a source to an HTTP endpoint in the
 * CloudEvents HTTP binding, through a consumer group of its own (`sink.NAME`: parked, replay
 * and delete are the group's), on a thread of its own with libcurl. A `postgres-outbox` relays
 * the committed rows of an outbox table in PostgreSQL as events, through a logical replication
 * slot (pgoutput), on a thread of its own with libpq.
 *
 * Definitions are records in the system stream $connectors (ConnectorDefined with the name, the
 * definition as shown — no secret — and its owner; ConnectorDeleted), replayed at start. A
 * sink's signing secrets are kept in DATA_DIR/connectors/NAME.secret (mode 0600), never in the
 * log and never in an answer.
 *
 * The engine returns JSON members and structs; src/server/ renders the answers. define, delete
 * and pause block (they may connect to the target and they append): call them from a worker.
 * Thread-safety: every call may be made from any thread.
 */
#ifndef FACTUM_CONNECT_H
#define FACTUM_CONNECT_H

#include "../base/base.h"

#define CONNECTORS_STREAM "$connectors"
#define CONNECTOR_MAX_NAME 64
#define CONNECTORS_MAX 50 /* definitions per server: each sink is a thread */

typedef struct connectors connectors_t;
struct groups;

typedef struct connectors_env {
    factum_t *db;
    struct groups *groups; /* the sinks' consumer groups */
    const char *data_dir;  /* secrets go under DATA_DIR/connectors/ */
    int self_port;         /* the server's own port: a sink may not point at it (0: unknown) */
    /* A connector's secrets file (a path under data_dir) was written or removed: in a cluster,
       share it with the other nodes before the definition is recorded. NULL: nothing to do. */
    int (*share_secret)(void *ctx, const char *path, factum_error_t *err);
    void *share_ctx;
} connectors_env;

/* Reads $connectors and starts every sink. 0, or the read's error. */
int connectors_open(const connectors_env *env, connectors_t **out, factum_error_t *err);
/* Stops the sinks (a delivery in progress is given up: it comes again) and frees everything. */
void connectors_close(connectors_t *cs);
/* A cluster follower: starts, redefines and stops connectors as $connectors says the leader did
   since (a no-op on what this registry wrote itself). 0 or the read's error. */
int connectors_follow(connectors_t *cs, factum_error_t *err);

bool connector_name_ok(const char *name);

/*
 * Checks a definition (PUT /connectors/{name}) — its form, then its target: a sink's URL must be
 * HTTPS unless "allow_http", answer a connection unless "allow_unreachable", and not be this
 * server — and, only when all of it holds, records it and (re)starts the connector. *created
 * says whether the name is new; out gets the connector as connectors_show renders it. Errors:
 * FACTUM_EINVAL (bad input or target, the message says which; nothing created), FACTUM_ETOOBIG
 * (past CONNECTORS_MAX), or the append's. A definition that would make a new consumer group (a
 * new sink) first asks admit_group(ctx, err) (NULL: none), and stops with its error, having
 * created nothing, when it is not 0; the group is applied before this returns.
 */
typedef int (*connectors_admit_fn)(void *ctx, factum_error_t *err);
int connectors_define(connectors_t *cs, const char *name, factum_str_t body, const char *owner,
                      connectors_admit_fn admit_group, void *ctx, bool *created, buf_t *out, factum_error_t *err);
/* Stops the connector, records its deletion, then deletes its group and its secrets.
   FACTUM_ENOTFOUND. */
int connectors_delete(connectors_t *cs, const char *name, factum_error_t *err);
/* Pauses or resumes (recorded: it holds across restarts). FACTUM_ENOTFOUND. out as define's. */
int connectors_pause(connectors_t *cs, const char *name, bool paused, buf_t *out, factum_error_t *err);

/* How a connector is doing. */
typedef struct connector_stats {
    char name[CONNECTOR_MAX_NAME + 1];
    const char *kind;  /* "http-sink", "postgres-outbox" (static) */
    const char *state; /* "running", "paused", "retrying", "failed" (static) */
    uint64_t delivered, failed_attempts, requests;
    /* from its group: how far behind, and what is parked */
    uint64_t lag_positions;
    double lag_seconds;
    size_t in_flight, retrying, parked;
    int last_status; /* HTTP status of the last failed attempt; 0: none, or no answer */
    char last_error[320];
    int64_t last_success_us, last_failure_us; /* wall clock; 0: never */
    uint64_t flushed_lsn, rejected;           /* outbox: the slot's confirmed position; rows not made events */
    uint64_t lag_bytes; /* outbox: WAL between that position and the server's end (what the slot keeps) */
    uint64_t after_rows, after_failures, after_pending; /* outbox: rows deleted or marked, statements
                                                           that failed, relayed rows waiting for a retry */
} connector_stats;

/* The JSON of one connector (GET /connectors/{name}): its definition, state and stats.
   FACTUM_ENOTFOUND. */
int connectors_show(connectors_t *cs, const char *name, buf_t *out);
/* Every connector, as a JSON array. */
void connectors_list(connectors_t *cs, buf_t *out);
/* Calls fn with the stats of every connector (for /metrics). */
void connectors_each_stats(connectors_t *cs, void (*fn)(void *ctx, const connector_stats *st), void *ctx);
size_t connectors_count(connectors_t *cs);

#endif
