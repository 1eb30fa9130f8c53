/*
 * keys.h — API keys: who may call the server, and what each may do (docs/security.md).
 *
 * A key is a role (admin, operator, writer, reader, consumer), optional stream patterns
 * ("order-*" a prefix, "category:order", or one exact name; none: every stream), optional
 * consumer-group names (none: every group), an optional expiry, and for keys that write optional
 * rate limits (appends and body bytes per second; rate.h: each key has its bucket here). Its token, "fk_ID_SECRET" with
 * 32 random bytes of secret, is shown once when it is made; the table keeps only its SHA-256,
 * compared in constant time. Keys live as records in the system stream $keys (KeyCreated,
 * KeyRevoked), replayed at open; a change is decided here, appended, then applied by the one
 * function replay uses too.
 *
 * The engine returns codes and structs; the server (src/server/guard.c) turns them into 401 and
 * 403 and keeps what a connection last proved (auth_who) so a repeat costs no hash.
 *
 * Thread-safety: a rwlock; checks take it for reading and are short; create and revoke are
 * serialised and take it for writing only to apply. The generation moves on every change: a
 * caller's auth_who from an older generation is checked again (auth_authorize says so).
 */
#ifndef FACTUM_AUTH_KEYS_H
#define FACTUM_AUTH_KEYS_H

#include "../base/base.h"
#include "rate.h"

#define AUTH_STREAM "$keys"
#define AUTH_ID_LEN 12           /* hex characters of a key id */
#define AUTH_TOKEN_LEN 80        /* "fk_" ID "_" 64 hex: the only tokens there are */
#define AUTH_MAX_CREDENTIAL 1024 /* bytes of an Authorization value looked at; longer is refused unread */
#define AUTH_MAX_PATTERNS 16     /* stream patterns, and group names, of one key */
#define AUTH_MAX_TEXT 128        /* bytes of a pattern, a group name or a key's name (with the NUL) */

typedef enum auth_role { AUTH_ADMIN = 1, AUTH_OPERATOR, AUTH_WRITER, AUTH_READER, AUTH_CONSUMER } auth_role;

/* What a route asks of its caller (route.c's table names one per route). PERM_UNDECLARED is
   no permission at all: a route that has it is a bug the authorization matrix test reports. */
typedef enum auth_perm {
    PERM_UNDECLARED = 0,
    PERM_PUBLIC,   /* the dashboard's static files (/ui/...): no key, from anywhere; they hold no data */
    PERM_HEALTH,   /* /health, /metrics, /: no key from loopback, or any valid key */
    PERM_READ,     /* read or subscribe to one stream (scope: the stream) */
    PERM_READ_ALL, /* $all, listings, projection queries: reading every stream */
    PERM_WRITE,    /* append to one stream, its snapshot (scope: the stream) */
    PERM_CONSUME,  /* pull, push, ack, nack of one consumer group (scope: the group) */
    PERM_OPERATE,  /* definitions (groups, projections, sagas, schedules), scavenge, metadata, deletes */
    PERM_ADMIN,    /* keys, system streams ($audit, $keys, ...) */
    PERM_COUNT
} auth_perm;

/* "read", "write", ... (what a 403 names). */
const char *auth_perm_name(auth_perm p);
/* "admin", ...; and the role named s (0 if none). */
const char *auth_role_name(auth_role r);
auth_role auth_role_parse(const char *s);
/* Whether role r may have permission p at all (its patterns aside): the table of docs/security.md. */
bool auth_role_grants(auth_role r, auth_perm p);

/* A key's own maximums on definitions (docs/limits.md, "Keys"): how many groups, projections,
   sagas and pending schedules it may have made and not deleted. In the order of the server's
   LIMIT_* kinds. */
typedef enum auth_def { AUTH_DEF_GROUPS, AUTH_DEF_PROJECTIONS, AUTH_DEF_SAGAS, AUTH_DEF_SCHEDULES, AUTH_DEFS } auth_def;
#define AUTH_DEF_UNSET (-1)            /* no maximum of the key's own: only the server's */
#define AUTH_MAX_DEFINITIONS 1000000LL /* the largest a key may set (0: it may define none) */
/* "max_groups", "max_projections", "max_sagas", "max_schedules" (the key's JSON member). */
const char *auth_def_member(auth_def d);

/* What a key may do, as asked for (the body of POST /admin/keys, `factum key create`). */
typedef struct auth_spec {
    auth_role role;
    int nstreams, ngroups;
    char streams[AUTH_MAX_PATTERNS][AUTH_MAX_TEXT];
    char groups[AUTH_MAX_PATTERNS][AUTH_MAX_TEXT];
    int64_t expires_us; /* 0: never */
    char name[AUTH_MAX_TEXT];
    /* by auth_limit: AUTH_RATE_UNSET (the server's default), 0 (no limit), or N per second */
    int64_t max_per_second[AUTH_LIMITS];
    /* by auth_def: AUTH_DEF_UNSET (only the server's limit), or at most N new definitions */
    int64_t max_definitions[AUTH_DEFS];
} auth_spec;

/* Whether a key of spec may have permission p anywhere: its role grants it, and read-all only
   to a key without stream patterns. Its patterns still narrow read, write and consume. */
bool auth_spec_grants(const auth_spec *s, auth_perm p);

/*
 * Parses {"role", "streams": [...], "groups": [...], "expires": "30d"|"12h"|RFC 3339, "name",
 * "max_appends_per_second": N, "max_bytes_per_second": N, "max_groups": N, "max_projections": N,
 * "max_sagas": N, "max_schedules": N} into *out (now_us places a duration). FACTUM_EINVAL with
 * the reason for anything else: an unknown member, an unknown role, a bad pattern, too many, an
 * expiry in the past, a limit that is not a whole number from 0 to its maximum (rate.h,
 * AUTH_MAX_DEFINITIONS), a rate limit on a key that cannot write, a maximum on definitions on a
 * key that cannot define (only admin and operator keys can).
 */
int auth_spec_parse(factum_str_t json, int64_t now_us, auth_spec *out, factum_error_t *err);

/* One key as the table holds it. */
typedef struct auth_key {
    char id[AUTH_ID_LEN + 1];
    unsigned char hash[32]; /* SHA-256 of the token */
    auth_spec spec;
    int64_t created_us;
    char created_by[AUTH_ID_LEN + 8]; /* a key id, "anonymous" or "local" */
    bool revoked;
    auth_bucket *bucket; /* its rate limits' state: the table's, until auth_keys_close */
} auth_key;

/* Whether k may be used at now_us: not revoked, not expired. */
bool auth_key_live(const auth_key *k, int64_t now_us);

/* {"id","role","streams","groups","expires","name","max_appends_per_second",
   "max_bytes_per_second","max_groups","max_projections","max_sagas","max_schedules","created",
   "created_by","revoked"}: a key without its hash (what listings show). A limit the key does
   not set is not there (the server's default, or only the server's limit, applies). */
void auth_key_json(const auth_key *k, buf_t *out);

typedef struct auth_keys auth_keys_t;

/* Opens the table of db's keys ($keys replayed). 0, or the read's error. */
int auth_keys_open(factum_t *db, auth_keys_t **out, factum_error_t *err);
void auth_keys_close(auth_keys_t *ks);

/* Whether any unrevoked key exists: until one does, nothing is checked. One atomic load. */
bool auth_keys_enforced(auth_keys_t *ks);
/* Moves on with every create and revoke. */
uint64_t auth_keys_generation(auth_keys_t *ks);

/*
 * Makes a key: a fresh id and secret, KeyCreated appended (and durable) to $keys, then applied.
 * token gets the token (AUTH_TOKEN_LEN + NUL), shown to nobody else ever; *key a copy of the
 * key. created_by: who asked (a key id, or "local" from the command line).
 */
int auth_key_create(auth_keys_t *ks, const auth_spec *spec, const char *created_by, char token[AUTH_TOKEN_LEN + 1],
                    auth_key *key, factum_error_t *err);
/* Revokes key id (KeyRevoked appended, then applied): FACTUM_ENOTFOUND for no such key; a key
   revoked already is 0 and writes nothing. */
int auth_key_revoke(auth_keys_t *ks, const char *id, const char *by, factum_error_t *err);
/* A copy of key id into *out: 0, or FACTUM_ENOTFOUND. */
int auth_key_get(auth_keys_t *ks, const char *id, auth_key *out);
/* Calls fn for every key (revoked ones too), oldest first, under the read lock. */
void auth_keys_each(auth_keys_t *ks, void (*fn)(void *ctx, const auth_key *k), void *ctx);

/* Why credentials were refused (the audit's reason; a 401 never says which). */
typedef enum auth_result {
    AUTH_OK = 0,
    AUTH_MISSING,
    AUTH_MALFORMED, /* not "Bearer TOKEN", a token of the wrong shape, too long, or in the query */
    AUTH_UNKNOWN,   /* no key with that id, or the secret does not match */
    AUTH_REVOKED,
    AUTH_EXPIRED,
    AUTH_FORBIDDEN, /* a valid key without the permission (403) */
    AUTH_STALE,     /* the table changed since who was proved: authenticate again */
} auth_result;
const char *auth_result_name(auth_result r);

/* What a caller proved: the key (its slot and id) in a generation of the table, its rate
   limits as the key sets them (AUTH_RATE_UNSET, 0 or N) with its bucket, and its maximums on
   definitions (AUTH_DEF_UNSET or N). */
typedef struct auth_who {
    uint32_t slot;
    uint64_t gen;
    int64_t expires_us;
    char id[AUTH_ID_LEN + 1];
    int64_t max_per_second[AUTH_LIMITS];
    auth_bucket *bucket;
    int64_t max_definitions[AUTH_DEFS];
} auth_who;

/* Checks a token (one SHA-256) at now_us: AUTH_OK with *who, or why not. */
auth_result auth_authenticate(auth_keys_t *ks, factum_str_t token, int64_t now_us, auth_who *who);
/*
 * Whether who may have perm on scope (a stream name for PERM_READ / PERM_WRITE, a group name
 * for PERM_CONSUME, ignored otherwise) at now_us: AUTH_OK, AUTH_FORBIDDEN, AUTH_REVOKED,
 * AUTH_EXPIRED, or AUTH_STALE when the table changed since who was proved. No hash. A scope
 * naming a system stream ('$...') needs PERM_ADMIN whatever perm asks.
 */
auth_result auth_authorize(auth_keys_t *ks, const auth_who *who, int64_t now_us, auth_perm perm, factum_str_t scope);

/*
 * Takes a request's units (events, body bytes) from who's bucket at now_ns (CLOCK_MONOTONIC),
 * against per_second (by auth_limit; 0: no limit), which the caller resolved from who's own
 * limits and the server's defaults. auth_bucket_take's answer; each refusal is counted (by the
 * limit that refused) for auth_keys_refused. who must hold a proof (auth_authenticate's).
 */
auth_rate_result auth_keys_take(auth_keys_t *ks, const auth_who *who, const uint64_t per_second[AUTH_LIMITS],
                                const uint64_t units[AUTH_LIMITS], uint64_t now_ns, auth_rate_verdict *v);
/* Requests refused by a limit of kind l (too big, or too many now) since the table opened. */
uint64_t auth_keys_refused(auth_keys_t *ks, auth_limit l);

/* "30d", "12h", "15m", "90s" from now_us, or an RFC 3339 time, into *us. 0 or -1. */
int auth_parse_expiry(const char *s, int64_t now_us, int64_t *us);

#endif
