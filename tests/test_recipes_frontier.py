"""The frontier recipes (hiverge94, fable94_e5, fable94_e1): their numbers are the
originals', their schedules are the originals' step by step, and a short run learns. Each
block they are built from is checked against the original's own function in
tests/test_frontier_data.py, test_frontier_optim.py and test_frontier_tta.py."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from fastcifar.optim.muon import FRONTIER_COEFFICIENTS, Muon
from fastcifar.recipes import RECIPES, get_recipe
from fastcifar.train.loop import train_run
from fastcifar.train.setup import set_up_without_data

FRONTIER = ["hiverge94", "fable94_e5", "fable94_e1"]


def set_up(name: str, **changes):
    recipe = get_recipe(name)
    config = dataclasses.replace(recipe.config, **changes)
    return recipe, config, set_up_without_data(recipe, config, 50_000)


@pytest.mark.parametrize("name, steps, decay", [
    ("hiverge94", 243, 243),  # ceil(7.59 x 32); its lr decays over the whole run
    ("fable94_e5", 264, 260),  # ceil(8.25 x 32), ceil(8.125 x 32): Fulcrum's certified E5
    ("fable94_e1", 284, 272),  # ceil(8.875 x 32), ceil(8.5 x 32)
])
def test_steps_and_the_lr_schedule_are_the_originals(name, steps, decay):
    recipe, config, run = set_up(name)
    assert (run.steps_per_epoch, run.steps) == (32, steps)
    floor = getattr(config, "lr_floor", 0.0)
    s = np.arange(steps + 1)
    expected = np.maximum(1 - s / decay, floor)  # the originals' multiplier at step s
    np.testing.assert_allclose(run.training.lr_multipliers[:steps], expected[:steps],
                               rtol=0, atol=1e-12)
    sgd, muon = run.training.optimizers
    # The whitening bias: lr 1 - s/7 for 7 steps, then 0 (ceil(0.19 or 0.2 x 32) = 7).
    whiten = sgd.param_groups[0]["lr_multipliers"]  # (the last value holds past its end)
    np.testing.assert_allclose(whiten, np.maximum(1 - np.arange(8) / 7, 0), atol=1e-12)
    assert isinstance(muon, Muon)
    group = muon.param_groups[0]
    assert group["coefficients"] == FRONTIER_COEFFICIENTS and group["schedule_steps"] == decay
    assert group["weight_decay"] == pytest.approx(1.0418e-6 * 1536)


def test_the_published_hyperparameters():
    hiverge, e5, e1 = (RECIPES[n].config for n in FRONTIER)
    assert (hiverge.batch_size, hiverge.label_smoothing, hiverge.batchnorm_momentum) == (
        1536, 0.09, 0.5566)
    assert (hiverge.brightness, hiverge.contrast, hiverge.activation) == (0.1399, 0.1308, "silu")
    assert (hiverge.muon_lr, hiverge.muon_momentum, hiverge.bias_lr, hiverge.head_lr,
            hiverge.sgd_momentum) == (0.205, 0.655, 0.0573, 0.5415, 0.825)
    assert (hiverge.tta_level, hiverge.tta_fraction, hiverge.whiten_images) == (3, 0.25, 960)
    assert (e5.muon_lr, e1.muon_lr) == (0.205, 0.2255)
    assert (e5.progressive_sizes, e5.progressive_mode) == ((28,) * 5, "crop")
    assert (e1.progressive_sizes, e1.progressive_mode, e1.progressive_antialias) == (
        (24, 24, 24, 28, 28, 28), "resize", False)
    assert e5.whiten_images == e1.whiten_images == 5000


def test_fable_averages_from_8_steps_before_the_decay_ends_every_4_steps():
    """At step D - 8 (E1: 264) the average starts from the weights; then every 4 steps the
    weights and their average move to 0.7 average + 0.3 weights, copied back. No step
    before it touches the weights or the average (the original's tail: 6 walks a run)."""
    from fastcifar.train.loop import update_average
    _, _, run = set_up("fable94_e1")
    training = run.training
    assert training.average is not None and training.average.copy_back
    assert (training.average_every, training.average_start) == (4, 264)
    walks = []
    training.average = SimpleNamespace(
        restart=lambda model: walks.append("restart"),
        update=lambda model, decay: walks.append(decay))
    for step in range(1, 285):
        update_average(training, None, step)
    assert walks == ["restart", 0.7, 0.7, 0.7, 0.7, 0.7]
    assert (284 - 264) % 4 == 0  # so the run ends on an update, as the original does


def test_the_curricula_cost_fewer_flops_than_hiverge_and_hiverge_fewer_than_muon():
    from fastcifar.bench.flops import run_flops
    total = {name: run_flops(RECIPES[name]).total for name in ["airbench94_muon", *FRONTIER]}
    assert total["fable94_e1"] < total["fable94_e5"] < total["hiverge94"] < total[
        "airbench94_muon"]


@pytest.mark.parametrize("name", FRONTIER)
def test_short_run_learns(name, short_run_data):
    """2,000 images, 4 epochs of batch 100 at a quarter of the widths (the curricula's
    small epochs included): far above chance (10%). Measured on the stand-in, seeds 0 and
    1: hiverge94 52.8/50.0%, fable94_e5 50.2/48.4%, fable94_e1 47.2/46.0%."""
    recipe = get_recipe(name)
    config = dataclasses.replace(recipe.config, batch_size=100, epochs=4, widths=(16, 64, 64),
                                 **({"decay_epochs": 3.9} if name != "hiverge94" else {}))
    result = train_run(recipe, config, short_run_data, torch.device("cpu"), seed=0)
    losses = [e.train_loss for e in result.epochs]
    assert losses[-1] < losses[0], losses
    assert result.accuracy > 0.40, result


@pytest.mark.parametrize("precision, dtype", [("float32", torch.float32),
                                              ("float16", torch.float16)])
def test_frontier_muon_iterates_in_the_weights_dtype(precision, dtype):
    """As the originals: float16 where the weights are half (a GPU's speed run, rehearsed
    here on the CPU by --precision float16), with no conversion of the directions."""
    from fastcifar.train.setup import set_up_run
    recipe = get_recipe("hiverge94")
    config = dataclasses.replace(recipe.config, widths=(8, 16, 16))
    run = set_up_run(recipe, config, torch.randn(64, 3, 32, 32), torch.device("cpu"),
                     precision, num_train_images=50_000)
    muon = next(o for o in run.training.optimizers if isinstance(o, Muon))
    assert muon.param_groups[0]["ns_dtype"] == dtype
