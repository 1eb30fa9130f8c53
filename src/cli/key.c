/*
 * key.c — `factum key create|ls|revoke`: API keys (src/auth/keys.h, docs/security.md), on the
 * data folder (before the first start of a server, or while none runs) or against a server
 * (POST, GET and DELETE /admin/keys, with an admin key). create prints the token alone on
 * stdout, once: nothing keeps it but its hash.
 */
#include "cli.h"

#include "../auth/keys.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *usage_key =
    "usage: factum key create --role ROLE [--streams PATTERN...] [--groups NAME...]\n"
    "                         [--expires DURATION|TIME] [--name TEXT]\n"
    "                         [--max-appends-per-second N] [--max-bytes-per-second N]\n"
    "                         [--max-groups N] [--max-projections N] [--max-sagas N]\n"
    "                         [--max-schedules N]\n"
    "       factum key ls\n"
    "       factum key revoke ID\n"
    "\n"
    "API keys for the server. Once one key exists, every request needs one (docs/security.md).\n"
    "create prints the token on stdout, once; keep it: the server keeps only its hash.\n"
    "\n"
    "  --role ROLE        admin, operator, writer, reader or consumer\n"
    "  --streams P...     writer and reader keys: only streams named so (a name, PREFIX* or\n"
    "                     category:NAME); without it, every stream\n"
    "  --groups NAME...   consumer keys: only these consumer groups; without it, every group\n"
    "  --expires E        a duration (30d, 12h, 15m, 90s) or an RFC 3339 time\n"
    "  --name TEXT        what the key is for, shown by ls\n"
    "  --max-appends-per-second N\n"
    "                     admin and writer keys: events the key may append per second\n"
    "                     (a batch of 100 is 100; 0: no limit); without it, the server's\n"
    "                     --key-max-appends-per-second\n"
    "  --max-bytes-per-second N\n"
    "                     the same for request-body bytes on the routes that append\n"
    "                     (docs/limits.md, \"Keys\")\n"
    "  --max-groups N, --max-projections N, --max-sagas N, --max-schedules N\n"
    "                     admin and operator keys: how many of each (pending schedules) the\n"
    "                     key may have made and not deleted, 0 to 1000000 (0: none); without\n"
    "                     it, only the server's --max-KIND applies\n"
    "\n"
    "Without --server it works on the data folder (a server must not be running on it).\n";

/* The JSON of POST /admin/keys from create's options. */
static int spec_json(int argc, char **argv, buf_t *b) {
    const char *v;
    int bad = 0, nstreams = 0, ngroups = 0;
    buf_t streams = {0}, groups = {0};
    buf_append(b, "{", 1);
    for (int i = 1; i < argc; i++) {
        buf_t *list = NULL;
        int *n = NULL;
        /* A limit goes as a number when it looks like one, else as the text given, so that
           the one check of a key's members (auth_spec_parse) says what is wrong with it. */
        static const char *const scalars[] = {
            "role",       "expires",         "name",      "max-appends-per-second", "max-bytes-per-second",
            "max-groups", "max-projections", "max-sagas", "max-schedules"};
        bool took = false;
        for (size_t k = 0; k < ARRAY_LEN(scalars) && !took && !bad; k++) {
            char opt[32], member[32];
            snprintf(opt, sizeof opt, "--%s", scalars[k]);
            snprintf(member, sizeof member, "%s", scalars[k]);
            for (char *p = member; *p; p++)
                if (*p == '-') *p = '_';
            if ((v = cli_opt(argc, argv, &i, opt, &bad))) {
                buf_printf(b, "%s\"%s\":", b->len > 1 ? "," : "", member);
                if (k >= 3 && *v && (v[0] != '0' || !v[1]) && strlen(v) <= 20 && strspn(v, "0123456789") == strlen(v))
                    buf_append(b, v, strlen(v));
                else
                    json_escape(b, v, strlen(v));
                took = true;
            }
        }
        if (bad) break;
        if (took) continue;
        if (!strcmp(argv[i], "--streams"))
            list = &streams, n = &nstreams;
        else if (!strcmp(argv[i], "--groups"))
            list = &groups, n = &ngroups;
        else {
            bad = cli_fail(CLI_USAGE, "unknown argument %s (see factum key --help)", argv[i]);
            break;
        }
        for (; i + 1 < argc && strncmp(argv[i + 1], "--", 2); i++, ++*n) {
            if (*n) buf_append(list, ",", 1);
            json_escape(list, argv[i + 1], strlen(argv[i + 1]));
        }
        if (!*n) {
            bad = cli_fail(CLI_USAGE, "%s needs at least one value", argv[i]);
            break;
        }
    }
    if (nstreams) buf_printf(b, "%s\"streams\":[%.*s]", b->len > 1 ? "," : "", (int)streams.len, streams.ptr);
    if (ngroups) buf_printf(b, "%s\"groups\":[%.*s]", b->len > 1 ? "," : "", (int)groups.len, groups.ptr);
    buf_append(b, "}", 1);
    buf_free(&streams);
    buf_free(&groups);
    return bad ? CLI_USAGE : 0;
}

static void print_key(void *ctx, const auth_key *k) {
    buf_t *b = ctx;
    b->len = 0;
    auth_key_json(k, b);
    printf("%.*s\n", (int)b->len, b->ptr);
}

/* On the data folder. */
static int local(const char *dir, const char *sub, int argc, char **argv, buf_t *spec) {
    factum_t *db;
    int rc = !strcmp(sub, "create") ? cli_create(dir, &db) : cli_open(dir, &db);
    if (rc) return rc;
    factum_error_t err = {0};
    auth_keys_t *ks = NULL;
    if (!(rc = auth_keys_open(db, &ks, &err))) {
        if (!strcmp(sub, "create")) {
            auth_spec s;
            auth_key k;
            char token[AUTH_TOKEN_LEN + 1];
            if (!(rc = auth_spec_parse((factum_str_t){spec->ptr, spec->len}, clock_realtime_us(), &s, &err)) &&
                !(rc = auth_key_create(ks, &s, "local", token, &k, &err))) {
                printf("%s\n", token);
                fprintf(stderr, "factum: key %s (%s) made; the token above is shown this once\n", k.id,
                        auth_role_name(k.spec.role));
            }
        } else if (!strcmp(sub, "ls")) {
            buf_t b = {0};
            auth_keys_each(ks, print_key, &b);
            buf_free(&b);
        } else if (!(rc = auth_key_revoke(ks, argv[2], "local", &err))) {
            printf("{\"id\":\"%s\",\"revoked\":true}\n", argv[2]);
        }
    }
    auth_keys_close(ks);
    factum_close(db);
    (void)argc;
    return rc ? cli_report(rc, &err) : CLI_OK;
}

/* Against a server. */
static int remote(const char *url, const char *sub, char **argv, buf_t *spec) {
    if (!strcmp(sub, "ls")) return cli_call(url, "GET", "/admin/keys", NULL, true);
    if (!strcmp(sub, "revoke")) {
        buf_t path = {0};
        buf_append(&path, "/admin/keys/", 12);
        buf_url_encode(&path, argv[2], strlen(argv[2]));
        buf_append(&path, "", 1);
        int rc = cli_call(url, "DELETE", path.ptr, NULL, false);
        buf_free(&path);
        return rc;
    }
    factum_client_t *c;
    factum_error_t err = {0};
    char *resp = NULL;
    int status, rc = cli_client_new(url, &c, &err);
    if (!rc) rc = factum_client_call(c, "POST", "/admin/keys", spec->ptr, &status, &resp, &err);
    factum_client_free(c);
    buf_t token = {0}, id = {0};
    if (!rc && (!json_member_string(str_c(resp), "token", &token) || !json_member_string(str_c(resp), "id", &id)))
        rc = err_set(&err, FACTUM_EIO, "the server's answer has no token");
    if (!rc) {
        printf("%s\n", token.ptr);
        fprintf(stderr, "factum: key %s made; the token above is shown this once\n", id.ptr);
    }
    buf_free(&token);
    buf_free(&id);
    free(resp);
    return rc ? cli_report(rc, &err) : CLI_OK;
}

int cli_key(const char *dir, const char *url, int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help")) return printf("%s", usage_key), argc < 2 ? CLI_USAGE : CLI_OK;
    const char *sub = argv[1];
    buf_t spec = {0};
    int rc = 0;
    if (!strcmp(sub, "create"))
        rc = spec_json(argc - 1, argv + 1, &spec);
    else if (!strcmp(sub, "ls") || !strcmp(sub, "list"))
        sub = "ls", rc = argc == 2 ? 0 : cli_fail(CLI_USAGE, "ls takes no arguments");
    else if (!strcmp(sub, "revoke"))
        rc = argc == 3 ? 0 : cli_fail(CLI_USAGE, "usage: factum key revoke ID");
    else
        rc = cli_fail(CLI_USAGE, "unknown key command '%s' (create, ls, revoke)", sub);
    if (!rc) rc = url ? remote(url, sub, argv, &spec) : local(dir, sub, argc, argv, &spec);
    buf_free(&spec);
    return rc;
}
