/*
 * api_groups.c — the /groups API over groups.c:
 *   PUT /groups/{g} (201 created / 200 updated), GET /groups, GET /groups/{g}, DELETE /groups/{g}
 *   POST /groups/{g}/messages?max=N&wait_ms=T (long poll), POST /groups/{g}/ack, .../nack
 *   GET /groups/{g}/parked, POST /groups/{g}/parked/replay, DELETE /groups/{g}/parked/{id}
 * Every change is a record appended to $groups or $group-{g}; once durable, the record it wrote
 * (kept with the connection, never read back from the log) is applied to the in-memory group,
 * then answered. The engine (src/group/) returns structs; this file renders them as JSON, and
 * groups_render_deliveries as the SSE messages of push delivery too.
 */
#include "api.h"

#include "../base/log.h"
#include "../base/json.h"
#include "../group/groups.h"

#include <stdio.h>
#include <stdlib.h>

#define PULL_MAX 1000
#define WAIT_MAX_MS 60000

/* What a write's done function needs: the record written (applied as is once durable), its
   type, and for an ack or a nack the ids refused. Owned by c->job until done runs. */
typedef struct kept {
    groups_change ch;
    char type[16];
    bool with_refused;
    limit_hold *hold; /* a new group's place under --max-groups, until it is applied (or not) */
} kept;

static void kept_free(void *job) {
    kept *k = job;
    limits_release(k->hold);
    groups_change_free(&k->ch);
    free(k);
}

/* Moves ch into a new c->job. */
static kept *keep_change(conn *c, groups_change *ch, const char *type, bool with_refused) {
    kept *k = calloc(1, sizeof *k);
    if (!k) {
        log_msg(LOG_LEVEL_ERROR, "out of memory (a group's write)");
        abort();
    }
    k->ch = *ch, *ch = (groups_change){0};
    snprintf(k->type, sizeof k->type, "%s", type);
    k->with_refused = with_refused;
    c->job = k, c->job_free = kept_free;
    return k;
}

static kept *take_kept(conn *c) {
    kept *k = c->job;
    c->job = NULL;
    return k;
}

/* The definition and stats of a group (GET /groups/{g}). */
static void render_group(buf_t *out, const char *name, const groups_view *v) {
    const group_stats *st = &v->st;
    buf_printf(out, "{\"name\":\"%s\",", name);
    buf_append(out, v->config.ptr ? v->config.ptr : "", v->config.len);
    buf_printf(out, ",\"stats\":{\"next\":%llu,\"checkpoint\":%llu,", (unsigned long long)st->next,
               (unsigned long long)st->checkpoint);
    if (st->has_lag_events) buf_printf(out, "\"lag_events\":%llu,", (unsigned long long)st->lag_events);
    buf_printf(out,
               "\"lag_positions\":%llu,\"lag_seconds\":%.3f,"
               "\"in_flight\":%zu,\"retrying\":%zu,\"held\":%zu,\"parked\":%zu,\"oldest_parked_seconds\":%.3f,"
               "\"push_members\":%u,\"waiting_pulls\":%u,"
               "\"delivered\":%llu,\"redelivered\":%llu,\"acked\":%llu,\"delivery_rate\":%.1f,"
               "\"redelivery_rate\":%.1f}",
               (unsigned long long)st->lag_positions, st->lag_seconds, st->in_flight, st->retrying, st->held,
               st->parked, st->oldest_parked_s, st->push_members, st->waiting_pulls, (unsigned long long)st->delivered,
               (unsigned long long)st->redelivered, (unsigned long long)st->acked, st->delivery_rate,
               st->redelivery_rate);
    /* Outside "stats" (which holds numbers only): whether a failed read stopped delivery, and where. */
    buf_printf(out, ",\"status\":\"%s\",\"last_error\":", st->err_code ? "stopped" : "running");
    if (!st->err_code) {
        buf_append(out, "null}", 5);
        return;
    }
    buf_printf(out, "{\"%s\":%llu,", st->err_is_revision ? "revision" : "position", (unsigned long long)st->err_key);
    if (st->err_is_revision && st->err_pos != UINT64_MAX)
        buf_printf(out, "\"position\":%llu,", (unsigned long long)st->err_pos);
    buf_printf(out, "\"code\":\"%s\",\"message\":", factum_errname(st->err_code));
    json_escape(out, st->err_msg, strlen(st->err_msg));
    buf_append(out, "}}", 2);
}

static int show(groups_t *gs, const char *name, buf_t *out) {
    groups_view v;
    int rc = groups_show(gs, name, &v);
    if (rc) return rc;
    render_group(out, name, &v);
    buf_free(&v.config);
    return 0;
}

static void list(groups_t *gs, buf_t *out) {
    groups_view *v;
    size_t n;
    groups_list(gs, &v, &n);
    buf_append(out, "[", 1);
    for (size_t i = 0; i < n; i++) {
        if (i) buf_append(out, ",", 1);
        render_group(out, v[i].st.name, &v[i]);
        buf_free(&v[i].config);
    }
    buf_append(out, "]", 1);
    free(v);
}

/* One event as JSON, into out. */
static void event_json(buf_t *out, const factum_event_t *e) {
    size_t need = factum_event_json(e, NULL, 0);
    if (!buf_reserve(out, need + 1)) {
        factum_event_json(e, out->ptr + out->len, need + 1);
        out->len += need;
    }
}

void groups_render_deliveries(buf_t *out, const groups_batch *b, bool sse, bool raw) {
    for (size_t i = 0; i < b->n; i++) {
        const groups_delivery *d = &b->d[i];
        if (sse)
            buf_printf(out, "id: %llu.%u\nevent: delivery\ndata: ", (unsigned long long)d->key, d->id_attempt);
        else
            buf_append(out, i ? ",\n" : "\n", i ? 2 : 1);
        size_t at = out->len;
        buf_printf(out, "{\"delivery_id\":\"%llu.%u\",\"attempt\":%u,\"event\":", (unsigned long long)d->key,
                   d->id_attempt, d->attempt);
        event_json(out, raw && d->raw ? d->raw : d->event);
        buf_append(out, "}", 1);
        if (sse) {
            for (size_t j = at; j < out->len; j++)
                if (out->ptr[j] == '\n' || out->ptr[j] == '\r') out->ptr[j] = ' '; /* JSON whitespace: one data line */
            buf_append(out, "\n\n", 2);
        }
    }
}

/* A parked event and the event itself (null when it cannot be read). */
static void render_parked(factum_t *db, const groups_parked *p, buf_t *out) {
    char at[32];
    time_format_rfc3339(p->at, at);
    buf_printf(out, "{\"delivery_id\":\"%llu\",\"attempts\":%u,\"reason\":", (unsigned long long)p->key, p->attempts);
    json_escape(out, p->reason, strlen(p->reason));
    buf_printf(out, ",\"parked_at\":\"%s\",\"event\":", at);
    factum_result_t *r;
    if (factum_read_at(db, p->pos, &r, NULL) == 0) {
        event_json(out, factum_result_event(r, 0));
        factum_result_free(r);
    } else {
        buf_printf(out, "null");
    }
    buf_append(out, "}", 1);
}

/* The parked list, or one parked event; FACTUM_ENOTFOUND. */
static int parked_list(factum_t *db, groups_t *gs, const char *name, const char *one, buf_t *out) {
    groups_parked *p;
    size_t n;
    int rc = groups_parked_get(gs, name, one, &p, &n);
    if (rc) return rc;
    if (one)
        render_parked(db, &p[0], out);
    else {
        buf_append(out, "[", 1);
        for (size_t i = 0; i < n; i++) {
            buf_append(out, i ? ",\n" : "\n", i ? 2 : 1);
            render_parked(db, &p[i], out);
        }
        buf_append(out, n ? "\n]" : "]", n ? 2 : 1);
    }
    free(p);
    return 0;
}

/* A state record's write failed: the group learns it will not be applied. */
static bool check_state_written(conn *c) {
    if (server_written(c)) return true;
    groups_write_abandoned(c->l->srv->groups, c->ar_note);
    return false;
}

static void defined_done(conn *c) {
    kept *k = take_kept(c);
    if (server_written(c)) {
        groups_define_apply(c->l->srv->groups, (factum_str_t){k->ch.rec.ptr, k->ch.rec.len}, c->ar_res.last_position);
        buf_t b = {0};
        show(c->l->srv->groups, c->ar_note, &b);
        conn_respond(c, c->ar_at ? 201 : 200, "application/json", NULL, b.ptr, b.len);
        buf_free(&b);
    }
    kept_free(k);
}

static void forgotten(void *ctx, int rc, const factum_append_result_t *res, const char *msg) {
    (void)ctx, (void)rc, (void)res, (void)msg;
}

static void deleted_done(conn *c) {
    kept_free(take_kept(c));
    if (!server_written(c)) return;
    groups_delete_apply(c->l->srv->groups, c->ar_note);
    /* Its state records are superseded: soft-delete $group-NAME so a scavenge takes them. Only
       if nothing was appended to it since (a group of the same name made again at once keeps
       its records); a refusal changes nothing. */
    char stream[GROUP_MAX_NAME + 8];
    groups_state_stream(c->ar_note, stream);
    int64_t last = factum_stream_revision(c->l->srv->db, str_c(stream));
    if (last >= 0) factum_delete_stream_async(c->l->srv->db, str_c(stream), last, 0, forgotten, NULL, NULL);
    char body[200];
    int n = snprintf(body, sizeof body, "{\"name\":\"%s\",\"deleted\":true}", c->ar_note);
    conn_respond(c, 200, "application/json", NULL, body, (size_t)n);
}

/* The answer to a state change: {"acked"|"nacked"|"replayed"|"deleted": n}, and for an ack or a
   nack the ids it did not take, with why ("refused": [{"delivery_id","reason"}]). */
/* "refused": [{"delivery_id","reason"}], the ids of an ack or nack not taken. */
static void render_refused(buf_t *b, const groups_change *ch) {
    buf_printf(b, "\"refused\":[");
    for (size_t i = 0; i < ch->nrefused; i++)
        buf_printf(b, "%s{\"delivery_id\":\"%llu.%u\",\"reason\":\"%s\"}", i ? "," : "",
                   (unsigned long long)ch->refused[i].key, ch->refused[i].attempt, ch->refused[i].reason);
    buf_append(b, "]", 1);
}

static void answer_change(conn *c, const char *type, size_t n, const groups_change *refused) {
    const char *what = !strcmp(type, "Acked")      ? "acked"
                       : !strcmp(type, "Nacked")   ? "nacked"
                       : !strcmp(type, "Replayed") ? "replayed"
                                                   : "deleted";
    buf_t b = {0};
    buf_printf(&b, "{\"%s\":%zu", what, n);
    if (refused) buf_append(&b, ",", 1), render_refused(&b, refused);
    buf_append(&b, "}", 1);
    conn_respond(c, 200, "application/json", NULL, b.ptr, b.len);
    buf_free(&b);
}

/* A state record (Acked, Nacked, Replayed, ParkedDeleted) is durable: apply the record written
   (not read back) and answer. */
static void recorded_done(conn *c) {
    kept *k = take_kept(c);
    if (check_state_written(c)) {
        groups_apply(c->l->srv->groups, c->ar_note, str_c(k->type), (factum_str_t){k->ch.rec.ptr, k->ch.rec.len});
        answer_change(c, k->type, (size_t)c->ar_at, k->with_refused ? &k->ch : NULL);
    }
    kept_free(k);
}

/* Submits the record in ch, kept (moved to c->job) for done; false (and answered, and ch freed)
   if it could not be. */
static bool submit(conn *c, const char *stream, const char *type, groups_change *ch, bool with_refused,
                   append_done_fn done) {
    kept *k = keep_change(c, ch, type, with_refused);
    factum_event_t rec = {.type = str_c(type), .data = {k->ch.rec.ptr, k->ch.rec.len}, .data_format = FACTUM_DATA_JSON};
    factum_error_t err;
    int rc = server_submit_append(c, str_c(stream), FACTUM_EXPECT_ANY, &rec, 1, done, &err);
    if (rc) {
        server_problem(c, rc, err.message);
        kept_free(take_kept(c));
    }
    return rc == 0;
}

/* One pull; answers and returns true, or returns false when there is nothing yet. */
static bool groups_try_pull(conn *c, bool final) {
    groups_batch d = {0};
    factum_error_t err;
    int rc = groups_pull(c->l->srv->groups, c->ar_note, c->pull_max, 0, &d, &err);
    if (rc)
        server_problem(c, rc, err.message);
    else if (d.n || final) {
        buf_t b = {0};
        buf_append(&b, "[", 1);
        groups_render_deliveries(&b, &d, false, c->pull_raw);
        buf_append(&b, d.n ? "\n]" : "]", d.n ? 2 : 1);
        conn_respond(c, 200, "application/json", NULL, b.ptr, b.len);
        buf_free(&b);
    }
    bool answered = rc || d.n || final;
    groups_batch_free(&d);
    return answered;
}

/* A long poll asks again: on commits, and on the sweep for retries that fall due and its end. */
static void pull_again(conn *c, bool final) {
    if (!groups_try_pull(c, final)) return;
    groups_members_count(c->l->srv->groups, c->ar_note, 0, -1);
    conn_wait_over(c);
}
static void pull_on_commit(conn *c) { pull_again(c, false); }
static void pull_on_tick(conn *c, uint64_t now_ms, bool final) {
    (void)now_ms;
    pull_again(c, final);
}
static void pull_on_close(conn *c) { groups_members_count(c->l->srv->groups, c->ar_note, 0, -1); }
static const park_ops pull_park = {.on_commit = pull_on_commit, .on_tick = pull_on_tick, .on_close = pull_on_close};

/* The next '&'-separated "key=value" of q from *at, as sent (an empty one too: it is refused as
   unknown); *at moves past it. */
static factum_str_t query_pair(factum_str_t q, size_t *at) {
    size_t s = *at, i = s;
    while (i < q.len && q.ptr[i] != '&')
        i++;
    *at = i + 1;
    return (factum_str_t){q.ptr + s, i - s};
}

/* Whether kv is version=raw or version=latest (events as stored, or upcast), set in *raw. */
static bool version_pair(factum_str_t kv, bool *raw) {
    if (!str_eq(kv, str_c("version=raw")) && !str_eq(kv, str_c("version=latest"))) return false;
    *raw = kv.ptr[8] == 'r';
    return true;
}

static void pull(conn *c) {
    uint64_t max = 1, wait = 0;
    bool raw = false;
    factum_str_t q = c->req->h.query;
    /* max=N&wait_ms=T&version=raw|latest, in any order */
    for (size_t i = 0; i < q.len;) {
        factum_str_t kv = query_pair(q, &i);
        uint64_t *dst = NULL;
        size_t kl = 0;
        if (version_pair(kv, &raw)) continue;
        if (kv.len > 4 && !memcmp(kv.ptr, "max=", 4))
            dst = &max, kl = 4;
        else if (kv.len > 8 && !memcmp(kv.ptr, "wait_ms=", 8))
            dst = &wait, kl = 8;
        if (!dst || !str_u64((factum_str_t){kv.ptr + kl, kv.len - kl}, dst)) {
            conn_problem(c, 400, "bad-request", NULL,
                         "query parameters are max=N (1 to %d), wait_ms=T (0 to %d) and version=raw|latest", PULL_MAX,
                         WAIT_MAX_MS);
            return;
        }
    }
    if (max < 1 || max > PULL_MAX || wait > WAIT_MAX_MS) {
        conn_problem(c, 400, "bad-request", NULL, "max must be 1 to %d and wait_ms 0 to %d", PULL_MAX, WAIT_MAX_MS);
        return;
    }
    c->pull_max = (uint32_t)max, c->pull_raw = raw; /* a waiting pull asks again with them */
    if (groups_try_pull(c, wait == 0)) return;
    groups_members_count(c->l->srv->groups, c->ar_note, 0, 1);
    server_wait(c, wait, &pull_park); /* long poll: commits and the sweep ask again */
}

typedef int (*prepare_fn)(groups_t *, const char *, factum_str_t, groups_change *, factum_error_t *);

/*
 * After a prepare: the problem, or the record written to $group-{g} and answered once durable.
 * with_refused (ack and nack): the ids not taken go with the answer, and with a 409 when no id
 * was taken. ch is freed (or moved to the write) here.
 */
static void write_change(conn *c, int rc, const factum_error_t *err, groups_change *ch, const char *type,
                         bool with_refused) {
    if (rc == FACTUM_ECONFLICT && with_refused) {
        buf_t m = {0};
        render_refused(&m, ch);
        conn_problem(c, 409, "conflict", m.ptr, "%s", err->message);
        buf_free(&m);
    } else if (rc) {
        server_problem(c, rc, err->message);
    } else if (ch->n == 0) {
        answer_change(c, type, 0, with_refused ? ch : NULL); /* nothing to write (an ack of ids already done) */
    } else {
        char stream[GROUP_MAX_NAME + 8];
        groups_state_stream(c->ar_note, stream);
        c->ar_at = (int64_t)ch->n;
        if (!submit(c, stream, type, ch, with_refused, recorded_done))
            groups_write_abandoned(c->l->srv->groups, c->ar_note);
    }
    groups_change_free(ch);
}

/* ack and nack */
static void change(conn *c, factum_str_t body, prepare_fn prepare, const char *type) {
    groups_change ch = {0};
    factum_error_t err;
    int rc = prepare(c->l->srv->groups, c->ar_note, body, &ch, &err);
    write_change(c, rc, &err, &ch, type, true);
}

/* Replay (one, some or all) or delete (one) parked events. */
static void parked_change(conn *c, factum_str_t body, const char *one, const char *type) {
    groups_change ch = {0};
    factum_error_t err;
    int rc = groups_parked_prepare(c->l->srv->groups, c->ar_note, body, one, &ch, &err);
    write_change(c, rc, &err, &ch, type, false);
}

/* ---- the routes ---- */

void api_list_groups(conn *c, const route_args *a, factum_str_t body) {
    (void)a, (void)body;
    buf_t b = {0};
    list(c->l->srv->groups, &b);
    conn_respond(c, 200, "application/json", NULL, b.ptr, b.len);
    buf_free(&b);
}

/* The {group} param into c->ar_note; false (answered 404) if it is longer than a group name. */
static bool group_arg(conn *c, const route_args *a) {
    if (a->p[0].len > GROUP_MAX_NAME) {
        conn_problem(c, 404, "not-found", NULL, "no such group");
        return false;
    }
    snprintf(c->ar_note, sizeof c->ar_note, "%.*s", (int)a->p[0].len, a->p[0].ptr);
    return true;
}

void api_show_group(conn *c, const route_args *a, factum_str_t body) {
    (void)body;
    if (!group_arg(c, a)) return;
    buf_t b = {0};
    if (show(c->l->srv->groups, c->ar_note, &b))
        conn_problem(c, 404, "not-found", NULL, "no group '%s'", c->ar_note);
    else
        conn_respond(c, 200, "application/json", NULL, b.ptr, b.len);
    buf_free(&b);
}

void api_define_group(conn *c, const route_args *a, factum_str_t body) {
    if (!group_arg(c, a)) return;
    groups_change ch = {0};
    bool created;
    factum_error_t err;
    int rc = groups_define_prepare(c->l->srv->groups, c->ar_note, body, c->req_key, &ch.rec, &created, &err);
    limit_hold *hold = NULL;
    if (rc) {
        server_problem(c, rc, err.message);
    } else if (!created || (hold = limits_hold(c, LIMIT_GROUPS))) { /* else answered: past --max-groups */
        c->ar_at = created;
        if (submit(c, GROUPS_STREAM, "GroupDefined", &ch, false, defined_done))
            ((kept *)c->job)->hold = hold; /* given back once applied (kept_free) */
        else
            limits_release(hold);
    }
    groups_change_free(&ch);
}

void api_delete_group(conn *c, const route_args *a, factum_str_t body) {
    (void)body;
    if (!group_arg(c, a)) return;
    groups_change ch = {0};
    factum_error_t err;
    int rc = groups_delete_prepare(c->l->srv->groups, c->ar_note, &ch.rec, &err);
    if (rc)
        server_problem(c, rc, err.message);
    else
        submit(c, GROUPS_STREAM, "GroupDeleted", &ch, false, deleted_done);
    groups_change_free(&ch);
}

void api_pull_group(conn *c, const route_args *a, factum_str_t body) {
    (void)body;
    if (group_arg(c, a)) pull(c);
}

/* push: Server-Sent Events, at most max_in_flight unacknowledged (default 10) */
void api_push_group(conn *c, const route_args *a, factum_str_t body) {
    (void)body;
    if (!group_arg(c, a)) return;
    const http_req *h = &c->req->h;
    factum_str_t accept = http_header_get(h, "accept");
    uint64_t limit = 10;
    bool raw = false;
    factum_str_t q = h->query;
    /* max_in_flight=N&version=raw|latest, in any order */
    for (size_t i = 0; i < q.len && limit;) {
        factum_str_t kv = query_pair(q, &i);
        if (!version_pair(kv, &raw) && (kv.len <= 14 || memcmp(kv.ptr, "max_in_flight=", 14) ||
                                        !str_u64((factum_str_t){kv.ptr + 14, kv.len - 14}, &limit)))
            limit = 0; /* refused below */
    }
    if (!accept.len || !memmem(accept.ptr, accept.len, "text/event-stream", 17))
        conn_problem(c, 406, "not-acceptable", NULL,
                     "push delivery is Server-Sent Events: send Accept: text/event-stream");
    else if (limit < 1 || limit > PULL_MAX)
        conn_problem(c, 400, "bad-request", NULL,
                     "query parameters are max_in_flight=N (1 to %d) and version=raw|latest", PULL_MAX);
    else if (!groups_has(c->l->srv->groups, c->ar_note))
        conn_problem(c, 404, "not-found", NULL, "no group '%s'", c->ar_note);
    else
        sse_start_group(c, c->ar_note, (uint32_t)limit, raw);
}

void api_ack_group(conn *c, const route_args *a, factum_str_t body) {
    if (group_arg(c, a)) change(c, body, groups_ack_prepare, "Acked");
}

void api_nack_group(conn *c, const route_args *a, factum_str_t body) {
    if (group_arg(c, a)) change(c, body, groups_nack_prepare, "Nacked");
}

/* The parked list (one = NULL), or one parked event (inspect). */
static void show_parked(conn *c, const char *one) {
    buf_t b = {0};
    if (parked_list(c->l->srv->db, c->l->srv->groups, c->ar_note, one, &b))
        conn_problem(c, 404, "not-found", NULL, "no group '%s'%s", c->ar_note, one ? " or no such parked event" : "");
    else
        conn_respond(c, 200, "application/json", NULL, b.ptr, b.len);
    buf_free(&b);
}

void api_list_parked(conn *c, const route_args *a, factum_str_t body) {
    (void)body;
    if (group_arg(c, a)) show_parked(c, NULL);
}

void api_replay_parked(conn *c, const route_args *a, factum_str_t body) {
    if (group_arg(c, a)) parked_change(c, body, NULL, "Replayed");
}

/* The {delivery_id} param (a->p[1]), cut to what a delivery id can be. */
static void delivery_arg(const route_args *a, char one[32]) {
    snprintf(one, 32, "%.*s", (int)MIN(a->p[1].len, 31), a->p[1].ptr);
}

void api_show_parked(conn *c, const route_args *a, factum_str_t body) {
    (void)body;
    char one[32];
    delivery_arg(a, one);
    if (group_arg(c, a)) show_parked(c, one);
}

void api_delete_parked(conn *c, const route_args *a, factum_str_t body) {
    (void)body;
    char one[32];
    delivery_arg(a, one);
    if (group_arg(c, a)) parked_change(c, (factum_str_t){"", 0}, one, "ParkedDeleted");
}
