"""Recipes written outside the package: `--recipe path/to/mine.py:MyRecipe`.

The file is imported as a module of its own (it usually subclasses a shipped recipe and
changes a few values, the network, the optimiser, the loss or the augmentation), and the
name after the colon is a Recipe subclass (made with no arguments) or instance in it. A
run folder keeps a copy of the file and its digest (report/records.py), so a run of it can
be resumed, evaluated and exported in a new process even if the file has moved or changed.
"""

from __future__ import annotations

import importlib.util
import sys
import traceback
from pathlib import Path

from ..errors import InputError
from ..files import file_digest
from .base import Recipe, Target
from .fields import check_domains


class RecipeFileFailed(InputError):
    """The recipe file raised while it was imported: the message is its own traceback."""


def is_file_spec(text: str) -> bool:
    """Does --recipe name a file (`mine.py:MyRecipe`, or a path ending in .py)?"""
    path = str(text).rpartition(":")[0] or str(text)
    return path.endswith(".py")


def recipe_from_file(spec: str, option: str = "--recipe") -> Recipe:
    """The recipe `path.py:Name` names: the instance there, or an instance of the class."""
    path_text, colon, object_name = str(spec).rpartition(":")
    if not colon or not path_text.endswith(".py") or not object_name.isidentifier():
        raise InputError(f"{option} {spec}: expected path/to/file.py:RecipeName, the file and "
                         f"the name of the recipe class (or instance) it defines")
    path = Path(path_text).expanduser().resolve()
    if not path.is_file():
        raise InputError(f"{option} {spec}: no such file {path}; expected a Python file that "
                         f"defines {object_name}")
    module = _import(path, option, spec)
    if not hasattr(module, object_name):
        found = [name for name, value in vars(module).items() if _is_recipe(value)
                 and getattr(value, "__module__", module.__name__) == module.__name__]
        raise InputError(f"{option} {spec}: {path.name} defines no {object_name!r}; recipes "
                         f"it defines: {', '.join(found) or 'none'}")
    value = getattr(module, object_name)
    if not _is_recipe(value):
        raise InputError(f"{option} {spec}: {object_name} is {_a(type(value).__name__)}, not a "
                         f"recipe; expected a subclass of fastcifar.Recipe (e.g. of "
                         f"fastcifar.recipes.airbench94.Airbench94) or an instance of one")
    recipe = value() if isinstance(value, type) else value
    # Its defaults are checked as --set's values are, naming the file, before any work.
    check_domains(recipe.config, f"{option} {spec}: {type(recipe.config).__name__}")
    # Not the shipped parent's name, nor its published figure.
    if "name" not in vars(type(recipe)) and "name" not in vars(recipe):
        recipe.name = f"{path.name}:{object_name}"
    if "target" not in vars(type(recipe)) and "target" not in vars(recipe):
        recipe.target = Target(None, f"none (a recipe of your own, from "
                                             f"{type(recipe).__mro__[1].__name__})")
    recipe.source_file = path
    recipe.source_object = object_name
    return recipe


def _a(noun: str) -> str:
    """The noun with its article: "an int", "a str"."""
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"


def _is_recipe(value) -> bool:
    return isinstance(value, Recipe) or (isinstance(value, type) and issubclass(value, Recipe)
                                         and value is not Recipe)


def _import(path: Path, option: str, spec_text: str):
    digest = file_digest(path)
    name = f"fastcifar_recipe_file_{path.stem}_{digest[:12]}"
    if name in sys.modules:  # the same file's same text: imported once
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    module.__source_sha256__ = digest  # the text it ran (the file may change or go later)
    sys.modules[name] = module  # dataclasses and type hints look their module up here
    try:
        spec.loader.exec_module(module)
    except BaseException as e:
        del sys.modules[name]
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        raise RecipeFileFailed(f"{option} {spec_text}: importing {path} failed; its "
                               f"traceback:\n{_user_traceback(e, path)}") from None
    return module


def _user_traceback(error: BaseException, path: Path) -> str:
    """The traceback from the recipe file's first frame on (importlib's frames left out)."""
    tb = error.__traceback__
    while tb is not None and Path(tb.tb_frame.f_code.co_filename) != path:
        tb = tb.tb_next
    lines = traceback.format_exception(type(error), error, tb or error.__traceback__)
    return "".join(lines).rstrip()
