/*
 * test_defs.h — one small definition of each kind (a projection, a saga, a consumer group, a
 * schedule an hour away), for the tests of the limits on definitions (test_limits.c, the
 * server's; test_quotas.c, a key's).
 */
#ifndef FACTUM_TEST_DEFS_H
#define FACTUM_TEST_DEFS_H

#define PROJ "{\"handlers\":{\"X\":[\"SELECT 1\"]}}"
#define SAGA                                                                                                           \
    "{\"start_on\":\"OrderPlaced\",\"instance_id\":\"data.orderId\",\"steps\":[{\"name\":\"pay\",\"command\":{"        \
    "\"stream\":\"payment-commands\",\"type\":\"ReservePayment\",\"data\":{\"orderId\":\"{{data.orderId}}\"}},"        \
    "\"success\":[\"PaymentReserved\"],\"failure\":[\"PaymentDeclined\"],\"timeout_ms\":600}]}"
#define GROUP "{\"source\":{\"stream\":\"acct-1\"},\"start\":\"earliest\"}"
#define SCHEDULE "{\"delay_ms\":3600000,\"stream\":\"later\",\"event\":{\"type\":\"Due\",\"data\":{}}}"

#endif
