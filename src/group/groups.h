/*
 * groups.h — the consumer-group engine (docs/groups.md): definitions kept in $groups, per-group
 * state in $group-NAME, an in-memory table of what is in flight and done. Define, list, show,
 * delete; pull and push delivery (round_robin, by_stream); ack; nack (retry with backoff, park,
 * skip); max_deliveries; parked list, replay and delete; ack timeouts (a keeper thread writes
 * them); Checkpoints that bound the replay.
 *
 * The engine returns structs; src/server/ renders them as JSON or SSE. Every change is decided
 * (a *_prepare call renders the record to write), written by the caller (asynchronously), and
 * applied (groups_apply) by the same code start-up replay uses.
 *
 * Thread-safety: a mutex for the list of groups and one per group; every call is short and may
 * be made from any event loop. A Checkpoint's append holds its own group's mutex only.
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
 * name is new. owner: the key asking ("" or NULL: none), the record's "owner" for a new name; a
 * redefinition keeps the group's first owner.
 */
int groups_define_prepare(groups_t *gs, const char *name, factum_str_t body, const char *owner, buf_t *rec,
                          bool *created, factum_error_t *err);
/* Applies a GroupDefined record that is durable at position pos. */
void groups_define_apply(groups_t *gs, factum_str_t rec, uint64_t pos);
/* FACTUM_ENOTFOUND unless the group exists; then the GroupDeleted record data. */
int groups_delete_prepare(groups_t *gs, const char *name, buf_t *rec, factum_error_t *err);
void groups_delete_apply(groups_t *gs, const char *name);

/* Whether the group exists. */
bool groups_has(groups_t *gs, const char *name);
/* How many groups there are (the limit on definitions counts them); how many key owns (a
   key's max_groups counts those). */
size_t groups_count(groups_t *gs);
uint64_t groups_count_owned(groups_t *gs, const char *key);

/*
 * One delivery handed out by groups_pull: the event (borrowed from the batch, until
 * groups_batch_free), its delivery id KEY.ID_ATTEMPT and its attempt as the client counts it
 * (from 1, again from 1 after a replay from the parked set).
 */
typedef struct groups_delivery {
    uint64_t key;
    uint32_t id_attempt, attempt;
    const factum_event_t *event;
    const factum_event_t *raw; /* the event as stored (before an upcast: factum_result_event_raw) */
} groups_delivery;

typedef struct groups_batch {
    groups_delivery *d;
    size_t n, cap;
    factum_result_t **res; /* the reads the events live in */
    size_t nres, capres;
} groups_batch;
void groups_batch_free(groups_batch *b);

/*
 * Hands out up to max deliveries into out (appended). Pull: member 0. Push: member = the
 * connection's id, and max is the member's limit on unacknowledged deliveries. out->n == 0: the
 * caller may wait and ask again. FACTUM_ENOTFOUND for no group. A read that fails with damage
 * (FACTUM_ECORRUPT, FACTUM_EIO) stops delivery at that event — it is never marked done — until a
 * read there succeeds; a call that then has nothing to hand out returns that error (the message
 * names the group, the key and the damage), and the group's stats say "stopped".
 */
int groups_pull(groups_t *gs, const char *name, size_t max, uint64_t member, groups_batch *out, factum_error_t *err);
/* A push member went away: what it holds in flight times out now (and comes again). */
void groups_release_member(groups_t *gs, const char *name, uint64_t member);
/* Counts members that are there now (the stats' push_members and waiting_pulls): push +1 when a
   push member connects and -1 when it goes (before groups_release_member), pulls +1 when a pull
   starts waiting and -1 when it ends. A group deleted meanwhile is not counted. */
void groups_members_count(groups_t *gs, const char *name, int push, int pulls);

/* An id of an ack or nack batch that was not taken, and why (a static string). */
typedef struct groups_refusal {
    uint64_t key;
    uint32_t attempt;
    const char *reason;
} groups_refusal;

/* A decided state change: the record to write (rec, n keys in it; n == 0: nothing to write),
   and for an ack or nack the ids refused. groups_change_free releases it. */
typedef struct groups_change {
    buf_t rec;
    size_t n;
    groups_refusal *refused;
    size_t nrefused, caprefused;
} groups_change;
void groups_change_free(groups_change *ch);

/*
 * Checks the delivery ids of an ack and renders the Acked record. An id not in flight as that
 * attempt (timed out and delivered again, nacked, never delivered) does not stop the others: it
 * goes to ch->refused. Ids already done are accepted again (acks are idempotent).
 * FACTUM_ENOTFOUND (no group), FACTUM_EINVAL (malformed, or a member other than delivery_ids:
 * nothing is taken), FACTUM_ECONFLICT (every id refused; the message names one; ch->refused
 * lists them).
 */
int groups_ack_prepare(groups_t *gs, const char *name, factum_str_t body, groups_change *ch, factum_error_t *err);
/*
 * Checks a nack {delivery_ids, action, delay_ms, reason} and renders its Nacked record. A retry
 * of a delivery at max_deliveries, or of one replayed from the parked set, parks it instead.
 * Ids not in flight (done ones included) are refused as for ack.
 */
int groups_nack_prepare(groups_t *gs, const char *name, factum_str_t body, groups_change *ch, factum_error_t *err);
/* Renders {keys} for Replayed or ParkedDeleted: the parked events named in body's
   delivery_ids, or `one`, or all of them. FACTUM_ENOTFOUND for a name that is not parked. */
int groups_parked_prepare(groups_t *gs, const char *name, factum_str_t body, const char *one, groups_change *ch,
                          factum_error_t *err);

/* A parked event: where it is in the log, how many deliveries it had, why and when parked. */
typedef struct groups_parked {
    uint64_t key, pos;
    uint32_t attempts;
    int64_t at; /* µs since the epoch */
    char reason[256];
} groups_parked;
/* A copy of the parked set (*n of them, free(*out)), or of the one parked id `one`;
   FACTUM_ENOTFOUND for no group or no such parked event. */
int groups_parked_get(groups_t *gs, const char *name, const char *one, groups_parked **out, size_t *n);

/* Applies a durable state record (Acked, Nacked, Replayed, ParkedDeleted) of group `name`. */
void groups_apply(groups_t *gs, const char *name, factum_str_t type, factum_str_t rec);
/* A prepared state record will not be applied (its write failed or was never made). Every
   prepare that rendered a record (n > 0) ends in groups_apply or this: Checkpoints are only
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
    uint32_t push_members, waiting_pulls; /* members now: push connections, long-poll pulls waiting */
    double oldest_parked_s;
    uint64_t delivered, redelivered, acked;
    double delivery_rate, redelivery_rate; /* per second, over about the last 10 s */
    int stopped; /* 1: a read that failed (damage) stopped delivery; GET /groups/{g} says where */
    /* when stopped: the error, and where (a revision for a stream source, else a position) */
    int err_code;
    bool err_is_revision;
    uint64_t err_key, err_pos; /* err_pos: the event's position, UINT64_MAX if unknown */
    char err_msg[320];
} group_stats;
/* Calls fn with the stats of every group (for /metrics). */
void groups_each_stats(groups_t *gs, void (*fn)(void *ctx, const group_stats *st), void *ctx);

/* A group as GET /groups shows it: its definition as its record holds it (the members of a
   JSON object, without braces or name: the record's form is the API's) and its stats. */
typedef struct groups_view {
    buf_t config;
    group_stats st;
} groups_view;
/* One group; FACTUM_ENOTFOUND. Free v->config. */
int groups_show(groups_t *gs, const char *name, groups_view *v);
/* Every group: *n views (free each config, then *out). */
void groups_list(groups_t *gs, groups_view **out, size_t *n);

/* For tests (tests/test_group_model.c): a clock of the caller's, and no keeper thread — the
   caller runs the keeper's round (rates, Checkpoints, ack timeouts) with groups_tick. */
typedef struct groups_opts {
    int64_t (*mono_us)(void *ctx); /* deadlines and retries */
    int64_t (*wall_us)(void *ctx); /* what records say */
    void *clock_ctx;
    bool no_keeper;
} groups_opts;
int groups_open_opts(factum_t *db, const groups_opts *o, groups_t **out, factum_error_t *err);
void groups_tick(groups_t *gs);

/* The stream holding a group's state: "$group-NAME". */
void groups_state_stream(const char *name, char out[GROUP_MAX_NAME + 8]);

#endif
