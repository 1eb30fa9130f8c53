/*
 * check_repair.c — the repairs of factum_check (check.h): rebuilding what is derived (position
 * maps, the index, by removing it for the next open to rebuild) and, only when asked, cutting
 * the log at a batch boundary.
 */
#include "check.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- repairs ---- */

static int fsync_path(const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -errno;
    int rc = fsync(fd) ? -errno : 0;
    close(fd);
    return rc;
}

/* Refuses a truncate_at that cannot be cut cleanly; *at is the segment it falls in (or -1). */
int check_truncate_plan(checker *c, uint64_t p, long *at, int64_t *time_us, factum_error_t *err) {
    if (p > c->head)
        return err_set(err, FACTUM_EINVAL,
                       "cannot cut at position %llu: the log ends at %llu (the position after its last intact batch); "
                       "nothing changed",
                       (unsigned long long)p, (unsigned long long)c->head);
    *at = -1;
    *time_us = 0;
    for (size_t i = 0; i < c->nsegs; i++)
        if (c->segs[i].header_ok && c->segs[i].first_pos <= p) *at = (long)i;
    if (*at < 0)
        return p ? err_set(err, FACTUM_EINVAL, "cannot cut at position %llu: no segment holds it; nothing changed",
                           (unsigned long long)p)
                 : 0;
    cseg *s = &c->segs[*at];
    if (s->end_pos && p < s->end_pos)
        return err_set(err, FACTUM_EINVAL,
                       "cannot cut at position %llu: it is inside the compacted segment %s (positions %llu to %llu), "
                       "which cannot be cut; nothing changed",
                       (unsigned long long)p, s->name, (unsigned long long)s->first_pos,
                       (unsigned long long)s->end_pos - 1);
    if (p > s->first_pos + s->npos)
        return err_set(err, FACTUM_EINVAL,
                       "cannot cut at position %llu: %s, which holds it, cannot be read that far (to %llu); nothing "
                       "changed",
                       (unsigned long long)p, s->name, (unsigned long long)(s->first_pos + s->npos));
    /* The event before the cut must be intact and end its batch: a batch stays whole or goes. */
    for (uint64_t q = p; q-- > 0;) {
        factum_event_t e;
        int st = check_event_at(c, q, &e);
        if (st == EV_REMOVED) continue;
        if (st == EV_BAD)
            return err_set(err, FACTUM_EINVAL,
                           "cannot cut at position %llu: the event at %llu before it cannot be read; cut at the damage "
                           "instead; nothing changed",
                           (unsigned long long)p, (unsigned long long)q);
        cseg *qs = check_seg_of(c, q);
        if (q == p - 1 && !(load32(qs->map + qs->offs[q - qs->first_pos] + R_FLAGS) & RECORD_BATCH_END)) {
            uint64_t first = q;
            while (first > qs->first_pos && qs->offs[first - 1 - qs->first_pos] != OFF_BAD &&
                   qs->offs[first - 1 - qs->first_pos] != OFF_REMOVED &&
                   !(load32(qs->map + qs->offs[first - 1 - qs->first_pos] + R_FLAGS) & RECORD_BATCH_END))
                first--;
            return err_set(err, FACTUM_EINVAL,
                           "cannot cut at position %llu: it is inside a batch (appended together from position %llu); "
                           "cut at a batch boundary; nothing changed",
                           (unsigned long long)p, (unsigned long long)first);
        }
        *time_us = e.time_us;
        break;
    }
    return 0;
}

void check_remove_index(checker *c, factum_error_t *err, int *rc) {
    DIR *d = opendir(c->idxdir);
    if (!d) return;
    struct dirent *de;
    size_t n = 0;
    while ((de = readdir(d)))
        if (de->d_name[0] != '.' && !unlinkat(dirfd(d), de->d_name, 0)) n++;
    closedir(d);
    int e = io_sync_dir(c->idxdir);
    if (e && !*rc) *rc = err_set(err, FACTUM_EIO, "cannot sync %s: %s", c->idxdir, strerror(-e));
    check_note(c, FACTUM_CHECK_REPAIRED, "index", FACTUM_END, FACTUM_END,
               "removed the index (%zu files): the next open rebuilds it from the log", n);
}

/* Zeroes [from, to) of the segment and syncs it. */
static int zero_range(checker *c, cseg *s, uint64_t from, uint64_t to, factum_error_t *err) {
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%08x.seg", c->logdir, s->no);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return err_set(err, FACTUM_EIO, "cannot open %s: %s", path, strerror(errno));
    static const uint8_t zeros[65536];
    int e = 0;
    for (uint64_t off = from; off < to && !e;) {
        size_t k = (size_t)MIN(sizeof zeros, to - off);
        struct iovec iov = {(void *)zeros, k};
        e = io_write_all(io_vfs_default(), fd, &iov, 1, off);
        off += k;
    }
    if (!e && fdatasync(fd)) e = -errno;
    close(fd);
    return e ? err_set(err, FACTUM_EIO, "cannot cut %s: %s", path, strerror(-e)) : 0;
}

int check_cut_log(checker *c, uint64_t p, long at, int64_t time_us, factum_error_t *err) {
    char path[PATH_MAX];
    int e;
    /* Later segments first, the newest first, so a crash part-way leaves a log without gaps; the
       commit mark last, so until it moves recovery refuses the shortened log rather than
       accepting it unasked (running the same cut again finishes it). */
    for (size_t i = c->nsegs; i-- > (size_t)(at + 1);) {
        cseg *s = &c->segs[i];
        snprintf(path, sizeof path, "%s/%08x.pmap", c->logdir, s->no);
        unlink(path);
        snprintf(path, sizeof path, "%s/%08x.seg", c->logdir, s->no);
        if (unlink(path)) return err_set(err, FACTUM_EIO, "cannot remove %s: %s", path, strerror(errno));
        check_note(c, FACTUM_CHECK_REPAIRED, s->name, FACTUM_END, s->header_ok ? s->first_pos : FACTUM_END,
                   "removed the segment (every event in it is at or past position %llu)", (unsigned long long)p);
    }
    if (at >= 0) {
        cseg *s = &c->segs[at];
        /* Just past the event before the cut (truncate_plan found it intact), or the segment's start. */
        uint64_t off = SEGMENT_HEADER;
        if (p > s->first_pos) {
            uint32_t prev = s->offs[p - 1 - s->first_pos];
            off = prev + load32(s->map + prev + R_LENGTH);
        }
        uint64_t to = MAX(s->data_end, off);
        if (!s->end_pos && to > off) {
            int rc = zero_range(c, s, off, to, err);
            if (rc) return rc;
            check_note(c, FACTUM_CHECK_REPAIRED, s->name, off, p,
                       "cut the log at position %llu: zeroed %llu bytes from offset %llu", (unsigned long long)p,
                       (unsigned long long)(to - off), (unsigned long long)off);
        }
        /* It is the last segment now: its map lives in memory until it is sealed again. */
        char name[40];
        snprintf(name, sizeof name, "log/%08x.pmap", s->no);
        snprintf(path, sizeof path, "%s/%08x.pmap", c->logdir, s->no);
        if (!s->end_pos && !unlink(path))
            check_note(c, FACTUM_CHECK_REPAIRED, name, FACTUM_END, FACTUM_END,
                       "removed: the last segment's map is made by the next open's scan");
    }
    if ((e = io_sync_dir(c->logdir))) return err_set(err, FACTUM_EIO, "cannot sync %s: %s", c->logdir, strerror(-e));
    int rc = mark_reset(c->logdir, p, time_us, err);
    if (rc) return rc;
    check_note(c, FACTUM_CHECK_REPAIRED, "log/COMMIT", FACTUM_END, p, "set the commit mark to position %llu (was %llu)",
               (unsigned long long)p, (unsigned long long)c->mark.position);
    return 0;
}

/* Writes the position map of every sealed segment whose map is missing or wrong, if the segment is whole. */
int check_rebuild_pmaps(checker *c, size_t nsealed, factum_error_t *err) {
    for (size_t i = 0; i < nsealed; i++) {
        cseg *s = &c->segs[i];
        if (!s->pmap_bad) continue;
        char name[40], path[PATH_MAX];
        snprintf(name, sizeof name, "log/%08x.pmap", s->no);
        if (s->damaged) {
            check_note(c, FACTUM_CHECK_NOTE, name, FACTUM_END, FACTUM_END, "not rebuilt: %s is damaged", s->name);
            continue;
        }
        segment_t *m = calloc(1, sizeof *m);
        if (!m) return err_set(err, FACTUM_ENOMEM, "out of memory");
        m->no = s->no, m->fd = -1, m->size = s->cap, m->first_pos = s->first_pos, m->generation = s->generation,
        m->end_pos = s->end_pos, m->count = s->npos, m->end = s->end, m->pmap = s->offs;
        int e = segment_write_pmap(m, c->logdir);
        free(m); /* not segment_close: the offsets belong to s */
        snprintf(path, sizeof path, "%s/%08x.pmap", c->logdir, s->no);
        if (!e) e = fsync_path(path);
        if (e) return err_set(err, FACTUM_EIO, "cannot write %s: %s", path, strerror(-e));
        check_note(c, FACTUM_CHECK_REPAIRED, name, FACTUM_END, FACTUM_END, "written again from %s (%llu positions)",
                   s->name, (unsigned long long)s->npos);
    }
    int e = io_sync_dir(c->logdir);
    return e ? err_set(err, FACTUM_EIO, "cannot sync %s: %s", c->logdir, strerror(-e)) : 0;
}
