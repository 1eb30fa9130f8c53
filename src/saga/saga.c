/*
 * saga.c — see saga.h. The definition (parsed for what the runner needs; checked, when it is
 * defined, for what it may not be), the instance state machine (a pure function of state and
 * input), and the runner thread that reads inputs from the log in batches, appends what they
 * produce, and writes a checkpoint when one is due.
 */
#include "saga.h"

#include "../base/json.h"

#include <ctype.h>
#include <stdarg.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define MAX_STEPS 32
#define MAX_TYPES 16
#define BATCH 1000
#define CHECKPOINT_EVERY_US 2000000 /* at most one checkpoint this often, and only when one is due: */
#define CHECKPOINT_AFTER 10000      /* positions passed without a decision that make one due */
#define ENDED_KEPT 10000
#define TIMEOUT_TYPE "SagaTimeout"
#define INDEX_BUCKETS 16384

enum { S_RUNNING, S_COMPENSATING, S_COMPLETED, S_FAILED, S_COMP_FAILED };
static const char *const status_names[] = {"running", "compensating", "completed", "failed", "compensation_failed"};

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

typedef struct inst {
    char id[256];
    int status;
    int stage;                 /* running: the stage under way */
    int step;                  /* compensating: the step being compensated */
    uint32_t waiting;          /* running: steps of the stage without an answer yet (bit = step index) */
    uint32_t done;             /* steps that succeeded */
    bool stage_failed;         /* a step of the stage failed: compensation begins once the others answer */
    uint64_t last_input;       /* the position of the last input applied */
    int64_t due_us[MAX_STEPS]; /* when each outstanding command times out, on CLOCK_MONOTONIC (see due_of);
                                  0 none, negative once its marker is sent */
    buf_t sent[MAX_STEPS];     /* each outstanding command as sent, sent again after a restart */
    int64_t started_us, ended_us;
    buf_t ctx;                /* {"id":..,"data":..,"steps":{NAME: reply data, ...}} */
    struct inst *next, *prev; /* the active list */
    struct inst *hnext;       /* the id index */
} inst;

typedef struct ended {
    char id[256];
    int status, step;
    int64_t started_us, ended_us;
} ended;

struct saga {
    factum_t *db;
    saga_def *d;
    pthread_t thread;
    pthread_mutex_t mu;
    bool stop;
    /* under mu */
    inst *active;
    inst *index[INDEX_BUCKETS]; /* the active instances by id */
    ended *ended;
    size_t nended, ended_at;
    uint64_t position;     /* every input before this is done */
    uint64_t recovered_at; /* the checkpoint's position at the last start: writes after it may be half done */
    uint64_t counts[5], parked;
    uint64_t dur[SAGA_DURATION_BUCKETS], dur_n; /* ended instances by duration (start to end) */
    double dur_sum_s;
    /* the runner thread's own */
    uint64_t decisions; /* inputs that wrote something (state records, commands, a parked input) */
    bool keeps_one;     /* $sagacp-NAME has max_count 1 */
    /* the runner's batch */
    pthread_mutex_t wmu;
    pthread_cond_t wcond;
    size_t inflight;
    int write_rc;
};

/* ---- the definition ---- */

bool saga_name_valid(const char *name) {
    size_t n = strlen(name);
    if (!n || n > SAGA_MAX_NAME) return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)name[i]) && !strchr("_-", name[i])) return false;
    return true;
}

static void command_free(command *c) {
    buf_free(&c->tmpl);
    for (int i = 0; i < c->nsuccess; i++)
        free(c->success[i]);
    for (int i = 0; i < c->nfailure; i++)
        free(c->failure[i]);
}

void saga_def_free(saga_def *d) {
    if (!d) return;
    buf_free(&d->json);
    for (int i = 0; i < d->nsteps; i++)
        command_free(&d->steps[i].cmd), command_free(&d->steps[i].comp);
    for (int i = 0; i < d->nreply_cats; i++)
        free(d->reply_cats[i]);
    for (int i = 0; i < d->nstart_cats; i++)
        free(d->start_cats[i]);
    free(d);
}

factum_str_t saga_def_json(const saga_def *d) { return (factum_str_t){d->json.ptr, d->json.len}; }

static int types(factum_str_t obj, const char *key, char **out, int *n, const char *what, factum_error_t *err) {
    factum_str_t v, e;
    int kind, k;
    if (!json_member(obj, key, &v, &kind)) return 0;
    if (kind != JSON_ARRAY) return err_set(err, FACTUM_EINVAL, "%s.%s must be an array of event types", what, key);
    json_iter_t it;
    json_iter_init(&it, v);
    buf_t b = {0};
    while (json_iter_element(&it, &e, &k) == 1) {
        b.len = 0;
        if (k != JSON_STRING || json_unescape(e, &b) || !b.len || b.len > 255 || !text_valid(b.ptr, b.len) ||
            *n == MAX_TYPES) {
            buf_free(&b);
            return err_set(err, FACTUM_EINVAL, "%s.%s: at most %d event types of 1 to 255 characters", what, key,
                           MAX_TYPES);
        }
        out[(*n)++] = strndup(b.ptr, b.len);
    }
    buf_free(&b);
    return 0;
}

/* Refuses a member of object obj that is not in `members` (names separated by ", "), naming it
   as WHAT.KEY; `kind` says what obj is ("a step"). */
static int known_members(factum_str_t obj, const char *what, const char *kind_name, const char *members,
                         factum_error_t *err) {
    json_iter_t it;
    json_iter_init(&it, obj);
    factum_str_t k, v;
    int kind, rc = 0;
    buf_t key = {0};
    while (!rc && json_iter_member(&it, &k, &v, &kind) == 1) {
        key.len = 0;
        bool known = false;
        if (!json_unescape(k, &key) && !buf_append(&key, "", 1) && key.len > 1 && strlen(key.ptr) == key.len - 1 &&
            !strpbrk(key.ptr, ", "))
            for (const char *m = members; !known && (m = strstr(m, key.ptr)); m += key.len - 1)
                known = (m == members || m[-1] == ' ') && (m[key.len - 1] == ',' || !m[key.len - 1]);
        if (!known)
            rc = err_set(err, FACTUM_EINVAL, "%s%s%.*s: unknown member (%s has %s)", what, *what ? "." : "",
                         (int)MIN(k.len - 2, 60), k.ptr + 1, kind_name, members);
    }
    buf_free(&key);
    return rc;
}

static bool listed(char *const *v, int n, factum_str_t type);

/* A command's stream, type and data (the template). */
static int parse_command(factum_str_t obj, const char *what, command *c, factum_error_t *err) {
    int kind;
    factum_str_t v;
    if (!json_member(obj, "stream", &v, &kind) || kind != JSON_STRING || !json_member(obj, "type", &v, &kind) ||
        kind != JSON_STRING)
        return err_set(err, FACTUM_EINVAL, "%s needs a stream and a type (strings; {{path}} takes a value of the saga)",
                       what);
    if (json_member(obj, "data", &v, &kind) && kind != JSON_OBJECT && kind != JSON_ARRAY)
        return err_set(err, FACTUM_EINVAL, "%s.data must be an object or an array", what);
    c->present = true;
    buf_append(&c->tmpl, obj.ptr, obj.len);
    return 0;
}

/* What answers a command: success, failure and timeout_ms, members of obj. */
static int parse_replies(factum_str_t obj, const char *what, command *c, factum_error_t *err) {
    int kind, rc;
    factum_str_t v;
    if ((rc = types(obj, "success", c->success, &c->nsuccess, what, err)) ||
        (rc = types(obj, "failure", c->failure, &c->nfailure, what, err)))
        return rc;
    if (json_member(obj, "timeout_ms", &v, &kind) && !json_member_u64(obj, "timeout_ms", &c->timeout_ms))
        return err_set(err, FACTUM_EINVAL, "%s.timeout_ms must be a whole number", what);
    return 0;
}

static int parse_step(factum_str_t s, step *st, factum_error_t *err) {
    const char *what = st->path;
    buf_t name = {0};
    factum_str_t c;
    int kind, rc;
    if (!json_member_string(s, "name", &name) || !name.len || name.len >= sizeof st->name || strchr(name.ptr, '.')) {
        buf_free(&name);
        return err_set(err, FACTUM_EINVAL, "%s.name must be 1 to %zu characters without '.'", what,
                       sizeof st->name - 1);
    }
    snprintf(st->name, sizeof st->name, "%s", name.ptr);
    buf_free(&name);
    if (!json_member(s, "command", &c, &kind) || kind != JSON_OBJECT)
        return err_set(err, FACTUM_EINVAL, "%s.command must be an object", what);
    char w2[96];
    snprintf(w2, sizeof w2, "%s.command", what);
    if ((rc = parse_command(c, w2, &st->cmd, err)) || (rc = parse_replies(s, what, &st->cmd, err))) return rc;
    if (!st->cmd.nsuccess)
        return err_set(err, FACTUM_EINVAL, "%s.success must name the reply types that mean success", what);
    if (json_member(s, "compensation", &c, &kind)) {
        if (kind != JSON_OBJECT) return err_set(err, FACTUM_EINVAL, "%s.compensation must be an object", what);
        snprintf(w2, sizeof w2, "%s.compensation", what);
        if ((rc = parse_command(c, w2, &st->comp, err)) || (rc = parse_replies(c, w2, &st->comp, err))) return rc;
    }
    return 0;
}

/* One element of steps: a step, or {"parallel": [step, ...]} whose steps all run at once. */
static int parse_stage(saga_def *d, factum_str_t s, factum_error_t *err) {
    factum_str_t par, one;
    int kind, rc = 0, g = d->nstages;
    char what[32];
    snprintf(what, sizeof what, "steps[%d]", g);
    d->stage_first[g] = d->nsteps;
    if (json_member(s, "parallel", &par, &kind)) {
        if (kind != JSON_ARRAY) return err_set(err, FACTUM_EINVAL, "%s.parallel must be an array of steps", what);
        json_iter_t it;
        json_iter_init(&it, par);
        for (int p = 0; !rc && json_iter_element(&it, &one, &kind) == 1; p++) {
            step *st = &d->steps[d->nsteps];
            if (d->nsteps == MAX_STEPS) return err_set(err, FACTUM_EINVAL, "at most %d steps", MAX_STEPS);
            snprintf(st->path, sizeof st->path, "%s.parallel[%d]", what, p);
            if (kind != JSON_OBJECT) return err_set(err, FACTUM_EINVAL, "%s must be an object", st->path);
            st->stage = g;
            rc = parse_step(one, st, err), d->nsteps++;
        }
        if (!rc && d->nsteps == d->stage_first[g])
            rc = err_set(err, FACTUM_EINVAL, "%s: a parallel group needs at least one step", what);
    } else {
        step *st = &d->steps[d->nsteps];
        snprintf(st->path, sizeof st->path, "%s", what);
        st->stage = g;
        rc = parse_step(s, st, err), d->nsteps++;
    }
    d->stage_n[g] = d->nsteps - d->stage_first[g];
    d->nstages++;
    return rc;
}

int saga_def_parse(const char *name, factum_str_t body, saga_def **out, factum_error_t *err) {
    *out = NULL;
    int kind;
    if (!saga_name_valid(name))
        return err_set(err, FACTUM_EINVAL, "a saga name is 1 to %d letters, digits, '_' or '-'", SAGA_MAX_NAME);
    if (!json_valid(body.ptr, body.len, &kind) || kind != JSON_OBJECT)
        return err_set(err, FACTUM_EINVAL, "a saga definition is a JSON object");
    saga_def *d = calloc(1, sizeof *d);
    if (!d) return err_set(err, FACTUM_ENOMEM, "out of memory");
    snprintf(d->name, sizeof d->name, "%s", name);
    buf_append(&d->json, body.ptr, body.len);
    buf_t b = {0};
    int rc = 0;
    factum_str_t v;
    json_iter_t it;
    rc = known_members(body, "", "a saga", "start_on, instance_id, steps, start_categories, reply_categories", err);
    if (!rc) rc = types(body, "reply_categories", d->reply_cats, &d->nreply_cats, "the saga", err);
    if (!rc) rc = types(body, "start_categories", d->start_cats, &d->nstart_cats, "the saga", err);
    if (!rc && (!json_member_string(body, "start_on", &b) || !b.len || b.len >= sizeof d->start_on))
        rc = err_set(err, FACTUM_EINVAL, "start_on must be the event type that starts an instance");
    if (!rc) snprintf(d->start_on, sizeof d->start_on, "%s", b.ptr);
    b.len = 0;
    if (!rc && (!json_member_string(body, "instance_id", &b) || !b.len || b.len >= sizeof d->instance_id))
        rc = err_set(err, FACTUM_EINVAL, "instance_id must be a path into the start event, such as data.orderId");
    if (!rc) snprintf(d->instance_id, sizeof d->instance_id, "%s", b.ptr);
    buf_free(&b);
    if (!rc && (!json_member(body, "steps", &v, &kind) || kind != JSON_ARRAY))
        rc = err_set(err, FACTUM_EINVAL, "steps must be an array");
    if (!rc) {
        json_iter_init(&it, v);
        factum_str_t s;
        while (!rc && json_iter_element(&it, &s, &kind) == 1) {
            if (d->nsteps == MAX_STEPS)
                rc = err_set(err, FACTUM_EINVAL, "at most %d steps", MAX_STEPS);
            else if (kind != JSON_OBJECT)
                rc = err_set(err, FACTUM_EINVAL, "steps[%d] must be an object", d->nstages);
            else
                rc = parse_stage(d, s, err);
        }
        for (int g = 0; !rc && g < d->nstages; g++) /* a reply must name one step of its stage */
            for (int a = d->stage_first[g]; !rc && a < d->stage_first[g] + d->stage_n[g]; a++)
                for (int o = a + 1; !rc && o < d->stage_first[g] + d->stage_n[g]; o++)
                    for (int r = 0; !rc && r < d->steps[o].cmd.nsuccess + d->steps[o].cmd.nfailure; r++) {
                        const command *c = &d->steps[o].cmd;
                        const char *t = r < c->nsuccess ? c->success[r] : c->failure[r - c->nsuccess];
                        if (listed(d->steps[a].cmd.success, d->steps[a].cmd.nsuccess, str_c(t)) ||
                            listed(d->steps[a].cmd.failure, d->steps[a].cmd.nfailure, str_c(t)))
                            rc = err_set(err, FACTUM_EINVAL, "parallel steps %s and %s both take reply %s",
                                         d->steps[a].name, d->steps[o].name, t);
                    }
        for (int i = 0; !rc && i < d->nsteps; i++)
            for (int j = 0; j < i; j++)
                if (!strcmp(d->steps[i].name, d->steps[j].name))
                    rc = err_set(err, FACTUM_EINVAL, "two steps are named %s", d->steps[i].name);
        if (!rc && !d->nsteps) rc = err_set(err, FACTUM_EINVAL, "a saga has at least one step");
    }
    if (rc) {
        saga_def_free(d);
        return rc;
    }
    *out = d;
    return 0;
}

/* ---- paths and templates ---- */

/* The value at a dotted path (keys, and [n] indexes) in JSON doc. */
static bool path_get(factum_str_t doc, const char *path, size_t plen, factum_str_t *val, int *kind) {
    json_cur_t c = json_cur(doc.ptr, doc.len);
    if (json_value(&c, val, kind)) return false;
    size_t i = 0;
    while (i < plen) {
        if (path[i] == '.') i++;
        size_t s = i;
        bool index = path[i] == '[';
        if (index) s = ++i;
        while (i < plen && path[i] != '.' && path[i] != '[' && path[i] != ']')
            i++;
        factum_str_t key = {path + s, i - s};
        if (index && i < plen && path[i] == ']') i++;
        json_iter_t it;
        json_iter_init(&it, *val);
        factum_str_t k, v;
        int vk;
        bool found = false;
        if (index) {
            uint64_t want;
            if (*kind != JSON_ARRAY || !str_u64(key, &want)) return false;
            for (uint64_t n = 0; !found && json_iter_element(&it, &v, &vk) == 1; n++)
                if (n == want) found = true, *val = v, *kind = vk;
        } else {
            if (*kind != JSON_OBJECT) return false;
            while (!found && json_iter_member(&it, &k, &v, &vk) == 1)
                if (k.len == key.len + 2 && !memcmp(k.ptr + 1, key.ptr, key.len)) found = true, *val = v, *kind = vk;
        }
        if (!found) return false;
    }
    return true;
}

/* The path of a template string (raw, with quotes) that is exactly "{{path}}"; false if it is not one. */
static bool whole_path(factum_str_t t, factum_str_t *path) {
    const char *s = t.ptr + 1, *e = t.ptr + t.len - 1;
    if (e - s <= 4 || memcmp(s, "{{", 2) || memcmp(e - 2, "}}", 2) || memmem(s + 2, (size_t)(e - s - 4), "{{", 2))
        return false;
    *path = (factum_str_t){s + 2, (size_t)(e - s - 4)};
    return true;
}

/* The next {{path}} in the text [s, e): where it opens, and its path (the text goes on after
   path.ptr + path.len + 2); NULL when there is none. */
static const char *next_path(const char *s, const char *e, factum_str_t *path) {
    const char *open = memmem(s, (size_t)(e - s), "{{", 2);
    const char *close = open ? memmem(open, (size_t)(e - open), "}}", 2) : NULL;
    if (!close) return NULL;
    *path = (factum_str_t){open + 2, (size_t)(close - open - 2)};
    return open;
}

/* Renders a template value: a string that is exactly "{{path}}" becomes the value there (null
   when missing); {{path}} inside a longer string is replaced by the value's text. */
static void render(factum_str_t t, int kind, factum_str_t ctx, buf_t *out) {
    json_iter_t it;
    factum_str_t k, v, p;
    int vk;
    if (kind == JSON_OBJECT || kind == JSON_ARRAY) {
        buf_append(out, kind == JSON_OBJECT ? "{" : "[", 1);
        json_iter_init(&it, t);
        bool first = true;
        while (kind == JSON_OBJECT ? json_iter_member(&it, &k, &v, &vk) == 1 : json_iter_element(&it, &v, &vk) == 1) {
            if (!first) buf_append(out, ",", 1);
            first = false;
            if (kind == JSON_OBJECT) buf_append(out, k.ptr, k.len), buf_append(out, ":", 1);
            render(v, vk, ctx, out);
        }
        buf_append(out, kind == JSON_OBJECT ? "}" : "]", 1);
        return;
    }
    if (kind != JSON_STRING) {
        buf_append(out, t.ptr, t.len);
        return;
    }
    if (whole_path(t, &p)) {
        if (path_get(ctx, p.ptr, p.len, &v, &vk))
            buf_append(out, v.ptr, v.len);
        else
            buf_append(out, "null", 4);
        return;
    }
    const char *s = t.ptr + 1, *e = t.ptr + t.len - 1, *open;
    buf_append(out, "\"", 1);
    for (; (open = next_path(s, e, &p)); s = p.ptr + p.len + 2) {
        buf_append(out, s, (size_t)(open - s));
        if (path_get(ctx, p.ptr, p.len, &v, &vk)) {
            if (vk == JSON_STRING)
                buf_append(out, v.ptr + 1, v.len - 2);
            else if (vk != JSON_NULL && vk != JSON_OBJECT && vk != JSON_ARRAY)
                buf_append(out, v.ptr, v.len);
        }
    }
    buf_append(out, s, (size_t)(e - s));
    buf_append(out, "\"", 1);
}

/* ---- what a definition may not do ---- */

static bool reply_type(const saga_def *d, factum_str_t type);

/* Whether events of `stream` belong to one of the categories cats (none: every stream). When
   only the text before a {{path}} is known (whole false), -1 if that does not decide it. */
static int in_categories(char *const *cats, int n, factum_str_t stream, bool whole) {
    if (!n) return 1;
    if (!whole && !memchr(stream.ptr, '-', stream.len)) return -1;
    for (int k = 0; k < n; k++)
        if (stream_in_category(stream, str_c(cats[k]))) return 1;
    return 0;
}

/* Commands the saga would read back as its own input, or may not write. */
enum { SEND_OK, SEND_SYSTEM, SEND_STARTS, SEND_ANSWERS };
static const char *const unsendable[] = {
    NULL,
    "a command cannot go to a system stream",
    "its type is start_on and its stream one the saga starts from: each command would start another instance",
    "its type is a reply type of the saga and its stream one the saga takes replies from: the command would answer "
    "itself",
};

/* What a command to stream of type would be (SEND_*). type empty: not known yet (a template). */
static int command_kind(const saga_def *d, factum_str_t stream, factum_str_t type, bool whole) {
    if (stream.len && stream.ptr[0] == '$') return SEND_SYSTEM;
    if (type.len && str_eq(type, str_c(d->start_on)) &&
        in_categories(d->start_cats, d->nstart_cats, stream, whole) == 1)
        return SEND_STARTS;
    if (type.len && reply_type(d, type) && in_categories(d->reply_cats, d->nreply_cats, stream, whole) == 1)
        return SEND_ANSWERS;
    return SEND_OK;
}

/* A command's template: its stream and type as far as they are known before rendering. */
static int check_command(const saga_def *d, const command *c, const char *what, factum_error_t *err) {
    buf_t stream = {0}, type = {0};
    factum_str_t tmpl = {c->tmpl.ptr, c->tmpl.len};
    json_member_string(tmpl, "stream", &stream), json_member_string(tmpl, "type", &type);
    const char *open = strstr(stream.ptr, "{{");
    factum_str_t st = {stream.ptr, open ? (size_t)(open - stream.ptr) : stream.len};
    factum_str_t ty = strstr(type.ptr, "{{") ? (factum_str_t){0} : (factum_str_t){type.ptr, type.len};
    int why = command_kind(d, st, ty, !open), rc = 0;
    if (why)
        rc = err_set(err, FACTUM_EINVAL, "%s.%s: %s (stream %.100s, type %.100s)", what,
                     why == SEND_SYSTEM ? "stream" : "type", unsendable[why], stream.ptr, type.ptr);
    buf_free(&stream), buf_free(&type);
    return rc;
}

/* One {{path}} of step k's command (or compensation): it must name something the context has
   when the command is rendered: id, data, or steps.NAME of a step that has answered by then —
   one of an earlier stage (a compensation runs later: any step). */
static int check_path(const saga_def *d, int k, bool comp, factum_str_t p, const char *what, factum_error_t *err) {
    size_t r = 0;
    while (r < p.len && p.ptr[r] != '.' && p.ptr[r] != '[')
        r++;
    factum_str_t root = {p.ptr, r};
    int n = (int)MIN(p.len, 100);
    if (str_eq(root, str_c("id")) || str_eq(root, str_c("data"))) return 0;
    if (!str_eq(root, str_c("steps")))
        return err_set(err, FACTUM_EINVAL, "%s: {{%.*s}} names nothing (a path starts with id, data or steps)", what, n,
                       p.ptr);
    if (r == p.len) return 0;
    if (p.ptr[r] != '.') return err_set(err, FACTUM_EINVAL, "%s: {{%.*s}}: steps.NAME names a step", what, n, p.ptr);
    size_t b = ++r;
    while (r < p.len && p.ptr[r] != '.' && p.ptr[r] != '[')
        r++;
    factum_str_t name = {p.ptr + b, r - b};
    for (int j = 0; j < d->nsteps; j++) {
        if (!str_eq(name, str_c(d->steps[j].name))) continue;
        if (!comp && d->steps[j].stage >= d->steps[k].stage)
            return err_set(err, FACTUM_EINVAL,
                           "%s: {{%.*s}}: step %s has not answered when this command is sent (only earlier steps have)",
                           what, n, p.ptr, d->steps[j].name);
        return 0;
    }
    return err_set(err, FACTUM_EINVAL, "%s: {{%.*s}}: there is no step %.*s", what, n, p.ptr, (int)MIN(name.len, 64),
                   name.ptr);
}

/* Every {{path}} in the strings of template value t. */
static int check_paths(const saga_def *d, int k, bool comp, factum_str_t t, int kind, const char *what,
                       factum_error_t *err) {
    json_iter_t it;
    factum_str_t key, v, p;
    int vk, rc = 0;
    if (kind == JSON_OBJECT || kind == JSON_ARRAY) {
        json_iter_init(&it, t);
        while (!rc &&
               (kind == JSON_OBJECT ? json_iter_member(&it, &key, &v, &vk) == 1 : json_iter_element(&it, &v, &vk) == 1))
            rc = check_paths(d, k, comp, v, vk, what, err);
        return rc;
    }
    if (kind != JSON_STRING) return 0;
    if (whole_path(t, &p)) return check_path(d, k, comp, p, what, err);
    for (const char *s = t.ptr + 1, *e = t.ptr + t.len - 1; !rc && next_path(s, e, &p); s = p.ptr + p.len + 2)
        rc = check_path(d, k, comp, p, what, err);
    return rc;
}

/* What parsing one member at a time cannot see: a step's command and compensation against the
   rest of the saga. */
static int check_step(const saga_def *d, int k, factum_error_t *err) {
    const step *st = &d->steps[k];
    char what[96];
    int rc = 0;
    if (!saga_name_valid(st->name) ||
        strlen(st->name) >= sizeof st->name) /* it is in JSON records and command ids as it is */
        return err_set(err, FACTUM_EINVAL, "%s.name must be 1 to %zu letters, digits, '_' or '-'", st->path,
                       sizeof st->name - 1);
    for (int comp = 0; !rc && comp < 2; comp++) {
        const command *c = comp ? &st->comp : &st->cmd;
        if (!c->present) continue;
        snprintf(what, sizeof what, "%s.%s", st->path, comp ? "compensation" : "command");
        const char *replies = comp ? what : st->path; /* the step's own success and failure answer its command */
        for (int r = 0; !rc && r < c->nsuccess + c->nfailure; r++) {
            const char *t = r < c->nsuccess ? c->success[r] : c->failure[r - c->nsuccess];
            if (!strcmp(t, d->start_on))
                rc = err_set(err, FACTUM_EINVAL,
                             "%s.%s: %s is start_on: it would start an instance, never answer a step", replies,
                             r < c->nsuccess ? "success" : "failure", t);
            else if (r >= c->nsuccess && listed(c->success, c->nsuccess, str_c(t)))
                rc = err_set(err, FACTUM_EINVAL, "%s.failure: %s is in success too (a reply means one or the other)",
                             replies, t);
        }
        if (!rc) rc = check_command(d, c, what, err);
        if (!rc) rc = check_paths(d, k, comp, (factum_str_t){c->tmpl.ptr, c->tmpl.len}, JSON_OBJECT, what, err);
    }
    return rc;
}

/* The members of step object s (at `what`), of its command and of its compensation. */
static int check_step_members(factum_str_t s, const char *what, factum_error_t *err) {
    factum_str_t c;
    int kind, rc;
    char w2[96];
    if ((rc = known_members(s, what, "a step", "name, command, success, failure, timeout_ms, compensation", err)))
        return rc;
    snprintf(w2, sizeof w2, "%s.command", what);
    if (json_member(s, "command", &c, &kind) && (rc = known_members(c, w2, "a command", "stream, type, data", err)))
        return rc;
    snprintf(w2, sizeof w2, "%s.compensation", what);
    if (json_member(s, "compensation", &c, &kind) &&
        (rc = known_members(c, w2, "a compensation", "stream, type, data, success, failure, timeout_ms", err)))
        return rc;
    return 0;
}

int saga_def_check(const saga_def *d, factum_error_t *err) {
    factum_str_t steps, one, par, el;
    int kind, rc = 0, k = 0;
    json_iter_t it, pit;
    json_member((factum_str_t){d->json.ptr, d->json.len}, "steps", &steps, &kind);
    json_iter_init(&it, steps);
    for (int g = 0; !rc && json_iter_element(&it, &one, &kind) == 1; g++) {
        if (!json_member(one, "parallel", &par, &kind)) {
            rc = check_step_members(one, d->steps[k++].path, err);
            continue;
        }
        char what[32];
        snprintf(what, sizeof what, "steps[%d]", g);
        rc = known_members(one, what, "a parallel group", "parallel", err);
        json_iter_init(&pit, par);
        while (!rc && json_iter_element(&pit, &el, &kind) == 1)
            rc = check_step_members(el, d->steps[k++].path, err);
    }
    for (k = 0; !rc && k < d->nsteps; k++)
        rc = check_step(d, k, err);
    return rc;
}

/* ---- instances ---- */

static bool listed(char *const *v, int n, factum_str_t type) {
    for (int i = 0; i < n; i++)
        if (str_eq(type, str_c(v[i]))) return true;
    return false;
}

static size_t bucket_of(const char *id) { return hash64(id, strlen(id), 0) % INDEX_BUCKETS; }

static inst *find(saga *s, const char *id) {
    for (inst *i = s->index[bucket_of(id)]; i; i = i->hnext)
        if (!strcmp(i->id, id)) return i;
    return NULL;
}

/* Adds i to the active instances (call with mu held). */
static void activate(saga *s, inst *i) {
    i->prev = NULL, i->next = s->active;
    if (s->active) s->active->prev = i;
    s->active = i;
    size_t b = bucket_of(i->id);
    i->hnext = s->index[b], s->index[b] = i;
    s->counts[i->status]++;
}

/* Takes i out of the active instances (call with mu held; counts are the caller's). */
static void deactivate(saga *s, inst *i) {
    if (i->prev)
        i->prev->next = i->next;
    else
        s->active = i->next;
    if (i->next) i->next->prev = i->prev;
    for (inst **p = &s->index[bucket_of(i->id)]; *p; p = &(*p)->hnext)
        if (*p == i) {
            *p = i->hnext;
            break;
        }
}

static void inst_free(inst *i) {
    buf_free(&i->ctx);
    for (int k = 0; k < MAX_STEPS; k++)
        buf_free(&i->sent[k]);
    free(i);
}

/* The step an instance is at, for people: the first one waiting, or the one compensated. */
static int shown_step(const saga_def *d, const inst *i) {
    if (i->status == S_COMPENSATING) return i->step;
    for (int k = 0; k < d->nsteps; k++)
        if (i->waiting & (1u << k)) return k;
    return i->status == S_COMPLETED ? -1 : MIN(d->stage_first[MIN(i->stage, d->nstages - 1)], d->nsteps - 1);
}

static void state_stream(const saga *s, const char *id, buf_t *out) {
    out->len = 0;
    buf_printf(out, "$saga-%s-%s", s->d->name, id);
}

/* What one input produces: state records for the instance, and at most one command. */
#define MAX_RECS (MAX_STEPS + 4)
typedef struct record {
    const char *type;
    char id[48];
    buf_t data;
} record;

typedef struct output {
    record recs[MAX_RECS];
    int nrecs;
    struct {
        buf_t body; /* {"id","cause","command":{"stream","type","data"}} */
    } cmds[MAX_STEPS + 1];
    int ncmds;
} output;

/* Adds a state record {"input": P, MEMBERS}; members is JSON members text (or NULL). */
static void rec(output *o, const char *type, uint64_t input, const char *members, size_t len) {
    record *r = &o->recs[o->nrecs];
    r->type = type;
    snprintf(r->id, sizeof r->id, "in-%llu-%d", (unsigned long long)input, o->nrecs);
    r->data.len = 0;
    buf_printf(&r->data, "{\"input\":%llu", (unsigned long long)input);
    if (members && len) buf_append(&r->data, ",", 1), buf_append(&r->data, members, len);
    buf_append(&r->data, "}", 1);
    o->nrecs++;
}

static void recf(output *o, const char *type, uint64_t input, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void recf(output *o, const char *type, uint64_t input, const char *fmt, ...) {
    char tmp[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    rec(o, type, input, tmp, (size_t)MIN(n, (int)sizeof tmp - 1));
}

/* Whether command ev, rendered as cmd ({"stream","type","data"}), can be appended; why not into
   err. Beyond what the store checks (its id, type, data, stream name): not into a system stream,
   nor one deleted for ever, nor one the saga would read back as its own start or reply. */
static bool sendable(saga *s, factum_str_t cmd, factum_event_t *ev, factum_error_t *err) {
    buf_t stream = {0}, type = {0};
    factum_str_t data = {0};
    int kind;
    bool ok = json_member_string(cmd, "stream", &stream) && json_member_string(cmd, "type", &type);
    if (!ok) err_set(err, FACTUM_EINVAL, "its stream and type must be strings");
    json_member(cmd, "data", &data, &kind);
    factum_str_t st = {stream.ptr, stream.len};
    ev->type = (factum_str_t){type.ptr, type.len}, ev->data = data,
    ev->data_format = data.len ? FACTUM_DATA_JSON : FACTUM_DATA_NONE;
    ok = ok && !factum_stream_name_check(st, err) && !factum_events_check(s->db, ev, 1, err);
    int why = ok ? command_kind(s->d, st, ev->type, true) : SEND_OK;
    if (why) ok = false, err_set(err, FACTUM_EINVAL, "%s", unsendable[why]);
    factum_meta_t m;
    if (ok && !factum_meta_get(s->db, st, &m, NULL)) {
        if (m.tombstone) ok = false, err_set(err, FACTUM_EDELETED, "its stream %s is deleted for ever", stream.ptr);
        factum_meta_free(&m);
    }
    buf_free(&stream), buf_free(&type);
    return ok;
}

/* A StepFailed or CompensationFailed record of step `name`, with the reason (any text). */
static void failed_rec(output *o, const char *type, uint64_t input, const char *name, const char *reason) {
    buf_t m = {0};
    buf_printf(&m, "\"step\":\"%s\",\"reason\":", name);
    json_escape(&m, reason, strlen(reason));
    rec(o, type, input, m.ptr, m.len);
    buf_free(&m);
}

/* Adds a state record as rec() does if the store takes it as it is; if not, nothing, and why into err. */
static bool rec_fits(saga *s, output *o, const char *type, uint64_t input, const buf_t *m, factum_error_t *err) {
    rec(o, type, input, m->ptr, m->len);
    const record *r = &o->recs[o->nrecs - 1];
    factum_event_t ev = {
        .type = str_c(type), .id = str_c(r->id), .data = {r->data.ptr, r->data.len}, .data_format = FACTUM_DATA_JSON};
    if (!factum_events_check(s->db, &ev, 1, err)) return true;
    o->nrecs--;
    return false;
}

/*
 * When a command recorded with deadline_us times out, on CLOCK_MONOTONIC. The record keeps the
 * wall clock (its input's commit time + timeout_ms: decided from the input alone, the same on
 * every replay); waiting uses what is left of it by the wall clock now, but at most timeout_ms,
 * so a wall clock stepped back (or commit times held back by such a step) never holds a timeout
 * back, and never less than 0. After that, stepping the wall clock changes nothing. 0: none.
 */
static int64_t due_of(int64_t deadline_us, uint64_t timeout_ms) {
    if (deadline_us <= 0 || !timeout_ms) return 0;
    int64_t left =
        MAX(0, MIN(deadline_us - clock_realtime_us(), (int64_t)MIN(timeout_ms, (uint64_t)INT64_MAX / 2000) * 1000));
    return MAX(1, clock_mono_us() + left);
}

/* Sends command c of step k (the step's, or its compensation); false, with the step failed on
   the record, if the command as rendered cannot be sent (a bad stream name, an id past 255
   bytes, a record of it past the data limit, ...): the same input always renders the same
   command, so this is decided, not retried. */
static bool send(saga *s, inst *i, int k, bool comp, const factum_event_t *e, output *o) {
    const command *c = comp ? &s->d->steps[k].comp : &s->d->steps[k].cmd;
    const char *name = s->d->steps[k].name;
    buf_t cmd = {0}, id = {0}, sent = {0}, m = {0};
    render((factum_str_t){c->tmpl.ptr, c->tmpl.len}, JSON_OBJECT, (factum_str_t){i->ctx.ptr, i->ctx.len}, &cmd);
    buf_printf(&id, "saga-%s-%s-%s-%s", s->d->name, i->id, name, comp ? "compensate" : "do");
    int64_t deadline_us = c->timeout_ms ? e->time_us + (int64_t)c->timeout_ms * 1000 : 0;
    factum_event_t ev = {.id = {id.ptr, id.len}, .correlationid = str_c(i->id), .causationid = e->id};
    factum_error_t why;
    bool ok = sendable(s, (factum_str_t){cmd.ptr, cmd.len}, &ev, &why);
    if (ok) {
        buf_append(&sent, "{\"id\":", 6);
        json_escape(&sent, id.ptr, id.len);
        buf_append(&sent, ",\"cause\":", 9);
        json_escape(&sent, e->id.ptr, e->id.len);
        buf_printf(&sent, ",\"command\":%.*s}", (int)cmd.len, cmd.ptr);
        buf_printf(&m, "\"step\":\"%s\",\"deadline_us\":%lld,\"sent\":", name, (long long)deadline_us);
        buf_append(&m, sent.ptr, sent.len);
        ok = rec_fits(s, o, comp ? "CompensationStarted" : "StepStarted", e->position, &m, &why);
    }
    if (ok) {
        i->due_us[k] = due_of(deadline_us, c->timeout_ms);
        i->sent[k].len = 0;
        buf_append(&i->sent[k], sent.ptr, sent.len);
        buf_t *b = &o->cmds[o->ncmds++].body;
        b->len = 0;
        buf_append(b, sent.ptr, sent.len);
    } else {
        char r[400];
        snprintf(r, sizeof r, "the command cannot be sent: %s", why.message);
        failed_rec(o, comp ? "CompensationFailed" : "StepFailed", e->position, name, r);
    }
    buf_free(&cmd), buf_free(&id), buf_free(&sent), buf_free(&m);
    return ok;
}

/* A step is answered (or timed out): nothing outstanding for it any more. */
static void settled(inst *i, int k) {
    i->due_us[k] = 0;
    i->sent[k].len = 0;
    i->waiting &= ~(1u << k);
}

/* Sends the commands of stage g, all at once. */
static void compensate_from(saga *s, inst *i, int from, const factum_event_t *e, output *o);

static void start_stage(saga *s, inst *i, int g, const factum_event_t *e, output *o) {
    i->status = S_RUNNING, i->stage = g, i->stage_failed = false;
    for (int k = s->d->stage_first[g]; k < s->d->stage_first[g] + s->d->stage_n[g]; k++) {
        if (send(s, i, k, false, e, o))
            i->waiting |= 1u << k;
        else
            i->stage_failed = true;
    }
    if (!i->waiting) compensate_from(s, i, s->d->nsteps - 1, e, o); /* every command of the stage failed to go */
}

/* Compensates the steps that succeeded, from step `from` down; ends the instance when none is left. */
static void compensate_from(saga *s, inst *i, int from, const factum_event_t *e, output *o) {
    for (int k = from; k >= 0; k--) {
        if (!(i->done & (1u << k)) || !s->d->steps[k].comp.present) continue;
        i->status = S_COMPENSATING, i->step = k;
        if (!send(s, i, k, true, e, o)) {
            i->status = S_COMP_FAILED;
            rec(o, "SagaCompensationFailed", e->position, NULL, 0);
            return;
        }
        if (s->d->steps[k].comp.nsuccess) return; /* wait for its confirmation */
        settled(i, k);
        recf(o, "CompensationSucceeded", e->position, "\"step\":\"%s\",\"unconfirmed\":true", s->d->steps[k].name);
    }
    i->status = S_FAILED;
    rec(o, "SagaFailed", e->position, NULL, 0);
}

/* The step of the running stage whose replies include type, or -1. */
static int branch_of(const saga *s, const inst *i, factum_str_t type) {
    for (int k = 0; k < s->d->nsteps; k++) {
        const step *st = &s->d->steps[k];
        if ((i->waiting & (1u << k)) &&
            (listed(st->cmd.success, st->cmd.nsuccess, type) || listed(st->cmd.failure, st->cmd.nfailure, type)))
            return k;
    }
    return -1;
}

/* Applies a reply to step k of instance i (timeout: step k timed out). */
static void on_reply(saga *s, inst *i, int k, const factum_event_t *e, bool timeout, output *o) {
    const step *st = &s->d->steps[k];
    char why[400];
    if (timeout)
        snprintf(why, sizeof why, "timed out");
    else
        snprintf(why, sizeof why, "reply %.*s", (int)MIN(e->type.len, 255), e->type.ptr);
    if (i->status == S_RUNNING) {
        settled(i, k);
        bool ok = !timeout && listed(st->cmd.success, st->cmd.nsuccess, e->type);
        if (ok) {
            /* The reply's data joins the context as steps.NAME, if the record of it can be written. */
            buf_t nc = {0}, m = {0};
            factum_str_t data = e->data_format == FACTUM_DATA_JSON && e->data.len ? e->data : str_c("null");
            buf_append(&nc, i->ctx.ptr, i->ctx.len - 2); /* drop "}}" of steps and the whole */
            buf_printf(&nc, "%s\"%s\":%.*s}}", i->ctx.ptr[i->ctx.len - 3] == '{' ? "" : ",", st->name, (int)data.len,
                       data.ptr);
            buf_printf(&m, "\"step\":\"%s\",\"reply\":", st->name);
            json_escape(&m, e->type.ptr, e->type.len);
            buf_append(&m, ",\"context\":", 11);
            buf_append(&m, nc.ptr, nc.len);
            factum_error_t err;
            if ((ok = rec_fits(s, o, "StepSucceeded", e->position, &m, &err))) {
                buf_free(&i->ctx);
                i->ctx = nc;
                i->done |= 1u << k;
            } else {
                snprintf(why, sizeof why, "reply %.*s: its data cannot join the context: %s",
                         (int)MIN(e->type.len, 255), e->type.ptr, err.message);
                buf_free(&nc);
            }
            buf_free(&m);
        }
        if (!ok) {
            failed_rec(o, "StepFailed", e->position, st->name, why);
            i->stage_failed = true;
        }
        if (i->waiting) return; /* the rest of the stage still answers */
        if (i->stage_failed)
            compensate_from(s, i, s->d->nsteps - 1, e, o);
        else if (i->stage + 1 < s->d->nstages)
            start_stage(s, i, i->stage + 1, e, o);
        else {
            i->status = S_COMPLETED;
            rec(o, "SagaCompleted", e->position, NULL, 0);
        }
    } else { /* compensating step k */
        settled(i, k);
        if (!timeout && listed(st->comp.success, st->comp.nsuccess, e->type)) {
            recf(o, "CompensationSucceeded", e->position, "\"step\":\"%s\"", st->name);
            compensate_from(s, i, k - 1, e, o);
        } else {
            failed_rec(o, "CompensationFailed", e->position, st->name, why);
            i->status = S_COMP_FAILED;
            rec(o, "SagaCompensationFailed", e->position, NULL, 0);
        }
    }
}

/* Which step a reply of type answers, or -1 when the instance waits for no such reply. */
static int awaited(const saga *s, const inst *i, factum_str_t type) {
    if (i->status == S_RUNNING) return branch_of(s, i, type);
    const step *st = &s->d->steps[i->step];
    if (i->status == S_COMPENSATING &&
        (listed(st->comp.success, st->comp.nsuccess, type) || listed(st->comp.failure, st->comp.nfailure, type)))
        return i->step;
    return -1;
}

/* Whether type is a reply type of any step of the saga. */
static bool reply_type(const saga_def *d, factum_str_t type) {
    for (int k = 0; k < d->nsteps; k++) {
        const step *st = &d->steps[k];
        if (listed(st->cmd.success, st->cmd.nsuccess, type) || listed(st->cmd.failure, st->cmd.nfailure, type) ||
            listed(st->comp.success, st->comp.nsuccess, type) || listed(st->comp.failure, st->comp.nfailure, type))
            return true;
    }
    return false;
}

static int step_index(const saga_def *d, factum_str_t data) {
    buf_t n = {0};
    int k = -1;
    if (json_member_string(data, "step", &n))
        for (int i = 0; i < d->nsteps && k < 0; i++)
            if (!strcmp(d->steps[i].name, n.ptr)) k = i;
    buf_free(&n);
    return k;
}

static void send_command(saga *s, const char *id, factum_str_t sent);

/*
 * Rebuilds an instance from its state stream; NULL if it has none. Every command recorded for
 * an input at or after resend_from is sent again (the same id: appended once): the records of
 * an input and its commands are written side by side, so after a crash the records may be there
 * without the command — even when the same input also ended the instance.
 */
static inst *load(saga *s, const char *id, uint64_t *started_at, uint64_t resend_from) {
    buf_t name = {0};
    state_stream(s, id, &name);
    inst *i = NULL;
    for (uint64_t from = 0;;) {
        factum_result_t *r;
        if (factum_read_stream(s->db, (factum_str_t){name.ptr, name.len}, from, 1000, 0, &r, NULL)) break;
        size_t n = factum_result_count(r);
        for (size_t k = 0; k < n; k++) {
            const factum_event_t *e = factum_result_event(r, k);
            factum_str_t v;
            int kind;
            uint64_t input = 0;
            if (!json_member_u64(e->data, "input", &input)) continue; /* a timeout marker */
            if (!i) {
                if (!str_eq(e->type, str_c("SagaStarted")) || !(i = calloc(1, sizeof *i))) continue;
                snprintf(i->id, sizeof i->id, "%s", id);
                i->started_us = e->time_us;
                if (started_at) *started_at = input;
            }
            i->last_input = MAX(i->last_input, input);
            int st = step_index(s->d, e->data);
            if (json_member(e->data, "context", &v, &kind)) i->ctx.len = 0, buf_append(&i->ctx, v.ptr, v.len);
            if (st < 0) {
                /* SagaStarted and the ends */
            } else if (str_eq(e->type, str_c("StepStarted")) || str_eq(e->type, str_c("CompensationStarted"))) {
                bool comp = str_eq(e->type, str_c("CompensationStarted"));
                if (comp)
                    i->status = S_COMPENSATING, i->step = st;
                else
                    i->status = S_RUNNING, i->stage = s->d->steps[st].stage, i->waiting |= 1u << st;
                uint64_t dl = 0;
                json_member_u64(e->data, "deadline_us", &dl);
                const command *c = comp ? &s->d->steps[st].comp : &s->d->steps[st].cmd;
                i->due_us[st] = due_of((int64_t)MIN(dl, (uint64_t)INT64_MAX), c->timeout_ms);
                i->sent[st].len = 0;
                if (json_member(e->data, "sent", &v, &kind)) {
                    buf_append(&i->sent[st], v.ptr, v.len);
                    if (input >= resend_from) send_command(s, id, v);
                }
            } else if (str_eq(e->type, str_c("StepSucceeded"))) {
                settled(i, st), i->done |= 1u << st;
            } else if (str_eq(e->type, str_c("StepFailed"))) {
                settled(i, st), i->stage_failed = true;
            } else if (str_eq(e->type, str_c("CompensationSucceeded")) ||
                       str_eq(e->type, str_c("CompensationFailed"))) {
                settled(i, st);
            }
            if (str_eq(e->type, str_c("SagaCompleted")) || str_eq(e->type, str_c("SagaFailed")) ||
                str_eq(e->type, str_c("SagaCompensationFailed"))) {
                i->status = str_eq(e->type, str_c("SagaCompleted")) ? S_COMPLETED
                            : str_eq(e->type, str_c("SagaFailed"))  ? S_FAILED
                                                                    : S_COMP_FAILED;
                i->ended_us = e->time_us;
                for (int q = 0; q < MAX_STEPS; q++)
                    settled(i, q);
            }
        }
        from = factum_result_next(r);
        factum_result_free(r);
        if (n < 1000) break;
    }
    buf_free(&name);
    return i;
}

/* ---- the runner ---- */

static void write_cb(void *ctx, int rc, const factum_append_result_t *res, const char *msg) {
    saga *s = ctx;
    (void)res;
    pthread_mutex_lock(&s->wmu);
    if (rc && !s->write_rc) {
        s->write_rc = rc;
        fprintf(stderr, "factum: saga %s: a write failed: %s\n", s->d->name, msg);
    }
    if (--s->inflight == 0) pthread_cond_signal(&s->wcond);
    pthread_mutex_unlock(&s->wmu);
}

/*
 * A command the store refuses although it was checked before it was recorded as sent (its
 * stream deleted for ever since, its id taken in that stream by other content): the instance
 * waits for the step's reply or timeout as if the service had not answered. Going back to the
 * checkpoint would send it again, be refused again, and hold up every instance for ever.
 */
static void command_cb(void *ctx, int rc, const factum_append_result_t *res, const char *msg) {
    saga *s = ctx;
    if (rc == FACTUM_EINVAL || rc == FACTUM_EBADEVENT || rc == FACTUM_EBADSTREAM || rc == FACTUM_ETOOBIG ||
        rc == FACTUM_EDELETED || rc == FACTUM_ECONFLICT) {
        fprintf(stderr, "factum: saga %s: a command was refused (its step waits for its reply or timeout): %s\n",
                s->d->name, msg);
        rc = 0;
    }
    write_cb(ctx, rc, res, msg);
}

static void submit_cb(saga *s, factum_str_t stream, const factum_event_t *ev, size_t n, factum_append_cb cb) {
    factum_error_t err;
    pthread_mutex_lock(&s->wmu);
    s->inflight++;
    pthread_mutex_unlock(&s->wmu);
    if (factum_append_async(s->db, stream, FACTUM_EXPECT_ANY, ev, n, cb, s, &err)) {
        factum_append_result_t none = {0};
        cb(s, err.code, &none, err.message);
    }
}

static void submit(saga *s, factum_str_t stream, const factum_event_t *ev, size_t n) {
    submit_cb(s, stream, ev, n, write_cb);
}

/* Waits for every write submitted; their first error, or 0. */
static int drain(saga *s) {
    pthread_mutex_lock(&s->wmu);
    while (s->inflight)
        pthread_cond_wait(&s->wcond, &s->wmu);
    int rc = s->write_rc;
    s->write_rc = 0;
    pthread_mutex_unlock(&s->wmu);
    return rc;
}

/* Sends a command ({"id","cause","command":{"stream","type","data"}}) for instance id. */
static void send_command(saga *s, const char *id, factum_str_t sent) {
    factum_str_t cmd, v;
    int kind;
    buf_t stream = {0}, type = {0}, cid = {0}, cause = {0};
    if (json_member(sent, "command", &cmd, &kind) && json_member_string(cmd, "stream", &stream) &&
        json_member_string(cmd, "type", &type) && json_member_string(sent, "id", &cid)) {
        json_member_string(sent, "cause", &cause);
        factum_event_t e = {.type = {type.ptr, type.len},
                            .id = {cid.ptr, cid.len},
                            .correlationid = str_c(id),
                            .causationid = {cause.ptr, cause.len}};
        if (json_member(cmd, "data", &v, &kind)) e.data = v, e.data_format = FACTUM_DATA_JSON;
        submit_cb(s, (factum_str_t){stream.ptr, stream.len}, &e, 1, command_cb);
    }
    buf_free(&stream), buf_free(&type), buf_free(&cid), buf_free(&cause);
}

static void park(saga *s, const factum_event_t *e, const char *reason) {
    buf_t data = {0}, name = {0};
    char id[48];
    snprintf(id, sizeof id, "p-%llu", (unsigned long long)e->position);
    buf_printf(&data, "{\"position\":%llu,\"type\":", (unsigned long long)e->position);
    json_escape(&data, e->type.ptr, e->type.len);
    buf_append(&data, ",\"stream\":", 10);
    json_escape(&data, e->stream.ptr, e->stream.len);
    buf_append(&data, ",\"correlationid\":", 17);
    json_escape(&data, e->correlationid.ptr, e->correlationid.len);
    buf_append(&data, ",\"reason\":", 10);
    json_escape(&data, reason, strlen(reason));
    buf_append(&data, "}", 1);
    buf_printf(&name, "$sagaparked-%s", s->d->name);
    factum_event_t p = {
        .type = str_c("Parked"), .id = str_c(id), .data = {data.ptr, data.len}, .data_format = FACTUM_DATA_JSON};
    submit(s, (factum_str_t){name.ptr, name.len}, &p, 1);
    s->decisions++;
    pthread_mutex_lock(&s->mu);
    s->parked++;
    pthread_mutex_unlock(&s->mu);
    buf_free(&data), buf_free(&name);
}

/* Writes an instance's records and commands. */
static void flush_output(saga *s, inst *i, output *o) {
    if (o->nrecs) {
        factum_event_t ev[MAX_RECS];
        for (int k = 0; k < o->nrecs; k++)
            ev[k] = (factum_event_t){.type = str_c(o->recs[k].type),
                                     .id = str_c(o->recs[k].id),
                                     .data = {o->recs[k].data.ptr, o->recs[k].data.len},
                                     .data_format = FACTUM_DATA_JSON,
                                     .correlationid = str_c(i->id)};
        buf_t name = {0};
        state_stream(s, i->id, &name);
        submit(s, (factum_str_t){name.ptr, name.len}, ev, (size_t)o->nrecs);
        buf_free(&name);
    }
    for (int k = 0; k < o->ncmds; k++)
        send_command(s, i->id, (factum_str_t){o->cmds[k].body.ptr, o->cmds[k].body.len});
    if (o->nrecs || o->ncmds) s->decisions++;
    o->nrecs = o->ncmds = 0;
}

static void ended_add(saga *s, inst *i) {
    if (!s->ended && !(s->ended = calloc(ENDED_KEPT, sizeof *s->ended))) return;
    ended *e = &s->ended[s->ended_at];
    snprintf(e->id, sizeof e->id, "%s", i->id);
    e->status = i->status, e->step = shown_step(s->d, i), e->started_us = i->started_us, e->ended_us = i->ended_us;
    s->ended_at = (s->ended_at + 1) % ENDED_KEPT;
    if (s->nended < ENDED_KEPT) s->nended++;
}

/* Moves an instance that ended out of the active list. */
static void settle(saga *s, inst *i, int was) {
    pthread_mutex_lock(&s->mu);
    if (was != i->status) s->counts[was]--, s->counts[i->status]++;
    if (i->status >= S_COMPLETED) {
        double d = (double)(i->ended_us - i->started_us) / 1e6;
        for (int k = 0; k < SAGA_DURATION_BUCKETS; k++)
            if (d <= saga_duration_bounds[k]) s->dur[k]++;
        s->dur_n++, s->dur_sum_s += d;
        deactivate(s, i);
        ended_add(s, i);
        inst_free(i);
    }
    pthread_mutex_unlock(&s->mu);
}

static void start_instance(saga *s, const factum_event_t *e, output *o) {
    factum_str_t doc = e->data_format == FACTUM_DATA_JSON && e->data.len ? e->data : str_c("null");
    buf_t ev = {0};
    /* The start event as a document for instance_id: {"data":..,"stream":..,"id":..} */
    buf_printf(&ev, "{\"data\":%.*s,\"stream\":", (int)doc.len, doc.ptr);
    json_escape(&ev, e->stream.ptr, e->stream.len);
    buf_append(&ev, ",\"id\":", 6);
    json_escape(&ev, e->id.ptr, e->id.len);
    buf_append(&ev, "}", 1);
    factum_str_t v;
    int kind;
    char id[256] = "";
    const char *path = s->d->instance_id;
    if (path_get((factum_str_t){ev.ptr, ev.len}, path, strlen(path), &v, &kind)) {
        if (kind == JSON_STRING && v.len - 2 < sizeof id && !memchr(v.ptr + 1, '\\', v.len - 2))
            snprintf(id, sizeof id, "%.*s", (int)v.len - 2, v.ptr + 1);
        else if (kind == JSON_NUMBER && v.len < sizeof id)
            snprintf(id, sizeof id, "%.*s", (int)v.len, v.ptr);
    }
    buf_free(&ev);
    factum_error_t err;
    buf_t sn = {0};
    state_stream(s, id, &sn);
    if (!*id || factum_stream_name_check((factum_str_t){sn.ptr, sn.len}, &err)) {
        buf_free(&sn);
        park(s, e, "the start event has no usable instance id at instance_id");
        return;
    }
    buf_free(&sn);
    uint64_t started_at = 0;
    inst *i = find(s, id);
    if (!i && (i = load(s, id, &started_at, s->recovered_at))) { /* written before a restart, or an older instance */
        if (started_at != e->position) {
            inst_free(i);
            park(s, e, "an instance with this id exists already");
            return;
        }
        pthread_mutex_lock(&s->mu);
        if (i->status < S_COMPLETED) activate(s, i);
        pthread_mutex_unlock(&s->mu);
        if (i->status >= S_COMPLETED) inst_free(i);
        return; /* done before: its input is behind it */
    }
    if (i) {
        if (i->last_input < e->position) park(s, e, "an instance with this id is running");
        return;
    }
    if (!(i = calloc(1, sizeof *i))) return;
    snprintf(i->id, sizeof i->id, "%s", id);
    i->started_us = e->time_us, i->last_input = e->position;
    buf_append(&i->ctx, "{\"id\":", 6);
    json_escape(&i->ctx, id, strlen(id));
    buf_printf(&i->ctx, ",\"data\":%.*s,\"steps\":{}}", (int)doc.len, doc.ptr);
    buf_t m = {0};
    buf_append(&m, "\"context\":", 10);
    buf_append(&m, i->ctx.ptr, i->ctx.len);
    factum_error_t why;
    bool fits = rec_fits(s, o, "SagaStarted", e->position, &m, &why);
    buf_free(&m);
    if (!fits) {
        inst_free(i);
        char r[400];
        snprintf(r, sizeof r, "the instance's state cannot hold the start event: %s", why.message);
        park(s, e, r);
        return;
    }
    start_stage(s, i, 0, e, o);
    if (i->status >= S_COMPLETED) i->ended_us = e->time_us; /* its first commands could not be sent */
    pthread_mutex_lock(&s->mu);
    int st = i->status;
    i->status = S_RUNNING; /* counted as started, then settled to where it is */
    activate(s, i);
    i->status = st;
    pthread_mutex_unlock(&s->mu);
    flush_output(s, i, o);
    settle(s, i, S_RUNNING);
}

/* One input event. */
static void input(saga *s, const factum_event_t *e, output *o) {
    const saga_def *d = s->d;
    bool system = e->stream.len && e->stream.ptr[0] == '$';
    if (!system && str_eq(e->type, str_c(d->start_on))) {
        bool from = !d->nstart_cats;
        for (int k = 0; k < d->nstart_cats && !from; k++)
            from = stream_in_category(e->stream, str_c(d->start_cats[k]));
        if (from) start_instance(s, e, o);
        return;
    }
    bool timeout = system && str_eq(e->type, str_c(TIMEOUT_TYPE));
    if (timeout) {
        buf_t saga_name = {0};
        bool mine = json_member_string(e->data, "saga", &saga_name) && !strcmp(saga_name.ptr, d->name);
        buf_free(&saga_name);
        if (!mine) return;
    } else if (system || !reply_type(d, e->type)) {
        return;
    } else if (d->nreply_cats) {
        bool from = false;
        for (int k = 0; k < d->nreply_cats && !from; k++)
            from = stream_in_category(e->stream, str_c(d->reply_cats[k]));
        if (!from) return; /* not a reply of this saga: another conversation uses the same types */
    }
    char id[256];
    snprintf(id, sizeof id, "%.*s", (int)MIN(e->correlationid.len, sizeof id - 1), e->correlationid.ptr);
    inst *i = *id ? find(s, id) : NULL;
    if (!i) {
        if (!timeout)
            park(s, e, *id ? "no running instance has this correlation id" : "a reply without a correlation id");
        return;
    }
    if (e->position <= i->last_input) return; /* done before a restart */
    int k;
    if (timeout) {
        factum_str_t v;
        int kind;
        bool comp = json_member(e->data, "phase", &v, &kind) && str_eq(v, str_c("\"compensation\""));
        k = step_index(d, e->data);
        if (k < 0 ||
            (comp ? i->status != S_COMPENSATING || i->step != k : i->status != S_RUNNING || !(i->waiting & (1u << k))))
            return; /* it was answered in time */
    } else if ((k = awaited(s, i, e->type)) < 0) {
        park(s, e, "a reply the instance is not waiting for (a duplicate, or late)");
        return;
    }
    int was = i->status;
    i->last_input = e->position;
    on_reply(s, i, k, e, timeout, o);
    if (i->status >= S_COMPLETED) i->ended_us = e->time_us;
    flush_output(s, i, o);
    settle(s, i, was);
}

/* Appends a timeout marker for every instance whose deadline passed; returns the next
   deadline (CLOCK_MONOTONIC, µs), 0 if none. */
static int64_t timeouts(saga *s) {
    int64_t now = clock_mono_us(), next = 0;
    for (inst *i = s->active; i; i = i->next)
        for (int k = 0; k < s->d->nsteps; k++) {
            if (i->due_us[k] <= 0) continue;
            if (i->due_us[k] > now) {
                if (!next || i->due_us[k] < next) next = i->due_us[k];
                continue;
            }
            const char *phase = i->status == S_COMPENSATING ? "compensation" : "step";
            char data[400], id[160];
            snprintf(data, sizeof data, "{\"saga\":\"%s\",\"step\":\"%s\",\"phase\":\"%s\"}", s->d->name,
                     s->d->steps[k].name, phase);
            snprintf(id, sizeof id, "timeout-%s-%s", phase, s->d->steps[k].name);
            factum_event_t e = {.type = str_c(TIMEOUT_TYPE),
                                .id = str_c(id),
                                .data = str_c(data),
                                .data_format = FACTUM_DATA_JSON,
                                .correlationid = str_c(i->id)};
            buf_t name = {0};
            state_stream(s, i->id, &name);
            submit(s, (factum_str_t){name.ptr, name.len}, &e, 1);
            buf_free(&name);
            i->due_us[k] = -i->due_us[k]; /* marked; the marker comes back through the log */
        }
    return next;
}

/*
 * Only the newest checkpoint is ever read, so $sagacp-NAME keeps one: max_count 1, set once
 * (after the first checkpoint is durable, if the stream does not have it yet). The older ones
 * leave reads at once and the disk at the next scavenge; max_count always shows the newest, so
 * no moment between the two writes hides it.
 */
static int keep_newest_only(saga *s, factum_str_t stream) {
    factum_meta_t m;
    factum_error_t err;
    int rc = factum_meta_get(s->db, stream, &m, &err);
    if (!rc && m.max_count != 1) {
        m.max_count = 1;
        rc = factum_meta_set(s->db, stream, &m, NULL, &err);
    }
    factum_meta_free(&m);
    if (rc) fprintf(stderr, "factum: saga %s: older checkpoints are kept: %s\n", s->d->name, err.message);
    return rc;
}

/* Writes a Checkpoint {position, active} to $sagacp-NAME; 0 once it is durable. */
static int checkpoint(saga *s) {
    buf_t data = {0}, name = {0};
    buf_printf(&data, "{\"position\":%llu,\"active\":[", (unsigned long long)s->position);
    for (inst *i = s->active; i; i = i->next) {
        if (i != s->active) buf_append(&data, ",", 1);
        json_escape(&data, i->id, strlen(i->id));
    }
    buf_append(&data, "]}", 2);
    buf_printf(&name, "$sagacp-%s", s->d->name);
    factum_event_t e = {.type = str_c("Checkpoint"), .data = {data.ptr, data.len}, .data_format = FACTUM_DATA_JSON};
    submit(s, (factum_str_t){name.ptr, name.len}, &e, 1);
    int rc = drain(s);
    if (!rc && !s->keeps_one) s->keeps_one = keep_newest_only(s, (factum_str_t){name.ptr, name.len}) == 0;
    buf_free(&data), buf_free(&name);
    return rc;
}

/* Where to start: the newest Checkpoint, its instances loaded, their pending commands sent
   again (the same ids: appended once). */
static void recover(saga *s) {
    buf_t name = {0};
    buf_printf(&name, "$sagacp-%s", s->d->name);
    factum_result_t *r;
    if (factum_read_stream(s->db, (factum_str_t){name.ptr, name.len}, FACTUM_END, 1, 1, &r, NULL) == 0) {
        if (factum_result_count(r)) {
            const factum_event_t *e = factum_result_event(r, 0);
            json_member_u64(e->data, "position", &s->position);
            factum_str_t a, v;
            int kind;
            if (json_member(e->data, "active", &a, &kind)) {
                json_iter_t it;
                json_iter_init(&it, a);
                buf_t id = {0};
                while (json_iter_element(&it, &v, &kind) == 1) {
                    id.len = 0;
                    if (json_unescape(v, &id) || buf_append(&id, "", 1)) break;
                    inst *i = load(s, id.ptr, NULL, s->position);
                    if (!i) continue;
                    if (i->status >= S_COMPLETED) {
                        inst_free(i);
                        continue;
                    }
                    pthread_mutex_lock(&s->mu);
                    activate(s, i);
                    pthread_mutex_unlock(&s->mu);
                }
                buf_free(&id);
            }
        }
        factum_result_free(r);
    }
    buf_free(&name);
    s->recovered_at = s->position;
    drain(s);
}

/* A write failed: what is in memory may be ahead of what is durable. Forget it and start again
   from the newest checkpoint, as after a restart (inputs already done are skipped then). */
static void rewind_to_checkpoint(saga *s) {
    struct timespec ts = {1, 0};
    nanosleep(&ts, NULL);
    pthread_mutex_lock(&s->mu);
    while (s->active) {
        inst *i = s->active;
        deactivate(s, i);
        inst_free(i);
    }
    s->counts[S_RUNNING] = s->counts[S_COMPENSATING] = 0;
    s->position = 0;
    pthread_mutex_unlock(&s->mu);
    recover(s);
}

static void *runner(void *arg) {
    saga *s = arg;
    output o = {0};
    recover(s);
    /* A checkpoint only bounds the replay of a restart; it is due when an input was decided since
       the last one (or many positions passed): an idle saga writes none, so its own checkpoint,
       which it reads like any event, never causes the next. Measured on the monotonic clock. */
    int64_t last_cp = clock_mono_us();
    uint64_t cp_pos = s->position, cp_decisions = s->decisions;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        bool stop = s->stop;
        pthread_mutex_unlock(&s->mu);
        if (stop) break;
        factum_query_t q = {.from = s->position, .limit = BATCH, .system = 1};
        factum_result_t *r;
        size_t n = 0;
        if (factum_read_all(s->db, &q, &r, NULL) == 0) {
            n = factum_result_count(r);
            for (size_t k = 0; k < n; k++)
                input(s, factum_result_event(r, k), &o);
            uint64_t next = factum_result_next(r);
            factum_result_free(r);
            if (drain(s)) { /* a write failed: go back to the last checkpoint */
                rewind_to_checkpoint(s);
                cp_pos = s->position, cp_decisions = s->decisions;
                continue;
            }
            pthread_mutex_lock(&s->mu);
            s->position = next;
            pthread_mutex_unlock(&s->mu);
        }
        int64_t next_deadline = timeouts(s);
        if (drain(s)) { /* a timeout marker is not written: its deadline must come round again */
            rewind_to_checkpoint(s);
            cp_pos = s->position, cp_decisions = s->decisions;
            continue;
        }
        int64_t now = clock_mono_us();
        if (now - last_cp >= CHECKPOINT_EVERY_US &&
            (s->decisions != cp_decisions || s->position - cp_pos >= CHECKPOINT_AFTER)) {
            if (checkpoint(s) == 0) cp_pos = s->position, cp_decisions = s->decisions;
            last_cp = now; /* a failed one is tried again at the next interval, not at once */
        }
        if (!n) {
            int wait_ms = 200;
            if (next_deadline) wait_ms = (int)MAX(1, MIN(200, (next_deadline - now) / 1000 + 1));
            factum_wait(s->db, s->position, wait_ms);
        }
    }
    for (int k = 0; k < MAX_RECS; k++)
        buf_free(&o.recs[k].data);
    for (int k = 0; k <= MAX_STEPS; k++)
        buf_free(&o.cmds[k].body);
    return NULL;
}

int saga_start(factum_t *db, saga_def *d, saga **out, factum_error_t *err) {
    saga *s = calloc(1, sizeof *s);
    if (!s) {
        saga_def_free(d);
        return err_set(err, FACTUM_ENOMEM, "out of memory");
    }
    s->db = db, s->d = d;
    pthread_mutex_init(&s->mu, NULL);
    pthread_mutex_init(&s->wmu, NULL);
    pthread_cond_init(&s->wcond, NULL);
    if (pthread_create(&s->thread, NULL, runner, s)) {
        saga_def_free(d);
        free(s);
        return err_set(err, FACTUM_ENOMEM, "cannot start a saga thread");
    }
    *out = s;
    return 0;
}

void saga_stop(saga *s) {
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    s->stop = true;
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
    while (s->active) {
        inst *i = s->active;
        deactivate(s, i);
        inst_free(i);
    }
    free(s->ended);
    saga_def_free(s->d);
    pthread_mutex_destroy(&s->mu);
    pthread_mutex_destroy(&s->wmu);
    pthread_cond_destroy(&s->wcond);
    free(s);
}

/* ---- what it shows ---- */

const double saga_duration_bounds[SAGA_DURATION_BUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                                            1,     2.5,  5,     10,   60,  1e300};

void saga_metrics(saga *s, int family, buf_t *out) {
    const char *n = s->d->name;
    pthread_mutex_lock(&s->mu);
    if (family == 0) {
        for (int k = 0; k < 2; k++)
            buf_printf(out, "factum_saga_instances{saga=\"%s\",status=\"%s\"} %llu\n", n, status_names[k],
                       (unsigned long long)s->counts[k]);
    } else if (family == 1) {
        for (int k = 2; k < 5; k++)
            buf_printf(out, "factum_saga_ended_total{saga=\"%s\",status=\"%s\"} %llu\n", n, status_names[k],
                       (unsigned long long)s->counts[k]);
    } else if (family == 2) {
        buf_printf(out, "factum_saga_parked_total{saga=\"%s\"} %llu\n", n, (unsigned long long)s->parked);
    } else {
        for (int k = 0; k < SAGA_DURATION_BUCKETS; k++) {
            if (k == SAGA_DURATION_BUCKETS - 1)
                buf_printf(out, "factum_saga_duration_seconds_bucket{saga=\"%s\",le=\"+Inf\"} %llu\n", n,
                           (unsigned long long)s->dur[k]);
            else
                buf_printf(out, "factum_saga_duration_seconds_bucket{saga=\"%s\",le=\"%g\"} %llu\n", n,
                           saga_duration_bounds[k], (unsigned long long)s->dur[k]);
        }
        buf_printf(out,
                   "factum_saga_duration_seconds_sum{saga=\"%s\"} "
                   "%.6f\nfactum_saga_duration_seconds_count{saga=\"%s\"} %llu\n",
                   n, s->dur_sum_s, n, (unsigned long long)s->dur_n);
    }
    pthread_mutex_unlock(&s->mu);
}

void saga_status(saga *s, bool with_definition, buf_t *out) {
    pthread_mutex_lock(&s->mu);
    buf_append(out, "{\"name\":", 8);
    json_escape(out, s->d->name, strlen(s->d->name));
    buf_printf(out, ",\"position\":%llu", (unsigned long long)s->position);
    for (int k = 0; k < 5; k++)
        buf_printf(out, ",\"%s\":%llu", status_names[k], (unsigned long long)s->counts[k]);
    buf_printf(out, ",\"parked\":%llu", (unsigned long long)s->parked);
    pthread_mutex_unlock(&s->mu);
    if (with_definition) buf_append(out, ",\"definition\":", 14), buf_append(out, s->d->json.ptr, s->d->json.len);
    buf_append(out, "}", 1);
}

static void instance_json(buf_t *out, const char *id, int status, const char *step_name, int64_t started,
                          int64_t ended_us) {
    char t[32];
    buf_append(out, "{\"id\":", 6);
    json_escape(out, id, strlen(id));
    buf_printf(out, ",\"status\":\"%s\",\"step\":", status_names[status]);
    if (step_name)
        json_escape(out, step_name, strlen(step_name));
    else
        buf_append(out, "null", 4);
    time_format_rfc3339(started, t);
    buf_printf(out, ",\"started\":\"%s\",\"ended\":", t);
    if (ended_us)
        time_format_rfc3339(ended_us, t), buf_printf(out, "\"%s\"}", t);
    else
        buf_append(out, "null}", 5);
}

int saga_instances(saga *s, const char *status, buf_t *out, factum_error_t *err) {
    int want = -1;
    for (int k = 0; status && k < 5; k++)
        if (!strcmp(status, status_names[k])) want = k;
    if (status && want < 0)
        return err_set(err, FACTUM_EINVAL, "status is running, compensating, completed, failed or compensation_failed");
    buf_append(out, "[", 1);
    bool first = true;
    pthread_mutex_lock(&s->mu);
    for (inst *i = s->active; i; i = i->next) {
        if (want >= 0 && i->status != want) continue;
        if (!first) buf_append(out, ",", 1);
        first = false;
        int k = shown_step(s->d, i);
        instance_json(out, i->id, i->status, k >= 0 ? s->d->steps[k].name : NULL, i->started_us, 0);
    }
    for (size_t k = 0; k < s->nended; k++) {
        const ended *e = &s->ended[(s->ended_at + ENDED_KEPT - 1 - k) % ENDED_KEPT];
        if (want >= 0 && e->status != want) continue;
        if (!first) buf_append(out, ",", 1);
        first = false;
        instance_json(out, e->id, e->status, e->step >= 0 ? s->d->steps[e->step].name : NULL, e->started_us,
                      e->ended_us);
    }
    pthread_mutex_unlock(&s->mu);
    buf_append(out, "]", 1);
    return 0;
}

int saga_instance(saga *s, const char *id, buf_t *out, factum_error_t *err) {
    inst *i = load(s, id, NULL, UINT64_MAX);
    if (!i) return err_set(err, FACTUM_ENOTFOUND, "saga %s has no instance %s", s->d->name, id);
    buf_t name = {0};
    state_stream(s, id, &name);
    buf_append(out, "{\"id\":", 6);
    json_escape(out, id, strlen(id));
    buf_printf(out, ",\"status\":\"%s\",\"step\":", status_names[i->status]);
    int k = shown_step(s->d, i);
    if (k < 0)
        buf_append(out, "null", 4);
    else
        json_escape(out, s->d->steps[k].name, strlen(s->d->steps[k].name));
    buf_append(out, ",\"context\":", 11);
    buf_append(out, i->ctx.ptr, i->ctx.len);
    buf_append(out, ",\"history\":[", 12);
    factum_result_t *r;
    if (factum_read_stream(s->db, (factum_str_t){name.ptr, name.len}, 0, 10000, 0, &r, NULL) == 0) {
        for (size_t q = 0; q < factum_result_count(r); q++) {
            const factum_event_t *e = factum_result_event(r, q);
            char t[32];
            time_format_rfc3339(e->time_us, t);
            if (q) buf_append(out, ",", 1);
            buf_append(out, "{\"type\":", 8);
            json_escape(out, e->type.ptr, e->type.len);
            buf_printf(out, ",\"time\":\"%s\",\"position\":%llu,\"data\":%.*s}", t, (unsigned long long)e->position,
                       (int)e->data.len, e->data.ptr);
        }
        factum_result_free(r);
    }
    buf_append(out, "]}", 2);
    buf_free(&name);
    inst_free(i);
    return 0;
}

int saga_parked(saga *s, buf_t *out, factum_error_t *err) {
    (void)err;
    buf_t name = {0};
    buf_printf(&name, "$sagaparked-%s", s->d->name);
    buf_append(out, "[", 1);
    factum_result_t *r;
    if (factum_read_stream(s->db, (factum_str_t){name.ptr, name.len}, 0, 10000, 0, &r, NULL) == 0) {
        for (size_t k = 0; k < factum_result_count(r); k++) {
            if (k) buf_append(out, ",", 1);
            buf_append(out, factum_result_event(r, k)->data.ptr, factum_result_event(r, k)->data.len);
        }
        factum_result_free(r);
    }
    buf_append(out, "]", 1);
    buf_free(&name);
    return 0;
}
