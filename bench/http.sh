#!/bin/sh
# bench/http.sh — `make bench`, server part: starts `factum serve` and a PostgreSQL 15 (the
# Debian package, in a temporary folder, fsync and synchronous_commit on) and runs the load
# generator (bench/bench_http.c) against both in the same run. QUICK=1 shortens it.
set -eu
BIN=${BIN:-build/factum}
GEN=${GEN:-build/bench-http}
SECONDS_EACH=${SECONDS_EACH:-3}
CATCHUP=${CATCHUP:-1000000}
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true  # 1,000 idle connections need more than 1024 fds
T=$(mktemp -d /tmp/factum-bench.XXXXXX)
chmod 755 "$T"
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
SPID=
cleanup() {
    [ -n "$SPID" ] && kill "$SPID" 2>/dev/null && wait "$SPID" 2>/dev/null || true
    runuser -u postgres -- "$PGBIN/pg_ctl" -D "$T/pg" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$T"
}
trap cleanup EXIT INT TERM

"$BIN" --data-dir "$T/factum" serve --listen 127.0.0.1:0 >"$T/serve.out" 2>"$T/serve.err" &
SPID=$!
for i in $(seq 50); do grep -q listening "$T/serve.out" 2>/dev/null && break; sleep 0.1; done
PORT=$(sed -n 's/.*:\([0-9]*\)$/\1/p' "$T/serve.out")

mkdir "$T/pg" && chown postgres "$T/pg"
runuser -u postgres -- "$PGBIN/initdb" -D "$T/pg" -A trust >/dev/null
pg_start() {
    runuser -u postgres -- "$PGBIN/pg_ctl" -D "$T/pg" -l "$T/pg/log" -w -o \
        "-p 55432 -k $T/pg -c listen_addresses=127.0.0.1 -c fsync=on -c synchronous_commit=on -c max_connections=200" \
        start >/dev/null
}
# Once seen failing to start right after the engine bench; a second try, then its log if not.
pg_start || { sleep 2; pg_start; } || { tail -5 "$T/pg/log" >&2; exit 1; }
CONN="host=127.0.0.1 port=55432 user=postgres dbname=postgres"
runuser -u postgres -- psql -q -h 127.0.0.1 -p 55432 -d postgres -c \
    "CREATE TABLE events (position bigserial PRIMARY KEY, stream text NOT NULL, revision bigint NOT NULL,
                          type text NOT NULL, data jsonb, UNIQUE (stream, revision));" >/dev/null
echo "postgresql: $("$PGBIN/postgres" --version), synchronous_commit=on, one INSERT per transaction over TCP loopback"
"$GEN" --port "$PORT" --pid "$SPID" --pg "$CONN" --seconds "$SECONDS_EACH" --catchup "$CATCHUP"
