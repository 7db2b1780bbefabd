"""Short real-data runs learn; the run folder records what happened."""

from __future__ import annotations

import dataclasses

import torch

from fastcifar.recipes import get_recipe
from fastcifar.data.loader import DeviceData
from fastcifar.train.loop import train_run


def test_short_airbench94_run_learns(small_cifar10):
    recipe = get_recipe("airbench94")
    config = dataclasses.replace(recipe.config, batch_size=256, epochs=4)
    data = DeviceData.from_dataset(small_cifar10, torch.device("cpu"))
    result = train_run(recipe, config, data, torch.device("cpu"), seed=0)

    losses = [e.train_loss for e in result.epochs]
    assert len(result.epochs) == 4
    assert losses[-1] < losses[0]
    # 2,000 training images, 28 steps: far from 94%, but far above chance (10%)
    assert result.accuracy > 0.30, result
    assert result.seconds > 0 and set(result.seconds_by_part) == {"init", "train", "tta_eval"}


def test_runs_with_the_same_seed_repeat_and_other_seeds_differ(small_cifar10):
    recipe = get_recipe("airbench94")
    config = dataclasses.replace(recipe.config, batch_size=250, epochs=1, tta_level=0)
    tiny = small_cifar10.balanced_subset(500)
    data = DeviceData.from_dataset(tiny, torch.device("cpu"))
    a, b, c = (train_run(recipe, config, data, torch.device("cpu"), seed=s) for s in (3, 3, 4))
    assert a.accuracy == b.accuracy and a.epochs[0].train_loss == b.epochs[0].train_loss
    assert a.epochs[0].train_loss != c.epochs[0].train_loss
