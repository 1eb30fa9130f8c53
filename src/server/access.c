/*
 * access.c — the access log: one line per answered request, off unless --access-log names a
 * file ("-": stdout), in the Common Log Format with the key id and the time taken added, or as
 * JSON (--access-log-format json). A loop gathers its lines in a buffer and writes them with
 * one write(2) at the end of its turn (or when 64 KiB wait), so logging costs no syscall per
 * request and lines never mix. For logrotate, SIGHUP and SIGUSR1 open the file again under its
 * name: the new descriptor is dup2'd onto the old number, which the loops keep using. A
 * request slower than --slow-request-ms is also logged at warn, with its times.
 */
#include "server.h"

#include "api.h"

#include "../base/json.h"
#include "../base/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#define ACCESS_FLUSH (64u << 10)

static int open_log(const char *path) {
    if (!strcmp(path, "-")) return dup(1);
    return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
}

int access_open(server *s, factum_error_t *err) {
    s->access_fd = -1;
    if (!s->cfg.access_log) return 0;
    if ((s->access_fd = open_log(s->cfg.access_log)) < 0)
        return err_set(err, FACTUM_EIO, "cannot open the access log %s: %s", s->cfg.access_log, strerror(errno));
    return 0;
}

void access_reopen(server *s) {
    if (s->access_fd < 0 || !strcmp(s->cfg.access_log, "-")) return;
    int fd = open_log(s->cfg.access_log);
    if (fd < 0) {
        log_msg(LOG_LEVEL_ERROR, "cannot open the access log %s again (keeping the old file): %s", s->cfg.access_log,
                strerror(errno));
        return;
    }
    dup3(fd, s->access_fd, O_CLOEXEC); /* atomic: a loop's write goes to the old file or the new */
    close(fd);
    log_msg(LOG_LEVEL_INFO, "access log %s opened again", s->cfg.access_log);
}

void access_close(server *s) {
    if (s->access_fd >= 0) close(s->access_fd);
    s->access_fd = -1;
}

void access_flush(loop *l) {
    if (!l->access.len) return;
    for (size_t off = 0; off < l->access.len;) {
        ssize_t w = write(l->srv->access_fd, l->access.ptr + off, l->access.len - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) break; /* a full disk loses log lines, never requests */
        off += (size_t)w;
    }
    l->access.len = 0;
}

void access_request(conn *c, int status, size_t bytes) {
    server *s = c->l->srv;
    if (!c->req || (s->access_fd < 0 && !s->cfg.slow_request_ms)) return;
    const http_req *h = &c->req->h;
    uint64_t took_us = (clock_mono_ns() - c->req->started_ns) / 1000;
    /* a long poll that waited for events is not slow */
    if (s->cfg.slow_request_ms && c->state != C_WAIT && took_us >= (uint64_t)s->cfg.slow_request_ms * 1000)
        log_msg(LOG_LEVEL_WARN, "slow request: %.*s %.*s from %s answered %d after %.1f ms (--slow-request-ms %u)",
                (int)MIN(h->method.len, 16), h->method.ptr, (int)MIN(h->target.len, 512), h->target.ptr, guard_peer(c),
                status, (double)took_us / 1000, s->cfg.slow_request_ms);
    if (s->access_fd < 0) return;
    buf_t *b = &c->l->access;
    int64_t us = clock_realtime_us();
    time_t t = (time_t)(us / 1000000);
    struct tm tm;
    gmtime_r(&t, &tm);
    char when[40];
    const char *key = c->req_key[0] ? c->req_key : "-";
    if (s->cfg.access_json) {
        strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
        buf_printf(b, "{\"time\":\"%s.%06lldZ\",\"remote\":\"%s\",\"key\":\"%s\",\"method\":", when,
                   (long long)(us % 1000000), guard_peer(c), key);
        json_escape_lossy(b, h->method.ptr, h->method.len);
        buf_append(b, ",\"target\":", 10);
        json_escape_lossy(b, h->target.ptr, h->target.len);
        buf_printf(b, ",\"status\":%d,\"bytes\":%zu,\"duration_us\":%llu}\n", status, bytes,
                   (unsigned long long)took_us);
    } else {
        /* Common Log Format; the user field is the key id, and the seconds taken follow. A
           target is printed as sent, but for bytes that would break the line or the quotes. */
        strftime(when, sizeof when, "%d/%b/%Y:%H:%M:%S +0000", &tm);
        buf_printf(b, "%s - %s [%s] \"%.*s ", guard_peer(c), key, when, (int)h->method.len, h->method.ptr);
        for (size_t i = 0; i < h->target.len; i++) {
            unsigned char ch = (unsigned char)h->target.ptr[i];
            if (ch < 0x21 || ch == '"' || ch == '\\' || ch >= 0x7f)
                buf_printf(b, "\\x%02x", ch);
            else
                buf_append(b, &h->target.ptr[i], 1);
        }
        buf_printf(b, " HTTP/1.1\" %d %zu %llu.%06llu\n", status, bytes, (unsigned long long)(took_us / 1000000),
                   (unsigned long long)(took_us % 1000000));
    }
    if (b->len >= ACCESS_FLUSH) access_flush(c->l);
}
