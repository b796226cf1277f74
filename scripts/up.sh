#!/usr/bin/env bash
# The project's start command: builds the platform (release), fetches the real models it
# serves, starts every service in one process storing under ./aiaa-data (or $AIAA_STORE_URL)
# with the models of models/engine_pool.json loaded (deepbet's brain extraction as
# segmentation_mri_brain, and our DEXTR3D brain annotation model when it has been built),
# and publishes deepbet in the registry as aiaa/default/segmentation_mri_brain version 1.
# The annotation page is served at http://localhost:5000/ (built by scripts/web.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
data=$(scripts/fetch-test-data.sh)
# The annotation page (http://localhost:5000/), compiled into the binary below.
scripts/web.sh >/dev/null
# AIAA_BUILD_PROFILE=dev skips the optimised build (the test suite uses it).
profile=${AIAA_BUILD_PROFILE:-release}
dir=$profile; [ "$profile" = dev ] && dir=debug
aiaa="$CARGO_TARGET_DIR/$dir/aiaa"
if [ ! -x "$aiaa" ]; then
  echo "aiaa: building the platform ($profile) once: 10-20 minutes on 2 cores; later starts take seconds" >&2
fi
# aiaa-convert: `aiaa convert` runs it (no libtorch to load; see crates/convert).
cargo build --profile "$profile" --locked -p aiaa-cli --bin aiaa -p aiaa-convert --bin aiaa-convert
echo "aiaa: the ./aiaa command runs this binary (e.g. ./aiaa pull -lm, ./aiaa status)" >&2
"$aiaa" up --engine-pool models/engine_pool.json "$@" &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid' INT TERM
registry=${AIAA_REGISTRY_URL:-http://127.0.0.1:5101}
for _ in $(seq 1 100); do
  "$aiaa" pull --registry "$registry" -lm >/dev/null 2>&1 && break
  sleep 0.2
done
if ! "$aiaa" pull --registry "$registry" -lv -m segmentation_mri_brain 2>/dev/null | grep -q '^1 '; then
  "$aiaa" push --registry "$registry" -m segmentation_mri_brain -v 1 --type segmentation --labels brain \
    --description "deepbet brain extraction (TorchScript, MIT), from the deepbet 1.0.2 package" \
    --engine-config models/segmentation_mri_brain/config.json \
    "$data/deepbet/model.pt" "$data/deepbet/bbox_model.pt"
fi
wait $pid
