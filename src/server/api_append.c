/*
 * api_append.c — appends over HTTP, POST /streams/{stream}: structured CloudEvents, batches and
 * binary mode (ce-* headers), the expected revision of If-Match / If-None-Match, and the answer
 * once the writer called back (append_done; server_written for every write's done function).
 * Runs on the loop thread that owns the connection; once the events are parsed, the key's rate
 * limits take them (guard_rate) or refuse the request whole; the append goes to the writer
 * asynchronously and comes back through the done function given with it.
 */
#include "api.h"

#include "../base/json.h"
#include "../base/trace.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>

static const char *const JSON = "application/json";

static void append_done(conn *c);

static factum_str_t buf_str(const buf_t *b) { return (factum_str_t){b->ptr ? b->ptr : "", b->len}; }

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

int api_trace_header(conn *c, trace_ctx *t) {
    const http_req *h = &c->req->h;
    factum_str_t tp = http_header_get(h, "traceparent"), ts = http_header_get(h, "tracestate");
    if (!tp.ptr) return 0; /* a tracestate alone means nothing (W3C Trace Context, 3.3) */
    const char *why = trace_parent_check(tp);
    if (!why && ts.ptr) why = trace_state_check(ts);
    if (why) {
        conn_problem(c, 400, "bad-request", NULL, "the trace context headers: %s", why);
        return -1;
    }
    snprintf(t->parent, sizeof t->parent, "%.*s", (int)tp.len, tp.ptr);
    snprintf(t->state, sizeof t->state, "%.*s", (int)ts.len, ts.ptr ? ts.ptr : "");
    return 1;
}

/*
 * The request's trace context headers go to each of its n events that has no trace context of
 * its own; an event's own attribute wins (docs/events.md, "Trace context"). Their new extension
 * members go to store, which outlives the submission. -1: answered (a malformed header).
 */
static int trace_header(conn *c, factum_event_t *ev, size_t n, buf_t *store) {
    trace_ctx t;
    int got = api_trace_header(c, &t);
    if (got <= 0) return got;
    buf_t members = {0};
    trace_members(&t, &members);
    size_t total = 0; /* reserved up front, so the spans given to the events never move */
    for (size_t i = 0; i < n; i++)
        if (!trace_named(ev[i].extensions)) total += ev[i].extensions.len + 1 + members.len;
    if (buf_reserve(store, total)) {
        buf_free(&members);
        conn_problem(c, 500, "internal", NULL, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if (trace_named(ev[i].extensions)) continue;
        size_t at = store->len;
        buf_append(store, ev[i].extensions.ptr, ev[i].extensions.len);
        if (ev[i].extensions.len) buf_append(store, ",", 1);
        buf_append(store, members.ptr, members.len);
        ev[i].extensions = (factum_str_t){store->ptr + at, store->len - at};
    }
    buf_free(&members);
    return 0;
}

/* POST /streams/{stream} */
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
        buf_t vals = {0}, ext = {0}, trace = {0};
        if (!binary_event(c, body, &e, &vals, &ext) && !trace_header(c, &e, 1, &trace) && guard_rate(c, 1, body.len)) {
            rc = server_submit_append(c, stream, expected, &e, 1, append_done, &err);
            if (rc) server_problem(c, rc, err.message);
        }
        buf_free(&vals);
        buf_free(&ext);
        buf_free(&trace);
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
    size_t n = factum_events_count(set);
    buf_t trace = {0};
    if (!trace_header(c, factum_events_get(set, 0), n, &trace) &&
        guard_rate(c, n, body.len)) { /* the batch is refused whole, before the writer sees it */
        rc = server_submit_append(c, stream, expected, factum_events_get(set, 0), n, append_done, &err);
        if (rc) server_problem(c, rc, err.message);
    }
    buf_free(&trace);
    factum_events_free(set);
}

void api_append(conn *c, const route_args *a, factum_str_t body) { api_on_stream(c, a, false, body, append); }

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

static void append_done(conn *c) {
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
