#!/usr/bin/env bash
# Our forward pass against PyTorch's at its best, side by side: for each served network, the
# same TorchScript file, input shape and threads, ours (crates/jit's forward_bench: frozen,
# optimised and warmed up as the engines serve it) and PyTorch's (bench_forward_torch.py:
# torch.jit.freeze + optimize_for_inference under inference_mode), in alternating runs;
# prints each run's medians and the ratio of the medians (ours / PyTorch: below 1 is faster).
#   scripts/inference/bench_forward.sh [RUNS] [ROUNDS] [THREADS]     (3 20 2)
# AIAA_BENCH_FULL=1 adds deepbet's 256^3 network (minutes).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
source "$root/scripts/env.sh"
data=$("$root/scripts/fetch-test-data.sh")
runs=${1:-3} rounds=${2:-20} threads=${3:-2}
echo "== building crates/jit's forward_bench (release)" >&2
cargo build --release --locked -q -p aiaa-jit --example forward_bench
bench=$CARGO_TARGET_DIR/release/examples/forward_bench
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
nets=("$root/models/annotation_mri_brain/model.pt 1,2,48,48,48" "$data/deepbet/bbox_model.pt 1,1,128,128,128")
# deepbet's 256^3 network takes seconds a call, minutes a run: only when asked.
[ -n "${AIAA_BENCH_FULL:-}" ] && nets+=("$data/deepbet/model.pt 1,1,256,256,256")
for net in "${nets[@]}"; do
  set -- $net
  ours=() torch=()
  for _ in $(seq 1 "$runs"); do
    ours+=("$("$bench" "$1" "$2" "$rounds" "$threads" | sed -n 's/.*alternating rounds:.* frozen \([0-9.]*\) ms (plain.*/\1/p')")
    torch+=("$("$AIAA_TORCH_VENV/bin/python" "$here/bench_forward_torch.py" "$1" "$2" "$rounds" "$threads" \
      | "$AIAA_TORCH_VENV/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["median_ms"])')")
  done
  "$AIAA_TORCH_VENV/bin/python" - "$1" "$2" "${ours[*]}" "${torch[*]}" <<'PY'
import statistics, sys
name, shape, ours, torch = sys.argv[1], sys.argv[2], [float(v) for v in sys.argv[3].split()], [float(v) for v in sys.argv[4].split()]
o, t = statistics.median(ours), statistics.median(torch)
print(f"{name.rsplit('/', 2)[-2]}/{name.rsplit('/', 1)[-1]} [{shape}]: ours {ours} ms, PyTorch frozen {torch} ms; "
      f"medians {o:.1f} / {t:.1f} ms = {o / t:.2f}x")
PY
done
