"""Writes a TorchScript segmentation network without learnt weights for the API and engine
tests: input [1, 1, X, Y, Z] (an image scaled to [0, 1]), output [1, 2, X, Y, Z]
probabilities with the foreground where the intensity exceeds 0.5. It runs in milliseconds, so
whole-volume and sliding-window requests can be tested many times; what it checks is the
engine's and the API's handling, not what a trained model predicts.

usage: python threshold_fixture.py OUT.pt
"""
import sys

import torch


class Threshold(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = torch.sigmoid(40.0 * (x[:, 0:1] - 0.5))
        return torch.cat([1.0 - p, p], dim=1)


torch.jit.script(Threshold()).save(sys.argv[1])
