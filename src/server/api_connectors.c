/*
 * api_connectors.c — the /connectors API over src/connect/ (docs/connectors.md):
 *
 *   PUT    /connectors/{name}          define or redefine (201 / 200), checked against its target
 *   GET    /connectors                 every connector with its status
 *   GET    /connectors/{name}          its definition (no secret) and status
 *   DELETE /connectors/{name}          stop it, delete its group and secrets
 *   POST   /connectors/{name}/pause    stop delivering (recorded: it holds across restarts)
 *   POST   /connectors/{name}/resume
 *
 * Definitions, deletions and pauses connect to targets and append: they run as jobs on a worker
 * thread. The sink's parked events are its group's: /groups/sink.{name}/parked.
 */
#include "api.h"

#include "../connect/connect.h"

#include <stdio.h>
#include <stdlib.h>

/* A new sink's group counts against --max-groups and its key's max_groups as a group PUT would:
   its place is held from the check until the group is applied. */
typedef struct admission {
    conn *c;
    limit_hold *hold;
} admission;

static int admit_group(void *ctx, factum_error_t *err) {
    admission *a = ctx;
    named_job *j = a->c->job;
    if ((a->hold = limits_take(a->c, LIMIT_GROUPS, &j->limit))) return 0;
    j->limited = true; /* answered 409 limit-reached */
    return err_set(err, FACTUM_EINVAL, "too many groups");
}

static void define_work(conn *c) {
    named_job *j = c->job;
    bool created = false;
    admission a = {c, NULL};
    j->rc = connectors_define(c->l->srv->connectors, j->name, (factum_str_t){j->body.ptr, j->body.len}, c->req_key,
                              admit_group, &a, &created, &j->out, &j->err);
    limits_release(a.hold);
    j->status = created ? 201 : 200;
}

static void delete_work(conn *c) {
    named_job *j = c->job;
    j->rc = connectors_delete(c->l->srv->connectors, j->name, &j->err);
    j->status = 200;
    if (!j->rc) buf_printf(&j->out, "{\"name\":\"%s\",\"deleted\":true}", j->name);
}

static void pause_work(conn *c) {
    named_job *j = c->job;
    j->rc = connectors_pause(c->l->srv->connectors, j->name, j->flag, &j->out, &j->err);
    j->status = 200;
}

/* The {name} param into name; false (answered 400) if it is not a connector name. */
static bool name_arg(conn *c, const route_args *a, char name[CONNECTOR_MAX_NAME + 1]) {
    return api_path_name(c, a->p[0], CONNECTOR_MAX_NAME, connector_name_ok,
                         "a connector name is 1 to " STRINGIFY(CONNECTOR_MAX_NAME) " letters, digits, '-' or '_'",
                         name);
}

static void submit(conn *c, const char *name, factum_str_t body, bool flag, job_fn work) {
    server_submit_named(c, name, body, flag, "/connectors/", NULL, work);
}

void api_list_connectors(conn *c, const route_args *a, factum_str_t body) {
    (void)a, (void)body;
    buf_t b = {0};
    connectors_list(c->l->srv->connectors, &b);
    conn_respond(c, 200, "application/json", NULL, b.ptr, b.len);
    buf_free(&b);
}

void api_show_connector(conn *c, const route_args *a, factum_str_t body) {
    (void)body;
    char name[CONNECTOR_MAX_NAME + 1];
    if (!name_arg(c, a, name)) return;
    buf_t b = {0};
    if (connectors_show(c->l->srv->connectors, name, &b))
        conn_problem(c, 404, "not-found", NULL, "no connector %s", name);
    else
        conn_respond(c, 200, "application/json", NULL, b.ptr, b.len);
    buf_free(&b);
}

void api_define_connector(conn *c, const route_args *a, factum_str_t body) {
    char name[CONNECTOR_MAX_NAME + 1];
    if (name_arg(c, a, name)) submit(c, name, body, false, define_work);
}

void api_delete_connector(conn *c, const route_args *a, factum_str_t body) {
    char name[CONNECTOR_MAX_NAME + 1];
    if (name_arg(c, a, name)) submit(c, name, body, false, delete_work);
}

void api_pause_connector(conn *c, const route_args *a, factum_str_t body) {
    char name[CONNECTOR_MAX_NAME + 1];
    if (name_arg(c, a, name)) submit(c, name, body, true, pause_work);
}

void api_resume_connector(conn *c, const route_args *a, factum_str_t body) {
    char name[CONNECTOR_MAX_NAME + 1];
    if (name_arg(c, a, name)) submit(c, name, body, false, pause_work);
}

/* ---- metrics ---- */

typedef struct metric_pass {
    buf_t *b;
    int family;
} metric_pass;

static const struct {
    const char *name, *type, *help;
} families[] = {
    {"factum_connector_up", "gauge", "1 while the connector delivers (running or retrying), 0 paused or failed."},
    {"factum_connector_delivered_total", "counter", "Events the receiver accepted (since this server started)."},
    {"factum_connector_failed_attempts_total", "counter",
     "Delivery attempts that failed: an error answer or none (since this server started)."},
    {"factum_connector_lag_positions", "gauge", "Log positions from the oldest event not yet delivered to the head."},
    {"factum_connector_lag_seconds", "gauge", "Age of the oldest event not yet delivered (0 when caught up)."},
    {"factum_connector_parked", "gauge", "Events parked after max_attempts (its group's parked set)."},
    {"factum_connector_lag_bytes", "gauge",
     "An outbox relay's replication slot: WAL bytes from its confirmed position to the server's end."},
    {"factum_connector_after_relay_failures_total", "counter",
     "An outbox relay's after_relay statements (deleting or marking relayed rows) that failed (since this server "
     "started)."},
};

static void metric_one(void *ctx, const connector_stats *st) {
    metric_pass *m = ctx;
    double v = 0;
    switch (m->family) {
    case 0: v = !strcmp(st->state, "running") || !strcmp(st->state, "retrying"); break;
    case 1: v = (double)st->delivered; break;
    case 2: v = (double)st->failed_attempts; break;
    case 3: v = (double)st->lag_positions; break;
    case 4: v = st->lag_seconds; break;
    case 5: v = (double)st->parked; break;
    default:
        if (strcmp(st->kind, "postgres-outbox")) return; /* a sink has no slot, nor rows */
        v = (double)(m->family == 6 ? st->lag_bytes : st->after_failures);
        break;
    }
    buf_printf(m->b, "%s{connector=\"%s\",kind=\"%s\"} %.17g\n", families[m->family].name, st->name, st->kind, v);
}

void connectors_metrics(connectors_t *cs, buf_t *b) {
    if (!connectors_count(cs)) return;
    for (int f = 0; f < (int)ARRAY_LEN(families); f++) {
        api_metric_head(b, families[f].name, families[f].type, families[f].help);
        metric_pass m = {b, f};
        connectors_each_stats(cs, metric_one, &m);
    }
}
