"""Evaluation with test-time augmentation (TTA), as airbench does it.

Level 0: the images as they are. Level 1: the mean of the logits of each image and its
mirror. Level 2: half the level-1 logits, plus half the mean of the level-1 logits of the
image shifted one pixel up-left and one pixel down-right (reflect padding).
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn


TTA_FORMULAS = {
    0: "logits(x)",
    1: "m(x) = 0.5 * logits(x) + 0.5 * logits(mirror(x)), mirror: flipped left to right",
    2: "0.5 * m(x) + 0.25 * m(a(x)) + 0.25 * m(b(x)), m as at level 1; a and b take the HxW "
       "window at offset (0, 0) and at offset (2, 2) of x reflect-padded by one pixel on each "
       "side (torch.nn.functional.pad mode 'reflect'): x moved one pixel down-right, and one "
       "pixel up-left",
}
"""What each level computes of a batch x (N, 3, H, W), exactly, for another program."""


def mirror_logits(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    return 0.5 * model(images) + 0.5 * model(images.flip(-1))


def shifted_by_one(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The windows at offsets (0, 0) and (2, 2) of the reflect-padded images: their content
    moved one pixel down-right, and one pixel up-left."""
    h, w = images.shape[-2:]
    padded = F.pad(images, (1, 1, 1, 1), mode="reflect")
    return padded[..., 0:h, 0:w], padded[..., 2:h + 2, 2:w + 2]


def tta_logits(model: nn.Module, images: torch.Tensor, level: int) -> torch.Tensor:
    if level == 0:
        return model(images)
    if level == 1:
        return mirror_logits(model, images)
    if level == 2:
        up_left, down_right = shifted_by_one(images)
        shifted = 0.5 * mirror_logits(model, up_left) + 0.5 * mirror_logits(model, down_right)
        return 0.5 * mirror_logits(model, images) + 0.5 * shifted
    raise ValueError(f"tta level must be 0, 1 or 2, got {level}")


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, tta_level: int = 0,
            batch_size: int = 2000, precision=None, progress: bool = False) -> torch.Tensor:
    """Logits for all images, in eval mode (the model is put back in its previous mode),
    under `precision`'s autocast if given (see train.device.Precision); with `progress`, a
    bar over the batches (a CPU takes minutes for 10,000 images at TTA level 2)."""
    was_training = model.training
    model.eval()
    batches = images.split(batch_size)
    if progress:
        from tqdm.auto import tqdm
        batches = tqdm(batches, desc=f"evaluating (TTA level {tta_level})", unit="batch",
                       leave=False, disable=None, dynamic_ncols=True)
    with precision.autocast() if precision is not None else contextlib.nullcontext():
        # A copy of each batch's logits (.float() of float32 ones is the same tensor): a
        # compiled model replaying a CUDA graph overwrites its one output on the next call.
        logits = torch.cat([tta_logits(model, batch, tta_level).to(torch.float32, copy=True)
                            for batch in batches])
    model.train(was_training)
    return logits


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return (logits.argmax(1) == labels).float().mean().item()


def top_k_accuracy(logits: torch.Tensor, labels: torch.Tensor, k: int) -> float:
    """The fraction of images whose label is among the k largest logits (1.0 when there
    are no more than k classes)."""
    return _top_k_correct(logits, labels, k).item() / len(labels)


def _top_k_correct(logits: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    top = logits.topk(min(k, logits.size(1)), dim=1).indices
    return (top == labels[:, None]).any(1).sum()


def evaluation_metrics(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                       precision=None, group=None) -> dict[str, float]:
    """Loss (plain cross-entropy, mean per image), top-1 and top-5 accuracy, no TTA.

    With `group` (a data-parallel run's, see train/data_parallel.py), each rank evaluates
    its shard of the images and the sums are added over the ranks."""
    logits, labels = _sharded_logits(model, images, labels, 0, precision, False, group)
    loss = F.cross_entropy(logits, labels, reduction="sum")
    loss, top1, top5, n = _summed(group, loss, _top_k_correct(logits, labels, 1),
                                  _top_k_correct(logits, labels, 5), len(labels))
    return {"loss": loss / n, "top1": top1 / n, "top5": top5 / n}


def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
             tta_level: int = 0, precision=None, progress: bool = False, group=None) -> float:
    """Top-1 accuracy at `tta_level` (over the ranks' shards with `group`)."""
    logits, labels = _sharded_logits(model, images, labels, tta_level, precision, progress,
                                     group)
    correct, n = _summed(group, _top_k_correct(logits, labels, 1), len(labels))
    return correct / n


def _sharded_logits(model, images, labels, tta_level, precision, progress, group):
    if group is not None:
        images, labels = group.shard(images), group.shard(labels)
    return predict(model, images, tta_level, precision=precision, progress=progress), labels


def _summed(group, *values) -> list[float]:
    """The values (tensors or numbers) as floats, summed over the ranks with `group`."""
    sums = torch.stack([torch.as_tensor(v, dtype=torch.float64) for v in
                        (v.detach().cpu() if torch.is_tensor(v) else v for v in values)])
    if group is not None:
        sums = group.sum(sums.to(group.device)).cpu()
    return sums.tolist()
