/*
 * schema.h — JSON Schema (draft 7) for event data: a document is compiled once into a tree of
 * checks (patterns compiled by PCRE2 then), and data is validated against the tree. Which
 * keywords are supported is listed in docs/schemas.md; a document using any other keyword is
 * refused by schema_compile with a message naming it, never half-checked.
 */
#ifndef FACTUM_SCHEMA_H
#define FACTUM_SCHEMA_H

#include "../base/base.h"

#define SCHEMA_MAX_BYTES (256 * 1024) /* a schema document */
#define SCHEMA_MAX_REPORTED 20        /* violations listed per event (all are counted) */

typedef struct schema schema_t;

/* Compiles the document doc (copied: the caller's text may go). 0, or FACTUM_EINVAL with a
   message saying what is wrong and where ("/properties/a: unsupported keyword "format""),
   FACTUM_ETOOBIG past SCHEMA_MAX_BYTES, FACTUM_ENOMEM. */
int schema_compile(factum_str_t doc, schema_t **out, factum_error_t *err);
void schema_free(schema_t *s);
/* The document as compiled (lives as long as s). */
factum_str_t schema_text(const schema_t *s);

/* What a validation found: count violations; json holds the first SCHEMA_MAX_REPORTED as
   elements of a JSON array without brackets: {"pointer":"/a/0","keyword":"type",
   "message":"..."}; first is the first one's one-line text. Caller-owned; reuse after
   schema_report_reset, free with schema_report_free. */
typedef struct schema_report {
    const char *tag; /* NULL, or members put first in each element ("\"event\":2,") */
    size_t count;
    buf_t json;
    char first[200];
} schema_report;
void schema_report_reset(schema_report *r);
void schema_report_free(schema_report *r);

/* True if data (one JSON value, already known valid) satisfies s. rep may be NULL (then it
   stops at the first violation); otherwise the violations are appended to it (pointers are
   JSON pointers into data, "" for data itself). */
bool schema_validate(const schema_t *s, factum_str_t data, schema_report *rep);

/* Forward compatibility (docs/schemas.md): true if every value `newer` accepts, `older` accepts
   too, as far as a structural comparison shows — conservative: a rule of older that newer is not
   seen to keep (as strict or stricter) is a difference. Each difference is added to rep (may be
   NULL: stop at the first) with a JSON pointer into older's document, at the rule, and the
   keyword (compat.c). */
bool schema_forward_compatible(const schema_t *newer, const schema_t *older, schema_report *rep);

/* True if two JSON values are equal as JSON Schema means it: numbers by value (1 == 1.0),
   strings after decoding, objects whatever their members' order. */
bool schema_json_equal(factum_str_t a, int ka, factum_str_t b, int kb);

#endif
