/*
 * folder.c — the data folder's own files beside log/ and index/ (folder.h): DIR/FORMAT, the
 * format version, read and upgraded on open; and a backup's DIR/BACKUP manifest and
 * DIR/BACKUP-IN-PROGRESS marker, which tell a finished backup from one that was stopped half-way
 * (docs/format.md, "Format versions" and "Backups").
 */
#include "folder.h"

#include "../io/io.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* ---- the format version ---- */

int folder_format_read(const char *dir, int *version, factum_error_t *err) {
    char path[PATH_MAX], *text;
    size_t len;
    snprintf(path, sizeof path, "%s/%s", dir, FOLDER_FORMAT_FILE);
    int e = io_read_file(path, &text, &len);
    if (e == -ENOENT) {
        *version = 1;
        return 0;
    }
    if (e) return err_set(err, FACTUM_EIO, "cannot read %s: %s", path, strerror(-e));
    int v = 0, n = 0;
    bool ok = sscanf(text, "factum-format %d%n", &v, &n) == 1 && v >= 1 && (text[n] == '\n' || !text[n]);
    free(text);
    if (!ok)
        return err_set(err, FACTUM_EFORMAT, "%s does not say which format the folder has (\"factum-format N\")", path);
    if (v > FOLDER_FORMAT_MAX)
        return err_set(err, FACTUM_EFORMAT,
                       "data folder %s has format version %d, and this factum (%s) reads versions up to %d: open it "
                       "with a newer factum",
                       dir, v, FACTUM_VERSION, FOLDER_FORMAT_MAX);
    *version = v;
    return 0;
}

static int format_write(const char *dir, int version, factum_error_t *err) {
    char path[PATH_MAX], text[32];
    snprintf(path, sizeof path, "%s/%s", dir, FOLDER_FORMAT_FILE);
    int n = snprintf(text, sizeof text, "factum-format %d\n", version);
    int e = io_replace_file(path, text, (size_t)n, 0644);
    return e ? err_set(err, FACTUM_EIO, "cannot write %s: %s", path, strerror(-e)) : 0;
}

int folder_format_write(const char *dir, factum_error_t *err) { return format_write(dir, FOLDER_FORMAT, err); }

int folder_format_raise(const char *dir, int version, factum_error_t *err) {
    int v;
    int rc = folder_format_read(dir, &v, err);
    return rc ? rc : v >= version ? 0 : format_write(dir, version, err);
}

int folder_refuse_incomplete(const char *dir, factum_error_t *err) {
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, BACKUP_MARKER);
    if (access(path, F_OK)) return 0;
    backup_manifest m;
    factum_error_t why;
    int rc = backup_manifest_read(dir, &m, &why);
    if (!rc) {
        backup_manifest_free(&m); /* finished; stopped only before the marker went */
        return 0;
    }
    return err_set(err, FACTUM_EINCOMPLETE,
                   "%s is an unfinished backup or restore: it holds %s and %s, so it was stopped before it finished "
                   "and may lack events; run the backup (or restore) again",
                   dir, BACKUP_MARKER,
                   rc == FACTUM_ENOTFOUND ? "no BACKUP manifest" : "a BACKUP that does not check out");
}

int folder_open(const char *dir, int *found, factum_error_t *err) {
    int rc = folder_refuse_incomplete(dir, err);
    if (!rc) rc = folder_format_read(dir, found, err);
    if (rc) return rc;
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, FOLDER_FORMAT_FILE);
    if (access(path, F_OK) == 0) return 0;
    /* No FORMAT: a new folder, or one an older factum wrote (it has a first segment). Version 1
       differs from 2 only by this file, so writing it is the whole upgrade. */
    snprintf(path, sizeof path, "%s/log/00000000.seg", dir);
    if (access(path, F_OK)) *found = FOLDER_FORMAT;
    return folder_format_write(dir, err);
}

/* ---- where a copy goes ---- */

/* The absolute path of p, which may not exist yet (its parent must). */
static int abs_path(const char *p, char *out, factum_error_t *err) {
    if (strlen(p) > FACTUM_MAX_DIR) return err_set(err, FACTUM_EINVAL, "path is longer than %d bytes", FACTUM_MAX_DIR);
    if (realpath(p, out)) return 0;
    if (errno != ENOENT) return err_set(err, FACTUM_EINVAL, "cannot use %s: %s", p, strerror(errno));
    char parent[PATH_MAX];
    snprintf(parent, sizeof parent, "%s", p);
    size_t n = strlen(parent);
    while (n > 1 && parent[n - 1] == '/')
        parent[--n] = 0;
    char *slash = strrchr(parent, '/'), *base = slash ? slash + 1 : parent, up[PATH_MAX];
    if (!strcmp(base, ".") || !strcmp(base, ".."))
        return err_set(err, FACTUM_EINVAL, "cannot use %s: %s", p, strerror(ENOENT));
    if (slash == parent)
        snprintf(up, sizeof up, "/");
    else if (slash)
        *slash = 0, snprintf(up, sizeof up, "%s", parent);
    else
        snprintf(up, sizeof up, ".");
    char real[PATH_MAX];
    if (!realpath(up, real))
        return err_set(err, FACTUM_EINVAL, "cannot use %s: the folder %s above it: %s", p, up, strerror(errno));
    if (strlen(real) + strlen(base) + 2 > PATH_MAX) return err_set(err, FACTUM_EINVAL, "path %s is too long", p);
    snprintf(out, PATH_MAX, "%s%s%s", real, strcmp(real, "/") ? "/" : "", base);
    return 0;
}

int folder_outside(const char *to, const char *dir, const char *what, factum_error_t *err) {
    char a[PATH_MAX], b[PATH_MAX];
    int rc = abs_path(to, a, err);
    if (!rc) rc = abs_path(dir, b, err);
    if (rc) return rc;
    size_t n = strlen(b);
    if (!strncmp(a, b, n) && (a[n] == '/' || !a[n]))
        return err_set(err, FACTUM_EINVAL, "%s is inside %s: %s must go to a folder outside it", to, dir, what);
    return 0;
}

int folder_target(const char *to, bool restore, char *real, factum_error_t *err) {
    int rc = abs_path(to, real, err);
    if (rc) return rc;
    DIR *d = opendir(real);
    if (!d && errno == ENOENT) return 0;
    if (!d) return err_set(err, FACTUM_EINVAL, "cannot use %s: %s", to, strerror(errno));
    bool other = false, backup = false;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        if (!strcmp(de->d_name, BACKUP_MANIFEST) || !strcmp(de->d_name, BACKUP_MARKER)) backup = true;
        other = true;
    }
    closedir(d);
    if (!other || (backup && !restore)) return 0;
    return err_set(err, FACTUM_EINVAL,
                   restore ? "%s is not empty: a restore goes to a new or empty folder"
                           : "%s is not empty and holds no backup: give a new or empty folder, or an earlier backup",
                   to);
}

/* ---- the backup manifest ---- */

bool backup_file_id(int fd, uint64_t size, uint64_t check_off, uint64_t *id) {
    uint8_t a[128] = {0};
    size_t n = (size_t)MIN(size, 64), m = 0;
    if (pread(fd, a, n, 0) != (ssize_t)n) return false;
    if (check_off) {
        m = (size_t)MIN(size - MIN(size, check_off), 64);
        if (pread(fd, a + n, m, (off_t)check_off) != (ssize_t)m) return false;
    }
    /* Not a CRC: a header ending in the CRC of what comes before has a CRC32C that is the same
       for every such header. */
    *id = hash64(a, n + m, size);
    return true;
}

int backup_manifest_add(backup_manifest *m, const char *name, uint64_t size, uint64_t check_off, uint64_t id) {
    if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 64;
        backup_file *v = realloc(m->files, cap * sizeof *v);
        if (!v) return FACTUM_ENOMEM;
        m->files = v, m->cap = cap;
    }
    backup_file *f = &m->files[m->n++];
    snprintf(f->name, sizeof f->name, "%s", name);
    f->size = size, f->check_off = check_off, f->id = id;
    return 0;
}

const backup_file *backup_manifest_find(const backup_manifest *m, const char *name) {
    for (size_t i = 0; i < m->n; i++)
        if (!strcmp(m->files[i].name, name)) return &m->files[i];
    return NULL;
}

void backup_manifest_free(backup_manifest *m) {
    free(m->files);
    *m = (backup_manifest){0};
}

int backup_manifest_write(const char *dir, const backup_manifest *m, factum_error_t *err) {
    buf_t b = {0};
    int rc = buf_printf(&b, "factum-backup 1\nformat %d\nposition %llu\ntime %lld\nmade %lld\n", FOLDER_FORMAT,
                        (unsigned long long)m->position, (long long)m->time_us, (long long)m->made_us);
    for (size_t i = 0; i < m->n && !rc; i++)
        rc = buf_printf(&b, "file %s %llu %llu %016llx\n", m->files[i].name, (unsigned long long)m->files[i].size,
                        (unsigned long long)m->files[i].check_off, (unsigned long long)m->files[i].id);
    if (!rc) rc = buf_printf(&b, "crc %08x\n", crc32c(b.ptr, b.len));
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, BACKUP_MANIFEST);
    int e = rc ? -ENOMEM : io_replace_file(path, b.ptr, b.len, 0644);
    buf_free(&b);
    return e ? err_set(err, e == -ENOMEM ? FACTUM_ENOMEM : FACTUM_EIO, "cannot write %s: %s", path, strerror(-e)) : 0;
}

int backup_manifest_read(const char *dir, backup_manifest *m, factum_error_t *err) {
    char path[PATH_MAX], *text;
    size_t len;
    *m = (backup_manifest){0};
    snprintf(path, sizeof path, "%s/%s", dir, BACKUP_MANIFEST);
    int e = io_read_file(path, &text, &len);
    if (e == -ENOENT) return err_set(err, FACTUM_ENOTFOUND, "%s has no backup manifest (%s)", dir, BACKUP_MANIFEST);
    if (e) return err_set(err, FACTUM_EIO, "cannot read %s: %s", path, strerror(-e));
    char *crcline = strstr(text, "crc ");
    unsigned crc, format;
    unsigned long long pos;
    long long t, made;
    int rc = FACTUM_ECORRUPT;
    if (!crcline || sscanf(crcline, "crc %x", &crc) != 1 || crc != crc32c(text, (size_t)(crcline - text)) ||
        sscanf(text, "factum-backup 1\nformat %u\nposition %llu\ntime %lld\nmade %lld\n", &format, &pos, &t, &made) !=
            4)
        goto out;
    *crcline = 0;
    m->position = pos, m->time_us = t, m->made_us = made;
    for (char *line = strstr(text, "\nfile "); line; line = strstr(line + 1, "\nfile ")) {
        char name[BACKUP_NAME_MAX + 1];
        unsigned long long size, off, id;
        if (sscanf(line, "\nfile %40s %llu %llu %llx", name, &size, &off, &id) != 4 ||
            strlen(name) >= BACKUP_NAME_MAX || strstr(name, "..") || name[0] == '/')
            goto out;
        if (backup_manifest_add(m, name, size, off, id)) {
            rc = FACTUM_ENOMEM;
            goto out;
        }
    }
    rc = 0;
out:
    free(text);
    if (!rc) return 0;
    backup_manifest_free(m);
    return rc == FACTUM_ENOMEM ? err_set(err, rc, "out of memory reading %s", path)
                               : err_set(err, rc, "%s does not check out (an unfinished or damaged write)", path);
}
