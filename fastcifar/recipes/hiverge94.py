"""hiverge94: hiverge's CIFAR-10 record, 94.01% in 2.015 s on an A100 (hiverge/cifar10-speedrun).

airbench94_muon, retuned: batch 1536 for 7.59 epochs (243 steps), SiLU in the conv groups,
a brightness and contrast jitter, Muon with retuned Newton-Schulz coefficients whose
weights are renormalised at 37 scheduled steps instead of every step, with decoupled
weight decay; the whitening from 960 images and its bias trained for 7 steps only; and
test-time augmentation for the quarter of the test images the net is least sure of (level
3: six views weighted alike), the rest classified from one view.

Differences from the original, each a choice: the whitening images are drawn at random,
not the first 960 (fastcifar's rule, for folders sorted by class); the whitening bias
keeps receiving a gradient after its lr reaches 0 until the epoch ends (the original
detaches it: the same weights, a little more work); BatchNorm stays float32 on a GPU
(the original halves it). tests/test_frontier_*.py check each block against the
original's own functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import ceil

from ..models.airbench import (AirbenchNet, airbench_net, freeze_whitening_bias,
                               init_whitening, set_head_std)
from ..optim.losses import summed_cross_entropy
from ..optim.muon import conv_filters, frontier_muon, sgd_beside_muon
from ..optim.schedules import piecewise_linear
from .airbench_family import airbench_tricks, check_airbench_net
from .base import Recipe, Target, Training, TrainConfig
from .fields import (Count, FractionBelowOne, NonNegative, NonNegativeInt, OpenFraction,
                     Positive)


@dataclass(frozen=True)
class Hiverge94Config(TrainConfig):
    """hiverge94's hyperparameters as published; the fields not here are TrainConfig's."""

    epochs: float = 7.59  # ceil(7.59 x 32) = 243 steps, the last epoch 19 of 32
    batch_size: int = 1536  # images per step
    label_smoothing: float = 0.09  # of each target's mass, spread over the other classes
    flip: str = "alternating"  # none | random | alternating: each image mirrored every other epoch
    translate: int = 2  # pixels of random translation (reflect pad + crop)
    brightness: float = 0.1399  # colour jitter, in standard deviations (normalised units)
    contrast: float = 0.1308  # colour jitter's scale range
    tta_level: int = 3  # the six views of level 2, weighted alike ...
    tta_fraction: float = 0.25  # ... for the least confident quarter of the test images
    widths: tuple[Count, ...] = (64, 256, 256)  # channels of the three conv groups
    convs_per_group: Count = 2  # each group: conv, pool, norm, SiLU, then conv, norm, SiLU
    residual: bool = False  # add each group's first activation to its last conv's output
    batchnorm: bool = True  # False: no BatchNorm, biases on the convs instead
    # Weight kept on the old running statistics (torch's momentum is 1 - this): below 1,
    # or they would never leave their start.
    batchnorm_momentum: FractionBelowOne = 0.5566
    activation: str = "silu"  # in the conv groups; GELU after the whitening conv
    head_init_std: NonNegative = 1.0  # the head's std at the start (its random init rescaled)
    # The logits divided by the head's fan-in (the last width): head_lr is tuned for this.
    output_scale: Positive = 1 / 256
    # The 3x3 convs' first in-channels filters start as the identity (dirac), so each layer
    # begins by passing its input on; False: torch's random start (the ablation of it).
    identity_init: bool = True
    # False: the first conv is an ordinary one, randomly initialised and trained (the
    # ablation of patch whitening; its width and the rest of the net are unchanged)
    whiten: bool = True
    whiten_images: Count = 960  # training images whose patches set the whitening filters
    whiten_eps: Positive = 5e-4  # added to the patch variances it divides by
    zero_whiten_bias: bool = False  # the reference keeps torch's random init
    # Fractional: the bias's lr decays to 0 over ceil(0.19 x 32) = 7 steps, then it freezes.
    whiten_bias_epochs: NonNegative = 0.19
    muon_lr: Positive = 0.205  # per step, for an update of fixed size (see optim/muon.py)
    muon_momentum: OpenFraction = 0.655  # Nesterov
    # Enough: the update's singular values need only be near 1 (0: the momentum direction
    # only normalised).
    newton_schulz_steps: NonNegativeInt = 3
    # As the original: every filter zero-padded to the largest shape, one Newton-Schulz
    # chain (fewer kernel launches, the same update); False: one chain per filter shape.
    newton_schulz_one_chain: bool = True
    # Per example: after each update the filters are multiplied by 1 - lr x batch_size x
    # this, lr the step's Muon lr (the original's 1.0418e-6 x 1536 = 0.0016).
    muon_weight_decay: NonNegative = 1.0418e-6
    # Torch SGD lrs (not airbench94's decoupled form), per example: the loss is summed
    # over the batch.
    bias_lr: Positive = 0.0573  # torch's lr, per example: whitening bias and BatchNorm biases
    head_lr: Positive = 0.5415  # torch's lr, per example: the linear head
    sgd_momentum: OpenFraction = 0.825  # Nesterov
    # Per example in the batch: each step removes batch_size x this fraction of every SGD
    # weight (times the lr multiplier).
    weight_decay: NonNegative = 1.0418e-6

    def validate(self) -> None:
        super().validate()
        check_airbench_net(self)


class Hiverge94(Recipe):
    name = "hiverge94"
    summary = ("airbench94_muon retuned: SiLU, colour jitter, scheduled Muon renormalisation, "
               "TTA for the least sure quarter; 7.59 epochs")
    target = Target(0.9401, "94.01% mean, 2.015 s on an A100")
    config = Hiverge94Config()
    tricks = airbench_tricks("whitening", "identity_init", "label_smoothing", "translate",
                             "alternating_flip", "tta", "colour_jitter", "selective_tta")

    def build_model(self, config: Hiverge94Config, num_classes: int) -> AirbenchNet:
        model = airbench_net(config, num_classes)
        set_head_std(model, config.head_init_std)
        return model

    def setup(self, model: AirbenchNet, config: Hiverge94Config, train_images,
              total_steps: int) -> Training:
        init_whitening(model, config, train_images)
        steps_per_epoch = round(total_steps / config.epochs)  # (total: ceil of epochs x this)
        whiten_bias_steps = ceil(config.whiten_bias_epochs * steps_per_epoch)
        return Training(
            optimizers=[sgd_beside_muon(model, config, whiten_bias_steps),
                        frontier_muon(conv_filters(model), config, schedule_steps=total_steps)],
            lr_multipliers=piecewise_linear(total_steps, [(0, 1.0), (1, 0.0)]),
            loss=summed_cross_entropy(config.label_smoothing),
            before_epoch=freeze_whitening_bias(model, config.whiten_bias_epochs),
        )
