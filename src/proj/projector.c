/*
 * projector.c — see projector.h. Owns a projection's runner: its slices on the definitions' pool
 * (sys/pool.h) applying events to the read model, its status and stats, and its pool of read
 * connections for queries. The definition, its checks and its setup statements are def.c.
 *
 * A slice applies one batch (at most BATCH events) and yields; caught up, the task waits for the
 * head to pass its position. Its write connection is opened by the first slice that needs it and
 * closed after IDLE_CLOSE_MS without a batch (with the idle read connections), so idle
 * projections hold no descriptors; reopening runs the setup again, as any reconnection does.
 */
#include "def.h"

#include "../base/json.h"
#include "../sys/pool.h"

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

#define BATCH 2000            /* events read per transaction at most */
#define QUERY_TIMEOUT_MS 5000 /* default */
#define QUERY_MAX_TIMEOUT_MS 60000
#define QUERY_MAX_ROWS 10000
#define IDLE_POOL 4        /* read connections kept per projection */
#define RATE_SLOTS 11      /* one sample a second: the rate over the last 10 s */
#define IDLE_CLOSE_MS 2000 /* an idle projection closes its connections after this */

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

struct projector {
    factum_t *db;
    proj_def *d;
    pool_task *task; /* its slices on the definitions' pool */
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
    bool warm; /* the write connection is open: read connections may be kept */
    /* the slices' own (one at a time, ordered by the pool) */
    target *t;           /* the write connection, or NULL */
    batch b;             /* reused from batch to batch */
    uint64_t backoff_ms; /* before trying the target again */
    bool reset;          /* a reset asked for and not done yet */
    int64_t active_us;   /* the last batch applied (CLOCK_MONOTONIC) */
};

/* ---- the projector's slices ---- */

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

/* Connects, (resets,) runs the setup and reads the checkpoint, in one transaction. */
static int open_target(projector *p, bool reset, target **out, factum_error_t *err) {
    const proj_def *d = p->d;
    if (proj_def_make_parent(d, err)) return FACTUM_EUNREACHABLE;
    if (proj_def_confined(d, err)) return FACTUM_EINVAL; /* a link put there since: the projection fails */
    target *t;
    int rc = d->ops->connect(d->where, true, &t, err);
    if (rc) return rc;
    bool found = false;
    uint64_t pos = 0;
    int64_t rev = d->src == SRC_STREAM ? 0 : -1;
    size_t failed;
    if (!(rc = d->ops->begin(t, err)) && !(rc = proj_def_ready(d, t, reset, err)) &&
        !(rc = d->ops->checkpoint(t, d->name, &found, &pos, &rev, err))) {
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

/* Closes the write connection and the idle read connections: an idle projection holds no
   descriptor (the slice's own; read connections under mu). */
static void close_target(projector *p) {
    target *idle[IDLE_POOL];
    pthread_mutex_lock(&p->mu);
    size_t n = p->nidle;
    memcpy(idle, p->idle, n * sizeof *idle);
    p->nidle = 0, p->warm = false;
    pthread_mutex_unlock(&p->mu);
    for (size_t i = 0; i < n; i++)
        p->d->ops->close(idle[i]);
    if (p->t) p->d->ops->close(p->t);
    p->t = NULL;
}

/* Waits for `ms` (or a request), after an error. */
static pool_next back_off(projector *p) {
    pool_next nx = {.past = POOL_NO_POSITION, .at_us = clock_mono_us() + (int64_t)p->backoff_ms * 1000};
    p->backoff_ms = MIN(p->backoff_ms * 2, 5000);
    return nx;
}

/*
 * One slice on the pool (sys/pool.h): opens the target if needed and applies one batch. Waits
 * for the head to pass what it covered when caught up, and closes its connections once idle for
 * IDLE_CLOSE_MS; waits for a request (reset, stop) when failed.
 */
static pool_next slice(void *arg) {
    projector *p = arg;
    pool_next idle = {.past = POOL_NO_POSITION};
    /* A PostgreSQL database is shared by the cluster's nodes: only the node that writes feeds it
       (docs/cluster.md, "Engines above the log"); a new one goes on from the checkpoint stored
       there. SQLite files are each node's own: every node keeps its own. */
    if (p->d->ops == &target_postgres && !factum_leads(p->db, NULL)) {
        if (p->t) close_target(p);
        return (pool_next){.past = POOL_NO_POSITION, .at_us = clock_mono_us() + 200000};
    }
    pthread_mutex_lock(&p->mu);
    if (p->reset_asked) p->reset = true, p->reset_asked = false, p->failed = false;
    bool failed = p->failed;
    pthread_mutex_unlock(&p->mu);
    if (failed) {
        close_target(p);
        return idle;
    }
    factum_error_t err;
    if (p->reset && p->t) close_target(p);
    if (!p->t) {
        int rc = p->b.ev ? open_target(p, p->reset, &p->t, &err) : err_set(&err, FACTUM_ENOMEM, "out of memory");
        if (rc == FACTUM_EINVAL) { /* the definition does not fit the database (a table went away) */
            set_error_msg(p, err.message);
            mark_failed(p);
            return idle;
        }
        if (rc) {
            set_error_msg(p, err.message);
            return back_off(p);
        }
        p->reset = false, p->backoff_ms = 100;
        pthread_mutex_lock(&p->mu);
        p->warm = true;
        pthread_mutex_unlock(&p->mu);
        p->active_us = clock_mono_us();
        set_error(p, NULL);
    }
    int rc = step(p, p->t, &p->b, &err);
    sample_rate(p);
    int64_t now = clock_mono_us();
    if (rc == 0) {
        p->active_us = now;
        return (pool_next){.again = true};
    }
    if (rc != 1) {
        set_error_msg(p, err.message);
        close_target(p);
        return back_off(p);
    }
    if (now - p->active_us >= IDLE_CLOSE_MS * 1000) {
        close_target(p);
        return (pool_next){.past = p->covered};
    }
    return (pool_next){.past = p->covered, .at_us = p->active_us + IDLE_CLOSE_MS * 1000};
}

int projector_start(factum_t *db, pool *pl, proj_def *d, projector **out, factum_error_t *err) {
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
    p->backoff_ms = 100;
    p->b.ev = malloc(BATCH * sizeof *p->b.ev); /* NULL: the first slice says out of memory */
    char what[PROJ_MAX_NAME + 16];
    snprintf(what, sizeof what, "projection %s", d->name);
    if (!(p->task = pool_add(pl, what, slice, p))) {
        p->stopped = true;
        projector_unref(p);
        return err_set(err, FACTUM_ENOMEM, "out of memory");
    }
    *out = p;
    return 0;
}

void projector_stop(projector *p) {
    pthread_mutex_lock(&p->mu);
    p->stop = true;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->mu);
    pool_remove(p->task); /* waits for a batch in progress */
    p->task = NULL;
    close_target(p);
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
    free(p->b.ev);
    free(p->b.runs);
    buf_free(&p->b.scratch);
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
    if (!p->stop) pool_poke(p->task); /* stop is set before the task goes: it is there */
    pthread_mutex_unlock(&p->mu);
}

void projector_get_stats(projector *p, projector_stats *st) {
    sample_rate(p); /* an idle projection takes no slices: its rate falls to 0 here */
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
        buf_append(out, p->d->shown.ptr, p->d->shown.len); /* never a password */
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
        bool keep = rc != FACTUM_EUNREACHABLE && p->nidle < IDLE_POOL && p->warm; /* idle: none kept */
        if (keep) p->idle[p->nidle++] = t;
        pthread_mutex_unlock(&p->mu);
        if (!keep) d->ops->close(t);
    }
    buf_free(&scratch);
    sql_stmt_free(&s);
    return rc;
}
