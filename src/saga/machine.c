/*
 * machine.c — the instance state machine of docs/sagas.md ("States", "Durable state"): what one
 * input decides (saga_decide_start, saga_decide), the state records that carry the decision, and
 * saga_apply, the one interpreter of those records, used live after the runner hands them to the
 * writer and at start-up on the records read back from $saga-NAME-ID.
 *
 * Decisions are pure: they read the definition, the instance, the input and the facts the runner
 * gives (the store's limits on an event, the streams it found deleted for ever) and write a
 * saga_out. To see its own effects as it goes — a success that starts the next stage, a failure
 * that compensates — decide moves a copy of the instance's core with the same core_apply that
 * saga_apply uses, so the two cannot disagree.
 */
#include "machine.h"

#include "../base/json.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

const char *const saga_status_names[5] = {"running", "compensating", "completed", "failed", "compensation_failed"};
const char *const saga_record_types[R_KINDS] = {
    "SagaStarted",           "StepStarted",        "StepSucceeded", "StepFailed", "CompensationStarted",
    "CompensationSucceeded", "CompensationFailed", "SagaCompleted", "SagaFailed", "SagaCompensationFailed"};

/* ---- apply ---- */

/* What a record does to the core: shared by saga_apply and by decide's copy. */
static void core_apply(const saga_def *d, saga_core *c, const saga_rec *r) {
    int k = r->step;
    uint32_t bit = k >= 0 ? 1u << k : 0;
    c->last_input = MAX(c->last_input, r->input);
    switch (r->kind) {
    case R_STARTED: *c = (saga_core){.status = S_RUNNING, .started_at = r->input, .last_input = c->last_input}; break;
    case R_STEP_STARTED:
    case R_STEP_FAILED:
        if (k < 0) break;
        if (c->stage != d->steps[k].stage) c->stage = d->steps[k].stage, c->stage_failed = false; /* a new stage */
        c->status = S_RUNNING;
        if (r->kind == R_STEP_STARTED)
            c->waiting |= bit;
        else
            c->waiting &= ~bit, c->stage_failed = true;
        break;
    case R_STEP_SUCCEEDED: c->waiting &= ~bit, c->done |= bit; break;
    case R_COMP_STARTED:
    case R_COMP_FAILED:
        if (k >= 0) c->status = S_COMPENSATING, c->step = k;
        break;
    case R_COMP_SUCCEEDED: break;
    case R_COMPLETED: c->status = S_COMPLETED, c->waiting = 0; break;
    case R_FAILED: c->status = S_FAILED, c->waiting = 0; break;
    case R_COMPENSATION_ENDED: c->status = S_COMP_FAILED, c->waiting = 0; break;
    }
}

/*
 * When a command recorded with deadline_us times out, on CLOCK_MONOTONIC. The record keeps the
 * wall clock (its input's commit time + timeout_ms: decided from the input alone, the same on
 * every replay); waiting uses what is left of it by the wall clock now, but at most timeout_ms,
 * so a wall clock stepped back (or commit times held back by such a step) never holds a timeout
 * back, and never less than 0. After that, stepping the wall clock changes nothing. 0: none.
 */
static int64_t due_of(int64_t deadline_us, uint64_t timeout_ms, const saga_clock *now) {
    if (deadline_us <= 0 || !timeout_ms) return 0;
    int64_t left = MAX(0, MIN(deadline_us - now->real_us, (int64_t)MIN(timeout_ms, (uint64_t)INT64_MAX / 2000) * 1000));
    return MAX(1, now->mono_us + left);
}

/* A step is answered (or timed out): nothing outstanding for it any more. */
static void settled(inst *i, int k) {
    i->due_us[k] = 0;
    i->sent[k].len = 0;
}

void saga_apply(const saga_def *d, inst *i, const saga_rec *r, const saga_clock *now) {
    int k = r->step;
    core_apply(d, &i->c, r);
    if (r->context.len) i->ctx.len = 0, buf_append(&i->ctx, r->context.ptr, r->context.len);
    switch (r->kind) {
    case R_STARTED:
        i->started_us = r->time_us;
        i->trace.len = 0;
        buf_append(&i->trace, r->ext.ptr, r->ext.len);
        break;
    case R_STEP_STARTED:
    case R_COMP_STARTED:
        if (k < 0) break;
        i->due_us[k] =
            due_of(r->deadline_us, (r->kind == R_COMP_STARTED ? &d->steps[k].comp : &d->steps[k].cmd)->timeout_ms, now);
        i->sent[k].len = 0;
        buf_append(&i->sent[k], r->sent.ptr, r->sent.len);
        break;
    case R_COMPLETED:
    case R_FAILED:
    case R_COMPENSATION_ENDED:
        i->ended_us = r->time_us;
        for (int q = 0; q < MAX_STEPS; q++)
            settled(i, q);
        break;
    default:
        if (k >= 0) settled(i, k);
    }
}

static int step_index(const saga_def *d, factum_str_t data) {
    buf_t n = {0};
    int k = -1;
    if (json_member_string(data, "step", &n))
        for (int i = 0; i < d->nsteps && k < 0; i++)
            if (!strcmp(d->steps[i].name, n.ptr)) k = i;
    buf_free(&n);
    return k;
}

bool saga_record_parse(const saga_def *d, const factum_event_t *e, saga_rec *r) {
    *r = (saga_rec){.kind = -1, .step = -1, .time_us = e->time_us, .ext = e->extensions};
    for (int k = 0; k < R_KINDS; k++)
        if (str_eq(e->type, str_c(saga_record_types[k]))) r->kind = k;
    if (r->kind < 0 || !json_member_u64(e->data, "input", &r->input)) return false;
    factum_str_t v;
    int kind;
    uint64_t dl = 0;
    r->step = step_index(d, e->data);
    if (json_member_u64(e->data, "deadline_us", &dl)) r->deadline_us = (int64_t)MIN(dl, (uint64_t)INT64_MAX);
    if (json_member(e->data, "sent", &v, &kind)) r->sent = v;
    if (json_member(e->data, "context", &v, &kind)) r->context = v;
    return true;
}

inst *saga_inst_new(const char *id) {
    inst *i = calloc(1, sizeof *i);
    if (i) snprintf(i->id, sizeof i->id, "%s", id);
    return i;
}

void saga_inst_free(inst *i) {
    if (!i) return;
    buf_free(&i->ctx);
    buf_free(&i->trace);
    for (int k = 0; k < MAX_STEPS; k++)
        buf_free(&i->sent[k]);
    free(i);
}

int saga_shown_step(const saga_def *d, const inst *i) {
    if (i->c.status == S_COMPENSATING) return i->c.step;
    for (int k = 0; k < d->nsteps; k++)
        if (i->c.waiting & (1u << k)) return k;
    return i->c.status == S_COMPLETED ? -1 : MIN(d->stage_first[MIN(i->c.stage, d->nstages - 1)], d->nsteps - 1);
}

/* ---- records ---- */

/* Emits a state record {"input": P, MEMBERS} of kind for step k (-1: none); members is JSON
   members text (or NULL). Decide's copy of the core moves with it. */
static saga_out_rec *emit(const saga_def *d, saga_out *o, int kind, int k, const factum_event_t *e, const char *members,
                          size_t len) {
    ENSURE(o->nrecs < MAX_RECS);
    saga_out_rec *w = &o->recs[o->nrecs];
    snprintf(w->id, sizeof w->id, "in-%llu-%d", (unsigned long long)e->position, o->nrecs);
    w->data.len = 0;
    buf_printf(&w->data, "{\"input\":%llu", (unsigned long long)e->position);
    if (members && len) buf_append(&w->data, ",", 1), buf_append(&w->data, members, len);
    buf_append(&w->data, "}", 1);
    /* Its trace context: a child of the decision's, its span id derived from the saga's name and
       the record's id (unique in the saga: an input concerns one instance), so a replay writes
       the same bytes. */
    char seed[SAGA_MAX_NAME + sizeof w->id + 2];
    trace_ctx t;
    snprintf(seed, sizeof seed, "%s/%s", d->name, w->id);
    trace_child(&o->trace, str_c(seed), &t);
    w->ext.len = 0;
    trace_members(&t, &w->ext);
    w->r = (saga_rec){
        .kind = kind, .step = k, .input = e->position, .time_us = e->time_us, .ext = {w->ext.ptr, w->ext.len}};
    o->nrecs++;
    core_apply(d, &o->c, &w->r);
    return w;
}

static void emitf(const saga_def *d, saga_out *o, int kind, int k, const factum_event_t *e, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
static void emitf(const saga_def *d, saga_out *o, int kind, int k, const factum_event_t *e, const char *fmt, ...) {
    char tmp[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    emit(d, o, kind, k, e, tmp, (size_t)MIN(n, (int)sizeof tmp - 1));
}

/* The slice of a record's data that is its last member's value (it ends the data: "...":V}). */
static factum_str_t last_value(const saga_out_rec *w, size_t len) {
    return (factum_str_t){w->data.ptr + w->data.len - 1 - len, len};
}

/* A StepFailed or CompensationFailed record of step k, with the reason (any text). */
static void emit_failed(const saga_def *d, saga_out *o, int kind, int k, const factum_event_t *e, const char *reason) {
    buf_t m = {0};
    buf_printf(&m, "\"step\":\"%s\",\"reason\":", d->steps[k].name);
    json_escape(&m, reason, strlen(reason));
    emit(d, o, kind, k, e, m.ptr, m.len);
    buf_free(&m);
}

/* The event a record would be in the store, for its checks. */
static factum_event_t record_event(const saga_out_rec *w) {
    return (factum_event_t){.type = str_c(saga_record_types[w->r.kind]),
                            .id = str_c(w->id),
                            .data = {w->data.ptr, w->data.len},
                            .data_format = FACTUM_DATA_JSON,
                            .extensions = w->r.ext};
}

/* Emits a record as emit() does if the store takes it as it is; if not, nothing (the core as it
   was), and why into err. */
static saga_out_rec *emit_fits(const saga_def *d, const saga_facts *f, saga_out *o, int kind, int k,
                               const factum_event_t *e, const buf_t *m, factum_error_t *err) {
    saga_core was = o->c;
    saga_out_rec *w = emit(d, o, kind, k, e, m->ptr, m->len);
    factum_event_t ev = record_event(w);
    if (!factum_events_check(f->db, &ev, 1, err)) return w;
    o->nrecs--, o->c = was;
    return NULL;
}

/* ---- commands ---- */

/* Whether command cmd ({"stream","type","data"}, rendered) can be appended as ev; why not into
   err. Beyond what the store checks (its id, type, data, stream name): not into a system stream,
   nor one deleted for ever, nor one the saga would read back as its own start or reply. Its
   stream into stream. */
static bool sendable(const saga_def *d, const saga_facts *f, factum_str_t cmd, factum_event_t *ev, buf_t *stream,
                     buf_t *type, factum_error_t *err) {
    factum_str_t data = {0};
    int kind;
    bool ok = json_member_string(cmd, "stream", stream) && json_member_string(cmd, "type", type);
    if (!ok) err_set(err, FACTUM_EINVAL, "its stream and type must be strings");
    json_member(cmd, "data", &data, &kind);
    factum_str_t st = {stream->ptr, stream->len};
    ev->type = (factum_str_t){type->ptr, type->len}, ev->data = data,
    ev->data_format = data.len ? FACTUM_DATA_JSON : FACTUM_DATA_NONE;
    ok = ok && !factum_stream_name_check(st, err) && !factum_events_check(f->db, ev, 1, err);
    int why = ok ? saga_command_kind(d, st, ev->type, true) : SEND_OK;
    if (why) ok = false, err_set(err, FACTUM_EINVAL, "%s", saga_unsendable[why]);
    for (int k = 0; ok && k < f->ndeleted; k++)
        if (str_eq(st, str_c(f->deleted[k])))
            ok = false, err_set(err, FACTUM_EDELETED, "its stream %s is deleted for ever", stream->ptr);
    return ok;
}

/* Sends command c of step k (the step's, or its compensation): a StepStarted (or
   CompensationStarted) record that carries it. false, with the step failed on the record, if the
   command as rendered cannot be sent (a bad stream name, an id past 255 bytes, a record of it past
   the data limit, ...): the same input always renders the same command, so this is decided, not
   retried. */
static bool send(const saga_def *d, const saga_facts *f, const char *inst_id, int k, bool comp, const factum_event_t *e,
                 saga_out *o) {
    const command *c = comp ? &d->steps[k].comp : &d->steps[k].cmd;
    const char *name = d->steps[k].name;
    buf_t cmd = {0}, id = {0}, sent = {0}, m = {0}, stream = {0}, type = {0};
    saga_render((factum_str_t){c->tmpl.ptr, c->tmpl.len}, JSON_OBJECT, o->ctx, &cmd);
    buf_printf(&id, "saga-%s-%s-%s-%s", d->name, inst_id, name, comp ? "compensate" : "do");
    int64_t deadline_us = c->timeout_ms ? e->time_us + (int64_t)c->timeout_ms * 1000 : 0;
    /* The command's trace context: a child of the decision's, its span id derived from its id. */
    trace_ctx t;
    buf_t trace = {0};
    trace_child(&o->trace, (factum_str_t){id.ptr, id.len}, &t);
    trace_members(&t, &trace);
    factum_event_t ev = {.id = {id.ptr, id.len},
                         .correlationid = str_c(inst_id),
                         .causationid = e->id,
                         .extensions = {trace.ptr, trace.len}};
    factum_error_t why;
    bool ok = sendable(d, f, (factum_str_t){cmd.ptr, cmd.len}, &ev, &stream, &type, &why);
    saga_out_rec *w = NULL;
    if (ok) {
        buf_append(&sent, "{\"id\":", 6);
        json_escape(&sent, id.ptr, id.len);
        buf_append(&sent, ",\"cause\":", 9);
        json_escape(&sent, e->id.ptr, e->id.len);
        if (trace.len) buf_append(&sent, ",", 1), buf_append(&sent, trace.ptr, trace.len);
        buf_printf(&sent, ",\"command\":%.*s}", (int)cmd.len, cmd.ptr);
        buf_printf(&m, "\"step\":\"%s\",\"deadline_us\":%lld,\"sent\":", name, (long long)deadline_us);
        buf_append(&m, sent.ptr, sent.len);
        ok = (w = emit_fits(d, f, o, comp ? R_COMP_STARTED : R_STEP_STARTED, k, e, &m, &why)) != NULL;
    }
    if (ok) {
        w->r.deadline_us = deadline_us, w->r.sent = last_value(w, sent.len);
        w->stream.len = 0;
        buf_append(&w->stream, stream.ptr, stream.len);
    } else {
        char r[400];
        snprintf(r, sizeof r, "the command cannot be sent: %s", why.message);
        emit_failed(d, o, comp ? R_COMP_FAILED : R_STEP_FAILED, k, e, r);
    }
    buf_free(&cmd), buf_free(&id), buf_free(&sent), buf_free(&m), buf_free(&stream), buf_free(&type);
    buf_free(&trace);
    return ok;
}

/* ---- decide ---- */

static void compensate_from(const saga_def *d, const saga_facts *f, const char *id, int from, const factum_event_t *e,
                            saga_out *o);

/* Sends the commands of stage g, all at once. */
static void start_stage(const saga_def *d, const saga_facts *f, const char *id, int g, const factum_event_t *e,
                        saga_out *o) {
    for (int k = d->stage_first[g]; k < d->stage_first[g] + d->stage_n[g]; k++)
        send(d, f, id, k, false, e, o);
    if (!o->c.waiting) compensate_from(d, f, id, d->nsteps - 1, e, o); /* every command of the stage failed to go */
}

/* Compensates the steps that succeeded, from step `from` down; ends the instance when none is left. */
static void compensate_from(const saga_def *d, const saga_facts *f, const char *id, int from, const factum_event_t *e,
                            saga_out *o) {
    for (int k = from; k >= 0; k--) {
        if (!(o->c.done & (1u << k)) || !d->steps[k].comp.present) continue;
        if (!send(d, f, id, k, true, e, o)) {
            emit(d, o, R_COMPENSATION_ENDED, -1, e, NULL, 0);
            return;
        }
        if (d->steps[k].comp.nsuccess) return; /* wait for its confirmation */
        emitf(d, o, R_COMP_SUCCEEDED, k, e, "\"step\":\"%s\",\"unconfirmed\":true", d->steps[k].name);
    }
    emit(d, o, R_FAILED, -1, e, NULL, 0);
}

/* A reply to step k of instance i (timeout: step k timed out). */
static void on_reply(const saga_def *d, const saga_facts *f, const inst *i, int k, const factum_event_t *e,
                     bool timeout, saga_out *o) {
    const step *st = &d->steps[k];
    char why[400];
    if (timeout)
        snprintf(why, sizeof why, "timed out");
    else
        snprintf(why, sizeof why, "reply %.*s", (int)MIN(e->type.len, 255), e->type.ptr);
    if (o->c.status != S_RUNNING) { /* compensating step k */
        if (!timeout && saga_listed(st->comp.success, st->comp.nsuccess, e->type)) {
            emitf(d, o, R_COMP_SUCCEEDED, k, e, "\"step\":\"%s\"", st->name);
            compensate_from(d, f, i->id, k - 1, e, o);
        } else {
            emit_failed(d, o, R_COMP_FAILED, k, e, why);
            emit(d, o, R_COMPENSATION_ENDED, -1, e, NULL, 0);
        }
        return;
    }
    bool ok = !timeout && saga_listed(st->cmd.success, st->cmd.nsuccess, e->type);
    if (ok) {
        /* The reply's data joins the context as steps.NAME, if the record of it can be written. */
        buf_t nc = {0}, m = {0};
        factum_str_t data = e->data_format == FACTUM_DATA_JSON && e->data.len ? e->data : str_c("null");
        buf_append(&nc, o->ctx.ptr, o->ctx.len - 2); /* drop "}}" of steps and the whole */
        buf_printf(&nc, "%s\"%s\":%.*s}}", o->ctx.ptr[o->ctx.len - 3] == '{' ? "" : ",", st->name, (int)data.len,
                   data.ptr);
        buf_printf(&m, "\"step\":\"%s\",\"reply\":", st->name);
        json_escape(&m, e->type.ptr, e->type.len);
        buf_append(&m, ",\"context\":", 11);
        buf_append(&m, nc.ptr, nc.len);
        factum_error_t err;
        saga_out_rec *w = emit_fits(d, f, o, R_STEP_SUCCEEDED, k, e, &m, &err);
        if (w)
            o->ctx = w->r.context = last_value(w, nc.len);
        else
            snprintf(why, sizeof why, "reply %.*s: its data cannot join the context: %s", (int)MIN(e->type.len, 255),
                     e->type.ptr, err.message);
        ok = w != NULL;
        buf_free(&nc), buf_free(&m);
    }
    if (!ok) emit_failed(d, o, R_STEP_FAILED, k, e, why);
    if (o->c.waiting) return; /* the rest of the stage still answers */
    if (o->c.stage_failed)
        compensate_from(d, f, i->id, d->nsteps - 1, e, o);
    else if (o->c.stage + 1 < d->nstages)
        start_stage(d, f, i->id, o->c.stage + 1, e, o);
    else
        emit(d, o, R_COMPLETED, -1, e, NULL, 0);
}

/* Which step a reply of type answers, or -1 when the instance waits for no such reply. */
static int awaited(const saga_def *d, const inst *i, factum_str_t type) {
    if (i->c.status == S_RUNNING) {
        for (int k = 0; k < d->nsteps; k++) {
            const step *st = &d->steps[k];
            if ((i->c.waiting & (1u << k)) && (saga_listed(st->cmd.success, st->cmd.nsuccess, type) ||
                                               saga_listed(st->cmd.failure, st->cmd.nfailure, type)))
                return k;
        }
        return -1;
    }
    const step *st = &d->steps[i->c.step];
    if (i->c.status == S_COMPENSATING && (saga_listed(st->comp.success, st->comp.nsuccess, type) ||
                                          saga_listed(st->comp.failure, st->comp.nfailure, type)))
        return i->c.step;
    return -1;
}

static void out_reset(saga_out *o, const inst *i, const factum_event_t *e) {
    o->nrecs = 0, o->park[0] = 0;
    if (!trace_get(e->extensions, &o->trace) && i) trace_get((factum_str_t){i->trace.ptr, i->trace.len}, &o->trace);
    o->c = i ? i->c : (saga_core){0};
    o->ctx = i ? (factum_str_t){i->ctx.ptr, i->ctx.len} : (factum_str_t){0};
}

bool saga_instance_id(const saga_def *d, const factum_event_t *e, char id[256]) {
    factum_str_t doc = e->data_format == FACTUM_DATA_JSON && e->data.len ? e->data : str_c("null");
    buf_t ev = {0}, sn = {0};
    /* The start event as a document for instance_id: {"data":..,"stream":..,"id":..} */
    buf_printf(&ev, "{\"data\":%.*s,\"stream\":", (int)doc.len, doc.ptr);
    json_escape(&ev, e->stream.ptr, e->stream.len);
    buf_append(&ev, ",\"id\":", 6);
    json_escape(&ev, e->id.ptr, e->id.len);
    buf_append(&ev, "}", 1);
    factum_str_t v;
    int kind;
    *id = 0;
    if (saga_path_get((factum_str_t){ev.ptr, ev.len}, d->instance_id, strlen(d->instance_id), &v, &kind)) {
        if (kind == JSON_STRING && v.len - 2 < 256 && !memchr(v.ptr + 1, '\\', v.len - 2))
            snprintf(id, 256, "%.*s", (int)v.len - 2, v.ptr + 1);
        else if (kind == JSON_NUMBER && v.len < 256)
            snprintf(id, 256, "%.*s", (int)v.len, v.ptr);
    }
    buf_printf(&sn, "$saga-%s-%s", d->name, id);
    factum_error_t err;
    bool ok = *id && !factum_stream_name_check((factum_str_t){sn.ptr, sn.len}, &err);
    buf_free(&ev), buf_free(&sn);
    return ok;
}

void saga_decide_start(const saga_def *d, const saga_facts *f, const char *id, const factum_event_t *e, saga_out *o) {
    out_reset(o, NULL, e);
    factum_str_t doc = e->data_format == FACTUM_DATA_JSON && e->data.len ? e->data : str_c("null");
    buf_t ctx = {0}, m = {0};
    buf_append(&ctx, "{\"id\":", 6);
    json_escape(&ctx, id, strlen(id));
    buf_printf(&ctx, ",\"data\":%.*s,\"steps\":{}}", (int)doc.len, doc.ptr);
    buf_append(&m, "\"context\":", 10);
    buf_append(&m, ctx.ptr, ctx.len);
    factum_error_t why;
    saga_out_rec *w = emit_fits(d, f, o, R_STARTED, -1, e, &m, &why);
    if (w) {
        o->ctx = w->r.context = last_value(w, ctx.len);
        start_stage(d, f, id, 0, e, o);
    } else {
        snprintf(o->park, sizeof o->park, "the instance's state cannot hold the start event: %s", why.message);
    }
    buf_free(&ctx), buf_free(&m);
}

void saga_decide(const saga_def *d, const saga_facts *f, const inst *i, const factum_event_t *e, saga_out *o) {
    out_reset(o, i, e);
    if (e->position <= i->c.last_input) return; /* done before a restart */
    bool timeout = e->stream.len && e->stream.ptr[0] == '$';
    int k;
    if (timeout) {
        factum_str_t v;
        int kind;
        bool comp = json_member(e->data, "phase", &v, &kind) && str_eq(v, str_c("\"compensation\""));
        k = step_index(d, e->data);
        if (k < 0 || (comp ? i->c.status != S_COMPENSATING || i->c.step != k
                           : i->c.status != S_RUNNING || !(i->c.waiting & (1u << k))))
            return; /* it was answered in time */
    } else if ((k = awaited(d, i, e->type)) < 0) {
        snprintf(o->park, sizeof o->park, "a reply the instance is not waiting for (a duplicate, or late)");
        return;
    }
    on_reply(d, f, i, k, e, timeout, o);
}

void saga_out_free(saga_out *o) {
    for (int k = 0; k < MAX_RECS; k++)
        buf_free(&o->recs[k].data), buf_free(&o->recs[k].stream), buf_free(&o->recs[k].ext);
}
