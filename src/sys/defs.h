/*
 * defs.h — named definitions kept as records in a system stream ($projections, $sagas):
 * DEFINED {"name","definition"} and DELETED {"name"}. Replayed at start; the newest record of
 * a name wins.
 */
#ifndef FACTUM_DEFS_H
#define FACTUM_DEFS_H

#include "../base/base.h"

/* Calls fn(ctx, name, definition) for the newest definition of every name not deleted since,
   in no particular order. 0 or the read's error. */
int defs_replay(factum_t *db, const char *stream, const char *defined, const char *deleted,
                void (*fn)(void *ctx, const char *name, factum_str_t def), void *ctx, factum_error_t *err);
/* Appends a record of `type` for name (def empty: no definition member). */
int defs_record(factum_t *db, const char *stream, const char *type, const char *name, factum_str_t def,
                factum_error_t *err);

#endif
