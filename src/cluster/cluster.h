/*
 * cluster.h — a node of a Factum cluster on NATS JetStream (docs/cluster.md).
 *
 * cluster_start connects to the NATS servers, creates or binds the JetStream stream that is
 * the cluster's commit log and the KV bucket of the leader lease, sets itself as the store's
 * replicator and starts two threads: the replicator (applies the stream in sequence order; on
 * the leader, publishes the writes it was handed as batches) and the lease keeper. From then on
 * the store writes only what the replicator applies. cluster_stop undoes it all; call it before
 * factum_close.
 */
#ifndef FACTUM_CLUSTER_H
#define FACTUM_CLUSTER_H

#include "../base/base.h"

typedef struct cluster cluster;

typedef struct cluster_config {
    const char *urls;      /* nats://h1:4222,nats://h2:4222,... (comma-separated, at most CLUSTER_MAX_URLS) */
    const char *node;      /* this node's name (letters, digits, '-', '_'; at most 64 bytes) */
    const char *advertise; /* how clients reach this node over HTTP, e.g. http://10.0.0.1:7744 */
    const char *stream;    /* the JetStream stream; NULL: "FACTUM" */
    const char *data_dir;  /* the data folder: the applied-sequence hint (cluster.seq) lives there */
} cluster_config;

#define CLUSTER_MAX_URLS 16
#define CLUSTER_LEASE_TTL_MS 3000   /* the lease key's age limit in the KV bucket */
#define CLUSTER_RENEW_MS 1000       /* the leader renews this often */
#define CLUSTER_LEASE_TRUST_MS 2000 /* a leader stops writing this long after its last renewal */
#define CLUSTER_MAX_QUEUE 65536     /* writes waiting for the leader's next batch */
#define CLUSTER_PIPELINE 16         /* batches the leader has in flight at once */
#define CLUSTER_ACK_WAIT_MS 5000    /* a publish not acknowledged this long: outcome unknown */

/*
 * Connects and starts (retrying NATS and JetStream for up to 30 s while the servers come up).
 * FACTUM_EINVAL for a bad configuration, FACTUM_EUNREACHABLE when NATS or JetStream does not
 * answer, FACTUM_ENOMEM.
 */
int cluster_start(factum_t *db, const cluster_config *cfg, cluster **out, factum_error_t *err);
/* Fails the writes still waiting (FACTUM_ECLOSED), stops the threads, disconnects; the store
   refuses writes from then on (FACTUM_ECLOSED: a local write would not be in the log). NULL: no-op. */
void cluster_stop(cluster *c);

/*
 * Secrets every node needs but the log must not hold (a sink's signing secrets, a PostgreSQL
 * password): kept in the JetStream key-value bucket factum-STREAM-secrets, replicated like the
 * stream. put stores n bytes under name (data NULL: removes it); each calls fn for every one
 * held. 0, or FACTUM_EUNREACHABLE.
 */
int cluster_secret_put(cluster *c, const char *name, const void *data, size_t n, factum_error_t *err);
int cluster_secrets_each(cluster *c, void (*fn)(void *ctx, const char *name, const void *data, size_t n), void *ctx,
                         factum_error_t *err);

enum { CLUSTER_CANDIDATE = 0, CLUSTER_FOLLOWER, CLUSTER_LEADER, CLUSTER_FAILED };

/* Where the node stands, for /health. */
typedef struct cluster_status {
    const char *node;
    int role;                 /* CLUSTER_* */
    char leader[72];          /* the lease holder's name, "" if none is known */
    char leader_url[256];     /* and its HTTP address */
    uint64_t applied_seq;     /* the last stream sequence applied to the local log */
    uint64_t stream_seq;      /* the stream's last sequence as last seen */
    uint64_t leader_terms;    /* times this node took the lease */
    int64_t writing_since_us; /* leader: wall-clock time it had applied the stream to its end and began to
                                 take writes in this term (microseconds since the epoch); 0 otherwise */
    char error[320];          /* CLUSTER_FAILED: why */
} cluster_status;
void cluster_status_get(cluster *c, cluster_status *out);
/* The name of a role: "candidate", "follower", "leader", "failed". */
const char *cluster_role_name(int role);

#endif
