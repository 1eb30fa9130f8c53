/*
 * hclient.h — the small blocking HTTP/1.1 client the benchmark programs share: one kept-alive
 * connection to 127.0.0.1:port, a request, its response read by Content-Length. Included by
 * one .c file per program (static functions); link OpenSSL (-lssl -lcrypto).
 *
 * hclient_init reads the environment once: TOKEN, when set, goes with every request as
 * "Authorization: Bearer $TOKEN" (after the request line). A program speaks TLS to its server
 * by setting `tls` (hclient_tls) before it dials: the certificate is not verified (a benchmark
 * on loopback measures the cost of the encryption, not trust).
 */
#ifndef FACTUM_BENCH_HCLIENT_H
#define FACTUM_BENCH_HCLIENT_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int port;        /* of the Factum server */
static SSL_CTX *tls;    /* set: new connections speak TLS to it (hclient_tls) */
static char auth[1024]; /* "Authorization: Bearer ...\r\n" from $TOKEN, or "" */

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static void die(const char *msg) {
    fprintf(stderr, "bench: %s\n", msg);
    exit(1);
}

static int dial(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a)) die("cannot connect to the server");
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static void hclient_init(void) {
    const char *t = getenv("TOKEN");
    if (t && *t) snprintf(auth, sizeof auth, "Authorization: Bearer %s\r\n", t);
}

/* The client context for TLS connections (made once; inline: not every program speaks TLS). */
static inline SSL_CTX *hclient_tls(void) {
    static SSL_CTX *ctx;
    if (!ctx) {
        ctx = SSL_CTX_new(TLS_client_method());
        if (!ctx) die("cannot make a TLS context");
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
        SSL_CTX_set_read_ahead(ctx, 1);
    }
    return ctx;
}

/* A keep-alive connection with a response buffer. */
typedef struct hconn {
    int fd;
    SSL *ssl; /* NULL: plain */
    char *buf;
    size_t len, cap;
    char *req; /* a request with the token added */
    size_t req_cap;
} hconn;

/* A connection with a response buffer of cap bytes. */
static hconn *hconn_new(size_t cap) {
    hconn *c = calloc(1, sizeof *c);
    c->buf = malloc(cap);
    c->cap = cap;
    c->fd = dial();
    if (tls) {
        c->ssl = SSL_new(tls);
        if (!c->ssl || SSL_set_fd(c->ssl, c->fd) != 1 || SSL_connect(c->ssl) != 1) die("TLS handshake failed");
    }
    return c;
}

static void hconn_free(hconn *c) {
    if (c->ssl) SSL_free(c->ssl);
    close(c->fd);
    free(c->buf);
    free(c->req);
    free(c);
}

static ssize_t hconn_send(hconn *c, const char *p, size_t n) {
    return c->ssl ? SSL_write(c->ssl, p, (int)n) : send(c->fd, p, n, MSG_NOSIGNAL);
}

static ssize_t hconn_recv(hconn *c, char *p, size_t n) {
    return c->ssl ? SSL_read(c->ssl, p, (int)n) : recv(c->fd, p, n, 0);
}

/* Sends a request and reads its response; returns the status, body in c->buf (NUL-ended). */
static int roundtrip(hconn *c, const char *req, size_t n, const char **body) {
    const char *line_end = auth[0] ? memchr(req, '\n', n) : NULL;
    if (line_end) { /* the token after the request line, in one send */
        size_t head = (size_t)(line_end + 1 - req), al = strlen(auth);
        if (c->req_cap < n + al && !(c->req = realloc(c->req, c->req_cap = n + al))) die("out of memory");
        memcpy(c->req, req, head);
        memcpy(c->req + head, auth, al);
        memcpy(c->req + head + al, req + head, n - head);
        req = c->req, n += al;
    }
    for (size_t off = 0; off < n;) {
        ssize_t w = hconn_send(c, req + off, n - off);
        if (w <= 0) die("send failed");
        off += (size_t)w;
    }
    c->len = 0;
    char *end = NULL;
    size_t want = 0;
    for (;;) {
        if (c->len + 1 >= c->cap) die("a response is larger than the buffer");
        ssize_t r = hconn_recv(c, c->buf + c->len, c->cap - 1 - c->len);
        if (r <= 0) die("the server closed the connection");
        c->len += (size_t)r;
        c->buf[c->len] = 0;
        if (!end && (end = strstr(c->buf, "\r\n\r\n"))) {
            const char *cl = strcasestr(c->buf, "content-length:");
            want = (size_t)(end + 4 - c->buf) + (cl ? strtoul(cl + 15, NULL, 10) : 0);
        }
        if (end && c->len >= want) break;
    }
    if (body) *body = end + 4;
    return atoi(c->buf + 9);
}

#endif
