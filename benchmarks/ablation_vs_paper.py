"""Set an airbench94 ablation (`fastcifar ablate`) beside the airbench paper's own.

    python benchmarks/ablation_vs_paper.py \
        benchmarks/results/h200-standin-uncompiled/call2/ablation/ablation.json

The paper (Keller Jordan, "94% on CIFAR-10 in 3.29 Seconds on a Single GPU", arXiv
2404.00498) measures a trick by the epochs airbench94 needs to reach 94% mean accuracy on
CIFAR-10 with that trick left out and the rest kept (all kept: 9.9 epochs). Its numbers
here are the author's data for the paper's additivity figure, the "single-off"
configurations of airbench/ablations/make_figures.py in KellerJordan/cifar10-zoo (commit
347bc00), and, for the whitening bias's freeze, the cumulative table of the README beside
it (the freeze leaves the epochs at 13.5 and takes 5.5 A100-seconds to 5.2).

`fastcifar ablate` measures a trick by the accuracy lost at the recipe's own 9.9 epochs
when it is left out, paired by seed. The two scales differ (epochs at a fixed accuracy,
accuracy at fixed epochs; the official images, the stand-in), so the table compares the
direction of each trick and the order of their sizes, not the sizes themselves;
`fastcifar ablate --epochs-for-accuracy` measures ours on the paper's scale.

The paper's "without whitening" trains a randomly initialised first conv followed by a
BatchNorm (cifar10-zoo's airbench/ablations/non_cascade/main9_BCDEF.py); ours trains the
first conv without one.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from result_files import ablation_rows, read_json

PAPER_ALL_ON_EPOCHS = 9.9
# Our trick's name -> (the paper's name for it, epochs to 94% without it).
PAPER_WITHOUT = {
    "whitening": ("whiten", 22.0),
    "identity_init": ("dirac", 12.7),
    "bias_lr": ("scalebias", 14.2),
    "lookahead": ("lookahead", 10.7),
    "tta": ("tta", 11.2),
    "alternating_flip": ("mirror", 10.8),
}
PAPER_OTHERWISE = {
    "whiten_bias_freeze": "a speed trick: epochs unchanged, 5.5 -> 5.2 s",
    "label_smoothing": "not ablated",
    "translate": "not ablated",
}


def points(fraction: float) -> str:
    return f"{100 * fraction:+.2f}"


def comparison(ablation: dict) -> list[str]:
    """Markdown lines: a row per trick of the ablation or the paper, then the orders."""
    if ablation.get("ladder"):
        raise ValueError("a ladder adds tricks to the plainest version; the paper's "
                         "single-off figures compare with a leave-one-out ablation")
    full, ours = ablation_rows(ablation)
    lines = [f"{ablation['recipe']}: full recipe {100 * full['accuracy_mean']:.2f}% "
             f"({full['runs']} runs); the paper's airbench94: 94% in {PAPER_ALL_ON_EPOCHS} epochs",
             "",
             "| trick | paper: epochs to 94% without it | paper: extra epochs | "
             "ours: accuracy without it (points, 95% CI) | ours: direction |",
             "| --- | --- | --- | --- | --- |"]
    for name in dict.fromkeys([*ours, *PAPER_WITHOUT, *PAPER_OTHERWISE]):
        if name in PAPER_WITHOUT:
            paper_name, epochs = PAPER_WITHOUT[name]
            extra = epochs - PAPER_ALL_ON_EPOCHS
            paper = (f"{epochs:g} ({paper_name})",
                     f"+{extra:.1f} (x{epochs / PAPER_ALL_ON_EPOCHS:.2f})")
        else:
            paper = (PAPER_OTHERWISE.get(name, "not ablated"), "")
        row = ours.get(name)
        if row is None:
            measured = ("not measured", "")
        else:
            low, high = row["difference_ci95"]
            if high < 0:
                direction = "helps (told apart from 0)"
            elif low > 0:
                direction = "hurts (told apart from 0)"
            else:
                direction = "helps" if row["difference_mean"] < 0 else "hurts"
                direction += f" (within the noise of {row['runs']} seeds)"
            measured = (f"{points(row['difference_mean'])} [{points(low)}, {points(high)}]",
                        direction)
        lines.append(f"| {name} | {paper[0]} | {paper[1]} | {measured[0]} | {measured[1]} |")
    both = [n for n in PAPER_WITHOUT if n in ours]
    by_paper = sorted(both, key=lambda n: -PAPER_WITHOUT[n][1])
    by_ours = sorted(both, key=lambda n: ours[n]["difference_mean"])
    lines += ["", "Largest first, the tricks both measured:",
              f"- the paper (extra epochs): {', '.join(by_paper)}",
              f"- ours (accuracy lost): {', '.join(by_ours)}"]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("ablation", type=Path, help="an ablation.json of fastcifar ablate")
    args = parser.parse_args(argv)
    try:
        ablation = read_json(args.ablation)
        print("\n".join(comparison(ablation)))
    except (OSError, ValueError, KeyError, StopIteration) as error:
        print(f"ablation_vs_paper: {args.ablation}: {error!r}; expected the ablation.json "
              f"of a leave-one-out `fastcifar ablate`", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
