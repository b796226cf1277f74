#!/usr/bin/env python3
"""The chapter 6 training pre_transforms on MNI152: aiaa-transforms vs the equivalent MONAI
dictionary pipeline, side by side in one run, one thread each, per sample INCLUDING loading
(like a data loader). Prints both times and the ratio, plus our samples/s with 1 and 2 worker
threads.

    python3 scripts/transforms/bench_vs_monai.py [--samples 8] [--rounds 2]
(with the venv of scripts/python-env.sh; scripts/transforms/bench.sh does both.)

Rounds alternate ours / MONAI so a change in machine load hits both; the ratio reported is
the median of the per-round ratios.

Seed transform -> MONAI (numpy axis a of our 3D array = MONAI spatial axis a):
  LoadNumpyFromFilename  -> LoadImaged (nibabel) + EnsureChannelFirstd (moved to the front:
                            MONAI's spatial transforms need the channel axis; VolumeTo4dArray
                            is then a no-op in both)
  NPRandomFlip3D         -> RandFlipd(prob=0.5) per spatial axis 0, 1, 2 (ours flips each axis
                            independently with p=0.5)
  NPRandomZoom3D         -> RandZoomd(prob=1, min_zoom=(0.8,)*3, max_zoom=(1.2,)*3,
                            keep_size=False, mode=(trilinear, nearest)); MONAI draws one
                            factor per axis like ours
  ScaleIntensityRange    -> ScaleIntensityRanged(a_min=-1024, a_max=1024, b_min=-1, b_max=1,
                            clip=True)
  ScaleIntensityOscillation(magnitude=0.2) -> RandScaleIntensityd(factors=0.2, prob=1):
                            both multiply by 1 + U(-0.2, 0.2)
  CropForegroundObject(size=128^3, pad=20, foreground_only) -> label := (label > 0) as uint8,
                            CropForegroundd(source_key=label, margin=20, allow_smaller=True)
                            (box clamped to the volume, as ours), Resized(128^3,
                            mode=(trilinear, nearest))
  NPRandomRot90_XY       -> RandRotate90d(prob=0.5, max_k=3, spatial_axes=(0, 1))
  AddExtremePointsChannel(sigma=3, pert=3) -> AddExtremePointsChanneld(label_key=label,
                            sigma=3, pert=3; default rescale to [-1, 1])
Approximations: MONAI's nearest (torch "nearest") rounds differently from ours (voxel centres,
round half up); MONAI's extreme points break ties by its own rule and blur a point image with
a Gaussian filter where ours evaluates the max of six Gaussians; one RandFlipd per axis.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

# One thread for MONAI/torch/numpy: set before the imports.
for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[var] = "1"

ROOT = Path(__file__).resolve().parents[2]


def monai_pipeline(seed: int):
    import monai.transforms as T
    import torch

    keys = ["image", "label"]
    chain = T.Compose(
        [
            T.LoadImaged(keys=keys, reader="NibabelReader"),
            T.EnsureChannelFirstd(keys=keys, channel_dim="no_channel"),
            T.RandFlipd(keys=keys, prob=0.5, spatial_axis=0),
            T.RandFlipd(keys=keys, prob=0.5, spatial_axis=1),
            T.RandFlipd(keys=keys, prob=0.5, spatial_axis=2),
            T.RandZoomd(
                keys=keys,
                prob=1.0,
                min_zoom=(0.8, 0.8, 0.8),
                max_zoom=(1.2, 1.2, 1.2),
                keep_size=False,
                mode=("trilinear", "nearest"),
            ),
            T.ScaleIntensityRanged(keys="image", a_min=-1024, a_max=1024, b_min=-1.0, b_max=1.0, clip=True),
            T.RandScaleIntensityd(keys="image", factors=0.2, prob=1.0),
            T.Lambdad(keys="label", func=lambda x: (x > 0).to(torch.uint8)),
            T.CropForegroundd(keys=keys, source_key="label", margin=20, allow_smaller=True),
            T.Resized(keys=keys, spatial_size=(128, 128, 128), mode=("trilinear", "nearest")),
            T.RandRotate90d(keys=keys, prob=0.5, max_k=3, spatial_axes=(0, 1)),
            T.AddExtremePointsChanneld(keys="image", label_key="label", sigma=3, pert=3),
        ]
    )
    chain.set_random_state(seed=seed)
    return chain


def time_monai(image: str, label: str, samples: int, warmup: int):
    chain = monai_pipeline(0)
    for i in range(warmup):
        chain.set_random_state(seed=1_000_000 + i)
        chain({"image": image, "label": label})
    t0 = time.perf_counter()
    for i in range(samples):
        chain.set_random_state(seed=i)
        out = chain({"image": image, "label": label})
        assert tuple(out["image"].shape) == (2, 128, 128, 128), out["image"].shape
    return (time.perf_counter() - t0) * 1e3 / samples


def time_ours(args, workers: str):
    cmd = args.ours_cmd.split() + [
        "--json",
        "--samples", str(args.samples),
        "--warmup", str(args.warmup),
        "--workers", workers,
        "--image", args.image,
        "--label", args.label,
    ]
    res = subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.PIPE, text=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def build_ours():
    """Builds the benchmark once (not timed) and returns the path of its binary."""
    res = subprocess.run(
        ["cargo", "bench", "-p", "aiaa-transforms", "--bench", "train_pipeline", "--no-run",
         "--message-format=json"],
        cwd=ROOT, check=True, stdout=subprocess.PIPE, text=True,
    )
    for line in res.stdout.splitlines():
        msg = json.loads(line)
        if msg.get("reason") == "compiler-artifact" and msg["target"]["name"] == "train_pipeline" \
                and msg.get("executable"):
            return msg["executable"]
    sys.exit("cargo did not report the train_pipeline benchmark binary")


def loadavg():
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=2, help="alternating ours/MONAI rounds")
    ap.add_argument("--image", default=str(ROOT / "testdata/mni152/MNI152_T1.nii.gz"))
    ap.add_argument("--label", default=str(ROOT / "testdata/mni152/MNI152_mask.nii.gz"))
    ap.add_argument(
        "--ours-cmd",
        default=None,
        help="command running crates/transforms/benches/train_pipeline.rs "
        "(default: build it with cargo bench --no-run and run the binary)",
    )
    args = ap.parse_args()
    for f in (args.image, args.label):
        if not Path(f).exists():
            sys.exit(f"{f} missing: run scripts/fetch-test-data.sh")
    import monai
    import torch

    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)

    print(f"MONAI {monai.__version__}, torch {torch.__version__}; {args.samples} samples/round, "
          f"{args.rounds} round(s), per sample including load, 1 thread each")
    if args.ours_cmd is None:
        args.ours_cmd = build_ours()
    ratios, ours_ms, monai_ms, per = [], [], [], None
    for r in range(args.rounds):
        la = loadavg()
        o = time_ours(args, "1")
        m = time_monai(args.image, args.label, args.samples, args.warmup)
        ours_ms.append(o["ms_per_sample_1thread"])
        monai_ms.append(m)
        ratios.append(m / o["ms_per_sample_1thread"])
        per = o["per_transform_ms"]
        print(f"round {r + 1}: ours {ours_ms[-1]:.1f} ms/sample, MONAI {m:.1f} ms/sample, "
              f"MONAI/ours = {ratios[-1]:.2f}x  (load average {la:.2f})")
    o = time_ours(args, "1,2")
    print(f"ours per transform (1 thread, ms/sample, last round):")
    for s in per:
        print(f"  {s['ms']:8.1f}  {s['name']}")
    print(f"ours samples/s: " + ", ".join(
        f"{t['workers']} worker(s) {t['samples_per_s']:.2f}" for t in o["samples_per_s"]
    ) + f"  (load average {loadavg():.2f}, {os.cpu_count()} CPUs)")
    print(f"RESULT median ratio MONAI/ours = {statistics.median(ratios):.2f}x "
          f"(ours {statistics.median(ours_ms):.1f} ms, MONAI {statistics.median(monai_ms):.1f} ms "
          f"per sample, 1 thread, load included; target >= 2x)")


if __name__ == "__main__":
    main()
