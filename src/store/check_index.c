/*
 * check_index.c — the index part of factum_check (check.h): every entry of every run against
 * the event it points to (the right key, reachable through its bloom block and fence, in
 * order), every stream name against its first event, then every event below what the runs
 * cover against the entries it should have (explicit tags are checked for matching their event,
 * not for being complete).
 */
#include "check.h"
#include "tags.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- the index ---- */

enum { IX_MISMATCH, IX_UNREACHABLE, IX_MISSING, IX_ORDER };

static const char *key_kind(uint64_t key) {
    switch (key >> 62) {
    case 1: return "stream";
    case 2: return "event id";
    case 3: return "correlation";
    default: return "tag";
    }
}

/* One derived finding about the index, listed while there are few of its kind. */
__attribute__((format(printf, 6, 7))) static void index_problem(checker *c, int kind, const char *file, uint64_t offset,
                                                                uint64_t position, const char *fmt, ...) {
    c->index_bad = true;
    if (c->idx_problems[kind]++ >= MAX_INDEX_FINDINGS) return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    check_note(c, FACTUM_CHECK_DERIVED, file, offset, position,
               "%s: derived, --repair (or removing index/) rebuilds it", msg);
}

static int index_tag_entry(checker *c, const char *file, uint64_t at, uint64_t i, uint64_t key, idx_hit h,
                           const factum_event_t *e);

static int index_entry(void *ctx, const index_run_info_t *run, uint64_t i, uint64_t key, idx_hit h, bool found) {
    checker *c = ctx;
    char file[40];
    snprintf(file, sizeof file, "index/run-%08x.idx", run->id);
    uint64_t at = 64 + i * 24;
    c->sum.index_entries++;
    if (i == 0) c->have_last = false;
    if (c->have_last && (key < c->last_key || (key == c->last_key && (h.seq < c->last_seq ||
                                                                      (h.seq == c->last_seq && h.pos <= c->last_pos)))))
        index_problem(c, IX_ORDER, file, at, h.pos, "entry %llu is out of order", (unsigned long long)i);
    c->have_last = true, c->last_key = key, c->last_seq = h.seq, c->last_pos = h.pos;
    if (!found)
        index_problem(c, IX_UNREACHABLE, file, at, h.pos,
                      "entry %llu (%s key %016llx) cannot be found by a lookup: the bloom filter or fences disagree",
                      (unsigned long long)i, key_kind(key), (unsigned long long)key);
    if (h.pos < run->pos_lo || h.pos >= run->pos_hi) {
        index_problem(c, IX_MISMATCH, file, at, h.pos,
                      "entry %llu points to position %llu, outside the run's %llu to %llu", (unsigned long long)i,
                      (unsigned long long)h.pos, (unsigned long long)run->pos_lo, (unsigned long long)run->pos_hi);
        return 0;
    }
    if (h.pos >= c->head) return 0; /* an index ahead of the log: one finding says so */
    factum_event_t e;
    if (check_event_at(c, h.pos, &e) != EV_OK)
        return 0; /* removed by a scavenge (readers skip it), or damage reported */
    int k = (int)(key >> 62) - 1;
    if (k < 0) return index_tag_entry(c, file, at, i, key, h, &e);
    bool ok = (k == 0 && key == index_key_stream(e.stream) && h.seq == e.revision) ||
              (k == 1 && key == index_key_id(e.stream, e.id) && h.seq == h.pos) ||
              (k == 2 && e.correlationid.len && key == index_key_corr(e.correlationid) && h.seq == h.pos);
    if (!ok) {
        index_problem(c, IX_MISMATCH, file, at, h.pos,
                      "entry %llu (%s key %016llx, %llu) does not match the event at position %llu (stream %.*s, "
                      "revision %llu)",
                      (unsigned long long)i, key_kind(key), (unsigned long long)key, (unsigned long long)h.seq,
                      (unsigned long long)h.pos, (int)MIN(e.stream.len, 80), e.stream.ptr,
                      (unsigned long long)e.revision);
        return 0;
    }
    uint8_t *bits = c->seen[k];
    if (bits[h.pos / 8] & (1u << (h.pos % 8)))
        index_problem(c, IX_MISMATCH, file, at, h.pos, "entry %llu repeats the %s entry of position %llu",
                      (unsigned long long)i, key_kind(key), (unsigned long long)h.pos);
    bits[h.pos / 8] |= (uint8_t)(1u << (h.pos % 8));
    return 0;
}

/* A tag entry: one of the event's tags, its implicit stream: and type: ones among them. */
static int index_tag_entry(checker *c, const char *file, uint64_t at, uint64_t i, uint64_t key, idx_hit h,
                           const factum_event_t *e) {
    if (h.seq != h.pos || !tags_key_of(e, key)) {
        index_problem(c, IX_MISMATCH, file, at, h.pos,
                      "entry %llu (tag key %016llx, %llu) is none of the tags of the event at position %llu (stream "
                      "%.*s, type %.*s)",
                      (unsigned long long)i, (unsigned long long)key, (unsigned long long)h.seq,
                      (unsigned long long)h.pos, (int)MIN(e->stream.len, 80), e->stream.ptr, (int)MIN(e->type.len, 80),
                      e->type.ptr);
        return 0;
    }
    int k = key == tags_key_implicit(e, 0) ? 4 : key == tags_key_implicit(e, 1) ? 5 : -1;
    if (k >= 0) c->seen[k][h.pos / 8] |= (uint8_t)(1u << (h.pos % 8));
    return 0;
}

/* A stream name of a run: in order, inside the run, naming the stream of the event it points to. */
static int index_name_entry(void *ctx, const index_run_info_t *run, uint64_t i, factum_str_t name, uint64_t pos) {
    checker *c = ctx;
    char file[40];
    snprintf(file, sizeof file, "index/run-%08x.idx", run->id);
    factum_str_t last = {c->last_name.ptr, c->last_name.len};
    if (i > 0 && name_cmp(last, name) >= 0)
        index_problem(c, IX_ORDER, file, FACTUM_END, pos, "stream name %llu (%.*s) is out of order",
                      (unsigned long long)i, (int)MIN(name.len, 80), name.ptr);
    c->last_name.len = 0;
    if (buf_append(&c->last_name, name.ptr, name.len)) c->oom = true;
    if (pos < run->pos_lo || pos >= run->pos_hi) {
        index_problem(c, IX_MISMATCH, file, FACTUM_END, pos,
                      "stream name %.*s points to position %llu, outside the run's %llu to %llu",
                      (int)MIN(name.len, 80), name.ptr, (unsigned long long)pos, (unsigned long long)run->pos_lo,
                      (unsigned long long)run->pos_hi);
        return 0;
    }
    if (pos >= c->head) return 0;
    factum_event_t e;
    if (check_event_at(c, pos, &e) != EV_OK) return 0;
    if (!str_eq(e.stream, name)) {
        index_problem(c, IX_MISMATCH, file, FACTUM_END, pos,
                      "stream name %.*s points to an event of stream %.*s at position %llu", (int)MIN(name.len, 80),
                      name.ptr, (int)MIN(e.stream.len, 80), e.stream.ptr, (unsigned long long)pos);
        return 0;
    }
    if (c->seen[3][pos / 8] & (1u << (pos % 8)))
        index_problem(c, IX_MISMATCH, file, FACTUM_END, pos, "stream name %.*s is in two runs", (int)MIN(name.len, 80),
                      name.ptr);
    c->seen[3][pos / 8] |= (uint8_t)(1u << (pos % 8));
    return 0;
}

/* Run files in index/ (to tell a lost MANIFEST from an index that was never written). */
static size_t count_runs(const char *idxdir) {
    DIR *d = opendir(idxdir);
    if (!d) return 0;
    size_t n = 0;
    struct dirent *de;
    unsigned id;
    while ((de = readdir(d)))
        if (sscanf(de->d_name, "run-%x.idx", &id) == 1) n++;
    closedir(d);
    return n;
}

int check_index(checker *c, factum_error_t *err) {
    for (int k = 0; k < 6; k++)
        if (!(c->seen[k] = calloc(c->head / 8 + 1, 1)))
            return err_set(err, FACTUM_ENOMEM, "out of memory checking the index");
    uint64_t covered = 0;
    factum_error_t ierr = {0};
    int rc = index_walk_runs(c->idxdir, &covered, index_entry, index_name_entry, c, &ierr);
    if (rc == FACTUM_ENOTFOUND) {
        size_t runs = count_runs(c->idxdir);
        if (runs) {
            c->index_bad = true;
            check_note(
                c, FACTUM_CHECK_DERIVED, "index/MANIFEST", FACTUM_END, FACTUM_END,
                "missing, while index/ holds %zu run files: derived, the next open deletes them and rebuilds the "
                "index from the log (--repair removes them now)",
                runs);
        } else if (c->head) {
            check_note(c, FACTUM_CHECK_NOTE, "index/MANIFEST", FACTUM_END, FACTUM_END,
                       "no index runs yet (as after a crash before the first was written): the next open indexes the "
                       "log from position 0");
        }
        return 0;
    }
    if (rc == FACTUM_ECORRUPT) {
        c->index_bad = true;
        check_note(
            c, FACTUM_CHECK_DERIVED, "index/MANIFEST", FACTUM_END, FACTUM_END,
            "%s: derived, the next open throws the index away and rebuilds it from the log (--repair removes it now)",
            ierr.message);
        return 0;
    }
    if (rc) return err_set(err, rc, "%s", ierr.message);
    c->sum.index_covered = covered;
    if (covered > c->head && (c->tail_damaged || c->mark.position > c->head)) {
        check_note(c, FACTUM_CHECK_NOTE, "index/MANIFEST", FACTUM_END, c->head,
                   "the index covers positions below %llu, past the damaged end of the log at %llu: once the log is "
                   "repaired, the next open rebuilds the index",
                   (unsigned long long)covered, (unsigned long long)c->head);
    } else if (covered > c->head) {
        c->index_bad = true;
        check_note(
            c, FACTUM_CHECK_DERIVED, "index/MANIFEST", FACTUM_END, c->head,
            "the index covers positions below %llu, but the log ends at %llu: derived, the next open rebuilds it",
            (unsigned long long)covered, (unsigned long long)c->head);
    } else if (covered < c->head) {
        check_note(c, FACTUM_CHECK_NOTE, "index/MANIFEST", FACTUM_END, covered,
                   "the index runs cover positions below %llu of %llu: the next open indexes the rest from the log",
                   (unsigned long long)covered, (unsigned long long)c->head);
    }
    /* Every intact event the runs cover must be in them: its stream and id, and its correlation. */
    for (uint64_t p = 0; p < MIN(covered, c->head); p++) {
        factum_event_t e;
        if (check_event_at(c, p, &e) != EV_OK) continue;
        bool need[6] = {true, true, e.correlationid.len > 0, e.revision == 0, true, true};
        static const char *const names[6] = {"stream",      "event id",    "correlation",
                                             "stream name", "stream: tag", "type: tag"};
        for (int k = 0; k < 6; k++)
            if (need[k] && !(c->seen[k][p / 8] & (1u << (p % 8))))
                index_problem(c, IX_MISSING, "index", FACTUM_END, p,
                              "the %s entry of the event at position %llu (stream %.*s) is in no run", names[k],
                              (unsigned long long)p, (int)MIN(e.stream.len, 80), e.stream.ptr);
    }
    static const char *what[] = {"entries do not match the log", "entries cannot be found by a lookup",
                                 "index entries are missing", "entries are out of order"};
    for (int k = 0; k < 4; k++)
        if (c->idx_problems[k] > MAX_INDEX_FINDINGS)
            check_note(c, FACTUM_CHECK_DERIVED, "index", FACTUM_END, FACTUM_END, "%llu more %s",
                       (unsigned long long)(c->idx_problems[k] - MAX_INDEX_FINDINGS), what[k]);
    return 0;
}
