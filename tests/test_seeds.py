"""A run's three sources of randomness fixed apart (train/seeds.py): the network's
initialisation, the order of the training images, and their augmentation. Fixing one and
varying another changes only what the varied one drives; with none fixed, --seed drives
all three as before."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

import fastcifar
from fastcifar.cli import main
from fastcifar.data.loader import DeviceData
from fastcifar.recipes import get_recipe
from fastcifar.train import loop
from fastcifar.train.seeds import RunSeeds

CPU = torch.device("cpu")
LOADER = loop.DeviceLoader


def tiny_data() -> DeviceData:
    torch.manual_seed(0)
    labels = torch.arange(96) % 3
    images = torch.randn(96, 3, 32, 32) + labels.view(-1, 1, 1, 1)
    return DeviceData(images.contiguous(memory_format=torch.channels_last), labels,
                      images[:32], labels[:32], 3)


def what_a_run_drew(monkeypatch, seeds) -> dict:
    """One epoch of a narrow airbench94 (translation, alternating flip): the network it
    started from, each batch's images in the order they came, and the epoch's augmented
    images in the training set's order."""
    seen = {"order": [], "augmented": None, "start": None}

    class Recorder(LOADER):
        def epoch_images(self, epoch):
            images = super().epoch_images(epoch)
            seen["augmented"] = images.clone()
            return images

        def __iter__(self):
            for batch in super().__iter__():
                seen["order"].append(self.last_index.clone())
                yield batch

    def first_weights(model):
        seen["start"] = {k: v.clone() for k, v in model.state_dict().items()}
        return model

    monkeypatch.setattr(loop, "DeviceLoader", Recorder)
    recipe = get_recipe("airbench94")
    config = dataclasses.replace(recipe.config, batch_size=32, epochs=1, widths=(8, 16, 16),
                                 tta_level=0)
    loop.train_run(recipe, config, tiny_data(), CPU, seeds, model_transform=first_weights)
    seen["order"] = torch.cat(seen["order"])
    return seen


def same(a, b) -> bool:
    if isinstance(a, dict):
        return all(torch.equal(a[k], b[k]) for k in a)
    return torch.equal(a, b)


def differ(a: dict, b: dict) -> set[str]:
    return {k for k in ("start", "order", "augmented") if not same(a[k], b[k])}


def test_varying_one_seed_fixed_apart_changes_only_what_it_drives(monkeypatch):
    base = what_a_run_drew(monkeypatch, RunSeeds(0, init=1, order=2, augment=3))
    assert differ(base, what_a_run_drew(monkeypatch, RunSeeds(0, init=9, order=2, augment=3))) \
        == {"start"}
    assert differ(base, what_a_run_drew(monkeypatch, RunSeeds(0, init=1, order=9, augment=3))) \
        == {"order"}
    assert differ(base, what_a_run_drew(monkeypatch, RunSeeds(0, init=1, order=2, augment=9))) \
        == {"augmented"}
    # The run's seed drives only those not fixed apart.
    assert differ(base, what_a_run_drew(monkeypatch, RunSeeds(5, init=1, order=2, augment=3))) \
        == set()
    assert differ(what_a_run_drew(monkeypatch, RunSeeds(0, order=2)),
                  what_a_run_drew(monkeypatch, RunSeeds(1, order=2))) == {"start", "augmented"}


def test_with_nothing_fixed_apart_the_seed_drives_everything_as_before(monkeypatch):
    plain = what_a_run_drew(monkeypatch, 4)
    assert differ(plain, what_a_run_drew(monkeypatch, RunSeeds(4))) == set()
    assert differ(plain, what_a_run_drew(monkeypatch, 5)) == {"start", "order", "augmented"}


def test_a_battery_keeps_the_fixed_seeds_for_every_run_and_records_them(tmp_path):
    data = fastcifar.ImageData(
        (torch.rand(80, 32, 32, 3) * 255).to(torch.uint8).numpy(), (torch.arange(80) % 3).numpy(),
        (torch.rand(15, 32, 32, 3) * 255).to(torch.uint8).numpy(), (torch.arange(15) % 3).numpy())
    fastcifar.train("airbench94", data=data, runs=2, seed=7, order_seed=3, epochs=1,
                    batch_size=20, widths=(8, 16, 16), tta_level=0, out=tmp_path / "run",
                    verbose=False)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert (config["seed"], config["order_seed"], config["init_seed"],
            config["augment_seed"]) == (7, 3, None, None)
    with pytest.raises(fastcifar.InputError, match="order_seed: 3 there, 4 here"):
        fastcifar.train("airbench94", data=data, runs=2, seed=7, order_seed=4, epochs=1,
                        batch_size=20, widths=(8, 16, 16), tta_level=0, out=tmp_path / "run",
                        reuse=True, verbose=False)


@pytest.mark.parametrize("value", ["-1", "x"])
def test_a_bad_fixed_seed_exits_2_before_any_work(value, capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--order-seed", value, "--device", "cpu"])
    assert e.value.code == 2 and "--order-seed" in capsys.readouterr().err
    with pytest.raises(fastcifar.InputError, match="augment_seed .--augment-seed. must be"):
        fastcifar.train("airbench94", augment_seed=-3)


def test_a_checkpoint_carries_the_loaders_own_generators():
    """A resumed run draws the epochs an uninterrupted one would."""
    data = tiny_data()
    config = get_recipe("airbench94").config

    def loader():
        order, augment = RunSeeds(0, order=5, augment=6).generators(CPU)
        return LOADER(data.train_images, data.train_labels, 32, config.augmentation(),
                      order=order, augment=augment)

    first = loader()
    for _ in first:
        pass
    state = first.state_dict()
    second_epoch = [(x.clone(), first.last_index.clone()) for x, _ in first]
    resumed = loader()
    resumed.load_state_dict(state)
    for (x, index), (y, _) in zip(second_epoch, resumed, strict=True):
        assert torch.equal(x, y) and torch.equal(index, resumed.last_index)
