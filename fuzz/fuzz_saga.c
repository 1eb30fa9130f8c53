/*
 * fuzz_saga.c — saga definitions: whatever the parser accepts must keep its limits and free
 * cleanly; whatever it refuses must say why.
 */
#include "../src/saga/saga.h"
#include "fuzz.h"

FUZZ_TARGET(saga) {
    saga_def *d;
    factum_error_t err = {0};
    if (saga_def_parse("fuzz", (factum_str_t){(const char *)data, size}, &d, &err)) {
        ENSURE(err.message[0]);
        return 0;
    }
    ENSURE(saga_def_json(d).len == size);
    if (saga_def_check(d, &err)) ENSURE(err.message[0]);
    saga_def_free(d);
    return 0;
}
