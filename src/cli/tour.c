/*
 * tour.c — `factum tour`: what `make run` shows until the HTTP server exists (issue 3). It
 * appends a few events of the seeds' order example to the data folder, reads them back, and
 * prints the commands that did it, so a newcomer sees the engine work end to end.
 */
#include "cli.h"

#include <stdio.h>
#include <string.h>

static const char *usage_tour =
    "usage: factum tour [--data-dir DIR]\n"
    "\n"
    "Appends three events of an order to a new stream of the data folder (made if missing),\n"
    "reads them back, and prints the commands that did it.\n";

int cli_tour(const char *dir, int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "--help")) return printf("%s", usage_tour), CLI_OK;
    if (argc > 1) return cli_fail(CLI_USAGE, "factum tour takes no arguments (see factum tour --help)");
    factum_t *db;
    int rc = cli_create(dir, &db);
    if (rc) return rc;
    char stream[64];
    snprintf(stream, sizeof stream, "order-%lld", (long long)(clock_realtime_us() / 1000000));
    struct {
        const char *type, *data;
    } steps[] = {
        {"OrderCreated", "{\"orderId\":\"%s\",\"customerId\":\"customer-456\",\"total\":59.98}"},
        {"OrderPaid", "{\"orderId\":\"%s\",\"amount\":59.98}"},
        {"OrderShipped", "{\"orderId\":\"%s\",\"carrier\":\"UPS\"}"},
    };
    printf("Factum %s, data folder %s\n\n", FACTUM_VERSION, dir);
    factum_error_t err = {0};
    for (size_t i = 0; i < ARRAY_LEN(steps); i++) {
        char data[256];
        snprintf(data, sizeof data, steps[i].data, stream);
        factum_event_t ev = {.type = str_c(steps[i].type),
                             .data = str_c(data),
                             .data_format = FACTUM_DATA_JSON,
                             .datacontenttype = str_c("application/json"),
                             .correlationid = str_c(stream)};
        factum_append_result_t res;
        int64_t expect = i == 0 ? FACTUM_EXPECT_NO_STREAM : (int64_t)i - 1;
        printf("$ factum append %s %s '%s' --expect %s\n", stream, steps[i].type, data,
               i == 0 ? "no-stream" : (char[]){(char)('0' + i - 1), 0});
        if ((rc = factum_append(db, str_c(stream), expect, &ev, 1, &res, &err))) {
            factum_close(db);
            return cli_report(rc, &err);
        }
        printf("{\"stream\":\"%s\",\"revision\":%llu,\"position\":%llu}\n\n", stream,
               (unsigned long long)res.last_revision, (unsigned long long)res.last_position);
    }
    printf("$ factum read %s\n", stream);
    factum_result_t *res;
    buf_t line = {0};
    buf_reserve(&line, 4096);
    if (!(rc = factum_read_stream(db, str_c(stream), 0, 100, 0, &res, &err))) {
        for (size_t i = 0; i < factum_result_count(res); i++)
            cli_print_event(factum_result_event(res, i), &line);
        factum_result_free(res);
    } else
        rc = cli_report(rc, &err);
    printf("\n%llu events in the log. Try: build/factum --data-dir %s read --all --category order\n",
           (unsigned long long)factum_head_position(db), dir);
    buf_free(&line);
    factum_close(db);
    return rc;
}
