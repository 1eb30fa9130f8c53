/*
 * outbox.c — a postgres-outbox connector: a transactional outbox relay (docs/connectors.md). Its
 * thread connects to PostgreSQL as a logical-replication client (libpq, `replication=database`)
 * and reads the slot with the built-in pgoutput plugin (protocol version 1): Relation messages
 * say which columns the outbox table has, Begin / Insert / Commit bring each committed
 * transaction's rows, in commit order; rolled-back transactions are never sent. At each Commit
 * the transaction's outbox rows are appended, one event each, with the row's id as the event's
 * id — so a transaction sent again after a restart of either side is an idempotent repeat —
 * and only once those appends are durable does the relay confirm the Commit's end LSN as the
 * slot's flush position. Nothing is skipped: the slot keeps every transaction not confirmed.
 *
 * With "after_relay", the relayed rows are then deleted or marked (a timestamp column set to
 * now()) on an ordinary connection: after their events are durable, before the slot is
 * confirmed past them; a failure is counted and the rows are tried again.
 *
 * Here too: the definition's members and the checks at PUT (connection, wal_level, publication,
 * table and columns, the publication holding the table, that after_relay's statement may run),
 * making the slot at PUT and dropping it at DELETE.
 */
#include "connector.h"

#include "../base/json.h"
#include "../base/log.h"
#include "../io/io.h"
#include "../proj/def.h"

#include <errno.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/select.h>
#include <unistd.h>

#define PG_EPOCH_US 946684800000000LL /* 2000-01-01 in Unix microseconds */
#define STATUS_EVERY_US 1000000       /* a standby status update at least this often */
#define FLUSH_ROWS 5000               /* committed rows received before they are appended, at most */
#define AFTER_MAX_PENDING 100000      /* relayed rows kept for after_relay to try again, at most */
#define AFTER_RETRY_US 1000000        /* after_relay tries again at least this often while rows wait */

/* ---- the definition ---- */

static bool ident_ok(const char *s) {
    size_t n = strlen(s);
    if (!n || n > OUTBOX_MAX_NAME) return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_' ||
              (s[i] >= 'A' && s[i] <= 'Z')))
            return false;
    return true;
}

/* A string member that is an identifier (letters, digits, '_'; at most 63). */
static int ident_member(factum_str_t obj, const char *key, bool required, char *out, factum_error_t *err) {
    factum_str_t v;
    int kind;
    out[0] = 0;
    if (!json_member(obj, key, &v, &kind)) return required ? err_set(err, FACTUM_EINVAL, "'%s' is required", key) : 0;
    buf_t b = {0};
    bool ok = kind == JSON_STRING && !json_unescape(v, &b) && b.len <= OUTBOX_MAX_NAME;
    if (ok) memcpy(out, b.ptr, b.len), out[b.len] = 0;
    buf_free(&b);
    if (!ok || !ident_ok(out))
        return err_set(err, FACTUM_EINVAL, "'%s' must be a name of 1 to %d letters, digits or '_'", key,
                       OUTBOX_MAX_NAME);
    return 0;
}

static const char *const col_keys[COLS] = {"stream", "type", "id", "data", "correlation", "causation"};

static void secret_path(const char *data_dir, const char *name, char *out, size_t cap) {
    snprintf(out, cap, "%s/connectors/%s.secret", data_dir, name);
}

/* "after_relay": {"action": "delete"} or {"action": "mark", "column": C}; absent: nothing. */
static int after_relay_parse(factum_str_t body, conn_def *d, factum_error_t *err) {
    factum_str_t v;
    int kind, rc;
    d->after = AFTER_NONE;
    if (!json_member(body, "after_relay", &v, &kind)) return 0;
    static const char *const members[] = {"action", "column", NULL};
    if (kind != JSON_OBJECT)
        return err_set(err, FACTUM_EINVAL,
                       "'after_relay' must be {\"action\": \"delete\"} or {\"action\": \"mark\", \"column\": C}");
    if ((rc = json_only_members(v, "'after_relay'", members, err))) return rc;
    char action[16] = "";
    factum_str_t a;
    buf_t b = {0};
    if (json_member(v, "action", &a, &kind) && kind == JSON_STRING && !json_unescape(a, &b) && b.len < sizeof action)
        memcpy(action, b.ptr, b.len), action[b.len] = 0;
    buf_free(&b);
    d->after = !strcmp(action, "delete") ? AFTER_DELETE : !strcmp(action, "mark") ? AFTER_MARK : AFTER_NONE;
    if (d->after == AFTER_NONE)
        return err_set(err, FACTUM_EINVAL,
                       "'after_relay' 'action' must be delete (delete each relayed row) or mark (set a timestamp "
                       "column of each relayed row to now())");
    if ((rc = ident_member(v, "column", d->after == AFTER_MARK, d->after_col, err))) return rc;
    if (d->after == AFTER_DELETE && d->after_col[0])
        return err_set(err, FACTUM_EINVAL, "'after_relay' 'column' is for the action mark only");
    return 0;
}

int outbox_def_parse(const char *name, factum_str_t body, bool record, const char *data_dir, conn_def *d,
                     factum_error_t *err) {
    static const char *const put_members[] = {"kind",    "postgres",    "publication", "table", "slot",
                                              "columns", "after_relay", "paused",      NULL};
    static const char *const rec_members[] = {"kind",    "postgres",    "publication", "table",        "slot",
                                              "columns", "after_relay", "paused",      "secret_count", NULL};
    int rc, kind;
    factum_str_t v, cols;
    if ((rc = json_only_members(body, "a postgres-outbox connector", record ? rec_members : put_members, err)))
        return rc;
    d->kind = KIND_PG_OUTBOX;
    buf_t conn = {0};
    if (!json_member(body, "postgres", &v, &kind) || kind != JSON_STRING || json_unescape(v, &conn) || !conn.len ||
        memchr(conn.ptr, 0, conn.len)) {
        buf_free(&conn);
        return err_set(err, FACTUM_EINVAL, "'postgres' must be a libpq connection string");
    }
    buf_append(&conn, "", 1);
    uint64_t secret = 0;
    if (record && json_member_u64(body, "secret_count", &secret) && secret) {
        /* the recorded string is redacted: the whole one is in the secrets file */
        char path[4200], *text = NULL;
        size_t n;
        secret_path(data_dir, name, path, sizeof path);
        int e = io_read_file(path, &text, &n);
        buf_free(&conn);
        if (e)
            return err_set(err, FACTUM_EIO, "connector %s: cannot read its connection string from %s: %s", name, path,
                           strerror(-e));
        d->conninfo = text;
    } else {
        d->conninfo = conn.ptr;
    }
    if ((rc = ident_member(body, "publication", true, d->publication, err))) return rc;
    /* "table" or "schema.table" */
    buf_t t = {0};
    if (!json_member(body, "table", &v, &kind) || kind != JSON_STRING || json_unescape(v, &t) || t.len > 2 * 64) {
        buf_free(&t);
        return err_set(err, FACTUM_EINVAL, "'table' must be TABLE or SCHEMA.TABLE");
    }
    buf_append(&t, "", 1);
    char *dot = strchr(t.ptr, '.');
    snprintf(d->schema, sizeof d->schema, "%.*s", dot ? (int)(dot - t.ptr) : 6, dot ? t.ptr : "public");
    snprintf(d->table, sizeof d->table, "%s", dot ? dot + 1 : t.ptr);
    bool tok = ident_ok(d->schema) && ident_ok(d->table) && (!dot || (size_t)(dot - t.ptr) <= OUTBOX_MAX_NAME);
    buf_free(&t);
    if (!tok) return err_set(err, FACTUM_EINVAL, "'table' must be TABLE or SCHEMA.TABLE (letters, digits, '_')");
    if ((rc = ident_member(body, "slot", false, d->slot, err))) return rc;
    if (!d->slot[0]) {
        snprintf(d->slot, sizeof d->slot, "factum_%s", name);
        for (char *p = d->slot; *p; p++)
            *p = *p == '-' ? '_' : (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
    }
    for (const char *p = d->slot; *p; p++)
        if (*p >= 'A' && *p <= 'Z') return err_set(err, FACTUM_EINVAL, "'slot' must be lower case (PostgreSQL's rule)");
    if (!json_member(body, "columns", &cols, &kind))
        cols = str_c("{}");
    else if (kind != JSON_OBJECT)
        return err_set(err, FACTUM_EINVAL, "'columns' must be an object");
    static const char *const col_members[] = {"stream", "type", "id", "data", "correlation", "causation", NULL};
    if ((rc = json_only_members(cols, "'columns'", col_members, err))) return rc;
    for (int i = 0; i < COLS; i++) {
        if ((rc = ident_member(cols, col_keys[i], false, d->cols[i], err))) return rc;
        if (!d->cols[i][0] && i <= COL_DATA) snprintf(d->cols[i], sizeof d->cols[i], "%s", col_keys[i]);
    }
    if ((rc = after_relay_parse(body, d, err))) return rc;
    bool had_password = false;
    buf_t shown = {0};
    proj_conninfo_redact(d->conninfo, &shown, &had_password);
    buf_free(&shown);
    d->nsecrets = had_password;
    outbox_def_render(d);
    return 0;
}

void outbox_def_render(conn_def *d) {
    buf_t *b = &d->shown;
    b->len = 0;
    buf_t conn = {0};
    bool had;
    proj_conninfo_redact(d->conninfo, &conn, &had);
    buf_printf(b, "\"kind\":\"postgres-outbox\",\"postgres\":");
    json_escape(b, conn.ptr ? conn.ptr : "", conn.len);
    buf_free(&conn);
    buf_printf(b, ",\"publication\":\"%s\",\"table\":\"%s.%s\",\"slot\":\"%s\",\"columns\":{", d->publication,
               d->schema, d->table, d->slot);
    for (int i = 0, k = 0; i < COLS; i++)
        if (d->cols[i][0]) buf_printf(b, "%s\"%s\":\"%s\"", k++ ? "," : "", col_keys[i], d->cols[i]);
    buf_printf(b, "}");
    if (d->after == AFTER_DELETE) buf_printf(b, ",\"after_relay\":{\"action\":\"delete\"}");
    if (d->after == AFTER_MARK) buf_printf(b, ",\"after_relay\":{\"action\":\"mark\",\"column\":\"%s\"}", d->after_col);
    buf_printf(b, ",\"secret_count\":%d,\"paused\":%s", d->nsecrets, d->paused ? "true" : "false");
}

/* How many of the transactions $1 (ids, 32 bits) the current snapshot does not see yet; their
   64-bit ids have the epoch of the snapshot's xmax, or the one before for ids above it by more
   than 2^31 (PostgreSQL 13 or later). */
#define INVISIBLE_SQL                                                                                                  \
    "SELECT count(*) FROM pg_current_snapshot() AS s, LATERAL (SELECT pg_snapshot_xmax(s)::text::bigint AS m) AS m, "  \
    "LATERAL (SELECT (m >> 32 << 32) + x AS c FROM unnest($1::bigint[]) AS x) AS c WHERE NOT pg_visible_in_snapshot("  \
    "(CASE WHEN c > m + 2147483648 THEN c - 4294967296 ELSE c END)::text::xid8, s)"

/* The statement after_relay runs on each batch of relayed rows: $1 is an array of their ids,
   typed by the id column (PostgreSQL infers it). Names are letters, digits and '_' (checked). */
static void after_sql(const conn_def *d, char *out, size_t cap) {
    if (d->after == AFTER_DELETE)
        snprintf(out, cap, "DELETE FROM \"%s\".\"%s\" WHERE \"%s\" = ANY($1)", d->schema, d->table, d->cols[COL_ID]);
    else /* a row marked already (its transaction relayed again) keeps its first time */
        snprintf(out, cap, "UPDATE \"%s\".\"%s\" SET \"%s\" = now() WHERE \"%s\" = ANY($1) AND \"%s\" IS NULL",
                 d->schema, d->table, d->after_col, d->cols[COL_ID], d->after_col);
}

/* ---- checks at PUT ---- */

static PGresult *query(PGconn *pc, const char *sql, int n, const char *const *params) {
    return PQexecParams(pc, sql, n, NULL, params, NULL, NULL, 0);
}

static bool one_row(PGconn *pc, const char *sql, int n, const char *const *params, char *out, size_t cap) {
    PGresult *r = query(pc, sql, n, params);
    bool ok = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0;
    if (ok && out) snprintf(out, cap, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    return ok;
}

/* Runs after_relay's statement on no row in a transaction rolled back: whether this role may
   delete or update the table (privileges, a replica identity where the publication sends
   deletes or updates, row security), as the relay will. */
static int after_check(PGconn *pc, const conn_def *d, factum_error_t *err) {
    char sql[400];
    after_sql(d, sql, sizeof sql);
    PQclear(PQexec(pc, "BEGIN"));
    const char *none[] = {"{}"};
    PGresult *r = query(pc, sql, 1, none);
    int rc = 0;
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        char msg[300];
        snprintf(msg, sizeof msg, "%s", PQresultErrorMessage(r));
        msg[strcspn(msg, "\n")] = 0;
        rc = err_set(err, FACTUM_EINVAL, "after_relay cannot %s rows of %s.%s: %s",
                     d->after == AFTER_DELETE ? "delete" : "update", d->schema, d->table, msg);
    }
    PQclear(r);
    PQclear(PQexec(pc, "ROLLBACK"));
    if (!rc) {
        r = query(pc, INVISIBLE_SQL, 1, none);
        if (PQresultStatus(r) != PGRES_TUPLES_OK)
            rc = err_set(err, FACTUM_EINVAL, "after_relay needs PostgreSQL 13 or later (pg_current_snapshot): %.*s",
                         (int)strcspn(PQresultErrorMessage(r), "\n"), PQresultErrorMessage(r));
        PQclear(r);
    }
    return rc;
}

int outbox_check(const conn_def *d, factum_error_t *err) {
    PGconn *pc = PQconnectdb(d->conninfo);
    int rc = 0;
    char v[256];
    if (PQstatus(pc) != CONNECTION_OK) {
        char msg[300];
        snprintf(msg, sizeof msg, "%s", PQerrorMessage(pc));
        msg[strcspn(msg, "\n")] = 0;
        rc = err_set(err, FACTUM_EINVAL, "cannot connect to PostgreSQL ('postgres'): %s", msg);
        goto out;
    }
    if (!one_row(pc, "SHOW wal_level", 0, NULL, v, sizeof v) || strcmp(v, "logical")) {
        rc = err_set(err, FACTUM_EINVAL,
                     "PostgreSQL's wal_level is '%s', not 'logical': set wal_level = logical and "
                     "restart it (logical replication needs it)",
                     v);
        goto out;
    }
    const char *pub[] = {d->publication};
    if (!one_row(pc, "SELECT 1 FROM pg_publication WHERE pubname = $1", 1, pub, NULL, 0)) {
        rc = err_set(err, FACTUM_EINVAL, "no publication '%s' (CREATE PUBLICATION %s FOR TABLE %s.%s)", d->publication,
                     d->publication, d->schema, d->table);
        goto out;
    }
    const char *tab[] = {d->schema, d->table};
    PGresult *r = query(pc,
                        "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = $1 AND "
                        "table_name = $2",
                        2, tab);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) == 0) {
        PQclear(r);
        rc = err_set(err, FACTUM_EINVAL, "no table %s.%s", d->schema, d->table);
        goto out;
    }
    for (int i = 0; i < COLS && !rc; i++) {
        if (!d->cols[i][0]) continue;
        bool found = false;
        for (int k = 0; k < PQntuples(r) && !found; k++)
            found = !strcmp(PQgetvalue(r, k, 0), d->cols[i]);
        if (!found)
            rc = err_set(err, FACTUM_EINVAL, "table %s.%s has no column '%s' (mapped to %s)", d->schema, d->table,
                         d->cols[i], col_keys[i]);
    }
    if (!rc && d->after == AFTER_MARK) {
        const char *type = NULL;
        for (int k = 0; k < PQntuples(r) && !type; k++)
            if (!strcmp(PQgetvalue(r, k, 0), d->after_col)) type = PQgetvalue(r, k, 1);
        if (!type)
            rc = err_set(err, FACTUM_EINVAL, "table %s.%s has no column '%s' (after_relay's column to mark)", d->schema,
                         d->table, d->after_col);
        else if (strncmp(type, "timestamp", 9))
            rc = err_set(err, FACTUM_EINVAL,
                         "column '%s' of %s.%s is %s: after_relay marks a timestamp column (timestamptz or "
                         "timestamp) with now()",
                         d->after_col, d->schema, d->table, type);
    }
    PQclear(r);
    if (rc) goto out;
    const char *pt[] = {d->publication, d->schema, d->table};
    if (!one_row(pc, "SELECT 1 FROM pg_publication_tables WHERE pubname = $1 AND schemaname = $2 AND tablename = $3", 3,
                 pt, NULL, 0)) {
        rc = err_set(err, FACTUM_EINVAL, "publication '%s' does not hold table %s.%s", d->publication, d->schema,
                     d->table);
        goto out;
    }
    if (d->after && (rc = after_check(pc, d, err))) goto out;
    const char *slot[] = {d->slot};
    if (!one_row(pc, "SELECT 1 FROM pg_replication_slots WHERE slot_name = $1", 1, slot, NULL, 0)) {
        r = query(pc, "SELECT pg_create_logical_replication_slot($1, 'pgoutput')", 1, slot);
        if (PQresultStatus(r) != PGRES_TUPLES_OK) {
            char msg[300];
            snprintf(msg, sizeof msg, "%s", PQresultErrorMessage(r));
            msg[strcspn(msg, "\n")] = 0;
            rc = err_set(err, FACTUM_EINVAL, "cannot make replication slot '%s': %s", d->slot, msg);
        }
        PQclear(r);
    }
out:
    PQfinish(pc);
    return rc;
}

void outbox_drop_slot(const conn_def *d) {
    PGconn *pc = PQconnectdb(d->conninfo);
    if (PQstatus(pc) == CONNECTION_OK) {
        const char *slot[] = {d->slot};
        PGresult *r = query(pc,
                            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE "
                            "slot_name = $1",
                            1, slot);
        if (PQresultStatus(r) != PGRES_TUPLES_OK)
            log_msg(LOG_LEVEL_WARN, "replication slot %s not dropped: %s", d->slot, PQresultErrorMessage(r));
        PQclear(r);
    } else {
        log_msg(LOG_LEVEL_WARN, "replication slot %s not dropped: %s", d->slot, PQerrorMessage(pc));
    }
    PQfinish(pc);
}

/* ---- the replication stream ---- */

typedef struct rd {
    const unsigned char *p, *end;
    bool bad;
} rd;

static uint64_t get_n(rd *r, int n) {
    if (r->end - r->p < n) {
        r->bad = true;
        r->p = r->end;
        return 0;
    }
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = v << 8 | *r->p++;
    return v;
}

/* A NUL-terminated string in the message; "" when it runs past the end. */
static const char *get_str(rd *r) {
    const unsigned char *z = memchr(r->p, 0, (size_t)(r->end - r->p));
    if (!z) {
        r->bad = true;
        r->p = r->end;
        return "";
    }
    const char *s = (const char *)r->p;
    r->p = z + 1;
    return s;
}

/* One outbox row: the mapped columns' values (NULL: SQL null or unmapped). */
typedef struct row {
    char *v[COLS];
    uint64_t tx;  /* which transaction (counted in this session) */
    uint32_t xid; /* and its PostgreSQL transaction id */
    bool relayed; /* its event is appended (flush) */
} row;

typedef struct relay {
    connector *c;
    PGconn *pc;
    uint32_t relid; /* the outbox table's relation id in this stream; 0: not seen yet */
    int idx[COLS];  /* its column positions for each mapped value, -1: none */
    row *rows;      /* received and not yet appended, in commit order */
    size_t n, cap;
    size_t committed; /* rows[0..committed) are of committed transactions; the rest of the one open */
    uint64_t pending; /* the end LSN of the last committed transaction not yet confirmed (0: none) */
    uint64_t flushed; /* confirmed to PostgreSQL */
    uint64_t tx;      /* transactions begun in this session */
    uint32_t xid;     /* the transaction's being received */
    int64_t status_at;
    /* after_relay */
    PGconn *side; /* an ordinary connection for its DELETE / UPDATE (NULL: none yet) */
    buf_t ids;    /* the ids of relayed rows not yet deleted or marked: array literal elements */
    size_t nids;  /* how many */
    buf_t xids;   /* their transactions' ids, the same way */
    uint32_t last_xid;
    uint64_t dropped; /* ids not kept, past AFTER_MAX_PENDING */
    int64_t after_at; /* its last attempt */
} relay;

/* Forgets the rows from rows[from] on. */
static void rows_drop(relay *x, size_t from) {
    for (size_t i = from; i < x->n; i++)
        for (int k = 0; k < COLS; k++)
            free(x->rows[i].v[k]);
    x->n = from;
    x->committed = MIN(x->committed, from);
}

static void put64(unsigned char *p, uint64_t v) {
    for (int i = 7; i >= 0; i--)
        p[i] = (unsigned char)v, v >>= 8;
}

/* A standby status update: written, flushed and applied up to x->flushed. */
static bool send_status(relay *x) {
    unsigned char m[34];
    m[0] = 'r';
    put64(m + 1, x->flushed), put64(m + 9, x->flushed), put64(m + 17, x->flushed);
    put64(m + 25, (uint64_t)(clock_realtime_us() - PG_EPOCH_US));
    m[33] = 0;
    x->status_at = clock_mono_us();
    return PQputCopyData(x->pc, (const char *)m, sizeof m) == 1 && PQflush(x->pc) == 0;
}

static void on_relation(relay *x, rd *r) {
    uint32_t id = (uint32_t)get_n(r, 4);
    const char *ns = get_str(r), *name = get_str(r);
    get_n(r, 1);
    int ncols = (int)get_n(r, 2);
    const conn_def *d = &x->c->d;
    if (strcmp(ns, d->schema) || strcmp(name, d->table)) return;
    x->relid = id;
    for (int k = 0; k < COLS; k++)
        x->idx[k] = -1;
    for (int i = 0; i < ncols && !r->bad; i++) {
        get_n(r, 1);
        const char *col = get_str(r);
        get_n(r, 4), get_n(r, 4);
        for (int k = 0; k < COLS; k++)
            if (d->cols[k][0] && !strcmp(col, d->cols[k])) x->idx[k] = i;
    }
}

static void on_insert(relay *x, rd *r) {
    uint32_t id = (uint32_t)get_n(r, 4);
    if (id != x->relid || get_n(r, 1) != 'N') return;
    int ncols = (int)get_n(r, 2);
    if (x->n == x->cap) {
        x->cap = x->cap ? x->cap * 2 : 64;
        x->rows = realloc(x->rows, x->cap * sizeof *x->rows);
        if (!x->rows) abort(); /* the server may stop on out-of-memory (STYLE.md) */
    }
    row *w = &x->rows[x->n++];
    memset(w, 0, sizeof *w);
    w->tx = x->tx, w->xid = x->xid;
    for (int i = 0; i < ncols && !r->bad; i++) {
        int kind = (int)get_n(r, 1);
        if (kind != 't') continue; /* 'n' null, 'u' an unchanged TOAST value (not in an insert) */
        uint32_t len = (uint32_t)get_n(r, 4);
        if ((size_t)(r->end - r->p) < len) {
            r->bad = true;
            break;
        }
        for (int k = 0; k < COLS; k++)
            if (x->idx[k] == i && !w->v[k] && (w->v[k] = strndup((const char *)r->p, len)) == NULL) abort();
        r->p += len;
    }
}

static void rejected(connector *c, const char *why, const row *w) {
    log_msg(LOG_LEVEL_ERROR, "connector %s: an outbox row (id %s) is not an event: %s", c->name,
            w->v[COL_ID] ? w->v[COL_ID] : "null", why);
    pthread_mutex_lock(&c->mu);
    c->rejected++;
    snprintf(c->last_error, sizeof c->last_error, "row id %s: %s", w->v[COL_ID] ? w->v[COL_ID] : "null", why);
    pthread_mutex_unlock(&c->mu);
}

static void set_failed(connector *c, const char *what, const char *msg) {
    pthread_mutex_lock(&c->mu);
    c->failed = true;
    snprintf(c->last_error, sizeof c->last_error, "%s: %.*s", what, (int)strcspn(msg, "\n"), msg);
    pthread_mutex_unlock(&c->mu);
}

/* The event a row becomes (pointing into the row). */
static factum_event_t row_event(const row *w) {
    const char *data = w->v[COL_DATA];
    int kind;
    bool json = data && json_valid(data, strlen(data), &kind);
    return (factum_event_t){.id = str_c(w->v[COL_ID]),
                            .type = str_c(w->v[COL_TYPE]),
                            .correlationid = str_c(w->v[COL_CORRELATION]),
                            .causationid = str_c(w->v[COL_CAUSATION]),
                            .data = str_c(data),
                            .data_format = !data  ? FACTUM_DATA_NONE
                                           : json ? FACTUM_DATA_JSON
                                                  : FACTUM_DATA_BINARY,
                            .datacontenttype = data && !json ? str_c("text/plain") : (factum_str_t){0}};
}

/* Errors that the same row would meet again: it never becomes an event. */
static bool refused_for_good(int rc) {
    return rc == FACTUM_EBADEVENT || rc == FACTUM_EBADSTREAM || rc == FACTUM_ECONFLICT || rc == FACTUM_ETOOBIG ||
           rc == FACTUM_EDELETED;
}

/* Why a row cannot be an event before the store says so, or NULL: a null attribute, or a system
   stream ('$...': the relay writes applications' streams only, never $connectors or $keys). */
static const char *row_problem(const row *w) {
    if (!w->v[COL_STREAM] || !w->v[COL_TYPE] || !w->v[COL_ID]) return "its stream, type or id is null";
    if (w->v[COL_STREAM][0] == '$') return "its stream is a system stream ('$...')";
    return NULL;
}

static bool appendable(connector *c, const row *w) {
    const char *why = row_problem(w);
    if (why) rejected(c, why, w);
    return !why;
}

/* The rows of one run, one append each: a run refused as a whole (one bad row, or a repeat of
   only part of it after a restart) is sorted out row by row. false: the store failed. */
static bool append_each(connector *c, row *rows, size_t n, uint64_t *appended) {
    for (size_t i = 0; i < n; i++) {
        if (!appendable(c, &rows[i])) continue;
        factum_event_t e = row_event(&rows[i]);
        factum_error_t err;
        int rc = factum_append(c->cs->env.db, str_c(rows[i].v[COL_STREAM]), FACTUM_EXPECT_ANY, &e, 1, NULL, &err);
        if (refused_for_good(rc)) {
            rejected(c, err.message, &rows[i]);
        } else if (rc) {
            set_failed(c, "append", err.message);
            return false;
        } else {
            ++*appended;
            rows[i].relayed = true;
        }
    }
    return true;
}

/* Keeps a relayed row's id and its transaction's for after_relay, as elements of array literals. */
static void ids_add(relay *x, const char *id, uint32_t xid) {
    if (x->nids >= AFTER_MAX_PENDING) {
        x->dropped++;
        return;
    }
    if (!x->xids.len || xid != x->last_xid) buf_printf(&x->xids, "%s%u", x->xids.len ? "," : "", xid);
    x->last_xid = xid;
    if (x->nids++) buf_append(&x->ids, ",", 1);
    buf_append(&x->ids, "\"", 1);
    for (const char *p = id; *p; p++) {
        if (*p == '"' || *p == '\\') buf_append(&x->ids, "\\", 1);
        buf_append(&x->ids, p, 1);
    }
    buf_append(&x->ids, "\"", 1);
}

/* pgoutput sends a transaction once its commit is in the WAL, a moment before other sessions
   see it (longer with synchronous replication): until they do, a DELETE would pass its rows
   over. Waits up to 5 s for the waiting rows' transactions; msg says why not. */
static void wait_visible(relay *x, char *msg, size_t cap) {
    buf_t arr = {0};
    buf_printf(&arr, "{%.*s}", (int)x->xids.len, x->xids.ptr);
    const char *param[] = {arr.ptr};
    for (int i = 0;; i++) {
        PGresult *r = query(x->side, INVISIBLE_SQL, 1, param);
        bool ok = PQresultStatus(r) == PGRES_TUPLES_OK;
        long left = ok ? atol(PQgetvalue(r, 0, 0)) : -1;
        if (!ok) snprintf(msg, cap, "%s", PQresultErrorMessage(r));
        PQclear(r);
        if (left <= 0) break;
        if (i == 500) {
            snprintf(msg, cap, "%ld of their transactions are not visible yet", left);
            break;
        }
        if (!connector_nap(x->c, 10)) {
            snprintf(msg, cap, "the relay stops");
            break;
        }
    }
    buf_free(&arr);
}

/*
 * Deletes or marks the relayed rows waiting (x->ids) with one statement on an ordinary
 * connection. flush calls it once their events are durable and before it confirms their
 * transactions, so a crash in between sends those transactions again: their events are repeats
 * and the statement runs again. A failure is logged and counted and does not stop the relay:
 * the rows wait, and are tried again with the next batch (or within AFTER_RETRY_US).
 */
static void after_relay(relay *x) {
    connector *c = x->c;
    if (x->dropped) {
        log_msg(LOG_LEVEL_ERROR,
                "connector %s: %llu relayed rows are left in %s.%s (more than %d waited for after_relay)", c->name,
                (unsigned long long)x->dropped, c->d.schema, c->d.table, AFTER_MAX_PENDING);
        x->dropped = 0;
    }
    if (!x->nids) return;
    x->after_at = clock_mono_us();
    if (x->side && PQstatus(x->side) != CONNECTION_OK) PQfinish(x->side), x->side = NULL;
    if (!x->side && (x->side = PQconnectdb(c->d.conninfo)) && PQstatus(x->side) == CONNECTION_OK)
        PQclear(PQexec(x->side, "SET statement_timeout = 10000")); /* a lock held long: fail, try again */
    char msg[300] = "";
    uint64_t done_rows = 0;
    if (PQstatus(x->side) != CONNECTION_OK)
        snprintf(msg, sizeof msg, "cannot connect: %s", PQerrorMessage(x->side));
    else
        wait_visible(x, msg, sizeof msg);
    if (!msg[0]) {
        char sql[400];
        after_sql(&c->d, sql, sizeof sql);
        buf_t arr = {0};
        buf_printf(&arr, "{%.*s}", (int)x->ids.len, x->ids.ptr);
        const char *param[] = {arr.ptr};
        PGresult *r = query(x->side, sql, 1, param);
        if (PQresultStatus(r) == PGRES_COMMAND_OK)
            done_rows = strtoull(PQcmdTuples(r), NULL, 10);
        else
            snprintf(msg, sizeof msg, "%s", PQresultErrorMessage(r)[0] ? PQresultErrorMessage(r) : "failed");
        PQclear(r);
        buf_free(&arr);
    }
    msg[strcspn(msg, "\n")] = 0;
    const char *verb = c->d.after == AFTER_DELETE ? "deleted" : "marked";
    if (msg[0])
        log_msg(LOG_LEVEL_WARN, "connector %s: %zu relayed rows not %s yet (tried again with the next batch): %s",
                c->name, x->nids, verb, msg);
    else
        x->ids.len = 0, x->nids = 0, x->xids.len = 0;
    pthread_mutex_lock(&c->mu);
    if (msg[0]) c->after_failures++, snprintf(c->last_error, sizeof c->last_error, "after_relay: %s", msg);
    c->after_rows += done_rows;
    c->after_pending = x->nids;
    pthread_mutex_unlock(&c->mu);
}

/* A run's append in flight: the writer calls done. */
typedef struct inflight {
    pthread_mutex_t *mu;
    pthread_cond_t *cond;
    size_t *left;
    int rc;
    bool done; /* appended row by row already (refused at once) */
    char msg[200];
} inflight;

static void done(void *ctx, int rc, const factum_append_result_t *res, const char *message) {
    (void)res;
    inflight *f = ctx;
    pthread_mutex_lock(f->mu);
    f->rc = rc;
    snprintf(f->msg, sizeof f->msg, "%s", message ? message : "");
    if (--*f->left == 0) pthread_cond_signal(f->cond);
    pthread_mutex_unlock(f->mu);
}

/*
 * Appends the committed rows received so far, in commit order, then confirms the last Commit's
 * end LSN. Consecutive rows of one transaction and one stream go as one append (a run, at most
 * FLUSH_RUN rows), every run submitted at once (the writer keeps their order) and waited for
 * together: one fsync for many transactions. A run never spans transactions, so the runs of a
 * transaction sent again after a restart are the same runs, each wholly there (an idempotent
 * repeat) or not at all. A run the store refuses at once (a bad row in it) is appended row by
 * row right there, so it keeps its place. false (nothing confirmed; the transactions come
 * again) when the store failed.
 */
#define FLUSH_RUN 1000
static bool flush(relay *x) {
    connector *c = x->c;
    size_t n = x->committed, nruns = 0;
    size_t *start = malloc((n + 1) * sizeof *start);
    inflight *f = calloc(n + 1, sizeof *f);
    factum_event_t *ev = malloc((n + 1) * sizeof *ev);
    if (!start || !f || !ev) abort(); /* the server may stop on out-of-memory (STYLE.md) */
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t cond;
    clock_mono_cond_init(&cond);
    size_t left = 0;
    uint64_t appended = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i + 1;
        while (j < n && j - i < FLUSH_RUN && x->rows[j].tx == x->rows[i].tx && x->rows[i].v[COL_STREAM] &&
               x->rows[j].v[COL_STREAM] && !strcmp(x->rows[i].v[COL_STREAM], x->rows[j].v[COL_STREAM]))
            j++;
        bool ok = true;
        for (size_t k = i; k < j && ok; k++)
            ok = !row_problem(&x->rows[k]);
        start[nruns] = i;
        f[nruns] = (inflight){&mu, &cond, &left, ok ? 0 : FACTUM_EBADEVENT, false, ""};
        if (ok) {
            for (size_t k = i; k < j; k++)
                ev[k] = row_event(&x->rows[k]);
            pthread_mutex_lock(&mu);
            left++;
            pthread_mutex_unlock(&mu);
            factum_error_t err;
            int rc = factum_append_async(c->cs->env.db, str_c(x->rows[i].v[COL_STREAM]), FACTUM_EXPECT_ANY, &ev[i],
                                         j - i, done, &f[nruns], &err);
            if (rc) { /* refused at once: no callback */
                pthread_mutex_lock(&mu);
                left--;
                pthread_mutex_unlock(&mu);
                f[nruns].rc = rc;
                snprintf(f[nruns].msg, sizeof f[nruns].msg, "%s", err.message);
            }
        }
        if (f[nruns].rc && refused_for_good(f[nruns].rc)) { /* row by row, in its place in the queue */
            f[nruns].rc = append_each(c, &x->rows[i], j - i, &appended) ? 0 : FACTUM_EIO;
            f[nruns].done = true;
        }
        nruns++;
        i = j;
    }
    start[nruns] = n;
    pthread_mutex_lock(&mu);
    while (left)
        pthread_cond_wait(&cond, &mu);
    pthread_mutex_unlock(&mu);
    bool ok = true;
    for (size_t r = 0; r < nruns && ok; r++) {
        size_t len = start[r + 1] - start[r];
        if (f[r].done)
            ok = !f[r].rc;
        else if (!f[r].rc)
            for (size_t k = start[r]; k < start[r] + len; k++)
                appended++, x->rows[k].relayed = true;
        else if (refused_for_good(f[r].rc)) /* an id the stream holds with other content: the rest of
                                                 this run lands after the runs submitted behind it */
            ok = append_each(c, &x->rows[start[r]], len, &appended);
        else
            set_failed(c, "append", f[r].msg), ok = false;
    }
    pthread_cond_destroy(&cond);
    free(start), free(f), free(ev);
    pthread_mutex_lock(&c->mu);
    c->delivered += appended;
    pthread_mutex_unlock(&c->mu);
    if (!ok) return false;
    if (c->d.after) { /* before the slot moves past them: a crash in between runs it again */
        for (size_t i = 0; i < n; i++)
            if (x->rows[i].relayed) ids_add(x, x->rows[i].v[COL_ID], x->rows[i].xid);
        after_relay(x);
    }
    /* every event of those transactions is durable: the slot may move past them */
    x->flushed = x->pending, x->pending = 0;
    /* forget the appended rows; those of a transaction still arriving stay */
    for (size_t i = 0; i < n; i++)
        for (int k = 0; k < COLS; k++)
            free(x->rows[i].v[k]);
    memmove(x->rows, x->rows + n, (x->n - n) * sizeof *x->rows);
    x->n -= n, x->committed = 0;
    pthread_mutex_lock(&c->mu);
    c->flushed_lsn = x->flushed;
    c->wal_end = MAX(c->wal_end, x->flushed);
    c->failed = false;
    pthread_mutex_unlock(&c->mu);
    return send_status(x);
}

/* Handles one CopyData message; false to reconnect. */
static bool on_message(relay *x, const unsigned char *m, int len) {
    rd r = {m + 1, m + len, false};
    if (len < 1) return true;
    if (m[0] == 'k') { /* keepalive: walEnd, time, reply requested */
        uint64_t wal_end = get_n(&r, 8);
        get_n(&r, 8);
        pthread_mutex_lock(&x->c->mu);
        x->c->wal_end = MAX(x->c->wal_end, wal_end); /* for the slot's lag in bytes */
        pthread_mutex_unlock(&x->c->mu);
        return get_n(&r, 1) ? send_status(x) : true;
    }
    if (m[0] != 'w') return true;
    get_n(&r, 8), get_n(&r, 8), get_n(&r, 8); /* start, the server's end of WAL, send time */
    int tag = (int)get_n(&r, 1);
    if (tag == 'R') on_relation(x, &r);
    if (tag == 'B') { /* nothing of an unfinished transaction stays */
        rows_drop(x, x->committed), x->tx++;
        get_n(&r, 8), get_n(&r, 8); /* its final LSN, its commit time */
        x->xid = (uint32_t)get_n(&r, 4);
    }
    if (tag == 'I') on_insert(x, &r);
    if (tag == 'C') {
        get_n(&r, 1), get_n(&r, 8);
        uint64_t end = get_n(&r, 8);
        if (r.bad) return false;
        x->committed = x->n, x->pending = end;
        if (x->committed >= FLUSH_ROWS) return flush(x); /* else when nothing more is waiting */
        return true;
    }
    if (r.bad) log_msg(LOG_LEVEL_WARN, "connector %s: a short pgoutput message ('%c')", x->c->name, tag);
    return !r.bad;
}

/* One replication session: until the connection ends, an append fails, or the connector stops
   or pauses. */
static void session(relay *x) {
    connector *c = x->c;
    buf_t ci = {0};
    buf_printf(&ci, "%s replication=database", c->d.conninfo);
    x->pc = PQconnectdb(ci.ptr);
    buf_free(&ci);
    if (PQstatus(x->pc) != CONNECTION_OK) {
        set_failed(c, "cannot connect", PQerrorMessage(x->pc));
        return;
    }
    char cmd[400];
    snprintf(cmd, sizeof cmd,
             "START_REPLICATION SLOT \"%s\" LOGICAL 0/0 (proto_version '1', publication_names '\"%s\"')", c->d.slot,
             c->d.publication);
    PGresult *r = PQexec(x->pc, cmd);
    bool started = PQresultStatus(r) == PGRES_COPY_BOTH;
    if (!started) set_failed(c, "START_REPLICATION", PQresultErrorMessage(r));
    PQclear(r);
    if (!started) return;
    x->relid = 0, x->pending = 0;
    rows_drop(x, 0); /* what was not confirmed comes again */
    for (;;) {
        bool paused;
        uint64_t term;
        if (connector_stopping(c, &paused) || paused || !factum_leads(c->cs->env.db, &term)) return;
        char *buf = NULL;
        int len = PQgetCopyData(x->pc, &buf, 1);
        if (len > 0) {
            bool ok = on_message(x, (const unsigned char *)buf, len);
            PQfreemem(buf);
            if (!ok) return;
            continue;
        }
        if (len == 0 && x->pending && !flush(x)) return; /* nothing more waiting: append what came */
        if (len < 0) {                                   /* the server ended the stream, or the connection broke */
            set_failed(c, "replication stream", PQerrorMessage(x->pc));
            return;
        }
        if (clock_mono_us() - x->status_at > STATUS_EVERY_US && !send_status(x)) return;
        if (x->nids && clock_mono_us() - x->after_at > AFTER_RETRY_US) after_relay(x); /* rows still wait */
        int fd = PQsocket(x->pc);
        fd_set in;
        FD_ZERO(&in);
        FD_SET(fd, &in);
        struct timeval tv = {0, 100000};
        if (select(fd + 1, &in, NULL, NULL, &tv) < 0 && errno != EINTR) return;
        if (!PQconsumeInput(x->pc)) {
            set_failed(c, "replication stream", PQerrorMessage(x->pc));
            return;
        }
    }
}

void *outbox_main(void *arg) {
    relay x = {.c = arg};
    bool paused;
    uint64_t term;
    while (!connector_stopping(x.c, &paused)) {
        if (!paused && factum_leads(x.c->cs->env.db, &term)) { /* in a cluster, only the leader relays */
            session(&x);
            PQfinish(x.pc);
            x.pc = NULL;
        }
        if (!connector_stopping(x.c, &paused)) connector_nap(x.c, paused ? 1000 : 500); /* then connect again */
    }
    rows_drop(&x, 0);
    free(x.rows);
    PQfinish(x.side);
    buf_free(&x.ids), buf_free(&x.xids);
    return NULL;
}
