/*
 * publish.c — the leader's pipeline of publishes (docs/cluster.md, "Publishing on the leader").
 *
 * Runs in the replicator thread only. While this node leads and has applied the stream to its
 * end, it takes what is queued, encodes it as one batch and publishes it asynchronously with
 * Nats-Expected-Last-Sequence = the sequence the batch before it will get (the last one in
 * flight, or the last applied when none is): up to CLUSTER_PIPELINE batches are in flight at
 * once. Acknowledgements arrive on a library thread (on_ack), which only marks the batch; the
 * replicator applies acknowledged batches to the local log strictly in sequence order, which
 * completes their writes. A batch the fence refused, one acknowledged at another sequence, or
 * one not acknowledged within CLUSTER_ACK_WAIT_MS stops the pipeline: every batch still in flight
 * is answered 503 (the refused one "nothing stored", the others "outcome unknown", since a later
 * batch may land after someone else's message), and the node gives up the lease. The stream is
 * then read again from where this node stands, as by any follower.
 */
#include "lease.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#define PIPE_ROOM(c) ((c)->pipe_n < CLUSTER_PIPELINE)

static inflight *pipe_at(cluster *c, int i) { return &c->pipe[(c->pipe_head + i) % CLUSTER_PIPELINE]; }

static void entry_free(inflight *e) {
    free(e->msg);
    free(e->ps);
    memset(e, 0, sizeof *e);
}

/* Drops the oldest batch in flight (its writes completed or failed). mu not needed: only the
   replicator changes the pipeline's extent; on_ack looks at entries under mu, so take it. */
static void pipe_pop(cluster *c) {
    pthread_mutex_lock(&c->mu);
    entry_free(pipe_at(c, 0));
    c->pipe_head = (c->pipe_head + 1) % CLUSTER_PIPELINE;
    c->pipe_n--;
    pthread_mutex_unlock(&c->mu);
}

/* A publish acknowledgement, positive or not (a NATS library thread). */
static void on_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure) {
    (void)js;
    cluster *c = closure;
    pthread_mutex_lock(&c->mu);
    for (int i = 0; i < c->pipe_n; i++) {
        inflight *e = pipe_at(c, i);
        if (e->m != msg || e->state != PIPE_WAITING) continue;
        if (pa && pa->Sequence == e->seq) {
            e->state = PIPE_STORED;
        } else {
            e->state = PIPE_REFUSED;
            e->fenced = pae && pae->ErrCode == JSStreamWrongLastSequenceErr;
            if (pa)
                snprintf(e->why, sizeof e->why, "stored at sequence %" PRIu64 " instead of %" PRIu64, pa->Sequence,
                         e->seq);
            else
                snprintf(e->why, sizeof e->why, "%s", pae && pae->ErrText ? pae->ErrText : "no acknowledgement");
        }
        e->m = NULL;
        pthread_cond_broadcast(&c->cond);
        break;
    }
    pthread_mutex_unlock(&c->mu);
    natsMsg_Destroy(msg);
}

int pipe_init(cluster *c) {
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = CLUSTER_ACK_WAIT_MS;
    jo.PublishAsync.MaxPending = 4 * CLUSTER_PIPELINE;
    jo.PublishAsync.AckHandler = on_ack;
    jo.PublishAsync.AckHandlerClosure = c;
    return natsConnection_JetStream(&c->pjs, c->nc, &jo) == NATS_OK ? 0 : -1;
}

/* Ends the pipeline: every batch in flight fails, the first with `first_code` and `first_msg`,
   the others with "outcome unknown"; the library's copies are taken back (their late
   acknowledgements are then dropped). Gives up the lease unless keep_lease. */
static void pipe_abandon(cluster *c, int first_code, const char *first_msg, bool keep_lease) {
    static const char unknown[] = "the cluster's log did not acknowledge the write in order; its outcome is unknown: a "
                                  "retry with the same event ids is safe";
    for (int i = 0; c->pipe_n; i++) {
        inflight *e = pipe_at(c, 0);
        for (size_t k = 0; k < e->n; k++)
            factum_proposal_fail(e->ps[k], i ? FACTUM_EUNREACHABLE : first_code, i ? unknown : first_msg);
        pipe_pop(c);
    }
    natsMsgList pending = {0};
    if (js_PublishAsyncGetPendingList(&pending, c->pjs) == NATS_OK) natsMsgList_Destroy(&pending);
    if (keep_lease) return;
    pthread_mutex_lock(&c->mu);
    c->deposed = true;
    pthread_cond_broadcast(&c->lease_cond);
    pthread_mutex_unlock(&c->mu);
}

void pipe_stop(cluster *c, const char *why) {
    if (c->pipe_n) pipe_abandon(c, FACTUM_EUNREACHABLE, why, true);
}

bool pipe_claim(cluster *c, uint64_t seq, const void *data, size_t len, factum_proposal_t ***ps, size_t *n) {
    *ps = NULL, *n = 0;
    if (!c->pipe_n) return true;
    inflight *e = pipe_at(c, 0);
    if (e->seq != seq) return true;
    if (e->len == len && !memcmp(e->msg, data, len)) { /* ours: the stream has it, so it is stored */
        *ps = e->ps, *n = e->n;
        e->ps = NULL, e->n = 0;
        pipe_pop(c);
        return true;
    }
    /* Someone else's message where ours was to go: ours was refused by the fence. */
    pipe_abandon(c, FACTUM_ENOTLEADER,
                 "not the cluster leader any more: another node has written to the log; nothing of this write was "
                 "stored, retry",
                 false);
    return false;
}

/* Publishes what is queued as one batch, after the last in flight. false: the pipeline stopped. */
static bool publish_next(cluster *c) {
    pthread_mutex_lock(&c->mu);
    factum_proposal_t **ps;
    size_t n = cluster_queue_take(c, &ps);
    pthread_mutex_unlock(&c->mu);
    if (!n) return true;
    size_t max = (size_t)natsConnection_GetMaxPayload(c->nc);
    max = max > 4096 ? max - 1024 : max; /* room for the headers */
    inflight *last = c->pipe_n ? pipe_at(c, c->pipe_n - 1) : NULL;
    int64_t after = last ? last->time_us : 0, t = 0;
    uint64_t expect = last ? last->seq : c->applied;
    size_t used = 0, len = 0, at = 0;
    uint8_t *msg = NULL;
    factum_error_t err;
    while (at < n) { /* a write too large for one message is refused alone */
        int rc = factum_batch_encode(c->db, ps + at, n - at, max, after, &used, &msg, &len, &t, &err);
        if (!rc) break;
        factum_proposal_fail(ps[at++], rc, err.message);
    }
    if (at == n) {
        free(ps);
        return true;
    }
    factum_proposal_t **rest = NULL;
    size_t nrest = 0;
    for (size_t i = at + used; i < n; i++)
        on_proposal_append(&rest, &nrest, ps[i]);
    cluster_queue_put_back(c, rest, nrest);
    memmove(ps, ps + at, used * sizeof *ps);

    char seqtext[24], msgid[128];
    snprintf(seqtext, sizeof seqtext, "%" PRIu64, expect);
    snprintf(msgid, sizeof msgid, "%s:%" PRIu64, c->node, expect + 1);
    natsMsg *m = NULL;
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MsgId = msgid;
    natsStatus s = natsMsg_Create(&m, c->subject, NULL, (const char *)msg, (int)len);
    /* Set by hand: the library leaves the header out for 0, and the first batch must be fenced too. */
    if (s == NATS_OK) s = natsMsgHeader_Set(m, "Nats-Expected-Last-Sequence", seqtext);
    pthread_mutex_lock(&c->mu);
    inflight *e = pipe_at(c, c->pipe_n++);
    *e = (inflight){.m = m,
                    .msg = msg,
                    .len = len,
                    .ps = ps,
                    .n = used,
                    .seq = expect + 1,
                    .time_us = t,
                    .sent_ms = cluster_now_ms(),
                    .state = PIPE_WAITING};
    pthread_mutex_unlock(&c->mu);
    natsMsg *sent = m;
    if (s == NATS_OK) s = js_PublishMsgAsync(c->pjs, &sent, &po);
    if (s != NATS_OK) {
        natsMsg_Destroy(sent); /* NULL if the library took it */
        pthread_mutex_lock(&c->mu);
        e->m = NULL, e->state = PIPE_REFUSED;
        snprintf(e->why, sizeof e->why, "%s",
                 nats_GetLastError(NULL) ? nats_GetLastError(NULL) : natsStatus_GetText(s));
        pthread_mutex_unlock(&c->mu);
    }
    return true;
}

/* Applies the acknowledged batches at the front, in order; stops the pipeline on a refusal or a
   missing acknowledgement. false: it stopped (learn the stream's end again before publishing). */
static bool settle(cluster *c) {
    while (c->pipe_n) {
        inflight *e = pipe_at(c, 0);
        pthread_mutex_lock(&c->mu);
        int state = e->state;
        pthread_mutex_unlock(&c->mu);
        if (state == PIPE_STORED && e->seq == c->applied + 1) {
            /* This one and the acknowledged ones right behind it, as one commit group. */
            cluster_msg m[CLUSTER_APPLY_MAX];
            size_t k = 0;
            pthread_mutex_lock(&c->mu);
            while (k < CLUSTER_APPLY_MAX && (int)k < c->pipe_n) {
                inflight *x = pipe_at(c, (int)k);
                if (x->state != PIPE_STORED || x->seq != c->applied + 1 + k) break;
                m[k] = (cluster_msg){x->seq, x->msg, x->len, x->ps, x->n};
                x->ps = NULL, x->n = 0; /* the apply completes them; the message stays the entry's */
                k++;
            }
            pthread_mutex_unlock(&c->mu);
            int rc = cluster_apply(c, m, k, 0);
            for (size_t i = 0; i < k; i++) {
                free(m[i].ps);
                pipe_pop(c);
            }
            if (rc) {
                pipe_stop(c, "this node stopped applying the log; the outcome of this write is unknown");
                return false;
            }
        } else if (state == PIPE_REFUSED || (state == PIPE_STORED && e->seq != c->applied + 1)) {
            char why[400];
            snprintf(why, sizeof why,
                     e->fenced ? "not the cluster leader any more: another node has written to the log; nothing of "
                                 "this write was stored, retry"
                               : "the cluster's log did not acknowledge the write (%s); its outcome is unknown: a "
                                 "retry with the same event ids is safe",
                     e->why);
            pipe_abandon(c, e->fenced ? FACTUM_ENOTLEADER : FACTUM_EUNREACHABLE, why, false);
            return false;
        } else if (cluster_now_ms() - e->sent_ms >= CLUSTER_ACK_WAIT_MS) {
            pipe_abandon(c, FACTUM_EUNREACHABLE,
                         "the cluster's log did not acknowledge the write in time; its outcome is unknown: a retry "
                         "with the same event ids is safe",
                         false);
            return false;
        } else {
            return true;
        }
    }
    return true;
}

bool pipe_step(cluster *c) {
    if (!settle(c)) return false;
    while (PIPE_ROOM(c) && publish_next(c)) {
        pthread_mutex_lock(&c->mu);
        bool more = c->qn > 0;
        pthread_mutex_unlock(&c->mu);
        if (!more) break;
    }
    /* Sleep until an acknowledgement, a write to publish (with room for it), or a little while
       (the stream is read between, and a missing acknowledgement noticed). */
    struct timespec ts = clock_mono_after(20 * 1000);
    pthread_mutex_lock(&c->mu);
    while (!c->stopping && !(c->pipe_n && c->pipe[c->pipe_head].state != PIPE_WAITING) && !(c->qn && PIPE_ROOM(c)))
        if (pthread_cond_timedwait(&c->cond, &c->mu, &ts)) break;
    pthread_mutex_unlock(&c->mu);
    return settle(c);
}
