/*
 * test_dcb_crash.c — conditional appends across kill -9 (docs/dcb.md): clients subscribe
 * students to courses of 3 seats through POST /events with a condition while the server is
 * killed at random moments and restarted. Afterwards every acknowledged subscription is in the
 * log where its 201 said, no course holds more than 3 (no condition that held at commit is
 * violated), the tag index answers exactly what a scan of the log finds, and factum check is
 * clean.
 */
#include "test_server.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CYCLES 5
#define CLIENTS 8
#define COURSES 400
#define SEATS 3

typedef struct ack {
    int course;
    unsigned student;
    uint64_t position;
} ack;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static ack acks[COURSES * SEATS * 2];
static size_t nacks;

static void query_of(int course, char *q, size_t cap) {
    snprintf(q, cap, "{\"items\":[{\"types\":[\"Subscribed\"],\"tags\":[\"course:c%d\"]}]}", course);
}

static void *client(void *p) {
    kill_load *a = p;
    unsigned n = 0, seed = (unsigned)test_seed() ^ (unsigned)(a->client * 7919 + a->cycle * 104729);
    while (!*a->stop) {
        int course = rand_r(&seed) % COURSES;
        char q[256], path[1024] = "/events?limit=100&query=", body[1024], h[32];
        query_of(course, q, sizeof q);
        size_t len = strlen(path);
        for (const char *c = q; *c && len + 4 < sizeof path; c++)
            len += (size_t)snprintf(path + len, sizeof path - len, "%%%02X", (unsigned char)*c);
        resp r;
        if (http_try(a->port, "GET", path, NULL, NULL, &r) != 200) {
            resp_free(&r);
            break;
        }
        size_t taken = 0;
        for (const char *x = r.body; (x = strstr(x, "\"type\":\"Subscribed\"")); x++)
            taken++;
        uint64_t head = strtoull(resp_header(&r, "Factum-Head", h, sizeof h), NULL, 10);
        resp_free(&r);
        if (taken >= SEATS) continue;
        unsigned student = (unsigned)(a->cycle * 1000000 + a->client * 100000) + n++;
        int m = snprintf(body, sizeof body,
                         "{\"events\":[{\"type\":\"Subscribed\",\"stream\":\"student-%u\",\"tags\":[\"course:c%d\","
                         "\"student:s%u\"]}],\"condition\":{\"failIfEventsMatch\":%s",
                         student, course, student, q);
        if (head) m += snprintf(body + m, sizeof body - (size_t)m, ",\"after\":%llu", (unsigned long long)head - 1);
        snprintf(body + m, sizeof body - (size_t)m, "}}");
        int st = http_try(a->port, "POST", "/events", "Content-Type: application/json\r\n", body, &r);
        if (st == 201) {
            pthread_mutex_lock(&mu);
            if (nacks < ARRAY_LEN(acks)) acks[nacks++] = (ack){course, student, json_u64(r.body, "first_position")};
            pthread_mutex_unlock(&mu);
        }
        resp_free(&r);
        if (st != 201 && st != 409) break; /* the server is gone */
    }
    return NULL;
}

static size_t course_in_log(factum_t *db, int course, uint64_t *scan, size_t cap) {
    char tag[32];
    snprintf(tag, sizeof tag, "course:c%d", course);
    size_t n = 0;
    factum_query_t all = {.limit = 100000};
    factum_result_t *res;
    CHECK_RC(factum_read_all(db, &all, &res, NULL), 0);
    for (size_t i = 0; i < factum_result_count(res); i++) {
        const factum_event_t *e = factum_result_event(res, i);
        factum_str_t tags = factum_event_tags(e);
        char one[256];
        snprintf(one, sizeof one, " %.*s ", (int)tags.len, tags.ptr);
        char want[40];
        snprintf(want, sizeof want, " %s ", tag);
        if (str_eq(e->type, str_c("Subscribed")) && strstr(one, want) && n < cap) scan[n++] = e->position;
    }
    factum_result_free(res);
    return n;
}

TEST_T(kill_9_during_conditional_appends_keeps_every_ack_and_every_condition, 300) {
    srv_kill_cycles(CYCLES, CLIENTS, client, 20, 150);
    fprintf(stderr, "    %zu conditional appends acknowledged over %d kills\n", nacks, CYCLES);
    factum_t *db = test_open(test_dir(), NULL);
    for (size_t k = 0; k < nacks; k++) { /* every acknowledged subscription, where its 201 said */
        factum_result_t *res;
        CHECK_RC(factum_read_at(db, acks[k].position, &res, NULL), 0);
        const factum_event_t *e = factum_result_event(res, 0);
        char want[64];
        snprintf(want, sizeof want, "course:c%d student:s%u", acks[k].course, acks[k].student);
        CHECK_MSG(str_eq(factum_event_tags(e), str_c(want)), "position %llu: %.*s, not %s",
                  (unsigned long long)acks[k].position, (int)factum_event_tags(e).len, factum_event_tags(e).ptr, want);
        factum_result_free(res);
    }
    for (int c = 0; c < COURSES; c++) {
        uint64_t scan[64];
        size_t n = course_in_log(db, c, scan, ARRAY_LEN(scan));
        CHECK_MSG(n <= SEATS, "course %d holds %zu subscriptions, %d seats", c, n, SEATS);
        char q[256];
        query_of(c, q, sizeof q);
        factum_tag_query_t *tq;
        CHECK_RC(factum_tag_query_parse(q, strlen(q), &tq, NULL), 0);
        factum_result_t *res;
        CHECK_RC(factum_read_tagged(db, tq, 0, 100, 0, NULL, &res, NULL), 0);
        CHECK_EQ(factum_result_count(res), n); /* the index answers what the log holds */
        for (size_t i = 0; i < n; i++)
            CHECK_EQ(factum_result_event(res, i)->position, scan[i]);
        factum_result_free(res);
        factum_tag_query_free(tq);
    }
    factum_close(db);
    char out[4096];
    CHECK_MSG(run_factum(out, sizeof out, "check --data-dir %s", test_dir()) == 0, "%s", out);
}
