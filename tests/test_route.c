/*
 * test_route.c — the route table (src/server/route.c): the matcher on its own (params, the
 * literal row before the parameter one, 404 and 405 with the table's methods), the table's
 * shape (every row reachable, no row twice), and a real server answering from it: GET / lists
 * every route, and a 405's Allow names exactly the table's methods for the path.
 */
#include "../src/server/api.h"
#include "test_server.h"

#include <signal.h>

static const route *find(const char *method, const char *path, route_args *a, unsigned *allow) {
    return route_find(str_c(method), str_c(path), a, allow);
}

TEST(the_route_matcher_takes_params_prefers_the_literal_row_and_reports_allow) {
    route_args a;
    unsigned allow;
    const route *r = find("POST", "/streams/order-1", &a, &allow);
    CHECK(r && r->fn == api_append && str_eq(a.p[0], str_c("order-1")));
    r = find("HEAD", "/streams/a%2Fb/metadata", &a, &allow); /* HEAD is answered by GET */
    CHECK(r && r->fn == api_get_metadata && str_eq(a.p[0], str_c("a%2Fb")));
    /* The literal row for POST, the parameter row for GET and DELETE. */
    r = find("POST", "/groups/g/parked/replay", &a, &allow);
    CHECK(r && r->fn == api_replay_parked && str_eq(a.p[0], str_c("g")));
    r = find("GET", "/groups/g/parked/replay", &a, &allow);
    CHECK(r && r->fn == api_show_parked && str_eq(a.p[1], str_c("replay")));
    r = find("DELETE", "/groups/g/parked/7.1", &a, &allow);
    CHECK(r && r->fn == api_delete_parked && str_eq(a.p[1], str_c("7.1")));
    /* 405: the union of the methods of every row the path matches. */
    CHECK(!find("PUT", "/groups/g/parked/replay", &a, &allow));
    CHECK_EQ(allow, ROUTE_GET | ROUTE_POST | ROUTE_DELETE);
    char text[64];
    route_allow_text(allow, text, sizeof text);
    CHECK_MSG(!strcmp(text, "GET, HEAD, POST, DELETE"), "%s", text);
    CHECK(!find("PATCH", "/streams/s", &a, &allow));
    CHECK_EQ(allow, ROUTE_GET | ROUTE_POST | ROUTE_DELETE);
    CHECK(!find("get", "/health", &a, &allow)); /* methods are case-sensitive */
    CHECK_EQ(allow, ROUTE_GET);
    /* 404: no pattern has the path (an empty or extra segment is another path). */
    const char *none[] = {"/nothing", "/streams/", "/streams/a/zzz", "/groups//ack",
                          "/groups/", "/admin",    "/admin/compact", "/sagas/s/instances/a/b",
                          "",         "/health/"};
    for (size_t i = 0; i < ARRAY_LEN(none); i++) {
        CHECK_MSG(!find("GET", none[i], &a, &allow) && allow == 0, "%s", none[i]);
        CHECK_MSG(!find("POST", none[i], &a, &allow) && allow == 0, "%s", none[i]);
    }
}

TEST(every_row_of_the_route_table_is_reachable_and_none_is_there_twice) {
    for (size_t i = 0; i < route_count; i++) {
        const route *r = &route_table[i];
        CHECK_MSG(r->pattern[0] == '/' && r->fn, "row %zu", i);
        CHECK_MSG(r->method == ROUTE_GET || r->method == ROUTE_POST || r->method == ROUTE_PUT ||
                      r->method == ROUTE_DELETE,
                  "%s: one method a row", r->pattern);
        char path[200];
        route_example(r->pattern, path, sizeof path);
        const char *name = route_method_name(r->method);
        route_args a;
        unsigned allow;
        CHECK_MSG(find(name, path, &a, &allow) == r, "%s %s is taken by an earlier row", name, r->pattern);
        for (size_t k = 0; k < i; k++)
            CHECK_MSG(route_table[k].method != r->method || strcmp(route_table[k].pattern, r->pattern),
                      "%s %s is in the table twice", name, r->pattern);
    }
}

TEST(get_root_lists_the_route_table_and_a_405_allows_exactly_its_methods) {
    srv s = srv_start(test_dir(), NULL);
    char *b = http_body(s.port, "GET", "/", NULL, NULL, 200);
    CHECK_MSG(strstr(b, "\"name\":\"factum\"") && strstr(b, "\"api\":["), "%s", b);
    CHECK_MSG(
        strstr(b, "{\"path\":\"/groups/{group}/parked/{delivery_id}\",\"methods\":[\"GET\",\"HEAD\",\"DELETE\"]}"),
        "%s", b);
    for (size_t i = 0; i < route_count; i++) {
        char want[200];
        snprintf(want, sizeof want, "{\"path\":\"%s\",", route_table[i].pattern);
        CHECK_MSG(strstr(b, want), "GET / does not list %s: %s", route_table[i].pattern, b);
    }
    free(b);
    /* Each of these paths with a method the table lacks for it: 405, Allow from the table. */
    static const struct {
        const char *method, *path, *allow;
    } cases[] = {
        {"PUT", "/streams/a-1", "GET, HEAD, POST, DELETE"},
        {"POST", "/streams/a-1/metadata", "GET, HEAD, PUT"},
        {"DELETE", "/streams/a-1/snapshot", "GET, HEAD, PUT"},
        {"DELETE", "/all", "GET, HEAD"},
        {"PUT", "/schedules", "GET, HEAD, POST"},
        {"POST", "/schedules/abc", "GET, HEAD, DELETE"},
        {"POST", "/groups/g", "GET, HEAD, PUT, DELETE"},
        {"DELETE", "/groups/g/messages", "GET, HEAD, POST"},
        {"GET", "/groups/g/ack", "POST"},
        {"PUT", "/groups/g/parked/replay", "GET, HEAD, POST, DELETE"},
        {"DELETE", "/admin/scavenge", "GET, HEAD, POST"},
        {"GET", "/projections/p/query", "POST"},
        {"POST", "/sagas/s/parked", "GET, HEAD"},
        {"POST", "/", "GET, HEAD"},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        resp r;
        char allow[96];
        http_do(s.port, cases[i].method, cases[i].path, NULL, cases[i].method[0] == 'G' ? NULL : "", &r);
        CHECK_MSG(r.status == 405, "%s %s: %d", cases[i].method, cases[i].path, r.status);
        CHECK_MSG(resp_header(&r, "allow", allow, sizeof allow) && !strcmp(allow, cases[i].allow),
                  "%s %s: Allow: %s, want %s", cases[i].method, cases[i].path, allow, cases[i].allow);
        resp_free(&r);
    }
    expect_status(s.port, "GET", "/groups/g/nothing", NULL, NULL, 404, "no such resource");
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}
