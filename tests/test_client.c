/*
 * test_client.c — the client side of the server: the C client library (append with expected
 * revision, read with paging, subscribe with resume across a server restart) and the CLI in
 * client mode (same commands and exit codes as embedded, exit 5 when nobody listens).
 */
#include "test_server.h"

#include <sys/socket.h>

#include <netinet/in.h>

#include <arpa/inet.h>

#include "factum_client.h"

#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

static factum_event_t json_event(const char *type, const char *data, const char *id) {
    return (factum_event_t){.type = str_c(type), .data = str_c(data), .id = str_c(id), .data_format = FACTUM_DATA_JSON};
}

/* A server on the test's folder, its address in url, and a client of it. */
static factum_client_t *serve_and_connect(srv *s, char url[64]) {
    *s = srv_start(test_dir(), NULL);
    snprintf(url, 64, "http://127.0.0.1:%d", s->port);
    factum_client_t *c;
    factum_error_t err;
    CHECK_RC(factum_client_new(url, &c, &err), 0);
    return c;
}

TEST(the_client_library_appends_and_reads_with_the_engine_codes) {
    srv s;
    char url[64];
    factum_client_t *c = serve_and_connect(&s, url);
    factum_error_t err;
    factum_event_t ev[3] = {json_event("A", "{\"i\":0}", "x0"), json_event("B", "[1,2]", NULL),
                            json_event("C", "\"s\"", NULL)};
    factum_append_result_t r;
    CHECK_RC(factum_client_append(c, "acct-1", FACTUM_EXPECT_NO_STREAM, ev, 3, &r, &err), 0);
    CHECK(r.first_revision == 0 && r.last_revision == 2 && r.last_position == 2 && !r.idempotent);
    CHECK_RC(factum_client_append(c, "acct-1", FACTUM_EXPECT_NO_STREAM, ev, 1, &r, &err),
             0); /* the same id: idempotent */
    CHECK(r.idempotent && r.last_revision == 0);
    factum_event_t other = json_event("A", "{\"i\":1}", "x0");
    CHECK_RC(factum_client_append(c, "acct-1", FACTUM_EXPECT_ANY, &other, 1, &r, &err), FACTUM_ECONFLICT);
    factum_event_t d = json_event("D", "{}", NULL);
    CHECK_RC(factum_client_append(c, "acct-1", 1, &d, 1, &r, &err), FACTUM_EREVISION);
    CHECK_EQ(r.actual_revision, 2);
    CHECK(strstr(err.message, "actual 2"));
    CHECK_RC(factum_client_append(c, "acct-1", 2, &d, 1, &r, &err), 0);
    CHECK_RC(factum_client_append(c, "a/b", FACTUM_EXPECT_ANY, &d, 1, &r, &err), FACTUM_EBADSTREAM);
    factum_event_t notype = json_event("", "{}", NULL);
    CHECK_RC(factum_client_append(c, "acct-1", FACTUM_EXPECT_ANY, &notype, 1, &r, &err), FACTUM_EBADEVENT);
    /* Binary data and extensions round-trip. */
    factum_event_t bin = {.type = str_c("Blob"),
                          .data = {"\0\1\2", 3},
                          .data_format = FACTUM_DATA_BINARY,
                          .datacontenttype = str_c("application/octet-stream"),
                          .extensions = str_c("\"trace\":\"t-1\"")};
    CHECK_RC(factum_client_append(c, "blob-1", FACTUM_EXPECT_ANY, &bin, 1, &r, &err), 0);
    /* Reads: paging through a stream; $all filtered; not found. */
    factum_query_t q = {.from = 0, .limit = 3};
    factum_events_t *set;
    uint64_t next;
    CHECK_RC(factum_client_read(c, "acct-1", &q, &set, &next, &err), 0);
    CHECK_EQ(factum_events_count(set), 3);
    CHECK_EQ(next, 3);
    factum_event_t *e = factum_events_get(set, 0);
    CHECK(str_eq(e->id, str_c("x0")) && str_eq(e->stream, str_c("acct-1")) && e->revision == 0 && e->time_us > 0);
    CHECK(str_eq(factum_events_get(set, 1)->data, str_c("[1,2]")) && factum_events_get(set, 2)->position == 2);
    factum_events_free(set);
    q.from = next;
    CHECK_RC(factum_client_read(c, "acct-1", &q, &set, &next, &err), 0);
    CHECK(factum_events_count(set) == 1 && factum_events_get(set, 0)->revision == 3 && next == FACTUM_END);
    factum_events_free(set);
    factum_query_t qa = {.limit = 100, .type = str_c("Blob")};
    CHECK_RC(factum_client_read(c, NULL, &qa, &set, &next, &err), 0);
    CHECK_EQ(factum_events_count(set), 1);
    e = factum_events_get(set, 0);
    CHECK(e->data_format == FACTUM_DATA_BINARY && e->data.len == 3 && !memcmp(e->data.ptr, "\0\1\2", 3));
    CHECK(strstr(e->extensions.ptr, "\"trace\":\"t-1\""));
    factum_events_free(set);
    CHECK_RC(factum_client_read(c, "nobody-1", &q, &set, &next, &err), FACTUM_ENOTFOUND);
    factum_client_free(c);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    /* Nobody listening: FACTUM_EUNREACHABLE. */
    CHECK_RC(factum_client_new(url, &c, &err), 0);
    CHECK_RC(factum_client_append(c, "acct-1", FACTUM_EXPECT_ANY, &d, 1, &r, &err), FACTUM_EUNREACHABLE);
    factum_client_free(c);
}

/* An empty page is no events, not an error: paging to the end of a stream (the last full page
   links to a next one, which is empty), and a filter nothing matches; the CLI reads both ways
   the same, exit 0 and no lines. */
/* Several URLs: a server that refuses the connection passes the request to the next, for the
   library and the CLI; a bad list is refused. */
TEST(a_client_with_several_urls_moves_on_from_a_server_that_refuses_the_connection) {
    srv s = srv_start(test_dir(), NULL);
    /* a port nothing listens on: bind one, note it, close it */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    CHECK(bind(fd, (struct sockaddr *)&a, sizeof a) == 0 && getsockname(fd, (struct sockaddr *)&a, &al) == 0);
    int dead = ntohs(a.sin_port);
    close(fd);
    char urls[200];
    snprintf(urls, sizeof urls, "http://127.0.0.1:%d,http://127.0.0.1:%d/", dead, s.port);
    factum_client_t *c;
    factum_error_t err;
    CHECK_RC(factum_client_new(urls, &c, &err), 0);
    factum_event_t e = json_event("Moved", "{}", "m-1");
    factum_append_result_t r;
    CHECK_RC(factum_client_append(c, "multi-1", FACTUM_EXPECT_ANY, &e, 1, &r, &err), 0);
    CHECK_RC(factum_client_append(c, "multi-1", FACTUM_EXPECT_ANY, &e, 1, &r, &err), 0); /* stays on it */
    CHECK(r.idempotent);
    factum_client_free(c);
    /* only dead ones: unreachable, naming the last tried */
    snprintf(urls, sizeof urls, "http://127.0.0.1:%d,http://127.0.0.1:%d", dead, dead);
    CHECK_RC(factum_client_new(urls, &c, &err), 0);
    CHECK_RC(factum_client_append(c, "multi-1", FACTUM_EXPECT_ANY, &e, 1, &r, &err), FACTUM_EUNREACHABLE);
    factum_client_free(c);
    static const char *const bad[] = {
        "http://a,ftp://b",
        "http://a,",
        ",http://a",
        "http://",
        "",
        "http://1,http://2,http://3,http://4,http://5,http://6,http://7,http://8,http://9"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        CHECK_MSG(factum_client_new(bad[i], &c, &err) == FACTUM_EINVAL, "%s", bad[i]);
    /* the CLI takes the same list in --server */
    char out[4096];
    CHECK_EQ(run_factum(out, sizeof out, "--server http://127.0.0.1:%d,http://127.0.0.1:%d read multi-1", dead, s.port),
             0);
    CHECK_MSG(strstr(out, "\"type\":\"Moved\""), "%s", out);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}

TEST(the_client_reads_an_empty_page_and_an_empty_filtered_read_as_no_events) {
    srv s;
    char url[64];
    factum_client_t *c = serve_and_connect(&s, url);
    factum_error_t err;
    factum_event_t ev[2] = {json_event("A", "{}", NULL), json_event("B", "{}", NULL)};
    CHECK_RC(factum_client_append(c, "order-1", FACTUM_EXPECT_NO_STREAM, ev, 2, NULL, &err), 0);
    factum_query_t q = {.limit = 2};
    factum_events_t *set;
    uint64_t next;
    CHECK_RC(factum_client_read(c, "order-1", &q, &set, &next, &err), 0);
    CHECK_EQ(factum_events_count(set), 2);
    CHECK_EQ(next, 2); /* a full page: the server links to the next one */
    factum_events_free(set);
    q.from = next;
    CHECK_RC(factum_client_read(c, "order-1", &q, &set, &next, &err), 0);
    CHECK_EQ(factum_events_count(set), 0);
    CHECK(next == FACTUM_END && factum_events_get(set, 0) == NULL);
    factum_events_free(set);
    factum_query_t none = {.limit = 10, .type = str_c("NoSuchType")};
    CHECK_RC(factum_client_read(c, NULL, &none, &set, &next, &err), 0);
    CHECK(factum_events_count(set) == 0 && next == FACTUM_END);
    factum_events_free(set);
    factum_client_free(c);
    char cmd[4096], out[4096];
    const char *const reads[] = {"read --all --type NoSuchType", "read order-1 --limit 2", "read order-1 --from 2"};
    for (size_t i = 0; i < ARRAY_LEN(reads); i++) {
        snprintf(cmd, sizeof cmd, "FACTUM_URL=%s %s %s 2>&1", url, test_bin(), reads[i]);
        int rc = test_run(cmd, out, sizeof out);
        CHECK_MSG(rc == 0, "server: %s: exit %d, %s", reads[i], rc, out);
        CHECK_MSG(i == 1 ? strstr(out, "\"type\":\"B\"") != NULL : out[0] == 0, "server: %s printed %s", reads[i], out);
    }
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    for (size_t i = 0; i < ARRAY_LEN(reads); i++) {
        snprintf(cmd, sizeof cmd, "%s --data-dir %s %s 2>&1", test_bin(), test_dir(), reads[i]);
        int rc = test_run(cmd, out, sizeof out);
        CHECK_MSG(rc == 0, "embedded: %s: exit %d, %s", reads[i], rc, out);
        CHECK_MSG(i == 1 ? strstr(out, "\"type\":\"B\"") != NULL : out[0] == 0, "embedded: %s printed %s", reads[i],
                  out);
    }
}

typedef struct {
    const char *url;
    uint64_t seen[64];
    int n, caught_up, want;
    int rc;
    pthread_mutex_t mu;
} sub_state;

static int on_event(void *ctx, const factum_event_t *e) {
    sub_state *s = ctx;
    pthread_mutex_lock(&s->mu);
    if (!e)
        s->caught_up++;
    else
        s->seen[s->n++] = e->position;
    int stop = s->n >= s->want;
    pthread_mutex_unlock(&s->mu);
    return stop;
}

static void *subscriber(void *arg) {
    sub_state *s = arg;
    factum_client_t *c;
    factum_client_new(s->url, &c, NULL);
    factum_query_t q = {.from = 0};
    s->rc = factum_client_subscribe(c, NULL, &q, on_event, s, NULL);
    factum_client_free(c);
    return NULL;
}

static int seen_count(sub_state *s) {
    pthread_mutex_lock(&s->mu);
    int n = s->n;
    pthread_mutex_unlock(&s->mu);
    return n;
}

TEST_T(a_client_subscription_resumes_across_a_server_restart, 60) {
    srv s = srv_start(test_dir(), NULL);
    char url[64], listen[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", s.port);
    snprintf(listen, sizeof listen, "--listen 127.0.0.1:%d", s.port);
    factum_client_t *c;
    CHECK_RC(factum_client_new(url, &c, NULL), 0);
    factum_event_t e = json_event("Tick", "{}", NULL);
    for (int i = 0; i < 10; i++)
        CHECK_RC(factum_client_append(c, "tick-1", FACTUM_EXPECT_ANY, &e, 1, NULL, NULL), 0);
    sub_state st = {.url = url, .want = 20, .mu = PTHREAD_MUTEX_INITIALIZER};
    pthread_t th;
    pthread_create(&th, NULL, subscriber, &st);
    for (int t = 0; t < 500 && seen_count(&st) < 10; t++)
        usleep(10000);
    CHECK_EQ(seen_count(&st), 10);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    s = srv_start(test_dir(), listen);
    for (int i = 0; i < 10; i++)
        CHECK_RC(factum_client_append(c, "tick-1", FACTUM_EXPECT_ANY, &e, 1, NULL, NULL), 0);
    pthread_join(th, NULL);
    CHECK_RC(st.rc, 0);
    CHECK_EQ(st.n, 20);
    for (int i = 0; i < 20; i++)
        CHECK_EQ(st.seen[i], i);
    CHECK(st.caught_up >= 1);
    factum_client_free(c);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}

static int run_cli(char *out, size_t cap, const char *url, const char *args) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s --server %s %s 2>%s/stderr", test_bin(), url, args, test_dir());
    return test_run(cmd, out, cap);
}

TEST(the_cli_in_client_mode_gives_the_embedded_answers_and_exit_codes) {
    srv s = srv_start(test_dir(), NULL);
    char url[64], out[8192];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", s.port);
    CHECK_EQ(run_cli(out, sizeof out, url, "append order-1 OrderCreated '{\"total\":5}' --id a1 --expect no-stream"),
             0);
    CHECK_MSG(!strcmp(out, "{\"stream\":\"order-1\",\"revision\":0,\"position\":0}\n"), "%s", out);
    CHECK_EQ(run_cli(out, sizeof out, url, "append order-1 OrderCreated '{\"total\":5}' --id a1"), 0);
    CHECK(strstr(out, "\"revision\":0"));
    CHECK_EQ(run_cli(out, sizeof out, url, "append order-1 OrderCreated --expect no-stream"), 4);
    CHECK_EQ(run_cli(out, sizeof out, url, "append order-1 OrderCreated '{\"total\":6}' --id a1"), 1);
    CHECK_EQ(run_cli(out, sizeof out, url, "append order-1 Shipped '{}' --expect 0 --correlation-id k"), 0);
    CHECK_EQ(run_cli(out, sizeof out, url, "read order-1"), 0);
    CHECK(strstr(out, "\"id\":\"a1\"") && strstr(out, "\"type\":\"Shipped\""));
    CHECK_EQ(run_cli(out, sizeof out, url, "read order-1 --backward --limit 1"), 0);
    CHECK(strstr(out, "Shipped") && !strstr(out, "OrderCreated"));
    CHECK_EQ(run_cli(out, sizeof out, url, "read --all --correlation-id k"), 0);
    CHECK(strstr(out, "Shipped") && !strstr(out, "OrderCreated"));
    CHECK_EQ(run_cli(out, sizeof out, url, "read nobody-1"), 3);
    CHECK_EQ(run_cli(out, sizeof out, url, "read"), 2);
    /* tail follows live: started before an append, it prints that append. */
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "timeout 3 %s --server %s tail order-1 > %s/tail.out 2>&1 &", test_bin(), url,
             test_dir());
    CHECK(system(cmd) == 0);
    usleep(500000);
    CHECK_EQ(run_cli(out, sizeof out, url, "append order-1 Delivered '{}'"), 0);
    usleep(500000);
    char path[512];
    snprintf(path, sizeof path, "%s/tail.out", test_dir());
    FILE *f = fopen(path, "r");
    CHECK(f && fgets(out, sizeof out, f));
    fclose(f);
    CHECK_MSG(strstr(out, "\"type\":\"Delivered\"") && !strstr(out, "Shipped"), "tail printed %s", out);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    /* Nobody listening: exit 5 and how to start one. */
    CHECK_EQ(run_cli(out, sizeof out, url, "read order-1"), 5);
    snprintf(cmd, sizeof cmd, "FACTUM_URL=%s %s append order-1 X 2>&1", url, test_bin());
    CHECK_EQ(test_run(cmd, out, sizeof out), 5);
    CHECK_MSG(strstr(out, "factum serve"), "%s", out);
}

TEST_T(the_client_schedules_and_cancels_timers_and_the_cli_too, 60) {
    srv s = srv_start(test_dir(), NULL);
    char url[64], id[37], out[4096], cmd[4096];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", s.port);
    factum_client_t *c;
    factum_error_t err;
    CHECK_RC(factum_client_new(url, &c, &err), 0);
    factum_event_t e = json_event("Reminder", "{\"n\":1}", NULL);
    CHECK_RC(factum_client_schedule(c, clock_realtime_us() + 200000, "remind-1", &e, id, &err), 0);
    CHECK_EQ(strlen(id), 36);
    char later[37];
    CHECK_RC(factum_client_schedule(c, clock_realtime_us() + 60000000, "remind-1", &e, later, &err), 0);
    CHECK_RC(factum_client_cancel_schedule(c, later, &err), 0);
    CHECK_RC(factum_client_cancel_schedule(c, later, &err), FACTUM_ECONFLICT);
    CHECK_RC(factum_client_cancel_schedule(c, "nope", &err), FACTUM_ENOTFOUND);
    CHECK_RC(factum_client_schedule(c, clock_realtime_us(), "$no", &e, later, &err), FACTUM_EBADSTREAM);
    /* The CLI: +SECONDS, then the event arrives once. */
    snprintf(cmd, sizeof cmd, "%s --server %s schedule +0 remind-2 Ping '{\"p\":2}'", test_bin(), url);
    CHECK_EQ(test_run(cmd, out, sizeof out), 0);
    CHECK(strstr(out, "\"id\":\"") && strstr(out, "\"at\":\""));
    snprintf(cmd, sizeof cmd, "%s schedule +1 a-1 X 2>/dev/null", test_bin());
    CHECK_EQ(test_run(cmd, out, sizeof out), 2); /* needs a server */
    usleep(600000);
    factum_query_t q = {.limit = 10};
    factum_events_t *set;
    uint64_t next;
    CHECK_RC(factum_client_read(c, "remind-1", &q, &set, &next, &err), 0);
    CHECK_EQ(factum_events_count(set), 1);
    CHECK(str_eq(factum_events_get(set, 0)->id, str_c(id)) &&
          str_eq(factum_events_get(set, 0)->data, str_c("{\"n\":1}")));
    factum_events_free(set);
    CHECK_RC(factum_client_read(c, "remind-2", &q, &set, &next, &err), 0);
    CHECK(factum_events_count(set) == 1 && str_eq(factum_events_get(set, 0)->type, str_c("Ping")));
    factum_events_free(set);
    factum_client_free(c);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}

TEST(the_cli_drives_consumer_groups) {
    srv s = srv_start(test_dir(), NULL);
    char url[64], cmd[4096], out[16384];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", s.port);
#define G(args)                                                                                                        \
    (snprintf(cmd, sizeof cmd, "%s --server %s group %s 2>&1", test_bin(), url, args), test_run(cmd, out, sizeof out))
    snprintf(cmd, sizeof cmd,
             "%s --server %s append job-1 Work '{}' >/dev/null && %s --server %s append job-2 Work '{}' >/dev/null",
             test_bin(), url, test_bin(), url);
    CHECK_EQ(system(cmd), 0);
    CHECK_EQ(G("create jobs --category job --start earliest --min-delay 0 --max-delay 10"), 0);
    CHECK(strstr(out, "\"name\":\"jobs\"") && strstr(out, "\"min_delay_ms\":0"));
    CHECK_EQ(G("pull jobs --max 5"), 0);
    CHECK(strstr(out, "{\"delivery_id\":\"0.1\"") && strstr(out, "\n{\"delivery_id\":\"1.1\""));
    CHECK_EQ(G("ack jobs 0.1"), 0);
    CHECK(strstr(out, "\"acked\":1"));
    CHECK_EQ(G("nack jobs 1.1 --park --reason broken"), 0);
    CHECK_EQ(G("parked jobs"), 0);
    CHECK(strstr(out, "\"reason\":\"broken\""));
    CHECK_EQ(G("replay jobs"), 0);
    CHECK(strstr(out, "\"replayed\":1"));
    CHECK_EQ(G("show nobody"), 3);
    CHECK_EQ(G("ack jobs 7.1"), 1); /* never delivered: 409 */
    CHECK_EQ(G("create"), 2);
#undef G
    snprintf(cmd, sizeof cmd, "%s group list 2>/dev/null", test_bin());
    CHECK_EQ(test_run(cmd, out, sizeof out), 2); /* needs a server */
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}

/* The same `factum meta` / `factum delete` session on the data folder and against a server:
   the same output and exit codes. */
static void meta_session(const char *mode, char *log, size_t cap) {
    static const char *const steps[][2] = {
        {"append s-1 A '{}'", "0"},
        {"append s-1 A '{}'", "0"},
        {"append s-1 A '{}'", "0"},
        {"append s-1 A '{}'", "0"},
        {"meta s-1", "0"},
        {"meta s-1 --max-count 2 --custom '{\"a\":1}'", "0"},
        {"meta s-1 --max-age 100", "0"},
        {"meta s-1 --max-count x", "2"},
        {"read s-1", "0"},
        {"delete s-1 --expect 1", "4"},
        {"delete s-1 --expect 3", "0"},
        {"read s-1", "3"},
        {"delete s-1 --tombstone", "0"},
        {"read s-1", "6"},
        {"append s-1 A '{}'", "6"},
        {"meta s-1", "0"},
    };
    size_t len = 0;
    for (size_t i = 0; i < ARRAY_LEN(steps); i++) {
        char cmd[4096], out[8192];
        snprintf(cmd, sizeof cmd, "%s %s %s 2>/dev/null", test_bin(), mode, steps[i][0]);
        int rc = test_run(cmd, out, sizeof out);
        CHECK_MSG(rc == atoi(steps[i][1]), "%s %s: exit %d", mode, steps[i][0], rc);
        /* Event ids and times differ between the runs; metadata and results do not. */
        if (strncmp(steps[i][0], "read", 4))
            len += (size_t)snprintf(log + len, cap - len, "%s", out);
        else
            len += (size_t)snprintf(log + len, cap - len, "%d lines\n",
                                    (int)(strchr(out, '\n') ? 1 + (strrchr(out, '\n') > strchr(out, '\n')) : 0));
    }
    CHECK_MSG(strstr(log, "\"max_age_s\":100,\"max_count\":2,\"truncate_before\":2,\"custom\":{\"a\":1}"), "%s", log);
    CHECK_MSG(strstr(log, "\"last_revision\":3,\"tombstone\":false") && strstr(log, "\"tombstone\":true,\"position\":"),
              "%s", log);
}

TEST(the_cli_shows_and_changes_metadata_and_deletes_streams_in_both_modes) {
    char embedded[16384], served[16384], mode[600];
    snprintf(mode, sizeof mode, "--data-dir %s/embedded", test_dir());
    meta_session(mode, embedded, sizeof embedded);
    srv s = srv_start(test_dir(), NULL);
    snprintf(mode, sizeof mode, "--server http://127.0.0.1:%d", s.port);
    meta_session(mode, served, sizeof served);
    CHECK_MSG(!strcmp(embedded, served), "embedded:\n%s\nserver:\n%s", embedded, served);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}
