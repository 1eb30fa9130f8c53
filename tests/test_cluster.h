/*
 * test_cluster.h — the cluster tests' fixture (test_cluster_fixture.c): three `nats-server`
 * processes as one JetStream cluster and three `factum serve --cluster` nodes on free loopback
 * ports, and the waits and checks the cluster tests share (docs/cluster.md).
 */
#ifndef FACTUM_TEST_CLUSTER_H
#define FACTUM_TEST_CLUSTER_H

#include "test_server.h"

#include <sys/types.h>

#define NODES 3
#define WAIT_S 60 /* the most any wait lasts before a test gives up */

typedef struct cluster_fixture {
    pid_t nats[NODES];
    int nats_port[NODES], route_port[NODES], http_port[NODES];
    srv node[NODES];
    char urls[512];
} cluster_fixture;

/* An acknowledged append: its event id and the position its 201 named. */
typedef struct acked {
    char id[32];
    long long position;
} acked;

/* The nats-server binary, or NULL when it is not installed. */
const char *nats_server(void);
/* Starts nats-server i (its folder and log in test_dir()); nats_wait waits until it accepts
   connections. */
pid_t nats_start(const char *bin, cluster_fixture *f, int i);
void nats_wait(cluster_fixture *f, int i);
/* Starts node i (folder factumI, log factumI.log in test_dir()). */
srv node_start(cluster_fixture *f, int i);
/* Three nats-server and three nodes on free ports (skips the test without nats-server); down
   stops the live nodes and every nats-server. */
void cluster_up(cluster_fixture *f, bool *alive);
void cluster_down(cluster_fixture *f, const bool *alive);
/* cluster_up, then the index of the node that leads (fails the test if none does within WAIT_S). */
int cluster_up_leader(cluster_fixture *f, bool *alive);
/* A number from a /health body, e.g. "applied_sequence"; -1 if absent. */
long long health_num(const char *body, const char *key);
/* The node that says it leads (among the live ones), or -1 within WAIT_S. */
int wait_leader(cluster_fixture *f, const bool *alive);
/* Waits until every live node has applied the same sequence as `leader`. */
bool wait_same_applied(cluster_fixture *f, const bool *alive, int leader);
/* Waits until `node` has seen who leads. */
void knows_leader(cluster_fixture *f, int node, int leader);
/* POSTs one event (a CloudEvent's JSON) to `stream` through `port`: its status, and on 201 or
   200 (an idempotent repeat) its position. append_one posts event `id` to order-1. */
int post_event(int port, const char *stream, const char *body, long long *position);
int append_one(int port, const char *id, long long *position);
/* The same through any live node until one acknowledges it (give the event an id: a retry is then
   idempotent); false if none did within WAIT_S. */
bool post_anywhere(cluster_fixture *f, const bool *alive, const char *stream, const char *body, long long *position);
bool append_anywhere(cluster_fixture *f, const bool *alive, const char *id, long long *position);
/* Every live node has caught up with `leader` and holds the same log, and every acknowledged
   append is in it once, at the position its 201 named. */
void check_acked(cluster_fixture *f, const bool *alive, int leader, const acked *ack, size_t nack);

#endif
