"""Plots of a recipe's schedules, drawn with matplotlib (the optional `plot` extra).

Only matplotlib's object API is used (no pyplot), so plotting never touches a global
backend or opens a window.
"""

from __future__ import annotations

import numpy as np

from ..bench.flops import TRAIN_IMAGES, set_up_without_data
from ..errors import InputError


def schedule_figure(recipe, config=None, train_images: int = TRAIN_IMAGES):
    """The recipe's lr multiplier at every step of a full run and, when it averages its
    weights, the averaging decay at each update below it; x in epochs."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise InputError('plotting needs matplotlib: pip install "fastcifar[plot]"') from None
    config = config or recipe.config
    run = set_up_without_data(recipe, config, train_images)
    training, per_epoch, steps = run.training, run.steps_per_epoch, run.steps

    average = training.average
    figure = Figure(figsize=(8, 5.5 if average else 3.5), layout="constrained")
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
