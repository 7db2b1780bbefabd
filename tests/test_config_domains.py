"""Every config field states its domain once, as its annotation (`lr: Positive = 11.5`), and
every way a value reaches a run (--set, keyword arguments, a recipe file's defaults,
`tune --space`) is refused outside it, in one message naming the field, the value and the
domain, before any data is read or any folder made."""

from __future__ import annotations

import dataclasses
import textwrap
import typing

import pytest

import fastcifar
from fastcifar.cli import main
from fastcifar.errors import InputError
from fastcifar.recipes import RECIPES
from fastcifar.recipes.airbench94 import Airbench94, Airbench94Config
from fastcifar.recipes.airbench95 import Airbench95Config
from fastcifar.recipes.base import describe
from fastcifar.recipes.fields import (Count, Fraction, FractionBelowOne, ImageSide,
                                      NonNegative, NonNegativeInt, OpenFraction, Positive,
                                      field_domains, with_values)
from fastcifar.sessions.tune_space import parse_space

MISSING_DATA = "/nonexistent/never/read.tar.gz"  # were it read, the message would say so


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTCIFAR_DATA", str(tmp_path / "cache"))


def refused(capsys, tmp_path, *args) -> str:
    """The error a `fastcifar train` refuses with: exit 2, one line, no run folder."""
    out = tmp_path / "run"
    code = main(["train", *args, "--device", "cpu", "--data", MISSING_DATA, "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("fastcifar: error:"), err
    assert "Traceback" not in err and "no such file" not in err.lower(), err
    assert not out.exists()
    return err


@pytest.mark.parametrize("alias, inside, outside", [
    (Positive, [1e-9, 11.5], [0.0, -5.0]),
    (NonNegative, [0.0, 3.0], [-1e-9]),
    (Fraction, [0.0, 1.0], [-0.1, 1.1]),
    (FractionBelowOne, [0.0, 0.999], [1.0, -0.1]),
    (OpenFraction, [0.5], [0.0, 1.0]),
    (Count, [1, 512], [0, -1]),
    (NonNegativeInt, [0, 2], [-1]),
    (ImageSide, [16, 32], [15, 8]),
])
def test_a_domain_is_an_interval_whose_brackets_say_which_ends_it_holds(alias, inside, outside):
    domain = typing.get_args(alias)[1]
    assert all(v in domain for v in inside) and not any(v in domain for v in outside)


def test_every_shipped_recipes_defaults_and_tricks_switched_off_lie_in_their_domains():
    for recipe in RECIPES.values():
        recipe.config.validate()
        for trick in recipe.tricks:
            with_values(recipe.config, trick.off, f"trick {trick.name}").validate()


def test_every_numeric_field_of_every_shipped_recipe_has_a_domain():
    for recipe in RECIPES.values():
        hints = typing.get_type_hints(type(recipe.config))
        numbers = {name for name, kind in hints.items() if kind in (int, float) or (
            typing.get_origin(kind) is tuple and typing.get_args(kind)[0] in (int, float))}
        assert numbers - set(field_domains(type(recipe.config))) == set(), recipe.name


def test_a_subclass_that_changes_a_default_keeps_its_parents_domain():
    assert field_domains(Airbench95Config)["lr"] == field_domains(Airbench94Config)["lr"]
    # hiverge94 makes airbench's whole epochs of whitening-bias training fractional
    assert field_domains(type(RECIPES["hiverge94"].config))["whiten_bias_epochs"] == \
        typing.get_args(NonNegativeInt)[1]


@pytest.mark.parametrize("recipe, assignment, message", [
    ("airbench94", "lr=-5", "--set lr=-5.0: lr must be positive"),
    ("airbench94", "epochs=0", "--set epochs=0.0: epochs must be positive"),
    ("airbench94", "weight_decay=-0.1", "weight_decay=-0.1: weight_decay must be 0 or more"),
    ("airbench94", "tta_fraction=1.5", "tta_fraction=1.5: tta_fraction must be in [0, 1]"),
    ("airbench94", "label_smoothing=1", "label_smoothing=1.0: label_smoothing must be in [0, 1)"),
    ("airbench94", "momentum=0", "momentum=0.0: momentum must be in (0, 1)"),
    ("airbench94", "batch_size=0", "batch_size=0: batch_size must be at least 1"),
    ("airbench94", "translate=-1", "translate=-1: translate must be 0 or more"),
    ("airbench94", "image_size=8", "image_size=8: image_size must be at least 16"),
    ("airbench94", "tta_level=4", "tta_level=4: tta_level must be 0, 1, 2 or 3"),
    ("airbench94", "widths=64,0,256", "widths=(64, 0, 256): each of widths must be at least 1"),
    ("fable94_e1", "progressive_sizes=8,28", "each of progressive_sizes must be at least 16"),
    ("fable94_e1", "lookahead_decay=1.5", "lookahead_decay=1.5: lookahead_decay must be in [0, 1]"),
    ("hiverge94", "whiten_bias_epochs=-1", "whiten_bias_epochs must be 0 or more"),
    ("hlb", "ema_every=0", "ema_every=0: ema_every must be at least 1"),
    ("bag_of_tricks", "ghost_splits=0", "ghost_splits=0: ghost_splits must be at least 1"),
    ("resnet18_cifar", "crop_scale=0,1", "each of crop_scale must be in (0, 1]"),
])
def test_set_refuses_a_value_outside_its_fields_domain_before_any_work(
        recipe, assignment, message, capsys, tmp_path):
    assert message in refused(capsys, tmp_path, "--recipe", recipe, "--set", assignment)


def test_keyword_arguments_are_refused_outside_their_domain_before_any_work(tmp_path):
    with pytest.raises(InputError, match=r"keyword lr=-5\.0: lr must be positive"):
        fastcifar.train("airbench94", lr=-5, data=MISSING_DATA, device="cpu",
                        out=tmp_path / "run")
    assert not (tmp_path / "run").exists()
    with pytest.raises(InputError, match=r"Airbench94Config momentum=1\.0: momentum must be"):
        dataclasses.replace(Airbench94Config(), momentum=1.0).validate()


RECIPE_FILE = """
    import dataclasses
    from dataclasses import dataclass

    from fastcifar.recipes.airbench94 import Airbench94, Airbench94Config
    from fastcifar.recipes.fields import Fraction


    @dataclass(frozen=True)
    class NegativeConfig(Airbench94Config):
        lr: float = -5.0  # a plain annotation: the field keeps Airbench94Config's domain


    class Negative(Airbench94):
        config = NegativeConfig()


    class Replaced(Airbench94):
        config = dataclasses.replace(Airbench94.config, momentum=1.0)


    @dataclass(frozen=True)
    class DropoutConfig(Airbench94Config):
        dropout: Fraction = 1.5  # a field of its own, with its own domain


    class Dropout(Airbench94):
        config = DropoutConfig()
"""


@pytest.mark.parametrize("name, message", [
    ("Negative", "NegativeConfig lr=-5.0: lr must be positive"),
    ("Replaced", "Airbench94Config momentum=1.0: momentum must be in (0, 1)"),
    ("Dropout", "DropoutConfig dropout=1.5: dropout must be in [0, 1]"),
])
def test_a_recipe_files_defaults_outside_their_domain_are_refused_naming_the_file(
        name, message, capsys, tmp_path):
    path = tmp_path / "mine.py"
    path.write_text(textwrap.dedent(RECIPE_FILE))
    err = refused(capsys, tmp_path, "--recipe", f"{path}:{name}")
    assert f"--recipe {path}:{name}: {message}" in err, err


def test_a_recipe_class_given_to_the_api_is_refused_outside_its_domains(tmp_path):
    @dataclasses.dataclass(frozen=True)
    class Negative(Airbench94Config):
        lr: float = -5.0

    class Mine(Airbench94):
        config = Negative()

    with pytest.raises(InputError, match=r"Negative lr=-5\.0: lr must be positive"):
        fastcifar.train(Mine, data=MISSING_DATA, device="cpu", out=tmp_path / "run")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("space, message", [
    ("lr=-5:20", "--space lr=-5.0: lr must be positive"),
    ("lr=4:20,momentum=0.5:1", "--space momentum=1.0: momentum must be in (0, 1)"),
    ("momentum=0.5|1.2", "--space momentum=1.2: momentum must be in (0, 1)"),
    ("whiten_images=0:100", "--space whiten_images=0: whiten_images must be at least 1"),
])
def test_a_search_space_reaching_outside_a_domain_is_refused_before_any_trial(
        space, message, capsys, tmp_path):
    with pytest.raises(InputError) as e:
        parse_space(space, "airbench94")
    assert str(e.value) == message
    out = tmp_path / "tune"
    assert main(["tune", "--space", space, "--device", "cpu", "--out", str(out)]) == 2
    assert message in capsys.readouterr().err and not out.exists()


@pytest.mark.parametrize("recipe, assignments, message", [
    ("airbench94", ["progressive_sizes=40"], "progressive_sizes must be sides up to image_size"),
    ("airbench94", ["residual=true", "convs_per_group=1"], "convs_per_group must be at least 2"),
    ("resnet18_cifar", ["nesterov=true", "momentum=0"], "needs a momentum above 0"),
    ("resnet18_cifar", ["schedule=piecewise", "knots=0,0,1,1,0.5,0"], "fractions from 0 to 1"),
    ("bag_of_tricks", ["lr_peak_at=0.9"], "lr_peak_at (0.9) must not come after lr_floor_at"),
])
def test_checks_across_fields_stay_with_validate(recipe, assignments, message, capsys,
                                                  tmp_path):
    sets = [arg for a in assignments for arg in ("--set", a)]
    assert message in refused(capsys, tmp_path, "--recipe", recipe, *sets)


def test_show_prints_each_fields_domain_beside_its_note():
    lines = describe(RECIPES["airbench94"])
    lr = next(line for line in lines if line.lstrip().startswith("lr ="))
    assert lr.endswith("# (positive) per 1024 examples, independent of momentum (see optim/sgd.py)")
    widths = next(line for line in lines if line.lstrip().startswith("widths ="))
    assert widths.endswith("# (each at least 1) channels of the three conv groups")
    flip = next(line for line in lines if line.lstrip().startswith("flip ="))
    assert "  # none | random | alternating: " in flip  # no domain: a choice of words
