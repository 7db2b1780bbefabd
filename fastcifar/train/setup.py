"""One run set up: the recipe's network built and placed in the run's precision (or a
network kept from an earlier run re-initialised in place), then its data-dependent
initialisation and the optimisers, schedules, loss and weight average it trains with. The
training loop, the LR finder, the FLOP counter and the step-time benchmark all start a run
here."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn

from ..data.cifar10 import IMAGE_SHAPE, TRAIN_IMAGES
from ..models.layers import place_model
from ..optim.schedules import MultiplierScheduler
from ..recipes.base import Training
from .device import Precision, choose_precision

SETUP_IMAGES = 256  # random images for a recipe's data-dependent init when no data is at hand


@dataclass
class RunParts:
    model: nn.Module
    training: Training
    schedulers: list[MultiplierScheduler]  # one per optimiser, stepped with it
    precision: Precision
    steps_per_epoch: int  # full batches only, as the training loader gives them
    steps: int


def set_up_run(recipe, config, train_images: torch.Tensor, device: torch.device,
               precision: str = "auto", num_classes: int = 10,
               num_train_images: int | None = None, model_transform=None,
               init_timer=None, model: nn.Module | None = None) -> RunParts:
    """Build, place and set up one run of `recipe` with `config` on `device`.

    `train_images` feed the data-dependent initialisation (whitening); the step counts are
    for `num_train_images` images per epoch (default: as many as given). `model_transform`
    (torch.compile) wraps the placed model before its initialisation; `init_timer`, a
    context manager, times the initialisation (part of a timed run, by airbench's rule).

    `model`, a network an earlier run of this recipe and config set up (transformed or
    not), is trained instead of a new one: it is given a new network's state (see
    reinitialise), so the run is the one a new network would train."""
    config.validate()
    chosen = choose_precision(precision, device, recipe.mixed_precision)
    # Built even for a kept network: the same random draws, so the run's later ones match.
    built = place_model(recipe.build_model(config, num_classes), device, chosen.weights)
    if model is not None:
        reinitialise(model, built)
    else:
        model = model_transform(built) if model_transform is not None else built
    return set_up_training(recipe, config, model, train_images, chosen, num_train_images,
                           init_timer)


def set_up_training(recipe, config, model: nn.Module, train_images: torch.Tensor,
                    precision: Precision, num_train_images: int | None = None,
                    init_timer=None) -> RunParts:
    """The run's parts around `model`, a network the recipe built, placed in `precision`:
    its data-dependent initialisation and training (recipe.setup, timed by `init_timer`),
    a scheduler per optimiser, the step counts."""
    per_epoch, steps = config.steps(num_train_images or len(train_images))
    with init_timer if init_timer is not None else contextlib.nullcontext():
        training = recipe.setup(model, config, train_images, steps)
    schedulers = [MultiplierScheduler(opt, training.lr_multipliers, training.momenta)
                  for opt in training.optimizers]
    return RunParts(model, training, schedulers, precision, per_epoch, steps)


@torch.no_grad()
def reinitialise(model: nn.Module, built: nn.Module) -> None:
    """Give `model` the state of `built`, a new network of the same recipe and config: its
    parameters' and buffers' values, which parameters train (a recipe may have frozen one
    mid-run), no gradients, training mode. In place: `model` keeps its tensors, so a
    compiled model's graphs still fit it (CUDA graphs hold the tensors' addresses)."""
    pairs = [*zip(model.parameters(), built.parameters(), strict=True),
             *zip(model.buffers(), built.buffers(), strict=True)]
    for kept, new in pairs:
        if kept.shape != new.shape:
            raise ValueError(f"reinitialise: a tensor of shape {tuple(new.shape)} does not "
                             f"fit the kept network's {tuple(kept.shape)}")
        kept.copy_(new)
    for kept, new in zip(model.parameters(), built.parameters()):
        kept.requires_grad_(new.requires_grad)
        kept.grad = None
    model.train(built.training)


def set_up_without_data(recipe, config, train_images: int = TRAIN_IMAGES,
                        num_classes: int = 10) -> RunParts:
    """A run set up on the CPU in float32 as for `train_images` images per epoch, with
    random images for the data-dependent init: enough for everything that does not depend
    on the images' content (schedules, FLOPs, which parameters train). The global random
    state is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return set_up_run(recipe, config, torch.randn(SETUP_IMAGES, *IMAGE_SHAPE),
                          torch.device("cpu"), "float32", num_classes,
                          num_train_images=train_images)
