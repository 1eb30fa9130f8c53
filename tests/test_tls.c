/*
 * test_tls.c — HTTPS (`factum serve --tls-cert --tls-key`) against the real curl and openssl
 * commands, the C client and the CLI. Each test makes its own CA and two server certificates
 * for 127.0.0.1 and localhost with the openssl command, in its folder. What is asserted: answers
 * over TLS with the CA; pipelined requests that arrive in one read all answered (what OpenSSL
 * holds decrypted is not seen by epoll); no answer without the CA, over TLS 1.1, or in plain
 * HTTP; megabyte bodies and a long catch-up whole (writes the socket cannot take at once); a
 * certificate reloaded on SIGHUP while an SSE subscriber stays connected and still gets events;
 * half-given or unusable TLS options refused before anything is made; a connection that never
 * finishes its handshake (silent, or half a ClientHello) closed by the header timeout while
 * others are served.
 */
#include "test_server.h"

#include "factum_client.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char pki[300], data[300]; /* the certificates' folder, the server's data folder */

/* Runs a shell line in the certificates' folder: its exit code, stdout in out (when cap), stderr
   in the file cmd.err there. */
static int vrun(char *out, size_t cap, const char *fmt, va_list ap) {
    char what[2048], cmd[4096];
    vsnprintf(what, sizeof what, fmt, ap);
    snprintf(cmd, sizeof cmd, "cd %s && (%s) 2>cmd.err", pki, what);
    return test_run(cmd, out, cap);
}

static int run(char *out, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int run(char *out, size_t cap, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int rc = vrun(out, cap, fmt, ap);
    va_end(ap);
    return rc;
}

/* The same for a line that must succeed. */
static void sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void sh(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int rc = vrun(NULL, 0, fmt, ap);
    va_end(ap);
    CHECK_MSG(rc == 0, "a setup command failed (%d): %s", rc, fmt);
}

/* A CA (ca.pem) and two certificates it signed for 127.0.0.1 and localhost: one.pem/one.key
   (serial 1001 = 0x3E9, CN factum-one) and two.pem/two.key (serial 2002 = 0x7D2, CN
   factum-two). The server is given live.pem/live.key, copies of one's. */
static void make_pki(void) {
    snprintf(pki, sizeof pki, "%s/pki", test_dir());
    snprintf(data, sizeof data, "%s/data", test_dir());
    CHECK(mkdir(pki, 0755) == 0);
    static const char ec[] = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";
    sh("openssl req -x509 %s -keyout ca.key -out ca.pem -days 2 -subj '/CN=Factum test CA'", ec);
    sh("echo 'subjectAltName=IP:127.0.0.1,DNS:localhost' > san.cnf");
    const char *names[] = {"one", "two"};
    for (int i = 0; i < 2; i++)
        sh("openssl req %s -keyout %s.key -out %s.csr -subj '/CN=factum-%s' && openssl x509 -req -in %s.csr "
           "-CA ca.pem -CAkey ca.key -set_serial %d -days 2 -extfile san.cnf -out %s.pem",
           ec, names[i], names[i], names[i], names[i], 1001 * (i + 1), names[i]);
    sh("cp one.pem live.pem && cp one.key live.key");
}

/* The server on live.pem/live.key, with `more` options (NULL: none). */
static srv tls_start_with(const char *log, const char *more) {
    char extra[1024];
    snprintf(extra, sizeof extra, "--tls-cert %s/live.pem --tls-key %s/live.key %s", pki, pki, more ? more : "");
    return srv_start_log(data, extra, log);
}

static srv tls_start(const char *log) { return tls_start_with(log, NULL); }

/* Whether the file `name` in the certificates' folder (or the path, when absolute) holds want. */
static bool file_has(const char *name, const char *want) {
    char path[600], text[16384] = "";
    snprintf(path, sizeof path, name[0] == '/' ? "%s" : "%s/%s", name[0] == '/' ? name : pki, name);
    FILE *f = fopen(path, "r");
    if (!f) return false;
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = 0;
    return strstr(text, want) != NULL;
}

/* Waits until the file at path holds want: true, or false after 10 s. */
static bool wait_file(const char *path, const char *want) {
    for (int i = 0; i < 200; i++) {
        if (file_has(path, want)) return true;
        usleep(50000);
    }
    return false;
}

/* Starts cmd (exec'd by sh, in the certificates' folder) with its stdout on a pipe (*fd). */
static pid_t spawn(const char *cmd, int *fd) {
    int p[2];
    CHECK(pipe(p) == 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        dup2(p[1], 1);
        close(p[0]);
        close(p[1]);
        if (chdir(pki)) _exit(127);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    close(p[1]);
    *fd = p[0];
    return pid;
}

/* Reads fd until what came holds want: true, or false at its end or after 10 s of silence. */
static bool read_until(int fd, buf_t *seen, const char *want) {
    for (;;) {
        buf_append(seen, "", 1);
        seen->len--;
        if (strstr(seen->ptr, want)) return true;
        struct pollfd pfd = {fd, POLLIN, 0};
        char chunk[4096];
        if (poll(&pfd, 1, 10000) != 1) return false;
        ssize_t n = read(fd, chunk, sizeof chunk);
        if (n <= 0) return false;
        buf_append(seen, chunk, (size_t)n);
    }
}

/* The serial and subject of the certificate a new connection is shown, verified with the CA. */
static void served_cert(int port, char *out, size_t cap) {
    CHECK_EQ(run(out, cap,
                 "openssl s_client -connect 127.0.0.1:%d -CAfile ca.pem -verify_return_error </dev/null "
                 "| openssl x509 -noout -serial -subject",
                 port),
             0);
}

TEST(https_answers_curl_with_the_ca_and_refuses_tls_1_1_plain_http_and_strangers) {
    make_pki();
    srv s = tls_start(NULL);
    char out[8192];
    CHECK_EQ(run(out, sizeof out, "curl -sS --cacert ca.pem https://127.0.0.1:%d/health", s.port), 0);
    CHECK_MSG(strstr(out, "\"status\":\"ok\""), "%s", out);
    CHECK_EQ(run(out, sizeof out,
                 "curl -sS --cacert ca.pem -w ' %%{http_code}' -H 'Content-Type: application/json' "
                 "-d '{\"type\":\"Paid\",\"data\":{\"n\":1}}' https://localhost:%d/streams/order-1",
                 s.port),
             0);
    CHECK_MSG(strstr(out, "\"revision\":0") && strstr(out, " 201"), "%s", out);
    CHECK_EQ(run(out, sizeof out, "curl -sS --cacert ca.pem https://127.0.0.1:%d/streams/order-1", s.port), 0);
    CHECK_MSG(strstr(out, "\"type\":\"Paid\""), "%s", out);
    /* TLS 1.2 is the oldest taken; 1.1, offered by a client that allows it, is refused by the
       server (its protocol_version alert, not the client's own refusal). */
    CHECK_EQ(
        run(out, sizeof out, "curl -sS --cacert ca.pem --tlsv1.2 --tls-max 1.2 https://127.0.0.1:%d/health", s.port),
        0);
    CHECK_EQ(run(out, sizeof out,
                 "curl -sS --cacert ca.pem --tlsv1.1 --tls-max 1.1 --ciphers DEFAULT@SECLEVEL=0 "
                 "https://127.0.0.1:%d/health",
                 s.port),
             35);
    CHECK_MSG(file_has("cmd.err", "alert protocol version") && !out[0], "%s", out);
    /* A client that does not know the CA refuses the certificate. */
    CHECK_EQ(run(out, sizeof out, "curl -sS https://127.0.0.1:%d/health", s.port), 60);
    CHECK(!out[0]);
    /* Plain HTTP on the TLS port: no HTTP answer, and the connection is closed. */
    int fd = http_connect(s.port);
    static const char plain[] = "GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n";
    http_send(fd, plain, sizeof plain - 1);
    char got[4096];
    size_t len = 0;
    ssize_t n;
    while ((n = recv(fd, got + len, sizeof got - len, 0)) > 0 && len < sizeof got)
        len += (size_t)n;
    CHECK_MSG(n == 0, "the connection was not closed (recv: %zd)", n);
    CHECK(!memmem(got, len, "HTTP/", 5));
    close(fd);
    CHECK_EQ(run(out, sizeof out, "curl -sS --cacert ca.pem https://127.0.0.1:%d/health", s.port), 0);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}

/* Three requests as three TLS records, sent with one send(): the server's first read takes them
   all, and OpenSSL holds what its first SSL_read did not return, where epoll cannot see it. The
   first is an append, so the others wait while it is in flight; the last asks to close. */
TEST(pipelined_requests_that_arrive_in_one_read_are_all_answered_over_tls) {
    make_pki();
    srv s = tls_start(NULL);
    char ca[400];
    snprintf(ca, sizeof ca, "%s/ca.pem", pki);
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    CHECK(ctx && SSL_CTX_load_verify_locations(ctx, ca, NULL) == 1);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    int fd = http_connect(s.port);
    SSL *ssl = SSL_new(ctx);
    CHECK(ssl && SSL_set_fd(ssl, fd) == 1 && SSL_connect(ssl) == 1);
    BIO *held = BIO_new(BIO_s_mem());
    SSL_set0_wbio(ssl, held); /* records collect here until sent at once */
    static const char *const reqs[] = {
        "POST /streams/pipe-1 HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: "
        "14\r\n\r\n"
        "{\"type\":\"One\"}",
        "POST /streams/pipe-1 HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: "
        "14\r\n\r\n"
        "{\"type\":\"Two\"}",
        "GET /streams/pipe-1 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    };
    for (size_t i = 0; i < ARRAY_LEN(reqs); i++)
        CHECK(SSL_write(ssl, reqs[i], (int)strlen(reqs[i])) == (int)strlen(reqs[i]));
    char *bytes;
    long n = BIO_get_mem_data(held, &bytes);
    CHECK(n > 0);
    http_send(fd, bytes, (size_t)n);
    buf_t got = {0};
    char chunk[4096];
    int r;
    while ((r = SSL_read(ssl, chunk, sizeof chunk)) > 0) /* to the close (a 10 s receive timeout) */
        buf_append(&got, chunk, (size_t)r);
    buf_append(&got, "", 1);
    const char *second = strstr(got.ptr, "HTTP/1.1 201");
    CHECK_MSG(second && (second = strstr(second + 1, "HTTP/1.1 201")) && strstr(second, "HTTP/1.1 200"), "answers: %s",
              got.ptr);
    CHECK_MSG(strstr(second, "\"type\":\"One\"") && strstr(second, "\"type\":\"Two\""), "answers: %s", got.ptr);
    buf_free(&got);
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    close(fd);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}

static factum_event_t json_event(const char *type, const char *json) {
    return (factum_event_t){.type = str_c(type), .data = str_c(json), .data_format = FACTUM_DATA_JSON};
}

TEST(the_c_client_and_the_cli_speak_https_and_verify_the_server_against_the_ca) {
    make_pki();
    srv s = tls_start(NULL);
    char url[64], ca[400], out[8192];
    snprintf(url, sizeof url, "https://127.0.0.1:%d", s.port);
    snprintf(ca, sizeof ca, "%s/ca.pem", pki);
    factum_client_t *good, *stranger;
    factum_error_t err;
    CHECK_RC(factum_client_new(url, &good, &err), 0);
    CHECK_RC(factum_client_set_cacert(good, "/nonexistent/ca.pem", &err), FACTUM_EINVAL);
    CHECK_MSG(strstr(err.message, "/nonexistent/ca.pem"), "%s", err.message);
    CHECK_RC(factum_client_set_cacert(good, ca, &err), 0);
    factum_event_t ev[2] = {json_event("Placed", "{\"n\":1}"), json_event("Paid", "{\"n\":2}")};
    factum_append_result_t r;
    CHECK_RC(factum_client_append(good, "order-2", FACTUM_EXPECT_NO_STREAM, ev, 2, &r, &err), 0);
    CHECK(r.first_revision == 0 && r.last_revision == 1);
    /* Without the CA: refused before anything is sent, and nothing is appended. */
    CHECK_RC(factum_client_new(url, &stranger, &err), 0);
    CHECK_RC(factum_client_append(stranger, "order-2", FACTUM_EXPECT_ANY, ev, 1, &r, &err), FACTUM_EUNREACHABLE);
    CHECK_MSG(strstr(err.message, "certificate"), "%s", err.message);
    factum_client_free(stranger);
    usleep(1500000); /* idle past a second: the server gives back the connection's TLS buffers */
    factum_query_t q = {.limit = 10};
    factum_events_t *set;
    uint64_t next;
    CHECK_RC(factum_client_read(good, "order-2", &q, &set, &next, &err), 0);
    CHECK_EQ(factum_events_count(set), 2);
    CHECK(str_eq(factum_events_get(set, 1)->type, str_c("Paid")) &&
          str_eq(factum_events_get(set, 1)->data, str_c("{\"n\":2}")));
    factum_events_free(set);
    /* The CLI: --cacert, $FACTUM_CACERT, the option over the variable; without either, exit 5. */
    const char *bin = test_bin();
    CHECK_EQ(run(out, sizeof out, "%s --server %s --cacert ca.pem append order-2 Shipped '{}'", bin, url), 0);
    CHECK_EQ(run(out, sizeof out, "FACTUM_CACERT=ca.pem %s --server %s read order-2", bin, url), 0);
    CHECK_MSG(strstr(out, "\"type\":\"Shipped\""), "%s", out);
    CHECK_EQ(run(out, sizeof out, "FACTUM_CACERT=/nonexistent %s read order-2 --server %s --cacert ca.pem", bin, url),
             0);
    CHECK_EQ(run(out, sizeof out, "%s --server %s read order-2", bin, url), 5);
    CHECK(file_has("cmd.err", "certificate"));
    /* tail subscribes over TLS with the CA and follows live. */
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "exec %s --server %s --cacert ca.pem tail order-2 --from 0 2>/dev/null", bin, url);
    int fd;
    pid_t tail = spawn(cmd, &fd);
    buf_t seen = {0};
    CHECK_MSG(read_until(fd, &seen, "\"type\":\"Shipped\""), "tail printed: %s", seen.ptr);
    factum_event_t late = json_event("Delivered", "{}");
    CHECK_RC(factum_client_append(good, "order-2", FACTUM_EXPECT_ANY, &late, 1, &r, &err), 0);
    CHECK_MSG(read_until(fd, &seen, "\"type\":\"Delivered\""), "tail printed: %s", seen.ptr);
    kill(tail, SIGTERM);
    waitpid(tail, NULL, 0);
    close(fd);
    buf_free(&seen);
    factum_client_free(good);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}

/* Counts a subscription's events, each the next position, until `want`. */
typedef struct counted {
    uint64_t n, want;
    bool in_order;
} counted;

static int count_event(void *ctx, const factum_event_t *e) {
    counted *k = ctx;
    if (!e) return 0; /* caught up: more may still come */
    k->in_order = k->in_order && e->position == k->n;
    if (k->n == 0) usleep(300000); /* so the server's writes fill the socket and wait (no assertion on time) */
    return ++k->n >= k->want;
}

TEST(megabyte_bodies_and_a_long_catch_up_cross_tls_whole) {
    make_pki();
    srv s = tls_start(NULL);
    char url[64], ca[400];
    snprintf(url, sizeof url, "https://127.0.0.1:%d", s.port);
    snprintf(ca, sizeof ca, "%s/ca.pem", pki);
    factum_client_t *c;
    factum_error_t err;
    CHECK_RC(factum_client_new(url, &c, &err), 0);
    CHECK_RC(factum_client_set_cacert(c, ca, &err), 0);
    enum { BATCHES = 8, PER = 1000 };
    static char json[PER][960];
    static factum_event_t ev[PER];
    for (int i = 0; i < PER; i++) {
        snprintf(json[i], sizeof json[i], "{\"i\":%d,\"pad\":\"%0900d\"}", i, i);
        ev[i] = json_event("Big", json[i]);
    }
    factum_append_result_t r;
    for (int b = 0; b < BATCHES; b++) /* about 940 KB each, under the 1 MiB limit */
        CHECK_RC(factum_client_append(c, "big-1", FACTUM_EXPECT_ANY, ev, PER, &r, &err), 0);
    CHECK_EQ(r.last_position, BATCHES * PER - 1);
    /* Some 7.5 MB of SSE from position 0: the server writes far more than the socket takes. */
    counted k = {.want = BATCHES * PER, .in_order = true};
    factum_query_t q = {.from = 0};
    CHECK_RC(factum_client_subscribe(c, NULL, &q, count_event, &k, &err), 0);
    CHECK(k.n == BATCHES * PER && k.in_order);
    factum_client_free(c);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}

TEST(sighup_reloads_the_certificate_for_new_connections_while_an_sse_subscriber_stays) {
    make_pki();
    char log[400], out[8192], cmd[2048];
    snprintf(log, sizeof log, "%s/serve.log", test_dir());
    srv s = tls_start(log);
    served_cert(s.port, out, sizeof out);
    CHECK_MSG(strstr(out, "serial=03E9") && strstr(out, "factum-one"), "%s", out);
    /* A subscriber of $all over TLS, caught up. */
    snprintf(cmd, sizeof cmd, "exec curl -sSN --cacert ca.pem -H 'Accept: text/event-stream' https://127.0.0.1:%d/all",
             s.port);
    int fd;
    pid_t sub = spawn(cmd, &fd);
    buf_t seen = {0};
    CHECK_MSG(read_until(fd, &seen, "event: caught-up"), "the subscriber got: %s", seen.ptr);
    usleep(1500000); /* idle past a second: its TLS buffers are given back, and taken again below */
    /* The new certificate: new connections are shown it, the subscriber stays and gets events. */
    sh("cp two.pem live.pem && cp two.key live.key");
    kill(s.pid, SIGHUP);
    CHECK(wait_file(log, "TLS certificate reloaded"));
    served_cert(s.port, out, sizeof out);
    CHECK_MSG(strstr(out, "serial=07D2") && strstr(out, "factum-two"), "%s", out);
    const char *append = "curl -sS --cacert ca.pem -H 'Content-Type: application/json' -d '{\"type\":\"%s\"}' "
                         "https://127.0.0.1:%d/streams/order-3";
    snprintf(cmd, sizeof cmd, append, "AfterReload", s.port);
    CHECK_EQ(run(out, sizeof out, "%s", cmd), 0);
    CHECK_MSG(read_until(fd, &seen, "\"type\":\"AfterReload\""), "the subscriber got: %s", seen.ptr);
    CHECK_EQ(waitpid(sub, NULL, WNOHANG), 0);
    /* A reload from a broken file keeps the certificate in use, and says why. */
    sh("echo 'not a certificate' > live.pem");
    kill(s.pid, SIGHUP);
    CHECK(wait_file(log, "keeping the TLS certificate in use"));
    CHECK(file_has(log, "live.pem"));
    served_cert(s.port, out, sizeof out);
    CHECK_MSG(strstr(out, "serial=07D2"), "%s", out);
    snprintf(cmd, sizeof cmd, append, "AfterBadReload", s.port);
    CHECK_EQ(run(out, sizeof out, "%s", cmd), 0);
    CHECK_MSG(read_until(fd, &seen, "\"type\":\"AfterBadReload\""), "the subscriber got: %s", seen.ptr);
    CHECK_EQ(waitpid(sub, NULL, WNOHANG), 0);
    kill(sub, SIGTERM);
    waitpid(sub, NULL, 0);
    close(fd);
    buf_free(&seen);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}

/* Whether the server closes fd (what it sends before, such as an alert, is read and dropped):
   true at the end of the stream or a reset, false when nothing came for the receive timeout (10 s). */
static bool closed_by_server(int fd) {
    char junk[4096];
    ssize_t n;
    while ((n = recv(fd, junk, sizeof junk, 0)) > 0)
        ;
    return n == 0 || errno == ECONNRESET;
}

/* A connection that never finishes its handshake holds a place like any other: the header
   timeout closes it, whether it sent nothing or half a ClientHello, while other clients are
   served. */
TEST(a_tls_connection_that_sends_nothing_or_half_a_client_hello_is_closed_after_the_header_timeout) {
    make_pki();
    srv s = tls_start_with(NULL, "--header-timeout 300");
    int silent = http_connect(s.port), half = http_connect(s.port);
    /* A TLS record header announcing 512 bytes of handshake, a ClientHello's first bytes, then no more. */
    static const char hello[] = "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\x00\x01\x02\x03";
    http_send(half, hello, sizeof hello - 1);
    char out[8192];
    CHECK_EQ(run(out, sizeof out, "curl -sS --cacert ca.pem https://127.0.0.1:%d/health", s.port), 0);
    CHECK_MSG(strstr(out, "\"status\":\"ok\""), "%s", out);
    CHECK_MSG(closed_by_server(silent), "a silent connection was not closed: %s", strerror(errno));
    CHECK_MSG(closed_by_server(half), "half a ClientHello was not closed: %s", strerror(errno));
    close(silent);
    close(half);
    CHECK_EQ(run(out, sizeof out, "curl -sS --cacert ca.pem https://127.0.0.1:%d/health", s.port), 0);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}

TEST(serve_refuses_half_given_or_unusable_tls_files_before_making_anything) {
    make_pki();
    sh("echo 'not a certificate' > junk.pem");
    char out[4096];
    const char *bin = test_bin();
    static const struct {
        const char *opts, *says;
        int rc;
    } bad[] = {
        {"--tls-cert one.pem", "--tls-cert and --tls-key go together", 2},
        {"--tls-key one.key", "--tls-cert and --tls-key go together", 2},
        {"--tls-cert missing.pem --tls-key one.key", "cannot read the TLS certificate missing.pem", 1},
        {"--tls-cert one.pem --tls-key missing.key", "cannot read the TLS key missing.key", 1},
        {"--tls-cert junk.pem --tls-key one.key", "cannot load the TLS certificate junk.pem", 1},
        {"--tls-cert one.pem --tls-key two.key", "TLS key two.key", 1},
    };
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        CHECK_EQ(run(out, sizeof out, "%s --data-dir %s serve --listen 127.0.0.1:0 %s", bin, data, bad[i].opts),
                 bad[i].rc);
        CHECK_MSG(file_has("cmd.err", bad[i].says), "%s: stderr lacks '%s'", bad[i].opts, bad[i].says);
        struct stat st;
        CHECK_MSG(stat(data, &st) != 0, "%s made the data folder", bad[i].opts);
    }
    /* SIGHUP on a plain HTTP server only says there is nothing to reload. */
    char log[400];
    snprintf(log, sizeof log, "%s/serve.log", test_dir());
    srv s = srv_start_log(data, NULL, log);
    kill(s.pid, SIGHUP);
    CHECK(wait_file(log, "no TLS certificate to reload"));
    expect_status(s.port, "GET", "/health", NULL, NULL, 200, NULL);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}
