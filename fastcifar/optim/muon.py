"""Muon: momentum whose update is orthogonalised, for the conv filters (airbench94_muon).

Each step replaces the momentum direction G = U S V^T of a weight matrix by about U V^T:
every direction the gradient moves in moves by the same amount, however small its singular
value was. The orthogonalisation is a few Newton-Schulz iterations, cheap matrix products
that run well in bfloat16, rather than an SVD.
"""

from __future__ import annotations

import torch

# a, b, c of the quintic x -> a x + b x^3 + c x^5 applied to every singular value. Its
# slope at 0 is large (a = 3.4445), so small singular values grow fast; the price is that
# it does not converge to 1: after 3 steps, every singular value that started above 1.8%
# of the matrix's Frobenius norm lies in [0.68, 1.21] (above 1.3%: in [0.5, 1.21]). Good
# enough for training (airbench94_muon), in 3 steps instead of many.
QUINTIC_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


def newton_schulz(matrix: torch.Tensor, steps: int = 3,
                  coefficients: tuple[float, float, float] = QUINTIC_COEFFICIENTS,
                  dtype: torch.dtype = torch.bfloat16, eps: float = 1e-7) -> torch.Tensor:
    """An approximately orthogonal matrix with matrix's singular vectors: U S' V^T with S'
    near 1 (in dtype). Dividing by the Frobenius norm first puts every singular value in
    [0, 1], where the quintic pushes them towards 1. A stack of matrices (..., m, n) is
    done at once, each on its own: one batched product per term instead of one per matrix."""
    if matrix.dim() < 2:
        raise ValueError(f"newton_schulz needs a matrix, got shape {tuple(matrix.shape)}")
    a, b, c = coefficients
    x = matrix.to(dtype)
    x = x / (torch.linalg.matrix_norm(x, keepdim=True) + eps)
    tall = x.size(-2) > x.size(-1)
    if tall:
        x = x.mT  # iterate on the smaller Gram matrix
    for _ in range(steps):
        gram = x @ x.mT
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.mT if tall else x


class Muon(torch.optim.Optimizer):
    """(Nesterov) momentum SGD whose update is newton_schulz of the momentum direction,
    with each weight (out_channels, ...) flattened to a matrix with one row per output.

    Before each step the weight is rescaled to Frobenius norm sqrt(out_channels), i.e. an
    RMS filter norm of 1: the orthogonalised update has a fixed size, so fixing the weight's
    size fixes the relative step, and it replaces weight decay.

    ns_dtype None iterates in bfloat16 on CUDA, as the reference does, and in float32
    elsewhere: CPUs without bfloat16 units emulate it, which made the iteration 30x slower
    than float32 on an AVX2 CPU, and float32 is the more accurate of the two.
    """

    def __init__(self, params, lr: float, momentum: float = 0.6, nesterov: bool = True,
                 ns_steps: int = 3, ns_dtype: torch.dtype | None = None):
        if lr < 0 or not 0 <= momentum < 1:
            raise ValueError(f"Muon needs lr >= 0 and momentum in [0, 1), got {lr}, {momentum}")
        if nesterov and momentum == 0:
            raise ValueError("Nesterov momentum needs a momentum above 0")
        super().__init__(params, dict(lr=lr, momentum=momentum, nesterov=nesterov,
                                      ns_steps=ns_steps, ns_dtype=ns_dtype))

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
            scales = torch._foreach_reciprocal(torch._foreach_norm(params))
            torch._foreach_mul_(scales, [len(p) ** 0.5 for p in params])
            torch._foreach_mul_(params, scales)
            dtype = group["ns_dtype"] or (torch.bfloat16 if params[0].is_cuda else torch.float32)
            updates = orthogonalised([d.flatten(1) for d in directions], group["ns_steps"], dtype)
            torch._foreach_add_(params, [u.view_as(p).to(p.dtype) for u, p in zip(updates, params)],
                                alpha=-group["lr"])
        return loss


def orthogonalised(matrices: list[torch.Tensor], steps: int,
                   dtype: torch.dtype) -> list[torch.Tensor]:
    """newton_schulz of each matrix, those of one shape stacked and done together."""
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for i, m in enumerate(matrices):
        by_shape.setdefault(tuple(m.shape), []).append(i)
    out: list[torch.Tensor] = [None] * len(matrices)  # type: ignore[list-item]
    for indices in by_shape.values():
        done = newton_schulz(torch.stack([matrices[i] for i in indices]), steps, dtype=dtype)
        for i, x in zip(indices, done.unbind(0)):
            out[i] = x
    return out
