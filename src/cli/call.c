/*
 * call.c — one request against a server for the commands that are thin over the HTTP API
 * (group, meta, delete, projection): prints the answer body, or reports the error.
 */
#include "cli.h"

#include "../base/json.h"
#include "factum_client.h"

#include <stdio.h>
#include <stdlib.h>

int cli_call(const char *url, const char *method, const char *path, const char *body, bool lines) {
    factum_client_t *c;
    factum_error_t err = {0};
    int rc = factum_client_new(url, &c, &err), status;
    char *resp = NULL;
    if (!rc) rc = factum_client_call(c, method, path, body, &status, &resp, &err);
    factum_client_free(c);
    if (rc) {
        free(resp);
        return cli_report(rc, &err);
    }
    if (lines) { /* a JSON array: one element per line */
        json_iter_t it;
        factum_str_t v;
        int kind;
        json_iter_init(&it, str_c(resp));
        while (json_iter_element(&it, &v, &kind) == 1) printf("%.*s\n", (int)v.len, v.ptr);
    } else {
        printf("%s\n", resp);
    }
    free(resp);
    return CLI_OK;
}
