/*
 * meta.c — `factum meta`, `factum delete` and `factum admin scavenge`: a stream's metadata (retention, truncation, the
 * user's own keys) and deleting a stream, on the data folder or against a server
 * (docs/lifecycle.md). Both print the JSON the HTTP API answers.
 */
#include "cli.h"

#include "factum_client.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *usage_meta =
    "usage: factum meta STREAM                       print the stream's metadata\n"
    "       factum meta STREAM [--max-age S] [--max-count N] [--truncate-before R] [--custom JSON]\n"
    "\n"
    "Changes only what is given (0 removes a limit; --custom replaces the user's keys with a JSON\n"
    "object). Events beyond the limits disappear from every read at once; a scavenge later takes\n"
    "them off the disk. truncate_before never moves back, and what a narrower limit hid stays\n"
    "hidden when it is widened again.\n";

static const char *usage_delete =
    "usage: factum delete STREAM [--tombstone] [--expect E]\n"
    "\n"
    "Soft delete: the stream reads as not found until something is appended again, which\n"
    "continues after the old last revision. --tombstone deletes it for ever: reads and appends\n"
    "get 'deleted' (exit code 6). --expect is any (default), exists, or the last revision N.\n";

static void stream_path(buf_t *b, const char *stream, const char *tail) {
    buf_append(b, "/streams/", 9);
    buf_url_encode(b, stream, strlen(stream));
    buf_printf(b, "%s", tail);
}

static int print_meta(factum_t *db, const char *stream) {
    factum_meta_t m;
    factum_error_t err = {0};
    int rc = factum_meta_get(db, str_c(stream), &m, &err);
    if (rc) return cli_report(rc, &err);
    size_t need = factum_meta_json(str_c(stream), &m, NULL, 0);
    char *out = malloc(need + 1);
    if (out) {
        factum_meta_json(str_c(stream), &m, out, need + 1);
        printf("%s\n", out);
    }
    free(out);
    factum_meta_free(&m);
    return out ? CLI_OK : cli_fail(CLI_ERROR, "out of memory");
}

/* Fields given on the command line; the rest stay as they are. */
typedef struct meta_args {
    const char *max_age, *max_count, *tb, *custom;
} meta_args;

static int apply_args(const meta_args *a, factum_meta_t *m) {
    if ((a->max_age && !cli_parse_u64(a->max_age, &m->max_age_s)) ||
        (a->max_count && !cli_parse_u64(a->max_count, &m->max_count)) ||
        (a->tb && !cli_parse_u64(a->tb, &m->truncate_before)))
        return cli_fail(CLI_USAGE, "--max-age, --max-count and --truncate-before take whole numbers");
    if (a->custom) m->custom = str_c(a->custom);
    return 0;
}

int cli_meta(const char *dir, const char *url, int argc, char **argv) {
    meta_args a = {0};
    const char *stream = NULL, *v;
    int bad = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help")) return printf("%s", usage_meta), CLI_OK;
        if ((v = cli_opt(argc, argv, &i, "--max-age", &bad)))
            a.max_age = v;
        else if ((v = cli_opt(argc, argv, &i, "--max-count", &bad)))
            a.max_count = v;
        else if ((v = cli_opt(argc, argv, &i, "--truncate-before", &bad)))
            a.tb = v;
        else if ((v = cli_opt(argc, argv, &i, "--custom", &bad)))
            a.custom = v;
        else if (bad)
            return CLI_USAGE;
        else if (argv[i][0] == '-' && argv[i][1] == '-')
            return cli_fail(CLI_USAGE, "unknown option %s (see factum meta --help)", argv[i]);
        else if (!stream)
            stream = argv[i];
        else
            return cli_fail(CLI_USAGE, "one stream at a time (see factum meta --help)");
    }
    if (!stream) return cli_fail(CLI_USAGE, "usage: factum meta STREAM [--max-count N ...]");
    bool change = a.max_age || a.max_count || a.tb || a.custom;
    int rc;
    if (url) {
        buf_t path = {0}, body = {0};
        stream_path(&path, stream, "/metadata");
        buf_append(&path, "", 1);
        if (!change) {
            rc = cli_call(url, "GET", path.ptr, NULL, false);
        } else {
            /* The current metadata with the given fields replaced: read, change, write. */
            factum_client_t *c;
            factum_error_t err = {0};
            char *cur = NULL;
            int status;
            rc = cli_client_new(url, &c, &err);
            if (!rc) rc = factum_client_call(c, "GET", path.ptr, NULL, &status, &cur, &err);
            factum_client_free(c);
            if (rc) {
                free(cur);
                buf_free(&path);
                return cli_report(rc, &err);
            }
            factum_meta_t m = {0};
            factum_str_t doc = str_c(cur), custom;
            int kind;
            json_member_u64(doc, "max_age_s", &m.max_age_s);
            json_member_u64(doc, "max_count", &m.max_count);
            if (json_member(doc, "custom", &custom, &kind) && kind == JSON_OBJECT) m.custom = custom;
            if ((rc = apply_args(&a, &m)) == 0) {
                buf_printf(&body, "{\"max_age_s\":%llu,\"max_count\":%llu", (unsigned long long)m.max_age_s,
                           (unsigned long long)m.max_count);
                if (m.truncate_before)
                    buf_printf(&body, ",\"truncate_before\":%llu", (unsigned long long)m.truncate_before);
                buf_printf(&body, ",\"custom\":%.*s}", (int)(m.custom.len ? m.custom.len : 2),
                           m.custom.len ? m.custom.ptr : "{}");
                rc = cli_call(url, "PUT", path.ptr, body.ptr, false);
            }
            free(cur);
        }
        buf_free(&path);
        buf_free(&body);
        return rc;
    }
    factum_t *db;
    if ((rc = (change ? cli_create : cli_open)(dir, &db))) return rc;
    if (change) {
        factum_meta_t m;
        factum_error_t err = {0};
        if ((rc = factum_meta_get(db, str_c(stream), &m, &err)))
            rc = cli_report(rc, &err);
        else {
            m.truncate_before = 0; /* kept unless given */
            if (!(rc = apply_args(&a, &m)) && (rc = factum_meta_set(db, str_c(stream), &m, NULL, &err)))
                rc = cli_report(rc, &err);
            if (a.custom) m.custom = (factum_str_t){0}; /* not ours to free */
            factum_meta_free(&m);
        }
    }
    if (!rc) rc = print_meta(db, stream);
    factum_close(db);
    return rc;
}

int cli_delete(const char *dir, const char *url, int argc, char **argv) {
    const char *stream = NULL, *v;
    int64_t expect = FACTUM_EXPECT_ANY;
    int bad = 0, tombstone = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help")) return printf("%s", usage_delete), CLI_OK;
        if (!strcmp(argv[i], "--tombstone"))
            tombstone = 1;
        else if ((v = cli_opt(argc, argv, &i, "--expect", &bad))) {
            if (!cli_parse_expect(v, &expect) || expect == FACTUM_EXPECT_NO_STREAM)
                return cli_fail(CLI_USAGE, "--expect is any, exists or a revision N");
        } else if (bad)
            return CLI_USAGE;
        else if (argv[i][0] == '-' && argv[i][1] == '-')
            return cli_fail(CLI_USAGE, "unknown option %s (see factum delete --help)", argv[i]);
        else if (!stream)
            stream = argv[i];
        else
            return cli_fail(CLI_USAGE, "one stream at a time (see factum delete --help)");
    }
    if (!stream) return cli_fail(CLI_USAGE, "usage: factum delete STREAM [--tombstone] [--expect E]");
    int rc;
    if (url) {
        buf_t path = {0};
        stream_path(&path, stream, tombstone ? "?tombstone=true" : "");
        buf_append(&path, "", 1);
        factum_client_t *c;
        factum_error_t err = {0};
        char *resp = NULL, hdr[64] = "";
        int status;
        if (expect == FACTUM_EXPECT_EXISTS)
            snprintf(hdr, sizeof hdr, "If-Match: *");
        else if (expect >= 0)
            snprintf(hdr, sizeof hdr, "If-Match: \"%lld\"", (long long)expect);
        rc = cli_client_new(url, &c, &err);
        if (!rc) rc = factum_client_call_with(c, "DELETE", path.ptr, NULL, hdr[0] ? hdr : NULL, &status, &resp, &err);
        factum_client_free(c);
        buf_free(&path);
        if (!rc) printf("%s\n", resp);
        free(resp);
        return rc ? cli_report(rc, &err) : CLI_OK;
    }
    factum_t *db;
    if ((rc = cli_open(dir, &db))) return rc;
    factum_append_result_t res;
    factum_error_t err = {0};
    if ((rc = factum_delete_stream(db, str_c(stream), expect, tombstone, &res, &err)))
        rc = cli_report(rc, &err);
    else {
        buf_t b = {0};
        buf_append(&b, "{\"stream\":", 10);
        json_escape(&b, stream, strlen(stream));
        buf_printf(&b, ",\"last_revision\":%lld,\"tombstone\":%s,\"position\":%llu}", (long long)res.actual_revision,
                   tombstone ? "true" : "false", (unsigned long long)res.last_position);
        printf("%.*s\n", (int)b.len, b.ptr);
        buf_free(&b);
    }
    factum_close(db);
    return rc;
}

/* ---- factum admin scavenge ---- */

static const char *usage_admin =
    "usage: factum admin scavenge [--dry-run]\n"
    "       factum admin archive [--run] (factum admin archive --help)\n"
    "\n"
    "Rewrites sealed log segments without deleted, tombstoned, truncated and expired events and\n"
    "gives the space back to the file system; appends and reads go on meanwhile. Prints progress\n"
    "on stderr and the result as JSON. Against a server it asks the server's scavenger\n"
    "(POST /admin/scavenge) and follows it; on a data folder it runs in this process.\n"
    "--dry-run writes nothing: it counts what a scavenge would remove (events_removed,\n"
    "bytes_reclaimable in the JSON), reading every sealed segment.\n";

static void progress_line(const factum_scavenge_stats_t *st, uint64_t *shown) {
    if (st->segments_done == *shown) return;
    *shown = st->segments_done;
    if (st->dry_run)
        fprintf(stderr, "scavenge (dry run): %llu/%llu segments, %llu events and %.1f MiB reclaimable\n",
                (unsigned long long)st->segments_done, (unsigned long long)st->segments_total,
                (unsigned long long)st->events_removed, (double)st->bytes_reclaimable / 1048576.0);
    else
        fprintf(stderr, "scavenge: %llu/%llu segments, %llu events removed, %.1f MiB given back\n",
                (unsigned long long)st->segments_done, (unsigned long long)st->segments_total,
                (unsigned long long)st->events_removed, (double)(st->bytes_before - st->bytes_after) / 1048576.0);
}

static void stats_of_json(factum_str_t j, factum_scavenge_stats_t *st) {
    memset(st, 0, sizeof *st);
    factum_str_t v;
    int kind;
    st->running = json_member(j, "running", &v, &kind) && kind == JSON_TRUE;
    json_member_u64(j, "runs", &st->runs);
    json_member_u64(j, "segments_total", &st->segments_total);
    json_member_u64(j, "segments_done", &st->segments_done);
    json_member_u64(j, "events_removed", &st->events_removed);
    json_member_u64(j, "bytes_before", &st->bytes_before);
    json_member_u64(j, "bytes_after", &st->bytes_after);
    json_member_u64(j, "bytes_reclaimable", &st->bytes_reclaimable);
    st->dry_run = json_member(j, "dry_run", &v, &kind) && kind == JSON_TRUE;
    if (json_member(j, "error", &v, &kind) && kind == JSON_STRING) st->last_error = FACTUM_EIO;
}

typedef struct scav_job {
    factum_t *db;
    bool dry;
    int rc;
    factum_error_t err;
    _Atomic bool done;
} scav_job;

static void *scav_thread(void *arg) {
    scav_job *j = arg;
    j->rc = j->dry ? factum_scavenge_dry_run(j->db, &j->err) : factum_scavenge(j->db, &j->err);
    atomic_store(&j->done, true);
    return NULL;
}

int cli_admin(const char *dir, const char *url, int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "archive")) return cli_admin_archive(dir, url, argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "--help")) return printf("%s", usage_admin), CLI_OK;
    bool dry = argc == 3 && !strcmp(argv[2], "--dry-run");
    if ((argc != 2 && !dry) || strcmp(argv[1], "scavenge"))
        return cli_fail(CLI_USAGE, "usage: factum admin scavenge [--dry-run] | factum admin archive [--run]");
    factum_scavenge_stats_t st;
    uint64_t shown = UINT64_MAX;
    char *resp = NULL;
    int rc, status;
    if (url) {
        factum_client_t *c;
        factum_error_t err = {0};
        if ((rc = cli_client_new(url, &c, &err)) ||
            (rc = factum_client_call(c, "POST", dry ? "/admin/scavenge?dry_run=true" : "/admin/scavenge", NULL, &status,
                                     &resp, &err))) {
            factum_client_free(c);
            free(resp);
            return cli_report(rc, &err);
        }
        stats_of_json(str_c(resp), &st);
        /* A run that was going on is followed; otherwise the one asked for, once it has ended. */
        uint64_t want = st.runs + 1;
        for (;;) {
            free(resp);
            resp = NULL;
            if ((rc = factum_client_call(c, "GET", "/admin/scavenge", NULL, &status, &resp, &err))) break;
            stats_of_json(str_c(resp), &st);
            if (st.runs >= want && !st.running) break;
            if (st.running) progress_line(&st, &shown);
            usleep(200000);
        }
        factum_client_free(c);
        if (rc) {
            free(resp);
            return cli_report(rc, &err);
        }
        progress_line(&st, &shown);
        printf("%s\n", resp);
        rc = st.last_error ? CLI_ERROR : CLI_OK;
        free(resp);
        return rc;
    }
    scav_job j = {.dry = dry};
    if ((rc = cli_open(dir, &j.db))) return rc;
    pthread_t t;
    if (pthread_create(&t, NULL, scav_thread, &j)) {
        factum_close(j.db);
        return cli_fail(CLI_ERROR, "cannot start a thread");
    }
    while (!atomic_load(&j.done)) {
        factum_scavenge_stats(j.db, &st);
        if (st.running) progress_line(&st, &shown);
        usleep(200000);
    }
    pthread_join(t, NULL);
    factum_scavenge_stats(j.db, &st);
    progress_line(&st, &shown);
    char out[1024];
    factum_scavenge_json(&st, out, sizeof out);
    printf("%s\n", out);
    factum_close(j.db);
    return j.rc ? cli_report(j.rc, &j.err) : CLI_OK;
}
