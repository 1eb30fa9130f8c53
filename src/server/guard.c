/*
 * guard.c — who may run a request: the check between the route table and the handler.
 *
 * api_handle (route.c) calls guard_admit once it has the route. With no key in the table
 * nothing is checked (the developer's laptop, `make run`). Once a key exists every request
 * needs one, sent as "Authorization: Bearer TOKEN", except the dashboard's static files
 * (PERM_PUBLIC, from anywhere) and the routes of PERM_HEALTH from loopback; credentials that are missing, malformed,
 * too long, unknown, revoked, expired, of another scheme or in the query string are a 401 that says none of that (the
 * audit does); a valid key without the route's permission is a 403 naming it. A refused request never reaches its
 * handler, so it writes nothing but its audit record.
 *
 * The hot path hashes nothing: the connection keeps the Authorization bytes that last proved a
 * key and the proof (auth_who, with the table's generation). The same bytes again on the same
 * connection are compared (CRYPTO_memcmp) instead of hashed; any change to the table makes
 * every proof stale, and the next request proves itself again. The loop's sweep asks
 * guard_lapsed of subscriptions and long polls, and closes those whose key was revoked or ran
 * out.
 *
 * Rate limits (docs/limits.md, "Keys"): a handler that appends asks guard_rate once it knows how
 * many events its request holds, before anything is written. The key's own limits, or for a
 * limit it does not set the server's default, go to its bucket (src/auth/rate.c): past them the
 * request is refused whole, 429 with Retry-After while waiting helps, 413 when the request is
 * larger than one second's worth and waiting never will. A key without limits costs nothing
 * more; a request without a key (no keys in the table) has none.
 */
#include "api.h"

#include "../base/json.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <sys/socket.h>

const char *guard_peer(conn *c) {
    if (c->peer[0]) return c->peer;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    snprintf(c->peer, sizeof c->peer, "?");
    if (c->fd < 0 || getpeername(c->fd, (struct sockaddr *)&ss, &sl)) return c->peer;
    if (ss.ss_family == AF_INET)
        inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, c->peer, sizeof c->peer);
    else if (ss.ss_family == AF_INET6)
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, c->peer, sizeof c->peer);
    c->loopback = server_addr_is_loopback(&ss);
    return c->peer;
}

/* 401: the same answer whatever was wrong. */
static void unauthorized(conn *c, const route *r, auth_result why) {
    audit_denied(c, r, why, 401);
    conn_problem_headers(c, 401, "unauthorized", "WWW-Authenticate: Bearer realm=\"factum\"\r\n",
                         "this server wants an API key: Authorization: Bearer TOKEN");
}

static void forbidden(conn *c, const route *r, auth_perm perm) {
    char members[64];
    snprintf(members, sizeof members, "\"permission\":\"%s\"", auth_perm_name(perm));
    audit_denied(c, r, AUTH_FORBIDDEN, 403);
    conn_problem(c, 403, "forbidden", members, "this key does not have the permission '%s' for this resource",
                 auth_perm_name(perm));
}

/* Whether the query string carries a credential (never taken from there), and whether it asks
   for system streams (?system= anything but false). */
static void query_flags(factum_str_t q, bool *token, bool *system) {
    factum_str_t k;
    buf_t v = {0};
    int r;
    *token = *system = false;
    while ((r = http_query_next(&q, &k, &v)) != 0) {
        if (str_eq(k, str_c("token")) || str_eq(k, str_c("access_token"))) *token = true;
        if (r > 0 && str_eq(k, str_c("system")) && !str_eq((factum_str_t){v.ptr, v.len}, str_c("false")))
            *system = true;
        if (r < 0) break;
    }
    buf_free(&v);
}

/* Proves the credentials in value (the Authorization header) and keeps the proof on c. */
static auth_result authenticate(conn *c, factum_str_t value, int64_t now_us) {
    if (value.len > AUTH_MAX_CREDENTIAL || value.len < 7 || !http_token_is((factum_str_t){value.ptr, 6}, "bearer") ||
        value.ptr[6] != ' ')
        return AUTH_MALFORMED;
    factum_str_t token = {value.ptr + 7, value.len - 7};
    while (token.len && token.ptr[0] == ' ')
        token.ptr++, token.len--;
    auth_result r = auth_authenticate(c->l->srv->keys, token, now_us, &c->who);
    c->auth_len = 0;
    if (r == AUTH_OK && value.len <= sizeof c->auth_hdr) {
        memcpy(c->auth_hdr, value.ptr, value.len);
        c->auth_len = (uint8_t)value.len;
    }
    return r;
}

bool guard_admit(conn *c, const route *r, const route_args *a) {
    server *s = c->l->srv;
    c->req_key[0] = 0;
    c->audit = false;                        /* a refused request is audited as one, not as the change it asked */
    if (r->perm == PERM_PUBLIC) return true; /* the dashboard's files: credentials are not even looked at */
    bool change = r->perm >= PERM_OPERATE && r->method != ROUTE_GET;
    if (!auth_keys_enforced(s->keys)) return c->audit = change, true;
    const http_req *h = &c->req->h;
    bool in_query, system;
    query_flags(h->query, &in_query, &system);
    if (in_query) return unauthorized(c, r, AUTH_MALFORMED), false;
    factum_str_t value = http_header_get(h, "authorization");
    if (!value.ptr) {
        if (r->perm == PERM_HEALTH && (guard_peer(c), c->loopback)) return c->audit = change, true;
        return unauthorized(c, r, AUTH_MISSING), false;
    }
    int64_t now = clock_realtime_us();
    auth_result res = AUTH_STALE;
    bool cached = c->auth_len && value.len == c->auth_len && !CRYPTO_memcmp(value.ptr, c->auth_hdr, value.len);
    if (!cached) res = authenticate(c, value, now);
    if (res != AUTH_OK && res != AUTH_STALE) return unauthorized(c, r, res), false;
    /* The scope of the permission: the stream or group the path names (decoded). */
    auth_perm perm = r->perm == PERM_READ_ALL && system ? PERM_ADMIN : r->perm;
    buf_t scope = {0};
    if ((perm == PERM_READ || perm == PERM_WRITE || perm == PERM_CONSUME) && http_unescape(a->p[0], false, &scope))
        scope.len = 0;
    factum_str_t sc = {scope.ptr ? scope.ptr : "", scope.len};
    res = auth_authorize(s->keys, &c->who, now, perm, sc);
    if (res == AUTH_STALE && (res = authenticate(c, value, now)) == AUTH_OK)
        res = auth_authorize(s->keys, &c->who, now, perm, sc);
    if (res == AUTH_FORBIDDEN && (perm == PERM_READ || perm == PERM_WRITE) && sc.len && sc.ptr[0] == '$')
        perm = PERM_ADMIN; /* what a system stream asks */
    buf_free(&scope);
    if (res == AUTH_FORBIDDEN) return forbidden(c, r, perm), false;
    if (res != AUTH_OK) {
        c->auth_len = 0;
        return unauthorized(c, r, res), false;
    }
    memcpy(c->req_key, c->who.id, sizeof c->req_key);
    c->audit = change;
    return true;
}

/* A problem answer with both header lines and extra members (conn_problem has one or the other). */
static void problem(conn *c, int status, const char *slug, const char *headers, const char *members,
                    const char *detail) {
    buf_t b = {0};
    buf_printf(&b, "{\"type\":\"urn:factum:problem:%s\",\"title\":\"%s\",\"status\":%d,\"detail\":", slug,
               http_reason(status), status);
    json_escape(&b, detail, strlen(detail));
    buf_printf(&b, ",%s}", members);
    conn_respond(c, status, "application/problem+json", headers, b.ptr, b.len);
    buf_free(&b);
}

bool guard_rate(conn *c, uint64_t events, uint64_t bytes) {
    if (!c->req_key[0]) return true; /* admitted without a key: there is none to limit */
    server *s = c->l->srv;
    uint64_t per_second[AUTH_LIMITS], units[AUTH_LIMITS] = {[AUTH_LIMIT_APPENDS] = events, [AUTH_LIMIT_BYTES] = bytes};
    for (int l = 0; l < AUTH_LIMITS; l++)
        per_second[l] = c->who.max_per_second[l] == AUTH_RATE_UNSET ? s->cfg.key_max_per_second[l]
                                                                    : (uint64_t)c->who.max_per_second[l];
    if (!per_second[AUTH_LIMIT_APPENDS] && !per_second[AUTH_LIMIT_BYTES]) return true;
    auth_rate_verdict v;
    auth_rate_result r = auth_keys_take(s->keys, &c->who, per_second, units, clock_mono_ns(), &v);
    if (r == AUTH_RATE_OK) return true;
    static const char *const what[AUTH_LIMITS] = {"events", "bytes of request body"};
    char members[160], detail[400], source[64], hdr[40];
    if (c->who.max_per_second[v.limit] == AUTH_RATE_UNSET)
        snprintf(source, sizeof source, "the server's --key-max-%s-per-second", auth_limit_name(v.limit));
    else
        snprintf(source, sizeof source, "the key's %s", auth_limit_member(v.limit));
    snprintf(members, sizeof members, "\"limit\":\"%s\",\"max_per_second\":%llu,\"asked\":%llu",
             auth_limit_name(v.limit), (unsigned long long)v.per_second, (unsigned long long)v.asked);
    if (r == AUTH_RATE_TOO_BIG) {
        snprintf(detail, sizeof detail,
                 "this request has %llu %s and this key may send at most %llu per second (%s): it can never pass; "
                 "send it in smaller parts",
                 (unsigned long long)v.asked, what[v.limit], (unsigned long long)v.per_second, source);
        problem(c, 413, "over-key-rate-limit", NULL, members, detail);
        return false;
    }
    snprintf(detail, sizeof detail, "this key may send at most %llu %s per second (%s); retry in %u s",
             (unsigned long long)v.per_second, what[v.limit], source, v.retry_after_s);
    snprintf(hdr, sizeof hdr, "Retry-After: %u\r\n", v.retry_after_s);
    problem(c, 429, "rate-limited", hdr, members, detail);
    return false;
}

void guard_metrics(server *s, buf_t *b) {
    api_metric_head(
        b, "factum_rate_limited_total", "counter",
        "Requests refused by an API key's rate limit (429, or 413 for one past a second's worth), by limit.");
    for (int l = 0; l < AUTH_LIMITS; l++)
        buf_printf(b, "factum_rate_limited_total{limit=\"%s\"} %llu\n", auth_limit_name((auth_limit)l),
                   (unsigned long long)auth_keys_refused(s->keys, (auth_limit)l));
    api_metric_head(
        b, "factum_key_rate_limit_default", "gauge",
        "The rate limit of keys that set none of their own, per second (--key-max-LIMIT-per-second; 0: none).");
    for (int l = 0; l < AUTH_LIMITS; l++)
        buf_printf(b, "factum_key_rate_limit_default{limit=\"%s\"} %llu\n", auth_limit_name((auth_limit)l),
                   (unsigned long long)s->cfg.key_max_per_second[l]);
}

bool guard_lapsed(conn *c, int64_t now_us) {
    server *s = c->l->srv;
    if (!c->req_key[0]) return auth_keys_enforced(s->keys); /* admitted while there were no keys */
    if (c->who.expires_us && now_us >= c->who.expires_us) return true;
    if (c->who.gen == auth_keys_generation(s->keys)) return false;
    auth_result r = auth_authorize(s->keys, &c->who, now_us, PERM_HEALTH, (factum_str_t){0});
    if (r != AUTH_STALE) return r != AUTH_OK;
    /* The table changed: whether this key is still in it, unrevoked (a fresh proof needs the
       token, which only the header had: prove it again from the cached bytes). */
    if (!c->auth_len) return true;
    return authenticate(c, (factum_str_t){c->auth_hdr, c->auth_len}, now_us) != AUTH_OK;
}
