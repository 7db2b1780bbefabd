"""The LR finder: its rules on curves whose answers are known, a sweep that leaves no trace,
and a short real sweep of a recipe."""

from __future__ import annotations

import dataclasses
import json
import math
import sys

import numpy as np
import pytest
import torch
from torch import nn

from fastcifar.cli import main
from fastcifar.errors import InputError, RunFailed
from fastcifar.recipes import get_recipe
from fastcifar.data.loader import DeviceData
from fastcifar.train import lr_finder
from fastcifar.report.lr_finder import lr_finder_figure, summary_lines, write_result
from fastcifar.train.lr_finder import (default_beta, find_lr, lr_fields, lr_from_finder,
                                       lr_range_test, read_result, scale_lrs)
from fastcifar.train.lr_rules import min_div_10, recommend, smooth, steepest, valley

# loss = 2 + sin(u) over u = ln(multiplier) in [pi/2, 2 pi]: it falls from 3 to its minimum 1
# at u = 3 pi/2, fastest at u = pi, and rises again.
U = np.linspace(np.pi / 2, 2 * np.pi, 400)
SINE = dict(multipliers=np.exp(U), smoothed=2 + np.sin(U))
GRID = np.exp(U[1] - U[0])  # one grid step, as a factor


def test_the_rules_find_the_known_points_of_a_smooth_curve():
    assert steepest(**SINE) == pytest.approx(np.exp(np.pi), rel=GRID - 1)
    assert min_div_10(**SINE) == pytest.approx(np.exp(1.5 * np.pi) / 10, rel=GRID - 1)
    # valley: 2/3 of the way down from 3 to 1, where 2 + sin(u) = 5/3
    assert valley(**SINE) == pytest.approx(np.exp(np.pi + np.arcsin(1 / 3)), rel=GRID - 1)
    assert recommend(**SINE)[0] == "valley"


def test_valley_lies_between_the_steepest_fall_and_the_minimum():
    assert steepest(**SINE) < valley(**SINE) < np.exp(1.5 * np.pi)


def test_a_flat_then_diverging_curve_gets_no_suggestion():
    m = np.geomspace(1e-2, 1e2, 100)
    loss = 2.3 + 1e-4 * np.random.default_rng(0).standard_normal(100)
    loss[80:] += np.exp(np.arange(20) / 4) - 1  # nothing learns, then it blows up
    assert steepest(m, loss) is None and valley(m, loss) is None and min_div_10(m, loss) is None
    rule, reason = recommend(m, loss)
    assert rule is None and "never fell" in reason


def test_on_a_noisy_curve_the_smoothed_suggestions_lie_at_most_3x_above_the_noise_free():
    m = np.geomspace(1e-2, 1e2, 400)
    clean = 2.3 - 0.6 / (1 + np.exp(-4 * np.log10(m))) + 0.05 * np.exp((np.log10(m) - 1) / 0.15)
    noisy = clean + 0.05 * np.random.default_rng(1).standard_normal(len(m))
    # The longest descent skips the noise's bumps: even unsmoothed, valley finds its point.
    assert valley(m, noisy) == pytest.approx(valley(m, clean))
    smoothed = smooth(noisy, default_beta(len(m)))
    for rule in (steepest, valley, min_div_10):
        ratio = rule(m, smoothed) / rule(m, clean)
        assert 1 < ratio < 3, (rule.__name__, ratio)  # above: the EMA lags behind the lr


def test_valley_falls_back_to_steepest_when_the_descent_is_too_short():
    m = np.geomspace(1e-2, 1e2, 100)
    loss = np.full(100, 2.0)
    # three points of descent, then a plateau at 1.6; the central slope is steepest at 51
    # (-0.175 per step against -0.15 at 50: no tie for rounding to break)
    loss[50:53] = [1.95, 1.7, 1.6]
    loss[53:] = 1.6
    assert valley(m, loss) is None
    assert recommend(m, loss)[0] == "steepest"
    assert steepest(m, loss) == pytest.approx(m[51])


def test_a_curve_still_falling_at_the_end_says_so():
    m = np.geomspace(1e-2, 1e2, 50)
    rule, reason = recommend(m, 3 - np.log10(m) / 4)
    assert rule == "valley" and "still falling" in reason


def test_smoothing_is_a_bias_corrected_ema():
    assert smooth([2.0, 2.0, 2.0], 0.98) == pytest.approx([2.0, 2.0, 2.0])
    assert smooth([1.0, 3.0], 0.5) == pytest.approx([1.0, (0.25 * 1 + 0.5 * 3) / 0.75])
    assert default_beta(100) == 0.98 and default_beta(50) == pytest.approx(0.98 ** 2)


# --- The sweep on a tiny model ------------------------------------------------------------

def tiny_setup():
    """A net with BatchNorm, trained a few steps by two optimisers (so they have momentum
    and Adam state), and a data source that draws from the global random generator."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))
    first, last = list(model[0].parameters()) + list(model[1].parameters()), model[3].parameters()
    optimizers = [torch.optim.SGD(first, lr=0.1, momentum=0.9, nesterov=True),
                  torch.optim.Adam([{"params": last, "lr": 0.01}])]
    loss_fn = nn.CrossEntropyLoss(reduction="sum")

    def batches():
        for _ in range(4):
            yield torch.randn(32, 8), torch.randint(0, 3, (32,))

    for inputs, targets in batches():
        for opt in optimizers:
            opt.zero_grad()
        loss_fn(model(inputs), targets).backward()
        for opt in optimizers:
            opt.step()
    model.eval()
    return model, optimizers, loss_fn, batches


def snapshot(model, optimizers):
    return (
        {k: v.clone() for k, v in model.state_dict().items()},
        [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        [m.training for m in model.modules()],
        [{p: {k: v.clone() if torch.is_tensor(v) else v for k, v in s.items()}
          for p, s in opt.state.items()} for opt in optimizers],
        [[{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups]
         for opt in optimizers],
        torch.get_rng_state())


def assert_same(a, b):
    (weights_a, grads_a, modes_a, states_a, groups_a, rng_a) = a
    (weights_b, grads_b, modes_b, states_b, groups_b, rng_b) = b
    assert weights_a.keys() == weights_b.keys()
    for k in weights_a:
        assert torch.equal(weights_a[k], weights_b[k]), k  # incl. BatchNorm statistics
    assert all(torch.equal(x, y) for x, y in zip(grads_a, grads_b))
    assert modes_a == modes_b and groups_a == groups_b
    for sa, sb in zip(states_a, states_b):
        assert sa.keys() == sb.keys()
        for p in sa:
            assert sa[p].keys() == sb[p].keys()
            for k in sa[p]:
                assert torch.equal(torch.as_tensor(sa[p][k]), torch.as_tensor(sb[p][k])), k
    assert torch.equal(rng_a, rng_b)


def test_the_sweep_leaves_model_optimisers_and_random_state_as_they_were():
    model, optimizers, loss_fn, batches = tiny_setup()
    before = snapshot(model, optimizers)
    expected_next = torch.rand(3)
    torch.set_rng_state(before[-1])

    result = lr_range_test(model, optimizers, loss_fn, batches, start=1e-3, end=10,
                           num_steps=30)
    assert len(result.losses) > 5  # it trained: the weights did move during the sweep
    assert_same(before, snapshot(model, optimizers))
    assert torch.equal(torch.rand(3), expected_next)
    assert set(result.base_lrs) == {"optimizer0.group0", "optimizer1.group0"}
    assert result.base_lrs["optimizer1.group0"] == 0.01


def test_the_state_is_restored_also_when_the_loss_raises_mid_sweep():
    model, optimizers, loss_fn, batches = tiny_setup()
    before = snapshot(model, optimizers)
    calls = 0

    def failing_loss(outputs, targets):
        nonlocal calls
        calls += 1
        if calls == 6:
            raise RuntimeError("out of memory, say")
        return loss_fn(outputs, targets)

    with pytest.raises(RuntimeError, match="out of memory"):
        lr_range_test(model, optimizers, failing_loss, batches, num_steps=20)
    assert calls == 6
    assert_same(before, snapshot(model, optimizers))


def test_step_k_multiplies_every_groups_starting_lr_by_m_k():
    model, optimizers, loss_fn, batches = tiny_setup()
    seen = []
    optimizers[1].register_step_pre_hook(
        lambda opt, *_: seen.append((optimizers[0].param_groups[0]["lr"],
                                     opt.param_groups[0]["lr"])))
    result = lr_range_test(model, optimizers, loss_fn, batches, start=0.01, end=1, num_steps=5,
                           diverge_factor=1e9)
    assert result.multipliers == pytest.approx([0.01, 0.01 ** 0.75, 0.1, 0.1 ** 0.5, 1])
    np.testing.assert_allclose(seen, [(0.1 * m, 0.01 * m) for m in result.multipliers],
                               rtol=1e-6)


def test_the_losses_are_recorded_per_example_for_a_sum_or_a_mean():
    model, optimizers, loss_fn, batches = tiny_setup()
    summed = lr_range_test(model, optimizers, loss_fn, batches, num_steps=5)
    mean = lr_range_test(model, optimizers, nn.CrossEntropyLoss(), batches, num_steps=5,
                         loss_scale=1 / 32)
    inputs, targets = next(batches())  # the sweeps' first batch: the random state is restored
    expected = nn.functional.cross_entropy(model.train()(inputs), targets).item()
    assert summed.losses[0] == pytest.approx(expected) and mean.losses[0] == pytest.approx(expected)


def test_a_diverging_sweep_stops_early():
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    x = torch.randn(64, 4)
    data = [(x, x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]]))]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    result = lr_range_test(model, [optimizer], nn.MSELoss(reduction="sum"), data,
                           start=0.1, end=1e4, num_steps=100)
    assert len(result.losses) < 100
    assert "diverged" in result.stopped or "loss became" in result.stopped
    assert optimizer.param_groups[0]["lr"] == 0.01


def test_a_one_shot_iterator_that_runs_out_is_refused():
    model, optimizers, loss_fn, batches = tiny_setup()
    with pytest.raises(InputError, match="ran out of batches"):
        lr_range_test(model, optimizers, loss_fn, iter(list(batches())), num_steps=10)


@pytest.mark.parametrize("start, end, steps, match", [(1.0, 1.0, 10, "start < end"),
                                                      (0.0, 1.0, 10, "start < end"),
                                                      (0.1, 10, 4, "at least 5 steps")])
def test_bad_sweep_settings_are_input_errors(start, end, steps, match):
    model, optimizers, loss_fn, batches = tiny_setup()
    with pytest.raises(InputError, match=match):
        lr_range_test(model, optimizers, loss_fn, batches, start, end, steps)


# --- Recipes ------------------------------------------------------------------------------

def test_scale_lrs_multiplies_lr_and_the_lr_fields_only():
    config = get_recipe("airbench94").config
    scaled = scale_lrs(config, 0.5)
    assert scaled.lr == 5.75
    changed = {f.name for f in dataclasses.fields(config)
               if getattr(config, f.name) != getattr(scaled, f.name)}
    assert changed == {"lr"}  # not bias_lr_scale, lr_start, lr_peak_at, lr_end

    muon = get_recipe("airbench94_muon").config
    assert lr_fields(muon) == {"muon_lr": 0.24, "bias_lr": 0.053, "head_lr": 0.67}
    scaled = scale_lrs(muon, 2.0)
    assert lr_fields(scaled) == pytest.approx({"muon_lr": 0.48, "bias_lr": 0.106, "head_lr": 1.34})
    assert dataclasses.replace(scaled, **lr_fields(muon)) == muon
    with pytest.raises(InputError):
        scale_lrs(muon, 0.0)


@pytest.fixture(scope="module")
def small_sweep(small_cifar10, tmp_path_factory):
    recipe = get_recipe("airbench94")
    config = dataclasses.replace(recipe.config, widths=(16, 32, 32), batch_size=256)
    data = DeviceData.from_dataset(small_cifar10, torch.device("cpu"))
    before = torch.get_rng_state()
    result = find_lr(recipe, config, data, torch.device("cpu"), seed=3, start=0.1, end=100,
                     num_steps=15)
    assert torch.equal(torch.get_rng_state(), before)
    folder = tmp_path_factory.mktemp("lr-find")
    return recipe, config, data, result, folder, write_result(result, folder, plot=False)


def test_a_short_real_sweep_gives_finite_suggestions_in_config_units(small_sweep):
    recipe, config, _, result, _, _ = small_sweep
    assert 5 <= len(result.losses) <= 15 and all(math.isfinite(v) for v in result.smoothed)
    assert result.losses[0] == pytest.approx(math.log(10), abs=0.05)  # chance, 10 classes
    assert min(result.smoothed) < result.smoothed[0] - 0.02  # it learned something
    assert result.recommended is not None and result.reason
    for rule, s in result.suggestions.items():
        if s is not None:
            assert 0.1 / 10 <= s.multiplier <= 100 and math.isfinite(s.loss)
            assert s.values == {"lr": pytest.approx(config.lr * s.multiplier)}
    assert result.tuned_lrs == {"lr": 11.5} and result.recipe == "airbench94"
    table = "\n".join(summary_lines(result))
    assert "valley" in table and "x tuned" in table and "recommended" in table


def test_the_result_is_written_as_json_and_read_back(small_sweep):
    recipe, _, _, result, folder, written = small_sweep
    assert [p.name for p in written] == ["lr_find.json"]
    saved = json.loads(written[0].read_text())
    assert saved["recipe"] == "airbench94" and saved["config"]["widths"] == [16, 32, 32]
    assert saved["lrs"]["lr"] == pytest.approx([11.5 * m for m in saved["multipliers"]])
    assert saved["recommended"] == result.recommended
    assert not list(folder.glob("*.part"))
    assert read_result(folder, recipe) == read_result(written[0], recipe) == result


def test_the_plot_marks_every_suggestion_and_the_tuned_lr(small_sweep, tmp_path):
    pytest.importorskip("matplotlib")

    result = small_sweep[3]
    ax = lr_finder_figure(result).axes[0]
    assert ax.get_xscale() == "log"
    labels = [line.get_label() for line in ax.lines]
    found = [rule for rule, s in result.suggestions.items() if s]
    assert sum(label.startswith(tuple(found)) for label in labels) == len(found)
    assert f"{result.recommended} (recommended)" in " ".join(labels)
    assert any(label == "tuned lr 11.5" for label in labels)

    png = write_result(result, tmp_path)[1]
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") and png.stat().st_size > 20_000


def test_a_sweep_of_no_recipe_is_plotted_against_its_first_groups_lr():
    pytest.importorskip("matplotlib")

    model, optimizers, loss_fn, batches = tiny_setup()
    result = lr_range_test(model, optimizers, loss_fn, batches, start=1e-3, end=10, num_steps=20)
    ax = lr_finder_figure(result).axes[0]
    assert ax.get_xlabel() == "lr of optimizer0.group0"
    assert "the starting lrs (1x)" in [line.get_label() for line in ax.lines]


def test_without_matplotlib_plotting_says_what_to_install(small_sweep, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # import fails
    with pytest.raises(InputError, match=r"pip install \"fastcifar\[plot\]\""):
        write_result(small_sweep[3], tmp_path)
    assert (tmp_path / "lr_find.json").exists()  # the numbers are written first


def test_lr_from_finder_applies_the_recommended_multiplier(small_sweep):
    recipe, config, data, result, folder, _ = small_sweep
    new, message = lr_from_finder(folder, recipe, config, data, torch.device("cpu"), seed=3)
    assert new == scale_lrs(config, result.recommendation.multiplier)
    assert result.recommended in message and "lr 11.5 ->" in message

    other = dataclasses.replace(config, batch_size=128)
    _, message = lr_from_finder(folder, recipe, other, data, torch.device("cpu"), seed=3)
    assert "batch_size=256" in message  # the finder's config differs: said, not refused
    with pytest.raises(InputError, match="lr=11.5.*lr=5"):
        lr_from_finder(folder, recipe, scale_lrs(config, 0.5), data, torch.device("cpu"), 3)


def test_lr_from_finder_without_a_file_runs_the_finder_and_saves_its_result(
        small_sweep, tmp_path, monkeypatch):
    recipe, config, data, result, _, _ = small_sweep
    runs = []
    monkeypatch.setattr(lr_finder, "find_lr", lambda *args, **kw: runs.append(kw) or result)
    new, message = lr_from_finder(None, recipe, config, data, torch.device("cpu"), seed=3,
                                  save=lambda r: write_result(r, tmp_path), num_steps=15)
    assert runs == [{"num_steps": 15}] and message.startswith("lr from the LR finder (")
    assert new.lr == pytest.approx(config.lr * result.recommendation.multiplier)
    assert read_result(tmp_path, recipe) == result


def test_lr_from_finder_fails_when_no_lr_in_the_sweep_trains(small_sweep, monkeypatch):
    recipe, config, data, result, _, _ = small_sweep
    flat = dataclasses.replace(result, recommended=None, reason="the loss never fell")
    monkeypatch.setattr(lr_finder, "find_lr", lambda *args, **kw: flat)
    with pytest.raises(RunFailed, match="no lr to recommend: the loss never fell"):
        lr_from_finder(None, recipe, config, data, torch.device("cpu"), seed=3)


def test_a_result_of_another_recipe_is_refused(small_sweep, tmp_path):
    *_, written = small_sweep
    muon = get_recipe("airbench94_muon")
    with pytest.raises(InputError, match="'airbench94'.*not 'airbench94_muon'.*--recipe "
                                         "airbench94_muon"):
        read_result(written[0], muon)
    with pytest.raises(InputError, match="no such file"):
        read_result(tmp_path / "missing.json", muon)
    (tmp_path / "lr_find.json").write_text('{"losses": []}')
    with pytest.raises(InputError, match="not a result of `fastcifar lr-find`"):
        read_result(tmp_path, muon)


# --- The command --------------------------------------------------------------------------

def run(capsys, *args):
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_lr_find_prints_the_suggestions_and_writes_its_files(tiny_archive, tmp_path, capsys,
                                                             monkeypatch):
    monkeypatch.setenv("FASTCIFAR_DATA", str(tmp_path / "cache"))
    out = tmp_path / "lr-find"
    code, printed, err = run(capsys, "lr-find", "--data", str(tiny_archive), "--device", "cpu",
                             "--set", "batch_size=30", "--set", "widths=8,16,16",
                             "--steps", "8", "--start", "0.1", "--end", "30", "--out", str(out))
    assert code == 0, err
    assert "multiplier" in printed and "valley" in printed and "min_div_10" in printed
    assert f"{out / 'lr_find.json'}" in printed and (out / "lr_find.png").exists()
    saved = json.loads((out / "lr_find.json").read_text())
    assert saved["settings"]["steps"] == 8 and saved["config"]["batch_size"] == 30


@pytest.mark.parametrize("args, message", [(["--start", "10", "--end", "1"], "start < end"),
                                           (["--steps", "3"], "at least 5 steps")])
def test_lr_find_refuses_bad_sweeps_before_loading_data(args, message, tmp_path, capsys):
    code, _, err = run(capsys, "lr-find", "--data", str(tmp_path / "absent"), *args)
    assert code == 2 and message in err
