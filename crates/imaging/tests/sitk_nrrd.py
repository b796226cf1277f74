#!/usr/bin/env python3
"""SimpleITK side of tests/nrrd.rs: runs a list of jobs from a JSON file, in order.

  {"op": "convert", "src": PATH, "dst": PATH, "compress": BOOL, "cast": "int8" | "uint32" | null,
   "vector": N | null}
      read src, optionally cast or compose N copies into a vector image, write dst
  {"op": "dump", "path": PATH, "out": PREFIX}
      read path; write PREFIX.txt (lines `size`, `components`, `spacing`, `origin`, `direction`
      (row-major 3x3), each followed by its numbers, and `pixel` followed by SimpleITK's name
      of the pixel type) and PREFIX.raw (float64 little endian voxels in aiaa-imaging's
      layout: i fastest, channels slowest)

Usage: sitk_nrrd.py JOBS.json (run with the venv from scripts/python-env.sh).
"""
import json
import sys

import numpy as np
import SimpleITK as sitk


def dump(path, out):
    img = sitk.ReadImage(path)
    a = sitk.GetArrayFromImage(img)
    if img.GetNumberOfComponentsPerPixel() > 1:  # [k, j, i, c] -> [c, k, j, i]
        a = np.moveaxis(a, -1, 0)
    a.astype("<f8").ravel().tofile(out + ".raw")
    with open(out + ".txt", "w") as f:
        f.write("size %s\n" % " ".join(map(str, img.GetSize())))
        f.write("components %d\n" % img.GetNumberOfComponentsPerPixel())
        f.write("pixel %s\n" % img.GetPixelIDTypeAsString())
        for key, v in (("spacing", img.GetSpacing()), ("origin", img.GetOrigin()), ("direction", img.GetDirection())):
            f.write("%s %s\n" % (key, " ".join(repr(float(x)) for x in v)))


def convert(job):
    img = sitk.ReadImage(job["src"])
    cast = job.get("cast")
    if cast:
        img = sitk.Cast(img, {"int8": sitk.sitkInt8, "uint32": sitk.sitkUInt32, "float32": sitk.sitkFloat32}[cast])
    n = job.get("vector")
    if n:
        img = sitk.Compose([img * (c + 1) for c in range(n)])
    sitk.WriteImage(img, job["dst"], job["compress"])


def main():
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(2)
    with open(sys.argv[1]) as f:
        jobs = json.load(f)
    for job in jobs:
        if job["op"] == "convert":
            convert(job)
        elif job["op"] == "dump":
            dump(job["path"], job["out"])
        else:
            raise SystemExit(f"unknown op {job['op']!r}")


if __name__ == "__main__":
    main()
