/*
 * api_dcb.c — the dcb.events compatibility routes under /dcb (docs/dcb.md, "Compatibility"):
 * the shapes the specification's test suite sends through its default HTTP adapter, mapped onto
 * Factum's tag queries and conditional appends. GET /dcb/read?query=JSON&options=JSON answers
 * a JSON array of {type, tags, data, position}; POST /dcb/append takes {events, condition} and
 * answers 200 {durationInMicroseconds, appendConditionFailed}. Their events go to the stream
 * DCB_STREAM. Runs on the loop that owns the connection, like every handler.
 */
#include "api.h"

#include "../base/json.h"

#include <stdio.h>
#include <stdlib.h>

#define DCB_STREAM "dcb"
#define DCB_DEFAULT_LIMIT 10000

static const char *const JSON = "application/json";

/* One event as the specification has it: {"type", "tags": [...], "data", "position"}. */
static void dcb_event(buf_t *b, const factum_event_t *e) {
    buf_append(b, "{\"type\":", 8);
    json_escape(b, e->type.ptr, e->type.len);
    buf_append(b, ",\"tags\":[", 9);
    factum_str_t all = factum_event_tags(e);
    for (size_t i = 0, n = 0; i < all.len; n++) {
        const char *sp = memchr(all.ptr + i, ' ', all.len - i);
        size_t end = sp ? (size_t)(sp - all.ptr) : all.len;
        if (n) buf_append(b, ",", 1);
        json_escape(b, all.ptr + i, end - i);
        i = end + 1;
    }
    buf_append(b, "],\"data\":", 9);
    if (e->data_format == FACTUM_DATA_JSON)
        buf_append(b, e->data.ptr, e->data.len);
    else
        buf_append(b, "null", 4);
    buf_printf(b, ",\"position\":%llu}", (unsigned long long)e->position);
}

/* ---- GET /dcb/read ---- */

void api_dcb_read(conn *c, const route_args *a, factum_str_t body) {
    (void)a, (void)body;
    factum_str_t qs = c->req->h.query, k, v;
    buf_t val = {0}, qtext = {0}, otext = {0};
    char why[320] = "";
    int more;
    while (!why[0] && (more = http_query_next(&qs, &k, &val))) {
        if (more < 0)
            snprintf(why, sizeof why, "query parameter '%.*s' has a bad percent-escape", (int)MIN(k.len, 64), k.ptr);
        else if (str_eq(k, str_c("query")) || str_eq(k, str_c("options")))
            buf_append(k.len == 5 ? &qtext : &otext, val.ptr ? val.ptr : "", val.len);
        else
            snprintf(why, sizeof why, "unknown query parameter '%.*s'", (int)MIN(k.len, 64), k.ptr);
    }
    buf_free(&val);
    uint64_t from = 0, limit = DCB_DEFAULT_LIMIT;
    bool backwards = false, all = false;
    int kind;
    factum_str_t opts = {otext.ptr ? otext.ptr : "", otext.len};
    static const char *const known[] = {"from", "backwards", "limit", NULL};
    factum_error_t err;
    if (!why[0] && opts.len) {
        if (!json_valid(opts.ptr, opts.len, &kind) || kind != JSON_OBJECT)
            snprintf(why, sizeof why, "options must be a JSON object {\"from\", \"backwards\", \"limit\"}");
        else if (json_only_members(opts, "the options", known, &err))
            snprintf(why, sizeof why, "%s", err.message);
        else if (json_member(opts, "from", &v, &kind) && kind != JSON_NULL && !json_member_u64(opts, "from", &from))
            snprintf(why, sizeof why, "options.from must be a position");
        else if (json_member(opts, "limit", &v, &kind) && kind != JSON_NULL &&
                 (!json_member_u64(opts, "limit", &limit) || limit < 1 || limit > DCB_DEFAULT_LIMIT))
            snprintf(why, sizeof why, "options.limit must be 1 to %d", DCB_DEFAULT_LIMIT);
        else if (json_member(opts, "backwards", &v, &kind) && kind != JSON_NULL)
            backwards = kind == JSON_TRUE;
        if (!why[0] && backwards && !(json_member(opts, "from", &v, &kind) && kind != JSON_NULL)) from = FACTUM_END;
    }
    factum_tag_query_t *q = NULL;
    factum_str_t qt = {qtext.ptr ? qtext.ptr : "", qtext.len}, items;
    /* The specification's "all events" is a query without items (served from the log). */
    all = !qt.len ||
          (json_valid(qt.ptr, qt.len, &kind) && kind == JSON_OBJECT && json_member(qt, "items", &items, &kind) &&
           kind == JSON_ARRAY && json_valid(items.ptr, items.len, NULL) && items.len >= 2 &&
           strspn(items.ptr + 1, " \t\r\n") == items.len - 2);
    if (!why[0] && !all) api_query_parse(qt, &q, why, sizeof why);
    buf_free(&qtext);
    buf_free(&otext);
    if (why[0]) {
        conn_problem(c, 400, "bad-query", NULL, "%s", why);
        factum_tag_query_free(q);
        return;
    }
    factum_result_t *res;
    uint64_t head = factum_head_position(c->l->srv->db);
    int rc;
    if (all) {
        factum_query_t aq = {.from = from, .limit = (size_t)limit, .backward = backwards};
        rc = factum_read_all(c->l->srv->db, &aq, &res, &err);
    } else {
        rc = factum_read_tagged(c->l->srv->db, q, from, (size_t)limit, backwards, &head, &res, &err);
    }
    factum_tag_query_free(q);
    if (rc) {
        server_problem(c, rc, err.message);
        return;
    }
    buf_t b = {0};
    buf_append(&b, "[", 1);
    for (size_t i = 0; i < factum_result_count(res); i++) {
        if (i) buf_append(&b, ",", 1);
        dcb_event(&b, factum_result_event(res, i));
    }
    buf_append(&b, "]", 1);
    char hdr[64];
    snprintf(hdr, sizeof hdr, "Factum-Head: %llu\r\n", (unsigned long long)head);
    conn_respond(c, 200, JSON, hdr, b.ptr, b.len);
    buf_free(&b);
    factum_result_free(res);
}

/* ---- POST /dcb/append ---- */

typedef struct dcb_job {
    factum_append_result_t res[1];
} dcb_job;

static void dcb_appended(conn *c) {
    free(c->job);
    c->job = NULL, c->job_free = NULL, c->ar_results = NULL;
    uint64_t us = (clock_mono_ns() - c->req->started_ns) / 1000;
    loop_observe_latency(c->l, us * 1000);
    if (c->ar_rc && c->ar_rc != FACTUM_ECONDITION) {
        server_written(c);
        return;
    }
    char body[128];
    int n = snprintf(body, sizeof body, "{\"durationInMicroseconds\":%llu,\"appendConditionFailed\":%s}",
                     (unsigned long long)us, c->ar_rc ? "true" : "false");
    conn_respond(c, 200, JSON, NULL, body, (size_t)n);
}

/* One event of the specification into ev, its tags into ext (reserved: spans stay put). */
static int dcb_take_event(factum_str_t obj, size_t i, factum_event_t *ev, buf_t *ext, char *why, size_t cap) {
    static const char *const known[] = {"type", "tags", "data", NULL};
    factum_error_t err;
    factum_str_t v, t;
    int kind;
    memset(ev, 0, sizeof *ev);
    if (json_only_members(obj, "an event", known, &err)) return snprintf(why, cap, "event %zu: %s", i, err.message), -1;
    if (!json_member(obj, "type", &v, &kind) || kind != JSON_STRING || memchr(v.ptr, '\\', v.len))
        return snprintf(why, cap, "event %zu: 'type' must be a string", i), -1;
    ev->type = (factum_str_t){v.ptr + 1, v.len - 2};
    if (json_member(obj, "data", &v, &kind) && kind != JSON_NULL) ev->data = v, ev->data_format = FACTUM_DATA_JSON;
    if (json_member(obj, "tags", &v, &kind)) {
        if (kind != JSON_ARRAY) return snprintf(why, cap, "event %zu: 'tags' must be an array of strings", i), -1;
        size_t at = ext->len;
        buf_append(ext, "\"tags\":\"", 8);
        json_iter_t it;
        json_iter_init(&it, v);
        for (size_t n = 0; json_iter_element(&it, &t, &kind) == 1; n++) {
            if (kind != JSON_STRING || memchr(t.ptr, '\\', t.len) || memchr(t.ptr, ' ', t.len))
                return snprintf(why, cap, "event %zu: each tag must be a string without spaces, '\"' or '\\'", i), -1;
            if (n) buf_append(ext, " ", 1);
            buf_append(ext, t.ptr + 1, t.len - 2);
        }
        buf_append(ext, "\"", 1);
        ev->extensions = (factum_str_t){ext->ptr + at, ext->len - at};
    }
    return 0;
}

void api_dcb_append(conn *c, const route_args *a, factum_str_t body) {
    (void)a;
    static const char *const known[] = {"events", "condition", NULL};
    factum_error_t err;
    factum_str_t v, el;
    int kind;
    char why[320] = "";
    factum_tag_query_t *q = NULL;
    uint64_t after = FACTUM_AFTER_NONE;
    factum_event_t ev[64];
    size_t n = 0;
    buf_t ext = {0};
    if (!json_valid(body.ptr, body.len, &kind) || kind != JSON_OBJECT)
        snprintf(why, sizeof why, "the body is a JSON object {\"events\", \"condition\"}");
    else if (json_only_members(body, "the append", known, &err))
        snprintf(why, sizeof why, "%s", err.message);
    else if (json_member(body, "condition", &v, &kind) && kind != JSON_NULL &&
             (kind != JSON_OBJECT || api_condition_parse(v, &q, &after, why, sizeof why)) && !why[0])
        snprintf(why, sizeof why, "the condition must be an object {\"failIfEventsMatch\", \"after\"}");
    else if (!json_member(body, "events", &v, &kind) || (kind != JSON_ARRAY && kind != JSON_OBJECT))
        snprintf(why, sizeof why, "the append needs 'events', an event or an array of them");
    else if (buf_reserve(&ext, body.len + 16))
        snprintf(why, sizeof why, "out of memory");
    else if (kind == JSON_OBJECT)
        n = dcb_take_event(v, 0, &ev[0], &ext, why, sizeof why) ? 0 : 1;
    else {
        json_iter_t it;
        json_iter_init(&it, v);
        while (!why[0] && json_iter_element(&it, &el, &kind) == 1) {
            if (n == ARRAY_LEN(ev))
                snprintf(why, sizeof why, "an append through /dcb holds at most %zu events", ARRAY_LEN(ev));
            else if (kind != JSON_OBJECT)
                snprintf(why, sizeof why, "event %zu must be an object", n);
            else if (!dcb_take_event(el, n, &ev[n], &ext, why, sizeof why))
                n++;
        }
        if (!why[0] && !n) snprintf(why, sizeof why, "an append needs at least one event");
    }
    dcb_job *j = why[0] ? NULL : malloc(sizeof *j);
    if (why[0]) {
        conn_problem(c, 400, "bad-request", NULL, "%s", why);
    } else if (!j) {
        conn_problem(c, 500, "internal", NULL, "out of memory");
    } else if (guard_rate(c, n, body.len)) {
        factum_stream_append_t part = {str_c(DCB_STREAM), FACTUM_EXPECT_ANY, ev, n, {0}};
        factum_condition_t cond = {q ? *q : (factum_tag_query_t){0}, after};
        c->job = j, c->job_free = free;
        int rc = server_submit_append_streams(c, &part, 1, q ? &cond : NULL, j->res, dcb_appended, &err);
        if (rc) {
            c->job = NULL, c->job_free = NULL, c->ar_results = NULL;
            free(j);
            server_problem(c, rc, err.message);
        }
        j = NULL;
    }
    free(j);
    buf_free(&ext);
    factum_tag_query_free(q);
}
