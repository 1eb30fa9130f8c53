/*
 * hclient.h — the small blocking HTTP/1.1 client the benchmark programs share: one kept-alive
 * connection to 127.0.0.1:port, a request, its response read by Content-Length. Included by
 * one .c file per program (static functions).
 */
#ifndef FACTUM_BENCH_HCLIENT_H
#define FACTUM_BENCH_HCLIENT_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int port; /* of the Factum server */

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

/* A keep-alive connection with a response buffer. */
typedef struct hconn {
    int fd;
    char *buf;
    size_t len, cap;
} hconn;

/* A connection with a response buffer of cap bytes. */
static hconn *hconn_new(size_t cap) {
    hconn *c = calloc(1, sizeof *c);
    c->buf = malloc(cap);
    c->cap = cap;
    c->fd = dial();
    return c;
}

static void hconn_free(hconn *c) {
    close(c->fd);
    free(c->buf);
    free(c);
}

/* Sends a request and reads its response; returns the status, body in c->buf (NUL-ended). */
static int roundtrip(hconn *c, const char *req, size_t n, const char **body) {
    for (size_t off = 0; off < n;) {
        ssize_t w = send(c->fd, req + off, n - off, MSG_NOSIGNAL);
        if (w <= 0) die("send failed");
        off += (size_t)w;
    }
    c->len = 0;
    char *end = NULL;
    size_t want = 0;
    for (;;) {
        if (c->len + 1 >= c->cap) die("a response is larger than the buffer");
        ssize_t r = recv(c->fd, c->buf + c->len, c->cap - 1 - c->len, 0);
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
