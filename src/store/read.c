/*
 * read.c — reading streams (through the stream index), the global log (sequentially through
 * the position maps), and correlations (through the correlation index). Readers stop at the
 * durable position, so they never see an event that is not on disk. Returned events borrow
 * the segment mappings, which live as long as the store.
 */
#include "store.h"

#include "record.h"

#include <stdlib.h>

struct factum_result {
    factum_event_t *ev;
    size_t n, cap;
    uint64_t next;
};

size_t factum_result_count(const factum_result_t *r) { return r ? r->n : 0; }
const factum_event_t *factum_result_event(const factum_result_t *r, size_t i) {
    return r && i < r->n ? &r->ev[i] : NULL;
}
uint64_t factum_result_next(const factum_result_t *r) { return r ? r->next : FACTUM_END; }
void factum_result_free(factum_result_t *r) {
    if (!r) return;
    free(r->ev);
    free(r);
}

static factum_result_t *result_new(size_t limit) {
    factum_result_t *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->cap = MAX(1, MIN(limit, 1024));
    r->ev = malloc(r->cap * sizeof *r->ev);
    if (!r->ev) {
        free(r);
        return NULL;
    }
    return r;
}

static int result_push(factum_result_t *r, const factum_event_t *e) {
    if (r->n == r->cap) {
        factum_event_t *v = realloc(r->ev, r->cap * 2 * sizeof *v);
        if (!v) return FACTUM_ENOMEM;
        r->ev = v, r->cap *= 2;
    }
    r->ev[r->n++] = *e;
    return 0;
}

int64_t store_stream_last(factum_t *db, factum_str_t stream, uint64_t pos_limit) {
    uint64_t key = index_key_stream(stream);
    idx_hit from = {UINT64_MAX, UINT64_MAX}, hits[16];
    for (;;) {
        size_t n = index_range(db->index, key, from, true, ARRAY_LEN(hits), pos_limit, hits);
        for (size_t i = 0; i < n; i++) {
            factum_event_t e;
            if (store_event_at(db, hits[i].pos, &e, NULL) == 0 && str_eq(e.stream, stream) && e.revision == hits[i].seq)
                return (int64_t)e.revision;
        }
        if (n < ARRAY_LEN(hits)) return -1;
        /* Only hash collisions get here: continue below the last hit. */
        if (!index_after(hits[n - 1], true, &from)) return -1;
    }
}

int64_t factum_stream_revision(factum_t *db, factum_str_t stream) {
    return store_stream_last(db, stream, factum_head_position(db));
}

int factum_read_stream(factum_t *db, factum_str_t stream, uint64_t from, size_t limit, int backward,
                       factum_result_t **out, factum_error_t *err) {
    int rc = store_check_stream(stream, err);
    if (rc) return rc;
    limit = MIN(limit, STORE_MAX_READ);
    uint64_t durable = factum_head_position(db), key = index_key_stream(stream);
    factum_result_t *res = result_new(limit);
    if (!res) return err_set(err, FACTUM_ENOMEM, "out of memory");
    idx_hit cur = backward ? (idx_hit){from, UINT64_MAX} : (idx_hit){from, 0};
    idx_hit hits[128];
    bool more = true;
    while (more && res->n < limit) {
        size_t want = MIN(ARRAY_LEN(hits), limit - res->n + 1);
        size_t n = index_range(db->index, key, cur, backward, want, durable, hits);
        more = n == want;
        for (size_t i = 0; i < n && res->n < limit; i++) {
            factum_event_t e;
            if ((rc = store_event_at(db, hits[i].pos, &e, err))) goto fail;
            if (!str_eq(e.stream, stream) || e.revision != hits[i].seq) continue; /* another stream, same key */
            if ((rc = result_push(res, &e))) goto fail;
        }
        if (n && !index_after(hits[n - 1], backward, &cur)) more = false;
    }
    if (res->n == 0 && store_stream_last(db, stream, durable) < 0) {
        factum_result_free(res);
        return err_set(err, FACTUM_ENOTFOUND, "stream '%.*s' not found", (int)stream.len, stream.ptr);
    }
    if (!backward) res->next = res->n ? res->ev[res->n - 1].revision + 1 : from;
    else res->next = res->n ? (res->ev[res->n - 1].revision ? res->ev[res->n - 1].revision - 1 : FACTUM_END) : FACTUM_END;
    *out = res;
    return 0;
fail:
    factum_result_free(res);
    return rc;
}

static bool matches(const factum_query_t *q, const factum_event_t *e) {
    return (q->system || e->stream.ptr[0] != '$') && (!q->type.len || str_eq(e->type, q->type)) && (!q->category.len || stream_in_category(e->stream, q->category)) &&
           (!q->correlationid.len || str_eq(e->correlationid, q->correlationid));
}

/* $all filtered by correlation id, through its index. */
static int read_correlation(factum_t *db, const factum_query_t *q, uint64_t durable, factum_result_t *res,
                            factum_error_t *err) {
    uint64_t key = index_key_corr(q->correlationid);
    idx_hit cur = {q->from, q->backward ? UINT64_MAX : 0}, hits[128];
    res->next = q->backward ? FACTUM_END : (q->from == FACTUM_END ? durable : q->from);
    for (;;) {
        size_t n = index_range(db->index, key, cur, q->backward, ARRAY_LEN(hits), durable, hits);
        for (size_t i = 0; i < n; i++) {
            factum_event_t e;
            int rc = store_event_at(db, hits[i].pos, &e, err);
            if (rc) return rc;
            res->next = q->backward ? (e.position ? e.position - 1 : FACTUM_END) : e.position + 1;
            if (matches(q, &e) && (rc = result_push(res, &e))) return err_set(err, rc, "out of memory");
            if (res->n == q->limit) return 0;
        }
        if (n < ARRAY_LEN(hits)) {
            if (!q->backward) res->next = durable > res->next ? durable : res->next;
            return 0;
        }
        if (!index_after(hits[n - 1], q->backward, &cur)) return 0;
    }
}

int factum_read_all(factum_t *db, const factum_query_t *q_in, factum_result_t **out, factum_error_t *err) {
    if (!q_in) return err_set(err, FACTUM_EINVAL, "factum_read_all: no query");
    factum_query_t q = *q_in;
    q.limit = MIN(q.limit, STORE_MAX_READ);
    if (q.from_time) {
        if (q.backward) return err_set(err, FACTUM_EINVAL, "a read from a time goes forward");
        q.from = factum_position_at(db, q.from_time);
    }
    uint64_t durable = factum_head_position(db);
    factum_result_t *res = result_new(q.limit);
    if (!res) return err_set(err, FACTUM_ENOMEM, "out of memory");
    int rc = 0;
    if (q.limit == 0) {
        res->next = q.from;
    } else if (q.correlationid.len) {
        rc = read_correlation(db, &q, durable, res, err);
    } else if (!q.backward) {
        uint64_t p = q.from, stop = p + STORE_SCAN_WINDOW < p ? durable : MIN(durable, p + STORE_SCAN_WINDOW);
        for (; p < stop && res->n < q.limit; p++) {
            factum_event_t e;
            if ((rc = store_event_at(db, p, &e, err))) break;
            if (matches(&q, &e) && (rc = result_push(res, &e))) break;
        }
        res->next = MIN(p, MAX(durable, q.from));
    } else {
        uint64_t p = q.from >= durable ? durable : q.from + 1; /* one past the first to look at */
        uint64_t stop = p > STORE_SCAN_WINDOW ? p - STORE_SCAN_WINDOW : 0;
        for (; p > stop && res->n < q.limit; p--) {
            factum_event_t e;
            if ((rc = store_event_at(db, p - 1, &e, err))) break;
            if (matches(&q, &e) && (rc = result_push(res, &e))) break;
        }
        res->next = p ? p - 1 : FACTUM_END;
    }
    if (rc) {
        if (rc == FACTUM_ENOMEM) err_set(err, rc, "out of memory");
        factum_result_free(res);
        return rc;
    }
    *out = res;
    return 0;
}

uint64_t factum_position_at(factum_t *db, int64_t time_us) {
    uint64_t lo = 0, hi = factum_head_position(db);
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        factum_event_t e;
        /* A record that fails its checksum cannot be placed; treat it as earlier, so the
           answer errs toward delivering more, never fewer. */
        if (store_event_at(db, mid, &e, NULL) || e.time_us < time_us) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}
