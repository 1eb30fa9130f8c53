/*
 * test_fuzz.c — replays each fuzz target's committed corpus (the files in fuzz/corpus/NAME),
 * input that once found a bug, and the seeds, run in every `make test` and `make asan`.
 */
#include "test.h"

#include <dirent.h>
#include <string.h>

int fuzz_record(const uint8_t *data, size_t size);
int fuzz_event_json(const uint8_t *data, size_t size);
int fuzz_open(const uint8_t *data, size_t size);
int fuzz_http(const uint8_t *data, size_t size);
int fuzz_sqlparam(const uint8_t *data, size_t size);
int fuzz_saga(const uint8_t *data, size_t size);
int fuzz_schema(const uint8_t *data, size_t size);
int fuzz_schema_data(const uint8_t *data, size_t size);
int fuzz_tag_query(const uint8_t *data, size_t size);

static void replay(const char *name, int (*fn)(const uint8_t *, size_t)) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/fuzz/corpus/%s", test_root(), name);
    DIR *d = opendir(dir);
    CHECK_MSG(d, "no corpus at %s", dir);
    struct dirent *de;
    int n = 0;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        FILE *f = fopen(path, "rb");
        CHECK(f);
        uint8_t *buf = malloc(1 << 20);
        size_t len = fread(buf, 1, 1 << 20, f);
        fclose(f);
        fn(buf, len);
        free(buf);
        n++;
    }
    closedir(d);
    CHECK_MSG(n > 0, "empty corpus %s", dir);
}

TEST(fuzz_corpus_of_the_record_decoder_replays_cleanly) { replay("record", fuzz_record); }
TEST(fuzz_corpus_of_event_json_replays_cleanly) { replay("event_json", fuzz_event_json); }
TEST_T(fuzz_corpus_of_opening_a_damaged_folder_replays_cleanly, 120) { replay("open", fuzz_open); }
TEST(fuzz_corpus_of_the_http_request_parser_replays_cleanly) { replay("http", fuzz_http); }
TEST(fuzz_corpus_of_projection_sql_parameters_replays_cleanly) { replay("sqlparam", fuzz_sqlparam); }
TEST(fuzz_corpus_of_saga_definitions_replays_cleanly) { replay("saga", fuzz_saga); }
TEST(fuzz_corpus_of_schema_documents_replays_cleanly) { replay("schema", fuzz_schema); }
TEST(fuzz_corpus_of_data_validated_by_a_schema_replays_cleanly) { replay("schema_data", fuzz_schema_data); }
TEST(fuzz_corpus_of_tag_queries_replays_cleanly) { replay("tag_query", fuzz_tag_query); }
