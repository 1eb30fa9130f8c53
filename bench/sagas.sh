#!/bin/sh
# bench/sagas.sh — `make bench`, sagas: starts `factum serve` in a temporary folder and runs
# bench/bench_sagas.c against it. SAGAS=N sets the throughput run's size (default 20000).
set -eu
BIN=${BIN:-build/factum}
GEN=${GEN:-build/bench-sagas}
SAGAS=${SAGAS:-20000}
. "$(dirname "$0")/lib.sh"
start_factum
"$GEN" --port "$PORT" --sagas "$SAGAS"
