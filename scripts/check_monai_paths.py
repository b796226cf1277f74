#!/usr/bin/env python3
"""Do the layers of the one Python environment (scripts/python-env.sh) change what the MONAI
references measure? Runs each reference's timed work once, small, and lists every Python
function it calls that belongs to a package outside the base (requirements-torch.txt and
its dependencies) other than the ones that reference needs on purpose. Exits 1 when any.

    "$(scripts/python-env.sh)/bin/python" scripts/check_monai_paths.py [--dump CALLS.json]

The references (their timed parts; the setup before them is traced and reported apart):
  transforms  scripts/transforms/bench_vs_monai.py: monai_pipeline, one sample, load included
  training    scripts/training/monai_step_bench.py: train_transforms (both extreme-points
              variants), monai.data.DataLoader (in process) + the UNet3D + DiceCELoss + Adam,
              one step
  inference   scripts/inference/bench_sliding_window_monai.py: sliding_window_inference,
              gaussian importance map
  metrics     crates/metrics/tests/monai/monai_metrics.py: compute_dice, compute_surface_dice,
              compute_hausdorff_distance (scipy is its purpose: allowed)
`--dump` writes every MONAI/torch/... function called per phase ("file:line name"), to compare
two environments' code paths exactly (`diff` of two dumps, e.g. the base alone and layered).
"""

import argparse
import importlib.metadata as md
import importlib.util
import json
import os
import re
import sys
import threading
from pathlib import Path

for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(var, "1")

ROOT = Path(__file__).resolve().parents[1]
ALLOWED = {"metrics": {"scipy"}}


def norm(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def base_closure():
    """The base's distributions: requirements-torch.txt's and, transitively, their requirements
    (extras not followed; markers evaluated here)."""
    from packaging.requirements import Requirement

    todo = []
    for line in (ROOT / "scripts/requirements-torch.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            todo.append(Requirement(line).name)
    seen = set()
    while todo:
        name = norm(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        try:
            reqs = md.requires(name) or []
        except md.PackageNotFoundError:
            continue
        for r in map(Requirement, reqs):
            if r.marker is None or r.marker.evaluate({"extra": ""}):
                todo.append(r.name)
    return seen


def file_owners():
    """Absolute source path -> distribution name, for every installed distribution."""
    owners = {}
    for dist in md.distributions():
        for f in dist.files or []:
            if f.suffix == ".py":
                owners[str(Path(dist.locate_file(f)).resolve())] = norm(dist.metadata["Name"])
    return owners


def relative(filename):
    """A source file's path below the sys.path entry it was imported from (comparable across
    environments)."""
    for entry in sorted((p.rstrip("/") for p in sys.path if p), key=len, reverse=True):
        if filename.startswith(entry + "/"):
            return filename[len(entry) + 1:]
    return filename


class Tracer:
    """Records the Python functions called, per phase, with the distribution they belong to.
    A call outside the base made by the import machinery (a module's body on a lazy import,
    or a meta-path finder asked for a module) is marked as such: importing is not the path a
    transform takes."""

    def __init__(self, owners, base):
        self.owners, self.base, self.calls, self.phase, self._paths = owners, base, {}, None, {}

    def _owner(self, filename):
        """(distribution, path relative to its sys.path entry) of a source file, or None."""
        if filename not in self._paths:
            try:
                dist = self.owners.get(str(Path(filename).resolve()))
            except OSError:
                dist = None
            self._paths[filename] = dist and (dist, relative(filename))
        return self._paths[filename]

    def _hook(self, frame, event, arg):
        if event != "call":
            return
        code = frame.f_code
        owner = self._owner(code.co_filename)
        if owner is None:
            return
        dist, path = owner
        key = f"{path}:{code.co_firstlineno} {code.co_name}"
        if key in self.calls[self.phase]:
            return
        via_import = False
        if dist not in self.base:
            f = frame.f_back
            while f is not None and not via_import:
                via_import = f.f_code.co_filename.startswith("<frozen importlib")
                f = f.f_back
        self.calls[self.phase][key] = (dist, via_import)

    def run(self, phase, fn):
        self.phase = phase
        self.calls.setdefault(phase, {})
        sys.setprofile(self._hook)
        threading.setprofile(self._hook)
        try:
            return fn()
        finally:
            sys.setprofile(None)
            threading.setprofile(None)


def load_script(path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--testdata", default=str(ROOT / "testdata"))
    ap.add_argument("--dump", help="write every function called, per phase, as JSON")
    args = ap.parse_args()
    image = f"{args.testdata}/mni152/MNI152_T1.nii.gz"
    label = f"{args.testdata}/mni152/MNI152_mask.nii.gz"

    import numpy as np
    import torch

    torch.set_num_threads(1)
    # Seeded: which random branches run (a flip or not) must not differ between two dumps.
    torch.manual_seed(0)
    np.random.seed(0)
    base = base_closure()
    tracer = Tracer(file_owners(), base)
    t = tracer.run

    # transforms
    bench_t = load_script(ROOT / "scripts/transforms/bench_vs_monai.py")
    chain = t("transforms setup", lambda: bench_t.monai_pipeline(0))
    out = t("transforms", lambda: chain({"image": image, "label": label}))
    assert tuple(out["image"].shape) == (2, 128, 128, 128), out["image"].shape

    # training
    bench_s = load_script(ROOT / "scripts/training/monai_step_bench.py")

    def training_setup():
        import monai.transforms as T
        from monai.data import DataLoader, Dataset
        from monai.losses import DiceCELoss

        load = T.Compose([
            T.LoadImaged(keys=["image", "label"], reader="NibabelReader", image_only=True),
            T.EnsureChannelFirstd(keys=["image", "label"], channel_dim="no_channel"),
        ])
        item = load({"image": image, "label": label})
        loaders = []
        for extreme in ("ours", "monai"):
            chain = bench_s.train_transforms((48, 48, 48), extreme)
            chain.set_random_state(seed=0)
            loaders.append(DataLoader(Dataset(data=[item] * 2, transform=chain), batch_size=2, num_workers=0))
        net = bench_s.build_unet(2, 2, 8, 3, "instance")
        loss_fn = DiceCELoss(include_background=False, to_onehot_y=True, softmax=True, smooth_nr=0.0, smooth_dr=1e-5)
        opt = torch.optim.Adam(net.parameters(), lr=3e-3)
        return loaders, net, loss_fn, opt

    loaders, net, loss_fn, opt = t("training setup", training_setup)

    def training_step():
        for loader in loaders:
            batch = next(iter(loader))
            loss = loss_fn(net(batch["image"]), batch["label"])
            opt.zero_grad()
            loss.backward()
            opt.step()
            assert np.isfinite(loss.item())

    t("training", training_step)

    # inference
    from monai.inferers import sliding_window_inference

    model = torch.jit.script(torch.nn.Conv3d(1, 2, 3, padding=1)).eval()
    x = torch.rand(1, 1, 64, 64, 64)

    def infer():
        with torch.no_grad():
            y = (x - x.mean()) / x.std()
            return sliding_window_inference(y, (32, 32, 32), 1, model, overlap=0.25, mode="gaussian").argmax(1)

    t("inference", infer)

    # metrics
    from monai.metrics import compute_dice, compute_hausdorff_distance, compute_surface_dice

    pred = torch.zeros(1, 1, 32, 32, 32)
    ref = torch.zeros(1, 1, 32, 32, 32)
    pred[..., 8:20, 8:20, 8:20] = 1
    ref[..., 10:22, 9:21, 8:20] = 1

    def metrics():
        compute_dice(pred, ref, include_background=True)
        compute_surface_dice(pred, ref, class_thresholds=[1.0], include_background=True, spacing=[1.0] * 3)
        compute_hausdorff_distance(pred, ref, include_background=True, percentile=95, spacing=[1.0] * 3)

    if importlib.util.find_spec("scipy") is None:
        print("metrics: skipped (no scipy: the base alone)")
    else:
        t("metrics", metrics)

    bad = False
    for phase, calls in tracer.calls.items():
        allowed = ALLOWED.get(phase, set())
        called = sorted({d for d, imp in calls.values() if d not in base and not imp})
        imported = sorted({d for d, imp in calls.values() if d not in base and imp})
        unexpected = [d for d in called if d not in allowed]
        timed = not phase.endswith(" setup")
        status = "ok" if not unexpected else ("CHANGED" if timed else "setup only")
        print(f"{phase:16} {len(calls):5} functions; calls outside the base: {', '.join(called) or 'none'}; "
              f"imports outside the base: {', '.join(imported) or 'none'}  [{status}]")
        for key, (dist, imp) in sorted(calls.items()):
            if dist in unexpected and not imp:
                print(f"    {dist}: {key}")
        bad |= timed and bool(unexpected)
    if args.dump:
        Path(args.dump).write_text(json.dumps({p: sorted(c) for p, c in tracer.calls.items()}, indent=1))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
