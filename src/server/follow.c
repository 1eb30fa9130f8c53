/*
 * follow.c — what a cluster node takes from the others besides the log (docs/cluster.md,
 * "Definitions on every node"):
 *
 *   - the definitions of projections, sagas and connectors made on the leader after this node
 *     started: a thread applies $projections, $sagas and $connectors as they grow (every
 *     FOLLOW_MS), so a follower runs what the leader runs and a new leader has it all;
 *   - the secrets those definitions need and the log must not hold (a PostgreSQL password, a
 *     sink's signing secrets): the node that writes a secrets file shares it through the
 *     cluster's key-value bucket before it records the definition, and a node takes every
 *     shared file before it applies definitions (at start, and when one of those streams grew).
 *
 * Standalone, none of this runs.
 */
#include "api.h"

#include "../base/log.h"
#include "../cluster/cluster.h"
#include "../connect/connect.h"
#include "../io/io.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define FOLLOW_MS 100

static const char *const DIRS[] = {"projections", "connectors"};

/* The folder a shared file's kind lives under: projections' under --projections-dir. */
static const char *root_of(const server *s, const char *kind) {
    return !strcmp(kind, "projections") && s->cfg.projections_dir ? s->cfg.projections_dir
           : s->cfg.data_dir                                      ? s->cfg.data_dir
                                                                  : ".";
}

/* A shared name: KIND/FILE (FILE one component, ending in .secret); false if it is not one. */
static bool shared_name(const char *name, char kind[16], const char **file) {
    const char *slash = strchr(name, '/');
    if (!slash || (size_t)(slash - name) >= 16) return false;
    snprintf(kind, 16, "%.*s", (int)(slash - name), name);
    *file = slash + 1;
    size_t n = strlen(*file);
    bool known = false;
    for (size_t i = 0; i < ARRAY_LEN(DIRS); i++)
        known |= !strcmp(kind, DIRS[i]);
    return known && n > 7 && !strcmp(*file + n - 7, ".secret") && !strchr(*file, '/') && (*file)[0] != '.';
}

int server_share_secret(void *ctx, const char *path, factum_error_t *err) {
    server *s = ctx;
    if (!s->cfg.cluster) return 0;
    /* its name: the last two components of path (KIND/NAME.secret) */
    const char *file = strrchr(path, '/');
    const char *kind = file;
    while (kind && kind > path && kind[-1] != '/')
        kind--;
    if (!file || kind == file) return err_set(err, FACTUM_EINVAL, "not a secrets file: %s", path);
    char name[600], k[16];
    const char *f;
    snprintf(name, sizeof name, "%s", kind);
    if (!shared_name(name, k, &f)) return err_set(err, FACTUM_EINVAL, "not a secrets file: %s", path);
    char *text = NULL;
    size_t n = 0;
    int e = io_read_file(path, &text, &n);
    if (e && e != -ENOENT) return err_set(err, FACTUM_EIO, "cannot read %s: %s", path, strerror(-e));
    int rc = cluster_secret_put(s->cfg.cluster, name, e ? NULL : text, n, err);
    if (text) memset(text, 0, n);
    free(text);
    return rc;
}

/* Writes one shared file where this node keeps it, unless it holds the same already. */
static void take_one(void *ctx, const char *name, const void *data, size_t n) {
    server *s = ctx;
    char kind[16], dir[4200], path[4400];
    const char *file;
    if (!shared_name(name, kind, &file)) return;
    snprintf(dir, sizeof dir, "%s/%s", root_of(s, kind), kind);
    snprintf(path, sizeof path, "%s/%s", dir, file);
    char *have = NULL;
    size_t hn = 0;
    bool same = io_read_file(path, &have, &hn) == 0 && hn == n && !memcmp(have, data, n);
    if (have) memset(have, 0, hn);
    free(have);
    int e = same ? 0 : io_make_dir(dir);
    if (!same && !e) e = io_replace_file(path, data, n, 0600);
    if (e) log_msg(LOG_LEVEL_ERROR, "cannot keep the cluster's secret %s in %s: %s", name, path, strerror(-e));
}

int server_take_secrets(server *s, factum_error_t *err) {
    return s->cfg.cluster ? cluster_secrets_each(s->cfg.cluster, take_one, s, err) : 0;
}

/* ---- the thread ---- */

static int64_t grown(server *s) {
    int64_t sum = 0;
    const char *streams[] = {"$projections", "$sagas", "$connectors"};
    for (size_t i = 0; i < ARRAY_LEN(streams); i++)
        sum += factum_stream_revision(s->db, str_c(streams[i])) + 1;
    return sum;
}

static void *follow_main(void *arg) {
    server *s = arg;
    int64_t seen = grown(s);
    while (!atomic_load(&s->stopping)) {
        usleep(FOLLOW_MS * 1000);
        int64_t now = grown(s);
        if (now == seen) continue; /* one lookup per stream when nothing is new */
        factum_error_t err;
        if (server_take_secrets(s, &err)) {
            log_msg(LOG_LEVEL_WARN, "definitions: the cluster's secrets: %s (trying again)", err.message);
            continue;
        }
        int rc = projections_follow(s->projections, &err);
        if (!rc) rc = sagas_follow(s->sagas, &err);
        if (!rc) rc = connectors_follow(s->connectors, &err);
        if (rc)
            log_msg(LOG_LEVEL_ERROR, "definitions: applying what the leader defined: %s", err.message);
        else
            seen = now;
    }
    return NULL;
}

int server_follow_start(server *s, factum_error_t *err) {
    if (!s->cfg.cluster) return 0;
    if (pthread_create(&s->follower, NULL, follow_main, s))
        return err_set(err, FACTUM_ENOMEM, "cannot start the definitions' follower thread");
    s->follower_started = true;
    return 0;
}

void server_follow_stop(server *s) {
    if (!s->follower_started) return;
    pthread_join(s->follower, NULL); /* s->stopping is set */
    s->follower_started = false;
}
