/*
 * node.h — the compiled form of a schema, private to src/schema: one node per (sub)schema of
 * the document, each holding the checks its keywords ask for. compile.c builds the tree,
 * validate.c walks it. Spans point into the schema's own copy of the document.
 */
#ifndef FACTUM_SCHEMA_NODE_H
#define FACTUM_SCHEMA_NODE_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include "schema.h"

#include <pcre2.h>

/* Type bits of the "type" keyword (0: any type). */
enum {
    T_NULL = 1,
    T_BOOLEAN = 2,
    T_OBJECT = 4,
    T_ARRAY = 8,
    T_NUMBER = 16,
    T_STRING = 32,
    T_INTEGER = 64,
};

typedef struct node node;

typedef struct named {
    char *name; /* decoded */
    size_t len;
    node *n;      /* the subschema (properties, dependencies as a schema) */
    char **names; /* dependencies as a list of property names */
    size_t nnames;
    pcre2_code *re; /* patternProperties */
} named;

typedef struct nodes {
    node **v;
    size_t n;
} nodes;

enum { FMT_NONE, FMT_DATE_TIME, FMT_DATE, FMT_TIME, FMT_IPV4, FMT_IPV6, FMT_EMAIL };

struct node {
    int boolean; /* -1: an object schema; 0: false; 1: true */
    node *ref;   /* $ref: the target; its siblings are ignored (draft 7) */
    unsigned types;
    bool has_min, has_max, has_xmin, has_xmax, has_mult;
    double min, max, xmin, xmax, mult;
    int64_t min_len, max_len, min_items, max_items, min_props, max_props; /* -1: none */
    pcre2_code *pattern;
    int format;
    bool has_const, unique;
    factum_str_t const_v; /* raw value */
    int const_kind;
    factum_str_t enum_v; /* raw array, len 0: none */
    named *props, *patprops, *deps;
    size_t nprops, npatprops, ndeps;
    char **required;
    size_t nrequired;
    node *addprops, *items, *additems, *contains, *propnames, *not_, *if_, *then_, *else_;
    nodes tuple; /* items as an array */
    bool items_tuple;
    nodes all, any, one;
    factum_str_t span; /* where the node was compiled from */
    node *next_alloc;
};

struct schema {
    char *text;
    size_t len;
    node *root;
    node *allocs; /* every node, for freeing */
};

/* compile.c: the decoded value of a number span. */
double schema_number(factum_str_t s);
/* validate.c: appends "/" and seg escaped as a JSON pointer segment (~0, ~1) to b. */
void schema_pointer_push(buf_t *b, const char *seg, size_t n);
/* validate.c: counts a violation at pointer p, listing it among the first SCHEMA_MAX_REPORTED. */
void schema_report_add(schema_report *r, factum_str_t p, const char *kw, const char *msg);
/* validate.c: whether the JSON value (its span and kind) satisfies node n. */
bool schema_node_accepts(const node *n, factum_str_t value, int kind);

#endif
