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

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define READ_CHUNK 16384
#define OUT_HIGH (256u << 10)                /* stop reading pipelined requests while this much is unsent */
#define IN_HIGH (HTTP_MAX_HEAD + READ_CHUNK) /* ... or while this much input waits (beyond a body) */
#define TURN_REQUESTS 16                     /* requests one connection runs before the others' turn */
/* ... and then, while other clients are active (a request of a connection that never used up a
   turn in the last PACE_WINDOW_NS), it waits 9 times as long as its turn took, times the
   pipelining connections of its loop: together they take a tenth of the loop at most. Alone, it
   is not paced. */
#define TURN_PACE 9
#define PACE_WINDOW_NS 100000000ull

/* ---- connections ---- */

static void conn_track_idle_unlink(conn *c);

/* Input read and not yet used. */
static size_t in_pending(const conn *c) { return c->in.len - c->in_off; }

/* Reading more would grow the input buffer (and the budget has no room for that). */
static bool in_starved(const conn *c) { return c->in.cap - in_pending(c) < READ_CHUNK && overload_over(c); }

/* Input is wanted unless an append is in flight, the peer is done, answers pile up, enough
   input already waits, or the memory budget has no room for more; and either event when TLS
   waits for it (tls.c). */
static void conn_set_events(conn *c) {
    bool out = c->out.len > c->out_off || (c->tls_want & TLS_READ_WANTS_OUT);
    size_t in_cap = IN_HIGH + (c->state == C_BODY && c->req ? c->req->body_need : 0);
    bool in =
        !c->eof &&
        ((c->state != C_APPEND && c->out.len - c->out_off < OUT_HIGH && in_pending(c) < in_cap && !in_starved(c)) ||
         (c->tls_want & TLS_WRITE_WANTS_IN));
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

/* After its turn: comes back at c->paced_ns. */
static void loop_pace(conn *c) {
    if (c->in_paced) return;
    c->in_paced = true;
    c->paced_next = c->l->paced;
    c->l->paced = c;
}

uint64_t loop_run_paced(loop *l) {
    if (!l->paced) return UINT64_MAX;
    uint64_t now = clock_mono_ns(), next = UINT64_MAX;
    conn *due = NULL;
    for (conn **p = &l->paced; *p;) {
        conn *c = *p;
        if (c->paced_ns <= now) {
            *p = c->paced_next;
            c->in_paced = false;
            c->paced_next = due;
            due = c;
        } else {
            if (c->paced_ns - now < next) next = c->paced_ns - now;
            p = &c->paced_next;
        }
    }
    while (due) {
        conn *c = due;
        due = c->paced_next;
        if (c->fd >= 0) conn_resume(c); /* may pace c again */
    }
    for (conn *c = l->paced; c; c = c->paced_next)
        if (c->paced_ns <= now)
            next = 0; /* the one that just ran used little time */
        else if (c->paced_ns - now < next)
            next = c->paced_ns - now;
    return next;
}

static void conn_free(conn *c) {
    if (c->in_ready)
        for (conn **p = &c->l->ready; *p; p = &(*p)->ready_next)
            if (*p == c) {
                *p = c->ready_next;
                break;
            }
    if (c->in_paced)
        for (conn **p = &c->l->paced; *p; p = &(*p)->paced_next)
            if (*p == c) {
                *p = c->paced_next;
                break;
            }
    if (c->state == C_WAIT) atomic_fetch_sub(&c->l->nwaiting, 1);
    loop_unlisten(c);
    request_free(c->req);
    if (c->park && c->park->on_close) c->park->on_close(c);
    buf_free(&c->in);
    buf_free(&c->out);
    overload_uncharge(c);
    free(c);
}

/* c is done with: freed at the end of its loop's turn (loop_free_closed), not now, because an
   event of the same epoll batch, a ready list being walked, or a wake list's next pointer may
   still name it; until then its fd is -1, which every one of them checks. */
static void conn_release(conn *c) {
    if (c->released) return;
    c->released = true;
    c->closed_next = c->l->closed;
    c->l->closed = c;
}

void loop_free_closed(loop *l) {
    while (l->closed) {
        conn *c = l->closed;
        l->closed = c->closed_next;
        conn_free(c);
    }
}

/* Closes the socket and unlinks c; frees it at the end of the turn, or after its append calls back. */
static void conn_close(conn *c) {
    loop *l = c->l;
    if (c->fd >= 0) {
        epoll_ctl(l->ep, EPOLL_CTL_DEL, c->fd, NULL);
        tls_end(c);
        close(c->fd);
        c->fd = -1;
        atomic_fetch_sub(&l->srv->nconns, 1);
        overload_release(l->srv, c->addr);
        conn_track_idle(c); /* off the idle list */
        if (c->prev)
            c->prev->next = c->next;
        else
            l->conns = c->next;
        if (c->next) c->next->prev = c->prev;
        l->nconns--;
    }
    loop_unlisten(c); /* no commit wakes it again */
    if (c->state == C_APPEND)
        c->dead = true; /* the writer still holds it */
    else
        conn_release(c);
}

void conn_flush(conn *c) {
    while (c->out.len > c->out_off && !c->wblocked) {
        ssize_t n = tls_send(c, c->out.ptr + c->out_off, c->out.len - c->out_off);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) {
                c->wblocked = true; /* a subscriber that does not read costs no syscall per commit */
                break;
            }
            c->close_after = true, c->out_off = c->out.len; /* the peer is gone */
            break;
        }
        c->out_off += (size_t)n;
        c->last_io_ms = c->sent_ms = server_now_ms();
    }
    if (c->out_off == c->out.len) {
        c->out.len = c->out_off = 0;
        c->sent_ms = server_now_ms(); /* nothing owed */
        /* Between requests, and a subscriber between sends, a connection holds no buffer: they
           count in the memory budget, and only a buffer with something unsent can be shed. */
        if (c->out.cap > (1u << 20) || c->state == C_SSE || (c->state == C_HEAD && !in_pending(c))) buf_free(&c->out);
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
    char head[1024];
    if (c->req && !c->req->h.keep_alive) c->close_after = true;
    if (atomic_load(&c->l->srv->stopping)) c->close_after = true;
    /* A cross-origin page admitted by origin.c may read the answer and its paging headers. */
    char cors[400];
    origin_headers(c, cors, sizeof cors);
    char framing[160] = ""; /* a 304 has neither: it stands for the representation the client has */
    if (status != 304) snprintf(framing, sizeof framing, "Content-Type: %s\r\nContent-Length: %zu\r\n", ctype, n);
    int hl = snprintf(head, sizeof head, "HTTP/1.1 %d %s\r\n%s%s%s%s\r\n", status, http_reason(status), framing,
                      c->close_after ? "Connection: close\r\n" : "", cors, extra ? extra : "");
    if (buf_reserve(&c->out, (size_t)hl + n)) {
        c->close_after = true;
        return;
    }
    conn_send(c, head, (size_t)hl);
    if (c->req && http_token_is(c->req->h.method, "head")) n = 0;
    conn_send(c, body, n);
    relaxed_add(&c->l->status[status < 600 ? status : 599], 1);
    relaxed_add(&c->l->requests[status / 100 % 6], 1);
    if (c->audit) audit_answered(c, status);
    access_request(c, status, n);
}

static void vproblem(conn *c, int status, const char *slug, const char *headers, const char *members, const char *fmt,
                     va_list ap) {
    char detail[1024];
    vsnprintf(detail, sizeof detail, fmt, ap);
    buf_t b = {0};
    buf_printf(&b, "{\"type\":\"urn:factum:problem:%s\",\"title\":\"%s\",\"status\":%d,\"detail\":", slug,
               http_reason(status), status);
    json_escape(&b, detail, strlen(detail));
    if (members) buf_printf(&b, ",%s", members);
    buf_append(&b, "}", 1);
    conn_respond(c, status, "application/problem+json", headers, b.ptr ? b.ptr : "", b.len);
    buf_free(&b);
}

void conn_problem(conn *c, int status, const char *slug, const char *members, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vproblem(c, status, slug, NULL, members, fmt, ap);
    va_end(ap);
}

void conn_problem_headers(conn *c, int status, const char *slug, const char *headers, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vproblem(c, status, slug, headers, NULL, fmt, ap);
    va_end(ap);
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
    case FACTUM_ESCHEMA: schema_problem(c, msg); break;
    case FACTUM_EINVAL: conn_problem(c, 400, "bad-request", NULL, "%s", msg); break;
    case FACTUM_ETOOBIG: conn_problem(c, 413, "too-large", NULL, "%s", msg); break;
    case FACTUM_ECONFLICT: conn_problem(c, 409, "conflict", NULL, "%s", msg); break;
    case FACTUM_ECONDITION: conn_problem(c, 409, "condition-failed", NULL, "%s", msg); break;
    case FACTUM_ENOTFOUND: conn_problem(c, 404, "not-found", NULL, "%s", msg); break;
    case FACTUM_EDELETED: conn_problem(c, 410, "gone", NULL, "%s", msg); break;
    case FACTUM_ENOSPC: conn_problem(c, 507, "no-space", NULL, "%s", msg); break;
    case FACTUM_EFAILED:
    case FACTUM_EIO:
    case FACTUM_ECLOSED:
    case FACTUM_ENOTLEADER:
    case FACTUM_EUNREACHABLE: conn_problem(c, 503, "unavailable", NULL, "%s", msg); break;
    case FACTUM_ETIMEDOUT: conn_problem(c, 504, "timeout", NULL, "%s", msg); break;
    default: conn_problem(c, 500, "internal", NULL, "%s: %s", factum_errname(rc), msg); break;
    }
}

/* ---- reading requests ---- */

static void finish_request(conn *c) {
    request_free(c->req);
    c->req = NULL;
    c->reserved = 0;
    c->state = C_HEAD;
    c->deadline_ms = 0;
    c->waited_out = false;
}

/* Runs the request whose body is complete. */
void server_wait(conn *c, uint64_t ms, const park_ops *ops) {
    c->state = C_WAIT;
    c->park = ops;
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

/* Grows c->in to hold `extra` more bytes, exactly: buf_reserve doubles, and a body of 1 MiB
   would then hold 2 of the memory budget. */
static int in_reserve_exact(conn *c, size_t extra) {
    if (c->in.cap - c->in.len >= extra) return 0;
    char *p = realloc(c->in.ptr, c->in.len + extra);
    if (!p) return FACTUM_ENOMEM;
    c->in.ptr = p, c->in.cap = c->in.len + extra;
    return 0;
}

/* A body is not read unless the memory budget has room for it: 503, try again later. */
static void refuse_body(conn *c, size_t n) {
    c->close_after = true;
    conn_problem_headers(c, 503, "busy", "Retry-After: 1\r\n",
                         "the memory budget (--max-memory) has no room for a body of %zu bytes now", n);
}

/* Makes progress on buffered input; sets in_stalled when requests wait for the output to drain
   or for room in the memory budget (conn_settle goes on then). */
static void process_input(conn *c) {
    loop *l = c->l;
    server *s = l->srv;
    bool blocked = false;
    int started = 0;
    uint64_t t0 = clock_mono_ns();
    while (!c->close_after && c->state != C_APPEND && c->state != C_SSE && c->state != C_WAIT &&
           c->out.len - c->out_off < OUT_HIGH) {
        char *p = c->in.ptr + c->in_off;
        size_t avail = c->in.len - c->in_off;
        if (c->state == C_HEAD) {
            if (avail == 0) break;
            if (!c->deadline_ms) c->deadline_ms = server_now_ms() + s->cfg.header_timeout_ms;
            /* RFC 9112 2.2: empty lines before the request line are ignored (they count
               against the header timeout all the same). */
            while (avail >= 2 && p[0] == '\r' && p[1] == '\n')
                p += 2, avail -= 2, c->in_off += 2;
            if (avail == 0 || (avail == 1 && p[0] == '\r')) break;
            if ((blocked = overload_over(c))) break; /* no new request over the memory budget */
            /* A pipelining client runs a few requests, then waits for the others' turn: a
               flood on one connection must not make every other client wait for it. */
            if ((blocked = started == TURN_REQUESTS)) {
                c->turn_ns = t0; /* conn_settle paces it once the answers are sent */
                c->pipelined = true;
                break;
            }
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
            if (!c->pipelined) atomic_store_explicit(&s->others_ns, r->started_ns, memory_order_relaxed);
            started++;
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
            if (r->body_need && !overload_reserve(c, c->in_off + r->body_need + READ_CHUNK)) {
                refuse_body(c, r->body_need);
                break;
            }
            if (r->h.expect_continue && (r->body_need || r->h.chunked) && c->in.len == c->in_off)
                conn_send(c, "HTTP/1.1 100 Continue\r\n\r\n", 25);
            continue;
        }
        /* C_BODY */
        request *r = c->req;
        if (r->h.chunked) {
            if (overload_over(c)) { /* a chunked body grows as it comes: while there is room */
                refuse_body(c, r->body.len + avail);
                break;
            }
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
                if (in_reserve_exact(c, r->body_need - avail + READ_CHUNK)) conn_fail(c, 500, "out of memory");
                break;
            }
            c->in_off += r->body_need;
            dispatch(c, (factum_str_t){p, r->body_need});
        }
    }
    c->in_stalled = !c->close_after && (c->state == C_HEAD || c->state == C_BODY) && in_pending(c) &&
                    (blocked || c->out.len - c->out_off >= OUT_HIGH);
    if (c->in_off == c->in.len) {
        c->in.len = c->in_off = 0;
        if (c->state == C_HEAD || c->state == C_SSE) buf_free(&c->in); /* idle connections hold no buffers */
    }
    if (c->eof && c->state != C_APPEND) c->close_after = true;
}

void conn_wait_over(conn *c) {
    atomic_fetch_sub(&c->l->nwaiting, 1);
    loop_unlisten(c);
    c->park = NULL;
    finish_request(c);
    process_input(c);
}

void conn_wait_rerun(conn *c) {
    atomic_fetch_sub(&c->l->nwaiting, 1);
    loop_unlisten(c);
    c->park = NULL;
    c->state = C_BODY;
    c->deadline_ms = 0;
    dispatch(c, (factum_str_t){"", 0}); /* only bodiless requests wait (reads) */
    if (c->state == C_HEAD) process_input(c);
}

void conn_done(conn *c) {
    if (c->dead) {
        if (c->job && c->job_free) c->job_free(c->job);
        c->job = NULL;
        c->state = C_HEAD;
        if (c->fd >= 0)
            conn_close(c);
        else
            conn_release(c);
        return;
    }
    c->state = C_BODY; /* answering: the writer or the worker is done with c */
    c->ar_done(c);
    finish_request(c);
    process_input(c);
    conn_settle(c);
}

void conn_readable(conn *c) {
    /* A few rounds, then other connections' turn: the socket's level-triggered event brings
       us back for more, but what TLS read ahead (tls_pending) must be taken now. */
    size_t in_cap = IN_HIGH + (c->state == C_BODY && c->req ? c->req->body_need : 0);
    for (int rounds = 0; (rounds < 4 || tls_pending(c)) && !c->eof && in_pending(c) < in_cap; rounds++) {
        if (c->in_off && c->in_off == c->in.len) c->in.len = c->in_off = 0;
        if (c->in_off > 0 && c->in.cap - c->in.len < READ_CHUNK) {
            memmove(c->in.ptr, c->in.ptr + c->in_off, c->in.len - c->in_off);
            c->in.len -= c->in_off, c->in_off = 0;
        }
        if (in_starved(c)) break; /* over the memory budget: the sweep looks again */
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
        c->spoke = true;
        if (c->idle) { /* back at the end when idle again */
            c->idle = false;
            atomic_fetch_sub_explicit(&c->l->nidle, 1, memory_order_relaxed);
            conn_track_idle_unlink(c);
        }
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

/* After any event on c: send; close if it is over; requests already read that wait for the
   answers before them to drain, or for their turn, run after the others have had theirs (the
   loop's ready list). */
void conn_settle(conn *c) {
    if (c->fd < 0) return;
    conn_flush(c);
    if (c->close_after && c->out.len == c->out_off && c->state != C_APPEND) {
        tls_end(c);
        shutdown(c->fd, SHUT_WR);
        conn_close(c);
        return;
    }
    overload_charge(c);
    conn_track_idle(c);
    if (c->turn_ns) { /* its turn is over: it waits TURN_PACE times what the turn took, sending included */
        uint64_t now = clock_mono_ns();
        uint64_t pacing = 1; /* c, and the others waiting for their next turn */
        for (conn *p = c->l->paced; p; p = p->paced_next)
            pacing += p != c;
        bool others = now - atomic_load_explicit(&c->l->srv->others_ns, memory_order_relaxed) < PACE_WINDOW_NS;
        c->paced_ns = others ? now + (now - c->turn_ns) * TURN_PACE * pacing : now;
        c->turn_ns = 0;
    }
    if (c->in_stalled && !c->close_after && c->out.len - c->out_off < OUT_HIGH && !overload_over(c)) {
        if (c->paced_ns > clock_mono_ns())
            loop_pace(c);
        else
            loop_ready(c);
    }
}

/* Its turn on the loop's ready list: requests already read run (a turn's worth). */
void conn_resume(conn *c) {
    if (c->in_stalled && !c->close_after && c->out.len - c->out_off < OUT_HIGH) process_input(c);
    conn_settle(c);
}

/* ---- idle connections and shedding ---- */

static void conn_track_idle_unlink(conn *c) {
    loop *l = c->l;
    if (c->iprev)
        c->iprev->inext = c->inext;
    else
        l->idle_first = c->inext;
    if (c->inext)
        c->inext->iprev = c->iprev;
    else
        l->idle_last = c->iprev;
    c->iprev = c->inext = NULL;
}

void conn_track_idle(conn *c) {
    bool idle =
        c->fd >= 0 && c->state == C_HEAD && !c->close_after && !c->req && !in_pending(c) && c->out.len == c->out_off;
    if (idle == c->idle) return;
    c->idle = idle;
    loop *l = c->l;
    atomic_fetch_add_explicit(&l->nidle, idle ? 1 : (uint32_t)-1, memory_order_relaxed);
    if (!idle) {
        conn_track_idle_unlink(c);
        return;
    }
    c->inext = NULL, c->iprev = l->idle_last;
    if (l->idle_last)
        l->idle_last->inext = c;
    else
        l->idle_first = c;
    l->idle_last = c;
}

bool loop_evict_idle(loop *l) {
    conn *c = l->idle_first;
    if (!c) return false;
    shutdown(c->fd, SHUT_RDWR);
    conn_close(c);
    return true;
}

#define SHED_STUCK_MS 100 /* a connection that sent nothing for this long is not reading */

static uint64_t shed_now_ms;

/* Who is cut first: those not reading, then the rest; in each, the largest buffer of unsent output. */
static int shed_order(const void *a, const void *b) {
    const conn *x = *(conn *const *)a, *y = *(conn *const *)b;
    bool sx = shed_now_ms - x->sent_ms >= SHED_STUCK_MS, sy = shed_now_ms - y->sent_ms >= SHED_STUCK_MS;
    if (sx != sy) return sx ? -1 : 1;
    return x->out.cap < y->out.cap ? 1 : x->out.cap > y->out.cap ? -1 : 0;
}

void loop_shed(loop *l) {
    server *s = l->srv;
    bool asked = l->short_of_memory;
    l->short_of_memory = false;
    if (!overload_server_over(s) && !(asked && overload_memory_used(s) > overload_memory_target(s))) return;
    conn **v = malloc(MAX(l->nconns, 1) * sizeof *v);
    if (!v) return;
    size_t n = 0;
    for (conn *c = l->conns; c && n < l->nconns; c = c->next)
        if (c->state != C_APPEND && c->out.len > c->out_off) v[n++] = c;
    shed_now_ms = server_now_ms(); /* the loop thread's; qsort takes no context */
    qsort(v, n, sizeof *v, shed_order);
    for (size_t i = 0; i < n && overload_memory_used(s) > overload_memory_target(s); i++) {
        conn *c = v[i];
        if (c->state == C_SSE) relaxed_add(&l->memory_drops, 1); /* it resumes with Last-Event-ID */
        c->out.len = c->out_off = 0;
        c->close_after = true;
        conn_settle(c);
    }
    free(v);
}
