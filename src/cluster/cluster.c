/*
 * cluster.c — a cluster node's connection to NATS JetStream and its replicator thread
 * (cluster.h; the design in docs/cluster.md). The lease keeper is lease.c.
 *
 * The store hands every write to on_proposal (its replicator hook), which only queues it. The
 * replicator thread owns the node's place in the stream (`applied`): it reads the stream with
 * an ordered consumer from there and applies each message with factum_batch_apply, strictly in
 * sequence order. On the leader, once it has applied the stream up to its last sequence, it
 * takes what is queued, publishes it as one batch with Nats-Expected-Last-Sequence = applied
 * (the fence) and Nats-Msg-Id, and after the acknowledgement applies it to the local log, which
 * completes the writes (their callers answer 201, 412, ...). One batch is in flight at a time.
 * A node that is not the leader fails what is queued with FACTUM_ENOTLEADER, naming the leader.
 * An apply that may have left this log different from the others' (an I/O error, a batch that
 * does not fit) stops the node: it is `failed`, and writes are refused from then on.
 *
 * No silent divergence (docs/cluster.md, "When JetStream loses its tail"): JetStream 2.9 fsyncs
 * its file store every 2 minutes, so a power cut of every machine can take acknowledged
 * messages out of the stream that this node's log (fsynced) still holds. The node looks for
 * that before it follows or leads — it applied a sequence past the stream's end, or its log's
 * newest group is later than the stream's last batch, or the message at the sequence it last
 * applied is not the batch it applied there (the hint file keeps that batch's time). Any of
 * these and it stops, failed, saying why, rather than serve or write a history the others do
 * not have.
 */
#include "lease.h"

#include "../base/log.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

const char *cluster_role_name(int role) {
    static const char *const names[] = {"candidate", "follower", "leader", "failed"};
    return role >= 0 && role <= CLUSTER_FAILED ? names[role] : "unknown";
}

uint64_t cluster_now_ms(void) { return clock_mono_ns() / 1000000; }

/* ---- the queue (any thread) ---- */

static int on_proposal(void *ctx, factum_proposal_t *p) {
    cluster *c = ctx;
    pthread_mutex_lock(&c->mu);
    if (c->qn == c->qcap) {
        size_t cap = c->qcap ? c->qcap * 2 : 256;
        factum_proposal_t **q = realloc(c->q, cap * sizeof *q);
        if (!q) {
            log_msg(LOG_LEVEL_ERROR, "out of memory for the cluster's write queue");
            abort();
        }
        c->q = q, c->qcap = cap;
    }
    c->q[c->qn++] = p;
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->mu);
    return 0;
}

/* After cluster_stop: the store writes nothing more (a local write would not be in the log). */
static int refuse_stopped(void *ctx, factum_proposal_t *p) {
    (void)ctx, (void)p;
    return FACTUM_ECLOSED;
}

/* Takes everything queued (the mutex held). */
size_t cluster_queue_take(cluster *c, factum_proposal_t ***out) {
    size_t n = c->qn;
    *out = c->q;
    c->q = NULL, c->qn = c->qcap = 0;
    return n;
}

/* Puts ps[0..n) back at the front of the queue, before what came meanwhile. */
void cluster_queue_put_back(cluster *c, factum_proposal_t **ps, size_t n) {
    if (!n) return;
    pthread_mutex_lock(&c->mu);
    for (size_t i = 0; i < c->qn; i++)
        on_proposal_append(&ps, &n, c->q[i]);
    free(c->q);
    c->q = ps, c->qn = c->qcap = n;
    pthread_mutex_unlock(&c->mu);
}

void on_proposal_append(factum_proposal_t ***ps, size_t *n, factum_proposal_t *p) {
    factum_proposal_t **a = realloc(*ps, (*n + 1) * sizeof *a);
    if (!a) {
        log_msg(LOG_LEVEL_ERROR, "out of memory for the cluster's write queue");
        abort();
    }
    a[(*n)++] = p;
    *ps = a;
}

static void fail_list(factum_proposal_t **ps, size_t n, int code, const char *msg) {
    for (size_t i = 0; i < n; i++)
        factum_proposal_fail(ps[i], code, msg);
}

/* Fails everything queued: the node is not the leader (or is failed or stopping). */
static void refuse_queued(cluster *c) {
    pthread_mutex_lock(&c->mu);
    if (!c->qn) {
        pthread_mutex_unlock(&c->mu);
        return;
    }
    factum_proposal_t **ps;
    size_t n = cluster_queue_take(c, &ps);
    int code = c->stopping ? FACTUM_ECLOSED : c->role == CLUSTER_FAILED ? FACTUM_EFAILED : FACTUM_ENOTLEADER;
    char msg[512];
    if (c->stopping)
        snprintf(msg, sizeof msg, "the node is stopping");
    else if (c->role == CLUSTER_FAILED)
        snprintf(msg, sizeof msg, "this cluster node has stopped applying the log: %s", c->error);
    else if (c->leader[0] && strcmp(c->leader, c->node))
        snprintf(msg, sizeof msg, "not the cluster leader; the leader is %s at %s", c->leader, c->leader_url);
    else
        snprintf(msg, sizeof msg, "not the cluster leader; no leader is known yet, retry shortly");
    pthread_mutex_unlock(&c->mu);
    fail_list(ps, n, code, msg);
    free(ps);
}

/* ---- following the stream (the replicator thread) ---- */

static void set_failed(cluster *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_failed(cluster *c, const char *fmt, ...) {
    pthread_mutex_lock(&c->mu);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->error, sizeof c->error, fmt, ap);
    va_end(ap);
    c->role = CLUSTER_FAILED;
    pthread_mutex_unlock(&c->mu);
    log_msg(LOG_LEVEL_ERROR, "cluster node %s stops applying: %s", c->node, c->error);
}

static void set_applied(cluster *c, uint64_t seq, uint64_t pending) {
    pthread_mutex_lock(&c->mu);
    c->applied = seq;
    if (seq + pending > c->stream_seq) c->stream_seq = seq + pending;
    pthread_mutex_unlock(&c->mu);
}

int cluster_apply(cluster *c, const cluster_msg *m, size_t k, uint64_t pending) {
    if (!k) return 0;
    factum_batch_t b[CLUSTER_APPLY_MAX];
    for (size_t i = 0; i < k; i++)
        b[i] = (factum_batch_t){m[i].data, m[i].len, m[i].ps, m[i].n};
    factum_error_t err;
    size_t done = 0;
    /* One commit group, one fdatasync, for all k (the writer takes them together). */
    int rc = factum_batch_apply_many(c->db, b, k, &done, &c->applied_time, &err);
    if (done) set_applied(c, m[done - 1].seq, pending + (k - done));
    if (rc) {
        set_failed(c, "applying stream sequence %" PRIu64 ": %s", m[done].seq, err.message);
        return rc;
    }
    return 0;
}

/* An ordered consumer from applied + 1. */
static int subscribe(cluster *c, natsSubscription **sub) {
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = c->stream;
    so.Ordered = true;
    so.Config.DeliverPolicy = js_DeliverByStartSequence;
    so.Config.OptStartSeq = c->applied + 1;
    jsErrCode jerr = 0;
    natsStatus s = js_SubscribeSync(sub, c->js, c->subject, NULL, &so, &jerr);
    if (s != NATS_OK) {
        *sub = NULL;
        return -1;
    }
    return 0;
}

/* Takes the messages the subscription has (waiting up to timeout_ms for the first; at most
   CLUSTER_APPLY_MAX) and applies the ones that come next, together: a follower that fell behind
   while its log synced catches up with one fdatasync. 1 applied or skipped, 0 nothing came, -1
   the node failed or must resubscribe. */
static int follow_one(cluster *c, natsSubscription *sub, int64_t timeout_ms) {
    natsMsg *msgs[CLUSTER_APPLY_MAX];
    cluster_msg todo[CLUSTER_APPLY_MAX];
    size_t nm = 0, k = 0;
    uint64_t next = c->applied + 1, pending = 0;
    int r = 1;
    while (nm < CLUSTER_APPLY_MAX) {
        natsMsg *m = NULL;
        natsStatus s = natsSubscription_NextMsg(&m, sub, nm ? 0 : timeout_ms);
        if (s == NATS_TIMEOUT) {
            if (!nm) r = 0;
            break;
        }
        if (s != NATS_OK) {
            r = -1;
            break;
        }
        msgs[nm++] = m;
        jsMsgMetaData *meta = NULL;
        if (natsMsg_GetMetaData(&meta, m) != NATS_OK) {
            r = -1;
            break;
        }
        uint64_t seq = meta->Sequence.Stream;
        pending = meta->NumPending;
        jsMsgMetaData_Destroy(meta);
        if (seq < next) continue; /* applied already (the leader's own batches come back this way) */
        if (seq != next) {
            cluster_apply(c, todo, k, pending); /* what came before it first */
            for (size_t i = 0; i < k; i++)
                free(todo[i].ps);
            k = 0;
            set_failed(c, "stream sequence %" PRIu64 " follows %" PRIu64 ": messages are missing from the stream", seq,
                       next - 1);
            r = -1;
            break;
        }
        cluster_msg *t = &todo[k];
        *t = (cluster_msg){seq, natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), NULL, 0};
        if (!pipe_claim(c, seq, t->data, t->len, &t->ps, &t->n)) {
            r = -1; /* someone else's message where ours was to go: resubscribe after what came before */
            break;
        }
        k++, next++;
        if (!pending) break; /* nothing more is on its way now */
    }
    if (k && cluster_apply(c, todo, k, pending)) r = -1;
    for (size_t i = 0; i < k; i++)
        free(todo[i].ps);
    for (size_t i = 0; i < nm; i++)
        natsMsg_Destroy(msgs[i]);
    return r;
}

/* The stream's last sequence now. */
static int stream_last(cluster *c, uint64_t *last) {
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    if (js_GetStreamInfo(&si, c->js, c->stream, NULL, &jerr) != NATS_OK) return -1;
    *last = si->State.LastSeq;
    jsStreamInfo_Destroy(si);
    pthread_mutex_lock(&c->mu);
    if (*last > c->stream_seq) c->stream_seq = *last;
    pthread_mutex_unlock(&c->mu);
    return 0;
}

#define LOST_TAIL "JetStream lost acknowledged messages this node holds (its file store fsyncs every 2 minutes)"
#define REFUSING "refusing to serve a history the other nodes do not have (docs/cluster.md)"

/* The batch time of the stream's message `seq` into *t, or -1 in *t (err says why) when the
   message is not a batch. 0, or -1 when the message could not be fetched. */
static int message_time(cluster *c, uint64_t seq, int64_t *t, factum_error_t *err) {
    natsMsg *m = NULL;
    jsErrCode jerr = 0;
    uint64_t first;
    if (js_GetMsg(&m, c->js, c->stream, seq, NULL, &jerr) != NATS_OK) return -1;
    if (factum_batch_info(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), &first, t, err)) *t = -1;
    natsMsg_Destroy(m);
    return 0;
}

/* Whether the stream still holds everything this node's log does (see the top): 0, or the node
   is failed. Asked with the stream's last sequence `last` once the node has applied up to it
   (or believes it applied more). -1 also when the stream could not be asked: try again. */
static int check_tail(cluster *c, uint64_t last) {
    if (c->applied > last) {
        set_failed(c,
                   "this node applied stream sequence %" PRIu64 " but the stream '%s' ends at %" PRIu64 ": " LOST_TAIL
                   "; " REFUSING,
                   c->applied, c->stream, last);
        return -1;
    }
    int64_t mine = factum_commit_time(c->db), theirs = 0;
    factum_error_t err;
    if (!mine) return 0;
    if (last && message_time(c, last, &theirs, &err)) return -1;
    if (theirs < 0) {
        set_failed(c, "stream sequence %" PRIu64 " does not hold a batch: %s", last, err.message);
        return -1;
    }
    if (mine > theirs) {
        set_failed(c,
                   "this node's log holds groups committed after the last batch of the stream '%s' (sequence %" PRIu64
                   "): " LOST_TAIL "; " REFUSING,
                   c->stream, last);
        return -1;
    }
    return 0;
}

/* At the start: the stream's message at the sequence this node last applied is still the batch
   it applied (same time). 0, or the node is failed; -1 also when the stream could not be asked. */
static int check_place(cluster *c) {
    if (!c->applied || !c->applied_time) return 0;
    int64_t t = 0;
    uint64_t last;
    factum_error_t err;
    if (message_time(c, c->applied, &t, &err) && (stream_last(c, &last) || last >= c->applied))
        return -1; /* not a missing message: try again */
    if (t == c->applied_time) return 0;
    set_failed(c,
               "the stream's message at sequence %" PRIu64 " is not the batch this node applied there: " LOST_TAIL
               "%s; " REFUSING,
               c->applied, t ? " and another node wrote new ones in their place" : "");
    return -1;
}

/* ---- the hint file: where to start reading after a restart (docs/cluster.md) ---- */

static void hint_read(cluster *c) {
    FILE *f = fopen(c->seq_path, "r");
    uint64_t seq = 0, head = 0;
    int64_t t = 0;
    int got = f ? fscanf(f, "%" SCNu64 " %" SCNu64 " %" SCNd64, &seq, &head, &t) : 0;
    if (got >= 2 && head <= factum_head_position(c->db))
        c->applied = seq, c->applied_time = got == 3 ? t : 0; /* else from the start: what the log has is skipped */
    if (f) fclose(f);
}

static void hint_write(cluster *c) {
    char tmp[PATH_MAX + 8];
    snprintf(tmp, sizeof tmp, "%s.tmp", c->seq_path);
    FILE *f = fopen(tmp, "w");
    if (!f) return;
    fprintf(f, "%" PRIu64 " %" PRIu64 " %" PRId64 "\n", c->applied, factum_head_position(c->db), c->applied_time);
    if (fclose(f) == 0) rename(tmp, c->seq_path);
}

/* ---- the replicator thread ---- */

static void wait_ms(cluster *c, int64_t ms, bool for_queue) {
    struct timespec ts = clock_mono_after(ms * 1000);
    pthread_mutex_lock(&c->mu);
    if (!c->stopping && !(for_queue && c->qn)) pthread_cond_timedwait(&c->cond, &c->mu, &ts);
    pthread_mutex_unlock(&c->mu);
}

/* Whether this node takes writes now (it leads and has applied the stream to its end): /health's
   writing_since, the moment a failover ends. */
static void set_writing(cluster *c, bool on) {
    pthread_mutex_lock(&c->mu);
    if (!on)
        c->writing_since_us = 0;
    else if (!c->writing_since_us)
        c->writing_since_us = clock_realtime_us();
    pthread_mutex_unlock(&c->mu);
}

static void *repl_main(void *arg) {
    cluster *c = arg;
    natsSubscription *sub = NULL;
    uint64_t caught_up_term = 0, hinted = c->applied, hinted_ms = 0;
    bool tail_checked = false, place_checked = false; /* since the start: the stream holds all this log does */
    for (;;) {
        pthread_mutex_lock(&c->mu);
        bool stop = c->stopping, failed = c->role == CLUSTER_FAILED;
        bool leader = cluster_may_write(c, cluster_now_ms());
        uint64_t term = c->terms;
        pthread_mutex_unlock(&c->mu);
        if (stop) break;
        if (failed) {
            factum_set_leads(c->db, false);
            set_writing(c, false);
            pipe_stop(c, "this cluster node has stopped applying the log; the outcome of this write is unknown");
            refuse_queued(c);
            wait_ms(c, 200, false);
            continue;
        }
        if (!sub && subscribe(c, &sub)) {
            refuse_queued(c);
            wait_ms(c, 200, false);
            continue;
        }
        if (!place_checked && check_place(c)) {
            refuse_queued(c);
            wait_ms(c, 200, false);
            continue;
        }
        place_checked = true;
        int r;
        if (!leader) {
            factum_set_leads(c->db, false);
            set_writing(c, false);
            caught_up_term = 0;
            pipe_stop(c, "this node lost the cluster's lease; the outcome of this write is unknown: a retry with the "
                         "same event ids is safe");
            refuse_queued(c);
            r = follow_one(c, sub, 50);
            uint64_t last;
            if (r == 0 && !tail_checked && !stream_last(c, &last) && c->applied >= last) /* idle: caught up */
                tail_checked = !check_tail(c, last);
        } else if (caught_up_term != term) {
            /* A new term: apply everything up to the stream's end before writing. */
            set_writing(c, false);
            uint64_t last;
            if (stream_last(c, &last)) {
                wait_ms(c, 100, false);
                continue;
            }
            r = 1;
            while (r >= 0 && c->applied < last)
                r = follow_one(c, sub, 200);
            if (r >= 0 && c->applied >= last && check_tail(c, last)) {
                wait_ms(c, 100, false);
                continue;
            }
            if (r >= 0 && c->applied >= last) {
                tail_checked = true;
                caught_up_term = term;
                set_writing(c, true);
                factum_set_leads(c->db, true); /* the engines above the log may act now */
            }
        } else {
            while ((r = follow_one(c, sub, 0)) == 1) { /* the stream first: our batches, or someone else's */
            }
            if (r == 0 && !pipe_step(c)) {
                caught_up_term = 0;
                factum_set_leads(c->db, false);
                set_writing(c, false);
            }
        }
        if (r < 0 && sub) { /* resubscribe from where this node stands */
            natsSubscription_Destroy(sub);
            sub = NULL;
        }
        uint64_t now = cluster_now_ms();
        if (c->applied != hinted && now - hinted_ms >= 100) {
            hint_write(c);
            hinted = c->applied, hinted_ms = now;
        }
    }
    pipe_stop(c, "the node is stopping; the outcome of this write is unknown: a retry with the same event ids is safe");
    refuse_queued(c);
    if (c->applied != hinted) hint_write(c);
    natsSubscription_Destroy(sub);
    return NULL;
}

/* ---- start and stop ---- */

static bool name_ok(const char *s, size_t max) {
    size_t n = strlen(s);
    if (!n || n > max) return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9') ||
              s[i] == '-' || s[i] == '_'))
            return false;
    return true;
}

static int parse_urls(cluster *c, const char *urls, factum_error_t *err) {
    char *copy = strdup(urls), *save = NULL;
    if (!copy) return err_set(err, FACTUM_ENOMEM, "out of memory");
    for (char *u = strtok_r(copy, ",", &save); u; u = strtok_r(NULL, ",", &save)) {
        if (c->nurls == CLUSTER_MAX_URLS) {
            free(copy);
            return err_set(err, FACTUM_EINVAL, "--cluster takes at most %d URLs", CLUSTER_MAX_URLS);
        }
        if (strncmp(u, "nats://", 7) || !u[7]) {
            free(copy);
            return err_set(err, FACTUM_EINVAL, "--cluster wants nats://HOST:PORT URLs separated by commas (got '%s')",
                           u);
        }
        c->urls[c->nurls++] = strdup(u);
    }
    free(copy);
    if (!c->nurls) return err_set(err, FACTUM_EINVAL, "--cluster wants at least one nats:// URL");
    return 0;
}

static int connect_nats(cluster *c, uint64_t deadline_ms, factum_error_t *err) {
    natsOptions *o = NULL;
    natsStatus s = natsOptions_Create(&o);
    if (s == NATS_OK) s = natsOptions_SetServers(o, (const char **)c->urls, c->nurls);
    if (s == NATS_OK) s = natsOptions_SetName(o, c->node);
    if (s == NATS_OK) s = natsOptions_SetMaxReconnect(o, -1);
    if (s == NATS_OK) s = natsOptions_SetReconnectWait(o, 100);
    if (s == NATS_OK) s = natsOptions_SetTimeout(o, 2000);
    while (s == NATS_OK && (s = natsConnection_Connect(&c->nc, o)) != NATS_OK && cluster_now_ms() < deadline_ms)
        s = NATS_OK, usleep(200000);
    natsOptions_Destroy(o);
    if (s != NATS_OK)
        return err_set(err, FACTUM_EUNREACHABLE, "cannot connect to NATS at %s: %s", c->urls[0], natsStatus_GetText(s));
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = 5000;
    if (natsConnection_JetStream(&c->js, c->nc, &jo) != NATS_OK || pipe_init(c))
        return err_set(err, FACTUM_ENOMEM, "out of memory");
    return 0;
}

/* A key-value bucket (ttl_ns 0: keys do not age), made if it is not there. */
static int ensure_bucket(cluster *c, kvStore **kv, const char *bucket, int64_t ttl_ns, int replicas,
                         uint64_t deadline_ms, factum_error_t *err) {
    for (;;) {
        natsStatus s = js_KeyValue(kv, c->js, bucket);
        if (s != NATS_OK) {
            kvConfig kc;
            kvConfig_Init(&kc);
            kc.Bucket = bucket;
            kc.History = 1;
            kc.TTL = ttl_ns; /* nanoseconds, in libnats 3.4 */
            kc.StorageType = js_FileStorage;
            kc.Replicas = replicas;
            s = js_CreateKeyValue(kv, c->js, &kc);
        }
        if (s == NATS_OK) return 0;
        if (cluster_now_ms() >= deadline_ms)
            return err_set(err, FACTUM_EUNREACHABLE, "JetStream key-value bucket %s: %s", bucket,
                           nats_GetLastError(NULL) ? nats_GetLastError(NULL) : natsStatus_GetText(s));
        usleep(250000);
    }
}

/* The stream and the buckets (the lease, the secrets), made by whichever node comes first (the same settings from
   every node, so a second create is answered as the first). */
static int ensure_stream(cluster *c, uint64_t deadline_ms, factum_error_t *err) {
    int replicas = c->nurls < 3 ? c->nurls : 3;
    const char *subjects[] = {c->subject};
    for (;;) {
        jsStreamInfo *si = NULL;
        jsErrCode jerr = 0;
        natsStatus s = js_GetStreamInfo(&si, c->js, c->stream, NULL, &jerr);
        if (s == NATS_OK) {
            jsStreamInfo_Destroy(si);
            break;
        }
        if (jerr == JSStreamNotFoundErr) {
            jsStreamConfig sc;
            jsStreamConfig_Init(&sc);
            sc.Name = c->stream;
            sc.Subjects = subjects;
            sc.SubjectsLen = 1;
            sc.Storage = js_FileStorage;
            sc.Replicas = replicas;
            s = js_AddStream(&si, c->js, &sc, NULL, &jerr);
            jsStreamInfo_Destroy(si);
            if (s == NATS_OK) break;
        }
        if (cluster_now_ms() >= deadline_ms)
            return err_set(err, FACTUM_EUNREACHABLE, "JetStream stream %s: %s (error %d)", c->stream,
                           nats_GetLastError(NULL) ? nats_GetLastError(NULL) : natsStatus_GetText(s), (int)jerr);
        usleep(250000);
    }
    int rc = ensure_bucket(c, &c->kv, c->bucket, (int64_t)CLUSTER_LEASE_TTL_MS * 1000000, replicas, deadline_ms, err);
    return rc ? rc : ensure_bucket(c, &c->skv, c->sbucket, 0, replicas, deadline_ms, err);
}

int cluster_start(factum_t *db, const cluster_config *cfg, cluster **out, factum_error_t *err) {
    *out = NULL;
    const char *stream = cfg->stream ? cfg->stream : "FACTUM";
    if (!cfg->node || !name_ok(cfg->node, 64))
        return err_set(err, FACTUM_EINVAL, "--node wants a name of 1 to 64 letters, digits, '-' or '_'");
    if (!name_ok(stream, 32))
        return err_set(err, FACTUM_EINVAL, "the cluster's stream name is 1 to 32 letters, digits, '-' or '_'");
    if (!cfg->advertise || strlen(cfg->advertise) >= sizeof(((cluster *)0)->advertise))
        return err_set(err, FACTUM_EINVAL, "the node's HTTP address is missing or too long");
    cluster *c = calloc(1, sizeof *c);
    if (!c) return err_set(err, FACTUM_ENOMEM, "out of memory");
    c->db = db;
    snprintf(c->node, sizeof c->node, "%s", cfg->node);
    snprintf(c->advertise, sizeof c->advertise, "%s", cfg->advertise);
    snprintf(c->stream, sizeof c->stream, "%s", stream);
    snprintf(c->subject, sizeof c->subject, "factum.%s.log", stream);
    snprintf(c->bucket, sizeof c->bucket, "factum-%s-leader", stream);
    snprintf(c->sbucket, sizeof c->sbucket, "factum-%s-secrets", stream);
    snprintf(c->seq_path, sizeof c->seq_path, "%s/cluster.seq", cfg->data_dir);
    pthread_mutex_init(&c->mu, NULL);
    clock_mono_cond_init(&c->cond);
    clock_mono_cond_init(&c->lease_cond);
    uint64_t deadline = cluster_now_ms() + 30000;
    int rc = parse_urls(c, cfg->urls ? cfg->urls : "", err);
    if (!rc) rc = connect_nats(c, deadline, err);
    if (!rc) rc = ensure_stream(c, deadline, err);
    if (rc) {
        cluster_stop(c);
        return rc;
    }
    hint_read(c);
    factum_set_leads(db, false); /* until this node holds the lease and has read the log to its end */
    factum_set_replicator(db, on_proposal, c);
    if (pthread_create(&c->repl, NULL, repl_main, c)) {
        cluster_stop(c);
        return err_set(err, FACTUM_ENOMEM, "cannot start the replicator thread");
    }
    c->repl_started = true;
    if (pthread_create(&c->lease, NULL, lease_main, c)) {
        cluster_stop(c);
        return err_set(err, FACTUM_ENOMEM, "cannot start the lease thread");
    }
    c->lease_started = true;
    log_msg(LOG_LEVEL_INFO, "cluster node %s on stream %s (%d NATS URLs), from sequence %" PRIu64 "", c->node,
            c->stream, c->nurls, c->applied);
    *out = c;
    return 0;
}

void cluster_stop(cluster *c) {
    if (!c) return;
    pthread_mutex_lock(&c->mu);
    c->stopping = true;
    pthread_cond_broadcast(&c->cond);
    pthread_cond_broadcast(&c->lease_cond);
    pthread_mutex_unlock(&c->mu);
    if (c->repl_started) pthread_join(c->repl, NULL);
    if (c->lease_started) pthread_join(c->lease, NULL);
    factum_set_replicator(c->db, refuse_stopped, NULL);
    factum_set_leads(c->db, false);
    refuse_queued(c); /* a write queued after the thread's last look */
    if (c->kv) kvStore_Destroy(c->kv);
    if (c->skv) kvStore_Destroy(c->skv);
    if (c->js) jsCtx_Destroy(c->js);
    if (c->pjs) jsCtx_Destroy(c->pjs);
    if (c->nc) {
        natsConnection_Close(c->nc);
        natsConnection_Destroy(c->nc);
    }
    for (int i = 0; i < c->nurls; i++)
        free(c->urls[i]);
    free(c->q);
    pthread_cond_destroy(&c->cond);
    pthread_cond_destroy(&c->lease_cond);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

/* ---- secrets ---- */

/* A bucket's key for name: "s" and its bytes in hex (a name may hold what a key may not). */
static bool secret_key(const char *name, char *out, size_t cap) {
    size_t n = strlen(name);
    if (!n || 2 * n + 2 > cap) return false;
    out[0] = 's';
    for (size_t i = 0; i < n; i++)
        snprintf(out + 1 + 2 * i, 3, "%02x", (unsigned char)name[i]);
    return true;
}

int cluster_secret_put(cluster *c, const char *name, const void *data, size_t n, factum_error_t *err) {
    char key[1024];
    if (!secret_key(name, key, sizeof key)) return err_set(err, FACTUM_EINVAL, "a secret's name is too long");
    uint64_t rev;
    natsStatus s = data ? kvStore_Put(&rev, c->skv, key, data, (int)n) : kvStore_Purge(c->skv, key, NULL);
    if (s == NATS_NOT_FOUND && !data) return 0;
    return s == NATS_OK ? 0
                        : err_set(err, FACTUM_EUNREACHABLE, "the cluster's secrets bucket %s: %s", c->sbucket,
                                  nats_GetLastError(NULL) ? nats_GetLastError(NULL) : natsStatus_GetText(s));
}

int cluster_secrets_each(cluster *c, void (*fn)(void *ctx, const char *name, const void *data, size_t n), void *ctx,
                         factum_error_t *err) {
    kvKeysList keys = {0};
    kvWatchOptions o;
    kvWatchOptions_Init(&o);
    o.Timeout = 5000;
    natsStatus s = kvStore_Keys(&keys, c->skv, &o);
    if (s == NATS_NOT_FOUND) return 0; /* none yet */
    if (s != NATS_OK)
        return err_set(err, FACTUM_EUNREACHABLE, "the cluster's secrets bucket %s: %s", c->sbucket,
                       nats_GetLastError(NULL) ? nats_GetLastError(NULL) : natsStatus_GetText(s));
    for (int i = 0; i < keys.Count; i++) {
        const char *k = keys.Keys[i];
        size_t len = strlen(k);
        char name[512];
        if (k[0] != 's' || len % 2 == 0 || (len - 1) / 2 >= sizeof name) continue;
        bool ok = true;
        for (size_t j = 0; j < (len - 1) / 2 && ok; j++) {
            unsigned v;
            ok = sscanf(k + 1 + 2 * j, "%2x", &v) == 1 && v;
            name[j] = (char)v;
        }
        name[(len - 1) / 2] = 0;
        kvEntry *e = NULL;
        if (ok && kvStore_Get(&e, c->skv, k) == NATS_OK) fn(ctx, name, kvEntry_Value(e), (size_t)kvEntry_ValueLen(e));
        kvEntry_Destroy(e);
    }
    kvKeysList_Destroy(&keys);
    return 0;
}

void cluster_status_get(cluster *c, cluster_status *out) {
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&c->mu);
    out->node = c->node;
    out->role = c->role == CLUSTER_LEADER && !cluster_may_write(c, cluster_now_ms()) ? CLUSTER_CANDIDATE : c->role;
    snprintf(out->leader, sizeof out->leader, "%s", c->leader);
    snprintf(out->leader_url, sizeof out->leader_url, "%s", c->leader_url);
    out->applied_seq = c->applied;
    out->stream_seq = c->stream_seq > c->applied ? c->stream_seq : c->applied;
    out->leader_terms = c->terms;
    out->writing_since_us = out->role == CLUSTER_LEADER ? c->writing_since_us : 0;
    snprintf(out->error, sizeof out->error, "%s", c->error);
    pthread_mutex_unlock(&c->mu);
}
