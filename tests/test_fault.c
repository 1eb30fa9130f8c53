/*
 * test_fault.c — fault injection through the engine's I/O layer and by editing files:
 * EIO on fdatasync, ENOSPC, short writes, flipped bits in old and recent data, garbage after
 * the tail. Each gives its documented error and loses nothing acknowledged.
 */
#include "test.h"

#include "../src/io/io.h"

#include <fcntl.h>
#include <string.h>
#include <unistd.h>

static void append_n(factum_t *db, int n, const char *stream) {
    char data[300];
    for (int i = 0; i < n; i++) {
        snprintf(data, sizeof data, "{\"i\":%d,\"pad\":\"%0200d\"}", i, i);
        CHECK_RC(test_append(db, stream, FACTUM_EXPECT_ANY, "T", data, NULL, NULL), 0);
    }
}

static void check_all_readable(uint64_t want) {
    factum_t *db = test_open(test_dir(), NULL);
    CHECK_EQ(factum_head_position(db), want);
    factum_query_t q = {.limit = 100000};
    factum_result_t *res;
    CHECK_RC(factum_read_all(db, &q, &res, NULL), 0);
    CHECK_EQ(factum_result_count(res), want);
    factum_result_free(res);
    factum_close(db);
}

TEST(eio_on_fdatasync_stops_the_writer_and_keeps_acknowledged_events) {
    io_fault f;
    io_fault_init(&f);
    factum_options_t o = {.vfs = &f.vfs};
    factum_t *db = test_open(test_dir(), &o);
    append_n(db, 10, "s");
    f.fail_fsync_at = f.fsync_calls; /* the next fdatasync fails */
    factum_error_t err;
    factum_append_result_t r;
    factum_event_t e = {.type = str_c("T")};
    CHECK_RC(factum_append(db, str_c("s"), FACTUM_EXPECT_ANY, &e, 1, &r, &err), FACTUM_EIO);
    CHECK_MSG(strstr(err.message, "fdatasync") && strstr(err.message, "Input/output error"), "%s", err.message);
    f.fail_fsync_at = -1; /* even when the disk is fine again, no retry on top of lost pages */
    CHECK_RC(factum_append(db, str_c("s"), FACTUM_EXPECT_ANY, &e, 1, &r, &err), FACTUM_EFAILED);
    CHECK(strstr(err.message, "reopen"));
    CHECK_EQ(factum_head_position(db), 10); /* readers never saw the unsynced event */
    factum_result_t *res;
    CHECK_RC(factum_read_stream(db, str_c("s"), 0, 100, 0, &res, NULL), 0);
    CHECK_EQ(factum_result_count(res), 10);
    factum_result_free(res);
    factum_close(db);
    /* The failed append was written before its sync failed; after reopening it may be there
       (it was never acknowledged). Everything acknowledged is. */
    db = test_open(test_dir(), NULL);
    CHECK(factum_head_position(db) >= 10);
    factum_close(db);
}

TEST(enospc_for_a_new_segment_fails_that_append_and_the_store_goes_on) {
    io_fault f;
    io_fault_init(&f);
    factum_options_t o = {.vfs = &f.vfs, .segment_bytes = 1 << 16};
    factum_t *db = test_open(test_dir(), &o);
    f.fail_zero_fill = 1;
    factum_error_t err;
    int rc = 0, ok = 0;
    char data[300];
    memset(data, 0, sizeof data);
    snprintf(data, sizeof data, "{\"pad\":\"%0200d\"}", 0);
    while (rc == 0) {
        rc = test_append(db, "s", FACTUM_EXPECT_ANY, "T", data, NULL, NULL);
        ok += rc == 0;
    }
    factum_event_t e = {.type = str_c("T"), .data = str_c(data), .data_format = FACTUM_DATA_JSON};
    CHECK_RC(factum_append(db, str_c("s"), FACTUM_EXPECT_ANY, &e, 1, NULL, &err), FACTUM_ENOSPC);
    CHECK_MSG(strstr(err.message, "No space left"), "%s", err.message);
    CHECK_EQ(factum_head_position(db), ok);
    f.fail_zero_fill = 0; /* space is back: appends work without reopening */
    CHECK_RC(factum_append(db, str_c("s"), FACTUM_EXPECT_ANY, &e, 1, NULL, &err), 0);
    factum_close(db);
    check_all_readable((uint64_t)ok + 1);
}

TEST(enospc_while_writing_fails_the_writer_and_loses_nothing_acknowledged) {
    io_fault f;
    io_fault_init(&f);
    factum_options_t o = {.vfs = &f.vfs};
    factum_t *db = test_open(test_dir(), &o);
    append_n(db, 20, "s");
    f.enospc_after_bytes = (int64_t)f.bytes_written + 100; /* part of the next record fits */
    factum_error_t err;
    factum_event_t e = {.type = str_c("T"),
                        .data = str_c("{\"x\":\"0123456789012345678901234567890123456789\"}"),
                        .data_format = FACTUM_DATA_JSON};
    CHECK_RC(factum_append(db, str_c("s"), FACTUM_EXPECT_ANY, &e, 1, NULL, &err), FACTUM_ENOSPC);
    CHECK_RC(factum_append(db, str_c("s"), FACTUM_EXPECT_ANY, &e, 1, NULL, &err), FACTUM_EFAILED);
    factum_close(db);
    check_all_readable(20); /* the torn record was truncated away on open */
}

TEST(short_writes_are_completed) {
    io_fault f;
    io_fault_init(&f);
    f.short_writes = 1;
    factum_options_t o = {.vfs = &f.vfs, .segment_bytes = 1 << 16};
    factum_t *db = test_open(test_dir(), &o);
    append_n(db, 500, "s");
    CHECK(f.write_calls > 500);
    factum_close(db);
    check_all_readable(500);
}

static void flip_bit(const char *file, long off) {
    char path[512];
    snprintf(path, sizeof path, "%s/log/%s", test_dir(), file);
    test_flip_bit(path, (uint64_t)off);
}

TEST(a_flipped_bit_in_an_old_segment_is_reported_with_file_and_offset) {
    factum_options_t o = {.segment_bytes = 1 << 16};
    factum_t *db = test_open(test_dir(), &o);
    append_n(db, 1000, "s");
    factum_close(db);
    flip_bit("00000000.seg", 64 + 300); /* inside the second record of the first segment */
    /* Opening works (sealed segments are trusted through their position maps)... */
    db = test_open(test_dir(), &o);
    factum_result_t *res;
    factum_error_t err;
    /* ...and reading the damaged event says where the damage is, never skipping it. */
    CHECK_RC(factum_read_stream(db, str_c("s"), 0, 10, 0, &res, &err), FACTUM_ECORRUPT);
    CHECK_MSG(strstr(err.message, "00000000.seg") && strstr(err.message, "offset"), "%s", err.message);
    factum_query_t q = {.limit = 10};
    CHECK_RC(factum_read_all(db, &q, &res, &err), FACTUM_ECORRUPT);
    CHECK_RC(factum_read_stream(db, str_c("s"), 900, 10, 0, &res, &err), 0); /* the rest still reads */
    factum_result_free(res);
    factum_close(db);
    /* Without position maps the segment is scanned on open: the scan finds its way around the
       damage, the store opens, knows of the damage at once, and reads say the same. */
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -f %s/log/*.pmap", test_dir());
    CHECK(system(cmd) == 0);
    factum_t *db2 = test_open(test_dir(), &o);
    CHECK_EQ(factum_head_position(db2), 1000);
    factum_integrity_t in;
    factum_integrity(db2, &in);
    CHECK_EQ(in.damaged_events, 1);
    CHECK(in.damage[0].position <= 1); /* the first or second record, as the flipped offset falls */
    CHECK_RC(factum_read_stream(db2, str_c("s"), 0, 10, 0, &res, &err), FACTUM_ECORRUPT);
    CHECK_MSG(strstr(err.message, "00000000.seg") && strstr(err.message, "offset"), "%s", err.message);
    CHECK_RC(factum_read_stream(db2, str_c("s"), 2, 10, 0, &res, &err), 0);
    factum_result_free(res);
    factum_close(db2);
}

TEST(a_flipped_bit_in_the_tail_segment_before_later_data_is_corruption_not_a_torn_tail) {
    factum_t *db = test_open(test_dir(), NULL);
    append_n(db, 50, "s");
    factum_close(db);
    flip_bit("00000000.seg", 64 + 1000);
    factum_t *db2 = NULL;
    factum_error_t err;
    /* The commit mark (written at close) covers the damage. */
    CHECK_RC(factum_open(test_dir(), NULL, &db2, &err), FACTUM_ECORRUPT);
    CHECK_MSG(strstr(err.message, "00000000.seg") && strstr(err.message, "were acknowledged"), "%s", err.message);
    /* Without the mark (a crash before it was written), the later groups tell. */
    char mark[512];
    snprintf(mark, sizeof mark, "%s/log/COMMIT", test_dir());
    CHECK(unlink(mark) == 0);
    CHECK_RC(factum_open(test_dir(), NULL, &db2, &err), FACTUM_ECORRUPT);
    CHECK_MSG(strstr(err.message, "00000000.seg") && strstr(err.message, "valid data of a later commit group"), "%s",
              err.message);
}

TEST(garbage_after_the_last_record_is_a_torn_tail_and_is_truncated) {
    factum_t *db = test_open(test_dir(), NULL);
    append_n(db, 30, "s");
    factum_close(db);
    char path[512];
    snprintf(path, sizeof path, "%s/log/00000000.seg", test_dir());
    /* A half-written record: a plausible header and then junk, right after the last record. */
    int fd = open(path, O_RDWR);
    uint8_t rec[64] = {0x46, 0x45, 0x56, 0x31, 0x00, 0x01, 0, 0, 0xde, 0xad};
    off_t end = 64;
    for (;;) { /* find the end: the first zero word at a record boundary */
        uint8_t h[8];
        CHECK(pread(fd, h, 8, end) == 8);
        uint32_t len;
        memcpy(&len, h + 4, 4);
        if (!len) break;
        end += len;
    }
    CHECK(pwrite(fd, rec, sizeof rec, end) == sizeof rec);
    close(fd);
    db = test_open(test_dir(), NULL);
    CHECK_EQ(factum_head_position(db), 30);
    append_n(db, 5, "s");
    factum_close(db);
    check_all_readable(35);
}
