/*
 * api_meta.c — stream metadata and deletion over HTTP (issue 5; docs/lifecycle.md):
 *
 *   GET /streams/{s}/metadata     the stream's metadata (defaults if none was set)
 *   PUT /streams/{s}/metadata     {"max_age_s": N, "max_count": N, "truncate_before": R, "custom": {...}}
 *   DELETE /streams/{s}           soft delete; ?tombstone=true for ever; If-Match / If-None-Match
 *
 * Both changes go to the engine's writer like appends (asynchronously) and are answered when
 * durable; the engine decides them against the stream as it is at that moment.
 */
#include "api.h"

#include "../base/json.h"

#include <stdio.h>

static const char *const JSON = "application/json";

static void render_meta(conn *c, factum_str_t stream, factum_str_t body) {
    (void)body;
    factum_meta_t m;
    factum_error_t err;
    int rc = factum_meta_get(c->l->srv->db, stream, &m, &err);
    if (rc) {
        server_problem(c, rc, err.message);
        return;
    }
    buf_t *b = &c->l->scratch;
    b->len = 0;
    size_t need = factum_meta_json(stream, &m, NULL, 0);
    if (buf_reserve(b, need + 1))
        conn_problem(c, 500, "internal", NULL, "out of memory");
    else
        conn_respond(c, 200, JSON, NULL, b->ptr, factum_meta_json(stream, &m, b->ptr, need + 1));
    factum_meta_free(&m);
}

static void meta_done(conn *c) {
    if (!server_written(c)) return;
    buf_t name = {0};
    api_path_stream(c, &name);
    render_meta(c, (factum_str_t){name.ptr ? name.ptr : "", name.len}, (factum_str_t){0});
    buf_free(&name);
}

/* A whole number or null (0) member; false (answered 400) if it is something else. */
static bool number_member(conn *c, factum_str_t val, int kind, const char *key, uint64_t *out) {
    *out = 0;
    if (kind == JSON_NULL) return true;
    if (kind == JSON_NUMBER && str_u64(val, out)) return true;
    conn_problem(c, 400, "bad-request", NULL, "'%s' must be a whole number of at least 0, or null", key);
    return false;
}

static void put_metadata(conn *c, factum_str_t stream, factum_str_t body) {
    int kind;
    if (!json_valid(body.ptr, body.len, &kind) || kind != JSON_OBJECT) {
        conn_problem(c, 400, "bad-request", NULL,
                     "the body must be a JSON object: {\"max_age_s\": N, \"max_count\": N, \"truncate_before\": R, "
                     "\"custom\": {...}}");
        return;
    }
    factum_meta_t m = {0};
    json_iter_t it;
    factum_str_t key, val;
    json_iter_init(&it, body);
    while (json_iter_member(&it, &key, &val, &kind) == 1) {
        if (json_key_is(key, "max_age_s")) {
            if (!number_member(c, val, kind, "max_age_s", &m.max_age_s)) return;
        } else if (json_key_is(key, "max_count")) {
            if (!number_member(c, val, kind, "max_count", &m.max_count)) return;
        } else if (json_key_is(key, "truncate_before")) {
            if (!number_member(c, val, kind, "truncate_before", &m.truncate_before)) return;
        } else if (json_key_is(key, "custom")) {
            if (kind != JSON_OBJECT && kind != JSON_NULL) {
                conn_problem(c, 400, "bad-request", NULL, "'custom' must be a JSON object of your own keys, or null");
                return;
            }
            if (kind == JSON_OBJECT) m.custom = val;
        } else {
            conn_problem(c, 400, "bad-request", NULL,
                         "unknown member %.*s: metadata has max_age_s, max_count, truncate_before and custom",
                         (int)MIN(key.len, 80), key.ptr);
            return;
        }
    }
    factum_error_t err;
    if (server_submit_meta(c, stream, &m, FACTUM_EXPECT_ANY, 0, meta_done, &err))
        server_problem(c, err.code, err.message);
}

void api_get_metadata(conn *c, const route_args *a, factum_str_t body) { api_on_stream(c, a, true, body, render_meta); }

void api_put_metadata(conn *c, const route_args *a, factum_str_t body) {
    api_on_stream(c, a, true, body, put_metadata);
}

static void deleted_done(conn *c) {
    if (!server_written(c)) return;
    buf_t name = {0}, b = {0};
    api_path_stream(c, &name);
    buf_append(&b, "{\"stream\":", 10);
    json_escape(&b, name.ptr ? name.ptr : "", name.len);
    buf_printf(&b, ",\"last_revision\":%lld,\"tombstone\":%s,\"position\":%llu}", (long long)c->ar_res.actual_revision,
               c->ar_at ? "true" : "false", (unsigned long long)c->ar_res.last_position);
    conn_respond(c, 200, JSON, NULL, b.ptr, b.len);
    buf_free(&name);
    buf_free(&b);
}

static void delete_stream(conn *c, factum_str_t stream, factum_str_t body) {
    (void)body;
    factum_str_t q = c->req->h.query;
    int tombstone = 0;
    if (q.len) {
        if (str_eq(q, str_c("tombstone=true")))
            tombstone = 1;
        else if (!str_eq(q, str_c("tombstone=false"))) {
            conn_problem(c, 400, "bad-request", NULL, "the only query parameter is tombstone=true|false");
            return;
        }
    }
    int64_t expected;
    if (api_expected_revision(c, &expected)) return;
    factum_error_t err;
    c->ar_at = tombstone;
    if (server_submit_meta(c, stream, NULL, expected, tombstone, deleted_done, &err))
        server_problem(c, err.code, err.message);
}

void api_delete_stream(conn *c, const route_args *a, factum_str_t body) {
    api_on_stream(c, a, false, body, delete_stream);
}
