"""`fastcifar train` and `fastcifar lr-find`."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from ..errors import InputError
from ..recipes import folder_name, get_recipe
from ..train.inputs import COMPILE_MODES
from ..api import lr_find
from ..sessions.resume import resume
from ..sessions.session import FINDER, train
from ..sessions.settings import DEFAULT_RECIPE, SessionSettings
from ..sessions.tune import OBJECTIVES, PRUNERS
from .options import add_run_options, add_train_options, positive, session_options


# `train --quick`: a subset and epochs that train in about a minute on a 2-core CPU (the
# first run on a dataset also decodes it once, about 20 s for CIFAR-10's 60,000 images),
# in batches of at most QUICK_BATCH: 4 steps an epoch.
QUICK = {"subset": 2048, "test_subset": 1000, "epochs": 2}
QUICK_BATCH = 512


def add_commands(commands) -> None:
    train_ = commands.add_parser("train", help="train a recipe and report accuracy and time")
    add_run_options(train_, "recipe name (see `fastcifar recipes`; default airbench94)")
    add_train_options(train_)
    train_.add_argument("--runs", type=positive(int), help="independent runs (seeds; default 1)")
    train_.add_argument("--test-subset", type=positive(int),
                        help="evaluate on a class-balanced subset of this many test images")
    train_.add_argument("--epochs", type=positive(float),
                        help="override the recipe's epochs (fractions allowed)")
    train_.add_argument("--compile", nargs="?", const=True, choices=COMPILE_MODES,
                        metavar="MODE", help="torch.compile the model, after one untimed "
                        "warm-up run; MODE is torch.compile's (max-autotune, as the airbench "
                        "references compile: slower to compile, faster to run)")
    train_.add_argument("--out", type=Path, help="run folder (default runs/<recipe>-<date>-<time>)")
    train_.add_argument("--lr-from-finder", nargs="?", const=FINDER, metavar="LR_FIND_JSON",
                        help="scale the recipe's lrs by the LR finder's recommendation: from a "
                             "saved `fastcifar lr-find` result, or, with no file, by running "
                             "the finder first (untimed; its result goes into the run folder)")
    train_.add_argument("--checkpoints", action=argparse.BooleanOptionalAction,
                        help="save last.pt after every epoch and best.pt on the best "
                             "validation accuracy, so --resume can continue the run (default: "
                             "on for the general trainer's recipes, off for the speed runs)")
    train_.add_argument("--gpus", type=positive(int), metavar="N",
                        help="start this command on N processes of this machine through "
                             "torch.distributed.run (torchrun), one per GPU: a battery shared "
                             "out, or with --ddp each run data-parallel (with --device cpu: N "
                             "CPU processes)")
    train_.add_argument("--ddp", action="store_true", default=None,
                        help="under torchrun: train each run data-parallel over the ranks "
                             "(DistributedDataParallel; each rank a share of every batch; "
                             "--set sync_bn=true for BatchNorm over the global batch) instead "
                             "of giving each rank its own runs")
    train_.add_argument("--record-examples", action="store_true", default=None,
                        help="keep what every training image did in every epoch (loss, "
                             "right or wrong, margin, error) and the test images' final "
                             "logits, in the run folder's examples.npz (`fastcifar examples "
                             "RUN` scores them)")
    train_.add_argument("--resume", type=Path, metavar="DIR",
                        help="continue the interrupted run in this run folder from its last "
                             "checkpoint, with the settings it was started with")
    train_.add_argument("--progress", action=argparse.BooleanOptionalAction,
                        help="progress bars (default: on, except for timed speed runs on a GPU)")
    train_.add_argument("--quick", action="store_true",
                        help="a first look, about a minute on a CPU: "
                             + " ".join(f"--{k.replace('_', '-')} {v:g}"
                                        for k, v in QUICK.items())
                             + f" and batches of at most {QUICK_BATCH} (unless given); the "
                             f"full run is the same command without it")
    train_.set_defaults(handler=cmd_train)

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

    tune_ = commands.add_parser("tune", help="search hyperparameters with Optuna, every trial "
                                             "a run folder; pruning, shared studies, plots")
    add_run_options(tune_, "recipe name (see `fastcifar recipes`; default airbench94)")
    tune_.add_argument("--space", required=True,
                       help='what to search, e.g. "lr=4:20:log,momentum=0.8:0.95,'
                            'flip=random|alternating" (recipe hyperparameters)')
    tune_.add_argument("--trials", type=positive(int), default=20,
                       help="finished trials in the study, over all workers (default 20)")
    tune_.add_argument("--objective", choices=OBJECTIVES, default="accuracy",
                       help="maximised: the accuracy after TTA (default) or without it")
    tune_.add_argument("--epochs", type=positive(float), help="override the recipe's epochs")
    tune_.add_argument("--test-subset", type=positive(int),
                       help="evaluate on a class-balanced subset of this many test images")
    tune_.add_argument("--pruner", choices=PRUNERS, default="median",
                       help="stop trials whose validation accuracy trails the median of "
                            "earlier trials at the same epoch (default), or none")
    tune_.add_argument("--storage", help="where the study lives (default a journal file in "
                       "--out): journal:PATH (a shared filesystem) or a database URL such as "
                       "postgresql://... for workers on several machines")
    tune_.add_argument("--study", help="the study's name (default <recipe>-tune)")
    tune_.add_argument("--out", type=Path, help="tune folder: trials/, trials.csv, plots "
                                                "(default runs/tune-<recipe>)")
    tune_.set_defaults(handler=cmd_tune)

    ablate = commands.add_parser("ablate", help="what each trick of a recipe is worth: the "
                                                "recipe with each left out (or --ladder)")
    add_run_options(ablate, "recipe name (see `fastcifar recipes`; default airbench94)")
    ablate.add_argument("--tricks",
                        type=lambda text: [t.strip() for t in text.split(",") if t.strip()],
                        help="the tricks to ablate, comma-separated (default: all the recipe "
                             "declares; `fastcifar ablate --list` shows them)")
    ablate.add_argument("--ladder", action="store_true",
                        help="from the plainest version (every trick off) add them back one "
                             "at a time, in the recipe's order")
    ablate.add_argument("--runs", type=positive(int), default=2,
                        help="runs (seeds) a variant, the same seeds for each (default 2)")
    ablate.add_argument("--test-subset", type=positive(int),
                        help="evaluate on a class-balanced subset of this many test images")
    ablate.add_argument("--epochs", type=positive(float), help="override the recipe's epochs")
    ablate.add_argument("--compile", nargs="?", const=True, choices=COMPILE_MODES,
                        metavar="MODE", help="torch.compile each variant's network (as train)")
    ablate.add_argument("--epochs-for-accuracy", action="store_true",
                        help="for each trick whose absence costs accuracy, also train longer "
                             "(1.25, 1.5, 2x the epochs) and interpolate the epochs and seconds "
                             "that buy it back (the runs it costs are said first)")
    ablate.add_argument("--gpus", type=positive(int), metavar="N",
                        help="start this command on N processes through torchrun, one per GPU: "
                             "each variant's battery shared out (with --device cpu: N CPU "
                             "processes)")
    ablate.add_argument("--list", action="store_true", help="list the recipe's tricks and stop")
    ablate.add_argument("--out", type=Path, help="the ablation's folder (default "
                                                 "runs/ablate-<recipe>); run again to continue")
    ablate.set_defaults(handler=cmd_ablate)


def cmd_train(args) -> int:
    if args.gpus is not None and "WORLD_SIZE" not in os.environ:
        return launch(args.gpus, args.device, args.argv)
    if args.resume is not None:
        given = [k for k in (*SessionSettings.names(), "image_size", "epochs", "overrides", "out")
                 if getattr(args, k, None) not in (None, [])] + ["quick"] * args.quick
        if given:
            flags = ", ".join(f"--{k.replace('_', '-')}" for k in given)
            raise InputError(f"--resume {args.resume} continues that run with its own "
                             f"settings; drop {flags.replace('--overrides', '--set')}")
        resume(args.resume, device=args.device, progress=args.progress)
        return 0
    recipe = get_recipe(args.recipe or DEFAULT_RECIPE)
    if args.quick:
        for name, value in QUICK.items():
            if getattr(args, name) is None:
                setattr(args, name, value)
        given = any(o.partition("=")[0].strip() in ("batch_size", "batch-size")
                    for o in args.overrides)
        if not given and recipe.config.batch_size > QUICK_BATCH:
            args.overrides = [*args.overrides, f"batch_size={QUICK_BATCH}"]
    out = args.out or Path("runs") / f"{folder_name(recipe)}-{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        train(recipe, out=out, progress=args.progress, tracker=args.tracker,
              **session_options(args, recipe))
    except KeyboardInterrupt:
        if (out / "config.json").exists():
            print(f"fastcifar: interrupted; `fastcifar train --resume {out}` continues "
                  f"(finished runs are kept)", file=sys.stderr)
            return 130
        raise
    return 0


def launch(processes: int, device: str, argv: list[str]) -> int:
    """`fastcifar ARGV` again on `processes` processes under torch.distributed.run (which
    sets WORLD_SIZE, so there --gpus is not acted on again); its exit status."""
    import torch
    if device != "cpu":
        have = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if have < processes:
            fits = f"give at most {have}, or" if have else "give"
            raise InputError(f"--gpus {processes}: this machine has {have} CUDA GPU(s); "
                             f"{fits} --device cpu for {processes} CPU processes")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc-per-node", str(processes), "-m", "fastcifar", *argv]
    print(f"fastcifar: starting {processes} processes: torchrun --standalone "
          f"--nproc-per-node {processes} -m fastcifar {' '.join(argv)}", flush=True)
    return subprocess.call(command)


def cmd_lr_find(args) -> int:
    recipe = get_recipe(args.recipe or DEFAULT_RECIPE)
    stamp = time.strftime('%Y%m%d-%H%M%S')
    out = args.out or Path("runs") / f"lr-find-{folder_name(recipe)}-{stamp}"
    lr_find(recipe, start=args.start, end=args.end, steps=args.steps, out=out,
            **session_options(args, recipe))
    return 0




def cmd_tune(args) -> int:
    from ..sessions.tune import tune
    recipe = get_recipe(args.recipe or DEFAULT_RECIPE)
    options = session_options(args, recipe)
    options.pop("runs", None)
    tune(recipe, args.space, args.trials, objective=args.objective, storage=args.storage,
         study=args.study, out=args.out or Path("runs") / f"tune-{folder_name(recipe)}",
         pruner=args.pruner, **options)
    return 0


def cmd_ablate(args) -> int:
    from ..sessions.ablate import default_out, run_ablation
    recipe = get_recipe(args.recipe or DEFAULT_RECIPE)
    if args.list:
        for trick in recipe.tricks:
            print(f"{trick.name}: {trick.what} (off: "
                  f"{', '.join(f'{k}={v}' for k, v in trick.off.items())})")
        if not recipe.tricks:
            print(f"{recipe.name} declares no tricks")
        return 0
    if args.gpus is not None and "WORLD_SIZE" not in os.environ:
        return launch(args.gpus, args.device, args.argv)
    options = session_options(args, recipe)
    runs, seed = options.pop("runs", 2), options.pop("seed", 0)
    out = args.out or default_out(recipe)
    try:
        run_ablation(recipe, out, args.tricks, args.ladder, runs, seed,
                     epochs_for_accuracy=args.epochs_for_accuracy, **options)
    except KeyboardInterrupt:
        print(f"fastcifar: interrupted; the same command continues the ablation in {out} "
              f"(finished variants and runs are kept)", file=sys.stderr)
        return 130
    return 0
