/*
 * test_cluster.c — cluster mode with real processes on loopback (docs/cluster.md): three
 * `nats-server` processes as a JetStream cluster and three `factum serve --cluster` nodes.
 * Appends go through the leader with explicit ids and every 201 is recorded; all nodes must
 * hold the same events at the same positions; the leader is killed with SIGKILL, another takes
 * over, and no acknowledged append is lost or duplicated. Without nats-server the test says
 * "skipped" with the reason.
 */
#include "test_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define NODES 3
#define APPENDS 40 /* per round */
#define WAIT_S 60  /* the most any wait below lasts before the test gives up */

static int free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    CHECK(fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0);
    CHECK(getsockname(fd, (struct sockaddr *)&a, &len) == 0);
    close(fd);
    return ntohs(a.sin_port);
}

static bool port_open(int port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bool ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    if (fd >= 0) close(fd);
    return ok;
}

static const char *nats_server(void) {
    static const char *const places[] = {"/usr/bin/nats-server", "/usr/sbin/nats-server", "/usr/local/bin/nats-server"};
    for (size_t i = 0; i < ARRAY_LEN(places); i++)
        if (access(places[i], X_OK) == 0) return places[i];
    return NULL;
}

typedef struct cluster_fixture {
    pid_t nats[NODES];
    int nats_port[NODES], route_port[NODES], http_port[NODES];
    srv node[NODES];
    char urls[512];
} cluster_fixture;

static pid_t nats_start(const char *bin, cluster_fixture *f, int i) {
    char dir[4096], log[4096], port[16], name[16], listen[64], routes[256];
    snprintf(dir, sizeof dir, "%s/nats%d", test_dir(), i);
    snprintf(log, sizeof log, "%s/nats%d.log", test_dir(), i);
    snprintf(port, sizeof port, "%d", f->nats_port[i]);
    snprintf(name, sizeof name, "n%d", i);
    snprintf(listen, sizeof listen, "nats://127.0.0.1:%d", f->route_port[i]);
    int len = 0;
    for (int k = 0; k < NODES; k++)
        len += snprintf(routes + len, sizeof routes - (size_t)len, "%snats://127.0.0.1:%d", k ? "," : "",
                        f->route_port[k]);
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        dup2(fd, 1), dup2(fd, 2);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        execl(bin, bin, "-a", "127.0.0.1", "-p", port, "-js", "-sd", dir, "-n", name, "--cluster_name", "factum-test",
              "--cluster", listen, "--routes", routes, (char *)NULL);
        _exit(127);
    }
    return pid;
}

static srv node_start(cluster_fixture *f, int i) {
    char dir[4096], log[4096], extra[1024];
    snprintf(dir, sizeof dir, "%s/factum%d", test_dir(), i);
    snprintf(log, sizeof log, "%s/factum%d.log", test_dir(), i);
    snprintf(extra, sizeof extra, "--listen 127.0.0.1:%d --cluster %s --node node%d", f->http_port[i], f->urls, i);
    return srv_start_log(dir, extra, log);
}

/* A number from /health's body, e.g. "applied_sequence"; -1 if absent. */
static long long health_num(const char *body, const char *key) {
    char k[64];
    snprintf(k, sizeof k, "\"%s\":", key);
    const char *p = body ? strstr(body, k) : NULL;
    return p ? atoll(p + strlen(k)) : -1;
}

/* The node that says it is the leader (among those alive), or -1 within WAIT_S. */
static int wait_leader(cluster_fixture *f, const bool *alive) {
    for (int tries = 0; tries < WAIT_S * 10; tries++) {
        for (int i = 0; i < NODES; i++) {
            if (!alive[i]) continue;
            resp r;
            bool leader = http_try(f->http_port[i], "GET", "/health", NULL, NULL, &r) == 200 &&
                          strstr(r.body, "\"role\":\"leader\"");
            resp_free(&r);
            if (leader) return i;
        }
        usleep(100000);
    }
    return -1;
}

/* Waits until every live node has applied the same sequence as `leader`. */
static bool wait_same_applied(cluster_fixture *f, const bool *alive, int leader) {
    for (int tries = 0; tries < WAIT_S * 10; tries++) {
        resp r;
        http_try(f->http_port[leader], "GET", "/health", NULL, NULL, &r);
        long long want = health_num(r.body, "applied_sequence");
        resp_free(&r);
        bool same = want > 0;
        for (int i = 0; i < NODES && same; i++) {
            if (!alive[i]) continue;
            http_try(f->http_port[i], "GET", "/health", NULL, NULL, &r);
            same = health_num(r.body, "applied_sequence") == want;
            resp_free(&r);
        }
        if (same) return true;
        usleep(100000);
    }
    return false;
}

typedef struct acked {
    char id[32];
    long long position;
} acked;

/* POSTs event `id` to `port`; its status, and on 201 its position. */
static int append_one(int port, const char *id, long long *position) {
    char body[256];
    snprintf(body, sizeof body,
             "{\"specversion\":\"1.0\",\"id\":\"%s\",\"type\":\"Placed\",\"source\":\"t\",\"data\":{}}", id);
    resp r;
    int st = http_try(port, "POST", "/streams/order-1", "Content-Type: application/cloudevents+json\r\n", body, &r);
    if (st == 201) *position = health_num(r.body, "position");
    resp_free(&r);
    return st;
}

TEST_T(a_three_node_cluster_keeps_every_acknowledged_append_when_its_leader_is_killed, 300) {
    const char *bin = nats_server();
    if (!bin) test_skip("nats-server is not installed (the Makefile installs Debian's nats-server with apt)");
    cluster_fixture f = {0};
    int len = 0;
    for (int i = 0; i < NODES; i++) {
        f.nats_port[i] = free_port(), f.route_port[i] = free_port(), f.http_port[i] = free_port();
        len +=
            snprintf(f.urls + len, sizeof f.urls - (size_t)len, "%snats://127.0.0.1:%d", i ? "," : "", f.nats_port[i]);
    }
    for (int i = 0; i < NODES; i++)
        f.nats[i] = nats_start(bin, &f, i);
    for (int i = 0; i < NODES; i++) {
        int tries = 0;
        while (!port_open(f.nats_port[i]) && tries++ < WAIT_S * 10)
            usleep(100000);
        CHECK_MSG(port_open(f.nats_port[i]), "nats-server %d does not accept connections (see nats%d.log)", i, i);
    }
    bool alive[NODES];
    for (int i = 0; i < NODES; i++)
        f.node[i] = node_start(&f, i), alive[i] = true;

    int leader = wait_leader(&f, alive);
    CHECK_MSG(leader >= 0, "no node became the leader");
    acked ack[3 * APPENDS + 8];
    size_t nack = 0;
    for (int k = 0; k < APPENDS; k++) {
        snprintf(ack[nack].id, sizeof ack[nack].id, "a%d", k);
        CHECK_EQ(append_one(f.http_port[leader], ack[nack].id, &ack[nack].position), 201);
        nack++;
    }
    /* An expected revision is decided by the log: a stale one is 412 on the leader. */
    expect_status(f.http_port[leader], "POST", "/streams/order-1",
                  "Content-Type: application/cloudevents+json\r\nIf-Match: \"0\"\r\n",
                  "{\"specversion\":\"1.0\",\"id\":\"stale\",\"type\":\"Placed\",\"source\":\"t\",\"data\":{}}", 412,
                  "expected revision 0");
    /* A follower refuses writes and names the leader. */
    int follower = (leader + 1) % NODES;
    char name[32];
    snprintf(name, sizeof name, "the leader is node%d", leader);
    expect_status(f.http_port[follower], "POST", "/streams/order-1", "Content-Type: application/cloudevents+json\r\n",
                  "{\"specversion\":\"1.0\",\"id\":\"nope\",\"type\":\"Placed\",\"source\":\"t\",\"data\":{}}", 503,
                  name);

    /* Every node holds the same events at the same positions. */
    CHECK_MSG(wait_same_applied(&f, alive, leader), "the followers did not catch up");
    char *all[NODES] = {0};
    for (int i = 0; i < NODES; i++)
        all[i] = http_body(f.http_port[i], "GET", "/all?limit=1000", NULL, NULL, 200);
    for (int i = 1; i < NODES; i++)
        CHECK_MSG(!strcmp(all[0], all[i]), "node 0 and node %d differ:\n%s\n---\n%s", i, all[0], all[i]);
    for (int i = 0; i < NODES; i++)
        free(all[i]);

    /* kill -9 the leader: another takes over, and appends go on. */
    srv_stop(&f.node[leader], SIGKILL);
    alive[leader] = false;
    uint64_t t0 = clock_mono_ns();
    int next = -1;
    snprintf(ack[nack].id, sizeof ack[nack].id, "b0");
    for (int tries = 0; next < 0 && tries < WAIT_S * 10; tries++) {
        for (int i = 0; i < NODES && next < 0; i++)
            if (alive[i] && append_one(f.http_port[i], ack[nack].id, &ack[nack].position) == 201) next = i;
        if (next < 0) usleep(100000);
    }
    CHECK_MSG(next >= 0, "no node took writes after the leader was killed");
    fprintf(stderr, "    failover: leader killed -> first 201 on node%d in %.2f s\n", next,
            (double)(clock_mono_ns() - t0) / 1e9);
    nack++;
    for (int k = 1; k < APPENDS; k++) {
        snprintf(ack[nack].id, sizeof ack[nack].id, "b%d", k);
        CHECK_EQ(append_one(f.http_port[next], ack[nack].id, &ack[nack].position), 201);
        nack++;
    }

    /* The killed node comes back as a follower and catches up. */
    f.node[leader] = node_start(&f, leader);
    alive[leader] = true;
    CHECK_MSG(wait_same_applied(&f, alive, next), "the restarted node did not catch up");
    for (int i = 0; i < NODES; i++)
        all[i] = http_body(f.http_port[i], "GET", "/all?limit=1000", NULL, NULL, 200);
    for (int i = 1; i < NODES; i++)
        CHECK_MSG(!strcmp(all[0], all[i]), "node 0 and node %d differ:\n%s\n---\n%s", i, all[0], all[i]);
    /* Every acknowledged append is there once, at the position its 201 named. */
    for (size_t a = 0; a < nack; a++) {
        char want[96];
        snprintf(want, sizeof want, "\"id\":\"%s\"", ack[a].id);
        const char *p = strstr(all[0], want);
        CHECK_MSG(p, "acknowledged event %s is missing", ack[a].id);
        CHECK_MSG(!strstr(p + 1, want), "acknowledged event %s is there twice", ack[a].id);
        const char *pos = strstr(p, "\"position\":");
        CHECK(pos);
        CHECK_MSG(atoll(pos + 11) == ack[a].position, "event %s at %lld, its 201 said %lld", ack[a].id, atoll(pos + 11),
                  ack[a].position);
    }
    for (int i = 0; i < NODES; i++) {
        free(all[i]);
        srv_stop(&f.node[i], SIGTERM);
    }
    for (int i = 0; i < NODES; i++) {
        kill(f.nats[i], SIGKILL);
        waitpid(f.nats[i], NULL, 0);
    }
}
