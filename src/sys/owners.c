/*
 * owners.c — the owner of a definition and the count of each owner's (see owners.h). A key has
 * few definitions and a server few keys: the map is an array searched from the start.
 */
#include "owners.h"

#include "../base/json.h"
#include "../base/log.h"

#include <stdlib.h>

static owner_count *find(const owners *o, const char *id) {
    for (size_t i = 0; i < o->n; i++)
        if (!strcmp(o->v[i].id, id)) return &o->v[i];
    return NULL;
}

void owners_add(owners *o, const char *id, int delta) {
    if (!id || !id[0] || strlen(id) >= OWNER_MAX) return;
    owner_count *c = find(o, id);
    if (!c && delta < 0) return; /* not counted: nothing to give back */
    if (!c) {
        if (o->n == o->cap) {
            size_t cap = o->cap ? o->cap * 2 : 8;
            owner_count *v = realloc(o->v, cap * sizeof *v);
            if (!v) {
                log_msg(LOG_LEVEL_ERROR, "out of memory (the count of a key's definitions)");
                abort();
            }
            o->v = v, o->cap = cap;
        }
        c = &o->v[o->n++];
        memset(c, 0, sizeof *c);
        memcpy(c->id, id, strlen(id) + 1);
    }
    if (delta > 0)
        c->n++;
    else if (!--c->n)
        *c = o->v[--o->n]; /* the last one takes its place */
}

uint64_t owners_count(const owners *o, const char *id) {
    const owner_count *c = id && id[0] ? find(o, id) : NULL;
    return c ? c->n : 0;
}

void owners_clear(owners *o) { o->n = 0; }

void owners_free(owners *o) {
    free(o->v);
    *o = (owners){0};
}

void owners_of_record(factum_str_t rec, char out[OWNER_MAX]) {
    buf_t s = {0};
    out[0] = 0;
    if (json_member_string(rec, "owner", &s) && s.len < OWNER_MAX && !memchr(s.ptr, 0, s.len))
        memcpy(out, s.ptr, s.len + 1);
    buf_free(&s);
}

void owners_member(buf_t *b, const char *id) {
    if (!id || !id[0]) return;
    buf_append(b, ",\"owner\":", 9);
    json_escape(b, id, strlen(id));
}
