/*
 * groups.c — the consumer-group engine's runner: the registry of groups (a mutex for the list,
 * one per group, so one group's Checkpoint fsync stalls no other group), pull (the store reads
 * that hand out retries, held events and new events), the keeper thread (ack timeouts, rates,
 * Checkpoints), stats, and start-up replay of $groups and each $group-NAME. The state machine it
 * drives is machine.c; definitions are def.c. See groups.h for the interface.
 *
 * Locks: the registry's mutex (gs->mu) guards the list, each group's refs and gone, and the
 * keeper's wait; a group's own mutex guards its state. Order: gs->mu before g->mu, never the
 * other way; group_acquire() takes a reference so a group deleted meanwhile is freed by its last user.
 */
#include "group.h"

#include "../base/json.h"
#include "../base/log.h"
#include "../sys/replay.h"

#include <stdio.h>
#include <stdlib.h>

void groups_state_stream(const char *name, char out[GROUP_MAX_NAME + 8]) {
    snprintf(out, GROUP_MAX_NAME + 8, "$group-%s", name);
}

/* ---- registry ---- */

static group *find(groups_t *gs, const char *name) {
    for (group *g = gs->list; g; g = g->link)
        if (!strcmp(g->name, name)) return g;
    return NULL;
}

/* The group, locked and referenced; or NULL. End with release(). */
group *group_acquire(groups_t *gs, const char *name) {
    pthread_mutex_lock(&gs->mu);
    group *g = find(gs, name);
    if (g) g->refs++;
    pthread_mutex_unlock(&gs->mu);
    if (g) pthread_mutex_lock(&g->mu);
    return g;
}

static void unref(groups_t *gs, group *g) {
    pthread_mutex_lock(&gs->mu);
    bool last = --g->refs == 0 && g->gone;
    pthread_mutex_unlock(&gs->mu);
    if (last) group_free(g);
}

void group_release(groups_t *gs, group *g) {
    pthread_mutex_unlock(&g->mu);
    unref(gs, g);
}

bool groups_has(groups_t *gs, const char *name) {
    pthread_mutex_lock(&gs->mu);
    bool has = find(gs, name) != NULL;
    pthread_mutex_unlock(&gs->mu);
    return has;
}

size_t groups_count(groups_t *gs) {
    size_t n = 0;
    pthread_mutex_lock(&gs->mu);
    for (group *g = gs->list; g; g = g->link)
        n++;
    pthread_mutex_unlock(&gs->mu);
    return n;
}

uint64_t groups_count_owned(groups_t *gs, const char *key) {
    pthread_mutex_lock(&gs->mu);
    uint64_t n = owners_count(&gs->owned, key);
    pthread_mutex_unlock(&gs->mu);
    return n;
}

/* ---- definitions ---- */

int groups_define_prepare(groups_t *gs, const char *name, factum_str_t body, const char *owner, buf_t *rec,
                          bool *created, factum_error_t *err) {
    if (!group_name_ok(name))
        return err_set(err, FACTUM_EINVAL, "group names are 1 to %d letters, digits, '-', '_' or '.'", GROUP_MAX_NAME);
    group_def tmp, old;
    char first[OWNER_MAX]; /* a redefinition keeps the first owner */
    memset(&tmp, 0, sizeof tmp);
    group *g = group_acquire(gs, name);
    if (g) old = g->d, memcpy(first, g->owner, sizeof first), owner = first, group_release(gs, g);
    *created = g == NULL;
    /* What a client may send (the GroupDefined record adds "name"). */
    static const char *const members[] = {"source",         "start", "strategy", "ack_timeout_ms",
                                          "max_deliveries", "retry", NULL};
    int rc = group_def_parse(gs->db, body, &tmp, g == NULL, err);
    if (!rc) rc = json_only_members(body, "a group", members, err);
    if (!rc && g) {
        /* What a group reads, and where it began, do not change under it. */
        if (!group_def_same_source(&old, &tmp))
            rc = err_set(err, FACTUM_EINVAL, "a group's source cannot change; delete it and create it again");
        tmp.start = old.start;
    }
    if (rc) return rc;
    rec->len = 0;
    buf_printf(rec, "{\"name\":\"%s\",", name);
    group_def_render(&tmp, rec);
    owners_member(rec, owner);
    buf_append(rec, "}", 1);
    return 0;
}

void groups_define_apply(groups_t *gs, factum_str_t rec, uint64_t pos) {
    factum_str_t v;
    int kind;
    char name[GROUP_MAX_NAME + 1];
    if (!json_member(rec, "name", &v, &kind) || kind != JSON_STRING || !group_str_into(v, name, sizeof name)) return;
    group_def tmp;
    memset(&tmp, 0, sizeof tmp);
    factum_error_t err;
    if (group_def_parse(gs->db, rec, &tmp, false, &err)) return;
    uint64_t start = 0;
    if (json_member(rec, "start", &v, &kind)) str_u64(v, &start);
    pthread_mutex_lock(&gs->mu);
    group *g = find(gs, name);
    if (g) {
        /* an update: settings only */
        pthread_mutex_lock(&g->mu);
        g->d.ack_timeout_ms = tmp.ack_timeout_ms, g->d.max_deliveries = tmp.max_deliveries,
        g->d.by_stream = tmp.by_stream;
        g->d.min_delay_ms = tmp.min_delay_ms, g->d.max_delay_ms = tmp.max_delay_ms;
        pthread_mutex_unlock(&g->mu);
    } else {
        g = group_xrealloc(NULL, sizeof *g);
        memset(g, 0, sizeof *g);
        g->d = tmp;
        g->clk = &gs->clk;
        pthread_mutex_init(&g->mu, NULL);
        snprintf(g->name, sizeof g->name, "%s", name);
        g->d.start = g->next = g->floor = start;
        g->created_pos = pos;
        owners_of_record(rec, g->owner);
        owners_add(&gs->owned, g->owner, 1);
        g->link = gs->list;
        gs->list = g;
    }
    pthread_mutex_unlock(&gs->mu);
}

int groups_delete_prepare(groups_t *gs, const char *name, buf_t *rec, factum_error_t *err) {
    if (!groups_has(gs, name)) return err_set(err, FACTUM_ENOTFOUND, "no group '%s'", name);
    rec->len = 0;
    buf_printf(rec, "{\"name\":\"%s\"}", name);
    return 0;
}

void groups_delete_apply(groups_t *gs, const char *name) {
    pthread_mutex_lock(&gs->mu);
    for (group **p = &gs->list; *p; p = &(*p)->link)
        if (!strcmp((*p)->name, name)) {
            group *g = *p;
            *p = g->link;
            g->gone = true;
            owners_add(&gs->owned, g->owner, -1);
            if (!g->refs) group_free(g); /* else its last user frees it */
            break;
        }
    pthread_mutex_unlock(&gs->mu);
}

/* ---- ack, nack, parked: decide here, apply once durable ---- */

void groups_change_free(groups_change *ch) {
    buf_free(&ch->rec);
    free(ch->refused);
    *ch = (groups_change){0};
}

typedef int (*decide_fn)(group *g, factum_str_t body, const char *one, groups_change *ch, factum_error_t *err);

static int decide(groups_t *gs, const char *name, factum_str_t body, const char *one, groups_change *ch, decide_fn fn,
                  factum_error_t *err) {
    ch->n = 0, ch->nrefused = 0;
    group *g = group_acquire(gs, name);
    if (!g) return err_set(err, FACTUM_ENOTFOUND, "no group '%s'", name);
    int rc = fn(g, body, one, ch, err);
    group_release(gs, g);
    return rc;
}

static int ack_fn(group *g, factum_str_t body, const char *one, groups_change *ch, factum_error_t *err) {
    (void)one;
    return group_ack_decide(g, body, ch, err);
}

static int nack_fn(group *g, factum_str_t body, const char *one, groups_change *ch, factum_error_t *err) {
    (void)one;
    return group_nack_decide(g, body, ch, err);
}

int groups_ack_prepare(groups_t *gs, const char *name, factum_str_t body, groups_change *ch, factum_error_t *err) {
    return decide(gs, name, body, NULL, ch, ack_fn, err);
}

int groups_nack_prepare(groups_t *gs, const char *name, factum_str_t body, groups_change *ch, factum_error_t *err) {
    return decide(gs, name, body, NULL, ch, nack_fn, err);
}

int groups_parked_prepare(groups_t *gs, const char *name, factum_str_t body, const char *one, groups_change *ch,
                          factum_error_t *err) {
    return decide(gs, name, body, one, ch, group_parked_decide, err);
}

void groups_apply(groups_t *gs, const char *name, factum_str_t type, factum_str_t rec) {
    group *g = group_acquire(gs, name);
    if (!g) return;
    group_apply(g, type, rec, false);
    if (g->writes_pending) g->writes_pending--;
    group_release(gs, g);
}

void groups_write_abandoned(groups_t *gs, const char *name) {
    group *g = group_acquire(gs, name);
    if (!g) return;
    if (g->writes_pending) g->writes_pending--;
    group_release(gs, g);
}

static void parked_copy(const parked *p, groups_parked *out) {
    *out = (groups_parked){.key = p->key, .pos = p->pos, .attempts = p->attempts, .at = p->at};
    memcpy(out->reason, p->reason, sizeof out->reason);
}

int groups_parked_get(groups_t *gs, const char *name, const char *one, groups_parked **out, size_t *n) {
    *out = NULL, *n = 0;
    group *g = group_acquire(gs, name);
    if (!g) return FACTUM_ENOTFOUND;
    int rc = 0;
    if (one) {
        uint64_t key;
        parked *p = str_u64(str_c(one), &key) ? group_parked_of(g, key) : NULL;
        if (!p)
            rc = FACTUM_ENOTFOUND;
        else
            *out = group_xrealloc(NULL, sizeof **out), parked_copy(p, *out), *n = 1;
    } else if (g->npk) {
        *out = group_xrealloc(NULL, g->npk * sizeof **out);
        for (size_t i = 0; i < g->npk; i++)
            parked_copy(&g->pk[i], &(*out)[i]);
        *n = g->npk;
    }
    group_release(gs, g);
    return rc;
}

/* ---- the keeper: rates, Checkpoints, ack timeouts ---- */

/*
 * Writes a Checkpoint: the group's whole state. Called with the group's mutex held and nothing
 * in flight for the group, and appended while still holding it, so no other record of the group
 * can land between what the snapshot saw and the snapshot itself: replaying from it is exact.
 * Only this group waits for the fsync. true once it is durable, with its revision in *rev: the
 * records before it are superseded.
 */
static bool write_checkpoint(groups_t *gs, group *g, buf_t *rec, uint64_t *rev) {
    /* due times are written on the wall clock */
    int64_t now = gs->clk.wall_us(gs->clk.ctx), now_mono = gs->clk.mono_us(gs->clk.ctx);
    rec->len = 0;
    buf_printf(rec, "{\"floor\":%llu,\"at\":%lld,\"entries\":[", (unsigned long long)g->floor, (long long)now);
    size_t k = 0;
    for (size_t i = 0; i < g->n; i++) {
        const entry *x = &g->e[i];
        if (x->kind == E_HELD) continue; /* read again from the floor */
        /* in flight or being parked: delivered again after a restart, like any unacked event */
        bool done = x->kind == E_DONE;
        int64_t due = x->kind == E_RETRY ? now + MAX(0, x->t - now_mono) : now;
        buf_printf(rec, "%s{\"key\":%llu,\"pos\":%llu,\"sh\":%llu,\"attempt\":%u,\"done\":%d,\"due\":%lld",
                   k++ ? "," : "", (unsigned long long)x->key, (unsigned long long)x->pos, (unsigned long long)x->sh,
                   x->attempt, done, (long long)due);
        if (x->replayed) buf_printf(rec, ",\"base\":%u,\"replayed\":1", x->base);
        buf_append(rec, "}", 1);
    }
    buf_printf(rec, "],\"parked\":[");
    for (size_t i = 0; i < g->npk; i++) {
        const parked *p = &g->pk[i];
        buf_printf(rec,
                   "%s{\"key\":%llu,\"pos\":%llu,\"sh\":%llu,\"attempts\":%u,\"at\":%lld,\"reason\":", i ? "," : "",
                   (unsigned long long)p->key, (unsigned long long)p->pos, (unsigned long long)p->sh, p->attempts,
                   (long long)p->at);
        json_escape(rec, p->reason, strlen(p->reason));
        buf_append(rec, "}", 1);
    }
    buf_append(rec, "]}", 2);
    if (rec->len > CHECKPOINT_MAX_BYTES) {
        g->since_checkpoint = CHECKPOINT_EVERY / 2; /* too big for one record now: try again later */
        return false;
    }
    char stream[GROUP_MAX_NAME + 8];
    groups_state_stream(g->name, stream);
    factum_event_t ev = {.type = str_c("Checkpoint"), .data = {rec->ptr, rec->len}, .data_format = FACTUM_DATA_JSON};
    factum_append_result_t res;
    if (factum_append(gs->db, str_c(stream), FACTUM_EXPECT_ANY, &ev, 1, &res, NULL)) {
        g->since_checkpoint = CHECKPOINT_EVERY / 2; /* refused (too large for a segment, a failing disk): later */
        return false;
    }
    g->since_checkpoint = 0;
    *rev = res.last_revision;
    return true;
}

/* One group's round of the keeper; g->mu held (it is let go around appends that need not hold it). */
static void keep(groups_t *gs, group *g, buf_t *rec) {
    int64_t now = gs->clk.mono_us(gs->clk.ctx), now_wall = gs->clk.wall_us(gs->clk.ctx);
    int last = (g->rate_i + 10) % 11;
    if (!g->rate_n || now - g->rate_t[last] >= 1000000) {
        g->rate_t[g->rate_i] = now, g->rate_d[g->rate_i] = g->delivered, g->rate_r[g->rate_i] = g->redelivered;
        g->rate_i = (g->rate_i + 1) % 11;
        g->rate_n = MIN(g->rate_n + 1, 11);
    }
    uint64_t cp_rev = 0;
    if (g->since_checkpoint >= CHECKPOINT_EVERY && !g->writes_pending && write_checkpoint(gs, g, rec, &cp_rev)) {
        /* The Checkpoint is durable: the group's records before it are reclaimable (a crash
           before this leaves them visible, and a start reads from the Checkpoint anyway). */
        char stream[GROUP_MAX_NAME + 8];
        groups_state_stream(g->name, stream);
        pthread_mutex_unlock(&g->mu);
        replay_forget_before(gs->db, stream, cp_rev, NULL);
        pthread_mutex_lock(&g->mu);
    }
    rec->len = 0;
    buf_printf(rec, "{\"items\":[");
    size_t n = 0;
    for (size_t i = 0; i < g->n; i++) {
        entry *x = &g->e[i];
        if (x->kind != E_INFLIGHT || x->t > now) continue;
        group_nack_item(g, rec, x, group_retry_parks(g, x) ? "park" : "retry", now_wall, -1, n == 0);
        x->kind = E_PARKING; /* neither deliverable nor expiring again until written */
        n++;
    }
    if (!n) return;
    buf_printf(rec, "],\"reason\":\"ack timeout\",\"at\":%lld}", (long long)now_wall);
    char stream[GROUP_MAX_NAME + 8];
    groups_state_stream(g->name, stream);
    factum_event_t ev = {.type = str_c("Nacked"), .data = {rec->ptr, rec->len}, .data_format = FACTUM_DATA_JSON};
    g->writes_pending++;
    pthread_mutex_unlock(&g->mu);
    int rc = factum_append(gs->db, str_c(stream), FACTUM_EXPECT_ANY, &ev, 1, NULL, NULL);
    pthread_mutex_lock(&g->mu);
    g->writes_pending--;
    if (rc == 0)
        group_apply(g, str_c("Nacked"), (factum_str_t){rec->ptr, rec->len}, false);
    else
        for (size_t i = 0; i < g->n; i++)
            if (g->e[i].kind == E_PARKING)
                g->e[i].kind = E_RETRY, g->e[i].t = now; /* the disk refuses: keep it moving */
}

/* The groups, each referenced (unref each, then free the array). gs->mu held. */
static group **snapshot(groups_t *gs, size_t *n) {
    *n = 0;
    for (group *g = gs->list; g; g = g->link)
        ++*n;
    group **all = group_xrealloc(NULL, (*n ? *n : 1) * sizeof *all);
    size_t i = 0;
    for (group *g = gs->list; g; g = g->link)
        g->refs++, all[i++] = g;
    return all;
}

/* One round over every group, each under its own mutex only. */
static void keeper_round(groups_t *gs, buf_t *rec) {
    size_t n;
    pthread_mutex_lock(&gs->mu);
    group **all = snapshot(gs, &n);
    pthread_mutex_unlock(&gs->mu);
    for (size_t i = 0; i < n; i++) {
        pthread_mutex_lock(&all[i]->mu);
        if (!all[i]->gone) keep(gs, all[i], rec);
        group_release(gs, all[i]);
    }
    free(all);
}

void groups_tick(groups_t *gs) {
    buf_t rec = {0};
    keeper_round(gs, &rec);
    buf_free(&rec);
}

static void reload(groups_t *gs);

static void *keeper(void *arg) {
    groups_t *gs = arg;
    buf_t rec = {0};
    pthread_mutex_lock(&gs->mu);
    while (!gs->stop) {
        struct timespec ts = clock_mono_after(50000);
        pthread_cond_timedwait(&gs->cond, &gs->mu, &ts);
        if (gs->stop) break;
        uint64_t term;
        if (!factum_leads(gs->db, &term)) continue; /* only the node that writes keeps the groups */
        pthread_mutex_unlock(&gs->mu);
        if (term != gs->term) reload(gs), gs->term = term;
        keeper_round(gs, &rec);
        pthread_mutex_lock(&gs->mu);
    }
    pthread_mutex_unlock(&gs->mu);
    buf_free(&rec);
    return NULL;
}

/* ---- stats ---- */

static void stats_of(groups_t *gs, group *g, group_stats *st) {
    const group_def *d = &g->d;
    memset(st, 0, sizeof *st);
    snprintf(st->name, sizeof st->name, "%s", g->name);
    factum_t *db = gs->db;
    uint64_t head = factum_head_position(db);
    uint64_t end = d->src == SRC_STREAM ? (uint64_t)(factum_stream_revision(db, str_c(d->src_name)) + 1) : head;
    /* The lowest key not done: the floor, or a parked event replayed from below it. */
    uint64_t low = g->floor;
    for (size_t i = 0; i < g->n; i++)
        if (g->e[i].kind != E_DONE && g->e[i].key < low) low = g->e[i].key;
    st->next = g->next, st->checkpoint = low;
    st->has_lag_events = d->src == SRC_STREAM;
    if (st->has_lag_events)
        st->lag_events = end > low ? end - low : 0;
    else
        st->lag_positions = end > low ? end - low : 0;
    st->in_flight = group_count_kind(g, E_INFLIGHT), st->retrying = group_count_kind(g, E_RETRY),
    st->held = group_count_kind(g, E_HELD);
    st->push_members = g->push_members, st->waiting_pulls = g->waiting_pulls;
    st->parked = g->npk, st->delivered = g->delivered, st->redelivered = g->redelivered, st->acked = g->acked;
    st->stopped = g->err_code != 0;
    st->err_code = g->err_code, st->err_is_revision = d->src == SRC_STREAM;
    st->err_key = g->err_key, st->err_pos = g->err_pos;
    memcpy(st->err_msg, g->err_msg, sizeof st->err_msg);
    int64_t now = gs->clk.wall_us(gs->clk.ctx), oldest = now;
    for (size_t i = 0; i < g->npk; i++)
        oldest = MIN(oldest, g->pk[i].at);
    if (g->rate_n >= 2) {
        int first = g->rate_n == 11 ? g->rate_i : 0, last = (g->rate_i + 10) % 11;
        double dt = (double)(g->rate_t[last] - g->rate_t[first]) / 1e6;
        if (dt > 0) {
            st->delivery_rate = (double)(g->rate_d[last] - g->rate_d[first]) / dt;
            st->redelivery_rate = (double)(g->rate_r[last] - g->rate_r[first]) / dt;
        }
    }
    st->oldest_parked_s = (double)(now - oldest) / 1e6;
    /* Lag in time: how old the oldest event not yet done is (and, for a stream source, how far
       back in the log it lies). */
    if (end > low) {
        factum_result_t *r = NULL;
        int rc;
        if (d->src == SRC_STREAM)
            rc = factum_read_stream(db, str_c(d->src_name), low, 1, 0, &r, NULL);
        else {
            factum_query_t q = {
                .from = low, .limit = 1, .category = d->src == SRC_CATEGORY ? str_c(d->src_name) : (factum_str_t){0}};
            rc = factum_read_all(db, &q, &r, NULL);
        }
        if (!rc && factum_result_count(r)) {
            const factum_event_t *e = factum_result_event(r, 0);
            st->lag_seconds = MAX(0, (double)(now - e->time_us) / 1e6);
            if (d->src == SRC_STREAM) st->lag_positions = head > e->position ? head - e->position : 0;
        }
        factum_result_free(r);
    }
}

void groups_each_stats(groups_t *gs, void (*fn)(void *ctx, const group_stats *st), void *ctx) {
    size_t n;
    pthread_mutex_lock(&gs->mu);
    group **all = snapshot(gs, &n);
    pthread_mutex_unlock(&gs->mu);
    for (size_t i = 0; i < n; i++) {
        group_stats st;
        pthread_mutex_lock(&all[i]->mu);
        stats_of(gs, all[i], &st);
        group_release(gs, all[i]);
        fn(ctx, &st);
    }
    free(all);
}

static void view_of(groups_t *gs, group *g, groups_view *v) {
    v->config = (buf_t){0};
    group_def_render(&g->d, &v->config);
    stats_of(gs, g, &v->st);
}

int groups_show(groups_t *gs, const char *name, groups_view *v) {
    group *g = group_acquire(gs, name);
    if (!g) return FACTUM_ENOTFOUND;
    view_of(gs, g, v);
    group_release(gs, g);
    return 0;
}

void groups_list(groups_t *gs, groups_view **out, size_t *n) {
    pthread_mutex_lock(&gs->mu);
    group **all = snapshot(gs, n);
    pthread_mutex_unlock(&gs->mu);
    *out = group_xrealloc(NULL, (*n ? *n : 1) * sizeof **out);
    for (size_t i = 0; i < *n; i++) {
        pthread_mutex_lock(&all[i]->mu);
        view_of(gs, all[i], &(*out)[i]);
        group_release(gs, all[i]);
    }
    free(all);
}

/* ---- open ---- */

/* Checkpoints of this group (not of an earlier group of the same name). */
static int pick_checkpoint(void *ctx, const factum_event_t *e) {
    const group *g = ctx;
    if (e->position < g->created_pos) return PICK_STOP;
    return str_eq(e->type, str_c("Checkpoint")) ? PICK_TAKE : PICK_SKIP;
}

/* Where a group's replay starts: its latest Checkpoint, or the beginning. A checkpoint that
   cannot be read is an error: the records before it may be truncated away. */
static int replay_from(factum_t *db, const char *stream, group *g, uint64_t *rev, factum_error_t *err) {
    const factum_event_t *e;
    factum_result_t *r;
    int rc = replay_find_newest(db, stream, pick_checkpoint, g, &e, &r, err);
    *rev = r ? e->revision : 0;
    factum_result_free(r);
    return rc;
}

static void replay_definition(void *ctx, const factum_event_t *e) {
    groups_t *gs = ctx;
    if (str_eq(e->type, str_c("GroupDefined")))
        groups_define_apply(gs, e->data, e->position);
    else if (str_eq(e->type, str_c("GroupDeleted"))) {
        factum_str_t v;
        int kind;
        char name[GROUP_MAX_NAME + 1];
        if (json_member(e->data, "name", &v, &kind) && kind == JSON_STRING && group_str_into(v, name, sizeof name))
            groups_delete_apply(gs, name);
    }
}

static void replay_state(void *ctx, const factum_event_t *e) {
    group *g = ctx;
    if (e->position < g->created_pos) return; /* an earlier group of the same name */
    group_apply(g, e->type, e->data, true);
}

static int64_t mono_now(void *ctx) {
    (void)ctx;
    return clock_mono_us();
}

static int64_t wall_now(void *ctx) {
    (void)ctx;
    return clock_realtime_us();
}

/* $groups, then each group's state from its newest Checkpoint (under its mutex: callers may
   find it meanwhile, once the keeper reads the groups again). */
static int replay_all(groups_t *gs, factum_error_t *err) {
    int rc = replay_stream(gs->db, GROUPS_STREAM, 0, replay_definition, gs, err);
    pthread_mutex_lock(&gs->mu);
    size_t n;
    group **all = snapshot(gs, &n);
    pthread_mutex_unlock(&gs->mu);
    for (size_t i = 0; i < n; i++) {
        group *g = all[i];
        char stream[GROUP_MAX_NAME + 8];
        groups_state_stream(g->name, stream);
        uint64_t from;
        pthread_mutex_lock(&g->mu);
        if (!rc && !(rc = replay_from(gs->db, stream, g, &from, err)))
            rc = replay_stream(gs->db, stream, from, replay_state, g, err);
        group_refloor(g);
        group_release(gs, g);
    }
    free(all);
    return rc;
}

/* Cluster mode (docs/cluster.md, "Engines above the log"): this node leads in a new term, and
   acks, nacks, parks and definitions were written by others meanwhile. Their records are in the
   local log: forget the groups and read them again (a group a caller holds now is freed by its
   last user, as after a delete). Deliveries in flight elsewhere are delivered again: at least
   once. */
static void reload(groups_t *gs) {
    pthread_mutex_lock(&gs->mu);
    while (gs->list) {
        group *g = gs->list;
        gs->list = g->link;
        g->gone = true;
        if (!g->refs) group_free(g);
    }
    owners_clear(&gs->owned);
    pthread_mutex_unlock(&gs->mu);
    factum_error_t err;
    if (replay_all(gs, &err))
        log_msg(LOG_LEVEL_WARN, "reading the consumer groups again as the new leader: %s", err.message);
}

int groups_open_opts(factum_t *db, const groups_opts *o, groups_t **out, factum_error_t *err) {
    groups_t *gs = calloc(1, sizeof *gs);
    if (!gs) return err_set(err, FACTUM_ENOMEM, "out of memory");
    gs->db = db;
    gs->clk =
        o && o->mono_us ? (group_clock){o->mono_us, o->wall_us, o->clock_ctx} : (group_clock){mono_now, wall_now, NULL};
    pthread_mutex_init(&gs->mu, NULL);
    clock_mono_cond_init(&gs->cond); /* the keeper's wait */
    factum_leads(db, &gs->term);
    int rc = replay_all(gs, err);
    if (!rc && !(o && o->no_keeper)) {
        if (pthread_create(&gs->keeper, NULL, keeper, gs))
            rc = err_set(err, FACTUM_ENOMEM, "cannot start a thread");
        else
            gs->has_keeper = true;
    }
    if (rc) {
        groups_close(gs);
        return rc;
    }
    *out = gs;
    return 0;
}

int groups_open(factum_t *db, groups_t **out, factum_error_t *err) { return groups_open_opts(db, NULL, out, err); }

void groups_close(groups_t *gs) {
    if (!gs) return;
    pthread_mutex_lock(&gs->mu);
    gs->stop = true;
    pthread_cond_signal(&gs->cond);
    pthread_mutex_unlock(&gs->mu);
    if (gs->has_keeper) pthread_join(gs->keeper, NULL);
    while (gs->list) {
        group *g = gs->list;
        gs->list = g->link;
        group_free(g);
    }
    pthread_mutex_destroy(&gs->mu);
    owners_free(&gs->owned);
    free(gs);
}
