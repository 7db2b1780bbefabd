"""Recipes by name. Each one is a short file: hyperparameters, building blocks, target."""

from __future__ import annotations

import difflib

from ..errors import InputError
from ..files import file_safe
from .airbench94 import Airbench94
from .airbench94_bnfree import Airbench94BnFree
from .airbench94_muon import Airbench94Muon
from .airbench95 import Airbench95
from .airbench96 import Airbench96, Airbench96Faster
from .bag_of_tricks import BagOfTricks
from .fable94 import Fable94E1, Fable94E5
from .base import Recipe, TrainConfig, describe
from .fields import override, parse_assignments
from .from_file import is_file_spec, recipe_from_file
from .general import (ResNet18Cifar, ResNet18ImagewoofAdamW, ResNet18ImagewoofLRFinder,
                      ResNet18ImagewoofOneCycle, ResNet18ImagewoofSGD)
from .hiverge94 import Hiverge94
from .hlb import Hlb, HlbStateSketch
from .resnet9_dawnbench import ResNet9Dawnbench

RECIPES: dict[str, Recipe] = {r.name: r for r in (
    Airbench94(), Airbench94Muon(), Airbench95(), Airbench96(), Airbench94BnFree(), BagOfTricks(),
    ResNet9Dawnbench(), Hlb(), HlbStateSketch(),
    # the frontier: the public records beyond airbench
    Hiverge94(), Fable94E5(), Fable94E1(), Airbench96Faster(),
    # the general trainer (the fast.ai-techniques article on Imagewoof)
    ResNet18ImagewoofSGD(), ResNet18ImagewoofLRFinder(), ResNet18ImagewoofOneCycle(),
    ResNet18ImagewoofAdamW(), ResNet18Cifar())}


def recipe_table() -> list[str]:
    """`fastcifar recipes`: a line per recipe, its published target and what it is."""
    rows = [("recipe", "published target (official dataset)", "what it is")]
    rows += [(name, r.target.text, r.summary) for name, r in RECIPES.items()]
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    return [f"{n.ljust(widths[0])}  {t.ljust(widths[1])}  {s}" for n, t, s in rows]


def get_recipe(name) -> Recipe:
    """The recipe of this name; case and "-" for "_" are forgiven, and an unknown name is
    an InputError that suggests the closest one. A Recipe instance is itself, a Recipe
    class an instance of it, and `path/to/file.py:Name` the recipe that file defines
    (from_file.py)."""
    if isinstance(name, Recipe):
        return name
    if isinstance(name, type) and issubclass(name, Recipe):
        return name()
    if is_file_spec(name):
        return recipe_from_file(name)
    key = str(name).strip().lower().replace("-", "_")
    if key in RECIPES:
        return RECIPES[key]
    close = difflib.get_close_matches(key, RECIPES, n=3, cutoff=0.6)
    close.sort(key=lambda c: sorted(c) != sorted(key))  # a transposition first: 49 -> 94
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise InputError(f"unknown recipe {name!r}; {hint}available: {', '.join(RECIPES)}; or a "
                     f"recipe of your own, as path/to/file.py:RecipeName")


def folder_name(recipe: Recipe) -> str:
    """The recipe's name as part of a folder's: a recipe file's "mine.py:Wider" as
    "mine.py_Wider"."""
    return file_safe(recipe.name)


__all__ = ["RECIPES", "folder_name", "Recipe", "TrainConfig", "describe", "get_recipe", "override",
           "parse_assignments", "recipe_table"]
