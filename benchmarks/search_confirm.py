"""`search.py confirm`: the study's winner beside the recipe itself, on the whole training set
and the test set, with seeds the search never used: --runs a side, each side split into
--chunks processes (`fastcifar train`), run alternately (winner, recipe; recipe, winner;
...), on the same GPU and the recipe's record clock. Both sides run the same seeds.

It writes confirm.json and confirm.md into the study's folder: each side's mean test
accuracy with its 95% interval, the mean paired difference (the same seeds) with its
interval, each side's median seconds on the clock and in all, their ratio, and whether the
winner reaches --goal (0.92) of the recipe's time without a lower mean accuracy. The run
folders go to --work (not returned: their summaries are in confirm.json).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import device_limits
from fastcifar.stats import accuracy_interval, summarize
from fastcifar.errors import InputError
from fastcifar.files import atomic_path
from result_files import read_json, write_json
from search_study import BASELINE, CONFIRM_FILES, LOG, Study, take_committed, values_text
from suite_steps import set_options

ROOT = Path(__file__).resolve().parents[1]
MARGIN = 10.0  # seconds kept for the tables and exit
SIDES = ("winner", "recipe")


def confirm(args, elapsed) -> int:
    """`elapsed()`: seconds since the process started (the budget counts from there)."""
    take_committed(Path(args.study), args.resume_from)
    study = Study.read(Path(args.study))
    candidate = study.winner() if args.candidate is None else args.candidate
    if candidate is None or candidate == BASELINE or not 0 < candidate < len(study.candidates):
        raise InputError(f"--candidate {args.candidate}: expected one of the study's "
                         f"candidates 1-{len(study.candidates) - 1}" if args.candidate is not None
                         else "the study has no winner yet (no candidate has run every rung)")
    used = range(study.settings["seed"], study.settings["seed"] + study.settings["rungs"][-1])
    fresh = range(args.seed, args.seed + args.runs)
    if args.runs < 1 or not 1 <= args.chunks <= args.runs or set(used) & set(fresh):
        raise InputError(f"--runs {args.runs}, --chunks {args.chunks}, --seed {args.seed}: "
                         f"expected runs >= chunks >= 1, and seeds outside the search's "
                         f"{used.start}-{used.stop - 1}")
    fixed = study.settings["fixed"]
    overrides = {side: {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
                 for side, values in (("winner", {**fixed,
                                                  **study.candidates[candidate]["overrides"]}),
                                      ("recipe", fixed))}
    work = Path(args.work or tempfile.mkdtemp(prefix="search-confirm-"))
    sizes = [args.runs // args.chunks + (i < args.runs % args.chunks)
             for i in range(args.chunks)]
    processes, seed = [], args.seed
    for chunk, n in enumerate(sizes):
        for side in SIDES if chunk % 2 == 0 else SIDES[::-1]:
            processes.append({"side": side, "chunk": chunk, "runs": n, "seed": seed,
                              "folder": str(work / f"{side}-{chunk}")})
        seed += n
    study.say(f"\n== search.py confirm: candidate {candidate} "
              f"({values_text(study.candidates[candidate]['values'])}) beside "
              f"{study.settings['recipe']}, seeds {args.seed}-{args.seed + args.runs - 1}, "
              f"{len(processes)} processes")
    for process in processes:
        left = args.budget - MARGIN - elapsed()
        if left < 1:
            process["status"] = "skipped: no time left"
            continue
        command = [sys.executable, "-m", "fastcifar", "train", "--recipe",
                   study.settings["recipe"], "--data", str(Path(args.data).resolve()),
                   "--device", args.device, "--precision", study.settings["precision"],
                   "--runs", str(process["runs"]), "--seed", str(process["seed"]),
                   "--out", process["folder"], *set_options(overrides[process["side"]]),
                   *(["--compile", args.compile] if args.compile not in (None, "none") else [])]
        study.say(f"$ {' '.join(command)}")
        with open(study.folder / LOG, "a") as log:
            try:
                done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                                      env=environment(work), timeout=left)
                process["status"] = "done" if done.returncode == 0 else \
                    f"failed (exit {done.returncode})"
            except subprocess.TimeoutExpired:
                process["status"] = "cut off by the budget"
        summary = Path(process["folder"]) / "summary.json"  # (written after every run)
        process["runs_done"] = read_json(summary)["runs"] if summary.exists() else []
        study.say(f"{process['side']} {process['chunk']}: {process['status']}, "
                  f"{len(process['runs_done'])} run(s)")
    result = report(study, candidate, processes, args.goal)
    json_file, md_file = CONFIRM_FILES
    write_json(study.folder / json_file, result)
    table = markdown(result)
    with atomic_path(study.folder / md_file) as tmp:
        tmp.write_text(table)
    study.say(table)
    study.check_size(device_limits.from_options(args))
    return 0 if all(result["sides"][s]["runs"] for s in SIDES) else 1


def environment(work: Path) -> dict:
    """This process's, fastcifar importable, and one Inductor cache for every process: with
    --compile a side's second process finds its graphs compiled."""
    paths = [str(ROOT), *os.environ.get("PYTHONPATH", "").split(os.pathsep)]
    return {**os.environ, "PYTHONUNBUFFERED": "1",
            "TORCHINDUCTOR_CACHE_DIR": str(work / "inductor-cache"),
            "PYTHONPATH": os.pathsep.join(os.path.abspath(p) for p in paths if p)}


def report(study: Study, candidate: int, processes: list[dict], goal: float) -> dict:
    sides = {}
    for side in SIDES:
        runs = {r["seed"]: r for p in processes if p["side"] == side for r in p["runs_done"]}
        sides[side] = {"runs": len(runs), "by_seed": runs}
        if runs:
            accuracy = summarize([r["accuracy"] for r in runs.values()])
            sides[side].update(
                accuracy=accuracy.as_dict(),
                record_seconds=statistics.median(r["record_seconds"] for r in runs.values()),
                train_seconds=statistics.median(r["train_seconds"] for r in runs.values()))
    result = {"candidate": candidate, "values": study.candidates[candidate]["values"],
              "overrides": study.candidates[candidate]["overrides"],
              "recipe": study.settings["recipe"], "goal": goal, "processes": [
                  {k: v for k, v in p.items() if k != "runs_done"} for p in processes],
              "sides": sides}
    winner, recipe = sides["winner"], sides["recipe"]
    shared = sorted(set(winner["by_seed"]) & set(recipe["by_seed"]))
    if shared:
        difference = summarize([winner["by_seed"][s]["accuracy"] -
                                recipe["by_seed"][s]["accuracy"] for s in shared])
        ratio = winner["record_seconds"] / recipe["record_seconds"]
        result.update(paired_difference=difference.as_dict(), ratio=ratio,
                      ratio_full=winner["train_seconds"] / recipe["train_seconds"],
                      reached=ratio <= goal and winner["accuracy"]["mean"] >=
                      recipe["accuracy"]["mean"])
    return result


def markdown(result: dict) -> str:
    lines = [f"candidate {result['candidate']} ({values_text(result['values'])}) beside "
             f"{result['recipe']}, test set, fresh seeds", "",
             "| side | runs | test accuracy (TTA) | 95% interval | median seconds (clock) | "
             "median seconds (full) |", "| --- | --- | --- | --- | --- | --- |"]
    for side in SIDES:
        s = result["sides"][side]
        if not s["runs"]:
            lines.append(f"| {side} | 0 | | | | |")
            continue
        low, high = accuracy_interval((s["accuracy"]["ci95_low"], s["accuracy"]["ci95_high"]))
        lines.append(f"| {side} | {s['runs']} | {100 * s['accuracy']['mean']:.2f}% | "
                     f"[{100 * low:.2f}, {100 * high:.2f}] | {s['record_seconds']:.3f} | "
                     f"{s['train_seconds']:.3f} |")
    if "ratio" in result:
        d = result["paired_difference"]
        lines += ["", f"time ratio on the clock {result['ratio']:.3f} (whole timed run "
                      f"{result['ratio_full']:.3f}); accuracy, winner - recipe on the same "
                      f"seeds: {100 * d['mean']:+.2f} points, 95% interval "
                      f"[{100 * d['ci95_low']:+.2f}, {100 * d['ci95_high']:+.2f}] over "
                      f"{d['n']} seeds",
                  f"goal (ratio <= {result['goal']} at no lower mean accuracy): "
                  + ("reached" if result["reached"] else "not reached")]
    return "\n".join(lines) + "\n"
