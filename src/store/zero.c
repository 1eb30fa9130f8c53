/*
 * zero.c — the zeroer thread: keeps the active segment zero-filled ahead of the writer, and
 * prepares the next segment before the writer needs it.
 *
 * Why: a group commit into space that was only fallocate'd needs a journal commit for the
 * unwritten→written extent conversion, so durability would hang on a metadata commit per page.
 * Into zero-filled, synced space, pwrite + fdatasync is a pure data flush (PostgreSQL's
 * wal_init_zero, TigerBeetle's preallocation). Zeroing here, on its own thread, keeps it off the
 * append path; the writer waits only when it catches up (store_zero_wait), which a warm store
 * never does.
 *
 * How much: a new store's first segment starts with 1 MiB of zeros and is grown in its own
 * file, to about twice what it holds (at least ZERO_MIN, at most ZERO_MAX beyond its end), so an
 * empty store stays small. Once the active segment is half full, the next segment is made whole
 * as NNNNNNNN.seg.tmp, zero-filled to its full capacity; at the roll the writer only writes its
 * header and renames it (segment_install). From the second segment on, then, nothing is ever
 * zero-filled inside the file the writer syncs: an fdatasync covers every dirty or in-flight page
 * of its file, so zeros written there would make the appends wait for them (measured: p99 at 16
 * writers x 100 doubled). A crash leaves at most a .tmp file, which open deletes.
 *
 * Ownership: the writer sets the active segment (store_zero_use) and publishes how far it has
 * written (`end`); the zeroer grows the active segment's file and its `filled`, under a read pin
 * so that a scavenge cannot free the segment under it. ENOSPC is handed to a waiting writer,
 * which fails that append only; the zeroer then waits to be asked again.
 */
#include "store.h"

#include <errno.h>
#include <stdio.h>
#include <unistd.h>

#define ZERO_MIN STORE_ZERO_MIN
#define ZERO_MAX (64ull << 20)
#define ZERO_ROUND (1ull << 20)

/* How far past `end` segment s should be zero-filled. */
static uint64_t zero_target(const segment_t *s, uint64_t end) {
    uint64_t ahead = MIN(MAX(end - SEGMENT_HEADER, ZERO_MIN), ZERO_MAX);
    uint64_t t = (end + ahead + ZERO_ROUND - 1) / ZERO_ROUND * ZERO_ROUND;
    return MIN(t, s->size);
}

/* The active segment s, written up to end, is less than half its target ahead of the writer. */
static bool grow_due(const segment_t *s, uint64_t end) {
    uint64_t filled = atomic_load(&s->filled);
    return filled < s->size && filled < end + (zero_target(s, end) - end) / 2;
}

/* s is half full and no next segment is prepared (nor being made by the writer). */
static bool next_due(zeroer *z, const segment_t *s, uint64_t end) {
    return !atomic_load(&z->has_next) && end - SEGMENT_HEADER >= (s->size - SEGMENT_HEADER) / 2;
}

/* What to do next, under z->mu: 1 grow the active segment, 2 prepare the next one, 0 nothing. */
static int zero_work(zeroer *z) {
    segment_t *s = z->seg;
    if (!s || z->stop) return 0;
    uint64_t end = atomic_load(&z->end);
    if (z->want > atomic_load(&s->filled)) return 1;
    if (z->held) return 0;
    if (grow_due(s, end)) return 1;
    return next_due(z, s, end) ? 2 : 0;
}

static void *zero_main(void *arg) {
    factum_t *db = arg;
    zeroer *z = &db->zero;
    pthread_mutex_lock(&z->mu);
    for (;;) {
        int what;
        while (!(what = zero_work(z)) && !z->stop)
            pthread_cond_wait(&z->cond, &z->mu);
        if (z->stop) break;
        /* Growing a segment pins it, so that a scavenge cannot free it meanwhile; preparing the
           next one touches no segment. */
        unsigned pin = what == 1 ? store_pin(db) : 0;
        segment_t *s = z->seg;
        uint64_t filled = atomic_load(&s->filled), end = atomic_load(&z->end);
        uint64_t to = MIN(MAX(zero_target(s, end), z->want), s->size);
        uint32_t next_no = s->no + 1;
        z->busy = what;
        pthread_mutex_unlock(&z->mu);
        int e = 0, fd = -1;
        factum_error_t err;
        char msg[sizeof z->msg];
        if (what == 1) {
            /* s is used only while pinned: after a roll and a scavenge it may be freed. */
            if (to > filled) e = db->vfs->zero_fill(db->vfs, s->fd, filled, to - filled);
            if (e)
                snprintf(msg, sizeof msg, "cannot zero-fill %s: %s", s->path, strerror(-e));
            else if (to > filled)
                atomic_store_explicit(&s->filled, to, memory_order_release);
            store_unpin(db, pin);
        } else {
            e = segment_prepare(db->logdir, next_no, db->segment_bytes, db->vfs, &fd, &err) ? -ENOSPC : 0;
        }
        pthread_mutex_lock(&z->mu);
        z->busy = 0;
        if (e) {
            /* Out of space (or I/O): tell a waiting writer, then wait to be asked again. */
            z->err = e;
            z->held = true;
            z->want = 0;
            snprintf(z->msg, sizeof z->msg, "%s", what == 2 ? err.message : msg);
        } else if (what == 2) {
            z->next_fd = fd, z->next_no = next_no, z->next_fill = db->segment_bytes;
            atomic_store(&z->has_next, true);
        }
        pthread_cond_broadcast(&z->cond);
    }
    pthread_mutex_unlock(&z->mu);
    return NULL;
}

int store_zero_start(factum_t *db) {
    zeroer *z = &db->zero;
    pthread_mutex_init(&z->mu, NULL);
    pthread_cond_init(&z->cond, NULL);
    z->next_fd = -1;
    z->seg = db->segs[atomic_load(&db->nsegs) - 1];
    atomic_store(&z->end, z->seg->end);
    if (pthread_create(&z->thread, NULL, zero_main, db)) return FACTUM_ENOMEM;
    z->started = true;
    return 0;
}

void store_zero_stop(factum_t *db) {
    zeroer *z = &db->zero;
    if (!z->started) return;
    pthread_mutex_lock(&z->mu);
    z->stop = true;
    pthread_cond_broadcast(&z->cond);
    pthread_mutex_unlock(&z->mu);
    pthread_join(z->thread, NULL);
    if (z->next_fd >= 0) {
        /* A prepared segment that was never used: leave no file behind. */
        char tmp[PATH_MAX + 32];
        snprintf(tmp, sizeof tmp, "%s/%08x.seg.tmp", db->logdir, z->next_no);
        close(z->next_fd);
        unlink(tmp);
    }
    pthread_mutex_destroy(&z->mu);
    pthread_cond_destroy(&z->cond);
    z->started = false;
}

void store_zero_note(factum_t *db, uint64_t end) {
    zeroer *z = &db->zero;
    atomic_store(&z->end, end);
    segment_t *s = z->seg;                         /* only the writer changes it */
    if (grow_due(s, end) || next_due(z, s, end)) { /* zero_work decides, under the lock */
        pthread_mutex_lock(&z->mu);
        pthread_cond_broadcast(&z->cond); /* the zeroer, not only a factum_settle waiting there */
        pthread_mutex_unlock(&z->mu);
    }
}

void store_zero_settle(factum_t *db) {
    zeroer *z = &db->zero;
    if (!z->started) return;
    pthread_mutex_lock(&z->mu);
    while ((z->busy || zero_work(z)) && !z->stop) /* it broadcasts after each piece of work */
        pthread_cond_wait(&z->cond, &z->mu);
    pthread_mutex_unlock(&z->mu);
}

int store_zero_wait(factum_t *db, segment_t *s, uint64_t upto, char *msg, size_t cap) {
    if (atomic_load_explicit(&s->filled, memory_order_acquire) >= upto) return 0;
    zeroer *z = &db->zero;
    int rc = 0;
    pthread_mutex_lock(&z->mu);
    z->want = MAX(z->want, upto);
    z->held = false, z->err = 0;
    pthread_cond_broadcast(&z->cond);
    while (atomic_load(&s->filled) < upto && !z->err)
        pthread_cond_wait(&z->cond, &z->mu);
    if (atomic_load(&s->filled) < upto) {
        rc = z->err == -ENOSPC ? FACTUM_ENOSPC : FACTUM_EIO;
        snprintf(msg, cap, "%s", z->msg);
        z->err = 0;
    }
    pthread_mutex_unlock(&z->mu);
    return rc;
}

int store_zero_take_next(factum_t *db, uint32_t no, int *fd, uint64_t *fill) {
    zeroer *z = &db->zero;
    pthread_mutex_lock(&z->mu);
    /* A preparation in flight makes the very file the writer would make: wait for it. */
    while (z->busy == 2)
        pthread_cond_wait(&z->cond, &z->mu);
    int got = -1;
    if (z->next_fd >= 0 && z->next_no == no) {
        *fd = z->next_fd, *fill = MIN(z->next_fill, db->segment_bytes);
        got = 0;
    } else if (z->next_fd >= 0) {
        close(z->next_fd);
    }
    z->next_fd = -1;
    /* No preparing now: the writer is about to make segment `no` itself if it got none, under
       the very name the zeroer would use. store_zero_use allows it again, for the next one. */
    atomic_store(&z->has_next, true);
    pthread_mutex_unlock(&z->mu);
    return got;
}

void store_zero_use(factum_t *db, segment_t *s) {
    zeroer *z = &db->zero;
    pthread_mutex_lock(&z->mu);
    z->seg = s;
    z->want = 0, z->held = false, z->err = 0;
    atomic_store(&z->has_next, false);
    atomic_store(&z->end, s->end);
    pthread_cond_broadcast(&z->cond);
    pthread_mutex_unlock(&z->mu);
}
