"""Writes a small TorchScript DEXTR3D-shaped network for the engine tests: input [1, 2, X, Y, Z]
(image, extreme-points heat map in [-1, 1]), output [1, 2, X, Y, Z] probabilities whose
foreground is where the heat map is high, i.e. balls around the points. It has no learnt
weights: it checks that the engine crops, resizes, places the points, and maps the mask back
onto the request's grid, independently of what a trained model predicts.

usage: python dextr3d_fixture.py OUT.pt
"""
import sys

import torch


class HeatmapBalls(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = torch.sigmoid(40.0 * (x[:, 1:2] + 0.5))
        return torch.cat([1.0 - p, p], dim=1)


torch.jit.script(HeatmapBalls()).save(sys.argv[1])
