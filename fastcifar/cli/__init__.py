"""The `fastcifar` command: argument parsing, then one call of the Python API.

One module per family of subcommands: run.py (train, lr-find), tools.py (recipes, flops,
schedule, plot), models.py (evaluate, predict, export, compare), crossval.py (crossval),
eject.py (eject); options.py holds what they share."""

from __future__ import annotations

import argparse
import os
import sys
import warnings

from ..errors import FastcifarWarning, InputError, RunFailed
from ..version import __version__
from . import crossval, eject, models, run, tools


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    args.argv = argv  # for `train --gpus`, which starts the command again under torchrun
    # Under torchrun every rank speaks: say which one.
    who = f"fastcifar (rank {os.environ['RANK']})" if "RANK" in os.environ else "fastcifar"
    try:
        with warnings.catch_warnings():  # restores showwarning afterwards
            warnings.showwarning = _one_line_warnings(who, warnings.showwarning)
            code = args.handler(args)
        sys.stdout.flush()  # a reader that left is found here, not in Python's exit
        return code
    except (InputError, RunFailed) as e:
        print(f"{who}: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"{who}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader left (`fastcifar recipes --show R | head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # (Python's own advice)
        return 141


def _one_line_warnings(who: str, default):
    """fastcifar's own warnings as `fastcifar: warning: ...`; others as Python prints them."""
    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, FastcifarWarning):
            print(f"{who}: warning: {message}", file=sys.stderr if file is None else file)
        else:
            default(message, category, filename, lineno, file, line)
    return show


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fastcifar", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"fastcifar {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    for family in (run, tools, models, crossval, eject):
        family.add_commands(commands)
    return parser
