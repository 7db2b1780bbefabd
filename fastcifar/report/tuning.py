"""The plots of a hyperparameter search (fastcifar/sessions/tune.py), from its trials as rows:
the objective per trial with the best so far, the objective against each parameter, and
the parameters' importances."""

from __future__ import annotations

import numpy as np

from .plots import new_figure

def history_figure(rows: list[dict], title: str):
    figure = new_figure(figsize=(6.5, 4))
    ax = figure.add_subplot()
    done = [r for r in rows if r["state"] == "complete"]
    ax.scatter([r["number"] for r in done], [100 * r["value"] for r in done], s=18,
               color="C0", label="complete trial")
    pruned = [r for r in rows if r["state"] == "pruned"]
    for r in pruned:
        ax.axvline(r["number"], color="C7", alpha=0.3, lw=1)
    if pruned:
        ax.plot([], [], color="C7", alpha=0.5, label="pruned trial")
    if done:
        order = sorted(done, key=lambda r: r["number"])
        best = np.maximum.accumulate([100 * r["value"] for r in order])
        ax.step([r["number"] for r in order], best, where="post", color="C3", label="best so far")
    ax.set_xlabel("trial")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_ylabel("objective (accuracy, %)")
    ax.set_title(f"{title}: {len(done)} complete, {len(pruned)} pruned", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return figure


def slice_figure(rows: list[dict], dims):
    """The objective of every complete trial against each parameter (log axes where the
    search was log-spaced)."""
    figure = new_figure(figsize=(3.2 * len(dims) + 0.5, 3.4))
    done = [r for r in rows if r["state"] == "complete"]
    for i, d in enumerate(dims):
        ax = figure.add_subplot(1, len(dims), i + 1)
        x = [r[d.name] for r in done]
        if d.choices:
            labels = [str(c) for c in d.choices]
            x = [labels.index(str(v)) for v in x]
            ax.set_xticks(range(len(labels)), labels)
        ax.scatter(x, [100 * r["value"] for r in done], s=18,
                   c=[r["number"] for r in done], cmap="viridis")
        if d.log:
            ax.set_xscale("log")
            ticks = np.geomspace(d.low, d.high, 4)
            ax.set_xticks(ticks, [f"{t:.3g}" for t in ticks])
            ax.minorticks_off()
        ax.set_xlabel(d.name)
        ax.grid(alpha=0.3)
        if i == 0:
            ax.set_ylabel("objective (accuracy, %)")
    figure.suptitle("each complete trial (colour: trial number)", fontsize=9)
    return figure


FEW_TRIALS = 20  # below this many complete trials, fANOVA's forest ranks little but noise


def importance_caveat(trials: int) -> str:
    """What the importances of `trials` complete trials are worth."""
    if trials < FEW_TRIALS:
        return (f"from {trials} complete trials: too few for fANOVA (tens are needed), "
                f"so a rough guess")
    return f"from {trials} complete trials"


def importance_figure(importances: dict[str, float], title: str, trials: int):
    figure = new_figure(figsize=(5.5, 0.5 * len(importances) + 1.8))
    ax = figure.add_subplot()
    names = list(importances)[::-1]
    ax.barh(names, [importances[n] for n in names],
            color="C0" if trials >= FEW_TRIALS else "0.6")
    ax.set_xlabel("importance (Optuna's fANOVA: share of the objective's variance)")
    ax.set_title(f"{title}\n{importance_caveat(trials)}", fontsize=9)
    return figure
