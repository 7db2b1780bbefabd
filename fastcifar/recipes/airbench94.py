"""airbench94: 94% on CIFAR-10 in 3.83 s on an A100 (Keller Jordan, arXiv 2404.00498).

A small VGG-like net with a patch-whitening first layer, trained for 9.9 epochs by Nesterov
SGD with lookahead, alternating flip and test-time augmentation. AirbenchConfig and
AirbenchRecipe (the net, its whitening init, the data pipeline) are shared by every recipe
on AirbenchNet; the others change a few values or the optimiser.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from torch import nn

from ..errors import InputError
from ..models.airbench import ACTIVATIONS, AirbenchNet
from ..models.layers import BatchNorm
from ..models.whitening import random_images, whitening_conv_init
from ..optim.averaging import WeightAverage, lookahead_decay
from ..optim.schedules import piecewise_linear
from ..optim.sgd import decoupled_sgd
from ..optim.losses import summed_cross_entropy
from .base import Recipe, Target, Training, TrainConfig, Trick, check_widths
from .fields import (Count, Fraction, FractionBelowOne, NonNegative, NonNegativeInt,
                     OpenFraction, Positive)


@dataclass(frozen=True)
class AirbenchConfig(TrainConfig):
    """The network, its whitening init and the data pipeline every airbench recipe shares;
    the defaults are airbench94's."""

    batch_size: int = 1024
    label_smoothing: float = 0.2
    whiten_bias_epochs: NonNegativeInt = 3  # the whitening bias trains this long, then freezes
    whiten_images: Count = 5000  # training images whose patches set the whitening filters
    whiten_eps: Positive = 5e-4  # added to the patch variances it divides by
    # False: the first conv is an ordinary one, randomly initialised and trained (the
    # ablation of patch whitening; its width and the rest of the net are unchanged)
    whiten: bool = True
    # The whitening bias starts at 0, as airbench94's reference has it; False keeps torch's
    # random default (uniform within +-1/sqrt(12)), as airbench94_muon's reference has it.
    zero_whiten_bias: bool = True
    # The 3x3 convs' first in-channels filters start as the identity (dirac), so each layer
    # begins by passing its input on; False: torch's random start (the ablation of it).
    identity_init: bool = True
    widths: tuple[Count, ...] = (64, 256, 256)
    convs_per_group: Count = 2
    residual: bool = False  # add each group's first activation to its last conv's output
    batchnorm: bool = True  # False: no BatchNorm, biases on the convs instead
    # Weight kept on the old running statistics (torch's momentum is 1 - this): below 1,
    # or they would never leave their start.
    batchnorm_momentum: FractionBelowOne = 0.6
    activation: str = "gelu"  # in the conv groups: gelu, or silu as hiverge and Fable have it
    output_scale: Positive = 1 / 9  # the logits' temperature
    flip: str = "alternating"
    translate: int = 2
    tta_level: int = 2

    def validate(self) -> None:
        super().validate()
        # three 2x2 pools take the whitened 31x31 map to the 3x3 the final max pool expects
        check_widths(self.widths, 3, "the three conv groups")
        if self.activation not in ACTIVATIONS:
            raise InputError(f"activation must be one of {', '.join(ACTIVATIONS)}, "
                             f"got {self.activation!r}")
        if self.residual and self.convs_per_group < 2:
            raise InputError(f"convs_per_group must be at least 2 with residual=True (the "
                             f"first conv's output is added to the last's), got "
                             f"{self.convs_per_group}")


@dataclass(frozen=True)
class Airbench94Config(AirbenchConfig):
    epochs: float = 9.9
    lr: Positive = 11.5  # per 1024 examples, independent of momentum (see optim/sgd.py)
    momentum: OpenFraction = 0.85  # Nesterov
    weight_decay: NonNegative = 0.0153  # per 1024 examples, independent of lr
    bias_lr_scale: Positive = 64.0  # BatchNorm biases learn 64x faster (their decay is unchanged)
    lr_start: Fraction = 0.2  # lr multiplier: 0.2 -> 1.0 over the first 23% of steps -> 0.07
    lr_peak_at: Fraction = 0.23  # of the run
    lr_end: Fraction = 0.07  # of the peak lr
    # Lookahead: every lookahead_every steps the weights and their average move to
    # decay * average + (1 - decay) * weights, with decay lookahead_base**lookahead_every *
    # (step / steps)**lookahead_power: it follows the weights early on and holds them later.
    lookahead_every: NonNegativeInt = 5  # 0: no lookahead
    lookahead_base: Fraction = 0.95  # so that every decay is in [0, 1]
    lookahead_power: NonNegative = 3.0


class AirbenchRecipe(Recipe):
    """Builds AirbenchNet from an AirbenchConfig and initialises its whitening layer."""

    def build_model(self, config: AirbenchConfig, num_classes: int) -> AirbenchNet:
        model = AirbenchNet(config.widths, num_classes, config.batchnorm_momentum,
                            config.output_scale, convs_per_group=config.convs_per_group,
                            residual=config.residual, batchnorm=config.batchnorm,
                            activation=config.activation, identity_init=config.identity_init)
        if config.zero_whiten_bias:
            nn.init.zeros_(model.whiten.bias)
        return model

    @staticmethod
    def init_whitening(model: AirbenchNet, config: AirbenchConfig, train_images) -> None:
        if not config.whiten:  # a plain first conv: trained from its random start
            model.whiten.weight.requires_grad = True
            return
        whitening_conv_init(model.whiten, random_images(train_images, config.whiten_images),
                            config.whiten_eps)

    @staticmethod
    def freeze_whitening_bias(model: AirbenchNet, config: AirbenchConfig):
        """A before_epoch hook: the whitening bias trains for the first epochs only."""
        def before_epoch(epoch: int) -> None:
            model.whiten.bias.requires_grad = epoch < config.whiten_bias_epochs

        return before_epoch


class Airbench94(AirbenchRecipe):
    name = "airbench94"
    summary = "Keller Jordan's airbench94: whitening conv, lookahead, alternating flip, TTA"
    target = Target(0.9401, "94.01% mean, 3.83 s on an A100", pflops=0.36)
    config = Airbench94Config()
    tricks = (
        Trick("whitening", "the first conv's filters whiten 2x2 patches, fixed", {"whiten": False}),
        Trick("identity_init", "the 3x3 convs start as identity maps plus noise (dirac init)",
              {"identity_init": False}),
        Trick("whiten_bias_freeze", "the whitening bias trains its first epochs, then freezes",
              {"whiten_bias_epochs": 1000}),
        Trick("bias_lr", "BatchNorm biases learn 64x faster", {"bias_lr_scale": 1.0}),
        Trick("label_smoothing", "label smoothing", {"label_smoothing": 0.0}),
        Trick("translate", "random translation (crops of the reflect-padded image)",
              {"translate": 0}),
        Trick("alternating_flip", "each image flipped every other epoch, not at random",
              {"flip": "random"}),
        Trick("lookahead", "lookahead: the weights pulled to their running average",
              {"lookahead_every": 0}),
        Trick("tta", "test-time augmentation: mirror and 1-pixel shifts", {"tta_level": 0}),
    )

    def setup(self, model: AirbenchNet, config: Airbench94Config, train_images,
              total_steps: int) -> Training:
        self.init_whitening(model, config, train_images)
        return Training(
            optimizers=[self.sgd(model, config)],
            lr_multipliers=self.lr_schedule(config, total_steps),
            loss=summed_cross_entropy(config.label_smoothing),
            average=WeightAverage(model, copy_back=True) if config.lookahead_every else None,
            average_every=config.lookahead_every,
            average_decay=partial(lookahead_decay, total_steps=total_steps,
                                  every=config.lookahead_every, base=config.lookahead_base,
                                  power=config.lookahead_power),
            before_epoch=self.freeze_whitening_bias(model, config),
        )

    @staticmethod
    def sgd(model: AirbenchNet, config: Airbench94Config):
        """Nesterov SGD with decoupled hyperparameters over the parameters that train, the
        BatchNorm biases at bias_lr_scale times the lr."""
        norm_biases = [p for m in model.modules() if isinstance(m, BatchNorm)
                       for p in m.parameters() if p.requires_grad]
        norm_ids = {id(p) for p in norm_biases}
        others = [p for p in model.parameters() if p.requires_grad and id(p) not in norm_ids]
        return decoupled_sgd([(norm_biases, config.bias_lr_scale), (others, 1.0)],
                             lr=config.lr, weight_decay=config.weight_decay,
                             momentum=config.momentum, batch_size=config.batch_size)

    @staticmethod
    def lr_schedule(config: Airbench94Config, total_steps: int):
        """The lr multiplier per step: lr_start up to 1 at lr_peak_at, then down to lr_end."""
        return piecewise_linear(total_steps, [(0, config.lr_start), (config.lr_peak_at, 1.0),
                                              (1, config.lr_end)])
