/*
 * lease.c — the leader lease (docs/cluster.md, "The stream, the subjects, the lease").
 *
 * One thread per node. The lease is the key `leader` of a JetStream KV bucket whose entries
 * expire CLUSTER_LEASE_TTL_MS after their last write; its value is "NAME URL". A node that finds
 * no key creates it (only if absent) and leads from that revision; the leader renews every
 * CLUSTER_RENEW_MS with a compare-and-set on the revision it holds. A renewal refused (someone
 * else holds the key now) or none for CLUSTER_LEASE_TRUST_MS ends the leadership; so does a
 * publish the log's fence refused (the replicator sets `deposed`). The lease decides who tries
 * to write; the fence in the log (Nats-Expected-Last-Sequence) is what keeps two writers apart.
 */
#include "lease.h"

#include "../base/log.h"

#include <stdio.h>

#define LEASE_KEY "leader"
#define LEASE_POLL_MS 250 /* a non-leader looks at the key this often */

static void step_down(cluster *c, const char *why) {
    if (c->role == CLUSTER_LEADER) log_msg(LOG_LEVEL_WARN, "cluster node %s is no longer the leader: %s", c->node, why);
    if (c->role != CLUSTER_FAILED) c->role = CLUSTER_CANDIDATE;
    c->deposed = false;
    c->lease_rev = 0;
    if (!strcmp(c->leader, c->node)) c->leader[0] = c->leader_url[0] = 0;
}

/* The leader renews. The mutex is not held. */
static void renew(cluster *c, const char *value, uint64_t rev) {
    uint64_t next = 0;
    natsStatus s = kvStore_Update(&next, c->kv, LEASE_KEY, value, (int)strlen(value), rev);
    pthread_mutex_lock(&c->mu);
    if (c->role == CLUSTER_LEADER && c->lease_rev == rev) {
        if (s == NATS_OK)
            c->lease_rev = next, c->renewed_ms = cluster_now_ms();
        else if (s == NATS_ERR) /* JetStream refused it: the revision moved, someone else holds the key */
            step_down(c, "the lease was taken by another node");
        else if (cluster_now_ms() - c->renewed_ms >= CLUSTER_LEASE_TRUST_MS)
            step_down(c, "the lease could not be renewed in time");
    }
    pthread_mutex_unlock(&c->mu);
}

/* A non-leader reads the key, and takes the lease when there is none. */
static void look(cluster *c, const char *value) {
    kvEntry *e = NULL;
    natsStatus s = kvStore_Get(&e, c->kv, LEASE_KEY);
    if (s == NATS_NOT_FOUND) {
        pthread_mutex_lock(&c->mu);
        bool failed = c->role == CLUSTER_FAILED;
        pthread_mutex_unlock(&c->mu);
        if (failed) return; /* a failed node takes no lease, which would keep the others from leading */
        uint64_t rev = 0;
        s = kvStore_Create(&rev, c->kv, LEASE_KEY, value, (int)strlen(value));
        pthread_mutex_lock(&c->mu);
        if (s == NATS_OK && c->role != CLUSTER_FAILED && !c->stopping) {
            c->role = CLUSTER_LEADER;
            c->lease_rev = rev, c->renewed_ms = cluster_now_ms();
            c->deposed = false;
            c->terms++;
            snprintf(c->leader, sizeof c->leader, "%s", c->node);
            snprintf(c->leader_url, sizeof c->leader_url, "%s", c->advertise);
            log_msg(LOG_LEVEL_INFO, "cluster node %s is the leader (lease revision %llu)", c->node,
                    (unsigned long long)rev);
        }
        pthread_mutex_unlock(&c->mu);
        return;
    }
    pthread_mutex_lock(&c->mu);
    if (s == NATS_OK) {
        const char *v = kvEntry_ValueString(e);
        const char *sp = v ? strchr(v, ' ') : NULL;
        if (sp) {
            snprintf(c->leader, sizeof c->leader, "%.*s", (int)(sp - v), v);
            snprintf(c->leader_url, sizeof c->leader_url, "%s", sp + 1);
        }
        if (c->role != CLUSTER_FAILED) c->role = CLUSTER_FOLLOWER;
    } else if (c->role != CLUSTER_FAILED) {
        c->role = CLUSTER_CANDIDATE; /* NATS does not answer: no leader is known */
    }
    pthread_mutex_unlock(&c->mu);
    kvEntry_Destroy(e);
}

void *lease_main(void *arg) {
    cluster *c = arg;
    char value[sizeof c->node + sizeof c->advertise + 2];
    snprintf(value, sizeof value, "%s %s", c->node, c->advertise);
    for (;;) {
        pthread_mutex_lock(&c->mu);
        if (!c->stopping) {
            int64_t ms = c->role == CLUSTER_LEADER ? CLUSTER_RENEW_MS : LEASE_POLL_MS;
            struct timespec ts = clock_mono_after(ms * 1000);
            pthread_cond_timedwait(&c->lease_cond, &c->mu, &ts);
        }
        bool stop = c->stopping;
        if (c->role == CLUSTER_LEADER && c->deposed) step_down(c, "another node has written to the log");
        int role = c->role;
        uint64_t rev = c->lease_rev;
        pthread_mutex_unlock(&c->mu);
        if (stop) break;
        if (role == CLUSTER_LEADER)
            renew(c, value, rev);
        else if (role != CLUSTER_FAILED)
            look(c, value);
    }
    return NULL;
}
