/*
 * test_names.c — listings of streams and categories from the index: paging, prefixes, system
 * streams, names in memtables, runs and merges, after a reopen, after a rebuild of the index
 * from the log (also when a scavenge took a stream's first events), and the limits.
 */
#include "test.h"

#include "../src/store/index.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CHECK_STR(got, want) CHECK_MSG(!strcmp((got), (want)), "got:\n%s\nwant:\n%s", (got), (want))

static void rmrf(const char *path) {
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    CHECK(system(cmd) == 0);
}

/* Every name the listing gives, page by page of `page`, joined with '\n'. */
static char *list_all(factum_t *db, const char *prefix, int system, size_t page, bool categories) {
    buf_t out = {0}, last = {0};
    for (;;) {
        factum_names_t *l;
        factum_error_t err;
        int rc = categories ? factum_list_categories(db, (factum_str_t){last.ptr, last.len}, page, system, &l, &err)
                            : factum_list_streams(db, str_c(prefix), (factum_str_t){last.ptr, last.len}, page, system,
                                                  &l, &err);
        CHECK_MSG(rc == 0, "listing: %s", err.message);
        size_t n = factum_names_count(l);
        for (size_t i = 0; i < n; i++) {
            factum_str_t s = factum_names_name(l, i);
            buf_append(&out, s.ptr, s.len);
            buf_append(&out, "\n", 1);
            if (i == n - 1) last.len = 0, buf_append(&last, s.ptr, s.len);
        }
        factum_names_free(l);
        if (n < page) break;
    }
    buf_append(&out, "", 1);
    buf_free(&last);
    return out.ptr;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The expected listing: the names in v that pass, sorted, joined with '\n'. */
static char *expect_list(char **v, size_t n, const char *prefix, int system) {
    char **s = malloc(n * sizeof *s);
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (!strncmp(v[i], prefix, strlen(prefix)) && (system || v[i][0] != '$')) s[k++] = v[i];
    qsort(s, k, sizeof *s, cmp_str);
    buf_t out = {0};
    for (size_t i = 0; i < k; i++)
        buf_printf(&out, "%s\n", s[i]);
    buf_append(&out, "", 1);
    free(s);
    return out.ptr;
}

#define NSTREAMS 1500

static char **make_names(void) {
    static const char *cats[] = {"order", "cart", "c", "c!x", "cc", "$snapshot", "user", "a"};
    char **v = malloc(NSTREAMS * sizeof *v);
    uint64_t x = 12345;
    for (size_t i = 0; i < NSTREAMS; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        v[i] = malloc(64);
        const char *c = cats[(x >> 40) % 8];
        if (i % 97 == 0)
            snprintf(v[i], 64, "%s", c); /* a stream named as its category */
        else
            snprintf(v[i], 64, "%s-%zu", c, i);
    }
    /* The bare names are repeated for several i: keep each stream once. */
    size_t k = 0;
    for (size_t i = 0; i < NSTREAMS; i++) {
        bool dup = false;
        for (size_t j = 0; j < k && !dup; j++)
            dup = !strcmp(v[j], v[i]);
        if (dup)
            free(v[i]);
        else
            v[k++] = v[i];
    }
    for (size_t i = k; i < NSTREAMS; i++)
        v[i] = NULL;
    return v;
}

static size_t count_names(char **v) {
    size_t n = 0;
    while (n < NSTREAMS && v[n])
        n++;
    return n;
}

static void check_listings(factum_t *db, char **v, size_t n) {
    static const char *prefixes[] = {"", "order-", "c", "c-", "c!", "$", "zzz", "order-1"};
    for (size_t p = 0; p < ARRAY_LEN(prefixes); p++)
        for (int system = 0; system < 2; system++) {
            char *want = expect_list(v, n, prefixes[p], system);
            size_t pages[] = {1, 7, 1000};
            for (size_t k = 0; k < 3; k++) {
                if (pages[k] == 1 && strlen(want) > 2000) continue; /* one by one only where short */
                char *got = list_all(db, prefixes[p], system, pages[k], false);
                CHECK_MSG(!strcmp(got, want), "prefix '%s' system %d page %zu:\n got %.300s\nwant %.300s", prefixes[p],
                          system, pages[k], got, want);
                free(got);
            }
            free(want);
        }
    for (int system = 0; system < 2; system++)
        for (size_t page = 1; page <= 3; page += 2) {
            char *got = list_all(db, "", system, page, true);
            CHECK_MSG(!strcmp(got, system ? "$snapshot\na\nc\nc!x\ncart\ncc\norder\nuser\n"
                                          : "a\nc\nc!x\ncart\ncc\norder\nuser\n"),
                      "categories (system %d, page %zu): %s", system, page, got);
            free(got);
        }
}

TEST(streams_and_categories_are_listed_in_name_order_from_memtables_runs_and_merges) {
    factum_options_t o = {.memtable_events = 64, .segment_bytes = 1 << 16};
    const char *dir = test_dir();
    factum_t *db = test_open(dir, &o);
    char **v = make_names();
    size_t n = count_names(v);
    char *empty = list_all(db, "", 1, 10, false);
    CHECK_STR(empty, "");
    free(empty);
    for (size_t i = 0; i < n; i++) {
        CHECK_RC(test_append(db, v[i], FACTUM_EXPECT_ANY, "A", "{}", NULL, NULL), 0);
        if (i % 3 == 0) CHECK_RC(test_append(db, v[i], FACTUM_EXPECT_ANY, "B", "{}", NULL, NULL), 0); /* listed once */
        if (i == n / 2) check_listings(db, v, i + 1);
    }
    check_listings(db, v, n);
    factum_close(db);
    db = test_open(dir, &o); /* from the runs */
    check_listings(db, v, n);
    factum_close(db);
    for (size_t i = 0; i < NSTREAMS; i++)
        free(v[i]);
    free(v);
}

TEST(a_rebuilt_index_lists_every_stream_once_also_after_a_scavenge_took_its_first_events) {
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/db", test_dir());
    factum_options_t o = {.memtable_events = 16, .segment_bytes = 1 << 16};
    for (int bits = 62; bits >= 2; bits -= 60) {
        index_key_bits = (unsigned)bits; /* 2 bits: every stream shares its key with others */
        rmrf(dir);
        factum_t *db = test_open(dir, &o);
        char *names[] = {"keep-1", "keep-2", "cut-1", "cut-2", "gone-1", "$sys-1"};
        for (int round = 0; round < 3; round++)
            for (size_t i = 0; i < ARRAY_LEN(names); i++)
                CHECK_RC(test_append(db, names[i], FACTUM_EXPECT_ANY, "A", "{}", NULL, NULL), 0);
        factum_meta_t m = {.truncate_before = 2}; /* cut-*: revisions 0 and 1 go */
        CHECK_RC(factum_meta_set(db, str_c("cut-1"), &m, NULL, NULL), 0);
        CHECK_RC(factum_meta_set(db, str_c("cut-2"), &m, NULL, NULL), 0);
        CHECK_RC(factum_delete_stream(db, str_c("gone-1"), FACTUM_EXPECT_ANY, 1, NULL, NULL), 0);
        for (int k = 0; k < 400; k++)
            CHECK_RC(test_append(db, "filler", FACTUM_EXPECT_ANY, "F",
                                 "{\"pad\":\".........................................................................."
                                 "......................................................\"}",
                                 NULL, NULL),
                     0);
        CHECK_RC(factum_scavenge(db, NULL), 0);
        char *before = list_all(db, "", 1, 3, false);
        CHECK_STR(before, "$metadata\n$sys-1\ncut-1\ncut-2\nfiller\ngone-1\nkeep-1\nkeep-2\n");
        factum_close(db);
        char idx[4200];
        snprintf(idx, sizeof idx, "%s/index", dir);
        rmrf(idx); /* derived: rebuilt from the log at open */
        db = test_open(dir, &o);
        char *after = list_all(db, "", 1, 3, false);
        /* the same: cut-* from their first event left (revision 2); gone-1 (tombstoned) from its
           last, which a scavenge keeps so that the stream's revisions go on (docs/lifecycle.md) */
        CHECK_STR(after, before);
        free(before);
        free(after);
        factum_close(db);
    }
    index_key_bits = 62;
}

TEST(listing_limits_are_checked_one_past_each_end) {
    factum_t *db = test_open(test_dir(), NULL);
    factum_names_t *l;
    factum_error_t err;
    CHECK_RC(factum_list_streams(db, str_c(""), str_c(""), 0, 0, &l, &err), FACTUM_EINVAL);
    CHECK(strstr(err.message, "limit must be 1 to 10000"));
    CHECK_RC(factum_list_streams(db, str_c(""), str_c(""), FACTUM_MAX_LIST + 1, 0, &l, &err), FACTUM_EINVAL);
    CHECK_RC(factum_list_categories(db, str_c(""), FACTUM_MAX_LIST + 1, 0, &l, &err), FACTUM_EINVAL);
    CHECK_RC(test_append(db, "a-1", FACTUM_EXPECT_ANY, "A", "{}", NULL, NULL), 0);
    CHECK_RC(factum_list_streams(db, str_c(""), str_c(""), FACTUM_MAX_LIST, 0, &l, &err), 0);
    CHECK_EQ(factum_names_count(l), 1);
    CHECK_EQ(factum_names_position(l, 0), 0);
    factum_names_free(l);
    CHECK_RC(factum_list_categories(db, str_c(""), 1, 0, &l, &err), 0);
    CHECK_EQ(factum_names_count(l), 1);
    factum_names_free(l);
    factum_close(db);
}

/* ---- over HTTP: GET /streams and GET /categories ---- */

#include "test_server.h"

TEST(get_streams_and_categories_page_by_name_with_filters_and_refuse_bad_queries) {
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/db", test_dir());
    srv s = srv_start(dir, "");
    const char *streams[] = {"order-1", "order-2", "order", "orders-1", "order%21x", "user-1", "user-2"};
    for (size_t i = 0; i < ARRAY_LEN(streams); i++) {
        char path[64];
        snprintf(path, sizeof path, "/streams/%s", streams[i]);
        free(http_body(s.port, "POST", path, "Content-Type: application/json\r\n", "{\"type\":\"A\"}", 201));
    }
    free(http_body(s.port, "DELETE", "/streams/user-1?tombstone=true", NULL, NULL, 200));
    free(http_body(s.port, "DELETE", "/streams/user-2", NULL, NULL, 200));

    /* Page by page, following the Link header to the end. */
    char path[512] = "/streams?limit=3", all[4096] = "";
    int pages = 0;
    for (;;) {
        resp r;
        http_do(s.port, "GET", path, NULL, NULL, &r);
        CHECK_EQ(r.status, 200);
        strcat(all, r.body);
        char link[512];
        resp_header(&r, "Link", link, sizeof link);
        resp_free(&r);
        pages++;
        if (!link[0]) break;
        CHECK(link[0] == '<' && strstr(link, ">; rel=\"next\""));
        *strstr(link, ">") = 0;
        snprintf(path, sizeof path, "%s", link + 1);
    }
    CHECK_EQ(pages, 3);
    const char *order[] = {"\"order\"",    "\"order!x\"", "\"order-1\"", "\"order-2\"",
                           "\"orders-1\"", "\"user-1\"",  "\"user-2\""};
    const char *at = all;
    for (size_t i = 0; i < ARRAY_LEN(order); i++) {
        const char *p = strstr(at, order[i]);
        CHECK_MSG(p, "%s missing or out of order in %s", order[i], all);
        at = p + 1;
    }
    CHECK(!strstr(all, "$metadata"));
    CHECK(
        strstr(all, "{\"stream\":\"user-1\",\"first_position\":5,\"revision\":0,\"deleted\":true,\"tombstone\":true}"));
    CHECK(strstr(all,
                 "{\"stream\":\"user-2\",\"first_position\":6,\"revision\":0,\"deleted\":true,\"tombstone\":false}"));

    char *b = http_body(s.port, "GET", "/streams?category=order", NULL, NULL, 200);
    CHECK_MSG(strstr(b, "\"order\"") && strstr(b, "\"order-1\"") && strstr(b, "\"order-2\"") &&
                  !strstr(b, "orders-1") && !strstr(b, "order!x"),
              "category: %s", b);
    free(b);
    b = http_body(s.port, "GET", "/streams?category=order&after=order", NULL, NULL, 200);
    CHECK_MSG(!strstr(b, "\"order\"") && strstr(b, "\"order-1\""), "category after: %s", b);
    free(b);
    b = http_body(s.port, "GET", "/streams?prefix=user-&limit=1", NULL, NULL, 200);
    CHECK_MSG(strstr(b, "user-1") && !strstr(b, "user-2"), "prefix: %s", b);
    free(b);
    b = http_body(s.port, "GET", "/streams?prefix=%24&system=true", NULL, NULL, 200);
    CHECK_MSG(strstr(b, "\"$metadata\"") && !strstr(b, "order"), "system: %s", b);
    free(b);
    b = http_body(s.port, "GET", "/categories", NULL, NULL, 200);
    CHECK_STR(
        b, "[{\"category\":\"order\"},{\"category\":\"order!x\"},{\"category\":\"orders\"},{\"category\":\"user\"}]");
    free(b);
    b = http_body(s.port, "GET", "/categories?after=order&limit=1", NULL, NULL, 200);
    CHECK_STR(b, "[{\"category\":\"order!x\"}]");
    free(b);

    expect_status(s.port, "GET", "/streams?limit=0", NULL, NULL, 400, "limit must be 1 to 1000");
    expect_status(s.port, "GET", "/streams?limit=1001", NULL, NULL, 400, "limit must be 1 to 1000");
    free(http_body(s.port, "GET", "/streams?limit=1000", NULL, NULL, 200));
    expect_status(s.port, "GET", "/streams?prefix=a&category=b", NULL, NULL, 400, "not both");
    expect_status(s.port, "GET", "/streams?nope=1", NULL, NULL, 400, "unknown query parameter 'nope'");
    expect_status(s.port, "GET", "/categories?prefix=a", NULL, NULL, 400, "unknown query parameter 'prefix'");
    expect_status(s.port, "GET", "/streams?after=%zz", NULL, NULL, 400, "bad percent-escape");
    expect_status(s.port, "GET", "/streams?system=yes", NULL, NULL, 400, "system must be true or false");
    char longer[400] = "/streams?after=";
    memset(longer + strlen(longer), 'a', 256);
    expect_status(s.port, "GET", longer, NULL, NULL, 400, "longer than a stream name");
    longer[strlen(longer) - 1] = 0; /* 255 bytes: a name */
    free(http_body(s.port, "GET", longer, NULL, NULL, 200));
    expect_status(s.port, "POST", "/streams", NULL, "{}", 405, NULL);
    srv_stop(&s, SIGTERM);
}

/* ---- the command line: factum streams and factum categories ---- */

TEST(factum_streams_and_categories_list_the_same_on_a_folder_and_from_a_server) {
    char dir[4200], cmd[8192], local[8192], remote[8192];
    snprintf(dir, sizeof dir, "%s/db", test_dir());
    snprintf(cmd, sizeof cmd, "%s --data-dir %s streams 2>&1", test_bin(), dir);
    CHECK_EQ(test_run(cmd, local, sizeof local), 3); /* reads never make a store */
    CHECK(strstr(local, "no store at"));
    const char *streams[] = {"order-1", "order-2", "order", "orders-1", "user-1"};
    for (size_t i = 0; i < ARRAY_LEN(streams); i++) {
        snprintf(cmd, sizeof cmd, "%s --data-dir %s append %s A >/dev/null", test_bin(), dir, streams[i]);
        CHECK_EQ(test_run(cmd, local, sizeof local), 0);
    }
    const char *lines[] = {"streams",
                           "streams --limit 2",
                           "streams ord --after order-1",
                           "streams --category order",
                           "categories",
                           "categories --after order --limit 1",
                           "streams --system --limit 1"};
    srv s = srv_start(dir, "");
    for (size_t i = 0; i < ARRAY_LEN(lines); i++) {
        char url[64];
        snprintf(url, sizeof url, "http://127.0.0.1:%d", s.port);
        snprintf(cmd, sizeof cmd, "%s --server %s %s 2>&1", test_bin(), url, lines[i]);
        CHECK_EQ(test_run(cmd, remote, sizeof remote), 0);
        srv_stop(&s, SIGTERM);
        snprintf(cmd, sizeof cmd, "%s --data-dir %s %s 2>&1", test_bin(), dir, lines[i]);
        CHECK_EQ(test_run(cmd, local, sizeof local), 0);
        CHECK_MSG(!strcmp(local, remote), "%s: on the folder\n%s\nfrom the server\n%s", lines[i], local, remote);
        s = srv_start(dir, "");
    }
    srv_stop(&s, SIGTERM);
    snprintf(cmd, sizeof cmd, "%s --data-dir %s streams --limit 2 2>&1", test_bin(), dir);
    CHECK_EQ(test_run(cmd, local, sizeof local), 0);
    CHECK_STR(local,
              "{\"stream\":\"order\",\"first_position\":2,\"revision\":0,\"deleted\":false,\"tombstone\":false}\n"
              "{\"stream\":\"order-1\",\"first_position\":0,\"revision\":0,\"deleted\":false,\"tombstone\":false}\n"
              "more: factum streams --limit 2 --after 'order-1'\n");
    snprintf(cmd, sizeof cmd, "%s --data-dir %s streams --category order 2>&1", test_bin(), dir);
    CHECK_EQ(test_run(cmd, local, sizeof local), 0);
    CHECK_MSG(strstr(local, "\"order\"") && strstr(local, "\"order-2\"") && !strstr(local, "orders-1"), "%s", local);
    const char *bad[] = {"streams --limit 0", "streams --limit 1001", "streams a --category b",
                         "streams a b",       "categories x",         "streams --nope"};
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        snprintf(cmd, sizeof cmd, "%s --data-dir %s %s 2>&1", test_bin(), dir, bad[i]);
        CHECK_MSG(test_run(cmd, local, sizeof local) == 2, "%s: %s", bad[i], local);
    }
}
