"""Data flows one way: source -> cache -> device tensors -> augmented batches."""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from .dataset import ImageData
from .fastai_images import CLASS_NAMES as FASTAI_CLASS_NAMES, load_fastai_images, stored_size
from .imagefolder import load_image_folder


def load_dataset(data: str | Path | None = None, size: str = "160",
                 resize: int | None = None) -> ImageData:
    """The dataset `data` names:

    - `None` or "cifar10": the official CIFAR-10 (downloaded once into the cache), 32x32;
    - "imagewoof" or "imagenette": fast.ai's archive of `size` ("160", "320" or "full"),
      every image stored as a `resize` x `resize` square (default `stored_size(128)`);
    - anything else: a path to an image-folder directory or archive, resized the same way
      if `resize` is given (else its images must all have one size).
    """
    if data in (None, "cifar10"):
        if resize is not None:
            raise InputError("CIFAR-10 comes at 32x32 and is not resized; an image size "
                             "applies to --data imagewoof/imagenette or an image folder")
        from .cifar10 import load_cifar10
        return load_cifar10()
    if data in FASTAI_CLASS_NAMES:
        return load_fastai_images(data, size, resize)
    return load_image_folder(data, resize=resize)


__all__ = ["ImageData", "load_dataset", "stored_size"]
