/*
 * rate.c — the token buckets of per-key rate limits (rate.h). A bucket is kept as GCRA keeps
 * it: per limit, the time at which the bucket would be full again (tat). Taking n units of a
 * limit of N per second moves that time on by n/N s from now or from itself, whichever is
 * later; the take fits when the result is at most one second (the burst) ahead of now. So a
 * fresh bucket passes N units at once, an empty one one unit every 1/N s, and nothing needs
 * refilling. Costs are whole nanoseconds rounded down, so N takes of one unit always fit in
 * one second: a limit never refuses the N-th unit of a burst.
 */
#include "rate.h"

#define NS_PER_S 1000000000ULL

const char *auth_limit_name(auth_limit l) { return l == AUTH_LIMIT_APPENDS ? "appends" : "bytes"; }
const char *auth_limit_member(auth_limit l) {
    return l == AUTH_LIMIT_APPENDS ? "max_appends_per_second" : "max_bytes_per_second";
}
int64_t auth_limit_max(auth_limit l) {
    return l == AUTH_LIMIT_APPENDS ? AUTH_MAX_APPENDS_PER_SECOND : AUTH_MAX_BYTES_PER_SECOND;
}

void auth_bucket_init(auth_bucket *b) {
    pthread_mutex_init(&b->mu, NULL);
    memset(b->tat_ns, 0, sizeof b->tat_ns);
}

void auth_bucket_destroy(auth_bucket *b) { pthread_mutex_destroy(&b->mu); }

auth_rate_result auth_bucket_take(auth_bucket *b, const uint64_t per_second[AUTH_LIMITS],
                                  const uint64_t units[AUTH_LIMITS], uint64_t now_ns, auth_rate_verdict *v) {
    auth_rate_result r = AUTH_RATE_OK;
    for (int l = 0; l < AUTH_LIMITS && r == AUTH_RATE_OK; l++)
        if (per_second[l] && units[l] > per_second[l]) {
            r = AUTH_RATE_TOO_BIG;
            *v = (auth_rate_verdict){.limit = (auth_limit)l, .per_second = per_second[l], .asked = units[l]};
        }
    if (r != AUTH_RATE_OK || (!per_second[AUTH_LIMIT_APPENDS] && !per_second[AUTH_LIMIT_BYTES])) return r;
    uint64_t next[AUTH_LIMITS], wait_ns = 0;
    pthread_mutex_lock(&b->mu);
    for (int l = 0; l < AUTH_LIMITS; l++) {
        if (!per_second[l]) continue;
        /* units <= per_second <= 10^10: the product fits in 64 bits (rate.h's maximums) */
        uint64_t cost = units[l] * NS_PER_S / per_second[l];
        next[l] = MAX(b->tat_ns[l], now_ns) + cost;
        if (next[l] > now_ns + NS_PER_S && next[l] - now_ns - NS_PER_S > wait_ns) {
            wait_ns = next[l] - now_ns - NS_PER_S;
            r = AUTH_RATE_LIMITED;
            *v = (auth_rate_verdict){.limit = (auth_limit)l, .per_second = per_second[l], .asked = units[l]};
        }
    }
    if (r == AUTH_RATE_OK)
        for (int l = 0; l < AUTH_LIMITS; l++)
            if (per_second[l]) b->tat_ns[l] = next[l];
    pthread_mutex_unlock(&b->mu);
    if (r == AUTH_RATE_LIMITED) v->retry_after_s = (uint32_t)MAX(1, (wait_ns + NS_PER_S - 1) / NS_PER_S);
    return r;
}
