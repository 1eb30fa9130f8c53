/*
 * backup.c — factum_backup: an online copy of the store into a folder that is itself a data
 * folder, while appends go on (docs/operations.md; docs/format.md, "Backups").
 *
 * The copy ends at a durable position P taken when it starts. In order: the marker
 * DIR/BACKUP-IN-PROGRESS (and any earlier manifest removed); the index runs as they stand (each
 * file opened under the index's read lock, so a merge cannot delete it before it is copied); P,
 * at or past what the runs cover; the segments, each claimed from the scavenger while it is
 * copied (store_seg_claim), sealed ones up to their last record with their position maps, the
 * one holding P - 1 up to the end of that record; the index MANIFEST naming the copied runs;
 * log/COMMIT set to P (so recovery treats every copied event as acknowledged); FORMAT; files an
 * earlier backup left that this one does not hold are removed; the folders are synced; and the
 * manifest DIR/BACKUP last, then the marker goes.
 *
 * Copies are incremental: a file the earlier manifest lists, whose identity (folder.h,
 * backup_file_id) the store's file still has at the same length or as a prefix, is kept or only
 * extended. Sealed segments and runs never change, and the segment that was being written only
 * grows, so a second backup copies what is new. Copying is copy_file_range (in the kernel, as
 * cp does), with the written pieces pushed to the disk as it goes, so the final fdatasync is
 * short and the appenders' fdatasync does not queue behind gigabytes of dirty pages.
 */
#include "store.h"

#include "record.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define BK_CHUNK (8u << 20) /* copied, then pushed to the disk, a piece at a time */
#define BK_MIB_S 320        /* at most this fast, leaving the disk's bandwidth to the appends (bench backup) */

/* ---- claims: a backup, a scavenge and an archival never hold the same segment ---- */

static bool claimed_by_other(const factum_t *db, uint32_t no, int role) {
    for (int r = 0; r < (int)ARRAY_LEN(db->claim); r++)
        if (r != role && db->claim[r] == no) return true;
    return false;
}

void store_seg_claim(factum_t *db, uint32_t no, int role) {
    pthread_mutex_lock(&db->claim_mu);
    while (claimed_by_other(db, no, role))
        pthread_cond_wait(&db->claim_cond, &db->claim_mu);
    db->claim[role] = no;
    pthread_mutex_unlock(&db->claim_mu);
}

void store_seg_release(factum_t *db, int role) {
    pthread_mutex_lock(&db->claim_mu);
    db->claim[role] = CLAIM_NONE;
    pthread_cond_broadcast(&db->claim_cond);
    pthread_mutex_unlock(&db->claim_mu);
}

/* ---- copying one file ---- */

static void bk_progress(store_copy *b, bool force) {
    uint64_t now = clock_mono_ns();
    b->st.seconds = (double)(now - b->t0_ns) / 1e9;
    if (b->cb && (force || now - b->last_cb_ns >= 100000000)) {
        b->last_cb_ns = now;
        b->cb(b->ctx, &b->st);
    }
}

/* Copies [from, to) of src into dst at the same offsets, pushing each written piece to the disk
   while the next is copied. */
static int copy_range(store_copy *b, int src, int dst, uint64_t from, uint64_t to, const char *name,
                      factum_error_t *err) {
    loff_t in = (loff_t)from, out = (loff_t)from;
    io_behind behind = {from, from};
    while ((uint64_t)in < to) {
        size_t chunk = (size_t)MIN(to - (uint64_t)in, BK_CHUNK);
        ssize_t n = -1;
        if (!b->plain) {
            n = copy_file_range(src, &in, dst, &out, chunk, 0);
            if (n < 0 && (errno == EXDEV || errno == ENOSYS || errno == EOPNOTSUPP || errno == EINVAL)) {
                b->plain = true; /* a file system or kernel without it: through a buffer */
                continue;
            }
        } else {
            if (!b->buf && !(b->buf = malloc(BK_CHUNK))) return err_set(err, FACTUM_ENOMEM, "out of memory");
            n = pread(src, b->buf, chunk, in);
            if (n > 0) {
                struct iovec iov = {b->buf, (size_t)n};
                int e = io_write_all(io_vfs_default(), dst, &iov, 1, (uint64_t)out);
                if (e) {
                    errno = -e;
                    n = -1;
                } else
                    in += n, out += n;
            }
        }
        if (n < 0)
            return err_set(err, errno == ENOSPC ? FACTUM_ENOSPC : FACTUM_EIO, "cannot copy %s to %s: %s", name, b->to,
                           strerror(errno));
        if (n == 0) return err_set(err, FACTUM_EIO, "cannot copy %s: the file ends at %lld", name, (long long)in);
        b->st.bytes_copied += (uint64_t)n, b->st.bytes_done += (uint64_t)n;
        io_write_behind(dst, (uint64_t)out, &behind); /* little is ever dirty */
        uint64_t due_ns = b->st.bytes_copied * 1000000000ull / ((uint64_t)BK_MIB_S << 20),
                 took = clock_mono_ns() - b->t0_ns;
        if (due_ns > took) usleep((useconds_t)((due_ns - took) / 1000));
        bk_progress(b, false);
    }
    return 0;
}

int store_copy_file(store_copy *b, int src, const char *name, uint64_t len, uint64_t check_off, factum_error_t *err) {
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", b->to, name);
    uint64_t id, old_src, old_dst;
    if (!backup_file_id(src, len, check_off, &id))
        return err_set(err, FACTUM_EIO, "cannot read %s: %s", name, strerror(errno));
    int dst = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644), rc = 0;
    struct stat st;
    if (dst < 0 || fstat(dst, &st)) {
        rc = err_set(err, FACTUM_EIO, "cannot open %s: %s", path, strerror(errno));
        goto out;
    }
    uint64_t from = 0, have = (uint64_t)st.st_size;
    const backup_file *o = backup_manifest_find(&b->old, name);
    /* What an earlier backup copied is still right if the store's file begins with it. */
    if (o && o->size <= len && have >= o->size && backup_file_id(dst, o->size, o->check_off, &old_dst) &&
        old_dst == o->id && backup_file_id(src, o->size, o->check_off, &old_src) && old_src == o->id)
        from = o->size;
    b->st.bytes_done += from;
    if (from == len && have == len) {
        b->st.files_reused++;
    } else {
        if ((rc = copy_range(b, src, dst, from, len, name, err))) goto out;
        if ((have > len && ftruncate(dst, (off_t)len)) || fdatasync(dst)) {
            rc =
                err_set(err, errno == ENOSPC ? FACTUM_ENOSPC : FACTUM_EIO, "cannot sync %s: %s", path, strerror(errno));
            goto out;
        }
        b->st.files_copied++;
    }
    if (backup_manifest_add(&b->now, name, len, check_off, id)) rc = err_set(err, FACTUM_ENOMEM, "out of memory");
    bk_progress(b, true);
    if (b->sleep_ms) usleep(b->sleep_ms * 1000u); /* tests: a copy slow enough to stop half-way */
out:
    if (dst >= 0) close(dst);
    return rc;
}

/* ---- the store's files ---- */

/* Copies segment i (and its map, if sealed there): the tail of the copy when last. Moves *pos on
   if the segment holding the position was compacted meanwhile (it then ends later). */
static int copy_segment(store_copy *b, size_t i, bool tail, uint64_t *pos, int64_t *time_us, factum_error_t *err) {
    factum_t *db = b->db;
    store_seg_claim(db, __atomic_load_n(&db->segs[i], __ATOMIC_ACQUIRE)->no, CLAIM_BACKUP);
    segment_t *s = __atomic_load_n(&db->segs[i], __ATOMIC_ACQUIRE); /* after any swap */
    if (s->unavailable) { /* archived where it cannot be read now: no silent gap in the copy */
        store_seg_release(db, CLAIM_BACKUP);
        return err_set(err, FACTUM_EIO, "cannot copy segment %08x: it is archived as %s, which cannot be read: %s",
                       s->no, s->path, strerror(s->unavailable));
    }
    uint64_t len = s->end, last = segment_last_record(s);
    if (tail && !s->end_pos) {
        /* The records below *pos only: the writer may be adding more. */
        last = *pos > s->first_pos ? segment_offset(s, *pos - 1) : 0;
        len = last ? last + load32(s->map + last + R_LENGTH) : SEGMENT_HEADER;
    } else if (tail) {
        *pos = s->end_pos;
    }
    if (tail && last) *time_us = (int64_t)load64(s->map + last + R_TIME);
    char name[BACKUP_NAME_MAX];
    snprintf(name, sizeof name, "log/%08x.seg", s->no);
    int rc = store_copy_file(b, s->fd, name, len, last, err);
    if (!rc && !tail) {
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/%08x.pmap", db->logdir, s->no);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        struct stat st;
        if (fd >= 0 && fstat(fd, &st) == 0) { /* derived: without one, the copy's open scans */
            snprintf(name, sizeof name, "log/%08x.pmap", s->no);
            rc = store_copy_file(b, fd, name, (uint64_t)st.st_size, 0, err);
        }
        if (fd >= 0) close(fd);
    }
    store_seg_release(db, CLAIM_BACKUP);
    return rc;
}

/* Removes what an earlier backup left in DIR/sub that this one does not hold. */
static void sweep(store_copy *b, const char *sub) {
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/%s", b->to, sub);
    DIR *d = opendir(dir);
    struct dirent *de;
    while (d && (de = readdir(d))) {
        char name[PATH_MAX];
        snprintf(name, sizeof name, "%s/%s", sub, de->d_name);
        if (de->d_name[0] != '.' && !backup_manifest_find(&b->now, name)) unlinkat(dirfd(d), de->d_name, 0);
    }
    if (d) closedir(d);
}

/* A file this backup writes itself (COMMIT, MANIFEST, FORMAT), listed for restore. */
static int list_written(store_copy *b, const char *name, factum_error_t *err) {
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", b->to, name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    uint64_t id;
    bool ok = fd >= 0 && fstat(fd, &st) == 0 && backup_file_id(fd, (uint64_t)st.st_size, 0, &id);
    if (fd >= 0) close(fd);
    if (!ok) return err_set(err, FACTUM_EIO, "cannot read %s: %s", path, strerror(errno));
    return backup_manifest_add(&b->now, name, (uint64_t)st.st_size, 0, id)
               ? err_set(err, FACTUM_ENOMEM, "out of memory")
               : 0;
}

static int backup_run(store_copy *b, factum_error_t *err) {
    factum_t *db = b->db;
    index_run_info_t runs[INDEX_MAX_RUNS];
    int fds[INDEX_MAX_RUNS];
    uint64_t covered;
    size_t nruns = index_snapshot(db->index, runs, fds, INDEX_MAX_RUNS, &covered);
    /* The runs were written from positions the writer had assigned; all are durable at once. */
    uint64_t pos = factum_head_position(db);
    if (covered > pos) pos = factum_wait(db, covered - 1, 10000);
    if (covered > pos) { /* a writer that failed meanwhile: leave the index to the copy's open */
        for (size_t i = 0; i < nruns; i++)
            close(fds[i]);
        nruns = 0;
    }
    size_t nsegs = atomic_load_explicit(&db->nsegs, memory_order_acquire), k = 0;
    while (k + 1 < nsegs && pos && __atomic_load_n(&db->segs[k + 1], __ATOMIC_ACQUIRE)->first_pos <= pos - 1)
        k++;
    for (size_t i = 0; i <= k; i++) { /* for the progress: the segments as they are now */
        segment_t *s = __atomic_load_n(&db->segs[i], __ATOMIC_ACQUIRE);
        b->st.bytes_total += i < k ? s->end + PMAP_HEADER + s->count * 4 : s->end;
    }
    for (size_t i = 0; i < nruns; i++) {
        struct stat st;
        if (fstat(fds[i], &st) == 0) b->st.bytes_total += (uint64_t)st.st_size;
    }
    int64_t time_us = 0;
    int rc = 0;
    b->st.position = pos;
    for (size_t i = 0; i <= k && !rc; i++)
        rc = copy_segment(b, i, i == k, &pos, &time_us, err);
    for (size_t i = 0; i < nruns; i++) {
        struct stat st;
        char name[BACKUP_NAME_MAX];
        snprintf(name, sizeof name, "index/run-%08x.idx", runs[i].id);
        if (!rc && fstat(fds[i], &st))
            rc = err_set(err, FACTUM_EIO, "cannot read the index run %s: %s", name, strerror(errno));
        if (!rc) rc = store_copy_file(b, fds[i], name, (uint64_t)st.st_size, 0, err);
        close(fds[i]);
    }
    if (rc) return rc;
    char logdir[PATH_MAX], idxdir[PATH_MAX];
    snprintf(logdir, sizeof logdir, "%s/log", b->to);
    snprintf(idxdir, sizeof idxdir, "%s/index", b->to);
    if (index_manifest_write(idxdir, runs, nruns))
        return err_set(err, FACTUM_EIO, "cannot write %s/MANIFEST: %s", idxdir, strerror(errno));
    if ((rc = mark_reset(logdir, pos, time_us, err)) || (rc = folder_format_write(b->to, err)) ||
        (rc = list_written(b, "log/COMMIT", err)) || (rc = list_written(b, "index/MANIFEST", err)) ||
        (rc = list_written(b, FOLDER_FORMAT_FILE, err)))
        return rc;
    sweep(b, "log");
    sweep(b, "index");
    int e;
    if ((e = io_sync_dir(logdir)) || (e = io_sync_dir(idxdir)) || (e = io_sync_dir(b->to)))
        return err_set(err, FACTUM_EIO, "cannot sync %s: %s", b->to, strerror(-e));
    b->now.position = b->st.position = pos, b->now.time_us = b->st.time_us = time_us;
    b->now.made_us = clock_realtime_us();
    return 0;
}

int store_copy_begin(store_copy *b, const char *to, bool restore, factum_error_t *err) {
    char real[PATH_MAX];
    int rc = folder_target(to, restore, real, err);
    if (rc) return rc;
    snprintf(b->to, sizeof b->to, "%s", real);
    char sub[PATH_MAX + 8];
    int e = io_make_dir(b->to);
    snprintf(sub, sizeof sub, "%s/log", b->to);
    if (!e) e = io_make_dir(sub);
    snprintf(sub, sizeof sub, "%s/index", b->to);
    if (!e) e = io_make_dir(sub);
    if (e) return err_set(err, FACTUM_EIO, "cannot create %s: %s", sub, strerror(-e));
    if ((rc = store_lock_folder(b->to, false, &b->lock_fd, err))) return rc;
    if (!restore) backup_manifest_read(b->to, &b->old, NULL); /* none, or not whole: copy everything */
    /* From here until the manifest, the folder says it is unfinished. */
    char path[PATH_MAX], note[96];
    int n = snprintf(note, sizeof note, "%s by process %ld\n", restore ? "restore" : "backup", (long)getpid());
    snprintf(path, sizeof path, "%s/%s", b->to, BACKUP_MARKER);
    if ((e = io_replace_file(path, note, (size_t)n, 0644))) goto fail;
    snprintf(path, sizeof path, "%s/%s", b->to, BACKUP_MANIFEST);
    if ((unlink(path) && errno != ENOENT && (e = -errno)) || (e = io_sync_dir(b->to))) goto fail;
    const char *slow = getenv("FACTUM_TEST_BACKUP_SLEEP_MS"); /* test-only: see docs/operations.md */
    b->sleep_ms = slow ? (unsigned)atoi(slow) : 0;
    b->t0_ns = clock_mono_ns();
    return 0;
fail:
    return err_set(err, FACTUM_EIO, "cannot write %s: %s", path, strerror(-e));
}

int store_copy_end(store_copy *b, bool manifest, factum_error_t *err) {
    char path[PATH_MAX];
    int rc = manifest ? backup_manifest_write(b->to, &b->now, err) : 0, e;
    snprintf(path, sizeof path, "%s/%s", b->to, BACKUP_MARKER);
    if (!rc && ((e = unlink(path) ? -errno : 0) || (e = io_sync_dir(b->to))))
        rc = err_set(err, FACTUM_EIO, "cannot remove %s: %s", path, strerror(-e));
    return rc;
}

void store_copy_free(store_copy *b) {
    if (b->lock_fd >= 0) close(b->lock_fd);
    backup_manifest_free(&b->old);
    backup_manifest_free(&b->now);
    free(b->buf);
}

int factum_backup(factum_t *db, const char *to, factum_backup_cb cb, void *ctx, factum_backup_stats_t *st,
                  factum_error_t *err) {
    if (st) *st = (factum_backup_stats_t){0};
    if (!to || !*to) return err_set(err, FACTUM_EINVAL, "a backup needs a folder to go to");
    int rc = folder_outside(to, db->dir, "a backup", err);
    if (rc) return rc;
    bool idle = false;
    if (!atomic_compare_exchange_strong(&db->backing_up, &idle, true))
        return err_set(err, FACTUM_ECONFLICT, "a backup of %s is already running", db->dir);
    store_copy b = {.db = db, .cb = cb, .ctx = ctx, .lock_fd = -1};
    if (!(rc = store_copy_begin(&b, to, false, err)) && !(rc = backup_run(&b, err))) rc = store_copy_end(&b, true, err);
    bk_progress(&b, true);
    if (st) *st = b.st;
    store_copy_free(&b);
    atomic_store(&db->backing_up, false);
    return rc;
}

size_t factum_backup_json(const factum_backup_stats_t *st, char *out, size_t cap) {
    int n = snprintf(out, cap,
                     "{\"position\":%llu,\"bytes_total\":%llu,\"bytes_copied\":%llu,\"files_copied\":%llu,"
                     "\"files_reused\":%llu,\"seconds\":%.3f}",
                     (unsigned long long)st->position, (unsigned long long)st->bytes_total,
                     (unsigned long long)st->bytes_copied, (unsigned long long)st->files_copied,
                     (unsigned long long)st->files_reused, st->seconds);
    return n < 0 ? 0 : (size_t)n;
}
