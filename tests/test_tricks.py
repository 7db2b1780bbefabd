"""The speed-run tricks, each checked against what it claims to do."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from fastcifar.data.augment import alternating_flip_mask, cutout, pad_reflect, random_crop
from fastcifar.data.loader import Augmentation, DeviceLoader, to_device_tensor
from fastcifar.models.airbench import AirbenchNet
from fastcifar.models.layers import BatchNorm, DiracConv
from fastcifar.models.whitening import image_patches, whitening_conv_init
from fastcifar.optim.averaging import WeightAverage, lookahead_decay
from fastcifar.optim.schedules import piecewise_linear
from fastcifar.optim.sgd import decoupled_sgd, decoupled_to_torch
from fastcifar.train.evaluate import predict, tta_logits


@pytest.fixture(scope="module")
def real_images(cifar10) -> torch.Tensor:
    return to_device_tensor(cifar10.train_images[::25], "cpu")  # 2,000 images, all classes


def test_whitened_2x2_patches_have_identity_covariance(real_images):
    conv = nn.Conv2d(3, 24, 2, bias=False)
    whitening_conv_init(conv, real_images, eps=1e-9)
    outputs = image_patches(real_images, 2) @ conv.weight[:12].reshape(12, -1).T
    covariance = outputs.T @ outputs / len(outputs)
    assert (covariance - torch.eye(12)).abs().max() < 0.02  # float32 eigh on a 12x12 matrix


def test_whitening_eps_shrinks_each_direction_by_its_eigenvalue(real_images):
    """With eps, the output variance along eigenvector i is lambda_i / (lambda_i + eps)."""
    conv = nn.Conv2d(3, 24, 2, bias=False)
    whitening_conv_init(conv, real_images, eps=5e-4)
    patches = image_patches(real_images, 2)
    eigenvalues = torch.linalg.eigvalsh(patches.T @ patches / len(patches)).flip(0)
    outputs = patches @ conv.weight[:12].reshape(12, -1).T
    variances = (outputs**2).mean(0)
    assert torch.allclose(variances, eigenvalues / (eigenvalues + 5e-4), rtol=0.02)
    # the second 12 filters are the negatives of the first: GELU then sees both signs
    assert torch.equal(conv.weight[12:], -conv.weight[:12])


def test_alternating_flip_mirrors_exactly_the_complement_of_the_previous_epoch(real_images):
    images = real_images[:256]
    loader = DeviceLoader(images, torch.zeros(256, dtype=torch.long), 64,
                          augmentation=Augmentation(flip="alternating"))
    mirrored = []
    for epoch in range(4):
        out = loader.epoch_images(epoch)
        is_mirror = (out == images.flip(-1)).flatten(1).all(1)
        is_same = (out == images).flatten(1).all(1)
        assert (is_mirror ^ is_same).all(), "every image is either itself or its mirror"
        mirrored.append(is_mirror)
    assert 0.35 < mirrored[0].float().mean() < 0.65, "epoch 1 mirrors a random half"
    for before, after in zip(mirrored, mirrored[1:]):
        assert torch.equal(after, ~before)


def test_alternating_flip_mask_alternates():
    first = torch.tensor([True, False, False, True])
    assert torch.equal(alternating_flip_mask(first, 0), first)
    assert torch.equal(alternating_flip_mask(first, 1), ~first)
    assert torch.equal(alternating_flip_mask(first, 2), first)


@pytest.mark.parametrize("pad", [1, 2, 4])
def test_random_crops_are_in_bounds_windows_covering_every_shift(pad):
    torch.manual_seed(0)
    n, size = 2000, 8
    images = torch.arange(n * size * size, dtype=torch.float32).view(n, 1, size, size)
    padded = pad_reflect(images, pad)
    crops = random_crop(padded, size)
    assert crops.shape == images.shape
    seen = set()
    for i in range(n):
        matches = [(y, x) for y in range(2 * pad + 1) for x in range(2 * pad + 1)
                   if torch.equal(crops[i], padded[i, :, y:y + size, x:x + size])]
        assert len(matches) == 1, "each crop is exactly one window of its own padded image"
        seen.add(matches[0])
    assert len(seen) == (2 * pad + 1) ** 2, "every translation in [-pad, pad]^2 occurs"


def test_a_crop_moves_every_channel_alike_and_comes_out_channels_last():
    torch.manual_seed(0)
    images = torch.randn(300, 3, 8, 8).contiguous(memory_format=torch.channels_last)
    padded = pad_reflect(images, 2).contiguous(memory_format=torch.channels_last)
    crops = random_crop(padded, 8)
    assert crops.is_contiguous(memory_format=torch.channels_last)
    for i in range(300):
        assert any(torch.equal(crops[i], padded[i, :, y:y + 8, x:x + 8])
                   for y in range(5) for x in range(5)), "one window, all three channels"


def test_cutout_zeroes_one_whole_square_per_image_anywhere_inside():
    torch.manual_seed(0)
    images = torch.ones(2000, 3, 16, 16)
    out = cutout(images, 6)
    zeroed = (out == 0).all(1)
    assert torch.equal((out == 0).any(1), zeroed), "all channels of a pixel together"
    corners = set()
    for mask in zeroed:
        rows, cols = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
        assert mask.sum() == 36 and len(rows) == 6 and len(cols) == 6, "one whole 6x6 square"
        corners.add((rows[0].item(), cols[0].item()))
    assert corners == {(y, x) for y in range(11) for x in range(11)}, "every position occurs"


def test_tta_level_weights():
    """Level 2 = 1/4 (x + mirror) + 1/8 (each of the 2 shifts and their mirrors), as
    TTA_FORMULAS (written into an export's preprocessing.json) says."""
    model = nn.Flatten()  # logits are the pixels themselves, so the weights show directly
    x = torch.randn(4, 3, 8, 8)
    mirror = x.flip(-1)
    padded = nn.functional.pad(x, (1, 1, 1, 1), mode="reflect")
    up_left, down_right = padded[..., 0:8, 0:8], padded[..., 2:10, 2:10]
    assert torch.equal(tta_logits(model, x, 0), x.flatten(1))
    assert torch.allclose(tta_logits(model, x, 1), (0.5 * x + 0.5 * mirror).flatten(1))
    expected = (0.25 * (x + mirror) + 0.125 * (up_left + up_left.flip(-1) + down_right
                                               + down_right.flip(-1)))
    assert torch.allclose(tta_logits(model, x, 2), expected.flatten(1), atol=1e-6)


class OneOutputBuffer(nn.Module):
    """Logits written into one buffer that every call overwrites, as a replayed CUDA graph
    (torch.compile's max-autotune) hands back the same static output each time."""

    def __init__(self):
        super().__init__()
        self.register_buffer("out", torch.zeros(0))

    def forward(self, x):
        self.out = self.out.new_empty(len(x), 3) if len(self.out) != len(x) else self.out
        return self.out.copy_(x.flatten(1)[:, :3])


@pytest.mark.parametrize("level", [0, 1, 2])
def test_predict_keeps_each_batchs_logits_when_the_model_reuses_its_output(level):
    x = torch.randn(6, 3, 4, 4)
    expected = tta_logits(nn.Sequential(nn.Flatten(), Take(3)), x, level)
    assert torch.equal(predict(OneOutputBuffer(), x, level, batch_size=2), expected)


class Take(nn.Module):
    def __init__(self, n):
        super().__init__()
        self.n = n

    def forward(self, x):
        return x[:, :self.n]


def test_airbench_lr_schedule_is_the_published_triangle():
    total = 476  # ceil(48 steps per epoch * 9.9 epochs)
    lr = piecewise_linear(total, [(0, 0.2), (0.23, 1.0), (1, 0.07)])
    peak = int(0.23 * total)
    assert len(lr) == total + 1
    assert lr[0] == pytest.approx(0.2) and lr[peak] == pytest.approx(1.0)
    assert lr[total] == pytest.approx(0.07)
    assert np.all(np.diff(lr[:peak + 1]) > 0) and np.all(np.diff(lr[peak:]) < 0)
    assert np.allclose(np.diff(lr[:peak + 1]), 0.8 / peak)


def test_lookahead_decay_grows_cubically_to_095_pow_5():
    assert lookahead_decay(0, 100, 5, 0.95, 3) == 0
    assert lookahead_decay(100, 100, 5, 0.95, 3) == pytest.approx(0.95**5)
    assert lookahead_decay(50, 100, 5, 0.95, 3) == pytest.approx(0.95**5 / 8)


def test_lookahead_update_averages_and_copies_back():
    net = nn.BatchNorm1d(3)
    average = WeightAverage(net, copy_back=True)
    old = net.bias.detach().clone()
    with torch.no_grad():
        net.bias.add_(1.0)
    average.update(net, decay=0.75)
    assert torch.allclose(net.bias, old + 0.25), "weights = 0.75 old average + 0.25 new"
    assert torch.allclose(average.average["bias"], net.bias)
    assert net.num_batches_tracked == 0, "integer buffers are left alone"


def test_lookahead_averages_half_weights_beside_float32_norms():
    """As on a GPU: a half conv and a float32 BatchNorm, averaged in one update each."""
    net = nn.Sequential(nn.Conv2d(2, 3, 1).half(), nn.BatchNorm2d(3))
    average = WeightAverage(net, copy_back=True)
    old_conv, old_bn = net[0].weight.detach().clone(), net[1].running_mean.clone()
    with torch.no_grad():
        net[0].weight.add_(1.0)
        net[1].running_mean.add_(2.0)
    average.update(net, decay=0.5)
    assert net[0].weight.dtype == torch.float16 and net[1].running_mean.dtype == torch.float32
    assert torch.allclose(net[0].weight.float(), old_conv.float() + 0.5, atol=1e-3)
    assert torch.allclose(net[1].running_mean, old_bn + 1.0)


def test_ema_is_kept_apart_until_loaded():
    net = nn.Linear(2, 2)
    ema = WeightAverage(net, copy_back=False)
    before = net.weight.detach().clone()
    with torch.no_grad():
        net.weight.add_(1.0)
    ema.update(net, decay=0.5)
    assert torch.allclose(net.weight, before + 1), "training weights are untouched"
    evaluated = ema.evaluation_model(net)
    assert torch.allclose(evaluated.weight, before + 0.5)
    assert torch.allclose(net.weight, before + 1)


def test_decoupled_lr_and_weight_decay_conversion():
    values = decoupled_to_torch(lr=11.5, weight_decay=0.0153, momentum=0.85, batch_size=1024)
    kilostep = 1024 * (1 + 1 / 0.15)
    assert values.lr == pytest.approx(11.5 / kilostep)
    assert values.decay_per_step == pytest.approx(0.0153 * 1024 / kilostep)
    # weight decay is per example: twice the batch, twice the decay per step
    double = decoupled_to_torch(11.5, 0.0153, 0.85, 2048)
    assert double.decay_per_step == pytest.approx(2 * values.decay_per_step)
    assert double.lr == values.lr


def test_decoupled_sgd_decays_every_group_alike_whatever_its_lr_scale():
    weights, biases = nn.Parameter(torch.ones(5)), nn.Parameter(torch.ones(5))
    opt = decoupled_sgd([([biases], 64.0), ([weights], 1.0)],
                        lr=11.5, weight_decay=0.0153, momentum=0.85, batch_size=1024)
    groups = opt.param_groups
    assert groups[0]["lr"] == pytest.approx(64 * groups[1]["lr"])
    for p in (weights, biases):
        p.grad = torch.zeros(5)
    opt.step()
    decay = decoupled_to_torch(11.5, 0.0153, 0.85, 1024).decay_per_step
    # first Nesterov step with only decay acting: p -= (1 + momentum) * decay * p
    assert torch.allclose(weights, torch.full((5,), 1 - 1.85 * decay))
    assert torch.allclose(biases, weights)


def test_fused_sgd_steps_as_the_per_tensor_one_and_is_the_default_only_on_cuda():
    """The GPU lever, checked where it can be: torch's fused SGD on a CPU."""
    from fastcifar.optim.sgd import sgd_with_decay
    torch.manual_seed(0)
    start = [torch.randn(4, 3, 3, 3), torch.randn(8), torch.randn(10, 5)]
    grads = [[torch.randn_like(w) for w in start] for _ in range(4)]
    fused, plain = ([nn.Parameter(w.clone()) for w in start] for _ in range(2))
    optimisers = [sgd_with_decay([(ps[:2], 0.1), (ps[2:], 0.4)], 0.01, 0.85, fused=f)
                  for ps, f in ((fused, True), (plain, False))]
    for step_grads in grads:
        for ps, opt in zip((fused, plain), optimisers):
            for p, g in zip(ps, step_grads):
                p.grad = g.clone()
            opt.step()
    for a, b in zip(fused, plain):
        assert torch.allclose(a, b, atol=1e-6)
    assert optimisers[0].defaults["fused"] and not optimisers[1].defaults["fused"]
    assert not sgd_with_decay([(plain, 0.1)], 0.01, 0.85).defaults["fused"], "CPU: per tensor"


def test_decoupled_lr_is_per_1024_examples_scaled_by_airbench_momentum_factor():
    """A constant per-example gradient g, summed over the batch, moves a weight at the
    steady-state speed lr/1024 * g * B * (1/(1-m)) / (1 + 1/(1-m)): linear in the decoupled
    lr and the batch, and close to momentum-independent (airbench's convention)."""
    for momentum, batch_size in ((0.5, 1024), (0.85, 1024), (0.85, 256), (0.95, 512)):
        p = nn.Parameter(torch.zeros(1, dtype=torch.float64))
        opt = decoupled_sgd([([p], 1.0)], lr=2.0, weight_decay=0.0, momentum=momentum,
                            batch_size=batch_size)
        for _ in range(600):
            p.grad = torch.full((1,), float(batch_size), dtype=torch.float64)
            opt.step()
        before = p.item()
        p.grad = torch.full((1,), float(batch_size), dtype=torch.float64)
        opt.step()
        nesterov_gain = 1 / (1 - momentum)
        expected = 2.0 / 1024 * batch_size * nesterov_gain / (1 + nesterov_gain)
        assert before - p.item() == pytest.approx(expected, rel=1e-6)


def test_batchnorm_momentum_convention_and_frozen_scale():
    norm = BatchNorm(4, momentum=0.6)
    assert not norm.weight.requires_grad and norm.bias.requires_grad
    x = torch.randn(64, 4, 3, 3) + 2.0
    norm(x)
    assert torch.allclose(norm.running_mean, 0.4 * x.mean((0, 2, 3)), atol=1e-6)


def test_dirac_conv_passes_its_input_through_at_init():
    conv = DiracConv(8, 16)
    x = torch.randn(2, 8, 6, 6)
    assert torch.allclose(conv(x)[:, :8], x, atol=1e-6)


def test_airbench_net_shapes_and_frozen_whitening():
    net = AirbenchNet(widths=(64, 256, 256))
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert not net.whiten.weight.requires_grad and net.whiten.bias.requires_grad
    assert net.head.bias is None and net.scale.scale == pytest.approx(1 / 9)
    trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
    # 3x3 convs 24->64->64, 64->256->256, 256->256->256, head 256x10, whiten bias, BN biases
    convs = 9 * (24 * 64 + 64 * 64 + 64 * 256 + 256 * 256 + 256 * 256 + 256 * 256)
    assert trainable == convs + 2560 + 24 + 2 * (64 + 256 + 256)
    assert math.isclose(trainable / 1e6, 1.97, abs_tol=0.01)


def test_progressive_resizing_trains_the_first_epochs_smaller():
    from fastcifar.data.loader import Augmentation, DeviceLoader
    torch.manual_seed(0)
    images = torch.rand(64, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    images[:32] = 0.25  # flat images stay flat when scaled
    loader = DeviceLoader(images, torch.arange(64), 16,
                          Augmentation(flip="random", translate=2, progressive=(24, 28)))
    sides = []
    for _ in range(3):
        batches = list(loader)
        sides.append({b.size(-1) for b, _ in batches})
        assert all(b.is_contiguous(memory_format=torch.channels_last) for b, _ in batches)
        flat = torch.cat([b[labels < 32] for b, labels in batches])
        assert torch.allclose(flat, torch.full_like(flat, 0.25), atol=1e-5)
    assert sides == [{24}, {28}, {32}]


def test_progressive_sizes_are_checked_and_a_short_run_with_them_learns():
    import fastcifar
    from fastcifar.errors import InputError
    rng = np.random.default_rng(0)
    labels = np.arange(320) % 4
    images = rng.integers(0, 60, (320, 32, 32, 3)).astype(np.uint8)
    images[..., 0] += (labels * 60).astype(np.uint8)[:, None, None]
    data = fastcifar.ImageData(images[:256], labels[:256], images[256:], labels[256:])
    result = fastcifar.train("airbench94", data=data, epochs=4, batch_size=32,
                             progressive_sizes=(16, 24), device="cpu", verbose=False)
    assert result.accuracy.mean > 0.6  # 4 classes told apart by colour: chance is 0.25
    with pytest.raises(InputError, match="sides up to image_size"):
        fastcifar.train("airbench94", data=data, progressive_sizes=(40,), device="cpu")
    with pytest.raises(InputError, match="each of progressive_sizes must be at least 16"):
        fastcifar.train("airbench94", data=data, progressive_sizes=(8,), device="cpu")
    with pytest.raises(InputError, match="for the speed-run recipes"):
        fastcifar.train("resnet18_cifar", data=data, progressive_sizes=(24,), device="cpu")
