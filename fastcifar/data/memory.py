"""Will it fit? The memory a dataset will take, checked before any of it is made."""

from __future__ import annotations

import os

import torch

from ..errors import InputError


def gigabytes(nbytes: float) -> str:
    return f"{nbytes / 1e9:.1f} GB" if nbytes >= 1e8 else f"{nbytes / 1e6:.0f} MB"


def available_bytes(device: torch.device | str = "cpu") -> int | None:
    """Memory free for new tensors on `device` (None where it cannot be known: MPS, or a
    system without /proc/meminfo or sysconf)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    if device.type != "cpu":
        return None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_fits(nbytes: int, what: str, device: torch.device | str = "cpu",
               hint: str = "") -> None:
    """Refuse, before making it, something of `nbytes` that `device` has no room for."""
    free = available_bytes(device)
    if free is not None and nbytes > free:
        raise InputError(f"{what} needs {gigabytes(nbytes)} but {torch.device(device)} has "
                         f"{gigabytes(free)} free{'; ' + hint if hint else ''}")


def storage_note(name: str, width: int, height: int, side: int, n: int,
                 cached: bool) -> str | None:
    """What storing n images of width x height at side x side costs, as a note: said for
    an upscale (with how to avoid it) or a large whole; None otherwise."""
    nbytes, where = n * side * side * 3, "in memory and in the cache" if cached else "in memory"
    if min(width, height) < side:
        return (f"note: {name}'s images are {width}x{height}; storing them at {side}x{side} "
                f"upscales each {side / min(width, height):.1f}x and takes {gigabytes(nbytes)} "
                f"{where}; a smaller image size (--image-size {min(width, height)}) keeps them "
                f"as they are")
    if nbytes > 2e9:
        return f"note: storing the {n:,} images of {name} at {side}x{side} takes " \
               f"{gigabytes(nbytes)} {where}"
    return None
