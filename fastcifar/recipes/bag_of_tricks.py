"""bag_of_tricks: David Page's final ResNet, 94.1% on CIFAR-10 in 10 epochs (26 s on a V100).

Page's ResNet-9 (models/resnet_page.py) with a frozen 3x3 patch-whitening conv, ghost
batch norm with frozen scales, CELU, label smoothing, biases trained 64x faster, an EMA
of the weights for evaluation and mirror TTA ("How to train your ResNet 8: bag of tricks";
a notebook of it, cifar10-fast's new_dawn.py, Thomas Germer's cifar10-fast-simple).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np
from torch import nn

from ..errors import InputError
from ..models.layers import GhostBatchNorm
from ..models.resnet_page import PageResNet
from ..models.whitening import random_images, whitening_conv_init
from ..optim.averaging import WeightAverage
from ..optim.schedules import piecewise_linear
from ..optim.sgd import per_example_sgd, weights_and_biases
from ..optim.losses import summed_cross_entropy
from .base import Recipe, Target, Training, TrainConfig, check_widths
from .fields import Count, Fraction, FractionBelowOne, NonNegative, OpenFraction, Positive


@dataclass(frozen=True)
class BagOfTricksConfig(TrainConfig):
    """bag_of_tricks's hyperparameters as published; the fields not here are TrainConfig's."""

    epochs: float = 10.0  # the published run's
    batch_size: int = 512  # images per step
    # The notebook's lr: 0.512 per 512 examples. Page's new_dawn.py uses 1.0 with output x1/16,
    # cifar10-fast-simple 1.024 with output x1/8.
    lr: Positive = 0.512 / 512  # per example: the loss is summed over the batch
    weight_decay: NonNegative = 5e-4  # per example, coupled to the lr: torch's 5e-4 * batch_size
    momentum: OpenFraction = 0.9  # Nesterov
    # Norm biases get 64x the lr and 1/64 the decay: x16 makes up for freezing the norm
    # scales at 1 instead of ~1/4, and 4x more helped again (Page).
    bias_lr_scale: Positive = 64.0
    # lr multiplier: 0 -> 1 over the first 20% of steps -> lr_floor at 80% (epoch 8 of 10),
    # then flat, so that the EMA averages a low-lr stretch (Page and Germer).
    lr_peak_at: Fraction = 0.2
    lr_floor_at: Fraction = 0.8  # of the run
    lr_floor: Fraction = 0.1  # of the peak lr
    label_smoothing: float = 0.2  # of each target's mass, spread over the other classes
    # EMA of the weights (and norm statistics) for evaluation: 0.99 per step, applied as
    # 0.99**5 ~= 0.95 every 5 steps (more often did not help), so it spans ~100 steps,
    # about the last epoch.
    ema_momentum: Fraction = 0.99
    ema_every: Count = 5  # steps between the EMA's updates
    # 3x3 patches: 27 filters, zero padding 1, no bias, and no negatives (airbench needs
    # them for its GELU; here a learned 1x1 conv follows, which can flip signs itself).
    whiten_kernel_size: Count = 3
    whiten_eps: Positive = 1e-2  # damps the low-variance, mostly noise, directions
    whiten_images: Count = 10000  # training images whose 3x3 patches set the filters (Page)
    widths: tuple[Count, ...] = (64, 128, 256, 512)  # prep (1x1 conv), layer1, layer2, layer3
    ghost_splits: Count = 16  # batch norm works best over ~32 examples: 512 / 16
    batchnorm_momentum: FractionBelowOne = 0.9  # weight on the old running statistics (torch's 0.1)
    batchnorm_eps: Positive = 1e-5  # added to the batch variance (torch's default)
    celu_alpha: Positive = 0.3  # with scales frozen at 1: Page's CELU(0.075) at scales 1/4
    output_scale: Positive = 0.125  # tempers the logits of the unnormalised linear head
    flip: str = "alternating"  # as the notebook does (Page and Germer flip at random)
    translate: int = 4  # reflect-pad 4, random 32x32 crop
    tta_level: int = 1  # mean logits of the image and its mirror

    def validate(self) -> None:
        super().validate()
        check_widths(self.widths, 4, "prep, layer1, layer2, layer3")
        if self.batch_size % self.ghost_splits:
            raise InputError(f"batch_size {self.batch_size} must be a multiple of "
                             f"ghost_splits {self.ghost_splits}")
        if self.lr_peak_at > self.lr_floor_at:  # the schedule's knots must come in order
            raise InputError(f"lr_peak_at ({self.lr_peak_at}) must not come after lr_floor_at "
                             f"({self.lr_floor_at})")

    def lr_schedule(self, total_steps: int) -> np.ndarray:
        return piecewise_linear(total_steps, [(0, 0.0), (self.lr_peak_at, 1.0),
                                              (self.lr_floor_at, self.lr_floor),
                                              (1, self.lr_floor)])


class BagOfTricks(Recipe):
    name = "bag_of_tricks"
    summary = "David Page's ResNet bag of tricks: whitening, ghost BN, CELU, EMA, flip TTA"
    target = Target(0.941, "94.1% in 10 epochs, 26 s on a V100")
    config = BagOfTricksConfig()

    def build_model(self, config: BagOfTricksConfig, num_classes: int) -> PageResNet:
        norm = partial(GhostBatchNorm, num_splits=config.ghost_splits,
                       momentum=config.batchnorm_momentum, eps=config.batchnorm_eps)
        return PageResNet(config.widths, num_classes, norm=norm,
                          activation=partial(nn.CELU, config.celu_alpha), pool="before_norm",
                          whiten_kernel_size=config.whiten_kernel_size,
                          output_scale=config.output_scale)

    def setup(self, model: PageResNet, config: BagOfTricksConfig, train_images,
              total_steps: int) -> Training:
        whitening_conv_init(model.whiten, random_images(train_images, config.whiten_images),
                            config.whiten_eps, with_negatives=False)

        weights, biases = weights_and_biases(model)  # the biases are the norms' shifts
        optimizer = per_example_sgd([(weights, 1.0), (biases, config.bias_lr_scale)],
                                    lr=config.lr, weight_decay=config.weight_decay,
                                    momentum=config.momentum, batch_size=config.batch_size)
        ema_decay = config.ema_momentum ** config.ema_every
        return Training(
            optimizers=[optimizer],
            lr_multipliers=config.lr_schedule(total_steps),
            loss=summed_cross_entropy(config.label_smoothing),
            average=WeightAverage(model, copy_back=False),  # starts from the initial weights
            average_every=config.ema_every,
            average_decay=lambda step: ema_decay,
        )
