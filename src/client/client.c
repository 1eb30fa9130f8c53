/*
 * client.c — the C client of include/factum_client.h over libcurl. Requests reuse one easy
 * handle (and so one kept-alive connection). Appends send a CloudEvents batch; answers and
 * problem+json errors map back to the engine's error codes, so code written against
 * factum.h reads the same against a server. Subscriptions parse Server-Sent Events as they
 * arrive and reconnect with Last-Event-ID.
 */
#include "factum_client.h"

#include "../base/json.h"
#include "../event/event.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define CLIENT_MAX_URLS 8

struct factum_client {
    char url[1024]; /* the server asked now: one of urls */
    char urls[CLIENT_MAX_URLS][1024];
    int nurls, at; /* urls[at] is url */
    buf_t req_url; /* the request at hand's URL, to move it to another server */
    char *cacert;  /* CA certificates for https:// (factum_client_set_cacert), or NULL: the system's */
    CURL *curl;
    buf_t body, link;
    uint64_t head; /* the answer's Factum-Head */
    char curl_err[CURL_ERROR_SIZE];
    char *token; /* sent as a bearer token, or NULL */
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

/* Splits "URL[,URL...]" into c->urls, each without trailing slashes; 0 or an error. */
static int parse_urls(factum_client_t *c, const char *list, factum_error_t *err) {
    for (const char *p = list;; p++) {
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (c->nurls == CLIENT_MAX_URLS)
            return err_set(err, FACTUM_EINVAL, "at most %d server URLs (got '%s')", CLIENT_MAX_URLS, list);
        if (n >= sizeof c->urls[0] - 1 || (strncmp(p, "http://", 7) && strncmp(p, "https://", 8)) ||
            n < (p[4] == 's' ? 9u : 8u))
            return err_set(err, FACTUM_EINVAL,
                           "a server URL starts with http:// or https:// (several: separated by commas; got '%s')",
                           list);
        char *u = c->urls[c->nurls++];
        memcpy(u, p, n);
        u[n] = 0;
        while (n && u[n - 1] == '/')
            u[--n] = 0;
        if (!e) return 0;
        p = e;
    }
}

int factum_client_new(const char *url, factum_client_t **out, factum_error_t *err) {
    *out = NULL;
    if (!url) return err_set(err, FACTUM_EINVAL, "server URL must start with http:// or https:// (got '')");
    pthread_once(&curl_once, curl_init);
    factum_client_t *c = calloc(1, sizeof *c);
    int rc = c ? parse_urls(c, url, err) : err_set(err, FACTUM_ENOMEM, "out of memory");
    if (!rc && !(c->curl = curl_easy_init())) rc = err_set(err, FACTUM_ENOMEM, "out of memory");
    if (rc) {
        free(c);
        return rc;
    }
    memcpy(c->url, c->urls[0], sizeof c->url);
    *out = c;
    return 0;
}

void factum_client_free(factum_client_t *c) {
    if (!c) return;
    curl_easy_cleanup(c->curl);
    free(c->cacert);
    buf_free(&c->body);
    buf_free(&c->link);
    free(c->token);
    buf_free(&c->req_url);
    free(c);
}

int factum_client_set_token(factum_client_t *c, const char *token, factum_error_t *err) {
    for (const char *p = token; p && *p; p++)
        if ((unsigned char)*p <= ' ' || *p == 0x7f)
            return err_set(err, FACTUM_EINVAL, "a token is printable characters without spaces");
    char *copy = token && *token ? strdup(token) : NULL;
    if (token && *token && !copy) return err_set(err, FACTUM_ENOMEM, "out of memory");
    free(c->token);
    c->token = copy;
    return 0;
}

/* The bearer token of every request (after curl_easy_reset, which forgets it). */
static void set_auth(factum_client_t *c) {
    if (!c->token) return;
    curl_easy_setopt(c->curl, CURLOPT_HTTPAUTH, CURLAUTH_BEARER);
    curl_easy_setopt(c->curl, CURLOPT_XOAUTH2_BEARER, c->token);
}

int factum_client_set_cacert(factum_client_t *c, const char *path, factum_error_t *err) {
    char *copy = NULL;
    if (path) {
        FILE *f = fopen(path, "r"); /* a clear error now, not a vague one at the first request */
        if (!f) return err_set(err, FACTUM_EINVAL, "cannot read the CA certificates %s: %s", path, strerror(errno));
        fclose(f);
        if (!(copy = strdup(path))) return err_set(err, FACTUM_ENOMEM, "out of memory");
    }
    free(c->cacert);
    c->cacert = copy;
    return 0;
}

/* ---- requests ---- */

/* Forgets the last request's options and starts one for url: certificates are verified
   (libcurl's default) against the CA file given, if any. */
static void request_start(factum_client_t *c, const char *url) {
    curl_easy_reset(c->curl);
    c->req_url.len = 0, c->head = 0;
    buf_append(&c->req_url, url, strlen(url) + 1);
    curl_easy_setopt(c->curl, CURLOPT_URL, url);
    if (c->cacert) curl_easy_setopt(c->curl, CURLOPT_CAINFO, c->cacert);
}

static size_t on_body(char *p, size_t size, size_t n, void *ud) {
    buf_t *b = ud;
    return buf_append(b, p, size * n) ? 0 : size * n;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud) {
    factum_client_t *c = ud;
    size_t len = size * n;
    if (len > 5 && !strncasecmp(p, "link:", 5)) {
        c->link.len = 0;
        buf_append(&c->link, p + 5, len - 5);
        buf_append(&c->link, "", 1);
    } else if (len > 12 && !strncasecmp(p, "factum-head:", 12)) {
        c->head = strtoull(p + 12, NULL, 10);
    }
    return len;
}

/* The number member `key`, or dflt when it is absent (or negative, like "actual": -1). */
static uint64_t json_u64(factum_str_t obj, const char *key, int64_t dflt) {
    uint64_t v;
    return json_member_u64(obj, key, &v) ? v : (uint64_t)dflt;
}

static int unreachable(factum_client_t *c, CURLcode cc, factum_error_t *err) {
    return err_set(err, FACTUM_EUNREACHABLE, "cannot reach the server at %s: %s", c->url,
                   c->curl_err[0] ? c->curl_err : curl_easy_strerror(cc));
}

/* Turns a problem+json answer into an engine code with its detail. */
static int problem(factum_client_t *c, long status, factum_error_t *err) {
    factum_str_t body = {c->body.ptr ? c->body.ptr : "", c->body.len}, v;
    int kind;
    buf_t detail = {0}, type = {0};
    if (json_member(body, "detail", &v, &kind) && kind == JSON_STRING) json_unescape(v, &detail);
    if (json_member(body, "type", &v, &kind) && kind == JSON_STRING) json_unescape(v, &type);
    buf_append(&detail, "", 1);
    buf_append(&type, "", 1);
    int code;
    switch (status) {
    case 400:
        code = strstr(type.ptr, "bad-stream")  ? FACTUM_EBADSTREAM
               : strstr(type.ptr, "bad-event") ? FACTUM_EBADEVENT
                                               : FACTUM_EINVAL;
        break;
    case 401:
    case 403: code = FACTUM_EDENIED; break;
    case 404: code = FACTUM_ENOTFOUND; break;
    case 409: code = strstr(type.ptr, "condition-failed") ? FACTUM_ECONDITION : FACTUM_ECONFLICT; break;
    case 410: code = FACTUM_EDELETED; break;
    case 412: code = FACTUM_EREVISION; break;
    case 413: code = FACTUM_ETOOBIG; break;
    case 422: code = FACTUM_ESCHEMA; break;
    case 503: code = FACTUM_EFAILED; break;
    case 507: code = FACTUM_ENOSPC; break;
    default: code = FACTUM_EIO; break;
    }
    err_set(err, code, "%s", detail.len > 1 ? detail.ptr : "the server answered an error");
    buf_free(&detail);
    buf_free(&type);
    return code;
}

/* Performs a request prepared on c->curl; the status, or a negative code. */
static int perform(factum_client_t *c, long *status, factum_error_t *err) {
    c->body.len = 0;
    c->link.len = 0;
    c->curl_err[0] = 0;
    curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, &c->body);
    curl_easy_setopt(c->curl, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c->curl, CURLOPT_HEADERDATA, c);
    curl_easy_setopt(c->curl, CURLOPT_ERRORBUFFER, c->curl_err);
    curl_easy_setopt(c->curl, CURLOPT_NOSIGNAL, 1L);
    set_auth(c);
    CURLcode cc = curl_easy_perform(c->curl);
    /* A server that refuses the connection got nothing of the request: the next URL gets it
       (each at most once per request). A failure after connecting is reported, not retried:
       the request may have been done. */
    for (int tried = 1; cc == CURLE_COULDNT_CONNECT && tried < c->nurls && c->req_url.ptr; tried++) {
        size_t base = strlen(c->url);
        if (strncmp(c->req_url.ptr, c->url, base)) break;
        buf_t moved = {0};
        c->at = (c->at + 1) % c->nurls;
        memcpy(c->url, c->urls[c->at], sizeof c->url);
        buf_printf(&moved, "%s%s", c->url, c->req_url.ptr + base);
        curl_easy_setopt(c->curl, CURLOPT_URL, moved.ptr);
        c->req_url.len = 0;
        buf_append(&c->req_url, moved.ptr, moved.len + 1);
        buf_free(&moved);
        c->body.len = c->link.len = 0;
        c->curl_err[0] = 0;
        cc = curl_easy_perform(c->curl);
    }
    if (cc != CURLE_OK) return unreachable(c, cc, err);
    curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, status);
    return 0;
}

/* POSTs body (freed here) with a content type and one optional extra header. */
static int post(factum_client_t *c, const char *url, const char *ctype, const char *header, buf_t *body, long *status,
                factum_error_t *err) {
    char ct[128];
    snprintf(ct, sizeof ct, "Content-Type: %s", ctype);
    struct curl_slist *h = curl_slist_append(NULL, ct);
    h = curl_slist_append(h, "Expect:");
    if (header) h = curl_slist_append(h, header);
    request_start(c, url);
    curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, body->ptr ? body->ptr : "");
    curl_easy_setopt(c->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body->len);
    int rc = perform(c, status, err);
    curl_slist_free_all(h);
    buf_free(body);
    return rc;
}

/* The events as CloudEvents in their input form, comma-separated (the caller brackets them),
   each with "stream" when stream.ptr is not NULL (POST /events names it per event). */
static void events_json(buf_t *body, const factum_event_t *events, size_t n, factum_str_t stream) {
    for (size_t i = 0; i < n; i++) {
        if (i) buf_append(body, ",", 1);
        size_t need = factum_event_json_input(&events[i], NULL, 0);
        if (buf_reserve(body, need + 1)) break;
        factum_event_json_input(&events[i], body->ptr + body->len, need + 1);
        body->len += need;
        if (!stream.ptr) continue;
        body->len--; /* without its closing brace: the stream goes in */
        buf_append(body, ",\"stream\":", 10);
        json_escape(body, stream.ptr, stream.len);
        buf_append(body, "}", 1);
    }
}

/* An append's answer (200: an idempotent repeat) into res. */
static int append_answer(factum_str_t b, long status, factum_append_result_t *res) {
    res->first_revision = json_u64(b, "first_revision", 0);
    res->last_revision = json_u64(b, "revision", 0);
    res->first_position = json_u64(b, "first_position", 0);
    res->last_position = json_u64(b, "position", 0);
    res->idempotent = status == 200;
    return 0;
}

int factum_client_append(factum_client_t *c, const char *stream, int64_t expected, const factum_event_t *events,
                         size_t n, factum_append_result_t *res, factum_error_t *err) {
    factum_append_result_t dummy;
    if (!res) res = &dummy;
    memset(res, 0, sizeof *res);
    res->actual_revision = -1;
    if (!c || !stream || (!events && n)) return err_set(err, FACTUM_EINVAL, "factum_client_append: bad arguments");
    buf_t url = {0}, body = {0};
    buf_printf(&url, "%s/streams/", c->url);
    buf_url_encode(&url, stream, strlen(stream));
    buf_append(&url, "", 1);
    buf_append(&body, "[", 1);
    events_json(&body, events, n, (factum_str_t){NULL, 0});
    buf_append(&body, "]", 1);
    char cond[64] = "";
    if (expected == FACTUM_EXPECT_NO_STREAM)
        snprintf(cond, sizeof cond, "If-None-Match: *");
    else if (expected == FACTUM_EXPECT_EXISTS)
        snprintf(cond, sizeof cond, "If-Match: *");
    else if (expected >= 0)
        snprintf(cond, sizeof cond, "If-Match: \"%lld\"", (long long)expected);
    long status = 0;
    int rc = post(c, url.ptr, "application/cloudevents-batch+json", cond[0] ? cond : NULL, &body, &status, err);
    buf_free(&url);
    if (rc) return rc;
    factum_str_t b = {c->body.ptr ? c->body.ptr : "", c->body.len};
    if (status == 200 || status == 201) return append_answer(b, status, res);
    if (status == 412) res->actual_revision = (int64_t)json_u64(b, "actual", -1);
    return problem(c, status, err);
}

/* The query string of q (and from) for a read or a subscription. */
static void query_string(buf_t *u, const factum_query_t *q, bool all, bool with_limit) {
    char sep = '?';
    if (q->from_time) {
        char t[32];
        time_format_rfc3339(q->from_time, t);
        buf_printf(u, "%cfrom=", sep), sep = '&';
        buf_url_encode(u, t, strlen(t));
    } else if (q->from == FACTUM_END)
        buf_printf(u, "%cfrom=end", sep), sep = '&';
    else if (q->from)
        buf_printf(u, "%cfrom=%llu", sep, (unsigned long long)q->from), sep = '&';
    if (with_limit && q->limit) buf_printf(u, "%climit=%zu", sep, MIN(q->limit, (size_t)10000)), sep = '&';
    if (with_limit && q->backward) buf_printf(u, "%cdirection=backward", sep), sep = '&';
    const char *names[] = {"type", "category", "correlation_id"};
    factum_str_t vals[] = {q->type, q->category, q->correlationid};
    for (int i = 0; all && i < 3; i++)
        if (vals[i].len) {
            buf_printf(u, "%c%s=", sep, names[i]);
            buf_url_encode(u, vals[i].ptr, vals[i].len);
            sep = '&';
        }
}

static void base_url(buf_t *u, factum_client_t *c, const char *stream) {
    buf_printf(u, "%s", c->url);
    if (stream) {
        buf_printf(u, "/streams/");
        buf_url_encode(u, stream, strlen(stream));
    } else {
        buf_printf(u, "/all");
    }
}

/* Whether text is one JSON array with no elements (whitespace around and inside allowed). */
static bool empty_array(factum_str_t text) {
    json_cur_t cur = json_cur(text.ptr, text.len);
    factum_str_t arr, el;
    int kind;
    if (json_value(&cur, &arr, &kind) || kind != JSON_ARRAY) return false;
    json_iter_t it;
    json_iter_init(&it, arr);
    return json_iter_element(&it, &el, &kind) == 0;
}

/* The events of a page just read: an empty page ([]: the end of a stream paged to, a filter
   nothing matches) is no events, as in factum_client_pull: *out stays NULL, which
   factum_events_count counts as 0 (the parser takes only batches of at least one event). */
static int page_events(factum_client_t *c, factum_events_t **out, factum_error_t *err) {
    if (empty_array((factum_str_t){c->body.ptr ? c->body.ptr : "", c->body.len})) return 0;
    /* The set takes the text: hand it a copy that it frees. */
    char *text = malloc(c->body.len + 1);
    if (!text) return err_set(err, FACTUM_ENOMEM, "out of memory");
    memcpy(text, c->body.ptr, c->body.len);
    text[c->body.len] = 0;
    int rc = factum_events_parse(text, c->body.len, 1, out, err);
    if (rc)
        free(text);
    else
        events_own_text(*out, text);
    return rc;
}

/* GETs a page of events at url (freed here): *next from its Link, or FACTUM_END. */
static int get_page(factum_client_t *c, buf_t *url, uint64_t *next, factum_events_t **out, factum_error_t *err) {
    buf_append(url, "", 1);
    request_start(c, url->ptr);
    long status = 0;
    int rc = perform(c, &status, err);
    buf_free(url);
    if (rc) return rc;
    if (status != 200) return problem(c, status, err);
    const char *f = c->link.len ? strstr(c->link.ptr, "from=") : NULL;
    if (f) *next = strtoull(f + 5, NULL, 10);
    return page_events(c, out, err);
}

int factum_client_read(factum_client_t *c, const char *stream, const factum_query_t *q, factum_events_t **out,
                       uint64_t *next, factum_error_t *err) {
    *out = NULL;
    *next = FACTUM_END;
    buf_t url = {0};
    base_url(&url, c, stream);
    query_string(&url, q, !stream, true);
    return get_page(c, &url, next, out, err);
}

/* ---- tag queries and conditional appends (docs/dcb.md) ---- */

static void json_strings(buf_t *b, const char *name, const factum_str_t *s, size_t n) {
    buf_printf(b, "\"%s\":[", name);
    for (size_t i = 0; i < n; i++) {
        if (i) buf_append(b, ",", 1);
        json_escape(b, s[i].ptr, s[i].len);
    }
    buf_append(b, "]", 1);
}

/* The query as the server takes it: {"items":[{"types":[...],"tags":[...]}]}. */
static void query_json(buf_t *b, const factum_tag_query_t *q) {
    buf_append(b, "{\"items\":[", 10);
    for (size_t i = 0; i < q->nitems; i++) {
        buf_append(b, i ? ",{" : "{", i ? 2 : 1);
        json_strings(b, "types", q->items[i].types, q->items[i].ntypes);
        buf_append(b, ",", 1);
        json_strings(b, "tags", q->items[i].tags, q->items[i].ntags);
        buf_append(b, "}", 1);
    }
    buf_append(b, "]}", 2);
}

/* An expected revision as POST /events takes it, or nothing for "any". */
static void expected_json(buf_t *b, int64_t expected) {
    if (expected == FACTUM_EXPECT_NO_STREAM)
        buf_printf(b, "\"no_stream\"");
    else if (expected == FACTUM_EXPECT_EXISTS)
        buf_printf(b, "\"exists\"");
    else
        buf_printf(b, "%lld", (long long)expected);
}

int factum_client_append_streams(factum_client_t *c, factum_stream_append_t *parts, size_t nparts,
                                 const factum_condition_t *cond, factum_error_t *err) {
    for (size_t i = 0; i < nparts; i++)
        parts[i].res = (factum_append_result_t){.actual_revision = -1};
    if (!c || !parts || !nparts) return err_set(err, FACTUM_EINVAL, "factum_client_append_streams: bad arguments");
    buf_t url = {0}, body = {0};
    buf_printf(&url, "%s/events", c->url);
    buf_append(&url, "", 1);
    buf_append(&body, "{\"events\":[", 11);
    for (size_t i = 0; i < nparts; i++) {
        if (i && parts[i - 1].n) buf_append(&body, ",", 1);
        events_json(&body, parts[i].events, parts[i].n, parts[i].stream);
    }
    buf_printf(&body, "],\"expected_revision\":{");
    for (size_t i = 0, k = 0; i < nparts; i++) {
        if (parts[i].expected == FACTUM_EXPECT_ANY) continue;
        if (k++) buf_append(&body, ",", 1);
        json_escape(&body, parts[i].stream.ptr, parts[i].stream.len);
        buf_append(&body, ":", 1);
        expected_json(&body, parts[i].expected);
    }
    buf_append(&body, "}", 1);
    if (cond) {
        buf_append(&body, ",\"condition\":{\"failIfEventsMatch\":", 34);
        query_json(&body, &cond->fail_if);
        if (cond->after != FACTUM_AFTER_NONE) buf_printf(&body, ",\"after\":%llu", (unsigned long long)cond->after);
        buf_append(&body, "}", 1);
    }
    buf_append(&body, "}", 1);
    long status = 0;
    int rc = post(c, url.ptr, "application/json", NULL, &body, &status, err);
    buf_free(&url);
    if (rc) return rc;
    factum_str_t b = {c->body.ptr ? c->body.ptr : "", c->body.len}, streams, one;
    if (status == 200 || status == 201) {
        int kind;
        json_iter_t it;
        if (json_member(b, "streams", &streams, &kind) && kind == JSON_ARRAY) {
            json_iter_init(&it, streams);
            for (size_t i = 0; i < nparts && json_iter_element(&it, &one, &kind) == 1; i++)
                append_answer(one, status, &parts[i].res);
        }
        return 0;
    }
    if (status == 409) parts[0].res.conflict_position = json_u64(b, "position", 0);
    return problem(c, status, err);
}

int factum_client_append_if(factum_client_t *c, const char *stream, int64_t expected, const factum_event_t *events,
                            size_t n, const factum_condition_t *cond, factum_append_result_t *res,
                            factum_error_t *err) {
    if (!stream || !events || !n) return err_set(err, FACTUM_EINVAL, "factum_client_append_if: bad arguments");
    factum_stream_append_t part = {str_c(stream), expected, events, n, {0}};
    int rc = factum_client_append_streams(c, &part, 1, cond, err);
    if (res) *res = part.res;
    return rc;
}

int factum_client_read_tagged(factum_client_t *c, const factum_tag_query_t *q, uint64_t from, size_t limit,
                              int backward, uint64_t *head, uint64_t *next, factum_events_t **out,
                              factum_error_t *err) {
    *out = NULL;
    if (next) *next = FACTUM_END;
    if (!c || !q) return err_set(err, FACTUM_EINVAL, "factum_client_read_tagged: bad arguments");
    buf_t url = {0}, qj = {0};
    query_json(&qj, q);
    buf_printf(&url, "%s/events?query=", c->url);
    buf_url_encode(&url, qj.ptr, qj.len);
    buf_free(&qj);
    if (from == FACTUM_END)
        buf_printf(&url, "&from=end");
    else
        buf_printf(&url, "&from=%llu", (unsigned long long)from);
    buf_printf(&url, "&limit=%zu%s", MIN(MAX(limit, (size_t)1), (size_t)10000), backward ? "&direction=backward" : "");
    uint64_t nx;
    int rc = get_page(c, &url, next ? next : &nx, out, err);
    if (!rc && head) *head = c->head;
    return rc;
}

/* ---- subscriptions ---- */

typedef struct sse {
    factum_client_event_cb cb;
    void *ctx;
    buf_t line, data;
    char event[256];
    int64_t id, last_id; /* -1: none */
    uint64_t resume;     /* where a reconnect without a last id starts (after caught-up) */
    bool has_resume;
    bool stopped, ok; /* the callback asked to stop; the answer was 200 */
    int rc;
    factum_error_t *err;
    factum_client_t *c;
} sse;

static void sse_dispatch(sse *s) {
    if (!strcmp(s->event, "caught-up")) {
        /* Remember where live began, so a reconnect from "end" does not skip what came since. */
        factum_str_t d = {s->data.ptr ? s->data.ptr : "", s->data.len};
        uint64_t v;
        factum_str_t raw;
        int kind;
        if (json_member_u64(d, "position", &v))
            s->resume = v, s->has_resume = true; /* $all */
        else if (json_member_u64(d, "revision", &v))
            s->resume = v + 1, s->has_resume = true; /* a stream */
        else if (json_member(d, "revision", &raw, &kind) && str_eq(raw, str_c("-1")))
            s->resume = 0, s->has_resume = true; /* a stream with no events yet */
        if (s->cb(s->ctx, NULL)) s->stopped = true;
    } else if (!strcmp(s->event, "error")) {
        buf_append(&s->data, "", 1);
        s->rc = err_set(s->err, FACTUM_EIO, "the server ended the subscription: %s", s->data.ptr);
        s->stopped = true;
    } else if (s->data.len) {
        factum_events_t *set;
        factum_error_t e;
        if (factum_events_parse(s->data.ptr, s->data.len, 0, &set, &e) == 0) {
            if (s->id >= 0) s->last_id = s->id;
            if (s->cb(s->ctx, factum_events_get(set, 0))) s->stopped = true;
            factum_events_free(set);
        }
    }
    s->event[0] = 0;
    s->data.len = 0;
    s->id = -1;
}

static void sse_line(sse *s, const char *l, size_t n) {
    if (n == 0) {
        if (s->data.len || s->event[0]) sse_dispatch(s);
        return;
    }
    if (l[0] == ':') return; /* heartbeat */
    const char *colon = memchr(l, ':', n);
    size_t fl = colon ? (size_t)(colon - l) : n;
    const char *v = colon ? colon + 1 : l + n;
    if (v < l + n && *v == ' ') v++;
    size_t vl = (size_t)(l + n - v);
    if (fl == 2 && !memcmp(l, "id", 2))
        s->id = strtoll(v, NULL, 10);
    else if (fl == 5 && !memcmp(l, "event", 5))
        snprintf(s->event, sizeof s->event, "%.*s", (int)vl, v);
    else if (fl == 4 && !memcmp(l, "data", 4)) {
        if (s->data.len) buf_append(&s->data, "\n", 1);
        buf_append(&s->data, v, vl);
    }
}

static size_t on_sse(char *p, size_t size, size_t n, void *ud) {
    sse *s = ud;
    size_t len = size * n;
    long status = 0;
    curl_easy_getinfo(s->c->curl, CURLINFO_RESPONSE_CODE, &status);
    if (status != 200) return buf_append(&s->c->body, p, len) ? 0 : len; /* a problem answer */
    s->ok = true;
    for (size_t i = 0; i < len && !s->stopped; i++) {
        if (p[i] == '\n') {
            size_t ll = s->line.len;
            if (ll && s->line.ptr[ll - 1] == '\r') ll--;
            sse_line(s, s->line.ptr, ll);
            s->line.len = 0;
        } else if (buf_append(&s->line, p + i, 1)) {
            return 0;
        }
    }
    return s->stopped ? 0 : len; /* 0 makes curl stop */
}

int factum_client_subscribe(factum_client_t *c, const char *stream, const factum_query_t *q_in,
                            factum_client_event_cb cb, void *ctx, factum_error_t *err) {
    factum_query_t q = q_in ? *q_in : (factum_query_t){0};
    sse s = {.cb = cb, .ctx = ctx, .id = -1, .last_id = -1, .err = err, .c = c};
    bool connected_once = false;
    int backoff_ms = 100;
    for (;;) {
        buf_t url = {0};
        if (s.last_id < 0 && s.has_resume) q.from = s.resume, q.from_time = 0;
        base_url(&url, c, stream);
        query_string(&url, &q, !stream, false);
        buf_append(&url, "", 1);
        struct curl_slist *h = curl_slist_append(NULL, "Accept: text/event-stream");
        char last[64];
        if (s.last_id >= 0) {
            snprintf(last, sizeof last, "Last-Event-ID: %lld", (long long)s.last_id);
            h = curl_slist_append(h, last);
        }
        request_start(c, url.ptr);
        curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, on_sse);
        curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, &s);
        curl_easy_setopt(c->curl, CURLOPT_ERRORBUFFER, c->curl_err);
        curl_easy_setopt(c->curl, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(c->curl, CURLOPT_TCP_KEEPALIVE, 1L);
        set_auth(c);
        c->body.len = 0;
        c->curl_err[0] = 0;
        s.line.len = s.data.len = 0;
        s.ok = false;
        CURLcode cc = curl_easy_perform(c->curl);
        curl_slist_free_all(h);
        buf_free(&url);
        long status = 0;
        curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &status);
        if (s.stopped) break;
        if (status && status != 200) {
            s.rc = problem(c, status, err);
            break;
        }
        if (s.ok)
            connected_once = true, backoff_ms = 100;
        else if (!connected_once) {
            s.rc = unreachable(c, cc, err);
            break;
        }
        /* The connection dropped (or the server restarts): resume after the last event. */
        usleep((useconds_t)backoff_ms * 1000);
        backoff_ms = MIN(backoff_ms * 2, 5000);
    }
    buf_free(&s.line);
    buf_free(&s.data);
    return s.rc;
}

/* ---- timers ---- */

int factum_client_schedule(factum_client_t *c, int64_t at_us, const char *stream, const factum_event_t *event,
                           char id[37], factum_error_t *err) {
    id[0] = 0;
    buf_t url = {0}, body = {0};
    char at[32];
    time_format_rfc3339(at_us, at);
    buf_printf(&url, "%s/schedules", c->url);
    buf_append(&url, "", 1);
    buf_printf(&body, "{\"at\":\"%s\",\"stream\":", at);
    json_escape(&body, stream, strlen(stream));
    buf_printf(&body, ",\"event\":");
    size_t need = factum_event_json_input(event, NULL, 0);
    if (!buf_reserve(&body, need + 2)) {
        factum_event_json_input(event, body.ptr + body.len, need + 1);
        body.len += need;
    }
    buf_append(&body, "}", 1);
    long status = 0;
    int rc = post(c, url.ptr, "application/json", NULL, &body, &status, err);
    buf_free(&url);
    if (rc) return rc;
    if (status != 201) return problem(c, status, err);
    factum_str_t v, b = {c->body.ptr ? c->body.ptr : "", c->body.len};
    int kind;
    if (!json_member(b, "id", &v, &kind) || kind != JSON_STRING || v.len != 38)
        return err_set(err, FACTUM_EIO, "the server's answer has no schedule id");
    memcpy(id, v.ptr + 1, 36);
    id[36] = 0;
    return 0;
}

int factum_client_cancel_schedule(factum_client_t *c, const char *id, factum_error_t *err) {
    buf_t url = {0};
    buf_printf(&url, "%s/schedules/", c->url);
    buf_url_encode(&url, id, strlen(id));
    buf_append(&url, "", 1);
    request_start(c, url.ptr);
    curl_easy_setopt(c->curl, CURLOPT_CUSTOMREQUEST, "DELETE");
    long status = 0;
    int rc = perform(c, &status, err);
    buf_free(&url);
    if (rc) return rc;
    return status == 200 ? 0 : problem(c, status, err);
}

int factum_client_call(factum_client_t *c, const char *method, const char *path, const char *json_body, int *status,
                       char **response, factum_error_t *err) {
    return factum_client_call_with(c, method, path, json_body, NULL, status, response, err);
}

int factum_client_call_with(factum_client_t *c, const char *method, const char *path, const char *json_body,
                            const char *header, int *status, char **response, factum_error_t *err) {
    *status = 0;
    *response = NULL;
    buf_t url = {0};
    buf_printf(&url, "%s%s", c->url, path);
    buf_append(&url, "", 1);
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    h = curl_slist_append(h, "Expect:");
    if (header) h = curl_slist_append(h, header);
    request_start(c, url.ptr);
    curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c->curl, CURLOPT_CUSTOMREQUEST, method);
    if (json_body) {
        curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, json_body);
        curl_easy_setopt(c->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(json_body));
    }
    long st = 0;
    int rc = perform(c, &st, err);
    curl_slist_free_all(h);
    buf_free(&url);
    if (rc) return rc;
    *status = (int)st;
    *response = malloc(c->body.len + 1);
    if (!*response) return err_set(err, FACTUM_ENOMEM, "out of memory");
    memcpy(*response, c->body.ptr ? c->body.ptr : "", c->body.len);
    (*response)[c->body.len] = 0;
    return st >= 400 ? problem(c, st, err) : 0;
}

/* ---- consumer groups ---- */

int factum_client_pull(factum_client_t *c, const char *group, size_t max, int wait_ms, factum_events_t **events,
                       factum_delivery_id_t *ids, size_t *n, factum_error_t *err) {
    *events = NULL, *n = 0;
    char path[256];
    snprintf(path, sizeof path, "/groups/%s/messages?max=%zu&wait_ms=%d", group, max, wait_ms);
    int status;
    char *resp;
    int rc = factum_client_call(c, "POST", path, NULL, &status, &resp, err);
    if (rc) {
        free(resp);
        return rc;
    }
    /* [{"delivery_id","attempt","event"}...]: the events into one array the parser takes */
    buf_t arr = {0};
    buf_append(&arr, "[", 1);
    json_iter_t it;
    factum_str_t el, v;
    int kind;
    json_iter_init(&it, str_c(resp));
    while (*n < max && json_iter_element(&it, &el, &kind) == 1) {
        buf_t id = {0};
        if (!json_member_string(el, "delivery_id", &id) || id.len >= sizeof ids->id ||
            !json_member(el, "event", &v, &kind)) {
            buf_free(&id);
            continue;
        }
        memcpy(ids[*n].id, id.ptr, id.len + 1);
        buf_free(&id);
        if (*n) buf_append(&arr, ",", 1);
        buf_append(&arr, v.ptr, v.len);
        (*n)++;
    }
    buf_append(&arr, "]", 1);
    free(resp);
    if (*n && (rc = factum_events_parse(arr.ptr, arr.len, 1, events, err))) {
        buf_free(&arr);
        *n = 0;
        return rc;
    }
    if (*n)
        events_own_text(*events, arr.ptr); /* the set frees the text */
    else
        buf_free(&arr);
    return 0;
}

int factum_client_ack(factum_client_t *c, const char *group, const factum_delivery_id_t *ids, size_t n,
                      factum_error_t *err) {
    if (!n) return 0;
    buf_t body = {0};
    buf_append(&body, "{\"delivery_ids\":[", 17);
    for (size_t i = 0; i < n; i++) {
        if (i) buf_append(&body, ",", 1);
        json_escape(&body, ids[i].id, strlen(ids[i].id));
    }
    buf_append(&body, "]}", 3);
    char path[256];
    snprintf(path, sizeof path, "/groups/%s/ack", group);
    int status;
    char *resp;
    int rc = factum_client_call(c, "POST", path, body.ptr, &status, &resp, err);
    factum_str_t refused;
    int kind;
    if (!rc && resp && json_member(str_c(resp), "refused", &refused, &kind) && kind == JSON_ARRAY && refused.len > 2)
        rc =
            err_set(err, FACTUM_ECONFLICT, "not acked (the others are): %.*s", (int)MIN(refused.len, 400), refused.ptr);
    free(resp);
    buf_free(&body);
    return rc;
}
