# shellcheck shell=bash
# Sourced by the click benchmarks (bench_dextr3d.sh, bench_deepgrow.sh), after scripts/env.sh
# with $root and $threads set: builds this checkout's `aiaa` (release) unless AIAA_BIN names
# one, starts `aiaa up` with models/engine_pool.json on free local ports and a throwaway
# store, waits until it is ready, and sets $gateway (host:port). The platform and the store
# go when the benchmark's shell exits.
if [ -z "${AIAA_BIN:-}" ]; then
  cargo build --release --locked -q -p aiaa-cli --bin aiaa
fi
aiaa=${AIAA_BIN:-$CARGO_TARGET_DIR/release/aiaa}
store=$(mktemp -d)
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$store"' EXIT
AIAA_STORE_URL=$store AIAA_REGISTRY_LISTEN=127.0.0.1:0 AIAA_DATASTORE_LISTEN=127.0.0.1:0 \
  AIAA_INFERENCE_LISTEN=127.0.0.1:0 AIAA_TRAINER_LISTEN=127.0.0.1:0 AIAA_GATEWAY_LISTEN=127.0.0.1:0 AIAA_LOG=error \
  AIAA_INFERENCE_THREADS=$threads "$aiaa" up --engine-pool "$root/models/engine_pool.json" > "$store/out" &
pid=$!
for _ in $(seq 1 300); do grep -q "^aiaa: ready" "$store/out" 2>/dev/null && break; sleep 0.2; done
gateway=$(sed -n 's/^aiaa: gateway listening on \([^ ]*\).*/\1/p' "$store/out")
