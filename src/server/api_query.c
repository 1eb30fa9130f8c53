/*
 * api_query.c — dynamic consistency boundaries over HTTP (docs/dcb.md): GET /events reads the
 * events a tag query selects (through the engine's tag index, factum_read_tagged), POST /events
 * appends with a condition that the writer checks at commit time (factum_append_if_async).
 * With Accept: text/event-stream GET /events is a subscription to the query (sse.c: catch-up,
 * then live, resumed after Last-Event-ID). A query is JSON, {"items":[{"types":[...],"tags":[...]}]}, given as the
 * `query` parameter of a read and as `failIfEventsMatch` of a condition; factum_tag_query_parse is its one parser. Runs
 * on the loop that owns the connection, like every handler.
 */
#include "api.h"

#include "../base/json.h"

#include <stdio.h>
#include <stdlib.h>

static const char *const JSON = "application/json";

#define QUERY_DEFAULT_LIMIT 100
#define QUERY_MAX_LIMIT 10000

/* ---- the query ---- */

int api_query_parse(factum_str_t json, factum_tag_query_t **q, char *why, size_t cap) {
    factum_error_t err = {0};
    if (!factum_tag_query_parse(json.ptr, json.len, q, &err)) return 0;
    snprintf(why, cap, "%s", err.message[0] ? err.message : "the query is not valid");
    return -1;
}

/* ---- GET /events ---- */

void api_read_query(conn *c, const route_args *a, factum_str_t body) {
    (void)a, (void)body;
    loop *l = c->l;
    factum_str_t qs = c->req->h.query, k;
    buf_t v = {0}, qtext = {0};
    uint64_t from = 0, limit = QUERY_DEFAULT_LIMIT;
    bool backward = false, has_from = false;
    int more;
    char why[320] = "";
    while (!why[0] && (more = http_query_next(&qs, &k, &v))) {
        factum_str_t val = {v.ptr ? v.ptr : "", v.len};
        if (more < 0)
            snprintf(why, sizeof why, "query parameter '%.*s' has a bad percent-escape", (int)MIN(k.len, 64), k.ptr);
        else if (str_eq(k, str_c("query")))
            qtext.len = 0, buf_append(&qtext, val.ptr, val.len);
        else if (str_eq(k, str_c("from"))) {
            has_from = true;
            if (str_eq(val, str_c("end")))
                from = FACTUM_END;
            else if (!str_u64(val, &from) || from == FACTUM_END)
                snprintf(why, sizeof why, "from must be a position or end");
        } else if (str_eq(k, str_c("limit"))) {
            if (!str_u64(val, &limit) || limit < 1 || limit > QUERY_MAX_LIMIT)
                snprintf(why, sizeof why, "limit must be 1 to %d", QUERY_MAX_LIMIT);
        } else if (str_eq(k, str_c("direction"))) {
            if (str_eq(val, str_c("backward")))
                backward = true;
            else if (!str_eq(val, str_c("forward")))
                snprintf(why, sizeof why, "direction must be forward or backward");
        } else
            snprintf(why, sizeof why, "unknown query parameter '%.*s'", (int)MIN(k.len, 64), k.ptr);
    }
    buf_free(&v);
    if (!why[0] && !qtext.len) snprintf(why, sizeof why, "give the query: ?query={\"items\":[...]} (URL-encoded)");
    factum_tag_query_t *q = NULL;
    if (!why[0]) api_query_parse((factum_str_t){qtext.ptr, qtext.len}, &q, why, sizeof why);
    buf_free(&qtext);
    if (why[0]) {
        conn_problem(c, 400, "bad-query", NULL, "%s", why);
        factum_tag_query_free(q);
        return;
    }
    if (backward && !has_from) from = FACTUM_END;
    factum_str_t accept = http_header_get(&c->req->h, "accept"), last = http_header_get(&c->req->h, "last-event-id");
    if (accept.len && memmem(accept.ptr, accept.len, "text/event-stream", 17) &&
        !http_token_is(c->req->h.method, "head")) {
        /* A subscription: catch up from `from` (after Last-Event-ID, a position), then live. */
        uint64_t id;
        if (last.ptr && (!str_u64(last, &id) || id == UINT64_MAX)) {
            conn_problem(c, 400, "bad-request", NULL, "Last-Event-ID must be a position");
            factum_tag_query_free(q);
        } else if (backward) {
            conn_problem(c, 400, "bad-request", NULL, "a subscription goes forward");
            factum_tag_query_free(q);
        } else {
            sse_start_query(c, q, last.ptr ? id + 1 : from); /* takes q */
        }
        return;
    }
    factum_result_t *res;
    factum_error_t err;
    uint64_t head;
    int rc = factum_read_tagged(l->srv->db, q, from, (size_t)limit, backward, &head, &res, &err);
    if (rc) {
        server_problem(c, rc, err.message);
        factum_tag_query_free(q);
        return;
    }
    size_t n = render_events(l, res, UINT64_MAX);
    uint64_t next = n < factum_result_count(res) ? factum_result_event(res, n)->position : factum_result_next(res);
    bool more_left = n < factum_result_count(res) || (factum_result_count(res) == limit && next != FACTUM_END);
    buf_t hdr = {0};
    buf_printf(&hdr, "Factum-Head: %llu\r\n", (unsigned long long)head);
    if (more_left) {
        buf_printf(&hdr, "Link: </events?from=%llu&limit=%llu&direction=%s&query=", (unsigned long long)next,
                   (unsigned long long)limit, backward ? "backward" : "forward");
        qs = c->req->h.query; /* the query's text again, encoded as it came */
        const char *at = memmem(qs.ptr, qs.len, "query=", 6);
        while (at && at != qs.ptr && at[-1] != '&')
            at = memmem(at + 1, (size_t)(qs.ptr + qs.len - at - 1), "query=", 6);
        if (at) {
            const char *end = memchr(at, '&', (size_t)(qs.ptr + qs.len - at));
            buf_append(&hdr, at + 6, (size_t)((end ? end : qs.ptr + qs.len) - at - 6));
        }
        buf_printf(&hdr, ">; rel=\"next\"\r\n");
    }
    conn_respond(c, 200, JSON, hdr.ptr, l->scratch.ptr, l->scratch.len);
    buf_free(&hdr);
    factum_result_free(res);
    factum_tag_query_free(q);
}

/* ---- POST /events ---- */

/* The expected revision as a body gives it: a number, "any", "no_stream" or "exists". */
static bool expected_of(factum_str_t v, int kind, int64_t *out) {
    uint64_t n;
    if (kind == JSON_NUMBER && str_u64(v, &n) && n <= INT64_MAX) return *out = (int64_t)n, true;
    if (kind != JSON_STRING) return false;
    if (str_eq(v, str_c("\"any\""))) return *out = FACTUM_EXPECT_ANY, true;
    if (str_eq(v, str_c("\"no_stream\""))) return *out = FACTUM_EXPECT_NO_STREAM, true;
    if (str_eq(v, str_c("\"exists\""))) return *out = FACTUM_EXPECT_EXISTS, true;
    return false;
}

int api_condition_parse(factum_str_t cond, factum_tag_query_t **q, uint64_t *after, char *why, size_t cap) {
    static const char *const allowed[] = {"failIfEventsMatch", "after", NULL};
    factum_error_t err;
    factum_str_t v;
    int kind;
    *q = NULL, *after = FACTUM_AFTER_NONE;
    if (json_only_members(cond, "the condition", allowed, &err)) return snprintf(why, cap, "%s", err.message), -1;
    if (json_member(cond, "after", &v, &kind) && kind != JSON_NULL &&
        !(kind == JSON_NUMBER && str_u64(v, after) && *after != FACTUM_AFTER_NONE))
        return snprintf(why, cap, "the condition's 'after' must be a position"), -1;
    if (!json_member(cond, "failIfEventsMatch", &v, &kind))
        return snprintf(why, cap, "the condition needs 'failIfEventsMatch', a query"), -1;
    return api_query_parse(v, q, why, cap);
}

/* What a multi-stream append keeps for its answer: each stream's name and result. */
typedef struct streams_job {
    size_t n;
    factum_str_t names[FACTUM_MAX_STREAMS]; /* into bytes */
    factum_append_result_t res[FACTUM_MAX_STREAMS];
    char bytes[];
} streams_job;

static void appended(conn *c) {
    loop_observe_latency(c->l, clock_mono_ns() - c->req->started_ns);
    streams_job *j = c->job;
    c->job = NULL, c->job_free = NULL, c->ar_results = NULL;
    const factum_append_result_t *r = &c->ar_res;
    if (c->ar_rc == FACTUM_ECONDITION) {
        char members[64];
        snprintf(members, sizeof members, "\"position\":%llu", (unsigned long long)r->conflict_position);
        conn_problem(c, 409, "condition-failed", members, "%s", c->ar_msg);
    } else if (c->ar_rc == FACTUM_EREVISION) {
        conn_problem(c, 412, "wrong-expected-revision", NULL, "%s", c->ar_msg);
    } else if (server_written(c)) {
        buf_t body = {0};
        bool idem = j->res[0].idempotent;
        buf_printf(&body, "{\"first_position\":%llu,\"position\":%llu%s,\"streams\":[",
                   (unsigned long long)j->res[0].first_position, (unsigned long long)j->res[j->n - 1].last_position,
                   idem ? ",\"idempotent\":true" : "");
        for (size_t i = 0; i < j->n; i++) {
            buf_append(&body, i ? ",{\"stream\":" : "{\"stream\":", i ? 11 : 10);
            json_escape(&body, j->names[i].ptr, j->names[i].len);
            buf_printf(&body, ",\"first_revision\":%llu,\"revision\":%llu,\"first_position\":%llu,\"position\":%llu}",
                       (unsigned long long)j->res[i].first_revision, (unsigned long long)j->res[i].last_revision,
                       (unsigned long long)j->res[i].first_position, (unsigned long long)j->res[i].last_position);
        }
        buf_append(&body, "]}", 2);
        conn_respond(c, idem ? 200 : 201, JSON, NULL, body.ptr, body.len);
        buf_free(&body);
    }
    free(j);
}

/* expected_revision: one value (for a single stream), or an object of values by stream, each a
   stream of the append. */
static int expected_apply(factum_str_t spec, int kind, factum_stream_append_t *parts, size_t np, char *why,
                          size_t cap) {
    if (!spec.ptr) return 0;
    if (kind != JSON_OBJECT) {
        if (np > 1) return snprintf(why, cap, "with several streams, expected_revision is an object by stream"), -1;
        if (!expected_of(spec, kind, &parts[0].expected))
            return snprintf(why, cap,
                            "expected_revision must be a revision, \"any\", \"no_stream\", \"exists\" or an "
                            "object of those by stream"),
                   -1;
        return 0;
    }
    json_iter_t it;
    factum_str_t key, val;
    int k, r;
    json_iter_init(&it, spec);
    while ((r = json_iter_member(&it, &key, &val, &k)) == 1) {
        buf_t name = {0};
        json_unescape(key, &name);
        factum_str_t n = {name.ptr ? name.ptr : "", name.len};
        size_t p = 0;
        while (p < np && !str_eq(parts[p].stream, n))
            p++;
        bool ok = p < np && expected_of(val, k, &parts[p].expected);
        if (!ok)
            snprintf(why, cap,
                     p < np ? "expected_revision of '%.*s' must be a revision, \"any\", \"no_stream\" or \"exists\""
                            : "expected_revision names '%.*s', a stream the append does not write",
                     (int)MIN(n.len, 80), n.ptr);
        buf_free(&name);
        if (!ok) return -1;
    }
    return r < 0 ? (snprintf(why, cap, "expected_revision is malformed"), -1) : 0;
}

/* Splits the events into one part per stream, each stream's events adjacent. */
static int split_parts(factum_events_t *set, factum_str_t exp, int exp_kind, factum_stream_append_t *parts, size_t *np,
                       char *why, size_t cap) {
    size_t n = factum_events_count(set), k = 0;
    for (size_t i = 0; i < n; i++) {
        factum_event_t *e = factum_events_get(set, i);
        if (!e->stream.len) return snprintf(why, cap, "event %zu: give its 'stream'", i), -1;
        if (e->stream.ptr[0] == '$')
            return snprintf(why, cap, "event %zu: streams whose names start with '$' are written by the server only",
                            i),
                   -1;
        if (k && str_eq(parts[k - 1].stream, e->stream)) {
            parts[k - 1].n++;
            continue;
        }
        for (size_t p = 0; p < k; p++)
            if (str_eq(parts[p].stream, e->stream))
                return snprintf(why, cap, "event %zu: the events of one stream must be next to each other", i), -1;
        if (k == FACTUM_MAX_STREAMS)
            return snprintf(why, cap, "an append goes to at most %d streams", FACTUM_MAX_STREAMS), -1;
        parts[k++] = (factum_stream_append_t){.stream = e->stream, .expected = FACTUM_EXPECT_ANY, .events = e, .n = 1};
    }
    *np = k;
    return expected_apply(exp, exp_kind, parts, k, why, cap);
}

/* {"events":[CloudEvents, each with "stream"], "expected_revision"?, "condition"?} */
void api_append_query(conn *c, const route_args *a, factum_str_t body) {
    (void)a;
    static const char *const allowed[] = {"events", "expected_revision", "condition", NULL};
    factum_error_t err;
    factum_str_t v, exp = {0};
    int kind, exp_kind = 0;
    char why[320] = "";
    factum_tag_query_t *q = NULL;
    uint64_t after = FACTUM_AFTER_NONE;
    factum_events_t *set = NULL;
    if (!json_valid(body.ptr, body.len, &kind) || kind != JSON_OBJECT)
        snprintf(why, sizeof why, "the body is a JSON object {\"events\":[...], \"condition\":{...}}");
    else if (json_only_members(body, "the append", allowed, &err))
        snprintf(why, sizeof why, "%s", err.message);
    else if (json_member(body, "condition", &v, &kind) &&
             (kind != JSON_OBJECT || api_condition_parse(v, &q, &after, why, sizeof why)) && !why[0])
        snprintf(why, sizeof why, "the condition must be an object {\"failIfEventsMatch\", \"after\"}");
    else if (!json_member(body, "events", &v, &kind) || kind != JSON_ARRAY)
        snprintf(why, sizeof why, "the append needs 'events', an array of events");
    if (why[0]) {
        conn_problem(c, 400, "bad-request", NULL, "%s", why);
        factum_tag_query_free(q);
        return;
    }
    if (!json_member(body, "expected_revision", &exp, &exp_kind)) exp = (factum_str_t){0};
    int rc = factum_events_parse(v.ptr, v.len, 1, &set, &err);
    if (rc) {
        server_problem(c, rc, err.message);
        factum_tag_query_free(q);
        return;
    }
    factum_stream_append_t parts[FACTUM_MAX_STREAMS];
    size_t np = 0, names = 0;
    if (split_parts(set, exp, exp_kind, parts, &np, why, sizeof why)) {
        conn_problem(c, 400, "bad-request", NULL, "%s", why);
    } else if (guard_rate(c, factum_events_count(set), body.len)) {
        for (size_t i = 0; i < np; i++)
            names += parts[i].stream.len;
        streams_job *j = malloc(sizeof *j + names);
        if (!j) {
            conn_problem(c, 500, "internal", NULL, "out of memory");
        } else {
            j->n = np;
            for (size_t i = 0, at = 0; i < np; i++) {
                memcpy(j->bytes + at, parts[i].stream.ptr, parts[i].stream.len);
                j->names[i] = (factum_str_t){j->bytes + at, parts[i].stream.len};
                at += parts[i].stream.len;
            }
            c->job = j, c->job_free = free;
            factum_condition_t cond = {q ? *q : (factum_tag_query_t){0}, after};
            rc = server_submit_append_streams(c, parts, np, q ? &cond : NULL, j->res, appended, &err);
            if (rc) {
                c->job = NULL, c->job_free = NULL, c->ar_results = NULL;
                free(j);
                server_problem(c, rc, err.message);
            }
        }
    }
    factum_events_free(set);
    factum_tag_query_free(q);
}
