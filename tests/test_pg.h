/*
 * test_pg.h — a PostgreSQL of its own for one test: initdb in a temporary folder, listening on a
 * Unix socket there (no TCP port to collide on). Debian's package; the test runs as root and
 * starts it as the postgres user.
 */
#ifndef FACTUM_TEST_PG_H
#define FACTUM_TEST_PG_H

#include "test.h"

typedef struct pg {
    char dir[128], bin[200];
    char conninfo[300];
    char opts[200]; /* extra server options ("-c wal_level=logical") */
} pg;

/* Starts one (fails the test if it cannot). */
void pg_up(pg *p);
/* The same with extra server options, e.g. "-c wal_level=logical". */
void pg_up_with(pg *p, const char *opts);
/* Stops it at once (as a crash would) and starts it again on the same folder. */
void pg_restart(pg *p);
/* Stops it at once and removes its folder. */
void pg_down(pg *p);
/* One SQL statement on a fresh connection; its first value as text into out (if any). */
void pg_sql(const pg *p, const char *sql, char *out, size_t cap);

#endif
