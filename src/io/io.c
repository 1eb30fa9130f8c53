/*
 * io.c — the POSIX io_vfs and the fault-injecting one used by tests (see io.h).
 */
#include "io.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int px_pwritev(io_vfs *vfs, int fd, const struct iovec *iov, int iovcnt, uint64_t off, size_t *written) {
    (void)vfs;
    ssize_t n;
    do
        n = pwritev(fd, iov, iovcnt, (off_t)off);
    while (n < 0 && errno == EINTR);
    if (n < 0) return -errno;
    *written = (size_t)n;
    return 0;
}

static int px_fdatasync(io_vfs *vfs, int fd) {
    (void)vfs;
    return fdatasync(fd) ? -errno : 0;
}

/* Zeros are written with O_DIRECT through a second descriptor where the file system allows it:
   they never enter the page cache, so an appender's fdatasync of the same file (which waits for
   every dirty or in-flight page of it) never waits for them. Elsewhere (tmpfs) they go through
   the cache in pieces that are each written back before the next. Either way one fdatasync at
   the end makes the new size and extents durable. */
enum { ZERO_PIECE = 1u << 20, ZERO_ALIGN = 4096 };
static uint8_t zero_piece[ZERO_PIECE] __attribute__((aligned(ZERO_ALIGN)));

static int px_zero_fill_cached(io_vfs *vfs, int fd, uint64_t off, uint64_t len) {
    for (uint64_t done = 0; done < len;) {
        size_t k = (size_t)(len - done < ZERO_PIECE ? len - done : ZERO_PIECE);
        struct iovec iov = {zero_piece, k};
        int e = io_write_all(vfs, fd, &iov, 1, off + done);
        if (e) return e;
        sync_file_range(fd, (off_t)(off + done), (off_t)k,
                        SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER);
        done += k;
    }
    return 0;
}

static int zero_direct(int fd, uint64_t off, uint64_t len) {
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    int dfd = open(path, O_WRONLY | O_DIRECT | O_CLOEXEC);
    if (dfd < 0) return -EINVAL;
    int rc = 0;
    for (uint64_t done = 0; done < len && !rc;) {
        size_t k = (size_t)(len - done < ZERO_PIECE ? len - done : ZERO_PIECE);
        ssize_t n = pwrite(dfd, zero_piece, k, (off_t)(off + done));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0)
            rc = n < 0 ? -errno : -EIO;
        else
            done += (uint64_t)n;
    }
    close(dfd);
    return rc;
}

static int px_zero_fill(io_vfs *vfs, int fd, uint64_t off, uint64_t len) {
    /* The aligned middle directly, if the file system takes it; unaligned ends (and everything,
       if not) through the cache. */
    uint64_t end = off + len, a = (off + ZERO_ALIGN - 1) / ZERO_ALIGN * ZERO_ALIGN, b = end / ZERO_ALIGN * ZERO_ALIGN;
    int e = 0;
    if (b > a && zero_direct(fd, a, b - a) == 0) {
        if (a > off) e = px_zero_fill_cached(vfs, fd, off, a - off);
        if (!e && end > b) e = px_zero_fill_cached(vfs, fd, b, end - b);
    } else {
        e = px_zero_fill_cached(vfs, fd, off, len);
    }
    if (e) return e;
    return fdatasync(fd) ? -errno : 0; /* the new size and extents */
}

void io_write_start(int fd, uint64_t off, uint64_t len) {
    if (sync_file_range(fd, (off_t)off, (off_t)len, SYNC_FILE_RANGE_WRITE)) {
    } /* refused (no such call for this file): the fdatasync writes them instead */
}

void io_write_behind(int fd, uint64_t end, io_behind *b) {
    if (end - b->started < IO_BEHIND_BYTES) return;
    if (b->started > b->waited &&
        sync_file_range(fd, (off_t)b->waited, (off_t)(b->started - b->waited),
                        SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER)) {
    } /* refused: the final fdatasync writes it all */
    b->waited = b->started;
    io_write_start(fd, b->started, end - b->started);
    b->started = end;
}

static io_vfs posix_vfs = {px_pwritev, px_fdatasync, px_zero_fill};

io_vfs *io_vfs_default(void) { return &posix_vfs; }

int io_write_all(io_vfs *vfs, int fd, const struct iovec *iov_in, int iovcnt, uint64_t off) {
    struct iovec local[64];
    struct iovec *iov = iovcnt <= 64 ? local : malloc(sizeof *iov * (size_t)iovcnt);
    if (!iov) return -ENOMEM;
    memcpy(iov, iov_in, sizeof *iov * (size_t)iovcnt);
    int rc = 0, first = 0;
    while (first < iovcnt) {
        int cnt = iovcnt - first > 1024 ? 1024 : iovcnt - first; /* IOV_MAX */
        size_t n = 0;
        rc = vfs->pwritev(vfs, fd, iov + first, cnt, off, &n);
        if (rc) break;
        if (n == 0) {
            rc = -EIO;
            break;
        }
        off += n;
        while (n && first < iovcnt) {
            if (n >= iov[first].iov_len)
                n -= iov[first++].iov_len;
            else {
                iov[first].iov_base = (char *)iov[first].iov_base + n;
                iov[first].iov_len -= n;
                n = 0;
            }
        }
        while (first < iovcnt && iov[first].iov_len == 0)
            first++;
    }
    if (iov != local) free(iov);
    return rc;
}

int io_sync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -errno;
    int rc = fsync(fd) ? -errno : 0;
    close(fd);
    return rc;
}

int io_replace_file(const char *path, const void *p, size_t n, int mode) {
    char tmp[4200], dir[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode), rc = fd < 0 ? -errno : 0;
    struct iovec iov = {(void *)p, n};
    if (!rc && fchmod(fd, (mode_t)mode)) rc = -errno; /* the umask does not loosen or tighten it */
    if (!rc) rc = io_write_all(io_vfs_default(), fd, &iov, 1, 0);
    if (!rc && fdatasync(fd)) rc = -errno;
    if (fd >= 0) close(fd);
    if (!rc && rename(tmp, path)) rc = -errno;
    if (!rc) rc = io_sync_dir(slash ? dir : ".");
    if (rc) unlink(tmp);
    return rc;
}

int io_make_dir(const char *dir) {
    if (mkdir(dir, 0755)) return errno == EEXIST ? 0 : -errno;
    char parent[4096];
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/')
        n--;
    while (n > 0 && dir[n - 1] != '/')
        n--;
    if (n == 0)
        snprintf(parent, sizeof parent, ".");
    else
        snprintf(parent, sizeof parent, "%.*s", (int)(n > 1 ? n - 1 : 1), dir);
    int e = io_sync_dir(dir);
    return e ? e : io_sync_dir(parent);
}

int io_read_file(const char *path, char **out, size_t *len) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -errno;
    struct stat st;
    if (fstat(fd, &st)) {
        int e = -errno;
        close(fd);
        return e;
    }
    char *p = malloc((size_t)st.st_size + 1);
    if (!p) {
        close(fd);
        return -ENOMEM;
    }
    ssize_t n = pread(fd, p, (size_t)st.st_size, 0);
    int e = n < 0 ? -errno : 0;
    close(fd);
    if (e) {
        free(p);
        return e;
    }
    p[n] = 0;
    *out = p;
    *len = (size_t)n;
    return 0;
}

/* ---- fault injection ---- */

static int fault_pwritev(io_vfs *vfs, int fd, const struct iovec *iov, int iovcnt, uint64_t off, size_t *written) {
    io_fault *f = (io_fault *)vfs;
    size_t total = 0;
    for (int i = 0; i < iovcnt; i++)
        total += iov[i].iov_len;
    size_t allow = total;
    int after = 0;
    f->write_calls++;
    if (f->short_writes && total > 1) allow = total / 2;
    if (f->enospc_after_bytes >= 0 && f->bytes_written + allow > (uint64_t)f->enospc_after_bytes) {
        allow = f->bytes_written >= (uint64_t)f->enospc_after_bytes
                    ? 0
                    : (size_t)((uint64_t)f->enospc_after_bytes - f->bytes_written);
        after = -ENOSPC;
    }
    if (f->crash_after_bytes >= 0 && f->bytes_written + allow > (uint64_t)f->crash_after_bytes) {
        allow = (size_t)((uint64_t)f->crash_after_bytes - f->bytes_written);
        after = 1;
    }
    /* Write the allowed prefix for real. */
    size_t done = 0;
    for (int i = 0; i < iovcnt && done < allow; i++) {
        size_t k = iov[i].iov_len < allow - done ? iov[i].iov_len : allow - done;
        ssize_t n = pwrite(fd, iov[i].iov_base, k, (off_t)(off + done));
        if (n < 0) return -errno;
        done += (size_t)n;
        if ((size_t)n < k) break;
    }
    f->bytes_written += done;
    if (after == 1) _exit(IO_FAULT_CRASH_EXIT); /* a torn write: the process dies mid-write */
    if (after < 0 && done == 0) return after;
    *written = done;
    return 0;
}

static int fault_fdatasync(io_vfs *vfs, int fd) {
    io_fault *f = (io_fault *)vfs;
    long n = f->fsync_calls++;
    if (f->fail_fsync_at >= 0 && n >= f->fail_fsync_at) return -EIO;
    return f->real->fdatasync(f->real, fd);
}

static int fault_zero_fill(io_vfs *vfs, int fd, uint64_t off, uint64_t len) {
    io_fault *f = (io_fault *)vfs;
    if (atomic_load(&f->fail_zero_fill)) return -ENOSPC;
    return f->real->zero_fill(f->real, fd, off, len); /* not counted: its writes are not the log's */
}

void io_fault_init(io_fault *f) {
    memset(f, 0, sizeof *f);
    f->vfs = (io_vfs){fault_pwritev, fault_fdatasync, fault_zero_fill};
    f->real = io_vfs_default();
    f->fail_fsync_at = -1;
    f->enospc_after_bytes = -1;
    f->crash_after_bytes = -1;
}
