/*
 * append.h — an append request as the caller threads (append.c) queue it and the writer thread
 * (writer.c) takes it, private to the store.
 */
#ifndef FACTUM_APPEND_H
#define FACTUM_APPEND_H

#include "store.h"

#include <limits.h>
#include <linux/futex.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

struct append_req {
    factum_str_t stream; /* points into recs */
    int64_t expected;
    size_t n;
    uint8_t *recs; /* n encoded records, back to back */
    size_t bytes;
    uint32_t *offs;      /* offset of each record in recs */
    uint8_t *user_id;    /* per event: 1 if the caller chose the id */
    factum_append_cb cb; /* NULL: a factum_append caller sleeps on `done` */
    void *ctx;
    uint64_t h1, h2, skey;

    /* A metadata change (factum_meta_set, factum_delete_stream): the writer builds its record,
       because what it says (truncate_before) depends on the target stream at that moment. */
    int meta_op;  /* 0, or META_SET / META_DELETE / META_TOMBSTONE */
    char *target; /* the stream it is about (owned) */
    size_t target_len;
    uint64_t th1, th2;       /* streams_hash of target */
    int64_t target_expected; /* expected revision of the target (deletes) */
    meta_rules want;         /* META_SET: what the caller asked for */
    bool want_tb;            /* META_SET: truncate_before was given */
    char *custom;            /* META_SET: the custom object (owned), or NULL */
    size_t custom_len;
    meta_rules meta_new; /* what the record says, applied once it is durable */
    char meta_id[37];    /* the metadata record's id, made when prepared (a replicated batch carries it) */

    /* A replicated batch (batch.c): its first request carries the count, position and time; the
       writer takes the batch alone as one group. `replicated` ones never go to the replicator. */
    uint32_t batch_n;
    uint64_t batch_first;
    int64_t batch_time;
    bool replicated;

    /* A multi-stream append (factum_append_streams): its requests are queued together, one per
       stream, and decided and written as one; each counts the requests after it in the set,
       and completes into the set (the set's callback runs once, after the last). */
    uint32_t link_left;
    struct append_set *set;
    uint32_t set_index;

    /* A conditional append (tags.c): fails if an event matching cond exists after cond_after. */
    factum_tag_query_t *cond; /* owned, one allocation; NULL: none */
    uint64_t cond_after;

    int rc;
    factum_append_result_t res;
    char msg[sizeof(((factum_error_t *)0)->message)];
    _Atomic uint32_t done;
    append_req *next;  /* the queue */
    append_req *gnext; /* the requests a commit group assigned */
};

static inline void req_free(append_req *r) {
    if (!r) return;
    free(r->recs);
    free(r->offs);
    free(r->user_id);
    free(r->target);
    free(r->custom);
    free(r->cond);
    free(r);
}

enum { META_SET = 1, META_DELETE, META_TOMBSTONE };

/* What the requests of one multi-stream append complete into (append.c). */
typedef struct append_set {
    _Atomic uint32_t left; /* requests not completed yet */
    int rc;
    char msg[sizeof(((factum_error_t *)0)->message)];
    factum_streams_cb cb;
    void *ctx;
    size_t n;
    factum_append_result_t res[]; /* one per stream */
} append_set;
/* Records r's outcome in its set; the last one calls the set's callback and frees the set. */
void store_set_complete(append_req *r);

/* Queues the requests head..tail (linked by next) for the writer, in one step. */
int store_submit(factum_t *db, append_req *head, append_req *tail, factum_error_t *err);
/* Wakes r's caller, or calls and frees an async one (writer.c). */
void store_req_complete(append_req *r);

static inline void futex_wait(_Atomic uint32_t *addr, uint32_t val) {
    syscall(SYS_futex, addr, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}
static inline void futex_wake(_Atomic uint32_t *addr) {
    syscall(SYS_futex, addr, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

#endif
