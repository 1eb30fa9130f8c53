/*
 * runner.h — the runner's state (runner.c), private to the saga folder: report.c reads its
 * counts and instances under its mutex, and rebuilds one instance with saga_load.
 */
#ifndef FACTUM_SAGA_RUNNER_H
#define FACTUM_SAGA_RUNNER_H

#include "machine.h"

#include "../sys/pool.h"

#include <pthread.h>

#define ENDED_KEPT 10000
#define INDEX_BUCKETS 16384

typedef struct ended {
    char id[256];
    int status, step;
    int64_t started_us, ended_us;
} ended;

struct saga {
    factum_t *db;
    saga_def *d;
    pool_task *task; /* its slices on the definitions' pool */
    pthread_mutex_t mu;
    /* under mu */
    inst *active;
    inst *index[INDEX_BUCKETS]; /* the active instances by id */
    ended *ended;
    size_t nended, ended_at;
    uint64_t position;     /* every input before this is done */
    uint64_t recovered_at; /* the checkpoint's position at the last start: writes after it may be half done */
    uint64_t counts[5], parked;
    uint64_t dur[SAGA_DURATION_BUCKETS], dur_n; /* ended instances by duration (start to end) */
    double dur_sum_s;
    /* the slices' own (one at a time, ordered by the pool) */
    bool recovered;                /* the first slice loaded the checkpoint's instances */
    uint64_t term;                 /* the store's leadership term it recovered in (factum_leads) */
    int64_t rewind_at;             /* a write failed: go back to the checkpoint at this time (0: no) */
    int64_t last_cp;               /* the last checkpoint tried (CLOCK_MONOTONIC, µs) */
    uint64_t cp_pos, cp_decisions; /* position and decisions at the last checkpoint written */
    uint64_t decisions;            /* inputs that wrote something (state records, commands, a parked input) */
    bool keeps_one;                /* $sagacp-NAME has max_count 1 */
    saga_out out;                  /* what the input at hand decides */
    /* the runner's batch */
    pthread_mutex_t wmu;
    pthread_cond_t wcond;
    size_t inflight;
    int write_rc;
};

/* The name of instance id's state stream, $saga-NAME-ID, into out (replaced). */
void saga_state_stream(const saga *s, const char *id, buf_t *out);

/*
 * Rebuilds instance id from its state stream (saga_record_parse and saga_apply, record by
 * record); NULL if it has none. Every command recorded for an input at or after resend_from is
 * sent again (UINT64_MAX: none; sending needs the runner thread).
 */
inst *saga_load(saga *s, const char *id, uint64_t resend_from);

#endif
