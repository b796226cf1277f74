"""Reference values for the MONAI-style transforms of ours (tests/monai_style.rs).

Writes tests/reference/monai_style.json from nibabel / numpy (orientation, percentiles,
z-score), MONAI (Orientationd, ScaleIntensityRangePercentilesd, NormalizeIntensityd),
cc3d (largest component) and fill_voids (hole filling), on random affines and on the
MNI152 T1 + brain mask of testdata/mni152 (scripts/fetch-test-data.sh).

    python crates/transforms/tests/reference/monai_style.py [TESTDATA_DIR]

Needs numpy, nibabel; MONAI/torch (all in the environment of
scripts/python-env.sh) and connected-components-3d, fill-voids when available (parts
needing a missing package are left out of the JSON, and the Rust tests skip them).
Generated with numpy 2.2.6, nibabel 5.3.2, MONAI 1.6.1, torch 2.13.0,
connected-components-3d 4.1.1, fill-voids 2.1.2.
"""

import json
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.orientations import axcodes2ornt, io_orientation, ornt_transform

here = Path(__file__).resolve().parent
root = here.parents[3]
testdata = Path(sys.argv[1]) if len(sys.argv) > 1 else root / "testdata"
out = {}


def rotation(rng, max_deg):
    """A random rotation of at most max_deg degrees about each axis."""
    r = np.eye(3)
    for ax in range(3):
        t = np.deg2rad(rng.uniform(-max_deg, max_deg))
        c, s = np.cos(t), np.sin(t)
        m = np.eye(3)
        i, j = [a for a in range(3) if a != ax]
        m[i, i], m[i, j], m[j, i], m[j, j] = c, -s, s, c
        r = m @ r
    return r


# --- Orientation decisions on random oblique, permuted, flipped RAS affines.
rng = np.random.default_rng(20240501)
codes = ["RAS", "LPS", "PLI", "SAR", "IRP", "ALS"]
cases = []
for n in range(40):
    perm = np.eye(3)[:, rng.permutation(3)] * rng.choice([-1, 1], size=3)
    lin = rotation(rng, 25 if n % 2 else 5) @ perm @ np.diag(rng.uniform(0.5, 3.0, 3))
    if n % 5 == 0:  # a little shear: io_orientation uses the closest orthogonal matrix
        lin = lin @ np.array([[1, 0.15, 0], [0, 1, -0.1], [0.05, 0, 1]])
    aff = np.eye(4)
    aff[:3, :3] = lin
    aff[:3, 3] = rng.uniform(-100, 100, 3)
    code = codes[n % len(codes)]
    t = ornt_transform(io_orientation(aff), axcodes2ornt(code))
    cases.append(
        {
            "ras_affine": aff[:3].tolist(),
            "axcodes": code,
            "have": "".join(nib.aff2axcodes(aff)),
            # nibabel: input axis a goes to output axis t[a, 0], flipped when t[a, 1] == -1.
            "transform": t.astype(int).tolist(),
        }
    )
out["orientation_cases"] = cases

# --- MNI152: orientation, percentiles, z-score (deepbet's normalisation).
t1 = nib.load(testdata / "mni152" / "MNI152_T1.nii.gz")
can = nib.as_closest_canonical(t1)
data = np.asanyarray(can.dataobj)  # int16
idx = [tuple(int(rng.integers(0, s)) for s in data.shape) for _ in range(12)]
idx += [(91, 109, 91), (60, 120, 100), (0, 0, 0), (181, 217, 181)]
orig = np.asanyarray(t1.dataobj)
lo, hi = np.percentile(data, [0.5, 99.5])
x = np.clip((data.astype(np.float32) - np.float32(lo)) / np.float32(hi - lo), 0, 1)
z = (x - x.mean(dtype=np.float64)) / x.std(ddof=1, dtype=np.float64)
deepbet = (z * 0.226 + 0.449).astype(np.float32)
out["mni"] = {
    "orig_axcodes": "".join(nib.aff2axcodes(t1.affine)),
    "canonical_ras_affine": can.affine[:3].tolist(),
    "shape": list(data.shape),
    "index": [list(i) for i in idx],
    "canonical_values": [int(data[i]) for i in idx],
    "orig_values": [int(orig[i]) for i in idx],
    "percentiles_0_5_99_5": [float(lo), float(hi)],
    "percentiles_more": {str(q): float(np.percentile(data, q)) for q in [0, 1, 25, 50, 75, 99, 100]},
    "deepbet_values": [float(deepbet[i]) for i in idx],
    "deepbet_mean": float(deepbet.mean(dtype=np.float64)),
    "deepbet_std": float(deepbet.std(dtype=np.float64)),
}

try:
    import torch
    from monai.transforms import NormalizeIntensityd, Orientationd, ScaleIntensityRangePercentilesd
    from monai.data import MetaTensor

    img = MetaTensor(torch.from_numpy(orig.astype(np.float32))[None], affine=torch.from_numpy(t1.affine))
    o = Orientationd(keys="x", axcodes="RAS")({"x": img})["x"]
    p = ScaleIntensityRangePercentilesd("x", lower=0.5, upper=99.5, b_min=0.0, b_max=1.0, clip=True)({"x": o})["x"]
    q = ScaleIntensityRangePercentilesd("x", lower=2, upper=90, b_min=-1.0, b_max=3.0, relative=True)({"x": o})["x"]
    nz = NormalizeIntensityd("x", nonzero=True)({"x": o.clone()})["x"]
    out["monai"] = {
        "orientation_affine": o.affine.numpy()[:3].tolist(),
        "orientation_values": [float(o[(0,) + i]) for i in idx],
        "percentiles_clip_values": [float(p[(0,) + i]) for i in idx],
        "percentiles_relative_values": [float(q[(0,) + i]) for i in idx],
        "normalize_nonzero_values": [float(nz[(0,) + i]) for i in idx],
    }
except ImportError as e:
    print("MONAI part left out:", e, file=sys.stderr)

try:
    import cc3d
    import fill_voids

    mask = (np.asanyarray(nib.load(testdata / "mni152" / "MNI152_mask.nii.gz").dataobj) > 0).astype(np.uint8)
    # Edits (as tests/monai_style.rs::edited_mask): a cavity inside the brain, a cube outside
    # it and a second cube touching the first only at a corner.
    i, j, k = np.indices(mask.shape)
    mask[(i - 91) ** 2 + (j - 120) ** 2 + (k - 80) ** 2 <= 100] = 0
    mask[5:10, 5:10, 5:10] = 1
    mask[10:13, 10:13, 10:13] = 1
    flat = np.arange(mask.size, dtype=np.float64).reshape(mask.shape, order="F")
    res = {"edited_count": int(mask.sum())}
    for c in [6, 18, 26]:
        big = cc3d.largest_k(mask, k=1, connectivity=c).astype(np.uint8)
        filled = fill_voids.fill(big)
        res[str(c)] = {
            "largest_count": int(big.sum()),
            "largest_index_sum": float(flat[big > 0].sum()),
            "filled_count": int(filled.sum()),
            "filled_index_sum": float(flat[filled > 0].sum()),
        }
        # Components other than the largest, in cc3d's labelling.
        res[str(c)]["components"] = int(cc3d.connected_components(mask, connectivity=c).max())
    out["mask"] = res
except ImportError as e:
    print("cc3d/fill_voids part left out:", e, file=sys.stderr)

(here / "monai_style.json").write_text(json.dumps(out, indent=1) + "\n")
print("wrote", here / "monai_style.json")
