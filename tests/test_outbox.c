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
           "('r3', 'acct-1', 'B', '[1]'), ('r4', 'acct-1', NULL, '{}'), ('r5', 'acct-1', 'C', NULL); COMMIT",
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
    int ncommitted;
} writer;

static _Atomic int writers_done;
static _Atomic bool writers_stop;

/* Whether row id is in the outbox (after a connection broke during a COMMIT). */
static int row_exists(const pg *p, const char *id) {
    PGconn *c = PQconnectdb(p->conninfo);
    int found = -1;
    if (PQstatus(c) == CONNECTION_OK) {
        const char *params[] = {id};
        PGresult *r = PQexecParams(c, "SELECT 1 FROM outbox WHERE id = $1", 1, NULL, params, NULL, NULL, 0);
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
                 "BEGIN; INSERT INTO orders (note) VALUES ('o%d'); "
                 "INSERT INTO outbox VALUES ('%s', 'order-%d', 'OrderPlaced', '{\"i\":%d}', 'c%d'); "
                 "INSERT INTO outbox VALUES ('%s', 'order-%d', 'OrderNoted', '{\"i\":%d}', NULL); %s",
                 i, id1, w->k, i, i, id2, w->k, i, rollback ? "ROLLBACK" : "COMMIT");
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
            snprintf(w->committed[w->ncommitted++], 32, "%s", id1);
            snprintf(w->committed[w->ncommitted++], 32, "%s", id2);
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
    for (int k = 0; k < WRITERS; k++) {
        w[k] = (writer){.p = &p, .k = k};
        pthread_create(&t[k], NULL, write_orders, &w[k]);
    }
    int kills = 0, restarts = 0;
    while (kills < KILLS && atomic_load(&writers_done) < WRITERS) {
        usleep(100000 + test_rand() % 200000);
        srv_stop(&s, SIGKILL);
        kills++;
        if (kills == 6 || kills == 14) pg_restart(&p), restarts++;
        s = srv_start(test_dir(), "");
    }
    atomic_store(&writers_stop, true);
    for (int k = 0; k < WRITERS; k++)
        pthread_join(t[k], NULL);
    fprintf(stderr, "    %d kills of Factum, %d restarts of PostgreSQL, %d + %d + %d committed rows\n", kills, restarts,
            w[0].ncommitted, w[1].ncommitted, w[2].ncommitted);
    /* every stream's events are exactly its writer's committed rows, in its commit order */
    static char ids[TXS * 2][32];
    for (int k = 0; k < WRITERS; k++) {
        char stream[32];
        snprintf(stream, sizeof stream, "order-%d", k);
        int n = 0;
        for (int i = 0; i < 600 && n < w[k].ncommitted; i++) {
            n = stream_ids(s.port, stream, ids, TXS * 2);
            if (n < w[k].ncommitted) usleep(100000);
        }
        n = stream_ids(s.port, stream, ids, TXS * 2);
        CHECK_MSG(n == w[k].ncommitted, "%s: %d events for %d committed rows", stream, n, w[k].ncommitted);
        for (int i = 0; i < n; i++)
            CHECK_MSG(!strcmp(ids[i], w[k].committed[i]), "%s event %d is %s, the commit order says %s", stream, i,
                      ids[i], w[k].committed[i]);
    }
    expect_status(s.port, "GET", "/streams/order-0", NULL, NULL, 200, "\"correlationid\":\"c0\"");
    expect_status(s.port, "GET", "/connectors/orders", NULL, NULL, 200, "\"rejected\":0");
    CHECK(srv_metric(s.port, "factum_connector_lag_bytes{connector=\"orders\",kind=\"postgres-outbox\"}") >= 0);
    CHECK(srv_metric(s.port, "factum_connector_delivered_total{connector=\"orders\",kind=\"postgres-outbox\"}") >= 0);
    srv_stop(&s, SIGTERM);
    pg_down(&p);
}
