#!/usr/bin/env bash
# Runs the cargo-fuzz targets of fuzz/ one after another, SECONDS each (default 600),
# logging to fuzz/logs/<target>.log. Crashes, timeouts and OOMs land in
# fuzz/artifacts/<target>/. Seed corpora: scripts/imaging/fuzz_seeds.py.
#   scripts/imaging/fuzz_all.sh [SECONDS] [TARGET...]
set -uo pipefail
cd "$(dirname "$0")/../../fuzz"
secs=${1:-600}; shift || true
targets=("$@"); [ ${#targets[@]} -eq 0 ] && targets=(dicom nifti mha)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/aiaa/target-fuzz}
mkdir -p logs
cargo +nightly fuzz build || exit 1
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  # -fork=1 + -ignore_*: keep fuzzing after a finding, so every target runs its full time
  # and all findings are collected (one job, one core).
  cargo +nightly fuzz run "$t" "corpus/$t" -- -max_total_time="$secs" -rss_limit_mb=2048 \
    -timeout=10 -fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1 \
    -artifact_prefix="artifacts/$t/" -print_final_stats=1 > "logs/$t.log" 2>&1
  echo "$t: exit $? ($(ls "artifacts/$t" | wc -l) artifacts)"
done
