/*
 * replay.h — reading the server's own system streams ($schedules, $groups, $group-NAME,
 * $snapshot-...): forward from a revision to rebuild state, or backward from the end to find the
 * newest record of some kind; and letting a scavenge take the records a newer one superseded.
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

/*
 * Hides the records of `stream` below `revision` (its metadata's truncate_before; other
 * metadata is kept), so reads skip them and a scavenge takes them off the disk. Call it only
 * once the record at `revision` — one that holds, with those after it, all the state the
 * records before built — is durable: a crash before this leaves the old records visible, never
 * live state hidden. truncate_before never moves back; a lower revision is a no-op. 0 or the
 * store's error.
 */
int replay_forget_before(factum_t *db, const char *stream, uint64_t revision, factum_error_t *err);

#endif
