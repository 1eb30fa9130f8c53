/*
 * test_crash.c — crash safety. A child process appends under load (several threads, batches,
 * small segments so it rolls, a small memtable so the index flushes) and reports every
 * acknowledgement to the parent through a pipe. The parent kills it at a random moment with
 * SIGKILL, or the fault layer ends it in the middle of a write (a torn write); then the parent
 * reopens the folder and checks that every acknowledged event is there, byte for byte, in
 * order, once, and that every batch is whole or absent.
 */
#include "test.h"

#include "../src/io/io.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define THREADS 6
#define STREAMS 50

typedef struct {
    uint32_t cycle, thread, seq, count; /* the batch: ids c<cycle>-t<thread>-<seq>-<i>, i < count */
    uint32_t stream;
    uint64_t first_revision, first_position;
} ack_t;

static int ack_fd;
static factum_t *child_db;
static uint32_t child_cycle;

static void make_event(uint32_t cycle, uint32_t thread, uint32_t seq, uint32_t i, char *id, char *data) {
    snprintf(id, 64, "c%u-t%u-%u-%u", cycle, thread, seq, i);
    snprintf(data, 160, "{\"id\":\"%s\",\"pad\":\"%0*u\"}", id, (int)(40 + (seq * 7 + i) % 90), seq);
}

static void *child_writer(void *arg) {
    uint32_t t = (uint32_t)(uintptr_t)arg;
    uint64_t x = (uint64_t)child_cycle * 7919 + t * 104729 + 1;
    char ids[5][64], datas[5][160], stream[32];
    for (uint32_t seq = 0;; seq++) {
        x = x * 6364136223846793005u + 1442695040888963407u;
        uint32_t count = 1 + (uint32_t)((x >> 33) % 5), s = (uint32_t)((x >> 40) % STREAMS);
        snprintf(stream, sizeof stream, "crash-%u", s);
        factum_event_t ev[5];
        for (uint32_t i = 0; i < count; i++) {
            make_event(child_cycle, t, seq, i, ids[i], datas[i]);
            ev[i] = (factum_event_t){.type = str_c("Crashed"),
                                     .id = str_c(ids[i]),
                                     .data = str_c(datas[i]),
                                     .data_format = FACTUM_DATA_JSON};
        }
        factum_append_result_t r;
        if (factum_append(child_db, str_c(stream), FACTUM_EXPECT_ANY, ev, count, &r, NULL)) _exit(3);
        ack_t a = {child_cycle, t, seq, count, s, r.first_revision, r.first_position};
        if (write(ack_fd, &a, sizeof a) != sizeof a) _exit(4);
    }
    return NULL;
}

/* Starts a child appending with THREADS writers; returns its pid and the pipe to read acks. */
static pid_t start_child(uint32_t cycle, io_vfs *vfs, int *rfd) {
    int p[2];
    CHECK(pipe(p) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        close(p[0]);
        ack_fd = p[1];
        child_cycle = cycle;
        factum_options_t o = {.segment_bytes = 1 << 20, .memtable_events = 2000, .vfs = vfs};
        factum_error_t err;
        if (factum_open(test_dir(), &o, &child_db, &err)) {
            fprintf(stderr, "child open: %s\n", err.message);
            _exit(2);
        }
        pthread_t th[THREADS];
        for (uintptr_t t = 0; t < THREADS; t++)
            pthread_create(&th[t], NULL, child_writer, (void *)t);
        pthread_join(th[0], NULL);
        _exit(0);
    }
    close(p[1]);
    *rfd = p[0];
    return pid;
}

static ack_t *acks;
static size_t nacks, capacks;

static void read_acks(int fd, int ms) {
    uint64_t end = clock_mono_ns() + (uint64_t)ms * 1000000;
    for (;;) {
        int left = ms < 0 ? -1 : (int)(((int64_t)end - (int64_t)clock_mono_ns()) / 1000000);
        if (ms >= 0 && left <= 0) return;
        struct pollfd pfd = {fd, POLLIN, 0};
        if (poll(&pfd, 1, left) <= 0) return;
        if (nacks == capacks) acks = realloc(acks, (capacks = capacks ? capacks * 2 : 4096) * sizeof *acks);
        ssize_t n = read(fd, &acks[nacks], sizeof *acks);
        if (n == 0) return;
        CHECK(n == sizeof *acks);
        nacks++;
    }
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Every acknowledged batch whole and exact; no event twice; streams gap-free. */
static void verify(factum_t *db) {
    char id[64], data[160], stream[32];
    for (size_t k = 0; k < nacks; k++) {
        const ack_t *a = &acks[k];
        snprintf(stream, sizeof stream, "crash-%u", a->stream);
        factum_result_t *res;
        int rc = factum_read_stream(db, str_c(stream), a->first_revision, a->count, 0, &res, NULL);
        CHECK_MSG(rc == 0, "acknowledged batch of %s at %llu: %s", stream, (unsigned long long)a->first_revision,
                  factum_errname(rc));
        CHECK_MSG(factum_result_count(res) == a->count, "acknowledged batch of %s at revision %llu lost events", stream,
                  (unsigned long long)a->first_revision);
        for (uint32_t i = 0; i < a->count; i++) {
            const factum_event_t *e = factum_result_event(res, i);
            make_event(a->cycle, a->thread, a->seq, i, id, data);
            CHECK_MSG(str_eq(e->id, str_c(id)) && str_eq(e->data, str_c(data)), "event %s differs", id);
            CHECK_EQ(e->position, a->first_position + i);
        }
        factum_result_free(res);
    }
    /* The whole log: every batch whole (ids end in -0 .. -(count-1) consecutively), no duplicate id. */
    uint64_t n = factum_head_position(db), i = 0;
    uint64_t *hs = malloc((n + 1) * sizeof *hs);
    int64_t last_rev[STREAMS];
    for (int s = 0; s < STREAMS; s++)
        last_rev[s] = -1;
    while (i < n) {
        factum_query_t q = {.from = i, .limit = 50000};
        factum_result_t *res;
        CHECK_RC(factum_read_all(db, &q, &res, NULL), 0);
        CHECK(factum_result_count(res) > 0);
        for (size_t k = 0; k < factum_result_count(res); k++, i++) {
            const factum_event_t *e = factum_result_event(res, k);
            unsigned s;
            CHECK_EQ(e->position, i);
            CHECK(sscanf(e->stream.ptr, "crash-%u", &s) == 1 && s < STREAMS);
            CHECK_MSG((int64_t)e->revision == last_rev[s] + 1, "stream crash-%u jumps to revision %llu", s,
                      (unsigned long long)e->revision);
            last_rev[s] = (int64_t)e->revision;
            hs[i] = hash64(e->id.ptr, e->id.len, 1);
        }
        factum_result_free(res);
    }
    qsort(hs, n, sizeof *hs, cmp_u64);
    for (i = 1; i < n; i++)
        CHECK_MSG(hs[i] != hs[i - 1], "an event id appears twice in the log");
    free(hs);
}

TEST_T(kill_9_at_random_moments_loses_no_acknowledged_event, 300) {
    for (uint32_t cycle = 0; cycle < 50; cycle++) {
        int fd;
        pid_t pid = start_child(cycle, NULL, &fd);
        read_acks(fd, 20 + (int)(test_rand() % 150));
        kill(pid, SIGKILL);
        read_acks(fd, -1); /* acks written before the kill */
        close(fd);
        int st;
        waitpid(pid, &st, 0);
        CHECK_MSG(WIFSIGNALED(st), "child ended by itself with status %d", WEXITSTATUS(st));
        factum_t *db = test_open(test_dir(), &(factum_options_t){.segment_bytes = 1 << 20});
        verify(db);
        factum_close(db);
    }
    CHECK(nacks > 100);
}

TEST_T(a_write_torn_at_a_random_byte_is_truncated_and_acknowledged_events_stay, 300) {
    for (uint32_t cycle = 0; cycle < 25; cycle++) {
        io_fault f;
        io_fault_init(&f);
        f.crash_after_bytes = (int64_t)(test_rand() % 400000); /* counts this child's writes only */
        int fd;
        pid_t pid = start_child(cycle, &f.vfs, &fd);
        read_acks(fd, -1);
        close(fd);
        int st;
        waitpid(pid, &st, 0);
        CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == IO_FAULT_CRASH_EXIT, "child status %d", st);
        factum_t *db = test_open(test_dir(), &(factum_options_t){.segment_bytes = 1 << 20});
        verify(db);
        factum_close(db);
    }
}
