# Sourced by the project's scripts: where the caches live (outside the checkout, keyed by
# version, so every clone on this machine reuses them; a fresh machine builds them).
AIAA_CACHE_DIR=${AIAA_CACHE_DIR:-$HOME/.cache/aiaa}
rust_version=$(sed -n 's/^channel = "\(.*\)"/\1/p' "$(dirname "${BASH_SOURCE[0]}")/../rust-toolchain.toml")
export AIAA_CACHE_DIR
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$AIAA_CACHE_DIR/target-rust-$rust_version}
