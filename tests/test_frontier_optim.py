"""The frontier recipes' optimiser blocks (hiverge's record, Fulcrum's Fable E1 and E5): Muon
with their options and the lr's linear decay to a floor, each checked against the
original's own code on the same inputs, in float32 on a CPU."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

from fastcifar.optim.muon import (FRONTIER_COEFFICIENTS, Muon, renormalisation_steps,
                                  target_magnitude)
from fastcifar.optim.schedules import MultiplierScheduler, linear_to_floor, piecewise_linear
from reference_modules import (FABLE_E1, FABLE_E5, HIVERGE, eager, needs_references,
                               reference_module)

pytestmark = needs_references

# Two of airbench's conv weights: their Newton-Schulz runs on a wide (64, 216) matrix and
# on a (256, 576) one, to which hiverge and E5 pad the other.
SHAPES = [(64, 24, 3, 3), (256, 64, 3, 3)]
MOMENTUM, WEIGHT_DECAY = 0.655, 1.0418e-6 * 1536
# Each original's Newton-Schulz function, compiled there, called by its optimiser.
COMPILED = {HIVERGE: "_zeropower_via_newtonschulz5", FABLE_E5: "_orthogonalize_newtonschulz",
            FABLE_E1: "_ns_all"}


def original_optimiser(script: str, params, monkeypatch, schedule_steps: int,
                       lr: float = 0.205, float32_momentum: bool = True):
    """The original's Muon (hiverge) or OrthoMomentum (Fable) as its script builds it, with
    its compiled Newton-Schulz run eagerly. It keeps momentum only when the group says its
    buffers are float16 (its trap); float32_momentum puts float32 buffers into its state
    under that flag, so that its momentum runs, in float32."""
    module = reference_module(script)
    monkeypatch.setattr(module, COMPILED[script], eager(getattr(module, COMPILED[script])))
    kind = module.Muon if script == HIVERGE else module.OrthoMomentum
    optimiser = kind(params, lr=lr, momentum=MOMENTUM, nesterov=True, norm_freq=4,
                     total_train_steps=schedule_steps, weight_decay=WEIGHT_DECAY)
    optimiser.param_groups[0]["momentum_buffer_dtype"] = (torch.half if float32_momentum
                                                          else torch.float32)
    if float32_momentum:
        for p in params:
            optimiser.state[p]["momentum_buffer"] = torch.zeros_like(p)
    return optimiser


def frontier_muon(params, schedule_steps: int, lr: float = 0.205, momentum: float = MOMENTUM,
                  **options) -> Muon:
    return Muon(params, lr=lr, momentum=momentum, coefficients=FRONTIER_COEFFICIENTS,
                weight_decay=WEIGHT_DECAY, schedule_steps=schedule_steps,
                ns_dtype=torch.float32, **options)


def weights_and_gradients(steps: int, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    start = [torch.randn(s, generator=generator) / math.sqrt(s[1] * 9) for s in SHAPES]
    grads = [[torch.randn(s, generator=generator) for s in SHAPES] for _ in range(steps)]
    return start, grads


def relative_difference(ours, theirs) -> float:
    return max(((a - b).abs().max() / b.abs().max()).item() for a, b in zip(ours, theirs))


def step_both(ours, theirs, our_optimiser, their_optimiser, grads, lrs) -> list[float]:
    """Both optimisers stepped on the same gradients and lrs; the weights' relative
    difference after each step."""
    differences = []
    for step_grads, lr in zip(grads, lrs):
        for a, b, g in zip(ours, theirs, step_grads):
            a.grad, b.grad = g.clone(), g.clone()
        our_optimiser.param_groups[0]["lr"] = their_optimiser.param_groups[0]["lr"] = lr
        our_optimiser.step()
        their_optimiser.step()
        differences.append(relative_difference(ours, theirs))
    return differences


@pytest.mark.parametrize("script, lr, decay_steps, total_steps, floor", [
    (HIVERGE, 0.205, 30, 30, 0.0),  # hiverge: decay over the whole run, to 0
    (FABLE_E5, 0.205, 24, 30, 0.05),  # Fable: a shorter decay, then a tail at the floor
    (FABLE_E1, 0.2255, 24, 30, 0.05),
])
def test_frontier_muon_steps_as_the_originals_optimiser(script, lr, decay_steps, total_steps,
                                                        floor, monkeypatch):
    """Same weights, 30 gradients and lrs: the same weights after every step, to float32
    rounding (at most 6.2e-7 of the largest weight here: their Newton-Schulz computes
    c (A A) where ours computes (c A) A; both pad every filter to the largest where hiverge
    and E5 do, and run a chain per shape where E1 does). Without
    the target-magnitude schedule the difference would be 1.5e-5. A short schedule T runs
    through every renormalisation gap (2..17), the whole target-magnitude ramp and, for
    Fable, steps past T."""
    start, grads = weights_and_gradients(total_steps)
    ours = [nn.Parameter(w.clone()) for w in start]
    theirs = [nn.Parameter(w.clone()) for w in start]
    lrs = lr * linear_to_floor(total_steps, decay_steps, floor)
    # (one chain over the padded filters where the original pads: hiverge's and E5's)
    one_chain = script != FABLE_E1
    differences = step_both(ours, theirs,
                            frontier_muon(ours, decay_steps, lr, one_chain=one_chain),
                            original_optimiser(script, theirs, monkeypatch, decay_steps, lr),
                            grads, lrs[:total_steps])
    assert max(differences) < 2e-6, differences
    moved = relative_difference(start, [w.detach() for w in theirs])
    assert moved > 0.5, "the steps moved the weights far beyond the tolerance"


def test_without_float16_buffers_the_originals_step_without_momentum(monkeypatch):
    """The trap in hiverge's and Fable's code: given any buffer dtype but float16, it steps
    along (1 + momentum) g, i.e. as Muon without momentum. With float16 buffers (as on
    their GPUs) it keeps momentum, as fastcifar's Muon always does (buffers in the
    gradient's dtype: float16 for the speed runs on CUDA)."""
    start, grads = weights_and_gradients(6)
    ours = [nn.Parameter(w.clone()) for w in start]
    theirs = [nn.Parameter(w.clone()) for w in start]
    differences = step_both(ours, theirs, frontier_muon(ours, 6, momentum=0.0, nesterov=False),
                            original_optimiser(FABLE_E1, theirs, monkeypatch, 6,
                                               float32_momentum=False),
                            grads, [0.2] * 6)
    assert max(differences) < 2e-6, differences


@pytest.mark.parametrize("script", [HIVERGE, FABLE_E5, FABLE_E1])
@pytest.mark.parametrize("schedule_steps, total_steps", [(243, 243), (256, 260), (272, 284)])
def test_renormalisation_steps_are_the_originals(script, schedule_steps, total_steps,
                                                 monkeypatch):
    """The steps at which the original rescales the weights (its own counters, stepped on a
    tiny weight), for hiverge's T = 243 and Fable's D = 256 (E5) and 272 (E1), past D."""
    weight = nn.Parameter(torch.ones(2, 1, 1, 1))
    original = original_optimiser(script, [weight], monkeypatch, schedule_steps)
    theirs = []
    for _ in range(total_steps):
        weight.grad = torch.ones_like(weight)
        original.step()
        if original.last_norm_step == original.step_count:
            theirs.append(original.step_count)
    assert renormalisation_steps(schedule_steps, total_steps) == theirs


def test_hiverge_renormalises_at_the_37_steps_its_spec_lists():
    assert renormalisation_steps(243, 243) == [
        2, 4, 6, 8, 10, 12, 14, 16, 19, 22, 25, 28, 31, 35, 39, 43, 47, 52, 57, 62, 68, 74,
        80, 87, 94, 102, 110, 119, 128, 138, 149, 160, 172, 185, 199, 214, 230]


def test_target_magnitude_is_fable_e1s_per_step_value():
    """E1 computes it on the host per step (then feeds it to its graph): bit for bit,
    past D too."""
    module = reference_module(FABLE_E1)
    original = module.OrthoMomentum([nn.Parameter(torch.ones(2, 1, 1, 1))],
                                    total_train_steps=272)
    for k in range(1, 285):
        assert target_magnitude(k, 272) == original._advance_schedule()[1]


def test_the_step_count_and_last_renormalisation_survive_a_checkpoint():
    start, grads = weights_and_gradients(10)
    first = [nn.Parameter(w.clone()) for w in start]
    resumed = [nn.Parameter(w.clone()) for w in start]
    optimiser = frontier_muon(first, 8)
    for step_grads in grads[:5]:
        for w, g in zip(first, step_grads):
            w.grad = g.clone()
        optimiser.step()
    with torch.no_grad():
        for w, v in zip(resumed, first):
            w.copy_(v)
    again = frontier_muon(resumed, 8)
    again.load_state_dict(copy.deepcopy(optimiser.state_dict()))
    for step_grads in grads[5:]:
        for w, v, g in zip(first, resumed, step_grads):
            w.grad, v.grad = g.clone(), g.clone()
        optimiser.step()
        again.step()
    assert all(torch.equal(w, v) for w, v in zip(first, resumed))


class _Recorder:
    """Stands in for an optimiser in the original's loop: records its lr at every step."""

    def __init__(self, groups: int):
        self.param_groups = [dict(lr=1.0, initial_lr=1.0) for _ in range(groups)]
        self.lrs: list[float] = []

    def step(self):
        self.lrs.append(self.param_groups[-1]["lr"])

    def zero_grad(self, set_to_none: bool = True):
        pass


class _Loss:
    def backward(self):
        pass


@pytest.mark.parametrize("script", [FABLE_E5, FABLE_E1])
@pytest.mark.parametrize("total_steps, decay_steps", [(260, 256), (284, 272)])
def test_linear_to_floor_is_the_lr_factor_of_fables_loop(script, total_steps, decay_steps,
                                                         monkeypatch):
    """Fable's own training loop (run_steps) with the model, data and optimisers stubbed out:
    the factor it gives the lr at each step s = 0..S-1 is max(1 - s/D, 0.05); and the
    lr MultiplierScheduler sets from it is lr_0 times that factor."""
    module = reference_module(script)
    monkeypatch.setattr(module, "forward_step", lambda *args: _Loss(), raising=False)
    monkeypatch.setattr(module, "get_forward_step", lambda size: lambda *args: _Loss(),
                        raising=False)

    class Batches:  # 32 empty batches an epoch
        crop_size = 32

        def __len__(self):
            return 32

        def __iter__(self):
            return iter([(None, None)] * 32)

    theirs = _Recorder(groups=1)
    module.run_steps(nn.Module(), Batches(), _Recorder(groups=3), theirs, decay_steps, 7,
                     total_steps, lr_floor=0.05)
    ours = linear_to_floor(total_steps, decay_steps, 0.05)
    assert len(theirs.lrs) == total_steps
    assert np.abs(ours[:total_steps] - theirs.lrs).max() < 1e-12

    optimiser = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.2255)
    scheduler = MultiplierScheduler(optimiser, ours)
    lrs = []
    for _ in range(total_steps):
        lrs.append(optimiser.param_groups[0]["lr"])
        scheduler.step()
    assert np.abs(np.array(lrs) - 0.2255 * np.array(theirs.lrs)).max() < 1e-12


def test_linear_to_floor_over_the_whole_run_is_airbenchs_linear_decay():
    assert np.abs(linear_to_floor(243, 243, 0.0)
                  - piecewise_linear(243, [(0, 1.0), (1, 0.0)])).max() < 1e-15


def test_muon_by_default_is_airbench94_muons_original_bit_for_bit():
    """The frontier options leave the default update alone: iterating in bfloat16 as the
    original does, the same weights, bit for bit, as airbench94_muon.py's Muon."""
    module = reference_module("cifar10-airbench/airbench94_muon.py")
    module_ns = "zeropower_via_newtonschulz5"
    shapes = [(32, 16, 3, 3), (16, 8, 3, 3), (32, 16, 3, 3), (8, 8, 1, 1)]
    generator = torch.Generator().manual_seed(0)
    start = [torch.randn(s, generator=generator) for s in shapes]
    ours = [nn.Parameter(w.clone()) for w in start]
    theirs = [nn.Parameter(w.clone()) for w in start]
    our_optimiser = Muon(ours, lr=0.24, momentum=0.6, ns_dtype=torch.bfloat16)
    their_optimiser = module.Muon(theirs, lr=0.24, momentum=0.6, nesterov=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(module, module_ns, eager(getattr(module, module_ns)))
        for _ in range(4):
            for a, b in zip(ours, theirs):
                a.grad = torch.randn(a.shape, generator=generator)
                b.grad = a.grad.clone()
            our_optimiser.step()
            their_optimiser.step()
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs))
