/*
 * projector.c — see projector.h. Owns a projection's parsed definition, its thread, its status
 * and its pool of read connections for queries.
 */
#include "projector.h"

#include "../base/json.h"
#include "target.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define BATCH 2000         /* events read per transaction at most */
#define MAX_NAMES 64       /* types or categories of a source */
#define MAX_SETUP 64       /* setup statements */
#define MAX_STATEMENTS 256 /* handler statements in all */
#define MAX_STATEMENT_BYTES (64u << 10)
#define QUERY_TIMEOUT_MS 5000 /* default */
#define QUERY_MAX_TIMEOUT_MS 60000
#define QUERY_MAX_ROWS 10000
#define IDLE_POOL 4   /* read connections kept per projection */
#define RATE_SLOTS 11 /* one sample a second: the rate over the last 10 s */

enum { SRC_TYPES, SRC_CATEGORIES, SRC_STREAM };

typedef struct handler {
    char *type;
    size_t first, n; /* its statements in d->stmts */
} handler;

struct proj_def {
    char name[PROJ_MAX_NAME + 1];
    buf_t json;
    int src;
    char **names; /* the types, the categories, or the one stream */
    size_t nnames;
    const target_ops *ops;
    char *where;
    bool default_file;
    char **setup;
    size_t nsetup;
    sql_stmt *stmts;
    char **texts; /* each statement as written */
    size_t nstmts;
    handler *handlers;
    size_t nhandlers;
};

struct projector {
    factum_t *db;
    proj_def *d;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cond; /* covered moved, the state changed, or a request (stop, reset) */
    atomic_int refs;
    /* under mu */
    bool stop, stopped, reset_asked, rebuilding, failed;
    bool opened;           /* the setup has run on the target once: its tables exist */
    uint64_t covered;      /* every event before this position is applied (or not one for this projection) */
    int64_t next_revision; /* stream sources: the next revision to read */
    buf_t last_error;      /* a JSON object, or empty */
    uint64_t narrow_below; /* a read met damage below this position: read one event at a time up to it
                              (projector thread only; 0 = no damage known) */
    uint64_t applied;      /* events applied by this projector */
    uint64_t failures;     /* times it stopped as failed */
    int64_t rate_t[RATE_SLOTS];
    uint64_t rate_n[RATE_SLOTS];
    int rate_i, rate_len;
    target *idle[IDLE_POOL];
    size_t nidle;
};

/* ---- definitions ---- */

bool proj_name_valid(const char *name) {
    size_t n = strlen(name);
    if (!n || n > PROJ_MAX_NAME || name[0] == '.') return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)name[i]) && !strchr("_.-", name[i])) return false;
    return true;
}

static char *dup_str(factum_str_t s) {
    char *p = malloc(s.len + 1);
    if (p) memcpy(p, s.ptr, s.len), p[s.len] = 0;
    return p;
}

static void free_strs(char **v, size_t n) {
    for (size_t i = 0; v && i < n; i++)
        free(v[i]);
    free(v);
}

void proj_def_free(proj_def *d) {
    if (!d) return;
    buf_free(&d->json);
    free_strs(d->names, d->nnames);
    free(d->where);
    free_strs(d->setup, d->nsetup);
    for (size_t i = 0; i < d->nstmts; i++)
        sql_stmt_free(&d->stmts[i]);
    free(d->stmts);
    free_strs(d->texts, d->nstmts);
    for (size_t i = 0; i < d->nhandlers; i++)
        free(d->handlers[i].type);
    free(d->handlers);
    free(d);
}

factum_str_t proj_def_json(const proj_def *d) { return (factum_str_t){d->json.ptr, d->json.len}; }
const char *proj_def_default_file(const proj_def *d) { return d->default_file ? d->where : NULL; }

/* A JSON array of 1..max non-empty strings (each at most max_len bytes), decoded. */
static int str_array(factum_str_t val, int kind, const char *what, size_t max, size_t max_len, char ***out, size_t *n,
                     factum_error_t *err) {
    *out = NULL, *n = 0;
    if (kind != JSON_ARRAY) return err_set(err, FACTUM_EINVAL, "%s must be an array of strings", what);
    json_iter_t it;
    json_iter_init(&it, val);
    factum_str_t v;
    int k, r;
    buf_t b = {0};
    while ((r = json_iter_element(&it, &v, &k)) == 1) {
        if (k != JSON_STRING) return err_set(err, FACTUM_EINVAL, "%s must be an array of strings", what);
        if (*n == max) return err_set(err, FACTUM_EINVAL, "%s: more than %zu", what, max);
        b.len = 0;
        if (json_unescape(v, &b)) return err_set(err, FACTUM_ENOMEM, "out of memory");
        if (!b.len || b.len > max_len || memchr(b.ptr, 0, b.len)) {
            buf_free(&b);
            return err_set(err, FACTUM_EINVAL, "%s[%zu] must be a string of 1 to %zu bytes without NUL", what, *n,
                           max_len);
        }
        char **grown = realloc(*out, (*n + 1) * sizeof *grown);
        if (!grown || !(grown[*n] = dup_str((factum_str_t){b.ptr, b.len}))) {
            if (grown) *out = grown;
            buf_free(&b);
            return err_set(err, FACTUM_ENOMEM, "out of memory");
        }
        *out = grown, (*n)++;
    }
    buf_free(&b);
    if (r < 0) return err_set(err, FACTUM_EINVAL, "%s must be an array of strings", what);
    if (!*n) return err_set(err, FACTUM_EINVAL, "%s must not be empty", what);
    return 0;
}

static int parse_source(proj_def *d, factum_str_t body, factum_error_t *err) {
    factum_str_t src;
    int kind;
    if (!json_member(body, "source", &src, &kind)) { /* the event types the handlers name */
        d->src = SRC_TYPES;
        if (!(d->names = calloc(d->nhandlers, sizeof *d->names))) return err_set(err, FACTUM_ENOMEM, "out of memory");
        for (; d->nnames < d->nhandlers; d->nnames++)
            if (!(d->names[d->nnames] = dup_str(str_c(d->handlers[d->nnames].type))))
                return err_set(err, FACTUM_ENOMEM, "out of memory");
        return 0;
    }
    static const char *const allowed[] = {"categories", "types", "stream", NULL};
    if (kind != JSON_OBJECT)
        return err_set(
            err, FACTUM_EINVAL,
            "source must be an object: {\"categories\": [...]}, {\"types\": [...]} or {\"stream\": \"...\"}");
    int rc = json_only_members(src, "source", allowed, err);
    if (rc) return rc;
    factum_str_t v;
    int have = 0;
    if (json_member(src, "categories", &v, &kind)) {
        have++, d->src = SRC_CATEGORIES;
        if ((rc = str_array(v, kind, "source.categories", MAX_NAMES, 1000, &d->names, &d->nnames, err))) return rc;
    }
    if (json_member(src, "types", &v, &kind)) {
        have++, d->src = SRC_TYPES;
        if (have == 1 && (rc = str_array(v, kind, "source.types", MAX_NAMES, 1000, &d->names, &d->nnames, err)))
            return rc;
    }
    if (json_member(src, "stream", &v, &kind)) {
        have++, d->src = SRC_STREAM;
        buf_t s = {0};
        if (kind != JSON_STRING || json_unescape(v, &s) || !s.len || !text_valid(s.ptr, s.len)) {
            buf_free(&s);
            return err_set(err, FACTUM_EINVAL, "source.stream must be a stream name");
        }
        if (have == 1) {
            d->names = calloc(1, sizeof *d->names);
            if (!d->names || !(d->names[0] = dup_str((factum_str_t){s.ptr, s.len}))) {
                buf_free(&s);
                return err_set(err, FACTUM_ENOMEM, "out of memory");
            }
            d->nnames = 1;
        }
        buf_free(&s);
    }
    if (have != 1) return err_set(err, FACTUM_EINVAL, "source names exactly one of categories, types, stream");
    return 0;
}

static int parse_target(proj_def *d, factum_str_t body, const char *data_dir, factum_error_t *err) {
    factum_str_t tg, v;
    int kind;
    buf_t s = {0};
    d->ops = &target_sqlite;
    if (json_member(body, "target", &tg, &kind)) {
        static const char *const allowed[] = {"sqlite", "postgres", NULL};
        if (kind != JSON_OBJECT)
            return err_set(err, FACTUM_EINVAL, "target must be {\"sqlite\": PATH} or {\"postgres\": CONNINFO}");
        int rc = json_only_members(tg, "target", allowed, err);
        if (rc) return rc;
        bool pg = json_member(tg, "postgres", &v, &kind);
        if (pg == json_member(tg, "sqlite", &v, &kind) && pg)
            return err_set(err, FACTUM_EINVAL, "target names one of sqlite, postgres");
        if (pg) d->ops = &target_postgres;
        if (!pg && !json_member(tg, "sqlite", &v, &kind))
            return err_set(err, FACTUM_EINVAL, "target names one of sqlite, postgres");
        if (kind != JSON_STRING || json_unescape(v, &s) || memchr(s.ptr, 0, s.len) || s.len > 4000) {
            buf_free(&s);
            return err_set(err, FACTUM_EINVAL, "target.%s must be a string (of at most 4000 bytes)",
                           pg ? "postgres" : "sqlite");
        }
        if (pg && !s.len) {
            buf_free(&s);
            return err_set(err, FACTUM_EINVAL, "target.postgres must be a libpq connection string");
        }
    }
    buf_t w = {0};
    int rc = 0;
    if (d->ops == &target_sqlite && !s.len) {
        d->default_file = true;
        rc = buf_printf(&w, "%s/projections/%s.sqlite", data_dir, d->name);
    } else if (d->ops == &target_sqlite && s.ptr[0] != '/') {
        rc = buf_printf(&w, "%s/%.*s", data_dir, (int)s.len, s.ptr);
    } else {
        rc = buf_append(&w, s.ptr, s.len) || buf_append(&w, "", 1);
    }
    buf_free(&s);
    if (rc) return err_set(err, FACTUM_ENOMEM, "out of memory");
    d->where = w.ptr; /* NUL-terminated by buf_printf or the append above */
    return 0;
}

static int parse_handlers(proj_def *d, factum_str_t body, factum_error_t *err) {
    factum_str_t hs, k, v;
    int kind, r, rc = 0;
    if (!json_member(body, "handlers", &hs, &kind) || kind != JSON_OBJECT)
        return err_set(err, FACTUM_EINVAL, "handlers must be an object: {\"EventType\": [\"SQL\", ...], ...}");
    json_iter_t it;
    json_iter_init(&it, hs);
    buf_t type = {0};
    while (!rc && (r = json_iter_member(&it, &k, &v, &kind)) == 1) {
        type.len = 0;
        if (json_unescape(k, &type) || buf_append(&type, "", 1)) {
            rc = err_set(err, FACTUM_ENOMEM, "out of memory");
            break;
        }
        if (type.len == 1 || !text_valid(type.ptr, type.len - 1)) {
            rc = err_set(err, FACTUM_EINVAL, "handlers: an event type must be a non-empty name");
            break;
        }
        for (size_t i = 0; i < d->nhandlers; i++)
            if (!strcmp(d->handlers[i].type, type.ptr))
                rc = err_set(err, FACTUM_EINVAL, "handlers: %s appears twice", type.ptr);
        handler *grown = rc ? NULL : realloc(d->handlers, (d->nhandlers + 1) * sizeof *grown);
        if (!grown) {
            if (!rc) rc = err_set(err, FACTUM_ENOMEM, "out of memory");
            break;
        }
        d->handlers = grown;
        handler *h = &d->handlers[d->nhandlers++];
        *h = (handler){dup_str((factum_str_t){type.ptr, type.len - 1}), d->nstmts, 0};
        char what[160];
        snprintf(what, sizeof what, "handlers.%.100s", type.ptr);
        char **texts;
        size_t n;
        if (!h->type)
            rc = err_set(err, FACTUM_ENOMEM, "out of memory");
        else if (!(rc = str_array(v, kind, what, MAX_STATEMENTS, MAX_STATEMENT_BYTES, &texts, &n, err))) {
            if (d->nstmts + n > MAX_STATEMENTS) {
                free_strs(texts, n);
                rc = err_set(err, FACTUM_EINVAL, "handlers: more than %d statements in all", MAX_STATEMENTS);
                break;
            }
            sql_stmt *gs = realloc(d->stmts, (d->nstmts + n) * sizeof *gs);
            char **gt = gs ? realloc(d->texts, (d->nstmts + n) * sizeof *gt) : NULL;
            if (gs) d->stmts = gs;
            if (gt) d->texts = gt;
            if (!gs || !gt) {
                free_strs(texts, n);
                rc = err_set(err, FACTUM_ENOMEM, "out of memory");
                break;
            }
            for (size_t i = 0; i < n; i++) {
                d->texts[d->nstmts] = texts[i];
                texts[i] = NULL;
                factum_error_t e2;
                if (!rc &&
                    (rc = sql_rewrite(str_c(d->texts[d->nstmts]), d->ops->dialect, true, &d->stmts[d->nstmts], &e2)))
                    err_set(err, rc, "%s statement %zu: %s", what, i + 1, e2.message);
                if (rc) d->stmts[d->nstmts] = (sql_stmt){0};
                d->nstmts++, h->n++;
            }
            free(texts);
        }
    }
    buf_free(&type);
    if (!rc && r < 0) rc = err_set(err, FACTUM_EINVAL, "handlers is not valid JSON");
    if (!rc && !d->nhandlers) rc = err_set(err, FACTUM_EINVAL, "handlers must name at least one event type");
    return rc;
}

int proj_def_parse(const char *name, factum_str_t body, const char *data_dir, proj_def **out, factum_error_t *err) {
    *out = NULL;
    int kind;
    if (!proj_name_valid(name))
        return err_set(err, FACTUM_EINVAL, "a projection name is 1 to %d letters, digits, '_', '-' or '.' (not first)",
                       PROJ_MAX_NAME);
    if (!json_valid(body.ptr, body.len, &kind) || kind != JSON_OBJECT)
        return err_set(err, FACTUM_EINVAL, "a projection definition is a JSON object");
    static const char *const allowed[] = {"source", "target", "setup", "handlers", NULL};
    int rc = json_only_members(body, "the definition", allowed, err);
    if (rc) return rc;
    proj_def *d = calloc(1, sizeof *d);
    if (!d) return err_set(err, FACTUM_ENOMEM, "out of memory");
    snprintf(d->name, sizeof d->name, "%s", name);
    factum_str_t v;
    if (buf_append(&d->json, body.ptr, body.len)) rc = err_set(err, FACTUM_ENOMEM, "out of memory");
    if (!rc) rc = parse_target(d, body, data_dir, err);
    if (!rc && json_member(body, "setup", &v, &kind))
        rc = str_array(v, kind, "setup", MAX_SETUP, MAX_STATEMENT_BYTES, &d->setup, &d->nsetup, err);
    if (!rc) rc = parse_handlers(d, body, err);
    if (!rc) rc = parse_source(d, body, err);
    if (rc) {
        proj_def_free(d);
        return rc;
    }
    *out = d;
    return 0;
}

/* ---- statements against the target ---- */

/* Runs the setup: every statement, an object that exists already left as it is. */
static int run_setup(const proj_def *d, target *t, factum_error_t *err) {
    for (size_t i = 0; i < d->nsetup; i++) {
        bool existed;
        factum_error_t e2;
        int rc = d->ops->exec_setup(t, d->setup[i], &existed, &e2);
        if (rc) return err_set(err, rc, "setup statement %zu: %s", i + 1, e2.message);
    }
    return 0;
}

static int prepare_handlers(const proj_def *d, target *t, factum_error_t *err) {
    for (size_t h = 0; h < d->nhandlers; h++)
        for (size_t i = 0; i < d->handlers[h].n; i++) {
            factum_error_t e2;
            int rc = d->ops->prepare(t, d->handlers[h].first + i, &d->stmts[d->handlers[h].first + i], &e2);
            if (rc) return err_set(err, rc, "handlers.%s statement %zu: %s", d->handlers[h].type, i + 1, e2.message);
        }
    return 0;
}

/* The parent folder of a default file, made if missing. */
static int make_parent(const char *path, factum_error_t *err) {
    char dir[4200];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash) return 0;
    *slash = 0;
    if (mkdir(dir, 0755) && errno != EEXIST)
        return err_set(err, FACTUM_EIO, "cannot make %s: %s", dir, strerror(errno));
    return 0;
}

/* Whether the SQLite file of a definition, not there yet, can be made: it is made and removed
   at once (the folder missing, unwritable, read-only or not a real file system, /proc, all
   show). The default file's folder is the projector's to make, inside the data folder. */
static int check_creatable(const proj_def *d, factum_error_t *err) {
    if (d->default_file) return 0;
    int fd = open(d->where, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0 && errno == EEXIST) return 0;
    if (fd < 0) return err_set(err, FACTUM_EINVAL, "target.sqlite: cannot create %s: %s", d->where, strerror(errno));
    close(fd);
    unlink(d->where);
    return 0;
}

int proj_def_check(const proj_def *d, factum_error_t *err) {
    target *t;
    /* A SQLite file that does not exist yet is checked in memory: nothing is left behind for a
       definition that may be refused. */
    struct stat st;
    bool absent = d->ops == &target_sqlite && stat(d->where, &st);
    int rc = absent ? check_creatable(d, err) : 0;
    if (rc) return rc;
    rc = d->ops->connect(absent ? ":memory:" : d->where, true, &t, err);
    if (rc) return rc;
    if (!(rc = d->ops->begin(t, err)) && !(rc = run_setup(d, t, err))) rc = prepare_handlers(d, t, err);
    d->ops->rollback(t);
    d->ops->close(t);
    return rc;
}

/* "DROP ... IF EXISTS name" for a setup statement that creates a table, view or sequence. */
static bool drop_for(const char *sql, buf_t *out) {
    const char *s = sql;
    char words[8][64];
    int n = 0;
    while (n < 8) {
        while (isspace((unsigned char)*s))
            s++;
        size_t k = 0;
        while (s[k] && !isspace((unsigned char)s[k]) && s[k] != '(' && s[k] != ';' && k < 63)
            k++;
        if (!k) break;
        memcpy(words[n], s, k), words[n][k] = 0;
        s += k, n++;
    }
    int i = 0;
    if (i >= n || strcasecmp(words[i++], "create")) return false;
    if (i + 1 < n && !strcasecmp(words[i], "or") && !strcasecmp(words[i + 1], "replace")) i += 2;
    while (i < n &&
           (!strcasecmp(words[i], "temp") || !strcasecmp(words[i], "temporary") || !strcasecmp(words[i], "unlogged")))
        i++;
    bool mat = i < n && !strcasecmp(words[i], "materialized");
    if (mat) i++;
    if (i >= n) return false;
    const char *kind = words[i++];
    if (strcasecmp(kind, "table") && strcasecmp(kind, "view") && strcasecmp(kind, "sequence")) return false;
    if (i + 2 < n && !strcasecmp(words[i], "if") && !strcasecmp(words[i + 1], "not") &&
        !strcasecmp(words[i + 2], "exists"))
        i += 3;
    if (i >= n) return false;
    out->len = 0;
    return buf_printf(out, "DROP %s%s IF EXISTS %s", mat ? "MATERIALIZED " : "", kind, words[i]) == 0;
}

/* Drops what the setup created and the checkpoint, inside the caller's transaction. */
static int drop_setup(const proj_def *d, target *t, factum_error_t *err) {
    buf_t sql = {0};
    int rc = 0;
    for (size_t i = d->nsetup; i-- > 0 && !rc;)
        if (drop_for(d->setup[i], &sql)) {
            factum_error_t e2;
            if ((rc = d->ops->exec(t, sql.ptr, &e2))) err_set(err, rc, "%s: %s", sql.ptr, e2.message);
        }
    buf_free(&sql);
    return rc ? rc : d->ops->forget(t, d->name, err);
}

int proj_def_drop(const proj_def *d, factum_error_t *err) {
    struct stat st;
    if (d->ops == &target_sqlite && stat(d->where, &st)) return 0; /* never made */
    target *t;
    int rc = d->ops->connect(d->where, true, &t, err);
    if (rc) return rc;
    if (!(rc = d->ops->begin(t, err)) && !(rc = drop_setup(d, t, err))) rc = d->ops->exec(t, "COMMIT", err);
    d->ops->rollback(t);
    d->ops->close(t);
    return rc;
}

/* ---- the projector thread ---- */

static const handler *handler_of(const proj_def *d, factum_str_t type) {
    for (size_t i = 0; i < d->nhandlers; i++)
        if (str_eq(type, str_c(d->handlers[i].type))) return &d->handlers[i];
    return NULL;
}

static bool in_source(const proj_def *d, const factum_event_t *e) {
    if (d->src == SRC_STREAM) return true;
    for (size_t i = 0; i < d->nnames; i++)
        if (d->src == SRC_TYPES ? str_eq(e->type, str_c(d->names[i]))
                                : stream_in_category(e->stream, str_c(d->names[i])))
            return true;
    return false;
}

static void set_error(projector *p, const char *json_members) {
    pthread_mutex_lock(&p->mu);
    p->last_error.len = 0;
    if (json_members) buf_printf(&p->last_error, "{%s}", json_members);
    pthread_cond_broadcast(&p->cond); /* a query waiting for the first setup gives up on an error */
    pthread_mutex_unlock(&p->mu);
}

/* last_error for a message without an event. */
static void set_error_msg(projector *p, const char *msg) {
    buf_t b = {0};
    buf_append(&b, "\"message\":", 10);
    json_escape(&b, msg, strlen(msg));
    set_error(p, b.ptr);
    buf_free(&b);
}

/* Waits on the projector's condition for up to ms, or until asked something. */
static void nap(projector *p, uint64_t ms) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += (time_t)(ms / 1000);
    ts.tv_nsec += (long)(ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) ts.tv_sec++, ts.tv_nsec -= 1000000000;
    pthread_mutex_lock(&p->mu);
    if (!p->stop && !p->reset_asked) pthread_cond_timedwait(&p->cond, &p->mu, &ts);
    pthread_mutex_unlock(&p->mu);
}

/* Connects, (resets,) runs the setup and reads the checkpoint, in one transaction. */
static int open_target(projector *p, bool reset, target **out, factum_error_t *err) {
    const proj_def *d = p->d;
    if (d->default_file && make_parent(d->where, err)) return FACTUM_EUNREACHABLE;
    target *t;
    int rc = d->ops->connect(d->where, true, &t, err);
    if (rc) return rc;
    bool found = false;
    uint64_t pos = 0;
    int64_t rev = d->src == SRC_STREAM ? 0 : -1;
    size_t failed;
    if (!(rc = d->ops->begin(t, err)) && !(rc = reset ? drop_setup(d, t, err) : 0) && !(rc = run_setup(d, t, err)) &&
        !(rc = d->ops->checkpoint(t, d->name, &found, &pos, &rev, err)) && !(rc = prepare_handlers(d, t, err))) {
        if (!found) pos = 0, rev = d->src == SRC_STREAM ? 0 : -1;
        rc = d->ops->commit(t, d->name, pos, rev, &failed, err);
    }
    if (rc) {
        d->ops->rollback(t);
        d->ops->close(t);
        return rc;
    }
    pthread_mutex_lock(&p->mu);
    p->covered = pos, p->next_revision = rev;
    p->opened = true;
    if (reset) p->rebuilding = true;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->mu);
    *out = t;
    return 0;
}

typedef struct batch {
    struct {
        const factum_event_t *e;
        const handler *h; /* its handler, looked up once */
    } * ev;               /* the events with a handler */
    size_t n;
    struct {
        uint32_t ev, stmt;
    } * runs; /* what each run call was */
    size_t nruns, cap;
    sql_value v[SQL_MAX_PARAMS];
    buf_t scratch;
} batch;

/* Runs the handlers of b->ev[0..upto) and commits with the checkpoint (pos, rev). */
static int apply(projector *p, target *t, batch *b, size_t upto, uint64_t pos, int64_t rev, size_t *failed,
                 factum_error_t *err) {
    const proj_def *d = p->d;
    int rc = d->ops->begin(t, err);
    b->nruns = 0;
    for (size_t j = 0; j < upto && !rc; j++) {
        const handler *h = b->ev[j].h;
        for (size_t k = 0; k < h->n && !rc; k++) {
            const sql_stmt *s = &d->stmts[h->first + k];
            if (b->nruns == b->cap) {
                size_t cap = b->cap ? b->cap * 2 : 4096;
                void *g = realloc(b->runs, cap * sizeof *b->runs);
                if (!g) return err_set(err, FACTUM_ENOMEM, "out of memory");
                b->runs = g, b->cap = cap;
            }
            b->runs[b->nruns].ev = (uint32_t)j, b->runs[b->nruns++].stmt = (uint32_t)k;
            if ((rc = sql_bind_event(s, b->ev[j].e, &b->scratch, b->v)))
                err_set(err, rc, "out of memory");
            else
                rc = d->ops->run(t, h->first + k, b->v, s->nparams, failed, err);
        }
    }
    if (!rc) rc = d->ops->commit(t, d->name, pos, rev, failed, err);
    if (rc) d->ops->rollback(t);
    return rc;
}

static void advance(projector *p, uint64_t covered, int64_t rev, size_t applied) {
    pthread_mutex_lock(&p->mu);
    p->covered = covered, p->next_revision = rev;
    p->applied += applied;
    if (p->rebuilding && !p->reset_asked && covered >= factum_head_position(p->db)) p->rebuilding = false;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->mu);
}

/* Stops the projection as failed with last_error = {m's members} (m is freed). */
/* Stops as failed (last_error is set): queries waiting on it answer, the thread waits for a
   reset or a new definition. */
static void mark_failed(projector *p) {
    pthread_mutex_lock(&p->mu);
    p->failed = true;
    p->failures++;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->mu);
}

static void stop_failed(projector *p, buf_t *m) {
    set_error(p, m->ptr);
    buf_free(m);
    mark_failed(p);
}

/* A statement failed at run number `failed` of the batch: commit the events before its event,
   and stop there. */
static void fail_at(projector *p, target *t, batch *b, size_t failed, const char *msg) {
    const proj_def *d = p->d;
    size_t j = failed < b->nruns ? b->runs[failed].ev : b->n; /* past the runs: the checkpoint itself */
    size_t k = failed < b->nruns ? b->runs[failed].stmt : 0;
    buf_t m = {0};
    if (j < b->n) {
        const factum_event_t *e = b->ev[j].e;
        const handler *h = b->ev[j].h;
        factum_error_t e2;
        size_t f2;
        if (j > 0 && apply(p, t, b, j, e->position, d->src == SRC_STREAM ? (int64_t)e->revision : -1, &f2, &e2) == 0)
            advance(p, e->position, d->src == SRC_STREAM ? (int64_t)e->revision : -1, j);
        buf_printf(&m, "\"position\":%llu,\"stream\":", (unsigned long long)e->position);
        json_escape(&m, e->stream.ptr, e->stream.len);
        buf_printf(&m, ",\"revision\":%llu,\"type\":", (unsigned long long)e->revision);
        json_escape(&m, e->type.ptr, e->type.len);
        buf_printf(&m, ",\"statement\":%zu,\"sql\":", k + 1);
        const char *sql = d->texts[h->first + k];
        json_escape(&m, sql, strlen(sql));
        buf_append(&m, ",", 1);
    }
    buf_append(&m, "\"message\":", 10);
    json_escape(&m, msg, strlen(msg));
    stop_failed(p, &m);
}

/*
 * A read from the store failed. Damage (FACTUM_ECORRUPT, FACTUM_EIO) is not retried: the events
 * before it are applied one read at a time, and at the damaged event itself the projection stops
 * (failed) with last_error naming its position. 0 then; other errors are returned (nap, retry).
 */
static int read_failed(projector *p, size_t limit, int rc, const factum_error_t *err) {
    if (rc != FACTUM_ECORRUPT && rc != FACTUM_EIO) return rc;
    uint64_t pos;
    bool named = factum_error_position(err, &pos) == 0;
    if (limit > 1) {
        p->narrow_below = named ? pos + 1 : UINT64_MAX;
        return 0;
    }
    p->narrow_below = 0; /* a reset or a new definition starts over with whole batches */
    buf_t m = {0};
    if (named) buf_printf(&m, "\"position\":%llu,", (unsigned long long)pos);
    buf_printf(&m, "\"code\":\"%s\",\"message\":", factum_errname(rc));
    json_escape(&m, err->message, strlen(err->message));
    stop_failed(p, &m);
    return 0;
}

/* One batch. 0: applied or moved on; 1: nothing new; else an error (EUNREACHABLE: reconnect). */
static int step(projector *p, target *t, batch *b, factum_error_t *err) {
    const proj_def *d = p->d;
    uint64_t head = factum_head_position(p->db), from = p->covered, covered;
    int64_t rev = p->next_revision;
    factum_result_t *res = NULL;
    int rc;
    size_t limit = from < p->narrow_below ? 1 : BATCH;
    if (d->src == SRC_STREAM) {
        rc = factum_read_stream(p->db, str_c(d->names[0]), (uint64_t)rev, limit, 0, &res, err);
        if (rc == FACTUM_ENOTFOUND || rc == FACTUM_EDELETED) rc = 0, res = NULL;
        if (rc) return read_failed(p, limit, rc, err);
        size_t n = res ? factum_result_count(res) : 0;
        covered = n == limit ? factum_result_event(res, n - 1)->position + 1 : head;
        if (n) {
            uint64_t last = factum_result_event(res, n - 1)->position + 1;
            covered = MAX(covered, last);
            rev = (int64_t)factum_result_next(res);
        }
    } else {
        factum_query_t q = {.from = from, .limit = limit};
        if (d->nnames == 1 && d->src == SRC_TYPES) q.type = str_c(d->names[0]);
        if (d->nnames == 1 && d->src == SRC_CATEGORIES) q.category = str_c(d->names[0]);
        if ((rc = factum_read_all(p->db, &q, &res, err))) return read_failed(p, limit, rc, err);
        covered = factum_result_next(res);
    }
    size_t n = res ? factum_result_count(res) : 0;
    if (n > BATCH) n = BATCH;
    b->n = 0;
    for (size_t i = 0; i < n; i++) {
        const factum_event_t *e = factum_result_event(res, i);
        const handler *h = in_source(d, e) ? handler_of(d, e->type) : NULL;
        if (h) b->ev[b->n].e = e, b->ev[b->n++].h = h;
    }
    if (!b->n) {
        factum_result_free(res);
        if (covered <= from) return 1;
        /* Nothing to apply: the checkpoint in the database stays where it is; a restart reads
           these events again and finds nothing in them either. */
        advance(p, covered, rev, 0);
        return 0;
    }
    size_t failed = 0;
    rc = apply(p, t, b, b->n, covered, rev, &failed, err);
    if (rc == 0)
        advance(p, covered, rev, b->n);
    else if (rc != FACTUM_EUNREACHABLE && rc != FACTUM_ENOMEM)
        fail_at(p, t, b, failed, err->message);
    factum_result_free(res);
    return rc == FACTUM_EUNREACHABLE || rc == FACTUM_ENOMEM ? rc : 0;
}

static void sample_rate(projector *p) {
    int64_t now = clock_mono_us(); /* rates are over elapsed time, not the wall clock */
    pthread_mutex_lock(&p->mu);
    int last = (p->rate_i + RATE_SLOTS - 1) % RATE_SLOTS;
    if (!p->rate_len || now - p->rate_t[last] >= 1000000) {
        p->rate_t[p->rate_i] = now, p->rate_n[p->rate_i] = p->applied;
        p->rate_i = (p->rate_i + 1) % RATE_SLOTS;
        if (p->rate_len < RATE_SLOTS) p->rate_len++;
    }
    pthread_mutex_unlock(&p->mu);
}

static void *projector_main(void *arg) {
    projector *p = arg;
    const proj_def *d = p->d;
    target *t = NULL;
    batch b = {0};
    uint64_t backoff_ms = 100;
    bool reset = false;
    b.ev = malloc(BATCH * sizeof *b.ev);
    for (;;) {
        pthread_mutex_lock(&p->mu);
        if (p->stop) {
            pthread_mutex_unlock(&p->mu);
            break;
        }
        if (p->reset_asked) reset = true, p->reset_asked = false, p->failed = false;
        bool failed = p->failed;
        if (failed) pthread_cond_wait(&p->cond, &p->mu);
        pthread_mutex_unlock(&p->mu);
        if (failed) continue;
        factum_error_t err;
        if (reset && t) {
            d->ops->close(t);
            t = NULL;
        }
        if (!t) {
            int rc = b.ev ? open_target(p, reset, &t, &err) : err_set(&err, FACTUM_ENOMEM, "out of memory");
            if (rc == FACTUM_EINVAL) { /* the definition does not fit the database (a table went away) */
                set_error_msg(p, err.message);
                mark_failed(p);
                continue;
            }
            if (rc) {
                set_error_msg(p, err.message);
                nap(p, backoff_ms);
                backoff_ms = MIN(backoff_ms * 2, 5000);
                continue;
            }
            reset = false, backoff_ms = 100;
            set_error(p, NULL);
        }
        int rc = step(p, t, &b, &err);
        sample_rate(p);
        if (rc == 1) {
            factum_wait(p->db, p->covered, 200);
        } else if (rc) {
            set_error_msg(p, err.message);
            d->ops->close(t);
            t = NULL;
            nap(p, backoff_ms);
            backoff_ms = MIN(backoff_ms * 2, 5000);
        }
    }
    if (t) d->ops->close(t);
    free(b.ev);
    free(b.runs);
    buf_free(&b.scratch);
    return NULL;
}

int projector_start(factum_t *db, proj_def *d, projector **out, factum_error_t *err) {
    projector *p = calloc(1, sizeof *p);
    if (!p) {
        proj_def_free(d);
        return err_set(err, FACTUM_ENOMEM, "out of memory");
    }
    p->db = db, p->d = d;
    atomic_init(&p->refs, 1);
    pthread_mutex_init(&p->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->cond, &ca);
    pthread_condattr_destroy(&ca);
    p->next_revision = d->src == SRC_STREAM ? 0 : -1;
    if (pthread_create(&p->thread, NULL, projector_main, p)) {
        p->stopped = true;
        projector_unref(p);
        return err_set(err, FACTUM_ENOMEM, "cannot start a projector thread");
    }
    *out = p;
    return 0;
}

void projector_stop(projector *p) {
    pthread_mutex_lock(&p->mu);
    p->stop = true;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->mu);
    pthread_join(p->thread, NULL);
    pthread_mutex_lock(&p->mu);
    p->stopped = true;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->mu);
    projector_unref(p);
}

void projector_ref(projector *p) { atomic_fetch_add(&p->refs, 1); }

void projector_unref(projector *p) {
    if (atomic_fetch_sub(&p->refs, 1) != 1) return;
    for (size_t i = 0; i < p->nidle; i++)
        p->d->ops->close(p->idle[i]);
    proj_def_free(p->d);
    buf_free(&p->last_error);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cond);
    free(p);
}

const proj_def *projector_definition(const projector *p) { return p->d; }

void projector_reset(projector *p) {
    pthread_mutex_lock(&p->mu);
    p->reset_asked = true, p->rebuilding = true;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->mu);
}

void projector_get_stats(projector *p, projector_stats *st) {
    uint64_t head = factum_head_position(p->db);
    pthread_mutex_lock(&p->mu);
    st->position = p->covered;
    st->applied = p->applied;
    st->failures = p->failures;
    st->status = p->failed ? PROJ_FAILED : p->stopped || p->stop ? PROJ_STOPPED : PROJ_RUNNING;
    st->rebuilding = p->rebuilding;
    st->events_per_second = 0;
    if (p->rate_len >= 2) {
        int newest = (p->rate_i + RATE_SLOTS - 1) % RATE_SLOTS;
        int oldest = (p->rate_i + RATE_SLOTS - p->rate_len) % RATE_SLOTS;
        int64_t dt = p->rate_t[newest] - p->rate_t[oldest];
        if (dt > 0) st->events_per_second = (double)(p->rate_n[newest] - p->rate_n[oldest]) * 1e6 / (double)dt;
    }
    pthread_mutex_unlock(&p->mu);
    st->lag_events = head > st->position ? head - st->position : 0;
    st->lag_seconds = 0;
    if (st->position < head) {
        factum_query_t q = {.from = st->position, .limit = 1, .system = 1};
        factum_result_t *r;
        if (factum_read_all(p->db, &q, &r, NULL) == 0) {
            if (factum_result_count(r))
                st->lag_seconds = (double)(clock_realtime_us() - factum_result_event(r, 0)->time_us) / 1e6;
            factum_result_free(r);
        }
        if (st->lag_seconds < 0) st->lag_seconds = 0;
    }
}

const char *const projector_status_names[3] = {"running", "failed", "stopped"};

void projector_status(projector *p, bool with_definition, buf_t *out) {
    projector_stats st;
    projector_get_stats(p, &st);
    pthread_mutex_lock(&p->mu);
    buf_t lerr = {0};
    buf_append(&lerr, p->last_error.ptr, p->last_error.len);
    pthread_mutex_unlock(&p->mu);
    buf_append(out, "{\"name\":", 8);
    json_escape(out, p->d->name, strlen(p->d->name));
    buf_printf(
        out,
        ",\"status\":\"%s\",\"position\":%llu,\"lag_events\":%llu,\"lag_seconds\":%.3f,\"events_per_second\":%.0f,"
        "\"applied\":%llu,\"rebuilding\":%s,\"target\":\"%s\",\"last_error\":",
        projector_status_names[st.status], (unsigned long long)st.position, (unsigned long long)st.lag_events,
        st.lag_seconds, st.events_per_second, (unsigned long long)st.applied, st.rebuilding ? "true" : "false",
        p->d->ops->dialect == SQL_SQLITE ? "sqlite" : "postgres");
    if (lerr.len)
        buf_append(out, lerr.ptr, lerr.len);
    else
        buf_append(out, "null", 4);
    buf_free(&lerr);
    if (with_definition) {
        buf_append(out, ",\"definition\":", 14);
        buf_append(out, p->d->json.ptr, p->d->json.len);
    }
    buf_append(out, "}", 1);
}

/* ---- queries ---- */

/*
 * Waits until the projection has passed min_position (with has_min), and in any case until its
 * setup has run once, so that a query right after PUT finds the tables and does not answer
 * "no such table". A projection that cannot reach its target yet is not waited for: the query
 * then meets the same trouble and says so.
 */
static int wait_for(projector *p, bool has_min, uint64_t min_position, uint64_t deadline_ns, factum_error_t *err) {
    struct timespec ts = {(time_t)(deadline_ns / 1000000000u), (long)(deadline_ns % 1000000000u)};
    int rc = 0;
    pthread_mutex_lock(&p->mu);
    while ((has_min && p->covered <= min_position) || (!p->opened && !p->last_error.len && !p->failed)) {
        if (p->failed) {
            rc = err_set(err, FACTUM_ECONFLICT, "projection %s failed at position %llu, before %llu", p->d->name,
                         (unsigned long long)p->covered, (unsigned long long)min_position);
            break;
        }
        if (p->stop || p->stopped) {
            rc = err_set(err, FACTUM_ECLOSED, "projection %s was stopped", p->d->name);
            break;
        }
        if (pthread_cond_timedwait(&p->cond, &p->mu, &ts) == ETIMEDOUT) {
            if (has_min && p->covered <= min_position)
                rc = err_set(err, FACTUM_ETIMEDOUT, "projection %s is at position %llu and did not pass %llu in time",
                             p->d->name, (unsigned long long)p->covered, (unsigned long long)min_position);
            else if (!p->opened)
                rc = err_set(err, FACTUM_ETIMEDOUT, "projection %s has not set up its target yet", p->d->name);
            break;
        }
    }
    pthread_mutex_unlock(&p->mu);
    return rc;
}

int projector_query(projector *p, factum_str_t body, buf_t *out, factum_error_t *err) {
    const proj_def *d = p->d;
    int kind;
    if (!json_valid(body.ptr, body.len, &kind) || kind != JSON_OBJECT)
        return err_set(
            err, FACTUM_EINVAL,
            "a query is a JSON object {\"sql\": ..., \"params\": {...}, \"min_position\": P, \"timeout_ms\": T}");
    static const char *const allowed[] = {"sql", "params", "min_position", "timeout_ms", NULL};
    int rc = json_only_members(body, "the query", allowed, err);
    if (rc) return rc;
    factum_str_t params = {0}, v;
    buf_t sql = {0};
    uint64_t min_position = 0, timeout_ms = QUERY_TIMEOUT_MS;
    bool has_min = json_member(body, "min_position", &v, &kind);
    if (!json_member_string(body, "sql", &sql) || !sql.len)
        rc = err_set(err, FACTUM_EINVAL, "sql must be a string");
    else if (json_member(body, "params", &params, &kind) && kind != JSON_OBJECT)
        rc = err_set(err, FACTUM_EINVAL, "params must be an object");
    else if (has_min && !json_member_u64(body, "min_position", &min_position))
        rc = err_set(err, FACTUM_EINVAL, "min_position must be a position (a whole number)");
    else if (json_member(body, "timeout_ms", &v, &kind) &&
             (!json_member_u64(body, "timeout_ms", &timeout_ms) || timeout_ms > QUERY_MAX_TIMEOUT_MS))
        rc = err_set(err, FACTUM_EINVAL, "timeout_ms must be 0 to %d", QUERY_MAX_TIMEOUT_MS);
    sql_stmt s = {0};
    if (!rc) rc = sql_rewrite((factum_str_t){sql.ptr, sql.len}, d->ops->dialect, false, &s, err);
    buf_free(&sql);
    if (rc) return rc;
    uint64_t deadline = clock_mono_ns() + timeout_ms * 1000000u;
    rc = wait_for(p, has_min, min_position, deadline, err);
    target *t = NULL;
    if (!rc) {
        pthread_mutex_lock(&p->mu);
        if (p->nidle) t = p->idle[--p->nidle];
        pthread_mutex_unlock(&p->mu);
        if (!t) rc = d->ops->connect(d->where, false, &t, err);
    }
    sql_value vals[SQL_MAX_PARAMS];
    buf_t scratch = {0};
    if (!rc && (rc = sql_bind_json(&s, params, &scratch, vals))) err_set(err, rc, "out of memory");
    if (!rc) rc = d->ops->query(t, &s, vals, QUERY_MAX_ROWS, deadline, out, err);
    if (t) {
        pthread_mutex_lock(&p->mu);
        bool keep = rc != FACTUM_EUNREACHABLE && p->nidle < IDLE_POOL;
        if (keep) p->idle[p->nidle++] = t;
        pthread_mutex_unlock(&p->mu);
        if (!keep) d->ops->close(t);
    }
    buf_free(&scratch);
    sql_stmt_free(&s);
    return rc;
}
