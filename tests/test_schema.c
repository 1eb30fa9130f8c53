/*
 * test_schema.c — the JSON Schema validator (src/schema/) against the official test suite of
 * Debian's json-schema-test-suite (its draft7 files), and its own limits and refusals.
 */
#include "../src/base/json.h"
#include "../src/schema/schema.h"
#include "test.h"

#include <dirent.h>
#include <string.h>

#define SUITE "/usr/share/json-schema-test-suite/tests/draft7"

static char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    rewind(f);
    char *p = malloc((size_t)len + 1);
    *n = fread(p, 1, (size_t)len, f);
    p[*n] = 0;
    fclose(f);
    return p;
}

typedef struct tally {
    int passed, failed, skipped;
    char failures[4096];
} tally;

/* Runs one suite file; each group's schema compiled once, each case validated. A group whose
   schema is refused as unsupported is skipped (with the reason), any other refusal fails. */
static void run_file(const char *path, const char *kw, tally *t) {
    size_t n;
    char *text = slurp(path, &n);
    CHECK_MSG(text, "cannot read %s", path);
    factum_str_t all;
    int kind;
    json_cur_t c = json_cur(text, n);
    CHECK(json_value(&c, &all, &kind) == 0 && kind == JSON_ARRAY);
    json_iter_t groups;
    factum_str_t g;
    json_iter_init(&groups, all);
    while (json_iter_element(&groups, &g, &kind) == 1) {
        factum_str_t sch, cases, desc, one;
        int k;
        CHECK(json_member(g, "schema", &sch, &k) && json_member(g, "tests", &cases, &k));
        json_member(g, "description", &desc, &k);
        schema_t *s = NULL;
        factum_error_t err = {0};
        int rc = schema_compile(sch, &s, &err);
        json_iter_t it;
        size_t ncases = 0;
        json_iter_init(&it, cases);
        while (json_iter_element(&it, &one, &k) == 1)
            ncases++;
        if (rc) {
            bool unsupported = strstr(err.message, "unsupported") != NULL;
            if (unsupported) {
                t->skipped += (int)ncases;
                printf("      skipped %s: %.*s (%zu cases): %s\n", kw, (int)desc.len, desc.ptr, ncases, err.message);
            } else {
                t->failed += (int)ncases;
                size_t used = strlen(t->failures);
                snprintf(t->failures + used, sizeof t->failures - used, "  %s: %.*s: refused: %s\n", kw, (int)desc.len,
                         desc.ptr, err.message);
            }
            continue;
        }
        json_iter_init(&it, cases);
        while (json_iter_element(&it, &one, &k) == 1) {
            factum_str_t data, valid, cdesc;
            int dk;
            CHECK(json_member(one, "data", &data, &dk) && json_member(one, "valid", &valid, &k));
            json_member(one, "description", &cdesc, &dk);
            bool want = k == JSON_TRUE;
            schema_report rep = {0};
            bool got = schema_validate(s, data, &rep), quiet = schema_validate(s, data, NULL);
            if (got == want && quiet == want && (got || rep.count > 0)) {
                t->passed++;
            } else {
                t->failed++;
                size_t used = strlen(t->failures);
                snprintf(t->failures + used, sizeof t->failures - used, "  %s: %.*s: %.*s: expected %s\n", kw,
                         (int)desc.len, desc.ptr, (int)cdesc.len, cdesc.ptr, want ? "valid" : "invalid");
            }
            schema_report_free(&rep);
        }
        schema_free(s);
    }
    free(text);
}

/* Every file of the draft7 folder (and the optional formats the validator checks) by keyword:
   passed/failed/skipped printed per keyword; a failure anywhere fails the test. */
TEST(schema_passes_the_official_draft7_suite) {
    DIR *d = opendir(SUITE);
    if (!d) test_skip("%s is missing (Debian's json-schema-test-suite)", SUITE);
    static const char *const extra[] = {"optional/format/date-time.json", "optional/format/date.json",
                                        "optional/format/time.json",      "optional/format/ipv4.json",
                                        "optional/format/ipv6.json",      "optional/format/email.json"};
    char files[64][96];
    size_t nfiles = 0;
    struct dirent *de;
    while ((de = readdir(d)) && nfiles < 56)
        if (strstr(de->d_name, ".json")) snprintf(files[nfiles++], sizeof files[0], "%s", de->d_name);
    closedir(d);
    for (size_t i = 0; i < ARRAY_LEN(extra); i++)
        snprintf(files[nfiles++], sizeof files[0], "%s", extra[i]);
    int total_fail = 0, total_pass = 0, total_skip = 0;
    char failures[16384] = "";
    for (size_t i = 0; i < nfiles; i++) {
        char path[256], kw[96];
        snprintf(path, sizeof path, SUITE "/%s", files[i]);
        snprintf(kw, sizeof kw, "%s", files[i]);
        *strstr(kw, ".json") = 0;
        tally t = {0};
        run_file(path, kw, &t);
        printf("    %-32s passed %3d  failed %d  skipped %d\n", kw, t.passed, t.failed, t.skipped);
        total_pass += t.passed, total_fail += t.failed, total_skip += t.skipped;
        size_t used = strlen(failures);
        snprintf(failures + used, sizeof failures - used, "%s", t.failures);
    }
    printf("    draft7: %d passed, %d failed, %d skipped\n", total_pass, total_fail, total_skip);
    CHECK_MSG(total_fail == 0, "cases failed:\n%s", failures);
    CHECK(total_pass > 400);
}

static schema_t *compiled(const char *doc) {
    schema_t *s = NULL;
    factum_error_t err = {0};
    int rc = schema_compile(str_c(doc), &s, &err);
    CHECK_MSG(rc == 0, "%s: %s", doc, err.message);
    return s;
}

static void refused(const char *doc, const char *want) {
    schema_t *s = NULL;
    factum_error_t err = {0};
    CHECK_RC(schema_compile(str_c(doc), &s, &err), FACTUM_EINVAL);
    CHECK(s == NULL);
    CHECK_MSG(strstr(err.message, want), "%s: '%s' does not say '%s'", doc, err.message, want);
}

TEST(schema_refuses_what_it_would_not_check) {
    refused("{\"properties\":{\"a\":{\"unevaluatedProperties\":false}}}",
            "/properties/a: unsupported keyword \"unevaluatedProperties\"");
    refused("{\"format\":\"uri\"}", "unsupported format \"uri\"");
    refused("{\"pattern\":\"(\"}", "\"pattern\" is not a regular expression PCRE2 accepts");
    refused("{\"patternProperties\":{\"[\":true}}", "PCRE2");
    refused("{\"$ref\":\"other.json\"}", "only references inside the document");
    refused("{\"$ref\":\"#/definitions/none\"}", "names no place in the document");
    refused("{\"definitions\":{\"a\":{\"$ref\":\"#/definitions/b\"},\"b\":{\"$ref\":\"#/definitions/a\"}},"
            "\"$ref\":\"#/definitions/a\"}",
            "leads back to itself");
    refused("{\"minLength\":-1}", "\"minLength\" must be a whole number");
    refused("{\"type\":\"text\"}", "\"type\" must name a JSON Schema type");
    refused("{\"items\":[1]}", "/items/0: a schema must be an object, true or false");
    refused("[1,", "not valid JSON");
    refused("{\"pattern\":\"a\",\"pattern\":\"b\"}", "keyword \"pattern\" given twice");
    refused("{\"properties\":{\"a\":{\"type\":\"string\",\"typ\\u0065\":\"null\"}}}",
            "/properties/a: keyword \"type\" given twice");
}

TEST(schema_document_limit_is_enforced_one_past) {
    size_t n = SCHEMA_MAX_BYTES + 1;
    char *doc = malloc(n + 1);
    memset(doc, ' ', n);
    memcpy(doc, "{}", 2);
    doc[n] = 0;
    schema_t *s = NULL;
    factum_error_t err = {0};
    CHECK_RC(schema_compile((factum_str_t){doc, n}, &s, &err), FACTUM_ETOOBIG);
    CHECK_RC(schema_compile((factum_str_t){doc, n - 1}, &s, &err), 0);
    schema_free(s);
    free(doc);
}

/* Escaped JSON pointers in $ref (the suite's own case uses unknown keywords at the root). */
TEST(schema_ref_follows_escaped_pointers) {
    schema_t *s = compiled("{\"definitions\":{\"a~b\":{\"type\":\"integer\"},\"c/d\":{\"type\":\"string\"},"
                           "\"e%f\":{\"type\":\"null\"}},\"properties\":{\"x\":{\"$ref\":\"#/definitions/a~0b\"},"
                           "\"y\":{\"$ref\":\"#/definitions/c~1d\"},\"z\":{\"$ref\":\"#/definitions/e%25f\"}}}");
    CHECK(schema_validate(s, str_c("{\"x\":1,\"y\":\"s\",\"z\":null}"), NULL));
    CHECK(!schema_validate(s, str_c("{\"x\":\"1\"}"), NULL));
    CHECK(!schema_validate(s, str_c("{\"y\":1}"), NULL));
    CHECK(!schema_validate(s, str_c("{\"z\":1}"), NULL));
    schema_free(s);
}

TEST(schema_report_names_pointer_and_keyword_of_each_violation) {
    schema_t *s = compiled("{\"type\":\"object\",\"required\":[\"id\"],\"properties\":{\"n\":{\"type\":\"integer\"},"
                           "\"tags\":{\"items\":{\"pattern\":\"^[a-z]+$\"}},\"a/b\":{\"enum\":[1,2]}},"
                           "\"additionalProperties\":false}");
    schema_report rep = {0};
    CHECK(!schema_validate(s, str_c("{\"n\":1.5,\"tags\":[\"ok\",\"NO\"],\"a/b\":3,\"extra\":1}"), &rep));
    CHECK_EQ(rep.count, 5);
    buf_append(&rep.json, "", 1);
    const char *want[] = {
        "{\"pointer\":\"/n\",\"keyword\":\"type\"", "{\"pointer\":\"/tags/1\",\"keyword\":\"pattern\"",
        "{\"pointer\":\"/a~1b\",\"keyword\":\"enum\"", "{\"pointer\":\"/extra\",\"keyword\":\"additionalProperties\"",
        "{\"pointer\":\"\",\"keyword\":\"required\""};
    for (size_t i = 0; i < ARRAY_LEN(want); i++)
        CHECK_MSG(strstr(rep.json.ptr, want[i]), "%s lacks %s", rep.json.ptr, want[i]);
    CHECK(strstr(rep.first, "/n: type:"));
    schema_report_free(&rep);
    schema_free(s);
}

TEST(schema_report_lists_at_most_its_limit_and_counts_all) {
    schema_t *s = compiled("{\"items\":{\"type\":\"string\"}}");
    buf_t data = {0};
    buf_append(&data, "[", 1);
    for (int i = 0; i <= SCHEMA_MAX_REPORTED; i++)
        buf_printf(&data, "%s%d", i ? "," : "", i);
    buf_append(&data, "]", 1);
    schema_report rep = {0};
    CHECK(!schema_validate(s, (factum_str_t){data.ptr, data.len}, &rep));
    CHECK_EQ(rep.count, SCHEMA_MAX_REPORTED + 1);
    size_t listed = 0;
    for (const char *p = rep.json.ptr; (p = strstr(p, "\"pointer\"")); p++)
        listed++;
    CHECK_EQ(listed, SCHEMA_MAX_REPORTED);
    schema_report_free(&rep);
    buf_free(&data);
    schema_free(s);
}

TEST(schema_recursion_through_ref_is_bounded) {
    schema_t *s = compiled("{\"allOf\":[{\"$ref\":\"#\"}]}");
    schema_report rep = {0};
    CHECK(!schema_validate(s, str_c("1"), &rep));
    buf_append(&rep.json, "", 1);
    CHECK(strstr(rep.json.ptr, "recurses deeper"));
    schema_report_free(&rep);
    schema_free(s);
}

#include "../src/schema/upcast.h"

static void upcasts_to(const char *steps, const schema_t *from, const char *data, const char *want) {
    upcast *u;
    factum_error_t err = {0};
    CHECK_MSG(upcast_parse(str_c(steps), from, &u, &err) == 0, "%s: %s", steps, err.message);
    buf_t out = {0};
    CHECK_RC(upcast_apply(u, str_c(data), &out), 0);
    buf_append(&out, "", 1);
    CHECK_MSG(!strcmp(out.ptr, want), "%s on %s gave %s, not %s", steps, data, out.ptr, want);
    buf_free(&out);
    upcast_free(u);
}

TEST(upcast_steps_rename_add_remove_move_and_map) {
    schema_t *v1 = compiled("{\"properties\":{\"cust\":{},\"street\":{},\"old\":{},\"st\":{},\"n\":{\"properties\":"
                            "{\"a\":{}}}}}");
    upcasts_to("{\"steps\":[{\"op\":\"rename\",\"from\":\"/cust\",\"to\":\"/customer\"}]}", v1,
               "{\"cust\":\"Ann\",\"x\":1}", "{\"x\":1,\"customer\":\"Ann\"}");
    upcasts_to("{\"steps\":[{\"op\":\"add\",\"path\":\"/currency\",\"value\":\"EUR\"}]}", v1, "{\"a\":1}",
               "{\"a\":1,\"currency\":\"EUR\"}");
    upcasts_to("{\"steps\":[{\"op\":\"add\",\"path\":\"/currency\",\"value\":\"EUR\"}]}", v1, "{\"currency\":\"USD\"}",
               "{\"currency\":\"USD\"}"); /* there already: kept */
    upcasts_to("{\"steps\":[{\"op\":\"remove\",\"path\":\"/old\"}]}", v1, "{\"old\":[1,{\"b\":2}],\"k\":true}",
               "{\"k\":true}");
    upcasts_to("{\"steps\":[{\"op\":\"move\",\"from\":\"/street\",\"to\":\"/address/street\"}]}", v1,
               "{\"street\":\"Main \\\"1\\\"\"}", "{\"address\":{\"street\":\"Main \\\"1\\\"\"}}");
    upcasts_to(
        "{\"steps\":[{\"op\":\"map\",\"path\":\"/st\",\"values\":{\"A\":\"active\",\"I\":{\"inactive\":true}}}]}", v1,
        "{\"st\":\"I\"}", "{\"st\":{\"inactive\":true}}");
    upcasts_to("{\"steps\":[{\"op\":\"move\",\"from\":\"/n/a\",\"to\":\"/a\"},{\"op\":\"remove\",\"path\":\"/n\"}]}",
               v1, "{\"n\":{\"a\":5}}", "{\"a\":5}");
    /* what the data lacks is left alone; data that is not an object passes through */
    upcasts_to("{\"steps\":[{\"op\":\"rename\",\"from\":\"/cust\",\"to\":\"/customer\"}]}", v1, "{}", "{}");
    upcasts_to("{\"steps\":[{\"op\":\"remove\",\"path\":\"/old\"}]}", v1, "[1]", "[1]");
    schema_free(v1);
}

TEST(upcast_steps_that_name_what_the_source_lacks_are_refused) {
    schema_t *v1 = compiled("{\"properties\":{\"a\":{}}}");
    const char *bad[][2] = {
        {"{\"steps\":[{\"op\":\"rename\",\"from\":\"/b\",\"to\":\"/c\"}]}", "/b is not a property of the version"},
        {"{\"steps\":[{\"op\":\"rename\",\"from\":\"/a\",\"to\":\"/x/a\"}]}", "beside"},
        {"{\"steps\":[{\"op\":\"swap\"}]}", "\"op\" is rename, add"},
        {"{\"steps\":[{\"op\":\"add\",\"path\":\"/z\"}]}", "\"value\" is the default"},
        {"{\"steps\":[{\"op\":\"remove\",\"path\":\"a\"}]}", "JSON pointer"},
        {"{\"steps\":[{\"op\":\"remove\",\"path\":\"/a\",\"extra\":1}]}", "unknown member"},
        {"{\"steps\":[{\"op\":\"map\",\"path\":\"/a\",\"values\":[]}]}", "\"values\" is an object"},
        {"{\"steps\":[{\"op\":\"rename_type\"}]}", "\"type\" is the new event type"},
        {"{\"step\":[]}", "unknown member"},
    };
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        upcast *u = NULL;
        factum_error_t err = {0};
        CHECK(upcast_parse(str_c(bad[i][0]), v1, &u, &err) != 0 && !u);
        CHECK_MSG(strstr(err.message, bad[i][1]), "%s: %s", bad[i][0], err.message);
    }
    /* one past the step limit */
    buf_t b = {0};
    buf_append(&b, "{\"steps\":[", 10);
    for (int i = 0; i <= UPCAST_MAX_STEPS; i++)
        buf_printf(&b, "%s{\"op\":\"remove\",\"path\":\"/a\"}", i ? "," : "");
    buf_append(&b, "]}", 2);
    upcast *u = NULL;
    factum_error_t err;
    CHECK_RC(upcast_parse((factum_str_t){b.ptr, b.len}, v1, &u, &err), FACTUM_ETOOBIG);
    buf_free(&b);
    schema_free(v1);
}
