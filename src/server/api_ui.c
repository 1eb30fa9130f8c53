/*
 * api_ui.c — the dashboard: its embedded assets (ui.h) at GET /ui/ and /ui/{asset}, and browsers
 * sent there from GET /.
 *
 * The assets are static files that need no key (PERM_PUBLIC): every figure the pages show they
 * fetch from the public API with the user's key, so serving them tells nobody anything. Each
 * answer carries a strict Content-Security-Policy (only this origin's scripts, styles and
 * connections; no inline script, no frames), a strong ETag per representation (a matching
 * If-None-Match is a 304) and, when the client accepts it, the gzip made at build time. The
 * redirect of GET / happens in route.c before the guard, so a browser that has no key yet still
 * reaches the page that asks for one; docs/ui.md.
 */
#include "api.h"
#include "ui.h"

#include <stdio.h>

#define UI_CSP                                                                                                         \
    "Content-Security-Policy: default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "         \
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'\r\n"           \
    "X-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\n"

/* Whether header value v lists token (case-insensitive) with a q above 0: "gzip, br;q=0.5". */
static bool list_accepts(factum_str_t v, const char *token) {
    size_t tl = strlen(token);
    while (v.len) {
        const char *comma = memchr(v.ptr, ',', v.len);
        factum_str_t item = {v.ptr, comma ? (size_t)(comma - v.ptr) : v.len};
        v = comma ? (factum_str_t){comma + 1, v.len - item.len - 1} : (factum_str_t){v.ptr + v.len, 0};
        while (item.len && (item.ptr[0] == ' ' || item.ptr[0] == '\t'))
            item.ptr++, item.len--;
        const char *semi = memchr(item.ptr, ';', item.len);
        size_t nl = semi ? (size_t)(semi - item.ptr) : item.len;
        while (nl && (item.ptr[nl - 1] == ' ' || item.ptr[nl - 1] == '\t'))
            nl--;
        if (nl != tl || !http_token_is((factum_str_t){item.ptr, nl}, token)) continue;
        if (!semi) return true;
        /* q=0, q=0.0, q=0.00 refuse it; any other q accepts */
        const char *q = semi + 1, *end = item.ptr + item.len;
        while (q < end && (*q == ' ' || *q == '\t'))
            q++;
        if (end - q < 3 || (q[0] != 'q' && q[0] != 'Q') || q[1] != '=') return true;
        for (q += 2; q < end && (*q == '0' || *q == '.'); q++)
            ;
        return q < end && *q >= '1' && *q <= '9';
    }
    return false;
}

bool api_ui_browser(const conn *c) {
    factum_str_t a = http_header_get(&c->req->h, "accept");
    return list_accepts(a, "text/html") && !list_accepts(a, "application/json");
}

void api_ui_redirect(conn *c) {
    conn_respond(c, 303, "text/plain; charset=utf-8", "Location: /ui/\r\nVary: Accept\r\nCache-Control: no-store\r\n",
                 "", 0);
}

static void serve(conn *c, const ui_asset *as) {
    const http_req *h = &c->req->h;
    bool gz = as->gz && list_accepts(http_header_get(h, "accept-encoding"), "gzip");
    char etag[32], hdr[1024];
    snprintf(etag, sizeof etag, "\"%s%s\"", as->etag, gz ? "-gz" : "");
    factum_str_t inm = http_header_get(h, "if-none-match");
    bool fresh = inm.len && (memmem(inm.ptr, inm.len, etag, strlen(etag)) || str_eq(inm, str_c("*")));
    snprintf(hdr, sizeof hdr, "ETag: %s\r\nCache-Control: no-cache\r\nVary: Accept-Encoding\r\n%s%s", etag,
             gz ? "Content-Encoding: gzip\r\n" : "", fresh ? "" : UI_CSP);
    if (fresh)
        conn_respond(c, 304, as->type, hdr, NULL, 0);
    else
        conn_respond(c, 200, as->type, hdr, (const char *)(gz ? as->gz : as->body), gz ? as->gz_len : as->len);
}

static const ui_asset *find(factum_str_t name) {
    for (size_t i = 0; i < ui_asset_count; i++)
        if (str_eq(name, str_c(ui_assets[i].name))) return &ui_assets[i];
    return NULL;
}

/* GET /ui/ */
void api_ui_index(conn *c, const route_args *a, factum_str_t body) {
    (void)a, (void)body;
    serve(c, find(str_c("index.html")));
}

/* GET /ui/{asset} */
void api_ui_asset(conn *c, const route_args *a, factum_str_t body) {
    (void)body;
    const ui_asset *as = find(a->p[0]);
    if (!as) {
        conn_problem(c, 404, "not-found", NULL, "the dashboard has no asset %.*s", (int)MIN(a->p[0].len, 100),
                     a->p[0].ptr);
        return;
    }
    serve(c, as);
}
