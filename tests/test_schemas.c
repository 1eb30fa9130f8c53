/*
 * test_schemas.c — the schema registry and validation on append (docs/schemas.md): over HTTP
 * against a real server, and embedded (factum_append with the registry installed); the dry run
 * over a store of good and bad events; the registry's limits one past.
 */
#include "../src/schema/registry.h"
#include "test_server.h"

#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>
#include <string.h>

#define CE "Content-Type: application/cloudevents+json\r\n"
#define BATCH "Content-Type: application/cloudevents-batch+json\r\n"

/* An order: an id like O-123, an amount, a currency of three; nothing else. */
static const char *const ORDER_V1 =
    "{\"type\":\"object\",\"required\":[\"id\",\"amount\"],\"additionalProperties\":false,"
    "\"properties\":{\"id\":{\"type\":\"string\",\"pattern\":\"^O-[0-9]+$\"},\"amount\":{\"type\":\"number\","
    "\"minimum\":0},\"currency\":{\"enum\":[\"EUR\",\"USD\",\"GBP\"]}}}";
/* v2 requires the currency. */
static const char *const ORDER_V2 =
    "{\"type\":\"object\",\"required\":[\"id\",\"amount\",\"currency\"],\"additionalProperties\":false,"
    "\"properties\":{\"id\":{\"type\":\"string\",\"pattern\":\"^O-[0-9]+$\"},\"amount\":{\"type\":\"number\","
    "\"minimum\":0},\"currency\":{\"enum\":[\"EUR\",\"USD\",\"GBP\"]}}}";

TEST(schema_versions_register_in_order_and_survive_a_restart) {
    srv s = srv_start(test_dir(), NULL);
    resp r;
    http_do(s.port, "PUT", "/schemas/OrderPlaced/versions/1", NULL, ORDER_V1, &r);
    CHECK_MSG(r.status == 201, "%d %s", r.status, r.body);
    char loc[256];
    CHECK(!strcmp(resp_header(&r, "Location", loc, sizeof loc), "/schemas/OrderPlaced/versions/1"));
    CHECK(strstr(r.body, "\"compatibility\":\"backward\",\"mode\":\"enforce\""));
    resp_free(&r);
    /* not the next version: 409, nothing registered */
    expect_status(s.port, "PUT", "/schemas/OrderPlaced/versions/1", NULL, ORDER_V1, 409, "register version 2");
    expect_status(s.port, "PUT", "/schemas/OrderPlaced/versions/3", NULL, ORDER_V1, 409, "register version 2");
    /* a bad document, an unsupported keyword, bad options: 400, nothing registered */
    expect_status(s.port, "PUT", "/schemas/OrderPlaced/versions/2", NULL, "{\"type\":", 400, "not valid JSON");
    expect_status(s.port, "PUT", "/schemas/OrderPlaced/versions/2", NULL, "{\"properties\":{\"a\":{\"$defs\":{}}}}",
                  400, "/properties/a: unsupported keyword \\\"$defs\\\"");
    expect_status(s.port, "PUT", "/schemas/OrderPlaced/versions/2?mode=strict", NULL, ORDER_V2, 400, "mode=off");
    expect_status(s.port, "PUT", "/schemas/OrderPlaced/versions/0", NULL, ORDER_V2, 400, "from 1 to");
    expect_status(s.port, "PUT", "/schemas/OrderPlaced/versions/1001", NULL, ORDER_V2, 400, "from 1 to");
    expect_status(s.port, "PUT", "/schemas/OrderPlaced/versions/2?compatibility=none", NULL, ORDER_V2, 201, NULL);
    expect_status(s.port, "PUT", "/schemas/Shipped%20Late/versions/1?mode=warn", NULL, "true", 201, NULL);
    char *list = http_body(s.port, "GET", "/schemas", NULL, NULL, 200);
    CHECK_MSG(strstr(list, "{\"type\":\"OrderPlaced\",\"mode\":\"enforce\",\"latest\":2,") &&
                  strstr(list, "{\"type\":\"Shipped Late\",\"mode\":\"warn\",\"latest\":1,"),
              "%s", list);
    free(list);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);

    s = srv_start(test_dir(), NULL);
    char *one = http_body(s.port, "GET", "/schemas/OrderPlaced", NULL, NULL, 200);
    CHECK_MSG(strstr(one, "\"versions\":[{\"version\":1,\"compatibility\":\"backward\"},{\"version\":2,"
                          "\"compatibility\":\"none\"}]"),
              "%s", one);
    free(one);
    char *doc = http_body(s.port, "GET", "/schemas/OrderPlaced/versions/2", NULL, NULL, 200);
    CHECK(!strcmp(doc, ORDER_V2));
    free(doc);
    expect_status(s.port, "GET", "/schemas/OrderPlaced/versions/3", NULL, NULL, 404, "no schema version 3");
    expect_status(s.port, "GET", "/schemas/Nothing", NULL, NULL, 404, "Nothing has no schema");
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}

TEST(append_that_breaks_its_schema_is_422_listing_violations_and_writes_nothing) {
    srv s = srv_start(test_dir(), NULL);
    expect_status(s.port, "PUT", "/schemas/OrderPlaced/versions/1", NULL, ORDER_V1, 201, NULL);
    expect_status(s.port, "PUT", "/schemas/OrderPlaced/versions/2", NULL, ORDER_V2, 201, NULL);
    /* latest (v2) by default: the currency is missing */
    resp r;
    http_do(s.port, "POST", "/streams/order-1", CE, "{\"type\":\"OrderPlaced\",\"data\":{\"id\":\"O-1\",\"amount\":5}}",
            &r);
    CHECK_MSG(r.status == 422, "%d %s", r.status, r.body);
    char ct[128];
    CHECK(!strcmp(resp_header(&r, "Content-Type", ct, sizeof ct), "application/problem+json"));
    CHECK_MSG(strstr(r.body, "\"violations\":[{\"event\":0,\"type\":\"OrderPlaced\",\"version\":2,\"pointer\":\"\","
                             "\"keyword\":\"required\""),
              "%s", r.body);
    resp_free(&r);
    /* v1 named by dataschema takes it */
    expect_status(s.port, "POST", "/streams/order-1", CE,
                  "{\"type\":\"OrderPlaced\",\"dataschema\":\"https://x.example/schemas/OrderPlaced/versions/1\","
                  "\"data\":{\"id\":\"O-1\",\"amount\":5}}",
                  201, NULL);
    expect_status(s.port, "POST", "/streams/order-1", CE,
                  "{\"type\":\"OrderPlaced\",\"dataschema\":\"/schemas/OrderPlaced/versions/3\",\"data\":{}}", 400,
                  "names no registered version");
    /* a batch with one bad event (the third: two violations) writes nothing */
    http_do(s.port, "POST", "/streams/order-2", BATCH,
            "[{\"type\":\"OrderPlaced\",\"data\":{\"id\":\"O-2\",\"amount\":1,\"currency\":\"EUR\"}},"
            "{\"type\":\"Other\",\"data\":{\"anything\":true}},"
            "{\"type\":\"OrderPlaced\",\"data\":{\"id\":\"X-3\",\"amount\":-1,\"currency\":\"EUR\"}}]",
            &r);
    CHECK_MSG(r.status == 422, "%d %s", r.status, r.body);
    CHECK_MSG(strstr(r.body, "{\"event\":2,\"type\":\"OrderPlaced\",\"version\":2,\"pointer\":\"/id\",\"keyword\":"
                             "\"pattern\"") &&
                  strstr(r.body, "{\"event\":2,\"type\":\"OrderPlaced\",\"version\":2,\"pointer\":\"/amount\","
                                 "\"keyword\":\"minimum\""),
              "%s", r.body);
    CHECK(strstr(r.body, "2 violations in 1 events"));
    resp_free(&r);
    expect_status(s.port, "GET", "/streams/order-2", NULL, NULL, 404, NULL);
    CHECK_EQ(srv_metric(s.port, "factum_schema_violations_total{type=\"OrderPlaced\",action=\"refused\"}"), 2);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}

/* The command line on a data folder has the folder's schemas, as a server on it would. */
TEST(the_command_line_on_a_data_folder_checks_appends_against_its_schemas) {
    srv s = srv_start(test_dir(), NULL);
    expect_status(s.port, "PUT", "/schemas/OrderPlaced/versions/1", NULL, ORDER_V1, 201, NULL);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    char out[4096];
    int rc = run_factum(out, sizeof out, "--data-dir %s append order-9 OrderPlaced '{\"id\":\"X\"}'", test_dir());
    CHECK_MSG(rc != 0 && strstr(out, "schema"), "%d %s", rc, out);
    rc = run_factum(out, sizeof out, "--data-dir %s append order-9 OrderPlaced '{\"id\":\"O-9\",\"amount\":3}'",
                    test_dir());
    CHECK_MSG(rc == 0, "%d %s", rc, out);
    rc = run_factum(out, sizeof out, "--data-dir %s read order-9", test_dir());
    CHECK_MSG(rc == 0 && strstr(out, "O-9") && !strstr(out, "\"X\""), "%d %s", rc, out);
}

TEST(warn_mode_accepts_and_counts_violations_in_metrics) {
    srv s = srv_start(test_dir(), NULL);
    expect_status(s.port, "PUT", "/schemas/OrderPlaced/versions/1?mode=warn", NULL, ORDER_V1, 201, NULL);
    for (int i = 0; i < 3; i++)
        expect_status(s.port, "POST", "/streams/order-1", CE, "{\"type\":\"OrderPlaced\",\"data\":{\"id\":7}}", 201,
                      NULL);
    expect_status(s.port, "POST", "/streams/order-1", CE,
                  "{\"type\":\"OrderPlaced\",\"data\":{\"id\":\"O-7\",\"amount\":1}}", 201, NULL);
    CHECK_EQ(srv_metric(s.port, "factum_schema_violations_total{type=\"OrderPlaced\",action=\"warned\"}"), 3);
    CHECK_EQ(srv_metric(s.port, "factum_schema_violations_total{type=\"OrderPlaced\",action=\"refused\"}"), 0);
    /* off: not even counted */
    expect_status(s.port, "PUT", "/schemas/OrderPlaced/versions/2?mode=off&compatibility=none", NULL, ORDER_V2, 201,
                  NULL);
    expect_status(s.port, "POST", "/streams/order-1", CE, "{\"type\":\"OrderPlaced\",\"data\":{\"id\":7}}", 201, NULL);
    CHECK_EQ(srv_metric(s.port, "factum_schema_violations_total{type=\"OrderPlaced\",action=\"warned\"}"), 3);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}

/* A store with good and bad events of a type before it has a schema: the dry run reports,
   backward compatibility refuses, none registers. */
TEST(dry_run_reports_how_many_stored_events_would_fail) {
    srv s = srv_start(test_dir(), NULL);
    for (int i = 0; i < 10; i++) {
        char body[200];
        snprintf(body, sizeof body, "{\"type\":\"OrderPlaced\",\"data\":{\"id\":\"%s-%d\",\"amount\":%d}}",
                 i % 3 ? "O" : "bad", i, i);
        expect_status(s.port, "POST", "/streams/order-9", CE, body, 201, NULL);
    }
    resp r;
    http_do(s.port, "PUT", "/schemas/OrderPlaced/versions/1?dry_run=true", NULL, ORDER_V1, &r);
    CHECK_MSG(r.status == 200, "%d %s", r.status, r.body);
    CHECK(strstr(r.body, "\"dry_run\":true,\"checked\":10,\"failing\":4,\"sampled\":false,\"failures\":[{\"stream\":"
                         "\"order-9\",\"revision\":0,"));
    CHECK(strstr(r.body, "\"pointer\":\"/id\",\"keyword\":\"pattern\""));
    resp_free(&r);
    expect_status(s.port, "GET", "/schemas/OrderPlaced", NULL, NULL, 404, NULL); /* nothing registered */
    http_do(s.port, "PUT", "/schemas/OrderPlaced/versions/1", NULL, ORDER_V1, &r);
    CHECK_MSG(r.status == 409 && strstr(r.body, "urn:factum:problem:schema-incompatible") &&
                  strstr(r.body, "4 of 10 stored OrderPlaced events fail"),
              "%d %s", r.status, r.body);
    resp_free(&r);
    /* six failing: five listed */
    for (int i = 0; i < 2; i++)
        expect_status(s.port, "POST", "/streams/order-9", CE, "{\"type\":\"OrderPlaced\",\"data\":null}", 201, NULL);
    char out[8192];
    char *file = test_path("order.json");
    FILE *f = fopen(file, "w");
    fputs(ORDER_V1, f);
    fclose(f);
    CHECK_EQ(run_factum(out, sizeof out, "--server http://127.0.0.1:%d schema check OrderPlaced 1 %s", s.port, file),
             0);
    CHECK_MSG(strstr(out, "\"checked\":12,\"failing\":6,"), "%s", out);
    size_t listed = 0;
    for (const char *p = out; (p = strstr(p, "{\"stream\":")); p++)
        listed++;
    CHECK_EQ(listed, SCHEMA_CHECK_LISTED);
    CHECK_EQ(run_factum(out, sizeof out,
                        "--server http://127.0.0.1:%d schema put OrderPlaced 1 %s --compatibility none", s.port, file),
             0);
    CHECK_EQ(run_factum(out, sizeof out, "--server http://127.0.0.1:%d schema ls", s.port), 0);
    CHECK_MSG(strstr(out, "\"type\":\"OrderPlaced\""), "%s", out);
    CHECK_EQ(run_factum(out, sizeof out, "--server http://127.0.0.1:%d schema show OrderPlaced 1", s.port), 0);
    CHECK(strstr(out, "O-[0-9]+"));
    CHECK(run_factum(out, sizeof out, "--server http://127.0.0.1:%d schema put OrderPlaced 1 %s", s.port, file) != 0);
    /* version 2 and its upcast from the command line */
    char *steps = test_path("steps.json");
    f = fopen(steps, "w");
    fputs("{\"steps\":[{\"op\":\"add\",\"path\":\"/currency\",\"value\":\"EUR\"}]}", f);
    fclose(f);
    CHECK_EQ(run_factum(out, sizeof out,
                        "--server http://127.0.0.1:%d schema put OrderPlaced 2 %s --compatibility none", s.port, file),
             0);
    CHECK_EQ(run_factum(out, sizeof out, "--server http://127.0.0.1:%d schema upcast OrderPlaced 2 %s", s.port, steps),
             0);
    CHECK_EQ(run_factum(out, sizeof out, "--server http://127.0.0.1:%d schema show OrderPlaced", s.port), 0);
    CHECK_MSG(strstr(out, "\"upcast\":{\"steps\":[{\"op\":\"add\""), "%s", out);
    CHECK(run_factum(out, sizeof out, "--server http://127.0.0.1:%d schema upcast OrderPlaced 2 %s", s.port, steps) !=
          0);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}

/* ---- embedded ---- */

static void put(schema_registry *r, const char *type, uint32_t v, const char *doc, int want) {
    schema_put p = {
        .type = type, .version = v, .compat = SCHEMA_COMPAT_NONE, .mode = SCHEMA_MODE_ENFORCE, .doc = str_c(doc)};
    schema_check k = {0};
    factum_error_t err = {0};
    int rc = schema_registry_put(r, &p, &k, &err);
    CHECK_MSG(rc == want, "%s v%u: %s (%s)", type, v, factum_errname(rc), err.message);
    schema_check_free(&k);
}

TEST(embedded_appends_are_checked_and_the_registry_reloads) {
    factum_t *db = test_open(test_dir(), NULL);
    CHECK_RC(factum_schemas_open(db, NULL), 0); /* nothing registered: everything goes */
    CHECK_RC(test_append(db, "order-1", FACTUM_EXPECT_ANY, "OrderPlaced", "{\"id\":1}", NULL, NULL), 0);
    factum_close(db);

    db = test_open(test_dir(), NULL);
    schema_registry *r;
    CHECK_RC(schema_registry_open(db, &r, NULL), 0);
    put(r, "OrderPlaced", 1, ORDER_V1, 0);
    factum_event_t ev[2] = {
        {.type = str_c("OrderPlaced"), .data = str_c("{\"id\":\"O-1\",\"amount\":1}"), .data_format = FACTUM_DATA_JSON},
        {.type = str_c("OrderPlaced"), .data = str_c("{\"id\":\"O-2\"}"), .data_format = FACTUM_DATA_JSON}};
    factum_error_t err = {0};
    CHECK_RC(factum_append(db, str_c("order-2"), FACTUM_EXPECT_ANY, ev, 2, NULL, &err), FACTUM_ESCHEMA);
    CHECK_MSG(strstr(err.message, "event 1 (OrderPlaced, version 1) does not match its schema: (data): required:"),
              "%s", err.message);
    CHECK(strstr(schema_registry_violations(err.message), "\"keyword\":\"required\""));
    CHECK_RC(test_append(db, "order-2", FACTUM_EXPECT_ANY, "X", "{}", NULL, NULL), 0);
    factum_result_t *res;
    CHECK_RC(factum_read_stream(db, str_c("order-2"), 0, 10, 0, &res, NULL), 0);
    CHECK_EQ(factum_result_count(res), 1); /* the refused batch wrote nothing */
    factum_result_free(res);
    /* binary data and no data against a JSON schema */
    factum_event_t bin = {.type = str_c("OrderPlaced"), .data = str_c("\x01\x02"), .data_format = FACTUM_DATA_BINARY};
    CHECK_RC(factum_append(db, str_c("order-2"), FACTUM_EXPECT_ANY, &bin, 1, NULL, NULL), FACTUM_ESCHEMA);
    CHECK_RC(test_append(db, "order-2", FACTUM_EXPECT_ANY, "OrderPlaced", NULL, NULL, NULL), FACTUM_ESCHEMA);
    /* async appends are checked before anything is queued */
    CHECK_RC(factum_append_async(db, str_c("order-2"), FACTUM_EXPECT_ANY, &ev[1], 1,
                                 (factum_append_cb)(void (*)(void))abort, NULL, NULL),
             FACTUM_ESCHEMA);
    /* system streams are not checked */
    CHECK_RC(test_append(db, "$mine", FACTUM_EXPECT_ANY, "OrderPlaced", "{}", NULL, NULL), 0);
    factum_close(db);

    db = test_open(test_dir(), NULL);
    CHECK_RC(factum_schemas_open(db, NULL), 0);
    CHECK_RC(factum_append(db, str_c("order-3"), FACTUM_EXPECT_ANY, &ev[1], 1, NULL, NULL), FACTUM_ESCHEMA);
    CHECK_RC(factum_append(db, str_c("order-3"), FACTUM_EXPECT_ANY, &ev[0], 1, NULL, NULL), 0);
    factum_close(db);
}

/* Records another node wrote (a cluster follower's log gets them by replication, not by a put
   here) reach the registry on a refresh, which the server runs with its sweep. */
TEST(records_written_by_another_node_reach_the_registry_on_refresh) {
    factum_t *db = test_open(test_dir(), NULL);
    schema_registry *r;
    CHECK_RC(schema_registry_open(db, &r, NULL), 0);
    CHECK_RC(schema_registry_refresh(r, NULL), 0); /* no $schemas yet: nothing to do */
    buf_t rec = {0};
    buf_printf(&rec,
               "{\"type\":\"OrderPlaced\",\"version\":1,\"compatibility\":\"none\",\"mode\":\"enforce\","
               "\"schema\":%s}",
               ORDER_V1);
    factum_event_t e = {.type = str_c("SchemaRegistered"), .data = {rec.ptr, rec.len}, .data_format = FACTUM_DATA_JSON};
    CHECK_RC(factum_append(db, str_c(SCHEMAS_STREAM), FACTUM_EXPECT_ANY, &e, 1, NULL, NULL), 0);
    buf_free(&rec);
    factum_event_t bad = {
        .type = str_c("OrderPlaced"), .data = str_c("{\"id\":\"O-1\"}"), .data_format = FACTUM_DATA_JSON};
    CHECK_RC(factum_append(db, str_c("order-1"), FACTUM_EXPECT_ANY, &bad, 1, NULL, NULL), 0); /* not known yet */
    CHECK_RC(schema_registry_refresh(r, NULL), 0);
    CHECK_RC(factum_append(db, str_c("order-1"), FACTUM_EXPECT_ANY, &bad, 1, NULL, NULL), FACTUM_ESCHEMA);
    buf_t list = {0};
    schema_registry_list_json(r, &list);
    CHECK_MSG(strstr(list.ptr, "OrderPlaced"), "%s", list.ptr);
    buf_free(&list);
    /* a put after it is the next version, and a refresh then applies nothing twice */
    put(r, "OrderPlaced", 2, ORDER_V2, 0);
    CHECK_RC(schema_registry_refresh(r, NULL), 0);
    list = (buf_t){0};
    CHECK_EQ(schema_registry_type_json(r, "OrderPlaced", &list), 0);
    CHECK_MSG(strstr(list.ptr, "\"version\":2") && !strstr(list.ptr, "\"version\":3"), "%s", list.ptr);
    buf_free(&list);
    factum_close(db);
}

TEST_T(registry_limits_hold_one_past, 300) {
    factum_t *db = test_open(test_dir(), NULL);
    schema_registry *r;
    CHECK_RC(schema_registry_open(db, &r, NULL), 0);
    for (uint32_t v = 1; v <= SCHEMA_MAX_VERSIONS; v++)
        put(r, "Many", v, "true", 0);
    put(r, "Many", SCHEMA_MAX_VERSIONS + 1, "true", FACTUM_ETOOBIG);
    for (int i = 1; i < SCHEMA_MAX_TYPES; i++) {
        char t[32];
        snprintf(t, sizeof t, "T%d", i);
        put(r, t, 1, "true", 0);
    }
    put(r, "OneTooMany", 1, "true", FACTUM_ETOOBIG);
    /* a type name one past its limit */
    char name[FACTUM_MAX_ATTRIBUTE + 2];
    memset(name, 'n', sizeof name - 1);
    name[sizeof name - 1] = 0;
    put(r, name, 1, "true", FACTUM_EINVAL);
    factum_close(db);
}

/* The check of stored events reads SCHEMA_CHECK_MAX and says it sampled when one more is there. */
TEST_T(stored_event_check_samples_at_its_limit, 300) {
    factum_t *db = test_open(test_dir(), NULL);
    schema_registry *r;
    CHECK_RC(schema_registry_open(db, &r, NULL), 0);
    static factum_event_t ev[10000];
    for (size_t i = 0; i < ARRAY_LEN(ev); i++)
        ev[i] = (factum_event_t){.type = str_c("E"), .data = str_c("1"), .data_format = FACTUM_DATA_JSON};
    for (int b = 0; b < SCHEMA_CHECK_MAX / 10000; b++)
        CHECK_RC(factum_append(db, str_c("s"), FACTUM_EXPECT_ANY, ev, ARRAY_LEN(ev), NULL, NULL), 0);
    schema_check k = {0};
    CHECK_RC(schema_registry_check(r, "E", str_c("{\"type\":\"string\"}"), &k, NULL), 0);
    CHECK(k.checked == SCHEMA_CHECK_MAX && k.failing == SCHEMA_CHECK_MAX && !k.sampled);
    schema_check_free(&k);
    CHECK_RC(factum_append(db, str_c("s"), FACTUM_EXPECT_ANY, ev, 1, NULL, NULL), 0);
    k = (schema_check){0};
    CHECK_RC(schema_registry_check(r, "E", str_c("{\"type\":\"string\"}"), &k, NULL), 0);
    CHECK(k.checked == SCHEMA_CHECK_MAX && k.sampled);
    schema_check_free(&k);
    factum_close(db);
}

/* ---- upcasting ---- */

static const char *const UPCAST_DATA =
    "\"data\":{\"st\":\"active\",\"customer\":\"Ann\",\"address\":{\"street\":\"Main\"},\"currency\":\"EUR\"}";

/* Reads from fd until `want` came (or the connection ends); true if it came. */
static bool sse_until(int fd, const char *want) {
    static char buf[65536];
    size_t len = 0;
    while (len < sizeof buf - 1) {
        ssize_t n = recv(fd, buf + len, sizeof buf - 1 - len, 0);
        if (n <= 0) return fprintf(stderr, "%s\n", buf), false;
        len += (size_t)n;
        buf[len] = 0;
        if (strstr(buf, want)) return true;
    }
    fprintf(stderr, "%s\n", buf);
    return false;
}

static void sees_v3(int port) {
    char *one = http_body(port, "GET", "/streams/order-1", NULL, NULL, 200);
    CHECK_MSG(strstr(one, UPCAST_DATA) && strstr(one, "\"type\":\"OrderCreated\"") &&
                  strstr(one, "\"dataschema\":\"/schemas/OrderPlaced/versions/3\",\"storedversion\":1"),
              "%s", one);
    CHECK_MSG(strstr(one, "\"data\":{\"customer\":\"Bo\",\"address\":{},\"st\":\"new\"}"), "%s", one); /* v3 as is */
    free(one);
    char *all = http_body(port, "GET", "/all", NULL, NULL, 200);
    CHECK_MSG(strstr(all, UPCAST_DATA), "%s", all);
    free(all);
    char *raw = http_body(port, "GET", "/streams/order-1?version=raw", NULL, NULL, 200);
    CHECK_MSG(strstr(raw, "\"type\":\"OrderPlaced\"") &&
                  strstr(raw, "\"data\":{\"cust\":\"Ann\",\"st\":\"A\","
                              "\"street\":\"Main\"}") &&
                  !strstr(raw, "storedversion"),
              "%s", raw);
    free(raw);
    raw = http_body(port, "GET", "/all?version=raw", NULL, NULL, 200);
    CHECK(strstr(raw, "\"data\":{\"cust\":\"Ann\""));
    free(raw);
}

TEST(events_stored_as_v1_are_read_as_v3_on_every_read_path_and_raw_on_request) {
    srv s = srv_start(test_dir(), NULL);
    expect_status(s.port, "PUT", "/schemas/OrderPlaced/versions/1", NULL,
                  "{\"properties\":{\"cust\":{\"type\":\"string\"},\"st\":{\"enum\":[\"A\",\"I\"]},\"street\":{}}}",
                  201, NULL);
    expect_status(s.port, "POST", "/streams/order-1", CE,
                  "{\"type\":\"OrderPlaced\",\"data\":{\"cust\":\"Ann\",\"st\":\"A\",\"street\":\"Main\"}}", 201, NULL);
    expect_status(s.port, "PUT", "/schemas/OrderPlaced/versions/2?compatibility=none", NULL,
                  "{\"properties\":{\"customer\":{},\"st\":{},\"address\":{},\"currency\":{}}}", 201, NULL);
    expect_status(s.port, "PUT", "/schemas/OrderPlaced/versions/1/upcast", NULL, "{\"steps\":[]}", 400,
                  "nothing to upcast from");
    expect_status(s.port, "PUT", "/schemas/OrderPlaced/versions/2/upcast", NULL,
                  "{\"steps\":[{\"op\":\"rename\",\"from\":\"/customer\",\"to\":\"/c\"}]}", 400,
                  "/customer is not a property of the version it upcasts from");
    expect_status(s.port, "PUT", "/schemas/OrderPlaced/versions/2/upcast", NULL,
                  "{\"steps\":[{\"op\":\"rename\",\"from\":\"/cust\",\"to\":\"/customer\"},{\"op\":\"move\",\"from\":"
                  "\"/street\",\"to\":\"/address/street\"},{\"op\":\"add\",\"path\":\"/currency\",\"value\":\"EUR\"}]}",
                  201, NULL);
    expect_status(s.port, "PUT", "/schemas/OrderPlaced/versions/2/upcast", NULL, "{\"steps\":[]}", 409,
                  "has its upcast already");
    expect_status(s.port, "PUT", "/schemas/OrderPlaced/versions/7/upcast", NULL, "{\"steps\":[]}", 404, NULL);
    expect_status(s.port, "PUT", "/schemas/OrderPlaced/versions/3?compatibility=none", NULL,
                  "{\"properties\":{\"customer\":{},\"st\":{},\"address\":{},\"currency\":{}}}", 201, NULL);
    expect_status(s.port, "PUT", "/schemas/OrderPlaced/versions/3/upcast", NULL,
                  "{\"steps\":[{\"op\":\"rename_type\",\"type\":\"OrderPlaced\"}]}", 400, "cycle of type renames");
    expect_status(s.port, "PUT", "/schemas/OrderPlaced/versions/3/upcast", NULL,
                  "{\"steps\":[{\"op\":\"map\",\"path\":\"/st\",\"values\":{\"A\":\"active\",\"I\":\"inactive\"}},"
                  "{\"op\":\"rename_type\",\"type\":\"OrderCreated\"}]}",
                  201, NULL);
    /* written as v3 (the latest, without dataschema): read as written */
    expect_status(s.port, "POST", "/streams/order-1", CE,
                  "{\"type\":\"OrderPlaced\",\"data\":{\"customer\":\"Bo\",\"address\":{},\"st\":\"new\"}}", 201, NULL);
    sees_v3(s.port);
    /* a projection and a saga see the upcast type and data */
    expect_status(
        s.port, "PUT", "/projections/orders", NULL,
        "{\"source\":{\"categories\":[\"order\"]},\"setup\":[\"CREATE TABLE o (c TEXT, st TEXT, street TEXT)\"],"
        "\"handlers\":{\"OrderCreated\":[\"INSERT INTO o VALUES (:data.customer, :data.st, "
        ":data.address.street)\"]}}",
        201, NULL);
    resp q;
    http_do(s.port, "POST", "/projections/orders/query", NULL,
            "{\"sql\":\"SELECT c, st, street FROM o\",\"min_position\":6}", &q);
    CHECK_MSG(q.status == 200 && strstr(q.body, "[\"Ann\",\"active\",\"Main\"]"), "%d %s", q.status, q.body);
    resp_free(&q);
    expect_status(
        s.port, "PUT", "/sagas/welcome", NULL,
        "{\"start_on\":\"OrderCreated\",\"instance_id\":\"data.customer\",\"steps\":[{\"name\":\"greet\","
        "\"command\":{\"stream\":\"mail-commands\",\"type\":\"SendWelcome\",\"data\":{\"to\":\"{{data."
        "customer}}\",\"street\":\"{{data.address.street}}\"}},\"success\":[\"Sent\"],\"failure\":[\"Bounced\"]}]}",
        201, NULL);
    CHECK(http_wait_body(s.port, "/streams/mail-commands", "\"data\":{\"to\":\"Ann\",\"street\":\"Main\"}", 30));
    /* a consumer group's pull */
    expect_status(s.port, "PUT", "/groups/g", NULL, "{\"source\":{\"category\":\"order\"},\"start\":\"earliest\"}", 201,
                  NULL);
    char *pulled = http_body(s.port, "POST", "/groups/g/messages?max=10", NULL, "", 200);
    CHECK_MSG(strstr(pulled, UPCAST_DATA), "%s", pulled);
    free(pulled);
    /* and as stored, with version=raw (a long poll keeps it while it waits) */
    expect_status(s.port, "PUT", "/groups/g2", NULL, "{\"source\":{\"category\":\"order\"},\"start\":\"earliest\"}",
                  201, NULL);
    pulled = http_body(s.port, "POST", "/groups/g2/messages?max=10&version=raw&wait_ms=100", NULL, "", 200);
    CHECK_MSG(strstr(pulled, "\"data\":{\"cust\":\"Ann\"") && !strstr(pulled, UPCAST_DATA), "%s", pulled);
    free(pulled);
    expect_status(s.port, "POST", "/groups/g2/messages?version=v2", NULL, "", 400, "version=raw|latest");
    /* push delivery (SSE) of a group: upcast, or as stored with version=raw */
    const char *push_reqs[][2] = {
        {"GET /groups/p1/messages HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n", UPCAST_DATA},
        {"GET /groups/p2/messages?version=raw&max_in_flight=5 HTTP/1.1\r\nHost: localhost\r\nAccept: "
         "text/event-stream\r\n\r\n",
         "\"data\":{\"cust\":\"Ann\""}};
    for (size_t k = 0; k < ARRAY_LEN(push_reqs); k++) {
        char path[32];
        snprintf(path, sizeof path, "/groups/p%zu", k + 1);
        expect_status(s.port, "PUT", path, NULL, "{\"source\":{\"category\":\"order\"},\"start\":\"earliest\"}", 201,
                      NULL);
        int pfd = http_connect(s.port);
        http_send(pfd, push_reqs[k][0], strlen(push_reqs[k][0]));
        CHECK_MSG(sse_until(pfd, push_reqs[k][1]), "%s", push_reqs[k][0]);
        close(pfd);
    }
    expect_status(s.port, "GET", "/groups/p2/messages?version=v2", "Accept: text/event-stream\r\n", NULL, 400,
                  "version=raw|latest");
    /* a subscription */
    int fd = http_connect(s.port);
    const char *req = "GET /streams/order-1 HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n";
    http_send(fd, req, strlen(req));
    CHECK(sse_until(fd, UPCAST_DATA));
    close(fd);
    /* subscriptions as stored: a stream's, and $all's beside an upcast one (chunks are shared only
       between subscribers that ask for the same form) */
    const char *raw_reqs[] = {
        "GET /streams/order-1?version=raw HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n",
        "GET /all?version=raw HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n"};
    int up = http_connect(s.port);
    const char *up_req = "GET /all HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n";
    http_send(up, up_req, strlen(up_req));
    for (size_t k = 0; k < ARRAY_LEN(raw_reqs); k++) {
        fd = http_connect(s.port);
        http_send(fd, raw_reqs[k], strlen(raw_reqs[k]));
        CHECK_MSG(sse_until(fd, "\"data\":{\"cust\":\"Ann\""), "%s", raw_reqs[k]);
        close(fd);
    }
    CHECK(sse_until(up, UPCAST_DATA));
    close(up);
    expect_status(s.port, "GET", "/streams/order-1?version=v2", NULL, NULL, 400, "raw or latest");
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    /* the steps are kept: after a restart the same */
    s = srv_start(test_dir(), NULL);
    sees_v3(s.port);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}

/* Reads from fd until every one of want[0..n) came (or the connection ends); true if they did. */
static bool sse_until_all(int fd, const char *const *want, size_t n) {
    static char buf[65536];
    size_t len = 0, k = 0;
    while (len < sizeof buf - 1) {
        ssize_t got = recv(fd, buf + len, sizeof buf - 1 - len, 0);
        if (got <= 0) break;
        len += (size_t)got;
        buf[len] = 0;
        for (k = 0; k < n && strstr(buf, want[k]); k++)
            ;
        if (k == n) return true;
    }
    fprintf(stderr, "missing %s in %s\n", k < n ? want[k] : "?", buf);
    return false;
}

/*
 * OrderPlaced v2 renames the type to OrderCreated, which has versions 1 to 3 of its own; Legacy
 * v2 renames to OrderCreated entering at version 2; Odd v2 renames to a type with no schema.
 * Written: order-1 OrderPlaced v1, order-2 OrderPlaced v2, order-3 OrderCreated v1 (by its
 * dataschema), order-4 Legacy v1, order-5 Odd v1.
 */
static void put_rename_chain(int port) {
    expect_status(port, "PUT", "/schemas/OrderCreated/versions/1", NULL, "{\"properties\":{\"customer\":{}}}", 201,
                  NULL);
    expect_status(port, "PUT", "/schemas/OrderCreated/versions/2?compatibility=none", NULL,
                  "{\"properties\":{\"customer\":{},\"currency\":{}}}", 201, NULL);
    expect_status(port, "PUT", "/schemas/OrderCreated/versions/2/upcast", NULL,
                  "{\"steps\":[{\"op\":\"add\",\"path\":\"/currency\",\"value\":\"EUR\"}]}", 201, NULL);
    expect_status(port, "PUT", "/schemas/OrderCreated/versions/3?compatibility=none", NULL,
                  "{\"properties\":{\"buyer\":{},\"currency\":{}}}", 201, NULL);
    expect_status(port, "PUT", "/schemas/OrderCreated/versions/3/upcast", NULL,
                  "{\"steps\":[{\"op\":\"rename\",\"from\":\"/customer\",\"to\":\"/buyer\"}]}", 201, NULL);
    const char *v1s[][2] = {{"OrderPlaced", "cust"}, {"Legacy", "who"}, {"Odd", "x"}};
    for (size_t i = 0; i < ARRAY_LEN(v1s); i++) {
        char path[64], doc[64];
        snprintf(path, sizeof path, "/schemas/%s/versions/1", v1s[i][0]);
        snprintf(doc, sizeof doc, "{\"properties\":{\"%s\":{}}}", v1s[i][1]);
        expect_status(port, "PUT", path, NULL, doc, 201, NULL);
    }
    expect_status(port, "POST", "/streams/order-1", CE, "{\"type\":\"OrderPlaced\",\"data\":{\"cust\":\"Ann\"}}", 201,
                  NULL);
    expect_status(port, "POST", "/streams/order-4", CE, "{\"type\":\"Legacy\",\"data\":{\"who\":\"Di\"}}", 201, NULL);
    expect_status(port, "POST", "/streams/order-5", CE, "{\"type\":\"Odd\",\"data\":{\"x\":1}}", 201, NULL);
    for (size_t i = 0; i < ARRAY_LEN(v1s); i++) {
        char path[64];
        snprintf(path, sizeof path, "/schemas/%s/versions/2?compatibility=none", v1s[i][0]);
        expect_status(port, "PUT", path, NULL, "{\"properties\":{\"customer\":{}}}", 201, NULL);
    }
    /* a rename_type's version: 1 to 1000 */
    const char *bad[] = {"0", "1001", "\"2\"", "-1", "1.5"};
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        char doc[160];
        snprintf(doc, sizeof doc, "{\"steps\":[{\"op\":\"rename_type\",\"type\":\"OrderCreated\",\"version\":%s}]}",
                 bad[i]);
        expect_status(port, "PUT", "/schemas/Legacy/versions/2/upcast", NULL, doc, 400, "1 to 1000");
    }
    expect_status(port, "PUT", "/schemas/OrderPlaced/versions/2/upcast", NULL,
                  "{\"steps\":[{\"op\":\"rename\",\"from\":\"/cust\",\"to\":\"/customer\"},"
                  "{\"op\":\"rename_type\",\"type\":\"OrderCreated\"}]}",
                  201, NULL);
    expect_status(port, "PUT", "/schemas/Legacy/versions/2/upcast", NULL,
                  "{\"steps\":[{\"op\":\"rename\",\"from\":\"/who\",\"to\":\"/customer\"},"
                  "{\"op\":\"rename_type\",\"type\":\"OrderCreated\",\"version\":2}]}",
                  201, NULL);
    expect_status(port, "PUT", "/schemas/Odd/versions/2/upcast", NULL,
                  "{\"steps\":[{\"op\":\"rename_type\",\"type\":\"Elsewhere\",\"version\":1000}]}", 201, NULL);
    /* closing a cycle through the chain is refused */
    expect_status(port, "PUT", "/schemas/OrderCreated/versions/4?compatibility=none", NULL, "true", 201, NULL);
    expect_status(port, "PUT", "/schemas/OrderCreated/versions/4/upcast", NULL,
                  "{\"steps\":[{\"op\":\"rename_type\",\"type\":\"Legacy\"}]}", 400, "cycle of type renames");
    expect_status(port, "POST", "/streams/order-2", CE, "{\"type\":\"OrderPlaced\",\"data\":{\"customer\":\"Bo\"}}",
                  201, NULL);
    expect_status(port, "POST", "/streams/order-3", CE,
                  "{\"type\":\"OrderCreated\",\"dataschema\":\"/schemas/OrderCreated/versions/1\","
                  "\"data\":{\"customer\":\"Cy\"}}",
                  201, NULL);
}

/* What each event of put_rename_chain reads as: its data, and what it says it was stored as. */
static const char *const RENAMED[] = {
    "\"data\":{\"currency\":\"EUR\",\"buyer\":\"Ann\"}",
    "\"dataschema\":\"/schemas/OrderCreated/versions/4\",\"storedversion\":1,\"storedtype\":\"OrderPlaced\"",
    "\"data\":{\"buyer\":\"Di\"}", /* entered OrderCreated at version 2: no currency added */
    "\"dataschema\":\"/schemas/OrderCreated/versions/4\",\"storedversion\":1,\"storedtype\":\"Legacy\"",
    "\"dataschema\":\"/schemas/Odd/versions/2\",\"storedversion\":1,\"storedtype\":\"Odd\"",
    "\"data\":{\"currency\":\"EUR\",\"buyer\":\"Cy\"}",
    "\"data\":{\"customer\":\"Bo\"}"};

static void sees_renamed(const char *what, const char *body) {
    for (size_t i = 0; i < ARRAY_LEN(RENAMED); i++)
        CHECK_MSG(strstr(body, RENAMED[i]), "%s lacks %s: %s", what, RENAMED[i], body);
    CHECK_MSG(!strstr(body, "\"cust\":") && !strstr(body, "\"who\":"), "%s: %s", what, body);
}

TEST(a_renamed_type_is_upcast_further_by_the_new_types_own_steps) {
    srv s = srv_start(test_dir(), NULL);
    put_rename_chain(s.port);
    char *one = http_body(s.port, "GET", "/streams/order-1", NULL, NULL, 200);
    CHECK_MSG(strstr(one, "\"type\":\"OrderCreated\"") && strstr(one, RENAMED[0]) && strstr(one, RENAMED[1]), "%s",
              one);
    free(one);
    one = http_body(s.port, "GET", "/streams/order-5", NULL, NULL, 200); /* no schema to go on with */
    CHECK_MSG(strstr(one, "\"type\":\"Elsewhere\"") && strstr(one, "\"data\":{\"x\":1}"), "%s", one);
    free(one);
    one = http_body(s.port, "GET", "/streams/order-2", NULL, NULL, 200); /* stored as the latest: as is */
    CHECK_MSG(strstr(one, "\"type\":\"OrderPlaced\"") && !strstr(one, "storedversion"), "%s", one);
    free(one);
    char *all = http_body(s.port, "GET", "/all", NULL, NULL, 200);
    sees_renamed("$all", all);
    free(all);
    expect_status(s.port, "PUT", "/groups/g", NULL, "{\"source\":{\"category\":\"order\"},\"start\":\"earliest\"}", 201,
                  NULL);
    char *pulled = http_body(s.port, "POST", "/groups/g/messages?max=10", NULL, "", 200);
    sees_renamed("a group pull", pulled);
    free(pulled);
    int fd = http_connect(s.port);
    const char *req = "GET /all HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n";
    http_send(fd, req, strlen(req));
    CHECK(sse_until_all(fd, RENAMED, ARRAY_LEN(RENAMED)));
    close(fd);
    char *raw = http_body(s.port, "GET", "/streams/order-4?version=raw", NULL, NULL, 200);
    CHECK_MSG(strstr(raw, "\"type\":\"Legacy\"") && strstr(raw, "\"data\":{\"who\":\"Di\"}"), "%s", raw);
    free(raw);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    s = srv_start(test_dir(), NULL); /* replayed the same */
    all = http_body(s.port, "GET", "/all", NULL, NULL, 200);
    sees_renamed("$all after a restart", all);
    free(all);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}

/* How many times s occurs in body. */
static int count_of(const char *body, const char *s) {
    int n = 0;
    for (const char *p = body; (p = strstr(p, s)) != NULL; p += strlen(s))
        n++;
    return n;
}

TEST(type_filters_see_the_type_as_read_after_upcasting) {
    srv s = srv_start(test_dir(), NULL);
    put_rename_chain(s.port);
    /* $all by type: OrderCreated is order-1 (from OrderPlaced), -3 and -4 (from Legacy);
       OrderPlaced only order-2, the one stored as its latest version */
    char *all = http_body(s.port, "GET", "/all?type=OrderCreated", NULL, NULL, 200);
    CHECK_MSG(strstr(all, "\"buyer\":\"Ann\"") && strstr(all, "\"buyer\":\"Cy\"") && strstr(all, "\"buyer\":\"Di\"") &&
                  count_of(all, "\"type\":\"OrderCreated\"") == 3 && !strstr(all, "\"type\":\"OrderPlaced\""),
              "%s", all);
    free(all);
    all = http_body(s.port, "GET", "/all?type=OrderPlaced", NULL, NULL, 200);
    CHECK_MSG(count_of(all, "\"type\":") == 1 && strstr(all, "\"data\":{\"customer\":\"Bo\"}"), "%s", all);
    free(all);
    all = http_body(s.port, "GET", "/all?type=Elsewhere", NULL, NULL, 200);
    CHECK_MSG(count_of(all, "\"type\":\"Elsewhere\"") == 1, "%s", all);
    free(all);
    all = http_body(s.port, "GET", "/all?type=Legacy", NULL, NULL, 200);
    CHECK_MSG(!strcmp(all, "[]"), "%s", all);
    free(all);
    /* a page of one at a time walks the same three, by the Link each answer gives */
    all = http_body(s.port, "GET", "/all?type=OrderCreated&limit=1&direction=backward", NULL, NULL, 200);
    CHECK_MSG(strstr(all, "\"buyer\":\"Cy\"") && count_of(all, "\"type\":") == 1, "%s", all);
    free(all);
    /* version=raw filters the type as stored */
    all = http_body(s.port, "GET", "/all?type=OrderPlaced&version=raw", NULL, NULL, 200);
    CHECK_MSG(count_of(all, "\"type\":\"OrderPlaced\"") == 2 && strstr(all, "\"cust\":\"Ann\""), "%s", all);
    free(all);
    all = http_body(s.port, "GET", "/all?type=OrderCreated&version=raw", NULL, NULL, 200);
    CHECK_MSG(count_of(all, "\"type\":") == 1 && strstr(all, "\"customer\":\"Cy\""), "%s", all);
    free(all);
    /* a subscription to $all by type: the three, then one appended live */
    int fd = http_connect(s.port);
    const char *req = "GET /all?type=OrderCreated HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n";
    http_send(fd, req, strlen(req));
    const char *sub[] = {"\"buyer\":\"Ann\"", "\"buyer\":\"Cy\"", "\"buyer\":\"Di\"", "event: caught-up"};
    CHECK(sse_until_all(fd, sub, ARRAY_LEN(sub)));
    expect_status(s.port, "POST", "/streams/order-6", CE, "{\"type\":\"OrderPlaced\",\"data\":{\"customer\":\"Ed\"}}",
                  201, NULL);
    char *appended = http_body(s.port, "POST", "/streams/order-6", CE,
                               "{\"type\":\"Legacy\",\"dataschema\":\"/schemas/Legacy/versions/1\","
                               "\"data\":{\"who\":\"Fay\"}}",
                               201);
    const char *at = strstr(appended, "\"position\":");
    CHECK_MSG(at, "%s", appended);
    long last = atol(at + 11);
    free(appended);
    const char *live[] = {"\"buyer\":\"Fay\""};
    CHECK(sse_until_all(fd, live, 1));
    close(fd);
    /* consumer groups by type */
    expect_status(s.port, "PUT", "/groups/created", NULL,
                  "{\"source\":{\"all\":{\"types\":[\"OrderCreated\"]}},\"start\":\"earliest\"}", 201, NULL);
    char *pulled = http_body(s.port, "POST", "/groups/created/messages?max=10", NULL, "", 200);
    CHECK_MSG(count_of(pulled, "\"type\":\"OrderCreated\"") == 4 && strstr(pulled, "\"buyer\":\"Fay\"") &&
                  !strstr(pulled, "\"type\":\"OrderPlaced\""),
              "%s", pulled);
    free(pulled);
    expect_status(s.port, "PUT", "/groups/placed", NULL,
                  "{\"source\":{\"all\":{\"types\":[\"OrderPlaced\"]}},\"start\":\"earliest\"}", 201, NULL);
    pulled = http_body(s.port, "POST", "/groups/placed/messages?max=10", NULL, "", 200);
    CHECK_MSG(count_of(pulled, "\"type\":\"OrderPlaced\"") == 2 && strstr(pulled, "\"customer\":\"Ed\"") &&
                  !strstr(pulled, "\"type\":\"OrderCreated\""),
              "%s", pulled);
    free(pulled);
    /* the check of stored events reads a type's events as read: upcast, renamed ones in */
    char *dry = http_body(s.port, "PUT", "/schemas/OrderCreated/versions/5?dry_run=true", NULL,
                          "{\"required\":[\"buyer\"]}", 200);
    CHECK_MSG(strstr(dry, "\"checked\":4,\"failing\":0"), "%s", dry);
    free(dry);
    dry = http_body(s.port, "PUT", "/schemas/OrderPlaced/versions/3?dry_run=true", NULL,
                    "{\"required\":[\"customer\"]}", 200);
    CHECK_MSG(strstr(dry, "\"checked\":2,\"failing\":0"), "%s", dry);
    free(dry);
    /* a projection of one type (read with the type filter) */
    expect_status(s.port, "PUT", "/projections/buyers", NULL,
                  "{\"source\":{\"types\":[\"OrderCreated\"]},\"setup\":[\"CREATE TABLE b (name TEXT)\"],"
                  "\"handlers\":{\"OrderCreated\":[\"INSERT INTO b VALUES (:data.buyer)\"]}}",
                  201, NULL);
    char query[160];
    snprintf(query, sizeof query,
             "{\"sql\":\"SELECT group_concat(name) FROM (SELECT name FROM b ORDER BY name)\",\"min_position\":%ld}",
             last);
    resp q;
    http_do(s.port, "POST", "/projections/buyers/query", NULL, query, &q);
    CHECK_MSG(q.status == 200 && strstr(q.body, "[\"Ann,Cy,Di,Fay\"]"), "%d %s", q.status, q.body);
    resp_free(&q);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}

static size_t read_all_count(factum_t *db, const char *type, int as_stored, const char *want_type) {
    factum_query_t q = {.limit = 100, .type = str_c(type), .type_as_stored = as_stored};
    factum_result_t *res;
    CHECK_RC(factum_read_all(db, &q, &res, NULL), 0);
    size_t n = factum_result_count(res);
    for (size_t i = 0; i < n; i++)
        CHECK(str_eq((as_stored ? factum_result_event_raw : factum_result_event)(res, i)->type, str_c(want_type)));
    factum_result_free(res);
    return n;
}

TEST(embedded_reads_by_type_see_renamed_types_past_the_first_room) {
    factum_t *db = test_open(test_dir(), NULL);
    schema_registry *r;
    CHECK_RC(schema_registry_open(db, &r, NULL), 0);
    CHECK_EQ(read_all_count(db, "B", 0, "B"), 0);
    /* 20 types renamed to B: more than the read's first room for them (16) */
    for (int i = 0; i < 20; i++) {
        char type[16], ev[32];
        snprintf(type, sizeof type, "T%d", i);
        put(r, type, 1, "{\"properties\":{\"a\":{}}}", 0);
        snprintf(ev, sizeof ev, "{\"a\":%d}", i);
        CHECK_RC(test_append(db, "s-1", FACTUM_EXPECT_ANY, type, ev, NULL, NULL), 0);
        put(r, type, 2, "true", 0);
        factum_error_t err = {0};
        CHECK_MSG(schema_registry_upcast(r, type, 2, str_c("{\"steps\":[{\"op\":\"rename_type\",\"type\":\"B\"}]}"),
                                         &err) == 0,
                  "%s", err.message);
    }
    CHECK_RC(test_append(db, "s-2", FACTUM_EXPECT_ANY, "B", "{\"b\":1}", NULL, NULL), 0);
    CHECK_RC(test_append(db, "s-2", FACTUM_EXPECT_ANY, "T3", "{\"a\":3}", NULL, NULL), 0); /* T3 v2: stays T3 */
    CHECK_EQ(read_all_count(db, "B", 0, "B"), 21);
    CHECK_EQ(read_all_count(db, "T3", 0, "T3"), 1);
    CHECK_EQ(read_all_count(db, "T3", 1, "T3"), 2); /* as stored */
    CHECK_EQ(read_all_count(db, "B", 1, "B"), 1);
    CHECK_EQ(read_all_count(db, "C", 0, "C"), 0);
    factum_close(db);
}

TEST(a_chain_of_type_renames_holds_its_limit_one_past_and_reads_through_to_its_end) {
    factum_t *db = test_open(test_dir(), NULL);
    schema_registry *r;
    CHECK_RC(schema_registry_open(db, &r, NULL), 0);
    /* C0 -> C1 -> ... -> C64: 64 renames, registered from the end and from the start */
    for (int i = 0; i <= SCHEMA_MAX_RENAMES + 1; i++) {
        char type[16];
        snprintf(type, sizeof type, "C%d", i);
        put(r, type, 1, "true", 0);
        if (i == 0) CHECK_RC(test_append(db, "c-1", FACTUM_EXPECT_ANY, type, "{\"a\":1}", NULL, NULL), 0);
        put(r, type, 2, "true", 0);
    }
    int order[SCHEMA_MAX_RENAMES];
    for (int k = 0, lo = 0, hi = SCHEMA_MAX_RENAMES - 1; k < SCHEMA_MAX_RENAMES; k++)
        order[k] = k % 2 ? lo++ : hi--; /* the chain grows at both ends and is joined in the middle */
    char steps[128], type[16];
    factum_error_t err = {0};
    for (int k = 0; k < SCHEMA_MAX_RENAMES; k++) {
        snprintf(type, sizeof type, "C%d", order[k]);
        snprintf(steps, sizeof steps, "{\"steps\":[{\"op\":\"rename_type\",\"type\":\"C%d\"}]}", order[k] + 1);
        CHECK_MSG(schema_registry_upcast(r, type, 2, str_c(steps), &err) == 0, "%s: %s", type, err.message);
    }
    snprintf(steps, sizeof steps, "{\"steps\":[{\"op\":\"rename_type\",\"type\":\"C%d\"}]}", SCHEMA_MAX_RENAMES + 1);
    snprintf(type, sizeof type, "C%d", SCHEMA_MAX_RENAMES);
    CHECK_RC(schema_registry_upcast(r, type, 2, str_c(steps), &err), FACTUM_ETOOBIG);
    CHECK_MSG(strstr(err.message, "makes a chain of 65 type renames, the limit is 64"), "%s", err.message);
    CHECK_RC(schema_registry_upcast(r, type, 2, str_c("{\"steps\":[{\"op\":\"rename_type\",\"type\":\"C0\"}]}"), &err),
             FACTUM_EINVAL);
    CHECK_MSG(strstr(err.message, "closes a cycle"), "%s", err.message);
    factum_result_t *res;
    CHECK_RC(factum_read_stream(db, str_c("c-1"), 0, 10, 0, &res, NULL), 0);
    const factum_event_t *e = factum_result_event(res, 0);
    snprintf(type, sizeof type, "C%d", SCHEMA_MAX_RENAMES);
    CHECK_MSG(str_eq(e->type, str_c(type)) && strstr(e->extensions.ptr, "\"dataschema\":\"/schemas/C64/versions/2\""),
              "%.*s %.*s", (int)e->type.len, e->type.ptr, (int)e->extensions.len, e->extensions.ptr);
    factum_result_free(res);
    CHECK_EQ(read_all_count(db, type, 0, type), 1);
    CHECK_EQ(read_all_count(db, "C0", 0, "C0"), 0);
    factum_close(db);
    /* replayed the same */
    db = test_open(test_dir(), NULL);
    CHECK_RC(factum_schemas_open(db, NULL), 0);
    CHECK_EQ(read_all_count(db, type, 0, type), 1);
    factum_close(db);
}
