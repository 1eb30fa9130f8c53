/*
 * sse.c — subscriptions over Server-Sent Events. A subscription is a cursor (next revision of
 * its stream, or next position of $all) and nothing else: catching up and staying live are the
 * same loop — read from the cursor up to the durable head, send, move the cursor — so there is
 * no gap and no duplicate at the switch. While catching up, reading is paced by the socket
 * (never more than SSE_LOW bytes queued). Once caught up ("caught-up" event, sent once), a
 * commit wakes the loop and live subscribers are pumped; one that lets more than
 * cfg.sub_buffer bytes pile up falls back to catching up: commits no longer wake it, and it
 * reads on from the log at its socket's pace, so a subscriber that reads slowly or not at all
 * costs neither memory nor work on every commit (the stalled rule cuts one that takes nothing).
 */
#include "server.h"

#include "../group/groups.h"

#include <stdio.h>
#include <sys/socket.h>
#include <stdlib.h>

#define SSE_SNDBUF (256 << 10)     /* the kernel's send buffer of a subscriber: not autotuned to 4 MB each */
#define SSE_LOW (64u << 10)        /* catch-up: queue up to this much, then wait for the socket */
#define SSE_CHUNK 512              /* events per read */
#define SSE_CHUNK_BYTES (1u << 20) /* ... and bytes queued per read, whatever the events weigh */
#define SSE_ROUNDS 32              /* catch-up rounds per turn before letting other connections run */

static void sse_pump(conn *c);
static void send_event(conn *c, const factum_event_t *e, uint64_t id);
static const park_ops sse_park;

static void sub_free(sub *s) {
    if (!s) return;
    buf_free(&s->stream);
    buf_free(&s->type);
    buf_free(&s->category);
    buf_free(&s->corr);
    buf_free(&s->filters);
    factum_tag_query_free(s->tq);
    free(s);
}

static int copy_str(buf_t *b, factum_str_t s) {
    return buf_append(b, s.ptr ? s.ptr : "", s.len) || buf_append(b, "", 1) ? -1 : (b->len--, 0);
}

static factum_str_t str_of(const buf_t *b) { return (factum_str_t){b->ptr ? b->ptr : "", b->len}; }

/* Appends filter f to b with its NUL. */
static int add_filter(buf_t *b, const buf_t *f) {
    if (copy_str(b, str_of(f))) return -1;
    b->len++;
    return 0;
}

static const char sse_head[] = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
                               "Connection: close\r\nX-Accel-Buffering: no\r\n";

/* Makes c a subscription: the response head, then what there is to send now. */
static void begin(conn *c, sub *s) {
    c->sub = s;
    c->park = &sse_park;
    c->state = C_SSE;
    c->deadline_ms = 0;
    int sndbuf = SSE_SNDBUF;
    setsockopt(c->fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
    atomic_fetch_add(&c->l->nsubs, 1);
    loop_listen(c, s->all || s->group[0] ? 0 : s->stream_key);
    char cors[400];
    conn_send(c, sse_head, sizeof sse_head - 1);
    conn_send(c, cors, origin_headers(c, cors, sizeof cors));
    static const char retry[] = "\r\nretry: 1000\n\n"; /* the blank line ending the head, then the first field */
    conn_send(c, retry, sizeof retry - 1);
    atomic_fetch_add_explicit(&c->l->status[200], 1, memory_order_relaxed);
    access_request(c, 200, 0);
    s->beat_ms = server_now_ms();
    sse_pump(c);
}

void sse_start_group(conn *c, const char *group, uint32_t max_in_flight, bool raw) {
    sub *s = calloc(1, sizeof *s);
    if (!s) {
        conn_problem(c, 500, "internal", NULL, "out of memory");
        return;
    }
    snprintf(s->group, sizeof s->group, "%s", group);
    s->max_in_flight = max_in_flight;
    s->raw = raw;   /* each delivery as stored, not upcast */
    s->live = true; /* woken by every commit (acks are commits too) and by the sweep (retries) */
    groups_members_count(c->l->srv->groups, group, 1, 0); /* on_close counts it out */
    begin(c, s);
}

void sse_start(conn *c, bool all, factum_str_t stream, const factum_query_t *q, uint64_t from, bool raw) {
    factum_t *db = c->l->srv->db;
    sub *s = calloc(1, sizeof *s);
    if (!s || copy_str(&s->stream, stream) ||
        (q && (copy_str(&s->type, q->type) || copy_str(&s->category, q->category) ||
               copy_str(&s->corr, q->correlationid)))) {
        sub_free(s);
        conn_problem(c, 500, "internal", NULL, "out of memory");
        return;
    }
    /* The filters, each NUL-ended: subscribers whose are the same share rendered chunks. */
    s->raw = raw; /* a fourth filter: raw and upcast subscribers do not share chunks */
    if (add_filter(&s->filters, &s->type) || add_filter(&s->filters, &s->category) ||
        add_filter(&s->filters, &s->corr) || buf_append(&s->filters, raw ? "r" : "u", 1)) {
        sub_free(s);
        conn_problem(c, 500, "internal", NULL, "out of memory");
        return;
    }
    s->all = all;
    s->system = q && q->system;
    s->stream_key = factum_stream_key(stream);
    if (from == FACTUM_END) from = all ? factum_head_position(db) : (uint64_t)(factum_stream_revision(db, stream) + 1);
    s->next = from;
    begin(c, s);
}

void sse_start_query(conn *c, factum_tag_query_t *q, uint64_t from) {
    sub *s = calloc(1, sizeof *s);
    if (!s) {
        factum_tag_query_free(q);
        conn_problem(c, 500, "internal", NULL, "out of memory");
        return;
    }
    s->tq = q;
    s->all = true; /* woken by every commit; ids and caught-up are positions */
    s->next = from == FACTUM_END ? factum_head_position(c->l->srv->db) : from;
    begin(c, s);
}

/* One chunk of a tag query's events from s->next, sent: true when it reached the head. */
static bool query_chunk(conn *c, factum_error_t *err, int *rc) {
    sub *s = c->sub;
    factum_result_t *res;
    if ((*rc = factum_read_tagged(c->l->srv->db, s->tq, s->next, SSE_CHUNK, 0, NULL, &res, err))) return true;
    size_t i = 0, n = factum_result_count(res), start = c->out.len;
    for (; i < n && c->out.len - start < SSE_CHUNK_BYTES; i++) {
        const factum_event_t *e = factum_result_event(res, i);
        send_event(c, e, e->position);
    }
    s->next = i < n ? factum_result_event(res, i)->position : factum_result_next(res);
    if (n) s->beat_ms = server_now_ms();
    factum_result_free(res);
    return i == n && n < SSE_CHUNK;
}

/* Appends one event as an SSE message to b; the CloudEvent JSON goes on one data line (raw
   CR/LF in valid JSON can only be whitespace between tokens, so they become spaces). 0 or -1. */
static int render_sse(buf_t *b, const factum_event_t *e, uint64_t id) {
    char num[21];
    size_t nl = u64_format(id, num);
    if (buf_reserve(b, 4 + nl + 8 + e->type.len + 7)) return -1;
    memcpy(b->ptr + b->len, "id: ", 4);
    memcpy(b->ptr + b->len + 4, num, nl);
    b->len += 4 + nl;
    memcpy(b->ptr + b->len, "\nevent: ", 8);
    memcpy(b->ptr + b->len + 8, e->type.ptr, e->type.len);
    b->len += 8 + e->type.len;
    memcpy(b->ptr + b->len, "\ndata: ", 7);
    b->len += 7;
    size_t at = b->len;
    if (render_event(b, e) || buf_reserve(b, 2)) return -1;
    char *j = b->ptr + at, *end = b->ptr + b->len;
    for (char *p = j; (p = memchr(p, '\n', (size_t)(end - p))) != NULL;)
        *p = ' ';
    for (char *p = j; (p = memchr(p, '\r', (size_t)(end - p))) != NULL;)
        *p = ' ';
    memcpy(b->ptr + b->len, "\n\n", 2);
    b->len += 2;
    return 0;
}

static void send_event(conn *c, const factum_event_t *e, uint64_t id) {
    if (render_sse(&c->out, e, id)) c->close_after = true;
}

/* One chunk of $all from s->next with s's filters, rendered into b: the position after it in
   *next, and *whole when it held everything there was (not cut by count or bytes). 0, the read's
   error, or -1 when rendering ran out of memory. */
static int all_chunk(factum_t *db, const sub *s, buf_t *b, uint64_t *next, bool *whole, factum_error_t *err) {
    factum_query_t q = {.from = s->next,
                        .limit = SSE_CHUNK,
                        .type = str_of(&s->type),
                        .category = str_of(&s->category),
                        .correlationid = str_of(&s->corr),
                        .system = s->system,
                        .type_as_stored = s->raw};
    factum_result_t *res;
    int rc = factum_read_all(db, &q, &res, err);
    if (rc) return rc;
    size_t i = 0, n = factum_result_count(res), start = b->len;
    for (; i < n && b->len - start < SSE_CHUNK_BYTES && !rc; i++) {
        const factum_event_t *e = s->raw ? factum_result_event_raw(res, i) : factum_result_event(res, i);
        rc = render_sse(b, e, e->position);
    }
    *next = i < n ? factum_result_event(res, i)->position : factum_result_next(res);
    *whole = i == n && n < SSE_CHUNK;
    factum_result_free(res);
    return rc;
}

/* Reads one chunk from the cursor and queues it. Returns true when the cursor reached the head. */
static bool pump_chunk(conn *c) {
    sub *s = c->sub;
    factum_t *db = c->l->srv->db;
    factum_result_t *res = NULL;
    factum_error_t err;
    if (s->tq) {
        int rc;
        bool end = query_chunk(c, &err, &rc);
        if (rc) goto fail;
        return end;
    }
    if (s->all) {
        /* Subscribers with the same filters share the loop's last chunk: rendered once,
           copied by the rest. */
        __typeof__(c->l->all_cache) *ac = &c->l->all_cache;
        uint64_t head = factum_head_position(db), next = 0;
        bool whole = false;
        /* A chunk that held nothing is no answer once the head has moved past it. */
        bool hit = ac->valid && ac->from == s->next && ac->system == s->system &&
                   (ac->next > s->next || ac->next >= head) && ac->filters.len == s->filters.len &&
                   !memcmp(ac->filters.ptr, s->filters.ptr, s->filters.len);
        size_t sent;
        if (hit) {
            conn_send(c, ac->bytes.ptr, ac->bytes.len);
            next = ac->next, whole = ac->whole, sent = ac->bytes.len;
        } else {
            buf_t *b = &ac->bytes;
            ac->valid = false, b->len = 0;
            int rc = all_chunk(db, s, b, &next, &whole, &err);
            ac->filters.len = 0;
            if (rc < 0 || buf_append(&ac->filters, s->filters.ptr, s->filters.len)) { /* out of memory */
                c->close_after = true;
                return true;
            }
            if (rc) goto fail;
            ac->from = s->next, ac->next = next, ac->whole = whole, ac->system = s->system, ac->valid = true;
            conn_send(c, b->ptr, b->len);
            sent = b->len;
        }
        if (sent) s->beat_ms = server_now_ms();
        s->next = next;
        return whole && next >= head;
    }
    int rc = factum_read_stream(db, str_of(&s->stream), s->next, SSE_CHUNK, 0, &res, &err);
    if (rc == FACTUM_ENOTFOUND) return true; /* not there yet: wait for it */
    if (rc) goto fail;
    size_t i = 0, n = factum_result_count(res), start = c->out.len;
    for (; i < n && c->out.len - start < SSE_CHUNK_BYTES; i++) {
        const factum_event_t *e = s->raw ? factum_result_event_raw(res, i) : factum_result_event(res, i);
        send_event(c, e, e->revision);
    }
    s->next = i < n ? factum_result_event(res, i)->revision : factum_result_next(res);
    bool at_end = i == n && n < SSE_CHUNK;
    if (factum_result_count(res)) s->beat_ms = server_now_ms();
    factum_result_free(res);
    return at_end;
fail:
    /* A read error (corruption) ends the subscription with a message the client can see. */
    {
        char msg[400];
        int len = snprintf(msg, sizeof msg, "event: error\ndata: %s\n\n", err.message);
        conn_send(c, msg, (size_t)MIN((size_t)len, sizeof msg - 1));
        c->close_after = true;
    }
    return true;
}

static void caught_up(conn *c) {
    sub *s = c->sub;
    s->live = true;
    loop_listen(c, s->all ? 0 : s->stream_key);
    if (s->announced) return; /* back from a fallback: the client was told once */
    s->announced = true;
    char msg[128];
    int n =
        s->all
            ? snprintf(msg, sizeof msg, "event: caught-up\ndata: {\"position\":%llu}\n\n", (unsigned long long)s->next)
            : snprintf(msg, sizeof msg, "event: caught-up\ndata: {\"revision\":%lld}\n\n", (long long)s->next - 1);
    conn_send(c, msg, (size_t)n);
}

/* Reads and sends what the subscription may take now; live ones up to the head. */
static void sse_pump(conn *c) {
    sub *s = c->sub;
    if (c->close_after) return;
    if (s->group[0]) {
        /* Push delivery: up to the member's limit of unacknowledged messages. */
        groups_batch d = {0};
        factum_error_t err;
        int rc = groups_pull(c->l->srv->groups, s->group, s->max_in_flight, (uint64_t)(uintptr_t)c, &d, &err);
        groups_render_deliveries(&c->out, &d, true, s->raw);
        size_t count = d.n;
        groups_batch_free(&d);
        if (rc) {
            char msg[300];
            int n = snprintf(msg, sizeof msg, "event: error\ndata: %s\n\n", err.message);
            conn_send(c, msg, (size_t)MIN((size_t)n, sizeof msg - 1));
            c->close_after = true;
        }
        if (count) s->beat_ms = server_now_ms();
        return;
    }
    if (s->live) {
        /* Over the memory budget a subscriber reads no further (the sweep brings it on later),
           and the loop cuts the ones holding the most (loop_shed). */
        s->behind = false;
        while (!c->close_after && !(s->behind = overload_over(c)) && !pump_chunk(c))
            if (c->out.len - c->out_off > c->l->srv->cfg.sub_buffer) break;
        if (s->behind) c->l->short_of_memory = true;
        if (c->out.len - c->out_off > c->l->srv->cfg.sub_buffer) {
            /* Too slow to be fed by commits: it catches up from the log as its socket drains
               (EPOLLOUT brings it back), instead of holding memory or taking work per commit. */
            s->live = false;
            loop_unlisten(c);
            atomic_fetch_add_explicit(&c->l->sub_fallbacks, 1, memory_order_relaxed);
        }
        return;
    }
    for (int round = 0; round < SSE_ROUNDS && !c->close_after; round++) {
        bool end = false;
        while (!end && !c->close_after && c->out.len - c->out_off < SSE_LOW) {
            if (overload_over(c)) { /* no room in the memory budget: the sweep comes back */
                c->l->short_of_memory = true;
                return;
            }
            end = pump_chunk(c);
        }
        if (end) {
            caught_up(c);
            return;
        }
        conn_flush(c);
        if (c->out.len > c->out_off) return; /* the socket is full: EPOLLOUT brings us back */
    }
    /* Out of turns with the socket still taking data: come back after the others. */
    loop_ready(c);
}

/* ---- the loop's callbacks (park_ops) ---- */

static void on_commit(conn *c) {
    if (c->sub->live) sse_pump(c);
}

static void on_tick(conn *c, uint64_t now_ms, bool final) {
    (void) final;
    sub *s = c->sub;
    if (s->behind && !overload_over(c)) {
        sse_pump(c); /* held back by the memory budget, which has room again */
    } else if (now_ms - s->beat_ms >= c->l->srv->cfg.heartbeat_ms) {
        conn_send(c, ": heartbeat\n\n", 13);
        s->beat_ms = now_ms;
    } else if (s->group[0]) {
        sse_pump(c); /* retries fall due without a commit */
    } else if (!s->live && c->out.len == c->out_off) {
        sse_pump(c);
    }
}

/* Catching up goes on as the socket takes what was queued. */
static void on_drain(conn *c) {
    if (!c->sub->live) sse_pump(c);
}

static void on_close(conn *c) {
    sub *s = c->sub;
    if (s->group[0]) {
        groups_members_count(c->l->srv->groups, s->group, -1, 0);
        groups_release_member(c->l->srv->groups, s->group, (uint64_t)(uintptr_t)c);
    }
    sub_free(s);
    c->sub = NULL;
    atomic_fetch_sub(&c->l->nsubs, 1);
}

static const park_ops sse_park = {
    .on_commit = on_commit, .on_tick = on_tick, .on_drain = on_drain, .on_close = on_close};
