#!/usr/bin/env bash
# Creates (or reuses) the PyTorch + MONAI Python venv and prints its path:
#   ${AIAA_CACHE_DIR:-$HOME/.cache/aiaa}/venv-torch-<hash of requirements-torch.txt + python version>
# The venv is built at its final path (a moved venv has broken script shebangs); a `.complete`
# file marks it usable, and a half-made one (no `.complete`) is removed and rebuilt.
# Only PyPI is needed: torch's CUDA dependencies (nvidia-*) come from PyPI too, and are large.
# For tch (the Rust binding): LIBTORCH_USE_PYTORCH=1 with "$venv/bin/python" first on PATH.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
req="$here/requirements-torch.txt"
py=${PYTHON:-python3}
key=$( (cat "$req"; "$py" -c 'import sys; print(sys.version_info[:2])') | sha256sum | cut -c1-12)
venv=${AIAA_CACHE_DIR:-$HOME/.cache/aiaa}/venv-torch-$key
if [ ! -f "$venv/.complete" ]; then
  echo "aiaa: installing PyTorch $(sed -n 's/^torch==//p' "$req") and MONAI into $venv: once per machine; torch with its CUDA libraries is a few GB to download, so this takes several minutes" >&2
  rm -rf "$venv"
  mkdir -p "$(dirname "$venv")"
  "$py" -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req" >&2
  "$venv/bin/python" -c 'import torch, monai, nibabel, numpy' >&2
  touch "$venv/.complete"
  echo "aiaa: PyTorch is installed ($(du -sh "$venv" | cut -f1)); later runs reuse it" >&2
fi
echo "$venv"
