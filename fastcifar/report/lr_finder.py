"""The LR finder's result as files (lr_find.json, lr_find.png) and as a table."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from ..train.lr_finder import RESULT_FILE
from ..train.lr_rules import RULES, LRFinderResult, main_lr
from .plots import new_figure, save_png
from .records import RunFolder

PLOT_FILE = "lr_find.png"


def write_result(result: LRFinderResult, folder: Path, plot: bool | None = None) -> list[Path]:
    """Write lr_find.json and lr_find.png into `folder`, each atomically; `plot` None: the
    plot if matplotlib is installed."""
    if plot is None:
        plot = importlib.util.find_spec("matplotlib") is not None
    out = RunFolder(folder)
    out.write_json(RESULT_FILE, result.to_dict())
    written = [out.path / RESULT_FILE]
    if plot:
        save_png(lr_finder_figure(result), out.path / PLOT_FILE)
        written.append(out.path / PLOT_FILE)
    return written


def summary_lines(result: LRFinderResult) -> list[str]:
    """The suggestions as a small table, the recommendation and why, and how it compares
    with the recipe's tuned lr."""
    def number(value, spec):
        return "-" if value is None else format(value, spec)

    header = ["rule", "multiplier", *result.base_lrs, *(["x tuned"] if result.tuned_lrs else [])]
    rows = [header]
    for rule in RULES:
        s = result.suggestions.get(rule)
        rows.append([rule + (" *" if rule == result.recommended else ""),
                     number(s and s.multiplier, ".3g"),
                     *(number(s and s.values[n], ".4g") for n in result.base_lrs),
                     *([number(s and result.times_tuned(s.multiplier), ".3g")]
                       if result.tuned_lrs else [])])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in
                       enumerate(zip(row, widths))) for row in rows]
    best = result.recommendation
    if best is None:
        return [*lines, f"no recommendation: {result.reason}"]
    lines.append(f"recommended (*): {best.rule}: {result.reason}")
    name = main_lr(result.base_lrs)
    if result.tuned_lrs:
        lines.append(f"{name} {best.values[name]:.4g} is {result.times_tuned(best.multiplier):.3g}x"
                     f" the recipe's tuned {name} {result.tuned_lrs[name]:.4g}")
    return lines


SUGGESTION_COLOURS = {"valley": "tab:green", "steepest": "tab:orange", "min_div_10": "tab:purple"}


def lr_finder_figure(result):
    """An LR finder's loss against the lr (log axis, the config's main lr setting; the
    multiplier on top): raw losses faint, the smoothed curve bold, each suggestion marked
    and labelled, the recommended one starred, and the recipe's tuned lr (or, for a sweep
    of no recipe, the starting lrs) as a dashed line."""
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
