"""MONAI 1.6.1 reference values (and timings) for aiaa-metrics.

Usage: monai_metrics.py compare MANIFEST OUT      per pair and class: dice, nsd, hd95
       monai_metrics.py bench MANIFEST OUT REPEATS best wall time of the three metrics

MANIFEST is JSON: {"pairs": [{"name", "prediction", "reference", "spacing": [sx, sy, sz],
"classes": [c, ...] or null (binary masks: non-zero = foreground), "tolerance": mm}]}.
Files are read with nibabel (array index order = aiaa-imaging's (i, j, k)); trailing
singleton dimensions (a 4D file with one volume) are dropped. The spacing passed to MONAI is
the manifest's (what aiaa-imaging read); nibabel's zooms are reported next to it so the test
can check that both readers agree. Metrics: compute_dice, compute_surface_dice and
compute_hausdorff_distance(percentile=95) on one-hot [1, C, X, Y, Z] tensors,
include_background=True (the channels are the foreground classes), on CPU. NaN becomes null.
"""

import json
import math
import sys
import time
import warnings

import nibabel as nib
import numpy as np
import torch
from monai.metrics import compute_dice, compute_hausdorff_distance, compute_surface_dice
from monai.metrics.utils import has_scipy_kdtree

warnings.filterwarnings("ignore")


def load(path):
    img = nib.load(path)
    arr = np.asanyarray(img.dataobj)
    while arr.ndim > 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    return arr, [float(z) for z in img.header.get_zooms()[:3]]


def one_hot(arr, classes):
    if classes is None:
        chans = [arr != 0]
    else:
        chans = [arr == c for c in classes]
    return torch.from_numpy(np.stack(chans)[None].astype(np.float32))


def metrics(pred, ref, spacing, ncls, tol):
    dice = compute_dice(pred, ref, include_background=True)
    nsd = compute_surface_dice(
        pred, ref, class_thresholds=[tol] * ncls, include_background=True, spacing=spacing
    )
    hd = compute_hausdorff_distance(pred, ref, include_background=True, percentile=95, spacing=spacing)
    return dice, nsd, hd


def num(x):
    x = float(x)
    return None if math.isnan(x) else x


def main():
    mode, manifest, out = sys.argv[1], sys.argv[2], sys.argv[3]
    if not has_scipy_kdtree:
        sys.exit("scipy is missing: MONAI would not use its CPU KD-tree path")
    pairs = json.load(open(manifest))["pairs"]
    results = []
    for p in pairs:
        parr, pz = load(p["prediction"])
        rarr, rz = load(p["reference"])
        spacing = [float(s) for s in p["spacing"]]
        classes = p["classes"]
        ncls = 1 if classes is None else len(classes)
        pred, ref = one_hot(parr, classes), one_hot(rarr, classes)
        entry = {"name": p["name"], "nibabel_zooms": [pz, rz]}
        if mode == "compare":
            dice, nsd, hd = metrics(pred, ref, spacing, ncls, p["tolerance"])
            entry["classes"] = [
                {"dice": num(dice[0, c]), "nsd": num(nsd[0, c]), "hd95": num(hd[0, c])} for c in range(ncls)
            ]
        else:
            best = math.inf
            for _ in range(int(sys.argv[4])):
                t0 = time.perf_counter()
                metrics(pred, ref, spacing, ncls, p["tolerance"])
                best = min(best, time.perf_counter() - t0)
            entry["seconds"] = best
        results.append(entry)
    json.dump({"pairs": results}, open(out, "w"))


if __name__ == "__main__":
    main()
