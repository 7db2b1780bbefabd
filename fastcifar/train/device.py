"""Choosing the device and the precision a run uses there."""

from __future__ import annotations

import contextlib
import functools
import platform
import warnings
from dataclasses import dataclass

import torch

from ..errors import InputError, SlowChoice

DEVICE_CHOICES = ("auto", "cuda", "mps", "cpu")


def resolve_device(name: str = "auto") -> torch.device:
    """`auto` picks cuda, then mps, then cpu; naming an absent device is an error."""
    has_mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if has_mps else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"--device {name}: no CUDA GPU is available here; use --device auto or cpu")
    if name == "mps" and not has_mps:
        raise InputError("--device mps: Apple's MPS backend is not available here; use auto or cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise InputError(f"--device {name}: expected one of {', '.join(DEVICE_CHOICES)}, "
                         f"or cuda:N") from None
    if device.type == "cuda":
        return _cuda_device(device)
    return device


def _cuda_device(device: torch.device) -> torch.device:
    """A CUDA device with its index (the current GPU's for a plain "cuda"): torch's
    per-device calls (set_device above all) refuse one without."""
    count = torch.cuda.device_count()
    index = torch.cuda.current_device() if device.index is None else device.index
    if index >= count:
        raise InputError(f"--device {device}: this machine has {count} CUDA GPU(s), numbered "
                         f"0 to {count - 1}")
    return torch.device("cuda", index)


def compute_dtype(device: torch.device) -> torch.dtype:
    """Half precision on CUDA (BatchNorm stays in float32, see place_model); float32 on CPU
    and Apple GPUs, whose mixed half/float BatchNorm support is not to be relied on."""
    return torch.float16 if device.type == "cuda" else torch.float32


@dataclass(frozen=True)
class Precision:
    """The numbers a run computes in: the dtype of its weights and data, and the autocast
    its forward passes run under (None: none). Its `scaler` is a GradScaler, enabled only
    for float16 autocast (whose small range needs the loss scaled up so that small
    gradients survive); disabled it passes everything through, so the training step needs
    no branch for it."""

    device_type: str
    weights: torch.dtype
    autocast_dtype: torch.dtype | None
    scaler: torch.amp.GradScaler

    def autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.autocast_dtype)


def _precision(device: torch.device, weights: torch.dtype,
               autocast_dtype: torch.dtype | None) -> Precision:
    scaled = device.type == "cuda" and autocast_dtype == torch.float16
    return Precision(device.type, weights, autocast_dtype,
                     torch.amp.GradScaler("cuda" if scaled else "cpu", enabled=scaled))


PRECISION_CHOICES = ("auto", "float32", "bfloat16", "float16")


def choose_precision(choice: str, device: torch.device, recipe_mixed: bool) -> Precision:
    """--precision as a Precision.

    auto: the recipe's own on CUDA (speed runs: half weights and data; the general
    trainer: float32 weights under autocast, bfloat16 where the GPU has it, else float16
    with loss scaling), float32 on CPUs and Apple GPUs. float32: float32 everywhere.
    bfloat16: float32 weights, forward under bfloat16 autocast, on CUDA or a CPU (on a CPU
    with AMX a training step takes about half its float32 time; on one without AMX or
    AVX512-BF16 bfloat16 is emulated, 8 to 16 times slower, and a warning says so; see
    benchmarks/results/).
    float16: what auto is on CUDA, on CUDA or a CPU (where it rehearses the GPU's numerics,
    slowly)."""
    if choice == "auto":
        return auto_precision(device, recipe_mixed)
    if choice == "float32":
        return _precision(device, torch.float32, None)
    if choice == "bfloat16":
        if device.type == "cuda" and not _native_bf16():
            raise InputError("--precision bfloat16: this GPU has no bfloat16; use auto")
        if device.type not in ("cuda", "cpu"):
            raise InputError(f"--precision bfloat16: expected a CUDA or CPU device, "
                             f"not {device.type}; use auto")
        if device.type == "cpu" and cpu_has_native_bf16() is False:
            _warn_emulated_bf16()
        return _precision(device, torch.float32, torch.bfloat16)
    if choice == "float16":
        # What auto is on CUDA, on any device: so a CPU can rehearse the GPU's numerics.
        if device.type not in ("cuda", "cpu"):
            raise InputError(f"--precision float16: expected a CUDA or CPU device, "
                             f"not {device.type}; use auto")
        if recipe_mixed:
            return _precision(device, torch.float32, torch.float16)
        return _precision(device, torch.float16, None)
    raise InputError(f"--precision {choice}: expected one of {', '.join(PRECISION_CHOICES)}")


def auto_precision(device: torch.device, recipe_mixed: bool) -> Precision:
    """--precision auto: on CUDA the recipe's own (half weights and data for the speed
    runs; float32 weights under bfloat16 or float16 autocast for the general trainer),
    float32 elsewhere."""
    if device.type != "cuda":
        return _precision(device, torch.float32, None)
    if not recipe_mixed:
        return _precision(device, compute_dtype(device), None)
    bf16 = _native_bf16()
    return _precision(device, torch.float32, torch.bfloat16 if bf16 else torch.float16)


def _native_bf16() -> bool:
    """bfloat16 in hardware (Ampere and later), not emulated (V100, T4: slower than float16)."""
    return torch.cuda.is_bf16_supported(including_emulation=False)


@functools.cache  # once a process: a run resolves its precision more than once
def _warn_emulated_bf16() -> None:
    warnings.warn("--precision bfloat16: this CPU has no AMX or AVX512-BF16, so bfloat16 is "
                  "emulated and a step takes many times its float32 time (16x for airbench96 "
                  "on an AVX2 CPU); float32 (auto) is faster here", SlowChoice)


def cpu_has_native_bf16() -> bool | None:
    """Whether this x86 CPU computes in bfloat16 (AMX or AVX512-BF16); None where torch
    cannot tell (other architectures, or a torch without these checks)."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return None
    checks = [getattr(torch.cpu, name, None)
              for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")]
    if None in checks:
        return None
    return any(check() for check in checks)


def configure_backend(device: torch.device) -> None:
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        # CUDA events and kernels go to the current device's stream: make it this one.
        torch.cuda.set_device(device)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return device.type
