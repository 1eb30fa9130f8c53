/*
 * writer.c — the writer thread (append.h, store.h).
 *
 * It takes everything queued (a commit group), and for each request checks idempotency and the
 * expected revision, stamps positions, revisions and the group's time, and collects the bytes
 * and the index entries. Then one pwritev for the group, the index entries added while the
 * device writes it, and one fdatasync, after which
 * `durable` moves, the commit hook hears the group's summary and the callers wake. A failed
 * write or fdatasync stops the writer for good: later appends get FACTUM_EFAILED, never a retry
 * on top of lost pages.
 */
#include "append.h"

#include "../base/json.h"
#include "record.h"
#include "tags.h"

#include <errno.h>
#include <stdio.h>

/* ---- the writer thread ---- */

/* An event's index entries, from its keys (corr 0: it has no correlation id; correlation keys
   carry their index tag, so are never 0): its stream's, its id's, its correlation's, and its
   stream's name when it is the stream's first, and its tags' (tags.c). The write lock held. */
static int add_entries(index_t *ix, uint64_t skey, uint64_t id, uint64_t corr, const factum_event_t *e, uint64_t rev,
                       uint64_t pos) {
    int rc = index_add(ix, skey, rev, pos);
    if (!rc) rc = index_add(ix, id, pos, pos);
    if (!rc && corr) rc = index_add(ix, corr, pos, pos);
    if (!rc && rev == 0) rc = index_add_name(ix, e->stream, pos);
    if (!rc) rc = tags_index_event(ix, e, pos);
    return rc;
}

int store_index_event(factum_t *db, const factum_event_t *e) {
    return add_entries(db->index, index_key_stream(e->stream), index_key_id(e->stream, e->id),
                       e->correlationid.len ? index_key_corr(e->correlationid) : 0, e, e->revision, e->position);
}

/*
 * The index entries of one request's events (all of one stream), the writer's share of
 * store_index_event: the stream's hashes once, and every id's (and correlation's) memtable
 * slot prefetched before the first entry is added. The memtable is larger than the caches, and
 * waiting for those slots was about half of the writer's time at 16 writers x 100 events.
 */
static int index_request(factum_t *db, append_req *r) {
    enum { AHEAD = 64 };
    uint64_t seed = index_id_seed(r->stream), skey = index_key_stream(r->stream);
    uint64_t ids[AHEAD], corrs[AHEAD];
    int rc = 0;
    for (size_t base = 0; base < r->n && !rc; base += AHEAD) {
        size_t k = MIN((size_t)AHEAD, r->n - base);
        for (size_t i = 0; i < k; i++) {
            factum_event_t e;
            record_parse(r->recs + r->offs[base + i], &e);
            ids[i] = index_key_id_seeded(seed, e.id);
            index_prefetch(db->index, ids[i]);
            corrs[i] = e.correlationid.len ? index_key_corr(e.correlationid) : 0;
            if (corrs[i]) index_prefetch(db->index, corrs[i]);
        }
        for (size_t i = 0; i < k && !rc; i++) {
            const uint8_t *p = r->recs + r->offs[base + i];
            factum_event_t e;
            record_parse(p, &e);
            rc = add_entries(db->index, skey, ids[i], corrs[i], &e, e.revision, e.position);
        }
    }
    return rc;
}

#define PAGE_BYTES 4096

/* The pending writes of the current group in the active segment. */
typedef struct group {
    struct iovec *iov;
    size_t niov, cap;
    uint64_t write_off;   /* file offset where iov[0] goes */
    uint64_t flushed_pos; /* positions below are written and synced */
    append_req *assigned; /* newest first */
    size_t nmeta;         /* metadata changes among them */
    /* Assigned requests whose index entries are not added yet, in the order assigned: they are
       added while the group's bytes are on their way to the disk (group_flush), or before a
       decision that would look for them (decide). */
    append_req **unindexed;
    size_t nunindexed, capunindexed;
} group;

/* At most this many requests wait for their index entries: a decision that must know whether
   a stream is among them (looks_in_index) looks through them all. */
#define INDEX_DEFER_MAX 256

/* Adds the index entries of n requests. 0, or the writer is failed: the memtable could not
   grow, and an index that lies is worse than a store that stops. */
static int index_add_requests(factum_t *db, append_req *const *rs, size_t n) {
    int rc = 0;
    index_write_lock(db->index);
    for (size_t i = 0; i < n && !rc; i++)
        rc = index_request(db, rs[i]);
    index_write_unlock(db->index);
    if (rc) {
        db->failed = FACTUM_ENOMEM;
        snprintf(db->failmsg, sizeof db->failmsg, "out of memory for the index");
    }
    return rc;
}

/* The index entries of every request of g that waits for them. 0, or the writer is failed. */
static int index_deferred(factum_t *db, group *g) {
    size_t n = g->nunindexed;
    g->nunindexed = 0;
    return n ? index_add_requests(db, g->unindexed, n) : 0;
}

/* r's index entries: later (index_deferred), or now when nothing more may wait. */
static int defer_index(factum_t *db, group *g, append_req *r) {
    if (g->nunindexed == g->capunindexed && g->capunindexed < INDEX_DEFER_MAX) {
        size_t cap = g->capunindexed ? g->capunindexed * 2 : 64;
        append_req **u = realloc(g->unindexed, cap * sizeof *u);
        if (u) g->unindexed = u, g->capunindexed = cap;
    }
    if (g->nunindexed == g->capunindexed && index_deferred(db, g)) return db->failed;
    if (g->nunindexed == g->capunindexed) return index_add_requests(db, &r, 1); /* no room to wait at all */
    g->unindexed[g->nunindexed++] = r;
    return 0;
}

const uint64_t factum_fsync_us_bounds[FACTUM_STAT_BUCKETS] = {50,   100,  200,   300,   500,   750,    1000,
                                                              2000, 5000, 10000, 20000, 50000, 100000, UINT64_MAX};
const uint64_t factum_group_events_bounds[FACTUM_STAT_BUCKETS] = {1,   2,   4,    8,    16,    32,    64,
                                                                  128, 256, 1024, 4096, 16384, 65536, UINT64_MAX};

/* Statistics have one writer (this thread): relaxed adds suffice. */
static void stat_add(_Atomic uint64_t *c, uint64_t v) { atomic_fetch_add_explicit(c, v, memory_order_relaxed); }
static void stat_observe(_Atomic uint64_t *hist, const uint64_t *bounds, uint64_t v) {
    size_t i = 0;
    while (v > bounds[i])
        i++;
    stat_add(&hist[i], 1);
}

static void writer_fail(factum_t *db, int code, const char *fmt, const char *path, int e) {
    db->failed = code;
    snprintf(db->failmsg, sizeof db->failmsg, fmt, path, strerror(-e));
}

/* Writes and syncs the group's bytes in the active segment, adding the index entries that wait
   while the device writes. 0, or the writer is failed. */
static int group_flush(factum_t *db, group *g) {
    if (!g->niov) return index_deferred(db, g);
    segment_t *s = db->segs[atomic_load(&db->nsegs) - 1];
    /* The write goes on with zeros to the end of its last page (they are zeros on disk already).
       A page written only in part, and not in the page cache, must first be read from the disk:
       the zeroer writes zeros around the cache, so without this every page the log enters would
       cost a synchronous read on the append path. The next group's first page is then cached. */
    static const uint8_t zero_page[PAGE_BYTES];
    uint64_t pad =
        MIN((s->end + PAGE_BYTES - 1) / PAGE_BYTES * PAGE_BYTES, segment_limit(s)) - MIN(s->end, segment_limit(s));
    if (pad && g->niov == g->cap) {
        struct iovec *v = realloc(g->iov, (g->cap + 1) * sizeof *v);
        if (v)
            g->iov = v, g->cap++;
        else
            pad = 0;
    }
    if (pad) g->iov[g->niov] = (struct iovec){(void *)zero_page, (size_t)pad};
    int e = io_write_all(db->vfs, s->fd, g->iov, (int)g->niov + (pad > 0), g->write_off);
    if (e) {
        writer_fail(db, e == -ENOSPC ? FACTUM_ENOSPC : FACTUM_EIO, "write to %s failed: %s", s->path, e);
        return db->failed;
    }
    /* The device writes the pages while this thread adds the group's index entries, which are
       needed only once the group is durable (or by a later decision that looks, see decide);
       the fdatasync then waits for less: at 64 writers x 1 event over a million streams, 140 us
       instead of 190-220 (docs/bench.md). */
    io_write_start(s->fd, g->write_off, s->end + pad - g->write_off);
    if (index_deferred(db, g)) return db->failed;
    uint64_t t0 = clock_mono_ns();
    e = db->vfs->fdatasync(db->vfs, s->fd);
    if (e) {
        writer_fail(db, FACTUM_EIO, "fdatasync of %s failed: %s", s->path, e);
        return db->failed;
    }
    uint64_t us = (clock_mono_ns() - t0) / 1000;
    stat_observe(db->st_fsync_hist, factum_fsync_us_bounds, us);
    stat_add(&db->st_fsync_us, us);
    stat_add(&db->st_fsyncs, 1);
    stat_observe(db->st_group_hist, factum_group_events_bounds, db->next_pos - g->flushed_pos);
    g->flushed_pos = db->next_pos;
    g->niov = 0;
    g->write_off = s->end;
    return 0;
}

/* Seals the active segment and starts the next one: the file the zeroer prepared, else one
   made here. */
static int roll_segment(factum_t *db, group *g, append_req *r) {
    int rc = group_flush(db, g);
    if (rc) return rc;
    segment_t *s = db->segs[atomic_load(&db->nsegs) - 1], *next;
    factum_error_t err;
    segment_write_pmap(s, db->logdir); /* derived; rebuilt by a scan if this fails */
    int fd;
    uint64_t fill;
    if (store_zero_take_next(db, s->no + 1, &fd, &fill) == 0)
        rc = segment_install(db->logdir, s->no + 1, db->segment_bytes, db->next_pos, fd, fill, db->vfs, &next, &err);
    else
        rc = segment_create(db->logdir, s->no + 1, db->segment_bytes, db->next_pos, STORE_ZERO_MIN, db->vfs, &next,
                            &err);
    if (!rc) rc = store_add_segment(db, next, &err);
    if (rc) {
        /* Out of space for a new segment (or segment numbers): this append fails, the writer
           stays usable. */
        snprintf(r->msg, sizeof r->msg, "%s", err.message);
        return rc;
    }
    store_zero_use(db, next);
    store_archive_poke(db); /* a newly sealed segment may be old enough to move */
    g->write_off = next->end;
    return 0;
}

static int req_fail(append_req *r, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int req_fail(append_req *r, int rc, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->msg, sizeof r->msg, fmt, ap);
    va_end(ap);
    return r->rc = rc;
}

/* Events of r whose ids the stream already holds: all of them (idempotent repeat), or none. */
static int check_repeat(factum_t *db, append_req *r) {
    size_t found = 0;
    for (size_t i = 0; i < r->n; i++) {
        if (!r->user_id[i]) continue;
        factum_event_t mine, old;
        record_parse(r->recs + r->offs[i], &mine);
        /* Hits of the id's key, verified against their records; more than one only when ids
           of this or other streams share the key. */
        uint64_t key = index_key_id(r->stream, mine.id);
        idx_hit hits[16], from = {0, 0};
        bool match = false;
        for (size_t nh = ARRAY_LEN(hits); !match && nh == ARRAY_LEN(hits);) {
            nh = index_range(db->index, key, from, false, ARRAY_LEN(hits), UINT64_MAX, hits);
            for (size_t h = 0; h < nh && !match; h++) {
                factum_error_t err;
                int rc = store_event_at(db, hits[h].pos, &old, &err);
                if (rc == FACTUM_ENOTFOUND) continue; /* scavenged: that event is gone */
                if (rc) return req_fail(r, err.code, "%s", err.message);
                match = str_eq(old.stream, r->stream) && str_eq(old.id, mine.id);
            }
            if (nh) index_after(hits[nh - 1], false, &from);
        }
        if (match) {
            if (!record_same_content(&old, &mine))
                return req_fail(r, FACTUM_ECONFLICT,
                                "event id '%.*s' is already in stream '%.*s' at revision %llu with other content",
                                (int)mine.id.len, mine.id.ptr, (int)r->stream.len, r->stream.ptr,
                                (unsigned long long)old.revision);
            if (found == 0)
                r->res.first_revision = old.revision, r->res.first_position = old.position;
            else if (old.revision != r->res.first_revision + found)
                return req_fail(r, FACTUM_ECONFLICT, "the batch repeats earlier events, but not in their order");
            r->res.last_revision = old.revision, r->res.last_position = old.position;
            found++;
        }
        if (found && found != i + 1) break;
    }
    if (found == 0) return 0;
    if (found != r->n)
        return req_fail(r, FACTUM_ECONFLICT, "the batch repeats %zu events already in stream '%.*s' but not all %zu",
                        found, (int)r->stream.len, r->stream.ptr, r->n);
    r->res.idempotent = 1;
    return 1;
}

/* A conditional append's query against the log and the appends before it in this group (their
   index entries are in the memtable, their records in the pending table). 0, or r failed. */
static int check_condition(factum_t *db, append_req *r) {
    uint64_t at;
    factum_error_t err;
    int rc = tags_condition_first(db, r->cond, r->cond_after, &at, &err);
    if (rc) return req_fail(r, rc, "%s", err.message);
    if (at == UINT64_MAX) return 0;
    r->res.conflict_position = at;
    if (r->cond_after == FACTUM_AFTER_NONE)
        return req_fail(r, FACTUM_ECONDITION, "the append condition failed: the event at position %llu matches it",
                        (unsigned long long)at);
    return req_fail(r, FACTUM_ECONDITION,
                    "the append condition failed: the event at position %llu, after %llu, matches it",
                    (unsigned long long)at, (unsigned long long)r->cond_after);
}

static bool expected_ok(int64_t expected, int64_t last) {
    switch (expected) {
    case FACTUM_EXPECT_ANY: return true;
    case FACTUM_EXPECT_NO_STREAM: return last == -1;
    case FACTUM_EXPECT_EXISTS: return last >= 0;
    default: return last == expected;
    }
}

static void describe_expected(int64_t expected, char *out, size_t cap) {
    if (expected == FACTUM_EXPECT_NO_STREAM)
        snprintf(out, cap, "no stream");
    else if (expected == FACTUM_EXPECT_EXISTS)
        snprintf(out, cap, "stream exists");
    else
        snprintf(out, cap, "%lld", (long long)expected);
}

static int fail_revision(append_req *r, factum_str_t stream, int64_t expected, int64_t actual) {
    char exp[32];
    describe_expected(expected, exp, sizeof exp);
    r->res.actual_revision = actual;
    return req_fail(r, FACTUM_EREVISION, "stream '%.*s': expected revision %s, actual %s%lld", (int)stream.len,
                    stream.ptr, exp, actual < 0 ? "no stream " : "", (long long)actual);
}

/* The stream's last revision as the writer knows it (its own group included). */
static int64_t writer_last(factum_t *db, factum_str_t stream, uint64_t h1, uint64_t h2) {
    int64_t last = streams_get(&db->cache, h1, h2);
    return last >= 0 ? last : store_stream_last(db, stream, UINT64_MAX);
}

/* The metadata a stream has as the writer sees it: the newest change in this group, else the
   table. *doc is its metadata document. */
static bool writer_rules(factum_t *db, group *g, uint64_t h1, uint64_t h2, meta_rules *out, factum_str_t *doc) {
    for (append_req *a = g->nmeta ? g->assigned : NULL; a; a = a->gnext)
        if (a->meta_op && a->th1 == h1 && a->th2 == h2) {
            factum_event_t e;
            record_parse(a->recs, &e);
            *out = a->meta_new, *doc = e.data;
            return true;
        }
    meta_entry *e = meta_find(&db->meta, h1, h2);
    if (!e) return false;
    *out = e->r, *doc = (factum_str_t){e->doc, e->doc_len};
    return true;
}

static const char *const meta_types[] = {"", "$metadata", "$deleted", "$tombstone"};

/* Decides a metadata change against the target stream as it is now and encodes its record
   into r. 0, or r failed. */
static int meta_build(factum_t *db, group *g, append_req *r, int64_t time_us) {
    factum_str_t target = {r->target, r->target_len}, doc = {0}, custom = {0};
    int64_t last = writer_last(db, target, r->th1, r->th2);
    meta_rules cur = {0}, nr;
    bool has = writer_rules(db, g, r->th1, r->th2, &cur, &doc);
    cur.last = last;
    if (cur.tombstone)
        return req_fail(r, FACTUM_EDELETED, "stream '%.*s' is deleted for ever (tombstone)", (int)target.len,
                        target.ptr);
    int kind;
    if (has && !(json_member(doc, "custom", &custom, &kind) && kind == JSON_OBJECT)) custom = (factum_str_t){0};
    nr = cur;
    r->res.actual_revision = last;
    if (r->meta_op == META_SET) {
        if (r->want_tb && r->want.tb < cur.tb)
            return req_fail(r, FACTUM_EINVAL,
                            "truncate_before cannot move back: it is %llu for stream '%.*s' (events before it may "
                            "already be gone from disk)",
                            (unsigned long long)cur.tb, (int)target.len, target.ptr);
        /* What the old rules hide now stays hidden. */
        uint64_t fold = has ? meta_floor(&cur) : 0;
        if (has && cur.max_age_s && last >= 0)
            fold = MAX(fold,
                       store_stream_first_at(
                           db, target, time_us - (int64_t)MIN(cur.max_age_s, (uint64_t)INT64_MAX / 2000000) * 1000000,
                           (uint64_t)last + 1));
        nr.tb = MAX(MAX(r->want.tb, cur.tb), fold);
        nr.max_count = r->want.max_count, nr.max_age_s = r->want.max_age_s;
        custom = (factum_str_t){r->custom, r->custom_len};
    } else {
        int64_t seen = meta_reads_deleted(&cur) ? -1 : last;
        if (!expected_ok(r->target_expected, seen)) return fail_revision(r, target, r->target_expected, seen);
        if (r->meta_op == META_DELETE && seen < 0)
            return req_fail(r, FACTUM_ENOTFOUND, "stream '%.*s' not found", (int)target.len, target.ptr);
        nr.tb = MAX(cur.tb, (uint64_t)(last + 1));
        nr.deleted = true;
        nr.tombstone = r->meta_op == META_TOMBSTONE;
    }
    buf_t b = {0};
    if (meta_doc_write(&b, target, &nr, custom)) {
        buf_free(&b);
        return req_fail(r, FACTUM_ENOMEM, "out of memory");
    }
    factum_event_t e = {.id = {r->meta_id, 36},
                        .type = str_c(meta_types[r->meta_op]),
                        .source = str_c("factum"),
                        .data = {b.ptr, b.len},
                        .data_format = FACTUM_DATA_JSON};
    size_t size = record_size(r->stream, &e);
    uint8_t *recs = size > db->segment_bytes - SEGMENT_HEADER ? NULL : realloc(r->recs, size);
    if (!recs) {
        buf_free(&b);
        return req_fail(r, size > db->segment_bytes - SEGMENT_HEADER ? FACTUM_ETOOBIG : FACTUM_ENOMEM,
                        "the metadata record of stream '%.*s' takes %zu bytes", (int)target.len, target.ptr, size);
    }
    record_encode(recs, r->stream, &e);
    buf_free(&b);
    r->recs = recs, r->bytes = size, r->offs[0] = 0;
    factum_event_t enc;
    record_parse(recs, &enc);
    r->stream = enc.stream; /* "$metadata", now inside the record like any other append's */
    r->meta_new = nr;
    return 0;
}

/* r's decision looks in the index for events of the group's earlier requests, whose entries
   may still wait: its ids for a repeat, its condition, the target of a metadata change, or its
   stream when the stream cache no longer holds it but a waiting request wrote it (the cache
   drops streams only without memory, or past as many streams as it holds). */
static bool looks_in_index(factum_t *db, const group *g, const append_req *r) {
    if (r->meta_op || r->cond) return true;
    for (size_t i = 0; i < r->n; i++)
        if (r->user_id[i]) return true;
    if (streams_get(&db->cache, r->h1, r->h2) >= 0) return false;
    for (size_t i = 0; i < g->nunindexed; i++)
        if (g->unindexed[i]->h1 == r->h1 && g->unindexed[i]->h2 == r->h2) return true;
    return false;
}

/* Decides r against the store as the group left it: the writer's state, metadata, idempotency,
   the condition, the expected revision. 0 (*last: the stream's last revision), 1 (an idempotent
   repeat, answered), or -1 (r failed). */
static int decide(factum_t *db, group *g, append_req *r, int64_t time_us, int64_t *last) {
    /* A decision that looks in the index for what this group wrote: its entries first (if the
       memtable cannot take them, the writer is failed, as answered just below). */
    if (!db->failed && g->nunindexed && looks_in_index(db, g, r)) index_deferred(db, g);
    if (db->failed) {
        req_fail(r, FACTUM_EFAILED, "writer has failed (%s); reopen the store", db->failmsg);
        return -1;
    }
    meta_rules mr;
    factum_str_t doc;
    bool ruled = false;
    if (r->meta_op) {
        if (meta_build(db, g, r, time_us)) return -1;
    } else if ((ruled = writer_rules(db, g, r->h1, r->h2, &mr, &doc)) && mr.tombstone) {
        req_fail(r, FACTUM_EDELETED, "stream '%.*s' is deleted for ever (tombstone)", (int)r->stream.len,
                 r->stream.ptr);
        return -1;
    }
    int rep = check_repeat(db, r);
    if (rep) return rep > 0 ? 1 : -1; /* 1: idempotent repeat (rc 0), <0: conflict */
    if (r->cond && check_condition(db, r)) return -1;
    *last = writer_last(db, r->stream, r->h1, r->h2);
    mr.last = *last;
    /* A soft-deleted stream has no revision as far as expectations go. */
    int64_t seen = ruled && meta_reads_deleted(&mr) ? -1 : *last;
    if (!expected_ok(r->expected, seen)) {
        fail_revision(r, r->stream, r->expected, seen);
        return -1;
    }
    return 0;
}

/* Room for `bytes` of records (`nrec` of them, in `niov` pieces) in the active segment, its
   zero-filled part, the pending table and the group's iovecs. 0, or r failed. */
static int make_room(factum_t *db, group *g, append_req *r, uint64_t bytes, uint64_t nrec, size_t niov) {
    segment_t *s = db->segs[atomic_load(&db->nsegs) - 1];
    if (s->end + bytes > s->size) {
        int rc = roll_segment(db, g, r);
        if (rc) {
            r->rc = rc;
            if (db->failed) req_fail(r, db->failed, "%s", db->failmsg);
            return -1;
        }
        s = db->segs[atomic_load(&db->nsegs) - 1];
    }
    /* Room that is zero-filled (zero.c); the writer waits here only when it outruns the zeroer. */
    if (s->end + bytes > segment_limit(s)) {
        int rc = store_zero_wait(db, s, s->end + bytes, r->msg, sizeof r->msg);
        if (rc) return r->rc = rc, -1;
    }
    /* Room in the pending table for this group's records. */
    uint64_t need = db->next_pos + nrec - db->group_first;
    if (need > db->pending_cap) {
        size_t cap = MAX(need, db->pending_cap * 2);
        const uint8_t **p = realloc(db->pending, cap * sizeof *p);
        if (!p) return req_fail(r, FACTUM_ENOMEM, "out of memory"), -1;
        db->pending = p, db->pending_cap = cap;
    }
    if (g->niov + niov > g->cap) {
        size_t cap = MAX(g->cap ? g->cap * 2 : 64, g->niov + niov);
        struct iovec *v = realloc(g->iov, cap * sizeof *v);
        if (!v) return req_fail(r, FACTUM_ENOMEM, "out of memory"), -1;
        g->iov = v, g->cap = cap;
    }
    return 0;
}

/* Gives r its positions and revisions after `last`, its records and index entries; the room is
   made. batch_end: its last record ends the batch (not inside a multi-stream append). */
static void assign(factum_t *db, group *g, append_req *r, int64_t last, int64_t time_us, bool batch_end) {
    segment_t *s = db->segs[atomic_load(&db->nsegs) - 1];
    for (size_t i = 0; i < r->n; i++) {
        uint8_t *p = r->recs + r->offs[i];
        uint64_t pos = db->next_pos + i;
        record_seal(p, pos, (uint64_t)(last + 1) + i, time_us, batch_end && i + 1 == r->n, db->group_first);
        s->pmap[s->count + i] = (uint32_t)(s->end + r->offs[i]);
        db->pending[pos - db->group_first] = p;
    }
    if (defer_index(db, g, r)) {
        req_fail(r, FACTUM_EFAILED, "writer has failed (%s); reopen the store", db->failmsg);
        return;
    }
    g->iov[g->niov++] = (struct iovec){r->recs, r->bytes};
    s->count += r->n;
    s->end += r->bytes;
    int64_t target_last = r->res.actual_revision;
    r->res = (factum_append_result_t){(uint64_t)(last + 1),
                                      (uint64_t)last + r->n,
                                      db->next_pos,
                                      db->next_pos + r->n - 1,
                                      0,
                                      r->meta_op ? target_last : last,
                                      0};
    db->next_pos += r->n;
    streams_put(&db->cache, r->h1, r->h2, last + (int64_t)r->n);
    r->gnext = g->assigned;
    g->assigned = r;
    g->nmeta += r->meta_op != 0;
}

static void process(factum_t *db, group *g, append_req *r, int64_t time_us) {
    int64_t last;
    if (decide(db, g, r, time_us, &last) == 0 && make_room(db, g, r, r->bytes, r->n, 1) == 0)
        assign(db, g, r, last, time_us, true);
}

/* Every part of a multi-stream append gets what `from` got. */
static void set_fail(append_req *first, const append_req *from) {
    for (append_req *p = first; p; p = p->link_left ? p->next : NULL)
        if (p != from) {
            p->rc = from->rc;
            memcpy(p->msg, from->msg, sizeof p->msg);
        }
}

/*
 * A multi-stream append (first and the link_left requests after it, one stream each): all of it
 * or none. Every part is decided before any is assigned; the condition rides on the first. Its
 * records go to one segment, and only its very last record ends a batch, so recovery keeps the
 * whole append or none of it.
 */
static void process_set(factum_t *db, group *g, append_req *first, int64_t time_us) {
    int64_t lasts[FACTUM_MAX_STREAMS];
    size_t k = 0, repeats = 0;
    uint64_t bytes = 0, nrec = 0;
    for (append_req *p = first; p; p = p->link_left ? p->next : NULL, k++) {
        int d = decide(db, g, p, time_us, &lasts[k]);
        if (d < 0) return set_fail(first, p);
        repeats += d == 1;
        bytes += p->bytes, nrec += p->n;
    }
    if (repeats == k) return; /* an idempotent repeat of the whole append */
    if (repeats) {
        req_fail(first, FACTUM_ECONFLICT, "the append repeats the events of %zu of its %zu streams, not all", repeats,
                 k);
        first->res.idempotent = 0;
        return set_fail(first, first);
    }
    if (make_room(db, g, first, bytes, nrec, k)) return set_fail(first, first);
    k = 0;
    for (append_req *p = first; p && !db->failed; p = p->link_left ? p->next : NULL, k++)
        assign(db, g, p, lasts[k], time_us, p->link_left == 0);
}

/* After a group is durable and before readers see it: metadata changes take effect, and streams
   with metadata learn their new last revision (max_count counts from it). In queue order. */
static void publish_meta(factum_t *db, append_req *list) {
    for (append_req *a = list; a && !db->failed; a = a->next) {
        if (a->rc || a->res.idempotent) continue;
        if (a->meta_op) {
            factum_event_t e;
            record_parse(a->recs, &e);
            if (meta_apply(&db->meta, a->th1, a->th2, &a->meta_new, a->res.last_position, e.data)) {
                db->failed = FACTUM_ENOMEM;
                snprintf(db->failmsg, sizeof db->failmsg, "out of memory for stream metadata");
            }
        } else if (atomic_load_explicit(&db->meta.count, memory_order_relaxed)) {
            meta_entry *m = meta_find(&db->meta, a->h1, a->h2);
            if (m) meta_note_last(&db->meta, m, (int64_t)a->res.last_revision);
        }
    }
}

void store_req_complete(append_req *r) {
    if (r->set) {
        store_set_complete(r);
        return;
    }
    if (r->cb) {
        r->cb(r->ctx, r->rc, &r->res, r->rc ? r->msg : "");
        req_free(r);
        return;
    }
    atomic_store_explicit(&r->done, 1, memory_order_release);
    futex_wake(&r->done);
}

/* The group's commit time: the wall clock, but strictly increasing (the time names the group)
   and never frozen: when the wall clock is behind the last group's time (it was stepped back),
   time goes on from the last group by the monotonic time elapsed since. */
static int64_t group_time(factum_t *db) {
    uint64_t mono = clock_mono_ns();
    int64_t wall = clock_realtime_us(), since = db->last_mono_ns ? (int64_t)((mono - db->last_mono_ns) / 1000) : 0;
    int64_t t = wall > db->last_time ? wall : db->last_time + MAX(since, 1);
    db->last_mono_ns = mono;
    return t;
}

/* A replicated batch lands where its leader saw the head (or anywhere, when it followed batches
   still in flight), after the time of the batch before it (`after`: the last group that wrote
   anything, or the batch before it in this group; the leader's factum_batch_encode reads the
   same), or not at all: anything else means this log is not the cluster's (docs/cluster.md).
   Refused, list and everything after it in the group fail. */
static bool batch_refused(factum_t *db, append_req *list, int64_t after) {
    if (!list->batch_n || ((db->next_pos == list->batch_first || list->batch_first == FACTUM_BATCH_FOLLOWS) &&
                           list->batch_time > after && !db->failed))
        return false;
    for (append_req *r = list, *next; r; r = next) {
        next = r->next;
        if (db->failed)
            req_fail(r, FACTUM_EFAILED, "writer has failed (%s); reopen the store", db->failmsg);
        else
            req_fail(r, FACTUM_ECORRUPT,
                     "replicated batch for position %llu at time %lld, but this log's head is %llu at time %lld: "
                     "this node's log has diverged from the cluster's",
                     (unsigned long long)list->batch_first, (long long)list->batch_time,
                     (unsigned long long)db->next_pos, (long long)after);
        store_req_complete(r);
    }
    return true;
}

static void run_group(factum_t *db, append_req *list) {
    group g = {0};
    if (batch_refused(db, list, db->durable_time)) return;
    int64_t t = list->batch_n ? list->batch_time : group_time(db);
    db->last_time = t;
    db->group_first = db->next_pos;
    g.write_off = db->segs[atomic_load(&db->nsegs) - 1]->end;
    g.flushed_pos = db->next_pos;
    unsigned pin = store_pin(db); /* process() reads older events (idempotency, metadata) */
    for (append_req *r = list, *prev = NULL; r; prev = r, r = r->next) {
        if (r != list && r->batch_n) { /* the next replicated batch of the group: its own time */
            if (batch_refused(db, r, t)) {
                prev->next = NULL; /* it and those after it are done; the group ends before it */
                break;
            }
            t = r->batch_time;
            db->last_time = t;
        }
        if (r->link_left) {
            process_set(db, &g, r, t);
            while (r->link_left)
                r = r->next;
        } else {
            process(db, &g, r, t);
        }
    }
    store_unpin(db, pin);
    if (!db->failed) group_flush(db, &g);
    if (db->failed) {
        atomic_store(&db->st_failed, db->failed);
        for (append_req *a = g.assigned; a; a = a->gnext)
            req_fail(a, db->failed == FACTUM_ENOSPC ? FACTUM_ENOSPC : FACTUM_EIO,
                     "%s; the outcome of this append is unknown (its events may be on disk after a restart); "
                     "a retry with the same event ids is safe; the store refuses further appends until reopened",
                     db->failmsg);
        /* An idempotent repeat in this group may have matched an event of the group itself,
           which never became durable: nothing in a failed group is answered as written. */
        for (append_req *a = list; a; a = a->next)
            if (!a->rc && a->res.idempotent)
                req_fail(a, FACTUM_EIO,
                         "%s; the outcome of this append is unknown: after a restart, a retry with the same "
                         "event ids is safe",
                         db->failmsg);
    } else if (db->next_pos > db->group_first) {
        publish_meta(db, list);
        for (append_req *a = g.assigned; a; a = a->gnext) {
            stat_add(&db->st_appends, 1);
            stat_add(&db->st_events, a->n);
            stat_add(&db->st_bytes, a->bytes);
            stat_add(&db->st_log_bytes, a->bytes);
        }
        /* The writer's invariants, checked in every build: durable only moves forward, the
           active segment holds exactly the positions up to the head, and nothing was written
           past its zero-filled (or its whole) length. */
        segment_t *act = db->segs[atomic_load(&db->nsegs) - 1];
        ENSURE(db->next_pos > atomic_load(&db->durable));
        ENSURE(act->first_pos + act->count == db->next_pos);
        ENSURE(act->end <= atomic_load(&act->filled) && act->end <= act->size);
        db->durable_time = t;
        atomic_store_explicit(&db->durable, db->next_pos, memory_order_release);
        store_zero_note(db, db->segs[atomic_load(&db->nsegs) - 1]->end);
        pthread_mutex_lock(&db->wmu);
        pthread_cond_broadcast(&db->wcond);
        pthread_mutex_unlock(&db->wmu);
        factum_commit_cb hook = atomic_load(&db->hook);
        if (hook) {
            size_t n = 0;
            for (append_req *a = g.assigned; a; a = a->gnext)
                n++;
            if (n > db->hook_keys_cap) {
                uint64_t *k = realloc(db->hook_keys, n * sizeof *k);
                if (k) db->hook_keys = k, db->hook_keys_cap = n;
            }
            factum_commit_t cm = {db->group_first, db->next_pos, 0, db->hook_keys};
            if (db->hook_keys_cap >= n) /* else no keys: a hook treats that as "any stream" */
                for (append_req *a = g.assigned; a; a = a->gnext)
                    db->hook_keys[cm.nkeys++] = a->h1; /* streams_hash, as factum_stream_key */
            hook(db->hook_ctx, &cm);
        }
        index_maybe_rotate(db->index, db->next_pos);
    }
    free(g.iov);
    free(g.unindexed);
    for (append_req *r = list, *next; r; r = next) {
        next = r->next; /* the caller frees r once woken: read first */
        store_req_complete(r);
    }
}

/* Writes the commit mark at the durable position. Only an aid to recovery (it tells damage
   to acknowledged events from a torn write), so a failure is remembered, not fatal. */
static void write_mark(factum_t *db) {
    uint64_t durable = atomic_load(&db->durable);
    if (db->failed || db->mark.fd < 0 || db->mark.last.position == durable) return;
    factum_error_t err;
    if (mark_write(&db->mark, io_vfs_default(), durable, db->durable_time, &err)) mark_close(&db->mark);
}

static void *writer_main(void *arg) {
    factum_t *db = arg;
    for (;;) {
        pthread_mutex_lock(&db->qmu);
        /* Idle with the mark behind: wait a moment, then write it (docs/format.md). */
        while (!db->qhead && !db->stopping && db->mark.fd >= 0 && db->mark.last.position != atomic_load(&db->durable)) {
            struct timespec ts = clock_mono_after(STORE_MARK_IDLE_MS * 1000);
            if (pthread_cond_timedwait(&db->qcond, &db->qmu, &ts) == ETIMEDOUT && !db->qhead && !db->stopping) {
                pthread_mutex_unlock(&db->qmu);
                write_mark(db);
                pthread_mutex_lock(&db->qmu);
            }
        }
        while (!db->qhead && !db->stopping)
            pthread_cond_wait(&db->qcond, &db->qmu);
        if (!db->qhead) {
            pthread_mutex_unlock(&db->qmu);
            write_mark(db); /* a clean close leaves the mark at the end of the log */
            break;
        }
        /* Take a group: everything queued, up to STORE_GROUP_BYTES. */
        append_req *list = db->qhead, *last = list;
        size_t bytes = last->bytes;
        if (list->batch_n) { /* replicated batches: exactly their requests (each queued together) */
            for (;;) {
                for (uint32_t i = 1, n = last->batch_n; i < n; i++)
                    last = last->next, bytes += last->bytes;
                if (!last->next || !last->next->batch_n || bytes >= STORE_GROUP_BYTES) break;
                last = last->next, bytes += last->bytes; /* the next batch joins the group */
            }
        } else
            while (last->next && !last->next->batch_n && bytes < STORE_GROUP_BYTES)
                last = last->next, bytes += last->bytes;
        while (last->link_left) /* a multi-stream append is never split between groups */
            last = last->next;
        db->qhead = last->next;
        if (!db->qhead) db->qtail = NULL;
        last->next = NULL;
        pthread_mutex_unlock(&db->qmu);
        run_group(db, list);
    }
    return NULL;
}

int store_writer_start(factum_t *db) { return pthread_create(&db->writer, NULL, writer_main, db) ? FACTUM_ENOMEM : 0; }

void store_writer_stop(factum_t *db) {
    pthread_mutex_lock(&db->qmu);
    db->stopping = true;
    pthread_cond_signal(&db->qcond);
    pthread_mutex_unlock(&db->qmu);
    pthread_join(db->writer, NULL);
}
