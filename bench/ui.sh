#!/bin/sh
# bench/ui.sh — `make bench`, the dashboard part (issue 20): `factum bench listing` fills a store
# with STREAMS streams (default 1,000,000) and prints a listing page's cost beside the same over
# 1,000; the folder is then served and bench/ui.mjs measures the listing over HTTP, the streams
# page and the live tail at TAIL_RATE events/s (default 10,000) in Debian's chromium.
set -eu
BIN=${BIN:-build/factum}
STREAMS=${STREAMS:-1000000}
. "$(dirname "$0")/lib.sh"
"$BIN" bench listing --dir "$T" --streams "$STREAMS" --keep >"$T/listing.out"
grep -v '^kept:' "$T/listing.out"
mv "$(sed -n 's/^kept: //p' "$T/listing.out")" "$T/factum"
start_factum
node "$(dirname "$0")/ui.mjs" "http://127.0.0.1:$PORT"
