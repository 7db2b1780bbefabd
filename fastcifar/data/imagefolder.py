"""Image-folder datasets: a directory or archive laid out as `{train,test|val}/<class>/<image>`.

The layout may sit under one top-level folder (as `cifar10-jpeg/train/...` does). Images
are decoded once with Pillow and the uint8 arrays are cached, keyed by the archive's
content (and the resize), so later runs skip the decode.

Photos come in many sizes (Imagenette's, say); `resize` makes each image of another size a
square of that size at decode time: the shorter side scaled to `resize`, the long side's
edges cut off, so nothing is squashed. Without it every image must already have the same
size. Grayscale, palette and RGBA images become RGB.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath
from typing import Callable

import numpy as np
from tqdm.auto import tqdm

from ..errors import InputError
from ..files import file_digest
from .cache import cache_root, load_arrays, save_arrays
from .dataset import ImageData
from .memory import check_fits, storage_note

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}
TEST_SPLIT_NAMES = ("test", "val")
ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".zip")


def load_image_folder(path: str | Path, cache: bool = True, resize: int | None = None,
                      say: Callable[[str], None] = print) -> ImageData:
    """The dataset at `path`; with `resize`, every image becomes a `resize` x `resize` square
    (`say` tells how many had to be resized, and what upscaling will cost)."""
    path = Path(path).expanduser()
    if resize is not None and not (isinstance(resize, int) and resize > 0):
        raise InputError(f"image size {resize!r}: expected a positive number of pixels")
    if not path.exists():
        raise InputError(f"--data {path}: no such file or directory; expected a directory or a "
                         f".tar/.tar.gz/.tgz/.zip archive holding train/ and test/ (or val/) "
                         f"class folders")
    is_archive = path.is_file()
    if is_archive and not path.name.lower().endswith(ARCHIVE_SUFFIXES):
        raise InputError(f"--data {path}: not a directory and not a .tar, .tar.gz, .tgz or .zip archive")

    key = file_digest(path) if is_archive else _directory_key(path)
    # Images already of the size asked for are stored as they came: such a folder shares
    # one cache entry with and without `resize`.
    as_stored = cache_root() / "imagefolder" / f"{path.name}-{key[:16]}.npz"
    resized = as_stored.with_name(f"{as_stored.stem}-{resize}px.npz")
    if cache:
        for cache_file in (resized, as_stored) if resize is not None else (as_stored,):
            arrays = load_arrays(cache_file)
            if arrays is not None and (cache_file == resized or resize is None or
                                       arrays["train_images"].shape[1:3] == (resize, resize)):
                return _from_arrays(path.name, arrays)

    files = read_files(path)
    arrays, any_resized = _decode_splits(path, files, resize, say)
    if cache:
        save_arrays(resized if any_resized else as_stored, **arrays)
    return _from_arrays(path.name, arrays)


def _from_arrays(name: str, arrays: dict[str, np.ndarray]) -> ImageData:
    return ImageData(name=name, classes=tuple(str(c) for c in arrays["classes"]),
                        train_images=arrays["train_images"], train_labels=arrays["train_labels"],
                        test_images=arrays["test_images"], test_labels=arrays["test_labels"])


def _directory_key(root: Path) -> str:
    """A digest of every file's relative path, size and modification time."""
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            st = p.stat()
            h.update(f"{p.relative_to(root)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def read_files(path: Path) -> dict[str, bytes]:
    """Every image file of the directory or archive at `path`, by its path inside it."""
    return _read_archive(path) if path.is_file() else _read_directory(path)


def _read_directory(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()}


def _read_archive(path: Path) -> dict[str, bytes]:
    """Every image file in the archive, by its path inside it."""
    try:
        if path.name.lower().endswith(".zip"):
            with zipfile.ZipFile(path) as z:
                return {n: z.read(n) for n in z.namelist()
                        if PurePosixPath(n).suffix.lower() in IMAGE_SUFFIXES}
        files = {}
        with tarfile.open(path) as t:
            for member in t:
                if member.isfile() and PurePosixPath(member.name).suffix.lower() in IMAGE_SUFFIXES:
                    files[member.name] = t.extractfile(member).read()
        return files
    # A damaged zip can also raise zlib.error, or NotImplementedError/RuntimeError when
    # the damage hits the compression-method or encryption fields.
    except (tarfile.TarError, zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError,
            NotImplementedError, RuntimeError) as e:
        if (isinstance(e, tarfile.ReadError) and "opened successfully" in str(e)
                or isinstance(e, zipfile.BadZipFile) and not _starts_as_zip(path)):
            # (tarfile tried every compression and lists each failure, one line each)
            raise InputError(f"--data {path}: not an archive (neither tar, gzip, bz2, xz nor "
                             f"zip); expected a .tar/.tar.gz/.tgz/.zip archive or a folder of "
                             f"{{train,test}}/<class>/<image>") from e
        raise InputError(f"--data {path}: the archive is corrupt or truncated "
                         f"({' '.join(str(e).split())}); expected a complete "
                         f".tar/.tar.gz/.tgz/.zip archive") from e


def _starts_as_zip(path: Path) -> bool:
    """Whether the file begins as a zip does (one cut short has lost its directory, and
    zipfile then calls it "not a zip file")."""
    with open(path, "rb") as f:
        return f.read(2) == b"PK"


def _split_layout(path: Path, names: list[str]) -> tuple[int, str, str]:
    """Find the depth of the split folders: (depth, train folder name, test folder name)."""
    for depth in range(3):
        tops = {PurePosixPath(n).parts[depth] for n in names if len(PurePosixPath(n).parts) > depth + 2}
        if "train" in tops:
            test = next((t for t in TEST_SPLIT_NAMES if t in tops), None)
            if test is None:
                break
            return depth, "train", test
    raise InputError(f"--data {path}: found no train/ and test/ (or val/) folders of class "
                     f"folders; expected {{train,test}}/<class>/<image> "
                     f"(optionally under one top-level folder)")


def labelled_files(path: Path, files: dict[str, bytes]) -> tuple[list[str], dict]:
    """The class names (the class folders, sorted) and, for "train" and "test", every image
    file as (its path, its bytes, its label): class by class, each class's files sorted by
    path, the order of the arrays decoded from them."""
    if not files:
        raise InputError(f"--data {path}: holds no .jpg/.jpeg/.png images")
    depth, train_name, test_name = _split_layout(path, list(files))
    splits = {train_name: {}, test_name: {}}
    for name, data in files.items():
        parts = PurePosixPath(name).parts
        if len(parts) == depth + 3 and parts[depth] in splits:
            splits[parts[depth]].setdefault(parts[depth + 1], []).append((name, data))

    train_classes, test_classes = sorted(splits[train_name]), sorted(splits[test_name])
    if train_classes != test_classes:
        only_train = sorted(set(train_classes) - set(test_classes))
        only_test = sorted(set(test_classes) - set(train_classes))
        raise InputError(f"--data {path}: train and {test_name} have different classes "
                         f"(only in train: {only_train or 'none'}; only in {test_name}: "
                         f"{only_test or 'none'}); expected the same class folders in both")
    return train_classes, {key: [(name, data, label) for label, c in enumerate(train_classes)
                                 for name, data in sorted(splits[split][c])]
                           for split, key in ((train_name, "train"), (test_name, "test"))}


def _decode_splits(path: Path, files: dict[str, bytes], resize: int | None,
                   say: Callable[[str], None]) -> tuple[dict[str, np.ndarray], bool]:
    """The arrays of both splits, and whether any image had to be resized."""
    train_classes, items = labelled_files(path, files)
    arrays, resized = {"classes": np.array(train_classes)}, 0
    if resize is not None:
        _say_cost(path, items["train"][0], sum(map(len, items.values())), resize, say)
    for key, split_items in items.items():
        images, count = _decode_all(path, [(n, d) for n, d, _ in split_items], resize)
        resized += count
        arrays[f"{key}_images"] = images
        arrays[f"{key}_labels"] = np.array([label for _, _, label in split_items], dtype=np.int64)
    if resized:
        total = sum(map(len, items.values()))
        say(f"note: {resized:,} of the {total:,} images of {path.name} were not {resize}x{resize}; "
            f"each was scaled (shorter side to {resize}) and centre-cropped to it")
    if arrays["train_images"].shape[1:] != arrays["test_images"].shape[1:]:
        raise InputError(f"--data {path}: train images are {arrays['train_images'].shape[1:3]} "
                         f"but test images are {arrays['test_images'].shape[1:3]}; expected one "
                         f"size, or pass an image size (--image-size) to resize them all")
    return arrays, resized > 0


def _say_cost(path: Path, first: tuple[str, bytes, int], n: int, side: int,
              say: Callable[[str], None]) -> None:
    """Before decoding: refuse storing n images at side x side if it cannot fit, and say
    what it costs when the first image is smaller (an upscale) or the whole is large."""
    from PIL import Image

    check_fits(n * side * side * 3, f"storing the {n:,} images of {path.name} at {side}x{side}",
               hint="give a smaller image size (--image-size)")
    try:
        with Image.open(io.BytesIO(first[1])) as im:
            width, height = im.size
    except Exception:  # noqa: BLE001 (the decode proper names a damaged image)
        return
    if (note := storage_note(path.name, width, height, side, n, cached=True)) is not None:
        say(note)


def _decode_all(path: Path, items: list[tuple[str, bytes]],
                resize: int | None) -> tuple[np.ndarray, int]:
    """The images as one (N, H, W, 3) uint8 array, each decoded straight into its slot so
    the decoded set is held in memory once; and how many had to be resized."""
    resized = []

    def decode(i: int) -> np.ndarray:
        name, data = items[i]
        try:
            image, was_resized = decode_image(data, resize)
        except Exception as e:  # Pillow raises many types for a damaged image
            raise InputError(f"--data {path}: image {name}: {why_undecodable(e)}") from e
        if was_resized:
            resized.append(i)
        return image

    first = decode(0)
    images = np.empty((len(items), *first.shape), dtype=np.uint8)
    images[0] = first

    def decode_into(i: int) -> None:
        image = decode(i)
        if image.shape != first.shape:
            raise InputError(f"--data {path}: images differ in size ({items[0][0]} is "
                             f"{_size(first)}, {items[i][0]} is {_size(image)}); pass an "
                             f"image size (--image-size) to resize and centre-crop them all "
                             f"to one square size")
        images[i] = image

    # Pillow's decoders release the GIL, so threads decode in parallel. The bar shows on a
    # terminal only (decoding the 60,000 CIFAR images takes a while, once).
    pool = ThreadPoolExecutor()
    try:
        for _ in tqdm(pool.map(decode_into, range(1, len(items))), total=len(items) - 1,
                      desc=f"decoding {path.name}", unit="image", leave=False, disable=None):
            pass
    finally:
        # On an error or Ctrl-C, drop the images not yet started instead of decoding them
        # all before the exception can leave (what `with` would do).
        pool.shutdown(wait=True, cancel_futures=True)
    return images, len(resized)


def _size(image: np.ndarray) -> str:
    return f"{image.shape[1]}x{image.shape[0]}"


def why_undecodable(error: Exception) -> str:
    """Why Pillow could not decode an image, without the BytesIO object its message names."""
    from PIL import UnidentifiedImageError

    if isinstance(error, UnidentifiedImageError):
        return "not an image Pillow can decode"
    return f"a damaged image ({' '.join(str(error).split())})"


def decode_image(data: bytes, resize: int | None) -> tuple[np.ndarray, bool]:
    """One image as (H, W, 3) uint8 RGB, and whether it was resized: with `resize`, an image
    of another size becomes its centre square scaled to `resize`, the same as scaling the
    shorter side to `resize` and then centre-cropping."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        if resize is None or im.size == (resize, resize):
            return np.asarray(im.convert("RGB"), dtype=np.uint8), False
        # A JPEG decodes at 1/2, 1/4 or 1/8 scale for almost nothing; draft picks the
        # smallest that keeps both sides at least `resize`, and the resize does the rest.
        im.draft("RGB", (resize, resize))
        rgb = im.convert("RGB")
    width, height = rgb.size
    side = min(width, height)
    box = ((width - side) / 2, (height - side) / 2, (width + side) / 2, (height + side) / 2)
    # Antialiased (Pillow widens the filter when shrinking), bilinear as torchvision's Resize.
    square = rgb.resize((resize, resize), Image.Resampling.BILINEAR, box=box)
    return np.asarray(square, dtype=np.uint8), True
