/*
 * fuzz_event_json.c — CloudEvents JSON parsing (one event or a batch) and the strict JSON
 * scanner under it. Whatever parses must render, the rendering must be valid JSON, and the
 * input form must parse back to the same event. Its trace context, when valid, must give a child
 * context that is valid too and reads back as written.
 */
#include "../src/base/json.h"
#include "../src/base/trace.h"
#include "fuzz.h"

#include <stdlib.h>

FUZZ_TARGET(event_json) {
    if (!size) return 0;
    int batch = data[0] & 1;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    (void)json_valid(text, len, NULL);
    factum_events_t *set;
    if (factum_events_parse(text, len, batch, &set, NULL)) return 0;
    for (size_t i = 0; i < factum_events_count(set); i++) {
        factum_event_t *e = factum_events_get(set, i);
        e->stream = str_c("fuzz-1");
        size_t need = factum_event_json(e, NULL, 0);
        char *out = malloc(need + 1);
        factum_event_json(e, out, need + 1);
        ENSURE(json_valid(out, need, NULL));
        free(out);
        /* The input form parses back to the same event. */
        need = factum_event_json_input(e, NULL, 0);
        out = malloc(need + 1);
        factum_event_json_input(e, out, need + 1);
        factum_events_t *again;
        ENSURE(factum_events_parse(out, need, 0, &again, NULL) == 0);
        factum_event_t *a = factum_events_get(again, 0);
        ENSURE(str_eq(a->type, e->type) && str_eq(a->id, e->id) && str_eq(a->data, e->data) &&
               a->data_format == e->data_format && str_eq(a->extensions, e->extensions));
        factum_events_free(again);
        free(out);
        trace_ctx t, child, back;
        if (!trace_check_members(e->extensions, i, NULL) && trace_get(e->extensions, &t)) {
            buf_t m = {0};
            trace_child(&t, e->id, &child);
            trace_members(&child, &m);
            factum_str_t ms = {m.ptr, m.len};
            ENSURE(!trace_check_members(ms, 0, NULL) && trace_get(ms, &back));
            ENSURE(!strcmp(back.parent, child.parent) && !strcmp(back.state, t.state));
            ENSURE(!memcmp(child.parent, t.parent, 36) && !strcmp(child.parent + 52, t.parent + 52));
            buf_free(&m);
        }
    }
    factum_events_free(set);
    return 0;
}
