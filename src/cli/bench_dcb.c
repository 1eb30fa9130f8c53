/*
 * bench_dcb.c — `factum bench dcb [--quick] [--seconds S] [--dir DIR] [--events N]`: the
 * figures of issue 23 for conditional appends, in-process and durable (docs/bench.md, "Dynamic
 * consistency boundaries"):
 *   1. 16 writers appending one event each, unconditionally, then the same with a condition
 *      each (a unique tag per append, failIfEventsMatch that tag: the dcb.events parallel-writes
 *      script's unrelated appends): events/s, p99, and the count of spurious condition failures
 *      (must be 0);
 *   2. one writer's conditional append p99 on an empty store and on one with N events of the
 *      condition's type (none with its tag, and its `after` at the head): one index lookup each;
 *   3. a query read of one tag's 100 events beside a stream read of 100 events, p99.
 * Prints one line per figure.
 */
#include "cli.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define WRITERS 16
#define MAX_SAMPLES 200000

static double secs = 3;

typedef struct writer {
    factum_t *db;
    int id;
    bool conditional;
    _Atomic bool *stop;
    uint64_t n, spurious;
    uint32_t *lat_us;
    size_t nlat;
} writer;

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

static void *write_loop(void *arg) {
    writer *w = arg;
    char stream[32], ext[96], tag[64];
    snprintf(stream, sizeof stream, "bench-%d", w->id);
    for (uint64_t k = 0; !*w->stop; k++) {
        snprintf(tag, sizeof tag, "%c:%d-%llu", w->conditional ? 'c' : 'u', w->id, (unsigned long long)k);
        snprintf(ext, sizeof ext, "\"tags\":\"%s\"", tag);
        factum_event_t e = {.type = str_c("Unrelated"),
                            .extensions = str_c(ext),
                            .data = str_c("{\"x\":1}"),
                            .data_format = FACTUM_DATA_JSON};
        factum_str_t t = str_c(tag);
        factum_query_item_t it = {NULL, 0, &t, 1};
        factum_condition_t c = {{&it, 1}, FACTUM_AFTER_NONE};
        uint64_t t0 = clock_mono_ns();
        int rc = w->conditional ? factum_append_if(w->db, str_c(stream), FACTUM_EXPECT_ANY, &e, 1, &c, NULL, NULL)
                                : factum_append(w->db, str_c(stream), FACTUM_EXPECT_ANY, &e, 1, NULL, NULL);
        uint64_t us = (clock_mono_ns() - t0) / 1000;
        if (rc == FACTUM_ECONDITION)
            w->spurious++;
        else if (rc)
            break;
        if (w->nlat < MAX_SAMPLES) w->lat_us[w->nlat++] = (uint32_t)MIN(us, UINT32_MAX);
        w->n++;
    }
    return NULL;
}

/* 16 writers for secs seconds: events/s; *p99_us and *spurious. */
static double run_writers(factum_t *db, bool conditional, uint32_t *p99_us, uint64_t *spurious) {
    writer w[WRITERS];
    pthread_t th[WRITERS];
    _Atomic bool stop = false;
    for (int i = 0; i < WRITERS; i++) {
        w[i] = (writer){db, i, conditional, &stop, 0, 0, malloc(MAX_SAMPLES * sizeof(uint32_t)), 0};
        pthread_create(&th[i], NULL, write_loop, &w[i]);
    }
    uint64_t t0 = clock_mono_ns();
    struct timespec ts = {(time_t)secs, (long)((secs - (double)(time_t)secs) * 1e9)};
    nanosleep(&ts, NULL);
    stop = true;
    uint64_t total = 0, nlat = 0;
    *spurious = 0;
    for (int i = 0; i < WRITERS; i++) {
        pthread_join(th[i], NULL);
        total += w[i].n, *spurious += w[i].spurious, nlat += w[i].nlat;
    }
    double elapsed = (double)(clock_mono_ns() - t0) / 1e9;
    uint32_t *all = malloc((nlat ? nlat : 1) * sizeof *all);
    size_t k = 0;
    for (int i = 0; i < WRITERS; i++) {
        memcpy(all + k, w[i].lat_us, w[i].nlat * sizeof *all);
        k += w[i].nlat;
        free(w[i].lat_us);
    }
    qsort(all, k, sizeof *all, cmp_u32);
    *p99_us = k ? all[k * 99 / 100] : 0;
    free(all);
    return (double)total / elapsed;
}

/* p99 of `rounds` appends by one writer of type Big with a tag no event has; conditional ones
   fail if an event of type Big with that tag follows the head. */
static uint32_t cond_p99(factum_t *db, int rounds, bool conditional) {
    uint32_t *lat = malloc((size_t)rounds * sizeof *lat);
    for (int i = 0; i < rounds; i++) {
        char tag[48], ext[80];
        snprintf(tag, sizeof tag, "fresh:%d", i);
        snprintf(ext, sizeof ext, "\"tags\":\"%s\"", tag);
        factum_str_t ty = str_c("Big"), t = str_c(tag);
        factum_query_item_t it = {&ty, 1, &t, 1};
        uint64_t head = factum_head_position(db);
        factum_condition_t c = {{&it, 1}, head ? head - 1 : FACTUM_AFTER_NONE};
        factum_event_t e = {.type = str_c("Big"), .extensions = str_c(ext)};
        uint64_t t0 = clock_mono_ns();
        if (conditional ? factum_append_if(db, str_c("probe"), FACTUM_EXPECT_ANY, &e, 1, &c, NULL, NULL)
                        : factum_append(db, str_c("probe"), FACTUM_EXPECT_ANY, &e, 1, NULL, NULL))
            break;
        lat[i] = (uint32_t)((clock_mono_ns() - t0) / 1000);
    }
    qsort(lat, (size_t)rounds, sizeof *lat, cmp_u32);
    uint32_t p = lat[rounds * 99 / 100];
    free(lat);
    return p;
}

static void fill_big(factum_t *db, uint64_t n) {
    enum { BATCH = 1000 };
    factum_event_t ev[BATCH];
    for (int i = 0; i < BATCH; i++)
        ev[i] = (factum_event_t){.type = str_c("Big"), .data = str_c("{\"x\":1}"), .data_format = FACTUM_DATA_JSON};
    for (uint64_t done = 0; done < n; done += BATCH) {
        char stream[32];
        snprintf(stream, sizeof stream, "big-%llu", (unsigned long long)(done / BATCH % 1000));
        if (factum_append(db, str_c(stream), FACTUM_EXPECT_ANY, ev, BATCH, NULL, NULL)) return;
    }
}

/* p99 in µs of `rounds` reads by fn. */
static uint32_t read_p99(factum_t *db, const factum_tag_query_t *q, int rounds) {
    uint32_t *lat = malloc((size_t)rounds * sizeof *lat);
    for (int i = 0; i < rounds; i++) {
        factum_result_t *res = NULL;
        uint64_t t0 = clock_mono_ns();
        int rc = q ? factum_read_tagged(db, q, 0, 100, 0, NULL, &res, NULL)
                   : factum_read_stream(db, str_c("one"), 0, 100, 0, &res, NULL);
        lat[i] = (uint32_t)((clock_mono_ns() - t0) / 1000);
        if (!rc && factum_result_count(res) != 100) lat[i] = UINT32_MAX;
        factum_result_free(res);
    }
    qsort(lat, (size_t)rounds, sizeof *lat, cmp_u32);
    uint32_t p = lat[rounds * 99 / 100];
    free(lat);
    return p;
}

int cli_bench_dcb(int argc, char **argv) {
    const char *base = ".";
    uint64_t big = 1000000;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--quick"))
            secs = 1, big = 100000;
        else if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
            secs = atof(argv[++i]);
        else if (!strcmp(argv[i], "--events") && i + 1 < argc) {
            if (!cli_parse_u64(argv[++i], &big) || !big) return cli_fail(CLI_USAGE, "--events takes a count");
        } else if (!strcmp(argv[i], "--dir") && i + 1 < argc)
            base = argv[++i];
        else
            return cli_fail(CLI_USAGE, "usage: factum bench dcb [--quick] [--seconds S] [--events N] [--dir DIR]");
    }
    if (secs <= 0) return cli_fail(CLI_USAGE, "--seconds must be positive");
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/factum-bench-dcb-%d", base, (int)getpid());
    factum_t *db;
    factum_error_t err;
    if (factum_open(dir, NULL, &db, &err)) return cli_report(err.code, &err);
    uint32_t p99_plain, p99_cond, p_empty, p_full, p_plain, p_tag, p_stream;
    uint64_t spurious_plain, spurious;
    double plain = run_writers(db, false, &p99_plain, &spurious_plain);
    double cond = run_writers(db, true, &p99_cond, &spurious);
    printf("unconditional appends, 16 writers      %10.0f events/s   p99 %6u us\n", plain, p99_plain);
    printf("conditional appends (unrelated), 16    %10.0f events/s   p99 %6u us   ratio %.2f   spurious "
           "failures %llu\n",
           cond, p99_cond, plain > 0 ? cond / plain : 0, (unsigned long long)spurious);
    factum_close(db);
    /* A fresh store for the lookup figures: empty, then with `big` events of the type. */
    char dir2[4200];
    snprintf(dir2, sizeof dir2, "%s-2", dir);
    if (factum_open(dir2, NULL, &db, &err)) return cli_report(err.code, &err);
    p_empty = cond_p99(db, 2000, true);
    fill_big(db, big);
    p_full = cond_p99(db, 2000, true);
    p_plain = cond_p99(db, 2000, false);
    printf("conditional append, 1 writer, p99: empty store %u us, %llu events of its type %u us (unconditional "
           "there %u us)\n",
           p_empty, (unsigned long long)big, p_full, p_plain);
    factum_event_t one[100];
    for (int i = 0; i < 100; i++)
        one[i] = (factum_event_t){.type = str_c("One"), .extensions = str_c("\"tags\":\"t:one\"")};
    factum_append(db, str_c("one"), FACTUM_EXPECT_ANY, one, 100, NULL, NULL);
    factum_str_t t = str_c("t:one");
    factum_query_item_t it = {NULL, 0, &t, 1};
    factum_tag_query_t q = {&it, 1};
    p_tag = read_p99(db, &q, 2000);
    p_stream = read_p99(db, NULL, 2000);
    printf("read of 100 events, p99: by tag %u us, by stream %u us\n", p_tag, p_stream);
    factum_close(db);
    char cmd[9000];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s'", dir, dir2);
    return system(cmd) == 0 && spurious == 0 ? CLI_OK : CLI_ERROR;
}
