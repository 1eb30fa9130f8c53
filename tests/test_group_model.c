/*
 * test_group_model.c — property test of the consumer-group state machine (src/group/): random
 * pulls, acks, nacks (retry with or without a delay, park, skip), ack timeouts on a fake clock,
 * replays of parked events, new events, and restarts, checked against a trivially simple model
 * of each event: new, in flight (id and attempt), waiting for a retry (due between two times),
 * done, or parked. Records are written and applied as the server does (decide, append, apply the
 * record written). It checks what docs/groups.md promises: no delivery after an ack or skip, no
 * delivery id used twice, attempts counted from 1 and again from 1 after a replay, a retry at
 * max_deliveries (or after a replay) parks, a due retry or a new event is handed out when asked,
 * by_stream never hands out an event while an earlier one of its stream is not done — and that
 * a restart (replay of the records, from a Checkpoint when there is one) rebuilds the same state
 * as the live one. At the end every event is delivered and done: at least once.
 */
#include "test.h"

#include "../src/group/group.h"

#include <stdlib.h>
#include <string.h>

#define NSTREAMS 3
#define MAXPOS (1 << 16) /* keys are positions: state records take positions too */
#define MAXKEYS 4096
#define STEPS 12000
#define ACK_TIMEOUT_MS 1000
#define MIN_DELAY_MS 100
#define MAX_DELAY_MS 400
#define MAX_DELIVERIES 3
#define WALL_OFFSET_US 1700000000000000ll

enum { M_NEW, M_FLIGHT, M_WAIT, M_DONE, M_PARKED };

typedef struct mkey {
    bool used;
    int stream, state;
    uint32_t ids;      /* deliveries so far (the last delivery id's attempt) */
    uint32_t attempt;  /* the client's count of the last delivery (from 1; from 1 after a replay) */
    bool replayed;     /* delivered again from the parked set: a failure parks it */
    int64_t due_lo_us; /* waiting: not before; */
    int64_t due_hi_us; /* and surely by */
    bool delivered;
} mkey;

static mkey m[MAXPOS];
static uint64_t used[MAXKEYS]; /* the source's events, oldest first */
static size_t nused, lo;       /* used[lo] is the oldest not done (done is for good) */
static int64_t now_us = 1000000;
static int64_t mono(void *ctx) { return (void)ctx, now_us; }
static int64_t wall(void *ctx) { return (void)ctx, now_us + WALL_OFFSET_US; }
static const groups_opts opts = {mono, wall, NULL, true};
static bool by_stream;

static void append_events(factum_t *db, int n) {
    for (int i = 0; i < n; i++) {
        int s = (int)(test_rand() % NSTREAMS);
        char stream[16];
        snprintf(stream, sizeof stream, "m-%d", s);
        factum_append_result_t r;
        CHECK_RC(test_append(db, stream, FACTUM_EXPECT_ANY, "T", "{}", NULL, &r), 0);
        CHECK(r.first_position < MAXPOS && nused < MAXKEYS);
        m[r.first_position] = (mkey){.used = true, .stream = s, .state = M_NEW};
        used[nused++] = r.first_position;
    }
}

/* Appends a decided record to $group-g and applies the record written, as the server does. */
static void write_change(factum_t *db, groups_t *gs, const char *type, groups_change *ch) {
    if (ch->n) {
        factum_event_t ev = {.type = str_c(type), .data = {ch->rec.ptr, ch->rec.len}, .data_format = FACTUM_DATA_JSON};
        CHECK_RC(factum_append(db, str_c("$group-g"), FACTUM_EXPECT_ANY, &ev, 1, NULL, NULL), 0);
        groups_apply(gs, "g", str_c(type), (factum_str_t){ch->rec.ptr, ch->rec.len});
    }
    groups_change_free(ch);
}

static groups_t *open_groups(factum_t *db) {
    groups_t *gs;
    CHECK_RC(groups_open_opts(db, &opts, &gs, NULL), 0);
    return gs;
}

/* Whether every earlier event of k's stream is done (by_stream's order). */
static bool stream_clear(uint64_t k) {
    for (size_t u = lo; u < nused && used[u] < k; u++)
        if (m[used[u]].stream == m[k].stream && m[used[u]].state != M_DONE) return false;
    return true;
}

/* Whether the engine must hand k out to a pull now. */
static bool surely_deliverable(uint64_t k) {
    if (!m[k].used || !(m[k].state == M_NEW || (m[k].state == M_WAIT && m[k].due_hi_us <= now_us))) return false;
    return !by_stream || stream_clear(k);
}

static void do_pull(groups_t *gs) {
    size_t max = 1 + test_rand() % 6;
    groups_batch b = {0};
    CHECK_RC(groups_pull(gs, "g", max, 0, &b, NULL), 0);
    CHECK(b.n <= max);
    for (size_t i = 0; i < b.n; i++) {
        const groups_delivery *d = &b.d[i];
        CHECK(d->key < MAXPOS && m[d->key].used);
        mkey *x = &m[d->key];
        CHECK_MSG(x->state == M_NEW || x->state == M_WAIT,
                  "key %llu handed out in state %d (done, parked or in flight)", (unsigned long long)d->key, x->state);
        if (x->state == M_WAIT) CHECK_MSG(now_us >= x->due_lo_us, "a retry handed out before it was due");
        if (by_stream)
            CHECK_MSG(stream_clear(d->key), "by_stream: key %llu before its stream's earlier events",
                      (unsigned long long)d->key);
        CHECK_EQ(d->id_attempt, x->ids + 1);
        CHECK_EQ(d->attempt, x->attempt + 1);
        CHECK_EQ(d->event->position, d->key);
        x->ids++, x->attempt++, x->state = M_FLIGHT, x->delivered = true;
        x->due_lo_us = x->due_hi_us = now_us + ACK_TIMEOUT_MS * 1000; /* its deadline */
    }
    size_t got = b.n;
    groups_batch_free(&b);
    if (got < max)
        for (size_t u = lo, k = 0; u < nused && (k = used[u], 1); u++)
            CHECK_MSG(!surely_deliverable(k), "key %llu (state %d) was due but a pull of %zu handed out %zu",
                      (unsigned long long)k, m[k].state, max, got);
}

/* A random batch of delivery ids: some in flight, sometimes a stale one. */
static size_t pick_ids(buf_t *body, uint64_t *keys, size_t cap) {
    size_t n = 0;
    buf_printf(body, "{\"delivery_ids\":[");
    for (size_t u = lo, k = 0; u < nused && n < cap && (k = used[u], 1); u++) {
        bool stale = m[k].used && m[k].ids && m[k].state != M_FLIGHT && test_rand() % 8 == 0;
        if (!(m[k].used && m[k].state == M_FLIGHT && test_rand() % 2) && !stale) continue;
        buf_printf(body, "%s\"%llu.%u\"", n ? "," : "", (unsigned long long)k, m[k].ids);
        keys[n++] = k;
    }
    return n;
}

static void do_ack(factum_t *db, groups_t *gs) {
    buf_t body = {0};
    uint64_t keys[MAXKEYS];
    size_t n = pick_ids(&body, keys, MAXKEYS);
    buf_printf(&body, "]}");
    groups_change ch = {0};
    int rc = groups_ack_prepare(gs, "g", (factum_str_t){body.ptr, body.len}, &ch, NULL);
    /* In flight as that attempt: taken. Done or parked (both done for the floor): accepted again
       (acks are idempotent). The rest (waiting for a retry): refused. */
    size_t taken = 0, refused = 0;
    for (size_t i = 0; i < n; i++)
        taken += m[keys[i]].state == M_FLIGHT, refused += m[keys[i]].state == M_WAIT;
    CHECK_RC(rc, n && refused == n ? FACTUM_ECONFLICT : 0);
    for (size_t i = 0; i < ch.nrefused; i++)
        CHECK_MSG(m[ch.refused[i].key].state == M_WAIT, "ack of %llu.%u refused (%s) in state %d",
                  (unsigned long long)ch.refused[i].key, ch.refused[i].attempt, ch.refused[i].reason,
                  m[ch.refused[i].key].state);
    CHECK_EQ(ch.nrefused, refused);
    if (!rc) CHECK_EQ(ch.n, taken);
    write_change(db, gs, "Acked", &ch);
    for (size_t i = 0; i < n && !rc; i++)
        if (m[keys[i]].state == M_FLIGHT) m[keys[i]].state = M_DONE;
    buf_free(&body);
}

/* What a retry (or a timeout) of x does: wait, or park. delay_ms < 0: back off. */
static void model_retry(mkey *x, int64_t delay_ms) {
    if (x->replayed || x->attempt >= MAX_DELIVERIES) {
        x->state = M_PARKED;
        return;
    }
    int64_t d = MIN_DELAY_MS;
    for (uint32_t i = 1; i < x->attempt && d < MAX_DELAY_MS; i++)
        d *= 2;
    d = (d < MAX_DELAY_MS ? d : MAX_DELAY_MS) * 1000;
    x->state = M_WAIT;
    if (delay_ms >= 0)
        x->due_lo_us = x->due_hi_us = now_us + delay_ms * 1000;
    else
        x->due_lo_us = now_us + d - d / 5, x->due_hi_us = now_us + d + d / 5;
}

static void do_nack(factum_t *db, groups_t *gs) {
    static const char *const actions[] = {"retry", "retry", "park", "skip"};
    const char *action = actions[test_rand() % 4];
    int64_t delay = test_rand() % 3 == 0 ? (int64_t)(test_rand() % 500) : -1;
    buf_t body = {0};
    uint64_t keys[MAXKEYS];
    size_t n = pick_ids(&body, keys, MAXKEYS);
    buf_printf(&body, "],\"action\":\"%s\",\"reason\":\"r\"", action);
    if (delay >= 0) buf_printf(&body, ",\"delay_ms\":%lld", (long long)delay);
    buf_append(&body, "}", 1);
    groups_change ch = {0};
    int rc = groups_nack_prepare(gs, "g", (factum_str_t){body.ptr, body.len}, &ch, NULL);
    size_t taken = 0;
    for (size_t i = 0; i < n; i++)
        taken += m[keys[i]].state == M_FLIGHT;
    CHECK_RC(rc, n && !taken ? FACTUM_ECONFLICT : 0);
    CHECK_EQ(ch.nrefused, n - taken);
    write_change(db, gs, "Nacked", &ch);
    for (size_t i = 0; i < n && !rc; i++) {
        mkey *x = &m[keys[i]];
        if (x->state != M_FLIGHT) continue;
        if (!strcmp(action, "skip"))
            x->state = M_DONE;
        else if (!strcmp(action, "park"))
            x->state = M_PARKED;
        else
            model_retry(x, delay);
    }
    buf_free(&body);
}

/* Time passes; the keeper's round times out what missed its ack deadline: a retry, or parked at
   the limit (or after a replay). */
static void do_time(groups_t *gs, int64_t ms) {
    now_us += ms * 1000;
    for (size_t u = lo, k = 0; u < nused && (k = used[u], 1); u++)
        if (m[k].used && m[k].state == M_FLIGHT && m[k].due_hi_us <= now_us) model_retry(&m[k], -1);
    groups_tick(gs);
}

static void do_replay(factum_t *db, groups_t *gs) {
    groups_change ch = {0};
    int rc = groups_parked_prepare(gs, "g", (factum_str_t){"", 0}, NULL, &ch, NULL);
    CHECK_RC(rc, 0);
    size_t npk = 0;
    for (size_t u = lo, k = 0; u < nused && (k = used[u], 1); u++)
        npk += m[k].used && m[k].state == M_PARKED;
    CHECK_EQ(ch.n, npk);
    write_change(db, gs, "Replayed", &ch);
    for (size_t u = lo, k = 0; u < nused && (k = used[u], 1); u++)
        if (m[k].used && m[k].state == M_PARKED)
            m[k].state = M_WAIT, m[k].attempt = 0, m[k].replayed = true, m[k].due_lo_us = m[k].due_hi_us = 0;
}

/* The engine's state of group g, as replay can rebuild it: entries (not held ones) and npk. */
typedef struct dump {
    uint64_t floor;
    size_t n, npk;
    entry e[4 * MAXKEYS];
    parked pk[4 * MAXKEYS];
} dump;

static int cmp_entry(const void *a, const void *b) {
    uint64_t x = ((const entry *)a)->key, y = ((const entry *)b)->key;
    return x < y ? -1 : x > y;
}

static int cmp_parked(const void *a, const void *b) {
    uint64_t x = ((const parked *)a)->key, y = ((const parked *)b)->key;
    return x < y ? -1 : x > y;
}

static void take_dump(groups_t *gs, dump *d) {
    memset(d, 0, sizeof *d);
    group *g = group_acquire(gs, "g");
    CHECK(g != NULL);
    d->floor = g->floor;
    for (size_t i = 0; i < g->n; i++) {
        entry x = g->e[i];
        if (x.kind == E_HELD) continue; /* not recorded: read again from the floor */
        CHECK(x.kind != E_INFLIGHT && x.kind != E_PARKING);
        if (x.kind == E_RETRY && x.t < now_us) x.t = now_us; /* due already: when does not matter */
        x.member = 0, x.mark = false;
        d->e[d->n++] = x;
    }
    if (g->npk) memcpy(d->pk, g->pk, g->npk * sizeof *g->pk);
    d->npk = g->npk;
    group_release(gs, g);
    qsort(d->e, d->n, sizeof *d->e, cmp_entry);
    qsort(d->pk, d->npk, sizeof *d->pk, cmp_parked);
}

static dump before, after;

static const entry *find_entry(const dump *d, uint64_t key) {
    for (size_t i = 0; i < d->n; i++)
        if (d->e[i].key == key) return &d->e[i];
    return NULL;
}

/* Every delivery times out (so nothing is in flight), then the engine is rebuilt from its
   records: it must hold the same state. */
static groups_t *do_restart(factum_t *db, groups_t *gs) {
    do_time(gs, ACK_TIMEOUT_MS + 1);
    take_dump(gs, &before);
    groups_close(gs);
    gs = open_groups(db);
    take_dump(gs, &after);
    /* Acked records carry a lower bound of the floor, so a replayed floor may be lower: compare
       what each event is — done (a done entry, or none below the floor), waiting (how many deliveries,
       since when counted, due when), or new — not how it is stored. */
    CHECK(after.floor <= before.floor);
    for (size_t u = 0, k = 0; u < nused && (k = used[u], 1); u++) {
        if (!m[k].used) continue;
        const entry *a = find_entry(&before, k), *b = find_entry(&after, k);
        /* an entry says what it is (a replayed parked event may lie below the floor); below the
           floor without one: done; above: new */
        int ka = a ? a->kind : k < before.floor ? E_DONE : -1, kb = b ? b->kind : k < after.floor ? E_DONE : -1;
        CHECK_MSG(ka == kb, "key %llu: %d live, %d after replay", (unsigned long long)k, ka, kb);
        if (ka != E_RETRY) continue;
        CHECK_MSG(a->attempt == b->attempt && a->base == b->base && a->replayed == b->replayed && a->pos == b->pos &&
                      a->sh == b->sh && a->t == b->t,
                  "key %llu waits differently after replay: attempt %u/%u due %lld/%lld", (unsigned long long)k,
                  a->attempt, b->attempt, (long long)a->t, (long long)b->t);
    }
    CHECK_EQ(after.npk, before.npk);
    for (size_t i = 0; i < before.npk; i++)
        CHECK_MSG(before.pk[i].key == after.pk[i].key && before.pk[i].pos == after.pk[i].pos &&
                      before.pk[i].sh == after.pk[i].sh && before.pk[i].attempts == after.pk[i].attempts &&
                      before.pk[i].at == after.pk[i].at && !strcmp(before.pk[i].reason, after.pk[i].reason),
                  "parked %llu differs after replay: attempts %u/%u at %lld/%lld reason '%s'/'%s'",
                  (unsigned long long)before.pk[i].key, before.pk[i].attempts, after.pk[i].attempts,
                  (long long)before.pk[i].at, (long long)after.pk[i].at, before.pk[i].reason, after.pk[i].reason);
    return gs;
}

static void model_run(bool stream_order) {
    by_stream = stream_order;
    factum_t *db = test_open(test_dir(), NULL);
    append_events(db, 30);
    groups_t *gs = open_groups(db);
    char def[256];
    snprintf(def, sizeof def,
             "{\"source\":{\"category\":\"m\"},\"start\":\"earliest\",\"strategy\":\"%s\",\"ack_timeout_ms\":%d,"
             "\"max_deliveries\":%d,\"retry\":{\"min_delay_ms\":%d,\"max_delay_ms\":%d}}",
             by_stream ? "by_stream" : "round_robin", ACK_TIMEOUT_MS, MAX_DELIVERIES, MIN_DELAY_MS, MAX_DELAY_MS);
    groups_change ch = {0};
    bool created;
    CHECK_RC(groups_define_prepare(gs, "g", str_c(def), NULL, &ch.rec, &created, NULL), 0);
    factum_event_t ev = {
        .type = str_c("GroupDefined"), .data = {ch.rec.ptr, ch.rec.len}, .data_format = FACTUM_DATA_JSON};
    factum_append_result_t r;
    CHECK_RC(factum_append(db, str_c(GROUPS_STREAM), FACTUM_EXPECT_ANY, &ev, 1, &r, NULL), 0);
    groups_define_apply(gs, (factum_str_t){ch.rec.ptr, ch.rec.len}, r.first_position);
    groups_change_free(&ch);
    int restarts = 0;
    for (int step = 0; step < STEPS; step++) {
        while (lo < nused && m[used[lo]].state == M_DONE)
            lo++;
        uint64_t op = test_rand() % 100;
        if (op < 35)
            do_pull(gs);
        else if (op < 55)
            do_ack(db, gs);
        else if (op < 70)
            do_nack(db, gs);
        else if (op < 88)
            do_time(gs, (int64_t)(test_rand() % 700));
        else if (op < 92)
            do_replay(db, gs);
        else if (op < 98) {
            if (nused - lo < 40 && nused < MAXKEYS - 4) append_events(db, 1 + (int)(test_rand() % 4));
        } else {
            gs = do_restart(db, gs);
            restarts++;
        }
    }
    CHECK(restarts > 10);
    /* Some restarts replayed from a Checkpoint (one per CHECKPOINT_EVERY state records). */
    size_t checkpoints = 0;
    factum_result_t *res;
    CHECK_RC(factum_read_stream(db, str_c("$group-g"), 0, 100000, 0, &res, NULL), 0);
    for (size_t i = 0; i < factum_result_count(res); i++)
        checkpoints += str_eq(factum_result_event(res, i)->type, str_c("Checkpoint"));
    factum_result_free(res);
    CHECK_MSG(checkpoints > 0, "no Checkpoint in %d steps", STEPS);
    /* At least once: acknowledge everything handed out, replay what is parked, until all is done. */
    for (int round = 0; round < 200; round++) {
        size_t open = 0;
        for (size_t u = lo, k = 0; u < nused && (k = used[u], 1); u++)
            open += m[k].used && m[k].state != M_DONE;
        if (!open) break;
        do_time(gs, MAX_DELAY_MS * 2);
        do_pull(gs);
        buf_t body = {0};
        buf_printf(&body, "{\"delivery_ids\":[");
        size_t n = 0;
        for (size_t u = lo, k = 0; u < nused && (k = used[u], 1); u++)
            if (m[k].used && m[k].state == M_FLIGHT)
                buf_printf(&body, "%s\"%llu.%u\"", n++ ? "," : "", (unsigned long long)k, m[k].ids),
                    m[k].state = M_DONE;
        buf_printf(&body, "]}");
        groups_change ack = {0};
        CHECK_RC(groups_ack_prepare(gs, "g", (factum_str_t){body.ptr, body.len}, &ack, NULL), 0);
        write_change(db, gs, "Acked", &ack);
        buf_free(&body);
        if (round % 10 == 9) do_replay(db, gs);
    }
    for (size_t u = 0, k = 0; u < nused && (k = used[u], 1); u++)
        CHECK_MSG(!m[k].used || (m[k].state == M_DONE && m[k].delivered), "key %llu never done (state %d)",
                  (unsigned long long)k, m[k].state);
    group_stats st;
    groups_view v;
    CHECK_RC(groups_show(gs, "g", &v), 0);
    st = v.st;
    buf_free(&v.config);
    CHECK_EQ(st.in_flight + st.retrying + st.parked, 0);
    groups_close(gs);
    factum_close(db);
}

TEST_T(group_round_robin_answers_like_a_simple_model_under_random_operations, 120) { model_run(false); }

TEST_T(group_by_stream_answers_like_a_simple_model_under_random_operations, 120) { model_run(true); }
