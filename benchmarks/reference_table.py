"""Print the recipes-against-their-reference table from the committed results.

    python benchmarks/reference_table.py            # markdown rows for the README
    python benchmarks/reference_table.py --gpu      # the GPU suite's pairs, the same way

Each `benchmarks/results/<recipe>-cpu-standin-<precision>/` holds our run folder's
summary.json (and metrics.csv, config.json), further seeds' in `seed<N>/` under it (a row
gives the mean over all of them) and, where the reference was run beside it,
reference.json: the JSON the CPU port of the original script wrote (accuracy with and
without TTA, timed seconds, per-epoch validation accuracy, repository, commit, path and
the list of changes made to run it). Accuracy is on the JPEG stand-in, never the official
CIFAR-10; a row says how many runs each side has. A folder without our summary.json is
a recipe not yet run to the end (its README section says what was checked instead).

With --gpu: each `benchmarks/results/h200-*/` folder holds the GPU suite's calls
(`call*/suite.json`, benchmarks/gpu_suite.py); a row per recipe raced beside its original
there, every run of each side over the folder's calls (a call whose side failed adds none),
compiled and uncompiled runs in rows of their own.
"""

from __future__ import annotations

import statistics
import sys

from fastcifar.bench.clocks import HIVERGE, PARTS, record_clock
from result_files import (OURS, REFERENCE, SUMMARY, THEIRS, gpu_calls, our_runs, ours,
                          pair_steps, read_json, recipe_and_precision, standin_folders, theirs)


def rows() -> list[str]:
    lines = ["| recipe | ours (TTA) | reference (TTA) | difference | runs (ours / ref) | "
             "seconds (ours / ref) | precision | machine |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for folder in standin_folders():
        if not (folder / SUMMARY).exists():  # checked another way, not run to the end: say so
            recipe, precision = recipe_and_precision(folder)
            lines.append(f"| {recipe} | not run to the end | not run to the end | | 0 / 0 | | "
                         f"{precision} | see {folder.name}/ |")
            continue
        summary = read_json(folder / SUMMARY)
        mine = ours(our_runs(folder))
        if (folder / REFERENCE).exists():
            reference = theirs(read_json(folder / REFERENCE))
            ref_text = f"{100 * statistics.mean(reference.accuracies):.2f}%"
            gap = statistics.mean(mine.accuracies) - statistics.mean(reference.accuracies)
            diff = f"{100 * gap:+.2f}"
            runs = f"{len(mine.accuracies)} / {len(reference.accuracies)}"
            seconds = (f"{statistics.mean(mine.seconds):,.0f} / "
                       f"{statistics.mean(reference.seconds):,.0f}")
        else:
            ref_text, diff, runs = "not run", "", f"{len(mine.accuracies)} / 0"
            seconds = f"{statistics.mean(mine.seconds):,.0f}"
        lines.append(f"| {summary['recipe']} | {100 * statistics.mean(mine.accuracies):.2f}% | "
                     f"{ref_text} | {diff} | {runs} | {seconds} | "
                     f"{summary.get('precision', 'float32')} | "
                     f"{summary['device']}, torch {summary['torch']} |")
    return lines


def gpu_rows() -> list[str]:
    lines = ["| recipe | ours (TTA) | reference (TTA) | difference | runs (ours / ref) | "
             "timed seconds (ours / ref) | clock | compiled | machine | results |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for folder, calls in gpu_calls().items():
        sides: dict[tuple[str, bool], dict[str, dict]] = {}  # (recipe, compiled): sides
        for suite in calls:
            machine = f"{suite['device']}, torch {suite['torch']}"
            for step in pair_steps(suite):
                side = sides.setdefault((step["recipe"], step["compile"]), {}).setdefault(
                    step["side"], {"accuracy": [], "seconds": [], "clocks": set()})
                side["accuracy"] += step.get("accuracies", [])
                side["seconds"] += step.get("seconds", [])
                if step.get("accuracies"):
                    side["clocks"].add(step.get("clock", "whole run"))
        for (recipe, compiled), both in sides.items():
            if THEIRS not in both or not all(both[k]["accuracy"] for k in both):
                continue
            mine, reference = both[OURS], both[THEIRS]

            def shown(side):
                acc = side["accuracy"]
                spread = f" ± {100 * statistics.stdev(acc):.2f}" if len(acc) > 1 else ""
                return f"{100 * statistics.mean(acc):.2f}%{spread}"
            diff = 100 * (statistics.mean(mine["accuracy"])
                          - statistics.mean(reference["accuracy"]))
            lines.append(
                f"| {recipe} | {shown(mine)} | {shown(reference)} | {diff:+.2f} | "
                f"{len(mine['accuracy'])} / {len(reference['accuracy'])} | "
                f"{statistics.median(mine['seconds']):.2f} / "
                f"{statistics.median(reference['seconds']):.2f} (medians) | "
                f"{clock_cell(recipe, mine['clocks'])} | "
                f"{'max-autotune, both sides' if compiled else 'no, both sides'} | {machine} | "
                f"{folder} |")
    return lines


def clock_cell(recipe: str, our_clocks: set[str]) -> str:
    """Whether our seconds in a row are on the original's clock (fastcifar/bench/clocks.py):
    `record` where they cover the same parts; earlier suites timed our whole run, which for
    the Fulcrum recipes adds the TTA that their clock leaves out."""
    clock = record_clock(recipe)
    if clock.parts != PARTS and our_clocks != {"record"}:
        return f"not alike: ours {' + '.join(PARTS)}, {clock.name}'s {' + '.join(clock.parts)}"
    if clock is HIVERGE:  # the same parts, but the host waits at each of our epochs' ends
        return "record (ours: a sync each epoch)"
    return "record"


if __name__ == "__main__":
    print("\n".join(gpu_rows() if "--gpu" in sys.argv[1:] else rows()))
    sys.exit(0)
