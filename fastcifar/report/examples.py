"""Scores of every training example from a run's per-example records (examples.npz,
written by `--record-examples`), as the data-pruning and label-noise literature defines
them, averaged over the runs (seeds) recorded:

- forgetting events (Toneva et al. 2019, "An Empirical Study of Example Forgetting"): how
  often an example went from classified right in one epoch it was seen to wrong in the
  next; one never classified right counts as forgotten every epoch (the paper ranks those
  hardest). Examples forgotten 0 times are the "unforgettable" ones;
- EL2N (Paul et al. 2021, "Deep Learning on a Data Diet"): the L2 norm of the softmax minus
  the one-hot label, early in training (the paper: a tenth of the way in, averaged over
  seeds; here at `el2n_epoch`, by default a fifth of the way, as these runs are short).
  A run that did not show an image in that epoch (recipes drop the last partial batch of
  an epoch) gives the image's error from the last epoch before that did;
- AUM, area under the margin (Pleiss et al. 2020, "Identifying Mislabeled Data using the
  Area Under the Margin Ranking"): the margin (the assigned label's logit minus the
  largest other) averaged over the epochs; mislabelled examples have the lowest;
- the data map (Swayamdipta et al. 2020, "Dataset Cartography"): confidence, the mean
  over epochs of the probability given to the label, against variability, its standard
  deviation over epochs: easy to learn (confident, stable), hard to learn (unconfident,
  stable; often mislabelled) and ambiguous (variable).

All are computed from what training saw, under each epoch's augmentation; the papers
compute some of them on unaugmented images, so the values differ in scale, not in kind.
"""

from __future__ import annotations

import csv
import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..files import atomic_path
from .plots import new_figure

EXAMPLES = "examples.npz"
# The data map's regions, by where an example lies relative to the data's own spread.
REGIONS = ("easy to learn", "ambiguous", "hard to learn")


@dataclass
class ExampleScores:
    index: np.ndarray  # positions in the training set of the scored (recorded) images
    labels: np.ndarray
    classes: list[str]
    forgetting: np.ndarray
    el2n: np.ndarray
    el2n_epoch: int  # 1-based
    aum: np.ndarray
    confidence: np.ndarray
    variability: np.ndarray
    correctness: np.ndarray  # the fraction of epochs it was classified right
    runs: int
    epochs: int

    def regions(self) -> np.ndarray:
        """Each example's data-map region (an index into REGIONS), relative to the data's
        own spread, as the paper selects them: the third most variable are ambiguous; of
        the rest, those at least as confident as their median are easy to learn, the
        others hard to learn. (A short run is never very confident: fixed thresholds
        would call everything hard.)"""
        ambiguous = self.variability >= np.quantile(self.variability, 2 / 3)
        middle = np.median(self.confidence[~ambiguous]) if (~ambiguous).any() else 0.0
        return np.where(ambiguous, 1, np.where(self.confidence >= middle, 0, 2))

    def hardest(self, per_class: int = 5) -> dict[str, list[int]]:
        """Each class's `per_class` images with the lowest AUM (training-set positions)."""
        out = {}
        for c, name in enumerate(self.classes):
            mine = np.flatnonzero(self.labels == c)
            out[name] = self.index[mine[np.argsort(self.aum[mine], kind="stable")[:per_class]]]\
                .tolist()
        return out


def read_examples(run: Path) -> dict[str, np.ndarray]:
    path = Path(run) / EXAMPLES if Path(run).is_dir() else Path(run)
    if not path.is_file():
        raise InputError(f"{run}: no {EXAMPLES} there; train with --record-examples "
                         f"(record_examples=True) to record what every example did")
    try:
        with np.load(path) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: not a readable {EXAMPLES} ({e})") from None


def score(examples: dict[str, np.ndarray], el2n_epoch: int | None = None) -> ExampleScores:
    """The scores of every image the runs recorded (those of its --subset)."""
    keep = examples["in_subset"]
    loss, correct = examples["loss"][..., keep], examples["correct"][..., keep]
    margin, error = examples["margin"][..., keep], examples["error"][..., keep]
    runs, epochs = loss.shape[:2]
    if el2n_epoch is None:
        el2n_epoch = max(1, round(epochs / 5))
    if not 1 <= el2n_epoch <= epochs:
        raise InputError(f"--el2n-epoch must be from 1 to the {epochs} epochs recorded, "
                         f"got {el2n_epoch}")
    probability = np.exp(-loss)  # of the label: the loss is plain cross-entropy
    with warnings.catch_warnings():  # an image no epoch of a run showed: NaN, not a warning
        warnings.simplefilter("ignore", RuntimeWarning)
        confidence = np.nanmean(probability, axis=1)  # (runs, images)
        variability = np.nanstd(probability, axis=1)
        correctness = np.nanmean(np.where(correct >= 0, correct, np.nan), axis=1)
        return ExampleScores(
            index=np.flatnonzero(keep), labels=examples["train_labels"][keep],
            classes=[str(c) for c in examples["classes"]],
            forgetting=forgetting_events(correct).mean(0),
            el2n=np.nanmean(last_seen(error, el2n_epoch), axis=0), el2n_epoch=el2n_epoch,
            aum=np.nanmean(margin, axis=1).mean(0),
            confidence=confidence.mean(0), variability=variability.mean(0),
            correctness=correctness.mean(0), runs=runs, epochs=epochs)


def last_seen(values: np.ndarray, epoch: int) -> np.ndarray:
    """(runs, epochs, images) with NaN where an epoch did not show the image -> (runs,
    images): each image's value in the last of the first `epoch` epochs that showed it
    (NaN if none did)."""
    out = np.full((values.shape[0], values.shape[2]), np.nan)
    for e in range(epoch):
        out = np.where(np.isnan(values[:, e]), out, values[:, e])
    return out


def forgetting_events(correct: np.ndarray) -> np.ndarray:
    """(runs, epochs, images) of 1 right, 0 wrong, -1 not seen -> (runs, images): the times
    an example went from right to wrong between consecutive epochs it was seen in; one never
    right, the number of epochs (Toneva et al.: forgotten throughout)."""
    runs, epochs, images = correct.shape
    events = np.zeros((runs, images))
    last = np.full((runs, images), -1)
    for e in range(epochs):
        now = correct[:, e]
        seen = now >= 0
        events += seen & (last == 1) & (now == 0)
        last = np.where(seen, now, last)
    never = ~(correct == 1).any(axis=1)
    return np.where(never, epochs, events)


def scores_csv(scores: ExampleScores) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["index", "label", "class", "forgetting_events",
                     f"el2n_epoch{scores.el2n_epoch}", "aum", "confidence", "variability",
                     "correctness", "region"])
    regions = scores.regions()
    for i in range(len(scores.index)):
        writer.writerow([scores.index[i], scores.labels[i], scores.classes[scores.labels[i]],
                         f"{scores.forgetting[i]:g}", f"{scores.el2n[i]:.5f}",
                         f"{scores.aum[i]:.5f}", f"{scores.confidence[i]:.5f}",
                         f"{scores.variability[i]:.5f}", f"{scores.correctness[i]:.4f}",
                         REGIONS[regions[i]]])
    return out.getvalue()


def data_map_figure(scores: ExampleScores, title: str = ""):
    """Swayamdipta et al.'s data map: variability (x) against confidence (y), each example
    coloured by how often it was classified right, the three regions named."""
    figure = new_figure(figsize=(7.5, 6))
    ax = figure.add_subplot()
    order = np.random.default_rng(0).permutation(len(scores.index))  # no class on top
    points = ax.scatter(scores.variability[order], scores.confidence[order], s=3,
                        c=scores.correctness[order], cmap="coolwarm_r", vmin=0, vmax=1,
                        alpha=0.6, linewidths=0)
    figure.colorbar(points, ax=ax, label="correctness (fraction of epochs right)")
    ax.set_xlabel("variability (std of the label's probability over epochs)")
    ax.set_ylabel("confidence (mean probability of the label)")
    ax.set_ylim(0, 1)
    right = float(np.nanmax(scores.variability)) * 1.08
    ax.set_xlim(0, right)
    # The regions' borders (see regions): the variability's 67th percentile, and left of
    # it the confidence's median.
    regions = scores.regions()
    counts = np.bincount(regions, minlength=3)
    split = float(np.quantile(scores.variability, 2 / 3))
    middle = float(np.median(scores.confidence[regions != 1])) if (regions != 1).any() else 0
    ax.axvline(split, color="0.3", lw=1, ls="--")
    ax.plot([0, split], [middle, middle], color="0.3", lw=1, ls="--")
    style = dict(fontsize=10, bbox=dict(boxstyle="round", facecolor="white", alpha=0.85))
    ax.text(split * 0.04, 0.97, f"easy to learn ({counts[0]:,})", va="top", **style)
    ax.text(split * 0.04, 0.02, f"hard to learn ({counts[2]:,})", va="bottom", **style)
    ax.text(right * 0.98, 0.97, f"ambiguous ({counts[1]:,})", ha="right", va="top", **style)
    ax.set_title(title or f"data map: {len(scores.index):,} training images, "
                          f"{scores.runs} run(s) of {scores.epochs} epochs")
    return figure


def write_report(run: Path, out: Path, el2n_epoch: int | None = None,
                 per_class: int = 5) -> tuple[ExampleScores, list[str]]:
    """scores.csv and data_map.png in `out`; the lines to print."""
    from .plots import save_png
    scores = score(read_examples(run), el2n_epoch)
    out = Path(out)
    with atomic_path(out / "scores.csv") as tmp:
        tmp.write_text(scores_csv(scores))
    save_png(data_map_figure(scores), out / "data_map.png")
    counts = np.bincount(scores.regions(), minlength=3)
    lines = [f"{len(scores.index):,} training images, {scores.runs} run(s) of "
             f"{scores.epochs} epochs:",
             f"  forgetting events (Toneva et al. 2019): {np.mean(scores.forgetting == 0):.1%} "
             f"never forgotten, {np.mean(scores.forgetting == scores.epochs):.1%} never learned",
             f"  EL2N at epoch {scores.el2n_epoch} (Paul et al. 2021): median "
             f"{np.median(scores.el2n):.3f}",
             f"  AUM (Pleiss et al. 2020): median {np.median(scores.aum):.3f}, "
             f"{np.mean(scores.aum < 0):.1%} below 0",
             "  data map (Swayamdipta et al. 2020): "
             + ", ".join(f"{n:,} {r}" for n, r in zip(counts, REGIONS)),
             f"hardest by AUM, {per_class} a class (training-set positions):"]
    lines += [f"  {name}: {', '.join(map(str, found))}"
              for name, found in scores.hardest(per_class).items()]
    lines.append(f"wrote {out / 'scores.csv'} and {out / 'data_map.png'}")
    return scores, lines
