"""Resuming a session from its run folder: `fastcifar.resume` and `fastcifar train --resume`."""

from __future__ import annotations

from pathlib import Path

from ..data import ImageData
from ..errors import InputError
from ..recipes.base import config_from_dict
from ..report.records import RunFolder, read_run_settings, recipe_of_run, runs_to_keep
from .device import resolve_device
from .distributed import device_name as rank_device, from_environment
from .inputs import IN_MEMORY
from .results import TrainResult
from .session import SETTINGS, Session, _result


def resume(folder: str | Path, device: str = "auto", data: ImageData | None = None,
           progress: bool | None = None, verbose: bool = True) -> TrainResult:
    """Continue the session recorded in `folder` with its own settings: finished runs are
    kept, an interrupted one continues from its last checkpoint, the rest are trained.
    A session trained on in-memory data needs that `data` again."""
    out, ranks = RunFolder(folder), from_environment()
    saved = read_run_settings(out.path)
    recipe = recipe_of_run(out.path, saved)
    config = config_from_dict(recipe.config, saved["config"], f"--resume {out.path}")
    settings = {k: saved.get(k, SETTINGS[k]) for k in SETTINGS}
    settings["subset_seed"] = saved.get("subset_seed", settings["seed"])  # older: subsets by --seed
    if data is None and settings["data"] == IN_MEMORY:
        raise InputError(f"{out.path} was trained on in-memory data: pass it again "
                         f"(fastcifar.resume(folder, data=...))")
    finished, missing = runs_to_keep(out.path, settings["runs"])
    out.metric_rows = [r for r in out.read_metrics() if r["run"] <= len(finished)]
    device = saved["device"] if device == "auto" and ranks.world == 1 else device
    session = Session(recipe, config, settings, resolve_device(rank_device(ranks, device)),
                       data if data is not None else settings["data"],
                       out if ranks.leader else None, progress, verbose and ranks.leader, ranks)
    runs = settings["runs"]
    if len(finished) >= runs:
        session.say(f"{out.path} is already finished: {len(finished)} of {runs} run(s); "
                    f"nothing to train (its results are in {out.path / 'summary.json'})")
        return _result(recipe.name, config, finished, out.path)
    if settings["checkpoints"]:
        then = "the interrupted run continues from its last checkpoint, if it saved one"
    else:
        then = (f"this run kept no checkpoints, so run {len(finished) + 1} starts over "
                f"(--checkpoints keeps them)")
    session.say(f"resuming {out.path}: {missing}{len(finished)} of {runs} run(s) finished; {then}")
    return session.run(finished)
