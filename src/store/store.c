/*
 * store.c — opening a data folder (locking, recovery, index catch-up) and closing it.
 *
 * Data folder:  DIR/LOCK (owner pid, flock), DIR/FORMAT (folder.c), DIR/log/NNNNNNNN.seg + .pmap, DIR/index/...
 * (and DIR/log/NNNNNNNN.arch for a segment moved to the archive folder: archive.c).
 * Recovery, in order: open sealed segments (pmap from file or by scan; any bad record there is
 * corruption; archived ones where their marker says), scan the tail segment (torn tail zeroed, corruption reported),
 * open the index and replay the log from the position it covers. docs/format.md describes it in full.
 */
#include "store.h"

#include "record.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int store_lock_folder(const char *dir, bool read_only_ok, int *out, factum_error_t *err) {
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/LOCK", dir);
    bool rw = true;
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd >= 0)
        io_sync_dir(dir); /* made it: its name is durable before anything else is */
    else if (errno == EEXIST)
        fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0 && read_only_ok && (errno == EROFS || errno == EACCES))
        fd = open(path, O_RDONLY | O_CLOEXEC), rw = false;
    if (fd < 0) return err_set(err, FACTUM_EIO, "cannot open %s: %s", path, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB)) {
        char pid[32] = {0};
        ssize_t n = pread(fd, pid, sizeof pid - 1, 0);
        while (n > 0 && (pid[n - 1] == '\n' || pid[n - 1] == ' '))
            pid[--n] = 0;
        close(fd);
        return err_set(err, FACTUM_ELOCKED, "data folder %s is in use by process %s", dir, n > 0 ? pid : "(unknown)");
    }
    /* The owner's pid, so that a second opener can name it. */
    char pid[32];
    int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (rw && (ftruncate(fd, 0) || pwrite(fd, pid, (size_t)n, 0) != n) && !read_only_ok) {
        close(fd);
        return err_set(err, FACTUM_EIO, "cannot write %s: %s", path, strerror(errno));
    }
    *out = fd;
    return 0;
}

/* The folder, made if missing (and then durable: io_make_dir syncs it and its parent). */
static int make_folder(const char *dir, factum_error_t *err) {
    int e = io_make_dir(dir);
    return e ? err_set(err, FACTUM_EIO, "cannot create data folder %s: %s", dir, strerror(-e)) : 0;
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* Segment numbers present in the log folder, sorted; leftover temporary files are removed. */
static int list_segments(factum_t *db, uint32_t **out, size_t *n, factum_error_t *err) {
    DIR *d = opendir(db->logdir);
    if (!d) return err_set(err, FACTUM_EIO, "cannot read %s: %s", db->logdir, strerror(errno));
    size_t cap = 16, cnt = 0;
    uint32_t *v = malloc(cap * sizeof *v);
    struct dirent *de;
    while (v && (de = readdir(d))) {
        unsigned no;
        char tail[16];
        if (strstr(de->d_name, ".tmp") || strstr(de->d_name, ".scav")) { /* unfinished: never installed */
            unlinkat(dirfd(d), de->d_name, 0);
            continue;
        }
        /* A segment in log/, or the marker of one in the archive folder (archive.c). */
        if (sscanf(de->d_name, "%8x.%15s", &no, tail) != 2 || (strcmp(tail, "seg") && strcmp(tail, ARCHIVE_MARK_EXT)) ||
            strlen(de->d_name) != 9 + strlen(tail))
            continue;
        if (cnt == cap) {
            uint32_t *nv = realloc(v, (cap *= 2) * sizeof *v);
            if (!nv) {
                free(v);
                v = NULL;
                break;
            }
            v = nv;
        }
        v[cnt++] = no;
    }
    closedir(d);
    if (!v) return err_set(err, FACTUM_ENOMEM, "out of memory listing segments");
    qsort(v, cnt, sizeof *v, cmp_u32);
    size_t k = 0; /* a segment and its marker both there: a move a crash stopped (archive.c) */
    for (size_t i = 0; i < cnt; i++)
        if (!k || v[i] != v[k - 1]) v[k++] = v[i];
    *out = v;
    *n = k;
    return 0;
}

int store_add_segment(factum_t *db, segment_t *s, factum_error_t *err) {
    size_t n = atomic_load(&db->nsegs);
    if (n == STORE_MAX_SEGMENTS) {
        segment_close(s);
        return err_set(err, FACTUM_ETOOBIG, "too many segments in %s", db->logdir);
    }
    db->segs[n] = s;
    atomic_store_explicit(&db->nsegs, n + 1, memory_order_release);
    return 0;
}

/* Opens every segment; all but the last must be whole. Leaves next_pos at the log's end. */
static int recover_log(factum_t *db, factum_error_t *err) {
    uint32_t *nos = NULL;
    size_t n = 0;
    commit_mark_t mark;
    int rc = mark_read(db->logdir, &mark, err);
    if (!rc) rc = list_segments(db, &nos, &n, err);
    if (rc) return rc;
    uint64_t expect_pos = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        segment_t *s;
        if (nos[i] != (i ? nos[i - 1] + 1 : nos[0])) {
            rc = err_set(err, FACTUM_ECORRUPT, "segment %08x is missing from %s (found %08x after it)", nos[i - 1] + 1,
                         db->logdir, nos[i]);
            break;
        }
        if ((rc = store_archive_recover(db, nos[i], &s, err))) break;
        if (s && i + 1 == n) {
            rc = err_set(err, FACTUM_ECORRUPT, "segment %08x is archived (%s) but is the last one: %s lost its tail",
                         nos[i], s->path, db->logdir);
            segment_close(s);
            break;
        }
        if (s) { /* archived: its map and count come with it */
            if (i && s->first_pos != expect_pos) {
                rc = err_set(err, FACTUM_ECORRUPT, "segment %s starts at position %llu, expected %llu", s->path,
                             (unsigned long long)s->first_pos, (unsigned long long)expect_pos);
                segment_close(s);
                break;
            }
            expect_pos = s->first_pos + s->count;
            rc = store_add_segment(db, s, err);
            continue;
        }
        if ((rc = segment_open(db->logdir, nos[i], &s, err))) break;
        if (i && s->first_pos != expect_pos) {
            rc = err_set(err, FACTUM_ECORRUPT, "segment %s starts at position %llu, expected %llu", s->path,
                         (unsigned long long)s->first_pos, (unsigned long long)expect_pos);
            segment_close(s);
            break;
        }
        bool tail = i + 1 == n;
        if (!tail && segment_load_pmap(s, db->logdir) == 0) {
            expect_pos = s->first_pos + s->count;
        } else {
            segment_scan_t r;
            if ((rc = segment_alloc_pmap(s))) {
                err_set(err, rc, "out of memory for the position map of %s", s->path);
                segment_close(s);
                break;
            }
            segment_scan(s, &r);
            if (tail) {
                rc = segment_repair_tail(s, &r, STORE_TAIL_WINDOW, mark.position, db->vfs, err);
            } else if (s->end_pos && !r.clean) {
                rc = err_set(err, FACTUM_ECORRUPT, "segment %s: checksum failure at offset %llu (position %llu)",
                             s->path, (unsigned long long)r.stop_at, (unsigned long long)(s->first_pos + r.count));
            } else {
                /* A sealed segment must hold every position up to where the next one starts. If
                   its map is gone and damage stops the scan short, open around the damage, so
                   that every other event stays readable, and report it as reads will. */
                uint64_t next_first, bad = 0, bad_off = 0;
                if ((rc = segment_peek_first(db->logdir, nos[i + 1], &next_first, err)) == 0) {
                    if (!s->end_pos && next_first > s->first_pos &&
                        (!r.clean || s->first_pos + s->count != next_first)) {
                        factum_error_t derr;
                        if (segment_scan_around(s, next_first, &bad, &bad_off))
                            store_damage(&db->integrity, s, bad, bad_off, FACTUM_ECORRUPT, &derr);
                    }
                    segment_write_pmap(s, db->logdir); /* derived: a failure here only costs a rescan */
                }
            }
            if (rc) {
                segment_close(s);
                break;
            }
            expect_pos = s->first_pos + s->count;
        }
        rc = store_add_segment(db, s, err);
    }
    free(nos);
    if (rc) return rc;
    if (atomic_load(&db->nsegs) == 0) {
        segment_t *s;
        if (mark.position)
            return err_set(err, FACTUM_ECORRUPT,
                           "%s holds no segments, but the commit mark says positions below %llu were acknowledged",
                           db->logdir, (unsigned long long)mark.position);
        if ((rc = segment_create(db->logdir, 0, db->segment_bytes, 0, STORE_ZERO_MIN, db->vfs, &s, err))) return rc;
        if ((rc = store_add_segment(db, s, err))) return rc;
    }
    segment_t *last = db->segs[atomic_load(&db->nsegs) - 1];
    db->next_pos = last->first_pos + last->count;
    if (db->next_pos < mark.position)
        return err_set(err, FACTUM_ECORRUPT,
                       "acknowledged events at positions %llu to %llu are missing: the log ends in %s, and the commit "
                       "mark says positions below %llu were acknowledged",
                       (unsigned long long)db->next_pos, (unsigned long long)mark.position - 1, last->path,
                       (unsigned long long)mark.position);
    /* Group times never decrease along the log: the last event's time is where they go on. */
    factum_event_t e;
    if (db->next_pos && store_event_at(db, db->next_pos - 1, &e, NULL) == 0) db->last_time = e.time_us;
    db->durable_time = db->last_time;
    return 0;
}

segment_t *store_segment_of(factum_t *db, uint64_t pos) {
    size_t lo = 0, hi = atomic_load_explicit(&db->nsegs, memory_order_acquire);
    /* A scavenge may swap an entry for its compacted copy: load each once (docs/threads.md). */
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if (__atomic_load_n(&db->segs[mid], __ATOMIC_ACQUIRE)->first_pos <= pos)
            lo = mid;
        else
            hi = mid;
    }
    return __atomic_load_n(&db->segs[lo], __ATOMIC_ACQUIRE);
}

/* While the index is rebuilt: whether the log still holds an event of e's stream below e. When
   it does not (a scavenge removed the stream's first events), e is where its name is kept. */
static bool stream_in_log_before(factum_t *db, const factum_event_t *e) {
    uint64_t key = index_key_stream(e->stream);
    idx_hit hits[16], from = {0, 0};
    for (;;) {
        size_t n = index_range(db->index, key, from, false, 16, e->position, hits);
        for (size_t i = 0; i < n; i++) {
            factum_event_t o;
            if (store_event_at(db, hits[i].pos, &o, NULL) == 0 && str_eq(o.stream, e->stream)) return true;
        }
        if (n < 16 || !index_after(hits[n - 1], false, &from)) return false; /* other names sharing the key */
    }
}

int store_event_at(factum_t *db, uint64_t pos, factum_event_t *e, factum_error_t *err) {
    /* Only the writer may look at group_first/next_pos/pending: test the thread first. */
    if (pthread_equal(pthread_self(), db->writer) && db->pending && pos >= db->group_first && pos < db->next_pos) {
        /* The writer looking at a record of its own group, not yet in the file. */
        const uint8_t *p = db->pending[pos - db->group_first];
        if (record_decode(p, load32(p + R_LENGTH), e, NULL) == RECORD_OK) return 0;
    }
    segment_t *s = store_segment_of(db, pos);
    if (s->unavailable) return store_archive_unavailable(s, pos, err);
    uint32_t off;
    int st = store_record_read(s, pos, e, &off); /* guarded: a SIGBUS becomes STORE_READ_FAULT */
    if (st == STORE_READ_OK) return 0;
    if (st == STORE_READ_GONE)
        return err_set(err, FACTUM_ENOTFOUND, "the event at position %llu was removed by a scavenge",
                       (unsigned long long)pos);
    /* Damage: named (position, offset, file) and remembered for /health and /metrics. */
    return store_damage(&db->integrity, s, pos, off, st == STORE_READ_FAULT ? FACTUM_EIO : FACTUM_ECORRUPT, err);
}

int factum_open(const char *dir, const factum_options_t *opts, factum_t **out, factum_error_t *err) {
    factum_options_t o = opts ? *opts : (factum_options_t){0};
    if (!dir || !*dir || !out) return err_set(err, FACTUM_EINVAL, "factum_open: a data folder is required");
    if (o.segment_bytes && (o.segment_bytes < (1u << 16) || o.segment_bytes > (1ull << 32)))
        return err_set(err, FACTUM_EINVAL, "segment_bytes must be between 64 KiB and 4 GiB");
    factum_t *db = calloc(1, sizeof *db);
    if (db) atomic_init(&db->leads, 1 << 1 | 1); /* standalone: it always leads, in term 1 */
    if (!db) return err_set(err, FACTUM_ENOMEM, "out of memory");
    db->lock_fd = -1;
    db->mark.fd = -1;
    db->vfs = o.vfs ? o.vfs : io_vfs_default();
    db->segment_bytes = o.segment_bytes ? o.segment_bytes : 256u << 20;
    db->max_data_bytes = o.max_data_bytes ? o.max_data_bytes : FACTUM_DEFAULT_MAX_DATA;
    uint32_t memtable = o.memtable_events ? o.memtable_events : 1u << 18;
    int rc;
    if (strlen(dir) > FACTUM_MAX_DIR) {
        free(db);
        return err_set(err, FACTUM_EINVAL, "data folder path is longer than %d bytes", FACTUM_MAX_DIR);
    }
    snprintf(db->dir, sizeof db->dir, "%s", dir);
    snprintf(db->logdir, sizeof db->logdir, "%s/log", dir);
    snprintf(db->idxdir, sizeof db->idxdir, "%s/index", dir);
    pthread_mutex_init(&db->qmu, NULL);
    clock_mono_cond_init(&db->qcond); /* the writer's idle wait is measured on the monotonic clock */
    pthread_mutex_init(&db->wmu, NULL);
    clock_mono_cond_init(&db->wcond); /* factum_wait's timeout is a duration: CLOCK_MONOTONIC */
    streams_init(&db->cache, o.stream_cache ? o.stream_cache : 1u << 21);
    meta_init(&db->meta);
    pthread_mutex_init(&db->scav_mu, NULL);
    pthread_mutex_init(&db->claim_mu, NULL);
    pthread_cond_init(&db->claim_cond, NULL);
    db->claim[CLAIM_BACKUP] = db->claim[CLAIM_SCAVENGE] = db->claim[CLAIM_ARCHIVE] = CLAIM_NONE;
    db->segs = mmap(NULL, STORE_MAX_SEGMENTS * sizeof *db->segs, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (db->segs == MAP_FAILED) {
        db->segs = NULL;
        rc = err_set(err, FACTUM_ENOMEM, "out of memory");
        goto fail;
    }
    if ((rc = store_archive_init(db, o.archive_dir, o.archive_after_s, err))) goto fail;
    if ((rc = make_folder(dir, err)) || (rc = make_folder(db->logdir, err)) ||
        (rc = store_lock_folder(db->dir, false, &db->lock_fd, err)) ||
        (rc = folder_open(db->dir, &db->format_found, err)) || (rc = recover_log(db, err)))
        goto fail;
    if ((rc = mark_open(db->logdir, &db->mark, err))) goto fail;
    atomic_store(&db->durable, db->next_pos);
    for (size_t i = 0; i < atomic_load(&db->nsegs); i++)
        atomic_fetch_add(&db->st_log_bytes, db->segs[i]->end - SEGMENT_HEADER);
    if ((rc = index_open(db->idxdir, memtable, &db->index, err))) goto fail;
    if (index_covered(db->index) > db->next_pos) {
        /* An index ahead of the log (the log lost its tail to corruption repair): rebuild. */
        index_close(db->index, 0);
        char manifest[PATH_MAX + 16];
        snprintf(manifest, sizeof manifest, "%s/MANIFEST", db->idxdir);
        unlink(manifest);
        if ((rc = index_open(db->idxdir, memtable, &db->index, err))) goto fail;
    }
    for (uint64_t p = index_covered(db->index); p < db->next_pos; p++) {
        factum_event_t e;
        if ((rc = store_event_at(db, p, &e, err)) == FACTUM_ENOTFOUND) continue; /* scavenged */
        if (rc) goto fail;
        index_maybe_rotate(db->index, p);
        bool first = e.revision > 0 && !stream_in_log_before(db, &e); /* its first events scavenged */
        index_write_lock(db->index);
        rc = store_index_event(db, &e);
        if (!rc && first) rc = index_add_name(db->index, e.stream, e.position);
        index_write_unlock(db->index);
        if (rc) {
            err_set(err, rc, "out of memory rebuilding the index");
            goto fail;
        }
    }
    if ((rc = store_meta_load(db, err))) goto fail;
    if ((rc = store_zero_start(db)) || (rc = store_writer_start(db)) || (rc = store_archive_start(db))) {
        err_set(err, rc, "cannot start the writer, zeroer and archiver threads");
        goto fail;
    }
    *out = db;
    return 0;
fail:
    if (db->index) index_close(db->index, 0);
    db->index = NULL;
    factum_close(db);
    return rc;
}

void factum_close(factum_t *db) {
    if (!db) return;
    /* A scavenge in another thread stops after its current segment; wait for it. */
    factum_scavenge_cancel(db);
    while (atomic_load(&db->scavenging))
        usleep(1000);
    store_archive_stop(db); /* a pass going on stops after its current segment */
    if (db->index) {
        store_writer_stop(db);
        index_close(db->index, atomic_load(&db->durable));
    }
    store_zero_stop(db);
    mark_close(&db->mark);
    size_t n = db->segs ? atomic_load(&db->nsegs) : 0;
    for (size_t i = 0; i < n; i++)
        segment_close(db->segs[i]);
    for (size_t i = 0; i < db->nretired; i++)
        segment_close(db->retired[i]);
    free(db->retired);
    if (db->segs) store_archive_free(db);
    pthread_mutex_destroy(&db->scav_mu);
    pthread_mutex_destroy(&db->claim_mu);
    pthread_cond_destroy(&db->claim_cond);
    if (db->segs) munmap(db->segs, STORE_MAX_SEGMENTS * sizeof *db->segs);
    streams_free(&db->cache);
    meta_free(&db->meta);
    free(db->pending);
    free(db->hook_keys);
    if (db->check_free) db->check_free(db->check_ctx);
    if (db->lock_fd >= 0) close(db->lock_fd); /* releases the flock */
    pthread_mutex_destroy(&db->qmu);
    pthread_cond_destroy(&db->qcond);
    pthread_mutex_destroy(&db->wmu);
    pthread_cond_destroy(&db->wcond);
    free(db);
}

int factum_format_found(factum_t *db) { return db->format_found; }

uint64_t factum_head_position(factum_t *db) { return atomic_load_explicit(&db->durable, memory_order_acquire); }

void factum_settle(factum_t *db) {
    index_quiesce(db->index);
    store_zero_settle(db);
}

uint64_t factum_wait(factum_t *db, uint64_t position, int timeout_ms) {
    uint64_t head = factum_head_position(db);
    if (head > position || timeout_ms == 0) return head;
    struct timespec deadline = clock_mono_after(timeout_ms > 0 ? (int64_t)timeout_ms * 1000 : 0);
    pthread_mutex_lock(&db->wmu);
    while ((head = factum_head_position(db)) <= position) {
        if (timeout_ms < 0)
            pthread_cond_wait(&db->wcond, &db->wmu);
        else if (pthread_cond_timedwait(&db->wcond, &db->wmu, &deadline))
            break;
    }
    pthread_mutex_unlock(&db->wmu);
    return factum_head_position(db);
}
