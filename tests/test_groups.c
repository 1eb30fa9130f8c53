/*
 * test_groups.c — consumer groups through the real server (what is built so far: define,
 * show, list, delete; pull with long poll and ack timeouts; ack): competing members get every
 * event, a member that dies holding messages loses none of them, acknowledgements survive a
 * SIGKILL, bad definitions are refused.
 */
#include "test_server.h"

#include "factum_client.h"

#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#define CE "Content-Type: application/cloudevents+json\r\n"

/* A JSON POST expecting `want` (and `has` in the body, if not NULL). */
static void post_json(int port, const char *path, const char *body, int want, const char *has) {
    expect_status(port, "POST", path, "Content-Type: application/json\r\n", body, want, has);
}

static void put_group(int port, const char *name, const char *body, int want) {
    char path[160];
    snprintf(path, sizeof path, "/groups/%s", name);
    resp r;
    http_do(port, "PUT", path, "Content-Type: application/json\r\n", body, &r);
    CHECK_MSG(r.status == want, "PUT %s: %d %s", path, r.status, r.body);
    resp_free(&r);
}

/* Pulls; fills keys with the delivery ids' keys and ids with the ids. Returns how many. */
static int pull(int port, const char *group, int max, int wait_ms, char ids[][32]) {
    char path[160];
    snprintf(path, sizeof path, "/groups/%s/messages?max=%d&wait_ms=%d", group, max, wait_ms);
    resp r;
    http_do(port, "POST", path, NULL, "", &r);
    CHECK_MSG(r.status == 200, "pull: %d %s", r.status, r.body);
    int n = 0;
    for (const char *p = r.body; (p = strstr(p, "\"delivery_id\":\"")); p += 15) {
        const char *e = strchr(p + 15, '"');
        snprintf(ids[n++], 32, "%.*s", (int)(e - p - 15), p + 15);
    }
    resp_free(&r);
    return n;
}

static void ack(int port, const char *group, char ids[][32], int n) {
    char path[160], body[65536];
    int len = snprintf(body, sizeof body, "{\"delivery_ids\":[");
    for (int i = 0; i < n; i++)
        len += snprintf(body + len, sizeof body - (size_t)len, "%s\"%s\"", i ? "," : "", ids[i]);
    snprintf(body + len, sizeof body - (size_t)len, "]}");
    snprintf(path, sizeof path, "/groups/%s/ack", group);
    resp r;
    http_do(port, "POST", path, "Content-Type: application/json\r\n", body, &r);
    CHECK_MSG(r.status == 200, "ack: %d %s", r.status, r.body);
    resp_free(&r);
}

#define EVENTS 600
static _Atomic int seen[EVENTS];
static _Atomic int total_acked; /* distinct events processed */

typedef struct {
    int port, member;
    bool dies; /* takes one batch and never acks it */
} member_arg;

static void *member(void *arg) {
    member_arg *m = arg;
    static char ids[8][200][32];
    char(*mine)[32] = ids[m->member];
    uint64_t give_up = clock_mono_ns() + 30000000000ull;
    while (total_acked < EVENTS && clock_mono_ns() < give_up) {
        int n = pull(m->port, "workers", 50, 300, mine);
        if (n == 0) continue;
        if (m->dies) return NULL; /* holding n messages, never acknowledged */
        for (int i = 0; i < n; i++) {
            int k = atoi(mine[i]);                           /* key = position; events are positions 0..EVENTS-1 */
            if (k < EVENTS && seen[k]++ == 0) total_acked++; /* counts distinct events */
        }
        ack(m->port, "workers", mine, n);
    }
    return NULL;
}

TEST_T(competing_members_get_every_event_and_a_dead_members_messages_come_back, 120) {
    srv s = srv_start(test_dir(), NULL);
    for (int i = 0; i < EVENTS; i++) {
        resp r;
        char path[32];
        snprintf(path, sizeof path, "/streams/job-%d", i % 13);
        http_do(s.port, "POST", path, CE, "{\"type\":\"Job\"}", &r);
        CHECK_EQ(r.status, 201);
        resp_free(&r);
    }
    put_group(s.port, "workers",
              "{\"source\":{\"category\":\"job\"},\"start\":\"earliest\",\"ack_timeout_ms\":700,"
              "\"retry\":{\"min_delay_ms\":100,\"max_delay_ms\":1000}}",
              201);
    pthread_t th[4];
    member_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (member_arg){s.port, i, i == 0};
        pthread_create(&th[i], NULL, member, &args[i]);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < EVENTS; i++)
        CHECK_MSG(seen[i] >= 1, "event %d was never processed", i);
    resp r;
    http_do(s.port, "GET", "/groups/workers", NULL, NULL, &r);
    CHECK_MSG(strstr(r.body, "\"in_flight\":0") && strstr(r.body, "\"redelivered\":"), "%s", r.body);
    const char *cp = strstr(r.body, "\"checkpoint\":");
    CHECK_MSG(cp && atoi(cp + 13) >= EVENTS, "%s", r.body); /* past every job (and the group's own records) */
    CHECK(strstr(r.body, "\"redelivered\":50"));            /* the dead member's one batch */
    resp_free(&r);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}

TEST_T(acknowledgements_survive_a_kill_and_unacknowledged_events_come_again, 60) {
    srv s = srv_start(test_dir(), NULL);
    for (int i = 0; i < 10; i++) {
        expect_status(s.port, "POST", "/streams/acct-1", CE, "{\"type\":\"T\"}", 201, NULL);
    }
    put_group(s.port, "g", "{\"source\":{\"stream\":\"acct-1\"},\"start\":\"earliest\"}", 201);
    char ids[20][32];
    CHECK_EQ(pull(s.port, "g", 6, 0, ids), 6);
    /* Ack 0, 1, 2 and 4: the floor is 3, 4 is done above it, 3 and 5 are in flight. */
    char acked[4][32];
    memcpy(acked[0], ids[0], 32), memcpy(acked[1], ids[1], 32), memcpy(acked[2], ids[2], 32),
        memcpy(acked[3], ids[4], 32);
    ack(s.port, "g", acked, 4);
    srv_stop(&s, SIGKILL);
    s = srv_start(test_dir(), NULL);
    /* After the crash: 3 and 5 again (at-least-once), then 6..9; never 0, 1, 2 or 4. */
    int n = pull(s.port, "g", 20, 0, ids);
    CHECK_EQ(n, 6);
    const char *want[] = {"3.1", "5.1", "6.1", "7.1", "8.1", "9.1"};
    for (int i = 0; i < 6; i++)
        CHECK_MSG(!strcmp(ids[i], want[i]), "delivery %d is %s, want %s", i, ids[i], want[i]);
    /* A group of the same name made again starts afresh. */
    resp r;
    http_do(s.port, "DELETE", "/groups/g", NULL, NULL, &r);
    CHECK_EQ(r.status, 200);
    resp_free(&r);
    http_do(s.port, "GET", "/groups/g", NULL, NULL, &r);
    CHECK_EQ(r.status, 404);
    resp_free(&r);
    put_group(s.port, "g", "{\"source\":{\"stream\":\"acct-1\"},\"start\":\"earliest\"}", 201);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    s = srv_start(test_dir(), NULL);
    CHECK_EQ(pull(s.port, "g", 20, 0, ids), 10);
    CHECK(!strcmp(ids[0], "0.1"));
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}

TEST(group_definitions_are_checked_and_listed) {
    srv s = srv_start(test_dir(), NULL);
    put_group(s.port, "a",
              "{\"source\":{\"all\":{\"types\":[\"X\",\"Y\"],\"categories\":[\"order\"]}},\"start\":\"latest\"}", 201);
    put_group(s.port, "a",
              "{\"source\":{\"all\":{\"types\":[\"X\",\"Y\"],\"categories\":[\"order\"]}},\"ack_timeout_ms\":5000}",
              200);
    put_group(s.port, "a", "{\"source\":{\"category\":\"order\"}}", 400); /* the source cannot change */
    put_group(s.port, "b", "{\"source\":{}}", 400);
    put_group(s.port, "b", "{\"source\":{\"stream\":\"a/b\"}}", 400);
    put_group(s.port, "b", "{\"source\":{\"stream\":\"s-1\"},\"start\":\"yesterday\"}", 400);
    put_group(s.port, "b", "{\"source\":{\"stream\":\"s-1\"},\"ack_timeout_ms\":99}", 400);
    put_group(s.port, "b", "{\"source\":{\"stream\":\"s-1\"},\"retry\":{\"min_delay_ms\":5,\"max_delay_ms\":1}}", 400);
    put_group(s.port, "bad%20name", "{\"source\":{\"stream\":\"s-1\"}}", 400);
    put_group(s.port, "b", "{\"source\":{\"stream\":\"s-1\"},\"start\":\"2026-01-01T00:00:00Z\"}", 201);
    resp r;
    http_do(s.port, "GET", "/groups", NULL, NULL, &r);
    CHECK(strstr(r.body, "\"name\":\"a\"") && strstr(r.body, "\"name\":\"b\"") &&
          strstr(r.body, "\"ack_timeout_ms\":5000"));
    resp_free(&r);
    http_do(s.port, "POST", "/groups/nope/messages?max=1", NULL, "", &r);
    CHECK_EQ(r.status, 404);
    resp_free(&r);
    http_do(s.port, "POST", "/groups/a/messages?max=0", NULL, "", &r);
    CHECK_EQ(r.status, 400);
    resp_free(&r);
    http_do(s.port, "POST", "/groups/a/ack", "Content-Type: application/json\r\n", "{\"delivery_ids\":[\"x\"]}", &r);
    CHECK_EQ(r.status, 400);
    resp_free(&r);
    /* $all with type and category lists: only matching events. */
    const char *evs[][2] = {{"order-1", "X"}, {"order-2", "Z"}, {"cart-1", "X"}, {"order-3", "Y"}};
    for (int i = 0; i < 4; i++) {
        char path[64], body[64];
        snprintf(path, sizeof path, "/streams/%s", evs[i][0]);
        snprintf(body, sizeof body, "{\"type\":\"%s\"}", evs[i][1]);
        http_do(s.port, "POST", path, CE, body, &r);
        resp_free(&r);
    }
    char ids[10][32];
    http_do(s.port, "POST", "/groups/a/messages?max=10", NULL, "", &r);
    CHECK_MSG(strstr(r.body, "order-1") && strstr(r.body, "order-3") && !strstr(r.body, "order-2") &&
                  !strstr(r.body, "cart-1"),
              "%s", r.body);
    resp_free(&r);
    (void)ids;
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}

TEST_T(retries_back_off_park_after_max_deliveries_and_replay_once, 60) {
    srv s = srv_start(test_dir(), NULL);
    for (int i = 0; i < 3; i++) {
        resp r;
        char body[64];
        snprintf(body, sizeof body, "{\"type\":\"Pay\",\"data\":{\"n\":%d}}", i);
        http_do(s.port, "POST", "/streams/pay-1", CE, body, &r);
        resp_free(&r);
    }
    put_group(s.port, "p",
              "{\"source\":{\"stream\":\"pay-1\"},\"start\":\"earliest\",\"max_deliveries\":3,\"ack_timeout_ms\":300,"
              "\"retry\":{\"min_delay_ms\":200,\"max_delay_ms\":400}}",
              201);
    char ids[10][32];
    CHECK_EQ(pull(s.port, "p", 3, 0, ids), 3);
    /* 0: retry (backoff 200 ms +-20%), 1: park, 2: skip */
    post_json(s.port, "/groups/p/nack", "{\"delivery_ids\":[\"0.1\"],\"action\":\"retry\",\"reason\":\"db down\"}", 200,
              "\"nacked\":1");
    post_json(s.port, "/groups/p/nack", "{\"delivery_ids\":[\"1.1\"],\"action\":\"park\",\"reason\":\"bad data\"}", 200,
              NULL);
    post_json(s.port, "/groups/p/nack", "{\"delivery_ids\":[\"2.1\"],\"action\":\"skip\"}", 200, NULL);
    post_json(s.port, "/groups/p/nack", "{\"delivery_ids\":[\"2.1\"],\"action\":\"skip\"}", 409, NULL);
    post_json(s.port, "/groups/p/nack", "{\"delivery_ids\":[\"0.1\"],\"action\":\"later\"}", 400, NULL);
    uint64_t t0 = clock_mono_ns();
    CHECK_EQ(pull(s.port, "p", 3, 100, ids), 0); /* not before its delay */
    CHECK_EQ(pull(s.port, "p", 3, 2000, ids), 1);
    uint64_t waited = (clock_mono_ns() - t0) / 1000000;
    CHECK_MSG(waited >= 150 && waited < 1200, "the retry came after %llu ms, want about 200",
              (unsigned long long)waited);
    CHECK(!strcmp(ids[0], "0.2"));
    /* Attempt 2 times out (300 ms), then attempt 3 is nacked: past max_deliveries it parks. */
    CHECK_EQ(pull(s.port, "p", 3, 3000, ids), 1);
    CHECK_MSG(!strcmp(ids[0], "0.3"), "got %s", ids[0]);
    post_json(s.port, "/groups/p/nack", "{\"delivery_ids\":[\"0.3\"],\"reason\":\"still down\"}", 200, NULL);
    resp r;
    http_do(s.port, "GET", "/groups/p/parked", NULL, NULL, &r);
    CHECK_MSG(strstr(r.body, "\"delivery_id\":\"1\",\"attempts\":1,\"reason\":\"bad data\"") &&
                  strstr(r.body, "\"delivery_id\":\"0\",\"attempts\":3,\"reason\":\"still down\"") &&
                  strstr(r.body, "\"data\":{\"n\":1}") && strstr(r.body, "\"parked_at\":\""),
              "%s", r.body);
    resp_free(&r);
    http_do(s.port, "GET", "/groups/p/parked/1", NULL, NULL, &r); /* inspect one */
    CHECK_MSG(r.status == 200 && r.body[0] == '{' && strstr(r.body, "\"reason\":\"bad data\""), "%s", r.body);
    resp_free(&r);
    http_do(s.port, "GET", "/groups/p/parked/2", NULL, NULL, &r);
    CHECK_EQ(r.status, 404);
    resp_free(&r);
    /* The parked state survives a kill. */
    srv_stop(&s, SIGKILL);
    s = srv_start(test_dir(), NULL);
    http_do(s.port, "GET", "/groups/p", NULL, NULL, &r);
    CHECK_MSG(strstr(r.body, "\"parked\":2") && strstr(r.body, "\"in_flight\":0"), "%s", r.body);
    resp_free(&r);
    CHECK_EQ(pull(s.port, "p", 3, 0, ids), 0);
    /* Replay one: delivered once more; failing again parks it again (no loop). */
    post_json(s.port, "/groups/p/parked/replay", "{\"delivery_ids\":[\"1\"]}", 200, "\"replayed\":1");
    /* Its attempt count is reset (attempt 1 again); the id goes on from the delivery before (1.1),
       so no delivery id is ever reused. */
    char *b = http_body(s.port, "POST", "/groups/p/messages?max=3", NULL, "", 200);
    CHECK_MSG(strstr(b, "\"delivery_id\":\"1.2\",\"attempt\":1,") && !strstr(b, "\"delivery_id\":\"0."), "%s", b);
    free(b);
    post_json(s.port, "/groups/p/nack", "{\"delivery_ids\":[\"1.2\"],\"reason\":\"again\"}", 200, NULL);
    CHECK_EQ(pull(s.port, "p", 3, 300, ids), 0); /* a replayed event that fails again is parked again */
    /* Replay all, ack them; delete one parked. */
    post_json(s.port, "/groups/p/parked/replay", "", 200, "\"replayed\":2");
    CHECK_EQ(pull(s.port, "p", 3, 0, ids), 2);
    ack(s.port, "p", ids, 2);
    http_do(s.port, "GET", "/groups/p", NULL, NULL, &r);
    CHECK_MSG(strstr(r.body, "\"parked\":0") && strstr(r.body, "\"checkpoint\":3"), "%s", r.body);
    resp_free(&r);
    http_do(s.port, "DELETE", "/groups/p/parked/7", NULL, NULL, &r);
    CHECK_EQ(r.status, 404);
    resp_free(&r);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}

/* ---- by_stream: a property test with random failures ---- */

#define BS_STREAMS 12
#define BS_EVENTS 20 /* per stream */
static pthread_mutex_t bs_mu = PTHREAD_MUTEX_INITIALIZER;
static int bs_done[BS_STREAMS];   /* revisions of each stream processed (acked or skipped) in order */
static int bs_holder[BS_STREAMS]; /* the member holding an event of the stream, or -1 */
static _Atomic int bs_total;

typedef struct {
    int port, member;
    uint64_t seed;
} bs_arg;

static void *bs_member(void *arg) {
    bs_arg *m = arg;
    uint64_t x = m->seed;
    char ids[20][32], path[64];
    uint64_t give_up = clock_mono_ns() + 60000000000ull;
    while (bs_total < BS_STREAMS * BS_EVENTS && clock_mono_ns() < give_up) {
        resp r;
        http_do(m->port, "POST", "/groups/ordered/messages?max=5&wait_ms=200", NULL, "", &r);
        CHECK_EQ(r.status, 200);
        int n = 0, streams[20], revs[20];
        for (const char *p = r.body; (p = strstr(p, "\"delivery_id\":\"")); p += 15) {
            const char *e = strchr(p + 15, '"');
            snprintf(ids[n], 32, "%.*s", (int)(e - p - 15), p + 15);
            const char *sp = strstr(p, "\"stream\":\"ord-"), *rp = strstr(p, "\"revision\":");
            CHECK(sp && rp);
            streams[n] = atoi(sp + 14), revs[n] = atoi(rp + 11);
            n++;
        }
        resp_free(&r);
        /* The property: every event handed out is the next of its stream, and no other member
           holds an event of that stream. */
        pthread_mutex_lock(&bs_mu);
        for (int i = 0; i < n; i++) {
            int s = streams[i];
            CHECK_MSG(revs[i] == bs_done[s], "stream ord-%d: got revision %d, next in order is %d", s, revs[i],
                      bs_done[s]);
            CHECK_MSG(bs_holder[s] == -1 || bs_holder[s] == m->member, "stream ord-%d held by two members", s);
            for (int j = 0; j < i; j++)
                CHECK_MSG(streams[j] != s, "two events of ord-%d in one batch", s);
            bs_holder[s] = m->member;
        }
        pthread_mutex_unlock(&bs_mu);
        for (int i = 0; i < n; i++) {
            x = x * 6364136223846793005u + 1442695040888963407u;
            int roll = (int)((x >> 33) % 10);
            const char *body;
            char b[128];
            if (roll < 3) { /* fail: retry (it comes back, in order) */
                snprintf(b, sizeof b, "{\"delivery_ids\":[\"%s\"],\"action\":\"retry\",\"delay_ms\":%d}", ids[i],
                         roll * 20);
                body = b, snprintf(path, sizeof path, "/groups/ordered/nack");
            } else if (roll == 3) { /* skip counts as processed */
                snprintf(b, sizeof b, "{\"delivery_ids\":[\"%s\"],\"action\":\"skip\"}", ids[i]);
                body = b, snprintf(path, sizeof path, "/groups/ordered/nack");
            } else {
                snprintf(b, sizeof b, "{\"delivery_ids\":[\"%s\"]}", ids[i]);
                body = b, snprintf(path, sizeof path, "/groups/ordered/ack");
            }
            pthread_mutex_lock(&bs_mu);
            if (roll >= 3) bs_done[streams[i]]++, bs_total++;
            bs_holder[streams[i]] = -1; /* released before the answer: the next may come at once */
            pthread_mutex_unlock(&bs_mu);
            http_do(m->port, "POST", path, "Content-Type: application/json\r\n", body, &r);
            CHECK_MSG(r.status == 200, "%s %s: %d %s", path, body, r.status, r.body);
            resp_free(&r);
        }
    }
    return NULL;
}

TEST_T(by_stream_delivers_each_streams_events_in_order_to_one_member_at_a_time, 120) {
    srv s = srv_start(test_dir(), NULL);
    for (int i = 0; i < BS_STREAMS * BS_EVENTS; i++) {
        resp r;
        char path[32];
        snprintf(path, sizeof path, "/streams/ord-%d", i % BS_STREAMS); /* the streams interleave */
        http_do(s.port, "POST", path, CE, "{\"type\":\"Step\"}", &r);
        CHECK_EQ(r.status, 201);
        resp_free(&r);
    }
    put_group(
        s.port, "ordered",
        "{\"source\":{\"category\":\"ord\"},\"start\":\"earliest\",\"strategy\":\"by_stream\",\"max_deliveries\":1000,"
        "\"ack_timeout_ms\":10000,\"retry\":{\"min_delay_ms\":0,\"max_delay_ms\":50}}",
        201);
    for (int i = 0; i < BS_STREAMS; i++)
        bs_holder[i] = -1;
    int members = getenv("BS_MEMBERS") ? atoi(getenv("BS_MEMBERS")) : 3;
    pthread_t th[3];
    bs_arg args[3];
    for (int i = 0; i < members; i++) {
        args[i] = (bs_arg){s.port, i, test_seed() + (uint64_t)i * 7919};
        pthread_create(&th[i], NULL, bs_member, &args[i]);
    }
    for (int i = 0; i < members; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < BS_STREAMS; i++)
        CHECK_MSG(bs_done[i] == BS_EVENTS, "stream ord-%d: %d of %d processed", i, bs_done[i], BS_EVENTS);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}

TEST(by_stream_a_parked_event_holds_back_its_stream_only) {
    srv s = srv_start(test_dir(), NULL);
    const char *streams[] = {"ship-a", "ship-b", "ship-a", "ship-b"};
    for (int i = 0; i < 4; i++) {
        resp r;
        char path[32];
        snprintf(path, sizeof path, "/streams/%s", streams[i]);
        http_do(s.port, "POST", path, CE, "{\"type\":\"Ship\"}", &r);
        resp_free(&r);
    }
    put_group(s.port, "ship", "{\"source\":{\"category\":\"ship\"},\"start\":\"earliest\",\"strategy\":\"by_stream\"}",
              201);
    char ids[10][32];
    CHECK_EQ(pull(s.port, "ship", 10, 0, ids), 2); /* the first of each stream */
    CHECK(!strcmp(ids[0], "0.1") && !strcmp(ids[1], "1.1"));
    post_json(s.port, "/groups/ship/nack", "{\"delivery_ids\":[\"0.1\"],\"action\":\"park\",\"reason\":\"no address\"}",
              200, NULL);
    ack(s.port, "ship", &ids[1], 1);
    CHECK_EQ(pull(s.port, "ship", 10, 0, ids), 1); /* ship-b flows; ship-a waits behind its parked event */
    CHECK(!strcmp(ids[0], "3.1"));
    ack(s.port, "ship", ids, 1);
    CHECK_EQ(pull(s.port, "ship", 10, 0, ids), 0);
    post_json(s.port, "/groups/ship/parked/replay", "", 200, NULL);
    CHECK_EQ(pull(s.port, "ship", 10, 0, ids), 1);
    CHECK_MSG(!strcmp(ids[0], "0.2"), "got %s", ids[0]); /* one more delivery after replay: its second */
    ack(s.port, "ship", ids, 1);
    CHECK_EQ(pull(s.port, "ship", 10, 0, ids), 1);
    CHECK(!strcmp(ids[0], "2.1"));
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}

/* ---- crash: kill -9 the server while members consume ---- */

#define CR_EVENTS 20000
static _Atomic int cr_acked[CR_EVENTS];   /* 1 once an ack of it was answered 200 */
static _Atomic int cr_handled[CR_EVENTS]; /* a member processed it and sent an ack (answered or not) */
static _Atomic int cr_processed;          /* distinct events handled */

typedef struct {
    int port;
} cr_arg;

static void *cr_member(void *arg) {
    cr_arg *m = arg;
    for (;;) {
        resp r;
        if (http_try(m->port, "POST", "/groups/crash/messages?max=5&wait_ms=200", NULL, "", &r) != 200) {
            resp_free(&r);
            return NULL; /* the server is gone */
        }
        char ids[20][32];
        int n = 0;
        for (const char *p = r.body; (p = strstr(p, "\"delivery_id\":\"")); p += 15) {
            const char *e = strchr(p + 15, '"');
            snprintf(ids[n++], 32, "%.*s", (int)(e - p - 15), p + 15);
        }
        resp_free(&r);
        char body[1024];
        int len = snprintf(body, sizeof body, "{\"delivery_ids\":[");
        for (int i = 0; i < n; i++) {
            int k = atoi(ids[i]);
            /* The contract: an event whose ack was answered is never delivered again. */
            CHECK_MSG(k >= CR_EVENTS || !cr_acked[k], "event %d delivered again (as %s) after its ack was answered", k,
                      ids[i]);
            len += snprintf(body + len, sizeof body - (size_t)len, "%s\"%s\"", i ? "," : "", ids[i]);
        }
        snprintf(body + len, sizeof body - (size_t)len, "]}");
        if (!n) continue;
        for (int i = 0; i < n; i++) {
            int k = atoi(ids[i]);
            if (k < CR_EVENTS && !cr_handled[k]++) cr_processed++;
        }
        int st = http_try(m->port, "POST", "/groups/crash/ack", "Content-Type: application/json\r\n", body, &r);
        resp_free(&r);
        if (st != 200) return NULL; /* unanswered: it may come again, which at-least-once allows */
        for (int i = 0; i < n; i++) {
            int k = atoi(ids[i]);
            if (k < CR_EVENTS) cr_acked[k] = 1;
        }
    }
}

TEST_T(killing_the_server_during_consumption_keeps_the_group_contract, 180) {
    srv s = srv_start(test_dir(), NULL);
    static char batch[100 * 24 + 8];
    for (int i = 0; i < CR_EVENTS / 100; i++) {
        int n = snprintf(batch, sizeof batch, "[");
        for (int k = 0; k < 100; k++)
            n += snprintf(batch + n, sizeof batch - (size_t)n, "%s{\"type\":\"Work\"}", k ? "," : "");
        snprintf(batch + n, sizeof batch - (size_t)n, "]");
        resp r;
        char path[32];
        snprintf(path, sizeof path, "/streams/crash-%d", i % 9);
        http_do(s.port, "POST", path, "Content-Type: application/json\r\n", batch, &r);
        CHECK_EQ(r.status, 201);
        resp_free(&r);
    }
    put_group(s.port, "crash",
              "{\"source\":{\"category\":\"crash\"},\"start\":\"earliest\",\"ack_timeout_ms\":1000,"
              "\"retry\":{\"min_delay_ms\":10,\"max_delay_ms\":100}}",
              201);
    char listen[64];
    snprintf(listen, sizeof listen, "--listen 127.0.0.1:%d", s.port);
    int cycle = 0;
    for (; cycle < 12 && cr_processed < CR_EVENTS; cycle++) {
        pthread_t th[3];
        cr_arg a = {s.port};
        for (int i = 0; i < 3; i++)
            pthread_create(&th[i], NULL, cr_member, &a);
        usleep((useconds_t)(30000 + test_rand() % 120000));
        srv_stop(&s, SIGKILL);
        for (int i = 0; i < 3; i++)
            pthread_join(th[i], NULL);
        s = srv_start(test_dir(), listen);
    }
    /* Finish without kills: everything is processed. */
    pthread_t th[3];
    cr_arg a = {s.port};
    for (int i = 0; i < 3; i++)
        pthread_create(&th[i], NULL, cr_member, &a);
    for (int t = 0; t < 300 && cr_processed < CR_EVENTS; t++)
        usleep(100000);
    srv_stop(&s, SIGTERM);
    for (int i = 0; i < 3; i++)
        pthread_join(th[i], NULL);
    CHECK_MSG(cr_processed == CR_EVENTS, "%d of %d events processed", (int)cr_processed, CR_EVENTS);
    CHECK_MSG(cycle >= 3, "only %d kills happened during consumption", cycle);
    fprintf(stderr, "    %d kills during consumption\n", cycle);
}

TEST(group_stats_show_lag_and_parked_age_in_the_api_and_metrics) {
    srv s = srv_start(test_dir(), NULL);
    for (int i = 0; i < 3; i++) {
        expect_status(s.port, "POST", "/streams/lag-1", CE, "{\"type\":\"L\"}", 201, NULL);
    }
    usleep(200000);
    put_group(s.port, "lagging", "{\"source\":{\"stream\":\"lag-1\"},\"start\":\"earliest\"}", 201);
    char ids[5][32];
    CHECK_EQ(pull(s.port, "lagging", 1, 0, ids), 1);
    post_json(s.port, "/groups/lagging/nack", "{\"delivery_ids\":[\"0.1\"],\"action\":\"park\",\"reason\":\"x\"}", 200,
              NULL);
    resp r;
    http_do(s.port, "GET", "/groups/lagging", NULL, NULL, &r);
    const char *lag = strstr(r.body, "\"lag_seconds\":");
    CHECK_MSG(lag && atof(lag + 14) >= 0.15, "%s", r.body);
    CHECK(strstr(r.body, "\"lag_events\":2") && strstr(r.body, "\"parked\":1") &&
          strstr(r.body, "\"oldest_parked_seconds\":") && strstr(r.body, "\"delivery_rate\":") &&
          strstr(r.body, "\"redelivery_rate\":"));
    resp_free(&r);
    http_do(s.port, "GET", "/metrics", NULL, NULL, &r);
    CHECK_MSG(strstr(r.body, "factum_group_lag_events{group=\"lagging\"} 2") &&
                  strstr(r.body, "factum_group_parked{group=\"lagging\"} 1") &&
                  strstr(r.body, "# TYPE factum_group_acked_total counter") &&
                  strstr(r.body, "factum_group_lag_seconds{group=\"lagging\"} "),
              "%s", r.body);
    resp_free(&r);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}

/* Reads SSE deliveries from fd until n arrived or ms passed; ids into out. */
static int push_read(int fd, char *buf, size_t *len, size_t cap, int n, int ms, char out[][32]) {
    int got = 0;
    uint64_t end = clock_mono_ns() + (uint64_t)ms * 1000000;
    while (got < n && clock_mono_ns() < end) {
        char *p = memmem(buf, *len, "\n\n", 2);
        if (p) {
            size_t m = (size_t)(p - buf) + 2;
            char *id = memmem(buf, m, "\nid: ", 5);
            if (!id && !strncmp(buf, "id: ", 4)) id = buf - 1;
            if (id) {
                char *e = memchr(id + 5, '\n', (size_t)(buf + m - id - 5));
                snprintf(out[got++], 32, "%.*s", (int)(e - id - 5), id + 5);
            }
            memmove(buf, buf + m, *len - m);
            *len -= m;
            continue;
        }
        struct timeval tv = {0, 50000};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        ssize_t r = recv(fd, buf + *len, cap - *len, 0);
        if (r > 0)
            *len += (size_t)r;
        else if (r == 0)
            break;
    }
    return got;
}

TEST_T(push_members_get_at_most_their_limit_and_a_lost_members_messages_move_on, 60) {
    srv s = srv_start(test_dir(), NULL);
    for (int i = 0; i < 6; i++) {
        expect_status(s.port, "POST", "/streams/push-1", CE, "{\"type\":\"P\"}", 201, NULL);
    }
    put_group(s.port, "pushed",
              "{\"source\":{\"stream\":\"push-1\"},\"start\":\"earliest\",\"retry\":{\"min_delay_ms\":0,\"max_delay_"
              "ms\":10}}",
              201);
    int a = http_connect(s.port);
    const char *req =
        "GET /groups/pushed/messages?max_in_flight=2 HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n";
    http_send(a, req, strlen(req));
    static char buf[65536];
    size_t len = 0;
    char ids[10][32];
    CHECK_EQ(push_read(a, buf, &len, sizeof buf, 3, 500, ids), 2); /* its limit: 2 unacknowledged */
    CHECK(!strcmp(ids[0], "0.1") && !strcmp(ids[1], "1.1"));
    ack(s.port, "pushed", ids, 1);
    CHECK_EQ(push_read(a, buf, &len, sizeof buf, 2, 500, ids + 2), 1); /* one acked: one more */
    CHECK_MSG(!strcmp(ids[2], "2.1"), "got %s", ids[2]);
    /* The member goes away holding 1.1 and 2.1: another member gets them soon, not after the ack timeout. */
    close(a);
    int b = http_connect(s.port);
    http_send(b, req, strlen(req));
    len = 0;
    uint64_t t0 = clock_mono_ns();
    bool again1 = false, again2 = false;
    while (!(again1 && again2) && clock_mono_ns() - t0 < 3000000000ull) {
        char one[1][32];
        if (push_read(b, buf, &len, sizeof buf, 1, 200, one) != 1) continue;
        again1 |= !strcmp(one[0], "1.2"), again2 |= !strcmp(one[0], "2.2");
        ack(s.port, "pushed", one, 1);
    }
    CHECK_MSG(again1 && again2, "the lost member's deliveries did not come again");
    CHECK_MSG((clock_mono_ns() - t0) / 1000000 < 2000, "redelivery took %llu ms",
              (unsigned long long)((clock_mono_ns() - t0) / 1000000));
    close(b);
    resp r;
    http_do(s.port, "GET", "/groups/pushed/messages", NULL, NULL, &r);
    CHECK_EQ(r.status, 406);
    resp_free(&r);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}

/* The members there now: push connections and pulls waiting, counted in and out on every path
   (a pull answered, one that ran out of time, one whose connection closed, a push member gone). */
TEST(group_stats_count_the_members_there_now_push_connections_and_waiting_pulls) {
    srv s = srv_start(test_dir(), NULL);
    put_group(s.port, "present", "{\"source\":{\"stream\":\"here-1\"},\"start\":\"earliest\"}", 201);
    const char *push =
        "GET /groups/present/messages?max_in_flight=1 HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n";
    const char *wait = "POST /groups/present/messages?max=1&wait_ms=20000 HTTP/1.1\r\nHost: localhost\r\n"
                       "Content-Length: 0\r\n\r\n";
    int p1 = http_connect(s.port), p2 = http_connect(s.port), w = http_connect(s.port);
    http_send(p1, push, strlen(push));
    http_send(p2, push, strlen(push));
    http_send(w, wait, strlen(wait));
    CHECK(http_wait_body(s.port, "/groups/present", "\"push_members\":2,\"waiting_pulls\":1,", 10));
    CHECK(http_wait_body(s.port, "/metrics", "factum_group_push_members{group=\"present\"} 2\n", 10));
    CHECK(http_wait_body(s.port, "/metrics", "factum_group_waiting_pulls{group=\"present\"} 1\n", 10));
    close(p2); /* a push member goes; the waiting pull's connection closes */
    close(w);
    CHECK(http_wait_body(s.port, "/groups/present", "\"push_members\":1,\"waiting_pulls\":0,", 10));
    /* A pull that runs out of time, and one answered by an append, are counted out too. */
    char ids[2][32];
    CHECK_EQ(pull(s.port, "present", 1, 200, ids), 0);
    CHECK(http_wait_body(s.port, "/groups/present", "\"waiting_pulls\":0,", 10));
    close(p1);
    w = http_connect(s.port);
    http_send(w, wait, strlen(wait));
    CHECK(http_wait_body(s.port, "/groups/present", "\"push_members\":0,\"waiting_pulls\":1,", 10));
    expect_status(s.port, "POST", "/streams/here-1", CE, "{\"type\":\"H\"}", 201, NULL);
    CHECK(http_wait_body(s.port, "/groups/present", "\"push_members\":0,\"waiting_pulls\":0,", 10));
    close(w);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}

TEST_T(checkpoints_bound_the_replay_restore_the_same_state_and_make_older_records_reclaimable, 180) {
    /* Segments small enough that most records end up in sealed ones, large enough for a
       Checkpoint of 2,000 entries. */
    srv s = srv_start(test_dir(), "--segment-bytes 524288 --scavenge-every 0");
    static char batch[100 * 20];
    int n = snprintf(batch, sizeof batch, "[");
    for (int i = 0; i < 100; i++)
        n += snprintf(batch + n, sizeof batch - (size_t)n, "%s{\"type\":\"C\"}", i ? "," : "");
    snprintf(batch + n, sizeof batch - (size_t)n, "]");
    for (int i = 0; i < 26; i++) /* 2,600 events, in batches that fit small segments */
        expect_status(s.port, "POST", "/streams/cp-1", "Content-Type: application/json\r\n", batch, 201, NULL);
    resp r;
    put_group(s.port, "cp",
              "{\"source\":{\"stream\":\"cp-1\"},\"start\":\"earliest\",\"retry\":{\"min_delay_ms\":60000,\"max_delay_"
              "ms\":60000}}",
              201);
    /* 2,500 records: one ack per request; every 10th event nacked for a later retry, one parked. */
    char ids[10][32];
    for (int i = 0; i < 2500; i++) {
        CHECK_EQ(pull(s.port, "cp", 1, 0, ids), 1);
        if (i == 7)
            post_json(s.port, "/groups/cp/nack",
                      "{\"delivery_ids\":[\"7.1\"],\"action\":\"park\",\"reason\":\"seven\"}", 200, NULL);
        else if (i % 10 == 3) {
            char body[96];
            snprintf(body, sizeof body, "{\"delivery_ids\":[\"%s\"],\"action\":\"retry\"}", ids[0]);
            post_json(s.port, "/groups/cp/nack", body, 200, NULL);
        } else
            ack(s.port, "cp", ids, 1);
    }
    /* The keeper writes Checkpoints between requests; once one is durable, the group's records
       before it leave reads (the stream starts at it), and a scavenge takes them. */
    if (!http_wait_body(s.port, "/streams/%24group-cp?limit=1", "\"type\":\"Checkpoint\"", 30)) {
        char *first = http_body(s.port, "GET", "/streams/%24group-cp?limit=1", NULL, NULL, 200);
        char *meta = http_body(s.port, "GET", "/streams/%24group-cp/metadata", NULL, NULL, 200);
        CHECK_MSG(false, "no Checkpoint record was written, or the records before it are still visible: %s %s", first,
                  meta);
    }
    uint64_t removed = srv_scavenge(s.port);
    CHECK_MSG(removed >= 800, "a scavenge removed %llu events", (unsigned long long)removed);
    char before[4096];
    http_do(s.port, "GET", "/groups/cp", NULL, NULL, &r);
    const char *st = strstr(r.body, "\"checkpoint\":"); /* `next` is re-derived from the checkpoint on start */
    snprintf(before, sizeof before, "%.*s", (int)(strstr(st, "\"delivered\"") - st), st);
    resp_free(&r);
    srv_stop(&s, SIGKILL);
    s = srv_start(test_dir(), NULL);
    http_do(s.port, "GET", "/groups/cp", NULL, NULL, &r);
    st = strstr(r.body, "\"checkpoint\":");
    char after[4096];
    snprintf(after, sizeof after, "%.*s", (int)(strstr(st, "\"delivered\"") - st), st);
    resp_free(&r);
    /* lag_seconds moves with the clock: compare the rest */
    char *a = strstr(before, "\"lag_seconds\""), *b = strstr(after, "\"lag_seconds\"");
    *a = *b = 0;
    CHECK_MSG(!strcmp(before, after), "state before the kill %s, after %s", before, after);
    CHECK(strstr(a + 1, "\"retrying\":250") && strstr(a + 1, "\"parked\":1"));
    /* The next delivery is 2500: nothing acknowledged comes again. */
    CHECK_EQ(pull(s.port, "cp", 1, 0, ids), 1);
    CHECK_MSG(!strcmp(ids[0], "2500.1"), "got %s", ids[0]);
    /* A deleted group's records are all superseded: its stream is deleted (soft) with it. */
    expect_status(s.port, "DELETE", "/groups/cp", NULL, NULL, 200, NULL);
    int status = 200;
    for (int i = 0; i < 100 && status == 200; i++) {
        http_do(s.port, "GET", "/streams/%24group-cp", NULL, NULL, &r);
        status = r.status;
        resp_free(&r);
        if (status == 200) usleep(50000);
    }
    CHECK_EQ(status, 404);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}

/* ---- one rule for what a client sends: unknown members are refused ---- */

TEST(group_bodies_with_unknown_members_are_refused_and_change_nothing) {
    srv s = srv_start(test_dir(), NULL);
    const char *defs[][2] = {
        {"{\"source\":{\"stream\":\"u-1\"},\"ackTimeout\":5000}", "ackTimeout"},
        {"{\"source\":{\"stream\":\"u-1\",\"from\":3}}", "from"},
        {"{\"source\":{\"stream\":\"u-1\",\"category\":\"u\"}}", "one of"},
        {"{\"source\":{\"all\":{\"types\":[\"A\"],\"kinds\":[\"B\"]}}}", "kinds"},
        {"{\"source\":{\"stream\":\"u-1\"},\"retry\":{\"min_delay_ms\":1,\"max\":5}}", "max"},
    };
    for (size_t i = 0; i < ARRAY_LEN(defs); i++)
        expect_status(s.port, "PUT", "/groups/u", "Content-Type: application/json\r\n", defs[i][0], 400, defs[i][1]);
    expect_status(s.port, "GET", "/groups/u", NULL, NULL, 404, NULL); /* none of them made the group */
    put_group(s.port, "u", "{\"source\":{\"stream\":\"u-1\"},\"start\":\"earliest\"}", 201);
    expect_status(s.port, "POST", "/streams/u-1", CE, "{\"type\":\"U\"}", 201, NULL);
    char ids[4][32];
    CHECK_EQ(pull(s.port, "u", 1, 0, ids), 1);
    post_json(s.port, "/groups/u/ack", "{\"delivery_ids\":[\"0.1\"],\"ids\":[\"0.1\"]}", 400,
              "unknown member \\\"ids\\\"");
    post_json(s.port, "/groups/u/nack", "{\"delivery_ids\":[\"0.1\"],\"actoin\":\"park\"}", 400, "actoin");
    post_json(s.port, "/groups/u/parked/replay", "{\"ids\":[\"0\"]}", 400, "unknown member \\\"ids\\\"");
    /* Still in flight as it was: the refused ack and nack changed nothing. */
    resp r;
    http_do(s.port, "GET", "/groups/u", NULL, NULL, &r);
    CHECK_MSG(strstr(r.body, "\"in_flight\":1") && strstr(r.body, "\"acked\":0") && strstr(r.body, "\"parked\":0"),
              "%s", r.body);
    resp_free(&r);
    post_json(s.port, "/groups/u/ack", "{\"delivery_ids\":[\"0.1\"]}", 200, "\"acked\":1");
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}

/* ---- an ack or nack batch takes what it can and reports the rest per id ---- */

TEST(an_ack_batch_with_a_timed_out_id_acks_the_others_and_reports_it) {
    srv s = srv_start(test_dir(), NULL);
    for (int i = 0; i < 4; i++)
        expect_status(s.port, "POST", "/streams/batch-1", CE, "{\"type\":\"B\"}", 201, NULL);
    /* A short ack timeout for the first delivery, and no retry soon after it. */
    put_group(s.port, "bt",
              "{\"source\":{\"stream\":\"batch-1\"},\"start\":\"earliest\",\"ack_timeout_ms\":100,"
              "\"retry\":{\"min_delay_ms\":600000,\"max_delay_ms\":600000}}",
              201);
    char ids[4][32];
    CHECK_EQ(pull(s.port, "bt", 1, 0, ids), 1);
    CHECK(!strcmp(ids[0], "0.1"));
    /* Wait (no time assumed) until the keeper has timed it out. */
    bool timed_out = false;
    for (int i = 0; i < 200 && !timed_out; i++) {
        char *b = http_body(s.port, "GET", "/groups/bt", NULL, NULL, 200);
        timed_out = strstr(b, "\"retrying\":1") != NULL;
        free(b);
        if (!timed_out) usleep(50000);
    }
    CHECK_MSG(timed_out, "delivery 0.1 never timed out");
    put_group(s.port, "bt",
              "{\"source\":{\"stream\":\"batch-1\"},\"ack_timeout_ms\":3600000,"
              "\"retry\":{\"min_delay_ms\":600000,\"max_delay_ms\":600000}}",
              200);
    CHECK_EQ(pull(s.port, "bt", 2, 0, ids), 2);
    CHECK(!strcmp(ids[0], "1.1") && !strcmp(ids[1], "2.1"));
    /* 1.1 is acked although 0.1 timed out; 0.1 is reported with why. */
    char *b = http_body(s.port, "POST", "/groups/bt/ack", "Content-Type: application/json\r\n",
                        "{\"delivery_ids\":[\"0.1\",\"1.1\"]}", 200);
    CHECK_MSG(strstr(b, "\"acked\":1") && strstr(b, "\"refused\":[{\"delivery_id\":\"0.1\",\"reason\":\"timed out"),
              "%s", b);
    free(b);
    /* A batch of nothing but refused ids is 409, with the same list; acks of done ids are fine. */
    b = http_body(s.port, "POST", "/groups/bt/ack", "Content-Type: application/json\r\n",
                  "{\"delivery_ids\":[\"0.1\",\"9.1\"]}", 409);
    CHECK_MSG(strstr(b, "\"refused\":[{\"delivery_id\":\"0.1\"") &&
                  strstr(b, "{\"delivery_id\":\"9.1\",\"reason\":\"never delivered"),
              "%s", b);
    free(b);
    post_json(s.port, "/groups/bt/ack", "{\"delivery_ids\":[\"1.1\"]}", 200, "\"acked\":0,\"refused\":[]");
    /* A malformed id refuses the whole batch: 2.1 stays in flight. */
    post_json(s.port, "/groups/bt/ack", "{\"delivery_ids\":[\"2.1\",\"two\"]}", 400, NULL);
    /* Nacks the same way: 2.1 is skipped, the done 1.1 reported. */
    b = http_body(s.port, "POST", "/groups/bt/nack", "Content-Type: application/json\r\n",
                  "{\"delivery_ids\":[\"1.1\",\"2.1\"],\"action\":\"skip\"}", 200);
    CHECK_MSG(strstr(b, "\"nacked\":1") && strstr(b, "\"refused\":[{\"delivery_id\":\"1.1\",\"reason\":\"done already"),
              "%s", b);
    free(b);
    post_json(s.port, "/groups/bt/nack", "{\"delivery_ids\":[\"1.1\"],\"action\":\"skip\"}", 409, "\"refused\":[");
    /* 1 and 2 done, 0 waiting for its retry: the checkpoint stays at 0, and a restart keeps it. */
    srv_stop(&s, SIGKILL);
    s = srv_start(test_dir(), NULL);
    b = http_body(s.port, "GET", "/groups/bt", NULL, NULL, 200);
    CHECK_MSG(strstr(b, "\"checkpoint\":0") && strstr(b, "\"in_flight\":0"), "%s", b);
    free(b);
    CHECK_EQ(pull(s.port, "bt", 4, 0, ids), 1); /* 3; never 1 or 2 */
    CHECK_MSG(!strcmp(ids[0], "3.1"), "got %s", ids[0]);
    /* The C client says which were not acked, and acks the others. */
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", s.port);
    factum_client_t *c;
    factum_error_t err;
    CHECK_RC(factum_client_new(url, &c, &err), 0);
    factum_delivery_id_t two[2] = {{"3.1"}, {"0.1"}};
    CHECK_RC(factum_client_ack(c, "bt", two, 2, &err), FACTUM_ECONFLICT);
    CHECK_MSG(strstr(err.message, "\"delivery_id\":\"0.1\"") && !strstr(err.message, "3.1"), "%s", err.message);
    factum_client_free(c);
    post_json(s.port, "/groups/bt/ack", "{\"delivery_ids\":[\"3.1\"]}", 200, "\"acked\":0"); /* done already */
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}

/* ---- lag is named for what it counts ---- */

TEST(group_lag_counts_events_for_a_stream_source_and_positions_for_a_category) {
    srv s = srv_start(test_dir(), NULL);
    const char *streams[] = {"lg-1", "other-1", "other-1", "lg-1", "other-1"};
    for (int i = 0; i < 5; i++) {
        char path[32];
        snprintf(path, sizeof path, "/streams/%s", streams[i]);
        expect_status(s.port, "POST", path, CE, "{\"type\":\"L\"}", 201, NULL);
    }
    put_group(s.port, "bystream", "{\"source\":{\"stream\":\"lg-1\"},\"start\":\"earliest\"}", 201);
    put_group(s.port, "bycat", "{\"source\":{\"category\":\"lg\"},\"start\":\"earliest\"}", 201);
    char *b = http_body(s.port, "GET", "/groups/bystream", NULL, NULL, 200);
    const char *p = strstr(b, "\"lag_positions\":");
    CHECK_MSG(strstr(b, "\"lag_events\":2,") && p && atoi(p + 16) >= 5, "%s",
              b); /* 2 events of lg-1, 5+ positions back */
    free(b);
    b = http_body(s.port, "GET", "/groups/bycat", NULL, NULL, 200);
    p = strstr(b, "\"lag_positions\":");
    CHECK_MSG(!strstr(b, "\"lag_events\"") && p && atoi(p + 16) >= 5, "%s", b); /* a category cannot count its events */
    free(b);
    b = http_body(s.port, "GET", "/metrics", NULL, NULL, 200);
    CHECK_MSG(strstr(b, "factum_group_lag_events{group=\"bystream\"} 2\n") &&
                  !strstr(b, "factum_group_lag_events{group=\"bycat\"}") &&
                  strstr(b, "factum_group_lag_positions{group=\"bycat\"} "),
              "%s", b);
    free(b);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}

/* factum group ack/nack: a batch the server took only in part prints the answer and exits 1,
   so a script notices the ids it must handle again; a batch taken whole exits 0. */
TEST(the_cli_exits_1_when_an_ack_or_nack_batch_was_taken_only_in_part) {
    srv s = srv_start(test_dir(), NULL);
    put_group(s.port, "g", "{\"source\":{\"category\":\"job\"},\"start\":\"earliest\"}", 201);
    for (int i = 0; i < 3; i++)
        post_json(s.port, "/streams/job-1", "{\"type\":\"Job\"}", 201, NULL);
    char ids[3][32], cmd[1024], out[4096];
    CHECK_EQ(pull(s.port, "g", 3, 2000, ids), 3);
    snprintf(cmd, sizeof cmd, "%s --server http://127.0.0.1:%d group ack g %s 999.1 2>&1", test_bin(), s.port, ids[0]);
    CHECK_EQ(test_run(cmd, out, sizeof out), 1);
    CHECK_MSG(strstr(out, "\"acked\":1") && strstr(out, "999.1") && strstr(out, "not taken"), "%s", out);
    snprintf(cmd, sizeof cmd, "%s --server http://127.0.0.1:%d group nack g %s 999.2 --skip 2>&1", test_bin(), s.port,
             ids[1]);
    CHECK_EQ(test_run(cmd, out, sizeof out), 1);
    CHECK_MSG(strstr(out, "\"nacked\":1") && strstr(out, "999.2"), "%s", out);
    snprintf(cmd, sizeof cmd, "%s --server http://127.0.0.1:%d group ack g %s 2>&1", test_bin(), s.port, ids[2]);
    CHECK_EQ(test_run(cmd, out, sizeof out), 0);
    CHECK_MSG(strstr(out, "\"acked\":1") && strstr(out, "\"refused\":[]"), "%s", out);
    srv_stop(&s, SIGTERM);
}
