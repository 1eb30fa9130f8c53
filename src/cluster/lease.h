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

/* A batch the leader published and has not applied yet (publish.c). */
enum { PIPE_WAITING = 0, PIPE_STORED, PIPE_REFUSED };
typedef struct inflight {
    natsMsg *m;   /* the library's while waiting; compared by address only */
    uint8_t *msg; /* the batch (the message's body) */
    size_t len;
    factum_proposal_t **ps; /* the writes it holds (malloc'd) */
    size_t n;
    uint64_t seq;    /* the stream sequence it must get */
    int64_t time_us; /* its commit time: the next batch's is later */
    uint64_t sent_ms;
    int state;   /* PIPE_*, set by the acknowledgement (mu) */
    bool fenced; /* PIPE_REFUSED by Nats-Expected-Last-Sequence */
    char why[200];
} inflight;

struct cluster {
    factum_t *db;
    char node[72], advertise[256], stream[40], subject[64], bucket[64], sbucket[64], seq_path[PATH_MAX];
    char *urls[CLUSTER_MAX_URLS];
    int nurls;
    natsConnection *nc;
    jsCtx *js;
    jsCtx *pjs;   /* the leader's asynchronous publishes, acknowledged to on_ack (publish.c) */
    kvStore *kv;  /* the lease */
    kvStore *skv; /* the secrets (cluster_secret_put) */
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
    int64_t applied_time;     /* the batch time of the message at `applied` (0: not known) */
    int64_t writing_since_us; /* when this node began to write in its term (wall clock; 0: it does not) */
    /* the batches in flight, oldest first (a ring; its extent changes in the replicator only) */
    inflight pipe[CLUSTER_PIPELINE];
    int pipe_head, pipe_n;
    char error[320]; /* CLUSTER_FAILED: why */
};

uint64_t cluster_now_ms(void);
/* Whether this node may publish now: it holds the lease, renewed recently enough. mu held. */
static inline bool cluster_may_write(const cluster *c, uint64_t now_ms) {
    return c->role == CLUSTER_LEADER && !c->deposed && now_ms - c->renewed_ms < CLUSTER_LEASE_TRUST_MS;
}
/* Appends p to the array *ps of *n (realloc'd). */
void on_proposal_append(factum_proposal_t ***ps, size_t *n, factum_proposal_t *p);
/* The write queue (cluster.c): takes everything (mu held); puts ps[0..n) back in front (mu not held). */
size_t cluster_queue_take(cluster *c, factum_proposal_t ***out);
void cluster_queue_put_back(cluster *c, factum_proposal_t **ps, size_t n);
/* Stream messages to apply: each its sequence, bytes and (the leader's own) proposals. */
#define CLUSTER_APPLY_MAX 64 /* messages applied as one commit group */
typedef struct cluster_msg {
    uint64_t seq;
    const void *data;
    size_t len;
    factum_proposal_t **ps;
    size_t n;
} cluster_msg;
/* Applies m[0..k) (consecutive sequences) to the local log as one commit group, completing their
   proposals (the replicator); pending: messages the stream holds after them. 0, or the node is
   failed (those before the failure are applied). */
int cluster_apply(cluster *c, const cluster_msg *m, size_t k, uint64_t pending);

/* The leader's pipeline (publish.c; the replicator thread only). pipe_init makes its JetStream
   context (0 or -1). pipe_step publishes what is queued, applies what was acknowledged, waits a
   little; false when the pipeline stopped (the node must learn the stream's end again). Before
   the stream's message `seq` is applied, pipe_claim gives the writes it holds when it is the
   oldest batch in flight (*ps malloc'd, the caller frees it; NULL when it is not ours); false
   when it is someone else's message where ours was to go (the pipeline stopped). pipe_stop
   fails everything in flight with `why` (outcome unknown). */
int pipe_init(cluster *c);
bool pipe_step(cluster *c);
bool pipe_claim(cluster *c, uint64_t seq, const void *data, size_t len, factum_proposal_t ***ps, size_t *n);
void pipe_stop(cluster *c, const char *why);
/* The lease keeper thread (lease.c). */
void *lease_main(void *arg);

#endif
