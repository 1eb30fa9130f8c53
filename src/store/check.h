/*
 * check.h — what the parts of factum_check share, private to the store: the checker's state,
 * one segment as found, the findings, and the calls between check.c (the folder, the log, the
 * call), check_index.c (the index against the log) and check_repair.c (repairs).
 */
#ifndef FACTUM_CHECK_H
#define FACTUM_CHECK_H

#include "store.h"

#define OFF_REMOVED 0u        /* a scavenge removed the position */
#define OFF_BAD UINT32_MAX    /* the record there cannot be read (never a record's offset: not 8-aligned) */
#define MAX_FINDINGS 10000    /* findings kept for the report; the rest are counted */
#define MAX_INDEX_FINDINGS 20 /* index entries (and events) reported one by one, per kind of problem */

/* One segment file as found. */
typedef struct cseg {
    uint32_t no;
    char name[32];  /* "log/NNNNNNNN.seg" */
    char *archived; /* the file in the archive folder its marker names (malloc'd), NULL if in log/ */
    int fd;
    uint8_t *map; /* PROT_READ, the file's real length */
    uint64_t len; /* file length */
    bool header_ok;
    uint64_t cap, first_pos, end_pos; /* from the header: capacity, first position, compacted end */
    uint32_t generation;
    uint32_t *offs; /* by position - first_pos: offset, OFF_REMOVED or OFF_BAD */
    uint64_t npos, offs_cap;
    uint64_t end;      /* offset just past the last kept record */
    uint64_t data_end; /* offset just past the last non-zero byte */
    bool damaged;      /* a damage finding names this segment */
    bool pmap_bad;     /* its .pmap is missing or does not match */
} cseg;

typedef struct finding {
    factum_check_finding_t f;
    char *file, *message;
} finding;

typedef struct checker {
    const char *dir;
    char logdir[PATH_MAX], idxdir[PATH_MAX];
    int pass;
    cseg *segs;
    size_t nsegs;
    commit_mark_t mark;
    bool mark_reported; /* a tail finding already said what the mark implies */
    bool index_bad;     /* a derived finding about the index */
    bool tail_damaged;  /* the log's end is damage, not where the log really ends */
    uint64_t head;
    factum_check_summary_t sum;
    finding *found;
    size_t nfound, dropped;
    int oom;
    /* index check */
    uint8_t *seen[6]; /* bit per position below head: a stream, id, correlation entry, stream name, the implicit
                         stream: and type: tag entries was met */
    buf_t last_name;  /* the previous stream name of the run being walked */
    uint64_t seen_below;
    uint64_t idx_problems[4];
    uint64_t last_key, last_seq, last_pos;
    uint32_t last_run;
    bool have_last;
} checker;

enum { EV_OK, EV_REMOVED, EV_BAD };

/* Records a finding of kind (FACTUM_CHECK_*) about file at offset and position. */
__attribute__((format(printf, 6, 7))) void check_note(checker *c, int kind, const char *file, uint64_t offset,
                                                      uint64_t position, const char *fmt, ...);
/* The segment holding pos, or NULL. */
cseg *check_seg_of(checker *c, uint64_t pos);
/* The intact event at pos (EV_OK), one a scavenge removed, or one that cannot be read (also a
   position no segment places). */
int check_event_at(checker *c, uint64_t pos, factum_event_t *e);
/* The index against the log: each entry against the event it points to, then each event
   below what the runs cover against the entries (check_index.c). */
int check_index(checker *c, factum_error_t *err);

/* Repairs (check_repair.c). Where cutting the log at position p would leave it: the segment
   index at and the commit time there; refuses a p inside a batch. */
int check_truncate_plan(checker *c, uint64_t p, long *at, int64_t *time_us, factum_error_t *err);
/* Removes the index folder's files, to be rebuilt at the next open. */
void check_remove_index(checker *c, factum_error_t *err, int *rc);
/* Cuts the log at p (segment index at, commit time time_us). */
int check_cut_log(checker *c, uint64_t p, long at, int64_t time_us, factum_error_t *err);
/* Writes again the position maps of the first nsealed segments that do not match. */
int check_rebuild_pmaps(checker *c, size_t nsealed, factum_error_t *err);

#endif
