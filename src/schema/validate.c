/*
 * validate.c — schema_validate: data against the compiled tree of node.h. One walk over the
 * data; each node checks what its keywords ask. With a report it goes on past a violation to
 * find them all (each with the JSON pointer of the value and the keyword); without one, and
 * inside anyOf/oneOf/not/if/contains (which report only themselves), it stops at the first.
 */
#include "node.h"

#include "../base/json.h"

#include <arpa/inet.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#define MAX_DEPTH 256 /* nodes deep: a $ref to an enclosing schema recurses with the data */

typedef struct vctx {
    schema_report *rep; /* NULL: quiet, stop at the first violation */
    buf_t ptr;          /* the JSON pointer of the value at hand (with a report) */
    int depth;
} vctx;

void schema_report_reset(schema_report *r) {
    r->count = 0;
    r->json.len = 0;
    r->first[0] = 0;
}
void schema_report_free(schema_report *r) {
    buf_free(&r->json);
    memset(r, 0, sizeof *r);
}

__attribute__((format(printf, 3, 4))) static bool violation(vctx *x, const char *kw, const char *fmt, ...) {
    schema_report *r = x->rep;
    if (!r) return false;
    char msg[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    schema_report_add(r, (factum_str_t){x->ptr.ptr ? x->ptr.ptr : "", x->ptr.len}, kw, msg);
    return false;
}

void schema_report_add(schema_report *r, factum_str_t p, const char *kw, const char *msg) {
    if (r->count == 0) snprintf(r->first, sizeof r->first, "%.*s: %s: %s", (int)MIN(p.len, 80), p.ptr, kw, msg);
    if (r->count++ < SCHEMA_MAX_REPORTED) {
        if (r->json.len) buf_append(&r->json, ",", 1);
        buf_printf(&r->json, "{%s\"pointer\":", r->tag ? r->tag : "");
        json_escape(&r->json, p.ptr, p.len);
        buf_printf(&r->json, ",\"keyword\":\"%s\",\"message\":", kw);
        json_escape(&r->json, msg, strlen(msg));
        buf_append(&r->json, "}", 1);
    }
}

void schema_pointer_push(buf_t *b, const char *seg, size_t n) {
    buf_append(b, "/", 1);
    for (size_t i = 0; i < n; i++)
        if (seg[i] == '~')
            buf_append(b, "~0", 2);
        else if (seg[i] == '/')
            buf_append(b, "~1", 2);
        else
            buf_append(b, &seg[i], 1);
}

static size_t ptr_push(vctx *x, const char *seg, size_t n) {
    size_t mark = x->ptr.len;
    if (x->rep) schema_pointer_push(&x->ptr, seg, n);
    return mark;
}
static size_t ptr_index(vctx *x, size_t i) {
    char s[24];
    int n = snprintf(s, sizeof s, "%zu", i);
    return ptr_push(x, s, (size_t)n);
}

/* ---- JSON equality (enum, const, uniqueItems) ---- */

static bool str_equal(factum_str_t a, factum_str_t b) {
    if (str_eq(a, b)) return true;
    if (!memchr(a.ptr, '\\', a.len) && !memchr(b.ptr, '\\', b.len)) return false;
    buf_t x = {0}, y = {0};
    bool eq = !json_unescape(a, &x) && !json_unescape(b, &y) && x.len == y.len && !memcmp(x.ptr, y.ptr, x.len);
    buf_free(&x), buf_free(&y);
    return eq;
}

bool schema_json_equal(factum_str_t a, int ka, factum_str_t b, int kb) {
    if (ka != kb) return false;
    json_iter_t ia, ib;
    factum_str_t ea, eb, key;
    int ea_k, eb_k;
    switch (ka) {
    case JSON_NUMBER: return str_eq(a, b) || schema_number(a) == schema_number(b);
    case JSON_STRING: return str_equal(a, b);
    case JSON_ARRAY:
        json_iter_init(&ia, a), json_iter_init(&ib, b);
        for (;;) {
            int ra = json_iter_element(&ia, &ea, &ea_k), rb = json_iter_element(&ib, &eb, &eb_k);
            if (ra != 1 || rb != 1) return ra == rb;
            if (!schema_json_equal(ea, ea_k, eb, eb_k)) return false;
        }
    case JSON_OBJECT: {
        size_t na = 0, nb = 0;
        json_iter_init(&ia, a);
        while (json_iter_member(&ia, &key, &ea, &ea_k) == 1) {
            na++;
            bool found = false;
            factum_str_t kb2;
            json_iter_init(&ib, b);
            while (!found && json_iter_member(&ib, &kb2, &eb, &eb_k) == 1)
                found = str_equal(key, kb2);
            if (!found || !schema_json_equal(ea, ea_k, eb, eb_k)) return false;
        }
        json_iter_init(&ib, b);
        while (json_iter_member(&ib, &key, &eb, &eb_k) == 1)
            nb++;
        return na == nb;
    }
    default: return true; /* true, false, null */
    }
}

/* ---- formats ---- */

static bool digits(const char *s, int n) {
    for (int i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9') return false;
    return true;
}
static int num2(const char *s) { return (s[0] - '0') * 10 + (s[1] - '0'); }

static bool is_date(const char *s, size_t n) {
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (n != 10 || !digits(s, 4) || s[4] != '-' || !digits(s + 5, 2) || s[7] != '-' || !digits(s + 8, 2)) return false;
    int y = atoi(s), m = num2(s + 5), d = num2(s + 8);
    if (m < 1 || m > 12 || d < 1 || d > mdays[m - 1]) return false;
    return !(m == 2 && d == 29 && !(y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)));
}

static bool is_time(const char *s, size_t n) {
    if (n < 9 || !digits(s, 2) || s[2] != ':' || !digits(s + 3, 2) || s[5] != ':' || !digits(s + 6, 2)) return false;
    if (num2(s) > 23 || num2(s + 3) > 59 || num2(s + 6) > 60) return false;
    size_t i = 8;
    if (s[i] == '.') {
        size_t j = ++i;
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == j) return false;
    }
    if (i + 1 == n && (s[i] == 'Z' || s[i] == 'z')) return true;
    return i + 6 == n && (s[i] == '+' || s[i] == '-') && digits(s + i + 1, 2) && s[i + 3] == ':' &&
           digits(s + i + 4, 2) && num2(s + i + 1) <= 23 && num2(s + i + 4) <= 59;
}

static bool is_format(int f, const char *s, size_t n) {
    char tmp[64];
    switch (f) {
    case FMT_DATE: return is_date(s, n);
    case FMT_TIME: return is_time(s, n);
    case FMT_DATE_TIME: return n > 11 && (s[10] == 'T' || s[10] == 't') && is_date(s, 10) && is_time(s + 11, n - 11);
    case FMT_IPV4:
    case FMT_IPV6: {
        unsigned char out[16];
        if (n >= sizeof tmp || memchr(s, 0, n)) return false;
        memcpy(tmp, s, n), tmp[n] = 0;
        return inet_pton(f == FMT_IPV4 ? AF_INET : AF_INET6, tmp, out) == 1;
    }
    case FMT_EMAIL: {
        const char *at = memchr(s, '@', n);
        return at && at > s && at < s + n - 1 && !memchr(at + 1, '@', (size_t)(s + n - at - 1));
    }
    default: return true;
    }
}

static const char *format_name(int f) {
    static const char *const names[] = {"", "date-time", "date", "time", "ipv4", "ipv6", "email"};
    return names[f];
}

/* ---- the walk ---- */

static bool v_node(vctx *x, const node *n, factum_str_t d, int kind);

/* A subschema's verdict alone: no violations of its own reach the report. */
static bool quiet(vctx *x, const node *n, factum_str_t d, int kind) {
    vctx q = {NULL, {0}, x->depth};
    return v_node(&q, n, d, kind);
}

static bool regex_match(const pcre2_code *re, const char *s, size_t n) {
    pcre2_match_data *md = pcre2_match_data_create(1, NULL);
    if (!md) return false;
    int rc = pcre2_match(re, (PCRE2_SPTR)s, n, 0, 0, md, NULL);
    pcre2_match_data_free(md);
    return rc >= 0;
}

static bool v_string(vctx *x, const node *n, factum_str_t d) {
    if (n->min_len < 0 && n->max_len < 0 && !n->pattern && !n->format) return true;
    buf_t s = {0};
    if (json_unescape(d, &s)) return violation(x, "type", "out of memory");
    bool ok = true;
    int64_t chars = 0;
    for (size_t i = 0; i < s.len; i++)
        chars += ((unsigned char)s.ptr[i] & 0xC0) != 0x80;
    if (n->min_len >= 0 && chars < n->min_len)
        ok = violation(x, "minLength", "%lld characters, fewer than %lld", (long long)chars, (long long)n->min_len);
    if ((ok || x->rep) && n->max_len >= 0 && chars > n->max_len)
        ok = violation(x, "maxLength", "%lld characters, more than %lld", (long long)chars, (long long)n->max_len);
    if ((ok || x->rep) && n->pattern && !regex_match(n->pattern, s.ptr ? s.ptr : "", s.len))
        ok = violation(x, "pattern", "does not match the pattern");
    if ((ok || x->rep) && n->format && !is_format(n->format, s.ptr ? s.ptr : "", s.len))
        ok = violation(x, "format", "is not a %s", format_name(n->format));
    buf_free(&s);
    return ok;
}

static bool v_number(vctx *x, const node *n, factum_str_t d) {
    if (!n->has_min && !n->has_max && !n->has_xmin && !n->has_xmax && !n->has_mult) return true;
    double v = schema_number(d);
    bool ok = true;
    if (n->has_min && !(v >= n->min)) ok = violation(x, "minimum", "%g is less than %g", v, n->min);
    if ((ok || x->rep) && n->has_max && !(v <= n->max)) ok = violation(x, "maximum", "%g is more than %g", v, n->max);
    if ((ok || x->rep) && n->has_xmin && !(v > n->xmin))
        ok = violation(x, "exclusiveMinimum", "%g is not more than %g", v, n->xmin);
    if ((ok || x->rep) && n->has_xmax && !(v < n->xmax))
        ok = violation(x, "exclusiveMaximum", "%g is not less than %g", v, n->xmax);
    if ((ok || x->rep) && n->has_mult) {
        double q = v / n->mult;
        bool whole = isfinite(q) && fabs(q - nearbyint(q)) <= 1e-9 * fmax(1.0, fabs(q));
        if (!whole) ok = violation(x, "multipleOf", "%g is not a multiple of %g", v, n->mult);
    }
    return ok;
}

static bool v_array(vctx *x, const node *n, factum_str_t d) {
    bool ok = true;
    json_iter_t it;
    factum_str_t e;
    int ek;
    size_t count = 0, matches = 0;
    json_iter_init(&it, d);
    while (json_iter_element(&it, &e, &ek) == 1) {
        const node *sch = n->items_tuple ? (count < n->tuple.n ? n->tuple.v[count] : n->additems) : n->items;
        if (sch) {
            size_t mark = ptr_index(x, count);
            if (!v_node(x, sch, e, ek)) ok = false;
            x->ptr.len = mark;
            if (!ok && !x->rep) return false;
        }
        if (n->contains && quiet(x, n->contains, e, ek)) matches++;
        count++;
    }
    if (n->min_items >= 0 && (int64_t)count < n->min_items)
        ok = violation(x, "minItems", "%zu items, fewer than %lld", count, (long long)n->min_items);
    if ((ok || x->rep) && n->max_items >= 0 && (int64_t)count > n->max_items)
        ok = violation(x, "maxItems", "%zu items, more than %lld", count, (long long)n->max_items);
    if ((ok || x->rep) && n->contains && !matches) ok = violation(x, "contains", "no item matches \"contains\"");
    if ((ok || x->rep) && n->unique) {
        json_iter_t a, b;
        factum_str_t ea, eb;
        int ka, kb;
        json_iter_init(&a, d);
        for (size_t i = 0; ok && json_iter_element(&a, &ea, &ka) == 1; i++) {
            json_iter_init(&b, d);
            for (size_t j = 0; json_iter_element(&b, &eb, &kb) == 1 && j < i; j++)
                if (schema_json_equal(ea, ka, eb, kb)) {
                    ok = violation(x, "uniqueItems", "items %zu and %zu are equal", j, i);
                    break;
                }
        }
    }
    return ok;
}

static bool has_member(factum_str_t d, const char *name) {
    factum_str_t v;
    int k;
    return json_member(d, name, &v, &k);
}

static bool v_object(vctx *x, const node *n, factum_str_t d) {
    bool ok = true;
    json_iter_t it;
    factum_str_t k, v;
    int vk;
    size_t count = 0;
    buf_t key = {0};
    json_iter_init(&it, d);
    while ((ok || x->rep) && json_iter_member(&it, &k, &v, &vk) == 1) {
        count++;
        if (!n->nprops && !n->npatprops && !n->addprops && !n->propnames) continue;
        key.len = 0;
        json_unescape(k, &key);
        size_t mark = ptr_push(x, key.ptr, key.len);
        bool matched = false;
        for (size_t i = 0; i < n->nprops; i++)
            if (n->props[i].len == key.len && !memcmp(n->props[i].name, key.ptr, key.len)) {
                matched = true;
                if (!v_node(x, n->props[i].n, v, vk)) ok = false;
            }
        for (size_t i = 0; i < n->npatprops && (ok || x->rep); i++)
            if (regex_match(n->patprops[i].re, key.ptr ? key.ptr : "", key.len)) {
                matched = true;
                if (!v_node(x, n->patprops[i].n, v, vk)) ok = false;
            }
        if (!matched && n->addprops) {
            if (n->addprops->boolean == 0)
                ok = violation(x, "additionalProperties", "is not allowed");
            else if (!v_node(x, n->addprops, v, vk))
                ok = false;
        }
        if (n->propnames && !quiet(x, n->propnames, k, JSON_STRING))
            ok = violation(x, "propertyNames", "the name does not match \"propertyNames\"");
        x->ptr.len = mark;
    }
    buf_free(&key);
    if (n->min_props >= 0 && (int64_t)count < n->min_props)
        ok = violation(x, "minProperties", "%zu members, fewer than %lld", count, (long long)n->min_props);
    if (n->max_props >= 0 && (int64_t)count > n->max_props)
        ok = violation(x, "maxProperties", "%zu members, more than %lld", count, (long long)n->max_props);
    for (size_t i = 0; i < n->nrequired && (ok || x->rep); i++)
        if (!has_member(d, n->required[i])) ok = violation(x, "required", "\"%.100s\" is missing", n->required[i]);
    for (size_t i = 0; i < n->ndeps && (ok || x->rep); i++) {
        const named *dep = &n->deps[i];
        if (!has_member(d, dep->name)) continue;
        for (size_t j = 0; j < dep->nnames; j++)
            if (!has_member(d, dep->names[j]))
                ok = violation(x, "dependencies", "\"%.60s\" needs \"%.60s\"", dep->name, dep->names[j]);
        if (dep->n && !v_node(x, dep->n, d, JSON_OBJECT)) ok = false;
    }
    return ok;
}

static unsigned kind_bits(factum_str_t d, int kind) {
    switch (kind) {
    case JSON_NULL: return T_NULL;
    case JSON_TRUE:
    case JSON_FALSE: return T_BOOLEAN;
    case JSON_OBJECT: return T_OBJECT;
    case JSON_ARRAY: return T_ARRAY;
    case JSON_STRING: return T_STRING;
    default: {
        double v = schema_number(d);
        return T_NUMBER | (isfinite(v) && v == floor(v) ? T_INTEGER : 0);
    }
    }
}

static bool v_node(vctx *x, const node *n, factum_str_t d, int kind) {
    if (n->boolean >= 0) return n->boolean ? true : violation(x, "false", "no value is allowed here");
    if (++x->depth > MAX_DEPTH) {
        x->depth--;
        return violation(x, "$ref", "the schema recurses deeper than %d", MAX_DEPTH);
    }
    bool ok = true;
    if (n->ref) {
        ok = v_node(x, n->ref, d, kind);
        x->depth--;
        return ok;
    }
#define GO (ok || x->rep)
    unsigned bits = kind_bits(d, kind);
    if (n->types && !(n->types & bits)) ok = violation(x, "type", "has the wrong type");
    if (GO && n->enum_v.len) {
        json_iter_t it;
        factum_str_t e;
        int ek;
        bool found = false;
        json_iter_init(&it, n->enum_v);
        while (!found && json_iter_element(&it, &e, &ek) == 1)
            found = schema_json_equal(d, kind, e, ek);
        if (!found) ok = violation(x, "enum", "is not one of the values of \"enum\"");
    }
    if (GO && n->has_const && !schema_json_equal(d, kind, n->const_v, n->const_kind))
        ok = violation(x, "const", "is not the value of \"const\"");
    if (GO && kind == JSON_STRING && !v_string(x, n, d)) ok = false;
    if (GO && kind == JSON_NUMBER && !v_number(x, n, d)) ok = false;
    if (GO && kind == JSON_ARRAY && !v_array(x, n, d)) ok = false;
    if (GO && kind == JSON_OBJECT && !v_object(x, n, d)) ok = false;
    for (size_t i = 0; GO && i < n->all.n; i++)
        if (!v_node(x, n->all.v[i], d, kind)) ok = false;
    if (GO && n->any.n) {
        bool any = false;
        for (size_t i = 0; !any && i < n->any.n; i++)
            any = quiet(x, n->any.v[i], d, kind);
        if (!any) ok = violation(x, "anyOf", "matches none of \"anyOf\"");
    }
    if (GO && n->one.n) {
        size_t matched = 0;
        for (size_t i = 0; matched < 2 && i < n->one.n; i++)
            matched += quiet(x, n->one.v[i], d, kind);
        if (matched != 1)
            ok = violation(x, "oneOf", matched ? "matches more than one of \"oneOf\"" : "matches none of \"oneOf\"");
    }
    if (GO && n->not_ && quiet(x, n->not_, d, kind)) ok = violation(x, "not", "matches the schema of \"not\"");
    if (GO && n->if_) {
        const node *branch = quiet(x, n->if_, d, kind) ? n->then_ : n->else_;
        if (branch && !v_node(x, branch, d, kind)) ok = false;
    }
#undef GO
    x->depth--;
    return ok;
}

bool schema_node_accepts(const node *n, factum_str_t value, int kind) {
    vctx x = {NULL, {0}, 0};
    return v_node(&x, n, value, kind);
}

bool schema_validate(const schema_t *s, factum_str_t data, schema_report *rep) {
    json_cur_t c = json_cur(data.ptr, data.len);
    factum_str_t span;
    int kind;
    if (json_value(&c, &span, &kind)) {
        vctx x = {rep, {0}, 0};
        return violation(&x, "type", "is not JSON");
    }
    vctx x = {rep, {0}, 0};
    bool ok = v_node(&x, s->root, span, kind);
    buf_free(&x.ptr);
    return ok;
}
