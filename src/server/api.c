/*
 * api.c — the HTTP API of docs/openapi.yaml: routing, append (structured, batch and binary
 * CloudEvents), reads of a stream and of $all with paging, health and Prometheus metrics.
 * Runs on the loop thread that owns the connection; appends go to the writer asynchronously
 * and come back through the done function given with them (api_append_done for appends).
 */
#include "server.h"

#include "../base/json.h"
#include "../group/groups.h"
#include "timers.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>

#define READ_DEFAULT_LIMIT 100
#define READ_MAX_LIMIT 10000
#define READ_MAX_BYTES (16u << 20) /* a read page stops growing past this; the Link goes on */

static const char *const JSON = "application/json";

void server_problem(conn *c, int rc, const char *msg) {
    switch (rc) {
    case FACTUM_EBADSTREAM: conn_problem(c, 400, "bad-stream", NULL, "%s", msg); break;
    case FACTUM_EBADEVENT: conn_problem(c, 400, "bad-event", NULL, "%s", msg); break;
    case FACTUM_EINVAL: conn_problem(c, 400, "bad-request", NULL, "%s", msg); break;
    case FACTUM_ETOOBIG: conn_problem(c, 413, "too-large", NULL, "%s", msg); break;
    case FACTUM_ECONFLICT: conn_problem(c, 409, "conflict", NULL, "%s", msg); break;
    case FACTUM_ENOTFOUND: conn_problem(c, 404, "not-found", NULL, "%s", msg); break;
    case FACTUM_EDELETED: conn_problem(c, 410, "gone", NULL, "%s", msg); break;
    case FACTUM_ENOSPC: conn_problem(c, 507, "no-space", NULL, "%s", msg); break;
    case FACTUM_EFAILED:
    case FACTUM_EIO:
    case FACTUM_ECLOSED:
    case FACTUM_EUNREACHABLE: conn_problem(c, 503, "unavailable", NULL, "%s", msg); break;
    case FACTUM_ETIMEDOUT: conn_problem(c, 504, "timeout", NULL, "%s", msg); break;
    default: conn_problem(c, 500, "internal", NULL, "%s: %s", factum_errname(rc), msg); break;
    }
}

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
    size_t limit;
    buf_t type, category, corr;
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
    if (!rc && p->backward && !p->has_from) p->from = FACTUM_END;
    if (!rc && p->backward && p->from_time) {
        conn_problem(c, 400, "bad-request", NULL, "a read from a time goes forward");
        rc = -1;
    }
    if (rc) params_free(p);
    return rc ? -1 : 0;
}

static factum_str_t buf_str(const buf_t *b) { return (factum_str_t){b->ptr ? b->ptr : "", b->len}; }

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

size_t render_events(loop *l, const factum_result_t *res, uint64_t until) {
    buf_t *b = &l->scratch;
    b->len = 0;
    buf_append(b, "[", 1);
    size_t n = factum_result_count(res), i;
    for (i = 0; i < n && b->len < READ_MAX_BYTES; i++) {
        const factum_event_t *e = factum_result_event(res, i);
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

static void read_stream(conn *c, factum_str_t stream) {
    loop *l = c->l;
    params p;
    if (parse_params(c, c->req->h.query, false, &p)) return;
    factum_error_t err;
    int rc = factum_stream_name_check(stream, &err);
    if (rc) {
        server_problem(c, rc, err.message);
    } else if (p.from_snapshot) {
        api_read_from_snapshot(c, stream, p.limit);
    } else if (wants_sse(&c->req->h) && !http_token_is(c->req->h.method, "head")) {
        uint64_t from;
        if (p.until != UINT64_MAX)
            conn_problem(c, 400, "bad-request", NULL, "a subscription cannot read as of a past point");
        else if (!sse_from(c, &p, &from))
            sse_start(c, false, stream, NULL, from);
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
            size_t n = p.limit ? render_events(l, res, p.until) : render_events(l, res, 0);
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
                buf_printf(&hdr, "?from=%llu&limit=%zu&direction=%s%.*s>; rel=\"next\"\r\n", (unsigned long long)next,
                           p.limit, p.backward ? "backward" : "forward", (int)p.until_arg.len,
                           p.until_arg.ptr ? p.until_arg.ptr : "");
            }
            conn_respond(c, 200, JSON, hdr.ptr, l->scratch.ptr, l->scratch.len);
            buf_free(&hdr);
            factum_result_free(res);
        }
    }
    params_free(&p);
}

static void read_all(conn *c) {
    loop *l = c->l;
    params p;
    if (parse_params(c, c->req->h.query, true, &p)) return;
    factum_query_t q = {.from = p.from,
                        .limit = p.limit,
                        .backward = p.backward,
                        .from_time = p.from_time,
                        .system = p.system,
                        .type = buf_str(&p.type),
                        .category = buf_str(&p.category),
                        .correlationid = buf_str(&p.corr)};
    if (wants_sse(&c->req->h) && !http_token_is(c->req->h.method, "head")) {
        uint64_t from;
        if (p.until != UINT64_MAX)
            conn_problem(c, 400, "bad-request", NULL, "a subscription cannot read as of a past point");
        else if (!sse_from(c, &p, &from))
            sse_start(c, true, (factum_str_t){"", 0}, &q, from);
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
        size_t n = render_events(l, res, p.until);
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
            buf_printf(&hdr, ">; rel=\"next\"\r\n");
        }
        conn_respond(c, 200, JSON, hdr.ptr, l->scratch.ptr, l->scratch.len);
        buf_free(&hdr);
        factum_result_free(res);
    }
    params_free(&p);
}

/* ---- append ---- */

/* The media type without parameters, lowercased into out. */
static factum_str_t media_type(factum_str_t ct, char *out, size_t cap) {
    size_t n = 0;
    for (size_t i = 0; i < ct.len && ct.ptr[i] != ';' && n + 1 < cap; i++)
        if (ct.ptr[i] != ' ' && ct.ptr[i] != '\t') out[n++] = (char)tolower((unsigned char)ct.ptr[i]);
    out[n] = 0;
    return (factum_str_t){out, n};
}

static bool is_json_media(factum_str_t m) {
    return str_eq(m, str_c("application/json")) || (m.len > 5 && !memcmp(m.ptr + m.len - 5, "+json", 5));
}

int api_expected_revision(conn *c, int64_t *out) {
    factum_str_t m = http_header_get(&c->req->h, "if-match"), nm = http_header_get(&c->req->h, "if-none-match");
    *out = FACTUM_EXPECT_ANY;
    if (m.ptr && nm.ptr) {
        conn_problem(c, 400, "bad-request", NULL, "give If-Match or If-None-Match, not both");
        return -1;
    }
    if (nm.ptr) {
        if (!str_eq(nm, str_c("*"))) {
            conn_problem(c, 400, "bad-request", NULL, "If-None-Match accepts only * (the stream must not exist)");
            return -1;
        }
        *out = FACTUM_EXPECT_NO_STREAM;
    } else if (m.ptr) {
        uint64_t n;
        if (str_eq(m, str_c("*")))
            *out = FACTUM_EXPECT_EXISTS;
        else if (m.len >= 3 && m.ptr[0] == '"' && m.ptr[m.len - 1] == '"' &&
                 str_u64((factum_str_t){m.ptr + 1, m.len - 2}, &n) && n <= INT64_MAX)
            *out = (int64_t)n;
        else {
            conn_problem(c, 400, "bad-request", NULL, "If-Match accepts * or one strong ETag \"N\" (a revision)");
            return -1;
        }
    }
    return 0;
}

/* Binary mode: attributes in ce-* headers, the body is the data. Decoded values go to vals
   (reserved up front so spans never move), extension members to ext. */
static int binary_event(conn *c, factum_str_t body, factum_event_t *e, buf_t *vals, buf_t *ext) {
    const http_req *h = &c->req->h;
    size_t total = 0;
    for (size_t i = 0; i < h->nheaders; i++)
        total += h->headers[i].value.len + 1;
    if (buf_reserve(vals, total + 1)) return conn_problem(c, 500, "internal", NULL, "out of memory"), -1;
    memset(e, 0, sizeof *e);
    for (size_t i = 0; i < h->nheaders; i++) {
        factum_str_t name = h->headers[i].name;
        if (name.len < 4 || !http_token_is((factum_str_t){name.ptr, 3}, "ce-")) continue;
        factum_str_t an = {name.ptr + 3, name.len - 3};
        size_t at = vals->len;
        if (http_unescape(h->headers[i].value, false, vals)) {
            conn_problem(c, 400, "bad-event", NULL, "header %.*s has a bad percent-escape", (int)name.len, name.ptr);
            return -1;
        }
        factum_str_t v = {vals->ptr + at, vals->len - at};
        vals->len++; /* keep the NUL */
        factum_str_t *dst = NULL;
        if (http_token_is(an, "specversion")) {
            if (!str_eq(v, str_c("1.0"))) {
                conn_problem(c, 400, "bad-event", NULL, "ce-specversion must be 1.0");
                return -1;
            }
        } else if (http_token_is(an, "id"))
            dst = &e->id;
        else if (http_token_is(an, "type"))
            dst = &e->type;
        else if (http_token_is(an, "source"))
            dst = &e->source;
        else if (http_token_is(an, "subject"))
            dst = &e->subject;
        else if (http_token_is(an, "correlationid"))
            dst = &e->correlationid;
        else if (http_token_is(an, "causationid"))
            dst = &e->causationid;
        else if (http_token_is(an, "time"))
            continue; /* the store records the time */
        else if (http_token_is(an, "datacontenttype")) {
            conn_problem(c, 400, "bad-event", NULL, "in binary mode the data's type is the Content-Type header");
            return -1;
        } else {
            if (ext->len) buf_append(ext, ",", 1);
            buf_append(ext, "\"", 1);
            for (size_t k = 0; k < an.len; k++) {
                char ch = (char)tolower((unsigned char)an.ptr[k]);
                buf_append(ext, &ch, 1);
            }
            buf_append(ext, "\":", 2);
            json_escape(ext, v.ptr, v.len);
        }
        if (dst) {
            if (dst->ptr) {
                conn_problem(c, 400, "bad-event", NULL, "header %.*s given twice", (int)name.len, name.ptr);
                return -1;
            }
            *dst = v;
        }
    }
    if (!e->type.len) {
        conn_problem(c, 400, "bad-event", NULL, "binary mode needs a ce-type header");
        return -1;
    }
    e->extensions = buf_str(ext);
    factum_str_t ct = http_header_get(h, "content-type");
    char mt[128];
    e->datacontenttype = ct;
    e->data = body;
    e->data_format = body.len == 0 && !ct.ptr                       ? FACTUM_DATA_NONE
                     : is_json_media(media_type(ct, mt, sizeof mt)) ? FACTUM_DATA_JSON
                                                                    : FACTUM_DATA_BINARY;
    if (e->data_format == FACTUM_DATA_JSON && body.len == 0) {
        conn_problem(c, 400, "bad-event", NULL, "Content-Type says JSON but the body is empty");
        return -1;
    }
    return 0;
}

static void append(conn *c, factum_str_t stream, factum_str_t body) {
    const http_req *h = &c->req->h;
    if (stream.len && stream.ptr[0] == '$') {
        conn_problem(c, 400, "bad-stream", NULL, "streams whose names start with '$' are written by the server only");
        return;
    }
    int64_t expected;
    if (api_expected_revision(c, &expected)) return;
    bool binary = false;
    for (size_t i = 0; i < h->nheaders && !binary; i++)
        binary = h->headers[i].name.len > 3 && http_token_is((factum_str_t){h->headers[i].name.ptr, 3}, "ce-");
    factum_error_t err;
    int rc;
    if (binary) {
        factum_event_t e;
        buf_t vals = {0}, ext = {0};
        if (!binary_event(c, body, &e, &vals, &ext)) {
            rc = server_submit_append(c, stream, expected, &e, 1, api_append_done, &err);
            if (rc) server_problem(c, rc, err.message);
        }
        buf_free(&vals);
        buf_free(&ext);
        return;
    }
    factum_str_t ct = http_header_get(h, "content-type");
    char mt[128];
    factum_str_t m = media_type(ct, mt, sizeof mt);
    int batch;
    if (str_eq(m, str_c("application/cloudevents+json")))
        batch = 0;
    else if (str_eq(m, str_c("application/cloudevents-batch+json")))
        batch = 1;
    else if (str_eq(m, str_c("application/json"))) {
        size_t i = 0;
        while (i < body.len && strchr(" \t\r\n", body.ptr[i]))
            i++;
        batch = i < body.len && body.ptr[i] == '[';
    } else {
        conn_problem(c, 415, "unsupported-media-type", NULL,
                     "send application/cloudevents+json, application/cloudevents-batch+json, application/json, "
                     "or binary mode with ce-* headers (got '%.*s')",
                     (int)MIN(ct.len, 100), ct.ptr ? ct.ptr : "");
        return;
    }
    factum_events_t *set;
    rc = factum_events_parse(body.ptr, body.len, batch, &set, &err);
    if (rc) {
        server_problem(c, rc, err.message);
        return;
    }
    rc = server_submit_append(c, stream, expected, factum_events_get(set, 0), factum_events_count(set), api_append_done,
                              &err);
    if (rc) server_problem(c, rc, err.message);
    factum_events_free(set);
}

/* The stream name of the path, percent-decoded into c's scratch-free buffer `out`. */
static int path_stream(conn *c, factum_str_t rest, buf_t *out) {
    if (http_unescape(rest, false, out)) {
        conn_problem(c, 400, "bad-stream", NULL, "the stream name has a bad percent-escape");
        return -1;
    }
    return 0;
}

void api_revision_problem(conn *c) {
    char members[160];
    int64_t exp, actual = c->ar_res.actual_revision;
    api_expected_revision(c, &exp); /* parsed fine before the request went to the writer */
    if (exp >= 0)
        snprintf(members, sizeof members, "\"expected\":%lld,\"actual\":%lld", (long long)exp, (long long)actual);
    else
        snprintf(members, sizeof members, "\"expected\":\"%s\",\"actual\":%lld",
                 exp == FACTUM_EXPECT_NO_STREAM ? "no stream" : "exists", (long long)actual);
    conn_problem(c, 412, "wrong-expected-revision", members, "%s", c->ar_msg);
}

bool server_written(conn *c) {
    c->state = C_BODY;
    if (!c->ar_rc) return true;
    if (c->ar_rc == FACTUM_EREVISION)
        api_revision_problem(c);
    else if (c->ar_rc == FACTUM_EIO)
        /* Its commit group failed to sync: the events may or may not be on disk after a restart.
           A retry with the same event ids is idempotent, so it is safe (docs/http.md). */
        conn_problem(c, 503, "outcome-unknown", "\"outcome\":\"unknown\",\"retry_safe_with_same_ids\":true", "%s",
                     c->ar_msg);
    else
        server_problem(c, c->ar_rc, c->ar_msg);
    return false;
}

void api_path_stream(conn *c, buf_t *out) {
    factum_str_t p = {c->req->h.path.ptr + 9, c->req->h.path.len - 9};
    const char *slash = memchr(p.ptr, '/', p.len);
    if (slash) p.len = (size_t)(slash - p.ptr);
    http_unescape(p, false, out);
}

void api_append_done(conn *c) {
    loop_observe_latency(c->l, clock_mono_ns() - c->req->started_ns);
    if (!server_written(c)) return;
    const factum_append_result_t *r = &c->ar_res;
    /* The stream name is the path's; decode it again rather than keep a copy per append. */
    buf_t name = {0}, body = {0};
    api_path_stream(c, &name);
    buf_append(&body, "{\"stream\":", 10);
    json_escape(&body, name.ptr, name.len);
    buf_printf(&body, ",\"first_revision\":%llu,\"revision\":%llu,\"first_position\":%llu,\"position\":%llu%s}",
               (unsigned long long)r->first_revision, (unsigned long long)r->last_revision,
               (unsigned long long)r->first_position, (unsigned long long)r->last_position,
               r->idempotent ? ",\"idempotent\":true" : "");
    char hdr[64];
    snprintf(hdr, sizeof hdr, "ETag: \"%llu\"\r\n", (unsigned long long)r->last_revision);
    conn_respond(c, r->idempotent ? 200 : 201, JSON, hdr, body.ptr, body.len);
    buf_free(&name);
    buf_free(&body);
}

/* ---- health and metrics ---- */

/* At most this many damaged events are listed in /health (the first met); damaged_events counts all. */
#define HEALTH_DAMAGE_LIST 16

static void health(conn *c) {
    factum_stats_t st;
    factum_stats(c->l->srv->db, &st);
    factum_integrity_t integ, *in = &integ; /* about 9 KB */
    factum_integrity(c->l->srv->db, in);
    buf_t b = {0};
    if (st.failed) { /* the writer stopped: that comes first */
        buf_printf(&b, "{\"status\":\"failed\",\"position\":%llu,\"error\":\"%s\"", (unsigned long long)st.head,
                   factum_errname(st.failed));
    } else if (in->damaged_events) {
        buf_printf(&b, "{\"status\":\"degraded\",\"position\":%llu", (unsigned long long)st.head);
    } else {
        buf_printf(&b, "{\"status\":\"ok\",\"position\":%llu", (unsigned long long)st.head);
    }
    if (in->damaged_events) {
        /* Events that reads found damaged: each with its file, offset and position. */
        buf_printf(&b, ",\"damaged_events\":%llu%s,\"damage\":[", (unsigned long long)in->damaged_events,
                   in->more ? ",\"more_damage\":true" : "");
        for (size_t i = 0; i < in->n && i < HEALTH_DAMAGE_LIST; i++) {
            const factum_damage_t *d = &in->damage[i];
            buf_printf(&b, "%s{\"file\":", i ? "," : "");
            json_escape(&b, d->file, strlen(d->file));
            buf_printf(&b, ",\"offset\":%llu,\"position\":%llu,\"error\":\"%s\",\"message\":",
                       (unsigned long long)d->offset, (unsigned long long)d->position, factum_errname(d->code));
            json_escape(&b, d->message, strlen(d->message));
            buf_append(&b, "}", 1);
        }
        buf_append(&b, "]", 1);
    }
    buf_append(&b, "}", 1);
    conn_respond(c, st.failed || in->damaged_events ? 503 : 200, JSON, NULL, b.ptr, b.len);
    buf_free(&b);
}

void api_metric_head(buf_t *b, const char *name, const char *type, const char *help) {
    buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A metric with one unlabelled sample. */
static void scalar(buf_t *b, const char *name, const char *type, const char *help, uint64_t v) {
    api_metric_head(b, name, type, help);
    buf_printf(b, "%s %llu\n", name, (unsigned long long)v);
}

/* A Prometheus histogram from per-bucket counts: bounds[i] * scale is bucket i's upper bound in
   the metric's unit, and the last bucket is +Inf whatever its bound says. */
static void histogram(buf_t *b, const char *name, const char *help, const uint64_t *counts, const double *bounds,
                      size_t n, double scale, double sum) {
    api_metric_head(b, name, "histogram", help);
    uint64_t cum = 0;
    for (size_t i = 0; i < n; i++) {
        cum += counts[i];
        if (i + 1 == n)
            buf_printf(b, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)cum);
        else
            buf_printf(b, "%s_bucket{le=\"%g\"} %llu\n", name, bounds[i] * scale, (unsigned long long)cum);
    }
    buf_printf(b, "%s_sum %g\n%s_count %llu\n", name, sum, name, (unsigned long long)cum);
}

/* Group metrics: group names are chosen by operators (bounded), unlike stream names. */
static void collect_group(void *ctx, const group_stats *st) { buf_append(ctx, st, sizeof *st); }

static void group_metrics(buf_t *b, groups_t *gs) {
    buf_t all = {0};
    groups_each_stats(gs, collect_group, &all);
    const group_stats *v = (const group_stats *)all.ptr;
    size_t n = all.len / sizeof *v;
    static const struct {
        const char *name, *type, *help;
    } fam[] = {
        {"factum_group_lag_positions", "gauge",
         "Log positions from the oldest event the group has not finished to the head."},
        {"factum_group_lag_events", "gauge", "Events of the group's stream not finished (stream sources only)."},
        {"factum_group_lag_seconds", "gauge", "Age of the oldest event the group has not finished."},
        {"factum_group_in_flight", "gauge", "Deliveries awaiting ack."},
        {"factum_group_retrying", "gauge", "Events waiting for a retry."},
        {"factum_group_parked", "gauge", "Parked events."},
        {"factum_group_oldest_parked_seconds", "gauge", "Age of the oldest parked event."},
        {"factum_group_delivered_total", "counter", "First deliveries."},
        {"factum_group_redelivered_total", "counter", "Deliveries after a retry or a missed ack timeout."},
        {"factum_group_acked_total", "counter", "Acknowledged events."},
        {"factum_group_stopped", "gauge", "1 when a read that failed (damage) stopped the group's delivery."},
    };
    for (size_t f = 0; f < ARRAY_LEN(fam); f++) {
        api_metric_head(b, fam[f].name, fam[f].type, fam[f].help);
        for (size_t i = 0; i < n; i++) {
            const group_stats *st = &v[i];
            double val[] = {(double)st->lag_positions, (double)st->lag_events, st->lag_seconds,
                            (double)st->in_flight,     (double)st->retrying,   (double)st->parked,
                            st->oldest_parked_s,       (double)st->delivered,  (double)st->redelivered,
                            (double)st->acked,         (double)st->stopped};
            if (f == 1 && !st->has_lag_events) continue; /* a category or $all source cannot count its events */
            buf_printf(b, "%s{group=\"%s\"} %.17g\n", fam[f].name, st->name, val[f]);
        }
    }
    buf_free(&all);
}

static void metrics(conn *c) {
    server *s = c->l->srv;
    factum_stats_t st;
    factum_stats(s->db, &st);
    buf_t *b = &c->l->scratch;
    b->len = 0;
    uint64_t lat[SERVER_HIST] = {0}, lat_sum = 0, subs = 0, accepted = 0, drops = 0, status[600] = {0};
    for (int i = 0; i < s->nloops; i++) {
        loop *l = &s->loops[i];
        for (int k = 0; k < SERVER_HIST; k++)
            lat[k] += atomic_load_explicit(&l->lat[k], memory_order_relaxed);
        lat_sum += atomic_load_explicit(&l->lat_sum_us, memory_order_relaxed);
        subs += atomic_load_explicit(&l->nsubs, memory_order_relaxed);
        accepted += atomic_load_explicit(&l->accepted, memory_order_relaxed);
        drops += atomic_load_explicit(&l->slow_drops, memory_order_relaxed);
        for (int k = 100; k < 600; k++)
            status[k] += atomic_load_explicit(&l->status[k], memory_order_relaxed);
    }
    api_metric_head(b, "factum_build_info", "gauge", "Build information.");
    buf_printf(b, "factum_build_info{version=\"%s\"} 1\n", s->cfg.version);
    scalar(b, "factum_appends_total", "counter", "Appends acknowledged (idempotent repeats excluded).", st.appends);
    scalar(b, "factum_append_events_total", "counter", "Events appended.", st.events);
    scalar(b, "factum_append_bytes_total", "counter", "Bytes of records appended.", st.bytes);
    histogram(b, "factum_append_duration_seconds",
              "HTTP append requests, from the complete request to the answer (all outcomes).", lat,
              server_latency_bounds, SERVER_HIST, 1, (double)lat_sum / 1e6);
    double fsync_bounds[FACTUM_STAT_BUCKETS], group_bounds[FACTUM_STAT_BUCKETS];
    for (int k = 0; k < FACTUM_STAT_BUCKETS; k++)
        fsync_bounds[k] = (double)factum_fsync_us_bounds[k], group_bounds[k] = (double)factum_group_events_bounds[k];
    histogram(b, "factum_fsync_duration_seconds", "fdatasync of the log, per commit group.", st.fsync_us, fsync_bounds,
              FACTUM_STAT_BUCKETS, 1e-6, (double)st.fsync_us_sum / 1e6);
    histogram(b, "factum_events_per_fsync", "Events made durable by one fdatasync (group commit).", st.group_events,
              group_bounds, FACTUM_STAT_BUCKETS, 1, (double)st.events);
    scalar(b, "factum_log_bytes", "gauge", "Bytes of records in the log.", st.log_bytes);
    scalar(b, "factum_head_position", "gauge", "Durable events in the log (the next position).", st.head);
    scalar(b, "factum_writer_failed", "gauge", "1 when a failed write or fsync stopped the writer.", st.failed != 0);
    factum_integrity_t integ;
    factum_integrity(s->db, &integ);
    scalar(b, "factum_integrity_damaged_events", "gauge",
           "Distinct events reads found damaged (checksum or media error) since the server started.",
           integ.damaged_events);
    scalar(b, "factum_subscribers", "gauge", "Live and catching-up SSE subscribers.", subs);
    api_metric_head(b, "factum_subscriber_disconnects_total", "counter",
                    "Subscribers cut off past their buffer limit.");
    buf_printf(b, "factum_subscriber_disconnects_total{reason=\"slow\"} %llu\n", (unsigned long long)drops);
    scalar(b, "factum_connections", "gauge", "Open HTTP connections.", atomic_load(&s->nconns));
    scalar(b, "factum_connections_total", "counter", "HTTP connections accepted.", accepted);
    timers_stats ts;
    timers_get_stats(s->timers, &ts);
    scalar(b, "factum_timers_pending", "gauge", "Durable timers waiting to fire.", ts.pending);
    scalar(b, "factum_timers_fired_total", "counter", "Timers fired (since this server started, or replayed).",
           ts.fired);
    scalar(b, "factum_timers_cancelled_total", "counter", "Timers cancelled.", ts.cancelled);
    scalar(b, "factum_timers_failed_total", "counter",
           "Timers whose event the store refused (a deleted stream, a clashing id).", ts.failed);
    scalar(b, "factum_timers_compactions_total", "counter",
           "Compactions of $schedules (records of ended timers made reclaimable).", ts.compactions);
    histogram(b, "factum_timer_lateness_seconds", "From a timer's time to its event being durable.", ts.late,
              timers_late_bounds_ms, 16, 1e-3, (double)ts.late_sum_us / 1e6);
    group_metrics(b, s->groups);
    sagas_metrics(s->sagas, b);
    projections_metrics(s->projections, b);
    factum_scavenge_stats_t sc;
    factum_scavenge_stats(s->db, &sc);
    scalar(b, "factum_scavenge_running", "gauge", "1 while a scavenge runs.", (uint64_t)sc.running);
    scalar(b, "factum_scavenges_total", "counter", "Scavenges finished since the server started.", sc.runs);
    scalar(b, "factum_scavenge_segments", "gauge", "Sealed segments the running (or last) scavenge looks at.",
           sc.segments_total);
    scalar(b, "factum_scavenge_segments_done", "gauge", "Of them, looked at so far.", sc.segments_done);
    scalar(b, "factum_scavenge_events_removed", "gauge", "Events the running (or last) scavenge removed.",
           sc.events_removed);
    scalar(b, "factum_scavenge_reclaimed_bytes_total", "counter",
           "File bytes scavenges gave back since the server started.", sc.bytes_reclaimed_total);
    api_metric_head(b, "factum_http_responses_total", "counter", "HTTP responses by status code.");
    for (int k = 100; k < 600; k++)
        if (status[k])
            buf_printf(b, "factum_http_responses_total{code=\"%d\"} %llu\n", k, (unsigned long long)status[k]);
    conn_respond(c, 200, "text/plain; version=0.0.4; charset=utf-8", NULL, b->ptr, b->len);
}

/* ---- routing ---- */

static bool method_is(conn *c, const char *m) { return str_eq(c->req->h.method, str_c(m)); }

bool api_path_name(conn *c, factum_str_t rest, size_t max, bool (*valid)(const char *), const char *rule, char *name,
                   factum_str_t *tail) {
    factum_str_t r = {rest.ptr + 1, rest.len - 1};
    const char *slash = memchr(r.ptr, '/', r.len);
    size_t nl = slash ? (size_t)(slash - r.ptr) : r.len;
    *tail = slash ? (factum_str_t){slash, r.len - nl} : (factum_str_t){0};
    if (nl > max || (memcpy(name, r.ptr, nl), name[nl] = 0, !valid(name))) {
        conn_problem(c, 400, "bad-request", NULL, "%s", rule);
        return false;
    }
    return true;
}

static void named_free(void *p) {
    named_job *j = p;
    buf_free(&j->body);
    buf_free(&j->out);
    free(j);
}

static void named_done(conn *c) {
    named_job *j = c->job;
    c->job = NULL;
    c->state = C_BODY; /* answering, as after an append */
    if (j->rc == FACTUM_ECONFLICT && j->conflict_slug)
        conn_problem(c, 409, j->conflict_slug, NULL, "%s", j->err.message);
    else if (j->rc)
        server_problem(c, j->rc, j->err.message);
    else {
        char loc[200];
        snprintf(loc, sizeof loc, "Location: %s%s\r\n", j->location, j->name);
        conn_respond(c, j->status, "application/json", j->status == 201 ? loc : NULL, j->out.ptr, j->out.len);
    }
    named_free(j);
}

void server_submit_named(conn *c, const char *name, factum_str_t body, bool flag, const char *location,
                         const char *conflict_slug, job_fn work) {
    named_job *j = calloc(1, sizeof *j);
    if (!j || buf_append(&j->body, body.ptr, body.len)) {
        free(j);
        conn_problem(c, 503, "unavailable", NULL, "out of memory");
        return;
    }
    snprintf(j->name, sizeof j->name, "%s", name);
    j->flag = flag, j->location = location, j->conflict_slug = conflict_slug;
    c->job = j;
    server_submit_job(c, work, named_done, named_free);
}

void api_not_allowed(conn *c, const char *allow) {
    char hdr[96];
    snprintf(hdr, sizeof hdr, "Allow: %s\r\n", allow);
    buf_t b = {0};
    buf_printf(&b,
               "{\"type\":\"urn:factum:problem:method-not-allowed\",\"title\":\"Method Not Allowed\","
               "\"status\":405,\"detail\":\"this resource allows %s\"}",
               allow);
    conn_respond(c, 405, "application/problem+json", hdr, b.ptr, b.len);
    buf_free(&b);
}

void api_handle(conn *c, factum_str_t body) {
    factum_str_t path = c->req->h.path;
    bool get = method_is(c, "GET") || method_is(c, "HEAD");
    if (method_is(c, "OPTIONS")) {
        /* CORS preflight: a browser page on another origin may append and subscribe. */
        static const char pre[] = "Access-Control-Allow-Methods: GET, HEAD, POST, PUT, DELETE\r\n"
                                  "Access-Control-Allow-Headers: *\r\nAccess-Control-Max-Age: 600\r\n";
        conn_respond(c, 200, "text/plain", pre, "", 0);
        return;
    }
    if (path.len > 9 && !memcmp(path.ptr, "/streams/", 9)) {
        factum_str_t rest = {path.ptr + 9, path.len - 9};
        const char *slash = memchr(rest.ptr, '/', rest.len);
        if (slash) {
            factum_str_t tail = {slash, (size_t)(rest.ptr + rest.len - slash)};
            buf_t sname = {0};
            bool snap = str_eq(tail, str_c("/snapshot")), meta = str_eq(tail, str_c("/metadata"));
            if (!snap && !meta)
                conn_problem(c, 404, "not-found", NULL, "no such resource: %.*s", (int)MIN(path.len, 300), path.ptr);
            else if (!path_stream(c, (factum_str_t){rest.ptr, (size_t)(slash - rest.ptr)}, &sname)) {
                factum_error_t err;
                factum_str_t sn = {sname.ptr ? sname.ptr : "", sname.len};
                if (factum_stream_name_check(sn, &err))
                    server_problem(c, FACTUM_EBADSTREAM, err.message);
                else if (snap)
                    api_snapshot(c, sn, body);
                else
                    api_stream_metadata(c, sn, body);
            }
            buf_free(&sname);
            return;
        }
        buf_t name = {0};
        if (!path_stream(c, rest, &name)) {
            factum_str_t stream = {name.ptr, name.len};
            if (method_is(c, "POST"))
                append(c, stream, body);
            else if (get)
                read_stream(c, stream);
            else if (method_is(c, "DELETE"))
                api_delete_stream(c, stream);
            else
                api_not_allowed(c, "GET, HEAD, POST, DELETE");
        }
        buf_free(&name);
    } else if (path.len >= 7 && !memcmp(path.ptr, "/groups", 7) && (path.len == 7 || path.ptr[7] == '/')) {
        api_groups(c, (factum_str_t){path.ptr + 7, path.len - 7}, body);
    } else if (path.len >= 10 && !memcmp(path.ptr, "/schedules", 10)) {
        api_schedules(c, (factum_str_t){path.ptr + 10, path.len - 10}, body);
    } else if (path.len >= 6 && !memcmp(path.ptr, "/sagas", 6) && (path.len == 6 || path.ptr[6] == '/')) {
        api_sagas(c, (factum_str_t){path.ptr + 6, path.len - 6}, body);
    } else if (path.len >= 12 && !memcmp(path.ptr, "/projections", 12) && (path.len == 12 || path.ptr[12] == '/')) {
        api_projections(c, (factum_str_t){path.ptr + 12, path.len - 12}, body);
    } else if (path.len >= 6 && !memcmp(path.ptr, "/admin", 6) && (path.len == 6 || path.ptr[6] == '/')) {
        api_admin(c, (factum_str_t){path.ptr + 6, path.len - 6});
    } else if (str_eq(path, str_c("/all"))) {
        if (get)
            read_all(c);
        else
            api_not_allowed(c, "GET, HEAD");
    } else if (str_eq(path, str_c("/streams")) || str_eq(path, str_c("/categories"))) {
        if (!get)
            api_not_allowed(c, "GET, HEAD");
        else if (path.len == 8)
            api_list_streams(c);
        else
            api_list_categories(c);
    } else if (str_eq(path, str_c("/health"))) {
        if (get)
            health(c);
        else
            api_not_allowed(c, "GET, HEAD");
    } else if (str_eq(path, str_c("/metrics"))) {
        if (get)
            metrics(c);
        else
            api_not_allowed(c, "GET, HEAD");
    } else if (str_eq(path, str_c("/"))) {
        if (!get) {
            api_not_allowed(c, "GET, HEAD");
            return;
        }
        char b[256];
        int n = snprintf(b, sizeof b,
                         "{\"name\":\"factum\",\"version\":\"%s\",\"api\":[\"/streams/{stream}\",\"/all\","
                         "\"/streams\",\"/categories\",\"/health\",\"/metrics\"]}",
                         c->l->srv->cfg.version);
        conn_respond(c, 200, JSON, NULL, b, (size_t)n);
    } else {
        conn_problem(c, 404, "not-found", NULL, "no such resource: %.*s", (int)MIN(path.len, 300), path.ptr);
    }
}
