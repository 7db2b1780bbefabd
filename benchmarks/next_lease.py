"""The next GPU lease in one command: what a lease should measure first, in order, each stage
in the seconds the earlier ones left, and no more files back than the device tool returns.

    mkdir -p .data/gpu && cp ../shared/data/cifar10-jpeg.tar.gz .data/gpu/ \
        && cp -r ../shared/references .data/gpu/references
    # the device tool: kind nvidia-h200, carry [".data/gpu"], timeout_s 600
    PYTHONPATH=. python benchmarks/next_lease.py --out $OUT \
        --data .data/gpu/cifar10-jpeg.tar.gz --references .data/gpu/references

The stages, most important first (a stage that cannot start with its least time left is
skipped, and gpu_suite skips the steps that cannot fit):
1. the machine: nvidia-smi's clocks, power, temperature and load, before the work (and
   again after it, in stage 7);
2. the uncompiled fable94_e5 and hiverge94 pairs on the record's clock, each side's runs in
   two processes, alternating (benchmarks/gpu_suite.py);
3. their profiles, ours beside each original's port, inside each one's own clock, both
   uncompiled (benchmarks/run_profile.py --pair: pairs.txt, and pair-*.json in the tarball);
4. one compiled frontier pair, fable94_e5, max-autotune on both sides, cold compile timed;
5. the compiled airbench94_muon pair again;
6. airbench96 beside its original, uncompiled (it has never run to the end anywhere);
7. the search for a faster fable94_e1 (benchmarks/search.py, docs/search.md) in every
   second left, continuing the study committed in benchmarks/results/search-fable94_e1/
   if there is one;
8. the machine again.
What comes back in --out: lease.md (each stage's table or report), lease.log (every
stage's output), lease.json (the plan, each stage's command, status and seconds),
lease.tar.gz (every stage's raw results: suite.json, table.md, suite.log and the run
folders' summaries in results.tar.gz, profile.json; no checkpoints, caches, data or
traces), at most --file-mib, and the search's study.json, trials.jsonl and table.md (a
study folder: commit it as benchmarks/results/search-fable94_e1/ to continue it): seven
files of the 8 that come back. The lending machine's limits are options (device_limits.py:
--lease-seconds 900, --call-seconds 600, --files-back 8, --file-mib 16 today); --budget
defaults to the call's seconds (or the lease's, where less) less the call's own 60.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import device_limits
from device_limits import Limits

ROOT = Path(__file__).resolve().parents[1]
MARGIN = 15.0  # kept for the bundle and exit
SECONDS_LEFT = "{seconds_left}"  # in a stage's command: the seconds left when it starts
STUDY = ROOT / "benchmarks" / "results" / "search-fable94_e1"  # the search's committed study
# What lease.tar.gz leaves out: large, and not results (each gpu_suite call's own work
# folder: its results.tar.gz holds the run folders' summaries; the profiles' traces: their
# tables are in profile.json).
HEAVY = ("*.pt", "*.npz", "inductor-cache*", "work", "trace-*.json.gz")
SMI_QUERY = ("name,clocks.sm,clocks.mem,clocks.max.sm,clocks.max.mem,power.draw,"
             "power.limit,temperature.gpu,utilization.gpu,memory.used,memory.total")


@dataclass
class Stage:
    name: str
    command: list[str]
    least: float  # seconds it needs to start at all
    report: str | None = None  # the file (in its folder) whose text goes into lease.md
    result: dict = field(default_factory=dict)
    returns: tuple[str, ...] = ()  # files of its folder that come back beside lease.*


def plan(args, work: Path) -> list[Stage]:
    """The stages in order, each writing into work/<name>/."""
    python, suite = sys.executable, str(ROOT / "benchmarks" / "gpu_suite.py")

    def pair(name: str, pairs: str, *more: str) -> list[str]:
        return [python, suite, "--out", str(work / name), "--work", str(work / name / "work"),
                "--data", args.data, "--references", args.references, "--steps", "pairs",
                "--pairs", pairs, *more, *(["--rehearsal"] if args.rehearsal else [])]

    def smi(name: str) -> list[str]:
        return ["nvidia-smi", f"--query-gpu={SMI_QUERY}", "--format=csv",
                f"--filename={work / name / 'nvidia-smi.csv'}"]

    profile = [python, str(ROOT / "benchmarks" / "run_profile.py"), "--device", "cuda",
               "--data", args.data, "--references", args.references, "--pair", "fable94_e5",
               "--pair", "hiverge94", "--no-traces", "--budget", SECONDS_LEFT,
               "--out", str(work / "profiles")]
    if args.rehearsal:
        profile += ["--subset", "200", "--rehearsal"]
    return [
        Stage("machine-before", smi("machine-before"), 1, "nvidia-smi.csv"),
        Stage("uncompiled-frontier", pair("uncompiled-frontier", "fable94_e5,hiverge94",
                                          "--uncompiled", "--runs", str(args.runs),
                                          "--chunks", "2"), 60, "table.md"),
        Stage("profiles", profile, 120, "pairs.txt"),  # a pair: about a minute on a GPU
        Stage("compiled-fable94_e5", pair("compiled-fable94_e5", "fable94_e5", "--runs",
                                          str(args.runs)), 150, "table.md"),
        Stage("compiled-airbench94_muon", pair("compiled-airbench94_muon", "airbench94_muon",
                                               "--runs", str(args.runs)), 150, "table.md"),
        Stage("airbench96", pair("airbench96", "airbench96", "--uncompiled", "--runs", "2"),
              90, "table.md"),
        Stage("search", [python, str(ROOT / "benchmarks" / "search.py"), "run", "--study",
                         str(work / "search"), "--data", args.data, "--budget", SECONDS_LEFT,
                         *(["--rehearsal"] if args.rehearsal else
                           ["--resume-from", str(STUDY)])], 90, "table.md",
              returns=("study.json", "trials.jsonl", "table.md")),
        Stage("machine-after", smi("machine-after"), 1, "nvidia-smi.csv"),
    ]


def run_stages(stages: list[Stage], work: Path, log: Path, budget: float,
               started: float) -> None:
    """Each stage as a process, its output into `log`, cut off at the budget; a stage whose
    least time is no longer left is skipped, and said so."""
    for stage in stages:
        left = budget - MARGIN - (time.monotonic() - started)
        if left < stage.least:
            stage.result = {"status": "skipped", "note": f"{left:.0f} s left, it needs "
                                                         f"{stage.least:.0f}"}
            continue
        (work / stage.name).mkdir(parents=True, exist_ok=True)
        t0, status = time.monotonic(), "done"
        command = [part.replace(SECONDS_LEFT, f"{left:.0f}") for part in stage.command]
        with open(log, "a") as out:
            out.write(f"\n== {stage.name} ({left:.0f} s left)\n$ {' '.join(command)}\n")
            out.flush()
            try:
                done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT,
                                      cwd=ROOT, timeout=left)
                status = "done" if done.returncode == 0 else f"failed (exit {done.returncode})"
            except subprocess.TimeoutExpired:
                status = "cut off by the budget"
            except FileNotFoundError as e:  # nvidia-smi where there is none
                status = f"not run ({e.strerror}: {stage.command[0]})"
        stage.result = {"status": status, "seconds": round(time.monotonic() - t0, 1),
                        "command": command}


def bundle(stages: list[Stage], work: Path, out: Path, log: Path, started: float,
           limits: Limits = Limits()) -> None:
    """lease.md, lease.json, lease.log, lease.tar.gz and the stages' `returns` in `out`,
    each within the size that comes back (the tarball is kept aside where it is not)."""
    lines = ["# The lease's results", ""]
    for stage in stages:
        lines.append(f"## {stage.name}: {stage.result.get('status')}")
        report = work / stage.name / stage.report if stage.report else None
        if report is not None and report.is_file():
            lines += ["", report.read_text().rstrip()]
        lines.append("")
    (out / "lease.md").write_text("\n".join(lines) + "\n")
    (out / "lease.json").write_text(json.dumps(
        {"elapsed": round(time.monotonic() - started, 1),
         "stages": [{"name": s.name, "command": s.command, **s.result} for s in stages]},
        indent=1) + "\n")
    shutil.copyfile(log, out / "lease.log")
    for stage in stages:
        for name in stage.returns:
            if (work / stage.name / name).is_file():
                shutil.copyfile(work / stage.name / name, out / name)
    tarball = out / "lease.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(work, arcname="lease", filter=lambda info: None if any(
            Path(info.name).match(pattern) for pattern in HEAVY) else info)
    if tarball.stat().st_size > limits.file_bytes:  # too large to come back: say so, keep it
        kept = work.parent / tarball.name
        shutil.move(tarball, kept)
        with open(out / "lease.log", "a") as f:
            f.write(f"\nlease.tar.gz is over {limits.file_mib} MiB: kept in {kept}\n")
    notes = limits.left_behind(out)
    if notes:
        with open(out / "lease.log", "a") as f:
            f.write("".join(f"will not come back: {note}\n" for note in notes))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="what comes back")
    parser.add_argument("--work", type=Path, help="the stages' folders (default: a new one "
                                                  "beside --out)")
    parser.add_argument("--data", default=".data/gpu/cifar10-jpeg.tar.gz")
    parser.add_argument("--references", default=".data/gpu/references")
    parser.add_argument("--runs", type=int, default=6, help="runs a side of each pair")
    parser.add_argument("--budget", type=float,
                        help="seconds from start to the bundle (default: --call-seconds, or "
                             "--lease-seconds where less, less the call's own 60)")
    parser.add_argument("--rehearsal", action="store_true",
                        help="tiny data and narrow networks (CI, under the CUDA stand-in)")
    parser.add_argument("--skip", type=lambda text: [s for s in text.split(",") if s],
                        default=[], help="stages to leave out, comma-separated (a second "
                                         "call of a lease: those the first finished)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and stop")
    device_limits.add_options(parser)
    args = parser.parse_args(argv)
    limits = device_limits.from_options(args)
    budget = limits.budget() if args.budget is None else args.budget
    started = time.monotonic()
    if not Path(args.data).exists() or not Path(args.references).is_dir():
        print(f"next_lease: expected the stand-in archive at {args.data} and the original "
              f"scripts in {args.references} (copy them into .data/gpu and carry it)",
              file=sys.stderr)
        return 2
    args.data, args.references = (str(Path(p).resolve()) for p in (args.data,
                                                                     args.references))
    work = (args.work or args.out.parent / f"{args.out.name}-work").resolve()
    stages = plan(args, work)
    unknown = [name for name in args.skip if name not in {s.name for s in stages}]
    if unknown:
        print(f"next_lease: --skip {','.join(unknown)}: no such stage; the stages: "
              f"{', '.join(s.name for s in stages)}", file=sys.stderr)
        return 2
    stages = [s for s in stages if s.name not in args.skip]
    if args.dry_run:
        print("\n".join(f"{s.name} (at least {s.least:.0f} s): {' '.join(s.command)}"
                        for s in stages))
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    log = work / "lease.log"
    run_stages(stages, work, log, budget, started)
    bundle(stages, work, args.out, log, started, limits)
    print((args.out / "lease.md").read_text())
    return 0 if any(s.result.get("status") == "done" for s in stages[1:-1]) else 1


if __name__ == "__main__":
    sys.exit(main())
