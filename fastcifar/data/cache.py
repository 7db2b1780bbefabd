"""Where datasets live on disk: the cache folder and its uint8 arrays.

Every file this package writes into the cache goes to a temporary name in the same
directory first and is renamed into place only when complete (see files.atomic_path), so an
interrupted run never leaves something that looks finished.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from ..files import atomic_path


def cache_root() -> Path:
    """`$FASTCIFAR_DATA`, else `$XDG_CACHE_HOME/fastcifar`, else `~/.cache/fastcifar`."""
    if os.environ.get("FASTCIFAR_DATA"):
        return Path(os.environ["FASTCIFAR_DATA"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "fastcifar"


def save_arrays(path: Path, **arrays: np.ndarray) -> None:
    """Store uint8/int arrays uncompressed, so loading them is a plain read."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)


def load_arrays(path: Path) -> dict[str, np.ndarray] | None:
    """The arrays saved at `path`, or None if there is no usable cache entry."""
    try:
        # Our own file object: np.load leaks the one it opens when the zip is damaged.
        with open(path, "rb") as f, np.load(f, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile):
        return None
