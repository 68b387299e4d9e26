#!/usr/bin/env bash
# Runs every cargo-fuzz target for a bounded time (default 20 s each), starting
# from the small committed corpus in fuzz/corpus; new inputs go to a temporary
# directory, so the committed corpus stays small. A crash fails the script.
#   scripts/fuzz.sh [SECONDS_PER_TARGET]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-20}"
export PATH="$HOME/.cargo/bin:$PATH"
# cargo-fuzz needs nightly flags (-Zsanitizer); the stable toolchain accepts them with this.
export RUSTC_BOOTSTRAP=1
target_dir="${CARGO_TARGET_DIR:-target}/fuzz"
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi
cd fuzz
for target in $(cargo fuzz list); do
  scratch="$(mktemp -d)"
  echo "==> fuzzing $target for ${seconds}s"
  status=0
  cargo fuzz run --target-dir "$target_dir" "$target" "$scratch" "corpus/$target" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -print_final_stats=1 >"$scratch.log" 2>&1 || status=$?
  grep -E "^(stat::number_of_executed_units|stat::new_units_added|SUMMARY)|panicked" "$scratch.log" || true
  if [ "$status" -ne 0 ]; then tail -n 30 "$scratch.log" >&2; fi
  rm -f "$scratch.log"
  rm -rf "$scratch"
  if [ "$status" -ne 0 ]; then
    echo "fuzz target $target failed (exit $status); the crashing input is under fuzz/artifacts/$target" >&2
    exit "$status"
  fi
done
