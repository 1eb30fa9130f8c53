#!/bin/sh
# bench/schemas.sh — `make bench`, event schemas: starts `factum serve` and runs
# bench/bench_schemas.c against it (validated appends beside unvalidated ones; a catch-up read
# through a 2-step upcast beside a raw one). SECONDS_EACH and EVENTS shorten it.
set -eu
BIN=${BIN:-build/factum}
GEN=${GEN:-build/bench-schemas}
SECONDS_EACH=${SECONDS_EACH:-3}
EVENTS=${EVENTS:-200000}
. "$(dirname "$0")/lib.sh"
start_factum
"$GEN" --port "$PORT" --seconds "$SECONDS_EACH" --events "$EVENTS"
