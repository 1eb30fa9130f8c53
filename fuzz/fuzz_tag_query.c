/*
 * fuzz_tag_query.c — a tag query's JSON (factum_tag_query_parse, docs/dcb.md) and an event's
 * tags attribute. A query that parses must check out, and an event carrying exactly one of its
 * items' tags and first type must match it; any extension text's tags are found inside it.
 */
#include "../src/base/json.h"
#include "fuzz.h"

#include <stdio.h>
#include <stdlib.h>

FUZZ_TARGET(tag_query) {
    const char *text = (const char *)data;
    /* As extension members: factum_event_tags borrows from them, never past them. */
    if (json_valid_members(text, size)) {
        factum_event_t e = {.extensions = {text, size}};
        factum_str_t t = factum_event_tags(&e);
        ENSURE(!t.len || (t.ptr >= text && t.ptr + t.len <= text + size));
    }
    factum_tag_query_t *q;
    if (factum_tag_query_parse(text, size, &q, NULL)) return 0;
    ENSURE(factum_tag_query_check(q, NULL) == 0 && q->nitems >= 1 && q->nitems <= FACTUM_MAX_QUERY_ITEMS);
    for (size_t i = 0; i < q->nitems; i++) {
        const factum_query_item_t *it = &q->items[i];
        ENSURE(it->ntypes + it->ntags >= 1);
        /* An event with the item's explicit tags and its first type (its implicit ones from
           stream: and type: tags, when they agree) matches the query. */
        buf_t ext = {0};
        factum_str_t stream = str_c("s"), type = it->ntypes ? it->types[0] : str_c("T");
        bool ok = true, have_stream = false, have_type = it->ntypes > 0;
        for (size_t k = 0; k < it->ntags && ok; k++) {
            factum_str_t t = it->tags[k];
            bool is_stream = t.len >= 7 && !memcmp(t.ptr, "stream:", 7),
                 is_type = t.len >= 5 && !memcmp(t.ptr, "type:", 5);
            factum_str_t rest = is_stream ? (factum_str_t){t.ptr + 7, t.len - 7} : (factum_str_t){t.ptr + 5, t.len - 5};
            if (is_stream || is_type) {
                factum_str_t *slot = is_stream ? &stream : &type;
                bool *have = is_stream ? &have_stream : &have_type;
                ok = *have ? str_eq(*slot, rest) : (*slot = rest, *have = true);
            } else {
                buf_append(&ext, ext.len ? " " : "\"tags\":\"", ext.len ? 1 : 8);
                buf_append(&ext, t.ptr, t.len);
            }
        }
        if (ext.len) buf_append(&ext, "\"", 1);
        factum_event_t e = {.type = type, .stream = stream, .extensions = {ext.ptr ? ext.ptr : "", ext.len}};
        if (ok) ENSURE(factum_tag_query_matches(q, &e));
        buf_free(&ext);
    }
    factum_tag_query_free(q);
    return 0;
}
