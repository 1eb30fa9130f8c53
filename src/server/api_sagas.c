/*
 * api_sagas.c — the registry of sagas and the /sagas API (docs/sagas.md):
 *
 *   PUT    /sagas/{name}                    define or redefine (201 / 200)
 *   GET    /sagas, GET /sagas/{name}        counts by status (and the definition)
 *   DELETE /sagas/{name}                    stop it (instances keep their streams)
 *   GET    /sagas/{name}/instances[?status=S]
 *   GET    /sagas/{name}/instances/{id}     status, step, context and history
 *   GET    /sagas/{name}/parked             inputs set aside, with the reason
 *
 * Definitions are SagaDefined / SagaDeleted records in $sagas (defs.c); a SagaDefined record
 * names its owner, the key that first defined the name, and the registry counts each key's for
 * its max_sagas (limits.c). A definition change
 * stops the old runner before the new one starts; it runs as a job (waiting for a batch in
 * progress, an append), everything else on the loop with the registry's mutex held. A new name
 * is checked against --max-sagas (limits.c) under define_mu, so the count is exact. Runners are
 * tasks on the server's definitions' pool (sys/pool.h).
 */
#include "api.h"

#include "../base/log.h"
#include "../saga/saga.h"
#include "../sys/defs.h"
#include "../sys/pool.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#define SAGAS_STREAM "$sagas"

typedef struct entry {
    char name[SAGA_MAX_NAME + 1];
    char owner[OWNER_MAX];
    saga *s;
    uint64_t def_hash; /* of its definition as recorded (defs_hash) */
    struct entry *next;
} entry;

struct sagas {
    factum_t *db;
    pool *pool;
    pthread_mutex_t mu;        /* the list, and the sagas while they are used */
    pthread_mutex_t define_mu; /* one definition change at a time */
    entry *list;
    size_t n;             /* in the list */
    owners owned;         /* under mu: the list's entries by owner */
    defs_follower follow; /* $sagas as far as this registry applied it (under define_mu) */
};

static entry **find(sagas_t *ss, const char *name) {
    entry **e = &ss->list;
    while (*e && strcmp((*e)->name, name))
        e = &(*e)->next;
    return e;
}

/* Takes name's saga out of the list (to stop it); NULL if none. */
static saga *take(sagas_t *ss, const char *name) {
    pthread_mutex_lock(&ss->mu);
    entry **e = find(ss, name), *gone = *e;
    saga *s = gone ? gone->s : NULL;
    if (gone) *e = gone->next, owners_add(&ss->owned, gone->owner, -1), free(gone), ss->n--;
    pthread_mutex_unlock(&ss->mu);
    return s;
}

/* Starts a runner on d (taking it; hash: its recorded definition's) as name's, owned by owner. */
static int run(sagas_t *ss, const char *name, saga_def *d, const char *owner, uint64_t hash, factum_error_t *err) {
    saga *s;
    int rc = saga_start(ss->db, ss->pool, d, &s, err);
    if (rc) return rc;
    entry *n = calloc(1, sizeof *n);
    if (!n) abort(); /* the server may stop on out-of-memory (STYLE.md) */
    snprintf(n->name, sizeof n->name, "%s", name);
    snprintf(n->owner, sizeof n->owner, "%s", owner);
    n->s = s, n->def_hash = hash;
    pthread_mutex_lock(&ss->mu);
    n->next = ss->list, ss->list = n, ss->n++;
    owners_add(&ss->owned, owner, 1);
    pthread_mutex_unlock(&ss->mu);
    return 0;
}

static int start(sagas_t *ss, const char *name, factum_str_t def, const char *owner, factum_error_t *err) {
    saga_def *d;
    int rc = saga_def_parse(name, def, &d, err);
    return rc ? rc : run(ss, name, d, owner, defs_hash(def), err);
}

static void replay_def(void *ctx, const char *name, factum_str_t def, const char *owner) {
    factum_error_t e2;
    if (start(ctx, name, def, owner, &e2)) log_msg(LOG_LEVEL_ERROR, "saga %s not started: %s", name, e2.message);
}

/* ---- a cluster follower: what the leader defined and deleted ---- */

static void follow_defined(void *ctx, const char *name, factum_str_t def, const char *owner) {
    sagas_t *ss = ctx;
    pthread_mutex_lock(&ss->mu);
    entry *e = *find(ss, name);
    bool same = e && e->def_hash == defs_hash(def);
    pthread_mutex_unlock(&ss->mu);
    if (same) return; /* this registry's own record */
    saga_stop(take(ss, name));
    replay_def(ss, name, def, owner);
}

static void follow_deleted(void *ctx, const char *name, factum_str_t rec) {
    (void)rec;
    saga_stop(take(ctx, name)); /* NULL (this registry's own record): nothing */
}

int sagas_follow(sagas_t *ss, factum_error_t *err) {
    pthread_mutex_lock(&ss->define_mu);
    int rc = defs_follow(ss->db, &ss->follow, ss, err);
    pthread_mutex_unlock(&ss->define_mu);
    return rc;
}

int sagas_open(factum_t *db, pool *pl, sagas_t **out, factum_error_t *err) {
    sagas_t *ss = calloc(1, sizeof *ss);
    if (!ss) return err_set(err, FACTUM_ENOMEM, "out of memory");
    ss->db = db, ss->pool = pl;
    pthread_mutex_init(&ss->mu, NULL);
    pthread_mutex_init(&ss->define_mu, NULL);
    ss->follow = (defs_follower){SAGAS_STREAM, "SagaDefined", "SagaDeleted", follow_defined, follow_deleted, 0};
    int rc = defs_replay(db, SAGAS_STREAM, "SagaDefined", "SagaDeleted", replay_def, ss, &ss->follow.next, err);
    if (rc) {
        sagas_close(ss);
        return rc;
    }
    *out = ss;
    return 0;
}

size_t sagas_count(sagas_t *ss) {
    pthread_mutex_lock(&ss->mu);
    size_t n = ss->n;
    pthread_mutex_unlock(&ss->mu);
    return n;
}

uint64_t sagas_count_owned(sagas_t *ss, const char *key) {
    pthread_mutex_lock(&ss->mu);
    uint64_t n = owners_count(&ss->owned, key);
    pthread_mutex_unlock(&ss->mu);
    return n;
}

void sagas_close(sagas_t *ss) {
    if (!ss) return;
    while (ss->list)
        saga_stop(take(ss, ss->list->name));
    pthread_mutex_destroy(&ss->mu);
    pthread_mutex_destroy(&ss->define_mu);
    owners_free(&ss->owned);
    free(ss);
}

/* ---- jobs: definitions ---- */

static void define_work(conn *c) {
    sagas_t *ss = c->l->srv->sagas;
    named_job *j = c->job;
    factum_str_t body = {j->body.ptr, j->body.len};
    saga_def *d = NULL;
    char owner[OWNER_MAX]; /* the first definition's, kept by a redefinition */
    pthread_mutex_lock(&ss->define_mu);
    pthread_mutex_lock(&ss->mu);
    entry *was = *find(ss, j->name);
    bool exists = was != NULL;
    snprintf(owner, sizeof owner, "%s", was ? was->owner : c->req_key);
    pthread_mutex_unlock(&ss->mu);
    if (!exists && !limits_admit(c, LIMIT_SAGAS, sagas_count(ss), &j->limit)) { /* a new one past a limit */
        j->limited = true;
        j->rc = err_set(&j->err, FACTUM_EINVAL, "too many sagas");
    } else if (!(j->rc = saga_def_parse(j->name, body, &d, &j->err)) && !(j->rc = saga_def_check(d, &j->err))) {
        j->rc = defs_record(ss->db, SAGAS_STREAM, "SagaDefined", j->name, body, owner, &j->err);
    }
    if (!j->rc) {
        saga *old = take(ss, j->name);
        j->status = old ? 200 : 201;
        saga_stop(old);
        j->rc = run(ss, j->name, d, owner, defs_hash(body), &j->err); /* d is the runner's now */
    } else {
        saga_def_free(d);
    }
    pthread_mutex_unlock(&ss->define_mu);
    if (!j->rc) {
        pthread_mutex_lock(&ss->mu);
        entry *e = *find(ss, j->name);
        if (e) saga_status(e->s, true, &j->out);
        pthread_mutex_unlock(&ss->mu);
    }
}

static void delete_work(conn *c) {
    sagas_t *ss = c->l->srv->sagas;
    named_job *j = c->job;
    pthread_mutex_lock(&ss->define_mu);
    pthread_mutex_lock(&ss->mu);
    bool there = *find(ss, j->name) != NULL;
    pthread_mutex_unlock(&ss->mu);
    if (!there)
        j->rc = err_set(&j->err, FACTUM_ENOTFOUND, "no saga %s", j->name);
    else if (!(j->rc = defs_record(ss->db, SAGAS_STREAM, "SagaDeleted", j->name, (factum_str_t){0}, NULL, &j->err)))
        saga_stop(take(ss, j->name));
    pthread_mutex_unlock(&ss->define_mu);
    if (!j->rc) j->status = 200, buf_printf(&j->out, "{\"name\":\"%s\",\"deleted\":true}", j->name);
}

static void submit(conn *c, const char *name, factum_str_t body, job_fn work) {
    server_submit_named(c, name, body, false, "/sagas/", NULL, work);
}

/* ---- routing ---- */

void api_list_sagas(conn *c, const route_args *a, factum_str_t body) {
    (void)a, (void)body;
    sagas_t *ss = c->l->srv->sagas;
    buf_t b = {0};
    buf_append(&b, "[", 1);
    pthread_mutex_lock(&ss->mu);
    for (entry *e = ss->list; e; e = e->next) {
        if (b.len > 1) buf_append(&b, ",", 1);
        saga_status(e->s, false, &b);
    }
    pthread_mutex_unlock(&ss->mu);
    buf_append(&b, "]", 1);
    conn_respond(c, 200, "application/json", NULL, b.ptr, b.len);
    buf_free(&b);
}

/* The {name} param into name; false (answered 400) if it is not a saga name. */
static bool name_arg(conn *c, const route_args *a, char name[SAGA_MAX_NAME + 1]) {
    return api_path_name(c, a->p[0], SAGA_MAX_NAME, saga_name_valid,
                         "a saga name is 1 to " STRINGIFY(SAGA_MAX_NAME) " letters, digits, '_' or '-'", name);
}

void api_define_saga(conn *c, const route_args *a, factum_str_t body) {
    char name[SAGA_MAX_NAME + 1];
    if (name_arg(c, a, name)) submit(c, name, body, define_work);
}

void api_delete_saga(conn *c, const route_args *a, factum_str_t body) {
    (void)body;
    char name[SAGA_MAX_NAME + 1];
    if (name_arg(c, a, name)) submit(c, name, (factum_str_t){0}, delete_work);
}

enum { SHOW_SAGA, SHOW_INSTANCES, SHOW_INSTANCE, SHOW_PARKED };

/* The GET routes of one saga (what), with the registry's mutex held while they read it. */
static void show(conn *c, const route_args *a, int what) {
    sagas_t *ss = c->l->srv->sagas;
    char name[SAGA_MAX_NAME + 1];
    if (!name_arg(c, a, name)) return;
    buf_t b = {0};
    factum_error_t err;
    int rc = 0;
    pthread_mutex_lock(&ss->mu);
    entry *e = *find(ss, name);
    if (!e) {
        rc = err_set(&err, FACTUM_ENOTFOUND, "no saga %s", name);
    } else if (what == SHOW_SAGA) {
        saga_status(e->s, true, &b);
    } else if (what == SHOW_INSTANCES) {
        factum_str_t q = c->req->h.query;
        buf_t status = {0};
        if (q.len > 7 && !memcmp(q.ptr, "status=", 7))
            buf_append(&status, q.ptr + 7, q.len - 7), buf_append(&status, "", 1);
        if (q.len && !status.len)
            rc = err_set(&err, FACTUM_EINVAL, "the only query parameter is status=");
        else
            rc = saga_instances(e->s, status.len ? status.ptr : NULL, &b, &err);
        buf_free(&status);
    } else if (what == SHOW_INSTANCE) {
        buf_t id = {0};
        if (http_unescape(a->p[1], false, &id) || buf_append(&id, "", 1) || strlen(id.ptr) != id.len - 1)
            rc = err_set(&err, FACTUM_EINVAL, "a bad instance id in the path");
        else
            rc = saga_instance(e->s, id.ptr, &b, &err);
        buf_free(&id);
    } else {
        rc = saga_parked(e->s, &b, &err);
    }
    pthread_mutex_unlock(&ss->mu);
    if (rc)
        server_problem(c, rc, err.message);
    else
        conn_respond(c, 200, "application/json", NULL, b.ptr, b.len);
    buf_free(&b);
}

void api_show_saga(conn *c, const route_args *a, factum_str_t body) {
    (void)body;
    show(c, a, SHOW_SAGA);
}

void api_saga_instances(conn *c, const route_args *a, factum_str_t body) {
    (void)body;
    show(c, a, SHOW_INSTANCES);
}

void api_saga_instance(conn *c, const route_args *a, factum_str_t body) {
    (void)body;
    show(c, a, SHOW_INSTANCE);
}

void api_saga_parked(conn *c, const route_args *a, factum_str_t body) {
    (void)body;
    show(c, a, SHOW_PARKED);
}

void sagas_metrics(sagas_t *ss, buf_t *b) {
    static const char *const heads[] = {
        "# HELP factum_saga_instances Saga instances running or compensating.\n# TYPE factum_saga_instances gauge\n",
        "# HELP factum_saga_ended_total Saga instances that ended, by how (since the server started).\n# TYPE "
        "factum_saga_ended_total counter\n",
        "# HELP factum_saga_parked_total Saga inputs parked (since the server started).\n# TYPE "
        "factum_saga_parked_total counter\n",
        "# HELP factum_saga_duration_seconds From a saga's start event to its end.\n# TYPE "
        "factum_saga_duration_seconds histogram\n",
    };
    pthread_mutex_lock(&ss->mu);
    for (int f = 0; f < 4 && ss->list; f++) {
        buf_append(b, heads[f], strlen(heads[f]));
        for (entry *e = ss->list; e; e = e->next)
            saga_metrics(e->s, f, b);
    }
    pthread_mutex_unlock(&ss->mu);
}
