"""Where a whole run's time goes: one run under torch's profiler, after what precedes a timed
run (ours: an untimed warm-up run), on any device; ours alone, an original's port alone, or
the two side by side.

    PYTHONPATH=. python benchmarks/run_profile.py --device cuda --data PATH \
        --recipe fable94_e5 --recipe hiverge94 --out DIR
    PYTHONPATH=. python benchmarks/run_profile.py --data PATH --references REFS \
        --pair fable94_e5 --pair hiverge94 --out DIR
    PYTHONPATH=. python benchmarks/run_profile.py --data PATH --references REFS \
        --original hiverge94 --out DIR

Set up as a timed run (configure_backend: cuDNN's autotuning). For each recipe (--recipe):
the run's timed seconds (as `fastcifar train` times it) and its seconds on the record's
clock (fastcifar/bench/clocks.py), the kernels launched inside the parts that clock covers
and the seconds the device was busy in them (profile_spans.py), so the share of the clock
the GPU sat waiting for the host (a run bound by Python and kernel launches, not by
arithmetic), by category of operation, and the operators that took the most host and
device time. --original profiles an original's port the same way, inside its own clock
(profile_pairs.py: how its clock is marked). --pair profiles ours, then the original's port
of the same recipe, each in a process of its own (this script with --recipe, then with
--original), with the same data and, with --rehearsal, the ports' rehearsal changes and
ours set to match; both uncompiled. DIR gets profile.json (all of it) and
trace-<recipe>.json.gz (chrome://tracing or ui.perfetto.dev; not with --no-traces); a pair
gets DIR/<recipe>/ours/ and original/ (each a profile.json and trace), the originals' data
in DIR/data, and pair-<recipe>.json, pair-<recipe>.txt (the table side by side and the
largest differences) and pairs.txt (every pair's table). Under the profiler a run is
slower than timed alone: the profiler adds host work to every operator, so compare the
sides with each other here, and take their speed from the GPU suite. On a CPU (and under
the CUDA stand-in) the device is the CPU: its busy seconds are its kernels' host time.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from torch.profiler import profile

from fastcifar.bench.clocks import record_clock, record_seconds
from fastcifar.data import load_dataset
from fastcifar.data.loader import DeviceData
from fastcifar.errors import InputError
from fastcifar.recipes import get_recipe
from fastcifar.recipes.fields import override
from fastcifar.train.device import (choose_precision, configure_backend, device_name,
                                    resolve_device)
from fastcifar.train.loop import train_run
from fastcifar.train.timing import TIMED
from ports import REFERENCES, reference_file, write_data
from profile_pairs import PAIRS, profile_original, profile_pairs, rehearsal_settings
from profile_spans import account, activities, write_trace
from reference_ports import ALL_PORTS

TOP = 12  # operators listed per recipe and kind of time


def profile_run(recipe_name: str, dataset, device: torch.device, precision: str,
                assignments: list[str], trace: Path | None) -> dict:
    recipe = get_recipe(recipe_name)
    config = override(recipe.config, assignments)
    dtype = choose_precision(precision, device, recipe.mixed_precision).weights
    data = DeviceData.from_dataset(dataset, device, dtype, config.crop_size())
    warm = train_run(recipe, config, data, device, seed=-1, precision=precision)
    with profile(activities=activities(device)) as prof:
        result = train_run(recipe, config, data, device, seed=0, model=warm.model,
                           precision=precision)
    if trace is not None:
        write_trace(prof, trace)
    clock = record_clock(recipe.name)
    # Inside the parts the record's clock covers (the Stopwatch's ranges; per-epoch
    # validation and the rest outside).
    span = account(prof, {TIMED + part for part in clock.parts})
    busy = span["busy_seconds"] if span["device"] == "gpu" else None
    seconds = record_seconds(recipe.name, result.seconds_by_part)
    ops = prof.key_averages()

    def top(key: str) -> list[dict]:
        ranked = sorted(ops, key=lambda op: getattr(op, key), reverse=True)[:TOP]
        return [{"op": op.key, "calls": op.count, "seconds": getattr(op, key) / 1e6}
                for op in ranked if getattr(op, key) > 0]
    return {"recipe": recipe_name, "side": "ours", "epochs": config.epochs,
            "accuracy": result.accuracy, "timed_seconds": result.seconds,
            "seconds_by_part": result.seconds_by_part, "clock": clock.name,
            "record_seconds": seconds, "device_busy_seconds": busy,
            "device_idle_share": None if busy is None else max(0.0, 1 - busy / seconds),
            "operator_calls": sum(op.count for op in ops), "span": span,
            "top_host": top("self_cpu_time_total"),
            "top_device": top("self_device_time_total") if busy is not None else [],
            "trace": trace and trace.name}


def report(row: dict) -> str:
    span = row["span"]
    inside = (f"  inside its clock ({len(span['spans'])} span(s)): {span['launches']:,} "
              f"launches, {span['device'].upper()} busy {span['busy_seconds']:.3f} s of "
              f"{span['span_seconds']:.3f}; {span['launches_outside']:,} launches outside")
    if row["side"] == "original":
        return "\n".join([f"{row['recipe']} (original, {row['port']}): {row['seconds']:.3f} s "
                          f"on its clock under the profiler, accuracy "
                          f"{100 * row['accuracy']:.2f}%", inside])
    busy = ("" if row["device_busy_seconds"] is None else
            f", GPU busy {row['device_busy_seconds']:.3f} s of {row['record_seconds']:.3f} on "
            f"{row['clock']}'s clock (idle "
            f"{100 * row['device_idle_share']:.0f}%)")
    lines = [f"{row['recipe']}: {row['timed_seconds']:.3f} s under the profiler{busy}, "
             f"{row['operator_calls']:,} operator calls, accuracy {100 * row['accuracy']:.2f}%",
             inside]
    for kind in ("top_host", "top_device"):
        for op in row[kind][:5]:
            lines.append(f"  {kind[4:]:6} {op['seconds']:8.3f} s {op['calls']:7,} x {op['op']}")
    return "\n".join(lines)


def arguments(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", action="append", help="ours, in this process; "
                        "repeatable (default fable94_e5 and hiverge94)")
    parser.add_argument("--pair", action="append", help="ours and the original's port of "
                        f"this recipe, each in a process of its own; repeatable ({', '.join(PAIRS)})")
    parser.add_argument("--original", action="append", help="the original's port alone, in "
                        "this process; repeatable")
    parser.add_argument("--references", type=Path, default=REFERENCES,
                        help="the original scripts (default: %(default)s)")
    parser.add_argument("--data", required=True, help="as fastcifar train's --data")
    parser.add_argument("--port-data", type=Path, help="--original: the data already written "
                        "in the originals' form (train.pt, test.pt), as a pair hands it on")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a hyperparameter of every recipe profiled, as fastcifar "
                        "train's --set (e.g. epochs=2); --recipe only")
    parser.add_argument("--rehearsal", action="store_true", help="tiny runs for a CPU under "
                        "the CUDA stand-in: the ports' rehearsal changes, ours set to match")
    parser.add_argument("--subset", type=int, help="a class-balanced subset of N training "
                        "images")
    parser.add_argument("--budget", type=float, help="--pair: seconds this call may take "
                        "(a side still running near the end is stopped; the pairs it "
                        "finished are written)")
    parser.add_argument("--no-traces", dest="traces", action="store_false",
                        help="no Chrome traces (they take a while to write)")
    parser.add_argument("--out", type=Path, required=True)
    return parser.parse_args(argv)


def check(args) -> None:
    """Every name, value and original there, before any work."""
    if sum(bool(names) for names in (args.recipe, args.pair, args.original)) > 1:
        raise InputError("one of --recipe, --pair and --original")
    for name in args.pair or args.original or []:
        if name not in PAIRS:
            raise InputError(f"no original to profile beside {name}; the recipes with one: "
                             f"{', '.join(PAIRS)}")
        reference_file(args.references, ALL_PORTS[name])
        if args.set:
            raise InputError("--set is for --recipe: a pair's settings are its original's "
                             "(--rehearsal: its rehearsal's)")
    for name in args.recipe or []:
        extra = rehearsal_settings(name) if args.rehearsal else []
        override(get_recipe(name).config, extra + args.set)


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)
    if not (args.pair or args.original):
        args.recipe = args.recipe or ["fable94_e5", "hiverge94"]
    try:  # bad input (a name, a value, the data, the device) stops here, before any work
        check(args)
        device = resolve_device(args.device)
        configure_backend(device)  # as every timed run (cuDNN's autotuning on CUDA)
        dataset = None
        if not (args.original and args.port_data):
            dataset = load_dataset(args.data)
            if args.subset:
                dataset = dataset.balanced_subset(args.subset)
    except InputError as error:
        raise SystemExit(f"run_profile: {error}") from None
    args.out.mkdir(parents=True, exist_ok=True)
    if args.pair:
        return 0 if profile_pairs(args.pair, args, write_data(dataset, args.out / "data"),
                                  device) else 1
    port_data = args.port_data or (write_data(dataset, args.out / "data") if args.original
                                   else None)
    rows = []
    for name in args.original or args.recipe:
        trace = args.out / f"trace-{name}.json.gz" if args.traces else None
        if args.original:
            rows.append(profile_original(name, args.references, port_data, args.out,
                                         args.rehearsal, trace))
        else:
            settings = (rehearsal_settings(name) if args.rehearsal else []) + args.set
            rows.append(profile_run(name, dataset, device, args.precision, settings, trace))
        print(report(rows[-1]), flush=True)
        (args.out / "profile.json").write_text(json.dumps(
            {"device": device_name(device), "torch": torch.__version__, "runs": rows},
            indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
