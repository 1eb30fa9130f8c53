/*
 * http.h — a strict HTTP/1.1 request parser (RFC 9112) that never copies. It reads a request
 * head from a buffer, hands back spans of method, target and headers, and decides the body's
 * framing. Anything ambiguous that request smuggling feeds on is an error, not a guess:
 * Content-Length together with Transfer-Encoding, a bare CR or LF, whitespace before a colon,
 * folded lines, a repeated Content-Length, any transfer coding but "chunked".
 */
#ifndef FACTUM_HTTP_H
#define FACTUM_HTTP_H

#include "../base/base.h"

#define HTTP_MAX_HEADERS 64
#define HTTP_MAX_LINE 8192  /* bytes of the request line or of one header line */
#define HTTP_MAX_HEAD 65536 /* bytes of the whole head */

typedef struct http_header {
    factum_str_t name, value; /* value without surrounding whitespace */
} http_header;

typedef struct http_req {
    factum_str_t method, target, path, query; /* path and query: the target split at '?' */
    int minor;                                /* HTTP/1.<minor>: 0 or 1 */
    http_header headers[HTTP_MAX_HEADERS];
    size_t nheaders;
    int64_t content_length; /* -1 when absent */
    bool chunked, keep_alive, expect_continue;
} http_req;

/*
 * Parses the head at buf[0, len). Returns its length (through the blank line) when complete,
 * 0 when more bytes are needed, or -status (400, 431, 501, 505) with *why set to a static
 * message. A complete head is never longer than HTTP_MAX_HEAD.
 */
long http_parse_head(const char *buf, size_t len, http_req *req, const char **why);

/* The value of the first header `name` (case-insensitive), or an empty span with ptr NULL. */
factum_str_t http_header_get(const http_req *req, const char *name);

/* Chunked body decoding, incremental: state survives between calls. */
typedef struct http_chunked {
    int state;
    uint64_t left; /* bytes left in the current chunk */
    size_t line;   /* bytes of the current size or trailer line */
} http_chunked;

/*
 * Decodes chunked bytes in place: reads in[0, len), appends data to out (at most max bytes in
 * total). Returns the bytes consumed; *done = true after the last chunk and trailers.
 * -400 on bad framing, -413 when the body would pass max.
 */
long http_chunked_decode(http_chunked *c, const char *in, size_t len, buf_t *out, size_t max, bool *done,
                         const char **why);

/* Case-insensitive comparison of a span and a plain lowercase string. */
bool http_token_is(factum_str_t s, const char *lower);
/* The next parameter of a query string ("k=v&k2=v2"), from *at on: its raw key, and its value
   percent-decoded into val (replacing it, NUL-terminated). 1: one; 0: the end; -1: a bad
   percent-escape in the value (key is set). Empty parameters ("a=1&&b=2") are skipped. */
int http_query_next(factum_str_t q, size_t *at, factum_str_t *key, buf_t *val);
/* Percent-decodes s into out (appended, NUL-terminated); plus_space turns '+' into ' '.
   0, or -1 for a bad escape or an encoded NUL. */
int http_unescape(factum_str_t s, bool plus_space, buf_t *out);
/* The reason phrase of a status code. */
const char *http_reason(int status);

#endif
