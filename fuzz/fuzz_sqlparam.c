/*
 * fuzz_sqlparam.c — projection SQL: rewriting :path parameters and binding their values. The
 * first byte picks the dialect (bit 0) and event or query roots (bit 1); the rest is SQL text,
 * then after a NUL the JSON the values come from (event data, or a query's params). Whatever
 * rewrites must name at most SQL_MAX_PARAMS distinct paths, each placeholder in range, and bind
 * without reading outside what it was given.
 */
#include "../src/proj/sqlparam.h"
#include "fuzz.h"

#include <stdlib.h>

FUZZ_TARGET(sqlparam) {
    if (!size) return 0;
    int dialect = data[0] & 1 ? SQL_POSTGRES : SQL_SQLITE;
    bool event_roots = data[0] & 2;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    const char *nul = memchr(text, 0, len);
    size_t sql_len = nul ? (size_t)(nul - text) : len;
    factum_str_t json = nul ? (factum_str_t){nul + 1, len - sql_len - 1} : (factum_str_t){0};
    sql_stmt s;
    if (sql_rewrite((factum_str_t){text, sql_len}, dialect, event_roots, &s, NULL)) return 0;
    ENSURE(s.nparams <= SQL_MAX_PARAMS && s.sql.ptr[s.sql.len] == 0);
    for (size_t i = 0; i < s.nparams; i++) {
        ENSURE(s.params[i].text[0] && s.params[i].nsteps <= SQL_MAX_STEPS);
        for (size_t j = 0; j < i; j++)
            ENSURE(strcmp(s.params[i].text, s.params[j].text));
    }
    sql_value v[SQL_MAX_PARAMS];
    buf_t scratch = {0};
    factum_event_t e = {.type = str_c("T"), .stream = str_c("s-1"), .data = json, .data_format = FACTUM_DATA_JSON};
    int rc = event_roots ? sql_bind_event(&s, &e, &scratch, v) : sql_bind_json(&s, json, &scratch, v);
    for (size_t i = 0; !rc && i < s.nparams; i++) {
        ENSURE(v[i].kind >= SQL_V_NULL && v[i].kind <= SQL_V_JSON);
        if (v[i].kind == SQL_V_TEXT || v[i].kind == SQL_V_JSON) {
            volatile char sink = 0;
            for (size_t k = 0; k < v[i].s.len; k++)
                sink ^= v[i].s.ptr[k];
            (void)sink;
        }
    }
    buf_free(&scratch);
    sql_stmt_free(&s);
    return 0;
}
