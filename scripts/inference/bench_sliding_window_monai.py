"""MONAI's side of bench_sliding_window.sh: the same TorchScript model, the same 256^3 volume
(MNI152 resized linearly), z-score normalisation, sliding_window_inference with a Gaussian
importance map, argmax; torch on the same number of threads. Prints one JSON line."""
import json
import sys
import time

import nibabel as nib
import numpy as np
import torch
import torch.nn.functional as F
from monai.inferers import sliding_window_inference

model_path, image_path, rounds, roi, overlap, threads = sys.argv[1:7]
rounds, roi, overlap, threads = int(rounds), int(roi), float(overlap), int(threads)
torch.set_num_threads(threads)
model = torch.jit.load(model_path).eval()
x = torch.from_numpy(np.asarray(nib.load(image_path).dataobj, dtype=np.float32))
x = F.interpolate(x[None, None], (256, 256, 256), mode="trilinear", align_corners=False)
times = []
with torch.no_grad():
    for _ in range(rounds):
        t0 = time.perf_counter()
        y = (x - x.mean()) / x.std()
        out = sliding_window_inference(y, (roi, roi, roi), 1, model, overlap=overlap, mode="gaussian")
        labels = out.argmax(1)
        times.append(time.perf_counter() - t0)
times.sort()
print(json.dumps({"seconds": times[len(times) // 2], "foreground": int((labels > 0).sum())}))
