"""The frontier recipes on the CPU stand-in: their runs beside the originals' CPU ports, and
the time-to-accuracy table against airbench94_muon.

    # a run of ours (fastcifar train ... --out RUN) into the results folder; --seed-folder
    # for a further seed of the same recipe
    python benchmarks/frontier_results.py ours RUN [--load .data/frontier/loadavg.log]
    # an original's CPU port's JSON (python .ref/cpu/NAME.py ... --out JSON) beside it
    python benchmarks/frontier_results.py reference JSON --port fable94_e1 \
        --changes .ref/cpu/fable94_e1.changes.json --command "..." \
        [--load .data/frontier/loadavg.log --between START END]
    # the table: each recipe's mean TTA accuracy and timed seconds, and its ratio to muon's
    python benchmarks/frontier_results.py table
    # the time-to-accuracy measurement: runs made one after the other on an otherwise idle
    # machine, kept together with the machine's description; then its table
    python benchmarks/frontier_results.py series NAME RUN [RUN ...] --load LOG
    python benchmarks/frontier_results.py table --series NAME

A run lands in `benchmarks/results/<recipe>-cpu-standin-<precision>/` (its first seed there,
a further one in `seed<N>/`), where benchmarks/reference_table.py reads it, with
`load.json`: the machine's 1-minute load average sampled over the run (the sampler: a
loop appending `<unix time> <contents of /proc/loadavg>` to a file every 30 s). A load
near 2 on the 2-core machine is the run alone; above it, other work shared the cores
and the seconds are slower than an idle machine's.

A series (`benchmarks/results/<NAME>/`) holds a folder per recipe and series.json: the
machine (CPU model, cores, the instruction sets that decide float32 or bfloat16), torch,
each run's start, end and load; it refuses runs that overlapped. Its table adds each
recipe's FLOPs over muon's (`fastcifar flops`, training and evaluation) and the published
A100 seconds over muon's, the two ratios the CPU's time is set beside.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import sys
from pathlib import Path

from result_files import (CONFIG, LOAD, REFERENCE, RUN_FILES, SERIES, SUMMARY, our_runs, ours,
                          read_json, seed_folder, series_folder, standin_folder, with_seeds,
                          write_json)

BASELINE = "airbench94_muon"
FRONTIER = ("hiverge94", "fable94_e5", "fable94_e1")
# The CPU flags that say how fast float32 and bfloat16 run (bfloat16 is emulated without
# the last three).
ISA_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")


def load_during(log: Path, start: float, end: float) -> dict:
    """The 1-minute load averages the sampler wrote between start and end (unix times)."""
    samples = []
    for line in log.read_text().splitlines():
        fields = line.split()
        if len(fields) >= 2 and start <= float(fields[0]) <= end:
            samples.append(float(fields[1]))
    if not samples:
        return {"samples": 0}
    return {"samples": len(samples), "mean": round(statistics.mean(samples), 2),
            "max": max(samples), "min": min(samples)}


def run_span(run: Path) -> tuple[float, float]:
    """When a run folder's run started and ended (unix times): its config.json is written
    as it starts, its summary.json as it ends."""
    return (run / CONFIG).stat().st_mtime, (run / SUMMARY).stat().st_mtime


def copy_run(run: Path, target: Path, load_log: Path | None) -> dict:
    """A run folder's records into target, with the load during it; returns the load."""
    target.mkdir(parents=True, exist_ok=True)
    for name in RUN_FILES:
        shutil.copy2(run / name, target / name)
    load = {}
    if load_log is not None:
        started, ended = run_span(run)
        load = {"started": started, "ended": ended, **load_during(load_log, started, ended)}
        write_json(target / LOAD, load)
    return load


def add_ours(run: Path, load_log: Path | None) -> Path:
    """Copy a run folder's records into its results folder (the first seed at the top)."""
    summary = read_json(run / SUMMARY)
    config = read_json(run / CONFIG)
    precision = summary.get("precision", "float32")
    if precision == "auto":
        precision = "float32"  # auto is float32 on a CPU
    target = standin_folder(summary["recipe"], precision)
    if (target / SUMMARY).exists():
        first = read_json(target / SUMMARY)["runs"][0]["seed"]
        seed = summary["runs"][0]["seed"]
        if seed == first:
            raise SystemExit(f"{target}: seed {seed} is there already")
        target = seed_folder(target, seed)
    copy_run(run, target, load_log)
    print(f"{run} -> {target} ({config['recipe']}, seed {summary['runs'][0]['seed']})")
    return target


def machine(cpuinfo: Path = Path("/proc/cpuinfo")) -> dict:
    """This machine as far as its speed goes: CPU model, cores, the ISA flags above."""
    model, flags = None, set()
    try:
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model is None:
                model = value.strip()
            elif key.strip() == "flags":
                flags.update(value.split())
    except OSError:
        pass  # not Linux: the model stays unknown
    return {"cpu": model, "cores": os.cpu_count(),
            "isa": {flag: flag in flags for flag in ISA_FLAGS}}


def add_series(name: str, runs: list[Path], load_log: Path) -> Path:
    """Runs made one after the other, in results/<name>/<recipe>/, with series.json; runs
    added to an existing series must follow its runs on the same machine."""
    target = series_folder(name)
    existing = read_json(target / SERIES) if (target / SERIES).exists() else None
    if existing is not None and existing["machine"] != machine():
        raise SystemExit(f"{target}: its runs were made on {existing['machine']}, this "
                         f"machine is {machine()}")
    spans = sorted([((r["started"], r["ended"]), Path(r["run"])) for r in
                    (existing or {}).get("runs", []) if "started" in r]
                   + [(run_span(run), run) for run in runs])
    for (earlier, run), (later, next_run) in zip(spans, spans[1:]):
        if later[0] < earlier[1]:
            raise SystemExit(f"{next_run} started before {run} ended: a series' runs go "
                             f"one after the other, each alone on the machine")
    records = (existing or {}).get("runs", [])
    torch_versions = set((existing or {}).get("torch", []))
    for run in sorted(runs, key=run_span):
        summary = read_json(run / SUMMARY)
        if (target / summary["recipe"]).exists():
            raise SystemExit(f"{target / summary['recipe']}: that recipe is in the series "
                             f"already")
        load = copy_run(run, target / summary["recipe"], load_log)
        torch_versions.add(summary.get("torch"))
        records.append({"recipe": summary["recipe"], "run": str(run),
                        "seeds": [r["seed"] for r in summary["runs"]],
                        "precision": summary.get("precision"), **load})
    series = {"machine": machine(), "torch": sorted(map(str, torch_versions)),
              "runs": records}
    write_json(target / SERIES, series)
    print(f"{len(runs)} runs -> {target} ({len(records)} in all)")
    return target


def add_reference(result: Path, port: str, changes: Path, command: str, precision: str,
                  load_log: Path | None, between: tuple[float, float] | None) -> Path:
    """A port's JSON of runs as reference.json beside our runs of its recipe."""
    runs = read_json(result)
    record = read_json(changes)
    target = standin_folder(record["recipe"], precision)
    target.mkdir(parents=True, exist_ok=True)
    reference = {"repository": record["repository"], "commit": record["commit"],
                 "path": record["source"], "sha256": record["sha256"], "port": port,
                 "precision": precision, "command": command,
                 "list_of_changes": [c["why"] for c in record["changes"]
                                     + record.get("cpu_changes", [])],
                 "all_runs": runs["runs"]}
    if load_log is not None and between is not None:
        reference["load"] = load_during(load_log, *between)
    write_json(target / REFERENCE, reference)
    print(f"{result} -> {target / REFERENCE} ({len(runs['runs'])} runs)")
    return target


def published_seconds(recipe) -> float | None:
    """The published A100 seconds in a recipe's target ("... 2.59 s on an A100")."""
    found = re.search(r"([0-9.]+) s on an A100", recipe.target.text)
    return float(found.group(1)) if found else None


def table(precision: str = "float32", series: str | None = None) -> list[str]:
    """Each recipe's mean accuracy and timed seconds on this CPU, and its time over muon's;
    of a series, also its FLOPs and its published A100 time over muon's."""
    head = "| recipe | accuracy (TTA) | timed seconds | x airbench94_muon's time |"
    if series is not None:
        from fastcifar.bench.flops import run_flops
        from fastcifar.recipes import get_recipe
        head += " x muon's FLOPs | x muon's A100 time (published) |"
    lines = [head + " runs | load during the runs |",
             "| --- " * (head.count("|") + 1) + "|"]
    baseline = None
    for recipe in (BASELINE, *FRONTIER):
        folder = (standin_folder(recipe, precision) if series is None
                  else series_folder(series) / recipe)
        runs = ours(our_runs(folder))
        if not runs.accuracies:
            lines.append(f"| {recipe} | not run yet |" + " |" * (head.count("|") - 3)
                         + " 0 | |")
            continue
        seconds = statistics.mean(runs.seconds)
        accuracy = statistics.mean(runs.accuracies)
        row = [recipe, f"{100 * accuracy:.2f}%", f"{seconds:,.0f}"]
        if series is not None:  # (FLOPs counted on meta tensors: a second for all four)
            flops = run_flops(get_recipe(recipe)).total
            a100 = published_seconds(get_recipe(recipe))
        if recipe == BASELINE:
            baseline = (seconds, flops, a100) if series is not None else (seconds,)
        row.append(f"{seconds / baseline[0]:.2f}x" if baseline else "(no baseline yet)")
        if series is not None:
            row.append(f"{flops / baseline[1]:.2f}x" if baseline else "")
            row.append(f"{a100 / baseline[2]:.2f}x" if baseline and a100 else "")
        loads = [read_json(f) for f in with_seeds(folder, LOAD)]
        load = ", ".join(f"{x['mean']:.1f} (max {x['max']:.1f})" for x in loads if x.get("samples"))
        row += [str(len(runs.accuracies)), load or "not sampled"]
        lines.append("| " + " | ".join(row) + " |")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="what", required=True)
    ours = commands.add_parser("ours", help="a run folder of fastcifar train")
    ours.add_argument("run", type=Path)
    reference = commands.add_parser("reference", help="a CPU port's JSON of runs")
    reference.add_argument("result", type=Path)
    reference.add_argument("--port", required=True)
    reference.add_argument("--changes", type=Path, required=True,
                           help="the port's .changes.json (reference_ports.py --cpu)")
    reference.add_argument("--command", required=True, help="the command that ran the port")
    reference.add_argument("--precision", default="float32")
    reference.add_argument("--between", type=float, nargs=2, metavar=("START", "END"),
                           help="the port's start and end (unix times), for --load")
    for command in (ours, reference):
        command.add_argument("--load", type=Path, help="the load-average samples' file")
    series = commands.add_parser("series", help="runs made one after the other, kept "
                                 "together with the machine's description")
    series.add_argument("name", help="its folder under benchmarks/results/")
    series.add_argument("runs", type=Path, nargs="+", help="run folders of fastcifar train")
    series.add_argument("--load", type=Path, required=True,
                        help="the load-average samples' file (the runs must show alone)")
    shown = commands.add_parser("table", help="the time-to-accuracy table")
    shown.add_argument("--precision", default="float32")
    shown.add_argument("--series", help="a series' folder name: its runs only")
    args = parser.parse_args(argv)
    if args.what == "ours":
        add_ours(args.run, args.load)
    elif args.what == "series":
        add_series(args.name, args.runs, args.load)
    elif args.what == "reference":
        add_reference(args.result, args.port, args.changes, args.command, args.precision,
                      args.load, args.between)
    else:
        print("\n".join(table(args.precision, args.series)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
