#!/usr/bin/env bash
# The Python of the trainer's tests. Prints two lines: the torch venv's python
# (scripts/torch-env.sh: torch, numpy) and a folder to put on PYTHONPATH that holds PyPI
# tensorboard, to read our event files back with its EventAccumulator. tensorboard is installed
# here (pinned, cached outside the checkout, without its server-side dependencies, which
# EventAccumulator does not import) so the torch venv stays as it is.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
venv=${AIAA_TORCH_VENV:-$("$here/../../../../scripts/torch-env.sh")}
pyver=$("$venv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
tensorboard_version=2.21.0
dir=${AIAA_CACHE_DIR:-$HOME/.cache/aiaa}/pylib-tensorboard-$tensorboard_version-py$pyver
if [ ! -f "$dir/.complete" ]; then
  tmp="$dir.tmp.$$"
  rm -rf "$tmp"
  "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps --target "$tmp" \
    "tensorboard==$tensorboard_version" "protobuf==7.36.2" "absl-py==2.5.1" >&2
  touch "$tmp/.complete"
  # Another process may have finished first: keep whichever is in place.
  if [ ! -f "$dir/.complete" ]; then
    rm -rf "$dir" && mv "$tmp" "$dir"
  else
    rm -rf "$tmp"
  fi
fi
echo "$venv/bin/python"
echo "$dir"
