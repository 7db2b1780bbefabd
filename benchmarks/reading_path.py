"""What a reader opens to learn how a recipe trains: the files and lines of fastcifar's code
that run from `fastcifar train --recipe NAME` to the first optimiser step.

    python benchmarks/reading_path.py --recipe fable94_e1 [--data ARCHIVE] [--list]

Counted from the code as it runs, on a tiny synthetic image folder (the data does not
change the path): every fastcifar function called until the first `Optimizer.step`
starts, each with the lines of its whole definition, plus the class bodies of the
recipe's and its config's class hierarchy (read, though they run at import). Two
figures: the whole path (from the command line in), and the algorithm alone (from the
start of `train.loop.train_run`: set-up, network, optimiser, loader, the first step).
A function's lines count once, however often it runs; a file counts once.

Run it against another checkout with PYTHONPATH=that/checkout to compare two versions.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import io
import sys
import tempfile
from collections import defaultdict
from pathlib import Path


class FirstStep(Exception):
    """Raised inside the first optimiser step: the path ends there."""


def lines_of(code) -> range:
    """The lines of the function whose code this is, its decorators and docstring included."""
    try:
        source, first = inspect.getsourcelines(code)
    except (OSError, TypeError):
        return range(code.co_firstlineno, code.co_firstlineno + 1)
    return range(first, first + len(source))


def trace_path(argv: list[str], package: Path) -> dict[str, dict[str, set[int]]]:
    """{"whole": {file: lines}, "algorithm": {file: lines}} of the functions that run."""
    import torch
    read = {"whole": defaultdict(set), "algorithm": defaultdict(set)}
    seen, in_run = set(), [False]

    def profile(frame, event, arg):
        if event != "call":
            return
        code = frame.f_code
        if code.co_name == "step" and isinstance(frame.f_locals.get("self"),
                                                 torch.optim.Optimizer):
            raise FirstStep
        path = Path(code.co_filename)
        if package not in path.parents or code.co_name == "<module>":
            return
        if code.co_name == "train_run" and path.name == "loop.py":
            in_run[0] = True
        key = (code, in_run[0])
        if key in seen:
            return
        seen.add(key)
        where = str(path.relative_to(package.parent))
        parts = ("whole", "algorithm") if in_run[0] else ("whole",)
        for part in parts:
            read[part][where].update(lines_of(code))

    from fastcifar.cli import main
    sys.setprofile(profile)
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the run's own lines
            main(argv)
    except FirstStep:
        pass
    finally:
        sys.setprofile(None)
    return read


def add_class_bodies(read, recipe_name: str, package: Path) -> None:
    """The recipe's and its config's classes, the base Recipe and TrainConfig included."""
    from fastcifar.recipes import get_recipe
    recipe = get_recipe(recipe_name)
    for cls in (*type(recipe).__mro__, *type(recipe.config).__mro__):
        file = getattr(sys.modules.get(cls.__module__), "__file__", None)
        if file is None or package not in Path(file).resolve().parents:
            continue
        source, first = inspect.getsourcelines(cls)
        where = str(Path(file).relative_to(package.parent))
        for part in read.values():
            part[where].update(range(first, first + len(source)))


def tiny_folder(root: Path) -> Path:
    """Two classes of 64 training and 16 test 32x32 images."""
    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(0)
    for split, count in (("train", 64), ("test", 16)):
        for label in ("a", "b"):
            folder = root / split / label
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", default="fable94_e1")
    parser.add_argument("--data", help="an image folder or archive (default: a tiny one)")
    parser.add_argument("--list", action="store_true", help="list each file's lines")
    args = parser.parse_args(argv)
    import fastcifar
    package = Path(fastcifar.__file__).resolve().parent
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data or str(tiny_folder(Path(tmp) / "data"))
        command = ["train", "--recipe", args.recipe, "--data", data, "--device", "cpu",
                   "--epochs", "1", "--set", "batch_size=32", "--out", str(Path(tmp) / "run")]
        read = trace_path(command, package)
    add_class_bodies(read, args.recipe, package)
    print(f"fastcifar at {package}; `fastcifar {' '.join(command[:3])}` to its first step:")
    for part in ("whole", "algorithm"):
        files = read[part]
        print(f"{args.recipe} {part}: {len(files)} files, "
              f"{sum(len(lines) for lines in files.values()):,} lines")
        if args.list:
            for where, lines in sorted(files.items()):
                print(f"  {where}: {len(lines)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
