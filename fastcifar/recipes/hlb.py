"""hlb: tysam's hlb-CIFAR10 v0.7, about 94% on CIFAR-10 in 6.3 s on an A100.

airbench's predecessor: the same whitened VGG-like net, wider (64/256/512) and ending in a
global max, with a dirac "implicit residual" init; one-cycle Nesterov SGD, label smoothing,
cutmix in the last epochs, and an EMA of the weights over the last 10 epochs that is
copied back into the net at every update.

hlb_state_sketch: tysam's "network sketch" on hlb-CIFAR10, about 93.11% in hlb's number of
steps at about 1.7x its run time. No gradient crosses a conv group's boundary except
through learned predictions: each group hands on its output detached plus Gaussian noise of
the output's std (a simulated discrete, non-differentiable action), added to a prediction
of that output made one group earlier (models/hlb.py, HlbStateSketchNet). There is no
separate loss on the predictions: they learn only from the classification loss that
reaches them through the hand-off. Otherwise hlb's recipe, with the sketch's values where
they differ.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import floor

import torch.nn.functional as F

from ..data.augment import cutmix
from ..errors import InputError
from ..models.hlb import HlbNet, HlbStateSketchNet
from ..models.whitening import whitening_conv_init
from ..optim.averaging import WeightAverage, lookahead_decay
from ..optim.schedules import linear_one_cycle
from ..optim.sgd import per_example_sgd, weights_and_biases
from ..optim.losses import summed_cross_entropy
from .base import Recipe, Target, Training, TrainConfig
from .fields import (Count, Fraction, FractionBelowOne, NonNegative, NonNegativeInt,
                     OpenFraction, Positive)


@dataclass(frozen=True)
class HlbConfig(TrainConfig):
    """hlb's hyperparameters as published; the fields not here are TrainConfig's."""

    epochs: float = 12.1  # hlb's: the last epoch a tenth long
    batch_size: int = 1024  # images per step
    widths: tuple[Count, ...] = (64, 256, 512)  # channels of the three conv groups
    # Weight kept on the old running statistics: hlb passes torch's momentum 0.4.
    batchnorm_momentum: FractionBelowOne = 0.6
    output_scale: Positive = 1 / 9  # the linear head's temperature
    # Each group's first conv starts as this x its random init + identity, rescaled back.
    residual_random_scale: NonNegative = 1.0
    whiten_eps: Positive = 1e-2  # added to the patch variances it divides by
    # The whitening statistics cover every training image, summed 5,000 images at a time.
    whiten_chunk: Count = 5000
    # Torch's lr of the weights, hlb's 1.525/512: the loss is a sum over a batch rescaled
    # to 512 examples (loss_examples), so this is per example.
    lr: Positive = 1.525 / 512
    bias_lr_scale: Positive = 64.0  # BatchNorm biases learn 64x faster, with 1/64 the decay
    # Per example and coupled to the lr: torch's weight_decay is this x batch_size (x1/64 for
    # the biases), so every parameter loses lr * 6.687e-4 * batch_size of itself per step.
    weight_decay: NonNegative = 6.687e-4
    momentum: OpenFraction = 0.85  # Nesterov
    # One-cycle (OneCycleLR, linear): lr multiplier from ~0 (max / 1e16) up to 1 at 23% of
    # the steps, then down to 0.07 at the end ("actually pretty important", says hlb).
    # OneCycleLR puts these knots one step earlier (0.23 * steps - 1, steps - 1).
    lr_peak_at: Fraction = 0.23
    lr_end: Fraction = 0.07  # of the peak lr
    label_smoothing: float = 0.2  # of each target's mass, spread over the other classes
    # The summed loss is scaled by loss_examples / batch_size (hlb's loss_batchsize_scaler).
    # hlb also multiplies by 1/32 inside the sum and divides by 32 after it, a guard against
    # float16 overflow; powers of two cancel exactly, so that part is left out.
    loss_examples: Count = 512
    # Cutmix in the epochs from epochs - cutmix_epochs on (epoch indices 7-12 of 0-12):
    # a 3x3 square pasted from another image, its label mixed in by area (9/1024).
    cutmix_size: NonNegativeInt = 3  # 0: no cutmix
    cutmix_epochs: NonNegative = 6.0  # the last epochs, which train with cutmix
    # EMA from the start of whole epoch floor(epochs) - ema_epochs (epoch index 2 of 0-12:
    # it also covers the fractional last epoch), every ema_every steps with decay
    # ema_base**ema_every * (step / steps)**ema_power, copied back into the net each time.
    ema_epochs: NonNegativeInt = 10
    ema_every: Count = 5  # steps between the EMA's updates
    ema_base: Fraction = 0.95  # so that every decay is in [0, 1]
    ema_power: NonNegative = 3.0  # the decay's growth over the run
    flip: str = "random"  # hlb mirrors a fresh random half every epoch
    translate: int = 2  # reflect-pad 2, random 32x32 crop
    tta_level: int = 1  # mean logits of the image and its mirror

    def validate(self) -> None:
        super().validate()
        if not self.widths:
            raise InputError("widths must give one width per conv group, got none")

    def ema_decay(self, step: int, total_steps: int) -> float:
        """The EMA's decay at step (the loop's count, after the step). 0 until the EMA
        starts: the average just takes the weights, as hlb's first snapshot does."""
        per_epoch = int(total_steps / self.epochs + 1e-9)  # TrainConfig.steps inverted
        start = max(floor(self.epochs) - self.ema_epochs, 0) * per_epoch
        if step - self.ema_every <= start:
            return 0.0
        return lookahead_decay(step, total_steps, self.ema_every, self.ema_base, self.ema_power)


class Hlb(Recipe):
    name = "hlb"
    summary = "tysam's hlb-CIFAR10 v0.7: whitening, dirac init, one-cycle, cutmix, EMA"
    target = Target(0.94, "about 94%, 6.3 s on an A100")
    config = HlbConfig()

    def build_model(self, config: HlbConfig, num_classes: int) -> HlbNet:
        return HlbNet(config.widths, num_classes, config.batchnorm_momentum,
                      config.output_scale, residual_random_scale=config.residual_random_scale)

    def setup(self, model: HlbNet, config: HlbConfig, train_images,
              total_steps: int) -> Training:
        whitening_conv_init(model.whiten, train_images, config.whiten_eps,
                            chunk_size=config.whiten_chunk)

        weights, biases = weights_and_biases(model)
        optimizer = per_example_sgd([(weights, 1.0), (biases, config.bias_lr_scale)],
                                    lr=config.lr, weight_decay=config.weight_decay,
                                    momentum=config.momentum, batch_size=config.batch_size)
        num_classes = model.head.out_features

        def cutmix_late(inputs, labels, epoch):
            if config.cutmix_size == 0 or epoch < config.epochs - config.cutmix_epochs:
                return inputs, labels
            targets = F.one_hot(labels, num_classes).to(inputs.dtype)
            return cutmix(inputs, targets, config.cutmix_size)

        return Training(
            optimizers=[optimizer],
            lr_multipliers=linear_one_cycle(total_steps, 0.0, config.lr_peak_at, config.lr_end),
            loss=summed_cross_entropy(config.label_smoothing,
                                      scale=config.loss_examples / config.batch_size),
            loss_scale=config.loss_examples / config.batch_size,
            average=WeightAverage(model, copy_back=True, name="EMA (copied back)"),
            average_every=config.ema_every,
            average_decay=lambda step: config.ema_decay(step, total_steps),
            batch_transform=cutmix_late,
        )


@dataclass(frozen=True)
class HlbStateSketchConfig(HlbConfig):
    """hlb_state_sketch's hyperparameters: hlb's but these."""

    output_scale: float = 1 / 12  # the sketch's temperature (hlb: 1/9)
    label_smoothing: float = 0.1  # the sketch's (hlb: 0.2)
    cutmix_size: int = 0  # the sketch turns cutmix off
    # The sketch scales the random part of the residual init (groups' first convs and the
    # widening predictors) by 0.1 before adding the identity.
    residual_random_scale: float = 0.1
    noise_scale: NonNegative = 1.0  # the hand-off noise's std, in units of the output's std


class HlbStateSketch(Hlb):
    name = "hlb_state_sketch"
    summary = "tysam's sketch: hlb whose groups pass on detached noisy outputs plus predictions"
    target = Target(0.9311, "about 93.11% in hlb's number of steps, about 1.7x hlb's run time")
    config = HlbStateSketchConfig()

    def build_model(self, config: HlbStateSketchConfig, num_classes: int) -> HlbStateSketchNet:
        return HlbStateSketchNet(config.widths, num_classes, config.batchnorm_momentum,
                                 config.output_scale,
                                 residual_random_scale=config.residual_random_scale,
                                 noise_scale=config.noise_scale)
