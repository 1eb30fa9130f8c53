/*
 * batch.c — replicated batches: the one encoder and decoder of the cluster's message
 * (docs/cluster.md, "The message"), and their apply.
 *
 * In cluster mode the store hands every prepared write to the replicator (append.c) instead of
 * the writer. The leader encodes what it gathered as one batch — the requests as prepared (ids
 * assigned, records encoded but not stamped), the head position and a commit time — and
 * publishes it. Every node, the leader too, applies each batch with factum_batch_apply: decoded
 * into fresh requests, queued to the writer as one group taken alone (writer.c), stamped with
 * the batch's time at the batch's position. What the writer decides from the log (expected
 * revisions, idempotency) is the same on every node, because every log is the same.
 */
#include "append.h"

#include "record.h"

#include <stdio.h>

#define BATCH_MAGIC 0x31425246u /* "FRB1" */
#define BATCH_HEADER 24
#define BATCH_MAX_REQUESTS 65536

/* ---- encoding (the leader) ---- */

static size_t pad8(size_t n) { return (n + 7) & ~(size_t)7; }

/* Bytes request r takes in a batch. */
static size_t req_wire_size(const append_req *r) {
    size_t n = 4 + 4 + 8 + 4 + r->n + 4 * r->n + (r->meta_op ? 0 : r->bytes);
    if (r->meta_op) n += 36 + 4 + r->target_len + 8 * 3 + 1 + 4 + r->custom_len;
    return pad8(n);
}

static uint8_t *put32(uint8_t *p, uint32_t v) {
    memcpy(p, &v, 4);
    return p + 4;
}
static uint8_t *put64(uint8_t *p, uint64_t v) {
    store64(p, v);
    return p + 8;
}
static uint8_t *putb(uint8_t *p, const void *src, size_t n) {
    if (n) memcpy(p, src, n);
    return p + n;
}

static uint8_t *req_write(uint8_t *p, const append_req *r) {
    uint8_t *start = p;
    p = put32(p, (uint32_t)r->meta_op);
    p = put32(p, (uint32_t)r->n);
    p = put64(p, (uint64_t)(r->meta_op ? r->target_expected : r->expected));
    p = put32(p, r->meta_op ? 0 : (uint32_t)r->bytes);
    p = putb(p, r->user_id, r->n);
    for (size_t i = 0; i < r->n; i++)
        p = put32(p, r->meta_op ? 0 : r->offs[i]);
    if (!r->meta_op) {
        p = putb(p, r->recs, r->bytes);
    } else {
        p = putb(p, r->meta_id, 36);
        p = put32(p, (uint32_t)r->target_len);
        p = putb(p, r->target, r->target_len);
        p = put64(p, r->want.tb);
        p = put64(p, r->want.max_count);
        p = put64(p, r->want.max_age_s);
        *p++ = r->want_tb;
        p = put32(p, (uint32_t)r->custom_len);
        p = putb(p, r->custom, r->custom_len);
    }
    size_t used = (size_t)(p - start);
    memset(p, 0, pad8(used) - used);
    return start + pad8(used);
}

int factum_batch_encode(factum_t *db, factum_proposal_t *const *ps, size_t n, size_t max_bytes, int64_t after_us,
                        size_t *used, uint8_t **out, size_t *len, int64_t *time_us, factum_error_t *err) {
    *out = NULL, *len = 0, *used = 0;
    if (!db || !n) return err_set(err, FACTUM_EINVAL, "factum_batch_encode: no store or no proposals");
    size_t total = BATCH_HEADER + 4, bytes = 0, k = 0;
    while (k < n && k < BATCH_MAX_REQUESTS && bytes < STORE_GROUP_BYTES) {
        const append_req *r = (const append_req *)ps[k];
        size_t s = req_wire_size(r);
        if (total + s > max_bytes) break;
        total += s, bytes += r->bytes;
        k++;
    }
    if (!k)
        return err_set(err, FACTUM_ETOOBIG, "the write takes %zu bytes replicated, a cluster message holds at most %zu",
                       BATCH_HEADER + 4 + req_wire_size((const append_req *)ps[0]), max_bytes);
    uint8_t *m = malloc(total), *p = m;
    if (!m) return err_set(err, FACTUM_ENOMEM, "out of memory");
    /* The head and the last group's time, as the writer left them (its release store of
       `durable` publishes durable_time). A batch that follows others still in flight cannot know
       where it will land: it says so, and only its time orders it. */
    uint64_t head = after_us ? FACTUM_BATCH_FOLLOWS : atomic_load_explicit(&db->durable, memory_order_acquire);
    int64_t after = after_us > db->durable_time ? after_us : db->durable_time;
    int64_t wall = clock_realtime_us(), t = wall > after ? wall : after + 1;
    p = put32(p, BATCH_MAGIC);
    p = put32(p, (uint32_t)k);
    p = put64(p, head);
    p = put64(p, (uint64_t)t);
    for (size_t i = 0; i < k; i++)
        p = req_write(p, (const append_req *)ps[i]);
    put32(p, crc32c(m, (size_t)(p - m)));
    *out = m, *len = total, *used = k;
    if (time_us) *time_us = t;
    return 0;
}

/* ---- decoding (every node) ---- */

typedef struct reader {
    const uint8_t *p, *end;
    bool bad;
} reader;

static const uint8_t *take(reader *rd, size_t n) {
    if (rd->bad || (size_t)(rd->end - rd->p) < n) {
        rd->bad = true;
        return NULL;
    }
    const uint8_t *at = rd->p;
    rd->p += n;
    return at;
}
static uint32_t get32(reader *rd) {
    const uint8_t *p = take(rd, 4);
    return p ? load32(p) : 0;
}
static uint64_t get64(reader *rd) {
    const uint8_t *p = take(rd, 8);
    return p ? load64(p) : 0;
}

static int corrupt(factum_error_t *err, const char *what) {
    return err_set(err, FACTUM_ECORRUPT, "replicated batch does not check out: %s", what);
}

int factum_batch_info(const void *msg, size_t len, uint64_t *first_position, int64_t *time_us, factum_error_t *err) {
    const uint8_t *m = msg;
    if (len < BATCH_HEADER + 4 || load32(m) != BATCH_MAGIC) return corrupt(err, "not a batch (magic)");
    if (load32(m + len - 4) != crc32c(m, len - 4)) return corrupt(err, "checksum");
    *first_position = load64(m + 8);
    *time_us = (int64_t)load64(m + 16);
    return 0;
}

/* An encoded record at p of exactly len bytes (not yet stamped), of `stream` if given. */
static bool record_ok(const uint8_t *p, size_t len, factum_str_t *stream) {
    if (len < RECORD_HEADER || len % RECORD_ALIGN || load32(p + R_MAGIC) != RECORD_MAGIC || load32(p + R_LENGTH) != len)
        return false;
    uint64_t fields = RECORD_HEADER;
    for (int off = R_STREAM_LEN; off < R_EXT_LEN; off += 2)
        fields += load16(p + off);
    fields += (uint64_t)load32(p + R_EXT_LEN) + load32(p + R_DATA_LEN);
    if (fields > len) return false;
    factum_event_t e;
    record_parse(p, &e);
    if (record_size(e.stream, &e) != len || store_check_stream(e.stream, NULL)) return false;
    if (stream->len && !str_eq(*stream, e.stream)) return false;
    *stream = e.stream;
    return true;
}

/* One request of a batch, as a fresh request the writer can take (the shape append_prepare
   and meta_prepare give). NULL with *why on a malformed one. */
static append_req *req_read(reader *rd, const char **why) {
    uint32_t kind = get32(rd), n = get32(rd);
    int64_t expected = (int64_t)get64(rd);
    uint32_t bytes = get32(rd);
    *why = "request header";
    if (rd->bad || kind > META_TOMBSTONE || n == 0 || n > FACTUM_MAX_BATCH_EVENTS || (kind && (n != 1 || bytes)) ||
        bytes > STORE_MAX_BATCH_BYTES || expected < FACTUM_EXPECT_EXISTS)
        return NULL;
    const uint8_t *uid = take(rd, n), *offs = take(rd, 4 * (size_t)n), *recs = take(rd, bytes);
    append_req *r = calloc(1, sizeof *r);
    if (!r || rd->bad) {
        free(r);
        return NULL;
    }
    r->n = n, r->replicated = true, r->meta_op = (int)kind;
    r->res.actual_revision = -1;
    r->user_id = malloc(n), r->offs = malloc(4 * (size_t)n);
    *why = "out of memory";
    if (!r->user_id || !r->offs) goto bad;
    memcpy(r->user_id, uid, n);
    memcpy(r->offs, offs, 4 * (size_t)n);
    if (!kind) {
        *why = "records";
        if (!(r->recs = malloc(bytes ? bytes : 1))) goto bad;
        memcpy(r->recs, recs, bytes);
        r->bytes = bytes, r->expected = expected;
        factum_str_t stream = {0};
        for (uint32_t i = 0; i < n; i++) {
            uint32_t at = r->offs[i], next = i + 1 < n ? r->offs[i + 1] : bytes;
            /* each record ends where the next begins (record_ok checks its length), the last at bytes */
            if ((i == 0 && at != 0) || next <= at || next > bytes || !record_ok(r->recs + at, next - at, &stream))
                goto bad;
        }
        r->stream = stream;
    } else {
        *why = "metadata request";
        const uint8_t *id = take(rd, 36);
        uint32_t tlen = get32(rd);
        const uint8_t *target = take(rd, tlen);
        r->want.tb = get64(rd), r->want.max_count = get64(rd), r->want.max_age_s = get64(rd);
        const uint8_t *tb = take(rd, 1);
        uint32_t clen = get32(rd);
        const uint8_t *custom = take(rd, clen);
        if (rd->bad || store_check_stream((factum_str_t){(const char *)target, tlen}, NULL) ||
            clen > FACTUM_MAX_META_CUSTOM || !(r->target = malloc(tlen)) || (clen && !(r->custom = malloc(clen))))
            goto bad;
        memcpy(r->meta_id, id, 36);
        memcpy(r->target, target, tlen);
        if (clen) memcpy(r->custom, custom, clen);
        r->target_len = tlen, r->custom_len = clen, r->want_tb = *tb != 0;
        r->target_expected = expected;
        streams_hash((factum_str_t){r->target, tlen}, &r->th1, &r->th2);
        r->stream = str_c(META_STREAM), r->expected = FACTUM_EXPECT_ANY;
    }
    streams_hash(r->stream, &r->h1, &r->h2);
    return r;
bad:
    req_free(r);
    return NULL;
}

static void reqs_free(append_req *list) {
    for (append_req *r = list, *next; r; r = next) {
        next = r->next;
        req_free(r);
    }
}

/* Decodes the batch's requests into a list linked by next. */
static int batch_read(const uint8_t *m, size_t len, append_req **head, append_req **tail, size_t *count,
                      factum_error_t *err) {
    *head = *tail = NULL;
    uint32_t nreq = load32(m + 4);
    if (nreq == 0 || nreq > BATCH_MAX_REQUESTS) return corrupt(err, "request count");
    reader rd = {m + BATCH_HEADER, m + len - 4, false};
    for (uint32_t i = 0; i < nreq; i++) {
        const uint8_t *start = rd.p;
        const char *why;
        append_req *r = req_read(&rd, &why);
        if (r) take(&rd, pad8((size_t)(rd.p - start)) - (size_t)(rd.p - start));
        if (!r || rd.bad) {
            req_free(r);
            reqs_free(*head);
            *head = NULL;
            return corrupt(err, why);
        }
        if (*tail)
            (*tail)->next = r;
        else
            *head = r;
        *tail = r;
    }
    if (rd.p != rd.end) {
        reqs_free(*head);
        *head = NULL;
        return corrupt(err, "bytes after the last request");
    }
    *count = nreq;
    return 0;
}

/* ---- applying (every node) ---- */

/* Outcomes that follow from the log alone, so every node reaches the same one. */
static bool deterministic(int rc) {
    switch (rc) {
    case 0:
    case FACTUM_EREVISION:
    case FACTUM_ECONFLICT:
    case FACTUM_EDELETED:
    case FACTUM_ENOTFOUND:
    case FACTUM_EINVAL:
    case FACTUM_ETOOBIG:
    case FACTUM_EBADEVENT:
    case FACTUM_EBADSTREAM: return true;
    default: return false;
    }
}

static void fail_all(factum_proposal_t *const *ps, size_t n, int code, const char *msg) {
    for (size_t i = 0; ps && i < n; i++)
        factum_proposal_fail(ps[i], code, msg);
}

/* One batch of an apply: its requests (decoded), or skipped (applied before). */
typedef struct pending {
    append_req *head, *tail;
    size_t count;
    int64_t time_us; /* its commit time */
    bool skipped;
} pending;

int factum_batch_apply_many(factum_t *db, const factum_batch_t *b, size_t nb, size_t *done, int64_t *last_time,
                            factum_error_t *err) {
    factum_error_t local;
    if (!err) err = &local;
    *done = 0;
    if (!nb) return 0;
    pending *pd = calloc(nb, sizeof *pd);
    if (!pd) {
        for (size_t k = 0; k < nb; k++)
            fail_all(b[k].ps, b[k].n, FACTUM_ENOMEM, "out of memory");
        return err_set(err, FACTUM_ENOMEM, "out of memory");
    }
    /* Applied before (or passed over) iff its time is not after the last group that wrote: the
       times of the log's batches only grow (docs/cluster.md, "Applying a batch"), so those are a
       prefix. The replicator waited for the previous apply, so durable_time is the writer's last
       word. The first batch applied must land at the head; a later one at the head its
       predecessors leave, which the writer checks as it writes them (batch_refused). */
    uint64_t now = factum_head_position(db);
    int64_t durable_time = db->durable_time;
    bool first_new = true;
    int rc = 0;
    size_t k = 0;
    for (; k < nb && !rc; k++) {
        uint64_t first;
        int64_t t;
        rc = factum_batch_info(b[k].msg, b[k].len, &first, &t, err);
        if (!rc) rc = batch_read(b[k].msg, b[k].len, &pd[k].head, &pd[k].tail, &pd[k].count, err);
        if (!rc && b[k].ps && b[k].n != pd[k].count)
            rc = err_set(err, FACTUM_EINVAL, "the batch holds %zu requests, %zu proposals given", pd[k].count, b[k].n);
        pd[k].time_us = t;
        pd[k].skipped = !rc && t <= durable_time;
        if (!rc && pd[k].skipped && (b[k].ps || !first_new))
            rc = err_set(err, FACTUM_ECORRUPT,
                         "a batch of proposals at time %lld, but the log has a group at %lld already", (long long)t,
                         (long long)durable_time);
        if (!rc && !pd[k].skipped && first_new && first != FACTUM_BATCH_FOLLOWS && first != now)
            rc = err_set(err, FACTUM_ECORRUPT, "replicated batch for position %llu, but this log's head is %llu: %s",
                         (unsigned long long)first, (unsigned long long)now,
                         first > now ? "batches are missing" : "this node's log has diverged");
        if (!rc && !pd[k].skipped) {
            first_new = false;
            pd[k].head->batch_n = (uint32_t)pd[k].count, pd[k].head->batch_first = first, pd[k].head->batch_time = t;
        }
    }
    if (rc) { /* nothing goes to the writer: batch k - 1 and those after it fail, the ones before
                 are submitted */
        k--;
        for (size_t j = k; j < nb; j++) {
            reqs_free(pd[j].head);
            pd[j].head = NULL;
            fail_all(b[j].ps, b[j].n, rc, err->message);
        }
        nb = k;
    }
    /* Skipped ones are done; the rest go to the writer in order, together, so that it can write
       them as one group with one fdatasync. */
    append_req *head = NULL, *tail = NULL;
    for (size_t j = 0; j < nb; j++) {
        if (pd[j].skipped) {
            reqs_free(pd[j].head), pd[j].head = NULL;
            fail_all(b[j].ps, b[j].n, FACTUM_ECORRUPT, "batch already applied");
            continue;
        }
        if (tail)
            tail->next = pd[j].head;
        else
            head = pd[j].head;
        tail = pd[j].tail;
    }
    int src = head ? store_submit(db, head, tail, err) : 0;
    if (src) {
        for (size_t j = 0; j < nb; j++)
            if (pd[j].head) {
                if (pd[j].tail) pd[j].tail->next = NULL; /* free this batch's requests only */
                reqs_free(pd[j].head);
                fail_all(b[j].ps, b[j].n, src, err->message);
            }
        free(pd);
        return src;
    }
    /* The writer completes every request; each is ours to free once done. A batch counts as
       applied when none of its requests met an outcome another node need not share. */
    int worst = 0;
    size_t applied = 0;
    for (size_t j = 0; j < nb; j++) {
        size_t i = 0;
        append_req *r = pd[j].head;
        for (size_t c = 0; c < pd[j].count && r; c++, i++) {
            while (!atomic_load_explicit(&r->done, memory_order_acquire))
                futex_wait(&r->done, 0);
            append_req *next = r->next;
            if (!deterministic(r->rc) && !worst) {
                worst = r->rc;
                err_set(err, r->rc, "%s", r->msg);
            }
            if (b[j].ps) {
                append_req *p = (append_req *)b[j].ps[i];
                p->rc = r->rc, p->res = r->res;
                snprintf(p->msg, sizeof p->msg, "%s", r->msg);
                store_req_complete(p);
            }
            req_free(r);
            r = next;
        }
        if (!worst) applied = j + 1;
    }
    if (last_time && applied) *last_time = pd[applied - 1].time_us;
    free(pd);
    *done = applied;
    return worst ? worst : rc;
}

int factum_batch_apply(factum_t *db, const void *msg, size_t len, factum_proposal_t *const *ps, size_t n, int *applied,
                       factum_error_t *err) {
    factum_batch_t b = {msg, len, ps, n};
    size_t done;
    int64_t before = db->durable_time, t = 0;
    int rc = factum_batch_apply_many(db, &b, 1, &done, &t, err);
    *applied = !rc && done && t > before; /* else skipped: applied before */
    return rc;
}

int64_t factum_commit_time(factum_t *db) { return db->durable_time; }

void factum_proposal_fail(factum_proposal_t *p, int code, const char *message) {
    append_req *r = (append_req *)p;
    r->rc = code;
    snprintf(r->msg, sizeof r->msg, "%s", message ? message : factum_strerror(code));
    store_req_complete(r);
}
