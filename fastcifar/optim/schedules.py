"""Learning-rate schedules as data: a multiplier for every step, from a few (fraction,
value) knots or by name (LR_SCHEDULES, the general trainer's)."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch


def piecewise_linear(total_steps: int, knots: list[tuple[float, float]]) -> np.ndarray:
    """Values for steps 0..total_steps, linear between knots given as (fraction of the run,
    value). Knot positions are rounded down to whole steps, as airbench does."""
    xs = [int(fraction * total_steps) for fraction, _ in knots]
    ys = [value for _, value in knots]
    return np.interp(np.arange(total_steps + 1), xs, ys)


def linear_one_cycle(total_steps: int, start: float, peak_at: float, end: float) -> np.ndarray:
    """Linear from start up to 1 at the fraction peak_at of the run, then down to end at
    its last step (airbench's warm-up and decay, hlb's linear one cycle)."""
    return piecewise_linear(total_steps, [(0, start), (peak_at, 1.0), (1, end)])


def linear_to_floor(total_steps: int, decay_steps: int, floor: float) -> np.ndarray:
    """max(1 - s/decay_steps, floor) for steps s = 0..total_steps: a linear decay laid over
    decay_steps, not the run, held at floor from (1 - floor) * decay_steps on (Fable's
    low-lr tail). Exact where piecewise_linear is not: its knots fall on whole steps."""
    return np.maximum(1 - np.arange(total_steps + 1) / decay_steps, floor)


class MultiplierScheduler:
    """Sets every group's lr to its lr at construction times multipliers[step] (steps past
    the end keep the last value); a group holding its own "lr_multipliers" (see
    follow_own_schedule) follows those instead. With `momenta`, it also sets each group's
    momentum (SGD) or first beta (Adam, AdamW) to momenta[step], as one-cycle does.

    Its whole state is the step count, so a checkpoint restores it exactly.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, multipliers: np.ndarray,
                 momenta: np.ndarray | None = None):
        self.optimizer, self.step_count = optimizer, 0
        self.base_lrs = [g["lr"] for g in optimizer.param_groups]
        self.multipliers = [g.get("lr_multipliers", multipliers) for g in optimizer.param_groups]
        self.momenta = momenta
        self._apply()

    def step(self) -> None:
        self.step_count += 1
        self._apply()

    def _apply(self) -> None:
        for group, base, multipliers in zip(self.optimizer.param_groups, self.base_lrs,
                                            self.multipliers):
            group["lr"] = base * _at(multipliers, self.step_count)
            if self.momenta is not None:
                momentum = _at(self.momenta, self.step_count)
                if "betas" in group:
                    group["betas"] = (momentum, group["betas"][1])
                else:
                    group["momentum"] = momentum

    def state_dict(self) -> dict:
        return {"step": self.step_count}

    def load_state_dict(self, state: dict) -> None:
        self.step_count = state["step"]
        self._apply()


def _at(values, step: int) -> float:
    return float(values[min(step, len(values) - 1)])


def follow_own_schedule(group: dict, multipliers: np.ndarray) -> None:
    """Give one parameter group its own lr multipliers, which MultiplierScheduler uses in
    place of the shared ones (kept as plain floats, so the optimizer's state_dict stays
    loadable with torch.load(weights_only=True))."""
    group["lr_multipliers"] = [float(m) for m in multipliers]


# Named schedules for the general trainer: multipliers of the peak lr at steps 0..total.

def constant(total_steps: int) -> np.ndarray:
    return np.ones(total_steps + 1)


def step_decay(total_steps: int, steps_per_epoch: int, milestones: tuple[int, ...],
               factor: float = 0.1) -> np.ndarray:
    """Multiply by `factor` at each milestone epoch (torch's MultiStepLR, per epoch)."""
    epochs = np.arange(total_steps + 1) // steps_per_epoch
    return factor ** np.searchsorted(np.asarray(sorted(milestones)), epochs, side="right")


def _cosine(n: int, start: float, end: float) -> np.ndarray:
    """n values from start to end along half a cosine (flat at both ends)."""
    return end + (start - end) * (1 + np.cos(np.pi * np.linspace(0, 1, n))) / 2


def one_cycle(total_steps: int, peak_at: float = 0.3, div_factor: float = 25.0,
              final_div_factor: float = 1e4) -> np.ndarray:
    """Smith's one cycle, step for step as torch's OneCycleLR: cosine up from 1/div_factor
    to 1 over the first `peak_at` of the run, then cosine down to
    1/(div_factor * final_div_factor) at the last step."""
    start, end = 1 / div_factor, 1 / (div_factor * final_div_factor)
    return _two_cosines(total_steps, peak_at, start, 1.0, end)


def one_cycle_momentum(total_steps: int, peak_at: float, low: float,
                       high: float) -> np.ndarray:
    """The momentum that goes with one_cycle: down while the lr rises, up while it falls."""
    return _two_cosines(total_steps, peak_at, high, low, high)


def _two_cosines(total_steps: int, peak_at: float, start: float, middle: float,
                 end: float) -> np.ndarray:
    """Half-cosines start -> middle, reached at step peak_at*total - 1, -> end at the last
    step (OneCycleLR's phase boundaries); the value after the last step stays at end."""
    t = np.minimum(np.arange(total_steps + 1, dtype=float), total_steps - 1)
    turn, last = peak_at * total_steps - 1, total_steps - 1
    rising = t <= turn
    fraction = np.where(rising, t / max(turn, 1e-12), (t - turn) / max(last - turn, 1e-12))
    a, b = np.where(rising, start, middle), np.where(rising, middle, end)
    return b + (a - b) * (1 + np.cos(np.pi * fraction)) / 2


def warmup_then(total_steps: int, warmup: float, shape: str, flat: float = 0.0) -> np.ndarray:
    """Linear warm-up from 0 over the first `warmup` of the run, then `shape` down to 0:
    "linear", "cosine", or "flat_cosine" (flat at 1 until `flat` of the run, then cosine,
    fast.ai's fit_flat_cos)."""
    up = int(warmup * total_steps)
    hold = max(up, int(flat * total_steps)) if shape == "flat_cosine" else up
    rest = total_steps - hold + 1
    if shape == "linear":
        down = np.linspace(1.0, 0.0, rest)
    elif shape in ("cosine", "flat_cosine"):
        down = _cosine(rest, 1.0, 0.0)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return np.concatenate([np.linspace(0.0, 1.0, up + 1)[:-1] if up else [], np.ones(hold - up),
                           down])


# By name, for a config with the fields each reads: a (config, steps in the run, steps per
# epoch) -> multipliers function.
LR_SCHEDULES: dict[str, Callable[[object, int, int], np.ndarray]] = {
    "constant": lambda c, steps, per_epoch: constant(steps),
    "step": lambda c, steps, per_epoch: step_decay(steps, per_epoch, c.milestones,
                                                   c.step_factor),
    "onecycle": lambda c, steps, per_epoch: one_cycle(steps, c.peak_at, c.div_factor,
                                                      c.final_div_factor),
    "piecewise": lambda c, steps, per_epoch: piecewise_linear(
        steps, list(zip(c.knots[::2], c.knots[1::2]))),
    "linear": lambda c, steps, per_epoch: warmup_then(steps, c.warmup, "linear"),
    "cosine": lambda c, steps, per_epoch: warmup_then(steps, c.warmup, "cosine"),
    "flat_cosine": lambda c, steps, per_epoch: warmup_then(steps, c.warmup, "flat_cosine",
                                                           c.flat_until),
}
