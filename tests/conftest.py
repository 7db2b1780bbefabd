"""Shared fixtures. Real-data tests use the JPEG stand-in beside the project when it is
there (as on the development machines), else the official CIFAR-10 if cached or
downloadable, else they skip, saying why."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from fastcifar.data.dataset import ImageDataset
from fastcifar.errors import InputError

STAND_IN = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpeg.tar.gz"

# Two cores are all CI has: keep torch from oversubscribing them.
torch.set_num_threads(min(torch.get_num_threads(), os.cpu_count() or 1))


@pytest.fixture(scope="session")
def cifar10() -> ImageDataset:
    if STAND_IN.exists():
        from fastcifar.data.imagefolder import load_image_folder
        return load_image_folder(STAND_IN)
    from fastcifar.data.cifar10 import load_cifar10
    try:
        return load_cifar10()
    except InputError as e:
        pytest.skip(f"real-data test: neither the stand-in {STAND_IN} nor the official "
                    f"CIFAR-10 (cached or downloadable) is available: {e}")


@pytest.fixture(scope="session")
def small_cifar10(cifar10) -> ImageDataset:
    """2,000 class-balanced training images and 1,000 test images of the real data."""
    rng = np.random.default_rng(0)
    test = rng.choice(len(cifar10.test_images), 1000, replace=False)
    subset = cifar10.with_train_subset(2000, seed=0)
    return ImageDataset(subset.name, subset.classes, subset.train_images, subset.train_labels,
                        cifar10.test_images[test], cifar10.test_labels[test])
