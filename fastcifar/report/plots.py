"""Plots of a recipe's schedules and of the LR finder's sweep, drawn with matplotlib (the
optional `plot` extra).

Only matplotlib's object API is used (no pyplot), so plotting never touches a global
backend or opens a window.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..bench.flops import TRAIN_IMAGES, set_up_without_data
from ..data.cache import atomic_path
from ..errors import InputError


def new_figure(**kwargs):
    """A matplotlib Figure (constrained layout), or InputError naming the extra to install."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise InputError('plotting needs matplotlib: pip install "fastcifar[plot]"') from None
    return Figure(layout="constrained", **kwargs)


def save_png(figure, path: Path, dpi: int = 120) -> None:
    """Write the figure as a PNG, atomically; an unwritable path is an InputError."""
    try:
        with atomic_path(path) as tmp:
            figure.savefig(tmp, format="png", dpi=dpi)
    except OSError as e:
        raise InputError(f"{path}: cannot write it: {e.strerror or e}") from None


def schedule_figure(recipe, config=None, train_images: int = TRAIN_IMAGES):
    """The recipe's lr multiplier at every step of a full run and, when it averages its
    weights, the averaging decay at each update below it; x in epochs."""
    config = config or recipe.config
    run = set_up_without_data(recipe, config, train_images)
    training, per_epoch, steps = run.training, run.steps_per_epoch, run.steps

    average = training.average
    figure = new_figure(figsize=(8, 5.5 if average else 3.5))
    axes = figure.subplots(2 if average else 1, 1, sharex=True, squeeze=False)[:, 0]
    lr = axes[0]
    lr.plot(np.arange(steps + 1) / per_epoch, training.lr_multipliers, color="tab:blue")
    lr.set_ylabel("lr multiplier")
    lr.set_ylim(bottom=0)
    lr.set_title(f"{recipe.name}: {steps} steps of {config.batch_size} images "
                 f"({config.epochs:g} epochs of {train_images} images)")
    if average is not None:
        # The loop updates the average after every average_every-th step (1-based).
        updates = np.arange(training.average_every, steps + 1, training.average_every)
        decay = axes[1]
        decay.plot(updates / per_epoch, [training.average_decay(int(s)) for s in updates],
                   color="tab:orange")
        kind = "lookahead" if average.copy_back else "EMA"
        decay.set_ylabel(f"{kind} decay\n(every {training.average_every} steps)")
        decay.set_ylim(bottom=0)
    for ax in axes:
        ax.grid(True, alpha=0.3)
        ax.set_xlim(0, steps / per_epoch)
    axes[-1].set_xlabel("epoch")
    return figure


SUGGESTION_COLOURS = {"valley": "tab:green", "steepest": "tab:orange", "min_div_10": "tab:purple"}


def lr_finder_figure(result):
    """An LR finder's loss against the lr (log axis, the config's main lr setting; the
    multiplier on top): raw losses faint, the smoothed curve bold, each suggestion marked
    and labelled, the recommended one starred, and the recipe's tuned lr (or, for a sweep
    of no recipe, the starting lrs) as a dashed line."""
    from ..train.lr_finder import main_lr

    name = main_lr(result.base_lrs)
    base = result.base_lrs[name]
    figure = new_figure(figsize=(8, 5))
    ax = figure.subplots()
    raw, smoothed = np.asarray(result.losses, float), np.asarray(result.smoothed, float)
    ax.plot(np.multiply(result.multipliers, base), raw, color="0.6", alpha=0.5, lw=1,
            label="loss per example")
    ax.plot(np.multiply(result.multipliers, base), smoothed, color="tab:blue", lw=2,
            label=f"smoothed (EMA, beta {result.settings.get('beta', 0):.3g})")
    ax.set_xscale("log")
    top = ax.secondary_xaxis("top", functions=(lambda x: x / base, lambda m: m * base))
    top.set_xlabel("multiplier of the config's lrs")
    ax.set_xlabel(f"{name} (config units)" if result.recipe else f"lr of {name}")
    ax.set_ylabel("training loss")

    if result.tuned_lrs:
        tuned = result.tuned_lrs[name]
        ax.axvline(tuned, color="black", ls="--", lw=1, label=f"tuned {name} {tuned:.4g}")
    else:
        ax.axvline(base, color="black", ls="--", lw=1, label="the starting lrs (1x)")
    for i, (rule, s) in enumerate((r, s) for r, s in result.suggestions.items() if s):
        best = rule == result.recommended
        x = s.multiplier * base
        ax.plot([x], [s.loss], marker="*" if best else "o", ms=16 if best else 8,
                color=SUGGESTION_COLOURS.get(rule, "tab:red"), mec="black", zorder=5, ls="none",
                label=f"{rule}{' (recommended)' if best else ''}: {name} {x:.3g} "
                      f"({s.multiplier:.3g}x)")
        ax.annotate(rule, (x, s.loss), xytext=(8, 14 + 14 * i), textcoords="offset points",
                    fontweight="bold" if best else "normal", fontsize=9,
                    arrowprops=dict(arrowstyle="-", color="0.4", lw=0.8))

    finite = smoothed[np.isfinite(smoothed)]
    if len(finite):
        # Up to the highest smoothed point before the minimum: a divergence is left off.
        peak = finite[:int(np.argmin(finite)) + 1].max()
        low = min(finite.min(), np.nanmin(np.where(np.isfinite(raw), raw, np.nan)))
        ax.set_ylim(low - 0.05 * (peak - low), peak + 0.25 * (peak - low) + 1e-3)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    title = f"{result.recipe}: LR range test" if result.recipe else "LR range test"
    batch = result.settings.get("batch_size")
    ax.set_title(f"{title}, {len(result.multipliers)} steps"
                 f"{f' of {batch} images' if batch else ''}\n{result.stopped}", fontsize=10)
    return figure


def metrics_figure(rows: list[dict]):
    """A run folder's per-epoch metrics (metrics.jsonl rows): loss, accuracy (top-1, and
    top-5 on the validation set) and the lr multiplier against the epoch, a line per run."""
    figure = new_figure(figsize=(12, 3.8))
    loss, accuracy, lr = figure.subplots(1, 3)
    runs = sorted({r["run"] for r in rows})
    for run in runs:
        epochs = [r for r in rows if r["run"] == run]
        x = [r["epoch"] for r in epochs]
        label = f" (run {run})" if len(runs) > 1 else ""
        for ax, key, style, name in (
                (loss, "train_loss", "-", "train"), (loss, "val_loss", "--", "val"),
                (accuracy, "train_accuracy", "-", "train top-1"),
                (accuracy, "val_accuracy", "--", "val top-1"),
                (accuracy, "val_top5", ":", "val top-5"), (lr, "lr", "-", "lr multiplier")):
            values = [r.get(key) for r in epochs]
            if all(v is not None for v in values):
                ax.plot(x, values, style, marker="o", markersize=3, label=name + label)
    for ax, title in ((loss, "loss (per example)"), (accuracy, "accuracy"),
                      (lr, "lr multiplier at the epoch's end")):
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    loss.legend(fontsize="small")
    accuracy.legend(fontsize="small")
    return figure
