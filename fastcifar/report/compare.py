"""Run folders side by side: each one's accuracy (mean and 95% confidence interval), its
seconds per run, and the settings and hyperparameters in which the folders differ; and a
plot of every folder's accuracies."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..stats import CLIPPED, Summary, accuracy_interval, summarize
from ..errors import InputError
from .plots import new_figure
from .records import read_finished_runs, read_run_settings

NOT_COMPARED = {"fastcifar", "classes", "config", "runs", "seed"}


@dataclass(frozen=True)
class ComparedRun:
    folder: Path
    settings: dict  # config.json: the session's settings, "config" the recipe's values
    accuracies: list[float]
    seconds: list[float]

    @property
    def accuracy(self) -> Summary:
        return summarize(self.accuracies)

    def values(self) -> dict:
        """Every setting and hyperparameter, flat: the recipe's under their own names."""
        flat = {k: v for k, v in self.settings.items() if k not in NOT_COMPARED}
        return {**flat, **self.settings["config"]}


def read_compared(folders: list[Path]) -> list[ComparedRun]:
    runs = []
    for folder in folders:
        settings, finished = read_run_settings(folder), read_finished_runs(folder)
        if not finished:
            raise InputError(f"{folder}: no finished run to compare (its summary.json is "
                             f"missing or empty)")
        runs.append(ComparedRun(Path(folder), settings, [r["accuracy"] for r in finished],
                                [r["train_seconds"] for r in finished]))
    return runs


def differing(runs: list[ComparedRun]) -> list[str]:
    """The names whose values are not the same in every folder, in first-seen order: the
    session's settings and the recipes' resolved hyperparameters (those of different
    recipes too: a recipe file's Narrow against airbench94 shows its widths; a name one
    recipe lacks shows as -)."""
    values = [r.values() for r in runs]
    names = list(dict.fromkeys(k for v in values for k in v))
    return [k for k in names if any(v.get(k) != values[0].get(k) for v in values)]


def compare_lines(runs: list[ComparedRun]) -> list[str]:
    """A row per folder (numbered), then a line per setting or hyperparameter that differs."""
    width = max(10, *(len(str(r.folder)) for r in runs))
    out = [f"{'':>3} {'run folder':<{width}}  {'recipe':<18} {'runs':>4}  {'accuracy':>8}  "
           f"{'95% CI':<17} {'seconds':>9}"]
    clipped = False
    for i, r in enumerate(runs, 1):
        a = r.accuracy
        low, high = accuracy_interval(a.ci95)
        clipped |= (low, high) != a.ci95
        ci = f"{low:>7.2%}-{high:<8.2%}" if a.n > 1 else f"{'-':<16}"
        out.append(f"{i:>3} {str(r.folder):<{width}}  {r.settings['recipe']:<18} {a.n:>4}  "
                   f"{a.mean:>8.2%}  {ci} {np.mean(r.seconds):>9.2f}")
    keys = differing(runs)
    if clipped:
        out.append(CLIPPED)
    out.append("")
    out.append("what differs:" if keys else "the settings and hyperparameters are the same")
    for key in keys:
        out.append(f"  {key}: " + "; ".join(f"{i}={r.values().get(key, '-')}"
                                            for i, r in enumerate(runs, 1)))
    return out


def compare_figure(runs: list[ComparedRun]):
    """Each folder's accuracies as points, with the mean and its 95% interval."""
    figure = new_figure(figsize=(max(4.5, 1.3 * len(runs) + 2), 4))
    ax = figure.add_subplot()
    rng = np.random.default_rng(0)
    for i, r in enumerate(runs):
        a = r.accuracy
        values = 100 * np.array(r.accuracies)
        ax.scatter(i + rng.uniform(-0.12, 0.12, len(values)), values, s=14, alpha=0.6,
                   color=f"C{i}")
        low, high = accuracy_interval(a.ci95)
        ax.errorbar(i + 0.25, 100 * a.mean, yerr=[[100 * (a.mean - low)], [100 * (high - a.mean)]],
                    fmt="o", color="black", capsize=4)
    ax.set_xticks(range(len(runs)),
                  [f"{i}: {r.folder.name}\n{r.settings['recipe']} (n={len(r.accuracies)})"
                   for i, r in enumerate(runs, 1)],
                  fontsize=8)
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("accuracy per run; black: mean and 95% CI", fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    return figure
