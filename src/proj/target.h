/*
 * target.h — a projection's read-model database: SQLite (target_sqlite.c) or PostgreSQL
 * (target_pg.c) behind one set of calls, so the projector and the query path do not care which.
 *
 * A connection belongs to one thread at a time. The projector's connection ("write") runs
 * batches: begin, run a prepared handler statement per event, commit with the checkpoint. The
 * checkpoint row (table factum_projections) changes in the same transaction as the read model,
 * which is what makes the effect exactly once. A "read" connection runs queries and refuses
 * writes. Errors come back as FACTUM_E* codes with the database's message in err; a statement
 * that failed is named by the index of the run call that issued it (PostgreSQL pipelines a
 * batch, so a failure may only be known at commit).
 */
#ifndef FACTUM_TARGET_H
#define FACTUM_TARGET_H

#include "sqlparam.h"

#define TARGET_CHECKPOINT_TABLE "factum_projections"

typedef struct target target;

typedef struct target_ops {
    int dialect; /* SQL_SQLITE or SQL_POSTGRES */
    /* where: a file path (SQLite) or a libpq conninfo. FACTUM_EUNAVAILABLE if it cannot be reached. */
    int (*connect)(const char *where, bool write, target **out, factum_error_t *err);
    void (*close)(target *t);
    /* One statement without parameters, outside or inside a transaction. */
    int (*exec)(target *t, const char *sql, factum_error_t *err);
    /* Setup: like exec, but an object that already exists is not an error (*existed = true). */
    int (*exec_setup)(target *t, const char *sql, bool *existed, factum_error_t *err);
    /* Prepares handler statement number idx (0..n-1, kept until close). */
    int (*prepare)(target *t, size_t idx, const sql_stmt *s, factum_error_t *err);
    int (*begin)(target *t, factum_error_t *err);
    /* Runs prepared statement idx with values v. *failed: which run of this transaction failed
       (counted from 0), valid when the call returns an error. */
    int (*run)(target *t, size_t idx, const sql_value *v, size_t nv, size_t *failed, factum_error_t *err);
    /* Writes the checkpoint of projection `name` and commits. Errors as for run. */
    int (*commit)(target *t, const char *name, uint64_t position, int64_t revision, size_t *failed,
                  factum_error_t *err);
    void (*rollback)(target *t);
    /* The checkpoint: *found false when the projection has none (new, or reset). */
    int (*checkpoint)(target *t, const char *name, bool *found, uint64_t *position, int64_t *revision,
                      factum_error_t *err);
    /* Removes the checkpoint row (inside a transaction the caller commits). */
    int (*forget)(target *t, const char *name, factum_error_t *err);
    /*
     * A read-only query with values v: {"columns":[...],"rows":[[...],...]} into out, at most
     * max_rows rows (then "truncated":true), giving up at deadline_ns (clock_mono_ns). A
     * statement that writes, or more than one statement, is FACTUM_EINVAL.
     */
    int (*query)(target *t, const sql_stmt *s, const sql_value *v, size_t max_rows, uint64_t deadline_ns, buf_t *out,
                 factum_error_t *err);
    /* Whether the connection's role can do more than a read model needs (a PostgreSQL
       superuser): its name into who, for a warning. */
    bool (*privileged)(target *t, char *who, size_t cap);
} target_ops;

extern const target_ops target_sqlite, target_postgres;

#endif
