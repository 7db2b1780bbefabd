"""A run folder: config.json (the settings, the resolved config, and which fastcifar ran
it: version, git commit), source/ (a copy of the package as it ran, and of a recipe file
that --recipe path.py:Name named, whose digest config.json keeps), metrics.csv and
metrics.jsonl, summary.json, model.pt (the last run's trained weights), TensorBoard event
files when tensorboard is installed, and checkpoints.

Files are written whole, through a temporary name, so a run killed half-way leaves the
previous complete version (or none), never a truncated file.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import torch

from ..bench.clocks import record_clock, record_seconds
from ..stats import summarize
from ..errors import InputError, RunFailed
from ..files import atomic_path, copy_tree_whole, file_digest, source_digest
from ..train.checkpoint import unwrapped
from ..train.device import device_name
from ..train.identity import recipe_digest
from ..train.results import RunResult
from ..version import __version__

METRIC_COLUMNS = ["run", "seed", "epoch", "train_loss", "train_accuracy", "val_loss",
                  "val_accuracy", "val_top5", "lr", "train_seconds"]


CONFIG, SUMMARY, MODEL = "config.json", "summary.json", "model.pt"
EXAMPLES = "examples.npz"  # with record_examples
RECIPE_FILE = "recipe_file"  # source/recipe_file/: the --recipe file's copy
PACKAGE = Path(__file__).resolve().parents[1]


class RunFolder:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.metric_rows: list[dict] = []
        self._writers: dict = {}  # run -> TensorBoard SummaryWriter
        self.created: list[Path] = []  # the folders RunFolder.new made, innermost first

    @classmethod
    def new(cls, path: Path) -> "RunFolder":
        """A folder for a new session: created if need be, refused if it already holds a
        run (two sessions' files would mix) or cannot be written."""
        path = Path(path)
        if (path / CONFIG).exists():
            raise InputError(f"{path} already holds a run (its {CONFIG}); continue it with "
                             f"--resume {path}, or give another folder")
        missing = [d for d in (path, *path.parents) if not d.exists()]  # what mkdir makes
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise InputError(f"run folder {path}: cannot create it ({e.strerror or e})") from None
        if not os.access(path, os.W_OK | os.X_OK):
            raise InputError(f"run folder {path}: not writable; give a folder you can write to")
        folder = cls(path)
        folder.created = missing
        return folder

    def remove_if_unused(self) -> None:
        """Remove the folders this session made for the run (it and any parents), as long as
        nothing was written into them."""
        for folder in self.created:
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()

    def record_start(self, recipe, config, settings: dict, device: str,
                     classes: tuple[str, ...], image_side: int, data_sha256: str) -> None:
        """config.json (what --resume and load_model read back; `image_side`: the side of
        the square images as stored, which evaluation and export start from; the digests
        of the recipe's source and of the data, which a session that reuses the folder
        checks: see train/identity.py) and source/."""
        copy_tree_whole(PACKAGE, self.path / "source" / PACKAGE.name,
                        ignore=shutil.ignore_patterns("__pycache__"))
        recipe_file = None
        if getattr(recipe, "source_file", None) is not None:  # --recipe path.py:Name
            copy = self.path / "source" / RECIPE_FILE / recipe.source_file.name
            with atomic_path(copy) as tmp:
                shutil.copyfile(recipe.source_file, tmp)
            recipe_file = {"file": getattr(recipe, "recorded_file", str(recipe.source_file)),
                           "object": recipe.source_object,
                           "copy": str(copy.relative_to(self.path)),
                           "sha256": file_digest(copy)}
        self.write_json(CONFIG, {**settings, "recipe": recipe.name, "config": config,
                                 "recipe_file": recipe_file,
                                 "recipe_sha256": recipe_digest(recipe),
                                 "data_sha256": data_sha256,
                                 "data": settings["data"] or "cifar10", "device": device,
                                 "classes": list(classes), "image_side": image_side,
                                 "fastcifar": provenance()})

    def record_summary(self, recipe, settings: dict, dataset, device, results,
                       load_seconds: float, warmup_seconds: float) -> None:
        accuracy = summarize([r.accuracy for r in results])
        seconds = summarize([r.seconds for r in results])
        clock = record_clock(recipe.name)  # the record's own timer (bench/clocks.py)
        runs = [{**r.as_dict(), "record_seconds": record_seconds(recipe.name, r.seconds_by_part)}
                for r in results]
        self.write_json(SUMMARY, {
            "recipe": recipe.name, "target": dataclasses.asdict(recipe.target),
            "data": settings["data"] or "cifar10", "train_images": len(dataset.train_images),
            "test_images": len(dataset.test_images), "device": device_name(device),
            "torch": torch.__version__, "compile": settings["compile"],
            "precision": settings["precision"], "runs": runs,
            "accuracy_mean": accuracy.mean, "accuracy_std": accuracy.std,
            "accuracy": accuracy.as_dict(), "train_seconds_mean": seconds.mean,
            "train_seconds": seconds.as_dict(),
            "record_clock": {"name": clock.name, "parts": list(clock.parts)},
            "record_seconds": summarize([r["record_seconds"] for r in runs]).as_dict(),
            "untimed_seconds": {"data_loading": load_seconds, "warmup": warmup_seconds}})

    def save_examples(self, examples: dict) -> None:
        """examples.npz: the session's per-example records (train/examples.all_examples)."""
        with atomic_path(self.path / EXAMPLES) as tmp:
            with open(tmp, "wb") as f:
                np.savez_compressed(f, **examples)

    def save_model(self, model: torch.nn.Module) -> None:
        """model.pt: the trained weights (a state_dict, readable with weights_only). Written
        before the summary that records the run as finished, so a failure here leaves the
        run unfinished, for --resume."""
        try:
            with atomic_path(self.path / MODEL) as tmp:
                torch.save(unwrapped(model).state_dict(), tmp)  # a full disk: RuntimeError
        except (OSError, RuntimeError) as e:
            reason = getattr(e, "strerror", None) or (str(e).splitlines() or [repr(e)])[0]
            raise RunFailed(f"could not write {self.path / MODEL} ({reason}); the run that "
                            f"just ended is not recorded as finished: free space, then "
                            f"`fastcifar train --resume {self.path}` completes it (runs "
                            f"recorded as finished before it are kept)") from None

    def write_text(self, name: str, text: str) -> None:
        try:
            with atomic_path(self.path / name) as tmp:
                tmp.write_text(text)
        except OSError as e:
            raise RunFailed(f"could not write {self.path / name} ({e.strerror or e}); its "
                            f"previous version, if any, is kept whole") from None

    def write_json(self, name: str, data) -> None:
        self.write_text(name, json.dumps(data, indent=2, default=_plain) + "\n")

    def read_metrics(self) -> list[dict]:
        """The rows of metrics.jsonl, if the folder has one (a run being resumed)."""
        path = self.path / "metrics.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def set_metrics(self, rows: list[dict]) -> None:
        """Rewrite metrics.csv and metrics.jsonl with these rows (small: one row an epoch)."""
        self.metric_rows = list(rows)
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=METRIC_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(self.metric_rows)
        self.write_text("metrics.csv", out.getvalue())
        self.write_text("metrics.jsonl", "".join(json.dumps(r) + "\n" for r in self.metric_rows))

    def add_metrics(self, row: dict) -> None:
        """Append a per-epoch row to the metric files and to TensorBoard's, if installed."""
        self.set_metrics([*self.metric_rows, row])
        new = row["run"] not in self._writers
        if (writer := self._tensorboard(row["run"])) is None:
            return
        # A run this session took over (a resume) gets one event file, its kept epochs too.
        for kept in [r for r in self.metric_rows if r["run"] == row["run"]] if new else [row]:
            for name in METRIC_COLUMNS[3:]:
                if isinstance(kept.get(name), (int, float)):
                    writer.add_scalar(name.replace("_", "/", 1), kept[name], kept["epoch"])
        writer.flush()

    def _tensorboard(self, run: int):
        """A SummaryWriter for the run (under tensorboard/run-N), or None without
        tensorboard. An earlier session's event files of the run are removed: the new one
        writes every epoch the run keeps (two files of one run would show its resumed
        epochs twice)."""
        if run not in self._writers:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # the optional extra: pip install fastcifar[tensorboard]
                return None
            folder = self.path / "tensorboard" / f"run-{run}"
            for earlier in folder.glob("events.out.tfevents.*"):
                earlier.unlink()
            self._writers[run] = SummaryWriter(str(folder))
        return self._writers[run]


def _plain(value):
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def provenance() -> dict:
    """Which fastcifar ran: its version, the digest of its source files (source_digest)
    and, in a git checkout, the commit and whether the tree had uncommitted changes. (A
    GPU machine that gets this working tree copied may keep an older git history: the
    digest is what says which code it was.)"""
    record = {"version": __version__, "source_sha256": source_digest(PACKAGE),
              "commit": None, "dirty": None}
    try:
        def git(*args):
            return subprocess.run(["git", "-C", str(PACKAGE), *args], capture_output=True,
                                  text=True, timeout=10, check=True).stdout.strip()
        if not git("ls-files", "__init__.py"):
            return record  # a copy inside some other repository
        record["commit"] = git("rev-parse", "HEAD")
        record["dirty"] = bool(git("status", "--porcelain", "--", "."))
    except (OSError, subprocess.SubprocessError):
        pass  # not a git checkout (an installed wheel), or no git
    return record


def read_run_settings(path: Path) -> dict:
    """A run folder's config.json."""
    try:
        saved = json.loads((Path(path) / CONFIG).read_text())
        saved["recipe"], saved["config"], saved["device"]  # noqa: B018 (must be there)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputError(f"{path}: expected a run folder written by `fastcifar train` (its "
                         f"{CONFIG} could not be read: {e})") from None
    return saved


def recipe_of_run(path: Path, saved: dict):
    """The recipe a run folder's config.json (`saved`) names: a shipped one by its name, a
    recipe file from the folder's own copy of it (checked against its digest)."""
    from ..recipes import get_recipe  # (recipes import train, which imports this module)
    from ..recipes.from_file import recipe_from_file

    record = saved.get("recipe_file")
    if not record:
        return get_recipe(saved["recipe"])
    copy = Path(path) / record["copy"]
    if not copy.is_file() or file_digest(copy) != record["sha256"]:
        raise InputError(f"{path}: its copy of the recipe file ({record['copy']}) is missing "
                         f"or changed since the run; expected the file whose sha256 is "
                         f"{record['sha256'][:16]}...")
    recipe = recipe_from_file(f"{copy}:{record['object']}", option=f"{path}: recipe")
    recipe.name = saved["recipe"]  # as the run was recorded
    recipe.recorded_file = record["file"]  # where it was when the run began
    return recipe


def read_finished_runs(path: Path) -> list[dict]:
    """The finished runs recorded in a run folder's summary.json (none if it has none)."""
    try:
        return json.loads((Path(path) / SUMMARY).read_text())["runs"]
    except FileNotFoundError:
        return []
    except (OSError, ValueError, KeyError) as e:
        raise InputError(f"{path}: its {SUMMARY} is unreadable ({e})") from None


def runs_to_keep(path: Path, runs: int) -> tuple[list[RunResult], str]:
    """The finished runs --resume keeps, and a note on any it must train again: all those
    summary.json records, but the last if it records all `runs` finished and model.pt is
    missing (a fastcifar that wrote the summary before the model left that on a full disk)."""
    finished = [RunResult.from_dict(r) for r in read_finished_runs(path)]
    if len(finished) < runs or (Path(path) / MODEL).exists():
        return finished, ""
    return finished[:runs - 1], (f"{MODEL} is missing though {SUMMARY} records all {runs} "
                                 f"run(s) finished (writing it failed), so run {runs} counts "
                                 f"as unfinished; ")


def read_metric_rows(path: Path) -> tuple[list[dict], str, dict[int, float]]:
    """For plotting a run folder: its metrics.jsonl rows (at least one epoch's), a title
    (recipe, folder, precision) and each finished run's accuracy after TTA."""
    if not (Path(path) / "metrics.jsonl").is_file():
        raise InputError(f"{path}: no metrics.jsonl there; expected a run folder written by "
                         f"`fastcifar train` that has finished at least one epoch")
    try:
        rows = RunFolder(path).read_metrics()
    except ValueError as e:
        raise InputError(f"{path}/metrics.jsonl is not valid JSON lines: {e}") from None
    try:
        settings = json.loads((Path(path) / CONFIG).read_text())
        title = f"{settings['recipe']}: {path} ({settings.get('precision', 'auto')} precision)"
    except (OSError, ValueError, KeyError):
        title = str(path)
    final = {i + 1: r["accuracy"] for i, r in enumerate(read_finished_runs(path))}
    return rows, title, final
