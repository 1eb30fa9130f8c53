/*
 * target_sqlite.c — the SQLite read model. The projector's connection puts the file in WAL mode
 * with synchronous=NORMAL: a transaction is atomic and survives the process dying, and if the
 * machine loses power the last transactions may roll back — together with their checkpoint,
 * so the projector simply applies those events again. The read model is derived data; the log
 * is what must be durable. Queries use their own read-only connections, which WAL lets run
 * beside the projector's writes.
 */
#include "target.h"

#include "../base/json.h"

#include <ctype.h>
#include <sqlite3.h>
#include <strings.h>
#include <stdio.h>
#include <stdlib.h>

struct target {
    sqlite3 *db;
    sqlite3_stmt **stmts;
    size_t nstmts;
    sqlite3_stmt *ck_set, *ck_get, *ck_del;
    size_t runs; /* run calls in the open transaction */
};

static int fail(target *t, factum_error_t *err, const char *what) {
    return err_set(err, FACTUM_EINVAL, "%s: %s", what, t->db ? sqlite3_errmsg(t->db) : "no connection");
}

static void sq_close(target *t) {
    if (!t) return;
    for (size_t i = 0; i < t->nstmts; i++)
        sqlite3_finalize(t->stmts[i]);
    free(t->stmts);
    sqlite3_finalize(t->ck_set);
    sqlite3_finalize(t->ck_get);
    sqlite3_finalize(t->ck_del);
    sqlite3_close_v2(t->db);
    free(t);
}

static int sq_exec(target *t, const char *sql, factum_error_t *err) {
    char *msg = NULL;
    if (sqlite3_exec(t->db, sql, NULL, NULL, &msg) == SQLITE_OK) return 0;
    int rc = err_set(err, FACTUM_EINVAL, "%s", msg ? msg : sqlite3_errmsg(t->db));
    sqlite3_free(msg);
    return rc;
}

/*
 * What user statements (setup, handlers, queries) may not do, whatever the definition says:
 * reach another file (ATTACH, DETACH, VACUUM INTO, which needs an attachment), load code
 * (load_extension), or change the connection with a PRAGMA other than the ones that only
 * describe the schema. SQLite asks this at every prepare, so a statement that tries fails there
 * with "not authorized". Installed after the connection's own PRAGMAs.
 */
static int sq_authorize(void *ctx, int action, const char *a1, const char *a2, const char *db, const char *trigger) {
    (void)ctx, (void)db, (void)trigger;
    static const char *const described[] = {"table_info",  "table_xinfo",      "index_list", "index_info",
                                            "index_xinfo", "foreign_key_list", "table_list", NULL};
    switch (action) {
    case SQLITE_ATTACH:
    case SQLITE_DETACH: return SQLITE_DENY;
    case SQLITE_FUNCTION: return a2 && !strcasecmp(a2, "load_extension") ? SQLITE_DENY : SQLITE_OK;
    case SQLITE_PRAGMA:
        for (int i = 0; a1 && described[i]; i++)
            if (!strcasecmp(a1, described[i])) return SQLITE_OK;
        return SQLITE_DENY;
    default: return SQLITE_OK;
    }
}

static void sq_confine(sqlite3 *db) {
    sqlite3_limit(db, SQLITE_LIMIT_ATTACHED, 0);
    sqlite3_db_config(db, SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION, 0, (int *)NULL);
    sqlite3_db_config(db, SQLITE_DBCONFIG_DEFENSIVE, 1, (int *)NULL);
    sqlite3_db_config(db, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, (int *)NULL);
    sqlite3_set_authorizer(db, sq_authorize, NULL);
}

static int sq_connect(const char *where, bool write, target **out, factum_error_t *err) {
    target *t = calloc(1, sizeof *t);
    if (!t) return err_set(err, FACTUM_ENOMEM, "out of memory");
    int flags = (write ? SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE : SQLITE_OPEN_READONLY) | SQLITE_OPEN_NOMUTEX;
    int rc = 0;
    if (sqlite3_open_v2(where, &t->db, flags, NULL) != SQLITE_OK) {
        rc = err_set(err, FACTUM_EUNREACHABLE, "cannot open SQLite database %s: %s", where,
                     t->db ? sqlite3_errmsg(t->db) : "out of memory");
    } else {
        sqlite3_busy_timeout(t->db, 10000);
        if (write &&
            !(rc = sq_exec(t,
                           "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                           "CREATE TABLE IF NOT EXISTS " TARGET_CHECKPOINT_TABLE
                           " (name TEXT PRIMARY KEY, position BIGINT NOT NULL, revision BIGINT, updated TEXT)",
                           err)) &&
            (sqlite3_prepare_v3(
                 t->db,
                 "INSERT INTO " TARGET_CHECKPOINT_TABLE " (name, position, revision, updated) VALUES "
                 "(?1, ?2, ?3, strftime('%Y-%m-%dT%H:%M:%fZ')) ON CONFLICT (name) DO UPDATE SET "
                 "position = excluded.position, revision = excluded.revision, updated = excluded.updated",
                 -1, SQLITE_PREPARE_PERSISTENT, &t->ck_set, NULL) ||
             sqlite3_prepare_v3(t->db, "DELETE FROM " TARGET_CHECKPOINT_TABLE " WHERE name = ?1", -1,
                                SQLITE_PREPARE_PERSISTENT, &t->ck_del, NULL) ||
             sqlite3_prepare_v3(t->db, "SELECT position, revision FROM " TARGET_CHECKPOINT_TABLE " WHERE name = ?1", -1,
                                SQLITE_PREPARE_PERSISTENT, &t->ck_get, NULL)))
            rc = fail(t, err, "preparing the checkpoint statements");
        if (!rc) sq_confine(t->db);
    }
    if (rc) {
        if (rc == FACTUM_EINVAL) { /* a file that cannot be used as a read model */
            rc = FACTUM_EUNREACHABLE;
            if (err) err->code = rc;
        }
        sq_close(t);
        return rc;
    }
    *out = t;
    return 0;
}

static bool blank(const char *s);

/* One setup statement: exactly one (a string that held several ran them all, ATTACH included). */
static int sq_exec_setup(target *t, const char *sql, bool *existed, factum_error_t *err) {
    *existed = false;
    sqlite3_stmt *st = NULL;
    const char *tail = NULL;
    int rc = 0;
    if (sqlite3_prepare_v2(t->db, sql, -1, &st, &tail) != SQLITE_OK)
        rc = fail(t, err, "SQL error");
    else if (!st)
        rc = err_set(err, FACTUM_EINVAL, "empty statement");
    else if (tail && !blank(tail))
        rc = err_set(err, FACTUM_EINVAL, "more than one statement (give each its own string)");
    else if ((rc = sqlite3_step(st)) == SQLITE_DONE || rc == SQLITE_ROW)
        rc = 0;
    else
        rc = fail(t, err, "SQL error");
    sqlite3_finalize(st);
    if (rc && strstr(err->message, "already exists")) *existed = true, rc = 0;
    return rc;
}

/* Whether only whitespace and comments are left. */
static bool blank(const char *s) {
    for (;;) {
        while (isspace((unsigned char)*s) || *s == ';')
            s++;
        if (s[0] == '-' && s[1] == '-') {
            while (*s && *s != '\n')
                s++;
        } else if (s[0] == '/' && s[1] == '*') {
            const char *e = strstr(s + 2, "*/");
            if (!e) return true;
            s = e + 2;
        } else {
            return !*s;
        }
    }
}

/* Prepares one statement, refusing a second one after it and parameters of other kinds. */
static int prepare_one(target *t, const sql_stmt *s, unsigned flags, sqlite3_stmt **out, factum_error_t *err) {
    const char *tail = NULL;
    if (sqlite3_prepare_v3(t->db, s->sql.ptr, (int)s->sql.len, flags, out, &tail) != SQLITE_OK)
        return fail(t, err, "SQL error");
    int rc = 0;
    if (!*out)
        rc = err_set(err, FACTUM_EINVAL, "empty statement");
    else if (tail && !blank(tail))
        rc = err_set(err, FACTUM_EINVAL, "more than one statement (give each its own string)");
    else if ((size_t)sqlite3_bind_parameter_count(*out) != s->nparams)
        rc = err_set(err, FACTUM_EINVAL, "parameters other than :name ones");
    if (rc) {
        sqlite3_finalize(*out);
        *out = NULL;
    }
    return rc;
}

static int sq_prepare(target *t, size_t idx, const sql_stmt *s, factum_error_t *err) {
    if (idx >= t->nstmts) {
        sqlite3_stmt **n = realloc(t->stmts, (idx + 1) * sizeof *n);
        if (!n) return err_set(err, FACTUM_ENOMEM, "out of memory");
        memset(n + t->nstmts, 0, (idx + 1 - t->nstmts) * sizeof *n);
        t->stmts = n, t->nstmts = idx + 1;
    }
    sqlite3_finalize(t->stmts[idx]);
    t->stmts[idx] = NULL;
    return prepare_one(t, s, SQLITE_PREPARE_PERSISTENT, &t->stmts[idx], err);
}

static int sq_begin(target *t, factum_error_t *err) {
    t->runs = 0;
    return sq_exec(t, "BEGIN IMMEDIATE", err);
}

static void bind_all(sqlite3_stmt *st, const sql_value *v, size_t nv) {
    for (size_t i = 0; i < nv; i++) {
        int k = (int)i + 1;
        switch (v[i].kind) {
        case SQL_V_INT:
        case SQL_V_BOOL: sqlite3_bind_int64(st, k, v[i].i); break;
        case SQL_V_REAL: sqlite3_bind_double(st, k, v[i].r); break;
        case SQL_V_TEXT:
        case SQL_V_JSON: sqlite3_bind_text(st, k, v[i].s.ptr, (int)v[i].s.len, SQLITE_STATIC); break;
        default: sqlite3_bind_null(st, k); break;
        }
    }
}

/* Steps a statement to its end (rows of a RETURNING clause are passed over). */
static int step_done(sqlite3_stmt *st) {
    int r;
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
    }
    sqlite3_reset(st);
    return r == SQLITE_DONE ? 0 : r;
}

static int sq_run(target *t, size_t idx, const sql_value *v, size_t nv, size_t *failed, factum_error_t *err) {
    sqlite3_stmt *st = t->stmts[idx];
    *failed = t->runs++;
    bind_all(st, v, nv);
    int r = step_done(st);
    sqlite3_clear_bindings(st);
    return r ? fail(t, err, "SQL error") : 0;
}

static int sq_commit(target *t, const char *name, uint64_t position, int64_t revision, size_t *failed,
                     factum_error_t *err) {
    *failed = t->runs;
    sqlite3_bind_text(t->ck_set, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(t->ck_set, 2, (int64_t)position);
    if (revision >= 0)
        sqlite3_bind_int64(t->ck_set, 3, revision);
    else
        sqlite3_bind_null(t->ck_set, 3);
    int r = step_done(t->ck_set);
    sqlite3_clear_bindings(t->ck_set);
    if (r) return fail(t, err, "writing the checkpoint");
    return sq_exec(t, "COMMIT", err);
}

static void sq_rollback(target *t) {
    if (!sqlite3_get_autocommit(t->db)) sqlite3_exec(t->db, "ROLLBACK", NULL, NULL, NULL);
}

static int sq_checkpoint(target *t, const char *name, bool *found, uint64_t *position, int64_t *revision,
                         factum_error_t *err) {
    *found = false;
    sqlite3_bind_text(t->ck_get, 1, name, -1, SQLITE_STATIC);
    int r = sqlite3_step(t->ck_get);
    if (r == SQLITE_ROW) {
        *found = true;
        *position = (uint64_t)sqlite3_column_int64(t->ck_get, 0);
        *revision = sqlite3_column_type(t->ck_get, 1) == SQLITE_NULL ? -1 : sqlite3_column_int64(t->ck_get, 1);
    }
    sqlite3_reset(t->ck_get);
    return r == SQLITE_ROW || r == SQLITE_DONE ? 0 : fail(t, err, "reading the checkpoint");
}

static int sq_forget(target *t, const char *name, factum_error_t *err) {
    sqlite3_bind_text(t->ck_del, 1, name, -1, SQLITE_STATIC);
    return step_done(t->ck_del) ? fail(t, err, "removing the checkpoint") : 0;
}

static int past_deadline(void *arg) { return clock_mono_ns() > *(uint64_t *)arg; }

static int sq_query(target *t, const sql_stmt *s, const sql_value *v, size_t max_rows, uint64_t deadline_ns, buf_t *out,
                    factum_error_t *err) {
    sqlite3_stmt *st;
    int rc = prepare_one(t, s, 0, &st, err);
    if (rc) return rc;
    if (!sqlite3_stmt_readonly(st)) {
        sqlite3_finalize(st);
        return err_set(err, FACTUM_EINVAL, "a query may only read (this statement writes)");
    }
    bind_all(st, v, s->nparams);
    sqlite3_progress_handler(t->db, 1000, past_deadline, &deadline_ns);
    int ncol = sqlite3_column_count(st), r;
    out->len = 0;
    buf_append(out, "{\"columns\":[", 12);
    for (int i = 0; i < ncol; i++) {
        const char *name = sqlite3_column_name(st, i);
        if (i) buf_append(out, ",", 1);
        json_escape_lossy(out, name ? name : "", name ? strlen(name) : 0);
    }
    buf_append(out, "],\"rows\":[", 10);
    size_t rows = 0;
    while ((r = sqlite3_step(st)) == SQLITE_ROW && rows < max_rows) {
        buf_append(out, rows ? ",[" : "[", rows ? 2 : 1);
        rows++;
        for (int i = 0; i < ncol; i++) {
            if (i) buf_append(out, ",", 1);
            switch (sqlite3_column_type(st, i)) {
            case SQLITE_INTEGER: buf_printf(out, "%lld", (long long)sqlite3_column_int64(st, i)); break;
            case SQLITE_FLOAT: {
                double d = sqlite3_column_double(st, i);
                if (d == d && d - d == 0)
                    buf_printf(out, "%.17g", d);
                else
                    buf_append(out, "null", 4);
                break;
            }
            case SQLITE_TEXT:
                json_escape_lossy(out, (const char *)sqlite3_column_text(st, i), (size_t)sqlite3_column_bytes(st, i));
                break;
            case SQLITE_BLOB: {
                const uint8_t *b = sqlite3_column_blob(st, i);
                size_t n = (size_t)sqlite3_column_bytes(st, i);
                buf_append(out, "\"\\\\x", 4);
                for (size_t k = 0; k < n; k++)
                    buf_printf(out, "%02x", b[k]);
                buf_append(out, "\"", 1);
                break;
            }
            default: buf_append(out, "null", 4); break;
            }
        }
        buf_append(out, "]", 1);
    }
    bool truncated = r == SQLITE_ROW;
    if (r != SQLITE_ROW && r != SQLITE_DONE)
        rc = r == SQLITE_INTERRUPT ? err_set(err, FACTUM_ETIMEDOUT, "the query ran past its timeout")
                                   : fail(t, err, "SQL error");
    sqlite3_progress_handler(t->db, 0, NULL, NULL);
    sqlite3_finalize(st);
    if (!rc && buf_printf(out, "]%s}", truncated ? ",\"truncated\":true" : ""))
        rc = err_set(err, FACTUM_ENOMEM, "out of memory");
    return rc;
}

static bool sq_privileged(target *t, char *who, size_t cap) {
    (void)t, (void)who, (void)cap;
    return false; /* a file, confined (sq_authorize) */
}

const target_ops target_sqlite = {
    SQL_SQLITE, sq_connect, sq_close,    sq_exec,       sq_exec_setup, sq_prepare, sq_begin,
    sq_run,     sq_commit,  sq_rollback, sq_checkpoint, sq_forget,     sq_query,   sq_privileged,
};
