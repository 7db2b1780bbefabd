"""--compile on a CPU: the speed runs' networks are captured whole (no graph breaks), and
every graph they need is compiled in the untimed warm-up run, so the timed run recompiles
nothing.

Graph breaks and recompiles are TorchDynamo's doing, whatever backend turns the graphs
into code: the tests capture with the "aot_eager" backend (forward and backward graphs
traced, no code generated), which takes seconds where inductor takes minutes on a CPU.
"""

from __future__ import annotations

import dataclasses
import functools

import pytest
import torch
import torch._dynamo
from torch._dynamo.utils import counters

from fastcifar.data.loader import DeviceData
from fastcifar.recipes import get_recipe
from fastcifar.train.loop import train_run

CPU = torch.device("cpu")


def tiny_data() -> DeviceData:
    torch.manual_seed(0)
    labels = torch.arange(128) % 4
    images = torch.randn(128, 3, 32, 32) + labels.view(-1, 1, 1, 1)
    images = images.contiguous(memory_format=torch.channels_last)
    return DeviceData(images, labels, images[:64], labels[:64], 4)


@pytest.mark.parametrize("name", ["airbench94", "airbench94_muon", "hlb", "hlb_state_sketch"])
def test_the_warm_up_run_compiles_every_graph_the_timed_run_uses(name):
    recipe = get_recipe(name)
    config = dataclasses.replace(recipe.config, batch_size=32, epochs=3, widths=(8, 16, 16))
    if hasattr(config, "whiten_bias_epochs"):  # its freeze inside the run (a recompile)
        config = dataclasses.replace(config, whiten_bias_epochs=1)
    captured = functools.partial(torch.compile, backend="aot_eager")
    torch._dynamo.reset()
    counters.clear()
    data = tiny_data()
    train_run(recipe, config, data, CPU, seed=-1, model_transform=captured)  # the warm-up
    graphs = counters["stats"]["unique_graphs"]
    assert graphs >= 2  # at least training and no-grad evaluation
    assert not counters["graph_break"], dict(counters["graph_break"])
    timed = train_run(recipe, config, data, CPU, seed=0, model_transform=captured)
    assert counters["stats"]["unique_graphs"] == graphs, "the timed run recompiled"
    assert not counters["graph_break"]
    assert all(torch.isfinite(torch.tensor(e.train_loss)) for e in timed.epochs)


def test_inductor_compiles_airbench94_and_trains_as_eager_does():
    """The one test that generates code (about a minute on a CPU): the compiled run's
    losses and accuracy are the eager run's, to float32 rounding."""
    recipe = get_recipe("airbench94")
    config = dataclasses.replace(recipe.config, batch_size=32, epochs=2, widths=(8, 16, 16))
    data = tiny_data()
    torch._dynamo.reset()
    compiled = train_run(recipe, config, data, CPU, seed=0, model_transform=torch.compile)
    eager = train_run(recipe, config, data, CPU, seed=0)
    for a, b in zip(compiled.epochs, eager.epochs, strict=True):
        assert a.train_loss == pytest.approx(b.train_loss, rel=1e-3)
    assert compiled.accuracy == pytest.approx(eager.accuracy, abs=2 / 64)
