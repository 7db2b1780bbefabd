"""Choosing the device and the precision a run uses there."""

from __future__ import annotations

import torch
from torch import nn

from ..errors import InputError

DEVICE_CHOICES = ("auto", "cuda", "mps", "cpu")


def resolve_device(name: str = "auto") -> torch.device:
    """`auto` picks cuda, then mps, then cpu; naming an absent device is an error."""
    has_mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if has_mps else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"--device {name}: no CUDA GPU is available here; use --device auto or cpu")
    if name == "mps" and not has_mps:
        raise InputError("--device mps: Apple's MPS backend is not available here; use auto or cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise InputError(f"--device {name}: expected one of {', '.join(DEVICE_CHOICES)}") from None


def compute_dtype(device: torch.device) -> torch.dtype:
    """Half precision on CUDA (BatchNorm stays in float32, see place_model); float32 on CPU
    and Apple GPUs, whose mixed half/float BatchNorm support is not to be relied on."""
    return torch.float16 if device.type == "cuda" else torch.float32


def place_model(model: nn.Module, device: torch.device, half: bool = True) -> nn.Module:
    """Move to device in channels_last and, with `half`, in its compute dtype, keeping norms
    in float32: their statistics and tiny eps need the range. Without `half` the weights
    stay float32 (for MixedPrecision)."""
    dtype = compute_dtype(device) if half else torch.float32
    model = model.to(device=device, dtype=dtype, memory_format=torch.channels_last)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.float()
    return model


class MixedPrecision:
    """Float32 weights with the forward pass under autocast. By default (the general
    trainer's precision) on CUDA only: bfloat16 where the GPU has it, else float16 with a
    GradScaler (float16's small range needs the loss scaled up so small gradients survive);
    elsewhere a no-op. With `dtype` (--precision bfloat16) on CUDA or a CPU: on a CPU with
    AMX a training step takes about half its float32 time (benchmarks/results/)."""

    def __init__(self, device: torch.device, dtype: torch.dtype | None = None):
        self.device_type = device.type
        self.enabled = device.type == "cuda" or dtype is not None
        if dtype is None:
            bf16 = self.enabled and torch.cuda.is_bf16_supported()
            dtype = torch.bfloat16 if bf16 else torch.float16
        self.dtype = dtype
        self.scaler = (torch.amp.GradScaler("cuda")
                       if self.enabled and device.type == "cuda" and dtype == torch.float16
                       else None)

    def autocast(self):
        return torch.autocast(self.device_type, dtype=self.dtype, enabled=self.enabled)


PRECISION_CHOICES = ("auto", "float32", "bfloat16")


def choose_precision(choice: str, device: torch.device,
                     recipe_mixed: bool) -> tuple[MixedPrecision | None, bool]:
    """--precision as (the autocast to train under, or None; whether the weights and data
    are put in the device's half dtype, see place_model).

    auto: the recipe's own (speed runs: half weights on CUDA; the general trainer: mixed
    precision on CUDA), float32 on CPUs and Apple GPUs. float32: float32 everywhere.
    bfloat16: float32 weights, forward under bfloat16 autocast, on CUDA or a CPU."""
    if choice == "auto":
        return (MixedPrecision(device) if recipe_mixed else None), not recipe_mixed
    if choice == "float32":
        return None, False
    if choice == "bfloat16":
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise InputError("--precision bfloat16: this GPU has no bfloat16; use auto")
        if device.type not in ("cuda", "cpu"):
            raise InputError(f"--precision bfloat16: expected a CUDA or CPU device, "
                             f"not {device.type}; use auto")
        return MixedPrecision(device, torch.bfloat16), False
    raise InputError(f"--precision {choice}: expected one of {', '.join(PRECISION_CHOICES)}")


def configure_backend(device: torch.device) -> None:
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return device.type
