# shellcheck shell=bash
# Sourced by the project's scripts: where the caches live (outside the checkout, keyed by
# version, so every clone on this machine reuses them; a fresh machine builds them), and the
# libtorch that tch links: PyPI torch==2.13.0 in the project's one Python environment
# (scripts/python-env.sh), found by torch-sys through LIBTORCH_USE_PYTORCH=1 and the venv's
# `python`.
_aiaa_scripts=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
AIAA_CACHE_DIR=${AIAA_CACHE_DIR:-$HOME/.cache/aiaa}
rust_version=$(sed -n 's/^channel = "\(.*\)"/\1/p' "$_aiaa_scripts/../rust-toolchain.toml")
export AIAA_CACHE_DIR
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$AIAA_CACHE_DIR/target-rust-$rust_version}
# The interpreter that creates the venv (scripts/python-env.sh, also when a test runs it): the
# system one, not the venv's own python, which is first on PATH below.
export PYTHON=${PYTHON:-$(command -v python3)}
# The base only: the test tools' layers are installed by the tests that use them.
AIAA_TORCH_VENV=$("$_aiaa_scripts/python-env.sh" --base)
export AIAA_TORCH_VENV
export LIBTORCH_USE_PYTORCH=1
export VIRTUAL_ENV=$AIAA_TORCH_VENV
export PATH="$AIAA_TORCH_VENV/bin:$PATH"
# Binaries carry an rpath to torch's libraries (build.rs of each crate linking tch); this is
# for anything built before that or elsewhere.
_torch_lib=$(echo "$AIAA_TORCH_VENV"/lib/python3*/site-packages/torch/lib)
export LD_LIBRARY_PATH="$_torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
