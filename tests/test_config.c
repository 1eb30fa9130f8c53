/*
 * test_config.c — `factum serve`'s options from a configuration file, the environment and the
 * line, in that order of precedence, and `factum config check` on good and bad files: each
 * error names its line, and a bad file starts nothing and makes no data folder.
 */
#include "test_server.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Writes text to DIR/name and returns the path (static storage, one at a time). */
static const char *write_conf(const char *name, const char *text) {
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", test_dir(), name);
    FILE *f = fopen(path, "w");
    CHECK(f && fputs(text, f) >= 0 && fclose(f) == 0);
    return path;
}

TEST(serve_takes_options_from_the_file_then_the_environment_then_the_line) {
    char data[512], extra[1024];
    snprintf(data, sizeof data, "%s/data", test_dir());
    const char *conf = write_conf("factum.conf", "# the limits\n"
                                                 "[serve]\n"
                                                 "max-connections = 100\n"
                                                 "max-groups = 7   ; an inline comment\n");
    snprintf(extra, sizeof extra, "--config %s", conf);
    srv s = srv_start(data, extra);
    CHECK_EQ(srv_metric(s.port, "factum_connections_limit"), 100);
    CHECK_EQ(srv_metric(s.port, "factum_definitions_max{kind=\"groups\"}"), 7);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    /* The environment wins over the file... */
    setenv("FACTUM_MAX_CONNECTIONS", "200", 1);
    s = srv_start(data, extra);
    CHECK_EQ(srv_metric(s.port, "factum_connections_limit"), 200);
    CHECK_EQ(srv_metric(s.port, "factum_definitions_max{kind=\"groups\"}"), 7);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    /* ... and the line over both, wherever --config stands on it. */
    snprintf(extra, sizeof extra, "--max-connections 300 --config %s", conf);
    s = srv_start(data, extra);
    CHECK_EQ(srv_metric(s.port, "factum_connections_limit"), 300);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    unsetenv("FACTUM_MAX_CONNECTIONS");
    /* A bad value in the environment is refused like one on the line. */
    char out[4096];
    CHECK_EQ(run_factum(out, sizeof out, "--data-dir %s serve --listen 127.0.0.1:0 --max-body x", data), 2);
    CHECK_MSG(strstr(out, "--max-body wants a positive number (got 'x')"), "%s", out);
    setenv("FACTUM_MAX_BODY", "0", 1);
    CHECK_EQ(run_factum(out, sizeof out, "--data-dir %s serve --listen 127.0.0.1:0", data), 2);
    CHECK_MSG(strstr(out, "$FACTUM_MAX_BODY: max-body wants a positive number (got '0')"), "%s", out);
    unsetenv("FACTUM_MAX_BODY");
}

TEST(a_data_dir_in_the_file_is_used_unless_the_line_or_the_environment_names_one) {
    char data[512], text[1024], extra[600];
    snprintf(data, sizeof data, "%s/from-file", test_dir());
    snprintf(text, sizeof text, "data-dir = %s\n", data);
    const char *conf = write_conf("dir.conf", text);
    snprintf(extra, sizeof extra, "--config %s", conf);
    unsetenv("FACTUM_DATA_DIR");
    srv s = srv_start(NULL, extra);
    expect_status(s.port, "POST", "/streams/conf-1", "Content-Type: application/cloudevents+json\r\n",
                  "{\"type\":\"Made\"}", 201, NULL);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    struct stat st;
    CHECK(stat(data, &st) == 0 && S_ISDIR(st.st_mode));
    /* --data-dir wins over the file */
    char other[512];
    snprintf(other, sizeof other, "%s/from-line", test_dir());
    s = srv_start(other, extra);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    CHECK(stat(other, &st) == 0);
}

TEST(config_check_names_the_line_of_every_error_and_serve_refuses_a_bad_file_before_making_anything) {
    char out[8192];
    const char *good = write_conf("good.conf", "listen = 127.0.0.1:7799\n"
                                               "max-body = 2048\n"
                                               "cors-origin = https://a.example, https://b.example\n"
                                               "insecure = false\n"
                                               "[serve]\n"
                                               "tls-cert = /x.pem\n"
                                               "tls-key = /x.key\n");
    CHECK_EQ(run_factum(out, sizeof out, "config check %s", good), 0);
    CHECK_MSG(strstr(out, ": ok"), "%s", out);
    char longline[400];
    memset(longline, 'x', sizeof longline - 2);
    memcpy(longline, "listen = ", 9);
    longline[sizeof longline - 2] = '\n', longline[sizeof longline - 1] = 0;
    char text[2048];
    snprintf(text, sizeof text,
             "listen = 127.0.0.1:0\n"          /* 1 */
             "max-bodyy = 5\n"                 /* 2: unknown */
             "max-body = 0\n"                  /* 3: one past the smallest */
             "this is not an option\n"         /* 4 */
             "[other]\n"                       /* 5 */
             "loops = 2\n"                     /* 6: in an unknown section */
             "[serve]\n"                       /* 7 */
             "insecure = maybe\n"              /* 8 */
             "cors-origin = a,,b\n"            /* 9 */
             "definition-threads = 65\n"       /* 10: one past 64 */
             "max-memory = 1125899906842625\n" /* 11: one past 2^50 */
             "%s",                             /* 12: too long */
             longline);
    char bad[512];
    snprintf(bad, sizeof bad, "%s", write_conf("bad.conf", text));
    CHECK_EQ(run_factum(out, sizeof out, "config check %s", bad), 1);
    static const char *const want[] = {":2: unknown option 'max-bodyy'",
                                       ":3: max-body wants a positive number (got '0')",
                                       ":4: not a 'name = value' line",
                                       ":6: unknown section [other]",
                                       ":8: insecure is true or false (got 'maybe')",
                                       ":9: cors-origin wants up to 16 non-empty values",
                                       ":10: definition-threads takes 1 to 64 (got '65')",
                                       ":11: max-memory wants a positive number",
                                       ":12: the line is longer than",
                                       "9 errors"};
    for (size_t i = 0; i < sizeof want / sizeof *want; i++)
        CHECK_MSG(strstr(out, want[i]), "no '%s' in:\n%s", want[i], out);
    /* tls-cert without tls-key: each line is good, the two together are not */
    const char *half = write_conf("half.conf", "tls-cert = /x.pem\n");
    CHECK_EQ(run_factum(out, sizeof out, "config check %s", half), 1);
    CHECK_MSG(strstr(out, "--tls-cert and --tls-key go together"), "%s", out);
    CHECK_EQ(run_factum(out, sizeof out, "config check %s/missing.conf", test_dir()), 1);
    CHECK_MSG(strstr(out, "cannot open"), "%s", out);
    CHECK_EQ(run_factum(out, sizeof out, "config check"), 2);
    /* serve with the bad file: the same messages, exit 2, no data folder made */
    char data[512];
    snprintf(data, sizeof data, "%s/never", test_dir());
    CHECK_EQ(run_factum(out, sizeof out, "--data-dir %s serve --config %s", data, bad), 2);
    CHECK_MSG(strstr(out, ":2: unknown option 'max-bodyy'") && strstr(out, "not used"), "%s", out);
    struct stat st;
    CHECK(stat(data, &st) != 0);
}
