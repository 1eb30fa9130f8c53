/*
 * err.c — the one error list (FACTUM_ERRORS in factum.h) turned into names and messages, and
 * the helper that fills a caller's factum_error_t.
 */
#include "base.h"

#include <stdio.h>
#include <stdlib.h>

#define MSG(name, msg) msg,
static const char *const messages[] = {FACTUM_ERRORS(MSG)};
#undef MSG
#define NAME(name, msg) "FACTUM_" #name,
static const char *const names[] = {FACTUM_ERRORS(NAME)};
#undef NAME

const char *factum_strerror(int code) {
    int i = -code;
    return i >= 0 && i < FACTUM__ERROR_COUNT ? messages[i] : "unknown error";
}

const char *factum_errname(int code) {
    int i = -code;
    return i >= 0 && i < FACTUM__ERROR_COUNT ? names[i] : "FACTUM_UNKNOWN";
}

int err_set(factum_error_t *err, int code, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        err->code = code;
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
    }
    return code;
}

void base_panic(const char *file, int line, const char *what) {
    fprintf(stderr, "factum: invariant broken at %s:%d: %s\n", file, line, what);
    abort();
}
