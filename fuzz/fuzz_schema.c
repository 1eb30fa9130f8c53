/*
 * fuzz_schema.c — JSON Schema documents: whatever schema_compile accepts must validate data
 * (a few fixed values, and the document itself) without a fault, with the same verdict with and
 * without a report, and a report only when it fails; whatever it refuses must say why. The
 * forward compatibility check against a fixed schema, both ways, must give the same verdict with
 * and without a report, and hold over the values when it says compatible.
 */
#include "../src/base/json.h"
#include "../src/schema/schema.h"
#include "fuzz.h"

static void same_verdict(const schema_t *s, factum_str_t data) {
    schema_report rep = {0};
    bool a = schema_validate(s, data, &rep), b = schema_validate(s, data, NULL);
    ENSURE(a == b);
    ENSURE(a == (rep.count == 0));
    schema_report_free(&rep);
}

static const char *const values[] = {
    "null", "true", "0", "-1.5", "\"O-12\"", "\"\"", "[1,\"a\",[]]", "{\"id\":\"O-1\",\"n\":{\"m\":[1,2,2]}}", "{}"};

/* newer forward compatible with older: the same verdict quiet, and true over the values. */
static void same_compat(const schema_t *newer, const schema_t *older) {
    schema_report rep = {0};
    bool ok = schema_forward_compatible(newer, older, &rep);
    ENSURE(ok == schema_forward_compatible(newer, older, NULL));
    ENSURE(ok == (rep.count == 0));
    for (size_t i = 0; ok && i < sizeof values / sizeof *values; i++)
        ENSURE(!schema_validate(newer, str_c(values[i]), NULL) || schema_validate(older, str_c(values[i]), NULL));
    schema_report_free(&rep);
}

FUZZ_TARGET(schema) {
    schema_t *s;
    factum_error_t err = {0};
    factum_str_t doc = {(const char *)data, size};
    if (schema_compile(doc, &s, &err)) {
        ENSURE(err.message[0]);
        return 0;
    }
    for (size_t i = 0; i < sizeof values / sizeof *values; i++)
        same_verdict(s, str_c(values[i]));
    same_verdict(s, doc);
    static const char *const fixed = "{\"type\":\"object\",\"required\":[\"id\"],\"properties\":{\"id\":{\"type\":"
                                     "\"string\",\"maxLength\":9},\"n\":{\"items\":{\"minimum\":1}}}}";
    schema_t *f;
    if (schema_compile(str_c(fixed), &f, NULL) == 0) {
        same_compat(s, f), same_compat(f, s), same_compat(s, s);
        schema_free(f);
    }
    schema_free(s);
    return 0;
}
