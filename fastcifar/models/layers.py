"""Small layers the speed-run networks share."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class BatchNorm(nn.BatchNorm2d):
    """BatchNorm with a fixed scale of 1 and a learned shift, as the speed-run nets use it.

    `momentum` follows the running-average convention (weight kept on the old statistics,
    0.6 in airbench), which is PyTorch's `1 - momentum`. The tiny eps matters: with the
    scale frozen, the shift is the layer's only parameter and eps would otherwise bias it.
    """

    def __init__(self, num_features: int, momentum: float = 0.6, eps: float = 1e-12,
                 learn_weight: bool = False):
        super().__init__(num_features, eps=eps, momentum=1 - momentum)
        self.weight.requires_grad = learn_weight


class GhostBatchNorm(BatchNorm):
    """BatchNorm that, in training, cuts the batch into `num_splits` equal consecutive chunks
    and normalises each with its own statistics (Hoffer et al. 2017; Page's "ghost" batch
    norm). Statistics over ~32 examples regularise better than over the whole batch of 512.

    Each split keeps its own running statistics, updated like BatchNorm's (unbiased variance);
    evaluation normalises the whole batch with their mean over the splits.
    """

    def __init__(self, num_features: int, num_splits: int = 16, momentum: float = 0.9,
                 eps: float = 1e-5, learn_weight: bool = False):
        super().__init__(num_features, momentum, eps, learn_weight=learn_weight)
        self.num_splits = num_splits
        self.register_buffer("running_mean", torch.zeros(num_splits, num_features))
        self.register_buffer("running_var", torch.ones(num_splits, num_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return F.batch_norm(x, self.running_mean.mean(0), self.running_var.mean(0),
                                self.weight, self.bias, False, 0.0, self.eps)
        n, c, h, w = x.shape
        s = self.num_splits
        if n % s:
            raise ValueError(f"GhostBatchNorm: batch of {n} does not split into {s} equal parts")
        # Lay the splits side by side as channels: one batch_norm call then normalises (and
        # tracks) every split with its own statistics.
        grouped = x.unflatten(0, (s, n // s)).transpose(0, 1).reshape(n // s, s * c, h, w)
        out = F.batch_norm(grouped, self.running_mean.view(-1), self.running_var.view(-1),
                           self.weight.repeat(s), self.bias.repeat(s), True, self.momentum,
                           self.eps)
        return out.unflatten(1, (s, c)).transpose(0, 1).reshape(n, c, h, w)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, num_splits={self.num_splits}"


class DiracConv(nn.Conv2d):
    """A 3x3 'same' convolution whose first in_channels filters start as the identity,
    so that at initialisation each layer passes its input through unchanged plus noise.
    identity=False keeps torch's random start (the ablation of the identity init)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3,
                 bias: bool = False, identity: bool = True):
        self.identity = identity  # before nn.Conv2d's init, which calls reset_parameters
        super().__init__(in_channels, out_channels, kernel_size, padding="same", bias=bias)

    def reset_parameters(self):
        super().reset_parameters()
        if self.bias is not None:
            nn.init.zeros_(self.bias)
        if self.identity:
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


def place_model(model: nn.Module, device: torch.device,
                dtype: torch.dtype = torch.float32) -> nn.Module:
    """Move to device in channels_last and `dtype`, keeping norms in float32: their
    statistics and tiny eps need the range."""
    model = model.to(device=device, dtype=dtype, memory_format=torch.channels_last)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.float()
    return model
