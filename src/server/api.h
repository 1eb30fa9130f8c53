/*
 * api.h — the route handlers (the api_*.c files) and what they share. route.c's table names
 * every handler here; each answers one method of one path pattern, with the pattern's params
 * in route_args (raw segments: a handler decodes and checks its own). Handlers run on the loop
 * thread that owns the connection and answer through conn_respond / conn_problem, at once or
 * from the done function of an append or a job (server.h).
 */
#ifndef FACTUM_API_H
#define FACTUM_API_H

#include "../base/trace.h"
#include "route.h"
#include "server.h"

/* route.c: 405 naming the methods the resource allows. */
void api_not_allowed(conn *c, const char *allow);
/* route.c: a {name} param into name (max bytes at most, and valid as `valid` says). false,
   having answered 400 with `rule`, when it is not one. */
bool api_path_name(conn *c, factum_str_t seg, size_t max, bool (*valid)(const char *), const char *rule, char *name);
/* route.c: runs fn with the {stream} param (a->p[0]) percent-decoded (stream lives until fn
   returns), or answers 400 (bad-stream) when it has a bad escape or, with check, is not a valid
   stream name. */
typedef void (*api_stream_fn)(conn *c, factum_str_t stream, factum_str_t body);
void api_on_stream(conn *c, const route_args *a, bool check, factum_str_t body, api_stream_fn fn);

/* guard.c: whether the caller may run route r (a->p[0]: the stream or group it names); false
   once it has answered 401 or 403. */
bool guard_admit(conn *c, const route *r, const route_args *a);
/* guard.c: takes a request's events and body bytes from its key's rate limits (docs/limits.md,
   "Keys"); false, having answered 429 (not now: Retry-After) or 413 (never: more than one
   second's worth), when they refuse it. Before anything is written: a refusal writes nothing. */
bool guard_rate(conn *c, uint64_t events, uint64_t bytes);
/* guard.c: the /metrics lines of the keys' rate limits. */
void guard_metrics(server *s, buf_t *b);
/* guard.c: the peer's address as text (sets c->loopback). */
const char *guard_peer(conn *c);
/* forward.c: on a cluster follower, sends a request route r must run on the leader there and
   answers with the leader's answer (true: c is taken care of); false: run it here. */
bool forward_request(conn *c, const route *r, factum_str_t body);
/* audit.c: a refused request (aggregated: one record per key, address and reason in 10 s). */
void audit_denied(conn *c, const route *r, auth_result why, int status);

/* api_append.c: for the done function of a write (conn_done has set the connection to answer): if the
   writer refused (c->ar_rc) answers that (412 for a missed expected revision, else its problem)
   and returns false. */
bool server_written(conn *c);
/* api_append.c: the stream name of a /streams/{s}[/...] path, decoded (again) into out. */
void api_path_stream(conn *c, buf_t *out);
/* api_append.c: the expected revision of If-Match / If-None-Match. 0, or answers 400 and -1. */
int api_expected_revision(conn *c, int64_t *out);
/* api_append.c: the request's W3C trace context headers (traceparent, tracestate) into t: 1, or 0
   when it has no traceparent; -1 when one is malformed, having answered 400. */
int api_trace_header(conn *c, trace_ctx *t);
/* api_append.c: the 412 answer for a missed expected revision (c->ar_res.actual_revision, c->ar_msg). */
void api_revision_problem(conn *c);
/* api_read.c: 400: a query parameter's value has a bad percent-escape. */
void api_bad_escape(conn *c, factum_str_t key);
/* api_health.c: the # HELP and # TYPE lines of a Prometheus metric family. */
void api_metric_head(buf_t *b, const char *name, const char *type, const char *help);

/* ---- the handlers of route.c's table, by file ---- */

void api_root(conn *c, const route_args *a, factum_str_t body); /* route.c: GET / */
/* api_append.c, api_read.c */
void api_append(conn *c, const route_args *a, factum_str_t body);
void api_read_stream(conn *c, const route_args *a, factum_str_t body);
void api_read_all(conn *c, const route_args *a, factum_str_t body);
/* api_query.c: tag queries and conditional appends (docs/dcb.md) */
void api_read_query(conn *c, const route_args *a, factum_str_t body);
void api_append_query(conn *c, const route_args *a, factum_str_t body);
/* Parses a query's JSON into *q (factum_tag_query_parse; free it with factum_tag_query_free).
   0, or -1 with why. */
int api_query_parse(factum_str_t json, factum_tag_query_t **q, char *why, size_t cap);
/* A condition {"failIfEventsMatch": QUERY, "after"?: POSITION}: *q as above, *after. */
int api_condition_parse(factum_str_t cond, factum_tag_query_t **q, uint64_t *after, char *why, size_t cap);
/* api_dcb.c: the dcb.events compatibility routes */
void api_dcb_read(conn *c, const route_args *a, factum_str_t body);
void api_dcb_append(conn *c, const route_args *a, factum_str_t body);
/* api_meta.c */
void api_get_metadata(conn *c, const route_args *a, factum_str_t body);
void api_put_metadata(conn *c, const route_args *a, factum_str_t body);
void api_delete_stream(conn *c, const route_args *a, factum_str_t body);
/* api_snapshots.c */
void api_get_snapshot(conn *c, const route_args *a, factum_str_t body);
void api_put_snapshot(conn *c, const route_args *a, factum_str_t body);
/* GET /streams/{s}?from=snapshot: the latest snapshot and the events after it. */
void api_read_from_snapshot(conn *c, factum_str_t stream, size_t limit);
/* api_streams.c */
void api_list_streams(conn *c, const route_args *a, factum_str_t body);
void api_list_categories(conn *c, const route_args *a, factum_str_t body);
/* api_schedules.c */
/* The JSON of a timer, what GET /schedules/{id} answers: its Scheduled record's data with
   "state" added, and "position" (fired) or "error" (failed). 0 or the read's error. */
typedef struct timer_info timer_info;
int schedule_json(factum_t *db, const timer_info *ti, buf_t *out, factum_error_t *err);
void api_list_schedules(conn *c, const route_args *a, factum_str_t body);
void api_schedule(conn *c, const route_args *a, factum_str_t body);
void api_show_schedule(conn *c, const route_args *a, factum_str_t body);
void api_cancel_schedule(conn *c, const route_args *a, factum_str_t body);
/* api_groups.c */
void api_list_groups(conn *c, const route_args *a, factum_str_t body);
void api_show_group(conn *c, const route_args *a, factum_str_t body);
void api_define_group(conn *c, const route_args *a, factum_str_t body);
void api_delete_group(conn *c, const route_args *a, factum_str_t body);
void api_pull_group(conn *c, const route_args *a, factum_str_t body);
void api_push_group(conn *c, const route_args *a, factum_str_t body);
void api_ack_group(conn *c, const route_args *a, factum_str_t body);
void api_nack_group(conn *c, const route_args *a, factum_str_t body);
void api_list_parked(conn *c, const route_args *a, factum_str_t body);
void api_replay_parked(conn *c, const route_args *a, factum_str_t body);
void api_show_parked(conn *c, const route_args *a, factum_str_t body);
void api_delete_parked(conn *c, const route_args *a, factum_str_t body);
/* api_admin.c: GET (progress) and POST (start) /admin/scavenge */
void api_scavenge(conn *c, const route_args *a, factum_str_t body);
void api_backup(conn *c, const route_args *a, factum_str_t body);
void api_archive(conn *c, const route_args *a, factum_str_t body);
/* api_projections.c */
void api_list_projections(conn *c, const route_args *a, factum_str_t body);
void api_show_projection(conn *c, const route_args *a, factum_str_t body);
void api_define_projection(conn *c, const route_args *a, factum_str_t body);
void api_delete_projection(conn *c, const route_args *a, factum_str_t body);
void api_reset_projection(conn *c, const route_args *a, factum_str_t body);
void api_query_projection(conn *c, const route_args *a, factum_str_t body);
/* api_sagas.c */
void api_list_sagas(conn *c, const route_args *a, factum_str_t body);
void api_show_saga(conn *c, const route_args *a, factum_str_t body);
void api_define_saga(conn *c, const route_args *a, factum_str_t body);
void api_delete_saga(conn *c, const route_args *a, factum_str_t body);
void api_saga_instances(conn *c, const route_args *a, factum_str_t body);
void api_saga_instance(conn *c, const route_args *a, factum_str_t body);
void api_saga_parked(conn *c, const route_args *a, factum_str_t body);
/* api_schemas.c */
void api_list_schemas(conn *c, const route_args *a, factum_str_t body);
void api_show_schema(conn *c, const route_args *a, factum_str_t body);
void api_get_schema(conn *c, const route_args *a, factum_str_t body);
void api_put_schema(conn *c, const route_args *a, factum_str_t body);
void api_put_upcast(conn *c, const route_args *a, factum_str_t body);
/* The /metrics lines of the schema registry. */
void schemas_metrics(server *s, buf_t *b);
/* api_connectors.c */
void api_list_connectors(conn *c, const route_args *a, factum_str_t body);
void api_show_connector(conn *c, const route_args *a, factum_str_t body);
void api_define_connector(conn *c, const route_args *a, factum_str_t body);
void api_delete_connector(conn *c, const route_args *a, factum_str_t body);
void api_pause_connector(conn *c, const route_args *a, factum_str_t body);
void api_resume_connector(conn *c, const route_args *a, factum_str_t body);
void connectors_metrics(connectors_t *cs, buf_t *b);
/* api_keys.c */
void api_create_key(conn *c, const route_args *a, factum_str_t body);
void api_list_keys(conn *c, const route_args *a, factum_str_t body);
void api_whoami(conn *c, const route_args *a, factum_str_t body);
void api_revoke_key(conn *c, const route_args *a, factum_str_t body);
/* api_health.c */
void api_health(conn *c, const route_args *a, factum_str_t body);
void api_metrics(conn *c, const route_args *a, factum_str_t body);
/* api_ui.c: the dashboard's assets */
void api_ui_index(conn *c, const route_args *a, factum_str_t body);
void api_ui_asset(conn *c, const route_args *a, factum_str_t body);
/* api_ui.c: whether the request asks for a web page (Accept lists text/html, not
   application/json), and the 303 that sends it to the dashboard. */
bool api_ui_browser(const conn *c);
void api_ui_redirect(conn *c);

#endif
