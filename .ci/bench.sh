#!/usr/bin/env bash
# Load benchmark: requests per second and p99 for Set and Verify, printed, not asserted.
#   bash .ci/bench.sh                 # SQLite, one process
#   BACKEND=postgres REPLICAS=2 bash .ci/bench.sh   # PostgreSQL, N replicas (round-robin)
# Needs wrk (Debian package) and a release build; PostgreSQL is started here when asked for.
# GRPC=0 skips the gRPC SetMyPhone run (a small tonic client, .ci/bench/grpc-load).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
cargo build --release -q
BIN=target/release/phoneproof
BACKEND=${BACKEND:-sqlite}; REPLICAS=${REPLICAS:-1}; USERS=${USERS:-10000}
DURATION=${DURATION:-10s}; CONNECTIONS=${CONNECTIONS:-64}; THREADS=2
WORK=$(mktemp -d); chmod 755 "$WORK"; trap 'kill $(jobs -p) 2>/dev/null; [ -n "${PGDIR:-}" ] && runuser -u postgres -- pg_ctl stop -D $PGDIR/data -m immediate >/dev/null 2>&1; rm -rf $WORK' EXIT
export PHONEPROOF_DATA_DIR=$WORK PHONEPROOF_LOG=warn PHONEPROOF_CODE_MAX_PER_WINDOW=0 \
       PHONEPROOF_CODE_RESEND_COOLDOWN_SECS=0 PHONEPROOF_CODE_MAX_ATTEMPTS=0
if [ "$BACKEND" = postgres ]; then
  PGDIR=$WORK/pg; mkdir -p $PGDIR; chown postgres $PGDIR
  PGPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  runuser -u postgres -- initdb -D $PGDIR/data -A trust -U postgres --no-sync >/dev/null
  runuser -u postgres -- pg_ctl start -D $PGDIR/data -w -l $PGDIR/log \
    -o "-p $PGPORT -k $PGDIR -c listen_addresses=127.0.0.1 -c max_connections=200" >/dev/null
  export PHONEPROOF_DATABASE_URL="postgres://postgres@127.0.0.1:$PGPORT/postgres"
fi
PORTS=()
for i in $(seq 1 "$REPLICAS"); do
  PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  PHONEPROOF_LISTEN=127.0.0.1:$PORT $BIN serve 2>$WORK/serve-$i.log &
  PORTS+=("$PORT")
done
for p in "${PORTS[@]}"; do
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$p/healthz" >/dev/null && break; sleep 0.1; done
done
# One token per user (bench-0 ... bench-N-1), one line each.
$BIN token --user bench- --org 1 --count "$USERS" > $WORK/tokens.txt
echo "backend=$BACKEND replicas=$REPLICAS users=$USERS connections=$CONNECTIONS duration=$DURATION (wrk, same machine, 2 cores)"
for mode in set verify; do
  # wrk talks to one address; with replicas, each gets an equal share of the connections.
  WRK=(); r=0
  for p in "${PORTS[@]}"; do
    REPLICA=$r REPLICAS=$REPLICAS MODE=$mode TOKENS=$WORK/tokens.txt THREADS=$THREADS wrk -t$THREADS -c$((CONNECTIONS / REPLICAS)) -d$DURATION \
      -s .ci/bench/phone.lua "http://127.0.0.1:$p" > $WORK/wrk-$mode-$p.txt &
    WRK+=($!); r=$((r + 1))
  done
  wait "${WRK[@]}"
  for p in "${PORTS[@]}"; do echo "$mode @$p: $(grep requests/s $WORK/wrk-$mode-$p.txt)"; done
done
# The same Set over gRPC (h2c), same users and connection count, first replica only.
if [ "${GRPC:-1}" = 1 ]; then
  cargo build --release -q --manifest-path .ci/bench/grpc-load/Cargo.toml --target-dir target/grpc-load
  echo "grpc-set @${PORTS[0]}: $(target/grpc-load/release/grpc-load "http://127.0.0.1:${PORTS[0]}" \
    $WORK/tokens.txt $((CONNECTIONS / REPLICAS)) ${DURATION%s})"
fi
