/*
 * check.c — factum_check: an offline check of a closed data folder, and its repairs
 * (include/factum.h; docs/format.md, "Checking a data folder").
 *
 * It never goes through factum_open: recovery changes files (it zeroes a torn tail), and a
 * checker must show the folder as it is. It takes the folder's lock, reads every file through
 * its own read-only descriptors and mappings of the files' real lengths, and decides what it
 * sees the way recovery would (a torn tail is cut only when the commit mark does not cover it),
 * so that the report says what the next open will do.
 *
 * One pass, in order: segment headers and numbering (list_segments, read_header), the records
 * of each segment and the chain of positions (walk_sealed, walk_tail), the commit mark, the
 * position maps (check_pmap), and the index (check_index.c: each entry against the event it
 * points to, then each event against the entries). Findings are collected and handed to the
 * caller only when the call is sure to succeed, so that a refused --truncate-at reports
 * nothing and changes nothing. Repairs (check_repair.c) rebuild what is derived and, only when asked,
 * cut the log at a batch boundary; then the pass runs again to show what is left.
 */
#include "check.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- findings ---- */

void check_note(checker *c, int kind, const char *file, uint64_t offset, uint64_t position, const char *fmt, ...) {
    if (kind == FACTUM_CHECK_DAMAGE)
        c->sum.damage++;
    else if (kind == FACTUM_CHECK_DERIVED)
        c->sum.derived++;
    else if (kind == FACTUM_CHECK_NOTE)
        c->sum.notes++;
    else
        c->sum.repairs++;
    if (c->nfound == MAX_FINDINGS) {
        c->dropped++;
        return;
    }
    if (c->nfound % 64 == 0) {
        finding *nf = realloc(c->found, (c->nfound + 64) * sizeof *nf);
        if (!nf) {
            c->oom = 1;
            return;
        }
        c->found = nf;
    }
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    finding *f = &c->found[c->nfound];
    f->file = strdup(file ? file : "");
    f->message = strdup(msg);
    if (!f->file || !f->message) {
        free(f->file);
        free(f->message);
        c->oom = 1;
        return;
    }
    f->f = (factum_check_finding_t){kind, c->pass, f->file, offset, position, f->message};
    c->nfound++;
}

static void deliver(checker *c, factum_check_cb cb, void *ctx) {
    for (size_t i = 0; i < c->nfound; i++) {
        if (cb) cb(ctx, &c->found[i].f);
        free(c->found[i].file);
        free(c->found[i].message);
    }
    if (c->dropped && cb) {
        char msg[96];
        snprintf(msg, sizeof msg, "%zu more findings are counted but not listed", c->dropped);
        factum_check_finding_t f = {FACTUM_CHECK_NOTE, c->pass, "", FACTUM_END, FACTUM_END, msg};
        cb(ctx, &f);
    }
    c->nfound = 0, c->dropped = 0;
}

static void checker_free(checker *c) {
    for (size_t i = 0; i < c->nsegs; i++) {
        cseg *s = &c->segs[i];
        if (s->map) munmap(s->map, s->len);
        if (s->fd >= 0) close(s->fd);
        free(s->offs);
        free(s->archived);
    }
    free(c->segs);
    c->segs = NULL, c->nsegs = 0;
    for (size_t i = 0; i < c->nfound; i++)
        free(c->found[i].file), free(c->found[i].message);
    free(c->found);
    c->found = NULL, c->nfound = 0;
    for (int k = 0; k < 6; k++)
        free(c->seen[k]), c->seen[k] = NULL;
    buf_free(&c->last_name);
}

/* ---- the folder ---- */

static int cmp_seg(const void *a, const void *b) {
    uint32_t x = ((const cseg *)a)->no, y = ((const cseg *)b)->no;
    return x < y ? -1 : x > y;
}

/* Where the marker log/NNNNNNNN.arch says segment `no` lives (docs/format.md, "Archived segments"). */
static int archived_at(checker *c, uint32_t no, char **path, factum_error_t *err) {
    archive_mark m;
    int rc = archive_mark_read(c->logdir, no, &m, err);
    if (rc) return rc;
    if (!(*path = malloc(PATH_MAX))) return err_set(err, FACTUM_ENOMEM, "out of memory listing segments");
    snprintf(*path, PATH_MAX, "%s/%08x.seg", m.folder, no);
    return 0;
}

/* Segment files in log/ and archived ones, sorted; notes leftovers that the next open deletes. */
static int list_segments(checker *c, factum_error_t *err) {
    DIR *d = opendir(c->logdir);
    if (!d) return err_set(err, FACTUM_EIO, "cannot read %s: %s", c->logdir, strerror(errno));
    size_t cap = 0;
    struct dirent *de;
    int rc = 0;
    while ((de = readdir(d)) && !rc) {
        unsigned no;
        char tail[16];
        if (strstr(de->d_name, ".tmp") || strstr(de->d_name, ".scav")) {
            char name[300];
            snprintf(name, sizeof name, "log/%s", de->d_name);
            check_note(
                c, FACTUM_CHECK_NOTE, name, FACTUM_END, FACTUM_END,
                "an unfinished file (a segment being prepared or scavenged, or a map being written); the next open "
                "deletes it");
            continue;
        }
        if (sscanf(de->d_name, "%8x.%15s", &no, tail) != 2 || strlen(de->d_name) != 9 + strlen(tail)) continue;
        char *archived = NULL;
        if (!strcmp(tail, ARCHIVE_MARK_EXT) && (rc = archived_at(c, no, &archived, err))) break;
        if (strcmp(tail, "seg") && !archived) continue;
        if (c->nsegs == cap) {
            cap = cap ? cap * 2 : 16;
            cseg *ns = realloc(c->segs, cap * sizeof *ns);
            if (!ns) {
                rc = err_set(err, FACTUM_ENOMEM, "out of memory listing segments");
                break;
            }
            c->segs = ns;
        }
        c->segs[c->nsegs++] = (cseg){.no = no, .fd = -1, .archived = archived};
    }
    closedir(d);
    if (rc) return rc;
    if (c->nsegs) qsort(c->segs, c->nsegs, sizeof *c->segs, cmp_seg);
    /* A segment both in log/ and archived: a move a crash stopped after its marker. */
    size_t k = 0;
    for (size_t i = 0; i < c->nsegs; i++) {
        if (k && c->segs[i].no == c->segs[k - 1].no) {
            cseg *keep = &c->segs[k - 1], *other = &c->segs[i];
            check_note(c, FACTUM_CHECK_NOTE, keep->archived ? keep->archived : other->archived, FACTUM_END, FACTUM_END,
                       "segment %08x is both in log/ and archived: a move to the archive a crash stopped; the next "
                       "open finishes it (or undoes it if the copy does not check out)",
                       keep->no);
            free(keep->archived), free(other->archived);
            keep->archived = NULL; /* the one in log/ is checked */
            continue;
        }
        c->segs[k++] = c->segs[i];
    }
    c->nsegs = k;
    return 0;
}

/* Opens and maps the segment, checks its header. Damage findings for what is wrong. */
static int read_header(checker *c, cseg *s, factum_error_t *err) {
    char path[PATH_MAX];
    snprintf(s->name, sizeof s->name, "%s/%08x.seg", s->archived ? "archive" : "log", s->no);
    snprintf(path, sizeof path, "%s/%08x.seg", c->logdir, s->no);
    if (s->archived) snprintf(path, sizeof path, "%s", s->archived);
    s->fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (s->fd < 0 || fstat(s->fd, &st)) return err_set(err, FACTUM_EIO, "cannot open %s: %s", path, strerror(errno));
    s->len = (uint64_t)st.st_size;
    c->sum.segments++;
    c->sum.bytes += s->len;
    if (s->len) {
        s->map = mmap(NULL, s->len, PROT_READ, MAP_SHARED, s->fd, 0);
        if (s->map == MAP_FAILED) {
            s->map = NULL;
            return err_set(err, FACTUM_EIO, "cannot map %s: %s", path, strerror(errno));
        }
    }
    s->damaged = true; /* until the header checks out */
    if (s->len < SEGMENT_HEADER) {
        check_note(c, FACTUM_CHECK_DAMAGE, s->name, 0, FACTUM_END,
                   "the file is %llu bytes, shorter than a segment header (%d)", (unsigned long long)s->len,
                   SEGMENT_HEADER);
        return 0;
    }
    const uint8_t *h = s->map;
    if (load32(h) != SEGMENT_MAGIC || load32(h + 60) != crc32c(h, 60)) {
        check_note(c, FACTUM_CHECK_DAMAGE, s->name, 0, FACTUM_END, "the segment header is damaged (magic or checksum)");
        return 0;
    }
    s->generation = load32(h + 12);
    s->cap = load64(h + 16);
    s->first_pos = load64(h + 24);
    s->end_pos = load64(h + 32);
    if (load32(h + 4) != SEGMENT_VERSION) {
        check_note(c, FACTUM_CHECK_DAMAGE, s->name, 4, FACTUM_END, "format version %u; this build reads %u",
                   load32(h + 4), SEGMENT_VERSION);
        return 0;
    }
    if (load32(h + 8) != s->no) {
        check_note(c, FACTUM_CHECK_DAMAGE, s->name, 8, FACTUM_END, "the header names segment %08x", load32(h + 8));
        return 0;
    }
    if (s->cap < SEGMENT_HEADER || s->cap > (1ull << 32) || s->len > s->cap) {
        check_note(c, FACTUM_CHECK_DAMAGE, s->name, 16, FACTUM_END,
                   "the file is %llu bytes, but the header gives the segment a capacity of %llu",
                   (unsigned long long)s->len, (unsigned long long)s->cap);
        return 0;
    }
    if (s->end_pos && (s->end_pos < s->first_pos || s->end_pos - s->first_pos > SEGMENT_MAX_POSITIONS)) {
        check_note(c, FACTUM_CHECK_DAMAGE, s->name, 32, FACTUM_END,
                   "the header says positions %llu to %llu: not a segment's", (unsigned long long)s->first_pos,
                   (unsigned long long)s->end_pos);
        return 0;
    }
    if (s->end_pos && s->len != s->cap) {
        check_note(c, FACTUM_CHECK_DAMAGE, s->name, 16, FACTUM_END,
                   "a compacted segment of %llu bytes (header), but the file is %llu bytes", (unsigned long long)s->cap,
                   (unsigned long long)s->len);
        return 0;
    }
    s->header_ok = true;
    s->damaged = false;
    return 0;
}

/* ---- records ---- */

static int offs_push(cseg *s, uint32_t off) {
    if (s->npos == s->offs_cap) {
        uint64_t ncap = s->offs_cap ? s->offs_cap * 2 : 1024;
        uint32_t *n = realloc(s->offs, ncap * sizeof *n);
        if (!n) return FACTUM_ENOMEM;
        s->offs = n, s->offs_cap = ncap;
    }
    s->offs[s->npos++] = off;
    return 0;
}

/* Why the bytes at p are not the record expected there (record_decode said so, or its position). */
static const char *record_problem(const uint8_t *p, uint64_t avail, char *buf, size_t cap) {
    if (avail < RECORD_HEADER) return "a record header cut off by the end of the file";
    uint32_t magic = load32(p + R_MAGIC), len = load32(p + R_LENGTH);
    if (magic != RECORD_MAGIC) {
        snprintf(buf, cap, "no record starts here (magic %08x)", magic);
        return buf;
    }
    if (len < RECORD_HEADER || len % RECORD_ALIGN || len > avail) {
        snprintf(buf, cap, "the record's length (%u) is not possible here", len);
        return buf;
    }
    uint32_t crc = crc32c_extend(crc32c(p, R_CRC), p + R_CRC + 4, len - R_CRC - 4);
    if (crc != load32(p + R_CRC)) return "the record fails its checksum";
    return "the record's flags, field lengths or padding are not valid";
}

/* The first offset >= from (8-aligned) where a record of a position in [lo, hi) decodes. */
static uint64_t resync(const cseg *s, uint64_t from, uint64_t lo, uint64_t hi, factum_event_t *e, uint32_t *len) {
    for (uint64_t off = (from + 7) & ~7ull; off + RECORD_HEADER <= s->len; off += 8) {
        if (load32(s->map + off) != RECORD_MAGIC) continue;
        if (record_decode(s->map + off, s->len - off, e, len) == RECORD_OK && e->position >= lo && e->position < hi)
            return off;
    }
    return 0;
}

/* Offset just past the last non-zero byte in [from, s->len), or `from` if there is none. */
static uint64_t data_end(const cseg *s, uint64_t from) {
    uint64_t end = s->len;
    while (end > from && (end - from) % 8) {
        if (s->map[end - 1]) return end;
        end--;
    }
    for (; end > from; end -= 8)
        if (load64(s->map + end - 8)) break;
    if (end == from) return from;
    while (!s->map[end - 1])
        end--;
    return end;
}

/*
 * A sealed segment (or a compacted one anywhere): every record, with rising positions (gap-free
 * unless compacted), then nothing but zeros. After a damaged record it looks for the next
 * intact one, so the report says which positions are lost and the rest is still checked.
 * next_first: the first position of the segment after it, if known (else FACTUM_END).
 */
static int walk_sealed(checker *c, cseg *s, uint64_t next_first) {
    bool compacted = s->end_pos != 0;
    uint64_t off = SEGMENT_HEADER, next = s->first_pos;
    uint64_t limit = compacted ? s->end_pos : s->first_pos + SEGMENT_MAX_POSITIONS;
    bool last_batch_end = true;
    char why[96];
    while (off < s->len) {
        factum_event_t e;
        uint32_t len;
        int st = record_decode(s->map + off, s->len - off, &e, &len);
        if (st == RECORD_EMPTY) break;
        bool placed = st == RECORD_OK && (compacted ? e.position >= next && e.position < limit : e.position == next);
        if (!placed) {
            const char *problem =
                st == RECORD_OK
                    ? (snprintf(why, sizeof why, "the record holds position %llu", (unsigned long long)e.position), why)
                    : record_problem(s->map + off, s->len - off, why, sizeof why);
            /* A lost record is at least RECORD_MIN bytes, so the next intact one is not further on
               in positions than the bytes in between allow. */
            uint64_t bad = off;
            uint64_t hi = compacted ? limit : MIN(limit, next + (s->len - off) / RECORD_MIN + 1);
            uint64_t at = resync(s, off + 8, next, hi, &e, &len);
            if (at && !compacted && e.position > next + (at - off) / RECORD_MIN) at = 0;
            s->damaged = true;
            if (at) {
                check_note(
                    c, FACTUM_CHECK_DAMAGE, s->name, bad, next,
                    "%s; the next intact record is at offset %llu (position %llu): %s %llu to %llu cannot be read",
                    problem, (unsigned long long)at, (unsigned long long)e.position,
                    compacted ? "positions between" : "positions", (unsigned long long)next,
                    (unsigned long long)e.position - 1);
                while (next < e.position)
                    if (offs_push(s, OFF_BAD))
                        return FACTUM_ENOMEM;
                    else
                        next++;
                off = at;
                continue; /* decode it again as an ordinary record */
            }
            /* Nothing intact after it: the positions up to the next segment's first are lost. */
            uint64_t upto = compacted ? limit : next_first;
            if (upto != FACTUM_END && upto > next && upto - next <= (s->len - off) / RECORD_MIN + 1) {
                check_note(c, FACTUM_CHECK_DAMAGE, s->name, bad, next,
                           "%s; no intact record follows in this segment: positions %llu to %llu cannot be read",
                           problem, (unsigned long long)next, (unsigned long long)upto - 1);
                while (next < upto)
                    if (offs_push(s, OFF_BAD))
                        return FACTUM_ENOMEM;
                    else
                        next++;
            } else {
                check_note(c, FACTUM_CHECK_DAMAGE, s->name, bad, next, "%s; no intact record follows in this segment",
                           problem);
            }
            s->end = off;
            s->data_end = data_end(s, off);
            return 0;
        }
        while (next < e.position) /* removed by a scavenge */
            if (offs_push(s, OFF_REMOVED))
                return FACTUM_ENOMEM;
            else
                next++, c->sum.removed++;
        if (offs_push(s, (uint32_t)off)) return FACTUM_ENOMEM;
        next++;
        c->sum.events++;
        last_batch_end = load32(s->map + off + R_FLAGS) & RECORD_BATCH_END;
        off += len;
    }
    s->end = off;
    if (compacted) {
        while (next < s->end_pos)
            if (offs_push(s, OFF_REMOVED))
                return FACTUM_ENOMEM;
            else
                next++, c->sum.removed++;
        if (off != s->len) {
            s->damaged = true;
            check_note(c, FACTUM_CHECK_DAMAGE, s->name, off, FACTUM_END,
                       "a compacted segment ends at its last record, but %llu bytes follow it",
                       (unsigned long long)(s->len - off));
        }
        s->data_end = s->len;
        return 0;
    }
    s->data_end = data_end(s, off);
    if (s->data_end > off) {
        s->damaged = true;
        check_note(
            c, FACTUM_CHECK_DAMAGE, s->name, off, FACTUM_END,
            "%llu bytes up to offset %llu after the last record are not zero (a sealed segment has only zeros there)",
            (unsigned long long)(s->data_end - off), (unsigned long long)s->data_end);
    }
    if (!last_batch_end && s->npos) {
        s->damaged = true;
        check_note(c, FACTUM_CHECK_DAMAGE, s->name, off, s->first_pos + s->npos,
                   "the sealed segment ends inside a batch (its last record does not end one)");
    }
    return 0;
}

/*
 * The last segment, as recovery sees it: records up to the last one that ends a batch are kept;
 * what follows is a torn tail (never acknowledged: the next open zeroes it) unless the commit
 * mark covers it or a record of a later commit group lies beyond it — then it is damage.
 */
static int walk_tail(checker *c, cseg *s) {
    uint64_t off = SEGMENT_HEADER, next = s->first_pos, kept_end = SEGMENT_HEADER, kept = 0;
    int st = RECORD_EMPTY;
    factum_event_t e;
    uint32_t len;
    while (off < s->len) {
        st = record_decode(s->map + off, s->len - off, &e, &len);
        if (st == RECORD_OK && e.position != next) st = RECORD_BAD; /* stale or misplaced */
        if (st != RECORD_OK) break;
        if (offs_push(s, (uint32_t)off)) return FACTUM_ENOMEM;
        next++;
        off += len;
        if (load32(s->map + off - len + R_FLAGS) & RECORD_BATCH_END) kept_end = off, kept = next - s->first_pos;
    }
    if (off >= s->len) st = RECORD_EMPTY;
    uint64_t stop_at = off;
    s->npos = kept; /* the records of an unfinished batch are not kept */
    s->end = kept_end;
    c->sum.events += kept;
    uint64_t head = s->first_pos + kept;
    s->data_end = data_end(s, kept_end);
    char why[96];
    if (s->data_end == kept_end) {
        if (c->mark.position > head) {
            s->damaged = true;
            c->mark_reported = true;
            check_note(
                c, FACTUM_CHECK_DAMAGE, s->name, kept_end, head,
                "acknowledged events at positions %llu to %llu are missing: the log ends here, and the commit mark "
                "says positions below %llu were acknowledged",
                (unsigned long long)head, (unsigned long long)c->mark.position - 1,
                (unsigned long long)c->mark.position);
        }
        return 0;
    }
    uint64_t report_at = stop_at;
    const char *problem;
    if (stop_at + RECORD_HEADER <= s->len && record_decode(s->map + stop_at, s->len - stop_at, &e, &len) == RECORD_OK) {
        snprintf(why, sizeof why, "the record holds position %llu where %llu belongs", (unsigned long long)e.position,
                 (unsigned long long)next);
        problem = why;
    } else if (st == RECORD_BAD) {
        problem = record_problem(s->map + stop_at, s->len - stop_at, why, sizeof why);
    } else if (stop_at > kept_end) {
        problem = "the batch that starts here has no end";
        report_at = kept_end, next = head;
    } else {
        problem = "zeros where the next record belongs, with data after them";
    }
    if (c->mark.position > head) {
        s->damaged = true;
        c->mark_reported = true;
        check_note(
            c, FACTUM_CHECK_DAMAGE, s->name, report_at, next,
            "%s, in events that were acknowledged: the commit mark says positions below %llu were, and the log keeps "
            "only those below %llu",
            problem, (unsigned long long)c->mark.position, (unsigned long long)head);
        return 0;
    }
    /* As recovery decides (segment_later_group), but over the whole file, where recovery looks
       STORE_TAIL_WINDOW bytes ahead: a torn write cannot reach further, so evidence further on
       is damage to both. */
    uint64_t at = segment_later_group(s->map, s->len, kept_end, stop_at, s->len, head, &e, NULL);
    if (at) {
        s->damaged = true;
        check_note(
            c, FACTUM_CHECK_DAMAGE, s->name, report_at, next,
            "%s, with an intact record of a later commit group after it at offset %llu (position %llu): the damaged "
            "events were acknowledged",
            problem, (unsigned long long)at, (unsigned long long)e.position);
        return 0;
    }
    check_note(c, FACTUM_CHECK_NOTE, s->name, kept_end, head,
               "a torn tail of %llu bytes after the last whole batch: never acknowledged (the commit mark is at %llu); "
               "the next open cuts it",
               (unsigned long long)(s->data_end - kept_end), (unsigned long long)c->mark.position);
    return 0;
}

/* ---- position maps ---- */

static void check_pmap(checker *c, cseg *s) {
    char name[40], path[PATH_MAX];
    snprintf(name, sizeof name, "log/%08x.pmap", s->no);
    snprintf(path, sizeof path, "%s/%08x.pmap", c->logdir, s->no);
    if (access(path, F_OK)) {
        s->pmap_bad = true;
        check_note(c, FACTUM_CHECK_DERIVED, name, FACTUM_END, FACTUM_END,
                   "missing (derived: the next open rebuilds it by scanning %s; --repair writes it now)", s->name);
        return;
    }
    segment_t *m = calloc(1, sizeof *m); /* only what segment_load_pmap looks at */
    if (!m) {
        c->oom = 1;
        return;
    }
    m->no = s->no, m->fd = -1, m->size = s->cap, m->first_pos = s->first_pos, m->generation = s->generation,
    m->end_pos = s->end_pos;
    if (segment_load_pmap(m, c->logdir)) {
        s->pmap_bad = true;
        check_note(c, FACTUM_CHECK_DERIVED, name, FACTUM_END, FACTUM_END,
                   "does not check out (its checksums, or not the generation, first position or size of %s): derived, "
                   "rebuilt by a scan",
                   s->name);
    } else if (m->count != s->npos || (!s->damaged && m->end != s->end)) {
        s->pmap_bad = true;
        check_note(
            c, FACTUM_CHECK_DERIVED, name, 24, FACTUM_END,
            "maps %llu positions ending at offset %llu; the segment holds %llu ending at offset %llu: derived, rebuilt "
            "by a scan",
            (unsigned long long)m->count, (unsigned long long)m->end, (unsigned long long)s->npos,
            (unsigned long long)s->end);
    } else {
        for (uint64_t i = 0; i < s->npos; i++) {
            if (s->offs[i] == OFF_BAD || m->pmap[i] == s->offs[i]) continue;
            s->pmap_bad = true;
            check_note(c, FACTUM_CHECK_DERIVED, name, PMAP_HEADER + i * 4, s->first_pos + i,
                       "maps position %llu to offset %u; the record is at offset %u: derived, rebuilt by a scan",
                       (unsigned long long)(s->first_pos + i), m->pmap[i], s->offs[i]);
            break;
        }
    }
    segment_close(m); /* releases the mapped map; map and fd are not set */
}

/* ---- the log ---- */

static int check_log(checker *c, factum_error_t *err) {
    int rc = list_segments(c, err);
    for (size_t i = 0; i < c->nsegs && !rc; i++)
        rc = read_header(c, &c->segs[i], err);
    if (rc) return rc;
    if (c->nsegs && c->segs[0].no != 0)
        check_note(c, FACTUM_CHECK_DAMAGE, c->segs[0].name, FACTUM_END, 0,
                   "the log starts at segment %08x: segments 00000000 to %08x are missing", c->segs[0].no,
                   c->segs[0].no - 1);
    for (size_t i = 1; i < c->nsegs; i++)
        if (c->segs[i].no != c->segs[i - 1].no + 1)
            check_note(c, FACTUM_CHECK_DAMAGE, c->segs[i].name, FACTUM_END, FACTUM_END,
                       "segments %08x to %08x are missing", c->segs[i - 1].no + 1, c->segs[i].no - 1);
    uint64_t expect = 0;
    bool known = true; /* expect is where the previous segment ends */
    for (size_t i = 0; i < c->nsegs; i++) {
        cseg *s = &c->segs[i];
        if (!s->header_ok) {
            known = false;
            continue;
        }
        if (known && s->first_pos != expect) {
            s->damaged = true;
            if (i == 0)
                check_note(c, FACTUM_CHECK_DAMAGE, s->name, 24, s->first_pos,
                           "the log's first segment starts at position %llu, not 0", (unsigned long long)s->first_pos);
            else
                check_note(c, FACTUM_CHECK_DAMAGE, s->name, 24, s->first_pos,
                           "the segment starts at position %llu, but the one before it ends at %llu",
                           (unsigned long long)s->first_pos, (unsigned long long)expect);
        }
        bool tail = i + 1 == c->nsegs && !s->end_pos;
        uint64_t next_first = i + 1 < c->nsegs && c->segs[i + 1].header_ok ? c->segs[i + 1].first_pos : FACTUM_END;
        if ((rc = tail ? walk_tail(c, s) : walk_sealed(c, s, next_first)))
            return err_set(err, rc, "out of memory checking %s", s->name);
        if (tail) c->tail_damaged = s->damaged;
        expect = s->first_pos + s->npos;
        known = true;
        if (!tail) check_pmap(c, s);
    }
    c->head = expect;
    c->sum.head = c->head;
    c->sum.mark = c->mark.position;
    if (c->mark.position > c->head && !c->mark_reported)
        check_note(
            c, FACTUM_CHECK_DAMAGE, c->nsegs ? c->segs[c->nsegs - 1].name : "log", FACTUM_END, c->head,
            "acknowledged events at positions %llu to %llu are missing: the log ends at %llu, and the commit mark says "
            "positions below %llu were acknowledged",
            (unsigned long long)c->head, (unsigned long long)c->mark.position - 1, (unsigned long long)c->head,
            (unsigned long long)c->mark.position);
    return 0;
}

/* The segment holding pos, or NULL. */
cseg *check_seg_of(checker *c, uint64_t pos) {
    size_t lo = 0, hi = c->nsegs;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (c->segs[mid].header_ok && c->segs[mid].first_pos > pos)
            hi = mid;
        else
            lo = mid + 1;
    }
    if (!lo) return NULL;
    cseg *s = &c->segs[lo - 1];
    return s->header_ok && pos >= s->first_pos && pos - s->first_pos < s->npos ? s : NULL;
}

/* The intact event at pos (EV_OK), one a scavenge removed, or one that cannot be read (also a
   position no segment places). */
int check_event_at(checker *c, uint64_t pos, factum_event_t *e) {
    cseg *s = check_seg_of(c, pos);
    if (!s) return EV_BAD;
    uint32_t off = s->offs[pos - s->first_pos];
    if (off == OFF_REMOVED) return EV_REMOVED;
    if (off == OFF_BAD) return EV_BAD;
    record_parse(s->map + off, e);
    return EV_OK;
}

/* One whole pass over the folder (the lock held). */
static int check_pass(checker *c, factum_error_t *err) {
    char path[PATH_MAX];
    int version;
    factum_error_t why;
    if (folder_refuse_incomplete(c->dir, &why))
        check_note(c, FACTUM_CHECK_DAMAGE, BACKUP_MARKER, FACTUM_END, FACTUM_END, "%s", why.message);
    if (folder_format_read(c->dir, &version, err)) return FACTUM_EFORMAT;
    if (version < FOLDER_FORMAT)
        check_note(c, FACTUM_CHECK_NOTE, FOLDER_FORMAT_FILE, FACTUM_END, FACTUM_END,
                   "none: format version %d, written by an older factum; the next open upgrades it to %d", version,
                   FOLDER_FORMAT);
    snprintf(path, sizeof path, "%s/COMMIT", c->logdir);
    int rc = mark_read(c->logdir, &c->mark, err);
    if (rc) return rc;
    if (!c->mark.seq && access(path, F_OK) == 0)
        check_note(c, FACTUM_CHECK_NOTE, "log/COMMIT", 0, FACTUM_END,
                   "holds no valid commit mark (as after a crash while it was first written): taken as 0");
    if ((rc = check_log(c, err))) return rc;
    if (access(path, F_OK) && c->head)
        check_note(c, FACTUM_CHECK_NOTE, "log/COMMIT", FACTUM_END, FACTUM_END,
                   "no commit mark: damage in the last commit group cannot be told from a torn write");
    if ((rc = check_index(c, err))) return rc;
    if (c->oom) return err_set(err, FACTUM_ENOMEM, "out of memory keeping the findings");
    return 0;
}

/* ---- the call ---- */

int factum_check(const char *dir, const factum_check_options_t *o, factum_check_cb cb, void *ctx,
                 factum_check_summary_t *sum, factum_error_t *err) {
    factum_check_options_t opt = o ? *o : (factum_check_options_t){0};
    if (sum) *sum = (factum_check_summary_t){0};
    if (!dir || !*dir) return err_set(err, FACTUM_EINVAL, "factum_check: a data folder is required");
    if (strlen(dir) > FACTUM_MAX_DIR)
        return err_set(err, FACTUM_EINVAL, "data folder path is longer than %d bytes", FACTUM_MAX_DIR);
    if (opt.truncate && !opt.repair)
        return err_set(err, FACTUM_EINVAL, "cutting the log (truncate) is a repair: it needs repair set too");
    checker c = {.dir = dir, .pass = 1};
    snprintf(c.logdir, sizeof c.logdir, "%s/log", dir);
    snprintf(c.idxdir, sizeof c.idxdir, "%s/index", dir);
    struct stat st;
    if (stat(dir, &st) || !S_ISDIR(st.st_mode))
        return err_set(err, FACTUM_EINVAL, "there is no data folder at %s", dir);
    if (stat(c.logdir, &st) || !S_ISDIR(st.st_mode))
        return err_set(err, FACTUM_EINVAL, "%s is not a Factum data folder: it has no log/ folder", dir);
    int lock_fd = -1, rc = store_lock_folder(dir, true, &lock_fd, err);
    if (rc) return rc;
    if ((rc = check_pass(&c, err))) goto out;
    long at = -1;
    int64_t time_us = 0;
    if (opt.truncate && (rc = check_truncate_plan(&c, opt.truncate_at, &at, &time_us, err))) goto out;
    /* From here the call succeeds (or fails while repairing): the findings may go out. */
    deliver(&c, cb, ctx);
    factum_check_summary_t first = c.sum;
    if (opt.repair && (opt.truncate || c.sum.derived)) {
        c.sum.repairs = 0;
        size_t nsealed = c.nsegs && !c.segs[c.nsegs - 1].end_pos ? c.nsegs - 1 : c.nsegs;
        if (opt.truncate) {
            rc = check_cut_log(&c, opt.truncate_at, at, time_us, err);
            nsealed = MIN(nsealed, at < 0 ? 0 : (size_t)at);
            if (!rc && c.sum.index_covered > opt.truncate_at && !c.index_bad) check_remove_index(&c, err, &rc);
        }
        if (!rc) rc = check_rebuild_pmaps(&c, nsealed, err);
        if (!rc && c.index_bad) check_remove_index(&c, err, &rc);
        uint64_t repairs = c.sum.repairs;
        deliver(&c, cb, ctx);
        checker_free(&c);
        if (rc) {
            first.repairs = repairs;
            c.sum = first;
            goto out;
        }
        /* Again from nothing, to show what is left. */
        c = (checker){.dir = dir, .pass = 2};
        snprintf(c.logdir, sizeof c.logdir, "%s/log", dir);
        snprintf(c.idxdir, sizeof c.idxdir, "%s/index", dir);
        if ((rc = check_pass(&c, err))) goto out;
        deliver(&c, cb, ctx);
        c.sum.repairs = repairs;
    }
out:
    if (sum) *sum = c.sum;
    checker_free(&c);
    close(lock_fd);
    return rc;
}
