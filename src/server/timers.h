/*
 * timers.h — durable timers: "append this event to this stream at time T".
 *
 * A timer's life is three kinds of events in the system stream $schedules (docs/timers.md):
 * Scheduled {id, at, [delay_ms,] stream, event}, then Fired {id, position} or Cancelled {id}.
 * On open the stream is replayed into memory (an id table and two heaps of pending times); a
 * scheduler thread fires what is due. A timer with delay_ms was asked for as a delay: it waits
 * on CLOCK_MONOTONIC; one without waits for the wall clock to read `at` (docs/timers.md, "Clocks"). Firing appends the event with the timer's id as its event id unless it
 * has its own, so a firing repeated after a crash (before its Fired record was durable) is an
 * idempotent repeat: each timer's event lands once.
 */
#ifndef FACTUM_TIMERS_H
#define FACTUM_TIMERS_H

#include "../base/base.h"

#define TIMERS_STREAM "$schedules"
#define TIMERS_MAX_DELAY_MS 31622400000ull /* 366 days */

typedef struct timers timers_t;

enum { TIMER_PENDING, TIMER_FIRED, TIMER_CANCELLED };

typedef struct timer_info {
    int state;
    int64_t at_us;
    uint64_t pos;       /* of its Scheduled record */
    uint64_t fired_pos; /* of the event it appended, when fired */
} timer_info;

typedef struct timers_stats {
    uint64_t pending, fired, cancelled;
    uint64_t late[16]; /* firing lateness histogram, bounds timers_late_bounds_ms */
    uint64_t late_sum_us;
} timers_stats;
extern const double timers_late_bounds_ms[16];

/* Replays $schedules and starts the scheduler thread. */
int timers_open(factum_t *db, timers_t **out, factum_error_t *err);
void timers_close(timers_t *t);

/* Registers the timer whose Scheduled record is durable at `pos`, read back and applied as
   start-up replay applies it. Thread-safe. 0, the read's error, or FACTUM_ECORRUPT if the
   record there is not a Scheduled record. */
int timers_add(timers_t *t, uint64_t pos, factum_error_t *err);
/* Holds a pending timer back from firing while its Cancelled record is written.
   FACTUM_ENOTFOUND (unknown id) or FACTUM_ECONFLICT (fired or cancelled already). */
int timers_begin_cancel(timers_t *t, const char *id, factum_error_t *err);
/* Ends what timers_begin_cancel began: cancelled (the record is durable) or not. */
void timers_end_cancel(timers_t *t, const char *id, bool cancelled);
/* 0, or FACTUM_ENOTFOUND. */
int timers_lookup(timers_t *t, const char *id, timer_info *out);
void timers_get_stats(timers_t *t, timers_stats *out);

#endif
