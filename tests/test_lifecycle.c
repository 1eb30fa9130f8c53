/*
 * test_lifecycle.c — stream lifecycle (issue 5), what is built so far: aggregate snapshots and
 * reading from the latest one in one round trip.
 */
#include "test_server.h"

#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#define CE "Content-Type: application/cloudevents+json\r\n"

TEST(snapshots_round_trip_and_from_snapshot_returns_the_tail_in_one_call) {
    srv s = srv_start(test_dir(), NULL);
    resp r;
    for (int i = 0; i < 8; i++) {
        char body[64];
        snprintf(body, sizeof body, "{\"type\":\"Added\",\"data\":{\"n\":%d}}", i);
        http_do(s.port, "POST", "/streams/cart-9", CE, body, &r);
        resp_free(&r);
    }
    /* Before any snapshot: null and every event. */
    http_do(s.port, "GET", "/streams/cart-9?from=snapshot", NULL, NULL, &r);
    CHECK_MSG(r.status == 200 && strstr(r.body, "{\"snapshot\":null,\"events\":[") && strstr(r.body, "\"revision\":0"),
              "%s", r.body);
    resp_free(&r);
    http_do(s.port, "GET", "/streams/cart-9/snapshot", NULL, NULL, &r);
    CHECK_EQ(r.status, 404);
    resp_free(&r);
    http_do(s.port, "PUT", "/streams/cart-9/snapshot", "Content-Type: application/json\r\n",
            "{\"revision\":3,\"state\":{\"count\":4}}", &r);
    CHECK_MSG(r.status == 201, "%d %s", r.status, r.body);
    resp_free(&r);
    http_do(s.port, "PUT", "/streams/cart-9/snapshot", "Content-Type: application/json\r\n",
            "{\"revision\":5,\"state\":{\"count\":6}}", &r);
    CHECK_EQ(r.status, 201);
    resp_free(&r);
    http_do(s.port, "GET", "/streams/cart-9/snapshot", NULL, NULL, &r);
    CHECK_MSG(r.status == 200 && strstr(r.body, "\"revision\":5") && strstr(r.body, "\"state\":{\"count\":6}"), "%s",
              r.body);
    resp_free(&r);
    http_do(s.port, "GET", "/streams/cart-9?from=snapshot", NULL, NULL, &r);
    CHECK_MSG(strstr(r.body, "\"snapshot\":{\"revision\":5") && !strstr(r.body, "\"revision\":5,\"position\"") &&
                  strstr(r.body, "\"revision\":6,") && strstr(r.body, "\"revision\":7,"),
              "%s", r.body);
    resp_free(&r);
    http_do(s.port, "GET", "/streams/cart-9?from=snapshot&limit=1", NULL, NULL, &r);
    char link[256];
    CHECK(strstr(resp_header(&r, "link", link, sizeof link), "from=7&limit=1"));
    resp_free(&r);
    /* Refused: past the last revision, unknown stream, bad body, system streams; nothing written. */
    const char *bad[][3] = {{"/streams/cart-9/snapshot", "{\"revision\":8,\"state\":1}", "400"},
                            {"/streams/none-1/snapshot", "{\"revision\":0,\"state\":1}", "404"},
                            {"/streams/cart-9/snapshot", "{\"state\":1}", "400"},
                            {"/streams/cart-9/snapshot", "{\"revision\":-1,\"state\":1}", "400"},
                            {"/streams/%24groups/snapshot", "{\"revision\":0,\"state\":1}", "400"}};
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        http_do(s.port, "PUT", bad[i][0], "Content-Type: application/json\r\n", bad[i][1], &r);
        CHECK_MSG(r.status == atoi(bad[i][2]), "%s %s: %d", bad[i][0], bad[i][1], r.status);
        resp_free(&r);
    }
    http_do(s.port, "GET", "/streams/cart-9/snapshot", NULL, NULL, &r);
    CHECK(strstr(r.body, "\"revision\":5"));
    resp_free(&r);
    /* Snapshots survive a restart; they stay out of /all. */
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    s = srv_start(test_dir(), NULL);
    http_do(s.port, "GET", "/streams/cart-9/snapshot", NULL, NULL, &r);
    CHECK(r.status == 200 && strstr(r.body, "\"count\":6"));
    resp_free(&r);
    http_do(s.port, "GET", "/all", NULL, NULL, &r);
    CHECK(!strstr(r.body, "Snapshot"));
    resp_free(&r);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}

/* Positions listed in a JSON array body, in order. */
static int positions(const char *body, int *out, int cap) {
    int n = 0;
    for (const char *p = body; n < cap && (p = strstr(p, "\"position\":")); p += 11)
        out[n++] = atoi(p + 11);
    return n;
}

TEST(temporal_reads_see_the_log_as_of_a_position_or_a_time) {
    srv s = srv_start(test_dir(), NULL);
    resp r;
    char t_mid[32] = "";
    for (int i = 0; i < 30; i++) {
        if (i == 15) {
            usleep(20000);
            time_format_rfc3339(clock_realtime_us(), t_mid);
            usleep(20000);
        }
        http_do(s.port, "POST", i % 2 ? "/streams/tmp-b" : "/streams/tmp-a", CE, "{\"type\":\"T\"}", &r);
        resp_free(&r);
    }
    /* The model: event i has position i; tmp-a holds the even positions. */
    int got[64], n;
    for (int until = 0; until < 31; until += 5) {
        char path[160];
        /* $all forward and backward */
        snprintf(path, sizeof path, "/all?until_position=%d&limit=100", until);
        http_do(s.port, "GET", path, NULL, NULL, &r);
        n = positions(r.body, got, 64);
        CHECK_MSG(n == MIN(until + 1, 30), "%s: %d events", path, n);
        for (int i = 0; i < n; i++)
            CHECK_EQ(got[i], i);
        resp_free(&r);
        snprintf(path, sizeof path, "/all?until_position=%d&direction=backward&limit=3", until);
        http_do(s.port, "GET", path, NULL, NULL, &r);
        n = positions(r.body, got, 64);
        int top = MIN(until, 29), want = MIN(3, top + 1);
        CHECK_MSG(n == want && got[0] == top && got[n - 1] == top - want + 1, "%s: %s", path, r.body);
        resp_free(&r);
        /* a stream forward and backward */
        snprintf(path, sizeof path, "/streams/tmp-a?until_position=%d&limit=100", until);
        http_do(s.port, "GET", path, NULL, NULL, &r);
        n = positions(r.body, got, 64);
        CHECK_MSG(n == MIN(until / 2 + 1, 15), "%s: %d", path, n);
        resp_free(&r);
        snprintf(path, sizeof path, "/streams/tmp-b?until_position=%d&direction=backward&limit=2", until);
        http_do(s.port, "GET", path, NULL, NULL, &r);
        n = positions(r.body, got, 64);
        int last_b = until >= 29 ? 29 : (until % 2 ? until : until - 1);
        if (last_b < 1)
            CHECK_MSG(n == 0, "%s: %s", path, r.body);
        else
            CHECK_MSG(n >= 1 && got[0] == last_b, "%s: %s", path, r.body);
        resp_free(&r);
    }
    /* (A backward read of $all without from starts at the end.) */
    http_do(s.port, "GET", "/all?direction=backward&limit=1", NULL, NULL, &r);
    CHECK_MSG(positions(r.body, got, 64) == 1 && got[0] == 29, "%s", r.body);
    resp_free(&r);
    /* As of a time: the first 15 events. */
    char path[160];
    snprintf(path, sizeof path, "/all?until_time=%s&limit=100", t_mid);
    http_do(s.port, "GET", path, NULL, NULL, &r);
    n = positions(r.body, got, 64);
    CHECK_MSG(n == 15 && got[14] == 14, "%s: %d", path, n);
    resp_free(&r);
    /* Paging keeps the view; bad values and subscriptions are refused. */
    http_do(s.port, "GET", "/all?until_position=9&limit=4", NULL, NULL, &r);
    char link[256];
    CHECK(strstr(resp_header(&r, "link", link, sizeof link), "until_position=9"));
    resp_free(&r);
    http_do(s.port, "GET", "/all?until_position=x", NULL, NULL, &r);
    CHECK_EQ(r.status, 400);
    resp_free(&r);
    http_do(s.port, "GET", "/all?until_time=yesterday", NULL, NULL, &r);
    CHECK_EQ(r.status, 400);
    resp_free(&r);
    http_do(s.port, "GET", "/all?until_position=3", "Accept: text/event-stream\r\n", NULL, &r);
    CHECK_EQ(r.status, 400);
    resp_free(&r);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}

/* ---- metadata and deletion over HTTP ---- */

#define JS "Content-Type: application/json\r\n"

static void post_events(int port, const char *stream, int n) {
    char path[128];
    snprintf(path, sizeof path, "/streams/%s", stream);
    for (int i = 0; i < n; i++)
        expect_status(port, "POST", path, CE, "{\"type\":\"Added\",\"data\":{}}", 201, NULL);
}

/* Counts "\"stream\":\"NAME\"" in a body. */
static int count_of(const char *body, const char *stream) {
    char pat[96];
    snprintf(pat, sizeof pat, "\"stream\":\"%s\"", stream);
    int n = 0;
    for (const char *p = body; (p = strstr(p, pat)); p += strlen(pat))
        n++;
    return n;
}

/* Subscribes to path from the start and returns what came up to "caught-up" (malloc'd). */
static char *sse_until_caught_up(int port, const char *path) {
    int fd = http_connect(port);
    char req[256];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n", path);
    http_send(fd, req, (size_t)n);
    buf_t b = {0};
    char chunk[4096];
    while (!b.len || !memmem(b.ptr, b.len, "event: caught-up", 16)) {
        ssize_t k = recv(fd, chunk, sizeof chunk, 0);
        CHECK_MSG(k > 0, "the subscription ended before it caught up");
        buf_append(&b, chunk, (size_t)k);
    }
    close(fd);
    buf_append(&b, "", 1);
    return b.ptr;
}

TEST(metadata_and_deletes_hide_events_from_reads_categories_subscriptions_and_groups_at_once) {
    srv s = srv_start(test_dir(), NULL);
    post_events(s.port, "cart-1", 6);
    post_events(s.port, "cart-2", 3);
    expect_status(s.port, "PUT", "/groups/g", JS, "{\"source\":{\"category\":\"cart\"},\"start\":\"earliest\"}", 201,
                  NULL);
    /* A group has two cart-1 events in flight when the stream's window shrinks. */
    expect_status(s.port, "POST", "/groups/g/messages?max=2", NULL, "", 200, "\"delivery_id\":\"1.1\"");
    expect_status(s.port, "POST", "/groups/g/nack", JS,
                  "{\"delivery_ids\":[\"0.1\",\"1.1\"],\"action\":\"retry\",\"delay_ms\":0}", 200, NULL);
    expect_status(s.port, "GET", "/streams/cart-1/metadata", NULL, NULL, 200,
                  "\"max_count\":0,\"truncate_before\":0,\"custom\":{}");
    expect_status(s.port, "PUT", "/streams/cart-1/metadata", JS, "{\"max_count\":2,\"custom\":{\"team\":\"web\"}}", 200,
                  "\"max_count\":2,\"truncate_before\":0,\"custom\":{\"team\":\"web\"}");
    resp r;
    http_do(s.port, "GET", "/streams/cart-1", NULL, NULL, &r);
    CHECK_MSG(count_of(r.body, "cart-1") == 2 && strstr(r.body, "\"revision\":4,") &&
                  !strstr(r.body, "\"revision\":3,"),
              "%s", r.body);
    resp_free(&r);
    http_do(s.port, "GET", "/all?category=cart", NULL, NULL, &r);
    CHECK_MSG(count_of(r.body, "cart-1") == 2 && count_of(r.body, "cart-2") == 3, "%s", r.body);
    resp_free(&r);
    char *sub = sse_until_caught_up(s.port, "/all?from=0");
    CHECK_MSG(count_of(sub, "cart-1") == 2 && count_of(sub, "cart-2") == 3, "%s", sub);
    free(sub);
    sub = sse_until_caught_up(s.port, "/streams/cart-1?from=0");
    CHECK_MSG(count_of(sub, "cart-1") == 2, "%s", sub);
    free(sub);
    /* The group: the retried events of cart-1 and its hidden ones never come; the rest do. */
    http_do(s.port, "POST", "/groups/g/messages?max=100", NULL, "", &r);
    CHECK_MSG(count_of(r.body, "cart-1") == 2 && count_of(r.body, "cart-2") == 3 &&
                  !strstr(r.body, "\"delivery_id\":\"0."),
              "%s", r.body);
    resp_free(&r);

    /* Soft delete honours If-Match; a deleted stream reads 404 and takes appends again. */
    expect_status(s.port, "DELETE", "/streams/cart-2", "If-Match: \"1\"\r\n", NULL, 412, "\"expected\":1,\"actual\":2");
    expect_status(s.port, "DELETE", "/streams/cart-2", "If-Match: \"2\"\r\n", NULL, 200,
                  "\"last_revision\":2,\"tombstone\":false");
    expect_status(s.port, "GET", "/streams/cart-2", NULL, NULL, 404, NULL);
    expect_status(s.port, "DELETE", "/streams/cart-2", NULL, NULL, 404, NULL);
    expect_status(s.port, "GET", "/streams/cart-2/metadata", NULL, NULL, 200,
                  "\"truncate_before\":3,\"custom\":{},\"deleted\":true");
    http_do(s.port, "GET", "/all", NULL, NULL, &r);
    CHECK_MSG(count_of(r.body, "cart-2") == 0, "%s", r.body);
    resp_free(&r);
    expect_status(s.port, "POST", "/streams/cart-2", CE "If-None-Match: *\r\n", "{\"type\":\"Back\"}", 201,
                  "\"revision\":3");
    expect_status(s.port, "GET", "/streams/cart-2", NULL, NULL, 200, "\"type\":\"Back\"");
    /* Tombstone: 410 for reads, appends, metadata and deletes, for ever. */
    expect_status(s.port, "DELETE", "/streams/cart-1?tombstone=true", "If-Match: \"4\"\r\n", NULL, 412, NULL);
    expect_status(s.port, "DELETE", "/streams/cart-1?tombstone=true", "If-Match: *\r\n", NULL, 200,
                  "\"tombstone\":true");
    expect_status(s.port, "GET", "/streams/cart-1", NULL, NULL, 410, "tombstone");
    expect_status(s.port, "POST", "/streams/cart-1", CE, "{\"type\":\"X\"}", 410, NULL);
    expect_status(s.port, "PUT", "/streams/cart-1/metadata", JS, "{}", 410, NULL);
    expect_status(s.port, "DELETE", "/streams/cart-1", NULL, NULL, 410, NULL);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    s = srv_start(test_dir(), NULL);
    expect_status(s.port, "GET", "/streams/cart-1", NULL, NULL, 410, NULL);
    expect_status(s.port, "GET", "/streams/cart-2", NULL, NULL, 200, "\"revision\":3,");
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}

TEST(bad_metadata_and_delete_requests_get_clear_errors_and_change_nothing) {
    srv s = srv_start(test_dir(), NULL);
    post_events(s.port, "doc-1", 3);
    expect_status(s.port, "PUT", "/streams/doc-1/metadata", JS, "{\"truncate_before\":2}", 200, NULL);
    const char *bad[][2] = {{"[]", "400"},
                            {"{\"max_count\":-1}", "400"},
                            {"{\"max_age_s\":\"1h\"}", "400"},
                            {"{\"max_count\":1.5}", "400"},
                            {"{\"custom\":[1]}", "400"},
                            {"{\"maxCount\":3}", "400"},
                            {"{\"truncate_before\":1}", "400"}, /* moving back */
                            {"{\"max_count\":18446744073709551616}", "400"}};
    for (size_t i = 0; i < ARRAY_LEN(bad); i++)
        expect_status(s.port, "PUT", "/streams/doc-1/metadata", JS, bad[i][0], atoi(bad[i][1]), NULL);
    /* The custom object: at its limit it is taken, one byte past it is 413. */
    size_t lim = FACTUM_MAX_META_CUSTOM;
    char *body = malloc(lim + 32);
    int head = snprintf(body, lim + 32, "{\"custom\":{\"k\":\"");
    size_t fill = lim - 8; /* {"k":"...."} is 8 bytes around the filling */
    memset(body + head, 'x', fill);
    snprintf(body + head + fill, 32, "\"}}");
    expect_status(s.port, "PUT", "/streams/doc-1/metadata", JS, body, 200, NULL);
    memset(body + head, 'x', fill + 1);
    snprintf(body + head + fill + 1, 32, "\"}}");
    expect_status(s.port, "PUT", "/streams/doc-1/metadata", JS, body, 413, NULL);
    free(body);
    expect_status(s.port, "DELETE", "/streams/doc-1?tombstone=yes", NULL, NULL, 400, NULL);
    expect_status(s.port, "DELETE", "/streams/doc-1?hard=true", NULL, NULL, 400, NULL);
    expect_status(s.port, "DELETE", "/streams/doc-1", "If-Match: 2\r\n", NULL, 400, NULL);
    expect_status(s.port, "DELETE", "/streams/%24metadata", NULL, NULL, 400, NULL);
    expect_status(s.port, "PUT", "/streams/%24metadata/metadata", JS, "{}", 400, NULL);
    expect_status(s.port, "POST", "/streams/doc-1/metadata", JS, "{}", 405, NULL);
    /* Nothing of that changed anything. */
    expect_status(s.port, "GET", "/streams/doc-1/metadata", NULL, NULL, 200, "\"max_count\":0,\"truncate_before\":2,");
    resp r;
    http_do(s.port, "GET", "/streams/doc-1", NULL, NULL, &r);
    CHECK_MSG(r.status == 200 && count_of(r.body, "doc-1") == 1, "%s", r.body);
    resp_free(&r);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}

TEST(post_admin_scavenge_gives_disk_back_online_and_reports_progress_in_metrics_and_the_cli) {
    srv s = srv_start(test_dir(), "--segment-bytes 65536 --scavenge-every 0");
    char batch[40000];
    int len = snprintf(batch, sizeof batch, "[");
    for (int i = 0; i < 100; i++)
        len += snprintf(batch + len, sizeof batch - (size_t)len, "%s{\"type\":\"A\",\"data\":{\"pad\":\"%0150d\"}}",
                        i ? "," : "", i);
    snprintf(batch + len, sizeof batch - (size_t)len, "]");
    for (int i = 0; i < 6; i++) {
        expect_status(s.port, "POST", "/streams/gone-1", JS, batch, 201, NULL);
        expect_status(s.port, "POST", "/streams/kept-1", JS, batch, 201, NULL);
    }
    expect_status(s.port, "DELETE", "/streams/gone-1", NULL, NULL, 200, NULL);
    resp before, r;
    http_do(s.port, "GET", "/all?limit=10000", NULL, NULL, &before);
    expect_status(s.port, "GET", "/admin/scavenge", NULL, NULL, 200, "\"running\":false,\"runs\":0");
    /* A dry run first: it counts what a scavenge would give back and writes nothing. */
    expect_status(s.port, "POST", "/admin/scavenge?dry_run=maybe", NULL, "", 400, "dry_run=true|false");
    expect_status(s.port, "POST", "/admin/scavenge?dry_run=true", NULL, "", 202, NULL);
    char *dry = NULL;
    for (int i = 0; i < 500 && !dry; i++, usleep(10000)) {
        http_do(s.port, "GET", "/admin/scavenge", NULL, NULL, &r);
        if (strstr(r.body, "\"running\":false,\"runs\":1")) dry = strdup(r.body);
        resp_free(&r);
    }
    CHECK_MSG(dry && strstr(dry, "\"segments_rewritten\":0,\"events_scanned\":1000,\"events_removed\":500") &&
                  strstr(dry, "\"dry_run\":true,\"bytes_reclaimable\":"),
              "%s", dry ? dry : "(never finished)");
    long long reclaimable = atoll(strstr(dry, "\"bytes_reclaimable\":") + 20);
    CHECK_MSG(reclaimable > 500 * 150, "%s", dry);
    free(dry);
    http_do(s.port, "GET", "/all?limit=10000", NULL, NULL, &r);
    CHECK_MSG(r.body_len == before.body_len && !memcmp(r.body, before.body, r.body_len), "reads changed");
    resp_free(&r);
    char want[96];
    snprintf(want, sizeof want, "factum_scavenge_reclaimable_bytes %lld\n", reclaimable);
    http_do(s.port, "GET", "/metrics", NULL, NULL, &r);
    CHECK_MSG(strstr(r.body, want) && strstr(r.body, "factum_scavenge_dry_run 1\n") &&
                  strstr(r.body, "factum_scavenge_reclaimed_bytes_total 0\n"),
              "%s", r.body);
    resp_free(&r);
    /* Then the scavenge: it removes exactly what the dry run counted. */
    expect_status(s.port, "POST", "/admin/scavenge", NULL, "", 202, NULL);
    for (int i = 0; i < 500; i++) {
        http_do(s.port, "GET", "/admin/scavenge", NULL, NULL, &r);
        bool done = strstr(r.body, "\"running\":false,\"runs\":2");
        resp_free(&r);
        if (done) break;
        usleep(10000);
    }
    expect_status(s.port, "GET", "/admin/scavenge", NULL, NULL, 200,
                  "\"segments_rewritten\":5,\"events_scanned\":1000,\"events_removed\":500");
    http_do(s.port, "GET", "/all?limit=10000", NULL, NULL, &r);
    CHECK_MSG(r.body_len == before.body_len && !memcmp(r.body, before.body, r.body_len), "reads changed");
    resp_free(&r);
    resp_free(&before);
    http_do(s.port, "GET", "/metrics", NULL, NULL, &r);
    CHECK_MSG(strstr(r.body, "factum_scavenges_total 2\n") && strstr(r.body, want) &&
                  strstr(r.body, "factum_scavenge_dry_run 0\n") &&
                  strstr(r.body, "factum_scavenge_reclaimed_bytes_total 18"),
              "%s", r.body);
    resp_free(&r);
    expect_status(s.port, "DELETE", "/admin/scavenge", NULL, NULL, 405, NULL);
    expect_status(s.port, "GET", "/admin/compact", NULL, NULL, 404, NULL);
    /* The CLI asks the server and follows it to the end, a dry run too. */
    char cmd[512], out[4096];
    snprintf(cmd, sizeof cmd, "%s --server http://127.0.0.1:%d admin scavenge --dry-run 2>/dev/null", test_bin(),
             s.port);
    CHECK_EQ(test_run(cmd, out, sizeof out), 0);
    CHECK_MSG(strstr(out, "\"runs\":3,") && strstr(out, "\"dry_run\":true,\"bytes_reclaimable\":0,"), "%s", out);
    snprintf(cmd, sizeof cmd, "%s --server http://127.0.0.1:%d admin scavenge 2>/dev/null", test_bin(), s.port);
    CHECK_EQ(test_run(cmd, out, sizeof out), 0);
    CHECK_MSG(
        strstr(out, "\"running\":false,\"runs\":4,\"segments_total\":5,\"segments_done\":5,\"segments_rewritten\":0"),
        "%s", out);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    /* And on the data folder, without a server. */
    snprintf(cmd, sizeof cmd, "%s --data-dir %s admin scavenge 2>/dev/null", test_bin(), test_dir());
    CHECK_EQ(test_run(cmd, out, sizeof out), 0);
    CHECK_MSG(strstr(out, "\"runs\":1,\"segments_total\":5,\"segments_done\":5"), "%s", out);
}
