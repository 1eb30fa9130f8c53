/*
 * test_exposure.c — secure by default: a server on an address other machines reach starts only
 * with TLS and an admin key, or with --insecure (logged); on loopback anything goes.
 */
#include "test_server.h"

#include <signal.h>
#include <string.h>

/* A self-signed certificate for 127.0.0.1 in the test's folder: cert.pem, cert.key. */
static void make_cert(void) {
    char cmd[1024], out[4096];
    snprintf(cmd, sizeof cmd,
             "cd %s && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout cert.key "
             "-out cert.pem -days 2 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 2>&1",
             test_dir());
    CHECK_MSG(test_run(cmd, out, sizeof out) == 0, "openssl: %s", out);
}

/* `factum serve` on data folder d with the flags; its exit status, its output in out. It must
   refuse at once: a server that started is stopped by the test's time limit. */
static int serve_refused(const char *d, const char *flags, char *out, size_t cap) {
    char cmd[1536];
    snprintf(cmd, sizeof cmd, "%s serve --data-dir %s/%s %s 2>&1", test_bin(), test_dir(), d, flags);
    return test_run(cmd, out, cap);
}

static void make_admin(const char *d) {
    char cmd[1024], out[4096];
    snprintf(cmd, sizeof cmd, "%s --data-dir %s/%s key create --role admin 2>/dev/null", test_bin(), test_dir(), d);
    CHECK_MSG(test_run(cmd, out, sizeof out) == 0 && !strncmp(out, "fk_", 3), "key create: %s", out);
}

TEST(a_server_on_an_address_other_machines_reach_needs_tls_and_an_admin_key) {
    make_cert();
    char tls[1024], out[4096];
    snprintf(tls, sizeof tls, "--tls-cert %s/cert.pem --tls-key %s/cert.key", test_dir(), test_dir());
    /* Neither: refused, saying how to make a key. */
    CHECK_EQ(serve_refused("plain", "--listen 0.0.0.0:0", out, sizeof out), 1);
    CHECK_MSG(strstr(out, "refusing to serve 0.0.0.0") && strstr(out, "without TLS and without an admin key") &&
                  strstr(out, "key create --role admin") && strstr(out, "--insecure"),
              "%s", out);
    /* TLS without a key; a key without TLS (a writer key is not enough). */
    char flags[1536];
    snprintf(flags, sizeof flags, "--listen 0.0.0.0:0 %s", tls);
    CHECK_EQ(serve_refused("tls", flags, out, sizeof out), 1);
    CHECK_MSG(strstr(out, "without an admin key") && !strstr(out, "without TLS"), "%s", out);
    make_admin("keyed");
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s --data-dir %s/writer key create --role writer >/dev/null 2>&1", test_bin(),
             test_dir());
    CHECK_EQ(test_run(cmd, out, sizeof out), 0);
    CHECK_EQ(serve_refused("keyed", "--listen 0.0.0.0:0", out, sizeof out), 1);
    CHECK_MSG(strstr(out, "without TLS") && !strstr(out, "admin key"), "%s", out);
    snprintf(flags, sizeof flags, "--listen 0.0.0.0:0 %s", tls);
    CHECK_EQ(serve_refused("writer", flags, out, sizeof out), 1);
    CHECK_MSG(strstr(out, "without an admin key"), "%s", out);
    /* Both: it serves, over HTTPS, and wants the key. */
    char dir[600];
    snprintf(dir, sizeof dir, "%s/keyed", test_dir());
    snprintf(flags, sizeof flags, "--listen 0.0.0.0:0 %s", tls);
    srv s = srv_start(dir, flags);
    snprintf(cmd, sizeof cmd,
             "curl -s -o /dev/null -w '%%{http_code}' --cacert %s/cert.pem https://127.0.0.1:%d/streams", test_dir(),
             s.port);
    CHECK_EQ(test_run(cmd, out, sizeof out), 0);
    CHECK_MSG(!strcmp(out, "401"), "GET /streams without a key: %s", out);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}

TEST(insecure_serves_an_exposed_address_without_tls_or_keys_and_says_so_loudly) {
    char dir[600], log[700];
    snprintf(dir, sizeof dir, "%s/open", test_dir());
    snprintf(log, sizeof log, "%s/open.log", test_dir());
    srv s = srv_start_log(dir, "--listen 0.0.0.0:0 --insecure", log);
    expect_status(s.port, "GET", "/health", NULL, NULL, 200, NULL);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    char cmd[800], out[4096];
    snprintf(cmd, sizeof cmd, "cat %s", log);
    test_run(cmd, out, sizeof out);
    CHECK_MSG(strstr(out, "WARNING: --insecure") && strstr(out, "read and write everything"), "%s", out);
}

TEST(on_loopback_a_server_starts_without_tls_or_keys) {
    srv s = srv_start(test_dir(), "--listen 127.0.0.1:0");
    expect_status(s.port, "GET", "/health", NULL, NULL, 200, NULL);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}
