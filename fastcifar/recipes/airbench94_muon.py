"""airbench94_muon: 94% on CIFAR-10 in 2.59 s on an A100 (Keller Jordan, cifar10-airbench).

airbench94's network with its conv filters trained by Muon (orthogonalised momentum, see
optim/muon.py) and everything else by Nesterov SGD: batch 2000 for 8 epochs, the lr
decaying linearly to 0, no lookahead: 8 epochs instead of 9.9 for the same 94%.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..models.airbench import AirbenchNet
from ..optim.muon import Muon
from ..optim.schedules import follow_own_schedule, piecewise_linear
from ..optim.sgd import sgd_with_decay
from ..optim.losses import summed_cross_entropy
from .airbench94 import AirbenchConfig, AirbenchRecipe
from .airbench94 import Airbench94
from .base import Target, Training
from .fields import NonNegative, NonNegativeInt, OpenFraction, Positive


@dataclass(frozen=True)
class Airbench94MuonConfig(AirbenchConfig):
    epochs: float = 8.0
    batch_size: int = 2000
    zero_whiten_bias: bool = False  # the reference keeps torch's random init
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
    # is summed over the batch. The whitening bias's lr decays to 0 over whiten_bias_epochs.
    bias_lr: Positive = 0.053  # torch's lr, per example: whitening bias and BatchNorm biases
    head_lr: Positive = 0.67  # torch's lr, per example: the linear head
    sgd_momentum: OpenFraction = 0.85  # Nesterov
    # Per example in the batch: each step removes batch_size x this fraction of every SGD
    # weight (times the lr multiplier). Muon's filters have none: their norm is fixed.
    weight_decay: NonNegative = 2e-6
    head_init_std: NonNegative = 1.0  # the head starts at unit std, and its logits are divided
    output_scale: float = 1 / 256  # by its fan-in (the last width): head_lr is tuned for this


class Airbench94Muon(AirbenchRecipe):
    name = "airbench94_muon"
    summary = "airbench94's net trained by Muon (conv filters) and Nesterov SGD, 8 epochs"
    target = Target(0.9401, "94.01% mean, 2.59 s on an A100", pflops=0.29)
    config = Airbench94MuonConfig()
    tricks = tuple(t for t in Airbench94.tricks if t.name in (
        "whitening", "identity_init", "label_smoothing", "translate", "alternating_flip", "tta"))

    def build_model(self, config: Airbench94MuonConfig, num_classes: int) -> AirbenchNet:
        model = super().build_model(config, num_classes)
        with torch.no_grad():
            model.head.weight.mul_(config.head_init_std / model.head.weight.std())
        return model

    def setup(self, model: AirbenchNet, config: Airbench94MuonConfig, train_images,
              total_steps: int) -> Training:
        self.init_whitening(model, config, train_images)

        filters = [p for p in model.parameters() if p.dim() == 4 and p.requires_grad]
        whiten_bias, head = model.whiten.bias, model.head.weight
        taken = {id(p) for p in (*filters, whiten_bias, head)}
        biases = [p for p in model.parameters() if p.requires_grad and id(p) not in taken]
        sgd = sgd_with_decay([([whiten_bias], config.bias_lr), (biases, config.bias_lr),
                              ([head], config.head_lr)],
                             decay_per_step=config.weight_decay * config.batch_size,
                             momentum=config.sgd_momentum)
        # The loop gives every group the same multipliers; this one group has its own.
        follow_own_schedule(sgd.param_groups[0],
                            piecewise_linear(self.whiten_bias_steps(config, total_steps),
                                             [(0, 1.0), (1, 0.0)]))
        return Training(
            optimizers=[sgd, self.muon(filters, config, total_steps)],
            lr_multipliers=self.lr_multipliers(config, total_steps),
            loss=summed_cross_entropy(config.label_smoothing),
            before_epoch=self.freeze_whitening_bias(model, config),
        )

    # The parts the frontier recipes (hiverge94, fable94_*) change.

    def whiten_bias_steps(self, config: Airbench94MuonConfig, total_steps: int) -> int:
        """The steps over which the whitening bias's lr decays to 0."""
        return round(total_steps * config.whiten_bias_epochs / config.epochs)

    def muon(self, filters, config: Airbench94MuonConfig, total_steps: int) -> Muon:
        return Muon(filters, lr=config.muon_lr, momentum=config.muon_momentum,
                    ns_steps=config.newton_schulz_steps,
                    one_chain=config.newton_schulz_one_chain)

    def lr_multipliers(self, config: Airbench94MuonConfig, total_steps: int):
        return piecewise_linear(total_steps, [(0, 1.0), (1, 0.0)])
