/*
 * folder.h — what a data folder says about itself, beside its log and index: its format version
 * (DIR/FORMAT), and, in a backup, the manifest that proves the copy finished (DIR/BACKUP) or the
 * marker that says one is under way (DIR/BACKUP-IN-PROGRESS). docs/format.md, "Format versions"
 * and "Backups". Used by factum_open, factum_check, factum_backup and factum_restore.
 */
#ifndef FACTUM_FOLDER_H
#define FACTUM_FOLDER_H

#include "../base/base.h"

#define FOLDER_FORMAT 2          /* this build's data folder format (docs/format.md, "Format versions") */
#define FOLDER_FORMAT_ARCHIVED 3 /* ... once a segment of it is archived: older builds must refuse it */
#define FOLDER_FORMAT_MAX 3      /* the newest this build reads */
#define FOLDER_FORMAT_FILE "FORMAT"
#define BACKUP_MANIFEST "BACKUP"
#define BACKUP_MARKER "BACKUP-IN-PROGRESS"
#define BACKUP_NAME_MAX 40 /* "index/run-XXXXXXXX.idx" and the like */

/*
 * Reads DIR/FORMAT into *version; a folder without one is version 1 (written before the file
 * existed). FACTUM_EFORMAT, saying what to do, if the version is newer than this build reads or
 * the file does not parse.
 */
int folder_format_read(const char *dir, int *version, factum_error_t *err);
/* Writes DIR/FORMAT with this build's version: atomically and durably. */
int folder_format_write(const char *dir, factum_error_t *err);
/* Records version (atomically, synced) unless the folder says that one or newer already. */
int folder_format_raise(const char *dir, int version, factum_error_t *err);
/*
 * What factum_open does first, with the lock held: refuses an unfinished backup or restore
 * (folder_refuse_incomplete) and a newer format, then records this build's format in a folder
 * without one. *found is the version the folder had (1: an older folder, now upgraded).
 */
int folder_open(const char *dir, int *found, factum_error_t *err);
/* FACTUM_EINCOMPLETE, saying why, when DIR holds the backup marker and no manifest that checks
   out: a backup or restore into it was stopped before it finished. 0 otherwise. */
int folder_refuse_incomplete(const char *dir, factum_error_t *err);

/*
 * Where a backup or restore may write: `to` as an absolute path in real (PATH_MAX bytes), which
 * is missing (its parent must exist), an empty folder, or (not for a restore) an earlier backup
 * (it holds BACKUP or the marker). FACTUM_EINVAL saying which it is not, otherwise.
 */
int folder_target(const char *to, bool restore, char *real, factum_error_t *err);
/* FACTUM_EINVAL if `to` is the folder `dir` or inside it: `what` ("a backup") must go elsewhere. */
int folder_outside(const char *to, const char *dir, const char *what, factum_error_t *err);

/* One file of a backup: its name in the folder, its length, and its identity (backup_file_id). */
typedef struct backup_file {
    char name[BACKUP_NAME_MAX];
    uint64_t size, check_off, id;
} backup_file;

typedef struct backup_manifest {
    uint64_t position; /* events [0, position) are in the backup */
    int64_t time_us;   /* commit time of the event at position - 1 */
    int64_t made_us;   /* when the backup finished */
    backup_file *files;
    size_t n, cap;
} backup_manifest;

/* Reads DIR/BACKUP: 0 with *m filled, FACTUM_ENOTFOUND if there is none, FACTUM_ECORRUPT if it
   does not check out (its checksum, a line). */
int backup_manifest_read(const char *dir, backup_manifest *m, factum_error_t *err);
/* Writes DIR/BACKUP atomically and durably: the last step of a backup. */
int backup_manifest_write(const char *dir, const backup_manifest *m, factum_error_t *err);
int backup_manifest_add(backup_manifest *m, const char *name, uint64_t size, uint64_t check_off, uint64_t id);
const backup_file *backup_manifest_find(const backup_manifest *m, const char *name);
void backup_manifest_free(backup_manifest *m);

/*
 * A file's identity, in *id: a hash of its length, its first 64 bytes (a header, whose checksum
 * covers what follows it in run and pmap files) and the 64 bytes at check_off (a segment's last
 * record: its checksum covers its bytes, its position and its commit time, which never
 * repeats). Two files of one name with the same identity and length hold the same bytes; a
 * file whose first `size` bytes have the identity of an older copy of `size` bytes holds them
 * as its prefix (committed records never change in place). Reads through fd; false if it cannot.
 */
bool backup_file_id(int fd, uint64_t size, uint64_t check_off, uint64_t *id);

#endif
