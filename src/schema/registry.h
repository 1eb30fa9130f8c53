/*
 * registry.h — the schema registry: per event type, its versions (each a compiled schema and
 * the compatibility it declared) and its mode (off, warn, enforce). Kept as records in the
 * "$schemas" stream (SchemaRegistered), replayed when it opens; installed in the store as its
 * append check (factum_set_append_check), so every append of a registered type, over HTTP or
 * embedded, is checked in the caller's thread. Owned by the store: freed at factum_close.
 */
#ifndef FACTUM_SCHEMA_REGISTRY_H
#define FACTUM_SCHEMA_REGISTRY_H

#include "schema.h"

#define SCHEMAS_STREAM "$schemas"
#define SCHEMA_MAX_TYPES 1000    /* types with a schema */
#define SCHEMA_MAX_VERSIONS 1000 /* versions of one type */
#define SCHEMA_CHECK_MAX 100000  /* stored events a check (compatibility, dry run) reads */
#define SCHEMA_CHECK_LISTED 5    /* failing stored events a check lists */
#define SCHEMA_MAX_RENAMES 64    /* type renames in one chain (rename_type steps, A to B to C ...) */

enum { SCHEMA_MODE_OFF, SCHEMA_MODE_WARN, SCHEMA_MODE_ENFORCE };
enum { SCHEMA_COMPAT_BACKWARD, SCHEMA_COMPAT_FORWARD, SCHEMA_COMPAT_FULL, SCHEMA_COMPAT_NONE };

typedef struct schema_registry schema_registry;

/* The registry of db, opening it (replaying $schemas, installing the check) the first time.
   0, or the read's error (then nothing is installed). */
int schema_registry_open(factum_t *db, schema_registry **out, factum_error_t *err);
/* Applies what $schemas holds past what the registry has applied: the records another node
   wrote, on a cluster follower (its log gets them by replication, not by a put here). One
   lookup of the stream's revision when there is nothing new; skipped (0) while a put runs.
   Any thread but the writer's. 0, or the read's error. */
int schema_registry_refresh(schema_registry *r, factum_error_t *err);

/* Names of modes and compatibilities, and back (-1: not one). */
const char *schema_mode_name(int mode);
const char *schema_compat_name(int compat);
int schema_mode_parse(const char *s);
int schema_compat_parse(const char *s);

/* What a check of stored events found: how many it read, how many fail, and the first
   SCHEMA_CHECK_LISTED failing as JSON elements {"stream","revision","position","violations":[..]}. */
typedef struct schema_check {
    uint64_t checked, failing;
    bool sampled; /* stopped at SCHEMA_CHECK_MAX: more were stored */
    buf_t failures;
    /* The forward check (compatibility forward or full, or a dry run, of a version past 1): ran,
       and what differs from the version before (schema_forward_compatible). */
    bool forward_ran;
    schema_report forward;
} schema_check;
void schema_check_free(schema_check *c);

/* Checks the stored events of `type` (the first SCHEMA_CHECK_MAX) against the document doc. */
int schema_registry_check(schema_registry *r, const char *type, factum_str_t doc, schema_check *out,
                          factum_error_t *err);

/* Registers version `version` of type's schema, or with dry_run only checks it: the document
   must compile, the version must be the next one (1 for a new type), with compatibility
   backward or full the stored events of the type must all validate, and with forward or full
   it must be forward compatible with the version before (*check says what was found either
   way; a dry run runs both checks). FACTUM_EINVAL (bad schema or option), FACTUM_ECONFLICT (not
   the next version; stored events that fail; differences), FACTUM_ETOOBIG (past a limit), or
   the append's error. */
typedef struct schema_put {
    const char *type;
    uint32_t version;
    int compat, mode;
    bool dry_run;
    factum_str_t doc;
} schema_put;
int schema_registry_put(schema_registry *r, const schema_put *p, schema_check *check, factum_error_t *err);

/* Registers the upcast of version ver of type (ver >= 2): {"steps":[...]} (src/schema/upcast.h)
   from version ver - 1, checked against that version's schema; recorded as UpcastDefined in
   $schemas. From then on reads return events stored as older versions upcast to the latest.
   FACTUM_ENOTFOUND (no such version), FACTUM_ECONFLICT (it has one), FACTUM_EINVAL (bad steps, a
   cycle of type renames), FACTUM_ETOOBIG (a chain of more than SCHEMA_MAX_RENAMES renames), or
   the append's error. */
int schema_registry_upcast(schema_registry *r, const char *type, uint32_t ver, factum_str_t doc, factum_error_t *err);

/* JSON of the registry: every type (a list); one type (FACTUM_ENOTFOUND if it has no
   schema); one version's document as registered (FACTUM_ENOTFOUND). Appended to out. */
void schema_registry_list_json(schema_registry *r, buf_t *out);
int schema_registry_type_json(schema_registry *r, const char *type, buf_t *out);
int schema_registry_version_json(schema_registry *r, const char *type, uint32_t version, buf_t *out);

/* Calls fn for every type with its counts of events that failed validation: accepted under
   warn, refused under enforce. */
void schema_registry_each(schema_registry *r,
                          void (*fn)(void *ctx, const char *type, uint64_t warned, uint64_t refused), void *ctx);

/* The violations of the append this thread had refused with FACTUM_ESCHEMA and the error
   message `message` (the last such refusal; "" if message is another's), as JSON array
   elements {"event":I,"type":T,"version":N,"pointer":P,"keyword":K,"message":M} (at most
   SCHEMA_MAX_REPORTED). Lives until this thread's next append. */
const char *schema_registry_violations(const char *message);

#endif
