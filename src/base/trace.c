/*
 * trace.c — W3C Trace Context checks and propagation (see trace.h). A traceparent is accepted in
 * version 00 only, lowercase, with neither id all zeros; a tracestate must follow the list grammar
 * of the recommendation. Values come as the raw JSON of an extension member, so they are decoded
 * first (a client may escape any character).
 */
#include "trace.h"

#include "json.h"

#include <stdio.h>

static bool lchex(char ch) { return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f'); }

/* Whether v[at, at + n) is lowercase hex, and whether it is all zeros. */
static bool hex_run(factum_str_t v, size_t at, size_t n, bool *zero) {
    *zero = true;
    for (size_t i = at; i < at + n; i++) {
        if (!lchex(v.ptr[i])) return false;
        if (v.ptr[i] != '0') *zero = false;
    }
    return true;
}

const char *trace_parent_check(factum_str_t v) {
    bool zero;
    if (v.len != TRACE_PARENT_LEN || v.ptr[2] != '-' || v.ptr[35] != '-' || v.ptr[52] != '-')
        return "traceparent must be 00-TRACEID-PARENTID-FLAGS: 55 characters (W3C Trace Context, version 00)";
    if (v.ptr[0] != '0' || v.ptr[1] != '0') return "traceparent: only version 00 is accepted";
    if (!hex_run(v, 3, 32, &zero) || zero)
        return "traceparent: the trace id must be 32 lowercase hex digits, not all zero";
    if (!hex_run(v, 36, 16, &zero) || zero)
        return "traceparent: the parent id must be 16 lowercase hex digits, not all zero";
    if (!hex_run(v, 53, 2, &zero)) return "traceparent: the flags must be 2 lowercase hex digits";
    return NULL;
}

static bool key_char(char ch) {
    return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_' || ch == '-' || ch == '*' || ch == '/';
}

/* key = lcalpha 0*255(keychar) / (lcalpha|DIGIT) 0*240(keychar) "@" lcalpha 0*13(keychar) */
static bool state_key(const char *k, size_t n) {
    const char *at = memchr(k, '@', n);
    size_t tn = at ? (size_t)(at - k) : n, sn = at ? n - tn - 1 : 0;
    if (tn == 0 || tn > (at ? 241u : 256u)) return false;
    if (!(k[0] >= 'a' && k[0] <= 'z') && !(at && k[0] >= '0' && k[0] <= '9')) return false;
    for (size_t i = 1; i < tn; i++)
        if (!key_char(k[i])) return false;
    if (!at) return true;
    if (sn == 0 || sn > 14 || !(at[1] >= 'a' && at[1] <= 'z')) return false;
    for (size_t i = 2; i <= sn; i++)
        if (!key_char(at[i])) return false;
    return true;
}

/* value = 0*255(chr) nblk-chr; chr = %x20 / nblk-chr; nblk-chr = %x21-7E but "," and "=" */
static bool state_value(const char *v, size_t n) {
    if (n == 0 || n > 256 || v[n - 1] == ' ') return false;
    for (size_t i = 0; i < n; i++)
        if (v[i] < 0x20 || v[i] > 0x7e || v[i] == ',' || v[i] == '=') return false;
    return true;
}

const char *trace_state_check(factum_str_t v) {
    if (v.len > TRACE_STATE_MAX) return "tracestate is longer than 512 bytes";
    if (!v.len) return NULL; /* an empty list */
    const char *keys[TRACE_STATE_MEMBERS];
    size_t klen[TRACE_STATE_MEMBERS], n = 0;
    for (size_t i = 0; i <= v.len;) {
        const char *comma = memchr(v.ptr + i, ',', v.len - i);
        size_t end = comma ? (size_t)(comma - v.ptr) : v.len, a = i, b = end;
        i = end + 1;
        while (a < b && (v.ptr[a] == ' ' || v.ptr[a] == '\t'))
            a++;
        while (b > a && (v.ptr[b - 1] == ' ' || v.ptr[b - 1] == '\t'))
            b--;
        if (a == b) continue; /* empty list-members are allowed */
        const char *eq = memchr(v.ptr + a, '=', b - a);
        if (!eq) return "tracestate: each list member must be key=value";
        size_t kn = (size_t)(eq - v.ptr) - a;
        if (!state_key(v.ptr + a, kn))
            return "tracestate: a key must be lowercase letters, digits, _ - * / (tenant@system), starting with a "
                   "letter";
        if (!state_value(eq + 1, b - a - kn - 1))
            return "tracestate: a value must be 1-256 printable ASCII characters without ',' or '=', not ending in a "
                   "space";
        if (n == TRACE_STATE_MEMBERS) return "tracestate has more than 32 list members";
        for (size_t k = 0; k < n; k++)
            if (klen[k] == kn && !memcmp(keys[k], v.ptr + a, kn)) return "tracestate: a key appears twice";
        keys[n] = v.ptr + a, klen[n++] = kn;
    }
    return NULL;
}

/* The raw values of the two members among ext ({NULL, 0}: absent). */
static void find(factum_str_t ext, factum_str_t *parent, int *pk, factum_str_t *state, int *sk) {
    *parent = *state = (factum_str_t){0};
    if (ext.len < 6 || !memmem(ext.ptr, ext.len, "\"trace", 6)) return; /* the common case: no trace context */
    json_iter_t it;
    factum_str_t key, val;
    int kind;
    json_iter_init_members(&it, ext);
    while (json_iter_member(&it, &key, &val, &kind) == 1)
        if (json_key_is(key, "traceparent"))
            *parent = val, *pk = kind;
        else if (json_key_is(key, "tracestate"))
            *state = val, *sk = kind;
}

bool trace_named(factum_str_t ext) {
    factum_str_t p, s;
    int pk, sk;
    find(ext, &p, &pk, &s, &sk);
    return p.ptr || s.ptr;
}

/* A member's string, decoded into out (at most max bytes); NULL or why not. */
static const char *member_text(factum_str_t raw, int kind, size_t max, buf_t *out) {
    if (kind != JSON_STRING) return "must be a string";
    out->len = 0;
    if (raw.len > 6 * max + 2 || json_unescape(raw, out)) return "is too long";
    return NULL;
}

int trace_check_members(factum_str_t ext, size_t i, factum_error_t *err) {
    factum_str_t p, s;
    int pk, sk, rc = 0;
    find(ext, &p, &pk, &s, &sk);
    if (!p.ptr && !s.ptr) return 0;
    buf_t b = {0};
    const char *why;
    if (!p.ptr)
        rc = err_set(err, FACTUM_EBADEVENT, "event %zu: a tracestate needs a traceparent", i);
    else if ((why = member_text(p, pk, TRACE_PARENT_LEN, &b)))
        rc = err_set(err, FACTUM_EBADEVENT, "event %zu: traceparent %s", i, why);
    else if ((why = trace_parent_check((factum_str_t){b.ptr, b.len})))
        rc = err_set(err, FACTUM_EBADEVENT, "event %zu: %s", i, why);
    else if (s.ptr && (why = member_text(s, sk, TRACE_STATE_MAX, &b)))
        rc = err_set(err, FACTUM_EBADEVENT, "event %zu: tracestate %s", i, why);
    else if (s.ptr && (why = trace_state_check((factum_str_t){b.ptr, b.len})))
        rc = err_set(err, FACTUM_EBADEVENT, "event %zu: %s", i, why);
    buf_free(&b);
    return rc;
}

bool trace_get(factum_str_t ext, trace_ctx *t) {
    factum_str_t p, s;
    int pk, sk;
    t->parent[0] = t->state[0] = 0;
    find(ext, &p, &pk, &s, &sk);
    if (!p.ptr) return false;
    buf_t b = {0};
    if (!member_text(p, pk, TRACE_PARENT_LEN, &b) && !trace_parent_check((factum_str_t){b.ptr, b.len}))
        snprintf(t->parent, sizeof t->parent, "%.*s", (int)b.len, b.ptr);
    if (t->parent[0] && s.ptr && !member_text(s, sk, TRACE_STATE_MAX, &b) &&
        !trace_state_check((factum_str_t){b.ptr, b.len}))
        snprintf(t->state, sizeof t->state, "%.*s", (int)b.len, b.ptr);
    buf_free(&b);
    return t->parent[0] != 0;
}

void trace_child(const trace_ctx *in, factum_str_t seed, trace_ctx *out) {
    out->parent[0] = out->state[0] = 0;
    if (!in->parent[0]) return;
    uint64_t span = hash64(seed.ptr, seed.len, 0);
    snprintf(out->parent, sizeof out->parent, "00-%.32s-%016llx-%.2s", in->parent + 3,
             (unsigned long long)(span ? span : 1), in->parent + 53);
    snprintf(out->state, sizeof out->state, "%s", in->state);
}

void trace_members(const trace_ctx *t, buf_t *out) {
    if (!t->parent[0]) return;
    buf_printf(out, "\"traceparent\":\"%s\"", t->parent);
    if (t->state[0]) buf_append(out, ",\"tracestate\":", 14), json_escape(out, t->state, strlen(t->state));
}
