/*
 * forward.c — a cluster follower's writes, sent on to the leader (docs/cluster.md, "Followers").
 *
 * route.c asks forward_request before it runs a handler. On a node that does not lead, a request
 * whose route must run on the leader (every method but GET, unless the table marks the route
 * ROUTE_LOCAL) is sent as it came — method, target, body, and every header but the hop-by-hop
 * ones, the Authorization header as is — to the leader's advertised URL, by a worker thread
 * (libcurl, one handle per worker, kept alive), and the client gets the leader's status, body
 * and its Content-Type, Location, ETag and Retry-After, plus "Factum-Committed-By: NAME" on a
 * 2xx. The forwarded request carries "Factum-Forwarded-By: NODE": a node never forwards such a
 * request again (no loops), it answers it. When no leader is known the request runs here and is
 * answered 503 by the replicator, naming what it knows; a GET the table marks ROUTE_LEADER (a
 * push subscription to a group) is answered 503 with the leader's URL, for the client to go there.
 */
#include "api.h"

#include "../cluster/cluster.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

#define FORWARD_TIMEOUT_MS 30000      /* a long poll of a group waits up to its own limit */
#define FORWARD_MAX_ANSWER (64 << 20) /* bytes of the leader's answer relayed */

typedef struct forward_job {
    char method[16], leader[72], url[1024 + 256];
    struct curl_slist *headers;
    buf_t body, out;
    long status;
    char ctype[128], extra[1024]; /* Content-Type; Location, ETag, Retry-After lines */
    size_t extra_len;
    char error[256];
} forward_job;

static pthread_key_t handle_key;
static pthread_once_t handle_once = PTHREAD_ONCE_INIT;

static void handle_free(void *h) { curl_easy_cleanup(h); }
static void handle_key_make(void) { pthread_key_create(&handle_key, handle_free); }

/* The worker's own handle: it keeps its connection to the leader between requests. */
static CURL *worker_handle(void) {
    pthread_once(&handle_once, handle_key_make);
    CURL *h = pthread_getspecific(handle_key);
    if (!h && (h = curl_easy_init())) pthread_setspecific(handle_key, h);
    if (h) curl_easy_reset(h);
    return h;
}

static size_t on_body(char *p, size_t size, size_t n, void *ctx) {
    forward_job *j = ctx;
    if (j->out.len + size * n > FORWARD_MAX_ANSWER || buf_append(&j->out, p, size * n)) return 0;
    return size * n;
}

static bool header_is(const char *line, size_t len, const char *name) {
    size_t n = strlen(name);
    return len > n && line[n] == ':' && !strncasecmp(line, name, n);
}

static size_t on_header(char *p, size_t size, size_t n, void *ctx) {
    forward_job *j = ctx;
    size_t len = size * n;
    while (len && (p[len - 1] == '\r' || p[len - 1] == '\n'))
        len--;
    if (!strncmp(p, "HTTP/", 5)) { /* a new answer (after a 100 Continue): start over */
        j->ctype[0] = 0, j->extra_len = 0, j->extra[0] = 0;
    } else if (header_is(p, len, "Content-Type")) {
        const char *v = p + 13;
        while (v < p + len && *v == ' ')
            v++;
        snprintf(j->ctype, sizeof j->ctype, "%.*s", (int)(p + len - v), v);
    } else if ((header_is(p, len, "Location") || header_is(p, len, "ETag") || header_is(p, len, "Retry-After")) &&
               j->extra_len + len + 3 < sizeof j->extra) {
        j->extra_len +=
            (size_t)snprintf(j->extra + j->extra_len, sizeof j->extra - j->extra_len, "%.*s\r\n", (int)len, p);
    }
    return size * n;
}

static void forward_work(conn *c) {
    forward_job *j = c->job;
    CURL *h = worker_handle();
    if (!h) {
        snprintf(j->error, sizeof j->error, "out of memory");
        return;
    }
    curl_easy_setopt(h, CURLOPT_URL, j->url);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, j->method);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, j->headers);
    if (strcmp(j->method, "GET") && strcmp(j->method, "DELETE")) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, j->body.ptr ? j->body.ptr : "");
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)j->body.len);
    } else if (j->body.len) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, j->body.ptr);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)j->body.len);
    }
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, j);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, j);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)FORWARD_TIMEOUT_MS);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 2000L);
    CURLcode rc = curl_easy_perform(h);
    if (rc != CURLE_OK)
        snprintf(j->error, sizeof j->error, "%s", curl_easy_strerror(rc));
    else
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &j->status);
}

static void forward_free(void *p) {
    forward_job *j = p;
    curl_slist_free_all(j->headers);
    buf_free(&j->body);
    buf_free(&j->out);
    free(j);
}

static void forward_done(conn *c) {
    forward_job *j = c->job;
    c->job = NULL;
    if (j->error[0] || j->status < 100)
        conn_problem(c, 503, "unavailable", NULL,
                     "this node is not the cluster leader, and the leader %s did not answer the write sent on to it "
                     "(%s); its outcome is unknown: a retry with the same event ids is safe",
                     j->leader, j->error[0] ? j->error : "no status");
    else {
        if (j->status >= 200 && j->status < 300 && j->extra_len + 100 < sizeof j->extra)
            snprintf(j->extra + j->extra_len, sizeof j->extra - j->extra_len, "Factum-Committed-By: %s\r\n", j->leader);
        conn_respond(c, (int)j->status, j->ctype[0] ? j->ctype : NULL, j->extra[0] ? j->extra : NULL, j->out.ptr,
                     j->out.len);
    }
    forward_free(j);
}

/* Hop-by-hop headers, and the ones curl sets itself: not sent on. */
static bool hop_by_hop(factum_str_t name) {
    static const char *const skip[] = {
        "host", "connection", "content-length",      "transfer-encoding", "keep-alive",         "expect",
        "te",   "upgrade",    "proxy-authorization", "trailer",           "factum-forwarded-by"};
    for (size_t i = 0; i < ARRAY_LEN(skip); i++)
        if (name.len == strlen(skip[i]) && !strncasecmp(name.ptr, skip[i], name.len)) return true;
    return false;
}

bool forward_request(conn *c, const route *r, factum_str_t body) {
    server *s = c->l->srv;
    if (!s->cfg.cluster || factum_leads(s->db, NULL) || r->cluster == ROUTE_LOCAL) return false;
    const http_req *h = &c->req->h;
    if (r->method == ROUTE_GET && r->cluster != ROUTE_LEADER) return false; /* reads: every node */
    if (http_header_get(h, "Factum-Forwarded-By").ptr) return false;        /* sent on once already: answer here */
    cluster_status cs;
    cluster_status_get(s->cfg.cluster, &cs);
    if (!cs.leader[0] || !strcmp(cs.leader, cs.node) || !cs.leader_url[0]) return false; /* the replicator says why */
    if (r->method == ROUTE_GET) {
        conn_problem(c, 503, "unavailable", NULL, "not the cluster leader; the leader is %s at %s: connect there",
                     cs.leader, cs.leader_url);
        return true;
    }
    forward_job *j = calloc(1, sizeof *j);
    if (!j || buf_append(&j->body, body.ptr, body.len)) {
        free(j);
        conn_problem(c, 503, "unavailable", NULL, "out of memory");
        return true;
    }
    snprintf(j->method, sizeof j->method, "%.*s", (int)MIN(h->method.len, sizeof j->method - 1), h->method.ptr);
    snprintf(j->leader, sizeof j->leader, "%s", cs.leader);
    snprintf(j->url, sizeof j->url, "%s%.*s", cs.leader_url, (int)MIN(h->target.len, 1024), h->target.ptr);
    char line[HTTP_MAX_LINE + 2];
    bool ok = true;
    for (size_t i = 0; i < h->nheaders && ok; i++) {
        if (hop_by_hop(h->headers[i].name)) continue;
        snprintf(line, sizeof line, "%.*s: %.*s", (int)h->headers[i].name.len, h->headers[i].name.ptr,
                 (int)h->headers[i].value.len, h->headers[i].value.ptr);
        struct curl_slist *l = curl_slist_append(j->headers, line);
        ok = l != NULL, j->headers = l ? l : j->headers;
    }
    snprintf(line, sizeof line, "Factum-Forwarded-By: %s", cs.node);
    struct curl_slist *l = ok ? curl_slist_append(j->headers, line) : NULL;
    if (l) j->headers = l;
    l = l ? curl_slist_append(j->headers, "Expect:") : NULL; /* no 100-continue round trip */
    if (!l) {
        forward_free(j);
        conn_problem(c, 503, "unavailable", NULL, "out of memory");
        return true;
    }
    j->headers = l;
    c->job = j;
    server_submit_job(c, forward_work, forward_done, forward_free);
    return true;
}
