"""David Page's recipes: ghost batch norm, the shared ResNet, per-example SGD, the schedules,
the EMA evaluation model, and short real-data runs of bag_of_tricks and resnet9_dawnbench."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from torch import nn

from fastcifar.data.loader import to_device_tensor
from fastcifar.errors import InputError
from fastcifar.models.layers import BatchNorm, GhostBatchNorm
from fastcifar.models.resnet_page import PageResNet, Residual
from fastcifar.models.whitening import image_patches
from fastcifar.optim.sgd import per_example_sgd
from fastcifar.recipes import get_recipe
from fastcifar.recipes.bag_of_tricks import BagOfTricks
from fastcifar.train.evaluate import evaluate
from fastcifar.data.loader import DeviceData
from fastcifar.train.loop import train_run

STEPS_PER_EPOCH = 50_000 // 512  # 97 full batches of the official training set


def split_inputs(splits: int = 16, per_split: int = 8, channels: int = 4) -> torch.Tensor:
    """A batch whose consecutive splits have very different means and scales."""
    torch.manual_seed(0)
    x = torch.randn(splits, per_split, channels, 5, 5)
    offsets = torch.arange(splits, dtype=torch.float32).view(-1, 1, 1, 1, 1)
    return (x * (1 + offsets) + 10 * offsets).flatten(0, 1)


def test_ghost_batchnorm_normalises_each_split_with_its_own_statistics():
    x = split_inputs()
    norm = GhostBatchNorm(4, num_splits=16)
    out = norm(x).detach().view(16, 8, 4, 5, 5)
    means, variances = out.mean((1, 3, 4)), out.var((1, 3, 4), unbiased=False)
    assert means.abs().max() < 1e-4, "every split is centred on its own mean"
    assert (variances - 1).abs().max() < 1e-3, "and scaled by its own variance"
    whole_batch = BatchNorm(4, eps=1e-5)(x).detach().view(16, 8, 4, 5, 5).mean((1, 3, 4))
    assert whole_batch.abs().max() > 1, "plain batch norm would leave the splits apart"
    channels_last = norm(x.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(channels_last, norm(x), atol=1e-5), "any memory format"


def test_ghost_batchnorm_scale_is_frozen_at_one_and_shift_learns():
    norm = GhostBatchNorm(4, num_splits=16)
    assert not norm.weight.requires_grad and torch.equal(norm.weight, torch.ones(4))
    assert norm.bias.requires_grad
    norm(split_inputs()).pow(2).sum().backward()
    assert norm.weight.grad is None and norm.bias.grad is not None


def test_ghost_batchnorm_keeps_running_statistics_per_split_and_evaluates_with_their_mean():
    """Momentum 0.9 keeps 0.9 of the old statistics (torch's 0.1); the variance is unbiased."""
    x = split_inputs()
    norm = GhostBatchNorm(4, num_splits=16, momentum=0.9)
    norm(x)
    splits = x.view(16, 8, 4, 5, 5)
    assert norm.running_mean.shape == (16, 4)
    assert torch.allclose(norm.running_mean, 0.1 * splits.mean((1, 3, 4)), rtol=1e-4)
    assert torch.allclose(norm.running_var, 0.9 + 0.1 * splits.var((1, 3, 4)), rtol=1e-4)

    norm.eval()
    mean, var = norm.running_mean.mean(0), norm.running_var.mean(0)
    expected = (x - mean.view(1, 4, 1, 1)) / torch.sqrt(var.view(1, 4, 1, 1) + 1e-5)
    assert torch.allclose(norm(x[:3]), expected[:3], atol=1e-5), "any batch size in eval"


def test_ghost_batchnorm_with_one_split_is_batchnorm():
    x = split_inputs()
    ghost, plain = GhostBatchNorm(4, num_splits=1), BatchNorm(4, momentum=0.9, eps=1e-5)
    assert torch.allclose(ghost(x), plain(x), atol=1e-5)
    assert torch.allclose(ghost.running_var[0], plain.running_var)


def test_ghost_batchnorm_needs_batches_that_split_evenly():
    with pytest.raises(ValueError, match="does not split"):
        GhostBatchNorm(4, num_splits=16)(torch.randn(20, 4, 3, 3))
    config = dataclasses.replace(get_recipe("bag_of_tricks").config, batch_size=500)
    with pytest.raises(InputError, match="ghost_splits"):
        config.validate()


def resnet_weights(widths, prep_in: int, prep_kernel: int) -> int:
    """Conv and linear weights of Page's ResNet: prep, layer1 + 2 residual convs, layer2,
    layer3 + 2 residual convs, linear head."""
    prep, c1, c2, c3 = widths
    return (prep_in * prep * prep_kernel**2
            + 9 * (prep * c1 + 2 * c1 * c1 + c1 * c2 + c2 * c3 + 2 * c3 * c3) + c3 * 10)


def test_resnet9_network_shapes_residuals_and_parameter_count():
    recipe = get_recipe("resnet9_dawnbench")
    net = recipe.build_model(recipe.config, 10)
    assert isinstance(net, PageResNet) and net.whiten is None
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert [isinstance(layer[-1], Residual) for layer in net.layers] == [True, False, True]
    norms = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(type(m) is BatchNorm and m.weight.requires_grad for m in norms)
    assert len(norms) == 8 and any(isinstance(m, nn.ReLU) for m in net.modules())
    norm_channels = 64 + 3 * 128 + 256 + 3 * 512
    trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
    assert trainable == resnet_weights((64, 128, 256, 512), 3, 3) + 2 * norm_channels
    assert math.isclose(trainable / 1e6, 6.57, abs_tol=0.01)
    assert net.head.bias is None and net.scale.scale == 0.125


def test_bag_of_tricks_network_whitening_prep_ghost_norms_and_parameter_count():
    recipe = get_recipe("bag_of_tricks")
    net = recipe.build_model(recipe.config, 10)
    assert isinstance(net, PageResNet), "the same network as ResNet-9, other parts plugged in"
    whiten = net.whiten
    assert whiten.weight.shape == (27, 3, 3, 3) and whiten.padding == (1, 1)
    assert whiten.bias is None and not whiten.weight.requires_grad
    assert net(torch.randn(16, 3, 32, 32)).shape == (16, 10)
    assert [isinstance(layer[-1], Residual) for layer in net.layers] == [True, False, True]
    norms = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(norms) == 8 and all(isinstance(m, GhostBatchNorm) and m.num_splits == 16
                                   and not m.weight.requires_grad for m in norms)
    assert all(m.alpha == 0.3 for m in net.modules() if isinstance(m, nn.CELU))
    conv, pool = net.layers[0][0][:2]
    assert isinstance(conv, nn.Conv2d) and isinstance(pool, nn.MaxPool2d), "pool before norm"
    norm_biases = 64 + 3 * 128 + 256 + 3 * 512
    trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
    assert trainable == resnet_weights((64, 128, 256, 512), 27, 1) + norm_biases


def test_bag_of_tricks_lr_rises_falls_to_a_tenth_at_80_percent_then_stays():
    total = 10 * STEPS_PER_EPOCH
    lr = get_recipe("bag_of_tricks").config.lr_schedule(total)
    up, floor = int(0.2 * total), int(0.8 * total)
    assert (up, floor) == (194, 776)  # cifar10-fast-simple's 194 steps up, 582 down
    assert lr[0] == 0 and lr[up] == pytest.approx(1.0) and lr[floor] == pytest.approx(0.1)
    assert np.allclose(np.diff(lr[:up + 1]), 1 / up)
    assert np.allclose(np.diff(lr[up:floor + 1]), -0.9 / (floor - up))
    assert np.allclose(lr[floor:], 0.1), "flat for the last 2 epochs, which the EMA averages"


def test_resnet9_lr_is_one_cycle_from_0_to_peak_at_epoch_5_to_0_at_epoch_24():
    total = 24 * STEPS_PER_EPOCH
    lr = get_recipe("resnet9_dawnbench").config.lr_schedule(total)
    peak = 5 * STEPS_PER_EPOCH
    assert lr[0] == 0 and lr[peak] == pytest.approx(1.0) and lr[total] == pytest.approx(0.0)
    assert np.allclose(np.diff(lr[:peak + 1]), 1 / peak)
    assert np.allclose(np.diff(lr[peak:]), -1 / (total - peak))


def test_per_example_sgd_gives_pages_torch_values():
    """Page's dawn.py: torch lr 0.4/512 and weight_decay 5e-4*512 with a summed loss;
    new_dawn.py's biases: 64x the lr and 1/64 the weight decay."""
    weights, biases = nn.Parameter(torch.ones(3)), nn.Parameter(torch.ones(3))
    opt = per_example_sgd([([weights], 1.0), ([biases], 64.0)], lr=0.4 / 512,
                          weight_decay=5e-4, momentum=0.9, batch_size=512)
    weight_group, bias_group = opt.param_groups
    assert weight_group["lr"] == pytest.approx(0.4 / 512)
    assert weight_group["weight_decay"] == pytest.approx(5e-4 * 512)
    assert bias_group["lr"] == pytest.approx(64 * 0.4 / 512)
    assert bias_group["weight_decay"] == pytest.approx(5e-4 * 512 / 64)
    assert weight_group["nesterov"] and weight_group["momentum"] == 0.9


def test_bag_of_tricks_setup_whitens_then_starts_an_ema_decaying_095_every_5_steps(
        small_cifar10):
    recipe = get_recipe("bag_of_tricks")
    config = dataclasses.replace(recipe.config, widths=(8, 8, 8, 8))
    net = recipe.build_model(config, 10)
    images = to_device_tensor(small_cifar10.train_images[:500], "cpu")
    training = recipe.setup(net, config, images, total_steps=100)
    assert not training.average.copy_back, "an evaluation model, not lookahead"
    assert training.average_every == 5
    assert training.average_decay(5) == pytest.approx(0.99**5) == pytest.approx(0.951, abs=1e-3)
    assert torch.equal(training.average.average["whiten.weight"], net.whiten.weight)
    # the filters whiten the images' 3x3 patches: unit variance along the leading
    # directions, less (by eps = 1e-2) along the faint ones
    outputs = image_patches(images, 3) @ net.whiten.weight.view(27, -1).T
    variances = outputs.pow(2).mean(0)
    assert (variances[:3] - 1).abs().max() < 0.01 and (variances < 1).all()


class RecordedBagOfTricks(BagOfTricks):
    """bag_of_tricks, keeping the model and Training it hands the loop."""

    def setup(self, model, config, train_images, total_steps):
        self.model, self.training = model, super().setup(model, config, train_images, total_steps)
        return self.training


def test_short_bag_of_tricks_run_learns_and_evaluates_the_ema(small_cifar10):
    recipe = RecordedBagOfTricks()
    # 15 steps per epoch: an EMA momentum of 0.9 spans ~10 steps, as 0.99 spans about one
    # epoch of the full run.
    config = dataclasses.replace(recipe.config, widths=(8, 16, 32, 64), batch_size=128,
                                 epochs=4, ema_momentum=0.9)
    data = DeviceData.from_dataset(small_cifar10, torch.device("cpu"))
    ema_accuracies = []

    def on_epoch(record):
        if record.epoch < 4:  # mid-run the EMA is a separate model; the net trains on
            ema = recipe.training.average.evaluation_model(recipe.model)
            ema_accuracies.append(evaluate(ema, data.test_images, data.test_labels))

    result = train_run(recipe, config, data, torch.device("cpu"), seed=0, on_epoch=on_epoch)
    assert [e.val_accuracy for e in result.epochs[:3]] == ema_accuracies
    final = recipe.model.state_dict()
    assert all(torch.equal(final[k], v) for k, v in recipe.training.average.average.items()
               if v.is_floating_point()), "the final TTA evaluation sees the EMA weights"
    losses = [e.train_loss for e in result.epochs]
    assert losses[-1] < losses[0]
    # 2,000 images, 60 steps, widths /8: seeds 0, 1, 2 reached 36.5%, 38.6%, 35.2% with TTA
    assert result.accuracy > 0.25, result


def test_short_resnet9_run_learns(small_cifar10):
    recipe = get_recipe("resnet9_dawnbench")
    config = dataclasses.replace(recipe.config, widths=(8, 16, 32, 64), batch_size=128,
                                 epochs=4)
    data = DeviceData.from_dataset(small_cifar10, torch.device("cpu"))
    result = train_run(recipe, config, data, torch.device("cpu"), seed=0)
    losses = [e.train_loss for e in result.epochs]
    assert losses[-1] < losses[0]
    # 2,000 images, 60 steps, widths /8: seeds 0, 1, 2 reached 35.4%, 38.9%, 39.3%
    assert result.accuracy > 0.25, result
