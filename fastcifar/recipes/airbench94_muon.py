"""airbench94_muon: 94% on CIFAR-10 in 2.59 s on an A100 (Keller Jordan, cifar10-airbench).

airbench94's network with its conv filters trained by Muon (orthogonalised momentum, see
optim/muon.py) and everything else by Nesterov SGD: batch 2000 for 8 epochs, the lr
decaying linearly to 0, no lookahead: 8 epochs instead of 9.9 for the same 94%.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..models.airbench import (AirbenchNet, airbench_net, freeze_whitening_bias,
                               init_whitening, set_head_std)
from ..optim.losses import summed_cross_entropy
from ..optim.muon import Muon, conv_filters, sgd_beside_muon
from ..optim.schedules import piecewise_linear
from .airbench_family import airbench_tricks, check_airbench_net
from .base import Recipe, Target, Training, TrainConfig
from .fields import (Count, FractionBelowOne, NonNegative, NonNegativeInt, OpenFraction,
                     Positive)


@dataclass(frozen=True)
class Airbench94MuonConfig(TrainConfig):
    """airbench94_muon's hyperparameters as published; the fields not here are TrainConfig's."""

    epochs: float = 8.0  # 200 steps of 2000: Muon's larger steps need fewer than 9.9
    batch_size: int = 2000  # images per step
    label_smoothing: float = 0.2  # of each target's mass, spread over the other classes
    flip: str = "alternating"  # none | random | alternating: each image mirrored every other epoch
    translate: int = 2  # pixels of random translation (reflect pad + crop)
    tta_level: int = 2  # the image, its mirror and their 1-pixel shifts, at test time
    widths: tuple[Count, ...] = (64, 256, 256)  # channels of the three conv groups
    convs_per_group: Count = 2  # each group: conv, pool, norm, GELU, then conv, norm, GELU
    residual: bool = False  # add each group's first activation to its last conv's output
    batchnorm: bool = True  # False: no BatchNorm, biases on the convs instead
    # Weight kept on the old running statistics (torch's momentum is 1 - this): below 1,
    # or they would never leave their start.
    batchnorm_momentum: FractionBelowOne = 0.6
    activation: str = "gelu"  # in the conv groups: gelu, or silu as hiverge and Fable have it
    head_init_std: NonNegative = 1.0  # the head's std at the start (its random init rescaled)
    # The logits divided by the head's fan-in (the last width): head_lr is tuned for this.
    output_scale: Positive = 1 / 256
    # The 3x3 convs' first in-channels filters start as the identity (dirac), so each layer
    # begins by passing its input on; False: torch's random start (the ablation of it).
    identity_init: bool = True
    # False: the first conv is an ordinary one, randomly initialised and trained (the
    # ablation of patch whitening; its width and the rest of the net are unchanged)
    whiten: bool = True
    whiten_images: Count = 5000  # training images whose patches set the whitening filters
    whiten_eps: Positive = 5e-4  # added to the patch variances it divides by
    zero_whiten_bias: bool = False  # the reference keeps torch's random init
    # The whitening bias trains this long (its lr decaying to 0 over these epochs), then
    # freezes.
    whiten_bias_epochs: NonNegativeInt = 3
    muon_lr: Positive = 0.24  # per step, for an update of fixed size (see optim/muon.py)
    muon_momentum: OpenFraction = 0.6  # Nesterov
    # Enough: the update's singular values need only be near 1 (0: the momentum direction
    # only normalised).
    newton_schulz_steps: NonNegativeInt = 3
    # One Newton-Schulz chain for every filter, zero-padded to the largest shape (hiverge's
    # and E5's way: fewer kernel launches, the same update), or one per filter shape (the
    # original runs one per filter).
    newton_schulz_one_chain: bool = False
    # Torch SGD lrs as published (not airbench94's decoupled form), per example: the loss
    # is summed over the batch.
    bias_lr: Positive = 0.053  # torch's lr, per example: whitening bias and BatchNorm biases
    head_lr: Positive = 0.67  # torch's lr, per example: the linear head
    sgd_momentum: OpenFraction = 0.85  # Nesterov
    # Per example in the batch: each step removes batch_size x this fraction of every SGD
    # weight (times the lr multiplier). Muon's filters have none: their norm is fixed.
    weight_decay: NonNegative = 2e-6

    def validate(self) -> None:
        super().validate()
        check_airbench_net(self)


class Airbench94Muon(Recipe):
    name = "airbench94_muon"
    summary = "airbench94's net trained by Muon (conv filters) and Nesterov SGD, 8 epochs"
    target = Target(0.9401, "94.01% mean, 2.59 s on an A100", pflops=0.29)
    config = Airbench94MuonConfig()
    tricks = airbench_tricks("whitening", "identity_init", "label_smoothing", "translate",
                             "alternating_flip", "tta")

    def build_model(self, config: Airbench94MuonConfig, num_classes: int) -> AirbenchNet:
        model = airbench_net(config, num_classes)
        set_head_std(model, config.head_init_std)
        return model

    def setup(self, model: AirbenchNet, config: Airbench94MuonConfig, train_images,
              total_steps: int) -> Training:
        init_whitening(model, config, train_images)
        whiten_bias_steps = round(total_steps * config.whiten_bias_epochs / config.epochs)
        muon = Muon(conv_filters(model), lr=config.muon_lr, momentum=config.muon_momentum,
                    ns_steps=config.newton_schulz_steps,
                    one_chain=config.newton_schulz_one_chain)
        return Training(
            optimizers=[sgd_beside_muon(model, config, whiten_bias_steps), muon],
            lr_multipliers=piecewise_linear(total_steps, [(0, 1.0), (1, 0.0)]),
            loss=summed_cross_entropy(config.label_smoothing),
            before_epoch=freeze_whitening_bias(model, config.whiten_bias_epochs),
        )
