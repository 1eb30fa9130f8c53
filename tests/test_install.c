/*
 * test_install.c — `make install` into a DESTDIR: the layout, a program built against the
 * installed libraries with pkg-config, the man pages, the shipped configuration file, the
 * systemd unit (systemd-analyze verify) and the server's Type=notify messages.
 */
#include "test_server.h"

#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static bool exists(const char *root, const char *path) {
    char p[1024];
    snprintf(p, sizeof p, "%s%s", root, path);
    struct stat st;
    return stat(p, &st) == 0;
}

static const char program[] =
    "#include <factum.h>\n"
    "#include <factum_client.h>\n"
    "#include <stdio.h>\n"
    "#include <string.h>\n"
    "int main(int argc, char **argv) {\n"
    "    factum_t *db; factum_error_t err;\n"
    "    if (argc < 2 || factum_open(argv[1], NULL, &db, &err)) return 1;\n"
    "    factum_event_t e = {.type = {\"Installed\", 9}, .data = {\"{}\", 2}, .data_format = FACTUM_DATA_JSON};\n"
    "    factum_append_result_t r;\n"
    "    int rc = factum_append(db, (factum_str_t){\"inst-1\", 6}, FACTUM_EXPECT_ANY, &e, 1, &r, &err);\n"
    "    factum_close(db);\n"
    "    factum_client_t *c = NULL;\n"
    "    if (factum_client_new(\"http://127.0.0.1:1\", &c, &err)) return 3;\n"
    "    factum_client_free(c);\n"
    "    printf(\"appended at %llu\\n\", (unsigned long long)r.first_position);\n"
    "    return rc ? 2 : 0;\n"
    "}\n";

TEST_T(make_install_puts_every_part_in_its_place_and_a_program_builds_against_it, 300) {
    char dest[600], build[600], cmd[4096], out[8192];
    snprintf(dest, sizeof dest, "%s/dest", test_dir());
    snprintf(build, sizeof build, "%s", test_bin());
    const char *bdir = dirname(build); /* the build folder the tests were built in */
    const char *san = getenv("FACTUM_SAN");
    snprintf(cmd, sizeof cmd, "make -C %s --no-print-directory install BUILD=%s DESTDIR=%s PREFIX=/usr SAN=%s 2>&1",
             test_root(), bdir, dest, san ? san : "");
    CHECK_MSG(test_run(cmd, out, sizeof out) == 0, "%s", out);
    static const char *const files[] = {"/usr/bin/factum",
                                        "/usr/lib/libfactum.a",
                                        "/usr/lib/libfactum_client.a",
                                        "/usr/include/factum.h",
                                        "/usr/include/factum_client.h",
                                        "/usr/lib/pkgconfig/factum.pc",
                                        "/usr/lib/pkgconfig/factum-client.pc",
                                        "/usr/share/man/man1/factum.1.gz",
                                        "/usr/share/man/man1/factum-serve.1.gz",
                                        "/usr/share/man/man1/factum-append.1.gz",
                                        "/usr/share/man/man1/factum-config.1.gz",
                                        "/usr/lib/systemd/system/factum.service",
                                        "/usr/lib/sysusers.d/factum.conf",
                                        "/etc/factum/factum.conf"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++)
        CHECK_MSG(exists(dest, files[i]), "%s%s is missing", dest, files[i]);
    /* Each command's page is named after it, from the text of COMMAND --help. */
    snprintf(cmd, sizeof cmd, "zcat %s/usr/share/man/man1/factum-key.1.gz", dest);
    CHECK(test_run(cmd, out, sizeof out) == 0 && strstr(out, "factum-key \\- API keys") &&
          strstr(out, "usage: factum key create"));
    /* The installed binary runs, and the configuration file it ships is a good one. */
    snprintf(cmd, sizeof cmd, "%s/usr/bin/factum config check %s/etc/factum/factum.conf 2>&1", dest, dest);
    CHECK_MSG(test_run(cmd, out, sizeof out) == 0 && strstr(out, ": ok"), "%s", out);
    /* A program built against the installed headers and libraries with pkg-config. */
    char src[700], bin[700], data[700];
    snprintf(src, sizeof src, "%s/prog.c", test_dir());
    snprintf(bin, sizeof bin, "%s/prog", test_dir());
    snprintf(data, sizeof data, "%s/prog-data", test_dir());
    FILE *f = fopen(src, "w");
    CHECK(f && fputs(program, f) >= 0 && fclose(f) == 0);
    snprintf(cmd, sizeof cmd,
             "PKG_CONFIG_PATH=%s/usr/lib/pkgconfig PKG_CONFIG_SYSROOT_DIR=%s cc -std=c17 %s -o %s %s "
             "$(PKG_CONFIG_PATH=%s/usr/lib/pkgconfig PKG_CONFIG_SYSROOT_DIR=%s pkg-config --cflags --libs "
             "factum-client) 2>&1",
             dest, dest, san && *san ? "-fsanitize=address,undefined" : "", bin, src, dest, dest);
    CHECK_MSG(test_run(cmd, out, sizeof out) == 0, "%s", out);
    snprintf(cmd, sizeof cmd, "%s %s 2>&1", bin, data);
    CHECK_MSG(test_run(cmd, out, sizeof out) == 0 && strstr(out, "appended at 0"), "%s", out);
    /* The unit, with its ExecStart pointing into DESTDIR, passes systemd's own check. */
    snprintf(cmd, sizeof cmd,
             "sed 's|/usr/bin/factum|%s/usr/bin/factum|' %s/usr/lib/systemd/system/factum.service > "
             "%s/factum.service && grep -q '^Type=notify' %s/factum.service && grep -q '^User=factum' "
             "%s/factum.service && grep -q '^ProtectSystem=strict' %s/factum.service && "
             "systemd-analyze verify --man=no %s/factum.service 2>&1",
             dest, dest, test_dir(), test_dir(), test_dir(), test_dir(), test_dir());
    CHECK_MSG(test_run(cmd, out, sizeof out) == 0, "%s", out);
}

/* Type=notify: READY=1 once the server listens (with where, in STATUS), STOPPING=1 at SIGTERM,
   sent to $NOTIFY_SOCKET as systemd would read them. */
TEST(the_server_tells_systemd_when_it_is_ready_and_when_it_stops) {
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof a.sun_path, "%s/notify", test_dir());
    CHECK(fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0);
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setenv("NOTIFY_SOCKET", a.sun_path, 1);
    srv s = srv_start(test_dir(), NULL);
    unsetenv("NOTIFY_SOCKET");
    char msg[512], want[128];
    ssize_t n = recv(fd, msg, sizeof msg - 1, 0);
    CHECK(n > 0);
    msg[n] = 0;
    snprintf(want, sizeof want, "STATUS=listening on http://127.0.0.1:%d", s.port);
    CHECK_MSG(strstr(msg, "READY=1") && strstr(msg, want), "%s", msg);
    kill(s.pid, SIGTERM);
    n = recv(fd, msg, sizeof msg - 1, 0);
    CHECK(n > 0);
    msg[n] = 0;
    CHECK_MSG(strstr(msg, "STOPPING=1"), "%s", msg);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    close(fd);
}
