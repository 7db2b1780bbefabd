"""Where datasets live on disk, and how they get there without half-written files.

Every file this package writes into the cache goes to a temporary name in the same
directory first and is renamed into place only when complete (and verified, for
downloads), so an interrupted run never leaves something that looks finished.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import numpy as np

from ..errors import InputError


def cache_root() -> Path:
    """`$FASTCIFAR_DATA`, else `$XDG_CACHE_HOME/fastcifar`, else `~/.cache/fastcifar`."""
    if os.environ.get("FASTCIFAR_DATA"):
        return Path(os.environ["FASTCIFAR_DATA"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "fastcifar"


@contextlib.contextmanager
def atomic_path(final: Path):
    """Yield a temporary path beside `final`; rename it onto `final` if the block succeeds."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".part", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; give it a normal file's mode
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


def file_digest(path: Path, algorithm: str = "sha256", chunk: int = 1 << 20) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


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


def download(url: str, dest: Path, md5: str | None = None, expected_size: int | None = None,
             progress: bool = True) -> Path:
    """Download `url` to `dest` through a temporary file, verified before it is renamed in.

    A wrong size or checksum raises InputError and leaves nothing at `dest`.
    """
    from tqdm.auto import tqdm

    dest = Path(dest)
    try:
        response = urllib.request.urlopen(url, timeout=60)
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        raise InputError(f"could not download {url}: {e}") from e
    with response, atomic_path(dest) as tmp:
        total = expected_size or int(response.headers.get("Content-Length") or 0) or None
        received = 0
        digest = hashlib.md5()
        with open(tmp, "wb") as f, tqdm(total=total, unit="B", unit_scale=True,
                                         desc=f"downloading {dest.name}", disable=not progress,
                                         leave=False) as bar:
            while True:
                try:
                    block = response.read(1 << 20)
                except (OSError, urllib.error.URLError, http.client.HTTPException) as e:
                    raise InputError(f"download of {url} broke off after {received} bytes: {e}") from e
                if not block:
                    break
                f.write(block)
                digest.update(block)
                received += len(block)
                bar.update(len(block))
        if total is not None and received != total:
            raise InputError(f"download of {url} is truncated: got {received} bytes, "
                             f"expected {total}; nothing was saved, run again to retry")
        if md5 is not None and digest.hexdigest() != md5:
            raise InputError(f"download of {url} has MD5 {digest.hexdigest()}, expected {md5}; "
                             "the file is corrupt or not the expected one; nothing was saved")
    return dest
