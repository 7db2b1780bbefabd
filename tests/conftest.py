"""Shared fixtures. Real-data tests use, in this order: the data `FASTCIFAR_TEST_DATA`
names (an image-folder archive or directory, or "cifar10"), the JPEG stand-in beside the
project (as on the development machines), the official CIFAR-10 if cached or
downloadable; else they skip, saying why."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from PIL import Image

from fastcifar.data.dataset import ImageData
from fastcifar.errors import InputError

STAND_IN = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpeg.tar.gz"
REFERENCES = Path(__file__).resolve().parents[2] / "shared" / "references"
sys.path.insert(0, str(Path(__file__).resolve().parent / "standin"))

# The suite runs on pytest-xdist's workers, one per core (pyproject.toml's addopts): each
# worker, and every process a test starts, takes one thread, so that the workers do not
# oversubscribe the cores (two on CI: 608 s this way against 927 s in one process).
if "PYTEST_XDIST_WORKER" in os.environ:
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
else:
    torch.set_num_threads(min(torch.get_num_threads(), os.cpu_count() or 1))


@pytest.fixture(scope="session")
def cifar10() -> ImageData:
    if os.environ.get("FASTCIFAR_TEST_DATA"):
        from fastcifar.data import load_dataset
        return load_dataset(os.environ["FASTCIFAR_TEST_DATA"])  # a bad path fails loudly
    if STAND_IN.exists():
        from fastcifar.data.imagefolder import load_image_folder
        return load_image_folder(STAND_IN)
    from fastcifar.data.cifar10 import load_cifar10
    try:
        return load_cifar10()
    except InputError as e:
        pytest.skip(f"real-data test: no FASTCIFAR_TEST_DATA, no stand-in at {STAND_IN}, and "
                    f"the official CIFAR-10 is neither cached nor downloadable: {e}")


@pytest.fixture(scope="session")
def small_cifar10(cifar10) -> ImageData:
    """2,000 class-balanced training images and 1,000 test images of the real data."""
    rng = np.random.default_rng(0)
    test = rng.choice(len(cifar10.test_images), 1000, replace=False)
    subset = cifar10.balanced_subset(2000, seed=0)
    return ImageData(subset.train_images, subset.train_labels, cifar10.test_images[test],
                     cifar10.test_labels[test], subset.classes, subset.name)


@pytest.fixture(scope="session")
def short_run_data(small_cifar10):
    """small_cifar10's 2,000 training images and its first 500 test images, as CPU tensors:
    the recipes' short runs (tests/test_recipes_*.py)."""
    from fastcifar.data.loader import DeviceData
    data = ImageData(small_cifar10.train_images, small_cifar10.train_labels,
                     small_cifar10.test_images[:500], small_cifar10.test_labels[:500],
                     small_cifar10.classes, small_cifar10.name)
    return DeviceData.from_dataset(data, torch.device("cpu"))


@pytest.fixture
def tiny_archive(tmp_path):
    """A .tar.gz image folder of 3 classes, 40 train and 10 test 32x32 PNGs each; each
    class has its own colour, so even a few steps can learn it."""
    return make_tiny_archive(tmp_path)


COLOURS = ("red", "green", "blue")


def make_tiny_archive(tmp_path: Path, classes: int = 3, train: int = 40, test: int = 10) -> Path:
    """A .tar.gz image folder of 32x32 PNGs, `train` and `test` of each class; each class
    has its own colour (the first three pure red, green and blue)."""
    root = tmp_path / "tiny"
    rng = np.random.default_rng(0)
    for split, n in (("train", train), ("test", test)):
        for c in range(classes):
            folder = root / split / (COLOURS[c] if classes <= 3 else f"class{c}")
            folder.mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 80, (32, 32, 3), dtype=np.uint8)
                pixels[..., c % 3] += 150 - 40 * (c // 3)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    archive = tmp_path / "tiny.tar.gz"
    with tarfile.open(archive, "w:gz") as t:
        t.add(root, arcname="tiny")
    return archive


def torchrun(nproc: int, *args, command: str = "train") -> subprocess.CompletedProcess:
    """`fastcifar COMMAND ARGS` under torchrun on `nproc` CPU processes (Gloo), one thread
    each."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc-per-node", str(nproc), "-m", "fastcifar", command,
                           *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=600)


@pytest.fixture
def server():
    """An HTTP server on 127.0.0.1 for download tests; see tests/local_server.py."""
    from local_server import LocalServer
    s = LocalServer()
    yield s
    s.close()


@pytest.fixture
def cache_dir(tmp_path, monkeypatch) -> Path:
    """The test's own cache under tmp_path, and nothing in the environment that sends a
    download elsewhere: no proxy between urllib and 127.0.0.1, no other fast.ai URL."""
    from fastcifar.data.fastai_images import BASE_URL_ENV
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.delenv(BASE_URL_ENV, raising=False)
    monkeypatch.delenv("FASTCIFAR_CIFAR10_URL", raising=False)
    path = tmp_path / "cache"
    monkeypatch.setenv("FASTCIFAR_DATA", str(path))
    return path


@pytest.fixture
def cuda_standin(monkeypatch):
    """Two stand-in CUDA GPUs on the CPU (see tests/standin/cuda_standin.py), in this
    process and in every process it starts."""
    import cuda_standin as module
    for name, value in module.environment(devices=2).items():
        if os.environ.get(name) != value:
            monkeypatch.setenv(name, value)
    standin = module.StandIn(devices=2).install()
    yield standin
    standin.uninstall()
