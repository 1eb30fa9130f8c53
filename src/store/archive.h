/*
 * archive.h — archival to cold storage (archive.c): sealed segments whose newest event is old
 * enough move to an archive folder, and each one's marker log/NNNNNNNN.arch records where it
 * lives (docs/format.md, "Archived segments"; docs/operations.md, "Archival"). Used by
 * factum_open (options, recovery), factum_close, the writer (a roll wakes the archiver),
 * store_event_at (an archived segment that cannot be read) and factum_check (the markers).
 */
#ifndef FACTUM_ARCHIVE_H
#define FACTUM_ARCHIVE_H

#include "../base/base.h"
#include "segment.h"

#include <pthread.h>

#define ARCHIVE_MARK_EXT "arch"
#define ARCHIVE_TICK_MAX_S 60 /* the archiver looks at least this often (and at each roll) */

/* The marker of an archived segment: where its file went and which file it is. */
typedef struct archive_mark {
    char folder[PATH_MAX]; /* the archive folder it was moved to (absolute) */
    uint32_t no, generation;
    uint64_t first, count; /* its positions: [first, first + count) */
    uint64_t end;          /* the file's length: the offset just past its last record */
    uint64_t check, id;    /* identity of the copy (folder.h, backup_file_id) at the last record */
} archive_mark;

/* Reads log/NNNNNNNN.arch: 0, FACTUM_ENOTFOUND (none), or FACTUM_ECORRUPT (does not check out). */
int archive_mark_read(const char *logdir, uint32_t no, archive_mark *m, factum_error_t *err);

/* The store's archival state (inside factum_t; valid all zero until store_archive_init). */
typedef struct store_archive {
    bool enabled;       /* options gave a folder: passes run */
    char dir[PATH_MAX]; /* that folder, absolute ("" when none) */
    uint64_t after_us;
    unsigned sleep_ms; /* FACTUM_TEST_ARCHIVE_SLEEP_MS: pauses of a move, so tests can kill it half-way */
    pthread_t thread;
    bool started, stop, poked;
    pthread_mutex_t mu;      /* the thread's wake-up (stop, poked) and the stats below */
    pthread_cond_t cond;     /* monotonic */
    pthread_mutex_t pass_mu; /* one pass at a time */
    bool running;
    uint64_t passes, moved, moved_bytes, moved_total;
    int64_t last_pass_us;
    int last_error;
    char error[320];   /* the last pass's error */
    char problem[320]; /* what cannot be used (set at open, cleared by a pass that finds it back) */
    bool folder_bad;   /* the problem is the folder: missing, not a folder, not writable */
} store_archive;

/* factum_open, before recovery: checks and takes the options (the folder: its length, outside
   the data folder). A folder that is missing or unreadable is no error here: it is the store's
   problem, shown by the stats and /health. */
int store_archive_init(factum_t *db, const char *dir, uint64_t after_s, factum_error_t *err);
/*
 * Recovery of segment `no` (docs/format.md, "Archived segments"): *out is NULL when it has no
 * marker (the caller opens log/NNNNNNNN.seg), else the archived segment with its position map,
 * or, when its file cannot be read, one that fails every read with an error naming it. A move
 * that a crash interrupted after the marker is finished (the local file removed) if the copy
 * checks out, else undone (the marker removed, *out NULL).
 */
int store_archive_recover(factum_t *db, uint32_t no, segment_t **out, factum_error_t *err);
/* The archiver thread (when enabled): start after the writer, stop before it. */
int store_archive_start(factum_t *db);
void store_archive_stop(factum_t *db);
void store_archive_free(factum_t *db);
/* The writer sealed a segment: the archiver looks now. */
void store_archive_poke(factum_t *db);
/* The error a read of `pos` in s, archived and unavailable, returns (FACTUM_EIO). */
int store_archive_unavailable(const segment_t *s, uint64_t pos, factum_error_t *err);

#endif
