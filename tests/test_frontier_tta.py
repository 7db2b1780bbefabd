"""Selective TTA, hiverge's: every image's plain logits, then the least confident quarter
of the test set (ranked over all of it) takes the equal-weight mean of six views instead."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest
import torch
from reference_modules import HIVERGE, needs_references, reference_module
from torch import nn

from fastcifar.train.evaluate import (TTA_FORMULAS, confidences, least_confident, predict,
                                      selective_tta_logits, tta_formula, tta_logits)

N = 40  # int(40 * 0.25) = 10 images take the TTA


def small_net() -> nn.Module:
    """A fixed conv net, neither mirror- nor shift-invariant, so each view has its own logits."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.GELU(), nn.MaxPool2d(2),
                        nn.Conv2d(8, 16, 3, padding=1), nn.GELU(), nn.AdaptiveMaxPool2d(1),
                        nn.Flatten(), nn.Linear(16, 10))
    with torch.no_grad():
        net[-1].weight.mul_(8)  # confidences spread over (0.1, 1)
    return net.eval()


def random_images(n: int = N, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def least_confident_first(net: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The images in increasing order of the net's plain confidence."""
    return images[confidences(predict(net, images)).argsort()]


@needs_references
@pytest.mark.parametrize("memory_format", [torch.channels_last, torch.contiguous_format])
def test_level_3_selective_matches_hiverges_evaluation(memory_format):
    """hiverge's own `infer(..., tta_level=2)` (compilation off) on the same network and
    images: the same 10 images replaced, by the same logits: bitwise on channels_last
    images (its plain pass makes them so), else to float32 rounding (other conv kernels)."""
    hiverge = reference_module(HIVERGE)
    net, images = small_net(), random_images().contiguous(memory_format=memory_format)
    loader = SimpleNamespace(images=images, normalize=lambda x: x, labels=None)
    with torch.compiler.set_stance("force_eager"), torch.no_grad():
        theirs = hiverge.infer(net, loader, tta_level=2)
    ours = predict(net, images, tta_level=3, tta_fraction=0.25)
    plain = predict(net, images)
    took = (ours - plain).abs().amax(1) > 1e-3
    assert took.sum() == 10
    assert torch.equal((theirs - plain).abs().amax(1) > 1e-3, took)
    exact = memory_format == torch.channels_last
    torch.testing.assert_close(ours, theirs, rtol=0 if exact else 1e-5,
                               atol=0 if exact else 1e-5)
    assert torch.equal(ours.argmax(1), theirs.argmax(1))


def test_level_3_is_the_plain_mean_of_level_2s_six_views():
    model = nn.Flatten()  # logits are the pixels themselves, so the weights show directly
    x = torch.randn(4, 3, 8, 8)
    padded = nn.functional.pad(x, (1, 1, 1, 1), mode="reflect")
    a, b = padded[..., 0:8, 0:8], padded[..., 2:10, 2:10]
    expected = (x + a + b + x.flip(-1) + a.flip(-1) + b.flip(-1)) / 6
    torch.testing.assert_close(tta_logits(model, x, 3), expected.flatten(1))
    assert "/ 6" in TTA_FORMULAS[3]


@pytest.mark.parametrize("fraction", [0.25, 0.5])
def test_exactly_the_least_confident_take_tta_and_the_rest_keep_plain_logits(fraction):
    net, images = small_net(), random_images()
    plain, full = predict(net, images), predict(net, images, tta_level=3)
    ours = predict(net, images, tta_level=3, tta_fraction=fraction)
    took = (ours != plain).any(1)
    assert took.sum() == int(N * fraction)
    torch.testing.assert_close(ours[took], full[took], rtol=1e-6, atol=1e-6)
    assert torch.equal(ours[~took], plain[~took])
    confidence = confidences(plain)
    assert confidence[took].max() < confidence[~took].min()


def test_fraction_0_is_plain_and_fraction_1_is_every_image_at_the_level():
    net, images = small_net(), random_images()
    assert torch.equal(predict(net, images, 3, tta_fraction=0), predict(net, images))
    assert torch.equal(predict(net, images, 3, tta_fraction=1), predict(net, images, 3))
    with pytest.raises(ValueError):
        predict(net, images, 3, tta_fraction=1.5)


def test_the_ranking_is_over_the_whole_set_not_per_batch():
    """The 10 least confident images are the first 10, in the first two batches of 8: all
    10 take the TTA, as with one batch of all 40 (not 2 per batch of 8)."""
    net = small_net()
    images = least_confident_first(net, random_images())
    plain = predict(net, images, batch_size=8)
    ours = predict(net, images, 3, batch_size=8, tta_fraction=0.25)
    assert torch.equal((ours != plain).any(1), torch.arange(N) < 10)
    torch.testing.assert_close(ours, predict(net, images, 3, tta_fraction=0.25))


def test_ties_go_to_the_earlier_image():
    confidence = torch.tensor([0.9, 0.5, 0.3, 0.5, 0.5, 0.8, 0.5])
    assert least_confident(confidence, 3).tolist() == [2, 1, 3]
    assert least_confident(confidence, 5).tolist() == [2, 1, 3, 4, 6]
    net, images = small_net(), random_images(8)
    images[:] = images[5]  # eight copies of one image: all equally confident
    plain = predict(net, images)
    took = (predict(net, images, 3, tta_fraction=0.25) != plain).any(1)
    assert took.tolist() == [True, True] + [False] * 6


class ThreadRank:
    """One of `world` data-parallel ranks played by threads of this process."""

    device = torch.device("cpu")

    def __init__(self, rank: int, world: int, barrier: threading.Barrier, slots: list):
        self.rank, self.world, self.barrier, self.slots = rank, world, barrier, slots

    def shard(self, tensor):
        return tensor.tensor_split(self.world)[self.rank]

    def sum(self, tensor):
        self.slots[self.rank] = tensor.clone()
        self.barrier.wait()
        total = sum(self.slots)
        self.barrier.wait()
        return tensor.copy_(total)


def test_data_parallel_ranks_select_over_all_images_as_one_process_does():
    """The 10 least confident images are all in rank 0's half: rank 0 replaces 10 of its
    logits and rank 1 none (ranked in each shard, each would replace 5)."""
    net = small_net()
    images = least_confident_first(net, random_images())
    barrier, slots = threading.Barrier(2, timeout=30), [None, None]
    ranks = [ThreadRank(r, 2, barrier, slots) for r in range(2)]
    with ThreadPoolExecutor(2) as pool:
        shards = [f.result() for f in [pool.submit(selective_tta_logits, net, images, 3, 0.25,
                                                   group=rank) for rank in ranks]]
    torch.testing.assert_close(torch.cat(shards), predict(net, images, 3, tta_fraction=0.25))
    plain = predict(net, images)
    assert torch.equal((shards[0] != plain[:20]).any(1), torch.arange(20) < 10)
    assert torch.equal(shards[1], plain[20:])


class OneOutputBuffer(nn.Module):
    """Logits written into one buffer that every call overwrites, as a replayed CUDA graph
    (torch.compile's max-autotune) hands back the same static output each time."""

    def __init__(self):
        super().__init__()
        self.net = small_net()
        self.register_buffer("out", torch.zeros(0))

    def forward(self, x):
        self.out = self.out.new_empty(len(x), 10) if len(self.out) != len(x) else self.out
        return self.out.copy_(self.net(x))


def test_level_3_and_selection_keep_each_views_logits_when_the_model_reuses_its_output():
    images = random_images()
    for fraction in (0.25, 1.0):
        expected = predict(small_net(), images, 3, batch_size=16, tta_fraction=fraction)
        ours = predict(OneOutputBuffer(), images, 3, batch_size=16, tta_fraction=fraction)
        torch.testing.assert_close(ours, expected, rtol=0, atol=0)


def test_the_formula_states_the_selection():
    assert tta_formula(2) == TTA_FORMULAS[2] and tta_formula(3, 1.0) == TTA_FORMULAS[3]
    text = tta_formula(3, 0.25)
    assert "int(n * 0.25)" in text and "smallest" in text and text.endswith(TTA_FORMULAS[3])
