/*
 * bench_schemas.c — the event-schema figures of `make bench` (docs/schemas.md), against a running
 * `factum serve` on loopback (bench/schemas.sh starts it):
 *
 *   1. single-event appends/s at 16 clients of an event validated against a typical schema (10
 *      properties, types, required, an enum, a pattern, a nested object; mode enforce) beside the
 *      same events of a type without a schema, in alternating turns of the same run;
 *   2. a catch-up read of N events stored as version 1 through a 2-step upcast (v1 -> v2 -> v3)
 *      beside the same read with ?version=raw.
 *
 *   bench-schemas --port P [--seconds S] [--events N]
 */
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "hclient.h"

#define CLIENTS 16
#define TURNS 3

static double seconds = 3;

static const char SCHEMA[] =
    "{\"type\":\"object\",\"required\":[\"id\",\"amount\",\"currency\",\"customer\"],\"additionalProperties\":false,"
    "\"properties\":{\"id\":{\"type\":\"string\",\"pattern\":\"^O-[0-9]{1,12}$\"},\"amount\":{\"type\":\"number\","
    "\"minimum\":0},\"currency\":{\"enum\":[\"EUR\",\"USD\",\"GBP\"]},\"items\":{\"type\":\"integer\",\"minimum\":1},"
    "\"express\":{\"type\":\"boolean\"},\"note\":{\"type\":[\"string\",\"null\"],\"maxLength\":200},\"channel\":{"
    "\"type\":\"string\"},\"coupon\":{\"type\":\"string\"},\"placed\":{\"type\":\"string\"},\"customer\":{\"type\":"
    "\"object\",\"required\":[\"name\",\"country\"],\"properties\":{\"name\":{\"type\":\"string\",\"minLength\":1},"
    "\"country\":{\"type\":\"string\",\"minLength\":2,\"maxLength\":2}}}}}";
static const char DATA[] =
    "{\"id\":\"O-123456\",\"amount\":42.5,\"currency\":\"EUR\",\"items\":3,\"express\":false,\"note\":null,"
    "\"channel\":\"web\",\"coupon\":\"SPRING\",\"placed\":\"2024-05-01T10:00:00Z\",\"customer\":{\"name\":\"Ann\","
    "\"country\":\"DE\"}}";

/* One request on a fresh connection: its status. */
static int request(const char *method, const char *path, const char *body) {
    hconn *c = hconn_new(1 << 20);
    char req[8192];
    int n = snprintf(req, sizeof req, "%s %s HTTP/1.1\r\nHost: localhost\r\nContent-Length: %zu\r\n\r\n%s", method,
                     path, strlen(body), body);
    int st = roundtrip(c, req, (size_t)n, NULL);
    hconn_free(c);
    return st;
}

typedef struct {
    int id;
    const char *type;
    _Atomic bool *stop;
    uint64_t events;
} worker;

static void *appender(void *p) {
    worker *w = p;
    hconn *c = hconn_new(1 << 16);
    char body[1024], req[2048];
    int bl = snprintf(body, sizeof body, "{\"type\":\"%s\",\"data\":%s}", w->type, DATA);
    int n = snprintf(req, sizeof req,
                     "POST /streams/bench-%d HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                     "Content-Length: %d\r\n\r\n%s",
                     w->id, bl, body);
    while (!*w->stop) {
        if (roundtrip(c, req, (size_t)n, NULL) != 201) die("an append was not answered 201");
        w->events++;
    }
    hconn_free(c);
    return NULL;
}

static double appends(const char *type) {
    _Atomic bool stop = false;
    worker w[CLIENTS];
    pthread_t th[CLIENTS];
    for (int i = 0; i < CLIENTS; i++) {
        w[i] = (worker){i, type, &stop, 0};
        pthread_create(&th[i], NULL, appender, &w[i]);
    }
    uint64_t t0 = now_ns();
    usleep((useconds_t)(seconds * 1e6));
    stop = true;
    uint64_t total = 0;
    for (int i = 0; i < CLIENTS; i++) {
        pthread_join(th[i], NULL);
        total += w[i].events;
    }
    return (double)total / ((double)(now_ns() - t0) / 1e9);
}

/* Reads the stream `catchup` from the start in pages of 1,000 (with `query` added): events/s. */
static double catchup(uint64_t events, const char *query) {
    hconn *c = hconn_new(64 << 20);
    char req[512];
    uint64_t t0 = now_ns();
    for (uint64_t from = 0; from < events; from += 1000) {
        int n =
            snprintf(req, sizeof req, "GET /streams/catchup?from=%llu&limit=1000%s HTTP/1.1\r\nHost: localhost\r\n\r\n",
                     (unsigned long long)from, query);
        if (roundtrip(c, req, (size_t)n, NULL) != 200) die("a read was not answered 200");
    }
    double r = (double)events / ((double)(now_ns() - t0) / 1e9);
    hconn_free(c);
    return r;
}

int main(int argc, char **argv) {
    uint64_t events = 200000;
    for (int i = 1; i + 1 < argc; i += 2)
        if (!strcmp(argv[i], "--port"))
            port = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--seconds"))
            seconds = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--events"))
            events = strtoull(argv[i + 1], NULL, 10);
        else
            die("usage: bench-schemas --port P [--seconds S] [--events N]");
    hclient_init();
    if (request("PUT", "/schemas/Typed/versions/1?compatibility=none", SCHEMA) != 201) die("the schema was refused");

    double on = 0, off = 0;
    for (int t = 0; t < TURNS; t++) /* alternating, so a drift of the disk hits both */
        on += appends("Typed"), off += appends("Untyped");
    on /= TURNS, off /= TURNS;
    printf("schemas: appends/s at %d clients, validated %.0f, not validated %.0f: %.2f (target >= 0.8)\n", CLIENTS, on,
           off, on / off);

    /* events stored as v1, then v2 and v3 each with one step: a 2-step upcast on read */
    if (request("PUT", "/schemas/Old/versions/1?compatibility=none", "{\"properties\":{\"cust\":{},\"n\":{}}}") != 201)
        die("v1 refused");
    hconn *c = hconn_new(1 << 16);
    static char body[1000 * 96 + 16], req[1000 * 96 + 256];
    for (uint64_t done = 0; done < events; done += 1000) {
        size_t bl = 0;
        body[bl++] = '[';
        for (int k = 0; k < 1000; k++)
            bl += (size_t)snprintf(body + bl, sizeof body - bl,
                                   "%s{\"type\":\"Old\",\"data\":{\"cust\":\"Ann\",\"n\":%d}}", k ? "," : "", k);
        body[bl++] = ']';
        int n = snprintf(req, sizeof req,
                         "POST /streams/catchup HTTP/1.1\r\nHost: localhost\r\nContent-Type: "
                         "application/cloudevents-batch+json\r\nContent-Length: %zu\r\n\r\n%.*s",
                         bl, (int)bl, body);
        if (roundtrip(c, req, (size_t)n, NULL) != 201) die("a batch was not answered 201");
    }
    hconn_free(c);
    if (request("PUT", "/schemas/Old/versions/2?compatibility=none", "{\"properties\":{\"customer\":{},\"n\":{}}}") !=
            201 ||
        request("PUT", "/schemas/Old/versions/2/upcast",
                "{\"steps\":[{\"op\":\"rename\",\"from\":\"/cust\",\"to\":\"/customer\"}]}") != 201 ||
        request("PUT", "/schemas/Old/versions/3?compatibility=none",
                "{\"properties\":{\"customer\":{},\"n\":{},\"currency\":{}}}") != 201 ||
        request("PUT", "/schemas/Old/versions/3/upcast",
                "{\"steps\":[{\"op\":\"add\",\"path\":\"/currency\",\"value\":\"EUR\"}]}") != 201)
        die("the upcast versions were refused");
    hconn *check = hconn_new(1 << 20);
    const char *page;
    static const char first[] = "GET /streams/catchup?limit=1 HTTP/1.1\r\nHost: localhost\r\n\r\n";
    if (roundtrip(check, first, sizeof first - 1, &page) != 200 ||
        !strstr(page, "\"data\":{\"n\":0,\"customer\":\"Ann\",\"currency\":\"EUR\"}"))
        die("the events are not read upcast");
    hconn_free(check);
    double raw = 0, up = 0;
    for (int t = 0; t < TURNS; t++)
        raw += catchup(events, "&version=raw"), up += catchup(events, "");
    raw /= TURNS, up /= TURNS;
    printf("schemas: catch-up read of %llu events, through a 2-step upcast %.0f/s, as stored %.0f/s: %.2f (target >= "
           "0.7)\n",
           (unsigned long long)events, up, raw, up / raw);
    return 0;
}
