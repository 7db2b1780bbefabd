"""The general trainer's optimisers by name: torch's SGD and AdamW, and airbench's
decoupled SGD, with weight decay that spares norms and biases unless asked.

Each builder takes the parameter groups and a config with the fields it reads (lr,
momentum, weight_decay, and nesterov, beta2 or batch_size), in torch's convention: the loss
is the batch's mean.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from .sgd import decoupled_to_torch


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


def param_groups(model: nn.Module, decay_norms_and_biases: bool) -> list[dict]:
    """One group decayed, one (norms and biases) not, unless every parameter decays."""
    if decay_norms_and_biases:
        return [dict(params=[p for p in model.parameters() if p.requires_grad])]
    decayed, spared = decayed_and_not(model)
    groups = [dict(params=decayed), dict(params=spared, weight_decay=0.0)]
    return [g for g in groups if g["params"]]


def sgd(groups: list[dict], config) -> torch.optim.Optimizer:
    return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum,
                           nesterov=config.nesterov, weight_decay=config.weight_decay)


def adamw(groups: list[dict], config) -> torch.optim.Optimizer:
    return torch.optim.AdamW(groups, lr=config.lr, betas=(config.momentum, config.beta2),
                             weight_decay=config.weight_decay)


def decoupled_sgd(groups: list[dict], config) -> torch.optim.Optimizer:
    """Nesterov SGD with lr and weight decay per 1024 examples (see optim/sgd.py); the loss
    is a mean here, airbench's a sum, hence the factors of batch_size."""
    values = decoupled_to_torch(config.lr, config.weight_decay, config.momentum,
                                config.batch_size)
    lr = values.lr * config.batch_size
    return torch.optim.SGD(groups, lr=lr, momentum=config.momentum, nesterov=True,
                           weight_decay=values.decay_per_step / lr)


OPTIMIZERS: dict[str, Callable[[list[dict], object], torch.optim.Optimizer]] = {
    "sgd": sgd, "adamw": adamw, "decoupled_sgd": decoupled_sgd}
