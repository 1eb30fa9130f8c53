/*
 * bench_proj.c — `make bench`, projections (issue 6). Against a running `factum serve` and a
 * PostgreSQL (bench/projections.sh starts both), in one run:
 *
 *   1. loads N events of about 200 bytes (Deposited, 10,000 accounts) over HTTP;
 *   2. catch-up: a projection with one upsert per event, into SQLite and into PostgreSQL, timed
 *      from PUT until it has applied the head;
 *   3. the reference: the loop a user writes by hand against the same database — GET /all pages
 *      of 2,000 events over HTTP, one transaction per page, the same upsert per event with a
 *      prepared statement (SQLite with its defaults; PostgreSQL one round trip per statement);
 *   4. read-your-writes: append one event, then query the projection with min_position set to
 *      the position the append answered; latency of the query, p50 and p99.
 */
#include "../src/base/json.h"

#include <curl/curl.h>
#include <libpq-fe.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PAGE 2000
#define ACCOUNTS 10000

static int port;
static CURL *curl;
static buf_t got;

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static size_t sink(char *p, size_t sz, size_t n, void *ctx) {
    (void)ctx;
    buf_append(&got, p, sz * n);
    return sz * n;
}

/* One request; the status, with the body in `got`. */
static long req(const char *method, const char *path, const char *body) {
    char url[512];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
    got.len = 0;
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, body ? (long)strlen(body) : 0L);
    curl_easy_setopt(curl, CURLOPT_HTTPGET, body ? 0L : 1L);
    if (!body) curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
    if (curl_easy_perform(curl) != CURLE_OK) {
        fprintf(stderr, "bench-proj: %s %s failed\n", method, path);
        exit(1);
    }
    buf_append(&got, "", 1);
    got.len--;
    long st = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &st);
    return st;
}

static uint64_t member_u64(const char *key) {
    uint64_t v = 0;
    json_member_u64((factum_str_t){got.ptr, got.len}, key, &v);
    return v;
}

static void load(long n) {
    buf_t b = {0};
    char pad[120];
    memset(pad, 'x', sizeof pad - 1);
    pad[sizeof pad - 1] = 0;
    for (long i = 0; i < n;) {
        b.len = 0;
        buf_append(&b, "[", 1);
        long k = 0;
        for (; k < 1000 && i < n; k++, i++)
            buf_printf(&b, "%s{\"type\":\"Deposited\",\"data\":{\"acct\":\"a%ld\",\"amount\":%ld,\"pad\":\"%s\"}}",
                       k ? "," : "", (i * 7919) % ACCOUNTS, i % 100, pad);
        buf_append(&b, "]", 1);
        char path[64];
        snprintf(path, sizeof path, "/streams/acct-%ld", (i / 1000) % 100);
        if (req("POST", path, b.ptr) != 201) {
            fprintf(stderr, "bench-proj: load failed: %s\n", got.ptr);
            exit(1);
        }
    }
    buf_free(&b);
}

static const char *UPSERT_SQLITE =
    "INSERT INTO balances (acct, n, total) VALUES (:data.acct, 1, :data.amount) ON CONFLICT (acct) DO UPDATE SET "
    "n = balances.n + 1, total = balances.total + excluded.total";

/* Factum's projector: PUT, then wait until it has applied the head. Events per second. */
static double catch_up(const char *name, const char *target, uint64_t head, long events) {
    char def[2048];
    snprintf(def, sizeof def,
             "{\"source\":{\"types\":[\"Deposited\"]},\"target\":%s,"
             "\"setup\":[\"CREATE TABLE IF NOT EXISTS balances (acct TEXT PRIMARY KEY, n BIGINT NOT NULL, total BIGINT "
             "NOT NULL)\"],"
             "\"handlers\":{\"Deposited\":[\"%s\"]}}",
             target, UPSERT_SQLITE);
    char path[128];
    snprintf(path, sizeof path, "/projections/%s", name);
    double t0 = now_s();
    if (req("PUT", path, def) != 201) {
        fprintf(stderr, "bench-proj: PUT %s: %s\n", name, got.ptr);
        exit(1);
    }
    for (;;) {
        req("GET", path, NULL);
        if (member_u64("position") >= head) break;
        if (strstr(got.ptr, "\"status\":\"failed\"")) {
            fprintf(stderr, "bench-proj: %s failed: %s\n", name, got.ptr);
            exit(1);
        }
        usleep(20000);
    }
    return (double)events / (now_s() - t0);
}

/* The hand-written loop's database side. */
typedef struct hand {
    sqlite3 *db;
    sqlite3_stmt *st;
    PGconn *pg;
} hand;

static void hand_exec(hand *h, const char *sql) {
    if (h->db) {
        sqlite3_exec(h->db, sql, NULL, NULL, NULL);
    } else {
        PGresult *r = PQexec(h->pg, sql);
        PQclear(r);
    }
}

static void hand_upsert(hand *h, const char *acct, size_t acct_len, const char *amount) {
    if (h->db) {
        sqlite3_bind_text(h->st, 1, acct, (int)acct_len, SQLITE_STATIC);
        sqlite3_bind_int64(h->st, 2, atoll(amount));
        if (sqlite3_step(h->st) != SQLITE_DONE) fprintf(stderr, "bench-proj: %s\n", sqlite3_errmsg(h->db)), exit(1);
        sqlite3_reset(h->st);
    } else {
        char a[64];
        snprintf(a, sizeof a, "%.*s", (int)acct_len, acct);
        const char *p[2] = {a, amount};
        PGresult *r = PQexecPrepared(h->pg, "up", 2, p, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_COMMAND_OK)
            fprintf(stderr, "bench-proj: %s\n", PQresultErrorMessage(r)), exit(1);
        PQclear(r);
    }
}

/* Reads /all over HTTP page by page, a transaction per page. Events per second. */
static double hand_loop(hand *h, uint64_t head) {
    double t0 = now_s();
    uint64_t from = 0, n = 0;
    buf_t acct = {0};
    while (from < head) {
        char path[128];
        snprintf(path, sizeof path, "/all?from=%llu&limit=%d", (unsigned long long)from, PAGE);
        if (req("GET", path, NULL) != 200) fprintf(stderr, "bench-proj: %s\n", got.ptr), exit(1);
        hand_exec(h, "BEGIN");
        json_iter_t it;
        json_iter_init(&it, (factum_str_t){got.ptr, got.len});
        factum_str_t ev, data, v;
        int kind;
        uint64_t was = from;
        while (json_iter_element(&it, &ev, &kind) == 1) {
            uint64_t pos = 0;
            json_member_u64(ev, "position", &pos);
            from = pos + 1;
            if (!json_member(ev, "type", &v, &kind) || !str_eq(v, str_c("\"Deposited\"")) ||
                !json_member(ev, "data", &data, &kind))
                continue;
            acct.len = 0;
            json_member_string(data, "acct", &acct);
            char amount[32];
            json_member(data, "amount", &v, &kind);
            snprintf(amount, sizeof amount, "%.*s", (int)v.len, v.ptr);
            hand_upsert(h, acct.ptr, acct.len, amount);
            n++;
        }
        hand_exec(h, "COMMIT");
        if (from == was) break; /* an empty page: only system records are left */
    }
    buf_free(&acct);
    return (double)n / (now_s() - t0);
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    const char *conn = NULL, *dir = "/tmp";
    long events = 1000000, ryw_n = 2000;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--port"))
            port = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--pg"))
            conn = argv[i + 1];
        else if (!strcmp(argv[i], "--events"))
            events = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--dir"))
            dir = argv[i + 1];
        else if (!strcmp(argv[i], "--ryw"))
            ryw_n = atol(argv[i + 1]);
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    curl = curl_easy_init();
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, sink);
    struct curl_slist *hd = curl_slist_append(NULL, "Content-Type: application/json");
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, hd);

    double t0 = now_s();
    load(events);
    uint64_t head = (uint64_t)events + 1; /* the events, then the first projection's $projections record */
    printf("projections: %ld events of about 200 bytes loaded in %.1f s; one upsert per event, %d per transaction\n",
           events, now_s() - t0, PAGE);
    printf("  %-44s %14s %14s %8s\n", "", "factum", "hand loop", "ratio");

    /* SQLite */
    double f_sq = catch_up("bench_sqlite", "{\"sqlite\":\"\"}", head, events);
    char path[4200];
    snprintf(path, sizeof path, "%s/hand.sqlite", dir);
    hand h = {0};
    sqlite3_open(path, &h.db);
    hand_exec(&h,
              "CREATE TABLE IF NOT EXISTS balances (acct TEXT PRIMARY KEY, n BIGINT NOT NULL, total BIGINT NOT NULL)");
    sqlite3_prepare_v2(h.db,
                       "INSERT INTO balances (acct, n, total) VALUES (?1, 1, ?2) ON CONFLICT (acct) DO UPDATE SET "
                       "n = balances.n + 1, total = balances.total + excluded.total",
                       -1, &h.st, NULL);
    double h_sq = hand_loop(&h, head);
    sqlite3_finalize(h.st);
    sqlite3_close(h.db);
    printf("  %-44s %14.0f %14.0f %8.2f\n", "catch-up into SQLite (events/s)", f_sq, h_sq, f_sq / h_sq);

    /* PostgreSQL */
    if (conn) {
        char target[600];
        snprintf(target, sizeof target, "{\"postgres\":\"%s\"}", conn);
        head++; /* the first projection's $projections record */
        double f_pg = catch_up("bench_pg", target, head, events);
        hand hp = {0};
        hp.pg = PQconnectdb(conn);
        hand_exec(&hp, "CREATE TABLE IF NOT EXISTS hand_balances (acct TEXT PRIMARY KEY, n BIGINT NOT NULL, total "
                       "BIGINT NOT NULL)");
        PGresult *r =
            PQprepare(hp.pg, "up",
                      "INSERT INTO hand_balances (acct, n, total) VALUES ($1, 1, $2) ON CONFLICT (acct) DO UPDATE SET "
                      "n = hand_balances.n + 1, total = hand_balances.total + excluded.total",
                      2, NULL);
        PQclear(r);
        double h_pg = hand_loop(&hp, head);
        PQfinish(hp.pg);
        printf("  %-44s %14.0f %14.0f %8.2f\n", "catch-up into PostgreSQL (events/s)", f_pg, h_pg, f_pg / h_pg);
    }

    /* Read your writes, on the SQLite projection. */
    double *lat = calloc((size_t)ryw_n, sizeof *lat);
    for (long i = 0; i < ryw_n; i++) {
        char body[512];
        snprintf(body, sizeof body, "[{\"type\":\"Deposited\",\"data\":{\"acct\":\"ryw%ld\",\"amount\":1}}]", i % 100);
        if (req("POST", "/streams/ryw-1", body) != 201) fprintf(stderr, "bench-proj: %s\n", got.ptr), exit(1);
        uint64_t pos = member_u64("position");
        snprintf(
            body, sizeof body,
            "{\"sql\":\"SELECT n FROM balances WHERE acct = :a\",\"params\":{\"a\":\"ryw%ld\"},\"min_position\":%llu}",
            i % 100, (unsigned long long)pos);
        double q0 = now_s();
        if (req("POST", "/projections/bench_sqlite/query", body) != 200)
            fprintf(stderr, "bench-proj: %s\n", got.ptr), exit(1);
        lat[i] = (now_s() - q0) * 1000;
    }
    qsort(lat, (size_t)ryw_n, sizeof *lat, cmp_d);
    printf("  read-your-writes query after an append (SQLite), %ld queries: p50 %.2f ms, p99 %.2f ms (target p99 < 10 "
           "ms)\n",
           ryw_n, lat[ryw_n / 2], lat[ryw_n * 99 / 100]);
    free(lat);
    curl_slist_free_all(hd);
    curl_easy_cleanup(curl);
    buf_free(&got);
    return 0;
}
