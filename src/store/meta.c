/*
 * meta.c — the stream metadata table (see meta.h) and the $metadata document.
 */
#include "meta.h"

#include "../base/json.h"

#include <stdlib.h>

void meta_init(meta_map *m) {
    memset(m, 0, sizeof *m);
    pthread_rwlockattr_t a;
    pthread_rwlockattr_init(&a);
    pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&m->lock, &a);
    pthread_rwlockattr_destroy(&a);
}

void meta_free(meta_map *m) {
    for (size_t i = 0; m->slots && i <= m->mask; i++)
        if (m->slots[i]) {
            free(m->slots[i]->doc);
            free(m->slots[i]);
        }
    free(m->slots);
    pthread_rwlock_destroy(&m->lock);
    memset(m, 0, sizeof *m);
}

meta_entry *meta_find(meta_map *m, uint64_t h1, uint64_t h2) {
    if (!m->slots) return NULL;
    for (size_t i = h1 & m->mask;; i = (i + 1) & m->mask) {
        meta_entry *e = m->slots[i];
        if (!e) return NULL;
        if (e->h1 == h1 && e->h2 == h2) return e;
    }
}

bool meta_rules_get(meta_map *m, uint64_t h1, uint64_t h2, meta_rules *out) {
    if (!atomic_load_explicit(&m->count, memory_order_acquire)) return false;
    pthread_rwlock_rdlock(&m->lock);
    meta_entry *e = meta_find(m, h1, h2);
    if (e) *out = e->r;
    pthread_rwlock_unlock(&m->lock);
    return e != NULL;
}

/* Doubles the table (write lock held). */
static int grow(meta_map *m) {
    size_t cap = m->slots ? (m->mask + 1) * 2 : 64;
    meta_entry **s = calloc(cap, sizeof *s);
    if (!s) return FACTUM_ENOMEM;
    for (size_t i = 0; m->slots && i <= m->mask; i++) {
        meta_entry *e = m->slots[i];
        if (!e) continue;
        size_t j = e->h1 & (cap - 1);
        while (s[j])
            j = (j + 1) & (cap - 1);
        s[j] = e;
    }
    free(m->slots);
    m->slots = s, m->mask = cap - 1;
    return 0;
}

int meta_apply(meta_map *m, uint64_t h1, uint64_t h2, const meta_rules *r, uint64_t pos, factum_str_t doc) {
    char *copy = malloc(doc.len ? doc.len : 1);
    if (!copy) return FACTUM_ENOMEM;
    memcpy(copy, doc.ptr, doc.len);
    pthread_rwlock_wrlock(&m->lock);
    int rc = 0;
    meta_entry *e = meta_find(m, h1, h2);
    if (!e) {
        if ((m->n + 1) * 4 > (m->slots ? m->mask + 1 : 0) * 3 && (rc = grow(m))) goto out;
        if (!(e = calloc(1, sizeof *e))) {
            rc = FACTUM_ENOMEM;
            goto out;
        }
        e->h1 = h1, e->h2 = h2, e->r.last = r->last;
        size_t j = h1 & m->mask;
        while (m->slots[j])
            j = (j + 1) & m->mask;
        m->slots[j] = e;
        m->n++;
        atomic_store_explicit(&m->count, m->n, memory_order_release);
    }
    int64_t last = MAX(e->r.last, r->last);
    e->r = *r;
    e->r.last = last;
    e->pos = pos;
    free(e->doc);
    e->doc = copy, e->doc_len = doc.len;
    copy = NULL;
out:
    pthread_rwlock_unlock(&m->lock);
    free(copy);
    return rc;
}

void meta_note_last(meta_map *m, meta_entry *e, int64_t last) {
    pthread_rwlock_wrlock(&m->lock);
    if (last > e->r.last) e->r.last = last;
    pthread_rwlock_unlock(&m->lock);
}

int meta_doc_write(buf_t *b, factum_str_t stream, const meta_rules *r, factum_str_t custom) {
    int rc = buf_append(b, "{\"stream\":", 10);
    if (!rc) rc = json_escape(b, stream.ptr, stream.len);
    if (!rc)
        rc = buf_printf(
            b, ",\"truncate_before\":%llu,\"max_count\":%llu,\"max_age_s\":%llu,\"deleted\":%s,\"tombstone\":%s",
            (unsigned long long)r->tb, (unsigned long long)r->max_count, (unsigned long long)r->max_age_s,
            r->deleted ? "true" : "false", r->tombstone ? "true" : "false");
    if (!rc && custom.len) rc = buf_printf(b, ",\"custom\":%.*s", (int)custom.len, custom.ptr);
    if (!rc) rc = buf_append(b, "}", 1);
    return rc;
}

static bool member_bool(factum_str_t obj, const char *key, bool *out) {
    factum_str_t v;
    int kind;
    if (!json_member(obj, key, &v, &kind) || (kind != JSON_TRUE && kind != JSON_FALSE)) return false;
    *out = kind == JSON_TRUE;
    return true;
}

int meta_doc_parse(factum_str_t data, meta_doc *out, buf_t *name) {
    memset(out, 0, sizeof *out);
    int kind;
    name->len = 0;
    if (!json_valid(data.ptr, data.len, &kind) || kind != JSON_OBJECT || !json_member_string(data, "stream", name) ||
        !json_member_u64(data, "truncate_before", &out->r.tb) ||
        !json_member_u64(data, "max_count", &out->r.max_count) ||
        !json_member_u64(data, "max_age_s", &out->r.max_age_s) || !member_bool(data, "deleted", &out->r.deleted) ||
        !member_bool(data, "tombstone", &out->r.tombstone))
        return -1;
    factum_str_t v;
    if (json_member(data, "custom", &v, &kind)) {
        if (kind != JSON_OBJECT) return -1;
        out->custom = v;
    }
    out->stream = (factum_str_t){name->ptr, name->len};
    out->r.last = -1;
    return 0;
}

size_t factum_meta_json(factum_str_t stream, const factum_meta_t *m, char *buf, size_t cap) {
    buf_t b = {0};
    int rc = buf_append(&b, "{\"stream\":", 10);
    if (!rc) rc = json_escape(&b, stream.ptr, stream.len);
    if (!rc)
        rc = buf_printf(&b,
                        ",\"max_age_s\":%llu,\"max_count\":%llu,\"truncate_before\":%llu,\"custom\":%.*s,"
                        "\"deleted\":%s,\"tombstone\":%s,\"position\":",
                        (unsigned long long)m->max_age_s, (unsigned long long)m->max_count,
                        (unsigned long long)m->truncate_before, (int)(m->custom.len ? m->custom.len : 2),
                        m->custom.len ? m->custom.ptr : "{}", m->deleted ? "true" : "false",
                        m->tombstone ? "true" : "false");
    if (!rc)
        rc = m->position == FACTUM_END ? buf_append(&b, "null}", 5)
                                       : buf_printf(&b, "%llu}", (unsigned long long)m->position);
    size_t n = rc ? 0 : b.len;
    if (cap) {
        size_t k = MIN(n, cap - 1);
        memcpy(buf, b.ptr ? b.ptr : "", k);
        buf[k] = 0;
    }
    buf_free(&b);
    return n;
}
