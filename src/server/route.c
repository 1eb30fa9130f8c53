/*
 * route.c — the route table of the HTTP API, the matcher, and the dispatch of every request.
 *
 * route_table is the one list of what the server answers: method, path pattern, handler and
 * permission. api_handle (called by the connection once a request is complete) admits the
 * request (origin.c: its Host and Origin, CORS preflights), then finds the route: the handler runs with the pattern's
 * {params}; a path no pattern has is a 404 "no such resource"; a path some pattern has with another method is a 405
 * whose Allow is built from the table. GET / lists the table, so it cannot drift from it; a browser's GET / (Accept:
 * text/html) is sent to the dashboard at /ui/ instead (api_ui.c). Handlers live in the api_*.c files and are declared
 * in api.h.
 */
#include "api.h"

#include "../base/json.h"

#include <stdio.h>
#include <stdlib.h>

/*
 * The table. One row per method; a pattern's {params} match one non-empty segment. The first
 * row whose pattern and method match wins, so where a literal and a parameter could take the
 * same segment (/groups/{group}/parked/replay and /groups/{group}/parked/{delivery_id}) the
 * literal row comes first. The hot routes (appends and reads of a stream) come first of all.
 */
const route route_table[] = {
    {ROUTE_POST, "/streams/{stream}", api_append, PERM_WRITE, 0},
    {ROUTE_GET, "/streams/{stream}", api_read_stream, PERM_READ, 0},
    {ROUTE_DELETE, "/streams/{stream}", api_delete_stream, PERM_OPERATE, 0},
    {ROUTE_GET, "/streams/{stream}/metadata", api_get_metadata, PERM_READ, 0},
    {ROUTE_PUT, "/streams/{stream}/metadata", api_put_metadata, PERM_OPERATE, 0},
    {ROUTE_GET, "/streams/{stream}/snapshot", api_get_snapshot, PERM_READ, 0},
    {ROUTE_PUT, "/streams/{stream}/snapshot", api_put_snapshot, PERM_WRITE, 0},
    {ROUTE_GET, "/all", api_read_all, PERM_READ_ALL, 0},
    {ROUTE_GET, "/events", api_read_query, PERM_READ_ALL, 0},
    {ROUTE_POST, "/events", api_append_query, PERM_WRITE, 0}, /* no stream scope: a key for every stream */
    {ROUTE_GET, "/dcb/read", api_dcb_read, PERM_READ_ALL, 0},
    {ROUTE_POST, "/dcb/append", api_dcb_append, PERM_WRITE, 0},
    {ROUTE_GET, "/", api_root, PERM_HEALTH, 0},
    {ROUTE_GET, "/streams", api_list_streams, PERM_READ_ALL, 0},
    {ROUTE_GET, "/categories", api_list_categories, PERM_READ_ALL, 0},
    {ROUTE_GET, "/schedules", api_list_schedules, PERM_OPERATE, 0},
    {ROUTE_POST, "/schedules", api_schedule, PERM_OPERATE, 0},
    {ROUTE_GET, "/schedules/{id}", api_show_schedule, PERM_OPERATE, 0},
    {ROUTE_DELETE, "/schedules/{id}", api_cancel_schedule, PERM_OPERATE, 0},
    {ROUTE_GET, "/groups", api_list_groups, PERM_OPERATE, 0},
    {ROUTE_GET, "/groups/{group}", api_show_group, PERM_OPERATE, 0},
    {ROUTE_PUT, "/groups/{group}", api_define_group, PERM_OPERATE, 0},
    {ROUTE_DELETE, "/groups/{group}", api_delete_group, PERM_OPERATE, 0},
    {ROUTE_POST, "/groups/{group}/messages", api_pull_group, PERM_CONSUME, 0},
    {ROUTE_GET, "/groups/{group}/messages", api_push_group, PERM_CONSUME, ROUTE_LEADER},
    {ROUTE_POST, "/groups/{group}/ack", api_ack_group, PERM_CONSUME, 0},
    {ROUTE_POST, "/groups/{group}/nack", api_nack_group, PERM_CONSUME, 0},
    {ROUTE_GET, "/groups/{group}/parked", api_list_parked, PERM_OPERATE, 0},
    {ROUTE_POST, "/groups/{group}/parked/replay", api_replay_parked, PERM_OPERATE, 0},
    {ROUTE_GET, "/groups/{group}/parked/{delivery_id}", api_show_parked, PERM_OPERATE, 0},
    {ROUTE_DELETE, "/groups/{group}/parked/{delivery_id}", api_delete_parked, PERM_OPERATE, 0},
    {ROUTE_GET, "/admin/scavenge", api_scavenge, PERM_OPERATE, 0},
    {ROUTE_POST, "/admin/scavenge", api_scavenge, PERM_OPERATE, ROUTE_LOCAL},
    {ROUTE_GET, "/connectors", api_list_connectors, PERM_OPERATE, 0},
    {ROUTE_GET, "/connectors/{name}", api_show_connector, PERM_OPERATE, 0},
    {ROUTE_PUT, "/connectors/{name}", api_define_connector, PERM_ADMIN, 0},
    {ROUTE_DELETE, "/connectors/{name}", api_delete_connector, PERM_ADMIN, 0},
    {ROUTE_POST, "/connectors/{name}/pause", api_pause_connector, PERM_OPERATE, 0},
    {ROUTE_POST, "/connectors/{name}/resume", api_resume_connector, PERM_OPERATE, 0},
    {ROUTE_GET, "/projections", api_list_projections, PERM_OPERATE, 0},
    {ROUTE_GET, "/projections/{name}", api_show_projection, PERM_OPERATE, 0},
    {ROUTE_PUT, "/projections/{name}", api_define_projection, PERM_OPERATE, 0},
    {ROUTE_DELETE, "/projections/{name}", api_delete_projection, PERM_OPERATE, 0},
    {ROUTE_POST, "/projections/{name}/reset", api_reset_projection, PERM_OPERATE, 0},
    {ROUTE_POST, "/projections/{name}/query", api_query_projection, PERM_READ_ALL, ROUTE_LOCAL},
    {ROUTE_GET, "/sagas", api_list_sagas, PERM_OPERATE, 0},
    {ROUTE_GET, "/sagas/{name}", api_show_saga, PERM_OPERATE, 0},
    {ROUTE_PUT, "/sagas/{name}", api_define_saga, PERM_OPERATE, 0},
    {ROUTE_DELETE, "/sagas/{name}", api_delete_saga, PERM_OPERATE, 0},
    {ROUTE_GET, "/sagas/{name}/instances", api_saga_instances, PERM_OPERATE, 0},
    {ROUTE_GET, "/sagas/{name}/instances/{id}", api_saga_instance, PERM_OPERATE, 0},
    {ROUTE_GET, "/sagas/{name}/parked", api_saga_parked, PERM_OPERATE, 0},
    {ROUTE_GET, "/schemas", api_list_schemas, PERM_READ_ALL, 0},
    {ROUTE_GET, "/schemas/{type}", api_show_schema, PERM_READ_ALL, 0},
    {ROUTE_GET, "/schemas/{type}/versions/{n}", api_get_schema, PERM_READ_ALL, 0},
    {ROUTE_PUT, "/schemas/{type}/versions/{n}", api_put_schema, PERM_OPERATE, 0},
    {ROUTE_PUT, "/schemas/{type}/versions/{n}/upcast", api_put_upcast, PERM_OPERATE, 0},
    {ROUTE_POST, "/admin/backup", api_backup, PERM_ADMIN, ROUTE_LOCAL}, /* a backup of this node */
    {ROUTE_GET, "/admin/archive", api_archive, PERM_ADMIN, ROUTE_LOCAL},
    {ROUTE_POST, "/admin/archive", api_archive, PERM_ADMIN, ROUTE_LOCAL},
    {ROUTE_POST, "/admin/keys", api_create_key, PERM_ADMIN, 0},
    {ROUTE_GET, "/admin/keys", api_list_keys, PERM_ADMIN, 0},
    {ROUTE_DELETE, "/admin/keys/{id}", api_revoke_key, PERM_ADMIN, 0},
    {ROUTE_GET, "/ui/", api_ui_index, PERM_PUBLIC, 0},
    {ROUTE_GET, "/ui/{asset}", api_ui_asset, PERM_PUBLIC, 0},
    {ROUTE_GET, "/health", api_health, PERM_HEALTH, 0},
    {ROUTE_GET, "/whoami", api_whoami, PERM_HEALTH, 0},
    {ROUTE_GET, "/metrics", api_metrics, PERM_HEALTH, 0},
};
const size_t route_count = ARRAY_LEN(route_table);

static const struct {
    unsigned bit;
    const char *name;
} methods[] = {{ROUTE_GET, "GET"}, {ROUTE_POST, "POST"}, {ROUTE_PUT, "PUT"}, {ROUTE_DELETE, "DELETE"}};

/* ---- matching ---- */

unsigned route_method(factum_str_t m) {
    if (str_eq(m, str_c("HEAD"))) return ROUTE_GET;
    for (size_t i = 0; i < ARRAY_LEN(methods); i++)
        if (str_eq(m, str_c(methods[i].name))) return methods[i].bit;
    return 0;
}

/* Whether path has the shape of pattern; its {params} into a. */
static bool route_matches(const char *pat, factum_str_t path, route_args *a) {
    const char *s = path.ptr, *end = path.ptr + path.len;
    size_t n = 0;
    while (*pat) {
        if (*pat == '{') {
            const char *seg = s;
            while (s < end && *s != '/')
                s++;
            if (s == seg || n == ROUTE_MAX_PARAMS) return false;
            a->p[n++] = (factum_str_t){seg, (size_t)(s - seg)};
            while (*pat && *pat++ != '}')
                ;
        } else {
            if (s == end || *s != *pat) return false;
            s++, pat++;
        }
    }
    return s == end;
}

const route *route_find(factum_str_t method, factum_str_t path, route_args *a, unsigned *allow) {
    unsigned m = route_method(method);
    *allow = 0;
    for (size_t i = 0; i < route_count; i++) {
        const route *r = &route_table[i];
        if (!route_matches(r->pattern, path, a)) continue;
        if (r->method == m) return r;
        *allow |= r->method;
    }
    return NULL;
}

const char *route_method_name(unsigned bit) {
    for (size_t i = 0; i < ARRAY_LEN(methods); i++)
        if (methods[i].bit == bit) return methods[i].name;
    return "?";
}

void route_allow_text(unsigned allow, char *out, size_t cap) {
    size_t n = 0;
    out[0] = 0;
    for (size_t i = 0; i < ARRAY_LEN(methods) && n < cap; i++)
        if (allow & methods[i].bit)
            n += (size_t)snprintf(out + n, cap - n, "%s%s%s", n ? ", " : "", methods[i].name,
                                  methods[i].bit == ROUTE_GET ? ", HEAD" : "");
}

/* ---- dispatch ---- */

void api_not_allowed(conn *c, const char *allow) {
    char hdr[96];
    snprintf(hdr, sizeof hdr, "Allow: %s\r\n", allow);
    conn_problem_headers(c, 405, "method-not-allowed", hdr, "this resource allows %s", allow);
}

void api_handle(conn *c, factum_str_t body) {
    const http_req *h = &c->req->h;
    if (!origin_admit(c)) return; /* answered: a foreign Host or Origin, or a CORS preflight */
    route_args a = {0};           /* a route without {params} has an empty scope (guard.c) */
    unsigned allow;
    const route *r = route_find(h->method, h->path, &a, &allow);
    if (r) {
        if (r->fn == api_root && api_ui_browser(c))
            api_ui_redirect(c); /* before the guard: the dashboard asks for the key itself */
        else if (guard_admit(c, r, &a) && !forward_request(c, r, body))
            r->fn(c, &a, body);
    } else if (allow) {
        char text[64];
        route_allow_text(allow, text, sizeof text);
        api_not_allowed(c, text);
    } else {
        conn_problem(c, 404, "not-found", NULL, "no such resource: %.*s", (int)MIN(h->path.len, 300), h->path.ptr);
    }
}

/* GET /: what this server is, and every route of the table with its methods, by path. */
void api_root(conn *c, const route_args *a, factum_str_t body) {
    (void)a, (void)body;
    buf_t b = {0};
    buf_printf(&b,
               "{\"name\":\"factum\",\"version\":\"%s\",\"api\":[\"/streams/{stream}\",\"/all\",\"/streams\","
               "\"/categories\",\"/health\",\"/metrics\"],\"routes\":[",
               c->l->srv->cfg.version);
    for (size_t i = 0; i < route_count; i++) {
        const char *pat = route_table[i].pattern;
        bool first = true;
        for (size_t k = 0; k < i && first; k++)
            first = strcmp(route_table[k].pattern, pat) != 0;
        if (!first) continue; /* listed with the first row of its path */
        buf_printf(&b, "%s{\"path\":", i ? "," : "");
        json_escape(&b, pat, strlen(pat));
        buf_append(&b, ",\"methods\":[", 12);
        unsigned allow = 0;
        for (size_t k = i; k < route_count; k++)
            if (!strcmp(route_table[k].pattern, pat)) allow |= route_table[k].method;
        for (size_t m = 0, n = 0; m < ARRAY_LEN(methods); m++)
            if (allow & methods[m].bit)
                buf_printf(&b, "%s\"%s\"%s", n++ ? "," : "", methods[m].name,
                           methods[m].bit == ROUTE_GET ? ",\"HEAD\"" : "");
        buf_append(&b, "]}", 2);
    }
    buf_append(&b, "]}", 2);
    conn_respond(c, 200, "application/json", NULL, b.ptr, b.len);
    buf_free(&b);
}

/* ---- path parameters ---- */

bool api_path_name(conn *c, factum_str_t seg, size_t max, bool (*valid)(const char *), const char *rule, char *name) {
    if (seg.len > max || (memcpy(name, seg.ptr, seg.len), name[seg.len] = 0, !valid(name))) {
        conn_problem(c, 400, "bad-request", NULL, "%s", rule);
        return false;
    }
    return true;
}

void api_on_stream(conn *c, const route_args *a, bool check, factum_str_t body, api_stream_fn fn) {
    buf_t name = {0};
    factum_error_t err;
    if (http_unescape(a->p[0], false, &name)) {
        conn_problem(c, 400, "bad-stream", NULL, "the stream name has a bad percent-escape");
    } else {
        factum_str_t stream = {name.ptr ? name.ptr : "", name.len};
        if (check && factum_stream_name_check(stream, &err))
            server_problem(c, FACTUM_EBADSTREAM, err.message);
        else
            fn(c, stream, body);
    }
    buf_free(&name);
}
