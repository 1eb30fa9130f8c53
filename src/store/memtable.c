/*
 * memtable.c — the index's in-memory table (memtable.h): a hash table of keys, open
 * addressing at a load of at most 0.75, each key's entries in (seq, pos) order.
 */
#include "memtable.h"

#include <stdlib.h>

memtable *mem_new(void) {
    memtable *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->mask = 1023;
    m->slots = calloc(m->mask + 1, sizeof *m->slots);
    if (!m->slots) {
        free(m);
        return NULL;
    }
    pthread_mutex_init(&m->sort_mu, NULL);
    return m;
}

void mem_free(memtable *m) {
    if (!m) return;
    for (size_t i = 0; i <= m->mask; i++)
        if (m->slots[i].key && m->slots[i].n > 1) free(m->slots[i].many);
    free(m->slots);
    free(m->names);
    free(m->sorted);
    buf_free(&m->name_bytes);
    pthread_mutex_destroy(&m->sort_mu);
    free(m);
}

mslot *mem_find(const memtable *m, uint64_t key) {
    for (size_t i = key & m->mask;; i = (i + 1) & m->mask) {
        mslot *s = &m->slots[i];
        if (s->key == key) return s;
        if (!s->key) return NULL;
    }
}

static int mem_grow(memtable *m) {
    size_t ncap = (m->mask + 1) * 2;
    mslot *ns = calloc(ncap, sizeof *ns);
    if (!ns) return FACTUM_ENOMEM;
    for (size_t i = 0; i <= m->mask; i++) {
        if (!m->slots[i].key) continue;
        size_t j = m->slots[i].key & (ncap - 1);
        while (ns[j].key)
            j = (j + 1) & (ncap - 1);
        ns[j] = m->slots[i];
    }
    free(m->slots);
    m->slots = ns;
    m->mask = ncap - 1;
    return 0;
}

int mem_add(memtable *m, uint64_t key, idx_hit h) {
    if ((m->keys + 1) * 4 > (m->mask + 1) * 3 && mem_grow(m)) return FACTUM_ENOMEM; /* load <= 0.75 */
    size_t i = key & m->mask;
    while (m->slots[i].key && m->slots[i].key != key)
        i = (i + 1) & m->mask;
    mslot *s = &m->slots[i];
    if (!s->key) {
        s->key = key, s->n = 1, s->cap = 1, s->one = h;
        m->keys++, m->entries++;
        return 0;
    }
    if (s->n == s->cap) {
        uint32_t ncap = s->cap < 4 ? 4 : s->cap * 2;
        idx_hit *nv = malloc(ncap * sizeof *nv);
        if (!nv) return FACTUM_ENOMEM;
        memcpy(nv, slot_hits(s), s->n * sizeof *nv);
        if (s->n > 1) free(s->many);
        s->many = nv, s->cap = ncap;
    }
    idx_hit *v = s->many;
    uint32_t j = s->n++;
    while (j > 0 && hit_cmp(v[j - 1], h) > 0)
        v[j] = v[j - 1], j--; /* only hash collisions move */
    v[j] = h;
    m->entries++;
    return 0;
}

int mem_add_name(memtable *m, factum_str_t name, uint64_t pos) {
    if (m->nnames == m->names_cap) {
        size_t ncap = m->names_cap ? m->names_cap * 2 : 64;
        mname *nv = realloc(m->names, ncap * sizeof *nv);
        if (!nv) return FACTUM_ENOMEM;
        m->names = nv, m->names_cap = ncap;
    }
    if (m->name_bytes.len + name.len > UINT32_MAX) return FACTUM_ENOMEM;
    uint32_t off = (uint32_t)m->name_bytes.len;
    if (buf_append(&m->name_bytes, name.ptr, name.len)) return FACTUM_ENOMEM;
    m->names[m->nnames++] = (mname){pos, off, (uint16_t)name.len};
    return 0;
}

/* First index in v[0..n) with v[i] >= x, or with strict, v[i] > x. */
static size_t hits_bound(const idx_hit *v, size_t n, idx_hit x, bool strict) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = hit_cmp(v[mid], x);
        if (c < 0 || (strict && c == 0))
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

size_t mem_range(const memtable *m, uint64_t key, idx_hit from, bool backward, size_t max, uint64_t pos_limit,
                 idx_hit *out) {
    mslot *s = mem_find(m, key);
    if (!s) return 0;
    const idx_hit *v = slot_hits(s);
    size_t n = 0;
    if (!backward) {
        for (size_t i = hits_bound(v, s->n, from, false); i < s->n && n < max; i++)
            if (v[i].pos < pos_limit) out[n++] = v[i];
    } else {
        for (size_t i = hits_bound(v, s->n, from, true); i-- > 0 && n < max;)
            if (v[i].pos < pos_limit) out[n++] = v[i];
    }
    return n;
}