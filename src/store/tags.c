/*
 * tags.c — tags and tag queries, the store's side of dynamic consistency boundaries
 * (docs/dcb.md, tags.h).
 *
 * An event's tags live in its extension attribute `tags`, one string of tags separated by
 * single spaces, so the record format does not change and a factum that predates tags reads
 * them as an ordinary extension. Every event also has two implicit tags, "stream:" its stream
 * and "type:" its type. The writer adds one index entry per tag (implicit ones included) under
 * the tag index (key tag 0): a posting list by position. A query's item is served by the
 * posting list of one of its tags (or, without tags, those of its types) and every hit is
 * checked against the record, which also weeds out hash collisions. The writer checks a
 * conditional append's query here, at commit time (tags_condition_first).
 */
#include "tags.h"

#include "../base/json.h"

#include <stdio.h>
#include <stdlib.h>

static_assert(FACTUM_MAX_TAG == 255, "the messages say 255");

static const factum_str_t implicit[] = {{"stream:", 7}, {"type:", 5}};

/* ---- tags of an event ---- */

/* The next space-separated tag of *rest; false at the end. Empty pieces (stored by a factum
   that did not check tags) are skipped. */
bool tags_next(factum_str_t *rest, factum_str_t *tag) {
    while (rest->len && rest->ptr[0] == ' ')
        rest->ptr++, rest->len--;
    if (!rest->len) return false;
    const char *sp = memchr(rest->ptr, ' ', rest->len);
    size_t n = sp ? (size_t)(sp - rest->ptr) : rest->len;
    *tag = (factum_str_t){rest->ptr, n};
    rest->ptr += n, rest->len -= n;
    return true;
}

factum_str_t factum_event_tags(const factum_event_t *e) {
    if (!e->extensions.len) return (factum_str_t){"", 0};
    json_iter_t it;
    factum_str_t key, val;
    int kind;
    json_iter_init_members(&it, e->extensions);
    while (json_iter_member(&it, &key, &val, &kind) == 1)
        if (kind == JSON_STRING && json_key_is(key, "tags")) return (factum_str_t){val.ptr + 1, val.len - 2};
    return (factum_str_t){"", 0};
}

/* Why a tag is not one a client may give, or NULL. */
static const char *tag_wrong(factum_str_t t, bool implicit_ok) {
    if (t.len == 0) return "a tag is empty";
    if (t.len > FACTUM_MAX_TAG) return "a tag is at most 255 bytes";
    if (!text_valid(t.ptr, t.len) || memchr(t.ptr, '"', t.len) || memchr(t.ptr, '\\', t.len) ||
        memchr(t.ptr, ' ', t.len))
        return "a tag must be UTF-8 without spaces, control characters, '\"' or '\\'";
    for (size_t i = 0; i < ARRAY_LEN(implicit) && !implicit_ok; i++)
        if (name_has_prefix(t, implicit[i])) return "tags starting with \"stream:\" or \"type:\" are implicit";
    return NULL;
}

int tags_check_members(factum_str_t ext, size_t i, factum_error_t *err) {
    if (!ext.len) return 0;
    json_iter_t it;
    factum_str_t key, val;
    int kind;
    json_iter_init_members(&it, ext);
    while (json_iter_member(&it, &key, &val, &kind) == 1) {
        if (!json_key_is(key, "tags")) continue;
        if (kind != JSON_STRING)
            return err_set(err, FACTUM_EBADEVENT, "event %zu: 'tags' must be a string of tags separated by spaces", i);
        factum_str_t all = {val.ptr + 1, val.len - 2}, rest = all, t;
        size_t n = 0;
        for (size_t k = 0; k + 1 < all.len; k++)
            if (all.ptr[k] == ' ' && all.ptr[k + 1] == ' ')
                return err_set(err, FACTUM_EBADEVENT, "event %zu: a tag is empty (two spaces in 'tags')", i);
        if (all.len && (all.ptr[0] == ' ' || all.ptr[all.len - 1] == ' '))
            return err_set(err, FACTUM_EBADEVENT, "event %zu: a tag is empty ('tags' starts or ends with a space)", i);
        while (tags_next(&rest, &t)) {
            const char *why = tag_wrong(t, false);
            if (why)
                return err_set(err, t.len > FACTUM_MAX_TAG ? FACTUM_ETOOBIG : FACTUM_EBADEVENT,
                               "event %zu: tag '%.*s%s': %s", i, (int)MIN(t.len, 64), t.ptr, t.len > 64 ? "..." : "",
                               why);
            if (++n > FACTUM_MAX_TAGS)
                return err_set(err, FACTUM_ETOOBIG, "event %zu: more than %d tags", i, FACTUM_MAX_TAGS);
            factum_str_t before = {all.ptr, (size_t)(t.ptr - all.ptr)}, u;
            while (tags_next(&before, &u))
                if (str_eq(u, t))
                    return err_set(err, FACTUM_EBADEVENT, "event %zu: tag '%.*s' appears twice", i, (int)MIN(t.len, 64),
                                   t.ptr);
        }
    }
    return 0;
}

/* The index key of a tag: "stream:" and "type:" tags hash their rest seeded by the prefix, so
   the writer needs no concatenation. */
uint64_t tags_key(factum_str_t tag) {
    for (size_t i = 0; i < ARRAY_LEN(implicit); i++)
        if (name_has_prefix(tag, implicit[i]))
            return index_key_tag(implicit[i], (factum_str_t){tag.ptr + implicit[i].len, tag.len - implicit[i].len});
    return index_key_tag((factum_str_t){"", 0}, tag);
}

uint64_t tags_key_implicit(const factum_event_t *e, int which) {
    return index_key_tag(implicit[which], which ? e->type : e->stream);
}

int tags_index_event(index_t *ix, const factum_event_t *e, uint64_t pos) {
    int rc = index_add(ix, tags_key_implicit(e, 0), pos, pos);
    if (!rc) rc = index_add(ix, tags_key_implicit(e, 1), pos, pos);
    factum_str_t rest = factum_event_tags(e), t;
    while (!rc && tags_next(&rest, &t))
        rc = index_add(ix, tags_key(t), pos, pos);
    return rc;
}

bool tags_key_of(const factum_event_t *e, uint64_t key) {
    if (key == tags_key_implicit(e, 0) || key == tags_key_implicit(e, 1)) return true;
    factum_str_t rest = factum_event_tags(e), t;
    while (tags_next(&rest, &t))
        if (key == tags_key(t)) return true;
    return false;
}

/* ---- queries ---- */

static bool has_tag(const factum_event_t *e, factum_str_t t) {
    if (name_has_prefix(t, implicit[0])) return str_eq((factum_str_t){t.ptr + 7, t.len - 7}, e->stream);
    if (name_has_prefix(t, implicit[1])) return str_eq((factum_str_t){t.ptr + 5, t.len - 5}, e->type);
    factum_str_t rest = factum_event_tags(e), u;
    while (tags_next(&rest, &u))
        if (str_eq(u, t)) return true;
    return false;
}

static bool item_matches(const factum_query_item_t *it, const factum_event_t *e) {
    bool type_ok = it->ntypes == 0;
    for (size_t k = 0; k < it->ntypes && !type_ok; k++)
        type_ok = str_eq(it->types[k], e->type);
    for (size_t k = 0; k < it->ntags && type_ok; k++)
        type_ok = has_tag(e, it->tags[k]);
    return type_ok;
}

int factum_tag_query_matches(const factum_tag_query_t *q, const factum_event_t *e) {
    for (size_t i = 0; i < q->nitems; i++)
        if (item_matches(&q->items[i], e)) return 1;
    return 0;
}

int factum_tag_query_check(const factum_tag_query_t *q, factum_error_t *err) {
    if (!q || !q->nitems) return err_set(err, FACTUM_EINVAL, "a query needs at least one item");
    if (q->nitems > FACTUM_MAX_QUERY_ITEMS)
        return err_set(err, FACTUM_ETOOBIG, "a query has at most %d items (got %zu)", FACTUM_MAX_QUERY_ITEMS,
                       q->nitems);
    for (size_t i = 0; i < q->nitems; i++) {
        const factum_query_item_t *it = &q->items[i];
        if (!it->ntypes && !it->ntags) return err_set(err, FACTUM_EINVAL, "query item %zu has no types and no tags", i);
        if (it->ntypes > FACTUM_MAX_QUERY_ITEMS)
            return err_set(err, FACTUM_ETOOBIG, "query item %zu: at most %d types (got %zu)", i, FACTUM_MAX_QUERY_ITEMS,
                           it->ntypes);
        if (it->ntags > FACTUM_MAX_TAGS)
            return err_set(err, FACTUM_ETOOBIG, "query item %zu: at most %d tags (got %zu)", i, FACTUM_MAX_TAGS,
                           it->ntags);
        for (size_t k = 0; k < it->ntypes; k++)
            if (!it->types[k].len || it->types[k].len > FACTUM_MAX_ATTRIBUTE ||
                !text_valid(it->types[k].ptr, it->types[k].len))
                return err_set(err, it->types[k].len > FACTUM_MAX_ATTRIBUTE ? FACTUM_ETOOBIG : FACTUM_EINVAL,
                               "query item %zu: type %zu must be 1 to %d bytes of text", i, k, FACTUM_MAX_ATTRIBUTE);
        for (size_t k = 0; k < it->ntags; k++) {
            factum_str_t t = it->tags[k];
            /* An implicit tag names a stream or type, which may be longer than a tag. */
            bool imp = name_has_prefix(t, implicit[0]) || name_has_prefix(t, implicit[1]);
            const char *why =
                imp && t.len <= 7 + FACTUM_MAX_STREAM_NAME && text_valid(t.ptr, t.len) ? NULL : tag_wrong(t, true);
            if (why)
                return err_set(err, t.len > FACTUM_MAX_TAG ? FACTUM_ETOOBIG : FACTUM_EINVAL,
                               "query item %zu: tag '%.*s%s': %s", i, (int)MIN(t.len, 64), t.ptr,
                               t.len > 64 ? "..." : "", why);
        }
    }
    return 0;
}

factum_tag_query_t *tags_query_copy(const factum_tag_query_t *q) {
    size_t nstr = 0, bytes = 0;
    for (size_t i = 0; i < q->nitems; i++) {
        nstr += q->items[i].ntypes + q->items[i].ntags;
        for (size_t k = 0; k < q->items[i].ntypes; k++)
            bytes += q->items[i].types[k].len;
        for (size_t k = 0; k < q->items[i].ntags; k++)
            bytes += q->items[i].tags[k].len;
    }
    factum_tag_query_t *c =
        malloc(sizeof *c + q->nitems * sizeof(factum_query_item_t) + nstr * sizeof(factum_str_t) + bytes);
    if (!c) return NULL;
    factum_query_item_t *items = (factum_query_item_t *)(c + 1);
    factum_str_t *strs = (factum_str_t *)(items + q->nitems);
    char *b = (char *)(strs + nstr);
    for (size_t i = 0; i < q->nitems; i++) {
        const factum_query_item_t *it = &q->items[i];
        items[i] = (factum_query_item_t){strs, it->ntypes, strs + it->ntypes, it->ntags};
        for (size_t k = 0; k < it->ntypes + it->ntags; k++) {
            factum_str_t s = k < it->ntypes ? it->types[k] : it->tags[k - it->ntypes];
            if (s.len) memcpy(b, s.ptr, s.len);
            *strs++ = (factum_str_t){b, s.len};
            b += s.len;
        }
    }
    *c = (factum_tag_query_t){items, q->nitems};
    return c;
}

size_t tags_item_keys(const factum_query_item_t *it, uint64_t *keys) {
    if (!it->ntags) {
        for (size_t k = 0; k < it->ntypes; k++)
            keys[k] = index_key_tag(implicit[1], it->types[k]);
        return it->ntypes;
    }
    /* One posting list serves the item: an explicit tag's if it has one (they are the
       selective ones), every hit checked against the whole item. */
    size_t pick = 0;
    for (size_t k = 0; k < it->ntags; k++)
        if (!name_has_prefix(it->tags[k], implicit[0]) && !name_has_prefix(it->tags[k], implicit[1])) {
            pick = k;
            break;
        }
    keys[0] = tags_key(it->tags[pick]);
    return 1;
}

/* ---- the condition of an append (the writer thread) ---- */

int tags_condition_first(factum_t *db, const factum_tag_query_t *q, uint64_t after, uint64_t *found,
                         factum_error_t *err) {
    uint64_t first = UINT64_MAX, keys[FACTUM_MAX_QUERY_ITEMS];
    uint64_t start = after == FACTUM_AFTER_NONE ? 0 : after + 1;
    for (size_t i = 0; i < q->nitems; i++) {
        size_t nk = tags_item_keys(&q->items[i], keys);
        for (size_t k = 0; k < nk; k++) {
            /* UINT64_MAX: the writer's own group counts, its records are in the pending table. */
            idx_hit cur = {start, start}, hits[32];
            for (bool more = true; more && cur.pos < first;) {
                size_t n = index_range(db->index, keys[k], cur, false, ARRAY_LEN(hits), UINT64_MAX, hits);
                more = n == ARRAY_LEN(hits);
                for (size_t h = 0; h < n && hits[h].pos < first; h++) {
                    factum_event_t e;
                    int rc = store_event_at(db, hits[h].pos, &e, err);
                    if (rc == FACTUM_ENOTFOUND) continue; /* scavenged: gone from the log */
                    if (rc) return rc;
                    if (item_matches(&q->items[i], &e)) {
                        first = hits[h].pos;
                        more = false;
                        break;
                    }
                }
                if (more) index_after(hits[n - 1], false, &cur);
            }
        }
    }
    *found = first;
    return 0;
}

/* ---- a query's JSON: {"items":[{"types":[...],"tags":[...]}]} ---- */

/* Counts what a query's text can hold at most, for one allocation: strings, and their bytes
   (decoded strings are never longer than their text). */
static const char *strings_of(factum_str_t arr, int kind, size_t max, const char *what, size_t item, size_t *n,
                              char *why, size_t cap) {
    if (kind != JSON_ARRAY)
        return snprintf(why, cap, "query item %zu: '%s' must be an array of strings", item, what), why;
    json_iter_t it;
    factum_str_t el;
    int k, r;
    json_iter_init(&it, arr);
    while ((r = json_iter_element(&it, &el, &k)) == 1) {
        if (k != JSON_STRING)
            return snprintf(why, cap, "query item %zu: '%s' must be an array of strings", item, what), why;
        if (++*n > max) return snprintf(why, cap, "query item %zu: at most %zu %s", item, max, what), why;
    }
    return r < 0 ? (snprintf(why, cap, "query item %zu: malformed '%s'", item, what), why) : NULL;
}

int factum_tag_query_parse(const char *json, size_t len, factum_tag_query_t **out, factum_error_t *err) {
    *out = NULL;
    factum_str_t text = {json, len}, items, item, val;
    int kind;
    char why[256] = "";
    if (!json_valid(json, len, &kind) || kind != JSON_OBJECT)
        return err_set(err, FACTUM_EINVAL, "a query is a JSON object {\"items\":[...]}");
    static const char *const top[] = {"items", NULL}, *const fields[] = {"types", "tags", NULL};
    int rc = json_only_members(text, "the query", top, err);
    if (rc) return rc;
    if (!json_member(text, "items", &items, &kind) || kind != JSON_ARRAY)
        return err_set(err, FACTUM_EINVAL, "a query needs 'items', an array of {\"types\", \"tags\"}");
    /* First pass: check the shape and count. */
    json_iter_t it;
    size_t nitems = 0, nstr = 0;
    json_iter_init(&it, items);
    int r;
    while ((r = json_iter_element(&it, &item, &kind)) == 1) {
        if (nitems == FACTUM_MAX_QUERY_ITEMS)
            return err_set(err, FACTUM_EINVAL, "a query has at most %d items", FACTUM_MAX_QUERY_ITEMS);
        if (kind != JSON_OBJECT) return err_set(err, FACTUM_EINVAL, "query item %zu must be an object", nitems);
        if ((rc = json_only_members(item, "a query item", fields, err))) return rc;
        size_t nt = 0, ng = 0;
        if ((json_member(item, "types", &val, &kind) &&
             strings_of(val, kind, FACTUM_MAX_QUERY_ITEMS, "types", nitems, &nt, why, sizeof why)) ||
            (json_member(item, "tags", &val, &kind) &&
             strings_of(val, kind, FACTUM_MAX_TAGS, "tags", nitems, &ng, why, sizeof why)))
            return err_set(err, FACTUM_EINVAL, "%s", why);
        nstr += nt + ng, nitems++;
    }
    if (r < 0) return err_set(err, FACTUM_EINVAL, "malformed query items");
    /* Second pass: decode into one allocation. */
    factum_tag_query_t *q =
        malloc(sizeof *q + nitems * sizeof(factum_query_item_t) + nstr * sizeof(factum_str_t) + len + 16);
    if (!q) return err_set(err, FACTUM_ENOMEM, "out of memory");
    factum_query_item_t *qi = (factum_query_item_t *)(q + 1);
    factum_str_t *strs = (factum_str_t *)(qi + nitems);
    buf_t bytes = {(char *)(strs + nstr), 0, len + 16}; /* never grows: decoded text is shorter */
    json_iter_init(&it, items);
    for (size_t i = 0; json_iter_element(&it, &item, &kind) == 1; i++) {
        qi[i] = (factum_query_item_t){0};
        for (int which = 0; which < 2; which++) {
            if (!json_member(item, which ? "tags" : "types", &val, &kind)) continue;
            const factum_str_t *first = strs;
            size_t n = 0;
            json_iter_t e;
            factum_str_t el;
            json_iter_init(&e, val);
            while (json_iter_element(&e, &el, &kind) == 1) {
                size_t at = bytes.len;
                json_unescape(el, &bytes);
                *strs++ = (factum_str_t){bytes.ptr + at, bytes.len - at};
                n++;
            }
            if (which)
                qi[i].tags = first, qi[i].ntags = n;
            else
                qi[i].types = first, qi[i].ntypes = n;
        }
    }
    *q = (factum_tag_query_t){qi, nitems};
    if ((rc = factum_tag_query_check(q, err))) {
        free(q);
        if (err) err->code = FACTUM_EINVAL; /* a limit of the query's text is bad input, as its shape */
        return FACTUM_EINVAL;
    }
    *out = q;
    return 0;
}

void factum_tag_query_free(factum_tag_query_t *q) { free(q); }
