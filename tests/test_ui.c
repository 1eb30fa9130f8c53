/*
 * test_ui.c — the dashboard (docs/ui.md): its assets served from the binary with their type,
 * ETag, gzip and Content-Security-Policy; browsers at / sent to it while API clients still get
 * the route list; its files open to anyone while its data needs a key; and every page in a real
 * browser (tests/browser/ui.mjs: Debian chromium through playwright-core, with axe-core), which
 * leaves a screenshot of each page under build/ui-shots/.
 */
#include "../src/server/ui.h"
#include "test_server.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void header_is(const resp *r, const char *name, const char *want) {
    char v[1024];
    resp_header(r, name, v, sizeof v);
    CHECK_MSG(!strcmp(v, want), "%s: \"%s\", wanted \"%s\"", name, v, want);
}

TEST(the_dashboard_is_served_with_its_type_etag_gzip_and_a_strict_csp) {
    srv s = srv_start(test_dir(), NULL);
    resp r;
    char csp[1024], etag[64], hdr[200];
    http_do(s.port, "GET", "/ui/", NULL, NULL, &r);
    CHECK_EQ(r.status, 200);
    header_is(&r, "content-type", "text/html; charset=utf-8");
    CHECK(strstr(r.body, "<script type=\"module\" src=\"app.js\"></script>") && !strstr(r.body, "<script>"));
    resp_header(&r, "content-security-policy", csp, sizeof csp);
    CHECK_MSG(strstr(csp, "default-src 'self'") && strstr(csp, "script-src 'self'") && !strstr(csp, "unsafe"), "%s",
              csp);
    header_is(&r, "x-content-type-options", "nosniff");
    resp_free(&r);

    /* Each asset: its type, its bytes, a strong ETag that a revalidation answers 304 without a body. */
    static const struct {
        const char *path, *type;
    } assets[] = {{"/ui/app.js", "text/javascript; charset=utf-8"},
                  {"/ui/app.css", "text/css; charset=utf-8"},
                  {"/ui/favicon.svg", "image/svg+xml"},
                  {"/ui/index.html", "text/html; charset=utf-8"}};
    for (size_t i = 0; i < ARRAY_LEN(assets); i++) {
        http_do(s.port, "GET", assets[i].path, NULL, NULL, &r);
        CHECK_MSG(r.status == 200, "%s: %d", assets[i].path, r.status);
        header_is(&r, "content-type", assets[i].type);
        header_is(&r, "cache-control", "no-cache");
        resp_header(&r, "etag", etag, sizeof etag);
        CHECK_MSG(strlen(etag) == 18 && etag[0] == '"' && etag[17] == '"', "%s", etag);
        char e[64];
        resp_header(&r, "content-encoding", e, sizeof e);
        CHECK_MSG(!e[0], "gzip without Accept-Encoding: %s", e);
        resp_free(&r);
        snprintf(hdr, sizeof hdr, "If-None-Match: \"other\", %s\r\n", etag);
        http_do(s.port, "GET", assets[i].path, hdr, NULL, &r);
        CHECK_EQ(r.status, 304);
        CHECK_EQ(r.body_len, 0);
        header_is(&r, "etag", etag);
        resp_free(&r);
    }

    /* gzip when asked for (made at build time), not when refused with q=0; a different ETag. */
    size_t plain;
    http_do(s.port, "GET", "/ui/app.css", NULL, NULL, &r);
    plain = r.body_len;
    resp_header(&r, "etag", etag, sizeof etag);
    resp_free(&r);
    http_do(s.port, "GET", "/ui/app.css", "Accept-Encoding: br, gzip;q=0.5\r\n", NULL, &r);
    header_is(&r, "content-encoding", "gzip");
    header_is(&r, "vary", "Accept-Encoding");
    CHECK(r.body_len < plain && (unsigned char)r.body[0] == 0x1f && (unsigned char)r.body[1] == 0x8b);
    char gz_etag[64];
    resp_header(&r, "etag", gz_etag, sizeof gz_etag);
    CHECK_MSG(strcmp(gz_etag, etag) != 0, "one ETag for two representations: %s", etag);
    resp_free(&r);
    http_do(s.port, "GET", "/ui/app.css", "Accept-Encoding: gzip;q=0, identity\r\n", NULL, &r);
    CHECK_EQ(r.body_len, plain);
    resp_free(&r);
    /* HEAD: the same headers, no body. */
    http_do(s.port, "HEAD", "/ui/app.css", NULL, NULL, &r);
    CHECK_EQ(r.status, 200);
    CHECK_EQ(r.body_len, 0);
    resp_free(&r);

    /* What is not an asset; what is not a GET. */
    expect_status(s.port, "GET", "/ui/nosuch.js", NULL, NULL, 404, "the dashboard has no asset nosuch.js");
    expect_status(s.port, "GET", "/ui/embed.sh", NULL, NULL, 404, NULL);
    expect_status(s.port, "GET", "/ui/app.js/x", NULL, NULL, 404, "no such resource");
    expect_status(s.port, "POST", "/ui/app.js", NULL, "", 405, NULL);
    expect_status(s.port, "GET", "/ui", NULL, NULL, 404, "no such resource");
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}

TEST(a_browser_at_the_root_is_sent_to_the_dashboard_and_json_still_gets_the_routes) {
    srv s = srv_start(test_dir(), NULL);
    resp r;
    http_do(s.port, "GET", "/", "Accept: text/html,application/xhtml+xml,*/*;q=0.8\r\n", NULL, &r);
    CHECK_EQ(r.status, 303);
    header_is(&r, "location", "/ui/");
    header_is(&r, "vary", "Accept");
    resp_free(&r);
    const char *json[] = {NULL, "Accept: application/json\r\n", "Accept: */*\r\n",
                          "Accept: text/html, application/json\r\n", "Accept: text/html;q=0, */*\r\n"};
    for (size_t i = 0; i < ARRAY_LEN(json); i++) {
        http_do(s.port, "GET", "/", json[i], NULL, &r);
        CHECK_MSG(r.status == 200 && strstr(r.body, "\"path\":\"/ui/{asset}\""), "%s: %d %s", json[i] ? json[i] : "-",
                  r.status, r.body);
        resp_free(&r);
    }
    /* The overview's uptime: when the server started. */
    double started = srv_metric(s.port, "process_start_time_seconds");
    CHECK_MSG(started > (double)time(NULL) - 600 && started <= (double)time(NULL) + 1, "%f", started);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}

TEST(the_dashboard_files_need_no_key_while_its_data_does) {
    srv s = srv_start(test_dir(), NULL);
    char *b = http_body(s.port, "POST", "/admin/keys", NULL, "{\"role\":\"admin\"}", 201);
    free(b);
    expect_status(s.port, "GET", "/ui/", NULL, NULL, 200, NULL);
    expect_status(s.port, "GET", "/ui/app.js", "Authorization: Bearer nonsense\r\n", NULL, 200, NULL);
    expect_status(s.port, "GET", "/streams", NULL, NULL, 401, NULL);
    expect_status(s.port, "GET", "/ui/nosuch.js", NULL, NULL, 404, NULL);
    resp r;
    http_do(s.port, "GET", "/", "Accept: text/html\r\n", NULL, &r); /* before the key: the page asks for it */
    CHECK_EQ(r.status, 303);
    resp_free(&r);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}

TEST(the_dashboard_assets_total_under_300_kb_compressed) {
    size_t total = 0, plain = 0;
    for (size_t i = 0; i < ui_asset_count; i++)
        total += ui_assets[i].gz ? ui_assets[i].gz_len : ui_assets[i].len, plain += ui_assets[i].len;
    printf("dashboard: %zu assets, %zu bytes, %zu compressed\n", ui_asset_count, plain, total);
    CHECK_MSG(total < 300 * 1024, "%zu bytes compressed", total);
    CHECK(ui_asset_count >= 10);
}

TEST_T(every_dashboard_page_shows_what_the_api_holds_in_a_real_browser, 180) {
    srv s = srv_start(test_dir(), NULL);
    char cmd[4096], out[16384];
    snprintf(cmd, sizeof cmd, "node %s/tests/browser/ui.mjs http://127.0.0.1:%d %s/build/ui-shots 2>&1", test_root(),
             s.port, test_root());
    int st = test_run(cmd, out, sizeof out);
    CHECK_MSG(st == 0 && strstr(out, "ui: ok"), "browser test (status %d): %s", st, out);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}
