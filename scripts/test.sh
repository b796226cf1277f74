#!/usr/bin/env bash
# The project's test command: fetches the real test data and the Python test tools (cached
# outside the checkout), then checks formatting and lints, and runs every test of the
# workspace, end-to-end suites included.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
echo "== test data: $(scripts/fetch-test-data.sh)"
echo "== python tools: $(scripts/python-env.sh)"
# The annotation page: built before cargo so that the gateway embeds it; its unit tests
# (node's test runner) here, its browser test in tests/tests/web_page.rs.
echo "== annotation page: $(scripts/web.sh)"
(cd web && npm test --silent)
echo "== cargo target dir: $CARGO_TARGET_DIR"
# The target dir is shared by every clone (see scripts/env.sh); incremental caches are kept
# per checkout path and never reused by the next clone, so they only pile up (40 GiB seen,
# until the e2e datastore refused work for lack of disk). A test run builds without them.
export CARGO_INCREMENTAL=0
echo "== free disk: $(df -h --output=avail "$CARGO_TARGET_DIR" | tail -1 | tr -d ' ')"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked "$@"
