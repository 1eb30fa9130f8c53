/*
 * test_model.c — property test: random appends (any expected revision, repeats of old ids,
 * batches), random reads of streams and $all, and reopens, checked against a trivially
 * correct in-memory model. Small segments and a tiny memtable push the engine through
 * segment rolls, index flushes and merges.
 */
#include "test.h"

#include "../src/store/store.h"

#include <string.h>

#define NSTREAMS 40
#define MAXEV 6000

typedef struct {
    int stream;
    uint64_t revision;
    char id[24];
    char data[64];
} mevent;

static mevent log_[MAXEV];
static size_t nlog;
static int64_t last_rev[NSTREAMS];
static size_t by_stream[NSTREAMS][MAXEV];
static size_t nby[NSTREAMS];

static void stream_name(int s, char *out) { snprintf(out, 32, "%s-%d", s % 3 ? "acct" : "order", s); }

static void check_event(const factum_event_t *e, size_t pos) {
    CHECK_MSG(pos < nlog, "position %zu beyond model end %zu", pos, nlog);
    const mevent *m = &log_[pos];
    char name[32];
    stream_name(m->stream, name);
    CHECK_EQ(e->position, pos);
    CHECK_EQ(e->revision, m->revision);
    CHECK_MSG(str_eq(e->stream, str_c(name)), "stream at %zu", pos);
    CHECK_MSG(str_eq(e->id, str_c(m->id)), "id at %zu", pos);
    CHECK_MSG(str_eq(e->data, str_c(m->data)), "data at %zu", pos);
}

static void do_append(factum_t *db) {
    int s = (int)(test_rand() % NSTREAMS);
    char name[32];
    stream_name(s, name);
    /* Sometimes repeat an earlier event of this stream exactly: must be idempotent. */
    if (nby[s] && test_rand() % 8 == 0) {
        const mevent *m = &log_[by_stream[s][test_rand() % nby[s]]];
        factum_append_result_t r;
        int rc = test_append(db, name, (int64_t)(test_rand() % 5) - 3, "T", m->data, m->id, &r);
        CHECK_RC(rc, 0);
        CHECK(r.idempotent && r.last_revision == m->revision);
        return;
    }
    size_t n = 1 + (test_rand() % 4 == 0 ? test_rand() % 5 : 0);
    if (nlog + n > MAXEV) return;
    factum_event_t ev[8];
    mevent pending[8];
    for (size_t i = 0; i < n; i++) {
        pending[i].stream = s;
        snprintf(pending[i].id, sizeof pending[i].id, "e%zu-%llu", nlog + i, (unsigned long long)(test_rand() % 1000));
        snprintf(pending[i].data, sizeof pending[i].data, "{\"n\":%llu}", (unsigned long long)test_rand());
        ev[i] = (factum_event_t){.type = str_c("T"),
                                 .id = str_c(pending[i].id),
                                 .data = str_c(pending[i].data),
                                 .data_format = FACTUM_DATA_JSON};
    }
    int64_t expect;
    switch (test_rand() % 4) {
    case 0: expect = FACTUM_EXPECT_ANY; break;
    case 1: expect = last_rev[s] < 0 || test_rand() % 2 ? FACTUM_EXPECT_NO_STREAM : FACTUM_EXPECT_EXISTS; break;
    case 2: expect = last_rev[s]; break;
    default: expect = (int64_t)(test_rand() % 6); break;
    }
    bool ok = expect == FACTUM_EXPECT_ANY || (expect == FACTUM_EXPECT_NO_STREAM && last_rev[s] < 0) ||
              (expect == FACTUM_EXPECT_EXISTS && last_rev[s] >= 0) || expect == last_rev[s];
    factum_append_result_t r;
    int rc = factum_append(db, str_c(name), expect, ev, n, &r, NULL);
    if (!ok) {
        CHECK_RC(rc, FACTUM_EREVISION);
        CHECK_EQ(r.actual_revision, last_rev[s]);
        return;
    }
    CHECK_RC(rc, 0);
    CHECK_EQ(r.first_position, nlog);
    CHECK_EQ(r.first_revision, last_rev[s] + 1);
    for (size_t i = 0; i < n; i++) {
        pending[i].revision = (uint64_t)(++last_rev[s]);
        by_stream[s][nby[s]++] = nlog;
        log_[nlog++] = pending[i];
    }
}

static void do_read_stream(factum_t *db) {
    int s = (int)(test_rand() % NSTREAMS);
    char name[32];
    stream_name(s, name);
    bool backward = test_rand() % 2;
    uint64_t from = test_rand() % (nby[s] + 3);
    if (backward && test_rand() % 3 == 0) from = FACTUM_END;
    size_t limit = 1 + test_rand() % 20;
    factum_result_t *res;
    int rc = factum_read_stream(db, str_c(name), from, limit, backward, &res, NULL);
    if (nby[s] == 0) {
        CHECK_RC(rc, FACTUM_ENOTFOUND);
        return;
    }
    CHECK_RC(rc, 0);
    size_t want = 0;
    for (size_t k = 0; k < nby[s]; k++) {
        size_t idx = backward ? nby[s] - 1 - k : k;
        uint64_t rev = log_[by_stream[s][idx]].revision;
        if (backward ? (from != FACTUM_END && rev > from) : rev < from) continue;
        if (want == limit) break;
        CHECK_MSG(want < factum_result_count(res), "stream %s from %llu: too few events", name,
                  (unsigned long long)from);
        check_event(factum_result_event(res, want), by_stream[s][idx]);
        want++;
    }
    CHECK_EQ(factum_result_count(res), want);
    factum_result_free(res);
}

static void do_read_all(factum_t *db) {
    factum_query_t q = {.limit = 1 + test_rand() % 50, .backward = test_rand() % 2};
    q.from = nlog ? test_rand() % (nlog + 2) : 0;
    int filter = (int)(test_rand() % 3);
    if (filter == 1) q.category = str_c("order");
    factum_result_t *res;
    CHECK_RC(factum_read_all(db, &q, &res, NULL), 0);
    size_t got = 0;
    for (size_t k = 0; k < nlog; k++) {
        size_t pos = q.backward ? nlog - 1 - k : k;
        if (q.backward ? pos > q.from : pos < q.from) continue;
        if (filter == 1 && log_[pos].stream % 3) continue;
        if (got == q.limit) break;
        CHECK(got < factum_result_count(res));
        check_event(factum_result_event(res, got), pos);
        got++;
    }
    CHECK_EQ(factum_result_count(res), got);
    factum_result_free(res);
}

/* A page of the stream listing: the model's streams with events, in name order. */
static void do_list_streams(factum_t *db) {
    char after[32] = "", name[32];
    if (test_rand() % 2) stream_name((int)(test_rand() % NSTREAMS), after);
    size_t limit = 1 + test_rand() % 10;
    factum_names_t *l;
    CHECK_RC(factum_list_streams(db, str_c(""), str_c(after), limit, 0, &l, NULL), 0);
    size_t got = 0;
    const char *prev = after;
    for (;;) { /* the model's next name after prev: the smallest name greater than it */
        const char *best = NULL;
        char cand[32], keep[32];
        for (int s = 0; s < NSTREAMS; s++) {
            if (!nby[s]) continue;
            stream_name(s, cand);
            if (strcmp(cand, prev) > 0 && (!best || strcmp(cand, best) < 0)) strcpy(keep, cand), best = keep;
        }
        if (!best || got == limit) break;
        CHECK_MSG(got < factum_names_count(l), "listing after '%s': %s missing", after, best);
        factum_str_t n = factum_names_name(l, got);
        CHECK_MSG(str_eq(n, str_c(best)), "listing after '%s': %.*s where %s", after, (int)n.len, n.ptr, best);
        strcpy(name, best), prev = name;
        got++;
    }
    CHECK_EQ(factum_names_count(l), got);
    factum_names_free(l);
}

static void model_run(void) {
    factum_options_t o = {.segment_bytes = 1 << 16, .memtable_events = 50, .stream_cache = 8};
    for (int s = 0; s < NSTREAMS; s++)
        last_rev[s] = -1;
    factum_t *db = test_open(test_dir(), &o);
    for (int step = 0; step < 8000; step++) {
        uint64_t op = test_rand() % 100;
        if (op < 55)
            do_append(db);
        else if (op < 80)
            do_read_stream(db);
        else if (op < 96)
            do_read_all(db);
        else if (op < 98)
            do_list_streams(db);
        else {
            factum_close(db);
            db = test_open(test_dir(), &o);
            CHECK_EQ(factum_head_position(db), nlog);
        }
        if (step % 500 == 0) CHECK_EQ(factum_head_position(db), nlog);
    }
    for (int s = 0; s < NSTREAMS; s++) {
        char name[32];
        stream_name(s, name);
        CHECK_EQ(factum_stream_revision(db, str_c(name)), last_rev[s]);
    }
    /* The run went through segment rolls, index flushes and merges, not just the memtable. */
    index_quiesce(db->index);
    index_stats_t st;
    index_stats(db->index, &st);
    CHECK_MSG(st.runs > 0 && st.run_entries > 0, "no index runs");
    CHECK(atomic_load(&db->nsegs) > 3);
    factum_close(db);
}

TEST_T(store_answers_like_a_simple_model_under_random_operations, 120) { model_run(); }

/* With index keys cut to 3 bits, streams, ids and correlations share keys all the time: every
   reader must tell them apart by the records, and every answer must still match the model. */
TEST_T(store_answers_like_the_model_when_index_keys_collide, 120) {
    index_key_bits = 3;
    model_run();
}
