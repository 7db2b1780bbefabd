"""Each original profiled beside ours (run_profile.py --pair, --original): its port runs
under torch's profiler, and what its own clock covers is counted as ours is.

How an original's clock is marked: its port (ports.py) gets two changes more, listed with
the others in its .changes.json. Where the original starts its clock, a profiler range
`original timed` opens; where it stops it, the range closes. airbench's and hiverge's
clock is their start_timer() and stop_timer() (a CUDA event pair, then a synchronize),
called around each timed part; Fulcrum's is the harness driver's perf_counter pair around
prepare and train (frontier_ports.py). The range records nothing when no profiler runs.

A run, on each side: what its original does before a timed run runs first, unprofiled (ours:
a warm-up run; airbench's and hiverge's: their own warm-up run; Fable's: setup(), the
build); then one run, whole, under the profiler (the port's own __main__ block with --runs
1, whose run function, main or timed_run, is profiled). Both sides uncompiled
(TORCHDYNAMO_DISABLE; the ports' uncompiled changes, E1 without its CUDA graphs), so the
kernels are eager ones on both. On a machine without a GPU both run under the CUDA
stand-in (tests/standin/) in float32 (the ports' CPU changes; a CPU has no native float16
arithmetic), and a rehearsal adds the ports' rehearsal sizes; hiverge's CPU port has no
warm-up run (compile is off), which changes nothing on its clock.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch.profiler import profile

from fastcifar.bench.clocks import record_clock
from fastcifar.errors import InputError
from frontier_ports import FLOAT32_WHY
from ports import Change, Port, derive
from profile_spans import account, activities, differences, differences_text, table, write_trace
from reference_ports import ALL_PORTS
from result_files import read_json, theirs, write_json
from standin_instruments import (cuda_standin, import_port, patched, run_main_block,
                                 under_standin)

RUN_PROFILE = Path(__file__).resolve().parent / "run_profile.py"
SPAN = "original timed"  # the profiler's range of an original's own clock
SPAN_WHY = (f"profile: the original's clock marked, a profiler range {SPAN!r} opened where "
            "its timer starts ({start}) and closed where it stops ({stop})")
EVENTS_SPAN = (  # airbench's and hiverge's start_timer() and stop_timer()
    Change("    def start_timer():\n        starter.record()\n",
           f'    timed_span = torch.profiler.record_function("{SPAN}")\n'
           "    def start_timer():\n        timed_span.__enter__()\n        starter.record()\n",
           SPAN_WHY.format(start="before its start event", stop="after its stop event's "
                                                               "synchronize")),
    Change("        ender.record()\n        torch.cuda.synchronize()\n",
           "        ender.record()\n        torch.cuda.synchronize()\n"
           "        timed_span.__exit__(None, None, None)\n",
           "profile: the range closed in stop_timer()"))
HARNESS_SPAN = (  # the Fable driver's perf_counter pair (frontier_ports.FABLE_HARNESS)
    Change("    start = time.perf_counter()\n",
           f'    timed_span = torch.profiler.record_function("{SPAN}").__enter__()\n'
           "    start = time.perf_counter()\n",
           SPAN_WHY.format(start="the driver's first perf_counter, after a synchronize",
                           stop="its second, after the synchronize that ends train")),
    Change("    seconds = time.perf_counter() - start\n",
           "    seconds = time.perf_counter() - start\n    timed_span.__exit__(None, None, None)\n",
           "profile: the range closed after the driver's second perf_counter"))
SPANS = {"airbench94_muon": EVENTS_SPAN, "hiverge94": EVENTS_SPAN,
         "fable94_e5": HARNESS_SPAN, "fable94_e1": HARNESS_SPAN}
RUN_FUNCTIONS = {"airbench94_muon": "main", "hiverge94": "main", "fable94_e5": "timed_run",
                 "fable94_e1": "timed_run"}  # the port's function that makes one run
PAIRS = tuple(SPANS)
BUDGET_MARGIN = 20.0  # seconds of --budget kept for writing the tables and exiting

# Ours in a rehearsal: what each port's rehearsal changes set its original to
# (airbench_ports.py, frontier_ports.py): narrow, batch 64, two or so epochs.
NARROW = {"widths": "8,16,16", "batch_size": 64}
FABLE_REHEARSAL = {**NARROW, "epochs": 2.5, "decay_epochs": 2.0, "lookahead_tail": 2}
REHEARSAL = {"airbench94_muon": {**NARROW, "epochs": 2, "whiten_bias_epochs": 1},
             "hiverge94": {**NARROW, "epochs": 2},
             "fable94_e5": {**FABLE_REHEARSAL, "progressive_sizes": "28"},
             "fable94_e1": {**FABLE_REHEARSAL, "progressive_sizes": "24,28"}}


def rehearsal_settings(name: str) -> list[str]:
    """Ours' --set assignments in a rehearsal of `name`'s pair."""
    if name not in REHEARSAL:
        raise InputError(f"--rehearsal: no rehearsal settings for {name}; those with them: "
                         f"{', '.join(REHEARSAL)}")
    return [f"{key}={value}" for key, value in REHEARSAL[name].items()]


# airbench94_muon's port has no CPU changes of its own (its CPU runs, under the stand-in,
# are rehearsals in float16); a profile on a CPU runs it in float32 as the others.
MUON_FLOAT32 = Change(".half()", ".float()", FLOAT32_WHY.format(
    what="the images' and the network's .half()"), count=2)


def instrumented(name: str, gpu: bool, rehearsal: bool) -> Port:
    """`name`'s port with its clock marked for the profiler. Off a GPU its CPU changes (float32,
    no GPU-only calls) are made, and in a rehearsal also those rehearsal changes (the sizes)
    that they do not make already."""
    port = ALL_PORTS[name]
    port = dataclasses.replace(port, changes=port.changes + SPANS[name])
    if gpu:
        return port
    cpu = port.cpu_changes or (MUON_FLOAT32,)
    made = {change.old for change in cpu}
    sizes = tuple(c for c in port.rehearsal_changes if c.old not in made) if rehearsal else ()
    return dataclasses.replace(port, cpu_changes=cpu + sizes)


def on_a_gpu() -> bool:
    return torch.backends.cuda.is_built() and torch.cuda.is_available()


def profile_original(name: str, references: Path, data_dir: Path, out: Path,
                     rehearsal: bool = False, trace: Path | None = None) -> dict:
    """One run of `name`'s original, profiled in this process, after what the original runs
    before it; what its clock covers, counted (profile_spans.account). On a machine
    without a GPU (and no stand-in installed) it runs under the CUDA stand-in."""
    gpu = on_a_gpu()
    os.environ["TORCHDYNAMO_DISABLE"] = "1"  # read as the port's functions are decorated
    port = instrumented(name, gpu, rehearsal)
    path = derive(port, out / "port", references, rehearsal=rehearsal and gpu, cpu=not gpu,
                  uncompiled=True)
    profiles = []

    def profiled(run_function):
        @functools.wraps(run_function)
        def run(number, *args, **kwargs):
            if number == "warmup":  # (airbench's and hiverge's own warm-up run)
                return run_function(number, *args, **kwargs)
            with profile(activities=activities(torch.device("cuda" if gpu else "cpu"))) as prof:
                result = run_function(number, *args, **kwargs)
            profiles.append(prof)
            return result
        return run

    runs_file = out / "runs.json"
    with contextlib.nullcontext() if torch.cuda.is_available() else under_standin():
        module = import_port(path)
        with patched(module, RUN_FUNCTIONS[name], profiled):
            run_main_block(module, path, ["--data-dir", data_dir, "--runs", 1,
                                          "--out", runs_file, "--logdir", out / "logs"])
    runs = theirs(read_json(runs_file))
    row = {"recipe": name, "side": "original", "port": path.name, "source": port.source,
           "commit": port.commit, "clock": record_clock(name).name,
           "seconds": runs.seconds[0], "accuracy": runs.accuracies[0],
           "span": account(profiles[-1], {SPAN}), "trace": trace and trace.name}
    if trace is not None:
        write_trace(profiles[-1], trace)
    return row


def profile_pairs(names, args, data_dir: Path, device: torch.device) -> bool:
    """Each pair of `names`: ours, then the original, each in a process of its own with the
    same data and settings, a process still running BUDGET_MARGIN seconds before
    args.budget ends stopped (none left behind to hold the GPU); pair-NAME.json and .txt
    in args.out, and all the tables in pairs.txt. Whether every side finished."""
    env = {**os.environ, "TORCHDYNAMO_DISABLE": "1", "PYTHONUNBUFFERED": "1"}
    if device.type != "cuda":  # no GPU, nor a stand-in for one: both sides under the stand-in
        env.update(cuda_standin.environment(devices=1), TORCHDYNAMO_DISABLE="1")
    precision = args.precision if on_a_gpu() else "float32"  # as the ports' CPU changes
    common = [sys.executable, str(RUN_PROFILE), "--data", args.data, "--device",
              str(device) if device.type == "cuda" else "cuda", "--precision", precision,
              *(["--subset", str(args.subset)] if args.subset else []),
              *([] if args.traces else ["--no-traces"]),
              *(["--rehearsal"] if args.rehearsal else [])]
    texts, finished = [], True
    deadline = None if args.budget is None else time.monotonic() + args.budget - BUDGET_MARGIN
    for name in names:
        folder = args.out / name
        commands = {"ours": [*common, "--recipe", name, "--out", str(folder / "ours")],
                    "original": [*common, "--original", name, "--references",
                                 str(args.references), "--port-data", str(data_dir),
                                 "--out", str(folder / "original")]}
        sides = {}
        for side, command in commands.items():
            left = None if deadline is None else deadline - time.monotonic()
            print(f"\n== {name}, {side}\n$ {' '.join(command)}", flush=True)
            try:
                if left is None or left > 0:
                    done = subprocess.run(command, env=env, timeout=left)
                    if done.returncode == 0:
                        sides[side] = read_json(folder / side / "profile.json")["runs"][0]
            except subprocess.TimeoutExpired:
                print(f"{name}, {side}: cut off by --budget", flush=True)
        finished &= len(sides) == 2
        if sides:
            texts.append(write_pair(name, sides, args.out))
    (args.out / "pairs.txt").write_text("\n\n".join(texts) + "\n")
    return finished


def write_pair(name: str, sides: dict[str, dict], out: Path) -> str:
    """pair-NAME.json (both sides' rows and the differences) and pair-NAME.txt (the table);
    the table's text."""
    spans = {side: row["span"] for side, row in sides.items()}
    lines = [f"{name}, under the profiler, uncompiled:"]
    lines += [side_line(side, row) for side, row in sides.items()]
    lines.append(table("inside each side's clock, by category:", spans))
    pair = {"recipe": name, "sides": sides}
    if len(spans) == 2:
        pair["differences"] = differences(spans["ours"], spans["original"])
        lines.append(differences_text(pair["differences"]))
    write_json(out / f"pair-{name}.json", pair)
    text = "\n".join(lines)
    (out / f"pair-{name}.txt").write_text(text + "\n")
    print(text, flush=True)
    return text


def side_line(side: str, row: dict) -> str:
    span = row["span"]
    seconds = row["record_seconds" if side == "ours" else "seconds"]
    unplaced = span["launches_unplaced"]
    return (f"  {side}: {seconds:.3f} s on {row['clock']}'s clock, accuracy "
            f"{100 * row['accuracy']:.2f}%; {len(span['spans'])} span(s) of "
            f"{', '.join(span['span_names'])}; {span['launches_outside']:,} launches outside"
            + (f", {unplaced:,} with no host operator" if unplaced else ""))
