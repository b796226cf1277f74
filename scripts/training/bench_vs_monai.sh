#!/usr/bin/env bash
# Time per training iteration of recipes/annotation_mri_brain (DEXTR3D brain annotation,
# UNet3D at 48^3, batch 2, num_workers 2): `aiaa train segmentation` against the same network,
# loss, optimizer and data pipeline in PyTorch + MONAI (scripts/training/monai_step_bench.py,
# whose docstring maps every transform), on the same number of threads, in one run. Rounds
# alternate the sides (ours, PyTorch contiguous NCDHW, PyTorch channels_last_3d; reversed every
# other round) so the load of the shared machine hits all of them; prints each run, the ratios
# ours/PyTorch (target <= 1.0) and each side's share of the step spent waiting for data
# (target <= 10 %).
#   scripts/training/bench_vs_monai.sh [STEPS] [THREADS] [ROUNDS] [WARMUP]
# STEPS timed steps per run (default 20) after WARMUP untimed ones (3); THREADS intra-op
# threads on both sides (default: nproc); ROUNDS (2).
# Environment: AIAA_BENCH_PROFILE=dev|release (dev, default: the profile docs/training.md
# builds `aiaa` with; every aiaa crate is opt-level 3 in it), AIAA_BENCH_EXTREME=ours|monai
# (the Python side's extreme-points transform), AIAA_BENCH_VARIANTS="contiguous channels_last"
# (the PyTorch variants to run), AIAA_BENCH_OUT=DIR keeps the runs and
# results, AIAA_BIN=PATH runs that `aiaa` instead of building one (to compare two builds).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
source "$root/scripts/env.sh"
data=$("$root/scripts/fetch-test-data.sh")
steps=${1:-20} threads=${2:-$(nproc)} rounds=${3:-2} warmup=${4:-3}
profile=${AIAA_BENCH_PROFILE:-dev} extreme=${AIAA_BENCH_EXTREME:-ours}
read -r -a variants <<<"${AIAA_BENCH_VARIANTS:-contiguous channels_last}"
py="$AIAA_TORCH_VENV/bin/python"
bench="$here/monai_step_bench.py"
recipe="$root/recipes/annotation_mri_brain"
image="$data/mni152/MNI152_T1.nii.gz" label="$data/mni152/MNI152_mask.nii.gz"

case ${AIAA_BIN:+given}$profile in
  given*) aiaa=$AIAA_BIN ;;
  dev) cargo build --locked -q -p aiaa-cli; aiaa="$CARGO_TARGET_DIR/debug/aiaa" ;;
  release) cargo build --release --locked -q -p aiaa-cli; aiaa="$CARGO_TARGET_DIR/release/aiaa" ;;
  *) echo "AIAA_BENCH_PROFILE must be dev or release, not $profile" >&2; exit 2 ;;
esac

if [ -n "${AIAA_BENCH_OUT:-}" ]; then
  work=$AIAA_BENCH_OUT
  mkdir -p "$work"
else
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
fi

# The recipe's config without its validation (only training steps are compared; the summary's
# figures count training steps only anyway) and with no timed checkpoints; a datalist with its
# training item only. Prints the untimed tail: our loader runs up to 2 * batch + workers
# samples ahead; once it has prepared the last sample its threads exit (no more competition
# for the CPU, and libgomp's spin policy changes, see docs/training.md), so the last steps
# are run but not timed.
tail_steps=$("$py" - "$recipe/config_train.json" "$image" "$label" "$work" <<'PY'
import json, math, sys
config, image, label, work = sys.argv[1:]
with open(config) as f:
    c = json.load(f)
c.pop("validate", None)
c["checkpoint_interval_s"] = 1e9
with open(f"{work}/config.json", "w") as f:
    json.dump(c, f, indent=1)
with open(f"{work}/datalist.json", "w") as f:
    json.dump({"training": [{"image": image, "label": label}]}, f)
bs, workers = c.get("batch_size", 1), c.get("num_workers", 2)
print(math.ceil((2 * bs + workers) / bs) + 1)
PY
)
results="$work/results.jsonl"
: >"$results"
load() { cut -d' ' -f1 /proc/loadavg; }

run_ours() {
  local r=$1 out="$work/ours-$1"
  rm -rf "$out"
  local la0 la1
  la0=$(load)
  "$aiaa" train segmentation -e "$work/config.json" -d "$work/datalist.json" -r "$out" \
    --epochs $((warmup + steps + tail_steps)) --torch_threads "$threads" --device cpu \
    --progress json --log_every 1 >"$out.jsonl"
  la1=$(load)
  "$py" "$bench" ours "$out.jsonl" --warmup "$warmup" --steps "$steps" --threads "$threads" \
    --loadavg "$la0" "$la1" | tee -a "$results"
}

run_torch() {
  "$py" "$bench" torch --config "$work/config.json" --image "$image" --label "$label" \
    --steps "$steps" --warmup "$warmup" --tail "$tail_steps" --threads "$threads" \
    --memory-format "$1" --extreme-points "$extreme" | tee -a "$results"
}

echo "aiaa ($profile): $aiaa; $steps timed steps after $warmup warm-up, $threads threads," \
  "$rounds round(s), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
# How busy the CPUs are before we start (other jobs on a shared machine), over 2 seconds.
cpu_busy() {
  local a b
  a=$(head -1 /proc/stat) && sleep 2 && b=$(head -1 /proc/stat)
  awk -v a="$a" -v b="$b" 'BEGIN { n = split(a, x); split(b, y); t = 0
    for (i = 2; i <= 9 && i <= n; i++) t += y[i] - x[i]
    idle = (y[5] - x[5]) + (y[6] - x[6]); printf "%.0f", (t > 0 ? 100 * (t - idle) / t : 0) }'
}
busy=$(cpu_busy)
echo "CPUs busy before the start: $busy %"
if [ "$busy" -gt 25 ]; then
  echo "warning: other jobs hold the CPUs. libgomp's spin-waiting (PyTorch's OpenMP threads) then" \
    "slows steps by up to 10x depending on who gets descheduled; read the ratios with care" \
    "(docs/training.md)"
fi
for r in $(seq 1 "$rounds"); do
  if [ $((r % 2)) -eq 1 ]; then
    run_ours "$r"
    for v in "${variants[@]}"; do run_torch "$v"; done
  else
    for ((i = ${#variants[@]} - 1; i >= 0; i--)); do run_torch "${variants[i]}"; done
    run_ours "$r"
  fi
done
"$py" "$bench" report "$results"
