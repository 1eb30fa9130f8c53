/*
 * audit.c — the system stream $audit: who did what, when, from where (docs/security.md).
 *
 * Two kinds of records, appended asynchronously from the loop that answers (the writer's
 * callback does nothing: an audit record never holds a request back):
 *   AdminAction     {"who","peer","method","path","status"}: the answer to an admin or operator
 *                   change (a route of PERM_OPERATE or PERM_ADMIN other than GET), recorded when
 *                   it is answered so the outcome is known.
 *   RequestsDenied  {"who","peer","method","path","status","reason","permission","count"}:
 *                   refused requests, aggregated: the first of a (key, address, reason) is
 *                   recorded at once and opens a 10 s window; the ones after it in the window
 *                   are counted, and the count is recorded when the window closes (audit_tick,
 *                   from every loop's sweep), with the last one's method and path.
 * "who" is the key id, or "anonymous". The time is the event's own. Nothing is recorded while
 * the server has no keys (the developer's laptop writes no audit).
 */
#include "api.h"

#include "../base/json.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#define AUDIT_STREAM "$audit"
#define AUDIT_WINDOW_MS 10000
#define AUDIT_SLOTS 256 /* (key, address, reason) windows open at once; the oldest gives way */

typedef struct denial {
    char who[AUTH_ID_LEN + 10], peer[48], method[12], path[160];
    auth_result why;
    auth_perm perm;
    int status;
    uint64_t count; /* refused since the window opened, not yet recorded */
    uint64_t opened_ms;
} denial;

struct audit {
    factum_t *db;
    pthread_mutex_t mu;
    _Atomic uint32_t n;
    denial d[AUDIT_SLOTS];
};

int audit_open(factum_t *db, audit_t **out, factum_error_t *err) {
    audit_t *a = calloc(1, sizeof *a);
    if (!a) return err_set(err, FACTUM_ENOMEM, "out of memory");
    a->db = db;
    pthread_mutex_init(&a->mu, NULL);
    *out = a;
    return 0;
}

void audit_close(audit_t *a) {
    if (!a) return;
    pthread_mutex_destroy(&a->mu);
    free(a);
}

static void appended(void *ctx, int rc, const factum_append_result_t *res, const char *msg) {
    (void)ctx, (void)rc, (void)res, (void)msg; /* a failed audit append fails the writer: /health says so */
}

static void append(audit_t *a, const char *type, buf_t *data) {
    factum_event_t e = {.type = str_c(type), .data = {data->ptr, data->len}, .data_format = FACTUM_DATA_JSON};
    factum_append_async(a->db, str_c(AUDIT_STREAM), FACTUM_EXPECT_ANY, &e, 1, appended, NULL, NULL);
    buf_free(data);
}

/* {"who","peer","method","path","status" — the members both kinds have. */
static void common(buf_t *b, const char *who, const char *peer, factum_str_t method, factum_str_t path, int status) {
    buf_printf(b, "{\"who\":\"%s\",\"peer\":", who);
    json_escape(b, peer, strlen(peer));
    buf_append(b, ",\"method\":", 10);
    json_escape_lossy(b, method.ptr, MIN(method.len, 12));
    buf_append(b, ",\"path\":", 8);
    json_escape_lossy(b, path.ptr, MIN(path.len, 512));
    buf_printf(b, ",\"status\":%d", status);
}

void audit_answered(conn *c, int status) {
    c->audit = false;
    server *s = c->l->srv;
    if (!c->req || !auth_keys_enforced(s->keys)) return;
    buf_t b = {0};
    common(&b, c->req_key[0] ? c->req_key : "anonymous", guard_peer(c), c->req->h.method, c->req->h.path, status);
    buf_append(&b, "}", 1);
    append(s->audit, "AdminAction", &b);
}

static void record_denial(audit_t *a, denial *d) {
    buf_t b = {0};
    common(&b, d->who, d->peer, str_c(d->method), str_c(d->path), d->status);
    buf_printf(&b, ",\"reason\":\"%s\",\"permission\":\"%s\",\"count\":%llu}", auth_result_name(d->why),
               auth_perm_name(d->perm), (unsigned long long)d->count);
    d->count = 0;
    append(a, "RequestsDenied", &b);
}

void audit_denied(conn *c, const route *r, auth_result why, int status) {
    audit_t *a = c->l->srv->audit;
    const char *who = why == AUTH_FORBIDDEN ? c->who.id : "anonymous";
    const char *peer = guard_peer(c);
    uint64_t now = server_now_ms();
    pthread_mutex_lock(&a->mu);
    uint32_t n = atomic_load(&a->n);
    denial *d = NULL, *oldest = NULL;
    for (uint32_t i = 0; i < n && !d; i++) {
        denial *x = &a->d[i];
        if (x->why == why && !strcmp(x->who, who) && !strcmp(x->peer, peer)) d = x;
        if (!oldest || x->opened_ms < oldest->opened_ms) oldest = x;
    }
    bool fresh = !d;
    if (fresh) {
        if (n < AUDIT_SLOTS)
            atomic_store(&a->n, n + 1), d = &a->d[n];
        else if ((d = oldest)->count)
            record_denial(a, d); /* the oldest window gives way: what it held is recorded now */
        memset(d, 0, sizeof *d);
        snprintf(d->who, sizeof d->who, "%s", who);
        snprintf(d->peer, sizeof d->peer, "%s", peer);
        d->why = why, d->opened_ms = now;
    }
    const http_req *h = &c->req->h;
    snprintf(d->method, sizeof d->method, "%.*s", (int)MIN(h->method.len, 11), h->method.ptr);
    snprintf(d->path, sizeof d->path, "%.*s", (int)MIN(h->path.len, sizeof d->path - 1), h->path.ptr);
    d->perm = r->perm, d->status = status;
    d->count++;
    if (fresh) record_denial(a, d);
    pthread_mutex_unlock(&a->mu);
}

void audit_tick(audit_t *a, uint64_t now_ms) {
    if (!atomic_load_explicit(&a->n, memory_order_relaxed)) return;
    pthread_mutex_lock(&a->mu);
    uint32_t n = atomic_load(&a->n);
    for (uint32_t i = 0; i < n;) {
        denial *d = &a->d[i];
        if (now_ms - d->opened_ms < AUDIT_WINDOW_MS) {
            i++;
        } else if (d->count) {
            record_denial(a, d); /* and a new window opens */
            d->opened_ms = now_ms;
            i++;
        } else {
            *d = a->d[--n]; /* a window with nothing in it closes */
        }
    }
    atomic_store(&a->n, n);
    pthread_mutex_unlock(&a->mu);
}
