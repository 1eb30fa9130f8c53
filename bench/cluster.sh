#!/bin/sh
# bench/cluster.sh — `make bench`, cluster part (issue 18, docs/cluster.md): three nats-server
# (one JetStream cluster, file storage) and three `factum serve --cluster` nodes on loopback,
# beside one standalone `factum serve`, in the same run. Appends through the leader
# (bench-http --only appends) beside the standalone server and beside raw JetStream publishing
# of the same payloads (bench-js: the C client, R3, the same concurrency, async publish); then
# the replication lag under load (bench-lag: a probe appended through the leader every 5 ms
# while 16 clients append, its 201 against its arrival on a follower's SSE subscription; the
# references: the same on the standalone server, 201 against the same server's SSE, and
# JetStream's own publish ack against an ordered consumer on another server, bench-js
# --lag-every-ms, under 16 clients publishing); then the
# failover time (leader killed with SIGKILL -> the new leader's writing_since_us in /health, and
# -> first 201 from a surviving node), KILLS times. SECONDS_EACH and KILLS shorten it (QUICK=1 in
# the Makefile).
set -eu
BIN=${BIN:-build/factum}
GEN=${GEN:-build/bench-http}
JS=${JS:-build/bench-js}
LAG=${LAG:-build/bench-lag}
SECONDS_EACH=${SECONDS_EACH:-3}
KILLS=${KILLS:-10}
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
# JetStream as the cluster must use it: fenced publishes with ids, one reader per server.
K16=$(run_js --clients 16 --as-cluster)
K64=$(run_js --clients 64 --as-cluster)
KB=$(run_js --clients 16 --batch 100 --as-cluster)
set -- $S; S16=$1 S64=$2 SB=$3
set -- $C; C16=$1 C64=$2 CB=$3
row() { printf "  %-36s %11s %11s %11s %9s %13s %9s\n" "$1" "$2" "$3" "$4" "$5" "$6" "$7"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
row "" standalone "cluster" "raw JS" "clu/raw" "JS as cluster" "clu/that"
row "single-event appends/s, 16 clients" "$S16" "$C16" "$J16" "$(ratio "$C16" "$J16")" "$K16" "$(ratio "$C16" "$K16")"
row "single-event appends/s, 64 clients" "$S64" "$C64" "$J64" "$(ratio "$C64" "$J64")" "$K64" "$(ratio "$C64" "$K64")"
row "batch-100 events/s, 16 clients" "$SB" "$CB" "$JB" "$(ratio "$CB" "$JB")" "$KB" "$(ratio "$CB" "$KB")"
echo "  (target: cluster/raw >= 0.7; JS as cluster = JetStream with the fence, message ids and one ordered consumer per server that the design needs, docs/cluster.md)"

echo "  leader after the runs: $(health "$L" | grep -o "\"applied_sequence\":[0-9]*")"

# Replication lag: ours (leader -> follower) vs the standalone server's own delivery.
F=$(((L + 1) % 3))
lag() { "$LAG" --write-port "$1" --read-port "$2" --clients 16 --seconds "$SECONDS_EACH" | sed -n 's/^lag //p'; }
LC=$(lag $((HPORT0 + L)) $((HPORT0 + F)))
LS=$(lag "$PORT" "$PORT")
LJ=$("$JS" --nats "$URLS" --seconds "$SECONDS_EACH" --clients 16 --lag-every-ms 5 | sed -n 's/^lag //p')
echo "  replication lag under 16 clients appending (a probe every 5 ms; ms):"
val() { echo "$2" | awk -v k="$1" '{ for (i = 1; i < NF; i++) if ($i == k) print $(i + 1) }'; }
lagrow() {
    printf "    %-44s 201 -> there p50 %6s p99 %6s max %6s | sent -> 201 p99 %6s | sent -> there p99 %6s | load %s appends/s, %s probes, %s missing\n" \
        "$1" "$(val p50 "$2")" "$(val p99 "$2")" "$(val max "$2")" "$(val ack_p99 "$2")" "$(val seen_p99 "$2")" \
        "$(val appends/s "$2")" "$(val probes "$2")" "$(val missing "$2")"
}
lagrow "cluster: leader's 201 -> a follower's SSE" "$LC"
lagrow "reference, standalone: 201 -> its own SSE" "$LS"
printf "    %-44s  ack -> there p50 %6s p99 %6s max %6s | 16 clients publishing async, %s probes, %s missing\n" \
    "reference, raw JetStream: publish ack ->" "$(val p50 "$LJ")" "$(val p99 "$LJ")" "$(val max "$LJ")" \
    "$(val probes "$LJ")" "$(val missing "$LJ")"
echo "      (an ordered consumer on another nats-server, as a follower reads the log)"
echo "  replication lag p99 (201 -> readable on a follower): ours $(val p99 "$LC") ms vs reference:" \
    "JetStream's own ack -> delivery $(val p99 "$LJ") ms, the standalone server's own delivery $(val p99 "$LS") ms"

# Failover: kill -9 the leader, then POST to the survivors until one answers 201; the new leader
# says in /health when it began to take writes (writing_since_us).
now() { date +%s.%N; }
TIMES= WRITING=
for k in $(seq "$KILLS"); do
    wait_leader
    eval "P=\$NODE_PID$L"
    t0=$(now)
    kill -9 "$P"
    wait "$P" 2>/dev/null || true
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
    K=$L
    wait_leader # the 201 may have come through a follower: ask the leader
    since=$(health "$L" | grep -o '"writing_since_us":[0-9]*' | cut -d: -f2)
    [ -n "$since" ] || { echo "the new leader node$L has no writing_since_us" >&2; exit 1; }
    WRITING="$WRITING $(awk -v a="$since" -v b="$t0" 'BEGIN { printf "%.2f", a / 1e6 - b }')"
    node_start "$K" # back as a follower, for the next round
done
p50max() { echo "$2" | tr ' ' '\n' | sed '/^$/d' | sort -n | awk -v n="$KILLS" -v what="$1" '
    { t[NR] = $1 } END { printf "  failover (leader killed -> %s), %d kills: p50 %.2f s, max %.2f s\n", what, n, t[int((NR + 1) / 2)], t[NR] }'; }
p50max "the new leader takes writes" "$WRITING"
p50max "first 201 seen by a client polling every 20 ms" "$TIMES"
echo "  (issue 18's bound: 5 s; the lease's TTL is 3 s)"
