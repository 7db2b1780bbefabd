"""--compile on a CPU: the speed runs' networks are captured whole (no graph breaks), and
every graph they need is compiled in the untimed warm-up run, so the timed run recompiles
nothing. A session compiles one network and re-initialises it in place for every run, as
the airbench scripts do; each compiled session starts from an empty Dynamo cache, with
static shapes.

Graph breaks and recompiles are TorchDynamo's doing, whatever backend turns the graphs
into code: the tests capture with the "aot_eager" backend (forward and backward graphs
traced, no code generated), which takes seconds where inductor takes minutes on a CPU.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import pytest
import torch
import torch._dynamo
from torch._dynamo.backends.registry import lookup_backend
from torch._dynamo.utils import counters

import fastcifar
from fastcifar.data.loader import DeviceData
from fastcifar.recipes import get_recipe
from fastcifar.sessions import session
from fastcifar.sessions.settings import SessionSettings
from fastcifar.train import warmup
from fastcifar.train.loop import train_run

CPU = torch.device("cpu")


def tiny_data() -> DeviceData:
    torch.manual_seed(0)
    labels = torch.arange(128) % 4
    images = torch.randn(128, 3, 32, 32) + labels.view(-1, 1, 1, 1)
    images = images.contiguous(memory_format=torch.channels_last)
    return DeviceData(images, labels, images[:64], labels[:64], 4)


def narrow(name: str, epochs: int = 2):
    """`name`'s recipe and a narrow config of it whose mid-run freeze (airbench's whitening
    bias) comes after epoch 1."""
    recipe = get_recipe(name)
    config = dataclasses.replace(recipe.config, batch_size=32, epochs=epochs, widths=(8, 16, 16))
    if hasattr(config, "whiten_bias_epochs"):
        config = dataclasses.replace(config, whiten_bias_epochs=1)
    return recipe, config


@pytest.mark.parametrize("name", ["airbench94", "airbench94_muon", "hiverge94", "fable94_e5",
                                  "fable94_e1", "hlb", "hlb_state_sketch"])
def test_the_warm_up_run_compiles_every_graph_the_timed_run_uses(name):
    recipe, config = narrow(name, epochs=3)  # a freeze inside the run (a recompile)
    captured = functools.partial(torch.compile, backend="aot_eager", dynamic=False)
    torch._dynamo.reset()
    counters.clear()
    data = tiny_data()
    warm_up = train_run(recipe, config, data, CPU, seed=-1, model_transform=captured)
    graphs = counters["stats"]["unique_graphs"]
    assert graphs >= 2  # at least training and no-grad evaluation
    assert not counters["graph_break"], dict(counters["graph_break"])
    timed = train_run(recipe, config, data, CPU, seed=0, model=warm_up.model)  # as a session
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


def tiny_image_data() -> fastcifar.ImageData:
    """128 training and 64 test images of 4 classes, each class its own brightness."""
    rng = np.random.default_rng(0)
    labels = np.arange(192) % 4
    images = rng.integers(0, 120, (192, 32, 32, 3)).astype(np.uint8)
    images += (labels * 40).astype(np.uint8)[:, None, None, None]
    return fastcifar.ImageData(images[:128], labels[:128], images[128:], labels[128:])


def record_graphs(monkeypatch, compiled: list | None = None) -> list[dict]:
    """torch.compile through aot_eager (its mode dropped, its other options kept), each
    graph Dynamo captures recorded: whether gradients were on, and its symbolic sizes;
    each model compiled appended to `compiled`."""
    graphs, compile_ = [], torch.compile

    def recording(gm, example_inputs):
        symbolic = [x for x in example_inputs if isinstance(x, torch.SymInt) or (
            isinstance(x, torch.Tensor) and any(isinstance(d, torch.SymInt) for d in x.shape))]
        graphs.append({"grad": torch.is_grad_enabled(), "symbolic": len(symbolic)})
        return lookup_backend("aot_eager")(gm, example_inputs)

    def captured(model, mode=None, **options):
        if compiled is not None:
            compiled.append(model)
        return compile_(model, backend=recording, **options)

    monkeypatch.setattr(torch, "compile", captured)
    return graphs


def outcome(result) -> tuple:
    """What a run computed: every epoch's losses, accuracies and lr, the TTA accuracy."""
    epochs = [dataclasses.replace(e, train_seconds=0.0) for e in result.epochs]
    return epochs, result.accuracy


@pytest.mark.parametrize("name", ["airbench94", "airbench94_muon", "hlb"])
def test_a_network_reinitialised_in_place_trains_as_a_new_one_does(name):
    """Bitwise: the run a session trains on its kept network (after another run on it,
    whose whitening bias froze and whose EMA or lookahead moved the weights) is the run a
    new network of the same seed trains."""
    recipe, config = narrow(name)
    data = tiny_data()
    kept = train_run(recipe, config, data, CPU, seed=1).model
    pointers = [p.data_ptr() for p in kept.parameters()]
    again = train_run(recipe, config, data, CPU, seed=0, model=kept)
    new = train_run(recipe, config, data, CPU, seed=0)
    assert again.model is kept and [p.data_ptr() for p in kept.parameters()] == pointers
    assert outcome(again) == outcome(new)
    trained, expected = again.model.state_dict(), new.model.state_dict()
    assert trained.keys() == expected.keys()
    for k in expected:
        assert torch.equal(trained[k], expected[k]), k


def test_a_session_trains_every_run_on_one_network(monkeypatch):
    """The same parameter tensors, at the same addresses, in every run of a session (the
    warm-up included): what a compiled network's CUDA graphs were recorded for."""
    networks, pointers, run = [], [], session.train_run

    def recorded(*args, **kwargs):
        result = run(*args, **kwargs)
        networks.append(result.model)  # held, so that no address is freed and reused
        pointers.append([p.data_ptr() for p in result.model.parameters()])
        return result

    monkeypatch.setattr(session, "train_run", recorded)
    monkeypatch.setattr(session, "needs_warmup", lambda device, compile_: True)
    fastcifar.train("airbench94", tiny_image_data(), runs=2, epochs=1, batch_size=32,
                    widths=(8, 16, 16), device="cpu", verbose=False)
    assert len(networks) == 3  # the warm-up and two runs
    assert all(n is networks[0] for n in networks)
    assert pointers[1] == pointers[0] and pointers[2] == pointers[0]


def test_a_compiled_session_compiles_in_its_warm_up_and_never_again(monkeypatch):
    """torch.compile wraps the session's one network once; every graph is captured in the
    untimed warm-up run, and the timed runs capture none."""
    models = []
    graphs = record_graphs(monkeypatch, models)
    compiled_in_warm_up, warm_up = [], session.Session.warmup

    def counted(self, data):
        seconds = warm_up(self, data)
        compiled_in_warm_up.append(len(graphs))
        return seconds

    monkeypatch.setattr(session.Session, "warmup", counted)
    counters.clear()
    fastcifar.train("airbench94", tiny_image_data(), runs=2, epochs=2, batch_size=32,
                    widths=(8, 16, 16), whiten_bias_epochs=1, device="cpu", verbose=False,
                    compile=True)
    assert len(models) == 1, "one network, compiled once"
    assert compiled_in_warm_up and compiled_in_warm_up[0] >= 2, "training and evaluation"
    assert len(graphs) == compiled_in_warm_up[0], "a timed run compiled a graph"
    assert counters["stats"]["unique_graphs"] == len(graphs)
    assert not counters["graph_break"], dict(counters["graph_break"])


def test_compiled_sessions_of_recipes_on_one_network_each_compile_their_own_graphs(
        monkeypatch):
    """airbench94 and airbench94_muon run AirbenchNet.forward: one after the other in a
    process, each session compiles its own graphs from an empty cache, all of static
    shapes, and none falls back to eager at Dynamo's recompile limit (8 per code object)."""
    graphs = record_graphs(monkeypatch)
    options = dict(epochs=2, batch_size=32, widths=(8, 16, 16), whiten_bias_epochs=1,
                   device="cpu", verbose=False, compile=True)
    data, compiled = tiny_image_data(), {}
    for name in ("airbench94", "airbench94_muon", "airbench94 again"):
        graphs.clear()
        counters.clear()
        fastcifar.train(name.split()[0], data, **options)
        compiled[name] = list(graphs)
        assert counters["frames"]["ok"] == counters["frames"]["total"], name
        assert not [k for k in counters["unimplemented"] if "recompile limit" in k], name
        assert all(g["symbolic"] == 0 for g in graphs), f"{name}: a dynamic batch dimension"
    assert any(not g["grad"] for g in compiled["airbench94_muon"]), "its evaluation ran eagerly"
    assert compiled["airbench94 again"] == compiled["airbench94"]


def test_the_uncompiled_warm_up_trains_at_every_size_of_a_curriculum():
    """On CUDA without --compile the warm-up's few steps visit each side the run trains at
    (fable94_e1: 24, 28, then 32 px), so no timed run pays cuDNN's first tuning of a size
    (seen on an H200: E1's first timed run 4.6 s, the next ones 2.0)."""
    from types import SimpleNamespace

    from fastcifar.recipes import get_recipe
    trained = []
    fake = SimpleNamespace(
        config=get_recipe("fable94_e1").config, settings=SessionSettings(seed=5),
        say=lambda line: None,
        train_seed=lambda config, data, seed: trained.append(
            (config.progressive_sizes, config.epochs, seed)))
    session.Session.warmup(fake, SimpleNamespace(train_images=torch.zeros(15360, 1)))
    steps = warmup.WARMUP_STEPS / (15360 // fake.config.batch_size)  # 10 of 10 a epoch
    assert trained == [((24,), steps, 4), ((28,), steps, 4), ((), steps, 4)]
    assert warmup.warmup_sizes(get_recipe("airbench94").config) == [()]
    assert warmup.warmup_sizes(get_recipe("fable94_e5").config) == [(28,), ()]
