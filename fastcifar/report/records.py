"""A run folder: config.json, metrics.csv and metrics.jsonl, summary.json, a copy of the
recipe's source, TensorBoard event files when tensorboard is installed, and checkpoints.

Files are written whole, through a temporary name, so a run killed half-way leaves the
previous complete version (or none), never a truncated file.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import shutil
from pathlib import Path

from ..data.cache import atomic_path

METRIC_COLUMNS = ["run", "seed", "epoch", "train_loss", "train_accuracy", "val_loss",
                  "val_accuracy", "val_top5", "lr", "train_seconds"]


class RunFolder:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.metric_rows: list[dict] = []
        self._writers: dict = {}  # run -> TensorBoard SummaryWriter

    def write_text(self, name: str, text: str) -> None:
        with atomic_path(self.path / name) as tmp:
            tmp.write_text(text)

    def write_json(self, name: str, data) -> None:
        self.write_text(name, json.dumps(data, indent=2, default=_plain) + "\n")

    def copy_source(self, source: Path) -> None:
        with atomic_path(self.path / source.name) as tmp:
            shutil.copyfile(source, tmp)

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
        if (writer := self._tensorboard(row["run"])) is not None:
            for name in METRIC_COLUMNS[3:]:
                if isinstance(row.get(name), (int, float)):
                    writer.add_scalar(name.replace("_", "/", 1), row[name], row["epoch"])
            writer.flush()

    def _tensorboard(self, run: int):
        """A SummaryWriter for the run (under tensorboard/run-N), or None without tensorboard."""
        if run not in self._writers:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # the optional extra: pip install fastcifar[tensorboard]
                return None
            self._writers[run] = SummaryWriter(str(self.path / "tensorboard" / f"run-{run}"))
        return self._writers[run]


def _plain(value):
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")
