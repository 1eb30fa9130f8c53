/*
 * target_pg.c — the PostgreSQL read model, through libpq.
 *
 * A batch is pipelined: BEGIN, then every handler statement of the batch (prepared once per
 * connection as f0, f1, ...), then the checkpoint upsert and COMMIT go out without waiting for
 * answers, with a sync every PIPE_CHUNK statements so neither side's socket buffer fills. One
 * round trip per chunk instead of one per statement. The first statement that fails aborts the
 * transaction; its place in the pipeline says which run it was.
 *
 * The projector's session sets synchronous_commit off: a transaction is atomic and visible at
 * once, and if PostgreSQL crashes the last ones may be lost — with their checkpoint, so they
 * are applied again. Parameters go as text of unknown type, so PostgreSQL types each one from
 * its place in the statement, as it does a quoted literal (`:data.n::numeric` to say).
 */
#include "target.h"

#include "../base/json.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>

#define PIPE_CHUNK 256

struct target {
    PGconn *c;
    bool pipeline; /* in pipeline mode with a batch going */
    size_t queued; /* results due before the next sync: each is a run, or -1 for BEGIN and such */
    long *what;    /* per queued result: the run number, or -1 */
    size_t cap;
    size_t runs;  /* runs in this transaction */
    bool aborted; /* a statement of this transaction failed */
    buf_t vals;   /* NUL-terminated parameter texts */
};

static int code_of(PGconn *c, const PGresult *r) {
    if (PQstatus(c) != CONNECTION_OK) return FACTUM_EUNREACHABLE;
    const char *st = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    if (st && !strcmp(st, "57014")) return FACTUM_ETIMEDOUT; /* query_canceled: statement_timeout */
    if (st && (!strncmp(st, "08", 2) || !strncmp(st, "57P", 3) || !strcmp(st, "53300"))) return FACTUM_EUNREACHABLE;
    return FACTUM_EINVAL;
}

/* The error of r (or of the connection) as one line: PostgreSQL's primary message, its detail,
   and where in the statement. */
static int fail(target *t, const PGresult *r, factum_error_t *err) {
    const char *m = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    char line[300];
    if (m) {
        const char *detail = PQresultErrorField(r, PG_DIAG_MESSAGE_DETAIL);
        const char *at = PQresultErrorField(r, PG_DIAG_STATEMENT_POSITION);
        snprintf(line, sizeof line, "%s%s%s%s%s", m, detail ? " (" : "", detail ? detail : "", detail ? ")" : "",
                 at ? "" : "");
        if (at) snprintf(line + strlen(line), sizeof line - strlen(line), " at character %s", at);
    } else {
        m = PQerrorMessage(t->c);
        snprintf(line, sizeof line, "%s", m && *m ? m : "unknown PostgreSQL error");
    }
    for (char *p = line; *p; p++)
        if (*p == '\n') *p = (p[1] ? ' ' : 0);
    return err_set(err, code_of(t->c, r), "%s", line);
}

/* Runs sql (no parameters) and checks the answer. */
static int pg_exec(target *t, const char *sql, factum_error_t *err) {
    PGresult *r = PQexec(t->c, sql);
    int st = PQresultStatus(r), rc = 0;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) rc = fail(t, r, err);
    PQclear(r);
    return rc;
}

static void pg_close(target *t) {
    if (!t) return;
    PQfinish(t->c);
    free(t->what);
    buf_free(&t->vals);
    free(t);
}

static int pg_connect(const char *where, bool write, target **out, factum_error_t *err) {
    target *t = calloc(1, sizeof *t);
    if (!t) return err_set(err, FACTUM_ENOMEM, "out of memory");
    t->c = PQconnectdb(where);
    int rc = 0;
    if (!t->c || PQstatus(t->c) != CONNECTION_OK) {
        char line[300];
        snprintf(line, sizeof line, "%s", t->c ? PQerrorMessage(t->c) : "out of memory");
        for (char *p = line; *p; p++)
            if (*p == '\n') *p = (p[1] ? ' ' : 0);
        rc = err_set(err, FACTUM_EUNREACHABLE, "cannot connect to PostgreSQL: %s", line);
    } else if (write) {
        rc = pg_exec(t,
                     "SET synchronous_commit = off; SET client_min_messages = warning;"
                     "CREATE TABLE IF NOT EXISTS " TARGET_CHECKPOINT_TABLE
                     " (name text PRIMARY KEY, position bigint NOT NULL, revision bigint, updated timestamptz)",
                     err);
        if (!rc) {
            PGresult *r =
                PQprepare(t->c, "factum_ck",
                          "INSERT INTO " TARGET_CHECKPOINT_TABLE " (name, position, revision, updated) VALUES "
                          "($1, $2, $3, now()) ON CONFLICT (name) DO UPDATE SET position = excluded.position, "
                          "revision = excluded.revision, updated = excluded.updated",
                          3, NULL);
            if (PQresultStatus(r) != PGRES_COMMAND_OK) rc = fail(t, r, err);
            PQclear(r);
        }
        if (rc == FACTUM_EINVAL) { /* a database that cannot be used as a read model */
            rc = FACTUM_EUNREACHABLE;
            if (err) err->code = rc;
        }
    }
    if (rc) {
        pg_close(t);
        return rc;
    }
    *out = t;
    return 0;
}

static int pg_exec_setup(target *t, const char *sql, bool *existed, factum_error_t *err) {
    *existed = false;
    bool tx = PQtransactionStatus(t->c) == PQTRANS_INTRANS;
    if (tx && pg_exec(t, "SAVEPOINT factum_setup", err)) return err->code;
    PGresult *r = PQexec(t->c, sql);
    int st = PQresultStatus(r), rc = 0;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        const char *code = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        /* duplicate_table, duplicate_object, duplicate_schema, duplicate_function */
        if (code &&
            (!strcmp(code, "42P07") || !strcmp(code, "42710") || !strcmp(code, "42P06") || !strcmp(code, "42723")))
            *existed = true;
        else
            rc = fail(t, r, err);
    }
    PQclear(r);
    if (tx && !rc)
        rc = pg_exec(t, *existed ? "ROLLBACK TO SAVEPOINT factum_setup" : "RELEASE SAVEPOINT factum_setup", err);
    return rc;
}

static int pg_prepare(target *t, size_t idx, const sql_stmt *s, factum_error_t *err) {
    char name[32];
    snprintf(name, sizeof name, "f%zu", idx);
    bool tx = PQtransactionStatus(t->c) == PQTRANS_INTRANS;
    if (tx && pg_exec(t, "SAVEPOINT factum_prepare", err)) return err->code;
    PGresult *r = PQprepare(t->c, name, s->sql.ptr, (int)s->nparams, NULL);
    int rc = PQresultStatus(r) == PGRES_COMMAND_OK ? 0 : fail(t, r, err);
    PQclear(r);
    if (tx) {
        factum_error_t e2;
        int r2 = pg_exec(t, rc ? "ROLLBACK TO SAVEPOINT factum_prepare" : "RELEASE SAVEPOINT factum_prepare", &e2);
        if (!rc && r2) rc = r2, *err = e2;
    }
    return rc;
}

static int pg_begin(target *t, factum_error_t *err) {
    t->runs = 0, t->aborted = false, t->queued = 0;
    return pg_exec(t, "BEGIN", err);
}

/* The parameter texts of v, NUL-terminated, into t->vals; pointers into p. */
static int texts(target *t, const sql_value *v, size_t nv, const char **p) {
    size_t offs[SQL_MAX_PARAMS];
    t->vals.len = 0;
    for (size_t i = 0; i < nv; i++) {
        offs[i] = t->vals.len;
        int rc = 0;
        switch (v[i].kind) {
        case SQL_V_INT: rc = buf_printf(&t->vals, "%lld", (long long)v[i].i); break;
        case SQL_V_REAL:
            rc = v[i].s.len ? buf_append(&t->vals, v[i].s.ptr, v[i].s.len) : buf_printf(&t->vals, "%.17g", v[i].r);
            break;
        case SQL_V_BOOL: rc = buf_printf(&t->vals, "%s", v[i].i ? "true" : "false"); break;
        case SQL_V_TEXT:
        case SQL_V_JSON: rc = buf_append(&t->vals, v[i].s.ptr, v[i].s.len); break;
        default: offs[i] = SIZE_MAX; continue;
        }
        if (rc || buf_append(&t->vals, "", 1)) return FACTUM_ENOMEM;
    }
    for (size_t i = 0; i < nv; i++)
        p[i] = offs[i] == SIZE_MAX ? NULL : t->vals.ptr + offs[i];
    return 0;
}

/* Notes one more result due before the next sync: run number `run`, or -1. */
static int expect(target *t, long run) {
    if (t->queued == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : PIPE_CHUNK + 8;
        long *g = realloc(t->what, cap * sizeof *g);
        if (!g) return FACTUM_ENOMEM;
        t->what = g, t->cap = cap;
    }
    t->what[t->queued++] = run;
    return 0;
}

/* Sends a sync and reads every result up to it. The first failure is reported with its run. */
static int drain(target *t, size_t *failed, factum_error_t *err) {
    int rc = 0;
    if (!PQpipelineSync(t->c)) rc = fail(t, NULL, err);
    for (size_t i = 0; i < t->queued && PQstatus(t->c) == CONNECTION_OK; i++) {
        PGresult *r = PQgetResult(t->c);
        int st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
        if (!rc && st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && st != PGRES_PIPELINE_ABORTED) {
            rc = fail(t, r, err);
            *failed = t->what[i] >= 0 ? (size_t)t->what[i] : t->runs;
            t->aborted = true;
        }
        PQclear(r);
        while ((r = PQgetResult(t->c)))
            PQclear(r); /* the NULL that ends this query's results */
    }
    t->queued = 0;
    PGresult *r = PQgetResult(t->c); /* PGRES_PIPELINE_SYNC */
    PQclear(r);
    if (!rc && PQstatus(t->c) != CONNECTION_OK) rc = fail(t, NULL, err);
    return rc;
}

static int pg_run(target *t, size_t idx, const sql_value *v, size_t nv, size_t *failed, factum_error_t *err) {
    char name[32];
    const char *p[SQL_MAX_PARAMS];
    snprintf(name, sizeof name, "f%zu", idx);
    *failed = t->runs;
    if (!t->pipeline) {
        if (!PQenterPipelineMode(t->c)) return fail(t, NULL, err);
        t->pipeline = true;
    }
    if (texts(t, v, nv, p) || expect(t, (long)t->runs)) return err_set(err, FACTUM_ENOMEM, "out of memory");
    if (!PQsendQueryPrepared(t->c, name, (int)nv, p, NULL, NULL, 0)) return fail(t, NULL, err);
    t->runs++;
    return t->queued >= PIPE_CHUNK ? drain(t, failed, err) : 0;
}

/* Leaves pipeline mode once nothing is due. */
static void end_pipeline(target *t) {
    if (!t->pipeline) return;
    if (t->queued) {
        size_t f;
        factum_error_t e;
        drain(t, &f, &e);
    }
    PQexitPipelineMode(t->c);
    t->pipeline = false;
}

static int pg_commit(target *t, const char *name, uint64_t position, int64_t revision, size_t *failed,
                     factum_error_t *err) {
    *failed = t->runs;
    char pos[24], rev[24];
    snprintf(pos, sizeof pos, "%llu", (unsigned long long)position);
    snprintf(rev, sizeof rev, "%lld", (long long)revision);
    const char *p[3] = {name, pos, revision >= 0 ? rev : NULL};
    int rc = 0;
    if (!t->pipeline) {
        PGresult *r = PQexecPrepared(t->c, "factum_ck", 3, p, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) rc = fail(t, r, err);
        PQclear(r);
        return rc ? rc : pg_exec(t, "COMMIT", err);
    }
    if (expect(t, -1) || expect(t, -1)) return err_set(err, FACTUM_ENOMEM, "out of memory");
    if (!PQsendQueryPrepared(t->c, "factum_ck", 3, p, NULL, NULL, 0) ||
        !PQsendQueryParams(t->c, "COMMIT", 0, NULL, NULL, NULL, NULL, 0))
        return fail(t, NULL, err);
    rc = drain(t, failed, err);
    end_pipeline(t);
    return rc;
}

static void pg_rollback(target *t) {
    end_pipeline(t);
    if (PQstatus(t->c) == CONNECTION_OK && PQtransactionStatus(t->c) != PQTRANS_IDLE) {
        PGresult *r = PQexec(t->c, "ROLLBACK");
        PQclear(r);
    }
}

static int pg_checkpoint(target *t, const char *name, bool *found, uint64_t *position, int64_t *revision,
                         factum_error_t *err) {
    *found = false;
    const char *p[1] = {name};
    PGresult *r = PQexecParams(t->c, "SELECT position, revision FROM " TARGET_CHECKPOINT_TABLE " WHERE name = $1", 1,
                               NULL, p, NULL, NULL, 0);
    int rc = 0;
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        rc = fail(t, r, err);
    } else if (PQntuples(r) == 1) {
        *found = true;
        *position = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
        *revision = PQgetisnull(r, 0, 1) ? -1 : strtoll(PQgetvalue(r, 0, 1), NULL, 10);
    }
    PQclear(r);
    return rc;
}

static int pg_forget(target *t, const char *name, factum_error_t *err) {
    const char *p[1] = {name};
    PGresult *r =
        PQexecParams(t->c, "DELETE FROM " TARGET_CHECKPOINT_TABLE " WHERE name = $1", 1, NULL, p, NULL, NULL, 0);
    int rc = PQresultStatus(r) == PGRES_COMMAND_OK ? 0 : fail(t, r, err);
    PQclear(r);
    return rc;
}

static bool pg_privileged(target *t, char *who, size_t cap) {
    PGresult *r = PQexec(t->c, "SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user");
    bool super = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 && !strcmp(PQgetvalue(r, 0, 1), "t");
    if (super) snprintf(who, cap, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    return super;
}

/* One value of a row, as JSON by its column type. */
static void value_json(buf_t *out, const PGresult *r, int row, int col) {
    if (PQgetisnull(r, row, col)) {
        buf_append(out, "null", 4);
        return;
    }
    const char *v = PQgetvalue(r, row, col);
    size_t n = (size_t)PQgetlength(r, row, col);
    switch (PQftype(r, col)) {
    case 20:
    case 21:
    case 23:
    case 700:
    case 701:
    case 1700: /* int8, int2, int4, float4, float8, numeric */
        if (json_valid(v, n, NULL)) {
            buf_append(out, v, n);
            return;
        }
        break; /* NaN, Infinity: as text */
    case 16: buf_append(out, v[0] == 't' ? "true" : "false", v[0] == 't' ? 4 : 5); return;
    case 114:
    case 3802: buf_append(out, v, n); return; /* json, jsonb */
    }
    json_escape_lossy(out, v, n);
}

static int pg_query(target *t, const sql_stmt *s, const sql_value *v, size_t max_rows, uint64_t deadline_ns, buf_t *out,
                    factum_error_t *err) {
    const char *p[SQL_MAX_PARAMS];
    if (texts(t, v, s->nparams, p)) return err_set(err, FACTUM_ENOMEM, "out of memory");
    uint64_t now = clock_mono_ns();
    char set[96];
    snprintf(set, sizeof set, "BEGIN READ ONLY; SET LOCAL statement_timeout = %llu",
             (unsigned long long)(deadline_ns > now ? (deadline_ns - now) / 1000000 + 1 : 1));
    int rc = pg_exec(t, set, err);
    if (rc) return rc;
    PGresult *r = PQexecParams(t->c, s->sql.ptr, (int)s->nparams, NULL, p, NULL, NULL, 0);
    int st = PQresultStatus(r);
    if (st == PGRES_COMMAND_OK) {
        rc = err_set(err, FACTUM_EINVAL, "a query must return rows (a SELECT)");
    } else if (st != PGRES_TUPLES_OK) {
        const char *code = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        rc = code && !strcmp(code, "25006")
                 ? err_set(err, FACTUM_EINVAL, "a query may only read (this statement writes)")
                 : fail(t, r, err);
    } else {
        int ncol = PQnfields(r), nrow = PQntuples(r);
        out->len = 0;
        buf_append(out, "{\"columns\":[", 12);
        for (int i = 0; i < ncol; i++) {
            if (i) buf_append(out, ",", 1);
            const char *name = PQfname(r, i);
            json_escape_lossy(out, name, strlen(name));
        }
        buf_append(out, "],\"rows\":[", 10);
        for (int row = 0; row < nrow && (size_t)row < max_rows; row++) {
            buf_append(out, row ? ",[" : "[", row ? 2 : 1);
            for (int i = 0; i < ncol; i++) {
                if (i) buf_append(out, ",", 1);
                value_json(out, r, row, i);
            }
            buf_append(out, "]", 1);
        }
        if (buf_printf(out, "]%s}", (size_t)nrow > max_rows ? ",\"truncated\":true" : ""))
            rc = err_set(err, FACTUM_ENOMEM, "out of memory");
    }
    PQclear(r);
    if (PQstatus(t->c) == CONNECTION_OK) {
        factum_error_t e2;
        pg_exec(t, "ROLLBACK", &e2);
    } else if (!rc) {
        rc = fail(t, NULL, err);
    }
    return rc;
}

const target_ops target_postgres = {
    SQL_POSTGRES, pg_connect, pg_close,    pg_exec,       pg_exec_setup, pg_prepare, pg_begin,
    pg_run,       pg_commit,  pg_rollback, pg_checkpoint, pg_forget,     pg_query,   pg_privileged,
};
