/*
 * trace.h — W3C Trace Context (www.w3.org/TR/trace-context) for the CloudEvents distributed
 * tracing extension: the checks of `traceparent` and `tracestate` an append makes, finding them
 * among an event's extension members, and the context a write made because of an event carries
 * (the same trace, a span id derived from the write's id). docs/events.md, "Trace context".
 */
#ifndef FACTUM_TRACE_H
#define FACTUM_TRACE_H

#include "base.h"

#define TRACE_PARENT_LEN 55    /* "00-" 32 hex "-" 16 hex "-" 2 hex */
#define TRACE_STATE_MAX 512    /* bytes of a tracestate */
#define TRACE_STATE_MEMBERS 32 /* list-members of a tracestate */

/* A trace context as text; parent[0] == 0 when there is none. */
typedef struct trace_ctx {
    char parent[TRACE_PARENT_LEN + 1];
    char state[TRACE_STATE_MAX + 1]; /* "" when there is none */
} trace_ctx;

/* NULL if v is a valid version-00 traceparent; else why not (static text, names the field). */
const char *trace_parent_check(factum_str_t v);
/* NULL if v is a valid tracestate list (at most 32 members, 512 bytes); else why not. */
const char *trace_state_check(factum_str_t v);

/* Checks the traceparent and tracestate members among ext (extension members, no braces, valid
   JSON): strings, valid, and no tracestate without a traceparent. 0, or FACTUM_EBADEVENT with
   "event I: ..." in err. */
int trace_check_members(factum_str_t ext, size_t i, factum_error_t *err);
/* Whether ext (extension members) names a traceparent or a tracestate, valid or not. */
bool trace_named(factum_str_t ext);
/* The trace context among ext, decoded into t; false (t empty) when ext has no valid traceparent.
   A tracestate that is not valid is left out. */
bool trace_get(factum_str_t ext, trace_ctx *t);

/* The context of a write made because of one with context in: the same trace id, flags and
   tracestate, and a span (parent) id derived from seed alone, so a write made again renders the
   same bytes. out is empty when in is. */
void trace_child(const trace_ctx *in, factum_str_t seed, trace_ctx *out);
/* Appends t as extension members, "traceparent":"...","tracestate":"..." (nothing when t is
   empty; no tracestate member when it has none). */
void trace_members(const trace_ctx *t, buf_t *out);

#endif
