"""Muon: momentum whose update is orthogonalised, for the conv filters (airbench94_muon).

Each step replaces the momentum direction G = U S V^T of a weight matrix by about U V^T:
every direction the gradient moves in moves by the same amount, however small its singular
value was. The orthogonalisation is a few Newton-Schulz iterations, cheap matrix products
that run well in bfloat16, rather than an SVD.

The frontier recipes (hiverge's record, Fulcrum's Fable E1 and E5: their `Muon` and
`OrthoMomentum`) run the same update with four changes, all options of Muon here: retuned
coefficients (FRONTIER_COEFFICIENTS), the weights renormalised only at the steps
renormalisation_steps chooses, the direction normalised in two stages (target_magnitude),
and decoupled weight decay.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .schedules import follow_own_schedule, piecewise_linear
from .sgd import sgd_with_decay

# a, b, c of the quintic x -> a x + b x^3 + c x^5 applied to every singular value. Its
# slope at 0 is large (a = 3.4445), so small singular values grow fast; the price is that
# it does not converge to 1: after 3 steps, every singular value that started above 1.8%
# of the matrix's Frobenius norm lies in [0.68, 1.21] (above 1.3%: in [0.5, 1.21]). Good
# enough for training (airbench94_muon), in 3 steps instead of many.
QUINTIC_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
# hiverge's retuning, which Fable keeps: a little steeper at 0 and overshooting more (after
# 3 steps, singular values above 1.8% of the norm lie in [0.69, 1.36]).
FRONTIER_COEFFICIENTS = (3.4576, -4.7391, 2.0843)


def newton_schulz(matrix: torch.Tensor, steps: int = 3,
                  coefficients: tuple[float, float, float] = QUINTIC_COEFFICIENTS,
                  dtype: torch.dtype = torch.bfloat16, eps: float = 1e-7,
                  magnitude: float | None = None) -> torch.Tensor:
    """An approximately orthogonal matrix with matrix's singular vectors: U S' V^T with S'
    near 1 (in dtype). Dividing by the Frobenius norm first puts every singular value in
    [0, 1], where the quintic pushes them towards 1. A stack of matrices (..., m, n) is
    done at once, each on its own: one batched product per term instead of one per matrix.

    With `magnitude` (the frontier recipes), the matrix is first scaled to that norm, then
    normalised: the two cancel but for the eps of each, which change the result by ~1e-4
    relative, kept so that the updates are theirs."""
    if matrix.dim() < 2:
        raise ValueError(f"newton_schulz needs a matrix, got shape {tuple(matrix.shape)}")
    a, b, c = coefficients
    x = matrix.to(dtype)
    if magnitude is not None:
        x = x * (magnitude / (torch.linalg.matrix_norm(x, keepdim=True) + eps))
    x = x / (torch.linalg.matrix_norm(x, keepdim=True) + eps)
    tall = x.size(-2) > x.size(-1)
    if tall:
        x = x.mT  # iterate on the smaller Gram matrix
    for _ in range(steps):
        gram = x @ x.mT
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.mT if tall else x


# The frontier recipes' per-step schedules, over T steps (hiverge: the run's length; Fable:
# the lr's decay length D, shorter than the run). k counts the optimiser's steps from 1.

def renormalisation_gap(step: int, schedule_steps: int) -> int:
    """The steps that must have passed since the last renormalisation at step k: 2 at the
    start, growing to 17 at step T (and on past it)."""
    return 2 + int(15 * (step / schedule_steps))


def renormalisation_steps(schedule_steps: int, total_steps: int) -> list[int]:
    """The steps k = 1..total_steps at which the weights are renormalised: k = 2, then
    whenever renormalisation_gap(k) steps have passed since the last (37 times in T = 243)."""
    steps, last = [], 0
    for k in range(1, total_steps + 1):
        if k - last >= renormalisation_gap(k, schedule_steps):
            steps.append(k)
            last = k
    return steps


def target_magnitude(step: int, schedule_steps: int) -> float:
    """The norm newton_schulz scales the direction to at step k before normalising it:
    from 0.5012 (k = 0) linearly down to 0.0786 at k = T, then held (as Fable; hiverge
    never steps past T)."""
    progress = min(step, schedule_steps) / schedule_steps
    return 0.5012 * (1 - progress) + 0.0786 * progress


class Muon(torch.optim.Optimizer):
    """(Nesterov) momentum SGD whose update is newton_schulz of the momentum direction,
    with each weight (out_channels, ...) flattened to a matrix with one row per output.

    Before each step the weight is rescaled to Frobenius norm sqrt(out_channels), i.e. an
    RMS filter norm of 1: the orthogonalised update has a fixed size, so fixing the weight's
    size fixes the relative step, and it replaces weight decay.

    ns_dtype None iterates in bfloat16 on CUDA, as the reference does, and in float32
    elsewhere: CPUs without bfloat16 units emulate it, which made the iteration 30x slower
    than float32 on an AVX2 CPU, and float32 is the more accurate of the two. (The
    frontier recipes iterate in their weights' dtype, float16 on CUDA.)

    The momentum buffer has the gradient's dtype: float16 on CUDA for the speed runs, whose
    weights are half, as hiverge and Fable force theirs to be, and float32 on a CPU. (Their
    code keeps momentum only when its buffer is float16; with any other buffer dtype it
    steps along (1 + momentum) g, which the normalisation makes plain Muon without
    momentum. Here momentum is kept whatever the dtype.)

    schedule_steps T switches to the frontier recipes' form: the weights are renormalised
    (norm + 1e-7) only at renormalisation_steps(T), before that step's update, and the
    direction is normalised in two stages, to target_magnitude(k, T) and then to 1, each
    with eps 1e-5. weight_decay multiplies the weights by 1 - lr * weight_decay after each
    update (decoupled: lr is the step's scheduled lr).

    one_chain (hiverge, Fable): every direction zero-padded to the largest shape and all
    orthogonalised in one Newton-Schulz chain, not one chain per shape: the same update
    (padding adds zero rows and columns, which the iteration keeps zero), in a third of
    the kernel launches for airbench's four filter shapes, for some wasted FLOPs.
    """

    def __init__(self, params, lr: float, momentum: float = 0.6, nesterov: bool = True,
                 ns_steps: int = 3, ns_dtype: torch.dtype | None = None,
                 coefficients: tuple[float, float, float] = QUINTIC_COEFFICIENTS,
                 weight_decay: float = 0.0, schedule_steps: int | None = None,
                 one_chain: bool = False):
        if lr < 0 or not 0 <= momentum < 1:
            raise ValueError(f"Muon needs lr >= 0 and momentum in [0, 1), got {lr}, {momentum}")
        if nesterov and momentum == 0:
            raise ValueError("Nesterov momentum needs a momentum above 0")
        if weight_decay < 0 or (schedule_steps is not None and schedule_steps < 1):
            raise ValueError(f"Muon needs weight_decay >= 0 and schedule_steps >= 1, got "
                             f"{weight_decay}, {schedule_steps}")
        super().__init__(params, dict(lr=lr, momentum=momentum, nesterov=nesterov,
                                      ns_steps=ns_steps, ns_dtype=ns_dtype,
                                      coefficients=tuple(coefficients),
                                      weight_decay=weight_decay,
                                      schedule_steps=schedule_steps, one_chain=one_chain))

    def __setstate__(self, state):
        super().__setstate__(state)
        for group in self.param_groups:  # a checkpoint from before these options
            group.setdefault("coefficients", QUINTIC_COEFFICIENTS)
            group.setdefault("weight_decay", 0.0)
            group.setdefault("schedule_steps", None)
            group.setdefault("one_chain", False)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            momentum, grads = group["momentum"], [p.grad for p in params]
            buffers = []
            for p in params:
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p.grad)
                buffers.append(state["momentum_buffer"])
            # One fused call per operation for all the weights, not one per weight.
            torch._foreach_mul_(buffers, momentum)
            torch._foreach_add_(buffers, grads)
            directions = (torch._foreach_add(grads, buffers, alpha=momentum)
                          if group["nesterov"] else buffers)
            k = group["step"] = group.get("step", 0) + 1  # in the group: checkpoints keep it
            total = group["schedule_steps"]
            if total is None:
                renormalise_(params)
            elif k - group.get("last_renormalised", 0) >= renormalisation_gap(k, total):
                group["last_renormalised"] = k
                renormalise_(params, eps=1e-7)
            dtype = group["ns_dtype"] or (torch.bfloat16 if params[0].is_cuda else torch.float32)
            normalise = (dict() if total is None else
                         dict(eps=1e-5, magnitude=target_magnitude(k, total)))
            updates = orthogonalised([d.flatten(1) for d in directions], group["ns_steps"], dtype,
                                     group["coefficients"], group["one_chain"], **normalise)
            torch._foreach_add_(params, [u.view_as(p).to(p.dtype) for u, p in zip(updates, params)],
                                alpha=-group["lr"])
            if group["weight_decay"]:
                torch._foreach_mul_(params, 1 - group["lr"] * group["weight_decay"])
        return loss


def renormalise_(params: list[torch.Tensor], eps: float = 0.0) -> None:
    """Scale each weight to Frobenius norm sqrt(out_channels), in place."""
    norms = torch._foreach_norm(params)
    if eps:
        torch._foreach_add_(norms, eps)
    scales = torch._foreach_reciprocal(norms)
    torch._foreach_mul_(scales, [len(p) ** 0.5 for p in params])
    torch._foreach_mul_(params, scales)


def orthogonalised(matrices: list[torch.Tensor], steps: int, dtype: torch.dtype,
                   coefficients: tuple[float, float, float] = QUINTIC_COEFFICIENTS,
                   one_chain: bool = False, **normalise) -> list[torch.Tensor]:
    """newton_schulz of each matrix, those of one shape stacked and done together, or
    with one_chain all of them, zero-padded to the largest rows and columns (normalise:
    newton_schulz's eps and magnitude)."""
    if one_chain and len(matrices) > 1:
        rows, cols = (max(m.size(i) for m in matrices) for i in (0, 1))
        padded = torch.stack([F.pad(m, (0, cols - m.size(1), 0, rows - m.size(0)))
                              for m in matrices])
        done = newton_schulz(padded, steps, coefficients, dtype, **normalise)
        return [x[:m.size(0), :m.size(1)] for x, m in zip(done.unbind(0), matrices)]
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for i, m in enumerate(matrices):
        by_shape.setdefault(tuple(m.shape), []).append(i)
    out: list[torch.Tensor] = [None] * len(matrices)  # type: ignore[list-item]
    for indices in by_shape.values():
        done = newton_schulz(torch.stack([matrices[i] for i in indices]), steps, coefficients,
                             dtype, **normalise)
        for i, x in zip(indices, done.unbind(0)):
            out[i] = x
    return out


# The Muon recipes' optimisers (airbench94_muon, hiverge94, fable94_*), on an AirbenchNet.

def conv_filters(model: nn.Module) -> list[nn.Parameter]:
    """The weights Muon trains: the conv filters that train (not the fixed whitening)."""
    return [p for p in model.parameters() if p.dim() == 4 and p.requires_grad]


def sgd_beside_muon(model: nn.Module, config, whiten_bias_steps: int) -> torch.optim.SGD:
    """Nesterov SGD (config.sgd_momentum) over what Muon does not train: the whitening
    bias, its lr decaying to 0 over whiten_bias_steps, and the other biases, at
    config.bias_lr; the head at config.head_lr. Each step removes batch_size x
    config.weight_decay of every weight (times the lr multiplier)."""
    whiten_bias, head = model.whiten.bias, model.head.weight
    taken = {id(p) for p in (*conv_filters(model), whiten_bias, head)}
    biases = [p for p in model.parameters() if p.requires_grad and id(p) not in taken]
    sgd = sgd_with_decay([([whiten_bias], config.bias_lr), (biases, config.bias_lr),
                          ([head], config.head_lr)],
                         decay_per_step=config.weight_decay * config.batch_size,
                         momentum=config.sgd_momentum)
    # The loop gives every group the same multipliers; this one group has its own.
    follow_own_schedule(sgd.param_groups[0],
                        piecewise_linear(whiten_bias_steps, [(0, 1.0), (1, 0.0)]))
    return sgd


def frontier_muon(filters: list[nn.Parameter], config, schedule_steps: int) -> Muon:
    """Muon as hiverge and Fable run it, from a config's muon_lr, muon_momentum,
    newton_schulz_steps, newton_schulz_one_chain and muon_weight_decay (per example):
    FRONTIER_COEFFICIENTS, its schedules over schedule_steps, and iterating in the
    weights' dtype (float16 on a GPU, where the speed runs' weights are half, with no
    conversion; airbench94_muon: bfloat16)."""
    return Muon(filters, lr=config.muon_lr, momentum=config.muon_momentum,
                ns_steps=config.newton_schulz_steps, coefficients=FRONTIER_COEFFICIENTS,
                ns_dtype=filters[0].dtype,
                weight_decay=config.muon_weight_decay * config.batch_size,
                schedule_steps=schedule_steps, one_chain=config.newton_schulz_one_chain)
