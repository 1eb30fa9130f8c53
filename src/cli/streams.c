/*
 * streams.c — `factum streams` and `factum categories`: one page of the stream or category
 * listing (docs/http.md "List streams and categories"), on the data folder or from a server,
 * one JSON object per line, with the command for the next page on stderr when there may be one.
 */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *usage_streams =
    "usage: factum streams [PREFIX] [--category C] [--after NAME] [--limit N] [--system]\n"
    "\n"
    "Lists streams in byte order of their names, one JSON object per line: stream, first_position,\n"
    "revision (the last), deleted, tombstone. PREFIX keeps names that start with it; --category C\n"
    "keeps C and C-... (not both); --after continues after a name; --limit 1 to 1000 (default 100);\n"
    "--system includes system streams ($...). Served from the index: no scan of the log. When the\n"
    "page is full, the command for the next one is printed on stderr.\n";

static const char *usage_categories =
    "usage: factum categories [--after C] [--limit N] [--system]\n"
    "\n"
    "Lists categories (a stream name's text before its first '-') in byte order, each once, one\n"
    "JSON object per line. --after continues after a category; --limit 1 to 1000 (default 100).\n";

typedef struct list_args {
    const char *prefix, *category, *after;
    uint64_t limit;
    bool system;
} list_args;

static void query_add(buf_t *b, const char *key, const char *v) {
    if (!v) return;
    buf_printf(b, "&%s=", key);
    buf_url_encode(b, v, strlen(v));
}

static int list_local(const char *dir, bool categories, const list_args *a, buf_t *last, size_t *count) {
    factum_t *db;
    int rc = cli_open(dir, &db);
    if (rc) return rc;
    factum_names_t *l;
    factum_error_t err = {0};
    factum_str_t after = str_c(a->after ? a->after : "");
    if (categories)
        rc = factum_list_categories(db, after, a->limit, a->system, &l, &err);
    else if (a->category)
        rc = factum_list_category(db, str_c(a->category), after, a->limit, a->system, &l, &err);
    else
        rc = factum_list_streams(db, str_c(a->prefix ? a->prefix : ""), after, a->limit, a->system, &l, &err);
    if (rc) {
        factum_close(db);
        return cli_report(rc, &err);
    }
    for (size_t i = 0; i < factum_names_count(l); i++) {
        factum_str_t n = factum_names_name(l, i);
        if (categories) {
            buf_t b = {0};
            json_escape(&b, n.ptr, n.len);
            printf("{\"category\":%.*s}\n", (int)b.len, b.ptr);
            buf_free(&b);
        } else {
            char item[2048];
            size_t len = factum_stream_json(db, n, factum_names_position(l, i), item, sizeof item);
            printf("%.*s\n", (int)MIN(len, sizeof item - 1), item);
        }
        last->len = 0;
        buf_append(last, n.ptr, n.len);
        (*count)++;
    }
    factum_names_free(l);
    factum_close(db);
    return CLI_OK;
}

int cli_list(const char *dir, const char *url, bool categories, int argc, char **argv) {
    list_args a = {.limit = 100};
    const char *v, *limit = NULL;
    int bad = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help")) return printf("%s", categories ? usage_categories : usage_streams), CLI_OK;
        if ((v = cli_opt(argc, argv, &i, "--after", &bad)))
            a.after = v;
        else if ((v = cli_opt(argc, argv, &i, "--limit", &bad)))
            limit = v;
        else if (!categories && (v = cli_opt(argc, argv, &i, "--category", &bad)))
            a.category = v;
        else if (bad)
            return CLI_USAGE;
        else if (!strcmp(argv[i], "--system"))
            a.system = true;
        else if (argv[i][0] == '-' && argv[i][1] == '-')
            return cli_fail(CLI_USAGE, "unknown option %s (see factum %s --help)", argv[i], argv[0]);
        else if (!categories && !a.prefix)
            a.prefix = argv[i];
        else
            return cli_fail(CLI_USAGE, "unexpected argument '%s' (see factum %s --help)", argv[i], argv[0]);
    }
    if (limit && (!cli_parse_u64(limit, &a.limit) || a.limit < 1 || a.limit > 1000))
        return cli_fail(CLI_USAGE, "--limit must be 1 to 1000");
    if (a.prefix && a.category) return cli_fail(CLI_USAGE, "give a prefix or --category, not both");
    buf_t last = {0}, path = {0};
    size_t count = 0;
    int rc;
    if (url) {
        buf_printf(&path, "/%s?limit=%llu", categories ? "categories" : "streams", (unsigned long long)a.limit);
        query_add(&path, "prefix", a.prefix);
        query_add(&path, "category", a.category);
        query_add(&path, "after", a.after);
        if (a.system) buf_printf(&path, "&system=true");
        buf_append(&path, "", 1);
    }
    if (url)
        rc = cli_call_list(url, path.ptr, categories ? "category" : "stream", &last, &count);
    else
        rc = list_local(dir, categories, &a, &last, &count);
    if (rc == CLI_OK && count == a.limit) {
        fflush(stdout); /* the lines first, then the hint */
        fprintf(stderr, "more: factum %s", argv[0]);
        for (int i = 1; i < argc; i++)
            if (strcmp(argv[i], "--after") && (i == 1 || strcmp(argv[i - 1], "--after")) &&
                strncmp(argv[i], "--after=", 8))
                fprintf(stderr, " %s", argv[i]);
        fprintf(stderr, " --after '%.*s'\n", (int)last.len, last.ptr);
    }
    buf_free(&last);
    buf_free(&path);
    return rc;
}
