/*
 * test_cluster.c — cluster mode with real processes on loopback (docs/cluster.md; the fixture
 * is test_cluster.h): three `nats-server` processes as a JetStream cluster and three
 * `factum serve --cluster` nodes. Appends go through the leader with explicit ids and every 201
 * is recorded; all nodes must hold the same events at the same positions; a follower sends
 * writes on to the leader and serves read-your-writes. A consumer group with members on
 * different nodes and a timer due while the leader is killed: every event processed at least
 * once, no acknowledged ack lost, the timer fired once. Concurrent appends with the same
 * If-Match through every node: at most one lands per revision, across a leader kill. A
 * nats-server killed, everything killed at once, a leader paused past its lease, JetStream
 * losing its tail. The test 1 at full size (10 leader kills under 8 writers) and a saga
 * across a leader kill are test_cluster_failover.c. Without nats-server the tests say "skipped"
 * with the reason.
 */
#include "test_cluster.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define APPENDS 40 /* per round */

TEST_T(a_three_node_cluster_holds_one_log_on_every_node_and_followers_send_writes_on_to_the_leader, 300) {
    cluster_fixture f;
    bool alive[NODES];
    int leader = cluster_up_leader(&f, alive);
    /* /metrics says the same as /health: the role, and the lease taken once */
    CHECK_EQ(srv_metric(f.http_port[leader], "factum_cluster_role{role=\"leader\"}"), 1);
    CHECK_EQ(srv_metric(f.http_port[leader], "factum_cluster_leader_terms_total"), 1);
    CHECK_EQ(srv_metric(f.http_port[(leader + 1) % NODES], "factum_cluster_role{role=\"leader\"}"), 0);
    acked ack[APPENDS + 8];
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
    /* A follower sends a write on to the leader and answers with the leader's answer, naming it
       (once it has seen who leads: the lease is watched, not asked) */
    int follower = (leader + 1) % NODES;
    knows_leader(&f, follower, leader);
    resp fr;
    CHECK_EQ(http_try(f.http_port[follower], "POST", "/streams/order-1",
                      "Content-Type: application/cloudevents+json\r\n",
                      "{\"specversion\":\"1.0\",\"id\":\"fwd\",\"type\":\"Placed\",\"source\":\"t\",\"data\":{}}", &fr),
             201);
    char by[64], want_by[32];
    snprintf(want_by, sizeof want_by, "node%d", leader);
    CHECK_MSG(resp_header(&fr, "Factum-Committed-By", by, sizeof by) && !strcmp(by, want_by),
              "Factum-Committed-By is '%s', not %s", resp_header(&fr, "Factum-Committed-By", by, sizeof by) ? by : "",
              want_by);
    snprintf(ack[nack].id, sizeof ack[nack].id, "fwd");
    ack[nack++].position = health_num(fr.body, "position");
    resp_free(&fr);
    /* Read-your-writes on the other follower: with min_position (the query or the header) the
       read waits until that node has applied the position the 201 named, then holds the event. */
    for (int k = 0; k < 5; k++) {
        int other = (leader + 2) % NODES;
        long long pos;
        char id[16], path[96], hdr[64];
        snprintf(id, sizeof id, "ryw%d", k);
        CHECK_EQ(append_one(f.http_port[leader], id, &pos), 201);
        snprintf(path, sizeof path, "/all?from=%lld&limit=1%s", pos, k % 2 ? "" : "&min_position=");
        if (k % 2 == 0) snprintf(path + strlen(path), sizeof path - strlen(path), "%lld", pos);
        snprintf(hdr, sizeof hdr, "Factum-Min-Position: %lld\r\n", pos);
        resp rr;
        CHECK_EQ(http_try(f.http_port[other], "GET", path, k % 2 ? hdr : NULL, NULL, &rr), 200);
        char want[40];
        snprintf(want, sizeof want, "\"id\":\"%s\"", id);
        CHECK_MSG(strstr(rr.body, want), "node%d after %s: %s", other, path, rr.body);
        resp_free(&rr);
        snprintf(ack[nack].id, sizeof ack[nack].id, "%s", id);
        ack[nack++].position = pos;
    }

    /* Every node holds the same events at the same positions, each acknowledged one once. */
    check_acked(&f, alive, leader, ack, nack);
    cluster_down(&f, alive);
}

/* ---- engines above the log: a consumer group and a timer across a leader kill ---- */

#define WORK 30 /* events for the group */

/* Pulls up to 10 from `port` and acks them (unless keep): each delivered event's number into
   delivered[], each done one into done[] (only once the ack is answered 200). false when the
   node did not answer the pull. */
static bool pull_and_ack(int port, bool keep, int *delivered, bool *done) {
    resp r;
    if (http_try(port, "POST", "/groups/g/messages?max=10", "Content-Type: application/json\r\n", "{}", &r) != 200) {
        resp_free(&r);
        return false;
    }
    char ids[2048] = "{\"delivery_ids\":[";
    size_t len = strlen(ids);
    int got[10], n = 0;
    for (const char *p = r.body; n < 10 && (p = strstr(p, "\"delivery_id\":\""));) {
        p += 15;
        const char *q = strchr(p, '"'), *w = strstr(q, "\"id\":\"w");
        if (!q || !w) break;
        len += (size_t)snprintf(ids + len, sizeof ids - len, "%s\"%.*s\"", n ? "," : "", (int)(q - p), p);
        got[n++] = atoi(w + 7);
        p = w + 7;
    }
    resp_free(&r);
    for (int i = 0; i < n; i++)
        if (got[i] >= 0 && got[i] < WORK) delivered[got[i]]++;
    if (keep || !n) return true;
    snprintf(ids + len, sizeof ids - len, "]}");
    if (http_try(port, "POST", "/groups/g/ack", "Content-Type: application/json\r\n", ids, &r) == 200)
        for (int i = 0; i < n; i++)
            if (got[i] >= 0 && got[i] < WORK) done[got[i]] = true;
    resp_free(&r);
    return true;
}

TEST_T(a_group_and_a_timer_carry_on_from_the_replicated_log_when_the_leader_is_killed, 300) {
    cluster_fixture f;
    bool alive[NODES];
    int leader = cluster_up_leader(&f, alive);
    int a = (leader + 1) % NODES, b = (leader + 2) % NODES;
    knows_leader(&f, a, leader);
    knows_leader(&f, b, leader);
    /* Defined through a follower (sent on to the leader); the events through the leader. */
    expect_status(f.http_port[a], "PUT", "/groups/g", "Content-Type: application/json\r\n",
                  "{\"source\":{\"stream\":\"work-1\"},\"start\":\"earliest\",\"ack_timeout_ms\":1000}", 201, NULL);
    for (int k = 0; k < WORK; k++) {
        char id[16];
        snprintf(id, sizeof id, "w%d", k);
        char body[256];
        snprintf(body, sizeof body,
                 "{\"specversion\":\"1.0\",\"id\":\"%s\",\"type\":\"Work\",\"source\":\"t\",\"data\":{}}", id);
        resp r;
        CHECK_EQ(http_try(f.http_port[leader], "POST", "/streams/work-1",
                          "Content-Type: application/cloudevents+json\r\n", body, &r),
                 201);
        resp_free(&r);
    }
    /* Members on both followers: some acked, some only taken. */
    int delivered[WORK] = {0};
    bool done[WORK] = {0}, done_before[WORK] = {0};
    CHECK(pull_and_ack(f.http_port[a], false, delivered, done));
    CHECK(pull_and_ack(f.http_port[b], false, delivered, done));
    CHECK(pull_and_ack(f.http_port[a], true, delivered, done));
    memcpy(done_before, done, sizeof done);
    int before = 0;
    for (int k = 0; k < WORK; k++)
        before += done[k];
    CHECK_MSG(before == 20, "%d events acked before the kill, 20 expected", before);
    /* A timer due while there is no leader. */
    char *sched =
        http_body(f.http_port[a], "POST", "/schedules", "Content-Type: application/json\r\n",
                  "{\"delay_ms\":1000,\"stream\":\"timer-1\",\"event\":{\"type\":\"Tick\",\"data\":{}}}", 201);
    char sid[64] = "";
    const char *p = strstr(sched, "\"id\":\"");
    CHECK(p);
    snprintf(sid, sizeof sid, "%.*s", (int)(strchr(p + 6, '"') - (p + 6)), p + 6);
    free(sched);

    srv_stop(&f.node[leader], SIGKILL);
    alive[leader] = false;
    memset(delivered, 0, sizeof delivered);
    /* The members go on, on the nodes left, until every event is done. */
    bool all = false;
    for (int tries = 0; !all && tries < WAIT_S * 10; tries++) {
        pull_and_ack(f.http_port[tries % 2 ? a : b], false, delivered, done);
        all = true;
        for (int k = 0; k < WORK; k++)
            all = all && done[k];
        if (!all) usleep(100000);
    }
    CHECK_MSG(all, "not every event was processed after the leader was killed");
    for (int k = 0; k < WORK; k++)
        CHECK_MSG(!(done_before[k] && delivered[k]), "event w%d was acked before the kill and delivered again", k);

    /* The timer fired on the new leader, once. */
    int next = wait_leader(&f, alive);
    CHECK(next >= 0);
    char path[128];
    snprintf(path, sizeof path, "/schedules/%s", sid);
    bool fired = false;
    for (int tries = 0; !fired && tries < WAIT_S * 10; tries++) {
        resp r;
        fired =
            http_try(f.http_port[next], "GET", path, NULL, NULL, &r) == 200 && strstr(r.body, "\"state\":\"fired\"");
        resp_free(&r);
        if (!fired) usleep(100000);
    }
    CHECK_MSG(fired, "the timer due during the failover did not fire");
    CHECK(wait_same_applied(&f, alive, next));
    for (int i = 0; i < NODES; i++) {
        if (!alive[i]) continue;
        char *events = http_body(f.http_port[i], "GET", "/streams/timer-1", NULL, NULL, 200);
        const char *first = strstr(events, "\"Tick\"");
        CHECK_MSG(first && !strstr(first + 1, "\"Tick\""), "node%d: the timer's event is not there exactly once:\n%s",
                  i, events);
        free(events);
    }
    cluster_down(&f, alive);
}

/* ---- expected revisions through every node, across a leader kill ---- */

#define ROUNDS 24

typedef struct cas_try {
    int port, round, who;
    long long rev;
    int status;
} cas_try;

static void *cas_one(void *arg) {
    cas_try *t = arg;
    char hdr[128], body[256];
    snprintf(hdr, sizeof hdr, "Content-Type: application/cloudevents+json\r\nIf-Match: \"%lld\"\r\n", t->rev);
    snprintf(body, sizeof body,
             "{\"specversion\":\"1.0\",\"id\":\"cas-%d-%d\",\"type\":\"Set\",\"source\":\"t\",\"data\":{}}", t->round,
             t->who);
    resp r;
    t->status = http_try(t->port, "POST", "/streams/cas", hdr, body, &r);
    resp_free(&r);
    return NULL;
}

/* The stream's last revision as `port` has it; -1 if it does not answer. */
static long long last_revision(int port) {
    resp r;
    long long rev = -1;
    if (http_try(port, "GET", "/streams/cas?limit=1000", NULL, NULL, &r) == 200)
        for (const char *p = r.body; (p = strstr(p, "\"revision\":")); p += 11)
            rev = atoll(p + 11);
    resp_free(&r);
    return rev;
}

TEST_T(appends_with_the_same_if_match_through_every_node_land_at_most_once_each_across_a_leader_kill, 300) {
    cluster_fixture f;
    bool alive[NODES];
    int leader = cluster_up_leader(&f, alive);
    long long pos;
    CHECK_EQ(append_one(f.http_port[leader], "cas-start", &pos), 201); /* order-1: warms the path */
    resp r0;
    CHECK_EQ(http_try(f.http_port[leader], "POST", "/streams/cas", "Content-Type: application/cloudevents+json\r\n",
                      "{\"specversion\":\"1.0\",\"id\":\"cas-0\",\"type\":\"Set\",\"source\":\"t\",\"data\":{}}", &r0),
             201);
    resp_free(&r0);
    long long rev = 0;
    int won = 0;
    for (int round = 1; round <= ROUNDS; round++) {
        if (round == ROUNDS / 2) { /* the leader dies between two rounds */
            srv_stop(&f.node[leader], SIGKILL);
            alive[leader] = false;
        }
        cas_try t[NODES];
        pthread_t th[NODES];
        int n = 0;
        for (int i = 0; i < NODES; i++)
            if (alive[i]) {
                t[n] = (cas_try){f.http_port[i], round, i, rev, 0};
                pthread_create(&th[n], NULL, cas_one, &t[n]);
                n++;
            }
        int ok = 0;
        for (int i = 0; i < n; i++) {
            pthread_join(th[i], NULL);
            ok += t[i].status == 201;
        }
        CHECK_MSG(ok <= 1, "round %d: %d appends with If-Match %lld succeeded", round, ok, rev);
        won += ok;
        if (ok) {
            rev++;
        } else { /* all refused or unanswered (the failover): learn the revision again */
            int now = wait_leader(&f, alive);
            CHECK(now >= 0);
            CHECK(wait_same_applied(&f, alive, now));
            rev = last_revision(f.http_port[now]);
        }
    }
    CHECK_MSG(won >= ROUNDS / 2, "only %d rounds of %d had a winner", won, ROUNDS);
    /* Every node holds at most one event per round. */
    int now = wait_leader(&f, alive);
    CHECK(now >= 0 && wait_same_applied(&f, alive, now));
    for (int i = 0; i < NODES; i++) {
        if (!alive[i]) continue;
        char *events = http_body(f.http_port[i], "GET", "/streams/cas?limit=1000", NULL, NULL, 200);
        int per_round[ROUNDS + 1] = {0};
        for (const char *p = events; (p = strstr(p, "\"id\":\"cas-")); p += 10)
            if (strchr(p + 10, '-') && strchr(p + 10, '-') < strchr(p + 10, '"')) {
                int r = atoi(p + 10);
                CHECK_MSG(r >= 1 && r <= ROUNDS && ++per_round[r] == 1, "node%d: round %d landed twice:\n%s", i, r,
                          events);
            }
        free(events);
    }
    cluster_down(&f, alive);
}

/* ---- NATS servers killed: one (writes go on), then everything at once ---- */

TEST_T(writes_go_on_with_a_nats_server_killed_and_every_ack_survives_killing_everything_at_once, 300) {
    cluster_fixture f;
    bool alive[NODES];
    int leader = cluster_up_leader(&f, alive);
    acked ack[3 * APPENDS];
    size_t nack = 0;
    for (int k = 0; k < APPENDS; k++, nack++) {
        snprintf(ack[nack].id, sizeof ack[nack].id, "c%d", k);
        CHECK_EQ(append_one(f.http_port[leader], ack[nack].id, &ack[nack].position), 201);
    }
    /* kill -9 one nats-server: two of three keep JetStream's quorum, and the nodes connected to
       it reconnect to the others */
    kill(f.nats[0], SIGKILL);
    waitpid(f.nats[0], NULL, 0);
    for (int k = 0; k < APPENDS; k++, nack++) {
        snprintf(ack[nack].id, sizeof ack[nack].id, "d%d", k);
        CHECK_MSG(append_anywhere(&f, alive, ack[nack].id, &ack[nack].position),
                  "no node acknowledged %s with a nats-server down", ack[nack].id);
    }
    /* it comes back and catches up */
    f.nats[0] = nats_start(nats_server(), &f, 0);
    nats_wait(&f, 0);
    for (int k = 0; k < APPENDS / 2; k++, nack++) {
        snprintf(ack[nack].id, sizeof ack[nack].id, "e%d", k);
        CHECK_MSG(append_anywhere(&f, alive, ack[nack].id, &ack[nack].position), "%s not acknowledged", ack[nack].id);
    }
    /* Everything killed at once (a machine room losing power is the next step: JetStream 2.9
       syncs its files every 2 minutes, docs/cluster.md), then started again. */
    for (int i = 0; i < NODES; i++)
        kill(f.node[i].pid, SIGKILL), kill(f.nats[i], SIGKILL);
    for (int i = 0; i < NODES; i++) {
        srv_stop(&f.node[i], SIGKILL);
        waitpid(f.nats[i], NULL, 0);
    }
    for (int i = 0; i < NODES; i++)
        f.nats[i] = nats_start(nats_server(), &f, i);
    for (int i = 0; i < NODES; i++)
        nats_wait(&f, i);
    for (int i = 0; i < NODES; i++)
        f.node[i] = node_start(&f, i);
    leader = wait_leader(&f, alive);
    CHECK_MSG(leader >= 0, "no leader after everything was killed and started again");
    check_acked(&f, alive, leader, ack, nack);
    cluster_down(&f, alive);
}

/* ---- a leader paused past its lease ---- */

typedef struct paused_writer {
    cluster_fixture *f;
    int node;
    _Atomic bool stop;
    acked ack[400];
    _Atomic size_t nack;
} paused_writer;

/* Appends through one node, one after another, keeping each acknowledged one. */
static void *write_through(void *arg) {
    paused_writer *w = arg;
    for (int k = 0; !atomic_load(&w->stop) && atomic_load(&w->nack) < (size_t)ARRAY_LEN(w->ack); k++) {
        size_t n = atomic_load(&w->nack);
        snprintf(w->ack[n].id, sizeof w->ack[n].id, "p%d", k);
        if (append_one(w->f->http_port[w->node], w->ack[n].id, &w->ack[n].position) == 201)
            atomic_store(&w->nack, n + 1);
        else
            usleep(20000);
    }
    return NULL;
}

TEST_T(a_leader_paused_past_its_lease_comes_back_a_follower_and_loses_nothing_it_acknowledged, 300) {
    cluster_fixture f;
    bool alive[NODES];
    int leader = cluster_up_leader(&f, alive);
    paused_writer w = {.f = &f, .node = leader};
    pthread_t t;
    pthread_create(&t, NULL, write_through, &w);
    while (atomic_load(&w.nack) < 20)
        usleep(10000);
    /* SIGSTOP: the writer's request in flight waits; the lease runs out; another node leads */
    kill(f.node[leader].pid, SIGSTOP);
    alive[leader] = false;
    int next = wait_leader(&f, alive);
    CHECK_MSG(next >= 0 && next != leader, "no other node took the lease");
    acked more[APPENDS];
    for (int k = 0; k < APPENDS; k++) {
        snprintf(more[k].id, sizeof more[k].id, "q%d", k);
        CHECK_MSG(append_anywhere(&f, alive, more[k].id, &more[k].position), "%s not acknowledged", more[k].id);
    }
    /* SIGCONT: what it had in flight cannot commit (the log moved on), and it follows */
    kill(f.node[leader].pid, SIGCONT);
    alive[leader] = true;
    atomic_store(&w.stop, true);
    pthread_join(t, NULL);
    char follows[48];
    snprintf(follows, sizeof follows, "\"role\":\"follower\"");
    CHECK_MSG(http_wait_body(f.http_port[leader], "/health", follows, WAIT_S), "node%d did not become a follower",
              leader);
    size_t n = atomic_load(&w.nack);
    acked all[ARRAY_LEN(w.ack) + APPENDS];
    memcpy(all, w.ack, n * sizeof *all);
    memcpy(all + n, more, sizeof more);
    check_acked(&f, alive, next, all, n + APPENDS);
    cluster_down(&f, alive);
}

/* ---- JetStream losing its tail: no silent divergence ---- */

/* Every nats-server and node stopped (nodes first, so each writes its hint). */
static void everything_down(cluster_fixture *f) {
    for (int i = 0; i < NODES; i++)
        srv_stop(&f->node[i], SIGTERM);
    for (int i = 0; i < NODES; i++) {
        kill(f->nats[i], SIGTERM);
        waitpid(f->nats[i], NULL, 0);
    }
}

static void everything_up(cluster_fixture *f) {
    for (int i = 0; i < NODES; i++)
        f->nats[i] = nats_start(nats_server(), f, i);
    for (int i = 0; i < NODES; i++)
        nats_wait(f, i);
    for (int i = 0; i < NODES; i++)
        f->node[i] = node_start(f, i);
}

/* JetStream 2.9 fsyncs its file store every 2 minutes, so a power cut of every machine can take
   acknowledged messages out of the stream while each node's log (fsynced) still holds them. Here
   the nats-servers' folders are put back as they were before the last appends, which is what
   such a cut leaves. Every node then refuses, failed, and says why; nobody leads, a write is
   refused and writes nothing, and the nodes' logs keep every acknowledged event. */
TEST_T(nodes_whose_logs_hold_what_jetstream_lost_refuse_to_serve_a_diverged_history_and_say_why, 300) {
    cluster_fixture f;
    bool alive[NODES];
    int leader = cluster_up_leader(&f, alive);
    acked ack[2 * APPENDS / 4];
    size_t nack = 0;
    for (int k = 0; k < APPENDS / 4; k++, nack++) {
        snprintf(ack[nack].id, sizeof ack[nack].id, "kept%d", k);
        CHECK_EQ(append_one(f.http_port[leader], ack[nack].id, &ack[nack].position), 201);
    }
    CHECK(wait_same_applied(&f, alive, leader));
    everything_down(&f);
    char cmd[8192];
    for (int i = 0; i < NODES; i++) {
        snprintf(cmd, sizeof cmd, "cp -a %s/nats%d %s/nats%d.before", test_dir(), i, test_dir(), i);
        CHECK_EQ(system(cmd), 0);
    }
    everything_up(&f);
    leader = wait_leader(&f, alive);
    CHECK_MSG(leader >= 0, "no leader after the restart");
    for (int k = 0; k < APPENDS / 4; k++, nack++) {
        snprintf(ack[nack].id, sizeof ack[nack].id, "lost%d", k);
        CHECK_MSG(append_anywhere(&f, alive, ack[nack].id, &ack[nack].position), "%s not acknowledged", ack[nack].id);
    }
    check_acked(&f, alive, leader, ack, nack);
    everything_down(&f);
    for (int i = 0; i < NODES; i++) { /* the power cut: the stream's last messages are gone */
        snprintf(cmd, sizeof cmd, "rm -rf %s/nats%d && mv %s/nats%d.before %s/nats%d", test_dir(), i, test_dir(), i,
                 test_dir(), i);
        CHECK_EQ(system(cmd), 0);
    }
    everything_up(&f);
    for (int i = 0; i < NODES; i++) {
        resp r = {0};
        for (int tries = 0; tries < WAIT_S * 10; tries++, usleep(100000)) {
            resp_free(&r);
            if (http_try(f.http_port[i], "GET", "/health", NULL, NULL, &r) == 503 &&
                strstr(r.body, "JetStream lost acknowledged messages"))
                break;
        }
        CHECK_MSG(r.status == 503 && strstr(r.body, "JetStream lost acknowledged messages") &&
                      strstr(r.body, "\"role\":\"failed\""),
                  "node%d does not say the stream lost what its log holds: %d %s", i, r.status, r.body);
        resp_free(&r);
    }
    long long pos;
    int st = append_one(f.http_port[0], "after-the-cut", &pos);
    CHECK_MSG(st == 503, "an append after the cut: %d", st);
    /* Each node's own log still has every acknowledged event, and nothing more. */
    for (int i = 0; i < NODES; i++) {
        char *all = http_body(f.http_port[i], "GET", "/all?limit=10000", NULL, NULL, 200);
        for (size_t a = 0; a < nack; a++) {
            char want[96];
            snprintf(want, sizeof want, "\"id\":\"%s\"", ack[a].id);
            CHECK_MSG(strstr(all, want), "node%d lost %s", i, ack[a].id);
        }
        CHECK_MSG(!strstr(all, "after-the-cut"), "node%d wrote after the cut", i);
        free(all);
    }
    /* Without the hint of where they stood, the nodes read the stream from the start; its end
       is older than their logs' newest groups, and they say so the same way. */
    for (int i = 0; i < NODES; i++) {
        srv_stop(&f.node[i], SIGTERM);
        snprintf(cmd, sizeof cmd, "%s/factum%d/cluster.seq", test_dir(), i);
        CHECK_MSG(unlink(cmd) == 0, "no hint file %s", cmd);
        f.node[i] = node_start(&f, i);
    }
    for (int i = 0; i < NODES; i++) {
        resp r = {0};
        for (int tries = 0; tries < WAIT_S * 10; tries++, usleep(100000)) {
            resp_free(&r);
            if (http_try(f.http_port[i], "GET", "/health", NULL, NULL, &r) == 503 &&
                strstr(r.body, "holds groups committed after the last batch"))
                break;
        }
        CHECK_MSG(r.status == 503 && strstr(r.body, "holds groups committed after the last batch"),
                  "node%d without its hint: %d %s", i, r.status, r.body);
        resp_free(&r);
    }
    cluster_down(&f, alive);
}
