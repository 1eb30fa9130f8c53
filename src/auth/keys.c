/*
 * keys.c — the table of API keys and the checks on it (keys.h). The table is an array of
 * auth_key that only grows (a revoked key keeps its slot, so a slot stays a key's for good),
 * rebuilt at open by replaying $keys through key_apply, the same function a create or a revoke
 * applies its record with. A token is hashed once per check (SHA-256, OpenSSL's libcrypto) and
 * compared with CRYPTO_memcmp; the permission check that follows is a table lookup and a
 * pattern match. Randomness comes from RAND_bytes. A key's rate-limit bucket (rate.c) is
 * allocated apart from the array, so that a request holding it keeps it while the array grows;
 * it lives until the table is closed, as the key's slot does.
 */
#include "keys.h"

#include "../base/json.h"
#include "../sys/replay.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

struct auth_keys {
    factum_t *db;
    pthread_rwlock_t lock;
    pthread_mutex_t write_mu; /* one create or revoke at a time: decide, append, apply */
    auth_key *keys;
    size_t n, cap;
    _Atomic uint64_t gen;
    _Atomic uint32_t live;                 /* keys not revoked */
    _Atomic uint64_t refused[AUTH_LIMITS]; /* requests refused by a rate limit, by limit */
};

/* ---- names ---- */

static const char *const perm_names[PERM_COUNT] = {"undeclared", "public",  "health",  "read", "read-all",
                                                   "write",      "consume", "operate", "admin"};
static const char *const role_names[] = {NULL, "admin", "operator", "writer", "reader", "consumer"};

const char *auth_perm_name(auth_perm p) { return p < PERM_COUNT ? perm_names[p] : "?"; }
const char *auth_role_name(auth_role r) { return r >= AUTH_ADMIN && r <= AUTH_CONSUMER ? role_names[r] : "?"; }

auth_role auth_role_parse(const char *s) {
    for (int r = AUTH_ADMIN; r <= AUTH_CONSUMER; r++)
        if (!strcmp(s, role_names[r])) return (auth_role)r;
    return 0;
}

const char *auth_result_name(auth_result r) {
    static const char *const names[] = {"ok",      "missing", "malformed", "unknown",
                                        "revoked", "expired", "forbidden", "stale"};
    return r <= AUTH_STALE ? names[r] : "?";
}

bool auth_role_grants(auth_role r, auth_perm p) {
    if (p == PERM_UNDECLARED) return false;
    if (p == PERM_PUBLIC) return true;
    switch (r) {
    case AUTH_ADMIN: return true;
    case AUTH_OPERATOR: return p == PERM_HEALTH || p == PERM_OPERATE;
    case AUTH_WRITER: return p == PERM_HEALTH || p == PERM_READ || p == PERM_READ_ALL || p == PERM_WRITE;
    case AUTH_READER: return p == PERM_HEALTH || p == PERM_READ || p == PERM_READ_ALL;
    case AUTH_CONSUMER: return p == PERM_HEALTH || p == PERM_CONSUME;
    }
    return false;
}

bool auth_spec_grants(const auth_spec *s, auth_perm p) {
    /* a key held to some streams does not read them all */
    return auth_role_grants(s->role, p) && !(p == PERM_READ_ALL && s->nstreams);
}

/* ---- what a key may be asked to be ---- */

int auth_parse_expiry(const char *s, int64_t now_us, int64_t *us) {
    size_t n = strlen(s);
    uint64_t v;
    static const struct {
        char unit;
        int64_t us;
    } units[] = {{'s', 1000000}, {'m', 60000000}, {'h', 3600000000}, {'d', 86400000000}};
    for (size_t i = 0; n > 1 && i < ARRAY_LEN(units); i++)
        if (s[n - 1] == units[i].unit && str_u64((factum_str_t){s, n - 1}, &v) && v > 0 &&
            v <= (uint64_t)(INT64_MAX - now_us) / (uint64_t)units[i].us) {
            *us = now_us + (int64_t)v * units[i].us;
            return 0;
        }
    return time_parse(str_c(s), us);
}

/* A stream pattern: "PREFIX*", "category:NAME" or a whole name; never a system stream. */
static bool pattern_ok(const char *p) {
    size_t n = strlen(p);
    if (!n || p[0] == '$' || !text_valid(p, n)) return false;
    if (!strncmp(p, "category:", 9)) return n > 9 && !strchr(p + 9, '-') && !strchr(p + 9, '*');
    char *star = strchr(p, '*');
    return !star || (star == p + n - 1 && n > 1);
}

static int text_list(factum_str_t arr, char (*out)[AUTH_MAX_TEXT], int *n, const char *what, factum_error_t *err) {
    json_iter_t it;
    factum_str_t v;
    int kind, r;
    buf_t s = {0};
    *n = 0;
    json_iter_init(&it, arr);
    while ((r = json_iter_element(&it, &v, &kind)) == 1) {
        s.len = 0;
        if (kind != JSON_STRING || *n == AUTH_MAX_PATTERNS || json_unescape(v, &s) || !s.len ||
            s.len >= AUTH_MAX_TEXT || memchr(s.ptr, 0, s.len)) {
            buf_free(&s);
            return err_set(err, FACTUM_EINVAL, "'%s' must be a list of at most %d names of 1 to %d bytes", what,
                           AUTH_MAX_PATTERNS, AUTH_MAX_TEXT - 1);
        }
        memcpy(out[*n], s.ptr, s.len);
        out[(*n)++][s.len] = 0;
    }
    buf_free(&s);
    return r < 0 ? err_set(err, FACTUM_EINVAL, "'%s' must be a list", what) : 0;
}

/* The members of a key as a client sends them (POST /admin/keys), which its KeyCreated record holds too. */
static const char *const spec_members[] = {"role",
                                           "streams",
                                           "groups",
                                           "expires",
                                           "name",
                                           "max_appends_per_second",
                                           "max_bytes_per_second",
                                           "max_groups",
                                           "max_projections",
                                           "max_sagas",
                                           "max_schedules",
                                           NULL};

const char *auth_def_member(auth_def d) {
    static const char *const names[AUTH_DEFS] = {"max_groups", "max_projections", "max_sagas", "max_schedules"};
    return names[d];
}

/* A whole number from 0 to max in member `name` into *out, left alone when absent; zero says
   what 0 means. */
static int number_member(factum_str_t json, const char *name, int64_t max, const char *zero, int64_t *out,
                         factum_error_t *err) {
    factum_str_t v;
    int kind;
    uint64_t n;
    if (!json_member(json, name, &v, &kind)) return 0;
    if (kind != JSON_NUMBER || !str_u64(v, &n) || n > (uint64_t)max)
        return err_set(err, FACTUM_EINVAL, "'%s' must be a whole number from 0%s to %lld", name, zero, (long long)max);
    *out = (int64_t)n;
    return 0;
}

int auth_spec_parse(factum_str_t json, int64_t now_us, auth_spec *out, factum_error_t *err) {
    memset(out, 0, sizeof *out);
    for (int l = 0; l < AUTH_LIMITS; l++)
        out->max_per_second[l] = AUTH_RATE_UNSET;
    for (int d = 0; d < AUTH_DEFS; d++)
        out->max_definitions[d] = AUTH_DEF_UNSET;
    int kind, rc;
    factum_str_t v;
    if (!json_valid(json.ptr, json.len, &kind) || kind != JSON_OBJECT)
        return err_set(err, FACTUM_EINVAL,
                       "a key is a JSON object {\"role\", \"streams\", \"groups\", \"expires\", \"name\", "
                       "\"max_appends_per_second\", \"max_bytes_per_second\", \"max_groups\", \"max_projections\", "
                       "\"max_sagas\", \"max_schedules\"}");
    if ((rc = json_only_members(json, "the key", spec_members, err))) return rc;
    buf_t s = {0};
    if (!json_member_string(json, "role", &s) || !(out->role = auth_role_parse(s.ptr))) {
        buf_free(&s);
        return err_set(err, FACTUM_EINVAL, "'role' must be one of admin, operator, writer, reader, consumer");
    }
    if (json_member(json, "streams", &v, &kind) &&
        (kind != JSON_ARRAY || (rc = text_list(v, out->streams, &out->nstreams, "streams", err))))
        goto fail;
    for (int i = 0; i < out->nstreams; i++)
        if (!pattern_ok(out->streams[i])) {
            rc = err_set(err, FACTUM_EINVAL,
                         "'streams': '%s' is not a pattern (a name, PREFIX* or category:NAME; never a '$' stream)",
                         out->streams[i]);
            goto fail;
        }
    if (json_member(json, "groups", &v, &kind) &&
        (kind != JSON_ARRAY || (rc = text_list(v, out->groups, &out->ngroups, "groups", err))))
        goto fail;
    if ((out->nstreams && out->role != AUTH_WRITER && out->role != AUTH_READER) ||
        (out->ngroups && out->role != AUTH_CONSUMER)) {
        rc = err_set(err, FACTUM_EINVAL, "streams are for writer and reader keys, groups for consumer keys");
        goto fail;
    }
    if (json_member(json, "expires", &v, &kind)) {
        if (kind != JSON_STRING || !json_member_string(json, "expires", &s) ||
            auth_parse_expiry(s.ptr, now_us, &out->expires_us) || out->expires_us <= now_us) {
            rc = err_set(err, FACTUM_EINVAL,
                         "'expires' must be a duration (30d, 12h, 15m, 90s) or a future RFC 3339 time");
            goto fail;
        }
    }
    if (json_member(json, "name", &v, &kind)) {
        if (kind != JSON_STRING || !json_member_string(json, "name", &s) || s.len >= AUTH_MAX_TEXT ||
            !text_valid(s.ptr, s.len)) {
            rc = err_set(err, FACTUM_EINVAL, "'name' must be text of at most %d bytes", AUTH_MAX_TEXT - 1);
            goto fail;
        }
        memcpy(out->name, s.ptr, s.len + 1);
    }
    for (int l = 0; l < AUTH_LIMITS; l++) {
        if ((rc = number_member(json, auth_limit_member((auth_limit)l), auth_limit_max((auth_limit)l), " (no limit)",
                                &out->max_per_second[l], err)))
            goto fail;
        if (out->max_per_second[l] != AUTH_RATE_UNSET && !auth_role_grants(out->role, PERM_WRITE)) {
            rc = err_set(err, FACTUM_EINVAL, "'%s' is for keys that append (admin, writer), not %s keys",
                         auth_limit_member((auth_limit)l), auth_role_name(out->role));
            goto fail;
        }
    }
    for (int d = 0; d < AUTH_DEFS; d++) {
        if ((rc = number_member(json, auth_def_member((auth_def)d), AUTH_MAX_DEFINITIONS, " (it may define none)",
                                &out->max_definitions[d], err)))
            goto fail;
        if (out->max_definitions[d] != AUTH_DEF_UNSET && !auth_role_grants(out->role, PERM_OPERATE)) {
            rc = err_set(err, FACTUM_EINVAL, "'%s' is for keys that define (admin, operator), not %s keys",
                         auth_def_member((auth_def)d), auth_role_name(out->role));
            goto fail;
        }
    }
    buf_free(&s);
    return 0;
fail:
    buf_free(&s);
    return rc;
}

/* ---- records ---- */

static void text_array(buf_t *b, const char *key, char (*items)[AUTH_MAX_TEXT], int n) {
    buf_printf(b, ",\"%s\":[", key);
    for (int i = 0; i < n; i++) {
        if (i) buf_append(b, ",", 1);
        json_escape(b, items[i], strlen(items[i]));
    }
    buf_append(b, "]", 1);
}

/* The members of a key both its record and its listing have. */
static void key_members(const auth_key *k, buf_t *b) {
    char t[32];
    buf_printf(b, "{\"id\":\"%s\",\"role\":\"%s\"", k->id, auth_role_name(k->spec.role));
    text_array(b, "streams", (char(*)[AUTH_MAX_TEXT])k->spec.streams, k->spec.nstreams);
    text_array(b, "groups", (char(*)[AUTH_MAX_TEXT])k->spec.groups, k->spec.ngroups);
    if (k->spec.expires_us) {
        time_format_rfc3339(k->spec.expires_us, t);
        buf_printf(b, ",\"expires\":\"%s\"", t);
    }
    buf_append(b, ",\"name\":", 8);
    json_escape(b, k->spec.name, strlen(k->spec.name));
    for (int l = 0; l < AUTH_LIMITS; l++)
        if (k->spec.max_per_second[l] != AUTH_RATE_UNSET)
            buf_printf(b, ",\"%s\":%lld", auth_limit_member((auth_limit)l), (long long)k->spec.max_per_second[l]);
    for (int d = 0; d < AUTH_DEFS; d++)
        if (k->spec.max_definitions[d] != AUTH_DEF_UNSET)
            buf_printf(b, ",\"%s\":%lld", auth_def_member((auth_def)d), (long long)k->spec.max_definitions[d]);
    time_format_rfc3339(k->created_us, t);
    buf_printf(b, ",\"created\":\"%s\",\"created_by\":\"%s\"", t, k->created_by);
}

void auth_key_json(const auth_key *k, buf_t *out) {
    key_members(k, out);
    buf_printf(out, ",\"revoked\":%s}", k->revoked ? "true" : "false");
}

static void hex(const unsigned char *p, size_t n, char *out) {
    for (size_t i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", p[i]);
}

static bool unhex(factum_str_t s, unsigned char *out, size_t n) {
    if (s.len != 2 * n) return false;
    for (size_t i = 0; i < s.len; i++) {
        char c = s.ptr[i];
        int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (v < 0) return false;
        if (i % 2)
            out[i / 2] |= (unsigned char)v;
        else
            out[i / 2] = (unsigned char)(v << 4);
    }
    return true;
}

/* The slot of key id, or -1. Under the lock (either). */
static long find(auth_keys_t *ks, factum_str_t id) {
    for (size_t i = 0; i < ks->n; i++)
        if (id.len == AUTH_ID_LEN && !memcmp(ks->keys[i].id, id.ptr, AUTH_ID_LEN)) return (long)i;
    return -1;
}

/* Applies a KeyCreated or KeyRevoked record (replay, or one just written). Records that do not
   parse are skipped: the server wrote them, and nothing else can write a '$' stream. */
static void key_apply(void *ctx, const factum_event_t *e) {
    auth_keys_t *ks = ctx;
    buf_t s = {0};
    factum_str_t v;
    int kind;
    if (!json_member_string(e->data, "id", &s) || s.len != AUTH_ID_LEN) goto out;
    pthread_rwlock_wrlock(&ks->lock);
    long at = find(ks, (factum_str_t){s.ptr, s.len});
    if (str_eq(e->type, str_c("KeyRevoked"))) {
        if (at >= 0 && !ks->keys[at].revoked) {
            ks->keys[at].revoked = true;
            atomic_fetch_sub(&ks->live, 1);
        }
    } else if (str_eq(e->type, str_c("KeyCreated")) && at < 0) {
        auth_key k = {0};
        memcpy(k.id, s.ptr, AUTH_ID_LEN);
        if (!json_member_string(e->data, "hash", &s) || !unhex((factum_str_t){s.ptr, s.len}, k.hash, 32)) goto unlock;
        buf_t spec = {0};
        /* The record holds the spec's members as a client would send them, expiry as a time. */
        buf_append(&spec, "{", 1);
        for (size_t i = 0; spec_members[i]; i++)
            if (json_member(e->data, spec_members[i], &v, &kind))
                buf_printf(&spec, "%s\"%s\":%.*s", spec.len > 1 ? "," : "", spec_members[i], (int)v.len, v.ptr);
        buf_append(&spec, "}", 1);
        int bad = auth_spec_parse((factum_str_t){spec.ptr, spec.len}, 0, &k.spec, NULL);
        buf_free(&spec);
        if (bad) goto unlock;
        k.created_us = e->time_us;
        if (json_member_string(e->data, "created_by", &s) && s.len < sizeof k.created_by)
            memcpy(k.created_by, s.ptr, s.len + 1);
        if (ks->n == ks->cap) {
            size_t cap = ks->cap ? ks->cap * 2 : 16;
            auth_key *nk = realloc(ks->keys, cap * sizeof *nk);
            if (!nk) goto unlock; /* the server aborts on out of memory elsewhere; here the key is not there */
            ks->keys = nk, ks->cap = cap;
        }
        if (!(k.bucket = malloc(sizeof *k.bucket))) goto unlock;
        auth_bucket_init(k.bucket);
        ks->keys[ks->n++] = k;
        atomic_fetch_add(&ks->live, 1);
    }
unlock:
    atomic_fetch_add(&ks->gen, 1);
    pthread_rwlock_unlock(&ks->lock);
out:
    buf_free(&s);
}

int auth_keys_open(factum_t *db, auth_keys_t **out, factum_error_t *err) {
    auth_keys_t *ks = calloc(1, sizeof *ks);
    if (!ks) return err_set(err, FACTUM_ENOMEM, "out of memory");
    ks->db = db;
    pthread_rwlock_init(&ks->lock, NULL);
    pthread_mutex_init(&ks->write_mu, NULL);
    int rc = replay_stream(db, AUTH_STREAM, 0, key_apply, ks, err);
    if (rc) {
        auth_keys_close(ks);
        return rc;
    }
    *out = ks;
    return 0;
}

void auth_keys_close(auth_keys_t *ks) {
    if (!ks) return;
    pthread_rwlock_destroy(&ks->lock);
    pthread_mutex_destroy(&ks->write_mu);
    for (size_t i = 0; i < ks->n; i++) {
        auth_bucket_destroy(ks->keys[i].bucket);
        free(ks->keys[i].bucket);
    }
    free(ks->keys);
    free(ks);
}

bool auth_keys_enforced(auth_keys_t *ks) { return atomic_load_explicit(&ks->live, memory_order_acquire) > 0; }
uint64_t auth_keys_generation(auth_keys_t *ks) { return atomic_load_explicit(&ks->gen, memory_order_acquire); }

/* Appends a record to $keys and applies it once durable. */
static int record(auth_keys_t *ks, const char *type, buf_t *data, factum_error_t *err) {
    factum_event_t e = {.type = str_c(type), .data = {data->ptr, data->len}, .data_format = FACTUM_DATA_JSON};
    factum_append_result_t res;
    int rc = factum_append(ks->db, str_c(AUTH_STREAM), FACTUM_EXPECT_ANY, &e, 1, &res, err);
    if (!rc) {
        e.time_us = clock_realtime_us();
        key_apply(ks, &e);
    }
    return rc;
}

int auth_key_create(auth_keys_t *ks, const auth_spec *spec, const char *created_by, char token[AUTH_TOKEN_LEN + 1],
                    auth_key *key, factum_error_t *err) {
    unsigned char id[AUTH_ID_LEN / 2], secret[32], hash[32];
    char hash_hex[65];
    pthread_mutex_lock(&ks->write_mu);
    int rc = 0;
    do {
        if (RAND_bytes(id, sizeof id) != 1 || RAND_bytes(secret, sizeof secret) != 1) {
            rc = err_set(err, FACTUM_EIO, "no randomness to make a key from (RAND_bytes failed)");
            break;
        }
        memcpy(token, "fk_", 3);
        hex(id, sizeof id, token + 3);
        token[3 + AUTH_ID_LEN] = '_';
        hex(secret, sizeof secret, token + 4 + AUTH_ID_LEN);
        pthread_rwlock_rdlock(&ks->lock);
        long taken = find(ks, (factum_str_t){token + 3, AUTH_ID_LEN});
        pthread_rwlock_unlock(&ks->lock);
        if (taken < 0) break;
    } while (1);
    OPENSSL_cleanse(secret, sizeof secret);
    if (!rc) {
        SHA256((const unsigned char *)token, AUTH_TOKEN_LEN, hash);
        hex(hash, 32, hash_hex);
        auth_key k = {.spec = *spec, .created_us = clock_realtime_us()};
        memcpy(k.id, token + 3, AUTH_ID_LEN);
        snprintf(k.created_by, sizeof k.created_by, "%s", created_by);
        buf_t data = {0};
        key_members(&k, &data);
        buf_printf(&data, ",\"hash\":\"%s\"}", hash_hex);
        rc = record(ks, "KeyCreated", &data, err);
        buf_free(&data);
        if (!rc && key) {
            pthread_rwlock_rdlock(&ks->lock);
            long at = find(ks, (factum_str_t){k.id, AUTH_ID_LEN});
            *key = at >= 0 ? ks->keys[at] : k;
            pthread_rwlock_unlock(&ks->lock);
        }
    }
    if (rc) OPENSSL_cleanse(token, AUTH_TOKEN_LEN + 1);
    pthread_mutex_unlock(&ks->write_mu);
    return rc;
}

int auth_key_revoke(auth_keys_t *ks, const char *id, const char *by, factum_error_t *err) {
    pthread_mutex_lock(&ks->write_mu);
    pthread_rwlock_rdlock(&ks->lock);
    long at = find(ks, str_c(id));
    bool revoked = at >= 0 && ks->keys[at].revoked;
    pthread_rwlock_unlock(&ks->lock);
    int rc = 0;
    if (at < 0) {
        rc = err_set(err, FACTUM_ENOTFOUND, "no key '%.*s'", AUTH_ID_LEN * 2, id);
    } else if (!revoked) {
        buf_t data = {0};
        buf_printf(&data, "{\"id\":\"%s\",\"revoked_by\":\"%s\"}", ks->keys[at].id, by);
        rc = record(ks, "KeyRevoked", &data, err);
        buf_free(&data);
    }
    pthread_mutex_unlock(&ks->write_mu);
    return rc;
}

int auth_key_get(auth_keys_t *ks, const char *id, auth_key *out) {
    pthread_rwlock_rdlock(&ks->lock);
    long i = find(ks, str_c(id));
    if (i >= 0) *out = ks->keys[i];
    pthread_rwlock_unlock(&ks->lock);
    return i >= 0 ? 0 : FACTUM_ENOTFOUND;
}

void auth_keys_each(auth_keys_t *ks, void (*fn)(void *ctx, const auth_key *k), void *ctx) {
    pthread_rwlock_rdlock(&ks->lock);
    for (size_t i = 0; i < ks->n; i++)
        fn(ctx, &ks->keys[i]);
    pthread_rwlock_unlock(&ks->lock);
}

/* ---- checks ---- */

bool auth_key_live(const auth_key *k, int64_t now_us) {
    return !k->revoked && (!k->spec.expires_us || now_us < k->spec.expires_us);
}

auth_result auth_authenticate(auth_keys_t *ks, factum_str_t token, int64_t now_us, auth_who *who) {
    if (token.len != AUTH_TOKEN_LEN || memcmp(token.ptr, "fk_", 3) || token.ptr[3 + AUTH_ID_LEN] != '_')
        return AUTH_MALFORMED;
    unsigned char hash[32];
    SHA256((const unsigned char *)token.ptr, token.len, hash);
    pthread_rwlock_rdlock(&ks->lock);
    long at = find(ks, (factum_str_t){token.ptr + 3, AUTH_ID_LEN});
    auth_result r = AUTH_OK;
    if (at < 0 || CRYPTO_memcmp(hash, ks->keys[at].hash, 32))
        r = AUTH_UNKNOWN;
    else if (!auth_key_live(&ks->keys[at], now_us))
        r = ks->keys[at].revoked ? AUTH_REVOKED : AUTH_EXPIRED;
    if (r == AUTH_OK) {
        who->slot = (uint32_t)at;
        who->gen = atomic_load(&ks->gen);
        who->expires_us = ks->keys[at].spec.expires_us;
        memcpy(who->id, ks->keys[at].id, AUTH_ID_LEN + 1);
        memcpy(who->max_per_second, ks->keys[at].spec.max_per_second, sizeof who->max_per_second);
        who->bucket = ks->keys[at].bucket;
        memcpy(who->max_definitions, ks->keys[at].spec.max_definitions, sizeof who->max_definitions);
    }
    pthread_rwlock_unlock(&ks->lock);
    return r;
}

static bool stream_matches(const auth_spec *s, factum_str_t stream) {
    if (!s->nstreams) return true;
    for (int i = 0; i < s->nstreams; i++) {
        const char *p = s->streams[i];
        size_t n = strlen(p);
        if (!strncmp(p, "category:", 9)) {
            if (stream_in_category(stream, (factum_str_t){p + 9, n - 9})) return true;
        } else if (p[n - 1] == '*') {
            if (stream.len >= n - 1 && !memcmp(stream.ptr, p, n - 1)) return true;
        } else if (str_eq(stream, (factum_str_t){p, n})) {
            return true;
        }
    }
    return false;
}

static bool group_matches(const auth_spec *s, factum_str_t group) {
    if (!s->ngroups) return true;
    for (int i = 0; i < s->ngroups; i++)
        if (str_eq(group, str_c(s->groups[i]))) return true;
    return false;
}

auth_result auth_authorize(auth_keys_t *ks, const auth_who *who, int64_t now_us, auth_perm perm, factum_str_t scope) {
    if (who->expires_us && now_us >= who->expires_us) return AUTH_EXPIRED;
    pthread_rwlock_rdlock(&ks->lock);
    auth_result r = AUTH_OK;
    if (who->gen != atomic_load(&ks->gen) || who->slot >= ks->n) {
        r = AUTH_STALE;
    } else {
        const auth_key *k = &ks->keys[who->slot];
        const auth_spec *s = &k->spec;
        if ((perm == PERM_READ || perm == PERM_WRITE) && scope.len && scope.ptr[0] == '$') perm = PERM_ADMIN;
        if (k->revoked)
            r = AUTH_REVOKED;
        else if (!auth_spec_grants(s, perm))
            r = AUTH_FORBIDDEN;
        else if ((perm == PERM_READ || perm == PERM_WRITE) && !stream_matches(s, scope))
            r = AUTH_FORBIDDEN;
        else if (perm == PERM_CONSUME && !group_matches(s, scope))
            r = AUTH_FORBIDDEN;
    }
    pthread_rwlock_unlock(&ks->lock);
    return r;
}

/* ---- rate limits ---- */

auth_rate_result auth_keys_take(auth_keys_t *ks, const auth_who *who, const uint64_t per_second[AUTH_LIMITS],
                                const uint64_t units[AUTH_LIMITS], uint64_t now_ns, auth_rate_verdict *v) {
    auth_rate_result r = auth_bucket_take(who->bucket, per_second, units, now_ns, v);
    if (r != AUTH_RATE_OK) atomic_fetch_add_explicit(&ks->refused[v->limit], 1, memory_order_relaxed);
    return r;
}

uint64_t auth_keys_refused(auth_keys_t *ks, auth_limit l) {
    return atomic_load_explicit(&ks->refused[l], memory_order_relaxed);
}
