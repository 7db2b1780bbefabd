"""Downloads that survive broken connections, and fast.ai's Imagewoof/Imagenette archives.

The `server` fixture (tests/local_server.py) serves on 127.0.0.1 what each test builds: it
answers Range requests (206), and can be told to hang up after a number of bytes or to
ignore Range (200 with the whole file). Images are a few dozen tiny PNGs/JPEGs made with
Pillow; the cache is always under tmp_path, and nothing reaches beyond 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import io
import json
import socket
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fastcifar.data import imagefolder, load_dataset, stored_size
from fastcifar.data.dataset import ImageData
from fastcifar.data.download import download, partial_path, sha256_record_path
from fastcifar.data.fastai_images import BASE_URL_ENV, load_fastai_images
from fastcifar.data.imagefolder import load_image_folder
from fastcifar.errors import InputError
from archives import class_colour, fastai_archive
from local_server import files_under

pytestmark = pytest.mark.usefixtures("cache_dir")  # every test has its own cache

BODY = np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes()


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fetch(url: str, dest: Path, **kwargs) -> Path:
    return download(url, dest, progress=False, **kwargs)


# ---------------------------------------------------------------------------------------
# download: complete, resumed, refused


def test_download_lands_and_records_its_sha256(server, tmp_path):
    url = server.serve("/archive.tgz", BODY)
    dest = tmp_path / "d" / "archive.tgz"
    assert fetch(url, dest, record_sha256=True, resume=True) == dest
    assert dest.read_bytes() == BODY
    record = json.loads(sha256_record_path(dest).read_text())
    assert record == {"url": url, "bytes": len(BODY), "sha256": sha256_of(BODY)}
    assert files_under(tmp_path / "d") == ["archive.tgz", "archive.tgz.sha256.json"]
    # A later call checks the cached file and does not download it again.
    fetch(url, dest, record_sha256=True, resume=True)
    assert len(server.requests) == 1


def test_truncated_transfer_is_resumed_with_range(server, tmp_path):
    url = server.serve("/archive.tgz", BODY)
    dest = tmp_path / "archive.tgz"
    server.cut_next(12_000, 20_000)

    with pytest.raises(InputError) as e:
        fetch(url, dest, record_sha256=True, resume=True)
    message = str(e.value)
    assert url in message and "got 12000 bytes" in message and f"expected {len(BODY)}" in message
    assert "run again to resume" in message
    assert not dest.exists() and not sha256_record_path(dest).exists()
    assert partial_path(dest).read_bytes() == BODY[:12_000]

    with pytest.raises(InputError, match="got 32000 bytes"):
        fetch(url, dest, record_sha256=True, resume=True)
    assert partial_path(dest).read_bytes() == BODY[:32_000]

    fetch(url, dest, record_sha256=True, resume=True)
    assert [r for _, r in server.requests] == [None, "bytes=12000-", "bytes=32000-"]
    assert dest.read_bytes() == BODY
    # The digest covers the bytes from earlier attempts too.
    assert json.loads(sha256_record_path(dest).read_text())["sha256"] == sha256_of(BODY)
    assert files_under(tmp_path) == ["archive.tgz", "archive.tgz.sha256.json"]


def test_interrupted_download_keeps_what_arrived(server, tmp_path, monkeypatch):
    """Ctrl-C in the middle of a transfer is as resumable as a dropped connection."""
    from fastcifar.data import download as downloader
    url = server.serve("/archive.tgz", BODY)
    dest = tmp_path / "archive.tgz"
    server.cut_next(20_000)
    read_block = downloader._read_block
    calls = []

    def interrupted_after_one_block(*args):
        if calls:
            raise KeyboardInterrupt
        calls.append(1)
        return read_block(*args)

    monkeypatch.setattr(downloader, "_read_block", interrupted_after_one_block)
    with pytest.raises(KeyboardInterrupt):
        fetch(url, dest, resume=True)
    assert partial_path(dest).read_bytes() == BODY[:20_000] and not dest.exists()
    monkeypatch.setattr(downloader, "_read_block", read_block)
    fetch(url, dest, resume=True)
    assert server.requests[-1][1] == "bytes=20000-" and dest.read_bytes() == BODY


def test_server_ignoring_range_starts_over(server, tmp_path):
    url = server.serve("/archive.tgz", BODY)
    dest = tmp_path / "archive.tgz"
    server.cut_next(9_000)
    with pytest.raises(InputError):
        fetch(url, dest, sha256=sha256_of(BODY), resume=True)
    server.ignore_range()
    fetch(url, dest, sha256=sha256_of(BODY), resume=True)
    assert server.requests[-1] == ("/archive.tgz", "bytes=9000-")
    assert dest.read_bytes() == BODY
    assert files_under(tmp_path) == ["archive.tgz"]


def test_partial_longer_than_the_file_starts_over(server, tmp_path):
    """A leftover the server cannot continue (416) is dropped, not trusted."""
    url = server.serve("/archive.tgz", BODY)
    dest = tmp_path / "archive.tgz"
    partial_path(dest).write_bytes(b"x" * (len(BODY) + 10))
    fetch(url, dest, resume=True)
    assert [r for _, r in server.requests] == [f"bytes={len(BODY) + 10}-", None]
    assert dest.read_bytes() == BODY
    assert files_under(tmp_path) == ["archive.tgz"]


def test_without_resume_a_truncated_transfer_leaves_nothing(server, tmp_path):
    url = server.serve("/archive.tgz", BODY)
    server.cut_next(5_000)
    with pytest.raises(InputError, match="nothing was saved"):
        fetch(url, tmp_path / "archive.tgz", md5=hashlib.md5(BODY).hexdigest())
    assert files_under(tmp_path) == []


def test_wrong_expected_size_is_refused(server, tmp_path):
    url = server.serve("/archive.tgz", BODY)
    dest = tmp_path / "archive.tgz"
    with pytest.raises(InputError) as e:
        fetch(url, dest, expected_size=len(BODY) + 1, record_sha256=True, resume=True)
    assert str(len(BODY)) in str(e.value) and str(len(BODY) + 1) in str(e.value)
    assert files_under(tmp_path) == []


@pytest.mark.parametrize("algorithm", ["md5", "sha256"])
def test_wrong_checksum_is_refused(server, tmp_path, algorithm):
    url = server.serve("/archive.tgz", BODY)
    dest = tmp_path / "archive.tgz"
    wrong = "0" * len(hashlib.new(algorithm).hexdigest())
    with pytest.raises(InputError) as e:
        fetch(url, dest, record_sha256=True, resume=True, **{algorithm: wrong})
    message = str(e.value)
    assert algorithm.upper() in message and wrong in message
    assert hashlib.new(algorithm, BODY).hexdigest() in message
    assert files_under(tmp_path) == []
    fetch(url, dest, **{algorithm: hashlib.new(algorithm, BODY).hexdigest()})
    assert dest.read_bytes() == BODY


def test_corrupt_cached_file_is_caught_by_the_recorded_sha256(server, tmp_path):
    url = server.serve("/archive.tgz", BODY)
    dest = tmp_path / "archive.tgz"
    fetch(url, dest, record_sha256=True, resume=True)
    damaged = bytearray(BODY)
    damaged[30_000] ^= 0x01  # one flipped bit, same size
    dest.write_bytes(bytes(damaged))

    with pytest.raises(InputError) as e:
        fetch(url, dest, record_sha256=True, resume=True)
    message = str(e.value)
    assert "corrupt" in message and sha256_of(BODY) in message
    assert sha256_of(bytes(damaged)) in message
    assert "removed" in message and "run again" in message
    assert not dest.exists()

    fetch(url, dest, record_sha256=True, resume=True)
    assert dest.read_bytes() == BODY and len(server.requests) == 2


def test_file_placed_by_hand_is_checked_then_recorded(server, tmp_path):
    dest = tmp_path / "archive.tgz"
    dest.write_bytes(BODY[:100])
    url = server.url("/archive.tgz")
    with pytest.raises(InputError, match="delete it"):
        fetch(url, dest, expected_size=len(BODY), record_sha256=True)
    assert dest.exists()  # maybe the user's: reported, not deleted
    dest.write_bytes(BODY)
    fetch(url, dest, expected_size=len(BODY), record_sha256=True)
    assert json.loads(sha256_record_path(dest).read_text())["sha256"] == sha256_of(BODY)
    assert server.requests == []


def test_network_errors_are_input_errors(server, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}/archive.tgz"
    for url in (closed, server.url("/missing.tgz")):
        with pytest.raises(InputError, match="could not download"):
            fetch(url, tmp_path / "archive.tgz", resume=True)
    assert files_under(tmp_path) == []


# ---------------------------------------------------------------------------------------
# Resizing image folders


def png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    return buf.getvalue()


def write_files(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def bands(colours, width: int, height: int, vertical: bool = True) -> np.ndarray:
    """Equal bands of colour, left to right (or top to bottom)."""
    n = width if vertical else height
    index = np.arange(n) * len(colours) // n
    line = np.array(colours, dtype=np.uint8)[index]
    return np.broadcast_to(line[None] if vertical else line[:, None], (height, width, 3)).copy()


def test_resize_keeps_the_aspect_by_centre_crop(tmp_path):
    files = {
        "train/a/wide.png": png(bands([RED, GREEN, GREEN, BLUE], 80, 20)),
        "train/a/tall.png": png(bands([BLUE, GREEN, GREEN, RED], 20, 80, vertical=False)),
        "train/a/halves.png": png(bands([RED, BLUE], 40, 20)),
        "test/a/square.png": png(bands([RED, BLUE], 30, 30)),
    }
    ds = load_image_folder(write_files(tmp_path / "d", files), resize=8)
    halves, tall, wide = ds.train_images.astype(int)  # in file-name order
    assert ds.train_images.dtype == np.uint8 and ds.train_images.shape == (3, 8, 8, 3)
    # Only the middle of the long side survives: all green, none of the outer bands.
    assert np.abs(wide - GREEN).max() <= 2 and np.abs(tall - GREEN).max() <= 2
    # The centre square of a 2:1 image, left half red and right half blue, is still so.
    assert np.abs(halves[:, :3] - RED).max() <= 2 and np.abs(halves[:, 5:] - BLUE).max() <= 2
    assert ds.test_images.shape == (1, 8, 8, 3)


def test_resize_matches_scaling_the_shorter_side_then_cropping(tmp_path):
    y, x = np.mgrid[0:45, 0:90]
    smooth = np.stack([x * 2, y * 5, (x + y) * 2], axis=-1).astype(np.uint8)
    ds = load_image_folder(write_files(tmp_path / "d", {"train/a/0.png": png(smooth),
                                                        "test/a/0.png": png(smooth)}), resize=15)
    scaled = np.asarray(Image.fromarray(smooth).resize((30, 15), Image.Resampling.BILINEAR))
    reference = scaled[:, 7:22].astype(int)
    assert np.abs(ds.train_images[0].astype(int) - reference).max() <= 3


def test_mixed_sizes_need_an_image_size(tmp_path, cache_dir):
    rng = np.random.default_rng(0)
    files = {"train/a/0.png": png(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)),
             "train/a/1.png": png(rng.integers(0, 256, (5, 8, 3), dtype=np.uint8)),
             "test/a/0.png": png(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8))}
    root = write_files(tmp_path / "d", files)
    with pytest.raises(InputError) as e:
        load_image_folder(root)
    message = str(e.value)
    assert "differ in size" in message and "6x6" in message and "8x5" in message
    assert "image size" in message
    assert files_under(cache_dir) == []
    assert load_image_folder(root, resize=4).train_images.shape == (2, 4, 4, 3)


def test_resize_is_part_of_the_cache_key(tmp_path, monkeypatch, cache_dir):
    files = {f"{split}/a/0.png": png(bands([RED, BLUE], 12, 9)) for split in ("train", "test")}
    root = write_files(tmp_path / "d", files)
    assert load_image_folder(root, resize=4).train_images.shape[1:3] == (4, 4)
    assert load_image_folder(root, resize=6).train_images.shape[1:3] == (6, 6)
    assert len(files_under(cache_dir / "imagefolder")) == 2

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again instead of using the cache")

    monkeypatch.setattr(imagefolder, "_decode_all", no_decoding)
    assert load_image_folder(root, resize=4).train_images.shape[1:3] == (4, 4)


@pytest.mark.parametrize("bad", [0, -3, 2.5])
def test_resize_must_be_a_positive_whole_number(tmp_path, bad):
    with pytest.raises(InputError, match="positive number of pixels"):
        load_image_folder(tmp_path, resize=bad)


# ---------------------------------------------------------------------------------------
# Imagewoof and Imagenette


def test_stored_size_leaves_room_for_the_evaluation_crop():
    assert stored_size(224) == 256  # ImageNet's Resize(256) + CenterCrop(224)
    assert stored_size(128) == 147
    assert stored_size(64) == 74
    assert all(round(stored_size(s) * 0.875) >= s for s in range(8, 300))


def test_load_dataset_imagewoof(server, cache_dir, monkeypatch):
    archive = fastai_archive()
    server.serve("/imagewoof2-160.tgz", archive)
    monkeypatch.setenv(BASE_URL_ENV, server.url("/"))

    ds = load_dataset("imagewoof", size="160", resize=stored_size(14))
    assert ds.name == "imagewoof2-160"
    assert ds.classes == ("Shih-Tzu", "Rhodesian ridgeback", "beagle", "English foxhound",
                          "Border terrier", "Australian terrier", "golden retriever",
                          "Old English sheepdog", "Samoyed", "dingo")
    assert ds.train_images.dtype == np.uint8 and ds.train_images.shape == (20, 16, 16, 3)
    assert ds.test_images.shape == (10, 16, 16, 3)
    np.testing.assert_array_equal(ds.train_labels, np.repeat(np.arange(10), 2))
    np.testing.assert_array_equal(ds.test_labels, np.arange(10))
    for images, labels in ((ds.train_images, ds.train_labels), (ds.test_images, ds.test_labels)):
        for image, label in zip(images.astype(int), labels):
            assert np.abs(image - class_colour(label)).max() <= 4  # each image under its class

    downloaded = cache_dir / "downloads" / "imagewoof2-160.tgz"
    assert downloaded.read_bytes() == archive
    assert json.loads(sha256_record_path(downloaded).read_text())["sha256"] == sha256_of(archive)

    # Later loads: no download, no decode.
    monkeypatch.setattr(imagefolder, "_decode_all", lambda *a, **k: pytest.fail("decoded again"))
    again = load_dataset("imagewoof", size="160", resize=16)
    np.testing.assert_array_equal(again.train_images, ds.train_images)
    assert again.classes == ds.classes and len(server.requests) == 1


def test_imagenette_resumes_after_a_broken_download(server, cache_dir):
    archive = fastai_archive("imagenette", "imagenette2-320", {"train": 1, "val": 1})
    server.serve("/imagenette2-320.tgz", archive)
    server.cut_next(len(archive) // 3)
    with pytest.raises(InputError) as e:
        load_fastai_images("imagenette", "320", resize=10, base_url=server.url())
    assert "run again to resume" in str(e.value) and "FASTCIFAR_FASTAI_URL" in str(e.value)
    assert not (cache_dir / "downloads" / "imagenette2-320.tgz").exists()

    ds = load_fastai_images("imagenette", "320", resize=10, base_url=server.url())
    assert server.requests[-1][1] == f"bytes={len(archive) // 3}-"
    assert ds.classes[0] == "tench" and ds.classes[-1] == "parachute"
    assert ds.train_images.shape == (10, 10, 10, 3) and ds.test_images.shape == (10, 10, 10, 3)


def test_official_archives_are_checked_against_their_published_size(server, monkeypatch):
    """fast.ai's own URL carries a known size; pretend the test server is that URL."""
    from fastcifar.data import fastai_images
    server.serve("/imagewoof2-160.tgz", fastai_archive())
    monkeypatch.setattr(fastai_images, "BASE_URL", server.url())
    with pytest.raises(InputError, match="expected 92612825"):
        load_fastai_images("imagewoof", "160")


@pytest.mark.parametrize("name, size, match", [("imagewolf", "160", "unknown dataset"),
                                               ("imagewoof", "224", "--size")])
def test_unknown_names_and_sizes(name, size, match):
    with pytest.raises(InputError, match=match):
        load_fastai_images(name, size)


def test_cifar10_is_resized_only_when_asked_for_another_size(monkeypatch):
    from fastcifar.data import cifar10
    images = np.zeros((4, 32, 32, 3), np.uint8)
    small = ImageData(images, np.arange(4) % 2, images, np.arange(4) % 2, name="CIFAR-10")
    monkeypatch.setattr(cifar10, "load_cifar10", lambda: small)
    assert load_dataset("cifar10", resize=32, say=pytest.fail) is small
    said = []
    assert load_dataset("cifar10", resize=40, say=said.append).train_images.shape == (4, 40, 40, 3)
    assert "upscales each 1.2x" in said[0] and "40x40" in said[0]
