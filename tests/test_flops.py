"""FLOPs of a run and the share of the device's peak: counted on meta tensors, so fast."""

from __future__ import annotations

import dataclasses
import functools
import json
import re

import pytest
import torch

from fastcifar.bench.flops import count_flops, measure_peak_tflops, run_flops
from fastcifar.cli import main
from fastcifar.models.airbench import AirbenchNet
from fastcifar.recipes import RECIPES, get_recipe
from fastcifar.report.records import RunFolder

PUBLISHED = [name for name, recipe in RECIPES.items() if recipe.target.pflops is not None]


@functools.cache
def flops_of(name: str, **changes):
    """run_flops of a recipe with some hyperparameters changed; counted once per session."""
    recipe = RECIPES[name]
    return run_flops(recipe, dataclasses.replace(recipe.config, **changes))


def run(capsys, *args):
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def conv_flops(c_in: int, c_out: int, k: int, size: int) -> int:
    """A k x k convolution's forward FLOPs per image: a multiply-add per weight per pixel."""
    return 2 * c_in * c_out * k * k * size * size


@pytest.mark.parametrize("name", PUBLISHED)
def test_a_run_counts_within_10_percent_of_its_published_flops(name):
    flops = flops_of(name)
    assert flops.total / 1e15 == pytest.approx(RECIPES[name].target.pflops, rel=0.10)
    assert flops.total == flops.train + flops.eval


def test_a_conv_layer_costs_2_cin_cout_k2_hw_per_image():
    conv = AirbenchNet().groups[1].conv1.to("meta")  # 64 -> 256 channels, 3x3, at 15x15
    images = torch.empty(8, 64, 15, 15, device="meta")
    assert count_flops(lambda: conv(images)) == 8 * conv_flops(64, 256, 3, 15)


def test_an_airbench94_forward_is_its_convs_and_head():
    model = AirbenchNet((64, 256, 256)).to("meta")
    per_image = (conv_flops(3, 24, 2, 31)  # whitening, no padding: 32 -> 31
                 + conv_flops(24, 64, 3, 31) + conv_flops(64, 64, 3, 15)  # max-pool halves
                 + conv_flops(64, 256, 3, 15) + conv_flops(256, 256, 3, 7)
                 + conv_flops(256, 256, 3, 7) + conv_flops(256, 256, 3, 3)
                 + 2 * 256 * 10)  # the linear head
    assert count_flops(lambda: model(torch.empty(5, 3, 32, 32, device="meta"))) == 5 * per_image


def test_training_flops_grow_linearly_with_epochs_and_evaluation_does_not():
    short = flops_of("airbench94", epochs=3, whiten_bias_epochs=0)
    long = flops_of("airbench94", epochs=6, whiten_bias_epochs=0)
    assert long.steps == 2 * short.steps == 2 * 3 * (50_000 // 1024)
    assert long.train == 2 * short.train
    assert long.eval == short.eval == 10_000 * 6 * count_flops(
        lambda: AirbenchNet().to("meta").eval()(torch.empty(1, 3, 32, 32, device="meta")))


def test_freezing_the_whitening_bias_saves_the_input_gradient_of_the_first_conv():
    for_3_epochs = flops_of("airbench94", epochs=6, whiten_bias_epochs=3)
    never = flops_of("airbench94", epochs=6, whiten_bias_epochs=0)
    input_gradient = 1024 * conv_flops(24, 64, 3, 31)  # as costly as that conv's forward
    steps_with_bias = 3 * (50_000 // 1024)
    assert for_3_epochs.train - never.train == steps_with_bias * input_gradient


def test_a_resolution_curriculum_counts_each_epoch_at_its_side():
    """Epochs 1-3 at 24 px, 4-6 at 28 px, the rest at 32 (Fable E1's curriculum): each
    step costs what a forward and backward at its side costs."""
    full = flops_of("airbench94", epochs=9, whiten_bias_epochs=0)
    curriculum = flops_of("airbench94", epochs=9, whiten_bias_epochs=0,
                          progressive_sizes=(24, 24, 24, 28, 28, 28))
    epoch = {side: flops_of("airbench94", epochs=1, whiten_bias_epochs=0,
                            progressive_sizes=(side,)).train for side in (24, 28, 32)}
    assert epoch[24] < epoch[28] < epoch[32]
    assert full.train == 9 * epoch[32]
    assert curriculum.train == 3 * (epoch[24] + epoch[28] + epoch[32])
    assert curriculum.eval == full.eval  # tested at full size
    assert 0.6 < curriculum.train / full.train < 0.85


def test_the_peak_of_a_small_matrix_product_on_cpu_is_positive():
    assert measure_peak_tflops(torch.device("cpu"), size=32, min_seconds=0.01) > 0


@pytest.fixture
def recorded_run(tmp_path):
    """A run folder as `fastcifar train` writes it: 2 epochs of airbench94 on 5,000 images,
    evaluated on 1,000, two runs timed at 2 s and 4 s."""
    config = dataclasses.replace(RECIPES["airbench94"].config, epochs=2)
    folder = RunFolder(tmp_path / "run")
    folder.write_json("config.json", {"recipe": "airbench94", "config": config})
    folder.write_json("summary.json", {"recipe": "airbench94", "train_images": 5000,
                                       "test_images": 1000, "device": "NVIDIA A100",
                                       "runs": [{"train_seconds": 2.0}, {"train_seconds": 4.0}]})
    return folder.path, config


def test_the_share_of_peak_of_a_recorded_run(recorded_run, capsys):
    path, config = recorded_run
    code, out, err = run(capsys, "flops", "--run", str(path), "--peak-tflops", "100")
    assert code == 0, err
    flops = run_flops(get_recipe("airbench94"), config, train_images=5000, test_images=1000)
    assert flops.steps == 2 * (5000 // 1024)
    share = flops.total / (3.0 * 100e12)  # the runs' mean time at 100 TFLOP/s
    assert re.search(r"([\d.]+)% of the peak", out).group(1) == f"{100 * share:.1f}"
    assert f"{flops.total / 1e15:.4g} PFLOPs" in out and "published" not in out
    assert "over 100%" not in out

    # A peak below what the run achieved: the share is over 100%, and the output says why.
    low_peak = str(flops.total / 3.0 / 2e12)  # half the run's own TFLOP/s
    code, out, err = run(capsys, "flops", "--run", str(path), "--peak-tflops", low_peak)
    assert code == 0 and "200.0% of the peak" in out
    assert "note: over 100% means the run computed faster than the peak given" in out


def test_flops_prints_the_count_and_the_time_at_100_percent_of_the_peak(capsys):
    code, out, err = run(capsys, "flops", "--recipe", "airbench94", "--peak-tflops", "312")
    assert code == 0, err
    total = flops_of("airbench94").total
    assert f"{total / 1e15:.4g} PFLOPs  (published: 0.36)" in out
    assert f"takes at least {total / 312e12:.3g} s" in out


@pytest.mark.parametrize("args, message", [
    (["--recipe", "nope"], "unknown recipe 'nope'"),
    (["--run", "/no/such/run"], "no such run folder"),
    (["--peak-tflops", "0"], "--peak-tflops must be a positive number"),
    (["--peak-tflops", "-5"], "--peak-tflops must be a positive number"),
    (["--recipe", "airbench95", "--run", "{run}"], "is a run of airbench94, not airbench95"),
    (["--run", "{empty}"], "no config.json"),
])
def test_bad_flops_input_is_one_clear_message_and_exit_2(recorded_run, tmp_path, capsys,
                                                         args, message):
    (tmp_path / "empty").mkdir()
    paths = {"run": str(recorded_run[0]), "empty": str(tmp_path / "empty")}
    code, _, err = run(capsys, "flops", *(a.format(**paths) for a in args))
    assert code == 2
    assert message in err and err.startswith("fastcifar: error:")
    assert "Traceback" not in err


def test_the_peak_is_measured_in_the_recorded_runs_precision(recorded_run, monkeypatch,
                                                             capsys):
    """A bfloat16 run against a float32 peak once claimed 321% of the peak."""
    from fastcifar.cli import tools as cli
    path, _ = recorded_run
    summary = json.loads((path / "summary.json").read_text())
    (path / "summary.json").write_text(json.dumps({**summary, "precision": "bfloat16"}))
    asked = []
    monkeypatch.setattr(cli, "measure_peak_tflops",
                        lambda device, dtype=None: asked.append(dtype) or 50.0)
    code, out, err = run(capsys, "flops", "--run", str(path), "--measure-peak",
                         "--device", "cpu")
    assert code == 0, err
    assert asked == [torch.bfloat16] and "bfloat16 matrix product, the run's precision" in out
