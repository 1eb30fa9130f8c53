/*
 * timers.c — durable timers (see timers.h). One mutex guards the tables; the scheduler thread
 * takes what is due under it, then fires without it: the target appends go to the writer
 * asynchronously (so thousands of due timers share commit groups), and one batch of Fired
 * records follows once they are all durable. Every record — written here, or met at start-up —
 * changes the tables through one function, apply_record.
 *
 * Compaction (docs/timers.md, "Reclaiming"), on the scheduler thread so nothing fires meanwhile:
 * cut just past the newest durable record of $schedules; apply every record before the cut (a
 * Scheduled record whose registration is still on its way from an event loop, a Cancelled one
 * whose answer is); copy the Scheduled record of every timer still pending from before the cut
 * to the end of the stream and point the timer at its copy; then, the copies durable, move
 * truncate_before to the cut and forget the timers that ended before it. A Fired or Cancelled
 * record that lands before a copy of its timer (a cancel during the copying) still wins at
 * start-up: such a record makes its timer ended whatever Scheduled record comes later.
 *
 * Two clocks (docs/timers.md, "Clocks"): a timer asked for "at" a time is due when the wall
 * clock reads that time; one asked for "after delay_ms" is due when that much time has passed
 * on CLOCK_MONOTONIC, whatever the wall clock does meanwhile. Each kind has its own heap. The
 * scheduler waits on CLOCK_MONOTONIC and wakes at least once a second, so a wall clock that is
 * stepped is seen within a second, in both directions.
 */
#include "timers.h"

#include "../base/log.h"
#include "../base/json.h"
#include "../sys/owners.h"
#include "../sys/replay.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define FIRE_BATCH 1000

const double timers_late_bounds_ms[16] = {1,   2,    5,    10,   20,    50,    100,   200,
                                          500, 1000, 2000, 5000, 10000, 30000, 60000, 1e300};

typedef struct timer {
    char id[40];
    int64_t at;  /* wall clock (µs): as asked, or as estimated for a delay */
    int64_t due; /* relative timers: when due on CLOCK_MONOTONIC (µs) */
    uint64_t pos, fired_pos;
    char *error;           /* failed: why the store refused its event (owned) */
    char owner[OWNER_MAX]; /* the key that asked for it ("": none), from its Scheduled record */
    uint8_t state;
    bool cancelling;
    bool relative;   /* asked for with delay_ms: waits on the monotonic clock */
    bool has_record; /* pos is its Scheduled record (false: known so far only from a Fired or Cancelled one) */
} timer;

/* Pending timers by time, earliest on top (lazy: fired or cancelled ones are dropped when seen). */
typedef struct heap {
    uint32_t *v;
    size_t n, cap;
} heap;

typedef struct fire_batch {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    size_t left; /* appends of the batch not yet called back */
} fire_batch;

struct timers {
    factum_t *db;
    fire_batch batch;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    pthread_t thread;
    bool stop;
    timer *v;
    size_t n, cap;
    uint32_t *slots; /* id -> index + 1, open addressing */
    size_t nslots;
    heap wall, mono; /* timers "at" a wall-clock time; relative ones, by their monotonic due time */
    timers_stats st;
    owners owned;          /* pending timers by owner (a key's max_schedules) */
    uint64_t ended;        /* timers in the table that fired, failed or were cancelled */
    int64_t compact_after; /* CLOCK_MONOTONIC µs: no compaction before (after one failed) */
    bool started;          /* the scheduler thread runs */
    uint64_t term;         /* the store's leadership term the tables were read in (factum_leads) */
};

const char *const timers_state_names[4] = {"pending", "fired", "cancelled", "failed"};

/* ---- tables (mutex held) ---- */

static size_t slot_of(const timers_t *t, const char *id) {
    size_t mask = t->nslots - 1, i = (size_t)hash64(id, strlen(id), 11) & mask;
    while (t->slots[i] && strcmp(t->v[t->slots[i] - 1].id, id))
        i = (i + 1) & mask;
    return i;
}

static timer *find(timers_t *t, const char *id) {
    if (!t->nslots) return NULL;
    uint32_t k = t->slots[slot_of(t, id)];
    return k ? &t->v[k - 1] : NULL;
}

/* A timer's time on its own clock: the wall clock for "at", the monotonic one for a delay. */
static int64_t when(const timer *x) { return x->relative ? x->due : x->at; }

static bool heap_less(const timers_t *t, uint32_t a, uint32_t b) { return when(&t->v[a]) < when(&t->v[b]); }

static heap *heap_of(timers_t *t, const timer *x) { return x->relative ? &t->mono : &t->wall; }

static void heap_push(timers_t *t, heap *h, uint32_t k) {
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 1024;
        uint32_t *v = realloc(h->v, cap * sizeof *v);
        if (!v) return; /* stays in the table; found again at the next open */
        h->v = v, h->cap = cap;
    }
    size_t i = h->n++;
    while (i && heap_less(t, k, h->v[(i - 1) / 2]))
        h->v[i] = h->v[(i - 1) / 2], i = (i - 1) / 2;
    h->v[i] = k;
}

static void heap_pop(timers_t *t, heap *h) {
    uint32_t last = h->v[--h->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n) break;
        if (c + 1 < h->n && heap_less(t, h->v[c + 1], h->v[c])) c++;
        if (!heap_less(t, h->v[c], last)) break;
        h->v[i] = h->v[c], i = c;
    }
    if (h->n) h->v[i] = last;
}

/* The earliest pending timer of h, dropping fired and cancelled ones from the top; NULL if none. */
static timer *heap_top(timers_t *t, heap *h) {
    while (h->n && t->v[h->v[0]].state != TIMER_PENDING)
        heap_pop(t, h);
    return h->n ? &t->v[h->v[0]] : NULL;
}

/* Adds (or finds) the timer id. NULL when out of memory. */
static timer *insert(timers_t *t, const char *id) {
    timer *x = find(t, id);
    if (x) return x;
    if ((t->n + 1) * 2 > t->nslots) {
        size_t ns = t->nslots ? t->nslots * 2 : 1024;
        uint32_t *s = calloc(ns, sizeof *s), *old = t->slots;
        if (!s) return NULL;
        size_t on = t->nslots;
        t->slots = s, t->nslots = ns;
        for (size_t i = 0; i < on; i++)
            if (old[i]) t->slots[slot_of(t, t->v[old[i] - 1].id)] = old[i];
        free(old);
    }
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 1024;
        timer *v = realloc(t->v, cap * sizeof *v);
        if (!v) return NULL;
        t->v = v, t->cap = cap;
    }
    x = &t->v[t->n];
    memset(x, 0, sizeof *x);
    snprintf(x->id, sizeof x->id, "%s", id);
    t->slots[slot_of(t, id)] = (uint32_t)++t->n;
    return x;
}

/* The counter of timers in `state`. */
static uint64_t *count_of(timers_t *t, int state) {
    return state == TIMER_PENDING     ? &t->st.pending
           : state == TIMER_FIRED     ? &t->st.fired
           : state == TIMER_CANCELLED ? &t->st.cancelled
                                      : &t->st.failed;
}

/* A timer ends (fired, failed, cancelled) once: a later record of it changes nothing. */
static void set_state(timers_t *t, timer *x, int state) {
    if (x->state != TIMER_PENDING || state == TIMER_PENDING) return;
    t->st.pending--;
    owners_add(&t->owned, x->owner, -1);
    x->state = (uint8_t)state;
    ++*count_of(t, state);
    t->ended++;
}

/*
 * Adds a pending timer. delay_us < 0: due when the wall clock reads at. Otherwise it was asked
 * for as a delay and at is the wall-clock estimate written when it was asked; it is due after
 * what is left of that delay on the monotonic clock: at - now by the wall clock, but never more
 * than the delay itself (a wall clock stepped back, here or before a restart, does not hold it
 * back) and never less than 0 (one stepped forward before a restart fires it at once).
 */
static void add_locked(timers_t *t, const char *id, int64_t at, int64_t delay_us, uint64_t pos, const char *owner) {
    timer *x = find(t, id);
    if (x && x->has_record) return; /* applied twice, or a compaction's copy: the first record wins */
    bool ended = x != NULL;         /* a Fired or Cancelled record came first: it stays ended */
    if (!x && !(x = insert(t, id))) return;
    x->at = at, x->pos = pos, x->has_record = true, x->relative = delay_us >= 0;
    if (x->relative) x->due = clock_mono_us() + MAX(0, MIN(at - clock_realtime_us(), delay_us));
    if (ended) return;
    x->state = TIMER_PENDING;
    t->st.pending++;
    snprintf(x->owner, sizeof x->owner, "%s", owner);
    owners_add(&t->owned, owner, 1);
    heap_push(t, heap_of(t, x), (uint32_t)(x - t->v));
}

/* A timer ends by a record (Fired, Cancelled). One not known yet — its Scheduled record comes
   later, a compaction's copy — is entered as ended, so that copy cannot make it pending. */
static timer *end_locked(timers_t *t, const char *id, int state) {
    timer *x = find(t, id);
    if (!x) {
        if (!(x = insert(t, id))) return NULL;
        x->state = (uint8_t)state;
        ++*count_of(t, state);
        t->ended++;
        return x;
    }
    set_state(t, x, state);
    return x;
}

/* ---- the public side ---- */

int timers_begin_cancel(timers_t *t, const char *id, factum_error_t *err) {
    pthread_mutex_lock(&t->mu);
    timer *x = find(t, id);
    int rc = 0;
    if (!x)
        rc = err_set(err, FACTUM_ENOTFOUND, "no schedule '%s'", id);
    else if (x->state != TIMER_PENDING || x->cancelling)
        rc = err_set(err, FACTUM_ECONFLICT, "schedule '%s' has %s", id,
                     x->state == TIMER_FIRED    ? "fired already"
                     : x->state == TIMER_FAILED ? "failed already"
                                                : "been cancelled already");
    else
        x->cancelling = true;
    pthread_mutex_unlock(&t->mu);
    return rc;
}

void timers_end_cancel(timers_t *t, const char *id, bool cancelled) {
    pthread_mutex_lock(&t->mu);
    timer *x = find(t, id);
    if (x) {
        x->cancelling = false;
        if (cancelled) set_state(t, x, TIMER_CANCELLED);
    }
    pthread_cond_signal(&t->cond);
    pthread_mutex_unlock(&t->mu);
}

static void info_of(const timer *x, timer_info *out) {
    memset(out, 0, sizeof *out);
    snprintf(out->id, sizeof out->id, "%s", x->id);
    out->state = x->state, out->at_us = x->at, out->has_record = x->has_record, out->pos = x->pos,
    out->fired_pos = x->fired_pos;
    if (x->error) snprintf(out->error, sizeof out->error, "%s", x->error);
}

int timers_lookup(timers_t *t, const char *id, timer_info *out) {
    pthread_mutex_lock(&t->mu);
    timer *x = find(t, id);
    if (x) info_of(x, out);
    pthread_mutex_unlock(&t->mu);
    return x ? 0 : FACTUM_ENOTFOUND;
}

/* The list's page: the smallest ids after `after`, kept as a max-heap of at most max. */
static void page_push(timers_t *t, uint32_t *page, size_t *n, size_t max, uint32_t k) {
    size_t i;
    if (*n < max) {
        for (i = (*n)++; i && strcmp(t->v[page[(i - 1) / 2]].id, t->v[k].id) < 0; i = (i - 1) / 2)
            page[i] = page[(i - 1) / 2];
        page[i] = k;
        return;
    }
    if (strcmp(t->v[k].id, t->v[page[0]].id) >= 0) return; /* not among the smallest */
    for (i = 0;;) {                                        /* replace the largest, sift down */
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && strcmp(t->v[page[c + 1]].id, t->v[page[c]].id) > 0) c++;
        if (strcmp(t->v[page[c]].id, t->v[k].id) <= 0) break;
        page[i] = page[c], i = c;
    }
    page[i] = k;
}

static int by_id(const void *a, const void *b) {
    return strcmp(((const timer_info *)a)->id, ((const timer_info *)b)->id);
}

size_t timers_list(timers_t *t, int state, const char *after, timer_info *out, size_t max) {
    uint32_t *page = max ? calloc(max, sizeof *page) : NULL;
    size_t n = 0;
    if (!page) return 0;
    pthread_mutex_lock(&t->mu);
    for (size_t i = 0; i < t->n; i++)
        if ((state < 0 || t->v[i].state == state) && strcmp(t->v[i].id, after) > 0)
            page_push(t, page, &n, max, (uint32_t)i);
    for (size_t i = 0; i < n; i++)
        info_of(&t->v[page[i]], &out[i]);
    pthread_mutex_unlock(&t->mu);
    free(page);
    qsort(out, n, sizeof *out, by_id);
    return n;
}

void timers_get_stats(timers_t *t, timers_stats *out) {
    pthread_mutex_lock(&t->mu);
    *out = t->st;
    pthread_mutex_unlock(&t->mu);
}

uint64_t timers_count_owned(timers_t *t, const char *key) {
    pthread_mutex_lock(&t->mu);
    uint64_t n = owners_count(&t->owned, key);
    pthread_mutex_unlock(&t->mu);
    return n;
}

/* ---- reading $schedules records ---- */

static bool member_raw(factum_str_t obj, const char *key, factum_str_t *out, int want) {
    int kind;
    return json_member(obj, key, out, &kind) && kind == want;
}

/* Applies one $schedules record (mutex held, or before the scheduler runs): the one way the
   tables change, live and at start-up. false if it is not a well-formed Scheduled, Fired or
   Cancelled record. id and msg are scratch. */
static bool apply_record(timers_t *t, const factum_event_t *e, buf_t *id, buf_t *msg) {
    if (!json_member_string(e->data, "id", id) || id->len >= sizeof((timer *)0)->id) return false;
    if (str_eq(e->type, str_c("Scheduled"))) {
        int64_t us;
        uint64_t delay_ms = 0;
        bool relative = json_member_u64(e->data, "delay_ms", &delay_ms);
        if (!json_member_string(e->data, "at", msg) || time_parse((factum_str_t){msg->ptr, msg->len}, &us) ||
            delay_ms > TIMERS_MAX_DELAY_MS)
            return false;
        char owner[OWNER_MAX];
        owners_of_record(e->data, owner);
        add_locked(t, id->ptr, us, relative ? (int64_t)delay_ms * 1000 : -1, e->position, owner);
    } else if (str_eq(e->type, str_c("Fired"))) {
        /* {id, position}, or {id, error}: the store refused the event (the timer failed) */
        bool failed = json_member_string(e->data, "error", msg);
        timer *x = find(t, id->ptr);
        bool first = !x || x->state == TIMER_PENDING; /* the record that ends it (not one applied again) */
        x = end_locked(t, id->ptr, failed ? TIMER_FAILED : TIMER_FIRED);
        if (!x || !first) return true;
        if (failed)
            free(x->error), x->error = strdup(msg->ptr);
        else
            json_member_u64(e->data, "position", &x->fired_pos);
    } else if (str_eq(e->type, str_c("Cancelled"))) {
        end_locked(t, id->ptr, TIMER_CANCELLED);
    } else {
        return false;
    }
    return true;
}

typedef struct replay_ctx {
    timers_t *t;
    uint64_t below; /* apply records below this revision only */
    bool lock;      /* take the mutex for each (the scheduler runs) */
    buf_t id, msg;  /* scratch */
} replay_ctx;

static void replay_one(void *ctx, const factum_event_t *e) {
    replay_ctx *c = ctx;
    if (e->revision >= c->below) return;
    if (c->lock) pthread_mutex_lock(&c->t->mu);
    apply_record(c->t, e, &c->id, &c->msg);
    if (c->lock) pthread_mutex_unlock(&c->t->mu);
}

/* Applies the records of $schedules below revision `below`. */
static int replay_records(timers_t *t, uint64_t below, bool lock, factum_error_t *err) {
    replay_ctx c = {t, below, lock, {0}, {0}};
    int rc = replay_stream(t->db, TIMERS_STREAM, 0, replay_one, &c, err);
    buf_free(&c.id);
    buf_free(&c.msg);
    return rc;
}

int timers_add(timers_t *t, const char *id, uint64_t pos, factum_error_t *err) {
    pthread_mutex_lock(&t->mu);
    timer *x = find(t, id);
    bool known = x && x->has_record; /* a compaction met its record first */
    pthread_mutex_unlock(&t->mu);
    if (known) return 0;
    factum_result_t *r;
    int rc = factum_read_at(t->db, pos, &r, err);
    if (rc) return rc;
    buf_t sid = {0}, msg = {0};
    const factum_event_t *e = factum_result_event(r, 0);
    pthread_mutex_lock(&t->mu);
    if (!str_eq(e->type, str_c("Scheduled")) || !apply_record(t, e, &sid, &msg))
        rc = err_set(err, FACTUM_ECORRUPT, "the record at position %llu is not a Scheduled record",
                     (unsigned long long)pos);
    pthread_cond_signal(&t->cond); /* it may be the earliest now */
    pthread_mutex_unlock(&t->mu);
    buf_free(&sid);
    buf_free(&msg);
    factum_result_free(r);
    return rc;
}

int timers_record(factum_t *db, const timer_info *ti, factum_result_t **out, factum_error_t *err) {
    *out = NULL;
    return ti->has_record ? factum_read_at(db, ti->pos, out, err) : 0;
}

/* ---- firing ---- */

typedef struct fire_slot {
    timers_t *t;
    char id[40];
    int rc;
    uint64_t position;
    char msg[200];
} fire_slot;

static void fired_cb(void *ctx, int rc, const factum_append_result_t *res, const char *msg) {
    fire_slot *s = ctx;
    s->rc = rc;
    s->position = res->last_position;
    snprintf(s->msg, sizeof s->msg, "%s", msg);
    fire_batch *b = &s->t->batch;
    pthread_mutex_lock(&b->mu);
    if (--b->left == 0) pthread_cond_signal(&b->cond);
    pthread_mutex_unlock(&b->mu);
}

/* Starts the append of one timer's event; false if it could not start (s->rc says why). Once
   the append is started the slot is the callback's (fired_cb may run before the call returns),
   so nothing here touches it after that. */
static bool fire_one(timers_t *t, uint64_t pos, fire_slot *s) {
    factum_result_t *r = NULL;
    factum_error_t err;
    factum_events_t *set = NULL;
    buf_t stream = {0};
    factum_str_t ev;
    int rc = factum_read_at(t->db, pos, &r, &err);
    if (!rc) {
        factum_str_t data = factum_result_event(r, 0)->data;
        if (!json_member_string(data, "stream", &stream) || !member_raw(data, "event", &ev, JSON_OBJECT))
            rc = err_set(&err, FACTUM_ECORRUPT, "Scheduled record without stream or event");
        else if (!(rc = factum_events_parse(ev.ptr, ev.len, 0, &set, &err))) {
            factum_event_t e = *factum_events_get(set, 0);
            if (!e.id.len) e.id = str_c(s->id); /* so a repeated firing is an idempotent repeat */
            rc = factum_append_async(t->db, (factum_str_t){stream.ptr, stream.len}, FACTUM_EXPECT_ANY, &e, 1, fired_cb,
                                     s, &err);
        }
    }
    if (rc) {
        s->rc = rc;
        snprintf(s->msg, sizeof s->msg, "%s", err.message);
    }
    factum_events_free(set);
    factum_result_free(r);
    buf_free(&stream);
    return rc == 0;
}

static void fire(timers_t *t, fire_slot *slots, const uint64_t *pos, size_t n) {
    fire_batch *fb = &t->batch;
    pthread_mutex_lock(&fb->mu);
    fb->left = n + 1; /* +1: nobody signals "all done" while we are still starting */
    pthread_mutex_unlock(&fb->mu);
    size_t started = 0;
    for (size_t i = 0; i < n; i++)
        started += fire_one(t, pos[i], &slots[i]);
    pthread_mutex_lock(&fb->mu);
    fb->left -= (n - started) + 1;
    while (fb->left)
        pthread_cond_wait(&fb->cond, &fb->mu);
    pthread_mutex_unlock(&fb->mu);
    /* One batch of Fired records; a failed firing is recorded with its error (it will not be
       retried: the event was refused, e.g. an id the stream holds with other content). One
       whose outcome is not known — the cluster's leader changed under it — stays pending and
       fires again, here or on the next leader: its event's id makes a second firing an
       idempotent repeat, so it lands once. */
    factum_event_t *ev = calloc(n, sizeof *ev);
    char(*data)[512] = calloc(n, sizeof *data);
    if (!ev || !data) goto out;
    size_t again = 0;
    for (size_t i = 0; i < n; i++) {
        int rc = slots[i].rc;
        if (rc == FACTUM_ENOTLEADER || rc == FACTUM_EUNREACHABLE || rc == FACTUM_ECLOSED) {
            pthread_mutex_lock(&t->mu);
            timer *x = find(t, slots[i].id);
            if (x && x->state == TIMER_PENDING) heap_push(t, heap_of(t, x), (uint32_t)(x - t->v));
            pthread_mutex_unlock(&t->mu);
            again++;
            continue;
        }
        slots[i - again] = slots[i];
    }
    n -= again;
    if (!n) goto out;
    for (size_t i = 0; i < n; i++) {
        buf_t b = {0};
        buf_printf(&b, "{\"id\":\"%s\"", slots[i].id);
        if (slots[i].rc) {
            buf_printf(&b, ",\"error\":");
            json_escape(&b, slots[i].msg, strlen(slots[i].msg));
        } else {
            buf_printf(&b, ",\"position\":%llu", (unsigned long long)slots[i].position);
        }
        buf_append(&b, "}", 1);
        snprintf(data[i], sizeof data[i], "%.*s", (int)b.len, b.ptr);
        buf_free(&b);
        ev[i] = (factum_event_t){.type = str_c("Fired"), .data = str_c(data[i]), .data_format = FACTUM_DATA_JSON};
    }
    factum_error_t err;
    int frc = factum_append(t->db, str_c(TIMERS_STREAM), FACTUM_EXPECT_ANY, ev, n, NULL, &err);
    if (frc == 0) {
        int64_t now_wall = clock_realtime_us(), now_mono = clock_mono_us();
        buf_t id = {0}, msg = {0};
        pthread_mutex_lock(&t->mu);
        for (size_t i = 0; i < n; i++) {
            apply_record(t, &ev[i], &id, &msg);
            timer *x = find(t, slots[i].id);
            if (!x || slots[i].rc) continue;
            int64_t late_us = MAX(0, (x->relative ? now_mono : now_wall) - when(x));
            double late_ms = (double)late_us / 1000;
            size_t b = 0;
            while (late_ms > timers_late_bounds_ms[b])
                b++;
            t->st.late[b]++;
            t->st.late_sum_us += (uint64_t)late_us;
        }
        pthread_mutex_unlock(&t->mu);
        buf_free(&id);
        buf_free(&msg);
    } else if (frc == FACTUM_ENOTLEADER || frc == FACTUM_EUNREACHABLE) {
        /* the cluster's leader changed: they stay pending and fire again, idempotently (a store
           that refuses writes for good, a failed disk, leaves them for after a restart) */
        pthread_mutex_lock(&t->mu);
        for (size_t i = 0; i < n; i++) {
            timer *x = find(t, slots[i].id);
            if (x && x->state == TIMER_PENDING && factum_leads(t->db, NULL))
                heap_push(t, heap_of(t, x), (uint32_t)(x - t->v));
        }
        pthread_mutex_unlock(&t->mu);
    }
out:
    free(ev);
    free(data);
}

/* Takes the due timers of h (its clock reads now) into slots/pos, up to FIRE_BATCH in all;
   timers being cancelled go to held. */
static void take_due(timers_t *t, heap *h, int64_t now, fire_slot *slots, uint64_t *pos, size_t *n, uint32_t *held,
                     size_t *nheld) {
    timer *x;
    while (*n < FIRE_BATCH && (x = heap_top(t, h)) && when(x) <= now) {
        uint32_t k = h->v[0];
        heap_pop(t, h);
        if (x->cancelling) {
            if (*nheld < FIRE_BATCH) held[(*nheld)++] = k; /* back in the heap once we are done */
            continue;
        }
        slots[*n] = (fire_slot){.t = t};
        snprintf(slots[*n].id, sizeof slots[*n].id, "%s", x->id);
        pos[(*n)++] = x->pos;
    }
}

/* ---- compaction ---- */

#define COPY_BATCH 1000             /* copies per append */
#define COPY_BATCH_BYTES (8u << 20) /* and about this many bytes of data */

/* Drops the timers that ended before position `cut` (their records are hidden now) and rebuilds
   the id table and the heaps around the rest. Mutex held. */
static void forget_before(timers_t *t, uint64_t cut) {
    size_t w = 0;
    t->ended = 0;
    for (size_t i = 0; i < t->n; i++) {
        timer *x = &t->v[i];
        if (x->state != TIMER_PENDING && (!x->has_record || x->pos < cut)) {
            free(x->error);
            continue;
        }
        t->ended += x->state != TIMER_PENDING;
        t->v[w++] = *x;
    }
    t->n = w;
    if (t->nslots) memset(t->slots, 0, t->nslots * sizeof *t->slots);
    t->wall.n = t->mono.n = 0;
    for (size_t i = 0; i < t->n; i++) {
        t->slots[slot_of(t, t->v[i].id)] = (uint32_t)(i + 1);
        if (t->v[i].state == TIMER_PENDING) heap_push(t, heap_of(t, &t->v[i]), (uint32_t)i);
    }
}

/*
 * Copies, a batch at a time, the Scheduled record of every timer still pending whose record is
 * before position `cut`, and points the timer at its copy (same data, a new event id). 0 once
 * none is left, or the error that stopped it.
 */
static int copy_pending(timers_t *t, uint64_t cut, factum_error_t *err) {
    char(*ids)[40] = calloc(COPY_BATCH, sizeof *ids);
    uint64_t *from = calloc(COPY_BATCH, sizeof *from);
    factum_event_t *ev = calloc(COPY_BATCH, sizeof *ev);
    factum_result_t **held = calloc(COPY_BATCH, sizeof *held);
    int rc = ids && from && ev && held ? 0 : err_set(err, FACTUM_ENOMEM, "out of memory");
    for (size_t n = 1; !rc && n;) {
        n = 0;
        pthread_mutex_lock(&t->mu);
        for (size_t i = 0; i < t->n && n < COPY_BATCH; i++) {
            const timer *x = &t->v[i];
            if (x->state != TIMER_PENDING || !x->has_record || x->pos >= cut) continue;
            snprintf(ids[n], sizeof ids[n], "%s", x->id);
            from[n++] = x->pos;
        }
        pthread_mutex_unlock(&t->mu);
        size_t k = 0, bytes = 0;
        for (; k < n && bytes < COPY_BATCH_BYTES && !rc; k++) {
            if ((rc = factum_read_at(t->db, from[k], &held[k], err))) break;
            const factum_event_t *e = factum_result_event(held[k], 0);
            ev[k] = (factum_event_t){.type = e->type, .data = e->data, .data_format = FACTUM_DATA_JSON};
            bytes += e->data.len;
        }
        factum_append_result_t res;
        if (!rc && k)
            while ((rc = factum_append(t->db, str_c(TIMERS_STREAM), FACTUM_EXPECT_ANY, ev, k, &res, err)) ==
                       FACTUM_ETOOBIG &&
                   k > 1)
                k /= 2; /* more than a segment holds: fewer at a time (the rest come next round) */
        if (!rc && k) {
            pthread_mutex_lock(&t->mu);
            for (size_t i = 0; i < k; i++) {
                timer *x = find(t, ids[i]);
                if (x && x->pos == from[i]) x->pos = res.first_position + i;
            }
            pthread_mutex_unlock(&t->mu);
        }
        for (size_t i = 0; i < n; i++)
            factum_result_free(held[i]), held[i] = NULL;
    }
    free(ids);
    free(from);
    free(ev);
    free(held);
    return rc;
}

/* Compacts $schedules (see the top of the file). Scheduler thread, mutex not held. */
static int compact(timers_t *t, factum_error_t *err) {
    factum_result_t *r;
    int rc = factum_read_stream(t->db, str_c(TIMERS_STREAM), FACTUM_END, 1, 1, &r, err);
    if (rc) return rc == FACTUM_ENOTFOUND ? 0 : rc; /* nothing visible: nothing to reclaim */
    if (!factum_result_count(r)) {
        factum_result_free(r);
        return 0;
    }
    const factum_event_t *last = factum_result_event(r, 0);
    uint64_t cut_rev = last->revision + 1, cut_pos = last->position + 1;
    factum_result_free(r);
    if ((rc = replay_records(t, cut_rev, true, err)) || (rc = copy_pending(t, cut_pos, err)) ||
        (rc = replay_forget_before(t->db, TIMERS_STREAM, cut_rev, err)))
        return rc;
    pthread_mutex_lock(&t->mu);
    forget_before(t, cut_pos);
    t->st.compactions++;
    pthread_mutex_unlock(&t->mu);
    return 0;
}

/* ---- the scheduler ---- */

/* Cluster mode (docs/cluster.md, "Engines above the log"): this node leads in a new term, and
   other nodes may have scheduled, fired and cancelled timers meanwhile. Their records are in
   the local log: read the tables again from it (mutex held; it is kept while reading). */
static void reload_locked(timers_t *t) {
    for (size_t i = 0; i < t->n; i++)
        free(t->v[i].error);
    t->n = 0;
    if (t->slots) memset(t->slots, 0, t->nslots * sizeof *t->slots);
    t->wall.n = t->mono.n = 0;
    t->st.pending = t->st.fired = t->st.cancelled = t->st.failed = 0;
    t->ended = 0;
    owners_clear(&t->owned);
    factum_error_t err;
    if (replay_records(t, UINT64_MAX, false, &err))
        log_msg(LOG_LEVEL_WARN, "reading %s again as the new leader: %s", TIMERS_STREAM, err.message);
}

static void *scheduler(void *arg) {
    timers_t *t = arg;
    fire_slot *slots = calloc(FIRE_BATCH, sizeof *slots);
    uint64_t *pos = calloc(FIRE_BATCH, sizeof *pos);
    uint32_t *held = calloc(FIRE_BATCH, sizeof *held);
    pthread_mutex_lock(&t->mu);
    while (!t->stop && slots && pos && held) {
        /* Only the node that writes fires (standalone: always), from tables read in its term. */
        uint64_t term;
        if (!factum_leads(t->db, &term)) {
            struct timespec ts = clock_mono_after(200000);
            pthread_cond_timedwait(&t->cond, &t->mu, &ts);
            continue;
        }
        if (term != t->term) {
            reload_locked(t);
            t->term = term;
        }
        /* Wait for the earliest of either kind, a second at most: the wall clock may be stepped
           meanwhile, and a timer "at" a time is due when the wall clock reads it. */
        int64_t now_wall = clock_realtime_us(), now_mono = clock_mono_us();
        timer *w = heap_top(t, &t->wall), *m = heap_top(t, &t->mono);
        if (!(w && w->at <= now_wall) && !(m && m->due <= now_mono)) {
            int64_t wait_us = 1000000;
            if (w) wait_us = MIN(wait_us, w->at - now_wall);
            if (m) wait_us = MIN(wait_us, m->due - now_mono);
            struct timespec ts = clock_mono_after(wait_us);
            pthread_cond_timedwait(&t->cond, &t->mu, &ts);
            continue;
        }
        size_t n = 0, nheld = 0;
        take_due(t, &t->mono, now_mono, slots, pos, &n, held, &nheld);
        take_due(t, &t->wall, now_wall, slots, pos, &n, held, &nheld);
        for (size_t i = 0; i < nheld; i++)
            heap_push(t, heap_of(t, &t->v[held[i]]), held[i]);
        pthread_mutex_unlock(&t->mu);
        if (n) fire(t, slots, pos, n);
        pthread_mutex_lock(&t->mu);
        if (!n && nheld) {
            /* Only timers being cancelled are due: wait for their outcome. */
            struct timespec ts = clock_mono_after(10000);
            pthread_cond_timedwait(&t->cond, &t->mu, &ts);
        }
        /* Enough timers ended for their records to outweigh the live ones: reclaim them. */
        if (t->ended >= MAX(TIMERS_COMPACT_MIN, t->st.pending) && clock_mono_us() >= t->compact_after) {
            pthread_mutex_unlock(&t->mu);
            factum_error_t err;
            bool ok = compact(t, &err) == 0;
            if (!ok) log_msg(LOG_LEVEL_WARN, "compacting %s: %s (tried again in a minute)", TIMERS_STREAM, err.message);
            pthread_mutex_lock(&t->mu);
            if (!ok) t->compact_after = clock_mono_us() + 60000000;
        }
    }
    pthread_mutex_unlock(&t->mu);
    free(slots);
    free(pos);
    free(held);
    return NULL;
}

static void timers_free(timers_t *t) {
    for (size_t i = 0; i < t->n; i++)
        free(t->v[i].error);
    owners_free(&t->owned);
    pthread_mutex_destroy(&t->mu);
    pthread_cond_destroy(&t->cond);
    pthread_mutex_destroy(&t->batch.mu);
    pthread_cond_destroy(&t->batch.cond);
    free(t->v);
    free(t->slots);
    free(t->wall.v);
    free(t->mono.v);
    free(t);
}

int timers_load(factum_t *db, timers_t **out, factum_error_t *err) {
    timers_t *t = calloc(1, sizeof *t);
    if (!t) return err_set(err, FACTUM_ENOMEM, "out of memory");
    t->db = db;
    pthread_mutex_init(&t->mu, NULL);
    clock_mono_cond_init(&t->cond);
    pthread_mutex_init(&t->batch.mu, NULL);
    pthread_cond_init(&t->batch.cond, NULL);
    factum_leads(db, &t->term);
    /* Reads skip what a compaction hid: replay starts at its copies. */
    int rc = replay_records(t, UINT64_MAX, false, err);
    if (rc) {
        timers_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

int timers_open(factum_t *db, timers_t **out, factum_error_t *err) {
    int rc = timers_load(db, out, err);
    if (rc) return rc;
    timers_t *t = *out;
    if (pthread_create(&t->thread, NULL, scheduler, t)) {
        timers_free(t);
        *out = NULL;
        return err_set(err, FACTUM_ENOMEM, "cannot start the scheduler");
    }
    t->started = true;
    return 0;
}

void timers_close(timers_t *t) {
    if (!t) return;
    if (t->started) {
        pthread_mutex_lock(&t->mu);
        t->stop = true;
        pthread_cond_signal(&t->cond);
        pthread_mutex_unlock(&t->mu);
        pthread_join(t->thread, NULL);
    }
    timers_free(t);
}
