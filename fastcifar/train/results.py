"""What a run reports: a record per epoch, and its result."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from torch import nn


@dataclass
class EpochRecord:
    epoch: int
    train_loss: float  # mean per example over the epoch's last batch (as augmented)
    train_accuracy: float  # top-1 over the epoch's last batch (airbench's log)
    val_loss: float  # plain cross-entropy, mean per test image, no TTA
    val_accuracy: float  # top-1, no TTA
    val_top5: float
    lr: float  # the multiplier of the recipe's lr at the end of the epoch
    train_seconds: float  # timed seconds so far


@dataclass
class RunResult:
    seed: int
    accuracy: float  # after TTA, fraction 0..1
    accuracy_no_tta: float
    seconds: float  # timed, by airbench's rule (see train/loop.py)
    seconds_by_part: dict[str, float]
    epochs: list[EpochRecord] = field(default_factory=list)
    model: nn.Module | None = field(default=None, repr=False)  # the trained network
    rank: int = 0  # the torchrun rank that trained it (see train/distributed.py), ...
    host: str = ""  # ... and its machine
    # With record_examples: what every training image did each epoch, and the test images'
    # final logits (numpy arrays; see example_records.py); not in summary.json
    examples: dict | None = field(default=None, repr=False)

    def as_dict(self) -> dict:
        """What summary.json records of the run."""
        return {"seed": self.seed, "accuracy": self.accuracy,
                "accuracy_no_tta": self.accuracy_no_tta, "train_seconds": self.seconds,
                "seconds_by_part": self.seconds_by_part, "rank": self.rank, "host": self.host}

    @classmethod
    def from_dict(cls, d: dict) -> "RunResult":
        return cls(d["seed"], d["accuracy"], d["accuracy_no_tta"], d["train_seconds"],
                   d["seconds_by_part"], rank=d.get("rank", 0), host=d.get("host", ""))


@dataclass
class TrainResult:
    """A session's runs, and the statistics over them (see fastcifar/stats.py)."""

    recipe: str
    config: object  # the recipe's config as it ran
    runs: list[RunResult]
    out: Path | None  # the run folder, if the session wrote one
    accuracy: object  # a stats.Summary (mean, std, ci95, min, max) of the TTA accuracy
    seconds: object  # the same of the timed seconds
    # With record_examples: every run's per-example records, (runs, epochs, images) by each
    # image's position in the whole training set (see examples.all_examples); else None
    examples: dict | None = None
    read_back: int = 0  # of `runs`, those a reused run folder held finished (not trained now)

    @property
    def model(self) -> nn.Module | None:
        """The last run's trained network (None for runs finished before a resume)."""
        return self.runs[-1].model
