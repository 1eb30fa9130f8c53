/*
 * test_connectors.c — connectors through the real server: definitions (refused bad input that
 * creates nothing, secrets never shown, restarts, pause and resume, the limit on their number)
 * and HTTP sinks delivering to a real receiver in this process — a small socket server that
 * answers as a test tells it (at random 500, 429 with Retry-After, slow, gone for a while),
 * checks each request's signature with OpenSSL, and records what it accepted. Afterwards every
 * event was accepted at least once, each stream in order, duplicates only with the same id,
 * and parked events are replayable.
 */
#include "test_cluster.h"
#include "test_server.h"

#include "../src/connect/connector.h"
#include "../src/io/io.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <unistd.h>

#define CE "Content-Type: application/cloudevents+json\r\n"
#define JS "Content-Type: application/json\r\n"
#define SECRET_NEW "a-new-secret-0123456789"
#define SECRET_OLD "the-old-secret-987654321"

/* ---- the receiver ---- */

enum { RX_OK, RX_CHAOS, RX_FAIL, RX_GONE };

#define RX_MAX 20000
typedef struct accepted {
    char stream[64], id[64];
    long revision;
} accepted;

static struct {
    int lfd, port;
    _Atomic int mode;
    _Atomic int requests, bad_signatures, unsigned_requests;
    pthread_mutex_t mu;
    accepted got[RX_MAX];
    int n;
    uint64_t rnd;
} rx = {.mu = PTHREAD_MUTEX_INITIALIZER};

static int rx_listen(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(bind(fd, (struct sockaddr *)&a, sizeof a) == 0);
    CHECK(listen(fd, 64) == 0);
    socklen_t len = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &len);
    rx.port = ntohs(a.sin_port);
    return fd;
}

static const char *hdr(const char *head, const char *name, char *out, size_t cap) {
    out[0] = 0;
    size_t n = strlen(name);
    for (const char *p = strstr(head, "\r\n"); p; p = strstr(p + 2, "\r\n"))
        if (!strncasecmp(p + 2, name, n) && p[2 + n] == ':') {
            const char *v = p + 3 + n;
            while (*v == ' ')
                v++;
            snprintf(out, cap, "%.*s", (int)strcspn(v, "\r\n"), v);
            break;
        }
    return out;
}

/* Whether sig ("t=T,v1=HEX,...") holds an HMAC-SHA256 of "T.BODY" under one of our secrets. */
static bool signature_ok(const char *sig, const char *body, size_t n) {
    long long t;
    if (sscanf(sig, "t=%lld", &t) != 1) return false;
    char ts[32];
    int tl = snprintf(ts, sizeof ts, "%lld.", t);
    const char *secrets[] = {SECRET_NEW, SECRET_OLD};
    for (int i = 0; i < 2; i++) {
        unsigned char mac[64];
        size_t ml = sizeof mac;
        EVP_PKEY *k =
            EVP_PKEY_new_raw_private_key(EVP_PKEY_HMAC, NULL, (const unsigned char *)secrets[i], strlen(secrets[i]));
        EVP_MD_CTX *c = EVP_MD_CTX_new();
        EVP_DigestSignInit(c, NULL, EVP_sha256(), NULL, k);
        EVP_DigestSignUpdate(c, ts, (size_t)tl);
        EVP_DigestSignUpdate(c, body, n);
        EVP_DigestSignFinal(c, mac, &ml);
        EVP_MD_CTX_free(c);
        EVP_PKEY_free(k);
        char hex[160] = "v1=";
        for (size_t j = 0; j < ml; j++)
            snprintf(hex + 3 + 2 * j, 3, "%02x", mac[j]);
        if (strstr(sig, hex)) return true;
    }
    return false;
}

static void rx_answer(int fd, int status, const char *extra) {
    char out[256];
    int n = snprintf(out, sizeof out, "HTTP/1.1 %d X\r\nContent-Length: 11\r\n%s\r\nstatus-body", status, extra);
    if (write(fd, out, (size_t)n) < 0) return;
}

static void *rx_conn(void *arg) {
    int fd = (int)(intptr_t)arg;
    static _Thread_local char buf[1 << 21];
    size_t have = 0;
    for (;;) {
        char *end;
        while (!(end = memmem(buf, have, "\r\n\r\n", 4))) {
            ssize_t k = read(fd, buf + have, sizeof buf - have - 1);
            if (k <= 0) goto out;
            have += (size_t)k;
        }
        size_t head_len = (size_t)(end - buf) + 4;
        char head[8192], v[256];
        snprintf(head, sizeof head, "%.*s", (int)head_len, buf);
        size_t body_len = (size_t)atol(hdr(head, "Content-Length", v, sizeof v));
        while (have < head_len + body_len) {
            ssize_t k = read(fd, buf + have, sizeof buf - have - 1);
            if (k <= 0) goto out;
            have += (size_t)k;
        }
        const char *body = buf + head_len;
        atomic_fetch_add(&rx.requests, 1);
        hdr(head, "Factum-Signature", v, sizeof v);
        if (!v[0])
            atomic_fetch_add(&rx.unsigned_requests, 1);
        else if (!signature_ok(v, body, body_len))
            atomic_fetch_add(&rx.bad_signatures, 1);
        int mode = atomic_load(&rx.mode), status = 200;
        pthread_mutex_lock(&rx.mu);
        uint64_t r = (rx.rnd = rx.rnd * 6364136223846793005ull + 1442695040888963407ull) >> 33;
        pthread_mutex_unlock(&rx.mu);
        if (mode == RX_FAIL) status = 500;
        if (mode == RX_GONE) goto out; /* no answer: the connection drops */
        if (mode == RX_CHAOS) {
            int dice = (int)(r % 10);
            if (dice == 0) status = 500;
            if (dice == 1) {
                rx_answer(fd, 429, "Retry-After: 0\r\n");
                goto next;
            }
            if (dice == 2) usleep(30000); /* slow */
            if (dice == 3) goto out;      /* drops the connection */
        }
        if (status == 200) {
            pthread_mutex_lock(&rx.mu);
            if (rx.n < RX_MAX) {
                accepted *a = &rx.got[rx.n++];
                hdr(head, "ce-stream", a->stream, sizeof a->stream);
                hdr(head, "ce-id", a->id, sizeof a->id);
                a->revision = atol(hdr(head, "ce-revision", v, sizeof v));
            }
            pthread_mutex_unlock(&rx.mu);
        }
        rx_answer(fd, status, "");
    next:
        memmove(buf, buf + head_len + body_len, have - head_len - body_len);
        have -= head_len + body_len;
    }
out:
    close(fd);
    return NULL;
}

static void *rx_main(void *arg) {
    (void)arg;
    for (;;) {
        int fd = accept(rx.lfd, NULL, NULL);
        if (fd < 0) {
            if (rx.lfd < 0) return NULL;
            usleep(1000);
            continue;
        }
        pthread_t t;
        pthread_create(&t, NULL, rx_conn, (void *)(intptr_t)fd);
        pthread_detach(t);
    }
}

static void rx_start(void) {
    rx.lfd = rx_listen(0);
    rx.rnd = test_seed();
    pthread_t t;
    pthread_create(&t, NULL, rx_main, NULL);
    pthread_detach(t);
}

/* ---- helpers ---- */

static void put_connector(int port, const char *name, const char *body, int want, const char *has) {
    char path[160];
    snprintf(path, sizeof path, "/connectors/%s", name);
    expect_status(port, "PUT", path, JS, body, want, has);
}

/* A sink of stream category `cat` to the receiver, over plain HTTP (loopback). */
static void sink_body(char *out, size_t cap, const char *cat, const char *extra) {
    snprintf(out, cap,
             "{\"kind\":\"http-sink\",\"url\":\"http://127.0.0.1:%d/hook\",\"allow_http\":true,"
             "\"source\":{\"category\":\"%s\"},\"secrets\":[\"" SECRET_NEW "\",\"" SECRET_OLD "\"],"
             "\"retry\":{\"min_delay_ms\":10,\"max_delay_ms\":200}%s}",
             rx.port, cat, extra);
}

static void append(int port, const char *stream, int i) {
    char path[160], body[200];
    snprintf(path, sizeof path, "/streams/%s", stream);
    snprintf(body, sizeof body, "{\"specversion\":\"1.0\",\"type\":\"Made\",\"source\":\"/t\",\"data\":{\"i\":%d}}", i);
    expect_status(port, "POST", path, CE, body, 201, NULL);
}

/* Every (stream, revision) of `streams` x `per` accepted at least once; each stream's accepted
   revisions never skip ahead of the ones before; a duplicate carries the same id. */
static void check_delivered(const char *cat, int streams, int per) {
    pthread_mutex_lock(&rx.mu);
    static char ids[16][200][64];
    int next[16] = {0};
    memset(ids, 0, sizeof ids);
    for (int i = 0; i < rx.n; i++) {
        accepted *a = &rx.got[i];
        int s;
        char want[64];
        CHECK(sscanf(a->stream, "%*[^-]-%d", &s) == 1 && s < streams && a->revision < per);
        snprintf(want, sizeof want, "%s-%d", cat, s);
        if (strcmp(a->stream, want)) continue;
        CHECK_MSG(a->revision <= next[s], "%s: revision %ld accepted before %d", a->stream, a->revision, next[s]);
        if (a->revision == next[s]) {
            snprintf(ids[s][a->revision], 64, "%s", a->id);
            next[s]++;
        } else {
            CHECK_MSG(!strcmp(ids[s][a->revision], a->id), "a duplicate of %s/%ld has another id", a->stream,
                      a->revision);
        }
    }
    for (int s = 0; s < streams; s++)
        CHECK_MSG(next[s] == per, "stream %d: %d of %d accepted", s, next[s], per);
    pthread_mutex_unlock(&rx.mu);
}

static int accepted_count(void) {
    pthread_mutex_lock(&rx.mu);
    int n = rx.n;
    pthread_mutex_unlock(&rx.mu);
    return n;
}

/* Waits until every event of the category is accepted in order (or 60 s pass, then checks). */
static void wait_delivered(const char *cat, int streams, int per) {
    for (int i = 0; i < 600; i++) {
        pthread_mutex_lock(&rx.mu);
        int distinct = 0;
        static char seen[16][200];
        memset(seen, 0, sizeof seen);
        for (int k = 0; k < rx.n; k++) {
            int s;
            if (sscanf(rx.got[k].stream, "%*[^-]-%d", &s) == 1 && s < 16 && rx.got[k].revision < 200 &&
                !seen[s][rx.got[k].revision])
                seen[s][rx.got[k].revision] = 1, distinct++;
        }
        pthread_mutex_unlock(&rx.mu);
        if (distinct >= streams * per) break;
        usleep(100000);
    }
    check_delivered(cat, streams, per);
}

/* ---- signing ---- */

TEST(sink_signature_is_the_hmac_the_openssl_binary_computes_for_each_secret) {
    conn_def d = {.nsecrets = 2};
    snprintf(d.secrets[0], sizeof d.secrets[0], SECRET_NEW);
    snprintf(d.secrets[1], sizeof d.secrets[1], SECRET_OLD);
    buf_t sig = {0};
    const char *body = "{\"i\":1}";
    sink_sign(&d, 1700000000, body, strlen(body), &sig);
    buf_append(&sig, "", 1);
    const char *secrets[] = {SECRET_NEW, SECRET_OLD};
    for (int i = 0; i < 2; i++) {
        char cmd[512], out[256];
        snprintf(cmd, sizeof cmd, "printf '%%s' '1700000000.%s' | openssl dgst -sha256 -hmac '%s' -r", body,
                 secrets[i]);
        FILE *p = popen(cmd, "r");
        CHECK(p && fgets(out, sizeof out, p));
        pclose(p);
        out[64] = 0;
        char want[80];
        snprintf(want, sizeof want, "v1=%s", out);
        CHECK_MSG(strstr(sig.ptr, want), "%s lacks %s", sig.ptr, want);
    }
    CHECK(!strncmp(sig.ptr, "t=1700000000,v1=", 16));
    buf_free(&sig);
}

/* ---- definitions ---- */

TEST(connector_put_refuses_bad_input_and_creates_nothing) {
    rx_start();
    srv s = srv_start(test_dir(), "");
    char b[1024], self[600];
    struct {
        const char *body, *has;
    } bad[] = {
        {"{\"kind\":\"http-sink\",\"url\":\"http://127.0.0.1:1/x\",\"source\":{\"stream\":\"a\"}}", "https"},
        {"{\"kind\":\"http-sink\",\"url\":\"http://127.0.0.1:1/x\",\"allow_http\":true,\"source\":{\"stream\":\"a\"}}",
         "cannot reach"},
        {"{\"kind\":\"ftp-sink\",\"url\":\"https://x/\",\"source\":{\"stream\":\"a\"}}", "kind"},
        {"{\"kind\":\"postgres-outbox\"}", "postgres"},
        {"{\"kind\":\"http-sink\",\"url\":\"ftp://x/\",\"source\":{\"stream\":\"a\"}}", "url"},
        {"{\"kind\":\"http-sink\",\"url\":\"https://x/\",\"allow_unreachable\":true}", "source"},
        {"{\"kind\":\"http-sink\",\"url\":\"https://x/\",\"allow_unreachable\":true,\"source\":{\"stream\":\"a\"},"
         "\"secrets\":[\"short\"]}",
         "secrets"},
        {"{\"kind\":\"http-sink\",\"url\":\"https://x/\",\"allow_unreachable\":true,\"source\":{\"stream\":\"a\"},"
         "\"secrets\":[\"0123456789abcdef\",\"0123456789abcdef\",\"0123456789abcdef\"]}",
         "secrets"},
        {"{\"kind\":\"http-sink\",\"url\":\"https://x/\",\"allow_unreachable\":true,\"source\":{\"stream\":\"a\"},"
         "\"mode\":\"structured\",\"batch_max\":1001}",
         "batch_max"},
        {"{\"kind\":\"http-sink\",\"url\":\"https://x/\",\"allow_unreachable\":true,\"source\":{\"stream\":\"a\"},"
         "\"batch_max\":10}",
         "structured"},
        {"{\"kind\":\"http-sink\",\"url\":\"https://x/\",\"allow_unreachable\":true,\"source\":{\"stream\":\"a\"},"
         "\"bogus\":1}",
         "bogus"},
        {"{\"kind\":\"http-sink\",\"url\":\"https://x/\",\"allow_unreachable\":true,\"source\":{\"stream\":\"a\"},"
         "\"start\":\"someday\"}",
         "start"},
        {"[1]", "object"},
    };
    for (size_t i = 0; i < ARRAY_LEN(bad); i++)
        put_connector(s.port, "c1", bad[i].body, 400, bad[i].has);
    /* This server itself, by address or by name. */
    snprintf(self, sizeof self,
             "{\"kind\":\"http-sink\",\"url\":\"http://127.0.0.1:%d/streams/x\",\"allow_http\":true,"
             "\"source\":{\"stream\":\"a\"}}",
             s.port);
    put_connector(s.port, "c1", self, 400, "this Factum server");
    snprintf(self, sizeof self,
             "{\"kind\":\"http-sink\",\"url\":\"http://localhost:%d/\",\"allow_http\":true,\"allow_unreachable\":true,"
             "\"source\":{\"stream\":\"a\"}}",
             s.port);
    put_connector(s.port, "c1", self, 400, "this Factum server");
    expect_status(s.port, "PUT", "/connectors/bad.name", JS, "{}", 400, "connector name");
    expect_status(s.port, "GET", "/connectors/c1", NULL, NULL, 404, NULL);
    char *list = http_body(s.port, "GET", "/connectors", NULL, NULL, 200);
    CHECK(!strcmp(list, "[]"));
    free(list);
    list = http_body(s.port, "GET", "/groups", NULL, NULL, 200);
    CHECK(!strstr(list, "sink."));
    free(list);
    /* the boundaries themselves are taken */
    sink_body(b, sizeof b, "c", ",\"mode\":\"structured\",\"batch_max\":1000");
    put_connector(s.port, "c1", b, 201, "\"batch_max\":1000");
    srv_stop(&s, SIGTERM);
}

TEST(connector_definitions_survive_restart_keep_secrets_hidden_and_pause) {
    rx_start();
    srv s = srv_start(test_dir(), "");
    char b[1024];
    sink_body(b, sizeof b, "order", "");
    put_connector(s.port, "orders", b, 201, "\"secret_count\":2");
    put_connector(s.port, "orders", b, 200, "\"group\":\"sink.orders\"");
    char *got = http_body(s.port, "GET", "/connectors/orders", NULL, NULL, 200);
    CHECK(!strstr(got, SECRET_NEW) && !strstr(got, SECRET_OLD));
    free(got);
    got = http_body(s.port, "GET", "/streams/$connectors", NULL, NULL, 200);
    CHECK(strstr(got, "ConnectorDefined") && !strstr(got, SECRET_NEW) && !strstr(got, SECRET_OLD));
    free(got);
    /* its source cannot change under its group */
    sink_body(b, sizeof b, "invoice", "");
    put_connector(s.port, "orders", b, 400, "source cannot change");
    expect_status(s.port, "POST", "/connectors/orders/pause", NULL, "", 200, "\"state\":\"paused\"");
    expect_status(s.port, "POST", "/connectors/nope/pause", NULL, "", 404, NULL);
    append(s.port, "order-0", 0);
    srv_stop(&s, SIGKILL);
    s = srv_start(test_dir(), "");
    expect_status(s.port, "GET", "/connectors/orders", NULL, NULL, 200, "\"state\":\"paused\"");
    CHECK_EQ(accepted_count(), 0); /* paused: nothing went out */
    expect_status(s.port, "POST", "/connectors/orders/resume", NULL, "", 200, NULL);
    wait_delivered("order", 1, 1);
    CHECK_EQ(atomic_load(&rx.bad_signatures), 0);
    CHECK_EQ(atomic_load(&rx.unsigned_requests), 0);
    expect_status(s.port, "DELETE", "/connectors/orders", NULL, NULL, 200, "\"deleted\":true");
    expect_status(s.port, "GET", "/connectors/orders", NULL, NULL, 404, NULL);
    expect_status(s.port, "GET", "/groups/sink.orders", NULL, NULL, 404, NULL);
    CHECK(access(test_path("connectors/orders.secret"), F_OK) != 0);
    srv_stop(&s, SIGTERM);
    s = srv_start(test_dir(), "");
    expect_status(s.port, "GET", "/connectors/orders", NULL, NULL, 404, NULL);
    srv_stop(&s, SIGTERM);
}

TEST(connectors_past_the_limit_are_refused) {
    srv s = srv_start(test_dir(), "");
    char b[512], name[32];
    for (int i = 0; i <= 50; i++) {
        snprintf(b, sizeof b,
                 "{\"kind\":\"http-sink\",\"url\":\"https://127.0.0.1:1/\",\"allow_unreachable\":true,"
                 "\"source\":{\"stream\":\"s%d\"}}",
                 i);
        snprintf(name, sizeof name, "c%d", i);
        put_connector(s.port, name, b, i < 50 ? 201 : 400, i < 50 ? NULL : "too many connectors");
    }
    srv_stop(&s, SIGTERM);
}

/* A sink's group is a group: a new sink past --max-groups gets a new group's answer and makes
   nothing; redefining one at the limit is not a new group. */
TEST(a_sink_past_max_groups_is_refused_like_a_group_and_creates_nothing) {
    rx_start();
    srv s = srv_start(test_dir(), "--max-groups 2");
    char b[1024];
    expect_status(s.port, "PUT", "/groups/g0", JS, "{\"source\":{\"stream\":\"a\"}}", 201, NULL);
    sink_body(b, sizeof b, "order", "");
    put_connector(s.port, "c1", b, 201, NULL); /* the second group */
    put_connector(s.port, "c1", b, 200, NULL); /* its own again */
    double head = srv_metric(s.port, "factum_head_position");
    resp r;
    http_do(s.port, "PUT", "/connectors/c2", JS, b, &r);
    CHECK_MSG(r.status == 409 && strstr(r.body, "limit-reached") && strstr(r.body, "--max-groups") &&
                  strstr(r.body, "\"limit\":\"max-groups\",\"max\":2,\"current\":2"),
              "%d %s", r.status, r.body);
    resp_free(&r);
    CHECK(srv_metric(s.port, "factum_head_position") == head); /* nothing recorded */
    expect_status(s.port, "GET", "/connectors/c2", NULL, NULL, 404, NULL);
    expect_status(s.port, "GET", "/groups/sink.c2", NULL, NULL, 404, NULL);
    CHECK(access(test_path("connectors/c2.secret"), F_OK) != 0);
    /* a group is refused the same way, and a deletion makes room */
    expect_status(s.port, "PUT", "/groups/g1", JS, "{\"source\":{\"stream\":\"a\"}}", 409, "limit-reached");
    expect_status(s.port, "DELETE", "/groups/g0", NULL, NULL, 200, NULL);
    put_connector(s.port, "c2", b, 201, "\"group\":\"sink.c2\"");
    srv_stop(&s, SIGTERM);
}

/* ---- delivery ---- */

TEST_T(sink_delivers_every_event_in_order_through_chaos_and_kill9, 120) {
    rx_start();
    atomic_store(&rx.mode, RX_CHAOS);
    srv s = srv_start(test_dir(), "");
    char b[1024];
    sink_body(b, sizeof b, "acct", ",\"timeout_ms\":1000,\"max_attempts\":1000");
    put_connector(s.port, "acct", b, 201, NULL);
    enum { STREAMS = 4, PER = 40 };
    for (int i = 0; i < PER; i++) {
        for (int k = 0; k < STREAMS; k++) {
            char st[32];
            snprintf(st, sizeof st, "acct-%d", k);
            append(s.port, st, i);
        }
        if (i == PER / 4) { /* the receiver goes away for a while */
            atomic_store(&rx.mode, RX_GONE);
        }
        if (i == PER / 2) {
            atomic_store(&rx.mode, RX_CHAOS);
            srv_stop(&s, SIGKILL); /* during delivery */
            s = srv_start(test_dir(), "");
        }
    }
    wait_delivered("acct", STREAMS, PER);
    CHECK(atomic_load(&rx.requests) > accepted_count()); /* the chaos did refuse some */
    CHECK_EQ(atomic_load(&rx.bad_signatures), 0);
    CHECK_EQ(atomic_load(&rx.unsigned_requests), 0);
    expect_status(s.port, "GET", "/connectors/acct", NULL, NULL, 200, "\"parked\":0");
    srv_stop(&s, SIGTERM);
}

TEST(sink_parks_after_max_attempts_with_the_answer_and_replays) {
    rx_start();
    atomic_store(&rx.mode, RX_FAIL);
    srv s = srv_start(test_dir(), "");
    char b[1024];
    sink_body(b, sizeof b, "pay", ",\"max_attempts\":2");
    put_connector(s.port, "pay", b, 201, NULL);
    append(s.port, "pay-0", 0);
    CHECK(http_wait_body(s.port, "/connectors/pay", "\"parked\":1", 30));
    expect_status(s.port, "GET", "/groups/sink.pay/parked", NULL, NULL, 200, "HTTP 500: status-body");
    expect_status(s.port, "GET", "/connectors/pay", NULL, NULL, 200, "\"last_status\":500");
    CHECK(srv_metric(s.port, "factum_connector_parked{connector=\"pay\",kind=\"http-sink\"}") == 1);
    CHECK_EQ(accepted_count(), 0);
    atomic_store(&rx.mode, RX_OK);
    expect_status(s.port, "POST", "/groups/sink.pay/parked/replay", JS, "{}", 200, "\"replayed\":1");
    wait_delivered("pay", 1, 1);
    CHECK(http_wait_body(s.port, "/connectors/pay", "\"parked\":0", 30));
    CHECK(srv_metric(s.port, "factum_connector_delivered_total{connector=\"pay\",kind=\"http-sink\"}") == 1);
    srv_stop(&s, SIGTERM);
}

TEST(sink_batches_structured_events_with_a_signature) {
    rx_start();
    srv s = srv_start(test_dir(), "");
    char b[1024];
    sink_body(b, sizeof b, "bat", ",\"mode\":\"structured\",\"batch_max\":50");
    put_connector(s.port, "bat", b, 201, NULL);
    for (int k = 0; k < 5; k++) {
        char st[32];
        snprintf(st, sizeof st, "bat-%d", k);
        append(s.port, st, k);
    }
    CHECK(http_wait_body(s.port, "/connectors/bat", "\"delivered\":5", 30));
    CHECK(atomic_load(&rx.requests) <= 5);
    CHECK_EQ(atomic_load(&rx.bad_signatures), 0);
    srv_stop(&s, SIGTERM);
}

/* ---- the command line ---- */

TEST(the_cli_applies_lists_pauses_resumes_and_deletes_a_connector) {
    rx_start();
    srv s = srv_start(test_dir(), "");
    char b[1024], out[8192], url[64];
    sink_body(b, sizeof b, "cli", "");
    FILE *f = fopen(test_path("hook.json"), "w");
    CHECK(f && fputs(b, f) >= 0);
    fclose(f);
    snprintf(url, sizeof url, "http://127.0.0.1:%d", s.port);
    CHECK_EQ(run_factum(out, sizeof out, "--server %s connector apply %s", url, test_path("hook.json")), 0);
    CHECK(strstr(out, "\"name\":\"hook\"") && !strstr(out, SECRET_NEW));
    CHECK_EQ(run_factum(out, sizeof out, "--server %s connector ls", url), 0);
    CHECK(strstr(out, "\"name\":\"hook\""));
    CHECK_EQ(run_factum(out, sizeof out, "--server %s connector pause hook", url), 0);
    CHECK(strstr(out, "\"state\":\"paused\""));
    CHECK_EQ(run_factum(out, sizeof out, "--server %s connector resume hook", url), 0);
    CHECK_EQ(run_factum(out, sizeof out, "--server %s connector status hook", url), 0);
    CHECK(strstr(out, "\"state\":\"running\""));
    CHECK_EQ(run_factum(out, sizeof out, "--server %s connector delete hook", url), 0);
    CHECK(run_factum(out, sizeof out, "--server %s connector status hook", url) != 0);
    CHECK(run_factum(out, sizeof out, "--server %s connector frob hook", url) != 0);
    srv_stop(&s, SIGTERM);
}

/* ---- in a cluster ---- */

/* A sink and a SQLite projection defined on the leader after every node started reach the
   followers without a restart — the sink's signing secrets too, which the log does not hold
   (they go through the cluster's key-value bucket); the sink goes on delivering, signed, after
   the leader is killed, each follower's projection holds every event, and deletions on the new
   leader reach the other node. */
TEST_T(definitions_made_on_the_leader_reach_running_followers_and_a_sink_delivers_across_a_leader_kill, 300) {
    rx_start();
    cluster_fixture f;
    bool alive[NODES];
    int leader = cluster_up_leader(&f, alive);
    char b[1024];
    sink_body(b, sizeof b, "ship", "");
    put_connector(f.http_port[leader], "ship", b, 201, NULL);
    expect_status(f.http_port[leader], "PUT", "/projections/ships", JS,
                  "{\"setup\":[\"CREATE TABLE IF NOT EXISTS t (i INTEGER)\"],"
                  "\"handlers\":{\"Made\":[\"INSERT INTO t VALUES (:data.i)\"]}}",
                  201, NULL);
    for (int i = 0; i < NODES; i++) {
        if (i == leader) continue;
        CHECK_MSG(http_wait_body(f.http_port[i], "/connectors/ship", "\"name\":\"ship\"", WAIT_S),
                  "node%d never had the sink", i);
        CHECK_MSG(http_wait_body(f.http_port[i], "/projections/ships", "\"name\":\"ships\"", WAIT_S),
                  "node%d never had the projection", i);
        char path[4200], *text = NULL;
        size_t n;
        snprintf(path, sizeof path, "%s/factum%d/connectors/ship.secret", test_dir(), i);
        CHECK_MSG(io_read_file(path, &text, &n) == 0 && strstr(text, SECRET_NEW), "node%d: no secrets in %s", i, path);
        free(text);
    }
    enum { PER = 10 };
    long long last = 0;
    for (int i = 0; i < PER; i++) {
        char body[256];
        if (i == PER / 2) { /* half delivered, then the leader goes */
            wait_delivered("ship", 1, PER / 2);
            srv_stop(&f.node[leader], SIGKILL);
            alive[leader] = false;
        }
        snprintf(body, sizeof body,
                 "{\"specversion\":\"1.0\",\"id\":\"made-%d\",\"type\":\"Made\",\"source\":\"/t\",\"data\":{\"i\":%d}}",
                 i, i);
        CHECK_MSG(post_anywhere(&f, alive, "ship-0", body, &last), "event %d was not acknowledged", i);
    }
    wait_delivered("ship", 1, PER);
    CHECK_EQ(atomic_load(&rx.bad_signatures), 0);
    CHECK_EQ(atomic_load(&rx.unsigned_requests), 0);
    int next = wait_leader(&f, alive), other = -1;
    CHECK(next >= 0);
    for (int i = 0; i < NODES; i++) {
        if (!alive[i]) continue;
        if (i != next) other = i;
        char q[200];
        snprintf(q, sizeof q, "{\"sql\":\"SELECT count(*) FROM t\",\"min_position\":%lld}", last);
        char *got = http_body(f.http_port[i], "POST", "/projections/ships/query", JS, q, 200);
        CHECK_MSG(strstr(got, "\"rows\":[[10]]"), "node%d: %s", i, got);
        free(got);
    }
    /* deletions on the new leader reach the other node: the sink's secrets file goes too */
    expect_status(f.http_port[next], "DELETE", "/connectors/ship", NULL, NULL, 200, "\"deleted\":true");
    expect_status(f.http_port[next], "DELETE", "/projections/ships", NULL, NULL, 200, "\"deleted\":true");
    CHECK(http_wait_body(f.http_port[other], "/connectors", "[]", WAIT_S));
    CHECK(http_wait_body(f.http_port[other], "/projections", "[]", WAIT_S));
    char path[4200];
    snprintf(path, sizeof path, "%s/factum%d/connectors/ship.secret", test_dir(), other);
    for (int tries = 0; tries < WAIT_S * 10 && access(path, F_OK) == 0; tries++)
        usleep(100000);
    CHECK_MSG(access(path, F_OK) != 0, "%s is still there", path);
    cluster_down(&f, alive);
}
