#!/bin/sh
# bench/groups.sh — `make bench`, consumer groups part: starts `factum serve` and nats-server
# (Debian's, JetStream with file storage) in temporary folders and runs bench/bench_groups.c
# against both. EVENTS=N sets the throughput run's size (default 100000).
set -eu
BIN=${BIN:-build/factum}
GEN=${GEN:-build/bench-groups}
EVENTS=${EVENTS:-100000}
T=$(mktemp -d /tmp/factum-bench-groups.XXXXXX)
SPID= NPID=
cleanup() {
    [ -n "$SPID" ] && kill "$SPID" 2>/dev/null && wait "$SPID" 2>/dev/null || true
    [ -n "$NPID" ] && kill "$NPID" 2>/dev/null && wait "$NPID" 2>/dev/null || true
    rm -rf "$T"
}
trap cleanup EXIT INT TERM
"$BIN" --data-dir "$T/factum" serve --listen 127.0.0.1:0 >"$T/serve.out" 2>"$T/serve.err" &
SPID=$!
nats-server -js -sd "$T/nats" -a 127.0.0.1 -p 54222 >"$T/nats.log" 2>&1 &
NPID=$!
for i in $(seq 50); do grep -q listening "$T/serve.out" 2>/dev/null && grep -q "Server is ready" "$T/nats.log" 2>/dev/null && break; sleep 0.1; done
PORT=$(sed -n 's/.*:\([0-9]*\)$/\1/p' "$T/serve.out")
echo "nats-server $(nats-server --version | sed 's/nats-server: //'), JetStream file storage (its default: fsync every 2 minutes, not per message)"
"$GEN" --port "$PORT" --nats nats://127.0.0.1:54222 --events "$EVENTS"
