/*
 * replay.h — reading the server's own system streams ($schedules, $groups, $group-NAME,
 * $snapshot-...): forward from a revision to rebuild state, or backward from the end to find the
 * newest record of some kind.
 */
#ifndef FACTUM_REPLAY_H
#define FACTUM_REPLAY_H

#include "../base/base.h"

/* Calls fn for every event of stream from revision `from` on, in order. A stream with no events
   is fine (0); otherwise the read's error. */
int replay_stream(factum_t *db, const char *stream, uint64_t from, void (*fn)(void *ctx, const factum_event_t *e),
                  void *ctx, factum_error_t *err);

/* What pick says of an event, newest first: take it, look further, or stop looking. */
enum { PICK_SKIP = 0, PICK_TAKE = 1, PICK_STOP = -1 };

/* Reads stream backward from its end and returns the result holding the newest event pick takes
   (*e points into it; free the result), or NULL. */
factum_result_t *replay_find_newest(factum_t *db, const char *stream, int (*pick)(void *ctx, const factum_event_t *e),
                                    void *ctx, const factum_event_t **e);

#endif
