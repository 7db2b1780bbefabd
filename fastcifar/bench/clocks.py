"""What each record's timer covers, so that a race is run on the record's own clock.

A run of ours times three parts (train/loop.py, by airbench's rule): `init` (the
data-dependent initialisation: whitening), `train` (every epoch's steps, with the epoch's
augmentation and the weight averaging) and `tta_eval` (the final evaluation with TTA).
Per-epoch validation, data loading, model building and any warm-up run are never timed.
Each original's clock covers some of these parts; a run's figure on that clock is the sum
of those parts (record_seconds), reported beside its whole timed run.
"""

from __future__ import annotations

from dataclasses import dataclass

PARTS = ("init", "train", "tta_eval")  # what a run of ours times (train/loop.py)


@dataclass(frozen=True)
class Clock:
    name: str
    parts: tuple[str, ...]  # of PARTS, the ones this clock covers
    starts: str  # where its timer starts and stops, and what it leaves out
    stops: str
    leaves_out: str


AIRBENCH = Clock(
    "airbench", PARTS,
    starts="a CUDA event before the whitening init, and before each epoch's training loop "
           "and the TTA evaluation",
    stops="a CUDA event after each, then torch.cuda.synchronize (the host waits at every "
          "epoch's end)",
    leaves_out="per-epoch train and validation accuracy, model.reset(), the warm-up run")
HIVERGE = Clock(
    "hiverge", PARTS,
    starts="one CUDA event before the whitening init; before it, a GPU sleep of 6e9 cycles "
           "(torch.cuda._sleep) lets the host queue the run's first kernels meanwhile",
    stops="one CUDA event after the TTA evaluation, then a synchronize: no sync inside",
    leaves_out="the evaluations after the clock, the warm-up run")
FULCRUM = Clock(
    "fulcrum", ("init", "train"),
    starts="perf_counter after torch.cuda.synchronize, before prepare (the reset, the "
           "whitening init, the run's augmented stream)",
    stops="perf_counter after a synchronize at the end of the training loop (the harness's "
          "compute_honest_s: prepare + train)",
    leaves_out="the 6-view TTA evaluation and the grading, the build (compile warm-up)")

# The clock each recipe's record was published on (recipes without a raced original: ours,
# airbench's rule, every part).
RECORD_CLOCKS = {"airbench94": AIRBENCH, "airbench94_muon": AIRBENCH, "airbench95": AIRBENCH,
                 "airbench96": AIRBENCH, "airbench96_faster": AIRBENCH, "hiverge94": HIVERGE,
                 "fable94_e5": FULCRUM, "fable94_e1": FULCRUM}


def record_clock(recipe: str) -> Clock:
    return RECORD_CLOCKS.get(recipe, AIRBENCH)


def record_seconds(recipe: str, seconds_by_part: dict[str, float]) -> float:
    """A run's timed seconds on its record's clock: the parts that clock covers."""
    return sum(seconds_by_part.get(part, 0.0) for part in record_clock(recipe).parts)


def clock_note(recipe: str, runs) -> str:
    """Where the record's clock covers less than a run of ours times: the mean of the runs'
    seconds on it, said so (runs: RunResults)."""
    clock = record_clock(recipe)
    if clock.parts == PARTS:
        return ""
    mean = sum(record_seconds(recipe, r.seconds_by_part) for r in runs) / len(runs)
    return f" ({mean:.2f} on {clock.name}'s clock: {' + '.join(clock.parts)})"
