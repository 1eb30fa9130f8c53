/*
 * test_sagas.c — orchestrated sagas (issue 7) against a real server: the test plays the
 * services, reading commands from their streams and appending replies.
 */
#include "test_server.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#define JSON "Content-Type: application/json\r\n"

/* Three steps; stock's compensation is confirmed by a reply, pay's is not. Timeouts short. */
static const char *ORDER_SAGA =
    "{\"start_on\":\"OrderPlaced\",\"instance_id\":\"data.orderId\",\"steps\":["
    "{\"name\":\"pay\",\"command\":{\"stream\":\"payment-commands\",\"type\":\"ReservePayment\","
    "\"data\":{\"orderId\":\"{{data.orderId}}\",\"amount\":\"{{data.total}}\"}},"
    "\"success\":[\"PaymentReserved\"],\"failure\":[\"PaymentDeclined\"],\"timeout_ms\":600,"
    "\"compensation\":{\"stream\":\"payment-commands\",\"type\":\"ReleasePayment\",\"data\":{\"orderId\":\"{{data."
    "orderId}}\",\"ref\":\"{{steps.pay.ref}}\"}}},"
    "{\"name\":\"stock\",\"command\":{\"stream\":\"inventory-commands\",\"type\":\"ReserveStock\",\"data\":{"
    "\"orderId\":\"{{data.orderId}}\"}},"
    "\"success\":[\"StockReserved\"],\"failure\":[\"OutOfStock\"],\"timeout_ms\":600,"
    "\"compensation\":{\"stream\":\"inventory-commands\",\"type\":\"ReleaseStock\",\"data\":{\"orderId\":\"{{data."
    "orderId}}\"},"
    "\"success\":[\"StockReleased\"],\"failure\":[\"StockReleaseFailed\"],\"timeout_ms\":600}},"
    "{\"name\":\"ship\",\"command\":{\"stream\":\"shipping-commands\",\"type\":\"Ship\",\"data\":{\"orderId\":\"{{data."
    "orderId}}\"}},"
    "\"success\":[\"Shipped\"],\"failure\":[\"ShippingFailed\"],\"timeout_ms\":600}]}";

static void post(int port, const char *stream, const char *event) {
    char path[200];
    snprintf(path, sizeof path, "/streams/%s", stream);
    resp r;
    http_do(port, "POST", path, JSON, event, &r);
    CHECK_MSG(r.status == 201 || r.status == 200, "%s: %d %s", stream, r.status, r.body);
    resp_free(&r);
}

static void place(int port, const char *id) {
    char ev[200];
    snprintf(ev, sizeof ev, "{\"type\":\"OrderPlaced\",\"data\":{\"orderId\":\"%s\",\"total\":42}}", id);
    char stream[64];
    snprintf(stream, sizeof stream, "order-%s", id);
    post(port, stream, ev);
}

static void reply(int port, const char *id, const char *type, const char *data) {
    char ev[300];
    snprintf(ev, sizeof ev, "{\"type\":\"%s\",\"correlationid\":\"%s\",\"data\":%s}", type, id, data ? data : "{}");
    post(port, "replies", ev);
}

/* How many commands of `type` for instance id are in stream; the first one's JSON into *first
   (free it) when first is not NULL and there is one. */
static int find_commands(int port, const char *stream, const char *type, const char *id, char **first) {
    char path[200], want_id[200], want_type[100];
    snprintf(path, sizeof path, "/streams/%s?limit=10000", stream);
    snprintf(want_type, sizeof want_type, "\"type\":\"%s\"", type);
    snprintf(want_id, sizeof want_id, "\"correlationid\":\"%s\"", id);
    resp r;
    http_do(port, "GET", path, NULL, NULL, &r);
    int n = 0;
    for (char *line = r.status == 200 ? r.body : NULL; line && *line;) { /* one event per line */
        char *nl = strchr(line, '\n');
        if (nl) *nl = 0;
        if (strstr(line, want_type) && strstr(line, want_id) && n++ == 0 && first) *first = strdup(line);
        line = nl ? nl + 1 : NULL;
    }
    resp_free(&r);
    return n;
}

static int count_commands(int port, const char *stream, const char *type, const char *id) {
    return find_commands(port, stream, type, id, NULL);
}

/* Waits until a command of `type` for instance id is in `stream`; returns its JSON (free it). */
static char *wait_command(int port, const char *stream, const char *type, const char *id) {
    char *first = NULL;
    for (int n = 0; n < 300; n++) {
        if (find_commands(port, stream, type, id, &first)) return first;
        usleep(20000);
    }
    CHECK_MSG(false, "no %s for %s in %s", type, id, stream);
    return NULL;
}

/* Waits until instance id has `status`; returns the instance's JSON (free it). */
static char *wait_instance(int port, const char *id, const char *status) {
    char path[400], want[100];
    snprintf(path, sizeof path, "/sagas/order/instances/%s", id);
    snprintf(want, sizeof want, "\"status\":\"%s\"", status);
    resp r = {0};
    for (int n = 0; n < 300; n++) {
        http_do(port, "GET", path, NULL, NULL, &r);
        if (r.status == 200 && strstr(r.body, want)) return resp_take_body(&r);
        if (n < 299) resp_free(&r);
        usleep(20000);
    }
    CHECK_MSG(false, "instance %s never %s: %d %s", id, status, r.status, r.body);
    return NULL;
}

/* The types of an instance's history, space-separated, into out. */
static void history(const char *inst, char *out, size_t cap) {
    out[0] = 0;
    const char *h = strstr(inst, "\"history\":[");
    CHECK(h);
    for (const char *p = h; (p = strstr(p, "{\"type\":\""));) {
        p += 9;
        const char *q = strchr(p, '"');
        if (strlen(out) + (size_t)(q - p) + 2 < cap) {
            if (out[0]) strcat(out, " ");
            strncat(out, p, (size_t)(q - p));
        }
    }
}

/* Places order id and answers its steps before step k with success (k = 0, 1, 2: pay, stock,
   ship), leaving step k's command sent and unanswered. */
static void advance_to(int port, const char *id, int k) {
    place(port, id);
    free(wait_command(port, "payment-commands", "ReservePayment", id));
    if (k > 0) {
        reply(port, id, "PaymentReserved", "{\"ref\":\"r\"}");
        free(wait_command(port, "inventory-commands", "ReserveStock", id));
    }
    if (k > 1) {
        reply(port, id, "StockReserved", NULL);
        free(wait_command(port, "shipping-commands", "Ship", id));
    }
}

/* The order saga with every step's timeout_ms set to ms. */
static void define_order_timeout(int port, int ms) {
    char def[4096], num[16];
    size_t n = 0;
    snprintf(num, sizeof num, "%d", ms);
    for (const char *p = ORDER_SAGA; *p && n + 16 < sizeof def;)
        if (!strncmp(p, "\"timeout_ms\":600", 16)) {
            n += (size_t)snprintf(def + n, sizeof def - n, "\"timeout_ms\":%s", num);
            p += 16;
        } else {
            def[n++] = *p++;
        }
    def[n] = 0;
    resp r;
    http_do(port, "PUT", "/sagas/order", JSON, def, &r);
    CHECK_MSG(r.status == 201, "%d %s", r.status, r.body);
    resp_free(&r);
}

static void define_order(int port) { define_order_timeout(port, 600); }

TEST(a_saga_sends_each_step_command_and_completes_on_success_replies) {
    srv s = srv_start(test_dir(), NULL);
    define_order(s.port);
    place(s.port, "o1");
    char *c = wait_command(s.port, "payment-commands", "ReservePayment", "o1");
    CHECK_MSG(strstr(c, "\"id\":\"saga-order-o1-pay-do\"") && strstr(c, "\"causationid\":\"") &&
                  strstr(c, "\"data\":{\"orderId\":\"o1\",\"amount\":42}"),
              "%s", c);
    free(c);
    reply(s.port, "o1", "PaymentReserved", "{\"ref\":\"r-1\"}");
    free(wait_command(s.port, "inventory-commands", "ReserveStock", "o1"));
    reply(s.port, "o1", "StockReserved", NULL);
    free(wait_command(s.port, "shipping-commands", "Ship", "o1"));
    reply(s.port, "o1", "Shipped", NULL);
    char *inst = wait_instance(s.port, "o1", "completed");
    char h[1000];
    history(inst, h, sizeof h);
    CHECK_MSG(
        !strcmp(
            h,
            "SagaStarted StepStarted StepSucceeded StepStarted StepSucceeded StepStarted StepSucceeded SagaCompleted"),
        "%s", h);
    CHECK_MSG(strstr(inst, "\"steps\":{\"pay\":{\"ref\":\"r-1\"},\"stock\":{},\"ship\":{}}"), "%s", inst);
    free(inst);
    resp r;
    http_do(s.port, "GET", "/sagas/order", NULL, NULL, &r);
    CHECK_MSG(strstr(r.body, "\"running\":0") && strstr(r.body, "\"completed\":1") && strstr(r.body, "\"parked\":0"),
              "%s", r.body);
    resp_free(&r);
    http_do(s.port, "GET", "/sagas/order/instances?status=completed", NULL, NULL, &r);
    CHECK_MSG(strstr(r.body, "[{\"id\":\"o1\",\"status\":\"completed\"") && !strstr(r.body, "\"ended\":null"), "%s",
              r.body);
    resp_free(&r);
    http_do(s.port, "GET", "/metrics", NULL, NULL, &r);
    CHECK_MSG(strstr(r.body, "factum_saga_ended_total{saga=\"order\",status=\"completed\"} 1\n") &&
                  strstr(r.body, "factum_saga_instances{saga=\"order\",status=\"running\"} 0\n") &&
                  strstr(r.body, "factum_saga_duration_seconds_count{saga=\"order\"} 1\n") &&
                  strstr(r.body, "# TYPE factum_saga_duration_seconds histogram"),
              "%s", r.body);
    resp_free(&r);
    srv_stop(&s, SIGTERM);
}

TEST_T(a_failure_at_any_step_runs_the_compensations_of_the_steps_before_it_in_reverse, 60) {
    srv s = srv_start(test_dir(), NULL);
    define_order(s.port);
    static const char *fail[] = {"PaymentDeclined", "OutOfStock", "ShippingFailed"};
    for (int k = 0; k < 3; k++) {
        char id[16];
        snprintf(id, sizeof id, "f%d", k);
        advance_to(s.port, id, k);
        reply(s.port, id, fail[k], NULL);
        if (k == 2) { /* stock's compensation waits for its confirmation, then pay's */
            free(wait_command(s.port, "inventory-commands", "ReleaseStock", id));
            CHECK_EQ(count_commands(s.port, "payment-commands", "ReleasePayment", id), 0);
            reply(s.port, id, "StockReleased", NULL);
        }
        char *inst = wait_instance(s.port, id, "failed");
        char h[1000];
        history(inst, h, sizeof h);
        static const char *want[] = {"SagaStarted StepStarted StepFailed SagaFailed",
                                     "SagaStarted StepStarted StepSucceeded StepStarted StepFailed CompensationStarted "
                                     "CompensationSucceeded SagaFailed",
                                     "SagaStarted StepStarted StepSucceeded StepStarted StepSucceeded StepStarted "
                                     "StepFailed CompensationStarted "
                                     "CompensationSucceeded CompensationStarted CompensationSucceeded SagaFailed"};
        CHECK_MSG(!strcmp(h, want[k]), "step %d: %s", k, h);
        free(inst);
        if (k > 0)
            free(wait_command(s.port, "payment-commands", "ReleasePayment",
                              id)); /* written beside the state, not before */
        CHECK_EQ(count_commands(s.port, "payment-commands", "ReleasePayment", id), k > 0);
        CHECK_EQ(count_commands(s.port, "inventory-commands", "ReleaseStock", id), k > 1);
    }
    srv_stop(&s, SIGTERM);
}

TEST_T(a_step_that_times_out_fails_the_saga_with_its_compensations, 60) {
    srv s = srv_start(test_dir(), NULL);
    define_order(s.port);
    for (int k = 0; k < 3; k++) {
        char id[16];
        snprintf(id, sizeof id, "t%d", k);
        advance_to(s.port, id, k);
        if (k > 1) {
            free(wait_command(s.port, "inventory-commands", "ReleaseStock", id));
            reply(s.port, id, "StockReleased", NULL);
        }
        char *inst = wait_instance(s.port, id, "failed");
        CHECK_MSG(strstr(inst, "\"reason\":\"timed out\""), "%s", inst);
        free(inst);
        if (k > 0) free(wait_command(s.port, "payment-commands", "ReleasePayment", id));
        CHECK_EQ(count_commands(s.port, "payment-commands", "ReleasePayment", id), k > 0);
        /* A reply after the timeout is parked, not applied. */
    }
    reply(s.port, "t0", "PaymentReserved", NULL);
    resp r;
    for (int n = 0; n < 100; n++) {
        http_do(s.port, "GET", "/sagas/order/parked", NULL, NULL, &r);
        if (strstr(r.body, "\"correlationid\":\"t0\"")) break;
        resp_free(&r);
        usleep(20000);
    }
    CHECK_MSG(r.body && strstr(r.body, "\"correlationid\":\"t0\"") && strstr(r.body, "no running instance"), "%s",
              r.body);
    resp_free(&r);
    srv_stop(&s, SIGTERM);
}

TEST(a_compensation_that_fails_leaves_the_instance_for_an_operator) {
    srv s = srv_start(test_dir(), NULL);
    define_order(s.port);
    advance_to(s.port, "c1", 2);
    reply(s.port, "c1", "ShippingFailed", NULL);
    free(wait_command(s.port, "inventory-commands", "ReleaseStock", "c1"));
    reply(s.port, "c1", "StockReleaseFailed", NULL);
    char *inst = wait_instance(s.port, "c1", "compensation_failed");
    char h[1000];
    history(inst, h, sizeof h);
    CHECK_MSG(strstr(h, "CompensationStarted CompensationFailed SagaCompensationFailed"), "%s", h);
    free(inst);
    CHECK_EQ(count_commands(s.port, "payment-commands", "ReleasePayment", "c1"), 0);
    resp r;
    http_do(s.port, "GET", "/sagas/order/instances?status=compensation_failed", NULL, NULL, &r);
    CHECK_MSG(strstr(r.body, "\"id\":\"c1\""), "%s", r.body);
    resp_free(&r);
    srv_stop(&s, SIGTERM);
}

TEST(duplicate_unknown_and_uncorrelated_replies_and_a_second_start_are_parked_never_applied) {
    srv s = srv_start(test_dir(), NULL);
    define_order(s.port);
    place(s.port, "d1");
    free(wait_command(s.port, "payment-commands", "ReservePayment", "d1"));
    reply(s.port, "d1", "PaymentReserved", NULL);
    reply(s.port, "d1", "PaymentReserved", NULL); /* twice */
    reply(s.port, "nobody", "PaymentReserved", NULL);
    post(s.port, "replies", "{\"type\":\"StockReserved\"}");
    place(s.port, "d1"); /* the same id again */
    resp r = {0};
    for (int n = 0; n < 100; n++) {
        http_do(s.port, "GET", "/sagas/order/parked", NULL, NULL, &r);
        if (strstr(r.body, "is running") && strstr(r.body, "without a correlation")) break;
        resp_free(&r);
        usleep(20000);
    }
    CHECK_MSG(
        r.body && strstr(r.body, "\"correlationid\":\"d1\",\"reason\":\"a reply the instance is not waiting for") &&
            strstr(r.body, "\"correlationid\":\"nobody\",\"reason\":\"no running instance") &&
            strstr(r.body, "a reply without a correlation id") && strstr(r.body, "an instance with this id is running"),
        "%s", r.body);
    resp_free(&r);
    free(wait_command(s.port, "inventory-commands", "ReserveStock", "d1"));
    CHECK_EQ(count_commands(s.port, "inventory-commands", "ReserveStock", "d1"), 1);
    CHECK_EQ(count_commands(s.port, "payment-commands", "ReservePayment", "d1"), 1);
    http_do(s.port, "GET", "/sagas/order", NULL, NULL, &r);
    CHECK_MSG(strstr(r.body, "\"parked\":4"), "%s", r.body);
    resp_free(&r);
    srv_stop(&s, SIGTERM);
}

TEST(a_killed_server_resumes_each_instance_where_it_was_and_sends_nothing_twice) {
    srv s = srv_start(test_dir(), NULL);
    define_order(s.port);
    advance_to(s.port, "k1", 1);
    srv_stop(&s, SIGKILL);
    s = srv_start(test_dir(), NULL);
    reply(s.port, "k1", "StockReserved", NULL);
    free(wait_command(s.port, "shipping-commands", "Ship", "k1"));
    reply(s.port, "k1", "Shipped", NULL);
    free(wait_instance(s.port, "k1", "completed"));
    CHECK_EQ(count_commands(s.port, "payment-commands", "ReservePayment", "k1"), 1);
    CHECK_EQ(count_commands(s.port, "inventory-commands", "ReserveStock", "k1"), 1);
    CHECK_EQ(count_commands(s.port, "shipping-commands", "Ship", "k1"),
             1); /* each sent once, whatever the restart re-sent */
    srv_stop(&s, SIGTERM);
}

TEST(bad_saga_definitions_get_clear_errors_and_change_nothing) {
    srv s = srv_start(test_dir(), NULL);
    static const struct {
        const char *def, *says;
    } bad[] = {
        {"{\"instance_id\":\"data.id\",\"steps\":[]}", "start_on"},
        {"{\"start_on\":\"A\",\"steps\":[]}", "instance_id"},
        {"{\"start_on\":\"A\",\"instance_id\":\"data.id\",\"steps\":[]}", "at least one step"},
        {"{\"start_on\":\"A\",\"instance_id\":\"data.id\",\"steps\":[{\"name\":\"x\",\"command\":{\"stream\":\"s\"},"
         "\"success\":[\"B\"]}]}",
         "needs a stream and a type"},
        {"{\"start_on\":\"A\",\"instance_id\":\"data.id\",\"steps\":[{\"name\":\"x\",\"command\":{\"stream\":\"s\","
         "\"type\":\"C\"}}]}",
         "success"},
        {"{\"start_on\":\"A\",\"instance_id\":\"data.id\",\"steps\":[{\"name\":\"x\",\"command\":{\"stream\":\"s\","
         "\"type\":\"C\"},\"success\":[\"B\"],\"timeout_ms\":-1}]}",
         "timeout_ms"},
        {"{\"start_on\":\"A\",\"instance_id\":\"data.id\",\"steps\":[{\"name\":\"x\",\"command\":{\"stream\":\"s\","
         "\"type\":\"C\"},\"success\":[\"B\"]},"
         "{\"name\":\"x\",\"command\":{\"stream\":\"s\",\"type\":\"C\"},\"success\":[\"B\"]}]}",
         "two steps are named x"},
        {"{\"start_on\":\"A\",\"instance_id\":\"data.id\",\"steps\":[],\"extra\":1}", "unknown member"},
        {"[]", "JSON object"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        expect_status(s.port, "PUT", "/sagas/bad", JSON, bad[i].def, 400, bad[i].says);
    expect_status(s.port, "PUT", "/sagas/b%20d", JSON, ORDER_SAGA, 400, "saga name");
    expect_status(s.port, "GET", "/sagas/bad", NULL, NULL, 404, "no saga");
    expect_status(s.port, "GET", "/sagas", NULL, NULL, 200, "[]");
    define_order(s.port);
    expect_status(s.port, "GET", "/sagas/order/instances?status=sleeping", NULL, NULL, 400, "status is");
    expect_status(s.port, "GET", "/sagas/order/instances/none", NULL, NULL, 404, "no instance");
    /* Definitions survive a restart; a deleted one stays deleted. */
    srv_stop(&s, SIGTERM);
    s = srv_start(test_dir(), NULL);
    expect_status(s.port, "GET", "/sagas/order", NULL, NULL, 200, "\"name\":\"order\"");
    expect_status(s.port, "DELETE", "/sagas/order", NULL, NULL, 200, "\"deleted\":true");
    srv_stop(&s, SIGTERM);
    s = srv_start(test_dir(), NULL);
    expect_status(s.port, "GET", "/sagas/order", NULL, NULL, 404, NULL);
    srv_stop(&s, SIGTERM);
}

/* ---- kill -9 during a stream of sagas ---- */

#include <pthread.h>
#include <stdatomic.h>

#define CR_ORDERS 500

typedef struct cr {
    _Atomic int port; /* 0 while the server is down */
    atomic_bool stop;
    _Atomic int placed;
} cr;

/* The text of "key":"VALUE" in line, into out. */
static bool field(const char *line, const char *key, char *out, size_t cap) {
    char k[64];
    snprintf(k, sizeof k, "\"%s\":\"", key);
    const char *p = strstr(line, k);
    if (!p) return false;
    p += strlen(k);
    const char *q = strchr(p, '"');
    if (!q || (size_t)(q - p) >= cap) return false;
    memcpy(out, p, (size_t)(q - p));
    out[q - p] = 0;
    return true;
}

/* What a service answers to a command of order n (NULL: nothing). */
static const char *answer(const char *type, int n) {
    int kind = n % 5; /* 0 declined, 1 out of stock, 2 shipping fails, 3 shipping never answers, 4 all good */
    if (!strcmp(type, "ReservePayment")) return kind == 0 ? "PaymentDeclined" : "PaymentReserved";
    if (!strcmp(type, "ReserveStock")) return kind == 1 ? "OutOfStock" : "StockReserved";
    if (!strcmp(type, "Ship")) return kind == 2 ? "ShippingFailed" : kind == 3 ? NULL : "Shipped";
    if (!strcmp(type, "ReleaseStock")) return "StockReleased";
    return NULL; /* ReleasePayment is not confirmed */
}

typedef struct service {
    cr *c;
    const char *stream;
} service;

/* Reads its command stream and replies, with the reply's id made from the command's, so a
   reply sent again after a restart is appended once. */
static void *service_main(void *arg) {
    service *sv = arg;
    uint64_t from = 0;
    while (!atomic_load(&sv->c->stop)) {
        int port = atomic_load(&sv->c->port);
        char path[160];
        snprintf(path, sizeof path, "/streams/%s?from=%llu&limit=200", sv->stream, (unsigned long long)from);
        resp r = {0};
        int st = port ? http_try(port, "GET", path, NULL, NULL, &r) : 0;
        bool progressed = false;
        for (char *line = st == 200 ? r.body : NULL; line && *line;) {
            char *nl = strchr(line, '\n');
            if (nl) *nl = 0;
            char type[64], id[200], corr[64];
            if (field(line, "type", type, sizeof type) && field(line, "id", id, sizeof id) &&
                field(line, "correlationid", corr, sizeof corr)) {
                const char *a = answer(type, atoi(corr + 1));
                bool ok = true;
                if (a) {
                    char ev[600];
                    snprintf(ev, sizeof ev,
                             "{\"type\":\"%s\",\"id\":\"reply-%s\",\"correlationid\":\"%s\",\"data\":{\"ref\":\"%s\"}}",
                             a, id, corr, id);
                    resp w = {0};
                    int ws = http_try(port, "POST", "/streams/replies", JSON, ev, &w);
                    resp_free(&w);
                    ok = ws == 201 || ws == 200;
                }
                if (!ok) break;
                from++, progressed = true;
            }
            line = nl ? nl + 1 : NULL;
        }
        resp_free(&r);
        if (!progressed) usleep(20000);
    }
    return NULL;
}

static void *placer_main(void *arg) {
    cr *c = arg;
    while (!atomic_load(&c->stop) && atomic_load(&c->placed) < CR_ORDERS) {
        int port = atomic_load(&c->port), n = atomic_load(&c->placed);
        char ev[200], stream[32];
        snprintf(ev, sizeof ev,
                 "{\"type\":\"OrderPlaced\",\"id\":\"place-%d\",\"data\":{\"orderId\":\"n%d\",\"total\":%d}}", n, n, n);
        snprintf(stream, sizeof stream, "order-n%d", n);
        char path[64];
        snprintf(path, sizeof path, "/streams/%s", stream);
        resp r = {0};
        int st = port ? http_try(port, "POST", path, JSON, ev, &r) : 0;
        resp_free(&r);
        if (st == 201 || st == 200)
            atomic_fetch_add(&c->placed, 1);
        else
            usleep(20000);
        usleep(8000); /* spread over the kill cycles */
    }
    return NULL;
}

TEST_T(kill_9_during_500_sagas_leaves_each_in_exactly_its_right_end_with_no_command_sent_twice, 300) {
    const char *dir = test_dir();
    cr c = {0};
    srv s = srv_start(dir, NULL);
    /* Steps' deadlines run while the server is down between kills, and a reply comes only when
       it is back: 600 ms would make an answered step time out on a loaded machine (seen under
       ASan), so 5 s here; only the step that is never answered (n % 5 == 3) times out. */
    define_order_timeout(s.port, 5000);
    atomic_store(&c.port, s.port);
    static const char *streams[] = {"payment-commands", "inventory-commands", "shipping-commands"};
    service sv[3];
    pthread_t t[4];
    for (int i = 0; i < 3; i++) {
        sv[i] = (service){&c, streams[i]};
        pthread_create(&t[i], NULL, service_main, &sv[i]);
    }
    pthread_create(&t[3], NULL, placer_main, &c);
    for (int cycle = 0; cycle < 20; cycle++) {
        usleep((useconds_t)(100000 + test_rand() % 250000));
        atomic_store(&c.port, 0);
        srv_stop(&s, SIGKILL);
        s = srv_start(dir, NULL);
        atomic_store(&c.port, s.port);
    }
    /* Let every order be placed and every saga end. */
    for (int n = 0; n < 600 && atomic_load(&c.placed) < CR_ORDERS; n++)
        usleep(50000);
    CHECK_EQ(atomic_load(&c.placed), CR_ORDERS);
    /* Every instance ends as its script says (the services still answer meanwhile). */
    resp r = {0};
    for (int n = 0; n < CR_ORDERS; n++) {
        char path[64];
        snprintf(path, sizeof path, "/sagas/order/instances/n%d", n);
        const char *want = n % 5 == 4 ? "\"status\":\"completed\"" : "\"status\":\"failed\"";
        for (int k = 0; k < 500; k++) {
            http_do(s.port, "GET", path, NULL, NULL, &r);
            if (r.status == 200 && (strstr(r.body, want) || strstr(r.body, "\"status\":\"compensation_failed\"")))
                break;
            resp_free(&r);
            usleep(20000);
        }
        CHECK_MSG(r.body && r.status == 200 && strstr(r.body, want), "n%d: %d %.300s", n, r.status, r.body);
        if (n % 5 == 3) CHECK_MSG(strstr(r.body, "\"reason\":\"timed out\""), "n%d: %.300s", n, r.body);
        resp_free(&r);
    }
    atomic_store(&c.stop, true);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    /* Each command went out at most once (its id is unique), and exactly the right ones. */
    static const struct {
        const char *stream, *type;
    } cmds[] = {
        {"payment-commands", "ReservePayment"}, {"payment-commands", "ReleasePayment"},
        {"inventory-commands", "ReserveStock"}, {"inventory-commands", "ReleaseStock"},
        {"shipping-commands", "Ship"},
    };
    static int seen[5][CR_ORDERS];
    memset(seen, 0, sizeof seen);
    for (int k = 0; k < 3; k++) {
        char path[128];
        snprintf(path, sizeof path, "/streams/%s?limit=10000", streams[k]);
        http_do(s.port, "GET", path, NULL, NULL, &r);
        for (char *line = r.body; line && *line;) {
            char *nl = strchr(line, '\n');
            if (nl) *nl = 0;
            char type[64], corr[64];
            if (field(line, "type", type, sizeof type) && field(line, "correlationid", corr, sizeof corr))
                for (int m = 0; m < 5; m++)
                    if (!strcmp(type, cmds[m].type)) seen[m][atoi(corr + 1)]++;
            line = nl ? nl + 1 : NULL;
        }
        resp_free(&r);
    }
    for (int n = 0; n < CR_ORDERS; n++) {
        int kind = n % 5;
        int want[5] = {1, kind >= 1 && kind <= 3, kind >= 1, kind >= 2 && kind <= 3, kind >= 2};
        for (int m = 0; m < 5; m++)
            CHECK_MSG(seen[m][n] == want[m], "n%d: %s sent %d times, expected %d", n, cmds[m].type, seen[m][n],
                      want[m]);
    }
    srv_stop(&s, SIGTERM);
}

TEST(the_saga_command_applies_lists_shows_and_deletes) {
    srv s = srv_start(test_dir(), NULL);
    char file[4200], cmd[8400];
    static char out[65536];
    snprintf(file, sizeof file, "%s/order.json", test_dir());
    FILE *f = fopen(file, "w");
    CHECK(f);
    fputs(ORDER_SAGA, f);
    fclose(f);
    char base[128];
    snprintf(base, sizeof base, "%s --server http://127.0.0.1:%d saga", test_bin(), s.port);
    snprintf(cmd, sizeof cmd, "%s apply %s 2>&1", base, file);
    CHECK_EQ(test_run(cmd, out, sizeof out), 0);
    CHECK_MSG(strstr(out, "\"name\":\"order\""), "%s", out);
    place(s.port, "x1");
    free(wait_command(s.port, "payment-commands", "ReservePayment", "x1"));
    reply(s.port, "x1", "PaymentDeclined", NULL);
    free(wait_instance(s.port, "x1", "failed"));
    reply(s.port, "zz", "PaymentDeclined", NULL);
    snprintf(cmd, sizeof cmd, "%s ls 2>&1", base);
    CHECK_EQ(test_run(cmd, out, sizeof out), 0);
    CHECK_MSG(!strncmp(out, "{\"name\":\"order\"", 15) && strstr(out, "\"failed\":1"), "%s", out);
    snprintf(cmd, sizeof cmd, "%s show order x1 2>&1", base);
    CHECK_EQ(test_run(cmd, out, sizeof out), 0);
    CHECK_MSG(strstr(out, "\"status\":\"failed\"") && strstr(out, "\"history\":["), "%s", out);
    snprintf(cmd, sizeof cmd, "%s instances order --status failed 2>&1", base);
    CHECK_EQ(test_run(cmd, out, sizeof out), 0);
    CHECK_MSG(!strncmp(out, "{\"id\":\"x1\",\"status\":\"failed\"", 28), "%s", out);
    for (int n = 0; n < 100; n++) {
        snprintf(cmd, sizeof cmd, "%s parked order 2>&1", base);
        CHECK_EQ(test_run(cmd, out, sizeof out), 0);
        if (strstr(out, "\"correlationid\":\"zz\"")) break;
        usleep(20000);
    }
    CHECK_MSG(strstr(out, "\"correlationid\":\"zz\""), "%s", out);
    snprintf(cmd, sizeof cmd, "%s show order nope 2>&1", base);
    CHECK_EQ(test_run(cmd, out, sizeof out), 3);
    snprintf(cmd, sizeof cmd, "%s delete order 2>&1", base);
    CHECK_EQ(test_run(cmd, out, sizeof out), 0);
    snprintf(cmd, sizeof cmd, "%s show order 2>&1", base);
    CHECK_EQ(test_run(cmd, out, sizeof out), 3);
    snprintf(cmd, sizeof cmd, "%s --data-dir %s saga ls 2>&1", test_bin(), test_dir());
    CHECK_EQ(test_run(cmd, out, sizeof out), 2);
    srv_stop(&s, SIGTERM);
}

static const char *PARALLEL_SAGA =
    "{\"start_on\":\"OrderPlaced\",\"instance_id\":\"data.orderId\",\"steps\":["
    "{\"parallel\":["
    "{\"name\":\"pay\",\"command\":{\"stream\":\"payment-commands\",\"type\":\"ReservePayment\",\"data\":{}},"
    "\"success\":[\"PaymentReserved\"],\"failure\":[\"PaymentDeclined\"],\"timeout_ms\":5000,"
    "\"compensation\":{\"stream\":\"payment-commands\",\"type\":\"ReleasePayment\"}},"
    "{\"name\":\"stock\",\"command\":{\"stream\":\"inventory-commands\",\"type\":\"ReserveStock\"},"
    "\"success\":[\"StockReserved\"],\"failure\":[\"OutOfStock\"],\"timeout_ms\":5000,"
    "\"compensation\":{\"stream\":\"inventory-commands\",\"type\":\"ReleaseStock\"}}]},"
    "{\"name\":\"ship\",\"command\":{\"stream\":\"shipping-commands\",\"type\":\"Ship\"},\"success\":[\"Shipped\"],"
    "\"failure\":[\"ShippingFailed\"]}]}";

TEST(parallel_steps_all_run_at_once_and_a_failure_compensates_the_ones_that_succeeded_once_all_answer) {
    srv s = srv_start(test_dir(), NULL);
    resp r;
    http_do(s.port, "PUT", "/sagas/order", JSON, PARALLEL_SAGA, &r);
    CHECK_MSG(r.status == 201, "%d %s", r.status, r.body);
    resp_free(&r);
    /* Both succeed: then the next step. */
    place(s.port, "p1");
    free(wait_command(s.port, "payment-commands", "ReservePayment", "p1"));
    free(wait_command(s.port, "inventory-commands", "ReserveStock", "p1"));
    reply(s.port, "p1", "StockReserved", NULL);
    usleep(100000);
    CHECK_EQ(count_commands(s.port, "shipping-commands", "Ship", "p1"), 0);
    reply(s.port, "p1", "PaymentReserved", NULL);
    free(wait_command(s.port, "shipping-commands", "Ship", "p1"));
    reply(s.port, "p1", "Shipped", NULL);
    free(wait_instance(s.port, "p1", "completed"));
    /* One fails first: nothing is compensated until the other answers; then only what succeeded. */
    place(s.port, "p2");
    free(wait_command(s.port, "inventory-commands", "ReserveStock", "p2"));
    reply(s.port, "p2", "OutOfStock", NULL);
    usleep(100000);
    CHECK_EQ(count_commands(s.port, "payment-commands", "ReleasePayment", "p2"), 0);
    reply(s.port, "p2", "PaymentReserved", NULL);
    free(wait_command(s.port, "payment-commands", "ReleasePayment", "p2"));
    char *inst = wait_instance(s.port, "p2", "failed");
    CHECK_EQ(count_commands(s.port, "inventory-commands", "ReleaseStock", "p2"), 0);
    CHECK_EQ(count_commands(s.port, "shipping-commands", "Ship", "p2"), 0);
    char h[1000];
    history(inst, h, sizeof h);
    CHECK_MSG(!strcmp(h, "SagaStarted StepStarted StepStarted StepFailed StepSucceeded CompensationStarted "
                         "CompensationSucceeded SagaFailed"),
              "%s", h);
    free(inst);
    /* Both fail: nothing to compensate. */
    place(s.port, "p3");
    free(wait_command(s.port, "inventory-commands", "ReserveStock", "p3"));
    reply(s.port, "p3", "OutOfStock", NULL);
    reply(s.port, "p3", "PaymentDeclined", NULL);
    free(wait_instance(s.port, "p3", "failed"));
    CHECK_EQ(count_commands(s.port, "payment-commands", "ReleasePayment", "p3"), 0);
    /* Killed with one of the two answered: after the restart the other's answer completes the stage. */
    place(s.port, "p4");
    free(wait_command(s.port, "inventory-commands", "ReserveStock", "p4"));
    reply(s.port, "p4", "StockReserved", NULL);
    usleep(100000);
    srv_stop(&s, SIGKILL);
    s = srv_start(test_dir(), NULL);
    reply(s.port, "p4", "PaymentReserved", NULL);
    free(wait_command(s.port, "shipping-commands", "Ship", "p4"));
    CHECK_EQ(count_commands(s.port, "payment-commands", "ReservePayment", "p4"), 1);
    CHECK_EQ(count_commands(s.port, "inventory-commands", "ReserveStock", "p4"), 1);
    /* Two parallel steps may not share a reply type. */
    expect_status(s.port, "PUT", "/sagas/bad", JSON,
                  "{\"start_on\":\"A\",\"instance_id\":\"data.id\",\"steps\":[{\"parallel\":["
                  "{\"name\":\"a\",\"command\":{\"stream\":\"s\",\"type\":\"C\"},\"success\":[\"Ok\"]},"
                  "{\"name\":\"b\",\"command\":{\"stream\":\"s\",\"type\":\"D\"},\"success\":[\"Ok\"]}]}]}",
                  400, "parallel steps a and b both take reply Ok");
    expect_status(s.port, "PUT", "/sagas/bad", JSON,
                  "{\"start_on\":\"A\",\"instance_id\":\"data.id\",\"steps\":[{\"parallel\":[]}]}", 400,
                  "at least one step");
    srv_stop(&s, SIGTERM);
}

/* `make demo` as CI runs it: the order system of examples/orders, both styles, every path. */
TEST_T(the_order_demo_ends_every_order_as_its_kind_says_in_both_styles, 120) {
    char cmd[4096], svc[2048];
    snprintf(svc, sizeof svc, "%s", test_bin());
    char *slash = strrchr(svc, '/');
    CHECK(slash);
    strcpy(slash + 1, "order-service");
    snprintf(cmd, sizeof cmd, "BIN=%s SVC=%s sh %s/examples/orders/demo.sh 2>&1", test_bin(), svc, test_root());
    static char out[65536];
    CHECK_EQ(test_run(cmd, out, sizeof out), 0);
    static const char *want[] = {
        "o-ok: completed\n",
        "o-declined: failed\n",
        "o-nostock: failed\n",
        "o-lost: failed\n",
        "  messages: ReservePayment PaymentReserved ReserveStock OutOfStock ReleasePayment PaymentReleased \n",
        "  messages: ReservePayment PaymentReserved ReserveStock StockReserved Ship ReleaseStock StockReleased "
        "ReleasePayment PaymentReleased \n",
        "SagaTimeout StepFailed",
        "c-ok: completed\n  events:   OrderPlaced PaymentReserved StockReserved Shipped \n",
        "c-declined: failed\n  events:   OrderPlaced PaymentDeclined \n",
        "c-nostock: failed\n  events:   OrderPlaced PaymentReserved OutOfStock PaymentReleased \n",
        "c-lost: failed\n",
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        CHECK_MSG(strstr(out, want[i]), "no '%s' in:\n%s", want[i], out);
}

/* The example's services with a switch: inventory never answers, so its step times out and
   payment is released — real services, a real consumer group, the saga in between. */
TEST_T(the_example_services_switch_makes_a_step_time_out_and_the_saga_compensates, 60) {
    srv s = srv_start(test_dir(), NULL);
    define_order(s.port);
    char svc[2048], url[64];
    snprintf(svc, sizeof svc, "%s", test_bin());
    strcpy(strrchr(svc, '/') + 1, "order-service");
    snprintf(url, sizeof url, "http://127.0.0.1:%d", s.port);
    static const char *roles[] = {"payment", "inventory", "shipping"};
    pid_t kids[3];
    for (int i = 0; i < 3; i++) {
        kids[i] = fork();
        if (kids[i] == 0) {
            freopen("/dev/null", "w", stdout);
            freopen("/dev/null", "w", stderr);
            if (i == 1)
                execl(svc, svc, roles[i], "--server", url, "--force", "timeout", (char *)NULL);
            else
                execl(svc, svc, roles[i], "--server", url, (char *)NULL);
            _exit(127);
        }
    }
    place(s.port, "sw1");
    char *inst = wait_instance(s.port, "sw1", "failed");
    CHECK_MSG(strstr(inst, "\"step\":\"stock\",\"reason\":\"timed out\""), "%s", inst);
    free(inst);
    free(wait_command(s.port, "payment-commands", "ReleasePayment", "sw1"));
    CHECK_EQ(count_commands(s.port, "shipping-commands", "Ship", "sw1"), 0);
    for (int i = 0; i < 3; i++)
        kill(kids[i], SIGTERM), waitpid(kids[i], NULL, 0);
    srv_stop(&s, SIGTERM);
}

/* A command that cannot be sent as rendered (here: its stream comes from a field the order lacks)
   fails its step at once, on the record, and the saga compensates; nothing loops. */
TEST(a_command_that_cannot_be_sent_fails_its_step_instead_of_stalling_the_saga) {
    srv s = srv_start(test_dir(), NULL);
    resp r;
    http_do(s.port, "PUT", "/sagas/order", JSON,
            "{\"start_on\":\"OrderPlaced\",\"instance_id\":\"data.orderId\",\"steps\":["
            "{\"name\":\"pay\",\"command\":{\"stream\":\"payment-commands\",\"type\":\"ReservePayment\"},\"success\":["
            "\"PaymentReserved\"],"
            "\"compensation\":{\"stream\":\"payment-commands\",\"type\":\"ReleasePayment\"}},"
            "{\"name\":\"route\",\"command\":{\"stream\":\"{{data.warehouse}}\",\"type\":\"Pick\"},\"success\":["
            "\"Picked\"]}]}",
            &r);
    CHECK_MSG(r.status == 201, "%d %s", r.status, r.body);
    resp_free(&r);
    place(s.port, "u1");
    free(wait_command(s.port, "payment-commands", "ReservePayment", "u1"));
    reply(s.port, "u1", "PaymentReserved", NULL);
    char *inst = wait_instance(s.port, "u1", "failed");
    CHECK_MSG(
        strstr(inst,
               "\"step\":\"route\",\"reason\":\"the command cannot be sent: its stream and type must be strings\""),
        "%s", inst);
    free(inst);
    free(wait_command(s.port, "payment-commands", "ReleasePayment", "u1"));
    /* and the saga goes on with the next order */
    place(s.port, "u2");
    free(wait_command(s.port, "payment-commands", "ReservePayment", "u2"));
    srv_stop(&s, SIGTERM);
}

/* ---- checkpoints (issue 14) ---- */

/* ORDER_SAGA's first two steps without timeouts: an instance waits as long as it is not answered. */
static const char *PATIENT_SAGA =
    "{\"start_on\":\"OrderPlaced\",\"instance_id\":\"data.orderId\",\"steps\":["
    "{\"name\":\"pay\",\"command\":{\"stream\":\"payment-commands\",\"type\":\"ReservePayment\"},"
    "\"success\":[\"PaymentReserved\"],\"failure\":[\"PaymentDeclined\"]},"
    "{\"name\":\"stock\",\"command\":{\"stream\":\"inventory-commands\",\"type\":\"ReserveStock\"},\"success\":["
    "\"StockReserved\"]}]}";

/* The log's head position. */
static uint64_t head_position(int port) {
    resp r;
    http_do(port, "GET", "/all?limit=1", NULL, NULL, &r);
    char h[32];
    resp_header(&r, "Factum-Head", h, sizeof h);
    resp_free(&r);
    CHECK_MSG(*h, "no Factum-Head");
    return strtoull(h, NULL, 10);
}

static uint64_t saga_position(int port) {
    char *b = http_body(port, "GET", "/sagas/order", NULL, NULL, 200);
    const char *p = strstr(b, "\"position\":");
    CHECK_MSG(p, "%s", b);
    uint64_t v = strtoull(p + 11, NULL, 10);
    free(b);
    return v;
}

/* The revision of the saga's newest checkpoint, -1 if none; its JSON into *body (free it) if not NULL. */
static long newest_checkpoint(int port, char **body) {
    resp r;
    http_do(port, "GET", "/streams/%24sagacp-order?direction=backward&limit=10", NULL, NULL, &r);
    const char *p = r.status == 200 ? strstr(r.body, "\"revision\":") : NULL;
    long rev = p ? strtol(p + 11, NULL, 10) : -1;
    if (body) *body = r.status == 200 ? resp_take_body(&r) : NULL;
    resp_free(&r);
    return rev;
}

/* Waits until the saga has read the whole log and the log ends with its checkpoint (when
   `checkpointed`); returns the head then. */
static uint64_t wait_caught_up(int port, bool checkpointed) {
    for (int n = 0; n < 1000; n++) {
        uint64_t h = head_position(port);
        bool last = true;
        if (checkpointed) {
            resp r;
            http_do(port, "GET", "/all?direction=backward&limit=1&system=true", NULL, NULL, &r);
            last = r.status == 200 && strstr(r.body, "\"stream\":\"$sagacp-order\"");
            resp_free(&r);
        }
        if (last && saga_position(port) == h && head_position(port) == h) return h;
        usleep(20000);
    }
    CHECK_MSG(false, "the saga never caught up with the log");
    return 0;
}

/* An idle saga writes nothing: no checkpoint when it has decided nothing, and after deciding
   something one checkpoint, which (read back like any event) does not cause the next. Each
   wait is three checkpoint intervals (2 s); a slow machine can only make a failure less likely
   to show, never make a right answer fail. */
TEST(an_idle_store_with_a_saga_stays_at_the_same_head_across_checkpoint_intervals) {
    srv s = srv_start(test_dir(), NULL);
    expect_status(s.port, "PUT", "/sagas/order", JSON, PATIENT_SAGA, 201, NULL);
    uint64_t h = wait_caught_up(s.port, false);
    usleep(6500000);
    CHECK_EQ(head_position(s.port), h);
    CHECK_EQ(newest_checkpoint(s.port, NULL), -1);
    /* One instance: its decisions are checkpointed once, then nothing more. */
    place(s.port, "idle1");
    free(wait_command(s.port, "payment-commands", "ReservePayment", "idle1"));
    h = wait_caught_up(s.port, true);
    long cp = newest_checkpoint(s.port, NULL);
    usleep(6500000);
    CHECK_EQ(head_position(s.port), h);
    CHECK_EQ(newest_checkpoint(s.port, NULL), cp);
    srv_stop(&s, SIGTERM);
}

#include <glob.h>

/* How many of the saga's checkpoint records are on disk: "$sagacp-order" in the segment files
   as a record's stream name, not in its source (/streams/$sagacp-order) nor as a JSON string
   (the stream's metadata record names it as "stream"). */
static int checkpoints_on_disk(const char *dir) {
    char pattern[4096];
    snprintf(pattern, sizeof pattern, "%s/log/*.seg", dir);
    glob_t g;
    CHECK_EQ(glob(pattern, 0, NULL, &g), 0);
    int n = 0;
    const char *name = "$sagacp-order";
    for (size_t i = 0; i < g.gl_pathc; i++) {
        FILE *f = fopen(g.gl_pathv[i], "rb");
        CHECK(f);
        buf_t b = {0};
        char chunk[65536];
        size_t got;
        while ((got = fread(chunk, 1, sizeof chunk, f)) > 0)
            buf_append(&b, chunk, got);
        fclose(f);
        for (const char *p = b.ptr; b.len && (p = memmem(p, b.len - (size_t)(p - b.ptr), name, strlen(name))); p++)
            if (p == b.ptr || (p[-1] != '"' && p[-1] != '/')) n++;
        buf_free(&b);
    }
    globfree(&g);
    return n;
}

/* The saga keeps only its newest checkpoint (max_count 1 on $sagacp-NAME): a scavenge takes
   the older ones off the disk, and a restart resumes from the newest one. */
TEST_T(a_scavenge_removes_superseded_saga_checkpoints_and_a_restart_resumes_from_the_newest, 120) {
    const char *dir = test_dir();
    srv s = srv_start(dir, "--segment-bytes 65536 --scavenge-every 0");
    expect_status(s.port, "PUT", "/sagas/order", JSON, PATIENT_SAGA, 201, NULL);
    enum { ORDERS = 4 };
    char id[ORDERS][16];
    for (int k = 0; k < ORDERS; k++) { /* each order's decisions get a checkpoint of their own */
        snprintf(id[k], sizeof id[k], "cp%d", k);
        long before = newest_checkpoint(s.port, NULL);
        place(s.port, id[k]);
        free(wait_command(s.port, "payment-commands", "ReservePayment", id[k]));
        for (int n = 0; n < 1000 && newest_checkpoint(s.port, NULL) <= before; n++)
            usleep(20000);
        CHECK_MSG(newest_checkpoint(s.port, NULL) > before, "no checkpoint after %s", id[k]);
    }
    wait_caught_up(s.port, true);
    char *newest;
    long rev = newest_checkpoint(s.port, &newest);
    const char *cp = strstr(newest, "\"type\":\"Checkpoint\"");
    CHECK_MSG(rev >= ORDERS - 1 && cp && !strstr(cp + 1, "\"type\":\"Checkpoint\""), "only the newest is read: %ld %s",
              rev, newest);
    for (int k = 0; k < ORDERS; k++)
        CHECK_MSG(strstr(newest, id[k]), "%s not active in %s", id[k], newest);
    /* Other events seal the segments that hold the checkpoints; only sealed ones are scavenged. */
    static char big[20000];
    int len = snprintf(big, sizeof big, "{\"type\":\"Filler\",\"data\":{\"pad\":\"");
    memset(big + len, 'x', 16000);
    strcpy(big + len + 16000, "\"}}");
    for (int k = 0; k < 6; k++)
        post(s.port, "filler-1", big);
    wait_caught_up(s.port, false);
    CHECK_EQ(checkpoints_on_disk(dir), rev + 1);
    expect_status(s.port, "POST", "/admin/scavenge", NULL, "", 202, NULL);
    resp r = {0};
    for (int n = 0; n < 1000; n++) {
        resp_free(&r);
        http_do(s.port, "GET", "/admin/scavenge", NULL, NULL, &r);
        if (strstr(r.body, "\"running\":false,\"runs\":1")) break;
        usleep(20000);
    }
    const char *removed = strstr(r.body, "\"events_removed\":");
    CHECK_MSG(removed && strtol(removed + 17, NULL, 10) >= rev, "%s", r.body);
    resp_free(&r);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    CHECK_EQ(checkpoints_on_disk(dir), 1);
    /* The restart reads the newest checkpoint and takes up its instances: each goes on once. */
    s = srv_start(dir, "--segment-bytes 65536 --scavenge-every 0");
    char *again;
    CHECK_EQ(newest_checkpoint(s.port, &again), rev);
    CHECK_MSG(!strcmp(again, newest), "%s\nwas\n%s", again, newest);
    free(again), free(newest);
    for (int k = 0; k < ORDERS; k++) {
        reply(s.port, id[k], "PaymentReserved", NULL);
        free(wait_command(s.port, "inventory-commands", "ReserveStock", id[k]));
    }
    wait_caught_up(s.port, true);
    for (int k = 0; k < ORDERS; k++) {
        CHECK_EQ(count_commands(s.port, "payment-commands", "ReservePayment", id[k]), 1);
        CHECK_EQ(count_commands(s.port, "inventory-commands", "ReserveStock", id[k]), 1);
    }
    srv_stop(&s, SIGTERM);
}

/* ---- what a definition may not be (issue 14) ---- */

#define DEF(steps) "{\"start_on\":\"OrderPlaced\",\"instance_id\":\"data.orderId\",\"steps\":[" steps "]}"
#define DEF_FROM(cats, steps)                                                                                          \
    "{\"start_on\":\"OrderPlaced\",\"instance_id\":\"data.orderId\",\"start_categories\":[" cats "],\"steps\":[" steps \
    "]}"
#define PAY(cmd, rest) "{\"name\":\"pay\",\"command\":{" cmd "},\"success\":[\"PaymentReserved\"]" rest "}"
#define PAY_CMD "\"stream\":\"payment-commands\",\"type\":\"ReservePayment\""

TEST(saga_definitions_that_would_loop_name_nothing_or_contradict_themselves_are_refused_naming_the_member) {
    srv s = srv_start(test_dir(), NULL);
    static const struct {
        const char *def, *says;
    } bad[] = {
        /* a command the saga would read back as its own start: one event, instances without end */
        {DEF(PAY("\"stream\":\"order-copy\",\"type\":\"OrderPlaced\"", "")),
         "steps[0].command.type: its type is start_on and its stream one the saga starts from"},
        {DEF_FROM("\"order\"", PAY("\"stream\":\"order-{{id}}\",\"type\":\"OrderPlaced\"", "")),
         "steps[0].command.type: its type is start_on"},
        {DEF(PAY(PAY_CMD, ",\"compensation\":{\"stream\":\"order-undo\",\"type\":\"OrderPlaced\"}")),
         "steps[0].compensation.type: its type is start_on"},
        /* or as its own reply */
        {DEF(PAY("\"stream\":\"payment-commands\",\"type\":\"PaymentReserved\"", "")),
         "steps[0].command.type: its type is a reply type of the saga"},
        /* into the global log or a system stream */
        {DEF(PAY("\"stream\":\"$all\",\"type\":\"ReservePayment\"", "")),
         "steps[0].command.stream: a command cannot go to a system stream"},
        {DEF(PAY("\"stream\":\"$sagas-{{id}}\",\"type\":\"ReservePayment\"", "")),
         "steps[0].command.stream: a command cannot go to a system stream"},
        /* template paths that name nothing the context will have */
        {DEF(PAY(PAY_CMD ",\"data\":{\"y\":\"{{steps.nosuch.y}}\"}", "")),
         "steps[0].command: {{steps.nosuch.y}}: there is no step nosuch"},
        {DEF(PAY(PAY_CMD ",\"data\":{\"ref\":\"ref {{steps.pay.ref}}\"}", "")),
         "{{steps.pay.ref}}: step pay has not answered when this command is sent"},
        {DEF(PAY(PAY_CMD ",\"data\":{\"id\":\"{{date.orderId}}\"}", "")),
         "steps[0].command: {{date.orderId}} names nothing"},
        {DEF(PAY(PAY_CMD, ",\"compensation\":{\"stream\":\"p\",\"type\":\"Undo\",\"data\":[\"{{steps.ship}}\"]}")),
         "steps[0].compensation: {{steps.ship}}: there is no step ship"},
        /* reply types that cannot mean what they say */
        {DEF("{\"name\":\"pay\",\"command\":{" PAY_CMD "},\"success\":[\"OrderPlaced\"]}"),
         "steps[0].success: OrderPlaced is start_on"},
        {DEF(PAY(PAY_CMD, ",\"compensation\":{\"stream\":\"p\",\"type\":\"Undo\",\"success\":[\"Undone\"],\"failure\":["
                          "\"OrderPlaced\"]}")),
         "steps[0].compensation.failure: OrderPlaced is start_on"},
        {DEF(PAY(PAY_CMD, ",\"failure\":[\"Declined\",\"PaymentReserved\"]")),
         "steps[0].failure: PaymentReserved is in success too"},
        /* unknown members, wherever they are */
        {DEF(PAY(PAY_CMD, ",\"timeout\":5000")),
         "steps[0].timeout: unknown member (a step has name, command, success, failure, timeout_ms, compensation)"},
        {DEF(PAY(PAY_CMD ",\"dat\":{}", "")),
         "steps[0].command.dat: unknown member (a command has stream, type, data)"},
        {DEF(PAY(PAY_CMD ",\"type, data\":{}", "")), "steps[0].command.type, data: unknown member"},
        {DEF(PAY(PAY_CMD, ",\"compensation\":{\"stream\":\"p\",\"type\":\"Undo\",\"timeout\":1}")),
         "steps[0].compensation.timeout: unknown member"},
        {DEF("{\"parallel\":[" PAY(PAY_CMD, "") "],\"name\":\"both\"}"),
         "steps[0].name: unknown member (a parallel group has parallel)"},
        {DEF(PAY(PAY_CMD, "") ",{\"parallel\":[{\"name\":\"a\",\"command\":{" PAY_CMD "},\"success\":[\"A\"]},"
                              "{\"name\":\"b\",\"command\":{" PAY_CMD "},\"success\":[\"B\"],\"retries\":3}]}"),
         "steps[1].parallel[1].retries: unknown member"},
        /* a step name goes into records and command ids as it is */
        {DEF("{\"name\":\"p\\\"ay\",\"command\":{" PAY_CMD "},\"success\":[\"PaymentReserved\"]}"),
         "steps[0].name must be 1 to 63 letters, digits, '_' or '-'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        expect_status(s.port, "PUT", "/sagas/bad", JSON, bad[i].def, 400, bad[i].says);
    /* Nothing was defined, nothing written. */
    expect_status(s.port, "GET", "/sagas", NULL, NULL, 200, "[]");
    expect_status(s.port, "GET", "/streams/%24sagas", NULL, NULL, 404, NULL);
    /* What can be told apart from a loop is not refused: start_on into a stream it does not start
       from, a compensation that reads a later step's reply. */
    expect_status(s.port, "PUT", "/sagas/fine", JSON,
                  DEF_FROM("\"order\"", PAY("\"stream\":\"audit-{{id}}\",\"type\":\"OrderPlaced\"", "")), 201, NULL);
    expect_status(
        s.port, "PUT", "/sagas/fine", JSON,
        DEF(PAY(PAY_CMD,
                ",\"compensation\":{\"stream\":\"p\",\"type\":\"Undo\",\"data\":{\"s\":\"{{steps.ship.x}}\",\"p\":\"{{"
                "steps.pay}}\"}}") ","
                                   "{\"name\":\"ship\",\"command\":{\"stream\":\"s\",\"type\":\"Ship\",\"data\":{"
                                   "\"ref\":\"{{steps.pay.ref}}\",\"id\":\"{{id}}\"}},\"success\":[\"Shipped\"]}"),
        200, NULL);
    srv_stop(&s, SIGTERM);
}

/* A definition of `nsteps` steps (the first named first, its success list `ntypes` types of
   `type_len` characters), with `ncats` reply categories. */
static char *sized_def(const char *start_on, const char *instance_id, int nsteps, const char *first, int ntypes,
                       int type_len, int ncats) {
    buf_t b = {0};
    buf_printf(&b, "{\"start_on\":\"%s\",\"instance_id\":\"%s\",\"reply_categories\":[", start_on, instance_id);
    for (int c = 0; c < ncats; c++)
        buf_printf(&b, "%s\"c%d\"", c ? "," : "", c);
    buf_append(&b, "],\"steps\":[", 11);
    for (int k = 0; k < nsteps; k++) {
        buf_printf(&b, "%s{\"name\":\"", k ? "," : "");
        if (k)
            buf_printf(&b, "s%d", k);
        else
            buf_printf(&b, "%s", first);
        buf_printf(&b, "\",\"command\":{\"stream\":\"cmd\",\"type\":\"Do%d\"},\"success\":[", k);
        for (int t = 0; t < (k ? 1 : ntypes); t++)
            buf_printf(&b, "%s\"R%d-%d%0*d\"", t ? "," : "", k, t, k ? 0 : type_len - 4 - (t > 9), 0);
        buf_append(&b, "]}", 2);
    }
    buf_append(&b, "]}", 3);
    return b.ptr;
}

static char *repeat(char c, int n) {
    char *s = malloc((size_t)n + 1);
    memset(s, c, (size_t)n);
    s[n] = 0;
    return s;
}

/* Each limit of a definition: at it, accepted; one past it, refused, naming it. */
TEST(each_limit_of_a_saga_definition_is_accepted_at_it_and_refused_one_past_it) {
    srv s = srv_start(test_dir(), NULL);
    char *t255 = repeat('T', 255), *t256 = repeat('T', 256), *p255 = repeat('p', 255), *p256 = repeat('p', 256);
    char *n63 = repeat('n', 63), *n64 = repeat('n', 64);
    struct {
        char *at, *past;
        const char *says;
    } lim[] = {
        {sized_def(t255, "data.id", 1, "a", 1, 8, 0), sized_def(t256, "data.id", 1, "a", 1, 8, 0), "start_on must be"},
        {sized_def("Go", p255, 1, "a", 1, 8, 0), sized_def("Go", p256, 1, "a", 1, 8, 0), "instance_id must be"},
        {sized_def("Go", "data.id", 32, "a", 1, 8, 0), sized_def("Go", "data.id", 33, "a", 1, 8, 0),
         "at most 32 steps"},
        {sized_def("Go", "data.id", 1, n63, 1, 8, 0), sized_def("Go", "data.id", 1, n64, 1, 8, 0),
         "steps[0].name must be 1 to 63"},
        {sized_def("Go", "data.id", 1, "a", 16, 8, 0), sized_def("Go", "data.id", 1, "a", 17, 8, 0),
         "steps[0].success: at most 16 event types"},
        {sized_def("Go", "data.id", 1, "a", 1, 255, 0), sized_def("Go", "data.id", 1, "a", 1, 256, 0),
         "of 1 to 255 characters"},
        {sized_def("Go", "data.id", 1, "a", 1, 8, 16), sized_def("Go", "data.id", 1, "a", 1, 8, 17),
         "reply_categories: at most 16"},
    };
    for (size_t i = 0; i < sizeof lim / sizeof lim[0]; i++) {
        expect_status(s.port, "PUT", "/sagas/lim", JSON, lim[i].past, 400, lim[i].says);
        resp r;
        http_do(s.port, "PUT", "/sagas/lim", JSON, lim[i].at, &r);
        CHECK_MSG(r.status == 201 || r.status == 200, "limit %zu: %d %s", i, r.status, r.body);
        resp_free(&r);
        free(lim[i].at), free(lim[i].past);
    }
    char *name = repeat('s', 100), path[200];
    snprintf(path, sizeof path, "/sagas/%s", name);
    expect_status(s.port, "PUT", path, JSON, PATIENT_SAGA, 201, NULL);
    snprintf(path, sizeof path, "/sagas/%ss", name);
    expect_status(s.port, "PUT", path, JSON, PATIENT_SAGA, 400, "a saga name is 1 to 100");
    free(name), free(t255), free(t256), free(p255), free(p256), free(n63), free(n64);
    srv_stop(&s, SIGTERM);
}

/* ---- commands that cannot be written (issue 14) ---- */

/* An instance id long enough that the command's id (saga-NAME-ID-STEP-do) passes 255 bytes:
   the step fails on the record, and the saga goes on with the next order (it used to try the
   write again every second for ever, with every other instance held up behind it). */
TEST(a_command_whose_id_would_pass_255_bytes_fails_its_step_and_the_saga_goes_on) {
    srv s = srv_start(test_dir(), NULL);
    expect_status(s.port, "PUT", "/sagas/order", JSON, PATIENT_SAGA, 201, NULL);
    char *longid = repeat('L', 238), ev[400]; /* saga-order- + 238 + -pay-do = 256 bytes; $saga-order-ID is 250 */
    snprintf(ev, sizeof ev, "{\"type\":\"OrderPlaced\",\"data\":{\"orderId\":\"%s\"}}", longid);
    post(s.port, "order-long", ev);
    char *inst = wait_instance(s.port, longid, "failed");
    CHECK_MSG(strstr(inst, "\"reason\":\"the command cannot be sent: event 0: 'id' is 256 bytes, the limit is 255\""),
              "%s", inst);
    free(inst);
    place(s.port, "after-long");
    free(wait_command(s.port, "payment-commands", "ReservePayment", "after-long"));
    char *ok = repeat('L', 237); /* 255 bytes: sent */
    snprintf(ev, sizeof ev, "{\"type\":\"OrderPlaced\",\"data\":{\"orderId\":\"%s\"}}", ok);
    post(s.port, "order-long", ev);
    free(wait_command(s.port, "payment-commands", "ReservePayment", ok));
    free(longid), free(ok);
    srv_stop(&s, SIGTERM);
}

/* What only the rendered command shows: a stream from the order's data that the saga starts
   from (with start_on as type), a system stream, a stream deleted for ever. Each fails its step
   on the record; no instance starts another. */
TEST(a_rendered_command_into_its_own_start_a_system_stream_or_a_tombstone_fails_its_step) {
    srv s = srv_start(test_dir(), NULL);
    expect_status(s.port, "PUT", "/sagas/order", JSON,
                  DEF_FROM("\"order\"", "{\"name\":\"pay\",\"command\":{\"stream\":\"{{data.target}}\",\"type\":"
                                        "\"OrderPlaced\",\"data\":{\"orderId\":\"{{id}}-again\"}},"
                                        "\"success\":[\"PaymentReserved\"]}"),
                  201, NULL);
    expect_status(s.port, "DELETE", "/streams/gone-1?tombstone=true", NULL, NULL, 200, NULL);
    static const struct {
        const char *id, *target, *reason;
    } c[] = {
        {"t1", "order-loop",
         "its type is start_on and its stream one the saga starts from: each command would start another instance"},
        {"t2", "$sagas", "a command cannot go to a system stream"},
        {"t3", "gone-1", "its stream gone-1 is deleted for ever"},
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        char ev[200], stream[32];
        snprintf(ev, sizeof ev, "{\"type\":\"OrderPlaced\",\"data\":{\"orderId\":\"%s\",\"target\":\"%s\"}}", c[i].id,
                 c[i].target);
        snprintf(stream, sizeof stream, "order-%s", c[i].id);
        post(s.port, stream, ev);
        char *inst = wait_instance(s.port, c[i].id, "failed");
        char want[300];
        snprintf(want, sizeof want, "\"reason\":\"the command cannot be sent: %s\"", c[i].reason);
        CHECK_MSG(strstr(inst, want), "%s", inst);
        free(inst);
    }
    /* A stream it does not start from takes the command. */
    post(s.port, "order-t4", "{\"type\":\"OrderPlaced\",\"data\":{\"orderId\":\"t4\",\"target\":\"audit-1\"}}");
    free(wait_command(s.port, "audit-1", "OrderPlaced", "t4"));
    expect_status(s.port, "GET", "/streams/order-loop", NULL, NULL, 404, NULL);
    expect_status(s.port, "GET", "/sagas/order/instances/t1-again", NULL, NULL, 404, NULL);
    srv_stop(&s, SIGTERM);
}

/* A command the store refuses when it is written although it passed the checks (here its id is
   taken in the stream by another event): the step waits for its reply, as if the service had
   not answered; the saga does not go back to its checkpoint to be refused again for ever. */
TEST(a_command_the_store_refuses_when_written_holds_up_no_other_instance) {
    srv s = srv_start(test_dir(), NULL);
    expect_status(s.port, "PUT", "/sagas/order", JSON, PATIENT_SAGA, 201, NULL);
    post(s.port, "payment-commands", "{\"type\":\"Squatter\",\"id\":\"saga-order-q1-pay-do\",\"data\":{}}");
    place(s.port, "q1");
    place(s.port, "q2");
    free(wait_command(s.port, "payment-commands", "ReservePayment", "q2"));
    wait_caught_up(s.port, false); /* it used to go back to its checkpoint every second, never past q1 */
    CHECK_EQ(count_commands(s.port, "payment-commands", "ReservePayment", "q1"), 0);
    free(wait_instance(s.port, "q1", "running"));
    srv_stop(&s, SIGTERM);
}

/* State records that would pass the data limit (8 KiB here): a start event too large for the
   instance's state is parked; a command whose StepStarted record (the command and more) would
   pass it fails its step; a reply whose data would take the context past it fails its step. */
TEST(saga_state_records_past_the_data_limit_park_or_fail_the_step_instead_of_stalling) {
    srv s = srv_start(test_dir(), "--max-body 8192");
    expect_status(s.port, "PUT", "/sagas/order", JSON,
                  DEF("{\"name\":\"pay\",\"command\":{\"stream\":\"payment-commands\",\"type\":\"ReservePayment\","
                      "\"data\":{\"a\":\"{{data.pad}}\",\"b\":\"{{data.pad}}\"}},"
                      "\"success\":[\"PaymentReserved\"]},"
                      "{\"name\":\"stock\",\"command\":{\"stream\":\"inventory-commands\",\"type\":\"ReserveStock\"},"
                      "\"success\":[\"StockReserved\"]}"),
                  201, NULL);
    char ev[9000];
    /* 8,155 bytes of data: the event fits, its SagaStarted record (the context and more) does not */
    snprintf(ev, sizeof ev, "{\"type\":\"OrderPlaced\",\"data\":{\"orderId\":\"z1\",\"pad\":\"%0*d\"}}", 8155 - 25, 0);
    post(s.port, "order-z1", ev);
    /* pad 4,000: the command's data (8,015 bytes) fits, its StepStarted record does not */
    snprintf(ev, sizeof ev, "{\"type\":\"OrderPlaced\",\"data\":{\"orderId\":\"z2\",\"pad\":\"%04000d\"}}", 0);
    post(s.port, "order-z2", ev);
    char *inst = wait_instance(s.port, "z2", "failed");
    CHECK_MSG(strstr(inst, "\"reason\":\"the command cannot be sent: event 0: data is "), "%s", inst);
    free(inst);
    /* a small order, then a reply of 8,100 bytes: the context and its record would be larger */
    place(s.port, "z3");
    free(wait_command(s.port, "payment-commands", "ReservePayment", "z3"));
    snprintf(ev, sizeof ev, "{\"type\":\"PaymentReserved\",\"correlationid\":\"z3\",\"data\":{\"ref\":\"%0*d\"}}",
             8100 - 10, 0);
    post(s.port, "replies", ev);
    inst = wait_instance(s.port, "z3", "failed");
    CHECK_MSG(strstr(inst, "\"reason\":\"reply PaymentReserved: its data cannot join the context: event 0: data is "),
              "%s", inst);
    free(inst);
    char *parked = http_body(s.port, "GET", "/sagas/order/parked", NULL, NULL, 200);
    CHECK_MSG(strstr(parked, "\"reason\":\"the instance's state cannot hold the start event: event 0: data is "), "%s",
              parked);
    free(parked);
    expect_status(s.port, "GET", "/sagas/order/instances/z1", NULL, NULL, 404, NULL);
    /* and the saga goes on */
    place(s.port, "z4");
    free(wait_command(s.port, "payment-commands", "ReservePayment", "z4"));
    srv_stop(&s, SIGTERM);
}
