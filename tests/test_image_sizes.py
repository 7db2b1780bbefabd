"""Images of any size, for every recipe: a folder whose images differ in size or mode
(grayscale, RGBA) is made one square RGB size, with a note; `image_size` is a hyperparameter
of every recipe; what a large or upscaled dataset will cost is said (or refused) first."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

import fastcifar
from fastcifar.data import imagefolder, load_dataset, memory
from fastcifar.data.dataset import ImageData, square_resize
from fastcifar.errors import InputError
from fastcifar.recipes import RECIPES, get_recipe

SPEED_RUNS = [name for name, r in RECIPES.items() if r.config.crop_size() == 0 and
              r.config.stored_side() == 32]


def png(pixels: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels, mode).save(buf, "PNG")
    return buf.getvalue()


def mixed_zip(path, per_class: int = 8):
    """RGB, grayscale and RGBA PNGs of 32x32 and 33x32 (width x height), two classes whose
    images differ in brightness (class 1 bright, class 0 dark)."""
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(path, "w") as z:
        for split in ("train", "test"):
            for label in (0, 1):
                for i in range(per_class):
                    base = 40 + 170 * label
                    h, w = (32, 33) if i % 2 else (32, 32)
                    rgb = np.clip(base + rng.integers(-30, 30, (h, w, 3)), 0, 255).astype(np.uint8)
                    if i % 3 == 1:
                        data = png(rgb[..., 0])  # grayscale
                    elif i % 3 == 2:
                        data = png(np.dstack([rgb, np.full((h, w), 255, np.uint8)]))  # RGBA
                    else:
                        data = png(rgb)
                    z.writestr(f"{split}/c{label}/{i}.png", data)
    return path


@pytest.mark.parametrize("name", SPEED_RUNS)
def test_every_speed_run_network_takes_any_image_size(name):
    recipe = get_recipe(name)
    model = recipe.build_model(recipe.config, 10).eval()
    for side in (16, 32, 40):
        assert model(torch.randn(2, 3, side, side)).shape == (2, 10)


def test_the_global_max_is_the_reference_pool_at_32_pixels():
    """airbench's MaxPool2d(3) over the 3x3 map, Page's MaxPool2d(4) over the 4x4 map."""
    for side, pool in ((3, torch.nn.MaxPool2d(3)), (4, torch.nn.MaxPool2d(4))):
        x = torch.randn(5, 7, side, side)
        assert torch.equal(torch.nn.AdaptiveMaxPool2d(1)(x), pool(x))


def test_a_mixed_folder_becomes_one_rgb_size_with_a_note(tmp_path, cache_dir):
    said = []
    ds = load_dataset(mixed_zip(tmp_path / "mixed.zip"), resize=32, say=said.append)
    assert ds.train_images.shape == (16, 32, 32, 3) and ds.test_images.shape == (16, 32, 32, 3)
    assert ds.train_images.dtype == np.uint8
    # Grayscale became three equal channels; the classes still differ in brightness.
    assert (ds.train_labels == 1).sum() == 8
    bright = ds.train_images[ds.train_labels == 1].mean()
    dark = ds.train_images[ds.train_labels == 0].mean()
    assert bright > dark + 100
    notes = [s for s in said if "were not 32x32" in s]
    assert len(notes) == 1 and "16 of the 32 images" in notes[0]


def test_without_an_image_size_a_mixed_folder_is_refused_naming_the_cure(tmp_path, cache_dir):
    with pytest.raises(InputError, match="differ in size.*--image-size"):
        load_dataset(mixed_zip(tmp_path / "mixed.zip"))


def test_a_speed_run_trains_on_a_mixed_folder_and_at_another_size(tmp_path, cache_dir):
    data = mixed_zip(tmp_path / "mixed.zip", per_class=16)
    for image_size in (32, 24):
        result = fastcifar.train("airbench94", data=data, epochs=1, batch_size=8,
                                 image_size=image_size, device="cpu", progress=False,
                                 verbose=False, out=tmp_path / f"run{image_size}")
        assert 0 <= result.accuracy.mean <= 1
        saved = fastcifar.load_model(tmp_path / f"run{image_size}")
        assert saved(torch.randn(1, 3, image_size, image_size)).shape == (1, 2)


def test_folders_already_at_the_size_share_the_as_stored_cache(tmp_path, cache_dir, monkeypatch):
    root = tmp_path / "d"
    for split in ("train", "test"):
        (root / split / "a").mkdir(parents=True)
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / split / "a" / "0.png")
    first = load_dataset(root)
    monkeypatch.setattr(imagefolder, "_decode_all", lambda *a, **k: pytest.fail("decoded again"))
    assert np.array_equal(load_dataset(root, resize=8).train_images, first.train_images)


def test_upscaling_says_what_it_costs_first_and_refuses_what_cannot_fit(tmp_path, cache_dir,
                                                                        monkeypatch):
    data = mixed_zip(tmp_path / "mixed.zip")
    said = []
    load_dataset(data, resize=64, say=said.append)
    assert "upscales each 2.0x" in said[0] and "in memory and in the cache" in said[0]
    assert "--image-size 32" in said[0]

    monkeypatch.setattr(memory, "available_bytes", lambda device="cpu": 10_000)
    monkeypatch.setattr(imagefolder, "_decode_all", lambda *a, **k: pytest.fail("decoded anyway"))
    with pytest.raises(InputError, match=r"at 96x96 needs .* MB but cpu has .* free"):
        load_dataset(data, resize=96)


def test_an_in_memory_dataset_is_resized_to_the_recipe_size(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (40, 28, 28, 3), dtype=np.uint8)
    data = ImageData(images, np.arange(40) % 2, images[:10], np.arange(10) % 2)
    said = []
    resized = data.resized(32, said.append)
    assert resized.train_images.shape == (40, 32, 32, 3) and "upscales each 1.1x" in said[0]
    assert data.resized(28) is data


def test_square_resize_keeps_the_centre_square():
    # A 2:1 image: red left quarter, green middle half, blue right quarter.
    image = np.zeros((8, 16, 3), np.uint8)
    image[:, :4], image[:, 4:12], image[:, 12:] = (255, 0, 0), (0, 255, 0), (0, 0, 255)
    out = square_resize(image[None], 4)[0].astype(int)
    assert out.shape == (4, 4, 3) and np.abs(out - (0, 255, 0)).max() <= 1


def test_image_size_is_a_checked_hyperparameter_of_every_recipe():
    for recipe in RECIPES.values():
        assert "image_size" in {f for f in recipe.config.__dataclass_fields__}
    with pytest.raises(InputError, match="at least 16"):
        fastcifar.train("airbench94", image_size=8, device="cpu", out=None)


def test_a_bad_image_stops_the_decode_without_decoding_the_rest(tmp_path, cache_dir, monkeypatch):
    """The same path as Ctrl-C: the images not yet started are dropped, not decoded first."""
    import time
    root = tmp_path / "d"
    for split in ("train", "test"):
        (root / split / "a").mkdir(parents=True)
    good = png(np.zeros((8, 8, 3), np.uint8))
    (root / "train" / "a" / "000.png").write_bytes(good)
    (root / "train" / "a" / "001.png").write_bytes(b"broken")
    for i in range(2, 300):
        (root / "train" / "a" / f"{i:03}.png").write_bytes(good)
    (root / "test" / "a" / "0.png").write_bytes(good)
    calls = []
    decode = imagefolder.decode_image

    def slow_decode(data, resize):
        calls.append(1)
        time.sleep(0.01)
        return decode(data, resize)

    monkeypatch.setattr(imagefolder, "decode_image", slow_decode)
    with pytest.raises(InputError, match=r"image \S*001.png: not an image Pillow can decode$"):
        load_dataset(root)
    assert len(calls) < 100
