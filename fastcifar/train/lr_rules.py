"""The LR finder's reading of its curve: suggestion rules, each a pure function of
(multipliers, smoothed losses), the recommendation among them, and the result of a sweep.

An EMA lags: on made-up curves the suggestions of a 100-step sweep come out 0.2 to 0.7
decades above those of the noise-free curve, so treat them as upper ends.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

MIN_DROP = 0.02  # a curve whose smoothed loss never fell by 2% has no usable descent
VALLEY_DEPTH = 2 / 3  # the valley rule's point: this far down the descent's loss drop
RULES = ("valley", "steepest", "min_div_10")  # also the order of preference


def steepest(multipliers, smoothed) -> float | None:
    """Where the smoothed loss falls fastest against log(lr), on the way down to its
    minimum; the first tenth of the points (where the EMA has little history) and the
    last twentieth are left out. None if the loss never fell."""
    x, y = _curve(multipliers, smoothed)
    lowest = int(np.argmin(y))
    first, last = len(y) // 10, min(lowest, len(y) - 1 - len(y) // 20)
    if not _fell(y) or last - first < 1:
        return None
    slopes = np.gradient(y, np.log(x))[first:last + 1]
    i = int(np.argmin(slopes))
    return float(x[first + i]) if slopes[i] < 0 else None


def valley(multipliers, smoothed) -> float | None:
    """The point VALLEY_DEPTH of the way down the longest descent of the curve (its longest
    series of points each lower than the last, bumps skipped), measured in loss rather than
    in lr so that it does not depend on where the sweep started. None when that descent is
    too short (fewer than max(3, a tenth of the points)) or too shallow (under MIN_DROP)."""
    x, y = _curve(multipliers, smoothed)
    top, bottom, points = _longest_descent(y)
    if points < max(3, len(y) // 10) or not y[bottom] < y[top] - MIN_DROP * abs(y[top]):
        return None
    goal = y[top] - VALLEY_DEPTH * (y[top] - y[bottom])
    return float(x[top + int(np.argmax(y[top:bottom + 1] <= goal))])


def min_div_10(multipliers, smoothed) -> float | None:
    """A tenth of the multiplier at the smoothed loss's minimum (None if it never fell)."""
    x, y = _curve(multipliers, smoothed)
    return float(x[np.argmin(y)] / 10) if _fell(y) else None


def recommend(multipliers, smoothed) -> tuple[str | None, str]:
    """(the rule to follow, why): valley unless it is degenerate, then steepest, then
    min_div_10; none when the loss never fell."""
    x, y = _curve(multipliers, smoothed)
    if not _fell(y):
        return None, (f"the smoothed loss never fell by {MIN_DROP:.0%}: no lr in the sweep "
                      f"trains; sweep a wider range or more steps")
    found = {rule: SUGGESTION_RULES[rule](x, y) for rule in RULES}
    if found["valley"] is not None:
        rule, why = "valley", ("a point 2/3 of the way down the longest descent of the loss: "
                               "still learning fast, with margin below the minimum")
    elif found["steepest"] is not None:
        rule, why = "steepest", ("the descent is too short or shallow for valley; the "
                                 "steepest fall of the loss is the next most robust point")
    else:
        rule, why = "min_div_10", ("no clear descent for valley or steepest; a tenth of the "
                                   "lr at the loss minimum is the cautious choice")
    if int(np.argmin(y)) >= len(y) - max(1, len(y) // 20):
        why += ("; the loss was still falling at the end of the sweep, so the best lr may be "
                "higher: sweep to a larger end")
    return rule, why


SUGGESTION_RULES: dict[str, Callable] = {"steepest": steepest, "valley": valley,
                                         "min_div_10": min_div_10}


def _curve(multipliers, smoothed) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(multipliers, dtype=float), np.asarray(smoothed, dtype=float)
    if x.shape != y.shape or x.ndim != 1 or len(x) < 2:
        raise ValueError(f"expected two equally long curves of 2+ points, got {x.shape}, {y.shape}")
    if not np.all(np.diff(x) > 0) or x[0] <= 0:
        raise ValueError("multipliers must be positive and increasing")
    # A non-finite loss ends a sweep; it is never the minimum nor part of a descent.
    return x, np.where(np.isfinite(y), y, np.inf)


def _fell(y: np.ndarray) -> bool:
    """Did the loss fall by MIN_DROP from the highest point before its minimum?"""
    lowest = int(np.argmin(y))
    peak = y[:lowest + 1].max()
    return y[lowest] < peak - MIN_DROP * abs(peak)


def _longest_descent(y: np.ndarray) -> tuple[int, int, int]:
    """(first index, last index, length) of the longest strictly decreasing subsequence."""
    length, first = np.ones(len(y), dtype=int), np.arange(len(y))
    for i in range(1, len(y)):
        higher = np.flatnonzero(y[:i] > y[i])
        if len(higher):
            j = higher[np.argmax(length[higher])]  # the first of the longest, on ties
            length[i], first[i] = length[j] + 1, first[j]
    last = int(np.argmax(length))
    return int(first[last]), last, int(length[last])


@dataclass
class Suggestion:
    rule: str
    multiplier: float  # of the lrs the sweep started from
    loss: float  # the smoothed loss there
    values: dict[str, float]  # each lr setting times the multiplier, e.g. {"lr": 5.9}


@dataclass
class LRFinderResult:
    multipliers: list[float]  # the multiplier of every step taken
    losses: list[float]  # each step's loss per example (nan if it was not finite)
    smoothed: list[float]  # the bias-corrected EMA of the losses
    stopped: str  # why the sweep ended
    base_lrs: dict[str, float]  # the lr settings that multiplier 1 stands for
    suggestions: dict[str, Suggestion | None]  # by rule; None where a rule finds nothing
    recommended: str | None  # a rule name, or None if no lr in the sweep trains
    reason: str  # why that rule
    tuned_lrs: dict[str, float] | None = None  # the recipe's own lrs, to compare with
    recipe: str | None = None
    config: dict | None = None
    settings: dict = field(default_factory=dict)  # start, end, steps, beta, seed, ...

    @property
    def recommendation(self) -> Suggestion | None:
        return self.suggestions[self.recommended] if self.recommended else None

    def lrs(self) -> dict[str, list[float]]:
        """Every step's lr setting by name, in the config's units."""
        return {name: [base * m for m in self.multipliers] for name, base in self.base_lrs.items()}

    def times_tuned(self, multiplier: float) -> float | None:
        """How many times the recipe's tuned lr a multiplier of the base lrs is."""
        if not self.tuned_lrs:
            return None
        name = main_lr(self.base_lrs)
        return multiplier * self.base_lrs[name] / self.tuned_lrs[name]

    def to_dict(self) -> dict:
        suggestions = {r: dataclasses.asdict(s) if s else None for r, s in self.suggestions.items()}
        return {"recipe": self.recipe, "config": self.config, "settings": self.settings,
                "base_lrs": self.base_lrs, "tuned_lrs": self.tuned_lrs,
                "recommended": self.recommended, "reason": self.reason,
                "suggestions": suggestions, "stopped": self.stopped,
                "multipliers": self.multipliers, "lrs": self.lrs(),
                "losses": [_finite_or_none(v) for v in self.losses],
                "smoothed": [_finite_or_none(v) for v in self.smoothed]}

    @classmethod
    def from_dict(cls, d: dict) -> "LRFinderResult":
        nan = float("nan")
        return cls(multipliers=d["multipliers"],
                   losses=[nan if v is None else v for v in d["losses"]],
                   smoothed=[nan if v is None else v for v in d["smoothed"]],
                   stopped=d["stopped"], base_lrs=d["base_lrs"],
                   suggestions={r: Suggestion(**s) if s else None
                                for r, s in d["suggestions"].items()},
                   recommended=d["recommended"], reason=d["reason"], tuned_lrs=d["tuned_lrs"],
                   recipe=d["recipe"], config=d["config"], settings=d["settings"])


def main_lr(lrs: dict[str, float]) -> str:
    """The lr setting a plot's axis and a comparison use: `lr` if there is one."""
    return "lr" if "lr" in lrs else next(iter(lrs))


def suggestions_for(multipliers, smoothed, base_lrs: dict[str, float]) -> dict:
    """Every rule's Suggestion (or None) for a smoothed curve."""
    x, y = _curve(multipliers, smoothed)
    found = {}
    for rule, fn in SUGGESTION_RULES.items():
        m = fn(x, y)
        found[rule] = None if m is None else Suggestion(
            rule, m, float(np.interp(np.log(m), np.log(x), y)),
            {name: base * m for name, base in base_lrs.items()})
    return found


def _finite_or_none(v: float) -> float | None:
    return v if math.isfinite(v) else None  # JSON has no NaN


class BiasCorrectedEMA:
    """An exponential moving average whose early values are not pulled towards 0."""

    def __init__(self, beta: float):
        self.beta, self.average, self.count = beta, 0.0, 0

    def update(self, value: float) -> float:
        self.count += 1
        self.average = self.beta * self.average + (1 - self.beta) * value
        return self.average / (1 - self.beta ** self.count)


def smooth(values, beta: float) -> list[float]:
    ema = BiasCorrectedEMA(beta)
    return [ema.update(v) for v in values]
