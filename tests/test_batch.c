/*
 * test_batch.c — replicated batches at the engine level (src/store/batch.c, docs/cluster.md):
 * a "leader" store hands its writes to a replicator, encodes them as one batch and applies it;
 * a "follower" store applies the same bytes. Both logs must be the same event for event, time
 * and position included, and a batch that does not fit the log must fail loudly.
 */
#include "test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A replicator that only collects (the test is single-threaded: writes are async). */
typedef struct collected {
    factum_proposal_t *p[16];
    size_t n;
} collected;

static int collect(void *ctx, factum_proposal_t *p) {
    collected *c = ctx;
    CHECK(c->n < 16);
    c->p[c->n++] = p;
    return 0;
}

static int refuse(void *ctx, factum_proposal_t *p) {
    (void)ctx, (void)p;
    return FACTUM_ECLOSED;
}

/* What an async write's callback heard. */
typedef struct outcome {
    int called, rc;
    factum_append_result_t res;
    char msg[320];
} outcome;

static void on_done(void *ctx, int rc, const factum_append_result_t *res, const char *message) {
    outcome *o = ctx;
    o->called++, o->rc = rc, o->res = *res;
    snprintf(o->msg, sizeof o->msg, "%s", message);
}

static void append_async(factum_t *db, const char *stream, int64_t expected, const char *id, outcome *o) {
    factum_event_t e = {
        .type = str_c("T"), .id = str_c(id), .data = str_c("{\"x\":1}"), .data_format = FACTUM_DATA_JSON};
    CHECK_RC(factum_append_async(db, str_c(stream), expected, &e, 1, on_done, o, NULL), 0);
}

/* Every event of the log (system streams too) as JSON lines, time, position and revision included. */
static char *dump(factum_t *db) {
    factum_query_t q = {.from = 0, .limit = 1000, .system = 1};
    factum_result_t *res;
    CHECK_RC(factum_read_all(db, &q, &res, NULL), 0);
    size_t cap = 1 << 16, len = 0;
    char *out = calloc(1, cap);
    for (size_t i = 0; i < factum_result_count(res); i++) {
        len += factum_event_json(factum_result_event(res, i), out + len, cap - len);
        CHECK(len + 2 < cap);
        out[len++] = '\n';
    }
    factum_result_free(res);
    return out;
}

/* A "leader" and a "follower" store in test_dir(). */
static void open_pair(factum_t **leader, factum_t **follower) {
    char ldir[4096], fdir[4096];
    snprintf(ldir, sizeof ldir, "%s/leader", test_dir());
    snprintf(fdir, sizeof fdir, "%s/follower", test_dir());
    *leader = test_open(ldir, NULL), *follower = test_open(fdir, NULL);
}

/* Encodes everything collected as one batch (all must fit). */
static uint8_t *encode_all(factum_t *db, collected *c, size_t *len) {
    uint8_t *msg;
    size_t used;
    CHECK_RC(factum_batch_encode(db, c->p, c->n, 1 << 20, 0, &used, &msg, len, NULL, NULL), 0);
    CHECK_EQ(used, c->n);
    return msg;
}

TEST(a_replicated_batch_gives_both_logs_the_same_events_at_the_same_positions) {
    factum_t *leader, *follower;
    open_pair(&leader, &follower);
    collected c = {0};
    factum_set_replicator(leader, collect, &c);

    /* Two appends racing for a new stream, an id repeated, a metadata change and a deletion:
       everything the writer decides from the log. */
    outcome o[6] = {0};
    append_async(leader, "order-1", FACTUM_EXPECT_NO_STREAM, "e1", &o[0]);
    append_async(leader, "order-1", FACTUM_EXPECT_NO_STREAM, "e2", &o[1]);
    append_async(leader, "order-2", FACTUM_EXPECT_ANY, "", &o[2]); /* the leader picks its id */
    append_async(leader, "order-1", FACTUM_EXPECT_ANY, "e1", &o[3]);
    factum_meta_t m = {.max_count = 5, .custom = str_c("{\"k\":1}")};
    CHECK_RC(factum_meta_set_async(leader, str_c("order-1"), &m, on_done, &o[4], NULL), 0);
    CHECK_RC(factum_delete_stream_async(leader, str_c("order-2"), 0, 0, on_done, &o[5], NULL), 0);
    CHECK_EQ(c.n, 6);
    CHECK_EQ(factum_head_position(leader), 0); /* nothing written before the batch is applied */
    CHECK_EQ(o[0].called, 0);

    size_t len;
    uint8_t *msg = encode_all(leader, &c, &len);
    int applied;
    CHECK_RC(factum_batch_apply(leader, msg, len, c.p, c.n, &applied, NULL), 0);
    CHECK_EQ(applied, 1);
    CHECK_RC(factum_batch_apply(follower, msg, len, NULL, 0, &applied, NULL), 0);
    CHECK_EQ(applied, 1);

    for (int i = 0; i < 6; i++)
        CHECK_EQ(o[i].called, 1);
    CHECK_RC(o[0].rc, 0);
    CHECK_EQ(o[0].res.first_position, 0);
    CHECK_RC(o[1].rc, FACTUM_EREVISION); /* decided at apply, as on every node */
    CHECK_RC(o[2].rc, 0);
    CHECK_RC(o[3].rc, 0);
    CHECK_EQ(o[3].res.idempotent, 1);
    CHECK_RC(o[4].rc, 0);
    CHECK_RC(o[5].rc, 0);

    char *a = dump(leader), *b = dump(follower);
    CHECK_MSG(!strcmp(a, b), "leader:\n%s\nfollower:\n%s", a, b);
    CHECK_EQ(factum_head_position(leader), 4);
    CHECK_EQ(factum_head_position(follower), 4);
    CHECK_EQ(factum_stream_revision(follower, str_c("order-1")), 0);

    /* The same batch again is below the head: skipped, nothing written. */
    CHECK_RC(factum_batch_apply(follower, msg, len, NULL, 0, &applied, NULL), 0);
    CHECK_EQ(applied, 0);
    CHECK_EQ(factum_head_position(follower), 4);
    free(a), free(b), free(msg);

    /* A second batch continues after the first on both, and survives a reopen. */
    c.n = 0;
    outcome o2 = {0};
    append_async(leader, "order-1", 0, "e3", &o2);
    msg = encode_all(leader, &c, &len);
    CHECK_RC(factum_batch_apply(leader, msg, len, c.p, c.n, &applied, NULL), 0);
    CHECK_RC(factum_batch_apply(follower, msg, len, NULL, 0, &applied, NULL), 0);
    CHECK_RC(o2.rc, 0);
    CHECK_EQ(o2.res.first_revision, 1);
    free(msg);
    factum_close(follower);
    char fdir[4096];
    snprintf(fdir, sizeof fdir, "%s/follower", test_dir());
    follower = test_open(fdir, NULL);
    a = dump(leader), b = dump(follower);
    CHECK_MSG(!strcmp(a, b), "leader:\n%s\nfollower:\n%s", a, b);
    free(a), free(b);
    factum_close(leader);
    factum_close(follower);
}

/* Pipelined: the second batch is encoded before the first is applied (a leader with several in
   flight). It follows the first wherever that one lands, and decides its expected revision
   against what the first wrote, on both nodes alike. */
TEST(batches_encoded_before_the_one_before_is_applied_land_after_it_on_every_node) {
    factum_t *leader, *follower;
    open_pair(&leader, &follower);
    collected c = {0};
    factum_set_replicator(leader, collect, &c);
    outcome o[4] = {0};
    append_async(leader, "s", FACTUM_EXPECT_NO_STREAM, "p1", &o[0]);
    append_async(leader, "s", FACTUM_EXPECT_NO_STREAM, "p2", &o[1]); /* fails: p1 made the stream */
    append_async(leader, "s", 0, "p3", &o[2]);                       /* lands: revision 0 is p1 */
    append_async(leader, "s", 0, "p4", &o[3]);                       /* fails: p3 is revision 1 */
    uint8_t *m1, *m2;
    size_t l1, l2, used;
    int64_t t1, t2;
    CHECK_RC(factum_batch_encode(leader, c.p, 2, 1 << 20, 0, &used, &m1, &l1, &t1, NULL), 0);
    CHECK_EQ(used, 2);
    CHECK_RC(factum_batch_encode(leader, c.p + 2, 2, 1 << 20, t1, &used, &m2, &l2, &t2, NULL), 0);
    CHECK(t2 > t1);
    uint64_t first;
    int64_t t;
    CHECK_RC(factum_batch_info(m2, l2, &first, &t, NULL), 0);
    CHECK_EQ(first, FACTUM_BATCH_FOLLOWS);
    int applied;
    CHECK_RC(factum_batch_apply(leader, m1, l1, c.p, 2, &applied, NULL), 0);
    CHECK_RC(factum_batch_apply(leader, m2, l2, c.p + 2, 2, &applied, NULL), 0);
    CHECK_EQ(applied, 1);
    CHECK_RC(factum_batch_apply(follower, m1, l1, NULL, 0, &applied, NULL), 0);
    CHECK_RC(factum_batch_apply(follower, m2, l2, NULL, 0, &applied, NULL), 0);
    CHECK_RC(o[0].rc, 0);
    CHECK_RC(o[1].rc, FACTUM_EREVISION);
    CHECK_RC(o[2].rc, 0);
    CHECK_EQ(o[2].res.first_position, 1);
    CHECK_RC(o[3].rc, FACTUM_EREVISION);
    char *a = dump(leader), *b = dump(follower);
    CHECK_MSG(!strcmp(a, b), "leader:\n%s\nfollower:\n%s", a, b);
    /* Both again, as after a restart that read the stream from the start: skipped. */
    CHECK_RC(factum_batch_apply(follower, m1, l1, NULL, 0, &applied, NULL), 0);
    CHECK_EQ(applied, 0);
    CHECK_RC(factum_batch_apply(follower, m2, l2, NULL, 0, &applied, NULL), 0);
    CHECK_EQ(applied, 0);
    CHECK_EQ(factum_head_position(follower), 2);
    free(a), free(b), free(m1), free(m2);
    factum_close(leader);
    factum_close(follower);
}

/* Several batches handed to the writer together (factum_batch_apply_many, what a replicator does
   with the messages that arrived while its log synced) are one commit group, one fdatasync, and
   the same log as applied one by one; ones applied before are skipped; a batch that does not fit
   after the ones before it fails with the rest, and the ones before stay applied. */
TEST(batches_applied_together_are_one_commit_group_and_the_same_log_as_one_by_one) {
    factum_t *leader, *follower;
    open_pair(&leader, &follower);
    collected c = {0};
    factum_set_replicator(leader, collect, &c);
    outcome o[6] = {0};
    const char *ids[] = {"q1", "q2", "q3", "q4", "q5", "q6"};
    for (int i = 0; i < 6; i++)
        append_async(leader, i % 2 ? "odd" : "even", FACTUM_EXPECT_ANY, ids[i], &o[i]);
    factum_batch_t b[3];
    uint8_t *m[3];
    size_t len[3], used;
    int64_t after = 0;
    for (int k = 0; k < 3; k++) {
        CHECK_RC(factum_batch_encode(leader, c.p + 2 * k, 2, 1 << 20, after, &used, &m[k], &len[k], &after, NULL), 0);
        CHECK_EQ(used, 2);
        b[k] = (factum_batch_t){m[k], len[k], c.p + 2 * k, 2};
    }
    factum_stats_t before, now;
    factum_stats(leader, &before);
    size_t done;
    CHECK_RC(factum_batch_apply_many(leader, b, 3, &done, NULL, NULL), 0);
    CHECK_EQ(done, 3);
    factum_stats(leader, &now);
    CHECK_EQ(now.fsyncs - before.fsyncs, 1);
    for (int i = 0; i < 6; i++) {
        CHECK_EQ(o[i].called, 1);
        CHECK_RC(o[i].rc, 0);
        CHECK_EQ(o[i].res.first_position, (uint64_t)i);
    }
    /* the follower: the first alone, then all three (the first skipped) */
    int applied;
    CHECK_RC(factum_batch_apply(follower, m[0], len[0], NULL, 0, &applied, NULL), 0);
    for (int k = 0; k < 3; k++)
        b[k].ps = NULL, b[k].n = 0;
    CHECK_RC(factum_batch_apply_many(follower, b, 3, &done, NULL, NULL), 0);
    CHECK_EQ(done, 3);
    char *x = dump(leader), *y = dump(follower);
    CHECK_MSG(!strcmp(x, y), "leader:\n%s\nfollower:\n%s", x, y);
    free(x), free(y);
    for (int k = 0; k < 3; k++)
        free(m[k]);

    /* Two batches that both name the head they saw: the second cannot land after the first. */
    c.n = 0;
    outcome p[2] = {0};
    append_async(leader, "even", FACTUM_EXPECT_ANY, "r1", &p[0]);
    append_async(leader, "even", FACTUM_EXPECT_ANY, "r2", &p[1]);
    uint8_t *a1, *a2;
    size_t l1, l2;
    CHECK_RC(factum_batch_encode(leader, c.p, 1, 1 << 20, 0, &used, &a1, &l1, NULL, NULL), 0);
    CHECK_RC(factum_batch_encode(leader, c.p + 1, 1, 1 << 20, 0, &used, &a2, &l2, NULL, NULL), 0);
    factum_batch_t bad[2] = {{a1, l1, c.p, 1}, {a2, l2, c.p + 1, 1}};
    factum_error_t err;
    CHECK_RC(factum_batch_apply_many(leader, bad, 2, &done, NULL, &err), FACTUM_ECORRUPT);
    CHECK_EQ(done, 1);
    CHECK_RC(p[0].rc, 0);
    CHECK_EQ(p[1].called, 1);
    CHECK_RC(p[1].rc, FACTUM_ECORRUPT);
    CHECK_MSG(strstr(err.message, "diverged"), "%s", err.message);
    CHECK_EQ(factum_head_position(leader), 7);
    free(a1), free(a2);
    factum_close(leader);
    factum_close(follower);
}

TEST(a_batch_that_does_not_fit_the_log_fails_loudly_and_writes_nothing) {
    factum_t *leader, *follower;
    open_pair(&leader, &follower);
    /* The leader's log is two events ahead: its batch names position 2. */
    CHECK_RC(test_append(leader, "a", FACTUM_EXPECT_ANY, "T", "{}", NULL, NULL), 0);
    CHECK_RC(test_append(leader, "a", FACTUM_EXPECT_ANY, "T", "{}", NULL, NULL), 0);
    collected c = {0};
    factum_set_replicator(leader, collect, &c);
    outcome o = {0};
    append_async(leader, "a", FACTUM_EXPECT_ANY, "x", &o);
    size_t len;
    uint8_t *msg = encode_all(leader, &c, &len);
    factum_error_t err;
    int applied = 1;
    CHECK_RC(factum_batch_apply(follower, msg, len, NULL, 0, &applied, &err), FACTUM_ECORRUPT);
    CHECK(strstr(err.message, "batches are missing"));
    CHECK_EQ(applied, 0);
    CHECK_EQ(factum_head_position(follower), 0);

    /* A damaged message is refused before the log is touched. */
    msg[len / 2] ^= 0x10;
    CHECK_RC(factum_batch_apply(leader, msg, len, c.p, c.n, &applied, &err), FACTUM_ECORRUPT);
    CHECK(strstr(err.message, "checksum"));
    CHECK_EQ(o.called, 1); /* the proposal is completed with the error */
    CHECK_RC(o.rc, FACTUM_ECORRUPT);
    CHECK_EQ(factum_head_position(leader), 2);
    uint64_t first;
    int64_t t;
    CHECK_RC(factum_batch_info(msg, 10, &first, &t, &err), FACTUM_ECORRUPT);
    free(msg);

    /* A proposal that will not be replicated is completed with the error given. */
    outcome o2 = {0};
    c.n = 0;
    append_async(leader, "a", FACTUM_EXPECT_ANY, "y", &o2);
    CHECK_EQ(c.n, 1);
    factum_proposal_fail(c.p[0], FACTUM_ENOTLEADER, "the leader is node-b");
    CHECK_RC(o2.rc, FACTUM_ENOTLEADER);
    CHECK(!strcmp(o2.msg, "the leader is node-b"));

    /* More than a message can hold: the first proposal alone is too big. */
    c.n = 0;
    outcome o3 = {0};
    append_async(leader, "a", FACTUM_EXPECT_ANY, "z", &o3);
    size_t used;
    CHECK_RC(factum_batch_encode(leader, c.p, c.n, 64, 0, &used, &msg, &len, NULL, &err), FACTUM_ETOOBIG);
    factum_proposal_fail(c.p[0], err.code, err.message);
    CHECK_RC(o3.rc, FACTUM_ETOOBIG);

    /* A replicator that refuses: the write fails at once, its callback never runs. */
    factum_set_replicator(leader, refuse, NULL);
    outcome o4 = {0};
    factum_event_t e = {.type = str_c("T")};
    CHECK_RC(factum_append_async(leader, str_c("a"), FACTUM_EXPECT_ANY, &e, 1, on_done, &o4, &err), FACTUM_ECLOSED);
    CHECK_EQ(o4.called, 0);
    CHECK_RC(factum_append(leader, str_c("a"), FACTUM_EXPECT_ANY, &e, 1, NULL, NULL), FACTUM_ECLOSED);
    CHECK_EQ(factum_head_position(leader), 2);
    factum_close(leader);
    factum_close(follower);
}

TEST(tags_replicate_with_the_batch_and_the_follower_indexes_them) {
    factum_t *leader, *follower;
    open_pair(&leader, &follower);
    collected c = {0};
    factum_set_replicator(leader, collect, &c);
    outcome o = {0};
    factum_event_t e = {.type = str_c("Subscribed"), .extensions = str_c("\"tags\":\"course:c1 student:s7\"")};
    CHECK_RC(factum_append_async(leader, str_c("s-7"), FACTUM_EXPECT_ANY, &e, 1, on_done, &o, NULL), 0);
    size_t len;
    uint8_t *msg = encode_all(leader, &c, &len);
    int applied;
    CHECK_RC(factum_batch_apply(leader, msg, len, c.p, c.n, &applied, NULL), 0);
    CHECK_RC(factum_batch_apply(follower, msg, len, NULL, 0, &applied, NULL), 0);
    CHECK_RC(o.rc, 0);
    const char *q = "{\"items\":[{\"types\":[\"Subscribed\"],\"tags\":[\"student:s7\"]}]}";
    factum_tag_query_t *tq;
    CHECK_RC(factum_tag_query_parse(q, strlen(q), &tq, NULL), 0);
    factum_t *dbs[2] = {leader, follower};
    for (int i = 0; i < 2; i++) {
        factum_result_t *res;
        CHECK_RC(factum_read_tagged(dbs[i], tq, 0, 10, 0, NULL, &res, NULL), 0);
        CHECK_EQ(factum_result_count(res), 1);
        CHECK(str_eq(factum_event_tags(factum_result_event(res, 0)), str_c("course:c1 student:s7")));
        factum_result_free(res);
    }
    factum_tag_query_free(tq);
    free(msg);
    factum_close(leader);
    factum_close(follower);
}
