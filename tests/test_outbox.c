/*
 * test_outbox.c — the postgres-outbox connector against a real PostgreSQL (wal_level=logical,
 * started by the test): bad definitions refused with nothing created (no connector, no slot);
 * writers on several connections commit orders with outbox rows, some rolled back, while Factum
 * is killed with SIGKILL again and again and PostgreSQL is restarted twice; afterwards every
 * committed row is exactly one event, each connection's rows in its commit order, and no
 * rolled-back row appears. Deleting the connector drops its slot.
 */
#include "test_pg.h"
#include "test_server.h"

#include <libpq-fe.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <unistd.h>

#define JS "Content-Type: application/json\r\n"

static void setup(const pg *p) {
    pg_sql(p,
           "CREATE TABLE orders (id serial PRIMARY KEY, note text); "
           "CREATE TABLE outbox (id text PRIMARY KEY, stream text NOT NULL, type text NOT NULL, payload jsonb, "
           "corr text); CREATE PUBLICATION outbox_pub FOR TABLE outbox",
           NULL, 0);
}

static void outbox_body(const pg *p, char *out, size_t cap, const char *extra) {
    snprintf(out, cap,
             "{\"kind\":\"postgres-outbox\",\"postgres\":\"%s\",\"publication\":\"outbox_pub\",\"table\":\"outbox\","
             "\"columns\":{\"data\":\"payload\",\"correlation\":\"corr\"}%s}",
             p->conninfo, extra);
}

static int slots(const pg *p) {
    char v[32];
    pg_sql(p, "SELECT count(*) FROM pg_replication_slots", v, sizeof v);
    return atoi(v);
}

TEST_T(outbox_put_refuses_what_cannot_work_and_creates_nothing, 120) {
    pg p;
    pg_up(&p); /* wal_level replica: PostgreSQL's default */
    setup(&p);
    srv s = srv_start(test_dir(), "");
    char b[1024];
    outbox_body(&p, b, sizeof b, "");
    expect_status(s.port, "PUT", "/connectors/ob", JS, b, 400, "wal_level");
    pg_down(&p);
    pg_up_with(&p, "-c wal_level=logical");
    pg_sql(&p, "CREATE TABLE outbox (id text PRIMARY KEY, stream text, type text, payload jsonb)", NULL, 0);
    outbox_body(&p, b, sizeof b, "");
    expect_status(s.port, "PUT", "/connectors/ob", JS, b, 400, "no publication 'outbox_pub'");
    pg_sql(&p, "CREATE PUBLICATION outbox_pub FOR TABLE outbox", NULL, 0);
    expect_status(s.port, "PUT", "/connectors/ob", JS, b, 400, "no column 'corr'");
    snprintf(b, sizeof b,
             "{\"kind\":\"postgres-outbox\",\"postgres\":\"host=%s/nonexistent user=postgres\",\"publication\":"
             "\"outbox_pub\",\"table\":\"outbox\"}",
             p.dir);
    expect_status(s.port, "PUT", "/connectors/ob", JS, b, 400, "cannot connect");
    snprintf(b, sizeof b,
             "{\"kind\":\"postgres-outbox\",\"postgres\":\"%s\",\"publication\":\"outbox_pub\",\"table\":\"nosuch\"}",
             p.conninfo);
    expect_status(s.port, "PUT", "/connectors/ob", JS, b, 400, "no table public.nosuch");
    snprintf(b, sizeof b,
             "{\"kind\":\"postgres-outbox\",\"postgres\":\"%s\",\"publication\":\"outbox_pub\",\"table\":\"outbox\","
             "\"columns\":{\"bogus\":\"x\"}}",
             p.conninfo);
    expect_status(s.port, "PUT", "/connectors/ob", JS, b, 400, "bogus");
    expect_status(s.port, "GET", "/connectors/ob", NULL, NULL, 404, NULL);
    CHECK_EQ(slots(&p), 0);
    /* and one that works makes its slot, and its deletion drops it */
    snprintf(b, sizeof b,
             "{\"kind\":\"postgres-outbox\",\"postgres\":\"%s password=s3cr3t-pw\",\"publication\":\"outbox_pub\","
             "\"table\":\"public.outbox\",\"columns\":{\"data\":\"payload\"}}",
             p.conninfo);
    expect_status(s.port, "PUT", "/connectors/ob", JS, b, 201, "\"slot\":\"factum_ob\"");
    char *got = http_body(s.port, "GET", "/connectors/ob", NULL, NULL, 200);
    CHECK(!strstr(got, "s3cr3t-pw") && strstr(got, "*****"));
    free(got);
    CHECK_EQ(slots(&p), 1);
    /* a row that can never be an event is passed over, counted; its neighbours keep their order */
    pg_sql(&p,
           "BEGIN; INSERT INTO outbox VALUES ('r1', 'acct-1', 'A', '{}'), ('r2', '$sys', 'A', '{}'), "
           "('r3', 'acct-1', 'B', '[1]'), ('r4', '$sys', 'A', '{}'), ('r5', 'acct-1', 'C', NULL); COMMIT",
           NULL, 0);
    if (!http_wait_body(s.port, "/connectors/ob", "\"rejected\":2", 30)) /* r2 ($sys) and r4 (no type) */
        CHECK_MSG(0, "%s", http_body(s.port, "GET", "/connectors/ob", NULL, NULL, 200));
    got = http_body(s.port, "GET", "/streams/acct-1", NULL, NULL, 200);
    char *r1 = strstr(got, "\"id\":\"r1\""), *r3 = strstr(got, "\"id\":\"r3\""), *r5 = strstr(got, "\"id\":\"r5\"");
    CHECK_MSG(r1 && r3 && r5 && r1 < r3 && r3 < r5 && !strstr(got, "\"r4\""), "%s", got);
    free(got);
    expect_status(s.port, "DELETE", "/connectors/ob", NULL, NULL, 200, NULL);
    CHECK_EQ(slots(&p), 0);
    srv_stop(&s, SIGTERM);
    pg_down(&p);
}

/* ---- the relay under crashes ---- */

#define WRITERS 3
#define TXS 3000 /* at most, per writer: they write until the kills are over */
#define KILLS 20

typedef struct writer {
    const pg *p;
    int k;
    char committed[TXS * 2][32]; /* ids, in this connection's commit order */
    _Atomic int ncommitted;      /* committed[0..ncommitted) are written */
} writer;

static _Atomic int writers_done;
static _Atomic bool writers_stop;

/* Whether the transaction of outbox row id committed (after a connection broke during a COMMIT):
   its order, which no relay deletes. */
static int row_exists(const pg *p, const char *id) {
    PGconn *c = PQconnectdb(p->conninfo);
    int found = -1;
    if (PQstatus(c) == CONNECTION_OK) {
        const char *params[] = {id};
        PGresult *r = PQexecParams(c, "SELECT 1 FROM orders WHERE note = $1", 1, NULL, params, NULL, NULL, 0);
        if (PQresultStatus(r) == PGRES_TUPLES_OK) found = PQntuples(r) > 0;
        PQclear(r);
    }
    PQfinish(c);
    return found;
}

static void quiet(void *arg, const char *msg) { (void)arg, (void)msg; }

static void *write_orders(void *arg) {
    writer *w = arg;
    PGconn *c = NULL;
    for (int i = 0; i < TXS && !atomic_load(&writers_stop); i++) {
        usleep(2000);
        bool rollback = i % 4 == 3;
        char id1[32], id2[32], sql[1024];
        snprintf(id1, sizeof id1, "w%d-%d-a", w->k, i);
        snprintf(id2, sizeof id2, "w%d-%d-b", w->k, i);
        snprintf(sql, sizeof sql,
                 "BEGIN; INSERT INTO orders (note) VALUES ('%s'); "
                 "INSERT INTO outbox VALUES ('%s', 'order-%d', 'OrderPlaced', '{\"i\":%d}', 'c%d'); "
                 "INSERT INTO outbox VALUES ('%s', 'order-%d', 'OrderNoted', '{\"i\":%d}', NULL); %s",
                 id1, id1, w->k, i, i, id2, w->k, i, rollback ? "ROLLBACK" : "COMMIT");
        for (int tries = 0;; tries++) {
            CHECK_MSG(tries < 400, "writer %d cannot reach PostgreSQL", w->k);
            if (!c || PQstatus(c) != CONNECTION_OK) {
                PQfinish(c);
                c = PQconnectdb(w->p->conninfo);
                if (PQstatus(c) != CONNECTION_OK) {
                    usleep(50000);
                    continue;
                }
                PQsetNoticeProcessor(c, quiet, NULL); /* PostgreSQL's shutdown warnings */
            }
            PGresult *r = PQexec(c, sql);
            bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
            PQclear(r);
            if (ok) break;
            /* the connection broke: did the COMMIT land? */
            int e;
            while ((e = row_exists(w->p, id1)) < 0)
                usleep(50000);
            if (e || rollback) break;
        }
        if (!rollback) {
            int n = atomic_load(&w->ncommitted);
            snprintf(w->committed[n], 32, "%s", id1);
            snprintf(w->committed[n + 1], 32, "%s", id2);
            atomic_store(&w->ncommitted, n + 2);
        }
    }
    PQfinish(c);
    atomic_fetch_add(&writers_done, 1);
    return NULL;
}

/* The ids of stream's events, in order, into ids; how many. */
static int stream_ids(int port, const char *stream, char ids[][32], int cap) {
    char path[128];
    snprintf(path, sizeof path, "/streams/%s?limit=%d", stream, cap);
    resp r;
    int st = http_try(port, "GET", path, NULL, NULL, &r);
    int n = 0;
    if (st == 200)
        for (const char *q = r.body; (q = strstr(q, "\"id\":\"")) && n < cap; q += 6) {
            const char *e = strchr(q + 6, '"');
            snprintf(ids[n++], 32, "%.*s", (int)(e - q - 6), q + 6);
        }
    resp_free(&r);
    return n;
}

/* Once the writers are done: every stream's events are exactly its writer's committed rows, in
   its commit order (waiting for the relay to catch up). */
static void check_exactly_once(int port, writer *w) {
    static char ids[TXS * 2][32];
    for (int k = 0; k < WRITERS; k++) {
        char stream[32];
        snprintf(stream, sizeof stream, "order-%d", k);
        int n = 0, want = atomic_load(&w[k].ncommitted);
        for (int i = 0; i < 600 && n < want; i++) {
            n = stream_ids(port, stream, ids, TXS * 2);
            if (n < want) usleep(100000);
        }
        n = stream_ids(port, stream, ids, TXS * 2);
        CHECK_MSG(n == want, "%s: %d events for %d committed rows", stream, n, want);
        for (int i = 0; i < n; i++)
            CHECK_MSG(!strcmp(ids[i], w[k].committed[i]), "%s event %d is %s, the commit order says %s", stream, i,
                      ids[i], w[k].committed[i]);
    }
}

static void writers_start(const pg *p, writer *w, pthread_t *t) {
    atomic_store(&writers_done, 0);
    atomic_store(&writers_stop, false);
    for (int k = 0; k < WRITERS; k++) {
        w[k] = (writer){.p = p, .k = k};
        pthread_create(&t[k], NULL, write_orders, &w[k]);
    }
}

static void writers_end(pthread_t *t) {
    atomic_store(&writers_stop, true);
    for (int k = 0; k < WRITERS; k++)
        pthread_join(t[k], NULL);
}

TEST_T(outbox_relays_each_committed_row_once_in_commit_order_across_kills_and_postgres_restarts, 180) {
    pg p;
    pg_up_with(&p, "-c wal_level=logical");
    setup(&p);
    srv s = srv_start(test_dir(), "");
    char b[1024];
    outbox_body(&p, b, sizeof b, "");
    expect_status(s.port, "PUT", "/connectors/orders", JS, b, 201, NULL);
    static writer w[WRITERS];
    pthread_t t[WRITERS];
    writers_start(&p, w, t);
    int kills = 0, restarts = 0;
    while (kills < KILLS && atomic_load(&writers_done) < WRITERS) {
        usleep(100000 + test_rand() % 200000);
        srv_stop(&s, SIGKILL);
        kills++;
        if (kills == 6 || kills == 14) pg_restart(&p), restarts++;
        s = srv_start(test_dir(), "");
    }
    writers_end(t);
    fprintf(stderr, "    %d kills of Factum, %d restarts of PostgreSQL, %d + %d + %d committed rows\n", kills, restarts,
            atomic_load(&w[0].ncommitted), atomic_load(&w[1].ncommitted), atomic_load(&w[2].ncommitted));
    check_exactly_once(s.port, w);
    expect_status(s.port, "GET", "/streams/order-0", NULL, NULL, 200, "\"correlationid\":\"c0\"");
    expect_status(s.port, "GET", "/connectors/orders", NULL, NULL, 200, "\"rejected\":0");
    CHECK(srv_metric(s.port, "factum_connector_lag_bytes{connector=\"orders\",kind=\"postgres-outbox\"}") >= 0);
    CHECK(srv_metric(s.port, "factum_connector_delivered_total{connector=\"orders\",kind=\"postgres-outbox\"}") >= 0);
    srv_stop(&s, SIGTERM);
    pg_down(&p);
}

/* ---- after_relay: deleting or marking relayed rows ---- */

static int count_of(const pg *p, const char *sql) {
    char v[32];
    pg_sql(p, sql, v, sizeof v);
    return atoi(v);
}

/* A role that may read the outbox (and replicate), not change it. */
static void relay_role(const pg *p, char *conninfo, size_t cap) {
    pg_sql(p, "CREATE ROLE relay LOGIN REPLICATION; GRANT SELECT ON outbox TO relay", NULL, 0);
    snprintf(conninfo, cap, "%s user=relay", p->conninfo);
}

static void after_body(const char *conninfo, char *out, size_t cap, const char *after) {
    snprintf(out, cap,
             "{\"kind\":\"postgres-outbox\",\"postgres\":\"%s\",\"publication\":\"outbox_pub\",\"table\":\"outbox\","
             "\"columns\":{\"data\":\"payload\",\"correlation\":\"corr\"},\"after_relay\":%s}",
             conninfo, after);
}

TEST_T(outbox_after_relay_refuses_bad_input_and_creates_nothing, 120) {
    pg p;
    pg_up_with(&p, "-c wal_level=logical");
    setup(&p);
    pg_sql(&p, "ALTER TABLE outbox ADD COLUMN relayed_at timestamptz, ADD COLUMN note text", NULL, 0);
    char ci[400], b[1024];
    relay_role(&p, ci, sizeof ci);
    srv s = srv_start(test_dir(), "");
    static const struct {
        const char *after, *why;
    } bad[] = {
        {"\"delete\"", "'after_relay' must be"},
        {"{}", "'action' must be delete"},
        {"{\"action\":\"archive\"}", "'action' must be delete"},
        {"{\"action\":\"delete\",\"where\":\"x\"}", "where"},
        {"{\"action\":\"delete\",\"column\":\"relayed_at\"}", "mark only"},
        {"{\"action\":\"mark\"}", "'column' is required"},
        {"{\"action\":\"mark\",\"column\":\"bad name\"}", "'column' must be a name"},
        {"{\"action\":\"mark\",\"column\":\"nope\"}", "no column 'nope'"},
        {"{\"action\":\"mark\",\"column\":\"note\"}", "is text"},
    };
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        after_body(p.conninfo, b, sizeof b, bad[i].after);
        expect_status(s.port, "PUT", "/connectors/ob", JS, b, 400, bad[i].why);
    }
    /* a role that may not delete or update the outbox: said at PUT */
    after_body(ci, b, sizeof b, "{\"action\":\"delete\"}");
    expect_status(s.port, "PUT", "/connectors/ob", JS, b, 400, "after_relay cannot delete rows of public.outbox");
    after_body(ci, b, sizeof b, "{\"action\":\"mark\",\"column\":\"relayed_at\"}");
    expect_status(s.port, "PUT", "/connectors/ob", JS, b, 400, "permission denied");
    expect_status(s.port, "GET", "/connectors/ob", NULL, NULL, 404, NULL);
    CHECK_EQ(slots(&p), 0);
    char *got = http_body(s.port, "GET", "/connectors", NULL, NULL, 200);
    CHECK(!strcmp(got, "[]"));
    free(got);
    /* given the right, the same definition is taken, and shown as it was given */
    pg_sql(&p, "GRANT UPDATE ON outbox TO relay", NULL, 0);
    expect_status(s.port, "PUT", "/connectors/ob", JS, b, 201,
                  "\"after_relay\":{\"action\":\"mark\",\"column\":\"relayed_at\"}");
    srv_stop(&s, SIGKILL);
    s = srv_start(test_dir(), "");
    expect_status(s.port, "GET", "/connectors/ob", NULL, NULL, 200,
                  "\"after_relay\":{\"action\":\"mark\",\"column\":\"relayed_at\"}");
    expect_status(s.port, "DELETE", "/connectors/ob", NULL, NULL, 200, NULL);
    srv_stop(&s, SIGTERM);
    pg_down(&p);
}

/* Waits until sql's count is want; false if it never is. */
static bool wait_count(const pg *p, const char *sql, int want) {
    for (int i = 0; i < 600; i++) {
        if (count_of(p, sql) == want) return true;
        usleep(100000);
    }
    return false;
}

TEST_T(outbox_after_relay_marks_each_relayed_row_and_a_failure_does_not_stop_relaying, 120) {
    pg p;
    pg_up_with(&p, "-c wal_level=logical");
    setup(&p);
    pg_sql(&p, "ALTER TABLE outbox ADD COLUMN relayed_at timestamptz", NULL, 0);
    char ci[400], b[1024];
    relay_role(&p, ci, sizeof ci);
    pg_sql(&p, "GRANT UPDATE ON outbox TO relay", NULL, 0);
    srv s = srv_start(test_dir(), "");
    after_body(ci, b, sizeof b, "{\"action\":\"mark\",\"column\":\"relayed_at\"}");
    expect_status(s.port, "PUT", "/connectors/ob", JS, b, 201, NULL);
    pg_sql(&p, "BEGIN; INSERT INTO outbox VALUES ('r1', 'acct-1', 'A', '{}'), ('r2', 'acct-1', 'B', '{}'); COMMIT",
           NULL, 0);
    pg_sql(&p, "BEGIN; INSERT INTO outbox VALUES ('r3', 'acct-1', 'A', '{}'); ROLLBACK", NULL, 0);
    pg_sql(&p, "BEGIN; INSERT INTO outbox VALUES ('r4', '$sys', 'A', '{}'), ('r5', 'acct-1', 'C', '{}'); COMMIT", NULL,
           0);
    /* each relayed row is marked; r4 (a system stream) is no event, and stays as it was */
    CHECK_MSG(wait_count(&p, "SELECT count(*) FROM outbox WHERE relayed_at IS NOT NULL", 3), "not marked");
    CHECK_EQ(count_of(&p, "SELECT count(*) FROM outbox WHERE relayed_at IS NULL AND id = 'r4'"), 1);
    CHECK_EQ(count_of(&p, "SELECT count(*) FROM outbox WHERE relayed_at <= now()"), 3);
    expect_status(s.port, "GET", "/connectors/ob", NULL, NULL, 200, "\"after_relay_rows\":3");
    /* the UPDATEs come through the slot too, and are no events */
    CHECK(http_wait_body(s.port, "/connectors/ob", "\"rejected\":1", 30));
    static char ids[16][32];
    CHECK_EQ(stream_ids(s.port, "acct-1", ids, 16), 3);
    /* the role loses its right: rows are relayed still, the failure counted, and they wait */
    pg_sql(&p, "REVOKE UPDATE ON outbox FROM relay", NULL, 0);
    pg_sql(&p, "INSERT INTO outbox VALUES ('r6', 'acct-1', 'D', '{}')", NULL, 0);
    pg_sql(&p, "INSERT INTO outbox VALUES ('r7', 'acct-1', 'E', '{}')", NULL, 0);
    CHECK(http_wait_body(s.port, "/streams/acct-1", "\"id\":\"r7\"", 30));
    CHECK(http_wait_body(s.port, "/connectors/ob", "\"after_relay_pending\":2", 30));
    char *got = http_body(s.port, "GET", "/connectors/ob", NULL, NULL, 200);
    CHECK_MSG(strstr(got, "permission denied") && !strstr(got, "\"after_relay_failures\":0") &&
                  strstr(got, "\"state\":\"running\""),
              "%s", got);
    free(got);
    CHECK_EQ(count_of(&p, "SELECT count(*) FROM outbox WHERE relayed_at IS NULL"), 3);
    CHECK(srv_metric(s.port,
                     "factum_connector_after_relay_failures_total{connector=\"ob\",kind=\"postgres-outbox\"}") >= 1);
    /* given back, the waiting rows are marked without another batch */
    pg_sql(&p, "GRANT UPDATE ON outbox TO relay", NULL, 0);
    CHECK_MSG(wait_count(&p, "SELECT count(*) FROM outbox WHERE relayed_at IS NULL", 1), "not marked after the grant");
    CHECK(http_wait_body(s.port, "/connectors/ob", "\"after_relay_pending\":0", 30));
    CHECK_EQ(stream_ids(s.port, "acct-1", ids, 16), 5);
    expect_status(s.port, "DELETE", "/connectors/ob", NULL, NULL, 200, NULL);
    srv_stop(&s, SIGTERM);
    pg_down(&p);
}

/* Holds the relay's slot (a replication connection of the test's own that confirms nothing),
   waiting while the killed server's session still has it. */
static PGconn *hold_slot(const pg *p, const char *slot) {
    char ci[400], cmd[300];
    snprintf(ci, sizeof ci, "%s replication=database", p->conninfo);
    snprintf(cmd, sizeof cmd,
             "START_REPLICATION SLOT \"%s\" LOGICAL 0/0 (proto_version '1', publication_names '\"outbox_pub\"')", slot);
    for (int tries = 0;; tries++) {
        CHECK_MSG(tries < 600, "slot %s stays active", slot);
        PGconn *c = PQconnectdb(ci);
        PGresult *r = PQexec(c, cmd);
        bool held = PQresultStatus(r) == PGRES_COPY_BOTH;
        PQclear(r);
        if (held) return c;
        PQfinish(c);
        usleep(50000);
    }
}

/* The outbox rows still there, as one string of ",ID," items. */
static char *remaining(const pg *p) {
    PGconn *c = PQconnectdb(p->conninfo);
    PGresult *r = PQexec(c, "SELECT id FROM outbox");
    CHECK(PQresultStatus(r) == PGRES_TUPLES_OK);
    buf_t b = {0};
    buf_append(&b, ",", 1);
    for (int i = 0; i < PQntuples(r); i++)
        buf_printf(&b, "%s,", PQgetvalue(r, i, 0));
    buf_append(&b, "", 1);
    PQclear(r);
    PQfinish(c);
    return b.ptr;
}

#define DELETE_KILLS 8

TEST_T(outbox_after_relay_deletes_each_row_once_durable_across_kills_and_empties_the_table, 180) {
    pg p;
    pg_up_with(&p, "-c wal_level=logical");
    setup(&p);
    srv s = srv_start(test_dir(), "");
    char b[1024];
    outbox_body(&p, b, sizeof b, ",\"after_relay\":{\"action\":\"delete\"}");
    expect_status(s.port, "PUT", "/connectors/orders", JS, b, 201, NULL);
    static writer w[WRITERS];
    pthread_t t[WRITERS];
    writers_start(&p, w, t);
    static char ids[TXS * 2][32];
    int kills = 0, deleted_seen = 0;
    while (kills < DELETE_KILLS && atomic_load(&writers_done) < WRITERS) {
        usleep(100000 + test_rand() % 200000);
        srv_stop(&s, SIGKILL);
        kills++;
        /* With the slot held, the restarted server has only what was durable before the kill:
           every committed row that is gone from the table must be among its events. */
        PGconn *hold = hold_slot(&p, "factum_orders");
        int n[WRITERS];
        for (int k = 0; k < WRITERS; k++)
            n[k] = atomic_load(&w[k].ncommitted); /* before the table is read */
        char *left = remaining(&p);
        s = srv_start(test_dir(), "");
        for (int k = 0; k < WRITERS; k++) {
            char stream[32], item[40];
            snprintf(stream, sizeof stream, "order-%d", k);
            int e = stream_ids(s.port, stream, ids, TXS * 2);
            for (int i = 0; i < n[k]; i++) {
                snprintf(item, sizeof item, ",%s,", w[k].committed[i]);
                if (strstr(left, item)) continue;
                deleted_seen++;
                CHECK_MSG(i < e && !strcmp(ids[i], w[k].committed[i]),
                          "row %s was deleted, yet the server killed had only %d events of %s", w[k].committed[i], e,
                          stream);
            }
        }
        free(left);
        PQfinish(hold);
    }
    writers_end(t);
    fprintf(stderr, "    %d kills of Factum, %d + %d + %d committed rows, %d deletions checked at the kills\n", kills,
            atomic_load(&w[0].ncommitted), atomic_load(&w[1].ncommitted), atomic_load(&w[2].ncommitted), deleted_seen);
    CHECK(deleted_seen > 0);
    check_exactly_once(s.port, w);
    if (!wait_count(&p, "SELECT count(*) FROM outbox", 0)) {
        char *left = remaining(&p);
        CHECK_MSG(0, "rows left in the outbox: %s; %s", left,
                  http_body(s.port, "GET", "/connectors/orders", NULL, NULL, 200));
    }
    expect_status(s.port, "GET", "/connectors/orders", NULL, NULL, 200, "\"rejected\":0");
    srv_stop(&s, SIGTERM);
    pg_down(&p);
}

/* A relay defined paused relays nothing, and stays paused across a restart (the recorded
   definition keeps it) until it is resumed; then the row waiting in its slot is relayed. */
TEST_T(a_paused_outbox_relay_stays_paused_across_a_restart_until_resumed, 120) {
    pg p;
    pg_up_with(&p, "-c wal_level=logical");
    setup(&p);
    srv s = srv_start(test_dir(), "");
    char b[1024];
    outbox_body(&p, b, sizeof b, ",\"paused\":true");
    expect_status(s.port, "PUT", "/connectors/ob", JS, b, 201, "\"state\":\"paused\"");
    pg_sql(&p, "INSERT INTO outbox VALUES ('w1', 'acct-9', 'A', '{}', NULL)", NULL, 0);
    srv_stop(&s, SIGTERM);
    s = srv_start(test_dir(), "");
    char *got = http_body(s.port, "GET", "/connectors/ob", NULL, NULL, 200);
    CHECK_MSG(strstr(got, "\"state\":\"paused\"") && strstr(got, "\"appended\":0"), "%s", got);
    free(got);
    expect_status(s.port, "GET", "/streams/acct-9", NULL, NULL, 404, NULL);
    expect_status(s.port, "POST", "/connectors/ob/resume", NULL, "", 200, "\"state\":\"running\"");
    CHECK(http_wait_body(s.port, "/streams/acct-9", "\"id\":\"w1\"", 30));
    srv_stop(&s, SIGTERM);
    pg_down(&p);
}
