"""Learning-rate schedules as data: values at every step, from a few (fraction, value) knots."""

from __future__ import annotations

from functools import partial

import numpy as np
import torch


def piecewise_linear(total_steps: int, knots: list[tuple[float, float]]) -> np.ndarray:
    """Values for steps 0..total_steps, linear between knots given as (fraction of the run,
    value). Knot positions are rounded down to whole steps, as airbench does."""
    xs = [int(fraction * total_steps) for fraction, _ in knots]
    ys = [value for _, value in knots]
    return np.interp(np.arange(total_steps + 1), xs, ys)


def multiplier_scheduler(optimizer: torch.optim.Optimizer, multipliers: np.ndarray):
    """A LambdaLR that multiplies every group's base lr by multipliers[step] (steps past the
    end keep the last value). A group holding its own "lr_multipliers" (see
    follow_own_schedule) follows those instead. All of the scheduler's state is its step
    count, so a checkpoint restores it exactly."""
    def at(values, step):
        return float(values[min(step, len(values) - 1)])

    shared = partial(at, multipliers)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, [partial(at, g["lr_multipliers"]) if "lr_multipliers" in g else shared
                    for g in optimizer.param_groups])


def follow_own_schedule(group: dict, multipliers: np.ndarray) -> None:
    """Give one parameter group its own lr multipliers, which multiplier_scheduler uses in
    place of the shared ones (kept as plain floats, so the optimizer's state_dict stays
    loadable with torch.load(weights_only=True))."""
    group["lr_multipliers"] = [float(m) for m in multipliers]
