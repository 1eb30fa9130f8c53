/*
 * api_read.c — reads over HTTP: GET /streams/{stream} and GET /all, with paging (a Link to the
 * next page), temporal reads (until_position, until_time), the /all filters, and the switch to
 * a Server-Sent Events subscription (sse.c) when the client accepts text/event-stream. Also the
 * rendering of events as JSON that every read and subscription shares (render_event(s)).
 * Runs on the loop thread that owns the connection; reads are synchronous (the page cache).
 */
#include "api.h"

#include <stdio.h>
#include <stdlib.h>

#define READ_DEFAULT_LIMIT 100
#define READ_MAX_LIMIT 10000
#define READ_MAX_BYTES (16u << 20) /* a read page stops growing past this; the Link goes on */

static const char *const JSON = "application/json";
#define MIN_POSITION_WAIT_MS 5000      /* a read with min_position waits this long for it, by default */
#define MIN_POSITION_WAIT_MAX_MS 60000 /* ... and at most (min_position_wait_ms) */

/* ---- query strings ---- */

void api_bad_escape(conn *c, factum_str_t key) {
    conn_problem(c, 400, "bad-request", NULL, "query parameter '%.*s' has a bad percent-escape", (int)MIN(key.len, 64),
                 key.ptr);
}

typedef struct params {
    bool has_from, backward;
    uint64_t from;
    int64_t from_time;  /* nonzero: from was an RFC 3339 time */
    int system;         /* /all: include system streams */
    bool from_snapshot; /* streams: the latest snapshot and the events after it */
    uint64_t until;     /* temporal reads: only events with positions below this (UINT64_MAX: all) */
    buf_t until_arg;    /* "&until_...=VALUE", for the Link of the next page */
    bool raw;           /* version=raw: events as stored, not upcast (docs/schemas.md) */
    size_t limit;
    buf_t type, category, corr;
    bool has_min;
    uint64_t min_position; /* read-your-writes: not before the log holds this position */
    uint64_t min_wait_ms;  /* ... waiting this long for it at most */
} params;

static void params_free(params *p) {
    buf_free(&p->type);
    buf_free(&p->category);
    buf_free(&p->corr);
    buf_free(&p->until_arg);
}

/* Parses from/limit/direction (and the /all filters when `all`). 0, or answers 400 and -1. */
static int parse_params(conn *c, factum_str_t q, bool all, params *p) {
    memset(p, 0, sizeof *p);
    p->limit = READ_DEFAULT_LIMIT;
    p->min_wait_ms = MIN_POSITION_WAIT_MS;
    p->until = UINT64_MAX;
    buf_t v = {0};
    int rc = 0, more;
    factum_str_t k;
    while (!rc && (more = http_query_next(&q, &k, &v))) {
        if (more < 0) {
            api_bad_escape(c, k);
            rc = -1;
            break;
        }
        factum_str_t val = {v.ptr, v.len};
        buf_t *dst = NULL;
        if (str_eq(k, str_c("from"))) {
            p->has_from = true;
            if (str_eq(val, str_c("end")))
                p->from = FACTUM_END;
            else if (!all && str_eq(val, str_c("snapshot")))
                p->from_snapshot = true;
            else if (str_u64(val, &p->from))
                p->from_time = 0;
            else if (all && time_parse(val, &p->from_time) == 0 && p->from_time)
                p->from = 0;
            else
                rc = -1;
        } else if (str_eq(k, str_c("limit"))) {
            uint64_t n;
            if (!str_u64(val, &n) || n < 1 || n > READ_MAX_LIMIT) {
                conn_problem(c, 400, "bad-request", NULL, "limit must be 1 to %d", READ_MAX_LIMIT);
                rc = -2;
            } else
                p->limit = (size_t)n;
        } else if (str_eq(k, str_c("min_position"))) {
            if (!str_u64(val, &p->min_position) || p->min_position == UINT64_MAX) {
                conn_problem(c, 400, "bad-request", NULL, "min_position must be a position");
                rc = -2;
            }
            p->has_min = true;
        } else if (str_eq(k, str_c("min_position_wait_ms"))) {
            if (!str_u64(val, &p->min_wait_ms) || p->min_wait_ms > MIN_POSITION_WAIT_MAX_MS) {
                conn_problem(c, 400, "bad-request", NULL, "min_position_wait_ms must be 0 to %d",
                             MIN_POSITION_WAIT_MAX_MS);
                rc = -2;
            }
        } else if (str_eq(k, str_c("direction"))) {
            if (str_eq(val, str_c("backward")))
                p->backward = true;
            else if (!str_eq(val, str_c("forward"))) {
                conn_problem(c, 400, "bad-request", NULL, "direction must be forward or backward");
                rc = -2;
            }
        } else if (str_eq(k, str_c("until_position")) || str_eq(k, str_c("until_time"))) {
            /* as of a position (inclusive) or a time (events committed at or before it) */
            uint64_t u;
            int64_t t;
            bool pos = k.len == 14;
            if (pos ? str_u64(val, &u) && u < UINT64_MAX - 1 : time_parse(val, &t) == 0) {
                p->until = pos ? u + 1 : factum_position_at(c->l->srv->db, t + 1);
                p->until_arg.len = 0;
                buf_printf(&p->until_arg, "&%s=", pos ? "until_position" : "until_time");
                buf_url_encode(&p->until_arg, val.ptr, val.len);
            } else {
                conn_problem(c, 400, "bad-request", NULL, "%s must be %s", pos ? "until_position" : "until_time",
                             pos ? "a position" : "an RFC 3339 time");
                rc = -2;
            }
        } else if (str_eq(k, str_c("version"))) {
            if (!(p->raw = str_eq(val, str_c("raw"))) && !str_eq(val, str_c("latest"))) {
                conn_problem(c, 400, "bad-request", NULL, "version must be raw or latest");
                rc = -2;
            }
        } else if (all && str_eq(k, str_c("type")))
            dst = &p->type;
        else if (all && str_eq(k, str_c("category")))
            dst = &p->category;
        else if (all && str_eq(k, str_c("correlation_id")))
            dst = &p->corr;
        else if (all && str_eq(k, str_c("system"))) {
            if (str_eq(val, str_c("true")))
                p->system = 1;
            else if (!str_eq(val, str_c("false"))) {
                conn_problem(c, 400, "bad-request", NULL, "system must be true or false");
                rc = -2;
            }
        } else {
            conn_problem(c, 400, "bad-request", NULL, "unknown query parameter '%.*s'", (int)MIN(k.len, 64), k.ptr);
            rc = -2;
        }
        if (dst && (dst->len || buf_append(dst, val.ptr ? val.ptr : "", val.len) || buf_append(dst, "", 1))) rc = -3;
        if (dst && !rc) dst->len--; /* keep the NUL outside the length */
        if (rc == -1)
            conn_problem(c, 400, "bad-request", NULL,
                         all ? "from must be a position, an RFC 3339 time, or 'end'"
                             : "from must be a revision, 'end' or 'snapshot'");
        if (rc == -3)
            conn_problem(c, 400, "bad-request", NULL, "query parameter '%.*s' given twice", (int)k.len, k.ptr);
    }
    buf_free(&v);
    factum_str_t hv = http_header_get(&c->req->h, "factum-min-position");
    if (!rc && hv.ptr && !p->has_min) {
        if (!str_u64(hv, &p->min_position) || p->min_position == UINT64_MAX) {
            conn_problem(c, 400, "bad-request", NULL, "the Factum-Min-Position header must be a position");
            rc = -2;
        }
        p->has_min = true;
    }
    if (!rc && p->backward && !p->has_from) p->from = FACTUM_END;
    if (!rc && p->backward && p->from_time) {
        conn_problem(c, 400, "bad-request", NULL, "a read from a time goes forward");
        rc = -1;
    }
    if (rc) params_free(p);
    return rc ? -1 : 0;
}

static factum_str_t buf_str(const buf_t *b) { return (factum_str_t){b->ptr ? b->ptr : "", b->len}; }

/* ---- read-your-writes: min_position ---- */

static void min_on_commit(conn *c) {
    if (factum_head_position(c->l->srv->db) > c->min_position) conn_wait_rerun(c);
}
static void min_on_tick(conn *c, uint64_t now_ms, bool final) {
    (void)now_ms;
    if (!final) return;
    c->waited_out = true;
    conn_wait_rerun(c);
}
static const park_ops min_park = {.on_commit = min_on_commit, .on_tick = min_on_tick};

/* Whether the read may go on: the log holds p's min_position (a follower in cluster mode may not
   have applied it yet). If not, c waits for it, parked on its loop and woken by commits, up to
   min_position_wait_ms (default MIN_POSITION_WAIT_MS); then 503. false: answered or parked. */
static bool min_position_reached(conn *c, const params *p) {
    uint64_t head = factum_head_position(c->l->srv->db);
    if (!p->has_min || head > p->min_position) return true;
    if (c->waited_out || !p->min_wait_ms) {
        conn_problem_headers(c, 503, "not-caught-up", "Retry-After: 1\r\n",
                             "this node holds positions below %llu; position %llu did not arrive within %llu ms",
                             (unsigned long long)head, (unsigned long long)p->min_position,
                             (unsigned long long)p->min_wait_ms);
        return false;
    }
    c->min_position = p->min_position;
    server_wait(c, p->min_wait_ms, &min_park);
    return false;
}

/* ---- reads ---- */

int render_event(buf_t *b, const factum_event_t *e) {
    /* A generous guess first; the exact size on a second pass only when the guess was short
       (attributes full of escapes, or base64 data). */
    size_t guess = 1024 + e->data.len + e->data.len / 2 + e->extensions.len + e->source.len + e->subject.len;
    if (buf_reserve(b, guess)) return -1;
    size_t need = factum_event_json(e, b->ptr + b->len, b->cap - b->len);
    if (need >= b->cap - b->len) {
        if (buf_reserve(b, need + 1)) return -1;
        factum_event_json(e, b->ptr + b->len, need + 1);
    }
    b->len += need;
    return 0;
}

/* render_events, with raw: the events as stored (factum_result_event_raw). */
static size_t render_as(loop *l, const factum_result_t *res, uint64_t until, bool raw) {
    buf_t *b = &l->scratch;
    b->len = 0;
    buf_append(b, "[", 1);
    size_t n = factum_result_count(res), i;
    for (i = 0; i < n && b->len < READ_MAX_BYTES; i++) {
        const factum_event_t *e = raw ? factum_result_event_raw(res, i) : factum_result_event(res, i);
        if (e->position >= until) break;
        if (i)
            buf_append(b, ",\n", 2);
        else
            buf_append(b, "\n", 1);
        if (render_event(b, e)) break;
    }
    buf_append(b, i ? "\n]" : "]", i ? 2 : 1);
    return i;
}

size_t render_events(loop *l, const factum_result_t *res, uint64_t until) { return render_as(l, res, until, false); }

static bool wants_sse(const http_req *h) {
    factum_str_t a = http_header_get(h, "accept");
    return a.len && memmem(a.ptr, a.len, "text/event-stream", 17) != NULL;
}

/* from for a subscription: Last-Event-ID (resume after it) beats ?from=. -1 and 400 if bad. */
static int sse_from(conn *c, const params *p, uint64_t *from) {
    factum_str_t last = http_header_get(&c->req->h, "last-event-id");
    *from = p->has_from && p->from != FACTUM_END ? p->from : 0;
    if (p->from_time) *from = factum_position_at(c->l->srv->db, p->from_time);
    if (p->has_from && p->from == FACTUM_END) *from = FACTUM_END;
    if (last.ptr) {
        uint64_t id;
        if (!str_u64(last, &id) || id == UINT64_MAX) {
            conn_problem(c, 400, "bad-request", NULL, "Last-Event-ID must be a revision or position");
            return -1;
        }
        *from = id + 1;
    }
    return 0;
}

/* GET /streams/{stream} */
static void read_stream(conn *c, factum_str_t stream, factum_str_t body) {
    (void)body;
    loop *l = c->l;
    params p;
    if (parse_params(c, c->req->h.query, false, &p)) return;
    factum_error_t err;
    int rc = factum_stream_name_check(stream, &err);
    if (!min_position_reached(c, &p)) {
        /* answered, or waiting for the position */
    } else if (rc) {
        server_problem(c, rc, err.message);
    } else if (p.from_snapshot) {
        api_read_from_snapshot(c, stream, p.limit);
    } else if (wants_sse(&c->req->h) && !http_token_is(c->req->h.method, "head")) {
        uint64_t from;
        if (p.until != UINT64_MAX)
            conn_problem(c, 400, "bad-request", NULL, "a subscription cannot read as of a past point");
        else if (!sse_from(c, &p, &from))
            sse_start(c, false, stream, NULL, from, p.raw);
    } else {
        factum_result_t *res;
        if (p.backward && p.until != UINT64_MAX) {
            /* Start at the last revision inside the view: binary search by position. */
            uint64_t lo = 0, hi = (uint64_t)(factum_stream_revision(l->srv->db, stream) + 1);
            while (lo < hi) {
                uint64_t mid = lo + (hi - lo) / 2;
                factum_result_t *one;
                bool inside = factum_read_stream(l->srv->db, stream, mid, 1, 0, &one, NULL) == 0 &&
                              factum_result_count(one) && factum_result_event(one, 0)->position < p.until;
                factum_result_free(one);
                if (inside)
                    lo = mid + 1;
                else
                    hi = mid;
            }
            p.from = lo ? MIN(p.from, lo - 1) : p.from;
            if (!lo) p.limit = 0; /* nothing is inside the view */
        }
        rc = factum_read_stream(l->srv->db, stream, p.from, p.limit ? p.limit : 1, p.backward, &res, &err);
        if (rc) {
            server_problem(c, rc, err.message);
        } else {
            size_t n = render_as(l, res, p.limit ? p.until : 0, p.raw);
            bool cut = n < factum_result_count(res) && factum_result_event(res, n)->position >= p.until;
            uint64_t next =
                n < factum_result_count(res) ? factum_result_event(res, n)->revision : factum_result_next(res);
            int64_t last = factum_stream_revision(l->srv->db, stream);
            buf_t hdr = {0};
            buf_printf(&hdr, "ETag: \"%lld\"\r\n", (long long)last);
            bool more =
                p.limit && !cut && (p.backward ? next != FACTUM_END : (n == p.limit || n < factum_result_count(res)));
            if (more) {
                buf_printf(&hdr, "Link: </streams/");
                buf_url_encode(&hdr, stream.ptr, stream.len);
                buf_printf(&hdr, "?from=%llu&limit=%zu&direction=%s%.*s%s>; rel=\"next\"\r\n", (unsigned long long)next,
                           p.limit, p.backward ? "backward" : "forward", (int)p.until_arg.len,
                           p.until_arg.ptr ? p.until_arg.ptr : "", p.raw ? "&version=raw" : "");
            }
            conn_respond(c, 200, JSON, hdr.ptr, l->scratch.ptr, l->scratch.len);
            buf_free(&hdr);
            factum_result_free(res);
        }
    }
    params_free(&p);
}

void api_read_stream(conn *c, const route_args *a, factum_str_t body) { api_on_stream(c, a, false, body, read_stream); }

/* GET /all */
void api_read_all(conn *c, const route_args *a, factum_str_t body) {
    (void)a, (void)body;
    loop *l = c->l;
    params p;
    if (parse_params(c, c->req->h.query, true, &p)) return;
    if (!min_position_reached(c, &p)) {
        params_free(&p);
        return;
    }
    factum_query_t q = {.from = p.from,
                        .limit = p.limit,
                        .backward = p.backward,
                        .from_time = p.from_time,
                        .system = p.system,
                        .type = buf_str(&p.type),
                        .category = buf_str(&p.category),
                        .correlationid = buf_str(&p.corr),
                        .type_as_stored = p.raw}; /* version=raw: the type as stored too */
    if (wants_sse(&c->req->h) && !http_token_is(c->req->h.method, "head")) {
        uint64_t from;
        if (p.until != UINT64_MAX)
            conn_problem(c, 400, "bad-request", NULL, "a subscription cannot read as of a past point");
        else if (!sse_from(c, &p, &from))
            sse_start(c, true, (factum_str_t){"", 0}, &q, from, p.raw);
        params_free(&p);
        return;
    }
    if (p.until != UINT64_MAX && q.backward) {
        if (p.until == 0)
            q.limit = 0; /* nothing is inside the view */
        else if (q.from == FACTUM_END || q.from >= p.until)
            q.from = p.until - 1;
    }
    factum_result_t *res;
    factum_error_t err;
    int rc = factum_read_all(l->srv->db, &q, &res, &err);
    if (rc) {
        server_problem(c, rc, err.message);
    } else {
        size_t n = render_as(l, res, p.until, p.raw);
        uint64_t next = n < factum_result_count(res) ? factum_result_event(res, n)->position : factum_result_next(res);
        uint64_t head = MIN(factum_head_position(l->srv->db), p.until);
        bool more = q.limit && (p.backward ? next != FACTUM_END : next < head);
        buf_t hdr = {0};
        buf_printf(&hdr, "Factum-Head: %llu\r\n", (unsigned long long)head);
        if (more) {
            buf_printf(&hdr, "Link: </all?from=%llu&limit=%zu&direction=%s", (unsigned long long)next, p.limit,
                       p.backward ? "backward" : "forward");
            const char *names[] = {"type", "category", "correlation_id"};
            buf_t *vals[] = {&p.type, &p.category, &p.corr};
            for (int i = 0; i < 3; i++)
                if (vals[i]->len) {
                    buf_printf(&hdr, "&%s=", names[i]);
                    buf_url_encode(&hdr, vals[i]->ptr, vals[i]->len);
                }
            if (p.system) buf_printf(&hdr, "&system=true");
            if (p.until_arg.len) buf_append(&hdr, p.until_arg.ptr, p.until_arg.len);
            if (p.raw) buf_printf(&hdr, "&version=raw");
            buf_printf(&hdr, ">; rel=\"next\"\r\n");
        }
        conn_respond(c, 200, JSON, hdr.ptr, l->scratch.ptr, l->scratch.len);
        buf_free(&hdr);
        factum_result_free(res);
    }
    params_free(&p);
}
