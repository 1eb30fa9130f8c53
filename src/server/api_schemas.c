/*
 * api_schemas.c — the schema registry over HTTP (docs/schemas.md):
 *
 *   GET /schemas                          every type with a schema: mode, latest version, counts
 *   GET /schemas/{type}                   one type: its versions and their compatibility
 *   GET /schemas/{type}/versions/{n}      the schema document of version n, as registered
 *   PUT /schemas/{type}/versions/{n}      registers version n (the body is the schema);
 *                                         ?compatibility=backward|forward|full|none
 *                                         &mode=off|warn|enforce &dry_run=true
 *   PUT /schemas/{type}/versions/{n}/upcast  the steps from version n-1 to n: {"steps":[...]}
 *
 * The registry (src/schema/registry.h) decides and records; a PUT reads stored events (the
 * compatibility check, a dry run), so it runs as a job on a worker thread. The 422 of an
 * append refused by a schema is rendered here too (schema_problem), and the metrics.
 */
#include "../base/json.h"
#include "../schema/registry.h"
#include "api.h"
#include "http.h"

#include <stdio.h>
#include <stdlib.h>

static const char *const JSON = "application/json";

typedef struct put_job {
    char type[FACTUM_MAX_ATTRIBUTE + 1];
    schema_put p;
    buf_t body;
    int rc;
    factum_error_t err;
    schema_check check;
} put_job;

static void put_free(void *p) {
    put_job *j = p;
    buf_free(&j->body);
    schema_check_free(&j->check);
    free(j);
}

static void check_members(buf_t *b, const schema_check *k) {
    if (k->forward_ran)
        buf_printf(b, "\"forward\":{\"compatible\":%s,\"count\":%zu,\"differences\":[%.*s]},",
                   k->forward.count ? "false" : "true", k->forward.count, (int)k->forward.json.len,
                   k->forward.json.ptr ? k->forward.json.ptr : "");
    buf_printf(b, "\"checked\":%llu,\"failing\":%llu,\"sampled\":%s,\"failures\":[%.*s]",
               (unsigned long long)k->checked, (unsigned long long)k->failing, k->sampled ? "true" : "false",
               (int)k->failures.len, k->failures.ptr ? k->failures.ptr : "");
}

static void put_work(conn *c) {
    put_job *j = c->job;
    j->p.doc = (factum_str_t){j->body.ptr ? j->body.ptr : "", j->body.len};
    j->rc = schema_registry_put(c->l->srv->schemas, &j->p, &j->check, &j->err);
}

static void put_done(conn *c) {
    put_job *j = c->job;
    c->job = NULL;
    buf_t b = {0};
    if (j->rc == FACTUM_ECONFLICT) {
        check_members(&b, &j->check);
        bool incompatible = j->check.failing || j->check.forward.count;
        conn_problem(c, 409, incompatible ? "schema-incompatible" : "schema-version", b.ptr, "%s", j->err.message);
    } else if (j->rc) {
        server_problem(c, j->rc, j->err.message);
    } else {
        buf_append(&b, "{\"type\":", 8);
        json_escape(&b, j->type, strlen(j->type));
        buf_printf(&b, ",\"version\":%u,\"compatibility\":\"%s\",\"mode\":\"%s\",\"dry_run\":%s,", j->p.version,
                   schema_compat_name(j->p.compat), schema_mode_name(j->p.mode), j->p.dry_run ? "true" : "false");
        check_members(&b, &j->check);
        buf_append(&b, "}", 1);
        char loc[600];
        buf_t enc = {0};
        buf_url_encode(&enc, j->type, strlen(j->type));
        snprintf(loc, sizeof loc, "Location: /schemas/%.*s/versions/%u\r\n", (int)MIN(enc.len, 500), enc.ptr,
                 j->p.version);
        buf_free(&enc);
        conn_respond(c, j->p.dry_run ? 200 : 201, JSON, j->p.dry_run ? NULL : loc, b.ptr, b.len);
    }
    buf_free(&b);
    put_free(j);
}

/* The {type} param, percent-decoded, into type; false having answered 400. */
static bool type_arg(conn *c, factum_str_t seg, char type[FACTUM_MAX_ATTRIBUTE + 1]) {
    buf_t t = {0};
    bool ok = !http_unescape(seg, false, &t) && t.len >= 1 && t.len <= FACTUM_MAX_ATTRIBUTE && text_valid(t.ptr, t.len);
    if (ok)
        memcpy(type, t.ptr, t.len), type[t.len] = 0;
    else
        conn_problem(c, 400, "bad-request", NULL,
                     "an event type is 1 to %d bytes of UTF-8 without control characters (percent-encoded)",
                     FACTUM_MAX_ATTRIBUTE);
    buf_free(&t);
    return ok;
}

/* The {n} param; false having answered 400. */
static bool version_arg(conn *c, factum_str_t seg, uint32_t *out) {
    uint64_t v;
    if (str_u64(seg, &v) && v >= 1 && v <= SCHEMA_MAX_VERSIONS) return *out = (uint32_t)v, true;
    conn_problem(c, 400, "bad-request", NULL, "a schema version is a whole number from 1 to %d", SCHEMA_MAX_VERSIONS);
    return false;
}

/* compatibility, mode and dry_run into p; false having answered 400. */
static bool put_options(conn *c, schema_put *p) {
    factum_str_t q = c->req->h.query, k;
    buf_t v = {0};
    bool ok = true;
    int r;
    p->compat = SCHEMA_COMPAT_BACKWARD, p->mode = SCHEMA_MODE_ENFORCE;
    while (ok && (r = http_query_next(&q, &k, &v)) == 1) {
        const char *val = v.ptr ? v.ptr : "";
        if (str_eq(k, str_c("compatibility")))
            ok = (p->compat = schema_compat_parse(val)) >= 0;
        else if (str_eq(k, str_c("mode")))
            ok = (p->mode = schema_mode_parse(val)) >= 0;
        else if (str_eq(k, str_c("dry_run")))
            ok = (p->dry_run = !strcmp(val, "true")) || !strcmp(val, "false");
        else
            ok = false;
    }
    if (!ok || r < 0)
        conn_problem(c, 400, "bad-request", NULL,
                     "query parameters are compatibility=backward|forward|full|none, mode=off|warn|enforce and "
                     "dry_run=true|false");
    buf_free(&v);
    return ok && r >= 0;
}

void api_put_schema(conn *c, const route_args *a, factum_str_t body) {
    put_job *j = calloc(1, sizeof *j);
    if (!j) {
        conn_problem(c, 503, "unavailable", NULL, "out of memory");
        return;
    }
    j->p.type = j->type;
    if (!type_arg(c, a->p[0], j->type) || !version_arg(c, a->p[1], &j->p.version) || !put_options(c, &j->p)) {
        put_free(j);
        return;
    }
    if (body.len > SCHEMA_MAX_BYTES) {
        put_free(j);
        conn_problem(c, 413, "too-large", NULL, "the schema is %zu bytes, the limit is %d", body.len, SCHEMA_MAX_BYTES);
        return;
    }
    if (buf_append(&j->body, body.ptr, body.len)) {
        put_free(j);
        conn_problem(c, 503, "unavailable", NULL, "out of memory");
        return;
    }
    c->job = j;
    server_submit_job(c, put_work, put_done, put_free);
}

static void upcast_work(conn *c) {
    put_job *j = c->job;
    j->rc = schema_registry_upcast(c->l->srv->schemas, j->type, j->p.version,
                                   (factum_str_t){j->body.ptr ? j->body.ptr : "", j->body.len}, &j->err);
}

static void upcast_done(conn *c) {
    put_job *j = c->job;
    c->job = NULL;
    if (j->rc == FACTUM_ECONFLICT)
        conn_problem(c, 409, "conflict", NULL, "%s", j->err.message);
    else if (j->rc)
        server_problem(c, j->rc, j->err.message);
    else {
        buf_t b = {0};
        buf_append(&b, "{\"type\":", 8);
        json_escape(&b, j->type, strlen(j->type));
        buf_printf(&b, ",\"version\":%u,\"upcast\":%.*s}", j->p.version, (int)j->body.len, j->body.ptr);
        conn_respond(c, 201, JSON, NULL, b.ptr, b.len);
        buf_free(&b);
    }
    put_free(j);
}

void api_put_upcast(conn *c, const route_args *a, factum_str_t body) {
    put_job *j = calloc(1, sizeof *j);
    if (!j || buf_append(&j->body, body.ptr, body.len)) {
        free(j);
        conn_problem(c, 503, "unavailable", NULL, "out of memory");
        return;
    }
    if (!type_arg(c, a->p[0], j->type) || !version_arg(c, a->p[1], &j->p.version)) {
        put_free(j);
        return;
    }
    c->job = j;
    server_submit_job(c, upcast_work, upcast_done, put_free);
}

void api_list_schemas(conn *c, const route_args *a, factum_str_t body) {
    (void)a, (void)body;
    buf_t b = {0};
    schema_registry_list_json(c->l->srv->schemas, &b);
    conn_respond(c, 200, JSON, NULL, b.ptr, b.len);
    buf_free(&b);
}

void api_show_schema(conn *c, const route_args *a, factum_str_t body) {
    (void)body;
    char type[FACTUM_MAX_ATTRIBUTE + 1];
    if (!type_arg(c, a->p[0], type)) return;
    buf_t b = {0};
    if (schema_registry_type_json(c->l->srv->schemas, type, &b))
        conn_problem(c, 404, "not-found", NULL, "%s has no schema", type);
    else
        conn_respond(c, 200, JSON, NULL, b.ptr, b.len);
    buf_free(&b);
}

void api_get_schema(conn *c, const route_args *a, factum_str_t body) {
    (void)body;
    char type[FACTUM_MAX_ATTRIBUTE + 1];
    uint32_t v;
    if (!type_arg(c, a->p[0], type) || !version_arg(c, a->p[1], &v)) return;
    buf_t b = {0};
    if (schema_registry_version_json(c->l->srv->schemas, type, v, &b))
        conn_problem(c, 404, "not-found", NULL, "%s has no schema version %u", type, v);
    else
        conn_respond(c, 200, "application/schema+json", NULL, b.ptr, b.len);
    buf_free(&b);
}

void schema_problem(conn *c, const char *msg) {
    buf_t m = {0};
    buf_printf(&m, "\"violations\":[%s]", schema_registry_violations(msg));
    conn_problem(c, 422, "schema-violation", m.ptr, "%s", msg);
    buf_free(&m);
}

static void metric_line(void *ctx, const char *type, uint64_t warned, uint64_t refused) {
    buf_t *b = ctx, t = {0};
    for (const char *p = type; *p; p++) { /* a label value escapes \, " and newlines */
        if (*p == '\\' || *p == '"') buf_append(&t, "\\", 1);
        buf_append(&t, p, 1);
    }
    buf_printf(b, "factum_schema_violations_total{type=\"%.*s\",action=\"warned\"} %llu\n", (int)t.len, t.ptr,
               (unsigned long long)warned);
    buf_printf(b, "factum_schema_violations_total{type=\"%.*s\",action=\"refused\"} %llu\n", (int)t.len, t.ptr,
               (unsigned long long)refused);
    buf_free(&t);
}

void schemas_metrics(server *s, buf_t *b) {
    api_metric_head(b, "factum_schema_violations_total", "counter",
                    "Events whose data failed their type's schema: accepted (warn) or refused (enforce).");
    schema_registry_each(s->schemas, metric_line, b);
}
