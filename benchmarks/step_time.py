"""Time one training step of a recipe, and optionally a full timed run.

    python benchmarks/step_time.py --device cpu                   # mean step time, batch 1024
    python benchmarks/step_time.py --device cpu --precision bfloat16 --recipe bag_of_tricks \
        --batch-size 512
    python benchmarks/step_time.py --device cuda --full-runs 5 --data PATH
    python benchmarks/step_time.py --device cpu --record-examples  # its cost on a step
    # steps of several recipes/batches/sides in turn: airbench94_muon:2000:32 ...
    python benchmarks/step_time.py --device cpu --interleave airbench94_muon:2000:32 \
        fable94_e1:1536:24 fable94_e1:1536:28 fable94_e1:1536:32

The step is the training loop's own hot path (train.loop.training_step) on a random
batch; the first steps are warm-up and not counted. --record-examples times steps with
and without the per-example records (train/example_records.py) alternately, one of each in turn,
so that a change in the machine's load falls on both alike, and gives the overhead.
--interleave does the same for several recipe:batch:side steps, one of each in turn, and
gives each one's milliseconds per image. Full runs go through `fastcifar train`, timed by
its airbench rule.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
from pathlib import Path

import torch

from fastcifar.stats import summarize
from fastcifar.recipes import get_recipe
from fastcifar.train.example_records import ExampleRecorder
from fastcifar.train.device import (PRECISION_CHOICES, choose_precision, configure_backend,
                                    device_name, resolve_device)
from fastcifar.train.loop import training_step
from fastcifar.train.setup import set_up_run
from fastcifar.train.timing import Stopwatch


def set_up_step(recipe_name: str, device: torch.device, batch_size: int, steps: int,
                precision: str = "auto", side: int = 32):
    """A run of `steps` steps of a recipe and a random batch of `side` px images for it."""
    recipe = get_recipe(recipe_name)
    # One "epoch" of exactly the steps timed, so the schedules span them.
    config = dataclasses.replace(recipe.config, batch_size=batch_size, epochs=1)
    dtype = choose_precision(precision, device, recipe.mixed_precision).weights
    images = torch.randn(batch_size, 3, side, side, device=device, dtype=dtype)
    images = images.contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 10, (batch_size,), device=device)
    run = set_up_run(recipe, config, images, device, precision,
                     num_train_images=batch_size * steps)
    return run, images, labels


def interleaved_steps(specs: list[str], device: torch.device, steps: int, warmup: int,
                      precision: str = "auto") -> dict[str, list[float]]:
    """Each recipe:batch:side step's seconds, the specs stepped one of each in turn."""
    runs = {}
    for spec in specs:
        try:
            name, batch, side = spec.split(":")
            runs[spec] = set_up_step(name, device, int(batch), warmup + steps, precision,
                                     int(side))
        except ValueError:
            raise SystemExit(f"--interleave {spec}: expected recipe:batch:side, e.g. "
                             f"airbench94_muon:2000:32") from None
    watch, times = Stopwatch(device), {spec: [] for spec in specs}
    for i in range(warmup + steps):
        for spec, (run, images, labels) in runs.items():
            before = watch.total
            with watch.time("step"):
                training_step(run.model.train(), images, labels, run.training.loss,
                              run.training.optimizers, run.schedulers, run.precision)
            if i >= warmup:
                times[spec].append(watch.total - before)
    return times


def time_steps(recipe_name: str, device: torch.device, batch_size: int, steps: int,
               warmup: int, precision: str = "auto",
               record_examples: bool = False) -> list[float] | tuple[list[float], list[float]]:
    """The timed steps' seconds; with `record_examples`, (without records, with them),
    each variant `steps` times, alternately."""
    run, images, labels = set_up_step(recipe_name, device, batch_size, warmup + steps,
                                      precision)
    training = run.training
    watch = Stopwatch(device)
    recorder = ExampleRecorder(batch_size, device) if record_examples else None
    index = torch.randperm(batch_size, device=device)
    times, recorded = [], []
    run.model.train()
    for i in range(warmup + steps):
        for record in (False, True) if record_examples else (False,):
            before = watch.total
            with watch.time("step"):
                outputs, _ = training_step(run.model, images, labels, training.loss,
                                           training.optimizers, run.schedulers, run.precision)
                if record:
                    recorder.record(index, outputs, labels)
            if i >= warmup:
                (recorded if record else times).append(watch.total - before)
    return (times, recorded) if record_examples else times


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="airbench94")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--precision", choices=PRECISION_CHOICES, default="auto")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--full-runs", type=int, default=0, help="also time this many full runs")
    parser.add_argument("--data", default=None, help="data for the full runs (see fastcifar train)")
    parser.add_argument("--json", default=None, help="write the numbers to this file")
    parser.add_argument("--record-examples", action="store_true",
                        help="also time steps that keep the per-example records, alternately")
    parser.add_argument("--interleave", nargs="+", metavar="RECIPE:BATCH:SIDE",
                        help="time these steps one of each in turn instead")
    args = parser.parse_args(argv)

    device = resolve_device(args.device)
    configure_backend(device)
    if args.interleave:
        times = interleaved_steps(args.interleave, device, args.steps, args.warmup,
                                  args.precision)
        result = {"device": device_name(device), "torch": torch.__version__,
                  "threads": torch.get_num_threads(), "precision": args.precision,
                  "step_seconds": times}
        for spec, seconds in times.items():
            per_image = 1000 * statistics.median(seconds) / int(spec.split(":")[1])
            result.setdefault("ms_per_image_median", {})[spec] = per_image
            print(f"{spec}: steps {', '.join(f'{t:.2f}' for t in seconds)} s; median "
                  f"{per_image:.2f} ms an image")
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        return 0
    times = time_steps(args.recipe, device, args.batch_size, args.steps, args.warmup,
                       args.precision, args.record_examples)
    if args.record_examples:
        times, recorded = times
    result = {"recipe": args.recipe, "device": device_name(device), "torch": torch.__version__,
              "threads": torch.get_num_threads(), "batch_size": args.batch_size,
              "precision": args.precision,
              "step_seconds": times, "step_seconds_mean": statistics.mean(times),
              "step_seconds_median": statistics.median(times)}
    print(f"{args.recipe} on {result['device']} (torch {torch.__version__}, "
          f"{result['threads']} threads, precision {args.precision}): one training step, "
          f"batch {args.batch_size}: "
          f"mean {result['step_seconds_mean']:.4f} s, median {result['step_seconds_median']:.4f} s "
          f"over {len(times)} steps after {args.warmup} warm-up")
    if args.record_examples:
        plain, kept = statistics.median(times), statistics.median(recorded)
        result.update(recorded_step_seconds=recorded, recorded_step_seconds_median=kept,
                      record_examples_overhead=kept / plain - 1)
        print(f"with --record-examples: median {kept:.4f} s, {100 * (kept / plain - 1):+.2f}% "
              f"(steps timed alternately with and without)")

    if args.full_runs:
        from fastcifar.cli import main as fastcifar_main

        out = Path(tempfile.mkdtemp(prefix="fastcifar-bench-"))
        cli = ["train", "--recipe", args.recipe, "--device", str(device), "--runs",
               str(args.full_runs), "--precision", args.precision, "--out", str(out)]
        if args.data:
            cli += ["--data", args.data]
        code = fastcifar_main(cli)
        if code:
            return code
        summary = json.loads((out / "summary.json").read_text())
        seconds = summarize([r["train_seconds"] for r in summary["runs"]])
        result["full_runs"] = summary["runs"]
        print(f"full run: {seconds.mean:.2f} s mean timed seconds over {seconds.n} runs "
              f"(accuracy mean {100 * summary['accuracy_mean']:.2f}%)")

    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
