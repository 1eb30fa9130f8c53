/*
 * pull.c — handing out a consumer group's events (pull and push delivery): due retries and
 * events held for their stream first, oldest key first, then new events read from the cursor.
 * The only part of the engine that reads events for delivery; a read that fails with damage
 * stops delivery at that event (docs/groups.md) and is never taken as "nothing there".
 *
 * Each pull works in time linear in the group's entries: candidates are collected once and
 * sorted, entries are found by key through the group's index, and by_stream's "an earlier event
 * of this stream is not done" is a per-pull map from stream to its lowest key not done.
 */
#include "group.h"

#include <stdio.h>
#include <stdlib.h>

/* ---- pull ---- */

static bool wanted(const group_def *d, const factum_event_t *e) {
    if (d->src != SRC_ALL) return true;
    bool t = d->ntypes == 0, c = d->ncats == 0;
    for (int i = 0; i < d->ntypes && !t; i++)
        t = str_eq(e->type, str_c(d->types[i]));
    for (int i = 0; i < d->ncats && !c; i++)
        c = stream_in_category(e->stream, str_c(d->cats[i]));
    return t && c;
}

void groups_batch_free(groups_batch *b) {
    for (size_t i = 0; i < b->nres; i++)
        factum_result_free(b->res[i]);
    free(b->d);
    free(b->res);
    *b = (groups_batch){0};
}

static void batch_add(groups_batch *b, const entry *x, const factum_event_t *e, const factum_event_t *raw) {
    if (b->n == b->cap) {
        b->cap = b->cap ? b->cap * 2 : 64;
        b->d = group_xrealloc(b->d, b->cap * sizeof *b->d);
    }
    b->d[b->n++] = (groups_delivery){x->key, x->attempt, x->attempt - x->base, e, raw};
}

/* The batch keeps r (its events are handed out) when a delivery points into it; else frees it. */
static void batch_keep(groups_batch *b, factum_result_t *r, size_t before) {
    if (b->n == before) {
        factum_result_free(r);
        return;
    }
    if (b->nres == b->capres) {
        b->capres = b->capres ? b->capres * 2 : 8;
        b->res = group_xrealloc(b->res, b->capres * sizeof *b->res);
    }
    b->res[b->nres++] = r;
}

void groups_release_member(groups_t *gs, const char *name, uint64_t member) {
    group *g = group_acquire(gs, name);
    if (!g) return;
    int64_t now = gs->clk.mono_us(gs->clk.ctx);
    for (size_t i = 0; i < g->n; i++)
        if (g->e[i].kind == E_INFLIGHT && g->e[i].member == member) g->e[i].t = now; /* the keeper times them out now */
    group_release(gs, g);
    pthread_cond_signal(&gs->cond);
}

static uint32_t moved(uint32_t n, int by) { return by < 0 && n < (uint32_t)-by ? 0 : n + (uint32_t)by; }

void groups_members_count(groups_t *gs, const char *name, int push, int pulls) {
    group *g = group_acquire(gs, name);
    if (!g) return;
    g->push_members = moved(g->push_members, push), g->waiting_pulls = moved(g->waiting_pulls, pulls);
    group_release(gs, g);
}

/* A read at `key` failed with something other than "not there": delivery stops there, and the
   group says so in its stats until a read there succeeds. Never marks anything done. */
static void stop_at(group *g, int rc, uint64_t key, uint64_t pos, bool cursor, const factum_error_t *err) {
    uint64_t named;
    bool filled = err->code == rc; /* the read filled err (reads always do; be sure) */
    g->err_code = rc;
    g->err_cursor = cursor;
    g->err_key = key;
    g->err_pos = filled && factum_error_position(err, &named) == 0 ? named : pos;
    snprintf(g->err_msg, sizeof g->err_msg, "%s", filled ? err->message : factum_strerror(rc));
}

/*
 * by_stream, within one pull: each stream's lowest key not done (entries in flight, due for
 * retry, being parked or held, and parked events). An event must wait when its stream's lowest
 * is below it. Built once per pull (O(n)) instead of a scan of every entry per event.
 */
typedef struct stream_low {
    uint64_t *sh, *low;
    size_t n, cap;
} stream_low;

static size_t low_slot(const stream_low *m, uint64_t sh) {
    size_t h = (size_t)((sh * 0x9E3779B97F4A7C15ull) >> 20) & (m->cap - 1);
    while (m->low[h] != UINT64_MAX && m->sh[h] != sh)
        h = (h + 1) & (m->cap - 1);
    return h;
}

static void low_note(stream_low *m, uint64_t sh, uint64_t key) {
    if (2 * (m->n + 1) > m->cap) {
        stream_low old = *m;
        m->cap = old.cap ? old.cap * 2 : 256;
        m->sh = group_xrealloc(NULL, m->cap * sizeof *m->sh), m->low = group_xrealloc(NULL, m->cap * sizeof *m->low);
        m->n = 0;
        memset(m->low, 0xff, m->cap * sizeof *m->low);
        for (size_t i = 0; i < old.cap; i++)
            if (old.low[i] != UINT64_MAX) low_note(m, old.sh[i], old.low[i]);
        free(old.sh), free(old.low);
    }
    size_t h = low_slot(m, sh);
    if (m->low[h] == UINT64_MAX) m->sh[h] = sh, m->low[h] = key, m->n++;
    if (key < m->low[h]) m->low[h] = key;
}

static bool low_busy(const stream_low *m, uint64_t sh, uint64_t key) {
    if (!m->cap) return false;
    size_t h = low_slot(m, sh);
    return m->low[h] != UINT64_MAX && m->low[h] < key;
}

static void low_build(stream_low *m, const group *g) {
    free(m->sh), free(m->low);
    *m = (stream_low){0};
    for (size_t i = 0; i < g->n; i++)
        if (g->e[i].kind != E_DONE) low_note(m, g->e[i].sh, g->e[i].key);
    for (size_t i = 0; i < g->npk; i++)
        low_note(m, g->pk[i].sh, g->pk[i].key);
}

static int by_key(const void *a, const void *b) {
    uint64_t x = (*(entry *const *)a)->key, y = (*(entry *const *)b)->key;
    return x < y ? -1 : x > y;
}

/* Retries that are due and events held for their stream (and free to go), oldest key first. */
static size_t candidates(group *g, const stream_low *low, int64_t now, entry ***out) {
    size_t n = 0;
    entry **c = NULL;
    for (size_t i = 0; i < g->n; i++) {
        entry *x = &g->e[i];
        if (!((x->kind == E_RETRY && x->t <= now) || x->kind == E_HELD)) continue;
        if (g->d.by_stream && low_busy(low, x->sh, x->key)) continue;
        if (!c) c = group_xrealloc(NULL, g->n * sizeof *c);
        c[n++] = x;
    }
    if (n > 1) qsort(c, n, sizeof *c, by_key);
    *out = c;
    return n;
}

/* Hands out due retries and held events, oldest first. false: a read failed (stop_at said so). */
static bool pull_again(groups_t *gs, group *g, size_t max, uint64_t member, groups_batch *out, size_t *in_flight,
                       stream_low *low, int64_t now) {
    entry **c;
    size_t nc = candidates(g, low, now, &c);
    bool ok = true;
    for (size_t i = 0; i < nc && out->n < max && *in_flight < MAX_IN_FLIGHT; i++) {
        entry *best = c[i];
        factum_result_t *r;
        factum_error_t rerr = {.code = 0};
        int rrc = factum_read_at(gs->db, best->pos, &r, &rerr);
        if (rrc == FACTUM_ENOTFOUND) {
            best->kind = E_DONE;  /* deleted or expired since: nothing left to deliver */
            if (g->d.by_stream) { /* its stream's next event may go now: look again */
                free(c);
                low_build(low, g);
                nc = candidates(g, low, now, &c), i = (size_t)-1;
            }
            continue;
        }
        if (rrc) { /* damage, or the disk failed: not done, and nothing after it goes out */
            stop_at(g, rrc, best->key, best->pos, false, &rerr);
            ok = false;
            break;
        }
        if (g->err_code && !g->err_cursor && g->err_key == best->key) g->err_code = 0; /* readable again */
        if (best->kind == E_RETRY)
            g->redelivered++;
        else
            g->delivered++;
        best->attempt++, best->kind = E_INFLIGHT, best->t = now + (int64_t)g->d.ack_timeout_ms * 1000,
                         best->member = member;
        size_t before = out->n;
        batch_add(out, best, factum_result_event(r, 0), factum_result_event_raw(r, 0));
        batch_keep(out, r, before);
        ++*in_flight;
    }
    free(c);
    return ok;
}

/* Reads new events from the cursor and hands them out (or holds them for their stream). */
static void pull_new(groups_t *gs, group *g, size_t max, uint64_t member, groups_batch *out, size_t *in_flight,
                     stream_low *low, int64_t now) {
    const group_def *d = &g->d;
    size_t held = group_count_kind(g, E_HELD);
    bool narrow = false; /* past a failed read: one event at a time, up to the damage */
    while (out->n < max && *in_flight < MAX_IN_FLIGHT && held < MAX_HELD) {
        factum_result_t *r;
        size_t want = narrow ? 1 : MIN(max - out->n, 1000);
        int rc;
        factum_error_t rerr = {.code = 0};
        if (d->src == SRC_STREAM)
            rc = factum_read_stream(gs->db, str_c(d->src_name), g->next, want, 0, &r, &rerr);
        else {
            factum_query_t q = {.from = g->next,
                                .limit = want,
                                .category = d->src == SRC_CATEGORY ? str_c(d->src_name) : (factum_str_t){0}};
            rc = factum_read_all(gs->db, &q, &r, &rerr);
        }
        if (rc == FACTUM_ENOTFOUND || rc == FACTUM_EDELETED) break; /* the stream is not there (yet) */
        if (rc && want > 1) {
            narrow = true; /* deliver what comes before the damage */
            continue;
        }
        if (rc) {
            /* A read of one event failed: the damage is the next event of the source. For a
               category or $all source nothing it takes lies between next and the position the
               error names (a read of one would have returned it), so the cursor moves there. */
            uint64_t pos;
            bool named = rerr.code == rc && factum_error_position(&rerr, &pos) == 0;
            if (named && d->src != SRC_STREAM && pos > g->next) g->next = pos;
            stop_at(g, rc, g->next, named ? pos : UINT64_MAX, true, &rerr);
            break;
        }
        size_t n = factum_result_count(r), before = out->n;
        for (size_t i = 0; i < n && out->n < max && held < MAX_HELD; i++) {
            const factum_event_t *e = factum_result_event(r, i);
            uint64_t key = d->src == SRC_STREAM ? e->revision : e->position;
            g->next = key + 1;
            if (group_entry_of(g, key)) continue; /* acknowledged before a restart */
            if (!wanted(d, e)) continue;
            entry *x = group_entry_add(g, key, e->position);
            x->sh = hash64(e->stream.ptr, e->stream.len, 0);
            if (d->by_stream) {
                bool busy = low_busy(low, x->sh, key);
                low_note(low, x->sh, key);
                if (busy) {
                    x->kind = E_HELD; /* an earlier event of its stream is still being handled */
                    held++;
                    continue;
                }
            }
            x->attempt = 1, x->kind = E_INFLIGHT, x->t = now + (int64_t)d->ack_timeout_ms * 1000, x->member = member;
            batch_add(out, x, e, factum_result_event_raw(r, i));
            g->delivered++, ++*in_flight;
        }
        uint64_t next = factum_result_next(r);
        if (d->src != SRC_STREAM && n < want && next > g->next) g->next = next; /* filtered-out tail */
        batch_keep(out, r, before);
        if (g->err_code && g->err_cursor && g->next > g->err_key) g->err_code = 0; /* read past where it stopped */
        if (n < want) break;
    }
}

int groups_pull(groups_t *gs, const char *name, size_t max, uint64_t member, groups_batch *out, factum_error_t *err) {
    group *g = group_acquire(gs, name);
    if (!g) return err_set(err, FACTUM_ENOTFOUND, "no group '%s'", name);
    int64_t now = gs->clk.mono_us(gs->clk.ctx); /* ack deadlines and retries wait on the monotonic clock */
    size_t in_flight = 0, mine = 0;
    for (size_t i = 0; i < g->n; i++) {
        in_flight += g->e[i].kind == E_INFLIGHT;
        mine += g->e[i].kind == E_INFLIGHT && member && g->e[i].member == member;
    }
    max = max > mine ? max - mine : 0; /* push: max is the member's limit on unacknowledged messages */
    size_t first = out->n;
    max += first;
    stream_low low = {0};
    if (g->d.by_stream) low_build(&low, g);
    /* Retries that are due, and events held for their stream, first; then new events. A read
       that failed in this pull stops it: nothing after it goes out. */
    if (pull_again(gs, g, max, member, out, &in_flight, &low, now))
        pull_new(gs, g, max, member, out, &in_flight, &low, now);
    free(low.sh), free(low.low);
    group_refloor(g);
    /* Stopped with nothing to hand out: the puller gets the error, not an empty answer. */
    int rc = g->err_code && out->n == first
                 ? err_set(err, g->err_code, "group '%s' stopped at %s %llu: %s", g->name,
                           g->d.src == SRC_STREAM ? "revision" : "position", (unsigned long long)g->err_key, g->err_msg)
                 : 0;
    group_release(gs, g);
    return rc;
}
