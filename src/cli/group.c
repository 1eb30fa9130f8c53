/*
 * group.c — `factum group …`: consumer groups from the command line, in client mode (groups
 * live in the server). Thin: each subcommand is one request of docs/http.md; the answers are
 * printed as JSON (pull: one delivery per line).
 */
#include "cli.h"

#include "factum_client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *usage_group =
    "usage: factum --server URL group COMMAND ...\n"
    "\n"
    "  create NAME (--stream S | --category C | --all [--type T]... [--category C]...)\n"
    "         [--start earliest|latest|N|TIME] [--by-stream] [--ack-timeout MS]\n"
    "         [--max-deliveries N] [--min-delay MS] [--max-delay MS]\n"
    "  list | show NAME | delete NAME\n"
    "  pull NAME [--max N] [--wait MS]     one delivery per line: {delivery_id, attempt, event}\n"
    "  ack NAME ID...                (exit 1 when the server took only some: see \"refused\")\n"
    "  nack NAME ID... [--park | --skip] [--delay MS] [--reason TEXT]\n"
    "  parked NAME | replay NAME [ID...] | unpark NAME ID   (unpark deletes a parked event)\n"
    "\n"
    "Groups are kept by the server, so this needs --server (or $FACTUM_URL). docs/groups.md\n"
    "explains delivery, retries, parking and replay.\n";

/* Appends s as a JSON string. */
static void jstr(buf_t *b, const char *s) { json_escape(b, s, strlen(s)); }

/* One request; prints the answer. Frees body (NULL: no body). */
static int call(const char *url, const char *method, const char *path, buf_t *body, bool lines) {
    if (body) buf_append(body, "", 1);
    int rc = cli_call(url, method, path, body ? body->ptr : NULL, lines);
    if (body) buf_free(body);
    return rc;
}

static void id_list(buf_t *b, int argc, char **argv, int from) {
    buf_printf(b, "\"delivery_ids\":[");
    bool first = true;
    for (int i = from; i < argc; i++) {
        if (argv[i][0] == '-' && argv[i][1] == '-') break;
        if (!first) buf_append(b, ",", 1);
        jstr(b, argv[i]);
        first = false;
    }
    buf_append(b, "]", 1);
}

int cli_group(const char *url, int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help")) return printf("%s", usage_group), argc < 2 ? CLI_USAGE : CLI_OK;
    if (!url) return cli_fail(CLI_USAGE, "groups are kept by the server: give --server URL (or set FACTUM_URL)");
    const char *sub = argv[1];
    if (!strcmp(sub, "list")) return call(url, "GET", "/groups", NULL, false);
    if (argc < 3) return cli_fail(CLI_USAGE, "factum group %s needs a group name (see factum group --help)", sub);
    const char *name = argv[2];
    char path[400];
    int rc;
    buf_t b = {0};
    if (!strcmp(sub, "show") || !strcmp(sub, "delete") || !strcmp(sub, "parked")) {
        snprintf(path, sizeof path, "/groups/%s%s", name, !strcmp(sub, "parked") ? "/parked" : "");
        return call(url, !strcmp(sub, "delete") ? "DELETE" : "GET", path, NULL, !strcmp(sub, "parked"));
    }
    if (!strcmp(sub, "create")) {
        buf_t src = {0}, types = {0}, cats = {0}, rest = {0};
        const char *min_delay = NULL, *max_delay = NULL;
        int all = 0;
        for (int i = 3; i < argc; i++) {
            const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
            if (!strcmp(a, "--all"))
                all = 1;
            else if (!strcmp(a, "--by-stream"))
                buf_printf(&rest, ",\"strategy\":\"by_stream\"");
            else if (!v)
                return cli_fail(CLI_USAGE, "%s needs a value", a);
            else if (!strcmp(a, "--stream"))
                buf_printf(&src, "{\"stream\":"), jstr(&src, v), buf_append(&src, "}", 1), i++;
            else if (!strcmp(a, "--category") && !all)
                buf_printf(&src, "{\"category\":"), jstr(&src, v), buf_append(&src, "}", 1), i++;
            else if (!strcmp(a, "--category"))
                buf_append(&cats, cats.len ? "," : "", cats.len ? 1 : 0), jstr(&cats, v), i++;
            else if (!strcmp(a, "--type"))
                buf_append(&types, types.len ? "," : "", types.len ? 1 : 0), jstr(&types, v), i++;
            else if (!strcmp(a, "--start")) {
                uint64_t n;
                if (cli_parse_u64(v, &n))
                    buf_printf(&rest, ",\"start\":%llu", (unsigned long long)n);
                else
                    buf_printf(&rest, ",\"start\":"), jstr(&rest, v);
                i++;
            } else if (!strcmp(a, "--ack-timeout"))
                buf_printf(&rest, ",\"ack_timeout_ms\":%s", v), i++;
            else if (!strcmp(a, "--max-deliveries"))
                buf_printf(&rest, ",\"max_deliveries\":%s", v), i++;
            else if (!strcmp(a, "--min-delay"))
                min_delay = v, i++;
            else if (!strcmp(a, "--max-delay"))
                max_delay = v, i++;
            else
                return cli_fail(CLI_USAGE, "unknown option %s (see factum group --help)", a);
        }
        if (min_delay || max_delay) {
            buf_printf(&rest, ",\"retry\":{");
            if (min_delay) buf_printf(&rest, "\"min_delay_ms\":%s%s", min_delay, max_delay ? "," : "");
            if (max_delay) buf_printf(&rest, "\"max_delay_ms\":%s", max_delay);
            buf_append(&rest, "}", 1);
        }
        if (all)
            buf_printf(&src, "{\"all\":{\"types\":[%s],\"categories\":[%s]}}", types.ptr ? types.ptr : "",
                       cats.ptr ? cats.ptr : "");
        if (!src.len) return cli_fail(CLI_USAGE, "create needs --stream S, --category C or --all");
        buf_printf(&b, "{\"source\":%.*s%.*s}", (int)src.len, src.ptr, (int)rest.len, rest.ptr ? rest.ptr : "");
        snprintf(path, sizeof path, "/groups/%s", name);
        rc = call(url, "PUT", path, &b, false);
        buf_free(&src), buf_free(&types), buf_free(&cats), buf_free(&rest), buf_free(&b);
        return rc;
    }
    if (!strcmp(sub, "pull")) {
        const char *max = "1", *wait = "0";
        for (int i = 3; i + 1 < argc; i += 2) {
            if (!strcmp(argv[i], "--max"))
                max = argv[i + 1];
            else if (!strcmp(argv[i], "--wait"))
                wait = argv[i + 1];
            else
                return cli_fail(CLI_USAGE, "unknown option %s (see factum group --help)", argv[i]);
        }
        snprintf(path, sizeof path, "/groups/%s/messages?max=%s&wait_ms=%s", name, max, wait);
        return call(url, "POST", path, &b, true);
    }
    if (!strcmp(sub, "ack") || !strcmp(sub, "nack") || !strcmp(sub, "replay") || !strcmp(sub, "unpark")) {
        if (!strcmp(sub, "unpark")) {
            if (argc != 4) return cli_fail(CLI_USAGE, "usage: factum group unpark NAME ID");
            snprintf(path, sizeof path, "/groups/%s/parked/%s", name, argv[3]);
            return call(url, "DELETE", path, NULL, false);
        }
        buf_append(&b, "{", 1);
        id_list(&b, argc, argv, 3);
        if (!strcmp(sub, "nack")) {
            const char *action = "retry";
            for (int i = 3; i < argc; i++) {
                if (!strcmp(argv[i], "--park"))
                    action = "park";
                else if (!strcmp(argv[i], "--skip"))
                    action = "skip";
                else if (!strcmp(argv[i], "--delay") && i + 1 < argc)
                    buf_printf(&b, ",\"delay_ms\":%s", argv[++i]);
                else if (!strcmp(argv[i], "--reason") && i + 1 < argc)
                    buf_printf(&b, ",\"reason\":"), jstr(&b, argv[++i]);
                else if (argv[i][0] == '-' && argv[i][1] == '-')
                    return cli_fail(CLI_USAGE, "unknown option %s", argv[i]);
            }
            buf_printf(&b, ",\"action\":\"%s\"", action);
        }
        buf_append(&b, "}", 1);
        bool all = !strcmp(sub, "replay") && argc == 3;
        snprintf(path, sizeof path, "/groups/%s/%s", name, !strcmp(sub, "replay") ? "parked/replay" : sub);
        if (all) b.len = 0, buf_append(&b, "{}", 2);
        buf_append(&b, "", 1);
        rc = !strcmp(sub, "replay") ? cli_call(url, "POST", path, b.ptr, false) : cli_call_batch(url, path, b.ptr);
        buf_free(&b);
        return rc;
    }
    return cli_fail(CLI_USAGE, "unknown group command '%s' (see factum group --help)", sub);
}
