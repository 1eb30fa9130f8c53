/*
 * jobs.c — work that finishes off the loop and is answered on it: appends and metadata changes
 * submitted to the engine's writer (its callback queues the connection on its loop's done list
 * and wakes the loop), and blocking work (a database, a long wait) run by SERVER_WORKERS worker
 * threads, the same way back. A named job (/projections/{name}, /sagas/{name}) is one with a
 * standard answer. The loop runs each connection's done function (c->ar_done) once woken.
 */
#include "server.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

/* ---- wake-ups from the writer thread ---- */

/* Puts c on its loop's done list (from the writer or a worker) and wakes the loop. */
static void queue_done(conn *c) {
    loop *l = c->l;
    pthread_mutex_lock(&l->mu);
    bool first = l->done == NULL;
    c->done_next = l->done;
    l->done = c;
    pthread_mutex_unlock(&l->mu);
    if (first) loop_wake(l);
}

static void append_cb(void *ctx, int rc, const factum_append_result_t *res, const char *msg) {
    conn *c = ctx;
    c->ar_rc = rc, c->ar_res = *res;
    snprintf(c->ar_msg, sizeof c->ar_msg, "%s", msg);
    queue_done(c);
}

/* The connection waits for the writer if rc (what submitting returned) is 0. */
static int submitted(conn *c, append_done_fn done, int rc) {
    c->ar_done = done;
    c->state = rc ? C_BODY : C_APPEND;
    if (!rc) c->l->pending++;
    return rc;
}

int server_submit_append(conn *c, factum_str_t stream, int64_t expected, const factum_event_t *ev, size_t n,
                         append_done_fn done, factum_error_t *err) {
    return submitted(c, done, factum_append_async(c->l->srv->db, stream, expected, ev, n, append_cb, c, err));
}

static void streams_cb(void *ctx, int rc, const factum_append_result_t *res, size_t n, const char *msg) {
    conn *c = ctx;
    c->ar_rc = rc, c->ar_res = res[0];
    memcpy(c->ar_results, res, n * sizeof *res);
    snprintf(c->ar_msg, sizeof c->ar_msg, "%s", msg);
    queue_done(c);
}

int server_submit_append_streams(conn *c, const factum_stream_append_t *parts, size_t n, const factum_condition_t *cond,
                                 factum_append_result_t *results, append_done_fn done, factum_error_t *err) {
    c->ar_results = results;
    return submitted(c, done, factum_append_streams_async(c->l->srv->db, parts, n, cond, streams_cb, c, err));
}

/* ---- jobs: blocking work on worker threads ---- */

struct jobs {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    conn *head, *tail;
    bool stop;
    int n;
    pthread_t threads[SERVER_WORKERS];
};

static void *worker_main(void *arg) {
    struct jobs *j = arg;
    pthread_mutex_lock(&j->mu);
    for (;;) {
        while (!j->head && !j->stop)
            pthread_cond_wait(&j->cond, &j->mu);
        if (!j->head) break; /* stopping, and nothing left */
        conn *c = j->head;
        j->head = c->job_next;
        if (!j->head) j->tail = NULL;
        pthread_mutex_unlock(&j->mu);
        c->job_work(c);
        queue_done(c);
        pthread_mutex_lock(&j->mu);
    }
    pthread_mutex_unlock(&j->mu);
    return NULL;
}

void server_submit_job(conn *c, job_fn work, append_done_fn done, void (*free_job)(void *job)) {
    struct jobs *j = c->l->srv->jobs;
    submitted(c, done, 0);
    c->job_work = work;
    c->job_free = free_job;
    c->job_next = NULL;
    pthread_mutex_lock(&j->mu);
    if (j->tail)
        j->tail->job_next = c;
    else
        j->head = c;
    j->tail = c;
    pthread_cond_signal(&j->cond);
    pthread_mutex_unlock(&j->mu);
}

int jobs_open(struct jobs **out, factum_error_t *err) {
    struct jobs *j = calloc(1, sizeof *j);
    if (!j) return err_set(err, FACTUM_ENOMEM, "out of memory");
    pthread_mutex_init(&j->mu, NULL);
    pthread_cond_init(&j->cond, NULL);
    for (; j->n < SERVER_WORKERS; j->n++)
        if (pthread_create(&j->threads[j->n], NULL, worker_main, j)) break;
    *out = j;
    return j->n ? 0 : err_set(err, FACTUM_ENOMEM, "cannot start worker threads");
}

/* Finishes what is queued, then stops the workers. */
void jobs_close(struct jobs *j) {
    if (!j) return;
    pthread_mutex_lock(&j->mu);
    j->stop = true;
    pthread_cond_broadcast(&j->cond);
    pthread_mutex_unlock(&j->mu);
    for (int i = 0; i < j->n; i++)
        pthread_join(j->threads[i], NULL);
    pthread_mutex_destroy(&j->mu);
    pthread_cond_destroy(&j->cond);
    free(j);
}

static void named_free(void *p) {
    named_job *j = p;
    buf_free(&j->body);
    buf_free(&j->out);
    free(j);
}

static void named_done(conn *c) {
    named_job *j = c->job;
    c->job = NULL;
    if (j->limited)
        limits_problem(c, &j->limit);
    else if (j->rc == FACTUM_ECONFLICT && j->conflict_slug)
        conn_problem(c, 409, j->conflict_slug, NULL, "%s", j->err.message);
    else if (j->rc)
        server_problem(c, j->rc, j->err.message);
    else {
        char loc[200];
        snprintf(loc, sizeof loc, "Location: %s%s\r\n", j->location, j->name);
        conn_respond(c, j->status, "application/json", j->status == 201 ? loc : NULL, j->out.ptr, j->out.len);
    }
    named_free(j);
}

void server_submit_named(conn *c, const char *name, factum_str_t body, bool flag, const char *location,
                         const char *conflict_slug, job_fn work) {
    named_job *j = calloc(1, sizeof *j);
    if (!j || buf_append(&j->body, body.ptr, body.len)) {
        free(j);
        conn_problem(c, 503, "unavailable", NULL, "out of memory");
        return;
    }
    snprintf(j->name, sizeof j->name, "%s", name);
    j->flag = flag, j->location = location, j->conflict_slug = conflict_slug;
    c->job = j;
    server_submit_job(c, work, named_done, named_free);
}

int server_submit_meta(conn *c, factum_str_t stream, const factum_meta_t *m, int64_t expected, int tombstone,
                       append_done_fn done, factum_error_t *err) {
    factum_t *db = c->l->srv->db;
    return submitted(c, done,
                     m ? factum_meta_set_async(db, stream, m, append_cb, c, err)
                       : factum_delete_stream_async(db, stream, expected, tombstone, append_cb, c, err));
}

/* Whether this loop has connections that commits concern: subscriptions and waiting pulls. */
