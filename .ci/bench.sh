#!/usr/bin/env bash
# Load benchmark: requests per second and p99 for Set and Verify, printed, not asserted.
#   bash .ci/bench.sh                 # SQLite, one process
#   BACKEND=postgres REPLICAS=2 bash .ci/bench.sh   # PostgreSQL, N replicas (wrk threads shared out)
#     (the first replica runs the outbox worker, the others only the API; WORKERS=all: every one)
# Needs wrk (Debian package) and a release build; PostgreSQL is started here when asked for.
# WARMUP=seconds of the unmeasured run before each measured one (default 2, 0: none).
# GRPC=0 skips the gRPC SetMyPhone run (a small tonic client, .ci/bench/grpc-load).
# MODES="set verify" runs only those operations (default: set verify get; Verify needs a Set first).
# THREADS=wrk threads (default 2, a multiple of REPLICAS).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
cargo build --release -q
BIN=target/release/phoneproof
BACKEND=${BACKEND:-sqlite}; REPLICAS=${REPLICAS:-1}; USERS=${USERS:-10000}
DURATION=${DURATION:-10s}; CONNECTIONS=${CONNECTIONS:-64}; THREADS=${THREADS:-2}; WARMUP=${WARMUP:-2}
WORK=$(mktemp -d); chmod 755 "$WORK"; trap 'kill $(jobs -p) 2>/dev/null; [ -n "${PGDIR:-}" ] && runuser -u postgres -- pg_ctl stop -D $PGDIR/data -m immediate >/dev/null 2>&1; rm -rf $WORK' EXIT
export PHONEPROOF_DATA_DIR=$WORK PHONEPROOF_LOG=warn PHONEPROOF_CODE_MAX_PER_WINDOW=0 \
       PHONEPROOF_CODE_RESEND_COOLDOWN_SECS=0 PHONEPROOF_CODE_MAX_ATTEMPTS=0 \
       PHONEPROOF_FRAUD_DESTINATION_MAX_CODES=1000000000 \
       PHONEPROOF_FRAUD_REGION_MAX_PER_MINUTE=0 PHONEPROOF_FRAUD_GLOBAL_MAX_PER_MINUTE=0
# The per-number limit stays on (counted, never reached) so its cost is measured; the
# breakers, one shared counter each, are off as in a deployment sized for this load.
if [ "$BACKEND" = postgres ]; then
  PGDIR=$WORK/pg; mkdir -p $PGDIR; chown postgres $PGDIR
  PGPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  runuser -u postgres -- initdb -D $PGDIR/data -A trust -U postgres --no-sync >/dev/null
  runuser -u postgres -- pg_ctl start -D $PGDIR/data -w -l $PGDIR/log \
    -o "-p $PGPORT -k $PGDIR -c listen_addresses=127.0.0.1 -c max_connections=200" >/dev/null
  export PHONEPROOF_DATABASE_URL="postgres://postgres@127.0.0.1:$PGPORT/postgres"
fi
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now_ms() { date +%s%3N; }
PORTS=(); PIDS=()
# One outbox worker whatever the number of replicas (the others run with outbox.worker =
# false, a documented deployment): the log provider sends at once, so each worker delivers as
# fast as the CPU lets it, and with a worker per replica the replicas would do several
# times the delivery work of one (measured: 25,696 messages against 6,919 in a 10 s Set run)
# on the same two cores. WORKERS=all runs one in every replica.
# The replicas' writers add up to one replica's default (2), as README.md advises for sizing
# `database_writers` to the database rather than to the replica count.
export PHONEPROOF_DATABASE_WRITERS=${PHONEPROOF_DATABASE_WRITERS:-$(( REPLICAS > 1 ? 1 : 2 ))}
for i in $(seq 1 "$REPLICAS"); do
  PORT=$(free_port)
  started=$(now_ms)
  worker=true; [ "$i" -gt 1 ] && [ "${WORKERS:-one}" != all ] && worker=false
  PHONEPROOF_OUTBOX_WORKER=$worker PHONEPROOF_LISTEN=127.0.0.1:$PORT $BIN serve 2>$WORK/serve-$i.log &
  PIDS+=($!); PORTS+=("$PORT")
  for _ in $(seq 1000); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.01; done
  echo "startup @$PORT: $(( $(now_ms) - started )) ms to the first 200"
done
# One token per user (bench-0 ... bench-N-1), one line each.
$BIN token --user bench- --org 1 --count "$USERS" > $WORK/tokens.txt
echo "backend=$BACKEND replicas=$REPLICAS users=$USERS connections=$CONNECTIONS duration=$DURATION warmup=${WARMUP}s (wrk, same machine, 2 cores)"
# One wrk process whatever the replica count: its threads share the replicas out (thread i
# talks to replica i mod N, phone.lua), so 1 and N replicas meet the same load generator.
[ $((THREADS % REPLICAS)) = 0 ] || { echo "THREADS ($THREADS) must be a multiple of REPLICAS" >&2; exit 2; }
ALL=$(IFS=+; echo "${PORTS[*]}")
load() { # mode, duration, output suffix, RUN (0: warm-up, 1: measured)
  RUN=$4 PORTS="${PORTS[*]}" MODE=$1 TOKENS=$WORK/tokens.txt THREADS=$THREADS wrk -t$THREADS -c$CONNECTIONS -d$2 \
    -s .ci/bench/phone.lua "http://127.0.0.1:${PORTS[0]}" > $WORK/wrk-$1.$3
}
for mode in ${MODES:-set verify get}; do
  # An unmeasured run first, as the naive baseline gets one (bench/run-ceiling.sh, WARMUP=2
  # in compare.sh): connections opened, statements prepared, caches filled. WARMUP=0: none.
  [ "$WARMUP" = 0 ] || load $mode "${WARMUP}s" warmup 0
  load $mode "$DURATION" txt 1
  echo "$mode @$ALL: $(grep '^requests/s' $WORK/wrk-$mode.txt)"
  grep '^  @' $WORK/wrk-$mode.txt | sed "s/^  /  $mode /" || true
done
for pid in "${PIDS[@]}"; do
  echo "rss after load (pid $pid): $(( $(awk '/VmRSS/{print $2}' /proc/$pid/status) / 1024 )) MiB"
done
# The same Set over gRPC (h2c), same users and connection count, first replica only.
if [ "${GRPC:-1}" = 1 ]; then
  cargo build --release -q --manifest-path .ci/bench/grpc-load/Cargo.toml --target-dir target/grpc-load
  echo "grpc-set @${PORTS[0]}: $(target/grpc-load/release/grpc-load "http://127.0.0.1:${PORTS[0]}" \
    $WORK/tokens.txt $((CONNECTIONS / REPLICAS)) ${DURATION%s})"
fi
# Delivery: a fresh process sending to a fake provider that answers in 200 ms.
if [ "${DELIVERY:-1}" = 1 ]; then
  DPORT=$(free_port); PPORT=$(free_port); mkdir -p $WORK/delivery
  PHONEPROOF_DATA_DIR=$WORK/delivery PHONEPROOF_LISTEN=127.0.0.1:$DPORT PHONEPROOF_SMS_PROVIDER=http \
    PHONEPROOF_SMS_HTTP_URL=http://127.0.0.1:$PPORT/sms $BIN serve 2>$WORK/serve-delivery.log &
  for _ in $(seq 1000); do curl -sf "http://127.0.0.1:$DPORT/healthz" >/dev/null && break; sleep 0.01; done
  PHONEPROOF_DATA_DIR=$WORK/delivery $BIN token --user d- --org 1 --count "${DELIVERY_N:-2000}" > $WORK/dtokens.txt
  python3 .ci/bench/delivery.py "http://127.0.0.1:$DPORT" "$PPORT" $WORK/dtokens.txt "${DELIVERY_N:-2000}" "${LATENCY_MS:-200}"
fi
