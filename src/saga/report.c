/*
 * report.c — what a saga shows (docs/sagas.md, "Metrics" and "API"): its counts and metric
 * lines, its instances (the active ones and the last that ended), one instance rebuilt from its
 * stream with its history, and its parked inputs. Called from the server's threads; the runner's
 * state is read under its mutex.
 */
#include "runner.h"

#include "../base/json.h"

#include <stdio.h>
#include <stdlib.h>

const double saga_duration_bounds[SAGA_DURATION_BUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                                            1,     2.5,  5,     10,   60,  1e300};

void saga_metrics(saga *s, int family, buf_t *out) {
    const char *n = s->d->name;
    pthread_mutex_lock(&s->mu);
    if (family == 0) {
        for (int k = 0; k < 2; k++)
            buf_printf(out, "factum_saga_instances{saga=\"%s\",status=\"%s\"} %llu\n", n, saga_status_names[k],
                       (unsigned long long)s->counts[k]);
    } else if (family == 1) {
        for (int k = 2; k < 5; k++)
            buf_printf(out, "factum_saga_ended_total{saga=\"%s\",status=\"%s\"} %llu\n", n, saga_status_names[k],
                       (unsigned long long)s->counts[k]);
    } else if (family == 2) {
        buf_printf(out, "factum_saga_parked_total{saga=\"%s\"} %llu\n", n, (unsigned long long)s->parked);
    } else {
        for (int k = 0; k < SAGA_DURATION_BUCKETS; k++) {
            if (k == SAGA_DURATION_BUCKETS - 1)
                buf_printf(out, "factum_saga_duration_seconds_bucket{saga=\"%s\",le=\"+Inf\"} %llu\n", n,
                           (unsigned long long)s->dur[k]);
            else
                buf_printf(out, "factum_saga_duration_seconds_bucket{saga=\"%s\",le=\"%g\"} %llu\n", n,
                           saga_duration_bounds[k], (unsigned long long)s->dur[k]);
        }
        buf_printf(out,
                   "factum_saga_duration_seconds_sum{saga=\"%s\"} "
                   "%.6f\nfactum_saga_duration_seconds_count{saga=\"%s\"} %llu\n",
                   n, s->dur_sum_s, n, (unsigned long long)s->dur_n);
    }
    pthread_mutex_unlock(&s->mu);
}

void saga_status(saga *s, bool with_definition, buf_t *out) {
    pthread_mutex_lock(&s->mu);
    buf_append(out, "{\"name\":", 8);
    json_escape(out, s->d->name, strlen(s->d->name));
    buf_printf(out, ",\"position\":%llu", (unsigned long long)s->position);
    for (int k = 0; k < 5; k++)
        buf_printf(out, ",\"%s\":%llu", saga_status_names[k], (unsigned long long)s->counts[k]);
    buf_printf(out, ",\"parked\":%llu", (unsigned long long)s->parked);
    pthread_mutex_unlock(&s->mu);
    if (with_definition) buf_append(out, ",\"definition\":", 14), buf_append(out, s->d->json.ptr, s->d->json.len);
    buf_append(out, "}", 1);
}

static void instance_json(buf_t *out, const char *id, int status, const char *step_name, int64_t started,
                          int64_t ended_us) {
    char t[32];
    buf_append(out, "{\"id\":", 6);
    json_escape(out, id, strlen(id));
    buf_printf(out, ",\"status\":\"%s\",\"step\":", saga_status_names[status]);
    if (step_name)
        json_escape(out, step_name, strlen(step_name));
    else
        buf_append(out, "null", 4);
    time_format_rfc3339(started, t);
    buf_printf(out, ",\"started\":\"%s\",\"ended\":", t);
    if (ended_us)
        time_format_rfc3339(ended_us, t), buf_printf(out, "\"%s\"}", t);
    else
        buf_append(out, "null}", 5);
}

int saga_instances(saga *s, const char *status, buf_t *out, factum_error_t *err) {
    int want = -1;
    for (int k = 0; status && k < 5; k++)
        if (!strcmp(status, saga_status_names[k])) want = k;
    if (status && want < 0)
        return err_set(err, FACTUM_EINVAL, "status is running, compensating, completed, failed or compensation_failed");
    buf_append(out, "[", 1);
    bool first = true;
    pthread_mutex_lock(&s->mu);
    for (inst *i = s->active; i; i = i->next) {
        if (want >= 0 && i->c.status != want) continue;
        if (!first) buf_append(out, ",", 1);
        first = false;
        int k = saga_shown_step(s->d, i);
        instance_json(out, i->id, i->c.status, k >= 0 ? s->d->steps[k].name : NULL, i->started_us, 0);
    }
    for (size_t k = 0; k < s->nended; k++) {
        const ended *e = &s->ended[(s->ended_at + ENDED_KEPT - 1 - k) % ENDED_KEPT];
        if (want >= 0 && e->status != want) continue;
        if (!first) buf_append(out, ",", 1);
        first = false;
        instance_json(out, e->id, e->status, e->step >= 0 ? s->d->steps[e->step].name : NULL, e->started_us,
                      e->ended_us);
    }
    pthread_mutex_unlock(&s->mu);
    buf_append(out, "]", 1);
    return 0;
}

int saga_instance(saga *s, const char *id, buf_t *out, factum_error_t *err) {
    inst *i = saga_load(s, id, UINT64_MAX);
    if (!i) return err_set(err, FACTUM_ENOTFOUND, "saga %s has no instance %s", s->d->name, id);
    buf_t name = {0};
    saga_state_stream(s, id, &name);
    buf_append(out, "{\"id\":", 6);
    json_escape(out, id, strlen(id));
    buf_printf(out, ",\"status\":\"%s\",\"step\":", saga_status_names[i->c.status]);
    int k = saga_shown_step(s->d, i);
    if (k < 0)
        buf_append(out, "null", 4);
    else
        json_escape(out, s->d->steps[k].name, strlen(s->d->steps[k].name));
    buf_append(out, ",\"context\":", 11);
    buf_append(out, i->ctx.ptr, i->ctx.len);
    buf_append(out, ",\"history\":[", 12);
    factum_result_t *r;
    if (factum_read_stream(s->db, (factum_str_t){name.ptr, name.len}, 0, 10000, 0, &r, NULL) == 0) {
        for (size_t q = 0; q < factum_result_count(r); q++) {
            const factum_event_t *e = factum_result_event(r, q);
            char t[32];
            time_format_rfc3339(e->time_us, t);
            if (q) buf_append(out, ",", 1);
            buf_append(out, "{\"type\":", 8);
            json_escape(out, e->type.ptr, e->type.len);
            buf_printf(out, ",\"time\":\"%s\",\"position\":%llu,\"data\":%.*s}", t, (unsigned long long)e->position,
                       (int)e->data.len, e->data.ptr);
        }
        factum_result_free(r);
    }
    buf_append(out, "]}", 2);
    buf_free(&name);
    saga_inst_free(i);
    return 0;
}

int saga_parked(saga *s, buf_t *out, factum_error_t *err) {
    (void)err;
    buf_t name = {0};
    buf_printf(&name, "$sagaparked-%s", s->d->name);
    buf_append(out, "[", 1);
    factum_result_t *r;
    if (factum_read_stream(s->db, (factum_str_t){name.ptr, name.len}, 0, 10000, 0, &r, NULL) == 0) {
        for (size_t k = 0; k < factum_result_count(r); k++) {
            if (k) buf_append(out, ",", 1);
            buf_append(out, factum_result_event(r, k)->data.ptr, factum_result_event(r, k)->data.len);
        }
        factum_result_free(r);
    }
    buf_append(out, "]", 1);
    buf_free(&name);
    return 0;
}
