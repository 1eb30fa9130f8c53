/*
 * pool.c — see pool.h. Owns the workers, the watcher and the tasks' scheduling state: every
 * task is on the list of all tasks, and in one of three states under the pool's mutex — idle
 * (waiting for a commit past `past`, for `at_us`, or for a poke), queued (on the FIFO run queue)
 * or running (a worker is in its slice). A task is never queued twice and never run by two
 * workers, which is what gives a projection its order and a saga its single runner.
 *
 * A wake-up is never lost: a worker decides whether its task runs again by reading the head
 * under the mutex after the slice, and the watcher walks the idle tasks under the same mutex
 * with the head factum_wait returned — whichever comes second sees the other's head.
 */
#include "pool.h"

#include "../base/log.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define WATCH_MS 50 /* the watcher's longest sleep: a deadline set meanwhile is met this late at most */

enum { T_IDLE, T_QUEUED, T_RUNNING };

struct pool_task {
    pool *p;
    char *what;
    pool_slice_fn fn;
    void *ctx;
    /* under the pool's mutex */
    int state;
    bool poked, removing;
    uint64_t past;
    int64_t at_us;
    pool_task *prev, *next; /* all tasks */
    pool_task *qnext;       /* the run queue */
};

struct pool {
    factum_t *db;
    pthread_mutex_t mu;
    pthread_cond_t work; /* a task was queued, or stop */
    pthread_cond_t idle; /* a slice ended (monotonic clock) */
    pthread_t workers[POOL_MAX_WORKERS], watcher;
    int nworkers;
    bool watching;
    /* under mu */
    bool stop, quiet;
    pool_task *all;
    size_t ntasks, nqueued, nrunning;
    pool_task *qhead, *qtail;
};

/* ---- the run queue (mu held) ---- */

static void enqueue(pool *p, pool_task *t) {
    t->state = T_QUEUED, t->qnext = NULL;
    if (p->qtail)
        p->qtail->qnext = t;
    else
        p->qhead = t;
    p->qtail = t;
    p->nqueued++;
    pthread_cond_signal(&p->work);
}

static pool_task *dequeue(pool *p) {
    pool_task *t = p->qhead;
    p->qhead = t->qnext;
    if (!p->qhead) p->qtail = NULL;
    p->nqueued--;
    return t;
}

static void unqueue(pool *p, pool_task *t) {
    pool_task *prev = NULL;
    for (pool_task *q = p->qhead; q; prev = q, q = q->qnext)
        if (q == t) {
            if (prev)
                prev->qnext = t->qnext;
            else
                p->qhead = t->qnext;
            if (p->qtail == t) p->qtail = prev;
            p->nqueued--;
            return;
        }
}

/* Whether idle task t is due with this head and time. */
static bool due(const pool_task *t, uint64_t head, int64_t now) {
    return (t->past != POOL_NO_POSITION && head > t->past) || (t->at_us && t->at_us <= now);
}

/* ---- the threads ---- */

static void *worker(void *arg) {
    pool *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->stop && (p->quiet || !p->qhead))
            pthread_cond_wait(&p->work, &p->mu);
        if (p->stop) break;
        pool_task *t = dequeue(p);
        t->state = T_RUNNING, t->poked = false;
        p->nrunning++;
        pthread_mutex_unlock(&p->mu);
        pool_next nx = t->fn(t->ctx);
        pthread_mutex_lock(&p->mu);
        p->nrunning--;
        t->state = T_IDLE, t->past = nx.past, t->at_us = nx.at_us;
        if (!t->removing && (nx.again || t->poked || due(t, factum_head_position(p->db), clock_mono_us())))
            enqueue(p, t);
        pthread_cond_broadcast(&p->idle); /* pool_remove and pool_quiesce wait for this */
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

static void *watcher(void *arg) {
    pool *p = arg;
    uint64_t seen = factum_head_position(p->db);
    pthread_mutex_lock(&p->mu);
    while (!p->stop) {
        int64_t now = clock_mono_us(), next = now + WATCH_MS * 1000;
        for (pool_task *t = p->all; t; t = t->next)
            if (t->state == T_IDLE && t->at_us && t->at_us < next) next = t->at_us;
        pthread_mutex_unlock(&p->mu);
        uint64_t head = factum_wait(p->db, seen, (int)MAX(0, (next - now + 999) / 1000));
        now = clock_mono_us();
        pthread_mutex_lock(&p->mu);
        for (pool_task *t = p->all; t; t = t->next)
            if (t->state == T_IDLE && due(t, head, now)) enqueue(p, t);
        seen = head;
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

int pool_open(factum_t *db, int workers, pool **out, factum_error_t *err) {
    if (workers < 1 || workers > POOL_MAX_WORKERS)
        return err_set(err, FACTUM_EINVAL, "the pool takes 1 to %d workers", POOL_MAX_WORKERS);
    pool *p = calloc(1, sizeof *p);
    if (!p) return err_set(err, FACTUM_ENOMEM, "out of memory");
    p->db = db;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->work, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->idle, &ca);
    pthread_condattr_destroy(&ca);
    for (; p->nworkers < workers; p->nworkers++)
        if (pthread_create(&p->workers[p->nworkers], NULL, worker, p)) break;
    p->watching = p->nworkers == workers && pthread_create(&p->watcher, NULL, watcher, p) == 0;
    if (!p->watching) {
        pool_close(p);
        return err_set(err, FACTUM_ENOMEM, "cannot start the definitions' pool (%d threads)", workers + 1);
    }
    *out = p;
    return 0;
}

void pool_close(pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->stop = true;
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->nworkers; i++)
        pthread_join(p->workers[i], NULL);
    if (p->watching) pthread_join(p->watcher, NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->work);
    pthread_cond_destroy(&p->idle);
    free(p);
}

/* ---- tasks ---- */

pool_task *pool_add(pool *p, const char *what, pool_slice_fn fn, void *ctx) {
    pool_task *t = calloc(1, sizeof *t);
    if (!t || !(t->what = strdup(what))) {
        free(t);
        return NULL;
    }
    t->p = p, t->fn = fn, t->ctx = ctx, t->past = POOL_NO_POSITION;
    pthread_mutex_lock(&p->mu);
    t->next = p->all;
    if (p->all) p->all->prev = t;
    p->all = t;
    p->ntasks++;
    enqueue(p, t);
    pthread_mutex_unlock(&p->mu);
    return t;
}

void pool_poke(pool_task *t) {
    pool *p = t->p;
    pthread_mutex_lock(&p->mu);
    if (t->state == T_RUNNING)
        t->poked = true;
    else if (t->state == T_IDLE && !t->removing)
        enqueue(p, t);
    pthread_mutex_unlock(&p->mu);
}

void pool_remove(pool_task *t) {
    if (!t) return;
    pool *p = t->p;
    pthread_mutex_lock(&p->mu);
    t->removing = true;
    while (t->state == T_RUNNING)
        pthread_cond_wait(&p->idle, &p->mu);
    if (t->state == T_QUEUED) unqueue(p, t);
    if (t->prev)
        t->prev->next = t->next;
    else
        p->all = t->next;
    if (t->next) t->next->prev = t->prev;
    p->ntasks--;
    pthread_mutex_unlock(&p->mu);
    free(t->what);
    free(t);
}

/* The names of the running tasks into b (mu held). */
static void running_names(pool *p, buf_t *b) {
    for (pool_task *t = p->all; t; t = t->next)
        if (t->state == T_RUNNING) {
            if (b->len) buf_append(b, ", ", 2);
            buf_append(b, t->what, strlen(t->what));
        }
}

size_t pool_quiesce(pool *p, buf_t *waited) {
    pthread_mutex_lock(&p->mu);
    p->quiet = true;
    size_t n = p->nrunning;
    running_names(p, waited);
    while (p->nrunning) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += 1;
        if (pthread_cond_timedwait(&p->idle, &p->mu, &ts) == ETIMEDOUT && p->nrunning) {
            buf_t still = {0};
            running_names(p, &still);
            log_msg(LOG_LEVEL_INFO, "stopping: still waiting for the batch in progress of %s", still.ptr);
            buf_free(&still);
        }
    }
    pthread_mutex_unlock(&p->mu);
    return n;
}

void pool_get_stats(pool *p, pool_stats *st) {
    pthread_mutex_lock(&p->mu);
    st->workers = p->nworkers;
    st->tasks = p->ntasks, st->queued = p->nqueued, st->running = p->nrunning;
    pthread_mutex_unlock(&p->mu);
}
