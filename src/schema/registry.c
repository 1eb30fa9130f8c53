/*
 * registry.c — see registry.h. Decide, record, apply: schema_registry_put decides (the
 * document compiles, the version is the next one, stored events pass the declared
 * compatibility), records a SchemaRegistered event in $schemas, and applies it with
 * reg_apply — the one function replay at open also uses. Puts are serialized by put_mu; the
 * append check (reg_check, on any appending thread) reads the types under the read lock.
 */
#include "registry.h"

#include "upcast.h"

#include "../base/json.h"

#include <assert.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#define REPLAY_PAGE 1000
static_assert(UPCAST_MAX_VERSION == SCHEMA_MAX_VERSIONS, "a rename enters a version the registry may hold");
#define VIOLATIONS_MAX 8192 /* bytes of the thread's last refused violations */

typedef struct version {
    schema_t *s;
    int compat;
    uint64_t position; /* of its SchemaRegistered record: later events without dataschema are of it */
    upcast *up;        /* steps from the version before, or NULL */
} version;

struct type_rename {
    const char *from, *to; /* type names (live as long as the registry) */
};

typedef struct stype {
    char *name;
    int mode;
    version *v;
    uint32_t nv;
    _Atomic uint64_t warned, refused;
} stype;

struct schema_registry {
    factum_t *db;
    pthread_rwlock_t lock; /* types: written by reg_apply, read by everyone else */
    pthread_mutex_t put_mu;
    stype **types; /* sorted by name */
    size_t ntypes;
    _Atomic size_t published;    /* ntypes, read without the lock: 0 skips the check */
    _Atomic size_t upcasts;      /* versions with steps: 0 skips the read transform */
    struct type_rename *renames; /* the rename_type steps registered */
    _Atomic size_t nrenames;     /* read without the lock: 0 leaves type filters alone */
    _Atomic uint64_t next_rev;   /* the revision of $schemas to apply next (written under put_mu) */
};

/* The thread's last refusal: its message, to tell it from a later one, and its violations. */
static _Thread_local char last_message[sizeof(((factum_error_t *)0)->message)];
static _Thread_local char last_violations[VIOLATIONS_MAX];

const char *schema_registry_violations(const char *message) {
    return message && !strcmp(message, last_message) ? last_violations : "";
}

static const char *const modes[] = {"off", "warn", "enforce"};
static const char *const compats[] = {"backward", "forward", "full", "none"};
const char *schema_mode_name(int m) { return m >= 0 && m < 3 ? modes[m] : "?"; }
const char *schema_compat_name(int c) { return c >= 0 && c < 4 ? compats[c] : "?"; }
int schema_mode_parse(const char *s) {
    for (int i = 0; i < 3; i++)
        if (!strcmp(s, modes[i])) return i;
    return -1;
}
int schema_compat_parse(const char *s) {
    for (int i = 0; i < 4; i++)
        if (!strcmp(s, compats[i])) return i;
    return -1;
}

void schema_check_free(schema_check *c) {
    buf_free(&c->failures);
    schema_report_free(&c->forward);
}

/* ---- the types (callers hold the lock) ---- */

static stype *find(const schema_registry *r, factum_str_t name, size_t *at) {
    size_t lo = 0, hi = r->ntypes;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        const char *n = r->types[mid]->name;
        size_t nl = strlen(n);
        int c = memcmp(n, name.ptr, MIN(nl, name.len));
        if (!c) c = (nl > name.len) - (nl < name.len);
        if (!c) return r->types[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (at) *at = lo;
    return NULL;
}

/* Applies a registration (decided, or read back from $schemas); takes s. */
static int reg_apply(schema_registry *r, const char *type, uint32_t ver, int compat, int mode, schema_t *s,
                     uint64_t position) {
    pthread_rwlock_wrlock(&r->lock);
    size_t at = 0;
    stype *t = find(r, str_c(type), &at);
    int rc = 0;
    if (!t) {
        stype **g = realloc(r->types, (r->ntypes + 1) * sizeof *g);
        if (g) r->types = g;
        if (!g || !(t = calloc(1, sizeof *t)) || !(t->name = strdup(type))) {
            free(t);
            rc = FACTUM_ENOMEM;
            goto out;
        }
        memmove(&r->types[at + 1], &r->types[at], (r->ntypes - at) * sizeof *g);
        r->types[at] = t, r->ntypes++;
    }
    version *v = ver == t->nv + 1 ? realloc(t->v, (t->nv + 1) * sizeof *v) : NULL;
    if (!v) {
        rc = ver == t->nv + 1 ? FACTUM_ENOMEM : FACTUM_ECORRUPT;
        goto out;
    }
    t->v = v;
    t->v[t->nv++] = (version){s, compat, position, NULL};
    t->mode = mode;
    s = NULL;
out:
    atomic_store(&r->published, r->ntypes);
    pthread_rwlock_unlock(&r->lock);
    schema_free(s);
    return rc;
}

static void reg_free(void *p) {
    schema_registry *r = p;
    for (size_t i = 0; i < r->ntypes; i++) {
        for (uint32_t j = 0; j < r->types[i]->nv; j++)
            schema_free(r->types[i]->v[j].s), upcast_free(r->types[i]->v[j].up);
        free(r->types[i]->v);
        free(r->types[i]->name);
        free(r->types[i]);
    }
    free(r->types);
    free(r->renames);
    pthread_rwlock_destroy(&r->lock);
    pthread_mutex_destroy(&r->put_mu);
    free(r);
}

/* ---- the append check (any appending thread) ---- */

/* Percent-decoded s equals name. */
static bool decoded_is(factum_str_t s, factum_str_t name) {
    size_t j = 0;
    for (size_t i = 0; i < s.len; i++, j++) {
        char ch = s.ptr[i];
        if (ch == '%' && i + 2 < s.len) {
            char hex[3] = {s.ptr[i + 1], s.ptr[i + 2], 0};
            ch = (char)strtol(hex, NULL, 16), i += 2;
        }
        if (j >= name.len || name.ptr[j] != ch) return false;
    }
    return j == name.len;
}

/* The version an event names in its "dataschema" extension (…/schemas/TYPE/versions/N), or the
   latest. 0 or FACTUM_EBADEVENT. */
static int event_version(const stype *t, const factum_event_t *e, size_t i, uint32_t *out, factum_error_t *err) {
    *out = t->nv;
    json_iter_t it;
    factum_str_t k, v;
    int kind;
    json_iter_init_members(&it, e->extensions);
    while (json_iter_member(&it, &k, &v, &kind) == 1) {
        if (!json_key_is(k, "dataschema")) continue;
        buf_t uri = {0};
        if (kind != JSON_STRING || json_unescape(v, &uri))
            return buf_free(&uri), err_set(err, FACTUM_EBADEVENT, "event %zu: dataschema must be a string", i);
        factum_str_t u = {uri.ptr ? uri.ptr : "", uri.len};
        const char *vs = NULL, *ts = NULL;
        for (size_t j = 0; j + 10 <= u.len; j++)
            if (!memcmp(u.ptr + j, "/versions/", 10)) vs = u.ptr + j;
        for (const char *p = u.ptr; vs && p + 8 <= vs; p++)
            if (!memcmp(p, "schemas/", 8) && (p == u.ptr || p[-1] == '/')) ts = p + 8;
        uint64_t n = 0;
        bool ok = vs && ts && decoded_is((factum_str_t){ts, (size_t)(vs - ts)}, e->type) &&
                  str_u64((factum_str_t){vs + 10, (size_t)(u.ptr + u.len - vs - 10)}, &n) && n >= 1 && n <= t->nv;
        int rc = ok ? 0
                    : err_set(err, FACTUM_EBADEVENT,
                              "event %zu: dataschema \"%.*s\" names no registered version of %s's schema "
                              "(…/schemas/%s/versions/N, N from 1 to %u)",
                              i, (int)MIN(u.len, 100), u.ptr, t->name, t->name, t->nv);
        buf_free(&uri);
        *out = (uint32_t)n;
        return rc;
    }
    return 0;
}

static int reg_check(void *ctx, factum_str_t stream, const factum_event_t *ev, size_t n, factum_error_t *err) {
    schema_registry *r = ctx;
    if (!atomic_load_explicit(&r->published, memory_order_relaxed) || (stream.len && stream.ptr[0] == '$')) return 0;
    int rc = 0;
    size_t bad = 0, first_bad = 0;
    uint32_t first_ver = 0;
    schema_report rep = {0};
    char tag[FACTUM_MAX_ATTRIBUTE * 6 + 64];
    pthread_rwlock_rdlock(&r->lock);
    for (size_t i = 0; i < n && !rc; i++) {
        stype *t = find(r, ev[i].type, NULL);
        uint32_t ver;
        if (!t || t->mode == SCHEMA_MODE_OFF || (rc = event_version(t, &ev[i], i, &ver, err))) continue;
        factum_str_t data = ev[i].data_format == FACTUM_DATA_NONE ? str_c("null") : ev[i].data;
        bool enforce = t->mode == SCHEMA_MODE_ENFORCE;
        buf_t tb = {0};
        buf_printf(&tb, "\"event\":%zu,\"type\":", i);
        json_escape(&tb, t->name, strlen(t->name));
        buf_printf(&tb, ",\"version\":%u,", ver);
        snprintf(tag, sizeof tag, "%.*s", (int)tb.len, tb.ptr ? tb.ptr : "");
        buf_free(&tb);
        rep.tag = tag;
        bool ok = ev[i].data_format == FACTUM_DATA_BINARY
                      ? false
                      : schema_validate(t->v[ver - 1].s, data, enforce ? &rep : NULL);
        if (ok) continue;
        if (!enforce) {
            atomic_fetch_add_explicit(&t->warned, 1, memory_order_relaxed);
            continue;
        }
        atomic_fetch_add_explicit(&t->refused, 1, memory_order_relaxed);
        if (ev[i].data_format == FACTUM_DATA_BINARY) {
            if (!rep.count++) snprintf(rep.first, sizeof rep.first, ": type: the data is binary, not JSON");
            buf_printf(&rep.json, "%s{%s\"pointer\":\"\",\"keyword\":\"type\",\"message\":\"the data is binary\"}",
                       rep.json.len ? "," : "", tag);
        }
        if (!bad++) first_bad = i, first_ver = ver;
    }
    const char *first_type = bad ? ev[first_bad].type.ptr : "";
    int first_type_len = bad ? (int)MIN(ev[first_bad].type.len, 100) : 0;
    pthread_rwlock_unlock(&r->lock);
    last_violations[0] = last_message[0] = 0;
    if (!rc && bad) {
        size_t len = rep.json.len;
        while (len >= sizeof last_violations) { /* whole elements only */
            char *cut = memrchr(rep.json.ptr, '{', len);
            len = cut && cut > rep.json.ptr ? (size_t)(cut - rep.json.ptr - 1) : 0;
        }
        memcpy(last_violations, rep.json.ptr ? rep.json.ptr : "", len);
        last_violations[len] = 0;
        rc = err_set(err, FACTUM_ESCHEMA, "event %zu (%.*s, version %u) does not match its schema: %s%s", first_bad,
                     first_type_len, first_type, first_ver, rep.first[0] == ':' ? "(data)" : "", rep.first);
        if (rep.count > 1 && err)
            snprintf(err->message + strlen(err->message), sizeof err->message - strlen(err->message),
                     " (%zu violations in %zu events)", rep.count, bad);
        if (err) snprintf(last_message, sizeof last_message, "%s", err->message);
    }
    schema_report_free(&rep);
    return rc;
}

/* ---- upcasting (registration, and the read transform on any reading thread) ---- */

/* Type renames: the graph whose edges are r->renames (callers hold the lock). It has no cycle. */

/* Whether `to` is `from` or leads to it through renames: a walk over the types reached. */
static bool rename_cycle(const schema_registry *r, const char *from, const char *to) {
    size_t n = atomic_load(&r->nrenames), reached = 1;
    const char **names = calloc(n + 1, sizeof *names);
    if (!names) return true; /* out of memory: refuse rather than risk a cycle */
    names[0] = to;
    bool cycle = false;
    for (size_t i = 0; i < reached && !cycle; i++) {
        cycle = !strcmp(names[i], from);
        for (size_t e = 0; e < n && !cycle; e++) {
            if (strcmp(r->renames[e].from, names[i])) continue;
            bool seen = false;
            for (size_t k = 0; k < reached && !seen; k++)
                seen = !strcmp(names[k], r->renames[e].to);
            if (!seen && reached <= n) names[reached++] = r->renames[e].to;
        }
    }
    free(names);
    return cycle;
}

/* The longest chain of renames ending (in) or starting (!in) with rename e; m memoizes (0: not
   yet). The graph has no cycle, so this ends. */
static int chain_len(const struct type_rename *g, size_t n, size_t e, bool in, int *m) {
    if (m[e]) return m[e];
    int best = 0;
    for (size_t j = 0; j < n; j++)
        if (!strcmp(in ? g[j].to : g[j].from, in ? g[e].from : g[e].to)) best = MAX(best, chain_len(g, n, j, in, m));
    return m[e] = best + 1;
}

/* How many renames the longest chain through a new rename from -> to would have. */
static int chain_through(const schema_registry *r, const char *from, const char *to) {
    size_t n = atomic_load(&r->nrenames);
    int *m = calloc(2 * n + 1, sizeof *m), before = 0, after = 0;
    if (!m) return SCHEMA_MAX_RENAMES + 1; /* out of memory: refuse */
    for (size_t e = 0; e < n; e++) {
        if (!strcmp(r->renames[e].to, from)) before = MAX(before, chain_len(r->renames, n, e, true, m));
        if (!strcmp(r->renames[e].from, to)) after = MAX(after, chain_len(r->renames, n, e, false, m + n));
    }
    free(m);
    return before + 1 + after;
}

/* Checks steps for version ver of type against the registry: 0 and *out, or an error. */
static int upcast_decide(schema_registry *r, const char *type, uint32_t ver, factum_str_t doc, bool fresh, upcast **out,
                         factum_error_t *err) {
    pthread_rwlock_rdlock(&r->lock);
    stype *t = find(r, str_c(type), NULL);
    int rc = 0;
    if (!t || ver < 1 || ver > t->nv)
        rc = err_set(err, FACTUM_ENOTFOUND, "%s has no schema version %u", type, ver);
    else if (ver == 1)
        rc = err_set(err, FACTUM_EINVAL, "version 1 has nothing to upcast from");
    else if (t->v[ver - 1].up)
        rc = err_set(err, FACTUM_ECONFLICT, "%s version %u has its upcast already", type, ver);
    else if (!(rc = upcast_parse(doc, t->v[ver - 2].s, out, err))) {
        const char *to = upcast_new_type(*out, NULL);
        int len = 0;
        if (to && rename_cycle(r, type, to))
            rc = err_set(err, FACTUM_EINVAL, "renaming %s to %s closes a cycle of type renames", type, to);
        else if (to && fresh && (len = chain_through(r, type, to)) > SCHEMA_MAX_RENAMES) /* replay takes what was */
            rc = err_set(err, FACTUM_ETOOBIG, "renaming %s to %s makes a chain of %d type renames, the limit is %d",
                         type, to, len, SCHEMA_MAX_RENAMES);
        if (rc) upcast_free(*out), *out = NULL;
    }
    pthread_rwlock_unlock(&r->lock);
    return rc;
}

static void upcast_apply_to(schema_registry *r, const char *type, uint32_t ver, upcast *u) {
    pthread_rwlock_wrlock(&r->lock);
    stype *t = find(r, str_c(type), NULL);
    const char *to = upcast_new_type(u, NULL);
    size_t nr = atomic_load(&r->nrenames);
    struct type_rename *g = to ? realloc(r->renames, (nr + 1) * sizeof *g) : NULL;
    if (g) r->renames = g;
    if (t && ver >= 2 && ver <= t->nv && !t->v[ver - 1].up && (!to || g)) {
        t->v[ver - 1].up = u;
        if (to) r->renames[nr] = (struct type_rename){t->name, to}, atomic_store(&r->nrenames, nr + 1);
        u = NULL, atomic_fetch_add(&r->upcasts, 1);
    }
    pthread_rwlock_unlock(&r->lock);
    upcast_free(u);
}

static int replay_upcast(schema_registry *r, const factum_event_t *e, factum_error_t *err) {
    buf_t type = {0};
    uint64_t ver = 0;
    factum_str_t doc;
    int kind;
    upcast *u = NULL;
    int rc = json_member_string(e->data, "type", &type) && json_member_u64(e->data, "version", &ver) &&
                     json_member(e->data, "steps", &doc, &kind) && ver <= SCHEMA_MAX_VERSIONS
                 ? upcast_decide(r, type.ptr, (uint32_t)ver, doc, false, &u, err)
                 : err_set(err, FACTUM_EINVAL, "an UpcastDefined record lacks a member");
    if (!rc) upcast_apply_to(r, type.ptr, (uint32_t)ver, u);
    buf_free(&type);
    return rc;
}

int schema_registry_upcast(schema_registry *r, const char *type, uint32_t ver, factum_str_t doc, factum_error_t *err) {
    upcast *u = NULL;
    pthread_mutex_lock(&r->put_mu);
    int rc = upcast_decide(r, type, ver, doc, true, &u, err);
    if (!rc) {
        buf_t d = {0};
        buf_append(&d, "{\"type\":", 8);
        json_escape(&d, type, strlen(type));
        buf_printf(&d, ",\"version\":%u,\"steps\":", ver);
        buf_append(&d, doc.ptr, doc.len);
        rc = buf_append(&d, "}", 1) ? err_set(err, FACTUM_ENOMEM, "out of memory") : 0;
        factum_event_t e = {.type = str_c("UpcastDefined"), .data = {d.ptr, d.len}, .data_format = FACTUM_DATA_JSON};
        factum_append_result_t res;
        if (!rc) rc = factum_append(r->db, str_c(SCHEMAS_STREAM), FACTUM_EXPECT_ANY, &e, 1, &res, err);
        if (!rc) atomic_store(&r->next_rev, res.last_revision + 1);
        buf_free(&d);
    }
    if (!rc)
        upcast_apply_to(r, type, ver, u);
    else
        upcast_free(u);
    pthread_mutex_unlock(&r->put_mu);
    return rc;
}

/* The version an event was stored as: its dataschema's, or the latest registered before it. */
static uint32_t stored_version(const stype *t, const factum_event_t *e) {
    uint32_t v;
    json_iter_t it;
    factum_str_t k, val;
    int kind;
    json_iter_init_members(&it, e->extensions);
    while (json_iter_member(&it, &k, &val, &kind) == 1)
        if (json_key_is(k, "dataschema")) return event_version(t, e, 0, &v, NULL) ? t->nv : v;
    for (v = t->nv; v > 1 && t->v[v - 1].position > e->position; v--)
        ;
    return v;
}

/* The extension members without "dataschema" (and ours), then the upcast's own: the schema the
   data now has, and what the event was stored as (its type only when that changed). */
static void upcast_extensions(const factum_event_t *e, const char *type, uint32_t ver, uint32_t from,
                              const char *stored_type, buf_t *b) {
    json_iter_t it;
    factum_str_t k, v;
    int kind;
    json_iter_init_members(&it, e->extensions);
    while (json_iter_member(&it, &k, &v, &kind) == 1) {
        if (json_key_is(k, "dataschema") || json_key_is(k, "storedversion") || json_key_is(k, "storedtype")) continue;
        buf_append(b, k.ptr, k.len), buf_append(b, ":", 1), buf_append(b, v.ptr, v.len), buf_append(b, ",", 1);
    }
    buf_printf(b, "\"dataschema\":\"/schemas/");
    buf_t enc = {0};
    buf_url_encode(&enc, type, strlen(type));
    buf_printf(b, "%.*s/versions/%u\",\"storedversion\":%u", (int)enc.len, enc.ptr ? enc.ptr : "", ver, from);
    buf_free(&enc);
    if (stored_type) buf_printf(b, ",\"storedtype\":"), json_escape(b, stored_type, strlen(stored_type));
}

/*
 * Upcasts an event stored as version `from` of t (callers hold the lock): t's steps from+1 on,
 * until one renames the type; the renamed event is then version N of the new type (the step's
 * "version", 1 by default), and that type's steps N+1 on apply, and so on across renames. The
 * chain stops at a type's latest version, or at a rename into a type that has no version N (the
 * data stays as the last steps made it). 1 with *out and *block filled, 0 if no step applies,
 * or an error (the event is then returned as stored).
 */
static int upcast_chain(const schema_registry *r, const stype *t, uint32_t from, const factum_event_t *in,
                        factum_event_t *out, char **block) {
    const stype *at = t;       /* the type whose steps apply */
    const char *type = NULL;   /* the event's type as read, once renamed */
    uint32_t v = from, ds = 0; /* at's version the data has reached; with a stop, the schema it has */
    const stype *ds_type = NULL;
    bool steps = false;
    int rc = 0, renames = 0;
    buf_t cur = {0}, next = {0}, b = {0};
    buf_append(&cur, in->data.ptr, in->data.len);
    while (at && !rc) {
        const char *to = NULL;
        uint32_t enter = 1;
        for (; v < at->nv && !to && !rc; v++) {
            const upcast *u = at->v[v].up; /* the steps into version v + 1 */
            if (!u) continue;
            steps = true, next.len = 0;
            rc = upcast_apply(u, (factum_str_t){cur.ptr, cur.len}, &next);
            buf_t x = cur;
            cur = next, next = x;
            to = upcast_new_type(u, &enter);
        }
        ds_type = at, ds = v;
        if (!to) break;
        type = to;
        const stype *nt = ++renames <= SCHEMA_MAX_RENAMES ? find(r, str_c(to), NULL) : NULL;
        if (!nt || nt->nv < enter) break; /* no schema of the new type to go on with */
        at = nt, v = enter, ds_type = nt, ds = nt->nv;
    }
    if (steps && !rc) {
        /* one block: data, then the type, then the extensions */
        const char *tname = type ? type : t->name;
        size_t tl = strlen(tname);
        buf_append(&b, cur.ptr, cur.len);
        buf_append(&b, tname, tl);
        size_t ext_at = b.len;
        upcast_extensions(in, ds_type->name, ds, from, type ? t->name : NULL, &b);
        if (b.ptr && !buf_append(&b, "", 1)) {
            *out = *in;
            out->data = (factum_str_t){b.ptr, cur.len};
            out->type = (factum_str_t){b.ptr + cur.len, tl};
            out->extensions = (factum_str_t){b.ptr + ext_at, b.len - 1 - ext_at};
            *block = b.ptr, b.ptr = NULL;
            rc = 1;
        }
    }
    buf_free(&cur), buf_free(&next), buf_free(&b);
    return steps ? rc : 0;
}

static int reg_transform(void *ctx, const factum_event_t *in, factum_event_t *out, char **block) {
    schema_registry *r = ctx;
    if (!atomic_load_explicit(&r->upcasts, memory_order_relaxed) || (in->stream.len && in->stream.ptr[0] == '$') ||
        in->data_format != FACTUM_DATA_JSON)
        return 0;
    pthread_rwlock_rdlock(&r->lock);
    stype *t = find(r, in->type, NULL);
    int rc = t ? upcast_chain(r, t, stored_version(t, in), in, out, block) : 0;
    pthread_rwlock_unlock(&r->lock);
    return rc == 1;
}

/* The read-types hook (factum_set_read_types): the types whose events may read as `type`,
   following rename steps backward from it. 0 when no rename goes to or from it. */
static size_t reg_read_types(void *ctx, factum_str_t type, factum_str_t *stored, size_t cap) {
    schema_registry *r = ctx;
    if (!atomic_load_explicit(&r->nrenames, memory_order_acquire)) return 0;
    pthread_rwlock_rdlock(&r->lock);
    size_t nr = atomic_load(&r->nrenames), n = 1;
    bool renamed = false;
    for (size_t i = 0; i < nr && !renamed; i++)
        renamed = str_eq(str_c(r->renames[i].from), type) || str_eq(str_c(r->renames[i].to), type);
    /* A breadth-first walk over the renames: each pass adds the types renamed to one in the set. The
       set is kept in stored while it fits; past cap only counted (then the caller asks again). */
    factum_str_t *set = renamed ? calloc(nr + 1, sizeof *set) : NULL;
    bool ok = set != NULL; /* out of memory: filter as stored */
    if (ok) {
        set[0] = type;
        for (size_t i = 0; i < n; i++)
            for (size_t j = 0; j < nr; j++) {
                if (!str_eq(str_c(r->renames[j].to), set[i])) continue;
                factum_str_t from = str_c(r->renames[j].from);
                bool seen = false;
                for (size_t k = 0; k < n && !seen; k++)
                    seen = str_eq(set[k], from);
                if (!seen) set[n++] = from;
            }
        if (n <= cap) memcpy(stored, set, n * sizeof *set);
    }
    free(set);
    pthread_rwlock_unlock(&r->lock);
    return ok ? n : 0;
}

/* ---- replay and open ---- */

/* Reads a SchemaRegistered record's data: 0, or FACTUM_EINVAL naming what is wrong. */
static int parse_record(factum_str_t d, buf_t *type, uint64_t *ver, int *compat, int *mode, factum_str_t *doc,
                        factum_error_t *err) {
    buf_t c = {0}, m = {0};
    int kind;
    bool ok = json_member_string(d, "type", type) && json_member_u64(d, "version", ver) &&
              json_member_string(d, "compatibility", &c) && json_member_string(d, "mode", &m) &&
              json_member(d, "schema", doc, &kind) && (*compat = schema_compat_parse(c.ptr)) >= 0 &&
              (*mode = schema_mode_parse(m.ptr)) >= 0 && *ver >= 1 && *ver <= SCHEMA_MAX_VERSIONS;
    buf_free(&c), buf_free(&m);
    return ok ? 0 : err_set(err, FACTUM_EINVAL, "a SchemaRegistered record lacks a member or has a bad one");
}

/* Applies the records of $schemas from revision `from` on; put_mu held (or the registry not yet
   installed). */
static int replay(schema_registry *r, uint64_t from, factum_error_t *err) {
    for (;;) {
        factum_result_t *res;
        int rc = factum_read_stream(r->db, str_c(SCHEMAS_STREAM), from, REPLAY_PAGE, 0, &res, err);
        if (rc == FACTUM_ENOTFOUND) return 0;
        if (rc) return rc;
        size_t n = factum_result_count(res);
        for (size_t i = 0; i < n && !rc; i++) {
            const factum_event_t *e = factum_result_event(res, i);
            atomic_store(&r->next_rev, e->revision + 1);
            if (str_eq(e->type, str_c("UpcastDefined"))) {
                rc = replay_upcast(r, e, err);
                continue;
            }
            if (!str_eq(e->type, str_c("SchemaRegistered"))) continue;
            buf_t type = {0};
            uint64_t ver;
            int compat = 0, mode = 0;
            factum_str_t doc;
            schema_t *s = NULL;
            rc = parse_record(e->data, &type, &ver, &compat, &mode, &doc, err);
            if (!rc) rc = schema_compile(doc, &s, err);
            if (!rc) rc = reg_apply(r, type.ptr, (uint32_t)ver, compat, mode, s, e->position);
            if (rc) {
                char why[sizeof err->message];
                snprintf(why, sizeof why, "%s", err ? err->message : "");
                err_set(err, rc, "%s revision %llu: %s", SCHEMAS_STREAM, (unsigned long long)e->revision, why);
            }
            buf_free(&type);
        }
        from = factum_result_next(res);
        factum_result_free(res);
        if (rc || n < REPLAY_PAGE) return rc;
    }
}

int schema_registry_open(factum_t *db, schema_registry **out, factum_error_t *err) {
    schema_registry *r = calloc(1, sizeof *r);
    if (!r) return err_set(err, FACTUM_ENOMEM, "out of memory");
    r->db = db;
    pthread_rwlockattr_t attr; /* a registration is not starved by a stream of appends */
    pthread_rwlockattr_init(&attr);
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&r->lock, &attr);
    pthread_rwlockattr_destroy(&attr);
    pthread_mutex_init(&r->put_mu, NULL);
    int rc = replay(r, 0, err);
    if (rc) {
        reg_free(r);
        return rc;
    }
    factum_set_append_check(db, reg_check, r, reg_free);
    factum_set_read_transform(db, reg_transform, r);
    factum_set_read_types(db, reg_read_types, r);
    *out = r;
    return 0;
}

int schema_registry_refresh(schema_registry *r, factum_error_t *err) {
    int64_t last = factum_stream_revision(r->db, str_c(SCHEMAS_STREAM));
    if (last < 0 || (uint64_t)last < atomic_load(&r->next_rev)) return 0;
    if (pthread_mutex_trylock(&r->put_mu)) return 0; /* a put is deciding and applying: later */
    int rc = replay(r, atomic_load(&r->next_rev), err);
    pthread_mutex_unlock(&r->put_mu);
    return rc;
}

int factum_schemas_open(factum_t *db, factum_error_t *err) {
    schema_registry *r;
    return schema_registry_open(db, &r, err);
}

/* ---- checks of stored events, registration ---- */

static void check_event(const schema_t *s, const factum_event_t *e, schema_check *out) {
    schema_report rep = {0};
    factum_str_t data = e->data_format == FACTUM_DATA_NONE ? str_c("null") : e->data;
    bool listing = out->failing < SCHEMA_CHECK_LISTED;
    out->checked++;
    if (e->data_format != FACTUM_DATA_BINARY && schema_validate(s, data, listing ? &rep : NULL)) return;
    if (out->failing++ < SCHEMA_CHECK_LISTED) {
        if (out->failures.len) buf_append(&out->failures, ",", 1);
        buf_append(&out->failures, "{\"stream\":", 10);
        json_escape(&out->failures, e->stream.ptr, e->stream.len);
        buf_printf(&out->failures, ",\"revision\":%llu,\"position\":%llu,\"violations\":[%.*s]}",
                   (unsigned long long)e->revision, (unsigned long long)e->position, (int)rep.json.len,
                   rep.json.ptr ? rep.json.ptr : "");
    }
    schema_report_free(&rep);
}

static int check_stored(schema_registry *r, const char *type, const schema_t *s, schema_check *out,
                        factum_error_t *err) {
    factum_query_t q = {.from = 0, .limit = REPLAY_PAGE, .type = str_c(type)};
    for (;;) {
        factum_result_t *res;
        int rc = factum_read_all(r->db, &q, &res, err);
        if (rc == FACTUM_ENOTFOUND) return 0;
        if (rc) return rc;
        size_t n = factum_result_count(res), i = 0;
        for (; i < n && out->checked < SCHEMA_CHECK_MAX; i++)
            check_event(s, factum_result_event(res, i), out);
        q.from = factum_result_next(res);
        factum_result_free(res);
        if (out->checked >= SCHEMA_CHECK_MAX) { /* one more of the type stored: it was a sample */
            out->sampled = i < n;
            if (!out->sampled && n && q.from != FACTUM_END) {
                q.limit = 1;
                if ((rc = factum_read_all(r->db, &q, &res, err)) && rc != FACTUM_ENOTFOUND) return rc;
                out->sampled = !rc && factum_result_count(res) > 0;
                if (!rc) factum_result_free(res);
            }
            return 0;
        }
        if (q.from == FACTUM_END || !n) return 0;
    }
}

int schema_registry_check(schema_registry *r, const char *type, factum_str_t doc, schema_check *out,
                          factum_error_t *err) {
    schema_t *s;
    int rc = schema_compile(doc, &s, err);
    if (!rc) rc = check_stored(r, type, s, out, err);
    schema_free(s);
    return rc;
}

static int record(schema_registry *r, const schema_put *p, uint64_t *position, factum_error_t *err) {
    buf_t d = {0};
    buf_append(&d, "{\"type\":", 8);
    json_escape(&d, p->type, strlen(p->type));
    buf_printf(&d, ",\"version\":%u,\"compatibility\":\"%s\",\"mode\":\"%s\",\"schema\":", p->version,
               schema_compat_name(p->compat), schema_mode_name(p->mode));
    buf_append(&d, p->doc.ptr, p->doc.len);
    int rc = buf_append(&d, "}", 1) ? err_set(err, FACTUM_ENOMEM, "out of memory") : 0;
    factum_event_t e = {.type = str_c("SchemaRegistered"), .data = {d.ptr, d.len}, .data_format = FACTUM_DATA_JSON};
    factum_append_result_t res;
    if (!rc) rc = factum_append(r->db, str_c(SCHEMAS_STREAM), FACTUM_EXPECT_ANY, &e, 1, &res, err);
    if (!rc) *position = res.last_position, atomic_store(&r->next_rev, res.last_revision + 1);
    buf_free(&d);
    return rc;
}

int schema_registry_put(schema_registry *r, const schema_put *p, schema_check *check, factum_error_t *err) {
    size_t tl = strlen(p->type);
    if (!tl || tl > FACTUM_MAX_ATTRIBUTE || !text_valid(p->type, tl))
        return err_set(err, FACTUM_EINVAL, "an event type is 1 to %d bytes of UTF-8 without control characters",
                       FACTUM_MAX_ATTRIBUTE);
    if (p->compat < 0 || p->compat > SCHEMA_COMPAT_NONE || p->mode < 0 || p->mode > SCHEMA_MODE_ENFORCE)
        return err_set(err, FACTUM_EINVAL, "unknown compatibility or mode");
    schema_t *s;
    int rc = schema_compile(p->doc, &s, err);
    if (rc) return rc;
    pthread_mutex_lock(&r->put_mu);
    pthread_rwlock_rdlock(&r->lock);
    stype *t = find(r, str_c(p->type), NULL);
    uint32_t next = t ? t->nv + 1 : 1;
    size_t ntypes = r->ntypes;
    const schema_t *prev = t && t->nv ? t->v[t->nv - 1].s : NULL; /* lives as long as r; put_mu held */
    pthread_rwlock_unlock(&r->lock);
    if (p->version != next)
        rc = err_set(err, FACTUM_ECONFLICT, "%s: version %u is not the next one: register version %u", p->type,
                     p->version, next);
    else if (next == 1 && ntypes >= SCHEMA_MAX_TYPES)
        rc = err_set(err, FACTUM_ETOOBIG, "%zu types have a schema, the limit is %d", ntypes, SCHEMA_MAX_TYPES);
    else if (next > SCHEMA_MAX_VERSIONS)
        rc = err_set(err, FACTUM_ETOOBIG, "%s has %d versions, the limit", p->type, SCHEMA_MAX_VERSIONS);
    bool must_pass = p->compat == SCHEMA_COMPAT_BACKWARD || p->compat == SCHEMA_COMPAT_FULL;
    bool forward = p->compat == SCHEMA_COMPAT_FORWARD || p->compat == SCHEMA_COMPAT_FULL;
    if (!rc && (must_pass || p->dry_run)) rc = check_stored(r, p->type, s, check, err);
    if (!rc && (forward || p->dry_run) && prev)
        check->forward_ran = true, schema_forward_compatible(s, prev, &check->forward);
    size_t differ = check->forward.count;
    if (!rc && must_pass && check->failing && !p->dry_run)
        rc = err_set(err, FACTUM_ECONFLICT,
                     "%llu of %llu stored %s events fail version %u, which declares %s compatibility%s",
                     (unsigned long long)check->failing, (unsigned long long)check->checked, p->type, p->version,
                     schema_compat_name(p->compat), forward && differ ? "; nor is it forward compatible" : "");
    else if (!rc && forward && differ && !p->dry_run)
        rc = err_set(err, FACTUM_ECONFLICT,
                     "%s version %u is not forward compatible with version %u: %s (%zu differences)", p->type,
                     p->version, p->version - 1, check->forward.first, differ);
    uint64_t position = 0;
    if (!rc && !p->dry_run && !(rc = record(r, p, &position, err))) {
        rc = reg_apply(r, p->type, p->version, p->compat, p->mode, s, position);
        s = NULL;
        if (rc) err_set(err, rc, "recorded but not applied: %s", factum_strerror(rc));
    }
    pthread_mutex_unlock(&r->put_mu);
    schema_free(s);
    return rc;
}

/* ---- what it holds ---- */

static void type_json(const stype *t, bool full, buf_t *out) {
    buf_append(out, "{\"type\":", 8);
    json_escape(out, t->name, strlen(t->name));
    buf_printf(out, ",\"mode\":\"%s\",\"latest\":%u,\"warned\":%llu,\"refused\":%llu", schema_mode_name(t->mode), t->nv,
               (unsigned long long)atomic_load(&t->warned), (unsigned long long)atomic_load(&t->refused));
    if (full) {
        buf_append(out, ",\"versions\":[", 13);
        for (uint32_t i = 0; i < t->nv; i++)
            buf_printf(out, "%s{\"version\":%u,\"compatibility\":\"%s\"%s%.*s}", i ? "," : "", i + 1,
                       schema_compat_name(t->v[i].compat), t->v[i].up ? ",\"upcast\":" : "",
                       t->v[i].up ? (int)upcast_text(t->v[i].up).len : 0,
                       t->v[i].up ? upcast_text(t->v[i].up).ptr : "");
        buf_append(out, "]", 1);
    }
    buf_append(out, "}", 1);
}

void schema_registry_list_json(schema_registry *r, buf_t *out) {
    pthread_rwlock_rdlock(&r->lock);
    buf_append(out, "[", 1);
    for (size_t i = 0; i < r->ntypes; i++) {
        if (i) buf_append(out, ",", 1);
        type_json(r->types[i], false, out);
    }
    buf_append(out, "]", 1);
    pthread_rwlock_unlock(&r->lock);
}

int schema_registry_type_json(schema_registry *r, const char *type, buf_t *out) {
    pthread_rwlock_rdlock(&r->lock);
    stype *t = find(r, str_c(type), NULL);
    if (t) type_json(t, true, out);
    pthread_rwlock_unlock(&r->lock);
    return t ? 0 : FACTUM_ENOTFOUND;
}

int schema_registry_version_json(schema_registry *r, const char *type, uint32_t ver, buf_t *out) {
    pthread_rwlock_rdlock(&r->lock);
    stype *t = find(r, str_c(type), NULL);
    bool there = t && ver >= 1 && ver <= t->nv;
    if (there) {
        factum_str_t doc = schema_text(t->v[ver - 1].s);
        buf_append(out, doc.ptr, doc.len);
    }
    pthread_rwlock_unlock(&r->lock);
    return there ? 0 : FACTUM_ENOTFOUND;
}

void schema_registry_each(schema_registry *r,
                          void (*fn)(void *ctx, const char *type, uint64_t warned, uint64_t refused), void *ctx) {
    pthread_rwlock_rdlock(&r->lock);
    for (size_t i = 0; i < r->ntypes; i++)
        fn(ctx, r->types[i]->name, atomic_load(&r->types[i]->warned), atomic_load(&r->types[i]->refused));
    pthread_rwlock_unlock(&r->lock);
}
