/*
 * connector.h — private to src/connect/: what a connector is in memory, shared by its files.
 *   def.c       a definition: its checks (form and target), its record's JSON, its secrets file
 *   registry.c  the list, define / delete / pause, start-up replay of $connectors, stats
 *   sink.c      an HTTP sink's thread: pull from its group, POST, ack or nack
 */
#ifndef FACTUM_CONNECTOR_H
#define FACTUM_CONNECTOR_H

#include "connect.h"

#include "../sys/defs.h"
#include "../sys/owners.h"

#include <pthread.h>

#define SINK_MAX_URL 2048
#define SINK_MAX_SECRETS 2 /* the current one and, while rotating, the one before */
#define SINK_SECRET_MIN 16
#define SINK_SECRET_MAX 256
#define SINK_MAX_BATCH 1000
#define SINK_CONCURRENCY 32 /* requests a sink has in flight at once (one event each, distinct streams) */
#define SINK_GROUP_PREFIX "sink."

enum { KIND_HTTP_SINK = 1, KIND_PG_OUTBOX };
enum { COL_STREAM, COL_TYPE, COL_ID, COL_DATA, COL_CORRELATION, COL_CAUSATION, COLS };
#define OUTBOX_MAX_NAME 63 /* PostgreSQL's identifiers */
enum { MODE_BINARY, MODE_STRUCTURED };
enum { AFTER_NONE, AFTER_DELETE, AFTER_MARK }; /* what an outbox relay does to the rows it relayed */

/* A parsed definition. */
typedef struct conn_def {
    int kind;
    char url[SINK_MAX_URL + 1];
    bool allow_http, allow_unreachable, paused;
    int mode;
    uint32_t batch_max, timeout_ms, max_attempts;
    char secrets[SINK_MAX_SECRETS][SINK_SECRET_MAX + 1];
    int nsecrets;
    buf_t group; /* the body of its group's definition (PUT /groups/{g} form) */
    /* postgres-outbox */
    char *conninfo; /* with its password (kept in the secrets file, never shown) */
    char publication[OUTBOX_MAX_NAME + 1], schema[OUTBOX_MAX_NAME + 1], table[OUTBOX_MAX_NAME + 1];
    char slot[OUTBOX_MAX_NAME + 1];
    char cols[COLS][OUTBOX_MAX_NAME + 1]; /* "": not mapped (data, correlation, causation) */
    int after;                            /* AFTER_*: "after_relay" */
    char after_col[OUTBOX_MAX_NAME + 1];  /* AFTER_MARK: the timestamp column set to now() */
    buf_t shown; /* the definition's members as its record and GET show them: no secret, no braces */
} conn_def;

typedef struct connector {
    char name[CONNECTOR_MAX_NAME + 1];
    char group[CONNECTOR_MAX_NAME + sizeof SINK_GROUP_PREFIX];
    char owner[OWNER_MAX];
    conn_def d;
    uint64_t def_hash; /* of its definition as recorded (defs_hash) */
    struct connectors *cs;
    pthread_t thread;
    bool has_thread;
    pthread_mutex_t mu; /* below */
    pthread_cond_t cond;
    bool stop, paused;
    uint64_t delivered, failed_attempts, requests;
    uint64_t flushed_lsn, rejected; /* outbox: the slot's position confirmed; rows not made events */
    uint64_t wal_end;               /* outbox: the server's end of WAL, as its last keepalive said */
    uint64_t after_rows, after_failures, after_pending; /* outbox: after_relay's rows done, statements
                                                           failed, relayed rows waiting for a retry */
    bool retrying, failed;
    int last_status;
    char last_error[320];
    int64_t last_success_us, last_failure_us;
    struct connector *next;
} connector;

struct connectors {
    connectors_env env;
    char *data_dir;
    pthread_mutex_t mu;        /* the list */
    pthread_mutex_t define_mu; /* one definition change at a time: log order = list order */
    connector *list;
    size_t n;
    defs_follower follow; /* $connectors as far as this registry applied it (under define_mu) */
};

/* ---- registry.c: a connector's thread ---- */
/* Starts c's thread on fn (sink_main, outbox_main). 0 or FACTUM_ENOMEM. */
int connector_thread_start(connector *c, void *(*fn)(void *), factum_error_t *err);
/* Tells it to stop and waits for it (a request in flight is given up: it comes again). */
void connector_thread_stop(connector *c);
/* Wakes the thread (pause, resume, stop). */
void connector_poke(connector *c);
/* For the thread: waits up to ms or a poke; false once it is told to stop. */
bool connector_nap(connector *c, int ms);
/* For the thread: whether it is told to stop; *paused whether it is paused. */
bool connector_stopping(connector *c, bool *paused);

/* ---- def.c ---- */
/* Parses a PUT body (record false) or a ConnectorDefined record's definition (record true:
   secrets come from the secrets file, not the body). 0 or FACTUM_EINVAL with the reason. */
int conn_def_parse(const char *name, factum_str_t body, bool record, const char *data_dir, conn_def *d,
                   factum_error_t *err);
/* Checks the target: HTTPS (or allow_http), not this server, answers (or allow_unreachable). */
int conn_def_check(const conn_def *d, int self_port, factum_error_t *err);
/* Renders d->shown from d (paused as given). */
void conn_def_render(conn_def *d);
/* Writes (or, with no secret, removes) the secrets file; forgets it. 0 or FACTUM_EIO. */
int conn_def_keep_secrets(const char *data_dir, const char *name, const conn_def *d, factum_error_t *err);
void conn_def_forget_secrets(const char *data_dir, const char *name);
/* Where name's secrets file is (DATA_DIR/connectors/NAME.secret). */
void conn_def_secrets_path(const char *data_dir, const char *name, char *out, size_t cap);
void conn_def_free(conn_def *d);

/* ---- outbox.c ---- */
/* Parses an outbox definition's own members into d (record: the connection string comes from
   the secrets file). 0 or FACTUM_EINVAL. */
int outbox_def_parse(const char *name, factum_str_t body, bool record, const char *data_dir, conn_def *d,
                     factum_error_t *err);
void outbox_def_render(conn_def *d);
/* Connects and checks: wal_level, the publication, the table and its columns; makes the slot
   when there is none. 0 or FACTUM_EINVAL with what is wrong. */
int outbox_check(const conn_def *d, factum_error_t *err);
/* Drops the slot (a deleted connector). */
void outbox_drop_slot(const conn_def *d);
void *outbox_main(void *c); /* the relay's thread */

/* ---- sink.c ---- */
void *sink_main(void *c); /* the sink's thread */
/* The signature header's value for body at unix time t: "t=T,v1=HEX[,v1=HEX]" (one per secret). */
void sink_sign(const conn_def *d, int64_t t, const char *body, size_t n, buf_t *out);

#endif
