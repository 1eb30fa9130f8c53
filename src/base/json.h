/*
 * json.h — a strict RFC 8259 JSON scanner that never copies: it validates text and hands back
 * the raw span of each value, so event data can be stored byte for byte. Strings are decoded
 * (escapes, surrogate pairs) only when asked. Rejects: invalid UTF-8, control characters in
 * strings, lone surrogates, leading zeros, trailing commas, nesting deeper than JSON_MAX_DEPTH.
 */
#ifndef FACTUM_JSON_H
#define FACTUM_JSON_H

#include "base.h"

#define JSON_MAX_DEPTH 64

enum { JSON_OBJECT = 1, JSON_ARRAY, JSON_STRING, JSON_NUMBER, JSON_TRUE, JSON_FALSE, JSON_NULL };

typedef struct json_cur {
    const char *s;
    size_t n, i;
    const char *error; /* static message of the first error */
    size_t error_at;   /* byte offset of it */
} json_cur_t;

static inline json_cur_t json_cur(const char *s, size_t n) { return (json_cur_t){s, n, 0, NULL, 0}; }

/* Scans one value at the cursor (after whitespace); span = its raw text, kind = JSON_*. 0 or -1. */
int json_value(json_cur_t *c, factum_str_t *span, int *kind);
/* True if the whole text is exactly one value, with optional surrounding whitespace. */
bool json_valid(const char *s, size_t n, int *kind);
/* True if the text is object members without braces ("a":1,"b":2), or empty. */
bool json_valid_members(const char *s, size_t n);

/* Iterates an object or array span produced by json_value. */
typedef struct json_iter {
    json_cur_t c;
    int first;
    bool bare; /* members without braces: the text's end is the object's */
} json_iter_t;
void json_iter_init(json_iter_t *it, factum_str_t container);
/* Iterates members without braces ("a":1,"b":2), such as an event's extension members. */
void json_iter_init_members(json_iter_t *it, factum_str_t members);
/* Next member: key = raw string span (with quotes); 1 = got one, 0 = end, -1 = error. */
int json_iter_member(json_iter_t *it, factum_str_t *key, factum_str_t *val, int *kind);
/* Next element of an array: 1, 0 or -1. */
int json_iter_element(json_iter_t *it, factum_str_t *val, int *kind);

/* The member `key` of an object span (its raw value and kind); false if there is none. */
bool json_member(factum_str_t obj, const char *key, factum_str_t *val, int *kind);
/* The member `key` as a whole non-negative number (all 64 bits); false if absent or not one. */
bool json_member_u64(factum_str_t obj, const char *key, uint64_t *out);
/* The member `key` as a string, decoded into out (replacing it, NUL-terminated). */
bool json_member_string(factum_str_t obj, const char *key, buf_t *out);
/* True if a raw string span (with quotes) equals the plain name (compares after decoding). */
bool json_key_is(factum_str_t raw, const char *name);
/* 0 if every member of the object obj is named in allowed (NULL-terminated), else FACTUM_EINVAL:
   "WHAT: unknown member "NAME" (it has A, B, ...)". The one rule for what a client sends: a
   member the server does not know is refused, never ignored. */
int json_only_members(factum_str_t obj, const char *what, const char *const *allowed, factum_error_t *err);
/* The number member `key` of obj into *out: dflt when absent; FACTUM_EINVAL ("'KEY' must be ...")
   when it is not a whole number from lo to hi. The one check of a definition's numbers. */
int json_member_u32_in(factum_str_t obj, const char *key, uint64_t lo, uint64_t hi, uint64_t dflt, uint32_t *out,
                       factum_error_t *err);
/* Decodes a raw string span (with quotes) into out (appended). 0 or FACTUM_ENOMEM. */
int json_unescape(factum_str_t raw, buf_t *out);
/* Appends s as a JSON string with quotes, escaping what must be escaped. */
int json_escape(buf_t *out, const char *s, size_t n);

/* The same for text that may not be UTF-8 (from a database): invalid bytes become U+FFFD. */
int json_escape_lossy(buf_t *out, const char *s, size_t n);

/* True if s is valid UTF-8 without control characters (for names and attributes). */
bool text_valid(const char *s, size_t n);

#endif
