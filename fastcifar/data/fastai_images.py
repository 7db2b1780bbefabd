"""Imagenette and Imagewoof: fast.ai's ten-class subsets of ImageNet, one easy (ten
distinct classes) and one hard (ten dog breeds), for trying ideas on real photos quickly.

Each is published at three sizes: "160" and "320" (every image's shorter side) and "full".
The archive is downloaded once into `cache_root()/downloads`, resumably. fast.ai publishes
no checksums, so the SHA-256 of the first download is recorded beside it and every later
use checks the archive against it. The archive is then read like any image-folder archive
(train/ and val/ of wnid folders), each image made a square of one size, and the wnids get
their readable names.
"""

from __future__ import annotations

import math
import os
from dataclasses import replace

from ..errors import InputError
from .cache import cache_root
from .download import download
from .dataset import ImageData
from .imagefolder import load_image_folder

BASE_URL = "https://s3.amazonaws.com/fast-ai-imageclas"
BASE_URL_ENV = "FASTCIFAR_FASTAI_URL"  # a mirror, or a local server in tests
SIZES = {"160": "-160", "320": "-320", "full": ""}  # --size -> archive name suffix

# Bytes of the published archives; the full-size ones are checked against Content-Length only.
ARCHIVE_BYTES = {
    "imagewoof2-160": 92_612_825,
    "imagenette2-160": 99_003_388,
    "imagewoof2-320": 328_387_740,
    "imagenette2-320": 341_663_724,
}

CLASS_NAMES = {
    "imagenette": {
        "n01440764": "tench", "n02102040": "English springer", "n02979186": "cassette player",
        "n03000684": "chain saw", "n03028079": "church", "n03394916": "French horn",
        "n03417042": "garbage truck", "n03425413": "gas pump", "n03445777": "golf ball",
        "n03888605": "parachute",
    },
    "imagewoof": {
        "n02086240": "Shih-Tzu", "n02087394": "Rhodesian ridgeback", "n02088364": "beagle",
        "n02089973": "English foxhound", "n02093754": "Border terrier",
        "n02096294": "Australian terrier", "n02099601": "golden retriever",
        "n02105641": "Old English sheepdog", "n02111889": "Samoyed", "n02115641": "dingo",
    },
}

# Images are stored a little larger than they are trained at, so evaluation can take a
# centre crop: the ratio of ImageNet's usual Resize(256) + CenterCrop(224).
EVAL_CROP_RATIO = 0.875
DEFAULT_IMAGE_SIZE = 128


def stored_size(image_size: int) -> int:
    """The side of the square each image is stored at, for training at `image_size`."""
    return math.ceil(image_size / EVAL_CROP_RATIO)


def archive_stem(name: str, size: str) -> str:
    """The published archive's name without .tgz, e.g. "imagewoof2-160"."""
    if name not in CLASS_NAMES:
        raise InputError(f"unknown dataset {name!r}; fast.ai's are {', '.join(CLASS_NAMES)}")
    if str(size) not in SIZES:
        raise InputError(f"--size {size!r}: expected one of {', '.join(SIZES)}")
    return f"{name}2{SIZES[str(size)]}"


def load_fastai_images(name: str, size: str = "160", resize: int | None = None,
                       base_url: str | None = None, cache: bool = True) -> ImageData:
    """Imagenette or Imagewoof (`name`) from the archive of `size`, every image stored as a
    `resize` x `resize` square (default `stored_size(DEFAULT_IMAGE_SIZE)`).

    `base_url` (else `$FASTCIFAR_FASTAI_URL`, else fast.ai's bucket) is where the archives
    are; the published sizes are only checked against the official one.
    """
    stem = archive_stem(name, size)
    resize = stored_size(DEFAULT_IMAGE_SIZE) if resize is None else resize
    base_url = (base_url or os.environ.get(BASE_URL_ENV) or BASE_URL).rstrip("/")
    archive = cache_root() / "downloads" / f"{stem}.tgz"
    try:
        download(f"{base_url}/{stem}.tgz", archive, record_sha256=True, resume=True,
                 expected_size=ARCHIVE_BYTES.get(stem) if base_url == BASE_URL else None)
    except InputError as e:
        raise InputError(f"{e}\nto use {name} without downloading it, put {stem}.tgz at "
                         f"{archive}; to download it from a mirror, set ${BASE_URL_ENV}") from e

    dataset = load_image_folder(archive, cache=cache, resize=resize)
    names = CLASS_NAMES[name]
    if set(dataset.classes) != set(names):
        raise InputError(f"{archive}: its class folders {list(dataset.classes)} are not the ten "
                         f"{name} wnids {sorted(names)}; delete it to download it again")
    return replace(dataset, name=stem, classes=tuple(names[wnid] for wnid in dataset.classes))
