/*
 * test_base.c — unit tests of the base layer: CRC32C, the JSON scanner, UUIDv7, time, and the
 * CloudEvents JSON codec.
 */
#include "test.h"

#include "../src/base/json.h"

#include <string.h>
#include <time.h>

uint32_t crc32c_soft(uint32_t crc, const void *p, size_t n);

TEST(crc32c_matches_the_rfc_3720_vectors_in_hardware_and_software) {
    uint8_t zeros[32] = {0}, ones[32], inc[32];
    memset(ones, 0xff, sizeof ones);
    for (int i = 0; i < 32; i++)
        inc[i] = (uint8_t)i;
    CHECK_EQ(crc32c(zeros, 32), 0x8A9136AA);
    CHECK_EQ(crc32c(ones, 32), 0x62A8AB43);
    CHECK_EQ(crc32c(inc, 32), 0x46DD794E);
    CHECK_EQ(crc32c_soft(0, inc, 32), 0x46DD794E);
    CHECK_EQ(crc32c("123456789", 9), 0xE3069283);
    CHECK_EQ(crc32c_extend(crc32c("12345", 5), "6789", 4), 0xE3069283);
    CHECK_EQ(crc32c_soft(crc32c_soft(0, "1234", 4), "56789", 5), 0xE3069283);
}

TEST(json_scanner_accepts_valid_and_rejects_invalid_text) {
    const char *good[] = {
        "{}",   "[]",          "0", "-0.5e+10", "\"\\u00e9\\ud83d\\ude00\"", " {\"a\" : [1, {\"b\":null}] } ",
        "true", "\"\xc3\xa9\""};
    const char *bad[] = {"",
                         "{",
                         "[1,]",
                         "{\"a\":1,}",
                         "01",
                         "1.",
                         ".5",
                         "\"\\x\"",
                         "\"\\ud800\"",
                         "\"\x01\"",
                         "\"\xc3\x28\"",
                         "{a:1}",
                         "[1] 2",
                         "tru",
                         "\"\xed\xa0\x80\"",
                         "\"\xc0\xaf\"",
                         "NaN",
                         "'a'"};
    for (size_t i = 0; i < ARRAY_LEN(good); i++)
        CHECK_MSG(json_valid(good[i], strlen(good[i]), NULL), "good %zu", i);
    for (size_t i = 0; i < ARRAY_LEN(bad); i++)
        CHECK_MSG(!json_valid(bad[i], strlen(bad[i]), NULL), "bad %zu", i);
    char deep[200];
    memset(deep, '[', 100);
    memset(deep + 100, ']', 100);
    CHECK(!json_valid(deep, 200, NULL)); /* nesting limit */
    CHECK(json_valid(deep + 40, 120, NULL));
    buf_t b = {0};
    CHECK(json_unescape(str_c("\"a\\n\\u00e9\\ud83d\\ude00\\\"\""), &b) == 0);
    CHECK(strcmp(b.ptr, "a\n\xc3\xa9\xf0\x9f\x98\x80\"") == 0);
    buf_free(&b);
    CHECK(json_valid_members("\"a\":1,\"b\":[2]", 13));
    CHECK(!json_valid_members("\"a\":1,", 6));
}

TEST(uuid7_carries_version_variant_and_time_order) {
    char a[37], b[37];
    uuid7_make(a);
    for (int i = 0; i < 2000; i++) {
    } /* ids made in the same millisecond may tie; later ones sort after */
    uuid7_make(b);
    CHECK(strlen(a) == 36 && a[8] == '-' && a[14] == '7');
    CHECK(strchr("89ab", a[19]));
    CHECK(memcmp(a, b, 13) <= 0);
    CHECK(strcmp(a, b) != 0);
    char t[32];
    time_format_rfc3339(1795420800123456, t);
    CHECK(strcmp(t, "2026-11-23T08:00:00.123456Z") == 0);
}

TEST(cloudevents_json_round_trips_attributes_data_and_extensions) {
    const char *in = "{\"specversion\":\"1.0\",\"id\":\"e\\u00e9\",\"type\":\"OrderCreated\",\"source\":\"svc\","
                     "\"subject\":\"o-1\",\"time\":\"2020-01-01T00:00:00Z\",\"datacontenttype\":\"application/json\","
                     "\"correlationid\":\"c\",\"causationid\":\"k\",\"traceparent\":\"00-ab\",\"n\":7,"
                     "\"data\": { \"a\" : [1, 2.50] }}";
    factum_events_t *set;
    factum_error_t err;
    CHECK_RC(factum_events_parse(in, strlen(in), 0, &set, &err), 0);
    factum_event_t *e = factum_events_get(set, 0);
    CHECK(str_eq(e->id, str_c("e\xc3\xa9")) && str_eq(e->type, str_c("OrderCreated")));
    CHECK(str_eq(e->data, str_c("{ \"a\" : [1, 2.50] }")) && e->data_format == FACTUM_DATA_JSON);
    CHECK(str_eq(e->extensions, str_c("\"traceparent\":\"00-ab\",\"n\":7")));
    e->stream = str_c("order-1");
    e->revision = 3, e->position = 9, e->time_us = 0;
    char out[1024];
    factum_event_json(e, out, sizeof out);
    CHECK_MSG(strcmp(out, "{\"specversion\":\"1.0\",\"id\":\"e\xc3\xa9\",\"source\":\"svc\",\"type\":\"OrderCreated\","
                          "\"subject\":\"o-1\",\"time\":\"1970-01-01T00:00:00.000000Z\","
                          "\"datacontenttype\":\"application/json\",\"correlationid\":\"c\",\"causationid\":\"k\","
                          "\"traceparent\":\"00-ab\",\"n\":7,\"stream\":\"order-1\",\"revision\":3,\"position\":9,"
                          "\"data\":{ \"a\" : [1, 2.50] }}") == 0,
              "%s", out);
    size_t full = strlen(out);
    CHECK_EQ(factum_event_json(e, NULL, 0), full);
    CHECK_EQ(factum_event_json(e, out, 10), full); /* cut to 9 bytes + NUL, but says what it needs */
    CHECK_EQ(strlen(out), 9);
    factum_events_free(set);
    const char *batch = "[{\"type\":\"A\",\"data_base64\":\"AAEC/w==\"},{\"type\":\"B\"}]";
    CHECK_RC(factum_events_parse(batch, strlen(batch), 1, &set, &err), 0);
    CHECK_EQ(factum_events_count(set), 2);
    CHECK(factum_events_get(set, 0)->data_format == FACTUM_DATA_BINARY &&
          str_eq(factum_events_get(set, 0)->data, (factum_str_t){"\0\1\2\377", 4}));
    CHECK(factum_events_get(set, 1)->data_format == FACTUM_DATA_NONE);
    factum_events_free(set);
}

TEST(cloudevents_json_rejects_bad_events_with_a_clear_message) {
    struct {
        const char *text;
        int batch;
        const char *msg;
    } cases[] = {
        {"{\"data\":1}", 0, "'type' is required"},
        {"{\"type\":\"\"}", 0, "'type' is required"},
        {"{\"type\":1}", 0, "must be a string"},
        {"{\"type\":\"T\",\"specversion\":\"0.3\"}", 0, "specversion"},
        {"{\"type\":\"T\",\"data\":1,\"data_base64\":\"AA==\"}", 0, "cannot both"},
        {"{\"type\":\"T\",\"data_base64\":\"AA=\"}", 0, "base64"},
        {"{\"type\":\"T\",\"type\":\"U\"}", 0, "twice"},
        {"{\"type\":\"T\"", 0, "malformed JSON at byte"},
        {"[{\"type\":\"T\"}]", 0, "JSON object"},
        {"{\"type\":\"T\"}", 1, "JSON array"},
        {"[]", 1, "at least one"},
        {"[{\"type\":\"T\"},3]", 1, "event 1"},
        {"{\"type\":\"T\"} x", 0, "after the value"},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        factum_events_t *set = NULL;
        factum_error_t err = {0};
        int rc = factum_events_parse(cases[i].text, strlen(cases[i].text), cases[i].batch, &set, &err);
        CHECK_MSG(rc == FACTUM_EBADEVENT && strstr(err.message, cases[i].msg), "case %zu: %s '%s'", i,
                  factum_errname(rc), err.message);
    }
}

TEST(time_and_number_formatting_agree_with_libc) {
    char mine[32], ref[64];
    for (int i = 0; i < 200000; i++) {
        /* Years 1..9999, microseconds; plus the edges. */
        int64_t us = (int64_t)(test_rand() % (253402300800000000ull + 62135596800000000ull)) - 62135596800000000ll;
        if (i == 0) us = 0;
        if (i == 1) us = -1;
        if (i == 2) us = 951782400000000; /* 2000-02-29 */
        time_format_rfc3339(us, mine);
        time_t s = (time_t)(us / 1000000);
        int64_t frac = us % 1000000;
        if (frac < 0) frac += 1000000, s--;
        struct tm tm;
        gmtime_r(&s, &tm);
        snprintf(ref, sizeof ref, "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                 tm.tm_hour, tm.tm_min, tm.tm_sec, (int)frac);
        CHECK_MSG(!strcmp(mine, ref), "%lld: %s != %s", (long long)us, mine, ref);
        CHECK_EQ(time_parse_rfc3339(str_c(mine)), us);
        uint64_t v = test_rand() >> (test_rand() % 64);
        char a[21], b[32];
        size_t n = u64_format(v, a);
        snprintf(b, sizeof b, "%llu", (unsigned long long)v);
        CHECK(!strcmp(a, b) && n == strlen(b));
    }
}

TEST(rfc3339_times_parse_with_offsets_and_fractions_and_bad_ones_are_refused) {
    int64_t us;
    CHECK(time_parse(str_c("2026-11-23T10:00:00Z"), &us) == 0 && us == 1795428000000000);
    CHECK(time_parse(str_c("2026-11-23T11:30:00.5+01:30"), &us) == 0 && us == 1795428000500000);
    CHECK(time_parse(str_c("2026-11-23t10:00:00.1234567z"), &us) == 0 && us == 1795428000123456);
    CHECK(time_parse(str_c("2026-11-23 05:00:00-05:00"), &us) == 0 && us == 1795428000000000);
    CHECK(time_parse(str_c("2024-02-29T00:00:00Z"), &us) == 0);
    const char *bad[] = {"2026-11-23",
                         "2026-11-23T10:00:00",
                         "2026-13-01T00:00:00Z",
                         "2025-02-29T00:00:00Z",
                         "2026-11-31T00:00:00Z",
                         "2026-11-23T24:00:00Z",
                         "2026-11-23T10:00:00.Z",
                         "2026-11-23T10:00:00+1:00",
                         "2026-11-23T10:00:00Zx",
                         "x026-11-23T10:00:00Z"};
    for (size_t i = 0; i < ARRAY_LEN(bad); i++)
        CHECK_MSG(time_parse(str_c(bad[i]), &us) == -1, "%s parsed", bad[i]);
}
