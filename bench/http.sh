#!/bin/sh
# bench/http.sh — `make bench`, server part: starts `factum serve` (plain HTTP, and a second one
# with TLS) and a PostgreSQL 15 (the Debian package, in a temporary folder, fsync and
# synchronous_commit on) and runs the load generator (bench/bench_http.c) against them in the
# same run. QUICK=1 shortens it.
set -eu
BIN=${BIN:-build/factum}
GEN=${GEN:-build/bench-http}
SECONDS_EACH=${SECONDS_EACH:-3}
CATCHUP=${CATCHUP:-1000000}
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true  # 1,000 idle connections need more than 1024 fds
. "$(dirname "$0")/lib.sh"
# A server that holds a key: the appends again with it over HTTP, to see what the check costs;
# and one over TLS with a key, for HTTPS-with-a-key beside plain HTTP without one.
KTOKEN=$("$BIN" --data-dir "$T/factum-key" key create --role writer 2>/dev/null)
serve_factum factum-key --max-connections-per-address 10000
KPORT=$SERVED_PORT
start_factum_tls --max-connections-per-address 10000
# The main server last: SPID is its process. The load comes from one address (127.0.0.1).
start_factum --max-connections-per-address 10000
start_pg "-p $PG_PORT -c listen_addresses=127.0.0.1 -c fsync=on -c synchronous_commit=on -c max_connections=200"
CONN="host=127.0.0.1 port=$PG_PORT user=postgres dbname=postgres"
runuser -u postgres -- psql -q -h 127.0.0.1 -p "$PG_PORT" -d postgres -c \
    "CREATE TABLE events (position bigserial PRIMARY KEY, stream text NOT NULL, revision bigint NOT NULL,
                          type text NOT NULL, data jsonb, UNIQUE (stream, revision));" >/dev/null
echo "postgresql: $("$PGBIN/postgres" --version), synchronous_commit=on, one INSERT per transaction over TCP loopback"
"$GEN" --port "$PORT" --pid "$SPID" --tls-port "$TLS_PORT" --tls-token "$TLS_TOKEN" --pg "$CONN" \
    --seconds "$SECONDS_EACH" --catchup "$CATCHUP" --key-port "$KPORT" --token "$KTOKEN"
