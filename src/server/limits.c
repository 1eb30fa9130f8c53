/*
 * limits.c — the limits on definitions (docs/limits.md, "Definitions"): at most --max-groups
 * groups, --max-projections projections, --max-sagas sagas and --max-schedules pending
 * schedules. A new definition past its limit is refused before anything is written: 409 with
 * problem type limit-reached, naming the limit, its maximum and its current use. Redefining a
 * name that exists is not a new definition.
 *
 * Projections and sagas are defined one at a time (their registries' define_mu), so their check
 * is a count. Groups and schedules are written from any event loop without such a lock, and
 * counted only once their record is durable and applied: a new one holds a place (limit_hold)
 * from its check until its done function (or the connection's end) gives it back, so that
 * concurrent requests cannot pass a limit together.
 *
 * Also here: the /metrics lines of each limit, its use, and the definitions' pool.
 */
#include "api.h"

#include "../group/groups.h"
#include "../sys/pool.h"
#include "../timer/timers.h"

#include <stdio.h>
#include <stdlib.h>

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

uint64_t limits_max(const server *s, int kind) {
    const uint64_t *m[LIMIT_KINDS] = {&s->cfg.max_groups, &s->cfg.max_projections, &s->cfg.max_sagas,
                                      &s->cfg.max_schedules};
    return *m[kind];
}

void limits_problem(conn *c, int kind, uint64_t used) {
    uint64_t max = limits_max(c->l->srv, kind);
    char members[160];
    snprintf(members, sizeof members, "\"limit\":\"%s\",\"max\":%llu,\"current\":%llu", kinds[kind].flag + 2,
             (unsigned long long)max, (unsigned long long)used);
    conn_problem(c, 409, "limit-reached", members,
                 "at most %llu %s may be defined (%s); %llu are: delete one, or raise the limit",
                 (unsigned long long)max, kinds[kind].what, kinds[kind].flag, (unsigned long long)used);
}

bool limits_allow(server *s, int kind, uint64_t used) { return used < limits_max(s, kind); }

limit_hold *limits_hold(conn *c, int kind) {
    server *s = c->l->srv;
    pthread_mutex_lock(&s->limits_mu);
    uint64_t used = used_now(s, kind) + s->held[kind];
    bool ok = limits_allow(s, kind, used);
    if (ok) s->held[kind]++;
    pthread_mutex_unlock(&s->limits_mu);
    limit_hold *h = ok ? malloc(sizeof *h) : NULL;
    if (ok && !h) abort(); /* the server may stop on out-of-memory (STYLE.md) */
    if (!ok) {
        limits_problem(c, kind, used);
        return NULL;
    }
    h->s = s, h->kind = kind;
    return h;
}

void limits_release(limit_hold *h) {
    if (!h) return;
    pthread_mutex_lock(&h->s->limits_mu);
    h->s->held[h->kind]--;
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
