"""The general trainer, in the fast.ai spirit: a network by name, a standard
optimiser, a named lr schedule, label smoothing, and weight decay that spares norms and
biases unless asked. Its recipes reproduce the four steps of the article "fast.ai
techniques on plain PyTorch" with ResNet-18 on Imagewoof (SGD with a step schedule -> the LR finder's lr -> one cycle -> AdamW) and give
a standard CIFAR ResNet-18 baseline.

Unlike the speed runs, these train with float32 weights (mixed precision on a GPU) and the
usual mean loss, so `lr` and `weight_decay` mean what they mean in torch.optim.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import numpy as np
from torch import nn

from ..data.fastai_images import stored_size
from ..data.loader import Augmentation
from ..errors import InputError
from ..models.resnet import RESNETS, STEMS, resnet
from ..models.resnet_page import PageResNet
from ..optim.schedules import LR_SCHEDULES, one_cycle_momentum
from ..optim.standard import OPTIMIZERS, param_groups
from ..optim.losses import summed_cross_entropy
from .base import Recipe, Target, Training, TrainConfig
from .fields import (Domain, FractionBelowOne, NonNegative, NonNegativeInt, OpenFraction,
                     Positive)

MODELS = (*RESNETS, "resnet9")
AreaShare = Annotated[float, Domain("(0, 1]")]  # a share of an image's area


@dataclass(frozen=True)
class GeneralConfig(TrainConfig):
    model: str = "resnet18"  # resnet18 | resnet34 | resnet50 | resnet9 (Page's, 32x32)
    stem: str = "imagenet"  # imagenet (7x7 stride 2 + max pool) | cifar (3x3, no pool)
    optimizer: str = "sgd"  # sgd | adamw | decoupled_sgd (airbench's: lr and decay per 1024)
    lr: Positive = 0.1  # the peak lr, in torch's convention: the loss is the batch's mean
    momentum: FractionBelowOne = 0.9  # SGD's momentum, or AdamW's beta1
    nesterov: bool = False  # sgd (decoupled_sgd is always Nesterov)
    beta2: FractionBelowOne = 0.999  # adamw
    weight_decay: NonNegative = 1e-4  # torch's: each step removes lr x this of every decayed weight
    decay_norms_and_biases: bool = False  # False: norm parameters and biases get no decay
    schedule: str = "step"  # one of SCHEDULES; lr multipliers per step, see optim/schedules.py
    # linear, cosine, flat_cosine: the fraction of the run warming up
    warmup: FractionBelowOne = 0.0
    milestones: tuple[NonNegativeInt, ...] = (30,)  # step: epochs at which the lr is multiplied ...
    step_factor: Positive = 0.1  # ... by this
    peak_at: OpenFraction = 0.3  # onecycle: the fraction of the run rising to the peak
    div_factor: Positive = 25.0  # onecycle: starts at lr / div_factor ...
    final_div_factor: Positive = 1e4  # ... and ends at lr / div_factor / final_div_factor
    cycle_momentum: bool = True  # onecycle: momentum (beta1) high -> low -> high, ...
    # ... (low, high), torch's
    cycle_momentum_range: tuple[FractionBelowOne, FractionBelowOne] = (0.85, 0.95)
    flat_until: FractionBelowOne = 0.75  # flat_cosine: flat until this fraction, then cosine to 0
    # piecewise: (fraction, value) pairs
    knots: tuple[NonNegative, ...] = (0.0, 0.0, 0.2, 1.0, 1.0, 0.0)
    # Larger images: train on random-resized crops of this side, evaluate on centre crops
    # (0: use the images as they are).
    image_size: NonNegativeInt = 0
    # The share of the image's area a crop keeps: (low, high).
    crop_scale: tuple[AreaShare, AreaShare] = (0.35, 1.0)

    def augmentation(self) -> Augmentation:
        return Augmentation(flip=self.flip, translate=self.translate, cutout=self.cutout,
                            crop_size=self.image_size, crop_scale=self.crop_scale)

    def crop_size(self) -> int:
        return self.image_size

    def stored_side(self) -> int | None:
        """A little larger than the crops, so evaluation can take a centre crop."""
        return stored_size(self.image_size) if self.image_size else None

    def check_image_size(self) -> None:
        if self.progressive_sizes:
            raise InputError("progressive_sizes is for the speed-run recipes; the general "
                             "trainer's random-resized crops already vary the scale")

    def validate(self) -> None:
        super().validate()
        for name, value, choices in (("model", self.model, MODELS), ("stem", self.stem, STEMS),
                                     ("optimizer", self.optimizer, tuple(OPTIMIZERS)),
                                     ("schedule", self.schedule, tuple(LR_SCHEDULES))):
            if value not in choices:
                raise InputError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
        if self.momentum == 0 and (self.nesterov or self.optimizer == "decoupled_sgd"):
            raise InputError("Nesterov momentum (nesterov=True, or decoupled_sgd) needs a "
                             "momentum above 0")
        fractions = self.knots[::2]
        if self.schedule == "piecewise" and (len(self.knots) < 4 or len(self.knots) % 2 or
                                             list(fractions) != sorted(fractions) or
                                             fractions[-1] > 1):
            raise InputError(f"knots must be (fraction, value) pairs, at least two, their "
                             f"fractions from 0 to 1 in order; got {self.knots}")

    def lr_schedule(self, total_steps: int, steps_per_epoch: int) -> np.ndarray:
        return LR_SCHEDULES[self.schedule](self, total_steps, steps_per_epoch)

    def momentum_schedule(self, total_steps: int) -> np.ndarray | None:
        if self.schedule == "onecycle" and self.cycle_momentum:
            low, high = self.cycle_momentum_range
            return one_cycle_momentum(total_steps, self.peak_at, low, high)
        return None


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
            optimizers=[OPTIMIZERS[config.optimizer](
                param_groups(model, config.decay_norms_and_biases), config)],
            lr_multipliers=config.lr_schedule(total_steps, steps_per_epoch),
            momenta=config.momentum_schedule(total_steps),
            loss=summed_cross_entropy(config.label_smoothing, scale=mean),
            loss_scale=mean)


@dataclass(frozen=True)
class ImagewoofConfig(GeneralConfig):
    """The fast.ai article's first step: ResNet-18, SGD lr 0.1 (momentum 0.9, weight decay 1e-4 on
    every parameter, as the article's optimizer has it), x0.1 after epoch 30, 40 epochs of
    batch 128; random-resized crops and flips at 128 px (the article used 224)."""

    epochs: float = 40.0  # the article's
    batch_size: int = 128  # images per step
    decay_norms_and_biases: bool = True  # as the article's optimiser: every parameter decays
    image_size: int = 128  # pixels: the crops' side (the article's 224, made cheaper)
    flip: str = "random"  # none | random | alternating: half the crops mirrored


class ResNet18ImagewoofSGD(GeneralRecipe):
    name = "resnet18_imagewoof_sgd"
    summary = "fast.ai article step 1: ResNet-18 on Imagewoof, SGD 0.1, x0.1 at epoch 30, 40 epochs"
    target = Target(0.69, "top-1 69%, top-5 96% (the fast.ai article, 224 px)")
    config = ImagewoofConfig()
    default_data = "imagewoof"


class ResNet18ImagewoofLRFinder(GeneralRecipe):
    name = "resnet18_imagewoof_lrfinder"
    summary = "fast.ai article step 2: step 1 with the LR finder's lr, 0.02"
    target = Target(0.78, "top-1 78% (the fast.ai article, 224 px)")
    config = ImagewoofConfig(lr=0.02)
    default_data = "imagewoof"


class ResNet18ImagewoofOneCycle(GeneralRecipe):
    name = "resnet18_imagewoof_onecycle"
    summary = "fast.ai article step 3: SGD one-cycle to 0.02 (torch OneCycleLR's defaults)"
    target = Target(0.795, "top-1 79.5% (the fast.ai article, 224 px)")
    config = ImagewoofConfig(lr=0.02, schedule="onecycle")
    default_data = "imagewoof"


class ResNet18ImagewoofAdamW(GeneralRecipe):
    name = "resnet18_imagewoof_adamw"
    summary = "fast.ai article step 4: AdamW one-cycle to 0.02, weight decay 1e-4"
    target = Target(0.826, "top-1 82.6% (the fast.ai article, 224 px)")
    config = ImagewoofConfig(lr=0.02, schedule="onecycle", optimizer="adamw")
    default_data = "imagewoof"


@dataclass(frozen=True)
class ResNet18CifarConfig(GeneralConfig):
    """The common CIFAR-10 ResNet-18 baseline: CIFAR stem, SGD lr 0.1 momentum 0.9,
    weight decay 5e-4, cosine to 0 over 200 epochs of batch 128, pad-4 crops and flips."""

    epochs: float = 200.0  # the baseline's usual length
    batch_size: int = 128  # images per step
    stem: str = "cifar"  # 3x3, no pool: 32x32 images keep their resolution
    weight_decay: float = 5e-4  # torch's: each step removes lr x this of every decayed weight
    schedule: str = "cosine"  # to 0 at the end, no warm-up
    flip: str = "random"  # none | random | alternating: half mirrored, drawn afresh each epoch
    translate: int = 4  # pixels: reflect-pad 4, random 32x32 crop


class ResNet18Cifar(GeneralRecipe):
    name = "resnet18_cifar"
    summary = "a standard CIFAR ResNet-18 baseline: SGD 0.1, cosine, 200 epochs"
    target = Target(0.96, "96.0% (the ResNet-18 baseline the airbench README quotes)")
    config = ResNet18CifarConfig()
