"""Where datasets live on disk: the cache folder and its uint8 arrays.

Every file this package writes into the cache goes to a temporary name in the same
directory first and is renamed into place only when complete (see files.atomic_path), so an
interrupted run never leaves something that looks finished.
"""

from __future__ import annotations

import os
import warnings
import zipfile
from pathlib import Path

import numpy as np

from ..errors import CacheNotWritten
from ..files import atomic_path


def cache_root() -> Path:
    """`$FASTCIFAR_DATA`, else `$XDG_CACHE_HOME/fastcifar`, else `~/.cache/fastcifar`."""
    if os.environ.get("FASTCIFAR_DATA"):
        return Path(os.environ["FASTCIFAR_DATA"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "fastcifar"


def save_arrays(path: Path, **arrays: np.ndarray) -> bool:
    """Store uint8/int arrays uncompressed, so loading them is a plain read. The cache only
    saves time: where it cannot be written (a full disk, a read-only folder) this warns
    (CacheNotWritten), leaves nothing half-written and returns False, and the caller goes on
    with the arrays it has in memory."""
    try:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)
    except OSError as e:
        warnings.warn(f"cannot write the data cache in {Path(path).parent} "
                      f"({e.strerror or e}); going on from the images in memory (to cache "
                      f"them, free space there or set FASTCIFAR_DATA to a writable folder)",
                      CacheNotWritten, stacklevel=2)
        return False
    return True


def load_arrays(path: Path) -> dict[str, np.ndarray] | None:
    """The arrays saved at `path`, or None if there is no usable cache entry."""
    try:
        # Our own file object: np.load leaks the one it opens when the zip is damaged.
        with open(path, "rb") as f, np.load(f, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile):
        return None
