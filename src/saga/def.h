/*
 * def.h — the saga folder's private view of a definition (def.c): what the machine and the
 * runner read of it, and the template and reply-type helpers they share. Not for other folders:
 * they use saga.h.
 */
#ifndef FACTUM_SAGA_DEF_H
#define FACTUM_SAGA_DEF_H

#include "saga.h"

#define MAX_STEPS 32
#define MAX_TYPES 16

typedef struct command {
    buf_t tmpl; /* {"stream","type","data"} as given */
    char *success[MAX_TYPES], *failure[MAX_TYPES];
    int nsuccess, nfailure;
    uint64_t timeout_ms; /* 0: no timeout */
    bool present;
} command;

typedef struct step {
    char name[64];
    char path[48]; /* where it is in the definition, for messages: steps[1].parallel[0] */
    command cmd, comp;
    int stage; /* steps of one stage run in parallel; stages run one after another */
} step;

struct saga_def {
    char name[SAGA_MAX_NAME + 1];
    buf_t json;
    char start_on[256];
    char instance_id[256]; /* a path into the start event: data.orderId */
    step steps[MAX_STEPS];
    int nsteps;
    int stage_first[MAX_STEPS], stage_n[MAX_STEPS], nstages;
    char *reply_cats[MAX_TYPES]; /* replies come only from streams of these categories (none: any) */
    int nreply_cats;
    char *start_cats[MAX_TYPES]; /* and start events only from these */
    int nstart_cats;
};

/* Whether type is one of v[0..n). */
bool saga_listed(char *const *v, int n, factum_str_t type);
/* Whether type is a reply type of any step of the saga (its command's or its compensation's). */
bool saga_reply_type(const saga_def *d, factum_str_t type);

/* The value at a dotted path (keys, and [n] indexes) in JSON doc; borrowed from doc. */
bool saga_path_get(factum_str_t doc, const char *path, size_t plen, factum_str_t *val, int *kind);
/* Renders template value t (of JSON kind `kind`) against the context ctx, appended to out: a
   string that is exactly "{{path}}" becomes the value there (null when missing); {{path}} inside
   a longer string is replaced by the value's text. */
void saga_render(factum_str_t t, int kind, factum_str_t ctx, buf_t *out);

/* What a command to `stream` of `type` would be: SEND_OK, or why the saga may not send it
   (saga_unsendable[] says it in words). type empty: not known yet (a template); whole false:
   only the text of the stream before a {{path}} is known. */
enum { SEND_OK, SEND_SYSTEM, SEND_STARTS, SEND_ANSWERS };
extern const char *const saga_unsendable[];
int saga_command_kind(const saga_def *d, factum_str_t stream, factum_str_t type, bool whole);

#endif
