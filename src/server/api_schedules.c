/*
 * api_schedules.c — the /schedules API over the durable timers of timers.c:
 *   POST /schedules {"at" | "delay_ms", "stream", "event"}  -> 201 {"id", "at"}
 *   GET /schedules?state=S&after=ID&limit=N    -> [schedule, ...] in id order, Link to the next page
 *   GET /schedules/{id}                        -> {"id", "at", "stream", "state", "event", ...}
 *   DELETE /schedules/{id}                     -> 200 {"id", "state": "cancelled"}
 * Writes go to $schedules through the loop's asynchronous append; the timer table learns of
 * them only once they are durable. A new schedule holds a place under --max-schedules (pending
 * ones, limits.c), and under its key's max_schedules, from its check until then; its record
 * names that key as its owner.
 */
#include "api.h"

#include "../base/json.h"
#include "../timer/timers.h"

#include <stdio.h>
#include <stdlib.h>

#define LIST_DEFAULT 100
#define LIST_MAX 1000
#define LIST_MAX_BYTES (16u << 20) /* a page stops at about this many bytes (events may be large) */

static void registered(conn *c) {
    factum_error_t err;
    if (timers_add(c->l->srv->timers, c->ar_note, c->ar_res.last_position, &err)) {
        conn_problem(c, 500, "internal", NULL,
                     "schedule '%s' is durable but not registered (it will be at the next start): %s", c->ar_note,
                     err.message);
        return;
    }
    char at[32], body[160];
    time_format_rfc3339(c->ar_at, at);
    int n = snprintf(body, sizeof body, "{\"id\":\"%s\",\"at\":\"%s\",\"state\":\"pending\"}", c->ar_note, at);
    char hdr[96];
    snprintf(hdr, sizeof hdr, "Location: /schedules/%s\r\n", c->ar_note);
    conn_respond(c, 201, "application/json", hdr, body, (size_t)n);
}

/* Registers the timer, and gives back its place under --max-schedules (held from the check):
   it is a pending timer now, or not one. */
static void scheduled_done(conn *c) {
    limit_hold *hold = c->job;
    c->job = NULL;
    if (server_written(c)) registered(c);
    limits_release(hold);
}

static void schedule(conn *c, factum_str_t body) {
    factum_t *db = c->l->srv->db;
    factum_str_t v, stream_raw, event;
    int kind;
    buf_t stream = {0}, at_text = {0}, traced_event = {0};
    int64_t at;
    factum_events_t *set = NULL;
    factum_error_t err;
    if (!json_valid(body.ptr, body.len, &kind) || kind != JSON_OBJECT) {
        conn_problem(c, 400, "bad-request", NULL, "the body must be a JSON object {\"at\", \"stream\", \"event\"}");
        return;
    }
    static const char *const members[] = {"at", "delay_ms", "stream", "event", NULL};
    if (json_only_members(body, "a schedule", members, &err)) {
        conn_problem(c, 400, "bad-request", NULL, "%s", err.message);
        return;
    }
    /* "delay_ms" instead of "at": due after that long on the monotonic clock (docs/timers.md). */
    uint64_t delay_ms = 0;
    bool relative = json_member(body, "delay_ms", &v, &kind);
    if (relative) {
        if (kind != JSON_NUMBER || !str_u64(v, &delay_ms) || delay_ms > TIMERS_MAX_DELAY_MS ||
            json_member(body, "at", &v, &kind)) {
            conn_problem(c, 400, "bad-request", NULL, "'delay_ms' must be 0 to %llu, and comes instead of 'at'",
                         TIMERS_MAX_DELAY_MS);
            goto out;
        }
        at = clock_realtime_us() + (int64_t)delay_ms * 1000;
    } else if (!json_member(body, "at", &v, &kind) || kind != JSON_STRING || json_unescape(v, &at_text) ||
               time_parse((factum_str_t){at_text.ptr, at_text.len}, &at)) {
        conn_problem(c, 400, "bad-request", NULL,
                     "'at' must be an RFC 3339 time (or 'delay_ms' a number of milliseconds)");
        goto out;
    }
    if (!json_member(body, "stream", &stream_raw, &kind) || kind != JSON_STRING || json_unescape(stream_raw, &stream)) {
        conn_problem(c, 400, "bad-stream", NULL, "'stream' must be a stream name");
        goto out;
    }
    factum_str_t sname = {stream.ptr ? stream.ptr : "", stream.len};
    int rc = factum_stream_name_check(sname, &err);
    if (!rc && sname.ptr[0] == '$')
        rc = err_set(&err, FACTUM_EBADSTREAM, "timers append to user streams, not '$' ones");
    if (rc) {
        conn_problem(c, 400, "bad-stream", NULL, "%s", err.message);
        goto out;
    }
    if (!json_member(body, "event", &event, &kind) || kind != JSON_OBJECT) {
        conn_problem(c, 400, "bad-event", NULL, "'event' must be a CloudEvent object");
        goto out;
    }
    /* W3C Trace Context over HTTP: the request's trace context goes into an event without one, so
       the event fires in the trace of the request that scheduled it (docs/timers.md). */
    trace_ctx trace;
    int traced = api_trace_header(c, &trace);
    if (traced < 0) goto out;
    if (traced && !trace_named((factum_str_t){event.ptr + 1, event.len - 2})) {
        size_t i = 1;
        while (strchr(" \t\r\n", event.ptr[i]))
            i++;
        buf_append(&traced_event, "{", 1);
        trace_members(&trace, &traced_event);
        if (event.ptr[i] != '}') buf_append(&traced_event, ",", 1);
        buf_append(&traced_event, event.ptr + 1, event.len - 1);
        event = (factum_str_t){traced_event.ptr, traced_event.len};
    }
    if ((rc = factum_events_parse(event.ptr, event.len, 0, &set, &err)) ||
        (rc = factum_events_check(db, factum_events_get(set, 0), 1, &err))) {
        server_problem(c, rc, err.message);
        goto out;
    }
    /* The Scheduled record: the event exactly as given, to be parsed again when it fires. */
    char id[37], at_norm[32];
    uuid7_make(id);
    time_format_rfc3339(at, at_norm);
    buf_t data = {0};
    buf_printf(&data, "{\"id\":\"%s\",\"at\":\"%s\",", id, at_norm);
    if (relative) buf_printf(&data, "\"delay_ms\":%llu,", (unsigned long long)delay_ms);
    buf_printf(&data, "\"stream\":");
    json_escape(&data, sname.ptr, sname.len);
    buf_printf(&data, ",\"event\":");
    buf_append(&data, event.ptr, event.len);
    owners_member(&data, c->req_key); /* the key's pending schedules count against its max_schedules */
    buf_append(&data, "}", 1);
    factum_event_t rec = {
        .type = str_c("Scheduled"), .id = str_c(id), .data = {data.ptr, data.len}, .data_format = FACTUM_DATA_JSON};
    snprintf(c->ar_note, sizeof c->ar_note, "%s", id);
    c->ar_at = at;
    limit_hold *hold = limits_hold(c, LIMIT_SCHEDULES); /* NULL: answered, past --max-schedules */
    if (hold) {
        c->job = hold, c->job_free = limits_release_job; /* given back if the connection goes first */
        if ((rc = server_submit_append(c, str_c(TIMERS_STREAM), FACTUM_EXPECT_ANY, &rec, 1, scheduled_done, &err))) {
            c->job = NULL;
            limits_release(hold);
            server_problem(c, rc, err.message);
        }
    }
    buf_free(&data);
out:
    factum_events_free(set);
    buf_free(&stream);
    buf_free(&at_text);
    buf_free(&traced_event);
}

int schedule_json(factum_t *db, const timer_info *ti, buf_t *out, factum_error_t *err) {
    factum_result_t *r;
    int rc = timers_record(db, ti, &r, err);
    if (rc) return rc;
    if (r) {
        /* The record's data is {"id","at",["delay_ms",]"stream","event"}: the state goes after it. */
        factum_str_t d = factum_result_event(r, 0)->data;
        buf_append(out, d.ptr, d.len - 1);
    } else {
        buf_printf(out, "{\"id\":\"%s\"", ti->id); /* ended before its record was met again */
    }
    buf_printf(out, ",\"state\":\"%s\"", timers_state_names[ti->state]);
    if (ti->state == TIMER_FIRED) buf_printf(out, ",\"position\":%llu", (unsigned long long)ti->fired_pos);
    if (ti->state == TIMER_FAILED) buf_printf(out, ",\"error\":"), json_escape(out, ti->error, strlen(ti->error));
    buf_append(out, "}", 1);
    factum_result_free(r);
    return 0;
}

/* Appends the JSON of timer ti to out. A compaction may have moved its record since it was looked
   up: then it is looked up again. FACTUM_ENOTFOUND if it is gone (ended, and forgotten). */
static int render(conn *c, timer_info *ti, buf_t *out, factum_error_t *err) {
    int rc = FACTUM_ENOTFOUND;
    for (int tries = 0; tries < 3 && rc == FACTUM_ENOTFOUND; tries++) {
        size_t len = out->len;
        if (tries && timers_lookup(c->l->srv->timers, ti->id, ti)) break;
        if ((rc = schedule_json(c->l->srv->db, ti, out, err))) out->len = len;
    }
    return rc;
}

static void show(conn *c, const char *id) {
    timer_info ti;
    buf_t b = {0};
    factum_error_t err;
    int rc = timers_lookup(c->l->srv->timers, id, &ti) ? FACTUM_ENOTFOUND : render(c, &ti, &b, &err);
    if (rc == FACTUM_ENOTFOUND)
        conn_problem(c, 404, "not-found", NULL, "no schedule '%s'", id);
    else if (rc)
        conn_problem(c, 500, "internal", NULL, "the Scheduled record of '%s' cannot be read: %s", id, err.message);
    else
        conn_respond(c, 200, "application/json", NULL, b.ptr, b.len);
    buf_free(&b);
}

/* GET /schedules?state=pending|fired|failed|cancelled&after=ID&limit=N */
static void list(conn *c) {
    factum_str_t q = c->req->h.query;
    int state = -1;
    char after[40] = "";
    uint64_t limit = LIST_DEFAULT;
    buf_t v = {0};
    factum_str_t k;
    for (int got; (got = http_query_next(&q, &k, &v));) {
        bool ok = got > 0;
        factum_str_t val = {v.ptr, ok ? v.len : 0};
        if (ok && str_eq(k, str_c("state"))) {
            state = -2;
            for (int st = 0; st < 4; st++)
                if (str_eq(val, str_c(timers_state_names[st]))) state = st;
            ok = state != -2;
        } else if (ok && str_eq(k, str_c("after"))) {
            ok = val.len < sizeof after && !memchr(val.ptr, 0, val.len);
            if (ok) snprintf(after, sizeof after, "%s", v.ptr);
        } else if (ok && str_eq(k, str_c("limit"))) {
            ok = str_u64(val, &limit) && limit >= 1 && limit <= LIST_MAX;
        } else {
            ok = false;
        }
        if (!ok) {
            conn_problem(
                c, 400, "bad-request", NULL,
                "query parameters are state (pending, fired, failed or cancelled), after (a schedule id) and limit "
                "(1 to %d); not '%.*s'",
                LIST_MAX, (int)MIN(k.len, 80), k.ptr);
            buf_free(&v);
            return;
        }
    }
    buf_free(&v);
    timer_info *page = calloc(limit, sizeof *page);
    if (!page) {
        conn_problem(c, 503, "unavailable", NULL, "out of memory");
        return;
    }
    size_t n = timers_list(c->l->srv->timers, state, after, page, limit), shown = 0;
    buf_t b = {0};
    factum_error_t err;
    int rc = 0;
    buf_append(&b, "[", 1);
    const char *last = NULL;
    for (size_t i = 0; i < n && !rc && b.len < LIST_MAX_BYTES; i++) {
        size_t at = b.len;
        buf_append(&b, shown ? ",\n" : "\n", shown ? 2 : 1);
        rc = render(c, &page[i], &b, &err);
        if (rc == FACTUM_ENOTFOUND)
            b.len = at, rc = 0; /* ended and forgotten meanwhile */
        else if (!rc)
            shown++, last = page[i].id;
    }
    buf_append(&b, shown ? "\n]" : "]", shown ? 2 : 1);
    if (rc) {
        conn_problem(c, 500, "internal", NULL, "a Scheduled record cannot be read: %s", err.message);
    } else {
        /* More may follow when the page is full or stopped at its size. */
        buf_t link = {0};
        if (last && (n == limit || shown < n)) {
            buf_printf(&link, "Link: </schedules?");
            if (state >= 0) buf_printf(&link, "state=%s&", timers_state_names[state]);
            buf_printf(&link, "limit=%llu&after=%s>; rel=\"next\"\r\n", (unsigned long long)limit, last);
        }
        conn_respond(c, 200, "application/json", link.len ? link.ptr : NULL, b.ptr, b.len);
        buf_free(&link);
    }
    buf_free(&b);
    free(page);
}

static void cancelled_done(conn *c) {
    timers_end_cancel(c->l->srv->timers, c->ar_note, c->ar_rc == 0);
    if (!server_written(c)) return;
    char body[128];
    int n = snprintf(body, sizeof body, "{\"id\":\"%s\",\"state\":\"cancelled\"}", c->ar_note);
    conn_respond(c, 200, "application/json", NULL, body, (size_t)n);
}

static void cancel(conn *c, const char *id) {
    factum_error_t err;
    int rc = timers_begin_cancel(c->l->srv->timers, id, &err);
    if (rc) {
        server_problem(c, rc, err.message);
        return;
    }
    char data[96];
    snprintf(data, sizeof data, "{\"id\":\"%s\"}", id);
    factum_event_t rec = {.type = str_c("Cancelled"), .data = str_c(data), .data_format = FACTUM_DATA_JSON};
    snprintf(c->ar_note, sizeof c->ar_note, "%s", id);
    if ((rc = server_submit_append(c, str_c(TIMERS_STREAM), FACTUM_EXPECT_ANY, &rec, 1, cancelled_done, &err))) {
        timers_end_cancel(c->l->srv->timers, id, false);
        server_problem(c, rc, err.message);
    }
}

void api_schedule(conn *c, const route_args *a, factum_str_t body) {
    (void)a;
    schedule(c, body);
}

void api_list_schedules(conn *c, const route_args *a, factum_str_t body) {
    (void)a, (void)body;
    list(c);
}

/* The {id} param into id; false (answered 404) if it is longer than an id. */
static bool schedule_id(conn *c, const route_args *a, char id[40]) {
    if (a->p[0].len >= 40) {
        conn_problem(c, 404, "not-found", NULL, "no such resource");
        return false;
    }
    snprintf(id, 40, "%.*s", (int)a->p[0].len, a->p[0].ptr);
    return true;
}

void api_show_schedule(conn *c, const route_args *a, factum_str_t body) {
    (void)body;
    char id[40];
    if (schedule_id(c, a, id)) show(c, id);
}

void api_cancel_schedule(conn *c, const route_args *a, factum_str_t body) {
    (void)body;
    char id[40];
    if (schedule_id(c, a, id)) cancel(c, id);
}
