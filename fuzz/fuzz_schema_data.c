/*
 * fuzz_schema_data.c — data validated against a typical event schema (types, required, enum,
 * patterns, a nested object, an array of items, $ref, combinators): any JSON value gets the same
 * verdict with and without a report, and a report only when it fails; upcast by steps of every
 * kind, it stays one valid JSON value.
 */
#include "../src/base/json.h"
#include "../src/schema/schema.h"
#include "../src/schema/upcast.h"
#include "fuzz.h"

static const char DOC[] =
    "{\"type\":\"object\",\"required\":[\"id\",\"amount\",\"lines\"],\"additionalProperties\":false,"
    "\"definitions\":{\"money\":{\"type\":\"number\",\"minimum\":0,\"multipleOf\":0.01}},"
    "\"properties\":{\"id\":{\"type\":\"string\",\"pattern\":\"^O-[0-9]{1,12}$\"},"
    "\"amount\":{\"$ref\":\"#/definitions/money\"},\"currency\":{\"enum\":[\"EUR\",\"USD\"]},"
    "\"at\":{\"type\":\"string\",\"format\":\"date-time\"},\"tags\":{\"type\":\"array\",\"uniqueItems\":true,"
    "\"maxItems\":8,\"items\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":20}},"
    "\"customer\":{\"type\":\"object\",\"required\":[\"name\"],\"properties\":{\"name\":{\"type\":\"string\"},"
    "\"email\":{\"type\":\"string\",\"format\":\"email\"}},\"patternProperties\":{\"^x-\":{}},"
    "\"additionalProperties\":false},\"lines\":{\"type\":\"array\",\"minItems\":1,\"items\":{\"type\":"
    "\"object\",\"properties\":{\"sku\":{\"type\":\"string\"},\"qty\":{\"type\":\"integer\",\"minimum\":1}},"
    "\"required\":[\"sku\",\"qty\"]}},\"note\":{\"oneOf\":[{\"type\":\"string\"},{\"type\":\"null\"}]},"
    "\"kind\":{\"if\":{\"const\":\"gift\"},\"then\":{},\"else\":{\"not\":{\"const\":\"free\"}}}}}";

FUZZ_TARGET(schema_data) {
    static schema_t *s;
    static upcast *u;
    if (!s) {
        factum_error_t err;
        ENSURE(schema_compile(str_c(DOC), &s, &err) == 0);
        ENSURE(upcast_parse(str_c("{\"steps\":[{\"op\":\"rename\",\"from\":\"/id\",\"to\":\"/orderId\"},"
                                  "{\"op\":\"move\",\"from\":\"/customer/name\",\"to\":\"/buyer/name/full\"},"
                                  "{\"op\":\"add\",\"path\":\"/lines/x\",\"value\":{\"a\":[1]}},"
                                  "{\"op\":\"map\",\"path\":\"/currency\",\"values\":{\"EUR\":\"€\"}},"
                                  "{\"op\":\"remove\",\"path\":\"/tags\"},{\"op\":\"rename_type\",\"type\":\"T\"}]}"),
                            s, &u, &err) == 0);
    }
    if (!json_valid((const char *)data, size, NULL)) return 0;
    factum_str_t d = {(const char *)data, size};
    schema_report rep = {0};
    bool a = schema_validate(s, d, &rep), b = schema_validate(s, d, NULL);
    ENSURE(a == b);
    ENSURE(a == (rep.count == 0));
    schema_report_free(&rep);
    buf_t out = {0};
    if (upcast_apply(u, d, &out) == 0) ENSURE(json_valid(out.ptr ? out.ptr : "", out.len, NULL));
    buf_free(&out);
    return 0;
}
