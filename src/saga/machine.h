/*
 * machine.h — the instance state machine (machine.c), private to the saga folder: decide →
 * record → apply.
 *
 * A state change is decided by pure code (saga_decide, saga_decide_start: no store calls, no
 * locks, no clocks), which returns the state records to write; the runner writes them and
 * applies each with saga_apply, the one function that also rebuilds an instance from its
 * stream at start-up (saga_record_parse turns a stored record into the same saga_rec). The model
 * test (tests/test_saga_model.c) drives this header alone.
 */
#ifndef FACTUM_SAGA_MACHINE_H
#define FACTUM_SAGA_MACHINE_H

#include "../base/trace.h"
#include "def.h"

enum { S_RUNNING, S_COMPENSATING, S_COMPLETED, S_FAILED, S_COMP_FAILED };
extern const char *const saga_status_names[5];

/* The state records of $saga-NAME-ID, by event type (saga_record_types). */
enum {
    R_STARTED,           /* SagaStarted {input, context} */
    R_STEP_STARTED,      /* StepStarted {input, step, deadline_us, sent} */
    R_STEP_SUCCEEDED,    /* StepSucceeded {input, step, reply, context} */
    R_STEP_FAILED,       /* StepFailed {input, step, reason} */
    R_COMP_STARTED,      /* CompensationStarted {input, step, deadline_us, sent} */
    R_COMP_SUCCEEDED,    /* CompensationSucceeded {input, step, unconfirmed?} */
    R_COMP_FAILED,       /* CompensationFailed {input, step, reason} */
    R_COMPLETED,         /* SagaCompleted {input} */
    R_FAILED,            /* SagaFailed {input} */
    R_COMPENSATION_ENDED /* SagaCompensationFailed {input} */
};
#define R_KINDS 10
extern const char *const saga_record_types[R_KINDS];

/* One state record, as apply reads it. */
typedef struct saga_rec {
    int kind;             /* R_* */
    int step;             /* the step it names; -1: none, or one the definition no longer has */
    uint64_t input;       /* the position of the input that caused it */
    int64_t deadline_us;  /* R_STEP_STARTED, R_COMP_STARTED: the command's deadline (wall clock), 0 none */
    int64_t time_us;      /* live: the input's commit time; at start-up: the record's own */
    factum_str_t sent;    /* R_*_STARTED: the command as sent {"id","cause","command"} (borrowed) */
    factum_str_t context; /* R_STARTED, R_STEP_SUCCEEDED: the instance's new context (borrowed) */
    factum_str_t ext;     /* the record's extension members: its trace context (borrowed) */
} saga_rec;

/* The part of an instance's state that decisions read; decide works on a copy of it. */
typedef struct saga_core {
    int status;
    int stage;           /* running: the stage under way */
    int step;            /* compensating: the step being compensated */
    uint32_t waiting;    /* running: steps of the stage without an answer yet (bit = step index) */
    uint32_t done;       /* steps that succeeded */
    bool stage_failed;   /* a step of the stage failed: compensation begins once the others answer */
    uint64_t started_at; /* the position of the start event */
    uint64_t last_input; /* the position of the last input applied */
} saga_core;

typedef struct inst {
    char id[256];
    saga_core c;
    int64_t due_us[MAX_STEPS]; /* when each outstanding command times out, on CLOCK_MONOTONIC (see
                                  saga_apply); 0 none, negative once the runner sent its marker */
    buf_t sent[MAX_STEPS];     /* each outstanding command as sent, sent again after a restart */
    int64_t started_us, ended_us;
    buf_t ctx;                /* {"id":..,"data":..,"steps":{NAME: reply data, ...}} */
    buf_t trace;              /* its SagaStarted record's trace context (extension members), for
                                 the inputs that carry none */
    struct inst *next, *prev; /* the runner's: the active list */
    struct inst *hnext;       /* the runner's: the id index */
} inst;

/* What one input produces: state records (each one's commands are its `sent`), or a reason to
   park the input (then no records). Reused from input to input; saga_out_free at the end. */
#define MAX_RECS (3 * MAX_STEPS + 2) /* an answer, a stage's starts, two per compensation, an end */
typedef struct saga_out_rec {
    saga_rec r; /* sent and context point into data */
    char id[48];
    buf_t data;
    buf_t stream; /* R_*_STARTED: the command's stream */
    buf_t ext;    /* its trace context, as extension members (r.ext points here) */
} saga_out_rec;

typedef struct saga_out {
    saga_out_rec recs[MAX_RECS];
    int nrecs;
    char park[400];   /* not empty: park the input with this reason */
    saga_core c;      /* decide's own copy of the state, moved by each record it emits */
    factum_str_t ctx; /* and of the context (borrowed: the instance's, or a record's) */
    trace_ctx trace;  /* the input's trace context, or the instance's when the input has none:
                         each record and command carries a child of it (docs/sagas.md) */
} saga_out;

/* What decide may know of the world besides the instance and the input. */
typedef struct saga_facts {
    factum_t *db;               /* only for factum_events_check: the store's limits on an event */
    const char *const *deleted; /* streams deleted for ever (the runner looks up each command's
                                   stream and decides again when one is) */
    int ndeleted;
} saga_facts;

/* The wall clock and CLOCK_MONOTONIC now, in µs: apply turns a recorded deadline into a due time. */
typedef struct saga_clock {
    int64_t real_us, mono_us;
} saga_clock;

/* The instance id the start event e names at the definition's instance_id, into id; false if it
   names none usable (missing, not a string or number, or no valid stream name for its state). */
bool saga_instance_id(const saga_def *d, const factum_event_t *e, char id[256]);
/* A start event e for the new instance `id`. */
void saga_decide_start(const saga_def *d, const saga_facts *f, const char *id, const factum_event_t *e, saga_out *o);
/* A reply (correlated with instance i, of a reply type of the saga) or one of the saga's timeout
   markers for i. Nothing at all: an input done before a restart, or a timeout answered in time. */
void saga_decide(const saga_def *d, const saga_facts *f, const inst *i, const factum_event_t *e, saga_out *o);
void saga_out_free(saga_out *o);

/* A new instance of that id, with nothing applied yet (NULL when out of memory). */
inst *saga_inst_new(const char *id);
void saga_inst_free(inst *i);
/* Applies one record to i: the only way an instance's state changes. */
void saga_apply(const saga_def *d, inst *i, const saga_rec *r, const saga_clock *now);
/* The record that stored event e is (its data borrowed from e); false for anything else in an
   instance's stream (a timeout marker). */
bool saga_record_parse(const saga_def *d, const factum_event_t *e, saga_rec *r);

/* The step an instance is at, for people: the first one waiting, or the one compensated; -1. */
int saga_shown_step(const saga_def *d, const inst *i);

#endif
