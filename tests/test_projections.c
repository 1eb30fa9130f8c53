/*
 * test_projections.c — CQRS projections (issue 6) against a real server and real databases:
 * SQLite files, and a PostgreSQL started by the test (initdb in a temporary folder).
 */
#include "test_pg.h"
#include "test_server.h"

#include <libpq-fe.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <unistd.h>

#define JSON "Content-Type: application/json\r\n"

/* PUT a definition; fails the test unless the answer is `status`. */
static void define(int port, const char *name, const char *def, int status) {
    char path[160];
    snprintf(path, sizeof path, "/projections/%s", name);
    resp r;
    http_do(port, "PUT", path, JSON, def, &r);
    CHECK_MSG(r.status == status, "PUT %s: %d %s", name, r.status, r.body);
    resp_free(&r);
}

/* POST a query; the answer's body (free it) when its status is `status`. */
static char *query(int port, const char *name, const char *body, int status) {
    char path[160];
    snprintf(path, sizeof path, "/projections/%s/query", name);
    return http_body(port, "POST", path, JSON, body, status);
}

/* Appends one event; returns its position. */
static uint64_t append(int port, const char *stream, const char *type, const char *data) {
    char path[200], body[1024];
    snprintf(path, sizeof path, "/streams/%s", stream);
    snprintf(body, sizeof body, "[{\"type\":\"%s\",\"data\":%s}]", type, data);
    resp r;
    http_do(port, "POST", path, JSON, body, &r);
    CHECK_MSG(r.status == 201 || r.status == 200, "append: %d %s", r.status, r.body);
    const char *p = strstr(r.body, "\"position\":");
    CHECK(p);
    uint64_t pos = strtoull(p + 11, NULL, 10);
    resp_free(&r);
    return pos;
}

/* The status of a projection (free it). */
static char *status_of(int port, const char *name) {
    char path[160];
    snprintf(path, sizeof path, "/projections/%s", name);
    return http_body(port, "GET", path, NULL, NULL, 200);
}

/* Waits until the projection has nothing left to apply (or failed: wants_failed). */
static char *wait_settled(int port, const char *name, bool wants_failed) {
    for (int i = 0; i < 600; i++) {
        char *st = status_of(port, name);
        if (wants_failed ? strstr(st, "\"status\":\"failed\"") != NULL
                         : strstr(st, "\"lag_events\":0,") && strstr(st, "\"status\":\"running\"") &&
                               strstr(st, "\"rebuilding\":false"))
            return st;
        free(st);
        usleep(50000);
    }
    CHECK_MSG(false, "projection %s did not settle", name);
    return NULL;
}

static const char *ORDERS =
    "{\"source\":{\"categories\":[\"order\"]},"
    "\"setup\":[\"CREATE TABLE IF NOT EXISTS order_list (order_id TEXT PRIMARY KEY, customer_id TEXT NOT NULL, status "
    "TEXT, "
    "items INTEGER NOT NULL DEFAULT 0, total REAL NOT NULL DEFAULT 0)\"],"
    "\"handlers\":{"
    "\"OrderCreated\":[\"INSERT INTO order_list (order_id, customer_id, status) VALUES (:data.orderId, "
    ":data.customerId, 'CREATED')\"],"
    "\"ItemAdded\":[\"UPDATE order_list SET items = items + 1, total = total + :data.price WHERE order_id = "
    ":data.orderId\"],"
    "\"OrderShipped\":[\"UPDATE order_list SET status = 'SHIPPED' WHERE order_id = :data.orderId\"]}}";

TEST(a_projection_applies_each_event_once_and_a_query_reads_its_own_write) {
    srv s = srv_start(test_dir(), NULL);
    define(s.port, "orders", ORDERS, 201);
    /* Events before and after the definition, and some the source leaves out. */
    append(s.port, "order-1", "OrderCreated", "{\"orderId\":\"o1\",\"customerId\":\"c1\"}");
    append(s.port, "cart-1", "OrderCreated", "{\"orderId\":\"nope\",\"customerId\":\"c9\"}");
    append(s.port, "order-1", "ItemAdded", "{\"orderId\":\"o1\",\"price\":2.5}");
    append(s.port, "order-2", "OrderCreated", "{\"orderId\":\"o2\",\"customerId\":\"c1\"}");
    append(s.port, "order-1", "ItemAdded", "{\"orderId\":\"o1\",\"price\":4}");
    append(s.port, "order-1", "Ignored", "{\"orderId\":\"o1\"}");
    uint64_t p = append(s.port, "order-1", "OrderShipped", "{\"orderId\":\"o1\"}");
    char body[300];
    snprintf(body, sizeof body,
             "{\"sql\":\"SELECT order_id, status, items, total FROM order_list WHERE customer_id = :customer ORDER BY "
             "order_id\","
             "\"params\":{\"customer\":\"c1\"},\"min_position\":%llu}",
             (unsigned long long)p);
    char *b = query(s.port, "orders", body, 200);
    CHECK_MSG(
        !strcmp(b, "{\"columns\":[\"order_id\",\"status\",\"items\",\"total\"],\"rows\":[[\"o1\",\"SHIPPED\",2,6.5],"
                   "[\"o2\",\"CREATED\",0,0.0]]}") ||
            !strcmp(b,
                    "{\"columns\":[\"order_id\",\"status\",\"items\",\"total\"],\"rows\":[[\"o1\",\"SHIPPED\",2,6.5],"
                    "[\"o2\",\"CREATED\",0,0]]}"),
        "%s", b);
    free(b);
    b = query(s.port, "orders", "{\"sql\":\"SELECT count(*) FROM order_list\"}", 200);
    CHECK_MSG(strstr(b, "\"rows\":[[2]]"), "%s", b);
    free(b);
    char *st = wait_settled(s.port, "orders", false);
    CHECK_MSG(strstr(st, "\"applied\":5,") && strstr(st, "\"last_error\":null") &&
                  strstr(st, "\"definition\":{\"source\""),
              "%s", st);
    free(st);
    resp r;
    http_do(s.port, "GET", "/projections", NULL, NULL, &r);
    CHECK_MSG(r.status == 200 && strstr(r.body, "[{\"name\":\"orders\",\"status\":\"running\"") &&
                  !strstr(r.body, "definition"),
              "%s", r.body);
    resp_free(&r);
    /* The default read model is a SQLite file under the data folder. */
    char path[4200];
    struct stat sb;
    snprintf(path, sizeof path, "%s/projections/orders.sqlite", test_dir());
    CHECK(stat(path, &sb) == 0);
    srv_stop(&s, SIGTERM);
}

TEST(parameters_bind_event_fields_and_json_paths_typed_as_json_gives_them) {
    srv s = srv_start(test_dir(), NULL);
    define(s.port, "p",
           "{\"setup\":[\"CREATE TABLE IF NOT EXISTS t (stream, revision, position, time, type, id, a, ta, b, tb, c, "
           "tc, d, td, e, te, f, tf, g, h)\"],"
           "\"handlers\":{\"T\":[\"INSERT INTO t VALUES (:stream, :revision, :position, :time, :type, :id, :data.a, "
           "typeof(:data.a), "
           ":data.items[1].price, typeof(:data.items[1].price), :data.s, typeof(:data.s), :data.ok, typeof(:data.ok), "
           ":data.o, "
           "typeof(:data.o), :data.missing, typeof(:data.missing), :data.items[7].price, ':data.a in quotes' || ' "
           "::text' -- :data.z\\n)\"]}}",
           201);
    uint64_t p = append(s.port, "ps-1", "T",
                        "{\"a\":42,\"items\":[{\"price\":1},{\"price\":2.25}],\"s\":\"h\\u00e9\\\"llo\",\"ok\":true,"
                        "\"o\":{\"x\":[1,2]}}");
    char body[200];
    snprintf(body, sizeof body, "{\"sql\":\"SELECT * FROM t\",\"min_position\":%llu}", (unsigned long long)p);
    char *b = query(s.port, "p", body, 200);
    CHECK_MSG(strstr(b, "[\"ps-1\",0,") && strstr(b, ",\"T\",") &&
                  strstr(b, ",42,\"integer\",2.25,\"real\",\"hé\\\"llo\",\"text\",1,\"integer\",\"{\\\"x\\\":[1,2]}\","
                            "\"text\",null,\"null\",null,"
                            "\":data.a in quotes ::text\"]"),
              "%s", b);
    /* :time is RFC 3339 with microseconds, :id the event's id. */
    CHECK_MSG(strstr(b, "Z\",\"T\",\""), "%s", b);
    free(b);
    /* A query's parameters come from params, typed the same way. */
    b = query(s.port, "p",
              "{\"sql\":\"SELECT :n + 1, typeof(:n), :s, :deep.x[1], "
              ":none\",\"params\":{\"n\":41,\"s\":\"x\",\"deep\":{\"x\":[0,7]}}}",
              200);
    CHECK_MSG(strstr(b, "\"rows\":[[42,\"integer\",\"x\",7,null]]"), "%s", b);
    free(b);
    srv_stop(&s, SIGTERM);
}

TEST(a_failing_statement_stops_the_projection_at_that_event_and_a_fixed_definition_resumes_there) {
    srv s = srv_start(test_dir(), NULL);
    const char *def = "{\"setup\":[\"CREATE TABLE IF NOT EXISTS t (a INTEGER NOT "
                      "NULL)\"],\"handlers\":{\"X\":[\"INSERT INTO t VALUES (:data.a)\"]}}";
    define(s.port, "f", def, 201);
    append(s.port, "x-1", "X", "{\"a\":1}");
    append(s.port, "x-1", "X", "{\"a\":2}");
    uint64_t bad = append(s.port, "x-1", "X", "{\"b\":3}");
    uint64_t last = append(s.port, "x-1", "X", "{\"a\":4}");
    char *st = wait_settled(s.port, "f", true);
    char want[200];
    snprintf(want, sizeof want, "\"position\":%llu,\"lag_events\":", (unsigned long long)bad);
    CHECK_MSG(strstr(st, want) && strstr(st, "\"last_error\":{\"position\":") &&
                  strstr(st, "\"stream\":\"x-1\",\"revision\":2,\"type\":\"X\",\"statement\":1") &&
                  strstr(st, "NOT NULL constraint failed"),
              "%s", st);
    free(st);
    /* Events before the failing one are applied; nothing after it. */
    char *b = query(s.port, "f", "{\"sql\":\"SELECT a FROM t ORDER BY a\"}", 200);
    CHECK_MSG(strstr(b, "\"rows\":[[1],[2]]"), "%s", b);
    free(b);
    /* Waiting for a position past the failure is a conflict, not a hang. */
    char body[200];
    snprintf(body, sizeof body, "{\"sql\":\"SELECT 1\",\"min_position\":%llu}", (unsigned long long)last);
    free(query(s.port, "f", body, 409));
    define(s.port, "f",
           "{\"setup\":[\"CREATE TABLE IF NOT EXISTS t (a INTEGER NOT NULL)\"],\"handlers\":{\"X\":[\"INSERT INTO t "
           "VALUES (coalesce(:data.a, -1))\"]}}",
           200);
    b = query(s.port, "f", body, 200);
    free(b);
    b = query(s.port, "f", "{\"sql\":\"SELECT a FROM t ORDER BY a\"}", 200);
    CHECK_MSG(strstr(b, "\"rows\":[[-1],[1],[2],[4]]"), "%s", b);
    free(b);
    st = wait_settled(s.port, "f", false);
    CHECK_MSG(strstr(st, "\"last_error\":null"), "%s", st);
    free(st);
    srv_stop(&s, SIGTERM);
}

TEST(reset_rebuilds_the_read_model_and_delete_drops_it) {
    srv s = srv_start(test_dir(), NULL);
    define(s.port, "r",
           "{\"setup\":[\"CREATE TABLE IF NOT EXISTS t (a INTEGER)\", \"CREATE INDEX IF NOT EXISTS ta ON t (a)\"],"
           "\"handlers\":{\"X\":[\"INSERT INTO t VALUES (:data.a)\"]}}",
           201);
    for (int i = 0; i < 50; i++)
        append(s.port, "x-1", "X", "{\"a\":1}");
    free(wait_settled(s.port, "r", false));
    resp r;
    http_do(s.port, "POST", "/projections/r/reset", NULL, NULL, &r);
    CHECK_MSG(r.status == 202, "%d %s", r.status, r.body);
    resp_free(&r);
    char *st = wait_settled(s.port, "r", false);
    free(st);
    char *b = query(s.port, "r", "{\"sql\":\"SELECT count(*), sum(a) FROM t\"}", 200);
    CHECK_MSG(strstr(b, "\"rows\":[[50,50]]"), "%s", b);
    free(b);
    http_do(s.port, "DELETE", "/projections/r", NULL, NULL, &r);
    CHECK_MSG(r.status == 200 && strstr(r.body, "\"deleted\":true"), "%d %s", r.status, r.body);
    resp_free(&r);
    expect_status(s.port, "GET", "/projections/r", NULL, NULL, 404, "no projection");
    expect_status(s.port, "POST", "/projections/r/query", JSON, "{\"sql\":\"SELECT 1\"}", 404, "no projection");
    char path[4200];
    struct stat sb;
    snprintf(path, sizeof path, "%s/projections/r.sqlite", test_dir());
    CHECK(stat(path, &sb) != 0);
    /* Deleted stays deleted after a restart. */
    srv_stop(&s, SIGTERM);
    s = srv_start(test_dir(), NULL);
    expect_status(s.port, "GET", "/projections/r", NULL, NULL, 404, "no projection");
    srv_stop(&s, SIGTERM);
}

TEST(definitions_survive_a_restart_and_projecting_resumes_from_the_checkpoint) {
    srv s = srv_start(test_dir(), NULL);
    define(s.port, "k",
           "{\"setup\":[\"CREATE TABLE IF NOT EXISTS t (p INTEGER)\"],\"handlers\":{\"X\":[\"INSERT INTO t VALUES "
           "(:position)\"]}}",
           201);
    for (int i = 0; i < 20; i++)
        append(s.port, "x-1", "X", "{}");
    free(wait_settled(s.port, "k", false));
    srv_stop(&s, SIGTERM);
    s = srv_start(test_dir(), NULL);
    for (int i = 0; i < 20; i++)
        append(s.port, "x-1", "X", "{}");
    free(wait_settled(s.port, "k", false));
    char *b = query(s.port, "k", "{\"sql\":\"SELECT count(*), count(DISTINCT p) FROM t\"}", 200);
    CHECK_MSG(strstr(b, "\"rows\":[[40,40]]"), "%s", b);
    free(b);
    srv_stop(&s, SIGTERM);
}

TEST(bad_definitions_and_queries_get_clear_errors_and_change_nothing) {
    srv s = srv_start(test_dir(), NULL);
    define(
        s.port, "ok",
        "{\"setup\":[\"CREATE TABLE IF NOT EXISTS t (a)\"],\"handlers\":{\"X\":[\"INSERT INTO t VALUES (:data.a)\"]}}",
        201);
    static const struct {
        const char *name, *def, *says;
    } bad[] = {
        {"b", "{\"handlers\":{\"X\":[\"INSERT INTO t VALUES (:dta.a)\"]}}", "unknown parameter :dta at offset 22"},
        {"b", "{\"handlers\":{\"X\":[\"INSERT INTO t VALUES (:data.a[x])\"]}}", "[ takes an index"},
        {"b", "{\"handlers\":{\"X\":[\"INSERT INTO t VALUES (:stream.x)\"]}}", "only :data has fields"},
        {"b", "{\"handlers\":{\"X\":[\"INSERT INTO t VALUES (?)\"]}}", "name parameters"},
        {"b", "{\"handlers\":{\"X\":[\"INSERT INTO nowhere VALUES (:data.a)\"]}}", "no such table: nowhere"},
        {"b", "{\"handlers\":{\"X\":[\"INSERT INTO t VALUE (:data.a)\"]}}", "syntax error"},
        {"b", "{\"setup\":[\"CREATE TABLE u (a\"],\"handlers\":{\"X\":[\"INSERT INTO u VALUES (1)\"]}}",
         "setup statement 1"},
        {"b",
         "{\"setup\":[\"CREATE TABLE IF NOT EXISTS t (a)\"],\"handlers\":{\"X\":[\"INSERT INTO t VALUES (1); DELETE "
         "FROM t\"]}}",
         "more than one statement"},
        {"b", "{\"handlers\":{}}", "at least one event type"},
        {"b", "{\"handlers\":{\"X\":[]}}", "must not be empty"},
        {"b", "{\"handlers\":{\"X\":[\"SELECT 1\"]},\"sauce\":1}", "unknown member"},
        {"b", "{\"handlers\":{\"X\":[\"SELECT 1\"]},\"source\":{\"types\":[\"X\"],\"stream\":\"s\"}}",
         "exactly one of"},
        {"b", "{\"handlers\":{\"X\":[\"SELECT 1\"]},\"target\":{\"mysql\":\"x\"}}", "unknown member"},
        {"b", "[1]", "JSON object"},
        {"b..", "{\"handlers\":{\"X\":[\"SELECT 1\"]}}", NULL},
        {".b", "{\"handlers\":{\"X\":[\"SELECT 1\"]}}", "projection name"},
        {"ok", "{\"handlers\":{\"X\":[\"INSERT INTO nowhere VALUES (1)\"]}}", "no such table"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char path[160];
        snprintf(path, sizeof path, "/projections/%s", bad[i].name);
        if (!bad[i].says) continue; /* "b.." is a valid name */
        expect_status(s.port, "PUT", path, JSON, bad[i].def, 400, bad[i].says);
    }
    /* One byte past the statement limit (64 KiB), and past 100 distinct parameters. */
    size_t big = (64u << 10) + 1;
    char *def = malloc(big + 200);
    int n = snprintf(def, big + 200, "{\"handlers\":{\"X\":[\"SELECT 1 -- ");
    memset(def + n, 'x', big - 12);
    snprintf(def + n + big - 12, 200, "\"]}}");
    expect_status(s.port, "PUT", "/projections/big", JSON, def, 400,
                  "handlers.X[0] must be a string of 1 to 65536 bytes");
    def[n + big - 13] = 0; /* exactly 64 KiB of statement */
    strcat(def, "\"]}}");
    define(s.port, "big", def, 201);
    n = snprintf(def, big, "{\"handlers\":{\"X\":[\"SELECT 0");
    for (int i = 0; i <= 100; i++)
        n += snprintf(def + n, big - (size_t)n, " + :data.p%d", i);
    snprintf(def + n, big - (size_t)n, "\"]}}");
    expect_status(s.port, "PUT", "/projections/params", JSON, def, 400, "more than 100 distinct parameters");
    free(def);
    /* Nothing of the refused ones exists, and "ok" is as it was. */
    resp r;
    http_do(s.port, "GET", "/projections", NULL, NULL, &r);
    CHECK_MSG(!strstr(r.body, "\"b\"") && !strstr(r.body, "\"params\"") && strstr(r.body, "\"ok\""), "%s", r.body);
    resp_free(&r);
    char *st = status_of(s.port, "ok");
    CHECK_MSG(strstr(st, "INSERT INTO t VALUES (:data.a)"), "%s", st);
    free(st);
    char path[4200];
    struct stat sb;
    snprintf(path, sizeof path, "%s/projections/b.sqlite", test_dir());
    CHECK(stat(path, &sb) != 0);
    /* Queries */
    expect_status(s.port, "POST", "/projections/ok/query", JSON, "{\"sql\":\"DELETE FROM t\"}", 400, "may only read");
    expect_status(s.port, "POST", "/projections/ok/query", JSON, "{\"sql\":\"SELECT 1; SELECT 2\"}", 400,
                  "more than one statement");
    expect_status(s.port, "POST", "/projections/ok/query", JSON, "{\"sql\":\"SELEC 1\"}", 400, "syntax error");
    expect_status(s.port, "POST", "/projections/ok/query", JSON, "{\"sql\":\"SELECT 1\",\"min_position\":-1}", 400,
                  "min_position");
    expect_status(s.port, "POST", "/projections/ok/query", JSON, "{\"sql\":\"SELECT 1\",\"timeout_ms\":60001}", 400,
                  "timeout_ms");
    expect_status(s.port, "POST", "/projections/ok/query", JSON, "{\"sql\":\"SELECT 1\",\"params\":[1]}", 400,
                  "params");
    expect_status(s.port, "POST", "/projections/ok/query", JSON, "{\"sq\":\"SELECT 1\"}", 400, "unknown member");
    expect_status(s.port, "POST", "/projections/ok/query", JSON,
                  "{\"sql\":\"SELECT 1\",\"min_position\":1000000,\"timeout_ms\":100}", 504, "did not pass");
    expect_status(s.port, "POST", "/projections/ok/nothing", JSON, "{}", 404, NULL);
    expect_status(s.port, "GET", "/projections/ok/query", NULL, NULL, 405, NULL);
    char *b = query(s.port, "ok", "{\"sql\":\"SELECT count(*) FROM t\"}", 200);
    CHECK_MSG(strstr(b, "[[0]]"), "%s", b);
    free(b);
    srv_stop(&s, SIGTERM);
}

/* ---- read-your-writes under concurrent appends ---- */

typedef struct ryw {
    int port, id, n;
    atomic_int *misses;
} ryw;

static void *ryw_client(void *arg) {
    ryw *w = arg;
    for (int i = 0; i < w->n; i++) {
        char stream[64], data[128], body[300];
        snprintf(stream, sizeof stream, "acct-%d", w->id);
        snprintf(data, sizeof data, "{\"acct\":\"a%d\",\"n\":%d}", w->id, i);
        uint64_t p = append(w->port, stream, "Deposited", data);
        snprintf(body, sizeof body,
                 "{\"sql\":\"SELECT n FROM last WHERE acct = :a\",\"params\":{\"a\":\"a%d\"},\"min_position\":%llu}",
                 w->id, (unsigned long long)p);
        char *b = query(w->port, "ryw", body, 200);
        char want[64];
        snprintf(want, sizeof want, "\"rows\":[[%d]]", i);
        if (!strstr(b, want)) atomic_fetch_add(w->misses, 1);
        free(b);
    }
    return NULL;
}

static const char *RYW = "{\"setup\":[\"CREATE TABLE IF NOT EXISTS last (acct TEXT PRIMARY KEY, n INTEGER)\"],"
                         "\"handlers\":{\"Deposited\":[\"INSERT INTO last VALUES (:data.acct, :data.n) ON CONFLICT "
                         "(acct) DO UPDATE SET n = excluded.n\"]}}";

/* Six clients each append and then query for what they appended, 60 times. */
static void ryw_run(const char *def) {
    srv s = srv_start(test_dir(), NULL);
    define(s.port, "ryw", def, 201);
    atomic_int misses = 0;
    ryw w[6];
    pthread_t t[6];
    for (int i = 0; i < 6; i++) {
        w[i] = (ryw){s.port, i, 60, &misses};
        pthread_create(&t[i], NULL, ryw_client, &w[i]);
    }
    for (int i = 0; i < 6; i++)
        pthread_join(t[i], NULL);
    CHECK_EQ(atomic_load(&misses), 0);
    srv_stop(&s, SIGTERM);
}

TEST(a_query_with_min_position_reads_its_own_write_while_others_append) { ryw_run(RYW); }

TEST(sources_of_one_stream_several_categories_or_several_types_take_exactly_their_events) {
    srv s = srv_start(test_dir(), NULL);
    const char *handlers = "\"setup\":[\"CREATE TABLE IF NOT EXISTS t (stream TEXT, revision INTEGER, type TEXT)\"],"
                           "\"handlers\":{\"A\":[\"INSERT INTO t VALUES (:stream, :revision, :type)\"],"
                           "\"B\":[\"INSERT INTO t VALUES (:stream, :revision, :type)\"]}}";
    char def[1024];
    snprintf(def, sizeof def, "{\"source\":{\"stream\":\"cart-1\"},%s", handlers);
    define(s.port, "one", def, 201);
    snprintf(def, sizeof def, "{\"source\":{\"categories\":[\"cart\",\"order\"]},%s", handlers);
    define(s.port, "cats", def, 201);
    snprintf(def, sizeof def, "{\"source\":{\"types\":[\"A\",\"C\"]},%s", handlers);
    define(s.port, "types", def, 201);
    append(s.port, "cart-1", "A", "{}");
    append(s.port, "cart-2", "B", "{}");
    append(s.port, "order-1", "A", "{}");
    append(s.port, "cart-1", "B", "{}");
    append(s.port, "other-1", "A", "{}");
    append(s.port, "cart-1", "C", "{}"); /* no handler: passes by */
    uint64_t p = append(s.port, "cart-1", "A", "{}");
    char body[300];
    snprintf(body, sizeof body,
             "{\"sql\":\"SELECT group_concat(stream || '/' || revision || type, ' ') FROM t\",\"min_position\":%llu}",
             (unsigned long long)p);
    char *b = query(s.port, "one", body, 200);
    CHECK_MSG(strstr(b, "[[\"cart-1/0A cart-1/1B cart-1/3A\"]]"), "%s", b);
    free(b);
    b = query(s.port, "cats", body, 200);
    CHECK_MSG(strstr(b, "[[\"cart-1/0A cart-2/0B order-1/0A cart-1/1B cart-1/3A\"]]"), "%s", b);
    free(b);
    b = query(s.port, "types", body, 200);
    CHECK_MSG(strstr(b, "[[\"cart-1/0A order-1/0A other-1/0A cart-1/3A\"]]"), "%s", b);
    free(b);
    /* The stream source resumes by revision after a restart. */
    srv_stop(&s, SIGTERM);
    s = srv_start(test_dir(), NULL);
    p = append(s.port, "cart-1", "B", "{}");
    snprintf(body, sizeof body, "{\"sql\":\"SELECT count(*), max(revision) FROM t\",\"min_position\":%llu}",
             (unsigned long long)p);
    b = query(s.port, "one", body, 200);
    CHECK_MSG(strstr(b, "[[4,4]]"), "%s", b);
    free(b);
    srv_stop(&s, SIGTERM);
}

/* ---- kill -9 while projecting ---- */

static const char *COUNTER = "{\"setup\":[\"CREATE TABLE IF NOT EXISTS seen (position INTEGER, v INTEGER)\","
                             "\"CREATE TABLE IF NOT EXISTS total (k INTEGER PRIMARY KEY, n INTEGER, s INTEGER)\","
                             "\"INSERT INTO total VALUES (1, 0, 0) ON CONFLICT DO NOTHING\"],"
                             "\"handlers\":{\"Inc\":[\"INSERT INTO seen VALUES (:position, :data.v)\","
                             "\"UPDATE total SET n = n + 1, s = s + :data.v WHERE k = 1\"]}}";

typedef struct crash_load {
    int port, id;
    atomic_bool *stop;
} crash_load;

static void *crash_appender(void *arg) {
    crash_load *l = arg;
    for (int i = 0; !atomic_load(l->stop); i++) {
        char path[64], body[4096];
        size_t n = 0;
        snprintf(path, sizeof path, "/streams/c-%d", l->id);
        n += (size_t)snprintf(body + n, sizeof body - n, "[");
        for (int k = 0; k < 20; k++)
            n += (size_t)snprintf(body + n, sizeof body - n, "%s{\"type\":\"Inc\",\"data\":{\"v\":%d}}", k ? "," : "",
                                  (int)(test_rand() % 1000));
        snprintf(body + n, sizeof body - n, "]");
        resp r;
        int st = http_try(l->port, "POST", path, JSON, body, &r);
        resp_free(&r);
        if (!st) usleep(10000);
    }
    return NULL;
}

/* A read model of COUNTER as found in its database. */
typedef struct model {
    uint64_t cp;        /* the checkpoint */
    int64_t (*rows)[2]; /* seen: position, v, in position order */
    size_t n, cap;
    int64_t total_n, total_s;
} model;

static void model_add(model *m, int64_t pos, int64_t v) {
    if (m->n == m->cap) {
        m->cap = m->cap ? m->cap * 2 : 1024;
        CHECK((m->rows = realloc(m->rows, m->cap * sizeof *m->rows)));
    }
    m->rows[m->n][0] = pos, m->rows[m->n][1] = v, m->n++;
}

static void model_sqlite(const char *dir, model *m) {
    char path[4200];
    snprintf(path, sizeof path, "%s/projections/c.sqlite", dir);
    sqlite3 *q;
    CHECK(sqlite3_open_v2(path, &q, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK);
    sqlite3_stmt *st;
    CHECK(sqlite3_prepare_v2(q, "SELECT position FROM factum_projections WHERE name = 'c'", -1, &st, NULL) ==
          SQLITE_OK);
    if (sqlite3_step(st) == SQLITE_ROW) m->cp = (uint64_t)sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    CHECK(sqlite3_prepare_v2(q, "SELECT position, v FROM seen ORDER BY position", -1, &st, NULL) == SQLITE_OK);
    while (sqlite3_step(st) == SQLITE_ROW)
        model_add(m, sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 1));
    sqlite3_finalize(st);
    CHECK(sqlite3_prepare_v2(q, "SELECT n, s FROM total", -1, &st, NULL) == SQLITE_OK);
    CHECK(sqlite3_step(st) == SQLITE_ROW);
    m->total_n = sqlite3_column_int64(st, 0), m->total_s = sqlite3_column_int64(st, 1);
    sqlite3_finalize(st);
    sqlite3_close(q);
}

/* Recomputes the read model from the log up to its checkpoint and compares. Returns the checkpoint. */
static uint64_t crash_verify(const char *dir, model *m) {
    factum_t *db = test_open(dir, NULL);
    factum_query_t fq = {.from = 0, .limit = 10000, .type = str_c("Inc")};
    int64_t n = 0, sum = 0;
    size_t row = 0;
    for (bool more = true; more && fq.from < m->cp;) {
        factum_result_t *res;
        CHECK_RC(factum_read_all(db, &fq, &res, NULL), 0);
        size_t k = factum_result_count(res);
        for (size_t i = 0; i < k; i++) {
            const factum_event_t *e = factum_result_event(res, i);
            if (e->position >= m->cp) break;
            int v = atoi(strstr(e->data.ptr, "\"v\":") + 4);
            CHECK_MSG(row < m->n, "event at %llu (checkpoint %llu) is not in the read model",
                      (unsigned long long)e->position, (unsigned long long)m->cp);
            CHECK_MSG((uint64_t)m->rows[row][0] == e->position && m->rows[row][1] == v,
                      "read model has %lld/%lld where the log has %llu/%d", (long long)m->rows[row][0],
                      (long long)m->rows[row][1], (unsigned long long)e->position, v);
            row++, n++, sum += v;
        }
        more = k == fq.limit || factum_result_next(res) < m->cp;
        fq.from = factum_result_next(res);
        factum_result_free(res);
    }
    CHECK_MSG(row == m->n, "the read model has %zu rows, the log %zu events before checkpoint %llu", m->n, row,
              (unsigned long long)m->cp);
    CHECK_MSG(m->total_n == n && m->total_s == sum, "totals %lld/%lld, events %lld/%lld", (long long)m->total_n,
              (long long)m->total_s, (long long)n, (long long)sum);
    factum_close(db);
    free(m->rows);
    uint64_t cp = m->cp;
    *m = (model){0};
    return cp;
}

/* Kills the server `cycles` times while appenders run, checking the read model after each;
   load(ctx, m) reads the model. between(ctx) runs while the appenders go (may be NULL). */
static void crash_cycles(const char *def, int cycles, void (*load)(void *ctx, model *m), void (*between)(void *ctx),
                         void *ctx) {
    const char *dir = test_dir();
    srv s = srv_start(dir, NULL);
    define(s.port, "c", def, 201);
    uint64_t last_cp = 0;
    int moved = 0;
    model m = {0};
    for (int cycle = 0; cycle < cycles; cycle++) {
        atomic_bool stop = false;
        crash_load l[3];
        pthread_t t[3];
        for (int i = 0; i < 3; i++) {
            l[i] = (crash_load){s.port, i, &stop};
            pthread_create(&t[i], NULL, crash_appender, &l[i]);
        }
        usleep((useconds_t)(100000 + test_rand() % 200000));
        if (between) between(ctx);
        usleep((useconds_t)(test_rand() % 200000));
        srv_stop(&s, SIGKILL);
        atomic_store(&stop, true);
        for (int i = 0; i < 3; i++)
            pthread_join(t[i], NULL);
        load(ctx, &m);
        uint64_t cp = crash_verify(dir, &m);
        CHECK_MSG(cp >= last_cp, "checkpoint went back from %llu to %llu", (unsigned long long)last_cp,
                  (unsigned long long)cp);
        moved += cp > last_cp;
        last_cp = cp;
        s = srv_start(dir, NULL);
    }
    CHECK_MSG(moved >= cycles / 4, "the projection moved in only %d of %d cycles", moved, cycles);
    free(wait_settled(s.port, "c", false));
    srv_stop(&s, SIGTERM);
    factum_t *db = test_open(dir, NULL);
    uint64_t head = factum_head_position(db);
    factum_close(db);
    load(ctx, &m);
    uint64_t cp = crash_verify(dir, &m);
    CHECK_MSG(cp >= head - 1, "caught up to %llu of %llu", (unsigned long long)cp, (unsigned long long)head);
}

static void load_sqlite(void *ctx, model *m) { model_sqlite(ctx, m); }

TEST_T(killing_the_server_while_it_projects_neither_skips_nor_repeats_an_event, 300) {
    crash_cycles(COUNTER, 22, load_sqlite, NULL, (void *)test_dir());
}

/* ---- PostgreSQL ---- */

/* A definition with the PostgreSQL target: def's members after a target member. */
static char *pg_def(const pg *p, const char *def) {
    buf_t b = {0};
    buf_printf(&b, "{\"target\":{\"postgres\":\"%s\"},%s", p->conninfo, def + 1);
    return b.ptr;
}

/* The order list in PostgreSQL, as the first and the fixed definition both set it up. */
#define PG_ORDER_SETUP                                                                                                 \
    "\"setup\":[\"CREATE TABLE IF NOT EXISTS order_list (order_id text PRIMARY KEY, customer_id text NOT NULL, "       \
    "status text, items int NOT NULL DEFAULT 0, total numeric NOT NULL DEFAULT 0, paid boolean, at timestamptz, "      \
    "extra jsonb)\"],"

TEST_T(a_projection_into_postgresql_applies_events_fails_resumes_and_answers_typed_queries, 120) {
    pg p;
    pg_up(&p);
    srv s = srv_start(test_dir(), NULL);
    char *def =
        pg_def(&p, "{\"source\":{\"categories\":[\"order\"]}," PG_ORDER_SETUP "\"handlers\":{"
                   "\"OrderCreated\":[\"INSERT INTO order_list (order_id, customer_id, status, paid, at, extra) VALUES "
                   "(:data.orderId, :data.customerId, 'CREATED', :data.paid, :time, :data.extra) ON CONFLICT "
                   "(order_id) DO NOTHING\"],"
                   "\"ItemAdded\":[\"UPDATE order_list SET items = items + 1, total = total + :data.price WHERE "
                   "order_id = :data.orderId\"]}}");
    define(s.port, "pgo", def, 201);
    append(s.port, "order-1", "OrderCreated",
           "{\"orderId\":\"o1\",\"customerId\":\"c1\",\"paid\":false,\"extra\":{\"a\":[1,\"x\"]}}");
    append(s.port, "order-1", "ItemAdded", "{\"orderId\":\"o1\",\"price\":2.5}");
    uint64_t pos = append(s.port, "order-1", "ItemAdded", "{\"orderId\":\"o1\",\"price\":4}");
    char body[400];
    snprintf(body, sizeof body,
             "{\"sql\":\"SELECT order_id, items, total, paid, extra, at IS NOT NULL AS has_time, NULL AS nothing FROM "
             "order_list "
             "WHERE customer_id = :c\",\"params\":{\"c\":\"c1\"},\"min_position\":%llu}",
             (unsigned long long)pos);
    char *b = query(s.port, "pgo", body, 200);
    CHECK_MSG(!strcmp(b, "{\"columns\":[\"order_id\",\"items\",\"total\",\"paid\",\"extra\",\"has_time\",\"nothing\"],"
                         "\"rows\":[[\"o1\",2,6.5,false,{\"a\": [1, \"x\"]},true,null]]}"),
              "%s", b);
    free(b);
    /* A statement that fails (customer_id NOT NULL) stops it there; a fixed definition resumes. */
    append(s.port, "order-2", "OrderCreated", "{\"orderId\":\"o2\"}");
    uint64_t last = append(s.port, "order-3", "OrderCreated", "{\"orderId\":\"o3\",\"customerId\":\"c3\"}");
    char *st = wait_settled(s.port, "pgo", true);
    CHECK_MSG(strstr(st, "\"stream\":\"order-2\"") && strstr(st, "null value in column"), "%s", st);
    free(st);
    free(def);
    def = pg_def(
        &p, "{\"source\":{\"categories\":[\"order\"]}," PG_ORDER_SETUP "\"handlers\":{"
            "\"OrderCreated\":[\"INSERT INTO order_list (order_id, customer_id, status) VALUES "
            "(:data.orderId, coalesce(:data.customerId, 'unknown'), 'CREATED') ON CONFLICT (order_id) DO NOTHING\"],"
            "\"ItemAdded\":[\"UPDATE order_list SET items = items + 1, total = total + :data.price WHERE order_id = "
            ":data.orderId\"]}}");
    define(s.port, "pgo", def, 200);
    snprintf(body, sizeof body,
             "{\"sql\":\"SELECT order_id, customer_id FROM order_list ORDER BY order_id\",\"min_position\":%llu}",
             (unsigned long long)last);
    b = query(s.port, "pgo", body, 200);
    CHECK_MSG(strstr(b, "\"rows\":[[\"o1\",\"c1\"],[\"o2\",\"unknown\"],[\"o3\",\"c3\"]]"), "%s", b);
    free(b);
    /* Bad definitions and queries: PostgreSQL's own words, nothing changed. */
    char *bad = pg_def(&p, "{\"handlers\":{\"X\":[\"INSERT INTO order_list (nope) VALUES (:data.a)\"]}}");
    expect_status(s.port, "PUT", "/projections/pgbad", JSON, bad, 400,
                  "column \\\"nope\\\" of relation \\\"order_list\\\" does not exist");
    free(bad);
    bad = pg_def(&p, "{\"handlers\":{\"X\":[\"INSERT INTO order_list VALUES ($1)\"]}}");
    expect_status(s.port, "PUT", "/projections/pgbad", JSON, bad, 400, "name parameters");
    free(bad);
    bad = pg_def(&p, "{\"setup\":[\"CREATE TABLE x (a int\"],\"handlers\":{\"X\":[\"SELECT 1\"]}}");
    expect_status(s.port, "PUT", "/projections/pgbad", JSON, bad, 400, "setup statement 1: syntax error");
    free(bad);
    expect_status(s.port, "PUT", "/projections/pgbad", JSON,
                  "{\"target\":{\"postgres\":\"host=/nonexistent user=postgres\"},\"handlers\":{\"X\":[\"SELECT 1\"]}}",
                  503, "cannot connect to PostgreSQL");
    expect_status(s.port, "GET", "/projections/pgbad", NULL, NULL, 404, NULL);
    char v[64];
    pg_sql(&p, "SELECT count(*) FROM pg_tables WHERE tablename = 'x'", v, sizeof v);
    CHECK_MSG(!strcmp(v, "0"), "%s", v);
    expect_status(s.port, "POST", "/projections/pgo/query", JSON, "{\"sql\":\"DELETE FROM order_list\"}", 400,
                  "may only read");
    expect_status(s.port, "POST", "/projections/pgo/query", JSON, "{\"sql\":\"SELECT 1; SELECT 2\"}", 400,
                  "multiple commands");
    expect_status(s.port, "POST", "/projections/pgo/query", JSON, "{\"sql\":\"SELECT pg_sleep(2)\",\"timeout_ms\":200}",
                  504, NULL);
    /* Reset rebuilds; delete drops the table and the checkpoint. */
    resp r;
    http_do(s.port, "POST", "/projections/pgo/reset", NULL, NULL, &r);
    CHECK_EQ(r.status, 202);
    resp_free(&r);
    free(wait_settled(s.port, "pgo", false));
    pg_sql(&p, "SELECT count(*) || ' ' || sum(total) FROM order_list", v, sizeof v);
    CHECK_MSG(!strcmp(v, "3 6.5"), "%s", v);
    http_do(s.port, "DELETE", "/projections/pgo", NULL, NULL, &r);
    CHECK_MSG(r.status == 200, "%d %s", r.status, r.body);
    resp_free(&r);
    pg_sql(&p, "SELECT count(*) FROM pg_tables WHERE tablename = 'order_list'", v, sizeof v);
    CHECK_MSG(!strcmp(v, "0"), "%s", v);
    pg_sql(&p, "SELECT count(*) FROM factum_projections WHERE name = 'pgo'", v, sizeof v);
    CHECK_MSG(!strcmp(v, "0"), "%s", v);
    free(def);
    srv_stop(&s, SIGTERM);
    pg_down(&p);
}

static void model_pg(const pg *p, model *m) {
    PGconn *c = PQconnectdb(p->conninfo);
    CHECK_MSG(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
    PGresult *r = PQexec(c, "SELECT position FROM factum_projections WHERE name = 'c'");
    CHECK(PQresultStatus(r) == PGRES_TUPLES_OK);
    if (PQntuples(r)) m->cp = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    r = PQexec(c, "SELECT position, v FROM seen ORDER BY position");
    CHECK(PQresultStatus(r) == PGRES_TUPLES_OK);
    for (int i = 0; i < PQntuples(r); i++)
        model_add(m, strtoll(PQgetvalue(r, i, 0), NULL, 10), strtoll(PQgetvalue(r, i, 1), NULL, 10));
    PQclear(r);
    r = PQexec(c, "SELECT n, s FROM total");
    CHECK(PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1);
    m->total_n = strtoll(PQgetvalue(r, 0, 0), NULL, 10), m->total_s = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
    PQclear(r);
    PQfinish(c);
}

static void load_pg(void *ctx, model *m) { model_pg(ctx, m); }

/* Every other cycle, the projector's database connection is cut as well. */
static void cut_connections(void *ctx) {
    static int n;
    if (n++ % 2) return;
    pg_sql(ctx,
           "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND datname = "
           "'postgres'",
           NULL, 0);
}

TEST_T(killing_the_server_or_its_database_connection_neither_skips_nor_repeats_an_event_in_postgresql, 300) {
    pg p;
    pg_up(&p);
    char *def = pg_def(&p, "{\"setup\":[\"CREATE TABLE IF NOT EXISTS seen (position bigint, v bigint)\","
                           "\"CREATE TABLE IF NOT EXISTS total (k int PRIMARY KEY, n bigint, s bigint)\","
                           "\"INSERT INTO total VALUES (1, 0, 0) ON CONFLICT DO NOTHING\"],"
                           "\"handlers\":{\"Inc\":[\"INSERT INTO seen VALUES (:position, :data.v)\","
                           "\"UPDATE total SET n = n + 1, s = s + :data.v WHERE k = 1\"]}}");
    crash_cycles(def, 20, load_pg, cut_connections, &p);
    free(def);
    pg_down(&p);
}

static char *read_example(const char *name) {
    char path[1024];
    snprintf(path, sizeof path, "%s/examples/projections/%s", test_root(), name);
    FILE *f = fopen(path, "rb");
    CHECK_MSG(f, "no %s", path);
    char *b = calloc(1, 1 << 16);
    size_t n = fread(b, 1, (1 << 16) - 1, f);
    fclose(f);
    b[n] = 0;
    return b;
}

/* The examples' README events: orders created with a customer and a total, one shipped, and an
   order placed as `make demo` places them. */
TEST_T(the_example_projections_work_as_shipped, 120) {
    srv s = srv_start(test_dir(), NULL);
    char *def = read_example("order_list.json");
    define(s.port, "order_list", def, 201);
    free(def);
    def = read_example("daily_order_stats.json");
    define(s.port, "daily_order_stats", def, 201);
    free(def);
    pg p;
    pg_up(&p);
    def = read_example("daily_order_stats.postgres.json");
    char *at = strstr(def, "host=/var/run/postgresql dbname=readmodels");
    CHECK(at);
    buf_t pgdef = {0};
    buf_printf(&pgdef, "%.*s%s%s", (int)(at - def), def, p.conninfo,
               at + strlen("host=/var/run/postgresql dbname=readmodels"));
    define(s.port, "daily_pg", pgdef.ptr, 201);
    buf_free(&pgdef);
    free(def);
    resp r;
    http_do(s.port, "POST", "/streams/order-1001", JSON,
            "{\"type\":\"OrderCreated\",\"data\":{\"customerId\":\"cust-7\",\"total\":21.5}}", &r);
    CHECK_MSG(r.status == 201, "%d %s", r.status, r.body);
    resp_free(&r);
    append(s.port, "order-1002", "OrderCreated", "{\"customerId\":\"cust-7\",\"total\":5}");
    append(s.port, "order-1001", "OrderShipped", "{}");
    uint64_t pos = append(s.port, "order-o-9", "OrderPlaced",
                          "{\"orderId\":\"o-9\",\"amount\":80,\"sku\":\"book\",\"region\":\"earth\"}");
    char body[600];
    snprintf(body, sizeof body,
             "{\"sql\":\"SELECT order_id, status, total FROM order_list WHERE customer_id = :customer ORDER BY "
             "created_at DESC LIMIT :limit OFFSET :offset\","
             "\"params\":{\"customer\":\"cust-7\",\"limit\":20,\"offset\":0},\"min_position\":%llu}",
             (unsigned long long)pos);
    char *b = query(s.port, "order_list", body, 200);
    CHECK_MSG(strstr(b, "\"rows\":[[\"order-1002\",\"CREATED\",5],[\"order-1001\",\"SHIPPED\",21.5]]"), "%s", b);
    free(b);
    b = query(s.port, "order_list", "{\"sql\":\"SELECT status, total FROM order_list WHERE order_id = 'order-o-9'\"}",
              200);
    CHECK_MSG(strstr(b, "\"rows\":[[\"PLACED\",80]]"), "%s", b);
    free(b);
    snprintf(body, sizeof body,
             "{\"sql\":\"SELECT sum(order_count), sum(total_value) FROM daily_order_stats WHERE date BETWEEN :start "
             "AND :end\","
             "\"params\":{\"start\":\"2000-01-01\",\"end\":\"2999-12-31\"},\"min_position\":%llu}",
             (unsigned long long)pos);
    b = query(s.port, "daily_order_stats", body, 200);
    CHECK_MSG(strstr(b, "\"rows\":[[3,106.5]]"), "%s", b);
    free(b);
    b = query(s.port, "daily_pg", body, 200);
    CHECK_MSG(strstr(b, "\"rows\":[[3,106.5]]"), "%s", b);
    free(b);
    srv_stop(&s, SIGTERM);
    pg_down(&p);
}

/* `make demo` applies both example projections to the events it makes and prints what they
   hold: a row per order with the status its events gave it, every order counted once. */
TEST_T(the_example_projections_work_on_the_events_of_make_demo, 120) {
    char cmd[4096], svc[2048];
    snprintf(svc, sizeof svc, "%s", test_bin());
    strcpy(strrchr(svc, '/') + 1, "order-service");
    snprintf(cmd, sizeof cmd, "BIN=%s SVC=%s sh %s/examples/orders/demo.sh 2>&1", test_bin(), svc, test_root());
    static char out[65536];
    CHECK_EQ(test_run(cmd, out, sizeof out), 0);
    char *models = strstr(out, "== read models: examples/projections ==\n");
    CHECK_MSG(models, "%s", out);
    static const char *want[] = {
        "order_list (running):\n",
        "  corder-c-declined DECLINED 5000",
        "  corder-c-lost SHIPPING_FAILED 60",
        "  corder-c-nostock OUT_OF_STOCK 80",
        "  corder-c-ok SHIPPED 120",
        "  order-o-declined PLACED 5000",
        "  order-o-lost PLACED 60",
        "  order-o-nostock PLACED 80",
        "  order-o-ok PLACED 120",
        "daily_order_stats (running):\n",
    };
    for (size_t i = 0; i < ARRAY_LEN(want); i++)
        CHECK_MSG(strstr(models, want[i]), "no '%s' in:\n%s", want[i], models);
    /* A row per day (the run may straddle midnight UTC): 8 orders worth 10520 in all. */
    long orders = 0;
    double value = 0;
    for (char *l = strstr(models, "daily_order_stats (running):\n"); (l = strchr(l, '\n')) && l[1] == ' '; l++) {
        long n;
        double v;
        CHECK_MSG(sscanf(l + 1, " %*s %ld %lf", &n, &v) == 2, "%s", l + 1);
        orders += n, value += v;
    }
    CHECK_MSG(orders == 8 && value == 10520, "%ld orders worth %g in:\n%s", orders, value, models);
}

/* A SQLite file the projector could never make is refused at PUT, as an unreachable
   PostgreSQL is, and nothing changes: not made, not recorded, the old definition running. */
TEST(a_sqlite_file_that_cannot_be_created_is_refused_at_put_and_changes_nothing) {
    srv s = srv_start(test_dir(), NULL);
    define(s.port, "ok", "{\"handlers\":{\"X\":[\"SELECT 1\"]}}", 201);
    /* SQLite files stay inside the data folder (issue 16): no absolute path, no '..', not in the
       store's own folders, no link leading out, no link as the file. */
    char cmd[2000];
    snprintf(cmd, sizeof cmd, "ln -s /tmp '%s/out' && ln -s /tmp/x.sqlite '%s/linked.sqlite' && touch '%s/afile'",
             test_dir(), test_dir(), test_dir());
    CHECK(system(cmd) == 0);
    static const struct {
        const char *name, *path, *says;
    } bad[] = {
        {"nope", "/proc/nope/x.sqlite", "must be a path relative to the data folder, not an absolute one"},
        {"proc", "/proc/x.sqlite", "not an absolute one (/proc/x.sqlite)"},
        {"up", "../x.sqlite", "must stay inside the data folder: no '..'"},
        {"deep", "a/../../x.sqlite", "no '..'"},
        {"log", "log/x.sqlite", "cannot be in the store's own folder log/"},
        {"index", "index/x.sqlite", "cannot be in the store's own folder index/"},
        {"out", "out/x.sqlite", "leads outside the data folder (to /tmp)"},
        {"linked", "linked.sqlite", "is not a regular file (a link?)"},
        {"notdir", "afile/x.sqlite", "Not a directory"},
        {"rel", "no-such-folder/x.sqlite", "/no-such-folder/x.sqlite: No such file or directory"},
        {"ok", "/proc/nope/x.sqlite", "absolute"},
    };
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        char path[160], def[400];
        snprintf(path, sizeof path, "/projections/%s", bad[i].name);
        snprintf(def, sizeof def, "{\"target\":{\"sqlite\":\"%s\"},\"handlers\":{\"X\":[\"SELECT 1\"]}}", bad[i].path);
        expect_status(s.port, "PUT", path, JSON, def, 400, bad[i].says);
    }
    char *list = http_body(s.port, "GET", "/projections", NULL, NULL, 200);
    for (size_t i = 0; i + 1 < ARRAY_LEN(bad); i++) {
        char quoted[40];
        snprintf(quoted, sizeof quoted, "\"%s\"", bad[i].name);
        CHECK_MSG(!strstr(list, quoted), "%s was recorded: %s", bad[i].name, list);
    }
    struct stat sb;
    CHECK(stat("/tmp/x.sqlite", &sb) != 0 || sb.st_mtime < time(NULL) - 600); /* nothing made out there */
    free(list);
    char *st = wait_settled(s.port, "ok", false);
    CHECK_MSG(!strstr(st, "x.sqlite"), "%s", st);
    free(st);
    /* A file in a folder that is there is made by the projector, and works. */
    char def[1200], file[700];
    snprintf(file, sizeof file, "elsewhere.sqlite");
    snprintf(def, sizeof def,
             "{\"target\":{\"sqlite\":\"%s\"},\"setup\":[\"CREATE TABLE t (a)\"],\"handlers\":{\"X\":[\"INSERT INTO t "
             "VALUES (:data.a)\"]}}",
             file);
    define(s.port, "there", def, 201);
    uint64_t pos = append(s.port, "x-1", "X", "{\"a\":7}");
    char body[200];
    snprintf(body, sizeof body, "{\"sql\":\"SELECT a FROM t\",\"min_position\":%llu}", (unsigned long long)pos);
    char *b = query(s.port, "there", body, 200);
    CHECK_MSG(strstr(b, "[[7]]"), "%s", b);
    free(b);
    srv_stop(&s, SIGTERM);
    /* And the refusals were not recorded: after a restart only "ok" and "there" come back. */
    s = srv_start(test_dir(), NULL);
    list = http_body(s.port, "GET", "/projections", NULL, NULL, 200);
    CHECK_MSG(strstr(list, "\"ok\"") && strstr(list, "\"there\"") && !strstr(list, "\"nope\""), "%s", list);
    free(list);
    srv_stop(&s, SIGTERM);
}

TEST(with_projections_dir_sqlite_targets_live_and_stay_in_that_folder) {
    char pdir[600], extra[700], cmd[1400], out[2000];
    snprintf(pdir, sizeof pdir, "%s/targets", test_dir());
    snprintf(extra, sizeof extra, "--projections-dir %s", pdir);
    /* A folder that is not there is refused at start. */
    snprintf(cmd, sizeof cmd, "%s serve --data-dir %s/data --listen 127.0.0.1:0 %s 2>&1", test_bin(), test_dir(),
             extra);
    CHECK_EQ(test_run(cmd, out, sizeof out), 2);
    CHECK_MSG(strstr(out, "--projections-dir") && strstr(out, "not a folder"), "%s", out);
    char data[600];
    snprintf(data, sizeof data, "%s/data", test_dir());
    struct stat none;
    CHECK(stat(data, &none) != 0); /* refused before the data folder was made */
    CHECK(mkdir(pdir, 0755) == 0);
    srv s = srv_start(data, extra);
    define(s.port, "named", "{\"target\":{\"sqlite\":\"named.sqlite\"},\"handlers\":{\"X\":[\"SELECT 1\"]}}", 201);
    define(s.port, "dflt", "{\"handlers\":{\"X\":[\"SELECT 1\"]}}", 201);
    expect_status(s.port, "PUT", "/projections/up", JSON,
                  "{\"target\":{\"sqlite\":\"../data/x.sqlite\"},\"handlers\":{\"X\":[\"SELECT 1\"]}}", 400, "'..'");
    append(s.port, "x-1", "X", "{}");
    free(wait_settled(s.port, "named", false));
    free(wait_settled(s.port, "dflt", false));
    struct stat sb;
    snprintf(cmd, sizeof cmd, "%s/named.sqlite", pdir);
    CHECK_MSG(stat(cmd, &sb) == 0, "%s is missing", cmd);
    snprintf(cmd, sizeof cmd, "%s/projections/dflt.sqlite", pdir);
    CHECK_MSG(stat(cmd, &sb) == 0, "%s is missing", cmd);
    snprintf(cmd, sizeof cmd, "%s/named.sqlite", data);
    CHECK(stat(cmd, &sb) != 0); /* nothing in the data folder */
    srv_stop(&s, SIGTERM);
}

/* `factum projection` against a server: apply, ls, query, reset, delete, and its errors. */
static int cli(int port, const char *args, char *out, size_t cap) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s --server http://127.0.0.1:%d projection %s 2>&1", test_bin(), port, args);
    return test_run(cmd, out, cap);
}

TEST(the_projection_command_applies_lists_queries_resets_and_deletes) {
    srv s = srv_start(test_dir(), NULL);
    static char out[65536];
    char args[1024];
    snprintf(args, sizeof args, "apply %s/examples/projections/order_list.json", test_root());
    CHECK_EQ(cli(s.port, args, out, sizeof out), 0);
    CHECK_MSG(strstr(out, "\"name\":\"order_list\""), "%s", out);
    uint64_t p = append(s.port, "order-7", "OrderCreated", "{\"customerId\":\"u-1\"}");
    snprintf(
        args, sizeof args,
        "query order_list 'SELECT order_id, status FROM order_list WHERE customer_id = :u' --params '{\"u\":\"u-1\"}' "
        "--min-position %llu --timeout-ms 5000",
        (unsigned long long)p);
    CHECK_EQ(cli(s.port, args, out, sizeof out), 0);
    CHECK_MSG(!strcmp(out, "{\"columns\":[\"order_id\",\"status\"],\"rows\":[[\"order-7\",\"CREATED\"]]}\n"), "%s",
              out);
    CHECK_EQ(cli(s.port, "ls", out, sizeof out), 0);
    CHECK_MSG(!strncmp(out, "{\"name\":\"order_list\",\"status\":\"running\"", 39) &&
                  strchr(out, '\n') == out + strlen(out) - 1,
              "%s", out);
    CHECK_EQ(cli(s.port, "status order_list", out, sizeof out), 0);
    CHECK_MSG(strstr(out, "\"definition\":"), "%s", out);
    CHECK_EQ(cli(s.port, "query order_list 'DELETE FROM order_list'", out, sizeof out), 1);
    CHECK_MSG(strstr(out, "may only read"), "%s", out);
    CHECK_EQ(cli(s.port, "query order_list 'SELECT 1' --params '[1]'", out, sizeof out), 2);
    CHECK_EQ(cli(s.port, "reset order_list", out, sizeof out), 0);
    free(wait_settled(s.port, "order_list", false));
    CHECK_EQ(cli(s.port, "delete order_list", out, sizeof out), 0);
    CHECK_MSG(strstr(out, "\"deleted\":true"), "%s", out);
    CHECK_EQ(cli(s.port, "status order_list", out, sizeof out), 3);
    CHECK_EQ(cli(s.port, "apply /nonexistent.json", out, sizeof out), 1);
    CHECK_MSG(strstr(out, "cannot open /nonexistent.json"), "%s", out);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s --data-dir %s projection ls 2>&1", test_bin(), test_dir());
    CHECK_EQ(test_run(cmd, out, sizeof out), 2);
    CHECK_MSG(strstr(out, "--server"), "%s", out);
    srv_stop(&s, SIGTERM);
}

TEST_T(a_query_with_min_position_reads_its_own_write_in_postgresql_while_others_append, 120) {
    pg p;
    pg_up(&p);
    char *def = pg_def(&p, RYW);
    ryw_run(def);
    free(def);
    pg_down(&p);
}

/* A query right after PUT waits for the projection's setup (within its timeout): it used to be
   able to come first and answer "no such table" (seen once in a full make test). */
TEST(a_query_right_after_put_finds_the_tables_of_the_setup) {
    srv s = srv_start(test_dir(), "");
    for (int i = 0; i < 10; i++) {
        char name[32];
        snprintf(name, sizeof name, "fresh%d", i);
        define(s.port, name, "{\"setup\":[\"CREATE TABLE t (a)\"],\"handlers\":{\"X\":[\"INSERT INTO t VALUES (1)\"]}}",
               201);
        char *b = query(s.port, name, "{\"sql\":\"SELECT count(*) FROM t\"}", 200);
        CHECK_MSG(strstr(b, "[[0]]"), "%s", b);
        free(b);
    }
    srv_stop(&s, SIGTERM);
}

/* SQLite read models reach no other file and load no code (issue 16): ATTACH, DETACH, VACUUM
   INTO, load_extension and PRAGMAs that change the connection are refused at PUT in setup and
   handlers, and in queries; a setup string holds one statement. Nothing is written outside. */
TEST(sqlite_statements_cannot_attach_files_load_code_or_change_the_connection) {
    srv s = srv_start(test_dir(), NULL);
    char other[700], def[2000];
    snprintf(other, sizeof other, "%s/other.sqlite", test_dir());
    static const struct {
        const char *setup, *handler, *says;
    } bad[] = {
        {"ATTACH DATABASE '%s' AS x", "SELECT 1", "not authorized"},
        {"CREATE TABLE t (a); ATTACH DATABASE '%s' AS x", "SELECT 1", "more than one statement"},
        {"CREATE TABLE t (a)", "ATTACH DATABASE '%s' AS x", "not authorized"},
        {"CREATE TABLE t (a)", "DETACH DATABASE main", "not authorized"},
        {"VACUUM INTO '%s'", "SELECT 1", "SQL error"},
        {"CREATE TABLE t (a)", "SELECT load_extension('%s')", "not authorized"},
        {"PRAGMA writable_schema = 1", "SELECT 1", "not authorized"},
        {"CREATE TABLE t (a)", "PRAGMA journal_mode = DELETE", "not authorized"},
    };
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        char setup[800], handler[800];
        snprintf(setup, sizeof setup, bad[i].setup, other);
        snprintf(handler, sizeof handler, bad[i].handler, other);
        snprintf(def, sizeof def, "{\"setup\":[\"%s\"],\"handlers\":{\"X\":[\"%s\"]}}", setup, handler);
        expect_status(s.port, "PUT", "/projections/evil", JSON, def, 400, bad[i].says);
    }
    define(s.port, "fine", "{\"setup\":[\"CREATE TABLE t (a)\"],\"handlers\":{\"X\":[\"INSERT INTO t VALUES (1)\"]}}",
           201);
    snprintf(def, sizeof def, "{\"sql\":\"ATTACH DATABASE '%s' AS x\"}", other);
    expect_status(s.port, "POST", "/projections/fine/query", JSON, def, 400, NULL);
    expect_status(s.port, "POST", "/projections/fine/query", JSON, "{\"sql\":\"PRAGMA table_info(t)\"}", 200, "\"a\"");
    expect_status(s.port, "POST", "/projections/fine/query", JSON, "{\"sql\":\"PRAGMA journal_mode\"}", 400,
                  "not authorized");
    struct stat st;
    CHECK_MSG(stat(other, &st) != 0, "%s was made", other);
    srv_stop(&s, SIGTERM);
}

/* A PostgreSQL connection string's password is never answered nor recorded (issue 16): PUT, GET,
   the list and $projections have the string with the password replaced, in the keyword and the
   URI form; the password is kept apart (0600) and comes back after a restart. */
TEST_T(a_postgresql_password_is_never_echoed, 120) {
    pg p;
    pg_up(&p);
    srv s = srv_start(test_dir(), NULL);
    const char *forms[] = {"host=%s user=postgres dbname=postgres password=s3cr3t-kw",
                           "postgresql://postgres:s3cr3t-uri@/postgres?host=%s"};
    for (int i = 0; i < 2; i++) {
        char conn[300], def[1000], path[64];
        snprintf(conn, sizeof conn, forms[i], p.dir);
        snprintf(def, sizeof def, "{\"target\":{\"postgres\":\"%s\"},\"handlers\":{\"X\":[\"SELECT 1\"]}}", conn);
        snprintf(path, sizeof path, "/projections/pw%d", i);
        char *put = http_body(s.port, "PUT", path, JSON, def, 201);
        char *get = http_body(s.port, "GET", path, NULL, NULL, 200);
        char *list = http_body(s.port, "GET", "/projections", NULL, NULL, 200);
        const char *answers[] = {put, get, list};
        for (int k = 0; k < 3; k++) {
            CHECK_MSG(!strstr(answers[k], "s3cr3t"), "the password was echoed: %s", answers[k]);
            CHECK_MSG(k == 2 || strstr(answers[k], "password='*****'"), "no redacted password in %s", answers[k]);
        }
        free(put);
        free(get);
        free(list);
        /* The record holds no password: it is kept apart, readable by the owner only. */
        char secret[700];
        snprintf(secret, sizeof secret, "%s/projections/pw%d.secret", test_dir(), i);
        struct stat st;
        CHECK_MSG(stat(secret, &st) == 0 && (st.st_mode & 0777) == 0600, "%s: mode %o", secret, st.st_mode & 0777);
    }
    /* The test's role is the superuser postgres: the PUT says so (a SQLite target never does). */
    char *warned = http_body(s.port, "GET", "/projections/pw0", NULL, NULL, 200);
    CHECK_MSG(!strstr(warned, "\"warnings\""), "GET repeats no warning: %s", warned);
    free(warned);
    char wdef[600];
    snprintf(wdef, sizeof wdef, "{\"target\":{\"postgres\":\"%s\"},\"handlers\":{\"X\":[\"SELECT 1\"]}}", p.conninfo);
    warned = http_body(s.port, "PUT", "/projections/super", JSON, wdef, 201);
    CHECK_MSG(strstr(warned, "\"warnings\":[\"the connection's role postgres is a superuser"), "%s", warned);
    free(warned);
    warned = http_body(s.port, "PUT", "/projections/lite", JSON, "{\"handlers\":{\"X\":[\"SELECT 1\"]}}", 201);
    CHECK_MSG(!strstr(warned, "warnings"), "%s", warned);
    free(warned);
    char *rec = http_body(s.port, "GET", "/streams/%24projections", NULL, NULL, 200);
    CHECK_MSG(strstr(rec, "ProjectionDefined") && !strstr(rec, "s3cr3t") && strstr(rec, "password='*****'"), "%s", rec);
    free(rec);
    srv_stop(&s, SIGTERM);
    /* After a restart both run again (from the record and the kept password), still redacted. */
    s = srv_start(test_dir(), NULL);
    for (int i = 0; i < 2; i++) {
        char path[64];
        snprintf(path, sizeof path, "/projections/pw%d", i);
        char *get = http_body(s.port, "GET", path, NULL, NULL, 200);
        CHECK_MSG(strstr(get, "\"status\":\"running\"") && !strstr(get, "s3cr3t"), "%s", get);
        free(get);
    }
    expect_status(s.port, "DELETE", "/projections/pw0", NULL, NULL, 200, NULL);
    char secret[700];
    struct stat st;
    snprintf(secret, sizeof secret, "%s/projections/pw0.secret", test_dir());
    CHECK_MSG(stat(secret, &st) != 0, "%s outlived its projection", secret);
    srv_stop(&s, SIGTERM);
    pg_down(&p);
}
