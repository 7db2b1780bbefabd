"""Nesterov SGD with decoupled hyperparameters, as airbench states them.

The recipes give the learning rate per 1024 examples and the weight decay per 1024
examples independent of the learning rate, so that changing the batch size or the
momentum does not silently change the step size or the regularisation. This module
converts them into what torch.optim.SGD expects.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..models.layers import BatchNorm


@dataclass(frozen=True)
class TorchSGDValues:
    lr: float  # torch.optim.SGD's lr for a parameter group with lr scale 1
    decay_per_step: float  # fraction of each weight removed per step by weight decay


def decoupled_to_torch(lr: float, weight_decay: float, momentum: float,
                       batch_size: int) -> TorchSGDValues:
    """Convert decoupled (lr, weight decay) per 1024 examples into SGD values.

    Airbench divides the lr by 1 + 1/(1 - momentum), its measure of how much larger
    Nesterov steps are than the gradient, so that the lr barely changes meaning when the
    momentum does (under a constant gradient the steady-state gain is 1/(1 - momentum), so
    the invariance is approximate). The published hyperparameters assume this convention.
    The loss is summed, not averaged, so the gradient already grows with the batch size.
    """
    kilostep_scale = 1024 * (1 + 1 / (1 - momentum))
    return TorchSGDValues(lr=lr / kilostep_scale,
                          decay_per_step=weight_decay * batch_size / kilostep_scale)


def decoupled_sgd(groups: list[tuple[list[torch.nn.Parameter], float]], lr: float,
                  weight_decay: float, momentum: float, batch_size: int,
                  nesterov: bool = True) -> torch.optim.SGD:
    """SGD over (parameters, lr scale) groups. Every group decays its weights by the same
    fraction per step, whatever its lr scale."""
    values = decoupled_to_torch(lr, weight_decay, momentum, batch_size)
    return sgd_with_decay([(params, values.lr * lr_scale) for params, lr_scale in groups],
                          values.decay_per_step, momentum, nesterov)


def airbench_sgd(model: torch.nn.Module, config) -> torch.optim.SGD:
    """decoupled_sgd over the parameters that train, with a config's lr, weight_decay,
    momentum and batch_size: the BatchNorm biases at bias_lr_scale times the lr."""
    norm_biases = [p for m in model.modules() if isinstance(m, BatchNorm)
                   for p in m.parameters() if p.requires_grad]
    norm_ids = {id(p) for p in norm_biases}
    others = [p for p in model.parameters() if p.requires_grad and id(p) not in norm_ids]
    return decoupled_sgd([(norm_biases, config.bias_lr_scale), (others, 1.0)],
                         lr=config.lr, weight_decay=config.weight_decay,
                         momentum=config.momentum, batch_size=config.batch_size)


def sgd_with_decay(groups: list[tuple[list[torch.nn.Parameter], float]],
                   decay_per_step: float, momentum: float, nesterov: bool = True,
                   fused: bool | None = None) -> torch.optim.SGD:
    """SGD over (parameters, torch lr) groups, each removing the fraction decay_per_step of
    its weights per step, whatever its lr (torch multiplies weight_decay by lr, so each
    group's weight_decay is decay_per_step / lr). `fused` (default: on CUDA) does the
    whole update in a few kernels instead of several per tensor."""
    param_groups = [dict(params=params, lr=lr, weight_decay=decay_per_step / lr)
                    for params, lr in groups]
    if fused is None:
        params = [p for g in param_groups for p in g["params"]]
        fused = bool(params) and all(p.is_cuda for p in params)
    return torch.optim.SGD(param_groups, momentum=momentum, nesterov=nesterov, fused=fused)


def per_example_sgd(groups: list[tuple[list[torch.nn.Parameter], float]], lr: float,
                    weight_decay: float, momentum: float, batch_size: int,
                    nesterov: bool = True) -> torch.optim.SGD:
    """SGD over (parameters, lr scale) groups with hyperparameters as David Page states them.

    The loss is summed over the batch, so torch's lr is the step per example's gradient
    (Page writes it lr/batch_size). Weight decay is coupled to the lr and given per example:
    each step shrinks every weight by lr * weight_decay * batch_size (Page's torch
    weight_decay is 5e-4 * batch_size), whatever its group's lr scale.
    """
    return sgd_with_decay([(params, lr * lr_scale) for params, lr_scale in groups],
                          lr * weight_decay * batch_size, momentum, nesterov)


def weights_and_biases(model: torch.nn.Module) -> tuple[list[torch.nn.Parameter],
                                                        list[torch.nn.Parameter]]:
    """The trainable parameters split by name into weights and biases: Page's and hlb's
    split, in nets whose only biases are the norms' shifts (trained faster than weights)."""
    trainable = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    return ([p for name, p in trainable if not name.endswith("bias")],
            [p for name, p in trainable if name.endswith("bias")])
