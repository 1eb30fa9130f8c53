/*
 * store.h — the private side of factum_t, shared by the files of src/store: store.c (open,
 * recovery, close), append.c (validation and queueing on the caller's side), writer.c (the
 * writer thread, group commit), read.c, and the index (index.c, memtable.c, run.c).
 *
 * Threads and ownership (docs/threads.md has the picture):
 *   - caller threads validate and encode events, queue an append_req, and sleep on it;
 *   - the writer thread owns next_pos, the active segment's tail and the stream cache; per
 *     commit group it writes, fdatasyncs once, then publishes `durable` and wakes the callers;
 *   - the index thread (index.c) writes and merges index runs;
 *   - readers use `durable` (acquire) as the end of the log and never look past it.
 */
#ifndef FACTUM_STORE_H
#define FACTUM_STORE_H

#include "../base/base.h"
#include "../io/io.h"
#include "archive.h"
#include "folder.h"
#include "index.h"
#include "integrity.h"
#include "mark.h"
#include "meta.h"
#include "segment.h"
#include "streams.h"

#include <pthread.h>
#include <stdatomic.h>

#define STORE_MAX_SEGMENTS (1u << 20)
#define STORE_MAX_BATCH_BYTES (32u << 20) /* encoded bytes of one append */
#define STORE_GROUP_BYTES (16u << 20)     /* a commit group stops growing past this */
#define STORE_TAIL_WINDOW (64u << 20)     /* >= group + batch: how far a torn write can reach */
#define STORE_MAX_READ 100000             /* events one read returns at most */
#define STORE_SCAN_WINDOW 1000000         /* positions one filtered $all read examines at most */
#define STORE_ZERO_MIN (1ull << 20)       /* a new segment's zero-filled bytes (zero.c) */
#define STORE_MARK_IDLE_MS 20             /* the writer writes the commit mark after this much idle */
static_assert(STORE_TAIL_WINDOW >= STORE_GROUP_BYTES + STORE_MAX_BATCH_BYTES,
              "recovery looks this far past the last commit: a group that grew to its limit, then one batch");
static_assert(FACTUM_MAX_LIST <= STORE_MAX_READ, "a listing page is no larger than a read");

/* The zeroer thread (zero.c). */
typedef struct zeroer {
    pthread_t thread;
    bool started, stop;
    pthread_mutex_t mu;
    pthread_cond_t cond;  /* work for the zeroer; zero-filled room for a waiting writer */
    segment_t *seg;       /* the active segment; set by the writer (store_zero_use) */
    _Atomic uint64_t end; /* how far the writer has written in seg */
    uint64_t want;        /* a waiting writer needs seg filled this far */
    int busy;             /* 1 growing seg, 2 preparing the next segment */
    bool held;            /* after a failure: grow only when a writer asks */
    int err;              /* the failure a waiting writer gets (-errno) */
    char msg[256];
    int next_fd; /* a prepared NNNNNNNN.seg.tmp, or -1 */
    uint32_t next_no;
    uint64_t next_fill;
    _Atomic bool has_next;
} zeroer;

typedef struct append_req append_req;

struct factum {
    char dir[PATH_MAX], logdir[PATH_MAX], idxdir[PATH_MAX];
    int lock_fd;
    io_vfs *vfs;
    uint64_t segment_bytes;
    uint32_t max_data_bytes;

    segment_t **segs; /* fixed capacity; entries below nsegs never change */
    _Atomic size_t nsegs;
    _Atomic uint64_t durable; /* events [0, durable) are on disk and visible */
    index_t *index;

    /* writer thread */
    pthread_t writer;
    pthread_mutex_t qmu;
    pthread_cond_t qcond;
    append_req *qhead, *qtail;
    bool stopping;
    int failed; /* 0, or the code that stopped the writer */
    char failmsg[256];
    uint64_t next_pos;
    int64_t last_time;
    uint64_t last_mono_ns; /* when last_time was taken */
    int64_t durable_time;  /* time of the newest durable group */
    mark_file_t mark;      /* log/COMMIT, written when idle (mark.h) */
    zeroer zero;
    stream_cache cache;
    const uint8_t **pending; /* records of the current group by position - group_first */
    size_t pending_cap;
    uint64_t group_first;

    /* written by the writer only, read by factum_stats */
    _Atomic uint64_t st_appends, st_events, st_bytes, st_fsyncs, st_fsync_us, st_log_bytes;
    _Atomic uint64_t st_fsync_hist[FACTUM_STAT_BUCKETS], st_group_hist[FACTUM_STAT_BUCKETS];
    _Atomic int st_failed;

    _Atomic(factum_commit_cb) hook; /* called by the writer after each durable group */
    uint64_t *hook_keys;            /* the writer's: the stream keys it hands the hook */
    size_t hook_keys_cap;
    void *hook_ctx;

    meta_map meta; /* stream metadata; changed by the writer only (meta.h) */

    _Atomic(factum_append_check_cb) check; /* factum_set_append_check: runs in append_prepare */
    void *check_ctx;
    void (*check_free)(void *ctx);
    _Atomic(factum_read_transform_cb) transform; /* factum_set_read_transform: runs on each read result */
    void *transform_ctx;
    _Atomic(factum_read_types_cb) read_types; /* factum_set_read_types: type filters through the transform */
    void *read_types_ctx;

    _Atomic(factum_replicate_cb) replicator; /* cluster mode: writes go here, not to the writer */
    void *replicator_ctx;
    _Atomic uint64_t leads; /* factum_leads: term << 1 | whether this node writes on its own now */

    /* Readers pin the segment array while they use it or its mappings (a result holds its pin
       until it is freed). A scavenge swaps an entry for its compacted copy, moves the epoch on
       and frees the old segment once no pin of the old epoch is left (scavenge.c). */
    _Atomic uint64_t epoch;
    _Atomic int64_t pins[2];
    _Atomic bool scavenging, scavenge_cancel;
    segment_t **retired; /* old segments still pinned when a scavenge gave up waiting: freed at close */
    size_t nretired;
    pthread_mutex_t scav_mu;         /* guards scav_st */
    factum_scavenge_stats_t scav_st; /* progress of the running or last scavenge */

    store_integrity integrity; /* damage reads have met (integrity.c); valid all zero */
    store_archive arch;        /* archival to cold storage (archive.c) */
    int format_found;          /* the folder's format version when opened (folder.h) */

    /* A backup copies one segment at a time, a scavenge rewrites one at a time, an archival pass
       moves one at a time: each claims its segment, and none takes one another holds
       (store_seg_claim, backup.c). */
    pthread_mutex_t claim_mu;
    pthread_cond_t claim_cond;
    uint32_t claim[3];       /* segment numbers by CLAIM_* role; CLAIM_NONE when free */
    _Atomic bool backing_up; /* one backup at a time */

    /* factum_wait */
    pthread_mutex_t wmu;
    pthread_cond_t wcond;
};

/* A copy into a folder in progress: a backup (backup.c, db set) or a restore (restore.c). */
typedef struct store_copy {
    factum_t *db;
    char to[PATH_MAX];
    int lock_fd;
    backup_manifest old, now; /* what an earlier backup left (to reuse), what this one holds */
    factum_backup_stats_t st;
    factum_backup_cb cb;
    void *ctx;
    uint64_t t0_ns, last_cb_ns;
    bool plain; /* no copy_file_range here: copy through buf */
    uint8_t *buf;
    unsigned sleep_ms; /* FACTUM_TEST_BACKUP_SLEEP_MS: a pause after each file (tests only) */
} store_copy;
/* Checks `to` (folder_target), makes it, locks it, writes the marker. lock_fd must be -1. */
int store_copy_begin(store_copy *b, const char *to, bool restore, factum_error_t *err);
/* Brings the file `name` (relative to the target) to the first len bytes of src, whose identity
   is taken at check_off; keeps what an earlier backup copied if src still begins with it. */
int store_copy_file(store_copy *b, int src, const char *name, uint64_t len, uint64_t check_off, factum_error_t *err);
/* Writes the manifest (a backup) and removes the marker. */
int store_copy_end(store_copy *b, bool manifest, factum_error_t *err);
void store_copy_free(store_copy *b);

/* Pins the segment array; returns the slot to unpin. */
static inline unsigned store_pin(factum_t *db) {
    for (;;) {
        uint64_t e = atomic_load(&db->epoch);
        atomic_fetch_add(&db->pins[e & 1], 1);
        if (atomic_load(&db->epoch) == e) return (unsigned)(e & 1);
        atomic_fetch_sub(&db->pins[e & 1], 1);
    }
}
static inline void store_unpin(factum_t *db, unsigned slot) { atomic_fetch_sub(&db->pins[slot], 1); }

#define CLAIM_NONE UINT32_MAX
enum { CLAIM_BACKUP, CLAIM_SCAVENGE, CLAIM_ARCHIVE };
/* Claims segment `no` for a backup's copy, a scavenge's rewrite or an archival's move (role),
   waiting while another role holds it; store_seg_release gives it back. */
void store_seg_claim(factum_t *db, uint32_t no, int role);
void store_seg_release(factum_t *db, int role);
/* Frees a segment swapped out of the array once no reader pinned before the swap holds it
   (scavenge.c); one still pinned after 10 s is kept until close. */
void store_retire(factum_t *db, segment_t *old);

/* Takes DIR/LOCK (flock) and writes this process's pid into it: FACTUM_ELOCKED names the owner.
   read_only_ok: a folder that cannot be written is locked read-only (factum check). */
int store_lock_folder(const char *dir, bool read_only_ok, int *fd, factum_error_t *err);
/* Publishes s as the newest segment (readers see it after the count); closes it on failure. */
int store_add_segment(factum_t *db, segment_t *s, factum_error_t *err);
/* The segment holding `pos` (< durable or < next_pos on the writer thread). */
segment_t *store_segment_of(factum_t *db, uint64_t pos);
/* Decodes the event at `pos`. FACTUM_ENOTFOUND if a scavenge removed it; FACTUM_ECORRUPT (fails its
   checksum) or FACTUM_EIO (SIGBUS on the mapping) name position, offset and file, and are
   remembered in db->integrity. */
int store_event_at(factum_t *db, uint64_t pos, factum_event_t *e, factum_error_t *err);

/* read.c: the stream's last revision among positions below pos_limit, or -1. */
int64_t store_stream_last(factum_t *db, factum_str_t stream, uint64_t pos_limit);
/* The first revision of the stream committed at or after time_us, among [0, end) (end if none). */
uint64_t store_stream_first_at(factum_t *db, factum_str_t stream, int64_t time_us, uint64_t end);
/* Reads $metadata into db->meta (open). */
int store_meta_load(factum_t *db, factum_error_t *err);

/* append.c: FACTUM_EBADSTREAM unless s is a valid stream name. */
int store_check_stream(factum_str_t s, factum_error_t *err);
/* writer.c */
int store_writer_start(factum_t *db);
void store_writer_stop(factum_t *db);
/* Adds the index entries of one event (write lock held by the caller). */
int store_index_event(factum_t *db, const factum_event_t *e);

/* zero.c: the zeroer thread. Start after recovery, stop after the writer. */
int store_zero_start(factum_t *db);
void store_zero_stop(factum_t *db);
/* Writer: s is the active segment from now on. */
void store_zero_use(factum_t *db, segment_t *s);
/* Writer: it has written the active segment up to `end`; wakes the zeroer if it falls behind. */
void store_zero_note(factum_t *db, uint64_t end);
/* Writer: waits until s is zero-filled up to `upto`. 0, or FACTUM_ENOSPC/EIO with msg. */
int store_zero_wait(factum_t *db, segment_t *s, uint64_t upto, char *msg, size_t cap);
/* Waits until the zeroer has nothing to do (factum_settle). */
void store_zero_settle(factum_t *db);
/* Writer, at a roll: the prepared file of segment `no`. 0 with *fd and *fill, or -1 if none. */
int store_zero_take_next(factum_t *db, uint32_t no, int *fd, uint64_t *fill);

#endif
