/*
 * test_tree.c — the shape of the source tree, checked by machine: every C file matches the
 * committed .clang-format, and no #include points up a layer (base < io < store, event <
 * client, proj, saga, sys, timer, group, auth < server < cli; docs/threads.md and the README's layout say
 * what each layer holds). An engine may use another of its layer (timers use sys's replay).
 */
#include "test.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

TEST(every_c_file_matches_the_committed_clang_format) {
    char cmd[8192], out[16384];
    snprintf(
        cmd, sizeof cmd,
        "cd '%s' && find src include tests fuzz bench examples -name '*.[ch]' -not -path '*/node_modules/*' | sort | "
        "xargs clang-format --dry-run --Werror 2>&1 | grep -o '^[^:]*:[0-9]*:[0-9]*: error' | head -20",
        test_root());
    CHECK_EQ(test_run(cmd, out, sizeof out), 0);
    CHECK_MSG(!out[0], "files not formatted as .clang-format says (run clang-format -i on them):\n%s", out);
}

/* The layer of a folder under src/; a file may include its own layer and those below. */
static int layer_of(const char *dir) {
    static const struct {
        const char *name;
        int layer;
    } layers[] = {{"base", 0},    {"io", 1},     {"store", 2},  {"event", 2}, {"client", 3},  {"proj", 3},
                  {"saga", 3},    {"sys", 3},    {"timer", 3},  {"group", 3}, {"connect", 3}, {"auth", 3},
                  {"cluster", 3}, {"schema", 3}, {"server", 4}, {"cli", 5}};
    for (size_t i = 0; i < ARRAY_LEN(layers); i++)
        if (!strcmp(dir, layers[i].name)) return layers[i].layer;
    return -1;
}

TEST(no_include_points_up_a_layer) {
    char src[4200], bad[8192] = "";
    snprintf(src, sizeof src, "%s/src", test_root());
    DIR *d = opendir(src);
    CHECK(d != NULL);
    struct dirent *de;
    int files = 0;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        int mine = layer_of(de->d_name);
        CHECK_MSG(mine >= 0, "src/%s has no layer in tests/test_tree.c: give it one", de->d_name);
        char sub[4400];
        snprintf(sub, sizeof sub, "%s/%s", src, de->d_name);
        DIR *f = opendir(sub);
        CHECK(f != NULL);
        struct dirent *fe;
        while ((fe = readdir(f))) {
            size_t n = strlen(fe->d_name);
            if (n < 3 || fe->d_name[n - 2] != '.' || (fe->d_name[n - 1] != 'c' && fe->d_name[n - 1] != 'h')) continue;
            char path[4700], line[1024];
            snprintf(path, sizeof path, "%s/%s", sub, fe->d_name);
            FILE *fp = fopen(path, "r");
            CHECK(fp != NULL);
            files++;
            for (int no = 1; fgets(line, sizeof line, fp); no++) {
                char target[64];
                if (sscanf(line, "#include \"../%63[a-z]/", target) != 1) continue;
                int theirs = layer_of(target);
                if (theirs < 0 || theirs > mine)
                    snprintf(bad + strlen(bad), sizeof bad - strlen(bad),
                             "src/%s/%s:%d includes ../%s/ (layer %d > %d)\n", de->d_name, fe->d_name, no, target,
                             theirs, mine);
            }
            fclose(fp);
        }
        closedir(f);
    }
    closedir(d);
    CHECK(files > 50);
    CHECK_MSG(!bad[0], "includes that point up a layer:\n%s", bad);
}
