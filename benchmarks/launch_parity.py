"""Launch parity: the kernels one training step and one whole timed run launch, fastcifar's
record recipes beside their originals' ports, counted on the CPU.

    python benchmarks/kernel_launches.py --against-originals --references ../shared/references

How a count is made, the same way for both sides:
- The rule is kernel_launches' (Operator.gpu_launch): every leaf kernel operator torch's
  profiler records on the host, each outermost _foreach_ call once, as a GPU launches it.
- Both sides run under the CUDA stand-in (tests/standin/): their device is "cuda", so they
  take the branches a GPU takes while the kernels run on the CPU. `Tensor.is_cuda`
  answers True as well (LikeAGPU): fastcifar reads it to choose fused SGD and Muon's
  iteration dtype. No side is compiled (TORCHDYNAMO_DISABLE): eager kernels are counted.
- A run is what its clock covers. Every torch.cuda.Event pair whose elapsed_time is read
  brackets a timed part: airbench's and hiverge's own events, fastcifar's Stopwatch.
  Fulcrum's harness times a trial's prepare and train by perf_counter between
  synchronizes; the driver here brackets the same two calls with an event pair. What is
  off the clock (model building, per-epoch validation, Fulcrum's build and its 6-view
  TTA) is not counted.
- A step is a call of the network in training mode and everything after it up to the
  next: loss, backward, optimisers, schedules, running metrics, the next batch, averaging
  when it falls there. The step figure is the median over the run's steps.
- Tiny data, real steps: each side trains on as many images as make the real run's full
  batches per epoch (50,000 over its batch size) at a batch of 2, and evaluates 20 test
  images in chunks of 4: as 10,000 in chunks of 2,000, 5 chunks (and 2 for hiverge's
  least confident quarter). Ours is given the same chunk (fastcifar's evaluation takes
  2,000 too). --parity-batch-sizes 2 4 checks that the counts do not depend on the batch.
- The networks are 16/32/32 wide instead of 64/256/256, at a fraction of the CPU time.
  Some CPU kernels choose their sub-operators by size (F.pad's fills): at 16/32/32 a
  whole hiverge run counts exactly as at 64/256/256, on both sides, where 8/16/16 does
  not, and 32/64/64 gives every count of 16/32/32 but one. That one: Fable's prepare
  resets the weights on the clock, and torch's dirac_ init launches once per channel; each
  such reset is counted again at the real widths and the difference added to the init
  (correct_resets).
- float32 on both sides, since a CPU has no native float16 arithmetic: the originals'
  CPU ports change their half precision to float32, ours runs in float32. A dtype changes
  which kernels run, not how many, except casts: a .float() or .half() of a tensor
  already of that dtype launches nothing, so a cast that converts here may not on a GPU
  and the reverse. Conversions (.to of a dtype or memory layout) are counted apart, on
  both sides, for a reader to weigh.
- The originals run from their ports (benchmarks/reference_ports.py, frontier_ports.py),
  derived into a temporary folder with, on top of their CPU changes, count_changes below
  (the widths, the tiny data's batch and evaluation chunks; for airbench94_muon, which has
  no CPU changes, also float32 and compile off), every one listed in the port's
  .changes.json. The run is the original's own main(run, model) (airbench, hiverge) or
  its setup(), reset_all() and train() as Fulcrum's harness drives them (Fable); their
  __main__ blocks, which repeat runs and write records, do not run.

Where launches go: each is put in the part of its outermost labelled range: forward (a
call of the network in training mode), backward (autograd's engine), optimisers (torch's
Optimizer.step), averaging (lookahead / EMA), data (the loader: augmentation, shuffling,
batches), init (whitening; Fable's reset of the weights), TTA (the timed test-time
evaluation); anything else is glue inside a step (loss, lr schedule, running metrics) or
other work outside the steps.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import copy
import dataclasses
import functools
import importlib.util
import inspect
import io
import os
import statistics
import sys
import tempfile
import types
import warnings
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from torch.autograd.profiler import record_function
from torch.overrides import TorchFunctionMode
from torch.profiler import ProfilerActivity, profile

import frontier_ports as fp
import reference_ports as rp
from kernel_launches import Operator, operator_tree

from fastcifar.bench.clocks import record_clock
from fastcifar.data import ImageData
from fastcifar.data.loader import DeviceData
from fastcifar.errors import InputError
from fastcifar.recipes import get_recipe
from fastcifar.train.timing import TIMED

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "standin"))
import cuda_standin  # noqa: E402

RECIPES = ("airbench94_muon", "hiverge94", "fable94_e5", "fable94_e1")
PORTS = {"airbench94_muon": rp.PORTS["airbench94_muon"], **fp.FRONTIER_PORTS}
# The real runs' full batches per epoch: 50,000 images over airbench's batch of 2,000 and
# the frontier recipes' 1,536.
BATCHES_PER_EPOCH = {"airbench94_muon": 25, "hiverge94": 32, "fable94_e5": 32,
                     "fable94_e1": 32}
WIDTHS = (16, 32, 32)
EVAL_CHUNK = 4  # test images per evaluation chunk (2,000 in every original and in ours)
TEST_IMAGES = 5 * EVAL_CHUNK  # 5 chunks, as 10,000 test images in chunks of 2,000
LABEL = "launches:"  # the profiler ranges this module adds

# The parts a launch can fall in, and how the report groups them.
GROUPS = {
    "forward+backward": ("forward", "backward", "glue"),
    "optimisers": ("optimisers",),
    "averaging": ("averaging",),
    "data": ("data",),
    "per-run extras": ("init", "tta", "evaluation", "other"),
}
PARTS = tuple(part for parts in GROUPS.values() for part in parts)
PART_NAMES = {"glue": "rest of the step (loss, lr, metrics)", "init": "init (whitening...)",
              "tta": "TTA", "evaluation": "other evaluation", "other": "other per-run"}
SUMMARY = ("run", "step", "steps", "run_parts", "step_parts")  # given at each batch size
# What the count of an original's run adds to its record's clock (fastcifar/bench/clocks.py).
CLOCK_NOTES = {
    "fable94_e1": "On a GPU its train is one replay of a CUDA graph of the whole run, a "
                  "launch or so from the host for all these kernels; its CPU port runs the "
                  "recipe's own eager loop (run_steps) instead, which is what is counted, "
                  "and that loop augments each epoch again after prepare's materialised "
                  "epochs (kept: the harness charges them).",
}
OURS_CLOCK = ("fastcifar's Stopwatch: init (the recipe's set-up: whitening, optimisers, "
              "averaging), each epoch's training and the final TTA; not model building or "
              "the per-epoch validation")


def original_clock(name: str) -> str:
    clock = record_clock(name)
    return " ".join([f"{clock.name}'s clock starts at {clock.starts}; stops at "
                     f"{clock.stops}; leaves out {clock.leaves_out}.",
                     CLOCK_NOTES.get(name, "")]).strip()


# The originals' ports, with the changes for the count.

def count_changes(name: str, batch: int, narrow: bool = True) -> tuple[rp.Change, ...]:
    """What a count changes in a port, on top of its CPU changes (none for airbench's);
    with `narrow`, the networks WIDTHS wide."""
    why = "launch count: tiny data at the real number of steps: "
    block1, block2, block3 = WIDTHS
    changes = [rp.Change(fp.WIDTHS.old,
                         f"widths = dict(block1={block1}, block2={block2}, block3={block3})",
                         f"launch count: widths {block1}/{block2}/{block3} instead of "
                         f"64/256/256 (the same kernels, and the same filter shapes to group "
                         f"for Muon)")] if narrow else []
    if name == "airbench94_muon":
        changes = [rp.Change(fp.CPU_NO_COMPILE.old, fp.CPU_NO_COMPILE.new,
                             fp.CPU_COMPILE_WHY),
                   rp.Change(".half()", ".float()", fp.FLOAT32_WHY.format(
                       what="the images' and the network's .half()"), count=2),
                   *changes,
                   rp.Change("    batch_size = 2000\n", f"    batch_size = {batch}\n",
                             why + f"batch {batch} instead of 2000"),
                   rp.Change("test_images.split(2000)", f"test_images.split({EVAL_CHUNK})",
                             why + f"evaluation in chunks of {EVAL_CHUNK} of "
                                   f"{TEST_IMAGES} test images instead of 2000 of 10,000")]
    elif name == "hiverge94":
        changes += [rp.Change("    training_batch_size = 1536\n",
                              f"    training_batch_size = {batch}\n",
                              why + f"batch {batch} instead of 1536"),
                    rp.Change("            B = 2000\n", f"            B = {EVAL_CHUNK}\n",
                              why + f"TTA's first pass in chunks of {EVAL_CHUNK} of "
                                    f"{TEST_IMAGES} test images instead of 2000 of 10,000"),
                    rp.Change("            tta_batch_size = 2000\n",
                              f"            tta_batch_size = {EVAL_CHUNK}\n",
                              why + f"TTA's views in chunks of {EVAL_CHUNK} of the "
                                    f"quarter, 5 images, instead of 2000 of 2,500")]
    else:
        changes.append(rp.Change('"batch_size": 1536,', f'"batch_size": {batch},',
                                 why + f"batch {batch} instead of 1536"))
    return tuple(changes)


def derive_port(name: str, out: Path, references: Path, batch: int,
                narrow: bool = True) -> Path:
    port = PORTS[name]
    changes = port.cpu_changes + count_changes(name, batch, narrow)
    return rp.derive(dataclasses.replace(port, cpu_changes=changes), out, references, cpu=True)


def import_port(path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(f"launch_count_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    argv, sys.argv = sys.argv, [str(path)]  # (they read their own source through argv[0])
    try:
        spec.loader.exec_module(module)
    finally:
        sys.argv = argv
    return module


def tiny_data(name: str, batch: int, seed: int = 0) -> ImageData:
    rng = np.random.default_rng(seed)
    n = BATCHES_PER_EPOCH[name] * batch
    return ImageData(rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8),
                     rng.integers(0, 10, n), rng.integers(0, 256, (TEST_IMAGES, 32, 32, 3),
                                                          dtype=np.uint8),
                     np.arange(TEST_IMAGES) % 10, tuple(str(c) for c in range(10)),
                     name="random images")


# The instruments: the clock's spans, the labelled ranges, GPU branches.

class Clock:
    """torch.cuda.Event, as the stand-in's, that also marks the profile where it is
    recorded; each elapsed_time read makes the span between two marks a timed one."""

    def __init__(self):
        self.spans: list[tuple[str, str]] = []
        self.marks = 0
        clock = self

        class Event(cuda_standin._Event):
            def record(self, stream=None):
                super().record(stream)
                clock.marks += 1
                self.mark = f"{LABEL}clock#{clock.marks}"
                with record_function(self.mark):
                    pass

            def elapsed_time(self, end):
                clock.spans.append((self.mark, end.mark))
                return super().elapsed_time(end)

        self.Event = Event


IS_CUDA = torch.Tensor.is_cuda  # the property


class LikeAGPU(TorchFunctionMode):
    """Tensor.is_cuda is True, as on a GPU, for the code that picks its path by it."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, "__self__", None) is IS_CUDA:
            return True
        return func(*args, **(kwargs or {}))


class ForwardLabels:
    """Each outermost call of a module with parameters (a network, not a loss) is labelled
    forward in training mode and evaluation in eval mode."""

    def __init__(self):
        self.depth, self.open = 0, []

    def before(self, module, args):
        if self.depth == 0 and next(module.parameters(), None) is not None:
            label = record_function(LABEL + ("forward" if module.training else "evaluation"))
            label.__enter__()
            self.open.append(label)
            self.top = module
        self.depth += 1

    def after(self, module, args, output):
        self.depth -= 1
        if self.depth == 0 and self.open and module is self.top:
            self.open.pop().__exit__(None, None, None)

    @contextlib.contextmanager
    def installed(self):
        hooks = [torch.nn.modules.module.register_module_forward_pre_hook(self.before),
                 torch.nn.modules.module.register_module_forward_hook(self.after,
                                                                      always_call=True)]
        try:
            yield
        finally:
            for hook in hooks:
                hook.remove()


def labelled(function, part: str, what: str = ""):
    """`function` with its work labelled `part` (and `what` it is); a generator's work is
    labelled at each item (a loader's augmentation runs when the first batch is asked for)."""
    name = LABEL + part + (f":{what}" if what else "")
    if inspect.isgeneratorfunction(function):
        @functools.wraps(function)
        def items(*args, **kwargs):
            iterator = function(*args, **kwargs)
            while True:
                with record_function(name):
                    try:
                        item = next(iterator)
                    except StopIteration:
                        return
                yield item
        return items

    @functools.wraps(function)
    def call(*args, **kwargs):
        with record_function(name):
            return function(*args, **kwargs)
    return call


@contextlib.contextmanager
def patched(owner, attribute: str, make):
    """owner.attribute replaced by make(it) for the block."""
    saved = inspect.getattr_static(owner, attribute)
    own = attribute in vars(owner)
    setattr(owner, attribute, make(getattr(owner, attribute)))
    try:
        yield
    finally:
        if own:
            setattr(owner, attribute, saved)
        else:
            delattr(owner, attribute)


def find(module, dotted: str):
    """(owner, attribute) of module's `A.b` or `b`, or None if it has none."""
    *path, attribute = dotted.split(".")
    owner = module
    for part in path:
        owner = getattr(owner, part, None)
    return (owner, attribute) if owner is not None and hasattr(owner, attribute) else None


# What labels what, on each side: (where, part). An original's entries it lacks are skipped.
ORIGINAL_LABELS = (("CifarLoader.__iter__", "data"), ("precompute_epochs", "data"),
                   ("CifarNet.init_whiten", "init"), ("CifarNet.reset", "init"),
                   ("reset_all", "init"),
                   ("LookaheadState.__init__", "averaging"), ("LookaheadState.update", "averaging"),
                   ("evaluate", "tta"))
OURS_LABELS = (("fastcifar.data.loader", "DeviceLoader.__iter__", "data"),
               ("fastcifar.optim.averaging", "WeightAverage.update", "averaging"),
               ("fastcifar.optim.averaging", "WeightAverage.restart", "averaging"),
               ("fastcifar.optim.averaging", "WeightAverage.copy_to", "averaging"),
               ("fastcifar.train.loop", "evaluate_with_logits", "tta"))


# One run, profiled, and its count.

def profiled(run, clock: Clock) -> dict:
    clock.spans.clear()
    with ForwardLabels().installed(), profile(activities=[ProfilerActivity.CPU]) as prof:
        run()
    return analyse(operator_tree(prof), clock.spans)


def outermost_part(ops: list[Operator], i: int) -> str | None:
    """The part of the outermost labelled range around ops[i], if any."""
    part = None
    while i >= 0:
        name = ops[i].name
        if name.startswith(LABEL) and not name.startswith(LABEL + "clock"):
            part = name[len(LABEL):].split(":")[0]
        elif name.startswith(("Optimizer.step#", "Optimizer.zero_grad#")):
            part = "optimisers"
        elif name.startswith("autograd::engine::evaluate_function"):
            part = "backward"
        i = ops[i].parent
    return part


def timed_part(ops: list[Operator], i: int) -> str | None:
    """The part of fastcifar's Stopwatch (init, train, tta_eval) that ops[i] ran in."""
    while i >= 0:
        if ops[i].name.startswith(TIMED):
            return ops[i].name[len(TIMED):]
        i = ops[i].parent
    return None


def is_conversion(ops: list[Operator], i: int) -> bool:
    """A launch of a conversion called as such (.float(), .to(dtype), .to(memory_format)),
    not of a scalar operand's wrapping inside an arithmetic operator."""
    outermost = None
    while i >= 0:
        if ops[i].name.startswith("aten::"):
            outermost = ops[i].name
        i = ops[i].parent
    return outermost in ("aten::to", "aten::_to_copy", "aten::type_as")


def analyse(ops: list[Operator], spans: list[tuple[str, str]]) -> dict:
    """The launches inside the clock's spans: the run's by part, and each step's; with the
    operators launched in each part, over the run and in the median step."""
    marks = {op.name: op for op in ops if op.name.startswith(LABEL + "clock")}
    timed = sorted((marks[a].end, marks[b].start) for a, b in spans)
    if not timed:
        raise RuntimeError("the run read no clock: nothing was timed")
    starts = [s for s, _ in timed]
    forwards = [op.start for op in ops if op.name == LABEL + "forward"]
    resets = [op.start for op in ops if op.name == LABEL + "init:CifarNet.reset"]
    run = {part: Counter() for part in PARTS}
    stopwatch = Counter()  # ours: by the Stopwatch's part
    steps: dict[int, list[tuple[str, str, bool]]] = {}  # by forward: (part, op, conversion)
    conversions = Counter()  # by part
    for i, op in enumerate(ops):
        if not op.gpu_launch:
            continue
        s = bisect.bisect_right(starts, op.start) - 1
        if s < 0 or op.start >= timed[s][1]:
            continue  # outside the clock
        part = outermost_part(ops, i)
        f = bisect.bisect_right(forwards, op.start) - 1
        in_step = f >= 0 and forwards[f] >= timed[s][0] and part not in ("init", "tta")
        part = part or ("glue" if in_step else "other")
        conversion = is_conversion(ops, i)
        run[part][op.name] += 1
        conversions[part] += conversion
        stopwatch[timed_part(ops, i)] += 1
        if in_step:
            steps.setdefault(f, []).append((part, op.name, conversion))
    totals = [len(step) for step in steps.values()]
    median = statistics.median_low(totals) if totals else 0
    step = next((s for s in steps.values() if len(s) == median), [])
    step_ops = {part: Counter() for part in PARTS}
    for part, name, _ in step:
        step_ops[part][name] += 1
    return {"run": sum(sum(c.values()) for c in run.values()), "step": median,
            "steps": len(steps), "step_mean": round(statistics.fmean(totals), 1) if totals else 0,
            "step_min": min(totals, default=0), "step_max": max(totals, default=0),
            "timed_spans": len(timed), "conversions_in_run": sum(conversions.values()),
            "run_conversions_by_part": {k: n for k, n in conversions.items() if n},
            "weight_resets": sum(any(a <= t < b for a, b in timed) for t in resets),
            "conversions_in_step": sum(c for _, _, c in step),
            "run_parts": {part: sum(c.values()) for part, c in run.items()},
            "step_parts": {part: sum(c.values()) for part, c in step_ops.items()},
            "run_by_stopwatch_part": {k: n for k, n in stopwatch.items() if k is not None},
            "step_operators": {part: dict(c.most_common()) for part, c in step_ops.items() if c},
            "run_operators": {part: dict(c.most_common()) for part, c in run.items() if c}}


# The two sides.

def count_original(name: str, references: Path, batch: int, work: Path, clock: Clock) -> dict:
    folder = work / f"{name}-batch{batch}"
    path = derive_port(name, folder, references, batch)
    data_dir = rp.write_data(tiny_data(name, batch), folder / "data")
    with contextlib.redirect_stdout(io.StringIO()):
        module = import_port(path)
        with contextlib.ExitStack() as labels:
            for where, part in ORIGINAL_LABELS:
                found = find(module, where)
                if found:
                    labels.enter_context(patched(
                        *found, lambda f, p=part, w=where: labelled(f, p, w)))
            result = profiled(original_run(name, module, data_dir), clock)
        if result["weight_resets"]:
            correct_resets(result, name, references, work)
    result["port_changes"] = [c.why for c in PORTS[name].changes +
                              PORTS[name].cpu_changes + count_changes(name, batch)]
    return result


def correct_resets(result: dict, name: str, references: Path, work: Path) -> None:
    """A reset of the weights on the clock (Fable's prepare) launches by the widths: torch's
    dirac_ init sets one weight per channel, a launch each. Its launches are counted at the
    real widths and the difference is added to the run's init."""
    launches = {}
    for narrow in (True, False):
        path = derive_port(name, work / f"{name}-reset-{'narrow' if narrow else 'real'}",
                           references, batch=2, narrow=narrow)
        model = import_port(path).CifarNet().cuda()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            model.reset()
        launches[narrow] = sum(op.gpu_launch for op in operator_tree(prof))
    correction = result["weight_resets"] * (launches[False] - launches[True])
    result["weight_reset_launches"] = {"counted": launches[True], "at_real_widths": launches[False]}
    result["init_correction_to_real_widths"] = correction
    result["run"] += correction
    result["run_parts"]["init"] += correction


def original_run(name: str, module, data_dir: Path):
    """The original's run as a function: its main(run, model) (airbench, hiverge: its own
    events time it), or Fulcrum's harness's trial (Fable): build once, untimed, then
    prepare and train between the two events of a clock."""
    if name in ("airbench94_muon", "hiverge94"):
        module.args = argparse.Namespace(data_dir=str(data_dir))  # what main() reads
        model = module.CifarNet().cuda().to(memory_format=torch.channels_last)
        return lambda: module.main(1, model)
    module.DATA_PATH = str(data_dir)  # what setup() reads
    torch.manual_seed(1234)  # the harness's BUILD_SEED
    model, extra = module.setup()
    ctx = types.SimpleNamespace(validate=lambda model, step: None)

    def trial():
        nonlocal model, extra
        torch.manual_seed(0)
        start, end = (torch.cuda.Event(enable_timing=True) for _ in range(2))
        start.record()
        if name == "fable94_e1":  # its prepare: the cached setup()
            model, extra = module.setup()
        else:
            module.reset_all(model, extra["train_loader"], *extra["optimizers"])
        module.train(model, extra, ctx)
        end.record()
        torch.cuda.synchronize()
        start.elapsed_time(end)
    return trial


def count_ours(name: str, batch: int, clock: Clock) -> dict:
    from fastcifar.train import evaluate
    from fastcifar.train.loop import train_run
    recipe = get_recipe(name)
    config = dataclasses.replace(recipe.config, batch_size=batch, widths=WIDTHS)
    device = torch.device("cuda")
    data = DeviceData.from_dataset(tiny_data(name, batch), device)
    with contextlib.ExitStack() as labels:
        for module, where, part in OURS_LABELS:
            found = find(importlib.import_module(module), where)
            if found is None:
                raise RuntimeError(f"{module} has no {where} to label any more: update "
                                   f"launch_parity.OURS_LABELS")
            labels.enter_context(patched(*found, lambda f, p=part: labelled(f, p)))
        # Ours evaluates in chunks of 2,000 too: the same scaling as the originals'.
        labels.enter_context(patched(evaluate, "selective_tta_logits", in_small_chunks))
        labelled_recipe = recipe_with_labelled_setup(recipe)
        count = profiled(lambda: train_run(labelled_recipe, config, data, device, seed=0,
                                           precision="float32"), clock)
    # The record's clock (fastcifar/bench/clocks.py): the Stopwatch's parts it covers.
    record = record_clock(name)
    count["record_clock"] = {"name": record.name, "parts": list(record.parts)}
    count["run_on_record_clock"] = sum(count["run_by_stopwatch_part"].get(part, 0)
                                       for part in record.parts)
    return count


def in_small_chunks(selective_tta_logits):
    """fastcifar's evaluation in chunks of EVAL_CHUNK test images instead of 2,000."""
    @functools.wraps(selective_tta_logits)
    def call(*args, **kwargs):
        if len(args) < 5:
            kwargs.setdefault("batch_size", EVAL_CHUNK)
        return selective_tta_logits(*args, **kwargs)
    return call


def recipe_with_labelled_setup(recipe):
    """The recipe with its set-up (what fastcifar's init timer covers) labelled init."""
    labelled_recipe = copy.copy(recipe)
    labelled_recipe.setup = labelled(recipe.setup, "init")
    return labelled_recipe


@contextlib.contextmanager
def under_standin():
    """The CUDA stand-in, the clock and GPU branches, in this process, for the block."""
    standin = cuda_standin.StandIn(devices=1).install()
    clock = Clock()
    saved_event, torch.cuda.Event = torch.cuda.Event, clock.Event
    mode = LikeAGPU()
    dynamo = os.environ.get("TORCHDYNAMO_DISABLE")  # (the CPU ports set it too)
    os.environ["TORCHDYNAMO_DISABLE"] = "1"  # both sides run uncompiled (eager kernels)
    # One thread: the count is the same, and a few tiny kernels a step run many times
    # faster than with threads that wait for each other on a busy machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with mode, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield clock
    finally:
        if dynamo is None:
            os.environ.pop("TORCHDYNAMO_DISABLE", None)
        else:
            os.environ["TORCHDYNAMO_DISABLE"] = dynamo
        torch.set_num_threads(threads)
        torch.cuda.Event = saved_event
        standin.uninstall()


def compare(references=None, recipes=RECIPES, batch_sizes=(2,)) -> dict:
    """Every count of each recipe and its original, at each batch size."""
    references = Path(references) if references else rp.REFERENCES
    unknown = [r for r in recipes if r not in PORTS]
    if unknown:
        raise InputError(f"no original to count beside {', '.join(unknown)}; the recipes "
                         f"with one: {', '.join(RECIPES)}")
    for name in recipes:
        rp.reference_file(references, PORTS[name])  # every original there, before any work
    results = {"what": "kernel launches (leaf operators, a _foreach_ call once) of one "
                       "training step (median over the run) and of one whole timed run, "
                       "ours and each original's port, counted on the CPU under the CUDA "
                       "stand-in (benchmarks/launch_parity.py)",
               "device": "cpu (CUDA stand-in)", "torch": torch.__version__,
               "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
               "batch_sizes": list(batch_sizes), "widths": list(WIDTHS),
               "test_images": TEST_IMAGES, "eval_chunk": EVAL_CHUNK,
               "ours_clock": OURS_CLOCK, "recipes": {}}
    with tempfile.TemporaryDirectory(prefix="launch-parity-") as work, \
            under_standin() as clock:
        for name in recipes:
            sides = {"original_clock": original_clock(name), "by_batch_size": {}}
            for batch in batch_sizes:
                counts = {"ours": count_ours(name, batch, clock),
                          "original": count_original(name, Path(references), batch,
                                                     Path(work), clock)}
                if batch == batch_sizes[0]:
                    sides.update(counts)  # everything, at the first batch size
                sides["by_batch_size"][str(batch)] = {
                    side: {key: count[key] for key in SUMMARY} for side, count in counts.items()}
            sides["same_at_every_batch_size"] = all(
                len({str(c[side][key]) for c in sides["by_batch_size"].values()}) == 1
                for side in ("ours", "original") for key in SUMMARY)
            results["recipes"][name] = sides
    return results


def report(results: dict) -> str:
    lines = []
    for name, r in results["recipes"].items():
        ours, original = r["ours"], r["original"]
        lines += [f"{name} step ours={ours['step']} original={original['step']}",
                  f"{name} run ours={ours['run']} original={original['run']}"]
    sizes = results["batch_sizes"]
    for name, r in results["recipes"].items():
        ours, original = r["ours"], r["original"]
        lines += ["", f"{name}: {ours['steps']} steps ours, {original['steps']} the "
                      f"original's. The original's run: {r['original_clock']}",
                  f"  {'where':<40}{'step: ours':>11}{'original':>10}{'run: ours':>11}"
                  f"{'original':>10}{'ours - original':>17}"]
        for group, parts in GROUPS.items():
            rows = [(group, parts)] + ([(PART_NAMES.get(p, p), (p,)) for p in parts]
                                       if len(parts) > 1 else [])
            for k, (label, members) in enumerate(rows):
                values = [sum(side[key].get(p, 0) for p in members)
                          for side, key in ((ours, "step_parts"), (original, "step_parts"),
                                            (ours, "run_parts"), (original, "run_parts"))]
                if k and not any(values):
                    continue
                indent = "    " if k else "  "
                lines.append(f"{indent}{label:<{42 - len(indent)}}{values[0]:>9}{values[1]:>10}"
                             f"{values[2]:>11}{values[3]:>10}{values[2] - values[3]:>+17}")
        values = (ours["conversions_in_step"], original["conversions_in_step"],
                  ours["conversions_in_run"], original["conversions_in_run"])
        lines.append(f"  {'of all these, conversions (.to)':<40}{values[0]:>9}{values[1]:>10}"
                     f"{values[2]:>11}{values[3]:>10}{values[2] - values[3]:>+17}")
        if ours["run_on_record_clock"] != ours["run"]:
            lines.append(f"  ours on the record's clock ({ours['record_clock']['name']}'s: "
                         f"{' + '.join(ours['record_clock']['parts'])}): "
                         f"{ours['run_on_record_clock']}, against the original's "
                         f"{original['run']}")
        if original.get("init_correction_to_real_widths"):
            lines.append(f"  (the original's init: its {original['weight_resets']} reset(s) of "
                         f"the weights on the clock counted at the real widths, "
                         f"{original['init_correction_to_real_widths']:+} launches)")
        if len(sizes) > 1:
            counts = {side: [(r["by_batch_size"][str(b)][side]["step"],
                              r["by_batch_size"][str(b)][side]["run"]) for b in sizes]
                      for side in ("ours", "original")}
            lines.append(f"  (step, run) at batch sizes {', '.join(map(str, sizes))}: ours "
                         f"{counts['ours']}, original {counts['original']}: "
                         + ("the same, part by part" if r["same_at_every_batch_size"]
                            else "NOT THE SAME"))
    return "\n".join(lines)
