"""resnet9_dawnbench: David Page's DAWNBench ResNet-9, 94.08% median in 24 epochs (79 s on a V100).

Page's ResNet-9 (models/resnet_page.py) with BatchNorm and ReLU, trained by Nesterov SGD
on a one-cycle lr schedule with crop, flip and cutout ("How to train your ResNet 4:
architecture"; Page's blog series, cifar10-fast's dawn.py). No TTA.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np
from torch import nn

from ..models.layers import BatchNorm
from ..models.resnet_page import PageResNet
from ..optim.schedules import piecewise_linear
from ..optim.sgd import per_example_sgd
from ..optim.losses import summed_cross_entropy
from .base import Recipe, Target, Training, TrainConfig, check_widths
from .fields import Count, Fraction, FractionBelowOne, NonNegative, OpenFraction, Positive


@dataclass(frozen=True)
class ResNet9DawnbenchConfig(TrainConfig):
    """resnet9_dawnbench's hyperparameters as published; the fields not here are
    TrainConfig's."""

    epochs: float = 24.0  # the published run's
    batch_size: int = 512  # images per step
    lr: Positive = 0.4 / 512  # per example: the loss is summed over the batch (Page: 0.4/batch)
    weight_decay: NonNegative = 5e-4  # per example, coupled to the lr: torch's 5e-4 * batch_size
    momentum: OpenFraction = 0.9  # Nesterov
    lr_peak_at: Fraction = 5 / 24  # one cycle: 0 -> 1 at epoch 5 of 24 -> 0 at the end
    widths: tuple[Count, ...] = (64, 128, 256, 512)  # prep, layer1, layer2, layer3
    batchnorm_momentum: FractionBelowOne = 0.9  # weight on the old running statistics (torch's 0.1)
    batchnorm_eps: Positive = 1e-5  # added to the batch variance (torch's default)
    output_scale: Positive = 0.125  # tempers the logits of an unnormalised linear head
    flip: str = "random"  # none | random | alternating: half mirrored, drawn afresh each epoch
    translate: int = 4  # reflect-pad 4, random 32x32 crop
    cutout: int = 8  # pixels: the side of the zeroed square
    tta_level: int = 0  # the 94.08% is without TTA

    def validate(self) -> None:
        super().validate()
        check_widths(self.widths, 4, "prep, layer1, layer2, layer3")

    def lr_schedule(self, total_steps: int) -> np.ndarray:
        return piecewise_linear(total_steps, [(0, 0.0), (self.lr_peak_at, 1.0), (1, 0.0)])


class ResNet9Dawnbench(Recipe):
    name = "resnet9_dawnbench"
    summary = "David Page's DAWNBench ResNet-9: BN + ReLU, one-cycle SGD, crop/flip/cutout"
    target = Target(0.9408, "94.08% median in 24 epochs, 79 s on a V100")
    config = ResNet9DawnbenchConfig()

    def build_model(self, config: ResNet9DawnbenchConfig, num_classes: int) -> PageResNet:
        norm = partial(BatchNorm, momentum=config.batchnorm_momentum, eps=config.batchnorm_eps,
                       learn_weight=True)
        return PageResNet(config.widths, num_classes, norm=norm, activation=nn.ReLU,
                          pool="last", output_scale=config.output_scale)

    def setup(self, model: PageResNet, config: ResNet9DawnbenchConfig, train_images,
              total_steps: int) -> Training:
        trainable = [p for p in model.parameters() if p.requires_grad]
        optimizer = per_example_sgd([(trainable, 1.0)], lr=config.lr,
                                    weight_decay=config.weight_decay, momentum=config.momentum,
                                    batch_size=config.batch_size)
        return Training(optimizers=[optimizer], lr_multipliers=config.lr_schedule(total_steps),
                        loss=summed_cross_entropy())
