"""The airbench network (Keller Jordan, arXiv 2404.00498) and its variants.

whitening conv 2x2 -> GELU -> three conv groups -> global max -> linear (no bias) -> x scale

Each conv group is conv -> maxpool 2 -> norm -> activation, then (convs - 1) times
conv -> norm -> activation: GELU, or SiLU as in hiverge's and Fable's nets (whose
activation after the whitening conv stays GELU, as here). airbench94/95 have two convs per
group; airbench96 has three and adds the group's first activation back before the last
activation (a residual over the later convs). The BatchNorm-free variant replaces each norm
by a bias on the conv before it.
"""

from __future__ import annotations

import torch
from torch import nn

from .layers import BatchNorm, DiracConv, Mul
from .whitening import random_images, whitening_conv_init

ACTIVATIONS = {"gelu": nn.GELU, "silu": nn.SiLU}  # the conv groups' choices


class ConvGroup(nn.Module):
    """Submodules are named conv1, norm1, ..., convN, normN, as in the reference code."""

    def __init__(self, in_channels: int, out_channels: int, batchnorm_momentum: float,
                 convs: int = 2, residual: bool = False, batchnorm: bool = True,
                 activation: str = "gelu", identity_init: bool = True):
        super().__init__()
        if convs < 1 or (residual and convs < 2):
            raise ValueError(f"a conv group needs 1 or more convs, 2 or more with a residual; "
                             f"got {convs} (residual={residual})")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, "
                             f"got {activation!r}")
        self.convs, self.residual = convs, residual
        self.pool = nn.MaxPool2d(2)
        self.activation = ACTIVATIONS[activation]()
        for i in range(1, convs + 1):
            # Without BatchNorm nothing re-centres the activations, so the convs get biases.
            self.add_module(f"conv{i}", DiracConv(in_channels if i == 1 else out_channels,
                                                  out_channels, bias=not batchnorm,
                                                  identity=identity_init))
            self.add_module(f"norm{i}", BatchNorm(out_channels, batchnorm_momentum)
                            if batchnorm else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.activation(self.norm1(self.pool(self.conv1(x))))
        group_input = x
        for i in range(2, self.convs + 1):
            x = getattr(self, f"norm{i}")(getattr(self, f"conv{i}")(x))
            if self.residual and i == self.convs:
                x = x + group_input
            x = self.activation(x)
        return x


class AirbenchNet(nn.Module):
    def __init__(self, widths: tuple[int, ...] = (64, 256, 256), num_classes: int = 10,
                 batchnorm_momentum: float = 0.6, output_scale: float = 1 / 9,
                 whiten_kernel_size: int = 2, convs_per_group: int = 2, residual: bool = False,
                 batchnorm: bool = True, whiten_bias: bool = True, activation: str = "gelu",
                 identity_init: bool = True):
        super().__init__()
        whiten_width = 2 * 3 * whiten_kernel_size**2  # each eigenvector and its negative
        self.whiten = nn.Conv2d(3, whiten_width, whiten_kernel_size, padding=0, bias=whiten_bias)
        self.whiten.weight.requires_grad = False  # set from data by whitening_conv_init
        self.activation = nn.GELU()
        channels = (whiten_width, *widths)
        self.groups = nn.Sequential(*(
            ConvGroup(cin, cout, batchnorm_momentum, convs_per_group, residual, batchnorm,
                      activation, identity_init)
            for cin, cout in zip(channels, channels[1:])))
        # Global max: at 32 px, the reference's MaxPool2d(3) over the 3x3 map left after three
        # 2x2 pools; the same at any other image size.
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.head = nn.Linear(widths[-1], num_classes, bias=False)
        self.scale = Mul(output_scale)

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """The last group's features -> logits."""
        return self.scale(self.head(self.pool(features).flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.groups(self.activation(self.whiten(x))))


def airbench_net(config, num_classes: int) -> AirbenchNet:
    """The net an airbench recipe's config describes (its widths, convs_per_group, residual,
    batchnorm, batchnorm_momentum, activation, identity_init and output_scale), its
    whitening bias zeroed where zero_whiten_bias says so."""
    net = AirbenchNet(config.widths, num_classes, config.batchnorm_momentum,
                      config.output_scale, convs_per_group=config.convs_per_group,
                      residual=config.residual, batchnorm=config.batchnorm,
                      activation=config.activation, identity_init=config.identity_init)
    if config.zero_whiten_bias:
        nn.init.zeros_(net.whiten.bias)
    return net


@torch.no_grad()
def set_head_std(net: AirbenchNet, std: float) -> None:
    """Rescale the head's random init to this std (the Muon recipes' head_init_std)."""
    net.head.weight.mul_(std / net.head.weight.std())


def init_whitening(net: AirbenchNet, config, train_images: torch.Tensor) -> None:
    """The whitening conv's filters from the patches of config.whiten_images random training
    images (eps config.whiten_eps), fixed; with config.whiten False, a plain conv that
    trains from its random start (the ablation of whitening)."""
    if not config.whiten:
        net.whiten.weight.requires_grad = True
        return
    whitening_conv_init(net.whiten, random_images(train_images, config.whiten_images),
                        config.whiten_eps)


def freeze_whitening_bias(net: AirbenchNet, epochs: float):
    """A before_epoch hook: the whitening bias trains in the first `epochs` epochs only."""
    def before_epoch(epoch: int) -> None:
        net.whiten.bias.requires_grad = epoch < epochs

    return before_epoch
