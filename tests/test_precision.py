"""--precision: what each choice puts where, and bfloat16 autocast training on a CPU."""

from __future__ import annotations

import dataclasses
import json
import warnings

import pytest
import torch
from torch import nn

from fastcifar.cli import main
from fastcifar.errors import InputError, SlowChoice
from fastcifar.recipes import get_recipe
from fastcifar.train import device, loop
from fastcifar.train.device import choose_precision
from fastcifar.data.dataset import ImageData
from fastcifar.data.loader import DeviceData
from fastcifar.train.loop import train_run

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTCIFAR_DATA", str(tmp_path / "cache"))


def test_on_a_cpu_auto_and_float32_are_float32_without_autocast_or_loss_scaling():
    for choice, recipe_mixed in (("auto", False), ("auto", True), ("float32", True)):
        precision = choose_precision(choice, CPU, recipe_mixed)
        assert precision.weights == torch.float32 and precision.autocast_dtype is None
        assert not precision.scaler.is_enabled()


def test_a_disabled_scaler_leaves_the_loss_and_the_step_as_they_are():
    """What lets the training step run the same six lines with and without float16."""
    scaler = choose_precision("float32", CPU, recipe_mixed=False).scaler
    weight = nn.Parameter(torch.tensor([1.0]))
    opt = torch.optim.SGD([weight], lr=0.5)
    loss = (3 * weight).sum()
    assert scaler.scale(loss) is loss
    loss.backward()
    scaler.step(opt)
    scaler.update()
    assert weight.item() == pytest.approx(1.0 - 0.5 * 3)


def test_bfloat16_is_float32_weights_under_bfloat16_autocast_without_a_scaler():
    precision = choose_precision("bfloat16", CPU, recipe_mixed=False)
    assert precision.autocast_dtype == torch.bfloat16 and not precision.scaler.is_enabled()
    assert precision.weights == torch.float32
    conv = nn.Conv2d(3, 4, 3)
    with precision.autocast():
        assert conv(torch.randn(1, 3, 8, 8)).dtype == torch.bfloat16
    assert conv.weight.dtype == torch.float32


@pytest.mark.parametrize("native, warns", [(False, True), (True, False), (None, False)])
def test_bfloat16_on_a_cpu_warns_only_where_it_is_known_to_be_emulated(monkeypatch, native,
                                                                      warns):
    """Without AMX or AVX512-BF16 a bfloat16 step is many times slower than float32: say so,
    once, and still do what was asked. Where the CPU cannot be told (ARM, Macs), stay quiet."""
    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: native)
    device._warn_emulated_bf16.cache_clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        precision = choose_precision("bfloat16", CPU, recipe_mixed=False)
        choose_precision("bfloat16", CPU, recipe_mixed=True)  # a run asks more than once
    assert precision.autocast_dtype == torch.bfloat16
    messages = [str(w.message) for w in caught]
    if warns:
        assert len(messages) == 1 and "no AMX or AVX512-BF16" in messages[0]
        assert caught[0].category is SlowChoice
    else:
        assert messages == []


def test_the_cpu_bfloat16_check_answers_on_x86_and_abstains_elsewhere(monkeypatch):
    monkeypatch.setattr(device.platform, "machine", lambda: "x86_64")
    assert device.cpu_has_native_bf16() in (True, False)
    monkeypatch.setattr(device.platform, "machine", lambda: "arm64")
    assert device.cpu_has_native_bf16() is None


@pytest.mark.parametrize("choice, device, message", [
    ("bfloat16", "mps", "expected a CUDA or CPU device"),
    ("fp8", "cpu", "expected one of auto, float32, bfloat16"),
])
def test_unsupported_precisions_are_refused(choice, device, message):
    with pytest.raises(InputError, match=message):
        choose_precision(choice, torch.device(device), recipe_mixed=False)


def test_a_bfloat16_run_computes_in_bfloat16_keeps_float32_weights_and_learns_as_float32(
        small_cifar10):
    """Narrow (16/32/32), on 1,000 images, without TTA: on a CPU without AMX or AVX512-BF16,
    bfloat16 is emulated and the full-width net on 2,000 images took over ten minutes here
    (float32: 79 s). This one: 24 s, 23.6% against float32's 23.0% (an AVX2 EPYC)."""
    recipe = get_recipe("airbench94")
    config = dataclasses.replace(recipe.config, batch_size=64, epochs=4, widths=(16, 32, 32),
                                 tta_level=0)
    subset = small_cifar10.balanced_subset(1000)
    data = DeviceData.from_dataset(ImageData(subset.train_images, subset.train_labels,
                                             subset.test_images[:500], subset.test_labels[:500],
                                             subset.classes), CPU)
    conv_outputs, weights = set(), []

    def record_conv_dtypes(model):
        weights.extend(model.parameters())
        for module in model.modules():
            if isinstance(module, nn.Conv2d):
                module.register_forward_hook(
                    lambda _m, _i, out: conv_outputs.add(out.dtype))
        return model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the emulation warning, where it applies
        result = train_run(recipe, config, data, CPU, seed=0, precision="bfloat16",
                           model_transform=record_conv_dtypes)
    assert conv_outputs == {torch.bfloat16}  # training steps and evaluation alike
    assert weights and {w.dtype for w in weights} == {torch.float32}
    losses = [e.train_loss for e in result.epochs]
    assert losses[-1] < losses[0]
    assert result.accuracy > 0.18, result  # chance is 0.10
    reference = train_run(recipe, config, data, CPU, seed=0, precision="float32")
    assert abs(result.accuracy - reference.accuracy) < 0.03, (result, reference)


TINY = ["--device", "cpu", "--epochs", "2", "--set", "batch_size=30", "--set", "tta_level=0",
        "--set", "widths=8,16,16", "--no-progress", "--checkpoints"]


def test_the_command_prints_the_emulation_warning_as_one_line(tiny_archive, tmp_path,
                                                             monkeypatch, capsys):
    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: False)
    device._warn_emulated_bf16.cache_clear()
    args = ["train", "--data", str(tiny_archive), *TINY, "--epochs", "1",
            "--precision", "bfloat16", "--out", str(tmp_path / "run")]
    assert main(args) == 0
    err = capsys.readouterr().err.splitlines()
    assert [line for line in err if "AVX512-BF16" in line] == [
        line for line in err if line.startswith("fastcifar: warning: --precision bfloat16: "
                                                "this CPU has no AMX or AVX512-BF16")]
    assert len([line for line in err if "AVX512-BF16" in line]) == 1
    assert "UserWarning" not in "\n".join(err)


def test_cli_records_the_precision_and_resume_keeps_it(tiny_archive, tmp_path, monkeypatch,
                                                       capsys):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    args = ["train", "--data", str(tiny_archive), *TINY, "--precision", "bfloat16"]
    assert main([*args, "--out", str(whole)]) == 0
    assert json.loads((whole / "config.json").read_text())["precision"] == "bfloat16"
    assert json.loads((whole / "summary.json").read_text())["precision"] == "bfloat16"

    real = loop.evaluation_metrics

    def interrupt_in_epoch_2(*a, **k):
        if (cut / "last.pt").exists():  # written after epoch 1's validation
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(loop, "evaluation_metrics", interrupt_in_epoch_2)
    assert main([*args, "--out", str(cut)]) == 130
    monkeypatch.setattr(loop, "evaluation_metrics", real)

    assert main(["train", "--resume", str(cut), "--precision", "float32"]) == 2
    assert "drop --precision" in capsys.readouterr().err
    assert main(["train", "--resume", str(cut)]) == 0
    assert "continuing from epoch 1" in capsys.readouterr().out
    a, b = (json.loads((d / "summary.json").read_text()) for d in (whole, cut))
    assert b["precision"] == "bfloat16"
    assert a["runs"][0]["accuracy"] == b["runs"][0]["accuracy"]


def test_cli_refuses_an_unknown_precision(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["train", "--precision", "half"])
    assert stop.value.code == 2
    assert "invalid choice: 'half'" in capsys.readouterr().err


def test_the_step_sums_the_loss_in_float32_when_the_logits_are_float16():
    """Half-precision weights (a GPU's speed-run numerics) give float16 logits: summed in
    float16 the loss of 2000 examples at 40 each is inf (above 65504); the step sums in
    float32 and gets 80000."""
    from fastcifar.optim.losses import summed_cross_entropy
    from fastcifar.train.loop import training_step

    class FixedLogits(nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(torch.ones((), dtype=torch.float16))

        def forward(self, x):
            logits = torch.zeros(len(x), 10, dtype=torch.float16)
            logits[:, 0] = 40
            return logits * self.scale

    model, labels = FixedLogits(), torch.ones(2000, dtype=torch.long)
    loss_fn = summed_cross_entropy()
    assert not torch.isfinite(loss_fn(model(labels), labels))  # float16 overflows
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    _, loss = training_step(model, labels, labels, loss_fn, [opt], [],
                            choose_precision("float32", CPU, recipe_mixed=False))
    assert loss.dtype == torch.float32 and loss.item() == pytest.approx(80000, rel=1e-3)


# One speed run for each set of blocks whose float16 numerics differ: SGD with lookahead,
# Muon iterating in bfloat16 and in float16, no BatchNorm, the proxy's selection, Page's
# GhostBatchNorm and CELU, hlb's cutmix and EMA. The other recipes call these same blocks
# with other values (tests/test_cuda_rehearsal.py runs each on the stand-in's GPU path).
FLOAT16_RUNS = ["airbench94", "airbench94_muon", "hiverge94", "airbench94_bnfree",
                "airbench96_faster", "bag_of_tricks", "hlb"]


@pytest.mark.parametrize("name", FLOAT16_RUNS)
def test_float16_on_a_cpu_rehearses_the_gpu_numerics(name):
    """What auto is on CUDA, run on the CPU at the speed run's own batch size: half
    weights and data, BatchNorm in float32, channels_last, the loss summed in float32; the
    loss stays finite and falls. Torch's float16 convolution backward on a CPU is 20 to 60
    times float32's (a step of airbench94 narrowed to widths 8-16 at 32 px and batch 1024
    takes 19 s here), so the nets are narrowed further and the images are 16 px, the
    smallest the three pools take; the batch, the loss sum's size, is the recipe's."""
    torch.manual_seed(0)
    recipe = get_recipe(name)
    batch = recipe.config.batch_size
    widths = tuple(4 if i == 0 else 8 for i in range(len(recipe.config.widths)))
    config = dataclasses.replace(recipe.config, epochs=3, widths=widths, image_size=16,
                                 progressive_sizes=())  # (a curriculum needs 24 px or more)
    if hasattr(config, "proxy_widths"):  # airbench96_faster's proxy: as narrow as the net
        config = dataclasses.replace(config, proxy_widths=widths)
    labels = torch.arange(2 * batch) % 4
    images = torch.randn(2 * batch, 3, 16, 16) + labels.view(-1, 1, 1, 1)
    half = images.half().contiguous(memory_format=torch.channels_last)
    data = DeviceData(half, labels, half[:256], labels[:256], 4)
    seen = {"batches": set()}

    def record(model):
        seen["conv"] = {m.weight.dtype for m in model.modules() if isinstance(m, nn.Conv2d)}
        seen["norm"] = {m.weight.dtype for m in model.modules()
                        if isinstance(m, nn.modules.batchnorm._BatchNorm)}
        model.register_forward_pre_hook(
            lambda module, args: seen["batches"].add(len(args[0])) if module.training else None)
        return model

    result = train_run(recipe, config, data, CPU, seed=0, precision="float16",
                       model_transform=record)
    assert seen["conv"] == {torch.float16} and seen["norm"] <= {torch.float32}
    # (airbench96_faster's network sees the hardest part of each batch its proxy chose)
    assert seen["batches"] == {getattr(config, "select_keep", batch)}
    losses = [e.train_loss for e in result.epochs]
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0], losses
