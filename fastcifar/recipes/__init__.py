"""Recipes by name. Each one is a short file: hyperparameters, building blocks, target."""

from __future__ import annotations

from ..errors import InputError
from .airbench94 import Airbench94
from .base import Recipe, TrainConfig, override

RECIPES: dict[str, Recipe] = {r.name: r for r in (Airbench94(),)}


def get_recipe(name: str) -> Recipe:
    try:
        return RECIPES[name]
    except KeyError:
        raise InputError(f"unknown recipe {name!r}; available: {', '.join(RECIPES)}") from None


__all__ = ["RECIPES", "Recipe", "TrainConfig", "get_recipe", "override"]
