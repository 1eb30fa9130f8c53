/*
 * api_admin.c — the scavenger thread and /admin/scavenge (issue 5; docs/lifecycle.md), and
 * /admin/backup (docs/operations.md).
 *
 *   POST /admin/scavenge   starts a scavenge (202 and its progress; 200 if one is running)
 *   GET  /admin/scavenge   progress of the running or last scavenge
 *   POST /admin/backup     copies the store into a folder on this machine, on a worker; answers
 *                          when done: the position and bytes (and the check, with "verify")
 *   GET  /admin/archive    what is where: segments and bytes on the fast disk and in the archive
 *   POST /admin/archive    runs an archival pass now, on a worker; answers when it is done
 *
 * One thread per server runs scavenges: when asked, and every `scavenge_every_s` seconds. It
 * only calls factum_scavenge, which does its own locking; the loops read progress through
 * factum_scavenge_stats.
 */
#include "api.h"

#include "../base/json.h"
#include "../base/log.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

struct scavenger {
    factum_t *db;
    uint64_t every_s;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    bool stop, asked, dry; /* dry: the run asked for is a dry run (factum_scavenge_dry_run) */
};

static void *scavenger_main(void *arg) {
    scavenger_t *sv = arg;
    pthread_mutex_lock(&sv->mu);
    while (!sv->stop) {
        /* Without a schedule the timeout only wakes the thread daily; runs happen when asked.
           A period, so measured on the monotonic clock (a stepped wall clock does not move it). */
        struct timespec next =
            clock_mono_after((int64_t)MIN(sv->every_s ? sv->every_s : 86400, (uint64_t)INT32_MAX) * 1000000);
        int w = 0;
        while (!sv->stop && !sv->asked && w != ETIMEDOUT)
            w = pthread_cond_timedwait(&sv->cond, &sv->mu, &next);
        if (sv->stop) break;
        if (!sv->asked && !sv->every_s) continue;
        bool dry = sv->asked && sv->dry;
        sv->asked = sv->dry = false;
        pthread_mutex_unlock(&sv->mu);
        factum_error_t err;
        int rc = dry ? factum_scavenge_dry_run(sv->db, &err) : factum_scavenge(sv->db, &err);
        if (rc && rc != FACTUM_ECLOSED) log_msg(LOG_LEVEL_ERROR, "scavenge stopped: %s", err.message);
        pthread_mutex_lock(&sv->mu);
    }
    pthread_mutex_unlock(&sv->mu);
    return NULL;
}

int scavenger_open(factum_t *db, uint64_t every_s, scavenger_t **out, factum_error_t *err) {
    scavenger_t *sv = calloc(1, sizeof *sv);
    if (!sv) return err_set(err, FACTUM_ENOMEM, "out of memory");
    sv->db = db, sv->every_s = every_s;
    pthread_mutex_init(&sv->mu, NULL);
    clock_mono_cond_init(&sv->cond);
    if (pthread_create(&sv->thread, NULL, scavenger_main, sv)) {
        free(sv);
        return err_set(err, FACTUM_ENOMEM, "cannot start the scavenger thread");
    }
    *out = sv;
    return 0;
}

void scavenger_close(scavenger_t *sv) {
    if (!sv) return;
    pthread_mutex_lock(&sv->mu);
    sv->stop = true;
    pthread_cond_signal(&sv->cond);
    pthread_mutex_unlock(&sv->mu);
    factum_scavenge_cancel(sv->db);
    pthread_join(sv->thread, NULL);
    pthread_mutex_destroy(&sv->mu);
    pthread_cond_destroy(&sv->cond);
    free(sv);
}

/* GET /admin/scavenge (progress) and POST /admin/scavenge[?dry_run=true] (start one, or a dry
   run that only counts what a scavenge would give back). */
void api_scavenge(conn *c, const route_args *a, factum_str_t body) {
    (void)a, (void)body;
    server *s = c->l->srv;
    bool post = route_method(c->req->h.method) == ROUTE_POST, dry = false;
    factum_str_t q = c->req->h.query;
    if (post && q.len) {
        if (str_eq(q, str_c("dry_run=true")))
            dry = true;
        else if (!str_eq(q, str_c("dry_run=false"))) {
            conn_problem(c, 400, "bad-request", NULL, "the only query parameter is dry_run=true|false");
            return;
        }
    }
    factum_scavenge_stats_t st;
    factum_scavenge_stats(s->db, &st);
    int status = 200;
    if (post && !st.running) {
        pthread_mutex_lock(&s->scav->mu);
        s->scav->asked = true, s->scav->dry = dry;
        pthread_cond_signal(&s->scav->cond);
        pthread_mutex_unlock(&s->scav->mu);
        status = 202;
    }
    char out[1024];
    size_t n = factum_scavenge_json(&st, out, sizeof out);
    conn_respond(c, status, "application/json", status == 202 ? "Location: /admin/scavenge\r\n" : NULL, out,
                 MIN(n, sizeof out - 1));
}

/* ---- POST /admin/backup {"to": "/abs/dir", "verify": false} ---- */

typedef struct backup_job {
    buf_t to;
    bool verify;
    int rc;
    factum_error_t err;
    factum_backup_stats_t st;
    factum_check_summary_t sum;
} backup_job;

static void backup_free(void *p) {
    backup_job *j = p;
    buf_free(&j->to);
    free(j);
}

static void backup_work(conn *c) {
    backup_job *j = c->job;
    j->rc = factum_backup(c->l->srv->db, j->to.ptr, NULL, NULL, &j->st, &j->err);
    if (!j->rc && j->verify) j->rc = factum_check(j->to.ptr, NULL, NULL, NULL, &j->sum, &j->err);
}

static void backup_done(conn *c) {
    backup_job *j = c->job;
    c->job = NULL;
    if (j->rc == FACTUM_EINVAL)
        conn_problem(c, 400, "bad-request", NULL, "%s", j->err.message);
    else if (j->rc == FACTUM_ECONFLICT || j->rc == FACTUM_ELOCKED)
        conn_problem(c, 409, "conflict", NULL, "%s", j->err.message);
    else if (j->rc)
        server_problem(c, j->rc, j->err.message);
    else {
        char st[512];
        size_t n = factum_backup_json(&j->st, st, sizeof st);
        buf_t b = {0};
        buf_printf(&b, "{\"to\":");
        json_escape(&b, j->to.ptr, j->to.len);
        buf_printf(&b, ",%.*s", (int)(n - 2), st + 1); /* the stats' members, without their braces */
        if (j->verify)
            buf_printf(&b, ",\"verify\":{\"damage\":%llu,\"derived\":%llu,\"notes\":%llu,\"clean\":%s}",
                       (unsigned long long)j->sum.damage, (unsigned long long)j->sum.derived,
                       (unsigned long long)j->sum.notes, j->sum.damage || j->sum.derived ? "false" : "true");
        buf_printf(&b, "}");
        conn_respond(c, 200, "application/json", NULL, b.ptr, b.len);
        buf_free(&b);
    }
    backup_free(j);
}

void api_backup(conn *c, const route_args *a, factum_str_t body) {
    (void)a;
    factum_str_t v;
    int kind;
    factum_error_t err;
    static const char *const members[] = {"to", "verify", NULL};
    if (!json_valid(body.ptr, body.len, &kind) || kind != JSON_OBJECT) {
        conn_problem(c, 400, "bad-request", NULL, "the body must be a JSON object {\"to\": \"/folder\", \"verify\"?}");
        return;
    }
    if (json_only_members(body, "a backup", members, &err)) {
        conn_problem(c, 400, "bad-request", NULL, "%s", err.message);
        return;
    }
    backup_job *j = calloc(1, sizeof *j);
    if (!j) {
        conn_problem(c, 503, "unavailable", NULL, "out of memory");
        return;
    }
    if (!json_member_string(body, "to", &j->to) || !j->to.len || j->to.ptr[0] != '/' ||
        memchr(j->to.ptr, 0, j->to.len)) {
        conn_problem(
            c, 400, "bad-request", NULL,
            "'to' must be an absolute path of a folder on the server's machine: new, empty, or an earlier backup");
        backup_free(j);
        return;
    }
    if (json_member(body, "verify", &v, &kind) && kind != JSON_TRUE && kind != JSON_FALSE) {
        conn_problem(c, 400, "bad-request", NULL, "'verify' must be true or false");
        backup_free(j);
        return;
    }
    j->verify = json_member(body, "verify", &v, &kind) && kind == JSON_TRUE;
    c->job = j;
    server_submit_job(c, backup_work, backup_done, backup_free);
}

/* ---- /admin/archive (docs/operations.md, "Archival") ---- */

typedef struct archive_job {
    int rc;
    factum_error_t err;
    factum_archive_stats_t st;
} archive_job;

static void archive_respond(conn *c, int status, const factum_archive_stats_t *st) {
    char out[4096 + FACTUM_MAX_DIR];
    size_t n = factum_archive_json(st, out, sizeof out);
    conn_respond(c, status, "application/json", NULL, out, MIN(n, sizeof out - 1));
}

static void archive_work(conn *c) {
    archive_job *j = c->job;
    j->rc = factum_archive(c->l->srv->db, &j->st, &j->err);
}

static void archive_done(conn *c) {
    archive_job *j = c->job;
    c->job = NULL;
    if (j->rc == FACTUM_EINVAL)
        conn_problem(c, 409, "conflict", NULL, "%s", j->err.message);
    else if (j->rc)
        server_problem(c, j->rc, j->err.message);
    else
        archive_respond(c, 200, &j->st);
    free(j);
}

void api_archive(conn *c, const route_args *a, factum_str_t body) {
    (void)a;
    if (route_method(c->req->h.method) == ROUTE_GET) {
        factum_archive_stats_t *st = malloc(sizeof *st);
        if (!st) {
            conn_problem(c, 503, "unavailable", NULL, "out of memory");
            return;
        }
        factum_archive_stats(c->l->srv->db, st);
        archive_respond(c, 200, st);
        free(st);
        return;
    }
    if (body.len) {
        conn_problem(c, 400, "bad-request", NULL, "POST /admin/archive takes no body: it runs a pass now");
        return;
    }
    archive_job *j = calloc(1, sizeof *j);
    if (!j) {
        conn_problem(c, 503, "unavailable", NULL, "out of memory");
        return;
    }
    c->job = j;
    server_submit_job(c, archive_work, archive_done, free);
}
