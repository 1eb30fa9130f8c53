/*
 * registry.c — the connectors: the list (a mutex), definitions changed one at a time (define_mu,
 * so the order of $connectors records is the order the list saw), start-up replay of
 * $connectors, and what GET /connectors shows. A sink delivers through a consumer group of its
 * own, `sink.NAME`, made and redefined here with the group engine's own prepare / append /
 * apply, so parking, replay and the state's durability are the groups' (docs/groups.md).
 *
 * Order of writes: a definition keeps its secrets file, then records ConnectorDefined, then
 * defines its group (a crash between the two: the start defines the missing group). A deletion
 * records ConnectorDeleted first, then deletes the group (a crash between: a group no
 * connector uses, which DELETE /groups/sink.NAME removes).
 */
#include "connector.h"

#include "../base/json.h"
#include "../base/log.h"
#include "../group/groups.h"
#include "../sys/defs.h"

#include <stdio.h>
#include <stdlib.h>

static connector *find(connectors_t *cs, const char *name) {
    for (connector *c = cs->list; c; c = c->next)
        if (!strcmp(c->name, name)) return c;
    return NULL;
}

/* name's connector, found under the list's mutex (define_mu held: it stays there). */
static connector *lookup(connectors_t *cs, const char *name) {
    pthread_mutex_lock(&cs->mu);
    connector *c = find(cs, name);
    pthread_mutex_unlock(&cs->mu);
    return c;
}

size_t connectors_count(connectors_t *cs) {
    pthread_mutex_lock(&cs->mu);
    size_t n = cs->n;
    pthread_mutex_unlock(&cs->mu);
    return n;
}

/* Appends one record of type to stream, durable on return; its position in *pos. */
static int append_record(connectors_t *cs, const char *stream, const char *type, const buf_t *rec, uint64_t *pos,
                         factum_error_t *err) {
    factum_event_t e = {.type = str_c(type), .data = {rec->ptr, rec->len}, .data_format = FACTUM_DATA_JSON};
    factum_append_result_t res;
    int rc = factum_append(cs->env.db, str_c(stream), FACTUM_EXPECT_ANY, &e, 1, &res, err);
    if (!rc && pos) *pos = res.last_position;
    return rc;
}

/* Defines (or redefines) the sink's group from its definition, as PUT /groups/{g} would. */
static int define_group(connectors_t *cs, const char *group, const conn_def *d, const char *owner,
                        factum_error_t *err) {
    buf_t rec = {0};
    bool created;
    uint64_t pos = 0;
    int rc = groups_define_prepare(cs->env.groups, group, (factum_str_t){d->group.ptr, d->group.len}, owner, &rec,
                                   &created, err);
    if (!rc) rc = append_record(cs, GROUPS_STREAM, "GroupDefined", &rec, &pos, err);
    if (!rc) groups_define_apply(cs->env.groups, (factum_str_t){rec.ptr, rec.len}, pos);
    buf_free(&rec);
    return rc;
}

static void delete_group(connectors_t *cs, const char *group) {
    buf_t rec = {0};
    factum_error_t err;
    if (groups_delete_prepare(cs->env.groups, group, &rec, &err) == 0 &&
        append_record(cs, GROUPS_STREAM, "GroupDeleted", &rec, NULL, &err) == 0) {
        groups_delete_apply(cs->env.groups, group);
        char stream[GROUP_MAX_NAME + 8];
        groups_state_stream(group, stream);
        int64_t last = factum_stream_revision(cs->env.db, str_c(stream));
        if (last >= 0) factum_delete_stream(cs->env.db, str_c(stream), last, 0, NULL, NULL);
    }
    buf_free(&rec);
}

static connector *connector_new(connectors_t *cs, const char *name, const char *owner) {
    connector *c = calloc(1, sizeof *c);
    if (!c) abort(); /* the server may stop on out-of-memory (STYLE.md) */
    snprintf(c->name, sizeof c->name, "%s", name);
    snprintf(c->group, sizeof c->group, SINK_GROUP_PREFIX "%s", name);
    snprintf(c->owner, sizeof c->owner, "%s", owner ? owner : "");
    c->cs = cs;
    pthread_mutex_init(&c->mu, NULL);
    clock_mono_cond_init(&c->cond);
    return c;
}

static void connector_free(connector *c) {
    conn_def_free(&c->d);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cond);
    free(c);
}

static void link_in(connectors_t *cs, connector *c) {
    pthread_mutex_lock(&cs->mu);
    c->next = cs->list;
    cs->list = c;
    cs->n++;
    pthread_mutex_unlock(&cs->mu);
}

static void unlink_out(connectors_t *cs, connector *c) {
    pthread_mutex_lock(&cs->mu);
    for (connector **p = &cs->list; *p; p = &(*p)->next)
        if (*p == c) {
            *p = c->next;
            cs->n--;
            break;
        }
    pthread_mutex_unlock(&cs->mu);
}

static int record_definition(connectors_t *cs, connector *c, factum_error_t *err) {
    buf_t def = {0};
    buf_printf(&def, "{%.*s}", (int)c->d.shown.len, c->d.shown.ptr);
    factum_str_t rec = {def.ptr, def.len};
    int rc = defs_record(cs->env.db, CONNECTORS_STREAM, "ConnectorDefined", c->name, rec, c->owner, err);
    if (!rc) c->def_hash = defs_hash(rec);
    buf_free(&def);
    return rc;
}

/* Shares the secrets file of name with a cluster's other nodes (connectors_env.share_secret). */
static int share_secrets(connectors_t *cs, const char *name, factum_error_t *err) {
    if (!cs->env.share_secret) return 0;
    char path[4200];
    conn_def_secrets_path(cs->data_dir, name, path, sizeof path);
    return cs->env.share_secret(cs->env.share_ctx, path, err);
}

/* ---- a connector's thread ---- */

int connector_thread_start(connector *c, void *(*fn)(void *), factum_error_t *err) {
    if (pthread_create(&c->thread, NULL, fn, c))
        return err_set(err, FACTUM_ENOMEM, "cannot start connector %s's thread", c->name);
    c->has_thread = true;
    return 0;
}

void connector_poke(connector *c) {
    pthread_mutex_lock(&c->mu);
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->mu);
}

void connector_thread_stop(connector *c) {
    pthread_mutex_lock(&c->mu);
    c->stop = true;
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->mu);
    if (c->has_thread) pthread_join(c->thread, NULL);
    c->has_thread = false;
}

bool connector_nap(connector *c, int ms) {
    pthread_mutex_lock(&c->mu);
    if (!c->stop) {
        struct timespec at = clock_mono_after((int64_t)ms * 1000);
        pthread_cond_timedwait(&c->cond, &c->mu, &at);
    }
    bool go = !c->stop;
    pthread_mutex_unlock(&c->mu);
    return go;
}

bool connector_stopping(connector *c, bool *paused) {
    pthread_mutex_lock(&c->mu);
    bool stop = c->stop;
    if (paused) *paused = c->paused;
    pthread_mutex_unlock(&c->mu);
    return stop;
}

/* ---- start-up ---- */

static void replay_def(void *ctx, const char *name, factum_str_t def, const char *owner) {
    connectors_t *cs = ctx;
    connector *c = connector_new(cs, name, owner);
    c->def_hash = defs_hash(def);
    factum_error_t err;
    int rc = conn_def_parse(name, def, true, cs->data_dir, &c->d, &err);
    bool sink = c->d.kind == KIND_HTTP_SINK;
    /* A crash between the record and the group: make the group (the node that writes only; a
       cluster follower's groups are the leader's). */
    if (!rc && sink && factum_leads(cs->env.db, NULL) && !groups_has(cs->env.groups, c->group))
        rc = define_group(cs, c->group, &c->d, owner, &err);
    c->paused = c->d.paused;
    if (!rc) rc = connector_thread_start(c, sink ? sink_main : outbox_main, &err);
    if (rc) {
        log_msg(LOG_LEVEL_ERROR, "connector %s not started: %s", name, err.message);
        connector_free(c);
        return;
    }
    link_in(cs, c);
}

/* ---- a cluster follower: what the leader defined and deleted ---- */

/* Takes c out of the list and stops its thread; the leader's record said so. */
static void drop(connectors_t *cs, connector *c) {
    unlink_out(cs, c);
    connector_thread_stop(c);
    connector_free(c);
}

static void follow_defined(void *ctx, const char *name, factum_str_t def, const char *owner) {
    connectors_t *cs = ctx;
    connector *c = lookup(cs, name);
    if (c && c->def_hash == defs_hash(def)) return; /* this registry's own record */
    if (c) drop(cs, c);
    replay_def(cs, name, def, owner);
}

/* The leader deleted it (and its group, or its replication slot): stop it here. */
static void follow_deleted(void *ctx, const char *name, factum_str_t rec) {
    (void)rec;
    connectors_t *cs = ctx;
    connector *c = lookup(cs, name);
    if (!c) return; /* this registry's own record */
    drop(cs, c);
    conn_def_forget_secrets(cs->data_dir, name);
}

int connectors_follow(connectors_t *cs, factum_error_t *err) {
    pthread_mutex_lock(&cs->define_mu);
    int rc = defs_follow(cs->env.db, &cs->follow, cs, err);
    pthread_mutex_unlock(&cs->define_mu);
    return rc;
}

int connectors_open(const connectors_env *env, connectors_t **out, factum_error_t *err) {
    connectors_t *cs = calloc(1, sizeof *cs);
    if (!cs || !(cs->data_dir = strdup(env->data_dir ? env->data_dir : "."))) {
        free(cs);
        return err_set(err, FACTUM_ENOMEM, "out of memory");
    }
    cs->env = *env;
    cs->env.data_dir = cs->data_dir;
    pthread_mutex_init(&cs->mu, NULL);
    pthread_mutex_init(&cs->define_mu, NULL);
    cs->follow =
        (defs_follower){CONNECTORS_STREAM, "ConnectorDefined", "ConnectorDeleted", follow_defined, follow_deleted, 0};
    int rc = defs_replay(env->db, CONNECTORS_STREAM, "ConnectorDefined", "ConnectorDeleted", replay_def, cs,
                         &cs->follow.next, err);
    if (rc) {
        connectors_close(cs);
        return rc;
    }
    *out = cs;
    return 0;
}

void connectors_close(connectors_t *cs) {
    if (!cs) return;
    for (connector *c = cs->list, *next; c; c = next) {
        next = c->next;
        connector_thread_stop(c);
        connector_free(c);
    }
    pthread_mutex_destroy(&cs->mu);
    pthread_mutex_destroy(&cs->define_mu);
    free(cs->data_dir);
    free(cs);
}

/* ---- changes ---- */

int connectors_define(connectors_t *cs, const char *name, factum_str_t body, const char *owner,
                      connectors_admit_fn admit_group, void *ctx, bool *created, buf_t *out, factum_error_t *err) {
    if (!connector_name_ok(name))
        return err_set(err, FACTUM_EINVAL, "connector names are 1 to %d letters, digits, '-' or '_'",
                       CONNECTOR_MAX_NAME);
    pthread_mutex_lock(&cs->define_mu);
    pthread_mutex_lock(&cs->mu);
    connector *old = find(cs, name);
    size_t n = cs->n;
    pthread_mutex_unlock(&cs->mu);
    *created = old == NULL;
    connector *c = connector_new(cs, name, old ? old->owner : owner);
    buf_t probe = {0};
    bool probe_created;
    int rc = !old && n >= CONNECTORS_MAX
                 ? err_set(err, FACTUM_EINVAL, "too many connectors (at most %d)", CONNECTORS_MAX)
                 : conn_def_parse(name, body, false, cs->data_dir, &c->d, err);
    bool sink = !rc && c->d.kind == KIND_HTTP_SINK;
    if (!rc && old && old->d.kind != c->d.kind)
        rc = err_set(err, FACTUM_EINVAL, "a connector's kind cannot change; delete it and define it again");
    /* The group's own checks (source, start, retry), and that its source does not change. */
    if (!rc && sink)
        rc = groups_define_prepare(cs->env.groups, c->group, (factum_str_t){c->d.group.ptr, c->d.group.len}, c->owner,
                                   &probe, &probe_created, err);
    buf_free(&probe);
    if (!rc && sink && probe_created && admit_group) rc = admit_group(ctx, err); /* a new group: a limit */
    if (!rc) rc = conn_def_check(&c->d, cs->env.self_port, err);
    if (!rc) rc = conn_def_keep_secrets(cs->data_dir, name, &c->d, err);
    if (!rc) rc = share_secrets(cs, name, err); /* before the record a follower acts on */
    if (!rc) rc = record_definition(cs, c, err);
    if (!rc && sink) rc = define_group(cs, c->group, &c->d, c->owner, err);
    if (!rc && old) {
        drop(cs, old);
    }
    c->paused = c->d.paused;
    if (!rc) rc = connector_thread_start(c, sink ? sink_main : outbox_main, err);
    if (rc) {
        connector_free(c);
    } else {
        link_in(cs, c);
        connectors_show(cs, name, out);
    }
    pthread_mutex_unlock(&cs->define_mu);
    return rc;
}

int connectors_delete(connectors_t *cs, const char *name, factum_error_t *err) {
    pthread_mutex_lock(&cs->define_mu);
    connector *c = lookup(cs, name);
    int rc = c ? defs_record(cs->env.db, CONNECTORS_STREAM, "ConnectorDeleted", name, (factum_str_t){0}, NULL, err)
               : err_set(err, FACTUM_ENOTFOUND, "no connector %s", name);
    if (!rc) {
        unlink_out(cs, c);
        connector_thread_stop(c);
        if (c->d.kind == KIND_HTTP_SINK)
            delete_group(cs, c->group);
        else
            outbox_drop_slot(&c->d);
        conn_def_forget_secrets(cs->data_dir, name);
        factum_error_t e2;
        if (share_secrets(cs, name, &e2))
            log_msg(LOG_LEVEL_WARN, "connector %s: its secrets stay in the cluster's bucket: %s", name, e2.message);
        connector_free(c);
    }
    pthread_mutex_unlock(&cs->define_mu);
    return rc;
}

int connectors_pause(connectors_t *cs, const char *name, bool paused, buf_t *out, factum_error_t *err) {
    pthread_mutex_lock(&cs->define_mu);
    connector *c = lookup(cs, name);
    int rc = 0;
    if (!c) {
        rc = err_set(err, FACTUM_ENOTFOUND, "no connector %s", name);
    } else if (c->d.paused != paused) {
        c->d.paused = paused;
        conn_def_render(&c->d);
        rc = record_definition(cs, c, err);
        if (rc) {
            c->d.paused = !paused, conn_def_render(&c->d); /* nothing changed */
        } else {
            pthread_mutex_lock(&c->mu);
            c->paused = paused;
            pthread_mutex_unlock(&c->mu);
            connector_poke(c);
        }
    }
    if (!rc) connectors_show(cs, name, out);
    pthread_mutex_unlock(&cs->define_mu);
    return rc;
}

/* ---- what is shown ---- */

static void stats_of(connectors_t *cs, connector *c, connector_stats *st) {
    memset(st, 0, sizeof *st);
    snprintf(st->name, sizeof st->name, "%s", c->name);
    st->kind = c->d.kind == KIND_HTTP_SINK ? "http-sink" : "postgres-outbox";
    pthread_mutex_lock(&c->mu);
    st->state = c->paused ? "paused" : c->failed ? "failed" : c->retrying ? "retrying" : "running";
    st->delivered = c->delivered, st->failed_attempts = c->failed_attempts, st->requests = c->requests;
    st->last_status = c->last_status;
    memcpy(st->last_error, c->last_error, sizeof st->last_error);
    st->last_success_us = c->last_success_us, st->last_failure_us = c->last_failure_us;
    st->flushed_lsn = c->flushed_lsn, st->rejected = c->rejected;
    st->after_rows = c->after_rows, st->after_failures = c->after_failures, st->after_pending = c->after_pending;
    st->lag_bytes = c->wal_end > c->flushed_lsn && c->flushed_lsn ? c->wal_end - c->flushed_lsn : 0;
    pthread_mutex_unlock(&c->mu);
    if (c->d.kind != KIND_HTTP_SINK) return;
    groups_view v;
    if (groups_show(cs->env.groups, c->group, &v) == 0) {
        st->lag_positions = v.st.lag_positions, st->lag_seconds = v.st.lag_seconds;
        st->in_flight = v.st.in_flight, st->retrying = v.st.retrying, st->parked = v.st.parked;
        buf_free(&v.config);
    }
}

static void render(connectors_t *cs, connector *c, buf_t *out) {
    connector_stats st;
    stats_of(cs, c, &st);
    buf_printf(out, "{\"name\":\"%s\",%.*s,", c->name, (int)c->d.shown.len, c->d.shown.ptr);
    if (c->d.kind == KIND_PG_OUTBOX) {
        buf_printf(out,
                   "\"status\":{\"state\":\"%s\",\"appended\":%llu,\"rejected\":%llu,\"flushed_lsn\":\"%X/"
                   "%X\",\"lag_bytes\":%llu,",
                   st.state, (unsigned long long)st.delivered, (unsigned long long)st.rejected,
                   (unsigned)(st.flushed_lsn >> 32), (unsigned)st.flushed_lsn, (unsigned long long)st.lag_bytes);
        buf_printf(out, "\"after_relay_rows\":%llu,\"after_relay_failures\":%llu,\"after_relay_pending\":%llu,",
                   (unsigned long long)st.after_rows, (unsigned long long)st.after_failures,
                   (unsigned long long)st.after_pending);
        buf_printf(out, "\"last_error\":");
        if (st.last_error[0])
            json_escape(out, st.last_error, strlen(st.last_error));
        else
            buf_append(out, "null", 4);
        buf_append(out, "}}", 2);
        return;
    }
    buf_printf(out, "\"group\":\"%s\",\"status\":{\"state\":\"%s\",", c->group, st.state);
    buf_printf(out,
               "\"delivered\":%llu,\"requests\":%llu,\"failed_attempts\":%llu,\"lag_positions\":%llu,"
               "\"lag_seconds\":%.3f,\"in_flight\":%zu,\"retrying\":%zu,\"parked\":%zu,\"last_status\":%d,"
               "\"last_error\":",
               (unsigned long long)st.delivered, (unsigned long long)st.requests,
               (unsigned long long)st.failed_attempts, (unsigned long long)st.lag_positions, st.lag_seconds,
               st.in_flight, st.retrying, st.parked, st.last_status);
    if (st.last_error[0])
        json_escape(out, st.last_error, strlen(st.last_error));
    else
        buf_append(out, "null", 4);
    char t[32];
    buf_printf(out, ",\"last_success\":");
    if (st.last_success_us)
        time_format_rfc3339(st.last_success_us, t), buf_printf(out, "\"%s\"", t);
    else
        buf_append(out, "null", 4);
    buf_printf(out, ",\"last_failure\":");
    if (st.last_failure_us)
        time_format_rfc3339(st.last_failure_us, t), buf_printf(out, "\"%s\"", t);
    else
        buf_append(out, "null", 4);
    buf_append(out, "}}", 2);
}

int connectors_show(connectors_t *cs, const char *name, buf_t *out) {
    pthread_mutex_lock(&cs->mu);
    connector *c = find(cs, name);
    if (c) render(cs, c, out);
    pthread_mutex_unlock(&cs->mu);
    return c ? 0 : FACTUM_ENOTFOUND;
}

void connectors_list(connectors_t *cs, buf_t *out) {
    buf_append(out, "[", 1);
    pthread_mutex_lock(&cs->mu);
    for (connector *c = cs->list; c; c = c->next) {
        if (c != cs->list) buf_append(out, ",", 1);
        render(cs, c, out);
    }
    pthread_mutex_unlock(&cs->mu);
    buf_append(out, "]", 1);
}

void connectors_each_stats(connectors_t *cs, void (*fn)(void *ctx, const connector_stats *st), void *ctx) {
    pthread_mutex_lock(&cs->mu);
    for (connector *c = cs->list; c; c = c->next) {
        connector_stats st;
        stats_of(cs, c, &st);
        fn(ctx, &st);
    }
    pthread_mutex_unlock(&cs->mu);
}
