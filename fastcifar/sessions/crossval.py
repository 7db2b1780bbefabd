"""`fastcifar crossval`: out-of-sample predicted probabilities for every training image, by
K-fold cross-validation: what confident learning (Northcutt et al. 2021, cleanlab) and
other label-error methods start from.

The training images (a --subset of them, if given) are dealt into K folds, stratified by
class, in an order the subset seed draws. Fold k is one session of `train`, in the folder
`fold-k/`, on the other folds' images. Each of its runs then predicts the held-out fold's
images at the recipe's own evaluation (its TTA level), untimed, through the session's
`on_run` hook (held_out.py), and its softmax probabilities are written to
`fold-k/held_out/seed-S.npz` before the session records the run as finished. A row of
pred_probs is the mean over its fold's runs: from networks that never trained on it.

Resumable like a battery: the same command continues where it stopped. crossval.json
records the cross-validation's settings, and a folder made otherwise is refused, naming
what differs; each fold's session reads back its finished runs only if made with the same
recipe source, data and settings (sessions/reuse.py), and their held-out predictions only
if they are of the same images. Under torchrun each fold's runs are shared by the ranks,
as ablate's batteries are.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..data import ImageData
from ..data.dataset import balanced_subset_index
from ..errors import InputError
from ..files import atomic_path, check_writable_folder
from ..recipes import folder_name, get_recipe
from ..recipes.fields import with_values
from ..report.records import CONFIG, EXAMPLES
from ..train.device import resolve_device
from ..train.distributed import broadcast, device_name, from_environment, gather, process_group
from ..train.identity import differences
from ..train.inputs import check_batches, check_size, data_name, source_dataset
from .held_out import HeldOut, in_sample_scores, write_outputs
from .reuse import session_record
from .session import train
from .settings import DEFAULT_RECIPE, SessionSettings

SETTINGS = "crossval.json"


@dataclass
class CrossValResult:
    """Rows in the order of `indices`: each image's position in the whole training set."""

    pred_probs: np.ndarray  # (images, classes) float32, each row the mean of its fold's runs
    labels: np.ndarray  # (images,) int64: the labels given
    indices: np.ndarray
    folds: np.ndarray  # the fold (1..K) that held each image out
    classes: list[str]
    fold_accuracy: list[float]  # each fold's held-out accuracy
    test_accuracy: list[float]  # each fold's runs' mean accuracy on the test images
    trained: int  # runs trained by this call
    read_back: int  # runs the fold folders held finished
    scores: dict | None = None  # in-sample scores, with record_examples (held_out.py)
    out: Path | None = None

    @property
    def accuracy(self) -> float:
        """The out-of-fold top-1 accuracy over every image."""
        return float(np.mean(self.pred_probs.argmax(1) == self.labels))


def stratified_folds(labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Each image's fold, 0..folds-1: every class's images in an order drawn by `seed`,
    dealt out to the folds in turn, the deal going on from class to class, so that the
    folds' sizes differ by one at most, in all and in every class."""
    rng = np.random.default_rng(seed)
    fold = np.empty(len(labels), dtype=np.int64)
    dealt = 0
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        fold[members] = (dealt + np.arange(len(members))) % folds
        dealt += len(members)
    return fold


def check_folds(folds, labels: np.ndarray | None = None, classes=()) -> None:
    """folds is an integer of 2 or more; given the labels, each class has at least one
    image for every fold to hold out."""
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise InputError(f"folds (--folds) must be an integer of 2 or more, got {folds!r}")
    if labels is None:
        return
    counts = np.bincount(labels, minlength=len(classes))
    fewest = int(counts[counts > 0].min())
    if folds > fewest:
        name = classes[int(np.flatnonzero(counts == fewest)[0])]
        fits = (f"give --folds {fewest} or fewer" if fewest >= 2 else
                "every class needs 2 images at least")
        raise InputError(f"--folds {folds}: class {name!r} has {fewest} training image(s), and "
                         f"every fold holds out one image of each class at least; {fits}, "
                         f"or more images (--subset)")


# train's keywords that choose the data: applied once, to the whole data, of which each
# fold's session is then given its share
DATA_OPTIONS = ("subset", "test_subset", "subset_seed", "size")


def crossval(recipe=DEFAULT_RECIPE, data: str | Path | ImageData | None = None, *,
             folds: int = 5, out: str | Path | None = None, verbose: bool = True,
             **options) -> CrossValResult:
    """Out-of-sample class probabilities for every training image of `data` (a `subset`
    of them, if given) by `folds`-fold cross-validation, `runs` runs a fold (seeds seed,
    seed+1, ...; their probabilities averaged). `options`: `train`'s keywords (runs, seed,
    epochs, device, precision, subset, test_subset, subset_seed, record_examples, ...) and
    recipe hyperparameters. `out`: the folder for fold-1/ ... and pred_probs.npy,
    labels.npy, indices.npy, folds.npy, predictions.csv and summary.json (nothing is
    written without one); run again, it continues there. Returns the CrossValResult on
    every rank."""
    recipe = get_recipe(recipe)
    named = {k: options.pop(k) for k in SessionSettings.names() if k in options}
    settings = SessionSettings(**{**named, "recipe": recipe.name,
                                  "data": data_name(data) or recipe.default_data})
    settings.check(has_folder=out is not None)
    check_size(settings.size, data or recipe.default_data)
    check_folds(folds)
    session = {k: options.pop(k) for k in ("epochs", "device", "progress") if k in options}
    config = with_values(recipe.config, options)  # what is left: hyperparameters
    if session.get("epochs") is not None:
        config = with_values(config, {"epochs": session["epochs"]})
    config.validate()
    fold_options = {**{k: v for k, v in named.items() if k not in DATA_OPTIONS}, **session,
                    **options, "verbose": verbose}
    ranks = from_environment()
    say = print if verbose and ranks.leader else (lambda *_: None)
    device = resolve_device(device_name(ranks, session.get("device", "auto")))
    with process_group(ranks, device):  # one group for every fold's session (as ablate's)
        whole = source_dataset(data, recipe, config, settings.size, say)
        dataset, index = whole, np.arange(len(whole.train_labels))
        if settings.subset is not None:
            index = balanced_subset_index(whole.train_labels, settings.subset,
                                          len(whole.classes), settings.subset_seed)
            dataset = whole.subset(index)
        if settings.test_subset is not None:
            dataset = dataset.balanced_test_subset(settings.test_subset, settings.subset_seed)
        check_folds(folds, dataset.train_labels, dataset.classes)
        fold = stratified_folds(dataset.train_labels, folds, settings.subset_seed)
        check_batches(len(fold) - np.bincount(fold).max(), config.batch_size)
        expected = None
        if out is not None and ranks.leader:
            expected = {**session_record(recipe, config, settings, device, whole),
                        "config": asdict(config), "folds": folds,
                        "classes": list(whole.classes)}
        folder = Path(out) if out is not None else None
        with _settings_recorded(folder, expected, ranks):
            return _cross_validate(recipe, dataset, index, fold, folder, config, settings,
                                   device, ranks, say, fold_options)


def _cross_validate(recipe, dataset: ImageData, index, fold, out: Path | None, config,
                    settings: SessionSettings, device, ranks, say, options) -> CrossValResult:
    folds, runs, seed = int(fold.max()) + 1, settings.runs, settings.seed
    labels = dataset.train_labels
    say(f"cross-validation of {recipe.name}: {folds} folds x {runs} run(s) on "
        f"{len(labels):,} images ({folds * runs} runs)")
    pred = np.zeros((len(labels), len(dataset.classes)), dtype=np.float32)
    fold_accuracy, test_accuracy, read_back, scores = [], [], 0, []
    for k in range(folds):
        held, trained_on = np.flatnonzero(fold == k), np.flatnonzero(fold != k)
        folder = out / f"fold-{k + 1}" if out is not None else None
        predictor = HeldOut(k + 1, dataset.train_images[held], index[held], folder, config,
                            recipe, settings.precision, device)
        say(f"\nfold {k + 1} of {folds}: {runs} run(s) on the other folds' "
            f"{len(trained_on):,} images, each then predicting the {len(held):,} held out")
        result = train(recipe, data=ImageData(
            dataset.train_images[trained_on], labels[trained_on], dataset.test_images,
            dataset.test_labels, dataset.classes, dataset.name), out=folder, reuse=True,
            on_run=predictor, **options)
        found = {s: p for mine in gather(ranks, predictor.found) for s, p in mine.items()}
        if ranks.leader:
            pred[held] = np.mean([predictor.take(s, found.get(s))
                                  for s in range(seed, seed + runs)], axis=0)
            fold_accuracy.append(float(np.mean(pred[held].argmax(1) == labels[held])))
            test_accuracy.append(result.accuracy.mean)
            examples = result.examples if folder is None else (
                folder / EXAMPLES if (folder / EXAMPLES).exists() else None)
            if settings.record_examples and examples is not None:
                scores.append((trained_on, examples))
            say(f"fold {k + 1}: held-out accuracy {100 * fold_accuracy[-1]:.2f}%"
                + (f" ({result.read_back} run(s) read back from {folder})"
                   if result.read_back else ""))
        read_back += result.read_back
    outcome = None
    if ranks.leader:
        order = np.argsort(index, kind="stable")  # rows by position in the training set
        outcome = CrossValResult(
            pred[order], labels[order], index[order], fold[order] + 1, list(dataset.classes),
            fold_accuracy, test_accuracy, trained=folds * runs - read_back, read_back=read_back,
            scores=in_sample_scores(scores, len(labels), order) if scores else None, out=out)
        lines = summary_lines(recipe.name, outcome)
        if out is not None:
            write_outputs(out, outcome, summary(recipe.name, outcome))
            lines.append(f"wrote {out}: pred_probs.npy ({len(order)} x {len(dataset.classes)}),"
                         f" labels.npy, indices.npy, folds.npy, predictions.csv, summary.json")
        say("\n" + "\n".join(lines))
    return broadcast(ranks, outcome)


@contextlib.contextmanager
def _settings_recorded(out: Path | None, expected: dict | None, ranks):
    """crossval.json in `out`, checked against `expected` (rank 0's: the others have None)
    before any fold trains: a folder whose folds began under other settings is refused,
    naming each difference. If the block fails before any fold recorded a session, the
    folder is left as it was found."""
    if out is None:
        yield
        return
    created = not out.exists()

    def look():
        if (out / CONFIG).exists():
            return f"--out {out} holds a training run ({CONFIG}); give another folder"
        try:
            check_writable_folder(out, "--out")
        except InputError as e:
            return str(e)
        if _begun(out) and (out / SETTINGS).exists():
            try:
                recorded = json.loads((out / SETTINGS).read_text())
            except ValueError as e:
                return f"{out / SETTINGS}: not readable ({e}); give another --out"
            found = differences(recorded, expected)
            if recorded.get("folds") != expected["folds"]:
                found.insert(0, f"folds: {recorded.get('folds')} there, {expected['folds']} here")
            if found:
                return (f"{out} holds a cross-validation made otherwise ({'; '.join(found)}): "
                        f"give the settings it was made with to continue it, or another "
                        f"folder")
        with atomic_path(out / SETTINGS) as tmp:
            tmp.write_text(json.dumps(expected, indent=2) + "\n")
        return None

    refused = broadcast(ranks, look() if ranks.leader else None)
    if refused:
        raise InputError(refused)
    try:
        yield
    except BaseException:
        if ranks.leader and not _begun(out):
            (out / SETTINGS).unlink(missing_ok=True)
            if created and out.is_dir() and not any(out.iterdir()):
                out.rmdir()
        raise


def _begun(out: Path) -> bool:
    """Whether some fold's session has recorded its start."""
    return any(out.glob(f"fold-*/{CONFIG}"))


def summary(recipe: str, result: CrossValResult) -> dict:
    return {"recipe": recipe, "folds": len(result.fold_accuracy), "images": len(result.labels),
            "classes": result.classes, "out_of_fold_accuracy": result.accuracy,
            "fold_accuracy": result.fold_accuracy, "test_accuracy": result.test_accuracy,
            "runs_trained": result.trained, "runs_read_back": result.read_back}


def summary_lines(recipe: str, result: CrossValResult) -> list[str]:
    folds = ", ".join(f"fold {k} {100 * a:.2f}%" for k, a in enumerate(result.fold_accuracy, 1))
    return [f"{recipe}: out-of-fold accuracy {100 * result.accuracy:.2f}% over "
            f"{len(result.labels):,} images ({folds}); the folds' runs on the test images "
            f"{100 * float(np.mean(result.test_accuracy)):.2f}%",
            f"runs trained now: {result.trained}, read back: {result.read_back}"]


def default_out(recipe) -> Path:
    return Path("runs") / f"crossval-{folder_name(get_recipe(recipe))}"
