/*
 * call.c — one request against a server for the commands that are thin over the HTTP API
 * (group, meta, delete, projection): prints the answer body, or reports the error. And the
 * client every command against a server makes (cli_client_new), with the global options.
 */
#include "cli.h"

#include "../base/json.h"
#include "factum_client.h"

#include <stdio.h>
#include <stdlib.h>

const char *cli_cacert, *cli_token;

int cli_client_new(const char *url, factum_client_t **out, factum_error_t *err) {
    int rc = factum_client_new(url, out, err);
    if (rc) return rc;
    if ((cli_cacert && (rc = factum_client_set_cacert(*out, cli_cacert, err))) ||
        (cli_token && (rc = factum_client_set_token(*out, cli_token, err)))) {
        factum_client_free(*out);
        *out = NULL;
    }
    return rc;
}

/* What a listing wants back from its page (cli_call_list): how many items, and the `member` of
   the last one, to continue after it. */
typedef struct page_tail {
    const char *member;
    buf_t *last;
    size_t *count;
} page_tail;

/* One request; prints the answer (a JSON array a line per element with `lines`; then tail, if
   given, learns the last element). refused_fails: an answer listing "refused" ids (an ack or nack
   batch the server took only in part) is exit 1, so a script notices. */
static int call(const char *url, const char *method, const char *path, const char *body, bool lines, bool refused_fails,
                const page_tail *tail) {
    factum_client_t *c;
    factum_error_t err = {0};
    int rc = cli_client_new(url, &c, &err), status;
    char *resp = NULL;
    if (!rc) rc = factum_client_call(c, method, path, body, &status, &resp, &err);
    factum_client_free(c);
    if (rc) {
        free(resp);
        return cli_report(rc, &err);
    }
    factum_str_t refused;
    int kind;
    if (refused_fails && json_member(str_c(resp), "refused", &refused, &kind) && kind == JSON_ARRAY &&
        refused.len > 2) {
        printf("%s\n", resp);
        free(resp);
        return cli_fail(CLI_ERROR, "some deliveries were not taken: see \"refused\" (each with why)");
    }
    if (lines) { /* a JSON array: one element per line */
        json_iter_t it;
        factum_str_t v;
        json_iter_init(&it, str_c(resp));
        while (json_iter_element(&it, &v, &kind) == 1) {
            printf("%.*s\n", (int)v.len, v.ptr);
            if (!tail) continue;
            factum_str_t m;
            (*tail->count)++;
            tail->last->len = 0;
            if (json_member(v, tail->member, &m, &kind) && kind == JSON_STRING) json_unescape(m, tail->last);
        }
    } else {
        printf("%s\n", resp);
    }
    free(resp);
    return CLI_OK;
}

int cli_call(const char *url, const char *method, const char *path, const char *body, bool lines) {
    return call(url, method, path, body, lines, false, NULL);
}

int cli_call_batch(const char *url, const char *path, const char *body) {
    return call(url, "POST", path, body, false, true, NULL);
}

int cli_call_list(const char *url, const char *path, const char *member, buf_t *last, size_t *count) {
    page_tail t = {member, last, count};
    return call(url, "GET", path, NULL, true, false, &t);
}

/* NAME from a file path: its last component without .json. */
static void name_of(const char *file, char *out, size_t cap) {
    const char *base = strrchr(file, '/');
    base = base ? base + 1 : file;
    size_t n = strlen(base);
    if (n > 5 && !strcmp(base + n - 5, ".json")) n -= 5;
    snprintf(out, cap, "%.*s", (int)n, base);
}

int cli_apply_file(const char *url, const char *prefix, const char *kind, size_t max_name, int argc, char **argv) {
    if (argc < 3) return cli_fail(CLI_USAGE, "factum %s apply needs a definition file", kind);
    char name[128];
    name_of(argv[2], name, sizeof name);
    int usage = 0;
    for (int i = 3; i < argc; i++) {
        const char *v = cli_opt(argc, argv, &i, "--name", &usage);
        if (usage) return CLI_USAGE;
        if (!v) return cli_fail(CLI_USAGE, "unknown option %s (see factum %s --help)", argv[i], kind);
        snprintf(name, sizeof name, "%s", v);
    }
    if (strlen(name) > max_name) return cli_fail(CLI_USAGE, "a %s name is at most %zu characters", kind, max_name);
    char *def;
    size_t len;
    int rc = cli_slurp(argv[2], &def, &len);
    if (rc) return rc;
    char path[200];
    snprintf(path, sizeof path, "%s%s", prefix, name);
    rc = cli_call(url, "PUT", path, def, false);
    free(def);
    return rc;
}
