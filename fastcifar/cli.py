"""The `fastcifar` command: argument parsing, then one call of the Python API."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .bench.flops import RecordedRun, flops_report, measure_peak_tflops, peak_dtype
from .data.cifar10 import TEST_IMAGES, TRAIN_IMAGES
from .errors import InputError, RunFailed
from .recipes import describe, get_recipe, override, parse_assignments, recipe_table
from .report.plots import metrics_figure, save_png, schedule_figure
from .report.records import read_metric_rows
from .train.device import PRECISION_CHOICES, device_name, resolve_device
from .train.session import FINDER, SETTINGS, lr_find, resume, train
from .train.setup import set_up_without_data
from .version import __version__


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (InputError, RunFailed) as e:
        print(f"fastcifar: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("fastcifar: interrupted", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fastcifar", description=__doc__)
    parser.add_argument("--version", action="version", version=f"fastcifar {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    train_ = commands.add_parser("train", help="train a recipe and report accuracy and time")
    add_run_options(train_, "recipe name (see `fastcifar recipes`; default airbench94)")
    train_.add_argument("--runs", type=_positive(int), help="independent runs (seeds; default 1)")
    train_.add_argument("--test-subset", type=_positive(int),
                        help="evaluate on a class-balanced subset of this many test images")
    train_.add_argument("--epochs", type=_positive(float),
                        help="override the recipe's epochs (fractions allowed)")
    train_.add_argument("--compile", action="store_true", default=None,
                        help="torch.compile the model, after one untimed warm-up run")
    train_.add_argument("--out", type=Path, help="run folder (default runs/<recipe>-<date>-<time>)")
    train_.add_argument("--lr-from-finder", nargs="?", const=FINDER, metavar="LR_FIND_JSON",
                        help="scale the recipe's lrs by the LR finder's recommendation: from a "
                             "saved `fastcifar lr-find` result, or, with no file, by running "
                             "the finder first (untimed; its result goes into the run folder)")
    train_.add_argument("--checkpoints", action=argparse.BooleanOptionalAction,
                        help="save last.pt after every epoch and best.pt on the best "
                             "validation accuracy, so --resume can continue the run (default: "
                             "on for the general trainer's recipes, off for the speed runs)")
    train_.add_argument("--resume", type=Path, metavar="DIR",
                        help="continue the interrupted run in this run folder from its last "
                             "checkpoint, with the settings it was started with")
    train_.add_argument("--progress", action=argparse.BooleanOptionalAction,
                        help="progress bars (default: on, except for timed speed runs on a GPU)")
    train_.set_defaults(handler=cmd_train)

    recipes = commands.add_parser("recipes", help="list the recipes and their published targets")
    recipes.add_argument("--show", metavar="RECIPE",
                         help="print this recipe's full config: every hyperparameter, its "
                              "value and its unit")
    recipes.set_defaults(handler=cmd_recipes)

    flops = commands.add_parser("flops", help="a run's FLOPs, its time at 100%% of a peak, "
                                              "and the share of the peak a recorded run used")
    flops.add_argument("--recipe", help="recipe name (default: the --run's, else airbench94)")
    flops.add_argument("--train-images", type=_positive(int),
                       help="training images per epoch (default 50000, or the --run's)")
    peak = flops.add_mutually_exclusive_group()
    peak.add_argument("--peak-tflops", type=float,
                      help="the device's peak TFLOP/s in the run's dtype (a data sheet's figure)")
    peak.add_argument("--measure-peak", action="store_true",
                      help="measure the peak as the TFLOP/s of a large matrix product on --device")
    flops.add_argument("--run", type=Path,
                       help="a run folder of `fastcifar train`: count with its config and data "
                            "size, and report the share of the peak its timed runs achieved")
    flops.add_argument("--device", default="auto",
                       help="where --measure-peak measures: auto (cuda > mps > cpu), cuda, mps or cpu")
    flops.set_defaults(handler=cmd_flops)

    schedule = commands.add_parser(
        "schedule", help="plot a recipe's lr multiplier (and weight-averaging decay) per step")
    schedule.add_argument("recipe", help="recipe name (see `fastcifar recipes`)")
    schedule.add_argument("--out", type=Path, help="the PNG to write (default <recipe>-schedule.png)")
    schedule.add_argument("--train-images", type=_positive(int),
                          help="training images per epoch (default 50000)")
    schedule.add_argument("--set", dest="overrides", action="append", default=[],
                          metavar="KEY=VALUE", help="override a recipe hyperparameter (repeatable)")
    schedule.set_defaults(handler=cmd_schedule)

    plot = commands.add_parser("plot", help="draw a run folder's loss, accuracy and lr curves")
    plot.add_argument("run", type=Path, help="a run folder written by `fastcifar train`")
    plot.add_argument("--out", type=Path, help="the PNG (default RUN/curves.png)")
    plot.set_defaults(handler=cmd_plot)

    finder = commands.add_parser("lr-find", help="LR range test: sweep the recipe's lrs "
                                                 "from --start to --end times, suggest one")
    add_run_options(finder, "recipe name (see `fastcifar recipes`)")
    finder.add_argument("--start", type=float, default=0.01,
                        help="the first multiplier of the recipe's lrs (default 0.01)")
    finder.add_argument("--end", type=float, default=100.0,
                        help="the last multiplier, unless the loss diverges first (default 100)")
    finder.add_argument("--steps", type=int, default=100,
                        help="training steps in the sweep (default 100)")
    finder.add_argument("--out", type=Path, help="folder for lr_find.json and lr_find.png "
                                                 "(default runs/lr-find-<recipe>-<date>-<time>)")
    finder.set_defaults(handler=cmd_lr_find)
    return parser


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
    parser.add_argument("--image-size", type=_positive(int),
                        help="train on random-resized crops of this side and evaluate on centre "
                             "crops (general-trainer recipes; default the recipe's)")
    parser.add_argument("--subset", type=_positive(int),
                        help="use a class-balanced subset of this many training images")
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


def _positive(kind):
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


def _session_options(args, recipe) -> dict:
    """The options `train` and `lr-find` pass on: `--set` and `--image-size` as recipe
    hyperparameters, the others by name, left out where not given."""
    options = parse_assignments(recipe.config, args.overrides)
    if args.image_size is not None:
        options["image_size"] = args.image_size
    for name in ("data", "size", "subset", "test_subset", "seed", "precision", "runs", "epochs",
                 "compile", "checkpoints", "lr_from_finder"):
        if getattr(args, name, None) is not None:
            options[name] = getattr(args, name)
    return {"device": args.device, **options}


def cmd_train(args) -> int:
    if args.resume is not None:
        given = [k for k in (*SETTINGS, "image_size", "epochs", "overrides", "out")
                 if getattr(args, k, None) not in (None, [])]
        if given:
            flags = ", ".join(f"--{k.replace('_', '-')}" for k in given)
            raise InputError(f"--resume {args.resume} continues that run with its own "
                             f"settings; drop {flags.replace('--overrides', '--set')}")
        resume(args.resume, device=args.device, progress=args.progress)
        return 0
    recipe = get_recipe(args.recipe or SETTINGS["recipe"])
    out = args.out or Path("runs") / f"{recipe.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        train(recipe.name, out=out, progress=args.progress, **_session_options(args, recipe))
    except KeyboardInterrupt:
        if (out / "config.json").exists():
            print(f"fastcifar: interrupted; `fastcifar train --resume {out}` continues "
                  f"(finished runs are kept)", file=sys.stderr)
            return 130
        raise
    return 0


def cmd_lr_find(args) -> int:
    recipe = get_recipe(args.recipe or SETTINGS["recipe"])
    out = args.out or Path("runs") / f"lr-find-{recipe.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    lr_find(recipe.name, start=args.start, end=args.end, steps=args.steps, out=out,
            **_session_options(args, recipe))
    return 0


def cmd_recipes(args) -> int:
    if args.show:
        print("\n".join(describe(get_recipe(args.show))))
        return 0
    print("\n".join(recipe_table()))
    return 0


def cmd_flops(args) -> int:
    if args.peak_tflops is not None and not 0 < args.peak_tflops < float("inf"):
        raise InputError(f"--peak-tflops must be a positive number, got {args.peak_tflops}")
    recorded = RecordedRun.read(args.run) if args.run is not None else None
    recipe = get_recipe(args.recipe or (recorded.recipe if recorded else "airbench94"))
    config = recorded.recipe_config(recipe) if recorded else recipe.config
    train_images = args.train_images or (recorded.train_images if recorded else TRAIN_IMAGES)
    peak, peak_device = args.peak_tflops, None
    if args.measure_peak:
        device = resolve_device(args.device)
        dtype = peak_dtype(recorded.precision if recorded else "auto", device)
        peak, peak_device = measure_peak_tflops(device, dtype=dtype), device_name(device)
        print(f"peak: {peak:.3g} TFLOP/s measured on {peak_device} ({str(dtype)[6:]} "
              f"matrix product, the run's precision)")
    lines = flops_report(recipe, config, train_images,
                         recorded.test_images if recorded else TEST_IMAGES, peak, peak_device,
                         recorded)
    print("\n".join(lines))
    return 0


def cmd_schedule(args) -> int:
    recipe = get_recipe(args.recipe)
    out = args.out or Path(f"{recipe.name}-schedule.png")
    config = override(recipe.config, args.overrides)
    images = args.train_images or TRAIN_IMAGES
    run = set_up_without_data(recipe, config, images)
    save_png(schedule_figure(recipe, config, run, images), out)
    print(f"wrote {out}")
    return 0


def cmd_plot(args) -> int:
    rows, title, final = read_metric_rows(args.run)
    out = args.out or args.run / "curves.png"
    save_png(metrics_figure(rows, title, final), out)
    print(f"wrote {out}")
    return 0
