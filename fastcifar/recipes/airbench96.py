"""airbench96: 96% on CIFAR-10 in 34.7 s on an A100 (Keller Jordan, arXiv 2404.00498).

airbench94 with three convs per group and a residual over the last two, wider
(128/384/512), stronger augmentation (12-pixel cutout, 4-pixel translation) and 37 epochs;
the same lookahead, alternating flip, label smoothing and TTA.

airbench96_faster: the same network, 45 epochs, each batch of 1024 cut to the 512 a small
proxy network finds hardest (optim/selection.py): 96.00% in 27.3 s, 3.1 PFLOPs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..errors import InputError
from ..models.airbench import AirbenchNet, airbench_net, freeze_whitening_bias, init_whitening
from ..models.layers import place_model
from ..models.whitening import random_images
from ..optim.averaging import lookahead
from ..optim.losses import summed_cross_entropy
from ..optim.schedules import linear_one_cycle
from ..optim.selection import ProxySelection, per_example_cross_entropy
from ..optim.sgd import airbench_sgd
from .airbench_family import airbench_tricks, check_airbench_net
from .base import Recipe, Target, Training, TrainConfig, check_widths
from .fields import (Count, Fraction, FractionBelowOne, NonNegative, NonNegativeInt,
                     OpenFraction, Positive)


@dataclass(frozen=True)
class Airbench96Config(TrainConfig):
    """airbench96's hyperparameters as published; the fields not here are TrainConfig's."""

    epochs: float = 37.0  # the published run's: 96.03% on average
    batch_size: int = 1024  # images per step
    label_smoothing: float = 0.2  # of each target's mass, spread over the other classes
    flip: str = "alternating"  # none | random | alternating: each image mirrored every other epoch
    translate: int = 4  # pixels of random translation (reflect pad + crop)
    cutout: int = 12  # pixels: the side of the zeroed square
    tta_level: int = 2  # the image, its mirror and their 1-pixel shifts, at test time
    widths: tuple[Count, ...] = (128, 384, 512)  # channels of the three conv groups
    convs_per_group: Count = 3  # each group: conv, pool, norm, GELU, then twice conv, norm, GELU
    residual: bool = True  # each group adds its first activation back after convs 2 and 3
    batchnorm: bool = True  # False: no BatchNorm, biases on the convs instead
    # Weight kept on the old running statistics (torch's momentum is 1 - this): the
    # reference keeps PyTorch's default (torch momentum 0.1).
    batchnorm_momentum: FractionBelowOne = 0.9
    activation: str = "gelu"  # in the conv groups: gelu, or silu as hiverge and Fable have it
    output_scale: Positive = 1 / 9  # the logits' temperature
    # The 3x3 convs' first in-channels filters start as the identity (dirac), so each layer
    # begins by passing its input on; False: torch's random start (the ablation of it).
    identity_init: bool = True
    # False: the first conv is an ordinary one, randomly initialised and trained (the
    # ablation of patch whitening; its width and the rest of the net are unchanged)
    whiten: bool = True
    whiten_images: Count = 5000  # training images whose patches set the whitening filters
    whiten_eps: Positive = 5e-4  # added to the patch variances it divides by
    zero_whiten_bias: bool = True  # the whitening bias starts at 0, as the reference's
    whiten_bias_epochs: NonNegativeInt = 3  # the whitening bias trains this long, then freezes
    lr: Positive = 9.0  # per 1024 examples, independent of momentum (see optim/sgd.py)
    momentum: OpenFraction = 0.85  # Nesterov
    weight_decay: NonNegative = 0.012  # per 1024 examples, independent of lr
    bias_lr_scale: Positive = 64.0  # BatchNorm biases learn 64x faster (their decay is unchanged)
    lr_start: Fraction = 0.2  # lr multiplier: 0.2 -> 1.0 over the first 10% of steps -> 0
    lr_peak_at: Fraction = 0.1  # of the run: a shorter warm-up than airbench94's 23% ...
    lr_end: Fraction = 0.0  # ... and a decay all the way to 0
    # Lookahead: every lookahead_every steps the weights and their average move to
    # decay * average + (1 - decay) * weights, with decay lookahead_base**lookahead_every *
    # (step / steps)**lookahead_power: it follows the weights early on and holds them later.
    lookahead_every: NonNegativeInt = 5  # 0: no lookahead
    lookahead_base: Fraction = 0.95  # so that every decay is in [0, 1]
    lookahead_power: NonNegative = 3.0  # the decay's growth over the run

    def validate(self) -> None:
        super().validate()
        check_airbench_net(self)


class Airbench96(Recipe):
    name = "airbench96"
    summary = "airbench94 with 3 convs and a residual per group, 128/384/512, cutout, 37 epochs"
    target = Target(0.9603, "96.03% mean, 34.7 s on an A100", pflops=4.9)
    config = Airbench96Config()
    tricks = airbench_tricks("whitening", "identity_init", "whiten_bias_freeze", "bias_lr",
                             "label_smoothing", "translate", "alternating_flip", "lookahead",
                             "tta", "cutout")

    def build_model(self, config: Airbench96Config, num_classes: int) -> AirbenchNet:
        return airbench_net(config, num_classes)

    def setup(self, model: AirbenchNet, config: Airbench96Config, train_images,
              total_steps: int) -> Training:
        init_whitening(model, config, train_images)
        return Training(
            optimizers=[airbench_sgd(model, config)],
            lr_multipliers=linear_one_cycle(total_steps, config.lr_start, config.lr_peak_at,
                                            config.lr_end),
            loss=summed_cross_entropy(config.label_smoothing),
            before_epoch=freeze_whitening_bias(model, config.whiten_bias_epochs),
            **lookahead(model, total_steps, config.lookahead_every, config.lookahead_base,
                        config.lookahead_power),
        )


@dataclass(frozen=True)
class Airbench96FasterConfig(Airbench96Config):
    """airbench96's hyperparameters but these: a longer run on half of each batch, and the
    proxy that chooses the half."""

    epochs: float = 45.0  # of 1024-image batches, each trained on its hardest 512
    # The original's freeze compares an epoch number with a step count (3 x 48 steps) and
    # never fires, so its whitening bias trains the whole run: 45 keeps that.
    whiten_bias_epochs: int = 45
    select_keep: Count = 512  # the examples of each batch the network trains on: the hardest
    proxy_widths: tuple[Count, ...] = (32, 64, 64)  # the proxy that finds them
    proxy_convs_per_group: Count = 2  # and no residual
    proxy_train_every: Count = 4  # the proxy scores every batch and trains on every 4th

    def validate(self) -> None:
        super().validate()
        check_widths(self.proxy_widths, 3, "the proxy's three conv groups")
        if self.select_keep > self.batch_size:
            raise InputError(f"select_keep must be from 1 to batch_size ({self.batch_size}), "
                             f"got {self.select_keep}")


class Airbench96Faster(Airbench96):
    """airbench96 on the hardest half of every batch, as a small proxy net judges it."""

    name = "airbench96_faster"
    summary = ("airbench96 trained on the hardest 512 of each 1024 batch, chosen by a small "
               "proxy net; 45 epochs")
    target = Target(0.9600, "96.00% mean, 27.3 s on an A100", pflops=3.1)
    config = Airbench96FasterConfig()
    tricks = Airbench96.tricks + airbench_tricks("proxy_selection")

    def setup(self, model: AirbenchNet, config: Airbench96FasterConfig, train_images,
              total_steps: int) -> Training:
        # The proxy is whitened from the same images as the network (the original's first
        # 5,000 for both); its whitening bias stays at zero.
        images = random_images(train_images, config.whiten_images)
        training = super().setup(model, config, images, total_steps)
        proxy_config = dataclasses.replace(config, widths=config.proxy_widths,
                                           convs_per_group=config.proxy_convs_per_group,
                                           residual=False)
        weight = model.whiten.weight
        proxy = place_model(airbench_net(proxy_config, model.head.out_features),
                            weight.device, weight.dtype)
        proxy.whiten.bias.requires_grad = False
        init_whitening(proxy, config, images)
        training.select = ProxySelection(
            proxy, airbench_sgd(proxy, config),
            linear_one_cycle(total_steps, config.lr_start, config.lr_peak_at, config.lr_end),
            per_example_cross_entropy(config.label_smoothing), config.select_keep,
            config.proxy_train_every)
        return training
