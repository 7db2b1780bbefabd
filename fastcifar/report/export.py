"""A trained network for other programs. Three formats:

- safetensors: the weights only, safe to load anywhere; fastcifar rebuilds the network
  from the run's config.json, written beside them;
- torchscript: the whole network, loadable with `torch.jit.load` and no fastcifar
  (PyTorch deprecates TorchScript in favour of torch.export; it still loads everywhere);
- onnx: the whole network, for ONNX Runtime and the tools that read ONNX, with a
  variable batch size.

Each comes with preprocessing.json: the class names, the square image size and the
normalisation the network expects (RGB scaled to [0, 1], minus mean, over std, NCHW), and
the test-time augmentation its published accuracy used (not part of the exported graph).
"""

from __future__ import annotations

import contextlib
import json
import logging
import warnings
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..errors import InputError
from ..files import atomic_path

FORMATS = {"safetensors": "model.safetensors", "torchscript": "model.torchscript.pt",
           "onnx": "model.onnx"}
NEEDS = {"safetensors": ("safetensors",), "onnx": ("onnx", "onnxscript", "onnxruntime")}
PREPROCESSING = "preprocessing.json"


def check_format(fmt: str) -> None:
    """Refuse an unknown format, or one whose package is not installed, before any work."""
    if fmt not in FORMATS:
        raise InputError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
    import importlib.util
    missing = [m for m in NEEDS.get(fmt, ()) if importlib.util.find_spec(m) is None]
    if missing:
        raise InputError(f"exporting to {fmt} needs {', '.join(missing)}: "
                         f'pip install "fastcifar[export]"')


@contextlib.contextmanager
def quiet_onnx_exporter():
    """Without the exporter's noise, which reads like errors: a line for each torchvision
    operator it skips (fastcifar's networks use none) and torch's own FutureWarnings."""
    log = logging.getLogger("torch.onnx")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            yield
    finally:
        log.setLevel(level)


def export_model(model: nn.Module, fmt: str, folder: Path, example: torch.Tensor,
                 preprocessing: dict, config: dict) -> Path:
    """Write `model` (float32, CPU, eval mode) in `fmt` into `folder`, with preprocessing.json
    and (for safetensors) config.json. Each file is written whole or not at all."""
    check_format(fmt)
    model = model.float().cpu().eval()
    example = example.float().cpu()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / FORMATS[fmt]
        with atomic_path(path) as tmp:
            if fmt == "safetensors":
                from safetensors.torch import save
                tmp.write_bytes(save({k: v.contiguous() for k, v in model.state_dict().items()}))
            elif fmt == "torchscript":
                with warnings.catch_warnings(), torch.no_grad():
                    warnings.simplefilter("ignore", DeprecationWarning)
                    torch.jit.save(torch.jit.trace(model, example), str(tmp))
            else:
                with quiet_onnx_exporter():
                    torch.onnx.export(model, (example,), str(tmp), dynamo=True, verbose=False,
                                      input_names=["images"], output_names=["logits"],
                                      dynamic_shapes=({0: torch.export.Dim("batch")},),
                                      external_data=False)
        if fmt == "safetensors":
            _write_json(folder / "config.json", config)
        _write_json(folder / PREPROCESSING, preprocessing)
    except OSError as e:
        raise InputError(f"{folder}: cannot write the export there ({e.strerror or e})") from None
    return path


def load_exported(path: Path, fmt: str, build: Callable[[], nn.Module] | None = None):
    """A function images -> logits (CPU tensors) from an exported file; safetensors needs
    `build`, which makes the network for the weights."""
    if fmt == "safetensors":
        from safetensors.torch import load_file
        model = build()
        model.load_state_dict(load_file(str(path)))
        return model.float().eval()
    if fmt == "torchscript":
        return torch.jit.load(str(path)).eval()
    import onnxruntime
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda images: torch.from_numpy(session.run(None, {"images": images.numpy()})[0])


@torch.no_grad()
def largest_difference(model: nn.Module, exported, images: torch.Tensor) -> float | None:
    """The largest absolute difference between the logits of `model` and of the exported
    network on `images`; None for a network whose outputs are random (two passes differ)."""
    model = model.float().cpu().eval()
    expected = model(images)
    if not torch.equal(expected, model(images)):
        return None
    return (exported(images).float() - expected).abs().max().item()


def _write_json(path: Path, data: dict) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n")
