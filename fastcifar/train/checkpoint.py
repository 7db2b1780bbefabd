"""Checkpoints: everything a run needs to continue exactly where it stopped.

A run's changing state is one RunState. `last.pt` is written after every epoch and
`best.pt` whenever the validation accuracy is the best so far. Each holds the model, optimisers, lr schedulers, weight average, the
loader's and the random generators' state, the epoch, the step and the epoch records, with
the config as plain data, so `torch.load(path, weights_only=True)` reads it: no pickled
code runs when a checkpoint is opened. Files are written under a temporary name and
renamed, so an interrupted write leaves the previous checkpoint whole.
"""

from __future__ import annotations

import dataclasses
import pickle
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..data.loader import DeviceLoader
from ..errors import InputError, RunFailed
from ..files import atomic_path
from .results import EpochRecord
from .setup import RunParts
from .timing import Stopwatch

FORMAT = 1
LAST, BEST = "last.pt", "best.pt"


def unwrapped(model: torch.nn.Module) -> torch.nn.Module:
    """The module itself, under torch.compile's wrapper if there is one (its state_dict
    keys are the plain module's)."""
    return getattr(model, "_orig_mod", model)


@dataclass
class RunState:
    """One run as it trains: its parts, its batches, its clock, how far it has got."""

    recipe: str
    config: object
    seed: int
    device: torch.device
    parts: RunParts
    loader: DeviceLoader
    watch: Stopwatch
    step: int = 0
    records: list[EpochRecord] = field(default_factory=list)
    examples: object = None  # an examples.ExampleRecorder, with record_examples

    def state_dict(self) -> dict:
        """What a checkpoint holds: plain data and tensors only (see load_checkpoint)."""
        parts, average = self.parts, self.parts.training.average
        select = parts.training.select  # a proxy that chooses the examples, with its state
        return {"recipe": self.recipe, "config": plain(self.config), "seed": self.seed,
                "epoch": len(self.records), "step": self.step, "records": plain(self.records),
                "model": unwrapped(parts.model).state_dict(),
                "optimizers": [o.state_dict() for o in parts.training.optimizers],
                "schedulers": [s.state_dict() for s in parts.schedulers],
                "average": average.state_dict() if average is not None else None,
                "select": select.state_dict() if select is not None else None,
                "examples": self.examples.state_dict() if self.examples is not None else None,
                "scaler": parts.precision.scaler.state_dict(),
                "loader": self.loader.state_dict(), "seconds": dict(self.watch.seconds),
                "rng": _rng_state(self.device)}

    def load_state_dict(self, state: dict) -> None:
        if state["seed"] != self.seed:
            raise InputError(f"the checkpoint is of seed {state['seed']}, not {self.seed}")
        parts, average = self.parts, self.parts.training.average
        unwrapped(parts.model).load_state_dict(state["model"])
        for objects, saved in ((parts.training.optimizers, state["optimizers"]),
                               (parts.schedulers, state["schedulers"])):
            for target, values in zip(objects, saved, strict=True):
                target.load_state_dict(values)
        if average is not None:
            average.load_state_dict(state["average"])
        if parts.training.select is not None:
            parts.training.select.load_state_dict(state["select"])
        if self.examples is not None:
            self.examples.load_state_dict(state.get("examples"))
        if state["scaler"]:  # a disabled scaler saves {}
            parts.precision.scaler.load_state_dict(state["scaler"])
        self.loader.load_state_dict(state["loader"])
        self.watch.seconds.update(state["seconds"])
        _set_rng_state(state["rng"], self.device)
        self.step, self.records = state["step"], [EpochRecord(**r) for r in state["records"]]


def _rng_state(device: torch.device) -> dict:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


class CheckpointFolder:
    """Where one run's checkpoints live, and the best validation accuracy seen so far."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.best_accuracy: float | None = None

    def save(self, state: dict, accuracy: float) -> None:
        """Write last.pt; copy it to best.pt if `accuracy` beats every earlier epoch's."""
        state = {**state, "format": FORMAT, "best_accuracy": self.best_accuracy}
        improved = self.best_accuracy is None or accuracy > self.best_accuracy
        if improved:
            state["best_accuracy"] = self.best_accuracy = accuracy
        try:
            with atomic_path(self.path / LAST) as tmp:
                torch.save(state, tmp)  # a full disk raises RuntimeError from its writer
        except (OSError, RuntimeError) as e:
            raise RunFailed(f"could not write the checkpoint {self.path / LAST} "
                            f"({str(e).splitlines()[0]}); the previous one is kept whole, "
                            f"and --resume continues from it") from None
        if improved:
            with atomic_path(self.path / BEST) as tmp:
                shutil.copyfile(self.path / LAST, tmp)

    def resume_state(self) -> dict | None:
        """last.pt's contents, or None if this run has none yet (it never finished an
        epoch); the best accuracy carries on from it."""
        if not (self.path / LAST).exists():
            return None
        try:
            state = load_checkpoint(self.path / LAST)
        except InputError as e:
            raise InputError(f"{e}. To go on, delete it and --resume again: this run starts "
                             f"again from its first epoch (runs already finished are kept; "
                             f"copy best.pt aside first if you want its weights)") from None
        self.best_accuracy = state.get("best_accuracy")
        return state


def load_checkpoint(path: Path) -> dict:
    """A checkpoint's contents, read without unpickling code; a damaged or foreign file is
    refused with one message naming it."""
    path = Path(path)
    expected = "a checkpoint written by `fastcifar train` (last.pt or best.pt)"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise InputError(f"checkpoint {path}: no such file; expected {expected}") from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile,
            pickle.UnpicklingError) as e:
        raise InputError(f"checkpoint {path} is truncated or corrupt and was not used "
                         f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
                         f"expected {expected}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise InputError(f"checkpoint {path} is not {expected} of format {FORMAT}")
    return state


def plain(value):
    """Dataclasses (configs, records) as dicts of plain values, for weights_only loading."""
    if dataclasses.is_dataclass(value):
        return {k: plain(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value
