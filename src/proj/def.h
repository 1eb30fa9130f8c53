/*
 * def.h — a projection's parsed definition, shared by its parser and checks (def.c) and its
 * runner (projector.c). Private to src/proj.
 */
#ifndef FACTUM_PROJ_DEF_H
#define FACTUM_PROJ_DEF_H

#include "projector.h"
#include "target.h"

#define MAX_NAMES 64       /* types or categories of a source */
#define MAX_SETUP 64       /* setup statements */
#define MAX_STATEMENTS 256 /* handler statements in all */
#define MAX_STATEMENT_BYTES (64u << 10)

enum { SRC_TYPES, SRC_CATEGORIES, SRC_STREAM };

typedef struct handler {
    char *type;
    size_t first, n; /* its statements in d->stmts */
} handler;

struct proj_def {
    char name[PROJ_MAX_NAME + 1];
    buf_t json;    /* as given: what is recorded and restarted from */
    buf_t shown;   /* as answered: a PostgreSQL connection string's password replaced (make_shown in def.c) */
    bool password; /* where (PostgreSQL) holds a password: given, or taken back from its file */
    int src;
    char **names; /* the types, the categories, or the one stream */
    size_t nnames;
    const target_ops *ops;
    char *where;
    char *root; /* the data folder: a SQLite file stays inside it; a password is kept under it */
    bool default_file;
    char **setup;
    size_t nsetup;
    sql_stmt *stmts;
    char **texts; /* each statement as written */
    size_t nstmts;
    handler *handlers;
    size_t nhandlers;
};

/* Runs the setup and prepares every handler statement, inside the caller's transaction on t;
   with reset, first drops what the setup made and the checkpoint. */
int proj_def_ready(const proj_def *d, target *t, bool reset, factum_error_t *err);
/* A SQLite target's file is inside its root folder, after symlinks: its folder resolves there
   and the file, if it exists, is a regular file, not a link. FACTUM_EINVAL otherwise (also when
   its folder is missing). The default file, made from a checked name, always is. */
int proj_def_confined(const proj_def *d, factum_error_t *err);
/* The parent folder of the definition's default SQLite file, made if missing (0 otherwise). */
int proj_def_make_parent(const proj_def *d, factum_error_t *err);

/*
 * A connection string rebuilt from libpq's parse of it (so the URI form's "user:secret@" is
 * caught too) with the password's value replaced by "*****"; a string it cannot parse is
 * replaced whole. *had_password says whether it held one (and what it was, not "*****").
 * Appended to out. 0 or FACTUM_ENOMEM.
 */
int proj_conninfo_redact(const char *conninfo, buf_t *out, bool *had_password);

#endif
