"""Statistics over repeated runs: mean, sample std, Student-t 95% confidence interval."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass


def student_t_cdf(t: float, dof: int) -> float:
    """P(T <= t) for Student's t with dof degrees of freedom (Simpson's rule on the density)."""
    if t < 0:
        return 1 - student_t_cdf(-t, dof)
    log_norm = math.lgamma((dof + 1) / 2) - math.lgamma(dof / 2) - 0.5 * math.log(dof * math.pi)

    def density(x):
        return math.exp(log_norm - (dof + 1) / 2 * math.log1p(x * x / dof))

    n = 2000  # even; the density is smooth, so this is accurate to ~1e-10
    h = t / n
    s = density(0) + density(t) + sum((4 if i % 2 else 2) * density(i * h) for i in range(1, n))
    return 0.5 + s * h / 3


def student_t_quantile(p: float, dof: int) -> float:
    """The t with P(T <= t) = p, by bisection."""
    lo, hi = -1e3, 1e3
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if student_t_cdf(mid, dof) < p else (lo, mid)
    return (lo + hi) / 2


@dataclass(frozen=True)
class Summary:
    n: int
    mean: float
    std: float  # sample standard deviation (n - 1), 0 for one run
    ci95_low: float  # Student-t interval for the mean; equal to the mean for one run
    ci95_high: float
    min: float
    max: float

    @property
    def ci95(self) -> tuple[float, float]:
        """The 95% confidence interval of the mean, (low, high)."""
        return self.ci95_low, self.ci95_high

    def as_dict(self) -> dict:
        return asdict(self)

    def percent(self) -> str:
        """The summary of accuracies (fractions) in percent: the value alone for one run."""
        if self.n == 1:
            return f"{100 * self.mean:.2f}%"
        low, high = accuracy_interval(self.ci95)
        note = (f" (clipped to 0-100%: {self.n} runs are too few for a narrow interval)"
                if (low, high) != self.ci95 else "")
        return (f"mean {100 * self.mean:.2f}%, std {100 * self.std:.2f}, 95% CI "
                f"[{100 * low:.2f}, {100 * high:.2f}]{note}, min {100 * self.min:.2f}, "
                f"max {100 * self.max:.2f}")


CLIPPED = "(intervals clipped to 0-100%: too few runs for a narrow interval)"  # (a table's note)


def accuracy_interval(interval) -> tuple[float, float]:
    """An interval of accuracies as shown: an accuracy lies in [0, 1], so an interval past
    either end (Student's t with one or two degrees of freedom is very wide) is clipped to
    it. The one rule of every table that prints one (say so where it clips)."""
    low, high = interval
    return max(low, 0.0), min(high, 1.0)


def summarize(values: list[float]) -> Summary:
    if not values:
        raise ValueError("no values to summarize")
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    half = student_t_quantile(0.975, n - 1) * std / math.sqrt(n) if n > 1 else 0.0
    return Summary(n, mean, std, mean - half, mean + half, min(values), max(values))
