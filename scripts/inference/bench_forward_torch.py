"""PyTorch's side of scripts/inference/bench_forward.sh: the forward time of a TorchScript file
at its best in PyTorch (torch.jit.freeze + torch.jit.optimize_for_inference, under
torch.inference_mode, the same threads), median of ROUNDS after WARM warm-up calls.
Prints one JSON line.

usage: bench_forward_torch.py FILE N,C,X,Y,Z ROUNDS THREADS
"""
import json
import statistics
import sys
import time

import torch

path, shape, rounds, threads = sys.argv[1], [int(v) for v in sys.argv[2].split(",")], int(sys.argv[3]), int(sys.argv[4])
WARM = 5
torch.set_num_threads(threads)
torch.manual_seed(0)
x = torch.randn(shape)
with torch.inference_mode():
    m = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.load(path).eval()))
    for _ in range(WARM):
        m(x)
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        m(x)
        times.append((time.perf_counter() - t0) * 1e3)
print(json.dumps({"file": path, "shape": shape, "threads": threads, "torch": torch.__version__,
                  "median_ms": round(statistics.median(times), 2), "rounds_ms": [round(t, 1) for t in times]}))
