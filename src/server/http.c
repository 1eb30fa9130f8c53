/*
 * http.c — the strict HTTP/1.1 request parser. See http.h for what it refuses and why.
 */
#include "http.h"

#include <ctype.h>

/* tchar of RFC 9110 section 5.6.2. */
static bool is_tchar(unsigned char c) {
    if (isalnum(c)) return true;
    return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* Field value octets: VCHAR, SP, HTAB, obs-text. */
static bool is_vchar(unsigned char c) { return c == '\t' || (c >= 0x20 && c != 0x7f); }

bool http_token_is(factum_str_t s, const char *lower) {
    size_t n = strlen(lower);
    if (s.len != n) return false;
    for (size_t i = 0; i < n; i++)
        if (tolower((unsigned char)s.ptr[i]) != lower[i]) return false;
    return true;
}

factum_str_t http_header_get(const http_req *req, const char *name) {
    for (size_t i = 0; i < req->nheaders; i++)
        if (http_token_is(req->headers[i].name, name)) return req->headers[i].value;
    return (factum_str_t){NULL, 0};
}

#define FAIL(status, msg)                                                                                              \
    do {                                                                                                               \
        *why = msg;                                                                                                    \
        return -(status);                                                                                              \
    } while (0)

/* Finds the end of the line starting at i: the index of its CR (followed by LF). 0 = need
   more, -1 = bare CR or LF. */
static long line_end(const char *b, size_t len, size_t i) {
    for (size_t j = i; j < len; j++) {
        if (b[j] == '\n') return -1;
        if (b[j] == '\r') {
            if (j + 1 == len) return 0;
            return b[j + 1] == '\n' ? (long)j : -1;
        }
    }
    return 0;
}

/* Parses a comma-separated list value and checks each element against tokens. */
static bool list_has(factum_str_t v, const char *lower) {
    size_t i = 0;
    while (i < v.len) {
        while (i < v.len && (v.ptr[i] == ' ' || v.ptr[i] == '\t' || v.ptr[i] == ','))
            i++;
        size_t s = i;
        while (i < v.len && v.ptr[i] != ',')
            i++;
        size_t e = i;
        while (e > s && (v.ptr[e - 1] == ' ' || v.ptr[e - 1] == '\t'))
            e--;
        if (e > s && http_token_is((factum_str_t){v.ptr + s, e - s}, lower)) return true;
    }
    return false;
}

static long parse_request_line(const char *b, size_t end, http_req *r, const char **why) {
    size_t i = 0;
    while (i < end && is_tchar((unsigned char)b[i]))
        i++;
    if (i == 0 || i == end || b[i] != ' ') FAIL(400, "malformed request line");
    r->method = (factum_str_t){b, i};
    size_t t = ++i;
    while (i < end && b[i] != ' ') {
        unsigned char c = (unsigned char)b[i];
        if (c <= 0x20 || c >= 0x7f) FAIL(400, "request target holds a character that must be percent-encoded");
        i++;
    }
    if (i == t || i == end) FAIL(400, "malformed request line");
    r->target = (factum_str_t){b + t, i - t};
    if (r->target.ptr[0] != '/') FAIL(400, "request target must be an absolute path");
    i++;
    if (end - i != 8 || memcmp(b + i, "HTTP/1.", 7) != 0) {
        if (end - i == 8 && memcmp(b + i, "HTTP/", 5) == 0 && isdigit((unsigned char)b[i + 5]))
            FAIL(505, "only HTTP/1.0 and HTTP/1.1 are supported");
        FAIL(400, "malformed request line");
    }
    if (b[i + 7] != '0' && b[i + 7] != '1') FAIL(505, "only HTTP/1.0 and HTTP/1.1 are supported");
    r->minor = b[i + 7] - '0';
    const char *q = memchr(r->target.ptr, '?', r->target.len);
    size_t plen = q ? (size_t)(q - r->target.ptr) : r->target.len;
    r->path = (factum_str_t){r->target.ptr, plen};
    r->query = q ? (factum_str_t){q + 1, r->target.len - plen - 1} : (factum_str_t){"", 0};
    return 0;
}

long http_parse_head(const char *b, size_t len, http_req *r, const char **why) {
    memset(r, 0, sizeof *r);
    r->content_length = -1;
    /* RFC 9112 2.2: a server SHOULD ignore at least one empty line before the request line;
       the connection (conn.c) skips them before it calls this, so here the head starts at once. */
    long e = line_end(b, MIN(len, (size_t)HTTP_MAX_LINE + 2), 0);
    if (e < 0) FAIL(400, "bare CR or LF in the request line");
    if (e == 0) {
        if (len > HTTP_MAX_LINE) FAIL(431, "request line is too long");
        return 0;
    }
    long rc = parse_request_line(b, (size_t)e, r, why);
    if (rc) return rc;
    size_t i = (size_t)e + 2;
    bool have_te = false, host = false;
    for (;;) {
        size_t cap = MIN(len, i + HTTP_MAX_LINE + 2);
        e = line_end(b, cap, i);
        if (e < 0) FAIL(400, "bare CR or LF in a header");
        if (e == 0) {
            if (cap - i > HTTP_MAX_LINE) FAIL(431, "a header line is too long");
            if (len > HTTP_MAX_HEAD) FAIL(431, "request head is too large");
            return 0;
        }
        size_t end = (size_t)e;
        if (end > HTTP_MAX_HEAD) FAIL(431, "request head is too large");
        if (end == i) {
            i += 2;
            break;
        }
        if (b[i] == ' ' || b[i] == '\t') FAIL(400, "folded header lines are not accepted");
        size_t n = i;
        while (n < end && is_tchar((unsigned char)b[n]))
            n++;
        if (n == end || b[n] != ':') {
            if (n < end && (b[n] == ' ' || b[n] == '\t')) FAIL(400, "whitespace between a header name and its colon");
            FAIL(400, "malformed header line");
        }
        if (n == i) FAIL(400, "empty header name");
        size_t v = n + 1, ve = end;
        while (v < ve && (b[v] == ' ' || b[v] == '\t'))
            v++;
        while (ve > v && (b[ve - 1] == ' ' || b[ve - 1] == '\t'))
            ve--;
        for (size_t k = v; k < ve; k++)
            if (!is_vchar((unsigned char)b[k])) FAIL(400, "control character in a header value");
        if (r->nheaders == HTTP_MAX_HEADERS) FAIL(431, "too many headers");
        http_header *h = &r->headers[r->nheaders++];
        h->name = (factum_str_t){b + i, n - i};
        h->value = (factum_str_t){b + v, ve - v};
        if (http_token_is(h->name, "content-length")) {
            if (h->value.len == 0 || h->value.len > 18) FAIL(400, "bad Content-Length");
            int64_t cl = 0;
            for (size_t k = 0; k < h->value.len; k++) {
                if (!isdigit((unsigned char)h->value.ptr[k])) FAIL(400, "bad Content-Length");
                cl = cl * 10 + (h->value.ptr[k] - '0');
            }
            if (r->content_length >= 0) FAIL(400, "more than one Content-Length");
            r->content_length = cl;
        } else if (http_token_is(h->name, "transfer-encoding")) {
            if (have_te) FAIL(400, "more than one Transfer-Encoding");
            have_te = true;
            if (!http_token_is(h->value, "chunked")) FAIL(400, "the only transfer coding accepted is chunked");
            r->chunked = true;
        } else if (http_token_is(h->name, "host")) {
            if (host) FAIL(400, "more than one Host");
            host = true;
        } else if (http_token_is(h->name, "expect")) {
            if (!http_token_is(h->value, "100-continue")) FAIL(417, "the only expectation accepted is 100-continue");
            r->expect_continue = true;
        }
        i = end + 2;
    }
    if (have_te && r->content_length >= 0) FAIL(400, "both Content-Length and Transfer-Encoding");
    if (have_te && r->minor == 0) FAIL(400, "Transfer-Encoding in an HTTP/1.0 request");
    if (!host && r->minor == 1) FAIL(400, "HTTP/1.1 request without Host");
    factum_str_t conn = http_header_get(r, "connection");
    r->keep_alive = r->minor == 1 ? !list_has(conn, "close") : list_has(conn, "keep-alive");
    return (long)i;
}

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

enum { CH_SIZE, CH_EXT, CH_SIZE_LF, CH_DATA, CH_DATA_CR, CH_DATA_LF, CH_TRAILER, CH_TRAILER_LF, CH_DONE };

long http_chunked_decode(http_chunked *c, const char *in, size_t len, buf_t *out, size_t max, bool *done,
                         const char **why) {
    size_t i = 0;
    *done = c->state == CH_DONE;
    while (i < len && !*done) {
        char ch = in[i];
        switch (c->state) {
        case CH_SIZE: {
            int h = hexval((unsigned char)ch);
            if (h >= 0) {
                if (++c->line > 15) FAIL(400, "chunk size is too long");
                c->left = c->left * 16 + (uint64_t)h;
                i++;
            } else if (c->line == 0) {
                FAIL(400, "bad chunk size");
            } else if (ch == ';') {
                c->state = CH_EXT, i++;
            } else if (ch == '\r') {
                c->state = CH_SIZE_LF, i++;
            } else {
                FAIL(400, "bad chunk size");
            }
            break;
        }
        case CH_EXT: /* chunk extensions are read and ignored */
            if (ch == '\r')
                c->state = CH_SIZE_LF;
            else if (ch == '\n' || !is_vchar((unsigned char)ch))
                FAIL(400, "bad chunk extension");
            else if (++c->line > HTTP_MAX_LINE)
                FAIL(400, "chunk extension is too long");
            i++;
            break;
        case CH_SIZE_LF:
            if (ch != '\n') FAIL(400, "bare CR in chunked framing");
            i++;
            c->line = 0;
            if (c->left == 0)
                c->state = CH_TRAILER;
            else if (out->len + c->left > max)
                FAIL(413, "request body is larger than the limit");
            else
                c->state = CH_DATA;
            break;
        case CH_DATA: {
            size_t take = (size_t)MIN((uint64_t)(len - i), c->left);
            if (buf_append(out, in + i, take)) FAIL(413, "out of memory for the request body");
            i += take;
            c->left -= take;
            if (c->left == 0) c->state = CH_DATA_CR;
            break;
        }
        case CH_DATA_CR:
            if (ch != '\r') FAIL(400, "chunk data longer than its size");
            c->state = CH_DATA_LF, i++;
            break;
        case CH_DATA_LF:
            if (ch != '\n') FAIL(400, "bare CR in chunked framing");
            c->state = CH_SIZE, c->line = 0, i++;
            break;
        case CH_TRAILER: /* trailer fields are read and ignored; an empty line ends the body */
            if (ch == '\r') {
                c->state = CH_TRAILER_LF;
            } else if (ch == '\n' || !is_vchar((unsigned char)ch)) {
                FAIL(400, "bad trailer field");
            } else if (++c->line > HTTP_MAX_LINE) {
                FAIL(400, "trailer field is too long");
            }
            i++;
            break;
        case CH_TRAILER_LF:
            if (ch != '\n') FAIL(400, "bare CR in chunked framing");
            i++;
            if (c->line == 0)
                c->state = CH_DONE, *done = true;
            else
                c->state = CH_TRAILER, c->line = 0;
            break;
        }
    }
    return (long)i;
}

int http_unescape(factum_str_t s, bool plus_space, buf_t *out) {
    if (buf_reserve(out, s.len + 1)) return -1;
    for (size_t i = 0; i < s.len; i++) {
        char c = s.ptr[i];
        if (c == '%') {
            if (i + 2 >= s.len) return -1;
            int a = hexval((unsigned char)s.ptr[i + 1]), b = hexval((unsigned char)s.ptr[i + 2]);
            if (a < 0 || b < 0 || (a == 0 && b == 0)) return -1;
            c = (char)(a * 16 + b);
            i += 2;
        } else if (c == '+' && plus_space) {
            c = ' ';
        }
        out->ptr[out->len++] = c;
    }
    out->ptr[out->len] = 0;
    return 0;
}

int http_query_next(factum_str_t *q, factum_str_t *key, buf_t *val) {
    for (;;) {
        if (!q->len) return 0;
        const char *amp = memchr(q->ptr, '&', q->len);
        factum_str_t kv = {q->ptr, amp ? (size_t)(amp - q->ptr) : q->len};
        q->ptr += kv.len + (amp != NULL), q->len -= kv.len + (amp != NULL);
        if (!kv.len) continue;
        const char *eq = memchr(kv.ptr, '=', kv.len);
        *key = (factum_str_t){kv.ptr, eq ? (size_t)(eq - kv.ptr) : kv.len};
        val->len = 0;
        return http_unescape(eq ? (factum_str_t){eq + 1, kv.len - key->len - 1} : (factum_str_t){"", 0}, true, val) ? -1
                                                                                                                    : 1;
    }
}

const char *http_reason(int status) {
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 415: return "Unsupported Media Type";
    case 417: return "Expectation Failed";
    case 421: return "Misdirected Request";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    case 507: return "Insufficient Storage";
    default: return "Unknown";
    }
}
