#!/usr/bin/env bash
# One command: the chapter 6 train pre_transforms, aiaa-transforms vs MONAI, side by side.
#   scripts/transforms/bench.sh [--samples N] [--rounds R]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
source "$root/scripts/env.sh"
[ -f "$root/testdata/mni152/MNI152_T1.nii.gz" ] || "$root/scripts/fetch-test-data.sh"
exec "$AIAA_TORCH_VENV/bin/python" "$here/bench_vs_monai.py" "$@"
