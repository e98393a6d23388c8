#!/usr/bin/env bash
# The whole test suite, as README.md states it: `bash .ci/test-all.sh`.
# Prerequisites are installed by .ci/run (CI) or by hand once (see README.md).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== format and lints"
cargo fmt --check
cargo clippy --all-targets -- -D warnings

echo "== cargo test (unit, property and API tests)"
cargo test

echo "== OpenAPI document validates"
VENV=target/ci-venv
if [ ! -x "$VENV/bin/openapi-spec-validator" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet openapi-spec-validator==0.9.0
fi
"$VENV/bin/openapi-spec-validator" openapi/openapi.json
