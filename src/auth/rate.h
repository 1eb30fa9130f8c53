/*
 * rate.h — per-key rate limits (docs/limits.md, "Keys"): how many events a key may append per
 * second, and how many request-body bytes per second it may send on the routes that append.
 *
 * Each key has one bucket (a token bucket kept as a GCRA "theoretical arrival time" per limit,
 * so there is nothing to refill): a limit of N per second lets N units through at once (the
 * burst is one second's worth) and one more every 1/N s after. A request takes its units of
 * both limits together, or of neither: a refused request leaves the bucket as it was. A request
 * larger than a limit's burst can never pass, and is told so apart from one that must wait.
 *
 * Thread-safety: a bucket has its own small mutex, taken only when the key has a limit; event
 * loops share a key's bucket, and no lock is shared between keys. Pure otherwise: the caller
 * gives the time (CLOCK_MONOTONIC, so a step of the wall clock changes nothing).
 */
#ifndef FACTUM_AUTH_RATE_H
#define FACTUM_AUTH_RATE_H

#include "../base/base.h"

#include <pthread.h>

typedef enum auth_limit { AUTH_LIMIT_APPENDS, AUTH_LIMIT_BYTES, AUTH_LIMITS } auth_limit;

#define AUTH_RATE_UNSET (-1) /* a key that gives no limit of its own: the server's default applies */
/* The largest limits a key or the server may set (past them a limit is refused): above any
   rate one server can take, and small enough that a second's worth in nanoseconds fits 64 bits. */
#define AUTH_MAX_APPENDS_PER_SECOND 10000000LL  /* events */
#define AUTH_MAX_BYTES_PER_SECOND 10000000000LL /* 10 GB */

/* "appends" or "bytes" (the metric's label, the problem's "limit"). */
const char *auth_limit_name(auth_limit l);
/* "max_appends_per_second" or "max_bytes_per_second" (the key's JSON member). */
const char *auth_limit_member(auth_limit l);
/* AUTH_MAX_APPENDS_PER_SECOND or AUTH_MAX_BYTES_PER_SECOND. */
int64_t auth_limit_max(auth_limit l);

typedef struct auth_bucket {
    pthread_mutex_t mu;
    uint64_t tat_ns[AUTH_LIMITS]; /* under mu: when the bucket of each limit would be full again */
} auth_bucket;

void auth_bucket_init(auth_bucket *b);
void auth_bucket_destroy(auth_bucket *b);

typedef enum auth_rate_result {
    AUTH_RATE_OK = 0,
    AUTH_RATE_LIMITED, /* not now: retry_after_s says when */
    AUTH_RATE_TOO_BIG, /* never: the request asks more than one second's worth */
} auth_rate_result;

/* Why a request was refused. */
typedef struct auth_rate_verdict {
    auth_limit limit;       /* the limit that refused (too big: appends first; else the longer wait) */
    uint64_t per_second;    /* its value */
    uint64_t asked;         /* the units the request asked of it */
    uint32_t retry_after_s; /* AUTH_RATE_LIMITED: whole seconds until it would pass, at least 1 */
} auth_rate_verdict;

/*
 * Takes units[l] from every limit l whose per_second[l] is not 0 (0: no limit), at now_ns, all
 * or none. AUTH_RATE_OK; or, having taken nothing, AUTH_RATE_TOO_BIG or AUTH_RATE_LIMITED with
 * *v saying which limit. Without any limit it returns at once and touches nothing.
 */
auth_rate_result auth_bucket_take(auth_bucket *b, const uint64_t per_second[AUTH_LIMITS],
                                  const uint64_t units[AUTH_LIMITS], uint64_t now_ns, auth_rate_verdict *v);

#endif
