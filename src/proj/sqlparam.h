/*
 * sqlparam.h — named parameters in projection SQL (docs/projections.md).
 *
 * A statement names its parameters `:path`, where a path is a root and then `.key` or `[n]`
 * steps: `:stream`, `:position`, `:data.orderId`, `:data.items[0].price`. sql_rewrite turns the
 * text into what the database takes (SQLite `?N`, PostgreSQL `$N`; one placeholder per distinct
 * path) and keeps the paths; sql_bind_event / sql_bind_json compute their values. Text inside
 * string literals, quoted identifiers, comments and PostgreSQL dollar quotes is left alone, and
 * so is a `::` cast.
 */
#ifndef FACTUM_SQLPARAM_H
#define FACTUM_SQLPARAM_H

#include "../base/base.h"

#define SQL_MAX_PARAMS 100
#define SQL_MAX_STEPS 16

enum { SQL_SQLITE, SQL_POSTGRES };

/* What a path starts at. Event roots for handlers; SQL_R_PARAMS (a query's "params") for queries. */
enum {
    SQL_R_STREAM,
    SQL_R_REVISION,
    SQL_R_POSITION,
    SQL_R_TIME,
    SQL_R_TYPE,
    SQL_R_ID,
    SQL_R_SOURCE,
    SQL_R_SUBJECT,
    SQL_R_CORRELATIONID,
    SQL_R_CAUSATIONID,
    SQL_R_DATA,
    SQL_R_PARAMS
};

typedef struct sql_step {
    uint32_t off, len; /* a key: its bytes in the statement's path text */
    int64_t index;     /* an array index, or -1 for a key */
} sql_step;

typedef struct sql_path {
    int root;
    uint32_t nsteps;
    sql_step steps[SQL_MAX_STEPS];
    char text[128]; /* as written, without the colon (for messages, and the keys' bytes) */
} sql_path;

typedef struct sql_stmt {
    buf_t sql; /* rewritten, NUL-terminated */
    sql_path *params;
    size_t nparams;
} sql_stmt;

/*
 * Rewrites text for `dialect`. event_roots: paths must start at an event root (SQL_R_STREAM ...
 * SQL_R_CAUSATIONID); otherwise every path is a key path into the query's params. 0, or
 * FACTUM_EINVAL with the reason and byte offset (an unknown root, a malformed path, more than
 * SQL_MAX_PARAMS, a positional parameter of the database's own) or FACTUM_ENOMEM.
 */
int sql_rewrite(factum_str_t text, int dialect, bool event_roots, sql_stmt *out, factum_error_t *err);
void sql_stmt_free(sql_stmt *s);

/* A bound value. TEXT and JSON point into the event (or params) or into the scratch buffer
   passed to the binder: valid until either changes. */
enum { SQL_V_NULL, SQL_V_INT, SQL_V_REAL, SQL_V_TEXT, SQL_V_BOOL, SQL_V_JSON };
typedef struct sql_value {
    int kind;
    int64_t i; /* INT, BOOL */
    double r;
    factum_str_t s; /* TEXT, JSON (raw JSON text of an object or array); also a number's JSON text */
} sql_value;

/* The values of s's parameters for event e, in placeholder order, into v[s->nparams]. A path
   that leads nowhere is NULL. scratch holds decoded strings (reset by the call). */
int sql_bind_event(const sql_stmt *s, const factum_event_t *e, buf_t *scratch, sql_value *v);
/* The same for a query: paths into the JSON object params (a span; empty = no params). */
int sql_bind_json(const sql_stmt *s, factum_str_t params, buf_t *scratch, sql_value *v);

/* The names the event roots go by, for messages: ":stream, :revision, ..." */
extern const char sql_event_roots[];

#endif
