"""The in-memory form every data source produces: uint8 images and integer labels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError


@dataclass(frozen=True)
class ImageDataset:
    """Train and test splits as uint8 arrays of shape (N, H, W, 3), labels as int64 (N,)."""

    name: str
    classes: tuple[str, ...]
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray

    def __post_init__(self):
        for split in ("train", "test"):
            images, labels = getattr(self, f"{split}_images"), getattr(self, f"{split}_labels")
            if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
                raise ValueError(f"{split} images must be uint8 (N, H, W, 3), got "
                                 f"{images.dtype} {images.shape}")
            if len(images) != len(labels):
                raise ValueError(f"{split}: {len(images)} images but {len(labels)} labels")

    def with_train_subset(self, n: int, seed: int = 0) -> "ImageDataset":
        """The same dataset with a class-balanced random subset of n training images."""
        index = balanced_subset_index(self.train_labels, n, len(self.classes), seed)
        return ImageDataset(self.name, self.classes, self.train_images[index],
                            self.train_labels[index], self.test_images, self.test_labels)


def balanced_subset_index(labels: np.ndarray, n: int, num_classes: int, seed: int = 0) -> np.ndarray:
    """Indices of n examples drawn so that every class gets n // num_classes (the first
    n % num_classes classes one more), in a random order that depends only on seed."""
    if not 0 < n <= len(labels):
        raise InputError(f"--subset must be between 1 and the {len(labels)} training images, got {n}")
    rng = np.random.default_rng(seed)
    per_class = [n // num_classes + (c < n % num_classes) for c in range(num_classes)]
    chosen = []
    for c, k in enumerate(per_class):
        members = np.flatnonzero(labels == c)
        if k > len(members):
            raise InputError(f"--subset {n} needs {k} images of class {c}, the data has {len(members)}")
        chosen.append(rng.choice(members, size=k, replace=False))
    index = np.concatenate(chosen)
    rng.shuffle(index)
    return index
