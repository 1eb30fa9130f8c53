/*
 * tls.c — TLS for the server's connections (OpenSSL), and the byte I/O of every connection:
 * tls_recv and tls_send are recv and send on a plain connection and SSL_read and SSL_write on a
 * TLS one, with the same answers (bytes, 0 at the end, -1 with errno EAGAIN when nothing can
 * move now), so conn.c's reading, framing and SSE are the same over both.
 *
 * The server's context (server_tls) holds the SSL_CTX made from --tls-cert and --tls-key:
 * TLS 1.2 and 1.3 only, no renegotiation, ALPN http/1.1. tls_reload (SIGHUP, on the main thread)
 * builds a new one from the same files and swaps it in under the context's mutex; connections
 * made afterwards use it, open ones keep the SSL_CTX they were made with (OpenSSL counts its
 * references). A reload that fails keeps the old one.
 *
 * Non-blocking: a connection's SSL is in accept state from the start, so its first SSL_read runs
 * the handshake step by step as bytes arrive. An SSL_read may need the socket writable (a
 * handshake message, a key update's answer) and an SSL_write readable: c->tls_want records it
 * and conn.c asks epoll for that event too and retries on it. OpenSSL reads ahead (one recv
 * takes whatever has arrived, several records perhaps), so bytes it holds, decrypted or not yet
 * (SSL_has_pending), are read before conn_readable returns (tls_pending): epoll cannot see them,
 * and a request among them would wait for bytes that never come. SSL_write is retried with the
 * output buffer that may have moved and grown since (ACCEPT_MOVING_WRITE_BUFFER) and writes
 * record by record (ENABLE_PARTIAL_WRITE). A connection idle for a second gives its read and
 * write buffers back (tls_idle, from the loop's sweep); the next read or write takes new ones.
 */
#include "server.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

/* A connection this long without a byte in or out gives back its TLS buffers (up to 35 KB). Not
   SSL_MODE_RELEASE_BUFFERS, which frees and allocates them at every read and write: measured,
   it cost a fifth of the appends a TLS server answers. */
#define TLS_IDLE_MS 1000

struct server_tls {
    pthread_mutex_t mu; /* guards ctx: loops take it to make a connection's SSL, reload swaps it */
    SSL_CTX *ctx;
    char *cert, *key; /* the files, read again at each reload */
};

/* OpenSSL's reasons for the last failure, oldest first ("no such file", "no start line", ...);
   its error queue is emptied. */
static const char *ssl_reason(char *out, size_t cap) {
    size_t n = 0;
    out[0] = 0;
    for (unsigned long e; (e = ERR_get_error());) {
        const char *r = ERR_reason_error_string(e);
        if (r && n < cap && !strstr(out, r)) n += (size_t)snprintf(out + n, cap - n, "%s%s", n ? ", " : "", r);
    }
    if (!out[0]) snprintf(out, cap, "%s", "unknown error");
    return out;
}

/* A key with a passphrase cannot be asked for at a terminal: it fails to load instead. */
static int no_passphrase(char *buf, int size, int rwflag, void *ud) {
    (void)buf, (void)size, (void)rwflag, (void)ud;
    return 0;
}

/* Offers http/1.1 when the client lists it; otherwise no ALPN (HTTP/1.1 is all there is). */
static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
                       unsigned int inlen, void *ud) {
    (void)ssl, (void)ud;
    static const unsigned char ours[] = "\x08http/1.1";
    unsigned char *sel;
    if (SSL_select_next_proto(&sel, outlen, ours, sizeof ours - 1, in, inlen) != OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

static int ctx_build(const char *cert, const char *key, SSL_CTX **out, factum_error_t *err) {
    char why[256];
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) return err_set(err, FACTUM_ENOMEM, "cannot make a TLS context: %s", ssl_reason(why, sizeof why));
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_read_ahead(ctx, 1); /* one recv takes what is there, not a record header first */
    SSL_CTX_set_default_passwd_cb(ctx, no_passphrase);
    SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
    int rc = 0;
    const char *unreadable = access(cert, R_OK) ? cert : access(key, R_OK) ? key : NULL;
    if (unreadable)
        rc = err_set(err, FACTUM_EINVAL, "cannot read the TLS %s %s: %s", unreadable == cert ? "certificate" : "key",
                     unreadable, strerror(errno));
    else if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1)
        rc = err_set(err, FACTUM_EINVAL, "cannot load the TLS certificate %s: %s", cert, ssl_reason(why, sizeof why));
    else if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)
        rc = err_set(err, FACTUM_EINVAL, "cannot load the TLS key %s: %s", key, ssl_reason(why, sizeof why));
    else if (SSL_CTX_check_private_key(ctx) != 1)
        rc = err_set(err, FACTUM_EINVAL, "the TLS key %s does not match the certificate %s: %s", key, cert,
                     ssl_reason(why, sizeof why));
    if (rc) {
        SSL_CTX_free(ctx);
        return rc;
    }
    *out = ctx;
    return 0;
}

int tls_open(const char *cert, const char *key, server_tls **out, factum_error_t *err) {
    *out = NULL;
    server_tls *t = calloc(1, sizeof *t);
    if (!t) return err_set(err, FACTUM_ENOMEM, "out of memory");
    pthread_mutex_init(&t->mu, NULL);
    if (!(t->cert = strdup(cert)) || !(t->key = strdup(key))) {
        tls_close(t);
        return err_set(err, FACTUM_ENOMEM, "out of memory");
    }
    int rc = ctx_build(cert, key, &t->ctx, err);
    if (rc) {
        tls_close(t);
        return rc;
    }
    *out = t;
    return 0;
}

int tls_reload(server_tls *t, factum_error_t *err) {
    SSL_CTX *fresh, *old;
    int rc = ctx_build(t->cert, t->key, &fresh, err);
    if (rc) return rc;
    pthread_mutex_lock(&t->mu);
    old = t->ctx, t->ctx = fresh;
    pthread_mutex_unlock(&t->mu);
    SSL_CTX_free(old); /* freed for good when its last connection goes */
    return 0;
}

void tls_close(server_tls *t) {
    if (!t) return;
    SSL_CTX_free(t->ctx); /* NULL is fine */
    pthread_mutex_destroy(&t->mu);
    free(t->cert);
    free(t->key);
    free(t);
}

/* ---- connections ---- */

int tls_accept(conn *c, server_tls *t) {
    pthread_mutex_lock(&t->mu);
    SSL *ssl = SSL_new(t->ctx); /* holds a reference to the context of now */
    pthread_mutex_unlock(&t->mu);
    if (!ssl) {
        ERR_clear_error(); /* SSL_get_error wants an empty queue on this thread */
        return -1;
    }
    if (SSL_set_fd(ssl, c->fd) != 1) {
        SSL_free(ssl);
        ERR_clear_error();
        return -1;
    }
    SSL_set_accept_state(ssl);
    c->ssl = ssl;
    return 0;
}

/* What an SSL call that returned n <= 0 means: -1 with errno EAGAIN (retry on `want`), or 0
   (the end: close_notify, a reset, a protocol error; the connection is unusable). */
static ssize_t ssl_outcome(conn *c, int n, uint8_t want_in, uint8_t want_out) {
    switch (SSL_get_error(c->ssl, n)) {
    case SSL_ERROR_WANT_READ: c->tls_want |= want_in; break;
    case SSL_ERROR_WANT_WRITE: c->tls_want |= want_out; break;
    case SSL_ERROR_ZERO_RETURN: return 0;
    default:
        c->tls_broken = true; /* no close_notify after a fatal error */
        ERR_clear_error();
        return 0;
    }
    errno = EAGAIN;
    return -1;
}

ssize_t tls_recv(conn *c, void *p, size_t n) {
    if (!c->ssl) return recv(c->fd, p, n, 0);
    c->tls_want &= (uint8_t)~TLS_READ_WANTS_OUT;
    int r = SSL_read(c->ssl, p, (int)MIN(n, INT32_MAX));
    return r > 0 ? r : ssl_outcome(c, r, 0, TLS_READ_WANTS_OUT);
}

ssize_t tls_send(conn *c, const void *p, size_t n) {
    if (!c->ssl) return send(c->fd, p, n, MSG_NOSIGNAL);
    c->tls_want &= (uint8_t)~TLS_WRITE_WANTS_IN;
    int r = SSL_write(c->ssl, p, (int)MIN(n, INT32_MAX));
    if (r > 0) return r;
    ssize_t out = ssl_outcome(c, r, TLS_WRITE_WANTS_IN, 0);
    if (out == 0) errno = EPIPE;
    return -1;
}

void tls_idle(conn *c, uint64_t now_ms) {
    if (c->ssl && now_ms - c->last_io_ms >= TLS_IDLE_MS) SSL_free_buffers(c->ssl); /* refused while they hold bytes */
}

bool tls_pending(conn *c) { return c->ssl && SSL_has_pending(c->ssl); }

void tls_end(conn *c) {
    if (!c->ssl) return;
    if (!c->tls_broken) SSL_shutdown(c->ssl); /* close_notify, once, without waiting for the peer's */
    SSL_free(c->ssl);
    ERR_clear_error();
    c->ssl = NULL;
}
