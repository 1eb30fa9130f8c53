/*
 * server.c — event loops and connections: accept, read a request (head, then body), hand it
 * to api.c, write the response; deadlines against slow clients; the wake-ups from the writer
 * thread; start and graceful stop. See server.h for threads and ownership.
 */
#include "server.h"

#include "../base/json.h"
#include "../group/groups.h"
#include "timers.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define READ_CHUNK 16384
#define OUT_HIGH (256u << 10) /* stop reading pipelined requests while this much is unsent */
#define DRAIN_MS 5000

const double server_latency_bounds[SERVER_HIST] = {0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003,
                                                   0.005,  0.0075,  0.01,   0.025,   0.05,  0.1,    1.0,   1e300};

uint64_t server_now_ms(void) { return clock_mono_ns() / 1000000; }

static void relaxed_add(_Atomic uint64_t *c, uint64_t v) { atomic_fetch_add_explicit(c, v, memory_order_relaxed); }

void loop_observe_latency(loop *l, uint64_t ns) {
    double s = (double)ns / 1e9;
    size_t i = 0;
    while (s > server_latency_bounds[i])
        i++;
    relaxed_add(&l->lat[i], 1);
    relaxed_add(&l->lat_sum_us, ns / 1000);
}

static void wake(loop *l) {
    uint64_t one = 1;
    ssize_t n = write(l->efd, &one, sizeof one);
    (void)n; /* EAGAIN: the counter is already non-zero, the loop will wake */
}

/* ---- connections ---- */

/* Input is wanted unless an append is in flight, the peer is done, or answers pile up. */
static void conn_set_events(conn *c) {
    bool out = c->out.len > c->out_off;
    bool in = !c->eof && c->state != C_APPEND && c->out.len - c->out_off < OUT_HIGH;
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
        ssize_t n = send(c->fd, c->out.ptr + c->out_off, c->out.len - c->out_off, MSG_NOSIGNAL);
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
}

/* A long poll is over (answered); the connection reads its next request. */
static void wait_done(conn *c) {
    atomic_fetch_sub(&c->l->nwaiting, 1);
    finish_request(c);
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

static void conn_readable(conn *c) {
    for (int rounds = 0; rounds < 4 && !c->eof; rounds++) {
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
        ssize_t n = recv(c->fd, c->in.ptr + c->in.len, room, 0);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) break;
        if (n <= 0) {
            c->eof = true; /* end of input, or a reset */
            break;
        }
        c->in.len += (size_t)n;
        c->last_io_ms = server_now_ms();
        if (c->state == C_SSE) c->in.len = c->in_off = 0; /* subscribers have nothing to say */
        if ((size_t)n < room) break;
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
static void conn_settle(conn *c) {
    if (c->fd < 0) return;
    conn_flush(c);
    if (c->close_after && c->out.len == c->out_off && c->state != C_APPEND) {
        shutdown(c->fd, SHUT_WR);
        conn_close(c);
    }
}

static void accept_all(loop *l) {
    server *s = l->srv;
    for (;;) {
        int fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) return;
        if (atomic_load(&s->nconns) >= s->cfg.max_connections || atomic_load(&s->stopping)) {
            static const char busy[] =
                "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
            ssize_t n = send(fd, busy, sizeof busy - 1, MSG_NOSIGNAL);
            (void)n;
            close(fd);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        conn *c = calloc(1, sizeof *c);
        if (!c) {
            close(fd);
            continue;
        }
        c->fd = fd, c->l = l, c->last_io_ms = server_now_ms();
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = c};
        c->mask = EPOLLIN | EPOLLRDHUP;
        if (epoll_ctl(l->ep, EPOLL_CTL_ADD, fd, &ev)) {
            close(fd);
            free(c);
            continue;
        }
        c->next = l->conns;
        if (l->conns) l->conns->prev = c;
        l->conns = c;
        l->nconns++;
        atomic_fetch_add(&s->nconns, 1);
        relaxed_add(&l->accepted, 1);
    }
}

/* ---- wake-ups from the writer thread ---- */

/* Puts c on its loop's done list (from the writer or a worker) and wakes the loop. */
static void queue_done(conn *c) {
    loop *l = c->l;
    pthread_mutex_lock(&l->mu);
    bool first = l->done == NULL;
    c->done_next = l->done;
    l->done = c;
    pthread_mutex_unlock(&l->mu);
    if (first) wake(l);
}

static void append_cb(void *ctx, int rc, const factum_append_result_t *res, const char *msg) {
    conn *c = ctx;
    c->ar_rc = rc, c->ar_res = *res;
    snprintf(c->ar_msg, sizeof c->ar_msg, "%s", msg);
    queue_done(c);
}

/* The connection waits for the writer if rc (what submitting returned) is 0. */
static int submitted(conn *c, append_done_fn done, int rc) {
    c->ar_done = done;
    c->state = rc ? C_BODY : C_APPEND;
    if (!rc) c->l->pending++;
    return rc;
}

int server_submit_append(conn *c, factum_str_t stream, int64_t expected, const factum_event_t *ev, size_t n,
                         append_done_fn done, factum_error_t *err) {
    return submitted(c, done, factum_append_async(c->l->srv->db, stream, expected, ev, n, append_cb, c, err));
}

/* ---- jobs: blocking work on worker threads ---- */

struct jobs {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    conn *head, *tail;
    bool stop;
    int n;
    pthread_t threads[SERVER_WORKERS];
};

static void *worker_main(void *arg) {
    struct jobs *j = arg;
    pthread_mutex_lock(&j->mu);
    for (;;) {
        while (!j->head && !j->stop)
            pthread_cond_wait(&j->cond, &j->mu);
        if (!j->head) break; /* stopping, and nothing left */
        conn *c = j->head;
        j->head = c->job_next;
        if (!j->head) j->tail = NULL;
        pthread_mutex_unlock(&j->mu);
        c->job_work(c);
        queue_done(c);
        pthread_mutex_lock(&j->mu);
    }
    pthread_mutex_unlock(&j->mu);
    return NULL;
}

void server_submit_job(conn *c, job_fn work, append_done_fn done, void (*free_job)(void *job)) {
    struct jobs *j = c->l->srv->jobs;
    submitted(c, done, 0);
    c->job_work = work;
    c->job_free = free_job;
    c->job_next = NULL;
    pthread_mutex_lock(&j->mu);
    if (j->tail)
        j->tail->job_next = c;
    else
        j->head = c;
    j->tail = c;
    pthread_cond_signal(&j->cond);
    pthread_mutex_unlock(&j->mu);
}

static int jobs_open(struct jobs **out, factum_error_t *err) {
    struct jobs *j = calloc(1, sizeof *j);
    if (!j) return err_set(err, FACTUM_ENOMEM, "out of memory");
    pthread_mutex_init(&j->mu, NULL);
    pthread_cond_init(&j->cond, NULL);
    for (; j->n < SERVER_WORKERS; j->n++)
        if (pthread_create(&j->threads[j->n], NULL, worker_main, j)) break;
    *out = j;
    return j->n ? 0 : err_set(err, FACTUM_ENOMEM, "cannot start worker threads");
}

/* Finishes what is queued, then stops the workers. */
static void jobs_close(struct jobs *j) {
    if (!j) return;
    pthread_mutex_lock(&j->mu);
    j->stop = true;
    pthread_cond_broadcast(&j->cond);
    pthread_mutex_unlock(&j->mu);
    for (int i = 0; i < j->n; i++)
        pthread_join(j->threads[i], NULL);
    pthread_mutex_destroy(&j->mu);
    pthread_cond_destroy(&j->cond);
    free(j);
}

int server_submit_meta(conn *c, factum_str_t stream, const factum_meta_t *m, int64_t expected, int tombstone,
                       append_done_fn done, factum_error_t *err) {
    factum_t *db = c->l->srv->db;
    return submitted(c, done,
                     m ? factum_meta_set_async(db, stream, m, append_cb, c, err)
                       : factum_delete_stream_async(db, stream, expected, tombstone, append_cb, c, err));
}

/* Whether this loop has connections that commits concern: subscriptions and waiting pulls. */
static bool wants_commits(loop *l) {
    return atomic_load_explicit(&l->nsubs, memory_order_relaxed) ||
           atomic_load_explicit(&l->nwaiting, memory_order_relaxed);
}

static void commit_hook(void *ctx, uint64_t head) {
    server *s = ctx;
    for (int i = 0; i < s->nloops; i++) {
        loop *l = &s->loops[i];
        atomic_store_explicit(&l->head, head, memory_order_release);
        if (wants_commits(l)) wake(l);
    }
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void handle_wakeup(loop *l) {
    uint64_t v;
    ssize_t n = read(l->efd, &v, sizeof v);
    (void)n;
    pthread_mutex_lock(&l->mu);
    conn *list = l->done;
    l->done = NULL;
    pthread_mutex_unlock(&l->mu);
    /* Oldest first, so pipelined answers on different connections keep their order. */
    conn *rev = NULL;
    while (list) {
        conn *next = list->done_next;
        list->done_next = rev, rev = list, list = next;
    }
    for (conn *c = rev, *next; c; c = next) {
        next = c->done_next;
        l->pending--;
        if (c->dead) {
            if (c->job && c->job_free) c->job_free(c->job);
            c->job = NULL;
            c->state = C_HEAD;
            if (c->fd >= 0)
                conn_close(c);
            else
                conn_free(c);
            continue;
        }
        c->ar_done(c);
        finish_request(c);
        process_input(c);
        conn_settle(c);
    }
    uint64_t head = atomic_load_explicit(&l->head, memory_order_acquire);
    if (head > l->seen && wants_commits(l)) {
        /* The streams this commit touched, so stream subscribers elsewhere sleep on. */
        uint64_t *hashes = NULL;
        size_t nh = 0;
        if (atomic_load(&l->nsubs) && head - l->seen <= 4096 && (hashes = malloc((head - l->seen) * sizeof *hashes))) {
            factum_query_t q = {.from = l->seen, .limit = head - l->seen, .system = 1};
            factum_result_t *res;
            if (factum_read_all(l->srv->db, &q, &res, NULL) == 0) {
                for (size_t i = 0; i < factum_result_count(res); i++) {
                    factum_str_t st = factum_result_event(res, i)->stream;
                    hashes[nh++] = hash64(st.ptr, st.len, 0);
                }
                factum_result_free(res);
                qsort(hashes, nh, sizeof *hashes, cmp_u64);
            } else {
                free(hashes), hashes = NULL;
            }
        }
        l->seen = head;
        for (conn *c = l->conns, *next; c; c = next) {
            next = c->next;
            if (c->state == C_WAIT) {
                if (groups_try_pull(c, false)) {
                    wait_done(c);
                    process_input(c);
                    conn_settle(c);
                }
                continue;
            }
            if (c->state == C_SSE && c->sub->live && sse_wants(c->sub, hashes, nh)) {
                sse_pump(c);
                conn_settle(c);
            }
        }
        free(hashes);
    } else {
        l->seen = MAX(l->seen, head);
    }
}

/* ---- timers ---- */

static void sweep(loop *l) {
    server *s = l->srv;
    uint64_t now = server_now_ms();
    bool stopping = atomic_load(&s->stopping);
    for (conn *c = l->conns, *next; c; c = next) {
        next = c->next;
        if (c->state == C_APPEND) {
            continue;
        } else if (c->state == C_WAIT) {
            /* Retries fall due and ack timeouts expire with no commit: ask again now and then. */
            if (groups_try_pull(c, stopping || now >= c->deadline_ms)) {
                wait_done(c);
                process_input(c);
            }
        } else if (c->state == C_SSE) {
            if (stopping)
                c->close_after = true;
            else if (now - c->sub->beat_ms >= s->cfg.heartbeat_ms)
                sse_heartbeat(c);
            else if (c->sub->group[0])
                sse_pump(c); /* retries fall due without a commit */
            else if (!c->sub->live && c->out.len == c->out_off)
                sse_pump(c);
        } else if (c->state == C_HEAD && stopping && c->out.len == c->out_off) {
            c->close_after = true; /* between requests (a partial head is not one yet) */
        } else if (c->state == C_HEAD && c->in.len == c->in_off && c->out.len == c->out_off) {
            if (now - c->last_io_ms >= s->cfg.idle_timeout_ms) c->close_after = true;
        } else if (c->deadline_ms && now >= c->deadline_ms && c->state != C_APPEND) {
            c->close_after = true;
            c->in.len = c->in_off = 0;
            conn_problem(c, 408, "timeout", NULL, "the request did not arrive in time");
        } else if (c->out.len > c->out_off && now - c->last_io_ms >= s->cfg.body_timeout_ms) {
            c->out.len = c->out_off = 0; /* a reader that stopped reading */
            c->close_after = true;
        } else if (stopping && now >= s->drain_deadline_ms && c->state != C_APPEND) {
            c->close_after = true;
        }
        conn_settle(c);
    }
}

static void *loop_main(void *arg) {
    loop *l = arg;
    server *s = l->srv;
    struct epoll_event evs[128];
    bool listening = true;
    uint64_t last_sweep = server_now_ms();
    for (;;) {
        if (atomic_load(&s->stopping)) {
            if (listening) {
                epoll_ctl(l->ep, EPOLL_CTL_DEL, s->lfd, NULL);
                listening = false;
                sweep(l);
            }
            if (!l->conns && !l->pending) break;
        }
        int n = epoll_wait(l->ep, evs, ARRAY_LEN(evs), l->ready ? 0 : 100);
        for (int i = 0; i < n; i++) {
            void *p = evs[i].data.ptr;
            if (p == NULL) {
                if (listening) accept_all(l);
            } else if (p == (void *)l) {
                handle_wakeup(l);
            } else {
                conn *c = p;
                if (c->fd < 0) continue;
                if (evs[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) conn_readable(c);
                if (c->fd < 0) continue; /* closed with its append in flight */
                if (c->state == C_SSE && !c->sub->live && !c->close_after) {
                    conn_flush(c);
                    if (c->out.len == c->out_off) sse_pump(c);
                }
                conn_settle(c);
            }
        }
        /* Subscriptions catching up take turns with everything else. */
        conn *ready = l->ready;
        l->ready = NULL;
        while (ready) {
            conn *c = ready;
            ready = c->ready_next;
            c->in_ready = false;
            if (c->fd < 0 || c->state != C_SSE || c->sub->live || c->close_after) continue;
            conn_flush(c);
            if (c->out.len == c->out_off) sse_pump(c);
            conn_settle(c);
        }
        uint64_t now = server_now_ms();
        if (now - last_sweep >= 100 || atomic_load(&s->stopping)) {
            last_sweep = now;
            sweep(l);
        }
    }
    return NULL;
}

/* ---- start and stop ---- */

static int listen_on(const char *spec, int *out_fd, char *bound, size_t cap, factum_error_t *err) {
    char host[256];
    const char *colon = strrchr(spec, ':');
    if (!colon || colon == spec || (size_t)(colon - spec) >= sizeof host || !colon[1])
        return err_set(err, FACTUM_EINVAL, "--listen wants HOST:PORT (got '%s')", spec);
    memcpy(host, spec, (size_t)(colon - spec));
    host[colon - spec] = 0;
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || port < 0 || port > 65535) return err_set(err, FACTUM_EINVAL, "bad port in '%s'", spec);
    char *h = host;
    if (h[0] == '[' && h[strlen(h) - 1] == ']') h++, h[strlen(h) - 1] = 0;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *ai;
    int e = getaddrinfo(h, colon + 1, &hints, &ai);
    if (e) return err_set(err, FACTUM_EINVAL, "cannot resolve '%s': %s", h, gai_strerror(e));
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (fd < 0 || bind(fd, ai->ai_addr, ai->ai_addrlen) || listen(fd, 1024)) {
        int en = errno;
        freeaddrinfo(ai);
        if (fd >= 0) close(fd);
        return err_set(err, FACTUM_EIO, "cannot listen on %s: %s", spec, strerror(en));
    }
    freeaddrinfo(ai);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    getsockname(fd, (struct sockaddr *)&ss, &sl);
    char ip[INET6_ADDRSTRLEN] = "?";
    int p = 0;
    if (ss.ss_family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
        p = ntohs(a->sin_port);
        snprintf(bound, cap, "%s:%d", ip, p);
    } else {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof ip);
        p = ntohs(a->sin6_port);
        snprintf(bound, cap, "[%s]:%d", ip, p);
    }
    *out_fd = fd;
    return 0;
}

int server_run(factum_t *db, const server_config *cfg_in, factum_error_t *err) {
    server *s = calloc(1, sizeof *s);
    if (!s) return err_set(err, FACTUM_ENOMEM, "out of memory");
    s->db = db;
    s->cfg = *cfg_in;
    server_config *c = &s->cfg;
    if (!c->listen) c->listen = "127.0.0.1:7744";
    if (!c->max_body) c->max_body = 1u << 20;
    if (!c->header_timeout_ms) c->header_timeout_ms = 10000;
    if (!c->body_timeout_ms) c->body_timeout_ms = 30000;
    if (!c->idle_timeout_ms) c->idle_timeout_ms = 120000;
    if (!c->heartbeat_ms) c->heartbeat_ms = 15000;
    if (!c->sub_buffer) c->sub_buffer = 4u << 20;
    if (!c->max_connections) c->max_connections = 10000;
    if (!c->version) c->version = "0";
    if (!c->loops) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        c->loops = (int)MAX(1, MIN(n, 8));
    }
    char bound[300];
    int rc = listen_on(c->listen, &s->lfd, bound, sizeof bound, err);
    if (rc) {
        free(s);
        return rc;
    }
    if ((rc = timers_open(db, &s->timers, err))) {
        close(s->lfd);
        free(s);
        return rc;
    }
    if ((rc = groups_open(db, &s->groups, err))) {
        timers_close(s->timers);
        close(s->lfd);
        free(s);
        return rc;
    }
    if ((rc = scavenger_open(db, c->scavenge_every_s, &s->scav, err)) ||
        (rc = projections_open(db, c->data_dir ? c->data_dir : ".", &s->projections, err)) ||
        (rc = sagas_open(db, &s->sagas, err)) || (rc = jobs_open(&s->jobs, err))) {
        jobs_close(s->jobs);
        sagas_close(s->sagas);
        projections_close(s->projections);
        scavenger_close(s->scav);
        groups_close(s->groups);
        timers_close(s->timers);
        close(s->lfd);
        free(s);
        return rc;
    }
    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, &old);
    signal(SIGPIPE, SIG_IGN);

    s->nloops = c->loops;
    s->loops = calloc((size_t)s->nloops, sizeof *s->loops);
    int started = 0;
    for (int i = 0; s->loops && i < s->nloops; i++) {
        loop *l = &s->loops[i];
        l->srv = s;
        pthread_mutex_init(&l->mu, NULL);
        l->ep = epoll_create1(EPOLL_CLOEXEC);
        l->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        atomic_store(&l->head, factum_head_position(db));
        l->seen = atomic_load(&l->head);
        struct epoll_event ev = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.ptr = NULL};
        struct epoll_event wev = {.events = EPOLLIN, .data.ptr = l};
        if (l->ep < 0 || l->efd < 0 || epoll_ctl(l->ep, EPOLL_CTL_ADD, s->lfd, &ev) ||
            epoll_ctl(l->ep, EPOLL_CTL_ADD, l->efd, &wev))
            break;
        started++;
    }
    if (started == s->nloops) {
        factum_set_commit_hook(db, commit_hook, s);
        for (started = 0; started < s->nloops; started++)
            if (pthread_create(&s->loops[started].thread, NULL, loop_main, &s->loops[started])) break;
    }
    if (started < s->nloops) {
        rc = err_set(err, FACTUM_ENOMEM, "cannot start %d event loops", s->nloops);
        atomic_store(&s->stopping, true);
    } else {
        printf("listening on http://%s\n", bound);
        fflush(stdout);
        int sig;
        sigwait(&set, &sig);
        fprintf(stderr, "factum: %s, draining connections\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
        s->drain_deadline_ms = server_now_ms() + DRAIN_MS;
        atomic_store(&s->stopping, true);
        projections_stop(s->projections); /* queries waiting for a projection answer now */
    }
    for (int i = 0; i < started; i++) {
        wake(&s->loops[i]);
        pthread_join(s->loops[i].thread, NULL);
    }
    factum_set_commit_hook(db, NULL, NULL);
    jobs_close(s->jobs);
    sagas_close(s->sagas);
    projections_close(s->projections);
    scavenger_close(s->scav);
    timers_close(s->timers);
    groups_close(s->groups);
    for (int i = 0; s->loops && i < s->nloops; i++) {
        loop *l = &s->loops[i];
        if (l->ep >= 0) close(l->ep);
        if (l->efd >= 0) close(l->efd);
        pthread_mutex_destroy(&l->mu);
        buf_free(&l->scratch);
    }
    close(s->lfd);
    free(s->loops);
    free(s);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}
