#!/usr/bin/env bash
# A deepgrow click through the gateway (a session keeping the last mask) against PyTorch's
# frozen + optimized forward pass of the same file and against the same click in MONAI's
# whole-volume interactive pipeline, side by side in one run, alternating call by call
# (bench_deepgrow.py says how): sessions holding the ROBEX head and MNI152, the server's
# stages and the ratios. Starts the platform (release) with models/engine_pool.json, runs the
# client, stops it.
#   scripts/inference/bench_deepgrow.sh [MODEL] [ROUNDS] [RUNS] [THREADS]
#                                                   (deepgrow_mri_brain 20 3 2)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
source "$root/scripts/env.sh"
data=$("$root/scripts/fetch-test-data.sh")
model=${1:-deepgrow_mri_brain} rounds=${2:-20} runs=${3:-3} threads=${4:-2}
load=$(cut -d' ' -f1-3 /proc/loadavg)
if [ -z "${AIAA_BIN:-}" ]; then
  cargo build --release --locked -q -p aiaa-cli --bin aiaa
fi
aiaa=${AIAA_BIN:-$CARGO_TARGET_DIR/release/aiaa}
store=$(mktemp -d)
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$store"' EXIT
AIAA_STORE_URL=$store AIAA_REGISTRY_LISTEN=127.0.0.1:0 AIAA_DATASTORE_LISTEN=127.0.0.1:0 \
  AIAA_INFERENCE_LISTEN=127.0.0.1:0 AIAA_TRAINER_LISTEN=127.0.0.1:0 AIAA_GATEWAY_LISTEN=127.0.0.1:0 AIAA_LOG=error \
  AIAA_INFERENCE_THREADS=$threads "$aiaa" up --engine-pool "$root/models/engine_pool.json" > "$store/out" &
pid=$!
for _ in $(seq 1 300); do grep -q "^aiaa: ready" "$store/out" 2>/dev/null && break; sleep 0.2; done
gateway=$(sed -n 's/^aiaa: gateway listening on \([^ ]*\).*/\1/p' "$store/out")
AIAA_BENCH_LOAD=$load "$AIAA_TORCH_VENV/bin/python" "$here/bench_deepgrow.py" "$gateway" "$model" \
  "$root/models/$model/config.json" "$rounds" "$runs" "$threads" \
  "ROBEX=$data/robex/atlas.nii.gz,$data/robex/atlas_mask.nii.gz" \
  "MNI152=$data/mni152/MNI152_T1.nii.gz,$data/mni152/MNI152_mask.nii.gz"
