/*
 * test_tags.c — tags, tag queries and conditional appends through the public API (docs/dcb.md):
 * the limits one past each, reads served from the tag index (across memtable flushes and a
 * reopen), the condition checked against the log and inside one commit group, and a model test
 * of random conditional appends against a trivially correct in-memory log.
 */
#include "test.h"

#include "../src/io/io.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

static factum_options_t small(void) { return (factum_options_t){.segment_bytes = 1 << 16, .memtable_events = 64}; }

/* Appends one event of `type` with the tags given as "a b c" (NULL: none). */
static int tagged(factum_t *db, const char *stream, const char *type, const char *tags, factum_append_result_t *r,
                  factum_error_t *err) {
    char ext[2048] = "";
    if (tags) snprintf(ext, sizeof ext, "\"tags\":\"%s\"", tags);
    factum_event_t e = {.type = str_c(type), .extensions = str_c(ext)};
    return factum_append(db, str_c(stream), FACTUM_EXPECT_ANY, &e, 1, r, err);
}

/* A one-item query: types and tags as space-separated lists ("" for none). Strings live in q. */
typedef struct q1 {
    char text[2][512];
    factum_str_t types[8], tags[8];
    factum_query_item_t item;
    factum_tag_query_t q;
} q1;
static size_t split(char *s, factum_str_t *out) {
    size_t n = 0;
    for (char *t = strtok(s, " "); t && n < 8; t = strtok(NULL, " "))
        out[n++] = str_c(t);
    return n;
}
static factum_tag_query_t *query(q1 *q, const char *types, const char *tags) {
    snprintf(q->text[0], sizeof q->text[0], "%s", types);
    snprintf(q->text[1], sizeof q->text[1], "%s", tags);
    q->item.types = q->types, q->item.ntypes = split(q->text[0], q->types);
    q->item.tags = q->tags, q->item.ntags = split(q->text[1], q->tags);
    q->q = (factum_tag_query_t){&q->item, 1};
    return &q->q;
}

/* The positions a query read answers, as "p p p". */
static void positions(factum_t *db, const factum_tag_query_t *q, uint64_t from, size_t limit, int backward, char *out,
                      size_t cap) {
    factum_result_t *res;
    uint64_t head;
    factum_error_t err;
    int rc = factum_read_tagged(db, q, from, limit, backward, &head, &res, &err);
    CHECK_MSG(rc == 0, "%s", err.message);
    CHECK_EQ(head, factum_head_position(db));
    size_t n = 0;
    out[0] = 0;
    for (size_t i = 0; i < factum_result_count(res); i++)
        n += (size_t)snprintf(out + n, cap - n, "%s%llu", i ? " " : "",
                              (unsigned long long)factum_result_event(res, i)->position);
    factum_result_free(res);
}

TEST(tags_are_checked_one_past_each_limit_and_a_refused_event_writes_nothing) {
    factum_t *db = test_open(test_dir(), NULL);
    factum_error_t err;
    char tag[300], many[2048];
    memset(tag, 'a', 255), tag[255] = 0;
    CHECK_RC(tagged(db, "s", "T", tag, NULL, &err), 0);
    memset(tag, 'a', 256), tag[256] = 0;
    CHECK_RC(tagged(db, "s", "T", tag, NULL, &err), FACTUM_ETOOBIG);
    CHECK_MSG(strstr(err.message, "at most 255 bytes"), "%s", err.message);
    size_t n = 0;
    for (int i = 0; i < 32; i++)
        n += (size_t)snprintf(many + n, sizeof many - n, "%st%d", i ? " " : "", i);
    CHECK_RC(tagged(db, "s", "T", many, NULL, &err), 0);
    snprintf(many + n, sizeof many - n, " t32");
    CHECK_RC(tagged(db, "s", "T", many, NULL, &err), FACTUM_ETOOBIG);
    CHECK_MSG(strstr(err.message, "more than 32 tags"), "%s", err.message);
    const char *bad[] = {"a  b", " a", "a ", "stream:s", "type:T", "a a", "a\\\\b", ""};
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        int rc = tagged(db, "s", "T", bad[i], NULL, &err);
        CHECK_MSG(rc == (bad[i][0] ? FACTUM_EBADEVENT : 0), "'%s': %d %s", bad[i], rc, err.message);
    }
    factum_event_t e = {.type = str_c("T"), .extensions = str_c("\"tags\":[\"a\"]")};
    CHECK_RC(factum_append(db, str_c("s"), FACTUM_EXPECT_ANY, &e, 1, NULL, &err), FACTUM_EBADEVENT);
    CHECK_MSG(strstr(err.message, "'tags' must be a string"), "%s", err.message);
    CHECK_EQ(factum_head_position(db), 3); /* the two good ones and the empty list */
    factum_close(db);
}

TEST(events_parse_takes_tags_as_an_array_and_keeps_them_as_one_string) {
    const char *json = "{\"type\":\"T\",\"region\":\"eu\",\"tags\":[\"course:c1\", \"student:s7\"],\"data\":{}}";
    factum_events_t *set;
    factum_error_t err;
    CHECK_RC(factum_events_parse(json, strlen(json), 0, &set, &err), 0);
    factum_event_t *e = factum_events_get(set, 0);
    CHECK_MSG(str_eq(e->extensions, str_c("\"region\":\"eu\",\"tags\":\"course:c1 student:s7\"")), "%.*s",
              (int)e->extensions.len, e->extensions.ptr);
    CHECK(str_eq(factum_event_tags(e), str_c("course:c1 student:s7")));
    factum_events_free(set);
    const char *bad[] = {"{\"type\":\"T\",\"tags\":[1]}", "{\"type\":\"T\",\"tags\":[\"a b\"]}",
                         "{\"type\":\"T\",\"tags\":[\"\"]}"};
    for (size_t i = 0; i < ARRAY_LEN(bad); i++)
        CHECK_RC(factum_events_parse(bad[i], strlen(bad[i]), 0, &set, &err), FACTUM_EBADEVENT);
}

/* 200 events over streams c-0..c-9: type E<i%3>, tags "k<i%5>" and "all". */
static void fill(factum_t *db) {
    for (int i = 0; i < 200; i++) {
        char stream[16], type[8], tags[32];
        snprintf(stream, sizeof stream, "c-%d", i % 10);
        snprintf(type, sizeof type, "E%d", i % 3);
        snprintf(tags, sizeof tags, "k%d all", i % 5);
        CHECK_RC(tagged(db, stream, type, tags, NULL, NULL), 0);
    }
}

static void check_reads(factum_t *db) {
    char got[4096];
    q1 q;
    positions(db, query(&q, "", "k2"), 0, 5, 0, got, sizeof got);
    CHECK_MSG(!strcmp(got, "2 7 12 17 22"), "%s", got);
    positions(db, query(&q, "E1", "k2"), 0, 3, 0, got, sizeof got); /* i%3 == 1 and i%5 == 2: i = 7 + 15k */
    CHECK_MSG(!strcmp(got, "7 22 37"), "%s", got);
    positions(db, query(&q, "E1 E2", "k2 all"), 30, 3, 0, got, sizeof got);
    CHECK_MSG(!strcmp(got, "32 37 47"), "%s", got);
    positions(db, query(&q, "E0", ""), FACTUM_END, 3, 1, got, sizeof got);
    CHECK_MSG(!strcmp(got, "198 195 192"), "%s", got);
    positions(db, query(&q, "", "stream:c-4 k4"), 0, 100, 0, got, sizeof got);
    CHECK_MSG(!strcmp(got, "4 14 24 34 44 54 64 74 84 94 104 114 124 134 144 154 164 174 184 194"), "%s", got);
    positions(db, query(&q, "", "type:E2 stream:c-5"), 100, 2, 1, got, sizeof got);
    CHECK_MSG(!strcmp(got, "95 65"), "%s", got);
    positions(db, query(&q, "", "nope"), 0, 10, 0, got, sizeof got);
    CHECK_MSG(!strcmp(got, ""), "%s", got);
    /* Two items OR-ed, an event both match once. */
    q1 a, b;
    query(&a, "", "k1"), query(&b, "E0", "");
    factum_query_item_t items[2] = {a.item, b.item};
    factum_tag_query_t two = {items, 2};
    positions(db, &two, 0, 6, 0, got, sizeof got);
    CHECK_MSG(!strcmp(got, "0 1 3 6 9 11"), "%s", got);
}

TEST(query_reads_match_types_and_tags_from_the_index_and_after_a_reopen) {
    factum_options_t o = small();
    factum_t *db = test_open(test_dir(), &o);
    fill(db);
    check_reads(db);
    factum_close(db);
    db = test_open(test_dir(), &o); /* runs of the tag index, and the memtable rebuilt from the log */
    check_reads(db);
    factum_close(db);
}

TEST(bad_queries_get_a_clear_error_one_past_each_limit) {
    factum_t *db = test_open(test_dir(), NULL);
    factum_result_t *res;
    factum_error_t err;
    factum_tag_query_t none = {NULL, 0};
    CHECK_RC(factum_read_tagged(db, &none, 0, 10, 0, NULL, &res, &err), FACTUM_EINVAL);
    factum_query_item_t empty = {0};
    factum_tag_query_t q = {&empty, 1};
    CHECK_RC(factum_read_tagged(db, &q, 0, 10, 0, NULL, &res, &err), FACTUM_EINVAL);
    CHECK_MSG(strstr(err.message, "no types and no tags"), "%s", err.message);
    factum_str_t t[33];
    for (int i = 0; i < 33; i++)
        t[i] = str_c("x");
    factum_query_item_t it = {.tags = t, .ntags = 32};
    q = (factum_tag_query_t){&it, 1};
    CHECK_RC(factum_tag_query_check(&q, &err), 0);
    it.ntags = 33;
    CHECK_RC(factum_tag_query_check(&q, &err), FACTUM_ETOOBIG);
    it = (factum_query_item_t){.types = t, .ntypes = 33};
    CHECK_RC(factum_tag_query_check(&q, &err), FACTUM_ETOOBIG);
    factum_query_item_t items[33];
    for (int i = 0; i < 33; i++)
        items[i] = (factum_query_item_t){.tags = t, .ntags = 1};
    q = (factum_tag_query_t){items, 32};
    CHECK_RC(factum_tag_query_check(&q, &err), 0);
    q.nitems = 33;
    CHECK_RC(factum_tag_query_check(&q, &err), FACTUM_ETOOBIG);
    char big[257];
    memset(big, 'b', 256), big[256] = 0;
    factum_str_t bt = str_c(big);
    it = (factum_query_item_t){.tags = &bt, .ntags = 1};
    q = (factum_tag_query_t){&it, 1};
    CHECK_RC(factum_tag_query_check(&q, &err), FACTUM_ETOOBIG);
    factum_close(db);
}

TEST(conditional_append_fails_with_the_first_matching_position_and_writes_nothing) {
    factum_t *db = test_open(test_dir(), NULL);
    factum_append_result_t r;
    factum_error_t err;
    q1 q;
    factum_event_t e = {.type = str_c("Registered"), .extensions = str_c("\"tags\":\"user:ann\"")};
    factum_condition_t c = {*query(&q, "Registered", "user:ann"), FACTUM_AFTER_NONE};
    CHECK_RC(factum_append_if(db, str_c("u-1"), FACTUM_EXPECT_ANY, &e, 1, &c, &r, &err), 0);
    CHECK_RC(tagged(db, "other", "Noise", "user:ann", NULL, NULL), 0); /* same tag, another type */
    CHECK_RC(factum_append_if(db, str_c("u-2"), FACTUM_EXPECT_ANY, &e, 1, &c, &r, &err), FACTUM_ECONDITION);
    CHECK_EQ(r.conflict_position, 0);
    CHECK_MSG(strstr(err.message, "position 0"), "%s", err.message);
    CHECK_EQ(factum_head_position(db), 2);
    /* With `after`: only what came after the position counts. */
    c.after = 0;
    CHECK_RC(factum_append_if(db, str_c("u-2"), FACTUM_EXPECT_ANY, &e, 1, &c, &r, &err), 0);
    CHECK_EQ(r.last_position, 2);
    c.after = 1;
    CHECK_RC(factum_append_if(db, str_c("u-2"), FACTUM_EXPECT_ANY, &e, 1, &c, &r, &err), FACTUM_ECONDITION);
    CHECK_EQ(r.conflict_position, 2);
    c.after = 3; /* the head is 3: nothing is there yet */
    CHECK_RC(factum_append_if(db, str_c("u-2"), FACTUM_EXPECT_ANY, &e, 1, &c, &r, &err), FACTUM_EINVAL);
    CHECK_MSG(strstr(err.message, "'after' is 3"), "%s", err.message);
    factum_tag_query_t none = {NULL, 0};
    factum_condition_t bad = {none, FACTUM_AFTER_NONE};
    CHECK_RC(factum_append_if(db, str_c("u-2"), FACTUM_EXPECT_ANY, &e, 1, &bad, &r, &err), FACTUM_EINVAL);
    CHECK_EQ(factum_head_position(db), 3);
    factum_close(db);
}

/* ---- two conflicting appends in one commit group ---- */

/* A vfs whose fdatasync, once armed, waits for the test: the writer is held inside one group
   while the next appends queue up behind it. */
typedef struct gate {
    io_vfs vfs;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    bool armed, inside;
    long syncs;
} gate;
static int gate_sync(io_vfs *v, int fd) {
    gate *g = (gate *)v;
    pthread_mutex_lock(&g->mu);
    g->syncs++;
    if (g->armed) {
        g->inside = true;
        pthread_cond_broadcast(&g->cond);
        while (g->armed)
            pthread_cond_wait(&g->cond, &g->mu);
        g->inside = false;
    }
    pthread_mutex_unlock(&g->mu);
    return io_vfs_default()->fdatasync(io_vfs_default(), fd);
}
static int gate_pwritev(io_vfs *v, int fd, const struct iovec *iov, int n, uint64_t off, size_t *w) {
    (void)v;
    return io_vfs_default()->pwritev(io_vfs_default(), fd, iov, n, off, w);
}
static int gate_zero(io_vfs *v, int fd, uint64_t off, uint64_t len) {
    (void)v;
    return io_vfs_default()->zero_fill(io_vfs_default(), fd, off, len);
}

typedef struct outcome {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    int n, rc[2];
    factum_append_result_t res[2];
} outcome;
static void on_done(void *ctx, int rc, const factum_append_result_t *res, const char *msg) {
    (void)msg;
    outcome *o = ctx;
    pthread_mutex_lock(&o->mu);
    o->rc[o->n] = rc, o->res[o->n] = *res;
    o->n++;
    pthread_cond_broadcast(&o->cond);
    pthread_mutex_unlock(&o->mu);
}

TEST(two_conflicting_appends_in_one_commit_group_never_both_succeed) {
    gate g = {.vfs = {gate_pwritev, gate_sync, gate_zero}};
    pthread_mutex_init(&g.mu, NULL);
    pthread_cond_init(&g.cond, NULL);
    factum_options_t o = {.vfs = &g.vfs};
    factum_t *db = test_open(test_dir(), &o);
    CHECK_RC(tagged(db, "course-c1", "CourseDefined", "course:c1", NULL, NULL), 0);
    /* Hold the writer inside the fdatasync of an unrelated append. */
    pthread_mutex_lock(&g.mu);
    g.armed = true;
    pthread_mutex_unlock(&g.mu);
    outcome out = {.mu = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
    factum_event_t noise = {.type = str_c("Noise")};
    CHECK_RC(factum_append_async(db, str_c("x"), FACTUM_EXPECT_ANY, &noise, 1, on_done, &out, NULL), 0);
    pthread_mutex_lock(&g.mu);
    while (!g.inside)
        pthread_cond_wait(&g.cond, &g.mu);
    long before = g.syncs;
    pthread_mutex_unlock(&g.mu);
    /* Two subscriptions to the last seat, both decided against position 0: both queue now. */
    q1 q;
    factum_condition_t c = {*query(&q, "StudentSubscribed", "course:c1"), 0};
    factum_event_t sub = {.type = str_c("StudentSubscribed"), .extensions = str_c("\"tags\":\"course:c1 student:s1\"")};
    outcome two = {.mu = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
    CHECK_RC(factum_append_if_async(db, str_c("sub-1"), FACTUM_EXPECT_ANY, &sub, 1, &c, on_done, &two, NULL), 0);
    sub.extensions = str_c("\"tags\":\"course:c1 student:s2\"");
    CHECK_RC(factum_append_if_async(db, str_c("sub-2"), FACTUM_EXPECT_ANY, &sub, 1, &c, on_done, &two, NULL), 0);
    pthread_mutex_lock(&g.mu);
    g.armed = false;
    pthread_cond_broadcast(&g.cond);
    pthread_mutex_unlock(&g.mu);
    pthread_mutex_lock(&two.mu);
    while (two.n < 2)
        pthread_cond_wait(&two.cond, &two.mu);
    pthread_mutex_unlock(&two.mu);
    CHECK_EQ(out.rc[0], 0);
    CHECK_EQ(two.rc[0], 0);
    CHECK_EQ(two.res[0].last_position, 2);
    CHECK_EQ(two.rc[1], FACTUM_ECONDITION);
    CHECK_EQ(two.res[1].conflict_position, 2); /* the first one, not yet durable when it was checked */
    pthread_mutex_lock(&g.mu);
    CHECK_EQ(g.syncs - before, 1); /* both were decided in one commit group: one fdatasync */
    pthread_mutex_unlock(&g.mu);
    CHECK_EQ(factum_head_position(db), 3);
    factum_close(db);
}

/* ---- a model test ---- */

#define MODEL_EVENTS 1500
static struct { int type, tags; /* tags: bit k is tag "t<k>" */ } mlog[MODEL_EVENTS];

static bool model_matches(int i, int type, int tagbit) { return mlog[i].type == type && (mlog[i].tags >> tagbit & 1); }

TEST(random_conditional_appends_agree_with_a_simple_model) {
    factum_options_t o = small();
    factum_t *db = test_open(test_dir(), &o);
    size_t n = 0;
    for (int round = 0; round < 4000 && n < MODEL_EVENTS; round++) {
        int type = (int)(test_rand() % 3), tagbit = (int)(test_rand() % 6), tags = (int)(test_rand() % 64);
        uint64_t after = n && test_rand() % 4 ? test_rand() % n : FACTUM_AFTER_NONE;
        char tn[8], ty[8], ext[128];
        snprintf(tn, sizeof tn, "t%d", tagbit);
        snprintf(ty, sizeof ty, "T%d", type);
        size_t len = (size_t)snprintf(ext, sizeof ext, "\"tags\":\"");
        for (int k = 0; k < 6; k++)
            if (tags >> k & 1) len += (size_t)snprintf(ext + len, sizeof ext - len, "t%d ", k);
        if (tags)
            ext[len - 1] = '"';
        else
            ext[0] = 0;
        factum_str_t qt = str_c(tn), qy = str_c(ty);
        factum_query_item_t it = {&qy, 1, &qt, 1};
        factum_condition_t c = {{&it, 1}, after};
        factum_event_t e = {.type = qy, .extensions = str_c(ext)};
        factum_append_result_t r;
        int rc = factum_append_if(db, str_c(test_rand() % 2 ? "a" : "b"), FACTUM_EXPECT_ANY, &e, 1, &c, &r, NULL);
        size_t want = SIZE_MAX;
        for (size_t i = after == FACTUM_AFTER_NONE ? 0 : after + 1; i < n && want == SIZE_MAX; i++)
            if (model_matches((int)i, type, tagbit)) want = i;
        if (want == SIZE_MAX) {
            CHECK_MSG(rc == 0, "round %d: %d", round, rc);
            CHECK_EQ(r.last_position, n);
            mlog[n].type = type, mlog[n].tags = tags, n++;
        } else {
            CHECK_MSG(rc == FACTUM_ECONDITION, "round %d: %d, the model has a match at %zu", round, rc, want);
            CHECK_EQ(r.conflict_position, want);
        }
        if (round % 1000 == 999) { /* through a reopen: the index from runs and the log */
            factum_close(db);
            db = test_open(test_dir(), &o);
        }
    }
    CHECK_EQ(factum_head_position(db), n);
    factum_close(db);
}

/* ---- multi-stream appends ---- */

TEST(multi_stream_appends_are_all_or_nothing_contiguous_and_idempotent_by_ids) {
    factum_t *db = test_open(test_dir(), NULL);
    CHECK_RC(tagged(db, "b", "Old", NULL, NULL, NULL), 0); /* b is at revision 0 */
    factum_event_t a[2] = {{.type = str_c("A1"), .id = str_c("a-1")}, {.type = str_c("A2"), .id = str_c("a-2")}};
    factum_event_t b[1] = {{.type = str_c("B1"), .id = str_c("b-1")}};
    factum_event_t c[1] = {{.type = str_c("C1"), .id = str_c("c-1")}};
    factum_stream_append_t parts[3] = {{str_c("a"), FACTUM_EXPECT_NO_STREAM, a, 2, {0}},
                                       {str_c("b"), 5, b, 1, {0}},
                                       {str_c("c"), FACTUM_EXPECT_ANY, c, 1, {0}}};
    factum_error_t err;
    CHECK_RC(factum_append_streams(db, parts, 3, NULL, &err), FACTUM_EREVISION);
    CHECK_MSG(strstr(err.message, "stream 'b'"), "%s", err.message);
    CHECK_EQ(parts[1].res.actual_revision, 0);
    CHECK_EQ(factum_head_position(db), 1); /* nothing of a or c either */
    CHECK_EQ(factum_stream_revision(db, str_c("a")), -1);
    parts[1].expected = 0;
    CHECK_RC(factum_append_streams(db, parts, 3, NULL, &err), 0);
    CHECK_EQ(parts[0].res.first_position, 1);
    CHECK_EQ(parts[0].res.last_position, 2);
    CHECK_EQ(parts[1].res.first_position, 3);
    CHECK_EQ(parts[1].res.first_revision, 1);
    CHECK_EQ(parts[2].res.last_position, 4);
    /* The same ids again: an idempotent repeat of the whole append, whatever the expectations. */
    CHECK_RC(factum_append_streams(db, parts, 3, NULL, &err), 0);
    CHECK(parts[0].res.idempotent && parts[1].res.idempotent && parts[2].res.idempotent);
    CHECK_EQ(parts[1].res.first_position, 3);
    /* Some parts repeated, one new: refused whole. */
    factum_event_t d[1] = {{.type = str_c("D1"), .id = str_c("d-1")}};
    parts[2] = (factum_stream_append_t){str_c("d"), FACTUM_EXPECT_ANY, d, 1, {0}};
    CHECK_RC(factum_append_streams(db, parts, 3, NULL, &err), FACTUM_ECONFLICT);
    CHECK_EQ(factum_head_position(db), 5);
    /* A stream twice; a condition that fails: nothing written. */
    factum_stream_append_t twice[2] = {{str_c("x"), FACTUM_EXPECT_ANY, d, 1, {0}},
                                       {str_c("x"), FACTUM_EXPECT_ANY, c, 1, {0}}};
    CHECK_RC(factum_append_streams(db, twice, 2, NULL, &err), FACTUM_EINVAL);
    CHECK_MSG(strstr(err.message, "given twice"), "%s", err.message);
    q1 q;
    factum_condition_t cond = {*query(&q, "", "stream:a"), 0};
    factum_stream_append_t two[2] = {{str_c("x"), FACTUM_EXPECT_ANY, d, 1, {0}},
                                     {str_c("y"), FACTUM_EXPECT_ANY, c, 1, {0}}};
    CHECK_RC(factum_append_streams(db, two, 2, &cond, &err), FACTUM_ECONDITION);
    CHECK_EQ(two[0].res.conflict_position, 1);
    CHECK_EQ(factum_head_position(db), 5);
    cond.after = 4;
    CHECK_RC(factum_append_streams(db, two, 2, &cond, &err), 0);
    CHECK_EQ(two[1].res.last_position, 6);
    factum_close(db);
    /* Only the last record of a multi-stream append ends a batch: recovery keeps all or none. */
    db = test_open(test_dir(), NULL);
    CHECK_EQ(factum_head_position(db), 7);
    factum_result_t *res;
    factum_query_t all = {.limit = 100};
    CHECK_RC(factum_read_all(db, &all, &res, NULL), 0);
    CHECK_EQ(factum_result_count(res), 7);
    factum_result_free(res);
    factum_close(db);
}

static int refuse_all(void *ctx, factum_proposal_t *p) {
    (void)ctx, (void)p;
    return FACTUM_ENOTLEADER;
}

TEST(conditional_and_multi_stream_appends_are_refused_in_cluster_mode_with_a_clear_error) {
    factum_t *db = test_open(test_dir(), NULL);
    CHECK_RC(tagged(db, "s", "T", "a", NULL, NULL), 0);
    factum_set_replicator(db, refuse_all, NULL); /* what cluster mode installs */
    factum_error_t err;
    q1 q;
    factum_condition_t c = {*query(&q, "", "a"), FACTUM_AFTER_NONE};
    factum_event_t e = {.type = str_c("T")};
    CHECK_RC(factum_append_if(db, str_c("s"), FACTUM_EXPECT_ANY, &e, 1, &c, NULL, &err), FACTUM_EINVAL);
    CHECK_MSG(strstr(err.message, "not supported in cluster mode"), "%s", err.message);
    factum_stream_append_t part = {str_c("s"), FACTUM_EXPECT_ANY, &e, 1, {0}};
    CHECK_RC(factum_append_streams(db, &part, 1, NULL, &err), FACTUM_EINVAL);
    CHECK_MSG(strstr(err.message, "not supported in cluster mode"), "%s", err.message);
    factum_set_replicator(db, NULL, NULL);
    CHECK_EQ(factum_head_position(db), 1);
    /* One past the streams of one append. */
    factum_stream_append_t parts[FACTUM_MAX_STREAMS + 1];
    char names[FACTUM_MAX_STREAMS + 1][16];
    for (int i = 0; i <= FACTUM_MAX_STREAMS; i++) {
        snprintf(names[i], sizeof names[i], "m-%d", i);
        parts[i] = (factum_stream_append_t){str_c(names[i]), FACTUM_EXPECT_ANY, &e, 1, {0}};
    }
    CHECK_RC(factum_append_streams(db, parts, FACTUM_MAX_STREAMS + 1, NULL, &err), FACTUM_ETOOBIG);
    CHECK_RC(factum_append_streams(db, parts, FACTUM_MAX_STREAMS, NULL, &err), 0);
    CHECK_EQ(parts[FACTUM_MAX_STREAMS - 1].res.last_position, FACTUM_MAX_STREAMS);
    factum_close(db);
}
