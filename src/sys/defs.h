/*
 * defs.h — named definitions kept as records in a system stream ($projections, $sagas):
 * DEFINED {"name","definition"[,"owner"]} and DELETED {"name"}. Replayed at start; the newest
 * record of a name wins. The owner is the key that made the definition (sys/owners.h): a
 * redefinition writes the first owner again.
 */
#ifndef FACTUM_DEFS_H
#define FACTUM_DEFS_H

#include "../base/base.h"
#include "owners.h"

/* Calls fn(ctx, name, definition, owner) for the newest definition of every name not deleted
   since, in no particular order (owner "": made without a key). 0 or the read's error. */
int defs_replay(factum_t *db, const char *stream, const char *defined, const char *deleted,
                void (*fn)(void *ctx, const char *name, factum_str_t def, const char *owner), void *ctx,
                factum_error_t *err);
/* Appends a record of `type` for name (def empty: no definition member; owner NULL or "": no
   owner member). */
int defs_record(factum_t *db, const char *stream, const char *type, const char *name, factum_str_t def,
                const char *owner, factum_error_t *err);

#endif
