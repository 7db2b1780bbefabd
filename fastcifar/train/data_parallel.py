"""Data-parallel training of one run (`--ddp` under torchrun): every rank holds the whole
network and trains on its share of every global batch, so the recipe's batch size and lrs
mean what they mean on one device.

- Every rank seeds, shuffles and augments the whole epoch alike, then takes its consecutive
  share of each batch (DeviceLoader's `share`): the shares together are the batch one
  device would train on.
- DistributedDataParallel reduces the gradients. The recipes' losses are already scaled for
  the global batch (a sum over it, times a constant), so the ranks' gradients are summed,
  not averaged as DDP does by default.
- Data-dependent initialisation (whitening) runs on every rank on the same images; DDP's
  construction broadcasts rank 0's weights anyway, so the replicas start as one.
- BatchNorm normalises each rank's share unless `sync_bn` is set; then SyncedBatchNorm
  takes the statistics over the global batch. It runs on any device (torch's
  SyncBatchNorm refuses CPU tensors), so the tests check it on a CPU.
- Evaluation is sharded: each rank predicts a slice of the test images and the counts are
  summed, so every image is counted once.
- Rank 0 writes the checkpoints and reads them on resume, and hands their state to the
  others, on any world size.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..errors import InputError
from ..models.layers import GhostBatchNorm
from .distributed import Ranks


class DataParallel:
    """The process group of a data-parallel run, as the training loop uses it."""

    def __init__(self, ranks: Ranks, device: torch.device):
        self.rank, self.world, self.device = ranks.rank, ranks.world, device

    def share(self) -> tuple[int, int]:
        """(this rank, the world size): which consecutive share of a batch is this rank's."""
        return self.rank, self.world

    def shard(self, tensor: torch.Tensor) -> torch.Tensor:
        """This rank's slice of `tensor`'s rows; the slices of all ranks cover it once."""
        return tensor.tensor_split(self.world)[self.rank]

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """`tensor` (on this rank's device) summed over the ranks, in place and returned."""
        dist.all_reduce(tensor)
        return tensor

    def from_leader(self, obj):
        """Rank 0's `obj` (picklable; tensors on the CPU), on every rank."""
        holder = [obj]
        dist.broadcast_object_list(holder, src=0)
        return holder[0]

    def wrap(self, model: nn.Module) -> nn.Module:
        """`model` under DDP, reducing the parameters that train now (made afresh each epoch,
        after a recipe's per-epoch changes: airbench stops training its whitening bias)."""
        ddp = DistributedDataParallel(model, device_ids=_device_ids(model))
        ddp.register_comm_hook(None, _sum_gradients)
        return ddp


def _sum_gradients(state, bucket):
    """A DDP communication hook: the bucket's gradients summed over the ranks."""
    future = dist.all_reduce(bucket.buffer(), async_op=True).get_future()
    return future.then(lambda done: done.value()[0])


def _device_ids(model: nn.Module) -> list[int] | None:
    device = next(model.parameters()).device
    return [device.index] if device.type == "cuda" else None


def check_data_parallel(recipe, config, world: int) -> None:
    """What a data-parallel run needs, checked before any data is loaded."""
    if config.batch_size % world:
        raise InputError(f"--ddp: batch_size {config.batch_size} does not split into {world} "
                         f"equal shares; give a batch size divisible by the number of "
                         f"processes (--set batch_size=...)")
    model = recipe.build_model(config, 10)
    if any(isinstance(m, GhostBatchNorm) for m in model.modules()):
        raise InputError(f"--ddp: {recipe.name} normalises fixed splits of one device's batch "
                         f"(ghost batch norm), which a share of the batch would change; "
                         f"train it on one device, or as a battery (--runs) over the ranks")
    if getattr(config, "select_keep", None):
        raise InputError(f"--ddp: {recipe.name} keeps the hardest examples of each whole batch "
                         f"by a proxy net, which a rank's share of the batch cannot choose; "
                         f"train it on one device, or as a battery (--runs) over the ranks")


class SyncedBatchNorm(nn.BatchNorm2d):
    """BatchNorm whose training statistics are those of the global batch: each rank's
    per-channel sums are added over the ranks (with gradients, so the backward pass sees
    the global batch too). In float32 whatever the input's dtype; the running statistics
    are updated as BatchNorm updates them. Without a process group, BatchNorm itself."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        c, xf = x.size(1), x.float()
        count = torch.full((1,), x.numel() // c, dtype=torch.float32, device=x.device)
        sums = _SumOverRanks.apply(torch.cat([xf.sum((0, 2, 3)), xf.square().sum((0, 2, 3)),
                                             count]))
        n = sums[-1]
        mean = sums[:c] / n
        var = (sums[c:2 * c] / n - mean.square()).clamp_min(0)
        with torch.no_grad():
            self.running_mean.lerp_(mean.to(self.running_mean.dtype), self.momentum)
            self.running_var.lerp_((var * n / (n - 1)).to(self.running_var.dtype),
                                   self.momentum)
            self.num_batches_tracked.add_(1)
        y = (xf - mean[:, None, None]) * (var + self.eps).rsqrt()[:, None, None]
        if self.affine:
            y = y * self.weight.float()[:, None, None] + self.bias.float()[:, None, None]
        return y.to(x.dtype)


class _SumOverRanks(torch.autograd.Function):
    """A tensor summed over the ranks; its gradient, likewise (each rank's loss depends on
    every rank's share through the sum)."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        tensor = tensor.clone()
        dist.all_reduce(tensor)
        return tensor

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


def synced_batch_norms(model: nn.Module) -> nn.Module:
    """`model` with every BatchNorm2d replaced by a SyncedBatchNorm holding the same
    parameters (the very tensors the optimisers hold) and statistics."""
    for name, child in model.named_children():
        if type(child) is not GhostBatchNorm and isinstance(child, nn.BatchNorm2d):
            synced = SyncedBatchNorm(child.num_features, child.eps, child.momentum,
                                     child.affine, child.track_running_stats)
            if child.affine:
                synced.weight, synced.bias = child.weight, child.bias
            synced.running_mean, synced.running_var = child.running_mean, child.running_var
            synced.num_batches_tracked = child.num_batches_tracked
            setattr(model, name, synced)
        else:
            synced_batch_norms(child)
    return model
