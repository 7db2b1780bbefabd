"""Data flows one way: source -> cache -> device tensors -> augmented batches."""

from __future__ import annotations

from .dataset import ImageDataset


def load_dataset(data: str | None) -> ImageDataset:
    """`None` or "cifar10": the official CIFAR-10 (downloaded once into the cache);
    anything else: a path to an image-folder directory or archive."""
    if data in (None, "cifar10"):
        from .cifar10 import load_cifar10
        return load_cifar10()
    from .imagefolder import load_image_folder
    return load_image_folder(data)


__all__ = ["ImageDataset", "load_dataset"]
