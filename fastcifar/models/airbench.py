"""The airbench network (Keller Jordan, arXiv 2404.00498).

whitening conv 2x2 -> GELU -> three conv groups -> maxpool 3 -> linear (no bias) -> x scale
where each conv group is conv -> maxpool 2 -> BatchNorm -> GELU -> conv -> BatchNorm -> GELU.
"""

from __future__ import annotations

import torch
from torch import nn

from .layers import BatchNorm, DiracConv, Mul


class ConvGroup(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, batchnorm_momentum: float):
        super().__init__()
        self.conv1 = DiracConv(in_channels, out_channels)
        self.pool = nn.MaxPool2d(2)
        self.norm1 = BatchNorm(out_channels, batchnorm_momentum)
        self.conv2 = DiracConv(out_channels, out_channels)
        self.norm2 = BatchNorm(out_channels, batchnorm_momentum)
        self.activation = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.activation(self.norm1(self.pool(self.conv1(x))))
        return self.activation(self.norm2(self.conv2(x)))


class AirbenchNet(nn.Module):
    def __init__(self, widths: tuple[int, ...] = (64, 256, 256), num_classes: int = 10,
                 batchnorm_momentum: float = 0.6, output_scale: float = 1 / 9,
                 whiten_kernel_size: int = 2):
        super().__init__()
        whiten_width = 2 * 3 * whiten_kernel_size**2  # each eigenvector and its negative
        self.whiten = nn.Conv2d(3, whiten_width, whiten_kernel_size, padding=0, bias=True)
        self.whiten.weight.requires_grad = False  # set from data by whitening_conv_init
        self.activation = nn.GELU()
        channels = (whiten_width, *widths)
        self.groups = nn.Sequential(*(ConvGroup(cin, cout, batchnorm_momentum)
                                      for cin, cout in zip(channels, channels[1:])))
        self.pool = nn.MaxPool2d(3)
        self.head = nn.Linear(widths[-1], num_classes, bias=False)
        self.scale = Mul(output_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.groups(self.activation(self.whiten(x)))
        x = self.pool(x).flatten(1)
        return self.scale(self.head(x))
