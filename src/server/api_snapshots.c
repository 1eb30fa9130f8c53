/*
 * api_snapshots.c — aggregate snapshots (issue 5): PUT/GET /streams/{s}/snapshot and
 * GET /streams/{s}?from=snapshot, which answers the latest snapshot and the events after it in
 * one round trip. Snapshots are events in a system stream per aggregate, "$snapshot-" and 16 hex
 * digits of the stream name's hash (a stream name may be 255 bytes, too long to prefix); each
 * record names its stream, so a hash collision is told apart.
 */
#include "api.h"

#include "../base/json.h"
#include "../sys/replay.h"

#include <stdio.h>
#include <stdlib.h>

static void snapshot_stream(factum_str_t stream, char out[32]) {
    snprintf(out, 32, "$snapshot-%016llx", (unsigned long long)hash64(stream.ptr, stream.len, 0x5a));
}

/* Snapshot records of this stream (another stream's name may share the hash). */
static int pick_mine(void *ctx, const factum_event_t *e) {
    const factum_str_t *stream = ctx;
    factum_str_t v;
    int kind;
    buf_t name = {0};
    bool mine = json_member(e->data, "stream", &v, &kind) && kind == JSON_STRING && !json_unescape(v, &name) &&
                str_eq((factum_str_t){name.ptr ? name.ptr : "", name.len}, *stream);
    buf_free(&name);
    return mine ? PICK_TAKE : PICK_SKIP;
}

/* The latest snapshot of stream: *out holds its record (to free), or is NULL when there is none.
   0, or the read's error: a snapshot that cannot be read is reported, never taken for none. */
static int latest(factum_t *db, factum_str_t stream, const factum_event_t **rec, factum_result_t **out,
                  factum_error_t *err) {
    char ss[32];
    snapshot_stream(stream, ss);
    return replay_find_newest(db, ss, pick_mine, &stream, rec, out, err);
}

/* {"revision","state","time"} of a snapshot record. */
static void render_snapshot(buf_t *b, const factum_event_t *rec) {
    factum_str_t rev = {"0", 1}, state = {"null", 4};
    int kind;
    json_member(rec->data, "revision", &rev, &kind);
    json_member(rec->data, "state", &state, &kind);
    char t[32];
    time_format_rfc3339(rec->time_us, t);
    buf_printf(b, "{\"revision\":%.*s,\"time\":\"%s\",\"state\":", (int)rev.len, rev.ptr, t);
    buf_append(b, state.ptr, state.len);
    buf_append(b, "}", 1);
}

/* Whether stream may have snapshots (answered 400 if not). */
static bool snapshot_allowed(conn *c, factum_str_t stream) {
    if (stream.len && stream.ptr[0] == '$') {
        conn_problem(c, 400, "bad-stream", NULL, "system streams have no snapshots");
        return false;
    }
    return true;
}

static void stored_done(conn *c) {
    if (!server_written(c)) return;
    char body[200];
    int n = snprintf(body, sizeof body, "{\"revision\":%lld,\"position\":%llu}", (long long)c->ar_at,
                     (unsigned long long)c->ar_res.last_position);
    conn_respond(c, 201, "application/json", NULL, body, (size_t)n);
}

static void put_snapshot(conn *c, factum_str_t stream, factum_str_t body) {
    if (!snapshot_allowed(c, stream)) return;
    factum_t *db = c->l->srv->db;
    factum_str_t rev, state;
    int kind, rk;
    uint64_t r = 0;
    if (!json_valid(body.ptr, body.len, &kind) || kind != JSON_OBJECT || !json_member(body, "revision", &rev, &rk) ||
        rk != JSON_NUMBER || !json_member(body, "state", &state, &kind)) {
        conn_problem(c, 400, "bad-request", NULL, "the body must be {\"revision\": R, \"state\": ...}");
        return;
    }
    if (!str_u64(rev, &r)) {
        conn_problem(c, 400, "bad-request", NULL, "'revision' must be a whole number");
        return;
    }
    int64_t last = factum_stream_revision(db, stream);
    if (last < 0) {
        conn_problem(c, 404, "not-found", NULL, "stream '%.*s' not found", (int)stream.len, stream.ptr);
        return;
    }
    if ((int64_t)r > last) {
        conn_problem(c, 400, "bad-request", NULL, "revision %llu is past the stream's last revision %lld",
                     (unsigned long long)r, (long long)last);
        return;
    }
    if (!guard_rate(c, 1, body.len)) return; /* a snapshot is one append for its key's rate limits */
    buf_t data = {0};
    buf_printf(&data, "{\"stream\":");
    json_escape(&data, stream.ptr, stream.len);
    buf_printf(&data, ",\"revision\":%llu,\"state\":", (unsigned long long)r);
    buf_append(&data, state.ptr, state.len);
    buf_append(&data, "}", 1);
    char ss[32];
    snapshot_stream(stream, ss);
    factum_event_t rec = {.type = str_c("Snapshot"), .data = {data.ptr, data.len}, .data_format = FACTUM_DATA_JSON};
    factum_error_t err;
    c->ar_at = (int64_t)r;
    int rc = server_submit_append(c, str_c(ss), FACTUM_EXPECT_ANY, &rec, 1, stored_done, &err);
    if (rc) server_problem(c, rc, err.message);
    buf_free(&data);
}

static void get_snapshot(conn *c, factum_str_t stream, factum_str_t body) {
    (void)body;
    if (!snapshot_allowed(c, stream)) return;
    const factum_event_t *rec;
    factum_result_t *r;
    factum_error_t err;
    int rc = latest(c->l->srv->db, stream, &rec, &r, &err);
    if (rc) {
        server_problem(c, rc, err.message);
        return;
    }
    if (!r) {
        conn_problem(c, 404, "not-found", NULL, "stream '%.*s' has no snapshot", (int)stream.len, stream.ptr);
        return;
    }
    buf_t b = {0};
    render_snapshot(&b, rec);
    conn_respond(c, 200, "application/json", NULL, b.ptr, b.len);
    buf_free(&b);
    factum_result_free(r);
}

void api_put_snapshot(conn *c, const route_args *a, factum_str_t body) {
    api_on_stream(c, a, true, body, put_snapshot);
}

void api_get_snapshot(conn *c, const route_args *a, factum_str_t body) {
    api_on_stream(c, a, true, body, get_snapshot);
}

void api_read_from_snapshot(conn *c, factum_str_t stream, size_t limit) {
    factum_t *db = c->l->srv->db;
    const factum_event_t *rec = NULL;
    factum_result_t *snap;
    factum_error_t err;
    int rc = latest(db, stream, &rec, &snap, &err);
    if (rc) {
        server_problem(c, rc, err.message);
        return;
    }
    uint64_t from = 0;
    buf_t b = {0};
    buf_printf(&b, "{\"snapshot\":");
    if (snap) {
        if (json_member_u64(rec->data, "revision", &from)) from++;
        render_snapshot(&b, rec);
        factum_result_free(snap);
    } else {
        buf_printf(&b, "null");
    }
    factum_result_t *res;
    rc = factum_read_stream(db, stream, from, limit, 0, &res, &err);
    if (rc) {
        buf_free(&b);
        server_problem(c, rc, err.message);
        return;
    }
    /* The events as any stream read renders them (the same byte cap), after the snapshot. */
    size_t n = render_events(c->l, res, UINT64_MAX), count = factum_result_count(res);
    buf_printf(&b, ",\"events\":");
    buf_append(&b, c->l->scratch.ptr, c->l->scratch.len);
    buf_append(&b, "}", 1);
    buf_t hdr = {0};
    if (n == limit || n < count) {
        uint64_t next = n < count ? factum_result_event(res, n)->revision : factum_result_next(res);
        buf_printf(&hdr, "Link: </streams/");
        buf_url_encode(&hdr, stream.ptr, stream.len);
        buf_printf(&hdr, "?from=%llu&limit=%zu>; rel=\"next\"\r\n", (unsigned long long)next, limit);
    }
    factum_result_free(res);
    conn_respond(c, 200, "application/json", hdr.ptr, b.ptr, b.len);
    buf_free(&hdr);
    buf_free(&b);
}
