"""The kinds of step the GPU suite runs (benchmarks/gpu_suite.py), each a class with what
the suite asks of a step: its command line and the file it leaves its runs in, the runs it
reads back from that file, what it costs in runs of the full recipe (for the estimate
before it starts), and what it hands back to the suite's output once it has run.

- Ours: runs of a fastcifar recipe (`fastcifar train`), a pair's side or another recipe's;
- Original: runs of an original's port, the other side of a pair;
- Ablation: airbench94's ablation (`fastcifar ablate`), its table and picture handed back;
- Pruning: examples/pruning.py, its table said into the log.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from fastcifar.recipes import get_recipe
from fastcifar.sessions import ablate
from reference_ports import ALL_PORTS
from result_files import (OURS, THEIRS, Runs, ablation_runs, ours, pruning_runs, read_json,
                          suite_step, theirs)

ROOT = Path(__file__).resolve().parents[1]
REHEARSAL = {"epochs": 1, "batch_size": 32}  # and every width at most 16
SCORE_RUNS = 2  # the pruning step's scoring runs

# The first estimate of a step, before any process of its side has run: (seconds of start-up
# and compile, seconds a run). Basis: a process imports torch and loads cached data in about
# 10 s; a cold max-autotune compile takes about three minutes (on an H200 airbench94_muon's
# compiling warm-up run took 172 s with ours, 115 s with the original's script, 26 s with
# ours given a warm Inductor cache: results/h200-standin-lease2/); a run takes about its
# published A100 time (an H200 is faster) plus its untimed per-epoch evaluation, a second
# or two.
COMPILED_START = 180.0
UNCOMPILED_START = 30.0
RUN_SECONDS = {"airbench94_muon": 4.0, "airbench94": 5.0, "hiverge94": 3.5, "fable94_e1": 3.5,
               "fable94_e5": 3.5, "airbench94_bnfree": 8.0,
               "hlb": 8.0, "airbench95": 12.0, "bag_of_tricks": 30.0,
               "hlb_state_sketch": 14.0, "resnet9_dawnbench": 80.0, "airbench96": 37.0,
               "airbench96_faster": 30.0}


def rehearsal_overrides(recipe: str) -> dict:
    config = get_recipe(recipe).config
    narrow = {"widths": tuple(min(w, 16) for w in config.widths)} if hasattr(config, "widths") \
        else {}
    if hasattr(config, "select_keep"):  # the hardest half of each rehearsal batch
        narrow["select_keep"] = REHEARSAL["batch_size"] // 2
    return {**REHEARSAL, **narrow}


def set_options(overrides: dict, epochs_option: bool = True) -> list[str]:
    """`--epochs`/`--set` options of `fastcifar train` for a dict of overrides (the epochs a
    `--set` too where `epochs_option` is false)."""
    options = []
    for key, value in overrides.items():
        text = ",".join(map(str, value)) if isinstance(value, tuple) else str(value)
        options += (["--epochs", text] if key == "epochs" and epochs_option
                    else ["--set", f"{key}={text}"])
    return options


@dataclass
class Step:
    """One process: `runs` runs of `recipe`, the `chunk`-th process of its side. `suite`,
    below, is the gpu_suite.Suite running it (its options, folders and log)."""

    recipe: str
    runs: int
    chunk: int = 0
    compile: bool = False
    result: dict = field(default_factory=dict)
    side: ClassVar[str]

    @property
    def key(self) -> str:
        return f"{self.recipe}-{self.side}-{self.chunk}"

    def record(self) -> dict:
        return suite_step(self.key, self.recipe, self.side, self.chunk, self.runs,
                          self.compile, self.result)

    def row_side(self) -> str:
        """The side as the suite's table names it."""
        return self.side

    def paired_with(self, other: "Step") -> bool:
        """Whether `other`'s times, before this step's own side has run, are its estimate."""
        return False

    def first_estimate(self, suite) -> float:
        """Seconds the step should take, before any process of its side has run."""
        start = COMPILED_START if self.compile else UNCOMPILED_START
        return start + self.cost_in_runs(suite) * RUN_SECONDS.get(self.recipe, 30.0)

    def cost_in_runs(self, suite) -> float:
        """What the step costs, in runs of its recipe."""
        return self.runs

    def command(self, suite) -> tuple[list[str], Path]:
        raise NotImplementedError

    def read(self, path: Path) -> Runs:
        raise NotImplementedError

    def hand_back(self, suite, path: Path) -> None:
        """After the process, with its result file there."""


class PairSide(Step):
    def paired_with(self, other: Step) -> bool:
        return isinstance(other, PairSide)  # the two compile nets alike


class Ours(PairSide):
    side: ClassVar[str] = OURS

    def command(self, suite) -> tuple[list[str], Path]:
        folder = suite.work / "runs" / self.key
        command = [sys.executable, "-m", "fastcifar", "train", "--recipe", self.recipe,
                   "--data", suite.args.data, "--device", "cuda", "--runs", str(self.runs),
                   "--seed", str(self.chunk * suite.args.runs), "--out", str(folder)]
        if self.compile:
            command += ["--compile", "max-autotune"]
        if suite.args.rehearsal:
            command += set_options(rehearsal_overrides(self.recipe))
        return command, folder / "summary.json"

    def read(self, path: Path) -> Runs:
        # on the original's clock (fastcifar/bench/clocks.py): the parts its timer covers
        return ours(read_json(path)["runs"], on_record_clock=True)


@dataclass
class Original(PairSide):
    port: str = field(kw_only=True)  # the original's, in reference_ports.ALL_PORTS
    side: ClassVar[str] = THEIRS

    def row_side(self) -> str:
        return f"{self.side} {ALL_PORTS[self.port].source}"

    def command(self, suite) -> tuple[list[str], Path]:
        result = suite.work / f"{self.key}.json"
        return [sys.executable, str(suite.ports[self.port]), "--data-dir",
                str(suite.work / "data"), "--runs", str(self.runs), "--out", str(result),
                "--logdir", str(suite.work / "reference-logs")], result

    def read(self, path: Path) -> Runs:
        return theirs(read_json(path))


class Ablation(Step):
    side: ClassVar[str] = "ablation"

    @staticmethod
    def tricks(suite) -> list[str]:
        return suite.args.ablation_tricks or [t.name for t in get_recipe("airbench94").tricks]

    def cost_in_runs(self, suite) -> float:
        """Each variant's battery, and with --ablation-epochs-for-accuracy at most every
        variant's longer sweep."""
        variants = len(self.tricks(suite))
        sweep = (sum(ablate.SWEEP) * variants * self.runs
                 if suite.args.ablation_epochs_for_accuracy else 0)
        return self.runs * (variants + 1) + sweep

    def command(self, suite) -> tuple[list[str], Path]:
        folder = suite.work / "ablation"
        command = [sys.executable, "-m", "fastcifar", "ablate", "--recipe", self.recipe,
                   "--data", suite.args.data, "--device", "cuda", "--runs", str(self.runs),
                   "--tricks", ",".join(self.tricks(suite)), "--out", str(folder)]
        if suite.args.ablation_epochs_for_accuracy:
            command.append("--epochs-for-accuracy")
        if suite.args.rehearsal:
            command += set_options(rehearsal_overrides(self.recipe))
        return command, folder / "ablation.json"

    def read(self, path: Path) -> Runs:
        return ablation_runs(read_json(path))

    def hand_back(self, suite, path: Path) -> None:
        for name in ("ablation.json", "ablation.png"):  # its table and picture come back
            suite.keep(path.parent / name)


class Pruning(Step):
    side: ClassVar[str] = "pruning"

    def cost_in_runs(self, suite) -> float:
        return SCORE_RUNS + 3 * self.runs  # scoring, then the two halves and all the images

    def command(self, suite) -> tuple[list[str], Path]:
        folder = suite.work / "pruning"
        command = [sys.executable, str(ROOT / "examples" / "pruning.py"), "--data",
                   suite.args.data, "--device", "cuda", "--recipe", self.recipe,
                   "--score-runs", str(SCORE_RUNS), "--runs", str(self.runs),
                   "--out", str(folder)]
        if suite.args.rehearsal:  # half the batch: the kept half makes as many batches
            overrides = {**rehearsal_overrides(self.recipe),
                         "batch_size": REHEARSAL["batch_size"] // 2}
            command += set_options(overrides, epochs_option=False)  # (its epochs a --set)
            command += ["--score-epochs", "2"]  # (a data map needs two epochs)
        return command, folder / "pruning.json"

    def read(self, path: Path) -> Runs:
        return pruning_runs(read_json(path))

    def hand_back(self, suite, path: Path) -> None:
        suite.say((path.parent / "pruning.md").read_text().rstrip())  # its table into the log
