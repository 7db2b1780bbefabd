"""A run folder: config.json, metrics.csv, summary.json and a copy of the recipe's source.

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

METRIC_COLUMNS = ["run", "seed", "epoch", "train_loss", "train_accuracy", "val_accuracy",
                  "lr", "train_seconds"]


class RunFolder:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.metric_rows: list[dict] = []

    def write_text(self, name: str, text: str) -> None:
        with atomic_path(self.path / name) as tmp:
            tmp.write_text(text)

    def write_json(self, name: str, data) -> None:
        self.write_text(name, json.dumps(data, indent=2, default=_plain) + "\n")

    def copy_source(self, source: Path) -> None:
        with atomic_path(self.path / source.name) as tmp:
            shutil.copyfile(source, tmp)

    def add_metrics(self, row: dict) -> None:
        """Append a per-epoch row and rewrite metrics.csv (small: one row an epoch)."""
        self.metric_rows.append(row)
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=METRIC_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(self.metric_rows)
        self.write_text("metrics.csv", out.getvalue())


def _plain(value):
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")
