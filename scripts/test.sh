#!/usr/bin/env bash
# The project's test command: fetches the real test data and the Python test tools (cached
# outside the checkout), then checks formatting and lints, and runs every test of the
# workspace, end-to-end suites included.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
echo "== test data: $(scripts/fetch-test-data.sh)"
echo "== python tools: $(scripts/python-env.sh)"
echo "== cargo target dir: $CARGO_TARGET_DIR"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked "$@"
