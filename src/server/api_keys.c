/*
 * api_keys.c — /admin/keys: make, list and revoke API keys (src/auth/keys.h; admin only, as
 * route.c's table says). POST answers the token once, and nothing ever shows it again: a
 * listing has every key without its hash. A create or a revoke appends to $keys and waits for
 * it to be durable, so it runs as a job on a worker thread, not on the loop.
 *
 * GET /whoami tells any caller what it may do: whether the server wants keys, the key it sent
 * (as a listing shows it) and the permissions its role grants (the table of docs/security.md).
 * The dashboard disables in advance what the key may not do; a key's stream and group
 * patterns still narrow READ, WRITE and CONSUME per request, and those refusals stay 403s.
 */
#include "api.h"

#include "../base/json.h"

#include <stdio.h>

/* On a worker: the key of the body j->body, made; j->name its id, j->out its JSON with the token. */
static void create_work(conn *c) {
    named_job *j = c->job;
    auth_spec spec;
    auth_key k;
    char token[AUTH_TOKEN_LEN + 1];
    int64_t now = clock_realtime_us();
    if ((j->rc = auth_spec_parse((factum_str_t){j->body.ptr ? j->body.ptr : "", j->body.len}, now, &spec, &j->err)))
        return;
    const char *by = c->req_key[0] ? c->req_key : "anonymous";
    if ((j->rc = auth_key_create(c->l->srv->keys, &spec, by, token, &k, &j->err))) return;
    snprintf(j->name, sizeof j->name, "%s", k.id);
    auth_key_json(&k, &j->out);
    j->out.len--; /* the closing brace: the token goes in too */
    buf_printf(&j->out, ",\"token\":\"%s\"}", token);
    memset(token, 0, sizeof token);
    j->status = 201;
}

void api_create_key(conn *c, const route_args *a, factum_str_t body) {
    (void)a;
    server_submit_named(c, "", body, false, "/admin/keys/", NULL, create_work);
}

static void list_one(void *ctx, const auth_key *k) {
    buf_t *b = ctx;
    if (b->len > 1) buf_append(b, ",", 1);
    auth_key_json(k, b);
}

void api_list_keys(conn *c, const route_args *a, factum_str_t body) {
    (void)a, (void)body;
    buf_t b = {0};
    buf_append(&b, "[", 1);
    auth_keys_each(c->l->srv->keys, list_one, &b);
    buf_append(&b, "]", 1);
    conn_respond(c, 200, "application/json", NULL, b.ptr, b.len);
    buf_free(&b);
}

static void revoke_work(conn *c) {
    named_job *j = c->job;
    if ((j->rc = auth_key_revoke(c->l->srv->keys, j->name, c->req_key[0] ? c->req_key : "anonymous", &j->err))) return;
    buf_printf(&j->out, "{\"id\":\"%s\",\"revoked\":true}", j->name);
    j->status = 200;
}

void api_revoke_key(conn *c, const route_args *a, factum_str_t body) {
    char id[AUTH_ID_LEN + 1];
    if (a->p[0].len != AUTH_ID_LEN) {
        conn_problem(c, 404, "not-found", NULL, "no key '%.*s'", (int)MIN(a->p[0].len, 64), a->p[0].ptr);
        return;
    }
    memcpy(id, a->p[0].ptr, AUTH_ID_LEN);
    id[AUTH_ID_LEN] = 0;
    server_submit_named(c, id, body, false, "/admin/keys/", NULL, revoke_work);
}

void api_whoami(conn *c, const route_args *a, factum_str_t body) {
    (void)a, (void)body;
    auth_keys_t *ks = c->l->srv->keys;
    bool required = auth_keys_enforced(ks);
    auth_key k;
    bool have = c->req_key[0] && !auth_key_get(ks, c->req_key, &k);
    buf_t b = {0};
    buf_printf(&b, "{\"keys_required\":%s,\"key\":", required ? "true" : "false");
    if (have)
        auth_key_json(&k, &b);
    else
        buf_append(&b, "null", 4);
    buf_append(&b, ",\"permissions\":[", 16);
    int n = 0;
    for (auth_perm p = PERM_HEALTH; p < PERM_COUNT; p++) {
        bool may = !required || (have ? auth_spec_grants(&k.spec, p) : p == PERM_HEALTH);
        if (may) buf_printf(&b, "%s\"%s\"", n++ ? "," : "", auth_perm_name(p));
    }
    buf_append(&b, "]}", 2);
    conn_respond(c, 200, "application/json", "Cache-Control: no-store\r\n", b.ptr, b.len);
    buf_free(&b);
}
