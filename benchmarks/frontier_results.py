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

A run lands in `benchmarks/results/<recipe>-cpu-standin-<precision>/` (its first seed there,
a further one in `seed<N>/`), where benchmarks/reference_table.py reads it, with
`load.json`: the machine's 1-minute load average sampled over the run (the sampler: a
loop appending `<unix time> <contents of /proc/loadavg>` to a file every 30 s). A load
near 2 on the 2-core machine is the run alone; above it, other work shared the cores
and the seconds are slower than an idle machine's.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
RUN_FILES = ("summary.json", "config.json", "metrics.csv")
BASELINE = "airbench94_muon"
FRONTIER = ("hiverge94", "fable94_e5", "fable94_e1")


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


def folder_for(recipe: str, precision: str) -> Path:
    return RESULTS / f"{recipe}-cpu-standin-{precision}"


def add_ours(run: Path, load_log: Path | None) -> Path:
    """Copy a run folder's records into its results folder (the first seed at the top)."""
    summary = json.loads((run / "summary.json").read_text())
    config = json.loads((run / "config.json").read_text())
    precision = summary.get("precision", "float32")
    if precision == "auto":
        precision = "float32"  # auto is float32 on a CPU
    target = folder_for(summary["recipe"], precision)
    if (target / "summary.json").exists():
        first = json.loads((target / "summary.json").read_text())["runs"][0]["seed"]
        seed = summary["runs"][0]["seed"]
        if seed == first:
            raise SystemExit(f"{target}: seed {seed} is there already")
        target = target / f"seed{seed}"
    target.mkdir(parents=True, exist_ok=True)
    for name in RUN_FILES:
        shutil.copy2(run / name, target / name)
    if load_log is not None:
        started = (run / "config.json").stat().st_mtime  # written as the run starts
        ended = (run / "summary.json").stat().st_mtime
        load = {"started": started, "ended": ended, **load_during(load_log, started, ended)}
        (target / "load.json").write_text(json.dumps(load, indent=1) + "\n")
    print(f"{run} -> {target} ({config['recipe']}, seed {summary['runs'][0]['seed']})")
    return target


def add_reference(result: Path, port: str, changes: Path, command: str, precision: str,
                  load_log: Path | None, between: tuple[float, float] | None) -> Path:
    """A port's JSON of runs as reference.json beside our runs of its recipe."""
    runs = json.loads(result.read_text())
    record = json.loads(changes.read_text())
    target = folder_for(record["recipe"], precision)
    target.mkdir(parents=True, exist_ok=True)
    reference = {"repository": record["repository"], "commit": record["commit"],
                 "path": record["source"], "sha256": record["sha256"], "port": port,
                 "precision": precision, "command": command,
                 "list_of_changes": [c["why"] for c in record["changes"]
                                     + record.get("cpu_changes", [])],
                 "all_runs": runs["runs"]}
    if load_log is not None and between is not None:
        reference["load"] = load_during(load_log, *between)
    (target / "reference.json").write_text(json.dumps(reference, indent=1) + "\n")
    print(f"{result} -> {target / 'reference.json'} ({len(runs['runs'])} runs)")
    return target


def our_runs(folder: Path) -> list[dict]:
    files = [folder / "summary.json", *sorted(folder.glob("seed*/summary.json"))]
    return [run for f in files if f.exists() for run in json.loads(f.read_text())["runs"]]


def table(precision: str = "float32") -> list[str]:
    """Each recipe's mean accuracy and timed seconds on this CPU, and its time over muon's."""
    lines = ["| recipe | accuracy (TTA) | timed seconds | x airbench94_muon's time | runs | "
             "load during the runs |", "| --- | --- | --- | --- | --- | --- |"]
    baseline = None
    for recipe in (BASELINE, *FRONTIER):
        folder = folder_for(recipe, precision)
        runs = our_runs(folder)
        if not runs:
            lines.append(f"| {recipe} | not run yet | | | 0 | |")
            continue
        seconds = statistics.mean(r["train_seconds"] for r in runs)
        accuracy = statistics.mean(r["accuracy"] for r in runs)
        if recipe == BASELINE:
            baseline = seconds
        ratio = f"{seconds / baseline:.2f}x" if baseline else "(no baseline yet)"
        loads = [json.loads(f.read_text()) for f in
                 [folder / "load.json", *sorted(folder.glob("seed*/load.json"))] if f.exists()]
        load = ", ".join(f"{x['mean']:.1f} (max {x['max']:.1f})" for x in loads if x.get("samples"))
        lines.append(f"| {recipe} | {100 * accuracy:.2f}% | {seconds:,.0f} | {ratio} | "
                     f"{len(runs)} | {load or 'not sampled'} |")
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
    shown = commands.add_parser("table", help="the time-to-accuracy table")
    shown.add_argument("--precision", default="float32")
    args = parser.parse_args(argv)
    if args.what == "ours":
        add_ours(args.run, args.load)
    elif args.what == "reference":
        add_reference(args.result, args.port, args.changes, args.command, args.precision,
                      args.load, args.between)
    else:
        print("\n".join(table(args.precision)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
