/*
 * origin.c — who may address this server from where: the Host check against DNS rebinding and
 * the CORS policy for pages of other origins (docs/security.md, "Browsers").
 *
 * A request is admitted before its route runs (origin_admit, from api_handle). Its Host must be
 * a name of this server: an IP literal (a rebinding attack needs a name it controls, never an
 * address), `localhost`, or a name given with --public-host; anything else is a 421. A request
 * that carries an Origin (a browser's fetch, form or EventSource from a page) is admitted only
 * when that origin is this server itself or one named with --cors-origin; otherwise a 403, before
 * anything is read or written, so a page on another origin cannot change state through a
 * "simple" request that a browser sends without asking first. Admitted cross-origin requests get
 * Access-Control-Allow-Origin naming their origin (never "*"); preflights (OPTIONS) are answered
 * here, with the methods and headers the API uses.
 */
#include "api.h"

#include <arpa/inet.h>
#include <stdio.h>

/* ---- Host ---- */

/* host without its port: "[::1]:80" → "::1", "a.b:80" → "a.b"; *port the rest after ':'. */
static factum_str_t host_name(factum_str_t host, factum_str_t *port) {
    *port = (factum_str_t){"", 0};
    if (host.len && host.ptr[0] == '[') {
        const char *close = memchr(host.ptr, ']', host.len);
        if (!close) return (factum_str_t){NULL, 0};
        size_t n = (size_t)(close - host.ptr);
        if (n + 1 < host.len) {
            if (close[1] != ':') return (factum_str_t){NULL, 0};
            *port = (factum_str_t){close + 2, host.len - n - 2};
        }
        return (factum_str_t){host.ptr + 1, n - 1};
    }
    const char *colon = host.len ? memchr(host.ptr, ':', host.len) : NULL;
    if (!colon) return host;
    *port = (factum_str_t){colon + 1, host.len - (size_t)(colon - host.ptr) - 1};
    return (factum_str_t){host.ptr, (size_t)(colon - host.ptr)};
}

static bool is_ip_literal(factum_str_t name) {
    char tmp[64];
    unsigned char addr[16];
    if (!name.len || name.len >= sizeof tmp) return false;
    memcpy(tmp, name.ptr, name.len);
    tmp[name.len] = 0;
    return inet_pton(AF_INET, tmp, addr) == 1 || inet_pton(AF_INET6, tmp, addr) == 1;
}

bool origin_host_ok(const server_config *cfg, factum_str_t host) {
    factum_str_t port, name = host_name(host, &port);
    if (!name.ptr || !name.len) return false;
    if (is_ip_literal(name) || http_token_is(name, "localhost")) return true;
    for (size_t i = 0; i < cfg->npublic_hosts; i++) {
        factum_str_t p = str_c(cfg->public_hosts[i]);
        /* "name" allows any port; "name:port" only that one. Names compare case-insensitively. */
        factum_str_t want_port, want = host_name(p, &want_port);
        if (want.len != name.len || strncasecmp(want.ptr, name.ptr, name.len)) continue;
        if (!want_port.len || str_eq(want_port, port)) return true;
    }
    return false;
}

/* ---- Origin ---- */

/* Whether origin (scheme://host[:port]) is this server as the request addressed it. */
static bool origin_is_self(factum_str_t origin, factum_str_t host) {
    for (int i = 0; i < 2; i++) {
        factum_str_t scheme = str_c(i ? "https://" : "http://");
        if (origin.len == scheme.len + host.len && !strncasecmp(origin.ptr, scheme.ptr, scheme.len) &&
            !strncasecmp(origin.ptr + scheme.len, host.ptr, host.len))
            return true;
    }
    return false;
}

static bool origin_listed(const server_config *cfg, factum_str_t origin) {
    for (size_t i = 0; i < cfg->ncors_origins; i++)
        if (str_eq(str_c(cfg->cors_origins[i]), origin)) return true;
    return false;
}

bool origin_admit(conn *c) {
    const http_req *h = &c->req->h;
    const server_config *cfg = &c->l->srv->cfg;
    c->cors_len = 0;
    factum_str_t host = http_header_get(h, "host");
    if (host.ptr && !origin_host_ok(cfg, host)) {
        conn_problem(c, 421, "misdirected-request", NULL,
                     "this server does not answer to the name '%.*s' (an IP address, localhost, or a name given with "
                     "--public-host)",
                     (int)MIN(host.len, 200), host.ptr);
        return false;
    }
    factum_str_t origin = http_header_get(h, "origin");
    bool preflight = str_eq(h->method, str_c("OPTIONS"));
    if (!origin.ptr || (!preflight && origin_is_self(origin, host))) {
        if (preflight) conn_problem(c, 400, "bad-request", NULL, "OPTIONS is a CORS preflight: it needs an Origin");
        return !preflight;
    }
    if (origin.len > sizeof c->cors - 1 || !origin_listed(cfg, origin)) {
        conn_problem(c, 403, "origin-not-allowed", NULL,
                     "requests from pages of origin '%.*s' are not allowed (the server allows the origins named with "
                     "--cors-origin)",
                     (int)MIN(origin.len, 200), origin.ptr);
        return false;
    }
    memcpy(c->cors, origin.ptr, origin.len);
    c->cors_len = (uint16_t)origin.len;
    if (preflight) {
        static const char pre[] =
            "Access-Control-Allow-Methods: GET, HEAD, POST, PUT, DELETE\r\n"
            "Access-Control-Allow-Headers: Authorization, Content-Type, Accept, If-Match, If-None-Match, "
            "Last-Event-ID\r\nAccess-Control-Max-Age: 600\r\n";
        conn_respond(c, 204, "text/plain", pre, "", 0);
        return false;
    }
    return true;
}

size_t origin_headers(const conn *c, char *out, size_t cap) {
    if (cap) out[0] = 0;
    if (!c->cors_len || !cap) return 0;
    int n = snprintf(out, cap,
                     "Access-Control-Allow-Origin: %.*s\r\nVary: Origin\r\n"
                     "Access-Control-Expose-Headers: ETag, Link, Factum-Head\r\n",
                     (int)c->cors_len, c->cors);
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}
