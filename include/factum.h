/*
 * factum.h — the embedded Factum event store.
 *
 * A program links libfactum, opens a data folder and appends CloudEvents to streams, the way
 * programs use SQLite. One process owns a data folder at a time. Every function is thread-safe
 * on one factum_t: many threads may append and read at once; concurrent appends share fsyncs
 * (group commit).
 *
 * Errors: every function that can fail returns 0 or a negative FACTUM_E* code and, when given a
 * factum_error_t, fills it with a one-line message. factum_strerror() names a code.
 *
 * Lifetimes: strings passed in are borrowed for the duration of the call. Strings handed out
 * in a factum_result_t live until factum_result_free() on that result.
 */
#ifndef FACTUM_H
#define FACTUM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FACTUM_VERSION "0.1.0"

/* The one list of error codes: name, message. Codes are 0, -1, -2, ... in this order. */
#define FACTUM_ERRORS(X)                                                                                               \
    X(OK, "success")                                                                                                   \
    X(EINVAL, "invalid argument")                                                                                      \
    X(ENOMEM, "out of memory")                                                                                         \
    X(EIO, "I/O error")                                                                                                \
    X(ENOSPC, "no space left on device")                                                                               \
    X(ECORRUPT, "data corruption detected")                                                                            \
    X(ELOCKED, "data folder is in use by another process")                                                             \
    X(EFORMAT, "data folder has an unsupported format")                                                                \
    X(ENOTFOUND, "stream not found")                                                                                   \
    X(EREVISION, "wrong expected revision")                                                                            \
    X(ECONFLICT, "event id already used with different content")                                                       \
    X(ETOOBIG, "too large")                                                                                            \
    X(EBADEVENT, "invalid event")                                                                                      \
    X(EBADSTREAM, "invalid stream name")                                                                               \
    X(EFAILED, "writer has failed; reopen the store")                                                                  \
    X(ECLOSED, "store is closing")                                                                                     \
    X(EUNREACHABLE, "cannot reach the server")                                                                         \
    X(EDELETED, "stream is deleted")                                                                                   \
    X(ETIMEDOUT, "timed out")                                                                                          \
    X(EDENIED, "not authorized: the server wants a valid API key with the permission")                                 \
    X(ENOTLEADER, "not the cluster leader: writes go to the leader")                                                   \
    X(EINCOMPLETE, "data folder is an unfinished backup or restore")                                                   \
    X(ESCHEMA, "event data does not match its schema")                                                                 \
    X(ECONDITION, "append condition failed: an event matching its query exists")

#define FACTUM__ENUM(name, msg) FACTUM_##name##_INDEX,
enum { FACTUM_ERRORS(FACTUM__ENUM) FACTUM__ERROR_COUNT };
#undef FACTUM__ENUM
#define FACTUM__CODE(name, msg) FACTUM_##name = -FACTUM_##name##_INDEX,
enum { FACTUM_ERRORS(FACTUM__CODE) };
#undef FACTUM__CODE

/* The message for a code ("unknown error" for codes outside the list). Static storage. */
const char *factum_strerror(int code);
/* The name of a code, e.g. "FACTUM_EREVISION". Static storage. */
const char *factum_errname(int code);

typedef struct factum_error {
    int code;
    char message[320]; /* one line, no trailing newline */
} factum_error_t;

/* A borrowed byte string; not NUL-terminated. */
typedef struct factum_str {
    const char *ptr;
    size_t len;
} factum_str_t;

/* How the bytes of an event's data are to be read. */
enum {
    FACTUM_DATA_NONE = 0,   /* the event has no data */
    FACTUM_DATA_JSON = 1,   /* data holds JSON text, kept byte for byte */
    FACTUM_DATA_BINARY = 2, /* data holds raw bytes (rendered as data_base64) */
};

/*
 * One event. On append, the caller fills the attributes; a zero-length id makes the store
 * generate a UUIDv7. `stream`, `revision`, `position` and `time_us` are set by the store and
 * ignored on append. `extensions` is the text of JSON object members without the braces,
 * e.g. "tenant":7,"region":"eu" ; it is kept byte for byte. Among them `traceparent` and
 * `tracestate` must be valid W3C Trace Context (docs/events.md, "Trace context"), or the append
 * fails with FACTUM_EBADEVENT.
 */
typedef struct factum_event {
    factum_str_t id;
    factum_str_t type; /* required */
    factum_str_t source;
    factum_str_t subject;
    factum_str_t datacontenttype;
    factum_str_t correlationid;
    factum_str_t causationid;
    factum_str_t extensions;
    factum_str_t data;
    int data_format; /* FACTUM_DATA_* */

    factum_str_t stream;
    uint64_t revision; /* 0-based within the stream */
    uint64_t position; /* 0-based in the global log, gap-free in commit order */
    int64_t time_us;   /* commit time, microseconds since the Unix epoch, never decreasing */
} factum_event_t;

/* Limits. A value one past a limit is rejected with FACTUM_ETOOBIG or FACTUM_EBADEVENT. */
#define FACTUM_MAX_STREAM_NAME 255               /* bytes */
#define FACTUM_MAX_ATTRIBUTE 255                 /* bytes of id, type, correlationid, causationid */
#define FACTUM_MAX_LONG_ATTRIBUTE 4096           /* bytes of source, subject, datacontenttype */
#define FACTUM_MAX_EXTENSIONS 65536              /* bytes of extension members */
#define FACTUM_DEFAULT_MAX_DATA 1048576          /* bytes of data per event (1 MiB) */
#define FACTUM_MAX_BATCH_EVENTS 10000            /* events per append */
#define FACTUM_MAX_DIR 3000                      /* bytes of a data folder path */
#define FACTUM_MAX_ARCHIVE_AFTER_S 3153600000ull /* archive_after_s: 100 years */

typedef struct factum_options {
    uint64_t segment_bytes;   /* size of each log segment file; 0 = 256 MiB */
    uint32_t max_data_bytes;  /* largest data per event; 0 = 1 MiB */
    uint32_t memtable_events; /* index entries kept in memory before a flush; 0 = 262144 */
    uint32_t stream_cache;    /* streams whose last revision is kept in memory; 0 = 2^21 */
    /* Archival (docs/operations.md, "Archival"): sealed segments whose newest event is at least
       archive_after_s seconds old move to the folder archive_dir (another disk, a mounted
       bucket), which must exist, and stay readable there. NULL: nothing is archived; segments
       archived earlier are read from the folder their markers name. */
    const char *archive_dir;
    uint64_t archive_after_s; /* 0: as soon as a segment is sealed; at most FACTUM_MAX_ARCHIVE_AFTER_S */
    /* For tests: an I/O layer that injects faults (see src/io/io.h). NULL = the real one. */
    struct io_vfs *vfs;
} factum_options_t;

typedef struct factum factum_t;

/*
 * Opens (creating if needed) the data folder `dir`. Recovers after a crash: truncates a torn
 * tail, rebuilds indexes that are missing or behind. Fails with FACTUM_ELOCKED (naming the
 * owner's pid) when another opener holds the folder, FACTUM_ECORRUPT (naming file and offset)
 * when sealed data fails its checksum. `opts` may be NULL.
 */
int factum_open(const char *dir, const factum_options_t *opts, factum_t **out, factum_error_t *err);

/* Waits for appends in flight, flushes indexes, releases the folder. NULL is a no-op. */
void factum_close(factum_t *db);

/* Expected revision for an append: one of these, or the exact last revision (>= 0). */
#define FACTUM_EXPECT_ANY ((int64_t)-1)
#define FACTUM_EXPECT_NO_STREAM ((int64_t)-2)
#define FACTUM_EXPECT_EXISTS ((int64_t)-3)

typedef struct factum_append_result {
    uint64_t first_revision;
    uint64_t last_revision;
    uint64_t first_position;
    uint64_t last_position;
    int idempotent;             /* 1: every event was already there; nothing was appended */
    int64_t actual_revision;    /* on FACTUM_EREVISION: the stream's last revision, -1 if none */
    uint64_t conflict_position; /* on FACTUM_ECONDITION: the first event that matched the condition */
} factum_append_result_t;

/*
 * Appends `n` events to `stream` atomically, after fdatasync. Returns 0, or:
 * FACTUM_EREVISION (expected revision missed; res->actual_revision says what it is),
 * FACTUM_ECONFLICT (an id the stream holds, with other content, or a batch that only partly
 * repeats earlier events), FACTUM_EBADEVENT / FACTUM_EBADSTREAM / FACTUM_ETOOBIG (bad input;
 * nothing appended), FACTUM_EFAILED (an earlier fsync failed), FACTUM_ENOSPC, FACTUM_EIO.
 * Re-appending events whose ids the stream holds, with the same content, returns the original
 * revisions and positions with res->idempotent = 1, whatever `expected` says.
 */
int factum_append(factum_t *db, factum_str_t stream, int64_t expected, const factum_event_t *events, size_t n,
                  factum_append_result_t *res, factum_error_t *err);

/*
 * Asynchronous append, for servers that must not block a thread per request. Validation
 * errors return at once (and cb is never called); otherwise 0, and cb(ctx, rc, res, message)
 * runs later on the writer thread with what factum_append would have returned. The callback
 * must be quick and must not call into the store; `events` and `stream` may be freed as soon
 * as this returns.
 */
typedef void (*factum_append_cb)(void *ctx, int rc, const factum_append_result_t *res, const char *message);
int factum_append_async(factum_t *db, factum_str_t stream, int64_t expected, const factum_event_t *events, size_t n,
                        factum_append_cb cb, void *ctx, factum_error_t *err);

/*
 * Sets (fn) or clears (NULL) the commit hook: fn(ctx, commit) runs on the writer thread each
 * time appends become durable, before their callers are woken, with what became durable:
 * positions [first, head) and the key (factum_stream_key) of the stream of each append in it
 * (a stream may repeat; a metadata change counts for "$metadata"). So a server wakes only the
 * subscribers of those streams without reading the events back. The summary lives during the
 * call. fn must be quick and must not call into the store (wake a thread, write an eventfd).
 */
typedef struct factum_commit {
    uint64_t first, head;
    size_t nkeys;
    const uint64_t *stream_keys;
} factum_commit_t;
typedef void (*factum_commit_cb)(void *ctx, const factum_commit_t *commit);
void factum_set_commit_hook(factum_t *db, factum_commit_cb fn, void *ctx);
/* A 64-bit key of a stream name (never 0), the one factum_commit_t lists. */
uint64_t factum_stream_key(factum_str_t stream);

/*
 * Sets (fn) or clears (NULL) the append check: fn(ctx, stream, events, n, err) runs in the
 * caller's thread for every append (sync or async), after the store's own checks and before
 * anything is queued; nonzero refuses the whole batch with that code (nothing is written).
 * Calls may run on many threads at once. free_ctx(ctx), if given, runs at factum_close. Event
 * schemas (factum_schemas_open) are such a check.
 */
typedef int (*factum_append_check_cb)(void *ctx, factum_str_t stream, const factum_event_t *events, size_t n,
                                      factum_error_t *err);
void factum_set_append_check(factum_t *db, factum_append_check_cb fn, void *ctx, void (*free_ctx)(void *ctx));
/*
 * Turns on event schemas (docs/schemas.md): loads the registry kept in the "$schemas" stream
 * and from then on checks the data of every append of a registered type against its schema
 * (per type: off, warn or enforce). An event that does not validate under "enforce" refuses its
 * batch with FACTUM_ESCHEMA. Until factum_close. 0, or the read's error.
 */
int factum_schemas_open(factum_t *db, factum_error_t *err);
/*
 * Sets (fn) or clears (NULL) the read transform: fn(ctx, in, out, &block) runs on every event a
 * read returns (factum_read_stream, factum_read_all, factum_read_at), on the reading thread;
 * returning 1 it has filled *out (the event to return instead) with strings in *block, a
 * malloc'd block the result frees; otherwise the event is returned as stored. The stored form
 * stays reachable through factum_result_event_raw. Event schemas' upcasting is such a
 * transform. fn must not read the store.
 */
typedef int (*factum_read_transform_cb)(void *ctx, const factum_event_t *in, factum_event_t *out, char **block);
void factum_set_read_transform(factum_t *db, factum_read_transform_cb fn, void *ctx);
/*
 * Sets (fn) or clears (NULL) what a read transform that changes event types tells a read
 * filtered by type (factum_query_t.type): fn(ctx, type, stored, cap) returns 0 when the
 * transform changes no event's type to or from `type` (the filter compares the stored type,
 * as without a transform); otherwise how many types events may be stored as to read as `type`
 * (`type` itself among them), written to stored[0..cap) — more than cap: nothing is written, ask
 * again with that much room. Events of those types are then transformed as the read meets
 * them and kept only if their type as read is `type`. The strings must stay valid until the
 * read ends. Runs on the reading thread, once per read; fn must not read the store.
 */
typedef size_t (*factum_read_types_cb)(void *ctx, factum_str_t type, factum_str_t *stored, size_t cap);
void factum_set_read_types(factum_t *db, factum_read_types_cb fn, void *ctx);

/* A set of events returned by a read. */
typedef struct factum_result factum_result_t;
size_t factum_result_count(const factum_result_t *r);
/* The i-th event; its strings live until factum_result_free(r). */
const factum_event_t *factum_result_event(const factum_result_t *r, size_t i);
/* Where to continue (revision or position to pass as `from`), or FACTUM_END if nothing is left. */
uint64_t factum_result_next(const factum_result_t *r);
void factum_result_free(factum_result_t *r);
/* The i-th event as stored, before the read transform (factum_set_read_transform) changed it
   (the same as factum_result_event when it did not); lives until factum_result_free(r). */
const factum_event_t *factum_result_event_raw(const factum_result_t *r, size_t i);

#define FACTUM_END UINT64_MAX /* as `from` on a backward read: start at the last event */

/*
 * Reads up to `limit` events of `stream` from revision `from` (inclusive), forward or backward.
 * FACTUM_ENOTFOUND if the stream has no events (or is soft-deleted), FACTUM_EDELETED if it is
 * tombstoned. Events its metadata hides are left out. Never scans the global log.
 */
int factum_read_stream(factum_t *db, factum_str_t stream, uint64_t from, size_t limit, int backward,
                       factum_result_t **out, factum_error_t *err);

/* A read of the global log. Empty strings mean "no filter". */
typedef struct factum_query {
    uint64_t from; /* position, inclusive; FACTUM_END with backward = from the end */
    size_t limit;
    int backward;
    factum_str_t type;          /* only events of this type */
    factum_str_t category;      /* only streams named CATEGORY-... (or exactly CATEGORY) */
    factum_str_t correlationid; /* only events of this correlation id (served from an index) */
    int64_t from_time;          /* nonzero: start at the first event committed at or after this time
                                   (microseconds since the epoch) instead of `from`; forward only */
    int system;                 /* include system streams (names starting with '$'), left out by default */
    int type_as_stored;         /* `type` filters the type as stored, not as the read transform
                                   returns it (factum_set_read_types) */
} factum_query_t;

int factum_read_all(factum_t *db, const factum_query_t *q, factum_result_t **out, factum_error_t *err);

/*
 * The event at exactly `position` (system streams included) as a one-event result, or
 * FACTUM_ENOTFOUND if there is none there now: past the head, hidden by its stream's metadata,
 * or removed by a scavenge.
 */
int factum_read_at(factum_t *db, uint64_t position, factum_result_t **out, factum_error_t *err);

/*
 * Dynamic consistency boundaries (docs/dcb.md). An event's tags are its extension attribute
 * `tags`: one string, the tags separated by single spaces (CloudEvents has no arrays), e.g.
 * "tags":"course:c1 student:s7" among factum_event_t.extensions. A tag is 1 to FACTUM_MAX_TAG
 * bytes of UTF-8 without spaces, control characters, '"' or '\'; tags starting with "stream:"
 * or "type:" are implicit (every event has "stream:" its stream and "type:" its type) and
 * cannot be given. A query is items OR-ed; an item matches an event whose type is one of
 * `types` (any type when there are none) and that has all of `tags`; an item needs at least
 * one type or tag. Queries are served from the tag and type indexes, never by a scan.
 */
#define FACTUM_MAX_TAG 255        /* bytes of one tag */
#define FACTUM_MAX_TAGS 32        /* tags per event, and per query item */
#define FACTUM_MAX_QUERY_ITEMS 32 /* items per query, and types per item */
typedef struct factum_query_item {
    const factum_str_t *types;
    size_t ntypes;
    const factum_str_t *tags;
    size_t ntags;
} factum_query_item_t;
typedef struct factum_tag_query {
    const factum_query_item_t *items;
    size_t nitems;
} factum_tag_query_t;
/* Parses a query's JSON, {"items":[{"types":[...],"tags":[...]}]} (a member it does not know is
   refused), into *out, checked as factum_tag_query_check does; free it with
   factum_tag_query_free. 0, FACTUM_EINVAL (err says why) or FACTUM_ENOMEM. */
int factum_tag_query_parse(const char *json, size_t len, factum_tag_query_t **out, factum_error_t *err);
void factum_tag_query_free(factum_tag_query_t *q);
/* 0 if q is a valid query (limits, tags well formed), else FACTUM_EINVAL or FACTUM_ETOOBIG. */
int factum_tag_query_check(const factum_tag_query_t *q, factum_error_t *err);
/* The event's explicit tags as stored: the text of its `tags` attribute (borrowed from e), or
   empty. Split it on spaces. */
factum_str_t factum_event_tags(const factum_event_t *e);
/* Whether the event matches the query (its implicit tags included). */
int factum_tag_query_matches(const factum_tag_query_t *q, const factum_event_t *e);

/*
 * A conditional append: factum_append that fails with FACTUM_ECONDITION, appending nothing,
 * when an event matching `fail_if` exists at a position after `after` (FACTUM_AFTER_NONE: at
 * any position). The writer checks it at commit time against the log and the appends before it
 * in the same commit group, so two appends that conflict can never both succeed;
 * res->conflict_position names the first matching event. An `after` at or past the head is
 * FACTUM_EINVAL. Standalone stores only: a store in cluster mode refuses it (FACTUM_EINVAL).
 */
#define FACTUM_AFTER_NONE UINT64_MAX
typedef struct factum_condition {
    factum_tag_query_t fail_if;
    uint64_t after;
} factum_condition_t;
int factum_append_if(factum_t *db, factum_str_t stream, int64_t expected, const factum_event_t *events, size_t n,
                     const factum_condition_t *cond, factum_append_result_t *res, factum_error_t *err);
int factum_append_if_async(factum_t *db, factum_str_t stream, int64_t expected, const factum_event_t *events, size_t n,
                           const factum_condition_t *cond, factum_append_cb cb, void *ctx, factum_error_t *err);

/*
 * A multi-stream append: each part's events go to its stream, with its own expected revision,
 * all of them or none, at contiguous positions in the order of the parts; the streams must
 * differ (at most FACTUM_MAX_STREAMS), and all the events together obey the limits of one
 * batch. `cond` (or NULL) is checked as for factum_append_if. A repeat of every part's events
 * (by their ids, as for factum_append) is idempotent; a repeat of some parts is
 * FACTUM_ECONFLICT. On return each part's `res` says what its stream got (on FACTUM_EREVISION,
 * the part that missed has its actual_revision). Standalone stores only (FACTUM_EINVAL in
 * cluster mode).
 */
#define FACTUM_MAX_STREAMS 64
typedef struct factum_stream_append {
    factum_str_t stream;
    int64_t expected;
    const factum_event_t *events;
    size_t n;
    factum_append_result_t res; /* out */
} factum_stream_append_t;
int factum_append_streams(factum_t *db, factum_stream_append_t *parts, size_t nparts, const factum_condition_t *cond,
                          factum_error_t *err);
/* The same, asynchronously: cb(ctx, rc, res, nparts, message) once, on the writer thread, with
   every part's result (res lives during the call); as factum_append_async otherwise. */
typedef void (*factum_streams_cb)(void *ctx, int rc, const factum_append_result_t *res, size_t nparts,
                                  const char *message);
int factum_append_streams_async(factum_t *db, const factum_stream_append_t *parts, size_t nparts,
                                const factum_condition_t *cond, factum_streams_cb cb, void *ctx, factum_error_t *err);

/*
 * Up to `limit` events matching q, in position order from `from` (inclusive; FACTUM_END with
 * backward: from the last), forward or backward, through the indexes. *head (if given) is the
 * position the answer is consistent up to: every matching event below it that is not hidden
 * by its stream's metadata is in the answer or beyond its last event. factum_result_next is
 * where to continue.
 */
int factum_read_tagged(factum_t *db, const factum_tag_query_t *q, uint64_t from, size_t limit, int backward,
                       uint64_t *head, factum_result_t **out, factum_error_t *err);

/* 0 if factum_append would accept these events (attributes, limits, data), else its error. */
int factum_events_check(factum_t *db, const factum_event_t *events, size_t n, factum_error_t *err);

/* 0 if `name` is a valid stream name, else FACTUM_EBADSTREAM with the reason. */
int factum_stream_name_check(factum_str_t name, factum_error_t *err);

/* The stream's last revision, or -1 if it has no events (hidden or deleted ones count: appends
   continue after it). */
int64_t factum_stream_revision(factum_t *db, factum_str_t stream);

/*
 * Listings of streams and categories, served from the index (never a scan of the log), in byte
 * order of the names, `limit` (1 to FACTUM_MAX_LIST) at a time; the next page starts after the
 * last name of this one (`after` empty: from the first). A stream is listed from its first
 * durable event on, and stays listed when it is deleted or its events are scavenged: its
 * metadata tells (factum_meta_get). System streams ('$...') only with `system`.
 */
#define FACTUM_MAX_LIST 10000
typedef struct factum_names factum_names_t;
size_t factum_names_count(const factum_names_t *l);
/* The i-th name; it lives until factum_names_free(l). */
factum_str_t factum_names_name(const factum_names_t *l, size_t i);
/* Streams: the position of the stream's first event (categories: 0). */
uint64_t factum_names_position(const factum_names_t *l, size_t i);
void factum_names_free(factum_names_t *l);
/* Streams whose names start with `prefix` (empty: all). */
int factum_list_streams(factum_t *db, factum_str_t prefix, factum_str_t after, size_t limit, int system,
                        factum_names_t **out, factum_error_t *err);
/* The streams of a category: the one named `category` and those named "CATEGORY-...". */
int factum_list_category(factum_t *db, factum_str_t category, factum_str_t after, size_t limit, int system,
                         factum_names_t **out, factum_error_t *err);
/*
 * Writes one stream of a listing as JSON, as GET /streams answers each item:
 * {"stream","first_position","revision","deleted","tombstone"} (its last revision and deletion
 * state looked up now). Returns the length it needs without the NUL, like factum_meta_json.
 */
size_t factum_stream_json(factum_t *db, factum_str_t stream, uint64_t first_position, char *buf, size_t cap);
/* Categories: each stream name's part before its first '-' (the whole name if it has none). */
int factum_list_categories(factum_t *db, factum_str_t after, size_t limit, int system, factum_names_t **out,
                           factum_error_t *err);

/*
 * The first position whose event was committed at or after time_us (microseconds since the
 * epoch), or the head position if there is none. Commit times never decrease along the log
 * (each commit group's time is greater than the one before), so this is a binary search
 * through the position maps: about log2(head) record reads, no scan.
 */
uint64_t factum_position_at(factum_t *db, int64_t time_us);

/* The number of durable events in the log: the position the next append will get. */
uint64_t factum_head_position(factum_t *db);

/*
 * Waits until the head position is greater than `position` or `timeout_ms` passes (-1: no limit).
 * Returns the head position. Subscriptions are built on this.
 */
uint64_t factum_wait(factum_t *db, uint64_t position, int timeout_ms);

/*
 * Waits until the store's background work is done: memtables waiting to be written are written
 * as index runs, the merges they make due are finished, and the zeroer has zero-filled as far
 * ahead as it means to. For measurements that need a quiet disk (`factum bench engine` runs the
 * ceiling after it) and for tests; appends made meanwhile may make it wait longer.
 */
void factum_settle(factum_t *db);

/* Counters of the writer, for metrics. Histograms count observations <= each bound. */
#define FACTUM_STAT_BUCKETS 14
extern const uint64_t factum_fsync_us_bounds[FACTUM_STAT_BUCKETS];     /* microseconds; last = +Inf */
extern const uint64_t factum_group_events_bounds[FACTUM_STAT_BUCKETS]; /* events; last = +Inf */
typedef struct factum_stats {
    uint64_t appends, events, bytes; /* acknowledged appends (idempotent repeats excluded), events, record bytes */
    uint64_t fsyncs, fsync_us_sum;   /* commit groups synced and their summed fdatasync time */
    uint64_t fsync_us[FACTUM_STAT_BUCKETS];     /* fdatasync latency, non-cumulative counts */
    uint64_t group_events[FACTUM_STAT_BUCKETS]; /* events per fdatasync, non-cumulative counts */
    uint64_t log_bytes;                         /* bytes of records in the log */
    uint64_t head;                              /* durable position */
    uint64_t streams; /* streams in the index: every stream ever written, deleted and system ones included */
    int failed;       /* 0, or the code that stopped the writer */
} factum_stats_t;
void factum_stats(factum_t *db, factum_stats_t *out);

/*
 * Damage that reads have met. A read of an event whose record fails its checksum (or is not the
 * record of that position) returns FACTUM_ECORRUPT; one whose bytes the medium cannot deliver
 * (a SIGBUS on the segment mapping) returns FACTUM_EIO; both name the position, the offset and
 * the file, and the store remembers the position here. Reads of other events go on working.
 * The memory is the process's: a store opened again knows only the damage its reads meet again.
 */
#define FACTUM_INTEGRITY_KEEP 64    /* damaged positions kept with their details */
#define FACTUM_INTEGRITY_COUNT 4096 /* distinct damaged positions counted exactly */
typedef struct factum_damage {
    uint64_t position; /* the event that cannot be read */
    uint64_t offset;   /* of its record in the file (0 if the fault came before it was known) */
    char file[32];     /* relative to the data folder, e.g. "log/00000003.seg" */
    int code;          /* FACTUM_ECORRUPT or FACTUM_EIO */
    char message[80];  /* what is wrong, one line */
    int64_t seen_us;   /* first met, microseconds since the epoch */
} factum_damage_t;
typedef struct factum_integrity {
    uint64_t damaged_events; /* distinct positions met damaged since open, at most FACTUM_INTEGRITY_COUNT */
    int more;                /* 1: more distinct positions than that were met */
    size_t n;                /* entries in damage[] */
    factum_damage_t damage[FACTUM_INTEGRITY_KEEP]; /* the first met, in the order they were met */
    factum_damage_t last;                          /* the latest newly met one (when damaged_events > 0) */
} factum_integrity_t;
/* Copies what reads have met so far into out (a snapshot; caller-owned, about 9 KB). */
void factum_integrity(factum_t *db, factum_integrity_t *out);
/*
 * The position a read's error names, when a damaged record stopped it (FACTUM_ECORRUPT or
 * FACTUM_EIO from a read): 0 and *position, or FACTUM_ENOTFOUND if err names none. Consumers
 * use it to say where they stopped.
 */
int factum_error_position(const factum_error_t *err, uint64_t *position);

/* ---- Stream metadata and deletion (docs/lifecycle.md) ---- */

#define FACTUM_MAX_META_CUSTOM 65536 /* bytes of a stream's custom metadata (a JSON object) */

/*
 * A stream's metadata. Events it rules out disappear from every read at once (stream reads,
 * $all, categories, correlations, and so everything built on them); a scavenge later takes them
 * off the disk. What the rules have hidden stays hidden: widening max_count or max_age later
 * does not bring back events the old values hid (they are folded into truncate_before).
 */
typedef struct factum_meta {
    uint64_t max_age_s;       /* hide events committed more than this many seconds ago; 0 = no limit */
    uint64_t max_count;       /* hide all but the newest N events; 0 = no limit */
    uint64_t truncate_before; /* hide events below this revision; it never moves back */
    factum_str_t custom;      /* a JSON object of the user's own keys, or empty */
    int deleted;              /* soft-deleted (set by factum_delete_stream; factum_meta_set keeps it) */
    int tombstone;            /* deleted for ever */
    uint64_t position;        /* factum_meta_get: where it was last written, FACTUM_END if never */
} factum_meta_t;

/*
 * The stream's metadata (all zero, position FACTUM_END, when none was ever set). out->custom
 * points into memory the caller releases with factum_meta_free(out).
 */
int factum_meta_get(factum_t *db, factum_str_t stream, factum_meta_t *out, factum_error_t *err);
void factum_meta_free(factum_meta_t *m);

/* Writes the metadata as JSON (what GET /streams/{s}/metadata answers); returns the length it
   needs without the NUL, like factum_event_json. */
size_t factum_meta_json(factum_str_t stream, const factum_meta_t *m, char *buf, size_t cap);

/*
 * Replaces the stream's metadata (deleted/tombstone are kept as they are). A truncate_before
 * below the current one is FACTUM_EINVAL; FACTUM_EDELETED on a tombstoned stream. The change is
 * a record in the system stream "$metadata", durable before this returns: res->last_position is
 * its position, res->actual_revision the stream's last revision then (-1: none).
 */
int factum_meta_set(factum_t *db, factum_str_t stream, const factum_meta_t *m, factum_append_result_t *res,
                    factum_error_t *err);
int factum_meta_set_async(factum_t *db, factum_str_t stream, const factum_meta_t *m, factum_append_cb cb, void *ctx,
                          factum_error_t *err);

/*
 * Deletes a stream. Soft (tombstone = 0): its events are hidden (truncate_before = last + 1)
 * and it reads as not found until something is appended again, which continues after the old
 * last revision (as in EventStoreDB); FACTUM_ENOTFOUND if there is nothing to delete.
 * Tombstone: hidden for ever, reads and appends get FACTUM_EDELETED. `expected` is checked
 * against the stream's last revision atomically with the deletion (FACTUM_EREVISION); a
 * soft-deleted stream counts as having none. res as for factum_meta_set.
 */
int factum_delete_stream(factum_t *db, factum_str_t stream, int64_t expected, int tombstone,
                         factum_append_result_t *res, factum_error_t *err);
int factum_delete_stream_async(factum_t *db, factum_str_t stream, int64_t expected, int tombstone, factum_append_cb cb,
                               void *ctx, factum_error_t *err);

/* ---- Reclaiming disk (docs/lifecycle.md) ---- */

typedef struct factum_scavenge_stats {
    int running;
    uint64_t runs;               /* scavenges finished since the store was opened */
    uint64_t segments_total;     /* this run (or the last): sealed segments to look at */
    uint64_t segments_done;      /* looked at so far */
    uint64_t segments_rewritten; /* rewritten without their removed events */
    uint64_t segments_archived;  /* left as they are: archived (a scavenge never compacts the archive) */
    uint64_t events_scanned, events_removed;
    uint64_t bytes_before, bytes_after; /* file bytes of the rewritten segments, before and after */
    uint64_t bytes_reclaimed_total;     /* since the store was opened */
    int64_t started_us, finished_us;    /* of this run (finished 0 while running) */
    int last_error;                     /* 0, or the code that stopped the last run */
    int dry_run;                        /* 1: this run (or the last) only counted (factum_scavenge_dry_run) */
    uint64_t bytes_reclaimable;         /* record bytes of the events it removed, or (dry run) would remove */
} factum_scavenge_stats_t;

/*
 * Rewrites each sealed segment that holds events no read can return any more (deleted,
 * tombstoned, truncated, expired, superseded metadata) without them, and gives the space back to
 * the file system. Runs in the calling thread until done; appends and reads go on meanwhile.
 * A crash at any moment loses nothing that should stay: each segment is replaced by one atomic
 * rename of a synced copy. A stream's last event stays (it carries the stream's revision). One
 * scavenge at a time: FACTUM_ECONFLICT if one is running; FACTUM_ECLOSED if cancelled.
 */
int factum_scavenge(factum_t *db, factum_error_t *err);
/* What a scavenge would give back now, without writing anything: the same decisions over every
   sealed segment, counted in the stats (events_removed, bytes_reclaimable, dry_run = 1). It reads
   every sealed segment that is not archived; one scavenge or dry run at a time, as above. */
int factum_scavenge_dry_run(factum_t *db, factum_error_t *err);
/* Asks a running scavenge to stop after the segment it is on. */
void factum_scavenge_cancel(factum_t *db);
void factum_scavenge_stats(factum_t *db, factum_scavenge_stats_t *out);
/* The stats as JSON (what GET /admin/scavenge answers); returns the length it needs. */
size_t factum_scavenge_json(const factum_scavenge_stats_t *st, char *out, size_t cap);

/* ---- Cluster replication (docs/cluster.md) ---- */

/*
 * A write the store was asked to make (an append, a metadata change, a deletion), validated and
 * encoded, with its ids assigned, waiting to be replicated. Its caller still waits for it (or
 * its callback is still due): each proposal ends in exactly one factum_batch_apply that names it
 * or one factum_proposal_fail.
 */
typedef struct factum_proposal factum_proposal_t;
typedef int (*factum_replicate_cb)(void *ctx, factum_proposal_t *p);

/*
 * Sets (fn) or clears (NULL) the replicator. While it is set, every write is handed to
 * fn(ctx, p) on the caller's thread once validated, instead of going to the writer: fn must only
 * queue it and return 0, or return a negative code to refuse it (the write then fails at once
 * with that code, and p is not fn's). Only factum_batch_apply then writes to the log.
 */
void factum_set_replicator(factum_t *db, factum_replicate_cb fn, void *ctx);

/*
 * 1 if this node writes on its own now, else 0 (docs/cluster.md, "Engines above the log"). Engines
 * that act without being asked — timers, the consumer groups' keeper, saga runners, projections
 * into PostgreSQL — consult it and act only while it is true. *term (if not NULL) counts the
 * times it became true: a new term means other nodes may have written meanwhile, so state built
 * from the log must be read again before acting. Standalone: always true, term 1.
 */
int factum_leads(factum_t *db, uint64_t *term);
/* Set by the replicator's owner (src/cluster) as leadership comes (after catching up with the
   log) and goes. */
void factum_set_leads(factum_t *db, int leads);

/* Completes p with an error (its caller wakes, or its callback runs, in this thread). */
void factum_proposal_fail(factum_proposal_t *p, int code, const char *message);

/*
 * Encodes proposals as one batch (the message format of docs/cluster.md). after_us = 0: nothing
 * this node encoded is still unapplied; the batch names the log's head now as its position and
 * takes a commit time after the last group's. after_us > 0: the time of the last batch still in
 * flight; the batch follows it (its position is FACTUM_BATCH_FOLLOWS: wherever the head is when
 * it is applied) with a later time. *time_us (if not NULL) gets the batch's time. Takes
 * ps[0..n) in order while the message stays within max_bytes and the size of a commit group;
 * *used says how many (at least one, else FACTUM_ETOOBIG: ps[0] alone is larger than max_bytes).
 * *out is malloc'd (the caller frees it). Call it with nothing else writing to the store (a
 * leader that applies only the batches it publishes, in order).
 */
#define FACTUM_BATCH_FOLLOWS UINT64_MAX
int factum_batch_encode(factum_t *db, factum_proposal_t *const *ps, size_t n, size_t max_bytes, int64_t after_us,
                        size_t *used, uint8_t **out, size_t *len, int64_t *time_us, factum_error_t *err);

/* The position and commit time a batch carries. FACTUM_ECORRUPT if it does not check out. */
int factum_batch_info(const void *msg, size_t len, uint64_t *first_position, int64_t *time_us, factum_error_t *err);
/* The commit time of the log's newest group (0: an empty log). In a cluster every group is a
   replicated batch stamped with its time, and those times only grow along the stream: a batch
   whose time is not after this was applied here before, and a log whose time is after the
   stream's last batch holds groups the stream does not. Read it where batches are applied. */
int64_t factum_commit_time(factum_t *db);

/*
 * Applies a batch to the log as one commit group, at its position and with its time, and waits
 * until it is durable. Each request is decided as an append would be (expected revision,
 * idempotency); ps, when not NULL, are the n proposals the batch was encoded from, completed
 * here with those outcomes. *applied: 1 applied now, 0 skipped (its time is not after the last
 * group that wrote: it was applied before). Returns 0, or: FACTUM_ECORRUPT (the message does not
 * check out, or the log's head is not the position the batch names: messages are missing or this
 * node diverged; nothing was written), or an outcome that need not be the same on another node
 * (FACTUM_EIO, FACTUM_ENOSPC, FACTUM_ENOMEM, FACTUM_EFAILED, FACTUM_ECLOSED): the node must stop
 * applying.
 */
int factum_batch_apply(factum_t *db, const void *msg, size_t len, factum_proposal_t *const *ps, size_t n, int *applied,
                       factum_error_t *err);

/*
 * The same for nb batches that follow each other in the stream, handed to the writer together
 * so that it writes them as one commit group with one fdatasync (each keeps its own position
 * check and commit time). *done: how many of them, from the first, are applied (or were
 * before); *last_time (if not NULL, and *done > 0): the commit time of the last of those; those
 * after a failure fail their proposals. Returns as factum_batch_apply.
 */
typedef struct factum_batch_t {
    const void *msg;
    size_t len;
    factum_proposal_t *const *ps; /* NULL: none */
    size_t n;
} factum_batch_t;
int factum_batch_apply_many(factum_t *db, const factum_batch_t *b, size_t nb, size_t *done, int64_t *last_time,
                            factum_error_t *err);

/* ---- Backup and restore (docs/operations.md; docs/format.md, "Backups") ---- */

/* The data folder format this build writes and reads; older folders are upgraded on open. */
#define FACTUM_FORMAT_VERSION 2

/* The format version the folder had when it was opened: FACTUM_FORMAT_VERSION, or an older one
   that this open upgraded (docs/format.md, "Format versions" says what changed). */
int factum_format_found(factum_t *db);

typedef struct factum_backup_stats {
    uint64_t position;     /* events [0, position) are in the copy: every one acknowledged before the call */
    int64_t time_us;       /* commit time of the event at position - 1 (0 if position is 0) */
    uint64_t bytes_total;  /* bytes of the log and index files the copy holds */
    uint64_t bytes_done;   /* of those, how many are done so far (copied or found already there) */
    uint64_t bytes_copied; /* copied by this call; the rest were already in the folder */
    uint64_t files_copied; /* files copied in whole or in part */
    uint64_t files_reused; /* files already in the folder from an earlier backup, unchanged */
    double seconds;
} factum_backup_stats_t;

/* Called in the calling thread as the copy goes on (about every 8 MiB, and after each file). */
typedef void (*factum_backup_cb)(void *ctx, const factum_backup_stats_t *st);

/*
 * Copies the open store into the folder `to`, while appends and reads go on, up to the durable
 * position when it starts (st->position). `to` must be missing, empty, or an earlier backup of
 * any store: then only what changed is copied (sealed segments and index runs never change; the
 * segment that was being written is copied from where the earlier copy ended). The copy is a
 * data folder: factum_open and factum_check take it. Every file is synced, then its folder,
 * then the manifest DIR/BACKUP is written last: a copy stopped half-way holds the marker
 * DIR/BACKUP-IN-PROGRESS without a manifest, and factum_open and factum_restore refuse it
 * (FACTUM_EINCOMPLETE). A scavenge waits for the segment being copied, and the copy for the
 * segment being rewritten. One backup at a time per store.
 *
 * Errors (nothing in `to` is changed by the first four): FACTUM_EINVAL (no `to`; `to` is the data folder or inside it;
 * `to` is not empty and holds no backup), FACTUM_ECONFLICT (a backup of this store is running),
 * FACTUM_ELOCKED (a process has `to` open), FACTUM_EIO / FACTUM_ENOSPC while copying (the
 * copy is then incomplete and refused until a backup into it finishes). `cb`, `st` may be NULL.
 */
int factum_backup(factum_t *db, const char *to, factum_backup_cb cb, void *ctx, factum_backup_stats_t *st,
                  factum_error_t *err);
/* The stats as JSON (what POST /admin/backup answers); returns the length it needs. */
size_t factum_backup_json(const factum_backup_stats_t *st, char *out, size_t cap);

/*
 * Copies the finished backup `from` into the new folder `to` (missing or empty), every file
 * synced; a restore stopped half-way is refused by factum_open like an unfinished backup. The
 * result is a data folder that is no backup (it has no manifest). Errors, with nothing
 * changed: FACTUM_EINCOMPLETE (`from` is an unfinished backup), FACTUM_EINVAL (`from` is no
 * backup, `to` is not empty or inside `from`), FACTUM_ECORRUPT (a file the manifest lists is
 * missing or of another length); FACTUM_EIO while copying. `cb`, `st` may be NULL.
 */
int factum_restore(const char *from, const char *to, factum_backup_cb cb, void *ctx, factum_backup_stats_t *st,
                   factum_error_t *err);

/* ---- Archival to cold storage (docs/operations.md, "Archival"; docs/format.md, "Archived segments") ---- */

typedef struct factum_archive_stats {
    int enabled;                                /* an archive folder is configured (archive_dir) */
    uint64_t after_s;                           /* archive_after_s */
    uint64_t hot_segments, hot_bytes;           /* segment files on the fast disk (the active one too) */
    uint64_t archived_segments, archived_bytes; /* segment files in the archive folder */
    uint64_t unavailable_segments;              /* archived segments that cannot be read now */
    int folder_unusable;                  /* 1: the archive folder is missing or cannot be written (error says why) */
    int running;                          /* 1 while a pass runs */
    uint64_t passes;                      /* passes finished since open */
    uint64_t moved_segments, moved_bytes; /* moved by the last pass */
    uint64_t moved_segments_total;        /* since open */
    int64_t last_pass_us;                 /* when the last pass finished, 0 if none */
    int last_error;                       /* 0, or the code that stopped the last pass */
    char error[320];                      /* what is wrong: the folder cannot be used, or the last pass's error */
    char folder[FACTUM_MAX_DIR + 1];      /* the archive folder ("" when none) */
} factum_archive_stats_t;

/* What is where (about 3.7 KB; caller-owned). */
void factum_archive_stats(factum_t *db, factum_archive_stats_t *out);
/*
 * Runs an archival pass now, in the calling thread (a pass the store's own thread is running is
 * waited for first): each sealed segment whose newest event is at least archive_after_s old is
 * copied to the archive folder, synced, recorded as archived, then removed from the fast disk;
 * reads go on meanwhile. st (may be NULL) is what factum_archive_stats says afterwards.
 * FACTUM_EINVAL (no archive folder configured), FACTUM_EIO / FACTUM_ENOSPC (the folder cannot be
 * written; what was moved before stays moved), FACTUM_ECLOSED (the store is closing).
 */
int factum_archive(factum_t *db, factum_archive_stats_t *st, factum_error_t *err);
/* The stats as JSON (what GET /admin/archive answers); returns the length it needs. */
size_t factum_archive_json(const factum_archive_stats_t *st, char *out, size_t cap);

/* ---- CloudEvents JSON (structured mode) ---- */

/* Parsed events: borrow from the parsed text and from the set itself. */
typedef struct factum_events factum_events_t;
/*
 * Parses one CloudEvent object (batch = 0) or a JSON array of them (batch = 1). The text must
 * stay alive while the set is used. Attributes the store sets (stream, revision, position,
 * time) are read into the event when present, as a client reading the server's output needs;
 * factum_append ignores them. Strict RFC 8259 JSON; a missing or empty `type`, a wrong
 * `specversion`, an attribute of the wrong JSON type, or `data` and `data_base64` together give
 * FACTUM_EBADEVENT with a message naming the event index and attribute.
 */
int factum_events_parse(const char *json, size_t len, int batch, factum_events_t **out, factum_error_t *err);
size_t factum_events_count(const factum_events_t *set);
factum_event_t *factum_events_get(factum_events_t *set, size_t i);
void factum_events_free(factum_events_t *set);

/*
 * Writes `e` as one line of CloudEvents JSON (no newline) into buf (capacity cap). Returns the
 * length it needs, excluding the NUL; if that is >= cap the output was cut, call again bigger.
 */
size_t factum_event_json(const factum_event_t *e, char *buf, size_t cap);
/* The same, in the form an append takes: no stream, revision, position or time, and no empty
   id or source. */
size_t factum_event_json_input(const factum_event_t *e, char *buf, size_t cap);

/* ---- Checking a data folder offline (docs/format.md, "Checking a data folder") ---- */

/* What a finding of factum_check is. */
enum {
    FACTUM_CHECK_NOTE = 0,     /* as designed, and the next open handles it: a torn tail that was never
                                  acknowledged, an index behind the log, a leftover temporary file */
    FACTUM_CHECK_DERIVED = 1,  /* a derived file (.pmap, index) missing, damaged or disagreeing with the
                                  log: no event is lost, it can be rebuilt from the log */
    FACTUM_CHECK_DAMAGE = 2,   /* the log itself: a segment, or events that were (or may have been)
                                  acknowledged, damaged or missing */
    FACTUM_CHECK_REPAIRED = 3, /* something o->repair did */
};

typedef struct factum_check_finding {
    int kind;            /* FACTUM_CHECK_* */
    int pass;            /* 1: as found; 2: found by the check made again after repairing */
    const char *file;    /* relative to the data folder, e.g. "log/00000003.seg"; "" if none */
    uint64_t offset;     /* byte offset in `file`, or FACTUM_END */
    uint64_t position;   /* the event's position, or FACTUM_END */
    const char *message; /* one line, no newline */
} factum_check_finding_t;

/* Called once per finding, in the calling thread; the finding and its strings are borrowed
   until it returns. */
typedef void (*factum_check_cb)(void *ctx, const factum_check_finding_t *f);

typedef struct factum_check_options {
    int repair;   /* rebuild derived files that do not check out, then check again */
    int truncate; /* with repair: cut the log so that every event at or past truncate_at is gone */
    uint64_t truncate_at;
} factum_check_options_t;

/* The folder as it is when factum_check returns (after repairs, if any). */
typedef struct factum_check_summary {
    uint64_t segments;               /* segment files */
    uint64_t events;                 /* events read back intact */
    uint64_t removed;                /* positions a scavenge removed (gaps in compacted segments) */
    uint64_t bytes;                  /* bytes of segment files read */
    uint64_t head;                   /* where recovery ends the log: the position of the next append */
    uint64_t mark;                   /* the commit mark: events below it were acknowledged (0 without one) */
    uint64_t index_covered;          /* positions [0, index_covered) are in index runs */
    uint64_t index_entries;          /* entries in those runs */
    uint64_t damage, derived, notes; /* findings of each kind */
    uint64_t repairs;                /* things repair did */
} factum_check_summary_t;

/*
 * Checks the data folder `dir` while no one has it open, without opening it: recovery does not
 * run and nothing changes unless o->repair. It takes the folder's lock, then checks every
 * segment's header, the numbering of segments and the chain of positions, every record's
 * checksum and position, the tail (a torn tail, or damage to acknowledged events, decided with
 * the commit mark as recovery decides it), the position maps, every index entry against the
 * event it points to and every event against the index. cb(ctx, f) reports each finding.
 *
 * With o->repair: position maps of sealed segments that do not check out are written again, an
 * index that does not check out is removed (the next open rebuilds it from the log), and with
 * o->truncate the log is cut at truncate_at (the commit mark set to it, so recovery accepts
 * the cut). Nothing else is ever cut. The folder is then checked again (findings with pass 2).
 *
 * Returns 0 when the check ran, whatever it found: the folder is clean when sum->damage and
 * sum->derived are 0. Otherwise nothing was changed and cb was never called:
 * FACTUM_ELOCKED (in use; the message names the process), FACTUM_EINVAL (no data folder at
 * dir; truncate without repair; truncate_at past the end of the log, inside a batch, after
 * damage in its segment or inside a compacted segment), FACTUM_EIO, FACTUM_ENOMEM. A failure
 * while repairing returns FACTUM_EIO, after reporting what was done. `o`, `cb`, `sum` may be NULL.
 */
int factum_check(const char *dir, const factum_check_options_t *o, factum_check_cb cb, void *ctx,
                 factum_check_summary_t *sum, factum_error_t *err);

#ifdef __cplusplus
}
#endif
#endif
