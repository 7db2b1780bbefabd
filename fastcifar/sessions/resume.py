"""Resuming a session from its run folder: `fastcifar.resume` and `fastcifar train --resume`."""

from __future__ import annotations

from pathlib import Path

from ..data import ImageData
from ..errors import InputError
from ..recipes.fields import config_from_dict
from ..report.records import RunFolder, read_run_settings, recipe_of_run
from ..train.device import resolve_device
from ..train.distributed import device_name as rank_device, from_environment
from ..train.inputs import IN_MEMORY
from ..train.results import TrainResult
from .session import Session
from .settings import SessionSettings


def resume(folder: str | Path, device: str = "auto", data: ImageData | None = None,
           progress: bool | None = None, verbose: bool = True) -> TrainResult:
    """Continue the session recorded in `folder` with its own settings: finished runs are
    kept, an interrupted one continues from its last checkpoint, the rest are trained.
    The recipe's source and the data must be the ones it recorded (their digests), and
    the device of the same kind. A session trained on in-memory data needs that `data`
    again."""
    out, ranks = RunFolder(folder), from_environment()
    saved = read_run_settings(out.path)
    recipe = recipe_of_run(out.path, saved)
    config = config_from_dict(recipe.config, saved["config"], f"--resume {out.path}")
    settings = SessionSettings.from_record(saved)
    if data is None and settings.data == IN_MEMORY:
        raise InputError(f"{out.path} was trained on in-memory data: pass it again "
                         f"(fastcifar.resume(folder, data=...))")
    device = saved["device"] if device == "auto" and ranks.world == 1 else device
    session = Session(recipe, config, settings, resolve_device(rank_device(ranks, device)),
                      data if data is not None else settings.data,
                      out if ranks.leader else None, progress, verbose and ranks.leader, ranks,
                      reuse=True)
    return session.run()
