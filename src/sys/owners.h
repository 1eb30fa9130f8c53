/*
 * owners.h — who made a definition (docs/limits.md, "Keys"): the id of the API key that made a
 * group, a projection, a saga or a schedule, kept as the "owner" member of its record (absent
 * when it was made without a key), and a small map from owner to how many live definitions it
 * has, so that a key's maximums (max_groups, ...) are checked against a count that replay
 * rebuilds. Redefining keeps the first owner; deleting (a schedule firing or being cancelled)
 * gives the place back.
 *
 * Not thread-safe: the engine that keeps a map guards it with its own lock.
 */
#ifndef FACTUM_SYS_OWNERS_H
#define FACTUM_SYS_OWNERS_H

#include "../base/base.h"

#define OWNER_MAX 16 /* bytes of an owner (a key id, 12 hex) with the NUL; "": nobody */

typedef struct owner_count {
    char id[OWNER_MAX];
    uint64_t n;
} owner_count;

/* Owners with at least one definition, in no order. Zeroed is empty. */
typedef struct owners {
    owner_count *v;
    size_t n, cap;
} owners;

/* Counts one more (delta 1) or one less (-1) for id; nobody ("" or NULL) is not counted. The
   server may stop on out-of-memory (STYLE.md): aborts with a message. */
void owners_add(owners *o, const char *id, int delta);
/* How many live definitions id has (0 for nobody). */
uint64_t owners_count(const owners *o, const char *id);
/* Forgets every count (a reload), keeping the memory; owners_free frees it. */
void owners_clear(owners *o);
void owners_free(owners *o);

/* The "owner" member of a record into out; "" when absent or not a short string. */
void owners_of_record(factum_str_t rec, char out[OWNER_MAX]);
/* Appends ,"owner":"ID" to a record being rendered, nothing for nobody. */
void owners_member(buf_t *b, const char *id);

#endif
