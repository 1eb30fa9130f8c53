/*
 * compat.c — schema_forward_compatible: whether data valid under a newer version of a type's
 * schema is valid under the older one (forward compatibility: readers of the older version can
 * read what writers of the newer one write). A conservative structural check: the two trees are
 * walked together from the root, and each rule of the older must be kept, as strict or
 * stricter, by the newer at the same place; what cannot be shown so is a difference, reported
 * with a JSON pointer into the older document (the rule) and its keyword. A rule only the newer
 * has narrows what it accepts and is never a difference. A newer schema that lists its values
 * (enum, const) is checked value by value against the whole older schema.
 */
#include "node.h"

#include "../base/json.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>

#define MAX_DEPTH 64      /* pairs of nodes being compared; a $ref cycle ends at a pair already open */
#define COMPARE_MAX 50000 /* comparisons of two places, in all (anyOf and allOf multiply them) */
#define ALL_TYPES (T_NULL | T_BOOLEAN | T_OBJECT | T_ARRAY | T_NUMBER | T_STRING | T_INTEGER)

typedef struct cctx {
    schema_report *rep; /* NULL: quiet, stop at the first difference */
    buf_t ptr;          /* into the older document */
    /* The pairs being compared, outermost first, with how deep into the data each applies. A pair
       met again deeper in the data is taken as kept (data is finite: the proof is by induction on
       its depth); met again at the same depth it is a recursion that validation never ends, and is
       not compared. */
    const node *open_n[MAX_DEPTH], *open_o[MAX_DEPTH];
    int open_data[MAX_DEPTH];
    int depth, data;
    long *budget; /* comparisons left, shared with the quiet tries of anyOf */
} cctx;

/* A schema without rules: what `true` and a missing subschema allow. */
static const node NONE = {
    .boolean = -1, .min_len = -1, .max_len = -1, .min_items = -1, .max_items = -1, .min_props = -1, .max_props = -1};

/* A difference at older's place, and seg below it when given: keyword label. */
static bool vdiffer(cctx *x, const char *seg, const char *label, const char *fmt, va_list ap) {
    if (!x->rep) return false;
    char msg[200];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t mark = x->ptr.len;
    if (seg) schema_pointer_push(&x->ptr, seg, strlen(seg));
    schema_report_add(x->rep, (factum_str_t){x->ptr.ptr ? x->ptr.ptr : "", x->ptr.len}, label, msg);
    x->ptr.len = mark;
    return false;
}

/* A rule of older's, keyword kw, that newer does not keep. */
__attribute__((format(printf, 3, 4))) static bool differ(cctx *x, const char *kw, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vdiffer(x, kw, kw, fmt, ap);
    va_end(ap);
    return false;
}

/* A difference of the schema at older's place itself. */
__attribute__((format(printf, 3, 4))) static bool differ_here(cctx *x, const char *label, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vdiffer(x, NULL, label, fmt, ap);
    va_end(ap);
    return false;
}

static bool cmp(cctx *x, const node *n, const node *o);

/* cmp at older's place kw[/seg] (seg NULL: none; index >= 0: a number instead), for a value
   inside the data at hand (all but allOf and anyOf). */
static bool under(cctx *x, const node *n, const node *o, const char *kw, const char *seg, long index) {
    size_t mark = x->ptr.len;
    int inside = strcmp(kw, "allOf") != 0;
    char num[24];
    if (index >= 0) snprintf(num, sizeof num, "%ld", index), seg = num;
    if (x->rep) {
        schema_pointer_push(&x->ptr, kw, strlen(kw));
        if (seg) schema_pointer_push(&x->ptr, seg, strlen(seg));
    }
    x->data += inside;
    bool ok = cmp(x, n, o);
    x->data -= inside;
    x->ptr.len = mark;
    return ok;
}

/* Whether keyword kw has the same value in both nodes (or is in neither). A value holding a $ref
   is never taken as the same: the same text may name different places in the two documents. */
static bool same(const node *n, const node *o, const char *kw) {
    factum_str_t a, b;
    int ka, kb;
    bool ha = n->span.len && json_member(n->span, kw, &a, &ka), hb = o->span.len && json_member(o->span, kw, &b, &kb);
    if (!ha || !hb) return ha == hb;
    return schema_json_equal(a, ka, b, kb) && !memmem(a.ptr, a.len, "$ref", 4);
}

static const char *type_names(unsigned bits, char *out, size_t cap) {
    static const char *const names[] = {"null", "boolean", "object", "array", "number", "string", "integer"};
    out[0] = 0;
    for (int i = 0; i < 7; i++)
        if (bits & (1u << i)) snprintf(out + strlen(out), cap - strlen(out), "%s%s", out[0] ? ", " : "", names[i]);
    return out;
}

/* A newer node that lists its values: each it accepts must be one the older accepts. */
static bool values_kept(cctx *x, const node *n, const node *o) {
    bool ok = true;
    const char *kw = n->enum_v.len ? "enum" : "const";
    if (n->has_const) {
        if (schema_node_accepts(n, n->const_v, n->const_kind) && !schema_node_accepts(o, n->const_v, n->const_kind))
            ok = differ(x, kw, "this version allows %.*s, which the previous version refuses",
                        (int)MIN(n->const_v.len, 60), n->const_v.ptr);
        return ok; /* const is the only value, whatever enum lists */
    }
    json_iter_t it;
    factum_str_t e;
    int ek;
    json_iter_init(&it, n->enum_v);
    while ((ok || x->rep) && json_iter_element(&it, &e, &ek) == 1)
        if (schema_node_accepts(n, e, ek) && !schema_node_accepts(o, e, ek))
            ok = differ(x, kw, "this version allows %.*s, which the previous version refuses", (int)MIN(e.len, 60),
                        e.ptr);
    return ok;
}

static bool numbers_kept(cctx *x, const node *n, const node *o) {
    bool ok = true;
    if (o->has_min && !((n->has_min && n->min >= o->min) || (n->has_xmin && n->xmin >= o->min)))
        ok = differ(x, "minimum", "the previous version's minimum %g is not kept", o->min);
    if (o->has_xmin && !((n->has_xmin && n->xmin >= o->xmin) || (n->has_min && n->min > o->xmin)))
        ok = differ(x, "exclusiveMinimum", "the previous version's exclusiveMinimum %g is not kept", o->xmin);
    if (o->has_max && !((n->has_max && n->max <= o->max) || (n->has_xmax && n->xmax <= o->max)))
        ok = differ(x, "maximum", "the previous version's maximum %g is not kept", o->max);
    if (o->has_xmax && !((n->has_xmax && n->xmax <= o->xmax) || (n->has_max && n->max < o->xmax)))
        ok = differ(x, "exclusiveMaximum", "the previous version's exclusiveMaximum %g is not kept", o->xmax);
    if (o->has_mult) {
        double q = n->has_mult ? n->mult / o->mult : 0.5;
        if (!(isfinite(q) && fabs(q - nearbyint(q)) <= 1e-9 * fmax(1.0, fabs(q)) && nearbyint(q) >= 1))
            ok = differ(x, "multipleOf", "values need not be multiples of %g, as the previous version asks", o->mult);
    }
    return ok;
}

/* A lower bound (-1: none) kept: the newer's is as high or higher. */
static bool low_kept(int64_t nv, int64_t ov) { return ov < 0 || nv >= ov; }
/* An upper bound kept: the newer has one, as low or lower. */
static bool high_kept(int64_t nv, int64_t ov) { return ov < 0 || (nv >= 0 && nv <= ov); }

static bool strings_kept(cctx *x, const node *n, const node *o) {
    bool ok = true;
    if (!low_kept(n->min_len, o->min_len))
        ok = differ(x, "minLength", "the previous version's minLength %lld is not kept", (long long)o->min_len);
    if (!high_kept(n->max_len, o->max_len))
        ok = differ(x, "maxLength", "the previous version's maxLength %lld is not kept", (long long)o->max_len);
    if (o->pattern && !(n->pattern && same(n, o, "pattern")))
        ok = differ(x, "pattern", "the previous version's pattern is not kept (a pattern must stay the same)");
    if (o->format && n->format != o->format) ok = differ(x, "format", "the previous version's format is not kept");
    return ok;
}

static bool arrays_kept(cctx *x, const node *n, const node *o) {
    bool ok = true;
    if (!low_kept(n->min_items, o->min_items))
        ok = differ(x, "minItems", "the previous version's minItems %lld is not kept", (long long)o->min_items);
    if (!high_kept(n->max_items, o->max_items))
        ok = differ(x, "maxItems", "the previous version's maxItems %lld is not kept", (long long)o->max_items);
    if (o->unique && !n->unique) ok = differ(x, "uniqueItems", "the previous version's uniqueItems is not kept");
    if (o->contains && !same(n, o, "contains"))
        ok = differ(x, "contains", "compared only when the same in both versions");
    if (o->items_tuple || o->additems) {
        if (!same(n, o, "items") || !same(n, o, "additionalItems"))
            ok = differ(x, "items", "a list of items is compared only when the same in both versions");
    } else if (o->items && n->items_tuple) { /* each place of the newer's list, and what follows it */
        for (size_t i = 0; (ok || x->rep) && i < n->tuple.n; i++)
            if (!under(x, n->tuple.v[i], o->items, "items", NULL, -1)) ok = false;
        if ((ok || x->rep) && !under(x, n->additems ? n->additems : &NONE, o->items, "items", NULL, -1)) ok = false;
    } else if (o->items && !under(x, n->items ? n->items : &NONE, o->items, "items", NULL, -1)) {
        ok = false;
    }
    return ok;
}

static const node *prop(const node *n, const char *name) {
    for (size_t i = 0; i < n->nprops; i++)
        if (!strcmp(n->props[i].name, name)) return n->props[i].n;
    return NULL;
}

static bool objects_kept(cctx *x, const node *n, const node *o) {
    bool ok = true;
    for (size_t i = 0; i < o->nrequired; i++) {
        bool kept = false;
        for (size_t j = 0; j < n->nrequired && !kept; j++)
            kept = !strcmp(n->required[j], o->required[i]);
        if (!kept) ok = differ(x, "required", "\"%.100s\" is required by the previous version", o->required[i]);
    }
    if (!low_kept(n->min_props, o->min_props))
        ok = differ(x, "minProperties", "the previous version's minProperties %lld is not kept",
                    (long long)o->min_props);
    if (!high_kept(n->max_props, o->max_props))
        ok = differ(x, "maxProperties", "the previous version's maxProperties %lld is not kept",
                    (long long)o->max_props);
    if ((o->npatprops || (n->npatprops && o->addprops)) && !same(n, o, "patternProperties"))
        ok = differ(x, "patternProperties", "compared only when the same in both versions");
    if (o->ndeps && !same(n, o, "dependencies"))
        ok = differ(x, "dependencies", "compared only when the same in both versions");
    if (o->propnames && !under(x, n->propnames ? n->propnames : &NONE, o->propnames, "propertyNames", NULL, -1))
        ok = false;
    /* A property the older names: the newer's schema for it, or (not named there) what the newer
       allows of other properties — anything, when the newer's patternProperties may take it. */
    const node *n_other = n->npatprops || !n->addprops ? &NONE : n->addprops;
    for (size_t i = 0; (ok || x->rep) && i < o->nprops; i++) {
        const node *np = prop(n, o->props[i].name);
        if (!under(x, np ? np : n_other, o->props[i].n, "properties", o->props[i].name, -1)) ok = false;
    }
    /* A property only the newer names is one of the older's other properties. */
    for (size_t i = 0; o->addprops && (ok || x->rep) && i < n->nprops; i++)
        if (!prop(o, n->props[i].name) && !under(x, n->props[i].n, o->addprops, "additionalProperties", NULL, -1))
            ok = false;
    if (o->addprops && (ok || x->rep) && !under(x, n_other, o->addprops, "additionalProperties", NULL, -1)) ok = false;
    return ok;
}

static bool combined_kept(cctx *x, const node *n, const node *o) {
    bool ok = true;
    for (size_t i = 0; (ok || x->rep) && i < o->all.n; i++)
        if (!under(x, n, o->all.v[i], "allOf", NULL, (long)i)) ok = false;
    if (o->any.n && !same(n, o, "anyOf")) { /* within one branch is enough */
        bool within = false;
        for (size_t i = 0; !within && i < o->any.n; i++) {
            cctx q = {.depth = x->depth, .data = x->data, .budget = x->budget};
            memcpy(q.open_n, x->open_n, sizeof q.open_n), memcpy(q.open_o, x->open_o, sizeof q.open_o);
            memcpy(q.open_data, x->open_data, sizeof q.open_data);
            within = cmp(&q, n, o->any.v[i]);
        }
        if (!within) ok = differ(x, "anyOf", "this version is not within one branch of the previous version's anyOf");
    }
    if (o->one.n && !same(n, o, "oneOf")) ok = differ(x, "oneOf", "compared only when the same in both versions");
    if (o->not_ && !same(n, o, "not")) ok = differ(x, "not", "compared only when the same in both versions");
    if (o->if_ && !(same(n, o, "if") && same(n, o, "then") && same(n, o, "else")))
        ok = differ(x, "if", "if, then and else are compared only when the same in both versions");
    return ok;
}

static bool cmp(cctx *x, const node *n, const node *o) {
    if (--*x->budget < 0) /* said once; every comparison after it fails */
        return *x->budget == -1 && differ_here(x, "schema", "more than %d comparisons: not compared", COMPARE_MAX);
    for (int i = 0; n->ref && i < MAX_DEPTH; i++) /* compile refuses a cycle of $refs alone */
        n = n->ref;
    for (int i = 0; o->ref && i < MAX_DEPTH; i++)
        o = o->ref;
    if (o->boolean == 1 || n->boolean == 0) return true;
    if (o->boolean == 0) return differ_here(x, "false", "the previous version allows no value here; this one does");
    if (n->boolean == 1) n = &NONE;
    for (int i = 0; i < x->depth; i++)
        if (x->open_n[i] == n && x->open_o[i] == o)
            return x->open_data[i] < x->data
                       ? true
                       : differ_here(x, "$ref", "recurses without going into the data: not compared");
    if (x->depth == MAX_DEPTH) return differ_here(x, "$ref", "nested deeper than %d schemas: not compared", MAX_DEPTH);
    x->open_n[x->depth] = n, x->open_o[x->depth] = o, x->open_data[x->depth] = x->data, x->depth++;
    bool ok;
    if (n->has_const || n->enum_v.len) {
        ok = values_kept(x, n, o);
    } else {
        ok = true;
        unsigned nt = n->types ? n->types : ALL_TYPES, ot = o->types ? o->types : ALL_TYPES;
        if (ot & T_NUMBER) ot |= T_INTEGER;
        char names[80];
        if (nt & ~ot)
            ok = differ(x, "type", "this version allows %s, which the previous version does not",
                        type_names(nt & ~ot, names, sizeof names));
        if (o->enum_v.len)
            ok = differ(x, "enum", "the previous version allows only the values of its enum; this one does not");
        if (o->has_const)
            ok = differ(x, "const", "the previous version allows only the value of its const; this one does not");
        if ((ok || x->rep) && (nt & (T_NUMBER | T_INTEGER)) && !numbers_kept(x, n, o)) ok = false;
        if ((ok || x->rep) && (nt & T_STRING) && !strings_kept(x, n, o)) ok = false;
        if ((ok || x->rep) && (nt & T_ARRAY) && !arrays_kept(x, n, o)) ok = false;
        if ((ok || x->rep) && (nt & T_OBJECT) && !objects_kept(x, n, o)) ok = false;
        if ((ok || x->rep) && !combined_kept(x, n, o)) ok = false;
    }
    x->depth--;
    return ok;
}

bool schema_forward_compatible(const schema_t *newer, const schema_t *older, schema_report *rep) {
    long budget = COMPARE_MAX;
    cctx x = {.rep = rep, .budget = &budget};
    bool ok = cmp(&x, newer->root, older->root);
    buf_free(&x.ptr);
    return ok;
}
