"""What a cross-validation (crossval.py) keeps of each fold: its runs' predictions of the
images it held out, saved in the fold's folder and read back only for the same images; the
in-sample scores of its training images, if recorded; and the files it all ends in."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch

from ..data.loader import evaluation_tensor
from ..errors import InputError
from ..files import atomic_path
from ..report.example_scores import read_examples, score
from ..train.device import choose_precision
from ..train.evaluate import predict
from ..train.results import RunResult

FOLDER = "held_out"
# The in-sample scores of report/example_scores.py a cross-validation with record_examples
# writes: each image's mean over the folds that trained on it.
SCORES = ("aum", "forgetting", "el2n", "confidence", "variability")


class HeldOut:
    """A fold's held-out images, and the `on_run` hook of its session: each run's softmax
    probabilities of them at the recipe's own evaluation (its TTA level and fraction), in
    `found` by seed and, given the fold's folder, in held_out/seed-S.npz there, written by
    the rank that trained the run before its session records the run as finished."""

    def __init__(self, fold: int, images: np.ndarray, index: np.ndarray, folder: Path | None,
                 config, recipe, precision: str, device: torch.device):
        self.fold, self.images, self.index, self.folder = fold, images, index, folder
        self.config = config
        self.precision = choose_precision(precision, device, recipe.mixed_precision)
        digest = hashlib.sha256(np.ascontiguousarray(images).data)
        digest.update(np.ascontiguousarray(index, dtype=np.int64).data)
        self.digest = digest.hexdigest()
        self.found: dict[int, np.ndarray] = {}

    def __call__(self, run: RunResult) -> None:
        device = next(run.model.parameters()).device
        images = evaluation_tensor(self.images, device, self.precision.weights,
                                   self.config.crop_size())
        logits = predict(run.model, images, self.config.tta_level, precision=self.precision,
                         tta_fraction=self.config.tta_fraction)
        self.found[run.seed] = logits.float().softmax(1).cpu().numpy()
        if self.folder is not None:
            self.save(run.seed, self.found[run.seed])

    def path(self, seed: int) -> Path:
        return self.folder / FOLDER / f"seed-{seed}.npz"

    def save(self, seed: int, probabilities: np.ndarray) -> None:
        with atomic_path(self.path(seed)) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, probabilities=probabilities, indices=self.index,
                         images_sha256=np.array(self.digest))

    def take(self, seed: int, found: np.ndarray | None) -> np.ndarray:
        """The run's probabilities: as a rank just found them (saved here too if a rank on
        another machine wrote them), else read back from the fold's folder and checked to
        be of these very images."""
        if found is not None:
            if self.folder is not None and not self.path(seed).exists():
                self.save(seed, found)
            return found
        path, again = self.path(seed), f"remove {self.folder} to train fold {self.fold} again"
        if not path.is_file():
            raise InputError(f"{path}: missing, though {self.folder} holds the run of seed "
                             f"{seed} finished (made by `fastcifar train`, or under torchrun "
                             f"on machines that do not share --out?); {again}")
        try:
            with np.load(path) as saved:
                probabilities, index = saved["probabilities"], saved["indices"]
                digest = str(saved["images_sha256"])
        except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
            raise InputError(f"{path}: not a readable held-out prediction ({e}); {again}") \
                from None
        if (digest != self.digest or not np.array_equal(index, self.index)
                or probabilities.shape[0] != len(self.index)):
            raise InputError(f"{path} holds predictions of other images than fold "
                             f"{self.fold}'s {len(self.index):,} held-out ones; {again}")
        return probabilities


def in_sample_scores(folds: list, images: int, order: np.ndarray) -> dict[str, np.ndarray]:
    """Each image's in-sample scores (SCORES), the mean over the folds whose runs trained on
    it and recorded it; NaN where none did. `folds`: (the fold's training images as rows,
    its per-example records or their examples.npz); rows returned in `order`."""
    total = {name: np.zeros(images) for name in SCORES}
    count = {name: np.zeros(images) for name in SCORES}
    for rows, examples in folds:
        scored = score(read_examples(examples) if isinstance(examples, Path) else examples)
        at = rows[scored.index]
        for name in SCORES:
            values = getattr(scored, name)
            finite = np.isfinite(values)
            total[name][at[finite]] += values[finite]
            count[name][at[finite]] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        return {name: (total[name] / count[name])[order] for name in SCORES}


def write_outputs(out: Path, result, summary: dict) -> None:
    """pred_probs.npy, labels.npy, indices.npy, folds.npy, predictions.csv (a row an image)
    and summary.json, each written whole."""
    for name in ("pred_probs", "labels", "indices", "folds"):
        with atomic_path(out / f"{name}.npy") as tmp:
            with open(tmp, "wb") as f:
                np.save(f, getattr(result, name))
    with atomic_path(out / "predictions.csv") as tmp:
        tmp.write_text(predictions_csv(result))
    with atomic_path(out / "summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2) + "\n")


def label_quality(pred_probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the probability of each image's given label, its margin: that minus the largest
    probability of another class). The lowest of either are the likeliest label errors."""
    rows = np.arange(len(labels))
    given = pred_probs[rows, labels]
    others = pred_probs.copy()
    others[rows, labels] = -np.inf
    return given, given - others.max(1)


def predictions_csv(result) -> str:
    given, margin = label_quality(result.pred_probs, result.labels)
    scores = result.scores or {}
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["index", "fold", "label", "predicted", "p_label", "margin", *scores])
    for i, row in enumerate(zip(result.indices, result.folds, result.labels,
                                result.pred_probs.argmax(1))):
        writer.writerow([*map(int, row), f"{given[i]:.6f}", f"{margin[i]:.6f}",
                         *(f"{v[i]:.6g}" for v in scores.values())])
    return buffer.getvalue()
