/*
 * bench_conn.c — `make bench`, connectors (issue 22). Against a running `factum serve` and a
 * PostgreSQL with wal_level=logical (bench/connectors.sh starts both), in one run:
 *
 *   1. HTTP sink: N events (100 streams) loaded first, then delivered to a receiver in this
 *      process (a socket server that answers 200 at once), timed from PUT /connectors until
 *      the receiver has counted them all: binary mode (one request per event), and structured
 *      batches of 100. Beside it, the hand loop: GET /all pages and one POST per event to the
 *      same receiver on a kept-alive connection (no retries, no record of progress).
 *   2. Outbox relay: 8 writers commit R rows, 10 per transaction, into an outbox table; timed
 *      from the first commit until the relay has appended them all. Beside it, the hand loop:
 *      poll the table (1,000 rows a page, oldest first), POST the page's rows as batches (one
 *      per run of one stream), then DELETE those rows — the usual poll-and-insert relay (polling
 *      by a serial column alone would miss rows of transactions that commit out of its order).
 */
#include "../src/base/base.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define STREAMS 100
#define WRITERS 8
#define PER_TX 10

static int port, rx_port;
static const char *pg;
static CURL *curl;
static buf_t got;
static _Atomic long received;

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void die(const char *msg) {
    fprintf(stderr, "bench-conn: %s\n", msg);
    exit(1);
}

static size_t sink(char *p, size_t sz, size_t n, void *ctx) {
    (void)ctx;
    buf_append(&got, p, sz * n);
    return sz * n;
}

/* One request to url; the status, with the body in `got`. */
static long req_url(const char *url, const char *method, const char *body, const char *ctype) {
    struct curl_slist *h = ctype ? curl_slist_append(NULL, ctype) : NULL;
    got.len = 0;
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, body ? (long)strlen(body) : 0L);
    curl_easy_setopt(curl, CURLOPT_HTTPGET, body ? 0L : 1L);
    if (!body) curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
    if (curl_easy_perform(curl) != CURLE_OK) die(url);
    curl_slist_free_all(h);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, NULL);
    buf_append(&got, "", 1);
    got.len--;
    long st;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &st);
    return st;
}

static long req(const char *method, const char *path, const char *body, const char *ctype) {
    char url[512];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
    return req_url(url, method, body, ctype);
}

/* A number after "key": in got. */
static long member(const char *key) {
    char k[64];
    snprintf(k, sizeof k, "\"%s\":", key);
    const char *p = strstr(got.ptr ? got.ptr : "", k);
    return p ? atol(p + strlen(k)) : -1;
}

/* ---- the receiver: answers 200 at once, counts events ---- */

static void *rx_conn(void *arg) {
    int fd = (int)(intptr_t)arg;
    size_t cap = 8 << 20, have = 0;
    char *buf = malloc(cap);
    for (;;) {
        char *end;
        while (!(end = memmem(buf, have, "\r\n\r\n", 4))) {
            ssize_t k = read(fd, buf + have, cap - have);
            if (k <= 0) goto out;
            have += (size_t)k;
        }
        size_t head = (size_t)(end - buf) + 4;
        const char *cl = memmem(buf, head, "Content-Length: ", 16);
        if (!cl) cl = memmem(buf, head, "content-length: ", 16);
        size_t body = cl ? (size_t)atol(cl + 16) : 0;
        while (have < head + body) {
            ssize_t k = read(fd, buf + have, cap - have);
            if (k <= 0) goto out;
            have += (size_t)k;
        }
        long n = 1;
        if (memmem(buf, head, "batch+json", 10)) {
            n = 0;
            for (const char *p = buf + head; (p = memmem(p, (size_t)(buf + head + body - p), "\"specversion\"", 13));
                 p += 13)
                n++;
        }
        atomic_fetch_add(&received, n);
        static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        if (write(fd, ok, sizeof ok - 1) < 0) goto out;
        memmove(buf, buf + head + body, have - head - body);
        have -= head + body;
    }
out:
    free(buf);
    close(fd);
    return NULL;
}

static void *rx_main(void *arg) {
    int lfd = (int)(intptr_t)arg;
    for (;;) {
        int fd = accept(lfd, NULL, NULL);
        if (fd < 0) continue;
        pthread_t t;
        pthread_create(&t, NULL, rx_conn, (void *)(intptr_t)fd);
        pthread_detach(t);
    }
    return NULL;
}

static void rx_start(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) || listen(fd, 64) || getsockname(fd, (struct sockaddr *)&a, &len))
        die("cannot listen");
    rx_port = ntohs(a.sin_port);
    pthread_t t;
    pthread_create(&t, NULL, rx_main, (void *)(intptr_t)fd);
    pthread_detach(t);
}

static void wait_received(long n) {
    while (atomic_load(&received) < n)
        usleep(2000);
}

/* ---- 1. the sink ---- */

static void load(int events) {
    buf_t b = {0};
    char path[64];
    for (int i = 0; i < events; i += 100) {
        b.len = 0;
        buf_append(&b, "[", 1);
        for (int k = 0; k < 100 && i + k < events; k++)
            buf_printf(&b,
                       "%s{\"specversion\":\"1.0\",\"type\":\"Deposited\",\"source\":\"/bench\",\"data\":{\"n\":%d,"
                       "\"pad\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}}",
                       k ? "," : "", i + k);
        buf_append(&b, "]", 1);
        buf_append(&b, "", 1);
        snprintf(path, sizeof path, "/streams/bs-%d", (i / 100) % STREAMS);
        if (req("POST", path, b.ptr, "Content-Type: application/cloudevents-batch+json") != 201) die("load failed");
    }
    buf_free(&b);
}

static double sink_case(const char *name, const char *extra, int events) {
    char path[64], body[512];
    snprintf(path, sizeof path, "/connectors/%s", name);
    snprintf(body, sizeof body,
             "{\"kind\":\"http-sink\",\"url\":\"http://127.0.0.1:%d/in\",\"allow_http\":true,"
             "\"source\":{\"category\":\"bs\"}%s}",
             rx_port, extra);
    atomic_store(&received, 0);
    double t0 = now_s();
    if (req("PUT", path, body, "Content-Type: application/json") != 201) die(got.ptr);
    wait_received(events);
    double dt = now_s() - t0;
    req("DELETE", path, NULL, NULL);
    return events / dt;
}

/* GET /all pages of the category, one POST per event to the receiver. */
static double sink_hand_loop(int events) {
    CURL *out = curl_easy_init();
    char url[128], page[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/in", rx_port);
    curl_easy_setopt(out, CURLOPT_URL, url);
    curl_easy_setopt(out, CURLOPT_WRITEFUNCTION, sink);
    atomic_store(&received, 0);
    double t0 = now_s();
    long from = 0, sent = 0;
    buf_t one = {0};
    while (sent < events) {
        snprintf(page, sizeof page, "/all?from=%ld&limit=1000&category=bs", from);
        if (req("GET", page, NULL, NULL) != 200) die("GET /all failed");
        char *text = strdup(got.ptr);
        long n = 0;
        for (char *p = strstr(text, "\"data\":"); p; p = strstr(p + 1, "\"data\":")) {
            char *e = strchr(p, '}');
            one.len = 0;
            buf_append(&one, p + 7, (size_t)(e + 1 - p - 7));
            buf_append(&one, "", 1);
            curl_easy_setopt(out, CURLOPT_POSTFIELDS, one.ptr);
            if (curl_easy_perform(out) != CURLE_OK) die("hand loop POST failed");
            n++;
        }
        const char *last = strstr(text, "\"position\":");
        for (const char *q = last; q; q = strstr(q + 1, "\"position\":"))
            last = q;
        if (!n || !last) die("hand loop read nothing");
        from = atol(last + 11) + 1;
        sent += n;
        free(text);
    }
    wait_received(events);
    buf_free(&one);
    curl_easy_cleanup(out);
    return events / (now_s() - t0);
}

/* ---- 2. the outbox ---- */

static void sql(PGconn *c, const char *q) {
    PGresult *r = PQexec(c, q);
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK) die(PQresultErrorMessage(r));
    PQclear(r);
}

typedef struct writer {
    int k, rows;
    const char *table;
} writer;

static void *write_rows(void *arg) {
    writer *w = arg;
    PGconn *c = PQconnectdb(pg);
    if (PQstatus(c) != CONNECTION_OK) die(PQerrorMessage(c));
    buf_t q = {0};
    for (int i = 0; i < w->rows; i += PER_TX) {
        q.len = 0;
        buf_printf(&q, "BEGIN; INSERT INTO %s (id, stream, type, payload) VALUES ", w->table);
        for (int k = 0; k < PER_TX; k++)
            buf_printf(&q, "%s('%s-%d-%d', 'ob%s-%d', 'Placed', '{\"n\":%d}')", k ? "," : "", w->table, w->k, i + k,
                       w->table, w->k, i + k);
        buf_printf(&q, "; COMMIT");
        buf_append(&q, "", 1);
        sql(c, q.ptr);
    }
    buf_free(&q);
    PQfinish(c);
    return NULL;
}

static void write_all(const char *table, int rows, pthread_t *t, writer *w) {
    for (int k = 0; k < WRITERS; k++) {
        w[k] = (writer){k, rows / WRITERS, table};
        pthread_create(&t[k], NULL, write_rows, &w[k]);
    }
}

static void join_all(pthread_t *t) {
    for (int k = 0; k < WRITERS; k++)
        pthread_join(t[k], NULL);
}

/* Waits until the connector has appended `rows`. */
static void wait_appended(const char *path, long rows) {
    for (;;) {
        req("GET", path, NULL, NULL);
        if (member("appended") >= rows) break;
        usleep(5000);
    }
}

/* The relay on `table` (publication `pub`), as connector `name`. Live: the writers commit while
   it follows, timed from the first commit to the last event. Backlog: it is defined paused, the
   writers commit every row (*write_rate: their rows/s with nothing reading), then it is resumed
   and timed until the last event. */
static double outbox_relay(int rows, const char *name, const char *pub, const char *table, bool backlog,
                           double *write_rate) {
    char body[1024], path[96];
    snprintf(body, sizeof body,
             "{\"kind\":\"postgres-outbox\",\"postgres\":\"%s\",\"publication\":\"%s\",\"table\":\"%s\","
             "\"columns\":{\"data\":\"payload\"}%s}",
             pg, pub, table, backlog ? ",\"paused\":true" : "");
    snprintf(path, sizeof path, "/connectors/%s", name);
    if (req("PUT", path, body, "Content-Type: application/json") != 201) die(got.ptr);
    pthread_t t[WRITERS];
    writer w[WRITERS];
    double t0 = now_s();
    write_all(table, rows, t, w);
    if (backlog) {
        join_all(t);
        *write_rate = rows / (now_s() - t0);
        char resume[128];
        snprintf(resume, sizeof resume, "%s/resume", path);
        t0 = now_s();
        if (req("POST", resume, "", NULL) != 200) die(got.ptr);
    }
    wait_appended(path, rows);
    double dt = now_s() - t0;
    if (!backlog) join_all(t);
    req("DELETE", path, NULL, NULL);
    return rows / dt;
}

/* Poll a page, POST its runs of one stream as batches, delete the page's rows; until `rows` are
   done. */
static void hand_drain(PGconn *c, const char *table, long rows) {
    char sel[200], del[200];
    snprintf(sel, sizeof sel, "SELECT seq, id, stream, type, payload FROM %s ORDER BY seq LIMIT 1000", table);
    snprintf(del, sizeof del, "DELETE FROM %s WHERE id = ANY($1::text[])", table);
    long done = 0;
    buf_t b = {0}, ids = {0};
    while (done < rows) {
        PGresult *r = PQexec(c, sel);
        if (PQresultStatus(r) != PGRES_TUPLES_OK) die(PQresultErrorMessage(r));
        int n = PQntuples(r);
        ids.len = 0;
        buf_append(&ids, "{", 1);
        for (int i = 0; i < n;) {
            int j = i;
            b.len = 0;
            buf_append(&b, "[", 1);
            while (j < n && !strcmp(PQgetvalue(r, j, 2), PQgetvalue(r, i, 2))) {
                buf_printf(
                    &b, "%s{\"specversion\":\"1.0\",\"id\":\"%s\",\"type\":\"%s\",\"source\":\"/outbox\",\"data\":%s}",
                    j > i ? "," : "", PQgetvalue(r, j, 1), PQgetvalue(r, j, 3), PQgetvalue(r, j, 4));
                buf_printf(&ids, "%s%s", ids.len > 1 ? "," : "", PQgetvalue(r, j, 1));
                j++;
            }
            buf_append(&b, "]", 1);
            buf_append(&b, "", 1);
            char path[96];
            snprintf(path, sizeof path, "/streams/%s", PQgetvalue(r, i, 2));
            long st = req("POST", path, b.ptr, "Content-Type: application/cloudevents-batch+json");
            if (st != 201 && st != 200) die(got.ptr);
            i = j;
        }
        buf_append(&ids, "}", 1);
        buf_append(&ids, "", 1);
        PQclear(r);
        if (n) {
            const char *params[] = {ids.ptr};
            r = PQexecParams(c, del, 1, NULL, params, NULL, NULL, 0);
            if (PQresultStatus(r) != PGRES_COMMAND_OK) die(PQresultErrorMessage(r));
            PQclear(r);
        } else {
            usleep(1000);
        }
        done += n;
    }
    buf_free(&b), buf_free(&ids);
}

/* The hand loop live (the writers commit while it polls), or on a backlog committed first. */
static double outbox_hand_loop(int rows, const char *table, bool backlog) {
    PGconn *c = PQconnectdb(pg);
    if (PQstatus(c) != CONNECTION_OK) die(PQerrorMessage(c));
    pthread_t t[WRITERS];
    writer w[WRITERS];
    double t0 = now_s();
    write_all(table, rows, t, w);
    if (backlog) join_all(t), t0 = now_s();
    hand_drain(c, table, rows);
    double dt = now_s() - t0;
    if (!backlog) join_all(t);
    PQfinish(c);
    return rows / dt;
}

int main(int argc, char **argv) {
    int events = 20000, rows = 40000;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--port"))
            port = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--pg"))
            pg = argv[i + 1];
        else if (!strcmp(argv[i], "--events"))
            events = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--rows"))
            rows = atoi(argv[i + 1]);
        else
            die("usage: bench-conn --port P --pg CONNINFO [--events N] [--rows R]");
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    events -= events % 100, rows -= rows % (WRITERS * PER_TX);
    curl = curl_easy_init();
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, sink);
    rx_start();
    load(events);
    printf("http sink: %d events of about 200 bytes in %d streams, to a receiver that answers 200 at once\n", events,
           STREAMS);
    double bin = sink_case("bench-bin", "", events);
    double bat = sink_case("bench-batch", ",\"mode\":\"structured\",\"batch_max\":100", events);
    double hand = sink_hand_loop(events);
    printf("  sink, binary (a request per event)      %9.0f ev/s  (x%.2f the hand loop)\n", bin, bin / hand);
    printf("  sink, structured batches of 100         %9.0f ev/s  (x%.2f the hand loop)\n", bat, bat / hand);
    printf("  hand loop: GET /all pages, a POST each  %9.0f ev/s\n", hand);
    if (!pg) return 0;
    PGconn *c = PQconnectdb(pg);
    if (PQstatus(c) != CONNECTION_OK) die(PQerrorMessage(c));
    for (int k = 1; k <= 4; k++) {
        char q[300];
        snprintf(q, sizeof q,
                 "CREATE TABLE outbox%.0d (seq bigserial, id text PRIMARY KEY, stream text, type text, payload jsonb)",
                 k == 1 ? 0 : k);
        sql(c, q);
    }
    sql(c, "CREATE PUBLICATION bench_pub FOR TABLE outbox; CREATE PUBLICATION bench_pub3 FOR TABLE outbox3");
    PQfinish(c);
    printf("outbox: %d writers commit %d rows, %d per transaction\n", WRITERS, rows, PER_TX);
    double writers;
    double relay = outbox_relay(rows, "bench-ob", "bench_pub", "outbox", false, &writers);
    double poll = outbox_hand_loop(rows, "outbox2", false);
    printf(" live: the writers commit while it relays, timed from the first commit to the last event\n");
    printf("  relay (pgoutput slot, exactly once)     %9.0f rows/s  (x%.2f the hand loop)\n", relay, relay / poll);
    printf("  hand loop: poll, POST batches, DELETE   %9.0f rows/s\n", poll);
    double relay_b = outbox_relay(rows, "bench-ob3", "bench_pub3", "outbox3", true, &writers);
    double poll_b = outbox_hand_loop(rows, "outbox4", true);
    printf(" backlog: the rows committed first (%.0f rows/s, nothing reading), then drained\n", writers);
    printf("  relay (pgoutput slot, exactly once)     %9.0f rows/s  (x%.2f the hand loop)\n", relay_b,
           relay_b / poll_b);
    printf("  hand loop: poll, POST batches, DELETE   %9.0f rows/s\n", poll_b);
    return 0;
}
