"""The results folder and the files the benchmarks share: where each kind of result lies
under benchmarks/results/, and the fields of every JSON that one script writes and another
reads. The scripts that write or read a result do it through here.

    results/<recipe>-cpu-standin-<precision>/   our run folder's files (RUN_FILES) and
        load.json; reference.json, the original's runs beside it; seed<N>/, a further seed
    results/<series>/<recipe>/, series.json       runs made one after the other
    results/h200-*/call*/suite.json               the GPU suite's calls (gpu_suite.py)

A run folder of `fastcifar train` (fastcifar/report/records.py) holds summary.json:
{"recipe", "precision", "device", "torch", "runs": [{"seed", "accuracy", "train_seconds",
"record_seconds", ...}]}. A port (ports.py) writes its JSON of runs as {"source", "commit",
"runs": [{"run", PORT_ACCURACY, PORT_SECONDS}]}; reference.json keeps them in "all_runs"
(older ones are a single run).
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import NamedTuple

from fastcifar.files import atomic_path

RESULTS = Path(__file__).resolve().parent / "results"
SUMMARY, CONFIG, METRICS = "summary.json", "config.json", "metrics.csv"
RUN_FILES = (SUMMARY, CONFIG, METRICS)
REFERENCE, LOAD, SERIES, SUITE = "reference.json", "load.json", "series.json", "suite.json"
STANDIN = "-cpu-standin-"  # <recipe>-cpu-standin-<precision>
GPU_FOLDERS = "h200-*"
PORT_ACCURACY, PORT_SECONDS = "accuracy_tta", "seconds"  # a port's run
OURS, THEIRS = "fastcifar", "reference"  # the two sides of a pair in suite.json
# What a GPU call's results.tar.gz takes from its work folder: small files only (no
# checkpoints, no per-example records: examples.npz is tens of MB at full size).
BUNDLED = (SUMMARY, METRICS, CONFIG, "*.changes.json", "*-reference-*.json", "ablation.csv",
           "ablation.json", "ablation.png", "pruning.md", "pruning.json", "scores.csv",
           "data_map.png")


class Runs(NamedTuple):
    """Runs' accuracies (with TTA) and timed seconds, in the same order."""

    accuracies: list[float]
    seconds: list[float]


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def write_json(path: Path, data: dict) -> None:
    """Written whole or not at all (a temporary file, then a rename)."""
    with atomic_path(Path(path)) as tmp:
        Path(tmp).write_text(json.dumps(data, indent=1) + "\n")


# Our runs and the originals' beside them.

def standin_folder(recipe: str, precision: str) -> Path:
    return RESULTS / f"{recipe}{STANDIN}{precision}"


def standin_folders() -> list[Path]:
    return sorted(f for f in RESULTS.glob(f"*{STANDIN}*") if f.is_dir())


def recipe_and_precision(folder: Path) -> tuple[str, str]:
    recipe, precision = folder.name.split(STANDIN)
    return recipe, precision


def seed_folder(folder: Path, seed: int) -> Path:
    return folder / f"seed{seed}"


def with_seeds(folder: Path, name: str) -> list[Path]:
    """The file `name` of a results folder and of each further seed's, where there is one."""
    files = [folder / name, *sorted(folder.glob(f"seed*/{name}"))]
    return [f for f in files if f.exists()]


def our_runs(folder: Path) -> list[dict]:
    """Every run of ours in a results folder: its summary.json's and its seeds'."""
    return [run for file in with_seeds(folder, SUMMARY) for run in read_json(file)["runs"]]


def ours(runs: list[dict], on_record_clock: bool = False) -> Runs:
    """Our runs' accuracies and seconds: the whole timed run's, or on the record's clock
    (fastcifar/bench/clocks.py) where the run folder recorded it."""
    seconds = [r.get("record_seconds", r["train_seconds"]) if on_record_clock
               else r["train_seconds"] for r in runs]
    return Runs([r["accuracy"] for r in runs], seconds)


def theirs(record: dict) -> Runs:
    """An original's runs: a port's JSON of runs, or a reference.json."""
    runs = record.get("runs", record.get("all_runs", [record]))
    return Runs([r[PORT_ACCURACY] for r in runs], [r[PORT_SECONDS] for r in runs])


def series_folder(name: str) -> Path:
    return RESULTS / name


# The GPU suite: suite.json, its steps, and the tables of the steps that are not a pair's.

def suite_step(key: str, recipe: str, side: str, chunk: int, runs: int, compile: bool,
               result: dict) -> dict:
    """A step of suite.json: what was planned, and its `result` (status, note, wall, runs,
    accuracies, seconds, clock)."""
    return {"key": key, "recipe": recipe, "side": side, "chunk": chunk, "runs_planned": runs,
            "compile": compile, **result}


def bundle_results(work: Path, tarball: Path) -> int:
    """The BUNDLED files of a GPU call's work folder (its Inductor cache aside) into
    `tarball`, by their paths there (the layout of a results/h200-*/call*/ folder); how
    many."""
    files = sorted({p for pattern in BUNDLED for p in work.rglob(pattern)
                    if p.is_file() and "inductor-cache" not in p.parts})
    with atomic_path(tarball) as tmp:
        with tarfile.open(tmp, "w:gz") as t:
            for path in files:
                t.add(path, arcname=str(path.relative_to(work)))
    return len(files)


def gpu_calls() -> dict[str, list[dict]]:
    """Each GPU folder's calls: folder name -> the suite.json of each call, in order."""
    return {folder.name: [read_json(f) for f in sorted(folder.glob(f"call*/{SUITE}"))]
            for folder in sorted(RESULTS.glob(GPU_FOLDERS)) if folder.is_dir()}


def pair_steps(suite: dict) -> list[dict]:
    """The steps of a suite.json that ran a side of a pair (ours or the original)."""
    return [step for step in suite["steps"] if step["side"] in (OURS, THEIRS)]


def ablation_runs(ablation: dict) -> Runs:
    """The full recipe's runs of an ablation.json (every variant's are in its rows)."""
    full = ablation["rows"][0]
    return Runs(full["accuracy"], [full["seconds_mean"]] * full["runs"])


def ablation_rows(ablation: dict) -> tuple[dict, dict[str, dict]]:
    """An ablation.json's full-recipe row, and the row of each trick left out alone."""
    full = next(row for row in ablation["rows"] if not row["tricks_off"])
    return full, {row["tricks_off"][0]: row for row in ablation["rows"]
                  if len(row["tricks_off"]) == 1}


def pruning_runs(pruning: dict) -> Runs:
    """The runs on all the images of a pruning.json (the subsets' are beside them)."""
    return Runs(pruning["accuracy"]["all"], pruning["seconds"]["all"])
