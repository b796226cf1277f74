#!/usr/bin/env python3
"""Independent-reader agreement check for aiaa-imaging.

Compares what our reader returns (via the `dump` example: voxels + geometry) with
SimpleITK, checks that files we write are read back identically by SimpleITK and nibabel,
and that our resampling agrees with SimpleITK's ResampleImageFilter.

Usage: compare_sitk.py --dump PATH/TO/dump --testdata DIR
Run with the venv from scripts/python-env.sh (SimpleITK, nibabel, numpy pinned).
Exit status 0 when everything agrees; every failure is printed.
"""
import argparse, json, os, subprocess, sys, tempfile
import numpy as np
import SimpleITK as sitk
import nibabel as nib

TOL_GEOM = 1e-5
failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL", msg)


def ours(dump, cmd, *args):
    with tempfile.TemporaryDirectory() as d:
        prefix = os.path.join(d, "v")
        subprocess.run([dump, cmd, *args, prefix], check=True)
        meta = json.load(open(prefix + ".json"))
        arr = np.fromfile(prefix + ".raw", dtype=np.dtype(meta["dtype"]).newbyteorder("<"))
    return meta, arr


def sitk_flat(img):
    """Voxels in our layout: i fastest, channels slowest."""
    a = sitk.GetArrayFromImage(img)
    if img.GetNumberOfComponentsPerPixel() > 1:  # [k, j, i, c] -> [c, k, j, i]
        a = np.moveaxis(a, -1, 0)
    return a.ravel()


def sitk_geom(img):
    n = img.GetDimension()
    sp, org = list(img.GetSpacing())[:3], list(img.GetOrigin())[:3]
    d = np.array(img.GetDirection()).reshape(n, n)[:3, :3]
    while len(sp) < 3:
        sp.append(1.0)
        org.append(0.0)
    if n == 2:
        d = np.eye(3)
        d[:2, :2] = np.array(img.GetDirection()).reshape(2, 2)
    return np.array(sp), np.array(org), d


def compare_geom(name, meta, img):
    sp, org, d = sitk_geom(img)
    if meta["dims"][2] == 1:
        # One plane: the third spacing is not defined by the data (GDCM takes SliceThickness
        # for some SOP classes, we take 1 mm); compare in-plane only.
        sp[2] = meta["spacing"][2]
    for key, a, b in (("spacing", meta["spacing"], sp), ("origin", meta["origin"], org), ("direction", meta["direction"], d)):
        if not np.allclose(np.array(a), b, atol=TOL_GEOM, rtol=0):
            fail(f"{name}: {key} ours {np.array(a).tolist()} sitk {b.tolist()}")


def check_read(dump, path, sitk_img=None, cmd="read", arg=None):
    name = os.path.relpath(path)
    try:
        img = sitk_img if sitk_img is not None else sitk.ReadImage(path)
    except RuntimeError as e:
        print("skip (SimpleITK cannot read)", name, str(e).splitlines()[0][:80])
        return
    meta, arr = ours(dump, cmd, arg or path)
    ref = sitk_flat(img).astype(np.float64)
    if arr.size != ref.size:
        fail(f"{name}: {arr.size} voxels vs sitk {ref.size}")
        return
    if not np.array_equal(arr.astype(np.float64), ref):
        fail(f"{name}: voxels differ (max |d| = {np.abs(arr - ref).max()})")
    compare_geom(name, meta, img)
    print("ok read", name, meta["dims"], meta["dtype"])


def check_write(dump, path, ext):
    name = os.path.relpath(path)
    ref = sitk.ReadImage(path)
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "w" + ext)
        subprocess.run([dump, "write", path, out], check=True)
        back = sitk.ReadImage(out)
        if not np.array_equal(sitk_flat(back).astype(np.float64), sitk_flat(ref).astype(np.float64)):
            fail(f"{name} -> {ext}: SimpleITK reads different voxels")
        sp, org, dr = sitk_geom(back)
        sp0, org0, dr0 = sitk_geom(ref)
        if not (np.allclose(sp, sp0, atol=TOL_GEOM) and np.allclose(org, org0, atol=1e-4) and np.allclose(dr, dr0, atol=1e-5)):
            fail(f"{name} -> {ext}: SimpleITK geometry {sp, org, dr} vs {sp0, org0, dr0}")
        if ext.startswith(".nii"):
            n = nib.load(out)
            a = np.asarray(n.dataobj)
            flat = a.ravel(order="F")  # NIfTI order: i fastest, extra dims (channels) slowest
            if not np.array_equal(flat.astype(np.float64), sitk_flat(ref).astype(np.float64)):
                fail(f"{name} -> {ext}: nibabel reads different voxels")
            # nibabel affine (RAS) vs SimpleITK geometry (LPS)
            aff = n.affine
            lps = np.diag([-1, -1, 1]) @ aff[:3, :3]
            if not np.allclose(lps, dr0 @ np.diag(sp0), atol=1e-4) or not np.allclose(np.diag([-1, -1, 1]) @ aff[:3, 3], org0, atol=1e-4):
                fail(f"{name} -> {ext}: nibabel affine {aff.tolist()} disagrees")
    print("ok write", name, "->", ext)


def check_resample(dump, path, spacing, label):
    name = os.path.relpath(path)
    img = sitk.ReadImage(path)
    if not label:
        img = sitk.Cast(img, sitk.sitkFloat32)
    old_sp, old_size = np.array(img.GetSpacing()), np.array(img.GetSize())
    size = [max(1, int(np.floor(n * s / t + 0.5))) for n, s, t in zip(old_size, old_sp, spacing)]  # round half up
    f = sitk.ResampleImageFilter()
    f.SetOutputSpacing(spacing)
    f.SetSize(size)
    f.SetOutputOrigin(img.GetOrigin())
    f.SetOutputDirection(img.GetDirection())
    f.SetDefaultPixelValue(0)
    f.SetInterpolator(sitk.sitkNearestNeighbor if label else sitk.sitkLinear)
    ref_img = f.Execute(img)
    meta, arr = ours(dump, "resample", path, ",".join(map(str, spacing)), "nearest" if label else "linear-f32")
    ref = sitk_flat(ref_img).astype(np.float64)
    if list(meta["dims"]) != size:
        fail(f"{name} resample: size {meta['dims']} vs {size}")
        return
    compare_geom(name + " resampled", meta, ref_img)
    ours_v = arr.astype(np.float64).reshape(size[::-1])
    ref_v = ref.reshape(size[::-1])
    if label:
        same = np.mean(ours_v == ref_v)
        if same < 0.999:
            fail(f"{name} nearest resample: only {same:.5f} identical")
        print(f"ok resample nearest {name} {spacing}: {same:.6f} identical")
    else:
        inner = (slice(2, -2),) * 3
        rng = float(ref_v.max() - ref_v.min()) or 1.0
        err = np.abs(ours_v[inner] - ref_v[inner]).max() / rng
        if err > 1e-3:
            fail(f"{name} linear resample: max interior error {err:.2e} of range")
        print(f"ok resample linear {name} {spacing}: max interior error {err:.2e} of range")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dump", required=True)
    ap.add_argument("--testdata", required=True)
    a = ap.parse_args()
    t = a.testdata
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(2)
    sitk.ProcessObject.GlobalWarningDisplayOff()
    nifti = ["mni152/MNI152_T1.nii.gz", "mni152/MNI152_mask.nii.gz", "robex/atlas.nii.gz", "robex/atlas_mask.nii.gz",
             "nibabel/anatomical.nii", "nibabel/functional.nii", "nibabel/standard.nii.gz", "nibabel/example4d.nii.gz",
             "nibabel/reoriented_anat_moved.nii", "nibabel/example_nifti2.nii.gz"]
    dicom = ["pydicom/CT_small.dcm", "pydicom/MR_small.dcm", "pydicom/MR_small_RLE.dcm", "pydicom/MR_small_jp2klossless.dcm",
             "pydicom/JPEG2000.dcm", "pydicom/emri_small.dcm", "pydicom/emri_small_RLE.dcm", "pydicom/SC_rgb.dcm",
             "pydicom/MR_small_bigendian.dcm", "pydicom/MR_small_implicit.dcm"]
    for f in nifti + dicom:
        check_read(a.dump, os.path.join(t, f))
    # DICOM series: one that SimpleITK reads cleanly must agree; ones it only reads with a
    # "non uniform sampling" warning (or mixed orientations) we must refuse with a clear error.
    p = os.path.join(t, "pydicom/dicomdirtests/98892001/CT5N")
    r = sitk.ImageSeriesReader()
    r.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(p))
    check_read(a.dump, p, sitk_img=r.Execute(), cmd="dicom", arg=p)
    for d, why in (("77654033/CT2", "uneven slice spacing"), ("98892003/MR700", "ImageOrientationPatient differs"),
                   ("98892003/MR2", "3 series found")):
        with tempfile.TemporaryDirectory() as tmp:
            res = subprocess.run([a.dump, "dicom", os.path.join(t, "pydicom/dicomdirtests", d), os.path.join(tmp, "v")],
                                 capture_output=True, text=True)
        if res.returncode == 0 or why not in res.stderr:
            fail(f"{d}: expected a refusal mentioning {why!r}, got rc={res.returncode} {res.stderr.strip()[:200]}")
        else:
            print("ok refused", d, "-", why)
    # NIfTI-2 (SimpleITK cannot read it): compare with nibabel
    p = os.path.join(t, "nibabel/example_nifti2.nii.gz")
    meta, arr = ours(a.dump, "read", p)
    n = nib.load(p)
    ref = np.asarray(n.dataobj).ravel(order="F")
    if not np.array_equal(arr.astype(np.float64), ref.astype(np.float64)):
        fail("example_nifti2: voxels differ from nibabel")
    aff = np.diag([-1, -1, 1]) @ n.affine[:3]
    if not np.allclose(aff[:, 3], meta["origin"], atol=1e-4) or not np.allclose(aff[:, :3], np.array(meta["direction"]) @ np.diag(meta["spacing"]), atol=1e-4):
        fail(f"example_nifti2: geometry differs from nibabel's affine {n.affine.tolist()}")
    else:
        print("ok read (vs nibabel)", os.path.relpath(p))
    # Our writers, read back by SimpleITK (and nibabel for NIfTI)
    with tempfile.TemporaryDirectory() as d:
        for f in ["mni152/MNI152_T1.nii.gz", "nibabel/reoriented_anat_moved.nii", "nibabel/example4d.nii.gz"]:
            for ext in [".nii.gz", ".nii", ".mha", ".mhd"]:
                check_write(a.dump, os.path.join(t, f), ext)
        # MHA written by SimpleITK (compressed and not), read by us
        src = sitk.ReadImage(os.path.join(t, "nibabel/reoriented_anat_moved.nii"))
        for name, comp in (("c.mha", True), ("u.mha", False), ("u.mhd", False), ("c.mhd", True)):
            p = os.path.join(d, name)
            sitk.WriteImage(src, p, comp)
            check_read(a.dump, p)
    # Resampling
    check_resample(a.dump, os.path.join(t, "mni152/MNI152_T1.nii.gz"), [1.5, 1.3, 2.0], label=False)
    check_resample(a.dump, os.path.join(t, "robex/atlas.nii.gz"), [1.0, 1.0, 1.0], label=False)
    check_resample(a.dump, os.path.join(t, "mni152/MNI152_mask.nii.gz"), [1.5, 1.3, 2.0], label=True)
    check_resample(a.dump, os.path.join(t, "robex/atlas_mask.nii.gz"), [0.7, 0.7, 2.5], label=True)
    print(f"{len(failures)} failure(s)")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
