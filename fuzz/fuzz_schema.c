/*
 * fuzz_schema.c — JSON Schema documents: whatever schema_compile accepts must validate data
 * (a few fixed values, and the document itself) without a fault, with the same verdict with and
 * without a report, and a report only when it fails; whatever it refuses must say why.
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

FUZZ_TARGET(schema) {
    schema_t *s;
    factum_error_t err = {0};
    factum_str_t doc = {(const char *)data, size};
    if (schema_compile(doc, &s, &err)) {
        ENSURE(err.message[0]);
        return 0;
    }
    static const char *const values[] = {
        "null", "true", "0", "-1.5", "\"O-12\"", "\"\"", "[1,\"a\",[]]", "{\"id\":\"O-1\",\"n\":{\"m\":[1,2,2]}}",
        "{}"};
    for (size_t i = 0; i < sizeof values / sizeof *values; i++)
        same_verdict(s, str_c(values[i]));
    same_verdict(s, doc);
    schema_free(s);
    return 0;
}
