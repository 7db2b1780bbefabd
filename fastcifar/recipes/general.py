"""The general trainer of seed 004, in the fast.ai spirit: a network by name, a standard
optimiser, a named lr schedule, label smoothing, and weight decay that spares norms and
biases unless asked. Its recipes reproduce seed 004's four steps with ResNet-18 on
Imagewoof (SGD with a step schedule -> the LR finder's lr -> one cycle -> AdamW) and give
a standard CIFAR ResNet-18 baseline.

Unlike the speed runs, these train with float32 weights (mixed precision on a GPU) and the
usual mean loss, so `lr` and `weight_decay` mean what they mean in torch.optim.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..errors import InputError
from ..models.resnet import RESNETS, STEMS, resnet
from ..models.resnet_page import PageResNet
from ..optim import schedules
from ..optim.sgd import decoupled_to_torch
from ..train.losses import summed_cross_entropy
from .base import Recipe, Target, Training, TrainConfig

MODELS = (*RESNETS, "resnet9")
OPTIMIZERS = ("sgd", "adamw", "decoupled_sgd")
SCHEDULES = ("constant", "step", "onecycle", "linear", "cosine", "flat_cosine", "piecewise")


@dataclass(frozen=True)
class GeneralConfig(TrainConfig):
    model: str = "resnet18"  # resnet18 | resnet34 | resnet50 | resnet9 (Page's, 32x32)
    stem: str = "imagenet"  # imagenet (7x7 stride 2 + max pool) | cifar (3x3, no pool)
    optimizer: str = "sgd"  # sgd | adamw | decoupled_sgd (airbench's: lr and decay per 1024)
    lr: float = 0.1  # the peak lr
    momentum: float = 0.9  # SGD's momentum, or AdamW's beta1
    nesterov: bool = False  # sgd (decoupled_sgd is always Nesterov)
    beta2: float = 0.999  # adamw
    weight_decay: float = 1e-4
    decay_norms_and_biases: bool = False  # False: norm parameters and biases get no decay
    schedule: str = "step"  # one of SCHEDULES; lr multipliers per step, see optim/schedules.py
    warmup: float = 0.0  # linear, cosine, flat_cosine: the fraction of the run warming up
    milestones: tuple[int, ...] = (30,)  # step: epochs at which the lr is multiplied ...
    step_factor: float = 0.1  # ... by this
    peak_at: float = 0.3  # onecycle: the fraction of the run rising to the peak
    div_factor: float = 25.0  # onecycle: starts at lr / div_factor ...
    final_div_factor: float = 1e4  # ... and ends at lr / div_factor / final_div_factor
    cycle_momentum: bool = True  # onecycle: momentum (beta1) 0.95 -> 0.85 -> 0.95
    flat_until: float = 0.75  # flat_cosine: flat until this fraction, then cosine to 0
    knots: tuple[float, ...] = (0.0, 0.0, 0.2, 1.0, 1.0, 0.0)  # piecewise: (fraction, value) pairs

    def validate(self) -> None:
        super().validate()
        for name, value, choices in (("model", self.model, MODELS), ("stem", self.stem, STEMS),
                                     ("optimizer", self.optimizer, OPTIMIZERS),
                                     ("schedule", self.schedule, SCHEDULES)):
            if value not in choices:
                raise InputError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
        if not self.lr > 0 or self.weight_decay < 0:
            raise InputError(f"lr must be positive and weight_decay 0 or more, got lr={self.lr}, "
                             f"weight_decay={self.weight_decay}")
        if not 0 <= self.momentum < 1 or not 0 <= self.beta2 < 1:
            raise InputError("momentum and beta2 must be in [0, 1)")
        if self.schedule == "piecewise" and (len(self.knots) < 4 or len(self.knots) % 2):
            raise InputError(f"knots must be (fraction, value) pairs, at least two, got {self.knots}")
        if not 0 <= self.warmup < 1 or not 0 < self.peak_at < 1 or not 0 <= self.flat_until < 1:
            raise InputError("warmup and flat_until must be in [0, 1), peak_at in (0, 1)")

    def lr_schedule(self, total_steps: int, steps_per_epoch: int) -> np.ndarray:
        if self.schedule == "constant":
            return schedules.constant(total_steps)
        if self.schedule == "step":
            return schedules.step_decay(total_steps, steps_per_epoch, self.milestones,
                                        self.step_factor)
        if self.schedule == "onecycle":
            return schedules.one_cycle(total_steps, self.peak_at, self.div_factor,
                                       self.final_div_factor)
        if self.schedule == "piecewise":
            pairs = list(zip(self.knots[::2], self.knots[1::2]))
            return schedules.piecewise_linear(total_steps, pairs)
        return schedules.warmup_then(total_steps, self.warmup, self.schedule, self.flat_until)

    def momentum_schedule(self, total_steps: int) -> np.ndarray | None:
        if self.schedule == "onecycle" and self.cycle_momentum:
            return schedules.one_cycle_momentum(total_steps, self.peak_at)
        return None


def decayed_and_not(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """Parameters that weight decay should shrink (conv and linear weights) and those it
    should not (norm scales and shifts, biases: decaying them only fights the norm)."""
    norms = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)
    spared = {id(p) for m in model.modules() if isinstance(m, norms)
              for p in m.parameters(recurse=False)}
    spared |= {id(p) for name, p in model.named_parameters() if name.endswith("bias")}
    trainable = [p for p in model.parameters() if p.requires_grad]
    return ([p for p in trainable if id(p) not in spared],
            [p for p in trainable if id(p) in spared])


def build_optimizer(model: nn.Module, config: GeneralConfig) -> torch.optim.Optimizer:
    if config.decay_norms_and_biases:
        decayed, spared = [p for p in model.parameters() if p.requires_grad], []
    else:
        decayed, spared = decayed_and_not(model)
    groups = [dict(params=decayed), dict(params=spared, weight_decay=0.0)]
    groups = [g for g in groups if g["params"]]
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr, betas=(config.momentum, config.beta2),
                                 weight_decay=config.weight_decay)
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum,
                               nesterov=config.nesterov, weight_decay=config.weight_decay)
    # decoupled_sgd: the loss is a mean here, airbench's a sum, hence batch_size
    values = decoupled_to_torch(config.lr, config.weight_decay, config.momentum,
                                config.batch_size)
    lr = values.lr * config.batch_size
    return torch.optim.SGD(groups, lr=lr, momentum=config.momentum, nesterov=True,
                           weight_decay=values.decay_per_step / lr)


class GeneralRecipe(Recipe):
    checkpoints = True
    mixed_precision = True
    progress_on_gpu = True  # long runs, not timed to the millisecond

    def build_model(self, config: GeneralConfig, num_classes: int) -> nn.Module:
        if config.model == "resnet9":
            return PageResNet(num_classes=num_classes)
        return resnet(config.model, num_classes, config.stem)

    def setup(self, model: nn.Module, config: GeneralConfig, train_images,
              total_steps: int) -> Training:
        steps_per_epoch, _ = config.steps(len(train_images))
        mean = 1 / config.batch_size  # the loss is the batch's mean
        return Training(
            optimizers=[build_optimizer(model, config)],
            lr_multipliers=config.lr_schedule(total_steps, steps_per_epoch),
            momenta=config.momentum_schedule(total_steps),
            loss=summed_cross_entropy(config.label_smoothing, scale=mean),
            loss_scale=mean)


@dataclass(frozen=True)
class ImagewoofConfig(GeneralConfig):
    """Seed 004's first step: ResNet-18, SGD lr 0.1 (momentum 0.9, weight decay 1e-4 on
    every parameter, as the seed's optimizer has it), x0.1 after epoch 30, 40 epochs of
    batch 128; random-resized crops and flips at 128 px (the seed used 224)."""

    epochs: float = 40.0
    batch_size: int = 128
    decay_norms_and_biases: bool = True
    image_size: int = 128
    flip: str = "random"


class ResNet18ImagewoofSGD(GeneralRecipe):
    name = "resnet18_imagewoof_sgd"
    summary = "seed 004 step 1: ResNet-18 on Imagewoof, SGD 0.1, x0.1 at epoch 30, 40 epochs"
    target = Target(0.69, "top-1 69%, top-5 96% (seed 004, 224 px)")
    config = ImagewoofConfig()
    default_data = "imagewoof"


class ResNet18ImagewoofLRFinder(GeneralRecipe):
    name = "resnet18_imagewoof_lrfinder"
    summary = "seed 004 step 2: step 1 with the LR finder's lr, 0.02"
    target = Target(0.78, "top-1 78% (seed 004, 224 px)")
    config = ImagewoofConfig(lr=0.02)
    default_data = "imagewoof"


class ResNet18ImagewoofOneCycle(GeneralRecipe):
    name = "resnet18_imagewoof_onecycle"
    summary = "seed 004 step 3: SGD one-cycle to 0.02 (torch OneCycleLR's defaults)"
    target = Target(0.795, "top-1 79.5% (seed 004, 224 px)")
    config = ImagewoofConfig(lr=0.02, schedule="onecycle")
    default_data = "imagewoof"


class ResNet18ImagewoofAdamW(GeneralRecipe):
    name = "resnet18_imagewoof_adamw"
    summary = "seed 004 step 4: AdamW one-cycle to 0.02, weight decay 1e-4"
    target = Target(0.826, "top-1 82.6% (seed 004, 224 px)")
    config = ImagewoofConfig(lr=0.02, schedule="onecycle", optimizer="adamw")
    default_data = "imagewoof"


@dataclass(frozen=True)
class ResNet18CifarConfig(GeneralConfig):
    """The common CIFAR-10 ResNet-18 baseline: CIFAR stem, SGD lr 0.1 momentum 0.9,
    weight decay 5e-4, cosine to 0 over 200 epochs of batch 128, pad-4 crops and flips."""

    epochs: float = 200.0
    batch_size: int = 128
    stem: str = "cifar"
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    flip: str = "random"
    translate: int = 4


class ResNet18Cifar(GeneralRecipe):
    name = "resnet18_cifar"
    summary = "a standard CIFAR ResNet-18 baseline: SGD 0.1, cosine, 200 epochs"
    target = Target(0.96, "96.0% (the ResNet-18 baseline the airbench README quotes)")
    config = ResNet18CifarConfig()
