/*
 * test_cluster_fixture.c — the cluster tests' fixture and shared checks (test_cluster.h): it
 * starts the nats-servers and the nodes, finds the leader through /health, waits for followers
 * to catch up and compares what the nodes hold with what was acknowledged.
 */
#include "test_cluster.h"

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

const char *nats_server(void) {
    const char *const places[] = {"/usr/bin/nats-server", "/usr/sbin/nats-server", "/usr/local/bin/nats-server"};
    for (size_t i = 0; i < ARRAY_LEN(places); i++)
        if (access(places[i], X_OK) == 0) return places[i];
    return NULL;
}

pid_t nats_start(const char *bin, cluster_fixture *f, int i) {
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

srv node_start(cluster_fixture *f, int i) {
    char dir[4096], log[4096], extra[1024];
    snprintf(dir, sizeof dir, "%s/factum%d", test_dir(), i);
    snprintf(log, sizeof log, "%s/factum%d.log", test_dir(), i);
    snprintf(extra, sizeof extra, "--listen 127.0.0.1:%d --cluster %s --node node%d", f->http_port[i], f->urls, i);
    return srv_start_log(dir, extra, log);
}

/* A number from /health's body, e.g. "applied_sequence"; -1 if absent. */
long long health_num(const char *body, const char *key) {
    char k[64];
    snprintf(k, sizeof k, "\"%s\":", key);
    const char *p = body ? strstr(body, k) : NULL;
    return p ? atoll(p + strlen(k)) : -1;
}

/* The node that says it is the leader (among those alive), or -1 within WAIT_S. */
int wait_leader(cluster_fixture *f, const bool *alive) {
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
bool wait_same_applied(cluster_fixture *f, const bool *alive, int leader) {
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

/* Waits until nats-server i accepts connections. */
void nats_wait(cluster_fixture *f, int i) {
    for (int tries = 0; !port_open(f->nats_port[i]) && tries < WAIT_S * 10; tries++)
        usleep(100000);
    CHECK_MSG(port_open(f->nats_port[i]), "nats-server %d does not accept connections (see nats%d.log)", i, i);
}

/* Three nats-server and three nodes on free ports (skips the test without nats-server). */
void cluster_up(cluster_fixture *f, bool *alive) {
    const char *bin = nats_server();
    if (!bin) test_skip("nats-server is not installed (the Makefile installs Debian's nats-server with apt)");
    memset(f, 0, sizeof *f);
    srv_start_wait_ms = WAIT_S * 1000; /* a node says where it listens once JetStream answers it */
    int len = 0;
    for (int i = 0; i < NODES; i++) {
        f->nats_port[i] = free_port(), f->route_port[i] = free_port(), f->http_port[i] = free_port();
        len += snprintf(f->urls + len, sizeof f->urls - (size_t)len, "%snats://127.0.0.1:%d", i ? "," : "",
                        f->nats_port[i]);
    }
    for (int i = 0; i < NODES; i++)
        f->nats[i] = nats_start(bin, f, i);
    for (int i = 0; i < NODES; i++)
        nats_wait(f, i);
    for (int i = 0; i < NODES; i++)
        f->node[i] = node_start(f, i), alive[i] = true;
}

int cluster_up_leader(cluster_fixture *f, bool *alive) {
    cluster_up(f, alive);
    int leader = wait_leader(f, alive);
    CHECK_MSG(leader >= 0, "no node became the leader");
    return leader;
}

void cluster_down(cluster_fixture *f, const bool *alive) {
    for (int i = 0; i < NODES; i++)
        if (alive[i]) srv_stop(&f->node[i], SIGTERM);
    for (int i = 0; i < NODES; i++) {
        kill(f->nats[i], SIGKILL);
        waitpid(f->nats[i], NULL, 0);
    }
}

/* POSTs event `id` to `port`; its status, and on 201 its position. */
int post_event(int port, const char *stream, const char *body, long long *position) {
    char path[160];
    snprintf(path, sizeof path, "/streams/%s", stream);
    resp r;
    int st = http_try(port, "POST", path, "Content-Type: application/cloudevents+json\r\n", body, &r);
    if (st == 201 || st == 200) *position = health_num(r.body, "position");
    resp_free(&r);
    return st;
}

static void order_event(char *body, size_t cap, const char *id) {
    snprintf(body, cap, "{\"specversion\":\"1.0\",\"id\":\"%s\",\"type\":\"Placed\",\"source\":\"t\",\"data\":{}}", id);
}

int append_one(int port, const char *id, long long *position) {
    char body[256];
    order_event(body, sizeof body, id);
    return post_event(port, "order-1", body, position);
}

/* Waits until `node` has seen who leads (it watches the lease: a follower that has not seen it
   yet answers writes 503 instead of forwarding them). */
void knows_leader(cluster_fixture *f, int node, int leader) {
    char leads[48];
    snprintf(leads, sizeof leads, "\"leader\":\"node%d\"", leader);
    CHECK_MSG(http_wait_body(f->http_port[node], "/health", leads, WAIT_S), "node%d does not know its leader", node);
}

/* Every live node has caught up with `leader` and holds the same log, and every acknowledged
   append is in it once, at the position its 201 named. */
void check_acked(cluster_fixture *f, const bool *alive, int leader, const acked *ack, size_t nack) {
    CHECK_MSG(wait_same_applied(f, alive, leader), "a node did not catch up");
    char *all[NODES] = {0};
    int first = -1;
    for (int i = 0; i < NODES; i++)
        if (alive[i]) all[i] = http_body(f->http_port[i], "GET", "/all?limit=10000", NULL, NULL, 200);
    for (int i = 0; i < NODES; i++) {
        if (!alive[i]) continue;
        if (first < 0) first = i;
        CHECK_MSG(!strcmp(all[first], all[i]), "node %d and node %d differ:\n%s\n---\n%s", first, i, all[first],
                  all[i]);
    }
    for (size_t a = 0; a < nack; a++) {
        char want[96];
        snprintf(want, sizeof want, "\"id\":\"%s\"", ack[a].id);
        const char *p = strstr(all[first], want);
        CHECK_MSG(p, "acknowledged event %s is missing", ack[a].id);
        CHECK_MSG(!strstr(p + 1, want), "acknowledged event %s is there twice", ack[a].id);
        const char *pos = strstr(p, "\"position\":");
        CHECK(pos);
        CHECK_MSG(atoll(pos + 11) == ack[a].position, "event %s at %lld, its 201 said %lld", ack[a].id, atoll(pos + 11),
                  ack[a].position);
    }
    for (int i = 0; i < NODES; i++)
        free(all[i]);
}

/* Appends event `id` through any live node until one acknowledges it (a retry with the same id
   is idempotent); false if none did within WAIT_S. */
bool post_anywhere(cluster_fixture *f, const bool *alive, const char *stream, const char *body, long long *position) {
    for (int tries = 0; tries < WAIT_S * 10; tries++) {
        for (int i = 0; i < NODES; i++) {
            int st = alive[i] ? post_event(f->http_port[i], stream, body, position) : 0;
            if (st == 201 || st == 200) return true;
        }
        usleep(100000);
    }
    return false;
}

bool append_anywhere(cluster_fixture *f, const bool *alive, const char *id, long long *position) {
    char body[256];
    order_event(body, sizeof body, id);
    return post_anywhere(f, alive, "order-1", body, position);
}
