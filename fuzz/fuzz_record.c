/*
 * fuzz_record.c — the record decoder on arbitrary bytes: it must never read out of bounds,
 * and whatever it accepts must re-encode to the same bytes and render as JSON.
 */
#include "../src/store/record.h"
#include "fuzz.h"

#include <stdlib.h>

FUZZ_TARGET(record) {
    factum_event_t e;
    uint32_t len;
    if (record_decode(data, size, &e, &len) != RECORD_OK) return 0;
    ENSURE(len <= size && len == record_size(e.stream, &e));
    uint8_t *copy = malloc(len);
    record_encode(copy, e.stream, &e);
    record_seal(copy, e.position, e.revision, e.time_us, (int)(load32(data + R_FLAGS) & RECORD_BATCH_END),
                record_group_first(data, e.position));
    ENSURE(memcmp(copy, data, len) == 0);
    free(copy);
    char json[256];
    size_t need = factum_event_json(&e, json, sizeof json);
    char *big = malloc(need + 1);
    ENSURE(factum_event_json(&e, big, need + 1) == need && big[need] == 0);
    free(big);
    return 0;
}
