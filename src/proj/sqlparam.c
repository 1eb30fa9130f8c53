/*
 * sqlparam.c — rewriting `:path` parameters into placeholders, and computing their values from
 * an event or a query's params. A lexer that knows just enough SQL to leave literals, quoted
 * identifiers, comments and casts alone; the database parses the rest.
 */
#include "sqlparam.h"

#include "../base/json.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

static const struct {
    const char *name;
    int root;
} roots[] = {
    {"stream", SQL_R_STREAM},
    {"revision", SQL_R_REVISION},
    {"position", SQL_R_POSITION},
    {"time", SQL_R_TIME},
    {"type", SQL_R_TYPE},
    {"id", SQL_R_ID},
    {"source", SQL_R_SOURCE},
    {"subject", SQL_R_SUBJECT},
    {"correlationid", SQL_R_CORRELATIONID},
    {"causationid", SQL_R_CAUSATIONID},
    {"data", SQL_R_DATA},
};
const char sql_event_roots[] =
    ":stream, :revision, :position, :time, :type, :id, :source, :subject, :correlationid, :causationid, :data...";

static bool ident_start(char ch) { return isalpha((unsigned char)ch) || ch == '_'; }
static bool ident_char(char ch) { return isalnum((unsigned char)ch) || ch == '_'; }

/* Where the literal, quoted identifier or comment starting at i ends (one past it); i if none
   starts there. */
static size_t skip_quoted(const char *s, size_t n, size_t i, int dialect) {
    char ch = s[i];
    if (ch == '\'' || ch == '"') {
        /* PostgreSQL E'...' strings take backslash escapes. */
        bool backslash = dialect == SQL_POSTGRES && ch == '\'' && i > 0 && (s[i - 1] == 'E' || s[i - 1] == 'e') &&
                         (i == 1 || !ident_char(s[i - 2]));
        for (size_t j = i + 1; j < n; j++) {
            if (backslash && s[j] == '\\') {
                j++;
            } else if (s[j] == ch) {
                if (j + 1 < n && s[j + 1] == ch)
                    j++; /* doubled: an escaped quote */
                else
                    return j + 1;
            }
        }
        return n;
    }
    if (ch == '-' && i + 1 < n && s[i + 1] == '-') {
        const char *nl = memchr(s + i, '\n', n - i);
        return nl ? (size_t)(nl - s) + 1 : n;
    }
    if (ch == '/' && i + 1 < n && s[i + 1] == '*') {
        for (size_t j = i + 2; j + 1 < n; j++)
            if (s[j] == '*' && s[j + 1] == '/') return j + 2;
        return n;
    }
    if (ch == '$' && dialect == SQL_POSTGRES && (i == 0 || !ident_char(s[i - 1]))) {
        /* $tag$ ... $tag$ (tag empty or an identifier) */
        size_t j = i + 1;
        while (j < n && ident_char(s[j]) && !(j == i + 1 && isdigit((unsigned char)s[j])))
            j++;
        if (j < n && s[j] == '$') {
            size_t tag = j + 1 - i;
            for (size_t k = j + 1; k + tag <= n; k++)
                if (!memcmp(s + k, s + i, tag)) return k + tag;
            return n;
        }
    }
    return i;
}

/* Parses the path after the colon at s[i]; fills p, returns the index after it, or 0 with err. */
static size_t parse_path(const char *s, size_t n, size_t i, bool event_roots, sql_path *p, factum_error_t *err) {
    size_t start = i;
    *p = (sql_path){0};
    size_t j = i;
    while (j < n && ident_char(s[j]))
        j++;
    factum_str_t first = {s + i, j - i};
    if (event_roots) {
        p->root = -1;
        for (size_t k = 0; k < ARRAY_LEN(roots); k++)
            if (str_eq(first, str_c(roots[k].name))) p->root = roots[k].root;
        if (p->root < 0)
            return err_set(err, FACTUM_EINVAL, "unknown parameter :%.*s at offset %zu (an event has %s)",
                           (int)MIN(first.len, 64), first.ptr, start - 1, sql_event_roots),
                   0;
        i = j;
    } else {
        p->root = SQL_R_PARAMS;
        p->steps[p->nsteps++] = (sql_step){(uint32_t)(i - start), (uint32_t)(j - i), -1};
        i = j;
    }
    while (i < n && (s[i] == '.' || s[i] == '[')) {
        if (p->nsteps == SQL_MAX_STEPS)
            return err_set(err, FACTUM_EINVAL, "parameter at offset %zu: more than %d steps", start - 1, SQL_MAX_STEPS),
                   0;
        if (s[i] == '.') {
            if (i + 1 >= n || !ident_start(s[i + 1])) break; /* "a.": the dot belongs to the SQL */
            j = i + 1;
            while (j < n && ident_char(s[j]))
                j++;
            p->steps[p->nsteps++] = (sql_step){(uint32_t)(i + 1 - start), (uint32_t)(j - i - 1), -1};
            i = j;
        } else {
            j = i + 1;
            int64_t v = 0;
            while (j < n && isdigit((unsigned char)s[j]) && v < 100000000)
                v = v * 10 + (s[j++] - '0');
            if (j == i + 1 || j >= n || s[j] != ']')
                return err_set(err, FACTUM_EINVAL, "parameter at offset %zu: [ takes an index and ]", start - 1), 0;
            p->steps[p->nsteps++] = (sql_step){0, 0, v};
            i = j + 1;
        }
    }
    if (p->root != SQL_R_DATA && p->root != SQL_R_PARAMS && p->nsteps)
        return err_set(err, FACTUM_EINVAL, "parameter :%.*s at offset %zu: only :data has fields",
                       (int)MIN(first.len, 64), first.ptr, start - 1),
               0;
    if (i - start >= sizeof p->text)
        return err_set(err, FACTUM_EINVAL, "parameter at offset %zu is longer than %zu bytes", start - 1,
                       sizeof p->text - 1),
               0;
    memcpy(p->text, s + start, i - start);
    p->text[i - start] = 0;
    return i;
}

int sql_rewrite(factum_str_t text, int dialect, bool event_roots, sql_stmt *out, factum_error_t *err) {
    *out = (sql_stmt){0};
    const char *s = text.ptr;
    size_t n = text.len, i = 0, copied = 0;
    int rc = 0;
    if (!(out->params = calloc(SQL_MAX_PARAMS, sizeof *out->params)))
        return err_set(err, FACTUM_ENOMEM, "out of memory");
    while (i < n && !rc) {
        size_t q = skip_quoted(s, n, i, dialect);
        if (q != i) {
            i = q;
            continue;
        }
        if (s[i] == ':' && i + 1 < n && s[i + 1] == ':') {
            i += 2;
            continue;
        }
        if (dialect == SQL_POSTGRES && s[i] == '$' && i + 1 < n && isdigit((unsigned char)s[i + 1])) {
            rc =
                err_set(err, FACTUM_EINVAL, "positional parameter at offset %zu: name parameters (:data.x) instead", i);
            break;
        }
        if (dialect == SQL_SQLITE &&
            (s[i] == '?' || ((s[i] == '@' || s[i] == '$') && i + 1 < n && ident_start(s[i + 1])))) {
            rc = err_set(err, FACTUM_EINVAL, "parameter at offset %zu: name parameters with a colon (:data.x)", i);
            break;
        }
        if (s[i] != ':' || i + 1 >= n || !ident_start(s[i + 1]) || (i > 0 && ident_char(s[i - 1]))) {
            i++;
            continue;
        }
        sql_path p;
        size_t end = parse_path(s, n, i + 1, event_roots, &p, err);
        if (!end) {
            rc = FACTUM_EINVAL;
            break;
        }
        size_t k = 0;
        while (k < out->nparams && strcmp(out->params[k].text, p.text))
            k++;
        if (k == out->nparams) {
            if (k == SQL_MAX_PARAMS) {
                rc = err_set(err, FACTUM_EINVAL, "more than %d distinct parameters", SQL_MAX_PARAMS);
                break;
            }
            out->params[out->nparams++] = p;
        }
        if (buf_append(&out->sql, s + copied, i - copied) ||
            buf_printf(&out->sql, "%c%zu", dialect == SQL_SQLITE ? '?' : '$', k + 1)) {
            rc = err_set(err, FACTUM_ENOMEM, "out of memory");
            break;
        }
        i = copied = end;
    }
    if (!rc && (buf_append(&out->sql, s + copied, n - copied) || buf_append(&out->sql, "", 1)))
        rc = err_set(err, FACTUM_ENOMEM, "out of memory");
    if (rc) {
        sql_stmt_free(out);
        return rc;
    }
    out->sql.len--; /* the NUL stays, uncounted */
    return 0;
}

void sql_stmt_free(sql_stmt *s) {
    buf_free(&s->sql);
    free(s->params);
    *s = (sql_stmt){0};
}

/* ---- values ---- */

/* A raw JSON key (with quotes) equals the bytes k. */
static bool key_matches(factum_str_t raw, factum_str_t k, buf_t *tmp) {
    if (raw.len < 2) return false;
    factum_str_t in = {raw.ptr + 1, raw.len - 2};
    if (!memchr(in.ptr, '\\', in.len)) return str_eq(in, k);
    tmp->len = 0;
    return json_unescape(raw, tmp) == 0 && str_eq((factum_str_t){tmp->ptr, tmp->len}, k);
}

/* A JSON value as a bound value; strings are decoded into scratch (offset kept in v->i). */
static int from_json(factum_str_t val, int kind, buf_t *scratch, sql_value *v) {
    switch (kind) {
    case JSON_NULL: v->kind = SQL_V_NULL; return 0;
    case JSON_TRUE:
    case JSON_FALSE: v->kind = SQL_V_BOOL, v->i = kind == JSON_TRUE; return 0;
    case JSON_OBJECT:
    case JSON_ARRAY: v->kind = SQL_V_JSON, v->s = val; return 0;
    case JSON_NUMBER: {
        char tmp[64];
        v->s = val;
        bool whole = !memchr(val.ptr, '.', val.len) && !memchr(val.ptr, 'e', val.len) && !memchr(val.ptr, 'E', val.len);
        if (val.len < sizeof tmp) {
            memcpy(tmp, val.ptr, val.len);
            tmp[val.len] = 0;
            errno = 0;
            if (whole) {
                long long x = strtoll(tmp, NULL, 10);
                if (errno != ERANGE) {
                    v->kind = SQL_V_INT, v->i = x;
                    return 0;
                }
            }
            v->kind = SQL_V_REAL, v->r = strtod(tmp, NULL);
            return 0;
        }
        v->kind = SQL_V_REAL, v->r = whole && val.ptr[0] == '-' ? -1e308 : 1e308; /* 64+ digits: out of range anyway */
        return 0;
    }
    default: { /* JSON_STRING */
        if (!memchr(val.ptr, '\\', val.len)) {
            v->kind = SQL_V_TEXT, v->s = (factum_str_t){val.ptr + 1, val.len - 2};
            return 0;
        }
        size_t at = scratch->len;
        if (json_unescape(val, scratch)) return FACTUM_ENOMEM;
        v->kind = SQL_V_TEXT, v->s = (factum_str_t){NULL, scratch->len - at}, v->i = (int64_t)at;
        return 0;
    }
    }
}

/* Follows p's steps through the JSON text doc. */
static int walk(const sql_path *p, factum_str_t doc, buf_t *scratch, buf_t *tmp, sql_value *v) {
    int kind = 0;
    factum_str_t cur = doc;
    *v = (sql_value){SQL_V_NULL, 0, 0, {0}};
    while (cur.len && isspace((unsigned char)cur.ptr[0]))
        cur.ptr++, cur.len--;
    if (!p->nsteps) { /* the whole document */
        json_cur_t c = json_cur(doc.ptr, doc.len);
        if (json_value(&c, &cur, &kind)) return 0; /* not JSON: nothing inside */
    } else if (cur.len) {
        /* No scan of the whole document first: the iterators check what they pass over, and
           the search stops at the first match. */
        kind = cur.ptr[0] == '{' ? JSON_OBJECT : cur.ptr[0] == '[' ? JSON_ARRAY : 0;
    }
    for (uint32_t i = 0; i < p->nsteps; i++) {
        const sql_step *st = &p->steps[i];
        json_iter_t it;
        factum_str_t key, val;
        int vk, r;
        bool found = false;
        if (st->index < 0 ? kind != JSON_OBJECT : kind != JSON_ARRAY) return 0;
        json_iter_init(&it, cur);
        if (st->index < 0) {
            factum_str_t want = {p->text + st->off, st->len};
            while (!found && (r = json_iter_member(&it, &key, &val, &vk)) == 1)
                if (key_matches(key, want, tmp))
                    found = true, cur = val, kind = vk; /* the first one wins, as in SQLite */
        } else {
            for (int64_t k = 0; (r = json_iter_element(&it, &val, &vk)) == 1; k++)
                if (k == st->index) {
                    found = true, cur = val, kind = vk;
                    break;
                }
        }
        if (!found) return 0;
    }
    return from_json(cur, kind, scratch, v);
}

static void fix_scratch(const sql_stmt *s, buf_t *scratch, sql_value *v) {
    for (size_t i = 0; i < s->nparams; i++)
        if (v[i].kind == SQL_V_TEXT && !v[i].s.ptr) v[i].s.ptr = scratch->ptr ? scratch->ptr + v[i].i : "";
}

/* A text attribute; absent (empty) is NULL. */
static void opt_text(factum_str_t s, sql_value *v) {
    if (s.len) v->kind = SQL_V_TEXT, v->s = s;
}

int sql_bind_event(const sql_stmt *s, const factum_event_t *e, buf_t *scratch, sql_value *v) {
    scratch->len = 0;
    buf_t tmp = {0};
    int rc = 0;
    for (size_t i = 0; i < s->nparams && !rc; i++) {
        const sql_path *p = &s->params[i];
        sql_value *x = &v[i];
        *x = (sql_value){SQL_V_NULL, 0, 0, {0}};
        switch (p->root) {
        case SQL_R_STREAM: opt_text(e->stream, x); break;
        case SQL_R_TYPE: opt_text(e->type, x); break;
        case SQL_R_ID: opt_text(e->id, x); break;
        case SQL_R_CORRELATIONID: opt_text(e->correlationid, x); break;
        case SQL_R_CAUSATIONID: opt_text(e->causationid, x); break;
        case SQL_R_SOURCE: opt_text(e->source, x); break;
        case SQL_R_SUBJECT: opt_text(e->subject, x); break;
        case SQL_R_REVISION: x->kind = SQL_V_INT, x->i = (int64_t)e->revision; break;
        case SQL_R_POSITION: x->kind = SQL_V_INT, x->i = (int64_t)e->position; break;
        case SQL_R_TIME: {
            char t[32];
            time_format_rfc3339(e->time_us, t);
            size_t at = scratch->len;
            if (buf_append(scratch, t, strlen(t))) rc = FACTUM_ENOMEM;
            x->kind = SQL_V_TEXT, x->s = (factum_str_t){NULL, strlen(t)}, x->i = (int64_t)at;
            break;
        }
        case SQL_R_DATA:
            if (e->data_format == FACTUM_DATA_JSON) rc = walk(p, e->data, scratch, &tmp, x);
            break;
        }
    }
    buf_free(&tmp);
    if (!rc) fix_scratch(s, scratch, v);
    return rc;
}

int sql_bind_json(const sql_stmt *s, factum_str_t params, buf_t *scratch, sql_value *v) {
    scratch->len = 0;
    buf_t tmp = {0};
    int rc = 0;
    for (size_t i = 0; i < s->nparams && !rc; i++)
        rc = walk(&s->params[i], params, scratch, &tmp, &v[i]);
    buf_free(&tmp);
    if (!rc) fix_scratch(s, scratch, v);
    return rc;
}
