/*
 * limits.c — the limits on definitions (docs/limits.md, "Definitions" and "Keys"): at most
 * --max-groups groups, --max-projections projections, --max-sagas sagas and --max-schedules
 * pending schedules on the server, and for a key that sets them, at most its max_groups,
 * max_projections, max_sagas and max_schedules of those it made (owns: the engines count each
 * key's from the "owner" member of their records, sys/owners.h). A new definition past either
 * is refused before anything is written: 409 with problem type limit-reached, naming the
 * limit, its maximum and its current use. Redefining a name that exists is not a new definition.
 *
 * Projections and sagas are defined one at a time (their registries' define_mu), so their check
 * is a count. Groups and schedules are written from any event loop without such a lock, and
 * counted only once their record is durable and applied: a new one holds a place (limit_hold),
 * on the server and for its key, from its check until its done function (or the connection's
 * end) gives it back, so that concurrent requests cannot pass a limit together.
 *
 * Also here: the /metrics lines of each limit, its use, and the definitions' pool (no per-key
 * lines: a key's use is in the problem that refuses it).
 */
#include "api.h"

#include "../group/groups.h"
#include "../sys/pool.h"
#include "../timer/timers.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>

static_assert(LIMIT_GROUPS == (int)AUTH_DEF_GROUPS && LIMIT_PROJECTIONS == (int)AUTH_DEF_PROJECTIONS &&
                  LIMIT_SAGAS == (int)AUTH_DEF_SAGAS && LIMIT_SCHEDULES == (int)AUTH_DEF_SCHEDULES &&
                  LIMIT_KINDS == (int)AUTH_DEFS,
              "a key's maximums are indexed by the server's limit kinds");

static const struct {
    const char *kind, *flag, *what;
} kinds[LIMIT_KINDS] = {
    [LIMIT_GROUPS] = {"groups", "--max-groups", "groups"},
    [LIMIT_PROJECTIONS] = {"projections", "--max-projections", "projections"},
    [LIMIT_SAGAS] = {"sagas", "--max-sagas", "sagas"},
    [LIMIT_SCHEDULES] = {"schedules", "--max-schedules", "pending schedules"},
};

struct limit_hold {
    server *s;
    int kind;
    char key[AUTH_ID_LEN + 1]; /* "": asked without a key */
};

/* What kind k counts now (applied definitions; pending timers). */
static uint64_t used_now(server *s, int k) {
    switch (k) {
    case LIMIT_GROUPS: return groups_count(s->groups);
    case LIMIT_PROJECTIONS: return projections_count(s->projections);
    case LIMIT_SAGAS: return sagas_count(s->sagas);
    default: {
        timers_stats ts;
        timers_get_stats(s->timers, &ts);
        return ts.pending;
    }
    }
}

uint64_t limits_owned(server *s, int kind, const char *key) {
    switch (kind) {
    case LIMIT_GROUPS: return groups_count_owned(s->groups, key);
    case LIMIT_PROJECTIONS: return projections_count_owned(s->projections, key);
    case LIMIT_SAGAS: return sagas_count_owned(s->sagas, key);
    default: return timers_count_owned(s->timers, key);
    }
}

uint64_t limits_max(const server *s, int kind) {
    const uint64_t *m[LIMIT_KINDS] = {&s->cfg.max_groups, &s->cfg.max_projections, &s->cfg.max_sagas,
                                      &s->cfg.max_schedules};
    return *m[kind];
}

void limits_problem(conn *c, const limit_refusal *r) {
    char members[200];
    const char *what = kinds[r->kind].what;
    unsigned long long max = r->max, used = r->used;
    if (r->by_key) {
        const char *member = auth_def_member((auth_def)r->kind);
        snprintf(members, sizeof members, "\"limit\":\"%s\",\"key\":\"%s\",\"max\":%llu,\"current\":%llu", member,
                 r->key, max, used);
        conn_problem(c, 409, "limit-reached", members,
                     "key %s may define at most %llu %s (its %s); it has %llu: delete one, or use a key with room",
                     r->key, max, what, member, used);
        return;
    }
    snprintf(members, sizeof members, "\"limit\":\"%s\",\"max\":%llu,\"current\":%llu", kinds[r->kind].flag + 2, max,
             used);
    conn_problem(c, 409, "limit-reached", members,
                 "at most %llu %s may be defined (%s); %llu are: delete one, or raise the limit", max, what,
                 kinds[r->kind].flag, used);
}

/* limits_admit, with `held` more places held by c's key (limits_mu held, for holds). */
static bool admit(conn *c, int kind, uint64_t used, uint64_t held, limit_refusal *r) {
    server *s = c->l->srv;
    *r = (limit_refusal){.kind = kind, .max = limits_max(s, kind), .used = used};
    if (used >= r->max) return false;
    int64_t key_max = c->req_key[0] ? c->who.max_definitions[kind] : AUTH_DEF_UNSET;
    if (key_max == AUTH_DEF_UNSET) return true;
    r->by_key = true, r->max = (uint64_t)key_max, r->used = limits_owned(s, kind, c->req_key) + held;
    memcpy(r->key, c->req_key, sizeof r->key);
    return r->used < r->max;
}

bool limits_admit(conn *c, int kind, uint64_t used, limit_refusal *r) { return admit(c, kind, used, 0, r); }

limit_hold *limits_take(conn *c, int kind, limit_refusal *r) {
    server *s = c->l->srv;
    pthread_mutex_lock(&s->limits_mu);
    bool ok = admit(c, kind, used_now(s, kind) + s->held[kind], owners_count(&s->held_by_key[kind], c->req_key), r);
    if (ok) s->held[kind]++, owners_add(&s->held_by_key[kind], c->req_key, 1);
    pthread_mutex_unlock(&s->limits_mu);
    if (!ok) return NULL;
    limit_hold *h = malloc(sizeof *h);
    if (!h) abort(); /* the server may stop on out-of-memory (STYLE.md) */
    h->s = s, h->kind = kind;
    memcpy(h->key, c->req_key, sizeof h->key);
    return h;
}

limit_hold *limits_hold(conn *c, int kind) {
    limit_refusal r;
    limit_hold *h = limits_take(c, kind, &r);
    if (!h) limits_problem(c, &r);
    return h;
}

void limits_release(limit_hold *h) {
    if (!h) return;
    pthread_mutex_lock(&h->s->limits_mu);
    h->s->held[h->kind]--;
    owners_add(&h->s->held_by_key[h->kind], h->key, -1);
    pthread_mutex_unlock(&h->s->limits_mu);
    free(h);
}

void limits_release_job(void *job) { limits_release(job); }

void limits_metrics(server *s, buf_t *b) {
    api_metric_head(b, "factum_definitions", "gauge",
                    "Definitions there are now, by kind (schedules: the pending ones; docs/limits.md).");
    for (int k = 0; k < LIMIT_KINDS; k++)
        buf_printf(b, "factum_definitions{kind=\"%s\"} %llu\n", kinds[k].kind, (unsigned long long)used_now(s, k));
    api_metric_head(b, "factum_definitions_max", "gauge", "The limit on definitions of each kind (--max-KIND).");
    for (int k = 0; k < LIMIT_KINDS; k++)
        buf_printf(b, "factum_definitions_max{kind=\"%s\"} %llu\n", kinds[k].kind,
                   (unsigned long long)limits_max(s, k));
    pool_stats ps;
    pool_get_stats(s->pool, &ps);
    api_metric_head(b, "factum_definition_threads", "gauge",
                    "Worker threads that run projections and sagas (--definition-threads).");
    buf_printf(b, "factum_definition_threads %d\n", ps.workers);
    api_metric_head(b, "factum_definition_tasks", "gauge",
                    "Projections and sagas on the pool, by state (idle: waiting for a commit or a time).");
    buf_printf(b, "factum_definition_tasks{state=\"running\"} %zu\n", ps.running);
    buf_printf(b, "factum_definition_tasks{state=\"queued\"} %zu\n", ps.queued);
    buf_printf(b, "factum_definition_tasks{state=\"idle\"} %zu\n", ps.tasks - ps.running - ps.queued);
}
