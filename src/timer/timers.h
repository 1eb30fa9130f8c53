/*
 * timers.h — durable timers: "append this event to this stream at time T".
 *
 * A timer's life is three kinds of events in the system stream $schedules (docs/timers.md):
 * Scheduled {id, at, [delay_ms,] stream, event, [owner]}, then Fired {id, position} (or {id, error} when
 * the store refused its event) or Cancelled {id}. On open the stream is replayed into memory (an
 * id table and two heaps of pending times); a scheduler thread fires what is due. A timer with
 * delay_ms was asked for as a delay: it waits on CLOCK_MONOTONIC; one without waits for the wall
 * clock to read `at` (docs/timers.md, "Clocks"). Firing appends the event with the timer's id as
 * its event id unless it has its own, so a firing repeated after a crash (before its Fired record
 * was durable) is an idempotent repeat: each timer's event lands once.
 *
 * Once enough timers have fired or been cancelled, the scheduler compacts $schedules: it copies
 * the Scheduled records of the pending ones to its end, and only when the copies are durable
 * moves the stream's truncate_before up to them, so a scavenge can take what is behind. Timers
 * that fired or were cancelled before are then forgotten (GET answers 404 for them).
 */
#ifndef FACTUM_TIMERS_H
#define FACTUM_TIMERS_H

#include "../base/base.h"

#define TIMERS_STREAM "$schedules"
#define TIMERS_MAX_DELAY_MS 31622400000ull /* 366 days */
#define TIMERS_COMPACT_MIN 1000 /* fired and cancelled timers before a compaction (and at least as many as pending) */

typedef struct timers timers_t;

enum { TIMER_PENDING, TIMER_FIRED, TIMER_CANCELLED, TIMER_FAILED };
/* "pending", "fired", "cancelled", "failed" */
extern const char *const timers_state_names[4];

typedef struct timer_info {
    char id[40];
    int state;
    int64_t at_us;
    bool has_record;    /* pos is its Scheduled record (false only for a timer known from a later record) */
    uint64_t pos;       /* of its Scheduled record */
    uint64_t fired_pos; /* of the event it appended, when fired */
    char error[256];    /* failed: why the store refused its event */
} timer_info;

typedef struct timers_stats {
    uint64_t pending, fired, cancelled, failed;
    uint64_t compactions;
    uint64_t late[16]; /* firing lateness histogram, bounds timers_late_bounds_ms */
    uint64_t late_sum_us;
} timers_stats;
extern const double timers_late_bounds_ms[16];

/* Replays $schedules and starts the scheduler thread. */
int timers_open(factum_t *db, timers_t **out, factum_error_t *err);
/* Replays $schedules only: for looking (timers_lookup, timers_list), nothing fires. */
int timers_load(factum_t *db, timers_t **out, factum_error_t *err);
void timers_close(timers_t *t);

/* Registers timer `id` whose Scheduled record is durable at `pos`, read back and applied as
   start-up replay applies it (nothing to do if a compaction met the record first). Thread-safe.
   0, the read's error, or FACTUM_ECORRUPT if the record there is not a Scheduled record. */
int timers_add(timers_t *t, const char *id, uint64_t pos, factum_error_t *err);
/* Holds a pending timer back from firing while its Cancelled record is written.
   FACTUM_ENOTFOUND (unknown id) or FACTUM_ECONFLICT (fired, failed or cancelled already). */
int timers_begin_cancel(timers_t *t, const char *id, factum_error_t *err);
/* Ends what timers_begin_cancel began: cancelled (the record is durable) or not. */
void timers_end_cancel(timers_t *t, const char *id, bool cancelled);
/* 0, or FACTUM_ENOTFOUND. */
int timers_lookup(timers_t *t, const char *id, timer_info *out);
/* Up to max timers in `state` (-1: any) whose ids sort after `after` ("": from the first), in
   id order — UUIDv7 ids, so the order they were asked for. Returns how many it wrote to out. */
size_t timers_list(timers_t *t, int state, const char *after, timer_info *out, size_t max);
/* A timer's Scheduled record (a one-event result to free), or *out NULL for a timer known only
   from a later record (it ended before its record was met again). 0 or the read's error. */
int timers_record(factum_t *db, const timer_info *ti, factum_result_t **out, factum_error_t *err);
void timers_get_stats(timers_t *t, timers_stats *out);
/* Pending timers whose Scheduled record names key as its "owner" (a key's max_schedules). */
uint64_t timers_count_owned(timers_t *t, const char *key);

#endif
