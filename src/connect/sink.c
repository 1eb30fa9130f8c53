/*
 * sink.c — an HTTP sink's delivery thread (one per sink; docs/threads.md). It pulls from the
 * sink's consumer group (strategy by_stream: an event is handed out only once the ones before it
 * in its stream are done, so each stream arrives in order, and a pull holds at most one event
 * per stream), POSTs each event — all of a pull's at once, with libcurl's multi interface, up to
 * SINK_CONCURRENCY — or, with batch_max above 1, the pull as one CloudEvents batch, on handles
 * kept between pulls (keep-alive), then acks what the receiver took (2xx) and nacks the rest as retries: the group's
 * exponential backoff with jitter, or the receiver's Retry-After on 429 and 503. The group parks
 * an event whose retry would pass max_attempts, with the last answer as its reason. Every
 * change is the group engine's prepare → durable append → apply, as the /groups API does it.
 *
 * Each request carries ce-id (binary mode) and Idempotency-Key — the event's id, the same on
 * every attempt — and, when the sink has secrets, Factum-Signature: t=UNIX,v1=HEX per secret,
 * HMAC-SHA256 over "T.BODY" (docs/connectors.md). At-least-once: a crash between a receiver's
 * 2xx and the durable ack delivers that event again, with the same id.
 */
#include "connector.h"

#include "../base/json.h"
#include "../base/log.h"
#include "../group/groups.h"

#include <curl/curl.h>
#include <openssl/evp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#define REASON_BODY 160            /* bytes of a failed answer's body kept in the parked reason */
#define RETRY_AFTER_MAX_MS 3600000 /* a longer Retry-After is cut to this */
#define IDLE_WAIT_MS 100           /* nothing to deliver: wait for a commit, or a retry falling due */

/* ---- signing ---- */

void sink_sign(const conn_def *d, int64_t t, const char *body, size_t n, buf_t *out) {
    buf_printf(out, "t=%lld", (long long)t);
    char ts[24];
    int tl = snprintf(ts, sizeof ts, "%lld.", (long long)t);
    for (int i = 0; i < d->nsecrets; i++) {
        unsigned char mac[EVP_MAX_MD_SIZE];
        unsigned int len = 0;
        /* HMAC(secret, "T." || body) in two updates, so the body is not copied */
        EVP_PKEY *key = EVP_PKEY_new_raw_private_key(EVP_PKEY_HMAC, NULL, (const unsigned char *)d->secrets[i],
                                                     strlen(d->secrets[i]));
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        size_t mlen = sizeof mac;
        bool ok = key && ctx && EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, key) == 1 &&
                  EVP_DigestSignUpdate(ctx, ts, (size_t)tl) == 1 && EVP_DigestSignUpdate(ctx, body, n) == 1 &&
                  EVP_DigestSignFinal(ctx, mac, &mlen) == 1;
        len = (unsigned int)mlen;
        EVP_MD_CTX_free(ctx);
        EVP_PKEY_free(key);
        if (!ok) {
            log_msg(LOG_LEVEL_ERROR, "out of memory (signing a sink's request)");
            abort();
        }
        buf_append(out, ",v1=", 4);
        for (unsigned int k = 0; k < len; k++)
            buf_printf(out, "%02x", mac[k]);
    }
}

/* ---- one request ---- */

typedef struct answer {
    long status;
    int64_t retry_after_ms; /* -1: none */
    buf_t body;             /* the first REASON_BODY bytes */
} answer;

static size_t on_body(char *p, size_t size, size_t n, void *ctx) {
    answer *a = ctx;
    size_t len = size * n;
    if (a->body.len < REASON_BODY) buf_append(&a->body, p, MIN(len, REASON_BODY - a->body.len));
    return len;
}

static size_t on_header(char *p, size_t size, size_t n, void *ctx) {
    answer *a = ctx;
    size_t len = size * n;
    if (len > 12 && !strncasecmp(p, "retry-after:", 12)) {
        char v[64];
        snprintf(v, sizeof v, "%.*s", (int)MIN(len - 12, sizeof v - 1), p + 12);
        char *s = v;
        while (*s == ' ' || *s == '\t')
            s++;
        s[strcspn(s, "\r\n")] = 0;
        uint64_t secs;
        if (str_u64(str_c(s), &secs))
            a->retry_after_ms = (int64_t)MIN(secs * 1000, (uint64_t)RETRY_AFTER_MAX_MS);
        else {
            time_t at = curl_getdate(s, NULL); /* an HTTP-date */
            if (at > 0)
                a->retry_after_ms =
                    MIN(MAX(0, ((int64_t)at * 1000000 - clock_realtime_us()) / 1000), (int64_t)RETRY_AFTER_MAX_MS);
        }
    }
    return len;
}

/* A header value of the CloudEvents HTTP binding: printable ASCII but '%' and '"' as is, the
   rest percent-encoded. */
static void header_value(buf_t *h, const char *name, factum_str_t v) {
    buf_printf(h, "%s: ", name);
    for (size_t i = 0; i < v.len; i++) {
        unsigned char ch = (unsigned char)v.ptr[i];
        if (ch >= 0x20 && ch < 0x7f && ch != '%' && ch != '"')
            buf_append(h, &ch, 1);
        else
            buf_printf(h, "%%%02X", ch);
    }
}

/* Adds one header line (h holds it, NUL-terminated) to the list. */
static struct curl_slist *add_header(struct curl_slist *l, buf_t *h) {
    buf_append(h, "", 1);
    struct curl_slist *n = curl_slist_append(l, h->ptr);
    h->len = 0;
    if (!n) {
        log_msg(LOG_LEVEL_ERROR, "out of memory (a sink's request)");
        abort();
    }
    return n;
}

static void event_json(buf_t *b, const factum_event_t *e) {
    size_t need = factum_event_json(e, NULL, 0);
    if (!buf_reserve(b, need + 1)) {
        factum_event_json(e, b->ptr + b->len, need + 1);
        b->len += need;
    }
}

/* libcurl's progress callback: a request in flight is given up when the sink stops. */
static int on_progress(void *ctx, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un) {
    (void)dt, (void)dn, (void)ut, (void)un;
    return connector_stopping(ctx, NULL);
}

/* One request: its handle (kept, so its connection is kept alive), what it sends, its answer. */
typedef struct request {
    CURL *h;
    struct curl_slist *hdrs;
    buf_t body;
    answer a;
    char msg[CURL_ERROR_SIZE];
} request;

/* Sets r up to POST events ev[0..n) as the sink's mode says. */
static void request_prepare(connector *c, request *r, const factum_event_t *const *ev, size_t n) {
    const conn_def *d = &c->d;
    CURL *h = r->h;
    answer *a = &r->a;
    buf_t body = {0}, hv = {0};
    struct curl_slist *hdrs = NULL;
    const factum_event_t *e = ev[0];
    if (d->batch_max > 1) {
        buf_append(&body, "[", 1);
        for (size_t i = 0; i < n; i++) {
            if (i) buf_append(&body, ",", 1);
            event_json(&body, ev[i]);
        }
        buf_append(&body, "]", 1);
        buf_printf(&hv, "Content-Type: application/cloudevents-batch+json; charset=utf-8");
        hdrs = add_header(hdrs, &hv);
    } else if (d->mode == MODE_STRUCTURED) {
        event_json(&body, e);
        buf_printf(&hv, "Content-Type: application/cloudevents+json; charset=utf-8");
        hdrs = add_header(hdrs, &hv);
    } else {
        buf_append(&body, e->data.ptr, e->data.len);
        factum_str_t ct = e->datacontenttype.len               ? e->datacontenttype
                          : e->data_format == FACTUM_DATA_JSON ? str_c("application/json")
                                                               : str_c("application/octet-stream");
        header_value(&hv, "Content-Type", ct), hdrs = add_header(hdrs, &hv);
        buf_printf(&hv, "ce-specversion: 1.0"), hdrs = add_header(hdrs, &hv);
        header_value(&hv, "ce-id", e->id), hdrs = add_header(hdrs, &hv);
        header_value(&hv, "ce-type", e->type), hdrs = add_header(hdrs, &hv);
        if (e->source.len)
            header_value(&hv, "ce-source", e->source);
        else
            buf_printf(&hv, "ce-source: /streams/"), buf_url_encode(&hv, e->stream.ptr, e->stream.len);
        hdrs = add_header(hdrs, &hv);
        char t[32];
        time_format_rfc3339(e->time_us, t);
        buf_printf(&hv, "ce-time: %s", t), hdrs = add_header(hdrs, &hv);
        if (e->subject.len) header_value(&hv, "ce-subject", e->subject), hdrs = add_header(hdrs, &hv);
        if (e->correlationid.len) header_value(&hv, "ce-correlationid", e->correlationid), hdrs = add_header(hdrs, &hv);
        if (e->causationid.len) header_value(&hv, "ce-causationid", e->causationid), hdrs = add_header(hdrs, &hv);
        header_value(&hv, "ce-stream", e->stream), hdrs = add_header(hdrs, &hv);
        buf_printf(&hv, "ce-revision: %llu", (unsigned long long)e->revision), hdrs = add_header(hdrs, &hv);
        buf_printf(&hv, "ce-position: %llu", (unsigned long long)e->position), hdrs = add_header(hdrs, &hv);
    }
    /* The receiver's deduplication key: the event's id; a batch's first and last ids. */
    header_value(&hv, "Idempotency-Key", e->id);
    if (n > 1) buf_append(&hv, "..", 2), buf_append(&hv, ev[n - 1]->id.ptr, ev[n - 1]->id.len);
    hdrs = add_header(hdrs, &hv);
    if (d->nsecrets) {
        buf_printf(&hv, "Factum-Signature: ");
        sink_sign(d, clock_realtime_us() / 1000000, body.ptr ? body.ptr : "", body.len, &hv);
        hdrs = add_header(hdrs, &hv);
    }
    buf_printf(&hv, "Expect:"), hdrs = add_header(hdrs, &hv); /* no 100-continue round trip */
    a->status = 0, a->retry_after_ms = -1, a->body.len = 0;
    r->msg[0] = 0;
    r->hdrs = hdrs, r->body = body;
    curl_easy_setopt(h, CURLOPT_URL, d->url);
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body.ptr ? body.ptr : "");
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body.len);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)d->timeout_ms);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, a);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, a);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, r->msg);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "factum-sink/1");
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, c);
    curl_easy_setopt(h, CURLOPT_PRIVATE, r);
    buf_free(&hv);
}

/* The request ended with cc: its answer's status, or the transport's error as its reason. */
static void request_done(request *r, CURLcode cc) {
    if (cc == CURLE_OK) {
        curl_easy_getinfo(r->h, CURLINFO_RESPONSE_CODE, &r->a.status);
    } else {
        r->a.status = 0, r->a.body.len = 0;
        buf_printf(&r->a.body, "%s", r->msg[0] ? r->msg : curl_easy_strerror(cc));
    }
    curl_easy_setopt(r->h, CURLOPT_HTTPHEADER, NULL);
    curl_slist_free_all(r->hdrs);
    r->hdrs = NULL;
    buf_free(&r->body);
}

/* Sends the prepared requests rq[0..n) at once (libcurl's multi interface: as many connections
   as requests, each kept alive for the next pull) and waits for all of them. */
static void request_all(CURLM *m, request *rq, size_t n) {
    for (size_t i = 0; i < n; i++)
        curl_multi_add_handle(m, rq[i].h);
    int running = (int)n;
    while (running) {
        if (curl_multi_perform(m, &running) != CURLM_OK) break;
        if (running) curl_multi_poll(m, NULL, 0, 100, NULL);
    }
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(m, &left)))
        if (msg->msg == CURLMSG_DONE) {
            request *r;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&r);
            request_done(r, msg->data.result);
        }
    for (size_t i = 0; i < n; i++) {
        curl_multi_remove_handle(m, rq[i].h);
        if (rq[i].hdrs) request_done(&rq[i], CURLE_ABORTED_BY_CALLBACK); /* never finished */
    }
}

/* ---- ack and nack through the group ---- */

/* Prepares with fn, appends the record to the group's state stream, applies it once durable. */
static void write_change(connector *c, const char *type, factum_str_t req,
                         int (*fn)(groups_t *, const char *, factum_str_t, groups_change *, factum_error_t *)) {
    groups_t *gs = c->cs->env.groups;
    groups_change ch = {0};
    factum_error_t err;
    int rc = fn(gs, c->group, req, &ch, &err);
    if (!rc && ch.n) {
        char stream[GROUP_MAX_NAME + 8];
        groups_state_stream(c->group, stream);
        factum_event_t e = {.type = str_c(type), .data = {ch.rec.ptr, ch.rec.len}, .data_format = FACTUM_DATA_JSON};
        rc = factum_append(c->cs->env.db, str_c(stream), FACTUM_EXPECT_ANY, &e, 1, NULL, &err);
        if (rc)
            groups_write_abandoned(gs, c->group); /* the deliveries time out and come again */
        else
            groups_apply(gs, c->group, str_c(type), (factum_str_t){ch.rec.ptr, ch.rec.len});
    }
    if (rc && rc != FACTUM_ECONFLICT)
        log_msg(LOG_LEVEL_WARN, "connector %s: %s not written: %s", c->name, type, err.message);
    groups_change_free(&ch);
}

static void delivery_id(buf_t *b, const groups_delivery *d) {
    buf_printf(b, "\"%llu.%u\"", (unsigned long long)d->key, d->id_attempt);
}

static void ack(connector *c, const groups_delivery *d, size_t n) {
    if (!n) return;
    buf_t req = {0};
    buf_append(&req, "{\"delivery_ids\":[", 17);
    for (size_t i = 0; i < n; i++) {
        if (i) buf_append(&req, ",", 1);
        delivery_id(&req, &d[i]);
    }
    buf_append(&req, "]}", 2);
    write_change(c, "Acked", (factum_str_t){req.ptr, req.len}, groups_ack_prepare);
    buf_free(&req);
}

/* Why an attempt failed, as a parked event keeps it: "HTTP 500: body..." or the transport's
   error; printable ASCII only, at most 255 bytes. */
static void reason_of(const answer *a, char out[256]) {
    int k = a->status ? snprintf(out, 256, "HTTP %ld: ", a->status) : snprintf(out, 256, "no answer: ");
    for (size_t i = 0; i < a->body.len && k < 255; i++) {
        char ch = a->body.ptr[i];
        out[k++] = ch >= 0x20 && ch < 0x7f ? ch : ' ';
    }
    out[k] = 0;
}

static void nack(connector *c, const groups_delivery *d, size_t n, const answer *a) {
    char reason[256];
    reason_of(a, reason);
    buf_t req = {0};
    buf_append(&req, "{\"delivery_ids\":[", 17);
    for (size_t i = 0; i < n; i++) {
        if (i) buf_append(&req, ",", 1);
        delivery_id(&req, &d[i]);
    }
    buf_printf(&req, "],\"action\":\"retry\",\"reason\":");
    json_escape(&req, reason, strlen(reason));
    if ((a->status == 429 || a->status == 503) && a->retry_after_ms >= 0)
        buf_printf(&req, ",\"delay_ms\":%lld", (long long)a->retry_after_ms); /* else the group's backoff */
    buf_append(&req, "}", 1);
    write_change(c, "Nacked", (factum_str_t){req.ptr, req.len}, groups_nack_prepare);
    buf_free(&req);
    pthread_mutex_lock(&c->mu);
    c->failed_attempts += n;
    c->retrying = true;
    c->last_status = (int)a->status;
    snprintf(c->last_error, sizeof c->last_error, "%s", reason);
    c->last_failure_us = clock_realtime_us();
    pthread_mutex_unlock(&c->mu);
}

static void succeeded(connector *c, size_t n) {
    pthread_mutex_lock(&c->mu);
    c->delivered += n;
    c->retrying = false, c->failed = false;
    c->last_success_us = clock_realtime_us();
    pthread_mutex_unlock(&c->mu);
}

/* ---- the thread ---- */

/* How many deliveries one pull takes: a batch (one request), or one request each, all at once. */
static size_t pull_max(const conn_def *d) { return d->batch_max > 1 ? d->batch_max : SINK_CONCURRENCY; }

/* What a sink's thread holds: one request per delivery of a pull, and the multi handle. */
typedef struct sender {
    CURLM *m;
    request *rq;
    size_t n;
} sender;

static void deliver(connector *c, sender *sd, const groups_batch *b) {
    const factum_event_t **ev = malloc(b->n * sizeof *ev);
    groups_delivery *ok = malloc(b->n * sizeof *ok);
    if (!ev || !ok) abort(); /* the server may stop on out-of-memory (STYLE.md) */
    for (size_t i = 0; i < b->n; i++)
        ev[i] = b->d[i].event;
    /* A batch is one request; else one each, all at once (distinct streams: by_stream hands out
       one per stream at a time, so this keeps each stream's order). */
    size_t nreq = c->d.batch_max > 1 ? 1 : MIN(b->n, sd->n);
    for (size_t i = 0; i < nreq; i++)
        request_prepare(c, &sd->rq[i], nreq == 1 ? ev : &ev[i], nreq == 1 ? b->n : 1);
    if (nreq == 1)
        request_done(&sd->rq[0], curl_easy_perform(sd->rq[0].h));
    else
        request_all(sd->m, sd->rq, nreq);
    pthread_mutex_lock(&c->mu);
    c->requests += nreq;
    pthread_mutex_unlock(&c->mu);
    size_t nok = 0;
    bool stopping = connector_stopping(c, NULL); /* given up: what is left comes again, no attempt counted */
    for (size_t i = 0; i < nreq; i++) {
        const answer *a = &sd->rq[i].a;
        const groups_delivery *d = nreq == 1 ? b->d : &b->d[i];
        size_t k = nreq == 1 ? b->n : 1;
        if (a->status >= 200 && a->status < 300)
            memcpy(&ok[nok], d, k * sizeof *d), nok += k;
        else if (!stopping)
            nack(c, d, k, a);
    }
    ack(c, ok, nok); /* one durable record for every success of the pull */
    if (nok) succeeded(c, nok);
    free(ok);
    free(ev);
}

void *sink_main(void *arg) {
    connector *c = arg;
    factum_t *db = c->cs->env.db;
    sender sd = {.m = curl_multi_init(), .n = c->d.batch_max > 1 ? 1 : pull_max(&c->d)};
    sd.rq = calloc(sd.n, sizeof *sd.rq);
    for (size_t i = 0; sd.rq && i < sd.n; i++)
        if (!(sd.rq[i].h = curl_easy_init())) sd.m = NULL;
    if (!sd.m || !sd.rq) {
        log_msg(LOG_LEVEL_ERROR, "connector %s: out of memory (libcurl)", c->name);
        abort();
    }
    uint64_t head = factum_head_position(db);
    /* A member id of this thread's own (as a push member's): what it holds when it stops comes
       again at once, not after the ack timeout. */
    static _Atomic uint64_t members = 1ull << 62;
    uint64_t member = atomic_fetch_add(&members, 1);
    bool paused;
    while (!connector_stopping(c, &paused)) {
        uint64_t term;
        if (paused || !factum_leads(db, &term)) { /* in a cluster, only the leader delivers */
            connector_nap(c, 1000);
            continue;
        }
        groups_batch b = {0};
        factum_error_t err;
        int rc = groups_pull(c->cs->env.groups, c->group, pull_max(&c->d), member, &b, &err);
        if (rc) {
            pthread_mutex_lock(&c->mu);
            c->failed = true;
            snprintf(c->last_error, sizeof c->last_error, "%s", err.message);
            pthread_mutex_unlock(&c->mu);
            groups_batch_free(&b);
            connector_nap(c, 1000);
            continue;
        }
        if (b.n)
            deliver(c, &sd, &b);
        else
            head = factum_wait(db, head, IDLE_WAIT_MS); /* a commit, or a retry falling due */
        groups_batch_free(&b);
    }
    groups_release_member(c->cs->env.groups, c->group, member);
    for (size_t i = 0; i < sd.n; i++) {
        curl_easy_cleanup(sd.rq[i].h);
        buf_free(&sd.rq[i].a.body);
    }
    free(sd.rq);
    curl_multi_cleanup(sd.m);
    return NULL;
}
