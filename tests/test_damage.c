/*
 * test_damage.c — bytes damaged on purpose, and what recovery makes of them (docs/format.md,
 * "Recovery"): damage to acknowledged events is reported with file, offset and position and
 * never cut; a torn, unacknowledged tail is cut, whatever pages of it are missing. Also: an
 * idempotent repeat in a commit group whose fdatasync failed is never answered as written.
 */
#include "test.h"

#include "../src/io/io.h"
#include "../src/store/record.h"

#include <fcntl.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char *seg_path(const char *name) {
    static char p[512];
    snprintf(p, sizeof p, "%s/log/%s", test_dir(), name);
    return p;
}

/* Offsets of the records in segment 0, in order; returns how many (at most cap). */
static size_t record_offsets(uint64_t *offs, size_t cap) {
    int fd = open(seg_path("00000000.seg"), O_RDONLY);
    CHECK(fd >= 0);
    size_t n = 0;
    uint64_t off = 64;
    for (;;) {
        uint8_t h[8];
        if (pread(fd, h, 8, (off_t)off) != 8 || !load32(h + 4)) break;
        if (n < cap) offs[n++] = off;
        off += load32(h + 4);
    }
    close(fd);
    return n;
}

static void flip_bit_at(const char *file, uint64_t off) { test_flip_bit(seg_path(file), off); }

static void zero_range(const char *file, uint64_t off, size_t len) {
    int fd = open(seg_path(file), O_RDWR);
    CHECK(fd >= 0);
    uint8_t z[8192] = {0};
    CHECK(len <= sizeof z);
    CHECK(pwrite(fd, z, len, (off_t)off) == (ssize_t)len);
    close(fd);
}

static void append_one(factum_t *db, int i) {
    char id[32], data[64];
    snprintf(id, sizeof id, "e-%d", i);
    snprintf(data, sizeof data, "{\"i\":%d}", i);
    CHECK_RC(test_append(db, "s", FACTUM_EXPECT_ANY, "T", data, id, NULL), 0);
}

/* One append of n events with ~size bytes of data each. */
static void append_batch(factum_t *db, int first, int n, size_t size) {
    factum_event_t ev[64];
    char ids[64][32];
    static char data[64][4200];
    CHECK(n <= 64 && size < 4096);
    for (int i = 0; i < n; i++) {
        snprintf(ids[i], sizeof ids[i], "b-%d", first + i);
        int k = snprintf(data[i], sizeof data[i], "{\"i\":%d,\"pad\":\"", first + i);
        memset(data[i] + k, 'x', size);
        snprintf(data[i] + k + size, sizeof data[i] - k - size, "\"}");
        ev[i] = (factum_event_t){
            .id = str_c(ids[i]), .type = str_c("B"), .data = str_c(data[i]), .data_format = FACTUM_DATA_JSON};
    }
    factum_error_t err;
    CHECK_RC(factum_append(db, str_c("s"), FACTUM_EXPECT_ANY, ev, (size_t)n, NULL, &err), 0);
}

static int open_err(factum_error_t *err) {
    factum_t *db = NULL;
    int rc = factum_open(test_dir(), NULL, &db, err);
    if (db) factum_close(db);
    return rc;
}

static void copy_file(const char *from, const char *to) {
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", from, to);
    CHECK(system(cmd) == 0);
}

TEST(a_flipped_bit_in_the_last_acknowledged_event_is_corruption_and_positions_are_not_reused) {
    factum_t *db = test_open(test_dir(), NULL);
    for (int i = 0; i < 20; i++)
        append_one(db, i);
    factum_close(db);
    uint64_t offs[64];
    CHECK_EQ(record_offsets(offs, 64), 20);
    flip_bit_at("00000000.seg", offs[19] + 66); /* inside the stream name */
    factum_error_t err;
    CHECK_RC(open_err(&err), FACTUM_ECORRUPT);
    char want[96];
    snprintf(want, sizeof want, "offset %llu (position 19)", (unsigned long long)offs[19]);
    CHECK_MSG(strstr(err.message, "00000000.seg") && strstr(err.message, want), "%s", err.message);
    /* Refusing changed nothing: the damaged bytes are still there to be looked at or repaired. */
    CHECK_EQ(record_offsets(offs, 64), 20);
}

TEST(a_flipped_bit_inside_the_last_acknowledged_batch_is_corruption) {
    factum_t *db = test_open(test_dir(), NULL);
    for (int i = 0; i < 5; i++)
        append_one(db, i);
    append_batch(db, 5, 5, 100);
    factum_close(db);
    uint64_t offs[64];
    CHECK_EQ(record_offsets(offs, 64), 10);
    flip_bit_at("00000000.seg", offs[7] + 70); /* the third event of the batch */
    factum_error_t err;
    CHECK_RC(open_err(&err), FACTUM_ECORRUPT);
    CHECK_MSG(strstr(err.message, "position 7") || strstr(err.message, "position 5"), "%s", err.message);
}

TEST(zeroed_bytes_in_the_last_acknowledged_group_are_corruption) {
    factum_t *db = test_open(test_dir(), NULL);
    for (int i = 0; i < 8; i++)
        append_one(db, i);
    factum_close(db);
    uint64_t offs[64];
    CHECK_EQ(record_offsets(offs, 64), 8);
    zero_range("00000000.seg", offs[7], 64); /* the whole header of the last event */
    factum_error_t err;
    CHECK_RC(open_err(&err), FACTUM_ECORRUPT);
    CHECK_MSG(strstr(err.message, "positions 7 to 7 are missing"), "%s", err.message);
}

TEST(a_flipped_bit_in_a_middle_group_is_corruption_with_or_without_the_commit_mark) {
    factum_t *db = test_open(test_dir(), NULL);
    for (int i = 0; i < 30; i++)
        append_one(db, i);
    factum_close(db);
    uint64_t offs[64];
    CHECK_EQ(record_offsets(offs, 64), 30);
    flip_bit_at("00000000.seg", offs[12] + 66);
    factum_error_t err;
    CHECK_RC(open_err(&err), FACTUM_ECORRUPT);
    CHECK_MSG(strstr(err.message, "position 12"), "%s", err.message);
    CHECK(unlink(seg_path("COMMIT")) == 0);
    CHECK_RC(open_err(&err), FACTUM_ECORRUPT);
    CHECK_MSG(strstr(err.message, "position 12") && strstr(err.message, "later commit group"), "%s", err.message);
}

/* A store whose acknowledged events are 0..9, followed by a group of 12 events of ~1 KiB that
   was written but never acknowledged: the commit mark says 10. */
static void store_with_unacknowledged_tail(uint64_t *offs) {
    factum_t *db = test_open(test_dir(), NULL);
    for (int i = 0; i < 10; i++)
        append_one(db, i);
    factum_close(db);
    char saved[600];
    snprintf(saved, sizeof saved, "%s/COMMIT.saved", test_dir());
    copy_file(seg_path("COMMIT"), saved);
    db = test_open(test_dir(), NULL);
    append_batch(db, 10, 12, 1000);
    factum_close(db);
    copy_file(saved, seg_path("COMMIT")); /* as if the power went before the group's ack */
    CHECK_EQ(record_offsets(offs, 64), 22);
}

static void expect_cut_to_ten(void) {
    factum_t *db = test_open(test_dir(), NULL);
    CHECK_EQ(factum_head_position(db), 10);
    factum_append_result_t res;
    CHECK_RC(test_append(db, "s", FACTUM_EXPECT_ANY, "T", "{\"after\":1}", "after", &res), 0);
    CHECK_EQ(res.first_position, 10);
    for (uint64_t p = 0; p < 11; p++) {
        factum_result_t *r;
        CHECK_RC(factum_read_at(db, p, &r, NULL), 0);
        factum_result_free(r);
    }
    factum_close(db);
}

TEST(a_lost_page_inside_an_unacknowledged_tail_is_cut) {
    uint64_t offs[64];
    store_with_unacknowledged_tail(offs);
    uint64_t page = (offs[15] + 4095) / 4096 * 4096; /* a page in the middle of the group */
    zero_range("00000000.seg", page, 4096);
    expect_cut_to_ten();
}

TEST(a_lost_first_page_of_an_unacknowledged_group_with_later_pages_present_is_cut) {
    uint64_t offs[64];
    store_with_unacknowledged_tail(offs);
    /* The group's first record begins on the page that also holds the acknowledged tail; lose
       the part of that page from the group's start, as a torn sector write would. */
    uint64_t start = offs[10], page_end = (start / 4096 + 1) * 4096;
    zero_range("00000000.seg", start, (size_t)(page_end - start));
    zero_range("00000000.seg", page_end, 4096);
    expect_cut_to_ten();
}

/* ---- a failed fdatasync and an idempotent repeat in the same group ---- */

typedef struct {
    _Atomic int done;
    int rc;
    char msg[256];
} outcome;

static void on_done(void *ctx, int rc, const factum_append_result_t *res, const char *msg) {
    (void)res;
    outcome *o = ctx;
    o->rc = rc;
    snprintf(o->msg, sizeof o->msg, "%s", msg);
    atomic_store(&o->done, 1);
}

TEST(an_idempotent_repeat_in_a_group_whose_fdatasync_failed_is_not_answered_as_written) {
    int same_group = 0;
    for (int round = 0; round < 20; round++) {
        char dir[600];
        snprintf(dir, sizeof dir, "%s/r%d", test_dir(), round);
        io_fault f;
        io_fault_init(&f);
        factum_options_t o = {.vfs = &f.vfs};
        factum_t *db = test_open(dir, &o);
        CHECK_RC(test_append(db, "warm", FACTUM_EXPECT_ANY, "T", "{}", NULL, NULL), 0);
        f.fail_fsync_at = f.fsync_calls; /* the next fdatasync fails */
        /* A big batch first keeps the writer busy while the original and its repeat queue up
           behind it, so that they usually share a commit group. */
        static factum_event_t big[2000];
        for (int i = 0; i < 2000; i++)
            big[i] =
                (factum_event_t){.type = str_c("Big"), .data = str_c("{\"x\":1}"), .data_format = FACTUM_DATA_JSON};
        factum_event_t e = {
            .id = str_c("the-id"), .type = str_c("T"), .data = str_c("{\"v\":1}"), .data_format = FACTUM_DATA_JSON};
        outcome ob = {0}, oa = {0}, orep = {0};
        factum_error_t err;
        CHECK_RC(factum_append_async(db, str_c("big"), FACTUM_EXPECT_ANY, big, 2000, on_done, &ob, &err), 0);
        CHECK_RC(factum_append_async(db, str_c("s"), FACTUM_EXPECT_ANY, &e, 1, on_done, &oa, &err), 0);
        CHECK_RC(factum_append_async(db, str_c("s"), FACTUM_EXPECT_ANY, &e, 1, on_done, &orep, &err), 0);
        while (!atomic_load(&ob.done) || !atomic_load(&oa.done) || !atomic_load(&orep.done))
            usleep(1000);
        CHECK_MSG(oa.rc == FACTUM_EIO || oa.rc == FACTUM_EFAILED, "original: %s %s", factum_errname(oa.rc), oa.msg);
        CHECK_MSG(orep.rc != 0, "the repeat was answered as written although its group failed");
        same_group += strstr(orep.msg, "outcome of this append is unknown") != NULL;
        factum_close(db);
        /* After a restart the retry with the same id is safe: written once. */
        db = test_open(dir, NULL);
        factum_append_result_t res;
        CHECK_RC(factum_append(db, str_c("s"), FACTUM_EXPECT_ANY, &e, 1, &res, &err), 0);
        factum_result_t *r;
        CHECK_RC(factum_read_stream(db, str_c("s"), 0, 10, 0, &r, &err), 0);
        CHECK_EQ(factum_result_count(r), 1);
        factum_result_free(r);
        factum_close(db);
        if (same_group >= 3) break;
    }
    CHECK_MSG(same_group > 0, "the repeat never shared a group with its original in 20 rounds");
}

TEST(the_last_event_of_a_sealed_segment_damaged_without_its_pmap_is_reported_and_the_rest_reads) {
    factum_options_t o = {.segment_bytes = 1 << 16};
    factum_t *db = test_open(test_dir(), &o);
    for (int i = 0; i < 1500; i++)
        append_one(db, i);
    factum_close(db);
    uint64_t offs[2048];
    size_t n = record_offsets(offs, 2048);
    CHECK(n > 10 && n < 1500);                   /* segment 0 is sealed */
    zero_range("00000000.seg", offs[n - 1], 64); /* its last record loses its header */
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -f %s/log/*.pmap", test_dir());
    CHECK(system(cmd) == 0);
    db = test_open(test_dir(), &o);
    CHECK_EQ(factum_head_position(db), 1500);
    factum_integrity_t in;
    factum_integrity(db, &in);
    CHECK_EQ(in.damaged_events, 1);
    CHECK_EQ(in.damage[0].position, n - 1);
    factum_error_t err;
    factum_result_t *r;
    CHECK_RC(factum_read_at(db, n - 1, &r, &err), FACTUM_ECORRUPT);
    for (uint64_t p = 0; p < 1500; p++) {
        if (p == n - 1) continue;
        CHECK_RC(factum_read_at(db, p, &r, &err), 0);
        factum_result_free(r);
    }
    /* Positions go on after the last one: nothing is reused. */
    factum_append_result_t res;
    CHECK_RC(test_append(db, "s", FACTUM_EXPECT_ANY, "T", "{}", "after", &res), 0);
    CHECK_EQ(res.first_position, 1500);
    factum_close(db);
}
