"""Short real-data runs learn; the run folder records what happened."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import fastcifar
from fastcifar.recipes import get_recipe
from fastcifar.data.loader import DeviceData
from fastcifar.train.loop import train_run


def test_short_airbench94_run_learns(small_cifar10):
    """At a quarter of its widths (the full net took a minute here), as the other airbench
    recipes' short runs (tests/test_recipes_airbench.py)."""
    recipe = get_recipe("airbench94")
    config = dataclasses.replace(recipe.config, batch_size=100, epochs=4, widths=(16, 64, 64))
    data = DeviceData.from_dataset(first_test_images(small_cifar10, 500), torch.device("cpu"))
    result = train_run(recipe, config, data, torch.device("cpu"), seed=0)

    losses = [e.train_loss for e in result.epochs]
    assert len(result.epochs) == 4
    assert losses[-1] < losses[0]
    # 2,000 training images, 80 steps: far from 94%, but far above chance (10%); measured
    # 42.6% (seed 0) and 42.2% (seed 1) on the stand-in
    assert result.accuracy > 0.30, result
    assert result.seconds > 0 and set(result.seconds_by_part) == {"init", "train", "tta_eval"}


def first_test_images(data: fastcifar.ImageData, n: int) -> fastcifar.ImageData:
    """The data with only its first n test images."""
    return fastcifar.ImageData(data.train_images, data.train_labels, data.test_images[:n],
                               data.test_labels[:n], data.classes, data.name)


def test_runs_with_the_same_seed_repeat_and_other_seeds_differ(small_cifar10):
    recipe = get_recipe("airbench94")
    config = dataclasses.replace(recipe.config, batch_size=250, epochs=1, tta_level=0,
                                 widths=(16, 64, 64))
    tiny = first_test_images(small_cifar10.balanced_subset(500), 200)
    data = DeviceData.from_dataset(tiny, torch.device("cpu"))
    a, b, c = (train_run(recipe, config, data, torch.device("cpu"), seed=s) for s in (3, 3, 4))
    assert a.accuracy == b.accuracy and a.epochs[0].train_loss == b.epochs[0].train_loss
    assert a.epochs[0].train_loss != c.epochs[0].train_loss


def test_the_warm_up_is_untimed_and_changes_no_timed_run(tmp_path, monkeypatch):
    """On CUDA (and with --compile) an untimed warm-up comes first: it must not change the
    runs after it, and its seconds are reported apart."""
    import json
    from fastcifar.sessions import session
    from fastcifar.train import warmup
    assert warmup.needs_warmup(torch.device("cuda"), False)
    assert warmup.needs_warmup(torch.device("cpu"), True)
    assert not warmup.needs_warmup(torch.device("cpu"), False)
    rng = np.random.default_rng(0)
    labels = np.arange(200) % 4
    images = rng.integers(0, 120, (200, 32, 32, 3)).astype(np.uint8)
    images[..., 0] += (labels * 40).astype(np.uint8)[:, None, None]
    data = fastcifar.ImageData(images[:160], labels[:160], images[160:], labels[160:])
    options = dict(data=data, epochs=1, batch_size=32, device="cpu", verbose=False)
    plain = fastcifar.train("airbench94", out=tmp_path / "plain", **options)
    monkeypatch.setattr(session, "needs_warmup", lambda device, compile_: True)
    warmed = fastcifar.train("airbench94", out=tmp_path / "warmed", **options)
    assert warmed.runs[0].accuracy == plain.runs[0].accuracy
    assert [e.train_loss for e in warmed.runs[0].epochs] == [e.train_loss for e in plain.runs[0].epochs]
    untimed = [json.loads((tmp_path / f / "summary.json").read_text())["untimed_seconds"]
               for f in ("plain", "warmed")]
    assert untimed[0]["warmup"] == 0 and untimed[1]["warmup"] > 0


def test_compile_takes_torch_compiles_modes(tmp_path, monkeypatch):
    """--compile MODE reaches torch.compile (recorded here instead of compiling: compiling
    on a CPU takes minutes); a mode torch does not have is refused before any work."""
    calls = []

    def record(model, **kwargs):
        calls.append(kwargs)
        return model

    monkeypatch.setattr(torch, "compile", record)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (96, 32, 32, 3)).astype(np.uint8)
    data = fastcifar.ImageData(images[:64], np.arange(64) % 2, images[64:], np.arange(32) % 2)
    options = dict(data=data, epochs=1, batch_size=16, device="cpu", verbose=False)
    fastcifar.train("airbench94", compile="max-autotune", **options)
    # Once: the warm-up run and the timed run train one network, with static shapes.
    assert calls == [{"mode": "max-autotune", "dynamic": False}]
    calls.clear()
    fastcifar.train("airbench94", compile=True, **options)
    assert calls == [{"dynamic": False}]
    with pytest.raises(fastcifar.InputError, match="max-autotune"):
        fastcifar.train("airbench94", compile="fastest", out=tmp_path / "x", **options)
    assert not (tmp_path / "x").exists()
