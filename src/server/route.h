/*
 * route.h — the one table of the HTTP API's routes and the matcher that reads it.
 *
 * Every request goes through route_find (route.c): the table names, for each method and path
 * pattern, the handler that answers and the permission it needs. An unknown path is a 404; a
 * known path with a method the table lacks is a 405 whose Allow names exactly the table's
 * methods for that path (HEAD wherever GET is). GET / lists the table, and the OpenAPI contract
 * test (tests/contract/contract.mjs) checks it against docs/openapi.yaml both ways.
 */
#ifndef FACTUM_ROUTE_H
#define FACTUM_ROUTE_H

#include "../auth/keys.h"
#include "../base/base.h"

typedef struct conn conn;

/* Methods, as bits (a route names one; Allow is their union). HEAD is answered by GET routes. */
enum { ROUTE_GET = 1, ROUTE_POST = 2, ROUTE_PUT = 4, ROUTE_DELETE = 8 };

#define ROUTE_MAX_PARAMS 3

/* The {params} of the matched pattern, in order: raw path segments (not percent-decoded, never
   empty, without '/'), borrowed from the request head for as long as the request lives. */
typedef struct route_args {
    factum_str_t p[ROUTE_MAX_PARAMS];
} route_args;

/* Answers the request on c; body is the complete request body (borrowed, as the head). */
typedef void (*route_fn)(conn *c, const route_args *a, factum_str_t body);

typedef struct route {
    unsigned method;     /* one ROUTE_* bit */
    const char *pattern; /* "/groups/{group}/parked/{delivery_id}": literal segments and {params} */
    route_fn fn;
    auth_perm perm; /* what the caller needs (src/auth/keys.h); guard.c checks it before fn runs */
    int cluster;    /* on a cluster follower (forward.c): 0 as its method says (GET here, others on the
                       leader), ROUTE_LOCAL this node's own business, ROUTE_LEADER a GET only the leader serves */
} route;

enum { ROUTE_LOCAL = 1, ROUTE_LEADER = 2 };

extern const route route_table[];
extern const size_t route_count;

/* The method's ROUTE_* bit (GET for HEAD), or 0 for a method no route has. Case-sensitive. */
unsigned route_method(factum_str_t method);

/* The route for method and path (the first in table order whose pattern and method match),
   with its params in *a; or NULL, and *allow the union of the methods whose routes match the
   path (0: no route has the path, a 404). */
const route *route_find(factum_str_t method, factum_str_t path, route_args *a, unsigned *allow);

/* Runs a complete request on c (head and body in place): a CORS preflight, a 404 or 405, the
   guard's 401 or 403 (guard.c), or the table's handler (route.c). */
void api_handle(conn *c, factum_str_t body);

/* "GET", "POST", "PUT" or "DELETE" for one ROUTE_* bit. */
const char *route_method_name(unsigned bit);

/* "GET, HEAD, POST, PUT, DELETE" for the bits of allow, in that order, into out. */
void route_allow_text(unsigned allow, char *out, size_t cap);

#endif
