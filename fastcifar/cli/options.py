"""What the subcommands share: the run options of `train` and `lr-find`, and number types."""

from __future__ import annotations

import argparse

from ..recipes import parse_assignments
from ..recipes.fields import checked_values
from ..report.trackers import TRACKERS
from ..sessions.settings import SessionSettings
from ..train.device import PRECISION_CHOICES


def add_run_options(parser: argparse.ArgumentParser, recipe_help: str) -> None:
    """What `train` and `lr-find` share: the recipe, its data, device, seed, precision."""
    parser.add_argument("--recipe", help=recipe_help)
    parser.add_argument("--data", help="imagewoof or imagenette (fast.ai's, downloaded once into "
                        "the cache), cifar10, or an image-folder directory or .tar/.tar.gz/"
                        ".tgz/.zip archive with train/ and test/ (or val/) class folders; "
                        "default: the recipe's, mostly the official CIFAR-10")
    parser.add_argument("--size", choices=("160", "320", "full"),
                        help="with --data imagewoof or imagenette: which of fast.ai's archives "
                             "to download (default 160)")
    parser.add_argument("--image-size", type=positive(int),
                        help="the side of the square images trained on: images of another "
                             "size are scaled and centre-cropped to it (default the recipe's: "
                             "32, or 128 crops for the general trainer)")
    parser.add_argument("--subset", type=positive(int),
                        help="use a class-balanced subset of this many training images")
    parser.add_argument("--subset-seed", type=at_least_zero,
                        help="the seed that draws --subset and --test-subset, the same for "
                             "every run (default 0)")
    parser.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cuda, mps or cpu")
    parser.add_argument("--seed", type=int, help="seed of the first run (default 0); run i: seed+i")
    parser.add_argument("--precision", choices=PRECISION_CHOICES,
                        help="auto (default): the recipe's, half precision on CUDA and float32 "
                             "elsewhere; float32; or bfloat16: float32 weights, the forward pass "
                             "under bfloat16 autocast, on CUDA or a CPU (about twice as fast as "
                             "float32 on CPUs with AMX)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="override a recipe hyperparameter (repeatable), "
                                                  "e.g. --set lr=10")


def add_train_options(parser: argparse.ArgumentParser) -> None:
    """`train`'s own: seeds fixed apart from --seed (train/seeds.py), the same for every
    run, and an experiment tracker."""
    parser.add_argument("--tracker", choices=TRACKERS,
                        help="also send the settings, every epoch and every run's results "
                             "to Weights & Biases or MLflow (pip install fastcifar[wandb] "
                             "or fastcifar[mlflow])")
    for name, what in (("init", "the network's initialisation (and the other draws training "
                                "makes: whitening images, dropout, cutmix)"),
                       ("order", "the order of the training images"),
                       ("augment", "the training images' augmentation")):
        parser.add_argument(f"--{name}-seed", type=at_least_zero,
                            help=f"fix the seed of {what} apart from --seed, the same for "
                                 f"every run (default: following --seed)")


def positive(kind):
    """An argparse type: a finite number of `kind` (int or float) greater than zero."""
    noun = "a positive integer" if kind is int else "a positive number"

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {noun}, got {text!r}") from None
        if not 0 < value < float("inf"):
            raise argparse.ArgumentTypeError(f"expected {noun}, got {text}")
        return value

    return parse


def at_least_zero(text: str) -> int:
    """An argparse type: an integer of 0 or more (a seed numpy's generators take)."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer of 0 or more, got {text!r}")
    return value


def session_options(args, recipe) -> dict:
    """The options `train` and `lr-find` pass on: `--set` and `--image-size` as recipe
    hyperparameters, the others by name, left out where not given."""
    options = parse_assignments(recipe.config, args.overrides)
    if args.image_size is not None:
        options.update(checked_values(recipe.config, {"image_size": args.image_size},
                                      "--image-size"))
    for name in (*SessionSettings.names(), "epochs"):
        if name != "recipe" and getattr(args, name, None) is not None:
            options[name] = getattr(args, name)
    return {"device": args.device, **options}


