/*
 * def.c — a connector's definition: the checks of a PUT /connectors/{name} body (its form here,
 * its target in conn_def_check: HTTPS, not this server, reachable), the body of the consumer
 * group a sink delivers through, the members its ConnectorDefined record and GET show (never a
 * secret), and the secrets file that holds a sink's signing secrets out of the log. The registry
 * (registry.c) applies definitions.
 */
#include "connector.h"

#include "../base/json.h"
#include "../io/io.h"

#include <curl/curl.h>
#include <errno.h>
#include <ifaddrs.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define DEFAULT_TIMEOUT_MS 10000
#define ACK_MARGIN_MS 30000
#define ACK_MAX_MS 3600000 /* the group's largest ack_timeout_ms (above 300000 + the margin) */

bool connector_name_ok(const char *n) {
    size_t len = strlen(n);
    if (!len || len > CONNECTOR_MAX_NAME) return false;
    for (size_t i = 0; i < len; i++) {
        char c = n[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_'))
            return false;
    }
    return true;
}

void conn_def_free(conn_def *d) {
    buf_free(&d->group);
    buf_free(&d->shown);
    memset(d->secrets, 0, sizeof d->secrets); /* no secret left in freed memory */
    if (d->conninfo) memset(d->conninfo, 0, strlen(d->conninfo)), free(d->conninfo), d->conninfo = NULL;
}

static int bool_member(factum_str_t obj, const char *key, bool *out, factum_error_t *err) {
    factum_str_t v;
    int kind;
    *out = false;
    if (!json_member(obj, key, &v, &kind)) return 0;
    if (kind != JSON_TRUE && kind != JSON_FALSE) return err_set(err, FACTUM_EINVAL, "'%s' must be true or false", key);
    *out = kind == JSON_TRUE;
    return 0;
}

/* A string member (unescaped) of at most cap - 1 bytes into out; absent: "" unless required. */
static int str_member(factum_str_t obj, const char *key, bool required, char *out, size_t cap, factum_error_t *err) {
    factum_str_t v;
    int kind;
    out[0] = 0;
    if (!json_member(obj, key, &v, &kind)) return required ? err_set(err, FACTUM_EINVAL, "'%s' is required", key) : 0;
    buf_t b = {0};
    bool ok = kind == JSON_STRING && !json_unescape(v, &b) && b.len < cap && b.len && !memchr(b.ptr, 0, b.len);
    if (ok) memcpy(out, b.ptr, b.len), out[b.len] = 0;
    buf_free(&b);
    return ok ? 0 : err_set(err, FACTUM_EINVAL, "'%s' must be a non-empty string of at most %zu bytes", key, cap - 1);
}

/* The secrets: a list of 0 to SINK_MAX_SECRETS strings of printable ASCII. */
static int secrets_parse(factum_str_t arr, conn_def *d, factum_error_t *err) {
    json_iter_t it;
    factum_str_t v;
    int kind, r;
    d->nsecrets = 0;
    json_iter_init(&it, arr);
    while ((r = json_iter_element(&it, &v, &kind)) == 1) {
        buf_t b = {0};
        bool ok = kind == JSON_STRING && d->nsecrets < SINK_MAX_SECRETS && !json_unescape(v, &b) &&
                  b.len >= SINK_SECRET_MIN && b.len <= SINK_SECRET_MAX;
        for (size_t i = 0; ok && i < b.len; i++)
            ok = b.ptr[i] > ' ' && b.ptr[i] < 127;
        if (ok) memcpy(d->secrets[d->nsecrets], b.ptr, b.len), d->secrets[d->nsecrets++][b.len] = 0;
        buf_free(&b);
        if (!ok)
            return err_set(err, FACTUM_EINVAL,
                           "'secrets' must be a list of at most %d strings of %d to %d printable characters "
                           "(the first signs; a second stays valid while receivers move to the first)",
                           SINK_MAX_SECRETS, SINK_SECRET_MIN, SINK_SECRET_MAX);
    }
    return r < 0 ? err_set(err, FACTUM_EINVAL, "'secrets' must be a list") : 0;
}

void conn_def_secrets_path(const char *data_dir, const char *name, char *out, size_t cap) {
    snprintf(out, cap, "%s/connectors/%s.secret", data_dir, name);
}

static int secrets_read(const char *data_dir, const char *name, conn_def *d, uint32_t want, factum_error_t *err) {
    if (!want) return 0;
    char path[4200], *text = NULL;
    size_t n;
    conn_def_secrets_path(data_dir, name, path, sizeof path);
    int e = io_read_file(path, &text, &n);
    if (e)
        return err_set(err, FACTUM_EIO, "connector %s: cannot read its secrets from %s: %s", name, path, strerror(-e));
    int rc = secrets_parse((factum_str_t){text, n}, d, err);
    memset(text, 0, n);
    free(text);
    if (!rc && (uint32_t)d->nsecrets != want)
        rc = err_set(err, FACTUM_EIO, "connector %s: %s holds %d secrets, its definition %u", name, path, d->nsecrets,
                     want);
    return rc;
}

int conn_def_keep_secrets(const char *data_dir, const char *name, const conn_def *d, factum_error_t *err) {
    char path[4200], dir[4200];
    conn_def_secrets_path(data_dir, name, path, sizeof path);
    if (!d->nsecrets)
        return unlink(path) && errno != ENOENT ? err_set(err, FACTUM_EIO, "cannot remove %s: %s", path, strerror(errno))
                                               : 0;
    buf_t b = {0};
    if (d->kind == KIND_PG_OUTBOX) { /* the connection string with its password */
        buf_append(&b, d->conninfo, strlen(d->conninfo));
    } else {
        buf_append(&b, "[", 1);
        for (int i = 0; i < d->nsecrets; i++) {
            if (i) buf_append(&b, ",", 1);
            json_escape(&b, d->secrets[i], strlen(d->secrets[i]));
        }
        buf_append(&b, "]", 1);
    }
    snprintf(dir, sizeof dir, "%s/connectors", data_dir);
    int e = io_make_dir(dir);
    if (!e) e = io_replace_file(path, b.ptr, b.len, 0600);
    memset(b.ptr, 0, b.len);
    buf_free(&b);
    return e ? err_set(err, FACTUM_EIO, "cannot keep the secrets of connector %s in %s: %s", name, path, strerror(-e))
             : 0;
}

void conn_def_forget_secrets(const char *data_dir, const char *name) {
    char path[4200];
    conn_def_secrets_path(data_dir, name, path, sizeof path);
    unlink(path);
}

int conn_def_parse(const char *name, factum_str_t body, bool record, const char *data_dir, conn_def *d,
                   factum_error_t *err) {
    memset(d, 0, sizeof *d);
    int kind, rc;
    factum_str_t v, src, start = str_c("\"earliest\""), retry = {0};
    if (!json_valid(body.ptr, body.len, &kind) || kind != JSON_OBJECT)
        return err_set(err, FACTUM_EINVAL, "the body must be a JSON object");
    static const char *const put_members[] = {
        "kind",       "url",          "allow_http", "allow_unreachable", "source", "start", "mode", "batch_max",
        "timeout_ms", "max_attempts", "retry",      "secrets",           "paused", NULL};
    static const char *const rec_members[] = {
        "kind",       "url",          "allow_http", "allow_unreachable", "source", "start", "mode", "batch_max",
        "timeout_ms", "max_attempts", "retry",      "secret_count",      "paused", NULL};
    char s[64];
    if ((rc = str_member(body, "kind", true, s, sizeof s, err))) return rc;
    if (!strcmp(s, "postgres-outbox")) { /* paused, as a sink's, is read first: the record must keep it */
        rc = bool_member(body, "paused", &d->paused, err);
        return rc ? rc : outbox_def_parse(name, body, record, data_dir, d, err);
    }
    if (strcmp(s, "http-sink")) return err_set(err, FACTUM_EINVAL, "'kind' must be http-sink or postgres-outbox");
    if ((rc = json_only_members(body, "a connector", record ? rec_members : put_members, err))) return rc;
    d->kind = KIND_HTTP_SINK;
    if ((rc = str_member(body, "url", true, d->url, sizeof d->url, err)) ||
        (rc = bool_member(body, "allow_http", &d->allow_http, err)) ||
        (rc = bool_member(body, "allow_unreachable", &d->allow_unreachable, err)) ||
        (rc = bool_member(body, "paused", &d->paused, err)))
        return rc;
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL;
    bool url_ok = u && !curl_url_set(u, CURLUPART_URL, d->url, 0) && !curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) &&
                  !curl_url_get(u, CURLUPART_HOST, &host, 0) && host[0] &&
                  (!strcmp(scheme, "https") || !strcmp(scheme, "http"));
    bool https = url_ok && !strcmp(scheme, "https");
    curl_free(scheme), curl_free(host), curl_url_cleanup(u);
    if (!url_ok) return err_set(err, FACTUM_EINVAL, "'url' must be an absolute http:// or https:// URL");
    if (!https && !d->allow_http)
        return err_set(err, FACTUM_EINVAL,
                       "'url' must be https:// (events and signatures would cross the network in the clear); set "
                       "\"allow_http\": true to deliver over plain HTTP anyway");
    if (!json_member(body, "source", &src, &kind) || kind != JSON_OBJECT)
        return err_set(err, FACTUM_EINVAL, "'source' must be {\"stream\": S}, {\"category\": C} or {\"all\": {...}}");
    if (json_member(body, "start", &v, &kind)) start = v;
    if (json_member(body, "retry", &v, &kind)) retry = v;
    if ((rc = str_member(body, "mode", false, s, sizeof s, err))) return rc;
    if (s[0] && strcmp(s, "binary") && strcmp(s, "structured"))
        return err_set(err, FACTUM_EINVAL,
                       "'mode' must be binary or structured (the CloudEvents HTTP binding's modes)");
    d->mode = !strcmp(s, "structured") ? MODE_STRUCTURED : MODE_BINARY;
    if ((rc = json_member_u32_in(body, "batch_max", 1, SINK_MAX_BATCH, 1, &d->batch_max, err)) ||
        (rc = json_member_u32_in(body, "timeout_ms", 100, 300000, DEFAULT_TIMEOUT_MS, &d->timeout_ms, err)) ||
        (rc = json_member_u32_in(body, "max_attempts", 1, 1000, 10, &d->max_attempts, err)))
        return rc;
    if (d->batch_max > 1 && d->mode != MODE_STRUCTURED)
        return err_set(err, FACTUM_EINVAL,
                       "'batch_max' above 1 sends the CloudEvents batch format, which is structured: set \"mode\": "
                       "\"structured\"");
    if (record) {
        uint32_t want;
        if ((rc = json_member_u32_in(body, "secret_count", 0, SINK_MAX_SECRETS, 0, &want, err)) ||
            (rc = secrets_read(data_dir, name, d, want, err)))
            return rc;
    } else if (json_member(body, "secrets", &v, &kind)) {
        if (kind != JSON_ARRAY) return err_set(err, FACTUM_EINVAL, "'secrets' must be a list");
        if ((rc = secrets_parse(v, d, err))) return rc;
    }
    /* The group it delivers through: by_stream keeps each stream's order; an ack timeout that
       outlasts one pull's requests (sink.c sends them all at once, each within timeout_ms). */
    uint64_t ack = MIN(ACK_MAX_MS, d->timeout_ms + ACK_MARGIN_MS);
    buf_printf(&d->group,
               "{\"source\":%.*s,\"start\":%.*s,\"strategy\":\"by_stream\",\"ack_timeout_ms\":%llu,"
               "\"max_deliveries\":%u",
               (int)src.len, src.ptr, (int)start.len, start.ptr, (unsigned long long)ack, d->max_attempts);
    if (retry.len) buf_printf(&d->group, ",\"retry\":%.*s", (int)retry.len, retry.ptr);
    buf_append(&d->group, "}", 1);
    conn_def_render(d);
    return 0;
}

void conn_def_render(conn_def *d) {
    if (d->kind == KIND_PG_OUTBOX) {
        outbox_def_render(d);
        return;
    }
    factum_str_t g = {d->group.ptr, d->group.len}, v;
    int kind;
    buf_t *b = &d->shown;
    b->len = 0;
    buf_printf(b, "\"kind\":\"http-sink\",\"url\":");
    json_escape(b, d->url, strlen(d->url));
    buf_printf(b, ",\"allow_http\":%s,\"allow_unreachable\":%s", d->allow_http ? "true" : "false",
               d->allow_unreachable ? "true" : "false");
    if (json_member(g, "source", &v, &kind)) buf_printf(b, ",\"source\":%.*s", (int)v.len, v.ptr);
    if (json_member(g, "start", &v, &kind)) buf_printf(b, ",\"start\":%.*s", (int)v.len, v.ptr);
    buf_printf(b, ",\"mode\":\"%s\",\"batch_max\":%u,\"timeout_ms\":%u,\"max_attempts\":%u",
               d->mode == MODE_STRUCTURED ? "structured" : "binary", d->batch_max, d->timeout_ms, d->max_attempts);
    if (json_member(g, "retry", &v, &kind)) buf_printf(b, ",\"retry\":%.*s", (int)v.len, v.ptr);
    buf_printf(b, ",\"secret_count\":%d,\"paused\":%s", d->nsecrets, d->paused ? "true" : "false");
}

/* ---- the target ---- */

static bool same_addr(const struct sockaddr *a, const struct sockaddr *b) {
    if (a->sa_family != b->sa_family) return false;
    if (a->sa_family == AF_INET)
        return ((const struct sockaddr_in *)a)->sin_addr.s_addr == ((const struct sockaddr_in *)b)->sin_addr.s_addr;
    if (a->sa_family == AF_INET6)
        return !memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr, &((const struct sockaddr_in6 *)b)->sin6_addr, 16);
    return false;
}

/* Whether addr is this machine's: loopback, unspecified, or an interface's address. */
static bool is_local(const struct sockaddr *addr, const struct ifaddrs *ifs) {
    if (addr->sa_family == AF_INET) {
        uint32_t a = ntohl(((const struct sockaddr_in *)addr)->sin_addr.s_addr);
        if ((a >> 24) == 127 || a == 0) return true;
    } else if (addr->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)addr)->sin6_addr;
        if (IN6_IS_ADDR_LOOPBACK(a) || IN6_IS_ADDR_UNSPECIFIED(a)) return true;
        if (IN6_IS_ADDR_V4MAPPED(a) && (a->s6_addr[12] == 127 || !memcmp(a->s6_addr + 12, "\0\0\0\0", 4))) return true;
    }
    for (const struct ifaddrs *i = ifs; i; i = i->ifa_next)
        if (i->ifa_addr && same_addr(addr, i->ifa_addr)) return true;
    return false;
}

/* Whether the URL's host is this machine and its port the server's. */
static bool points_at_self(const char *url, int self_port) {
    if (!self_port) return false;
    CURLU *u = curl_url();
    char *host = NULL, *port = NULL;
    bool self = false;
    if (u && !curl_url_set(u, CURLUPART_URL, url, 0) && !curl_url_get(u, CURLUPART_HOST, &host, 0) &&
        !curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) && atoi(port) == self_port) {
        char h[300];
        snprintf(h, sizeof h, "%s", host);
        size_t n = strlen(h);
        if (n > 2 && h[0] == '[' && h[n - 1] == ']') memmove(h, h + 1, n - 2), h[n - 2] = 0; /* [::1] */
        struct addrinfo *res = NULL, hints = {.ai_socktype = SOCK_STREAM};
        struct ifaddrs *ifs = NULL;
        getifaddrs(&ifs);
        if (!getaddrinfo(h, NULL, &hints, &res))
            for (struct addrinfo *r = res; r && !self; r = r->ai_next)
                self = is_local(r->ai_addr, ifs);
        if (res) freeaddrinfo(res);
        if (ifs) freeifaddrs(ifs);
    }
    curl_free(host), curl_free(port), curl_url_cleanup(u);
    return self;
}

int conn_def_check(const conn_def *d, int self_port, factum_error_t *err) {
    if (d->kind == KIND_PG_OUTBOX) return outbox_check(d, err);
    if (points_at_self(d->url, self_port))
        return err_set(err, FACTUM_EINVAL, "'url' points at this Factum server: a sink would deliver to itself");
    if (d->allow_unreachable) return 0;
    CURL *h = curl_easy_init();
    if (!h) return err_set(err, FACTUM_ENOMEM, "out of memory");
    char msg[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(h, CURLOPT_URL, d->url);
    curl_easy_setopt(h, CURLOPT_CONNECT_ONLY, 1L); /* TCP, and TLS for https: whether it answers */
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)MIN(d->timeout_ms, 5000u));
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, msg);
    CURLcode cc = curl_easy_perform(h);
    curl_easy_cleanup(h);
    if (cc)
        return err_set(err, FACTUM_EINVAL,
                       "cannot reach 'url' (%s); set \"allow_unreachable\": true to define it anyway (deliveries are "
                       "retried until it answers)",
                       msg[0] ? msg : curl_easy_strerror(cc));
    return 0;
}
