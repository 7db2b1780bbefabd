"""Finding flipped labels with fastcifar: flip a fraction of the training labels, cross-validate
on the noisy data, flag the likeliest label errors several ways, and retrain without them.

    python examples/label_noise.py --data cifar10 --pool 10000 --noise 0.2 --out runs/noise

1. Noise: `--noise` of the training images (a class-balanced `--pool` of them, if given)
   get another label, drawn at random among the other classes (seeded by --seed), or with
   `--asymmetric` each class's flipped to one fixed other class, the next one (as a cat
   taken for a dog: the harder case, the errors agree with each other).
2. `fastcifar.crossval` on the noisy labels (`--folds`, `--runs`), recording every
   example: out-of-fold probabilities for every image, and in-sample scores.
3. Flags: (a) cleanlab's `find_label_issues(labels, pred_probs)` when cleanlab is
   installed (`pip install "fastcifar[cleanlab]"`); (b) the lowest out-of-fold
   probability of the given label (self-confidence) and the lowest margin; (c) the lowest
   in-sample AUM (Pleiss et al. 2020) and the most forgetting events (Toneva et al. 2019,
   two epochs or more). (b) and (c) flag as many images as cleanlab does, or, without it,
   as many as the out-of-fold prediction disagrees with; each method's precision and
   recall of the flipped images, and its recall when it flags as many as were flipped.
4. Retrain (`--retrain-runs` seeds, paired): on the noisy labels, on each method's kept
   images (`--retrain`), and on the clean labels; test accuracy of each.
Writes `label_noise.json`, `label_noise.md` and `label_noise.png` into --out, the
cross-validation under `crossval/`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

import fastcifar
from fastcifar.stats import CLIPPED, accuracy_interval, summarize
from fastcifar.recipes import get_recipe, parse_assignments
from fastcifar.report.plots import new_figure, save_png
from fastcifar.sessions.held_out import label_quality

# in-sample scores: (the field of CrossValResult.scores, +1 if the lowest are flagged first)
IN_SAMPLE = {"aum": ("aum", 1), "forgetting": ("forgetting", -1)}


def flip_labels(labels: np.ndarray, classes: int, fraction: float, asymmetric: bool,
                seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(the noisy labels, which were flipped): round(fraction * n) images drawn at random,
    each given another class: uniformly among the others, or with `asymmetric` the next."""
    rng = np.random.default_rng(seed)
    flipped = np.zeros(len(labels), dtype=bool)
    flipped[rng.choice(len(labels), round(fraction * len(labels)), replace=False)] = True
    shift = 1 if asymmetric else rng.integers(1, classes, flipped.sum())
    noisy = labels.copy()
    noisy[flipped] = (labels[flipped] + shift) % classes
    return noisy, flipped


def lowest(values: np.ndarray, count: int) -> np.ndarray:
    """A mask of the `count` lowest finite values (ties: the earlier image first)."""
    mask = np.zeros(len(values), dtype=bool)
    order = np.argsort(np.where(np.isfinite(values), values, np.inf), kind="stable")
    mask[order[:count]] = True
    return mask


def rankings(result) -> dict[str, np.ndarray]:
    """Each score-based method's values, the likeliest label errors lowest."""
    given, margin = label_quality(result.pred_probs, result.labels)
    ranked = {"self-confidence (out of fold)": given, "margin (out of fold)": margin}
    for name, (field, sign) in IN_SAMPLE.items():
        values = (result.scores or {}).get(field)
        if values is not None and np.isfinite(values).any():
            ranked[f"{name} (in sample)"] = sign * values
    return ranked


def cleanlab_flags(result) -> np.ndarray | None:
    try:
        from cleanlab.filter import find_label_issues
    except ImportError:
        return None
    return find_label_issues(result.labels, result.pred_probs)


def main(argv=None) -> int:
    try:
        return run(argv)
    except fastcifar.InputError as e:  # bad data or options: one line, as fastcifar's own
        print(f"label_noise: {e}", file=sys.stderr)
        return 2


def run(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="cifar10", help="as fastcifar train's --data")
    parser.add_argument("--pool", type=int, help="a class-balanced subset of this many "
                                                 "training images instead of all of them")
    parser.add_argument("--test-subset", type=int, help="test on a class-balanced subset")
    parser.add_argument("--noise", type=float, default=0.2, help="the fraction flipped")
    parser.add_argument("--asymmetric", action="store_true",
                        help="flip each class to the next one, not to a random other")
    parser.add_argument("--recipe", default="airbench94")
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument("--runs", type=int, default=1, help="runs a fold")
    parser.add_argument("--retrain", default="cleanlab,self-confidence,aum",
                        help="the methods whose kept images are retrained on (comma-separated "
                             "prefixes of the methods' names; '' for none)")
    parser.add_argument("--retrain-runs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="a recipe hyperparameter, as fastcifar train")
    parser.add_argument("--out", type=Path, default=Path("runs/label-noise"))
    args = parser.parse_args(argv)
    if not 0 < args.noise < 1:
        parser.error(f"--noise must be between 0 and 1, got {args.noise}")

    recipe = get_recipe(args.recipe)
    overrides = parse_assignments(recipe.config, args.overrides)
    data = fastcifar.load_dataset(args.data)
    if args.pool:
        data = data.balanced_subset(args.pool, seed=args.seed)
    if args.test_subset:
        data = data.balanced_test_subset(args.test_subset, seed=args.seed)
    noisy_labels, flipped = flip_labels(data.train_labels, len(data.classes), args.noise,
                                        args.asymmetric, args.seed)
    noisy = fastcifar.ImageData(data.train_images, noisy_labels, data.test_images,
                                data.test_labels, data.classes, data.name)
    options = dict(device=args.device, verbose=False, progress=False, **overrides)
    print(f"{flipped.sum():,} of {len(flipped):,} labels flipped "
          f"({'to the next class' if args.asymmetric else 'at random'}); cross-validating: "
          f"{args.folds} folds x {args.runs} run(s) of {recipe.name}")
    result = fastcifar.crossval(recipe, noisy, folds=args.folds, runs=args.runs,
                                seed=args.seed, record_examples=True,
                                out=args.out / "crossval", **options)
    truth = flipped[result.indices]  # (rows in the crossval's order: here the same)

    found = cleanlab_flags(result)
    count = int(found.sum()) if found is not None else int(
        (result.pred_probs.argmax(1) != result.labels).sum())
    flags = {} if found is None else {"cleanlab find_label_issues": found}
    ranked = rankings(result)
    flags.update({name: lowest(values, count) for name, values in ranked.items()})
    rows = []
    for name, mask in flags.items():
        hits = int((mask & truth).sum())
        at_truth = (lowest(ranked[name], int(truth.sum())) & truth).sum() / truth.sum() \
            if name in ranked else None
        rows.append({"method": name, "flagged": int(mask.sum()), "found": hits,
                     "precision": hits / max(1, mask.sum()), "recall": hits / truth.sum(),
                     "recall_at_flipped": at_truth})

    retrained = {"noisy labels": None}
    wanted = [w.strip() for w in args.retrain.split(",") if w.strip()]
    for name, mask in flags.items():
        if any(name.startswith(w) for w in wanted):
            retrained[f"noisy, {name} flags removed"] = np.flatnonzero(~mask)
    retrained["clean labels"] = None
    accuracy = {}
    for name, keep in retrained.items():
        source = data if name == "clean labels" else noisy
        print(f"retraining on {name}: {args.retrain_runs} run(s)")
        trained = fastcifar.train(recipe, data=source if keep is None else source.subset(
            result.indices[keep]), runs=args.retrain_runs, seed=args.seed, **options)
        accuracy[name] = [r.accuracy for r in trained.runs]

    report = markdown(rows, accuracy, retrained, truth, result, args, argv)
    print(report)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "label_noise.md").write_text(report)
    (args.out / "label_noise.json").write_text(json.dumps({
        "recipe": recipe.name, "data": str(args.data), "pool": args.pool,
        "test_subset": args.test_subset, "noise": args.noise, "asymmetric": args.asymmetric,
        "flipped": int(truth.sum()), "images": len(truth), "folds": args.folds,
        "runs": args.runs, "seed": args.seed, "overrides": {
            k: list(v) if isinstance(v, tuple) else v for k, v in overrides.items()},
        "out_of_fold_accuracy": result.accuracy, "flags": rows, "retrained": {
            name: {"images": len(truth) if keep is None else len(keep),
                   "accuracy": accuracy[name]} for name, keep in retrained.items()},
        "cleanlab": found is not None, "fastcifar": fastcifar.__version__}, indent=1) + "\n")
    save_png(figure(ranked, flags, truth), args.out / "label_noise.png")
    print(f"wrote {args.out / 'label_noise.md'}, label_noise.json and label_noise.png")
    return 0


def markdown(rows, accuracy, retrained, truth, result, args, argv) -> str:
    lines = [f"`python examples/label_noise.py {' '.join(argv or sys.argv[1:])}`", "",
             f"{int(truth.sum()):,} of {len(truth):,} training labels flipped "
             f"({'each class to the next' if args.asymmetric else 'at random'}); "
             f"out-of-fold accuracy against the noisy labels {100 * result.accuracy:.2f}% "
             f"({args.folds} folds x {args.runs} run(s)).", "",
             "| method | flagged | flipped found | precision | recall | recall flagging "
             f"{int(truth.sum())} |", "| --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        at = "" if r["recall_at_flipped"] is None else f"{100 * r['recall_at_flipped']:.1f}%"
        lines.append(f"| {r['method']} | {r['flagged']} | {r['found']} | "
                     f"{100 * r['precision']:.1f}% | {100 * r['recall']:.1f}% | {at} |")
    lines += ["", "| retrained on | images | test accuracy (mean, 95% CI) | minus noisy "
              "(paired) |", "| --- | --- | --- | --- |"]
    base, clipped = accuracy["noisy labels"], False
    for name, keep in retrained.items():
        acc = summarize(accuracy[name])
        diff = summarize([a - b for a, b in zip(accuracy[name], base)])
        low, high = accuracy_interval(acc.ci95)
        clipped |= (low, high) != tuple(acc.ci95)
        ci = f" [{100 * low:.2f}, {100 * high:.2f}]" if acc.n > 1 else ""
        versus = "" if name == "noisy labels" else f"{100 * diff.mean:+.2f}" + (
            f" [{100 * diff.ci95[0]:+.2f}, {100 * diff.ci95[1]:+.2f}]" if diff.n > 1 else "")
        lines.append(f"| {name} | {len(truth) if keep is None else len(keep):,} | "
                     f"{100 * acc.mean:.2f}%{ci} | {versus} |")
    return "\n".join(lines + [CLIPPED] * clipped) + "\n"


def figure(ranked: dict, flags: dict, truth: np.ndarray):
    """Left: the out-of-fold probability of the given label, flipped images against the
    others. Right: each ranking's precision against recall as it flags more images, and
    each method's own flags as a point."""
    fig = new_figure(figsize=(11, 4.2))
    left, right = fig.subplots(1, 2)
    given = ranked["self-confidence (out of fold)"]
    bins = np.linspace(0, 1, 41)
    left.hist(given[~truth], bins=bins, alpha=0.6, label="label kept")
    left.hist(given[truth], bins=bins, alpha=0.6, label="label flipped")
    left.set_xlabel("out-of-fold probability of the given label")
    left.set_ylabel("images")
    left.legend()
    for (name, values), colour in zip(ranked.items(), ("C0", "C1", "C2", "C3")):
        order = np.argsort(np.where(np.isfinite(values), values, np.inf), kind="stable")
        hits = np.cumsum(truth[order])
        flagged = np.arange(1, len(order) + 1)
        right.plot(hits / truth.sum(), hits / flagged, color=colour, label=name)
        mask = flags[name]
        right.plot([(mask & truth).sum() / truth.sum()], [(mask & truth).sum() / mask.sum()],
                   "o", color=colour)
    if "cleanlab find_label_issues" in flags:
        mask = flags["cleanlab find_label_issues"]
        right.plot([(mask & truth).sum() / truth.sum()],
                   [(mask & truth).sum() / max(1, mask.sum())], "k*", markersize=12,
                   label="cleanlab find_label_issues")
    right.axhline(truth.mean(), color="0.6", lw=0.8, ls="--", label="flagging at random")
    right.set_xlabel("recall of the flipped labels")
    right.set_ylabel("precision")
    right.set_ylim(0, 1.02)
    right.legend(fontsize=8)
    fig.suptitle(f"{int(truth.sum())} of {len(truth)} labels flipped: how each score finds them"
                 " (dots: the flags at the count used)")
    return fig


if __name__ == "__main__":
    sys.exit(main())
