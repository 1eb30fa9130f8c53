/*
 * conn.c — one HTTP connection on its loop: read a request (head, then body: Content-Length or
 * chunked), hand the complete request to the route table (route.c), queue and send the answer,
 * and close when it is over. Answers are built here too: conn_respond, conn_problem and the
 * problem for an engine error (server_problem). Everything runs on the loop thread that owns
 * the connection; the loop (server.c) calls conn_readable and conn_settle on its events.
 */
#include "server.h"

#include "route.h"

#include "../base/json.h"
#include "../group/groups.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define READ_CHUNK 16384
#define OUT_HIGH (256u << 10) /* stop reading pipelined requests while this much is unsent */

/* ---- connections ---- */

/* Input is wanted unless an append is in flight, the peer is done, or answers pile up; and
   either event when TLS waits for it (tls.c). */
static void conn_set_events(conn *c) {
    bool out = c->out.len > c->out_off || (c->tls_want & TLS_READ_WANTS_OUT);
    bool in =
        !c->eof && ((c->state != C_APPEND && c->out.len - c->out_off < OUT_HIGH) || (c->tls_want & TLS_WRITE_WANTS_IN));
    uint32_t mask = (in ? EPOLLIN | EPOLLRDHUP : 0) | (out ? EPOLLOUT : 0);
    if (mask == c->mask) return;
    c->mask = mask;
    struct epoll_event ev = {.events = mask, .data.ptr = c};
    epoll_ctl(c->l->ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static void request_free(request *r) {
    if (!r) return;
    free(r->head);
    buf_free(&r->body);
    free(r);
}

void loop_ready(conn *c) {
    if (c->in_ready) return;
    c->in_ready = true;
    c->ready_next = c->l->ready;
    c->l->ready = c;
}

static void conn_free(conn *c) {
    if (c->in_ready)
        for (conn **p = &c->l->ready; *p; p = &(*p)->ready_next)
            if (*p == c) {
                *p = c->ready_next;
                break;
            }
    if (c->state == C_WAIT) atomic_fetch_sub(&c->l->nwaiting, 1);
    loop_unlisten(c);
    request_free(c->req);
    if (c->sub) {
        if (c->sub->group[0]) groups_release_member(c->l->srv->groups, c->sub->group, (uint64_t)(uintptr_t)c);
        sub_free(c->sub);
        atomic_fetch_sub(&c->l->nsubs, 1);
    }
    buf_free(&c->in);
    buf_free(&c->out);
    free(c);
}

/* Closes the socket and unlinks c; frees it now, or when its append calls back. */
static void conn_close(conn *c) {
    loop *l = c->l;
    if (c->fd >= 0) {
        epoll_ctl(l->ep, EPOLL_CTL_DEL, c->fd, NULL);
        tls_end(c);
        close(c->fd);
        c->fd = -1;
        atomic_fetch_sub(&l->srv->nconns, 1);
        if (c->prev)
            c->prev->next = c->next;
        else
            l->conns = c->next;
        if (c->next) c->next->prev = c->prev;
        l->nconns--;
    }
    if (c->state == C_APPEND)
        c->dead = true; /* the writer still holds it */
    else
        conn_free(c);
}

void conn_flush(conn *c) {
    while (c->out.len > c->out_off) {
        ssize_t n = tls_send(c, c->out.ptr + c->out_off, c->out.len - c->out_off);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) break;
            c->close_after = true, c->out_off = c->out.len; /* the peer is gone */
            break;
        }
        c->out_off += (size_t)n;
        c->last_io_ms = server_now_ms();
    }
    if (c->out_off == c->out.len) {
        c->out.len = c->out_off = 0;
        if (c->out.cap > (1u << 20)) buf_free(&c->out);
    } else if (c->out_off > (1u << 20) && c->out_off * 2 > c->out.len) {
        memmove(c->out.ptr, c->out.ptr + c->out_off, c->out.len - c->out_off);
        c->out.len -= c->out_off, c->out_off = 0;
    }
    conn_set_events(c);
}

void conn_send(conn *c, const void *p, size_t n) {
    if (buf_append(&c->out, p, n)) {
        c->close_after = true;
        return;
    }
}

void conn_respond(conn *c, int status, const char *ctype, const char *extra, const char *body, size_t n) {
    char head[640];
    if (c->req && !c->req->h.keep_alive) c->close_after = true;
    if (atomic_load(&c->l->srv->stopping)) c->close_after = true;
    /* Any origin may call (there is no auth yet); browsers may read the paging headers. */
    int hl = snprintf(
        head, sizeof head,
        "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s"
        "Access-Control-Allow-Origin: *\r\nAccess-Control-Expose-Headers: ETag, Link, Factum-Head\r\n%s\r\n",
        status, http_reason(status), ctype, n, c->close_after ? "Connection: close\r\n" : "", extra ? extra : "");
    if (buf_reserve(&c->out, (size_t)hl + n)) {
        c->close_after = true;
        return;
    }
    conn_send(c, head, (size_t)hl);
    if (c->req && http_token_is(c->req->h.method, "head")) n = 0;
    conn_send(c, body, n);
    relaxed_add(&c->l->status[status < 600 ? status : 599], 1);
    relaxed_add(&c->l->requests[status / 100 % 6], 1);
}

void conn_problem(conn *c, int status, const char *slug, const char *members, const char *fmt, ...) {
    char detail[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    buf_t b = {0};
    buf_printf(&b, "{\"type\":\"urn:factum:problem:%s\",\"title\":\"%s\",\"status\":%d,\"detail\":", slug,
               http_reason(status), status);
    json_escape(&b, detail, strlen(detail));
    if (members) buf_printf(&b, ",%s", members);
    buf_append(&b, "}", 1);
    conn_respond(c, status, "application/problem+json", NULL, b.ptr ? b.ptr : "", b.len);
    buf_free(&b);
}

/* Answers a framing error and closes: the rest of the stream cannot be trusted. */
static void conn_fail(conn *c, int status, const char *why) {
    c->close_after = true;
    conn_problem(c, status, "bad-request", NULL, "%s", why);
    c->state = C_HEAD;
}

void server_problem(conn *c, int rc, const char *msg) {
    switch (rc) {
    case FACTUM_EBADSTREAM: conn_problem(c, 400, "bad-stream", NULL, "%s", msg); break;
    case FACTUM_EBADEVENT: conn_problem(c, 400, "bad-event", NULL, "%s", msg); break;
    case FACTUM_EINVAL: conn_problem(c, 400, "bad-request", NULL, "%s", msg); break;
    case FACTUM_ETOOBIG: conn_problem(c, 413, "too-large", NULL, "%s", msg); break;
    case FACTUM_ECONFLICT: conn_problem(c, 409, "conflict", NULL, "%s", msg); break;
    case FACTUM_ENOTFOUND: conn_problem(c, 404, "not-found", NULL, "%s", msg); break;
    case FACTUM_EDELETED: conn_problem(c, 410, "gone", NULL, "%s", msg); break;
    case FACTUM_ENOSPC: conn_problem(c, 507, "no-space", NULL, "%s", msg); break;
    case FACTUM_EFAILED:
    case FACTUM_EIO:
    case FACTUM_ECLOSED:
    case FACTUM_EUNREACHABLE: conn_problem(c, 503, "unavailable", NULL, "%s", msg); break;
    case FACTUM_ETIMEDOUT: conn_problem(c, 504, "timeout", NULL, "%s", msg); break;
    default: conn_problem(c, 500, "internal", NULL, "%s: %s", factum_errname(rc), msg); break;
    }
}

/* ---- reading requests ---- */

static void finish_request(conn *c) {
    request_free(c->req);
    c->req = NULL;
    c->state = C_HEAD;
    c->deadline_ms = 0;
}

/* Runs the request whose body is complete. */
void server_wait(conn *c, uint64_t ms) {
    c->state = C_WAIT;
    c->deadline_ms = server_now_ms() + ms;
    atomic_fetch_add(&c->l->nwaiting, 1); /* so commits wake this loop */
    loop_listen(c, 0);
}

static void dispatch(conn *c, factum_str_t body) {
    api_handle(c, body);
    if (c->state == C_BODY || c->state == C_SSE) {
        int st = c->state;
        finish_request(c); /* answered at once, or now a subscription */
        c->state = st == C_SSE ? C_SSE : C_HEAD;
    }
}

/* Makes progress on buffered input. Returns false when c was closed. */
static void process_input(conn *c) {
    loop *l = c->l;
    server *s = l->srv;
    while (!c->close_after && c->state != C_APPEND && c->state != C_SSE && c->state != C_WAIT &&
           c->out.len - c->out_off < OUT_HIGH) {
        char *p = c->in.ptr + c->in_off;
        size_t avail = c->in.len - c->in_off;
        if (c->state == C_HEAD) {
            if (avail == 0) break;
            if (!c->deadline_ms) c->deadline_ms = server_now_ms() + s->cfg.header_timeout_ms;
            http_req tmp;
            const char *why = NULL;
            long hl = http_parse_head(p, avail, &tmp, &why);
            if (hl == 0) break;
            if (hl < 0) {
                conn_fail(c, (int)-hl, why);
                break;
            }
            request *r = calloc(1, sizeof *r);
            if (!r || !(r->head = malloc((size_t)hl))) {
                free(r);
                conn_fail(c, 500, "out of memory");
                break;
            }
            memcpy(r->head, p, (size_t)hl);
            http_parse_head(r->head, (size_t)hl, &r->h, &why); /* spans into the private copy */
            r->started_ns = clock_mono_ns();
            c->req = r;
            c->in_off += (size_t)hl;
            c->state = C_BODY;
            c->deadline_ms = server_now_ms() + s->cfg.body_timeout_ms;
            if (r->h.content_length > (int64_t)s->cfg.max_body) {
                c->close_after = true;
                conn_problem(c, 413, "too-large", NULL, "request body is %lld bytes, the limit is %zu",
                             (long long)r->h.content_length, s->cfg.max_body);
                break;
            }
            r->body_need = r->h.content_length > 0 ? (size_t)r->h.content_length : 0;
            if (r->h.expect_continue && (r->body_need || r->h.chunked) && c->in.len == c->in_off)
                conn_send(c, "HTTP/1.1 100 Continue\r\n\r\n", 25);
            continue;
        }
        /* C_BODY */
        request *r = c->req;
        if (r->h.chunked) {
            bool done;
            const char *why = NULL;
            long used = http_chunked_decode(&r->chunk, p, avail, &r->body, s->cfg.max_body, &done, &why);
            if (used < 0) {
                c->close_after = true;
                if (used == -413)
                    conn_problem(c, 413, "too-large", NULL, "request body is larger than %zu bytes", s->cfg.max_body);
                else
                    conn_fail(c, 400, why);
                break;
            }
            c->in_off += (size_t)used;
            if (!done) break;
            dispatch(c, (factum_str_t){r->body.ptr ? r->body.ptr : "", r->body.len});
        } else {
            if (avail < r->body_need) {
                if (buf_reserve(&c->in, r->body_need - avail)) conn_fail(c, 500, "out of memory");
                break;
            }
            c->in_off += r->body_need;
            dispatch(c, (factum_str_t){p, r->body_need});
        }
    }
    if (c->in_off == c->in.len) {
        c->in.len = c->in_off = 0;
        if (c->state == C_HEAD || c->state == C_SSE) buf_free(&c->in); /* idle connections hold no buffers */
    }
    if (c->eof && c->state != C_APPEND) c->close_after = true;
}

void conn_wait_over(conn *c) {
    atomic_fetch_sub(&c->l->nwaiting, 1);
    loop_unlisten(c);
    finish_request(c);
    process_input(c);
}

void conn_done(conn *c) {
    if (c->dead) {
        if (c->job && c->job_free) c->job_free(c->job);
        c->job = NULL;
        c->state = C_HEAD;
        if (c->fd >= 0)
            conn_close(c);
        else
            conn_free(c);
        return;
    }
    c->ar_done(c);
    finish_request(c);
    process_input(c);
    conn_settle(c);
}

void conn_readable(conn *c) {
    /* A few rounds, then other connections' turn: the socket's level-triggered event brings
       us back for more, but what TLS read ahead (tls_pending) must be taken now. */
    for (int rounds = 0; (rounds < 4 || tls_pending(c)) && !c->eof; rounds++) {
        if (c->in_off && c->in_off == c->in.len) c->in.len = c->in_off = 0;
        if (c->in_off > 0 && c->in.cap - c->in.len < READ_CHUNK / 2) {
            memmove(c->in.ptr, c->in.ptr + c->in_off, c->in.len - c->in_off);
            c->in.len -= c->in_off, c->in_off = 0;
        }
        if (buf_reserve(&c->in, READ_CHUNK)) {
            c->close_after = true;
            return;
        }
        size_t room = c->in.cap - c->in.len;
        ssize_t n = tls_recv(c, c->in.ptr + c->in.len, room);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) break;
        if (n <= 0) {
            c->eof = true; /* end of input, or a reset */
            break;
        }
        c->in.len += (size_t)n;
        c->last_io_ms = server_now_ms();
        if (c->state == C_SSE) c->in.len = c->in_off = 0; /* subscribers have nothing to say */
        if ((size_t)n < room && !tls_pending(c)) break;
    }
    if (c->eof && (c->state == C_APPEND || c->state == C_SSE)) {
        c->out.len = c->out_off = 0;
        c->close_after = true;
        if (c->state == C_APPEND) conn_close(c); /* freed when the writer calls back */
        return;
    }
    process_input(c);
}

/* After any event on c: send, then close if it is over. */
void conn_settle(conn *c) {
    if (c->fd < 0) return;
    conn_flush(c);
    if (c->close_after && c->out.len == c->out_off && c->state != C_APPEND) {
        tls_end(c);
        shutdown(c->fd, SHUT_WR);
        conn_close(c);
    }
}
