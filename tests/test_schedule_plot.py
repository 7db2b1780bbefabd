"""`fastcifar schedule`: the lr multiplier and averaging decay a run will follow, plotted."""

from __future__ import annotations

import dataclasses
import sys
from math import ceil
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from fastcifar.cli import main

pytest.importorskip("matplotlib")

from fastcifar.recipes import RECIPES  # noqa: E402
from fastcifar.report.plots import schedule_figure  # noqa: E402
from fastcifar.train.loop import update_average  # noqa: E402
from fastcifar.train.setup import set_up_without_data  # noqa: E402


def run(capsys, *args):
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_schedule_writes_a_png(tmp_path, capsys):
    out = tmp_path / "airbench94.png"
    code, printed, err = run(capsys, "schedule", "airbench94", "--out", str(out))
    assert code == 0, err
    assert str(out) in printed
    assert out.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert out.stat().st_size > 10_000  # two panels of curves, axes and labels
    with Image.open(out) as image:
        assert image.format == "PNG" and image.width >= 600 and image.height >= 400


@pytest.mark.parametrize("name", list(RECIPES))
def test_the_plot_shows_the_recipes_own_multipliers_per_epoch(name):
    recipe = RECIPES[name]
    config = recipe.config
    per_epoch = 50_000 // config.batch_size
    steps = ceil(per_epoch * config.epochs)
    torch.manual_seed(0)
    training = recipe.setup(recipe.build_model(config, 10), config,
                            torch.randn(256, 3, 32, 32), steps)

    axes = schedule_figure(recipe, config, set_up_without_data(recipe, config), 50_000).axes
    lr = axes[0].lines[0]
    np.testing.assert_allclose(lr.get_ydata(), training.lr_multipliers)
    np.testing.assert_allclose(lr.get_xdata(), np.arange(steps + 1) / per_epoch)
    assert len(axes) == (2 if training.average is not None else 1)
    if training.average is not None:
        decay = axes[1].lines[0]
        # the training loop's own updates: (step, decay) of each
        updates, step = [], 0
        stub = dataclasses.replace(training, average=SimpleNamespace(
            restart=lambda model: None,
            update=lambda model, d: updates.append((step, d))))
        for step in range(1, steps + 1):
            update_average(stub, None, step)
        np.testing.assert_allclose(decay.get_xdata(), [s / per_epoch for s, _ in updates])
        np.testing.assert_allclose(decay.get_ydata(), [d for _, d in updates])


def test_airbench94_warms_up_from_0_2_to_1_then_decays_to_0_07():
    recipe = RECIPES["airbench94"]
    figure = schedule_figure(recipe, recipe.config, set_up_without_data(recipe, recipe.config),
                             50_000)
    lr = figure.axes[0].lines[0].get_ydata()
    assert len(lr) == 476 + 1 and lr[0] == pytest.approx(0.2)
    assert lr.max() == pytest.approx(1.0) and lr.argmax() == int(0.23 * 476)
    assert lr[-1] == pytest.approx(0.07)


def test_without_matplotlib_the_command_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # makes the import fail
    code, _, err = run(capsys, "schedule", "airbench94", "--out", str(tmp_path / "s.png"))
    assert code == 2 and 'pip install "fastcifar[plot]"' in err
    assert not (tmp_path / "s.png").exists()


@pytest.mark.parametrize("args, message", [
    (["nope"], "unknown recipe 'nope'"),
    (["airbench94", "--out", "schedule.pdf"], "expected a .png file name"),
    (["airbench94", "--set", "epochs=0"], "epochs must be positive"),
])
def test_bad_schedule_input_exits_2(capsys, args, message):
    code, _, err = run(capsys, "schedule", *args)
    assert code == 2 and message in err and "Traceback" not in err


@pytest.mark.parametrize("name, label", [("airbench94", "lookahead decay"),
                                         ("bag_of_tricks", "EMA decay"),
                                         ("hlb", "EMA (copied back) decay")])
def test_the_averaging_panel_names_the_average_as_its_recipe_does(name, label):
    recipe = RECIPES[name]
    figure = schedule_figure(recipe, recipe.config, set_up_without_data(recipe, recipe.config),
                             50_000)
    assert figure.axes[1].get_ylabel().startswith(label)


def test_the_curves_keep_a_colour_per_run_and_show_accuracy_in_percent_with_tta(tmp_path):
    from fastcifar.report.plots import metrics_figure
    rows = [{"run": run, "epoch": epoch, "train_loss": 1.0, "train_accuracy": 0.5,
             "val_loss": 1.0, "val_accuracy": 0.4 + 0.1 * epoch, "val_top5": 0.9, "lr": 0.5}
            for run in (1, 2, 3) for epoch in (1, 2)]
    figure = metrics_figure(rows, "airbench94: runs/x", final={1: 0.7, 2: 0.71, 3: 0.72})
    loss, accuracy, lr = figure.axes
    assert figure._suptitle.get_text() == "airbench94: runs/x"
    colours = {line.get_color() for line in accuracy.lines}
    assert len(colours) == 3, "one colour per run, whatever the metric"
    stars = [line for line in accuracy.lines if line.get_marker() == "*"]
    assert sorted(line.get_ydata()[0] for line in stars) == pytest.approx([70, 71, 72])
    val_top1 = [line for line in accuracy.lines if line.get_linestyle() == "--"]
    assert val_top1[0].get_ydata()[-1] == pytest.approx(60)  # percent, not a fraction
    ticks = [t for t in accuracy.get_xticks() if 1 <= t <= 2]
    assert all(float(t).is_integer() for t in ticks)
    assert len(accuracy.get_legend().get_texts()) == 4  # three metrics and the TTA star
    assert [t.get_text() for t in lr.get_legend().get_texts()] == ["run 1", "run 2", "run 3"]
