/*
 * compile.c — schema_compile: a JSON Schema document into the tree of node.h. It walks the
 * document once, keyword by keyword; a keyword it does not know, a value of the wrong kind,
 * a pattern PCRE2 will not compile, a $ref it cannot resolve inside the document, or a $ref
 * cycle refuses the whole document with a message naming the place (a JSON pointer into the
 * schema). $refs are resolved after the walk: a reference names a place in the document, and
 * the node compiled from that place (or compiled then) is its target.
 */
#include "node.h"

#include "../base/json.h"

#include <stdio.h>
#include <stdlib.h>

typedef struct comp {
    schema_t *s;
    buf_t path; /* JSON pointer into the schema of the node being compiled */
    factum_error_t *err;
    int rc;
    struct pref {
        node *n;
        factum_str_t ref; /* raw string */
        char *at;         /* its path, for messages */
    } * refs;
    size_t nrefs, cap_refs;
} comp;

static node *compile_node(comp *c, factum_str_t span, int kind);

static int fail(comp *c, int code, const char *fmt, const char *a, const char *b) {
    if (c->rc) return c->rc;
    char what[256];
    snprintf(what, sizeof what, fmt, a, b ? b : "");
    c->rc = err_set(c->err, code, "%s%s%s", c->path.len ? c->path.ptr : "", c->path.len ? ": " : "", what);
    return c->rc;
}

static void path_push(comp *c, const char *seg, size_t n, size_t *mark) {
    *mark = c->path.len;
    schema_pointer_push(&c->path, seg, n);
    buf_append(&c->path, "", 1), c->path.len--; /* NUL-terminated */
}
static void path_pop(comp *c, size_t mark) {
    c->path.len = mark;
    if (c->path.ptr) c->path.ptr[mark] = 0;
}

double schema_number(factum_str_t s) {
    char tmp[64], *p = s.len < sizeof tmp ? tmp : malloc(s.len + 1);
    if (!p) return 0;
    memcpy(p, s.ptr, s.len);
    p[s.len] = 0;
    double d = strtod(p, NULL);
    if (p != tmp) free(p);
    return d;
}

static char *decode(comp *c, factum_str_t raw, size_t *len) {
    buf_t b = {0};
    if (json_unescape(raw, &b) || buf_append(&b, "", 1)) {
        buf_free(&b);
        fail(c, FACTUM_ENOMEM, "out of memory", NULL, NULL);
        return NULL;
    }
    if (len) *len = b.len - 1;
    return b.ptr;
}

static bool get_number(comp *c, const char *kw, factum_str_t v, int kind, double *out) {
    if (kind != JSON_NUMBER) return fail(c, FACTUM_EINVAL, "\"%s\" must be a number", kw, NULL), false;
    *out = schema_number(v);
    return true;
}

static bool get_count(comp *c, const char *kw, factum_str_t v, int kind, int64_t *out) {
    double d;
    if (!get_number(c, kw, v, kind, &d)) return false;
    if (d < 0 || d != (double)(int64_t)d || d > 1e15)
        return fail(c, FACTUM_EINVAL, "\"%s\" must be a whole number, 0 or more", kw, NULL), false;
    *out = (int64_t)d;
    return true;
}

static pcre2_code *regex(comp *c, const char *kw, factum_str_t v, int kind) {
    if (kind != JSON_STRING) return fail(c, FACTUM_EINVAL, "\"%s\" must be a string", kw, NULL), NULL;
    size_t len;
    char *src = decode(c, v, &len);
    if (!src) return NULL;
    int code;
    PCRE2_SIZE off;
    /* ECMA-262 as far as PCRE2 goes: \u escapes, $ only at the very end, UTF-8 subjects. */
    pcre2_code *re =
        pcre2_compile((PCRE2_SPTR)src, len, PCRE2_UTF | PCRE2_ALT_BSUX | PCRE2_DOLLAR_ENDONLY, &code, &off, NULL);
    if (!re) {
        char msg[160], where[200];
        pcre2_get_error_message(code, (PCRE2_UCHAR *)msg, sizeof msg);
        snprintf(where, sizeof where, "%s at offset %zu", msg, (size_t)off);
        fail(c, FACTUM_EINVAL, "\"%s\" is not a regular expression PCRE2 accepts: %s", kw, where);
    } else {
        pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* when it cannot, matching interprets */
    }
    free(src);
    return re;
}

/* A subschema under keyword kw (and, for maps and lists, seg). */
static node *sub(comp *c, const char *kw, const char *seg, size_t seglen, factum_str_t v, int kind) {
    size_t m1, m2 = 0;
    path_push(c, kw, strlen(kw), &m1);
    if (seg) path_push(c, seg, seglen, &m2);
    node *n = compile_node(c, v, kind);
    if (seg) path_pop(c, m2);
    path_pop(c, m1);
    return n;
}

static bool list(comp *c, const char *kw, factum_str_t v, int kind, nodes *out, bool nonempty) {
    if (kind != JSON_ARRAY) return fail(c, FACTUM_EINVAL, "\"%s\" must be an array of schemas", kw, NULL), false;
    json_iter_t it;
    factum_str_t e;
    int ek;
    json_iter_init(&it, v);
    while (!c->rc && json_iter_element(&it, &e, &ek) == 1) {
        char seg[24];
        int sl = snprintf(seg, sizeof seg, "%zu", out->n);
        node **g = realloc(out->v, (out->n + 1) * sizeof *g);
        if (!g) return fail(c, FACTUM_ENOMEM, "out of memory", NULL, NULL), false;
        out->v = g;
        if (!(out->v[out->n++] = sub(c, kw, seg, (size_t)sl, e, ek))) return false;
    }
    if (!c->rc && nonempty && !out->n) fail(c, FACTUM_EINVAL, "\"%s\" must not be empty", kw, NULL);
    return !c->rc;
}

/* An array of strings (required, a dependency's names), decoded, appended to *out. */
static bool strings(comp *c, factum_str_t v, const char *rule, char ***out, size_t *n) {
    json_iter_t it;
    factum_str_t e;
    int ek;
    json_iter_init(&it, v);
    while (json_iter_element(&it, &e, &ek) == 1) {
        if (ek != JSON_STRING) return fail(c, FACTUM_EINVAL, "%s", rule, NULL), false;
        char **g = realloc(*out, (*n + 1) * sizeof *g);
        if (!g) return fail(c, FACTUM_ENOMEM, "out of memory", NULL, NULL), false;
        *out = g;
        if (!((*out)[(*n)++] = decode(c, e, NULL))) return false;
    }
    return true;
}

/* properties, patternProperties and dependencies: an object of subschemas (or name lists). */
static bool map(comp *c, const char *kw, factum_str_t v, int kind, named **out, size_t *nout) {
    if (kind != JSON_OBJECT) return fail(c, FACTUM_EINVAL, "\"%s\" must be an object", kw, NULL), false;
    json_iter_t it;
    factum_str_t k, e;
    int ek;
    size_t n = 0;
    json_iter_init(&it, v);
    while (json_iter_member(&it, &k, &e, &ek) == 1)
        n++;
    if (!(*out = calloc(n ? n : 1, sizeof **out))) return fail(c, FACTUM_ENOMEM, "out of memory", NULL, NULL), false;
    json_iter_init(&it, v);
    while (!c->rc && json_iter_member(&it, &k, &e, &ek) == 1) {
        named *m = &(*out)[(*nout)++];
        if (!(m->name = decode(c, k, &m->len))) return false;
        if (!strcmp(kw, "patternProperties")) {
            size_t mark;
            path_push(c, kw, strlen(kw), &mark);
            m->re = regex(c, "patternProperties", k, JSON_STRING);
            path_pop(c, mark);
            if (!m->re) return false;
        }
        if (!strcmp(kw, "dependencies") && ek == JSON_ARRAY) {
            if (!strings(c, e, "\"dependencies\" must list property names", &m->names, &m->nnames)) return false;
            continue;
        }
        if (!(m->n = sub(c, kw, m->name, m->len, e, ek))) return false;
    }
    return !c->rc;
}

static unsigned type_bit(factum_str_t raw) {
    static const struct {
        const char *name;
        unsigned bit;
    } t[] = {{"null", T_NULL},     {"boolean", T_BOOLEAN}, {"object", T_OBJECT},  {"array", T_ARRAY},
             {"number", T_NUMBER}, {"string", T_STRING},   {"integer", T_INTEGER}};
    for (size_t i = 0; i < ARRAY_LEN(t); i++)
        if (json_key_is(raw, t[i].name)) return t[i].bit;
    return 0;
}

static bool types(comp *c, node *n, factum_str_t v, int kind) {
    unsigned bit;
    if (kind == JSON_STRING) {
        if (!(bit = type_bit(v)))
            return fail(c, FACTUM_EINVAL, "\"type\" must name a JSON Schema type", NULL, NULL), false;
        n->types = bit;
        return true;
    }
    if (kind != JSON_ARRAY) return fail(c, FACTUM_EINVAL, "\"type\" must be a string or an array", NULL, NULL), false;
    json_iter_t it;
    factum_str_t e;
    int ek;
    json_iter_init(&it, v);
    while (json_iter_element(&it, &e, &ek) == 1) {
        if (ek != JSON_STRING || !(bit = type_bit(e)))
            return fail(c, FACTUM_EINVAL, "\"type\" lists something that is not a JSON Schema type", NULL, NULL), false;
        n->types |= bit;
    }
    return true;
}

static bool format(comp *c, node *n, factum_str_t v, int kind) {
    static const struct {
        const char *name;
        int f;
    } f[] = {{"date-time", FMT_DATE_TIME}, {"date", FMT_DATE}, {"time", FMT_TIME},
             {"ipv4", FMT_IPV4},           {"ipv6", FMT_IPV6}, {"email", FMT_EMAIL}};
    if (kind != JSON_STRING) return fail(c, FACTUM_EINVAL, "\"format\" must be a string", NULL, NULL), false;
    for (size_t i = 0; i < ARRAY_LEN(f); i++)
        if (json_key_is(v, f[i].name)) return n->format = f[i].f, true;
    char name[96];
    snprintf(name, sizeof name, "%.*s", (int)MIN(v.len, 90), v.ptr);
    return fail(c, FACTUM_EINVAL, "unsupported format %s (supported: date-time, date, time, ipv4, ipv6, email)", name,
                NULL),
           false;
}

/* Keywords that only annotate: accepted, not checked. */
static const char *const annotations[] = {"$schema",  "$comment", "title",     "description",      "default",
                                          "examples", "readOnly", "writeOnly", "contentMediaType", "contentEncoding"};

static bool keyword(comp *c, node *n, factum_str_t k, factum_str_t v, int kind) {
    char kw[64];
    size_t kl;
    char *dk = decode(c, k, &kl);
    if (!dk) return false;
    snprintf(kw, sizeof kw, "%s", dk);
    bool long_name = kl >= sizeof kw;
    free(dk);
    if (long_name) return fail(c, FACTUM_EINVAL, "unsupported keyword \"%s...\"", kw, NULL), false;
#define IS(name) (!strcmp(kw, name))
    for (size_t i = 0; i < ARRAY_LEN(annotations); i++)
        if (IS(annotations[i])) return true;
    if (IS("$id")) {
        if (c->path.len)
            return fail(c, FACTUM_EINVAL,
                        "unsupported keyword \"$id\" below the root (it would change what $ref means)", NULL, NULL),
                   false;
        return kind == JSON_STRING || (fail(c, FACTUM_EINVAL, "\"$id\" must be a string", NULL, NULL), false);
    }
    if (IS("$ref")) {
        if (kind != JSON_STRING) return fail(c, FACTUM_EINVAL, "\"$ref\" must be a string", NULL, NULL), false;
        if (c->nrefs == c->cap_refs) {
            size_t cap = c->cap_refs ? 2 * c->cap_refs : 8;
            struct pref *g = realloc(c->refs, cap * sizeof *g);
            if (!g) return fail(c, FACTUM_ENOMEM, "out of memory", NULL, NULL), false;
            c->refs = g, c->cap_refs = cap;
        }
        char *at = strdup(c->path.len ? c->path.ptr : "");
        if (!at) return fail(c, FACTUM_ENOMEM, "out of memory", NULL, NULL), false;
        c->refs[c->nrefs++] = (struct pref){n, v, at};
        return true;
    }
    if (IS("type")) return types(c, n, v, kind);
    if (IS("enum")) {
        if (kind != JSON_ARRAY) return fail(c, FACTUM_EINVAL, "\"enum\" must be an array", NULL, NULL), false;
        return n->enum_v = v, true;
    }
    if (IS("const")) return n->has_const = true, n->const_v = v, n->const_kind = kind, true;
    if (IS("multipleOf")) {
        if (!get_number(c, kw, v, kind, &n->mult)) return false;
        if (!(n->mult > 0)) return fail(c, FACTUM_EINVAL, "\"multipleOf\" must be greater than 0", NULL, NULL), false;
        return n->has_mult = true;
    }
    if (IS("minimum")) return n->has_min = get_number(c, kw, v, kind, &n->min);
    if (IS("maximum")) return n->has_max = get_number(c, kw, v, kind, &n->max);
    if (IS("exclusiveMinimum")) return n->has_xmin = get_number(c, kw, v, kind, &n->xmin);
    if (IS("exclusiveMaximum")) return n->has_xmax = get_number(c, kw, v, kind, &n->xmax);
    if (IS("minLength")) return get_count(c, kw, v, kind, &n->min_len);
    if (IS("maxLength")) return get_count(c, kw, v, kind, &n->max_len);
    if (IS("minItems")) return get_count(c, kw, v, kind, &n->min_items);
    if (IS("maxItems")) return get_count(c, kw, v, kind, &n->max_items);
    if (IS("minProperties")) return get_count(c, kw, v, kind, &n->min_props);
    if (IS("maxProperties")) return get_count(c, kw, v, kind, &n->max_props);
    if (IS("pattern")) return (n->pattern = regex(c, kw, v, kind)) != NULL;
    if (IS("format")) return format(c, n, v, kind);
    if (IS("uniqueItems")) {
        if (kind != JSON_TRUE && kind != JSON_FALSE)
            return fail(c, FACTUM_EINVAL, "\"uniqueItems\" must be true or false", NULL, NULL), false;
        return n->unique = kind == JSON_TRUE, true;
    }
    if (IS("required"))
        return kind == JSON_ARRAY
                   ? strings(c, v, "\"required\" must be an array of strings", &n->required, &n->nrequired)
                   : (fail(c, FACTUM_EINVAL, "\"required\" must be an array of strings", NULL, NULL), false);
    if (IS("properties")) return map(c, kw, v, kind, &n->props, &n->nprops);
    if (IS("patternProperties")) return map(c, kw, v, kind, &n->patprops, &n->npatprops);
    if (IS("dependencies")) return map(c, kw, v, kind, &n->deps, &n->ndeps);
    if (IS("definitions")) {
        named *defs = NULL;
        size_t ndefs = 0;
        bool ok = map(c, kw, v, kind, &defs, &ndefs);
        for (size_t i = 0; i < ndefs; i++)
            free(defs[i].name); /* their nodes live in allocs; $refs find them by place */
        free(defs);
        return ok;
    }
    if (IS("items")) {
        if (kind == JSON_ARRAY) return n->items_tuple = true, list(c, kw, v, kind, &n->tuple, false);
        return (n->items = sub(c, kw, NULL, 0, v, kind)) != NULL;
    }
    if (IS("allOf")) return list(c, kw, v, kind, &n->all, true);
    if (IS("anyOf")) return list(c, kw, v, kind, &n->any, true);
    if (IS("oneOf")) return list(c, kw, v, kind, &n->one, true);
    node **one = IS("additionalProperties") ? &n->addprops
                 : IS("additionalItems")    ? &n->additems
                 : IS("contains")           ? &n->contains
                 : IS("propertyNames")      ? &n->propnames
                 : IS("not")                ? &n->not_
                 : IS("if")                 ? &n->if_
                 : IS("then")               ? &n->then_
                 : IS("else")               ? &n->else_
                                            : NULL;
    if (one) return (*one = sub(c, kw, NULL, 0, v, kind)) != NULL;
#undef IS
    return fail(c, FACTUM_EINVAL, "unsupported keyword \"%s\" (docs/schemas.md lists the supported ones)", kw, NULL),
           false;
}

static node *compile_node(comp *c, factum_str_t span, int kind) {
    if (c->rc) return NULL;
    if (kind != JSON_OBJECT && kind != JSON_TRUE && kind != JSON_FALSE)
        return fail(c, FACTUM_EINVAL, "a schema must be an object, true or false", NULL, NULL), NULL;
    node *n = calloc(1, sizeof *n);
    if (!n) return fail(c, FACTUM_ENOMEM, "out of memory", NULL, NULL), NULL;
    n->next_alloc = c->s->allocs, c->s->allocs = n;
    n->span = span;
    n->boolean = kind == JSON_OBJECT ? -1 : kind == JSON_TRUE;
    n->min_len = n->max_len = n->min_items = n->max_items = n->min_props = n->max_props = -1;
    if (kind != JSON_OBJECT) return n;
    json_iter_t it;
    factum_str_t k, v;
    int vk;
    json_iter_init(&it, span);
    while (json_iter_member(&it, &k, &v, &vk) == 1) {
        json_iter_t again = it; /* a keyword twice: which one would count? */
        factum_str_t k2, v2;
        int vk2;
        while (json_iter_member(&again, &k2, &v2, &vk2) == 1)
            if (schema_json_equal(k, JSON_STRING, k2, JSON_STRING)) {
                char *name = decode(c, k, NULL);
                if (name) fail(c, FACTUM_EINVAL, "keyword \"%.60s\" given twice", name, NULL);
                free(name);
                return NULL;
            }
        if (!keyword(c, n, k, v, vk)) return NULL;
    }
    /* "then"/"else" without "if" change nothing, as the draft says. */
    if (!n->if_) n->then_ = n->else_ = NULL;
    return n;
}

/* The place in the document a "#..." reference names, or false. */
static bool resolve(comp *c, const char *ref, factum_str_t *out, int *kind) {
    factum_str_t at = {c->s->text, c->s->len};
    json_cur_t cur = json_cur(at.ptr, at.len);
    if (json_value(&cur, &at, kind)) return false;
    if (ref[0] != '#') return false;
    const char *p = ref + 1;
    if (*p && *p != '/') return false;
    while (*p == '/') {
        p++;
        buf_t seg = {0};
        for (; *p && *p != '/'; p++) {
            char ch = *p;
            if (ch == '~' && (p[1] == '0' || p[1] == '1'))
                ch = p[1] == '0' ? '~' : '/', p++;
            else if (ch == '%' && p[1] && p[2]) {
                char hex[3] = {p[1], p[2], 0};
                ch = (char)strtol(hex, NULL, 16), p += 2;
            }
            buf_append(&seg, &ch, 1);
        }
        buf_append(&seg, "", 1);
        bool found = false;
        json_iter_t it;
        factum_str_t k, v;
        int vk;
        json_iter_init(&it, at);
        if (*kind == JSON_OBJECT) {
            while (!found && json_iter_member(&it, &k, &v, &vk) == 1)
                if (json_key_is(k, seg.ptr)) found = true, at = v, *kind = vk;
        } else if (*kind == JSON_ARRAY) {
            char *end;
            long idx = strtol(seg.ptr, &end, 10);
            for (long i = 0; !*end && json_iter_element(&it, &v, &vk) == 1; i++)
                if (i == idx) {
                    found = true, at = v, *kind = vk;
                    break;
                }
        }
        buf_free(&seg);
        if (!found) return false;
    }
    *out = at;
    return true;
}

static int link_refs(comp *c) {
    for (size_t i = 0; i < c->nrefs && !c->rc; i++) {
        struct pref *r = &c->refs[i];
        char *ref = decode(c, r->ref, NULL);
        if (!ref) break;
        buf_free(&c->path);
        buf_printf(&c->path, "%s", r->at);
        factum_str_t target;
        int kind;
        if (ref[0] != '#')
            fail(c, FACTUM_EINVAL, "unsupported \"$ref\" \"%s\": only references inside the document (\"#/...\")", ref,
                 NULL);
        else if (!resolve(c, ref, &target, &kind))
            fail(c, FACTUM_EINVAL, "\"$ref\" \"%s\" names no place in the document", ref, NULL);
        else {
            node *t = c->s->allocs;
            while (t && t->span.ptr != target.ptr)
                t = t->next_alloc;
            r->n->ref = t ? t : compile_node(c, target, kind);
        }
        free(ref);
    }
    /* A chain of $refs that comes back to where it started would never check anything. */
    for (size_t i = 0; i < c->nrefs && !c->rc; i++) {
        node *t = c->refs[i].n->ref;
        for (size_t steps = 0; t && t->ref && steps <= c->nrefs; steps++) {
            if (t == c->refs[i].n || steps == c->nrefs) {
                buf_free(&c->path);
                buf_printf(&c->path, "%s", c->refs[i].at);
                return fail(c, FACTUM_EINVAL, "\"$ref\" leads back to itself%s", "", NULL);
            }
            t = t->ref;
        }
    }
    return c->rc;
}

int schema_compile(factum_str_t doc, schema_t **out, factum_error_t *err) {
    *out = NULL;
    if (doc.len > SCHEMA_MAX_BYTES)
        return err_set(err, FACTUM_ETOOBIG, "the schema is %zu bytes, the limit is %d", doc.len, SCHEMA_MAX_BYTES);
    int kind;
    if (!json_valid(doc.ptr, doc.len, &kind)) return err_set(err, FACTUM_EINVAL, "the schema is not valid JSON");
    schema_t *s = calloc(1, sizeof *s);
    if (!s || !(s->text = malloc(doc.len + 1))) {
        free(s);
        return err_set(err, FACTUM_ENOMEM, "out of memory");
    }
    memcpy(s->text, doc.ptr, doc.len);
    s->text[doc.len] = 0, s->len = doc.len;
    comp c = {.s = s, .err = err};
    factum_str_t span;
    json_cur_t cur = json_cur(s->text, s->len);
    json_value(&cur, &span, &kind);
    s->root = compile_node(&c, span, kind);
    if (!c.rc) link_refs(&c);
    for (size_t i = 0; i < c.nrefs; i++)
        free(c.refs[i].at);
    free(c.refs);
    buf_free(&c.path);
    if (c.rc) {
        schema_free(s);
        return c.rc;
    }
    *out = s;
    return 0;
}

static void free_named(named *m, size_t n) {
    for (size_t i = 0; i < n; i++) {
        free(m[i].name);
        for (size_t j = 0; j < m[i].nnames; j++)
            free(m[i].names[j]);
        free(m[i].names);
        if (m[i].re) pcre2_code_free(m[i].re);
    }
    free(m);
}

void schema_free(schema_t *s) {
    if (!s) return;
    for (node *n = s->allocs, *next; n; n = next) {
        next = n->next_alloc;
        if (n->pattern) pcre2_code_free(n->pattern);
        free_named(n->props, n->nprops);
        free_named(n->patprops, n->npatprops);
        free_named(n->deps, n->ndeps);
        for (size_t i = 0; i < n->nrequired; i++)
            free(n->required[i]);
        free(n->required);
        free(n->tuple.v), free(n->all.v), free(n->any.v), free(n->one.v);
        free(n);
    }
    free(s->text);
    free(s);
}

factum_str_t schema_text(const schema_t *s) { return (factum_str_t){s->text, s->len}; }
