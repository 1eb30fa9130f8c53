/*
 * test_quotas.c — a key's own maximums on definitions (issue 17; src/server/limits.c,
 * src/sys/owners.c, docs/limits.md "Keys"). A key's max_groups, max_projections, max_sagas and
 * max_schedules parsed with each one past its maximum, and replayed from $keys. Then a real
 * server: a key at its maximum of each kind gets 409 naming its limit and nothing is written,
 * while another key defines on; redefining is never refused; deleting (a schedule firing)
 * makes room; after a restart each key's count is the same, rebuilt from the records' owners;
 * a revoked key's definitions stay; a new sink's group counts as its definer's. And
 * `factum key create`'s flags round-trip.
 */
#include "../src/auth/keys.h"
#include "test_defs.h"
#include "test_server.h"

#include <signal.h>
#include <string.h>

#define SOON "{\"delay_ms\":0,\"stream\":\"soon\",\"event\":{\"type\":\"Due\",\"data\":{}}}"

TEST(a_key_maximum_on_definitions_is_a_whole_number_up_to_its_maximum_on_keys_that_define_and_is_replayed) {
    auth_spec s;
    factum_error_t err = {0};
    CHECK_RC(auth_spec_parse(str_c("{\"role\":\"operator\"}"), 0, &s, &err), 0);
    for (int d = 0; d < AUTH_DEFS; d++)
        CHECK(s.max_definitions[d] == AUTH_DEF_UNSET);
    CHECK_RC(auth_spec_parse(str_c("{\"role\":\"admin\",\"max_groups\":0,\"max_projections\":1000000,"
                                   "\"max_sagas\":3,\"max_schedules\":4}"),
                             0, &s, &err),
             0);
    CHECK(s.max_definitions[AUTH_DEF_GROUPS] == 0 && s.max_definitions[AUTH_DEF_PROJECTIONS] == 1000000 &&
          s.max_definitions[AUTH_DEF_SAGAS] == 3 && s.max_definitions[AUTH_DEF_SCHEDULES] == 4);
    const char *bad[] = {
        "{\"role\":\"operator\",\"max_groups\":-1}",
        "{\"role\":\"operator\",\"max_groups\":\"2\"}",
        "{\"role\":\"operator\",\"max_projections\":1.5}",
        "{\"role\":\"operator\",\"max_sagas\":null}",
        "{\"role\":\"operator\",\"max_groups\":1000001}", /* one past the maximum */
        "{\"role\":\"operator\",\"max_schedules\":1000001}",
        "{\"role\":\"operator\",\"max_sagas\":99999999999999999999999}",
        "{\"role\":\"writer\",\"max_groups\":1}", /* a key that cannot define */
        "{\"role\":\"consumer\",\"max_schedules\":0}",
    };
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        err = (factum_error_t){0};
        CHECK_MSG(auth_spec_parse(str_c(bad[i]), 0, &s, &err) == FACTUM_EINVAL, "%s was taken", bad[i]);
        CHECK_MSG(strstr(err.message, "max_"), "%s: %s", bad[i], err.message);
    }
    /* Kept in KeyCreated only when given, and replayed; a key without them has none after. */
    factum_t *db = test_open(test_dir(), NULL);
    auth_keys_t *ks;
    CHECK_RC(auth_keys_open(db, &ks, &err), 0);
    char token[AUTH_TOKEN_LEN + 1], plain[AUTH_TOKEN_LEN + 1];
    auth_key k;
    CHECK_RC(auth_spec_parse(str_c("{\"role\":\"operator\",\"max_groups\":2,\"max_schedules\":0}"), 0, &s, &err), 0);
    CHECK_RC(auth_key_create(ks, &s, "local", token, &k, &err), 0);
    buf_t b = {0};
    auth_key_json(&k, &b);
    CHECK_MSG(strstr(b.ptr, "\"max_groups\":2,\"max_schedules\":0") && !strstr(b.ptr, "max_sagas"), "%s", b.ptr);
    buf_free(&b);
    CHECK_RC(auth_spec_parse(str_c("{\"role\":\"operator\"}"), 0, &s, &err), 0);
    CHECK_RC(auth_key_create(ks, &s, "local", plain, &k, &err), 0);
    auth_keys_close(ks);
    CHECK_RC(auth_keys_open(db, &ks, &err), 0);
    auth_who who;
    CHECK_EQ(auth_authenticate(ks, str_c(token), clock_realtime_us(), &who), AUTH_OK);
    CHECK(who.max_definitions[AUTH_DEF_GROUPS] == 2 && who.max_definitions[AUTH_DEF_SCHEDULES] == 0 &&
          who.max_definitions[AUTH_DEF_SAGAS] == AUTH_DEF_UNSET);
    CHECK_EQ(auth_authenticate(ks, str_c(plain), clock_realtime_us(), &who), AUTH_OK);
    for (int d = 0; d < AUTH_DEFS; d++)
        CHECK(who.max_definitions[d] == AUTH_DEF_UNSET);
    auth_keys_close(ks);
    factum_close(db);
}

/* ---- against a real server ---- */

typedef struct key {
    char token[AUTH_TOKEN_LEN + 1];
    char id[AUTH_ID_LEN + 1];
    char hdr[200]; /* its Authorization and Content-Type lines */
} key;

/* A key made through POST /admin/keys by admin (NULL while there is none). */
static key make_key(int port, const key *admin, const char *json) {
    key k;
    char *b = http_body(port, "POST", "/admin/keys", admin ? admin->hdr : NULL, json, 201);
    char *t = strstr(b, "\"token\":\""), *id = strstr(b, "\"id\":\"");
    CHECK_MSG(t && id, "%s", b);
    memcpy(k.token, t + 9, AUTH_TOKEN_LEN), k.token[AUTH_TOKEN_LEN] = 0;
    memcpy(k.id, id + 6, AUTH_ID_LEN), k.id[AUTH_ID_LEN] = 0;
    snprintf(k.hdr, sizeof k.hdr, "Authorization: Bearer %s\r\nContent-Type: application/json\r\n", k.token);
    free(b);
    return k;
}

typedef struct kind {
    const char *method, *path, *body, *member, *stream;
} kind;

static const kind kinds[] = {
    {"PUT", "/groups/%s-%d", GROUP, "max_groups", "%24groups"},
    {"PUT", "/projections/%s%d", PROJ, "max_projections", "%24projections"},
    {"PUT", "/sagas/%s%d", SAGA, "max_sagas", "%24sagas"},
    {"POST", "/schedules", SCHEDULE, "max_schedules", "%24schedules"},
};

/* Defines name `who`+i of kind k with key: the status (r answered, to free). */
static int define(int port, const key *k, const kind *kd, const char *who, int i, resp *r) {
    char path[100];
    snprintf(path, sizeof path, kd->path, who, i);
    http_do(port, kd->method, path, k->hdr, kd->body, r);
    return r->status;
}

/* Events in system stream enc (percent-encoded), read with admin. */
static int events_in(int port, const key *admin, const char *enc) {
    char path[200];
    snprintf(path, sizeof path, "/streams/%s?limit=1000", enc);
    resp r;
    http_do(port, "GET", path, admin->hdr, NULL, &r);
    int n = 0;
    for (const char *p = r.status == 200 ? r.body : ""; (p = strstr(p, "\"specversion\"")); p++)
        n++;
    resp_free(&r);
    return n;
}

/* Key a's next definition of kd is refused 409 naming a's limit of 2, and writes nothing. */
static void refused(int port, const key *admin, const key *a, const kind *kd, int i) {
    int n = events_in(port, admin, kd->stream);
    resp r;
    CHECK_MSG(define(port, a, kd, "a", i, &r) == 409, "%s one past: %d %s", kd->member, r.status, r.body);
    char want[200], says[200];
    snprintf(want, sizeof want, "\"limit\":\"%s\",\"key\":\"%s\",\"max\":2,\"current\":2", kd->member, a->id);
    snprintf(says, sizeof says, "key %s may define at most 2 ", a->id);
    CHECK_MSG(strstr(r.body, "urn:factum:problem:limit-reached") && strstr(r.body, want) && strstr(r.body, says) &&
                  strstr(r.body, kd->member),
              "%s", r.body);
    resp_free(&r);
    CHECK_MSG(events_in(port, admin, kd->stream) == n, "%s: the refused definition wrote a record", kd->member);
}

/* The id of the schedule r answered (at most 40 bytes). */
static void schedule_id(const resp *r, char out[48]) {
    const char *p = strstr(r->body, "\"id\":\"");
    CHECK_MSG(p, "%s", r->body);
    snprintf(out, 48, "%.*s", (int)strcspn(p + 6, "\""), p + 6);
}

TEST_T(a_key_at_its_maximum_of_each_kind_gets_409_writes_nothing_and_keeps_its_count_across_a_restart, 120) {
    const char *dir = test_dir();
    srv s = srv_start(dir, NULL);
    key admin = make_key(s.port, NULL, "{\"role\":\"admin\"}");
    key a =
        make_key(s.port, &admin,
                 "{\"role\":\"operator\",\"max_groups\":2,\"max_projections\":2,\"max_sagas\":2,\"max_schedules\":2}");
    key b = make_key(s.port, &admin, "{\"role\":\"operator\"}");
    char first_schedule[48] = "";
    for (size_t k = 0; k < ARRAY_LEN(kinds); k++) {
        const kind *kd = &kinds[k];
        resp r;
        for (int i = 0; i < 2; i++) {
            CHECK_MSG(define(s.port, &a, kd, "a", i, &r) == 201, "%s #%d: %d %s", kd->member, i, r.status, r.body);
            if (k == 3 && !i) schedule_id(&r, first_schedule);
            resp_free(&r);
        }
        refused(s.port, &admin, &a, kd, 2);
        /* Another key, and the admin key without maximums, are not held back by a's. */
        CHECK_MSG(define(s.port, &b, kd, "b", 0, &r) == 201, "b: %d %s", r.status, r.body);
        resp_free(&r);
        CHECK_MSG(define(s.port, &admin, kd, "m", 0, &r) == 201, "admin: %d %s", r.status, r.body);
        resp_free(&r);
        /* Redefining one of a's is never refused, whoever asks. */
        if (k < 3) {
            CHECK_MSG(define(s.port, &a, kd, "a", 0, &r) == 200, "again: %d %s", r.status, r.body);
            resp_free(&r);
            CHECK_MSG(define(s.port, &b, kd, "a", 1, &r) == 200, "b redefines: %d %s", r.status, r.body);
            resp_free(&r);
            refused(s.port, &admin, &a, kd, 2); /* and a still owns both */
        }
    }
    /* The records name their owner. */
    char *rec = http_body(s.port, "GET", "/streams/%24groups?limit=1000", admin.hdr, NULL, 200);
    char owner[40];
    snprintf(owner, sizeof owner, "\"owner\":\"%s\"", a.id);
    CHECK_MSG(strstr(rec, owner), "%s", rec);
    free(rec);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);

    /* After a restart the counts are the same: rebuilt from the records' owners. */
    s = srv_start(dir, NULL);
    for (size_t k = 0; k < ARRAY_LEN(kinds); k++) {
        resp r;
        refused(s.port, &admin, &a, &kinds[k], 3);
        CHECK_MSG(define(s.port, &b, &kinds[k], "b", 1, &r) == 201, "b: %d %s", r.status, r.body);
        resp_free(&r);
    }
    /* Deleting one (cancelling a schedule) makes room for exactly one more. */
    static const char *const gone[] = {"/groups/a-0", "/projections/a0", "/sagas/a0", NULL};
    for (size_t k = 0; k < ARRAY_LEN(kinds); k++) {
        char path[100];
        if (gone[k])
            snprintf(path, sizeof path, "%s", gone[k]);
        else
            snprintf(path, sizeof path, "/schedules/%s", first_schedule);
        expect_status(s.port, "DELETE", path, a.hdr, NULL, 200, NULL);
        resp r;
        CHECK_MSG(define(s.port, &a, &kinds[k], "a", 4, &r) == 201, "%s after a delete: %d %s", kinds[k].member,
                  r.status, r.body);
        resp_free(&r);
        refused(s.port, &admin, &a, &kinds[k], 5);
    }
    /* A revoked key's definitions stay, and count for nobody; the server's count keeps them. */
    char path[64];
    snprintf(path, sizeof path, "/admin/keys/%s", a.id);
    expect_status(s.port, "DELETE", path, admin.hdr, NULL, 200, NULL);
    expect_status(s.port, "GET", "/groups/a-1", admin.hdr, NULL, 200, NULL);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}

/* A sink's group is its definer's: a key at its max_groups gets a group's 409 for a new sink. */
TEST(a_new_sink_past_its_keys_max_groups_is_refused_and_creates_nothing) {
    srv s = srv_start(test_dir(), NULL);
    key admin = make_key(s.port, NULL, "{\"role\":\"admin\"}");
    key a = make_key(s.port, &admin, "{\"role\":\"admin\",\"max_groups\":1}");
    static const char sink[] = "{\"kind\":\"http-sink\",\"url\":\"https://127.0.0.1:1/\",\"allow_unreachable\":true,"
                               "\"source\":{\"stream\":\"a\"}}";
    expect_status(s.port, "PUT", "/connectors/s0", a.hdr, sink, 201, NULL); /* its one group */
    int n = events_in(s.port, &admin, "%24connectors");
    resp r;
    http_do(s.port, "PUT", "/connectors/s1", a.hdr, sink, &r);
    char want[120];
    snprintf(want, sizeof want, "\"limit\":\"max_groups\",\"key\":\"%s\",\"max\":1,\"current\":1", a.id);
    CHECK_MSG(r.status == 409 && strstr(r.body, want), "%d %s", r.status, r.body);
    resp_free(&r);
    CHECK_EQ(events_in(s.port, &admin, "%24connectors"), n);
    expect_status(s.port, "GET", "/groups/sink.s1", admin.hdr, NULL, 404, NULL);
    expect_status(s.port, "PUT", "/groups/g", a.hdr, GROUP, 409, "max_groups"); /* counted as a group */
    expect_status(s.port, "PUT", "/connectors/s0", a.hdr, sink, 200, NULL);     /* redefined: not new */
    expect_status(s.port, "PUT", "/connectors/s1", admin.hdr, sink, 201, NULL); /* another key has room */
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}

TEST_T(a_schedule_that_fired_gives_its_key_place_back, 60) {
    srv s = srv_start(test_dir(), NULL);
    key admin = make_key(s.port, NULL, "{\"role\":\"admin\"}");
    key a = make_key(s.port, &admin, "{\"role\":\"operator\",\"max_schedules\":1}");
    resp r;
    http_do(s.port, "POST", "/schedules", a.hdr, SOON, &r);
    CHECK_MSG(r.status == 201, "%d %s", r.status, r.body);
    char id[48], path[100];
    schedule_id(&r, id);
    resp_free(&r);
    /* Fired (polled, never timed): the place is free again. */
    snprintf(path, sizeof path, "/schedules/%s", id);
    bool fired = false;
    for (int i = 0; i < 200 && !fired; i++) {
        http_do(s.port, "GET", path, a.hdr, NULL, &r);
        fired = r.status == 200 && strstr(r.body, "\"state\":\"fired\"");
        resp_free(&r);
        if (!fired) usleep(50000);
    }
    CHECK_MSG(fired, "schedule %s did not fire in 10 s", id);
    http_do(s.port, "POST", "/schedules", a.hdr, SCHEDULE, &r);
    CHECK_MSG(r.status == 201, "%d %s", r.status, r.body);
    resp_free(&r);
    http_do(s.port, "POST", "/schedules", a.hdr, SCHEDULE, &r);
    CHECK_MSG(r.status == 409 && strstr(r.body, "\"limit\":\"max_schedules\""), "%d %s", r.status, r.body);
    resp_free(&r);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}

TEST(key_create_definition_flags_round_trip_through_key_ls_and_bad_values_make_no_key) {
    char out[8192];
    const char *dir = test_dir();
    CHECK_EQ(run_factum(out, sizeof out,
                        "--data-dir %s key create --role operator --max-groups 2 --max-projections 0 --max-sagas "
                        "1000000 --max-schedules 7",
                        dir),
             0);
    static const char *const bad[] = {
        "--role operator --max-groups -1",      "--role operator --max-groups abc",
        "--role operator --max-groups 1000001", "--role operator --max-schedules 1.5",
        "--role writer --max-sagas 1",
    };
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        CHECK_MSG(run_factum(out, sizeof out, "--data-dir %s key create %s", dir, bad[i]) == 1, "%s: %s", bad[i], out);
        CHECK_MSG(strstr(out, "max_") && !strstr(out, "fk_"), "%s: %s", bad[i], out);
    }
    CHECK_EQ(run_factum(out, sizeof out, "--data-dir %s key ls", dir), 0);
    const char *k = strstr(out, "\"id\"");
    CHECK_MSG(k && !strstr(k + 1, "\"id\"") && /* one key: the bad ones made none */
                  strstr(out, "\"max_groups\":2,\"max_projections\":0,\"max_sagas\":1000000,\"max_schedules\":7"),
              "%s", out);
}
