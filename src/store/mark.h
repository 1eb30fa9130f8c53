/*
 * mark.h — the commit mark, DIR/log/COMMIT: a durable note "every event below position P was
 * acknowledged". Recovery uses it to tell a torn write (never acknowledged: cut it) from damage
 * to acknowledged events (report it, never cut). docs/format.md has the layout.
 *
 * The writer thread writes it lazily: after it has been idle a moment with the mark behind the
 * durable position, and when the store closes. Each write goes to the slot the previous one did
 * not use and is fdatasynced, so a torn write of the mark leaves the other slot intact.
 */
#ifndef FACTUM_MARK_H
#define FACTUM_MARK_H

#include "../base/base.h"
#include "../io/io.h"

#define MARK_MAGIC 0x544D4346u /* "FCMT" */
#define MARK_SLOT 512          /* slot k is at offset k * MARK_SLOT; two slots */

typedef struct commit_mark {
    uint64_t seq;      /* rises by one per write; the higher valid slot wins */
    uint64_t position; /* events [0, position) were acknowledged */
    int64_t time_us;   /* commit time of the event at position - 1 (0 if position is 0) */
} commit_mark_t;

/* Reads DIR/log/COMMIT. 0 with *m filled (all zero when the file is missing or neither slot is
   valid), or a FACTUM_E* code if the file exists but cannot be read. */
int mark_read(const char *logdir, commit_mark_t *m, factum_error_t *err);

/* An open mark file for repeated writes (the writer thread's). */
typedef struct mark_file {
    int fd;
    commit_mark_t last; /* what the file says now */
} mark_file_t;

/* Opens (creating, with the folder synced) DIR/log/COMMIT and reads it. */
int mark_open(const char *logdir, mark_file_t *f, factum_error_t *err);
/* Writes position/time into the other slot and fdatasyncs. 0 or a FACTUM_E* code. */
int mark_write(mark_file_t *f, io_vfs *vfs, uint64_t position, int64_t time_us, factum_error_t *err);
void mark_close(mark_file_t *f);

/* Sets the mark of a closed store to exactly `position` (factum check --truncate-at). */
int mark_reset(const char *logdir, uint64_t position, int64_t time_us, factum_error_t *err);

#endif
