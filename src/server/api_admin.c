/*
 * api_admin.c — the scavenger thread and /admin/scavenge (issue 5; docs/lifecycle.md).
 *
 *   POST /admin/scavenge   starts a scavenge (202 and its progress; 200 if one is running)
 *   GET  /admin/scavenge   progress of the running or last scavenge
 *
 * One thread per server runs scavenges: when asked, and every `scavenge_every_s` seconds. It
 * only calls factum_scavenge, which does its own locking; the loops read progress through
 * factum_scavenge_stats.
 */
#include "api.h"

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
    bool stop, asked;
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
        sv->asked = false;
        pthread_mutex_unlock(&sv->mu);
        factum_error_t err;
        int rc = factum_scavenge(sv->db, &err);
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

/* GET /admin/scavenge (progress) and POST /admin/scavenge (start one). */
void api_scavenge(conn *c, const route_args *a, factum_str_t body) {
    (void)a, (void)body;
    server *s = c->l->srv;
    bool post = route_method(c->req->h.method) == ROUTE_POST;
    factum_scavenge_stats_t st;
    factum_scavenge_stats(s->db, &st);
    int status = 200;
    if (post && !st.running) {
        pthread_mutex_lock(&s->scav->mu);
        s->scav->asked = true;
        pthread_cond_signal(&s->scav->cond);
        pthread_mutex_unlock(&s->scav->mu);
        status = 202;
    }
    char out[1024];
    size_t n = factum_scavenge_json(&st, out, sizeof out);
    conn_respond(c, status, "application/json", status == 202 ? "Location: /admin/scavenge\r\n" : NULL, out,
                 MIN(n, sizeof out - 1));
}
