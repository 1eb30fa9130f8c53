/*
 * test_saga_model.c — property test of the saga state machine (src/saga/machine.h), with no
 * server and no runner: random definitions (stages of one to three parallel steps, compensations
 * confirmed or not, timeouts, commands into streams deleted for ever) and random inputs (starts,
 * success and failure replies, replies nobody waits for, timeouts on a fake clock, inputs done
 * again, restarts) are decided and applied, and checked against a trivially simple model of
 * docs/sagas.md ("States", "Parking"): which commands go out, in which order, what is parked, when
 * a step is due, and where the instance ends. After every input the instance rebuilt from the
 * records written so far (saga_record_parse, then saga_apply) must equal the live one.
 */
#include "test.h"

#include "../src/base/json.h"
#include "../src/saga/machine.h"

#include <string.h>

#define NSLOTS 5
#define MAXSTEPS 8
#define MAXRECS 400

/* ---- a random definition ---- */

typedef struct {
    int nsteps, nstages, stage_of[MAXSTEPS];
    bool gone[MAXSTEPS];      /* the command goes to a stream deleted for ever */
    bool has_comp[MAXSTEPS];  /* a compensation */
    bool comp_gone[MAXSTEPS]; /* into a stream deleted for ever */
    bool confirmed[MAXSTEPS]; /* that waits for its confirmation */
    uint64_t timeout_ms[MAXSTEPS], comp_timeout_ms[MAXSTEPS];
} mdef;

static void step_json(buf_t *b, const mdef *m, int k) {
    buf_printf(b,
               "{\"name\":\"s%d\",\"command\":{\"stream\":\"%s%d-commands\",\"type\":\"Do%d\","
               "\"data\":{\"id\":\"{{id}}\",\"n\":\"{{data.n}}\"}},\"success\":[\"Ok%d\"],\"failure\":[\"No%d\"]",
               k, m->gone[k] ? "gone" : "svc", k, k, k, k);
    if (m->timeout_ms[k]) buf_printf(b, ",\"timeout_ms\":%llu", (unsigned long long)m->timeout_ms[k]);
    if (m->has_comp[k]) {
        buf_printf(b,
                   ",\"compensation\":{\"stream\":\"%s%d-commands\",\"type\":\"Undo%d\",\"data\":{\"id\":\"{{id}}\"}",
                   m->comp_gone[k] ? "gone" : "svc", k, k);
        if (m->confirmed[k]) {
            buf_printf(b, ",\"success\":[\"Undone%d\"],\"failure\":[\"NotUndone%d\"]", k, k);
            if (m->comp_timeout_ms[k]) buf_printf(b, ",\"timeout_ms\":%llu", (unsigned long long)m->comp_timeout_ms[k]);
        }
        buf_append(b, "}", 1);
    }
    buf_append(b, "}", 1);
}

static saga_def *random_def(mdef *m) {
    memset(m, 0, sizeof *m);
    m->nstages = 1 + (int)(test_rand() % 4);
    buf_t b = {0};
    buf_append(&b, "{\"start_on\":\"Placed\",\"instance_id\":\"data.id\",\"steps\":[", 54);
    for (int g = 0; g < m->nstages; g++) {
        int n = test_rand() % 3 == 0 ? 2 + (int)(test_rand() % 2) : 1;
        n = MIN(n, MAXSTEPS - m->nsteps - (m->nstages - g - 1));
        if (g) buf_append(&b, ",", 1);
        if (n > 1) buf_append(&b, "{\"parallel\":[", 13);
        for (int p = 0; p < n; p++) {
            int k = m->nsteps++;
            m->stage_of[k] = g;
            m->gone[k] = test_rand() % 12 == 0;
            m->has_comp[k] = test_rand() % 3 != 0;
            m->comp_gone[k] = test_rand() % 10 == 0;
            m->confirmed[k] = test_rand() % 2;
            m->timeout_ms[k] = test_rand() % 2 ? 100 * (1 + test_rand() % 10) : 0;
            m->comp_timeout_ms[k] = test_rand() % 2 ? 100 * (1 + test_rand() % 10) : 0;
            if (p) buf_append(&b, ",", 1);
            step_json(&b, m, k);
        }
        if (n > 1) buf_append(&b, "]}", 2);
    }
    buf_append(&b, "]}", 2);
    saga_def *d;
    factum_error_t err;
    CHECK_MSG(!saga_def_parse("model", (factum_str_t){b.ptr, b.len}, &d, &err), "%s: %s", b.ptr, err.message);
    CHECK_MSG(!saga_def_check(d, &err), "%s: %s", b.ptr, err.message);
    CHECK_EQ(d->nsteps, m->nsteps);
    buf_free(&b);
    return d;
}

/* ---- the model: docs/sagas.md, one step at a time ---- */

enum { M_IDLE, M_WAIT, M_OK, M_FAIL, M_COMP_WAIT, M_COMPED, M_COMP_FAILED };

typedef struct {
    int status; /* S_* */
    int stage;
    int st[MAXSTEPS];
    int64_t due[MAXSTEPS]; /* when a waiting step (or compensation) times out; 0 none */
    char sent[64][48];     /* the commands the last input sent, in order */
    int nsent;
} model;

static void m_send(model *mo, const mdef *m, int k, bool comp, int64_t now) {
    snprintf(mo->sent[mo->nsent++], 48, "s%d-%s", k, comp ? "compensate" : "do");
    uint64_t t = comp ? (m->confirmed[k] ? m->comp_timeout_ms[k] : 0) : m->timeout_ms[k];
    mo->due[k] = t ? now + (int64_t)t * 1000 : 0;
}

/* The steps that succeeded are compensated from `from` down, in reverse order of definition. */
static void m_compensate(model *mo, const mdef *m, int from, int64_t now) {
    for (int k = from; k >= 0; k--) {
        if (mo->st[k] != M_OK || !m->has_comp[k]) continue;
        if (m->comp_gone[k]) {
            mo->st[k] = M_COMP_FAILED, mo->status = S_COMP_FAILED;
            return;
        }
        m_send(mo, m, k, true, now);
        mo->status = S_COMPENSATING;
        if (m->confirmed[k]) {
            mo->st[k] = M_COMP_WAIT;
            return;
        }
        mo->st[k] = M_COMPED, mo->due[k] = 0;
    }
    mo->status = S_FAILED;
}

/* Stage g's commands go out at once; one that cannot be sent fails its step there and then. */
static void m_stage(model *mo, const mdef *m, int g, int64_t now) {
    mo->stage = g, mo->status = S_RUNNING;
    bool any = false;
    for (int k = 0; k < m->nsteps; k++)
        if (m->stage_of[k] == g) {
            if (m->gone[k]) {
                mo->st[k] = M_FAIL;
            } else {
                mo->st[k] = M_WAIT, any = true;
                m_send(mo, m, k, false, now);
            }
        }
    if (!any) m_compensate(mo, m, m->nsteps - 1, now);
}

/* Step k of the stage answered: once all have, the next stage, the end, or the compensations. */
static void m_answered(model *mo, const mdef *m, int k, bool ok, int64_t now) {
    mo->st[k] = ok ? M_OK : M_FAIL, mo->due[k] = 0;
    bool failed = false;
    for (int q = 0; q < m->nsteps; q++) {
        if (m->stage_of[q] != mo->stage) continue;
        if (mo->st[q] == M_WAIT) return;
        failed |= mo->st[q] == M_FAIL;
    }
    if (failed)
        m_compensate(mo, m, m->nsteps - 1, now);
    else if (mo->stage + 1 < m->nstages)
        m_stage(mo, m, mo->stage + 1, now);
    else
        mo->status = S_COMPLETED;
}

/* A compensation answered. */
static void m_comp_answered(model *mo, const mdef *m, int k, bool ok, int64_t now) {
    mo->due[k] = 0;
    if (!ok) {
        mo->st[k] = M_COMP_FAILED, mo->status = S_COMP_FAILED;
        return;
    }
    mo->st[k] = M_COMPED;
    m_compensate(mo, m, k - 1, now);
}

/* ---- the machine, fed ---- */

typedef struct {
    char type[32];
    buf_t data;
    int64_t time_us;
} stored;

typedef struct {
    bool used;
    char id[32];
    inst *i;
    model mo;
    stored recs[MAXRECS];
    int nrecs;
    int restart_recs;    /* the records there were at the last restart, */
    int64_t restart_at;  /* applied again then, at this time */
    bool last_applied;   /* the last input wrote records */
    factum_event_t last; /* the last input applied, to do again */
    char last_type[32], last_stream[64], last_data[128], last_eid[32];
} slot;

static saga_def *d_;
static mdef m_;
static factum_t *db_;
static saga_out out_;
static slot slots[NSLOTS];
static uint64_t pos_;
static int64_t now_ = 1700000000000000;
static const char *gone_[2 * MAXSTEPS];
static int ngone_;
static char gone_names_[2 * MAXSTEPS][32];
static int ninstances_, nended_[5], nparked_, ntimeouts_, nrestarts_;

static saga_facts facts(void) { return (saga_facts){.db = db_, .deleted = gone_, .ndeleted = ngone_}; }

static void slot_clear(slot *sl) {
    saga_inst_free(sl->i);
    for (int k = 0; k < sl->nrecs; k++)
        buf_free(&sl->recs[k].data);
    memset(sl, 0, sizeof *sl);
}

/* Rebuilds an instance from the records written so far, as a start-up does; each record applied
   at `clock` (NULL: when the live instance applied it: at the last restart, or when written). */
static inst *replay(const slot *sl, const saga_clock *clock) {
    inst *r = saga_inst_new(sl->id);
    for (int k = 0; k < sl->nrecs; k++) {
        factum_event_t e = {.type = str_c(sl->recs[k].type),
                            .data = {sl->recs[k].data.ptr, sl->recs[k].data.len},
                            .time_us = sl->recs[k].time_us};
        saga_rec rec;
        CHECK(saga_record_parse(d_, &e, &rec));
        int64_t t = k < sl->restart_recs ? sl->restart_at : e.time_us;
        saga_clock at = clock ? *clock : (saga_clock){t, t};
        saga_apply(d_, r, &rec, &at);
    }
    return r;
}

static void same_instance(const inst *a, const inst *b) {
    CHECK_EQ(a->c.status, b->c.status);
    CHECK_EQ(a->c.stage, b->c.stage);
    CHECK_EQ(a->c.waiting, b->c.waiting);
    CHECK_EQ(a->c.done, b->c.done);
    CHECK_EQ(a->c.stage_failed, b->c.stage_failed);
    CHECK_EQ(a->c.started_at, b->c.started_at);
    CHECK_EQ(a->c.last_input, b->c.last_input);
    if (a->c.status == S_COMPENSATING) CHECK_EQ(a->c.step, b->c.step);
    CHECK_EQ(a->started_us, b->started_us);
    CHECK_EQ(a->ended_us, b->ended_us);
    CHECK(a->ctx.len == b->ctx.len && (!a->ctx.len || !memcmp(a->ctx.ptr, b->ctx.ptr, a->ctx.len)));
    for (int k = 0; k < MAX_STEPS; k++) {
        CHECK_EQ(a->due_us[k], b->due_us[k]);
        CHECK(a->sent[k].len == b->sent[k].len &&
              (!a->sent[k].len || !memcmp(a->sent[k].ptr, b->sent[k].ptr, a->sent[k].len)));
    }
}

/* The machine's answer to one input against the model's (already moved by the caller). */
static void check_against_model(slot *sl, bool parked_expected) {
    CHECK_MSG((out_.park[0] != 0) == parked_expected, "parked: %s (expected %d)", out_.park, parked_expected);
    int n = 0;
    for (int k = 0; k < out_.nrecs; k++) {
        if (!out_.recs[k].r.sent.len) continue;
        buf_t id = {0};
        char want[128];
        CHECK(json_member_string(out_.recs[k].r.sent, "id", &id));
        CHECK_MSG(n < sl->mo.nsent, "an extra command %s", id.ptr);
        snprintf(want, sizeof want, "saga-model-%s-%s", sl->id, sl->mo.sent[n]);
        CHECK_MSG(!strcmp(id.ptr, want), "command %d is %s, the model sends %s", n, id.ptr, want);
        buf_free(&id);
        n++;
    }
    CHECK_EQ(n, sl->mo.nsent);
}

/* Writes what was decided (kept as the store would keep it) and applies it, as the runner does. */
static void record_and_apply(slot *sl) {
    saga_clock now = {now_, now_};
    sl->last_applied = out_.nrecs > 0;
    for (int k = 0; k < out_.nrecs; k++) {
        CHECK(sl->nrecs < MAXRECS);
        stored *s = &sl->recs[sl->nrecs++];
        snprintf(s->type, sizeof s->type, "%s", saga_record_types[out_.recs[k].r.kind]);
        buf_append(&s->data, out_.recs[k].data.ptr, out_.recs[k].data.len);
        s->time_us = out_.recs[k].r.time_us;
        saga_apply(d_, sl->i, &out_.recs[k].r, &now);
    }
}

/* After every input: the live state is the model's, and the records rebuild it exactly. */
static void check_state(slot *sl) {
    const model *mo = &sl->mo;
    CHECK_EQ(sl->i->c.status, mo->status);
    for (int k = 0; k < m_.nsteps; k++) {
        bool waiting = mo->st[k] == M_WAIT && mo->status == S_RUNNING;
        CHECK_EQ(!!(sl->i->c.waiting & (1u << k)), waiting);
        bool outstanding = waiting || (mo->st[k] == M_COMP_WAIT && mo->status == S_COMPENSATING);
        if (outstanding) CHECK_EQ(sl->i->due_us[k], mo->due[k]);
        if (!outstanding) CHECK_EQ(sl->i->sent[k].len, 0);
        if (mo->status == S_RUNNING || mo->status == S_COMPENSATING)
            CHECK_EQ(!!(sl->i->c.done & (1u << k)), mo->st[k] == M_OK || mo->st[k] == M_COMP_WAIT ||
                                                        mo->st[k] == M_COMPED || mo->st[k] == M_COMP_FAILED);
    }
    inst *r = replay(sl, NULL);
    same_instance(sl->i, r);
    saga_inst_free(r);
}

static factum_event_t input_event(slot *sl, const char *stream, const char *type, const char *data) {
    snprintf(sl->last_stream, sizeof sl->last_stream, "%s", stream);
    snprintf(sl->last_type, sizeof sl->last_type, "%s", type);
    snprintf(sl->last_data, sizeof sl->last_data, "%s", data);
    snprintf(sl->last_eid, sizeof sl->last_eid, "in%llu", (unsigned long long)(pos_ + 1));
    sl->last = (factum_event_t){.stream = str_c(sl->last_stream),
                                .type = str_c(sl->last_type),
                                .id = str_c(sl->last_eid),
                                .data = str_c(sl->last_data),
                                .data_format = FACTUM_DATA_JSON,
                                .correlationid = str_c(sl->id),
                                .position = ++pos_,
                                .time_us = now_};
    return sl->last;
}

static void do_start(slot *sl) {
    slot_clear(sl);
    sl->used = true;
    snprintf(sl->id, sizeof sl->id, "i%llu", (unsigned long long)(pos_ + 1));
    char data[64];
    snprintf(data, sizeof data, "{\"id\":\"%s\",\"n\":%llu}", sl->id, (unsigned long long)(test_rand() % 100));
    factum_event_t e = input_event(sl, "order-1", "Placed", data);
    char id[256];
    CHECK(saga_instance_id(d_, &e, id) && !strcmp(id, sl->id));
    saga_facts f = facts();
    saga_decide_start(d_, &f, id, &e, &out_);
    sl->mo = (model){0};
    m_stage(&sl->mo, &m_, 0, now_);
    check_against_model(sl, false);
    sl->i = saga_inst_new(id);
    record_and_apply(sl);
    ninstances_++;
}

/* A reply of a random type of the saga (often one the instance waits for, sometimes not). */
static void do_reply(slot *sl) {
    model *mo = &sl->mo;
    int k = (int)(test_rand() % (uint64_t)m_.nsteps);
    if (test_rand() % 4) /* mostly a step that waits */
        for (int q = 0; q < m_.nsteps; q++)
            if (mo->st[q] == M_WAIT || mo->st[q] == M_COMP_WAIT) k = q;
    int kind = (int)(test_rand() % 4); /* 0 Ok, 1 No, 2 Undone, 3 NotUndone */
    if (mo->st[k] == M_COMP_WAIT && test_rand() % 3) kind = 2 + (int)(test_rand() % 2);
    if (kind >= 2 && !(m_.has_comp[k] && m_.confirmed[k])) kind -= 2; /* not a reply type of the saga */
    static const char *const names[] = {"Ok", "No", "Undone", "NotUndone"};
    char type[32], data[64];
    snprintf(type, sizeof type, "%s%d", names[kind], k);
    snprintf(data, sizeof data, "{\"ref\":%llu}", (unsigned long long)test_rand() % 1000);
    factum_event_t e = input_event(sl, "svc-events", type, data);
    mo->nsent = 0;
    bool parked = false;
    if (kind < 2 && mo->status == S_RUNNING && mo->st[k] == M_WAIT)
        m_answered(mo, &m_, k, kind == 0, now_);
    else if (kind >= 2 && mo->status == S_COMPENSATING && mo->st[k] == M_COMP_WAIT)
        m_comp_answered(mo, &m_, k, kind == 2, now_);
    else
        parked = true, nparked_++;
    saga_facts f = facts();
    saga_decide(d_, &f, sl->i, &e, &out_);
    check_against_model(sl, parked);
    record_and_apply(sl);
}

/* The clock moves on; every step the machine finds due gets its timeout marker, which must be
   exactly the steps the model finds due. */
static void do_tick(void) {
    now_ += (int64_t)(test_rand() % 700) * 1000;
    for (int s = 0; s < NSLOTS; s++) {
        slot *sl = &slots[s];
        if (!sl->used || sl->mo.status >= S_COMPLETED) continue;
        for (int k = 0; k < m_.nsteps; k++) {
            bool machine_due = sl->i->due_us[k] > 0 && sl->i->due_us[k] <= now_;
            bool model_due =
                sl->mo.due[k] && sl->mo.due[k] <= now_ && (sl->mo.st[k] == M_WAIT || sl->mo.st[k] == M_COMP_WAIT);
            CHECK_MSG(machine_due == model_due, "step %d due: machine %d, model %d", k, machine_due, model_due);
            if (!machine_due) continue;
            bool comp = sl->i->c.status == S_COMPENSATING;
            char data[128], stream[64];
            snprintf(data, sizeof data, "{\"saga\":\"model\",\"step\":\"s%d\",\"phase\":\"%s\"}", k,
                     comp ? "compensation" : "step");
            snprintf(stream, sizeof stream, "$saga-model-%s", sl->id);
            factum_event_t e = input_event(sl, stream, "SagaTimeout", data);
            sl->mo.nsent = 0;
            if (comp)
                m_comp_answered(&sl->mo, &m_, k, false, now_);
            else
                m_answered(&sl->mo, &m_, k, false, now_);
            saga_facts f = facts();
            saga_decide(d_, &f, sl->i, &e, &out_);
            check_against_model(sl, false);
            record_and_apply(sl);
            check_state(sl);
            ntimeouts_++;
            if (sl->mo.status >= S_COMPLETED) break;
        }
    }
}

/* The last input again, as after a restart from an older checkpoint: nothing at all. A timeout
   marker for a step answered in time: nothing either. */
static void do_again(slot *sl) {
    if (!sl->last_applied) return;
    saga_facts f = facts();
    saga_decide(d_, &f, sl->i, &sl->last, &out_);
    CHECK_EQ(out_.nrecs, 0);
    CHECK(!out_.park[0]);
    for (int k = 0; k < m_.nsteps; k++) {
        if (sl->i->c.waiting & (1u << k)) continue;
        char data[128], stream[64];
        snprintf(data, sizeof data, "{\"saga\":\"model\",\"step\":\"s%d\",\"phase\":\"step\"}", k);
        snprintf(stream, sizeof stream, "$saga-model-%s", sl->id);
        factum_event_t e = {.stream = str_c(stream),
                            .type = str_c("SagaTimeout"),
                            .data = str_c(data),
                            .data_format = FACTUM_DATA_JSON,
                            .position = pos_ + 1,
                            .time_us = now_};
        saga_decide(d_, &f, sl->i, &e, &out_);
        CHECK_EQ(out_.nrecs, 0);
        CHECK(!out_.park[0]);
    }
}

/* A restart: the instance is whatever its records rebuild, its deadlines from the clock now. */
static void do_restart(slot *sl) {
    saga_clock at = {now_, now_};
    inst *r = replay(sl, &at);
    for (int k = 0; k < MAXSTEPS; k++)
        if (sl->mo.due[k]) sl->mo.due[k] = MAX(sl->mo.due[k], now_);
    saga_inst_free(sl->i);
    sl->i = r;
    sl->restart_recs = sl->nrecs, sl->restart_at = now_;
    nrestarts_++;
}

static void run_one_definition(int inputs) {
    d_ = random_def(&m_);
    ngone_ = 0;
    for (int k = 0; k < m_.nsteps; k++) { /* every gone-K-commands stream is deleted for ever */
        snprintf(gone_names_[ngone_], 32, "gone%d-commands", k);
        gone_[ngone_] = gone_names_[ngone_], ngone_++;
    }
    for (int n = 0; n < inputs; n++) {
        slot *sl = &slots[test_rand() % NSLOTS];
        int what = (int)(test_rand() % 20);
        if (!sl->used || sl->mo.status >= S_COMPLETED) {
            if (sl->used) nended_[sl->mo.status]++;
            do_start(sl);
        } else if (what < 12) {
            do_reply(sl);
        } else if (what < 16) {
            do_tick();
            continue;
        } else if (what < 18) {
            do_again(sl);
        } else {
            do_restart(sl);
        }
        if (sl->used) check_state(sl);
    }
    for (int s = 0; s < NSLOTS; s++)
        slot_clear(&slots[s]);
    saga_def_free(d_);
}

TEST_T(the_saga_machine_matches_a_simple_model_and_its_records_rebuild_the_same_state, 120) {
    db_ = test_open(test_dir(), NULL);
    for (int r = 0; r < 150; r++)
        run_one_definition(400);
    saga_out_free(&out_);
    factum_close(db_);
    printf("  %d instances (completed %d, failed %d, compensation_failed %d), %d parked replies, %d timeouts, "
           "%d restarts\n",
           ninstances_, nended_[S_COMPLETED], nended_[S_FAILED], nended_[S_COMP_FAILED], nparked_, ntimeouts_,
           nrestarts_);
    CHECK(nended_[S_COMPLETED] && nended_[S_FAILED] && nended_[S_COMP_FAILED] && nparked_ && ntimeouts_ && nrestarts_);
}

/* The most records one input can write: 31 stages whose unconfirmed compensations all run when
   the 32nd step fails — its StepFailed, two records per compensation, and SagaFailed. */
TEST(one_input_that_compensates_31_steps_writes_all_64_records_and_sends_31_commands) {
    buf_t b = {0};
    buf_append(&b, "{\"start_on\":\"Placed\",\"instance_id\":\"data.id\",\"steps\":[", 54);
    for (int k = 0; k < MAX_STEPS; k++)
        buf_printf(
            &b,
            "%s{\"name\":\"s%d\",\"command\":{\"stream\":\"svc-commands\",\"type\":\"Do%d\"},\"success\":[\"Ok%d\"],"
            "\"failure\":[\"No%d\"],\"compensation\":{\"stream\":\"svc-commands\",\"type\":\"Undo%d\"}}",
            k ? "," : "", k, k, k, k, k);
    buf_append(&b, "]}", 2);
    factum_error_t err;
    CHECK_MSG(!saga_def_parse("model", (factum_str_t){b.ptr, b.len}, &d_, &err), "%s", err.message);
    CHECK_MSG(!saga_def_check(d_, &err), "%s", err.message);
    db_ = test_open(test_dir(), NULL);
    slot *sl = &slots[0];
    sl->used = true;
    snprintf(sl->id, sizeof sl->id, "big");
    factum_event_t e = input_event(sl, "order-1", "Placed", "{\"id\":\"big\"}");
    saga_facts f = facts();
    saga_decide_start(d_, &f, "big", &e, &out_);
    sl->i = saga_inst_new("big");
    record_and_apply(sl);
    for (int k = 0; k < MAX_STEPS; k++) {
        char type[16];
        snprintf(type, sizeof type, "%s%d", k < MAX_STEPS - 1 ? "Ok" : "No", k);
        e = input_event(sl, "svc-events", type, "{}");
        saga_decide(d_, &f, sl->i, &e, &out_);
        CHECK(!out_.park[0]);
        if (k < MAX_STEPS - 1) CHECK_EQ(out_.nrecs, 2); /* StepSucceeded, the next StepStarted */
        record_and_apply(sl);
    }
    CHECK_EQ(out_.nrecs, 1 + 2 * (MAX_STEPS - 1) + 1);
    int sent = 0;
    for (int k = 0; k < out_.nrecs; k++)
        sent += out_.recs[k].r.sent.len > 0;
    CHECK_EQ(sent, MAX_STEPS - 1);
    CHECK_EQ(sl->i->c.status, S_FAILED);
    inst *r = replay(sl, NULL);
    same_instance(sl->i, r);
    saga_inst_free(r);
    slot_clear(sl);
    saga_out_free(&out_);
    saga_def_free(d_);
    factum_close(db_);
    buf_free(&b);
}
