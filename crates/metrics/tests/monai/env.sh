#!/usr/bin/env bash
# The Python that runs MONAI for the metrics agreement test and benchmark. Prints two lines:
# the torch venv's python (scripts/torch-env.sh: torch, monai, nibabel, numpy), and a folder
# to put on PYTHONPATH that holds scipy. MONAI's surface metrics need scipy on CPU
# (scipy.ndimage.binary_erosion for the edges, scipy.spatial.KDTree for the distances) and
# the torch venv does not have it, so it is installed here (pinned, cached outside the
# checkout) without touching that venv.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
venv=${AIAA_TORCH_VENV:-$("$here/../../../../scripts/torch-env.sh")}
pyver=$("$venv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
scipy_version=1.16.3
dir=${AIAA_CACHE_DIR:-$HOME/.cache/aiaa}/pylib-scipy-$scipy_version-py$pyver
if [ ! -f "$dir/.complete" ]; then
  tmp="$dir.tmp.$$"
  rm -rf "$tmp"
  "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps --target "$tmp" \
    "scipy==$scipy_version" >&2
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
