/*
 * test_dcb_examples.c — the dcb.events specification's example scenarios through the /dcb
 * compatibility routes of a real server (docs/dcb.md, "Compatibility"): each is read, decide,
 * append with the read's condition, and a stale decision is refused by the store.
 */
#include "test_server.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void enc(char *out, size_t cap, const char *s) {
    size_t n = strlen(out);
    for (; *s && n + 4 < cap; s++) {
        if ((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || strchr("-_.", *s))
            out[n++] = *s;
        else
            n += (size_t)snprintf(out + n, cap - n, "%%%02X", (unsigned char)*s);
    }
    out[n] = 0;
}

/* GET /dcb/read: the events (caller frees), and *last: the highest position among them (-1). */
static char *dcb_read(int port, const char *query, const char *options, int64_t *last) {
    char path[4096] = "/dcb/read?query=";
    enc(path, sizeof path, query);
    if (options) {
        strcat(path, "&options=");
        enc(path, sizeof path, options);
    }
    char *body = http_body(port, "GET", path, NULL, NULL, 200);
    *last = -1;
    for (const char *p = body; (p = strstr(p, "\"position\":")); p++)
        if (strtoll(p + 11, NULL, 10) > *last) *last = strtoll(p + 11, NULL, 10);
    return body;
}

/* POST /dcb/append of `events` with the condition `query` after `after` (-1: none; NULL query:
   no condition). True if appended, false if the condition failed. */
static bool dcb_append(int port, const char *events, const char *query, int64_t after) {
    char body[4096], cond[2048] = "";
    if (query && after >= 0)
        snprintf(cond, sizeof cond, ",\"condition\":{\"failIfEventsMatch\":%s,\"after\":%lld}", query,
                 (long long)after);
    else if (query)
        snprintf(cond, sizeof cond, ",\"condition\":{\"failIfEventsMatch\":%s}", query);
    snprintf(body, sizeof body, "{\"events\":%s%s}", events, cond);
    char *r = http_body(port, "POST", "/dcb/append", "Content-Type: application/json\r\n", body, 200);
    CHECK_MSG(strstr(r, "\"durationInMicroseconds\":"), "%s", r);
    bool ok = strstr(r, "\"appendConditionFailed\":false") != NULL;
    free(r);
    return ok;
}

static size_t count(const char *body, const char *what) {
    size_t n = 0;
    for (const char *p = body; (p = strstr(p, what)); p++)
        n++;
    return n;
}

/* ---- course subscriptions: a course's capacity, and a student's 3 courses at most ---- */

static bool subscribe(int port, const char *course, const char *student) {
    char q[1024], ev[512];
    snprintf(q, sizeof q,
             "{\"items\":[{\"types\":[\"CourseDefined\"],\"tags\":[\"course:%s\"]},"
             "{\"types\":[\"StudentSubscribedToCourse\"],\"tags\":[\"course:%s\"]},"
             "{\"types\":[\"StudentSubscribedToCourse\"],\"tags\":[\"student:%s\"]}]}",
             course, course, student);
    int64_t last;
    char *seen = dcb_read(port, q, NULL, &last);
    char ctag[64], stag[64];
    snprintf(ctag, sizeof ctag, "\"course:%s\"", course);
    snprintf(stag, sizeof stag, "\"student:%s\"", student);
    /* the decision: the course exists, has a seat, and the student has fewer than 3 courses */
    const char *def = strstr(seen, "\"CourseDefined\"");
    long capacity = def ? strtol(strstr(def, "\"capacity\":") + 11, NULL, 10) : 0;
    size_t taken = 0, mine = 0;
    for (const char *p = seen; (p = strstr(p, "{\"type\":\"StudentSubscribedToCourse\"")); p++) {
        const char *end = strchr(p, '}');
        char one[512];
        snprintf(one, sizeof one, "%.*s", (int)(end - p), p);
        taken += strstr(one, ctag) != NULL;
        mine += strstr(one, stag) != NULL;
    }
    free(seen);
    if (!def || (long)taken >= capacity || mine >= 3) return false;
    snprintf(ev, sizeof ev,
             "[{\"type\":\"StudentSubscribedToCourse\",\"tags\":[\"course:%s\",\"student:%s\"],\"data\":{}}]", course,
             student);
    return dcb_append(port, ev, q, last);
}

TEST(dcb_example_course_subscriptions_keep_capacity_and_the_per_student_limit) {
    srv s = srv_start(test_dir(), "");
    for (int c = 1; c <= 4; c++) {
        char ev[256];
        snprintf(ev, sizeof ev, "{\"type\":\"CourseDefined\",\"tags\":[\"course:c%d\"],\"data\":{\"capacity\":2}}", c);
        CHECK(dcb_append(s.port, ev, NULL, -1));
    }
    CHECK(subscribe(s.port, "c1", "s1"));
    CHECK(subscribe(s.port, "c1", "s2"));
    CHECK(!subscribe(s.port, "c1", "s3")); /* full */
    CHECK(subscribe(s.port, "c2", "s1"));
    CHECK(subscribe(s.port, "c3", "s1"));
    CHECK(!subscribe(s.port, "c4", "s1")); /* s1 has 3 courses */
    CHECK(!subscribe(s.port, "c9", "s1")); /* no such course */
    /* A decision made before the last seat went: the store refuses it. */
    const char *q = "{\"items\":[{\"types\":[\"StudentSubscribedToCourse\"],\"tags\":[\"course:c2\"]}]}";
    int64_t last;
    free(dcb_read(s.port, q, NULL, &last));
    CHECK(subscribe(s.port, "c2", "s2")); /* c2 is full now */
    CHECK(!dcb_append(s.port, "{\"type\":\"StudentSubscribedToCourse\",\"tags\":[\"course:c2\",\"student:s4\"]}", q,
                      last));
    char *all = dcb_read(s.port, "{\"items\":[{\"types\":[\"StudentSubscribedToCourse\"]}]}", NULL, &last);
    CHECK_EQ(count(all, "\"course:c1\""), 2);
    CHECK_EQ(count(all, "\"course:c2\""), 2);
    free(all);
    srv_stop(&s, 15);
}

/* ---- unique username, free again after a change ---- */

static bool claim(int port, const char *type, const char *name, const char *old) {
    char q[512], ev[512];
    snprintf(q, sizeof q,
             "{\"items\":[{\"types\":[\"AccountRegistered\",\"UsernameChanged\"],\"tags\":[\"username:%s\"]}]}", name);
    int64_t last;
    char *seen = dcb_read(port, q, NULL, &last);
    /* taken when the last event about the name claims it (data.name is the name it gives) */
    char claimed[128];
    snprintf(claimed, sizeof claimed, "\"name\":\"%s\"", name);
    const char *lastev = NULL;
    for (const char *p = seen; (p = strstr(p, "{\"type\":")); p++)
        lastev = p;
    bool taken = lastev && strstr(lastev, claimed);
    free(seen);
    if (taken) return false;
    if (old)
        snprintf(
            ev, sizeof ev,
            "{\"type\":\"%s\",\"tags\":[\"username:%s\",\"username:%s\"],\"data\":{\"name\":\"%s\",\"old\":\"%s\"}}",
            type, name, old, name, old);
    else
        snprintf(ev, sizeof ev, "{\"type\":\"%s\",\"tags\":[\"username:%s\"],\"data\":{\"name\":\"%s\"}}", type, name,
                 name);
    return dcb_append(port, ev, q, last);
}

TEST(dcb_example_unique_username_is_free_again_after_a_change) {
    srv s = srv_start(test_dir(), "");
    CHECK(claim(s.port, "AccountRegistered", "ann", NULL));
    CHECK(!claim(s.port, "AccountRegistered", "ann", NULL));
    CHECK(claim(s.port, "UsernameChanged", "anna", "ann"));
    CHECK(claim(s.port, "AccountRegistered", "ann", NULL)); /* released by the change */
    /* Two registrations decided on the same read: one wins. */
    const char *q = "{\"items\":[{\"types\":[\"AccountRegistered\",\"UsernameChanged\"],\"tags\":[\"username:bob\"]}]}";
    const char *ev = "{\"type\":\"AccountRegistered\",\"tags\":[\"username:bob\"],\"data\":{\"name\":\"bob\"}}";
    CHECK(dcb_append(s.port, ev, q, -1));
    CHECK(!dcb_append(s.port, ev, q, -1));
    srv_stop(&s, 15);
}

/* ---- invoice numbers without gaps ---- */

static bool next_invoice(int port, int64_t *stale_after, long *number) {
    const char *q = "{\"items\":[{\"types\":[\"InvoiceCreated\"]}]}";
    int64_t last;
    char *seen = dcb_read(port, q, "{\"backwards\":true,\"limit\":1}", &last);
    const char *n = strstr(seen, "\"number\":");
    long next = n ? strtol(n + 9, NULL, 10) + 1 : 1;
    free(seen);
    if (stale_after) last = *stale_after, next = *number;
    char ev[256];
    snprintf(ev, sizeof ev, "{\"type\":\"InvoiceCreated\",\"tags\":[\"invoice:%ld\"],\"data\":{\"number\":%ld}}", next,
             next);
    *number = next;
    return dcb_append(port, ev, q, last);
}

TEST(dcb_example_invoice_numbers_have_no_gaps_and_no_repeats) {
    srv s = srv_start(test_dir(), "");
    long n;
    for (int i = 1; i <= 5; i++) {
        CHECK(next_invoice(s.port, NULL, &n));
        CHECK_EQ(n, i);
    }
    int64_t after = 3; /* decided when invoice 4 (position 3) was the last: it would make 5 again */
    n = 5;
    CHECK(!next_invoice(s.port, &after, &n));
    int64_t last;
    char *all = dcb_read(s.port, "{\"items\":[{\"types\":[\"InvoiceCreated\"]}]}", NULL, &last);
    CHECK_EQ(count(all, "InvoiceCreated"), 5);
    CHECK_EQ(count(all, "\"number\":5}"), 1);
    free(all);
    srv_stop(&s, 15);
}

/* ---- an opt-in token is used once ---- */

TEST(dcb_example_an_opt_in_token_confirms_once) {
    srv s = srv_start(test_dir(), "");
    CHECK(
        dcb_append(s.port, "{\"type\":\"SignUpInitiated\",\"tags\":[\"email:a@x\",\"otp:T1\"],\"data\":{}}", NULL, -1));
    const char *q = "{\"items\":[{\"types\":[\"SignUpInitiated\",\"SignUpConfirmed\"],\"tags\":[\"otp:T1\"]}]}";
    int64_t last;
    for (int attempt = 0; attempt < 2; attempt++) {
        char *seen = dcb_read(s.port, q, NULL, &last);
        bool valid = strstr(seen, "SignUpInitiated") && !strstr(seen, "SignUpConfirmed");
        free(seen);
        CHECK_EQ(valid, attempt == 0);
        if (valid)
            CHECK(dcb_append(s.port, "{\"type\":\"SignUpConfirmed\",\"tags\":[\"email:a@x\",\"otp:T1\"],\"data\":{}}",
                             q, last));
    }
    /* two confirmations decided on one read: one wins */
    CHECK(dcb_append(s.port, "{\"type\":\"SignUpInitiated\",\"tags\":[\"email:b@x\",\"otp:T2\"]}", NULL, -1));
    const char *q2 = "{\"items\":[{\"types\":[\"SignUpConfirmed\"],\"tags\":[\"otp:T2\"]}]}";
    free(dcb_read(s.port, q2, NULL, &last));
    CHECK(dcb_append(s.port, "{\"type\":\"SignUpConfirmed\",\"tags\":[\"otp:T2\"]}", q2, last));
    CHECK(!dcb_append(s.port, "{\"type\":\"SignUpConfirmed\",\"tags\":[\"otp:T2\"]}", q2, last));
    srv_stop(&s, 15);
}

/* ---- preventing duplicate records: an idempotency token ---- */

TEST(dcb_example_an_idempotency_token_prevents_duplicates) {
    srv s = srv_start(test_dir(), "");
    const char *q = "{\"items\":[{\"tags\":[\"idempotency:k-1\"]}]}";
    const char *ev = "{\"type\":\"OrderPlaced\",\"tags\":[\"order:o1\",\"idempotency:k-1\"],\"data\":{}}";
    CHECK(dcb_append(s.port, ev, q, -1));
    CHECK(!dcb_append(s.port, ev, q, -1));
    CHECK(dcb_append(s.port, "{\"type\":\"OrderPlaced\",\"tags\":[\"order:o2\",\"idempotency:k-2\"]}",
                     "{\"items\":[{\"tags\":[\"idempotency:k-2\"]}]}", -1));
    int64_t last;
    char *all = dcb_read(s.port, "{\"items\":[{\"types\":[\"OrderPlaced\"]}]}", NULL, &last);
    CHECK_EQ(count(all, "OrderPlaced"), 2);
    free(all);
    srv_stop(&s, 15);
}

/* ---- dynamic product price: an order at a price the product no longer has is refused ---- */

static bool order(int port, const char *product, long price, int64_t *seen_at) {
    char q[512], ev[512];
    snprintf(q, sizeof q,
             "{\"items\":[{\"types\":[\"ProductDefined\",\"ProductPriceChanged\"],\"tags\":[\"product:%s\"]}]}",
             product);
    int64_t last;
    char *seen = dcb_read(port, q, NULL, &last);
    const char *p = NULL;
    for (const char *x = seen; (x = strstr(x, "\"price\":")); x++)
        p = x;
    long current = p ? strtol(p + 8, NULL, 10) : -1;
    free(seen);
    if (seen_at) last = *seen_at; /* a client that decided earlier */
    if (current != price && !seen_at) return false;
    snprintf(ev, sizeof ev, "{\"type\":\"ProductOrdered\",\"tags\":[\"product:%s\"],\"data\":{\"price\":%ld}}", product,
             price);
    return dcb_append(port, ev, q, last);
}

TEST(dcb_example_product_orders_take_the_current_price_only) {
    srv s = srv_start(test_dir(), "");
    CHECK(dcb_append(s.port, "{\"type\":\"ProductDefined\",\"tags\":[\"product:p1\"],\"data\":{\"price\":100}}", NULL,
                     -1));
    CHECK(order(s.port, "p1", 100, NULL));
    CHECK(!order(s.port, "p1", 90, NULL)); /* not its price */
    int64_t before = 1;                    /* what a client saw before the price changed */
    CHECK(dcb_append(s.port, "{\"type\":\"ProductPriceChanged\",\"tags\":[\"product:p1\"],\"data\":{\"price\":120}}",
                     NULL, -1));
    CHECK(!order(s.port, "p1", 100, &before)); /* decided at 100, the price moved since */
    CHECK(order(s.port, "p1", 120, NULL));
    srv_stop(&s, 15);
}

TEST(dcb_routes_refuse_bad_input_and_read_all_with_an_empty_query) {
    srv s = srv_start(test_dir(), "");
    CHECK(dcb_append(s.port, "[{\"type\":\"A\",\"tags\":[\"x\"]},{\"type\":\"B\"}]", NULL, -1));
    int64_t last;
    char *all = dcb_read(s.port, "{\"items\":[]}", "{\"from\":1}", &last);
    CHECK_MSG(strstr(all, "\"type\":\"B\",\"tags\":[],\"data\":null,\"position\":1") && !strstr(all, "\"A\""), "%s",
              all);
    free(all);
    expect_status(s.port, "POST", "/dcb/append", NULL, "{\"events\":[{\"type\":\"A\",\"tags\":[\"a b\"]}]}", 400,
                  "without spaces");
    expect_status(s.port, "POST", "/dcb/append", NULL, "{\"events\":[{\"type\":\"A\",\"colour\":1}]}", 400, "colour");
    expect_status(s.port, "POST", "/dcb/append", NULL,
                  "{\"events\":{\"type\":\"A\"},\"condition\":{\"failIfEventsMatch\":{\"items\":[{}]}}}", 400,
                  "no types and no tags");
    expect_status(s.port, "GET", "/dcb/read?query=%7B%7D&options=%7B%22limit%22%3A0%7D", NULL, NULL, 400, "limit");
    srv_stop(&s, 15);
}
