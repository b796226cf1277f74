"""Runs a TorchScript model with PyTorch: loads it with torch.jit.load on the CPU, runs it on
the float32 array in INPUT.npy without gradients, writes the output to OUTPUT.npy.

usage: python run_torchscript.py MODEL.pt INPUT.npy OUTPUT.npy
"""
import sys

import numpy as np
import torch

model = torch.jit.load(sys.argv[1], map_location="cpu")
model.eval()
x = torch.from_numpy(np.load(sys.argv[2]))
with torch.no_grad():
    y = model(x)
np.save(sys.argv[3], y.numpy())
