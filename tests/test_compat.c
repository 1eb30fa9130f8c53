/*
 * test_compat.c — the forward compatibility check (src/schema/compat.c): pairs of a previous
 * and a newer schema, each with the verdict and the first difference's pointer; every pair
 * found compatible is then held to what it claims over a set of values (each the newer accepts,
 * the previous accepts too); and over HTTP, a PUT declaring forward or full compatibility.
 */
#include "../src/schema/schema.h"
#include "test_server.h"

#include <signal.h>
#include <string.h>

#define ORDER(id, amount, extra)                                                                                       \
    "{\"type\":\"object\",\"required\":[\"id\",\"amount\"],\"additionalProperties\":false,\"properties\":{\"id\":" id  \
    ",\"amount\":" amount ",\"currency\":{\"enum\":[\"EUR\",\"USD\",\"GBP\"]}" extra "}}"
#define ID "{\"type\":\"string\",\"pattern\":\"^O-[0-9]+$\",\"maxLength\":20}"
#define AMOUNT "{\"type\":\"number\",\"minimum\":0}"
#define LIST                                                                                                           \
    "{\"definitions\":{\"n\":{\"type\":\"object\",\"properties\":{\"v\":{\"type\":\"integer\"},\"next\":{\"$ref\":"    \
    "\"#/definitions/n\"}}}},\"$ref\":\"#/definitions/n\"}"

typedef struct pair {
    const char *older, *newer;
    const char *first; /* NULL: compatible; else the pointer of the first difference */
    const char *keyword;
} pair;

static const pair PAIRS[] = {
    {ORDER(ID, AMOUNT, ""), ORDER(ID, AMOUNT, ""), NULL, NULL},
    /* narrower: more required, a higher minimum, an exclusive bound past it, fewer enum values */
    {ORDER(ID, AMOUNT, ""),
     "{\"type\":\"object\",\"required\":[\"id\",\"amount\",\"currency\"],\"additionalProperties\":false,"
     "\"properties\":{\"id\":" ID ",\"amount\":{\"type\":\"integer\",\"exclusiveMinimum\":0},\"currency\":{\"enum\":"
     "[\"EUR\",\"USD\"]}}}",
     NULL, NULL},
    /* wider: each rule the previous version had */
    {ORDER(ID, AMOUNT, ""),
     "{\"type\":\"object\",\"required\":[\"id\"],\"additionalProperties\":false,"
     "\"properties\":{\"id\":" ID ",\"amount\":" AMOUNT ",\"currency\":{}}}",
     "/required", "required"},
    {ORDER(ID, AMOUNT, ""), ORDER(ID, "{\"type\":\"number\",\"minimum\":-1}", ""), "/properties/amount/minimum",
     "minimum"},
    {ORDER(ID, AMOUNT, ""), ORDER(ID, "{\"type\":[\"number\",\"string\"],\"minimum\":0}", ""),
     "/properties/amount/type", "type"},
    {ORDER(ID, AMOUNT, ""), ORDER("{\"type\":\"string\",\"pattern\":\"^O-[0-9]+$\"}", AMOUNT, ""),
     "/properties/id/maxLength", "maxLength"},
    {ORDER(ID, AMOUNT, ""), ORDER("{\"type\":\"string\",\"pattern\":\"^O-[0-9]*$\",\"maxLength\":20}", AMOUNT, ""),
     "/properties/id/pattern", "pattern"},
    {ORDER(ID, AMOUNT, ""), ORDER(ID, AMOUNT, ",\"note\":{\"type\":\"string\"}"), "/additionalProperties", "false"},
    {"{\"properties\":{\"c\":{\"enum\":[\"EUR\",\"USD\"]}}}", "{\"properties\":{\"c\":{\"enum\":[\"EUR\",\"JPY\"]}}}",
     "/properties/c/enum", "enum"},
    {"{\"properties\":{\"c\":{\"enum\":[\"EUR\",\"USD\"]}}}", "{\"properties\":{\"c\":{\"type\":\"string\"}}}",
     "/properties/c/enum", "enum"},
    /* an enum value the newer refuses anyway is not one it allows */
    {"{\"properties\":{\"c\":{\"enum\":[\"EUR\"]}}}",
     "{\"properties\":{\"c\":{\"enum\":[\"EUR\",\"JPY\"],\"maxLength\":0}}}", NULL, NULL},
    {"{\"const\":1}", "{\"const\":1.0}", NULL, NULL},
    {"{\"const\":1}", "{\"const\":2}", "/const", "const"},
    /* nested objects, arrays, bounds */
    {"{\"properties\":{\"a\":{\"properties\":{\"street\":{\"type\":\"string\"}}}}}",
     "{\"properties\":{\"a\":{\"properties\":{\"street\":{\"type\":[\"string\",\"null\"]}}}}}",
     "/properties/a/properties/street/type", "type"},
    {"{\"items\":{\"type\":\"string\"},\"maxItems\":3}",
     "{\"items\":{\"type\":\"string\",\"minLength\":1},"
     "\"maxItems\":2,\"uniqueItems\":true}",
     NULL, NULL},
    {"{\"items\":{\"type\":\"string\"}}", "{\"items\":{}}", "/items/type", "type"},
    {"{\"items\":{\"type\":\"string\"}}", "{\"items\":[{\"type\":\"string\"}],\"additionalItems\":false}", NULL, NULL},
    {"{\"items\":{\"type\":\"string\"}}", "{\"items\":[{\"type\":\"string\"}]}", "/items/type", "type"},
    {"{\"maxItems\":3}", "{}", "/maxItems", "maxItems"},
    {"{\"multipleOf\":2}", "{\"multipleOf\":4}", NULL, NULL},
    {"{\"multipleOf\":2}", "{\"multipleOf\":3}", "/multipleOf", "multipleOf"},
    {"{\"type\":\"number\"}", "{\"type\":\"integer\"}", NULL, NULL},
    {"{\"type\":\"integer\"}", "{\"type\":\"number\"}", "/type", "type"},
    /* a type the newer leaves out needs none of the previous version's rules for it */
    {"{\"minLength\":3}", "{\"type\":\"number\"}", NULL, NULL},
    {"{\"format\":\"date\"}", "{\"format\":\"date-time\"}", "/format", "format"},
    /* additionalProperties: a property only the newer names must fit the previous version's */
    {"{\"additionalProperties\":{\"type\":\"string\"}}",
     "{\"properties\":{\"a\":{\"type\":\"string\"}},"
     "\"additionalProperties\":{\"type\":\"string\"}}",
     NULL, NULL},
    {"{\"additionalProperties\":{\"type\":\"string\"}}",
     "{\"properties\":{\"a\":{}},\"additionalProperties\":{\"type\":\"string\"}}", "/additionalProperties/type",
     "type"},
    {"{\"properties\":{\"a\":{\"type\":\"string\"}}}", "{\"additionalProperties\":{\"type\":\"string\"}}", NULL, NULL},
    {"{\"properties\":{\"a\":{\"type\":\"string\"}}}", "{\"additionalProperties\":false}", NULL, NULL},
    /* patternProperties: new ones loosen only what additionalProperties held */
    {"{\"properties\":{\"a\":{\"type\":\"string\"}}}",
     "{\"properties\":{\"a\":{\"type\":\"string\"}},\"patternProperties\":{\"^x\":{}}}", NULL, NULL},
    {"{\"additionalProperties\":false}", "{\"additionalProperties\":false,\"patternProperties\":{\"^a\":{}}}",
     "/patternProperties", "patternProperties"},
    /* combining keywords */
    {"{\"allOf\":[{\"required\":[\"a\"]}]}", "{\"required\":[\"a\",\"b\"]}", NULL, NULL},
    {"{\"allOf\":[{\"required\":[\"a\"]}]}", "{\"required\":[\"b\"]}", "/allOf/0/required", "required"},
    {"{\"anyOf\":[{\"type\":\"string\"},{\"type\":\"null\"}]}", "{\"type\":\"null\"}", NULL, NULL},
    {"{\"anyOf\":[{\"type\":\"string\"},{\"type\":\"null\"}]}", "{\"type\":[\"string\",\"null\"]}", "/anyOf", "anyOf"},
    {"{\"oneOf\":[{\"type\":\"string\"},{\"minLength\":2}]}", "{\"oneOf\":[{\"type\":\"string\"},{\"minLength\":2}]}",
     NULL, NULL},
    {"{\"oneOf\":[{\"type\":\"string\"},{\"minLength\":2}]}", "{\"oneOf\":[{\"type\":\"string\"},{\"minLength\":3}]}",
     "/oneOf", "oneOf"},
    {"{\"not\":{\"type\":\"null\"}}", "{}", "/not", "not"},
    /* booleans, and a schema that recurses through $ref */
    {"true", "{\"type\":\"string\"}", NULL, NULL},
    {"{\"type\":\"string\"}", "false", NULL, NULL},
    {"{\"properties\":{\"a\":false}}", "{\"properties\":{\"a\":true}}", "/properties/a", "false"},
    {LIST, LIST, NULL, NULL},
    {"{\"allOf\":[{\"$ref\":\"#\"}]}", "{\"type\":\"string\"}", "/allOf/0", "$ref"}, /* never ends: nothing valid */
    {LIST,
     "{\"definitions\":{\"n\":{\"type\":\"object\",\"properties\":{\"v\":{\"type\":\"number\"},\"next\":{\"$ref\":"
     "\"#/definitions/n\"}}}},\"$ref\":\"#/definitions/n\"}",
     "/properties/v/type", "type"},
    /* a $ref inside a keyword compared as text is never the same */
    {"{\"definitions\":{\"a\":{\"type\":\"string\"}},\"oneOf\":[{\"$ref\":\"#/definitions/a\"}]}",
     "{\"definitions\":{\"a\":{}},\"oneOf\":[{\"$ref\":\"#/definitions/a\"}]}", "/oneOf", "oneOf"},
};

/* Values to hold each compatible pair to. */
static const char *const VALUES[] = {"null",
                                     "true",
                                     "0",
                                     "-1",
                                     "1",
                                     "1.5",
                                     "2",
                                     "3",
                                     "4",
                                     "\"\"",
                                     "\"EUR\"",
                                     "\"JPY\"",
                                     "\"O-1\"",
                                     "\"O-\"",
                                     "\"2026-01-01\"",
                                     "[]",
                                     "[\"a\"]",
                                     "[\"a\",\"a\"]",
                                     "[\"a\",1]",
                                     "[\"\",\"b\",\"c\"]",
                                     "{}",
                                     "{\"a\":1}",
                                     "{\"a\":\"x\"}",
                                     "{\"a\":null,\"b\":1}",
                                     "{\"v\":1,\"next\":{\"v\":1.5}}",
                                     "{\"v\":1,\"next\":{\"v\":2}}",
                                     "{\"id\":\"O-1\",\"amount\":0}",
                                     "{\"id\":\"O-1\",\"amount\":1,\"currency\":\"EUR\"}",
                                     "{\"id\":\"O-1\",\"amount\":-1}",
                                     "{\"id\":\"O-\",\"amount\":1,\"currency\":\"JPY\"}",
                                     "{\"id\":\"O-1\",\"amount\":1,\"note\":\"x\"}",
                                     "{\"id\":\"O-1\"}",
                                     "{\"c\":\"JPY\"}",
                                     "{\"c\":\"EUR\"}",
                                     "{\"a\":{\"street\":null}}",
                                     "{\"a\":{\"street\":\"x\"}}",
                                     "{\"xa\":5,\"a\":\"s\"}"};

TEST(forward_compatibility_keeps_every_rule_of_the_previous_version) {
    for (size_t i = 0; i < ARRAY_LEN(PAIRS); i++) {
        const pair *p = &PAIRS[i];
        schema_t *o, *n;
        factum_error_t err = {0};
        CHECK_MSG(schema_compile(str_c(p->older), &o, &err) == 0, "pair %zu: %s", i, err.message);
        CHECK_MSG(schema_compile(str_c(p->newer), &n, &err) == 0, "pair %zu: %s", i, err.message);
        schema_report rep = {0};
        bool ok = schema_forward_compatible(n, o, &rep);
        CHECK_MSG(ok == !p->first && ok == (rep.count == 0), "pair %zu: %s [%s]", i, ok ? "compatible" : "not",
                  rep.json.ptr ? rep.json.ptr : "");
        CHECK_MSG(schema_forward_compatible(n, o, NULL) == ok, "pair %zu: quiet differs", i);
        if (p->first) {
            char want[200];
            snprintf(want, sizeof want, "{\"pointer\":\"%s\",\"keyword\":\"%s\",", p->first, p->keyword);
            CHECK_MSG(rep.json.ptr && !strncmp(rep.json.ptr, want, strlen(want)), "pair %zu: want %s in %s", i, want,
                      rep.json.ptr ? rep.json.ptr : "");
        }
        /* what it claims: every value the newer accepts, the previous accepts */
        for (size_t k = 0; ok && k < ARRAY_LEN(VALUES); k++)
            CHECK_MSG(!schema_validate(n, str_c(VALUES[k]), NULL) || schema_validate(o, str_c(VALUES[k]), NULL),
                      "pair %zu found compatible, but the newer accepts %s and the previous does not", i, VALUES[k]);
        schema_report_free(&rep);
        schema_free(o), schema_free(n);
    }
}

TEST(forward_compatibility_lists_every_difference_up_to_the_report_limit) {
    buf_t o = {0}, n = {0};
    buf_printf(&o, "{\"properties\":{");
    buf_printf(&n, "{\"properties\":{");
    for (int i = 0; i < SCHEMA_MAX_REPORTED + 1; i++) {
        buf_printf(&o, "%s\"p%d\":{\"maximum\":%d}", i ? "," : "", i, i);
        buf_printf(&n, "%s\"p%d\":{\"maximum\":%d}", i ? "," : "", i, i + 1);
    }
    buf_printf(&o, "}}"), buf_printf(&n, "}}");
    schema_t *so, *sn;
    CHECK_RC(schema_compile((factum_str_t){o.ptr, o.len}, &so, NULL), 0);
    CHECK_RC(schema_compile((factum_str_t){n.ptr, n.len}, &sn, NULL), 0);
    schema_report rep = {0};
    CHECK(!schema_forward_compatible(sn, so, &rep));
    CHECK_EQ(rep.count, SCHEMA_MAX_REPORTED + 1);
    int listed = 0;
    for (const char *s = rep.json.ptr; (s = strstr(s, "\"pointer\"")) != NULL; s++)
        listed++;
    CHECK_EQ(listed, SCHEMA_MAX_REPORTED);
    CHECK_MSG(strstr(rep.first, "/properties/p0/maximum: maximum:"), "%s", rep.first);
    schema_report_free(&rep);
    schema_free(so), schema_free(sn);
    buf_free(&o), buf_free(&n);
}

/* {"allOf":[{},...]} with n branches: 1 + n comparisons against any newer schema. */
static schema_t *all_of(int n) {
    buf_t b = {0};
    buf_printf(&b, "{\"allOf\":[");
    for (int i = 0; i < n; i++)
        buf_printf(&b, "%s{}", i ? "," : "");
    buf_printf(&b, "]}");
    schema_t *s = NULL;
    CHECK_RC(schema_compile((factum_str_t){b.ptr, b.len}, &s, NULL), 0);
    buf_free(&b);
    return s;
}

TEST(forward_compatibility_compares_at_most_its_limit_of_places) {
    schema_t *n, *at = all_of(49999), *past = all_of(50000);
    CHECK_RC(schema_compile(str_c("{\"type\":\"string\"}"), &n, NULL), 0);
    schema_report rep = {0};
    CHECK(schema_forward_compatible(n, at, &rep));
    CHECK(!schema_forward_compatible(n, past, &rep));
    CHECK_EQ(rep.count, 1);
    CHECK_MSG(strstr(rep.first, "more than 50000 comparisons: not compared"), "%s", rep.first);
    CHECK(!schema_forward_compatible(n, past, NULL));
    schema_report_free(&rep);
    schema_free(n), schema_free(at), schema_free(past);
}

TEST(a_put_declaring_forward_or_full_compatibility_is_409_listing_the_differences) {
    srv s = srv_start(test_dir(), NULL);
    expect_status(s.port, "PUT", "/schemas/OrderPlaced/versions/1", NULL, ORDER(ID, AMOUNT, ""), 201, NULL);
    expect_status(s.port, "POST", "/streams/order-1", "Content-Type: application/cloudevents+json\r\n",
                  "{\"type\":\"OrderPlaced\",\"data\":{\"id\":\"O-1\",\"amount\":5}}", 201, NULL);
    const char *wider = ORDER(ID, "{\"type\":\"number\",\"minimum\":-1}", ",\"note\":{}");
    resp r;
    http_do(s.port, "PUT", "/schemas/OrderPlaced/versions/2?compatibility=forward", NULL, wider, &r);
    CHECK_MSG(r.status == 409 && strstr(r.body, "urn:factum:problem:schema-incompatible") &&
                  strstr(r.body, "\"forward\":{\"compatible\":false,\"count\":2,\"differences\":[{\"pointer\":"
                                 "\"/properties/amount/minimum\",\"keyword\":\"minimum\"") &&
                  strstr(r.body, "{\"pointer\":\"/additionalProperties\",\"keyword\":\"false\"") &&
                  strstr(r.body, "is not forward compatible with version 1"),
              "%d %s", r.status, r.body);
    resp_free(&r);
    /* full: backward (the stored events pass) and forward */
    expect_status(s.port, "PUT", "/schemas/OrderPlaced/versions/2?compatibility=full", NULL, wider, 409,
                  "not forward compatible");
    /* a dry run reports both, whatever the compatibility */
    http_do(s.port, "PUT", "/schemas/OrderPlaced/versions/2?compatibility=none&dry_run=true", NULL, wider, &r);
    CHECK_MSG(r.status == 200 && strstr(r.body, "\"forward\":{\"compatible\":false,\"count\":2,") &&
                  strstr(r.body, "\"checked\":1,\"failing\":0"),
              "%d %s", r.status, r.body);
    resp_free(&r);
    /* backward only: registered */
    expect_status(s.port, "PUT", "/schemas/OrderPlaced/versions/2", NULL, wider, 201, NULL);
    /* a narrower version 3 is forward compatible with 2 */
    http_do(s.port, "PUT", "/schemas/OrderPlaced/versions/3?compatibility=full", NULL,
            ORDER(ID, "{\"type\":\"integer\",\"minimum\":0}", ",\"note\":{\"type\":\"string\"}"), &r);
    CHECK_MSG(r.status == 201 && strstr(r.body, "\"forward\":{\"compatible\":true,\"count\":0,\"differences\":[]}"),
              "%d %s", r.status, r.body);
    resp_free(&r);
    char *one = http_body(s.port, "GET", "/schemas/OrderPlaced", NULL, NULL, 200);
    CHECK_MSG(strstr(one, "\"latest\":3") && strstr(one, "{\"version\":3,\"compatibility\":\"full\"}"), "%s", one);
    free(one);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}
