"""The official CIFAR-10 (python version), downloaded once and cached as uint8 arrays.

Files in the cache root (see `cache.cache_root`):

    cifar-10-python.tar.gz           the archive as published, kept so the arrays can be rebuilt
    cifar10.npz                      the parsed arrays; when it loads, nothing else is read
    cifar-10-python.tar.gz.partial   what arrived of a download that broke off; the next
                                     attempt downloads only the rest of the 170 MB

The archive is only ever renamed into place after its MD5 has been verified (by
`download.download`), so an archive with the wrong MD5 at that path was not put there by a
successful download of ours: it is the user's file (or a damaged one), and it is reported,
never deleted. The batches are read straight out of the .tar.gz, nothing is extracted.
"""

from __future__ import annotations

import io
import os
import pickle
import tarfile
import zlib
from pathlib import Path, PurePosixPath

import numpy as np

from ..errors import InputError
from ..files import file_digest
from .cache import cache_root, load_arrays, save_arrays
from .download import WrongFile, download as download_file
from .dataset import ImageData

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
# Mirrors of the archive (the official host has been slow for months): one URL or several,
# separated by spaces or commas, tried in order instead of URL; file:// too. Each copy is
# MD5-checked as the official one.
MIRRORS_ENV = "FASTCIFAR_CIFAR10_URL"
MD5 = "c58f30108f718f92721af3b95e74349a"
SIZE = 170498071  # bytes of the archive whose MD5 is MD5

ARCHIVE_NAME = "cifar-10-python.tar.gz"
CACHE_NAME = "cifar10.npz"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
META = "batches.meta"
BATCH_FILES = (*TRAIN_BATCHES, TEST_BATCH, META)  # what the archive holds that is read
TRAIN_IMAGES, TEST_IMAGES = 50_000, 10_000
IMAGE_SHAPE = (3, 32, 32)  # channels, height, width
ARRAY_KEYS = ("classes", "train_images", "train_labels", "test_images", "test_labels")


def load_cifar10(root: Path | None = None, download: bool = True, url: str = URL,
                 md5: str = MD5) -> ImageData:
    """CIFAR-10 from the cache under `root` (default `cache_root()`), downloading the
    archive from `url` first if it is not there and `download` is true.

    `url` and `md5` exist so that another archive (a small fake one in tests, a mirror)
    can stand in for the official one. The parsed-array cache is not keyed by them.
    """
    root = Path(root).expanduser() if root is not None else cache_root()
    cache_file = root / CACHE_NAME
    arrays = load_arrays(cache_file)
    if arrays is not None and all(k in arrays for k in ARRAY_KEYS):
        return _from_arrays(arrays)

    archive = root / ARCHIVE_NAME
    if not archive.exists():
        if not download:
            raise InputError(f"CIFAR-10 is not in the cache and downloading is off; "
                             f"{_by_hand_hint(archive, md5)}")
        fetch(download_urls(url), archive, md5)
    elif md5 is not None and (found := file_digest(archive, "md5")) != md5:
        raise InputError(f"{archive} has MD5 {found}, expected {md5}: it is corrupt or not the "
                         f"CIFAR-10 python archive; delete it to download it again, or put the "
                         f"right file there")

    arrays = _parse_archive(archive)
    save_arrays(cache_file, **arrays)
    return _from_arrays(arrays)


def download_urls(url: str) -> list[str]:
    """Where to download the archive from, in order: $FASTCIFAR_CIFAR10_URL's URLs in place
    of the official one, else `url`."""
    mirrors = os.environ.get(MIRRORS_ENV, "").replace(",", " ").split()
    return mirrors if mirrors and url == URL else [url]


def fetch(urls: list[str], archive: Path, md5: str | None) -> None:
    """The archive from the first URL that serves it. A URL that cannot be reached gives
    way to the next; one that serves another file (size or MD5) stops it all, naming that
    URL and what it sent: nothing is kept of it."""
    failed = []
    for url in urls:
        official = url == URL and md5 == MD5  # (a mirror's Content-Length is not trusted)
        try:
            download_file(url, archive, md5=md5, expected_size=SIZE if official else None,
                          resume=True)
            return
        except WrongFile as e:  # (one line: the URL and what it sent)
            raise InputError(f"CIFAR-10 download failed: {e}") from e
        except InputError as e:
            failed.append(str(e))
    raise InputError(f"CIFAR-10 download failed: {'; '.join(failed)}\n"
                     f"{_by_hand_hint(archive, md5)}")


def _by_hand_hint(archive: Path, md5: str | None) -> str:
    checksum = f" (MD5 {md5})" if md5 else ""
    return (f"to use CIFAR-10 without downloading, put {ARCHIVE_NAME}{checksum} at {archive} "
            f"by hand; or pass --data PATH to use an image-folder directory or archive "
            f"({{train,test}}/<class>/<image>) instead")


def _from_arrays(arrays: dict[str, np.ndarray]) -> ImageData:
    return ImageData(name="cifar10", classes=tuple(str(c) for c in arrays["classes"]),
                        train_images=arrays["train_images"], train_labels=arrays["train_labels"],
                        test_images=arrays["test_images"], test_labels=arrays["test_labels"])


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles the CIFAR batch dicts and refuses anything else: a pickle can name any
    callable, and only these few are needed to rebuild dicts of numpy arrays and lists."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("_codecs", "encode"),  # how Python 3 writes bytes in protocol 2 pickles
    }

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"unexpected object {module}.{name} in the pickle")
        return super().find_class(module, name)


def _parse_archive(archive: Path) -> dict[str, np.ndarray]:
    """The arrays of the CIFAR-10 python archive, read without extracting it."""
    wanted = set(BATCH_FILES)
    batches = {}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                name = PurePosixPath(member.name).name
                if member.isfile() and name in wanted and name not in batches:
                    data = tar.extractfile(member).read()
                    batches[name] = _BatchUnpickler(io.BytesIO(data), encoding="bytes").load()
    except (tarfile.TarError, EOFError, zlib.error, OSError, pickle.UnpicklingError,
            ValueError, TypeError, AttributeError, IndexError) as e:
        raise InputError(f"{archive}: the archive is corrupt or truncated ({e}); delete it "
                         f"to download it again") from e
    return arrays_of_batches(batches, archive)


def read_batch_folder(folder: Path) -> dict[str, np.ndarray]:
    """The arrays of the CIFAR-10 python batches unpacked into `folder` (the archive's
    cifar-10-batches-py)."""
    batches = {}
    for name in BATCH_FILES:
        if (folder / name).is_file():
            with open(folder / name, "rb") as f:
                batches[name] = _BatchUnpickler(f, encoding="bytes").load()
    return arrays_of_batches(batches, folder)


def arrays_of_batches(batches: dict, archive: Path) -> dict[str, np.ndarray]:
    """The arrays of the CIFAR-10 python batches, unpickled, by file name (`archive`: where
    they came from, for a message)."""
    missing = sorted(set(BATCH_FILES) - set(batches))
    if missing:
        raise InputError(f"{archive}: not the CIFAR-10 python archive, it lacks {', '.join(missing)}; "
                         f"delete it to download it again")

    try:
        classes = [c.decode() if isinstance(c, bytes) else str(c)
                   for c in batches[META][b"label_names"]]
        train = [_batch_arrays(batches[b], len(classes)) for b in TRAIN_BATCHES]
        train_images = np.concatenate([images for images, _ in train])
        train_labels = np.concatenate([labels for _, labels in train])
        test_images, test_labels = _batch_arrays(batches[TEST_BATCH], len(classes))
    except (KeyError, TypeError, ValueError, AttributeError, UnicodeDecodeError) as e:
        raise InputError(f"{archive}: a batch in it is not in the CIFAR-10 python format "
                         f"({type(e).__name__}: {e}); delete it to download it again") from e
    return {"classes": np.array(classes), "train_images": train_images,
            "train_labels": train_labels, "test_images": test_images, "test_labels": test_labels}


def _batch_arrays(batch: dict, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """One batch's rows of 3072 bytes (1024 red, 1024 green, 1024 blue, each row-major) as
    (N, 32, 32, 3) uint8 images, and its labels as int64."""
    data = np.asarray(batch[b"data"])
    labels = np.asarray(batch[b"labels"], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise ValueError(f"data is {data.dtype} {data.shape}, expected uint8 (N, 3072)")
    if labels.shape != (len(data),):
        raise ValueError(f"{len(data)} images but labels of shape {labels.shape}")
    if len(labels) and not (labels.min() >= 0 and labels.max() < num_classes):
        raise ValueError(f"labels outside 0..{num_classes - 1}")
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels
