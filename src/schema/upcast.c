/*
 * upcast.c — see upcast.h. Data is parsed into a small tree (jv: objects keep their members'
 * order, scalars stay the raw text they were), changed by JSON pointer, and written back. The
 * steps' own values (add, map) are raw spans of the steps document, which u keeps.
 */
#include "upcast.h"

#include "../base/json.h"
#include "node.h"

#include <stdio.h>
#include <stdlib.h>

enum { OP_RENAME, OP_ADD, OP_REMOVE, OP_MOVE, OP_MAP, OP_RENAME_TYPE };

typedef struct step {
    int op;
    char *from, *to;    /* pointers (from: rename, move; path: in from for add, remove, map) */
    factum_str_t value; /* add: the default; map: the object of values */
    int value_kind;
    char *type;       /* rename_type: the new type, */
    uint32_t version; /* and the version of it the event enters as */
} step;

struct upcast {
    char *text;
    size_t len;
    step *steps;
    size_t n;
};

/* ---- the data tree ---- */

typedef struct jv jv;
struct jv {
    int kind;
    factum_str_t raw; /* scalars */
    char **keys;      /* objects: decoded member names */
    jv **vals;        /* members or elements */
    size_t n, cap;
};

static void jv_free(jv *v) {
    if (!v) return;
    for (size_t i = 0; i < v->n; i++) {
        if (v->keys) free(v->keys[i]);
        jv_free(v->vals[i]);
    }
    free(v->keys);
    free(v->vals);
    free(v);
}

static int jv_push(jv *v, char *key, jv *val) {
    if (v->n == v->cap) {
        size_t cap = v->cap ? 2 * v->cap : 4;
        jv **vals = realloc(v->vals, cap * sizeof *vals);
        if (vals) v->vals = vals;
        char **keys = v->kind == JSON_OBJECT ? realloc(v->keys, cap * sizeof *keys) : NULL;
        if (keys) v->keys = keys;
        if (!vals || (v->kind == JSON_OBJECT && !keys)) return FACTUM_ENOMEM;
        v->cap = cap;
    }
    if (v->kind == JSON_OBJECT) v->keys[v->n] = key;
    v->vals[v->n++] = val;
    return 0;
}

static jv *jv_parse(factum_str_t s, int kind) {
    jv *v = calloc(1, sizeof *v);
    if (!v) return NULL;
    v->kind = kind, v->raw = s;
    if (kind != JSON_OBJECT && kind != JSON_ARRAY) return v;
    json_iter_t it;
    factum_str_t k, e;
    int ek, r;
    json_iter_init(&it, s);
    for (;;) {
        char *key = NULL;
        r = kind == JSON_OBJECT ? json_iter_member(&it, &k, &e, &ek) : json_iter_element(&it, &e, &ek);
        if (r != 1) break;
        if (kind == JSON_OBJECT) {
            buf_t b = {0};
            if (json_unescape(k, &b) || buf_append(&b, "", 1)) {
                buf_free(&b);
                r = -1;
                break;
            }
            key = b.ptr;
        }
        jv *c = jv_parse(e, ek);
        if (!c || jv_push(v, key, c)) {
            free(key), jv_free(c);
            r = -1;
            break;
        }
    }
    if (r < 0) jv_free(v), v = NULL;
    return v;
}

static int jv_write(const jv *v, buf_t *out) {
    if (v->kind != JSON_OBJECT && v->kind != JSON_ARRAY) return buf_append(out, v->raw.ptr, v->raw.len);
    buf_append(out, v->kind == JSON_OBJECT ? "{" : "[", 1);
    for (size_t i = 0; i < v->n; i++) {
        if (i) buf_append(out, ",", 1);
        if (v->kind == JSON_OBJECT) json_escape(out, v->keys[i], strlen(v->keys[i])), buf_append(out, ":", 1);
        jv_write(v->vals[i], out);
    }
    return buf_append(out, v->kind == JSON_OBJECT ? "}" : "]", 1);
}

/* The next segment of pointer *p (decoded ~0 ~1) into seg; false at its end. */
static bool next_seg(const char **p, char *seg, size_t cap) {
    if (**p != '/') return false;
    size_t n = 0;
    for ((*p)++; **p && **p != '/'; (*p)++) {
        char ch = **p;
        if (ch == '~' && ((*p)[1] == '0' || (*p)[1] == '1')) ch = (*p)[1] == '0' ? '~' : '/', (*p)++;
        if (n + 1 < cap) seg[n++] = ch;
    }
    seg[n] = 0;
    return true;
}

static long member(const jv *o, const char *key) {
    for (size_t i = 0; o->kind == JSON_OBJECT && i < o->n; i++)
        if (!strcmp(o->keys[i], key)) return (long)i;
    return -1;
}

/* The object holding the last segment of ptr (made on the way when make), and that segment. */
static jv *parent_of(jv *root, const char *ptr, bool make, char last[256]) {
    const char *p = ptr;
    char seg[256];
    jv *at = root;
    if (!next_seg(&p, last, 256)) return NULL;
    while (*p) {
        memcpy(seg, last, 256);
        if (!next_seg(&p, last, 256) || at->kind != JSON_OBJECT) return NULL;
        long i = member(at, seg);
        if (i < 0) {
            jv *o = make ? calloc(1, sizeof *o) : NULL;
            char *k = o ? strdup(seg) : NULL;
            if (!k || jv_push(at, k, o)) return free(k), free(o), NULL;
            o->kind = JSON_OBJECT, o->raw = str_c("{}");
            i = (long)at->n - 1;
        }
        at = at->vals[i];
    }
    return at->kind == JSON_OBJECT ? at : NULL;
}

/* Takes the member ptr names out of the tree (NULL if there is none). */
static jv *detach(jv *root, const char *ptr) {
    char last[256];
    jv *o = parent_of(root, ptr, false, last);
    long i = o ? member(o, last) : -1;
    if (i < 0) return NULL;
    jv *v = o->vals[i];
    free(o->keys[i]);
    memmove(&o->keys[i], &o->keys[i + 1], (o->n - (size_t)i - 1) * sizeof *o->keys);
    memmove(&o->vals[i], &o->vals[i + 1], (o->n - (size_t)i - 1) * sizeof *o->vals);
    o->n--;
    return v;
}

/* Puts v at ptr unless something is there (then v is freed); true if it is placed or freed. */
static int attach(jv *root, const char *ptr, jv *v) {
    char last[256];
    jv *o = parent_of(root, ptr, true, last);
    if (!o || member(o, last) >= 0) return jv_free(v), 0;
    char *k = strdup(last);
    if (!k || jv_push(o, k, v)) return free(k), jv_free(v), FACTUM_ENOMEM;
    return 0;
}

static jv *find(jv *root, const char *ptr) {
    char last[256];
    jv *o = parent_of(root, ptr, false, last);
    long i = o ? member(o, last) : -1;
    return i < 0 ? NULL : o->vals[i];
}

static int apply_step(const step *s, jv *root) {
    jv *v;
    switch (s->op) {
    case OP_RENAME:
    case OP_MOVE: return (v = detach(root, s->from)) ? attach(root, s->to, v) : 0;
    case OP_REMOVE: jv_free(detach(root, s->from)); return 0;
    case OP_ADD:
        if (find(root, s->from)) return 0;
        return (v = jv_parse(s->value, s->value_kind)) ? attach(root, s->from, v) : FACTUM_ENOMEM;
    case OP_MAP: {
        if (!(v = find(root, s->from)) || v->kind != JSON_STRING) return 0;
        json_iter_t it;
        factum_str_t k, e;
        int ek;
        json_iter_init(&it, s->value);
        while (json_iter_member(&it, &k, &e, &ek) == 1)
            if (schema_json_equal(k, JSON_STRING, v->raw, JSON_STRING)) {
                jv *nv = jv_parse(e, ek);
                if (!nv) return FACTUM_ENOMEM;
                char last[256];
                jv *o = parent_of(root, s->from, false, last);
                long i = member(o, last);
                jv_free(o->vals[i]);
                o->vals[i] = nv;
                return 0;
            }
        return 0;
    }
    default: return 0; /* rename_type changes the event, not its data */
    }
}

int upcast_apply(const upcast *u, factum_str_t data, buf_t *out) {
    json_cur_t c = json_cur(data.ptr, data.len);
    factum_str_t span;
    int kind;
    if (json_value(&c, &span, &kind)) return FACTUM_EINVAL;
    if (kind != JSON_OBJECT) return buf_append(out, data.ptr, data.len); /* steps name members */
    jv *root = jv_parse(span, kind);
    if (!root) return FACTUM_ENOMEM;
    int rc = 0;
    for (size_t i = 0; i < u->n && !rc; i++)
        rc = apply_step(&u->steps[i], root);
    if (!rc) rc = jv_write(root, out);
    jv_free(root);
    return rc;
}

/* ---- parsing and checking the steps ---- */

/* True if pointer ptr names a property the schema declares, through "properties". */
static bool declared(const schema_t *from, const char *ptr) {
    const node *n = from->root;
    const char *p = ptr;
    char seg[256];
    while (next_seg(&p, seg, sizeof seg)) {
        while (n->ref)
            n = n->ref;
        const node *next = NULL;
        for (size_t i = 0; i < n->nprops && !next; i++)
            if (!strcmp(n->props[i].name, seg)) next = n->props[i].n;
        if (!next) return false;
        n = next;
    }
    return true;
}

static bool pointer_ok(const char *p) {
    if (p[0] != '/' || strlen(p) > 1000) return false;
    for (const char *s = p; *s; s++)
        if (*s == '/' && (s[1] == '/' || s[1] == 0)) return false;
    return true;
}

static char *member_string(factum_str_t obj, const char *key) {
    buf_t b = {0};
    if (!json_member_string(obj, key, &b)) return buf_free(&b), NULL;
    return b.ptr ? b.ptr : strdup("");
}

static int parse_step(upcast *u, factum_str_t e, size_t i, const schema_t *from, factum_error_t *err) {
    static const char *const ops[] = {"rename", "add", "remove", "move", "map", "rename_type"};
    static const char *const allowed[] = {"op", "from", "to", "path", "value", "values", "type", "version", NULL};
    step *s = &u->steps[i];
    char *op = member_string(e, "op");
    s->op = -1;
    for (int k = 0; op && k < 6; k++)
        if (!strcmp(op, ops[k])) s->op = k;
    free(op);
    if (s->op < 0)
        return err_set(err, FACTUM_EINVAL, "step %zu: \"op\" is rename, add, remove, move, map or rename_type", i);
    char what[32];
    snprintf(what, sizeof what, "step %zu", i);
    int rc = json_only_members(e, what, allowed, err);
    if (rc) return rc;
    int kind;
    switch (s->op) {
    case OP_RENAME:
    case OP_MOVE:
        s->from = member_string(e, "from"), s->to = member_string(e, "to");
        if (!s->from || !s->to || !pointer_ok(s->from) || !pointer_ok(s->to))
            return err_set(err, FACTUM_EINVAL, "step %zu (%s): \"from\" and \"to\" are JSON pointers (\"/a/b\")", i,
                           ops[s->op]);
        if (s->op == OP_RENAME && (strrchr(s->from, '/') - s->from != strrchr(s->to, '/') - s->to ||
                                   strncmp(s->from, s->to, (size_t)(strrchr(s->from, '/') - s->from))))
            return err_set(err, FACTUM_EINVAL, "step %zu (rename): \"to\" must be beside \"from\" (use move)", i);
        break;
    case OP_ADD:
    case OP_REMOVE:
    case OP_MAP:
        s->from = member_string(e, "path");
        if (!s->from || !pointer_ok(s->from))
            return err_set(err, FACTUM_EINVAL, "step %zu (%s): \"path\" is a JSON pointer (\"/a/b\")", i, ops[s->op]);
        if (s->op == OP_ADD && !json_member(e, "value", &s->value, &s->value_kind))
            return err_set(err, FACTUM_EINVAL, "step %zu (add): \"value\" is the default to add", i);
        if (s->op == OP_MAP && (!json_member(e, "values", &s->value, &kind) || kind != JSON_OBJECT))
            return err_set(err, FACTUM_EINVAL, "step %zu (map): \"values\" is an object of old value to new", i);
        break;
    default:
        if (!(s->type = member_string(e, "type")) || !s->type[0] || strlen(s->type) > FACTUM_MAX_ATTRIBUTE ||
            !text_valid(s->type, strlen(s->type)))
            return err_set(err, FACTUM_EINVAL, "step %zu (rename_type): \"type\" is the new event type", i);
        uint64_t ver = 1;
        factum_str_t v;
        if (json_member(e, "version", &v, &kind) &&
            (!json_member_u64(e, "version", &ver) || ver < 1 || ver > UPCAST_MAX_VERSION))
            return err_set(err, FACTUM_EINVAL,
                           "step %zu (rename_type): \"version\" is the version of the new type the event enters "
                           "as, 1 to %d",
                           i, UPCAST_MAX_VERSION);
        s->version = (uint32_t)ver;
    }
    if (from && s->op != OP_ADD && s->op != OP_RENAME_TYPE && !declared(from, s->from))
        return err_set(err, FACTUM_EINVAL, "step %zu (%s): %.200s is not a property of the version it upcasts from", i,
                       ops[s->op], s->from);
    return 0;
}

int upcast_parse(factum_str_t doc, const schema_t *from, upcast **out, factum_error_t *err) {
    *out = NULL;
    int kind;
    factum_str_t steps;
    if (doc.len > SCHEMA_MAX_BYTES)
        return err_set(err, FACTUM_ETOOBIG, "the steps are %zu bytes, the limit is %d", doc.len, SCHEMA_MAX_BYTES);
    if (!json_valid(doc.ptr, doc.len, &kind) || kind != JSON_OBJECT)
        return err_set(err, FACTUM_EINVAL, "the upcast is a JSON object {\"steps\":[...]}");
    upcast *u = calloc(1, sizeof *u);
    if (!u || !(u->text = malloc(doc.len + 1))) return free(u), err_set(err, FACTUM_ENOMEM, "out of memory");
    memcpy(u->text, doc.ptr, doc.len), u->text[doc.len] = 0, u->len = doc.len;
    factum_str_t d = {u->text, u->len};
    json_cur_t c = json_cur(d.ptr, d.len);
    json_value(&c, &d, &kind);
    static const char *const allowed[] = {"steps", NULL};
    int rc = json_only_members(d, "the upcast", allowed, err);
    if (!rc && (!json_member(d, "steps", &steps, &kind) || kind != JSON_ARRAY))
        rc = err_set(err, FACTUM_EINVAL, "the upcast is a JSON object {\"steps\":[...]}");
    json_iter_t it;
    factum_str_t e;
    int ek;
    size_t n = 0;
    if (!rc) {
        json_iter_init(&it, steps);
        while (json_iter_element(&it, &e, &ek) == 1)
            n++;
        if (n > UPCAST_MAX_STEPS)
            rc = err_set(err, FACTUM_ETOOBIG, "%zu steps, the limit is %d", n, UPCAST_MAX_STEPS);
        else if (!(u->steps = calloc(n ? n : 1, sizeof *u->steps)))
            rc = err_set(err, FACTUM_ENOMEM, "out of memory");
    }
    if (!rc) json_iter_init(&it, steps);
    while (!rc && json_iter_element(&it, &e, &ek) == 1) {
        if (ek != JSON_OBJECT)
            rc = err_set(err, FACTUM_EINVAL, "step %zu is not an object", u->n);
        else
            rc = parse_step(u, e, u->n, from, err);
        u->n++;
    }
    if (rc) {
        upcast_free(u);
        return rc;
    }
    *out = u;
    return 0;
}

void upcast_free(upcast *u) {
    if (!u) return;
    for (size_t i = 0; i < u->n; i++)
        free(u->steps[i].from), free(u->steps[i].to), free(u->steps[i].type);
    free(u->steps);
    free(u->text);
    free(u);
}

factum_str_t upcast_text(const upcast *u) { return (factum_str_t){u->text, u->len}; }

const char *upcast_new_type(const upcast *u, uint32_t *version) {
    const char *t = NULL;
    for (size_t i = 0; i < u->n; i++)
        if (u->steps[i].op == OP_RENAME_TYPE) {
            t = u->steps[i].type;
            if (version) *version = u->steps[i].version;
        }
    return t;
}
