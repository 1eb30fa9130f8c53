/*
 * runner.c — what runs one saga (docs/sagas.md, "Durable state and exactly once"), in slices on
 * the definitions' pool (sys/pool.h), one at a time: it reads inputs from the log in batches, has the machine decide
 * each (machine.h), writes what was decided — the instance's state records and the commands they carry — applies it,
 * and writes a checkpoint when one is due. At start it loads the instances the newest checkpoint names by applying
 * their records again, and sends again the commands of inputs past it.
 *
 * The store is touched here and nowhere else in the machine's path: the streams found deleted
 * for ever are given to decide as facts (it decides again when a command's stream is one).
 */
#include "runner.h"

#include "../base/log.h"
#include "../base/json.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define BATCH 1000
#define CHECKPOINT_EVERY_US 2000000 /* at most one checkpoint this often, and only when one is due: */
#define CHECKPOINT_AFTER 10000      /* positions passed without a decision that make one due */
#define TIMEOUT_TYPE "SagaTimeout"

/* ---- the active instances ---- */

static size_t bucket_of(const char *id) { return hash64(id, strlen(id), 0) % INDEX_BUCKETS; }

static inst *find(saga *s, const char *id) {
    for (inst *i = s->index[bucket_of(id)]; i; i = i->hnext)
        if (!strcmp(i->id, id)) return i;
    return NULL;
}

/* Adds i to the active instances (call with mu held). */
static void activate(saga *s, inst *i) {
    i->prev = NULL, i->next = s->active;
    if (s->active) s->active->prev = i;
    s->active = i;
    size_t b = bucket_of(i->id);
    i->hnext = s->index[b], s->index[b] = i;
    s->counts[i->c.status]++;
}

/* Takes i out of the active instances (call with mu held; counts are the caller's). */
static void deactivate(saga *s, inst *i) {
    if (i->prev)
        i->prev->next = i->next;
    else
        s->active = i->next;
    if (i->next) i->next->prev = i->prev;
    for (inst **p = &s->index[bucket_of(i->id)]; *p; p = &(*p)->hnext)
        if (*p == i) {
            *p = i->hnext;
            break;
        }
}

void saga_state_stream(const saga *s, const char *id, buf_t *out) {
    out->len = 0;
    buf_printf(out, "$saga-%s-%s", s->d->name, id);
}

static saga_clock clock_now(void) { return (saga_clock){clock_realtime_us(), clock_mono_us()}; }

/* ---- the runner ---- */

static void write_cb(void *ctx, int rc, const factum_append_result_t *res, const char *msg) {
    saga *s = ctx;
    (void)res;
    pthread_mutex_lock(&s->wmu);
    if (rc && !s->write_rc) {
        s->write_rc = rc;
        log_msg(LOG_LEVEL_ERROR, "saga %s: a write failed: %s", s->d->name, msg);
    }
    if (--s->inflight == 0) pthread_cond_signal(&s->wcond);
    pthread_mutex_unlock(&s->wmu);
}

/*
 * A command the store refuses although it was checked before it was recorded as sent (its
 * stream deleted for ever since, its id taken in that stream by other content): the instance
 * waits for the step's reply or timeout as if the service had not answered. Going back to the
 * checkpoint would send it again, be refused again, and hold up every instance for ever.
 */
static void command_cb(void *ctx, int rc, const factum_append_result_t *res, const char *msg) {
    saga *s = ctx;
    if (rc == FACTUM_EINVAL || rc == FACTUM_EBADEVENT || rc == FACTUM_EBADSTREAM || rc == FACTUM_ETOOBIG ||
        rc == FACTUM_EDELETED || rc == FACTUM_ECONFLICT) {
        log_msg(LOG_LEVEL_WARN, "saga %s: a command was refused (its step waits for its reply or timeout): %s",
                s->d->name, msg);
        rc = 0;
    }
    write_cb(ctx, rc, res, msg);
}

static void submit_cb(saga *s, factum_str_t stream, const factum_event_t *ev, size_t n, factum_append_cb cb) {
    factum_error_t err;
    pthread_mutex_lock(&s->wmu);
    s->inflight++;
    pthread_mutex_unlock(&s->wmu);
    if (factum_append_async(s->db, stream, FACTUM_EXPECT_ANY, ev, n, cb, s, &err)) {
        factum_append_result_t none = {0};
        cb(s, err.code, &none, err.message);
    }
}

static void submit(saga *s, factum_str_t stream, const factum_event_t *ev, size_t n) {
    submit_cb(s, stream, ev, n, write_cb);
}

/* Waits for every write submitted; their first error, or 0. */
static int drain(saga *s) {
    pthread_mutex_lock(&s->wmu);
    while (s->inflight)
        pthread_cond_wait(&s->wcond, &s->wmu);
    int rc = s->write_rc;
    s->write_rc = 0;
    pthread_mutex_unlock(&s->wmu);
    return rc;
}

/* The trace context of a write of the runner's own (a timeout marker, a parked input) into out as
   extension members: a child of the one among ext, its span id derived from where it goes. */
static void child_trace(factum_str_t ext, const char *stream, const char *id, buf_t *out) {
    trace_ctx in, t;
    buf_t seed = {0};
    out->len = 0;
    if (!trace_get(ext, &in)) return;
    buf_printf(&seed, "%s/%s", stream, id);
    trace_child(&in, (factum_str_t){seed.ptr, seed.len}, &t);
    trace_members(&t, out);
    buf_free(&seed);
}

/* Sends a command ({"id","cause",["traceparent",["tracestate",]]"command":{"stream","type","data"}})
   for instance id; its trace context is the one recorded with it. */
static void send_command(saga *s, const char *id, factum_str_t sent) {
    factum_str_t cmd, v;
    int kind;
    buf_t stream = {0}, type = {0}, cid = {0}, cause = {0}, trace = {0};
    if (json_member(sent, "command", &cmd, &kind) && json_member_string(cmd, "stream", &stream) &&
        json_member_string(cmd, "type", &type) && json_member_string(sent, "id", &cid)) {
        json_member_string(sent, "cause", &cause);
        factum_event_t e = {.type = {type.ptr, type.len},
                            .id = {cid.ptr, cid.len},
                            .correlationid = str_c(id),
                            .causationid = {cause.ptr, cause.len}};
        if (json_member(cmd, "data", &v, &kind)) e.data = v, e.data_format = FACTUM_DATA_JSON;
        if (json_member(sent, "traceparent", &v, &kind)) {
            buf_printf(&trace, "\"traceparent\":%.*s", (int)v.len, v.ptr);
            if (json_member(sent, "tracestate", &v, &kind))
                buf_printf(&trace, ",\"tracestate\":%.*s", (int)v.len, v.ptr);
            e.extensions = (factum_str_t){trace.ptr, trace.len};
        }
        submit_cb(s, (factum_str_t){stream.ptr, stream.len}, &e, 1, command_cb);
    }
    buf_free(&stream), buf_free(&type), buf_free(&cid), buf_free(&cause), buf_free(&trace);
}

inst *saga_load(saga *s, const char *id, uint64_t resend_from) {
    buf_t name = {0};
    saga_state_stream(s, id, &name);
    inst *i = NULL;
    saga_clock now = clock_now();
    for (uint64_t from = 0;;) {
        factum_result_t *r;
        if (factum_read_stream(s->db, (factum_str_t){name.ptr, name.len}, from, 1000, 0, &r, NULL)) break;
        size_t n = factum_result_count(r);
        for (size_t k = 0; k < n; k++) {
            saga_rec rec;
            if (!saga_record_parse(s->d, factum_result_event(r, k), &rec)) continue; /* a timeout marker */
            if (!i && (rec.kind != R_STARTED || !(i = saga_inst_new(id)))) continue;
            saga_apply(s->d, i, &rec, &now);
            /* The records of an input and its commands are written side by side: after a crash
               the records may be there without the command, even when the same input also
               ended the instance. */
            if ((rec.kind == R_STEP_STARTED || rec.kind == R_COMP_STARTED) && rec.sent.len && rec.input >= resend_from)
                send_command(s, id, rec.sent);
        }
        from = factum_result_next(r);
        factum_result_free(r);
        if (n < 1000) break;
    }
    buf_free(&name);
    return i;
}

static void park(saga *s, const factum_event_t *e, const char *reason) {
    buf_t data = {0}, name = {0}, trace = {0};
    char id[48];
    snprintf(id, sizeof id, "p-%llu", (unsigned long long)e->position);
    buf_printf(&data, "{\"position\":%llu,\"type\":", (unsigned long long)e->position);
    json_escape(&data, e->type.ptr, e->type.len);
    buf_append(&data, ",\"stream\":", 10);
    json_escape(&data, e->stream.ptr, e->stream.len);
    buf_append(&data, ",\"correlationid\":", 17);
    json_escape(&data, e->correlationid.ptr, e->correlationid.len);
    buf_append(&data, ",\"reason\":", 10);
    json_escape(&data, reason, strlen(reason));
    buf_append(&data, "}", 1);
    buf_printf(&name, "$sagaparked-%s", s->d->name);
    child_trace(e->extensions, name.ptr, id, &trace);
    factum_event_t p = {.type = str_c("Parked"),
                        .id = str_c(id),
                        .data = {data.ptr, data.len},
                        .data_format = FACTUM_DATA_JSON,
                        .extensions = {trace.ptr, trace.len}};
    submit(s, (factum_str_t){name.ptr, name.len}, &p, 1);
    s->decisions++;
    pthread_mutex_lock(&s->mu);
    s->parked++;
    pthread_mutex_unlock(&s->mu);
    buf_free(&data), buf_free(&name), buf_free(&trace);
}

static void ended_add(saga *s, inst *i) {
    if (!s->ended && !(s->ended = calloc(ENDED_KEPT, sizeof *s->ended))) return;
    ended *e = &s->ended[s->ended_at];
    snprintf(e->id, sizeof e->id, "%s", i->id);
    e->status = i->c.status, e->step = saga_shown_step(s->d, i), e->started_us = i->started_us,
    e->ended_us = i->ended_us;
    s->ended_at = (s->ended_at + 1) % ENDED_KEPT;
    if (s->nended < ENDED_KEPT) s->nended++;
}

/*
 * Writes what the machine decided for instance i (new: not active yet) — its state records, and
 * the commands they carry — then applies each record to i, counts it, and moves it out of the
 * active list if it ended. Applied once handed to the writer: a write that fails makes the runner
 * forget what it holds and start again from its checkpoint (see rewind_to_checkpoint).
 */
static void record_and_apply(saga *s, inst *i, bool new, const saga_out *o) {
    if (!o->nrecs) return;
    factum_event_t ev[MAX_RECS];
    for (int k = 0; k < o->nrecs; k++)
        ev[k] = (factum_event_t){.type = str_c(saga_record_types[o->recs[k].r.kind]),
                                 .id = str_c(o->recs[k].id),
                                 .data = {o->recs[k].data.ptr, o->recs[k].data.len},
                                 .data_format = FACTUM_DATA_JSON,
                                 .correlationid = str_c(i->id),
                                 .extensions = o->recs[k].r.ext};
    buf_t name = {0};
    saga_state_stream(s, i->id, &name);
    submit(s, (factum_str_t){name.ptr, name.len}, ev, (size_t)o->nrecs);
    buf_free(&name);
    for (int k = 0; k < o->nrecs; k++)
        if (o->recs[k].r.sent.len) send_command(s, i->id, o->recs[k].r.sent);
    s->decisions++;
    saga_clock now = clock_now();
    pthread_mutex_lock(&s->mu);
    int was = new ? S_RUNNING : i->c.status;
    for (int k = 0; k < o->nrecs; k++)
        saga_apply(s->d, i, &o->recs[k].r, &now);
    if (new) { /* counted as started, then settled to where it is */
        int st = i->c.status;
        i->c.status = S_RUNNING;
        activate(s, i);
        i->c.status = st;
    }
    if (was != i->c.status) s->counts[was]--, s->counts[i->c.status]++;
    if (i->c.status >= S_COMPLETED) {
        double d = (double)(i->ended_us - i->started_us) / 1e6;
        for (int k = 0; k < SAGA_DURATION_BUCKETS; k++)
            if (d <= saga_duration_bounds[k]) s->dur[k]++;
        s->dur_n++, s->dur_sum_s += d;
        deactivate(s, i);
        ended_add(s, i);
        saga_inst_free(i);
    }
    pthread_mutex_unlock(&s->mu);
}

/*
 * Has the machine decide input e for instance i (NULL: a new one, id), and decides again with
 * each command stream it finds deleted for ever: the store is asked here, not by decide.
 */
static void decide(saga *s, const inst *i, const char *id, const factum_event_t *e) {
    saga_out *o = &s->out;
    char deleted[MAX_STEPS][FACTUM_MAX_STREAM_NAME + 1];
    const char *names[MAX_STEPS];
    saga_facts f = {.db = s->db, .deleted = names};
    for (;;) {
        if (i)
            saga_decide(s->d, &f, i, e, o);
        else
            saga_decide_start(s->d, &f, id, e, o);
        int k = 0;
        for (; k < o->nrecs && f.ndeleted < MAX_STEPS; k++) {
            const buf_t *st = &o->recs[k].stream;
            factum_meta_t m;
            if (!o->recs[k].r.sent.len || factum_meta_get(s->db, (factum_str_t){st->ptr, st->len}, &m, NULL)) continue;
            bool gone = m.tombstone;
            factum_meta_free(&m);
            if (!gone) continue;
            snprintf(deleted[f.ndeleted], sizeof deleted[0], "%.*s", (int)st->len, st->ptr);
            names[f.ndeleted] = deleted[f.ndeleted], f.ndeleted++;
            break;
        }
        if (k >= o->nrecs || f.ndeleted == MAX_STEPS) return;
    }
}

static void start_instance(saga *s, const factum_event_t *e) {
    char id[256];
    if (!saga_instance_id(s->d, e, id)) {
        park(s, e, "the start event has no usable instance id at instance_id");
        return;
    }
    inst *i = find(s, id);
    if (!i && (i = saga_load(s, id, s->recovered_at))) { /* written before a restart, or an older instance */
        if (i->c.started_at != e->position) {
            saga_inst_free(i);
            park(s, e, "an instance with this id exists already");
            return;
        }
        pthread_mutex_lock(&s->mu);
        if (i->c.status < S_COMPLETED) activate(s, i);
        pthread_mutex_unlock(&s->mu);
        if (i->c.status >= S_COMPLETED) saga_inst_free(i);
        return; /* done before: its input is behind it */
    }
    if (i) {
        if (i->c.last_input < e->position) park(s, e, "an instance with this id is running");
        return;
    }
    decide(s, NULL, id, e);
    if (s->out.park[0]) {
        park(s, e, s->out.park);
        return;
    }
    if (!(i = saga_inst_new(id))) abort(); /* the server may stop on out-of-memory (STYLE.md) */
    record_and_apply(s, i, true, &s->out);
}

/* One input event. */
static void input(saga *s, const factum_event_t *e) {
    const saga_def *d = s->d;
    bool system = e->stream.len && e->stream.ptr[0] == '$';
    if (!system && str_eq(e->type, str_c(d->start_on))) {
        bool from = !d->nstart_cats;
        for (int k = 0; k < d->nstart_cats && !from; k++)
            from = stream_in_category(e->stream, str_c(d->start_cats[k]));
        if (from) start_instance(s, e);
        return;
    }
    bool timeout = system && str_eq(e->type, str_c(TIMEOUT_TYPE));
    if (timeout) {
        buf_t saga_name = {0};
        bool mine = json_member_string(e->data, "saga", &saga_name) && !strcmp(saga_name.ptr, d->name);
        buf_free(&saga_name);
        if (!mine) return;
    } else if (system || !saga_reply_type(d, e->type)) {
        return;
    } else if (d->nreply_cats) {
        bool from = false;
        for (int k = 0; k < d->nreply_cats && !from; k++)
            from = stream_in_category(e->stream, str_c(d->reply_cats[k]));
        if (!from) return; /* not a reply of this saga: another conversation uses the same types */
    }
    char id[256];
    snprintf(id, sizeof id, "%.*s", (int)MIN(e->correlationid.len, sizeof id - 1), e->correlationid.ptr);
    inst *i = *id ? find(s, id) : NULL;
    if (!i) {
        if (!timeout)
            park(s, e, *id ? "no running instance has this correlation id" : "a reply without a correlation id");
        return;
    }
    decide(s, i, NULL, e);
    if (s->out.park[0])
        park(s, e, s->out.park);
    else
        record_and_apply(s, i, false, &s->out);
}

/* Appends a timeout marker for every instance whose deadline passed; returns the next
   deadline (CLOCK_MONOTONIC, µs), 0 if none. */
static int64_t timeouts(saga *s) {
    int64_t now = clock_mono_us(), next = 0;
    for (inst *i = s->active; i; i = i->next)
        for (int k = 0; k < s->d->nsteps; k++) {
            if (i->due_us[k] <= 0) continue;
            if (i->due_us[k] > now) {
                if (!next || i->due_us[k] < next) next = i->due_us[k];
                continue;
            }
            const char *phase = i->c.status == S_COMPENSATING ? "compensation" : "step";
            char data[400], id[160];
            snprintf(data, sizeof data, "{\"saga\":\"%s\",\"step\":\"%s\",\"phase\":\"%s\"}", s->d->name,
                     s->d->steps[k].name, phase);
            snprintf(id, sizeof id, "timeout-%s-%s", phase, s->d->steps[k].name);
            buf_t name = {0}, trace = {0};
            saga_state_stream(s, i->id, &name);
            child_trace((factum_str_t){i->trace.ptr, i->trace.len}, name.ptr, id, &trace); /* in the instance's trace */
            factum_event_t e = {.type = str_c(TIMEOUT_TYPE),
                                .id = str_c(id),
                                .data = str_c(data),
                                .data_format = FACTUM_DATA_JSON,
                                .correlationid = str_c(i->id),
                                .extensions = {trace.ptr, trace.len}};
            submit(s, (factum_str_t){name.ptr, name.len}, &e, 1);
            buf_free(&name), buf_free(&trace);
            i->due_us[k] = -i->due_us[k]; /* marked; the marker comes back through the log */
        }
    return next;
}

/*
 * Only the newest checkpoint is ever read, so $sagacp-NAME keeps one: max_count 1, set once
 * (after the first checkpoint is durable, if the stream does not have it yet). The older ones
 * leave reads at once and the disk at the next scavenge; max_count always shows the newest, so
 * no moment between the two writes hides it.
 */
static int keep_newest_only(saga *s, factum_str_t stream) {
    factum_meta_t m;
    factum_error_t err;
    int rc = factum_meta_get(s->db, stream, &m, &err);
    if (!rc && m.max_count != 1) {
        m.max_count = 1;
        rc = factum_meta_set(s->db, stream, &m, NULL, &err);
    }
    factum_meta_free(&m);
    if (rc) log_msg(LOG_LEVEL_WARN, "saga %s: older checkpoints are kept: %s", s->d->name, err.message);
    return rc;
}

/* Writes a Checkpoint {position, active} to $sagacp-NAME; 0 once it is durable. */
static int checkpoint(saga *s) {
    buf_t data = {0}, name = {0};
    buf_printf(&data, "{\"position\":%llu,\"active\":[", (unsigned long long)s->position);
    for (inst *i = s->active; i; i = i->next) {
        if (i != s->active) buf_append(&data, ",", 1);
        json_escape(&data, i->id, strlen(i->id));
    }
    buf_append(&data, "]}", 2);
    buf_printf(&name, "$sagacp-%s", s->d->name);
    factum_event_t e = {.type = str_c("Checkpoint"), .data = {data.ptr, data.len}, .data_format = FACTUM_DATA_JSON};
    submit(s, (factum_str_t){name.ptr, name.len}, &e, 1);
    int rc = drain(s);
    if (!rc && !s->keeps_one) s->keeps_one = keep_newest_only(s, (factum_str_t){name.ptr, name.len}) == 0;
    buf_free(&data), buf_free(&name);
    return rc;
}

/* Where to start: the newest Checkpoint, its instances loaded, their pending commands sent
   again (the same ids: appended once). */
static void recover(saga *s) {
    buf_t name = {0};
    buf_printf(&name, "$sagacp-%s", s->d->name);
    factum_result_t *r;
    if (factum_read_stream(s->db, (factum_str_t){name.ptr, name.len}, FACTUM_END, 1, 1, &r, NULL) == 0) {
        if (factum_result_count(r)) {
            const factum_event_t *e = factum_result_event(r, 0);
            json_member_u64(e->data, "position", &s->position);
            factum_str_t a, v;
            int kind;
            if (json_member(e->data, "active", &a, &kind)) {
                json_iter_t it;
                json_iter_init(&it, a);
                buf_t id = {0};
                while (json_iter_element(&it, &v, &kind) == 1) {
                    id.len = 0;
                    if (json_unescape(v, &id) || buf_append(&id, "", 1)) break;
                    inst *i = saga_load(s, id.ptr, s->position);
                    if (!i) continue;
                    if (i->c.status >= S_COMPLETED) {
                        saga_inst_free(i);
                        continue;
                    }
                    pthread_mutex_lock(&s->mu);
                    activate(s, i);
                    pthread_mutex_unlock(&s->mu);
                }
                buf_free(&id);
            }
        }
        factum_result_free(r);
    }
    buf_free(&name);
    s->recovered_at = s->position;
    drain(s);
}

/* A write failed: what is in memory may be ahead of what is durable. Forget it and start again
   from the newest checkpoint, as after a restart (inputs already done are skipped then). The
   slice that found the failure asks for this a second later (rewind_at), not at once. */
static void rewind_to_checkpoint(saga *s) {
    pthread_mutex_lock(&s->mu);
    while (s->active) {
        inst *i = s->active;
        deactivate(s, i);
        saga_inst_free(i);
    }
    s->counts[S_RUNNING] = s->counts[S_COMPENSATING] = 0;
    s->position = 0;
    pthread_mutex_unlock(&s->mu);
    recover(s);
    s->cp_pos = s->position, s->cp_decisions = s->decisions;
}

static pool_next rewind_later(saga *s) {
    s->rewind_at = clock_mono_us() + 1000000;
    return (pool_next){.past = POOL_NO_POSITION, .at_us = s->rewind_at};
}

/*
 * One slice on the definitions' pool (sys/pool.h): the first recovers; each reads one batch of
 * inputs (at most BATCH), decides and writes them, marks the timeouts due, and writes a
 * checkpoint when one is due. Caught up, it waits for the head to pass its position, for the
 * next deadline, or for the time a due checkpoint may be written.
 *
 * A checkpoint only bounds the replay of a restart; it is due when an input was decided since
 * the last one (or many positions passed): an idle saga writes none, so its own checkpoint,
 * which it reads like any event, never causes the next. Measured on the monotonic clock.
 */
static pool_next slice(void *arg) {
    saga *s = arg;
    /* Only the node that writes runs sagas (docs/cluster.md, "Engines above the log"); in a new
       term it starts again from the newest checkpoint, as after a restart: what the last leader
       decided since is in the instances' records, and its commands are sent again (the same ids). */
    uint64_t term;
    if (!factum_leads(s->db, &term)) return (pool_next){.past = POOL_NO_POSITION, .at_us = clock_mono_us() + 200000};
    if (term != s->term) {
        if (s->recovered) rewind_to_checkpoint(s);
        s->term = term;
    }
    if (s->rewind_at) {
        if (clock_mono_us() < s->rewind_at) return (pool_next){.past = POOL_NO_POSITION, .at_us = s->rewind_at};
        s->rewind_at = 0;
        rewind_to_checkpoint(s);
    }
    if (!s->recovered) {
        recover(s);
        s->recovered = true;
        s->last_cp = clock_mono_us();
        s->cp_pos = s->position, s->cp_decisions = s->decisions;
    }
    factum_query_t q = {.from = s->position, .limit = BATCH, .system = 1};
    factum_result_t *r;
    size_t n = 0;
    if (factum_read_all(s->db, &q, &r, NULL) == 0) {
        n = factum_result_count(r);
        for (size_t k = 0; k < n; k++)
            input(s, factum_result_event(r, k));
        uint64_t next = factum_result_next(r);
        factum_result_free(r);
        if (drain(s)) return rewind_later(s); /* a write failed: go back to the last checkpoint */
        pthread_mutex_lock(&s->mu);
        s->position = next;
        pthread_mutex_unlock(&s->mu);
    }
    int64_t next_deadline = timeouts(s);
    if (drain(s)) return rewind_later(s); /* a timeout marker is not written: its deadline must come round again */
    int64_t now = clock_mono_us();
    bool cp_due = s->decisions != s->cp_decisions || s->position - s->cp_pos >= CHECKPOINT_AFTER;
    if (cp_due && now - s->last_cp >= CHECKPOINT_EVERY_US) {
        if (checkpoint(s) == 0) s->cp_pos = s->position, s->cp_decisions = s->decisions, cp_due = false;
        s->last_cp = now; /* a failed one is tried again at the next interval, not at once */
    }
    if (n) return (pool_next){.again = true};
    int64_t at = next_deadline;
    if (cp_due && (!at || s->last_cp + CHECKPOINT_EVERY_US < at)) at = s->last_cp + CHECKPOINT_EVERY_US;
    return (pool_next){.past = s->position, .at_us = at};
}

int saga_start(factum_t *db, pool *pl, saga_def *d, saga **out, factum_error_t *err) {
    saga *s = calloc(1, sizeof *s);
    if (!s) {
        saga_def_free(d);
        return err_set(err, FACTUM_ENOMEM, "out of memory");
    }
    s->db = db, s->d = d;
    pthread_mutex_init(&s->mu, NULL);
    pthread_mutex_init(&s->wmu, NULL);
    pthread_cond_init(&s->wcond, NULL);
    char what[SAGA_MAX_NAME + 16];
    snprintf(what, sizeof what, "saga %s", d->name);
    if (!(s->task = pool_add(pl, what, slice, s))) {
        saga_def_free(d);
        free(s);
        return err_set(err, FACTUM_ENOMEM, "out of memory");
    }
    *out = s;
    return 0;
}

void saga_stop(saga *s) {
    if (!s) return;
    pool_remove(s->task); /* waits for a batch in progress */
    saga_out_free(&s->out);
    while (s->active) {
        inst *i = s->active;
        deactivate(s, i);
        saga_inst_free(i);
    }
    free(s->ended);
    saga_def_free(s->d);
    pthread_mutex_destroy(&s->mu);
    pthread_mutex_destroy(&s->wmu);
    pthread_cond_destroy(&s->wcond);
    free(s);
}
