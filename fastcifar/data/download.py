"""Downloads that never leave a half-written file, resume where they broke off, and are
verified (size, MD5, SHA-256) before anything uses them.

A download that breaks off may keep its bytes as `<name>.partial`, for the next attempt to
resume with an HTTP Range request.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import urllib.error
import urllib.request
from pathlib import Path

from ..errors import InputError
from ..files import atomic_path, file_digests, hash_file


class WrongFile(InputError):
    """What a server sent is complete but not the expected file (its size or checksum):
    another server of the same name would not help."""


def partial_path(dest: Path) -> Path:
    """Where a download of `dest` that broke off keeps its bytes for the next attempt."""
    return dest.with_name(dest.name + ".partial")


def sha256_record_path(dest: Path) -> Path:
    """The JSON file beside `dest` that holds the SHA-256 it had when it was downloaded."""
    return dest.with_name(dest.name + ".sha256.json")


def download(url: str, dest: Path, md5: str | None = None, expected_size: int | None = None,
             progress: bool = True, *, sha256: str | None = None, record_sha256: bool = False,
             resume: bool = False) -> Path:
    """`dest`, downloaded from `url` unless it is already there, and verified either way.

    The bytes stream into a temporary file beside `dest`, renamed into place only when it
    is complete and matches `expected_size`, `md5` and `sha256` (those given). A wrong size
    or checksum raises InputError and leaves nothing at `dest`; so does a network error.
    A file already at `dest` is checked against the same things instead.

    `resume`: a transfer that breaks off keeps its bytes in `partial_path(dest)`, and the
    next call asks the server for the rest only; a server that ignores the request and
    sends the whole file again is fine too.
    `record_sha256`: for files nobody publishes a checksum for. The first download records
    its SHA-256 in `sha256_record_path(dest)`, and every later call checks `dest` against
    it, so a file damaged on disk is caught before it is used.
    """
    dest = Path(dest)
    wanted = {name: value for name, value in (("md5", md5), ("sha256", sha256)) if value}
    algorithms = set(wanted) | ({"sha256"} if record_sha256 else set())
    if dest.exists():
        _check_cached(url, dest, wanted, algorithms, expected_size, record_sha256)
        return dest
    with atomic_path(dest) as tmp:
        digests, size = _transfer(url, dest, tmp, resume, expected_size, algorithms, progress)
        for name, value in wanted.items():
            if digests[name] != value:
                raise WrongFile(f"download of {url} has {name.upper()} {digests[name]}, "
                                 f"expected {value}; the file is corrupt or not the expected "
                                 f"one; nothing was saved")
        if record_sha256:
            _write_sha256_record(dest, url, size, digests["sha256"])
    return dest


def _transfer(url: str, dest: Path, tmp: Path, resume: bool, expected_size: int | None,
              algorithms: set[str], progress: bool) -> tuple[dict[str, str], int]:
    """Stream `url` into `tmp` and return the whole file's digests and size. With `resume`,
    continue `partial_path(dest)` where the server allows it, and keep there what arrived
    before a failure."""
    from tqdm.auto import tqdm

    partial = partial_path(dest) if resume else None
    offset = partial.stat().st_size if partial is not None and partial.exists() else 0
    response = _open(url, offset)
    if response is None:  # 416: the partial file is no prefix of what the server has
        partial.unlink()
        offset, response = 0, _open(url, 0)
    with response:
        if response.status == 206:
            total = _resumed_total(url, response, offset, partial)
        else:
            total = int(response.headers.get("Content-Length") or 0) or None
            if offset:  # the server ignored Range and sends everything again
                partial.unlink(missing_ok=True)
                offset = 0
        if expected_size is not None and total is not None and total != expected_size:
            if partial is not None:
                partial.unlink(missing_ok=True)
            raise WrongFile(f"{url} is {total} bytes, expected {expected_size}: not the "
                            f"expected file; nothing was saved")
        total = expected_size or total
        hashes = {name: hashlib.new(name) for name in algorithms}
        received = 0
        try:
            if offset:
                os.replace(partial, tmp)
                hash_file(tmp, hashes)
                received = offset
            with open(tmp, "ab") as f, tqdm(total=total, initial=offset, unit="B",
                                             unit_scale=True, desc=f"downloading {dest.name}",
                                             disable=not progress, leave=False) as bar:
                while block := _read_block(response, url, received, total, partial):
                    f.write(block)
                    for h in hashes.values():
                        h.update(block)
                    received += len(block)
                    bar.update(len(block))
            if total is not None and received < total:
                raise _broke_off(url, received, total, partial, "the connection closed early")
        except BaseException:  # Ctrl-C too: what arrived is kept for the next attempt
            if partial is not None and received > 0:
                os.replace(tmp, partial)
            raise
    if total is not None and received > total:
        raise WrongFile(f"download of {url} sent {received} bytes, expected {total}: not the "
                        f"expected file; nothing was saved")
    return {name: h.hexdigest() for name, h in hashes.items()}, received


def _open(url: str, offset: int):
    """The server's response to a GET of `url` from byte `offset` on; None if the server
    says that range cannot be satisfied."""
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=60)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:
            e.close()
            return None
        raise InputError(f"could not download {url}: {e}") from e
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        raise InputError(f"could not download {url}: {e}") from e


def _resumed_total(url: str, response, offset: int, partial: Path | None) -> int | None:
    """The whole file's size from a 206 answer, once its range is checked to start at `offset`."""
    content_range = response.headers.get("Content-Range", "")
    match = re.fullmatch(r"bytes (\d+)-\d+/(\d+|\*)", content_range.strip())
    if match is None or int(match[1]) != offset:
        if partial is not None:
            partial.unlink(missing_ok=True)
        raise InputError(f"{url}: asked for the bytes from {offset} on, the server answered "
                         f"with {content_range!r}; the partial download was discarded, run "
                         f"again to download the whole file")
    if match[2] != "*":
        return int(match[2])
    length = int(response.headers.get("Content-Length") or 0)
    return offset + length if length else None


def _read_block(response, url: str, received: int, total: int | None,
                partial: Path | None) -> bytes:
    try:
        return response.read(1 << 20)
    except (OSError, urllib.error.URLError, http.client.HTTPException) as e:
        raise _broke_off(url, received, total, partial, e) from e


def _broke_off(url: str, received: int, total: int | None, partial: Path | None,
               cause) -> InputError:
    expected = f", expected {total}" if total is not None else ""
    if partial is not None and received > 0:
        then = f"the {received} bytes are kept in {partial}; run again to resume the download"
    else:
        then = "nothing was saved, run again to retry"
    return InputError(f"download of {url} is truncated ({cause}): got {received} bytes"
                      f"{expected}; {then}")


def _check_cached(url: str, dest: Path, wanted: dict[str, str], algorithms: set[str],
                  expected_size: int | None, record_sha256: bool) -> None:
    """Check a file already at `dest` as if it had just been downloaded.

    Against a recorded SHA-256 a mismatch means the file was damaged after we downloaded
    it, so it is removed for the next run to fetch again. Any other mismatch may be a file
    the user put there, so it is reported and kept.
    """
    digests = file_digests(dest, algorithms)
    recorded = _read_sha256_record(dest) if record_sha256 else None
    if recorded is not None and digests["sha256"] != recorded:
        dest.unlink(missing_ok=True)
        raise InputError(f"{dest} is corrupt: its SHA-256 is {digests['sha256']}, but it was "
                         f"{recorded} when it was downloaded (recorded in "
                         f"{sha256_record_path(dest)}); the damaged file was removed, run "
                         f"again to download it afresh from {url}")
    size = dest.stat().st_size
    if expected_size is not None and size != expected_size:
        raise InputError(f"{dest} has {size} bytes, expected {expected_size}: it is truncated "
                         f"or not the file from {url}; delete it to download it again")
    for name, value in wanted.items():
        if digests[name] != value:
            raise InputError(f"{dest} has {name.upper()} {digests[name]}, expected {value}: it "
                             f"is corrupt or not the file from {url}; delete it to download "
                             f"it again")
    if record_sha256 and recorded is None:  # placed by hand: checked as far as we can, then trusted
        _write_sha256_record(dest, url, size, digests["sha256"])


def _write_sha256_record(dest: Path, url: str, size: int, digest: str) -> None:
    with atomic_path(sha256_record_path(dest)) as tmp:
        tmp.write_text(json.dumps({"url": url, "bytes": size, "sha256": digest}, indent=1) + "\n")


def _read_sha256_record(dest: Path) -> str | None:
    """The recorded SHA-256 of `dest`, or None if there is no readable record."""
    try:
        digest = json.loads(sha256_record_path(dest).read_text())["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return digest if isinstance(digest, str) else None
