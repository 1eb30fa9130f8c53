/*
 * segment.c — log segment files and their position maps (see segment.h, docs/format.md).
 */
#include "segment.h"

#include "record.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static void seg_path(char *out, const char *logdir, uint32_t no, const char *ext) {
    snprintf(out, PATH_MAX, "%s/%08x.%s", logdir, no, ext);
}

static int io_err(factum_error_t *err, int e, const char *what, const char *path) {
    return err_set(err, e == -ENOSPC ? FACTUM_ENOSPC : FACTUM_EIO, "%s %s: %s", what, path, strerror(-e));
}

void segment_header_encode(uint8_t h[SEGMENT_HEADER], uint32_t no, uint64_t size, uint64_t first_pos,
                           uint32_t generation, uint64_t end_pos) {
    memset(h, 0, SEGMENT_HEADER);
    store32(h + 0, SEGMENT_MAGIC);
    store32(h + 4, SEGMENT_VERSION);
    store32(h + 8, no);
    store32(h + 12, generation);
    store64(h + 16, size);
    store64(h + 24, first_pos);
    store64(h + 32, end_pos);
    store32(h + 60, crc32c(h, 60));
}

static int map_segment(segment_t *s, factum_error_t *err) {
    s->map = mmap(NULL, s->size, PROT_READ, MAP_SHARED, s->fd, 0);
    if (s->map == MAP_FAILED) {
        s->map = NULL;
        return io_err(err, -errno, "cannot map", s->path);
    }
    return 0;
}

int segment_prepare(const char *logdir, uint32_t no, uint64_t fill, io_vfs *vfs, int *out_fd, factum_error_t *err) {
    char tmp[PATH_MAX];
    seg_path(tmp, logdir, no, "seg.tmp");
    int fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return io_err(err, -errno, "cannot create", tmp);
    int e = vfs->zero_fill(vfs, fd, 0, MAX(fill, SEGMENT_HEADER));
    if (e) {
        close(fd);
        unlink(tmp);
        return io_err(err, e, "cannot prepare", tmp);
    }
    *out_fd = fd;
    return 0;
}

int segment_install(const char *logdir, uint32_t no, uint64_t size, uint64_t first_pos, int fd, uint64_t fill,
                    io_vfs *vfs, segment_t **out, factum_error_t *err) {
    char tmp[PATH_MAX];
    seg_path(tmp, logdir, no, "seg.tmp");
    segment_t *s = calloc(1, sizeof *s);
    if (!s) {
        close(fd);
        unlink(tmp);
        return err_set(err, FACTUM_ENOMEM, "out of memory creating a segment");
    }
    seg_path(s->path, logdir, no, "seg");
    s->no = no, s->size = size, s->first_pos = first_pos, s->end = SEGMENT_HEADER, s->fd = -1;
    atomic_store(&s->filled, MAX(fill, SEGMENT_HEADER));
    int rc, e;
    uint8_t h[SEGMENT_HEADER];
    segment_header_encode(h, no, size, first_pos, 0, 0);
    struct iovec iov = {h, sizeof h};
    if ((e = io_write_all(vfs, fd, &iov, 1, 0)) || (e = vfs->fdatasync(vfs, fd))) {
        rc = io_err(err, e, "cannot prepare", tmp);
        close(fd);
        unlink(tmp);
        goto fail;
    }
    if (rename(tmp, s->path) || (e = io_sync_dir(logdir))) {
        rc = io_err(err, errno ? -errno : e, "cannot install", s->path);
        close(fd);
        goto fail;
    }
    s->fd = fd;
    if ((rc = map_segment(s, err)) || (rc = segment_alloc_pmap(s))) goto fail;
    *out = s;
    return 0;
fail:
    if (rc == FACTUM_ENOMEM) err_set(err, rc, "out of memory for the position map of %s", s->path);
    segment_close(s);
    return rc;
}

int segment_create(const char *logdir, uint32_t no, uint64_t size, uint64_t first_pos, uint64_t fill, io_vfs *vfs,
                   segment_t **out, factum_error_t *err) {
    int fd, rc = segment_prepare(logdir, no, MIN(fill, size), vfs, &fd, err);
    return rc ? rc : segment_install(logdir, no, size, first_pos, fd, MIN(fill, size), vfs, out, err);
}

static int open_in(const char *dir, uint32_t no, bool archived, segment_t **out, factum_error_t *err) {
    segment_t *s = calloc(1, sizeof *s);
    if (!s) return err_set(err, FACTUM_ENOMEM, "out of memory opening a segment");
    seg_path(s->path, dir, no, "seg");
    s->no = no;
    s->archived = archived;
    int rc;
    s->fd = open(s->path, (archived ? O_RDONLY : O_RDWR) | O_CLOEXEC);
    if (s->fd < 0) {
        rc = io_err(err, -errno, "cannot open", s->path);
        goto fail;
    }
    struct stat st;
    uint8_t h[SEGMENT_HEADER];
    if (fstat(s->fd, &st) || pread(s->fd, h, sizeof h, 0) != (ssize_t)sizeof h) {
        rc = err_set(err, FACTUM_ECORRUPT, "segment %s: header unreadable (offset 0)", s->path);
        goto fail;
    }
    if (load32(h) != SEGMENT_MAGIC || load32(h + 60) != crc32c(h, 60)) {
        rc = err_set(err, FACTUM_ECORRUPT, "segment %s: bad header checksum at offset 0", s->path);
        goto fail;
    }
    if (load32(h + 4) != SEGMENT_VERSION) {
        rc = err_set(err, FACTUM_EFORMAT, "segment %s: format version %u, this build reads %u", s->path, load32(h + 4),
                     SEGMENT_VERSION);
        goto fail;
    }
    s->size = load64(h + 16);
    s->first_pos = load64(h + 24);
    s->generation = load32(h + 12);
    s->end_pos = load64(h + 32);
    /* A compacted segment holds the positions of the segment it was rewritten from, which was at
       most 4 GiB of records of at least RECORD_MIN bytes. */
    if (s->end_pos && (s->end_pos < s->first_pos || s->end_pos - s->first_pos > SEGMENT_MAX_POSITIONS)) {
        rc = err_set(err, FACTUM_ECORRUPT, "segment %s: header says positions %llu to %llu, not 0 to %llu of them",
                     s->path, (unsigned long long)s->first_pos, (unsigned long long)s->end_pos,
                     (unsigned long long)SEGMENT_MAX_POSITIONS);
        goto fail;
    }
    /* The file grows up to its capacity as it is zero-filled; a compacted one is exactly its size. */
    if (load32(h + 8) != no || s->size < (uint64_t)st.st_size || s->size < SEGMENT_HEADER ||
        (s->end_pos && s->size != (uint64_t)st.st_size)) {
        rc = err_set(err, FACTUM_ECORRUPT, "segment %s: header names segment %u of %llu bytes, file is %llu bytes",
                     s->path, load32(h + 8), (unsigned long long)s->size, (unsigned long long)st.st_size);
        goto fail;
    }
    atomic_store(&s->filled, (uint64_t)st.st_size);
    s->end = SEGMENT_HEADER;
    if ((rc = map_segment(s, err))) goto fail;
    *out = s;
    return 0;
fail:
    segment_close(s);
    return rc;
}

int segment_open(const char *logdir, uint32_t no, segment_t **out, factum_error_t *err) {
    return open_in(logdir, no, false, out, err);
}

int segment_open_archived(const char *dir, uint32_t no, segment_t **out, factum_error_t *err) {
    return open_in(dir, no, true, out, err);
}

int segment_peek_first(const char *logdir, uint32_t no, uint64_t *first_pos, factum_error_t *err) {
    char path[PATH_MAX];
    seg_path(path, logdir, no, "seg");
    uint8_t h[SEGMENT_HEADER];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd < 0 ? -1 : pread(fd, h, sizeof h, 0);
    if (fd >= 0) close(fd);
    if (n != (ssize_t)sizeof h || load32(h) != SEGMENT_MAGIC || load32(h + 60) != crc32c(h, 60))
        return err_set(err, FACTUM_ECORRUPT, "segment %s: header unreadable or bad checksum at offset 0", path);
    *first_pos = load64(h + 24);
    return 0;
}

static void pmap_release(segment_t *s) {
    if (s->pmap) munmap(s->pmap_is_file ? (void *)((uint8_t *)s->pmap - PMAP_HEADER) : s->pmap, s->pmap_bytes);
    s->pmap = NULL;
    s->pmap_is_file = false;
}

void segment_close(segment_t *s) {
    if (!s) return;
    pmap_release(s);
    if (s->map) munmap(s->map, s->size);
    if (s->fd >= 0) close(s->fd);
    free(s);
}

int segment_alloc_pmap(segment_t *s) {
    pmap_release(s);
    s->pmap_cap = (s->size - SEGMENT_HEADER) / RECORD_MIN + 1;
    if (s->end_pos)
        s->pmap_cap = MAX(s->pmap_cap, s->end_pos - s->first_pos); /* compacted: positions outnumber records */
    s->pmap_bytes = s->pmap_cap * sizeof(uint32_t);
    void *p = mmap(NULL, s->pmap_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return FACTUM_ENOMEM;
    s->pmap = p;
    return 0;
}

int segment_load_pmap(segment_t *s, const char *logdir) {
    char path[PATH_MAX];
    seg_path(path, logdir, s->no, "pmap");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    struct stat st;
    uint8_t *m = MAP_FAILED;
    if (fstat(fd, &st) == 0 && st.st_size >= PMAP_HEADER)
        m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (m == MAP_FAILED) return -1;
    uint64_t count = load64(m + 24), end = load64(m + 32);
    bool ok = load32(m) == PMAP_MAGIC && load32(m + 44) == crc32c(m, 44) && load32(m + 8) == s->no &&
              load32(m + 12) == s->generation && load64(m + 16) == s->first_pos && end <= s->size &&
              (!s->end_pos || s->first_pos + count == s->end_pos) && (uint64_t)st.st_size == PMAP_HEADER + count * 4 &&
              load32(m + 40) == crc32c(m + PMAP_HEADER, count * 4);
    if (!ok) {
        munmap(m, (size_t)st.st_size);
        return -1;
    }
    pmap_release(s);
    s->pmap = (uint32_t *)(m + PMAP_HEADER);
    s->pmap_bytes = (size_t)st.st_size;
    s->pmap_is_file = true;
    s->pmap_cap = s->count = count;
    s->end = end;
    return 0;
}

int segment_write_pmap(segment_t *s, const char *logdir) {
    char path[PATH_MAX], tmp[PATH_MAX];
    seg_path(path, logdir, s->no, "pmap");
    seg_path(tmp, logdir, s->no, "pmap.tmp");
    uint8_t h[PMAP_HEADER] = {0};
    store32(h, PMAP_MAGIC);
    store32(h + 4, 1);
    store32(h + 8, s->no);
    store32(h + 12, s->generation);
    store64(h + 16, s->first_pos);
    store64(h + 24, s->count);
    store64(h + 32, s->end);
    store32(h + 40, crc32c(s->pmap, s->count * 4));
    store32(h + 44, crc32c(h, 44));
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return -errno;
    struct iovec iov[2] = {{h, sizeof h}, {s->pmap, s->count * 4}};
    int rc = io_write_all(io_vfs_default(), fd, iov, 2, 0);
    close(fd);
    if (!rc && rename(tmp, path)) rc = -errno;
    if (rc) unlink(tmp);
    return rc;
}

/* A compacted segment: records with rising positions below end_pos, gaps where a scavenge removed
   events, and nothing after the last record (the file is exactly as long as its records). */
static void scan_compacted(segment_t *s, segment_scan_t *r) {
    uint64_t off = SEGMENT_HEADER, next = s->first_pos, limit = segment_limit(s);
    *r = (segment_scan_t){0, SEGMENT_HEADER, SEGMENT_HEADER, false};
    while (off < limit) {
        factum_event_t e;
        uint32_t len;
        if (record_decode(s->map + off, limit - off, &e, &len) != RECORD_OK || e.position < next ||
            e.position >= s->end_pos) {
            r->stop_at = off;
            return;
        }
        while (next < e.position)
            s->pmap[next++ - s->first_pos] = 0;
        s->pmap[next++ - s->first_pos] = (uint32_t)off;
        off += len;
    }
    while (next < s->end_pos)
        s->pmap[next++ - s->first_pos] = 0;
    *r = (segment_scan_t){s->end_pos - s->first_pos, off, off, true};
    s->count = r->count, s->end = off;
}

void segment_scan(segment_t *s, segment_scan_t *r) {
    if (s->end_pos) {
        scan_compacted(s, r);
        return;
    }
    uint64_t off = SEGMENT_HEADER, n = 0, limit = segment_limit(s);
    *r = (segment_scan_t){0, SEGMENT_HEADER, SEGMENT_HEADER, false};
    for (;;) {
        factum_event_t e;
        uint32_t len;
        int st = off < limit ? record_decode(s->map + off, limit - off, &e, &len) : RECORD_EMPTY;
        if (st == RECORD_OK && e.position != s->first_pos + n) st = RECORD_BAD; /* stale or misplaced */
        if (st != RECORD_OK) {
            r->stop_at = off;
            r->clean = st == RECORD_EMPTY && off == r->end;
            break;
        }
        s->pmap[n++] = (uint32_t)off;
        off += len;
        if (load32(s->map + (off - len) + R_FLAGS) & RECORD_BATCH_END) {
            r->count = n;
            r->end = off;
        }
    }
    s->count = r->count;
    s->end = r->end;
}

uint64_t segment_scan_around(segment_t *s, uint64_t end_pos, uint64_t *first_bad, uint64_t *bad_off) {
    uint64_t off = SEGMENT_HEADER, n = 0, limit = segment_limit(s), damaged = 0, last_end = SEGMENT_HEADER;
    uint64_t cap = MIN(end_pos - s->first_pos, s->pmap_cap);
    while (n < cap) {
        factum_event_t e;
        uint32_t len;
        int st = off < limit ? record_decode(s->map + off, limit - off, &e, &len) : RECORD_EMPTY;
        if (st == RECORD_OK && e.position == s->first_pos + n) {
            s->pmap[n++] = (uint32_t)off;
            off += len;
            last_end = off;
            continue;
        }
        /* Damage at off: the next record with a later position, or the end. */
        uint64_t next = off + 8, q = end_pos;
        for (; next + RECORD_HEADER <= limit; next += 8) {
            if (load32(s->map + next) != RECORD_MAGIC) continue;
            if (record_decode(s->map + next, limit - next, &e, &len) == RECORD_OK && e.position > s->first_pos + n &&
                e.position < end_pos) {
                q = e.position;
                break;
            }
        }
        if (!damaged) *first_bad = s->first_pos + n, *bad_off = off;
        while (s->first_pos + n < q && n < cap)
            s->pmap[n++] = (uint32_t)off, damaged++;
        off = next;
        if (q == end_pos) break;
    }
    s->count = n;
    s->end = MAX(last_end, off < limit ? off : last_end);
    return damaged;
}

uint64_t segment_later_group(const uint8_t *map, uint64_t fill, uint64_t kept_end, uint64_t stop_at, uint64_t limit,
                             uint64_t kept, factum_event_t *found, uint64_t *dirty_end) {
    /* The commit group the scan ended in: records after kept_end that decoded carry its time. */
    int64_t torn_group_time = stop_at > kept_end ? (int64_t)load64(map + kept_end + R_TIME) : INT64_MIN;
    uint64_t dirty = kept_end;
    for (uint64_t off = kept_end; off + 8 <= limit; off += 8) {
        if (load64(map + off) == 0) continue;
        dirty = MAX(dirty, off + 8);
        if (off < stop_at || load32(map + off) != RECORD_MAGIC) continue;
        factum_event_t e;
        uint32_t len;
        if (record_decode(map + off, fill - off, &e, &len) != RECORD_OK || e.position < kept) continue;
        /* A whole record of a later commit group (one that starts after the damage and has
           another time): it was written after the damaged group's fdatasync, so the damage is
           not a torn write but corruption of acknowledged data. A record of the group the
           damage is in says nothing: that group may be the torn one. */
        if (record_group_first(map + off, e.position) > kept && e.time_us != torn_group_time) {
            *found = e;
            return off;
        }
        dirty = MAX(dirty, off + len);
    }
    if (dirty_end) *dirty_end = dirty;
    return 0;
}

int segment_repair_tail(segment_t *s, const segment_scan_t *r, uint64_t window, uint64_t acked, io_vfs *vfs,
                        factum_error_t *err) {
    uint64_t fill = segment_limit(s), limit = MIN(fill, r->stop_at + window), dirty_end = r->end;
    uint64_t kept = s->first_pos + r->count;
    if (kept < acked) {
        /* The commit mark says these positions were acknowledged: whatever is at r->end is damage
           to acknowledged events, never a torn write. */
        if (r->stop_at >= fill ||
            (r->stop_at == r->end && record_decode(s->map + r->end, fill - r->end, NULL, NULL) == RECORD_EMPTY))
            return err_set(err, FACTUM_ECORRUPT,
                           "segment %s: acknowledged events at positions %llu to %llu are missing: the log ends at "
                           "offset %llu (the commit mark says positions below %llu were acknowledged)",
                           s->path, (unsigned long long)kept, (unsigned long long)acked - 1, (unsigned long long)r->end,
                           (unsigned long long)acked);
        return err_set(err, FACTUM_ECORRUPT,
                       "segment %s: checksum failure at offset %llu (position %llu), in events that were "
                       "acknowledged (the commit mark says positions below %llu were)",
                       s->path, (unsigned long long)r->stop_at, (unsigned long long)(s->first_pos + r->count),
                       (unsigned long long)acked);
    }
    factum_event_t ev;
    uint64_t later = segment_later_group(s->map, fill, r->end, r->stop_at, limit, kept, &ev, &dirty_end);
    if (later)
        return err_set(err, FACTUM_ECORRUPT,
                       "segment %s: checksum failure at offset %llu (position %llu), with valid data of a later "
                       "commit group after it at offset %llu (position %llu)",
                       s->path, (unsigned long long)r->stop_at, (unsigned long long)kept, (unsigned long long)later,
                       (unsigned long long)ev.position);
    if (dirty_end > r->end) {
        /* Torn tail: nothing in it was acknowledged. Zero it so it can never be read again. */
        static const uint8_t zeros[65536];
        for (uint64_t off = r->end; off < dirty_end;) {
            size_t k = (size_t)MIN(sizeof zeros, dirty_end - off);
            struct iovec iov = {(void *)zeros, k};
            int e = io_write_all(vfs, s->fd, &iov, 1, off);
            if (e) return io_err(err, e, "cannot truncate torn tail of", s->path);
            off += k;
        }
        int e = vfs->fdatasync(vfs, s->fd);
        if (e) return io_err(err, e, "cannot sync", s->path);
    }
    s->end = r->end;
    s->count = r->count;
    return 0;
}

int segment_write_compacted(const segment_t *s, const char *logdir, const uint8_t *keep, uint32_t *pmap, uint64_t *size,
                            factum_error_t *err) {
    char tmp[PATH_MAX];
    seg_path(tmp, logdir, s->no, "seg.scav");
    int fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return io_err(err, -errno, "cannot create", tmp);
    /* Records are copied in order into a buffer and written in large pieces; every
       SCAV_SYNC_BYTES the written range is pushed to the disk and waited for, so the scavenge
       never builds up a mass of dirty pages that would stall the appenders' fdatasync. */
    enum { SCAV_BUF = 1u << 20, SCAV_SYNC_BYTES = 2u << 20 };
    /* And it goes no faster than SCAV_MIB_S, leaving the disk's bandwidth to the appends. */
    enum { SCAV_MIB_S = 96 };
    uint64_t started = clock_mono_ns();
    uint8_t *buf = malloc(SCAV_BUF);
    uint64_t off = SEGMENT_HEADER, synced = 0;
    size_t used = 0;
    int rc = 0;
    if (!buf) {
        close(fd);
        unlink(tmp);
        return err_set(err, FACTUM_ENOMEM, "out of memory");
    }
    for (uint64_t i = 0; i < s->count && !rc; i++) {
        uint32_t at = s->pmap[i];
        if (!keep[i] || !at) {
            pmap[i] = 0;
            continue;
        }
        uint32_t len = load32(s->map + at + 4);
        if (used + len > SCAV_BUF) {
            if (pwrite(fd, buf, used, (off_t)(off - used)) != (ssize_t)used)
                rc = io_err(err, -errno, "cannot write", tmp);
            used = 0;
            if (!rc && off - synced >= SCAV_SYNC_BYTES) {
                sync_file_range(fd, (off_t)synced, (off_t)(off - synced),
                                SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER);
                synced = off;
                uint64_t due_ns = off * 1000000000ull / ((uint64_t)SCAV_MIB_S << 20), took = clock_mono_ns() - started;
                if (due_ns > took) usleep((useconds_t)((due_ns - took) / 1000));
            }
        }
        if (len > SCAV_BUF) { /* a record larger than the buffer goes on its own */
            if (pwrite(fd, s->map + at, len, (off_t)off) != (ssize_t)len) rc = io_err(err, -errno, "cannot write", tmp);
        } else {
            memcpy(buf + used, s->map + at, len);
            used += len;
        }
        pmap[i] = (uint32_t)off;
        off += len;
    }
    if (!rc && used && pwrite(fd, buf, used, (off_t)(off - used)) != (ssize_t)used)
        rc = io_err(err, -errno, "cannot write", tmp);
    free(buf);
    uint8_t h[SEGMENT_HEADER];
    segment_header_encode(h, s->no, off, s->first_pos, s->generation + 1, s->first_pos + s->count);
    if (!rc && pwrite(fd, h, sizeof h, 0) != (ssize_t)sizeof h) rc = io_err(err, -errno, "cannot write", tmp);
    if (!rc && fdatasync(fd)) rc = io_err(err, -errno, "cannot sync", tmp);
    close(fd);
    if (rc)
        unlink(tmp);
    else
        *size = off;
    return rc;
}

int segment_install_compacted(const char *logdir, uint32_t no, factum_error_t *err) {
    char tmp[PATH_MAX], path[PATH_MAX];
    seg_path(tmp, logdir, no, "seg.scav");
    seg_path(path, logdir, no, "seg");
    int e;
    if (rename(tmp, path)) return io_err(err, -errno, "cannot install", path);
    if ((e = io_sync_dir(logdir))) return io_err(err, e, "cannot sync the folder of", path);
    return 0;
}
