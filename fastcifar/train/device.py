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
    """The general trainer's precision: float32 weights, and on CUDA the forward pass under
    autocast, in bfloat16 where the GPU has it, else float16 with a GradScaler (float16's
    small range needs the loss scaled up so small gradients survive). Elsewhere a no-op."""

    def __init__(self, device: torch.device):
        self.device_type, self.enabled = device.type, device.type == "cuda"
        bf16 = self.enabled and torch.cuda.is_bf16_supported()
        self.dtype = torch.bfloat16 if bf16 else torch.float16
        self.scaler = torch.amp.GradScaler("cuda") if self.enabled and not bf16 else None

    def autocast(self):
        return torch.autocast(self.device_type, dtype=self.dtype, enabled=self.enabled)


def configure_backend(device: torch.device) -> None:
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return device.type
