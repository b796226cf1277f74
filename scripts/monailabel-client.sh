#!/usr/bin/env bash
# MONAI Label's own Python client (PyPI monailabel==0.8.5, `monailabel.client.MONAILabelClient`)
# for the tests that drive our MONAI Label API with it: installed once, without its
# dependencies, into a folder of its own, and that folder's path printed (put it on
# PYTHONPATH beside the project's venv, scripts/python-env.sh, which has `requests`).
#   scripts/monailabel-client.sh
# Why a folder and not a layer of the venv: the client needs only `requests`, but the package
# declares the whole server (FastAPI, its own MONAI pin, ...), which would move the venv's
# pinned torch/MONAI and fail `pip check`; `--no-deps` into the venv would fail it as well.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
version=0.8.5
cache=${AIAA_CACHE_DIR:-$HOME/.cache/aiaa}
dir=$cache/monailabel-client-$version
if [ ! -f "$dir/.complete" ]; then
  venv=$("$here/python-env.sh")
  mkdir -p "$cache"
  exec 9>"$dir.lock"
  flock 9
  if [ ! -f "$dir/.complete" ]; then
    echo "aiaa: installing MONAI Label's client (monailabel==$version, without its server's dependencies) into $dir: once per machine" >&2
    rm -rf "$dir"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps \
      --target "$dir" "monailabel==$version" >&2
    PYTHONPATH=$dir "$venv/bin/python" -c 'from monailabel.client import MONAILabelClient' >&2
    touch "$dir/.complete"
  fi
fi
echo "$dir"
