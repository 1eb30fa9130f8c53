/*
 * bench_lag.c — replication lag under load, for the cluster bench (bench/cluster.sh, issue 18).
 * While --clients threads append single 200-byte events to the --write-port server as fast as
 * they can, one probe appends an event to a stream of its own there every --every-ms and
 * notes when its 201 came; a Server-Sent Events subscription to that stream on the --read-port
 * server notes when each probe event arrives there. The lag of a probe is the second time minus
 * the first: how long after a leader's 201 the event is readable on a follower (the cluster),
 * or, with the same port for both, how long after its 201 a subscriber of the same server gets
 * it (standalone: the reference, what delivery costs without replication). A probe that arrives
 * before its 201 reached the client counts 0. Beside it, from the moment each probe was sent:
 * to its 201 (ack) and to its arrival (seen). Prints one line of names and values:
 * "lag p50 MS p99 MS max MS ack_p50 MS ack_p99 MS seen_p50 MS seen_p99 MS probes N missing M
 * appends/s A".
 *
 *   bench-lag --write-port P --read-port P [--clients 16] [--seconds S] [--every-ms 5]
 */
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "hclient.h"

#define MAX_PROBES 100000

static int write_port, read_port, clients = 16, every_ms = 5;
static double seconds = 5;
static _Atomic bool stop;
static _Atomic uint64_t loaded;
static char probe_stream[64];
static uint64_t sent_ns[MAX_PROBES], acked_ns[MAX_PROBES], seen_ns[MAX_PROBES]; /* by the probe's revision */
static _Atomic int probes;

static hconn *connect_to(int p) {
    port = p; /* hclient dials the global port; connections are made before the threads start */
    return hconn_new(1 << 16);
}

/* POSTs one event to stream `s`: the status; the body's revision into *rev when not NULL. */
static int post(hconn *c, const char *s, int n, long long *rev) {
    char req[1024], body[300];
    int bl = snprintf(body, sizeof body, "{\"type\":\"BenchEvent\",\"data\":{\"n\":%d,\"pad\":\"%0160d\"}}", n, 0);
    int hl = snprintf(req, sizeof req,
                      "POST /streams/%s HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                      "Content-Length: %d\r\n\r\n%s",
                      s, bl, body);
    const char *rb = NULL;
    int st = roundtrip(c, req, (size_t)hl, &rb);
    if (rev) {
        const char *p = rb ? strstr(rb, "\"revision\":") : NULL;
        *rev = p ? atoll(p + 11) : -1;
    }
    return st;
}

static void *load_main(void *arg) {
    hconn *c = arg;
    char s[32];
    snprintf(s, sizeof s, "load-%d", rand() % 1000);
    for (int n = 0; !atomic_load(&stop); n++) {
        if (post(c, s, n, NULL) != 201) die("a load append failed");
        atomic_fetch_add(&loaded, 1);
    }
    return NULL;
}

static void *probe_main(void *arg) {
    hconn *c = arg;
    uint64_t next = now_ns();
    for (int n = 1; !atomic_load(&stop) && n < MAX_PROBES; n++) {
        long long rev;
        sent_ns[n] = now_ns();
        if (post(c, probe_stream, n, &rev) != 201 || rev != n) die("a probe append failed or landed elsewhere");
        acked_ns[n] = now_ns();
        atomic_store(&probes, n);
        next += (uint64_t)every_ms * 1000000;
        uint64_t t = now_ns();
        if (next > t) usleep((useconds_t)((next - t) / 1000));
    }
    return NULL;
}

/* Reads the subscription until told to stop, noting when each revision's "id: R" came. */
static void *read_main(void *arg) {
    int fd = *(int *)arg;
    static char buf[1 << 16];
    size_t carry = 0;
    while (!atomic_load(&stop)) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 100) <= 0) continue;
        ssize_t r = recv(fd, buf + carry, sizeof buf - 1 - carry, 0);
        if (r <= 0) die("the subscription ended");
        uint64_t t = now_ns();
        size_t len = carry + (size_t)r;
        buf[len] = 0;
        char *q = buf;
        for (char *m; (m = strstr(q, "\nid: ")) && strchr(m + 5, '\n'); q = m + 5) {
            long long rev = atoll(m + 5);
            if (rev > 0 && rev < MAX_PROBES && !seen_ns[rev]) seen_ns[rev] = t;
        }
        carry = (size_t)(buf + len - q) < 32 ? (size_t)(buf + len - q) : 32;
        memmove(buf, buf + len - carry, carry);
    }
    return NULL;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--write-port"))
            write_port = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--read-port"))
            read_port = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--clients"))
            clients = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--seconds"))
            seconds = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--every-ms"))
            every_ms = atoi(argv[i + 1]);
        else
            die("usage: bench-lag --write-port P --read-port P [--clients N] [--seconds S] [--every-ms MS]");
    }
    if (!write_port || !read_port || clients < 0 || clients > 1024 || every_ms < 1) die("bad arguments");
    hclient_init();
    srand((unsigned)getpid());
    snprintf(probe_stream, sizeof probe_stream, "lag-probe-%d-%llu", (int)getpid(),
             (unsigned long long)(now_ns() / 1000));
    /* The probe stream exists (revision 0) before the follower is asked for it. */
    hconn *probe = connect_to(write_port);
    long long rev;
    if (post(probe, probe_stream, 0, &rev) != 201) die("the first probe append failed");
    char path[160], req[512];
    snprintf(path, sizeof path, "/streams/%s?from=1", probe_stream);
    hconn *wait = connect_to(read_port);
    for (int k = 0;; k++) { /* the read side has applied revision 0 */
        snprintf(req, sizeof req, "GET /streams/%s HTTP/1.1\r\nHost: localhost\r\n\r\n", probe_stream);
        if (roundtrip(wait, req, strlen(req), NULL) == 200) break;
        if (k > 3000) die("the read side never got the probe stream");
        usleep(10000);
    }
    hconn_free(wait);
    port = read_port;
    int fd = dial();
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: localhost\r\n%sAccept: text/event-stream\r\n\r\n", path,
                     auth);
    if (send(fd, req, (size_t)n, 0) != n) die("subscribe failed");
    hconn **load = malloc((size_t)(clients ? clients : 1) * sizeof *load);
    for (int i = 0; i < clients; i++)
        load[i] = connect_to(write_port);
    pthread_t rt, pt, *lt = malloc((size_t)(clients ? clients : 1) * sizeof *lt);
    pthread_create(&rt, NULL, read_main, &fd);
    for (int i = 0; i < clients; i++)
        pthread_create(&lt[i], NULL, load_main, load[i]);
    usleep(200000);
    uint64_t t0 = now_ns(), l0 = atomic_load(&loaded);
    pthread_create(&pt, NULL, probe_main, probe);
    usleep((useconds_t)(seconds * 1e6));
    uint64_t l1 = atomic_load(&loaded), t1 = now_ns();
    int sent = atomic_load(&probes);
    usleep(2000000); /* the last probes arrive */
    atomic_store(&stop, true);
    pthread_join(pt, NULL);
    for (int i = 0; i < clients; i++)
        pthread_join(lt[i], NULL);
    pthread_join(rt, NULL);
    /* lag: 201 -> arrival (0 when it arrived first); ack: sent -> 201; seen: sent -> arrival */
    uint64_t *lag = malloc((size_t)(sent + 1) * sizeof *lag), *ack = malloc((size_t)(sent + 1) * sizeof *ack),
             *seen = malloc((size_t)(sent + 1) * sizeof *seen);
    int got = 0, missing = 0;
    for (int i = 1; i <= sent; i++) {
        if (!seen_ns[i]) {
            missing++;
            continue;
        }
        lag[got] = seen_ns[i] > acked_ns[i] ? seen_ns[i] - acked_ns[i] : 0;
        ack[got] = acked_ns[i] - sent_ns[i];
        seen[got++] = seen_ns[i] - sent_ns[i];
    }
    uint64_t *all[] = {lag, ack, seen};
    for (int k = 0; k < 3; k++)
        qsort(all[k], (size_t)got, sizeof *lag, cmp_u64);
#define AT(v, p) (got ? (double)(v)[(size_t)((double)(got - 1) * (p))] / 1e6 : 0)
    printf("lag p50 %.2f p99 %.2f max %.2f ack_p50 %.2f ack_p99 %.2f seen_p50 %.2f seen_p99 %.2f probes %d missing %d "
           "appends/s %.0f\n",
           AT(lag, 0.5), AT(lag, 0.99), AT(lag, 1.0), AT(ack, 0.5), AT(ack, 0.99), AT(seen, 0.5), AT(seen, 0.99), sent,
           missing, (double)(l1 - l0) / ((double)(t1 - t0) / 1e9));
    close(fd);
    return missing ? 1 : 0;
}
