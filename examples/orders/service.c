/*
 * service.c — the order system's services, written with the Factum C client library (only
 * include/factum_client.h). One program, three roles:
 *
 *   order-service payment|inventory|shipping [--server URL] [--style orchestrated|choreographed]
 *                 [--force fail|timeout]
 *
 * Orchestrated (the default): the role consumes its commands (payment-commands, ...) from a
 * consumer group and answers each with an event in its own stream (payment-events, ...), with
 * correlationid = the order and causationid = the command. The order saga
 * (order_saga.json) drives the steps and the compensations.
 *
 * Choreographed: there is no saga. Each role consumes the events it reacts to from a consumer
 * group on $all, and appends its own to the order's stream (corder-ID):
 *   payment:   OrderPlaced -> PaymentReserved | PaymentDeclined;  OutOfStock, ShippingFailed -> PaymentReleased
 *   inventory: PaymentReserved -> StockReserved | OutOfStock;     ShippingFailed -> StockReleased
 *   shipping:  StockReserved -> Shipped | ShippingFailed
 *
 * The switches that make things go wrong are in the orders themselves, so one run shows every
 * path: payment declines an amount over 1000, inventory has no "unobtainium", and shipping to
 * region "mars" never answers (orchestrated: the step times out) or fails (choreographed).
 * --force makes the role fail (decline, out of stock, shipping failed) or never answer (the
 * saga's step times out) for every order. Replies carry ids made from what they answer, so
 * answering again after a crash appends once.
 */
#include "factum_client.h"

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t stopping;
static factum_str_t S(const char *s) { return (factum_str_t){s, strlen(s)}; }
static void on_signal(int sig) { (void)sig, stopping = 1; }

/* The value of "key" in a flat JSON object, as text (strings without their quotes). */
static void get(factum_str_t json, const char *key, char *out, size_t cap) {
    char k[64];
    snprintf(k, sizeof k, "\"%s\":", key);
    out[0] = 0;
    const char *p = json.ptr ? memmem(json.ptr, json.len, k, strlen(k)) : NULL;
    if (!p) return;
    p += strlen(k);
    while (*p == ' ')
        p++;
    size_t n = 0;
    if (*p == '"') {
        p++;
        while (p[n] && p[n] != '"' && n + 1 < cap)
            n++;
    } else {
        while (p[n] && p[n] != ',' && p[n] != '}' && n + 1 < cap)
            n++;
    }
    memcpy(out, p, n);
    out[n] = 0;
}

typedef struct reply {
    const char *type; /* NULL: no answer */
    char data[400];
} reply;

static const char *force = ""; /* "fail", "timeout" or "" */

/* What the role answers to event e (a command, or in choreography an event it reacts to). */
static reply decide(const char *role, const factum_event_t *e) {
    reply r = {NULL, "{}"};
    char order[128], v[128];
    get(e->data, "orderId", order, sizeof order);
    factum_str_t t = e->type;
#define IS(s) (t.len == strlen(s) && !memcmp(t.ptr, s, t.len))
    if (!strcmp(role, "payment")) {
        get(e->data, "amount", v, sizeof v);
        if (IS("ReservePayment") || IS("OrderPlaced")) {
            r.type = atof(v) > 1000 ? "PaymentDeclined" : "PaymentReserved";
            snprintf(r.data, sizeof r.data, "{\"orderId\":\"%s\",\"paymentId\":\"pay-%s\"}", order, order);
        } else if (IS("ReleasePayment") || IS("OutOfStock") || IS("ShippingFailed")) {
            r.type = "PaymentReleased";
            snprintf(r.data, sizeof r.data, "{\"orderId\":\"%s\"}", order);
        }
    } else if (!strcmp(role, "inventory")) {
        get(e->data, "sku", v, sizeof v);
        if (IS("ReserveStock") || IS("PaymentReserved")) {
            r.type = !strcmp(v, "unobtainium") ? "OutOfStock" : "StockReserved";
            snprintf(r.data, sizeof r.data, "{\"orderId\":\"%s\",\"sku\":\"%s\"}", order, v);
        } else if (IS("ReleaseStock") || IS("ShippingFailed")) {
            r.type = "StockReleased";
            snprintf(r.data, sizeof r.data, "{\"orderId\":\"%s\"}", order);
        }
    } else if (!strcmp(role, "shipping")) {
        get(e->data, "region", v, sizeof v);
        if (IS("Ship"))
            r.type = !strcmp(v, "mars") ? NULL : "Shipped"; /* mars: no answer, the saga times out */
        else if (IS("StockReserved"))
            r.type = !strcmp(v, "mars") ? "ShippingFailed" : "Shipped";
        snprintf(r.data, sizeof r.data, "{\"orderId\":\"%s\",\"region\":\"%s\"}", order, v);
    }
    /* --force: the role's first answer to an order fails, or never comes */
    bool first = IS("ReservePayment") || IS("OrderPlaced") || IS("ReserveStock") || IS("PaymentReserved") ||
                 IS("Ship") || IS("StockReserved");
    if (first && !strcmp(force, "timeout"))
        r.type = NULL;
    else if (first && !strcmp(force, "fail"))
        r.type = !strcmp(role, "payment")     ? "PaymentDeclined"
                 : !strcmp(role, "inventory") ? "OutOfStock"
                                              : "ShippingFailed";
#undef IS
    return r;
}

int main(int argc, char **argv) {
    const char *role = argc > 1 ? argv[1] : "", *url = getenv("FACTUM_URL"), *style = "orchestrated";
    for (int i = 2; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--server"))
            url = argv[i + 1];
        else if (!strcmp(argv[i], "--style"))
            style = argv[i + 1];
        else if (!strcmp(argv[i], "--force"))
            force = argv[i + 1];
    }
    bool choreo = !strcmp(style, "choreographed");
    if ((strcmp(role, "payment") && strcmp(role, "inventory") && strcmp(role, "shipping")) ||
        (!choreo && strcmp(style, "orchestrated")) || (*force && strcmp(force, "fail") && strcmp(force, "timeout"))) {
        fprintf(stderr,
                "usage: order-service payment|inventory|shipping [--server URL] [--style orchestrated|choreographed]\n"
                "                     [--force fail|timeout]\n");
        return 2;
    }
    if (!url) url = "http://127.0.0.1:7744";
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    factum_client_t *c;
    factum_error_t err;
    if (factum_client_new(url, &c, &err)) return fprintf(stderr, "%s\n", err.message), 1;

    /* The consumer group: the role's commands, or the events it reacts to. */
    char group[64], def[512], path[128];
    snprintf(group, sizeof group, "%s-%s", role, choreo ? "choreo" : "svc");
    if (!choreo) {
        snprintf(def, sizeof def, "{\"source\":{\"stream\":\"%s-commands\"},\"start\":\"earliest\"}", role);
    } else {
        const char *types = !strcmp(role, "payment")     ? "\"OrderPlaced\",\"OutOfStock\",\"ShippingFailed\""
                            : !strcmp(role, "inventory") ? "\"PaymentReserved\",\"ShippingFailed\""
                                                         : "\"StockReserved\"";
        snprintf(def, sizeof def,
                 "{\"source\":{\"all\":{\"types\":[%s],\"categories\":[\"corder\"]}},\"start\":\"earliest\"}", types);
    }
    snprintf(path, sizeof path, "/groups/%s", group);
    int status;
    char *resp = NULL;
    for (int tries = 0; factum_client_call(c, "PUT", path, def, &status, &resp, &err); tries++) {
        free(resp), resp = NULL;
        if (tries == 50) return fprintf(stderr, "%s: %s\n", role, err.message), 1;
        usleep(100000);
    }
    free(resp);
    fprintf(stderr, "%s (%s): consuming from group %s\n", role, style, group);

    while (!stopping) {
        factum_events_t *evs;
        factum_delivery_id_t ids[32];
        size_t n;
        if (factum_client_pull(c, group, 32, 1000, &evs, ids, &n, &err)) {
            usleep(200000); /* the server may be restarting: try again */
            continue;
        }
        size_t answered = 0;
        for (; answered < n; answered++) {
            const factum_event_t *e = factum_events_get(evs, answered);
            reply r = decide(role, e);
            if (!r.type) continue;
            char id[300], stream[200], corr[256], cause[256];
            snprintf(id, sizeof id, "%s-answers-%.*s", role, (int)e->id.len, e->id.ptr);
            snprintf(cause, sizeof cause, "%.*s", (int)e->id.len, e->id.ptr);
            if (choreo)
                snprintf(stream, sizeof stream, "%.*s", (int)e->stream.len, e->stream.ptr); /* the order's stream */
            else
                snprintf(stream, sizeof stream, "%s-events", role);
            if (e->correlationid.len)
                snprintf(corr, sizeof corr, "%.*s", (int)e->correlationid.len, e->correlationid.ptr);
            else
                get(e->data, "orderId", corr, sizeof corr);
            char data[1024];
            /* choreography passes the order's facts along: region and sku travel with the events */
            char region[64], sku[64], amount[32];
            get(e->data, "region", region, sizeof region);
            get(e->data, "sku", sku, sizeof sku);
            get(e->data, "amount", amount, sizeof amount);
            snprintf(data, sizeof data, "%.*s,\"region\":\"%s\",\"sku\":\"%s\",\"amount\":%s}", (int)strlen(r.data) - 1,
                     r.data, region, sku, *amount ? amount : "0");
            factum_event_t out = {.type = S(r.type),
                                  .id = S(id),
                                  .correlationid = S(corr),
                                  .causationid = S(cause),
                                  .data = S(data),
                                  .data_format = FACTUM_DATA_JSON};
            if (factum_client_append(c, stream, FACTUM_EXPECT_ANY, &out, 1, NULL, &err))
                break; /* not acknowledged: delivered again */
            printf("%s: %.*s for %s -> %s\n", role, (int)e->type.len, e->type.ptr, corr, r.type);
            fflush(stdout);
        }
        if (factum_client_ack(c, group, ids, answered, &err)) usleep(200000);
        factum_events_free(evs);
    }
    factum_client_free(c);
    return 0;
}
