"""What a recipe is: a config of hyperparameters, the network it builds, how it trains it,
and the figure it was published with."""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass
from math import ceil
from typing import Annotated, Callable

import numpy as np
import torch
from torch import nn

from ..data.loader import Augmentation
from ..errors import InputError
from ..optim.averaging import WeightAverage
from .fields import (Count, Domain, Fraction, FractionBelowOne, ImageSide, NonNegative,
                     NonNegativeInt, Positive, check_domains, field_domains)


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters every recipe has. Recipes subclass this with their own."""

    epochs: Positive = 10.0  # passes over the training images; a fraction cuts the last short
    batch_size: Count = 512  # images per step
    label_smoothing: FractionBelowOne = 0.0  # of each target's mass, spread over the others
    flip: str = "random"  # none | random | alternating
    translate: NonNegativeInt = 0  # pixels of random translation (reflect pad + crop)
    cutout: NonNegativeInt = 0  # side of the cutout square, 0 for none
    # 0 none, 1 mirror, 2 mirror x translations, 3 their six views alike
    tta_level: Annotated[int, Domain("[0, 3]", "0, 1, 2 or 3")] = 0
    # The least confident fraction of the test images that take the TTA (hiverge: 0.25);
    # the rest keep their plain logits (train/evaluate.py, selective_tta_logits).
    tta_fraction: Fraction = 1.0
    # The side of the square images trained on, in pixels: images of another size are
    # scaled (shorter side) and centre-cropped to it as they load. The networks end in a
    # global max, so any size from 16 up works; CIFAR-10's is 32.
    image_size: ImageSide = 32
    # Progressive resizing (fulcrumresearch's speed run trains its first epochs smaller):
    # the side of the training images in epochs 0, 1, ..., e.g. (24, 28); later epochs,
    # and every evaluation, at image_size.
    progressive_sizes: tuple[ImageSide, ...] = ()
    # How a smaller epoch is made: resize (the whole image scaled down) or crop (a window of
    # it at full scale, shifted by up to translate pixels about the centre: Fable E5's).
    progressive_mode: str = "resize"
    progressive_antialias: bool = True  # resize: antialiased; false: plain bilinear (Fable E1)
    # Colour jitter (hiverge, Fable), per image and epoch, in normalised units: a shift
    # uniform within +-brightness, then a scale uniform within 1 +- contrast (0: none).
    brightness: NonNegative = 0.0
    contrast: FractionBelowOne = 0.0  # colour jitter's scale range (0: none; see brightness)
    # Data-parallel runs (--ddp): BatchNorm statistics over the global batch, not over each
    # rank's share of it.
    sync_bn: bool = False

    def steps(self, train_images: int) -> tuple[int, int]:
        """(steps per epoch, steps in the run): full batches only, the last epoch cut short
        when epochs is fractional."""
        per_epoch = train_images // self.batch_size
        if per_epoch == 0:
            raise InputError(f"batch_size {self.batch_size} is larger than the {train_images} "
                             f"training images: no full batch to train on")
        return per_epoch, ceil(per_epoch * self.epochs)

    def augmentation(self) -> Augmentation:
        return Augmentation(flip=self.flip, translate=self.translate, cutout=self.cutout,
                            progressive=self.progressive_sizes,
                            progressive_mode=self.progressive_mode,
                            progressive_antialias=self.progressive_antialias,
                            brightness=self.brightness, contrast=self.contrast)

    def crop_size(self) -> int:
        """The side of the random-resized crops trained on (0: the images as stored, as
        every speed run trains)."""
        return 0

    def stored_side(self) -> int | None:
        """The side every image is stored at when loaded (None: as they come, all one size)."""
        return self.image_size

    def check_image_size(self) -> None:
        if any(side > self.image_size for side in self.progressive_sizes):
            raise InputError(f"progressive_sizes must be sides up to image_size "
                             f"({self.image_size}), got {self.progressive_sizes}")

    def validate(self) -> None:
        """Every field within its domain (check_domains), then the checks across fields:
        subclasses add theirs after calling this."""
        check_domains(self, type(self).__name__)
        self.check_image_size()
        try:
            augmentation = self.augmentation()
        except ValueError as e:
            raise InputError(str(e)) from e
        # A recipe whose augmentation has no colour jitter (the general trainer's) refuses it.
        if (augmentation.brightness, augmentation.contrast) != (self.brightness, self.contrast):
            raise InputError(f"{type(self).__name__} has no colour jitter: brightness and "
                             f"contrast are for the speed-run recipes")


@dataclass
class Training:
    """The per-run objects a recipe hands to the training loop."""

    optimizers: list[torch.optim.Optimizer]  # all stepped every step (e.g. Muon + SGD)
    lr_multipliers: np.ndarray  # one per step, 0..total_steps, applied to every optimizer
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (outputs, targets) -> loss
    loss_scale: float = 1.0  # the loss is this times the sum over the batch (for reporting)
    momenta: np.ndarray | None = None  # per step: every group's momentum (SGD) or beta1 (Adam)
    average: WeightAverage | None = None  # lookahead or an EMA model; loaded at the end
    average_every: int = 5
    average_decay: Callable[[int], float] | None = None  # step -> decay
    # The step at which the average (re)starts from the weights, then updated every
    # average_every steps; before it no step touches it (Fable's lookahead tail).
    average_start: int = 0
    before_epoch: Callable[[int], None] | None = None
    # (inputs, labels, epoch) -> (inputs, targets), e.g. cutmix's mixed soft targets
    batch_transform: Callable | None = None
    # (inputs, labels, autocast) -> a boolean mask of the examples to train on, before
    # batch_transform: airbench96_faster's proxy selection (optim/selection.py); its
    # state_dict goes into checkpoints
    select: Callable | None = None


@dataclass(frozen=True)
class Trick:
    """One of a recipe's tricks, for `fastcifar ablate`: its name, what it does in a line,
    and the config values that switch it off (the plain alternative)."""

    name: str
    what: str
    off: dict


@dataclass(frozen=True)
class Target:
    accuracy: float | None  # on the official CIFAR-10 test set, as a fraction (None: none)
    text: str  # the published claim, in words
    pflops: float | None = None  # published training FLOPs of one run, in PFLOPs, if given


class Recipe:
    """Subclasses set name, summary, target and config, and build the model and training."""

    name: str
    summary: str
    target: Target
    config: TrainConfig
    checkpoints: bool = False  # save last.pt/best.pt every epoch unless told otherwise
    mixed_precision: bool = False  # False: half-precision weights on a GPU, as the speed runs
    default_data: str | None = None  # what --data defaults to (None: CIFAR-10)
    progress_on_gpu: bool = False  # progress bars' host syncs would slow a timed speed run
    # Its tricks, in the order its authors added them (`fastcifar ablate` switches each off).
    tricks: tuple[Trick, ...] = ()

    def build_model(self, config, num_classes: int) -> nn.Module:
        raise NotImplementedError

    def setup(self, model: nn.Module, config, train_images: torch.Tensor,
              total_steps: int) -> Training:
        """Data-dependent initialisation (timed as part of the run) and the optimiser."""
        raise NotImplementedError


def check_widths(widths: tuple[int, ...], count: int, parts: str) -> None:
    """A network's widths, one for each of `parts` (its field's domain, tuple[Count, ...],
    keeps each at least 1)."""
    if len(widths) != count:
        raise InputError(f"widths must be {count} positive numbers, one for each of {parts}; "
                         f"got {widths}")


def field_notes(config_type: type) -> dict[str, str]:
    """Each field's comment in the config classes' source (its own line's, else the comment
    lines just above it), the nearest class in the hierarchy first: the units and reasons
    `fastcifar recipes --show` prints."""
    notes: dict[str, str] = {}
    for cls in config_type.__mro__:
        if not dataclasses.is_dataclass(cls):
            continue
        above: list[str] = []
        for line in inspect.getsource(cls).splitlines():
            text = line.strip()
            if text.startswith("#"):
                above.append(text.lstrip("# "))
                continue
            name, colon, rest = text.partition(":")
            if colon and name.isidentifier() and "=" in rest and name not in notes:
                code, hash_, comment = rest.partition("  # ")
                if note := (comment.strip() if hash_ else " ".join(above)):
                    notes[name] = note
            above = []
    return notes


def describe(recipe: Recipe) -> list[str]:
    """The recipe's full resolved config: every hyperparameter, its value and its note."""
    config = recipe.config
    notes, domains = field_notes(type(config)), field_domains(type(config))
    values = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    width = max(len(k) + len(repr(v)) for k, v in values.items()) + 3
    lines = [f"{recipe.name}: {recipe.summary}", f"published: {recipe.target.text}",
             f"config: {type(config).__name__} (set any of these with --set KEY=VALUE)"]
    for name, value in values.items():
        text = f"  {name} = {value!r}"
        domain = (f"({'each ' if isinstance(value, tuple) else ''}{domains[name]})"
                  if name in domains else "")
        if note := " ".join(filter(None, (domain, notes.get(name)))):
            text = f"{text.ljust(width + 2)}  # {note}"
        lines.append(text)
    return lines
