"""A loader that keeps the whole dataset on the training device.

CIFAR-10 is 150 MB as uint8: it fits on any GPU, so the images are normalised once,
kept there, and each epoch's augmentation is a handful of batched tensor operations
instead of a per-image CPU pipeline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .augment import (alternating_flip_mask, centre_crop, cutout, flip_where, pad_reflect,
                      random_colour_jitter, random_crop, random_flip_mask,
                      random_resized_crop, resize)
from .dataset import ImageData

# Official CIFAR-10 training-set statistics, used for every dataset of 32x32 images so
# that a recipe's hyperparameters mean the same thing on any copy of CIFAR-10; ImageNet's,
# as everyone uses them, for larger photographs (Imagewoof, Imagenette, your own).
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalisation(image_side: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) for images of this side: CIFAR-10's for 32x32, else ImageNet's."""
    return (CIFAR10_MEAN, CIFAR10_STD) if image_side <= 32 else (IMAGENET_MEAN, IMAGENET_STD)

FLIP_MODES = ("none", "random", "alternating")
# How an epoch of progressive resizing makes its smaller images: scaled down whole, or a
# window of them at full scale (Fable E5: no resampling, a narrower view).
PROGRESSIVE_MODES = ("resize", "crop")


@dataclass(frozen=True)
class Augmentation:
    flip: str = "alternating"  # one of FLIP_MODES
    translate: int = 0  # reflect-pad by this many pixels, then random-crop back
    cutout: int = 0  # side of the zeroed square, 0 for none
    # Larger images: a random-resized crop of this side per image, a batch at a time
    # (0: none). Its flip is "none" or "random"; it does not combine with translate/cutout.
    crop_size: int = 0
    crop_scale: tuple[float, float] = (0.35, 1.0)  # the fraction of the image's area kept
    # Progressive resizing: the side of the training images in epochs 0, 1, ... (each
    # epoch's augmented images scaled down to it, or in crop mode cropped to it); the
    # epochs after them at full size.
    progressive: tuple[int, ...] = ()
    progressive_mode: str = "resize"  # one of PROGRESSIVE_MODES
    progressive_antialias: bool = True  # resize: antialiased; False: plain bilinear (Fable E1)
    # Colour jitter, in normalised units, after the crop and flip (see augment.colour_jitter):
    # a shift within +-brightness, then a scale within 1 +- contrast; both 0 for none.
    brightness: float = 0.0
    contrast: float = 0.0

    def __post_init__(self):
        if self.flip not in FLIP_MODES:
            raise ValueError(f"flip must be one of {FLIP_MODES}, got {self.flip!r}")
        if self.progressive_mode not in PROGRESSIVE_MODES:
            raise ValueError(f"progressive_mode must be one of {', '.join(PROGRESSIVE_MODES)}, "
                             f"got {self.progressive_mode!r}")
        # A scale of 1 - contrast <= 0 would erase or invert an image.
        if not (math.isfinite(self.brightness) and math.isfinite(self.contrast)
                and self.brightness >= 0 and 0 <= self.contrast < 1):
            raise ValueError(f"brightness must be a finite number >= 0 and contrast one in "
                             f"[0, 1), got {self.brightness} and {self.contrast}")
        if self.crop_size:
            if self.progressive or self.brightness or self.contrast:
                raise ValueError("progressive resizing and colour jitter go with the speed "
                                 "runs' whole-epoch augmentation, not with random-resized crops")
            if self.flip == "alternating" or self.translate or self.cutout:
                raise ValueError("a random-resized crop (crop_size) goes with flip none or "
                                 "random, and no translate or cutout")
            low, high = self.crop_scale
            if not 0 < low <= high <= 1:
                raise ValueError(f"crop_scale must be 0 < low <= high <= 1, got {self.crop_scale}")


def to_device_tensor(images: np.ndarray, device, dtype=torch.float32,
                     mean=CIFAR10_MEAN, std=CIFAR10_STD) -> torch.Tensor:
    """uint8 (N, H, W, C) -> normalised NCHW tensor in channels_last memory on device."""
    x = torch.from_numpy(images).to(device).permute(0, 3, 1, 2).float().div_(255)
    mean = torch.tensor(mean, device=device).view(1, -1, 1, 1)
    std = torch.tensor(std, device=device).view(1, -1, 1, 1)
    x = ((x - mean) / std).to(dtype)
    return x.contiguous(memory_format=torch.channels_last)


@dataclass
class DeviceData:
    """A dataset normalised and moved to the training device once, shared by all runs:
    the device-tensor stage between the uint8 arrays and the augmented batches."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    num_classes: int

    @classmethod
    def from_dataset(cls, data: ImageData, device: torch.device,
                     dtype: torch.dtype = torch.float32, image_size: int = 0) -> "DeviceData":
        """Images in `dtype` (the run's weights' dtype, see train.device.Precision). With
        `image_size` smaller than the stored images, the test images are their centre
        squares of that side (training crops them at random, see Augmentation)."""
        mean, std = normalisation(data.train_images.shape[1])
        return cls(to_device_tensor(data.train_images, device, dtype, mean, std),
                   torch.from_numpy(data.train_labels).to(device),
                   evaluation_tensor(data.test_images, device, dtype, image_size),
                   torch.from_numpy(data.test_labels).to(device), len(data.classes))


def evaluation_tensor(images: np.ndarray, device, dtype=torch.float32,
                      image_size: int = 0) -> torch.Tensor:
    """Stored uint8 images as a network sees them in evaluation: normalised for their size,
    and, with `image_size` smaller than they are, their centre squares of that side."""
    x = to_device_tensor(images, device, dtype, *normalisation(images.shape[1]))
    if image_size and image_size < x.size(-1):
        x = centre_crop(x, image_size).contiguous(memory_format=torch.channels_last)
    return x


class DeviceLoader:
    """Training batches of (images, labels) from tensors already on the device: shuffled
    afresh every epoch, the last partial batch dropped, the augmentation applied.

    `share` (rank, world size), in a data-parallel run: every rank draws the same epoch
    and yields its consecutive share of each batch (batch_size / world images).

    `order` and `augment`: generators of their own for the images' order and for the
    augmentation's draws (train/seeds.py), or None for torch's global one."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int,
                 augmentation: Augmentation = Augmentation(), share: tuple[int, int] = (0, 1),
                 order: torch.Generator | None = None, augment: torch.Generator | None = None):
        self.images, self.labels = images, labels
        self.batch_size, self.augmentation = batch_size, augmentation
        self.share, self.order, self.augment = share, order, augment
        self.epoch = 0
        self._padded = pad_reflect(images, self.augmentation.translate)
        self._first_flip = None
        self.last_index = None  # the positions of the images of the batch last yielded

    def __len__(self) -> int:
        return len(self.images) // self.batch_size
    def epoch_images(self, epoch: int) -> torch.Tensor:
        """The whole training set as augmented for `epoch` (epochs must be asked in order
        for alternating flip: the first call draws the random half)."""
        aug, full = self.augmentation, self.images.size(-1)
        side = min(aug.progressive[epoch], full) if epoch < len(aug.progressive) else full
        # The translation, a random crop of the padded images. In crop mode a smaller side's
        # window is cropped from their centred (side + 2 translate) square, so it still
        # shifts by up to translate pixels about the image's centre (Fable E5).
        crop = side if aug.progressive_mode == "crop" else full
        draws = self.augment
        images = random_crop(centre_crop(self._padded, crop + 2 * aug.translate), crop, draws)
        if aug.flip == "random":
            images = flip_where(images, random_flip_mask(len(images), images.device, draws))
        elif aug.flip == "alternating":
            if self._first_flip is None:
                self._first_flip = random_flip_mask(len(images), images.device, draws)
            images = flip_where(images, alternating_flip_mask(self._first_flip, epoch))
        images = cutout(images, aug.cutout, draws)
        if aug.brightness or aug.contrast:  # (no draws when off: other recipes' batches stay)
            images = random_colour_jitter(images, aug.brightness, aug.contrast, draws)
        if side < images.size(-1):
            images = resize(images, side, aug.progressive_antialias)
        return images

    def state_dict(self) -> dict:
        """The epoch counter, alternating flip's first draw and the loader's own generators:
        with the global generator's state, what a resumed run needs to see the same
        batches."""
        return {"epoch": self.epoch, "first_flip": self._first_flip,
                **{name: g.get_state() for name, g in self.generators().items()}}

    def generators(self) -> dict[str, torch.Generator]:
        return {name: g for name, g in (("order", self.order), ("augment", self.augment))
                if g is not None}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self._first_flip = state["epoch"], state["first_flip"]
        for name, generator in self.generators().items():
            generator.set_state(state[name])
        if self._first_flip is not None:
            self._first_flip = self._first_flip.to(self.images.device)

    def __iter__(self):
        aug = self.augmentation
        per_batch = aug.crop_size > 0
        images = self.images if per_batch else self.epoch_images(self.epoch)
        order = torch.randperm(len(images), device=images.device, generator=self.order)
        self.epoch += 1
        rank, world = self.share
        mine = slice(rank * self.batch_size // world, (rank + 1) * self.batch_size // world)
        for i in range(len(self)):
            index = order[i * self.batch_size:(i + 1) * self.batch_size]
            self.last_index = index[mine]
            if per_batch:  # the whole batch's random crops drawn, as on one device
                batch = random_resized_crop(images[index], aug.crop_size, aug.crop_scale,
                                            flip=aug.flip == "random",
                                            generator=self.augment)[mine]
            else:
                batch = images[index[mine]]
            yield batch, self.labels[index[mine]]
