"""Data pruning with fastcifar: score every training image from short runs, keep the hardest
fraction, train on it, and compare with a random subset of the same size.

    python examples/pruning.py --data cifar10 --keep 0.5 --runs 5 --out runs/pruning

1. Score: `--score-runs` runs of the recipe with `record_examples=True` (the recipe's own
   epochs unless `--score-epochs`), and a score per image: AUM (Pleiss et al. 2020; the
   lowest are the hardest), EL2N (Paul et al. 2021; the highest) or forgetting events
   (Toneva et al. 2019; the most).
2. Prune: the `--keep` fraction of the images hardest by that score, and a random subset
   of the same size (drawn with --seed); each class keeps what the score gives it.
3. Train `--runs` runs on each subset and on all the images, the same seeds for each, and
   report the accuracy with its 95% interval and each subset's difference to the random
   one, paired by seed.
Writes `pruning.json` and `pruning.md` (the table) into --out, with the scoring runs'
`examples.npz`, `scores.csv` and `data_map.png` under `scoring/`.

The literature's finding (Paul et al.; Sorscher et al. 2022): at moderate pruning (keeping
50-70%) the hardest examples beat a random subset; keeping few, the easiest do better.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

import fastcifar
from fastcifar.stats import summarize
from fastcifar.recipes import get_recipe, parse_assignments
from fastcifar.report.example_scores import write_report

SCORES = {"aum": ("aum", 1), "el2n": ("el2n", -1), "forgetting": ("forgetting", -1)}


def hardest(scores, keep: int, name: str) -> np.ndarray:
    """The training-set positions of the `keep` hardest images by score `name`."""
    field, sign = SCORES[name]
    values = getattr(scores, field)
    if not np.isfinite(values).all():  # forgetting needs two epochs to forget in
        raise fastcifar.InputError(f"--score {name}: not defined by scoring runs of "
                                   f"{scores.epochs} epoch(s); give --score-epochs 2 or more, "
                                   f"or another --score")
    order = np.argsort(sign * values, kind="stable")  # hardest first
    return np.sort(scores.index[order[:keep]])


def main(argv=None) -> int:
    try:
        return prune(argv)
    except fastcifar.InputError as e:  # bad data or options: one line, as fastcifar's own
        print(f"pruning: {e}", file=sys.stderr)
        return 2


def prune(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="cifar10", help="as fastcifar train's --data")
    parser.add_argument("--pool", type=int, help="prune a class-balanced subset of this many "
                                                 "training images instead of all of them")
    parser.add_argument("--test-subset", type=int, help="evaluate on a class-balanced subset "
                                                        "of this many test images")
    parser.add_argument("--recipe", default="airbench94")
    parser.add_argument("--keep", type=float, default=0.5, help="the fraction kept")
    parser.add_argument("--score", choices=SCORES, default="aum")
    parser.add_argument("--score-runs", type=int, default=2)
    parser.add_argument("--score-epochs", type=float, help="default: the recipe's")
    parser.add_argument("--runs", type=int, default=3, help="runs on each subset")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="a recipe hyperparameter, as fastcifar train")
    parser.add_argument("--out", type=Path, default=Path("runs/pruning"))
    args = parser.parse_args(argv)
    if not 0 < args.keep < 1:
        parser.error(f"--keep must be between 0 and 1, got {args.keep}")

    recipe = get_recipe(args.recipe)  # a shipped one, or path/to/file.py:Name
    overrides = parse_assignments(recipe.config, args.overrides)
    data = fastcifar.load_dataset(args.data)
    if args.pool:
        data = data.balanced_subset(args.pool, seed=args.seed)
    epochs = overrides.pop("epochs", None)  # (train's own keyword: None is the recipe's)
    options = dict(device=args.device, verbose=False, progress=False,
                   test_subset=args.test_subset, **overrides)

    print(f"scoring {len(data.train_labels):,} images: {args.score_runs} run(s) of "
          f"{args.recipe} with their per-example records")
    fastcifar.train(recipe, data=data, runs=args.score_runs, seed=1000 + args.seed,
                    epochs=args.score_epochs or epochs, record_examples=True,
                    out=args.out / "scoring", **options)
    scores, lines = write_report(args.out / "scoring", args.out / "scoring")
    print("\n".join(lines[:5]))

    keep = round(args.keep * len(scores.index))
    rng = np.random.default_rng(args.seed)
    subsets = {"all": None, f"hardest {args.keep:.0%} by {args.score}":
               hardest(scores, keep, args.score),
               # from the same images (those the scoring runs never showed are unscored)
               f"random {args.keep:.0%}": np.sort(rng.choice(scores.index, keep,
                                                               replace=False))}
    results, seconds = {}, {}
    for name, index in subsets.items():
        print(f"training on {name}: {args.runs} run(s)")
        result = fastcifar.train(recipe, data=data if index is None else data.subset(index),
                                 runs=args.runs, seed=args.seed, epochs=epochs, **options)
        results[name] = [r.accuracy for r in result.runs]
        seconds[name] = [r.seconds for r in result.runs]

    random_name = list(subsets)[2]
    rows = ["| trained on | images | accuracy (mean, 95% CI) | minus random (paired) |",
            "| --- | --- | --- | --- |"]
    for name, accuracies in results.items():
        n = len(data.train_labels) if subsets[name] is None else len(subsets[name])
        acc = summarize(accuracies)
        diff = summarize([a - b for a, b in zip(accuracies, results[random_name])])
        versus = "" if name == random_name else (
            f"{100 * diff.mean:+.2f} [{100 * diff.ci95[0]:+.2f}, {100 * diff.ci95[1]:+.2f}]"
            if len(accuracies) > 1 else f"{100 * diff.mean:+.2f}")
        shown = (f"{100 * acc.mean:.2f}% [{100 * acc.ci95[0]:.2f}, {100 * acc.ci95[1]:.2f}]"
                 if acc.n > 1 else f"{100 * acc.mean:.2f}%")
        rows.append(f"| {name} | {n:,} | {shown} | {versus} |")
    table = "\n".join(rows)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "pruning.md").write_text(table + "\n")
    (args.out / "pruning.json").write_text(json.dumps({
        "recipe": args.recipe, "data": str(args.data), "pool": args.pool, "keep": args.keep,
        "score": args.score, "score_runs": args.score_runs, "runs": args.runs,
        "seed": args.seed, "epochs": epochs, "overrides": {
            k: list(v) if isinstance(v, tuple) else v for k, v in overrides.items()},
        "accuracy": results, "seconds": seconds, "fastcifar": fastcifar.__version__},
        indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
