/*
 * api_streams.c — the stream and category listings, GET /streams and GET /categories, served
 * from the index's stream names (factum_list_streams, docs/http.md "Listing streams"): paged by
 * name with `after` and a Link to the next page, never a scan of the log.
 */
#include "api.h"

#include "../base/json.h"

#include <stdio.h>
#include <stdlib.h>

#define LIST_DEFAULT_LIMIT 100
#define LIST_MAX_LIMIT 1000

typedef struct list_params {
    buf_t prefix, category, after;
    size_t limit;
    int system;
} list_params;

static void list_params_free(list_params *p) {
    buf_free(&p->prefix);
    buf_free(&p->category);
    buf_free(&p->after);
}

static factum_str_t bstr(const buf_t *b) { return (factum_str_t){b->ptr ? b->ptr : "", b->len}; }

/* 0, or answers 400 and -1. `streams` allows prefix and category. */
static int list_parse(conn *c, bool streams, list_params *p) {
    memset(p, 0, sizeof *p);
    p->limit = LIST_DEFAULT_LIMIT;
    factum_str_t q = c->req->h.query, k;
    buf_t v = {0};
    int more, rc = 0;
    while (!rc && (more = http_query_next(&q, &k, &v))) {
        factum_str_t val = bstr(&v);
        buf_t *dst = NULL;
        if (more < 0) {
            api_bad_escape(c, k);
            rc = -1;
        } else if (str_eq(k, str_c("limit"))) {
            uint64_t n;
            if (!str_u64(val, &n) || n < 1 || n > LIST_MAX_LIMIT) {
                conn_problem(c, 400, "bad-request", NULL, "limit must be 1 to %d", LIST_MAX_LIMIT);
                rc = -1;
            } else {
                p->limit = (size_t)n;
            }
        } else if (str_eq(k, str_c("system"))) {
            if (str_eq(val, str_c("true")) || str_eq(val, str_c("false")))
                p->system = val.len == 4;
            else
                conn_problem(c, 400, "bad-request", NULL, "system must be true or false"), rc = -1;
        } else if (str_eq(k, str_c("after"))) {
            dst = &p->after;
        } else if (streams && str_eq(k, str_c("prefix"))) {
            dst = &p->prefix;
        } else if (streams && str_eq(k, str_c("category"))) {
            dst = &p->category;
        } else {
            conn_problem(c, 400, "bad-request", NULL, "unknown query parameter '%.*s'", (int)MIN(k.len, 64), k.ptr);
            rc = -1;
        }
        if (!rc && dst) {
            if (val.len > FACTUM_MAX_STREAM_NAME) {
                conn_problem(c, 400, "bad-request", NULL, "%.*s is longer than a stream name can be (%d bytes)",
                             (int)k.len, k.ptr, FACTUM_MAX_STREAM_NAME);
                rc = -1;
            } else if (buf_append(dst, val.ptr, val.len)) {
                conn_problem(c, 503, "unavailable", NULL, "out of memory");
                rc = -1;
            }
        }
    }
    buf_free(&v);
    if (!rc && p->prefix.len && p->category.len) {
        conn_problem(c, 400, "bad-request", NULL, "give prefix or category, not both");
        rc = -1;
    }
    if (rc) list_params_free(p);
    return rc;
}

/* The Link to the page after `last`, with the same filters. */
static void list_link(buf_t *hdr, const char *path, const list_params *p, factum_str_t last) {
    buf_printf(hdr, "Link: <%s?after=", path);
    buf_url_encode(hdr, last.ptr, last.len);
    buf_printf(hdr, "&limit=%zu", p->limit);
    if (p->prefix.len) buf_printf(hdr, "&prefix="), buf_url_encode(hdr, p->prefix.ptr, p->prefix.len);
    if (p->category.len) buf_printf(hdr, "&category="), buf_url_encode(hdr, p->category.ptr, p->category.len);
    if (p->system) buf_printf(hdr, "&system=true");
    buf_printf(hdr, ">; rel=\"next\"\r\n");
}

/* One stream of the listing: its name, first position, last revision and deletion state. */
static void render_stream(buf_t *b, factum_t *db, factum_str_t name, uint64_t first) {
    char item[2048]; /* a name of 255 bytes, each escaped to 6, and the numbers */
    size_t n = factum_stream_json(db, name, first, item, sizeof item);
    buf_append(b, item, MIN(n, sizeof item - 1));
}

/* One item of a category listing. */
static void render_category(buf_t *b, factum_t *db, factum_str_t name, uint64_t first) {
    (void)db, (void)first;
    buf_printf(b, "{\"category\":");
    json_escape(b, name.ptr, name.len);
    buf_append(b, "}", 1);
}

/* A page of either listing: a JSON array of items, and a Link when the page is full. */
static void list_answer(conn *c, bool streams) {
    factum_t *db = c->l->srv->db;
    list_params p;
    if (list_parse(c, streams, &p)) return;
    factum_names_t *l;
    factum_error_t err;
    int rc = !streams         ? factum_list_categories(db, bstr(&p.after), p.limit, p.system, &l, &err)
             : p.category.len ? factum_list_category(db, bstr(&p.category), bstr(&p.after), p.limit, p.system, &l, &err)
                              : factum_list_streams(db, bstr(&p.prefix), bstr(&p.after), p.limit, p.system, &l, &err);
    if (rc) {
        server_problem(c, rc, err.message);
        list_params_free(&p);
        return;
    }
    buf_t b = {0}, hdr = {0};
    buf_append(&b, "[", 1);
    size_t n = factum_names_count(l);
    for (size_t i = 0; i < n; i++) {
        if (i) buf_append(&b, ",", 1);
        (streams ? render_stream : render_category)(&b, db, factum_names_name(l, i), factum_names_position(l, i));
    }
    buf_append(&b, "]", 1);
    if (n == p.limit) list_link(&hdr, streams ? "/streams" : "/categories", &p, factum_names_name(l, n - 1));
    conn_respond(c, 200, "application/json", hdr.ptr, b.ptr, b.len);
    buf_free(&b);
    buf_free(&hdr);
    factum_names_free(l);
    list_params_free(&p);
}

void api_list_streams(conn *c, const route_args *a, factum_str_t body) {
    (void)a, (void)body;
    list_answer(c, true);
}

void api_list_categories(conn *c, const route_args *a, factum_str_t body) {
    (void)a, (void)body;
    list_answer(c, false);
}
