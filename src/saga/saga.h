/*
 * saga.h — orchestrated sagas (docs/sagas.md): a definition, and the runner that drives its
 * instances from the log.
 *
 * The runner reads the log in position order. Its inputs are the start events, the replies
 * (events whose correlationid names an instance and whose type a step lists) and the timeout
 * markers it appends itself when a deadline passes. Each input moves one instance by a pure
 * function of (state, input); what that produces — state records for the instance's stream
 * $saga-NAME-ID, and commands — is appended with ids derived from the instance, the step and
 * the input, so doing an input again after a crash appends nothing new (appends are
 * idempotent by id) and a command is never sent twice under different ids.
 *
 * Threads: a saga's runner is a task on the definitions' pool (sys/pool.h): one slice at a time;
 * status and listing calls from any thread (a mutex).
 */
#ifndef FACTUM_SAGA_H
#define FACTUM_SAGA_H

#include "../base/base.h"
#include "../sys/pool.h"

#define SAGA_MAX_NAME 100

typedef struct saga_def saga_def;
typedef struct saga saga;

bool saga_name_valid(const char *name);

/* Parses a definition (no I/O): what the runner needs. FACTUM_EINVAL with the member and reason. */
int saga_def_parse(const char *name, factum_str_t body, saga_def **out, factum_error_t *err);
/* What a new definition may not be, beyond that: unknown members, a template path that names
   nothing, a reply type that is start_on or both success and failure, a command the saga would
   read back as its own start or reply, or one to a system stream. FACTUM_EINVAL with the member.
   Definitions are checked when defined, not when a stored one is started again. */
int saga_def_check(const saga_def *d, factum_error_t *err);
void saga_def_free(saga_def *d);
factum_str_t saga_def_json(const saga_def *d);

/* Starts the runner on pool pl (it owns d from here, also on error). */
int saga_start(factum_t *db, pool *pl, saga_def *d, saga **out, factum_error_t *err);
/* Takes the runner off the pool (waits for a batch in progress) and frees it. */
void saga_stop(saga *s);

/* {"name","position","running","compensating","completed","failed","compensation_failed",
   "parked","definition"?} into out (appended). */
void saga_status(saga *s, bool with_definition, buf_t *out);
/* A JSON array of instances {"id","status","step","started","ended"} with this status (NULL:
   all): the running ones, and the last 10,000 that ended. */
int saga_instances(saga *s, const char *status, buf_t *out, factum_error_t *err);
/* One instance: {"id","status","step","history":[{"type","time","data"}...]} from its stream.
   FACTUM_ENOTFOUND. */
int saga_instance(saga *s, const char *id, buf_t *out, factum_error_t *err);
/* Prometheus lines of one metric family (0 instances by status, 1 ended counts, 2 parked,
   3 the duration histogram) for this saga, labelled saga="NAME". */
#define SAGA_DURATION_BUCKETS 13
extern const double saga_duration_bounds[SAGA_DURATION_BUCKETS];
void saga_metrics(saga *s, int family, buf_t *out);

/* Parked inputs: [{"position","type","stream","reason"}]. */
int saga_parked(saga *s, buf_t *out, factum_error_t *err);

#endif
