/*
 * fuzz_http.c — the HTTP/1.1 request parser: the head, then a chunked body when the head asks
 * for one, percent-decoding of the path and query, and walking the query's parameters. Spans stay inside the input; a
 * complete head parses the same when given alone; the decoder never passes its limit.
 */
#include "../src/server/http.h"
#include "fuzz.h"

FUZZ_TARGET(http) {
    const char *in = (const char *)data;
    http_req r;
    const char *why = NULL;
    long hl = http_parse_head(in, size, &r, &why);
    if (hl < 0) ENSURE(why != NULL && (hl == -400 || hl == -431 || hl == -417 || hl == -505));
    if (hl <= 0) return 0;
    ENSURE((size_t)hl <= size && hl <= HTTP_MAX_HEAD);
    ENSURE(r.method.ptr >= in && r.target.ptr + r.target.len <= in + hl);
    for (size_t i = 0; i < r.nheaders; i++)
        ENSURE(r.headers[i].name.ptr >= in && r.headers[i].value.ptr + r.headers[i].value.len <= in + hl);
    ENSURE(!(r.chunked && r.content_length >= 0));
    http_req again;
    ENSURE(http_parse_head(in, (size_t)hl, &again, &why) == hl && again.nheaders == r.nheaders);
    buf_t b = {0};
    http_unescape(r.path, false, &b);
    b.len = 0;
    http_unescape(r.query, true, &b);
    /* The query walker: every key lies inside the query, and the walk ends. */
    factum_str_t q = r.query, k;
    size_t pairs = 0;
    for (int got; (got = http_query_next(&q, &k, &b)); pairs++) {
        ENSURE(k.ptr >= r.query.ptr && k.ptr + k.len <= r.query.ptr + r.query.len);
        ENSURE(pairs <= r.query.len);
        if (got < 0) continue;
    }
    ENSURE(q.len == 0);
    buf_free(&b);
    if (r.chunked) {
        http_chunked c = {0};
        bool done = false;
        size_t off = (size_t)hl, max = 4096;
        /* Feed in two pieces, to cover state kept between calls. */
        size_t half = off + (size - off) / 2;
        long u = http_chunked_decode(&c, in + off, half - off, &b, max, &done, &why);
        if (u >= 0 && !done) {
            ENSURE((size_t)u == half - off);
            u = http_chunked_decode(&c, in + half, size - half, &b, max, &done, &why);
        }
        ENSURE(b.len <= max);
        buf_free(&b);
    }
    return 0;
}
