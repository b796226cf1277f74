#!/usr/bin/env python3
"""Time per training iteration of recipes/annotation_mri_brain in PyTorch + MONAI: the
reference that scripts/training/bench_vs_monai.sh puts next to `aiaa train segmentation`.

    python3 monai_step_bench.py torch --config CONFIG --image IMG --label LAB \
        [--steps 30] [--warmup 3] [--threads 2] [--memory-format contiguous|channels_last]
    python3 monai_step_bench.py ours PROGRESS.jsonl --warmup 3 --steps 30   (parses our run)
    python3 monai_step_bench.py report RESULTS.jsonl                       (the table)

(With the venv of scripts/python-env.sh; bench_vs_monai.sh runs all three.) Each `torch` and
`ours` run prints one JSON line: seconds per step and the share of it spent waiting for data
over the timed window, the parameter count, the thread count, the load average.

What is timed, on both sides, per step: from asking the loader for the next batch to having
the loss as a Python float / f64 (wait for the batch + forward + loss + zero_grad + backward +
optimizer step + learning-rate schedule). Data wait = the part blocked in the loader.
`--warmup` steps are run and not timed, then `--steps` are timed. Our trainer is one
`aiaa train` process and reports every step (`--progress json --log_every 1`); its last
steps, when the loader has nothing left to prepare (and so stops competing for the CPU), are
run but not timed (the shell script adds a tail of untimed steps). The Python loader is one
long epoch of (warmup + steps + tail) * batch_size samples of the single training item (the
best case for a DataLoader: no restart of the prefetch at epoch ends; our loader prefetches
across epochs).

Network: the SAME UNet3D as crates/nets/src/networks/{unet.rs,blocks.rs} with the recipe's
net_config (num_filters 8, levels 3, instance norm, max pooling): per level two
[Conv3d 3x3x3 no bias -> InstanceNorm3d(affine, eps 1e-5) -> ReLU], 2x2x2 max pooling down,
ConvTranspose3d 2x2x2 stride 2 (bias) up, concatenation [skip, up] on channels, a 1x1x1
Conv3d head (bias); logits out. The parameter counts of both are printed; the shell script
fails when they differ.
Loss: losses.dice_ce_loss (defaults: softmax, skip background, smooth 1e-5 in the denominator
only, lambda 1 + 1) = monai.losses.DiceCELoss(include_background=False, to_onehot_y=True,
softmax=True, smooth_nr=0, smooth_dr=1e-5). Optimizer: Adam(lr 3e-3, eps 1e-8, betas
(0.9, 0.999)) = torch.optim.Adam's defaults but lr (PyTorch's default for-loop implementation
on CPU tensors; ours is per-variable too). lr_policy.CosineAnnealing(total_steps 800, min_lr
1e-5) = CosineAnnealingLR(T_max=800, eta_min=1e-5), stepped every iteration.

Layout: `--memory-format contiguous` (default) is what a PyTorch/MONAI user writes (NCDHW
model and batches); `--memory-format channels_last` converts the model and every input batch
to torch.channels_last_3d, which is what our CPU trainer does (trainer.rs `channels_last`).

Data (our transform -> MONAI; MONAI spatial axis a = our voxel axis i, j, k):
  LoadNifty (fields image, label), with our trainer's in-memory file cache (cache_data
      automatic: each file decoded once before training and handed to every sample)
      -> LoadImaged(NibabelReader) + EnsureChannelFirstd run ONCE in the main process; the
      Dataset's items hold the decoded MetaTensors (image float32, label float32: MONAI's
      defaults; ours keeps int16 / u8) and the per-sample chain starts below.
  CropForegroundObject(size 48^3, pad 20, foreground_only)
      -> CropForegroundd(source_key=label, margin=20, allow_smaller=True) (box of label > 0
      plus 20 voxels, clamped to the volume, as ours) + Lambdad(label -> (label > 0) as
      uint8, on the crop: ours masks only the cropped region) + Resized(48^3,
      mode=(trilinear, nearest)).
  NPRandomZoom3D(0.85..1.15 per axis, keep_size)
      -> RandZoomd(prob=1, min_zoom=0.85, max_zoom=1.15 (one factor per axis),
      mode=(trilinear, nearest), padding_mode=constant (ours pads with 0), keep_size=True).
  FlipAxisRandom(axis [0]) -> RandFlipd(prob=0.5, spatial_axis=0).
  AdjustContrast(gamma 0.7..1.5) -> RandAdjustContrastd(prob=1, gamma=(0.7, 1.5)) (ours is
      MONAI's formula).
  NormalizeIntensity(image) -> NormalizeIntensityd(image) (z-score of the crop; MONAI divides
      by the population std, ours by the n-1 one: same cost).
  ScaleIntensityOscillation(0.1) -> RandScaleIntensityd(factors=0.1, prob=1) (x * (1 + U(-0.1,
      0.1))).
  AddGaussianNoise(std 0.05) -> RandGaussianNoised(prob=1, std=0.05, sample_std=False) (ours
      uses the std itself; MONAI's default would draw it from U(0, std)).
  AddExtremePointsChannel(sigma 3, pert 2) -> ExtremePointsChanneld below (`--extreme-points
      ours`, the default): the same computation as crates/transforms/src/extreme.rs (six
      extreme points of label > 0, ties broken by the middle voxel in our memory order, each
      coordinate moved by U(-pert, pert) and clamped, heat map = max over the points of
      separable Gaussians, rescaled to [-1, 1], appended as channel 1).
      `--extreme-points monai` uses MONAI's AddExtremePointsChanneld(sigma=3, pert=2) instead
      (same kind of output, different computation: Gaussian-filtered point image).
  our tensors ([C, X, Y, Z] float32 image and label) -> EnsureTyped(float32,
      track_meta=False): plain tensors into the network, as ours (MetaTensors would add
      __torch_function__ overhead to every op).
Loader: monai.data.DataLoader(batch_size from the config, num_workers from the config (2),
persistent_workers=True, shuffle=False; PyTorch gives each worker process 1 intra-op thread),
ours: num_workers threads, at most 2 * batch_size + num_workers samples ahead.
"""

import argparse
import json
import math
import os
import statistics
import sys
import time


def loadavg():
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


# ---------------------------------------------------------------------------------------------
# The network (torch.nn), the same as crates/nets/src/networks/unet.rs


def build_unet(num_channels, num_classes, num_filters, levels, norm):
    import torch
    from torch import nn

    def norm_layer(c):
        if norm == "instance":
            return nn.InstanceNorm3d(c, eps=1e-5, affine=True, track_running_stats=False)
        return nn.BatchNorm3d(c, eps=1e-5, momentum=0.1)

    def double_conv(c_in, c_out):
        return nn.Sequential(
            nn.Conv3d(c_in, c_out, 3, padding=1, bias=False), norm_layer(c_out), nn.ReLU(),
            nn.Conv3d(c_out, c_out, 3, padding=1, bias=False), norm_layer(c_out), nn.ReLU(),
        )

    class UNet3D(nn.Module):
        def __init__(self):
            super().__init__()
            w = [num_filters << level for level in range(levels + 1)]
            self.enc = nn.ModuleList(
                [double_conv(num_channels, w[0])] + [double_conv(w[l - 1], w[l]) for l in range(1, levels + 1)]
            )
            self.up = nn.ModuleList([nn.ConvTranspose3d(w[l + 1], w[l], 2, stride=2) for l in range(levels)])
            self.dec = nn.ModuleList([double_conv(2 * w[l], w[l]) for l in range(levels)])
            self.head = nn.Conv3d(w[0], num_classes, 1)

        def forward(self, x):
            skips = []
            h = self.enc[0](x)
            for enc in self.enc[1:]:
                skips.append(h)
                h = enc(torch.nn.functional.max_pool3d(h, 2, 2))
            for level in reversed(range(len(self.dec))):
                h = self.dec[level](torch.cat([skips[level], self.up[level](h)], dim=1))
            return self.head(h)

    return UNet3D()


# ---------------------------------------------------------------------------------------------
# The data pipeline (MONAI dictionary transforms)


def extreme_points_transform(label_key, image_key, sigma, pert):
    """ExtremePointsChanneld: our AddExtremePointsChannel (crates/transforms/src/extreme.rs)."""
    import numpy as np
    import torch
    from monai.transforms import MapTransform, Randomizable

    class ExtremePointsChanneld(Randomizable, MapTransform):
        def __init__(self):
            MapTransform.__init__(self, [image_key])
            self._offsets = np.zeros((6, 3))

        def randomize(self, data=None):
            self._offsets = self.R.uniform(-pert, pert, size=(6, 3)) if pert > 0 else np.zeros((6, 3))

        @staticmethod
        def points(mask):
            # Foreground voxels in our memory order (i fastest, then j, then k).
            idx = np.argwhere(mask)  # sorted by (i, j, k) lexicographically
            idx = idx[np.lexsort((idx[:, 0], idx[:, 1], idx[:, 2]))]
            pts = []
            for a in range(3):
                for ext in (idx[:, a].min(), idx[:, a].max()):
                    tied = idx[idx[:, a] == ext]
                    pts.append(tied[(len(tied) - 1) // 2])
            return np.asarray(pts, dtype=np.float64)

        def __call__(self, data):
            d = dict(data)
            self.randomize()
            image, label = d[image_key], d[label_key]
            dims = label.shape[1:]
            pts = self.points(np.asarray(label[0]) > 0) + self._offsets
            pts = np.clip(pts, 0, np.asarray(dims) - 1)
            grids = [torch.arange(n, dtype=torch.float64) for n in dims]
            heat = torch.zeros(dims, dtype=torch.float32)
            for p in pts:
                g = [torch.exp(-((grids[a] - p[a]) ** 2) / (2 * sigma * sigma)).float() for a in range(3)]
                heat = torch.maximum(heat, g[0][:, None, None] * g[1][None, :, None] * g[2][None, None, :])
            lo, hi = heat.min(), heat.max()
            heat = (heat - lo) / (hi - lo) * 2 - 1 if hi > lo else torch.full_like(heat, -1.0)
            d[image_key] = torch.cat([torch.as_tensor(image), heat[None].to(torch.as_tensor(image).dtype)], 0)
            return d

    return ExtremePointsChanneld()


def train_transforms(size, extreme):
    import torch
    import monai.transforms as T

    keys = ["image", "label"]
    chain = [
        T.CropForegroundd(keys=keys, source_key="label", margin=20, allow_smaller=True),
        T.Lambdad(keys="label", func=lambda x: (x > 0).to(torch.uint8)),
        T.Resized(keys=keys, spatial_size=size, mode=("trilinear", "nearest")),
        T.RandZoomd(keys=keys, prob=1.0, min_zoom=(0.85,) * 3, max_zoom=(1.15,) * 3,
                    mode=("trilinear", "nearest"), padding_mode="constant", keep_size=True),
        T.RandFlipd(keys=keys, prob=0.5, spatial_axis=0),
        T.RandAdjustContrastd(keys="image", prob=1.0, gamma=(0.7, 1.5)),
        T.NormalizeIntensityd(keys="image"),
        T.RandScaleIntensityd(keys="image", factors=0.1, prob=1.0),
        T.RandGaussianNoised(keys="image", prob=1.0, mean=0.0, std=0.05, sample_std=False),
    ]
    if extreme == "ours":
        chain.append(extreme_points_transform("label", "image", sigma=3.0, pert=2.0))
    else:
        chain.append(T.AddExtremePointsChanneld(keys="image", label_key="label", sigma=3, pert=2))
    chain.append(T.EnsureTyped(keys=keys, dtype=torch.float32, track_meta=False))
    return T.Compose(chain)


# ---------------------------------------------------------------------------------------------
# `torch`: the reference run


def run_torch(args):
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    import monai
    import monai.transforms as T
    from monai.data import DataLoader, Dataset
    from monai.losses import DiceCELoss

    with open(args.config) as f:
        cfg = json.load(f)
    net_cfg = cfg["net_config"]
    assert net_cfg["name"] == "UNet3D", net_cfg
    assert net_cfg.get("downsample", "maxpool") == "maxpool", net_cfg
    assert cfg["train"]["loss"] == {"name": "losses.dice_ce_loss"}, cfg["train"]["loss"]
    opt_cfg = cfg["train"]["optimizer"]
    assert opt_cfg["name"] == "Adam" and set(opt_cfg) <= {"name", "lr", "epsilon"}, opt_cfg
    size = tuple(cfg["network_input_size"])
    batch_size = cfg.get("batch_size", 1)
    workers = cfg.get("num_workers", 2) if args.workers is None else args.workers
    seed = cfg.get("seed", 0)
    torch.manual_seed(seed)
    np.random.seed(seed)

    # The decoded files, once (our trainer's file cache).
    load = T.Compose([
        T.LoadImaged(keys=["image", "label"], reader="NibabelReader", image_only=True),
        T.EnsureChannelFirstd(keys=["image", "label"], channel_dim="no_channel"),
    ])
    item = load({"image": args.image, "label": args.label})
    total = (args.warmup + args.steps + args.tail) * batch_size
    chain = train_transforms(size, args.extreme_points)
    chain.set_random_state(seed=seed)
    ds = Dataset(data=[item] * total, transform=chain)
    loader = DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=workers,
                        persistent_workers=workers > 0)

    net = build_unet(cfg["num_channels"], cfg["num_classes"], net_cfg.get("num_filters", 16),
                     net_cfg.get("levels", 4), net_cfg.get("norm", "instance"))
    channels_last = args.memory_format == "channels_last"
    if channels_last:
        net = net.to(memory_format=torch.channels_last_3d)
    net.train()
    params = sum(p.numel() for p in net.parameters() if p.requires_grad)
    loss_fn = DiceCELoss(include_background=False, to_onehot_y=True, softmax=True,
                         smooth_nr=0.0, smooth_dr=1e-5)
    opt = torch.optim.Adam(net.parameters(), lr=opt_cfg.get("lr", 1e-3), eps=opt_cfg.get("epsilon", 1e-8))
    policy = cfg["train"].get("lr_policy", {"name": "constant"})
    sched = None
    if policy.get("name") == "lr_policy.CosineAnnealing":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(
            opt, T_max=policy["total_steps"], eta_min=policy.get("min_lr", 0.0))

    step_s, wait_s, losses = [], [], []
    la = [loadavg()]
    it = iter(loader)
    for step in range(args.warmup + args.steps):
        if step == args.warmup:
            la.append(loadavg())
        t0 = time.perf_counter()
        batch = next(it)
        t_data = time.perf_counter()
        x, y = batch["image"], batch["label"]
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        logits = net(x)
        loss = loss_fn(logits, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
        value = loss.item()
        t1 = time.perf_counter()
        if not math.isfinite(value):
            sys.exit(f"the loss became {value} at step {step + 1}")
        losses.append(value)
        if step >= args.warmup:
            step_s.append(t1 - t0)
            wait_s.append(t_data - t0)
    la.append(loadavg())
    assert tuple(x.shape) == (batch_size, cfg["num_channels"], *size), x.shape
    del it, loader
    out = {
        "side": f"torch-{args.memory_format}",
        "s_per_step": sum(step_s) / len(step_s),
        "median_s_per_step": statistics.median(step_s),
        "data_wait_share": sum(wait_s) / sum(step_s),
        "steps": len(step_s),
        "warmup": args.warmup,
        "step_s": [round(t, 4) for t in step_s],
        "parameters": params,
        "threads": torch.get_num_threads(),
        "workers": workers,
        "batch_size": batch_size,
        "first_loss": losses[0],
        "last_loss": losses[-1],
        "loadavg": la,
        "versions": {"torch": torch.__version__, "monai": monai.__version__},
        "extreme_points": args.extreme_points,
    }
    print(json.dumps(out), flush=True)


# ---------------------------------------------------------------------------------------------
# `ours`: our run's progress lines


def run_ours(args):
    start, steps = None, {}
    with open(args.progress) as f:
        for line in f:
            line = line.strip()
            if not line.startswith("{"):
                continue
            e = json.loads(line)
            if e.get("event") == "start":
                start = e
            elif e.get("event") == "step":
                steps[e["step"]] = e
    if start is None:
        sys.exit(f"{args.progress}: no start event")
    window = range(args.warmup + 1, args.warmup + args.steps + 1)
    missing = [s for s in window if s not in steps]
    if missing:
        sys.exit(f"{args.progress}: no step event for steps {missing[:5]}... (needs --log_every 1)")
    dts = [1.0 / steps[s]["it_per_s"] for s in window]
    waits = [steps[s]["data_wait"] * dt for s, dt in zip(window, dts)]
    out = {
        "side": "ours",
        "s_per_step": sum(dts) / len(dts),
        "median_s_per_step": statistics.median(dts),
        "data_wait_share": sum(waits) / sum(dts),
        "steps": len(dts),
        "warmup": args.warmup,
        "step_s": [round(t, 4) for t in dts],
        "parameters": start["parameters"],
        "threads": args.threads,
        "workers": start["num_workers"],
        "first_loss": steps[1]["loss"] if 1 in steps else None,
        "last_loss": steps[max(window)]["loss"],
        "loadavg": args.loadavg,
    }
    print(json.dumps(out), flush=True)


# ---------------------------------------------------------------------------------------------
# `report`: the table


def run_report(args):
    rows = []
    with open(args.results) as f:
        for line in f:
            line = line.strip()
            if line:
                rows.append(json.loads(line))
    sides = ["ours", "torch-contiguous", "torch-channels_last"]
    by_side = {s: [r for r in rows if r["side"] == s] for s in sides}
    ours = by_side["ours"]
    if not ours:
        sys.exit("no result of ours")
    params = {r["parameters"] for r in rows}
    print(f"parameters: ours {ours[0]['parameters']}, " + ", ".join(
        f"{s} {by_side[s][0]['parameters']}" for s in sides[1:] if by_side[s]))
    if len(params) != 1:
        print("FAIL: the parameter counts differ: not the same network", file=sys.stderr)
        sys.exit(1)
    rounds = max(len(v) for v in by_side.values())
    print(f"{'round':>5}  {'side':<20} {'s/step':>8} {'median':>8} {'data wait':>9} {'ours/this':>9} "
          f"{'loadavg (start, timed, end)':>28}")
    for r in range(rounds):
        for s in sides:
            if r >= len(by_side[s]):
                continue
            x = by_side[s][r]
            ratio = ours[r]["s_per_step"] / x["s_per_step"] if r < len(ours) else float("nan")
            la = ", ".join(f"{v:.2f}" for v in x.get("loadavg") or [])
            print(f"{r + 1:>5}  {s:<20} {x['s_per_step']:8.3f} {x['median_s_per_step']:8.3f} "
                  f"{100 * x['data_wait_share']:8.2f}% {ratio:9.2f} {la:>28}")
    x0 = ours[0]
    batch = next((r["batch_size"] for r in rows if "batch_size" in r), "?")
    print(f"steps timed per run: {x0['steps']} after {x0['warmup']} warm-up, batch {batch}, "
          f"threads {x0['threads']}, loader workers {x0['workers']}")
    ok = True
    for s in sides[1:]:
        if not by_side[s]:
            continue
        n = min(len(ours), len(by_side[s]))
        ratios = [ours[r]["s_per_step"] / by_side[s][r]["s_per_step"] for r in range(n)]
        mo = statistics.median(x["s_per_step"] for x in ours)
        mt = statistics.median(x["s_per_step"] for x in by_side[s])
        print(f"RESULT ours/{s}: time per step ratio {statistics.median(ratios):.2f} "
              f"(rounds: {', '.join(f'{q:.2f}' for q in ratios)}; ours {mo:.3f} s, {s} {mt:.3f} s "
              f"per step; target <= 1.0)")
        ok &= statistics.median(ratios) <= 1.0
    for s in sides:
        if by_side[s]:
            w = statistics.median(x["data_wait_share"] for x in by_side[s])
            print(f"RESULT data wait {s}: {100 * w:.2f}% of the step (median of rounds; target <= 10%)")
    if not ok:
        print("note: ours is slower than at least one reference (ratio > 1.0)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("torch", help="the PyTorch + MONAI reference run")
    t.add_argument("--config", required=True)
    t.add_argument("--image", required=True)
    t.add_argument("--label", required=True)
    t.add_argument("--steps", type=int, default=30)
    t.add_argument("--warmup", type=int, default=3)
    t.add_argument("--tail", type=int, default=4, help="samples the dataset holds beyond the timed steps (batches)")
    t.add_argument("--threads", type=int, default=os.cpu_count())
    t.add_argument("--workers", type=int, default=None, help="default: the config's num_workers")
    t.add_argument("--memory-format", choices=["contiguous", "channels_last"], default="contiguous")
    t.add_argument("--extreme-points", choices=["ours", "monai"], default="ours")
    o = sub.add_parser("ours", help="summarise our run's --progress json lines")
    o.add_argument("progress")
    o.add_argument("--steps", type=int, required=True)
    o.add_argument("--warmup", type=int, required=True)
    o.add_argument("--threads", type=int, required=True)
    o.add_argument("--loadavg", type=float, nargs="*", default=[])
    r = sub.add_parser("report", help="print the table of a results file (one JSON line per run)")
    r.add_argument("results")
    args = ap.parse_args()
    {"torch": run_torch, "ours": run_ours, "report": run_report}[args.cmd](args)


if __name__ == "__main__":
    main()
