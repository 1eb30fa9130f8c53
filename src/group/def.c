/*
 * def.c — a consumer group's definition: the checks of a PUT /groups/{name} body, where a new
 * group starts ("earliest", "latest", a number or a time, worked out against the store once), and
 * the GroupDefined record's JSON, which is also what GET /groups/{name} shows as the config.
 * Definitions are applied by groups.c, which owns the registry.
 */
#include "group.h"

#include "../base/json.h"

#include <stdio.h>

/* ---- JSON helpers ---- */

bool group_str_into(factum_str_t raw, char *out, size_t cap) {
    buf_t b = {0};
    bool ok = !json_unescape(raw, &b) && b.len < cap && !memchr(b.ptr ? b.ptr : "", 0, b.len);
    if (ok) snprintf(out, cap, "%.*s", (int)b.len, b.ptr ? b.ptr : "");
    buf_free(&b);
    return ok;
}

static int string_list(factum_str_t arr, char (*out)[256], int *n, const char *what, factum_error_t *err) {
    json_iter_t it;
    factum_str_t v;
    int kind, r;
    *n = 0;
    json_iter_init(&it, arr);
    while ((r = json_iter_element(&it, &v, &kind)) == 1) {
        if (kind != JSON_STRING || *n == MAX_FILTERS || !group_str_into(v, out[*n], 256) || !out[*n][0])
            return err_set(err, FACTUM_EINVAL, "'%s' must be a list of at most %d non-empty names", what, MAX_FILTERS);
        ++*n;
    }
    return r < 0 ? err_set(err, FACTUM_EINVAL, "'%s' must be a list", what) : 0;
}

/* ---- definitions ---- */

bool group_name_ok(const char *n) {
    size_t len = strlen(n);
    if (!len || len > GROUP_MAX_NAME) return false;
    for (size_t i = 0; i < len; i++) {
        char c = n[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
              c == '.'))
            return false;
    }
    return true;
}

/* The cursor value where a new group starts. */
static int resolve_start(factum_t *db, const group_def *g, factum_str_t v, int kind, uint64_t *out,
                         factum_error_t *err) {
    buf_t s = {0};
    int rc = 0;
    uint64_t n;
    int64_t t;
    if (kind == JSON_NUMBER && str_u64(v, &n)) {
        *out = n;
        return 0;
    }
    if (kind != JSON_STRING || json_unescape(v, &s))
        return err_set(err, FACTUM_EINVAL, "'start' must be earliest, latest, a number or a time");
    factum_str_t str = {s.ptr ? s.ptr : "", s.len};
    if (str_eq(str, str_c("earliest")))
        *out = 0;
    else if (str_eq(str, str_c("latest")))
        *out = g->src == SRC_STREAM ? (uint64_t)(factum_stream_revision(db, str_c(g->src_name)) + 1)
                                    : factum_head_position(db);
    else if (time_parse(str, &t) == 0) {
        if (g->src != SRC_STREAM)
            *out = factum_position_at(db, t);
        else {
            /* The first revision committed at or after t: binary search over the stream. */
            uint64_t lo = 0, hi = (uint64_t)(factum_stream_revision(db, str_c(g->src_name)) + 1);
            while (lo < hi) {
                uint64_t mid = lo + (hi - lo) / 2;
                factum_result_t *r;
                bool before = factum_read_stream(db, str_c(g->src_name), mid, 1, 0, &r, NULL) == 0 &&
                              factum_result_count(r) && factum_result_event(r, 0)->time_us < t;
                if (r) factum_result_free(r);
                if (before)
                    lo = mid + 1;
                else
                    hi = mid;
            }
            *out = lo;
        }
    } else
        rc = err_set(err, FACTUM_EINVAL, "'start' must be earliest, latest, a number or an RFC 3339 time");
    buf_free(&s);
    return rc;
}

int group_def_parse(factum_t *db, factum_str_t body, group_def *g, bool resolve, factum_error_t *err) {
    factum_str_t v, src;
    int kind, rc;
    if (!json_valid(body.ptr, body.len, &kind) || kind != JSON_OBJECT)
        return err_set(err, FACTUM_EINVAL, "the body must be a JSON object");
    if (!json_member(body, "source", &src, &kind) || kind != JSON_OBJECT)
        return err_set(err, FACTUM_EINVAL, "'source' must be {\"stream\": S}, {\"category\": C} or {\"all\": {...}}");
    static const char *const source_members[] = {"stream", "category", "all", NULL};
    if ((rc = json_only_members(src, "'source'", source_members, err))) return rc;
    if (json_member(src, "stream", &v, &kind) + json_member(src, "category", &v, &kind) +
            json_member(src, "all", &v, &kind) >
        1)
        return err_set(err, FACTUM_EINVAL, "'source' has one of stream, category and all");
    if (json_member(src, "stream", &v, &kind)) {
        g->src = SRC_STREAM;
        if (kind != JSON_STRING || !group_str_into(v, g->src_name, sizeof g->src_name) ||
            factum_stream_name_check(str_c(g->src_name), err))
            return err_set(err, FACTUM_EBADSTREAM, "'source.stream' must be a stream name");
    } else if (json_member(src, "category", &v, &kind)) {
        g->src = SRC_CATEGORY;
        if (kind != JSON_STRING || !group_str_into(v, g->src_name, sizeof g->src_name) || !g->src_name[0])
            return err_set(err, FACTUM_EINVAL, "'source.category' must be a category name");
    } else if (json_member(src, "all", &v, &kind)) {
        g->src = SRC_ALL;
        factum_str_t l;
        int lk;
        static const char *const all_members[] = {"types", "categories", NULL};
        if (kind != JSON_OBJECT) return err_set(err, FACTUM_EINVAL, "'source.all' must be an object");
        if ((rc = json_only_members(v, "'source.all'", all_members, err))) return rc;
        if (json_member(v, "types", &l, &lk) &&
            (lk != JSON_ARRAY || (rc = string_list(l, g->types, &g->ntypes, "types", err))))
            return err_set(err, FACTUM_EINVAL, "'source.all.types' must be a list of types");
        if (json_member(v, "categories", &l, &lk) &&
            (lk != JSON_ARRAY || (rc = string_list(l, g->cats, &g->ncats, "categories", err))))
            return err_set(err, FACTUM_EINVAL, "'source.all.categories' must be a list of categories");
    } else {
        return err_set(err, FACTUM_EINVAL, "'source' must be {\"stream\": S}, {\"category\": C} or {\"all\": {...}}");
    }
    if (json_member(body, "strategy", &v, &kind)) {
        char s[32] = "";
        if (kind != JSON_STRING || !group_str_into(v, s, sizeof s) ||
            (strcmp(s, "round_robin") && strcmp(s, "by_stream")))
            return err_set(err, FACTUM_EINVAL, "'strategy' must be round_robin or by_stream");
        g->by_stream = !strcmp(s, "by_stream");
    }
    if ((rc = json_member_u32_in(body, "ack_timeout_ms", 100, 3600000, 30000, &g->ack_timeout_ms, err)) ||
        (rc = json_member_u32_in(body, "max_deliveries", 1, 1000, 10, &g->max_deliveries, err)))
        return rc;
    factum_str_t retry = {"{}", 2};
    if (json_member(body, "retry", &v, &kind)) {
        static const char *const retry_members[] = {"min_delay_ms", "max_delay_ms", NULL};
        if (kind != JSON_OBJECT)
            return err_set(err, FACTUM_EINVAL, "'retry' must be {\"min_delay_ms\", \"max_delay_ms\"}");
        if ((rc = json_only_members(v, "'retry'", retry_members, err))) return rc;
        retry = v;
    }
    if ((rc = json_member_u32_in(retry, "min_delay_ms", 0, 86400000, 1000, &g->min_delay_ms, err)) ||
        (rc = json_member_u32_in(retry, "max_delay_ms", 0, 86400000, 60000, &g->max_delay_ms, err)))
        return rc;
    if (g->min_delay_ms > g->max_delay_ms)
        return err_set(err, FACTUM_EINVAL, "'retry.min_delay_ms' is above 'max_delay_ms'");
    if (resolve) {
        g->start = 0;
        if (json_member(body, "start", &v, &kind) && (rc = resolve_start(db, g, v, kind, &g->start, err))) return rc;
    }
    return 0;
}

void group_def_render(const group_def *g, buf_t *b) {
    buf_printf(b, "\"source\":");
    if (g->src == SRC_STREAM) {
        buf_printf(b, "{\"stream\":");
        json_escape(b, g->src_name, strlen(g->src_name));
        buf_printf(b, "}");
    } else if (g->src == SRC_CATEGORY) {
        buf_printf(b, "{\"category\":");
        json_escape(b, g->src_name, strlen(g->src_name));
        buf_printf(b, "}");
    } else {
        buf_printf(b, "{\"all\":{\"types\":[");
        for (int i = 0; i < g->ntypes; i++) {
            if (i) buf_append(b, ",", 1);
            json_escape(b, g->types[i], strlen(g->types[i]));
        }
        buf_printf(b, "],\"categories\":[");
        for (int i = 0; i < g->ncats; i++) {
            if (i) buf_append(b, ",", 1);
            json_escape(b, g->cats[i], strlen(g->cats[i]));
        }
        buf_printf(b, "]}}");
    }
    buf_printf(b,
               ",\"start\":%llu,\"strategy\":\"%s\",\"ack_timeout_ms\":%u,\"max_deliveries\":%u,"
               "\"retry\":{\"min_delay_ms\":%u,\"max_delay_ms\":%u}",
               (unsigned long long)g->start, g->by_stream ? "by_stream" : "round_robin", g->ack_timeout_ms,
               g->max_deliveries, g->min_delay_ms, g->max_delay_ms);
}

bool group_def_same_source(const group_def *a, const group_def *b) {
    return a->src == b->src && !strcmp(a->src_name, b->src_name) && a->ntypes == b->ntypes && a->ncats == b->ncats &&
           !memcmp(a->types, b->types, sizeof a->types) && !memcmp(a->cats, b->cats, sizeof a->cats);
}
