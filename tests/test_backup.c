/*
 * test_backup.c — `factum backup` and `factum restore` as real processes, and POST
 * /admin/backup on a real server (docs/operations.md): a backup taken while appends go on holds
 * every event acknowledged before its position, once, at its position; a second backup copies
 * only what is new (the bytes counted against the files' sizes); a backup killed with SIGKILL
 * half-way is refused by restore and serve, and a later backup into it finishes it; a restore
 * serves everything back; a folder of a newer format is refused and an older one upgraded; and
 * every bad input is refused with a clear message and changes nothing.
 */
#include "test_server.h"

#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define CE "Content-Type: application/cloudevents+json\r\n"

static const factum_options_t small = {.segment_bytes = 1u << 16, .memtable_events = 256};

static void fill(factum_t *db, int n, int from) {
    char data[600];
    for (int i = from; i < from + n; i++) {
        snprintf(data, sizeof data, "{\"i\":%d,\"pad\":\"%0500d\"}", i, i);
        CHECK_RC(test_append(db, i % 2 ? "odd" : "even", FACTUM_EXPECT_ANY, "T", data, NULL, NULL), 0);
    }
}

/* Sum of the sizes of the files of a backup that a backup copies (segments, maps, runs). */
typedef struct sizes {
    char name[64][48];
    uint64_t size[64];
    int n;
} sizes;

static void list_sizes(const char *dir, sizes *s) {
    s->n = 0;
    const char *subs[] = {"log", "index"};
    for (int k = 0; k < 2; k++) {
        char d[1024];
        snprintf(d, sizeof d, "%s/%s", dir, subs[k]);
        DIR *dd = opendir(d);
        struct dirent *de;
        while (dd && (de = readdir(dd))) {
            if (!strstr(de->d_name, ".seg") && !strstr(de->d_name, ".pmap") && !strstr(de->d_name, ".idx")) continue;
            char p[1300];
            struct stat st;
            snprintf(p, sizeof p, "%s/%s", d, de->d_name);
            CHECK(stat(p, &st) == 0 && s->n < 64);
            snprintf(s->name[s->n], sizeof s->name[0], "%s/%s", subs[k], de->d_name);
            s->size[s->n++] = (uint64_t)st.st_size;
        }
        if (dd) closedir(dd);
    }
}

TEST(incremental_backup_copies_only_what_is_new) {
    factum_t *db = test_open(test_path("data"), &small);
    fill(db, 400, 0); /* about 240 KiB: several 64 KiB segments */
    factum_close(db);
    char out[4096];
    CHECK_EQ(run_factum(out, sizeof out, "backup --data-dir %s --to %s", test_path("data"), test_path("bk")), 0);
    uint64_t total = json_u64(out, "bytes_total");
    CHECK_EQ(json_u64(out, "bytes_copied"), total);
    CHECK_EQ(json_u64(out, "position"), 400);
    CHECK(json_u64(out, "files_copied") >= 4);
    /* Nothing new: nothing copied. */
    CHECK_EQ(run_factum(out, sizeof out, "backup --data-dir %s --to %s", test_path("data"), test_path("bk")), 0);
    CHECK_EQ(json_u64(out, "bytes_copied"), 0);
    CHECK_EQ(json_u64(out, "files_copied"), 0);
    sizes before, after;
    list_sizes(test_path("bk"), &before);
    db = test_open(test_path("data"), &small);
    fill(db, 300, 400);
    factum_close(db);
    CHECK_EQ(run_factum(out, sizeof out, "backup --data-dir %s --to %s", test_path("data"), test_path("bk")), 0);
    CHECK_EQ(json_u64(out, "position"), 700);
    list_sizes(test_path("bk"), &after);
    /* What is new: new files whole, and the growth of the segment that was the tail. */
    uint64_t expect = 0, sum = 0;
    for (int i = 0; i < after.n; i++) {
        uint64_t had = 0;
        for (int j = 0; j < before.n; j++)
            if (!strcmp(before.name[j], after.name[i])) had = before.size[j];
        CHECK_MSG(after.size[i] >= had, "%s shrank", after.name[i]);
        expect += after.size[i] - had;
        sum += after.size[i];
    }
    CHECK_EQ(json_u64(out, "bytes_copied"), expect);
    CHECK_EQ(json_u64(out, "bytes_total"), sum);
    CHECK(expect < sum / 2 + 65536); /* the sealed segments of the first backup were not copied again */
    /* The backup is a data folder that checks clean, and verify says so too. */
    CHECK_EQ(run_factum(out, sizeof out, "check --data-dir %s", test_path("bk")), 0);
    CHECK(strstr(out, "clean"));
    CHECK_EQ(run_factum(out, sizeof out, "backup --verify --data-dir %s --to %s", test_path("data"), test_path("bk")),
             0);
    CHECK(strstr(out, "0 damage, 0 derived"));
}

/* ---- under appends, through a server ---- */

typedef struct appender {
    int port, id;
    _Atomic bool *stop;
    uint64_t pos[4000];
    int n;
} appender;

static void *append_loop(void *arg) {
    appender *a = arg;
    while (!atomic_load(a->stop) && a->n < 4000) {
        char body[256], path[64];
        snprintf(body, sizeof body, "{\"type\":\"T\",\"id\":\"a%d-%d\",\"data\":{\"n\":%d}}", a->id, a->n, a->n);
        snprintf(path, sizeof path, "/streams/bk-%d", a->id);
        resp r;
        int st = http_try(a->port, "POST", path, CE, body, &r);
        CHECK_MSG(st == 201, "append answered %d", st);
        a->pos[a->n++] = json_u64(r.body, "position");
        resp_free(&r);
    }
    return NULL;
}

TEST_T(backup_under_appends_holds_every_acknowledged_event_once, 120) {
    srv s = srv_start(test_path("data"), "--segment-bytes 65536");
    _Atomic bool stop = false;
    appender a[2];
    pthread_t t[2];
    for (int i = 0; i < 2; i++) {
        a[i] = (appender){.port = s.port, .id = i, .stop = &stop};
        pthread_create(&t[i], NULL, append_loop, &a[i]);
    }
    while (a[0].n < 300 || a[1].n < 300) /* several segments by now */
        usleep(10000);
    char body[1200];
    snprintf(body, sizeof body, "{\"to\":\"%s\",\"verify\":true}", test_path("bk"));
    resp r;
    http_do(s.port, "POST", "/admin/backup", "Content-Type: application/json\r\n", body, &r);
    CHECK_MSG(r.status == 200, "backup answered %d: %s", r.status, r.body);
    uint64_t p = json_u64(r.body, "position");
    CHECK(strstr(r.body, "\"clean\":true"));
    resp_free(&r);
    /* Appends went on during the backup and after it. */
    int seen[2] = {a[0].n, a[1].n};
    while (a[0].n < seen[0] + 50 || a[1].n < seen[1] + 50)
        usleep(10000);
    atomic_store(&stop, true);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    srv_stop(&s, SIGTERM);
    /* Restored and served: every event acknowledged below p is there at its position, once,
       and nothing at or past p. */
    char out[4096];
    CHECK_EQ(run_factum(out, sizeof out, "restore %s --to %s", test_path("bk"), test_path("restored")), 0);
    CHECK_EQ(json_u64(out, "position"), p);
    s = srv_start(test_path("restored"), NULL);
    int below = 0;
    for (int i = 0; i < 2; i++) {
        char path[64];
        snprintf(path, sizeof path, "/streams/bk-%d?limit=10000", i);
        char *got = http_body(s.port, "GET", path, NULL, NULL, 200);
        for (int k = 0; k < a[i].n; k++) {
            char want[96];
            snprintf(want, sizeof want, "\"id\":\"a%d-%d\"", i, k);
            char *at = strstr(got, want);
            if (a[i].pos[k] >= p) {
                CHECK_MSG(!at, "a%d-%d at %llu is past the backup's position %llu", i, k,
                          (unsigned long long)a[i].pos[k], (unsigned long long)p);
                continue;
            }
            below++;
            CHECK_MSG(at, "a%d-%d (position %llu) is missing", i, k, (unsigned long long)a[i].pos[k]);
            CHECK_MSG(!strstr(at + 1, want), "a%d-%d is there twice", i, k);
            char pos[64];
            snprintf(pos, sizeof pos, "\"position\":%llu", (unsigned long long)a[i].pos[k]);
            char *end = strstr(at, "}}");
            CHECK(end && strstr(at, pos) && strstr(at, pos) < end);
        }
        free(got);
    }
    CHECK(below >= 600);
    char *head = http_body(s.port, "GET", "/health", NULL, NULL, 200);
    free(head);
    srv_stop(&s, SIGTERM);
    factum_t *db = test_open(test_path("restored"), NULL);
    CHECK_EQ(factum_head_position(db), p);
    factum_close(db);
}

/* ---- killed half-way ---- */

TEST_T(backup_killed_half_way_is_refused_until_one_finishes, 120) {
    factum_t *db = test_open(test_path("data"), &small);
    fill(db, 400, 0);
    factum_close(db);
    pid_t pid = fork();
    if (pid == 0) {
        setenv("FACTUM_TEST_BACKUP_SLEEP_MS", "300", 1);
        freopen("/dev/null", "w", stdout);
        execl(test_bin(), "factum", "backup", "--data-dir", test_path("data"), "--to", test_path("bk"), (char *)NULL);
        _exit(127);
    }
    /* Half-way: the second segment is copied, more are to come (each file then sleeps 300 ms). */
    char seg1[1200];
    snprintf(seg1, sizeof seg1, "%s/log/00000001.seg", test_path("bk"));
    while (access(seg1, F_OK))
        usleep(10000);
    kill(pid, SIGKILL);
    int st;
    waitpid(pid, &st, 0);
    CHECK(WIFSIGNALED(st));
    char marker[1200];
    snprintf(marker, sizeof marker, "%s/BACKUP-IN-PROGRESS", test_path("bk"));
    CHECK(access(marker, F_OK) == 0);
    char out[4096];
    CHECK_EQ(run_factum(out, sizeof out, "restore %s --to %s", test_path("bk"), test_path("restored")), 1);
    CHECK_MSG(strstr(out, "unfinished backup") && strstr(out, "no BACKUP manifest"), "%s", out);
    CHECK(access(test_path("restored"), F_OK) != 0); /* nothing made */
    CHECK_EQ(run_factum(out, sizeof out, "serve --data-dir %s --listen 127.0.0.1:0", test_path("bk")), 1);
    CHECK_MSG(strstr(out, "unfinished backup"), "%s", out);
    CHECK_EQ(run_factum(out, sizeof out, "check --data-dir %s", test_path("bk")), 1);
    CHECK_MSG(strstr(out, "damage   BACKUP-IN-PROGRESS"), "%s", out);
    /* A backup into it again finishes it. */
    CHECK_EQ(run_factum(out, sizeof out, "backup --data-dir %s --to %s", test_path("data"), test_path("bk")), 0);
    CHECK_EQ(json_u64(out, "position"), 400);
    CHECK(access(marker, F_OK) != 0);
    CHECK_EQ(run_factum(out, sizeof out, "restore %s --to %s", test_path("bk"), test_path("restored")), 0);
    db = test_open(test_path("restored"), NULL);
    CHECK_EQ(factum_head_position(db), 400);
    CHECK_EQ(factum_stream_revision(db, str_c("odd")), 199);
    factum_close(db);
}

/* ---- format versions ---- */

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    CHECK(f);
    fputs(text, f);
    fclose(f);
}

TEST(a_newer_format_is_refused_and_an_older_one_upgraded) {
    factum_t *db = test_open(test_path("data"), &small);
    fill(db, 10, 0);
    factum_close(db);
    char format[1024], out[4096], text[64] = "";
    snprintf(format, sizeof format, "%s", test_path("data/FORMAT"));
    FILE *f = fopen(format, "r");
    CHECK(f && fgets(text, sizeof text, f));
    fclose(f);
    CHECK(!strcmp(text, "factum-format 2\n"));
    write_file(format, "factum-format 4\n");
    CHECK_EQ(run_factum(out, sizeof out, "serve --data-dir %s --listen 127.0.0.1:0", test_path("data")), 1);
    CHECK_MSG(strstr(out, "has format version 4") && strstr(out, "newer factum"), "%s", out);
    CHECK_EQ(run_factum(out, sizeof out, "check --data-dir %s", test_path("data")), 2);
    CHECK_MSG(strstr(out, "has format version 4"), "%s", out);
    CHECK_EQ(run_factum(out, sizeof out, "read odd --data-dir %s", test_path("data")), 1);
    write_file(format, "factum-format x\n");
    CHECK_EQ(run_factum(out, sizeof out, "read odd --data-dir %s", test_path("data")), 1);
    CHECK_MSG(strstr(out, "does not say which format"), "%s", out);
    /* A folder without FORMAT was written before it existed: version 1, upgraded on open. */
    unlink(format);
    int crc = run_factum(out, sizeof out, "check --data-dir %s", test_path("data"));
    CHECK_MSG(crc == 0, "%s", out);
    CHECK_MSG(strstr(out, "format version 1"), "%s", out);
    factum_error_t err;
    CHECK_RC(factum_open(test_path("data"), NULL, &db, &err), 0);
    CHECK_EQ(factum_format_found(db), 1);
    CHECK_EQ(factum_head_position(db), 10);
    factum_close(db);
    f = fopen(format, "r");
    CHECK(f && fgets(text, sizeof text, f));
    fclose(f);
    CHECK(!strcmp(text, "factum-format 2\n"));
    CHECK_RC(factum_open(test_path("data"), NULL, &db, &err), 0);
    CHECK_EQ(factum_format_found(db), 2);
    factum_close(db);
}

/* ---- bad input ---- */

TEST(bad_backup_and_restore_input_is_refused_and_changes_nothing) {
    factum_t *db = test_open(test_path("data"), &small);
    fill(db, 20, 0);
    factum_close(db);
    char out[4096];
    CHECK_EQ(run_factum(out, sizeof out, "backup --data-dir %s", test_path("data")), 2);
    CHECK_MSG(strstr(out, "needs --to DIR"), "%s", out);
    CHECK_EQ(run_factum(out, sizeof out, "backup --data-dir %s --to %s", test_path("data"), test_path("data/inner")),
             1);
    CHECK_MSG(strstr(out, "is inside") && strstr(out, "outside it"), "%s", out);
    CHECK(access(test_path("data/inner"), F_OK) != 0);
    CHECK_EQ(run_factum(out, sizeof out, "backup --data-dir %s --to %s", test_path("data"), test_path("data")), 1);
    mkdir(test_path("other"), 0755);
    write_file(test_path("other/mine.txt"), "keep me\n");
    CHECK_EQ(run_factum(out, sizeof out, "backup --data-dir %s --to %s", test_path("data"), test_path("other")), 1);
    CHECK_MSG(strstr(out, "not empty and holds no backup"), "%s", out);
    DIR *d = opendir(test_path("other"));
    int n = 0;
    for (struct dirent *de; (de = readdir(d));)
        n += de->d_name[0] != '.';
    closedir(d);
    CHECK_EQ(n, 1);
    CHECK_EQ(run_factum(out, sizeof out, "backup --data-dir %s --to %s", test_path("data"), test_path("no/such/place")),
             1);
    CHECK_MSG(strstr(out, "above it"), "%s", out);
    /* restore: a folder that is no backup, a target that is not empty, a target inside the backup */
    CHECK_EQ(run_factum(out, sizeof out, "restore %s --to %s", test_path("data"), test_path("r")), 1);
    CHECK_MSG(strstr(out, "is not a backup"), "%s", out);
    CHECK(access(test_path("r"), F_OK) != 0);
    CHECK_EQ(run_factum(out, sizeof out, "backup --data-dir %s --to %s", test_path("data"), test_path("bk")), 0);
    CHECK_EQ(run_factum(out, sizeof out, "restore %s --to %s", test_path("bk"), test_path("other")), 1);
    CHECK_MSG(strstr(out, "is not empty: a restore goes to a new or empty folder"), "%s", out);
    CHECK_EQ(run_factum(out, sizeof out, "restore %s --to %s", test_path("bk"), test_path("bk/log/x")), 1);
    CHECK_MSG(strstr(out, "is inside"), "%s", out);
    CHECK_EQ(run_factum(out, sizeof out, "restore %s", test_path("bk")), 2);
    CHECK_EQ(
        run_factum(out, sizeof out, "--server http://127.0.0.1:1 restore %s --to %s", test_path("bk"), test_path("r")),
        2);
    /* over HTTP: a relative folder, a missing one, an unknown member, a non-empty folder */
    srv s = srv_start(test_path("data"), NULL);
    expect_status(s.port, "POST", "/admin/backup", NULL, "{\"to\":\"relative/dir\"}", 400, "absolute path");
    expect_status(s.port, "POST", "/admin/backup", NULL, "{}", 400, "absolute path");
    expect_status(s.port, "POST", "/admin/backup", NULL, "{\"to\":\"/tmp/x\",\"when\":1}", 400, "unknown member");
    expect_status(s.port, "POST", "/admin/backup", NULL, "{\"to\":\"/tmp/x\",\"verify\":1}", 400, "true or false");
    char body[1200];
    snprintf(body, sizeof body, "{\"to\":\"%s\"}", test_path("other"));
    expect_status(s.port, "POST", "/admin/backup", NULL, body, 400, "holds no backup");
    snprintf(body, sizeof body, "{\"to\":\"%s\"}", test_path("data/log/inner"));
    expect_status(s.port, "POST", "/admin/backup", NULL, body, 400, "is inside");
    srv_stop(&s, SIGTERM);
}
