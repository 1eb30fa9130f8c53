#!/bin/sh
# bench/cluster.sh — `make bench`, cluster part (issue 18, docs/cluster.md): three nats-server
# (one JetStream cluster, file storage) and three `factum serve --cluster` nodes on loopback,
# beside one standalone `factum serve`, in the same run. Appends through the leader
# (bench-http --only appends) beside the standalone server and beside raw JetStream publishing
# of the same payloads (bench-js: the C client, R3, the same concurrency, async publish); then
# the failover time (leader killed with SIGKILL -> first 201 from a surviving node), KILLS times.
# SECONDS_EACH and KILLS shorten it (QUICK=1 in the Makefile).
set -eu
BIN=${BIN:-build/factum}
GEN=${GEN:-build/bench-http}
JS=${JS:-build/bench-js}
SECONDS_EACH=${SECONDS_EACH:-3}
KILLS=${KILLS:-5}
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
. "$(dirname "$0")/lib.sh"
NPORT0=24231 RPORT0=24241 HPORT0=27441
URLS= ROUTES=
for i in 0 1 2; do
    URLS="$URLS${URLS:+,}nats://127.0.0.1:$((NPORT0 + i))"
    ROUTES="$ROUTES${ROUTES:+,}nats://127.0.0.1:$((RPORT0 + i))"
done
for i in 0 1 2; do
    nats-server -a 127.0.0.1 -p $((NPORT0 + i)) -js -sd "$T/nats$i" -n "n$i" --cluster_name factum-bench \
        --cluster "nats://127.0.0.1:$((RPORT0 + i))" --routes "$ROUTES" >"$T/nats$i.log" 2>&1 &
    KILL_PIDS="$KILL_PIDS $!"
done
for i in 0 1 2; do
    for k in $(seq 100); do grep -q "Server is ready" "$T/nats$i.log" 2>/dev/null && break; sleep 0.1; done
done
NODE_PID0= NODE_PID1= NODE_PID2=
node_start() {
    "$BIN" --data-dir "$T/node$1" serve --listen "127.0.0.1:$((HPORT0 + $1))" --cluster "$URLS" --node "node$1" \
        --max-connections-per-address 10000 >>"$T/node$1.out" 2>>"$T/node$1.err" &
    eval "NODE_PID$1=$!"
    KILL_PIDS="$KILL_PIDS $!"
}
health() { curl -s "http://127.0.0.1:$((HPORT0 + $1))/health" 2>/dev/null || true; }
# The node that says it leads, or nothing.
leader() {
    for i in 0 1 2; do health "$i" | grep -q '"role":"leader"' && { echo "$i"; return 0; }; done
    return 0
}
wait_leader() {
    for k in $(seq 300); do L=$(leader); [ -n "$L" ] && return; sleep 0.1; done
    echo "no cluster node became the leader" >&2; exit 1
}
for i in 0 1 2; do node_start "$i"; done
wait_leader
start_factum --max-connections-per-address 10000
echo "nats-server $(nats-server --version | sed 's/nats-server: //'): 3 servers, JetStream R3 file storage;" \
    "3 cluster nodes + 1 standalone factum, one machine ($(nproc) cores), ${SECONDS_EACH} s each"
run_factum() { "$GEN" --port "$1" --seconds "$SECONDS_EACH" --only appends | sed -n 's/^appends //p'; }
run_js() { "$JS" --nats "$URLS" --seconds "$SECONDS_EACH" "$@" | sed -n 's/^events\/s //p'; }
S=$(run_factum "$PORT")
C=$(run_factum $((HPORT0 + L)))
J16=$(run_js --clients 16)
J64=$(run_js --clients 64)
JB=$(run_js --clients 16 --batch 100)
set -- $S; S16=$1 S64=$2 SB=$3
set -- $C; C16=$1 C64=$2 CB=$3
row() { printf "  %-36s %12s %12s %12s %8s\n" "$1" "$2" "$3" "$4" "$5"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
row "" standalone "cluster" "raw JetStream" "cluster/raw"
row "single-event appends/s, 16 clients" "$S16" "$C16" "$J16" "$(ratio "$C16" "$J16")"
row "single-event appends/s, 64 clients" "$S64" "$C64" "$J64" "$(ratio "$C64" "$J64")"
row "batch-100 events/s, 16 clients" "$SB" "$CB" "$JB" "$(ratio "$CB" "$JB")"
echo "  (target: cluster/raw >= 0.7)"

echo "  leader after the runs: $(health "$L" | grep -o "\"applied_sequence\":[0-9]*")"
# Failover: kill -9 the leader, then POST to the survivors until one answers 201.
now() { date +%s.%N; }
TIMES=
for k in $(seq "$KILLS"); do
    wait_leader
    eval "P=\$NODE_PID$L"
    kill -9 "$P"
    wait "$P" 2>/dev/null || true
    t0=$(now)
    done201=
    while [ -z "$done201" ]; do
        for i in 0 1 2; do
            [ "$i" = "$L" ] && continue
            st=$(curl -s -o /dev/null -w '%{http_code}' -m 2 -X POST -H 'Content-Type: application/json' \
                -d '{"type":"Failover","data":{}}' "http://127.0.0.1:$((HPORT0 + i))/streams/failover" || true)
            [ "$st" = 201 ] && { done201=1; break; }
        done
        [ -z "$done201" ] && sleep 0.02
        [ "$(awk -v a="$(now)" -v b="$t0" 'BEGIN { print (a - b > 60) }')" = 1 ] && { echo "no failover in 60 s" >&2; exit 1; }
    done
    TIMES="$TIMES $(awk -v a="$(now)" -v b="$t0" 'BEGIN { printf "%.2f", a - b }')"
    node_start "$L" # back as a follower, for the next round
done
echo "$TIMES" | tr ' ' '\n' | sed '/^$/d' | sort -n | awk -v n="$KILLS" '
    { t[NR] = $1 } END { printf "  failover (leader killed -> first 201), %d kills: p50 %.2f s, max %.2f s\n", n, t[int((NR + 1) / 2)], t[NR] }'
