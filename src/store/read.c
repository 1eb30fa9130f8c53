/*
 * read.c — reading streams (through the stream index), the global log (sequentially through
 * the position maps), correlations (through the correlation index) and tag queries (through the
 * tag index, tags.c). Readers stop at the
 * durable position, so they never see an event that is not on disk. Returned events borrow
 * the segment mappings, which live as long as the store.
 */
#include "store.h"

#include "../base/json.h"
#include "record.h"
#include "tags.h"

#include <stdlib.h>

struct factum_result {
    factum_event_t *ev;
    size_t n, cap;
    uint64_t next;
    factum_t *db;
    unsigned pin;        /* the events point into segments this pin keeps mapped */
    factum_event_t *raw; /* the events as stored, when the read transform changed one */
    char **owned;        /* what changed events point into (one block each) */
    size_t nowned;
};

size_t factum_result_count(const factum_result_t *r) { return r ? r->n : 0; }
const factum_event_t *factum_result_event(const factum_result_t *r, size_t i) {
    return r && i < r->n ? &r->ev[i] : NULL;
}
const factum_event_t *factum_result_event_raw(const factum_result_t *r, size_t i) {
    return r && i < r->n ? &(r->raw ? r->raw : r->ev)[i] : NULL;
}
uint64_t factum_result_next(const factum_result_t *r) { return r ? r->next : FACTUM_END; }
void factum_result_free(factum_result_t *r) {
    if (!r) return;
    store_unpin(r->db, r->pin);
    for (size_t i = 0; i < r->nowned; i++)
        free(r->owned[i]);
    free(r->owned);
    free(r->raw);
    free(r->ev);
    free(r);
}

/* A result, pinning the segments its events will point into. */
static factum_result_t *result_new(factum_t *db, size_t limit) {
    factum_result_t *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->cap = MAX(1, MIN(limit, 1024));
    r->ev = malloc(r->cap * sizeof *r->ev);
    if (!r->ev) {
        free(r);
        return NULL;
    }
    r->db = db, r->pin = store_pin(db);
    return r;
}

static int result_push(factum_result_t *r, const factum_event_t *e) {
    if (r->n == r->cap) {
        factum_event_t *v = realloc(r->ev, r->cap * 2 * sizeof *v);
        if (!v) return FACTUM_ENOMEM;
        r->ev = v;
        if (r->raw) { /* kept as long as ev */
            if (!(v = realloc(r->raw, r->cap * 2 * sizeof *v))) return FACTUM_ENOMEM;
            r->raw = v;
        }
        r->cap *= 2;
    }
    if (r->raw) r->raw[r->n] = *e;
    r->ev[r->n++] = *e;
    return 0;
}

/* Event i is returned as out, its strings in block (taken, freed on failure); its stored form
   stays in raw. 0 or FACTUM_ENOMEM (then it stays as stored). */
static int result_change(factum_result_t *r, size_t i, const factum_event_t *out, char *block) {
    char **o = realloc(r->owned, (r->nowned + 1) * sizeof *o);
    if (o) r->owned = o;
    if (!r->raw && o && (r->raw = malloc(r->cap * sizeof *r->raw))) memcpy(r->raw, r->ev, r->n * sizeof *r->raw);
    if (!o || !r->raw) {
        free(block);
        return FACTUM_ENOMEM;
    }
    r->owned[r->nowned++] = block;
    r->ev[i] = *out;
    return 0;
}

/* Runs the read transform (factum_set_read_transform) over a finished result: a changed event
   keeps its stored form in raw. An event the transform cannot change (out of memory) stays as
   stored. */
static factum_result_t *result_transform(factum_t *db, factum_result_t *r) {
    factum_read_transform_cb fn = atomic_load_explicit(&db->transform, memory_order_acquire);
    for (size_t i = 0; fn && i < r->n; i++) {
        factum_event_t out;
        char *block = NULL;
        if (fn(db->transform_ctx, &r->ev[i], &out, &block) == 1 && result_change(r, i, &out, block)) break;
    }
    return r;
}

void factum_set_read_transform(factum_t *db, factum_read_transform_cb fn, void *ctx) {
    db->transform_ctx = ctx;
    atomic_store_explicit(&db->transform, fn, memory_order_release);
}

void factum_set_read_types(factum_t *db, factum_read_types_cb fn, void *ctx) {
    db->read_types_ctx = ctx;
    atomic_store_explicit(&db->read_types, fn, memory_order_release);
}

/* A query's type filter. With n, the transform changes types to or from it: events stored as
   one of stored[0..n) are transformed as they are read, and kept if they read as `type`. */
typedef struct type_filter {
    factum_str_t type;
    factum_str_t *stored, local[16];
    size_t n;
    factum_read_transform_cb fn;
    void *ctx;
} type_filter;

/* Without a type filter, or with no read-types hook: one atomic load. */
static int type_filter_init(factum_t *db, const factum_query_t *q, type_filter *f) {
    *f = (type_filter){.type = q->type, .stored = f->local};
    factum_read_types_cb types =
        q->type.len && !q->type_as_stored ? atomic_load_explicit(&db->read_types, memory_order_acquire) : NULL;
    if (!types || !(f->fn = atomic_load_explicit(&db->transform, memory_order_acquire))) return 0;
    f->ctx = db->transform_ctx;
    size_t cap = ARRAY_LEN(f->local), n;
    while ((n = types(db->read_types_ctx, q->type, f->stored, cap)) > cap) {
        if (f->stored != f->local) free(f->stored);
        if (!(f->stored = malloc(n * sizeof *f->stored))) return f->stored = f->local, FACTUM_ENOMEM;
        cap = n;
    }
    f->n = n;
    return 0;
}

static void type_filter_free(type_filter *f) {
    if (f->stored != f->local) free(f->stored);
}

static bool type_matches(const type_filter *f, const factum_event_t *e) {
    if (!f->n) return !f->type.len || str_eq(e->type, f->type);
    for (size_t i = 0; i < f->n; i++)
        if (str_eq(e->type, f->stored[i])) return true;
    return false;
}

/* Pushes e, which type_matches; with f->n transformed now, and only if it reads as f->type. */
static int push_read(factum_result_t *r, const type_filter *f, const factum_event_t *e) {
    if (!f->n) return result_push(r, e);
    factum_event_t out;
    char *block = NULL;
    bool changed = f->fn(f->ctx, e, &out, &block) == 1;
    if (!str_eq(changed ? out.type : e->type, f->type)) return free(block), 0;
    int rc = result_push(r, e);
    if (rc) return free(block), rc;
    return changed ? result_change(r, r->n - 1, &out, block) : 0;
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

/* The event at a revision of the stream, ignoring metadata. 0, or -1 if it is not there. */
static int stream_event(factum_t *db, factum_str_t stream, uint64_t key, uint64_t rev, uint64_t pos_limit,
                        factum_event_t *e) {
    idx_hit from = {rev, 0}, hits[16];
    for (;;) {
        size_t n = index_range(db->index, key, from, false, ARRAY_LEN(hits), pos_limit, hits);
        for (size_t i = 0; i < n; i++) {
            if (hits[i].seq != rev) return -1;
            if (store_event_at(db, hits[i].pos, e, NULL) == 0 && str_eq(e->stream, stream) && e->revision == rev)
                return 0;
        }
        if (n < ARRAY_LEN(hits) || !index_after(hits[n - 1], false, &from)) return -1;
    }
}

uint64_t store_stream_first_at(factum_t *db, factum_str_t stream, int64_t time_us, uint64_t end) {
    uint64_t key = index_key_stream(stream), lo = 0, hi = end;
    /* The writer may ask about its own group, whose entries are past the durable position. */
    uint64_t limit = pthread_equal(pthread_self(), db->writer) ? UINT64_MAX : factum_head_position(db);
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        factum_event_t e;
        /* A revision no longer on disk was hidden, so it counts as earlier. */
        if (stream_event(db, stream, key, mid, limit, &e) || e.time_us < time_us)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Hides what stream metadata rules out, looking rules up once per run of one stream's events. */
typedef struct hider {
    factum_t *db;
    bool on; /* there is any metadata at all */
    int64_t now;
    factum_str_t stream; /* whose rules `r` are */
    bool has;
    meta_rules r;
} hider;

static void hider_init(hider *h, factum_t *db) {
    *h = (hider){.db = db, .on = atomic_load_explicit(&db->meta.count, memory_order_acquire) != 0};
    if (h->on) h->now = clock_realtime_us();
}

static bool hidden(hider *h, const factum_event_t *e) {
    if (!h->on) return false;
    if (!h->stream.ptr || !str_eq(h->stream, e->stream)) {
        uint64_t h1, h2;
        streams_hash(e->stream, &h1, &h2);
        h->has = meta_rules_get(&h->db->meta, h1, h2, &h->r);
        h->stream = e->stream;
    }
    return h->has && meta_hides(&h->r, e->revision, e->time_us, h->now);
}

int64_t factum_stream_revision(factum_t *db, factum_str_t stream) {
    unsigned pin = store_pin(db);
    int64_t last = store_stream_last(db, stream, factum_head_position(db));
    store_unpin(db, pin);
    return last;
}

int factum_read_stream(factum_t *db, factum_str_t stream, uint64_t from, size_t limit, int backward,
                       factum_result_t **out, factum_error_t *err) {
    int rc = store_check_stream(stream, err);
    if (rc) return rc;
    limit = MIN(limit, STORE_MAX_READ);
    uint64_t durable = factum_head_position(db), key = index_key_stream(stream);
    factum_result_t *res = result_new(db, limit);
    if (!res) return err_set(err, FACTUM_ENOMEM, "out of memory");
    hider h;
    hider_init(&h, db);
    uint64_t floor = 0;
    if (h.on) {
        uint64_t h1, h2;
        streams_hash(stream, &h1, &h2);
        if ((h.has = meta_rules_get(&db->meta, h1, h2, &h.r))) {
            h.stream = stream;
            if (h.r.tombstone || meta_reads_deleted(&h.r)) {
                factum_result_free(res);
                return h.r.tombstone ? err_set(err, FACTUM_EDELETED, "stream '%.*s' is deleted for ever (tombstone)",
                                               (int)stream.len, stream.ptr)
                                     : err_set(err, FACTUM_ENOTFOUND, "stream '%.*s' not found (deleted)",
                                               (int)stream.len, stream.ptr);
            }
            floor = meta_floor(&h.r);
            if (h.r.max_age_s && !backward && from < (uint64_t)h.r.last + 1)
                floor = MAX(floor, store_stream_first_at(
                                       db, stream,
                                       h.now - (int64_t)MIN(h.r.max_age_s, (uint64_t)INT64_MAX / 2000000) * 1000000,
                                       (uint64_t)h.r.last + 1));
        }
    }
    idx_hit cur = backward ? (idx_hit){from, UINT64_MAX} : (idx_hit){MAX(from, floor), 0};
    idx_hit hits[128];
    bool more = !backward || from >= floor;
    while (more && res->n < limit) {
        size_t want = MIN(ARRAY_LEN(hits), limit - res->n + 1);
        size_t n = index_range(db->index, key, cur, backward, want, durable, hits);
        more = n == want;
        for (size_t i = 0; i < n && res->n < limit; i++) {
            factum_event_t e;
            if ((rc = store_event_at(db, hits[i].pos, &e, err)) == FACTUM_ENOTFOUND) continue; /* scavenged */
            if (rc) goto fail;
            if (!str_eq(e.stream, stream) || e.revision != hits[i].seq) continue; /* another stream, same key */
            if (hidden(&h, &e)) {
                if (!backward) continue;
                more = false; /* going back, everything further is older still */
                break;
            }
            if ((rc = result_push(res, &e))) goto fail;
        }
        if (more && n && !index_after(hits[n - 1], backward, &cur)) more = false;
    }
    if (res->n == 0 && store_stream_last(db, stream, durable) < 0) {
        factum_result_free(res);
        return err_set(err, FACTUM_ENOTFOUND, "stream '%.*s' not found", (int)stream.len, stream.ptr);
    }
    if (!backward)
        res->next = res->n ? res->ev[res->n - 1].revision + 1 : MAX(from, floor);
    else
        res->next =
            res->n ? (res->ev[res->n - 1].revision ? res->ev[res->n - 1].revision - 1 : FACTUM_END) : FACTUM_END;
    *out = result_transform(db, res);
    return 0;
fail:
    factum_result_free(res);
    return rc;
}

static bool matches(const factum_query_t *q, const type_filter *f, const factum_event_t *e) {
    return (q->system || e->stream.ptr[0] != '$') && type_matches(f, e) &&
           (!q->category.len || stream_in_category(e->stream, q->category)) &&
           (!q->correlationid.len || str_eq(e->correlationid, q->correlationid));
}

/* $all filtered by correlation id, through its index. */
static int read_correlation(factum_t *db, const factum_query_t *q, const type_filter *f, uint64_t durable, hider *h,
                            factum_result_t *res, factum_error_t *err) {
    uint64_t key = index_key_corr(q->correlationid);
    idx_hit cur = {q->from, q->backward ? UINT64_MAX : 0}, hits[128];
    res->next = q->backward ? FACTUM_END : (q->from == FACTUM_END ? durable : q->from);
    for (;;) {
        size_t n = index_range(db->index, key, cur, q->backward, ARRAY_LEN(hits), durable, hits);
        for (size_t i = 0; i < n; i++) {
            factum_event_t e;
            int rc = store_event_at(db, hits[i].pos, &e, err);
            if (rc == FACTUM_ENOTFOUND) continue; /* scavenged */
            if (rc) return rc;
            res->next = q->backward ? (e.position ? e.position - 1 : FACTUM_END) : e.position + 1;
            if (matches(q, f, &e) && !hidden(h, &e) && (rc = push_read(res, f, &e)))
                return err_set(err, rc, "out of memory");
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
    factum_result_t *res = result_new(db, q.limit);
    if (!res) return err_set(err, FACTUM_ENOMEM, "out of memory");
    type_filter f;
    int rc = type_filter_init(db, &q, &f);
    hider h;
    hider_init(&h, db);
    if (rc || q.limit == 0) {
        res->next = q.from;
    } else if (q.correlationid.len) {
        rc = read_correlation(db, &q, &f, durable, &h, res, err);
    } else if (!q.backward) {
        uint64_t p = q.from, stop = p + STORE_SCAN_WINDOW < p ? durable : MIN(durable, p + STORE_SCAN_WINDOW);
        for (; p < stop && res->n < q.limit; p++) {
            factum_event_t e;
            if ((rc = store_event_at(db, p, &e, err)) == FACTUM_ENOTFOUND) {
                rc = 0;
                continue;
            }
            if (rc) break;
            if (matches(&q, &f, &e) && !hidden(&h, &e) && (rc = push_read(res, &f, &e))) break;
        }
        res->next = MIN(p, MAX(durable, q.from));
    } else {
        uint64_t p = q.from >= durable ? durable : q.from + 1; /* one past the first to look at */
        uint64_t stop = p > STORE_SCAN_WINDOW ? p - STORE_SCAN_WINDOW : 0;
        for (; p > stop && res->n < q.limit; p--) {
            factum_event_t e;
            if ((rc = store_event_at(db, p - 1, &e, err)) == FACTUM_ENOTFOUND) {
                rc = 0;
                continue;
            }
            if (rc) break;
            if (matches(&q, &f, &e) && !hidden(&h, &e) && (rc = push_read(res, &f, &e))) break;
        }
        res->next = p ? p - 1 : FACTUM_END;
    }
    type_filter_free(&f);
    if (rc) {
        if (rc == FACTUM_ENOMEM) err_set(err, rc, "out of memory");
        factum_result_free(res);
        return rc;
    }
    *out = f.n ? res : result_transform(db, res); /* with f.n each was transformed as it came */
    return 0;
}

int factum_read_at(factum_t *db, uint64_t position, factum_result_t **out, factum_error_t *err) {
    *out = NULL;
    uint64_t head = factum_head_position(db);
    if (position >= head)
        return err_set(err, FACTUM_ENOTFOUND, "no event at position %llu (the head is %llu)",
                       (unsigned long long)position, (unsigned long long)head);
    factum_result_t *r = result_new(db, 1);
    if (!r) return err_set(err, FACTUM_ENOMEM, "out of memory");
    factum_event_t e;
    int rc = store_event_at(db, position, &e, err);
    hider h;
    hider_init(&h, db);
    if (!rc && hidden(&h, &e))
        rc = err_set(err, FACTUM_ENOTFOUND, "the event at position %llu is deleted or expired",
                     (unsigned long long)position);
    if (!rc && result_push(r, &e)) rc = err_set(err, FACTUM_ENOMEM, "out of memory");
    if (rc) {
        factum_result_free(r);
        return rc;
    }
    r->next = position + 1;
    *out = result_transform(db, r);
    return 0;
}

uint64_t factum_position_at(factum_t *db, int64_t time_us) {
    uint64_t lo = 0, hi = factum_head_position(db);
    unsigned pin = store_pin(db);
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2, at = mid;
        factum_event_t e;
        int rc;
        /* A position a scavenge emptied has no time: look at the next one still there. */
        while ((rc = store_event_at(db, at, &e, NULL)) == FACTUM_ENOTFOUND && at + 1 < hi)
            at++;
        if (rc == FACTUM_ENOTFOUND) hi = mid; /* nothing left in [mid, hi) */
        /* A record that fails its checksum cannot be placed; treat it as earlier, so the
           answer errs toward delivering more, never fewer. */
        else if (rc || e.time_us < time_us)
            lo = at + 1;
        else
            hi = mid;
    }
    store_unpin(db, pin);
    return lo;
}

/* ---- metadata ---- */

int factum_meta_get(factum_t *db, factum_str_t stream, factum_meta_t *out, factum_error_t *err) {
    memset(out, 0, sizeof *out);
    out->position = FACTUM_END;
    int rc = store_check_stream(stream, err);
    if (rc) return rc;
    uint64_t h1, h2;
    streams_hash(stream, &h1, &h2);
    pthread_rwlock_rdlock(&db->meta.lock);
    meta_entry *e = meta_find(&db->meta, h1, h2);
    if (e) {
        out->max_age_s = e->r.max_age_s, out->max_count = e->r.max_count, out->truncate_before = e->r.tb;
        out->deleted = meta_reads_deleted(&e->r), out->tombstone = e->r.tombstone;
        out->position = e->pos;
        factum_str_t custom;
        int kind;
        char *copy;
        if (json_member((factum_str_t){e->doc, e->doc_len}, "custom", &custom, &kind) && kind == JSON_OBJECT) {
            if ((copy = malloc(custom.len))) {
                memcpy(copy, custom.ptr, custom.len);
                out->custom = (factum_str_t){copy, custom.len};
            } else {
                rc = err_set(err, FACTUM_ENOMEM, "out of memory");
            }
        }
    }
    pthread_rwlock_unlock(&db->meta.lock);
    return rc;
}

void factum_meta_free(factum_meta_t *m) {
    if (!m) return;
    free((void *)m->custom.ptr);
    m->custom = (factum_str_t){0};
}

int store_meta_load(factum_t *db, factum_error_t *err) {
    buf_t name = {0};
    uint64_t from = 0;
    int rc = 0;
    for (bool more = true; more && !rc;) {
        factum_result_t *res;
        if ((rc = factum_read_stream(db, str_c(META_STREAM), from, 1000, 0, &res, err))) {
            if (rc == FACTUM_ENOTFOUND) rc = 0;
            break;
        }
        for (size_t i = 0; i < factum_result_count(res) && !rc; i++) {
            const factum_event_t *e = factum_result_event(res, i);
            meta_doc d;
            if (meta_doc_parse(e->data, &d, &name)) {
                rc = err_set(err, FACTUM_ECORRUPT, "the metadata record at position %llu cannot be read",
                             (unsigned long long)e->position);
                break;
            }
            uint64_t h1, h2;
            streams_hash(d.stream, &h1, &h2);
            d.r.last = store_stream_last(db, d.stream, UINT64_MAX);
            if (meta_apply(&db->meta, h1, h2, &d.r, e->position, e->data))
                rc = err_set(err, FACTUM_ENOMEM, "out of memory loading metadata");
        }
        more = factum_result_count(res) == 1000;
        from = factum_result_next(res);
        factum_result_free(res);
    }
    buf_free(&name);
    return rc;
}

/* ---- reads by tag query (docs/dcb.md) ---- */

/*
 * Each item's posting lists give up to `limit` matching positions from `from` in the direction
 * of travel; the answer is the first `limit` of their union, which are among those.
 */
static int cmp_event_pos(const void *a, const void *b) {
    uint64_t x = ((const factum_event_t *)a)->position, y = ((const factum_event_t *)b)->position;
    return (x > y) - (x < y);
}

/* Sorts res's events in the direction of travel, drops repeats, keeps the first `limit`. */
static void trim(factum_result_t *res, size_t limit, int backward) {
    if (res->n) qsort(res->ev, res->n, sizeof *res->ev, cmp_event_pos);
    size_t kept = 0;
    for (size_t x = 0; x < res->n; x++)
        if (!kept || res->ev[x].position != res->ev[kept - 1].position) res->ev[kept++] = res->ev[x];
    if (backward)
        for (size_t a = 0, b = kept ? kept - 1 : 0; a < b; a++, b--) {
            factum_event_t t = res->ev[a];
            res->ev[a] = res->ev[b], res->ev[b] = t;
        }
    res->n = MIN(kept, limit);
}

/*
 * Each posting list gives its matches from `from` in the direction of travel; the answer is
 * the first `limit` of their union. Memory stays near 2 x limit events: when that many are
 * gathered they are trimmed to `limit`, and the last one kept bounds the lists still to walk.
 */
int factum_read_tagged(factum_t *db, const factum_tag_query_t *q, uint64_t from, size_t limit, int backward,
                       uint64_t *head, factum_result_t **out, factum_error_t *err) {
    int rc = factum_tag_query_check(q, err);
    if (rc) return rc;
    limit = MAX(1, MIN(limit, STORE_MAX_READ));
    uint64_t durable = factum_head_position(db), keys[FACTUM_MAX_QUERY_ITEMS];
    if (head) *head = durable;
    factum_result_t *res = result_new(db, limit); /* its pin keeps the events' mappings */
    if (!res) return err_set(err, FACTUM_ENOMEM, "out of memory");
    hider h;
    hider_init(&h, db);
    bool bounded = false;
    uint64_t bound = 0; /* with `bounded`: nothing past this position can be in the answer */
    for (size_t i = 0; i < q->nitems && !rc; i++) {
        size_t nk = tags_item_keys(&q->items[i], keys);
        factum_tag_query_t one = {&q->items[i], 1};
        for (size_t k = 0; k < nk && !rc; k++) {
            idx_hit cur = {from, from}, hits[128];
            size_t got = 0;
            for (bool more = true; more && got < limit;) {
                size_t n = index_range(db->index, keys[k], cur, backward, ARRAY_LEN(hits), durable, hits);
                more = n == ARRAY_LEN(hits);
                for (size_t x = 0; x < n && got < limit; x++) {
                    if (bounded && (backward ? hits[x].pos < bound : hits[x].pos > bound)) {
                        more = false;
                        break;
                    }
                    factum_event_t e;
                    if ((rc = store_event_at(db, hits[x].pos, &e, err)) == FACTUM_ENOTFOUND) {
                        rc = 0;
                        continue; /* scavenged */
                    }
                    if (rc) break;
                    if (!factum_tag_query_matches(&one, &e) || hidden(&h, &e)) continue;
                    if ((rc = result_push(res, &e))) {
                        rc = err_set(err, rc, "out of memory");
                        break;
                    }
                    got++;
                }
                if (more && !index_after(hits[n - 1], backward, &cur)) more = false;
            }
            if (res->n >= 2 * limit) {
                trim(res, limit, backward);
                if (res->n == limit) bounded = true, bound = res->ev[limit - 1].position;
            }
        }
    }
    if (rc) {
        factum_result_free(res);
        return rc;
    }
    trim(res, limit, backward);
    if (res->n == limit) {
        uint64_t last = res->ev[res->n - 1].position;
        res->next = backward ? (last ? last - 1 : FACTUM_END) : last + 1;
    } else {
        res->next = backward ? FACTUM_END : MAX(from == FACTUM_END ? durable : from, durable);
    }
    *out = res;
    return 0;
}
