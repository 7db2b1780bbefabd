"""A search for a faster recipe inside one GPU call: successive halving over a space of a
recipe's fields (benchmarks/search_space.py), every run a `fastcifar.train(...)` in this one
process, judged on images held out of the training set, then confirmed on the test set.

On a lent GPU (docs/search.md has the device tool's call), from the repository root:

    PYTHONPATH=. python benchmarks/search.py run --study $OUT \
        --data .data/gpu/cifar10-jpeg.tar.gz --resume-from benchmarks/results/search-fable94_e1
    PYTHONPATH=. python benchmarks/search.py confirm --study $OUT --data ...
    python benchmarks/search.py show --study benchmarks/results/search-fable94_e1

`run`: `--val-images` training images (5,000, class-balanced, drawn by `--split-seed`) are
held out; every candidate trains on the rest and is judged on them, never on the test set.
It trains the trials the study lacks, in order, each only if its estimate fits in what is
left of `--budget` (default: the call's seconds less the call's own, device_limits.py),
and writes the study (search_study.py: its files, and the rule that judges and promotes)
after every run; a later call continues it, given the same settings (else refused, naming
what differs). `--resume-from` copies a study (one a lease returned and a session
committed) into an empty `--study` first. Compile is off (each trial would compile anew);
each trial's session warms up untimed first, as every session on a GPU does.

`confirm` (search_confirm.py): the winner and the recipe itself, fresh seeds, the whole
training set and the test set, each side in separate processes, alternating.
"""

from __future__ import annotations

import time

STARTED = time.monotonic()  # the budget counts from here: imports and the data included

import argparse  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

import numpy as np  # noqa: E402
import torch  # noqa: E402

import device_limits  # noqa: E402
from fastcifar import ImageData, load_dataset, train  # noqa: E402
from fastcifar.bench.clocks import record_seconds  # noqa: E402
from fastcifar.data.dataset import balanced_subset_index  # noqa: E402
from fastcifar.errors import InputError, RunFailed  # noqa: E402
from fastcifar.recipes import get_recipe  # noqa: E402
from fastcifar.recipes.fields import parse_assignments, with_values  # noqa: E402
from fastcifar.train.device import device_name, resolve_device  # noqa: E402
from fastcifar.train.identity import recipe_digest  # noqa: E402
from search_space import (DEFAULT_SPACE, REHEARSAL_SPACE, draw_candidates,  # noqa: E402
                          jsonable, read_space, space_record)
from search_study import BASELINE, Study, take_committed, values_text  # noqa: E402
from suite_steps import rehearsal_overrides  # noqa: E402

MARGIN = 20.0  # seconds kept for the tables and exit
FIRST_RUN_SECONDS = 8.0  # a run's wall seconds before any was measured (uncompiled E1 on an
# H200: about 2 s timed, its per-epoch validation and TTA, and the session's warm-up)
DEFAULTS = {"space": DEFAULT_SPACE, "val_images": 5000, "candidates": 20, "rungs": "1,3,8"}
REHEARSAL = {"space": REHEARSAL_SPACE, "val_images": 50, "candidates": 3, "rungs": "1,2"}


def elapsed() -> float:
    return time.monotonic() - STARTED


def held_out(dataset: ImageData, images: int, seed: int) -> ImageData:
    """The training images less `images` held out (class-balanced, drawn by `seed`), with
    those as its test split: the dataset's own test split is not in it."""
    val = balanced_subset_index(dataset.train_labels, images, len(dataset.classes), seed,
                                what="--val-images")
    rest = np.setdiff1d(np.arange(len(dataset.train_labels)), val)
    split = ImageData(dataset.train_images[rest], dataset.train_labels[rest],
                      dataset.train_images[val], dataset.train_labels[val], dataset.classes,
                      f"{dataset.name} less {images} held out")
    return split


def settings_of(args, recipe, fixed: dict, dims, split: ImageData, device) -> dict:
    """What the study's runs depend on, compared when a later call continues it."""
    return {"recipe": recipe.name, "recipe_sha256": recipe_digest(recipe),
            "data_sha256": split.digest, "val_images": args.val_images,
            "split_seed": args.split_seed, "fixed": jsonable(fixed),
            "space": space_record(dims), "candidates": args.candidates, "rungs": args.rungs,
            "keep": args.keep, "seed": args.seed, "target": args.target,
            "penalty": args.penalty, "clock": args.clock, "precision": args.precision,
            "compile": args.compile, "device": device_name(device),
            "torch": torch.__version__}


def run(args) -> int:
    device = resolve_device(args.device)
    recipe = get_recipe(args.recipe)
    fixed = {**(rehearsal_overrides(recipe.name) if args.rehearsal else {}),
             **parse_assignments(recipe.config, args.overrides)}
    config = with_values(recipe.config, fixed)
    config.validate()
    dims = read_space(args.space, args.space_file, config,
                      (REHEARSAL if args.rehearsal else DEFAULTS)["space"])
    folder = Path(args.study)
    take_committed(folder, args.resume_from)
    dataset = load_dataset(args.data)
    split = held_out(dataset, args.val_images, args.split_seed)
    del dataset  # (its test split is not read again)
    study = Study.open(folder, settings_of(args, recipe, fixed, dims, split, device),
                       lambda: draw_candidates(dims, config, args.candidates, args.seed))
    study.say(f"\n== search.py run: {len(study.runs)} runs recorded; {len(split.train_labels):,}"
              f" images trained on, {len(split.test_labels):,} held out; budget "
              f"{args.budget:.0f} s ({elapsed():.0f} s spent on the data)")
    trials, walls, stopped = 0, [], "finished"
    per_run = next((c["seconds_per_run"] for c in reversed(study.calls)
                    if c.get("seconds_per_run")), FIRST_RUN_SECONDS)
    while True:
        _, nxt = study.ladder()
        if nxt is None:
            break
        candidate, rung, seeds = nxt
        need, left = per_run * (len(seeds) + 1), args.budget - MARGIN - elapsed()
        if need > left:
            stopped = (f"stopped: candidate {candidate}'s rung {rung + 1} ({len(seeds)} run(s)) "
                       f"needs about {need:.0f} s, {max(left, 0):.0f} s left")
            break
        wall = trial(study, recipe, split, candidate, rung, seeds, args, len(study.calls))
        trials += 1
        walls.append((wall, len(seeds) + 1))
        per_run = sum(w for w, _ in walls) / sum(n for _, n in walls)
    study.say(stopped)
    study.record_call({"budget": args.budget, "trials": trials, "stopped": stopped,
                       "seconds": round(elapsed(), 1), "seconds_per_run": round(per_run, 2)})
    study.say(study.write_tables())
    study.check_size(device_limits.from_options(args))
    return 0 if trials > 0 or study.state()["finished"] else 1


def trial(study: Study, recipe, split: ImageData, candidate: int, rung: int,
          seeds: list[int], args, call: int) -> float:
    """The candidate's runs of `seeds` (consecutive ones in one session), each into the
    study as it ends; a run that fails marks the seeds left failed. Its wall seconds."""
    overrides = {**study.settings["fixed"], **study.candidates[candidate]["overrides"]}
    t0 = time.monotonic()

    def record(result) -> None:
        study.add_run({"candidate": candidate, "rung": rung + 1, "seed": result.seed,
                       "accuracy": result.accuracy, "accuracy_no_tta": result.accuracy_no_tta,
                       "record_seconds": record_seconds(recipe.name, result.seconds_by_part),
                       "train_seconds": result.seconds,
                       "seconds_by_part": result.seconds_by_part, "call": call})

    blocks = np.split(np.array(seeds), np.flatnonzero(np.diff(seeds) != 1) + 1)
    try:
        for block in blocks:
            train(recipe, data=split, runs=len(block), seed=int(block[0]),
                  device=args.device, precision=args.precision, compile=args.compile,
                  verbose=False, progress=False, on_run=record, **overrides)
    except (RunFailed, InputError, torch.OutOfMemoryError) as e:
        if candidate == BASELINE:  # nothing can be judged without it: refused, not recorded
            raise InputError(f"{recipe.name} itself, with --set {study.settings['fixed']}, "
                             f"failed: {e}") from None
        done = {r["seed"] for r in study.runs_of(candidate)}
        for seed in (s for s in seeds if s not in done):
            study.add_run({"candidate": candidate, "rung": rung + 1, "seed": seed,
                           "failed": str(e).splitlines()[0], "call": call})
    wall = time.monotonic() - t0
    figures = study.judge(candidate, seeds[-1] - study.settings["seed"] + 1)
    shown = (f"val acc {100 * figures['accuracy']:.2f}%, {figures['seconds']:.3f} s on the "
             f"clock, score {figures['score']:.3f}" if "accuracy" in figures
             else "failed: " + study.runs_of(candidate)[-1].get("failed", "?"))
    study.say(f"candidate {candidate} (rung {rung + 1}, seeds {seeds[0]}-{seeds[-1]}; "
              f"{values_text(study.candidates[candidate]['values'])}): {shown}; "
              f"{wall:.0f} s, {args.budget - MARGIN - elapsed():.0f} s left")
    return wall


def parse(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run_p = commands.add_parser("run", help="search, continuing the study")
    confirm_p = commands.add_parser("confirm", help="the winner beside the recipe, on the test "
                                                    "set, fresh seeds")
    show_p = commands.add_parser("show", help="print the study's table (no GPU)")
    for p in (run_p, confirm_p, show_p):
        p.add_argument("--study", required=True, help="the study's folder (read and written)")
    for p in (run_p, confirm_p):
        p.add_argument("--data", default=".data/gpu/cifar10-jpeg.tar.gz",
                       help="the stand-in archive, or any --data of fastcifar train")
        p.add_argument("--device", default="cuda")
        p.add_argument("--budget", type=float, help="seconds from the process's start to its "
                                                    "end (default: device_limits' budget)")
        p.add_argument("--resume-from", help="a committed study, copied into an empty --study")
        device_limits.add_options(p)
    run_p.add_argument("--recipe", default="fable94_e1")
    run_p.add_argument("--space", help="name=low:high[:log] or name=a|b, comma-separated")
    run_p.add_argument("--space-file", help="a JSON space (search_space.py; default: "
                                            "DEFAULT_SPACE, issue 39's ideas)")
    run_p.add_argument("--set", dest="overrides", action="append", default=[],
                       help="a field fixed for every candidate and the baseline, key=value")
    run_p.add_argument("--val-images", type=int, help="training images held out (5000)")
    run_p.add_argument("--split-seed", type=int, default=0)
    run_p.add_argument("--candidates", type=int, help="drawn from the space (20)")
    run_p.add_argument("--rungs", help="runs a candidate has after each rung (1,3,8)")
    run_p.add_argument("--keep", type=float, default=1 / 3,
                       help="the fraction of a rung promoted (a third)")
    run_p.add_argument("--seed", type=int, default=0, help="the first run's seed")
    run_p.add_argument("--target", default="baseline",
                       help="'baseline' (its mean on the same seeds) or an accuracy, 0-1")
    run_p.add_argument("--penalty", type=float, default=1.0,
                       help="time added per percentage point short of the target (1.0)")
    run_p.add_argument("--clock", choices=("record", "full"), default="record",
                       help="seconds on the recipe's record clock, or the whole timed run")
    run_p.add_argument("--precision", default="auto")
    run_p.add_argument("--compile", default=None,
                       help="a torch.compile mode (each trial compiles anew; default off)")
    run_p.add_argument("--rehearsal", action="store_true",
                       help="narrow one-epoch runs and a tiny space (CI, under the stand-in)")
    confirm_p.add_argument("--candidate", type=int, help="default: the study's winner")
    confirm_p.add_argument("--runs", type=int, default=10, help="runs a side")
    confirm_p.add_argument("--chunks", type=int, default=2, help="processes a side")
    confirm_p.add_argument("--seed", type=int, default=1000,
                           help="the first seed (fresh: none of the search's)")
    confirm_p.add_argument("--goal", type=float, default=0.92,
                           help="the time ratio the winner must reach")
    confirm_p.add_argument("--compile", default=None, help="a torch.compile mode, both sides")
    confirm_p.add_argument("--work", help="the run folders (default: beside --study)")
    args = parser.parse_args(argv)
    if args.command == "run":
        for key, value in (REHEARSAL if args.rehearsal else DEFAULTS).items():
            if key != "space" and getattr(args, key) is None:
                setattr(args, key, value)
        check_run_options(args)
    if args.command != "show" and args.budget is None:
        args.budget = device_limits.from_options(args).budget()
    return args


def check_run_options(args) -> None:
    try:
        args.rungs = [int(r) for r in str(args.rungs).split(",") if r.strip()]
    except ValueError:
        args.rungs = []
    if not args.rungs or args.rungs[0] < 1 or any(b <= a for a, b in zip(args.rungs,
                                                                         args.rungs[1:])):
        raise InputError(f"--rungs {args.rungs}: expected increasing run counts, e.g. 1,3,8")
    if not 0 < args.keep <= 1 or args.candidates < 1 or args.penalty < 0:
        raise InputError(f"--keep {args.keep}, --candidates {args.candidates}, --penalty "
                         f"{args.penalty}: expected 0 < keep <= 1, candidates >= 1, penalty >= 0")
    if args.target != "baseline":
        try:
            target = float(args.target)
        except ValueError:
            target = -1.0
        if not 0 < target < 1:
            raise InputError(f"--target {args.target}: expected baseline or an accuracy 0-1")
    args.compile = args.compile if args.compile not in (None, "none", "off") else False
    if args.budget is not None and args.budget <= MARGIN:
        raise InputError(f"--budget {args.budget}: expected more than the {MARGIN:.0f} s kept")


def main(argv=None) -> int:
    try:
        args = parse(argv)
        if args.command == "show":
            print(Study.read(Path(args.study)).write_tables())
            return 0
        if args.command == "confirm":
            import search_confirm
            return search_confirm.confirm(args, elapsed)
        return run(args)
    except InputError as e:
        print(f"search: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
