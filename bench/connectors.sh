#!/bin/sh
# bench/connectors.sh — `make bench`, connectors: starts `factum serve` and a PostgreSQL (the
# Debian package, in a temporary folder, wal_level=logical) and runs bench/bench_conn.c against
# both. EVENTS=N and ROWS=R shorten it.
set -eu
BIN=${BIN:-build/factum}
GEN=${GEN:-build/bench-conn}
EVENTS=${EVENTS:-20000}
ROWS=${ROWS:-40000}
. "$(dirname "$0")/lib.sh"
start_factum
start_pg "-c listen_addresses='' -c wal_level=logical"
echo "postgresql: $("$PGBIN/postgres" --version), wal_level=logical, Unix socket"
"$GEN" --port "$PORT" --pg "host=$T/pg user=postgres dbname=postgres" --events "$EVENTS" --rows "$ROWS"
