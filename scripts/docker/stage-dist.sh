#!/usr/bin/env bash
# Lays out the binaries and libtorch libraries the images are built from (docker/Dockerfile's
# dist/ folder): run by scripts/docker/build-images.sh on binaries built outside Docker, and
# inside the Dockerfile's self-contained build on the ones it compiled.
#
#   stage-dist.sh --bin-dir DIR --torch-lib DIR [--torch-lib DIR ...] --out DIR [--cuda]
#
#   OUT/bin/       aiaa, aiaa-registry, aiaa-datastore, aiaa-gateway, aiaa-inference,
#                  aiaa-trainer, debug info stripped, as linked
#   OUT/bin-cpu/   aiaa, aiaa-inference, aiaa-trainer without their NEEDED libtorch_cuda.so
#                  (patchelf), for the CPU images
#   OUT/lib/cpu/   what libtorch needs on the CPU: libtorch_cpu, libtorch, libc10, libgomp,
#                  and libcudart + libcupti (PyPI torch 2.13 is a CUDA 13 build: even
#                  libtorch_cpu.so needs them)
#   OUT/lib/cuda/  with --cuda: every other library of the --torch-lib folders (libtorch_cuda,
#                  cuDNN, cuBLAS, NCCL, ...); empty otherwise
set -euo pipefail
bin_dir= out= cuda=0 torch_libs=()
while [ $# -gt 0 ]; do
  case $1 in
    --bin-dir) bin_dir=$2; shift 2 ;;
    --torch-lib) torch_libs+=("$2"); shift 2 ;;
    --out) out=$2; shift 2 ;;
    --cuda) cuda=1; shift ;;
    *) echo "stage-dist.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -n "$bin_dir" ] && [ -n "$out" ] && [ ${#torch_libs[@]} -gt 0 ] \
  || { echo "usage: stage-dist.sh --bin-dir DIR --torch-lib DIR... --out DIR [--cuda]" >&2; exit 2; }
for tool in patchelf strip readelf; do
  command -v $tool >/dev/null || { echo "stage-dist.sh: $tool is missing (Debian: patchelf, binutils)" >&2; exit 1; }
done

services=(aiaa-registry aiaa-datastore aiaa-gateway)
torch_bins=(aiaa aiaa-inference aiaa-trainer)
cpu_libs=(libtorch_cpu.so libtorch.so libc10.so libgomp.so.1 libcudart.so.13 libcupti.so.13)
python_only='^(libtorch_python|libshm)'

rm -rf "$out" && mkdir -p "$out/bin" "$out/bin-cpu" "$out/lib/cpu" "$out/lib/cuda"
for b in "${services[@]}" "${torch_bins[@]}"; do
  [ -x "$bin_dir/$b" ] || { echo "stage-dist.sh: $bin_dir/$b is missing (build it first)" >&2; exit 1; }
  cp "$bin_dir/$b" "$out/bin/$b"
  strip --strip-debug "$out/bin/$b"
done
for b in "${torch_bins[@]}"; do
  cp "$out/bin/$b" "$out/bin-cpu/$b"
  if readelf -d "$out/bin-cpu/$b" | grep -q 'NEEDED.*\[libtorch_cuda\.so\]'; then
    patchelf --remove-needed libtorch_cuda.so "$out/bin-cpu/$b"
  fi
done
for b in "${services[@]}"; do
  if readelf -d "$out/bin/$b" | grep -q 'NEEDED.*libtorch'; then
    echo "stage-dist.sh: $b links libtorch; its image is meant to carry none" >&2
    exit 1
  fi
done

# Hard links where the file system allows (the libraries are large), copies elsewhere.
place() { ln -f "$1" "$2" 2>/dev/null || cp -f "$1" "$2"; }
find_lib() {
  local d
  for d in "${torch_libs[@]}"; do
    [ -e "$d/$1" ] && { echo "$d/$1"; return 0; }
  done
  return 1
}
for l in "${cpu_libs[@]}"; do
  src=$(find_lib "$l") || { echo "stage-dist.sh: $l not found in ${torch_libs[*]}" >&2; exit 1; }
  place "$(readlink -f "$src")" "$out/lib/cpu/$l"
done
if [ "$cuda" = 1 ]; then
  for d in "${torch_libs[@]}"; do
    for f in "$d"/*.so*; do
      n=$(basename "$f")
      [ -e "$out/lib/cpu/$n" ] || [ -e "$out/lib/cuda/$n" ] && continue
      [[ $n =~ $python_only ]] && continue
      place "$(readlink -f "$f")" "$out/lib/cuda/$n"
    done
  done
fi
du -sh "$out/bin" "$out/bin-cpu" "$out/lib/cpu" "$out/lib/cuda" >&2
