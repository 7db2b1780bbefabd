"""Learning-rate schedules as data: values at every step, from a few (fraction, value) knots."""

from __future__ import annotations

import numpy as np
import torch


def piecewise_linear(total_steps: int, knots: list[tuple[float, float]]) -> np.ndarray:
    """Values for steps 0..total_steps, linear between knots given as (fraction of the run,
    value). Knot positions are rounded down to whole steps, as airbench does."""
    xs = [int(fraction * total_steps) for fraction, _ in knots]
    ys = [value for _, value in knots]
    return np.interp(np.arange(total_steps + 1), xs, ys)


def multiplier_scheduler(optimizer: torch.optim.Optimizer, multipliers: np.ndarray):
    """A LambdaLR that multiplies every group's base lr by multipliers[step]."""
    last = len(multipliers) - 1
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: float(multipliers[min(step, last)]))


def follow_own_schedule(optimizer: torch.optim.Optimizer, group: dict,
                        multipliers: np.ndarray) -> torch.utils.hooks.RemovableHandle:
    """Make one parameter group's lr its current lr times multipliers[step], whatever
    scheduler sets the optimizer's other groups: a step pre-hook sets it just before each
    step (steps past the end keep the last multiplier)."""
    base_lr, last = group["lr"], len(multipliers) - 1
    steps_taken = 0

    def set_lr(optimizer, args, kwargs):
        nonlocal steps_taken
        group["lr"] = base_lr * float(multipliers[min(steps_taken, last)])
        steps_taken += 1

    return optimizer.register_step_pre_hook(set_lr)
