#!/usr/bin/env bash
# dextr3d through the gateway on a session holding MNI152: the model's forward pass against
# everything else (pre, post, encode, gateway, transport). Starts the platform (release) with
# models/engine_pool.json, runs the client, stops it.
#   scripts/inference/bench_dextr3d.sh [MODEL] [ROUNDS]      (MODEL: annotation_mri_brain)
# AIAA_BIN=PATH runs that `aiaa` instead of building this checkout's (to compare two builds in
# alternating runs; copy each build aside first: checkouts share one target folder).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
source "$root/scripts/env.sh"
data=$("$root/scripts/fetch-test-data.sh")
model=${1:-annotation_mri_brain} rounds=${2:-10}
if [ -z "${AIAA_BIN:-}" ]; then
  cargo build --release --locked -q -p aiaa-cli --bin aiaa
fi
aiaa=${AIAA_BIN:-$CARGO_TARGET_DIR/release/aiaa}
store=$(mktemp -d)
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$store"' EXIT
AIAA_STORE_URL=$store AIAA_REGISTRY_LISTEN=127.0.0.1:0 AIAA_DATASTORE_LISTEN=127.0.0.1:0 \
  AIAA_INFERENCE_LISTEN=127.0.0.1:0 AIAA_TRAINER_LISTEN=127.0.0.1:0 AIAA_GATEWAY_LISTEN=127.0.0.1:0 AIAA_LOG=error \
  "$aiaa" up --engine-pool "$root/models/engine_pool.json" > "$store/out" &
pid=$!
for _ in $(seq 1 300); do grep -q "^aiaa: ready" "$store/out" 2>/dev/null && break; sleep 0.2; done
gateway=$(sed -n 's/^aiaa: gateway listening on \([^ ]*\).*/\1/p' "$store/out")
"$AIAA_TORCH_VENV/bin/python" "$here/bench_dextr3d.py" "$gateway" "$model" \
  "$data/mni152/MNI152_mask.nii.gz" "$data/mni152/MNI152_T1.nii.gz" "$rounds"
