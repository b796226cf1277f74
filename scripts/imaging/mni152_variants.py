"""Validation heads for the brain recipes, made from the MNI152 training head alone.

The only other real head with a brain mask in the allowed packages is the ROBEX atlas, and
that is the held-out test head: no checkpoint choice, early stopping or tuning may see it.
So the recipes validate on copies of MNI152 that differ from it the way another scan does:
another voxel grid (spacing, anisotropy), pose (rotation about the head's centre), head size,
intensity response (gamma), coil shading (a smooth multiplicative bias field) and noise.
They show whether a model generalises beyond the training augmentation's reach on one
subject; they say nothing about other anatomy, which only the final ROBEX evaluation does.

Deterministic: fixed parameters and a seeded generator per variant, so every machine makes
the same files. numpy and nibabel only (the project's base Python environment).

The same variants are made of the second training head (ICBM152 2009c, with its own, tighter
mask convention), so that validation covers both conventions the models learn.

usage: mni152_variants.py HEAD.nii.gz HEAD_mask.nii.gz OUT_DIR [NAME]
writes OUT_DIR/NAME_v{1,2,3}.nii.gz and OUT_DIR/NAME_v{1,2,3}_mask.nii.gz (NAME: mni152)
"""
import os
import sys

import nibabel as nib
import numpy as np

# spacing (mm), rotation (degrees about the world x, y, z axes), isotropic scale of the head,
# gamma, bias field strength (max relative change), noise (fraction of the 99th percentile)
VARIANTS = [
    {"spacing": (1.5, 1.5, 1.5), "rotation": (8.0, 0.0, 0.0), "scale": 1.00,
     "gamma": 0.80, "bias": 0.15, "noise": 0.02, "seed": 1},
    {"spacing": (1.2, 1.2, 1.2), "rotation": (0.0, 4.0, -6.0), "scale": 1.05,
     "gamma": 1.25, "bias": 0.20, "noise": 0.03, "seed": 2},
    {"spacing": (1.0, 1.0, 1.5), "rotation": (-5.0, 3.0, 0.0), "scale": 0.93,
     "gamma": 1.00, "bias": 0.10, "noise": 0.04, "seed": 3},
]


def rotation(degrees):
    ax, ay, az = np.radians(degrees)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def trilinear(data, coords):
    """data sampled at voxel coordinates coords (3 x N), 0 outside."""
    shape = np.array(data.shape)
    base = np.floor(coords).astype(np.int64)
    frac = coords - base
    out = np.zeros(coords.shape[1])
    for corner in range(8):
        offset = np.array([(corner >> a) & 1 for a in range(3)])[:, None]
        idx = base + offset
        weight = np.prod(np.where(offset == 1, frac, 1.0 - frac), axis=0)
        inside = np.all((idx >= 0) & (idx < shape[:, None]), axis=0)
        out[inside] += weight[inside] * data[idx[0, inside], idx[1, inside], idx[2, inside]]
    return out


def resample(data, src_affine, dst_affine, dst_shape, world_transform):
    """data (on src_affine's grid) moved by world_transform (4x4, about the world) onto the
    dst grid: dst voxel v takes the source at inv(src) @ inv(T) @ dst @ v."""
    m = np.linalg.inv(src_affine) @ np.linalg.inv(world_transform) @ dst_affine
    out = np.empty(dst_shape, dtype=np.float64)
    ii, jj = np.meshgrid(np.arange(dst_shape[0]), np.arange(dst_shape[1]), indexing="ij")
    for k in range(dst_shape[2]):  # a slice at a time keeps memory small
        v = np.stack([ii.ravel(), jj.ravel(), np.full(ii.size, k), np.ones(ii.size)])
        out[:, :, k] = trilinear(data, (m @ v)[:3]).reshape(dst_shape[:2])
    return out


def bias_field(shape, strength, rng):
    """A smooth multiplicative field: exp of a random second-order polynomial of the voxel
    position (centred, scaled to [-1, 1]), scaled so that it changes intensities by at most
    `strength`."""
    axes = [np.linspace(-1.0, 1.0, n) for n in shape]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    terms = [x, y, z, x * y, x * z, y * z, x * x, y * y, z * z]
    coeffs = rng.uniform(-1.0, 1.0, len(terms))
    poly = sum(c * t for c, t in zip(coeffs, terms))
    poly /= np.abs(poly).max()
    return np.exp(poly * np.log1p(strength))


def variant(image, mask, v):
    rng = np.random.default_rng(v["seed"])
    src_affine = image.affine
    src_shape = np.array(image.shape[:3])
    src_spacing = np.sqrt((src_affine[:3, :3] ** 2).sum(axis=0))
    # The new grid: same field of view and orientation, the variant's spacing.
    spacing = np.array(v["spacing"])
    dst_shape = tuple(int(round(n)) for n in src_shape * src_spacing / spacing)
    dst_affine = src_affine.copy()
    dst_affine[:3, :3] = src_affine[:3, :3] / src_spacing * spacing
    centre_src = src_affine @ np.append((src_shape - 1) / 2.0, 1.0)
    centre_dst = dst_affine @ np.append((np.array(dst_shape) - 1) / 2.0, 1.0)
    dst_affine[:3, 3] += centre_src[:3] - centre_dst[:3]
    # The head rotated and scaled about the field of view's centre.
    t = np.eye(4)
    t[:3, :3] = rotation(v["rotation"]) * v["scale"]
    t[:3, 3] = centre_src[:3] - t[:3, :3] @ centre_src[:3]
    data = np.asarray(image.dataobj, dtype=np.float64)
    moved = resample(data, src_affine, dst_affine, dst_shape, t)
    moved_mask = resample(np.asarray(mask.dataobj, dtype=np.float64) > 0, src_affine, dst_affine, dst_shape, t) > 0.5
    # Intensity response, shading and noise.
    top = np.percentile(moved[moved > 0], 99)
    moved = np.clip(moved / top, 0.0, None) ** v["gamma"] * top
    moved *= bias_field(dst_shape, v["bias"], rng)
    moved += rng.normal(0.0, v["noise"] * top, dst_shape)
    moved = np.clip(moved, 0.0, None)
    return (nib.Nifti1Image(moved.astype(np.float32), dst_affine),
            nib.Nifti1Image(moved_mask.astype(np.uint8), dst_affine))


def main():
    image_path, mask_path, out_dir = sys.argv[1:4]
    prefix = sys.argv[4] if len(sys.argv) > 4 else "mni152"
    image, mask = nib.load(image_path), nib.load(mask_path)
    os.makedirs(out_dir, exist_ok=True)
    for n, v in enumerate(VARIANTS, start=1):
        img, msk = variant(image, mask, v)
        for nifti, name in ((img, f"{prefix}_v{n}.nii.gz"), (msk, f"{prefix}_v{n}_mask.nii.gz")):
            tmp = os.path.join(out_dir, name + ".tmp.nii.gz")
            nib.save(nifti, tmp)
            os.replace(tmp, os.path.join(out_dir, name))
        print(f"{name}: {img.shape}, spacing {v['spacing']}, brain {int(msk.get_fdata().sum())} voxels")


if __name__ == "__main__":
    main()
