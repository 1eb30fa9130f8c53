/*
 * api_health.c — GET /health (the writer's state and the damage reads found) and GET /metrics
 * (Prometheus text: the engine's counters and histograms, the loops' HTTP figures, timers,
 * groups, sagas, projections and scavenges). Both read counters others write; none is locked.
 */
#include "api.h"

#include "../base/json.h"
#include "../cluster/cluster.h"
#include "../group/groups.h"
#include "../timer/timers.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static const char *const JSON = "application/json";

/* ---- health and metrics ---- */

/* The node's place in its cluster (docs/cluster.md): role, leader, applied sequence, lag. */
static void health_cluster(buf_t *b, cluster *cl) {
    cluster_status cs;
    cluster_status_get(cl, &cs);
    buf_printf(b, ",\"cluster\":{\"node\":");
    json_escape(b, cs.node, strlen(cs.node));
    buf_printf(b, ",\"role\":\"%s\",\"leader\":", cluster_role_name(cs.role));
    if (cs.leader[0]) {
        json_escape(b, cs.leader, strlen(cs.leader));
        buf_printf(b, ",\"leader_url\":");
        json_escape(b, cs.leader_url, strlen(cs.leader_url));
    } else {
        buf_printf(b, "null,\"leader_url\":null");
    }
    buf_printf(b, ",\"applied_sequence\":%llu,\"stream_last_sequence\":%llu,\"lag\":%llu,\"leader_terms\":%llu",
               (unsigned long long)cs.applied_seq, (unsigned long long)cs.stream_seq,
               (unsigned long long)(cs.stream_seq - cs.applied_seq), (unsigned long long)cs.leader_terms);
    if (cs.writing_since_us) buf_printf(b, ",\"writing_since_us\":%lld", (long long)cs.writing_since_us);
    if (cs.role == CLUSTER_FAILED) {
        buf_printf(b, ",\"error\":");
        json_escape(b, cs.error, strlen(cs.error));
    }
    buf_append(b, "}", 1);
}

/* At most this many damaged events are listed in /health (the first met); damaged_events counts all. */
#define HEALTH_DAMAGE_LIST 16

void api_health(conn *c, const route_args *a, factum_str_t body) {
    (void)a, (void)body;
    factum_stats_t st;
    factum_stats(c->l->srv->db, &st);
    factum_integrity_t integ, *in = &integ; /* about 9 KB */
    factum_integrity(c->l->srv->db, in);
    factum_archive_stats_t arch; /* about 3.7 KB */
    factum_archive_stats(c->l->srv->db, &arch);
    /* An archive folder that cannot be used (or archived segments that cannot be read): degraded. */
    bool arch_bad = arch.unavailable_segments || arch.folder_unusable;
    buf_t b = {0};
    cluster_status cs = {0};
    if (c->l->srv->cfg.cluster) cluster_status_get(c->l->srv->cfg.cluster, &cs);
    bool cluster_failed = cs.role == CLUSTER_FAILED;
    if (cluster_failed && !st.failed) {
        buf_printf(&b, "{\"status\":\"failed\",\"position\":%llu,\"error\":\"cluster\"", (unsigned long long)st.head);
    } else if (st.failed) { /* the writer stopped: that comes first */
        buf_printf(&b, "{\"status\":\"failed\",\"position\":%llu,\"error\":\"%s\"", (unsigned long long)st.head,
                   factum_errname(st.failed));
    } else if (in->damaged_events || arch_bad) {
        buf_printf(&b, "{\"status\":\"degraded\",\"position\":%llu", (unsigned long long)st.head);
    } else {
        buf_printf(&b, "{\"status\":\"ok\",\"position\":%llu", (unsigned long long)st.head);
    }
    if (in->damaged_events) {
        /* Events that reads found damaged: each with its file, offset and position. */
        buf_printf(&b, ",\"damaged_events\":%llu%s,\"damage\":[", (unsigned long long)in->damaged_events,
                   in->more ? ",\"more_damage\":true" : "");
        for (size_t i = 0; i < in->n && i < HEALTH_DAMAGE_LIST; i++) {
            const factum_damage_t *d = &in->damage[i];
            buf_printf(&b, "%s{\"file\":", i ? "," : "");
            json_escape(&b, d->file, strlen(d->file));
            buf_printf(&b, ",\"offset\":%llu,\"position\":%llu,\"error\":\"%s\",\"message\":",
                       (unsigned long long)d->offset, (unsigned long long)d->position, factum_errname(d->code));
            json_escape(&b, d->message, strlen(d->message));
            buf_append(&b, "}", 1);
        }
        buf_append(&b, "]", 1);
    }
    if (arch_bad) {
        buf_printf(&b, ",\"archive\":{\"unavailable_segments\":%llu,\"error\":",
                   (unsigned long long)arch.unavailable_segments);
        json_escape(&b, arch.error, strlen(arch.error));
        buf_append(&b, "}", 1);
    }
    if (c->l->srv->cfg.cluster) health_cluster(&b, c->l->srv->cfg.cluster);
    buf_append(&b, "}", 1);
    conn_respond(c, st.failed || cluster_failed || in->damaged_events || arch_bad ? 503 : 200, JSON, NULL, b.ptr,
                 b.len);
    buf_free(&b);
}

void api_metric_head(buf_t *b, const char *name, const char *type, const char *help) {
    buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A metric with one unlabelled sample. */
static void scalar(buf_t *b, const char *name, const char *type, const char *help, uint64_t v) {
    api_metric_head(b, name, type, help);
    buf_printf(b, "%s %llu\n", name, (unsigned long long)v);
}

/* Cluster mode (docs/cluster.md): the node's role, how far it has applied the stream, how far
   behind it is, and how many times it took the lease. */
static void cluster_metrics(buf_t *b, cluster *cl) {
    cluster_status cs;
    cluster_status_get(cl, &cs);
    api_metric_head(b, "factum_cluster_role", "gauge", "1 for the node's role in its cluster.");
    for (int r = CLUSTER_CANDIDATE; r <= CLUSTER_FAILED; r++)
        buf_printf(b, "factum_cluster_role{role=\"%s\"} %d\n", cluster_role_name(r), r == cs.role);
    scalar(b, "factum_cluster_applied_sequence", "gauge", "The last JetStream sequence applied to the local log.",
           cs.applied_seq);
    scalar(b, "factum_cluster_stream_sequence", "gauge", "The stream's last sequence as this node last saw it.",
           cs.stream_seq);
    scalar(b, "factum_cluster_lag_messages", "gauge", "Messages of the stream not yet applied here (replication lag).",
           cs.stream_seq > cs.applied_seq ? cs.stream_seq - cs.applied_seq : 0);
    scalar(b, "factum_cluster_leader_terms_total", "counter", "Times this node took the leader lease.",
           cs.leader_terms);
}

/* A Prometheus histogram from per-bucket counts: bounds[i] * scale is bucket i's upper bound in
   the metric's unit, and the last bucket is +Inf whatever its bound says. */
static void histogram(buf_t *b, const char *name, const char *help, const uint64_t *counts, const double *bounds,
                      size_t n, double scale, double sum) {
    api_metric_head(b, name, "histogram", help);
    uint64_t cum = 0;
    for (size_t i = 0; i < n; i++) {
        cum += counts[i];
        if (i + 1 == n)
            buf_printf(b, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)cum);
        else
            buf_printf(b, "%s_bucket{le=\"%g\"} %llu\n", name, bounds[i] * scale, (unsigned long long)cum);
    }
    buf_printf(b, "%s_sum %g\n%s_count %llu\n", name, sum, name, (unsigned long long)cum);
}

/* Group metrics: group names are chosen by operators (bounded), unlike stream names. */
static void collect_group(void *ctx, const group_stats *st) { buf_append(ctx, st, sizeof *st); }

static void group_metrics(buf_t *b, groups_t *gs) {
    buf_t all = {0};
    groups_each_stats(gs, collect_group, &all);
    const group_stats *v = (const group_stats *)all.ptr;
    size_t n = all.len / sizeof *v;
    static const struct {
        const char *name, *type, *help;
    } fam[] = {
        {"factum_group_lag_positions", "gauge",
         "Log positions from the oldest event the group has not finished to the head."},
        {"factum_group_lag_events", "gauge", "Events of the group's stream not finished (stream sources only)."},
        {"factum_group_lag_seconds", "gauge", "Age of the oldest event the group has not finished."},
        {"factum_group_in_flight", "gauge", "Deliveries awaiting ack."},
        {"factum_group_retrying", "gauge", "Events waiting for a retry."},
        {"factum_group_parked", "gauge", "Parked events."},
        {"factum_group_oldest_parked_seconds", "gauge", "Age of the oldest parked event."},
        {"factum_group_delivered_total", "counter", "First deliveries."},
        {"factum_group_redelivered_total", "counter", "Deliveries after a retry or a missed ack timeout."},
        {"factum_group_acked_total", "counter", "Acknowledged events."},
        {"factum_group_stopped", "gauge", "1 when a read that failed (damage) stopped the group's delivery."},
        {"factum_group_push_members", "gauge", "Push members connected now."},
        {"factum_group_waiting_pulls", "gauge", "Pulls waiting for events now (long polls)."},
    };
    for (size_t f = 0; f < ARRAY_LEN(fam); f++) {
        api_metric_head(b, fam[f].name, fam[f].type, fam[f].help);
        for (size_t i = 0; i < n; i++) {
            const group_stats *st = &v[i];
            double val[] = {(double)st->lag_positions, (double)st->lag_events, st->lag_seconds,
                            (double)st->in_flight,     (double)st->retrying,   (double)st->parked,
                            st->oldest_parked_s,       (double)st->delivered,  (double)st->redelivered,
                            (double)st->acked,         (double)st->stopped,    (double)st->push_members,
                            (double)st->waiting_pulls};
            if (f == 1 && !st->has_lag_events) continue; /* a category or $all source cannot count its events */
            buf_printf(b, "%s{group=\"%s\"} %.17g\n", fam[f].name, st->name, val[f]);
        }
    }
    buf_free(&all);
}

/* When this process started, in seconds since the epoch (the kernel's boot time plus the
   process's start in clock ticks after it, as Prometheus clients compute it); 0 if unknown. */
static double process_start;
static void process_start_read(void) {
    char line[256], stat[1024];
    unsigned long long btime = 0, ticks = 0;
    FILE *f = fopen("/proc/stat", "r");
    if (!f) return;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "btime %llu", &btime) == 1) break;
    fclose(f);
    f = fopen("/proc/self/stat", "r");
    if (!f) return;
    size_t n = fread(stat, 1, sizeof stat - 1, f);
    fclose(f);
    stat[n] = 0;
    /* after the command's closing parenthesis: field 3 (state) on; starttime is field 22 */
    const char *p = strrchr(stat, ')');
    if (!p ||
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d %*d %*d %llu", &ticks) != 1)
        return;
    long hz = sysconf(_SC_CLK_TCK);
    if (btime && hz > 0) process_start = (double)btime + (double)ticks / (double)hz;
}
static double process_start_s(void) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, process_start_read);
    return process_start;
}

void api_metrics(conn *c, const route_args *a, factum_str_t body) {
    (void)a, (void)body;
    server *s = c->l->srv;
    factum_stats_t st;
    factum_stats(s->db, &st);
    buf_t *b = &c->l->scratch;
    b->len = 0;
    uint64_t lat[SERVER_HIST] = {0}, lat_sum = 0, subs = 0, accepted = 0, fallbacks = 0, stalled = 0, mem_drops = 0,
             status[600] = {0};
    for (int i = 0; i < s->nloops; i++) {
        loop *l = &s->loops[i];
        for (int k = 0; k < SERVER_HIST; k++)
            lat[k] += atomic_load_explicit(&l->lat[k], memory_order_relaxed);
        lat_sum += atomic_load_explicit(&l->lat_sum_us, memory_order_relaxed);
        subs += atomic_load_explicit(&l->nsubs, memory_order_relaxed);
        accepted += atomic_load_explicit(&l->accepted, memory_order_relaxed);
        fallbacks += atomic_load_explicit(&l->sub_fallbacks, memory_order_relaxed);
        stalled += atomic_load_explicit(&l->stalled_drops, memory_order_relaxed);
        mem_drops += atomic_load_explicit(&l->memory_drops, memory_order_relaxed);
        for (int k = 100; k < 600; k++)
            status[k] += atomic_load_explicit(&l->status[k], memory_order_relaxed);
    }
    api_metric_head(b, "factum_build_info", "gauge", "Build information.");
    buf_printf(b, "factum_build_info{version=\"%s\"} 1\n", s->cfg.version);
    api_metric_head(b, "process_start_time_seconds", "gauge", "When the server started, in seconds since the epoch.");
    buf_printf(b, "process_start_time_seconds %.2f\n", process_start_s());
    scalar(b, "factum_appends_total", "counter", "Appends acknowledged (idempotent repeats excluded).", st.appends);
    scalar(b, "factum_append_events_total", "counter", "Events appended.", st.events);
    scalar(b, "factum_append_bytes_total", "counter", "Bytes of records appended.", st.bytes);
    histogram(b, "factum_append_duration_seconds",
              "HTTP append requests, from the complete request to the answer (all outcomes).", lat,
              server_latency_bounds, SERVER_HIST, 1, (double)lat_sum / 1e6);
    double fsync_bounds[FACTUM_STAT_BUCKETS], group_bounds[FACTUM_STAT_BUCKETS];
    for (int k = 0; k < FACTUM_STAT_BUCKETS; k++)
        fsync_bounds[k] = (double)factum_fsync_us_bounds[k], group_bounds[k] = (double)factum_group_events_bounds[k];
    histogram(b, "factum_fsync_duration_seconds", "fdatasync of the log, per commit group.", st.fsync_us, fsync_bounds,
              FACTUM_STAT_BUCKETS, 1e-6, (double)st.fsync_us_sum / 1e6);
    histogram(b, "factum_events_per_fsync", "Events made durable by one fdatasync (group commit).", st.group_events,
              group_bounds, FACTUM_STAT_BUCKETS, 1, (double)st.events);
    scalar(b, "factum_log_bytes", "gauge", "Bytes of records in the log.", st.log_bytes);
    scalar(b, "factum_head_position", "gauge", "Durable events in the log (the next position).", st.head);
    scalar(b, "factum_streams", "gauge",
           "Streams in the index: every stream ever written, deleted and system streams included.", st.streams);
    scalar(b, "factum_writer_failed", "gauge", "1 when a failed write or fsync stopped the writer.", st.failed != 0);
    factum_integrity_t integ;
    factum_integrity(s->db, &integ);
    scalar(b, "factum_integrity_damaged_events", "gauge",
           "Distinct events reads found damaged (checksum or media error) since the server started.",
           integ.damaged_events);
    scalar(b, "factum_subscribers", "gauge", "Live and catching-up SSE subscribers.", subs);
    scalar(b, "factum_subscriber_fallbacks_total", "counter",
           "Live subscribers that let more than --sub-buffer pile up and went back to catching up from the log.",
           fallbacks);
    api_metric_head(b, "factum_subscriber_disconnects_total", "counter",
                    "Subscribers cut off: not reading for --body-timeout (stalled), "
                    "the largest when over --max-memory (memory).");
    buf_printf(b,
               "factum_subscriber_disconnects_total{reason=\"stalled\"} %llu\n"
               "factum_subscriber_disconnects_total{reason=\"memory\"} %llu\n",
               (unsigned long long)stalled, (unsigned long long)mem_drops);
    if (s->cfg.cluster) cluster_metrics(b, s->cfg.cluster);
    scalar(b, "factum_connections", "gauge", "Open HTTP connections.", atomic_load(&s->nconns));
    scalar(b, "factum_connections_total", "counter", "HTTP connections accepted.", accepted);
    overload_metrics(s, b);
    timers_stats ts;
    timers_get_stats(s->timers, &ts);
    scalar(b, "factum_timers_pending", "gauge", "Durable timers waiting to fire.", ts.pending);
    scalar(b, "factum_timers_fired_total", "counter", "Timers fired (since this server started, or replayed).",
           ts.fired);
    scalar(b, "factum_timers_cancelled_total", "counter", "Timers cancelled.", ts.cancelled);
    scalar(b, "factum_timers_failed_total", "counter",
           "Timers whose event the store refused (a deleted stream, a clashing id).", ts.failed);
    scalar(b, "factum_timers_compactions_total", "counter",
           "Compactions of $schedules (records of ended timers made reclaimable).", ts.compactions);
    histogram(b, "factum_timer_lateness_seconds", "From a timer's time to its event being durable.", ts.late,
              timers_late_bounds_ms, 16, 1e-3, (double)ts.late_sum_us / 1e6);
    group_metrics(b, s->groups);
    sagas_metrics(s->sagas, b);
    projections_metrics(s->projections, b);
    schemas_metrics(s, b);
    connectors_metrics(s->connectors, b);
    limits_metrics(s, b);
    guard_metrics(s, b);
    factum_scavenge_stats_t sc;
    factum_scavenge_stats(s->db, &sc);
    scalar(b, "factum_scavenge_running", "gauge", "1 while a scavenge runs.", (uint64_t)sc.running);
    scalar(b, "factum_scavenges_total", "counter", "Scavenges finished since the server started.", sc.runs);
    scalar(b, "factum_scavenge_segments", "gauge", "Sealed segments the running (or last) scavenge looks at.",
           sc.segments_total);
    scalar(b, "factum_scavenge_segments_done", "gauge", "Of them, looked at so far.", sc.segments_done);
    scalar(b, "factum_scavenge_events_removed", "gauge", "Events the running (or last) scavenge removed.",
           sc.events_removed);
    scalar(b, "factum_scavenge_reclaimable_bytes", "gauge",
           "Record bytes of the events the running (or last) scavenge removed, or a dry run would remove.",
           sc.bytes_reclaimable);
    scalar(b, "factum_scavenge_dry_run", "gauge", "1 when the running (or last) scavenge is a dry run.",
           (uint64_t)sc.dry_run);
    scalar(b, "factum_scavenge_reclaimed_bytes_total", "counter",
           "File bytes scavenges gave back since the server started.", sc.bytes_reclaimed_total);
    factum_archive_stats_t *as = malloc(sizeof *as);
    if (as) {
        factum_archive_stats(s->db, as);
        scalar(b, "factum_archive_segments", "gauge", "Segment files in the archive folder.", as->archived_segments);
        scalar(b, "factum_archive_bytes", "gauge", "Bytes of segment files in the archive folder.", as->archived_bytes);
        scalar(b, "factum_archive_unavailable_segments", "gauge",
               "Archived segments that cannot be read now (their folder is missing or unreadable).",
               as->unavailable_segments);
        scalar(b, "factum_archive_passes_total", "counter", "Archival passes finished since the server started.",
               as->passes);
        scalar(b, "factum_archive_moved_segments_total", "counter",
               "Segments moved to the archive since the server started.", as->moved_segments_total);
        scalar(b, "factum_hot_segments", "gauge", "Segment files on the fast disk (the one being written too).",
               as->hot_segments);
        scalar(b, "factum_hot_bytes", "gauge", "Bytes of segment files on the fast disk.", as->hot_bytes);
        free(as);
    }
    api_metric_head(b, "factum_http_responses_total", "counter", "HTTP responses by status code.");
    for (int k = 100; k < 600; k++)
        if (status[k])
            buf_printf(b, "factum_http_responses_total{code=\"%d\"} %llu\n", k, (unsigned long long)status[k]);
    conn_respond(c, 200, "text/plain; version=0.0.4; charset=utf-8", NULL, b->ptr, b->len);
}
