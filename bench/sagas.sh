#!/bin/sh
# bench/sagas.sh — `make bench`, sagas: starts `factum serve` in a temporary folder and runs
# bench/bench_sagas.c against it. SAGAS=N sets the throughput run's size (default 20000).
set -eu
BIN=${BIN:-build/factum}
GEN=${GEN:-build/bench-sagas}
SAGAS=${SAGAS:-20000}
T=$(mktemp -d /tmp/factum-bench-sagas.XXXXXX)
SPID=
cleanup() {
    [ -n "$SPID" ] && kill "$SPID" 2>/dev/null && wait "$SPID" 2>/dev/null || true
    rm -rf "$T"
}
trap cleanup EXIT INT TERM
"$BIN" --data-dir "$T/factum" serve --listen 127.0.0.1:0 >"$T/serve.out" 2>"$T/serve.err" &
SPID=$!
for i in $(seq 50); do grep -q listening "$T/serve.out" 2>/dev/null && break; sleep 0.1; done
PORT=$(sed -n 's/.*:\([0-9]*\)$/\1/p' "$T/serve.out")
"$GEN" --port "$PORT" --sagas "$SAGAS"
