/*
 * test_ratelimit.c — per-key rate limits (issue 17; src/auth/rate.c, src/server/guard.c,
 * docs/limits.md "Keys"). The bucket on its own with a clock the test gives: a second's worth
 * passes, one more waits, both limits are taken together or not at all. A key's limits parsed
 * with each one past its maximum, and replayed from $keys. Then a real server with two loops:
 * a key past its appends or its bytes gets 429 with Retry-After and the refused request writes
 * nothing, while another limited key and an unlimited one go on writing; a request larger than
 * one second's worth gets 413; after waiting (polled, never timed) the key writes again; the
 * server's default applies to keys that set no limit; the command line's flags round-trip.
 *
 * No assertion here depends on how fast the machine is: a fresh bucket always passes its burst,
 * and "one past the burst" is asked until it is refused (on any machine that sends requests
 * faster than the limit, at once), and what was written is counted against the 201s.
 */
#include "../src/auth/keys.h"
#include "test_server.h"

#include <signal.h>
#include <stdarg.h>
#include <string.h>
#include <unistd.h>

#define NS 1000000000ULL

/* ---- the bucket on its own ---- */

TEST(a_bucket_passes_one_second_worth_then_one_unit_per_interval_and_never_a_request_past_the_burst) {
    auth_bucket b;
    auth_bucket_init(&b);
    auth_rate_verdict v;
    const uint64_t limits[AUTH_LIMITS] = {3, 0}, one[AUTH_LIMITS] = {1, 5000};
    uint64_t t = 1000 * NS;
    for (int i = 0; i < 3; i++)
        CHECK_EQ(auth_bucket_take(&b, limits, one, t, &v), AUTH_RATE_OK);
    CHECK_EQ(auth_bucket_take(&b, limits, one, t, &v), AUTH_RATE_LIMITED);
    CHECK(v.limit == AUTH_LIMIT_APPENDS && v.per_second == 3 && v.asked == 1 && v.retry_after_s == 1);
    /* One unit comes back every third of a second, not before. */
    CHECK_EQ(auth_bucket_take(&b, limits, one, t + NS / 3 - 10, &v), AUTH_RATE_LIMITED);
    CHECK_EQ(auth_bucket_take(&b, limits, one, t + NS / 3 + 10, &v), AUTH_RATE_OK);
    CHECK_EQ(auth_bucket_take(&b, limits, one, t + NS / 3 + 10, &v), AUTH_RATE_LIMITED);
    /* After a long pause the bucket is full again, and never fuller: 3 pass, the 4th not. */
    t += 3600 * NS;
    const uint64_t four[AUTH_LIMITS] = {4, 0}, three[AUTH_LIMITS] = {3, 0};
    CHECK_EQ(auth_bucket_take(&b, limits, four, t, &v), AUTH_RATE_TOO_BIG);
    CHECK(v.limit == AUTH_LIMIT_APPENDS && v.asked == 4 && v.per_second == 3);
    CHECK_EQ(auth_bucket_take(&b, limits, three, t, &v), AUTH_RATE_OK);
    CHECK_EQ(auth_bucket_take(&b, limits, one, t, &v), AUTH_RATE_LIMITED);
    /* 100 bytes a second: 60, then 60 more is 20 past the burst, 0.2 s to wait, said as 1 s. */
    auth_bucket_destroy(&b);
    auth_bucket_init(&b);
    const uint64_t slow[AUTH_LIMITS] = {0, 100}, half[AUTH_LIMITS] = {1, 60};
    CHECK_EQ(auth_bucket_take(&b, slow, half, t, &v), AUTH_RATE_OK);
    CHECK_EQ(auth_bucket_take(&b, slow, half, t, &v), AUTH_RATE_LIMITED);
    CHECK(v.limit == AUTH_LIMIT_BYTES && v.retry_after_s == 1); /* 20 bytes past: 0.2 s, said as 1 */
    auth_bucket_destroy(&b);
    /* Without any limit nothing is looked at (not even the bucket). */
    const uint64_t none[AUTH_LIMITS] = {0, 0}, huge[AUTH_LIMITS] = {UINT64_MAX, UINT64_MAX};
    CHECK_EQ(auth_bucket_take(NULL, none, huge, t, &v), AUTH_RATE_OK);
}

TEST(a_request_refused_by_one_limit_takes_nothing_from_the_other) {
    auth_bucket b;
    auth_bucket_init(&b);
    auth_rate_verdict v;
    const uint64_t limits[AUTH_LIMITS] = {2, 100};
    uint64_t t = 5 * NS;
    CHECK_EQ(auth_bucket_take(&b, limits, (uint64_t[]){1, 90}, t, &v), AUTH_RATE_OK);
    CHECK_EQ(auth_bucket_take(&b, limits, (uint64_t[]){1, 20}, t, &v), AUTH_RATE_LIMITED);
    CHECK(v.limit == AUTH_LIMIT_BYTES);
    /* The refused request took no append: one is left, and 10 bytes. */
    CHECK_EQ(auth_bucket_take(&b, limits, (uint64_t[]){1, 10}, t, &v), AUTH_RATE_OK);
    CHECK_EQ(auth_bucket_take(&b, limits, (uint64_t[]){1, 0}, t, &v), AUTH_RATE_LIMITED);
    CHECK(v.limit == AUTH_LIMIT_APPENDS);
    CHECK_EQ(auth_bucket_take(&b, limits, (uint64_t[]){1, 101}, t, &v), AUTH_RATE_TOO_BIG);
    CHECK(v.limit == AUTH_LIMIT_BYTES && v.asked == 101);
    /* The largest limits a key may have do not overflow the arithmetic. */
    const uint64_t top[AUTH_LIMITS] = {AUTH_MAX_APPENDS_PER_SECOND, AUTH_MAX_BYTES_PER_SECOND};
    auth_bucket_destroy(&b);
    auth_bucket_init(&b);
    CHECK_EQ(auth_bucket_take(&b, top, top, t, &v), AUTH_RATE_OK);
    CHECK_EQ(auth_bucket_take(&b, top, (uint64_t[]){1, 0}, t, &v), AUTH_RATE_LIMITED);
    CHECK_EQ(auth_bucket_take(&b, top, top, t + NS, &v), AUTH_RATE_OK);
    auth_bucket_destroy(&b);
}

/* ---- a key's limits ---- */

TEST(a_key_limit_is_a_whole_number_up_to_its_maximum_on_keys_that_append_and_is_replayed) {
    auth_spec s;
    factum_error_t err = {0};
    CHECK_RC(auth_spec_parse(str_c("{\"role\":\"writer\"}"), 0, &s, &err), 0);
    CHECK(s.max_per_second[AUTH_LIMIT_APPENDS] == AUTH_RATE_UNSET &&
          s.max_per_second[AUTH_LIMIT_BYTES] == AUTH_RATE_UNSET);
    CHECK_RC(auth_spec_parse(str_c("{\"role\":\"admin\",\"max_appends_per_second\":0,\"max_bytes_per_second\":"
                                   "10000000000}"),
                             0, &s, &err),
             0);
    CHECK(s.max_per_second[AUTH_LIMIT_APPENDS] == 0 && s.max_per_second[AUTH_LIMIT_BYTES] == AUTH_MAX_BYTES_PER_SECOND);
    const char *bad[] = {
        "{\"role\":\"writer\",\"max_appends_per_second\":-1}",
        "{\"role\":\"writer\",\"max_appends_per_second\":1.5}",
        "{\"role\":\"writer\",\"max_appends_per_second\":1e3}",
        "{\"role\":\"writer\",\"max_appends_per_second\":\"5\"}",
        "{\"role\":\"writer\",\"max_appends_per_second\":null}",
        "{\"role\":\"writer\",\"max_appends_per_second\":10000001}", /* one past the maximum */
        "{\"role\":\"writer\",\"max_bytes_per_second\":10000000001}",
        "{\"role\":\"writer\",\"max_bytes_per_second\":99999999999999999999999}",
        "{\"role\":\"reader\",\"max_appends_per_second\":5}", /* a key that cannot append */
        "{\"role\":\"consumer\",\"max_bytes_per_second\":5}",
        "{\"role\":\"operator\",\"max_appends_per_second\":0}",
    };
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        err = (factum_error_t){0};
        CHECK_MSG(auth_spec_parse(str_c(bad[i]), 0, &s, &err) == FACTUM_EINVAL, "%s was taken", bad[i]);
        CHECK_MSG(strstr(err.message, "max_"), "%s: %s", bad[i], err.message);
    }
    CHECK_RC(auth_spec_parse(str_c("{\"role\":\"writer\",\"max_appends_per_second\":10000000}"), 0, &s, &err), 0);
    /* Kept in the KeyCreated record and replayed; a key without limits has none after replay. */
    factum_t *db = test_open(test_dir(), NULL);
    auth_keys_t *ks;
    CHECK_RC(auth_keys_open(db, &ks, &err), 0);
    char token[AUTH_TOKEN_LEN + 1], plain[AUTH_TOKEN_LEN + 1];
    auth_key k;
    CHECK_RC(auth_spec_parse(str_c("{\"role\":\"writer\",\"max_appends_per_second\":7,\"max_bytes_per_second\":0}"), 0,
                             &s, &err),
             0);
    CHECK_RC(auth_key_create(ks, &s, "local", token, &k, &err), 0);
    CHECK_RC(auth_spec_parse(str_c("{\"role\":\"writer\"}"), 0, &s, &err), 0);
    CHECK_RC(auth_key_create(ks, &s, "local", plain, &k, &err), 0);
    auth_keys_close(ks);
    CHECK_RC(auth_keys_open(db, &ks, &err), 0);
    auth_who who;
    CHECK_EQ(auth_authenticate(ks, str_c(token), clock_realtime_us(), &who), AUTH_OK);
    CHECK(who.max_per_second[AUTH_LIMIT_APPENDS] == 7 && who.max_per_second[AUTH_LIMIT_BYTES] == 0 && who.bucket);
    CHECK_EQ(auth_authenticate(ks, str_c(plain), clock_realtime_us(), &who), AUTH_OK);
    CHECK(who.max_per_second[AUTH_LIMIT_APPENDS] == AUTH_RATE_UNSET &&
          who.max_per_second[AUTH_LIMIT_BYTES] == AUTH_RATE_UNSET);
    auth_keys_close(ks);
    factum_close(db);
}

/* ---- against a real server ---- */

/* A key made through POST /admin/keys (admin: the admin token, or NULL while there is none); its
   token, to free. */
static char *make_key(int port, const char *admin, const char *json) {
    char hdr[200] = "";
    if (admin) snprintf(hdr, sizeof hdr, "Authorization: Bearer %s\r\n", admin);
    char *b = http_body(port, "POST", "/admin/keys", hdr, json, 201);
    char *t = strstr(b, "\"token\":\"");
    CHECK_MSG(t, "%s", b);
    char *token = strndup(t + 9, AUTH_TOKEN_LEN);
    free(b);
    return token;
}

/* The headers of an append with token. */
static const char *as(const char *token, char *out, size_t cap) {
    snprintf(out, cap, "Authorization: Bearer %s\r\nContent-Type: application/json\r\n", token);
    return out;
}

/* Appends body to stream with token: the status (r answered, to free). */
static int append(int port, const char *token, const char *stream, const char *body, resp *r) {
    char hdr[300], path[200];
    snprintf(path, sizeof path, "/streams/%s", stream);
    http_do(port, "POST", path, as(token, hdr, sizeof hdr), body, r);
    return r->status;
}

/* A batch of n events of `pad` bytes of data each. */
static char *batch(int n, size_t pad) {
    buf_t b = {0};
    buf_append(&b, "[", 1);
    for (int i = 0; i < n; i++)
        buf_printf(&b, "%s{\"type\":\"E\",\"data\":{\"i\":%d,\"pad\":\"%0*d\"}}", i ? "," : "", i, (int)pad, 0);
    buf_append(&b, "]", 2);
    return b.ptr;
}

/* Events in stream, read with token. */
static int events_in(int port, const char *token, const char *stream) {
    char hdr[300], path[200];
    snprintf(path, sizeof path, "/streams/%s?limit=1000", stream);
    char *b = http_body(port, "GET", path, as(token, hdr, sizeof hdr), NULL, 200);
    int n = 0;
    for (const char *p = b; (p = strstr(p, "\"specversion\"")); p++)
        n++;
    free(b);
    return n;
}

/* Appends body until the key is refused 429 (at most 200 times): the 201s before it. The 429 is
   checked: Retry-After a whole number of seconds of at least 1, the problem naming `limit`. */
static int append_until_limited(int port, const char *token, const char *stream, const char *body, const char *limit) {
    int passed = 0;
    for (int i = 0; i < 200; i++) {
        resp r;
        int st = append(port, token, stream, body, &r);
        if (st == 201) {
            passed++;
            resp_free(&r);
            continue;
        }
        CHECK_MSG(st == 429, "%d %s", st, r.body);
        char ra[32], want[64];
        resp_header(&r, "Retry-After", ra, sizeof ra);
        CHECK_MSG(atoi(ra) >= 1 && strspn(ra, "0123456789") == strlen(ra), "Retry-After: '%s'", ra);
        snprintf(want, sizeof want, "\"limit\":\"%s\"", limit);
        CHECK_MSG(strstr(r.body, "urn:factum:problem:rate-limited") && strstr(r.body, want), "%s", r.body);
        resp_free(&r);
        return passed;
    }
    CHECK_MSG(false, "200 appends and no 429");
    return -1;
}

/* Appends body until it passes (the bucket has room again), polling; fails after 20 s. */
static void append_when_room(int port, const char *token, const char *stream, const char *body) {
    for (int i = 0; i < 200; i++) {
        resp r;
        int st = append(port, token, stream, body, &r);
        resp_free(&r);
        if (st == 201) return;
        CHECK_MSG(st == 429, "status %d", st);
        usleep(100000);
    }
    CHECK_MSG(false, "the key was still refused after 20 s");
}

TEST(a_key_past_its_appends_per_second_gets_429_and_writes_nothing_while_other_keys_go_on) {
    srv s = srv_start(test_dir(), "--loops 2");
    char *admin = make_key(s.port, NULL, "{\"role\":\"admin\"}");
    char *a = make_key(s.port, admin, "{\"role\":\"writer\",\"max_appends_per_second\":5}");
    char *b = make_key(s.port, admin, "{\"role\":\"writer\",\"max_appends_per_second\":5}");
    char *u = make_key(s.port, admin, "{\"role\":\"writer\"}");
    const char *one = "{\"type\":\"E\",\"data\":{}}";
    resp r;
    /* A fresh bucket: its burst passes, whatever the time between requests. */
    for (int i = 0; i < 5; i++) {
        CHECK_EQ(append(s.port, a, "s-a", one, &r), 201);
        resp_free(&r);
    }
    int more = append_until_limited(s.port, a, "s-a", one, "appends");
    /* While a is limited: b (limited too, its own bucket) and u (no limit) write. */
    char *five = batch(5, 1), *fifty = batch(50, 1), *six = batch(6, 1);
    CHECK_EQ(append(s.port, b, "s-b", five, &r), 201);
    resp_free(&r);
    CHECK_EQ(append(s.port, u, "s-u", fifty, &r), 201);
    resp_free(&r);
    /* More than a second's worth in one batch can never pass: 413, whenever it is sent. */
    CHECK_EQ(append(s.port, a, "s-a", six, &r), 413);
    CHECK_MSG(strstr(r.body, "urn:factum:problem:over-key-rate-limit") && strstr(r.body, "\"limit\":\"appends\"") &&
                  strstr(r.body, "\"asked\":6") && strstr(r.body, "can never pass"),
              "%s", r.body);
    resp_free(&r);
    /* What was refused wrote nothing: the stream holds exactly the 201s. */
    CHECK_EQ(events_in(s.port, admin, "s-a"), 5 + more);
    CHECK_EQ(events_in(s.port, admin, "s-b"), 5);
    CHECK_EQ(events_in(s.port, admin, "s-u"), 50);
    /* Given time, a writes again. */
    append_when_room(s.port, a, "s-a", one);
    CHECK(srv_metric(s.port, "factum_rate_limited_total{limit=\"appends\"}") >= 2);
    CHECK_EQ(srv_metric(s.port, "factum_rate_limited_total{limit=\"bytes\"}"), 0);
    free(five), free(fifty), free(six);
    free(admin), free(a), free(b), free(u);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}

TEST(a_key_past_its_bytes_per_second_gets_429_and_a_body_past_one_second_worth_413_snapshots_too) {
    srv s = srv_start(test_dir(), "--loops 2");
    char *admin = make_key(s.port, NULL, "{\"role\":\"admin\"}");
    char *k = make_key(s.port, admin, "{\"role\":\"writer\",\"max_bytes_per_second\":1000}");
    char *quarter = batch(1, 200); /* about 250 bytes */
    CHECK(strlen(quarter) > 200 && strlen(quarter) <= 250);
    resp r;
    for (int i = 0; i < 4; i++) {
        CHECK_EQ(append(s.port, k, "s-k", quarter, &r), 201);
        resp_free(&r);
    }
    int more = append_until_limited(s.port, k, "s-k", quarter, "bytes");
    CHECK_EQ(events_in(s.port, admin, "s-k"), 4 + more);
    /* One byte past the burst, in one body: 413. The burst itself fits an empty bucket. */
    buf_t big = {0};
    buf_printf(&big, "{\"type\":\"E\",\"data\":\"%0*d\"}", 1001 - 22, 0);
    CHECK_EQ(big.len, 1001);
    buf_append(&big, "", 1);
    CHECK_EQ(append(s.port, k, "s-k", big.ptr, &r), 413);
    CHECK_MSG(strstr(r.body, "\"limit\":\"bytes\"") && strstr(r.body, "\"asked\":1001") &&
                  strstr(r.body, "max_bytes_per_second"),
              "%s", r.body);
    resp_free(&r);
    /* A snapshot is an append to its key's limits: past a second's worth, 413 and no snapshot. */
    char hdr[300];
    buf_t snap = {0};
    buf_printf(&snap, "{\"revision\":0,\"state\":\"%0*d\"}", 1100, 0);
    expect_status(s.port, "PUT", "/streams/s-k/snapshot", as(k, hdr, sizeof hdr), snap.ptr, 413, "over-key-rate-limit");
    expect_status(s.port, "GET", "/streams/s-k/snapshot", as(k, hdr, sizeof hdr), NULL, 404, NULL);
    append_when_room(s.port, k, "s-k", quarter);
    CHECK(srv_metric(s.port, "factum_rate_limited_total{limit=\"bytes\"}") >= 3);
    buf_free(&big), buf_free(&snap);
    free(quarter), free(admin), free(k);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}

TEST(the_server_default_applies_to_keys_that_set_no_limit_and_a_key_own_limit_overrides_it) {
    srv s = srv_start(test_dir(), "--loops 2 --key-max-appends-per-second 3 --key-max-bytes-per-second 4000");
    CHECK_EQ(srv_metric(s.port, "factum_key_rate_limit_default{limit=\"appends\"}"), 3);
    CHECK_EQ(srv_metric(s.port, "factum_key_rate_limit_default{limit=\"bytes\"}"), 4000);
    char *ten = batch(10, 1), *four = batch(4, 1), *three = batch(3, 1), *wide = batch(1, 4000);
    resp r;
    /* Without keys there is nobody to limit. */
    CHECK_EQ(append(s.port, "none", "s-0", ten, &r), 201);
    resp_free(&r);
    char *admin = make_key(s.port, NULL, "{\"role\":\"admin\"}");
    char *d = make_key(s.port, admin, "{\"role\":\"writer\"}");
    char *free_key =
        make_key(s.port, admin, "{\"role\":\"writer\",\"max_appends_per_second\":0,\"max_bytes_per_second\":0}");
    char *own = make_key(s.port, admin, "{\"role\":\"writer\",\"max_appends_per_second\":10}");
    CHECK_EQ(append(s.port, d, "s-d", four, &r), 413);
    CHECK_MSG(strstr(r.body, "--key-max-appends-per-second") && strstr(r.body, "\"max_per_second\":3"), "%s", r.body);
    resp_free(&r);
    CHECK_EQ(append(s.port, d, "s-d", wide, &r), 413);
    CHECK_MSG(strstr(r.body, "--key-max-bytes-per-second") && strstr(r.body, "\"limit\":\"bytes\""), "%s", r.body);
    resp_free(&r);
    CHECK_EQ(append(s.port, d, "s-d", three, &r), 201);
    resp_free(&r);
    append_until_limited(s.port, d, "s-d", "{\"type\":\"E\"}", "appends");
    /* 0: no limit, whatever the default. */
    for (int i = 0; i < 3; i++) {
        CHECK_EQ(append(s.port, free_key, "s-f", ten, &r), 201);
        resp_free(&r);
    }
    CHECK_EQ(append(s.port, free_key, "s-f", wide, &r), 201);
    resp_free(&r);
    /* Its own appends limit instead of the default; the default bytes limit still applies. */
    CHECK_EQ(append(s.port, own, "s-o", ten, &r), 201);
    resp_free(&r);
    char *eleven = batch(11, 1);
    CHECK_EQ(append(s.port, own, "s-o", eleven, &r), 413);
    CHECK_MSG(strstr(r.body, "the key's max_appends_per_second"), "%s", r.body);
    resp_free(&r);
    CHECK_EQ(append(s.port, own, "s-o", wide, &r), 413);
    resp_free(&r);
    free(ten), free(four), free(three), free(wide), free(eleven);
    free(admin), free(d), free(free_key), free(own);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}

static int count(const char *s, const char *what) {
    int n = 0;
    for (const char *p = s; (p = strstr(p, what)); p++)
        n++;
    return n;
}

TEST(key_create_rate_flags_round_trip_through_key_ls_and_bad_values_make_no_key) {
    char out[8192], url[64];
    const char *dir = test_dir();
    CHECK_EQ(run_factum(out, sizeof out,
                        "--data-dir %s key create --role writer --max-appends-per-second 250 --max-bytes-per-second 0",
                        dir),
             0);
    CHECK_EQ(run_factum(out, sizeof out, "--data-dir %s key create --role admin", dir), 0);
    char admin[AUTH_TOKEN_LEN + 1];
    const char *t = strstr(out, "fk_");
    CHECK(t);
    memcpy(admin, t, AUTH_TOKEN_LEN), admin[AUTH_TOKEN_LEN] = 0;
    static const char *const bad[] = {
        "--role writer --max-appends-per-second -1",       "--role writer --max-appends-per-second abc",
        "--role writer --max-appends-per-second 10000001", "--role writer --max-bytes-per-second 10000000001",
        "--role writer --max-bytes-per-second 1.5",        "--role writer --max-bytes-per-second 007",
        "--role reader --max-appends-per-second 5",
    };
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        CHECK_MSG(run_factum(out, sizeof out, "--data-dir %s key create %s", dir, bad[i]) == 1, "%s: %s", bad[i], out);
        CHECK_MSG(strstr(out, "max_") && !strstr(out, "fk_"), "%s: %s", bad[i], out);
    }
    CHECK_EQ(run_factum(out, sizeof out, "--data-dir %s key ls", dir), 0);
    CHECK_MSG(count(out, "\"id\"") == 2 && strstr(out, "\"max_appends_per_second\":250,\"max_bytes_per_second\":0") &&
                  count(out, "max_appends_per_second") == 1,
              "%s", out);
    /* Against a server: the same flags, the same listing, the same refusals. */
    srv s = srv_start(dir, NULL);
    snprintf(url, sizeof url, "http://127.0.0.1:%d", s.port);
    CHECK_EQ(run_factum(out, sizeof out, "--server %s --token %s key create --role admin --max-bytes-per-second 65536",
                        url, admin),
             0);
    for (size_t i = 0; i < ARRAY_LEN(bad); i++)
        CHECK_MSG(run_factum(out, sizeof out, "--server %s --token %s key create %s", url, admin, bad[i]) == 1,
                  "%s: %s", bad[i], out);
    CHECK_EQ(run_factum(out, sizeof out, "--server %s --token %s key ls", url, admin), 0);
    CHECK_MSG(
        count(out, "\"id\"") == 3 && strstr(out, "\"max_appends_per_second\":250") &&
            strstr(out, "\"role\":\"admin\",\"streams\":[],\"groups\":[],\"name\":\"\",\"max_bytes_per_second\":65536"),
        "%s", out);
    /* POST /admin/keys says what is wrong. */
    char hdr[200];
    snprintf(hdr, sizeof hdr, "Authorization: Bearer %s\r\n", admin);
    expect_status(s.port, "POST", "/admin/keys", hdr, "{\"role\":\"writer\",\"max_appends_per_second\":-5}", 400,
                  "'max_appends_per_second' must be a whole number from 0 (no limit) to 10000000");
    char *keys = http_body(s.port, "GET", "/admin/keys", hdr, NULL, 200);
    CHECK_MSG(count(keys, "\"id\"") == 3, "%s", keys);
    free(keys);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    /* The server's defaults: whole numbers up to the same maximums. */
    static const char *const bad_serve[] = {"--key-max-appends-per-second -1", "--key-max-appends-per-second x",
                                            "--key-max-appends-per-second 10000001",
                                            "--key-max-bytes-per-second 10000000001"};
    for (size_t i = 0; i < ARRAY_LEN(bad_serve); i++) {
        CHECK_EQ(run_factum(out, sizeof out, "--data-dir %s serve --listen 127.0.0.1:0 %s", dir, bad_serve[i]), 2);
        CHECK_MSG(strstr(out, "wants a whole number from 0 (no limit) to"), "%s", out);
    }
}
