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
   since, in no particular order (owner "": made without a key); *next (if not NULL) is the
   revision after the newest record read (0: none). 0 or the read's error. */
int defs_replay(factum_t *db, const char *stream, const char *defined, const char *deleted,
                void (*fn)(void *ctx, const char *name, factum_str_t def, const char *owner), void *ctx, uint64_t *next,
                factum_error_t *err);

/*
 * Following a stream of definitions that another node writes (a cluster follower): the records
 * from revision `next` on, in order, each to on_defined or on_deleted (its whole record), and
 * `next` moved past them. A record a registry wrote itself comes by too: a registry keeps the
 * defs_hash of each definition it runs and takes an equal one as seen.
 */
typedef struct defs_follower {
    const char *stream, *defined, *deleted;
    void (*on_defined)(void *ctx, const char *name, factum_str_t def, const char *owner);
    void (*on_deleted)(void *ctx, const char *name, factum_str_t record);
    uint64_t next; /* the revision of the next record to take (from defs_replay) */
} defs_follower;
/* 0 (one revision lookup when nothing is new) or the read's error. */
int defs_follow(factum_t *db, defs_follower *fw, void *ctx, factum_error_t *err);
/* A definition's fingerprint, to tell a record of what runs already from a new one. */
uint64_t defs_hash(factum_str_t def);
/* Appends a record of `type` for name (def empty: no definition member; owner NULL or "": no
   owner member). */
int defs_record(factum_t *db, const char *stream, const char *type, const char *name, factum_str_t def,
                const char *owner, factum_error_t *err);
/* The same with `member` (JSON value, empty: none) in place of "definition". */
int defs_record_member(factum_t *db, const char *stream, const char *type, const char *name, const char *member,
                       factum_str_t value, const char *owner, factum_error_t *err);

#endif
