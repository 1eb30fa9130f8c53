/*
 * scavenge.c — giving disk back: each sealed segment that holds events no read can return any
 * more is rewritten without them (docs/lifecycle.md, docs/format.md "Scavenge").
 *
 * Per segment: decide each record (kept unless its stream's metadata hides it now and it is not
 * the stream's last event, or it is a $metadata record a later one replaced); write the kept
 * records byte for byte to NNNNNNNN.seg.scav with the next generation and the segment's end
 * position in its header; sync; rename it over the segment (the commit point: before it the old
 * file is whole, after it the new one); write its position map, in which removed positions are
 * 0; swap it into the segment array; and free the old one once no reader pinned before the swap
 * still holds it. Positions never change, so the index stays right: a hit on a removed position
 * reads as absent. What is removed was already hidden from every read and stays hidden (the
 * rules only ever hide more), so a reader cannot tell whether a scavenge ran.
 */
#include "store.h"

#include "record.h"

#include <stdlib.h>
#include <unistd.h>

void factum_scavenge_cancel(factum_t *db) { atomic_store(&db->scavenge_cancel, true); }

void factum_scavenge_stats(factum_t *db, factum_scavenge_stats_t *out) {
    pthread_mutex_lock(&db->scav_mu);
    *out = db->scav_st;
    pthread_mutex_unlock(&db->scav_mu);
}

#define STAT(db, field, op)                                                                                            \
    do {                                                                                                               \
        pthread_mutex_lock(&(db)->scav_mu);                                                                            \
        (db)->scav_st.field op;                                                                                        \
        pthread_mutex_unlock(&(db)->scav_mu);                                                                          \
    } while (0)

typedef struct scav {
    factum_t *db;
    bool dry; /* count what would go; write nothing */
    int64_t now;
    int64_t meta_last; /* last revision of $metadata: that record stays like every stream's last */
    buf_t name;
} scav;

static bool keep_event(scav *sc, const factum_event_t *e) {
    uint64_t h1, h2;
    if (str_eq(e->stream, str_c(META_STREAM))) {
        meta_doc d;
        if ((int64_t)e->revision >= sc->meta_last || meta_doc_parse(e->data, &d, &sc->name)) return true;
        streams_hash(d.stream, &h1, &h2);
        pthread_rwlock_rdlock(&sc->db->meta.lock);
        meta_entry *m = meta_find(&sc->db->meta, h1, h2);
        bool latest = !m || m->pos <= e->position; /* a later record replaced this one otherwise */
        pthread_rwlock_unlock(&sc->db->meta.lock);
        return latest;
    }
    meta_rules r;
    streams_hash(e->stream, &h1, &h2);
    if (!meta_rules_get(&sc->db->meta, h1, h2, &r) || !meta_hides(&r, e->revision, e->time_us, sc->now)) return true;
    return (int64_t)e->revision >= r.last; /* the stream's last event carries its revision */
}

/* Frees a segment nobody can reach any more once the readers pinned before its swap are gone. */
void store_retire(factum_t *db, segment_t *old) {
    uint64_t e = atomic_fetch_add(&db->epoch, 1);
    for (int waited = 0; atomic_load(&db->pins[e & 1]); waited++) {
        if (waited == 10000) { /* a result held for 10 s: keep the mapping until close */
            segment_t **v = realloc(db->retired, (db->nretired + 1) * sizeof *v);
            if (v) {
                db->retired = v;
                db->retired[db->nretired++] = old;
            }
            return; /* without memory to remember it, leaking it is the safe choice */
        }
        usleep(1000);
    }
    segment_close(old);
}

static int scavenge_segment(scav *sc, size_t i, factum_error_t *err) {
    factum_t *db = sc->db;
    /* Claimed from the scan on: a backup copying it finishes first, and an archival pass does
       not move it meanwhile (none starts on it until the swap). */
    store_seg_claim(db, __atomic_load_n(&db->segs[i], __ATOMIC_ACQUIRE)->no, CLAIM_SCAVENGE);
    bool claimed = true;
    segment_t *s = __atomic_load_n(&db->segs[i], __ATOMIC_ACQUIRE); /* after any move */
    /* Archived segments stay as they are: compacting one would read and write the archive
       (docs/operations.md, "Archival"); what they hold stays hidden from reads all the same. */
    bool archived = s->archived;
    uint8_t *keep = archived ? NULL : malloc(s->count ? s->count : 1);
    uint32_t *pmap = archived ? NULL : malloc((s->count ? s->count : 1) * sizeof *pmap);
    uint64_t drop = 0, dropped_bytes = 0, scanned = 0;
    int rc = 0;
    if (archived) {
        STAT(db, segments_archived, ++);
        goto out;
    }
    if (!keep || !pmap) {
        rc = err_set(err, FACTUM_ENOMEM, "out of memory");
        goto out;
    }
    for (uint64_t k = 0; k < s->count; k++) {
        uint32_t off = s->pmap[k];
        keep[k] = off != 0;
        if (!off) continue;
        factum_event_t e;
        uint32_t len;
        if (off >= segment_limit(s) || record_decode(s->map + off, segment_limit(s) - off, &e, &len) != RECORD_OK ||
            e.position != s->first_pos + k) {
            rc = err_set(err, FACTUM_ECORRUPT, "segment %s: checksum failure at offset %u (position %llu)", s->path,
                         off, (unsigned long long)(s->first_pos + k));
            goto out;
        }
        scanned++;
        if (!keep_event(sc, &e)) keep[k] = 0, drop++, dropped_bytes += len;
        if ((k & 4095) == 4095 && atomic_load(&db->scavenge_cancel)) {
            rc = err_set(err, FACTUM_ECLOSED, "the scavenge was cancelled");
            goto out;
        }
    }
    STAT(db, events_scanned, += scanned);
    if (sc->dry || !drop) {
        pthread_mutex_lock(&db->scav_mu);
        db->scav_st.events_removed += drop;
        db->scav_st.bytes_reclaimable += dropped_bytes;
        pthread_mutex_unlock(&db->scav_mu);
        goto out;
    }
    uint64_t size;
    if ((rc = segment_write_compacted(s, db->logdir, keep, pmap, &size, err)) ||
        (rc = segment_install_compacted(db->logdir, s->no, err)))
        goto out;
    /* From here the disk holds the compacted segment; memory still maps the old file, which
       stays readable (and right) until the swap. */
    segment_t *ns;
    if ((rc = segment_open(db->logdir, s->no, &ns, err))) goto out;
    if (segment_alloc_pmap(ns)) {
        segment_close(ns);
        rc = err_set(err, FACTUM_ENOMEM, "out of memory for the position map of %s", s->path);
        goto out;
    }
    memcpy(ns->pmap, pmap, s->count * sizeof *pmap);
    ns->count = s->count, ns->end = size;
    if (segment_write_pmap(ns, db->logdir) == 0) segment_load_pmap(ns, db->logdir); /* else the in-memory one serves */
    __atomic_store_n(&db->segs[i], ns, __ATOMIC_SEQ_CST);
    store_seg_release(db, CLAIM_SCAVENGE);
    claimed = false;
    atomic_fetch_sub(&db->st_log_bytes, dropped_bytes);
    pthread_mutex_lock(&db->scav_mu);
    db->scav_st.segments_rewritten++;
    db->scav_st.events_removed += drop;
    db->scav_st.bytes_reclaimable += dropped_bytes;
    uint64_t before = segment_limit(s); /* the file's length: at most its capacity (zero.c) */
    db->scav_st.bytes_before += before, db->scav_st.bytes_after += size;
    db->scav_st.bytes_reclaimed_total += before > size ? before - size : 0;
    pthread_mutex_unlock(&db->scav_mu);
    store_retire(db, s);
out:
    if (claimed) store_seg_release(db, CLAIM_SCAVENGE);
    free(keep);
    free(pmap);
    return rc;
}

static int scavenge_run(factum_t *db, bool dry, factum_error_t *err) {
    bool idle = false;
    if (!atomic_compare_exchange_strong(&db->scavenging, &idle, true))
        return err_set(err, FACTUM_ECONFLICT, "a scavenge is already running");
    atomic_store(&db->scavenge_cancel, false);
    size_t nsegs = atomic_load_explicit(&db->nsegs, memory_order_acquire); /* all but the last are sealed */
    pthread_mutex_lock(&db->scav_mu);
    uint64_t runs = db->scav_st.runs, total = db->scav_st.bytes_reclaimed_total;
    db->scav_st = (factum_scavenge_stats_t){.running = 1,
                                            .runs = runs,
                                            .bytes_reclaimed_total = total,
                                            .segments_total = nsegs - 1,
                                            .started_us = clock_realtime_us(),
                                            .dry_run = dry};
    pthread_mutex_unlock(&db->scav_mu);
    scav sc = {
        .db = db, .dry = dry, .now = clock_realtime_us(), .meta_last = factum_stream_revision(db, str_c(META_STREAM))};
    int rc = 0;
    /* Nothing has metadata: nothing is hidden, so nothing can go. */
    bool any = atomic_load(&db->meta.count) != 0;
    for (size_t i = 0; any && i + 1 < nsegs && !rc; i++) {
        if (atomic_load(&db->scavenge_cancel))
            rc = err_set(err, FACTUM_ECLOSED, "the scavenge was cancelled");
        else if (!(rc = scavenge_segment(&sc, i, err)))
            STAT(db, segments_done, ++);
    }
    if (!any) STAT(db, segments_done, = nsegs - 1);
    buf_free(&sc.name);
    pthread_mutex_lock(&db->scav_mu);
    db->scav_st.running = 0;
    db->scav_st.runs++;
    db->scav_st.finished_us = clock_realtime_us();
    db->scav_st.last_error = rc;
    pthread_mutex_unlock(&db->scav_mu);
    atomic_store(&db->scavenging, false);
    return rc;
}

int factum_scavenge(factum_t *db, factum_error_t *err) { return scavenge_run(db, false, err); }
int factum_scavenge_dry_run(factum_t *db, factum_error_t *err) { return scavenge_run(db, true, err); }

size_t factum_scavenge_json(const factum_scavenge_stats_t *st, char *out, size_t cap) {
    buf_t bb = {0}, *b = &bb;
    char started[32] = "", finished[32] = "";
    if (st->started_us) time_format_rfc3339(st->started_us, started);
    if (st->finished_us) time_format_rfc3339(st->finished_us, finished);
    buf_printf(b,
               "{\"running\":%s,\"runs\":%llu,\"segments_total\":%llu,\"segments_done\":%llu,"
               "\"segments_rewritten\":%llu,\"events_scanned\":%llu,\"events_removed\":%llu,\"bytes_before\":%llu,"
               "\"bytes_after\":%llu,\"bytes_reclaimed\":%llu,\"bytes_reclaimed_total\":%llu,"
               "\"segments_archived\":%llu,\"dry_run\":%s,\"bytes_reclaimable\":%llu,",
               st->running ? "true" : "false", (unsigned long long)st->runs, (unsigned long long)st->segments_total,
               (unsigned long long)st->segments_done, (unsigned long long)st->segments_rewritten,
               (unsigned long long)st->events_scanned, (unsigned long long)st->events_removed,
               (unsigned long long)st->bytes_before, (unsigned long long)st->bytes_after,
               (unsigned long long)(st->bytes_before - st->bytes_after), (unsigned long long)st->bytes_reclaimed_total,
               (unsigned long long)st->segments_archived, st->dry_run ? "true" : "false",
               (unsigned long long)st->bytes_reclaimable);
    buf_printf(b, st->started_us ? "\"started\":\"%s\"," : "\"started\":null%.0s,", started);
    buf_printf(b, st->finished_us ? "\"finished\":\"%s\"," : "\"finished\":null%.0s,", finished);
    buf_printf(b, "\"error\":%s%s%s}", st->last_error ? "\"" : "",
               st->last_error ? factum_errname(st->last_error) : "null", st->last_error ? "\"" : "");
    return buf_give(&bb, out, cap);
}
