"""Each record's clock, shown on the CPU under the CUDA stand-in: ours and the original's
port train once on a tiny data set, every phase of a run marked where it begins (whitening
init, augmentation, training step, evaluation, TTA, warm-up) and each side's clock where
it starts and stops: on our side the Stopwatch's parts that the record's clock covers
(fastcifar/bench/clocks.py), on the original's its own CUDA events (airbench, hiverge) or
Fulcrum's perf_counter (the harness's driver in the Fable ports). The phases inside the
two clocks are the same; those left out ran on both sides, outside; and each side's
recorded seconds are the spans read here, no more and no fewer."""

from __future__ import annotations

import ast
import contextlib
import functools
import importlib
import io
import sys
import types
from pathlib import Path

import cuda_standin
import numpy as np
import pytest
import torch

import fastcifar
from conftest import REFERENCES
from fastcifar.bench.clocks import FULCRUM, record_clock
from fastcifar.data import ImageData
from fastcifar.train.timing import Stopwatch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from launch_parity import EVAL_CHUNK, RECIPES, WIDTHS, derive_port  # noqa: E402
from ports import write_data  # noqa: E402
from result_files import SUMMARY, read_json, theirs  # noqa: E402
from standin_instruments import find, import_port, patched, under_standin  # noqa: E402

BATCH, TRAIN_IMAGES, TEST_IMAGES = 2, 10, 5 * EVAL_CHUNK  # five batches an epoch (at least 4)
WHITENING, AUGMENTATION, STEP, TTA, WARMUP = (
    "whitening init", "augmentation", "training step", "TTA", "warm-up")
EVALUATION = "evaluation"  # without TTA: between epochs, or after the last step
# The phases of each part of our timed run (train/loop.py): what a clock covering it covers.
PART_PHASES = {"init": {WHITENING}, "train": {AUGMENTATION, STEP}, "tta_eval": {TTA}}


def tta_or_not(model, loader, tta_level=0):
    return TTA if tta_level else EVALUATION


def warmup_without_ctx(*args, ctx=None, **kwargs):
    """Fable's run_steps, whose setup() runs it without a ctx "purely to trigger
    compilation" (the recipe's words)."""
    return None if ctx is not None else WARMUP


# Where each phase begins, on each side: (where, the phase, or what names it from the call).
ORIGINAL_PHASES = (("CifarNet.init_whiten", WHITENING), ("CifarLoader.__iter__", AUGMENTATION),
                   ("precompute_epochs", AUGMENTATION), ("evaluate", tta_or_not),
                   ("tta_accuracy", TTA), ("run_steps", warmup_without_ctx))
ORIGINAL_RUNS = ("main", "timed_run")  # a run: airbench's and hiverge's; Fulcrum's driver's
# Ours: a method where its class is, a function wherever a module imported it by name.
OURS_PHASES = (("fastcifar.models.whitening", "whitening_conv_init", WHITENING),
               ("fastcifar.data.loader", "DeviceLoader.__iter__", AUGMENTATION),
               ("fastcifar.train.evaluate", "evaluation_metrics", EVALUATION),
               ("fastcifar.train.evaluate", "evaluate_with_logits", TTA),
               ("fastcifar.sessions.session", "Session.warmup", WARMUP))
OURS_RUN = ("fastcifar.train.loop", "train_run")


class Timeline:
    """What ran, in order: where each phase began, where each run began and ended, and each
    reading of a clock as the span between its two marks (with what timed it: a Stopwatch
    part, "events" or "perf_counter", and the seconds it read)."""

    def __init__(self):
        self.position, self.open = 0, 0
        self.phases: list[tuple[str, int]] = []
        self.runs: list[tuple[int, int]] = []
        self.spans: list[tuple[int, int, str, float]] = []
        self.parts: list[str] = []  # ours: the Stopwatch's part being timed
        timeline = self

        class Event(cuda_standin._Event):
            def record(self, stream=None):
                super().record(stream)
                self.mark = timeline.mark()

            def elapsed_time(self, end):
                milliseconds = super().elapsed_time(end)
                timeline.spans.append((self.mark, end.mark, (timeline.parts or ["events"])[-1],
                                       milliseconds / 1000))
                return milliseconds

        self.Event = Event

    def mark(self) -> int:
        self.position += 1
        return self.position

    def phase(self, name_of):
        """A wrapper marking the phase `name_of` (or that name_of(*args) names) at each call."""
        def wrap(function):
            @functools.wraps(function)
            def call(*args, **kwargs):
                name = name_of(*args, **kwargs) if callable(name_of) else name_of
                if name:
                    self.phases.append((name, self.mark()))
                self.open += 1
                try:
                    return function(*args, **kwargs)
                finally:
                    self.open -= 1
            return call
        return wrap

    def run(self, function):
        @functools.wraps(function)
        def call(*args, **kwargs):
            first = self.mark()
            try:
                return function(*args, **kwargs)
            finally:
                self.runs.append((first, self.mark()))
        return call

    def timed_part(self, time_method):
        """Stopwatch.time, saying which part the Events inside it time."""
        @contextlib.contextmanager
        def timed(watch, part):
            self.parts.append(part)
            try:
                with time_method(watch, part):
                    yield
            finally:
                self.parts.pop()
        return timed

    def forward(self, module, args):
        """A training-mode forward is a step; an evaluation outside every labelled one is
        named so, to be seen wherever it runs."""
        if module.training:
            self.phases.append((STEP, self.mark()))
        elif not self.open:
            self.phases.append(("evaluation labelled nowhere", self.mark()))

    def perf_counter_clock(self, real_time):
        """The `time` a Fable port's driver reads: each two perf_counter calls a span."""
        started = []

        def perf_counter():
            now, mark = real_time.perf_counter(), self.mark()
            if started:
                start, then = started.pop()
                self.spans.append((start, mark, "perf_counter", now - then))
            else:
                started.append((mark, now))
            return now
        return types.SimpleNamespace(**{**vars(real_time), "perf_counter": perf_counter})

    # What the recorded run (the last) shows.
    def clock(self, kinds) -> list[tuple[int, int, str, float]]:
        first, last = self.runs[-1]
        return [span for span in self.spans if first < span[0] and span[1] < last
                and span[2] in kinds]

    def named(self) -> list[tuple[str, int]]:
        """The phases, each evaluation without TTA named by whether the recorded run's last
        step had come."""
        first, last = self.runs[-1]
        last_step = max(at for name, at in self.phases if name == STEP and first < at < last)
        return [(f"{name} {'between epochs' if at < last_step else 'after the last step'}", at)
                if name == EVALUATION else (name, at) for name, at in self.phases]

    def inside(self, spans) -> set[str]:
        return {name for name, at in self.named() if any(a < at < b for a, b, *_ in spans)}

    def outside(self, spans) -> set[str]:
        """The phases of the recorded run that begin off its clock."""
        first, last = self.runs[-1]
        return {name for name, at in self.named() if first < at < last
                and not any(a < at < b for a, b, *_ in spans)}

    def ran(self) -> set[str]:
        return {name for name, _ in self.named()}


@contextlib.contextmanager
def instrumented(timeline: Timeline, labels):
    """The phases and runs labelled ((owner, attribute), wrapper) for the block, and every
    module's forward marked."""
    with contextlib.ExitStack() as stack:
        for (owner, attribute), wrap in labels:
            stack.enter_context(patched(owner, attribute, wrap))
        hook = torch.nn.modules.module.register_module_forward_pre_hook(timeline.forward)
        stack.callback(hook.remove)
        yield


def our_places(module: str, where: str) -> list[tuple[object, str]]:
    """(owner, attribute) of `module`'s `Class.method`, or of its function in `module` and in
    every fastcifar module that imported it by name."""
    found = find(importlib.import_module(module), where)
    assert found, f"{module} has no {where} to mark any more: update OURS_PHASES"
    if "." in where:
        return [found]
    function = getattr(*found)
    return [(loaded, attribute) for loaded in list(sys.modules.values())
            if getattr(loaded, "__name__", "").startswith("fastcifar")
            for attribute, value in list(vars(loaded).items()) if value is function]


def run_ours(name: str, data: ImageData, folder: Path, timeline: Timeline) -> float:
    """`fastcifar train` on the stand-in's GPU; the summary's seconds on the record's clock."""
    labels = [(place, timeline.phase(phase)) for module, where, phase in OURS_PHASES
              for place in our_places(module, where)]
    labels += [(place, timeline.run) for place in our_places(*OURS_RUN)]
    labels.append(((Stopwatch, "time"), timeline.timed_part))
    with instrumented(timeline, labels):
        fastcifar.train(name, data=data, device="cuda", batch_size=BATCH, widths=WIDTHS,
                        out=folder, verbose=False, progress=False)
    return read_json(folder / SUMMARY)["runs"][0]["record_seconds"]


def run_original(port: Path, data: Path, out: Path, timeline: Timeline) -> float:
    """The port's own __main__ block, one run; the seconds its --out records."""
    module = import_port(port)
    labels = [(found, timeline.phase(phase)) for where, phase in ORIGINAL_PHASES
              if (found := find(module, where))]
    labels += [(found, timeline.run) for where in ORIGINAL_RUNS if (found := find(module, where))]
    if hasattr(module, "time"):  # Fulcrum's driver: its clock
        labels.append(((module, "time"), timeline.perf_counter_clock))
    main = next(node for node in ast.parse(port.read_text()).body if isinstance(node, ast.If)
                and ast.unparse(node.test) == "__name__ == '__main__'")
    argv, sys.argv = sys.argv, [str(port), "--data-dir", str(data), "--runs", "1", "--out",
                                str(out), "--logdir", str(out.parent / "logs")]
    try:
        with instrumented(timeline, labels), contextlib.redirect_stdout(io.StringIO()):
            exec(compile(ast.Module(main.body, []), str(port), "exec"), vars(module))
    finally:
        sys.argv = argv
    return theirs(read_json(out)).seconds[0]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Every original's CPU port at batch BATCH (launch_parity's changes for a count), and
    the data in both sides' forms: TRAIN_IMAGES training and TEST_IMAGES test images."""
    if not REFERENCES.is_dir():
        pytest.skip(f"the original scripts are not here ({REFERENCES})")
    folder = tmp_path_factory.mktemp("clock-spans")
    rng = np.random.default_rng(0)
    data = ImageData(rng.integers(0, 256, (TRAIN_IMAGES, 32, 32, 3), dtype=np.uint8),
                     np.arange(TRAIN_IMAGES) % 10,
                     rng.integers(0, 256, (TEST_IMAGES, 32, 32, 3), dtype=np.uint8),
                     np.arange(TEST_IMAGES) % 10, tuple(map(str, range(10))), name="random")
    ports = {name: derive_port(name, folder / "ports", REFERENCES, BATCH) for name in RECIPES}
    return data, write_data(data, folder / "data"), ports


@pytest.mark.parametrize("name", RECIPES)
def test_ours_and_the_originals_clock_cover_the_same_phases(tiny, name, tmp_path):
    data, data_dir, ports = tiny
    clock = record_clock(name)
    ours, original = Timeline(), Timeline()
    with under_standin(ours):
        our_seconds = run_ours(name, data, tmp_path / "ours", ours)
    with under_standin(original):
        their_seconds = run_original(ports[name], data_dir, tmp_path / "original.json",
                                     original)
    our_clock = ours.clock(clock.parts)
    their_clock = original.clock({"perf_counter"} if clock is FULCRUM else {"events"})
    covered = set().union(*(PART_PHASES[part] for part in clock.parts))
    assert ours.inside(our_clock) == original.inside(their_clock) == covered, clock.name
    assert STEP not in ours.outside(our_clock) | original.outside(their_clock)  # every step
    # What the clock leaves out ran on both sides all the same (TTA, on Fulcrum's clock).
    left_out = set().union(*PART_PHASES.values()) - covered
    assert left_out <= ours.ran() & original.ran()
    # No warm-up on either clock, and no evaluation that nobody labelled anywhere.
    assert WARMUP in ours.ran() and WARMUP not in ours.inside(our_clock)
    assert WARMUP not in original.inside(their_clock)
    assert not {"evaluation labelled nowhere"} & (ours.ran() | original.ran())
    # Each side's recorded seconds are the spans read here.
    assert our_seconds == pytest.approx(sum(span[3] for span in our_clock), rel=1e-9)
    assert their_seconds == pytest.approx(sum(span[3] for span in their_clock), rel=1e-9)
