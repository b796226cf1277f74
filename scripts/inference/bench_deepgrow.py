"""A deepgrow click through the gateway against PyTorch's best forward pass of the same file
and against the same click in MONAI, side by side in one run (issue 14's speed target).

Our side: sessions holding the ROBEX head and MNI152 (each figure says which), clicked as a
viewer clicks: cycles of CYCLE clicks, the first one new (reset_state, a foreground click
near the brain's centre), each later one adding a click (alternately background, outside
the brain, and foreground) to every click sent so far, so the server answers from the mask
it kept for the session. Every click is jittered by a seeded +-JITTER voxels so that no cache
can answer. Per click: wall time and the server's stages (params.latencies); transport =
wall - the server's total.

PyTorch's side: the same TorchScript file under torch.inference_mode(), torch.jit.freeze +
torch.jit.optimize_for_inference, the same input (1 x C x ROI), the same threads.

MONAI's side: the same click as MONAI's whole-volume interactive pipeline runs it (DeepEdit's
inference transforms, with the image already in memory as our session holds it):
Resized of the image (trilinear) and of the previous mask to the ROI, NormalizeIntensityd,
AddGuidanceSignald (foreground and background clicks moved onto the ROI grid, the same
sigma), the frozen module, the foreground probability resized back (trilinear) and
thresholded at 0.5.

All sides get WARM warm-up calls; then RUNS runs of ROUNDS clicks per session, each click
followed by one PyTorch forward and one MONAI click (so the sides alternate call by call),
every call after a PAUSE of 20 ms. Prints the medians and the ratios.

usage: bench_deepgrow.py GATEWAY_HOST:PORT MODEL CONFIG.json ROUNDS RUNS THREADS
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
from monai.apps.deepgrow.transforms import AddGuidanceSignald
from monai.transforms import NormalizeIntensityd, Resize, Resized

gateway, model, config_path, rounds, runs, threads = sys.argv[1:7]
sessions_arg = sys.argv[7:]
rounds, runs, threads = int(rounds), int(runs), int(threads)
config = json.load(open(config_path))
roi = config["roi"]
sigma = config.get("sigma", 2.0)
channels = config["training"]["num_channels"]
model_file = os.path.join(os.path.dirname(config_path), config["model_path"])
WARM = 5
CYCLE = 5
JITTER = 2
PAUSE = 0.02
SEED = int(os.environ.get("AIAA_BENCH_SEED", "14"))
gw = Gateway(gateway)


class Monai:
    """One session's click in MONAI's whole-volume interactive pipeline."""

    def __init__(self, image, module):
        self.image = image[None].astype(np.float32)
        self.module = module
        self.shape = image.shape
        self.resize_image = Resized(keys="image", spatial_size=roi, mode="trilinear")
        self.resize_mask = Resized(keys="mask", spatial_size=roi, mode="trilinear")
        self.normalize = NormalizeIntensityd(keys="image")
        self.guidance = AddGuidanceSignald(image="image", guidance="guidance", sigma=sigma, number_intensity_ch=1)
        self.back = Resize(spatial_size=self.shape, mode="trilinear")
        self.previous = np.zeros((1, *self.shape), np.float32)

    def click(self, fg, bg):
        t0 = time.perf_counter()
        scale = np.array(roi) / np.array(self.shape)
        onto = lambda pts: [list(np.clip((np.array(p) + 0.5) * scale - 0.5, 0, np.array(roi) - 1)) for p in pts]
        d = self.resize_image({"image": self.image})
        d = self.normalize(d)
        d["guidance"] = [onto(fg), onto(bg)]
        d = self.guidance(d)
        x = torch.as_tensor(np.asarray(d["image"]))
        if channels == 4:
            mask = self.resize_mask({"mask": self.previous})["mask"]
            x = torch.cat([x, (torch.as_tensor(np.asarray(mask)) > 0.5).float()])
        with torch.inference_mode():
            y = self.module(x[None])
        prob = self.back(y[0, 1:2])
        self.previous = (np.asarray(prob) > 0.5).astype(np.float32)
        return time.perf_counter() - t0


class Session:
    def __init__(self, name, image_path, mask_path, rng, module):
        self.name, self.rng = name, rng
        mask = np.squeeze(np.asarray(nib.load(mask_path).dataobj)) > 0
        self.shape = np.array(mask.shape)
        idx = np.argwhere(mask)
        self.centre = idx.mean(0).round().astype(int)
        self.outside = np.argwhere(~mask)
        with open(image_path, "rb") as f:
            data = gw.call("PUT", "/session/", multipart({}, {"image": (os.path.basename(image_path), f.read())}))
        self.path = f"/v1/deepgrow?model={model}&session_id={json.loads(data)['session_id']}"
        self.monai = Monai(np.squeeze(np.asarray(nib.load(image_path).dataobj)), module)
        self.fg, self.bg, self.count = [], [], 0
        self.clicks, self.monai_clicks = [], []

    def jittered(self, p):
        return np.clip(p + self.rng.integers(-JITTER, JITTER + 1, 3), 0, self.shape - 1).tolist()

    def next_clicks(self):
        params = {}
        if self.count % CYCLE == 0:
            self.fg, self.bg = [self.jittered(self.centre)], []
            params["reset_state"] = True
        elif self.count % 2 == 1:
            self.bg.append(self.jittered(self.outside[self.rng.integers(len(self.outside))]))
        else:
            self.fg.append(self.jittered(self.centre))
        self.count += 1
        params.update(foreground=self.fg, background=self.bg)
        return params

    def click(self):
        params = self.next_clicks()
        body = multipart({"params": json.dumps(params)}, {})
        t0 = time.perf_counter()
        data = gw.call("POST", self.path, body)
        wall = time.perf_counter() - t0
        answer = params_of(data)
        lat = answer["latencies"]
        if self.count % CYCLE != 1:
            assert answer["previous_mask"] == "session", answer
        monai = self.monai.click(params["foreground"], params["background"])
        return {"wall": wall, **lat, "transport": wall - lat["total"]}, monai


def torch_forward(m, x):
    t0 = time.perf_counter()
    with torch.inference_mode():
        m(x)
    return time.perf_counter() - t0


def med(values):
    return statistics.median(values)


def ms(s):
    return round(s * 1e3, 1)


torch.set_num_threads(threads)
torch.manual_seed(SEED)
with torch.inference_mode():
    frozen = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.load(model_file).eval()))
rng = np.random.default_rng(SEED)
sessions = []
for arg in sessions_arg:
    name, paths = arg.split("=", 1)
    image, mask = paths.split(",")
    sessions.append(Session(name, image, mask, rng, frozen))

x = torch.randn([1, channels, *roi])
for _ in range(WARM):
    torch_forward(frozen, x)
for s in sessions:
    for _ in range(WARM):
        s.click()
# Click, forward and MONAI click alternate one by one, so that all sides see the same machine
# (this host's speed drifts by up to 1.4x over seconds).
torch_runs = []
for run in range(runs):
    forwards = []
    for s in sessions:
        s.clicks.append([])
        s.monai_clicks.append([])
    for _ in range(rounds):
        for s in sessions:
            time.sleep(PAUSE)
            ours, monai = s.click()
            s.clicks[-1].append(ours)
            s.monai_clicks[-1].append(monai)
            time.sleep(PAUSE)
            forwards.append(torch_forward(frozen, x))
    torch_runs.append(forwards)

print(f"load average at start: {os.environ.get('AIAA_BENCH_LOAD', '?')}; {threads} threads; torch {torch.__version__}; "
      f"{WARM} warm-up calls each; {runs} runs of {rounds} clicks per session, each followed by a PyTorch forward "
      f"(and a MONAI click), {PAUSE * 1e3:.0f} ms pauses; cycles of {CYCLE} clicks, jittered +-{JITTER} voxels (seed {SEED})")
torch_all = [t for r in torch_runs for t in r]
print(f"PyTorch frozen+optimized forward 1x{channels}x{'x'.join(map(str, roi))}: runs {[ms(med(r)) for r in torch_runs]} ms, "
      f"median {ms(med(torch_all))} ms")
summary = {"model": model, "torch_frozen_forward_ms": ms(med(torch_all)), "sessions": {}}
for s in sessions:
    every = [c for r in s.clicks for c in r]
    monai_all = [c for r in s.monai_clicks for c in r]
    stages = {k: med([c[k] for c in every]) for k in every[0]}
    print(f"{s.name} session {tuple(int(v) for v in s.shape)}: click runs {[ms(med([c['wall'] for c in r])) for r in s.clicks]} ms; "
          f"medians: click {ms(stages['wall'])} ms = "
          + ", ".join(f"{k} {ms(v)}" for k, v in stages.items() if k not in ("wall", "total"))
          + f" ms; click / PyTorch frozen forward = {stages['wall'] / med(torch_all):.2f}x; "
          f"MONAI click {ms(med(monai_all))} ms (runs {[ms(med(r)) for r in s.monai_clicks]}): "
          f"MONAI / ours = {med(monai_all) / stages['wall']:.2f}x")
    summary["sessions"][s.name] = {
        "click_ms": ms(stages["wall"]),
        "stages_ms": {k: ms(v) for k, v in stages.items() if k != "wall"},
        "click_over_torch_frozen_forward": round(stages["wall"] / med(torch_all), 3),
        "monai_click_ms": ms(med(monai_all)),
        "monai_over_ours": round(med(monai_all) / stages["wall"], 3),
    }
print(json.dumps(summary))
