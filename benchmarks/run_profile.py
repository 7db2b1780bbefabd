"""Where a whole run's time goes: one run of each recipe under torch's profiler, after an
untimed run of its own that warms everything up, on any device.

    PYTHONPATH=. python benchmarks/run_profile.py --device cuda --data PATH \
        --recipe fable94_e5 --recipe hiverge94 --out DIR

Set up as a timed run (configure_backend: cuDNN's autotuning). For each recipe: the run's
timed seconds (as `fastcifar train` times it) and its seconds on the record's clock
(fastcifar/bench/clocks.py), the seconds the GPU was busy in the kernels launched inside
the parts that clock covers and so the share of them it sat waiting for the host (a run
bound by Python and kernel launches, not by arithmetic), and the operators that took the
most host and device time. DIR gets profile.json (all of
it) and trace-<recipe>.json.gz (chrome://tracing or ui.perfetto.dev). Under the profiler a
run is slower than timed alone: the profiler adds host work to every operator, so compare
recipes with each other here, and take their speed from the GPU suite.
On a CPU there is no separate device: its busy seconds are not given.
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import sys
import tempfile
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from fastcifar.data import load_dataset
from fastcifar.data.loader import DeviceData
from fastcifar.errors import InputError
from fastcifar.recipes import get_recipe
from fastcifar.recipes.fields import override
from fastcifar.bench.clocks import record_clock, record_seconds
from fastcifar.train.device import (choose_precision, configure_backend, device_name,
                                    resolve_device)
from fastcifar.train.loop import train_run
from fastcifar.train.timing import TIMED

TOP = 12  # operators listed per recipe and kind of time


def activities(device: torch.device) -> list[ProfilerActivity]:
    """What the profiler records: the host's operators, and on CUDA the GPU's kernels."""
    return [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])


def busy_seconds(events, parts, device: torch.device) -> float | None:
    """The seconds the GPU spent in the kernels of the operators launched inside the timed
    parts that the record's clock covers (the Stopwatch's ranges; per-epoch validation
    and the rest outside): None on a CPU."""
    if device.type != "cuda":
        return None
    spans = [(e.time_range.start, e.time_range.end) for e in events
             if e.name in {TIMED + part for part in parts}]
    return sum(e.self_device_time_total for e in events
               if any(start <= e.time_range.start <= end for start, end in spans)) / 1e6


def profile_run(recipe_name: str, dataset, device: torch.device, precision: str,
                assignments: list[str], trace: Path) -> dict:
    recipe = get_recipe(recipe_name)
    config = override(recipe.config, assignments)
    dtype = choose_precision(precision, device, recipe.mixed_precision).weights
    data = DeviceData.from_dataset(dataset, device, dtype, config.crop_size())
    warm = train_run(recipe, config, data, device, seed=-1, precision=precision)
    with profile(activities=activities(device)) as prof:
        result = train_run(recipe, config, data, device, seed=0, model=warm.model,
                           precision=precision)
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "trace.json"
        prof.export_chrome_trace(str(raw))
        with open(raw, "rb") as f, gzip.open(trace, "wb") as out:
            shutil.copyfileobj(f, out)
    ops = prof.key_averages()
    clock = record_clock(recipe.name)
    busy = busy_seconds(prof.events(), clock.parts, device)
    seconds = record_seconds(recipe.name, result.seconds_by_part)

    def top(key: str) -> list[dict]:
        ranked = sorted(ops, key=lambda op: getattr(op, key), reverse=True)[:TOP]
        return [{"op": op.key, "calls": op.count, "seconds": getattr(op, key) / 1e6}
                for op in ranked if getattr(op, key) > 0]
    return {"recipe": recipe_name, "epochs": config.epochs, "accuracy": result.accuracy,
            "timed_seconds": result.seconds, "seconds_by_part": result.seconds_by_part,
            "clock": clock.name, "record_seconds": seconds, "device_busy_seconds": busy,
            "device_idle_share": None if busy is None else max(0.0, 1 - busy / seconds),
            "operator_calls": sum(op.count for op in ops),
            "top_host": top("self_cpu_time_total"),
            "top_device": top("self_device_time_total") if busy is not None else [],
            "trace": trace.name}


def report(row: dict) -> str:
    busy = ("" if row["device_busy_seconds"] is None else
            f", GPU busy {row['device_busy_seconds']:.3f} s of {row['record_seconds']:.3f} on "
            f"{row['clock']}'s clock (idle "
            f"{100 * row['device_idle_share']:.0f}%)")
    lines = [f"{row['recipe']}: {row['timed_seconds']:.3f} s under the profiler{busy}, "
             f"{row['operator_calls']:,} operator calls, accuracy {100 * row['accuracy']:.2f}%"]
    for kind in ("top_host", "top_device"):
        for op in row[kind][:5]:
            lines.append(f"  {kind[4:]:6} {op['seconds']:8.3f} s {op['calls']:7,} x {op['op']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", action="append", help="repeatable (default fable94_e5 "
                        "and hiverge94)")
    parser.add_argument("--data", required=True, help="as fastcifar train's --data")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a hyperparameter of every recipe profiled, as fastcifar "
                        "train's --set (e.g. epochs=2)")
    parser.add_argument("--subset", type=int, help="a class-balanced subset of N training "
                        "images")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    recipes = args.recipe or ["fable94_e5", "hiverge94"]
    try:  # bad input (a name, a value, the data, the device) stops here, before any work
        for name in recipes:
            override(get_recipe(name).config, args.set)
        device = resolve_device(args.device)
        configure_backend(device)  # as every timed run (cuDNN's autotuning on CUDA)
        dataset = load_dataset(args.data)
        if args.subset:
            dataset = dataset.balanced_subset(args.subset)
    except InputError as error:
        raise SystemExit(f"run_profile: {error}") from None
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in recipes:
        rows.append(profile_run(name, dataset, device, args.precision, args.set,
                                args.out / f"trace-{name}.json.gz"))
        print(report(rows[-1]), flush=True)
    (args.out / "profile.json").write_text(json.dumps(
        {"device": device_name(device), "torch": torch.__version__, "runs": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
