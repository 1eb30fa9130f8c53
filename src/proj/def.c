/*
 * def.c — a projection's definition: parsing and checking it (no I/O), checking it against its
 * database (setup and handler statements prepared in a transaction rolled back), and the
 * statements that make, reset or drop its read model. The runner is projector.c.
 */
#include "def.h"

#include "../base/json.h"

#include "../io/io.h"

#include <libpq-fe.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

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
    buf_free(&d->shown);
    free_strs(d->names, d->nnames);
    free(d->where);
    free(d->root);
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
factum_str_t proj_def_shown(const proj_def *d) { return (factum_str_t){d->shown.ptr, d->shown.len}; }

/* (def.h) */
int proj_conninfo_redact(const char *conninfo, buf_t *out, bool *had_password) {
    char *msg = NULL;
    PQconninfoOption *opts = PQconninfoParse(conninfo, &msg);
    int rc = 0;
    *had_password = false;
    for (PQconninfoOption *o = opts; o && o->keyword && !rc; o++) {
        if (!o->val) continue;
        bool secret = !strcmp(o->keyword, "password");
        if (secret && strcmp(o->val, "*****")) *had_password = true;
        rc = buf_printf(out, "%s%s='", out->len ? " " : "", o->keyword);
        for (const char *c = secret ? "*****" : o->val; *c && !rc; c++)
            rc = buf_printf(out, "%s%c", *c == '\'' || *c == '\\' ? "\\" : "", *c);
        if (!rc) rc = buf_append(out, "'", 1);
    }
    if (!opts) rc = buf_printf(out, "*****");
    PQconninfoFree(opts);
    PQfreemem(msg);
    return rc;
}

void proj_def_secret_path(const proj_def *d, char *out, size_t cap) {
    snprintf(out, cap, "%s/projections/%s.secret", d->root, d->name);
}

/*
 * The definition as answered and as recorded: the same JSON, with a PostgreSQL connection
 * string redacted. A definition that comes back redacted (replayed from its record) takes its
 * password from the secret file the PUT wrote, when that file's string redacts to the same.
 */
static int make_shown(proj_def *d, factum_str_t body) {
    factum_str_t tg, v;
    int kind;
    if (d->ops != &target_postgres || !json_member(body, "target", &tg, &kind) ||
        !json_member(tg, "postgres", &v, &kind))
        return buf_append(&d->shown, body.ptr, body.len);
    buf_t conn = {0}, mine = {0};
    bool kept;
    int rc = proj_conninfo_redact(d->where, &conn, &d->password);
    char path[4400], *secret = NULL;
    size_t n;
    proj_def_secret_path(d, path, sizeof path);
    if (!rc && !d->password && io_read_file(path, &secret, &n) == 0 && !proj_conninfo_redact(secret, &mine, &kept) &&
        kept && mine.len == conn.len && !memcmp(mine.ptr, conn.ptr, conn.len)) {
        free(d->where);
        d->where = secret, secret = NULL;
        d->password = true;
    }
    free(secret);
    buf_free(&mine);
    if (!rc)
        rc = buf_append(&d->shown, body.ptr, (size_t)(v.ptr - body.ptr)) ||
             json_escape(&d->shown, conn.ptr ? conn.ptr : "", conn.len) ||
             buf_append(&d->shown, v.ptr + v.len, (size_t)(body.ptr + body.len - (v.ptr + v.len)));
    buf_free(&conn);
    return rc;
}

int proj_def_keep_secret(const proj_def *d, factum_error_t *err) {
    if (d->ops != &target_postgres) return 0;
    char path[4400];
    proj_def_secret_path(d, path, sizeof path);
    if (!d->password)
        return unlink(path) && errno != ENOENT ? err_set(err, FACTUM_EIO, "cannot remove %s: %s", path, strerror(errno))
                                               : 0;
    char dir[4400];
    snprintf(dir, sizeof dir, "%s/projections", d->root);
    int e = io_make_dir(dir);
    if (!e) e = io_replace_file(path, d->where, strlen(d->where), 0600);
    return e ? err_set(err, FACTUM_EIO, "cannot keep the password of projection %s in %s: %s", d->name, path,
                       strerror(-e))
             : 0;
}

void proj_def_forget_secret(const proj_def *d) {
    char path[4400];
    proj_def_secret_path(d, path, sizeof path);
    unlink(path);
}

const char *proj_def_default_file(const proj_def *d) { return d->default_file ? d->where : NULL; }

bool proj_def_node_local(const proj_def *d) { return d->ops == &target_sqlite; }

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

/*
 * A SQLite target's path is relative to the data folder and stays in it: not absolute, no ".."
 * step, and not in the store's own folders (log/, index/). Symlinks are followed at PUT and at
 * every start (proj_def_confined). The default, "", is DATA/projections/NAME.sqlite.
 */
static int sqlite_path_bad(factum_str_t p, factum_error_t *err) {
    if (p.ptr[0] == '/')
        return err_set(err, FACTUM_EINVAL,
                       "target.sqlite must be a path relative to the data folder, not an absolute one (%.*s)",
                       (int)MIN(p.len, 200), p.ptr);
    for (size_t i = 0; i < p.len;) {
        size_t j = i;
        while (j < p.len && p.ptr[j] != '/')
            j++;
        factum_str_t part = {p.ptr + i, j - i};
        if (str_eq(part, str_c("..")))
            return err_set(err, FACTUM_EINVAL, "target.sqlite must stay inside the data folder: no '..' (%.*s)",
                           (int)MIN(p.len, 200), p.ptr);
        if (i == 0 && (str_eq(part, str_c("log")) || str_eq(part, str_c("index"))) && j < p.len)
            return err_set(err, FACTUM_EINVAL, "target.sqlite cannot be in the store's own folder %.*s/", (int)part.len,
                           part.ptr);
        i = j + 1;
    }
    return 0;
}

int proj_def_confined(const proj_def *d, factum_error_t *err) {
    if (d->ops != &target_sqlite || d->default_file) return 0; /* the default is made from a checked name */
    char *root = realpath(d->root, NULL), *dir = strdup(d->where);
    char *slash = dir ? strrchr(dir, '/') : NULL;
    if (slash) *slash = 0;
    char *real = slash ? realpath(dir, NULL) : NULL;
    size_t n = root ? strlen(root) : 0;
    int rc = 0;
    if (!root || !real)
        rc = err_set(err, FACTUM_EINVAL, "target.sqlite: cannot resolve %s: %s", d->where, strerror(errno));
    else if (strncmp(real, root, n) || (real[n] && real[n] != '/'))
        rc = err_set(err, FACTUM_EINVAL, "target.sqlite: %s leads outside the data folder (to %s)", d->where, real);
    struct stat st;
    if (!rc && lstat(d->where, &st) == 0 && !S_ISREG(st.st_mode))
        rc = err_set(err, FACTUM_EINVAL, "target.sqlite: %s is not a regular file (a link?)", d->where);
    free(root);
    free(dir);
    free(real);
    return rc;
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
    if (d->ops == &target_sqlite && s.len) {
        int bad = sqlite_path_bad((factum_str_t){s.ptr, s.len}, err);
        if (bad) {
            buf_free(&s);
            return bad;
        }
    }
    buf_t w = {0};
    int rc = 0;
    if (d->ops == &target_sqlite && !s.len) {
        d->default_file = true;
        rc = buf_printf(&w, "%s/projections/%s.sqlite", data_dir, d->name);
    } else if (d->ops == &target_sqlite) {
        rc = buf_printf(&w, "%s/%.*s", data_dir, (int)s.len, s.ptr);
    } else {
        rc = buf_append(&w, s.ptr, s.len) || buf_append(&w, "", 1);
    }
    buf_free(&s);
    if (!rc && !(d->root = strdup(data_dir))) rc = -1;
    if (rc) {
        buf_free(&w);
        return err_set(err, FACTUM_ENOMEM, "out of memory");
    }
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
    if (!rc && make_shown(d, body)) rc = err_set(err, FACTUM_ENOMEM, "out of memory");
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

int proj_def_check(const proj_def *d, buf_t *warnings, factum_error_t *err) {
    target *t;
    /* A SQLite file that does not exist yet is checked in memory: nothing is left behind for a
       definition that may be refused. */
    struct stat st;
    bool absent = d->ops == &target_sqlite && stat(d->where, &st);
    int rc = proj_def_confined(d, err); /* before anything is made: nothing outside, even for a moment */
    if (!rc && absent) rc = check_creatable(d, err);
    if (rc) return rc;
    rc = d->ops->connect(absent ? ":memory:" : d->where, true, &t, err);
    if (rc) return rc;
    char who[128];
    if (warnings && d->ops->privileged(t, who, sizeof who)) {
        char msg[400];
        snprintf(msg, sizeof msg,
                 "the connection's role %s is a superuser: a handler statement can do whatever the database server's "
                 "operating system user can (COPY ... TO PROGRAM); give the projection a role that owns only its read "
                 "model",
                 who);
        if (warnings->len) buf_append(warnings, ",", 1);
        json_escape(warnings, msg, strlen(msg));
    }
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

int proj_def_ready(const proj_def *d, target *t, bool reset, factum_error_t *err) {
    int rc = reset ? drop_setup(d, t, err) : 0;
    if (!rc) rc = run_setup(d, t, err);
    if (!rc) rc = prepare_handlers(d, t, err);
    return rc;
}

int proj_def_make_parent(const proj_def *d, factum_error_t *err) {
    return d->default_file ? make_parent(d->where, err) : 0;
}
