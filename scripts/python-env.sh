#!/usr/bin/env bash
# Creates (or reuses) the Python venv for the imaging agreement scripts and prints its path.
#   ${AIAA_CACHE_DIR:-$HOME/.cache/aiaa}/venv-<hash of requirements-test.txt + python version>
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
req="$here/requirements-test.txt"
py=${PYTHON:-python3}
key=$( (cat "$req"; "$py" -c 'import sys; print(sys.version_info[:2])') | sha256sum | cut -c1-12)
venv=${AIAA_CACHE_DIR:-$HOME/.cache/aiaa}/venv-$key
if [ ! -f "$venv/.complete" ]; then
  rm -rf "$venv.tmp"
  "$py" -m venv "$venv.tmp" >&2
  "$venv.tmp/bin/pip" install --quiet --disable-pip-version-check -r "$req" >&2
  touch "$venv.tmp/.complete"
  rm -rf "$venv" && mv "$venv.tmp" "$venv"
fi
echo "$venv"
