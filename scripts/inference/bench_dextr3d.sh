#!/usr/bin/env bash
# A dextr3d click through the gateway against PyTorch's frozen + optimized forward pass of the
# same file, side by side in one run, alternating call by call (bench_dextr3d.py says how):
# sessions holding the ROBEX head and MNI152, seeded jittered points, the server's stages (pre, forward, post, encode,
# transport) and the ratios. Starts the platform (release) with models/engine_pool.json, runs
# the client, stops it.
#   scripts/inference/bench_dextr3d.sh [MODEL] [ROUNDS] [RUNS] [THREADS]
#                                                   (annotation_mri_brain 20 3 2)
# AIAA_BIN=PATH runs that `aiaa` instead of building this checkout's (to compare two builds in
# alternating runs; copy each build aside first: checkouts share one target folder).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
source "$root/scripts/env.sh"
data=$("$root/scripts/fetch-test-data.sh")
model=${1:-annotation_mri_brain} rounds=${2:-20} runs=${3:-3} threads=${4:-2}
load=$(cut -d' ' -f1-3 /proc/loadavg)
source "$here/start-platform.sh"
config="$root/models/$model/config.json"
read -r file roi < <("$AIAA_TORCH_VENV/bin/python" -c 'import json, os, sys
c = json.load(open(sys.argv[1])); print(os.path.join(os.path.dirname(sys.argv[1]), c["model_path"]), ",".join(map(str, c["roi"])))' "$config")
AIAA_BENCH_LOAD=$load "$AIAA_TORCH_VENV/bin/python" "$here/bench_dextr3d.py" "$gateway" "$model" "$file" "$roi" \
  "$rounds" "$runs" "$threads" \
  "ROBEX=$data/robex/atlas.nii.gz,$data/robex/atlas_mask.nii.gz" \
  "MNI152=$data/mni152/MNI152_T1.nii.gz,$data/mni152/MNI152_mask.nii.gz"
