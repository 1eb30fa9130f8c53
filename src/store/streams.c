/*
 * streams.c — the two-generation stream cache described in streams.h.
 */
#include "streams.h"

#include <stdlib.h>

void streams_init(stream_cache *c, size_t cap) {
    memset(c, 0, sizeof *c);
    c->cap = cap;
}

static void gen_free(stream_gen *g) {
    free(g->slots);
    memset(g, 0, sizeof *g);
}

void streams_free(stream_cache *c) {
    gen_free(&c->young);
    gen_free(&c->old);
}

void streams_hash(factum_str_t name, uint64_t *h1, uint64_t *h2) {
    *h1 = hash64(name.ptr, name.len, 0x53545245414d31u) | 1; /* never 0: 0 marks an empty slot */
    *h2 = hash64(name.ptr, name.len, 0x53545245414d32u);
}

static stream_slot *gen_find(const stream_gen *g, uint64_t h1, uint64_t h2) {
    if (!g->slots) return NULL;
    for (size_t i = h1 & g->mask;; i = (i + 1) & g->mask) {
        stream_slot *s = &g->slots[i];
        if (!s->h1) return NULL;
        if (s->h1 == h1 && s->h2 == h2) return s;
    }
}

static int gen_grow(stream_gen *g) {
    size_t ncap = g->slots ? (g->mask + 1) * 2 : 1024;
    stream_slot *ns = calloc(ncap, sizeof *ns);
    if (!ns) return -1;
    for (size_t i = 0; g->slots && i <= g->mask; i++) {
        if (!g->slots[i].h1) continue;
        size_t j = g->slots[i].h1 & (ncap - 1);
        while (ns[j].h1)
            j = (j + 1) & (ncap - 1);
        ns[j] = g->slots[i];
    }
    free(g->slots);
    g->slots = ns;
    g->mask = ncap - 1;
    return 0;
}

static void gen_put(stream_gen *g, uint64_t h1, uint64_t h2, int64_t last) {
    stream_slot *s = gen_find(g, h1, h2);
    if (s) {
        s->last = last;
        return;
    }
    if ((!g->slots || (g->count + 1) * 4 > (g->mask + 1) * 3) && gen_grow(g)) return;
    size_t i = h1 & g->mask;
    while (g->slots[i].h1)
        i = (i + 1) & g->mask;
    g->slots[i] = (stream_slot){h1, h2, last};
    g->count++;
}

int64_t streams_get(stream_cache *c, uint64_t h1, uint64_t h2) {
    stream_slot *s = gen_find(&c->young, h1, h2);
    if (s) return s->last;
    s = gen_find(&c->old, h1, h2);
    if (!s) return -1;
    int64_t last = s->last;
    streams_put(c, h1, h2, last); /* promote */
    return last;
}

void streams_put(stream_cache *c, uint64_t h1, uint64_t h2, int64_t last) {
    if (!gen_find(&c->young, h1, h2) && c->young.count >= c->cap) {
        gen_free(&c->old);
        c->old = c->young;
        memset(&c->young, 0, sizeof c->young);
    }
    gen_put(&c->young, h1, h2, last);
    stream_slot *o = gen_find(&c->old, h1, h2);
    if (o) o->last = last; /* keep the old copy true too, so it never answers stale */
}
