"""Evaluation with test-time augmentation (TTA).

Level 0: the images as they are. Level 1: the mean of the logits of each image and its
mirror. Level 2 (airbench's): half the level-1 logits, plus half the mean of the level-1
logits of the image shifted one pixel up-left and one pixel down-right (reflect padding).
Level 3 (hiverge's): the plain mean of the logits of level 2's six views.

Selective TTA (hiverge's; `tta_fraction` below 1): plain logits for every image, then only
the least confident fraction of them, ranked over the whole set, take their TTA logits
instead. Most test images are confidently classified from one view already, so their
extra views cost time and change little.
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
    3: "(logits(x) + logits(a(x)) + logits(b(x)) + logits(mirror(x)) + logits(mirror(a(x))) "
       "+ logits(mirror(b(x)))) / 6, mirror as at level 1, a and b as at level 2: level 2's "
       "six views, equally weighted",
}
"""What each level computes of a batch x (N, 3, H, W), exactly, for another program."""


def tta_formula(tta_level: int, tta_fraction: float = 1.0) -> str:
    """What an evaluation at `tta_level` computes, with the selection when only a fraction
    of the images take the TTA (for an export's preprocessing.json)."""
    if tta_fraction >= 1 or tta_level == 0:
        return TTA_FORMULAS[tta_level]
    return (f"logits(x) for each of the n images; then the int(n * {tta_fraction}) whose "
            f"largest softmax probability of logits(x) is smallest over all n (ties: the "
            f"earlier image first) take instead: {TTA_FORMULAS[tta_level]}")


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
    if level == 3:  # the six views in one call, as hiverge's: a sixth of the launches
        views = (images, *shifted_by_one(images))
        views += tuple(view.flip(-1) for view in views)
        return model(torch.cat(views)).unflatten(0, (len(views), len(images))).mean(0)
    raise ValueError(f"tta level must be one of {sorted(TTA_FORMULAS)}, got {level}")


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, tta_level: int = 0,
            batch_size: int = 2000, precision=None, progress: bool = False,
            tta_fraction: float = 1.0) -> torch.Tensor:
    """Logits for all images, in eval mode (the model is put back in its previous mode),
    under `precision`'s autocast if given (see train.device.Precision); with `progress`, a
    bar over the batches (a CPU takes minutes for 10,000 images at TTA level 2). With
    `tta_fraction` below 1, only that fraction of the images take TTA (selective_tta_logits)."""
    return selective_tta_logits(model, images, tta_level, tta_fraction, batch_size,
                                precision, progress)


@torch.no_grad()
def selective_tta_logits(model: nn.Module, images: torch.Tensor, tta_level: int,
                         tta_fraction: float, batch_size: int = 2000, precision=None,
                         progress: bool = False, group=None) -> torch.Tensor:
    """Plain logits for each of the n images, then, for the int(n * tta_fraction) of them
    that are least confident (least_confident), the logits at `tta_level` in their place.

    With `group` (a data-parallel run's), `images` are all n and this rank's shard of the
    logits comes back; the ranking is still over all n (the confidences summed over the
    ranks), so the ranks together select the images that one process would."""
    if tta_level not in TTA_FORMULAS:
        raise ValueError(f"tta level must be one of {sorted(TTA_FORMULAS)}, got {tta_level}")
    if not 0 <= tta_fraction <= 1:
        raise ValueError(f"tta_fraction must be in [0, 1], got {tta_fraction}")
    n = len(images)
    rows = torch.arange(n, device=images.device)
    if group is not None:
        images, rows = group.shard(images), group.shard(rows)
    if tta_fraction == 1 or tta_level == 0:
        return _batched_logits(model, images, tta_level, batch_size, precision, progress)
    logits = _batched_logits(model, images, 0, batch_size, precision, progress)
    confidence = torch.zeros(n, device=images.device)
    confidence[rows] = confidences(logits)
    if group is not None:  # the other ranks' rows are 0 here, and this rank's are 0 there
        confidence = group.sum(confidence.to(group.device)).to(images.device)
    chosen = least_confident(confidence, int(n * tta_fraction))
    row_in_shard = torch.full((n,), -1, device=images.device)
    row_in_shard[rows] = torch.arange(len(rows), device=images.device)
    mine = row_in_shard[chosen]
    mine = mine[mine >= 0]
    if len(mine):
        logits[mine] = _batched_logits(model, images[mine], tta_level, batch_size, precision,
                                       progress, f"TTA level {tta_level}, {len(mine):,} "
                                                 f"least confident")
    return logits


def confidences(logits: torch.Tensor) -> torch.Tensor:
    """Each row's largest softmax probability (in float32)."""
    return logits.float().softmax(1).amax(1)


def least_confident(confidence: torch.Tensor, k: int) -> torch.Tensor:
    """The indices of the k smallest confidences, smallest first; of equal ones, the
    earlier index first (a stable sort), so the selection is the same on every device."""
    return confidence.sort(stable=True).indices[:k]


def _batched_logits(model, images, tta_level, batch_size, precision, progress, what=None):
    was_training = model.training
    model.eval()
    batches = images.split(batch_size)
    if progress:
        from tqdm.auto import tqdm
        batches = tqdm(batches, desc=f"evaluating ({what or f'TTA level {tta_level}'})",
                       unit="batch", leave=False, disable=None, dynamic_ncols=True)
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
             tta_level: int = 0, precision=None, progress: bool = False, group=None,
             tta_fraction: float = 1.0) -> float:
    """Top-1 accuracy at `tta_level` for the least confident `tta_fraction` of the images
    (all by default; see selective_tta_logits), plain for the rest; over the ranks' shards
    with `group`."""
    return evaluate_with_logits(model, images, labels, tta_level, precision, progress, group,
                                tta_fraction)[0]


def evaluate_with_logits(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                         tta_level: int = 0, precision=None, progress: bool = False,
                         group=None, tta_fraction: float = 1.0) -> tuple[float, torch.Tensor]:
    """evaluate's accuracy, and the logits it came from (this rank's shard with `group`)."""
    logits, labels = _sharded_logits(model, images, labels, tta_level, precision, progress,
                                     group, tta_fraction)
    correct, n = _summed(group, _top_k_correct(logits, labels, 1), len(labels))
    return correct / n, logits


def _sharded_logits(model, images, labels, tta_level, precision, progress, group,
                    tta_fraction=1.0):
    logits = selective_tta_logits(model, images, tta_level, tta_fraction, precision=precision,
                                  progress=progress, group=group)
    return logits, labels if group is None else group.shard(labels)


def _summed(group, *values) -> list[float]:
    """The values (tensors or numbers) as floats, summed over the ranks with `group`."""
    sums = torch.stack([torch.as_tensor(v, dtype=torch.float64) for v in
                        (v.detach().cpu() if torch.is_tensor(v) else v for v in values)])
    if group is not None:
        sums = group.sum(sums.to(group.device)).cpu()
    return sums.tolist()
