/*
 * upcast.h — declarative steps that turn the data of an event stored as version n of its type
 * into version n+1 (docs/schemas.md, "Upcasting"): rename, add (a default), remove, move (or
 * nest), map (a value to another), rename_type. Parsed and checked once, when registered,
 * against the schema of version n; applied on every read of an older event.
 */
#ifndef FACTUM_SCHEMA_UPCAST_H
#define FACTUM_SCHEMA_UPCAST_H

#include "schema.h"

#define UPCAST_MAX_STEPS 64
#define UPCAST_MAX_VERSION 1000 /* a rename_type's "version" (SCHEMA_MAX_VERSIONS) */

typedef struct upcast upcast;

/* Parses {"steps":[...]} (a copy is kept), checking each step names what `from` (the schema of
   the version it upcasts from; NULL: no check) declares. 0, or FACTUM_EINVAL naming the step. */
int upcast_parse(factum_str_t doc, const schema_t *from, upcast **out, factum_error_t *err);
void upcast_free(upcast *u);
/* The document as parsed (lives as long as u). */
factum_str_t upcast_text(const upcast *u);
/* The type the steps rename the event to, or NULL; *version (if given) the version of it the
   renamed event enters as ("version" of the step, 1 by default). */
const char *upcast_new_type(const upcast *u, uint32_t *version);

/* Applies u's steps to the JSON value data, appending the result to out. Data that lacks what
   a step names is left as it is for that step (an optional member); a member "add" names that
   is there already is kept. 0, or FACTUM_EINVAL when data is not JSON, FACTUM_ENOMEM. */
int upcast_apply(const upcast *u, factum_str_t data, buf_t *out);

#endif
