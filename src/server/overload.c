/*
 * overload.c — what keeps one client, or many, from taking everything the server has
 * (docs/limits.md lists each limit). Three things, each shared by the loops:
 *
 *   - Connections per address. A table of client address -> open connections (under a mutex:
 *     a loop touches it once per accept and once per close). Past --max-connections-per-address
 *     a new connection is answered 429 and closed; at --max-connections the loop first closes
 *     its oldest idle connection (conn.c keeps them in order), and answers 503 only if it has none.
 *   - File descriptors. The soft RLIMIT_NOFILE is raised to the hard one at start. One spare
 *     descriptor (/dev/null) is kept open: when accept4 fails with EMFILE, the spare is closed,
 *     the waiting connections are accepted and answered 503 one by one, the spare is opened again
 *     and the loop stops accepting for a moment. The listening socket never stays readable
 *     with nobody taking from it, so nothing spins.
 *   - The memory budget (--max-memory). Every connection counts the bytes of its buffers (input,
 *     unsent output, a decoded body) in one server-wide figure, after each event (charge). A
 *     body is reserved before it is read, and refused (503, Retry-After) when it does not fit;
 *     over the budget, no new request starts, no subscriber reads further, and the loop cuts the
 *     connections with the largest unsent output first (conn.c, loop_shed).
 */
#include "api.h"

#include "../base/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define ACCEPT_PAUSE_MS 100 /* out of descriptors: a loop stops accepting this long */
#define SPARE_DRAIN 64      /* connections answered 503 per use of the spare descriptor */
#define MEMORY_CAP (4ull << 30)
#define MEMORY_FLOOR (64ull << 20)

enum { REFUSED_ADDRESS, REFUSED_CAPACITY, REFUSED_FDS, EVICTED, BODIES_REFUSED, NCOUNTS };

typedef struct addr_slot {
    unsigned char addr[16];
    uint32_t n; /* 0: empty */
} addr_slot;

struct overload {
    pthread_mutex_t mu; /* the address table and the spare descriptor */
    addr_slot *slots;
    size_t mask;
    int spare;
    bool warned;
    uint64_t nofile; /* the open-file limit after raising it */
    _Atomic uint64_t used;
    _Atomic uint64_t counts[NCOUNTS];
};

/* ---- connections per address ---- */

static size_t addr_hash(const unsigned char a[16]) {
    uint64_t h = 14695981039346656037ull;
    for (int i = 0; i < 16; i++)
        h = (h ^ a[i]) * 1099511628211ull;
    return (size_t)(h ^ (h >> 29));
}

/* Linear probing; the table is at least twice the connections it can hold, so never full. */
static size_t addr_find(struct overload *o, const unsigned char a[16]) {
    size_t i = addr_hash(a) & o->mask;
    while (o->slots[i].n && memcmp(o->slots[i].addr, a, 16))
        i = (i + 1) & o->mask;
    return i;
}

/* One connection less from a; an emptied slot is filled by shifting later ones back. */
static void addr_drop(struct overload *o, const unsigned char a[16]) {
    pthread_mutex_lock(&o->mu);
    size_t i = addr_find(o, a);
    if (o->slots[i].n && --o->slots[i].n == 0) {
        for (size_t j = i;;) {
            o->slots[i].n = 0;
            size_t k;
            do {
                j = (j + 1) & o->mask;
                if (!o->slots[j].n) goto done;
                k = addr_hash(o->slots[j].addr) & o->mask;
            } while (i <= j ? (i < k && k <= j) : (i < k || k <= j)); /* j's home lies in (i, j]: it stays */
            o->slots[i] = o->slots[j];
            i = j;
        }
    }
done:
    pthread_mutex_unlock(&o->mu);
}

void overload_refuse(const server *s, int fd, int status, const char *detail) {
    char junk[4096], msg[768];
    if (s->tls) { /* a plain-text answer means nothing to a TLS client: just closed */
        close(fd);
        return;
    }
    /* What the client already sent is read first: closing over unread bytes resets the
       connection, and the answer could be lost with it. */
    for (int i = 0; i < 4 && recv(fd, junk, sizeof junk, MSG_DONTWAIT) > 0; i++)
        ;
    char body[512];
    int bl = snprintf(body, sizeof body,
                      "{\"type\":\"urn:factum:problem:%s\",\"title\":\"%s\",\"status\":%d,\"detail\":\"%s\"}",
                      status == 429 ? "too-many-connections" : "unavailable", http_reason(status), status, detail);
    int n = snprintf(msg, sizeof msg,
                     "HTTP/1.1 %d %s\r\nContent-Type: application/problem+json\r\nContent-Length: %d\r\n"
                     "Retry-After: 1\r\nConnection: close\r\n\r\n%s",
                     status, http_reason(status), bl, body);
    ssize_t w = send(fd, msg, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
    (void)w;
    shutdown(fd, SHUT_WR);
    close(fd);
}

/* This loop has no idle connection: another that has one closes it when it wakes (the count
   is over the cap by one until then). */
static bool evict_elsewhere(loop *l) {
    server *s = l->srv;
    for (int i = 0; i < s->nloops; i++) {
        loop *k = &s->loops[i];
        uint32_t owed = atomic_load(&k->evict_owed);
        if (k == l || atomic_load_explicit(&k->nidle, memory_order_relaxed) <= owed) continue;
        if (!atomic_compare_exchange_strong(&k->evict_owed, &owed, owed + 1)) continue;
        loop_wake(k);
        return true;
    }
    return false;
}

bool overload_admit(loop *l, int fd, const unsigned char addr[16]) {
    server *s = l->srv;
    struct overload *o = s->ov;
    pthread_mutex_lock(&o->mu);
    size_t i = addr_find(o, addr);
    bool over = o->slots[i].n >= s->cfg.max_per_address;
    if (!over) memcpy(o->slots[i].addr, addr, 16), o->slots[i].n++;
    pthread_mutex_unlock(&o->mu);
    if (over) {
        relaxed_add(&o->counts[REFUSED_ADDRESS], 1);
        char d[160];
        snprintf(d, sizeof d, "too many connections from this address (--max-connections-per-address %u)",
                 s->cfg.max_per_address);
        overload_refuse(s, fd, 429, d);
        return false;
    }
    if (atomic_load(&s->nconns) >= s->cfg.max_connections) {
        if (loop_evict_idle(l) || evict_elsewhere(l)) {
            relaxed_add(&o->counts[EVICTED], 1);
        } else {
            addr_drop(o, addr);
            relaxed_add(&o->counts[REFUSED_CAPACITY], 1);
            overload_refuse(s, fd, 503, "the server is at its connection limit (--max-connections)");
            return false;
        }
    }
    return true;
}

void overload_release(server *s, const unsigned char addr[16]) { addr_drop(s->ov, addr); }

/* ---- file descriptors ---- */

void overload_no_fds(loop *l, int e) {
    server *s = l->srv;
    struct overload *o = s->ov;
    pthread_mutex_lock(&o->mu);
    if (!o->warned) {
        log_msg(LOG_LEVEL_ERROR, "accept: %s (open-file limit %llu): new connections get 503 until some close",
                strerror(e), (unsigned long long)o->nofile);
        o->warned = true;
    }
    if (o->spare >= 0) close(o->spare), o->spare = -1;
    for (int i = 0; i < SPARE_DRAIN; i++) {
        int fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) break;
        relaxed_add(&o->counts[REFUSED_FDS], 1);
        overload_refuse(s, fd, 503, "the server is out of file descriptors");
    }
    o->spare = open("/dev/null", O_RDONLY | O_CLOEXEC); /* may fail while others hold every slot: next time */
    pthread_mutex_unlock(&o->mu);
    if (!l->accept_paused_until_ms) epoll_ctl(l->ep, EPOLL_CTL_DEL, s->lfd, NULL);
    l->accept_paused_until_ms = server_now_ms() + ACCEPT_PAUSE_MS;
}

uint64_t overload_nofile(const server *s) { return s->ov->nofile; }

/* ---- the memory budget ---- */

/* The bytes a connection holds: its input (or what is reserved for the body being read), its
   unsent output and a decoded chunked body. */
static size_t conn_bytes(const conn *c) {
    return MAX(c->in.cap, c->reserved) + c->out.cap + (c->req ? c->req->body.cap : 0);
}

void overload_charge(conn *c) {
    size_t now = conn_bytes(c);
    if (now == c->charged) return;
    atomic_fetch_add_explicit(&c->l->srv->ov->used, (uint64_t)now - (uint64_t)c->charged, memory_order_relaxed);
    c->charged = now;
}

void overload_uncharge(conn *c) {
    atomic_fetch_sub_explicit(&c->l->srv->ov->used, c->charged, memory_order_relaxed);
    c->charged = 0;
}

bool overload_reserve(conn *c, size_t n) {
    struct overload *o = c->l->srv->ov;
    c->reserved = n;
    size_t now = conn_bytes(c);
    if (now > c->charged) {
        uint64_t add = now - c->charged, cur = atomic_load(&o->used);
        do {
            if (cur + add > c->l->srv->cfg.max_memory) {
                c->reserved = 0;
                relaxed_add(&o->counts[BODIES_REFUSED], 1);
                return false;
            }
        } while (!atomic_compare_exchange_weak(&o->used, &cur, cur + add));
    } else {
        atomic_fetch_sub(&o->used, c->charged - now);
    }
    c->charged = now;
    return true;
}

bool overload_over(const conn *c) {
    size_t now = conn_bytes(c);
    uint64_t used = atomic_load_explicit(&c->l->srv->ov->used, memory_order_relaxed);
    return used + (now > c->charged ? now - c->charged : 0) > c->l->srv->cfg.max_memory;
}

bool overload_server_over(const server *s) {
    return atomic_load_explicit(&s->ov->used, memory_order_relaxed) > s->cfg.max_memory;
}

uint64_t overload_memory_target(const server *s) { return s->cfg.max_memory - s->cfg.max_memory / 8; }

uint64_t overload_memory_used(const server *s) { return atomic_load_explicit(&s->ov->used, memory_order_relaxed); }

/* ---- start, stop, metrics ---- */

int overload_open(server *s, factum_error_t *err) {
    server_config *c = &s->cfg;
    if (!c->max_per_address) c->max_per_address = MAX(1, c->max_connections / 4);
    if (!c->max_memory) {
        uint64_t ram = (uint64_t)sysconf(_SC_PHYS_PAGES) * (uint64_t)sysconf(_SC_PAGESIZE);
        c->max_memory = MAX(MEMORY_FLOOR, MIN(ram / 4, MEMORY_CAP));
    }
    struct overload *o = calloc(1, sizeof *o);
    size_t cap = 64;
    while (cap < 2 * (size_t)c->max_connections + 64)
        cap *= 2;
    if (!o || !(o->slots = calloc(cap, sizeof *o->slots))) {
        free(o);
        return err_set(err, FACTUM_ENOMEM, "out of memory");
    }
    o->mask = cap - 1;
    pthread_mutex_init(&o->mu, NULL);
    /* The soft limit up to the hard one: 1,024 (a common default) is far below what
       --max-connections asks for. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        if (rl.rlim_cur < rl.rlim_max) {
            struct rlimit want = rl;
            want.rlim_cur = rl.rlim_max == RLIM_INFINITY ? (1u << 20) : rl.rlim_max;
            if (setrlimit(RLIMIT_NOFILE, &want) == 0) rl = want;
        }
        o->nofile = rl.rlim_cur;
    }
    o->spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
    s->ov = o;
    return 0;
}

void overload_close(server *s) {
    struct overload *o = s->ov;
    if (!o) return;
    if (o->spare >= 0) close(o->spare);
    pthread_mutex_destroy(&o->mu);
    free(o->slots);
    free(o);
    s->ov = NULL;
}

void overload_metrics(server *s, buf_t *b) {
    struct overload *o = s->ov;
    uint64_t n[NCOUNTS];
    for (int i = 0; i < NCOUNTS; i++)
        n[i] = atomic_load_explicit(&o->counts[i], memory_order_relaxed);
    api_metric_head(b, "factum_connections_limit", "gauge", "--max-connections.");
    buf_printf(b, "factum_connections_limit %u\n", s->cfg.max_connections);
    api_metric_head(b, "factum_connections_per_address_limit", "gauge", "--max-connections-per-address.");
    buf_printf(b, "factum_connections_per_address_limit %u\n", s->cfg.max_per_address);
    api_metric_head(b, "factum_connections_refused_total", "counter",
                    "New connections answered and closed at once, by reason.");
    buf_printf(b,
               "factum_connections_refused_total{reason=\"address\"} %llu\n"
               "factum_connections_refused_total{reason=\"capacity\"} %llu\n"
               "factum_connections_refused_total{reason=\"descriptors\"} %llu\n",
               (unsigned long long)n[REFUSED_ADDRESS], (unsigned long long)n[REFUSED_CAPACITY],
               (unsigned long long)n[REFUSED_FDS]);
    api_metric_head(b, "factum_connections_evicted_total", "counter",
                    "Idle connections closed at the connection limit to make room for a new one.");
    buf_printf(b, "factum_connections_evicted_total %llu\n", (unsigned long long)n[EVICTED]);
    api_metric_head(b, "factum_open_files_limit", "gauge", "The process's open-file limit (RLIMIT_NOFILE).");
    buf_printf(b, "factum_open_files_limit %llu\n", (unsigned long long)o->nofile);
    api_metric_head(b, "factum_memory_used_bytes", "gauge",
                    "Bytes of request bodies, unsent answers and subscriber buffers (the memory budget's use).");
    buf_printf(b, "factum_memory_used_bytes %llu\n", (unsigned long long)overload_memory_used(s));
    api_metric_head(b, "factum_memory_limit_bytes", "gauge", "--max-memory.");
    buf_printf(b, "factum_memory_limit_bytes %llu\n", (unsigned long long)s->cfg.max_memory);
    api_metric_head(b, "factum_bodies_refused_total", "counter",
                    "Requests answered 503 because their body did not fit the memory budget.");
    buf_printf(b, "factum_bodies_refused_total %llu\n", (unsigned long long)n[BODIES_REFUSED]);
}
