/*
 * defs.c — see defs.h.
 */
#include "defs.h"

#include "../base/json.h"
#include "../sys/replay.h"

#include <stdlib.h>

typedef struct pending_def {
    char *name;
    buf_t def;
    char owner[OWNER_MAX];
    struct pending_def *next;
} pending_def;

typedef struct fold {
    const char *defined, *deleted;
    pending_def *list;
    uint64_t next; /* past the newest record read */
} fold;

static void fold_record(void *ctx, const factum_event_t *e) {
    fold *f = ctx;
    f->next = e->revision + 1;
    buf_t name = {0};
    if (!json_member_string(e->data, "name", &name) || !name.len) {
        buf_free(&name);
        return;
    }
    pending_def **at = &f->list;
    while (*at && strcmp((*at)->name, name.ptr))
        at = &(*at)->next;
    factum_str_t def;
    int kind;
    if (str_eq(e->type, str_c(f->defined)) && json_member(e->data, "definition", &def, &kind)) {
        if (!*at && (*at = calloc(1, sizeof **at)) && !((*at)->name = strdup(name.ptr))) free(*at), *at = NULL;
        if (*at) (*at)->def.len = 0, buf_append(&(*at)->def, def.ptr, def.len), owners_of_record(e->data, (*at)->owner);
    } else if (str_eq(e->type, str_c(f->deleted)) && *at) {
        pending_def *gone = *at;
        *at = gone->next;
        buf_free(&gone->def);
        free(gone->name);
        free(gone);
    }
    buf_free(&name);
}

int defs_replay(factum_t *db, const char *stream, const char *defined, const char *deleted,
                void (*fn)(void *ctx, const char *name, factum_str_t def, const char *owner), void *ctx, uint64_t *next,
                factum_error_t *err) {
    fold f = {defined, deleted, NULL, 0};
    int rc = replay_stream(db, stream, 0, fold_record, &f, err);
    if (next) *next = f.next;
    while (f.list) {
        pending_def *d = f.list;
        f.list = d->next;
        if (!rc) fn(ctx, d->name, (factum_str_t){d->def.ptr, d->def.len}, d->owner);
        buf_free(&d->def);
        free(d->name);
        free(d);
    }
    return rc;
}

typedef struct follow {
    defs_follower *fw;
    void *ctx;
} follow;

static void follow_record(void *ctx, const factum_event_t *e) {
    follow *f = ctx;
    buf_t name = {0};
    factum_str_t def;
    int kind;
    if (json_member_string(e->data, "name", &name) && name.len) {
        if (str_eq(e->type, str_c(f->fw->defined)) && json_member(e->data, "definition", &def, &kind)) {
            char owner[OWNER_MAX];
            owners_of_record(e->data, owner);
            f->fw->on_defined(f->ctx, name.ptr, def, owner);
        } else if (str_eq(e->type, str_c(f->fw->deleted))) {
            f->fw->on_deleted(f->ctx, name.ptr, e->data);
        }
    }
    buf_free(&name);
    f->fw->next = e->revision + 1;
}

int defs_follow(factum_t *db, defs_follower *fw, void *ctx, factum_error_t *err) {
    int64_t last = factum_stream_revision(db, str_c(fw->stream));
    if (last < 0 || (uint64_t)last < fw->next) return 0; /* nothing new: one lookup */
    follow f = {fw, ctx};
    return replay_stream(db, fw->stream, fw->next, follow_record, &f, err);
}

uint64_t defs_hash(factum_str_t def) { return hash64(def.ptr, def.len, 0); }

int defs_record_member(factum_t *db, const char *stream, const char *type, const char *name, const char *member,
                       factum_str_t value, const char *owner, factum_error_t *err) {
    buf_t data = {0};
    buf_append(&data, "{\"name\":", 8);
    json_escape(&data, name, strlen(name));
    if (value.len) {
        buf_printf(&data, ",\"%s\":", member);
        buf_append(&data, value.ptr, value.len);
    }
    owners_member(&data, owner);
    int rc = buf_append(&data, "}", 1) ? err_set(err, FACTUM_ENOMEM, "out of memory") : 0;
    factum_event_t e = {.type = str_c(type), .data = {data.ptr, data.len}, .data_format = FACTUM_DATA_JSON};
    if (!rc) rc = factum_append(db, str_c(stream), FACTUM_EXPECT_ANY, &e, 1, NULL, err);
    buf_free(&data);
    return rc;
}

int defs_record(factum_t *db, const char *stream, const char *type, const char *name, factum_str_t def,
                const char *owner, factum_error_t *err) {
    return defs_record_member(db, stream, type, name, "definition", def, owner, err);
}
