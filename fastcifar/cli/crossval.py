"""`fastcifar crossval`: out-of-sample class probabilities of every training image."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..recipes import get_recipe
from ..sessions.crossval import crossval, default_out
from ..sessions.settings import DEFAULT_RECIPE
from ..train.inputs import COMPILE_MODES
from .options import add_run_options, positive, session_options
from .run import launch


def add_commands(commands) -> None:
    parser = commands.add_parser(
        "crossval", help="K-fold cross-validation: every training image's class probabilities "
                         "from networks that never trained on it (pred_probs.npy), to find "
                         "label errors")
    add_run_options(parser, "recipe name (see `fastcifar recipes`; default airbench94)")
    parser.add_argument("--folds", type=positive(int), default=5,
                        help="folds, stratified by class and drawn by --subset-seed: each "
                             "trained on the others' images, predicting its own (default 5)")
    parser.add_argument("--runs", type=positive(int), default=1,
                        help="runs (seeds) a fold, their probabilities averaged (default 1)")
    parser.add_argument("--test-subset", type=positive(int),
                        help="evaluate each fold's runs on a class-balanced subset of this "
                             "many test images")
    parser.add_argument("--epochs", type=positive(float), help="override the recipe's epochs")
    parser.add_argument("--compile", nargs="?", const=True, choices=COMPILE_MODES,
                        metavar="MODE", help="torch.compile each fold's network (as train)")
    parser.add_argument("--record-examples", action="store_true", default=None,
                        help="also record what every training image did (as train), and add "
                             "its in-sample AUM, forgetting, EL2N, confidence and variability, "
                             "averaged over the folds that trained on it, to predictions.csv")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction,
                        help="progress bars (default: on, except for speed runs on a GPU)")
    parser.add_argument("--gpus", type=positive(int), metavar="N",
                        help="start this command on N processes through torchrun, one per GPU: "
                             "each fold's runs shared out (with --device cpu: N CPU processes)")
    parser.add_argument("--out", type=Path,
                        help="the folder for fold-1/ ..., pred_probs.npy, labels.npy, "
                             "indices.npy, predictions.csv and summary.json (default "
                             "runs/crossval-<recipe>); run again to continue")
    parser.set_defaults(handler=cmd_crossval)


def cmd_crossval(args) -> int:
    if args.gpus is not None and "WORLD_SIZE" not in os.environ:
        return launch(args.gpus, args.device, args.argv)
    recipe = get_recipe(args.recipe or DEFAULT_RECIPE)
    out = args.out or default_out(recipe)
    try:
        crossval(recipe, folds=args.folds, out=out, progress=args.progress,
                 **session_options(args, recipe))
    except KeyboardInterrupt:
        print(f"fastcifar: interrupted; the same command continues the cross-validation in "
              f"{out} (finished folds and runs are kept)", file=sys.stderr)
        return 130
    return 0
