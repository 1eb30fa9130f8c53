#!/bin/sh
# bench/groups.sh — `make bench`, consumer groups part: starts `factum serve` and nats-server
# (Debian's, JetStream with file storage) in temporary folders and runs bench/bench_groups.c
# against both. EVENTS=N sets the throughput run's size (default 100000).
set -eu
BIN=${BIN:-build/factum}
GEN=${GEN:-build/bench-groups}
EVENTS=${EVENTS:-100000}
. "$(dirname "$0")/lib.sh"
start_factum
nats-server -js -sd "$T/nats" -a 127.0.0.1 -p "$NATS_PORT" >"$T/nats.log" 2>&1 &
KILL_PIDS="$KILL_PIDS $!"
for i in $(seq 50); do grep -q "Server is ready" "$T/nats.log" 2>/dev/null && break; sleep 0.1; done
echo "nats-server $(nats-server --version | sed 's/nats-server: //'), JetStream file storage (its default: fsync every 2 minutes, not per message)"
"$GEN" --port "$PORT" --nats "nats://127.0.0.1:$NATS_PORT" --events "$EVENTS"
