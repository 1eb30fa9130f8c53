/*
 * integrity.c — what the store does when a read meets damage (see integrity.h).
 *
 * Every read of a record goes through store_record_read: it looks the position up in the
 * segment's position map and decodes the record, both from memory mappings, with a per-thread
 * guard armed. A page the kernel cannot deliver (a media error, or a segment file shortened
 * under us) raises SIGBUS; the handler jumps back to the guard and the read returns
 * STORE_READ_FAULT instead of the process dying. A SIGBUS with no guard armed goes on to the
 * handler that was there before, or kills the process as it always did.
 *
 * store_event_at turns a bad record or a fault into FACTUM_ECORRUPT / FACTUM_EIO with a message
 * naming the position, the offset and the file (factum_error_position reads the position back),
 * and store_damage remembers the position: how many distinct ones, the first
 * FACTUM_INTEGRITY_KEEP in detail and the latest. /health and /metrics show it.
 *
 * The guard covers decoding only: an event handed out borrows the mapping, and a caller that
 * touches its bytes later is not guarded (the page was read moments before, so the kernel has
 * it in memory unless it was evicted in between). Index runs and the scans at open are not
 * guarded either.
 */
#include "store.h"

#include "integrity.h"
#include "record.h"

#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

/* ---- the SIGBUS guard ---- */

static _Thread_local sigjmp_buf *guard; /* armed while this thread reads a mapping */
static struct sigaction prev_bus;       /* what SIGBUS did before the guard was installed */
static pthread_once_t guard_once = PTHREAD_ONCE_INIT;

static void on_sigbus(int sig, siginfo_t *si, void *uc) {
    sigjmp_buf *j = guard;
    if (j && si->si_code > 0) { /* a fault of this thread's guarded read (not a signal someone sent) */
        guard = NULL;
        siglongjmp(*j, 1);
    }
    if (prev_bus.sa_flags & SA_SIGINFO) {
        prev_bus.sa_sigaction(sig, si, uc);
        return;
    }
    if (prev_bus.sa_handler != SIG_DFL && prev_bus.sa_handler != SIG_IGN) {
        prev_bus.sa_handler(sig);
        return;
    }
    if (prev_bus.sa_handler == SIG_IGN && si->si_code <= 0) return;
    /* As without the guard: the default action. A fault happens again when this returns and
       kills the process; a signal sent to it is raised again. */
    struct sigaction dfl = {.sa_handler = SIG_DFL};
    sigemptyset(&dfl.sa_mask);
    sigaction(SIGBUS, &dfl, NULL);
    if (si->si_code <= 0) raise(SIGBUS);
}

static void guard_install(void) {
    struct sigaction sa = {.sa_sigaction = on_sigbus};
    /* SA_NODEFER: the handler leaves by siglongjmp without restoring the signal mask (that would
       cost a system call per read), so SIGBUS must not be blocked while it runs. */
    sa.sa_flags = SA_SIGINFO | SA_NODEFER | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGBUS, &sa, &prev_bus);
}

int store_record_read(const segment_t *s, uint64_t pos, factum_event_t *e, uint32_t *off) {
    pthread_once(&guard_once, guard_install);
    sigjmp_buf jb, *outer = guard;
    volatile uint32_t at = 0;
    if (sigsetjmp(jb, 0)) {
        guard = outer;
        *off = at;
        return STORE_READ_FAULT;
    }
    guard = &jb;
    at = segment_offset(s, pos);
    int st = STORE_READ_GONE;
    uint64_t limit = segment_limit(s); /* the file may be shorter than its capacity (zero.c) */
    if (at)
        st = at < limit && record_decode(s->map + at, limit - at, e, NULL) == RECORD_OK && e->position == pos
                 ? STORE_READ_OK
                 : STORE_READ_BAD;
    guard = outer;
    *off = at;
    return st;
}

/* ---- remembering damage ---- */

static void integrity_lock(store_integrity *in) {
    for (int z = 0; !atomic_compare_exchange_weak(&in->lock, &z, 1); z = 0)
        sched_yield();
}
static void integrity_unlock(store_integrity *in) { atomic_store(&in->lock, 0); }

/* Adds pos to the sorted set; false if it was there. */
static bool count_position(store_integrity *in, uint64_t pos) {
    size_t lo = 0, hi = (size_t)in->count;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (in->seen[mid] == pos) return false;
        if (in->seen[mid] < pos)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (in->count == FACTUM_INTEGRITY_COUNT) {
        in->more = true; /* cannot tell whether it is new: it is counted as "more" */
        return true;
    }
    memmove(&in->seen[lo + 1], &in->seen[lo], ((size_t)in->count - lo) * sizeof in->seen[0]);
    in->seen[lo] = pos;
    in->count++;
    return true;
}

int store_damage(store_integrity *in, const segment_t *s, uint64_t pos, uint64_t off, int code, factum_error_t *err) {
    const char *what = code == FACTUM_EIO ? "the medium failed a read (SIGBUS)" : "checksum failure";
    err_set(err, code, "%s at position %llu, offset %llu of %s", what, (unsigned long long)pos, (unsigned long long)off,
            s->path);
    const char *base = strrchr(s->path, '/');
    factum_damage_t d = {.position = pos, .offset = off, .code = code, .seen_us = clock_realtime_us()};
    snprintf(d.file, sizeof d.file, "log/%s", base ? base + 1 : s->path);
    snprintf(d.message, sizeof d.message, "%s",
             code == FACTUM_EIO ? "the medium failed a read (SIGBUS)" : "the record fails its checksum");
    integrity_lock(in);
    if (count_position(in, pos)) {
        if (in->nkept < FACTUM_INTEGRITY_KEEP) in->kept[in->nkept++] = d;
        in->last = d;
    }
    integrity_unlock(in);
    return code;
}

void factum_integrity(factum_t *db, factum_integrity_t *out) {
    store_integrity *in = &db->integrity;
    integrity_lock(in);
    out->damaged_events = in->count;
    out->more = in->more;
    out->n = in->nkept;
    memcpy(out->damage, in->kept, in->nkept * sizeof in->kept[0]);
    out->last = in->last;
    integrity_unlock(in);
}

int factum_error_position(const factum_error_t *err, uint64_t *position) {
    if (!err || (err->code != FACTUM_ECORRUPT && err->code != FACTUM_EIO)) return FACTUM_ENOTFOUND;
    const char *p = strstr(err->message, " at position ");
    if (!p) return FACTUM_ENOTFOUND;
    p += 13;
    char *end;
    unsigned long long v = strtoull(p, &end, 10);
    if (end == p || *end != ',') return FACTUM_ENOTFOUND;
    *position = v;
    return 0;
}
