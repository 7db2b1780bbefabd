"""The Python API's entry points beyond training (see train/session.py for `train`):
evaluating a network on images as they come, and a trained network back from its run
folder."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .data.dataset import uint8_channels_last
from .data.loader import normalisation, to_device_tensor
from .errors import InputError
from .recipes import get_recipe
from .recipes.base import config_from_dict
from .report.records import MODEL, read_run_settings
from .train.checkpoint import LAST, load_checkpoint
from .train.device import place_model, resolve_device
from .train.evaluate import evaluate as evaluate_tensors


def evaluate(model: nn.Module, images, labels, tta_level: int = 0) -> float:
    """Top-1 accuracy (a fraction) of `model` on `images` with test-time augmentation
    `tta_level` (0 none, 1 mirror, 2 mirror and 1-pixel shifts).

    `images`: uint8 (N, H, W, 3) or (N, 3, H, W), numpy or torch, normalised as training
    normalised them; or a float tensor (N, 3, H, W) already normalised."""
    weights = next(p for p in model.parameters() if p.dim() == 4)
    labels = torch.as_tensor(labels, device=weights.device).long().reshape(-1)
    if isinstance(images, torch.Tensor) and images.is_floating_point():
        x = images.to(weights.device, weights.dtype)
    else:
        array = uint8_channels_last(images, "evaluate's")
        x = to_device_tensor(array, weights.device, weights.dtype,
                             *normalisation(array.shape[1]))
    if len(x) != len(labels):
        raise InputError(f"{len(x)} images but {len(labels)} labels")
    return evaluate_tensors(model, x, labels, tta_level)


def load_model(folder: str | Path, device: str = "cpu") -> nn.Module:
    """The trained network of a run folder written by `fastcifar train` (or train(out=...)),
    rebuilt from its recipe and config, in float32 and eval mode on `device`: the weights of
    its model.pt (the last finished run), else of its last checkpoint."""
    folder = Path(folder)
    saved = read_run_settings(folder)
    recipe = get_recipe(saved["recipe"])
    config = config_from_dict(recipe.config, saved["config"], str(folder / "config.json"))
    if (folder / MODEL).exists():
        try:
            weights = torch.load(folder / MODEL, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 (torch raises many kinds for a bad file)
            raise InputError(f"{folder / MODEL} is truncated or corrupt ({e})") from None
    elif (folder / LAST).exists():
        weights = load_checkpoint(folder / LAST)["model"]
    else:
        raise InputError(f"{folder}: no {MODEL} (no run finished) and no {LAST} checkpoint; "
                         f"nothing to load")
    model = recipe.build_model(config, len(saved.get("classes") or range(10)))
    try:
        model.load_state_dict(weights)
    except RuntimeError as e:
        raise InputError(f"{folder}: its weights do not fit {recipe.name}'s network "
                         f"({str(e).splitlines()[0]})") from None
    return place_model(model, resolve_device(device)).eval()
