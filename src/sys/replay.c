/*
 * replay.c — see replay.h.
 */
#include "replay.h"

#define REPLAY_PAGE 1000

int replay_stream(factum_t *db, const char *stream, uint64_t from, void (*fn)(void *ctx, const factum_event_t *e),
                  void *ctx, factum_error_t *err) {
    for (;;) {
        factum_result_t *r;
        int rc = factum_read_stream(db, str_c(stream), from, REPLAY_PAGE, 0, &r, err);
        if (rc == FACTUM_ENOTFOUND) return 0;
        if (rc) return rc;
        size_t n = factum_result_count(r);
        for (size_t i = 0; i < n; i++)
            fn(ctx, factum_result_event(r, i));
        from = factum_result_next(r);
        factum_result_free(r);
        if (n < REPLAY_PAGE) return 0;
    }
}

factum_result_t *replay_find_newest(factum_t *db, const char *stream, int (*pick)(void *ctx, const factum_event_t *e),
                                    void *ctx, const factum_event_t **e) {
    for (uint64_t from = FACTUM_END;;) {
        factum_result_t *r;
        if (factum_read_stream(db, str_c(stream), from, REPLAY_PAGE, 1, &r, NULL)) return NULL;
        size_t n = factum_result_count(r);
        for (size_t i = 0; i < n; i++) {
            int p = pick(ctx, factum_result_event(r, i));
            if (p == PICK_TAKE) {
                *e = factum_result_event(r, i);
                return r;
            }
            if (p == PICK_STOP) {
                factum_result_free(r);
                return NULL;
            }
        }
        from = factum_result_next(r);
        factum_result_free(r);
        if (from == FACTUM_END || n < REPLAY_PAGE) return NULL;
    }
}

int replay_forget_before(factum_t *db, const char *stream, uint64_t revision, factum_error_t *err) {
    factum_meta_t m;
    int rc = factum_meta_get(db, str_c(stream), &m, err);
    if (rc) return rc;
    if (m.truncate_before < revision) {
        m.truncate_before = revision;
        rc = factum_meta_set(db, str_c(stream), &m, NULL, err);
    }
    factum_meta_free(&m);
    return rc;
}
