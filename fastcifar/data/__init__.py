"""Data flows one way: source -> cache -> device tensors -> augmented batches."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from .dataset import ImageData
from .fastai_images import CLASS_NAMES as FASTAI_CLASS_NAMES, load_fastai_images, stored_size
from .imagefolder import load_image_folder


def load_dataset(data: str | Path | None = None, size: str = "160",
                 resize: int | None = None, say: Callable[[str], None] = print) -> ImageData:
    """The dataset `data` names, every image a `resize` x `resize` square if `resize` is
    given (images of another size are scaled and centre-cropped to it, with a note):

    - `None` or "cifar10": the official CIFAR-10 (downloaded once into the cache), 32x32;
    - "imagewoof" or "imagenette": fast.ai's archive of `size` ("160", "320" or "full"),
      stored at `stored_size(128)` unless `resize` says otherwise;
    - anything else: a path to an image-folder directory or archive (without `resize`, its
      images must all have one size).
    """
    if data in (None, "cifar10"):
        from .cifar10 import load_cifar10
        dataset = load_cifar10()
        return dataset.resized(resize, say) if resize is not None else dataset
    if data in FASTAI_CLASS_NAMES:
        return load_fastai_images(data, size, resize)
    return load_image_folder(data, resize=resize, say=say)


__all__ = ["ImageData", "load_dataset", "stored_size"]
