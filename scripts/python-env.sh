#!/usr/bin/env bash
# The project's one Python environment: creates (or completes) it and prints its path,
#   ${AIAA_CACHE_DIR:-$HOME/.cache/aiaa}/venv-torch-<hash of requirements-torch.txt + python version>
#   scripts/python-env.sh [--base]
# --base: the base only (what tch links and the MONAI references run on), without the test
# tools' layers: scripts/env.sh asks for that, so the platform's own commands (scripts/up.sh,
# ./aiaa) never install test tools; tests and scripts/test.sh ask for the whole.
# Every Python user of the project runs this venv: tch links the libtorch of its torch
# (scripts/env.sh: LIBTORCH_USE_PYTORCH=1 with "$venv/bin/python" first on PATH), the MONAI
# references and benchmarks, the test tools and the Rust tests' Python checks.
#
# Made of:
# - the base, requirements-torch.txt (torch, MONAI): the venv's path is keyed by that file and
#   the Python version only, so that the layers below never move it (a new path re-links tch:
#   torch-sys and every crate above it rebuild; so does any edit of that file, comments too,
#   which is why its header still names torch-env.sh, this script's former name). The base is
#   built at its final path (a moved venv has broken script shebangs); `.complete` marks it
#   usable, and a half-made one (no `.complete`) is removed and rebuilt.
# - layers: the files of `layers` below, pip-installed into that same venv. Each is recorded by
#   a stamp `.layer-<file>-<hash of the file>`; a changed file has no stamp, so it is installed
#   again (its old stamp is removed first). Whenever one is missing, pip is run on ALL the
#   layer files together, constrained by the base's pins: pip resolves one consistent set (a
#   layer cannot silently move a package another layer or the base pins; a conflict fails
#   the install instead), and what is already installed at the pinned version is left alone;
#   `pip check` then checks the whole venv. A package dropped from a layer file stays
#   installed (remove the venv to prune it). To extend the environment, add a pinned file to
#   `layers` (not a new venv or a PYTHONPATH folder).
# Installs run under `flock` on venv-torch-<key>.lock in the cache folder, so parallel test
# processes wait for one installer instead of racing it; a failed install leaves no stamp,
# so the next run tries again.
# Only PyPI is needed: torch's CUDA dependencies (nvidia-*) come from PyPI too, and are large.
#
# The layers do not change what the MONAI references measure (scripts/transforms/
# bench_vs_monai.py, scripts/training/monai_step_bench.py, scripts/inference/
# bench_sliding_window_monai.py, crates/metrics/tests/monai): see "The Python environment" in
# docs/transforms.md; scripts/check_monai_paths.py checks it again after a new layer.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
base="$here/requirements-torch.txt"
layers=(
  requirements-test.txt        # imaging readers, moto (S3), Helm chart test, gRPC client
  requirements-tensorboard.txt # reads the trainer's TensorBoard event files back
  requirements-scipy.txt       # MONAI's surface-distance metrics on CPU
)
if [ "${1:-}" = --base ]; then
  layers=()
fi
py=${PYTHON:-python3}
cache=${AIAA_CACHE_DIR:-$HOME/.cache/aiaa}
key=$( (cat "$base"; "$py" -c 'import sys; print(sys.version_info[:2])') | sha256sum | cut -c1-12)
venv=$cache/venv-torch-$key

stamp() { # the stamp of layer file $1
  echo "$venv/.layer-${1%.txt}-$(sha256sum "$here/$1" | cut -c1-12)"
}
ready() {
  [ -f "$venv/.complete" ] || return 1
  local l
  for l in "${layers[@]}"; do [ -f "$(stamp "$l")" ] || return 1; done
}

if ! ready; then
  mkdir -p "$cache"
  exec 9>"$venv.lock"
  if ! flock -n 9; then
    echo "aiaa: waiting for another process to finish installing into $venv" >&2
    flock 9
  fi
  if [ ! -f "$venv/.complete" ]; then
    echo "aiaa: installing PyTorch $(sed -n 's/^torch==//p' "$base") and MONAI into $venv: once per machine; torch with its CUDA libraries is a few GB to download, so this takes several minutes" >&2
    rm -rf "$venv"
    "$py" -m venv "$venv" >&2
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$base" >&2
    "$venv/bin/python" -c 'import torch, monai, nibabel, numpy' >&2
    touch "$venv/.complete"
    echo "aiaa: PyTorch is installed ($(du -sh "$venv" | cut -f1)); later runs reuse it" >&2
  fi
  missing=()
  for l in "${layers[@]}"; do [ -f "$(stamp "$l")" ] || missing+=("$l"); done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "aiaa: installing ${missing[*]} into $venv (pip, with the other layers and the base's pins; once per change of those files, a minute or two)" >&2
    args=(-c "$base")
    for l in "${layers[@]}"; do
      args+=(-r "$here/$l")
    done
    for l in "${missing[@]}"; do
      rm -f "$venv/.layer-${l%.txt}-"*
    done
    if ! "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${args[@]}" >&2 ||
      ! "$venv/bin/python" -m pip check --disable-pip-version-check >&2; then
      echo "aiaa: installing ${missing[*]} failed; nothing is marked installed, so the next run tries again" >&2
      exit 1
    fi
    for l in "${missing[@]}"; do
      touch "$(stamp "$l")"
    done
    echo "aiaa: ${missing[*]} installed" >&2
  fi
fi
echo "$venv"
