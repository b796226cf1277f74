#!/usr/bin/env bash
# Sliding-window segmentation of a 256^3 volume: our SegmentationEngine vs MONAI's
# sliding_window_inference, the same TorchScript model (deepbet's model.pt), the same volume,
# roi, overlap and Gaussian blending, on the same number of threads, in one run.
#   scripts/inference/bench_sliding_window.sh [ROUNDS] [ROI] [OVERLAP] [THREADS]
# AIAA_BENCH_BIN=PATH runs that build of the example instead of building this checkout's;
# AIAA_BENCH_SIDES=ours runs our side only (to compare two builds of ours).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
source "$root/scripts/env.sh"
data=$("$root/scripts/fetch-test-data.sh")
rounds=${1:-3} roi=${2:-128} overlap=${3:-0.25} threads=${4:-$(nproc)}
model="$data/deepbet/model.pt" image="$data/mni152/MNI152_T1.nii.gz"
if [ -z "${AIAA_BENCH_BIN:-}" ]; then
  cargo build --release --locked -q -p aiaa-inference --example bench_sliding_window
fi
bench=${AIAA_BENCH_BIN:-$CARGO_TARGET_DIR/release/examples/bench_sliding_window}
ours=$("$bench" "$model" "$image" "$rounds" "$roi" "$overlap" "$threads")
if [ "${AIAA_BENCH_SIDES:-both}" = ours ]; then
  echo "ours:  $ours"
  exit 0
fi
monai=$("$AIAA_TORCH_VENV/bin/python" "$here/bench_sliding_window_monai.py" "$model" "$image" "$rounds" "$roi" "$overlap" "$threads")
echo "ours:  $ours"
echo "monai: $monai"
"$AIAA_TORCH_VENV/bin/python" - "$ours" "$monai" <<'PY'
import json, sys
ours, monai = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"256^3 sliding window: ours {ours['seconds']:.2f} s, MONAI {monai['seconds']:.2f} s: "
      f"throughput ratio ours/MONAI = {monai['seconds'] / ours['seconds']:.2f}x "
      f"(foreground voxels {ours['foreground']} vs {monai['foreground']})")
PY
