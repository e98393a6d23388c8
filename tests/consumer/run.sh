#!/usr/bin/env bash
# Consumer-side checks of phoneproof: what a client of the published OpenAPI document sees.
#
#   bash tests/consumer/run.sh        # from the repository root, after `cargo build`
#
# PHONEPROOF_BIN   the binary to test (default target/debug/phoneproof)
# ST_MAX_EXAMPLES  schemathesis examples per operation (default 300)
# ST_SEED          schemathesis seed, to replay a run (default: random, printed by schemathesis)
# PHONEPROOF_OPENAPI_DOC  the document to test against (default openapi/openapi.json; if that
#                  is missing, the one `$PHONEPROOF_BIN openapi` prints)
#
# It installs its own tools (pinned): a venv at target/consumer-venv from
# tests/consumer/requirements.txt; tests/consumer/node_modules from package-lock.json (npm ci);
# Debian's chromium with apt-get only if /usr/bin/chromium is missing (no browser is downloaded
# by playwright). Then it starts the service on a free loopback port with a fresh data
# directory, and runs these parts, each with its own user so they do not interfere:
#
#   schemathesis           committed document, phases examples, coverage, fuzzing, stateful,
#                          every check (one replaced, see st_hooks.py), ST_MAX_EXAMPLES each
#   schemathesis-stateful  stateful phase with OpenAPI links added in memory (st_hooks.py)
#   python-client          openapi-python-client generates a client; client_flow.py uses it
#   typescript             openapi-typescript types; types_check.ts compiles with tsc --strict
#   swagger-ui             swagger_ui.mjs drives Swagger UI in headless Chromium
#   lint                   ruff on tests/consumer/*.py, node --check on swagger_ui.mjs
#
# Time on the 2-core dev machine (measured 2026-11-22, ST_MAX_EXAMPLES=300):
#   setup             ~5 s with the tools installed (pip check, npm ci, server start);
#                     ~31 s from nothing (venv + pip ~15 s, npm ci ~3 s, apt-get chromium ~12 s
#                     with Debian's mirror close by)
#   schemathesis           ~15-30 s (~700 test cases)
#   schemathesis-stateful  ~5 s (~250 test cases, 20-40 scenarios)
#   python-client          ~2 s (generate ~1 s, client_flow.py <1 s)
#   typescript             ~5 s (openapi-typescript ~1 s, tsc ~3 s)
#   swagger-ui             ~6 s
#   lint                   <1 s
#   whole script           ~45-60 s warm, ~70 s cold
#
# The last line is "N passed, M failed" (N, M counted over the parts above); the exit status is 0
# only when M is 0.
set -euo pipefail

ROOT=$(pwd)
if [[ ! -f "$ROOT/Cargo.toml" || ! -d "$ROOT/tests/consumer" ]]; then
    echo "run.sh: run me from the repository root (bash tests/consumer/run.sh)" >&2
    exit 2
fi
HERE="$ROOT/tests/consumer"
OUT="$ROOT/target/consumer"
VENV="$ROOT/target/consumer-venv"
BIN=${PHONEPROOF_BIN:-target/debug/phoneproof}
[[ "$BIN" = /* ]] || BIN="$ROOT/$BIN"
ORG=69629023906488334
ST_MAX_EXAMPLES=${ST_MAX_EXAMPLES:-300}

passed=0
failed=0
failed_parts=()
SERVER_PID=
DATA_DIR=

cleanup() {
    if [[ -n "$SERVER_PID" ]]; then
        kill "$SERVER_PID" 2>/dev/null || true
        local _
        for _ in $(seq 50); do
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=
    fi
    if [[ -n "$DATA_DIR" ]]; then
        cp "$DATA_DIR/server.log" "$OUT/server.log" 2>/dev/null || true
        rm -rf "$DATA_DIR"
        DATA_DIR=
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

summary() {
    cleanup
    if ((failed > 0)); then
        echo "failed parts: ${failed_parts[*]} (server log: target/consumer/server.log)"
    fi
    echo "$passed passed, $failed failed"
}

# run_part NAME COMMAND...: runs COMMAND in a child process (so `set -e` holds inside it) and
# counts it as one passed or failed part.
run_part() {
    local name=$1
    shift
    local start=$SECONDS rc=0
    echo
    echo "=== $name"
    "$@" &
    wait $! || rc=$?
    if ((rc == 0)); then
        passed=$((passed + 1))
        echo "=== $name: passed in $((SECONDS - start)) s"
    else
        failed=$((failed + 1))
        failed_parts+=("$name")
        echo "=== $name: FAILED (exit $rc) in $((SECONDS - start)) s"
    fi
}

# ---------------------------------------------------------------------------------------------
# Setup: tools, document, server. A failure here stops the run.

install_tools() {
    mkdir -p "$OUT"
    if [[ ! -x "$VENV/bin/python" ]]; then
        python3 -m venv "$VENV"
    fi
    "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$HERE/requirements.txt"
    npm ci --prefix "$HERE" --no-audit --no-fund --loglevel=error
    if [[ ! -x /usr/bin/chromium ]]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
    fi
}

# phoneproof refuses to start when it sees a PHONEPROOF_* variable it does not know, and this
# script's own PHONEPROOF_BIN / PHONEPROOF_OPENAPI_DOC are such variables: the binary runs as
# `env "${CLEAN_ENV[@]}" NAME=VALUE... "$BIN" ...`, with none of the caller's PHONEPROOF_*
# variables, only those given there. (env execs the binary, so `$!` of a background env is the
# server's own pid.)
CLEAN_ENV=()
for name in $(compgen -e); do
    if [[ "$name" == PHONEPROOF_* ]]; then
        CLEAN_ENV+=(-u "$name")
    fi
done

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start_server() {
    if [[ ! -x "$BIN" ]]; then
        echo "no binary at $BIN: run cargo build first, or set PHONEPROOF_BIN" >&2
        return 1
    fi
    # The committed document; before it exists, the one the binary prints.
    DOC=${PHONEPROOF_OPENAPI_DOC:-$ROOT/openapi/openapi.json}
    if [[ ! -f "$DOC" ]]; then
        DOC="$OUT/openapi.json"
        env "${CLEAN_ENV[@]}" "$BIN" openapi >"$DOC" || return 1
        echo "openapi/openapi.json is missing: using the binary's document ($DOC)"
    fi
    DATA_DIR=$(mktemp -d) || return 1
    SMS_LOG="$DATA_DIR/sms.jsonl"
    PORT=$(free_port) || return 1
    BASE_URL="http://127.0.0.1:$PORT"
    # Throttling off: with the defaults (30 s cooldown, 5 codes / 10 min per user) almost every
    # generated Set and Resend after the first would be a (documented) 429, which starves the
    # stateful run; the throttle itself is covered by tests/api/throttling.rs.
    env "${CLEAN_ENV[@]}" \
        PHONEPROOF_LISTEN="127.0.0.1:$PORT" \
        PHONEPROOF_DATA_DIR="$DATA_DIR" \
        PHONEPROOF_SMS_LOG_FILE="$SMS_LOG" \
        PHONEPROOF_CODE_RESEND_COOLDOWN_SECS=0 \
        PHONEPROOF_CODE_MAX_PER_WINDOW=0 \
        "$BIN" serve >"$DATA_DIR/server.log" 2>&1 &
    SERVER_PID=$!
    local _
    for _ in $(seq 100); do
        if curl -fsS -o /dev/null "$BASE_URL/openapi.json" 2>/dev/null; then
            echo "server $BIN listening on $BASE_URL (data dir $DATA_DIR)"
            return 0
        fi
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            echo "the server exited:" >&2
            cat "$DATA_DIR/server.log" >&2
            return 1
        fi
        sleep 0.1
    done
    echo "the server did not answer on $BASE_URL within 10 s" >&2
    return 1
}

token() {
    env "${CLEAN_ENV[@]}" PHONEPROOF_DATA_DIR="$DATA_DIR" "$BIN" token --user "$1" --org "$ORG"
}

start=$SECONDS
echo "=== setup"
rc=0
install_tools &
wait $! || rc=$?
# start_server sets BASE_URL, DOC, SMS_LOG, SERVER_PID for the parts, so it runs in this shell
# (where `set -e` does not hold inside an `if`: it returns on each failure itself).
if ((rc != 0)) || ! start_server; then
    failed=1
    failed_parts=(setup)
    summary
    exit 1
fi
echo "=== setup: done in $((SECONDS - start)) s"

# ---------------------------------------------------------------------------------------------
# Parts

# Common schemathesis options. `--checks all` turns every check on; `positive_data_acceptance`
# is then replaced by the stricter `positive_data_acceptance_domain` from st_hooks.py, because a
# schema cannot say that "+0" does not parse as a phone, that a code is wrong, or that a number
# is already set (the built-in check would flag those documented business 400s). Schemathesis
# runs in target/consumer/st so that its crash cache (.schemathesis/) stays out of the tree.
schemathesis_run() {
    mkdir -p "$OUT/st"
    cd "$OUT/st"
    SCHEMATHESIS_HOOKS="$HERE/st_hooks.py" \
        PHONEPROOF_SMS_LOG_FILE="$SMS_LOG" \
        "$VENV/bin/schemathesis" --config-file "$HERE/schemathesis.toml" run "$DOC" \
        --url "$BASE_URL" \
        --header "Authorization: Bearer $1" \
        --checks all \
        --exclude-checks positive_data_acceptance \
        --max-examples "$ST_MAX_EXAMPLES" \
        ${ST_SEED:+--seed "$ST_SEED"} \
        --request-timeout 10 \
        --generation-database none \
        --no-color \
        "${@:2}"
}

part_schemathesis() {
    # The stateful phase here walks the committed document's links; part_schemathesis_stateful
    # adds every other order and steers bodies to real numbers and codes.
    local log="$OUT/schemathesis.log" tok
    tok=$(token consumer-schemathesis)
    schemathesis_run "$tok" \
        --phases examples,coverage,fuzzing,stateful \
        --report junit --report-junit-path "$OUT/schemathesis-junit.xml" | tee "$log"
    grep -Eq '^ +Tested: +5$' "$log" || {
        echo "schemathesis did not test all five operations" >&2
        return 1
    }
}

part_schemathesis_stateful() {
    local log="$OUT/schemathesis-stateful.log" tok
    tok=$(token consumer-stateful)
    # Positive data only: the negative cases ran in the part above; here the point is the
    # sequences of calls (the set-verify-remove state machine).
    PHONEPROOF_ST_STATEFUL=1 schemathesis_run "$tok" \
        --phases stateful \
        --mode positive \
        --report junit --report-junit-path "$OUT/schemathesis-stateful-junit.xml" | tee "$log"
    grep -Eq '^ +Tested: +5$' "$log" || {
        echo "the stateful run did not test all five operations" >&2
        return 1
    }
}

part_python_client() {
    local gen="$OUT/python-client" log="$OUT/openapi-python-client.log" tok
    tok=$(token consumer-python-client)
    rm -rf "$gen"
    # openapi-python-client runs ruff on what it generates: the venv's ruff, with no cache dir.
    PATH="$VENV/bin:$PATH" RUFF_NO_CACHE=true \
        openapi-python-client generate --path "$DOC" --output-path "$gen" 2>&1 | tee "$log"
    # It still exits 0 when it had to leave parts of the document out; we want all of it.
    if grep -qi "warning" "$log"; then
        echo "openapi-python-client could not generate the whole client" >&2
        return 1
    fi
    PYTHONPATH="$gen" \
        PHONEPROOF_BASE_URL="$BASE_URL" \
        PHONEPROOF_TOKEN="$tok" \
        PHONEPROOF_ORG="$ORG" \
        PHONEPROOF_SMS_LOG_FILE="$SMS_LOG" \
        "$VENV/bin/python" "$HERE/client_flow.py"
}

part_typescript() {
    "$HERE/node_modules/.bin/openapi-typescript" "$DOC" -o "$OUT/schema.d.ts"
    "$HERE/node_modules/.bin/tsc" --noEmit --strict \
        --target es2022 --module nodenext --moduleResolution nodenext \
        "$HERE/types_check.ts"
    echo "types_check.ts compiles against the generated types"
}

part_swagger_ui() {
    local tok
    tok=$(token consumer-swagger-ui)
    PHONEPROOF_BASE_URL="$BASE_URL" \
        PHONEPROOF_TOKEN="$tok" \
        PHONEPROOF_SCREENSHOT="$ROOT/target/swagger-ui.png" \
        CHROMIUM_PATH=/usr/bin/chromium \
        node "$HERE/swagger_ui.mjs"
}

part_lint() {
    "$VENV/bin/ruff" check --no-cache "$HERE"
    "$VENV/bin/ruff" format --no-cache --check "$HERE"
    node --check "$HERE/swagger_ui.mjs"
}

run_part schemathesis part_schemathesis
run_part schemathesis-stateful part_schemathesis_stateful
run_part python-client part_python_client
run_part typescript part_typescript
run_part swagger-ui part_swagger_ui
run_part lint part_lint

echo
echo "total $((SECONDS - start)) s"
summary
((failed == 0))
