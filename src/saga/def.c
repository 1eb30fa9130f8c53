/*
 * def.c — a saga's definition (docs/sagas.md, "A definition"): parsing it for what the machine
 * and the runner need (saga_def_parse), checking a new one for what it may not be
 * (saga_def_check), and its templates: the values a path names in the instance's context, and
 * a command rendered from its template. No I/O; the fuzz target drives all of it.
 */
#include "def.h"

#include "../base/json.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>

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
                        if (saga_listed(d->steps[a].cmd.success, d->steps[a].cmd.nsuccess, str_c(t)) ||
                            saga_listed(d->steps[a].cmd.failure, d->steps[a].cmd.nfailure, str_c(t)))
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
bool saga_path_get(factum_str_t doc, const char *path, size_t plen, factum_str_t *val, int *kind) {
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
void saga_render(factum_str_t t, int kind, factum_str_t ctx, buf_t *out) {
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
            saga_render(v, vk, ctx, out);
        }
        buf_append(out, kind == JSON_OBJECT ? "}" : "]", 1);
        return;
    }
    if (kind != JSON_STRING) {
        buf_append(out, t.ptr, t.len);
        return;
    }
    if (whole_path(t, &p)) {
        if (saga_path_get(ctx, p.ptr, p.len, &v, &vk))
            buf_append(out, v.ptr, v.len);
        else
            buf_append(out, "null", 4);
        return;
    }
    const char *s = t.ptr + 1, *e = t.ptr + t.len - 1, *open;
    buf_append(out, "\"", 1);
    for (; (open = next_path(s, e, &p)); s = p.ptr + p.len + 2) {
        buf_append(out, s, (size_t)(open - s));
        if (saga_path_get(ctx, p.ptr, p.len, &v, &vk)) {
            if (vk == JSON_STRING)
                buf_append(out, v.ptr + 1, v.len - 2);
            else if (vk != JSON_NULL && vk != JSON_OBJECT && vk != JSON_ARRAY)
                buf_append(out, v.ptr, v.len);
        }
    }
    buf_append(out, s, (size_t)(e - s));
    buf_append(out, "\"", 1);
}

/* ---- reply types, and what a command may not be ---- */

bool saga_listed(char *const *v, int n, factum_str_t type) {
    for (int i = 0; i < n; i++)
        if (str_eq(type, str_c(v[i]))) return true;
    return false;
}

bool saga_reply_type(const saga_def *d, factum_str_t type) {
    for (int k = 0; k < d->nsteps; k++) {
        const step *st = &d->steps[k];
        if (saga_listed(st->cmd.success, st->cmd.nsuccess, type) ||
            saga_listed(st->cmd.failure, st->cmd.nfailure, type) ||
            saga_listed(st->comp.success, st->comp.nsuccess, type) ||
            saga_listed(st->comp.failure, st->comp.nfailure, type))
            return true;
    }
    return false;
}

/* Whether events of `stream` belong to one of the categories cats (none: every stream). When
   only the text before a {{path}} is known (whole false), -1 if that does not decide it. */
static int in_categories(char *const *cats, int n, factum_str_t stream, bool whole) {
    if (!n) return 1;
    if (!whole && !memchr(stream.ptr, '-', stream.len)) return -1;
    for (int k = 0; k < n; k++)
        if (stream_in_category(stream, str_c(cats[k]))) return 1;
    return 0;
}

const char *const saga_unsendable[] = {
    NULL,
    "a command cannot go to a system stream",
    "its type is start_on and its stream one the saga starts from: each command would start another instance",
    "its type is a reply type of the saga and its stream one the saga takes replies from: the command would answer "
    "itself",
};

int saga_command_kind(const saga_def *d, factum_str_t stream, factum_str_t type, bool whole) {
    if (stream.len && stream.ptr[0] == '$') return SEND_SYSTEM;
    if (type.len && str_eq(type, str_c(d->start_on)) &&
        in_categories(d->start_cats, d->nstart_cats, stream, whole) == 1)
        return SEND_STARTS;
    if (type.len && saga_reply_type(d, type) && in_categories(d->reply_cats, d->nreply_cats, stream, whole) == 1)
        return SEND_ANSWERS;
    return SEND_OK;
}

/* ---- what a definition may not do ---- */

/* A command's template: its stream and type as far as they are known before rendering. */
static int check_command(const saga_def *d, const command *c, const char *what, factum_error_t *err) {
    buf_t stream = {0}, type = {0};
    factum_str_t tmpl = {c->tmpl.ptr, c->tmpl.len};
    json_member_string(tmpl, "stream", &stream), json_member_string(tmpl, "type", &type);
    const char *open = strstr(stream.ptr, "{{");
    factum_str_t st = {stream.ptr, open ? (size_t)(open - stream.ptr) : stream.len};
    factum_str_t ty = strstr(type.ptr, "{{") ? (factum_str_t){0} : (factum_str_t){type.ptr, type.len};
    int why = saga_command_kind(d, st, ty, !open), rc = 0;
    if (why)
        rc = err_set(err, FACTUM_EINVAL, "%s.%s: %s (stream %.100s, type %.100s)", what,
                     why == SEND_SYSTEM ? "stream" : "type", saga_unsendable[why], stream.ptr, type.ptr);
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
            else if (r >= c->nsuccess && saga_listed(c->success, c->nsuccess, str_c(t)))
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
