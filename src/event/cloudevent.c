/*
 * cloudevent.c — CloudEvents 1.0 JSON (structured mode) in and out: factum_events_parse turns
 * text into factum_event_t (borrowing the text; decoded strings go to one arena that never
 * moves), factum_event_json writes one event as one line. `data` is kept as the exact bytes
 * of its JSON value; `data_base64` is decoded to binary and written back as base64. A client's
 * `time` is not stored (the store records commit time), nor are `stream`, `revision` and
 * `position`, which the store sets. docs/events.md describes the mapping.
 */
#include "../base/json.h"
#include "event.h"

#include <stdio.h>
#include <stdlib.h>

struct factum_events {
    factum_event_t *ev;
    size_t n;
    char *arena;
    size_t used, cap;
    char *text; /* the parsed text, when the set owns it (events_own_text) */
};

void events_own_text(factum_events_t *set, char *text) { set->text = text; }

size_t factum_events_count(const factum_events_t *set) { return set ? set->n : 0; }
factum_event_t *factum_events_get(factum_events_t *set, size_t i) { return set && i < set->n ? &set->ev[i] : NULL; }
void factum_events_free(factum_events_t *set) {
    if (!set) return;
    free(set->ev);
    free(set->arena);
    free(set->text);
    free(set);
}

static int b64val(int c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

/* Decodes standard base64 (padding required, RFC 4648) into out. -1 if malformed. */
static long b64_decode(const char *s, size_t n, char *out) {
    if (n % 4) return -1;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 4) {
        int v[4];
        for (int k = 0; k < 4; k++)
            v[k] = s[i + k] == '=' ? -2 : b64val((unsigned char)s[i + k]);
        bool last = i + 4 == n;
        if (v[0] < 0 || v[1] < 0 || (v[2] == -2 && v[3] != -2) || v[2] == -1 || v[3] == -1) return -1;
        if ((v[2] == -2 || v[3] == -2) && !last) return -1;
        out[o++] = (char)(v[0] << 2 | v[1] >> 4);
        if (v[2] >= 0) out[o++] = (char)((v[1] & 15) << 4 | v[2] >> 2);
        if (v[3] >= 0) out[o++] = (char)((v[2] & 3) << 6 | v[3]);
    }
    return (long)o;
}

static char *arena_take(factum_events_t *set, size_t n) {
    ENSURE(set->used + n <= set->cap); /* sized up front: decoded text is never longer than raw */
    char *p = set->arena + set->used;
    set->used += n;
    return p;
}

/* A string attribute: borrowed when it has no escapes, decoded into the arena otherwise. */
static int take_string(factum_events_t *set, factum_str_t raw, factum_str_t *out) {
    if (!memchr(raw.ptr, '\\', raw.len)) {
        *out = (factum_str_t){raw.ptr + 1, raw.len - 2};
        return 0;
    }
    char *dst = set->arena + set->used;
    buf_t b = {dst, 0, set->cap - set->used};
    if (json_unescape(raw, &b) || b.ptr != dst) return FACTUM_ENOMEM;
    arena_take(set, b.len + 1);
    *out = (factum_str_t){dst, b.len};
    return 0;
}

enum {
    A_SPEC,
    A_ID,
    A_TYPE,
    A_SOURCE,
    A_SUBJECT,
    A_TIME,
    A_CTYPE,
    A_CORR,
    A_CAUSE,
    A_DATA,
    A_DATA64,
    A_STREAM,
    A_REVISION,
    A_POSITION,
    A_COUNT
};
static const char *const attr_names[A_COUNT] = {
    "specversion",   "id",          "type", "source",      "subject", "time",     "datacontenttype",
    "correlationid", "causationid", "data", "data_base64", "stream",  "revision", "position"};

/* Tags given as an array (Factum's form) become the CloudEvents form the store keeps, one string
   of tags separated by spaces: "tags":"a b". Written to the arena after the extensions so far
   (ext_len bytes); never longer than the array's text. The store checks the tags themselves. */
static int tags_from_array(factum_events_t *set, factum_str_t arr, size_t idx, size_t ext_len, size_t *out_len,
                           factum_error_t *err) {
    json_iter_t it;
    factum_str_t el;
    int kind, r;
    size_t n = 0;
    json_iter_init(&it, arr);
    while ((r = json_iter_element(&it, &el, &kind)) == 1) {
        if (kind != JSON_STRING || memchr(el.ptr + 1, '\\', el.len - 2) || memchr(el.ptr + 1, ' ', el.len - 2) ||
            el.len == 2)
            return err_set(err, FACTUM_EBADEVENT,
                           "event %zu: each tag must be a non-empty string without spaces, '\"' or '\\'", idx);
        n++;
    }
    if (r < 0 || n == 0) return r < 0 ? err_set(err, FACTUM_EBADEVENT, "event %zu: malformed tags", idx) : 0;
    char *dst = arena_take(set, (ext_len ? 1 : 0) + 8);
    memcpy(dst, ext_len ? ",\"tags\":\"" : "\"tags\":\"", ext_len ? 9 : 8);
    size_t len = (ext_len ? 1 : 0) + 8;
    json_iter_init(&it, arr);
    for (size_t k = 0; json_iter_element(&it, &el, &kind) == 1; k++) {
        char *d = arena_take(set, el.len - 2 + (k ? 1 : 0));
        if (k) *d++ = ' ';
        memcpy(d, el.ptr + 1, el.len - 2);
        len += el.len - 2 + (k ? 1 : 0);
    }
    *arena_take(set, 1) = '"';
    *out_len = ext_len + len + 1;
    return 0;
}

static int parse_event(factum_events_t *set, factum_str_t obj, size_t idx, factum_event_t *e, factum_error_t *err) {
    memset(e, 0, sizeof *e);
    json_iter_t it;
    factum_str_t key, val;
    int kind, r;
    unsigned seen = 0;
    bool has_ext = false;
    json_iter_init(&it, obj);
    while ((r = json_iter_member(&it, &key, &val, &kind)) == 1) {
        int a = -1;
        for (int k = 0; k < A_COUNT; k++)
            if (json_key_is(key, attr_names[k])) a = k;
        if (a < 0) {
            has_ext = true; /* copied below, once the other attributes are taken */
            continue;
        }
        if (seen & (1u << a))
            return err_set(err, FACTUM_EBADEVENT, "event %zu: attribute '%s' appears twice", idx, attr_names[a]);
        seen |= 1u << a;
        if (a == A_DATA) {
            e->data = val;
            e->data_format = FACTUM_DATA_JSON;
            continue;
        }
        if (a == A_REVISION || a == A_POSITION) {
            /* Set by the store: kept for readers of the server's output, ignored by appends. */
            uint64_t v = 0;
            bool ok = kind == JSON_NUMBER && val.len <= 19;
            for (size_t k = 0; ok && k < val.len; k++) {
                ok = val.ptr[k] >= '0' && val.ptr[k] <= '9';
                v = v * 10 + (uint64_t)(val.ptr[k] - '0');
            }
            if (!ok)
                return err_set(err, FACTUM_EBADEVENT, "event %zu: '%s' must be a whole number", idx, attr_names[a]);
            if (a == A_REVISION)
                e->revision = v;
            else
                e->position = v;
            continue;
        }
        if (kind != JSON_STRING)
            return err_set(err, FACTUM_EBADEVENT, "event %zu: attribute '%s' must be a string", idx, attr_names[a]);
        factum_str_t s;
        if (take_string(set, val, &s)) return err_set(err, FACTUM_ENOMEM, "out of memory");
        switch (a) {
        case A_SPEC:
            if (!str_eq(s, str_c("1.0")))
                return err_set(err, FACTUM_EBADEVENT, "event %zu: specversion must be \"1.0\"", idx);
            break;
        case A_ID: e->id = s; break;
        case A_TYPE: e->type = s; break;
        case A_SOURCE: e->source = s; break;
        case A_SUBJECT: e->subject = s; break;
        case A_CTYPE: e->datacontenttype = s; break;
        case A_CORR: e->correlationid = s; break;
        case A_CAUSE: e->causationid = s; break;
        case A_DATA64: {
            /* Decoded bytes are fewer than the text: decode in place when the text is already
               an unescaped copy in the arena (it must not take arena space twice). */
            bool in_arena = s.ptr >= set->arena && s.ptr < set->arena + set->cap;
            char *dst = in_arena ? (char *)s.ptr : set->arena + set->used;
            long n = b64_decode(s.ptr, s.len, dst);
            if (n < 0) return err_set(err, FACTUM_EBADEVENT, "event %zu: data_base64 is not valid base64", idx);
            if (!in_arena) arena_take(set, (size_t)n);
            e->data = (factum_str_t){dst, (size_t)n};
            e->data_format = FACTUM_DATA_BINARY;
            break;
        }
        case A_STREAM: e->stream = s; break; /* ignored by appends */
        case A_TIME: e->time_us = time_parse_rfc3339(s); break;
        default: break;
        }
    }
    if (r < 0) return err_set(err, FACTUM_EBADEVENT, "event %zu: malformed object", idx);
    if ((seen & (1u << A_DATA)) && (seen & (1u << A_DATA64)))
        return err_set(err, FACTUM_EBADEVENT, "event %zu: 'data' and 'data_base64' cannot both be given", idx);
    if (!e->type.len) return err_set(err, FACTUM_EBADEVENT, "event %zu: 'type' is required", idx);
    if (has_ext) {
        /* Extension attributes, kept as their raw member text joined by commas; the store checks
           their names. Each member plus its separator is no longer than in the input. */
        char *ext = set->arena + set->used;
        size_t ext_len = 0;
        json_iter_init(&it, obj);
        while (json_iter_member(&it, &key, &val, &kind) == 1) {
            bool known = false;
            for (int k = 0; k < A_COUNT && !known; k++)
                known = json_key_is(key, attr_names[k]);
            if (known) continue;
            if (kind == JSON_ARRAY && json_key_is(key, "tags")) {
                int rc = tags_from_array(set, val, idx, ext_len, &ext_len, err);
                if (rc) return rc;
                continue;
            }
            size_t len = (size_t)(val.ptr + val.len - key.ptr);
            char *dst = arena_take(set, len + (ext_len ? 1 : 0));
            if (ext_len) *dst++ = ',';
            memcpy(dst, key.ptr, len);
            ext_len += (ext_len ? 1 : 0) + len;
        }
        e->extensions = (factum_str_t){ext, ext_len};
    }
    return 0;
}

int factum_events_parse(const char *json, size_t len, int batch, factum_events_t **out, factum_error_t *err) {
    json_cur_t c = json_cur(json, len);
    factum_str_t top;
    int kind;
    if (json_value(&c, &top, &kind))
        return err_set(err, FACTUM_EBADEVENT, "malformed JSON at byte %zu: %s", c.error_at, c.error);
    while (c.i < len && (json[c.i] == ' ' || json[c.i] == '\n' || json[c.i] == '\r' || json[c.i] == '\t'))
        c.i++;
    if (c.i != len) return err_set(err, FACTUM_EBADEVENT, "malformed JSON at byte %zu: text after the value", c.i);
    if (batch ? kind != JSON_ARRAY : kind != JSON_OBJECT)
        return err_set(err, FACTUM_EBADEVENT,
                       batch ? "a batch must be a JSON array of events" : "an event must be a JSON object");
    factum_events_t *set = calloc(1, sizeof *set);
    if (!set) return err_set(err, FACTUM_ENOMEM, "out of memory");
    set->cap = len + 16;
    set->arena = malloc(set->cap);
    size_t cap = 8;
    set->ev = malloc(cap * sizeof *set->ev);
    int rc = 0;
    if (!set->arena || !set->ev) {
        rc = err_set(err, FACTUM_ENOMEM, "out of memory");
        goto fail;
    }
    json_iter_t it;
    factum_str_t el;
    int r = 1;
    if (batch) json_iter_init(&it, top);
    for (size_t i = 0;; i++) {
        if (batch) {
            if ((r = json_iter_element(&it, &el, &kind)) != 1) break;
            if (kind != JSON_OBJECT) {
                rc = err_set(err, FACTUM_EBADEVENT, "event %zu: must be a JSON object", i);
                goto fail;
            }
            if (i >= FACTUM_MAX_BATCH_EVENTS) {
                rc = err_set(err, FACTUM_ETOOBIG, "a batch holds at most %d events", FACTUM_MAX_BATCH_EVENTS);
                goto fail;
            }
        } else if (i == 1) {
            break;
        } else {
            el = top;
        }
        if (set->n == cap) {
            factum_event_t *v = realloc(set->ev, (cap *= 2) * sizeof *v);
            if (!v) {
                rc = err_set(err, FACTUM_ENOMEM, "out of memory");
                goto fail;
            }
            set->ev = v;
        }
        if ((rc = parse_event(set, el, i, &set->ev[set->n], err))) goto fail;
        set->n++;
    }
    if (batch && set->n == 0) {
        rc = err_set(err, FACTUM_EBADEVENT, "a batch needs at least one event");
        goto fail;
    }
    *out = set;
    return 0;
fail:
    factum_events_free(set);
    return rc;
}

/* ---- output ---- */

typedef struct out {
    char *p;
    size_t cap, len;
} out_t;

static void put(out_t *o, const char *s, size_t n) {
    if (n && o->len < o->cap) memcpy(o->p + o->len, s, MIN(n, o->cap - o->len));
    o->len += n;
}
static void puts_(out_t *o, const char *s) { put(o, s, strlen(s)); }

static void put_string(out_t *o, factum_str_t s) {
    static const char hex[] = "0123456789abcdef";
    put(o, "\"", 1);
    if (!s.len) s.ptr = ""; /* an absent attribute is {NULL, 0} */
    size_t run = 0;
    for (size_t i = 0; i < s.len; i++) {
        unsigned char ch = (unsigned char)s.ptr[i];
        if (ch >= 0x20 && ch != '"' && ch != '\\') continue;
        put(o, s.ptr + run, i - run);
        run = i + 1;
        char esc[6] = {'\\', (char)ch};
        if (ch == '"' || ch == '\\')
            put(o, esc, 2);
        else if (ch == '\n')
            put(o, "\\n", 2);
        else if (ch == '\t')
            put(o, "\\t", 2);
        else if (ch == '\r')
            put(o, "\\r", 2);
        else {
            char u[6] = {'\\', 'u', '0', '0', hex[ch >> 4], hex[ch & 15]};
            put(o, u, 6);
        }
    }
    put(o, s.ptr + run, s.len - run);
    put(o, "\"", 1);
}

static void put_attr(out_t *o, const char *name, factum_str_t v, bool always) {
    if (!v.len && !always) return;
    put(o, ",\"", 2);
    puts_(o, name);
    put(o, "\":", 2);
    put_string(o, v);
}

static void put_base64(out_t *o, factum_str_t d) {
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const unsigned char *s = (const unsigned char *)d.ptr;
    put(o, "\"", 1);
    for (size_t i = 0; i < d.len; i += 3) {
        unsigned v =
            (unsigned)s[i] << 16 | (i + 1 < d.len ? (unsigned)s[i + 1] << 8 : 0) | (i + 2 < d.len ? s[i + 2] : 0);
        char q[4] = {tbl[v >> 18], tbl[(v >> 12) & 63], i + 1 < d.len ? tbl[(v >> 6) & 63] : '=',
                     i + 2 < d.len ? tbl[v & 63] : '='};
        put(o, q, 4);
    }
    put(o, "\"", 1);
}

/* Output form (input = false): every attribute the store knows. Input form: only what an
   append takes, without empty id and source (the store fills those in). */
static size_t render(const factum_event_t *e, char *buf, size_t cap, bool input) {
    out_t o = {buf, cap ? cap - 1 : 0, 0};
    char tmp[48];
    puts_(&o, "{\"specversion\":\"1.0\"");
    put_attr(&o, "id", e->id, !input);
    put_attr(&o, "source", e->source, !input);
    put_attr(&o, "type", e->type, true);
    put_attr(&o, "subject", e->subject, false);
    if (!input) {
        time_format_rfc3339(e->time_us, tmp);
        put_attr(&o, "time", str_c(tmp), true);
    }
    put_attr(&o, "datacontenttype", e->datacontenttype, false);
    put_attr(&o, "correlationid", e->correlationid, false);
    put_attr(&o, "causationid", e->causationid, false);
    if (e->extensions.len) {
        put(&o, ",", 1);
        put(&o, e->extensions.ptr, e->extensions.len);
    }
    if (!input) {
        put_attr(&o, "stream", e->stream, true);
        put(&o, ",\"revision\":", 12);
        put(&o, tmp, u64_format(e->revision, tmp));
        put(&o, ",\"position\":", 12);
        put(&o, tmp, u64_format(e->position, tmp));
    }
    if (e->data_format == FACTUM_DATA_JSON) {
        put(&o, ",\"data\":", 8);
        put(&o, e->data.ptr, e->data.len);
    } else if (e->data_format == FACTUM_DATA_BINARY) {
        put(&o, ",\"data_base64\":", 15);
        put_base64(&o, e->data);
    }
    put(&o, "}", 1);
    if (cap) buf[MIN(o.len, cap - 1)] = 0;
    return o.len;
}

size_t factum_event_json(const factum_event_t *e, char *buf, size_t cap) { return render(e, buf, cap, false); }
size_t factum_event_json_input(const factum_event_t *e, char *buf, size_t cap) { return render(e, buf, cap, true); }
