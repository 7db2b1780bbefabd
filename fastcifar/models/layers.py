"""Small layers the speed-run networks share."""

from __future__ import annotations

import torch
from torch import nn


class BatchNorm(nn.BatchNorm2d):
    """BatchNorm with a fixed scale of 1 and a learned shift, as the speed-run nets use it.

    `momentum` follows the running-average convention (weight kept on the old statistics,
    0.6 in airbench), which is PyTorch's `1 - momentum`. The tiny eps matters: with the
    scale frozen, the shift is the layer's only parameter and eps would otherwise bias it.
    """

    def __init__(self, num_features: int, momentum: float = 0.6, eps: float = 1e-12,
                 learn_weight: bool = False, learn_bias: bool = True):
        super().__init__(num_features, eps=eps, momentum=1 - momentum)
        self.weight.requires_grad = learn_weight
        self.bias.requires_grad = learn_bias


class DiracConv(nn.Conv2d):
    """A 3x3 'same' convolution whose first in_channels filters start as the identity,
    so that at initialisation each layer passes its input through unchanged plus noise."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, bias: bool = False):
        super().__init__(in_channels, out_channels, kernel_size, padding="same", bias=bias)

    def reset_parameters(self):
        super().reset_parameters()
        if self.bias is not None:
            nn.init.zeros_(self.bias)
        w = self.weight.data
        nn.init.dirac_(w[: min(w.size(0), w.size(1))])


class Mul(nn.Module):
    """Multiply by a constant: the output temperature of the speed-run heads."""

    def __init__(self, scale: float):
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale

    def extra_repr(self) -> str:
        return f"scale={self.scale}"
