/*
 * server.c — the event loops and the server's life: each loop accepts connections, waits on
 * epoll and its eventfd, runs what the writer and the workers finished (jobs.c), pumps live
 * subscribers after a commit, and sweeps deadlines against slow clients; server_run opens the
 * engines and the loops, waits for a signal, and drains. Connections themselves (reading a
 * request, answering it) are conn.c's. See server.h for threads and ownership.
 */
#include "server.h"

#include "../base/log.h"
#include "../base/json.h"
#include "../connect/connect.h"
#include "../group/groups.h"
#include "../schema/registry.h"
#include "../sys/pool.h"
#include "../timer/timers.h"

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
#include <systemd/sd-daemon.h>
#include <unistd.h>

#define DRAIN_MS 5000

const double server_latency_bounds[SERVER_HIST] = {0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003,
                                                   0.005,  0.0075,  0.01,   0.025,   0.05,  0.1,    1.0,   1e300};

uint64_t server_now_ms(void) { return clock_mono_ns() / 1000000; }

void loop_observe_latency(loop *l, uint64_t ns) {
    double s = (double)ns / 1e9;
    size_t i = 0;
    while (s > server_latency_bounds[i])
        i++;
    relaxed_add(&l->lat[i], 1);
    relaxed_add(&l->lat_sum_us, ns / 1000);
}

void loop_wake(loop *l) {
    uint64_t one = 1;
    ssize_t n = write(l->efd, &one, sizeof one);
    (void)n; /* EAGAIN: the counter is already non-zero, the loop will wake */
}

/* The peer's address as 16 bytes (IPv4 mapped into IPv6), for the per-address count. */
static void addr_key(const struct sockaddr_storage *sa, unsigned char out[16]) {
    memset(out, 0, 16);
    if (sa->ss_family == AF_INET) {
        out[10] = out[11] = 0xff;
        memcpy(out + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    } else if (sa->ss_family == AF_INET6) {
        memcpy(out, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
    }
}

/* Runs after the loop's events are handled: admitting may close an idle connection. */
static void accept_all(loop *l) {
    server *s = l->srv;
    for (;;) {
        struct sockaddr_storage sa;
        socklen_t sl = sizeof sa;
        int fd = accept4(s->lfd, (struct sockaddr *)&sa, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            if (errno != EAGAIN) overload_no_fds(l, errno); /* EMFILE and the like: answer, back off */
            return;
        }
        if (atomic_load(&s->stopping)) {
            overload_refuse(s, fd, 503, "the server is stopping");
            continue;
        }
        unsigned char addr[16];
        addr_key(&sa, addr);
        if (!overload_admit(l, fd, addr)) continue;
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        conn *c = calloc(1, sizeof *c);
        if (!c) {
            overload_release(s, addr);
            close(fd);
            continue;
        }
        c->fd = fd, c->l = l;
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = c};
        if ((s->tls && tls_accept(c, s->tls)) || epoll_ctl(l->ep, EPOLL_CTL_ADD, fd, &ev)) {
            tls_end(c);
            overload_release(s, addr);
            close(fd);
            free(c);
            continue;
        }
        c->last_io_ms = c->sent_ms = server_now_ms();
        memcpy(c->addr, addr, 16);
        c->mask = EPOLLIN | EPOLLRDHUP;
        c->next = l->conns;
        if (l->conns) l->conns->prev = c;
        l->conns = c;
        l->nconns++;
        atomic_fetch_add(&s->nconns, 1);
        relaxed_add(&l->accepted, 1);
        conn_track_idle(c); /* silent so far: the first to make room at the cap */
    }
}

static bool wants_commits(loop *l) {
    return atomic_load_explicit(&l->nsubs, memory_order_relaxed) ||
           atomic_load_explicit(&l->nwaiting, memory_order_relaxed);
}

/* On the writer thread: the new head, and the streams the commit touched, for each loop that
   has listeners; a loop that is behind keeps adding keys until it has too many. */
static void commit_hook(void *ctx, const factum_commit_t *cm) {
    server *s = ctx;
    for (int i = 0; i < s->nloops; i++) {
        loop *l = &s->loops[i];
        if (!wants_commits(l)) {
            atomic_store_explicit(&l->head, cm->head, memory_order_release);
            continue;
        }
        /* The head and the keys together, so a wake-up that takes the keys sees this head. */
        pthread_mutex_lock(&l->mu);
        atomic_store_explicit(&l->head, cm->head, memory_order_release);
        if (!l->keys_all && l->nkeys + cm->nkeys <= l->keys_cap && cm->nkeys) {
            memcpy(l->keys + l->nkeys, cm->stream_keys, cm->nkeys * sizeof *l->keys);
            l->nkeys += cm->nkeys;
        } else {
            l->keys_all = true;
        }
        pthread_mutex_unlock(&l->mu);
        loop_wake(l);
    }
}

static conn **wake_list(loop *l, uint64_t key) {
    return key ? &l->wake_by_key[key % SERVER_WAKE_BUCKETS] : &l->wake_every;
}

void loop_listen(conn *c, uint64_t key) {
    loop_unlisten(c);
    conn **head = wake_list(c->l, key);
    c->wkey = key, c->wlinked = true;
    c->wprev = NULL, c->wnext = *head;
    if (*head) (*head)->wprev = c;
    *head = c;
}

void loop_unlisten(conn *c) {
    if (!c->wlinked) return;
    if (c->wprev)
        c->wprev->wnext = c->wnext;
    else
        *wake_list(c->l, c->wkey) = c->wnext;
    if (c->wnext) c->wnext->wprev = c->wprev;
    c->wlinked = false, c->wprev = c->wnext = NULL;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* A listener a commit concerns. */
static void wake_one(conn *c) {
    if (!c->park || !c->park->on_commit) return;
    c->park->on_commit(c);
    conn_settle(c);
}

/* A parked connection whose output drained, or whose turn came: it sends on. */
static void drain_one(conn *c) {
    if (!c->park || !c->park->on_drain || c->close_after) return;
    conn_flush(c);
    if (c->out.len == c->out_off) c->park->on_drain(c);
}

static void handle_wakeup(loop *l) {
    uint64_t v;
    ssize_t n = read(l->efd, &v, sizeof v);
    (void)n;
    pthread_mutex_lock(&l->mu);
    conn *list = l->done;
    l->done = NULL;
    /* The commits' stream keys: swapped out, so the writer never waits on this loop's work. */
    uint64_t *keys = l->keys;
    size_t nkeys = l->nkeys;
    bool all = l->keys_all;
    l->keys = l->spare_keys, l->spare_keys = keys;
    l->nkeys = 0, l->keys_all = false;
    uint64_t head = atomic_load_explicit(&l->head, memory_order_acquire);
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
        conn_done(c);
    }
    /* Woken lists can change under us (a listener that answers stops listening): take next first. */
    if (head > l->seen) {
        l->seen = head;
        for (conn *c = l->wake_every, *next; c; c = next) {
            next = c->wnext;
            wake_one(c);
        }
    }
    if (all) {
        for (size_t b = 0; b < SERVER_WAKE_BUCKETS; b++)
            for (conn *c = l->wake_by_key[b], *next; c; c = next) {
                next = c->wnext;
                wake_one(c);
            }
        return;
    }
    qsort(keys, nkeys, sizeof *keys, cmp_u64);
    for (size_t i = 0; i < nkeys; i++) {
        if (i && keys[i] == keys[i - 1]) continue;
        for (conn *c = l->wake_by_key[keys[i] % SERVER_WAKE_BUCKETS], *next; c; c = next) {
            next = c->wnext;
            if (c->wkey == keys[i]) wake_one(c); /* another stream may share the bucket */
        }
    }
}

/* ---- timers ---- */

static void sweep(loop *l) {
    server *s = l->srv;
    uint64_t now = server_now_ms();
    bool stopping = atomic_load(&s->stopping);
    int64_t wall_us = clock_realtime_us();
    audit_tick(s->audit, now);
    if (l == &s->loops[0] && s->schemas) { /* a follower's registry: what the leader registered */
        factum_error_t err;
        if (schema_registry_refresh(s->schemas, &err))
            log_msg(LOG_LEVEL_ERROR, "event schemas: applying $schemas: %s", err.message);
    }
    for (conn *c = l->conns, *next; c; c = next) {
        next = c->next;
        tls_idle(c, now);
        if (c->state == C_APPEND) {
            continue;
        } else if ((c->state == C_SSE || c->state == C_WAIT) && guard_lapsed(c, wall_us)) {
            c->out.len = c->out_off = 0; /* its key was revoked or ran out: it hears nothing more */
            c->close_after = true;
        } else if (c->state == C_WAIT) {
            /* Retries fall due and ack timeouts expire with no commit: ask again now and then. */
            if (c->park && c->park->on_tick) c->park->on_tick(c, now, stopping || now >= c->deadline_ms);
        } else if (c->state == C_SSE) {
            if (stopping) {
                c->close_after = true;
            } else if (c->out.len > c->out_off && now - c->sent_ms >= s->cfg.body_timeout_ms) {
                c->out.len = c->out_off = 0; /* a subscriber that stopped reading; it resumes with Last-Event-ID */
                c->close_after = true;
                relaxed_add(&l->stalled_drops, 1);
            } else if (c->park && c->park->on_tick) {
                c->park->on_tick(c, now, false);
            }
        } else if (c->state == C_HEAD && stopping && c->out.len == c->out_off) {
            c->close_after = true; /* between requests (a partial head is not one yet) */
        } else if (c->state == C_HEAD && !c->spoke) {
            /* silent since accept: the header timeout, not the idle one */
            if (now - c->last_io_ms >= s->cfg.header_timeout_ms) c->close_after = true;
        } else if (c->state == C_HEAD && c->in.len == c->in_off && c->out.len == c->out_off && !c->deadline_ms) {
            if (now - c->last_io_ms >= s->cfg.idle_timeout_ms) c->close_after = true;
        } else if (c->deadline_ms && now >= c->deadline_ms && c->state != C_APPEND) {
            c->close_after = true;
            c->in.len = c->in_off = 0;
            conn_problem(c, 408, "timeout", NULL, "the request did not arrive in time");
        } else if (c->out.len > c->out_off && now - c->sent_ms >= s->cfg.body_timeout_ms) {
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
    uint64_t last_sweep = server_now_ms(), paced_ns = UINT64_MAX;
    for (;;) {
        if (atomic_load(&s->stopping)) {
            if (listening) {
                epoll_ctl(l->ep, EPOLL_CTL_DEL, s->lfd, NULL);
                listening = false;
                sweep(l);
            }
            if (!l->conns && !l->pending) {
                loop_free_closed(l);
                break;
            }
        }
        uint64_t wait_ns = l->ready ? 0 : paced_ns < 100000000u ? paced_ns : 100000000u;
        struct timespec wait = {.tv_sec = 0, .tv_nsec = (long)wait_ns};
        int n = epoll_pwait2(l->ep, evs, ARRAY_LEN(evs), &wait, NULL);
        bool accept = false;
        for (int i = 0; i < n; i++) {
            void *p = evs[i].data.ptr;
            if (p == NULL) {
                accept = listening;
            } else if (p == (void *)l) {
                handle_wakeup(l);
            } else {
                conn *c = p;
                if (c->fd < 0) continue;
                if (evs[i].events & EPOLLOUT) c->wblocked = false;
                if ((evs[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) ||
                    (c->tls_want & TLS_READ_WANTS_OUT))
                    conn_readable(c);
                if (c->fd < 0) continue; /* closed with its append in flight */
                drain_one(c);
                conn_settle(c);
            }
        }
        /* After the events: these close idle connections, which may have events of their own. */
        for (uint32_t owed = atomic_exchange(&l->evict_owed, 0); owed && loop_evict_idle(l); owed--)
            ;
        if (accept) accept_all(l);
        /* Subscriptions catching up, and pipelined requests, take turns with everything else. */
        conn *ready = l->ready;
        l->ready = NULL;
        while (ready) {
            conn *c = ready;
            ready = c->ready_next;
            c->in_ready = false;
            if (c->fd < 0 || c->close_after) continue;
            drain_one(c);
            conn_resume(c);
        }
        paced_ns = loop_run_paced(l); /* pipelining connections whose next turn has come */
        loop_shed(l);                 /* over the memory budget: the largest unsent output goes first */
        uint64_t now = server_now_ms();
        if (l->accept_paused_until_ms && now >= l->accept_paused_until_ms && listening) {
            struct epoll_event ev = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.ptr = NULL};
            epoll_ctl(l->ep, EPOLL_CTL_ADD, s->lfd, &ev);
            l->accept_paused_until_ms = 0;
        }
        if (now - last_sweep >= 100 || atomic_load(&s->stopping)) {
            last_sweep = now;
            sweep(l);
        }
        access_flush(l);
        loop_free_closed(l); /* nothing of this turn names them any more */
    }
    return NULL;
}

/* ---- start and stop ---- */

bool server_addr_is_loopback(const struct sockaddr_storage *ss) {
    if (ss->ss_family == AF_INET) return ntohl(((const struct sockaddr_in *)ss)->sin_addr.s_addr) >> 24 == 127;
    if (ss->ss_family != AF_INET6) return false;
    const struct in6_addr *a = &((const struct sockaddr_in6 *)ss)->sin6_addr;
    return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
}

static int listen_on(const char *spec, int *out_fd, char *bound, size_t cap, bool *loopback, factum_error_t *err) {
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
    *loopback = server_addr_is_loopback(&ss);
    *out_fd = fd;
    return 0;
}

static void note_admin(void *ctx, const auth_key *k) {
    if (k->spec.role == AUTH_ADMIN && auth_key_live(k, clock_realtime_us())) *(bool *)ctx = true;
}

/*
 * Secure by default: on loopback anything goes (the developer's laptop, keys optional). On any
 * other address the server starts only with TLS and an admin key, unless --insecure says the
 * operator knows better (a TLS proxy in front on a private network), which is logged at every
 * start. docs/security.md, "Exposed servers".
 */
static int check_exposure(server *s, const char *bound, bool loopback, factum_error_t *err) {
    if (loopback) return 0;
    bool admin = false;
    auth_keys_each(s->keys, note_admin, &admin);
    if (s->tls && admin) return 0;
    const char *missing = !s->tls && !admin ? "without TLS and without an admin key"
                          : !s->tls         ? "without TLS"
                                            : "without an admin key";
    if (s->cfg.insecure) {
        log_msg(LOG_LEVEL_WARN,
                "WARNING: --insecure: serving %s, reachable from other machines, %s: anyone who can reach it "
                "can %s",
                bound, missing,
                auth_keys_enforced(s->keys) ? "read what is sent over it" : "read and write everything");
        return 0;
    }
    return err_set(err, FACTUM_EINVAL,
                   "refusing to serve %s (reachable from other machines) %s: %s%s%s; or listen on 127.0.0.1; or pass "
                   "--insecure to serve as is (e.g. behind a TLS proxy)",
                   bound, missing, s->tls ? "" : "give --tls-cert and --tls-key", !s->tls && !admin ? ", and " : "",
                   admin ? ""
                         : "make an admin key first with `factum --data-dir DIR key create --role admin` (it "
                           "prints the token)");
}

/*
 * At SIGTERM: no projection or saga starts another batch; the batches in progress are waited
 * for (and named in the log), then the projectors stop, so queries waiting for one answer now.
 * Each slice is one bounded batch, so the wait is about as long as the longest batch in
 * progress, however many definitions there are; closing the connections of the projections
 * that were busy in the last 2 s follows (logged apart: a SQLite close syncs its WAL).
 */
static void stop_definitions(server *s) {
    uint64_t t0 = clock_mono_ns();
    buf_t waited = {0};
    size_t n = pool_quiesce(s->pool, &waited);
    size_t np = projections_count(s->projections), ns = sagas_count(s->sagas);
    uint64_t t1 = clock_mono_ns();
    projections_stop(s->projections); /* closing a SQLite target checkpoints its WAL: an fsync each */
    log_msg(LOG_LEVEL_INFO,
            "stopping %zu projections and %zu sagas: waited %.0f ms for %zu batches in progress%s%s%s, "
            "then %.0f ms closing the projections' connections",
            np, ns, (double)(t1 - t0) / 1e6, n, n ? " (" : "", n ? waited.ptr : "", n ? ")" : "",
            (double)(clock_mono_ns() - t1) / 1e6);
    buf_free(&waited);
}

/* The connectors (src/connect/), told the port the server is bound to: a sink may not point at it. */
static int open_connectors(server *s, const char *bound, factum_error_t *err) {
    const char *colon = strrchr(bound, ':');
    connectors_env env = {.db = s->db,
                          .groups = s->groups,
                          .data_dir = s->cfg.data_dir ? s->cfg.data_dir : ".",
                          .self_port = colon ? atoi(colon + 1) : 0,
                          .share_secret = server_share_secret,
                          .share_ctx = s};
    return connectors_open(&env, &s->connectors, err);
}

/* SIGHUP: new connections get the certificate and key as the files hold them now. */
static void reload_tls(server *s) {
    factum_error_t e;
    if (!s->tls)
        log_msg(LOG_LEVEL_WARN, "SIGHUP: no TLS certificate to reload (serving plain HTTP)");
    else if (tls_reload(s->tls, &e))
        log_msg(LOG_LEVEL_ERROR, "SIGHUP: keeping the TLS certificate in use: %s", e.message);
    else
        log_msg(LOG_LEVEL_INFO, "SIGHUP: TLS certificate reloaded from %s", s->cfg.tls_cert);
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
    if (!c->sub_buffer) c->sub_buffer = 256u << 10;
    if (!c->max_connections) c->max_connections = 10000;
    if (!c->max_groups) c->max_groups = 1000;
    if (!c->max_projections) c->max_projections = 100;
    if (!c->max_sagas) c->max_sagas = 100;
    if (!c->max_schedules) c->max_schedules = 100000;
    if (!c->definition_threads) c->definition_threads = 4;
    if (!c->version) c->version = "0";
    if (!c->loops) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        c->loops = (int)MAX(1, MIN(n, 8));
    }
    char bound[300];
    int rc = 0;
    if (!c->tls_cert != !c->tls_key)
        rc = err_set(err, FACTUM_EINVAL, "TLS needs both --tls-cert and --tls-key (got only %s)",
                     c->tls_cert ? "--tls-cert" : "--tls-key");
    else if (c->tls_cert)
        rc = tls_open(c->tls_cert, c->tls_key, &s->tls, err);
    if (!rc) rc = overload_open(s, err);
    if (!rc) rc = access_open(s, err);
    bool loopback = true;
    if (!rc) rc = listen_on(c->listen, &s->lfd, bound, sizeof bound, &loopback, err);
    if (rc) {
        access_close(s);
        overload_close(s);
        tls_close(s->tls);
        free(s);
        return rc;
    }
    if ((rc = timers_open(db, &s->timers, err))) {
        access_close(s);
        tls_close(s->tls);
        close(s->lfd);
        overload_close(s);
        free(s);
        return rc;
    }
    if ((rc = groups_open(db, &s->groups, err))) {
        access_close(s);
        timers_close(s->timers);
        tls_close(s->tls);
        close(s->lfd);
        overload_close(s);
        free(s);
        return rc;
    }
    pthread_mutex_init(&s->limits_mu, NULL);
    factum_error_t serr;
    if (server_take_secrets(s, &serr)) /* before the definitions that need them */
        log_msg(LOG_LEVEL_WARN, "the cluster's secrets: %s (definitions that need one may not start)", serr.message);
    if ((rc = schema_registry_open(db, &s->schemas, err)) || /* before anything appends */
        (rc = scavenger_open(db, c->scavenge_every_s, &s->scav, err)) ||
        (rc = pool_open(db, c->definition_threads, &s->pool, err)) ||
        (rc = projections_open(db, s->pool,
                               c->projections_dir ? c->projections_dir
                               : c->data_dir      ? c->data_dir
                                                  : ".",
                               &s->projections, err)) ||
        (rc = sagas_open(db, s->pool, &s->sagas, err)) || (rc = jobs_open(&s->jobs, err)) ||
        (rc = auth_keys_open(db, &s->keys, err)) || (rc = check_exposure(s, bound, loopback, err)) ||
        (rc = audit_open(db, &s->audit, err)) || (rc = open_connectors(s, bound, err))) {
        audit_close(s->audit);
        auth_keys_close(s->keys);
        access_close(s);
        jobs_close(s->jobs);
        sagas_close(s->sagas);
        projections_close(s->projections);
        pool_close(s->pool);
        scavenger_close(s->scav);
        groups_close(s->groups);
        timers_close(s->timers);
        tls_close(s->tls);
        close(s->lfd);
        overload_close(s);
        free(s);
        return rc;
    }
    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &set, &old);
    signal(SIGPIPE, SIG_IGN);

    s->nloops = c->loops;
    s->loops = calloc((size_t)s->nloops, sizeof *s->loops);
    int started = 0;
    for (int i = 0; s->loops && i < s->nloops; i++) {
        loop *l = &s->loops[i];
        l->srv = s;
        pthread_mutex_init(&l->mu, NULL);
        l->keys_cap = SERVER_WAKE_KEYS;
        l->keys = malloc(l->keys_cap * sizeof *l->keys);
        l->spare_keys = malloc(l->keys_cap * sizeof *l->keys);
        if (!l->keys || !l->spare_keys) {
            log_msg(LOG_LEVEL_ERROR, "out of memory starting a loop");
            abort();
        }
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
    } else if ((rc = server_follow_start(s, err))) {
        atomic_store(&s->stopping, true);
    } else {
        log_msg(LOG_LEVEL_INFO, "up to %u connections (%u per address), %llu open files, memory budget %llu MiB",
                c->max_connections, c->max_per_address, (unsigned long long)overload_nofile(s),
                (unsigned long long)(c->max_memory >> 20));
        printf("listening on %s://%s\n", s->tls ? "https" : "http", bound);
        fflush(stdout);
        /* systemd's Type=notify (a no-op without $NOTIFY_SOCKET) */
        sd_notifyf(0, "READY=1\nSTATUS=listening on %s://%s", s->tls ? "https" : "http", bound);
        int sig;
        while (!sigwait(&set, &sig) && (sig == SIGHUP || sig == SIGUSR1)) {
            if (sig == SIGHUP) {
                sd_notify(0, "RELOADING=1");
                reload_tls(s);
            }
            access_reopen(s); /* logrotate: either signal */
            if (sig == SIGHUP) sd_notify(0, "READY=1");
        }
        sd_notify(0, "STOPPING=1\nSTATUS=draining connections");
        log_msg(LOG_LEVEL_INFO, "%s, draining connections", sig == SIGINT ? "SIGINT" : "SIGTERM");
        s->drain_deadline_ms = server_now_ms() + DRAIN_MS;
        atomic_store(&s->stopping, true);
        server_follow_stop(s); /* before the definitions it starts stop */
        stop_definitions(s);
    }
    for (int i = 0; i < started; i++) {
        loop_wake(&s->loops[i]);
        pthread_join(s->loops[i].thread, NULL);
    }
    factum_set_commit_hook(db, NULL, NULL);
    jobs_close(s->jobs);
    connectors_close(s->connectors); /* before the groups its sinks deliver through */
    sagas_close(s->sagas);
    projections_close(s->projections);
    pool_close(s->pool);
    pthread_mutex_destroy(&s->limits_mu);
    for (int k = 0; k < LIMIT_KINDS; k++)
        owners_free(&s->held_by_key[k]);
    scavenger_close(s->scav);
    timers_close(s->timers);
    groups_close(s->groups);
    audit_close(s->audit);
    auth_keys_close(s->keys);
    tls_close(s->tls);
    access_close(s);
    for (int i = 0; s->loops && i < s->nloops; i++) {
        loop *l = &s->loops[i];
        if (l->ep >= 0) close(l->ep);
        if (l->efd >= 0) close(l->efd);
        pthread_mutex_destroy(&l->mu);
        buf_free(&l->scratch);
        buf_free(&l->access);
        buf_free(&l->all_cache.bytes);
        buf_free(&l->all_cache.filters);
        free(l->keys);
        free(l->spare_keys);
    }
    close(s->lfd);
    overload_close(s);
    free(s->loops);
    free(s);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}
