"""A dextr3d click through the gateway against PyTorch's best forward pass of the same file,
side by side in one run (issue 19's measurement).

Our side: sessions holding the ROBEX head and MNI152 (each figure says which), clicked as a
viewer's plugin clicks (Python's http.client, multipart with the AIAA client's boundary),
the six extreme points of the reference mask jittered by a seeded +-JITTER voxels on every
click so that no cache can answer. Per click: wall time, and the server's stages
(params.latencies: pre, infer = the forward pass, post, encode, ...); transport = wall -
the server's total.

PyTorch's side: the same TorchScript file under torch.inference_mode(), torch.jit.freeze +
torch.jit.optimize_for_inference, the same input shape (1 x 2 x ROI) and threads.

Both sides get WARM warm-up calls; then RUNS runs of ROUNDS clicks per session, each click
followed by one PyTorch forward (so the two sides alternate call by call), every call after
a PAUSE of 20 ms. Prints every run's medians, the overall medians and the ratios:
click / PyTorch frozen forward, everything-but-forward / our forward.

usage: bench_dextr3d.py GATEWAY_HOST:PORT MODEL MODEL.pt ROI ROUNDS RUNS THREADS
                        NAME=IMAGE,MASK [NAME=IMAGE,MASK ...]
"""
import json
import os
import statistics
import sys
import time

import nibabel as nib
import numpy as np
import torch
from gateway_client import Gateway, multipart, params_of

gateway, model, model_file, roi, rounds, runs, threads = sys.argv[1:8]
sessions_arg = sys.argv[8:]
roi = [int(v) for v in roi.split(",")]
rounds, runs, threads = int(rounds), int(runs), int(threads)
WARM = 5
JITTER = 2
PAUSE = 0.02
SEED = int(os.environ.get("AIAA_BENCH_SEED", "19"))
gw = Gateway(gateway)


class Session:
    def __init__(self, name, image_path, mask_path, rng):
        self.name, self.rng = name, rng
        mask = np.squeeze(np.asarray(nib.load(mask_path).dataobj)) > 0
        self.shape = np.array(mask.shape)
        idx = np.argwhere(mask)
        self.points = np.array([idx[pick] for axis in range(3)
                                for pick in (idx[:, axis].argmin(), idx[:, axis].argmax())])
        with open(image_path, "rb") as f:
            data = gw.call("PUT", "/session/", multipart({}, {"image": (os.path.basename(image_path), f.read())}))
        self.path = f"/v1/dextr3d?model={model}&session_id={json.loads(data)['session_id']}"
        self.clicks = []

    def click(self):
        pts = self.points + self.rng.integers(-JITTER, JITTER + 1, self.points.shape)
        pts = np.clip(pts, 0, self.shape - 1)
        body = multipart({"params": json.dumps({"points": pts.tolist()})}, {})
        t0 = time.perf_counter()
        data = gw.call("POST", self.path, body)
        wall = time.perf_counter() - t0
        lat = params_of(data)["latencies"]
        return {"wall": wall, **lat, "transport": wall - lat["total"]}


def torch_forward(m, x):
    t0 = time.perf_counter()
    m(x)
    return time.perf_counter() - t0


def med(values):
    return statistics.median(values)


def ms(s):
    return round(s * 1e3, 1)


rng = np.random.default_rng(SEED)
sessions = []
for arg in sessions_arg:
    name, paths = arg.split("=", 1)
    image, mask = paths.split(",")
    sessions.append(Session(name, image, mask, rng))

torch.set_num_threads(threads)
torch.manual_seed(SEED)
x = torch.randn([1, 2, *roi])
with torch.inference_mode():
    frozen = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.load(model_file).eval()))
    for _ in range(WARM):
        torch_forward(frozen, x)
    for s in sessions:
        for _ in range(WARM):
            s.click()
    # Click and forward alternate one by one, so that both sides see the same machine: this
    # host's speed drifts by up to 1.4x over seconds, and blocks of 20 put one side's block in
    # a fast stretch and the other's in a slow one. Each call starts after the same pause
    # (the other side's threads park meanwhile).
    torch_runs = []
    for run in range(runs):
        forwards = []
        for s in sessions:
            s.clicks.append([])
        for _ in range(rounds):
            for s in sessions:
                time.sleep(PAUSE)
                s.clicks[-1].append(s.click())
                time.sleep(PAUSE)
                forwards.append(torch_forward(frozen, x))
        torch_runs.append(forwards)

print(f"load average at start: {os.environ.get('AIAA_BENCH_LOAD', '?')}; {threads} threads; torch {torch.__version__}; "
      f"{WARM} warm-up calls each; {runs} runs of {rounds} clicks per session, each followed by a PyTorch forward, {PAUSE * 1e3:.0f} ms pauses; points jittered +-{JITTER} voxels (seed {SEED})")
torch_all = [t for r in torch_runs for t in r]
print(f"PyTorch frozen+optimized forward 1x2x{'x'.join(map(str, roi))}: runs {[ms(med(r)) for r in torch_runs]} ms, "
      f"median {ms(med(torch_all))} ms")
summary = {"model": model, "torch_frozen_forward_ms": ms(med(torch_all)), "sessions": {}}
for s in sessions:
    every = [c for r in s.clicks for c in r]
    stages = {k: med([c[k] for c in every]) for k in every[0]}
    others = stages["wall"] - stages["infer"]
    print(f"{s.name} session {tuple(int(v) for v in s.shape)}: click runs {[ms(med([c['wall'] for c in r])) for r in s.clicks]} ms; "
          f"medians: click {ms(stages['wall'])} ms = "
          + ", ".join(f"{k} {ms(v)}" for k, v in stages.items() if k not in ("wall", "total"))
          + f" ms; click / PyTorch frozen forward = {stages['wall'] / med(torch_all):.2f}x; "
          f"everything but the forward / our forward = {others / stages['infer']:.2f}")
    summary["sessions"][s.name] = {
        "click_ms": ms(stages["wall"]),
        "stages_ms": {k: ms(v) for k, v in stages.items() if k != "wall"},
        "click_over_torch_frozen_forward": round(stages["wall"] / med(torch_all), 3),
        "others_over_forward": round(others / stages["infer"], 3),
        "our_forward_over_torch_frozen": round(stages["infer"] / med(torch_all), 3),
    }
print(json.dumps(summary))
