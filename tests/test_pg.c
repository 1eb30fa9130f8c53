/*
 * test_pg.c — see test_pg.h.
 */
#include "test_pg.h"

#include <libpq-fe.h>
#include <stdlib.h>

static void pg_start(pg *p) {
    char cmd[1200];
    snprintf(cmd, sizeof cmd,
             "runuser -u postgres -- %s/pg_ctl -D %s/data -l %s/log -w -o \"-c listen_addresses='' -k %s -c fsync=off "
             "%s\" start >/dev/null",
             p->bin, p->dir, p->dir, p->dir, p->opts);
    CHECK_MSG(system(cmd) == 0, "PostgreSQL did not start: %s", cmd);
}

void pg_up_with(pg *p, const char *opts) {
    FILE *f = popen("ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1", "r");
    CHECK(f && fgets(p->bin, sizeof p->bin, f));
    pclose(f);
    p->bin[strcspn(p->bin, "\n")] = 0;
    snprintf(p->opts, sizeof p->opts, "%s", opts);
    snprintf(p->dir, sizeof p->dir, "/tmp/factum-test-pg-XXXXXX");
    CHECK(mkdtemp(p->dir));
    char cmd[1200];
    snprintf(
        cmd, sizeof cmd,
        "chmod 755 %s && chown postgres %s && runuser -u postgres -- %s/initdb -D %s/data -A trust >/dev/null 2>&1",
        p->dir, p->dir, p->bin, p->dir);
    CHECK_MSG(system(cmd) == 0, "initdb failed: %s", cmd);
    pg_start(p);
    snprintf(p->conninfo, sizeof p->conninfo, "host=%s user=postgres dbname=postgres", p->dir);
}

void pg_up(pg *p) { pg_up_with(p, ""); }

void pg_restart(pg *p) {
    char cmd[800];
    snprintf(cmd, sizeof cmd, "runuser -u postgres -- %s/pg_ctl -D %s/data -m immediate stop >/dev/null 2>&1", p->bin,
             p->dir);
    if (system(cmd)) {
    }
    pg_start(p);
}

void pg_down(pg *p) {
    char cmd[800];
    snprintf(cmd, sizeof cmd,
             "runuser -u postgres -- %s/pg_ctl -D %s/data -m immediate stop >/dev/null 2>&1; rm -rf %s", p->bin, p->dir,
             p->dir);
    if (system(cmd)) {
    }
}

void pg_sql(const pg *p, const char *sql, char *out, size_t cap) {
    PGconn *c = PQconnectdb(p->conninfo);
    CHECK_MSG(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
    PGresult *r = PQexec(c, sql);
    CHECK_MSG(PQresultStatus(r) == PGRES_TUPLES_OK || PQresultStatus(r) == PGRES_COMMAND_OK, "%s: %s", sql,
              PQresultErrorMessage(r));
    if (out) snprintf(out, cap, "%s", PQntuples(r) && PQnfields(r) ? PQgetvalue(r, 0, 0) : "");
    PQclear(r);
    PQfinish(c);
}
