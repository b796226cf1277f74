#!/usr/bin/env bash
# The one way to build the aiaa service images (docker/Dockerfile), used by the tests, the
# Helm chart's tests and people. Prints each image's name and size.
#
#   scripts/docker/build-images.sh                       # release binaries built here, CPU images
#   scripts/docker/build-images.sh --bin-dir DIR         # binaries already built (e.g. target/debug)
#   scripts/docker/build-images.sh --cuda                # also inference-cuda, trainer-cuda
#   scripts/docker/build-images.sh --self-contained      # compile inside Docker (docker build only)
#   scripts/docker/build-images.sh registry gateway      # only these targets
#
# Options: --tag TAG (default: the workspace version), --repo REPO (default aiaa: images are
# REPO/<target>:TAG, e.g. aiaa/registry:0.1.0, aiaa/inference-cuda:0.1.0), --base IMAGE (default: the image
# scripts/docker/base.sh builds from Debian packages; debian:bookworm-slim where a registry is
# reachable), --rust-image IMAGE (self-contained builds only).
#
# By default the binaries are compiled outside Docker (`cargo build --locked --release`, the
# workspace's libtorch from scripts/env.sh) and copied in: on 2 cores that is much faster than
# compiling inside a build stage, and the binaries are the same ones the tests ran.
# The last lines printed are `<image> <size>` pairs, one per image.
set -euo pipefail
repo_root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo_root"

tag=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
image_repo=aiaa base= rust_image=rust:1.95-slim-bookworm bin_dir= cuda=0 self_contained=0 targets=()
while [ $# -gt 0 ]; do
  case $1 in
    --tag) tag=$2; shift 2 ;;
    --repo) image_repo=$2; shift 2 ;;
    --base) base=$2; shift 2 ;;
    --rust-image) rust_image=$2; shift 2 ;;
    --bin-dir) bin_dir=$2; shift 2 ;;
    --cuda) cuda=1; shift ;;
    --self-contained) self_contained=1; shift ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    -*) echo "build-images.sh: unknown option $1" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
if [ ${#targets[@]} -eq 0 ]; then
  targets=(registry datastore gateway inference trainer)
  [ "$cuda" = 1 ] && targets+=(inference-cuda trainer-cuda)
fi
for t in "${targets[@]}"; do
  case $t in registry|datastore|gateway|inference|trainer) ;; inference-cuda|trainer-cuda) cuda=1 ;;
    *) echo "build-images.sh: unknown target $t" >&2; exit 2 ;; esac
done
docker info >/dev/null 2>&1 || { echo "build-images.sh: no Docker engine answers (start dockerd)" >&2; exit 1; }
[ -n "$base" ] || base=$(scripts/docker/base.sh)

image_name() { case $1 in dist) echo "aiaa-build/dist:$(basename "$ctx")" ;; *) echo "$image_repo/$1:$tag" ;; esac; }
revision=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
log=$(mktemp "${TMPDIR:-/tmp}/aiaa-docker-build.XXXXXX")
build() { # build <context> <target> <extra args...>
  local ctx=$1 target=$2; shift 2
  local start; start=$(date +%s)
  if ! docker build -f docker/Dockerfile --target "$target" -t "$(image_name "$target")" \
      --build-arg BASE="$base" --build-arg VERSION="$tag" --build-arg REVISION="$revision" \
      "$@" "$ctx" >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "build-images.sh: building $target failed (log above, whole in $log)" >&2
    exit 1
  fi
  echo "build-images.sh: $(image_name "$target") built in $(( $(date +%s) - start )) s" >&2
}

if [ "$self_contained" = 1 ]; then
  for t in "${targets[@]}"; do
    build . "$t" --build-arg SOURCE=build --build-arg RUST_IMAGE="$rust_image"
  done
else
  # shellcheck source=../env.sh
  source scripts/env.sh >/dev/null
  if [ -z "$bin_dir" ]; then
    scripts/web.sh >/dev/null  # the gateway embeds the annotation page
    cargo build --locked --release -p aiaa-cli --bin aiaa -p aiaa-registry --bin aiaa-registry \
      -p aiaa-datastore --bin aiaa-datastore -p aiaa-gateway --bin aiaa-gateway \
      -p aiaa-inference --bin aiaa-inference -p aiaa-trainer --bin aiaa-trainer >&2
    bin_dir=$CARGO_TARGET_DIR/release
  fi
  site=$(echo "$AIAA_TORCH_VENV"/lib/python3*/site-packages)
  torch_libs=(--torch-lib "$site/torch/lib")
  for d in "$site"/nvidia/*/lib; do torch_libs+=(--torch-lib "$d"); done
  # Two build contexts, so that each build sends the engine only what it needs: the
  # registry, datastore and gateway images their binaries; inference and trainer everything.
  # Both hold scripts/docker/ and dist/ only, kept under the cache between runs so that hard
  # links to the venv's libraries stay on one file system.
  ctx=${AIAA_CACHE_DIR:-$HOME/.cache/aiaa}/docker-context
  rm -rf "$ctx" && mkdir -p "$ctx/full/scripts" "$ctx/small/scripts"
  cp -r scripts/docker "$ctx/full/scripts/docker"
  cp -r scripts/docker "$ctx/small/scripts/docker"
  stage_args=()
  [ "$cuda" = 1 ] && stage_args+=(--cuda)
  scripts/docker/stage-dist.sh --bin-dir "$bin_dir" "${torch_libs[@]}" --out "$ctx/full/dist" "${stage_args[@]}" 2>/dev/null
  mkdir -p "$ctx/small/dist/bin" "$ctx/small/dist/bin-cpu" "$ctx/small/dist/lib/cpu" "$ctx/small/dist/lib/cuda"
  for b in aiaa-registry aiaa-datastore aiaa-gateway; do ln "$ctx/full/dist/bin/$b" "$ctx/small/dist/bin/$b"; done
  # The dist stage of each context, tagged, so that the ones of earlier builds (a gigabyte
  # each, with the libraries) become untagged and are pruned below; the targets reuse it.
  for c in small full; do
    build "$ctx/$c" dist --build-arg SOURCE=context --build-arg RUST_IMAGE="$base"
  done
  for t in "${targets[@]}"; do
    case $t in registry|datastore|gateway) c=$ctx/small ;; *) c=$ctx/full ;; esac
    # Nothing is compiled: the build stage may be the base image itself.
    build "$c" "$t" --build-arg SOURCE=context --build-arg RUST_IMAGE="$base"
  done
  # Best effort: another build's prune may be running (the engine allows one at a time).
  docker image prune -f --filter label=aiaa.build-stage=dist >/dev/null 2>&1 || true
fi
rm -f "$log"

base_size=$(docker image inspect -f '{{.Size}}' "$base")
printf '%-36s %8s  %s\n' image size "above $base" >&2
for t in "${targets[@]}"; do
  name=$(image_name "$t")
  size=$(docker image inspect -f '{{.Size}}' "$name")
  printf '%-36s %5d MB  %+d MB\n' "$name" $((size / 1000000)) $(((size - base_size) / 1000000))
done
