"""A session that continues a run folder (a resume, a battery or an ablation's variant run
again, a tuning study's next trial) first checks that the folder records this very session:
the same recipe and recipe source, data, hyperparameters and settings (identity.py)."""

from __future__ import annotations

from typing import Callable

from ..data import ImageData
from ..errors import InputError
from ..report.records import CONFIG, RunFolder, read_run_settings, runs_to_keep
from ..train.distributed import Ranks, broadcast
from ..train.identity import differences, recipe_digest
from ..train.lr_finder import lr_fields
from ..train.results import RunResult
from .settings import SessionSettings


def session_record(recipe, config, settings: SessionSettings, device,
                   dataset: ImageData) -> dict:
    """What the run folder records of a session (config.json, less the provenance): what
    a folder the session continues must have recorded too."""
    return {**settings.record(), "recipe": recipe.name, "config": config,
            "recipe_sha256": recipe_digest(recipe), "data_sha256": dataset.digest,
            "device": str(device)}


def finished_before(out: RunFolder | None, ranks: Ranks, record: dict | None, config,
                    settings: SessionSettings,
                    say: Callable[[str], None]) -> list[RunResult] | None:
    """The runs the run folder holds finished (None: it holds no session yet), once its
    config.json is found to record this very session; else an InputError naming every
    difference. Rank 0 looks (the others have no `out`), every rank gets its answer:
    looking for themselves, the ranks could find the folder in two states."""
    def look():
        if not (out.path / CONFIG).exists():
            return None
        # The lrs an LR finder sets are its result, not a setting to match.
        found = differences(read_run_settings(out.path), record,
                            tuple(lr_fields(config))
                            if settings.lr_from_finder is not None else ())
        if found:
            return (f"{out.path} holds runs made otherwise ({'; '.join(found)}): give the "
                    f"settings it was made with to continue it, or another folder")
        return runs_to_keep(out.path, settings.runs)

    outcome = broadcast(ranks, look() if ranks.leader else None)
    if outcome is None:
        return None
    if isinstance(outcome, str):
        raise InputError(outcome)
    finished, missing = outcome
    if out is not None:
        out.metric_rows = [r for r in out.read_metrics() if r["run"] <= len(finished)]
    runs = settings.runs
    if len(finished) < runs:
        then = ("the interrupted run continues from its last checkpoint, if it saved one"
                if settings.checkpoints else
                f"this run kept no checkpoints, so run {len(finished) + 1} starts over "
                f"(--checkpoints keeps them)")
        say(f"resuming {out.path if out else 'the run folder'}: {missing}{len(finished)} of "
            f"{runs} run(s) finished; {then}")
    return finished
