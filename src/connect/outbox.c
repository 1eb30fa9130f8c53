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
 * Here too: the definition's members and the checks at PUT (connection, wal_level, publication,
 * table and columns, the publication holding the table), making the slot at PUT and dropping
 * it at DELETE.
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

int outbox_def_parse(const char *name, factum_str_t body, bool record, const char *data_dir, conn_def *d,
                     factum_error_t *err) {
    static const char *const put_members[] = {"kind", "postgres", "publication", "table",
                                              "slot", "columns",  "paused",      NULL};
    static const char *const rec_members[] = {"kind",    "postgres", "publication",  "table", "slot",
                                              "columns", "paused",   "secret_count", NULL};
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
    buf_printf(b, "},\"secret_count\":%d,\"paused\":%s", d->nsecrets, d->paused ? "true" : "false");
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
                        "SELECT column_name FROM information_schema.columns WHERE table_schema = $1 AND "
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
    PQclear(r);
    if (rc) goto out;
    const char *pt[] = {d->publication, d->schema, d->table};
    if (!one_row(pc, "SELECT 1 FROM pg_publication_tables WHERE pubname = $1 AND schemaname = $2 AND tablename = $3", 3,
                 pt, NULL, 0)) {
        rc = err_set(err, FACTUM_EINVAL, "publication '%s' does not hold table %s.%s", d->publication, d->schema,
                     d->table);
        goto out;
    }
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
} row;

typedef struct relay {
    connector *c;
    PGconn *pc;
    uint32_t relid; /* the outbox table's relation id in this stream; 0: not seen yet */
    int idx[COLS];  /* its column positions for each mapped value, -1: none */
    row *rows;      /* the transaction's, in order */
    size_t n, cap;
    uint64_t flushed; /* confirmed to PostgreSQL */
    int64_t status_at;
} relay;

static void rows_clear(relay *x) {
    for (size_t i = 0; i < x->n; i++)
        for (int k = 0; k < COLS; k++)
            free(x->rows[i].v[k]);
    x->n = 0;
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

/* Appends the transaction's rows in order; true once all are durable (or refused for good). */
static bool on_commit(relay *x) {
    connector *c = x->c;
    factum_t *db = c->cs->env.db;
    for (size_t i = 0; i < x->n; i++) {
        const row *w = &x->rows[i];
        if (!w->v[COL_STREAM] || !w->v[COL_TYPE] || !w->v[COL_ID]) {
            rejected(c, "its stream, type or id is null", w);
            continue;
        }
        const char *data = w->v[COL_DATA];
        int kind;
        bool json = data && json_valid(data, strlen(data), &kind);
        factum_event_t e = {.id = str_c(w->v[COL_ID]),
                            .type = str_c(w->v[COL_TYPE]),
                            .correlationid = str_c(w->v[COL_CORRELATION]),
                            .causationid = str_c(w->v[COL_CAUSATION]),
                            .data = str_c(data),
                            .data_format = !data  ? FACTUM_DATA_NONE
                                           : json ? FACTUM_DATA_JSON
                                                  : FACTUM_DATA_BINARY,
                            .datacontenttype = data && !json ? str_c("text/plain") : (factum_str_t){0}};
        factum_error_t err;
        int rc = factum_append(db, str_c(w->v[COL_STREAM]), FACTUM_EXPECT_ANY, &e, 1, NULL, &err);
        if (rc == FACTUM_EBADEVENT || rc == FACTUM_EBADSTREAM || rc == FACTUM_ECONFLICT || rc == FACTUM_ETOOBIG ||
            rc == FACTUM_EDELETED) {
            rejected(c, err.message, w); /* never an event: the same row would be refused again */
            continue;
        }
        if (rc) {
            pthread_mutex_lock(&c->mu);
            c->failed = true;
            snprintf(c->last_error, sizeof c->last_error, "append: %s", err.message);
            pthread_mutex_unlock(&c->mu);
            return false; /* not confirmed: the transaction comes again */
        }
        pthread_mutex_lock(&c->mu);
        c->delivered++;
        pthread_mutex_unlock(&c->mu);
    }
    return true;
}

/* Handles one CopyData message; false to reconnect. */
static bool on_message(relay *x, const unsigned char *m, int len) {
    rd r = {m + 1, m + len, false};
    if (len < 1) return true;
    if (m[0] == 'k') { /* keepalive: walEnd, time, reply requested */
        get_n(&r, 8), get_n(&r, 8);
        return get_n(&r, 1) ? send_status(x) : true;
    }
    if (m[0] != 'w') return true;
    get_n(&r, 8), get_n(&r, 8), get_n(&r, 8); /* start, end, send time */
    int tag = (int)get_n(&r, 1);
    if (tag == 'R') on_relation(x, &r);
    if (tag == 'B') rows_clear(x);
    if (tag == 'I') on_insert(x, &r);
    if (tag == 'C') {
        get_n(&r, 1), get_n(&r, 8);
        uint64_t end = get_n(&r, 8);
        if (r.bad) return false;
        bool ok = on_commit(x);
        rows_clear(x);
        if (!ok) return false;
        x->flushed = end; /* every event of the transaction is durable: the slot may move past it */
        pthread_mutex_lock(&x->c->mu);
        x->c->flushed_lsn = end;
        x->c->failed = false;
        pthread_mutex_unlock(&x->c->mu);
        return send_status(x);
    }
    if (r.bad) log_msg(LOG_LEVEL_WARN, "connector %s: a short pgoutput message ('%c')", x->c->name, tag);
    return !r.bad;
}

static void set_failed(connector *c, const char *what, const char *msg) {
    pthread_mutex_lock(&c->mu);
    c->failed = true;
    snprintf(c->last_error, sizeof c->last_error, "%s: %.*s", what, (int)strcspn(msg, "\n"), msg);
    pthread_mutex_unlock(&c->mu);
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
    x->relid = 0;
    rows_clear(x);
    for (;;) {
        bool paused;
        if (connector_stopping(c, &paused) || paused) return;
        char *buf = NULL;
        int len = PQgetCopyData(x->pc, &buf, 1);
        if (len > 0) {
            bool ok = on_message(x, (const unsigned char *)buf, len);
            PQfreemem(buf);
            if (!ok) return;
            continue;
        }
        if (len < 0) { /* the server ended the stream, or the connection broke */
            set_failed(c, "replication stream", PQerrorMessage(x->pc));
            return;
        }
        if (clock_mono_us() - x->status_at > STATUS_EVERY_US && !send_status(x)) return;
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
    while (!connector_stopping(x.c, &paused)) {
        if (!paused) {
            session(&x);
            PQfinish(x.pc);
            x.pc = NULL;
        }
        if (!connector_stopping(x.c, &paused)) connector_nap(x.c, paused ? 1000 : 500); /* then connect again */
    }
    rows_clear(&x);
    free(x.rows);
    return NULL;
}
