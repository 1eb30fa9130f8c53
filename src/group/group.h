/*
 * group.h — private to src/group/: what a group is in memory, shared by its three files.
 *   def.c      a definition: its checks, and its record's JSON ($groups GroupDefined)
 *   machine.c  the state machine: entries indexed by key, the floor, acks, nacks, parking,
 *              and the one apply() that live writes and start-up replay both use. No store I/O,
 *              no locks: the caller holds the group's mutex.
 *   pull.c     handing out events: retries, held events, new events (reads the store).
 *   groups.c   the registry (a mutex for the list, one per group), the keeper thread (ack
 *              timeouts, Checkpoints), stats, start-up replay.
 */
#ifndef FACTUM_GROUP_H
#define FACTUM_GROUP_H

#include "groups.h"

#include "../sys/owners.h"

#include <pthread.h>

#define MAX_IN_FLIGHT 10000
#define MAX_HELD 100000       /* by_stream: events read and waiting for their stream; reading stops past it */
#define CHECKPOINT_EVERY 1000 /* state records between Checkpoint snapshots */
#define CHECKPOINT_MAX_BYTES (900u << 10) /* a snapshot larger than this is put off (the data limit is 1 MiB) */
#define MAX_FILTERS 16

enum { SRC_STREAM, SRC_CATEGORY, SRC_ALL };
enum { E_INFLIGHT, E_RETRY, E_DONE, E_PARKING, E_HELD }; /* HELD: read, waiting for its stream (by_stream) */

/* What a group reads and how it delivers: the GroupDefined record. */
typedef struct group_def {
    int src;
    bool by_stream;
    char src_name[256]; /* stream or category */
    char types[MAX_FILTERS][256], cats[MAX_FILTERS][256];
    int ntypes, ncats;
    uint32_t ack_timeout_ms, max_deliveries, min_delay_ms, max_delay_ms;
    uint64_t start;
} group_def;

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
    bool mark;        /* scratch, within one call (an ack's keys) */
    uint8_t kind;
    uint64_t member; /* the push member holding it in flight, 0 for pull */
    int64_t t;       /* in flight: deadline; retry: when due (µs, monotonic clock; records hold the wall clock) */
} entry;

/* Open addressing from a key to its slot in an array (entries or parked), rebuilt when the
   array is compacted. Slots hold index + 1 (0: empty). */
typedef struct keyidx {
    uint32_t *slot;
    size_t cap; /* a power of two, at least twice the array's length */
} keyidx;

typedef struct group_clock {
    int64_t (*mono_us)(void *ctx); /* deadlines and retries wait on it */
    int64_t (*wall_us)(void *ctx); /* what records say */
    void *ctx;
} group_clock;

typedef struct group {
    char name[GROUP_MAX_NAME + 1];
    char owner[OWNER_MAX]; /* the key that first defined it ("" none): its record's "owner" */
    group_def d;
    const group_clock *clk;
    pthread_mutex_t mu; /* everything below; the registry's mutex holds refs, gone and link */
    int refs;           /* callers between acquire and release */
    bool gone;          /* deleted: freed by the last release */
    uint64_t next, floor;
    entry *e;
    size_t n, cap;
    keyidx ei; /* key -> e[] */
    uint64_t delivered, redelivered, acked;
    uint32_t push_members, waiting_pulls; /* connected push members, pulls waiting (long polls) now */
    uint64_t created_pos;                 /* state records before this belong to an earlier group of the name */
    parked *pk;
    size_t npk, cappk;
    keyidx pi; /* key -> pk[] */
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

/* The engine: the registry of groups (groups.c). */
struct groups {
    factum_t *db;
    group_clock clk;
    pthread_mutex_t mu;
    group *list;
    owners owned;     /* under mu: the list's groups by owner (a key's max_groups) */
    pthread_t keeper; /* expires deliveries that missed their ack timeout; writes Checkpoints */
    pthread_cond_t cond;
    bool stop, has_keeper;
    uint64_t term; /* the store's leadership term the groups were read in (factum_leads; the keeper's) */
};

/* ---- groups.c ---- */
/* The group `name`, locked and referenced; or NULL. End with group_release. */
group *group_acquire(groups_t *gs, const char *name);
void group_release(groups_t *gs, group *g);

/* ---- machine.c ---- */
/* realloc, or abort with a message: the server does not drop state on out-of-memory (STYLE.md). */
void *group_xrealloc(void *p, size_t n);

/* ---- machine.c: keyidx ---- */
size_t keyidx_find(const keyidx *ix, const void *arr, size_t stride, uint64_t key); /* SIZE_MAX: none */
/* After arr[idx] (of n) got key; rebuilds (grows) when needed. */
void keyidx_put(keyidx *ix, const void *arr, size_t stride, size_t n, uint64_t key, size_t idx);
void keyidx_del(keyidx *ix, const void *arr, size_t stride, uint64_t key);
void keyidx_rebuild(keyidx *ix, const void *arr, size_t stride, size_t n);

/* ---- def.c ---- */
bool group_str_into(factum_str_t raw, char *out, size_t cap);
bool group_name_ok(const char *n);
/* Parses a definition (a body, or a GroupDefined record) into d; resolve: work out "start"
   against the store (a new group). 0, or FACTUM_EINVAL / FACTUM_EBADSTREAM with the reason. */
int group_def_parse(factum_t *db, factum_str_t body, group_def *d, bool resolve, factum_error_t *err);
/* Whether a definition reads the same events from the same place (what may not change). */
bool group_def_same_source(const group_def *a, const group_def *b);
/* The definition's members as its record (and GET /groups/{name}) holds them: "source", "start",
   "strategy", "ack_timeout_ms", "max_deliveries", "retry" — without braces. */
void group_def_render(const group_def *d, buf_t *b);

/* ---- machine.c ---- */
entry *group_entry_of(group *g, uint64_t key);
entry *group_entry_add(group *g, uint64_t key, uint64_t pos); /* NULL: out of memory */
parked *group_parked_of(group *g, uint64_t key);
/* The floor: every key below it without an entry is done (it never moves back; a parked event
   replayed from below it has an entry). Drops done entries below it. */
void group_refloor(group *g);
size_t group_count_kind(const group *g, int kind);
bool group_retry_parks(const group *g, const entry *x);
/* Renders one Nacked item for x going `to` (retry, park or skip); due from now_wall. */
void group_nack_item(const group *g, buf_t *rec, const entry *x, const char *to, int64_t now_wall, int64_t delay_ms,
                     bool first);
/* Applies one durable state record, live or at start-up (the one code path for both). */
void group_apply(group *g, factum_str_t type, factum_str_t data, bool replaying);
/* Prepares (decides) an ack, a nack, a replay or delete of parked events: the record to write
   in ch->rec, its count in ch->n; nothing in the group changes but writes_pending. */
int group_ack_decide(group *g, factum_str_t body, groups_change *ch, factum_error_t *err);
int group_nack_decide(group *g, factum_str_t body, groups_change *ch, factum_error_t *err);
int group_parked_decide(group *g, factum_str_t body, const char *one, groups_change *ch, factum_error_t *err);
void group_free(group *g);

#endif
