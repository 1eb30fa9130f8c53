/*
 * json.c — the strict JSON scanner behind json.h. Recursive descent with a depth limit; every
 * function takes the text as given and returns spans into it. Fuzzed by fuzz/fuzz_event_json.c.
 */
#include "json.h"

#include <stdio.h>

static int fail(json_cur_t *c, const char *msg) {
    if (!c->error) c->error = msg, c->error_at = c->i;
    return -1;
}

static void ws(json_cur_t *c) {
    while (c->i < c->n) {
        char ch = c->s[c->i];
        if (ch != ' ' && ch != '\t' && ch != '\n' && ch != '\r') break;
        c->i++;
    }
}

static int hex4(const char *p, uint32_t *out) {
    uint32_t v = 0;
    for (int k = 0; k < 4; k++) {
        char h = p[k];
        v <<= 4;
        if (h >= '0' && h <= '9')
            v |= (uint32_t)(h - '0');
        else if (h >= 'a' && h <= 'f')
            v |= (uint32_t)(h - 'a' + 10);
        else if (h >= 'A' && h <= 'F')
            v |= (uint32_t)(h - 'A' + 10);
        else
            return -1;
    }
    *out = v;
    return 0;
}

/* Length of a valid UTF-8 sequence at p (max n bytes), 0 if invalid (overlongs, surrogates). */
static size_t utf8_len(const uint8_t *p, size_t n) {
    uint8_t b = p[0];
    if (b < 0x80) return 1;
    if (b >= 0xC2 && b <= 0xDF) return n >= 2 && (p[1] & 0xC0) == 0x80 ? 2 : 0;
    if (b >= 0xE0 && b <= 0xEF) {
        if (n < 3 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80) return 0;
        if (b == 0xE0 && p[1] < 0xA0) return 0;
        if (b == 0xED && p[1] >= 0xA0) return 0;
        return 3;
    }
    if (b >= 0xF0 && b <= 0xF4) {
        if (n < 4 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80 || (p[3] & 0xC0) != 0x80) return 0;
        if (b == 0xF0 && p[1] < 0x90) return 0;
        if (b == 0xF4 && p[1] >= 0x90) return 0;
        return 4;
    }
    return 0;
}

/* True if none of the 8 bytes of v needs a look: all printable ASCII, no quote, no backslash.
   (The classic has-zero-byte and has-less-than tricks, applied to the whole word.) */
static bool plain8(uint64_t v) {
    const uint64_t ones = 0x0101010101010101u, highs = 0x8080808080808080u;
#define HAS_ZERO(x) (((x)-ones) & ~(x)&highs)
    uint64_t q = v ^ (ones * '"'), b = v ^ (ones * '\\');
    return !((v & highs) | HAS_ZERO(q) | HAS_ZERO(b) | ((v - ones * 0x20) & ~v & highs));
#undef HAS_ZERO
}

static int scan_string(json_cur_t *c) {
    c->i++; /* opening quote */
    while (c->i < c->n) {
        while (c->i + 8 <= c->n && plain8(load64(c->s + c->i)))
            c->i += 8;
        if (c->i >= c->n) break;
        uint8_t ch = (uint8_t)c->s[c->i];
        if (ch == '"') {
            c->i++;
            return 0;
        }
        if (ch < 0x20) return fail(c, "control character in string");
        if (ch == '\\') {
            if (c->i + 1 >= c->n) break;
            char e = c->s[c->i + 1];
            if (e == 'u') {
                uint32_t u, lo;
                if (c->i + 6 > c->n || hex4(c->s + c->i + 2, &u)) return fail(c, "bad \\u escape");
                c->i += 6;
                if (u >= 0xDC00 && u <= 0xDFFF) return fail(c, "lone low surrogate");
                if (u >= 0xD800 && u <= 0xDBFF) {
                    if (c->i + 6 > c->n || c->s[c->i] != '\\' || c->s[c->i + 1] != 'u' || hex4(c->s + c->i + 2, &lo) ||
                        lo < 0xDC00 || lo > 0xDFFF)
                        return fail(c, "lone high surrogate");
                    c->i += 6;
                }
                continue;
            }
            if (!strchr("\"\\/bfnrt", e) || e == 0) return fail(c, "bad escape");
            c->i += 2;
            continue;
        }
        size_t k = utf8_len((const uint8_t *)c->s + c->i, c->n - c->i);
        if (!k) return fail(c, "invalid UTF-8");
        c->i += k;
    }
    return fail(c, "unterminated string");
}

static int digits(json_cur_t *c) {
    size_t start = c->i;
    while (c->i < c->n && c->s[c->i] >= '0' && c->s[c->i] <= '9')
        c->i++;
    return c->i > start ? 0 : fail(c, "digit expected");
}

static int scan_number(json_cur_t *c) {
    if (c->s[c->i] == '-') c->i++;
    if (c->i >= c->n) return fail(c, "digit expected");
    if (c->s[c->i] == '0')
        c->i++;
    else if (digits(c))
        return -1;
    if (c->i < c->n && c->s[c->i] == '.') {
        c->i++;
        if (digits(c)) return -1;
    }
    if (c->i < c->n && (c->s[c->i] == 'e' || c->s[c->i] == 'E')) {
        c->i++;
        if (c->i < c->n && (c->s[c->i] == '+' || c->s[c->i] == '-')) c->i++;
        if (digits(c)) return -1;
    }
    return 0;
}

static int scan_word(json_cur_t *c, const char *w) {
    size_t k = strlen(w);
    if (c->n - c->i < k || memcmp(c->s + c->i, w, k)) return fail(c, "unexpected character");
    c->i += k;
    return 0;
}

static int scan_value(json_cur_t *c, int depth, int *kind);

static int scan_container(json_cur_t *c, int depth, char close) {
    if (depth >= JSON_MAX_DEPTH) return fail(c, "nesting too deep");
    c->i++;
    ws(c);
    if (c->i < c->n && c->s[c->i] == close) {
        c->i++;
        return 0;
    }
    for (;;) {
        int kind;
        ws(c);
        if (close == '}') {
            if (c->i >= c->n || c->s[c->i] != '"') return fail(c, "member name expected");
            if (scan_string(c)) return -1;
            ws(c);
            if (c->i >= c->n || c->s[c->i] != ':') return fail(c, "':' expected");
            c->i++;
            ws(c);
        }
        if (scan_value(c, depth + 1, &kind)) return -1;
        ws(c);
        if (c->i >= c->n) return fail(c, "unterminated container");
        if (c->s[c->i] == ',') {
            c->i++;
            continue;
        }
        if (c->s[c->i] == close) {
            c->i++;
            return 0;
        }
        return fail(c, close == '}' ? "',' or '}' expected" : "',' or ']' expected");
    }
}

static int scan_value(json_cur_t *c, int depth, int *kind) {
    ws(c);
    if (c->i >= c->n) return fail(c, "value expected");
    switch (c->s[c->i]) {
    case '{': *kind = JSON_OBJECT; return scan_container(c, depth, '}');
    case '[': *kind = JSON_ARRAY; return scan_container(c, depth, ']');
    case '"': *kind = JSON_STRING; return scan_string(c);
    case 't': *kind = JSON_TRUE; return scan_word(c, "true");
    case 'f': *kind = JSON_FALSE; return scan_word(c, "false");
    case 'n': *kind = JSON_NULL; return scan_word(c, "null");
    default:
        *kind = JSON_NUMBER;
        if (c->s[c->i] == '-' || (c->s[c->i] >= '0' && c->s[c->i] <= '9')) return scan_number(c);
        return fail(c, "unexpected character");
    }
}

int json_value(json_cur_t *c, factum_str_t *span, int *kind) {
    int k = 0;
    ws(c);
    size_t start = c->i;
    if (scan_value(c, 0, &k)) return -1;
    if (span) *span = (factum_str_t){c->s + start, c->i - start};
    if (kind) *kind = k;
    return 0;
}

bool json_valid(const char *s, size_t n, int *kind) {
    json_cur_t c = json_cur(s, n);
    if (json_value(&c, NULL, kind)) return false;
    ws(&c);
    return c.i == c.n;
}

bool json_valid_members(const char *s, size_t n) {
    json_cur_t c = json_cur(s, n);
    ws(&c);
    if (c.i == c.n) return true;
    for (;;) {
        int kind;
        ws(&c);
        if (c.i >= c.n || c.s[c.i] != '"' || scan_string(&c)) return false;
        ws(&c);
        if (c.i >= c.n || c.s[c.i] != ':') return false;
        c.i++;
        if (scan_value(&c, 1, &kind)) return false;
        ws(&c);
        if (c.i == c.n) return true;
        if (c.s[c.i++] != ',') return false;
    }
}

void json_iter_init(json_iter_t *it, factum_str_t container) {
    it->c = json_cur(container.ptr, container.len);
    it->c.i = 1; /* past '{' or '[' */
    it->first = 1;
    it->bare = false;
}

void json_iter_init_members(json_iter_t *it, factum_str_t members) {
    it->c = json_cur(members.ptr, members.len);
    it->first = 1;
    it->bare = true;
}

static int iter_sep(json_iter_t *it, char close) {
    json_cur_t *c = &it->c;
    ws(c);
    if (c->i >= c->n) return it->bare ? 0 : -1;
    if (c->s[c->i] == close) return it->bare ? -1 : 0;
    if (!it->first) {
        if (c->s[c->i] != ',') return -1;
        c->i++;
        ws(c);
    }
    it->first = 0;
    return 1;
}

int json_iter_member(json_iter_t *it, factum_str_t *key, factum_str_t *val, int *kind) {
    int r = iter_sep(it, '}');
    if (r <= 0) return r;
    json_cur_t *c = &it->c;
    size_t k0 = c->i;
    if (c->i >= c->n || c->s[c->i] != '"' || scan_string(c)) return -1;
    *key = (factum_str_t){c->s + k0, c->i - k0};
    ws(c);
    if (c->i >= c->n || c->s[c->i] != ':') return -1;
    c->i++;
    return json_value(c, val, kind) ? -1 : 1;
}

int json_iter_element(json_iter_t *it, factum_str_t *val, int *kind) {
    int r = iter_sep(it, ']');
    if (r <= 0) return r;
    return json_value(&it->c, val, kind) ? -1 : 1;
}

static void put_utf8(char **o, uint32_t u) {
    char *p = *o;
    if (u < 0x80)
        *p++ = (char)u;
    else if (u < 0x800)
        *p++ = (char)(0xC0 | (u >> 6)), *p++ = (char)(0x80 | (u & 0x3F));
    else if (u < 0x10000)
        *p++ = (char)(0xE0 | (u >> 12)), *p++ = (char)(0x80 | ((u >> 6) & 0x3F)), *p++ = (char)(0x80 | (u & 0x3F));
    else
        *p++ = (char)(0xF0 | (u >> 18)), *p++ = (char)(0x80 | ((u >> 12) & 0x3F)),
        *p++ = (char)(0x80 | ((u >> 6) & 0x3F)), *p++ = (char)(0x80 | (u & 0x3F));
    *o = p;
}

/* raw is a span that json_value accepted, so escapes are known to be well formed. */
int json_unescape(factum_str_t raw, buf_t *out) {
    if (raw.len < 2) return FACTUM_EINVAL;
    int rc = buf_reserve(out, raw.len + 1);
    if (rc) return rc;
    char *o = out->ptr + out->len;
    const char *p = raw.ptr + 1, *end = raw.ptr + raw.len - 1;
    while (p < end) {
        if (*p != '\\') {
            *o++ = *p++;
            continue;
        }
        char e = p[1];
        p += 2;
        switch (e) {
        case 'b': *o++ = '\b'; break;
        case 'f': *o++ = '\f'; break;
        case 'n': *o++ = '\n'; break;
        case 'r': *o++ = '\r'; break;
        case 't': *o++ = '\t'; break;
        case 'u': {
            uint32_t u = 0, lo = 0;
            hex4(p, &u);
            p += 4;
            if (u >= 0xD800 && u <= 0xDBFF) {
                hex4(p + 2, &lo);
                p += 6;
                u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
            }
            put_utf8(&o, u);
            break;
        }
        default: *o++ = e;
        }
    }
    out->len = (size_t)(o - out->ptr);
    out->ptr[out->len] = 0;
    return 0;
}

bool json_key_is(factum_str_t raw, const char *name) {
    size_t n = strlen(name);
    if (raw.len == n + 2 && memcmp(raw.ptr + 1, name, n) == 0) return true;
    if (!memchr(raw.ptr, '\\', raw.len)) return false;
    char tmp[256];
    buf_t b = {tmp, 0, sizeof tmp};
    if (raw.len > sizeof tmp - 1 || json_unescape(raw, &b)) return false;
    return b.len == n && memcmp(b.ptr, name, n) == 0;
}

int json_escape(buf_t *out, const char *s, size_t n) {
    int rc = buf_reserve(out, n * 6 + 3);
    if (rc) return rc;
    char *o = out->ptr + out->len;
    *o++ = '"';
    for (size_t i = 0; i < n; i++) {
        uint8_t ch = (uint8_t)s[i];
        if (ch == '"' || ch == '\\')
            *o++ = '\\', *o++ = (char)ch;
        else if (ch == '\n')
            *o++ = '\\', *o++ = 'n';
        else if (ch == '\r')
            *o++ = '\\', *o++ = 'r';
        else if (ch == '\t')
            *o++ = '\\', *o++ = 't';
        else if (ch < 0x20) {
            static const char hex[] = "0123456789abcdef";
            memcpy(o, "\\u00", 4);
            o[4] = hex[ch >> 4], o[5] = hex[ch & 15];
            o += 6;
        } else
            *o++ = (char)ch;
    }
    *o++ = '"';
    out->len = (size_t)(o - out->ptr);
    out->ptr[out->len] = 0;
    return 0;
}

int json_escape_lossy(buf_t *out, const char *s, size_t n) {
    size_t i = 0, run = 0;
    int rc = buf_append(out, "\"", 1);
    while (!rc && i < n) {
        size_t k = utf8_len((const uint8_t *)s + i, n - i);
        if (k) {
            i += k;
            continue;
        }
        /* Valid text up to here goes through the ordinary escaper (without its quotes). */
        size_t at = out->len;
        if ((rc = json_escape(out, s + run, i - run))) break;
        memmove(out->ptr + at, out->ptr + at + 1, out->len - at - 2);
        out->len -= 2;
        rc = buf_append(out, "\ufffd", 6);
        run = ++i;
    }
    if (!rc) {
        size_t at = out->len;
        if (!(rc = json_escape(out, s + run, n - run))) {
            memmove(out->ptr + at, out->ptr + at + 1, out->len - at - 1);
            out->len -= 1;
            out->ptr[out->len] = 0;
        }
    }
    return rc;
}

bool text_valid(const char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        uint8_t ch = (uint8_t)s[i];
        if (ch < 0x20 || ch == 0x7f) return false;
        size_t k = utf8_len((const uint8_t *)s + i, n - i);
        if (!k) return false;
        i += k;
    }
    return true;
}

bool json_member(factum_str_t obj, const char *key, factum_str_t *val, int *kind) {
    json_iter_t it;
    factum_str_t k;
    json_iter_init(&it, obj);
    while (json_iter_member(&it, &k, val, kind) == 1)
        if (json_key_is(k, key)) return true;
    return false;
}

bool json_member_u64(factum_str_t obj, const char *key, uint64_t *out) {
    factum_str_t v;
    int kind;
    return json_member(obj, key, &v, &kind) && kind == JSON_NUMBER && str_u64(v, out);
}

bool json_member_string(factum_str_t obj, const char *key, buf_t *out) {
    factum_str_t v;
    int kind;
    out->len = 0;
    return json_member(obj, key, &v, &kind) && kind == JSON_STRING && !json_unescape(v, out) &&
           !buf_append(out, "", 1) && (out->len--, true);
}

int json_member_u32_in(factum_str_t obj, const char *key, uint64_t lo, uint64_t hi, uint64_t dflt, uint32_t *out,
                       factum_error_t *err) {
    factum_str_t v;
    int kind;
    uint64_t n = dflt;
    if (json_member(obj, key, &v, &kind) && (kind != JSON_NUMBER || !str_u64(v, &n)))
        return err_set(err, FACTUM_EINVAL, "'%s' must be a whole number", key);
    if (n < lo || n > hi)
        return err_set(err, FACTUM_EINVAL, "'%s' must be %llu to %llu", key, (unsigned long long)lo,
                       (unsigned long long)hi);
    *out = (uint32_t)n;
    return 0;
}

int json_only_members(factum_str_t obj, const char *what, const char *const *allowed, factum_error_t *err) {
    json_iter_t it;
    factum_str_t k, v;
    int kind, r;
    json_iter_init(&it, obj);
    while ((r = json_iter_member(&it, &k, &v, &kind)) == 1) {
        bool ok = false;
        for (size_t i = 0; allowed[i] && !ok; i++)
            ok = json_key_is(k, allowed[i]);
        if (ok) continue;
        char known[512];
        size_t n = 0;
        for (size_t i = 0; allowed[i] && n < sizeof known; i++)
            n += (size_t)snprintf(known + n, sizeof known - n, "%s%s", i ? ", " : "", allowed[i]);
        return err_set(err, FACTUM_EINVAL, "%s: unknown member %.*s (it has %s)", what, (int)MIN(k.len, 80), k.ptr,
                       known);
    }
    return r < 0 ? err_set(err, FACTUM_EINVAL, "%s is not valid JSON", what) : 0;
}
