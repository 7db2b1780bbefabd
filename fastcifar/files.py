"""Writing files whole: a file this package writes appears complete or not at all."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import tempfile
from pathlib import Path

from .errors import InputError


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


def check_writable_folder(folder: Path, option: str) -> None:
    """Make `folder` if needed and try a file in it, before any long work that ends by
    writing there; an InputError naming `option` if it cannot be written."""
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise InputError(f"{option} {folder}: cannot write there ({e.strerror or e}); expected "
                         f"a folder you can write to") from None


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    return file_digests(path, {algorithm})[algorithm]


def source_digest(folder: Path) -> str:
    """sha256 over the .py files under `folder` (their paths from it and their bytes, in
    path order): which code ran, where no git history says it (a copy of the tree, an
    installed package)."""
    digest = hashlib.sha256()
    folder = Path(folder)
    for path in sorted(folder.rglob("*.py")):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        hash_file(path, {"sha256": digest})
        digest.update(b"\0")
    return digest.hexdigest()


def file_digests(path: Path, algorithms: set[str]) -> dict[str, str]:
    """Several digests of one file, read once."""
    hashes = {name: hashlib.new(name) for name in algorithms}
    if hashes:
        hash_file(path, hashes)
    return {name: h.hexdigest() for name, h in hashes.items()}


def hash_file(path: Path, hashes: dict) -> None:
    """Feed the file's bytes to every hashlib object in `hashes`."""
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            for h in hashes.values():
                h.update(block)


def copy_tree_whole(source: Path, final: Path, ignore=None) -> None:
    """Copy the folder `source` to `final` (which must not exist yet) through a temporary
    folder beside it, so `final` appears complete or not at all."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".part", dir=final.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; give it a normal folder's mode
    try:
        shutil.copytree(source, tmp, ignore=ignore, dirs_exist_ok=True)
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def file_safe(name: str) -> str:
    """`name` as part of a file or folder name: every run of characters other than
    letters, digits, "_", "." and "-" one "_" ("mine.py:Wider" -> "mine.py_Wider")."""
    return re.sub(r"[^\w.-]+", "_", name).strip("_")
