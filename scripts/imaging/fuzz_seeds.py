#!/usr/bin/env python3
"""Builds the seed corpora for the cargo-fuzz targets in fuzz/ (nifti, mha, dicom).

Usage: fuzz_seeds.py --dump PATH/TO/dump --testdata DIR --out fuzz/corpus
Run with the venv from scripts/python-env.sh. Seeds: the small NIfTI files of
testdata/nibabel, a 8x8x6 crop of MNI152 written by nibabel, SimpleITK and our writer
(.nii, parallel-member .nii.gz, .mha), big-endian / NIfTI-2 / 4D variants, MHA from
SimpleITK (raw, zlib, RGB) and our writer, and the DICOM files of testdata/pydicom
under 64 kB.
"""
import argparse, glob, os, shutil, subprocess, tempfile
import numpy as np
import nibabel as nib
import SimpleITK as sitk


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dump", required=True)
    ap.add_argument("--testdata", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    dirs = {t: os.path.join(a.out, t) for t in ("nifti", "mha", "dicom")}
    for d in dirs.values():
        os.makedirs(d, exist_ok=True)
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    with tempfile.TemporaryDirectory() as t:
        p = lambda n: os.path.join(t, n)
        img = nib.load(os.path.join(a.testdata, "mni152", "MNI152_T1.nii.gz"))
        c = np.asarray(img.dataobj)[80:88, 100:108, 70:76]
        nib.save(nib.Nifti1Image(c, img.affine), p("crop.nii"))
        nib.save(nib.Nifti1Image(c.astype(">i2"), img.affine), p("crop_be.nii"))
        nib.save(nib.Nifti2Image(c.astype(np.float32), img.affine), p("crop_n2_f32.nii"))
        nib.save(nib.Nifti1Image(np.stack([c, c], -1).astype(np.uint8), img.affine), p("crop_4d_u8.nii"))
        s = sitk.ReadImage(p("crop.nii"))
        sitk.WriteImage(s, p("crop_sitk.nii.gz"), True)
        sitk.WriteImage(s, p("crop_sitk.mha"), False)
        sitk.WriteImage(sitk.Cast(s, sitk.sitkFloat32), p("crop_sitk_f32_zlib.mha"), True)
        sitk.WriteImage(sitk.Compose([sitk.Cast(s, sitk.sitkUInt8)] * 3), p("crop_sitk_rgb.mha"), False)
        for name in ("crop_ours.nii", "crop_ours.nii.gz", "crop_ours.mha"):
            subprocess.run([a.dump, "write", p("crop.nii"), p(name)], check=True)
        subprocess.run([a.dump, "write", p("crop_sitk_rgb.mha"), p("crop_ours_rgb.mha")], check=True)
        for f in glob.glob(p("*.nii*")):
            shutil.copy(f, dirs["nifti"])
        for f in glob.glob(p("*.mha")):
            shutil.copy(f, dirs["mha"])
    for f in sorted(glob.glob(os.path.join(a.testdata, "nibabel", "*.nii*"))):
        if os.path.getsize(f) <= 64 << 10:
            shutil.copy(f, dirs["nifti"])
    for f in sorted(glob.glob(os.path.join(a.testdata, "pydicom", "*.dcm"))):
        if os.path.getsize(f) <= 64 << 10:
            shutil.copy(f, dirs["dicom"])
    for t, d in dirs.items():
        print(t, len(os.listdir(d)), "seeds")


if __name__ == "__main__":
    main()
