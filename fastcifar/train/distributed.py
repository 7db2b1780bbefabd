"""Batteries of runs over several processes, as `torchrun` starts them (one per GPU, on
one machine or many): each rank trains its share of the runs (run i on rank i mod the
world size, a round at a time), the results are gathered over the process group after
every round, and rank 0 records them all in the one run folder.

Nothing here runs without torchrun: a single process is the world of one, and every
function below is then a no-op or the identity.
"""

from __future__ import annotations

import os
import socket
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    host: str = field(default_factory=socket.gethostname)

    @property
    def leader(self) -> bool:
        """Rank 0: the one that writes the run folder and prints."""
        return self.rank == 0


def from_environment() -> Ranks:
    """This process's place among torchrun's (the world of one without torchrun)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Ranks()
    return Ranks(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


def device_name(ranks: Ranks, name: str) -> str:
    """--device auto or cuda under torchrun: this rank's own GPU."""
    if ranks.world > 1 and name in ("auto", "cuda") and torch.cuda.is_available():
        return f"cuda:{ranks.local_rank}"
    return name


def join(ranks: Ranks, device: torch.device) -> bool:
    """Join the process group (NCCL for GPUs, Gloo for CPUs); True if this call did."""
    if ranks.world == 1 or dist.is_initialized():
        return False
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return True


@contextmanager
def process_group(ranks: Ranks, device: torch.device):
    """In the process group for the block (joined here unless already in it, and then left
    here: together after a block that ended well, at once after an error)."""
    joined = join(ranks, device)
    try:
        yield
    except BaseException:
        if joined:
            leave(together=False)
        raise
    if joined:
        leave()


def gather(ranks: Ranks, obj) -> list:
    """Every rank's `obj` (picklable), in rank order, on every rank."""
    if ranks.world == 1:
        return [obj]
    out = [None] * ranks.world
    dist.all_gather_object(out, obj)
    return out


def broadcast(ranks: Ranks, obj):
    """Rank 0's `obj` (picklable), on every rank: what rank 0 alone decided."""
    if ranks.world == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def leave(together: bool = True) -> None:
    """Leave the process group. `together`: wait for every rank first (after a run that
    ended well): a rank tearing Gloo down while another still writes the run's files
    aborted at exit in 5 of 24 two-rank runs ("terminate called without an active
    exception"). After an error, leave at once: the other ranks may never come."""
    if dist.is_initialized():
        if together:
            dist.barrier()
        dist.destroy_process_group()
