"""`fastcifar eject`: a recipe's whole run as one standalone file (fastcifar/eject/)."""

from __future__ import annotations

from pathlib import Path

from ..eject import eject
from ..errors import InputError
from ..recipes import folder_name, get_recipe


def add_commands(commands) -> None:
    parser = commands.add_parser(
        "eject", help="write a recipe's whole run as one standalone Python file that needs "
                      "torch and numpy only, as airbench94.py is")
    parser.add_argument("recipe", help="recipe name (see `fastcifar recipes`)")
    parser.add_argument("--out", type=Path, help="the file to write (default RECIPE.py)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="override a recipe hyperparameter "
                                                  "(repeatable): the file's value for it")
    parser.set_defaults(handler=cmd_eject)


def cmd_eject(args) -> int:
    recipe = get_recipe(args.recipe)
    out = args.out or Path(f"{folder_name(recipe)}.py")
    try:
        eject(recipe, out, args.overrides)
    except OSError as e:
        raise InputError(f"--out {out}: cannot write it ({e.strerror or e})") from None
    lines = len(out.read_text().splitlines())
    print(f"wrote {out} ({lines} lines); run it as: python {out} --data PATH [--subset N] "
          f"[--test-subset N] [--epochs E] [--device D] [--seed S]")
    return 0
