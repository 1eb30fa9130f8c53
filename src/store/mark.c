/*
 * mark.c — the commit mark file DIR/log/COMMIT (see mark.h, docs/format.md).
 *
 * Two 64-byte slots, at offsets 0 and 512, so that each sits in its own disk sector. A write
 * goes to the slot the current one is not in and is fdatasynced; recovery takes the valid slot
 * with the higher sequence number. A torn write of one slot therefore leaves the previous mark.
 */
#include "mark.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <unistd.h>

enum { MARK_BYTES = 64 };

static void mark_encode(uint8_t b[MARK_BYTES], const commit_mark_t *m) {
    memset(b, 0, MARK_BYTES);
    store32(b + 0, MARK_MAGIC);
    store32(b + 4, 1);
    store64(b + 8, m->seq);
    store64(b + 16, m->position);
    store64(b + 24, (uint64_t)m->time_us);
    store32(b + 60, crc32c(b, 60));
}

static bool mark_decode(const uint8_t b[MARK_BYTES], commit_mark_t *m) {
    if (load32(b) != MARK_MAGIC || load32(b + 4) != 1 || load32(b + 60) != crc32c(b, 60)) return false;
    *m = (commit_mark_t){load64(b + 8), load64(b + 16), (int64_t)load64(b + 24)};
    return true;
}

/* The newer valid slot of an open mark file, or all zero. */
static int mark_load(int fd, const char *path, commit_mark_t *m, factum_error_t *err) {
    uint8_t b[2 * MARK_SLOT];
    ssize_t n = pread(fd, b, sizeof b, 0);
    if (n < 0) return err_set(err, FACTUM_EIO, "cannot read %s: %s", path, strerror(errno));
    *m = (commit_mark_t){0};
    commit_mark_t s;
    for (int k = 0; k < 2; k++)
        if (n >= k * MARK_SLOT + MARK_BYTES && mark_decode(b + k * MARK_SLOT, &s) && (s.seq > m->seq || !m->seq))
            *m = s;
    return 0;
}

int mark_read(const char *logdir, commit_mark_t *m, factum_error_t *err) {
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/COMMIT", logdir);
    *m = (commit_mark_t){0};
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno == ENOENT ? 0 : err_set(err, FACTUM_EIO, "cannot open %s: %s", path, strerror(errno));
    int rc = mark_load(fd, path, m, err);
    close(fd);
    return rc;
}

int mark_open(const char *logdir, mark_file_t *f, factum_error_t *err) {
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/COMMIT", logdir);
    f->fd = -1;
    int fd = open(path, O_RDWR | O_CLOEXEC);
    bool created = false;
    if (fd < 0 && errno == ENOENT) {
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        created = true;
    }
    if (fd < 0) return err_set(err, FACTUM_EIO, "cannot open %s: %s", path, strerror(errno));
    int rc = mark_load(fd, path, &f->last, err), e;
    if (!rc && created && (e = io_sync_dir(logdir)))
        rc = err_set(err, FACTUM_EIO, "cannot sync the folder of %s: %s", path, strerror(-e));
    if (rc) {
        close(fd);
        return rc;
    }
    f->fd = fd;
    return 0;
}

int mark_write(mark_file_t *f, io_vfs *vfs, uint64_t position, int64_t time_us, factum_error_t *err) {
    commit_mark_t m = {f->last.seq + 1, position, time_us};
    uint8_t b[MARK_BYTES];
    mark_encode(b, &m);
    struct iovec iov = {b, sizeof b};
    int e = io_write_all(vfs, f->fd, &iov, 1, (m.seq & 1) * MARK_SLOT);
    if (!e) e = vfs->fdatasync(vfs, f->fd);
    if (e) return err_set(err, FACTUM_EIO, "cannot write the commit mark: %s", strerror(-e));
    f->last = m;
    return 0;
}

void mark_close(mark_file_t *f) {
    if (f->fd >= 0) close(f->fd);
    f->fd = -1;
}

int mark_reset(const char *logdir, uint64_t position, int64_t time_us, factum_error_t *err) {
    mark_file_t f;
    int rc = mark_open(logdir, &f, err);
    if (rc) return rc;
    /* Both slots, so that no older slot can claim more than the new mark. */
    rc = mark_write(&f, io_vfs_default(), position, time_us, err);
    if (!rc) rc = mark_write(&f, io_vfs_default(), position, time_us, err);
    mark_close(&f);
    return rc;
}
