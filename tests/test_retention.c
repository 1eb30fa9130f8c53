/*
 * test_retention.c — stream metadata in the engine: max_count, max_age_s, truncate_before,
 * soft delete and tombstones hide events from every read at once, survive a reopen, and a
 * random history of appends and metadata changes reads exactly as a model says.
 */
#include "test.h"

#include <unistd.h>

static size_t count_stream(factum_t *db, const char *stream, uint64_t *first) {
    factum_result_t *r;
    int rc = factum_read_stream(db, str_c(stream), 0, 1000, 0, &r, NULL);
    if (rc) return rc == FACTUM_ENOTFOUND ? (size_t)-1 : (size_t)-2;
    size_t n = factum_result_count(r);
    if (first) *first = n ? factum_result_event(r, 0)->revision : UINT64_MAX;
    factum_result_free(r);
    return n;
}

static size_t count_all(factum_t *db, const char *category) {
    factum_query_t q = {.limit = 100000, .category = str_c(category ? category : "")};
    factum_result_t *r;
    if (factum_read_all(db, &q, &r, NULL)) return (size_t)-1;
    size_t n = factum_result_count(r);
    factum_result_free(r);
    return n;
}

static void fill(factum_t *db, const char *stream, int n) {
    for (int i = 0; i < n; i++)
        CHECK_RC(test_append(db, stream, FACTUM_EXPECT_ANY, "Added", "{}", NULL, NULL), 0);
}

TEST(max_count_and_truncate_before_hide_events_from_every_read_and_survive_a_reopen) {
    const char *dir = test_dir();
    factum_t *db = test_open(dir, NULL);
    fill(db, "cart-1", 10);
    fill(db, "cart-2", 5);
    factum_meta_t m = {.max_count = 3, .custom = str_c("{\"owner\":\"ann\"}")};
    factum_append_result_t res;
    CHECK_RC(factum_meta_set(db, str_c("cart-1"), &m, &res, NULL), 0);
    CHECK_EQ(res.actual_revision, 9);
    uint64_t first;
    CHECK_EQ(count_stream(db, "cart-1", &first), 3);
    CHECK_EQ(first, 7);
    CHECK_EQ(count_all(db, NULL), 8);
    CHECK_EQ(count_all(db, "cart"), 8);
    fill(db, "cart-1", 2); /* the window moves with the stream */
    CHECK_EQ(count_stream(db, "cart-1", &first), 3);
    CHECK_EQ(first, 9);
    /* Backward reads stop at the window too. */
    factum_result_t *r;
    CHECK_RC(factum_read_stream(db, str_c("cart-1"), FACTUM_END, 100, 1, &r, NULL), 0);
    CHECK_EQ(factum_result_count(r), 3);
    factum_result_free(r);
    /* Widening keeps hidden what was hidden: the old window is folded into truncate_before. */
    m.max_count = 0;
    CHECK_RC(factum_meta_set(db, str_c("cart-1"), &m, NULL, NULL), 0);
    factum_meta_t got;
    CHECK_RC(factum_meta_get(db, str_c("cart-1"), &got, NULL), 0);
    CHECK_EQ(got.truncate_before, 9);
    CHECK(got.custom.len == 15 && !memcmp(got.custom.ptr, "{\"owner\":\"ann\"}", 15));
    factum_meta_free(&got);
    CHECK_EQ(count_stream(db, "cart-1", NULL), 3);
    /* truncate_before never moves back; a bad custom value is refused; nothing changes. */
    m.truncate_before = 4;
    factum_error_t err;
    CHECK_RC(factum_meta_set(db, str_c("cart-1"), &m, NULL, &err), FACTUM_EINVAL);
    CHECK(strstr(err.message, "cannot move back"));
    m.truncate_before = 0, m.custom = str_c("[1]");
    CHECK_RC(factum_meta_set(db, str_c("cart-1"), &m, NULL, &err), FACTUM_EINVAL);
    static char big[FACTUM_MAX_META_CUSTOM + 1];
    memset(big, ' ', sizeof big);
    big[0] = '{', big[FACTUM_MAX_META_CUSTOM - 1] = '}';
    m.custom = (factum_str_t){big, FACTUM_MAX_META_CUSTOM}; /* exactly the limit */
    CHECK_RC(factum_meta_set(db, str_c("cart-2"), &m, NULL, &err), 0);
    big[FACTUM_MAX_META_CUSTOM - 1] = ' ', big[FACTUM_MAX_META_CUSTOM] = '}';
    m.custom = (factum_str_t){big, FACTUM_MAX_META_CUSTOM + 1}; /* one byte past it */
    CHECK_RC(factum_meta_set(db, str_c("cart-2"), &m, NULL, &err), FACTUM_ETOOBIG);
    CHECK_RC(test_append(db, "$metadata", FACTUM_EXPECT_ANY, "X", "{}", NULL, NULL), FACTUM_EBADSTREAM);
    m = (factum_meta_t){.truncate_before = 2};
    CHECK_RC(factum_meta_set(db, str_c("cart-2"), &m, NULL, NULL), 0);
    CHECK_EQ(count_stream(db, "cart-2", &first), 3);
    CHECK_EQ(first, 2);
    factum_close(db);
    db = test_open(dir, NULL);
    CHECK_EQ(count_stream(db, "cart-1", &first), 3);
    CHECK_EQ(first, 9);
    CHECK_EQ(count_stream(db, "cart-2", &first), 3);
    CHECK_EQ(count_all(db, NULL), 6);
    /* The metadata records are in $metadata, a system stream. */
    factum_query_t q = {.limit = 100, .system = 1};
    CHECK_RC(factum_read_all(db, &q, &r, NULL), 0);
    CHECK_EQ(factum_result_count(r), 6 + 4);
    factum_result_free(r);
    factum_close(db);
}

TEST(soft_delete_hides_a_stream_until_it_is_appended_to_again_and_tombstones_are_for_ever) {
    const char *dir = test_dir();
    factum_t *db = test_open(dir, NULL);
    fill(db, "order-1", 4);
    fill(db, "order-2", 2);
    factum_append_result_t res;
    factum_error_t err;
    /* The expected revision is checked with the deletion. */
    CHECK_RC(factum_delete_stream(db, str_c("order-1"), 2, 0, &res, &err), FACTUM_EREVISION);
    CHECK_EQ(res.actual_revision, 3);
    CHECK_EQ(count_stream(db, "order-1", NULL), 4);
    CHECK_RC(factum_delete_stream(db, str_c("order-1"), 3, 0, &res, NULL), 0);
    CHECK_EQ(count_stream(db, "order-1", NULL), (size_t)-1);
    CHECK_EQ(count_all(db, NULL), 2);
    CHECK_RC(factum_delete_stream(db, str_c("order-1"), FACTUM_EXPECT_ANY, 0, NULL, NULL), FACTUM_ENOTFOUND);
    CHECK_RC(factum_delete_stream(db, str_c("nothing-1"), FACTUM_EXPECT_ANY, 0, NULL, NULL), FACTUM_ENOTFOUND);
    /* A deleted stream has no revision for expectations; appending continues after the old one. */
    CHECK_RC(test_append(db, "order-1", FACTUM_EXPECT_EXISTS, "Again", "{}", NULL, NULL), FACTUM_EREVISION);
    CHECK_RC(test_append(db, "order-1", FACTUM_EXPECT_NO_STREAM, "Again", "{}", NULL, &res), 0);
    CHECK_EQ(res.first_revision, 4);
    uint64_t first;
    CHECK_EQ(count_stream(db, "order-1", &first), 1);
    CHECK_EQ(first, 4);
    CHECK_EQ(count_all(db, "order"), 3);
    /* Tombstone. */
    CHECK_RC(factum_delete_stream(db, str_c("order-2"), FACTUM_EXPECT_NO_STREAM, 1, NULL, NULL), FACTUM_EREVISION);
    CHECK_RC(factum_delete_stream(db, str_c("order-2"), 1, 1, NULL, NULL), 0);
    factum_result_t *r;
    CHECK_RC(factum_read_stream(db, str_c("order-2"), 0, 10, 0, &r, &err), FACTUM_EDELETED);
    CHECK_RC(test_append(db, "order-2", FACTUM_EXPECT_ANY, "X", "{}", NULL, NULL), FACTUM_EDELETED);
    CHECK_RC(factum_delete_stream(db, str_c("order-2"), FACTUM_EXPECT_ANY, 0, NULL, NULL), FACTUM_EDELETED);
    factum_meta_t m = {0};
    CHECK_RC(factum_meta_set(db, str_c("order-2"), &m, NULL, NULL), FACTUM_EDELETED);
    CHECK_RC(factum_delete_stream(db, str_c("never-1"), FACTUM_EXPECT_ANY, 1, NULL, NULL), 0); /* reserves the name */
    CHECK_RC(test_append(db, "never-1", FACTUM_EXPECT_ANY, "X", "{}", NULL, NULL), FACTUM_EDELETED);
    factum_close(db);
    db = test_open(dir, NULL);
    CHECK_RC(factum_read_stream(db, str_c("order-2"), 0, 10, 0, &r, NULL), FACTUM_EDELETED);
    CHECK_RC(test_append(db, "never-1", FACTUM_EXPECT_ANY, "X", "{}", NULL, NULL), FACTUM_EDELETED);
    CHECK_EQ(count_stream(db, "order-1", &first), 1);
    factum_meta_t got;
    CHECK_RC(factum_meta_get(db, str_c("order-2"), &got, NULL), 0);
    CHECK(got.tombstone && got.deleted && got.truncate_before == 2);
    factum_meta_free(&got);
    factum_close(db);
}

TEST(max_age_hides_events_older_than_it_and_keeps_newer_ones) {
    factum_t *db = test_open(test_dir(), NULL);
    fill(db, "tick-1", 3);
    usleep(1200000);
    fill(db, "tick-1", 2);
    factum_meta_t m = {.max_age_s = 1};
    CHECK_RC(factum_meta_set(db, str_c("tick-1"), &m, NULL, NULL), 0);
    uint64_t first;
    CHECK_EQ(count_stream(db, "tick-1", &first), 2);
    CHECK_EQ(first, 3);
    CHECK_EQ(count_all(db, NULL), 2);
    /* Reading from a revision inside the hidden part starts at the first visible one. */
    factum_result_t *r;
    CHECK_RC(factum_read_stream(db, str_c("tick-1"), 1, 10, 0, &r, NULL), 0);
    CHECK(factum_result_count(r) == 2 && factum_result_event(r, 0)->revision == 3);
    factum_result_free(r);
    factum_close(db);
}

/* ---- a random history against a model ---- */

#define MS 6
typedef struct mstream {
    int64_t last; /* last revision, -1 none */
    uint64_t tb, max_count;
    bool deleted, tomb, has;
    uint64_t pos[400]; /* position of each revision */
} mstream;

static uint64_t model_floor(const mstream *s) {
    uint64_t f = s->tb;
    if (s->max_count && s->last >= 0 && (uint64_t)s->last + 1 > s->max_count)
        f = MAX(f, (uint64_t)s->last + 1 - s->max_count);
    return f;
}
static bool model_visible(const mstream *s, uint64_t rev) { return !s->tomb && rev >= model_floor(s); }

static void model_check(factum_t *db, mstream *ms) {
    size_t total = 0;
    for (int k = 0; k < MS; k++) {
        char name[16];
        snprintf(name, sizeof name, "s-%d", k);
        mstream *s = &ms[k];
        factum_result_t *r;
        int rc = factum_read_stream(db, str_c(name), 0, 1000, 0, &r, NULL);
        if (s->tomb) {
            CHECK_RC(rc, FACTUM_EDELETED);
            continue;
        }
        if (s->last < 0 || (s->deleted && s->last < (int64_t)s->tb)) {
            CHECK_RC(rc, FACTUM_ENOTFOUND);
            continue;
        }
        CHECK_RC(rc, 0);
        size_t want = 0;
        for (int64_t v = 0; v <= s->last; v++)
            want += model_visible(s, (uint64_t)v);
        CHECK_MSG(factum_result_count(r) == want, "%s: %zu events, model %zu", name, factum_result_count(r), want);
        for (size_t i = 0; i < factum_result_count(r); i++) {
            const factum_event_t *e = factum_result_event(r, i);
            CHECK(model_visible(s, e->revision) && e->position == s->pos[e->revision]);
        }
        total += want;
        factum_result_free(r);
    }
    factum_query_t q = {.limit = 100000};
    factum_result_t *r;
    CHECK_RC(factum_read_all(db, &q, &r, NULL), 0);
    CHECK_MSG(factum_result_count(r) == total, "$all: %zu, model %zu", factum_result_count(r), total);
    factum_result_free(r);
}

TEST(a_random_history_of_appends_metadata_and_deletes_reads_as_the_model_says) {
    const char *dir = test_dir();
    factum_t *db = test_open(dir, NULL);
    mstream ms[MS];
    memset(ms, 0, sizeof ms);
    for (int k = 0; k < MS; k++)
        ms[k].last = -1;
    for (int step = 0; step < 1500; step++) {
        int k = (int)(test_rand() % MS), op = (int)(test_rand() % 20);
        char name[16];
        snprintf(name, sizeof name, "s-%d", k);
        mstream *s = &ms[k];
        factum_append_result_t res;
        if (op < 13) {
            if (s->last >= 390) continue;
            int rc = test_append(db, name, FACTUM_EXPECT_ANY, "E", "{}", NULL, &res);
            if (s->tomb) {
                CHECK_RC(rc, FACTUM_EDELETED);
                continue;
            }
            CHECK_RC(rc, 0);
            CHECK_EQ(res.first_revision, s->last + 1);
            s->pos[++s->last] = res.first_position;
        } else if (op < 16) {
            factum_meta_t m = {.max_count = test_rand() % 3 ? 0 : 1 + test_rand() % 6};
            if (test_rand() % 2) m.truncate_before = s->tb + test_rand() % 4;
            int rc = factum_meta_set(db, str_c(name), &m, NULL, NULL);
            if (s->tomb) {
                CHECK_RC(rc, FACTUM_EDELETED);
                continue;
            }
            CHECK_RC(rc, 0);
            uint64_t fold = s->has ? model_floor(s) : 0;
            s->tb = MAX(MAX(s->tb, m.truncate_before), fold);
            s->max_count = m.max_count, s->has = true;
        } else if (op < 19) {
            int rc = factum_delete_stream(db, str_c(name), FACTUM_EXPECT_ANY, 0, NULL, NULL);
            bool gone = s->last < 0 || (s->deleted && s->last < (int64_t)s->tb);
            CHECK_RC(rc, s->tomb ? FACTUM_EDELETED : gone ? FACTUM_ENOTFOUND : 0);
            if (rc == 0) s->tb = MAX(s->tb, (uint64_t)(s->last + 1)), s->deleted = true, s->has = true;
        } else if (test_rand() % 4 == 0) {
            int rc = factum_delete_stream(db, str_c(name), FACTUM_EXPECT_ANY, 1, NULL, NULL);
            CHECK_RC(rc, s->tomb ? FACTUM_EDELETED : 0);
            if (rc == 0) s->tb = MAX(s->tb, (uint64_t)(s->last + 1)), s->deleted = s->tomb = s->has = true;
        } else {
            factum_close(db);
            db = test_open(dir, NULL);
        }
        if (step % 25 == 0) model_check(db, ms);
    }
    model_check(db, ms);
    factum_close(db);
}
