"""The `fastcifar` command."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import sys
import time
from pathlib import Path

from . import __version__
from .errors import InputError, RunFailed


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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

    train = commands.add_parser("train", help="train a recipe and report accuracy and time")
    train.add_argument("--recipe", default=None,
                       help="recipe name (see `fastcifar recipes`; default airbench94)")
    add_data_options(train)
    train.add_argument("--runs", type=_positive(int), default=None,
                       help="independent runs (seeds; default 1)")
    train.add_argument("--epochs", type=_positive(float), default=None,
                       help="override the recipe's epochs (fractions allowed)")
    train.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cuda, mps or cpu")
    train.add_argument("--seed", type=int, default=None,
                       help="seed of the first run (default 0); run i uses seed+i")
    add_precision_option(train)
    train.add_argument("--compile", action="store_true", default=None,
                       help="torch.compile the model, after one untimed warm-up run")
    train.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a recipe hyperparameter (repeatable), e.g. --set lr=10")
    train.add_argument("--out", type=Path, default=None,
                       help="run folder (default runs/<recipe>-<date>-<time>)")
    train.add_argument("--lr-from-finder", nargs="?", const=RUN_FINDER, default=None,
                       metavar="LR_FIND_JSON",
                       help="scale the recipe's lrs by the LR finder's recommendation: from "
                            "a saved `fastcifar lr-find` result, or, with no file, by running "
                            "the finder first (untimed; its result goes into the run folder)")
    train.add_argument("--checkpoints", action=argparse.BooleanOptionalAction, default=None,
                       help="save last.pt after every epoch and best.pt on the best validation "
                            "accuracy, so --resume can continue the run (default: on for the "
                            "general trainer's recipes, off for the speed runs)")
    train.add_argument("--resume", type=Path, default=None, metavar="DIR",
                       help="continue the interrupted run in this run folder from its last "
                            "checkpoint, with the settings it was started with")
    train.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                       help="progress bars for the epochs and the batches, with live loss and "
                            "accuracy (default: on, except for speed runs on a GPU, where "
                            "their host syncs could slow the timed run)")
    train.set_defaults(handler=cmd_train)

    recipes = commands.add_parser("recipes", help="list the recipes and their published targets")
    recipes.set_defaults(handler=cmd_recipes)

    flops = commands.add_parser(
        "flops", help="count the FLOPs of a run; with a peak, the time it takes at 100%% of it "
                      "and the share of it a recorded run achieved")
    flops.add_argument("--recipe", default=None,
                       help="recipe name (default: the --run's recipe, else airbench94)")
    flops.add_argument("--train-images", type=_positive(int), default=None,
                       help="training images per epoch (default 50000, or the --run's)")
    peak = flops.add_mutually_exclusive_group()
    peak.add_argument("--peak-tflops", type=float, default=None,
                      help="the device's peak TFLOP/s in the run's dtype (a data sheet's figure)")
    peak.add_argument("--measure-peak", action="store_true",
                      help="measure the peak as the TFLOP/s of a large matrix product on --device")
    flops.add_argument("--run", type=Path, default=None,
                       help="a run folder of `fastcifar train`: count with its config and data "
                            "size, and report the share of the peak its timed runs achieved")
    flops.add_argument("--device", default="auto",
                       help="where --measure-peak measures: auto (cuda > mps > cpu), cuda, mps "
                            "or cpu")
    flops.set_defaults(handler=cmd_flops)

    schedule = commands.add_parser(
        "schedule", help="plot a recipe's lr multiplier (and weight-averaging decay) per step")
    schedule.add_argument("recipe", help="recipe name (see `fastcifar recipes`)")
    schedule.add_argument("--out", type=Path, default=None,
                          help="the PNG to write (default <recipe>-schedule.png)")
    schedule.add_argument("--train-images", type=_positive(int), default=None,
                          help="training images per epoch (default 50000)")
    schedule.add_argument("--set", dest="overrides", action="append", default=[],
                          metavar="KEY=VALUE", help="override a recipe hyperparameter (repeatable)")
    schedule.set_defaults(handler=cmd_schedule)

    plot = commands.add_parser("plot", help="draw a run folder's loss, accuracy and lr curves")
    plot.add_argument("run", type=Path, help="a run folder written by `fastcifar train`")
    plot.add_argument("--out", type=Path, default=None, help="the PNG (default RUN/curves.png)")
    plot.set_defaults(handler=cmd_plot)

    lr_find = commands.add_parser(
        "lr-find", help="LR range test: train briefly while multiplying the recipe's lrs "
                        "from --start to --end, and suggest a multiplier")
    lr_find.add_argument("--recipe", default="airbench94",
                         help="recipe name (see `fastcifar recipes`)")
    add_data_options(lr_find)
    lr_find.add_argument("--device", default="auto",
                         help="auto (cuda > mps > cpu), cuda, mps or cpu")
    lr_find.add_argument("--seed", type=int, default=0,
                         help="seed of the model's init, the batches and --subset (default 0)")
    add_precision_option(lr_find)
    lr_find.add_argument("--start", type=float, default=0.01,
                         help="the first multiplier of the recipe's lrs (default 0.01)")
    lr_find.add_argument("--end", type=float, default=100.0,
                         help="the last multiplier, unless the loss diverges first (default 100)")
    lr_find.add_argument("--steps", type=int, default=100,
                         help="training steps in the sweep (default 100)")
    lr_find.add_argument("--set", dest="overrides", action="append", default=[],
                         metavar="KEY=VALUE", help="override a recipe hyperparameter (repeatable)")
    lr_find.add_argument("--out", type=Path, default=None,
                         help="folder for lr_find.json and lr_find.png "
                              "(default runs/lr-find-<recipe>-<date>-<time>)")
    lr_find.set_defaults(handler=cmd_lr_find)
    return parser


def add_precision_option(parser: argparse.ArgumentParser) -> None:
    from .train.device import PRECISION_CHOICES
    parser.add_argument("--precision", choices=PRECISION_CHOICES, default=None,
                        help="auto (default): the recipe's, half precision on CUDA and float32 "
                             "elsewhere; float32; or bfloat16: float32 weights, the forward "
                             "pass under bfloat16 autocast, on CUDA or a CPU (about twice as "
                             "fast as float32 on CPUs with AMX)")


def add_data_options(parser: argparse.ArgumentParser) -> None:
    """--data, --size, --image-size and --subset: what `train` and `lr-find` train on."""
    parser.add_argument("--data", default=None,
                        help="imagewoof or imagenette (fast.ai's, downloaded once into the "
                             "cache), cifar10, or an image-folder directory or .tar/.tar.gz/"
                             ".tgz/.zip archive with train/ and test/ (or val/) class folders; "
                             "default: the recipe's, mostly the official CIFAR-10")
    parser.add_argument("--size", choices=("160", "320", "full"), default=None,
                        help="with --data imagewoof or imagenette: which of fast.ai's archives "
                             "to download (default 160)")
    parser.add_argument("--image-size", type=_positive(int), default=None,
                        help="train on random-resized crops of this side and evaluate on "
                             "centre crops (default: the recipe's, 128 for Imagewoof)")
    parser.add_argument("--subset", type=_positive(int), default=None,
                        help="use a class-balanced subset of this many training images")


def _positive(kind):
    """An argparse type: a number of `kind` (int or float) greater than zero."""
    noun = "a positive integer" if kind is int else "a positive number"

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {noun}, got {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"expected {noun}, got {text}")
        return value

    return parse


def cmd_recipes(args) -> int:
    from .recipes import RECIPES

    rows = [(name, r.target.text, r.summary) for name, r in RECIPES.items()]
    rows.insert(0, ("recipe", "published target (official dataset)", "what it is"))
    name_width = max(len(r[0]) for r in rows)
    target_width = max(len(r[1]) for r in rows)
    for name, target, summary in rows:
        print(f"{name.ljust(name_width)}  {target.ljust(target_width)}  {summary}")
    return 0


RUN_FINDER = "run the finder"  # --lr-from-finder given without a file

# The options that define a run: config.json records them and --resume restores them.
RUN_DEFAULTS = {"recipe": "airbench94", "data": None, "size": "160", "image_size": None,
                "runs": 1, "epochs": None, "subset": None, "seed": 0, "compile": False,
                "overrides": [], "checkpoints": None, "lr_from_finder": None,
                "precision": "auto"}


def _run_settings(args) -> dict:
    """The run's defining options: from the command line, or from the folder --resume names
    (where giving any of them again is an error: the run continues as it started)."""
    given = {k: getattr(args, k) for k in RUN_DEFAULTS if getattr(args, k) not in (None, [])}
    if args.resume is None:
        return {**RUN_DEFAULTS, **given}
    if given:
        flags = ", ".join(f"--{k.replace('_', '-')}" for k in given).replace("--overrides", "--set")
        raise InputError(f"--resume {args.resume} continues that run with its own settings; "
                         f"drop {flags}")
    if args.out is not None:
        raise InputError("--resume writes into the folder it resumes; drop --out")
    import json
    try:
        saved = json.loads((args.resume / "config.json").read_text())
        settings = {k: saved.get(k, RUN_DEFAULTS[k]) for k in RUN_DEFAULTS}
        settings.update(config=saved["config"], device=saved["device"])
    except (OSError, ValueError, KeyError) as e:
        raise InputError(f"--resume {args.resume}: expected a run folder written by "
                         f"`fastcifar train` (its config.json could not be read: {e})") from None
    return settings


def _checkpoint_folder(out, runs: int, run: int):
    """One run: the run folder itself; several: a folder per run inside it."""
    from .train.checkpoint import CheckpointFolder
    return CheckpointFolder(out.path if runs == 1 else out.path / f"run-{run}")


def cmd_train(args) -> int:
    import torch

    from .bench.stats import summarize
    from .recipes import get_recipe, override
    from .recipes.base import config_from_dict
    from .report.records import RunFolder
    from .report.table import Table
    from .train.device import configure_backend, device_name, resolve_device
    from .train.loop import RunResult, train_run

    run = _run_settings(args)
    recipe = get_recipe(run["recipe"])
    if args.resume is not None:
        config = config_from_dict(recipe.config, run["config"], f"--resume {args.resume}")
        device = resolve_device(run["device"] if args.device == "auto" else args.device)
    else:
        config = override(recipe.config, run["overrides"])
        if run["epochs"] is not None:
            config = dataclasses.replace(config, epochs=run["epochs"])
        if run["image_size"] is not None:
            config = dataclasses.replace(config, image_size=run["image_size"])
        run["data"] = run["data"] or recipe.default_data
        device = resolve_device(args.device)
    config.validate()
    checkpoints = (recipe.checkpoints if run["checkpoints"] is None else run["checkpoints"])
    configure_backend(device)

    dataset, data, load_seconds = load_device_data(recipe, config, run["data"], run["size"],
                                                   run["subset"], run["seed"], device,
                                                   run["precision"])
    print(f"recipe: {recipe.name} on {device_name(device)}, torch {torch.__version__}")

    results = []
    if args.resume is not None:
        out = RunFolder(args.resume)
        results = [RunResult(**r) for r in _read_summary_runs(out.path)]
        # the finished runs' rows; the interrupted run's come from its checkpoint, below
        out.metric_rows = [r for r in out.read_metrics() if r["run"] <= len(results)]
        print(f"resuming {out.path}: {len(results)} of {run['runs']} run(s) finished")
    else:
        out = RunFolder(args.out or
                        Path("runs") / f"{recipe.name}-{time.strftime('%Y%m%d-%H%M%S')}")
        if args.lr_from_finder is not None:
            from .train.lr_finder import lr_from_finder
            saved = None if args.lr_from_finder == RUN_FINDER else Path(args.lr_from_finder)
            config, message = lr_from_finder(saved, recipe, config, data, device, run["seed"],
                                             out=out.path / "lr_find",
                                             precision=run["precision"])
            print(message)
        out.write_json("config.json", {
            "recipe": recipe.name, "config": config, "data": run["data"] or "cifar10",
            "size": run["size"], "subset": run["subset"], "device": str(device),
            "seed": run["seed"], "precision": run["precision"],
            "runs": run["runs"], "compile": run["compile"], "checkpoints": checkpoints,
            "lr_from_finder": run["lr_from_finder"]})
        for source in recipe_sources(recipe):
            out.copy_source(source)

    model_transform, compile_seconds = None, 0.0
    if run["compile"]:
        model_transform = torch.compile
        t0 = time.perf_counter()
        train_run(recipe, config, data, device, seed=run["seed"] - 1,
                  model_transform=model_transform, precision=run["precision"])
        compile_seconds = time.perf_counter() - t0
        print(f"compile warm-up run: {compile_seconds:.1f} s (not timed)")

    progress = args.progress
    if progress is None:
        progress = device.type != "cuda" or recipe.progress_on_gpu
    table = Table([("run", "d"), ("epoch", ""), ("train_loss", ".4f"), ("train_acc", ".4f"),
                   ("val_acc", ".4f"), ("val_top5", ".4f"), ("tta_val_acc", ".4f"),
                   ("time_seconds", ".2f")])
    table.header()
    for i in range(len(results), run["runs"]):
        seed = run["seed"] + i

        def on_epoch(r, run=i + 1, seed=seed):
            table.row({"run": run, "epoch": str(r.epoch), "train_loss": r.train_loss,
                       "train_acc": r.train_accuracy, "val_acc": r.val_accuracy,
                       "val_top5": r.val_top5, "time_seconds": r.train_seconds})
            out.add_metrics({"run": run, "seed": seed, **dataclasses.asdict(r)})

        folder = _checkpoint_folder(out, run["runs"], i + 1) if checkpoints else None
        if folder is not None and (state := folder.resume_state()) is not None:
            out.set_metrics([*out.metric_rows,
                             *({"run": i + 1, "seed": seed, **r} for r in state["records"])])
            print(f"run {i + 1}: continuing from epoch {state['epoch']} "
                  f"({folder.path / 'last.pt'})")
        result = train_run(recipe, config, data, device, seed, on_epoch=on_epoch,
                           model_transform=model_transform, progress=progress,
                           checkpoints=folder, precision=run["precision"])
        table.row({"run": i + 1, "epoch": "eval", "tta_val_acc": result.accuracy,
                   "time_seconds": result.train_seconds})
        results.append(result)
        out.write_json("summary.json", _summary(recipe, run, dataset, device, results,
                                                load_seconds, compile_seconds, summarize))

    accuracy = summarize([r.accuracy for r in results])
    seconds = summarize([r.train_seconds for r in results])
    print(f"\n{recipe.name}: accuracy {_percent(accuracy)} over {accuracy.n} run(s); "
          f"timed seconds per run {seconds.mean:.2f}")
    print(f"run folder: {out.path}")
    return 0


def _read_summary_runs(path: Path) -> list[dict]:
    """The finished runs recorded in a run folder's summary.json (none if it has none)."""
    import json
    try:
        runs = json.loads((path / "summary.json").read_text())["runs"]
    except FileNotFoundError:
        return []
    except (OSError, ValueError, KeyError) as e:
        raise InputError(f"--resume {path}: its summary.json is unreadable ({e})") from None
    return [{k: r[k] for k in ("seed", "accuracy", "accuracy_no_tta", "train_seconds",
                               "seconds_by_part")} for r in runs]


def cmd_flops(args) -> int:
    from .bench.flops import (TEST_IMAGES, TRAIN_IMAGES, RecordedRun, achieved_tflops,
                              lower_bound_seconds, measure_peak_tflops, run_flops,
                              share_of_peak)
    from .recipes import get_recipe
    from .train.device import compute_dtype, device_name, resolve_device

    if args.peak_tflops is not None and not args.peak_tflops > 0:
        raise InputError(f"--peak-tflops must be a positive number, got {args.peak_tflops}")
    recorded = RecordedRun.read(args.run) if args.run is not None else None
    recipe = get_recipe(args.recipe or (recorded.recipe if recorded else "airbench94"))
    if recorded is None:
        config, test_images = recipe.config, TEST_IMAGES
        train_images = args.train_images or TRAIN_IMAGES
    else:
        config, test_images = recorded.recipe_config(recipe), recorded.test_images
        train_images = args.train_images or recorded.train_images

    flops = run_flops(recipe, config, train_images, test_images)
    as_published = (config == recipe.config and train_images == TRAIN_IMAGES
                    and test_images == TEST_IMAGES and recipe.target.pflops is not None)
    published = f"  (published: {recipe.target.pflops:g})" if as_published else ""
    print(f"{recipe.name}: {flops.steps} steps of {flops.batch_size} images "
          f"({config.epochs:g} epochs of {train_images} training images)")
    for part, value, extra in (
            ("training (forward + backward)", flops.train, ""),
            (f"final eval ({test_images} images x {flops.tta_forwards} forwards)", flops.eval, ""),
            ("total", flops.total, published)):
        print(f"  {part:<44} {value / 1e15:9.4g} PFLOPs{extra}")

    peak, peak_device = args.peak_tflops, None
    if args.measure_peak:
        device = resolve_device(args.device)
        peak, peak_device = measure_peak_tflops(device), device_name(device)
        print(f"peak: {peak:.3g} TFLOP/s measured on {peak_device} "
              f"({str(compute_dtype(device)).removeprefix('torch.')} matrix product)")
    if peak is not None:
        print(f"at 100% of {peak:.3g} TFLOP/s a run takes at least "
              f"{lower_bound_seconds(flops.total, peak):.3g} s")
    if recorded is not None:
        seconds = sum(recorded.train_seconds) / len(recorded.train_seconds)
        share = (f", {share_of_peak(flops.total, seconds, peak):.1%} of the peak"
                 if peak is not None else "")
        print(f"run {recorded.path} on {recorded.device}: {len(recorded.train_seconds)} run(s) "
              f"of {seconds:.3g} timed s on average, "
              f"{achieved_tflops(flops.total, seconds):.3g} TFLOP/s{share}")
        if peak_device is not None and peak_device != recorded.device:
            print(f"note: the peak was measured on {peak_device}, the run on {recorded.device}")
    return 0


def cmd_schedule(args) -> int:
    from .recipes import get_recipe, override
    from .bench.flops import TRAIN_IMAGES
    from .report.plots import save_png, schedule_figure

    recipe = get_recipe(args.recipe)
    out = args.out or Path(f"{recipe.name}-schedule.png")
    if out.suffix.lower() != ".png":
        raise InputError(f"--out {out}: expected a .png file name")
    figure = schedule_figure(recipe, override(recipe.config, args.overrides),
                             args.train_images or TRAIN_IMAGES)
    save_png(figure, out)
    print(f"wrote {out}")
    return 0


def cmd_plot(args) -> int:
    from .report.plots import metrics_figure, save_png
    from .report.records import RunFolder

    if not (args.run / "metrics.jsonl").is_file():
        raise InputError(f"{args.run}: no metrics.jsonl there; expected a run folder written "
                         f"by `fastcifar train` that has finished at least one epoch")
    try:
        rows = RunFolder(args.run).read_metrics()
    except ValueError as e:
        raise InputError(f"{args.run}/metrics.jsonl is not valid JSON lines: {e}") from None
    out = args.out or args.run / "curves.png"
    if out.suffix.lower() != ".png":
        raise InputError(f"--out {out}: expected a .png file name")
    save_png(metrics_figure(rows), out)
    print(f"wrote {out}")
    return 0


def cmd_lr_find(args) -> int:
    import torch

    from .recipes import get_recipe, override
    from .train.device import configure_backend, device_name, resolve_device
    from .train.lr_finder import check_sweep, find_lr, summary_lines, write_result

    recipe = get_recipe(args.recipe)
    config = override(recipe.config, args.overrides)
    config.validate()
    check_sweep(args.start, args.end, args.steps)
    device = resolve_device(args.device)
    configure_backend(device)
    if args.image_size is not None:
        config = dataclasses.replace(config, image_size=args.image_size)
    precision = args.precision or "auto"
    dataset, data, _ = load_device_data(recipe, config, args.data, args.size or "160",
                                        args.subset, args.seed, device, precision)
    print(f"recipe: {recipe.name} on {device_name(device)}, torch {torch.__version__}")
    print(f"sweeping {args.steps} steps of {config.batch_size} images, multipliers "
          f"{args.start:g} to {args.end:g} of the recipe's lrs")

    result = find_lr(recipe, config, data, device, args.seed, args.start, args.end, args.steps,
                     progress=device.type != "cuda", precision=precision)
    result.settings.update(data=args.data or recipe.default_data or "cifar10",
                           subset=args.subset)
    out = args.out or Path("runs") / f"lr-find-{recipe.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    written = write_result(result, out)
    print(f"sweep: {result.stopped}")
    for line in summary_lines(result):
        print(line)
    print(f"wrote {', '.join(str(p) for p in written)}")
    return 0


def load_device_data(recipe, config, data: str | None, size: str, subset: int | None,
                     seed: int, device, precision: str = "auto"):
    """(the dataset, its DeviceData on `device`, the seconds it took): `--data` (default:
    the recipe's) loaded, resized for the config's image_size, cut to a `--subset` drawn
    with `seed` if given, and a line printed saying what was loaded."""
    from .data import load_dataset, stored_size
    from .train.loop import DeviceData

    t0 = time.perf_counter()
    dataset = load_dataset(data or recipe.default_data, size=size,
                           resize=stored_size(config.image_size) if config.image_size else None)
    if subset is not None:
        dataset = dataset.with_train_subset(subset, seed=seed)
    from .train.device import choose_precision
    _, half = choose_precision(precision, device, recipe.mixed_precision)
    device_data = DeviceData.from_dataset(dataset, device, config.image_size, half=half)
    seconds = time.perf_counter() - t0
    print(f"data: {dataset.name}, {len(dataset.train_images)} train / "
          f"{len(dataset.test_images)} test images, {len(dataset.classes)} classes "
          f"(loaded in {seconds:.1f} s, not timed)")
    return dataset, device_data, seconds


def recipe_sources(recipe) -> list[Path]:
    """The recipe's file and those of the recipes it inherits from (a variant's file holds
    only what it changes), so the run folder has every hyperparameter's source."""
    from .recipes.base import Recipe

    files = []
    for cls in type(recipe).__mro__:
        if issubclass(cls, Recipe) and cls is not Recipe:
            path = Path(inspect.getfile(cls))
            if path not in files:
                files.append(path)
    return files


def _percent(s) -> str:
    if s.n == 1:
        return f"{100 * s.mean:.2f}%"
    return (f"mean {100 * s.mean:.2f}%, std {100 * s.std:.2f}, 95% CI "
            f"[{100 * s.ci95_low:.2f}, {100 * s.ci95_high:.2f}], min {100 * s.min:.2f}, "
            f"max {100 * s.max:.2f}")


def _summary(recipe, run, dataset, device, results, load_seconds, compile_seconds, summarize):
    import torch

    from .train.device import device_name

    accuracy = summarize([r.accuracy for r in results])
    seconds = summarize([r.train_seconds for r in results])
    return {
        "recipe": recipe.name,
        "target": dataclasses.asdict(recipe.target),
        "data": run["data"] or "cifar10",
        "train_images": len(dataset.train_images),
        "test_images": len(dataset.test_images),
        "device": device_name(device),
        "torch": torch.__version__,
        "compile": run["compile"],
        "precision": run["precision"],
        "runs": [{"seed": r.seed, "accuracy": r.accuracy, "accuracy_no_tta": r.accuracy_no_tta,
                  "train_seconds": r.train_seconds, "seconds_by_part": r.seconds_by_part}
                 for r in results],
        "accuracy_mean": accuracy.mean,
        "accuracy_std": accuracy.std,
        "accuracy": accuracy.as_dict(),
        "train_seconds_mean": seconds.mean,
        "train_seconds": seconds.as_dict(),
        "untimed_seconds": {"data_loading": load_seconds, "compile_warmup": compile_seconds},
    }
