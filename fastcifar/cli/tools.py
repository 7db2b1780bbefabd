"""`fastcifar recipes`, `flops`, `schedule` and `plot`: looking at recipes and runs."""

from __future__ import annotations

from pathlib import Path

from ..bench.flops import RecordedRun, flops_report, measure_peak_tflops, peak_dtype
from ..data.cifar10 import TEST_IMAGES, TRAIN_IMAGES
from ..errors import InputError
from ..recipes import describe, folder_name, get_recipe, override, recipe_table
from ..report.example_scores import write_report
from ..report.plots import metrics_figure, save_png, schedule_figure
from ..report.records import read_metric_rows, recipe_of_run
from ..sessions.settings import DEFAULT_RECIPE
from ..train.device import device_name, resolve_device
from ..train.setup import set_up_without_data
from .options import positive


def add_commands(commands) -> None:
    examples = commands.add_parser(
        "examples", help="score every training example of a run recorded with "
                         "--record-examples: forgetting, EL2N, AUM, the data map")
    examples.add_argument("run", type=Path, help="the run folder (or its examples.npz)")
    examples.add_argument("--out", type=Path, help="folder for scores.csv and data_map.png "
                                                   "(default: the run folder)")
    examples.add_argument("--el2n-epoch", type=positive(int),
                          help="the epoch whose errors give EL2N (default a fifth of the way)")
    examples.add_argument("--per-class", type=positive(int), default=5,
                          help="hardest images listed per class (default 5)")
    examples.set_defaults(handler=cmd_examples)

    recipes = commands.add_parser("recipes", help="list the recipes and their published targets")
    recipes.add_argument("--show", metavar="RECIPE",
                         help="print this recipe's full config: every hyperparameter, its "
                              "value and its unit")
    recipes.set_defaults(handler=cmd_recipes)

    flops = commands.add_parser("flops", help="a run's FLOPs, its time at 100%% of a peak, "
                                              "and the share of the peak a recorded run used")
    flops.add_argument("--recipe", help="recipe name (default: the --run's, else airbench94)")
    flops.add_argument("--train-images", type=positive(int),
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
    schedule.add_argument("--train-images", type=positive(int),
                          help="training images per epoch (default 50000)")
    schedule.add_argument("--set", dest="overrides", action="append", default=[],
                          metavar="KEY=VALUE", help="override a recipe hyperparameter (repeatable)")
    schedule.set_defaults(handler=cmd_schedule)

    plot = commands.add_parser("plot", help="draw a run folder's loss, accuracy and lr curves")
    plot.add_argument("run", type=Path, help="a run folder written by `fastcifar train`")
    plot.add_argument("--out", type=Path, help="the PNG (default RUN/curves.png)")
    plot.set_defaults(handler=cmd_plot)


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
    if recorded and not args.recipe:
        recipe = recipe_of_run(recorded.path, {"recipe": recorded.recipe,
                                               "recipe_file": recorded.recipe_file})
    else:
        recipe = get_recipe(args.recipe or DEFAULT_RECIPE)
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


def cmd_examples(args) -> int:
    out = args.out or (args.run if args.run.is_dir() else args.run.parent)
    _, lines = write_report(args.run, out, args.el2n_epoch, args.per_class)
    print("\n".join(lines))
    return 0


def cmd_schedule(args) -> int:
    recipe = get_recipe(args.recipe)
    out = args.out or Path(f"{folder_name(recipe)}-schedule.png")
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
