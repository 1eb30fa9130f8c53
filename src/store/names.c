/*
 * names.c — listings of streams and categories (factum_list_streams, factum_list_categories),
 * served from the index's stream names (index.h): each call is a few ordered lookups per
 * memtable and run, never a scan of the log, so it pages through millions of streams.
 */
#include "store.h"

#include "../base/json.h"

#include <stdio.h>
#include <stdlib.h>

struct factum_names {
    size_t count;
    index_name *v; /* names point into bytes */
    buf_t bytes;
};

size_t factum_names_count(const factum_names_t *l) { return l ? l->count : 0; }
factum_str_t factum_names_name(const factum_names_t *l, size_t i) { return l->v[i].name; }
uint64_t factum_names_position(const factum_names_t *l, size_t i) { return l->v[i].pos; }

void factum_names_free(factum_names_t *l) {
    if (!l) return;
    free(l->v);
    buf_free(&l->bytes);
    free(l);
}

/* Every stream name sorts below this: names are UTF-8, which never holds the byte 0xFF. */
#define PAST_ALL "\xff"

static int names_new(size_t limit, factum_names_t **out, factum_error_t *err) {
    if (limit < 1 || limit > FACTUM_MAX_LIST)
        return err_set(err, FACTUM_EINVAL, "limit must be 1 to %d (got %zu)", FACTUM_MAX_LIST, limit);
    factum_names_t *l = calloc(1, sizeof *l);
    if (!l || !(l->v = malloc(limit * sizeof *l->v))) {
        free(l);
        return err_set(err, FACTUM_ENOMEM, "out of memory listing names");
    }
    *out = l;
    return 0;
}

/* Appends a name (copied) to the listing; names point into bytes only once it is complete. */
static int names_add(factum_names_t *l, factum_str_t name, uint64_t pos) {
    size_t off = l->bytes.len;
    if (buf_append(&l->bytes, name.ptr, name.len)) return FACTUM_ENOMEM;
    l->v[l->count++] = (index_name){{(const char *)(uintptr_t)off, name.len}, pos};
    return 0;
}

static int names_done(factum_names_t *l, factum_names_t **out, factum_error_t *err, int rc) {
    if (rc) {
        factum_names_free(l);
        return err_set(err, rc, "out of memory listing names");
    }
    for (size_t i = 0; i < l->count; i++)
        l->v[i].name.ptr = l->bytes.ptr + (uintptr_t)l->v[i].name.ptr;
    *out = l;
    return 0;
}

/* The first name after `after` that starts with `prefix`: 1 and *name (in *tmp), or 0. */
static int first_after(factum_t *db, factum_str_t prefix, factum_str_t after, buf_t *tmp, index_name *name) {
    tmp->len = 0;
    return index_names(db->index, prefix, after, factum_head_position(db), 1, tmp, name) == 1;
}

int factum_list_streams(factum_t *db, factum_str_t prefix, factum_str_t after, size_t limit, int system,
                        factum_names_t **out, factum_error_t *err) {
    factum_names_t *l;
    int rc = names_new(limit, &l, err);
    if (rc) return rc;
    uint64_t durable = factum_head_position(db);
    index_name *page = malloc(limit * sizeof *page);
    buf_t tmp = {0}, skip = {0};
    if (!page) rc = FACTUM_ENOMEM;
    /* Without system streams, the names from "$" to "$\xff" are stepped over, not filtered one
       by one: a store can hold a system stream per user stream (snapshots). */
    while (!rc && l->count < limit) {
        tmp.len = 0;
        size_t n = index_names(db->index, prefix, after, durable, limit - l->count, &tmp, page);
        size_t i = 0;
        for (; i < n && !rc; i++) {
            if (!system && page[i].name.len && page[i].name.ptr[0] == '$') break;
            rc = names_add(l, page[i].name, page[i].pos);
        }
        if (rc || i == n) break; /* a short page is the end */
        skip.len = 0;
        rc = buf_append(&skip, "$" PAST_ALL, 2) ? FACTUM_ENOMEM : 0;
        after = (factum_str_t){skip.ptr, skip.len};
    }
    free(page);
    buf_free(&tmp);
    buf_free(&skip);
    return names_done(l, out, err, rc);
}

/*
 * A category's streams are the one named as the category and those named "CATEGORY-...": two
 * ranges of names, with others between them ("CATEGORY!x", "CATEGORYs-1"), so this looks at
 * the bare name first and then lists the prefix "CATEGORY-".
 */
int factum_list_category(factum_t *db, factum_str_t category, factum_str_t after, size_t limit, int system,
                         factum_names_t **out, factum_error_t *err) {
    factum_names_t *l;
    int rc = names_new(limit, &l, err);
    if (rc) return rc;
    buf_t tmp = {0}, dash = {0};
    index_name m;
    if (name_cmp(after, category) < 0 && (system || !category.len || category.ptr[0] != '$') &&
        first_after(db, category, after, &tmp, &m) && str_eq(m.name, category))
        rc = names_add(l, m.name, m.pos);
    if (!rc && (buf_append(&dash, category.ptr, category.len) || buf_append(&dash, "-", 1))) rc = FACTUM_ENOMEM;
    if (!rc && l->count < limit) {
        factum_names_t *rest;
        if ((rc = factum_list_streams(db, (factum_str_t){dash.ptr, dash.len}, after, limit - l->count, system, &rest,
                                      err))) {
            buf_free(&tmp);
            buf_free(&dash);
            factum_names_free(l);
            return rc;
        }
        for (size_t i = 0; i < rest->count && !rc; i++)
            rc = names_add(l, rest->v[i].name, rest->v[i].pos);
        factum_names_free(rest);
    }
    buf_free(&tmp);
    buf_free(&dash);
    return names_done(l, out, err, rc);
}

static factum_str_t category_of(factum_str_t name) {
    const char *dash = memchr(name.ptr, '-', name.len);
    return (factum_str_t){name.ptr, dash ? (size_t)(dash - name.ptr) : name.len};
}

/* Whether some stream name starts with `prefix`. */
static bool any_with_prefix(factum_t *db, factum_str_t prefix, buf_t *tmp) {
    index_name m;
    return first_after(db, prefix, (factum_str_t){"", 0}, tmp, &m);
}

static int set(buf_t *b, factum_str_t a, const char *tail, size_t tail_len) {
    b->len = 0;
    return buf_append(b, a.ptr, a.len) || buf_append(b, tail, tail_len) ? FACTUM_ENOMEM : 0;
}

/*
 * Categories in byte order, each once. After the last category `cur`, take the first name m
 * past it. If its category is not past `cur` (it is `cur`, as "cur-1", or one that `cur`
 * extends), all names up to "CATEGORY-\xff" share it: step over them. Otherwise the answer is
 * m's category c, unless a shorter category that c extends comes first: "c" (of "c-1") sorts
 * before "c!x" though the name "c!x" sorts before "c-1", because '!' < '-'. Only the characters
 * below '-' make this possible, so only those prefixes are looked at.
 */
int factum_list_categories(factum_t *db, factum_str_t after, size_t limit, int system, factum_names_t **out,
                           factum_error_t *err) {
    factum_names_t *l;
    int rc = names_new(limit, &l, err);
    if (rc) return rc;
    buf_t tmp = {0}, cur = {0}, from = {0}, c = {0}, probe = {0};
    if (!(rc = set(&cur, after, "", 0))) rc = set(&from, after, "", 0);
    index_name m;
    while (!rc && l->count < limit &&
           first_after(db, (factum_str_t){"", 0}, (factum_str_t){from.ptr, from.len}, &tmp, &m)) {
        if ((rc = set(&c, category_of(m.name), "", 0))) break;
        factum_str_t cs = {c.ptr, c.len}, curs = {cur.ptr, cur.len};
        if (!system && cs.len && cs.ptr[0] == '$') {
            rc = set(&from, (factum_str_t){"$", 1}, PAST_ALL, 1);
            continue;
        }
        if (cur.len && name_cmp(cs, curs) <= 0) {
            rc = set(&from, cs, "-" PAST_ALL, 2);
            continue;
        }
        for (size_t i = 1; i < cs.len && !rc; i++) {
            factum_str_t d = {cs.ptr, i};
            if ((unsigned char)cs.ptr[i] >= '-' || (cur.len && name_cmp(d, curs) <= 0)) continue;
            if ((rc = set(&probe, d, "-", 1))) break;
            if (any_with_prefix(db, (factum_str_t){probe.ptr, probe.len}, &tmp)) {
                cs = d;
                break;
            }
        }
        if (rc || (rc = names_add(l, cs, 0)) || (rc = set(&cur, cs, "", 0)) || (rc = set(&from, cs, "", 0))) break;
    }
    buf_free(&tmp);
    buf_free(&cur);
    buf_free(&from);
    buf_free(&c);
    buf_free(&probe);
    return names_done(l, out, err, rc);
}

size_t factum_stream_json(factum_t *db, factum_str_t stream, uint64_t first_position, char *buf, size_t cap) {
    factum_meta_t m;
    bool meta = factum_meta_get(db, stream, &m, NULL) == 0;
    buf_t b = {0};
    buf_printf(&b, "{\"stream\":");
    json_escape(&b, stream.ptr, stream.len);
    buf_printf(&b, ",\"first_position\":%llu,\"revision\":%lld,\"deleted\":%s,\"tombstone\":%s}",
               (unsigned long long)first_position, (long long)factum_stream_revision(db, stream),
               meta && m.deleted ? "true" : "false", meta && m.tombstone ? "true" : "false");
    if (meta) factum_meta_free(&m);
    size_t n = b.len;
    if (cap) {
        size_t k = MIN(n, cap - 1);
        if (k) memcpy(buf, b.ptr, k);
        buf[k] = 0;
    }
    buf_free(&b);
    return n;
}
