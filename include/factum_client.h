/*
 * factum_client.h — a C client for the Factum HTTP API (libcurl underneath). The same
 * semantics and error codes as the embedded API in factum.h: append with an expected
 * revision, read a stream or $all, and subscribe with a callback that resumes by itself.
 *
 * Link build/libfactum_client.a, build/libfactum.a, -lcurl -lxxhash -lpcre2-8 -lm -pthread.
 * A client is not thread-safe: use one per thread. It keeps its connection alive between
 * calls.
 */
#ifndef FACTUM_CLIENT_H
#define FACTUM_CLIENT_H

#include "factum.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct factum_client factum_client_t;

/* A client for the server at url ("http://127.0.0.1:7744", or "https://..."). Does not connect
   yet. url may list up to 8 servers separated by commas (the nodes of a cluster): a request goes
   to the one in use, and moves to the next when one refuses the connection (nothing of the
   request reached it); a failure after connecting is reported, never retried. Over https the server's certificate and
   name are verified, against the system's CA certificates unless factum_client_set_cacert names others; a certificate
   that does not verify makes every call FACTUM_EUNREACHABLE, saying why. */
int factum_client_new(const char *url, factum_client_t **out, factum_error_t *err);
void factum_client_free(factum_client_t *c);
/* Sends token (an API key, "fk_...") as "Authorization: Bearer TOKEN" with every request from
   now on; NULL stops sending one. The client keeps a copy. FACTUM_EINVAL for a token with
   characters a header cannot carry, FACTUM_ENOMEM. A server that refuses the key answers
   FACTUM_EDENIED (401: no valid key; 403: the key lacks the permission; the message says). */
int factum_client_set_token(factum_client_t *c, const char *token, factum_error_t *err);

/* Verifies the server's certificate against the CA certificates (PEM) in the file at path
   instead of the system's; NULL goes back to the system's. The path is copied and read at each
   connection. 0, or FACTUM_EINVAL when the file cannot be read (nothing changes then). */
int factum_client_set_cacert(factum_client_t *c, const char *path, factum_error_t *err);

/*
 * Appends n events to stream atomically (one request). Returns 0 or what factum_append
 * returns: FACTUM_EREVISION (res->actual_revision set), FACTUM_ECONFLICT, FACTUM_EBADEVENT,
 * FACTUM_EBADSTREAM, FACTUM_ETOOBIG, FACTUM_EFAILED, FACTUM_ENOSPC; and FACTUM_EUNREACHABLE
 * when the server cannot be reached (nothing is known to be appended: retry with the same
 * event ids, which makes the retry idempotent).
 */
int factum_client_append(factum_client_t *c, const char *stream, int64_t expected, const factum_event_t *events,
                         size_t n, factum_append_result_t *res, factum_error_t *err);

/*
 * Dynamic consistency boundaries (docs/dcb.md), through POST /events and GET /events:
 * factum_client_append_if appends n events to stream with cond (NULL: none), as
 * factum_append_if; a failed condition is FACTUM_ECONDITION with res->conflict_position.
 * factum_client_read_tagged reads up to `limit` events matching q from `from` (FACTUM_END
 * with backward: from the last) as factum_read_tagged; *head (if given) is the position the
 * answer is consistent up to, *next (if given) where to continue or FACTUM_END. An empty
 * answer is 0 with *out NULL.
 */
int factum_client_append_if(factum_client_t *c, const char *stream, int64_t expected, const factum_event_t *events,
                            size_t n, const factum_condition_t *cond, factum_append_result_t *res, factum_error_t *err);
/* A multi-stream append through POST /events, as factum_append_streams (each part's res filled). */
int factum_client_append_streams(factum_client_t *c, factum_stream_append_t *parts, size_t nparts,
                                 const factum_condition_t *cond, factum_error_t *err);
int factum_client_read_tagged(factum_client_t *c, const factum_tag_query_t *q, uint64_t from, size_t limit,
                              int backward, uint64_t *head, uint64_t *next, factum_events_t **out, factum_error_t *err);

/*
 * Reads one page: of `stream`, or of $all when stream is NULL (q's filters apply to $all
 * only). *next is where to continue (pass as q->from), or FACTUM_END when the server says
 * nothing more is there now. Events carry stream, revision, position and time. Free *out
 * with factum_events_free; an empty page (past a stream's last event, or a filter nothing
 * matches) is 0 with *out NULL, which factum_events_count counts as 0. FACTUM_ENOTFOUND for
 * a stream with no events.
 */
int factum_client_read(factum_client_t *c, const char *stream, const factum_query_t *q, factum_events_t **out,
                       uint64_t *next, factum_error_t *err);

/*
 * Called for each event of a subscription in order, and with e == NULL once the
 * subscription has caught up (live from then on). Return nonzero to stop.
 */
typedef int (*factum_client_event_cb)(void *ctx, const factum_event_t *e);

/*
 * Subscribes to stream (or $all when NULL) from q->from (FACTUM_END: only new events) with
 * q's filters, and calls cb until it returns nonzero (then 0 is returned). When the
 * connection drops it reconnects with Last-Event-ID after a short backoff and goes on, with
 * no gap and no duplicate. Returns FACTUM_EUNREACHABLE only if the first connection fails,
 * or another code when the server refuses the subscription.
 */
int factum_client_subscribe(factum_client_t *c, const char *stream, const factum_query_t *q, factum_client_event_cb cb,
                            void *ctx, factum_error_t *err);

/*
 * Durable timers (docs/timers.md): appends `event` to `stream` at at_us (microseconds since the
 * epoch), unless cancelled. Writes the schedule id (36 chars + NUL) into id.
 */
int factum_client_schedule(factum_client_t *c, int64_t at_us, const char *stream, const factum_event_t *event,
                           char id[37], factum_error_t *err);
/* Cancels a pending timer: FACTUM_ENOTFOUND unknown, FACTUM_ECONFLICT fired or cancelled already. */
int factum_client_cancel_schedule(factum_client_t *c, const char *id, factum_error_t *err);

/*
 * Consumer groups (docs/groups.md). A pull takes up to max deliveries of group, waiting up to
 * wait_ms for the first. *events holds their events (free with factum_events_free; NULL when
 * none came) and ids[i] the delivery id of event i (room for max). 0, FACTUM_ENOTFOUND for no
 * group, or as factum_client_append.
 */
typedef struct factum_delivery_id {
    char id[48];
} factum_delivery_id_t;
int factum_client_pull(factum_client_t *c, const char *group, size_t max, int wait_ms, factum_events_t **events,
                       factum_delivery_id_t *ids, size_t *n, factum_error_t *err);
/* Acknowledges n deliveries: done, not delivered again. 0 when each was acked (or was done
   already); FACTUM_ECONFLICT when some were not in flight any more (timed out and delivered
   again, never delivered): the others are acked all the same, and the message lists those that
   were not, with why. */
int factum_client_ack(factum_client_t *c, const char *group, const factum_delivery_id_t *ids, size_t n,
                      factum_error_t *err);

/*
 * Any request of the HTTP API (docs/http.md), for what has no call of its own yet: method, path (with query), an
 * optional JSON body. *status is the HTTP status and *response the body (NUL-terminated; free it). Errors map as in the
 * other calls when the status is 4xx/5xx, but *status and *response are set either way.
 */
int factum_client_call(factum_client_t *c, const char *method, const char *path, const char *json_body, int *status,
                       char **response, factum_error_t *err);
/* The same with one more request header line ("If-Match: \"3\""), or NULL. */
int factum_client_call_with(factum_client_t *c, const char *method, const char *path, const char *json_body,
                            const char *header, int *status, char **response, factum_error_t *err);

#ifdef __cplusplus
}
#endif
#endif
