/*
 * api_groups.c — the /groups API over groups.c:
 *   PUT /groups/{g} (201 created / 200 updated), GET /groups, GET /groups/{g}, DELETE /groups/{g}
 *   POST /groups/{g}/messages?max=N&wait_ms=T (long poll), POST /groups/{g}/ack, .../nack
 *   GET /groups/{g}/parked, POST /groups/{g}/parked/replay, DELETE /groups/{g}/parked/{id}
 * Every change is a record appended to $groups or $group-{g}; it is applied to the in-memory
 * group from the durable record (read back by position), then answered.
 */
#include "api.h"

#include "groups.h"

#include <stdio.h>
#include <stdlib.h>

#define PULL_MAX 1000
#define WAIT_MAX_MS 60000

/* Reads the durable record back from the log into *r (free it either way). */
static bool record_at(conn *c, factum_result_t **r) {
    return factum_read_at(c->l->srv->db, c->ar_res.last_position, r, NULL) == 0;
}

/* A state record's write failed: the group learns it will not be applied. */
static bool check_state_written(conn *c) {
    if (server_written(c)) return true;
    groups_write_abandoned(c->l->srv->groups, c->ar_note);
    return false;
}

static void defined_done(conn *c) {
    if (!server_written(c)) return;
    factum_result_t *r = NULL;
    if (!record_at(c, &r)) {
        conn_problem(c, 500, "internal", NULL, "the group's record cannot be read back");
        factum_result_free(r);
        return;
    }
    groups_define_apply(c->l->srv->groups, factum_result_event(r, 0)->data, c->ar_res.last_position);
    factum_result_free(r);
    buf_t b = {0};
    groups_show(c->l->srv->groups, c->ar_note, &b);
    conn_respond(c, c->ar_at ? 201 : 200, "application/json", NULL, b.ptr, b.len);
    buf_free(&b);
}

static void forgotten(void *ctx, int rc, const factum_append_result_t *res, const char *msg) {
    (void)ctx, (void)rc, (void)res, (void)msg;
}

static void deleted_done(conn *c) {
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
static void answer_change(conn *c, const char *type, size_t n, const char *refused) {
    const char *what = !strcmp(type, "Acked")      ? "acked"
                       : !strcmp(type, "Nacked")   ? "nacked"
                       : !strcmp(type, "Replayed") ? "replayed"
                                                   : "deleted";
    buf_t b = {0};
    buf_printf(&b, "{\"%s\":%zu", what, n);
    if (refused) buf_printf(&b, ",\"refused\":[%s]", refused);
    buf_append(&b, "}", 1);
    conn_respond(c, 200, "application/json", NULL, b.ptr, b.len);
    buf_free(&b);
}

static void free_refused(void *job) {
    buf_free(job);
    free(job);
}

/* A state record (Acked, Nacked, Replayed, ParkedDeleted) is durable: apply it and answer. */
static void recorded_done(conn *c) {
    buf_t *refused = c->job; /* ack and nack: the ids not taken */
    c->job = NULL;
    if (check_state_written(c)) {
        factum_result_t *r = NULL;
        char type[16] = "";
        if (record_at(c, &r)) {
            const factum_event_t *e = factum_result_event(r, 0);
            groups_apply(c->l->srv->groups, c->ar_note, e->type, e->data);
            snprintf(type, sizeof type, "%.*s", (int)e->type.len, e->type.ptr);
        }
        factum_result_free(r);
        answer_change(c, type, (size_t)c->ar_at, refused ? (refused->ptr ? refused->ptr : "") : NULL);
    }
    if (refused) free_refused(refused);
}

/* Submits a record; false (and answered) if it could not be. */
static bool submit(conn *c, const char *stream, const char *type, buf_t *data, append_done_fn done) {
    factum_event_t rec = {.type = str_c(type), .data = {data->ptr, data->len}, .data_format = FACTUM_DATA_JSON};
    factum_error_t err;
    int rc = server_submit_append(c, str_c(stream), FACTUM_EXPECT_ANY, &rec, 1, done, &err);
    if (rc) server_problem(c, rc, err.message);
    return rc == 0;
}

/* One pull; answers and returns true, or returns false when there is nothing yet. */
bool groups_try_pull(conn *c, bool final) {
    buf_t b = {0};
    size_t count;
    factum_error_t err;
    int rc = groups_pull(c->l->srv->groups, c->ar_note, c->pull_max, 0, &b, &count, &err);
    if (rc)
        server_problem(c, rc, err.message);
    else if (count || final)
        conn_respond(c, 200, "application/json", NULL, b.ptr, b.len);
    buf_free(&b);
    return rc || count || final;
}

static void pull(conn *c) {
    uint64_t max = 1, wait = 0;
    factum_str_t q = c->req->h.query;
    /* max=N&wait_ms=T, in any order */
    for (size_t i = 0; i < q.len;) {
        size_t s = i;
        while (i < q.len && q.ptr[i] != '&')
            i++;
        factum_str_t kv = {q.ptr + s, i - s};
        i++;
        uint64_t *dst = NULL;
        size_t kl = 0;
        if (kv.len > 4 && !memcmp(kv.ptr, "max=", 4))
            dst = &max, kl = 4;
        else if (kv.len > 8 && !memcmp(kv.ptr, "wait_ms=", 8))
            dst = &wait, kl = 8;
        if (!dst || !str_u64((factum_str_t){kv.ptr + kl, kv.len - kl}, dst)) {
            conn_problem(c, 400, "bad-request", NULL, "query parameters are max=N (1 to %d) and wait_ms=T (0 to %d)",
                         PULL_MAX, WAIT_MAX_MS);
            return;
        }
    }
    if (max < 1 || max > PULL_MAX || wait > WAIT_MAX_MS) {
        conn_problem(c, 400, "bad-request", NULL, "max must be 1 to %d and wait_ms 0 to %d", PULL_MAX, WAIT_MAX_MS);
        return;
    }
    c->pull_max = (uint32_t)max; /* a waiting pull asks again with it */
    if (groups_try_pull(c, wait == 0)) return;
    server_wait(c, wait); /* long poll: commits and the sweep ask again */
}

typedef int (*prepare_fn)(groups_t *, const char *, factum_str_t, buf_t *, size_t *, buf_t *, factum_error_t *);

/*
 * After a prepare: the problem, or the record written to $group-{g} and answered once durable.
 * refused (ack and nack: the ids not taken, the inside of a JSON array) goes with the answer,
 * and with a 409 when no id was taken; it is the caller's until this returns.
 */
static void write_change(conn *c, int rc, const factum_error_t *err, buf_t *rec, size_t n, const char *type,
                         buf_t *refused) {
    const char *ref = refused ? (refused->ptr ? refused->ptr : "") : NULL;
    if (rc == FACTUM_ECONFLICT && ref) {
        buf_t m = {0};
        buf_printf(&m, "\"refused\":[%s]", ref);
        conn_problem(c, 409, "conflict", m.ptr, "%s", err->message);
        buf_free(&m);
    } else if (rc) {
        server_problem(c, rc, err->message);
    } else if (n == 0) {
        answer_change(c, type, 0, ref); /* nothing to write (an ack of ids already done): answer now */
    } else {
        char stream[GROUP_MAX_NAME + 8];
        groups_state_stream(c->ar_note, stream);
        c->ar_at = (int64_t)n;
        buf_t *keep = NULL;
        if (refused && (keep = malloc(sizeof *keep))) *keep = *refused, *refused = (buf_t){0};
        c->job = keep, c->job_free = free_refused;
        if (!submit(c, stream, type, rec, recorded_done)) {
            groups_write_abandoned(c->l->srv->groups, c->ar_note);
            c->job = NULL;
            if (keep) free_refused(keep);
        }
    }
    buf_free(rec);
}

/* ack and nack */
static void change(conn *c, factum_str_t body, prepare_fn prepare, const char *type) {
    buf_t rec = {0}, refused = {0};
    size_t n;
    factum_error_t err;
    buf_append(&refused, "", 1), refused.len = 0; /* never NULL: an empty list is [] */
    int rc = prepare(c->l->srv->groups, c->ar_note, body, &rec, &n, &refused, &err);
    write_change(c, rc, &err, &rec, n, type, &refused);
    buf_free(&refused);
}

/* Replay (one, some or all) or delete (one) parked events. */
static void parked_change(conn *c, factum_str_t body, const char *one, const char *type) {
    buf_t rec = {0};
    size_t n;
    factum_error_t err;
    int rc = groups_parked_prepare(c->l->srv->groups, c->ar_note, body, one, &rec, &n, &err);
    write_change(c, rc, &err, &rec, n, type, NULL);
}

/* ---- the routes ---- */

void api_list_groups(conn *c, const route_args *a, factum_str_t body) {
    (void)a, (void)body;
    buf_t b = {0};
    groups_list(c->l->srv->groups, &b);
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
    if (groups_show(c->l->srv->groups, c->ar_note, &b))
        conn_problem(c, 404, "not-found", NULL, "no group '%s'", c->ar_note);
    else
        conn_respond(c, 200, "application/json", NULL, b.ptr, b.len);
    buf_free(&b);
}

void api_define_group(conn *c, const route_args *a, factum_str_t body) {
    if (!group_arg(c, a)) return;
    buf_t rec = {0};
    bool created;
    factum_error_t err;
    int rc = groups_define_prepare(c->l->srv->groups, c->ar_note, body, &rec, &created, &err);
    if (rc)
        server_problem(c, rc, err.message);
    else {
        c->ar_at = created;
        submit(c, GROUPS_STREAM, "GroupDefined", &rec, defined_done);
    }
    buf_free(&rec);
}

void api_delete_group(conn *c, const route_args *a, factum_str_t body) {
    (void)body;
    if (!group_arg(c, a)) return;
    buf_t rec = {0};
    factum_error_t err;
    int rc = groups_delete_prepare(c->l->srv->groups, c->ar_note, &rec, &err);
    if (rc)
        server_problem(c, rc, err.message);
    else
        submit(c, GROUPS_STREAM, "GroupDeleted", &rec, deleted_done);
    buf_free(&rec);
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
    factum_str_t q = h->query;
    if (q.len && (q.len <= 14 || memcmp(q.ptr, "max_in_flight=", 14) ||
                  !str_u64((factum_str_t){q.ptr + 14, q.len - 14}, &limit)))
        limit = 0; /* refused below */
    if (!accept.len || !memmem(accept.ptr, accept.len, "text/event-stream", 17))
        conn_problem(c, 406, "not-acceptable", NULL,
                     "push delivery is Server-Sent Events: send Accept: text/event-stream");
    else if (limit < 1 || limit > PULL_MAX)
        conn_problem(c, 400, "bad-request", NULL, "the only parameter is max_in_flight=N, 1 to %d", PULL_MAX);
    else if (!groups_has(c->l->srv->groups, c->ar_note))
        conn_problem(c, 404, "not-found", NULL, "no group '%s'", c->ar_note);
    else
        sse_start_group(c, c->ar_note, (uint32_t)limit);
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
    if (groups_parked_list(c->l->srv->groups, c->ar_note, one, &b))
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
