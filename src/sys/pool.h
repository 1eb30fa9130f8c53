/*
 * pool.h — a few worker threads that run many long-lived tasks (projections, sagas: one task
 * each) in bounded slices, so that a definition costs no thread of its own (docs/threads.md,
 * "The definitions' pool").
 *
 * A task is a function that does a bounded amount of work (one batch) and says when it wants to
 * run again: at once (it has more), when the log's head passes a position, at a time on the
 * monotonic clock, or only when poked. The pool guarantees at most one slice of a task at a
 * time, and that a slice sees everything the task's previous slice wrote (the pool's mutex
 * orders them), so a task's state needs no lock of its own against itself. One watcher thread
 * waits for commits (factum_wait) and deadlines and queues the tasks they concern; workers take
 * queued tasks in FIFO order.
 *
 * A slice may block (a database, its own appends): it holds one worker meanwhile. Tasks are
 * fair at slice granularity, not within one.
 */
#ifndef FACTUM_POOL_H
#define FACTUM_POOL_H

#include "../base/base.h"

#define POOL_MAX_WORKERS 64
#define POOL_NO_POSITION UINT64_MAX

typedef struct pool pool;
typedef struct pool_task pool_task;

/* What a slice asks for. */
typedef struct pool_next {
    bool again;    /* it has more to do: queue it behind the others */
    uint64_t past; /* else run when the head is greater than this (POOL_NO_POSITION: not for commits) */
    int64_t at_us; /* or at this CLOCK_MONOTONIC time (0: none); a poke always runs it */
} pool_next;

typedef pool_next (*pool_slice_fn)(void *ctx);

/* Starts `workers` worker threads (1 to POOL_MAX_WORKERS) and the watcher on db. 0 or FACTUM_ENOMEM. */
int pool_open(factum_t *db, int workers, pool **out, factum_error_t *err);
/* Stops the threads; every task must have been removed. */
void pool_close(pool *p);

/* Adds a task named `what` (for logs, e.g. "projection orders"; copied) and queues its first
   slice. NULL on out-of-memory. */
pool_task *pool_add(pool *p, const char *what, pool_slice_fn fn, void *ctx);
/* Runs t's next slice soon, whatever it waits for (a request: reset, a new instance). Any thread. */
void pool_poke(pool_task *t);
/* Takes t off the pool and frees it: waits for its slice in progress, if one is; fn is not
   called after this returns. */
void pool_remove(pool_task *t);

/* For shutdown: starts no more slices and waits for those in progress. The names of the tasks
   it waited for go to `waited` (comma-separated, appended); "still waiting for ..." is logged
   every second a slice takes. Returns how many it waited for. */
size_t pool_quiesce(pool *p, buf_t *waited);

typedef struct pool_stats {
    int workers;
    size_t tasks, queued, running;
} pool_stats;
void pool_get_stats(pool *p, pool_stats *st);

#endif
