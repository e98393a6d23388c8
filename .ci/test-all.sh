#!/usr/bin/env bash
# The whole test suite, as README.md states it: `bash .ci/test-all.sh`.
# Prerequisites are installed by .ci/run (CI) or once by hand (see README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
step() { echo; echo "== $* (at $(( $(date +%s) - start )) s)"; }

step "format and lints"
cargo fmt --check
cargo clippy --all-targets -- -D warnings

step "cargo test: unit, property and API tests on SQLite; replica tests on their own PostgreSQL"
cargo test

step "the API suite again, on PostgreSQL"
if command -v initdb >/dev/null || [ -n "${PHONEPROOF_TEST_DATABASE_URL:-}" ]; then
  PHONEPROOF_TEST_BACKEND=postgres cargo test --test api -- --skip replicas::
elif [ "${CI:-}" = "true" ]; then
  echo "PostgreSQL binaries (initdb, pg_ctl) are missing: the PostgreSQL leg cannot run" >&2
  exit 1
else
  echo "!!!!! PostgreSQL binaries missing: SKIPPING the PostgreSQL leg (install postgresql-15) !!!!!"
fi

step "OpenAPI document validates"
VENV=target/ci-venv
if [ ! -x "$VENV/bin/openapi-spec-validator" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet openapi-spec-validator==0.9.0
fi
"$VENV/bin/openapi-spec-validator" openapi/openapi.json

step "consumers: schemathesis (ours and ZITADEL's document), generated Python client, TypeScript types, Swagger UI in Chromium, gRPC (grpc-js, grpcio, grpcurl) and gRPC-web from a browser"
cargo build
PHONEPROOF_BIN=target/debug/phoneproof bash tests/consumer/run.sh

step "fuzzing, ${FUZZ_SECONDS:-60} s per target"
bash .ci/fuzz.sh

echo
echo "all suites passed in $(( $(date +%s) - start )) s"
