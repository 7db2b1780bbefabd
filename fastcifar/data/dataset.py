"""The in-memory form every data source produces, and what a researcher hands to
`fastcifar.train`: uint8 images and integer labels, train and test."""

from __future__ import annotations

import functools
import hashlib
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError, OddLabels
from .memory import check_fits, storage_note


@dataclass(frozen=True)
class ImageData:
    """Train and test splits as uint8 arrays of shape (N, H, W, 3), labels as int64 (N,).

    Images may be given as numpy arrays or CPU tensors, channels last (N, H, W, 3, as
    files decode) or first (N, 3, H, W, as torchvision's tensors are); they are kept
    channels last. `classes` defaults to "0", "1", ... up to the largest label."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    classes: tuple[str, ...] | None = None
    name: str = "in-memory data"

    def __post_init__(self):
        for split in ("train", "test"):
            images = uint8_channels_last(getattr(self, f"{split}_images"), split)
            labels = np.asarray(getattr(self, f"{split}_labels")).astype(np.int64, copy=False).reshape(-1)
            if len(images) != len(labels):
                raise InputError(f"{split}: {len(images)} images but {len(labels)} labels")
            object.__setattr__(self, f"{split}_images", images)
            object.__setattr__(self, f"{split}_labels", labels)
        labels = np.concatenate([self.train_labels, self.test_labels])
        classes, unused = self.classes, 0  # (classes 0..unused-1 said to be empty already)
        if classes is None:
            classes = tuple(str(c) for c in range(int(labels.max(initial=0)) + 1))
            if len(labels) and labels.min() > 0:
                unused = int(labels.min())
                warnings.warn(f"{self.name}: the labels run {labels.min()}..{labels.max()} and "
                              f"no classes were given, so there are {len(classes)} classes, "
                              f"0..{unused - 1} without images; labels are expected to start "
                              f"at 0", OddLabels, stacklevel=3)
        object.__setattr__(self, "classes", tuple(str(c) for c in classes))
        if len(labels) and not 0 <= labels.min() <= labels.max() < len(self.classes):
            raise InputError(f"labels must be 0..{len(self.classes) - 1} (one per class), got "
                             f"{labels.min()}..{labels.max()}")
        counts = np.bincount(self.train_labels, minlength=len(self.classes))
        empty = [c for c in np.flatnonzero(counts == 0) if c >= unused]
        if len(self.train_labels) and empty:
            names = ", ".join(repr(self.classes[c]) for c in empty[:5])
            warnings.warn(f"{self.name}: {len(empty)} of {len(self.classes)} classes have no "
                          f"training images ({names}{', ...' if len(empty) > 5 else ''}): the "
                          f"network cannot learn them", OddLabels, stacklevel=3)

    def subset(self, train_indices) -> "ImageData":
        """The same data with only these training images (indices or a boolean mask), in
        this order; the test split is kept whole."""
        index = np.asarray(train_indices)
        if index.dtype == bool:
            if index.shape != self.train_labels.shape:
                raise InputError(f"a boolean subset mask needs one entry per training image "
                                 f"({len(self.train_labels)}), got {index.shape}")
            index = np.flatnonzero(index)
        if index.ndim != 1 or not np.issubdtype(index.dtype, np.integer):
            raise InputError("subset expects a 1-D array of training-image indices or a mask")
        if len(index) and not -len(self.train_labels) <= index.min() <= index.max() < len(
                self.train_labels):
            raise InputError(f"subset indices must be below the {len(self.train_labels)} "
                             f"training images")
        return ImageData(self.train_images[index], self.train_labels[index], self.test_images,
                         self.test_labels, self.classes, self.name)

    def balanced_subset(self, n: int, seed: int = 0) -> "ImageData":
        """A class-balanced random subset of n training images (see balanced_subset_index)."""
        return self.subset(balanced_subset_index(self.train_labels, n, len(self.classes), seed))

    def balanced_test_subset(self, n: int, seed: int = 0) -> "ImageData":
        """The same data with a class-balanced random subset of n test images."""
        index = balanced_subset_index(self.test_labels, n, len(self.classes), seed,
                                      what="--test-subset", split="test")
        return ImageData(self.train_images, self.train_labels, self.test_images[index],
                         self.test_labels[index], self.classes, self.name)

    @functools.cached_property
    def digest(self) -> str:
        """sha256 of the class names, every image and every label, train and test: the
        identity of the data a run trained on (a run folder records it, so that nothing
        reuses a run made on other images, whatever the path they came from)."""
        h = hashlib.sha256("\n".join(self.classes).encode())
        for array in (self.train_images, self.train_labels, self.test_images, self.test_labels):
            h.update(f"{array.dtype}{array.shape}".encode())
            h.update(np.ascontiguousarray(array).data)
        return h.hexdigest()

    @property
    def image_size(self) -> tuple[int, int]:
        """(height, width) of the training images."""
        return self.train_images.shape[1], self.train_images.shape[2]

    def resized(self, side: int, say: Callable[[str], None] = print) -> "ImageData":
        """Every image as a side x side square: its shorter side scaled to `side`, the long
        side's edges cut off (nothing is squashed). Says what it does, and refuses (before
        making it) a copy that does not fit in memory; `self` if already that size."""
        sizes = {split: images.shape[1:3] for split, images in
                 (("train", self.train_images), ("test", self.test_images))}
        if all(s == (side, side) for s in sizes.values()):
            return self
        n = len(self.train_images) + len(self.test_images)
        check_fits(n * side * side * 3, f"{n:,} images at {side}x{side}",
                   hint="give a smaller image size (--image-size)")
        h, w = sizes["train"]
        say(storage_note(self.name, w, h, side, n, cached=False)
            or f"note: {self.name}'s images are {w}x{h}; scaling them to {side}x{side}")
        return ImageData(square_resize(self.train_images, side),
                         self.train_labels, square_resize(self.test_images, side),
                         self.test_labels, self.classes, self.name)


def square_resize(images: np.ndarray, side: int, chunk: int = 1024) -> np.ndarray:
    """uint8 (N, H, W, 3) -> (N, side, side, 3): the centre square, resized bilinearly
    with antialiasing (as Pillow does when shrinking)."""
    n, h, w, _ = images.shape
    if (h, w) == (side, side):
        return images
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    out = np.empty((n, side, side, 3), dtype=np.uint8)
    for i in range(0, n, chunk):
        x = torch.from_numpy(images[i:i + chunk, top:top + s, left:left + s]).permute(0, 3, 1, 2)
        y = F.interpolate(x.float(), size=(side, side), mode="bilinear", antialias=True,
                          align_corners=False)
        out[i:i + chunk] = y.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return out


def uint8_channels_last(images, split: str) -> np.ndarray:
    """uint8 images, numpy or torch, (N, H, W, 3) or (N, 3, H, W), as a (N, H, W, 3) array."""
    if hasattr(images, "numpy"):  # a torch tensor
        images = images.detach().cpu().numpy()
    images = np.asarray(images)
    if images.ndim == 4 and images.shape[-1] != 3 and images.shape[1] == 3:
        images = np.ascontiguousarray(images.transpose(0, 2, 3, 1))
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise InputError(f"{split} images must be uint8 of shape (N, H, W, 3) or (N, 3, H, W), "
                         f"got {images.dtype} {images.shape}")
    return images


def balanced_subset_index(labels: np.ndarray, n: int, num_classes: int, seed: int = 0,
                          what: str = "--subset", split: str = "training") -> np.ndarray:
    """Indices of n examples drawn so that every class gets n // num_classes (the first
    n % num_classes classes one more), in a random order that depends only on seed."""
    if not 0 < n <= len(labels):
        raise InputError(f"{what} must be between 1 and the {len(labels)} {split} images, got {n}")
    rng = np.random.default_rng(seed)
    per_class = [n // num_classes + (c < n % num_classes) for c in range(num_classes)]
    chosen = []
    for c, k in enumerate(per_class):
        members = np.flatnonzero(labels == c)
        if k > len(members):
            raise InputError(f"{what} {n} needs {k} {split} images of class {c}, the data has "
                             f"{len(members)}")
        chosen.append(rng.choice(members, size=k, replace=False))
    index = np.concatenate(chosen)
    rng.shuffle(index)
    return index
