/*
 * api_projections.c — the registry of projections and the /projections API (docs/projections.md):
 *
 *   PUT    /projections/{name}         define or redefine (201 / 200), checked against its database
 *   GET    /projections                every projection's status
 *   GET    /projections/{name}         its status and definition
 *   DELETE /projections/{name}         stop it, drop what its setup made (?keep_data=true: don't)
 *   POST   /projections/{name}/reset   rebuild from the first event (202)
 *   POST   /projections/{name}/query   a read-only query, after min_position is applied
 *
 * Definitions are records in the system stream $projections (ProjectionDefined with the name,
 * the definition as given and its owner, ProjectionDeleted), replayed at start. The owner is the
 * key that first defined the name (sys/owners.h); the registry counts each key's for its
 * max_projections (limits.c). Where a projection stands is
 * not here: it is the checkpoint in its own database. Anything that talks to a database, or
 * waits, runs as a job on a worker thread; a mutex (define_mu) keeps definitions in log order,
 * and makes the count a new definition is checked against (--max-projections, limits.c) exact.
 * Projectors run as tasks on the server's definitions' pool (sys/pool.h).
 */
#include "api.h"

#include "../base/log.h"
#include "../base/json.h"
#include "../proj/projector.h"
#include "../sys/defs.h"
#include "../sys/pool.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define PROJECTIONS_STREAM "$projections"

typedef struct entry {
    char name[PROJ_MAX_NAME + 1];
    char owner[OWNER_MAX];
    projector *p;
    uint64_t def_hash; /* of its definition as recorded (defs_hash) */
    struct entry *next;
} entry;

struct projections {
    factum_t *db;
    pool *pool;
    char *data_dir;
    pthread_mutex_t mu;        /* the list */
    pthread_mutex_t define_mu; /* one definition change at a time: log order = registry order */
    entry *list;
    size_t n;             /* in the list */
    owners owned;         /* under mu: the list's entries by owner */
    defs_follower follow; /* $projections as far as this registry applied it (under define_mu) */
};

/* ---- the registry ---- */

static entry **find(projections_t *ps, const char *name) {
    entry **e = &ps->list;
    while (*e && strcmp((*e)->name, name))
        e = &(*e)->next;
    return e;
}

/* A referenced projector by name (projector_unref it), or NULL. */
static projector *get(projections_t *ps, const char *name) {
    pthread_mutex_lock(&ps->mu);
    entry *e = *find(ps, name);
    projector *p = e ? e->p : NULL;
    if (p) projector_ref(p);
    pthread_mutex_unlock(&ps->mu);
    return p;
}

/* The owner a definition of name gets: the first one's, or key for a new name. */
static void owner_for(projections_t *ps, const char *name, const char *key, char out[OWNER_MAX]) {
    pthread_mutex_lock(&ps->mu);
    entry *e = *find(ps, name);
    snprintf(out, OWNER_MAX, "%s", e ? e->owner : key);
    pthread_mutex_unlock(&ps->mu);
}

/* Puts p in as name's projector (a new name owned by owner; hash: its recorded definition's);
   returns the one it replaces (stop it), or NULL. */
static projector *put(projections_t *ps, const char *name, projector *p, const char *owner, uint64_t hash) {
    pthread_mutex_lock(&ps->mu);
    entry **e = find(ps, name);
    projector *old = NULL;
    if (*e) {
        old = (*e)->p;
        if (p) {
            (*e)->p = p, (*e)->def_hash = hash;
        } else {
            entry *gone = *e;
            *e = gone->next;
            owners_add(&ps->owned, gone->owner, -1);
            free(gone);
            ps->n--;
        }
    } else if (p) {
        entry *n = calloc(1, sizeof *n);
        if (!n) abort(); /* the server may stop on out-of-memory (STYLE.md) */
        snprintf(n->name, sizeof n->name, "%s", name);
        snprintf(n->owner, sizeof n->owner, "%s", owner);
        owners_add(&ps->owned, owner, 1);
        n->p = p, n->def_hash = hash;
        n->next = ps->list;
        ps->list = n;
        ps->n++;
    }
    pthread_mutex_unlock(&ps->mu);
    return old;
}

/* Starts a projector on d (taking it) as name's, stopping the one it replaces. */
static int run(projections_t *ps, const char *name, proj_def *d, const char *owner, factum_error_t *err) {
    uint64_t hash = defs_hash(proj_def_shown(d)); /* what its record holds */
    projector *p;
    int rc = projector_start(ps->db, ps->pool, d, &p, err);
    if (rc) return rc;
    projector *old = put(ps, name, p, owner, hash);
    if (old) projector_stop(old);
    return 0;
}

static int start(projections_t *ps, const char *name, factum_str_t def, const char *owner, factum_error_t *err) {
    proj_def *d;
    int rc = proj_def_parse(name, def, ps->data_dir, &d, err);
    return rc ? rc : run(ps, name, d, owner, err);
}

static void replay_def(void *ctx, const char *name, factum_str_t def, const char *owner) {
    factum_error_t e2;
    if (start(ctx, name, def, owner, &e2)) log_msg(LOG_LEVEL_ERROR, "projection %s not started: %s", name, e2.message);
}

/* ---- a cluster follower: what the leader defined and deleted ---- */

static void follow_defined(void *ctx, const char *name, factum_str_t def, const char *owner) {
    projections_t *ps = ctx;
    pthread_mutex_lock(&ps->mu);
    entry *e = *find(ps, name);
    bool same = e && e->def_hash == defs_hash(def);
    pthread_mutex_unlock(&ps->mu);
    if (!same) replay_def(ps, name, def, owner); /* else this registry's own record */
}

/* The leader deleted it: stop it; a read model of this node's own (SQLite) goes as the leader's
   did, unless the record says its data was kept. A shared PostgreSQL one was the leader's to drop. */
static void follow_deleted(void *ctx, const char *name, factum_str_t rec) {
    projections_t *ps = ctx;
    projector *p = get(ps, name);
    if (!p) return; /* this registry's own record */
    put(ps, name, NULL, NULL, 0);
    projector_stop(p);
    const proj_def *pd = projector_definition(p);
    factum_str_t v;
    int kind;
    bool kept = json_member(rec, "data_kept", &v, &kind) && kind == JSON_TRUE;
    factum_error_t err;
    if (!kept && proj_def_node_local(pd) && proj_def_drop(pd, &err))
        log_msg(LOG_LEVEL_WARN, "projection %s: its read model not dropped: %s", name, err.message);
    const char *file = proj_def_default_file(pd);
    if (!kept && file) {
        char path[4200];
        const char *sfx[] = {"", "-wal", "-shm"};
        for (int i = 0; i < 3; i++)
            snprintf(path, sizeof path, "%s%s", file, sfx[i]), unlink(path);
    }
    proj_def_forget_secret(pd);
    projector_unref(p);
}

int projections_follow(projections_t *ps, factum_error_t *err) {
    pthread_mutex_lock(&ps->define_mu);
    int rc = defs_follow(ps->db, &ps->follow, ps, err);
    pthread_mutex_unlock(&ps->define_mu);
    return rc;
}

int projections_open(factum_t *db, pool *pl, const char *data_dir, projections_t **out, factum_error_t *err) {
    projections_t *ps = calloc(1, sizeof *ps);
    if (!ps || !(ps->data_dir = strdup(data_dir))) {
        free(ps);
        return err_set(err, FACTUM_ENOMEM, "out of memory");
    }
    ps->db = db, ps->pool = pl;
    pthread_mutex_init(&ps->mu, NULL);
    pthread_mutex_init(&ps->define_mu, NULL);
    ps->follow = (defs_follower){PROJECTIONS_STREAM, "ProjectionDefined", "ProjectionDeleted",
                                 follow_defined,     follow_deleted,      0};
    int rc = defs_replay(db, PROJECTIONS_STREAM, "ProjectionDefined", "ProjectionDeleted", replay_def, ps,
                         &ps->follow.next, err);
    if (rc) {
        projections_close(ps);
        return rc;
    }
    *out = ps;
    return 0;
}

void projections_stop(projections_t *ps) {
    if (!ps) return;
    pthread_mutex_lock(&ps->define_mu);
    for (;;) {
        pthread_mutex_lock(&ps->mu);
        entry *e = ps->list;
        if (e) ps->list = e->next, ps->n--, owners_add(&ps->owned, e->owner, -1);
        pthread_mutex_unlock(&ps->mu);
        if (!e) break;
        projector_stop(e->p);
        free(e);
    }
    pthread_mutex_unlock(&ps->define_mu);
}

size_t projections_count(projections_t *ps) {
    pthread_mutex_lock(&ps->mu);
    size_t n = ps->n;
    pthread_mutex_unlock(&ps->mu);
    return n;
}

uint64_t projections_count_owned(projections_t *ps, const char *key) {
    pthread_mutex_lock(&ps->mu);
    uint64_t n = owners_count(&ps->owned, key);
    pthread_mutex_unlock(&ps->mu);
    return n;
}

void projections_close(projections_t *ps) {
    if (!ps) return;
    projections_stop(ps);
    pthread_mutex_destroy(&ps->mu);
    pthread_mutex_destroy(&ps->define_mu);
    owners_free(&ps->owned);
    free(ps->data_dir);
    free(ps);
}

/* ---- jobs ---- */

/* Shares d's secret file (written or removed) with a cluster's other nodes. */
static int share_secret(server *s, const proj_def *d, factum_error_t *err) {
    char path[4400];
    proj_def_secret_path(d, path, sizeof path);
    return server_share_secret(s, path, err);
}

static void define_work(conn *c) {
    projections_t *ps = c->l->srv->projections;
    named_job *j = c->job;
    factum_str_t body = {j->body.ptr, j->body.len};
    proj_def *d = NULL;
    buf_t warnings = {0};
    char owner[OWNER_MAX];
    pthread_mutex_lock(&ps->define_mu);
    projector *old = get(ps, j->name);
    owner_for(ps, j->name, c->req_key, owner);
    if (!old && !limits_admit(c, LIMIT_PROJECTIONS, projections_count(ps), &j->limit)) { /* a new one past a
                                                                     limit: its database is not even opened */
        j->limited = true;
        j->rc = err_set(&j->err, FACTUM_EINVAL, "too many projections");
    } else if (!(j->rc = proj_def_parse(j->name, body, ps->data_dir, &d, &j->err))) {
        j->rc = proj_def_check(d, &warnings, &j->err);
    }
    if (!j->rc) j->rc = proj_def_keep_secret(d, &j->err);    /* the record holds no password */
    if (!j->rc) j->rc = share_secret(c->l->srv, d, &j->err); /* before the record a follower acts on */
    if (!j->rc)
        j->rc =
            defs_record(ps->db, PROJECTIONS_STREAM, "ProjectionDefined", j->name, proj_def_shown(d), owner, &j->err);
    if (!j->rc)
        j->rc = run(ps, j->name, d, owner, &j->err); /* d is the projector's now */
    else
        proj_def_free(d);
    pthread_mutex_unlock(&ps->define_mu);
    if (old) projector_unref(old);
    j->status = old ? 200 : 201;
    projector *p = j->rc ? NULL : get(ps, j->name);
    if (p) {
        projector_status(p, true, &j->out);
        projector_unref(p);
        if (warnings.len && j->out.len) { /* {... ,"warnings":[...]} */
            j->out.len--;
            buf_printf(&j->out, ",\"warnings\":[%.*s]}", (int)warnings.len, warnings.ptr);
            log_msg(LOG_LEVEL_WARN, "projection %s: warning: %.*s", j->name, (int)warnings.len, warnings.ptr);
        }
    }
    buf_free(&warnings);
}

static void delete_work(conn *c) {
    projections_t *ps = c->l->srv->projections;
    named_job *j = c->job;
    char owner[OWNER_MAX];
    pthread_mutex_lock(&ps->define_mu);
    projector *p = get(ps, j->name);
    owner_for(ps, j->name, "", owner);
    if (!p) {
        j->rc = err_set(&j->err, FACTUM_ENOTFOUND, "no projection %s", j->name);
    } else {
        /* Stop it, drop its data, then record the deletion: a crash between the two leaves a
           projection that starts again from nothing, which is consistent. */
        put(ps, j->name, NULL, NULL, 0);
        projector_stop(p); /* the list's reference; ours keeps the definition */
        const proj_def *pd = projector_definition(p);
        if (!j->flag) {
            j->rc = proj_def_drop(pd, &j->err);
            const char *file = proj_def_default_file(pd);
            if (!j->rc && file) {
                char path[4200];
                const char *sfx[] = {"", "-wal", "-shm"};
                for (int i = 0; i < 3; i++)
                    snprintf(path, sizeof path, "%s%s", file, sfx[i]), unlink(path);
            }
        }
        if (!j->rc)
            j->rc = defs_record_member(ps->db, PROJECTIONS_STREAM, "ProjectionDeleted", j->name, "data_kept",
                                       j->flag ? str_c("true") : (factum_str_t){0}, NULL, &j->err);
        if (!j->rc) {
            proj_def_forget_secret(pd);
            factum_error_t e2;
            if (share_secret(c->l->srv, pd, &e2))
                log_msg(LOG_LEVEL_WARN, "projection %s: its password stays in the cluster's bucket: %s", j->name,
                        e2.message);
        }
        if (j->rc) { /* nothing changed: it goes on */
            factum_error_t e2;
            if (start(ps, j->name, proj_def_json(pd), owner, &e2))
                log_msg(LOG_LEVEL_ERROR, "projection %s not restarted: %s", j->name, e2.message);
        }
        projector_unref(p);
        j->status = 200;
        if (!j->rc)
            buf_printf(&j->out, "{\"name\":\"%s\",\"deleted\":true,\"data_kept\":%s}", j->name,
                       j->flag ? "true" : "false");
    }
    pthread_mutex_unlock(&ps->define_mu);
}

static void query_work(conn *c) {
    named_job *j = c->job;
    projector *p = get(c->l->srv->projections, j->name);
    if (!p) {
        j->rc = err_set(&j->err, FACTUM_ENOTFOUND, "no projection %s", j->name);
        return;
    }
    j->rc = projector_query(p, (factum_str_t){j->body.ptr, j->body.len}, &j->out, &j->err);
    j->status = 200;
    projector_unref(p);
}

/* Answers from a worker thread; 409 for a query that waited on a projection that failed. */
static void submit(conn *c, const char *name, factum_str_t body, bool keep_data, job_fn work) {
    server_submit_named(c, name, body, keep_data, "/projections/", "projection-failed", work);
}

/* ---- routing ---- */

void api_list_projections(conn *c, const route_args *a, factum_str_t body) {
    (void)a, (void)body;
    projections_t *ps = c->l->srv->projections;
    buf_t b = {0};
    buf_append(&b, "[", 1);
    pthread_mutex_lock(&ps->mu);
    for (entry *e = ps->list; e; e = e->next) {
        if (b.len > 1) buf_append(&b, ",", 1);
        projector_status(e->p, false, &b);
    }
    pthread_mutex_unlock(&ps->mu);
    buf_append(&b, "]", 1);
    conn_respond(c, 200, "application/json", NULL, b.ptr, b.len);
    buf_free(&b);
}

/* The {name} param into name; false (answered 400) if it is not a projection name. */
static bool name_arg(conn *c, const route_args *a, char name[PROJ_MAX_NAME + 1]) {
    return api_path_name(
        c, a->p[0], PROJ_MAX_NAME, proj_name_valid,
        "a projection name is 1 to " STRINGIFY(PROJ_MAX_NAME) " letters, digits, '_', '-' or '.' (not first)", name);
}

/* The projection of the {name} param (a reference to unref), or NULL having answered. */
static projector *projection_arg(conn *c, const route_args *a, char name[PROJ_MAX_NAME + 1]) {
    if (!name_arg(c, a, name)) return NULL;
    projector *p = get(c->l->srv->projections, name);
    if (!p) conn_problem(c, 404, "not-found", NULL, "no projection %s", name);
    return p;
}

void api_define_projection(conn *c, const route_args *a, factum_str_t body) {
    char name[PROJ_MAX_NAME + 1];
    if (name_arg(c, a, name)) submit(c, name, body, false, define_work);
}

void api_delete_projection(conn *c, const route_args *a, factum_str_t body) {
    char name[PROJ_MAX_NAME + 1];
    if (!name_arg(c, a, name)) return;
    factum_str_t q = c->req->h.query;
    bool keep = str_eq(q, str_c("keep_data=true"));
    if (q.len && !keep && !str_eq(q, str_c("keep_data=false"))) {
        conn_problem(c, 400, "bad-request", NULL, "DELETE /projections/{name} takes keep_data=true or keep_data=false");
        return;
    }
    submit(c, name, body, keep, delete_work);
}

void api_show_projection(conn *c, const route_args *a, factum_str_t body) {
    (void)body;
    char name[PROJ_MAX_NAME + 1];
    projector *p = projection_arg(c, a, name);
    if (!p) return;
    buf_t b = {0};
    projector_status(p, true, &b);
    projector_unref(p);
    conn_respond(c, 200, "application/json", NULL, b.ptr, b.len);
    buf_free(&b);
}

void api_query_projection(conn *c, const route_args *a, factum_str_t body) {
    char name[PROJ_MAX_NAME + 1];
    projector *p = projection_arg(c, a, name);
    if (!p) return;
    projector_unref(p);
    submit(c, name, body, false, query_work);
}

void api_reset_projection(conn *c, const route_args *a, factum_str_t body) {
    (void)body;
    char name[PROJ_MAX_NAME + 1];
    projector *p = projection_arg(c, a, name);
    if (!p) return;
    projector_reset(p);
    buf_t b = {0};
    projector_status(p, false, &b);
    projector_unref(p);
    char loc[160];
    snprintf(loc, sizeof loc, "Location: /projections/%s\r\n", name);
    conn_respond(c, 202, "application/json", loc, b.ptr, b.len);
    buf_free(&b);
}

/* ---- metrics ---- */

void projections_metrics(projections_t *ps, buf_t *b) {
    static const struct {
        const char *name, *type, *help;
    } fam[] = {
        {"factum_projection_status", "gauge",
         "1 for the projection's status (running, failed or stopped), 0 for the others."},
        {"factum_projection_position", "gauge", "Every event before this log position is applied."},
        {"factum_projection_lag_events", "gauge", "Log positions from the projection's position to the head."},
        {"factum_projection_lag_seconds", "gauge", "Age of the first event not yet applied (0 when caught up)."},
        {"factum_projection_applied_total", "counter", "Events applied (since the projection's runner started)."},
        {"factum_projection_failures_total", "counter",
         "Times the projection stopped as failed (since its runner started)."},
    };
    pthread_mutex_lock(&ps->mu);
    size_t n = 0;
    for (entry *e = ps->list; e; e = e->next)
        n++;
    projector_stats *st = n ? calloc(n, sizeof *st) : NULL;
    const char **names = n ? calloc(n, sizeof *names) : NULL;
    if (n && (!st || !names)) abort(); /* the server may stop on out-of-memory (STYLE.md) */
    size_t i = 0;
    for (entry *e = ps->list; e; e = e->next, i++)
        projector_get_stats(e->p, &st[i]), names[i] = e->name;
    for (size_t f = 0; f < ARRAY_LEN(fam); f++) {
        api_metric_head(b, fam[f].name, fam[f].type, fam[f].help);
        for (i = 0; i < n; i++) {
            if (f == 0) {
                for (int k = 0; k < 3; k++)
                    buf_printf(b, "%s{projection=\"%s\",status=\"%s\"} %d\n", fam[f].name, names[i],
                               projector_status_names[k], (int)st[i].status == k);
                continue;
            }
            double v[] = {0,
                          (double)st[i].position,
                          (double)st[i].lag_events,
                          st[i].lag_seconds,
                          (double)st[i].applied,
                          (double)st[i].failures};
            buf_printf(b, "%s{projection=\"%s\"} %.17g\n", fam[f].name, names[i], v[f]);
        }
    }
    pthread_mutex_unlock(&ps->mu); /* names point into the list */
    free(st);
    free(names);
}
