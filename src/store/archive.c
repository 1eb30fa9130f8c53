/*
 * archive.c — archival to cold storage (archive.h; docs/operations.md, "Archival";
 * docs/format.md, "Archived segments").
 *
 * A pass looks at the sealed segments from the oldest on and moves each one whose newest event
 * is at least archive_after old, stopping at the first that is younger (commit times never
 * decrease along the log). A move runs under the segment's claim (no backup copies it and no
 * scavenge rewrites it meanwhile), in an order that leaves the segment readable in one place or
 * in both at every point, never in none:
 *   1. log/NNNNNNNN.seg is copied up to its last record to ARCHIVE/NNNNNNNN.seg, synced, and the
 *      archive folder synced;
 *   2. the copy is opened and must read back with the original's identity;
 *   3. the marker log/NNNNNNNN.arch is written (atomically, synced): the commit point;
 *   4. the copy is swapped into the segment array (readers pinned before keep the old mapping);
 *   5. log/NNNNNNNN.seg is removed and log/ synced.
 * Recovery (store_archive_recover) finishes a move that a crash stopped between 3 and 5; a copy
 * without a marker is simply made again. The position map stays in log/, so finding a record
 * never touches the archive; only its bytes are read from there.
 *
 * The archiver thread runs a pass at each roll of the writer and at least every
 * ARCHIVE_TICK_MAX_S; factum_archive runs one in its caller's thread. One pass at a time.
 */
#include "folder.h"
#include "store.h"

#include "../base/json.h"
#include "record.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define NOT_OURS EBADMSG /* `unavailable`: the file there is not the one this store archived */

/* ---- the marker ---- */

static void file_path(char *out, const char *dir, uint32_t no, const char *ext) {
    snprintf(out, PATH_MAX, "%s/%08x.%s", dir, no, ext);
}

static int archive_mark_write(const char *logdir, const archive_mark *m, factum_error_t *err) {
    buf_t b = {0};
    int rc = buf_printf(&b,
                        "factum-archive 1\nsegment %08x\ngeneration %u\nfirst %llu\ncount %llu\nend %llu\n"
                        "check %llu\nid %016llx\nfolder %s\n",
                        m->no, m->generation, (unsigned long long)m->first, (unsigned long long)m->count,
                        (unsigned long long)m->end, (unsigned long long)m->check, (unsigned long long)m->id, m->folder);
    if (!rc) rc = buf_printf(&b, "crc %08x\n", crc32c(b.ptr, b.len));
    char path[PATH_MAX];
    file_path(path, logdir, m->no, ARCHIVE_MARK_EXT);
    int e = rc ? -ENOMEM : io_replace_file(path, b.ptr, b.len, 0644);
    buf_free(&b);
    return e ? err_set(err, e == -ENOMEM ? FACTUM_ENOMEM : FACTUM_EIO, "cannot write %s: %s", path, strerror(-e)) : 0;
}

int archive_mark_read(const char *logdir, uint32_t no, archive_mark *m, factum_error_t *err) {
    char path[PATH_MAX], *text;
    size_t len;
    file_path(path, logdir, no, ARCHIVE_MARK_EXT);
    int e = io_read_file(path, &text, &len);
    if (e == -ENOENT) return err_set(err, FACTUM_ENOTFOUND, "%s: no marker", path);
    if (e) return err_set(err, FACTUM_EIO, "cannot read %s: %s", path, strerror(-e));
    *m = (archive_mark){0};
    char *crcline = strstr(text, "\ncrc "), *folder = strstr(text, "\nfolder ");
    unsigned crc, seg, gen;
    unsigned long long first, count, end, check, id;
    bool ok = crcline && folder && folder < crcline && sscanf(crcline + 1, "crc %x", &crc) == 1 &&
              crc == crc32c(text, (size_t)(crcline + 1 - text)) &&
              sscanf(text,
                     "factum-archive 1\nsegment %x\ngeneration %u\nfirst %llu\ncount %llu\nend %llu\ncheck %llu\n"
                     "id %llx\n",
                     &seg, &gen, &first, &count, &end, &check, &id) == 7 &&
              seg == no && end >= SEGMENT_HEADER && check < end && count <= SEGMENT_MAX_POSITIONS;
    size_t flen = ok ? (size_t)(crcline - (folder + 8)) : 0;
    if (ok && flen > 1 && flen < sizeof m->folder && folder[8] == '/') {
        memcpy(m->folder, folder + 8, flen);
        m->no = no, m->generation = gen, m->first = first, m->count = count, m->end = end, m->check = check;
        m->id = id;
    } else {
        ok = false;
    }
    free(text);
    return ok ? 0 : err_set(err, FACTUM_ECORRUPT, "%s does not check out (the marker of an archived segment)", path);
}

/* ---- options and recovery ---- */

int store_archive_init(factum_t *db, const char *dir, uint64_t after_s, factum_error_t *err) {
    store_archive *a = &db->arch;
    pthread_mutex_init(&a->mu, NULL);
    pthread_mutex_init(&a->pass_mu, NULL);
    clock_mono_cond_init(&a->cond);
    const char *slow = getenv("FACTUM_TEST_ARCHIVE_SLEEP_MS"); /* test-only: docs/operations.md */
    a->sleep_ms = slow ? (unsigned)atoi(slow) : 0;
    if (after_s > FACTUM_MAX_ARCHIVE_AFTER_S)
        return err_set(err, FACTUM_EINVAL, "archive_after_s is at most %llu seconds (100 years)",
                       (unsigned long long)FACTUM_MAX_ARCHIVE_AFTER_S);
    if (!dir) return 0;
    if (!*dir || strlen(dir) > FACTUM_MAX_DIR || strchr(dir, '\n'))
        return err_set(err, FACTUM_EINVAL, "the archive folder must be a path of 1 to %d bytes, on one line",
                       FACTUM_MAX_DIR);
    int rc = folder_outside(dir, db->dir, "the archive folder", err);
    if (rc) return rc;
    char real[PATH_MAX], cwd[PATH_MAX];
    if (realpath(dir, real))
        snprintf(a->dir, sizeof a->dir, "%s", real);
    else if (dir[0] != '/' && getcwd(cwd, sizeof cwd) && strlen(cwd) + strlen(dir) + 2 <= sizeof a->dir)
        snprintf(a->dir, sizeof a->dir, "%s/%s", cwd, dir); /* missing: named as absolute all the same */
    else
        snprintf(a->dir, sizeof a->dir, "%s", dir);
    a->enabled = true;
    a->after_us = after_s * 1000000;
    struct stat st;
    int e = stat(a->dir, &st) ? errno : !S_ISDIR(st.st_mode) ? ENOTDIR : access(a->dir, R_OK | W_OK | X_OK) ? errno : 0;
    if (e) snprintf(a->problem, sizeof a->problem, "the archive folder %s cannot be used: %s", a->dir, strerror(e));
    a->folder_bad = e != 0;
    return 0;
}

/* Opens the archived copy of m in dir: 0 with *out, or why it cannot be read (an errno, or
   NOT_OURS when what is there is not the file this store archived). */
static int open_copy(const char *dir, const archive_mark *m, segment_t **out) {
    char path[PATH_MAX];
    file_path(path, dir, m->no, "seg");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno;
    close(fd);
    segment_t *s;
    factum_error_t why;
    uint64_t id;
    if (segment_open_archived(dir, m->no, &s, &why)) return why.code == FACTUM_ENOMEM ? ENOMEM : NOT_OURS;
    if (!backup_file_id(s->fd, m->end, m->check, &id) || id != m->id || s->first_pos != m->first ||
        s->generation != m->generation) {
        segment_close(s);
        return NOT_OURS;
    }
    *out = s;
    return 0;
}

static const char *why_unavailable(int e) {
    return e == NOT_OURS ? "it is not the file this store archived there (another file, or damaged)" : strerror(e);
}

/* Its position map from log/ (where it stays), else from a scan of the copy. */
static int load_map(factum_t *db, segment_t *s, const archive_mark *m, factum_error_t *err) {
    if (segment_load_pmap(s, db->logdir) == 0 && s->count == m->count) return 0;
    if (segment_alloc_pmap(s)) return err_set(err, FACTUM_ENOMEM, "out of memory for the position map of %s", s->path);
    segment_scan_t r;
    segment_scan(s, &r);
    if (s->count != m->count || s->end != m->end)
        return err_set(err, FACTUM_ECORRUPT, "archived segment %s: %llu events up to offset %llu, its marker says %llu",
                       s->path, (unsigned long long)s->count, (unsigned long long)s->end, (unsigned long long)m->count);
    segment_write_pmap(s, db->logdir); /* derived: a failure only costs a scan next time */
    return 0;
}

int store_archive_recover(factum_t *db, uint32_t no, segment_t **out, factum_error_t *err) {
    *out = NULL;
    archive_mark m;
    factum_error_t why;
    char local[PATH_MAX], mark[PATH_MAX];
    file_path(local, db->logdir, no, "seg");
    file_path(mark, db->logdir, no, ARCHIVE_MARK_EXT);
    bool have_local = access(local, F_OK) == 0;
    int rc = archive_mark_read(db->logdir, no, &m, &why);
    if (rc == FACTUM_ENOTFOUND) return 0;
    if (rc && !have_local) return err_set(err, rc, "%s", why.message);
    const char *dir = db->arch.dir[0] ? db->arch.dir : m.folder;
    segment_t *s = NULL;
    int unavailable = rc ? NOT_OURS : open_copy(dir, &m, &s);
    if (have_local) {
        /* A move a crash stopped after its marker: finished when the copy checks out, else
           undone (the local file is whole: it was removed only after the marker). */
        if (s ? unlink(local) : unlink(mark)) {
            segment_close(s);
            return err_set(err, FACTUM_EIO, "cannot finish the archival of %s: %s", local, strerror(errno));
        }
        io_sync_dir(db->logdir);
        if (!s) return 0;
    }
    if (s) {
        if ((rc = load_map(db, s, &m, err))) {
            segment_close(s);
            return rc;
        }
        *out = s;
        return 0;
    }
    /* Its file cannot be read now: every read of its events says so (never a silent gap). */
    if (!(s = calloc(1, sizeof *s))) return err_set(err, FACTUM_ENOMEM, "out of memory opening a segment");
    s->no = no, s->fd = -1, s->first_pos = m.first, s->count = m.count, s->end = s->size = m.end;
    s->generation = m.generation, s->archived = true, s->unavailable = unavailable;
    file_path(s->path, dir, no, "seg");
    if (!db->arch.problem[0])
        snprintf(db->arch.problem, sizeof db->arch.problem, "archived segment %s cannot be read: %s", s->path,
                 why_unavailable(unavailable));
    *out = s;
    return 0;
}

int store_archive_unavailable(const segment_t *s, uint64_t pos, factum_error_t *err) {
    return err_set(err, FACTUM_EIO,
                   "the event at position %llu is in segment %08x, archived as %s, which cannot be read: %s",
                   (unsigned long long)pos, s->no, s->path, why_unavailable(s->unavailable));
}

/* ---- a pass ---- */

static void pause_for_tests(store_archive *a) {
    if (a->sleep_ms) usleep(a->sleep_ms * 1000u);
}

/* Moves sealed segment i to the archive folder (the protocol above). */
static int move_segment(factum_t *db, size_t i, factum_error_t *err) {
    store_archive *a = &db->arch;
    store_seg_claim(db, __atomic_load_n(&db->segs[i], __ATOMIC_ACQUIRE)->no, CLAIM_ARCHIVE);
    segment_t *s = __atomic_load_n(&db->segs[i], __ATOMIC_ACQUIRE), *ns = NULL; /* after any scavenge */
    archive_mark m = {.no = s->no,
                      .generation = s->generation,
                      .first = s->first_pos,
                      .count = s->count,
                      .end = s->end,
                      .check = segment_last_record(s)};
    snprintf(m.folder, sizeof m.folder, "%s", a->dir);
    char name[16], local[PATH_MAX];
    snprintf(name, sizeof name, "%08x.seg", s->no);
    store_copy b = {.db = db, .lock_fd = -1, .t0_ns = clock_mono_ns()};
    snprintf(b.to, sizeof b.to, "%s", a->dir);
    int rc = store_copy_file(&b, s->fd, name, m.end, m.check, err), e;
    if (!rc) m.id = b.now.files[b.now.n - 1].id;
    store_copy_free(&b);
    if (!rc && (e = io_sync_dir(a->dir)))
        rc = err_set(err, FACTUM_EIO, "cannot sync the archive folder %s: %s", a->dir, strerror(-e));
    if (!rc && (e = open_copy(a->dir, &m, &ns)))
        rc = err_set(err, FACTUM_EIO, "the copy of %s in %s does not read back: %s", s->path, a->dir,
                     why_unavailable(e));
    if (!rc && segment_load_pmap(ns, db->logdir)) { /* the map in memory serves */
        if (segment_alloc_pmap(ns))
            rc = err_set(err, FACTUM_ENOMEM, "out of memory for the position map of %s", ns->path);
        else
            memcpy(ns->pmap, s->pmap, s->count * sizeof *s->pmap), ns->count = s->count, ns->end = s->end;
    }
    if (!rc) pause_for_tests(a); /* copied, not yet recorded */
    /* before the first marker: a factum that predates archival must refuse the folder clearly
       instead of finding a segment missing */
    if (!rc) rc = folder_format_raise(db->dir, FOLDER_FORMAT_ARCHIVED, err);
    if (!rc) rc = archive_mark_write(db->logdir, &m, err);
    if (rc) {
        segment_close(ns);
        store_seg_release(db, CLAIM_ARCHIVE);
        return rc;
    }
    pause_for_tests(a); /* recorded, still on the fast disk too */
    __atomic_store_n(&db->segs[i], ns, __ATOMIC_SEQ_CST);
    store_seg_release(db, CLAIM_ARCHIVE);
    file_path(local, db->logdir, s->no, "seg");
    if (unlink(local) || (e = io_sync_dir(db->logdir)) != 0) { /* recovery finishes it */
        pthread_mutex_lock(&a->mu);
        snprintf(a->error, sizeof a->error, "cannot remove %s (the next open does): %s", local, strerror(errno));
        pthread_mutex_unlock(&a->mu);
    }
    store_retire(db, s);
    return 0;
}

/* An archived segment that could not be read: opened again if its folder is back. */
static void reopen(factum_t *db, size_t i) {
    store_seg_claim(db, __atomic_load_n(&db->segs[i], __ATOMIC_ACQUIRE)->no, CLAIM_ARCHIVE);
    segment_t *s = __atomic_load_n(&db->segs[i], __ATOMIC_ACQUIRE), *ns = NULL;
    archive_mark m;
    factum_error_t err;
    if (archive_mark_read(db->logdir, s->no, &m, &err) ||
        open_copy(db->arch.dir[0] ? db->arch.dir : m.folder, &m, &ns) || load_map(db, ns, &m, &err)) {
        segment_close(ns);
        store_seg_release(db, CLAIM_ARCHIVE);
        return;
    }
    __atomic_store_n(&db->segs[i], ns, __ATOMIC_SEQ_CST);
    store_seg_release(db, CLAIM_ARCHIVE);
    store_retire(db, s);
}

/* Whether the folder can be written; sets or clears the store's problem. */
static int check_folder(factum_t *db, factum_error_t *err) {
    store_archive *a = &db->arch;
    struct stat st;
    int e = stat(a->dir, &st) ? errno : !S_ISDIR(st.st_mode) ? ENOTDIR : access(a->dir, R_OK | W_OK | X_OK) ? errno : 0;
    size_t n = atomic_load_explicit(&db->nsegs, memory_order_acquire);
    for (size_t i = 0; !e && i < n; i++)
        if (__atomic_load_n(&db->segs[i], __ATOMIC_ACQUIRE)->unavailable) reopen(db, i);
    pthread_mutex_lock(&a->mu);
    if (e)
        snprintf(a->problem, sizeof a->problem, "the archive folder %s cannot be used: %s", a->dir, strerror(e));
    else
        a->problem[0] = 0;
    a->folder_bad = e != 0;
    pthread_mutex_unlock(&a->mu);
    return e ? err_set(err, FACTUM_EIO, "the archive folder %s cannot be used: %s", a->dir, strerror(e)) : 0;
}

static int run_pass(factum_t *db, factum_error_t *err) {
    store_archive *a = &db->arch;
    if (!a->enabled)
        return err_set(err, FACTUM_EINVAL, "no archive folder is configured (archive_dir; factum serve --archive-dir)");
    pthread_mutex_lock(&a->pass_mu);
    pthread_mutex_lock(&a->mu);
    a->running = true;
    pthread_mutex_unlock(&a->mu);
    uint64_t moved = 0, bytes = 0;
    int rc = check_folder(db, err);
    int64_t now = clock_realtime_us();
    size_t n = atomic_load_explicit(&db->nsegs, memory_order_acquire); /* all but the last are sealed */
    for (size_t i = 0; !rc && i + 1 < n; i++) {
        if (__atomic_load_n(&a->stop, __ATOMIC_ACQUIRE)) {
            rc = err_set(err, FACTUM_ECLOSED, "the store is closing");
            break;
        }
        unsigned pin = store_pin(db);
        segment_t *s = __atomic_load_n(&db->segs[i], __ATOMIC_ACQUIRE);
        uint64_t last = s->archived ? 0 : segment_last_record(s), len = s->end;
        bool archived = s->archived,
             young = last && now - (int64_t)load64(s->map + last + R_TIME) < (int64_t)a->after_us;
        store_unpin(db, pin);
        if (archived) continue;
        if (young) break; /* and every later one is younger still */
        if (!(rc = move_segment(db, i, err))) moved++, bytes += len;
    }
    pthread_mutex_lock(&a->mu);
    a->running = false;
    a->passes++;
    a->moved = moved, a->moved_bytes = bytes, a->moved_total += moved;
    a->last_pass_us = clock_realtime_us();
    a->last_error = rc;
    snprintf(a->error, sizeof a->error, "%s", rc && err ? err->message : "");
    pthread_mutex_unlock(&a->mu);
    pthread_mutex_unlock(&a->pass_mu);
    return rc;
}

int factum_archive(factum_t *db, factum_archive_stats_t *st, factum_error_t *err) {
    factum_error_t mine;
    int rc = run_pass(db, err ? err : &mine);
    if (st) factum_archive_stats(db, st);
    return rc;
}

/* ---- the archiver thread ---- */

static void *archiver_main(void *arg) {
    factum_t *db = arg;
    store_archive *a = &db->arch;
    uint64_t tick_s = MIN(MAX(a->after_us / 2000000, 1), ARCHIVE_TICK_MAX_S);
    pthread_mutex_lock(&a->mu);
    while (!a->stop) {
        struct timespec next = clock_mono_after((int64_t)tick_s * 1000000);
        int w = 0;
        while (!a->stop && !a->poked && w != ETIMEDOUT)
            w = pthread_cond_timedwait(&a->cond, &a->mu, &next);
        if (a->stop) break;
        a->poked = false;
        pthread_mutex_unlock(&a->mu);
        factum_error_t err;
        run_pass(db, &err); /* its outcome is in the stats */
        pthread_mutex_lock(&a->mu);
    }
    pthread_mutex_unlock(&a->mu);
    return NULL;
}

int store_archive_start(factum_t *db) {
    store_archive *a = &db->arch;
    if (!a->enabled) return 0;
    if (pthread_create(&a->thread, NULL, archiver_main, db)) return FACTUM_ENOMEM;
    a->started = true;
    return 0;
}

void store_archive_stop(factum_t *db) {
    store_archive *a = &db->arch;
    if (!a->started) return;
    pthread_mutex_lock(&a->mu);
    __atomic_store_n(&a->stop, true, __ATOMIC_RELEASE);
    pthread_cond_signal(&a->cond);
    pthread_mutex_unlock(&a->mu);
    pthread_join(a->thread, NULL);
    a->started = false;
}

void store_archive_free(factum_t *db) {
    pthread_mutex_destroy(&db->arch.mu);
    pthread_mutex_destroy(&db->arch.pass_mu);
    pthread_cond_destroy(&db->arch.cond);
}

void store_archive_poke(factum_t *db) {
    store_archive *a = &db->arch;
    if (!a->started) return;
    pthread_mutex_lock(&a->mu);
    a->poked = true;
    pthread_cond_signal(&a->cond);
    pthread_mutex_unlock(&a->mu);
}

/* ---- what is where ---- */

void factum_archive_stats(factum_t *db, factum_archive_stats_t *out) {
    memset(out, 0, sizeof *out);
    store_archive *a = &db->arch;
    unsigned pin = store_pin(db);
    size_t n = atomic_load_explicit(&db->nsegs, memory_order_acquire);
    for (size_t i = 0; i < n; i++) {
        const segment_t *s = __atomic_load_n(&db->segs[i], __ATOMIC_ACQUIRE);
        if (s->archived)
            out->archived_segments++, out->archived_bytes += s->end, out->unavailable_segments += s->unavailable != 0;
        else
            out->hot_segments++, out->hot_bytes += segment_limit(s);
    }
    store_unpin(db, pin);
    out->enabled = a->enabled;
    out->after_s = a->after_us / 1000000;
    snprintf(out->folder, sizeof out->folder, "%s", a->dir);
    pthread_mutex_lock(&a->mu);
    out->running = a->running;
    out->passes = a->passes;
    out->moved_segments = a->moved, out->moved_bytes = a->moved_bytes, out->moved_segments_total = a->moved_total;
    out->last_pass_us = a->last_pass_us;
    out->last_error = a->last_error;
    snprintf(out->error, sizeof out->error, "%s", a->problem[0] ? a->problem : a->error);
    out->folder_unusable = a->folder_bad;
    pthread_mutex_unlock(&a->mu);
}

size_t factum_archive_json(const factum_archive_stats_t *st, char *out, size_t cap) {
    buf_t bb = {0}, *b = &bb;
    buf_printf(b, "{\"enabled\":%s,\"folder\":", st->enabled ? "true" : "false");
    if (st->folder[0])
        json_escape(b, st->folder, strlen(st->folder));
    else
        buf_printf(b, "null");
    buf_printf(
        b,
        ",\"after_s\":%llu,\"hot_segments\":%llu,\"hot_bytes\":%llu,\"archived_segments\":%llu,"
        "\"archived_bytes\":%llu,\"unavailable_segments\":%llu,\"folder_unusable\":%s,\"running\":%s,\"passes\":%llu,"
        "\"moved_segments\":%llu,\"moved_bytes\":%llu,\"moved_segments_total\":%llu,\"last_pass\":",
        (unsigned long long)st->after_s, (unsigned long long)st->hot_segments, (unsigned long long)st->hot_bytes,
        (unsigned long long)st->archived_segments, (unsigned long long)st->archived_bytes,
        (unsigned long long)st->unavailable_segments, st->folder_unusable ? "true" : "false",
        st->running ? "true" : "false", (unsigned long long)st->passes, (unsigned long long)st->moved_segments,
        (unsigned long long)st->moved_bytes, (unsigned long long)st->moved_segments_total);
    char when[32];
    if (st->last_pass_us) {
        time_format_rfc3339(st->last_pass_us, when);
        buf_printf(b, "\"%s\"", when);
    } else {
        buf_printf(b, "null");
    }
    buf_printf(b, ",\"last_error\":");
    buf_printf(b, st->last_error ? "\"%s\"" : "null%.0s", st->last_error ? factum_errname(st->last_error) : "");
    buf_printf(b, ",\"error\":");
    if (st->error[0])
        json_escape(b, st->error, strlen(st->error));
    else
        buf_printf(b, "null");
    buf_printf(b, "}");
    return buf_give(&bb, out, cap);
}
