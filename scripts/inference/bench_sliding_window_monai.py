"""MONAI's side of bench_sliding_window.sh: the same TorchScript model, the same 256^3 volume
(MNI152 resized linearly), z-score normalisation, sliding_window_inference with a Gaussian
importance map, argmax; torch on the same number of threads. MODULE `plain` runs the file as
MONAI users do (torch.jit.load, eval, no_grad); `frozen` runs it at its best
(torch.jit.freeze + optimize_for_inference under inference_mode). Both warm the module up
on two window batches first (TorchScript's profiling executor optimises on the second call),
as our engine does at load. Prints one JSON line.

usage: bench_sliding_window_monai.py MODEL IMAGE ROUNDS ROI OVERLAP THREADS SW_BATCH plain|frozen
"""
import json
import sys
import time

import nibabel as nib
import numpy as np
import torch
import torch.nn.functional as F
from monai.inferers import sliding_window_inference

model_path, image_path, rounds, roi, overlap, threads, sw_batch, module = sys.argv[1:9]
rounds, roi, overlap, threads, sw_batch = int(rounds), int(roi), float(overlap), int(threads), int(sw_batch)
torch.set_num_threads(threads)
x = torch.from_numpy(np.asarray(nib.load(image_path).dataobj, dtype=np.float32))
x = F.interpolate(x[None, None], (256, 256, 256), mode="trilinear", align_corners=False)
grad_off = torch.inference_mode if module == "frozen" else torch.no_grad
times = []
with grad_off():
    model = torch.jit.load(model_path).eval()
    if module == "frozen":
        model = torch.jit.optimize_for_inference(torch.jit.freeze(model))
    for _ in range(2):
        model(torch.zeros(sw_batch, 1, roi, roi, roi))
    for _ in range(rounds):
        t0 = time.perf_counter()
        y = (x - x.mean()) / x.std()
        out = sliding_window_inference(y, (roi, roi, roi), sw_batch, model, overlap=overlap, mode="gaussian")
        labels = out.argmax(1)
        times.append(time.perf_counter() - t0)
times.sort()
print(json.dumps({"seconds": times[len(times) // 2], "foreground": int((labels > 0).sum()), "module": module}))
