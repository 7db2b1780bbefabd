"""The airbench family beyond airbench94: Muon, the wider and deeper nets, the BatchNorm-free
variant, and short real-data runs of each recipe."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from torch import nn

from fastcifar.models.airbench import AirbenchNet, ConvGroup
from fastcifar.models.layers import BatchNorm
from fastcifar.optim.muon import Muon, newton_schulz
from fastcifar.optim.schedules import MultiplierScheduler, follow_own_schedule
from fastcifar.recipes import get_recipe
from fastcifar.train.loop import train_run


def matrix_with_singular_values(singular_values: torch.Tensor, rows: int, cols: int,
                                seed: int = 0):
    """U diag(s) V^T with random orthonormal U (rows x k) and V (cols x k)."""
    generator = torch.Generator().manual_seed(seed)
    k = len(singular_values)
    u, _ = torch.linalg.qr(torch.randn(rows, k, generator=generator))
    v, _ = torch.linalg.qr(torch.randn(cols, k, generator=generator))
    return u @ torch.diag(singular_values) @ v.T, u, v


# Singular values 20x apart, the smallest 2.1% of the Frobenius norm: above the 1.8% that
# 3 quintic steps lift into [0.68, 1.21] (see optim/muon.py).
SPREAD = torch.logspace(0, -1.3, 32)


@pytest.mark.parametrize("rows, cols", [(32, 144), (144, 32)])
def test_newton_schulz_makes_singular_values_about_one_and_keeps_singular_vectors(rows, cols):
    g, u, v = matrix_with_singular_values(SPREAD, rows, cols)
    x = newton_schulz(g, steps=3)
    assert x.dtype == torch.bfloat16 and x.shape == g.shape  # bf16 matmuls work on CPU too
    s = torch.linalg.svdvals(x.float())[:32]
    assert s.min() > 0.6 and s.max() < 1.25, s
    # the same singular vectors: U^T X V is diagonal, up to bfloat16 rounding
    core = u.T @ x.float() @ v
    assert (core - torch.diag(torch.diagonal(core))).abs().max() < 0.05
    assert torch.diagonal(core).min() > 0.6, "each direction keeps its sign"


def test_newton_schulz_in_float32_agrees_with_bfloat16():
    g, _, _ = matrix_with_singular_values(SPREAD, 32, 144)
    x32 = newton_schulz(g, dtype=torch.float32)
    assert x32.dtype == torch.float32
    assert (x32 - newton_schulz(g).float()).abs().max() < 0.02


def test_a_stack_of_matrices_is_orthogonalised_each_on_its_own():
    """The batched form Muon uses: one call for all matrices of a shape."""
    stack = torch.stack([matrix_with_singular_values(SPREAD * k, 32, 144)[0] for k in (1, 3, 10)])
    together = newton_schulz(stack, dtype=torch.float32)
    for matrix, done in zip(stack, together):
        assert torch.allclose(done, newton_schulz(matrix, dtype=torch.float32), atol=1e-5)


def test_muon_with_weights_of_several_shapes_steps_each_as_on_its_own():
    """Batching by shape and fusing the momentum changes nothing: the same weights as one
    Muon per weight after three steps."""
    shapes = [(32, 16, 3, 3), (16, 8, 3, 3), (32, 16, 3, 3), (8, 8, 1, 1), (32, 16, 3, 3)]
    generator = torch.Generator().manual_seed(0)
    start = [torch.randn(s, generator=generator) for s in shapes]
    grads = [[torch.randn(s, generator=generator) for s in shapes] for _ in range(3)]
    together = [nn.Parameter(w.clone()) for w in start]
    alone = [nn.Parameter(w.clone()) for w in start]
    optimiser = Muon(together, lr=0.1, momentum=0.6, ns_dtype=torch.float32)
    singles = [Muon([w], lr=0.1, momentum=0.6, ns_dtype=torch.float32) for w in alone]
    for step_grads in grads:
        for w, v, g in zip(together, alone, step_grads):
            w.grad, v.grad = g.clone(), g.clone()
        optimiser.step()
        for single in singles:
            single.step()
    for w, v in zip(together, alone):
        assert torch.allclose(w, v, atol=1e-5)


def test_one_chain_over_padded_filters_steps_as_a_chain_per_shape_in_fewer_launches():
    """Zero padding to the largest filter changes no update (the iteration keeps the pads
    zero), and the one chain launches fewer operators than a chain per shape."""
    from torch.profiler import ProfilerActivity, profile
    shapes = [(32, 16, 3, 3), (16, 8, 3, 3), (32, 16, 3, 3), (8, 8, 1, 1), (64, 32, 3, 3)]
    generator = torch.Generator().manual_seed(0)
    start = [torch.randn(s, generator=generator) for s in shapes]
    grads = [[torch.randn(s, generator=generator) for s in shapes] for _ in range(3)]
    weights, operators = {}, {}
    for one_chain in (False, True):
        params = [nn.Parameter(w.clone()) for w in start]
        optimiser = Muon(params, lr=0.1, momentum=0.6, ns_dtype=torch.float32,
                         one_chain=one_chain)
        for i, step_grads in enumerate(grads):
            for w, g in zip(params, step_grads):
                w.grad = g.clone()
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                optimiser.step()
            if i == len(grads) - 1:
                operators[one_chain] = sum(e.name.startswith("aten::") for e in prof.events())
        weights[one_chain] = params
    for a, b in zip(weights[False], weights[True]):
        assert torch.allclose(a, b, atol=1e-5)
    assert operators[True] < 0.7 * operators[False], operators


def conv_weight_with_norm(norm: float, seed: int = 1) -> nn.Parameter:
    w = torch.randn(32, 16, 3, 3, generator=torch.Generator().manual_seed(seed))
    return nn.Parameter(w * norm / w.norm())


def test_muon_renormalises_each_weight_to_norm_sqrt_out_channels_before_stepping():
    """The whole (out, in, 3, 3) tensor gets Frobenius norm sqrt(32): an RMS filter norm of 1."""
    w = conv_weight_with_norm(7.0)
    before = w.detach().clone()
    w.grad = torch.randn_like(w)
    Muon([w], lr=0.0, momentum=0.6).step()
    assert w.norm().item() == pytest.approx(math.sqrt(32), rel=1e-5)
    assert torch.allclose(w, before * math.sqrt(32) / before.norm(), atol=1e-6)


def test_one_muon_step_moves_each_filter_bank_by_an_orthogonalised_update():
    w = conv_weight_with_norm(math.sqrt(32))  # already normalised: the step is the update
    before = w.detach().clone()
    g, u, v = matrix_with_singular_values(SPREAD, 32, 144)
    w.grad = g.view_as(w).clone()
    Muon([w], lr=0.1, momentum=0.6).step()
    update = ((before - w.detach()) / 0.1).flatten(1)
    s = torch.linalg.svdvals(update)[:32]
    assert SPREAD.max() / SPREAD.min() > 19
    assert s.max() / s.min() < 1.9 and s.min() > 0.6, "every direction moves about equally"
    core = u.T @ update @ v
    assert (core - torch.diag(torch.diagonal(core))).abs().max() < 0.05, "along G's directions"


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_muon_steps_along_the_nesterov_direction(dtype):
    """Second step: buffer = m g1 + g2, direction g2 + m buffer, orthogonalised."""
    m, lr = 0.6, 0.1
    w = conv_weight_with_norm(math.sqrt(32))
    g1, g2 = torch.randn(2, *w.shape, generator=torch.Generator().manual_seed(2))
    opt = Muon([w], lr=lr, momentum=m, ns_dtype=dtype)
    expected = w.detach().clone()
    for g, direction in ((g1, g1 + m * g1), (g2, g2 + m * (m * g1 + g2))):
        w.grad = g.clone()
        opt.step()
        expected = expected * math.sqrt(32) / expected.norm()
        update = newton_schulz(direction.flatten(1), dtype=dtype).float().view_as(w)
        expected = expected - lr * update
    assert torch.allclose(w, expected, atol=1e-5)


def test_muon_iterates_in_float32_on_cpu_unless_told_otherwise():
    w = conv_weight_with_norm(math.sqrt(32))
    g, _, _ = matrix_with_singular_values(SPREAD, 32, 144)
    w.grad = g.view_as(w).clone()
    before = w.detach().clone()
    Muon([w], lr=1.0).step()
    assert torch.allclose(before - w.detach(),
                          newton_schulz(g, dtype=torch.float32).view_as(w), atol=1e-6)


def test_a_group_can_follow_its_own_lr_schedule_under_the_loops_scheduler():
    a, b = nn.Parameter(torch.zeros(1)), nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([dict(params=[a], lr=1.0), dict(params=[b], lr=1.0)])
    follow_own_schedule(opt.param_groups[0], np.array([1.0, 0.5, 0.0]))
    shared = MultiplierScheduler(opt, 0.9 ** np.arange(10))  # as the loop does
    moves_a, moves_b = [], []
    for _ in range(4):
        before_a, before_b = a.item(), b.item()
        a.grad, b.grad = torch.ones(1), torch.ones(1)
        opt.step()
        shared.step()
        moves_a.append(before_a - a.item())
        moves_b.append(before_b - b.item())
    assert moves_a == pytest.approx([1.0, 0.5, 0.0, 0.0]), "its own, then the last value"
    assert moves_b == pytest.approx([1.0, 0.9, 0.81, 0.729]), "the others keep the shared one"


def conv_weights(widths, convs_per_group):
    """3x3 conv weights of an AirbenchNet, from its widths (the first input is 24 channels)."""
    total, cin = 0, 24
    for w in widths:
        total += 9 * (cin * w + (convs_per_group - 1) * w * w)
        cin = w
    return total


def trainable(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


def test_airbench96_groups_have_three_convs_and_a_residual_over_the_last_two():
    group = ConvGroup(8, 16, batchnorm_momentum=0.9, convs=3, residual=True)
    assert [n for n, _ in group.named_children() if n.startswith("conv")] == ["conv1", "conv2",
                                                                             "conv3"]
    x = torch.randn(4, 8, 8, 8)
    first = group.activation(group.norm1(group.pool(group.conv1(x))))
    with torch.no_grad():
        group.conv3.weight.zero_()  # the last conv adds nothing, so the skip alone shows
    assert torch.allclose(group(x), group.activation(first), atol=1e-5)
    plain = ConvGroup(8, 16, batchnorm_momentum=0.9, convs=3, residual=False)
    with torch.no_grad():
        plain.conv3.weight.zero_()
    assert torch.allclose(plain(x), torch.zeros(()), atol=1e-6), "without it: GELU(0) = 0"

    net = get_recipe("airbench96").build_model(get_recipe("airbench96").config, 10)
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    norms = 3 * (128 + 384 + 512)
    assert trainable(net) == conv_weights((128, 384, 512), 3) + 512 * 10 + 24 + norms
    assert all(m.momentum == pytest.approx(0.1) for m in net.modules()
               if isinstance(m, BatchNorm)), "PyTorch's default statistics momentum"


def test_airbench95_is_airbench94_wider():
    net = get_recipe("airbench95").build_model(get_recipe("airbench95").config, 10)
    norms = 2 * (128 + 384 + 384)
    assert trainable(net) == conv_weights((128, 384, 384), 2) + 384 * 10 + 24 + norms
    assert math.isclose(trainable(net) / 1e6, 4.60, abs_tol=0.01)


def test_bnfree_net_has_no_batchnorm_and_a_bias_on_every_conv():
    recipe = get_recipe("airbench94_bnfree")
    net = recipe.build_model(recipe.config, 10)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())
    convs = [m for m in net.groups.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 6 and all(c.bias is not None and not c.bias.any() for c in convs)
    # one bias per conv output replaces one BatchNorm bias per conv output
    biases = 2 * (64 + 256 + 256)
    assert trainable(net) == conv_weights((64, 256, 256), 2) + 256 * 10 + 24 + biases
    assert trainable(net) == trainable(AirbenchNet())


def changed_fields(config, base) -> dict:
    ours, theirs = dataclasses.asdict(config), dataclasses.asdict(base)
    return {k: v for k, v in ours.items() if theirs[k] != v}


def test_each_variant_changes_only_what_its_authors_list():
    base = get_recipe("airbench94").config
    assert changed_fields(get_recipe("airbench95").config, base) == dict(
        epochs=15.0, lr=10.0, widths=(128, 384, 384))
    assert changed_fields(get_recipe("airbench94_bnfree").config, base) == dict(
        epochs=11.0, batch_size=384, lr=10.0, weight_decay=0.001, batchnorm=False)
    assert changed_fields(get_recipe("airbench96").config, base) == dict(
        epochs=37.0, lr=9.0, weight_decay=0.012, lr_peak_at=0.1, lr_end=0.0,
        widths=(128, 384, 512), convs_per_group=3, residual=True, batchnorm_momentum=0.9,
        translate=4, cutout=12)


def test_muon_recipe_splits_the_parameters_between_muon_and_sgd():
    recipe = get_recipe("airbench94_muon")
    config = dataclasses.replace(recipe.config, batch_size=50)
    torch.manual_seed(0)
    net = recipe.build_model(config, 10)
    assert net.head.weight.std().item() == pytest.approx(1.0, rel=1e-5)
    assert net.scale.scale == pytest.approx(1 / 256)
    images = torch.randn(500, 3, 32, 32)  # 10 steps per epoch
    training = recipe.setup(net, config, images, total_steps=80)
    sgd, muon = training.optimizers
    assert training.average is None, "no lookahead"
    filters = [p for g in muon.param_groups for p in g["params"]]
    assert len(filters) == 6 and all(p.dim() == 4 for p in filters)
    assert not any(p is net.whiten.weight for p in filters), "the whitening filters stay fixed"
    whiten_bias, norm_biases, head = sgd.param_groups
    assert whiten_bias["params"] == [net.whiten.bias] and head["params"] == [net.head.weight]
    assert len(norm_biases["params"]) == 6
    assert (whiten_bias["lr"], norm_biases["lr"], head["lr"]) == (0.053, 0.053, 0.67)
    every = {id(p) for g in sgd.param_groups + muon.param_groups for p in g["params"]}
    assert every == {id(p) for p in net.parameters() if p.requires_grad}
    # every SGD group loses 2e-6 of its weights per example per step (at multiplier 1)
    assert all(g["lr"] * g["weight_decay"] == pytest.approx(2e-6 * 50) for g in sgd.param_groups)
    assert training.lr_multipliers[0] == 1 and training.lr_multipliers[-1] == 0


# Short runs on 2,000 training and 500 test images, 4 epochs of batch 100, with narrower
# nets (a quarter of airbench94's widths, an eighth of airbench95/96's) so that each run
# takes seconds on 2 CPU cores. Measured TTA accuracies, seeds 0 and 1 (seed 1 on another
# 2,000 images): muon 0.58/0.58, airbench95 0.34/0.35, airbench96 0.39/0.42, bnfree 0.39/0.39.
SHORT_RUNS = {
    "airbench94_muon": (dict(widths=(16, 64, 64), output_scale=1 / 64), 0.45),
    "airbench95": (dict(widths=(16, 48, 48)), 0.25),
    "airbench96": (dict(widths=(16, 48, 64)), 0.28),
    "airbench94_bnfree": (dict(widths=(16, 64, 64)), 0.28),
}


@pytest.mark.parametrize("name", list(SHORT_RUNS))
def test_short_run_learns(name, short_run_data):
    recipe = get_recipe(name)
    narrower, min_accuracy = SHORT_RUNS[name]
    config = dataclasses.replace(recipe.config, batch_size=100, epochs=4, **narrower)
    result = train_run(recipe, config, short_run_data, torch.device("cpu"), seed=0)
    losses = [e.train_loss for e in result.epochs]
    assert losses[-1] < losses[0], losses
    assert result.accuracy > min_accuracy, result  # chance is 0.10


@pytest.mark.parametrize("name", ["airbench94", "airbench95", "airbench96", "airbench94_bnfree"])
def test_the_whitening_bias_starts_at_zero_as_in_the_reference(name):
    """legacy/airbench94.py's Conv zeroes every bias it has, the whitening layer's too."""
    recipe = get_recipe(name)
    torch.manual_seed(0)
    net = recipe.build_model(recipe.config, 10)
    assert torch.count_nonzero(net.whiten.bias) == 0


def test_airbench94_muon_keeps_torchs_random_whitening_bias_as_its_reference_does():
    recipe = get_recipe("airbench94_muon")
    torch.manual_seed(0)
    bias = recipe.build_model(recipe.config, 10).whiten.bias
    bound = 1 / (3 * 2 * 2) ** 0.5  # torch's default: uniform within 1/sqrt(fan_in)
    assert torch.count_nonzero(bias) == len(bias) and bias.abs().max() <= bound
