/*
 * lease.h — the cluster node's state, shared by its replicator (cluster.c) and its lease keeper
 * (lease.c); private to src/cluster.
 */
#ifndef FACTUM_CLUSTER_LEASE_H
#define FACTUM_CLUSTER_LEASE_H

#include "cluster.h"

#include <limits.h>
#include <nats/nats.h>
#include <pthread.h>

struct cluster {
    factum_t *db;
    char node[72], advertise[256], stream[40], subject[64], bucket[64], seq_path[PATH_MAX];
    char *urls[CLUSTER_MAX_URLS];
    int nurls;
    natsConnection *nc;
    jsCtx *js;
    kvStore *kv;
    pthread_t repl, lease;
    bool repl_started, lease_started;

    /* Everything below is guarded by mu. cond wakes the replicator (a queued write, stop),
       lease_cond the lease keeper (stop, a deposed leader). */
    pthread_mutex_t mu;
    pthread_cond_t cond, lease_cond;
    bool stopping;
    /* the lease (written by the lease keeper; the replicator sets deposed) */
    int role;                         /* CLUSTER_* */
    char leader[72], leader_url[256]; /* the holder as last read, "" if none */
    uint64_t lease_rev;               /* the key's revision this node holds (leader) */
    uint64_t renewed_ms;              /* monotonic time of the last successful take or renewal */
    uint64_t terms;                   /* leaderships taken; a new one means "catch up first" */
    bool deposed;                     /* a publish met another writer: give the lease up */
    /* writes waiting for the next batch */
    factum_proposal_t **q;
    size_t qn, qcap;
    /* the replicator's place (written by it only) */
    uint64_t applied, stream_seq;
    char error[320]; /* CLUSTER_FAILED: why */
};

uint64_t cluster_now_ms(void);
/* Whether this node may publish now: it holds the lease, renewed recently enough. mu held. */
static inline bool cluster_may_write(const cluster *c, uint64_t now_ms) {
    return c->role == CLUSTER_LEADER && !c->deposed && now_ms - c->renewed_ms < CLUSTER_LEASE_TRUST_MS;
}
/* Appends p to the array *ps of *n (realloc'd). */
void on_proposal_append(factum_proposal_t ***ps, size_t *n, factum_proposal_t *p);
/* The lease keeper thread (lease.c). */
void *lease_main(void *arg);

#endif
