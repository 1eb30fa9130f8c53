/*
 * groups.h — consumer groups (docs/groups.md): definitions kept in $groups, per-group state in
 * $group-NAME, an in-memory table of what is in flight and done. Built so far: define, list,
 * show, delete; pull delivery (round_robin); ack; nack (retry with backoff, park, skip);
 * max_deliveries; parked list, replay and delete; ack timeouts (a keeper thread writes them).
 *
 * Thread-safety: one mutex for the registry and all groups; every call is short and may be
 * made from any event loop. Calls that need a durable write return what to write; the caller
 * appends it (asynchronously) and then calls the matching *_apply.
 */
#ifndef FACTUM_GROUPS_H
#define FACTUM_GROUPS_H

#include "../base/base.h"

#define GROUPS_STREAM "$groups"
#define GROUP_MAX_NAME 100

typedef struct groups groups_t;

int groups_open(factum_t *db, groups_t **out, factum_error_t *err);
void groups_close(groups_t *gs);

/*
 * Checks a definition body (PUT /groups/{name}) and renders the GroupDefined record data
 * into rec. 0, or FACTUM_EINVAL / FACTUM_EBADSTREAM with the reason. *created says whether the
 * name is new.
 */
int groups_define_prepare(groups_t *gs, const char *name, factum_str_t body, buf_t *rec, bool *created,
                          factum_error_t *err);
/* Applies a GroupDefined record that is durable at position pos. */
void groups_define_apply(groups_t *gs, factum_str_t rec, uint64_t pos);
/* FACTUM_ENOTFOUND unless the group exists; then the GroupDeleted record data. */
int groups_delete_prepare(groups_t *gs, const char *name, buf_t *rec, factum_error_t *err);
void groups_delete_apply(groups_t *gs, const char *name);

/* Whether the group exists. */
bool groups_has(groups_t *gs, const char *name);
/* JSON of one group (config and stats) or of all; FACTUM_ENOTFOUND. */
int groups_show(groups_t *gs, const char *name, buf_t *out);
void groups_list(groups_t *gs, buf_t *out);

/*
 * Hands out up to max deliveries. Pull (member 0): a JSON array in out (replacing it),
 * [{"delivery_id","attempt","event"}]. Push (member = the connection's id): SSE messages
 * appended to out, and max is the member's limit on unacknowledged deliveries. *count is how
 * many (0: the caller may wait and ask again). FACTUM_ENOTFOUND for no group. A read that fails
 * with damage (FACTUM_ECORRUPT, FACTUM_EIO) stops delivery at that event — it is never marked
 * done — until a read there succeeds; a call that then has nothing to hand out returns that error
 * (the message names the group, the key and the damage), and the group's JSON says "stopped".
 */
int groups_pull(groups_t *gs, const char *name, size_t max, uint64_t member, buf_t *out, size_t *count,
                factum_error_t *err);
/* A push member went away: what it holds in flight times out now (and comes again). */
void groups_release_member(groups_t *gs, const char *name, uint64_t member);

/*
 * Checks the delivery ids of an ack and renders the Acked record data into rec (*n keys to
 * write). An id not in flight as that attempt (timed out and delivered again, nacked, never
 * delivered) does not stop the others: it goes to refused as a {"delivery_id","reason"} element
 * of a JSON array's inside, comma-separated. Ids already done are accepted again (acks are
 * idempotent). FACTUM_ENOTFOUND (no group), FACTUM_EINVAL (malformed, or a member other than
 * delivery_ids: nothing is taken), FACTUM_ECONFLICT (every id refused; the message names one).
 */
int groups_ack_prepare(groups_t *gs, const char *name, factum_str_t body, buf_t *rec, size_t *n, buf_t *refused,
                       factum_error_t *err);
/*
 * Checks a nack {delivery_ids, action, delay_ms, reason} and renders its Nacked record. A retry
 * of a delivery at max_deliveries, or of one replayed from the parked set, parks it instead.
 * Ids not in flight (done ones included) are refused as for ack.
 */
int groups_nack_prepare(groups_t *gs, const char *name, factum_str_t body, buf_t *rec, size_t *n, buf_t *refused,
                        factum_error_t *err);
/* Renders {keys} for Replayed or ParkedDeleted: the parked events named in body's
   delivery_ids, or `one`, or all of them. FACTUM_ENOTFOUND for a name that is not parked. */
int groups_parked_prepare(groups_t *gs, const char *name, factum_str_t body, const char *one, buf_t *rec, size_t *n,
                          factum_error_t *err);
/* [{"delivery_id","attempts","reason","parked_at","event"}], or that object for one parked id;
   FACTUM_ENOTFOUND for no group or no such parked event. */
int groups_parked_list(groups_t *gs, const char *name, const char *one, buf_t *out);
/* Applies a durable state record (Acked, Nacked, Replayed, ParkedDeleted) of group `name`. */
void groups_apply(groups_t *gs, const char *name, factum_str_t type, factum_str_t rec);
/* A prepared state record will not be applied (its write failed or was never made). Every
   prepare that rendered a record (*n > 0) ends in groups_apply or this: Checkpoints are only
   written when nothing is between the two. */
void groups_write_abandoned(groups_t *gs, const char *name);

typedef struct group_stats {
    char name[GROUP_MAX_NAME + 1];
    uint64_t next, checkpoint;
    /* How far behind: lag_positions is log positions from the oldest event not done to the head
       (every source); lag_events the source's own events from there (stream sources only, where
       revisions count them: a category or $all source has no index to count its events by). */
    uint64_t lag_positions, lag_events;
    bool has_lag_events;
    double lag_seconds; /* age of the oldest event not yet done */
    size_t in_flight, retrying, held, parked;
    double oldest_parked_s;
    uint64_t delivered, redelivered, acked;
    double delivery_rate, redelivery_rate; /* per second, over about the last 10 s */
    int stopped; /* 1: a read that failed (damage) stopped delivery; GET /groups/{g} says where */
} group_stats;
/* Calls fn with the stats of every group (for /metrics). */
void groups_each_stats(groups_t *gs, void (*fn)(void *ctx, const group_stats *st), void *ctx);

/* The stream holding a group's state: "$group-NAME". */
void groups_state_stream(const char *name, char out[GROUP_MAX_NAME + 8]);

#endif
