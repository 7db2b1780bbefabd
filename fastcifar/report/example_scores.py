"""Scores of every training example from a run's per-example records (examples.npz,
written by `--record-examples`), as the data-pruning and label-noise literature defines
them, averaged over the runs (seeds) that showed the example:

- forgetting events (Toneva et al. 2019, "An Empirical Study of Example Forgetting"): how
  often an example went from classified right in one epoch it was seen to wrong in the
  next; one never classified right counts as forgotten every epoch (the paper ranks those
  hardest). Examples forgotten 0 times are the "unforgettable" ones;
- EL2N (Paul et al. 2021, "Deep Learning on a Data Diet"): the L2 norm of the softmax minus
  the one-hot label, early in training (the paper: a tenth of the way in, averaged over
  seeds; here at `el2n_epoch`, by default a fifth of the way, as these runs are short).
  A run that did not show an image in that epoch (recipes drop the last partial batch of
  an epoch) gives the image's error from the nearest earlier epoch that did, else from the
  nearest later one;
- AUM, area under the margin (Pleiss et al. 2020, "Identifying Mislabeled Data using the
  Area Under the Margin Ranking"): the margin (the assigned label's logit minus the
  largest other) averaged over the epochs; mislabelled examples have the lowest;
- the data map (Swayamdipta et al. 2020, "Dataset Cartography"): confidence, the mean
  over epochs of the probability given to the label, against variability, its standard
  deviation over epochs: easy to learn (confident, stable), hard to learn (unconfident,
  stable; often mislabelled) and ambiguous (variable).

All are computed from what training saw, under each epoch's augmentation; the papers
compute some of them on unaugmented images, so the values differ in scale, not in kind.
Each score is over the epochs that showed the image, so every image shown once has all of
them (variability 0 if shown in one epoch only); an image no epoch of any run showed has
none, and is left out (`ExampleScores.never_shown` lists it). Variability and forgetting
need two epochs: a one-epoch record has them NaN, and no data map.
"""

from __future__ import annotations

import contextlib
import csv
import io
import warnings
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..files import atomic_path, check_writable_folder
from .plots import new_figure
from .records import EXAMPLES

FIELDS = ("loss", "correct", "margin", "error")  # each (runs, epochs, images)
PER_IMAGE = ("in_subset", "train_labels")  # each (images,)
RECORDED = (*FIELDS, *PER_IMAGE, "classes")
EXPECTED = f"expected the arrays {', '.join(RECORDED)} that --record-examples writes"
# The data map's regions, by where an example lies relative to the data's own spread.
REGIONS = ("easy to learn", "ambiguous", "hard to learn")
DPI = 120  # as plots.save_png


@dataclass
class ExampleScores:
    index: np.ndarray  # training-set positions of the scored images: those shown at least once
    labels: np.ndarray
    classes: list[str]
    seen: np.ndarray  # how many epochs showed each image, over all the runs
    forgetting: np.ndarray  # NaN for a one-epoch record, as is variability
    el2n: np.ndarray
    el2n_epoch: int  # 1-based
    aum: np.ndarray
    confidence: np.ndarray
    variability: np.ndarray
    correctness: np.ndarray  # the fraction of the epochs that showed it that got it right
    runs: int
    epochs: int
    never_shown: np.ndarray  # training-set positions of the subset's images never shown

    def borders(self) -> tuple[float, float] | None:
        """The data map's borders, as the paper selects its regions: beyond the
        variability's 67th percentile (the third most variable) ambiguous; of the rest,
        those at least as confident as their median easy to learn, the others hard to
        learn. Relative to the data's own spread, as a short run is never very confident
        and fixed thresholds would call everything hard. None for one epoch: no
        variability."""
        if self.epochs < 2:
            return None
        split = float(np.quantile(self.variability, 2 / 3))
        return split, float(np.median(self.confidence[self.variability <= split]))

    def regions(self) -> np.ndarray:
        """Each image's data-map region (an index into REGIONS), -1 without a data map."""
        if (borders := self.borders()) is None:
            return np.full(len(self.index), -1)
        split, middle = borders
        # (">": when most images share one variability, 0 say, none of them is ambiguous)
        return np.where(self.variability > split, 1, np.where(self.confidence >= middle, 0, 2))

    def shown_once(self) -> int:
        """How many images a single epoch showed: their variability is 0 by definition."""
        return int(np.sum(self.seen == 1))

    def region_counts(self) -> np.ndarray:
        regions = self.regions()
        return np.bincount(regions[regions >= 0], minlength=len(REGIONS))

    def hardest(self, per_class: int = 5) -> dict[str, list[int]]:
        """Each class's `per_class` images with the lowest AUM (training-set positions)."""
        out = {}
        for c, name in enumerate(self.classes):
            mine = np.flatnonzero(self.labels == c)
            out[name] = self.index[mine[np.argsort(self.aum[mine], kind="stable")[:per_class]]]\
                .tolist()
        return out


def read_examples(run: Path) -> dict[str, np.ndarray]:
    """A run folder's examples.npz (or the file itself), checked whole, so that a file
    `--record-examples` did not write is one InputError naming it, not a traceback."""
    path = Path(run) / EXAMPLES if Path(run).is_dir() else Path(run)
    if not path.is_file():
        raise InputError(f"{run}: no {EXAMPLES} there; train with --record-examples "
                         f"(record_examples=True) to record what every example did")
    try:
        with open(path, "rb") as f:
            if not zipfile.is_zipfile(f):  # (np.load would read it as a pickle, and say so)
                raise zipfile.BadZipFile("not a whole zip archive, as an .npz is: truncated?")
        with np.load(path) as data:
            examples = {k: data[k] for k in data.files}
    # (a truncated or damaged file fails in zipfile, zlib or numpy's own reader)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise InputError(f"{path}: not a readable {EXAMPLES} ({e}); {EXPECTED}") from None
    missing = [k for k in RECORDED if k not in examples]
    if missing:
        raise InputError(f"{path}: no {', '.join(missing)} in it; {EXPECTED}")
    shape = examples["loss"].shape
    if (len(shape) != 3 or 0 in shape or any(examples[k].shape != shape for k in FIELDS)
            or any(examples[k].shape != shape[2:] for k in PER_IMAGE)):
        found = ", ".join(f"{k} {examples[k].shape}" for k in (*FIELDS, *PER_IMAGE))
        raise InputError(f"{path}: arrays of the wrong shapes ({found}); expected "
                         f"{', '.join(FIELDS)} as (runs, epochs, images) and "
                         f"{', '.join(PER_IMAGE)} as (images,)")
    return examples


def score(examples: dict[str, np.ndarray], el2n_epoch: int | None = None) -> ExampleScores:
    """The scores of the images of the runs' --subset that some epoch showed."""
    subset = np.flatnonzero(examples["in_subset"])
    shown = (examples["correct"][..., subset] >= 0).any(axis=(0, 1))
    if not shown.any():
        raise InputError("the records show no training image in any epoch: nothing to score")
    index = subset[shown]
    loss, correct, margin, error = (examples[name][..., index] for name in FIELDS)
    runs, epochs = loss.shape[:2]
    if el2n_epoch is None:
        el2n_epoch = max(1, round(epochs / 5))
    if not 1 <= el2n_epoch <= epochs:
        raise InputError(f"--el2n-epoch must be from 1 to the {epochs} epochs recorded, "
                         f"got {el2n_epoch}")
    probability = np.exp(-loss)  # of the label: the loss is plain cross-entropy
    with warnings.catch_warnings():  # a run that never showed an image: NaN, not a warning
        warnings.simplefilter("ignore", RuntimeWarning)
        per_run = dict(
            forgetting=forgetting_events(correct), el2n=nearest_seen(error, el2n_epoch),
            aum=np.nanmean(margin, axis=1), confidence=np.nanmean(probability, axis=1),
            variability=np.nanstd(probability, axis=1),
            correctness=np.nanmean(np.where(correct >= 0, correct, np.nan), axis=1))
        # Every image here was shown by some run: the mean over those runs is finite.
        scores = {name: np.nanmean(values, axis=0) for name, values in per_run.items()}
    if epochs < 2:  # one value an image: no spread, and nothing to forget
        scores["forgetting"][:] = scores["variability"][:] = np.nan
    return ExampleScores(
        index=index, labels=examples["train_labels"][index],
        classes=[str(c) for c in examples["classes"]], seen=(correct >= 0).sum(axis=(0, 1)),
        el2n_epoch=el2n_epoch, runs=runs, epochs=epochs, never_shown=subset[~shown],
        **scores)


def nearest_seen(values: np.ndarray, epoch: int) -> np.ndarray:
    """(runs, epochs, images) with NaN where an epoch did not show the image -> (runs,
    images): each image's value at the 1-based `epoch`, else at the nearest earlier epoch
    that showed it, else at the nearest later one (NaN if the run never showed it)."""
    out = np.full((values.shape[0], values.shape[2]), np.nan)
    # The least preferred epoch first: each epoch that showed an image overrides those before.
    for e in [*range(values.shape[1] - 1, epoch - 1, -1), *range(epoch)]:
        out = np.where(np.isnan(values[:, e]), out, values[:, e])
    return out


def forgetting_events(correct: np.ndarray) -> np.ndarray:
    """(runs, epochs, images) of 1 right, 0 wrong, -1 not seen -> (runs, images): the times
    an example went from right to wrong between consecutive epochs it was seen in; one never
    right, the number of epochs (Toneva et al.: forgotten throughout); NaN where the run
    never showed it."""
    runs, epochs, images = correct.shape
    events = np.zeros((runs, images))
    last = np.full((runs, images), -1)
    for e in range(epochs):
        now = correct[:, e]
        seen = now >= 0
        events += seen & (last == 1) & (now == 0)
        last = np.where(seen, now, last)
    never = ~(correct == 1).any(axis=1)
    return np.where(last < 0, np.nan, np.where(never, epochs, events))


def scores_csv(scores: ExampleScores) -> str:
    """One row an image; the region is empty without a data map (one epoch)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["index", "label", "class", "forgetting_events",
                     f"el2n_epoch{scores.el2n_epoch}", "aum", "confidence", "variability",
                     "correctness", "region", "epochs_seen"])
    regions = scores.regions()
    for i in range(len(scores.index)):
        writer.writerow([scores.index[i], scores.labels[i], scores.classes[scores.labels[i]],
                         f"{scores.forgetting[i]:g}", f"{scores.el2n[i]:.5f}",
                         f"{scores.aum[i]:.5f}", f"{scores.confidence[i]:.5f}",
                         f"{scores.variability[i]:.5f}", f"{scores.correctness[i]:.4f}",
                         REGIONS[regions[i]] if regions[i] >= 0 else "", scores.seen[i]])
    return out.getvalue()


def data_map_figure(scores: ExampleScores, title: str = ""):
    """Swayamdipta et al.'s data map: variability (x) against confidence (y), each example
    coloured by how often it was classified right, the regions' borders drawn and named
    in a box. Needs two epochs."""
    split, middle = scores.borders()
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
    # (an all-zero variability would give matplotlib an empty range, and a warning)
    right = max(float(scores.variability.max()), 0.01) * 1.08
    ax.set_xlim(-0.02 * right, right)  # images shown once sit at 0: off the axis line
    border = dict(color="black", lw=1.2, ls="--", zorder=3)
    ax.axvline(split, **border)
    ax.plot([ax.get_xlim()[0], split], [middle, middle], **border)
    ax.axvspan(split, right, color="0.5", alpha=0.1, lw=0, zorder=0)
    counts, once = scores.region_counts(), scores.shown_once()
    names = [f"ambiguous ({counts[1]:,}): variability > {split:.3f}",
             f"easy to learn ({counts[0]:,}): the others at confidence ≥ {middle:.3f}",
             f"hard to learn ({counts[2]:,}): the others below it"]
    if once:
        names.append(f"({once:,} shown in one epoch only: variability 0)")
    ax.text(0.98, 0.97, "\n".join(names), transform=ax.transAxes, ha="right", va="top",
            ma="left", fontsize=9, bbox=dict(boxstyle="round", facecolor="white", alpha=0.9))
    never = f" ({len(scores.never_shown):,} never shown)" if len(scores.never_shown) else ""
    ax.set_title(title or f"data map: {len(scores.index):,} training images{never}, "
                          f"{scores.runs} run(s) of {scores.epochs} epochs")
    return figure


def write_report(run: Path, out: Path, el2n_epoch: int | None = None,
                 per_class: int = 5) -> tuple[ExampleScores, list[str]]:
    """scores.csv and (from two epochs) data_map.png in `out`; the lines to print."""
    examples = read_examples(run)
    out = Path(out)
    check_writable_folder(out, "--out")  # before the work that ends by writing there
    scores = score(examples, el2n_epoch)
    files = {out / "scores.csv": lambda tmp: tmp.write_text(scores_csv(scores))}
    if scores.epochs > 1:
        figure = data_map_figure(scores)
        files[out / "data_map.png"] = lambda tmp: figure.savefig(tmp, format="png", dpi=DPI)
    write_all(files)
    return scores, report_lines(scores, per_class) + [f"wrote {' and '.join(map(str, files))}"]


def report_lines(scores: ExampleScores, per_class: int) -> list[str]:
    """The summary `fastcifar examples` prints: each score's median or shares, the data
    map's regions, each class's hardest images."""
    never = len(scores.never_shown)
    images = (f"{len(scores.index):,} of {len(scores.index) + never:,} training images scored "
              f"({never:,} never shown: epochs drop their last partial batch)"
              if never else f"{len(scores.index):,} training images")
    too_short = f"needs 2 epochs, {scores.epochs} recorded"
    if scores.epochs > 1:
        forgetting = (f"{np.mean(scores.forgetting == 0):.1%} never forgotten, "
                      f"{np.mean(scores.forgetting == scores.epochs):.1%} never learned")
        once = scores.shown_once()
        data_map = (", ".join(f"{n:,} {r}" for n, r in zip(scores.region_counts(), REGIONS))
                    + (f" ({once:,} shown in one epoch only: variability 0)" if once else ""))
    else:
        forgetting, data_map = too_short, f"{too_short} (variability): not drawn"
    lines = [f"{images}, {scores.runs} run(s) of {scores.epochs} epochs:",
             f"  forgetting events (Toneva et al. 2019): {forgetting}",
             f"  EL2N at epoch {scores.el2n_epoch} (Paul et al. 2021): median "
             f"{np.median(scores.el2n):.3f}",
             f"  AUM (Pleiss et al. 2020): median {np.median(scores.aum):.3f}, "
             f"{np.mean(scores.aum < 0):.1%} below 0",
             f"  data map (Swayamdipta et al. 2020): {data_map}",
             f"hardest by AUM, {per_class} a class (training-set positions):"]
    return lines + [f"  {name}: {', '.join(map(str, found))}"
                    for name, found in scores.hardest(per_class).items()]


def write_all(files: dict[Path, Callable[[Path], object]]) -> None:
    """Write each file with its writer (given a temporary path), all or none: each is
    renamed into place only once every one is written, so a full disk leaves neither a
    half-written file nor a report half old, half new."""
    with contextlib.ExitStack() as renames:
        for path, write in files.items():
            try:
                write(renames.enter_context(atomic_path(path)))
            except OSError as e:
                raise InputError(f"{path}: cannot write it ({e.strerror or e}); expected "
                                 f"room for it and permission to write there") from None
