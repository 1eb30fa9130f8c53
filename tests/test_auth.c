/*
 * test_auth.c — API keys, authorization and audit (src/auth/keys.c, src/server/guard.c,
 * src/server/audit.c; docs/security.md): the engine's parsing and matching with every limit
 * one past it; a real server's authorization matrix generated from the route table (every
 * route × no key, bad keys, revoked, expired, each role, roles held to other streams and
 * groups) against a trivially correct model of the roles; bad credentials one by one; a
 * revocation closing an open subscription; the audit records; a key made on the data folder
 * before the first start; and a server without keys as open as before.
 */
#include "../src/auth/keys.h"
#include "../src/server/route.h"
#include "test_server.h"

#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- the engine on its own ---- */

static int parse(const char *json, auth_spec *s) {
    factum_error_t err = {0};
    return auth_spec_parse(str_c(json), 1000000, s, &err);
}

TEST(a_key_spec_is_checked_member_by_member_with_each_limit_one_past) {
    auth_spec s;
    CHECK_RC(parse("{\"role\":\"reader\",\"streams\":[\"order-*\",\"category:pay\",\"one\"],\"expires\":\"30d\"}", &s),
             0);
    CHECK(s.role == AUTH_READER && s.nstreams == 3 && s.expires_us == 1000000 + 30 * 86400000000LL);
    const char *bad[] = {
        "[]",
        "{}",
        "{\"role\":\"root\"}",
        "{\"role\":\"admin\",\"colour\":1}",
        "{\"role\":\"reader\",\"streams\":[\"$keys\"]}",        /* system streams are admin's */
        "{\"role\":\"reader\",\"streams\":[\"a*b\"]}",          /* a star only at the end */
        "{\"role\":\"reader\",\"streams\":[\"category:a-b\"]}", /* a category has no dash */
        "{\"role\":\"reader\",\"streams\":[\"\"]}",
        "{\"role\":\"admin\",\"streams\":[\"a\"]}",
        "{\"role\":\"reader\",\"groups\":[\"g\"]}",
        "{\"role\":\"admin\",\"expires\":\"0d\"}",
        "{\"role\":\"admin\",\"expires\":\"1970-01-01T00:00:00Z\"}", /* in the past */
        "{\"role\":\"admin\",\"expires\":\"soon\"}",
        "{\"role\":\"admin\",\"name\":7}",
    };
    for (size_t i = 0; i < ARRAY_LEN(bad); i++)
        CHECK_MSG(parse(bad[i], &s) == FACTUM_EINVAL, "%s was taken", bad[i]);
    /* AUTH_MAX_PATTERNS patterns, then one more; AUTH_MAX_TEXT - 1 bytes of a name, then one more. */
    buf_t b = {0};
    for (int n = AUTH_MAX_PATTERNS; n <= AUTH_MAX_PATTERNS + 1; n++) {
        b.len = 0;
        buf_printf(&b, "{\"role\":\"consumer\",\"groups\":[");
        for (int i = 0; i < n; i++)
            buf_printf(&b, "%s\"g%d\"", i ? "," : "", i);
        buf_printf(&b, "]}");
        CHECK_RC(parse(b.ptr, &s), n == AUTH_MAX_PATTERNS ? 0 : FACTUM_EINVAL);
    }
    for (int n = AUTH_MAX_TEXT - 1; n <= AUTH_MAX_TEXT; n++) {
        b.len = 0;
        buf_printf(&b, "{\"role\":\"admin\",\"name\":\"%0*d\"}", n, 0);
        CHECK_RC(parse(b.ptr, &s), n == AUTH_MAX_TEXT - 1 ? 0 : FACTUM_EINVAL);
    }
    buf_free(&b);
}

TEST(tokens_are_checked_by_hash_and_scopes_by_pattern_category_and_name) {
    factum_t *db = test_open(test_dir(), NULL);
    auth_keys_t *ks;
    factum_error_t err = {0};
    CHECK_RC(auth_keys_open(db, &ks, &err), 0);
    CHECK(!auth_keys_enforced(ks));
    auth_spec s;
    CHECK_RC(parse("{\"role\":\"writer\",\"streams\":[\"order-*\",\"category:pay\",\"one\"]}", &s), 0);
    char token[AUTH_TOKEN_LEN + 1];
    auth_key k;
    CHECK_RC(auth_key_create(ks, &s, "local", token, &k, &err), 0);
    CHECK(auth_keys_enforced(ks) && strlen(token) == AUTH_TOKEN_LEN && !strncmp(token + 3, k.id, AUTH_ID_LEN));
    auth_who who;
    int64_t now = clock_realtime_us();
    CHECK_EQ(auth_authenticate(ks, str_c(token), now, &who), AUTH_OK);
    char wrong[AUTH_TOKEN_LEN + 1];
    memcpy(wrong, token, sizeof wrong);
    wrong[AUTH_TOKEN_LEN - 1] ^= 1; /* the right id, a wrong secret */
    CHECK_EQ(auth_authenticate(ks, str_c(wrong), now, &who), AUTH_UNKNOWN);
    CHECK_EQ(auth_authenticate(ks, (factum_str_t){token, AUTH_TOKEN_LEN - 1}, now, &who), AUTH_MALFORMED);
    CHECK_EQ(auth_authenticate(ks, str_c(token), now, &who), AUTH_OK);
    static const struct {
        auth_perm p;
        const char *scope;
        auth_result want;
    } cases[] = {
        {PERM_WRITE, "order-1", AUTH_OK},
        {PERM_WRITE, "order", AUTH_FORBIDDEN},
        {PERM_READ, "pay-7", AUTH_OK},
        {PERM_READ, "pay", AUTH_OK},
        {PERM_READ, "payment-7", AUTH_FORBIDDEN},
        {PERM_READ, "one", AUTH_OK},
        {PERM_READ, "one-1", AUTH_FORBIDDEN},
        {PERM_READ, "$keys", AUTH_FORBIDDEN},
        {PERM_READ_ALL, "", AUTH_FORBIDDEN},
        {PERM_CONSUME, "g", AUTH_FORBIDDEN},
        {PERM_OPERATE, "", AUTH_FORBIDDEN},
        {PERM_HEALTH, "", AUTH_OK},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++)
        CHECK_MSG(auth_authorize(ks, &who, now, cases[i].p, str_c(cases[i].scope)) == cases[i].want, "%s %s",
                  auth_perm_name(cases[i].p), cases[i].scope);
    /* Any change to the table makes a proof stale; a revoked key then fails. */
    CHECK_RC(auth_key_revoke(ks, k.id, "local", &err), 0);
    CHECK_EQ(auth_authorize(ks, &who, now, PERM_HEALTH, str_c("")), AUTH_STALE);
    CHECK_EQ(auth_authenticate(ks, str_c(token), now, &who), AUTH_REVOKED);
    CHECK(!auth_keys_enforced(ks));
    CHECK_RC(auth_key_revoke(ks, "000000000000", "local", &err), FACTUM_ENOTFOUND);
    auth_keys_close(ks);
    /* Replayed at the next open, hash and all. */
    CHECK_RC(auth_keys_open(db, &ks, &err), 0);
    CHECK_EQ(auth_authenticate(ks, str_c(token), now, &who), AUTH_REVOKED);
    auth_keys_close(ks);
    factum_close(db);
}

/* ---- against a real server ---- */

/* A key made through POST /admin/keys with the admin token (NULL: none); its token (freed by the
   caller) and id. */
static char *make_key(int port, const char *admin, const char *json, char id[AUTH_ID_LEN + 1]) {
    char hdr[160] = "";
    if (admin) snprintf(hdr, sizeof hdr, "Authorization: Bearer %s\r\n", admin);
    char *b = http_body(port, "POST", "/admin/keys", hdr, json, 201);
    char *t = strstr(b, "\"token\":\""), *i = strstr(b, "\"id\":\"");
    CHECK_MSG(t && i && !strstr(b, "\"hash\""), "%s", b);
    char *token = strndup(t + 9, AUTH_TOKEN_LEN);
    if (id) memcpy(id, i + 6, AUTH_ID_LEN), id[AUTH_ID_LEN] = 0;
    free(b);
    return token;
}

static void bearer(char *out, size_t cap, const char *token) {
    snprintf(out, cap, "Authorization: Bearer %s\r\n", token);
}

/* What the model says a role may do: docs/security.md's table, written out apart from the code. */
static bool model_allows(const char *role, auth_perm p, bool held_elsewhere) {
    if (!strcmp(role, "admin")) return true;
    if (p == PERM_HEALTH || p == PERM_PUBLIC) return true;
    if (held_elsewhere) return false; /* every scoped route here names stream x or group x */
    if (!strcmp(role, "operator")) return p == PERM_OPERATE;
    if (!strcmp(role, "writer")) return p == PERM_READ || p == PERM_READ_ALL || p == PERM_WRITE;
    if (!strcmp(role, "reader")) return p == PERM_READ || p == PERM_READ_ALL;
    if (!strcmp(role, "consumer")) return p == PERM_CONSUME;
    return false;
}

TEST_T(every_route_of_the_table_answers_each_kind_of_caller_as_its_permission_says, 180) {
    test_clock_fake();
    srv s = srv_start(test_dir(), NULL);
    char admin_id[AUTH_ID_LEN + 1], id[AUTH_ID_LEN + 1];
    char *admin = make_key(s.port, NULL, "{\"role\":\"admin\"}", admin_id); /* the first needs none */
    static const struct {
        const char *name, *role, *json;
        bool elsewhere;
    } kinds[] = {
        {"operator", "operator", "{\"role\":\"operator\"}", false},
        {"writer", "writer", "{\"role\":\"writer\"}", false},
        {"reader", "reader", "{\"role\":\"reader\"}", false},
        {"consumer", "consumer", "{\"role\":\"consumer\"}", false},
        {"writer of other-*", "writer", "{\"role\":\"writer\",\"streams\":[\"other-*\"]}", true},
        {"reader of category:other", "reader", "{\"role\":\"reader\",\"streams\":[\"category:other\"]}", true},
        {"consumer of group other", "consumer", "{\"role\":\"consumer\",\"groups\":[\"other\"]}", true},
    };
    char *tokens[ARRAY_LEN(kinds)];
    for (size_t k = 0; k < ARRAY_LEN(kinds); k++)
        tokens[k] = make_key(s.port, admin, kinds[k].json, NULL);
    char *revoked = make_key(s.port, admin, "{\"role\":\"admin\"}", id);
    char hdr[200], path[64];
    bearer(hdr, sizeof hdr, admin);
    snprintf(path, sizeof path, "/admin/keys/%s", id);
    free(http_body(s.port, "DELETE", path, hdr, NULL, 200));
    char *expired = make_key(s.port, admin, "{\"role\":\"admin\",\"expires\":\"1h\"}", NULL);
    test_clock_step(2 * 3600 * 1000000LL);
    char unknown[AUTH_TOKEN_LEN + 1];
    snprintf(unknown, sizeof unknown, "fk_%s_%064d", admin_id, 0); /* a known id, a wrong secret */
    const char *refused[] = {revoked, expired, unknown, "nonsense"};

    for (size_t i = 0; i < route_count; i++) {
        const route *r = &route_table[i];
        CHECK_MSG(r->perm > PERM_UNDECLARED && r->perm < PERM_COUNT, "%s: no permission declared", r->pattern);
        char p[200];
        route_example(r->pattern, p, sizeof p);
        const char *m = route_method_name(r->method);
        const char *body = r->method == ROUTE_GET ? NULL : "";
        resp res;
        char www[128];
        /* No key: only the health routes, from loopback, and the dashboard's files. */
        http_do(s.port, m, p, NULL, body, &res);
        if (r->perm == PERM_HEALTH || r->perm == PERM_PUBLIC)
            CHECK_MSG(res.status != 401 && res.status != 403, "%s %s without a key: %d", m, p, res.status);
        else
            CHECK_MSG(res.status == 401 && resp_header(&res, "www-authenticate", www, sizeof www)[0], "%s %s: %d", m, p,
                      res.status);
        resp_free(&res);
        for (size_t k = 0; k < ARRAY_LEN(refused); k++) {
            bearer(hdr, sizeof hdr, refused[k]);
            http_do(s.port, m, p, hdr, body, &res);
            if (r->perm == PERM_PUBLIC) /* credentials are not even looked at */
                CHECK_MSG(res.status != 401 && res.status != 403, "%s %s with refused key %zu: %d", m, p, k,
                          res.status);
            else
                CHECK_MSG(res.status == 401, "%s %s with refused key %zu: %d", m, p, k, res.status);
            resp_free(&res);
        }
        for (size_t k = 0; k <= ARRAY_LEN(kinds); k++) {
            bool last = k == ARRAY_LEN(kinds);
            const char *role = last ? "admin" : kinds[k].role;
            bearer(hdr, sizeof hdr, last ? admin : tokens[k]);
            http_do(s.port, m, p, hdr, body, &res);
            if (model_allows(role, r->perm, !last && kinds[k].elsewhere)) {
                CHECK_MSG(res.status != 401 && res.status != 403, "%s %s as %s: %d %s", m, p,
                          last ? "admin" : kinds[k].name, res.status, res.body);
            } else {
                char want[64];
                snprintf(want, sizeof want, "\"permission\":\"%s\"", auth_perm_name(r->perm));
                CHECK_MSG(res.status == 403 && strstr(res.body, want), "%s %s as %s: %d %s", m, p, kinds[k].name,
                          res.status, res.body);
            }
            resp_free(&res);
        }
    }
    for (size_t k = 0; k < ARRAY_LEN(kinds); k++)
        free(tokens[k]);
    free(admin), free(revoked), free(expired);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}

/* The 401 every bad credential gets: the same body, with WWW-Authenticate. */
static void expect_401(int port, const char *method, const char *path, const char *hdrs, const char *body) {
    static const char want[] = "{\"type\":\"urn:factum:problem:unauthorized\",\"title\":\"Unauthorized\",\"status\":"
                               "401,\"detail\":\"this server wants an API key: Authorization: Bearer TOKEN\"}";
    resp r;
    char www[128];
    http_do(port, method, path, hdrs, body, &r);
    CHECK_MSG(r.status == 401 && !strcmp(r.body, want), "%.60s: %d %s", hdrs ? hdrs : "(none)", r.status, r.body);
    CHECK_MSG(!strcmp(resp_header(&r, "www-authenticate", www, sizeof www), "Bearer realm=\"factum\""), "%s", www);
    resp_free(&r);
}

/* Whether GET /whoami's answer b lists permission name (the "permissions" array, which ends the body). */
static bool whoami_lists(const char *b, auth_perm p) {
    char want[32];
    snprintf(want, sizeof want, "\"%s\"", auth_perm_name(p));
    const char *perms = strstr(b, "\"permissions\":[");
    return perms && strstr(perms, want);
}

TEST(whoami_tells_each_caller_the_permissions_its_role_grants_as_the_route_matrix_does) {
    srv s = srv_start(test_dir(), NULL);
    /* No key in the server: everything, and no key. */
    char *b = http_body(s.port, "GET", "/whoami", NULL, NULL, 200);
    CHECK_MSG(strstr(b, "\"keys_required\":false,\"key\":null"), "%s", b);
    for (auth_perm p = PERM_HEALTH; p < PERM_COUNT; p++)
        CHECK_MSG(whoami_lists(b, p), "%s missing: %s", auth_perm_name(p), b);
    free(b);
    char *admin = make_key(s.port, NULL, "{\"role\":\"admin\"}", NULL);
    static const struct {
        const char *role, *json;
        bool patterns;
    } kinds[] = {
        {"admin", "{\"role\":\"admin\"}", false},
        {"operator", "{\"role\":\"operator\"}", false},
        {"writer", "{\"role\":\"writer\"}", false},
        {"reader", "{\"role\":\"reader\"}", false},
        {"consumer", "{\"role\":\"consumer\",\"groups\":[\"g\"]}", false},
        {"writer", "{\"role\":\"writer\",\"streams\":[\"order-*\"]}", true},
        {"reader", "{\"role\":\"reader\",\"streams\":[\"category:order\"]}", true},
    };
    char hdr[200];
    for (size_t k = 0; k < ARRAY_LEN(kinds); k++) {
        char id[AUTH_ID_LEN + 1], want[64];
        char *t = make_key(s.port, admin, kinds[k].json, id);
        bearer(hdr, sizeof hdr, t);
        b = http_body(s.port, "GET", "/whoami", hdr, NULL, 200);
        snprintf(want, sizeof want, "\"id\":\"%s\",\"role\":\"%s\"", id, kinds[k].role);
        CHECK_MSG(strstr(b, "\"keys_required\":true") && strstr(b, want) && !strstr(b, "token") && !strstr(b, "hash"),
                  "%s", b);
        /* What the matrix test's model allows on an unscoped route; read-all not to a key held to some streams. */
        for (auth_perm p = PERM_HEALTH; p < PERM_COUNT; p++) {
            bool allowed = model_allows(kinds[k].role, p, false) && !(p == PERM_READ_ALL && kinds[k].patterns);
            CHECK_MSG(whoami_lists(b, p) == allowed, "%s: %s %s", kinds[k].json, auth_perm_name(p), b);
        }
        free(b), free(t);
    }
    /* Keys required and none sent (loopback): health only. A bad key: 401, as everywhere. */
    b = http_body(s.port, "GET", "/whoami", NULL, NULL, 200);
    CHECK_MSG(strstr(b, "\"keys_required\":true,\"key\":null,\"permissions\":[\"health\"]}"), "%s", b);
    free(b);
    expect_401(s.port, "GET", "/whoami", "Authorization: Bearer nonsense\r\n", NULL);
    free(admin);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}

TEST(bad_credentials_one_by_one_get_one_401_that_says_nothing_and_write_nothing) {
    srv s = srv_start(test_dir(), NULL);
    char *admin = make_key(s.port, NULL, "{\"role\":\"admin\"}", NULL);
    char *reader = make_key(s.port, admin, "{\"role\":\"reader\"}", NULL);
    const char *ev = "{\"type\":\"A\"}";
    const char *ct = "Content-Type: application/json\r\n";
    buf_t h = {0};
    const char *fixed[] = {
        "",
        "Authorization: Bearer\r\n",
        "Authorization: Bearer \r\n",
        "Authorization: Bearer fk_nothing\r\n",
        "Authorization: Basic YWRtaW46YWRtaW4=\r\n",
        "Authorization: Token abc\r\n",
        "Authorization: fk_000000000000_00\r\n",
    };
    for (size_t i = 0; i < ARRAY_LEN(fixed); i++) {
        h.len = 0;
        buf_printf(&h, "%s%s", ct, fixed[i]);
        expect_401(s.port, "POST", "/streams/s-1", h.ptr, ev);
    }
    /* The admin's token with a scheme other than Bearer, or sent in the query string (refused
       even beside a valid header). */
    h.len = 0;
    buf_printf(&h, "%sAuthorization: Basic %s\r\n", ct, admin);
    expect_401(s.port, "POST", "/streams/s-1", h.ptr, ev);
    h.len = 0;
    buf_printf(&h, "%sAuthorization: Bearer %s\r\n", ct, admin);
    buf_t p = {0};
    buf_printf(&p, "/streams/s-1?token=%s", admin);
    expect_401(s.port, "POST", p.ptr, "Content-Type: application/json\r\n", ev);
    expect_401(s.port, "POST", p.ptr, h.ptr, ev);
    p.len = 0;
    buf_printf(&p, "/streams/s-1?limit=5&access_token=%s", admin);
    expect_401(s.port, "GET", p.ptr, h.ptr, NULL);
    /* Credentials of AUTH_MAX_CREDENTIAL bytes are looked at (and unknown); one more is refused
       unread. A header line past the parser's 8 KiB is 431 before any of this. */
    for (size_t n = AUTH_MAX_CREDENTIAL; n <= AUTH_MAX_CREDENTIAL + 1; n++) {
        h.len = 0;
        buf_printf(&h, "%sAuthorization: Bearer %0*d\r\n", ct, (int)(n - 7), 0);
        expect_401(s.port, "POST", "/streams/s-1", h.ptr, ev);
    }
    h.len = 0;
    buf_printf(&h, "%sAuthorization: Bearer %0*d\r\n", ct, 8192 + 1 - 22, 0); /* a line of 8 KiB + 1 */
    expect_status(s.port, "POST", "/streams/s-1", h.ptr, ev, 431, "too long");
    /* A valid key without the permission: 403 naming it, and nothing written either. */
    h.len = 0;
    buf_printf(&h, "%sAuthorization: Bearer %s\r\n", ct, reader);
    expect_status(s.port, "POST", "/streams/s-1", h.ptr, ev, 403, "'write'");
    /* The scheme's name is case-insensitive; nothing of the above reached the stream. */
    h.len = 0;
    buf_printf(&h, "Authorization: bearer %s\r\n", admin);
    expect_status(s.port, "GET", "/streams/s-1", h.ptr, NULL, 404, NULL);
    buf_free(&h);
    buf_free(&p);
    free(admin), free(reader);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}

/* Opens a subscription on a new connection and reads its head; the connection. */
static int subscribe(int port, const char *path, const char *token) {
    int fd = http_connect(port);
    char req[400];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n%s%s%s\r\n",
                     path, token ? "Authorization: Bearer " : "", token ? token : "", token ? "\r\n" : "");
    http_send(fd, req, (size_t)n);
    char head[512];
    ssize_t got = recv(fd, head, sizeof head - 1, 0);
    CHECK_MSG(got > 12 && !strncmp(head, "HTTP/1.1 200", 12), "%.*s", (int)(got > 0 ? got : 0), head);
    return fd;
}

/* Reads until the server closes fd (recv 0); false if it times out (the 10 s of http_connect). */
static bool closed_by_server(int fd) {
    char b[4096];
    ssize_t n;
    while ((n = recv(fd, b, sizeof b, 0)) > 0) {
    }
    return n == 0;
}

TEST(revoking_a_key_closes_its_open_subscriptions_and_a_first_key_closes_anonymous_ones) {
    srv s = srv_start(test_dir(), NULL);
    int anon = subscribe(s.port, "/all", NULL); /* no keys yet: open to all */
    char id[AUTH_ID_LEN + 1], hdr[200], path[64];
    char *admin = make_key(s.port, NULL, "{\"role\":\"admin\"}", NULL);
    CHECK(closed_by_server(anon));
    close(anon);
    char *reader = make_key(s.port, admin, "{\"role\":\"reader\",\"streams\":[\"s-*\"]}", id);
    int fd = subscribe(s.port, "/streams/s-1", reader);
    int other = subscribe(s.port, "/all", admin);
    bearer(hdr, sizeof hdr, admin);
    snprintf(path, sizeof path, "/admin/keys/%s", id);
    free(http_body(s.port, "DELETE", path, hdr, NULL, 200));
    CHECK(closed_by_server(fd));
    close(fd);
    bearer(hdr, sizeof hdr, reader);
    expect_401(s.port, "GET", "/streams/s-1", hdr, NULL);
    /* The admin's subscription stays open: an append reaches it. */
    char ah[300];
    snprintf(ah, sizeof ah, "Content-Type: application/json\r\nAuthorization: Bearer %s\r\n", admin);
    free(http_body(s.port, "POST", "/streams/s-1", ah, "{\"type\":\"StillHere\"}", 201));
    char b[8192];
    size_t n = 0;
    while (n < sizeof b - 1 && !memmem(b, n, "StillHere", 9)) {
        ssize_t k = recv(other, b + n, sizeof b - 1 - n, 0);
        CHECK_MSG(k > 0, "the admin's subscription ended");
        n += (size_t)k;
    }
    close(other);
    free(admin), free(reader);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}

TEST(audit_records_changes_and_refused_requests_with_key_and_peer_for_admins_only) {
    srv s = srv_start(test_dir(), NULL);
    char admin_id[AUTH_ID_LEN + 1], reader_id[AUTH_ID_LEN + 1], hdr[200];
    char *admin = make_key(s.port, NULL, "{\"role\":\"admin\"}", admin_id);
    char *reader = make_key(s.port, admin, "{\"role\":\"reader\"}", reader_id);
    bearer(hdr, sizeof hdr, admin);
    free(http_body(s.port, "PUT", "/groups/g", hdr, "{\"source\":{\"stream\":\"s-1\"}}", 201));
    char rh[300];
    snprintf(rh, sizeof rh, "Content-Type: application/json\r\nAuthorization: Bearer %s\r\n", reader);
    char unknown[200];
    snprintf(unknown, sizeof unknown, "Authorization: Bearer fk_%s_%064d\r\n", admin_id, 0);
    for (int i = 0; i < 5; i++) { /* refused five times: one record now, the rest counted */
        expect_status(s.port, "POST", "/streams/s-1", rh, "{\"type\":\"A\"}", 403, "'write'");
        expect_401(s.port, "GET", "/streams", unknown, NULL);
    }
    expect_status(s.port, "GET", "/streams/$audit", rh, NULL, 403, "'admin'");
    expect_status(s.port, "GET", "/all?system=true", rh, NULL, 403, "'admin'");
    char want[200];
    char *b = NULL;
    for (int tries = 0; tries < 200; tries++) { /* the records are appended asynchronously */
        free(b);
        b = http_body(s.port, "GET", "/streams/%24audit", hdr, NULL, 200);
        if (strstr(b, "\"reason\":\"unknown\"")) break;
        usleep(20000);
    }
    snprintf(want, sizeof want,
             "\"who\":\"anonymous\",\"peer\":\"127.0.0.1\",\"method\":\"POST\",\"path\":\"/admin/keys\"");
    CHECK_MSG(strstr(b, want), "the first key's creation: %s", b);
    snprintf(want, sizeof want,
             "\"who\":\"%s\",\"peer\":\"127.0.0.1\",\"method\":\"PUT\",\"path\":\"/groups/g\",\"status\":201",
             admin_id);
    CHECK_MSG(strstr(b, want), "the group's definition: %s", b);
    snprintf(want, sizeof want, "\"who\":\"%s\",\"peer\":\"127.0.0.1\",\"method\":\"POST\",\"path\":\"/streams/s-1\"",
             reader_id);
    CHECK_MSG(strstr(b, want) && strstr(b, "\"reason\":\"forbidden\",\"permission\":\"write\",\"count\":1"), "%s", b);
    int unknowns = 0, forbidden = 0;
    for (const char *p = b; (p = strstr(p, "\"reason\":\"unknown\"")); p++)
        unknowns++;
    for (const char *p = b; (p = strstr(p, "\"permission\":\"write\"")); p++)
        forbidden++;
    CHECK_MSG(unknowns == 1 && forbidden == 1, "aggregated: %d %d: %s", unknowns, forbidden, b);
    CHECK_MSG(!strstr(b, reader + 16), "a token in the audit: %s", b);
    free(b);
    free(admin), free(reader);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}

TEST(a_key_made_on_the_data_folder_before_the_first_start_is_then_required_by_the_server) {
    char cmd[1200], out[4096], url[64];
    snprintf(cmd, sizeof cmd, "%s --data-dir %s key create --role admin --name ops 2>/dev/null", test_bin(),
             test_dir());
    CHECK_EQ(test_run(cmd, out, sizeof out), 0);
    CHECK_MSG(strlen(out) == AUTH_TOKEN_LEN + 1 && !strncmp(out, "fk_", 3), "%s", out);
    char token[AUTH_TOKEN_LEN + 1];
    memcpy(token, out, AUTH_TOKEN_LEN);
    token[AUTH_TOKEN_LEN] = 0;
    snprintf(cmd, sizeof cmd, "%s --data-dir %s key ls", test_bin(), test_dir());
    CHECK_EQ(test_run(cmd, out, sizeof out), 0);
    CHECK_MSG(strstr(out, "\"role\":\"admin\"") && strstr(out, "\"name\":\"ops\"") && !strstr(out, "hash") &&
                  !strstr(out, token + 16),
              "%s", out);
    srv s = srv_start(test_dir(), NULL);
    expect_401(s.port, "GET", "/streams", NULL, NULL);
    char hdr[200];
    bearer(hdr, sizeof hdr, token);
    free(http_body(s.port, "GET", "/streams", hdr, NULL, 200));
    expect_status(s.port, "GET", "/health", NULL, NULL, 200, NULL); /* from loopback */
    snprintf(url, sizeof url, "http://127.0.0.1:%d", s.port);
    /* The command line: --token, then $FACTUM_TOKEN; without either, exit 7. */
    snprintf(cmd, sizeof cmd, "%s --server %s --token %s streams 2>&1", test_bin(), url, token);
    CHECK_EQ(test_run(cmd, out, sizeof out), 0);
    snprintf(cmd, sizeof cmd, "FACTUM_TOKEN=%s %s --server %s append s-1 A '{}' 2>&1", token, test_bin(), url);
    CHECK_EQ(test_run(cmd, out, sizeof out), 0);
    snprintf(cmd, sizeof cmd, "FACTUM_TOKEN=nope %s --server %s --token %s read s-1 2>&1", test_bin(), url, token);
    CHECK_EQ(test_run(cmd, out, sizeof out), 0);
    snprintf(cmd, sizeof cmd, "%s --server %s read s-1 2>&1", test_bin(), url);
    CHECK_EQ(test_run(cmd, out, sizeof out), 7);
    CHECK_MSG(strstr(out, "API key"), "%s", out);
    /* Against the server: create prints the token alone, ls never shows one, revoke works. */
    snprintf(cmd, sizeof cmd, "%s --server %s --token %s key create --role reader --streams 'order-*' pay 2>/dev/null",
             test_bin(), url, token);
    CHECK_EQ(test_run(cmd, out, sizeof out), 0);
    CHECK_MSG(strlen(out) == AUTH_TOKEN_LEN + 1, "%s", out);
    char id[AUTH_ID_LEN + 1];
    memcpy(id, out + 3, AUTH_ID_LEN), id[AUTH_ID_LEN] = 0;
    snprintf(cmd, sizeof cmd, "%s --server %s --token %s key ls", test_bin(), url, token);
    CHECK_EQ(test_run(cmd, out, sizeof out), 0);
    CHECK_MSG(strstr(out, "\"streams\":[\"order-*\",\"pay\"]") && !strstr(out, "token"), "%s", out);
    snprintf(cmd, sizeof cmd, "%s --server %s --token %s key revoke %s", test_bin(), url, token, id);
    CHECK_EQ(test_run(cmd, out, sizeof out), 0);
    snprintf(cmd, sizeof cmd, "%s --server %s --token %s key create --role root 2>&1", test_bin(), url, token);
    CHECK_EQ(test_run(cmd, out, sizeof out), 1);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    /* The client library sends the token too. */
}

TEST(without_keys_every_request_is_allowed_as_before_and_nothing_is_audited) {
    srv s = srv_start(test_dir(), NULL);
    const char *junk = "Content-Type: application/json\r\nAuthorization: Basic junk\r\n";
    free(http_body(s.port, "POST", "/streams/s-1", junk, "{\"type\":\"A\"}", 201));
    free(http_body(s.port, "PUT", "/groups/g", NULL, "{\"source\":{\"stream\":\"s-1\"}}", 201));
    expect_status(s.port, "GET", "/streams/$audit", NULL, NULL, 404, NULL);
    expect_status(s.port, "GET", "/admin/keys", NULL, NULL, 200, "[]");
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}

TEST(no_client_schedule_or_admin_can_write_a_system_stream) {
    srv s = srv_start(test_dir(), NULL);
    char *admin = make_key(s.port, NULL, "{\"role\":\"admin\"}", NULL);
    char hdr[300];
    snprintf(hdr, sizeof hdr, "Content-Type: application/json\r\nAuthorization: Bearer %s\r\n", admin);
    expect_status(s.port, "POST", "/streams/$keys", hdr, "{\"type\":\"KeyCreated\",\"data\":{}}", 400, "'$'");
    expect_status(s.port, "POST", "/streams/%24audit", hdr, "{\"type\":\"A\"}", 400, "'$'");
    expect_status(s.port, "PUT", "/streams/$keys/snapshot", hdr, "{\"revision\":0,\"state\":{}}", 400, NULL);
    expect_status(s.port, "POST", "/schedules", hdr,
                  "{\"at\":\"2999-01-01T00:00:00Z\",\"stream\":\"$keys\",\"event\":{\"type\":\"KeyCreated\"}}", 400,
                  "'$'");
    /* A saga's command template to a system stream is refused at PUT (tests/test_sagas.c has
       the rendered case): the same check. */
    expect_status(s.port, "PUT", "/sagas/evil", hdr,
                  "{\"start_on\":\"OrderPlaced\",\"instance_id\":\"data.orderId\",\"steps\":[{\"name\":\"pay\","
                  "\"command\":{\"stream\":\"$keys\",\"type\":\"KeyCreated\"},\"success\":[\"PaymentReserved\"]}]}",
                  400, "system stream");
    free(admin);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}
