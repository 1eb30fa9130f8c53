/*
 * schedule.c — `factum schedule ls`: durable timers, one JSON object per line (what
 * GET /schedules answers), from a server (--server or $FACTUM_URL: page after page) or from a
 * data folder (embedded: $schedules is replayed in the command, and nothing fires).
 */
#include "cli.h"

#include "../server/api.h"
#include "../timer/timers.h"
#include "factum_client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PAGE 1000

static const char *usage_ls =
    "usage: factum schedule ls [--state pending|fired|failed|cancelled] [--after ID] [--limit N]\n"
    "\n"
    "Prints durable timers, one JSON object per line, in id order (the order they were asked\n"
    "for): pending ones, and those that fired, failed or were cancelled since $schedules was\n"
    "last compacted. --after starts after that schedule id; --limit stops after N.\n"
    "Against a server (--server or $FACTUM_URL) it pages through GET /schedules; otherwise it\n"
    "reads the data folder itself (which a running server holds: ask the server then).\n";

typedef struct ls_args {
    const char *state; /* NULL: every state */
    char after[40];
    uint64_t limit;
} ls_args;

/* One page from the server into the printed lines; *n how many, after moves to the last id. */
static int page_server(factum_client_t *c, ls_args *a, size_t *n, factum_error_t *err) {
    buf_t path = {0};
    buf_printf(&path, "/schedules?limit=%d", PAGE);
    if (a->state) buf_printf(&path, "&state=%s", a->state);
    if (a->after[0]) buf_printf(&path, "&after="), buf_url_encode(&path, a->after, strlen(a->after));
    buf_append(&path, "", 1);
    int status;
    char *body = NULL;
    int rc = factum_client_call(c, "GET", path.ptr, NULL, &status, &body, err);
    buf_free(&path);
    *n = 0;
    json_iter_t it;
    factum_str_t v;
    int kind;
    json_iter_init(&it, str_c(rc ? "[]" : body));
    while (a->limit && json_iter_element(&it, &v, &kind) == 1) {
        buf_t id = {0};
        if (json_member_string(v, "id", &id)) snprintf(a->after, sizeof a->after, "%s", id.ptr);
        buf_free(&id);
        printf("%.*s\n", (int)v.len, v.ptr);
        ++*n, a->limit--;
    }
    free(body);
    return rc;
}

/* One page from the replayed timers. */
static int page_local(factum_t *db, timers_t *t, int state, ls_args *a, timer_info *page, size_t *n,
                      factum_error_t *err) {
    *n = timers_list(t, state, a->after, page, (size_t)MIN(a->limit, PAGE));
    buf_t line = {0};
    int rc = 0;
    for (size_t i = 0; i < *n && !rc; i++) {
        line.len = 0;
        if (!(rc = schedule_json(db, &page[i], &line, err))) printf("%.*s\n", (int)line.len, line.ptr);
        snprintf(a->after, sizeof a->after, "%s", page[i].id);
    }
    a->limit -= *n;
    buf_free(&line);
    return rc;
}

int cli_schedule_ls(const char *dir, const char *url, int argc, char **argv) {
    ls_args a = {.limit = UINT64_MAX};
    const char *v;
    int bad = 0, state = -1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help")) return printf("%s", usage_ls), CLI_OK;
        if ((v = cli_opt(argc, argv, &i, "--state", &bad))) {
            state = -2;
            for (int s = 0; s < 4; s++)
                if (!strcmp(v, timers_state_names[s])) state = s, a.state = timers_state_names[s];
            if (state == -2)
                return cli_fail(CLI_USAGE, "--state takes pending, fired, failed or cancelled, not '%s'", v);
        } else if ((v = cli_opt(argc, argv, &i, "--after", &bad))) {
            if (strlen(v) >= sizeof a.after) return cli_fail(CLI_USAGE, "--after takes a schedule id, not '%s'", v);
            snprintf(a.after, sizeof a.after, "%s", v);
        } else if ((v = cli_opt(argc, argv, &i, "--limit", &bad))) {
            if (!cli_parse_u64(v, &a.limit) || !a.limit)
                return cli_fail(CLI_USAGE, "--limit takes a positive number, not '%s'", v);
        } else if (bad)
            return CLI_USAGE;
        else
            return cli_fail(CLI_USAGE, "unknown argument %s (see factum schedule ls --help)", argv[i]);
    }
    if (bad) return CLI_USAGE;
    factum_error_t err = {0};
    size_t n = PAGE;
    int rc = 0;
    if (url) {
        factum_client_t *c;
        if ((rc = cli_client_new(url, &c, &err))) return cli_report(rc, &err);
        while (!rc && n && a.limit)
            rc = page_server(c, &a, &n, &err); /* to the first empty page */
        factum_client_free(c);
        return rc ? cli_report(rc, &err) : CLI_OK;
    }
    factum_t *db;
    timers_t *t = NULL;
    if ((rc = cli_open(dir, &db))) return rc;
    timer_info *page = calloc(PAGE, sizeof *page);
    if (!page) rc = err_set(&err, FACTUM_ENOMEM, "out of memory");
    if (!rc) rc = timers_load(db, &t, &err);
    while (!rc && n == PAGE && a.limit)
        rc = page_local(db, t, state, &a, page, &n, &err);
    timers_close(t);
    free(page);
    factum_close(db);
    return rc ? cli_report(rc, &err) : CLI_OK;
}
