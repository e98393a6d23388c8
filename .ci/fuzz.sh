#!/usr/bin/env bash
# Fuzzes every parser of outside input (the targets in fuzz/), each for FUZZ_SECONDS
# (default 60), starting from the committed seed corpus in fuzz/corpus/<target>/seed-*.
# Exits non-zero if any target finds a crash; ends with the line `N passed, M failed`.
#   FUZZ_SECONDS=300 bash .ci/fuzz.sh            # all targets, 5 minutes each
#   bash .ci/fuzz.sh phone_parse router          # some targets
# A crash leaves its input in fuzz/artifacts/<target>/; replay it with
#   cargo +nightly fuzz run <target> fuzz/artifacts/<target>/crash-...
set -uo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

SECONDS_EACH="${FUZZ_SECONDS:-60}"
RSS_LIMIT_MB="${FUZZ_RSS_LIMIT_MB:-4096}"
ALL_TARGETS=(phone_parse request_body bearer_jwt router accept_language)
if [ "$#" -gt 0 ]; then TARGETS=("$@"); else TARGETS=("${ALL_TARGETS[@]}"); fi

if ! rustup toolchain list | grep -q '^nightly'; then
  rustup toolchain install nightly --profile minimal || { echo "0 passed, ${#TARGETS[@]} failed"; exit 1; }
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked || { echo "0 passed, ${#TARGETS[@]} failed"; exit 1; }
fi

# One build for all targets (they share every dependency); run uses the same settings.
if ! cargo +nightly fuzz build; then
  echo "fuzz: the targets do not build"
  echo "0 passed, ${#TARGETS[@]} failed"
  exit 1
fi

passed=0
failed=0
failed_names=()
for t in "${TARGETS[@]}"; do
  corpus="fuzz/corpus/$t"
  mkdir -p "$corpus"
  echo "== fuzz $t for ${SECONDS_EACH}s"
  # Corpus entries the run adds stay local (.gitignore keeps only seed-* files).
  if cargo +nightly fuzz run "$t" "$corpus" -- \
        -max_total_time="$SECONDS_EACH" -rss_limit_mb="$RSS_LIMIT_MB" \
        -timeout=25 -print_final_stats=1; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    failed_names+=("$t")
    echo "fuzz: $t found a crash; its input is in fuzz/artifacts/$t/"
  fi
done

if [ "$failed" -gt 0 ]; then echo "fuzz: failing targets: ${failed_names[*]}"; fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
