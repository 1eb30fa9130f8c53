/*
 * io.h — the engine's I/O layer. Every write, sync and allocation of the store goes through an
 * io_vfs, as SQLite's go through sqlite3_vfs, so tests can inject faults: EIO on fdatasync,
 * ENOSPC, short writes, and torn writes that end the process part-way through. Reads use mmap
 * and do not pass through here (a flipped bit is injected by editing the file).
 *
 * zero_fill is how files grow: it writes zeros over a range and makes them durable, so that a
 * later pwrite + fdatasync there is a pure data flush (no extent conversion, no size change,
 * no journal commit). It is not counted as a write or an fdatasync by the fault layer.
 *
 * Convention inside this layer: functions return 0 or a negative errno value; the store turns
 * those into FACTUM_E* codes with a message naming the file.
 */
#ifndef FACTUM_IO_H
#define FACTUM_IO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

typedef struct io_vfs {
    int (*pwritev)(struct io_vfs *vfs, int fd, const struct iovec *iov, int iovcnt, uint64_t off, size_t *written);
    int (*fdatasync)(struct io_vfs *vfs, int fd);
    /* Writes zeros over [off, off + len) (growing the file if it ends before) and syncs them. */
    int (*zero_fill)(struct io_vfs *vfs, int fd, uint64_t off, uint64_t len);
} io_vfs;

/* The real thing: POSIX calls. */
io_vfs *io_vfs_default(void);

/* Writes every byte of iov at off, looping over short writes. 0 or -errno. */
int io_write_all(io_vfs *vfs, int fd, const struct iovec *iov, int iovcnt, uint64_t off);
/* Starts writing [off, off + len) of fd back to the device and returns without waiting
   (sync_file_range), so the device works while the caller does something else before its
   fdatasync. Only a hint: that fdatasync makes the bytes durable and reports what failed. */
void io_write_start(int fd, uint64_t off, uint64_t len);
/* Write-behind for a file written front to back and synced once at the end (an index run, a
   backup's copy): each time at least IO_BEHIND_BYTES more are written, their write-back is
   started and the write-back started the time before is waited for. So at most two pieces of
   it are ever queued at the device, and the final fdatasync finds little left: written all at
   once by that fdatasync, a merged run's tens of megabytes went to the device in one burst, and
   every log group's fdatasync behind it waited for all of them (PostgreSQL's *_flush_after,
   RocksDB's bytes_per_sync). `end`: the file is written up to there, front to back. */
#define IO_BEHIND_BYTES (256u << 10)
typedef struct io_behind {
    uint64_t started, waited;
} io_behind;
void io_write_behind(int fd, uint64_t end, io_behind *b);
/* fsync on a directory, so a created or renamed file's name is durable. 0 or -errno. */
int io_sync_dir(const char *dir);
/* mkdir; when it made the folder, syncs it and its parent so the new name is durable. 0 also if
   it already existed, or -errno. */
int io_make_dir(const char *dir);
/* Replaces the file at path with n bytes, atomically and durably: written to path.tmp with
   `mode`, synced, renamed over path, its folder synced. 0 or -errno (nothing replaced). */
int io_replace_file(const char *path, const void *p, size_t n, int mode);
/* Reads a whole small file into a malloc'd NUL-terminated buffer. 0 or -errno. */
int io_read_file(const char *path, char **out, size_t *len);

/*
 * Fault injection. Counters count calls since the vfs was made; -1 disables a fault.
 */
typedef struct io_fault {
    io_vfs vfs; /* first, so an io_fault* is an io_vfs* */
    io_vfs *real;
    long fsync_calls, write_calls;
    uint64_t bytes_written;
    long fail_fsync_at;         /* the Nth fdatasync (0-based) and all later ones fail with EIO */
    int64_t enospc_after_bytes; /* writes past this many bytes fail with ENOSPC (after a partial write) */
    int short_writes;           /* each pwritev writes at most half of what it was given */
    int64_t crash_after_bytes;  /* write up to this many bytes in total, then _exit(CRASH_EXIT) */
    _Atomic int fail_zero_fill; /* zero_fill fails with ENOSPC (it runs on the zeroer thread) */
} io_fault;

#define IO_FAULT_CRASH_EXIT 77

void io_fault_init(io_fault *f);

#endif
