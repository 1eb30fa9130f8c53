/*
 * append.c — factum_append, factum_append_async and the metadata changes, on the caller's side.
 *
 * A caller validates and encodes its events in its own thread, queues an append_req and
 * sleeps on it (or, async, is called back). The writer thread (writer.c) takes everything
 * queued as one commit group and wakes the callers once their events are durable.
 */
#include "append.h"

#include "../base/json.h"
#include "../base/trace.h"
#include "record.h"
#include "tags.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

/* ---- validation (caller thread) ---- */

static const char *const reserved[] = {"specversion",     "id",   "source",        "type",        "subject", "time",
                                       "datacontenttype", "data", "correlationid", "causationid", "stream",  "revision",
                                       "position"};

static int check_attr(factum_str_t s, size_t max, bool required, const char *name, size_t i, factum_error_t *err) {
    if (required && s.len == 0) return err_set(err, FACTUM_EBADEVENT, "event %zu: '%s' is required", i, name);
    if (s.len > max)
        return err_set(err, FACTUM_ETOOBIG, "event %zu: '%s' is %zu bytes, the limit is %zu", i, name, s.len, max);
    if (!text_valid(s.ptr, s.len))
        return err_set(err, FACTUM_EBADEVENT, "event %zu: '%s' must be UTF-8 text without control characters", i, name);
    return 0;
}

static int check_extensions(factum_str_t ext, size_t i, factum_error_t *err) {
    if (ext.len == 0) return 0;
    if (ext.len > FACTUM_MAX_EXTENSIONS)
        return err_set(err, FACTUM_ETOOBIG, "event %zu: extension attributes are %zu bytes, the limit is %d", i,
                       ext.len, FACTUM_MAX_EXTENSIONS);
    if (!json_valid_members(ext.ptr, ext.len))
        return err_set(err, FACTUM_EBADEVENT, "event %zu: extension attributes are not valid JSON members", i);
    buf_t b = {0}, names = {0};
    int rc = buf_append(&b, "{", 1);
    if (!rc) rc = buf_append(&b, ext.ptr, ext.len);
    if (!rc) rc = buf_append(&b, "}", 1);
    if (rc) return err_set(err, FACTUM_ENOMEM, "out of memory");
    json_iter_t it;
    factum_str_t key, val;
    int kind;
    json_iter_init(&it, (factum_str_t){b.ptr, b.len});
    while (!rc && json_iter_member(&it, &key, &val, &kind) == 1) {
        factum_str_t k = {key.ptr + 1, key.len - 2};
        bool ok = k.len > 0 && k.len <= 64;
        for (size_t j = 0; j < k.len && ok; j++)
            ok = (k.ptr[j] >= 'a' && k.ptr[j] <= 'z') || (k.ptr[j] >= '0' && k.ptr[j] <= '9');
        if (!ok) {
            rc = err_set(err, FACTUM_EBADEVENT,
                         "event %zu: extension attribute %.*s: names are 1-64 lowercase letters or digits", i,
                         (int)MIN(key.len, 80), key.ptr);
            break;
        }
        for (size_t r = 0; r < ARRAY_LEN(reserved) && !rc; r++)
            if (strlen(reserved[r]) == k.len && !memcmp(reserved[r], k.ptr, k.len))
                rc = err_set(err, FACTUM_EBADEVENT, "event %zu: '%s' is not an extension attribute", i, reserved[r]);
        /* Duplicate names: a list of "\nname\n" to search. */
        char probe[68];
        int pn = snprintf(probe, sizeof probe, "\n%.*s\n", (int)k.len, k.ptr);
        if (!rc && names.len && memmem(names.ptr, names.len, probe, (size_t)pn))
            rc = err_set(err, FACTUM_EBADEVENT, "event %zu: extension attribute '%.*s' appears twice", i, (int)k.len,
                         k.ptr);
        if (!rc) rc = buf_append(&names, probe, (size_t)pn);
    }
    buf_free(&b);
    buf_free(&names);
    return rc;
}

static int check_event(const factum_t *db, const factum_event_t *e, size_t i, factum_error_t *err) {
    int rc;
    if ((rc = check_attr(e->type, FACTUM_MAX_ATTRIBUTE, true, "type", i, err)) ||
        (rc = check_attr(e->id, FACTUM_MAX_ATTRIBUTE, false, "id", i, err)) ||
        (rc = check_attr(e->correlationid, FACTUM_MAX_ATTRIBUTE, false, "correlationid", i, err)) ||
        (rc = check_attr(e->causationid, FACTUM_MAX_ATTRIBUTE, false, "causationid", i, err)) ||
        (rc = check_attr(e->source, FACTUM_MAX_LONG_ATTRIBUTE, false, "source", i, err)) ||
        (rc = check_attr(e->subject, FACTUM_MAX_LONG_ATTRIBUTE, false, "subject", i, err)) ||
        (rc = check_attr(e->datacontenttype, FACTUM_MAX_LONG_ATTRIBUTE, false, "datacontenttype", i, err)) ||
        (rc = check_extensions(e->extensions, i, err)) || (rc = trace_check_members(e->extensions, i, err)) ||
        (rc = tags_check_members(e->extensions, i, err)))
        return rc;
    if (e->data.len > db->max_data_bytes)
        return err_set(err, FACTUM_ETOOBIG, "event %zu: data is %zu bytes, the limit is %u", i, e->data.len,
                       db->max_data_bytes);
    switch (e->data_format) {
    case FACTUM_DATA_NONE:
        if (e->data.len) return err_set(err, FACTUM_EBADEVENT, "event %zu: data given with data_format NONE", i);
        break;
    case FACTUM_DATA_JSON:
        if (!json_valid(e->data.ptr, e->data.len, NULL))
            return err_set(err, FACTUM_EBADEVENT, "event %zu: data is not valid JSON", i);
        break;
    case FACTUM_DATA_BINARY: break;
    default: return err_set(err, FACTUM_EBADEVENT, "event %zu: unknown data_format %d", i, e->data_format);
    }
    return 0;
}

int store_check_stream(factum_str_t s, factum_error_t *err) {
    if (s.len == 0 || s.len > FACTUM_MAX_STREAM_NAME)
        return err_set(err, FACTUM_EBADSTREAM, "stream name must be 1 to %d bytes (got %zu)", FACTUM_MAX_STREAM_NAME,
                       s.len);
    if (!text_valid(s.ptr, s.len) || memchr(s.ptr, '/', s.len) || memchr(s.ptr, ' ', s.len))
        return err_set(err, FACTUM_EBADSTREAM, "stream name must be UTF-8 without spaces, '/' or control characters");
    if (str_eq(s, str_c("$all"))) return err_set(err, FACTUM_EBADSTREAM, "'$all' is the global log, not a stream");
    return 0;
}

int factum_stream_name_check(factum_str_t name, factum_error_t *err) { return store_check_stream(name, err); }

int factum_events_check(factum_t *db, const factum_event_t *events, size_t n, factum_error_t *err) {
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++)
        rc = check_event(db, &events[i], i, err);
    return rc;
}

/* ---- factum_append and factum_append_async (caller thread) ---- */

/* Sorts ids to find one used twice in a batch. */
static int cmp_str(const void *a, const void *b) {
    const factum_str_t *x = a, *y = b;
    int c = memcmp(x->ptr, y->ptr, MIN(x->len, y->len));
    return c ? c : (x->len > y->len) - (x->len < y->len);
}

/* Validates and encodes an append into a request the writer can take. Owns copies of all it
   needs, so the caller's events and stream may go away once this returns. */
static int append_prepare(factum_t *db, factum_str_t stream, int64_t expected, const factum_event_t *events, size_t n,
                          append_req **out, factum_error_t *err) {
    int rc;
    *out = NULL;
    if (!db || (!events && n)) return err_set(err, FACTUM_EINVAL, "factum_append: no store or no events");
    if ((rc = store_check_stream(stream, err))) return rc;
    if (str_eq(stream, str_c(META_STREAM)))
        return err_set(err, FACTUM_EBADSTREAM, "'%s' is written by factum_meta_set and factum_delete_stream",
                       META_STREAM);
    if (n == 0) return err_set(err, FACTUM_EBADEVENT, "an append needs at least one event");
    if (n > FACTUM_MAX_BATCH_EVENTS)
        return err_set(err, FACTUM_ETOOBIG, "a batch holds at most %d events (got %zu)", FACTUM_MAX_BATCH_EVENTS, n);
    if (expected < FACTUM_EXPECT_EXISTS)
        return err_set(err, FACTUM_EINVAL, "unknown expected revision %lld", (long long)expected);
    for (size_t i = 0; i < n; i++)
        if ((rc = check_event(db, &events[i], i, err))) return rc;
    factum_append_check_cb check = atomic_load_explicit(&db->check, memory_order_acquire);
    if (check && (rc = check(db->check_ctx, stream, events, n, err))) return rc;

    /* Ids: the caller's, or fresh UUIDv7s; none twice in one batch. */
    append_req *r = calloc(1, sizeof *r);
    factum_event_t *ev = malloc(n * sizeof *ev);
    char(*ids)[37] = malloc(n * sizeof *ids);
    factum_str_t *sorted = malloc(n * sizeof *sorted);
    buf_t src = {0};
    if (r) r->user_id = malloc(n), r->offs = malloc(n * sizeof *r->offs);
    if (!r || !ev || !ids || !r->user_id || !r->offs || !sorted) {
        rc = err_set(err, FACTUM_ENOMEM, "out of memory");
        goto out;
    }
    bool default_source = false;
    for (size_t i = 0; i < n; i++)
        default_source |= events[i].source.len == 0;
    if (default_source && (buf_append(&src, "/streams/", 9) || buf_append(&src, stream.ptr, stream.len))) {
        rc = err_set(err, FACTUM_ENOMEM, "out of memory");
        goto out;
    }
    size_t total = 0, nsorted = 0;
    for (size_t i = 0; i < n; i++) {
        ev[i] = events[i];
        r->user_id[i] = ev[i].id.len > 0;
        if (!r->user_id[i]) {
            uuid7_make(ids[i]);
            ev[i].id = (factum_str_t){ids[i], 36};
        }
        if (!ev[i].source.len) ev[i].source = (factum_str_t){src.ptr, src.len};
        if (r->user_id[i]) sorted[nsorted++] = ev[i].id; /* fresh UUIDv7s cannot repeat one */
        r->offs[i] = (uint32_t)MIN(total, UINT32_MAX);
        total += record_size(stream, &ev[i]);
    }
    qsort(sorted, nsorted, sizeof *sorted, cmp_str);
    for (size_t i = 1; i < nsorted; i++)
        if (str_eq(sorted[i], sorted[i - 1])) {
            rc = err_set(err, FACTUM_EBADEVENT, "event id '%.*s' appears twice in the batch", (int)sorted[i].len,
                         sorted[i].ptr);
            goto out;
        }
    if (total > STORE_MAX_BATCH_BYTES || total > db->segment_bytes - SEGMENT_HEADER) {
        rc = err_set(err, FACTUM_ETOOBIG, "the batch takes %zu bytes stored, the limit is %llu", total,
                     (unsigned long long)MIN(STORE_MAX_BATCH_BYTES, db->segment_bytes - SEGMENT_HEADER));
        goto out;
    }
    r->recs = malloc(total);
    if (!r->recs) {
        rc = err_set(err, FACTUM_ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        record_encode(r->recs + r->offs[i], stream, &ev[i]);
    /* The stream name inside the first record outlives the caller's copy. */
    factum_event_t first;
    record_parse(r->recs, &first);
    r->stream = first.stream;
    r->expected = expected, r->n = n, r->bytes = total;
    streams_hash(stream, &r->h1, &r->h2);
    r->res.actual_revision = -1;
out:
    if (rc)
        req_free(r);
    else
        *out = r;
    free(ev);
    free(ids);
    free(sorted);
    buf_free(&src);
    return rc;
}

int store_submit(factum_t *db, append_req *head, append_req *tail, factum_error_t *err) {
    pthread_mutex_lock(&db->qmu);
    if (db->stopping) {
        pthread_mutex_unlock(&db->qmu);
        return err_set(err, FACTUM_ECLOSED, "the store is closing");
    }
    if (db->qtail)
        db->qtail->next = head;
    else
        db->qhead = head;
    db->qtail = tail;
    pthread_cond_signal(&db->qcond);
    pthread_mutex_unlock(&db->qmu);
    return 0;
}

/* To the writer, or in cluster mode to the replicator (which completes it later). */
static int append_submit(factum_t *db, append_req *r, factum_error_t *err) {
    factum_replicate_cb rep = atomic_load(&db->replicator);
    if (!rep) return store_submit(db, r, r, err);
    int rc = rep(db->replicator_ctx, (factum_proposal_t *)r);
    return rc ? err_set(err, rc, "the cluster node refuses writes: %s", factum_strerror(rc)) : 0;
}

/* Queues a prepared request (rc: what preparing it returned) and sleeps until it is done. */
static int run_sync(factum_t *db, int rc, append_req *r, factum_append_result_t *res, factum_error_t *err) {
    factum_append_result_t dummy;
    if (!res) res = &dummy;
    memset(res, 0, sizeof *res);
    res->actual_revision = -1;
    if (!rc) rc = append_submit(db, r, err);
    if (rc) {
        req_free(r);
        return rc;
    }
    while (!atomic_load_explicit(&r->done, memory_order_acquire))
        futex_wait(&r->done, 0);
    *res = r->res;
    rc = r->rc;
    if (rc) err_set(err, rc, "%s", r->msg);
    req_free(r);
    return rc;
}

/* Queues a prepared request whose completion goes to cb. */
static int run_async(factum_t *db, int rc, append_req *r, factum_append_cb cb, void *ctx, factum_error_t *err) {
    if (rc) return rc;
    r->cb = cb, r->ctx = ctx;
    if ((rc = append_submit(db, r, err))) req_free(r);
    return rc;
}

int factum_append(factum_t *db, factum_str_t stream, int64_t expected, const factum_event_t *events, size_t n,
                  factum_append_result_t *res, factum_error_t *err) {
    append_req *r;
    int rc = append_prepare(db, stream, expected, events, n, &r, err);
    return run_sync(db, rc, r, res, err);
}

int factum_append_async(factum_t *db, factum_str_t stream, int64_t expected, const factum_event_t *events, size_t n,
                        factum_append_cb cb, void *ctx, factum_error_t *err) {
    if (!cb) return err_set(err, FACTUM_EINVAL, "factum_append_async: no callback");
    append_req *r;
    int rc = append_prepare(db, stream, expected, events, n, &r, err);
    return run_async(db, rc, r, cb, ctx, err);
}

/* A condition for a prepared request: checked, copied into it. */
static int attach_condition(factum_t *db, append_req *r, const factum_condition_t *cond, factum_error_t *err) {
    int rc = cond ? factum_tag_query_check(&cond->fail_if, err) : err_set(err, FACTUM_EINVAL, "no condition");
    if (rc) return rc;
    if (atomic_load(&db->replicator))
        return err_set(err, FACTUM_EINVAL, "conditional appends are not supported in cluster mode yet");
    uint64_t head = factum_head_position(db);
    if (cond->after != FACTUM_AFTER_NONE && cond->after >= head)
        return err_set(err, FACTUM_EINVAL, "'after' is %llu, but the last position is %lld",
                       (unsigned long long)cond->after, (long long)head - 1);
    if (!(r->cond = tags_query_copy(&cond->fail_if))) return err_set(err, FACTUM_ENOMEM, "out of memory");
    r->cond_after = cond->after;
    return 0;
}

int factum_append_if(factum_t *db, factum_str_t stream, int64_t expected, const factum_event_t *events, size_t n,
                     const factum_condition_t *cond, factum_append_result_t *res, factum_error_t *err) {
    append_req *r;
    int rc = append_prepare(db, stream, expected, events, n, &r, err);
    if (!rc && (rc = attach_condition(db, r, cond, err))) req_free(r), r = NULL;
    return run_sync(db, rc, r, res, err);
}

int factum_append_if_async(factum_t *db, factum_str_t stream, int64_t expected, const factum_event_t *events, size_t n,
                           const factum_condition_t *cond, factum_append_cb cb, void *ctx, factum_error_t *err) {
    if (!cb) return err_set(err, FACTUM_EINVAL, "factum_append_if_async: no callback");
    append_req *r;
    int rc = append_prepare(db, stream, expected, events, n, &r, err);
    if (!rc && (rc = attach_condition(db, r, cond, err))) req_free(r), r = NULL;
    return run_async(db, rc, r, cb, ctx, err);
}

/* ---- multi-stream appends ---- */

void store_set_complete(append_req *r) {
    append_set *set = r->set;
    set->res[r->set_index] = r->res;
    if (r->rc && !set->rc) {
        set->rc = r->rc;
        memcpy(set->msg, r->msg, sizeof set->msg);
    }
    req_free(r);
    if (atomic_fetch_sub(&set->left, 1) != 1) return;
    set->cb(set->ctx, set->rc, set->res, set->n, set->rc ? set->msg : "");
    free(set);
}

/* Prepares every part into a set of linked requests queued in one step. */
static int streams_submit(factum_t *db, const factum_stream_append_t *parts, size_t nparts,
                          const factum_condition_t *cond, factum_streams_cb cb, void *ctx, factum_error_t *err) {
    if (!db || !parts || !nparts || !cb) return err_set(err, FACTUM_EINVAL, "factum_append_streams: no parts");
    if (nparts > FACTUM_MAX_STREAMS)
        return err_set(err, FACTUM_ETOOBIG, "an append goes to at most %d streams (got %zu)", FACTUM_MAX_STREAMS,
                       nparts);
    if (atomic_load(&db->replicator))
        return err_set(err, FACTUM_EINVAL, "multi-stream appends are not supported in cluster mode yet");
    append_req *r[FACTUM_MAX_STREAMS] = {0};
    append_set *set = calloc(1, sizeof *set + nparts * sizeof set->res[0]);
    int rc = set ? 0 : err_set(err, FACTUM_ENOMEM, "out of memory");
    size_t events = 0, bytes = 0;
    for (size_t i = 0; i < nparts && !rc; i++) {
        if ((rc = append_prepare(db, parts[i].stream, parts[i].expected, parts[i].events, parts[i].n, &r[i], err))) {
            char m[sizeof err->message];
            snprintf(m, sizeof m, "%s", err->message);
            err_set(err, rc, "stream '%.*s': %s", (int)MIN(parts[i].stream.len, 80), parts[i].stream.ptr, m);
            break;
        }
        events += r[i]->n, bytes += r[i]->bytes;
        for (size_t k = 0; k < i && !rc; k++)
            if (r[k]->h1 == r[i]->h1 && r[k]->h2 == r[i]->h2)
                rc = err_set(err, FACTUM_EINVAL, "stream '%.*s' is given twice", (int)r[i]->stream.len,
                             r[i]->stream.ptr);
    }
    if (!rc && events > FACTUM_MAX_BATCH_EVENTS)
        rc = err_set(err, FACTUM_ETOOBIG, "an append holds at most %d events (got %zu)", FACTUM_MAX_BATCH_EVENTS,
                     events);
    if (!rc && (bytes > STORE_MAX_BATCH_BYTES || bytes > db->segment_bytes - SEGMENT_HEADER))
        rc = err_set(err, FACTUM_ETOOBIG, "the append takes %zu bytes stored, the limit is %llu", bytes,
                     (unsigned long long)MIN(STORE_MAX_BATCH_BYTES, db->segment_bytes - SEGMENT_HEADER));
    if (!rc && cond) rc = attach_condition(db, r[0], cond, err);
    if (!rc) {
        *set = (append_set){.cb = cb, .ctx = ctx, .n = nparts};
        atomic_store(&set->left, (uint32_t)nparts);
        for (size_t i = 0; i < nparts; i++) {
            r[i]->set = set, r[i]->set_index = (uint32_t)i, r[i]->link_left = (uint32_t)(nparts - 1 - i);
            r[i]->next = i + 1 < nparts ? r[i + 1] : NULL;
        }
        rc = store_submit(db, r[0], r[nparts - 1], err);
        if (!rc) return 0;
    }
    for (size_t i = 0; i < nparts; i++)
        req_free(r[i]);
    free(set);
    return rc;
}

typedef struct streams_wait {
    _Atomic uint32_t done;
    int rc;
    factum_stream_append_t *parts;
    char msg[sizeof(((factum_error_t *)0)->message)];
} streams_wait;

static void streams_woken(void *ctx, int rc, const factum_append_result_t *res, size_t n, const char *msg) {
    streams_wait *w = ctx;
    for (size_t i = 0; i < n; i++)
        w->parts[i].res = res[i];
    w->rc = rc;
    snprintf(w->msg, sizeof w->msg, "%s", msg);
    atomic_store_explicit(&w->done, 1, memory_order_release);
    futex_wake(&w->done);
}

int factum_append_streams(factum_t *db, factum_stream_append_t *parts, size_t nparts, const factum_condition_t *cond,
                          factum_error_t *err) {
    streams_wait w = {.parts = parts};
    int rc = streams_submit(db, parts, nparts, cond, streams_woken, &w, err);
    if (rc) return rc;
    while (!atomic_load_explicit(&w.done, memory_order_acquire))
        futex_wait(&w.done, 0);
    if (w.rc) err_set(err, w.rc, "%s", w.msg);
    return w.rc;
}

int factum_append_streams_async(factum_t *db, const factum_stream_append_t *parts, size_t nparts,
                                const factum_condition_t *cond, factum_streams_cb cb, void *ctx, factum_error_t *err) {
    return streams_submit(db, parts, nparts, cond, cb, ctx, err);
}

/* ---- metadata changes (caller thread; the writer builds the record) ---- */

static int meta_prepare(factum_t *db, factum_str_t stream, int op, int64_t expected, const factum_meta_t *m,
                        append_req **out, factum_error_t *err) {
    int rc;
    *out = NULL;
    if (!db) return err_set(err, FACTUM_EINVAL, "no store");
    if ((rc = store_check_stream(stream, err))) return rc;
    if (str_eq(stream, str_c(META_STREAM)))
        return err_set(err, FACTUM_EBADSTREAM, "'%s' holds the metadata of other streams and has none itself",
                       META_STREAM);
    if (expected < FACTUM_EXPECT_EXISTS)
        return err_set(err, FACTUM_EINVAL, "unknown expected revision %lld", (long long)expected);
    int kind;
    if (m && m->custom.len &&
        (m->custom.len > FACTUM_MAX_META_CUSTOM || !json_valid(m->custom.ptr, m->custom.len, &kind) ||
         kind != JSON_OBJECT))
        return err_set(err, m->custom.len > FACTUM_MAX_META_CUSTOM ? FACTUM_ETOOBIG : FACTUM_EINVAL,
                       m->custom.len > FACTUM_MAX_META_CUSTOM
                           ? "custom metadata is %zu bytes, the limit is %d"
                           : "custom metadata must be a JSON object (%zu bytes given)",
                       m->custom.len, FACTUM_MAX_META_CUSTOM);
    append_req *r = calloc(1, sizeof *r);
    if (r) r->user_id = calloc(1, 1), r->offs = calloc(1, sizeof *r->offs), r->target = malloc(stream.len);
    if (r && r->target && m && m->custom.len && (r->custom = malloc(m->custom.len)))
        memcpy(r->custom, m->custom.ptr, m->custom.len);
    if (!r || !r->user_id || !r->offs || !r->target || (m && m->custom.len && !r->custom)) {
        req_free(r);
        return err_set(err, FACTUM_ENOMEM, "out of memory");
    }
    memcpy(r->target, stream.ptr, stream.len);
    r->target_len = stream.len;
    streams_hash(stream, &r->th1, &r->th2);
    r->meta_op = op, r->target_expected = expected;
    uuid7_make(r->meta_id);
    if (m) {
        r->want = (meta_rules){.tb = m->truncate_before, .max_count = m->max_count, .max_age_s = m->max_age_s};
        r->want_tb = m->truncate_before > 0;
        r->custom_len = m->custom.len;
    }
    r->stream = str_c(META_STREAM);
    streams_hash(r->stream, &r->h1, &r->h2);
    r->expected = FACTUM_EXPECT_ANY, r->n = 1;
    r->res.actual_revision = -1;
    *out = r;
    return 0;
}

int factum_meta_set(factum_t *db, factum_str_t stream, const factum_meta_t *m, factum_append_result_t *res,
                    factum_error_t *err) {
    append_req *r = NULL;
    int rc = m ? meta_prepare(db, stream, META_SET, FACTUM_EXPECT_ANY, m, &r, err)
               : err_set(err, FACTUM_EINVAL, "no metadata");
    return run_sync(db, rc, r, res, err);
}

int factum_meta_set_async(factum_t *db, factum_str_t stream, const factum_meta_t *m, factum_append_cb cb, void *ctx,
                          factum_error_t *err) {
    append_req *r = NULL;
    int rc = m && cb ? meta_prepare(db, stream, META_SET, FACTUM_EXPECT_ANY, m, &r, err)
                     : err_set(err, FACTUM_EINVAL, "no metadata or no callback");
    return run_async(db, rc, r, cb, ctx, err);
}

int factum_delete_stream(factum_t *db, factum_str_t stream, int64_t expected, int tombstone,
                         factum_append_result_t *res, factum_error_t *err) {
    append_req *r = NULL;
    int rc = meta_prepare(db, stream, tombstone ? META_TOMBSTONE : META_DELETE, expected, NULL, &r, err);
    return run_sync(db, rc, r, res, err);
}

int factum_delete_stream_async(factum_t *db, factum_str_t stream, int64_t expected, int tombstone, factum_append_cb cb,
                               void *ctx, factum_error_t *err) {
    append_req *r = NULL;
    int rc = cb ? meta_prepare(db, stream, tombstone ? META_TOMBSTONE : META_DELETE, expected, NULL, &r, err)
                : err_set(err, FACTUM_EINVAL, "no callback");
    return run_async(db, rc, r, cb, ctx, err);
}

uint64_t factum_stream_key(factum_str_t stream) {
    uint64_t h1, h2;
    streams_hash(stream, &h1, &h2);
    return h1;
}

void factum_set_commit_hook(factum_t *db, factum_commit_cb fn, void *ctx) {
    pthread_mutex_lock(&db->qmu);
    db->hook_ctx = ctx;
    atomic_store(&db->hook, fn);
    pthread_mutex_unlock(&db->qmu);
}

void factum_set_append_check(factum_t *db, factum_append_check_cb fn, void *ctx, void (*free_ctx)(void *ctx)) {
    db->check_ctx = ctx, db->check_free = free_ctx;
    atomic_store_explicit(&db->check, fn, memory_order_release);
}

void factum_set_replicator(factum_t *db, factum_replicate_cb fn, void *ctx) {
    pthread_mutex_lock(&db->qmu);
    db->replicator_ctx = ctx;
    atomic_store(&db->replicator, fn);
    pthread_mutex_unlock(&db->qmu);
}

void factum_set_leads(factum_t *db, int leads) {
    uint64_t v = atomic_load(&db->leads), nv;
    do {
        if ((int)(v & 1) == !!leads) return;
        nv = leads ? ((v >> 1) + 1) << 1 | 1 : v & ~(uint64_t)1; /* a new term each time it starts leading */
    } while (!atomic_compare_exchange_weak(&db->leads, &v, nv));
}

int factum_leads(factum_t *db, uint64_t *term) {
    uint64_t v = atomic_load(&db->leads);
    if (term) *term = v >> 1;
    return (int)(v & 1);
}

void factum_stats(factum_t *db, factum_stats_t *o) {
    memset(o, 0, sizeof *o);
    o->appends = atomic_load_explicit(&db->st_appends, memory_order_relaxed);
    o->events = atomic_load_explicit(&db->st_events, memory_order_relaxed);
    o->bytes = atomic_load_explicit(&db->st_bytes, memory_order_relaxed);
    o->fsyncs = atomic_load_explicit(&db->st_fsyncs, memory_order_relaxed);
    o->fsync_us_sum = atomic_load_explicit(&db->st_fsync_us, memory_order_relaxed);
    o->log_bytes = atomic_load_explicit(&db->st_log_bytes, memory_order_relaxed);
    for (size_t i = 0; i < FACTUM_STAT_BUCKETS; i++) {
        o->fsync_us[i] = atomic_load_explicit(&db->st_fsync_hist[i], memory_order_relaxed);
        o->group_events[i] = atomic_load_explicit(&db->st_group_hist[i], memory_order_relaxed);
    }
    o->head = factum_head_position(db);
    o->streams = db->index ? index_name_count(db->index) : 0;
    o->failed = atomic_load(&db->st_failed);
}
