#!/bin/sh
# bench/projections.sh — `make bench`, projections: starts `factum serve` and a PostgreSQL 15
# (the Debian package, in a temporary folder, default settings) and runs bench/bench_proj.c
# against both in the same run. EVENTS=N shortens it.
set -eu
BIN=${BIN:-build/factum}
GEN=${GEN:-build/bench-proj}
EVENTS=${EVENTS:-1000000}
T=$(mktemp -d /tmp/factum-bench-proj.XXXXXX)
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
runuser -u postgres -- "$PGBIN/pg_ctl" -D "$T/pg" -l "$T/pg/log" -w -o "-c listen_addresses='' -k $T/pg" start >/dev/null
echo "postgresql: $("$PGBIN/postgres" --version), default settings, Unix socket"
"$GEN" --port "$PORT" --pg "host=$T/pg user=postgres dbname=postgres" --events "$EVENTS" --dir "$T"
