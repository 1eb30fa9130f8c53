#!/bin/sh
# bench/projections.sh — `make bench`, projections: starts `factum serve` and a PostgreSQL 15
# (the Debian package, in a temporary folder, default settings) and runs bench/bench_proj.c
# against both in the same run. EVENTS=N shortens it.
set -eu
BIN=${BIN:-build/factum}
GEN=${GEN:-build/bench-proj}
EVENTS=${EVENTS:-1000000}
. "$(dirname "$0")/lib.sh"
start_factum
start_pg "-c listen_addresses=''"
echo "postgresql: $("$PGBIN/postgres" --version), default settings, Unix socket"
"$GEN" --port "$PORT" --pg "host=$T/pg user=postgres dbname=postgres" --events "$EVENTS" --dir "$T"
