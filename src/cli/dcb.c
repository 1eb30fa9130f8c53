/*
 * dcb.c — the command line's side of dynamic consistency boundaries (docs/dcb.md): append's
 * --tag, --fail-if and --after (cmd_append in main.c takes them through cli_append_extras),
 * and `factum read --query`, embedded or against a server, one CloudEvent JSON per line.
 */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cli_tag_add(buf_t *tags, const char *tag) {
    if (!tag[0] || strpbrk(tag, " \"\\"))
        return cli_fail(CLI_USAGE,
                        "--tag '%s': a tag is not empty and has no spaces, '\"' or '\\' (give --tag once for each)",
                        tag);
    buf_printf(tags, "%s%s", tags->len ? " " : "\"tags\":\"", tag);
    return CLI_OK;
}

int cli_append_extras(buf_t *tags, bool batch, const char *fail_if, uint64_t after, factum_str_t *ext,
                      factum_tag_query_t **q) {
    *q = NULL;
    if (tags->len) {
        if (batch) return cli_fail(CLI_USAGE, "--tag is for one event; in a --batch each event has its \"tags\"");
        buf_append(tags, "\"", 1);
        *ext = (factum_str_t){tags->ptr, tags->len};
    }
    if (after != FACTUM_AFTER_NONE && !fail_if) return cli_fail(CLI_USAGE, "--after goes with --fail-if");
    if (!fail_if) return CLI_OK;
    factum_error_t err;
    if (factum_tag_query_parse(fail_if, strlen(fail_if), q, &err))
        return cli_fail(CLI_USAGE, "--fail-if: %s", err.message);
    return CLI_OK;
}

int cli_read_query(const char *dir, const char *url, int argc, char **argv) {
    const char *text = NULL, *v;
    uint64_t from = 0, limit = UINT64_MAX;
    bool from_set = false;
    int backward = 0, bad = 0;
    for (int i = 1; i < argc; i++) {
        if ((v = cli_opt(argc, argv, &i, "--query", &bad)))
            text = v;
        else if ((v = cli_opt(argc, argv, &i, "--from", &bad))) {
            from_set = true;
            if (!strcmp(v, "end"))
                from = FACTUM_END;
            else if (!cli_parse_u64(v, &from))
                return cli_fail(CLI_USAGE, "--from takes a position or end, not '%s'", v);
        } else if ((v = cli_opt(argc, argv, &i, "--limit", &bad))) {
            if (!cli_parse_u64(v, &limit) || !limit) return cli_fail(CLI_USAGE, "--limit takes a number from 1");
        } else if (!strcmp(argv[i], "--backward"))
            backward = 1;
        else if (bad)
            return CLI_USAGE;
        else
            return cli_fail(CLI_USAGE, "read --query takes --from, --limit and --backward, not '%s'", argv[i]);
    }
    if (bad || !text) return bad ? CLI_USAGE : cli_fail(CLI_USAGE, "--query needs a query");
    if (backward && !from_set) from = FACTUM_END;
    factum_tag_query_t *q;
    factum_error_t err = {0};
    if (factum_tag_query_parse(text, strlen(text), &q, &err)) return cli_fail(CLI_USAGE, "--query: %s", err.message);
    factum_t *db = NULL;
    factum_client_t *c = NULL;
    /* rc: negative, a library error to report at the end; positive, a CLI code already reported */
    int rc = url ? cli_client_new(url, &c, &err) : cli_open(dir, &db);
    buf_t line = {0};
    uint64_t printed = 0;
    while (!rc && printed < limit) {
        size_t chunk = (size_t)MIN(limit - printed, 1000);
        uint64_t next = FACTUM_END;
        size_t n = 0;
        if (db) {
            factum_result_t *res;
            if ((rc = factum_read_tagged(db, q, from, chunk, backward, NULL, &res, &err))) break;
            n = factum_result_count(res);
            for (size_t i = 0; i < n && !rc; i++)
                rc = cli_print_event(factum_result_event(res, i), &line);
            next = factum_result_next(res);
            factum_result_free(res);
        } else {
            factum_events_t *set;
            if ((rc = factum_client_read_tagged(c, q, from, chunk, backward, NULL, &next, &set, &err))) break;
            n = factum_events_count(set);
            for (size_t i = 0; i < n && !rc; i++)
                rc = cli_print_event(factum_events_get(set, i), &line);
            factum_events_free(set);
        }
        printed += n;
        if (n < chunk || next == FACTUM_END) break; /* a short page: nothing more matches now */
        from = next;
    }
    if (rc < 0) rc = cli_report(rc, &err);
    buf_free(&line);
    factum_tag_query_free(q);
    factum_close(db);
    factum_client_free(c);
    return rc;
}

int cli_append_streams(const char *dir, const char *url, const char *file, const char *fail_if, uint64_t after) {
    buf_t none = {0};
    factum_str_t ext_unused;
    factum_tag_query_t *q = NULL;
    int rc = cli_append_extras(&none, false, fail_if, after, &ext_unused, &q);
    if (rc) return rc;
    char *text = NULL;
    size_t len = 0;
    factum_events_t *set = NULL;
    factum_error_t err = {0};
    factum_stream_append_t parts[FACTUM_MAX_STREAMS];
    size_t np = 0;
    factum_t *db = NULL;
    factum_client_t *c = NULL;
    if ((rc = cli_slurp(file, &text, &len))) goto out;
    if ((rc = factum_events_parse(text, len, 1, &set, &err))) goto out;
    for (size_t i = 0; i < factum_events_count(set) && !rc; i++) {
        factum_event_t *e = factum_events_get(set, i);
        if (!e->stream.len)
            rc = cli_fail(CLI_USAGE, "event %zu has no \"stream\"", i);
        else if (np && str_eq(parts[np - 1].stream, e->stream))
            parts[np - 1].n++;
        else if (np == FACTUM_MAX_STREAMS)
            rc = cli_fail(CLI_USAGE, "an append goes to at most %d streams", FACTUM_MAX_STREAMS);
        else
            parts[np++] = (factum_stream_append_t){e->stream, FACTUM_EXPECT_ANY, e, 1, {0}};
    }
    if (rc) goto out;
    factum_condition_t cond = {q ? *q : (factum_tag_query_t){0}, after};
    if (url) {
        if (!(rc = cli_client_new(url, &c, &err)))
            rc = factum_client_append_streams(c, parts, np, q ? &cond : NULL, &err);
    } else if ((rc = cli_create(dir, &db))) {
        goto out; /* reported */
    } else {
        rc = factum_append_streams(db, parts, np, q ? &cond : NULL, &err);
    }
    if (rc) goto out;
    buf_t b = {0};
    buf_printf(&b, "{\"first_position\":%llu,\"position\":%llu,\"streams\":[",
               (unsigned long long)parts[0].res.first_position, (unsigned long long)parts[np - 1].res.last_position);
    for (size_t i = 0; i < np; i++) {
        buf_append(&b, i ? ",{\"stream\":" : "{\"stream\":", i ? 11 : 10);
        json_escape(&b, parts[i].stream.ptr, parts[i].stream.len);
        buf_printf(&b, ",\"revision\":%llu,\"position\":%llu}", (unsigned long long)parts[i].res.last_revision,
                   (unsigned long long)parts[i].res.last_position);
    }
    buf_append(&b, "]}\n", 3);
    fwrite(b.ptr, 1, b.len, stdout);
    buf_free(&b);
out:
    if (rc < 0) rc = cli_report(rc, &err); /* a library error; CLI codes were reported */
    factum_close(db);
    factum_client_free(c);
    factum_events_free(set);
    free(text);
    factum_tag_query_free(q);
    return rc;
}
