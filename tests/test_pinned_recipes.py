"""Every built-in recipe pinned, so that a change to how the recipes are written (issue 37:
flat recipes) is seen to change nothing they do. tests/pinned_recipes.json holds, for each
recipe in RECIPES:

- its resolved config: every field's value, type and domain;
- what it says of itself: summary, target, tricks and the flags the loop reads;
- its set-up at full size (50,000 images, the data-dependent init on random images): the
  steps, each optimiser's parameter groups and hyperparameters, the lr and momentum
  schedules, the loss, the weight average and its decays, which parameters train in each
  epoch, the proxy selection, and a digest of the initialised weights;
- a short deterministic CPU run on random images, through build_model, setup and the
  training loop at 1/16 of the widths for the recipe's own epochs (the general trainer's
  ResNet-18s for 2 epochs at 32 px): every epoch's loss, and digests of the final weights
  and of the TTA logits.

The pins are written from the code as it stands by

    python tests/test_pinned_recipes.py --write

A change that means to change a recipe rewrites them and says why. The config, the recipe
and the set-up are compared on any machine; the short run bit for bit only on the CPU
kernels that wrote it (torch's version and the CPU's capability, as the file records):
elsewhere rounding differs in the last bits, and some recipes' runs (hlb, Muon's) amplify
that past any useful tolerance within a few steps, so there the run is skipped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import sys
import typing
from math import ceil
from pathlib import Path

import numpy as np
import pytest
import torch

from fastcifar.data.dataset import ImageData
from fastcifar.data.loader import DeviceData
from fastcifar.recipes import RECIPES
from fastcifar.recipes.fields import field_domains
from fastcifar.train.loop import train_run
from fastcifar.train.setup import set_up_without_data

PINS = Path(__file__).with_name("pinned_recipes.json")
KERNELS = f"torch {torch.__version__.split('+')[0]}, {torch.backends.cpu.get_cpu_capability()}"


def digest(values) -> str:
    """sha256 of an array's float64 values, or of a state dict's names and tensors."""
    h = hashlib.sha256()
    if isinstance(values, dict):
        for name, tensor in values.items():
            h.update(f"{name} {tensor.dtype} {tuple(tensor.shape)}".encode())
            h.update(tensor.detach().cpu().contiguous().flatten().view(torch.uint8).numpy())
    else:
        h.update(np.asarray(values, dtype=np.float64).tobytes())
    return h.hexdigest()[:16]


def jsonable(value):
    """A hyperparameter as JSON: numbers, strings, lists; a long list as its digest."""
    if isinstance(value, (list, tuple, np.ndarray)):
        return [jsonable(v) for v in value] if len(value) <= 8 else f"{len(value)}: {digest(value)}"
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return value if value is None or isinstance(value, (bool, int, float, str)) else str(value)


def config_pin(config) -> dict:
    """Each field as `value: type domain`, the value as repr writes it (exact)."""
    hints, domains = typing.get_type_hints(type(config)), field_domains(type(config))
    pins = {}
    for field in dataclasses.fields(config):
        hint = hints[field.name]
        kind = hint.__name__ if isinstance(hint, type) else str(hint)
        domain = f" {domains[field.name].interval} {domains[field.name]}" \
            if field.name in domains else ""
        pins[field.name] = f"{getattr(config, field.name)!r}: {kind}{domain}"
    return pins


def recipe_pin(recipe) -> dict:
    return {"summary": recipe.summary, "target": jsonable(dataclasses.astuple(recipe.target)),
            "tricks": [[t.name, t.what, jsonable(t.off)] for t in recipe.tricks],
            "flags": [recipe.checkpoints, recipe.mixed_precision, recipe.default_data,
                      recipe.progress_on_gpu]}


def optimiser_pin(optimiser) -> dict:
    groups = [{**{k: jsonable(v) for k, v in group.items() if k != "params"},
               "params": [len(group["params"]), sum(p.numel() for p in group["params"])]}
              for group in optimiser.param_groups]
    return {"type": type(optimiser).__name__, "groups": groups}


def setup_pin(recipe) -> dict:
    run = set_up_without_data(recipe, recipe.config)
    training, model = run.training, run.model
    average, selection = training.average, training.select
    outputs = torch.randn(8, 10, generator=torch.Generator().manual_seed(0))
    trainable = []
    for epoch in range(ceil(recipe.config.epochs)):
        if training.before_epoch is not None:
            training.before_epoch(epoch)
        trainable.append(sum(p.numel() for p in model.parameters() if p.requires_grad))
    return {
        "steps": [run.steps_per_epoch, run.steps], "weights": digest(model.state_dict()),
        "optimisers": [optimiser_pin(o) for o in training.optimizers],
        "lr_multipliers": jsonable(training.lr_multipliers), "momenta": jsonable(training.momenta),
        "loss": [training.loss(outputs, torch.arange(8)).item(), training.loss_scale],
        "average": None if average is None else {
            "name": average.name, "copy_back": average.copy_back,
            "every": training.average_every, "start": training.average_start,
            "decays": jsonable([training.average_decay(s) for s in range(run.steps + 1)])},
        "trainable_by_epoch": jsonable(trainable),
        "batch_transform": training.batch_transform is not None,
        "select": None if selection is None else {
            "keep": selection.keep, "train_every": selection.train_every,
            "proxy": digest(selection.proxy.state_dict()),
            "optimiser": optimiser_pin(selection.optimizer),
            "lr_multipliers": jsonable(selection.scheduler.multipliers[0])}}


def short_config(config):
    """The config at CPU scale: 2 steps an epoch, nets at 1/16 of their widths."""
    if hasattr(config, "model"):  # the general trainer's ResNet-18: no widths to shrink
        return dataclasses.replace(config, batch_size=8, epochs=min(config.epochs, 2.0),
                                   image_size=32 if config.image_size else 0)
    changes = {"batch_size": 32, "widths": tuple(max(4, w // 16) for w in config.widths)}
    if hasattr(config, "proxy_widths"):
        changes.update(proxy_widths=(4, 4, 4), select_keep=16)
    return dataclasses.replace(config, **changes)


def random_data(batch_size: int) -> DeviceData:
    """Two batches of random 32x32 training images and 16 test images, ten classes."""
    rng = np.random.default_rng(0)
    train, test = 2 * batch_size, 16
    data = ImageData(rng.integers(0, 256, (train, 32, 32, 3), dtype=np.uint8),
                     rng.permutation(np.arange(train) % 10),
                     rng.integers(0, 256, (test, 32, 32, 3), dtype=np.uint8),
                     rng.permutation(np.arange(test) % 10))
    return DeviceData.from_dataset(data, torch.device("cpu"))


def run_pin(recipe) -> dict:
    config = short_config(recipe.config)
    result = train_run(recipe, config, random_data(config.batch_size), torch.device("cpu"),
                       seed=0, precision="float32", record_examples=True)
    logits = torch.as_tensor(result.examples["test_logits"])
    return {"losses": [e.train_loss for e in result.epochs], "accuracy": result.accuracy,
            "weights": digest(result.model.state_dict()), "logits": digest({"logits": logits})}


@contextlib.contextmanager
def one_thread():
    """Bit for bit needs the same work split: one thread, as the suite's workers have."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def json_round_trip(value):
    return json.loads(json.dumps(value))


@pytest.fixture(scope="module")
def pinned() -> dict:
    return json.loads(PINS.read_text())


def test_every_recipe_is_pinned(pinned):
    assert sorted(pinned["recipes"]) == sorted(RECIPES)


@pytest.mark.parametrize("name", list(RECIPES))
def test_the_config_and_the_set_up_are_as_pinned(pinned, name):
    recipe, pin = RECIPES[name], pinned["recipes"][name]
    assert json_round_trip(config_pin(recipe.config)) == pin["config"]
    assert json_round_trip(recipe_pin(recipe)) == pin["recipe"]
    with one_thread():
        assert json_round_trip(setup_pin(recipe)) == pin["setup"]


@pytest.mark.parametrize("name", list(RECIPES))
def test_a_short_run_is_as_pinned(pinned, name):
    if pinned["kernels"] != KERNELS:
        pytest.skip(f"the short runs were pinned on {pinned['kernels']}, this is {KERNELS}")
    with one_thread():
        assert json_round_trip(run_pin(RECIPES[name])) == pinned["recipes"][name]["run"]


def write_pins() -> None:
    with one_thread():
        recipes = {name: {"config": config_pin(r.config), "recipe": recipe_pin(r),
                          "setup": setup_pin(r), "run": run_pin(r)}
                   for name, r in RECIPES.items()}
    PINS.write_text(json.dumps({"kernels": KERNELS, "recipes": recipes}, indent=1) + "\n")


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit(f"usage: python {sys.argv[0]} --write  (rewrites {PINS.name})")
    write_pins()
