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
source "$here/start-platform.sh"
AIAA_BENCH_LOAD=$load "$AIAA_TORCH_VENV/bin/python" "$here/bench_deepgrow.py" "$gateway" "$model" \
  "$root/models/$model/config.json" "$rounds" "$runs" "$threads" \
  "ROBEX=$data/robex/atlas.nii.gz,$data/robex/atlas_mask.nii.gz" \
  "MNI152=$data/mni152/MNI152_T1.nii.gz,$data/mni152/MNI152_mask.nii.gz"
