"""The general trainer (seed 004): ResNets, schedules, optimisers, crops for larger images,
and a short end-to-end run on an image-folder archive with top-1 and top-5."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from archives import fastai_archive
from fastcifar.cli import main
from fastcifar.data.augment import centre_crop, random_resized_crop
from fastcifar.data.fastai_images import BASE_URL_ENV
from fastcifar.optim.schedules import (MultiplierScheduler, one_cycle, one_cycle_momentum,
                                       step_decay, warmup_then)
from fastcifar.recipes import get_recipe
from fastcifar.optim.standard import OPTIMIZERS, decayed_and_not, param_groups
from fastcifar.models.resnet import resnet


@pytest.mark.parametrize("name, params", [("resnet18", 11_689_512), ("resnet34", 21_797_672),
                                          ("resnet50", 25_557_032)])
def test_resnets_have_the_published_parameter_counts(name, params):
    # He et al.'s ImageNet networks (1000 classes), as every reference implementation counts them
    assert sum(p.numel() for p in resnet(name, 1000).parameters()) == params


def test_stems_suit_their_image_sizes():
    imagenet, cifar = resnet("resnet18", 10, "imagenet"), resnet("resnet18", 10, "cifar")
    assert imagenet.stem(torch.zeros(1, 3, 128, 128)).shape[-1] == 32  # /4 before the blocks
    assert cifar.stem(torch.zeros(1, 3, 32, 32)).shape[-1] == 32  # CIFAR keeps all 32 pixels
    assert cifar(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_zero_init_residual_makes_every_block_start_as_identity_plus_relu():
    model = resnet("resnet18", 10, "cifar").eval()
    block = model.stages[0][0]
    x = torch.randn(2, 64, 8, 8)
    assert torch.equal(block(x), F.relu(x))


def torch_one_cycle(total, optimizer_class=torch.optim.SGD, **kwargs):
    """The lrs and momenta torch's OneCycleLR gives each step."""
    p = nn.Parameter(torch.zeros(1))
    opt = optimizer_class([p], lr=1.0, **kwargs)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1.0, total_steps=total)
    lrs, momenta = [], []
    for step in range(total):
        group = opt.param_groups[0]
        lrs.append(group["lr"])
        momenta.append(group["betas"][0] if "betas" in group else group["momentum"])
        opt.step()
        if step < total - 1:
            scheduler.step()
    return np.array(lrs), np.array(momenta)


@pytest.mark.parametrize("total", [10, 97, 400])
def test_one_cycle_is_torchs_onecycle_step_for_step(total):
    lrs, momenta = torch_one_cycle(total, momentum=0.9)
    np.testing.assert_allclose(one_cycle(total)[:total], lrs, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(one_cycle_momentum(total, 0.3, 0.85, 0.95)[:total], momenta, rtol=1e-12)


def test_the_scheduler_cycles_adamw_beta1_like_onecycle():
    total = 50
    _, torch_betas = torch_one_cycle(total, torch.optim.AdamW)
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([p], lr=1.0)
    scheduler = MultiplierScheduler(opt, one_cycle(total), one_cycle_momentum(total, 0.3, 0.85, 0.95))
    betas = []
    for _ in range(total):
        betas.append(opt.param_groups[0]["betas"][0])
        p.grad = torch.ones(1)
        opt.step()
        scheduler.step()
    np.testing.assert_allclose(betas, torch_betas, rtol=1e-12)
    assert opt.param_groups[0]["betas"][1] == 0.999


def test_step_decay_and_warmup_shapes():
    assert list(step_decay(8, 2, (2, 3), 0.1).round(6)) == [1, 1, 1, 1, 0.1, 0.1, 0.01, 0.01, 0.01]
    linear = warmup_then(10, 0.2, "linear")
    assert list(linear[:3]) == [0, 0.5, 1] and linear[-1] == 0 and np.all(np.diff(linear[2:]) < 0)
    flat = warmup_then(10, 0.0, "flat_cosine", flat=0.5)
    assert np.all(flat[:6] == 1) and flat[-1] == 0 and np.all(np.diff(flat[5:]) < 0)
    for schedule in (linear, flat, warmup_then(7, 0.3, "cosine")):
        assert schedule.max() == 1


def test_weight_decay_spares_norms_and_biases_unless_asked():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(2))
    model(torch.zeros(1, 3, 5, 5))
    decayed, spared = decayed_and_not(model)
    assert {id(p) for p in decayed} == {id(model[0].weight), id(model[3].weight)}
    assert {id(p) for p in spared} == {id(model[0].bias), id(model[1].weight),
                                       id(model[1].bias), id(model[3].bias)}
    config = get_recipe("resnet18_cifar").config
    groups = build_optimizer(model, config).param_groups
    assert [g["weight_decay"] for g in groups] == [config.weight_decay, 0.0]
    asked = build_optimizer(model, dataclasses.replace(config, decay_norms_and_biases=True))
    assert [len(g["params"]) for g in asked.param_groups] == [6]


@pytest.mark.parametrize("optimizer, kind", [("sgd", torch.optim.SGD), ("adamw", torch.optim.AdamW),
                                             ("decoupled_sgd", torch.optim.SGD)])
def test_optimizers_by_name(optimizer, kind):
    config = dataclasses.replace(get_recipe("resnet18_cifar").config, optimizer=optimizer)
    opt = build_optimizer(nn.Linear(3, 2), config)
    assert type(opt) is kind
    if optimizer == "decoupled_sgd":  # airbench's lr per 1024 examples, for a mean loss
        assert opt.param_groups[0]["nesterov"]
        assert opt.param_groups[0]["lr"] == pytest.approx(
            0.1 * config.batch_size / (1024 * (1 + 1 / (1 - config.momentum))))


def gradient_image(size: int) -> torch.Tensor:
    ramp = torch.linspace(0, 1, size)
    return torch.stack([ramp.expand(size, size), ramp[:, None].expand(size, size),
                        torch.zeros(size, size)])[None]


def test_random_resized_crop_whole_image_is_the_image_and_flip_mirrors():
    image = gradient_image(16).repeat(4, 1, 1, 1)
    same = random_resized_crop(image, 16, scale=(1, 1), ratio=(1, 1), flip=False)
    torch.testing.assert_close(same, image, atol=1e-5, rtol=0)
    torch.manual_seed(0)
    flipped = random_resized_crop(image, 16, scale=(1, 1), ratio=(1, 1), flip=True)
    mirrored = [torch.allclose(f, i.flip(-1), atol=1e-5) for f, i in zip(flipped, image)]
    kept = [torch.allclose(f, i, atol=1e-5) for f, i in zip(flipped, image)]
    assert all(m or k for m, k in zip(mirrored, kept)) and any(mirrored)


def test_random_resized_crop_covers_the_asked_share_of_the_image():
    torch.manual_seed(0)
    image = gradient_image(64).repeat(200, 1, 1, 1)
    crops = random_resized_crop(image, 16, scale=(0.25, 0.25), ratio=(1, 1), flip=False)
    assert crops.shape == (200, 3, 16, 16)
    widths = crops[:, 0, 0, -1] - crops[:, 0, 0, 0]  # the ramp spans half the side's range
    assert widths.mean() == pytest.approx(0.5 * 15 / 16, abs=0.02)
    lefts = crops[:, 0, 0, 0]
    assert lefts.min() < 0.05 and lefts.max() > 0.45  # at random places, all inside


def test_centre_crop_takes_the_middle():
    image = torch.arange(36.0).view(1, 1, 6, 6)
    assert centre_crop(image, 2).flatten().tolist() == [14, 15, 20, 21]


def test_imagewoof_recipe_downloads_trains_and_reports_top5(server, cache_dir, monkeypatch,
                                                            tmp_path, capsys):
    """The whole path of a user's first Imagewoof run, on a few hundred tiny images from a
    local server: download, decode and resize, random-resized crops, ResNet-18, top-1 and
    top-5, checkpoints."""
    server.serve("/imagewoof2-160.tgz", fastai_archive(per_class={"train": 24, "val": 6}))
    monkeypatch.setenv(BASE_URL_ENV, server.url("/"))
    out = tmp_path / "run"
    code = main(["train", "--recipe", "resnet18_imagewoof_adamw", "--image-size", "24",
                 "--epochs", "3", "--set", "batch_size=40", "--set", "lr=0.003", "--device",
                 "cpu", "--no-progress", "--out", str(out)])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert "imagewoof2-160, 240 train / 60 test images, 10 classes" in printed.out
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert all(r["val_top5"] >= r["val_accuracy"] for r in rows)
    # each class is a flat colour: learnable in a few steps, far above chance (10%, 50%)
    assert rows[-1]["val_accuracy"] > 0.3 and rows[-1]["val_top5"] > 0.7, rows[-1]
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    assert (out / "last.pt").exists() and (out / "best.pt").exists()
    config = json.loads((out / "config.json").read_text())
    assert config["data"] == "imagewoof" and config["config"]["image_size"] == 24

    assert main(["plot", str(out)]) == 0
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_refuses_a_folder_that_is_not_a_run(tmp_path, capsys):
    assert main(["plot", str(tmp_path)]) == 2
    assert "no metrics.jsonl" in capsys.readouterr().err


def test_train_takes_its_lr_from_the_finder(tiny_archive, tmp_path, capsys):
    tiny = ["--data", str(tiny_archive), "--device", "cpu", "--epochs", "1", "--no-progress",
            "--set", "batch_size=30", "--set", "widths=8,16,16", "--set", "tta_level=0"]
    first = tmp_path / "found"
    assert main(["train", *tiny, "--lr-from-finder", "--out", str(first)]) == 0
    assert "lr from the LR finder" in capsys.readouterr().out
    found = json.loads((first / "lr_find" / "lr_find.json").read_text())
    multiplier = found["suggestions"][found["recommended"]]["multiplier"]
    lr = json.loads((first / "config.json").read_text())["config"]["lr"]
    assert lr == pytest.approx(11.5 * multiplier) and lr != 11.5

    again = tmp_path / "again"
    assert main(["train", *tiny, "--lr-from-finder", str(first / "lr_find" / "lr_find.json"),
                 "--out", str(again)]) == 0
    assert json.loads((again / "config.json").read_text())["config"]["lr"] == lr


def test_metric_rows_reach_tensorboard_when_it_is_installed(tmp_path):
    pytest.importorskip("tensorboard", reason="TensorBoard is the optional extra "
                                              "fastcifar[tensorboard]")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from fastcifar.report.records import RunFolder

    folder = RunFolder(tmp_path)
    for epoch, accuracy in ((1, 0.25), (2, 0.5)):
        folder.add_metrics({"run": 1, "seed": 0, "epoch": epoch, "train_loss": 2.0 / epoch,
                            "val_accuracy": accuracy, "val_top5": 0.9, "lr": 1.0})
    events = EventAccumulator(str(tmp_path / "tensorboard" / "run-1"))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("val/accuracy")] == [(1, 0.25), (2, 0.5)]
    assert {"train/loss", "val/top5", "lr"} <= set(events.Tags()["scalars"])
    assert [r["epoch"] for r in folder.read_metrics()] == [1, 2]

    # Resumed in a new session from its checkpoint after epoch 1: epoch 2 again, then 3.
    resumed = RunFolder(tmp_path)
    resumed.metric_rows = folder.read_metrics()[:1]
    for epoch, accuracy in ((2, 0.55), (3, 0.6)):
        resumed.add_metrics({"run": 1, "seed": 0, "epoch": epoch, "val_accuracy": accuracy})
    assert len(list((tmp_path / "tensorboard" / "run-1").glob("events.out.tfevents.*"))) == 1
    events = EventAccumulator(str(tmp_path / "tensorboard" / "run-1"))
    events.Reload()
    assert [e.step for e in events.Scalars("val/accuracy")] == [1, 2, 3]
    assert [e.value for e in events.Scalars("val/accuracy")] == pytest.approx([0.25, 0.55, 0.6])


def build_optimizer(model, config):
    """The general trainer's optimiser, as its recipes build it."""
    return OPTIMIZERS[config.optimizer](param_groups(model, config.decay_norms_and_biases),
                                        config)
