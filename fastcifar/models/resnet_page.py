"""David Page's 9-layer ResNet: the DAWNBench ResNet-9 and its "bag of tricks" version.

prep -> layer1 (+ residual) -> layer2 -> layer3 (+ residual) -> global max -> linear (no bias) -> x scale

Each layer is a 3x3 conv, a 2x2 max pool, a norm and an activation; a residual adds two
more conv-norm-activation blocks of the same width around the layer's output. The two
recipes plug different parts into the same network:

- ResNet-9: a 3x3 prep conv, BatchNorm + ReLU, the pool last in each layer.
- bag of tricks: a frozen patch-whitening conv and a learned 1x1 conv as prep,
  GhostBatchNorm + CELU, the pool straight after the conv (cheaper: norm and activation
  see a quarter of the pixels; Page measured a small accuracy cost, repaid in speed).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from .layers import Mul

Norm = Callable[[int], nn.Module]  # channels -> norm layer
Activation = Callable[[], nn.Module]


def conv_block(in_channels: int, out_channels: int, norm: Norm, activation: Activation,
               kernel_size: int = 3, pool: str = "none") -> nn.Sequential:
    """conv (no bias: the norm's shift replaces it) -> [pool] -> norm -> activation -> [pool]."""
    if pool not in ("none", "before_norm", "last"):
        raise ValueError(f"pool must be none, before_norm or last, got {pool!r}")
    layers = [nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2,
                        bias=False)]
    if pool == "before_norm":
        layers.append(nn.MaxPool2d(2))
    layers += [norm(out_channels), activation()]
    if pool == "last":
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class Residual(nn.Module):
    """x + two conv blocks of x, at constant width."""

    def __init__(self, channels: int, norm: Norm, activation: Activation):
        super().__init__()
        self.blocks = nn.Sequential(conv_block(channels, channels, norm, activation),
                                    conv_block(channels, channels, norm, activation))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.blocks(x)


class PageResNet(nn.Module):
    """widths: prep, layer1, layer2, layer3 channels. residual_layers: which layers (1-3)
    get a residual. whiten_kernel_size: 0 for a 3x3 prep conv, else a frozen k x k
    whitening conv (3*k*k filters, zero padding, no bias) followed by a 1x1 prep conv."""

    def __init__(self, widths: tuple[int, ...] = (64, 128, 256, 512), num_classes: int = 10,
                 norm: Norm = nn.BatchNorm2d, activation: Activation = nn.ReLU,
                 pool: str = "last", residual_layers: tuple[int, ...] = (1, 3),
                 whiten_kernel_size: int = 0, output_scale: float = 0.125):
        super().__init__()
        if len(widths) != 4:
            raise ValueError(f"widths are prep, layer1, layer2, layer3: 4 numbers, got {widths}")
        self.whiten = None
        if whiten_kernel_size:
            k = whiten_kernel_size
            self.whiten = nn.Conv2d(3, 3 * k * k, k, padding=k // 2, bias=False)
            self.whiten.weight.requires_grad = False  # set from data by whitening_conv_init
            self.prep = conv_block(3 * k * k, widths[0], norm, activation, kernel_size=1)
        else:
            self.prep = conv_block(3, widths[0], norm, activation)
        layers = []
        for i, (cin, cout) in enumerate(zip(widths, widths[1:]), start=1):
            layer = [conv_block(cin, cout, norm, activation, pool=pool)]
            if i in residual_layers:
                layer.append(Residual(cout, norm, activation))
            layers.append(nn.Sequential(*layer))
        self.layers = nn.Sequential(*layers)
        # Global max: at 32 px, the notebook's MaxPool2d(4) over the 4x4 map left after three
        # 2x2 pools; the same at any other image size.
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.head = nn.Linear(widths[-1], num_classes, bias=False)
        self.scale = Mul(output_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.whiten is not None:
            x = self.whiten(x)
        x = self.layers(self.prep(x))
        return self.scale(self.head(self.pool(x).flatten(1)))
