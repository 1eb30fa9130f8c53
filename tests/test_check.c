/*
 * test_check.c — `factum check`, the offline checker: each test makes a real store, closes it,
 * damages its files with pwrite as a disk or a person might, and asserts what the checker says
 * (exit code, file, offset, position), what --repair and --truncate-at change (and that nothing
 * else changes), and that the store then opens and reads as the report said it would.
 */
#include "test.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

static const factum_options_t small = {.segment_bytes = 1u << 16, .memtable_events = 64};

/* Appends n events in batches of 1 to 5, to streams s-0 .. s-6, every third with a correlation id. */
static void fill(factum_t *db, int n) {
    for (int i = 0; i < n;) {
        int k = MIN(1 + i % 5, n - i);
        factum_event_t ev[5];
        char data[5][400], corr[5][32], stream[16];
        for (int j = 0; j < k; j++) {
            snprintf(data[j], sizeof data[j], "{\"i\":%d,\"pad\":\"%0300d\"}", i + j, i + j);
            ev[j] = (factum_event_t){.type = str_c("T"), .data = str_c(data[j]), .data_format = FACTUM_DATA_JSON};
            if ((i + j) % 3 == 0) {
                snprintf(corr[j], sizeof corr[j], "c-%d", (i + j) % 11);
                ev[j].correlationid = str_c(corr[j]);
            }
        }
        snprintf(stream, sizeof stream, "s-%d", i % 7);
        CHECK_RC(factum_append(db, str_c(stream), FACTUM_EXPECT_ANY, ev, (size_t)k, NULL, NULL), 0);
        i += k;
    }
}

static void make_store(int n) {
    factum_t *db = test_open(test_dir(), &small);
    fill(db, n);
    factum_close(db);
}

/* Runs `factum check ARGS` on the test's folder; stdout and stderr in out. */
static int check_bin(const char *args, char *out, size_t cap) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s check --data-dir %s %s 2>&1", test_bin(), test_dir(), args);
    return test_run(cmd, out, cap);
}

/* One record of a segment file, found by walking the lengths from the header. */
typedef struct rec {
    uint64_t off, pos;
    uint32_t len;
    bool batch_end;
} rec;

static char *seg_path(unsigned no, const char *ext) {
    static char path[512];
    snprintf(path, sizeof path, "%s/log/%08x.%s", test_dir(), no, ext);
    return path;
}

static size_t seg_records(unsigned no, rec *out, size_t cap) {
    int fd = open(seg_path(no, "seg"), O_RDONLY);
    CHECK(fd >= 0);
    uint8_t h[64];
    size_t n = 0;
    for (uint64_t off = 64; n < cap && pread(fd, h, sizeof h, (off_t)off) == (ssize_t)sizeof h; n++) {
        if (load32(h) != 0x31564546u) break; /* "FEV1" */
        out[n] = (rec){off, load64(h + 16), load32(h + 4), (load32(h + 12) & 1) != 0};
        off += out[n].len;
    }
    close(fd);
    return n;
}

static unsigned count_segments(void) {
    unsigned n = 0;
    while (access(seg_path(n, "seg"), F_OK) == 0)
        n++;
    return n;
}

static void flip(const char *path, uint64_t off) { test_flip_bit(path, off); }

/* Every file of log/ and index/ with its bytes, in name order: to see that nothing changed. */
static int cmp_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }
static void snapshot(buf_t *out) {
    out->len = 0;
    const char *subs[] = {"log", "index"};
    for (int k = 0; k < 2; k++) {
        char path[600];
        snprintf(path, sizeof path, "%s/%s", test_dir(), subs[k]);
        DIR *d = opendir(path);
        if (!d) continue;
        char *names[256];
        size_t n = 0;
        struct dirent *de;
        while ((de = readdir(d)) && n < 256)
            if (de->d_name[0] != '.') names[n++] = strdup(de->d_name);
        closedir(d);
        qsort(names, n, sizeof *names, cmp_name);
        for (size_t i = 0; i < n; i++) {
            snprintf(path, sizeof path, "%s/%s/%s", test_dir(), subs[k], names[i]);
            buf_printf(out, "== %s/%s\n", subs[k], names[i]);
            FILE *f = fopen(path, "rb");
            CHECK(f);
            char chunk[65536];
            size_t got;
            while ((got = fread(chunk, 1, sizeof chunk, f)) > 0)
                buf_append(out, chunk, got);
            fclose(f);
            free(names[i]);
        }
    }
}

typedef struct found {
    int n[4];
    char lines[8192];
} found;

static void collect(void *ctx, const factum_check_finding_t *f) {
    found *x = ctx;
    x->n[f->kind]++;
    size_t used = strlen(x->lines);
    snprintf(x->lines + used, sizeof x->lines - used, "%d %s %lld %lld %s\n", f->kind, f->file,
             f->offset == FACTUM_END ? -1 : (long long)f->offset,
             f->position == FACTUM_END ? -1 : (long long)f->position, f->message);
}

static void count_findings(void *ctx, const factum_check_finding_t *f) {
    int *n = ctx;
    n[0]++;
    if (strstr(f->message, "more findings are counted")) n[1]++;
}

/* Reads every event by position and each stream whole; returns how many were read. */
static uint64_t read_everything(factum_t *db) {
    uint64_t n = 0, head = factum_head_position(db);
    for (uint64_t p = 0; p < head; p++) {
        factum_result_t *r;
        factum_error_t err;
        CHECK_MSG(factum_read_at(db, p, &r, &err) == 0, "position %llu: %s", (unsigned long long)p, err.message);
        n++;
        factum_result_free(r);
    }
    uint64_t in_streams = 0;
    for (int s = 0; s < 9; s++) {
        char stream[16];
        snprintf(stream, sizeof stream, s < 7 ? "s-%d" : s == 7 ? "s-last" : "after", s);
        factum_result_t *r;
        if (factum_read_stream(db, str_c(stream), 0, 100000, 0, &r, NULL)) continue;
        for (size_t i = 0; i < factum_result_count(r); i++)
            CHECK_EQ(factum_result_event(r, i)->revision, i);
        in_streams += factum_result_count(r);
        factum_result_free(r);
    }
    CHECK_EQ(in_streams, head);
    return n;
}

TEST(check_passes_a_clean_store_with_exit_0_and_counts_what_it_read) {
    make_store(600);
    CHECK(count_segments() >= 4);
    char out[8192];
    CHECK_EQ(check_bin("", out, sizeof out), 0);
    CHECK_MSG(strstr(out, "600 events") && strstr(out, "0 damage, 0 derived") && strstr(out, ": clean"), "%s", out);
    factum_check_summary_t s;
    found f = {0};
    CHECK_RC(factum_check(test_dir(), NULL, collect, &f, &s, NULL), 0);
    CHECK_MSG(f.n[0] + f.n[1] + f.n[2] + f.n[3] == 0, "%s", f.lines);
    CHECK_EQ(s.segments, count_segments());
    CHECK_EQ(s.events, 600);
    CHECK_EQ(s.head, 600);
    CHECK_EQ(s.mark, 600);
    CHECK_EQ(s.index_covered, 600);
    /* stream, id and the stream: and type: tags for each, correlation for every third */
    CHECK_EQ(s.index_entries, 600 * 4 + 200);
    CHECK_EQ(check_bin("--json", out, sizeof out), 0);
    CHECK_MSG(strstr(out, "\"events\":600") && strstr(out, "\"clean\":true"), "%s", out);
}

TEST(check_names_file_offset_and_position_of_a_flipped_bit_in_a_sealed_segment) {
    make_store(600);
    rec r[512];
    size_t n = seg_records(1, r, 512);
    CHECK(n > 10);
    rec bad = r[n / 2];
    flip(seg_path(1, "seg"), bad.off + 64 + 20); /* inside the event's data */
    char out[8192], want[128];
    CHECK_EQ(check_bin("", out, sizeof out), 1);
    snprintf(want, sizeof want, "damage   log/00000001.seg offset %llu position %llu: the record fails its checksum",
             (unsigned long long)bad.off, (unsigned long long)bad.pos);
    CHECK_MSG(strstr(out, want) && strstr(out, "1 damage, 0 derived"), "%s", out);
    found f = {0};
    factum_check_summary_t s;
    CHECK_RC(factum_check(test_dir(), NULL, collect, &f, &s, NULL), 0);
    CHECK_MSG(f.n[FACTUM_CHECK_DAMAGE] == 1 && s.events == 599, "%s", f.lines);
    /* --repair has nothing it may do about the log: still damage, and the file is as it was. */
    buf_t before = {0}, after = {0};
    snapshot(&before);
    CHECK_EQ(check_bin("--repair", out, sizeof out), 1);
    snapshot(&after);
    CHECK(before.len == after.len && !memcmp(before.ptr, after.ptr, before.len));
    /* The store opens (the position map is whole); the damaged event is reported, the others read. */
    factum_t *db = test_open(test_dir(), &small);
    for (uint64_t p = 0; p < 600; p++) {
        factum_result_t *res;
        factum_error_t err;
        int rc = factum_read_at(db, p, &res, &err);
        if (p == bad.pos) {
            CHECK_RC(rc, FACTUM_ECORRUPT);
            continue;
        }
        CHECK_MSG(rc == 0, "position %llu: %s", (unsigned long long)p, err.message);
        factum_result_free(res);
    }
    factum_close(db);
    buf_free(&before);
    buf_free(&after);
}

/* The last append is a batch of 5; the close wrote the commit mark past it. */
static rec last_batch_store(rec *batch) {
    factum_t *db = test_open(test_dir(), &small);
    fill(db, 40);
    factum_event_t ev[5];
    for (int j = 0; j < 5; j++)
        ev[j] = (factum_event_t){.type = str_c("Last"), .data = str_c("{\"x\":1}"), .data_format = FACTUM_DATA_JSON};
    CHECK_RC(factum_append(db, str_c("s-last"), FACTUM_EXPECT_ANY, ev, 5, NULL, NULL), 0);
    factum_close(db);
    rec r[512];
    size_t n = seg_records(count_segments() - 1, r, 512);
    CHECK(n >= 5 && r[n - 1].batch_end && !r[n - 2].batch_end);
    memcpy(batch, r + n - 5, 5 * sizeof *batch);
    return r[n - 1];
}

TEST(check_reports_a_flipped_bit_in_the_last_acknowledged_group_as_damage) {
    rec b[5];
    last_batch_store(b);
    unsigned tail = count_segments() - 1;
    flip(seg_path(tail, "seg"), b[2].off + 70);
    char out[8192], want[128];
    CHECK_EQ(check_bin("", out, sizeof out), 1);
    snprintf(want, sizeof want, "log/%08x.seg offset %llu position %llu", tail, (unsigned long long)b[2].off,
             (unsigned long long)b[2].pos);
    CHECK_MSG(strstr(out, want) && strstr(out, "acknowledged") && strstr(out, "1 damage"), "%s", out);
    /* And open agrees: it refuses rather than cut acknowledged events. */
    factum_t *db = NULL;
    factum_error_t err;
    CHECK_RC(factum_open(test_dir(), &small, &db, &err), FACTUM_ECORRUPT);
}

TEST(check_reports_acknowledged_events_that_are_gone_from_the_tail) {
    rec b[5];
    last_batch_store(b);
    unsigned tail = count_segments() - 1;
    int fd = open(seg_path(tail, "seg"), O_RDWR);
    static const uint8_t zeros[8192];
    CHECK(pwrite(fd, zeros, b[4].off + b[4].len - b[0].off, (off_t)b[0].off) >
          0); /* the batch never reached the disk */
    close(fd);
    char out[8192];
    CHECK_EQ(check_bin("", out, sizeof out), 1);
    CHECK_MSG(strstr(out, "acknowledged events at positions") && strstr(out, "are missing"), "%s", out);
    factum_t *db = NULL;
    CHECK_RC(factum_open(test_dir(), &small, &db, NULL), FACTUM_ECORRUPT);
}

TEST(check_notes_a_torn_tail_past_the_commit_mark_and_open_cuts_exactly_that) {
    rec b[5];
    rec last = last_batch_store(b);
    unsigned tail = count_segments() - 1;
    /* A write that was never acknowledged: half of a record of the next position. */
    uint8_t rec_bytes[512];
    int fd = open(seg_path(tail, "seg"), O_RDWR);
    CHECK(last.len <= sizeof rec_bytes && pread(fd, rec_bytes, last.len, (off_t)last.off) == (ssize_t)last.len);
    store64(rec_bytes + 16, last.pos + 1);
    uint64_t end = last.off + last.len;
    CHECK(pwrite(fd, rec_bytes, last.len / 2, (off_t)end) == (ssize_t)(last.len / 2));
    close(fd);
    char out[8192], want[160];
    CHECK_EQ(check_bin("", out, sizeof out), 0);
    snprintf(want, sizeof want, "note     log/%08x.seg offset %llu position %llu: a torn tail of %u bytes", tail,
             (unsigned long long)end, (unsigned long long)last.pos + 1, last.len / 2);
    CHECK_MSG(strstr(out, want) && strstr(out, "0 damage, 0 derived, 1 notes"), "%s", out);
    /* Open does what the note said: keeps every event, cuts those bytes. */
    factum_t *db = test_open(test_dir(), &small);
    CHECK_EQ(factum_head_position(db), last.pos + 1);
    CHECK_EQ(read_everything(db), last.pos + 1);
    factum_close(db);
    fd = open(seg_path(tail, "seg"), O_RDONLY);
    uint8_t after[512];
    CHECK(pread(fd, after, last.len / 2, (off_t)end) == (ssize_t)(last.len / 2));
    close(fd);
    for (uint32_t i = 0; i < last.len / 2; i++)
        CHECK_EQ(after[i], 0);
    CHECK_EQ(check_bin("", out, sizeof out), 0);
    CHECK_MSG(strstr(out, "0 damage, 0 derived, 0 notes"), "%s", out);
}

TEST(check_reports_missing_position_maps_and_a_damaged_index_run_as_derived_and_repair_rebuilds_them) {
    make_store(600);
    unsigned nseg = count_segments();
    for (unsigned i = 0; i + 1 < nseg; i++)
        CHECK(unlink(seg_path(i, "pmap")) == 0);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "ls %s/index/run-*.idx | head -1", test_dir());
    char run[512];
    CHECK_EQ(test_run(cmd, run, sizeof run), 0);
    run[strcspn(run, "\n")] = 0;
    flip(run, 64 + 5);
    char out[16384];
    CHECK_EQ(check_bin("", out, sizeof out), 1);
    CHECK_MSG(strstr(out, "derived  log/00000000.pmap: missing") && strstr(out, "derived  index/MANIFEST") &&
                  !strstr(out, "damage ") && strstr(out, "0 damage"),
              "%s", out);
    CHECK_EQ(check_bin("--repair", out, sizeof out), 0);
    CHECK_MSG(strstr(out, "repaired log/00000000.pmap") && strstr(out, "repaired index") &&
                  strstr(out, "after repairing:"),
              "%s", out);
    for (unsigned i = 0; i + 1 < nseg; i++)
        CHECK(access(seg_path(i, "pmap"), F_OK) == 0);
    CHECK_EQ(check_bin("", out, sizeof out), 0);
    CHECK_MSG(strstr(out, "0 damage, 0 derived"), "%s", out);
    factum_t *db = test_open(test_dir(), &small);
    CHECK_EQ(read_everything(db), 600);
    factum_close(db);
    CHECK_EQ(check_bin("", out, sizeof out), 0);
    CHECK_MSG(strstr(out, "0 damage, 0 derived, 0 notes") && strstr(out, "index covers 600"), "%s", out);
}

TEST(check_reports_a_lost_index_manifest_as_derived_and_repair_removes_the_orphaned_runs) {
    make_store(300);
    char path[600];
    snprintf(path, sizeof path, "%s/index/MANIFEST", test_dir());
    CHECK(unlink(path) == 0);
    char out[8192];
    CHECK_EQ(check_bin("", out, sizeof out), 1);
    CHECK_MSG(strstr(out, "derived  index/MANIFEST: missing, while index/ holds"), "%s", out);
    CHECK_EQ(check_bin("--repair", out, sizeof out), 0);
    CHECK_EQ(check_bin("", out, sizeof out), 0);
    factum_t *db = test_open(test_dir(), &small);
    CHECK_EQ(read_everything(db), 300);
    factum_close(db);
}

/* An entry whose run still checks out (checksums made again) but points at another event. */
TEST(check_finds_an_index_entry_that_points_to_another_event) {
    make_store(300);
    char cmd[600], run[512];
    snprintf(cmd, sizeof cmd, "ls -S %s/index/run-*.idx | head -1", test_dir());
    CHECK_EQ(test_run(cmd, run, sizeof run), 0);
    run[strcspn(run, "\n")] = 0;
    int fd = open(run, O_RDWR);
    struct stat st;
    CHECK(fd >= 0 && fstat(fd, &st) == 0);
    uint8_t *b = malloc((size_t)st.st_size);
    CHECK(pread(fd, b, (size_t)st.st_size, 0) == st.st_size);
    uint64_t lo = load64(b + 16), hi = load64(b + 24);
    uint64_t first = 0; /* the first stream entry: tag entries (key tag 0) sort before them, and a
                           tag's posting list moved one on may still name an event with that tag */
    while (first < load64(b + 8) && load64(b + 64 + 24 * first) >> 62 == 0)
        first++;
    CHECK(load64(b + 8) > first + 21);
    for (uint64_t i = first; i < first + 21; i++) { /* 21 entries name the wrong positions: one past the listed 20 */
        uint64_t pos = load64(b + 64 + 24 * i + 16);
        store64(b + 64 + 24 * i + 16, pos + 1 < hi ? pos + 1 : lo);
    }
    store32(b + 48, crc32c(b + 64, (size_t)st.st_size - 64));
    store32(b + 60, crc32c(b, 60));
    CHECK(pwrite(fd, b, (size_t)st.st_size, 0) == st.st_size);
    close(fd);
    free(b);
    char out[32768];
    CHECK_EQ(check_bin("", out, sizeof out), 1);
    char entry[32];
    snprintf(entry, sizeof entry, "entry %llu (", (unsigned long long)first);
    CHECK_MSG(strstr(out, entry) && strstr(out, "does not match the event at position") &&
                  strstr(out, "is in no run") && strstr(out, "1 more entries do not match the log"),
              "%s", out);
    int listed = 0;
    for (const char *p = out; (p = strstr(p, "does not match the event")); p++)
        listed++;
    CHECK_EQ(listed, 20);
    CHECK_EQ(check_bin("--repair", out, sizeof out), 0);
    factum_t *db = test_open(test_dir(), &small);
    CHECK_EQ(read_everything(db), 300);
    factum_close(db);
}

TEST(check_truncate_at_cuts_exactly_there_and_the_store_opens_with_that_head) {
    make_store(600);
    unsigned nseg = count_segments();
    rec r[512];
    size_t n = seg_records(1, r, 512);
    size_t k = n / 2;
    while (!r[k].batch_end)
        k++;
    uint64_t cut = r[k].pos + 1;
    char out[16384], args[64], want[96];
    snprintf(args, sizeof args, "--repair --truncate-at %llu", (unsigned long long)cut);
    CHECK_EQ(check_bin(args, out, sizeof out), 0);
    snprintf(want, sizeof want, "cut the log at position %llu", (unsigned long long)cut);
    CHECK_MSG(strstr(out, want) && strstr(out, "removed the segment") && strstr(out, "set the commit mark"), "%s", out);
    CHECK_EQ(count_segments(), 2);
    CHECK(nseg > 2 && access(seg_path(2, "seg"), F_OK) != 0);
    CHECK_EQ(check_bin("", out, sizeof out), 0);
    factum_t *db = test_open(test_dir(), &small);
    CHECK_EQ(factum_head_position(db), cut);
    CHECK_EQ(read_everything(db), cut);
    factum_result_t *res;
    CHECK_RC(factum_read_at(db, cut - 1, &res, NULL), 0);
    char data[400];
    snprintf(data, sizeof data, "{\"i\":%llu,\"pad\":\"%0300llu\"}", (unsigned long long)cut - 1,
             (unsigned long long)cut - 1);
    CHECK(str_eq(factum_result_event(res, 0)->data, str_c(data)));
    factum_result_free(res);
    factum_append_result_t ar;
    CHECK_RC(test_append(db, "after", FACTUM_EXPECT_ANY, "T", "{}", NULL, &ar), 0);
    CHECK_EQ(ar.last_position, cut); /* positions go on from the cut */
    factum_close(db);
    CHECK_EQ(check_bin("", out, sizeof out), 0);
    CHECK_MSG(strstr(out, "0 damage, 0 derived, 0 notes"), "%s", out);
}

TEST(check_cuts_damage_in_the_last_group_only_when_told_where) {
    rec b[5];
    last_batch_store(b);
    unsigned tail = count_segments() - 1;
    flip(seg_path(tail, "seg"), b[3].off + 70);
    buf_t before = {0}, after = {0};
    snapshot(&before);
    char out[8192], args[64];
    CHECK_EQ(check_bin("", out, sizeof out), 1);
    CHECK_EQ(check_bin("--repair", out, sizeof out), 1); /* never cuts by itself */
    snapshot(&after);
    CHECK(before.len == after.len && !memcmp(before.ptr, after.ptr, before.len));
    snprintf(args, sizeof args, "--repair --truncate-at %llu", (unsigned long long)b[0].pos);
    CHECK_EQ(check_bin(args, out, sizeof out), 0);
    factum_t *db = test_open(test_dir(), &small);
    CHECK_EQ(factum_head_position(db), b[0].pos);
    CHECK_EQ(read_everything(db), b[0].pos);
    factum_close(db);
    buf_free(&before);
    buf_free(&after);
}

TEST(check_refuses_a_truncate_at_it_cannot_cut_and_changes_nothing) {
    rec b[5];
    rec last = last_batch_store(b);
    uint64_t head = last.pos + 1;
    buf_t before = {0}, after = {0};
    snapshot(&before);
    char out[8192], args[7][64];
    snprintf(args[0], sizeof args[0], "--repair --truncate-at %llu",
             (unsigned long long)head + 1); /* one past the end */
    snprintf(args[1], sizeof args[1], "--repair --truncate-at %llu",
             (unsigned long long)b[2].pos); /* inside the batch */
    snprintf(args[2], sizeof args[2], "--repair --truncate-at abc");
    snprintf(args[3], sizeof args[3], "--repair --truncate-at -1");
    snprintf(args[4], sizeof args[4], "--repair --truncate-at ''");
    snprintf(args[5], sizeof args[5], "--repair --truncate-at");
    snprintf(args[6], sizeof args[6], "--truncate-at %llu", (unsigned long long)b[0].pos); /* without --repair */
    const char *says[7] = {"the log ends at",  "inside a batch", "takes a position", "takes a position",
                           "takes a position", "needs a value",  "give --repair"};
    for (int i = 0; i < 7; i++) {
        CHECK_MSG(check_bin(args[i], out, sizeof out) == 2, "%s: %s", args[i], out);
        CHECK_MSG(strstr(out, says[i]), "%s: %s", args[i], out);
        snapshot(&after);
        CHECK_MSG(before.len == after.len && !memcmp(before.ptr, after.ptr, before.len), "%s changed the folder",
                  args[i]);
    }
    /* At the limit itself: the end of the log is a cut that removes nothing. */
    snprintf(args[0], sizeof args[0], "--repair --truncate-at %llu", (unsigned long long)head);
    CHECK_EQ(check_bin(args[0], out, sizeof out), 0);
    factum_t *db = test_open(test_dir(), &small);
    CHECK_EQ(factum_head_position(db), head);
    factum_close(db);
    buf_free(&before);
    buf_free(&after);
}

TEST(check_accepts_compacted_segments_and_refuses_to_cut_inside_one) {
    factum_t *db = test_open(test_dir(), &small);
    fill(db, 600);
    CHECK_RC(factum_delete_stream(db, str_c("s-1"), FACTUM_EXPECT_ANY, 0, NULL, NULL), 0);
    CHECK_RC(factum_delete_stream(db, str_c("s-2"), FACTUM_EXPECT_ANY, 1, NULL, NULL), 0);
    CHECK_RC(factum_scavenge(db, NULL), 0);
    factum_close(db);
    char out[8192];
    CHECK_EQ(check_bin("", out, sizeof out), 0);
    CHECK_MSG(strstr(out, "removed by a scavenge") && strstr(out, "0 damage, 0 derived"), "%s", out);
    /* Segment 0 was rewritten: no cut may fall inside it. */
    int fd = open(seg_path(0, "seg"), O_RDONLY);
    uint8_t h[64];
    CHECK(pread(fd, h, sizeof h, 0) == (ssize_t)sizeof h);
    close(fd);
    CHECK(load64(h + 32) > 0);
    buf_t before = {0}, after = {0};
    snapshot(&before);
    rec r[512];
    size_t n = seg_records(0, r, 512);
    size_t k = 0;
    while (k + 1 < n && !r[k].batch_end)
        k++;
    char args[64];
    snprintf(args, sizeof args, "--repair --truncate-at %llu", (unsigned long long)r[k].pos + 1);
    CHECK_EQ(check_bin(args, out, sizeof out), 2);
    CHECK_MSG(strstr(out, "compacted"), "%s", out);
    snapshot(&after);
    CHECK(before.len == after.len && !memcmp(before.ptr, after.ptr, before.len));
    buf_free(&before);
    buf_free(&after);
}

TEST(check_exits_2_when_the_folder_is_in_use_or_missing) {
    factum_t *db = test_open(test_dir(), &small);
    fill(db, 10);
    char out[8192], want[64];
    CHECK_EQ(check_bin("", out, sizeof out), 2);
    snprintf(want, sizeof want, "in use by process %ld", (long)getpid());
    CHECK_MSG(strstr(out, want), "%s", out);
    factum_check_summary_t s;
    bool called = false;
    CHECK_RC(factum_check(test_dir(), NULL, NULL, &called, &s, NULL), FACTUM_ELOCKED);
    factum_close(db);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "%s check --data-dir %s/nothing-here 2>&1", test_bin(), test_dir());
    CHECK_EQ(test_run(cmd, out, sizeof out), 2);
    CHECK_MSG(strstr(out, "no data folder"), "%s", out);
    CHECK_EQ(check_bin("--bogus", out, sizeof out), 2);
    CHECK_EQ(check_bin("", out, sizeof out), 0);
}

/* Without a commit mark (a folder written before there was one), a record of a later commit
   group after the damage is what shows the damaged events were acknowledged, as in recovery. */
TEST(check_reports_damage_before_a_later_commit_group_without_a_commit_mark) {
    make_store(40);
    char path[600];
    snprintf(path, sizeof path, "%s/log/COMMIT", test_dir());
    CHECK(unlink(path) == 0);
    rec r[512];
    size_t n = seg_records(0, r, 512);
    CHECK(n == 40);
    size_t k = 20;
    while (!r[k - 1].batch_end)
        k++; /* the first record of an append (its own commit group) */
    flip(seg_path(0, "seg"), r[k].off + 80);
    char out[8192], want[128];
    CHECK_EQ(check_bin("", out, sizeof out), 1);
    snprintf(want, sizeof want, "damage   log/00000000.seg offset %llu position %llu", (unsigned long long)r[k].off,
             (unsigned long long)r[k].pos);
    CHECK_MSG(strstr(out, want) && strstr(out, "later commit group") && strstr(out, "no commit mark"), "%s", out);
    factum_t *db = NULL;
    CHECK_RC(factum_open(test_dir(), &small, &db, NULL), FACTUM_ECORRUPT);
}

/* The report lists 10,000 findings and counts the rest: one past the limit. */
TEST(check_lists_ten_thousand_findings_and_counts_the_rest) {
    make_store(10);
    for (int i = 0; i < 10001; i++) {
        char path[600];
        snprintf(path, sizeof path, "%s/log/leftover-%05d.tmp", test_dir(), i);
        int fd = open(path, O_CREAT | O_WRONLY, 0644);
        CHECK(fd >= 0);
        close(fd);
    }
    factum_check_summary_t s;
    int counts[2] = {0, 0};
    CHECK_RC(factum_check(test_dir(), NULL, count_findings, counts, &s, NULL), 0);
    CHECK_EQ(s.notes, 10001);
    CHECK_EQ(counts[0], 10000 + 1); /* the listed ones and the line that counts the rest */
    CHECK_EQ(counts[1], 1);
    char out[256];
    CHECK_EQ(check_bin("| tail -3 | head -1", out, sizeof out), 0);
    CHECK_MSG(strstr(out, "1 more findings are counted but not listed"), "%s", out);
}

/* Without its map, the damaged segment is what recovery scans around; the map it then writes
   agrees with the check, and the damage stays damage. */
TEST(check_reports_damage_in_a_sealed_segment_without_its_map_and_agrees_with_the_map_open_writes) {
    make_store(600);
    rec r[512];
    size_t n = seg_records(1, r, 512);
    rec bad = r[n / 3];
    flip(seg_path(1, "seg"), bad.off + 64 + 30);
    CHECK(unlink(seg_path(1, "pmap")) == 0);
    char out[8192], want[96];
    snprintf(want, sizeof want, "log/00000001.seg offset %llu position %llu", (unsigned long long)bad.off,
             (unsigned long long)bad.pos);
    CHECK_EQ(check_bin("", out, sizeof out), 1);
    CHECK_MSG(strstr(out, want) && strstr(out, "1 damage, 1 derived"), "%s", out);
    CHECK_EQ(check_bin("--repair", out, sizeof out), 1);
    CHECK_MSG(strstr(out, "not rebuilt: log/00000001.seg is damaged"), "%s", out);
    CHECK(access(seg_path(1, "pmap"), F_OK) != 0);
    factum_t *db = test_open(test_dir(), &small);
    factum_result_t *res;
    CHECK_RC(factum_read_at(db, bad.pos, &res, NULL), FACTUM_ECORRUPT);
    CHECK_RC(factum_read_at(db, bad.pos + 1, &res, NULL), 0);
    factum_result_free(res);
    factum_close(db);
    CHECK_EQ(check_bin("", out, sizeof out), 1);
    CHECK_MSG(strstr(out, want) && strstr(out, "1 damage, 0 derived"), "%s", out);
}
