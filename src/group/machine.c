/*
 * machine.c — a consumer group's state machine, with no store I/O and no locks (the caller holds
 * the group's mutex). Entries hold what is in flight, due for retry, being parked, held for
 * their stream, or done above the floor; the floor is the lowest key not done (everything below
 * it is done). Both are indexed by key (keyidx), so a pull, an ack and a replay touch each entry
 * a bounded number of times.
 *
 * Decide, record, apply: group_ack_decide, group_nack_decide and group_parked_decide check a
 * request against the state and render the record to write, changing nothing; group_apply
 * applies a durable record, the one function both the live path (with the record it wrote, never
 * read back) and start-up replay use.
 *
 * A group's cursor is in "keys": revisions for a stream source, positions for a category or $all
 * source. Each Acked record carries the floor, so a restart resumes there and skips the done keys
 * above it.
 */
#include "group.h"

#include "../base/log.h"
#include "../base/json.h"

#include <stdio.h>
#include <stdlib.h>

/* The server aborts on out-of-memory rather than drop state (STYLE.md). */
void *group_xrealloc(void *p, size_t n) {
    void *q = realloc(p, n);
    if (!q && n) {
        log_msg(LOG_LEVEL_ERROR, "out of memory (consumer groups, %zu bytes)", n);
        abort();
    }
    return q;
}

/* ---- keyidx: key -> slot, open addressing with linear probing ---- */

static uint64_t key_at(const void *arr, size_t stride, size_t i) {
    uint64_t k;
    memcpy(&k, (const char *)arr + i * stride, sizeof k); /* the key is every element's first member */
    return k;
}

static size_t home(const keyidx *ix, uint64_t key) {
    return (size_t)((key * 0x9E3779B97F4A7C15ull) >> 17) & (ix->cap - 1);
}

static void slot_put(keyidx *ix, uint64_t key, size_t idx) {
    size_t h = home(ix, key);
    while (ix->slot[h])
        h = (h + 1) & (ix->cap - 1);
    ix->slot[h] = (uint32_t)idx + 1;
}

void keyidx_rebuild(keyidx *ix, const void *arr, size_t stride, size_t n) {
    size_t cap = 64;
    while (cap < 2 * n + 2)
        cap *= 2;
    if (cap != ix->cap) ix->slot = group_xrealloc(ix->slot, cap * sizeof *ix->slot), ix->cap = cap;
    memset(ix->slot, 0, cap * sizeof *ix->slot);
    for (size_t i = 0; i < n; i++)
        slot_put(ix, key_at(arr, stride, i), i);
}

size_t keyidx_find(const keyidx *ix, const void *arr, size_t stride, uint64_t key) {
    if (!ix->cap) return SIZE_MAX;
    for (size_t h = home(ix, key); ix->slot[h]; h = (h + 1) & (ix->cap - 1))
        if (key_at(arr, stride, ix->slot[h] - 1) == key) return ix->slot[h] - 1;
    return SIZE_MAX;
}

void keyidx_put(keyidx *ix, const void *arr, size_t stride, size_t n, uint64_t key, size_t idx) {
    if (2 * n + 2 > ix->cap)
        keyidx_rebuild(ix, arr, stride, n); /* arr holds the new element at idx already */
    else
        slot_put(ix, key, idx);
}

void keyidx_del(keyidx *ix, const void *arr, size_t stride, uint64_t key) {
    if (!ix->cap) return;
    size_t h = home(ix, key), mask = ix->cap - 1;
    while (ix->slot[h] && key_at(arr, stride, ix->slot[h] - 1) != key)
        h = (h + 1) & mask;
    if (!ix->slot[h]) return;
    /* Backward shift: move later members of the probe run into the hole where their home allows. */
    for (size_t j = (h + 1) & mask; ix->slot[j]; j = (j + 1) & mask) {
        size_t k = home(ix, key_at(arr, stride, ix->slot[j] - 1));
        if (((j - k) & mask) >= ((j - h) & mask)) ix->slot[h] = ix->slot[j], h = j;
    }
    ix->slot[h] = 0;
}

/* ---- entries ---- */

entry *group_entry_of(group *g, uint64_t key) {
    size_t i = keyidx_find(&g->ei, g->e, sizeof *g->e, key);
    return i == SIZE_MAX ? NULL : &g->e[i];
}

entry *group_entry_add(group *g, uint64_t key, uint64_t pos) {
    if (g->n == g->cap) {
        size_t cap = g->cap ? g->cap * 2 : 256;
        g->e = group_xrealloc(g->e, cap * sizeof *g->e), g->cap = cap;
    }
    entry *x = &g->e[g->n++];
    *x = (entry){.key = key, .pos = pos};
    keyidx_put(&g->ei, g->e, sizeof *g->e, g->n, key, g->n - 1);
    return x;
}

/* The floor: the lowest key not done, never lower than before; drops done entries below it. */
void group_refloor(group *g) {
    uint64_t f = g->next;
    for (size_t i = 0; i < g->n; i++)
        if (g->e[i].kind != E_DONE && g->e[i].key < f) f = g->e[i].key;
    /* The floor never moves back: a parked event replayed from below it has an entry of its own.
       Lowering it would forget the done events between (their entries are gone), and a restart
       from a Checkpoint would read and deliver them again. */
    g->floor = MAX(g->floor, f);
    size_t w = 0;
    for (size_t i = 0; i < g->n; i++)
        if (!(g->e[i].kind == E_DONE && g->e[i].key < f)) g->e[w++] = g->e[i];
    if (w < g->n) {
        g->n = w;
        keyidx_rebuild(&g->ei, g->e, sizeof *g->e, g->n);
    }
}

size_t group_count_kind(const group *g, int kind) {
    size_t n = 0;
    for (size_t i = 0; i < g->n; i++)
        n += g->e[i].kind == kind;
    return n;
}

static uint64_t backoff_us(const group_def *g, uint32_t attempt) {
    /* min * 2^(attempt-1), at most max, then +-20% jitter. */
    uint64_t d = g->min_delay_ms;
    for (uint32_t i = 1; i < attempt && d < g->max_delay_ms; i++)
        d *= 2;
    d = MIN(d, (uint64_t)g->max_delay_ms) * 1000;
    uint64_t j = d / 5;
    return j ? d - j + hash64(&attempt, sizeof attempt, (uint64_t)clock_mono_ns()) % (2 * j + 1) : d;
}

/* A retry's due time from a record (the wall clock, µs) as a CLOCK_MONOTONIC one: what is left
   of it by the wall clock now, but never more than was asked when the record was written
   (due - at; a wall clock stepped back does not hold a retry back), nor less than 0. */
static int64_t due_mono(const group *g, uint64_t due, uint64_t at) {
    int64_t left = (int64_t)MIN(due, (uint64_t)INT64_MAX) - g->clk->wall_us(g->clk->ctx);
    if (at && due >= at) left = MIN(left, (int64_t)MIN(due - at, (uint64_t)INT64_MAX / 2));
    return g->clk->mono_us(g->clk->ctx) + MAX(0, left);
}

static void park(group *g, uint64_t key, uint64_t pos, uint64_t sh, uint32_t attempts, int64_t at,
                 factum_str_t reason) {
    if (g->npk == g->cappk) {
        size_t cap = g->cappk ? g->cappk * 2 : 64;
        g->pk = group_xrealloc(g->pk, cap * sizeof *g->pk), g->cappk = cap;
    }
    parked *p = &g->pk[g->npk++];
    *p = (parked){key, pos, sh, attempts, at, ""};
    keyidx_put(&g->pi, g->pk, sizeof *g->pk, g->npk, key, g->npk - 1);
    snprintf(p->reason, sizeof p->reason, "%.*s", (int)reason.len, reason.ptr ? reason.ptr : "");
    g->parked_total++;
}

parked *group_parked_of(group *g, uint64_t key) {
    size_t i = keyidx_find(&g->pi, g->pk, sizeof *g->pk, key);
    return i == SIZE_MAX ? NULL : &g->pk[i];
}

static void unpark(group *g, parked *p) {
    size_t i = (size_t)(p - g->pk), last = g->npk - 1;
    keyidx_del(&g->pi, g->pk, sizeof *g->pk, p->key);
    if (i != last) {
        keyidx_del(&g->pi, g->pk, sizeof *g->pk, g->pk[last].key);
        g->pk[i] = g->pk[last];
        keyidx_put(&g->pi, g->pk, sizeof *g->pk, last, g->pk[i].key, i);
    }
    g->npk--;
}

/*
 * Applies one durable state record, live or at start-up (the one code path for both):
 *   Acked {keys, floor}
 *   Nacked {items: [{key, pos, attempt, to: retry|park|skip, due}], reason, at}
 *   Replayed {keys}      parked -> delivered again, attempts from 0
 *   ParkedDeleted {keys}
 */
void group_apply(group *g, factum_str_t type, factum_str_t data, bool replaying) {
    factum_str_t arr, v;
    int kind;
    uint64_t key;
    json_iter_t it;
    g->since_checkpoint++;
    if (str_eq(type, str_c("Checkpoint"))) {
        /* The whole state at that point of the log (written when nothing else was in flight). */
        uint64_t floor = 0, cp_at = 0;
        json_member_u64(data, "floor", &floor);
        json_member_u64(data, "at", &cp_at); /* when it was written (older ones have none) */
        g->n = 0, g->npk = 0, g->next = g->floor = floor, g->since_checkpoint = 0;
        keyidx_rebuild(&g->ei, g->e, sizeof *g->e, 0);
        keyidx_rebuild(&g->pi, g->pk, sizeof *g->pk, 0);
        if (json_member(data, "entries", &arr, &kind) && kind == JSON_ARRAY) {
            json_iter_init(&it, arr);
            while (json_iter_element(&it, &v, &kind) == 1) {
                uint64_t pos = 0, sh = 0, attempt = 0, due = 0, done = 0, base = 0, replayed = 0;
                if (kind != JSON_OBJECT || !json_member_u64(v, "key", &key)) continue;
                json_member_u64(v, "pos", &pos), json_member_u64(v, "sh", &sh), json_member_u64(v, "attempt", &attempt),
                    json_member_u64(v, "due", &due);
                json_member_u64(v, "done", &done), json_member_u64(v, "base", &base),
                    json_member_u64(v, "replayed", &replayed);
                entry *x = group_entry_add(g, key, pos);
                if (x)
                    x->sh = sh, x->attempt = (uint32_t)attempt, x->kind = done ? E_DONE : E_RETRY,
                    x->t = due_mono(g, due, cp_at), x->base = (uint32_t)MIN(base, attempt), x->replayed = replayed != 0;
            }
        }
        if (json_member(data, "parked", &arr, &kind) && kind == JSON_ARRAY) {
            json_iter_init(&it, arr);
            while (json_iter_element(&it, &v, &kind) == 1) {
                uint64_t pos = 0, sh = 0, attempts = 0, at = 0;
                factum_str_t raw;
                int rk;
                buf_t reason = {0};
                if (kind != JSON_OBJECT || !json_member_u64(v, "key", &key)) continue;
                json_member_u64(v, "pos", &pos), json_member_u64(v, "sh", &sh),
                    json_member_u64(v, "attempts", &attempts), json_member_u64(v, "at", &at);
                if (json_member(v, "reason", &raw, &rk) && rk == JSON_STRING) json_unescape(raw, &reason);
                park(g, key, pos, sh, (uint32_t)attempts, (int64_t)at, (factum_str_t){reason.ptr, reason.len});
                buf_free(&reason);
            }
        }
    } else if (str_eq(type, str_c("Acked"))) {
        uint64_t floor = 0;
        if (replaying && json_member_u64(data, "floor", &floor) && floor > g->next) g->next = floor;
        if (replaying && floor > g->floor) g->floor = floor; /* everything below it is done (see Nacked) */
        if (!json_member(data, "keys", &arr, &kind) || kind != JSON_ARRAY) return;
        json_iter_init(&it, arr);
        while (json_iter_element(&it, &v, &kind) == 1) {
            if (kind != JSON_NUMBER || !str_u64(v, &key)) continue;
            entry *x = group_entry_of(g, key);
            /* A key below the record's floor needs no entry of its own (the floor says it is
               done), but one that exists — from a Checkpoint that saw it in flight — must be
               marked, or it would be delivered again. */
            if (!x && replaying && key >= floor) x = group_entry_add(g, key, 0);
            if (x && x->kind != E_DONE) x->kind = E_DONE, g->acked++;
        }
    } else if (str_eq(type, str_c("Nacked"))) {
        factum_str_t reason = {"", 0}, raw;
        buf_t rb = {0};
        uint64_t at = 0;
        if (json_member(data, "reason", &raw, &kind) && kind == JSON_STRING && !json_unescape(raw, &rb))
            reason = (factum_str_t){rb.ptr, rb.len};
        json_member_u64(data, "at", &at);
        if (json_member(data, "items", &arr, &kind) && kind == JSON_ARRAY) {
            json_iter_init(&it, arr);
            while (json_iter_element(&it, &v, &kind) == 1) {
                uint64_t pos = 0, attempt = 0, due = 0, sh = 0;
                factum_str_t to;
                int tk;
                if (kind != JSON_OBJECT || !json_member_u64(v, "key", &key) || !json_member(v, "to", &to, &tk))
                    continue;
                json_member_u64(v, "pos", &pos), json_member_u64(v, "attempt", &attempt),
                    json_member_u64(v, "due", &due), json_member_u64(v, "sh", &sh);
                entry *x = group_entry_of(g, key);
                /* An acknowledgement wins over a nack or timeout that crossed it: an event that is
                   done (or below the floor, so done) stays done. */
                if ((x && x->kind == E_DONE) || (!x && key < g->floor)) continue;
                if (!x) x = group_entry_add(g, key, pos);
                if (!x) continue;
                x->pos = pos, x->attempt = (uint32_t)attempt, x->sh = sh;
                if (json_key_is(to, "retry"))
                    x->kind = E_RETRY, x->t = due_mono(g, due, at);
                else if (json_key_is(to, "skip"))
                    x->kind = E_DONE;
                else {
                    x->kind = E_DONE; /* parked counts as done for the floor; it lives in the parked set */
                    if (!group_parked_of(g, key)) park(g, key, pos, sh, (uint32_t)attempt, (int64_t)at, reason);
                }
            }
        }
        buf_free(&rb);
    } else if (str_eq(type, str_c("Replayed")) || str_eq(type, str_c("ParkedDeleted"))) {
        bool replay = str_eq(type, str_c("Replayed"));
        if (!json_member(data, "keys", &arr, &kind) || kind != JSON_ARRAY) return;
        json_iter_init(&it, arr);
        while (json_iter_element(&it, &v, &kind) == 1) {
            parked *p;
            if (kind != JSON_NUMBER || !str_u64(v, &key) || !(p = group_parked_of(g, key))) continue;
            uint64_t pos = p->pos, sh = p->sh;
            uint32_t attempts = p->attempts;
            unpark(g, p);
            if (!replay) continue;
            entry *x = group_entry_of(g, key);
            if (!x) x = group_entry_add(g, key, pos);
            /* Delivered again with its attempt count reset (the next delivery is attempt 1; its id
               goes on from the deliveries before, so no id is reused), once: a failure parks it
               again rather than loop. */
            if (x)
                x->kind = E_RETRY, x->t = 0, x->attempt = x->base = attempts, x->replayed = true, x->pos = pos,
                x->sh = sh;
        }
    }
    group_refloor(g);
}

/* ---- deciding an ack, a nack, a replay ---- */

/* Parses "KEY.ATTEMPT". */
static bool delivery_id(factum_str_t s, uint64_t *key, uint32_t *attempt) {
    const char *dot = memchr(s.ptr, '.', s.len);
    uint64_t a;
    if (!dot || !str_u64((factum_str_t){s.ptr, (size_t)(dot - s.ptr)}, key) ||
        !str_u64((factum_str_t){dot + 1, s.len - (size_t)(dot - s.ptr) - 1}, &a) || a == 0 || a > UINT32_MAX)
        return false;
    *attempt = (uint32_t)a;
    return true;
}

/* One element of "delivery_ids": a string "KEY.ATTEMPT". 0, or FACTUM_EINVAL. */
static int element_id(factum_str_t v, int kind, uint64_t *key, uint32_t *attempt, factum_error_t *err) {
    buf_t s = {0};
    bool ok = kind == JSON_STRING && !json_unescape(v, &s) &&
              delivery_id((factum_str_t){s.ptr ? s.ptr : "", s.len}, key, attempt);
    buf_free(&s);
    return ok ? 0 : err_set(err, FACTUM_EINVAL, "delivery ids look like \"123.1\"");
}

/* Whether a retry of x parks it instead: past max_deliveries, or delivered again after a replay. */
bool group_retry_parks(const group *g, const entry *x) {
    return x->replayed || x->attempt - x->base >= g->d.max_deliveries;
}

/* Why delivery KEY.ATTEMPT cannot be acked or nacked: it is not in flight as that attempt. */
static const char *refusal(group *g, const entry *x, uint64_t key, uint32_t attempt) {
    if (x && x->kind == E_INFLIGHT && x->attempt > attempt) return "timed out and delivered again";
    if (x && (x->kind == E_RETRY || x->kind == E_PARKING)) return "timed out or nacked: it will be delivered again";
    if (group_parked_of(g, key)) return "parked";
    if (x ? x->kind == E_DONE : key < g->floor) return "done already (acked or skipped)";
    return "never delivered as that attempt";
}

/*
 * Walks the delivery ids of an ack or nack: each in flight as that attempt is handed to take
 * (which renders its part of the record), each done already is fine for an ack (acks are
 * idempotent), and the rest go to ch->refused. Nothing in the group changes here. FACTUM_EINVAL
 * for a malformed id; FACTUM_ECONFLICT when every id was refused (the message names the first).
 */
static int walk_ids(group *g, factum_str_t arr, bool done_ok, void (*take)(void *ctx, entry *x), void *ctx,
                    groups_change *ch, factum_error_t *err) {
    json_iter_t it;
    factum_str_t v;
    int kind, r, rc = 0;
    size_t ids = 0;
    json_iter_init(&it, arr);
    while (!rc && (r = json_iter_element(&it, &v, &kind)) == 1) {
        uint64_t key = 0;
        uint32_t attempt = 0;
        if ((rc = element_id(v, kind, &key, &attempt, err))) break;
        ids++;
        entry *x = group_entry_of(g, key);
        if (x && x->kind == E_INFLIGHT && x->attempt == attempt) {
            take(ctx, x);
            continue;
        }
        if (done_ok && (x ? x->kind == E_DONE : key < g->floor)) continue; /* an entry below the floor: replayed */
        if (ch->nrefused == ch->caprefused) {
            ch->caprefused = ch->caprefused ? ch->caprefused * 2 : 16;
            ch->refused = group_xrealloc(ch->refused, ch->caprefused * sizeof *ch->refused);
        }
        ch->refused[ch->nrefused++] = (groups_refusal){key, attempt, refusal(g, x, key, attempt)};
    }
    if (!rc && ch->nrefused && ch->nrefused == ids)
        rc = err_set(err, FACTUM_ECONFLICT, "no delivery of the batch is in flight (%llu.%u: %s)",
                     (unsigned long long)ch->refused[0].key, ch->refused[0].attempt, ch->refused[0].reason);
    return rc;
}

/* The body of an ack or nack: its "delivery_ids" array, and only the members named. */
static int batch_body(factum_str_t body, const char *what, const char *const *members, factum_str_t *arr,
                      factum_error_t *err) {
    int kind;
    if (!json_valid(body.ptr, body.len, &kind) || kind != JSON_OBJECT ||
        !json_member(body, "delivery_ids", arr, &kind) || kind != JSON_ARRAY)
        return err_set(err, FACTUM_EINVAL, "the body must be {\"delivery_ids\": [...]%s}", what);
    return json_only_members(body, "the body", members, err);
}

static void ack_take(void *ctx, entry *x) {
    groups_change *ch = ctx;
    x->mark = true; /* cleared before group_ack_decide returns */
    buf_printf(&ch->rec, "%s%llu", ch->n ? "," : "", (unsigned long long)x->key);
    ch->n++;
}

int group_ack_decide(group *g, factum_str_t body, groups_change *ch, factum_error_t *err) {
    static const char *const members[] = {"delivery_ids", NULL};
    factum_str_t arr;
    int rc = batch_body(body, "", members, &arr, err);
    if (rc) return rc;
    ch->rec.len = 0;
    buf_printf(&ch->rec, "{\"keys\":[");
    rc = walk_ids(g, arr, true, ack_take, ch, ch, err);
    /* The floor once these are done: everything below it is done (a lower bound that stays true
       whatever happens before this record is durable). */
    uint64_t f = g->next;
    for (size_t i = 0; i < g->n; i++) {
        entry *x = &g->e[i];
        if (x->kind != E_DONE && !x->mark && x->key < f) f = x->key;
        x->mark = false;
    }
    if (rc) return rc;
    buf_printf(&ch->rec, "],\"floor\":%llu}", (unsigned long long)f);
    if (ch->n) g->writes_pending++;
    return 0;
}

void group_nack_item(const group *g, buf_t *rec, const entry *x, const char *to, int64_t now_wall, int64_t delay_ms,
                     bool first) {
    int64_t due = now_wall + (delay_ms >= 0 ? delay_ms * 1000 : (int64_t)backoff_us(&g->d, x->attempt - x->base));
    buf_printf(rec, "%s{\"key\":%llu,\"pos\":%llu,\"sh\":%llu,\"attempt\":%u,\"to\":\"%s\",\"due\":%lld}",
               first ? "" : ",", (unsigned long long)x->key, (unsigned long long)x->pos, (unsigned long long)x->sh,
               x->attempt, to, (long long)due);
}

typedef struct nack_batch {
    group *g;
    groups_change *ch;
    const char *action;
    int64_t now, delay_ms;
} nack_batch;

static void nack_take(void *ctx, entry *x) {
    nack_batch *b = ctx;
    /* A retry past max_deliveries (or after a replay) parks instead. */
    const char *to = !strcmp(b->action, "retry") && group_retry_parks(b->g, x) ? "park" : b->action;
    group_nack_item(b->g, &b->ch->rec, x, to, b->now, b->delay_ms, b->ch->n == 0);
    b->ch->n++;
}

int group_nack_decide(group *g, factum_str_t body, groups_change *ch, factum_error_t *err) {
    static const char *const members[] = {"delivery_ids", "action", "delay_ms", "reason", NULL};
    factum_str_t arr, v;
    int kind;
    int rc = batch_body(body, ", \"action\": \"retry\"|\"park\"|\"skip\"", members, &arr, err);
    if (rc) return rc;
    char action[16] = "retry", reason[256] = "";
    uint64_t delay = 0;
    bool has_delay = false;
    if (json_member(body, "action", &v, &kind) &&
        (kind != JSON_STRING || !group_str_into(v, action, sizeof action) ||
         (strcmp(action, "retry") && strcmp(action, "park") && strcmp(action, "skip"))))
        return err_set(err, FACTUM_EINVAL, "'action' must be retry, park or skip");
    if (json_member(body, "reason", &v, &kind) && (kind != JSON_STRING || !group_str_into(v, reason, sizeof reason)))
        return err_set(err, FACTUM_EINVAL, "'reason' must be a string of at most 255 bytes");
    if (json_member(body, "delay_ms", &v, &kind)) {
        if (kind != JSON_NUMBER || !str_u64(v, &delay) || delay > 86400000)
            return err_set(err, FACTUM_EINVAL, "'delay_ms' must be 0 to 86400000");
        has_delay = true;
    }
    ch->rec.len = 0;
    buf_printf(&ch->rec, "{\"items\":[");
    int64_t now = g->clk->wall_us(g->clk->ctx);
    nack_batch b = {g, ch, action, now, has_delay ? (int64_t)delay : -1};
    if ((rc = walk_ids(g, arr, false, nack_take, &b, ch, err))) return rc;
    buf_printf(&ch->rec, "],\"reason\":");
    json_escape(&ch->rec, reason, strlen(reason));
    buf_printf(&ch->rec, ",\"at\":%lld}", (long long)now);
    if (ch->n) g->writes_pending++;
    return 0;
}

int group_parked_decide(group *g, factum_str_t body, const char *one, groups_change *ch, factum_error_t *err) {
    factum_str_t arr = {NULL, 0}, v;
    int kind, rc = 0;
    static const char *const members[] = {"delivery_ids", NULL};
    if (body.len && (!json_valid(body.ptr, body.len, &kind) || kind != JSON_OBJECT ||
                     (json_member(body, "delivery_ids", &arr, &kind) && kind != JSON_ARRAY)))
        return err_set(err, FACTUM_EINVAL, "the body must be {\"delivery_ids\": [...]} or empty (all)");
    if (body.len && (rc = json_only_members(body, "the body", members, err))) return rc;
    buf_t *rec = &ch->rec;
    rec->len = 0;
    buf_printf(rec, "{\"keys\":[");
    if (one) {
        uint64_t key;
        if (!str_u64(str_c(one), &key) || !group_parked_of(g, key))
            return err_set(err, FACTUM_ENOTFOUND, "no parked event '%s'", one);
        buf_printf(rec, "%llu", (unsigned long long)key), ch->n = 1;
    } else if (arr.ptr) {
        json_iter_t it;
        json_iter_init(&it, arr);
        while (json_iter_element(&it, &v, &kind) == 1) {
            char s[32];
            uint64_t key;
            if (kind != JSON_STRING || !group_str_into(v, s, sizeof s) || !str_u64(str_c(s), &key) ||
                !group_parked_of(g, key))
                return err_set(err, FACTUM_ENOTFOUND, "not a parked event: %.*s", (int)MIN(v.len, 40), v.ptr);
            buf_printf(rec, "%s%llu", ch->n ? "," : "", (unsigned long long)key), ch->n++;
        }
    } else {
        for (size_t i = 0; i < g->npk; i++)
            buf_printf(rec, "%s%llu", i ? "," : "", (unsigned long long)g->pk[i].key);
        ch->n = g->npk;
    }
    buf_printf(rec, "]}");
    if (ch->n) g->writes_pending++;
    return 0;
}

void group_free(group *g) {
    free(g->e);
    free(g->pk);
    free(g->ei.slot);
    free(g->pi.slot);
    pthread_mutex_destroy(&g->mu);
    free(g);
}
