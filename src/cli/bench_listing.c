/*
 * bench_listing.c — `factum bench listing` (issue 20): what one page of the stream listing costs
 * over 1,000,000 streams beside the same page over 1,000, in one run. The dashboard's streams
 * page asks exactly these (GET /streams and GET /categories call the same functions), so the
 * figure is its server time without the socket. Streams are named "cNN-NNNNNNN" (20
 * categories), one event each, appended by 64 writers. Each page kind is asked 200 times: the
 * first page, the page after a name in the middle, a prefix page, a category's first page, the
 * categories. With --keep the folder is left (its path printed) for bench/ui.sh to serve.
 */
#include "cli.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LISTING_WRITERS 64
#define LISTING_CATEGORIES 20
#define LISTING_PAGE 50
#define LISTING_ASKS 200

static double mono_s(void) { return (double)clock_mono_ns() / 1e9; }

static void listing_name(char *out, size_t cap, uint64_t i) {
    snprintf(out, cap, "c%02u-%07llu", (unsigned)(i % LISTING_CATEGORIES), (unsigned long long)i);
}

typedef struct fill_worker {
    factum_t *db;
    uint64_t first, end;
    int failed;
} fill_worker;

static void *fill_main(void *arg) {
    fill_worker *w = arg;
    factum_event_t ev = {.type = str_c("Created"), .data = str_c("{\"n\":1}"), .data_format = FACTUM_DATA_JSON};
    char stream[32];
    for (uint64_t i = w->first; i < w->end && !w->failed; i += LISTING_WRITERS) {
        listing_name(stream, sizeof stream, i);
        w->failed = factum_append(w->db, str_c(stream), FACTUM_EXPECT_NO_STREAM, &ev, 1, NULL, NULL) != 0;
    }
    return NULL;
}

/* Streams [from, to) appended; seconds taken, or -1. */
static double fill(factum_t *db, uint64_t from, uint64_t to) {
    pthread_t th[LISTING_WRITERS];
    fill_worker w[LISTING_WRITERS];
    double t0 = mono_s();
    for (int i = 0; i < LISTING_WRITERS; i++) {
        w[i] = (fill_worker){db, from + (uint64_t)i, to, 0};
        pthread_create(&th[i], NULL, fill_main, &w[i]);
    }
    int failed = 0;
    for (int i = 0; i < LISTING_WRITERS; i++)
        pthread_join(th[i], NULL), failed |= w[i].failed;
    return failed ? -1 : mono_s() - t0;
}

static int cmp_dbl(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef enum { PAGE_FIRST, PAGE_MIDDLE, PAGE_PREFIX, PAGE_CATEGORY, PAGE_CATEGORIES, PAGE_KINDS } page_kind;
static const char *const page_names[PAGE_KINDS] = {"first page", "page after the middle", "prefix page",
                                                   "category page", "categories"};

/* One page of kind k over a store of n streams, as GET /streams renders it (each item's revision
   and deletion looked up too): seconds, or -1. */
static double one_page(factum_t *db, page_kind k, uint64_t n) {
    char mid[32], prefix[32], json[512];
    listing_name(mid, sizeof mid, n / 2);
    snprintf(prefix, sizeof prefix, "c07-%04llu", (unsigned long long)(n / 2 / 1000));
    factum_names_t *l = NULL;
    factum_error_t err;
    double t0 = mono_s();
    int rc;
    switch (k) {
    case PAGE_FIRST: rc = factum_list_streams(db, str_c(""), str_c(""), LISTING_PAGE, 0, &l, &err); break;
    case PAGE_MIDDLE: rc = factum_list_streams(db, str_c(""), str_c(mid), LISTING_PAGE, 0, &l, &err); break;
    case PAGE_PREFIX: rc = factum_list_streams(db, str_c(prefix), str_c(""), LISTING_PAGE, 0, &l, &err); break;
    case PAGE_CATEGORY: rc = factum_list_category(db, str_c("c13"), str_c(""), LISTING_PAGE, 0, &l, &err); break;
    default: rc = factum_list_categories(db, str_c(""), LISTING_PAGE, 0, &l, &err); break;
    }
    for (size_t i = 0; !rc && k != PAGE_CATEGORIES && i < factum_names_count(l); i++)
        factum_stream_json(db, factum_names_name(l, i), factum_names_position(l, i), json, sizeof json);
    double dt = mono_s() - t0;
    bool empty = !rc && !factum_names_count(l);
    factum_names_free(l);
    if (rc || empty) {
        fprintf(stderr, "factum: bench listing: %s %s\n", page_names[k], rc ? err.message : "came back empty");
        return -1;
    }
    return dt;
}

/* p50 and p99 of LISTING_ASKS pages of each kind, in ms, into p50[k], p99[k]. 0, or -1. */
static int measure(factum_t *db, uint64_t n, double p50[PAGE_KINDS], double p99[PAGE_KINDS]) {
    double t[LISTING_ASKS];
    for (int k = 0; k < PAGE_KINDS; k++) {
        for (int i = 0; i < LISTING_ASKS; i++)
            if ((t[i] = one_page(db, (page_kind)k, n)) < 0) return -1;
        qsort(t, LISTING_ASKS, sizeof *t, cmp_dbl);
        p50[k] = t[LISTING_ASKS / 2] * 1e3, p99[k] = t[LISTING_ASKS * 99 / 100] * 1e3;
    }
    return 0;
}

int cli_bench_listing(int argc, char **argv) {
    const char *base = ".";
    uint64_t streams = 1000000, small = 1000;
    bool keep = false;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--quick"))
            streams = 100000;
        else if (!strcmp(argv[i], "--keep"))
            keep = true;
        else if (!strcmp(argv[i], "--dir") && i + 1 < argc)
            base = argv[++i];
        else if (!strcmp(argv[i], "--streams") && i + 1 < argc) {
            if (!cli_parse_u64(argv[++i], &streams) || streams < 2000 || streams > 100000000)
                return cli_fail(CLI_USAGE, "--streams takes 2000 to 100000000");
        } else
            return cli_fail(CLI_USAGE, "unknown option or missing value: %s (see factum bench --help)", argv[i]);
    }
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/factum-bench-listing-XXXXXX", base);
    if (!mkdtemp(dir)) return cli_fail(CLI_ERROR, "cannot make a folder in %s", base);
    factum_t *db;
    factum_error_t err;
    if (factum_open(dir, NULL, &db, &err)) return cli_fail(CLI_ERROR, "%s", err.message);
    double p50s[PAGE_KINDS], p99s[PAGE_KINDS], p50[PAGE_KINDS], p99[PAGE_KINDS];
    double t_small = fill(db, 0, small);
    int rc = t_small < 0 || measure(db, small, p50s, p99s);
    double t_big = rc ? -1 : fill(db, small, streams);
    rc = rc || t_big < 0 || measure(db, streams, p50, p99);
    if (!rc) {
        printf("stream listing, a page of %d (as GET /streams renders it), %d asks each, same run:\n", LISTING_PAGE,
               LISTING_ASKS);
        printf("  filled %llu streams in %.1f s (%.0f streams/s, one event each, %d writers)\n",
               (unsigned long long)streams, t_big, (double)(streams - small) / t_big, LISTING_WRITERS);
        for (int k = 0; k < PAGE_KINDS; k++)
            printf("  %-22s %llu streams: p50 %.3f ms, p99 %.3f ms   vs %llu streams: p50 %.3f ms, p99 %.3f ms\n",
                   page_names[k], (unsigned long long)streams, p50[k], p99[k], (unsigned long long)small, p50s[k],
                   p99s[k]);
    }
    factum_close(db);
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (keep)
        printf("kept: %s\n", dir);
    else if (system(cmd))
        fprintf(stderr, "factum: could not remove %s\n", dir);
    return rc ? cli_fail(CLI_ERROR, "bench listing failed") : CLI_OK;
}
