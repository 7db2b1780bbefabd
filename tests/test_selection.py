"""airbench96_faster's proxy selection (optim/selection.py): it chooses and trains as the
original's train_proxy does, on the same batches; the recipe trains its network on the
chosen examples only; its FLOPs are the published 3.1 PFLOPs."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from reference_modules import needs_references, reference_module

from fastcifar.bench.flops import run_flops
from fastcifar.data.loader import DeviceData
from fastcifar.errors import InputError
from fastcifar.optim.selection import ProxySelection, per_example_cross_entropy
from fastcifar.recipes import get_recipe
from fastcifar.train.data_parallel import check_data_parallel
from fastcifar.train.loop import train_run

FASTER = "cifar10-airbench/airbench96_faster.py"


def batches(count: int, size: int, seed: int = 0):
    """`count` batches of `size` random normalised images (channels_last) and labels."""
    generator = torch.Generator().manual_seed(seed)
    return [(torch.randn(size, 3, 32, 32, generator=generator)
             .contiguous(memory_format=torch.channels_last),
             torch.randint(0, 10, (size,), generator=generator)) for _ in range(count)]


@needs_references
def test_the_proxy_chooses_and_trains_as_the_originals_train_proxy(cuda_standin, monkeypatch):
    """The original's proxy (make_net of its proxy hyperparameters, in float32) and the one
    airbench96_faster's setup builds, given the same weights and the same 20 batches of 64
    (keep 32, a step every 4, its lr schedule over 20 steps): the same examples chosen at
    every step, and the same weights after."""
    module = reference_module(FASTER)
    hyp = copy.deepcopy(module.hyp)
    hyp["opt"].update(batch_size=64, batch_size_masked=32, train_epochs=5.0)
    data = batches(20, 64)

    class TheseBatches:  # the original's loader, yielding (indices, inputs, labels)
        def __init__(self, *args, **kwargs):
            self.images = torch.zeros(4 * 64, 3, 32, 32)  # 4 steps an epoch: 20 in all

        def normalize(self, images):
            return images

        def __iter__(self):
            return iter((torch.arange(64), x, y) for x, y in data)

    # Both start from the same weights: the original's own re-initialisation and whitening
    # are skipped, and its weights are copied into ours.
    monkeypatch.setattr(module, "InfiniteCifarLoader", TheseBatches)
    monkeypatch.setattr(module, "reinit_net", lambda model: None)
    monkeypatch.setattr(module, "init_whitening_conv", lambda layer, images: None)
    torch.manual_seed(0)
    theirs = module.make_net(hyp["proxy"]).float()
    theirs[0].bias.requires_grad = False
    object.__setattr__(theirs, "_orig_mod", theirs)  # train_proxy reads model._orig_mod[0]

    recipe = get_recipe("airbench96_faster")
    config = dataclasses.replace(recipe.config, batch_size=64, select_keep=32)
    model = recipe.build_model(config, 10)
    select = recipe.setup(model, config, torch.randn(300, 3, 32, 32), 20).select
    ours = select.proxy
    shapes = [v.shape for v in ours.state_dict().values()]
    assert shapes == [v.shape for v in theirs.state_dict().values()]
    ours.load_state_dict(dict(zip(ours.state_dict(), theirs.state_dict().values())))
    assert [p.requires_grad for p in ours.parameters()] == [
        p.requires_grad for p in theirs.parameters()]

    their_masks = module.train_proxy(hyp, theirs, data_seed=0)
    our_masks = [select(x, y) for x, y in data]
    assert len(their_masks) == len(our_masks) == 20
    for step, (a, b) in enumerate(zip(their_masks, our_masks)):
        assert torch.equal(a, b), f"step {step}"
        assert b.sum() == 32
    for (name, a), b in zip(ours.state_dict().items(), theirs.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), rtol=1e-5, atol=1e-6), name


class Scores(nn.Module):
    """A 'network' whose logits for image i are fixed: loss ranks known in advance."""

    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.logits = nn.Parameter(logits.clone())

    def forward(self, index):
        return self.logits[index]


def test_the_hardest_are_chosen_and_the_proxy_trains_every_nth_step_only():
    logits = torch.zeros(8, 10)
    logits[torch.arange(8), 0] = torch.arange(8.0)  # label 0: image 7 easiest, image 0 hardest
    proxy = Scores(logits)
    optimizer = torch.optim.SGD(proxy.parameters(), lr=0.1)
    select = ProxySelection(proxy, optimizer, np.linspace(1, 0, 9), per_example_cross_entropy(),
                            keep=3, train_every=2)
    index, labels = torch.arange(8), torch.zeros(8, dtype=torch.long)
    assert select(index, labels).tolist() == [True] * 3 + [False] * 5
    first = proxy.logits.detach().clone()
    assert not torch.equal(first, logits)  # step 0 trained ...
    assert torch.equal(first[3:], logits[3:])  # ... on the chosen examples' loss only
    select(index, labels)
    assert torch.equal(proxy.logits.detach(), first)  # step 1: scored, not trained
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * 6 / 8)  # stepped twice

    state = copy.deepcopy(select.state_dict())
    select(index, labels)
    fresh = Scores(logits)
    again = ProxySelection(fresh, torch.optim.SGD(fresh.parameters(), lr=0.1),
                           np.linspace(1, 0, 9), per_example_cross_entropy(), keep=3,
                           train_every=2)
    again.load_state_dict(state)  # where select was before its third step
    assert again.step == 2 and torch.equal(fresh.logits, first)
    assert again.optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * 6 / 8)
    again(index, labels)
    assert torch.equal(fresh.logits, proxy.logits)  # and its third step is select's


def test_airbench96_faster_is_airbench96_on_the_proxys_hardest_half():
    faster, base = get_recipe("airbench96_faster").config, get_recipe("airbench96").config
    changed = {k: v for k, v in dataclasses.asdict(faster).items()
               if k not in dataclasses.asdict(base) or dataclasses.asdict(base)[k] != v}
    assert changed == dict(epochs=45.0, whiten_bias_epochs=45, select_keep=512,
                           proxy_widths=(32, 64, 64), proxy_convs_per_group=2,
                           proxy_train_every=4)
    flops = run_flops(get_recipe("airbench96_faster"))
    assert flops.steps == 2160
    assert 3.0e15 < flops.total < 3.25e15  # published 3.1 PFLOPs (airbench96: 4.9)
    for bad, message in ((dict(select_keep=2048), "select_keep must be from 1 to"),
                         (dict(proxy_widths=(8, 8)), "proxy's three conv groups")):
        with pytest.raises(InputError, match=message):
            dataclasses.replace(faster, **bad).validate()
    with pytest.raises(InputError, match="--ddp: airbench96_faster keeps the hardest"):
        check_data_parallel(get_recipe("airbench96_faster"), faster, 2)


def test_the_network_trains_on_the_chosen_examples_only(small_cifar10):
    recipe = get_recipe("airbench96_faster")
    config = dataclasses.replace(recipe.config, widths=(16, 32, 32), batch_size=128,
                                 select_keep=48, epochs=2, tta_level=0)
    data = DeviceData.from_dataset(small_cifar10.balanced_subset(512), torch.device("cpu"))
    seen = []
    original = recipe.setup

    def setup(*args):
        training = original(*args)
        loss = training.loss

        def counted(outputs, targets):
            seen.append(len(targets))
            return loss(outputs, targets)

        training.loss = counted
        return training

    recipe_copy = copy.copy(recipe)
    recipe_copy.setup = setup
    result = train_run(recipe_copy, config, data, torch.device("cpu"), seed=0)
    assert seen == [48] * 8  # 2 epochs of 4 batches of 128, each cut to its 48 hardest
    assert 0 <= result.accuracy <= 1
