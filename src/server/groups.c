/*
 * groups.c — consumer groups; see groups.h for what is built and docs/groups.md for the design.
 *
 * A group's cursor is in "keys": revisions for a stream source, positions for a category or
 * $all source. Entries hold what is in flight, due for retry, or done above the floor; the
 * floor is the lowest key not yet done (everything below it is done), written with each Acked
 * record so a restart resumes there and skips the done keys above it.
 */
#include "groups.h"

#include "../base/json.h"
#include "../sys/replay.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#define MAX_IN_FLIGHT 10000
#define MAX_HELD 100000       /* by_stream: events read and waiting for their stream; reading stops past it */
#define CHECKPOINT_EVERY 1000 /* state records between Checkpoint snapshots */
#define CHECKPOINT_MAX_BYTES (900u << 10) /* a snapshot larger than this is put off (the data limit is 1 MiB) */
#define MAX_FILTERS 16

enum { SRC_STREAM, SRC_CATEGORY, SRC_ALL };
enum { E_INFLIGHT, E_RETRY, E_DONE, E_PARKING, E_HELD }; /* HELD: read, waiting for its stream (by_stream) */

typedef struct parked {
    uint64_t key, pos, sh;
    uint32_t attempts;
    int64_t at;
    char reason[256];
} parked;

typedef struct entry {
    uint64_t key, pos;
    uint64_t sh;      /* hash of the event's stream (by_stream) */
    uint32_t attempt; /* deliveries so far: a delivery id is KEY.ATTEMPT, never reused */
    uint32_t base;    /* deliveries before it was last replayed from the parked set */
    bool replayed;    /* replayed: a failure parks it again (one more delivery, no loop) */
    uint8_t kind;
    uint64_t member; /* the push member holding it in flight, 0 for pull */
    int64_t t;       /* in flight: deadline; retry: when due (µs, CLOCK_MONOTONIC; records hold the wall clock) */
} entry;

typedef struct group {
    char name[GROUP_MAX_NAME + 1];
    int src;
    bool by_stream;
    char src_name[256]; /* stream or category */
    char types[MAX_FILTERS][256], cats[MAX_FILTERS][256];
    int ntypes, ncats;
    uint32_t ack_timeout_ms, max_deliveries, min_delay_ms, max_delay_ms;
    uint64_t start, next, floor;
    entry *e;
    size_t n, cap;
    uint64_t delivered, redelivered, acked;
    uint64_t created_pos; /* state records before this belong to an earlier group of the name */
    parked *pk;
    size_t npk, cappk;
    uint64_t parked_total;
    /* once a second, for rates over the last 10 s: time (µs), delivered, redelivered */
    int64_t rate_t[11];
    uint64_t rate_d[11], rate_r[11];
    int rate_n, rate_i;
    uint32_t writes_pending;   /* state records prepared and not yet applied (or abandoned) */
    uint32_t since_checkpoint; /* state records applied since the last Checkpoint */
    /* A read that failed (damage: FACTUM_ECORRUPT, FACTUM_EIO) stopped delivery at err_key; it
       stays until a read there succeeds (docs/groups.md). In memory only. */
    int err_code;     /* 0: delivering */
    uint64_t err_key; /* the key delivery stopped at */
    uint64_t err_pos; /* the event's position, UINT64_MAX if the error names none */
    bool err_cursor;  /* met reading new events (else re-reading a retry) */
    char err_msg[320];
    struct group *link;
} group;

struct groups {
    factum_t *db;
    pthread_mutex_t mu;
    group *list;
    pthread_t keeper; /* expires deliveries that missed their ack timeout */
    pthread_cond_t cond;
    bool stop;
};

void groups_state_stream(const char *name, char out[GROUP_MAX_NAME + 8]) {
    snprintf(out, GROUP_MAX_NAME + 8, "$group-%s", name);
}

static group *find(groups_t *gs, const char *name) {
    for (group *g = gs->list; g; g = g->link)
        if (!strcmp(g->name, name)) return g;
    return NULL;
}

/* ---- JSON helpers ---- */

static bool str_into(factum_str_t raw, char *out, size_t cap) {
    buf_t b = {0};
    bool ok = !json_unescape(raw, &b) && b.len < cap && !memchr(b.ptr ? b.ptr : "", 0, b.len);
    if (ok) snprintf(out, cap, "%.*s", (int)b.len, b.ptr ? b.ptr : "");
    buf_free(&b);
    return ok;
}

/* Reads a number member within [lo, hi], or dflt when absent. */
static int num_member(factum_str_t obj, const char *key, uint64_t lo, uint64_t hi, uint64_t dflt, uint32_t *out,
                      factum_error_t *err) {
    factum_str_t v;
    int kind;
    uint64_t n = dflt;
    if (json_member(obj, key, &v, &kind) && (kind != JSON_NUMBER || !str_u64(v, &n)))
        return err_set(err, FACTUM_EINVAL, "'%s' must be a whole number", key);
    if (n < lo || n > hi)
        return err_set(err, FACTUM_EINVAL, "'%s' must be %llu to %llu", key, (unsigned long long)lo,
                       (unsigned long long)hi);
    *out = (uint32_t)n;
    return 0;
}

static int string_list(factum_str_t arr, char (*out)[256], int *n, const char *what, factum_error_t *err) {
    json_iter_t it;
    factum_str_t v;
    int kind, r;
    *n = 0;
    json_iter_init(&it, arr);
    while ((r = json_iter_element(&it, &v, &kind)) == 1) {
        if (kind != JSON_STRING || *n == MAX_FILTERS || !str_into(v, out[*n], 256) || !out[*n][0])
            return err_set(err, FACTUM_EINVAL, "'%s' must be a list of at most %d non-empty names", what, MAX_FILTERS);
        ++*n;
    }
    return r < 0 ? err_set(err, FACTUM_EINVAL, "'%s' must be a list", what) : 0;
}

/* ---- definitions ---- */

static bool name_ok(const char *n) {
    size_t len = strlen(n);
    if (!len || len > GROUP_MAX_NAME) return false;
    for (size_t i = 0; i < len; i++) {
        char c = n[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
              c == '.'))
            return false;
    }
    return true;
}

/* The cursor value where a new group starts. */
static int resolve_start(groups_t *gs, const group *g, factum_str_t v, int kind, uint64_t *out, factum_error_t *err) {
    factum_t *db = gs->db;
    buf_t s = {0};
    int rc = 0;
    uint64_t n;
    int64_t t;
    if (kind == JSON_NUMBER && str_u64(v, &n)) {
        *out = n;
        return 0;
    }
    if (kind != JSON_STRING || json_unescape(v, &s))
        return err_set(err, FACTUM_EINVAL, "'start' must be earliest, latest, a number or a time");
    factum_str_t str = {s.ptr ? s.ptr : "", s.len};
    if (str_eq(str, str_c("earliest")))
        *out = 0;
    else if (str_eq(str, str_c("latest")))
        *out = g->src == SRC_STREAM ? (uint64_t)(factum_stream_revision(db, str_c(g->src_name)) + 1)
                                    : factum_head_position(db);
    else if (time_parse(str, &t) == 0) {
        if (g->src != SRC_STREAM)
            *out = factum_position_at(db, t);
        else {
            /* The first revision committed at or after t: binary search over the stream. */
            uint64_t lo = 0, hi = (uint64_t)(factum_stream_revision(db, str_c(g->src_name)) + 1);
            while (lo < hi) {
                uint64_t mid = lo + (hi - lo) / 2;
                factum_result_t *r;
                bool before = factum_read_stream(db, str_c(g->src_name), mid, 1, 0, &r, NULL) == 0 &&
                              factum_result_count(r) && factum_result_event(r, 0)->time_us < t;
                if (r) factum_result_free(r);
                if (before)
                    lo = mid + 1;
                else
                    hi = mid;
            }
            *out = lo;
        }
    } else
        rc = err_set(err, FACTUM_EINVAL, "'start' must be earliest, latest, a number or an RFC 3339 time");
    buf_free(&s);
    return rc;
}

/* Parses a definition into g (not the name). */
static int parse_definition(groups_t *gs, factum_str_t body, group *g, bool resolve, factum_error_t *err) {
    factum_str_t v, src;
    int kind, rc;
    if (!json_valid(body.ptr, body.len, &kind) || kind != JSON_OBJECT)
        return err_set(err, FACTUM_EINVAL, "the body must be a JSON object");
    if (!json_member(body, "source", &src, &kind) || kind != JSON_OBJECT)
        return err_set(err, FACTUM_EINVAL, "'source' must be {\"stream\": S}, {\"category\": C} or {\"all\": {...}}");
    static const char *const source_members[] = {"stream", "category", "all", NULL};
    if ((rc = json_only_members(src, "'source'", source_members, err))) return rc;
    if (json_member(src, "stream", &v, &kind) + json_member(src, "category", &v, &kind) +
            json_member(src, "all", &v, &kind) >
        1)
        return err_set(err, FACTUM_EINVAL, "'source' has one of stream, category and all");
    if (json_member(src, "stream", &v, &kind)) {
        g->src = SRC_STREAM;
        if (kind != JSON_STRING || !str_into(v, g->src_name, sizeof g->src_name) ||
            factum_stream_name_check(str_c(g->src_name), err))
            return err_set(err, FACTUM_EBADSTREAM, "'source.stream' must be a stream name");
    } else if (json_member(src, "category", &v, &kind)) {
        g->src = SRC_CATEGORY;
        if (kind != JSON_STRING || !str_into(v, g->src_name, sizeof g->src_name) || !g->src_name[0])
            return err_set(err, FACTUM_EINVAL, "'source.category' must be a category name");
    } else if (json_member(src, "all", &v, &kind)) {
        g->src = SRC_ALL;
        factum_str_t l;
        int lk;
        static const char *const all_members[] = {"types", "categories", NULL};
        if (kind != JSON_OBJECT) return err_set(err, FACTUM_EINVAL, "'source.all' must be an object");
        if ((rc = json_only_members(v, "'source.all'", all_members, err))) return rc;
        if (json_member(v, "types", &l, &lk) &&
            (lk != JSON_ARRAY || (rc = string_list(l, g->types, &g->ntypes, "types", err))))
            return err_set(err, FACTUM_EINVAL, "'source.all.types' must be a list of types");
        if (json_member(v, "categories", &l, &lk) &&
            (lk != JSON_ARRAY || (rc = string_list(l, g->cats, &g->ncats, "categories", err))))
            return err_set(err, FACTUM_EINVAL, "'source.all.categories' must be a list of categories");
    } else {
        return err_set(err, FACTUM_EINVAL, "'source' must be {\"stream\": S}, {\"category\": C} or {\"all\": {...}}");
    }
    if (json_member(body, "strategy", &v, &kind)) {
        char s[32] = "";
        if (kind != JSON_STRING || !str_into(v, s, sizeof s) || (strcmp(s, "round_robin") && strcmp(s, "by_stream")))
            return err_set(err, FACTUM_EINVAL, "'strategy' must be round_robin or by_stream");
        g->by_stream = !strcmp(s, "by_stream");
    }
    if ((rc = num_member(body, "ack_timeout_ms", 100, 3600000, 30000, &g->ack_timeout_ms, err)) ||
        (rc = num_member(body, "max_deliveries", 1, 1000, 10, &g->max_deliveries, err)))
        return rc;
    factum_str_t retry = {"{}", 2};
    if (json_member(body, "retry", &v, &kind)) {
        static const char *const retry_members[] = {"min_delay_ms", "max_delay_ms", NULL};
        if (kind != JSON_OBJECT)
            return err_set(err, FACTUM_EINVAL, "'retry' must be {\"min_delay_ms\", \"max_delay_ms\"}");
        if ((rc = json_only_members(v, "'retry'", retry_members, err))) return rc;
        retry = v;
    }
    if ((rc = num_member(retry, "min_delay_ms", 0, 86400000, 1000, &g->min_delay_ms, err)) ||
        (rc = num_member(retry, "max_delay_ms", 0, 86400000, 60000, &g->max_delay_ms, err)))
        return rc;
    if (g->min_delay_ms > g->max_delay_ms)
        return err_set(err, FACTUM_EINVAL, "'retry.min_delay_ms' is above 'max_delay_ms'");
    if (resolve) {
        g->start = 0;
        if (json_member(body, "start", &v, &kind) && (rc = resolve_start(gs, g, v, kind, &g->start, err))) return rc;
    }
    return 0;
}

static void render_config(const group *g, buf_t *b) {
    buf_printf(b, "\"source\":");
    if (g->src == SRC_STREAM) {
        buf_printf(b, "{\"stream\":");
        json_escape(b, g->src_name, strlen(g->src_name));
        buf_printf(b, "}");
    } else if (g->src == SRC_CATEGORY) {
        buf_printf(b, "{\"category\":");
        json_escape(b, g->src_name, strlen(g->src_name));
        buf_printf(b, "}");
    } else {
        buf_printf(b, "{\"all\":{\"types\":[");
        for (int i = 0; i < g->ntypes; i++) {
            if (i) buf_append(b, ",", 1);
            json_escape(b, g->types[i], strlen(g->types[i]));
        }
        buf_printf(b, "],\"categories\":[");
        for (int i = 0; i < g->ncats; i++) {
            if (i) buf_append(b, ",", 1);
            json_escape(b, g->cats[i], strlen(g->cats[i]));
        }
        buf_printf(b, "]}}");
    }
    buf_printf(b,
               ",\"start\":%llu,\"strategy\":\"%s\",\"ack_timeout_ms\":%u,\"max_deliveries\":%u,"
               "\"retry\":{\"min_delay_ms\":%u,\"max_delay_ms\":%u}",
               (unsigned long long)g->start, g->by_stream ? "by_stream" : "round_robin", g->ack_timeout_ms,
               g->max_deliveries, g->min_delay_ms, g->max_delay_ms);
}

int groups_define_prepare(groups_t *gs, const char *name, factum_str_t body, buf_t *rec, bool *created,
                          factum_error_t *err) {
    if (!name_ok(name))
        return err_set(err, FACTUM_EINVAL, "group names are 1 to %d letters, digits, '-', '_' or '.'", GROUP_MAX_NAME);
    group tmp;
    memset(&tmp, 0, sizeof tmp);
    pthread_mutex_lock(&gs->mu);
    group *old = find(gs, name);
    *created = old == NULL;
    /* What a client may send (the GroupDefined record adds "name"). */
    static const char *const members[] = {"source",         "start", "strategy", "ack_timeout_ms",
                                          "max_deliveries", "retry", NULL};
    int rc = parse_definition(gs, body, &tmp, old == NULL, err);
    if (!rc) rc = json_only_members(body, "a group", members, err);
    if (!rc && old) {
        /* What a group reads, and where it began, do not change under it. */
        bool same = old->src == tmp.src && !strcmp(old->src_name, tmp.src_name) && old->ntypes == tmp.ntypes &&
                    old->ncats == tmp.ncats && !memcmp(old->types, tmp.types, sizeof tmp.types) &&
                    !memcmp(old->cats, tmp.cats, sizeof tmp.cats);
        if (!same) rc = err_set(err, FACTUM_EINVAL, "a group's source cannot change; delete it and create it again");
        tmp.start = old->start;
    }
    pthread_mutex_unlock(&gs->mu);
    if (rc) return rc;
    rec->len = 0;
    buf_printf(rec, "{\"name\":\"%s\",", name);
    render_config(&tmp, rec);
    buf_append(rec, "}", 1);
    return 0;
}

void groups_define_apply(groups_t *gs, factum_str_t rec, uint64_t pos) {
    factum_str_t v;
    int kind;
    char name[GROUP_MAX_NAME + 1];
    if (!json_member(rec, "name", &v, &kind) || kind != JSON_STRING || !str_into(v, name, sizeof name)) return;
    group tmp;
    memset(&tmp, 0, sizeof tmp);
    factum_error_t err;
    if (parse_definition(gs, rec, &tmp, false, &err)) return;
    uint64_t start = 0;
    if (json_member(rec, "start", &v, &kind)) str_u64(v, &start);
    pthread_mutex_lock(&gs->mu);
    group *g = find(gs, name);
    if (g) {
        /* an update: settings only */
        g->ack_timeout_ms = tmp.ack_timeout_ms, g->max_deliveries = tmp.max_deliveries, g->by_stream = tmp.by_stream;
        g->min_delay_ms = tmp.min_delay_ms, g->max_delay_ms = tmp.max_delay_ms;
    } else if ((g = calloc(1, sizeof *g))) {
        *g = tmp;
        snprintf(g->name, sizeof g->name, "%s", name);
        g->start = g->next = g->floor = start;
        g->created_pos = pos;
        g->link = gs->list;
        gs->list = g;
    }
    pthread_mutex_unlock(&gs->mu);
}

int groups_delete_prepare(groups_t *gs, const char *name, buf_t *rec, factum_error_t *err) {
    if (!groups_has(gs, name)) return err_set(err, FACTUM_ENOTFOUND, "no group '%s'", name);
    rec->len = 0;
    buf_printf(rec, "{\"name\":\"%s\"}", name);
    return 0;
}

static void group_free(group *g) {
    free(g->e);
    free(g->pk);
    free(g);
}

void groups_delete_apply(groups_t *gs, const char *name) {
    pthread_mutex_lock(&gs->mu);
    for (group **p = &gs->list; *p; p = &(*p)->link)
        if (!strcmp((*p)->name, name)) {
            group *g = *p;
            *p = g->link;
            group_free(g);
            break;
        }
    pthread_mutex_unlock(&gs->mu);
}

/* ---- state ---- */

static entry *entry_of(group *g, uint64_t key) {
    for (size_t i = 0; i < g->n; i++)
        if (g->e[i].key == key) return &g->e[i];
    return NULL;
}

static entry *entry_add(group *g, uint64_t key, uint64_t pos) {
    if (g->n == g->cap) {
        size_t cap = g->cap ? g->cap * 2 : 256;
        entry *e = realloc(g->e, cap * sizeof *e);
        if (!e) return NULL;
        g->e = e, g->cap = cap;
    }
    entry *x = &g->e[g->n++];
    *x = (entry){.key = key, .pos = pos};
    return x;
}

/* The lowest key not done, and drop done entries below it. */
static void refloor(group *g) {
    uint64_t f = g->next;
    for (size_t i = 0; i < g->n; i++)
        if (g->e[i].kind != E_DONE && g->e[i].key < f) f = g->e[i].key;
    g->floor = f;
    size_t w = 0;
    for (size_t i = 0; i < g->n; i++)
        if (!(g->e[i].kind == E_DONE && g->e[i].key < f)) g->e[w++] = g->e[i];
    g->n = w;
}

static size_t count_kind(const group *g, int kind) {
    size_t n = 0;
    for (size_t i = 0; i < g->n; i++)
        n += g->e[i].kind == kind;
    return n;
}

static uint64_t backoff_us(const group *g, uint32_t attempt) {
    /* min * 2^(attempt-1), at most max, then +-20% jitter. */
    uint64_t d = g->min_delay_ms;
    for (uint32_t i = 1; i < attempt && d < g->max_delay_ms; i++)
        d *= 2;
    d = MIN(d, (uint64_t)g->max_delay_ms) * 1000;
    uint64_t j = d / 5;
    return j ? d - j + hash64(&attempt, sizeof attempt, (uint64_t)clock_mono_ns()) % (2 * j + 1) : d;
}

/* A retry's due time from a record (the wall clock, µs) as a CLOCK_MONOTONIC one: what is left
   of it by the wall clock now, but never more than was asked when the record was written
   (due - at; a wall clock stepped back does not hold a retry back), nor less than 0. */
static int64_t due_mono(uint64_t due, uint64_t at) {
    int64_t left = (int64_t)MIN(due, (uint64_t)INT64_MAX) - clock_realtime_us();
    if (at && due >= at) left = MIN(left, (int64_t)MIN(due - at, (uint64_t)INT64_MAX / 2));
    return clock_mono_us() + MAX(0, left);
}

static void park(group *g, uint64_t key, uint64_t pos, uint64_t sh, uint32_t attempts, int64_t at,
                 factum_str_t reason) {
    if (g->npk == g->cappk) {
        size_t cap = g->cappk ? g->cappk * 2 : 64;
        parked *p = realloc(g->pk, cap * sizeof *p);
        if (!p) return;
        g->pk = p, g->cappk = cap;
    }
    parked *p = &g->pk[g->npk++];
    *p = (parked){key, pos, sh, attempts, at, ""};
    snprintf(p->reason, sizeof p->reason, "%.*s", (int)reason.len, reason.ptr ? reason.ptr : "");
    g->parked_total++;
}

static parked *parked_of(group *g, uint64_t key) {
    for (size_t i = 0; i < g->npk; i++)
        if (g->pk[i].key == key) return &g->pk[i];
    return NULL;
}

static void unpark(group *g, parked *p) { *p = g->pk[--g->npk]; }

/*
 * Applies one durable state record, live or at start-up (the one code path for both):
 *   Acked {keys, floor}
 *   Nacked {items: [{key, pos, attempt, to: retry|park|skip, due}], reason, at}
 *   Replayed {keys}      parked -> delivered again, attempts from 0
 *   ParkedDeleted {keys}
 */
static void apply_record(group *g, factum_str_t type, factum_str_t data, bool replaying) {
    factum_str_t arr, v;
    int kind;
    uint64_t key;
    json_iter_t it;
    g->since_checkpoint++;
    if (str_eq(type, str_c("Checkpoint"))) {
        /* The whole state at that point of the log (written when nothing else was in flight). */
        uint64_t floor = 0, cp_at = 0;
        json_member_u64(data, "floor", &floor);
        json_member_u64(data, "at", &cp_at); /* when it was written (older ones have none) */
        g->n = 0, g->npk = 0, g->next = g->floor = floor, g->since_checkpoint = 0;
        if (json_member(data, "entries", &arr, &kind) && kind == JSON_ARRAY) {
            json_iter_init(&it, arr);
            while (json_iter_element(&it, &v, &kind) == 1) {
                uint64_t pos = 0, sh = 0, attempt = 0, due = 0, done = 0, base = 0, replayed = 0;
                if (kind != JSON_OBJECT || !json_member_u64(v, "key", &key)) continue;
                json_member_u64(v, "pos", &pos), json_member_u64(v, "sh", &sh), json_member_u64(v, "attempt", &attempt),
                    json_member_u64(v, "due", &due);
                json_member_u64(v, "done", &done), json_member_u64(v, "base", &base),
                    json_member_u64(v, "replayed", &replayed);
                entry *x = entry_add(g, key, pos);
                if (x)
                    x->sh = sh, x->attempt = (uint32_t)attempt, x->kind = done ? E_DONE : E_RETRY,
                    x->t = due_mono(due, cp_at), x->base = (uint32_t)MIN(base, attempt), x->replayed = replayed != 0;
            }
        }
        if (json_member(data, "parked", &arr, &kind) && kind == JSON_ARRAY) {
            json_iter_init(&it, arr);
            while (json_iter_element(&it, &v, &kind) == 1) {
                uint64_t pos = 0, sh = 0, attempts = 0, at = 0;
                factum_str_t raw;
                int rk;
                buf_t reason = {0};
                if (kind != JSON_OBJECT || !json_member_u64(v, "key", &key)) continue;
                json_member_u64(v, "pos", &pos), json_member_u64(v, "sh", &sh),
                    json_member_u64(v, "attempts", &attempts), json_member_u64(v, "at", &at);
                if (json_member(v, "reason", &raw, &rk) && rk == JSON_STRING) json_unescape(raw, &reason);
                park(g, key, pos, sh, (uint32_t)attempts, (int64_t)at, (factum_str_t){reason.ptr, reason.len});
                buf_free(&reason);
            }
        }
    } else if (str_eq(type, str_c("Acked"))) {
        uint64_t floor = 0;
        if (replaying && json_member_u64(data, "floor", &floor) && floor > g->next) g->next = floor;
        if (replaying && floor > g->floor) g->floor = floor; /* everything below it is done (see Nacked) */
        if (!json_member(data, "keys", &arr, &kind) || kind != JSON_ARRAY) return;
        json_iter_init(&it, arr);
        while (json_iter_element(&it, &v, &kind) == 1) {
            if (kind != JSON_NUMBER || !str_u64(v, &key)) continue;
            entry *x = entry_of(g, key);
            /* A key below the record's floor needs no entry of its own (the floor says it is
               done), but one that exists — from a Checkpoint that saw it in flight — must be
               marked, or it would be delivered again. */
            if (!x && replaying && key >= floor) x = entry_add(g, key, 0);
            if (x && x->kind != E_DONE) x->kind = E_DONE, g->acked++;
        }
    } else if (str_eq(type, str_c("Nacked"))) {
        factum_str_t reason = {"", 0}, raw;
        buf_t rb = {0};
        uint64_t at = 0;
        if (json_member(data, "reason", &raw, &kind) && kind == JSON_STRING && !json_unescape(raw, &rb))
            reason = (factum_str_t){rb.ptr, rb.len};
        json_member_u64(data, "at", &at);
        if (json_member(data, "items", &arr, &kind) && kind == JSON_ARRAY) {
            json_iter_init(&it, arr);
            while (json_iter_element(&it, &v, &kind) == 1) {
                uint64_t pos = 0, attempt = 0, due = 0, sh = 0;
                factum_str_t to;
                int tk;
                if (kind != JSON_OBJECT || !json_member_u64(v, "key", &key) || !json_member(v, "to", &to, &tk))
                    continue;
                json_member_u64(v, "pos", &pos), json_member_u64(v, "attempt", &attempt),
                    json_member_u64(v, "due", &due), json_member_u64(v, "sh", &sh);
                entry *x = entry_of(g, key);
                /* An acknowledgement wins over a nack or timeout that crossed it: an event that is
                   done (or below the floor, so done) stays done. */
                if ((x && x->kind == E_DONE) || (!x && key < g->floor)) continue;
                if (!x) x = entry_add(g, key, pos);
                if (!x) continue;
                x->pos = pos, x->attempt = (uint32_t)attempt, x->sh = sh;
                if (json_key_is(to, "retry"))
                    x->kind = E_RETRY, x->t = due_mono(due, at);
                else if (json_key_is(to, "skip"))
                    x->kind = E_DONE;
                else {
                    x->kind = E_DONE; /* parked counts as done for the floor; it lives in the parked set */
                    if (!parked_of(g, key)) park(g, key, pos, sh, (uint32_t)attempt, (int64_t)at, reason);
                }
            }
        }
        buf_free(&rb);
    } else if (str_eq(type, str_c("Replayed")) || str_eq(type, str_c("ParkedDeleted"))) {
        bool replay = str_eq(type, str_c("Replayed"));
        if (!json_member(data, "keys", &arr, &kind) || kind != JSON_ARRAY) return;
        json_iter_init(&it, arr);
        while (json_iter_element(&it, &v, &kind) == 1) {
            parked *p;
            if (kind != JSON_NUMBER || !str_u64(v, &key) || !(p = parked_of(g, key))) continue;
            uint64_t pos = p->pos, sh = p->sh;
            uint32_t attempts = p->attempts;
            unpark(g, p);
            if (!replay) continue;
            entry *x = entry_of(g, key);
            if (!x) x = entry_add(g, key, pos);
            /* Delivered again with its attempt count reset (the next delivery is attempt 1; its id
               goes on from the deliveries before, so no id is reused), once: a failure parks it
               again rather than loop. */
            if (x)
                x->kind = E_RETRY, x->t = 0, x->attempt = x->base = attempts, x->replayed = true, x->pos = pos,
                x->sh = sh;
        }
    }
    refloor(g);
}

/* ---- pull ---- */

static bool wanted(const group *g, const factum_event_t *e) {
    if (g->src != SRC_ALL) return true;
    bool t = g->ntypes == 0, c = g->ncats == 0;
    for (int i = 0; i < g->ntypes && !t; i++)
        t = str_eq(e->type, str_c(g->types[i]));
    for (int i = 0; i < g->ncats && !c; i++)
        c = stream_in_category(e->stream, str_c(g->cats[i]));
    return t && c;
}

/* One delivery: an element of the JSON array (pull), or an SSE message (push). */
static void render_delivery(buf_t *out, size_t *count, const entry *x, const factum_event_t *e, bool sse) {
    if (sse)
        buf_printf(out, "id: %llu.%u\nevent: delivery\ndata: ", (unsigned long long)x->key, x->attempt);
    else
        buf_append(out, *count ? ",\n" : "\n", *count ? 2 : 1);
    size_t at = out->len;
    buf_printf(out, "{\"delivery_id\":\"%llu.%u\",\"attempt\":%u,\"event\":", (unsigned long long)x->key, x->attempt,
               x->attempt - x->base);
    size_t need = factum_event_json(e, NULL, 0);
    if (!buf_reserve(out, need + 1)) {
        factum_event_json(e, out->ptr + out->len, need + 1);
        out->len += need;
    }
    buf_append(out, "}", 1);
    if (sse) {
        for (size_t i = at; i < out->len; i++)
            if (out->ptr[i] == '\n' || out->ptr[i] == '\r') out->ptr[i] = ' '; /* JSON whitespace: one data line */
        buf_append(out, "\n\n", 2);
    }
    ++*count;
}

void groups_release_member(groups_t *gs, const char *name, uint64_t member) {
    pthread_mutex_lock(&gs->mu);
    group *g = find(gs, name);
    int64_t now = clock_mono_us();
    for (size_t i = 0; g && i < g->n; i++)
        if (g->e[i].kind == E_INFLIGHT && g->e[i].member == member) g->e[i].t = now; /* the keeper times them out now */
    if (g) pthread_cond_signal(&gs->cond);
    pthread_mutex_unlock(&gs->mu);
}

/* A read at `key` failed with something other than "not there": delivery stops there, and the
   group says so in its stats until a read there succeeds. Never marks anything done. */
static void stop_at(group *g, int rc, uint64_t key, uint64_t pos, bool cursor, const factum_error_t *err) {
    uint64_t named;
    bool filled = err->code == rc; /* the read filled err (reads always do; be sure) */
    g->err_code = rc;
    g->err_cursor = cursor;
    g->err_key = key;
    g->err_pos = filled && factum_error_position(err, &named) == 0 ? named : pos;
    snprintf(g->err_msg, sizeof g->err_msg, "%s", filled ? err->message : factum_strerror(rc));
}

/* by_stream: whether an event of stream sh with key must wait, because an earlier event of the
   same stream is in flight, due for retry, being parked, held, or parked. */
static bool stream_busy(const group *g, uint64_t sh, uint64_t key) {
    for (size_t i = 0; i < g->n; i++) {
        const entry *y = &g->e[i];
        if (y->sh == sh && y->key < key && y->kind != E_DONE) return true;
    }
    for (size_t i = 0; i < g->npk; i++)
        if (g->pk[i].sh == sh && g->pk[i].key < key) return true;
    return false;
}

int groups_pull(groups_t *gs, const char *name, size_t max, uint64_t member, buf_t *out, size_t *count,
                factum_error_t *err) {
    bool sse = member != 0;
    *count = 0;
    if (!sse) out->len = 0, buf_append(out, "[", 1);
    pthread_mutex_lock(&gs->mu);
    group *g = find(gs, name);
    if (!g) {
        pthread_mutex_unlock(&gs->mu);
        return err_set(err, FACTUM_ENOTFOUND, "no group '%s'", name);
    }
    factum_t *db = gs->db;
    int64_t now = clock_mono_us(); /* ack deadlines and retries wait on the monotonic clock */
    size_t in_flight = 0, mine = 0;
    for (size_t i = 0; i < g->n; i++) {
        in_flight += g->e[i].kind == E_INFLIGHT;
        mine += g->e[i].kind == E_INFLIGHT && member && g->e[i].member == member;
    }
    max = max > mine ? max - mine : 0; /* push: max is the member's limit on unacknowledged messages */
    bool stopped = false;              /* a read failed in this pull: nothing after it goes out */
    /* Retries that are due, and events held for their stream, first: oldest key first. */
    while (*count < max && in_flight < MAX_IN_FLIGHT) {
        entry *best = NULL;
        for (size_t i = 0; i < g->n; i++) {
            entry *x = &g->e[i];
            if (((x->kind == E_RETRY && x->t <= now) || x->kind == E_HELD) && (!best || x->key < best->key) &&
                !(g->by_stream && stream_busy(g, x->sh, x->key)))
                best = x;
        }
        if (!best) break;
        factum_result_t *r;
        factum_error_t rerr = {.code = 0};
        int rrc = factum_read_at(db, best->pos, &r, &rerr);
        if (rrc == FACTUM_ENOTFOUND) {
            best->kind = E_DONE; /* deleted or expired since: nothing left to deliver */
            continue;
        }
        if (rrc) { /* damage, or the disk failed: not done, and nothing after it goes out */
            stop_at(g, rrc, best->key, best->pos, false, &rerr);
            stopped = true;
            break;
        }
        if (g->err_code && !g->err_cursor && g->err_key == best->key) g->err_code = 0; /* readable again */
        if (best->kind == E_RETRY)
            g->redelivered++;
        else
            g->delivered++;
        best->attempt++, best->kind = E_INFLIGHT, best->t = now + (int64_t)g->ack_timeout_ms * 1000,
                         best->member = member;
        render_delivery(out, count, best, factum_result_event(r, 0), sse);
        in_flight++;
        factum_result_free(r);
    }
    /* Then new events from the cursor. */
    size_t held = 0;
    for (size_t i = 0; i < g->n; i++)
        held += g->e[i].kind == E_HELD;
    bool narrow = false; /* past a failed read: one event at a time, up to the damage */
    while (!stopped && *count < max && in_flight < MAX_IN_FLIGHT && held < MAX_HELD) {
        factum_result_t *r;
        size_t want = narrow ? 1 : MIN(max - *count, 1000);
        int rc;
        factum_error_t rerr = {.code = 0};
        if (g->src == SRC_STREAM)
            rc = factum_read_stream(db, str_c(g->src_name), g->next, want, 0, &r, &rerr);
        else {
            factum_query_t q = {.from = g->next,
                                .limit = want,
                                .category = g->src == SRC_CATEGORY ? str_c(g->src_name) : (factum_str_t){0}};
            rc = factum_read_all(db, &q, &r, &rerr);
        }
        if (rc == FACTUM_ENOTFOUND || rc == FACTUM_EDELETED) break; /* the stream is not there (yet) */
        if (rc && want > 1) {
            narrow = true; /* deliver what comes before the damage */
            continue;
        }
        if (rc) {
            /* A read of one event failed: the damage is the next event of the source. For a
               category or $all source nothing it takes lies between next and the position the
               error names (a read of one would have returned it), so the cursor moves there. */
            uint64_t pos;
            bool named = rerr.code == rc && factum_error_position(&rerr, &pos) == 0;
            if (named && g->src != SRC_STREAM && pos > g->next) g->next = pos;
            stop_at(g, rc, g->next, named ? pos : UINT64_MAX, true, &rerr);
            stopped = true;
            break;
        }
        size_t n = factum_result_count(r);
        for (size_t i = 0; i < n && *count < max && held < MAX_HELD; i++) {
            const factum_event_t *e = factum_result_event(r, i);
            uint64_t key = g->src == SRC_STREAM ? e->revision : e->position;
            g->next = key + 1;
            entry *x = entry_of(g, key);
            if (x) continue; /* acknowledged before a restart */
            if (!wanted(g, e)) continue;
            if (!(x = entry_add(g, key, e->position))) break;
            x->sh = hash64(e->stream.ptr, e->stream.len, 0);
            if (g->by_stream && stream_busy(g, x->sh, key)) {
                x->kind = E_HELD; /* an earlier event of its stream is still being handled */
                held++;
                continue;
            }
            x->attempt = 1, x->kind = E_INFLIGHT, x->t = now + (int64_t)g->ack_timeout_ms * 1000, x->member = member;
            render_delivery(out, count, x, e, sse);
            g->delivered++, in_flight++;
        }
        uint64_t next = factum_result_next(r);
        if (g->src != SRC_STREAM && n < want && next > g->next) g->next = next; /* filtered-out tail */
        factum_result_free(r);
        if (g->err_code && g->err_cursor && g->next > g->err_key) g->err_code = 0; /* read past where it stopped */
        if (n < want) break;
    }
    refloor(g);
    /* Stopped with nothing to hand out: the puller gets the error, not an empty answer. */
    int rc = g->err_code && !*count
                 ? err_set(err, g->err_code, "group '%s' stopped at %s %llu: %s", g->name,
                           g->src == SRC_STREAM ? "revision" : "position", (unsigned long long)g->err_key, g->err_msg)
                 : 0;
    pthread_mutex_unlock(&gs->mu);
    if (!sse) buf_append(out, *count ? "\n]" : "]", *count ? 2 : 1);
    return rc;
}

/* ---- ack and nack ---- */

/* Locks the groups for a state record of group `name` starting with `head` in rec; the group, or
   NULL with FACTUM_ENOTFOUND in *rc. The caller unlocks. */
static group *record_begin(groups_t *gs, const char *name, buf_t *rec, const char *head, int *rc, factum_error_t *err) {
    pthread_mutex_lock(&gs->mu);
    group *g = find(gs, name);
    *rc = g ? 0 : err_set(err, FACTUM_ENOTFOUND, "no group '%s'", name);
    rec->len = 0;
    buf_printf(rec, "%s", head);
    return g;
}

/* Parses "KEY.ATTEMPT". */
static bool delivery_id(factum_str_t s, uint64_t *key, uint32_t *attempt) {
    const char *dot = memchr(s.ptr, '.', s.len);
    uint64_t a;
    if (!dot || !str_u64((factum_str_t){s.ptr, (size_t)(dot - s.ptr)}, key) ||
        !str_u64((factum_str_t){dot + 1, s.len - (size_t)(dot - s.ptr) - 1}, &a) || a == 0 || a > UINT32_MAX)
        return false;
    *attempt = (uint32_t)a;
    return true;
}

/* One element of "delivery_ids": a string "KEY.ATTEMPT". 0, or FACTUM_EINVAL. */
static int element_id(factum_str_t v, int kind, uint64_t *key, uint32_t *attempt, factum_error_t *err) {
    buf_t s = {0};
    bool ok = kind == JSON_STRING && !json_unescape(v, &s) &&
              delivery_id((factum_str_t){s.ptr ? s.ptr : "", s.len}, key, attempt);
    buf_free(&s);
    return ok ? 0 : err_set(err, FACTUM_EINVAL, "delivery ids look like \"123.1\"");
}

/* Whether a retry of x parks it instead: past max_deliveries, or delivered again after a replay. */
static bool retry_parks(const group *g, const entry *x) {
    return x->replayed || x->attempt - x->base >= g->max_deliveries;
}

/* Why delivery KEY.ATTEMPT cannot be acked or nacked: it is not in flight as that attempt. */
static const char *refusal(group *g, const entry *x, uint64_t key, uint32_t attempt) {
    if (x && x->kind == E_INFLIGHT && x->attempt > attempt) return "timed out and delivered again";
    if (x && (x->kind == E_RETRY || x->kind == E_PARKING)) return "timed out or nacked: it will be delivered again";
    if (parked_of(g, key)) return "parked";
    if (key < g->floor || (x && x->kind == E_DONE)) return "done already (acked or skipped)";
    return "never delivered as that attempt";
}

/*
 * Walks the delivery ids of an ack or nack: each in flight as that attempt is handed to take
 * (which renders its part of the record), each done already is fine for an ack (acks are
 * idempotent), and the rest go to refused as {"delivery_id","reason"} elements with a comma
 * before all but the first. Nothing in the group changes here. FACTUM_EINVAL for a malformed
 * id; FACTUM_ECONFLICT when every id was refused (the message names the first). Mutex held.
 */
static int walk_ids(group *g, factum_str_t arr, bool done_ok, void (*take)(void *ctx, entry *x), void *ctx,
                    buf_t *refused, factum_error_t *err) {
    json_iter_t it;
    factum_str_t v;
    int kind, r, rc = 0;
    size_t ids = 0, nrefused = 0;
    char first[160] = "";
    json_iter_init(&it, arr);
    while (!rc && (r = json_iter_element(&it, &v, &kind)) == 1) {
        uint64_t key = 0;
        uint32_t attempt = 0;
        if ((rc = element_id(v, kind, &key, &attempt, err))) break;
        ids++;
        entry *x = entry_of(g, key);
        if (x && x->kind == E_INFLIGHT && x->attempt == attempt) {
            take(ctx, x);
            continue;
        }
        if (done_ok && (key < g->floor || (x && x->kind == E_DONE))) continue;
        const char *why = refusal(g, x, key, attempt);
        buf_printf(refused, "%s{\"delivery_id\":\"%llu.%u\",\"reason\":\"%s\"}", nrefused++ ? "," : "",
                   (unsigned long long)key, attempt, why);
        if (!first[0]) snprintf(first, sizeof first, "%llu.%u: %s", (unsigned long long)key, attempt, why);
    }
    if (!rc && nrefused && nrefused == ids)
        rc = err_set(err, FACTUM_ECONFLICT, "no delivery of the batch is in flight (%s)", first);
    return rc;
}

/* The body of an ack or nack: its "delivery_ids" array, and only the members named. */
static int batch_body(factum_str_t body, const char *what, const char *const *members, factum_str_t *arr,
                      factum_error_t *err) {
    int kind;
    if (!json_valid(body.ptr, body.len, &kind) || kind != JSON_OBJECT ||
        !json_member(body, "delivery_ids", arr, &kind) || kind != JSON_ARRAY)
        return err_set(err, FACTUM_EINVAL, "the body must be {\"delivery_ids\": [...]%s}", what);
    return json_only_members(body, "the body", members, err);
}

typedef struct ack_batch {
    buf_t *rec;
    size_t *n;
    uint64_t *keys;
    size_t nk, cap;
    bool nomem;
} ack_batch;

static void ack_take(void *ctx, entry *x) {
    ack_batch *b = ctx;
    if (b->nk == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        uint64_t *k = realloc(b->keys, cap * sizeof *k);
        if (!k) {
            b->nomem = true;
            return;
        }
        b->keys = k, b->cap = cap;
    }
    b->keys[b->nk++] = x->key;
    buf_printf(b->rec, "%s%llu", *b->n ? "," : "", (unsigned long long)x->key);
    ++*b->n;
}

int groups_ack_prepare(groups_t *gs, const char *name, factum_str_t body, buf_t *rec, size_t *n, buf_t *refused,
                       factum_error_t *err) {
    static const char *const members[] = {"delivery_ids", NULL};
    factum_str_t arr;
    *n = 0;
    int rc = batch_body(body, "", members, &arr, err);
    if (rc) return rc;
    group *g = record_begin(gs, name, rec, "{\"keys\":[", &rc, err);
    ack_batch b = {rec, n, NULL, 0, 0, false};
    if (!rc) rc = walk_ids(g, arr, true, ack_take, &b, refused, err);
    if (!rc && b.nomem) rc = err_set(err, FACTUM_ENOMEM, "out of memory");
    if (!rc) {
        /* The floor once these are done: everything below it is done (a lower bound that stays
           true whatever happens before this record is durable). */
        uint64_t f = g->next;
        for (size_t i = 0; i < g->n; i++) {
            bool acking = false;
            for (size_t k = 0; k < b.nk && !acking; k++)
                acking = b.keys[k] == g->e[i].key;
            if (g->e[i].kind != E_DONE && !acking && g->e[i].key < f) f = g->e[i].key;
        }
        buf_printf(rec, "],\"floor\":%llu}", (unsigned long long)f);
        if (*n) g->writes_pending++;
    }
    free(b.keys);
    pthread_mutex_unlock(&gs->mu);
    return rc;
}

void groups_apply(groups_t *gs, const char *name, factum_str_t type, factum_str_t rec) {
    pthread_mutex_lock(&gs->mu);
    group *g = find(gs, name);
    if (g) {
        apply_record(g, type, rec, false);
        if (g->writes_pending) g->writes_pending--;
    }
    pthread_mutex_unlock(&gs->mu);
}

void groups_write_abandoned(groups_t *gs, const char *name) {
    pthread_mutex_lock(&gs->mu);
    group *g = find(gs, name);
    if (g && g->writes_pending) g->writes_pending--;
    pthread_mutex_unlock(&gs->mu);
}

/* ---- nack, parked ---- */

/* Renders one Nacked item for x going `to` (retry, park or skip). */
static void nack_item(const group *g, buf_t *rec, const entry *x, const char *to, int64_t now, int64_t delay_ms,
                      bool first) {
    int64_t due = now + (delay_ms >= 0 ? delay_ms * 1000 : (int64_t)backoff_us(g, x->attempt - x->base));
    buf_printf(rec, "%s{\"key\":%llu,\"pos\":%llu,\"sh\":%llu,\"attempt\":%u,\"to\":\"%s\",\"due\":%lld}",
               first ? "" : ",", (unsigned long long)x->key, (unsigned long long)x->pos, (unsigned long long)x->sh,
               x->attempt, to, (long long)due);
}

typedef struct nack_batch {
    group *g;
    buf_t *rec;
    size_t *n;
    const char *action;
    int64_t now, delay_ms;
} nack_batch;

static void nack_take(void *ctx, entry *x) {
    nack_batch *b = ctx;
    /* A retry past max_deliveries (or after a replay) parks instead. */
    const char *to = !strcmp(b->action, "retry") && retry_parks(b->g, x) ? "park" : b->action;
    nack_item(b->g, b->rec, x, to, b->now, b->delay_ms, *b->n == 0);
    ++*b->n;
}

int groups_nack_prepare(groups_t *gs, const char *name, factum_str_t body, buf_t *rec, size_t *n, buf_t *refused,
                        factum_error_t *err) {
    static const char *const members[] = {"delivery_ids", "action", "delay_ms", "reason", NULL};
    factum_str_t arr, v;
    int kind;
    *n = 0;
    int rc = batch_body(body, ", \"action\": \"retry\"|\"park\"|\"skip\"", members, &arr, err);
    if (rc) return rc;
    char action[16] = "retry", reason[256] = "";
    uint64_t delay = 0;
    bool has_delay = false;
    if (json_member(body, "action", &v, &kind) &&
        (kind != JSON_STRING || !str_into(v, action, sizeof action) ||
         (strcmp(action, "retry") && strcmp(action, "park") && strcmp(action, "skip"))))
        return err_set(err, FACTUM_EINVAL, "'action' must be retry, park or skip");
    if (json_member(body, "reason", &v, &kind) && (kind != JSON_STRING || !str_into(v, reason, sizeof reason)))
        return err_set(err, FACTUM_EINVAL, "'reason' must be a string of at most 255 bytes");
    if (json_member(body, "delay_ms", &v, &kind)) {
        if (kind != JSON_NUMBER || !str_u64(v, &delay) || delay > 86400000)
            return err_set(err, FACTUM_EINVAL, "'delay_ms' must be 0 to 86400000");
        has_delay = true;
    }
    group *g = record_begin(gs, name, rec, "{\"items\":[", &rc, err);
    int64_t now = clock_realtime_us();
    nack_batch b = {g, rec, n, action, now, has_delay ? (int64_t)delay : -1};
    if (!rc) rc = walk_ids(g, arr, false, nack_take, &b, refused, err);
    if (!rc) {
        buf_printf(rec, "],\"reason\":");
        json_escape(rec, reason, strlen(reason));
        buf_printf(rec, ",\"at\":%lld}", (long long)now);
        if (*n) g->writes_pending++;
    }
    pthread_mutex_unlock(&gs->mu);
    return rc;
}

int groups_parked_prepare(groups_t *gs, const char *name, factum_str_t body, const char *one, buf_t *rec, size_t *n,
                          factum_error_t *err) {
    factum_str_t arr = {NULL, 0}, v;
    int kind;
    *n = 0;
    static const char *const members[] = {"delivery_ids", NULL};
    if (body.len && (!json_valid(body.ptr, body.len, &kind) || kind != JSON_OBJECT ||
                     (json_member(body, "delivery_ids", &arr, &kind) && kind != JSON_ARRAY)))
        return err_set(err, FACTUM_EINVAL, "the body must be {\"delivery_ids\": [...]} or empty (all)");
    int rc = body.len ? json_only_members(body, "the body", members, err) : 0;
    if (rc) return rc;
    group *g = record_begin(gs, name, rec, "{\"keys\":[", &rc, err);
    if (!rc && one) {
        uint64_t key;
        if (!str_u64(str_c(one), &key) || !parked_of(g, key))
            rc = err_set(err, FACTUM_ENOTFOUND, "no parked event '%s'", one);
        else
            buf_printf(rec, "%llu", (unsigned long long)key), *n = 1;
    } else if (!rc && arr.ptr) {
        json_iter_t it;
        json_iter_init(&it, arr);
        while (!rc && json_iter_element(&it, &v, &kind) == 1) {
            char s[32];
            uint64_t key;
            if (kind != JSON_STRING || !str_into(v, s, sizeof s) || !str_u64(str_c(s), &key) || !parked_of(g, key))
                rc = err_set(err, FACTUM_ENOTFOUND, "not a parked event: %.*s", (int)MIN(v.len, 40), v.ptr);
            else
                buf_printf(rec, "%s%llu", *n ? "," : "", (unsigned long long)key), ++*n;
        }
    } else if (!rc) {
        for (size_t i = 0; i < g->npk; i++)
            buf_printf(rec, "%s%llu", i ? "," : "", (unsigned long long)g->pk[i].key);
        *n = g->npk;
    }
    buf_printf(rec, "]}");
    if (!rc && *n) g->writes_pending++;
    pthread_mutex_unlock(&gs->mu);
    return rc;
}

static void render_parked(groups_t *gs, const parked *p, buf_t *out) {
    char at[32];
    time_format_rfc3339(p->at, at);
    buf_printf(out, "{\"delivery_id\":\"%llu\",\"attempts\":%u,\"reason\":", (unsigned long long)p->key, p->attempts);
    json_escape(out, p->reason, strlen(p->reason));
    buf_printf(out, ",\"parked_at\":\"%s\",\"event\":", at);
    factum_result_t *r;
    if (factum_read_at(gs->db, p->pos, &r, NULL) == 0) {
        const factum_event_t *e = factum_result_event(r, 0);
        size_t need = factum_event_json(e, NULL, 0);
        if (!buf_reserve(out, need + 1)) factum_event_json(e, out->ptr + out->len, need + 1), out->len += need;
        factum_result_free(r);
    } else {
        buf_printf(out, "null");
    }
    buf_append(out, "}", 1);
}

int groups_parked_list(groups_t *gs, const char *name, const char *one, buf_t *out) {
    pthread_mutex_lock(&gs->mu);
    group *g = find(gs, name);
    int rc = g ? 0 : FACTUM_ENOTFOUND;
    if (g && one) {
        uint64_t key;
        parked *p = str_u64(str_c(one), &key) ? parked_of(g, key) : NULL;
        if (p)
            render_parked(gs, p, out);
        else
            rc = FACTUM_ENOTFOUND;
    } else if (g) {
        buf_append(out, "[", 1);
        for (size_t i = 0; i < g->npk; i++) {
            buf_append(out, i ? ",\n" : "\n", i ? 2 : 1);
            render_parked(gs, &g->pk[i], out);
        }
        buf_append(out, g->npk ? "\n]" : "]", g->npk ? 2 : 1);
    }
    pthread_mutex_unlock(&gs->mu);
    return rc;
}

/* ---- the keeper: ack timeouts ---- */

/*
 * Writes a Checkpoint: the group's whole state. Called with the mutex held and nothing in
 * flight for the group, and appended while still holding it, so no other record of the group
 * can land between what the snapshot saw and the snapshot itself: replaying from it is exact.
 * true once it is durable, with its revision in *rev: the records before it are superseded.
 */
static bool write_checkpoint(groups_t *gs, group *g, buf_t *rec, uint64_t *rev) {
    int64_t now = clock_realtime_us(), now_mono = clock_mono_us(); /* due times are written on the wall clock */
    rec->len = 0;
    buf_printf(rec, "{\"floor\":%llu,\"at\":%lld,\"entries\":[", (unsigned long long)g->floor, (long long)now);
    size_t k = 0;
    for (size_t i = 0; i < g->n; i++) {
        const entry *x = &g->e[i];
        if (x->kind == E_HELD) continue; /* read again from the floor */
        /* in flight or being parked: delivered again after a restart, like any unacked event */
        bool done = x->kind == E_DONE;
        int64_t due = x->kind == E_RETRY ? now + MAX(0, x->t - now_mono) : now;
        buf_printf(rec, "%s{\"key\":%llu,\"pos\":%llu,\"sh\":%llu,\"attempt\":%u,\"done\":%d,\"due\":%lld",
                   k++ ? "," : "", (unsigned long long)x->key, (unsigned long long)x->pos, (unsigned long long)x->sh,
                   x->attempt, done, (long long)due);
        if (x->replayed) buf_printf(rec, ",\"base\":%u,\"replayed\":1", x->base);
        buf_append(rec, "}", 1);
    }
    buf_printf(rec, "],\"parked\":[");
    for (size_t i = 0; i < g->npk; i++) {
        const parked *p = &g->pk[i];
        buf_printf(rec,
                   "%s{\"key\":%llu,\"pos\":%llu,\"sh\":%llu,\"attempts\":%u,\"at\":%lld,\"reason\":", i ? "," : "",
                   (unsigned long long)p->key, (unsigned long long)p->pos, (unsigned long long)p->sh, p->attempts,
                   (long long)p->at);
        json_escape(rec, p->reason, strlen(p->reason));
        buf_append(rec, "}", 1);
    }
    buf_append(rec, "]}", 2);
    if (rec->len > CHECKPOINT_MAX_BYTES) {
        g->since_checkpoint = CHECKPOINT_EVERY / 2; /* too big for one record now: try again later */
        return false;
    }
    char stream[GROUP_MAX_NAME + 8];
    groups_state_stream(g->name, stream);
    factum_event_t ev = {.type = str_c("Checkpoint"), .data = {rec->ptr, rec->len}, .data_format = FACTUM_DATA_JSON};
    factum_append_result_t res;
    if (factum_append(gs->db, str_c(stream), FACTUM_EXPECT_ANY, &ev, 1, &res, NULL)) {
        g->since_checkpoint = CHECKPOINT_EVERY / 2; /* refused (too large for a segment, a failing disk): later */
        return false;
    }
    g->since_checkpoint = 0;
    *rev = res.last_revision;
    return true;
}

static void *keeper(void *arg) {
    groups_t *gs = arg;
    buf_t rec = {0};
    pthread_mutex_lock(&gs->mu);
    while (!gs->stop) {
        struct timespec ts = clock_mono_after(50000);
        pthread_cond_timedwait(&gs->cond, &gs->mu, &ts);
        int64_t now = clock_mono_us(), now_wall = clock_realtime_us(); /* deadlines; and what records say */
        for (group *g = gs->list; g; g = g->link) {
            int last = (g->rate_i + 10) % 11;
            if (g->rate_n && now - g->rate_t[last] < 1000000) continue;
            g->rate_t[g->rate_i] = now, g->rate_d[g->rate_i] = g->delivered, g->rate_r[g->rate_i] = g->redelivered;
            g->rate_i = (g->rate_i + 1) % 11;
            g->rate_n = MIN(g->rate_n + 1, 11);
        }
        char superseded[GROUP_MAX_NAME + 8] = "";
        uint64_t cp_rev = 0;
        for (group *g = gs->list; g && !gs->stop && !superseded[0]; g = g->link)
            if (g->since_checkpoint >= CHECKPOINT_EVERY && !g->writes_pending && write_checkpoint(gs, g, &rec, &cp_rev))
                groups_state_stream(g->name, superseded);
        if (superseded[0]) {
            /* The Checkpoint is durable: the group's records before it are reclaimable (a crash
               before this leaves them visible, and a start reads from the Checkpoint anyway). */
            pthread_mutex_unlock(&gs->mu);
            replay_forget_before(gs->db, superseded, cp_rev, NULL);
            pthread_mutex_lock(&gs->mu);
            continue; /* the list may have changed meanwhile */
        }
        for (group *g = gs->list; g && !gs->stop; g = g->link) {
            rec.len = 0;
            buf_printf(&rec, "{\"items\":[");
            size_t n = 0;
            for (size_t i = 0; i < g->n; i++) {
                entry *x = &g->e[i];
                if (x->kind != E_INFLIGHT || x->t > now) continue;
                nack_item(g, &rec, x, retry_parks(g, x) ? "park" : "retry", now_wall, -1, n == 0);
                x->kind = E_PARKING; /* neither deliverable nor expiring again until written */
                n++;
            }
            if (!n) continue;
            buf_printf(&rec, "],\"reason\":\"ack timeout\",\"at\":%lld}", (long long)now_wall);
            char name[GROUP_MAX_NAME + 1], stream[GROUP_MAX_NAME + 8];
            snprintf(name, sizeof name, "%s", g->name);
            groups_state_stream(name, stream);
            factum_event_t ev = {.type = str_c("Nacked"), .data = {rec.ptr, rec.len}, .data_format = FACTUM_DATA_JSON};
            g->writes_pending++;
            pthread_mutex_unlock(&gs->mu);
            int rc = factum_append(gs->db, str_c(stream), FACTUM_EXPECT_ANY, &ev, 1, NULL, NULL);
            pthread_mutex_lock(&gs->mu);
            group *again = find(gs, name);
            if (again != g) break; /* deleted meanwhile: the list changed under us */
            g->writes_pending--;
            if (rc == 0)
                apply_record(g, str_c("Nacked"), (factum_str_t){rec.ptr, rec.len}, false);
            else
                for (size_t i = 0; i < g->n; i++)
                    if (g->e[i].kind == E_PARKING)
                        g->e[i].kind = E_RETRY, g->e[i].t = now; /* the disk refuses: keep it moving */
            break; /* the list may have changed while unlocked: start over next round */
        }
    }
    pthread_mutex_unlock(&gs->mu);
    buf_free(&rec);
    return NULL;
}

/* ---- show ---- */

static void stats_of(groups_t *gs, group *g, group_stats *st) {
    memset(st, 0, sizeof *st);
    snprintf(st->name, sizeof st->name, "%s", g->name);
    factum_t *db = gs->db;
    uint64_t head = factum_head_position(db);
    uint64_t end = g->src == SRC_STREAM ? (uint64_t)(factum_stream_revision(db, str_c(g->src_name)) + 1) : head;
    st->next = g->next, st->checkpoint = g->floor;
    st->has_lag_events = g->src == SRC_STREAM;
    if (st->has_lag_events)
        st->lag_events = end > g->floor ? end - g->floor : 0;
    else
        st->lag_positions = end > g->floor ? end - g->floor : 0;
    st->in_flight = count_kind(g, E_INFLIGHT), st->retrying = count_kind(g, E_RETRY), st->held = count_kind(g, E_HELD);
    st->parked = g->npk, st->delivered = g->delivered, st->redelivered = g->redelivered, st->acked = g->acked;
    st->stopped = g->err_code != 0;
    int64_t now = clock_realtime_us(), oldest = now;
    for (size_t i = 0; i < g->npk; i++)
        oldest = MIN(oldest, g->pk[i].at);
    if (g->rate_n >= 2) {
        int first = g->rate_n == 11 ? g->rate_i : 0, last = (g->rate_i + 10) % 11;
        double dt = (double)(g->rate_t[last] - g->rate_t[first]) / 1e6;
        if (dt > 0) {
            st->delivery_rate = (double)(g->rate_d[last] - g->rate_d[first]) / dt;
            st->redelivery_rate = (double)(g->rate_r[last] - g->rate_r[first]) / dt;
        }
    }
    st->oldest_parked_s = (double)(now - oldest) / 1e6;
    /* Lag in time: how old the oldest event not yet done is (and, for a stream source, how far
       back in the log it lies). */
    if (end > g->floor) {
        factum_result_t *r = NULL;
        int rc;
        if (g->src == SRC_STREAM)
            rc = factum_read_stream(db, str_c(g->src_name), g->floor, 1, 0, &r, NULL);
        else {
            factum_query_t q = {.from = g->floor,
                                .limit = 1,
                                .category = g->src == SRC_CATEGORY ? str_c(g->src_name) : (factum_str_t){0}};
            rc = factum_read_all(db, &q, &r, NULL);
        }
        if (!rc && factum_result_count(r)) {
            const factum_event_t *e = factum_result_event(r, 0);
            st->lag_seconds = MAX(0, (double)(now - e->time_us) / 1e6);
            if (g->src == SRC_STREAM) st->lag_positions = head > e->position ? head - e->position : 0;
        }
        factum_result_free(r);
    }
}

static void render_group(groups_t *gs, group *g, buf_t *out) {
    group_stats st;
    stats_of(gs, g, &st);
    buf_printf(out, "{\"name\":\"%s\",", g->name);
    render_config(g, out);
    buf_printf(out, ",\"stats\":{\"next\":%llu,\"checkpoint\":%llu,", (unsigned long long)st.next,
               (unsigned long long)st.checkpoint);
    if (st.has_lag_events) buf_printf(out, "\"lag_events\":%llu,", (unsigned long long)st.lag_events);
    buf_printf(out,
               "\"lag_positions\":%llu,\"lag_seconds\":%.3f,"
               "\"in_flight\":%zu,\"retrying\":%zu,\"held\":%zu,\"parked\":%zu,\"oldest_parked_seconds\":%.3f,"
               "\"delivered\":%llu,\"redelivered\":%llu,\"acked\":%llu,\"delivery_rate\":%.1f,"
               "\"redelivery_rate\":%.1f}",
               (unsigned long long)st.lag_positions, st.lag_seconds, st.in_flight, st.retrying, st.held, st.parked,
               st.oldest_parked_s, (unsigned long long)st.delivered, (unsigned long long)st.redelivered,
               (unsigned long long)st.acked, st.delivery_rate, st.redelivery_rate);
    /* Outside "stats" (which holds numbers only): whether a failed read stopped delivery, and where. */
    buf_printf(out, ",\"status\":\"%s\",\"last_error\":", g->err_code ? "stopped" : "running");
    if (!g->err_code) {
        buf_append(out, "null}", 5);
        return;
    }
    buf_printf(out, "{\"%s\":%llu,", g->src == SRC_STREAM ? "revision" : "position", (unsigned long long)g->err_key);
    if (g->src == SRC_STREAM && g->err_pos != UINT64_MAX)
        buf_printf(out, "\"position\":%llu,", (unsigned long long)g->err_pos);
    buf_printf(out, "\"code\":\"%s\",\"message\":", factum_errname(g->err_code));
    json_escape(out, g->err_msg, strlen(g->err_msg));
    buf_append(out, "}}", 2);
}

void groups_each_stats(groups_t *gs, void (*fn)(void *ctx, const group_stats *st), void *ctx) {
    pthread_mutex_lock(&gs->mu);
    for (group *g = gs->list; g; g = g->link) {
        group_stats st;
        stats_of(gs, g, &st);
        fn(ctx, &st);
    }
    pthread_mutex_unlock(&gs->mu);
}

bool groups_has(groups_t *gs, const char *name) {
    pthread_mutex_lock(&gs->mu);
    bool has = find(gs, name) != NULL;
    pthread_mutex_unlock(&gs->mu);
    return has;
}

int groups_show(groups_t *gs, const char *name, buf_t *out) {
    pthread_mutex_lock(&gs->mu);
    group *g = find(gs, name);
    if (g) render_group(gs, g, out);
    pthread_mutex_unlock(&gs->mu);
    return g ? 0 : FACTUM_ENOTFOUND;
}

void groups_list(groups_t *gs, buf_t *out) {
    pthread_mutex_lock(&gs->mu);
    buf_append(out, "[", 1);
    for (group *g = gs->list; g; g = g->link) {
        if (g != gs->list) buf_append(out, ",", 1);
        render_group(gs, g, out);
    }
    buf_append(out, "]", 1);
    pthread_mutex_unlock(&gs->mu);
}

/* ---- open ---- */

/* Checkpoints of this group (not of an earlier group of the same name). */
static int pick_checkpoint(void *ctx, const factum_event_t *e) {
    const group *g = ctx;
    if (e->position < g->created_pos) return PICK_STOP;
    return str_eq(e->type, str_c("Checkpoint")) ? PICK_TAKE : PICK_SKIP;
}

/* Where a group's replay starts: its latest Checkpoint, or the beginning. A checkpoint that
   cannot be read is an error: the records before it may be truncated away. */
static int replay_from(factum_t *db, const char *stream, group *g, uint64_t *rev, factum_error_t *err) {
    const factum_event_t *e;
    factum_result_t *r;
    int rc = replay_find_newest(db, stream, pick_checkpoint, g, &e, &r, err);
    *rev = r ? e->revision : 0;
    factum_result_free(r);
    return rc;
}

static void replay_definition(void *ctx, const factum_event_t *e) {
    groups_t *gs = ctx;
    if (str_eq(e->type, str_c("GroupDefined")))
        groups_define_apply(gs, e->data, e->position);
    else if (str_eq(e->type, str_c("GroupDeleted"))) {
        factum_str_t v;
        int kind;
        char name[GROUP_MAX_NAME + 1];
        if (json_member(e->data, "name", &v, &kind) && kind == JSON_STRING && str_into(v, name, sizeof name))
            groups_delete_apply(gs, name);
    }
}

static void replay_state(void *ctx, const factum_event_t *e) {
    group *g = ctx;
    if (e->position < g->created_pos) return; /* an earlier group of the same name */
    apply_record(g, e->type, e->data, true);
}

int groups_open(factum_t *db, groups_t **out, factum_error_t *err) {
    groups_t *gs = calloc(1, sizeof *gs);
    if (!gs) return err_set(err, FACTUM_ENOMEM, "out of memory");
    gs->db = db;
    pthread_mutex_init(&gs->mu, NULL);
    clock_mono_cond_init(&gs->cond); /* the keeper's wait */
    int rc = replay_stream(db, GROUPS_STREAM, 0, replay_definition, gs, err);
    for (group *g = gs->list; g && !rc; g = g->link) {
        char stream[GROUP_MAX_NAME + 8];
        groups_state_stream(g->name, stream);
        uint64_t from;
        if (!(rc = replay_from(db, stream, g, &from, err))) rc = replay_stream(db, stream, from, replay_state, g, err);
        refloor(g);
    }
    if (!rc && pthread_create(&gs->keeper, NULL, keeper, gs)) rc = err_set(err, FACTUM_ENOMEM, "cannot start a thread");
    if (rc) {
        gs->stop = true; /* no keeper to join */
        groups_close(gs);
        return rc;
    }
    *out = gs;
    return 0;
}

void groups_close(groups_t *gs) {
    if (!gs) return;
    pthread_mutex_lock(&gs->mu);
    bool running = !gs->stop;
    gs->stop = true;
    pthread_cond_signal(&gs->cond);
    pthread_mutex_unlock(&gs->mu);
    if (running) pthread_join(gs->keeper, NULL);
    while (gs->list) {
        group *g = gs->list;
        gs->list = g->link;
        group_free(g);
    }
    pthread_mutex_destroy(&gs->mu);
    free(gs);
}
