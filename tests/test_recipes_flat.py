"""Flat recipes: a reader learns what a recipe does from its own file. Each built-in recipe's
class and config class inherit from nothing defined in another recipe file (only from
recipes/base.py's Recipe and TrainConfig, or from a variant in the same file); shared code
is called, as building blocks; and `fastcifar recipes --show` gives every field a note."""

from __future__ import annotations

import dataclasses

import pytest

from fastcifar.recipes import RECIPES, describe
from fastcifar.recipes.base import Recipe, TrainConfig, field_notes

BASE = Recipe.__module__


@pytest.mark.parametrize("name", list(RECIPES))
def test_no_recipe_inherits_from_another_recipe_file(name):
    recipe = RECIPES[name]
    home = type(recipe).__module__
    for cls in (*type(recipe).__mro__, *type(recipe.config).__mro__):
        if cls.__module__.startswith("fastcifar.recipes"):
            assert cls.__module__ in (home, BASE), (
                f"{name}: {cls.__qualname__} comes from {cls.__module__}, not {home}")
    assert issubclass(type(recipe.config), TrainConfig)


@pytest.mark.parametrize("name", list(RECIPES))
def test_recipes_show_gives_every_field_its_value_and_its_note(name):
    config = RECIPES[name].config
    notes = field_notes(type(config))
    shown = [line for line in describe(RECIPES[name]) if line.startswith("  ")]
    assert [line.split(" = ")[0].strip() for line in shown] == [
        f.name for f in dataclasses.fields(config)]
    for field, line in zip(dataclasses.fields(config), shown):
        assert f" = {getattr(config, field.name)!r}" in line
        assert field.name in notes and notes[field.name] in line, line
