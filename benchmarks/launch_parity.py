"""Launch parity: the kernels one training step and one whole timed run launch, fastcifar's
record recipes beside their originals' ports, counted on the CPU.

    python benchmarks/kernel_launches.py --against-originals --references ../shared/references

How a count is made, the same way for both sides:
- The rule is launch_count's (Operator.gpu_launch): every leaf kernel operator torch's
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
- The originals run from their ports (benchmarks/airbench_ports.py, frontier_ports.py),
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
import contextlib
import copy
import dataclasses
import functools
import importlib
import io
import tempfile
import types
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile

import frontier_ports as fp
from airbench_ports import AIRBENCH_PORTS
from fastcifar.bench.clocks import record_clock
from fastcifar.data import ImageData
from fastcifar.data.loader import DeviceData
from fastcifar.errors import InputError
from fastcifar.recipes import get_recipe
from launch_count import analyse, operator_tree
from ports import REFERENCES, Change, derive, reference_file, write_data
from standin_instruments import (Clock, ForwardLabels, find, import_port, labelled, patched,
                                 under_standin)

RECIPES = ("airbench94_muon", "hiverge94", "fable94_e5", "fable94_e1")
PORTS = {"airbench94_muon": AIRBENCH_PORTS["airbench94_muon"], **fp.FRONTIER_PORTS}
# The real runs' full batches per epoch: 50,000 images over airbench's batch of 2,000 and
# the frontier recipes' 1,536.
BATCHES_PER_EPOCH = {"airbench94_muon": 25, "hiverge94": 32, "fable94_e5": 32,
                     "fable94_e1": 32}
WIDTHS = (16, 32, 32)
EVAL_CHUNK = 4  # test images per evaluation chunk (2,000 in every original and in ours)
TEST_IMAGES = 5 * EVAL_CHUNK  # 5 chunks, as 10,000 test images in chunks of 2,000

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

def count_changes(name: str, batch: int, narrow: bool = True) -> tuple[Change, ...]:
    """What a count changes in a port, on top of its CPU changes (none for airbench's);
    with `narrow`, the networks WIDTHS wide."""
    why = "launch count: tiny data at the real number of steps: "
    block1, block2, block3 = WIDTHS
    changes = [Change(fp.WIDTHS.old,
                         f"widths = dict(block1={block1}, block2={block2}, block3={block3})",
                         f"launch count: widths {block1}/{block2}/{block3} instead of "
                         f"64/256/256 (the same kernels, and the same filter shapes to group "
                         f"for Muon)")] if narrow else []
    if name == "airbench94_muon":
        changes = [Change(fp.CPU_NO_COMPILE.old, fp.CPU_NO_COMPILE.new,
                             fp.CPU_COMPILE_WHY),
                   Change(".half()", ".float()", fp.FLOAT32_WHY.format(
                       what="the images' and the network's .half()"), count=2),
                   *changes,
                   Change("    batch_size = 2000\n", f"    batch_size = {batch}\n",
                             why + f"batch {batch} instead of 2000"),
                   Change("test_images.split(2000)", f"test_images.split({EVAL_CHUNK})",
                             why + f"evaluation in chunks of {EVAL_CHUNK} of "
                                   f"{TEST_IMAGES} test images instead of 2000 of 10,000")]
    elif name == "hiverge94":
        changes += [Change("    training_batch_size = 1536\n",
                              f"    training_batch_size = {batch}\n",
                              why + f"batch {batch} instead of 1536"),
                    Change("            B = 2000\n", f"            B = {EVAL_CHUNK}\n",
                              why + f"TTA's first pass in chunks of {EVAL_CHUNK} of "
                                    f"{TEST_IMAGES} test images instead of 2000 of 10,000"),
                    Change("            tta_batch_size = 2000\n",
                              f"            tta_batch_size = {EVAL_CHUNK}\n",
                              why + f"TTA's views in chunks of {EVAL_CHUNK} of the "
                                    f"quarter, 5 images, instead of 2000 of 2,500")]
    else:
        changes.append(Change('"batch_size": 1536,', f'"batch_size": {batch},',
                                 why + f"batch {batch} instead of 1536"))
    return tuple(changes)


def derive_port(name: str, out: Path, references: Path, batch: int,
                narrow: bool = True) -> Path:
    port = PORTS[name]
    changes = port.cpu_changes + count_changes(name, batch, narrow)
    return derive(dataclasses.replace(port, cpu_changes=changes), out, references, cpu=True)


def tiny_data(name: str, batch: int, seed: int = 0) -> ImageData:
    rng = np.random.default_rng(seed)
    n = BATCHES_PER_EPOCH[name] * batch
    return ImageData(rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8),
                     rng.integers(0, 10, n), rng.integers(0, 256, (TEST_IMAGES, 32, 32, 3),
                                                          dtype=np.uint8),
                     np.arange(TEST_IMAGES) % 10, tuple(str(c) for c in range(10)),
                     name="random images")


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


# The two sides.

def count_original(name: str, references: Path, batch: int, work: Path, clock: Clock) -> dict:
    folder = work / f"{name}-batch{batch}"
    path = derive_port(name, folder, references, batch)
    data_dir = write_data(tiny_data(name, batch), folder / "data")
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


def compare(references=None, recipes=RECIPES, batch_sizes=(2,)) -> dict:
    """Every count of each recipe and its original, at each batch size."""
    references = Path(references) if references else REFERENCES
    unknown = [r for r in recipes if r not in PORTS]
    if unknown:
        raise InputError(f"no original to count beside {', '.join(unknown)}; the recipes "
                         f"with one: {', '.join(RECIPES)}")
    for name in recipes:
        reference_file(references, PORTS[name])  # every original there, before any work
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
