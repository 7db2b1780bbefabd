"""Plots of a recipe's schedules and of a run's metrics, drawn with matplotlib (the
optional `plot` extra).

Only matplotlib's object API is used (no pyplot), so plotting never touches a global
backend or opens a window.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError
from ..files import atomic_path


def new_figure(**kwargs):
    """A matplotlib Figure (constrained layout), or InputError naming the extra to install."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise InputError('plotting needs matplotlib: pip install "fastcifar[plot]"') from None
    return Figure(layout="constrained", **kwargs)


def save_png(figure, path: Path, dpi: int = 120) -> None:
    """Write the figure as a PNG, atomically; a name without .png or an unwritable path
    is an InputError."""
    if Path(path).suffix.lower() != ".png":
        raise InputError(f"--out {path}: expected a .png file name")
    try:
        with atomic_path(path) as tmp:
            figure.savefig(tmp, format="png", dpi=dpi)
    except OSError as e:
        raise InputError(f"{path}: cannot write it: {e.strerror or e}") from None


def schedule_figure(recipe, config, run, train_images: int):
    """The recipe's lr multiplier at every step of `run` (a train.setup.RunParts of
    `config` for `train_images` images an epoch) and, when it averages its weights, the
    averaging decay at each update below it; x in epochs."""
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
        updates = np.arange(training.average_start + training.average_every, steps + 1,
                            training.average_every)
        decay = axes[1]
        decay.plot(updates / per_epoch, [training.average_decay(int(s)) for s in updates],
                   color="tab:orange", marker="o" if len(updates) < 30 else None, markersize=3)
        decay.set_ylabel(f"{average.name} decay\n(every {training.average_every} steps)")
        decay.set_ylim(bottom=0)
    for ax in axes:
        ax.grid(True, alpha=0.3)
        ax.set_xlim(0, steps / per_epoch)
    axes[-1].set_xlabel("epoch")
    return figure


METRIC_LINES = (("loss", "train_loss", "-", "train"), ("loss", "val_loss", "--", "val"),
                ("accuracy", "train_accuracy", "-", "train top-1"),
                ("accuracy", "val_accuracy", "--", "val top-1"),
                ("accuracy", "val_top5", ":", "val top-5"), ("lr", "lr", "-", "lr multiplier"))
PERCENT = {"train_accuracy", "val_accuracy", "val_top5"}


def metrics_figure(rows: list[dict], title: str = "", final: dict[int, float] | None = None):
    """A run folder's per-epoch metrics (metrics.jsonl rows): loss, accuracy in % (top-1,
    and top-5 on the validation set) and the lr multiplier against the epoch. A colour per
    run, a line style per metric; `final` (run -> accuracy after TTA) is marked with a star
    at the last epoch."""
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    figure = new_figure(figsize=(12, 4.2))
    axes = dict(zip(("loss", "accuracy", "lr"), figure.subplots(1, 3)))
    runs = sorted({r["run"] for r in rows})
    for i, run in enumerate(runs):
        epochs = [r for r in rows if r["run"] == run]
        x = [r["epoch"] for r in epochs]
        for panel, key, style, _ in METRIC_LINES:
            values = [r.get(key) for r in epochs]
            if all(v is not None for v in values):
                scale = 100 if key in PERCENT else 1
                axes[panel].plot(x, [scale * v for v in values], style, color=f"C{i}",
                                 marker="o", markersize=3)
        if final and run in final and x:
            axes["accuracy"].plot([x[-1]], [100 * final[run]], "*", color=f"C{i}", ms=12,
                                  mec="black")
    for panel, name in (("loss", "loss (per example)"), ("accuracy", "accuracy (%)"),
                        ("lr", "lr multiplier at the epoch's end")):
        axes[panel].set_title(name)
        axes[panel].set_xlabel("epoch")
        axes[panel].xaxis.set_major_locator(MaxNLocator(integer=True))
        axes[panel].grid(alpha=0.3)
    for panel in ("loss", "accuracy"):  # line styles name the metrics, colours the runs
        styles = [Line2D([], [], color="0.3", ls=style, label=name)
                  for where, _, style, name in METRIC_LINES if where == panel]
        if panel == "accuracy" and final:
            styles.append(Line2D([], [], color="0.3", marker="*", ls="none", ms=10,
                                 label="val top-1 after TTA"))
        axes[panel].legend(handles=styles, fontsize="small")
    if len(runs) > 1:
        axes["lr"].legend(handles=[Line2D([], [], color=f"C{i}", label=f"run {run}")
                                   for i, run in enumerate(runs)], fontsize="small")
    if title:
        figure.suptitle(title)
    return figure
