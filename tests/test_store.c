/*
 * test_store.c — the engine's contract through the public API: appends, expected revisions,
 * idempotency, limits, reads of streams and $all, locking, reopening, segment rolls.
 */
#include "test.h"

#include "../src/io/io.h"

#include <pthread.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static factum_options_t small(void) { return (factum_options_t){.segment_bytes = 1 << 16, .memtable_events = 64}; }

TEST(append_assigns_revisions_and_positions_in_commit_order) {
    factum_t *db = test_open(test_dir(), NULL);
    factum_append_result_t r;
    CHECK_RC(test_append(db, "order-1", FACTUM_EXPECT_ANY, "A", "{}", NULL, &r), 0);
    CHECK_EQ(r.first_revision, 0);
    CHECK_EQ(r.last_position, 0);
    CHECK_RC(test_append(db, "order-2", FACTUM_EXPECT_ANY, "A", "{}", NULL, &r), 0);
    CHECK_EQ(r.last_revision, 0);
    CHECK_EQ(r.last_position, 1);
    factum_event_t batch[3] = {{.type = str_c("B")}, {.type = str_c("C")}, {.type = str_c("D")}};
    CHECK_RC(factum_append(db, str_c("order-1"), 0, batch, 3, &r, NULL), 0);
    CHECK_EQ(r.first_revision, 1);
    CHECK_EQ(r.last_revision, 3);
    CHECK_EQ(r.first_position, 2);
    CHECK_EQ(r.last_position, 4);
    CHECK_EQ(factum_head_position(db), 5);
    CHECK_EQ(factum_stream_revision(db, str_c("order-1")), 3);
    CHECK_EQ(factum_stream_revision(db, str_c("nope")), -1);
    factum_close(db);
}

TEST(append_checks_every_kind_of_expected_revision) {
    factum_t *db = test_open(test_dir(), NULL);
    factum_append_result_t r;
    factum_error_t err;
    factum_event_t e = {.type = str_c("T")};
    CHECK_RC(factum_append(db, str_c("s"), FACTUM_EXPECT_EXISTS, &e, 1, &r, &err), FACTUM_EREVISION);
    CHECK_EQ(r.actual_revision, -1);
    CHECK_RC(factum_append(db, str_c("s"), 0, &e, 1, &r, &err), FACTUM_EREVISION);
    CHECK_RC(factum_append(db, str_c("s"), FACTUM_EXPECT_NO_STREAM, &e, 1, &r, &err), 0);
    CHECK_RC(factum_append(db, str_c("s"), FACTUM_EXPECT_NO_STREAM, &e, 1, &r, &err), FACTUM_EREVISION);
    CHECK_EQ(r.actual_revision, 0);
    CHECK(strstr(err.message, "expected revision no stream, actual 0"));
    CHECK_RC(factum_append(db, str_c("s"), FACTUM_EXPECT_EXISTS, &e, 1, &r, &err), 0);
    CHECK_RC(factum_append(db, str_c("s"), 0, &e, 1, &r, &err), FACTUM_EREVISION);
    CHECK_EQ(r.actual_revision, 1);
    CHECK_RC(factum_append(db, str_c("s"), 1, &e, 1, &r, &err), 0);
    CHECK_RC(factum_append(db, str_c("s"), -4, &e, 1, &r, &err), FACTUM_EINVAL);
    CHECK_EQ(factum_head_position(db), 3);
    factum_close(db);
}

TEST(append_is_idempotent_by_event_id_whatever_the_expected_revision) {
    factum_t *db = test_open(test_dir(), NULL);
    factum_append_result_t r;
    factum_error_t err;
    CHECK_RC(test_append(db, "s", FACTUM_EXPECT_NO_STREAM, "T", "{\"a\":1}", "id-1", &r), 0);
    CHECK_RC(test_append(db, "s", FACTUM_EXPECT_ANY, "T", "{\"a\":2}", "id-2", &r), 0);
    /* The same event again, even with an expected revision that would now fail. */
    CHECK_RC(test_append(db, "s", FACTUM_EXPECT_NO_STREAM, "T", "{\"a\":1}", "id-1", &r), 0);
    CHECK(r.idempotent);
    CHECK_EQ(r.last_revision, 0);
    CHECK_EQ(r.last_position, 0);
    CHECK_EQ(factum_head_position(db), 2);
    /* Same id, other content. */
    factum_event_t e = {
        .type = str_c("T"), .id = str_c("id-1"), .data = str_c("{\"a\":9}"), .data_format = FACTUM_DATA_JSON};
    CHECK_RC(factum_append(db, str_c("s"), FACTUM_EXPECT_ANY, &e, 1, &r, &err), FACTUM_ECONFLICT);
    CHECK(strstr(err.message, "id-1"));
    /* A whole batch repeated, and a batch that repeats only part. */
    factum_event_t b[2] = {
        {.type = str_c("T"), .id = str_c("id-1"), .data = str_c("{\"a\":1}"), .data_format = FACTUM_DATA_JSON},
        {.type = str_c("T"), .id = str_c("id-2"), .data = str_c("{\"a\":2}"), .data_format = FACTUM_DATA_JSON}};
    CHECK_RC(factum_append(db, str_c("s"), 7, b, 2, &r, &err), 0);
    CHECK(r.idempotent);
    CHECK_EQ(r.first_revision, 0);
    CHECK_EQ(r.last_revision, 1);
    b[1].id = str_c("id-3");
    CHECK_RC(factum_append(db, str_c("s"), FACTUM_EXPECT_ANY, b, 2, &r, &err), FACTUM_ECONFLICT);
    /* Ids are per stream: the same id in another stream is a new event. */
    CHECK_RC(test_append(db, "t", FACTUM_EXPECT_ANY, "T", "{\"a\":1}", "id-1", &r), 0);
    CHECK(!r.idempotent);
    CHECK_EQ(factum_head_position(db), 3);
    factum_close(db);
    /* Permanent: after reopening, and after the index went to run files. */
    factum_options_t o = {.memtable_events = 1};
    db = test_open(test_dir(), &o);
    CHECK_RC(test_append(db, "s", FACTUM_EXPECT_ANY, "T", "{\"a\":2}", "id-2", &r), 0);
    CHECK(r.idempotent);
    CHECK_EQ(r.last_revision, 1);
    CHECK_EQ(factum_head_position(db), 3);
    factum_close(db);
}

TEST(bad_input_gets_a_clear_error_and_changes_nothing) {
    factum_options_t o = {.max_data_bytes = 1000};
    factum_t *db = test_open(test_dir(), &o);
    factum_append_result_t r;
    factum_error_t err;
    CHECK_RC(test_append(db, "s", FACTUM_EXPECT_ANY, "T", "{}", NULL, &r), 0);
    struct {
        const char *stream, *type, *data, *ext, *id;
        int want;
        const char *msg;
    } cases[] = {
        {"s", "", "{}", NULL, NULL, FACTUM_EBADEVENT, "'type' is required"},
        {"", "T", "{}", NULL, NULL, FACTUM_EBADSTREAM, "1 to 255"},
        {"a/b", "T", "{}", NULL, NULL, FACTUM_EBADSTREAM, "'/'"},
        {"a b", "T", "{}", NULL, NULL, FACTUM_EBADSTREAM, "spaces"},
        {"$all", "T", "{}", NULL, NULL, FACTUM_EBADSTREAM, "global log"},
        {"s", "T", "{bad", NULL, NULL, FACTUM_EBADEVENT, "not valid JSON"},
        {"s", "T\n", "{}", NULL, NULL, FACTUM_EBADEVENT, "control characters"},
        {"s", "T", "{}", "\"Bad\":1", NULL, FACTUM_EBADEVENT, "lowercase"},
        {"s", "T", "{}", "\"type\":1", NULL, FACTUM_EBADEVENT, "not an extension"},
        {"s", "T", "{}", "\"a\":1,\"a\":2", NULL, FACTUM_EBADEVENT, "twice"},
        {"s", "T", "{}", "\"a\":", NULL, FACTUM_EBADEVENT, "JSON members"},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        factum_event_t e = {.type = str_c(cases[i].type),
                            .data = str_c(cases[i].data),
                            .data_format = FACTUM_DATA_JSON,
                            .extensions = str_c(cases[i].ext),
                            .id = str_c(cases[i].id)};
        err.message[0] = 0;
        int rc = factum_append(db, str_c(cases[i].stream), FACTUM_EXPECT_ANY, &e, 1, &r, &err);
        CHECK_MSG(rc == cases[i].want, "case %zu: %s, expected %s", i, factum_errname(rc),
                  factum_errname(cases[i].want));
        CHECK_MSG(strstr(err.message, cases[i].msg), "case %zu: message '%s' lacks '%s'", i, err.message, cases[i].msg);
    }
    /* Limits, at the limit and one past it. */
    char name[300], big[1100];
    memset(name, 'n', sizeof name);
    CHECK_RC(factum_append(db, (factum_str_t){name, 255}, FACTUM_EXPECT_ANY, &(factum_event_t){.type = str_c("T")}, 1,
                           &r, &err),
             0);
    CHECK_RC(factum_append(db, (factum_str_t){name, 256}, FACTUM_EXPECT_ANY, &(factum_event_t){.type = str_c("T")}, 1,
                           &r, &err),
             FACTUM_EBADSTREAM);
    CHECK_RC(factum_append(db, str_c("s"), FACTUM_EXPECT_ANY, &(factum_event_t){.type = {name, 255}}, 1, &r, &err), 0);
    CHECK_RC(factum_append(db, str_c("s"), FACTUM_EXPECT_ANY, &(factum_event_t){.type = {name, 256}}, 1, &r, &err),
             FACTUM_ETOOBIG);
    memset(big, 'x', sizeof big);
    factum_event_t e = {.type = str_c("T"), .data = {big, 1000}, .data_format = FACTUM_DATA_BINARY};
    CHECK_RC(factum_append(db, str_c("s"), FACTUM_EXPECT_ANY, &e, 1, &r, &err), 0);
    e.data.len = 1001;
    CHECK_RC(factum_append(db, str_c("s"), FACTUM_EXPECT_ANY, &e, 1, &r, &err), FACTUM_ETOOBIG);
    CHECK(strstr(err.message, "limit is 1000"));
    factum_event_t *many = calloc(FACTUM_MAX_BATCH_EVENTS + 1, sizeof *many);
    for (int i = 0; i <= FACTUM_MAX_BATCH_EVENTS; i++)
        many[i].type = str_c("T");
    CHECK_RC(factum_append(db, str_c("s"), FACTUM_EXPECT_ANY, many, FACTUM_MAX_BATCH_EVENTS + 1, &r, &err),
             FACTUM_ETOOBIG);
    uint64_t before = factum_head_position(db);
    /* A batch with one bad event appends none of them. */
    many[5].type = str_c("");
    CHECK_RC(factum_append(db, str_c("s"), FACTUM_EXPECT_ANY, many, 10, &r, &err), FACTUM_EBADEVENT);
    CHECK(strstr(err.message, "event 5"));
    many[5].type = str_c("T");
    many[1].id = many[2].id = str_c("dup");
    CHECK_RC(factum_append(db, str_c("s"), FACTUM_EXPECT_ANY, many, 10, &r, &err), FACTUM_EBADEVENT);
    CHECK(strstr(err.message, "twice"));
    CHECK_EQ(factum_head_position(db), before);
    many[1].id = many[2].id = str_c("");
    CHECK_RC(factum_append(db, str_c("s"), FACTUM_EXPECT_ANY, many, FACTUM_MAX_BATCH_EVENTS, &r, &err), 0);
    CHECK_EQ(factum_head_position(db), before + FACTUM_MAX_BATCH_EVENTS);
    free(many);
    factum_close(db);
}

TEST(events_keep_every_attribute_and_data_byte_for_byte) {
    factum_t *db = test_open(test_dir(), NULL);
    const char *data = "{ \"b\" : [1, 2.50, \"\\u00e9\"],\n\"a\":null }";
    factum_event_t e = {
        .type = str_c("OrderCreated"),
        .id = str_c("my-id"),
        .source = str_c("order-service"),
        .subject = str_c("order-123"),
        .datacontenttype = str_c("application/json"),
        .correlationid = str_c("corr-1"),
        .causationid = str_c("cmd-7"),
        .extensions = str_c("\"traceparent\":\"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\",\"tenant\":7"),
        .data = str_c(data),
        .data_format = FACTUM_DATA_JSON};
    factum_event_t bin = {.type = str_c("Blob"), .data = {"\0\1\2\377", 4}, .data_format = FACTUM_DATA_BINARY};
    CHECK_RC(factum_append(db, str_c("order-123"), FACTUM_EXPECT_ANY, &e, 1, NULL, NULL), 0);
    CHECK_RC(factum_append(db, str_c("order-123"), FACTUM_EXPECT_ANY, &bin, 1, NULL, NULL), 0);
    factum_result_t *res;
    CHECK_RC(factum_read_stream(db, str_c("order-123"), 0, 10, 0, &res, NULL), 0);
    CHECK_EQ(factum_result_count(res), 2);
    const factum_event_t *g = factum_result_event(res, 0);
    CHECK(str_eq(g->data, str_c(data)) && str_eq(g->id, str_c("my-id")) && str_eq(g->subject, str_c("order-123")));
    CHECK(str_eq(g->extensions, e.extensions) && str_eq(g->causationid, str_c("cmd-7")));
    CHECK(g->time_us > 0 && g->time_us <= clock_realtime_us());
    const factum_event_t *gb = factum_result_event(res, 1);
    CHECK(gb->data_format == FACTUM_DATA_BINARY && str_eq(gb->data, bin.data));
    CHECK(gb->id.len == 36 && gb->id.ptr[14] == '7'); /* a generated UUIDv7 */
    CHECK(str_eq(gb->source, str_c("/streams/order-123")));
    CHECK(gb->time_us > g->time_us);
    char json[1024];
    factum_event_json(gb, json, sizeof json);
    CHECK(strstr(json, "\"data_base64\":\"AAEC/w==\""));
    factum_result_free(res);
    factum_close(db);
}

TEST(read_stream_pages_forward_and_backward) {
    factum_options_t o = small();
    factum_t *db = test_open(test_dir(), &o);
    for (int i = 0; i < 300; i++) {
        CHECK_RC(test_append(db, "a-1", FACTUM_EXPECT_ANY, "T", "{}", NULL, NULL), 0);
        CHECK_RC(test_append(db, "b-1", FACTUM_EXPECT_ANY, "T", "{}", NULL, NULL), 0);
    }
    factum_result_t *res;
    uint64_t from = 0, seen = 0;
    for (;;) { /* forward pages of 7 */
        CHECK_RC(factum_read_stream(db, str_c("a-1"), from, 7, 0, &res, NULL), 0);
        size_t n = factum_result_count(res);
        for (size_t i = 0; i < n; i++) {
            CHECK_EQ(factum_result_event(res, i)->revision, seen);
            CHECK_EQ(factum_result_event(res, i)->position, seen * 2);
            seen++;
        }
        from = factum_result_next(res);
        factum_result_free(res);
        if (n < 7) break;
    }
    CHECK_EQ(seen, 300);
    CHECK_RC(factum_read_stream(db, str_c("b-1"), FACTUM_END, 5, 1, &res, NULL), 0);
    CHECK_EQ(factum_result_count(res), 5);
    CHECK_EQ(factum_result_event(res, 0)->revision, 299);
    CHECK_EQ(factum_result_event(res, 4)->revision, 295);
    CHECK_EQ(factum_result_next(res), 294);
    factum_result_free(res);
    CHECK_RC(factum_read_stream(db, str_c("b-1"), 2, 10, 1, &res, NULL), 0);
    CHECK_EQ(factum_result_count(res), 3);
    CHECK_EQ(factum_result_next(res), FACTUM_END);
    factum_result_free(res);
    CHECK_RC(factum_read_stream(db, str_c("b-1"), 300, 10, 0, &res, NULL), 0);
    CHECK_EQ(factum_result_count(res), 0);
    factum_result_free(res);
    CHECK_RC(factum_read_stream(db, str_c("c-1"), 0, 10, 0, &res, NULL), FACTUM_ENOTFOUND);
    factum_close(db);
}

TEST(read_all_filters_by_type_category_and_correlation) {
    factum_options_t o = small();
    factum_t *db = test_open(test_dir(), &o);
    for (int i = 0; i < 200; i++) {
        char stream[32], corr[32];
        snprintf(stream, sizeof stream, "%s-%d", i % 2 ? "order" : "payment", i % 7);
        snprintf(corr, sizeof corr, "c%d", i % 5);
        factum_event_t e = {.type = str_c(i % 3 ? "Created" : "Paid"), .correlationid = str_c(corr)};
        CHECK_RC(factum_append(db, str_c(stream), FACTUM_EXPECT_ANY, &e, 1, NULL, NULL), 0);
    }
    CHECK_RC(test_append(db, "order", FACTUM_EXPECT_ANY, "Created", NULL, NULL, NULL),
             0); /* no dash: category is the name */
    factum_result_t *res;
    factum_query_t q = {.limit = 1000, .category = str_c("order")};
    CHECK_RC(factum_read_all(db, &q, &res, NULL), 0);
    CHECK_EQ(factum_result_count(res), 101);
    factum_result_free(res);
    q = (factum_query_t){.limit = 1000, .type = str_c("Paid"), .category = str_c("payment")};
    CHECK_RC(factum_read_all(db, &q, &res, NULL), 0);
    size_t want = 0;
    for (int i = 0; i < 200; i++)
        want += i % 2 == 0 && i % 3 == 0;
    CHECK_EQ(factum_result_count(res), want);
    factum_result_free(res);
    q = (factum_query_t){.limit = 1000, .correlationid = str_c("c3")};
    CHECK_RC(factum_read_all(db, &q, &res, NULL), 0);
    CHECK_EQ(factum_result_count(res), 40);
    for (size_t i = 0; i < 40; i++)
        CHECK_EQ(factum_result_event(res, i)->position, 3 + 5 * i);
    factum_result_free(res);
    q = (factum_query_t){.limit = 3, .correlationid = str_c("c3"), .backward = 1, .from = FACTUM_END};
    CHECK_RC(factum_read_all(db, &q, &res, NULL), 0);
    CHECK_EQ(factum_result_count(res), 3);
    CHECK_EQ(factum_result_event(res, 0)->position, 198);
    factum_result_free(res);
    q = (factum_query_t){.limit = 10, .from = 195};
    CHECK_RC(factum_read_all(db, &q, &res, NULL), 0);
    CHECK_EQ(factum_result_count(res), 6);
    CHECK_EQ(factum_result_next(res), 201);
    factum_result_free(res);
    q = (factum_query_t){.limit = 4, .from = FACTUM_END, .backward = 1};
    CHECK_RC(factum_read_all(db, &q, &res, NULL), 0);
    CHECK_EQ(factum_result_event(res, 0)->position, 200);
    CHECK_EQ(factum_result_next(res), 196);
    factum_result_free(res);
    factum_close(db);
}

TEST(a_second_opener_is_refused_with_the_owners_pid) {
    factum_t *db = test_open(test_dir(), NULL);
    factum_t *db2 = NULL;
    factum_error_t err;
    CHECK_RC(factum_open(test_dir(), NULL, &db2, &err), FACTUM_ELOCKED);
    char pid[32];
    snprintf(pid, sizeof pid, "process %ld", (long)getpid());
    CHECK_MSG(strstr(err.message, pid), "message: %s", err.message);
    pid_t child = fork();
    if (child == 0) {
        factum_t *d = NULL;
        factum_error_t e2;
        _exit(factum_open(test_dir(), NULL, &d, &e2) == FACTUM_ELOCKED && strstr(e2.message, pid) ? 0 : 1);
    }
    int st;
    waitpid(child, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    factum_close(db);
    db = test_open(test_dir(), NULL); /* free again once closed */
    factum_close(db);
}

TEST(segments_roll_and_everything_survives_reopen) {
    factum_options_t o = small();
    factum_t *db = test_open(test_dir(), &o);
    char data[512];
    for (int i = 0; i < 600; i++) {
        snprintf(data, sizeof data, "{\"i\":%d,\"pad\":\"%0400d\"}", i, i);
        char stream[16];
        snprintf(stream, sizeof stream, "s-%d", i % 13);
        CHECK_RC(test_append(db, stream, FACTUM_EXPECT_ANY, "T", data, NULL, NULL), 0);
    }
    factum_close(db);
    char path[512];
    snprintf(path, sizeof path, "%s/log/00000004.seg", test_dir());
    struct stat st;
    CHECK(stat(path, &st) == 0); /* several segments of 64 KiB */
    for (int round = 0; round < 2; round++) {
        db = test_open(test_dir(), &o);
        CHECK_EQ(factum_head_position(db), 600);
        factum_query_t q = {.limit = 1000};
        factum_result_t *res;
        CHECK_RC(factum_read_all(db, &q, &res, NULL), 0);
        CHECK_EQ(factum_result_count(res), 600);
        for (size_t i = 0; i < 600; i++) {
            const factum_event_t *e = factum_result_event(res, i);
            snprintf(data, sizeof data, "{\"i\":%zu,\"pad\":\"%0400zu\"}", i, i);
            CHECK(str_eq(e->data, str_c(data)));
            CHECK_EQ(e->revision, i / 13);
        }
        factum_result_free(res);
        CHECK_EQ(factum_stream_revision(db, str_c("s-3")), 45); /* i = 3, 16, ... 588: 46 events */
        factum_close(db);
        /* Second round: without index and position maps, all rebuilt from the log. */
        snprintf(path, sizeof path, "rm -rf %s/index %s/log/*.pmap", test_dir(), test_dir());
        CHECK(system(path) == 0);
    }
}

typedef struct {
    factum_t *db;
    int id, n;
} writer_arg;

static void *writer_thread(void *p) {
    writer_arg *a = p;
    char stream[32];
    for (int i = 0; i < a->n; i++) {
        snprintf(stream, sizeof stream, "w%d-%d", a->id, i % 3);
        if (test_append(a->db, stream, FACTUM_EXPECT_ANY, "T", "{}", NULL, NULL)) return (void *)1;
    }
    return NULL;
}

TEST(concurrent_appenders_share_commit_groups_and_lose_nothing) {
    io_fault f; /* injects nothing here: it counts the fdatasyncs */
    io_fault_init(&f);
    factum_options_t o = {.vfs = &f.vfs};
    factum_t *db = test_open(test_dir(), &o);
    long syncs_at_open = f.fsync_calls;
    pthread_t th[16];
    writer_arg args[16];
    for (int i = 0; i < 16; i++) {
        args[i] = (writer_arg){db, i, 200};
        pthread_create(&th[i], NULL, writer_thread, &args[i]);
    }
    for (int i = 0; i < 16; i++) {
        void *ret;
        pthread_join(th[i], &ret);
        CHECK(ret == NULL);
    }
    CHECK_EQ(factum_head_position(db), 3200);
    /* 16 writers, each waiting for its own fsync: groups form, so far fewer syncs than appends. */
    long syncs = f.fsync_calls - syncs_at_open;
    CHECK_MSG(syncs < 3200 / 2, "%ld fdatasyncs for 3200 appends", syncs);
    for (int i = 0; i < 16; i++)
        for (int s = 0; s < 3; s++) {
            char stream[32];
            snprintf(stream, sizeof stream, "w%d-%d", i, s);
            factum_result_t *res;
            CHECK_RC(factum_read_stream(db, str_c(stream), 0, 1000, 0, &res, NULL), 0);
            size_t n = factum_result_count(res);
            CHECK_EQ(n, s == 0 ? 67 : s == 1 ? 67 : 66);
            for (size_t k = 1; k < n; k++)
                CHECK(factum_result_event(res, k)->position > factum_result_event(res, k - 1)->position);
            factum_result_free(res);
        }
    factum_close(db);
}

TEST(wait_returns_when_an_append_becomes_durable) {
    factum_t *db = test_open(test_dir(), NULL);
    CHECK_EQ(factum_wait(db, 0, 10), 0);
    pthread_t th;
    writer_arg a = {db, 0, 1};
    pthread_create(&th, NULL, writer_thread, &a);
    CHECK_EQ(factum_wait(db, 0, 5000), 1);
    pthread_join(th, NULL);
    factum_close(db);
}

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    int done, rc;
    factum_append_result_t res;
    uint64_t hook_head, hook_calls, hook_keyed;
} async_probe;

static void async_done(void *ctx, int rc, const factum_append_result_t *res, const char *msg) {
    async_probe *p = ctx;
    (void)msg;
    pthread_mutex_lock(&p->mu);
    p->rc = rc, p->res = *res, p->done++;
    pthread_cond_signal(&p->cond);
    pthread_mutex_unlock(&p->mu);
}

static void async_hook(void *ctx, const factum_commit_t *cm) {
    async_probe *p = ctx;
    pthread_mutex_lock(&p->mu);
    p->hook_head = cm->head, p->hook_calls++;
    /* the summary names the stream of each append in it */
    p->hook_keyed +=
        cm->nkeys == 1 && cm->stream_keys[0] == factum_stream_key(str_c("async-1")) && cm->first + 2 == cm->head;
    pthread_mutex_unlock(&p->mu);
}

TEST(an_async_append_calls_back_after_the_commit_hook_and_counts_in_stats) {
    factum_t *db = test_open(test_dir(), NULL);
    async_probe p = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, {0}, 0, 0, 0};
    factum_set_commit_hook(db, async_hook, &p);
    char stream[16] = "async-1";
    factum_event_t ev[2] = {{.type = str_c("A"), .data = str_c("{}"), .data_format = FACTUM_DATA_JSON},
                            {.type = str_c("B"), .data = str_c("[1]"), .data_format = FACTUM_DATA_JSON}};
    CHECK_RC(factum_append_async(db, str_c(stream), FACTUM_EXPECT_NO_STREAM, ev, 2, async_done, &p, NULL), 0);
    memset(stream, 'x', sizeof stream - 1); /* the store kept its own copy */
    pthread_mutex_lock(&p.mu);
    while (!p.done)
        pthread_cond_wait(&p.cond, &p.mu);
    CHECK_RC(p.rc, 0);
    CHECK_EQ(p.res.first_revision, 0);
    CHECK_EQ(p.res.last_position, 1);
    CHECK_EQ(p.hook_head, 2); /* the hook ran before the callback */
    CHECK_EQ(p.hook_calls, 1);
    CHECK_EQ(p.hook_keyed, 1);
    pthread_mutex_unlock(&p.mu);
    /* A miss comes back through the callback too; a bad event is refused at once. */
    CHECK_RC(factum_append_async(db, str_c("async-1"), FACTUM_EXPECT_NO_STREAM, ev, 1, async_done, &p, NULL), 0);
    pthread_mutex_lock(&p.mu);
    while (p.done < 2)
        pthread_cond_wait(&p.cond, &p.mu);
    CHECK_RC(p.rc, FACTUM_EREVISION);
    CHECK_EQ(p.res.actual_revision, 1);
    pthread_mutex_unlock(&p.mu);
    factum_event_t bad = {.type = str_c("")};
    factum_error_t err;
    CHECK_RC(factum_append_async(db, str_c("async-1"), FACTUM_EXPECT_ANY, &bad, 1, async_done, &p, &err),
             FACTUM_EBADEVENT);
    CHECK_EQ(p.done, 2);
    factum_stats_t st;
    factum_stats(db, &st);
    CHECK_EQ(st.appends, 1);
    CHECK_EQ(st.events, 2);
    CHECK_EQ(st.head, 2);
    CHECK(st.fsyncs >= 1 && st.log_bytes == st.bytes && st.bytes > 0);
    uint64_t groups = 0;
    for (int i = 0; i < FACTUM_STAT_BUCKETS; i++)
        groups += st.group_events[i];
    CHECK_EQ(groups, st.fsyncs);
    factum_set_commit_hook(db, NULL, NULL);
    factum_close(db);
    db = test_open(test_dir(), NULL);
    factum_stats(db, &st);
    CHECK(st.log_bytes > 0 && st.bytes == 0 && st.appends == 0); /* log size counted from the log on open */
    factum_close(db);
}

/* One commit group made on purpose: the commit hook of the group before it holds the writer
   while the appends are queued, so the writer then takes them all at once. */
typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    int hold, held, done;
    int rc[16];
    factum_append_result_t res[16];
} group_probe;

static void group_hook(void *ctx, const factum_commit_t *cm) {
    group_probe *p = ctx;
    (void)cm;
    pthread_mutex_lock(&p->mu);
    p->held += p->hold;
    pthread_cond_broadcast(&p->cond);
    while (p->hold)
        pthread_cond_wait(&p->cond, &p->mu);
    pthread_mutex_unlock(&p->mu);
}

typedef struct {
    group_probe *p;
    int i;
} group_slot;

static void group_done(void *ctx, int rc, const factum_append_result_t *res, const char *msg) {
    group_slot *s = ctx;
    (void)msg;
    pthread_mutex_lock(&s->p->mu);
    s->p->rc[s->i] = rc, s->p->res[s->i] = *res, s->p->done++;
    pthread_cond_broadcast(&s->p->cond);
    pthread_mutex_unlock(&s->p->mu);
}

/* The writer adds a group's index entries while its bytes are on their way to the disk, so the
   group's later appends are decided before the earlier ones are in the index: each decision that
   looks there (a stream the cache dropped, a repeated event id, a metadata change, a condition)
   must still see them. A stream cache of one stream drops them at once. */
TEST(appends_in_one_group_see_the_earlier_ones_before_their_index_entries_are_added) {
    factum_options_t o = {.stream_cache = 1};
    factum_t *db = test_open(test_dir(), &o);
    group_probe p = {.mu = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER, .hold = 1};
    group_slot slot[16];
    for (int i = 0; i < 16; i++)
        slot[i] = (group_slot){&p, i};
    factum_set_commit_hook(db, group_hook, &p);
    factum_event_t e = {.type = str_c("T"), .data = str_c("{}"), .data_format = FACTUM_DATA_JSON};
    factum_event_t with_id = e;
    with_id.id = str_c("same-id");
    CHECK_RC(factum_append_async(db, str_c("first"), FACTUM_EXPECT_ANY, &e, 1, group_done, &slot[0], NULL), 0);
    pthread_mutex_lock(&p.mu);
    while (!p.held)
        pthread_cond_wait(&p.cond, &p.mu);
    pthread_mutex_unlock(&p.mu);
    factum_stats_t st0, st1;
    factum_stats(db, &st0);
    /* The writer is held in the hook: all of these wait in the queue. */
    CHECK_RC(factum_append_async(db, str_c("g-a"), FACTUM_EXPECT_NO_STREAM, &e, 1, group_done, &slot[1], NULL), 0);
    CHECK_RC(factum_append_async(db, str_c("g-b"), FACTUM_EXPECT_NO_STREAM, &e, 1, group_done, &slot[2], NULL), 0);
    CHECK_RC(factum_append_async(db, str_c("g-c"), FACTUM_EXPECT_NO_STREAM, &e, 1, group_done, &slot[3], NULL), 0);
    CHECK_RC(factum_append_async(db, str_c("g-a"), 0, &e, 1, group_done, &slot[4], NULL), 0);
    CHECK_RC(factum_append_async(db, str_c("g-a"), FACTUM_EXPECT_NO_STREAM, &e, 1, group_done, &slot[5], NULL), 0);
    CHECK_RC(factum_append_async(db, str_c("g-id"), FACTUM_EXPECT_ANY, &with_id, 1, group_done, &slot[6], NULL), 0);
    CHECK_RC(factum_append_async(db, str_c("g-d"), FACTUM_EXPECT_ANY, &e, 1, group_done, &slot[7], NULL), 0);
    CHECK_RC(factum_append_async(db, str_c("g-id"), FACTUM_EXPECT_ANY, &with_id, 1, group_done, &slot[8], NULL), 0);
    CHECK_RC(factum_delete_stream_async(db, str_c("g-b"), 0, 0, group_done, &slot[9], NULL), 0);
    factum_event_t tagged = {.type = str_c("Registered"), .extensions = str_c("\"tags\":\"user:zed\"")};
    CHECK_RC(factum_append_async(db, str_c("g-t"), FACTUM_EXPECT_ANY, &tagged, 1, group_done, &slot[10], NULL), 0);
    factum_str_t type = str_c("Registered"), tag = str_c("user:zed");
    factum_query_item_t item = {.types = &type, .ntypes = 1, .tags = &tag, .ntags = 1};
    factum_condition_t cond = {{&item, 1}, FACTUM_AFTER_NONE};
    CHECK_RC(
        factum_append_if_async(db, str_c("g-t2"), FACTUM_EXPECT_ANY, &tagged, 1, &cond, group_done, &slot[11], NULL),
        0);
    pthread_mutex_lock(&p.mu);
    p.hold = 0;
    pthread_cond_broadcast(&p.cond);
    while (p.done < 12)
        pthread_cond_wait(&p.cond, &p.mu);
    pthread_mutex_unlock(&p.mu);
    factum_stats(db, &st1);
    CHECK_EQ(st1.fsyncs - st0.fsyncs, 1); /* one group */
    CHECK_RC(p.rc[1], 0);
    CHECK_RC(p.rc[4], 0); /* g-a was dropped from the cache: its revision 0 came from the group */
    CHECK_EQ(p.res[4].first_revision, 1);
    CHECK_RC(p.rc[5], FACTUM_EREVISION);
    CHECK_EQ(p.res[5].actual_revision, 1);
    CHECK_RC(p.rc[6], 0);
    CHECK_RC(p.rc[8], 0); /* the repeat found the event of the same group */
    CHECK_EQ(p.res[8].idempotent, 1);
    CHECK_EQ(p.res[8].first_position, p.res[6].first_position);
    CHECK_RC(p.rc[9], 0); /* the delete saw g-b at revision 0, written in the same group */
    CHECK_RC(p.rc[10], 0);
    CHECK_RC(p.rc[11], FACTUM_ECONDITION); /* its condition matched the event just before it */
    CHECK_EQ(p.res[11].conflict_position, p.res[10].first_position);
    factum_set_commit_hook(db, NULL, NULL);
    CHECK_EQ(factum_stream_revision(db, str_c("g-a")), 1);
    CHECK_EQ(factum_stream_revision(db, str_c("g-id")), 0);
    factum_close(db);
    db = test_open(test_dir(), &o);
    CHECK_EQ(factum_stream_revision(db, str_c("g-a")), 1);
    CHECK_EQ(factum_stream_revision(db, str_c("g-id")), 0);
    factum_close(db);
}

/* What the folder holds: how many index runs, any file being written, and the log's bytes. */
static void folder_state(char *out, size_t cap) {
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "cd '%s' && ls index | grep -c '^run-.*idx$'; ls index log | grep -c tmp; du -b log",
             test_dir());
    FILE *f = popen(cmd, "r");
    size_t n = f ? fread(out, 1, cap - 1, f) : 0;
    out[n] = 0;
    if (f) pclose(f);
}

/* factum_settle returns once the background work is done: nothing changes on disk after it. */
TEST(settle_waits_for_index_runs_merges_and_zeros_until_the_disk_is_quiet) {
    factum_options_t o = {.memtable_events = 256};
    factum_t *db = test_open(test_dir(), &o);
    factum_event_t ev[100];
    for (int i = 0; i < 100; i++)
        ev[i] = (factum_event_t){.type = str_c("T"), .data = str_c("{\"x\":1}"), .data_format = FACTUM_DATA_JSON};
    for (int k = 0; k < 200; k++) { /* 20,000 events, ~150 memtables: runs, and merges of them */
        char stream[32];
        snprintf(stream, sizeof stream, "settle-%d", k % 7);
        CHECK_RC(factum_append(db, str_c(stream), FACTUM_EXPECT_ANY, ev, 100, NULL, NULL), 0);
    }
    factum_settle(db);
    char a[256], b[256];
    folder_state(a, sizeof a);
    usleep(300 * 1000);
    folder_state(b, sizeof b);
    CHECK_MSG(!strcmp(a, b), "after factum_settle:\n%s300 ms later:\n%s", a, b);
    CHECK_MSG(strstr(a, "\n0\n") != NULL, "a file still being written: %s", a);
    factum_settle(db); /* nothing to wait for: returns at once */
    factum_close(db);
}

TEST(position_at_a_time_finds_the_first_event_committed_then_or_later) {
    factum_t *db = test_open(test_dir(), NULL);
    CHECK_EQ(factum_position_at(db, 0), 0);
    int64_t times[40];
    for (int i = 0; i < 40; i++) {
        CHECK_RC(test_append(db, "when-1", FACTUM_EXPECT_ANY, "T", "{}", NULL, NULL), 0);
        factum_result_t *r;
        CHECK_RC(factum_read_stream(db, str_c("when-1"), (uint64_t)i, 1, 0, &r, NULL), 0);
        times[i] = factum_result_event(r, 0)->time_us;
        factum_result_free(r);
        if (i > 0) CHECK(times[i] > times[i - 1]);
    }
    CHECK_EQ(factum_position_at(db, times[0] - 1), 0);
    CHECK_EQ(factum_position_at(db, INT64_MAX), 40);
    for (int i = 0; i < 40; i++) {
        CHECK_EQ(factum_position_at(db, times[i]), i);
        CHECK_EQ(factum_position_at(db, times[i] + 1), i + 1); /* times strictly increase between groups */
    }
    /* A batch shares its group's time: the answer is its first event. */
    factum_event_t ev[3] = {{.type = str_c("B")}, {.type = str_c("B")}, {.type = str_c("B")}};
    factum_append_result_t res;
    CHECK_RC(factum_append(db, str_c("when-2"), FACTUM_EXPECT_ANY, ev, 3, &res, NULL), 0);
    factum_result_t *r;
    CHECK_RC(factum_read_stream(db, str_c("when-2"), 2, 1, 0, &r, NULL), 0);
    CHECK_EQ(factum_position_at(db, factum_result_event(r, 0)->time_us), 40);
    factum_result_free(r);
    factum_close(db);
}

TEST(system_streams_stay_out_of_all_unless_asked_for) {
    factum_t *db = test_open(test_dir(), NULL);
    CHECK_RC(test_append(db, "user-1", FACTUM_EXPECT_ANY, "A", "{}", NULL, NULL), 0);
    CHECK_RC(test_append(db, "$system", FACTUM_EXPECT_ANY, "S", "{}", NULL, NULL), 0);
    CHECK_RC(test_append(db, "user-1", FACTUM_EXPECT_ANY, "B", "{}", NULL, NULL), 0);
    factum_query_t q = {.limit = 10};
    factum_result_t *r;
    CHECK_RC(factum_read_all(db, &q, &r, NULL), 0);
    CHECK_EQ(factum_result_count(r), 2);
    CHECK(str_eq(factum_result_event(r, 1)->type, str_c("B")) && factum_result_next(r) == 3);
    factum_result_free(r);
    q.system = 1;
    CHECK_RC(factum_read_all(db, &q, &r, NULL), 0);
    CHECK_EQ(factum_result_count(r), 3);
    factum_result_free(r);
    CHECK_RC(factum_read_stream(db, str_c("$system"), 0, 10, 0, &r, NULL), 0); /* readable by name */
    CHECK_EQ(factum_result_count(r), 1);
    factum_result_free(r);
    factum_close(db);
}
