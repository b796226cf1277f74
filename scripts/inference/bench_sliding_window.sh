#!/usr/bin/env bash
# Sliding-window segmentation of a 256^3 volume: our SegmentationEngine (the module frozen as
# served) against MONAI's sliding_window_inference running the same TorchScript file as MONAI
# users do (plain) and at its best (frozen + optimize_for_inference); deepbet's model.pt, the
# same volume, roi, overlap, window batch, Gaussian blending and threads. RUNS alternating
# runs of one volume per side (each process loads and warms its module first); prints every
# run, the medians and the ratios.
#   scripts/inference/bench_sliding_window.sh [RUNS] [ROI] [OVERLAP] [THREADS] [SW_BATCH]
#                                                                    (3 128 0.25 nproc 1)
# AIAA_BENCH_BIN=PATH runs that build of the example instead of building this checkout's;
# AIAA_BENCH_SIDES=ours runs our side only (to compare two builds of ours).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
source "$root/scripts/env.sh"
data=$("$root/scripts/fetch-test-data.sh")
runs=${1:-3} roi=${2:-128} overlap=${3:-0.25} threads=${4:-$(nproc)} batch=${5:-1}
model="$data/deepbet/model.pt" image="$data/mni152/MNI152_T1.nii.gz"
if [ -z "${AIAA_BENCH_BIN:-}" ]; then
  cargo build --release --locked -q -p aiaa-inference --example bench_sliding_window
fi
bench=${AIAA_BENCH_BIN:-$CARGO_TARGET_DIR/release/examples/bench_sliding_window}
py=$AIAA_TORCH_VENV/bin/python
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg); $threads threads; roi $roi, overlap $overlap, sw_batch_size $batch"
results=()
for run in $(seq 1 "$runs"); do
  ours=$("$bench" "$model" "$image" 1 "$roi" "$overlap" "$threads" "$batch")
  echo "run $run ours:         $ours"
  results+=("ours $ours")
  [ "${AIAA_BENCH_SIDES:-both}" = ours ] && continue
  for module in plain frozen; do
    monai=$("$py" "$here/bench_sliding_window_monai.py" "$model" "$image" 1 "$roi" "$overlap" "$threads" "$batch" "$module")
    echo "run $run MONAI $module: $monai"
    results+=("$module $monai")
  done
done
"$py" - "${results[@]}" <<'PY'
import json, statistics, sys
sides = {}
for item in sys.argv[1:]:
    side, line = item.split(" ", 1)
    sides.setdefault(side, []).append(json.loads(line))
med = {side: statistics.median(r["seconds"] for r in rs) for side, rs in sides.items()}
fg = {side: rs[-1]["foreground"] for side, rs in sides.items()}
print("256^3 sliding window, median seconds: " + ", ".join(f"{s} {v:.2f}" for s, v in med.items())
      + "; foreground voxels: " + ", ".join(f"{s} {v}" for s, v in fg.items()))
for side in ("plain", "frozen"):
    if side in med:
        print(f"ours against MONAI {side}: {med[side] / med['ours']:.2f}x its speed")
PY
