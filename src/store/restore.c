/*
 * restore.c — factum_restore: a finished backup copied into a new folder, which is then a plain
 * data folder (docs/operations.md). Nothing is written before the backup checks out: its
 * manifest, and every file it lists there at the length it lists. The copy holds the marker
 * BACKUP-IN-PROGRESS until every file and folder is synced, so a restore stopped half-way is
 * refused by factum_open as an unfinished backup is.
 */
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

static int restore_files(store_copy *b, const char *from, const backup_manifest *m, factum_error_t *err) {
    int rc = 0;
    for (size_t i = 0; i < m->n && !rc; i++) {
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/%s", from, m->files[i].name);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) return err_set(err, FACTUM_EIO, "cannot read %s: %s", path, strerror(errno));
        rc = store_copy_file(b, fd, m->files[i].name, m->files[i].size, m->files[i].check_off, err);
        close(fd);
    }
    char sub[PATH_MAX + 8];
    int e = 0;
    snprintf(sub, sizeof sub, "%s/log", b->to);
    if (!rc) e = io_sync_dir(sub);
    snprintf(sub, sizeof sub, "%s/index", b->to);
    if (!rc && !e) e = io_sync_dir(sub);
    if (!rc && !e) e = io_sync_dir(b->to);
    return rc ? rc : e ? err_set(err, FACTUM_EIO, "cannot sync %s: %s", sub, strerror(-e)) : 0;
}

int factum_restore(const char *from, const char *to, factum_backup_cb cb, void *ctx, factum_backup_stats_t *st,
                   factum_error_t *err) {
    if (st) *st = (factum_backup_stats_t){0};
    if (!from || !*from || !to || !*to) return err_set(err, FACTUM_EINVAL, "a restore needs a backup and a folder");
    backup_manifest m;
    int rc, from_lock = -1;
    if ((rc = folder_outside(to, from, "a restore", err))) return rc;
    /* A backup still writing into `from` holds its lock. */
    if ((rc = store_lock_folder(from, true, &from_lock, err))) return rc;
    if ((rc = folder_refuse_incomplete(from, err))) goto out_lock;
    if ((rc = backup_manifest_read(from, &m, err))) {
        if (rc == FACTUM_ENOTFOUND)
            rc =
                err_set(err, FACTUM_EINVAL, "%s is not a backup: it has no %s manifest (factum backup writes one last)",
                        from, BACKUP_MANIFEST);
        goto out_lock;
    }
    for (size_t i = 0; i < m.n; i++) {
        char path[PATH_MAX];
        struct stat sb;
        snprintf(path, sizeof path, "%s/%s", from, m.files[i].name);
        bool missing = stat(path, &sb) != 0;
        if (missing || (uint64_t)sb.st_size != m.files[i].size) {
            rc = err_set(err, FACTUM_ECORRUPT, "backup %s is not whole: %s is %s, its manifest says %llu bytes", from,
                         m.files[i].name, missing ? "missing" : "of another length",
                         (unsigned long long)m.files[i].size);
            goto out;
        }
    }
    store_copy b = {.cb = cb, .ctx = ctx, .lock_fd = -1};
    for (size_t i = 0; i < m.n; i++)
        b.st.bytes_total += m.files[i].size;
    if (!(rc = store_copy_begin(&b, to, true, err)) && !(rc = restore_files(&b, from, &m, err)))
        rc = store_copy_end(&b, false, err);
    b.st.position = m.position, b.st.time_us = m.time_us;
    b.st.seconds = (double)(clock_mono_ns() - b.t0_ns) / 1e9;
    if (cb) cb(ctx, &b.st);
    if (st) *st = b.st;
    store_copy_free(&b);
out:
    backup_manifest_free(&m);
out_lock:
    close(from_lock);
    return rc;
}
