/*
 * projector.h — one projection (docs/projections.md): its definition, the task that applies
 * events to its read model, its status, and queries on the read model.
 *
 * The projector reads the log in position order in batches and, for each batch, runs the
 * handler statements of every event and writes its checkpoint in one database transaction. It
 * trusts only the checkpoint it reads back from the database, so a crash of Factum or of the
 * database connection at any moment neither skips nor repeats an event's effect. A statement
 * that fails stops the projection at that event (the events before it in the batch are
 * committed); a new definition resumes from there.
 *
 * Threads: a projector is a task on the definitions' pool (sys/pool.h); its slices own the
 * write connection, one at a time. Status, reset and queries may be called from any thread;
 * queries block (waiting for min_position, then the database), so the server runs them on
 * worker threads. A projector is reference-counted: projector_stop takes the task off the pool
 * (after a batch in progress) and drops the caller's reference; queries still running hold
 * their own.
 */
#ifndef FACTUM_PROJECTOR_H
#define FACTUM_PROJECTOR_H

#include "../base/base.h"
#include "../sys/pool.h"

#define PROJ_MAX_NAME 100

typedef struct proj_def proj_def;
typedef struct projector projector;

/* A valid projection name: 1 to PROJ_MAX_NAME of [A-Za-z0-9_.-], not starting with a dot. */
bool proj_name_valid(const char *name);

/*
 * Parses a definition body (no I/O). A default SQLite target is data_dir/projections/NAME.sqlite;
 * a relative SQLite path is taken from data_dir. 0, or FACTUM_EINVAL with what is wrong (the
 * member, the handler and statement, the byte offset of a parameter), FACTUM_ENOMEM.
 */
int proj_def_parse(const char *name, factum_str_t body, const char *data_dir, proj_def **out, factum_error_t *err);
void proj_def_free(proj_def *d);
/* The definition as given (JSON), valid while d lives. */
factum_str_t proj_def_json(const proj_def *d);
/* The definition as answered to users and as recorded in $projections: a PostgreSQL connection
   string's password replaced by *****. */
factum_str_t proj_def_shown(const proj_def *d);
/* Keeps a PostgreSQL target's password apart from the record: DATA/projections/NAME.secret, mode
   0600, written durably before the record is (parsing the recorded definition takes it back from
   there). Without a password, removes the file. 0 or FACTUM_EIO. */
int proj_def_keep_secret(const proj_def *d, factum_error_t *err);
/* Removes the file proj_def_keep_secret wrote (a deleted projection). */
void proj_def_forget_secret(const proj_def *d);
/* Where that file is: ROOT/projections/NAME.secret (mode 0600). */
void proj_def_secret_path(const proj_def *d, char *out, size_t cap);
/* Whether the read model is the default SQLite file under the data folder (then its files are
   removed with the projection). */
const char *proj_def_default_file(const proj_def *d);
/* Whether the read model is the node's own (SQLite), not shared by a cluster's nodes (PostgreSQL). */
bool proj_def_node_local(const proj_def *d);

/*
 * Checks d against its database: connects, and in a transaction that is rolled back runs the
 * setup and prepares every handler statement. FACTUM_EINVAL with the statement and the
 * database's message; FACTUM_EUNREACHABLE if the database cannot be reached. Warnings (JSON
 * strings, comma-separated) go to *warnings when it is not NULL: a superuser role.
 */
int proj_def_check(const proj_def *d, buf_t *warnings, factum_error_t *err);

/* Removes what d's setup created (tables, views, sequences; indexes and triggers go with their
   tables) and d's checkpoint, in one transaction. */
int proj_def_drop(const proj_def *d, factum_error_t *err);

/* Starts projecting with d on pool pl (the projector owns d from here, also on error). */
int projector_start(factum_t *db, pool *pl, proj_def *d, projector **out, factum_error_t *err);
/* Takes it off the pool (waits for a batch in progress), closes its connections and drops the
   reference projector_start gave. */
void projector_stop(projector *p);
void projector_ref(projector *p);
void projector_unref(projector *p);

/* Its definition, valid while the caller holds a reference. */
const proj_def *projector_definition(const projector *p);

/* Asks for a rebuild: drop what the setup created and the checkpoint, set up again, start
   from the first event. Also leaves the failed state. */
void projector_reset(projector *p);

typedef enum { PROJ_RUNNING, PROJ_FAILED, PROJ_STOPPED } proj_state;
extern const char *const projector_status_names[3]; /* by proj_state */

typedef struct projector_stats {
    proj_state status;
    bool rebuilding;
    uint64_t position;   /* every event before it is applied */
    uint64_t lag_events; /* log positions from position to the head */
    double lag_seconds;  /* age of the first event not yet applied (0 when caught up) */
    double events_per_second;
    uint64_t applied;  /* events applied by this projector (since it started) */
    uint64_t failures; /* times it stopped as failed (since it started) */
} projector_stats;

/* Where it stands, for /projections and /metrics (any thread). */
void projector_get_stats(projector *p, projector_stats *st);

/* {"name","status","position","lag_events","lag_seconds","events_per_second","applied",
   "rebuilding","last_error","definition"}, as JSON into out (appended). */
void projector_status(projector *p, bool with_definition, buf_t *out);

/*
 * A query {"sql","params","min_position","timeout_ms"}: waits until every event before
 * min_position + 1 is applied, then runs the SQL read-only. The answer into out. FACTUM_EINVAL
 * (bad body, SQL error, a statement that writes), FACTUM_ETIMEDOUT, FACTUM_ECONFLICT (the
 * projection failed before reaching min_position), FACTUM_ECLOSED (stopped meanwhile),
 * FACTUM_EUNREACHABLE.
 */
int projector_query(projector *p, factum_str_t body, buf_t *out, factum_error_t *err);

#endif
