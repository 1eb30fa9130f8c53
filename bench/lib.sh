# bench/lib.sh — what the bench scripts share (sourced, with BIN set): a temporary folder $T
# removed on exit with everything started in it, `factum serve` on a free port ($PORT), another
# with TLS ($TLS_PORT), and a PostgreSQL of Debian's package in $T/pg.
#
# Fixed ports are below 32768: Linux hands out 32768-60999 (ip_local_port_range) to outgoing
# connections, so right after a load test a client socket may still hold a port in that range
# and a server meant to listen there fails to start.
PG_PORT=25432
NATS_PORT=24222
T=$(mktemp -d /tmp/factum-bench.XXXXXX)
chmod 755 "$T"
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
KILL_PIDS= PG_STARTED=
cleanup() {
    for p in $KILL_PIDS; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null || true; done
    [ -n "$PG_STARTED" ] && runuser -u postgres -- "$PGBIN/pg_ctl" -D "$T/pg" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$T"
}
trap cleanup EXIT INT TERM

# Starts `factum serve` on $T/NAME with more options; sets SPID and the port it listens on.
serve_factum() {
    name=$1
    shift
    "$BIN" --data-dir "$T/$name" serve --listen 127.0.0.1:0 "$@" >"$T/$name.out" 2>"$T/$name.err" &
    SPID=$!
    KILL_PIDS="$KILL_PIDS $SPID"
    for i in $(seq 50); do grep -q listening "$T/$name.out" 2>/dev/null && break; sleep 0.1; done
    SERVED_PORT=$(sed -n 's/.*:\([0-9]*\)$/\1/p' "$T/$name.out")
}

# Starts `factum serve` on $T/factum, with more options if given; sets PORT and SPID.
start_factum() {
    serve_factum factum "$@"
    PORT=$SERVED_PORT
}

# Starts `factum serve` with TLS on $T/factum-tls, with a self-signed certificate made here and
# a writer key (made before the start, so every request must carry it); sets TLS_PORT and
# TLS_TOKEN.
start_factum_tls() {
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/tls.key" -out "$T/tls.pem" \
        -days 2 -subj /CN=127.0.0.1 2>/dev/null
    TLS_TOKEN=$("$BIN" --data-dir "$T/factum-tls" key create --role writer 2>/dev/null)
    serve_factum factum-tls --tls-cert "$T/tls.pem" --tls-key "$T/tls.key" "$@"
    TLS_PORT=$SERVED_PORT
}

# Starts a PostgreSQL in $T/pg with these server options (pg_ctl -o); its socket is in $T/pg.
start_pg() {
    mkdir "$T/pg" && chown postgres "$T/pg"
    runuser -u postgres -- "$PGBIN/initdb" -D "$T/pg" -A trust >/dev/null
    PG_STARTED=1
    runuser -u postgres -- "$PGBIN/pg_ctl" -D "$T/pg" -l "$T/pg/log" -w -o "-k $T/pg $1" start >/dev/null ||
        { tail -5 "$T/pg/log" >&2; exit 1; }
}
