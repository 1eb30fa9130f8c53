#!/bin/sh
# examples/orders/demo.sh — `make demo`: the seeds' order system end to end. Starts a server
# and the payment, inventory and shipping services (examples/orders/service.c) in both styles,
# places one order of each kind per style, and prints each order's timeline and final state.
#   orchestrated:  the order saga (order_saga.json) sends commands, waits for replies,
#                  compensates in reverse, times out a step that never answers
#   choreographed: no saga; each service reacts to the others' events on the order's stream
# and, over the same events, the two read models of examples/projections.
set -eu
BIN=${BIN:-build/factum}
SVC=${SVC:-build/order-service}
HERE=$(dirname "$0")
T=$(mktemp -d /tmp/factum-demo.XXXXXX)
PIDS=
cleanup() {
    for p in $PIDS; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$T"
}
trap cleanup EXIT INT TERM
"$BIN" --data-dir "$T/data" serve --listen 127.0.0.1:0 >"$T/serve.out" 2>"$T/serve.err" &
PIDS="$PIDS $!"
for i in $(seq 50); do grep -q listening "$T/serve.out" 2>/dev/null && break; sleep 0.1; done
export FACTUM_URL="http://$(sed -n 's|.*http://||p' "$T/serve.out")"
F="$BIN --server $FACTUM_URL"

$F saga apply "$HERE/order_saga.json" --name order >/dev/null
# The read models of examples/projections, fed by the same events.
$F projection apply "$HERE/../projections/order_list.json" >/dev/null
$F projection apply "$HERE/../projections/daily_order_stats.json" >/dev/null
for style in orchestrated choreographed; do
    for role in payment inventory shipping; do
        "$SVC" $role --style $style >>"$T/services.log" 2>&1 &
        PIDS="$PIDS $!"
    done
done
sleep 0.5

# id, amount, sku, region: what each order is for
ORDERS="ok 120 book earth
declined 5000 book earth
nostock 80 unobtainium earth
lost 60 book mars"
echo "$ORDERS" | while read -r id amount sku region; do
    data="{\"orderId\":\"o-$id\",\"amount\":$amount,\"sku\":\"$sku\",\"region\":\"$region\"}"
    $F append "order-o-$id" OrderPlaced "$data" >/dev/null
    data="{\"orderId\":\"c-$id\",\"amount\":$amount,\"sku\":\"$sku\",\"region\":\"$region\"}"
    $F append "corder-c-$id" OrderPlaced "$data" >/dev/null
done

# Wait until every saga ended and every choreographed order reached its last event.
for i in $(seq 100); do
    running=$($F saga show order | sed -n 's/.*"running":\([0-9]*\),"compensating":\([0-9]*\).*/\1\2/p')
    ended=0
    for id in ok declined nostock lost; do
        $F read "corder-c-$id" 2>/dev/null | grep -q -E '"type":"(Shipped|PaymentDeclined|PaymentReleased)"' && ended=$((ended + 1))
    done
    [ -n "${DEMO_DEBUG:-}" ] && echo "waiting: running+compensating=$running choreographed ended=$ended instances=$($F saga instances order | wc -l)" >&2
    [ "$running" = "00" ] && [ "$ended" = 4 ] && [ "$($F saga instances order | wc -l)" = 4 ] && break
    sleep 0.2
done

# the first "type" of each line: an event's type, or a history entry's
types() { awk '{ if (match($0, /"type":"[^"]*"/)) printf "%s ", substr($0, RSTART + 8, RLENGTH - 9) }'; }
echo "== orchestrated: the order saga =="
for id in ok declined nostock lost; do
    show=$($F saga show order "o-$id")
    status=$(echo "$show" | sed -n 's/^{"id":"[^"]*","status":"\([^"]*\)".*/\1/p')
    echo "o-$id: $status"
    echo "  saga:     $(echo "$show" | sed 's/"history":\[/\n/' | tail -1 | sed 's/},{/}\n{/g' | types)"
    echo "  messages: $($F read --all --correlation-id "o-$id" | types)"
done
echo "== choreographed: services reacting to each other =="
for id in ok declined nostock lost; do
    events=$($F read "corder-c-$id" | types)
    case "$events" in
    *Shipped*) status=completed ;;
    *PaymentReleased*) status=failed ;;
    *PaymentDeclined*) status=failed ;;
    *) status=unfinished ;;
    esac
    echo "c-$id: $status"
    echo "  events:   $events"
done

# The read models, once they hold the last event: one row per line, then each one's status.
last=$($F read --all --backward --limit 1 | sed -n 's/.*"position":\([0-9]*\).*/\1/p')
rows() { sed 's/.*"rows":\[\[//; s/\]\]}$//; s/\],\[/\n/g' | tr -d '"' | tr ',' ' ' | sed 's/^/  /'; }
echo "== read models: examples/projections =="
for model in order_list daily_order_stats; do
    echo "$model ($($F projection status $model | sed -n 's/^{"name":"[^"]*","status":"\([a-z]*\)".*/\1/p')):"
    case $model in
    order_list) sql='SELECT order_id, status, total FROM order_list ORDER BY order_id' ;;
    *) sql='SELECT date, order_count, total_value FROM daily_order_stats ORDER BY date' ;;
    esac
    $F projection query $model "$sql" --min-position "$last" | rows
done
