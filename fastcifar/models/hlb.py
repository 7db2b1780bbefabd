"""tysam's hlb-CIFAR10 network (v0.7) and tysam's state-prediction network sketch built on it.

The network is airbench's (models/airbench.py), which descends from it: whitening conv 2x2
-> GELU -> three conv groups -> global max -> linear (no bias) -> x scale. hlb's has wider
groups (64/256/512), no whitening bias, and a "dirac residual" init: each group's first
conv starts as its random init plus the identity on its first in_channels filters, its
second conv as the identity, so that at the start every group nearly passes its input on
and the early layers reach the loss almost directly.
"""

from __future__ import annotations

import torch
from torch import nn

from .airbench import AirbenchNet
from .layers import BatchNorm


@torch.no_grad()
def dirac_residual_init(conv: nn.Conv2d, random_scale: float = 1.0) -> None:
    """weight <- random_scale * (a fresh random init) + identity on the first filters,
    then shifted and scaled back to the random init's mean and std (hlb's init)."""
    nn.Conv2d.reset_parameters(conv)
    w = conv.weight
    std, mean = torch.std_mean(w)
    w.mul_(random_scale).add_(nn.init.dirac_(torch.empty_like(w)))
    new_std, new_mean = torch.std_mean(w)
    w.sub_(new_mean).div_(new_std).mul_(std).add_(mean)


class HlbNet(AirbenchNet):
    """AirbenchNet as hlb builds it: a whitening conv without bias, and hlb's init."""

    def __init__(self, widths: tuple[int, ...] = (64, 256, 512), num_classes: int = 10,
                 batchnorm_momentum: float = 0.6, output_scale: float = 1 / 9,
                 residual_random_scale: float = 1.0):
        super().__init__(widths, num_classes, batchnorm_momentum, output_scale,
                         whiten_bias=False)
        for group in self.groups:
            dirac_residual_init(group.conv1, residual_random_scale)
            nn.init.dirac_(group.conv2.weight)


class StatePredictor(nn.Module):
    """A learned guess of the next group's output from this group's output: a 3x3 conv to
    the next width, maxpool 2 to its resolution, BatchNorm (and GELU in the sketch's first
    predictor only, which reads the whitening layer's output)."""

    def __init__(self, in_channels: int, out_channels: int, batchnorm_momentum: float,
                 activation: bool):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding="same", bias=False)
        self.pool = nn.MaxPool2d(2)
        self.norm = BatchNorm(out_channels, batchnorm_momentum)
        self.activation = nn.GELU() if activation else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.norm(self.pool(self.conv(x))))


def simulated_action(x: torch.Tensor, noise_scale: float = 1.0) -> torch.Tensor:
    """x as a noisy message that passes no gradient back: detached, plus Gaussian noise
    of x's std. As in the sketch, the std is not detached, so the one gradient that does
    pass is the noise's size: a scalar times x's deviation from its mean, one number per
    batch, tiny beside a real gradient (but enough for the weight decay to act on groups
    that get no other)."""
    return x.detach() + noise_scale * x.std() * torch.randn_like(x)


class HlbStateSketchNet(HlbNet):
    """tysam's network sketch: hlb's net in which no gradient crosses a group boundary except through
    predictions. Group k hands on simulated_action(its output) + a prediction of that
    output made one group earlier, from the previous group's output (or, for the first
    group, from the whitening layer's). The loss reaches group k's convs only through the
    prediction of group k+1's output that group k's output feeds.

    As the sketch wires it, with three groups that leaves the first and last groups without
    any gradient but the noise's size (see simulated_action): the last group's output
    reaches the head only detached, and the first group's prediction feeds the last
    group. Their convs stay near their dirac init (and the noise is added in evaluation
    too, as in the sketch)."""

    def __init__(self, widths: tuple[int, ...] = (64, 256, 512), num_classes: int = 10,
                 batchnorm_momentum: float = 0.6, output_scale: float = 1 / 12,
                 residual_random_scale: float = 0.1, noise_scale: float = 1.0):
        super().__init__(widths, num_classes, batchnorm_momentum, output_scale,
                         residual_random_scale)
        self.noise_scale = noise_scale
        c = (self.whiten.out_channels, *widths)
        self.predictors = nn.ModuleList(
            StatePredictor(c[k], c[k + 1], batchnorm_momentum, activation=k == 0)
            for k in range(len(widths)))
        for predictor in self.predictors[1:]:  # the sketch re-inits the groups' own ones
            if predictor.conv.out_channels > predictor.conv.in_channels:
                dirac_residual_init(predictor.conv, residual_random_scale)

    def handoffs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """What each group hands on: simulated_action(its output) + its predicted output."""
        x = self.activation(self.whiten(x))
        prediction, states = self.predictors[0](x), []
        for k, group in enumerate(self.groups):
            output = group(x)
            next_prediction = (self.predictors[k + 1](output)
                               if k + 1 < len(self.groups) else None)
            x = simulated_action(output, self.noise_scale) + prediction
            prediction = next_prediction
            states.append(x)
        return states

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.handoffs(x)[-1])
