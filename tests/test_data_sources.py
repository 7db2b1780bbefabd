"""Data sources: the CIFAR-10 download and parse, the cache, image folders, subsets.

Every test makes its own data: a tiny fake CIFAR-10 python archive served on 127.0.0.1 by
the `server` fixture (tests/local_server.py), and image folders/archives of a few dozen
tiny images made with Pillow.
Nothing touches the network beyond 127.0.0.1, and the cache is always under tmp_path.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import io
import os
import pickle
import re
import shutil
import socket
import tarfile
import tempfile
import time
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fastcifar.data import cache, cifar10, imagefolder, load_dataset
from fastcifar.data.cifar10 import load_cifar10
from fastcifar.data.dataset import ImageData
from fastcifar.data.imagefolder import load_image_folder
from fastcifar.errors import CacheNotWritten, InputError
from local_server import files_under

pytestmark = pytest.mark.usefixtures("cache_dir")  # every test has its own cache

CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
           "dog", "frog", "horse", "ship", "truck")


def partials(directory: Path) -> list[str]:
    return [name for name in files_under(directory) if name.endswith(".part")]


def md5_of(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


@pytest.fixture
def closed_port_url() -> str:
    """A URL on 127.0.0.1 that refuses connections."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/cifar-10-python.tar.gz"


# ---------------------------------------------------------------------------------------
# A fake CIFAR-10 python archive


def make_cifar_batches(per_batch: int = 3, n_test: int = 4, seed: int = 0) -> dict[str, dict]:
    """The pickled dicts of a tiny CIFAR-10, keyed by member name."""
    rng = np.random.default_rng(seed)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        n = n_test if name == "test_batch" else per_batch
        batches[name] = {
            b"batch_label": f"fake {name}".encode(),
            b"labels": [int(x) for x in rng.integers(0, 10, n)],
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            b"filenames": [f"img{i}.png".encode() for i in range(n)],
        }
    batches["batches.meta"] = {b"label_names": [c.encode() for c in CLASSES],
                               b"num_cases_per_batch": per_batch, b"num_vis": 3072}
    return batches


def py2_pickle(d: dict) -> bytes:
    """`d` pickled the way Python 2's cPickle wrote the real batches (protocol 2): str as
    BINSTRING, arrays through numpy.core.multiarray._reconstruct with a bytes dtype state.
    Values may be bytes, ints, lists of those, or 2-D uint8 arrays."""
    out = [b"\x80\x02}("]

    def string(b: bytes):
        out.append(b"T" + len(b).to_bytes(4, "little") + b)

    def integer(i: int):
        out.append(b"J" + i.to_bytes(4, "little", signed=True))

    def value(v):
        if isinstance(v, bytes):
            string(v)
        elif isinstance(v, int):
            integer(v)
        elif isinstance(v, list):
            out.append(b"](")
            for item in v:
                value(item)
            out.append(b"e")
        else:
            assert isinstance(v, np.ndarray) and v.dtype == np.uint8 and v.ndim == 2
            out.append(b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85")
            string(b"b")
            out.append(b"\x87R(K\x01")
            integer(v.shape[0]), integer(v.shape[1])
            out.append(b"\x86cnumpy\ndtype\n")
            string(b"u1")
            out.append(b"\x89\x88\x87R(K\x03")
            string(b"|")
            out.append(b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89")
            string(np.ascontiguousarray(v).tobytes())
            out.append(b"tb")

    for k, v in d.items():
        value(k)
        value(v)
    out.append(b"u.")
    return b"".join(out)


def test_py2_pickle_helper_round_trips():
    d = make_cifar_batches()["data_batch_1"]
    back = pickle.loads(py2_pickle(d), encoding="bytes")
    assert back.keys() == d.keys() and back[b"labels"] == d[b"labels"]
    np.testing.assert_array_equal(back[b"data"], d[b"data"])


def cifar_archive_bytes(batches: dict[str, dict], order: list[str] | None = None,
                        dumps=lambda d: pickle.dumps(d, protocol=2)) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        members = {"readme.html": b"<html>fake</html>"}
        members.update({name: dumps(d) for name, d in batches.items()})
        for name in order or list(members):
            data = members[name]
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def expected_split(batches: dict[str, dict], names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Images built pixel by pixel from the 3072-byte rows: 1024 red, 1024 green, 1024 blue,
    each a row-major 32x32 plane."""
    rows = np.concatenate([batches[n][b"data"] for n in names])
    images = np.zeros((len(rows), 32, 32, 3), dtype=np.uint8)
    for i, row in enumerate(rows):
        for c in range(3):
            images[i, :, :, c] = row[c * 1024:(c + 1) * 1024].reshape(32, 32)
    labels = np.array([l for n in names for l in batches[n][b"labels"]], dtype=np.int64)
    return images, labels


TRAIN_NAMES = [f"data_batch_{i}" for i in range(1, 6)]


def check_cifar(ds: ImageData, batches: dict[str, dict]) -> None:
    assert ds.name == "cifar10"
    assert ds.classes == CLASSES
    train_images, train_labels = expected_split(batches, TRAIN_NAMES)
    test_images, test_labels = expected_split(batches, ["test_batch"])
    assert ds.train_images.dtype == np.uint8 and ds.train_images.shape == (15, 32, 32, 3)
    assert ds.test_images.shape == (4, 32, 32, 3)
    assert ds.train_labels.dtype == np.int64 and ds.test_labels.dtype == np.int64
    np.testing.assert_array_equal(ds.train_images, train_images)
    np.testing.assert_array_equal(ds.train_labels, train_labels)
    np.testing.assert_array_equal(ds.test_images, test_images)
    np.testing.assert_array_equal(ds.test_labels, test_labels)
    # One pixel by hand: image 0 of batch 2, row 5, column 7, green.
    row = batches["data_batch_2"][b"data"][0]
    assert ds.train_images[3, 5, 7, 1] == row[1024 + 5 * 32 + 7]


# ---------------------------------------------------------------------------------------
# cache_root


def test_cache_root_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("FASTCIFAR_DATA", str(tmp_path / "explicit"))
    assert cache.cache_root() == tmp_path / "explicit"
    monkeypatch.delenv("FASTCIFAR_DATA")
    assert cache.cache_root() == tmp_path / "xdg" / "fastcifar"
    monkeypatch.setenv("XDG_CACHE_HOME", "")  # empty counts as unset
    assert cache.cache_root() == tmp_path / "home" / ".cache" / "fastcifar"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache.cache_root() == tmp_path / "home" / ".cache" / "fastcifar"
    monkeypatch.setenv("FASTCIFAR_DATA", "~/data")
    assert cache.cache_root() == tmp_path / "home" / "data"


# ---------------------------------------------------------------------------------------
# CIFAR-10


def test_cifar10_constants():
    assert cifar10.URL == "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
    assert cifar10.MD5 == "c58f30108f718f92721af3b95e74349a"
    assert cifar10.SIZE == 170498071


def test_cifar10_download_parse_then_cache(server, cache_dir, closed_port_url):
    batches = make_cifar_batches()
    # Members in a shuffled order: the train batches must still come out 1..5.
    archive = cifar_archive_bytes(batches, order=["test_batch", "data_batch_3", "batches.meta",
                                                  "data_batch_5", "readme.html", "data_batch_1",
                                                  "data_batch_4", "data_batch_2"])
    url = server.serve("/cifar-10-python.tar.gz", archive)

    ds = load_cifar10(url=url, md5=md5_of(archive))  # root from $FASTCIFAR_DATA
    check_cifar(ds, batches)
    assert server.requests == [("/cifar-10-python.tar.gz", None)]
    assert files_under(cache_dir) == ["cifar-10-python.tar.gz", "cifar10.npz"]
    assert (cache_dir / "cifar-10-python.tar.gz").read_bytes() == archive

    # Second load: from the npz alone, no archive and no network needed.
    (cache_dir / "cifar-10-python.tar.gz").unlink()
    start = time.perf_counter()
    again = load_cifar10(url=closed_port_url, md5=md5_of(archive))
    assert time.perf_counter() - start < 1.0
    check_cifar(again, batches)
    assert server.requests == [("/cifar-10-python.tar.gz", None)]

    # load_dataset's default source is the same cache.
    check_cifar(load_dataset(None), batches)
    check_cifar(load_dataset("cifar10"), batches)


def test_cifar10_python2_pickles(cache_dir, closed_port_url):
    """The real archive's batches were written by Python 2; they must parse the same way."""
    batches = make_cifar_batches(seed=4)
    archive = cifar_archive_bytes(batches, dumps=py2_pickle)
    assert b"numpy.core.multiarray" in gzip.decompress(archive)
    cache_dir.mkdir()
    (cache_dir / "cifar-10-python.tar.gz").write_bytes(archive)
    check_cifar(load_cifar10(url=closed_port_url, md5=md5_of(archive)), batches)


def test_cifar10_explicit_root(server, tmp_path, cache_dir):
    batches = make_cifar_batches(seed=1)
    archive = cifar_archive_bytes(batches)
    root = tmp_path / "elsewhere"
    check_cifar(load_cifar10(root, url=server.serve("/a.tgz", archive), md5=md5_of(archive)), batches)
    assert files_under(root) == ["cifar-10-python.tar.gz", "cifar10.npz"]
    assert files_under(cache_dir) == []


def test_cifar10_download_md5_mismatch(server, cache_dir):
    archive = cifar_archive_bytes(make_cifar_batches())
    url = server.serve("/cifar-10-python.tar.gz", archive)
    with pytest.raises(InputError) as e:
        load_cifar10(url=url, md5="0" * 32)
    message = str(e.value)
    assert "MD5" in message and md5_of(archive) in message and "0" * 32 in message
    assert files_under(cache_dir) == []


def test_cifar10_truncated_transfer_is_resumed(server, cache_dir):
    """170 MB is a lot to download twice: the bytes that arrived before the connection
    broke are kept beside the archive, and the next attempt asks only for the rest."""
    batches = make_cifar_batches()
    archive = cifar_archive_bytes(batches)
    url = server.serve("/cifar-10-python.tar.gz", archive)
    half = len(archive) // 2
    server.cut_next(half)
    with pytest.raises(InputError) as e:
        load_cifar10(url=url, md5=md5_of(archive))
    assert "download failed" in str(e.value) and "run again to resume" in str(e.value)
    assert files_under(cache_dir) == ["cifar-10-python.tar.gz.partial"]

    check_cifar(load_cifar10(url=url, md5=md5_of(archive)), batches)
    assert [asked for _, asked in server.requests] == [None, f"bytes={half}-"]
    assert (cache_dir / "cifar-10-python.tar.gz").read_bytes() == archive
    assert files_under(cache_dir) == ["cifar-10-python.tar.gz", "cifar10.npz"]


def test_cifar10_resumed_download_is_checked_whole(server, cache_dir):
    """The MD5 covers the kept bytes too: if the file changed on the server between two
    attempts, the archive stitched together from both is refused, and nothing is kept."""
    archive = cifar_archive_bytes(make_cifar_batches(seed=0))
    url = server.serve("/cifar-10-python.tar.gz", archive)
    server.cut_next(len(archive) // 2)
    with pytest.raises(InputError, match="run again to resume"):
        load_cifar10(url=url, md5=md5_of(archive))
    server.serve("/cifar-10-python.tar.gz", cifar_archive_bytes(make_cifar_batches(seed=5)))
    with pytest.raises(InputError) as e:
        load_cifar10(url=url, md5=md5_of(archive))
    assert server.requests[-1][1] == f"bytes={len(archive) // 2}-"
    assert "MD5" in str(e.value) and md5_of(archive) in str(e.value)
    assert files_under(cache_dir) == []


def test_cifar10_truncated_chunked_transfer(server, cache_dir):
    """Without a Content-Length, the chunk sizes tell that the transfer broke off."""
    batches = make_cifar_batches()
    archive = cifar_archive_bytes(batches)
    url = server.serve("/cifar-10-python.tar.gz", archive, chunked=True)
    server.cut_next(len(archive) // 2)
    with pytest.raises(InputError, match="download failed"):
        load_cifar10(url=url, md5=md5_of(archive))
    # A read that the break cuts short loses its bytes, so a small archive may keep none.
    assert set(files_under(cache_dir)) <= {"cifar-10-python.tar.gz.partial"}
    check_cifar(load_cifar10(url=url, md5=md5_of(archive)), batches)
    assert files_under(cache_dir) == ["cifar-10-python.tar.gz", "cifar10.npz"]


def test_cifar10_offline_says_what_to_do(cache_dir, closed_port_url):
    with pytest.raises(InputError) as e:
        load_cifar10(url=closed_port_url)
    message = str(e.value)
    assert "download failed" in message
    assert str(cache_dir / "cifar-10-python.tar.gz") in message
    assert "--data" in message
    assert cifar10.MD5 in message
    assert files_under(cache_dir) == []
    assert e.value.exit_code == 2


def test_cifar10_http_error(server, cache_dir):
    with pytest.raises(InputError, match="download failed"):
        load_cifar10(url=server.url("/missing"))  # answered with 404
    assert files_under(cache_dir) == []


def test_cifar10_no_download(cache_dir):
    with pytest.raises(InputError) as e:
        load_cifar10(download=False)
    assert str(cache_dir / "cifar-10-python.tar.gz") in str(e.value)
    assert "--data" in str(e.value)
    assert files_under(cache_dir) == []


def test_cifar10_archive_placed_by_hand(cache_dir, closed_port_url):
    batches = make_cifar_batches(seed=2)
    archive = cifar_archive_bytes(batches)
    cache_dir.mkdir()
    (cache_dir / "cifar-10-python.tar.gz").write_bytes(archive)
    check_cifar(load_cifar10(url=closed_port_url, md5=md5_of(archive), download=False), batches)
    assert files_under(cache_dir) == ["cifar-10-python.tar.gz", "cifar10.npz"]


def test_cifar10_archive_by_hand_with_wrong_md5_is_kept(cache_dir, closed_port_url):
    archive = cifar_archive_bytes(make_cifar_batches())
    path = cache_dir / "cifar-10-python.tar.gz"
    cache_dir.mkdir()
    path.write_bytes(archive)
    with pytest.raises(InputError) as e:
        load_cifar10(url=closed_port_url)  # expects the real MD5
    message = str(e.value)
    assert str(path) in message and md5_of(archive) in message and cifar10.MD5 in message
    # The user's file is reported, not deleted; no cache entry is made from it.
    assert files_under(cache_dir) == ["cifar-10-python.tar.gz"]


def test_cifar10_archive_missing_a_batch(cache_dir, closed_port_url):
    batches = make_cifar_batches()
    del batches["test_batch"]
    archive = cifar_archive_bytes(batches)
    cache_dir.mkdir()
    (cache_dir / "cifar-10-python.tar.gz").write_bytes(archive)
    with pytest.raises(InputError, match="test_batch"):
        load_cifar10(url=closed_port_url, md5=md5_of(archive))
    assert files_under(cache_dir) == ["cifar-10-python.tar.gz"]


def test_cifar10_truncated_archive(cache_dir, closed_port_url):
    archive = cifar_archive_bytes(make_cifar_batches())
    cut = archive[:len(archive) // 2]
    cache_dir.mkdir()
    (cache_dir / "cifar-10-python.tar.gz").write_bytes(cut)
    with pytest.raises(InputError, match="corrupt or truncated"):
        load_cifar10(url=closed_port_url, md5=md5_of(cut))
    assert files_under(cache_dir) == ["cifar-10-python.tar.gz"]


def test_cifar10_not_a_gzip(cache_dir, closed_port_url):
    junk = b"this is not an archive" * 10
    cache_dir.mkdir()
    (cache_dir / "cifar-10-python.tar.gz").write_bytes(junk)
    with pytest.raises(InputError, match="corrupt or truncated"):
        load_cifar10(url=closed_port_url, md5=md5_of(junk))


def test_cifar10_bad_batch_contents(cache_dir, closed_port_url):
    batches = make_cifar_batches()
    batches["data_batch_4"][b"data"] = batches["data_batch_4"][b"data"][:, :100]
    archive = cifar_archive_bytes(batches)
    cache_dir.mkdir()
    (cache_dir / "cifar-10-python.tar.gz").write_bytes(archive)
    with pytest.raises(InputError, match="not in the CIFAR-10 python format"):
        load_cifar10(url=closed_port_url, md5=md5_of(archive))


def test_cifar10_pickle_may_only_hold_arrays(cache_dir, closed_port_url):
    batches = make_cifar_batches()
    batches["data_batch_1"][b"extra"] = OrderedDict(a=1)  # a global the unpickler refuses
    archive = cifar_archive_bytes(batches)
    cache_dir.mkdir()
    (cache_dir / "cifar-10-python.tar.gz").write_bytes(archive)
    with pytest.raises(InputError, match="collections.OrderedDict"):
        load_cifar10(url=closed_port_url, md5=md5_of(archive))


@pytest.mark.parametrize("damage", ["garbage", "cut", "flipped", "missing key"])
def test_cifar10_damaged_npz_is_rebuilt(cache_dir, closed_port_url, damage):
    batches = make_cifar_batches(seed=3)
    archive = cifar_archive_bytes(batches)
    cache_dir.mkdir()
    (cache_dir / "cifar-10-python.tar.gz").write_bytes(archive)
    npz = cache_dir / "cifar10.npz"
    load_cifar10(url=closed_port_url, md5=md5_of(archive))
    good = npz.read_bytes()
    if damage == "garbage":
        npz.write_bytes(b"PK\x03\x04 not really a zip")
    elif damage == "cut":
        npz.write_bytes(good[:len(good) // 2])
    elif damage == "flipped":
        npz.write_bytes(good[:2000] + bytes(b ^ 0xFF for b in good[2000:2100]) + good[2100:])
    else:
        cache.save_arrays(npz, classes=np.array(CLASSES))
    check_cifar(load_cifar10(url=closed_port_url, md5=md5_of(archive)), batches)
    check_cifar(load_cifar10(url=closed_port_url, md5=md5_of(archive)), batches)
    assert files_under(cache_dir) == ["cifar-10-python.tar.gz", "cifar10.npz"]


# ---------------------------------------------------------------------------------------
# Image folders

IF_CLASSES = ("cat", "dog", "frog")


def make_image(label: int, index: int, split: str) -> tuple[np.ndarray, str, bytes]:
    """A 6x6 image: PNG noise (exact) for even indices, a flat JPEG colour for odd ones."""
    rng = np.random.default_rng([label, index, split == "train"])
    buf = io.BytesIO()
    if index % 2 == 0:
        pixels = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(buf, "PNG")
        ext = "png"
    else:
        pixels = np.broadcast_to(rng.integers(0, 256, 3, dtype=np.uint8), (6, 6, 3)).copy()
        Image.fromarray(pixels).save(buf, "JPEG", quality=95)
        ext = "jpg"
    return pixels, ext, buf.getvalue()


def image_files(n_train: int = 5, n_test: int = 3, test_name: str = "test",
                classes: dict[str, tuple[str, ...]] | None = None):
    """{relative path: bytes} and the expected arrays in load order."""
    classes = classes or {"train": IF_CLASSES, test_name: IF_CLASSES}
    files, expected = {}, {}
    for split, n in (("train", n_train), (test_name, n_test)):
        images, labels, exact = [], [], []
        for label, c in enumerate(classes[split]):
            for i in range(n):
                pixels, ext, data = make_image(label, i, split)
                files[f"{split}/{c}/{i:02d}.{ext}"] = data
                images.append(pixels)
                labels.append(label)
                exact.append(ext == "png")
        key = "train" if split == "train" else "test"
        expected[f"{key}_images"] = np.stack(images)
        expected[f"{key}_labels"] = np.array(labels, dtype=np.int64)
        expected[f"{key}_exact"] = np.array(exact)
    return files, expected


def write_dir(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def write_tar(path: Path, files: dict[str, bytes], prefix: str = "") -> Path:
    with tarfile.open(path, "w:gz" if path.name.endswith(("gz", "tgz")) else "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(prefix + name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def write_zip(path: Path, files: dict[str, bytes], prefix: str = "") -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            z.writestr(prefix + name, data)
    return path


def check_images(ds: ImageData, expected: dict[str, np.ndarray]) -> None:
    assert ds.classes == IF_CLASSES
    for split in ("train", "test"):
        images, want = getattr(ds, f"{split}_images"), expected[f"{split}_images"]
        assert images.dtype == np.uint8 and images.shape == want.shape
        np.testing.assert_array_equal(getattr(ds, f"{split}_labels"), expected[f"{split}_labels"])
        # PNGs decode exactly; flat-colour JPEGs to within a few levels.
        exact = expected[f"{split}_exact"]
        np.testing.assert_array_equal(images[exact], want[exact])
        assert np.abs(images.astype(int) - want.astype(int)).max() <= 3


def test_image_folder_sources_agree(tmp_path, cache_dir):
    files, expected = image_files()
    sources = [
        write_dir(tmp_path / "plain", files),
        write_dir(tmp_path / "outer", {f"inner/{n}": d for n, d in files.items()}),
        write_tar(tmp_path / "data.tar.gz", files),
        write_tar(tmp_path / "data.tgz", files, prefix="./"),
        write_tar(tmp_path / "data.tar", files, prefix="cifar-like/"),
        write_tar(tmp_path / "nested.tar.gz", files, prefix="top/"),
        write_zip(tmp_path / "data.zip", files),
        write_zip(tmp_path / "nested.zip", files, prefix="top/"),
    ]
    loaded = [load_image_folder(s) for s in sources]
    for ds in loaded:
        check_images(ds, expected)
        for key in ("train_images", "train_labels", "test_images", "test_labels"):
            np.testing.assert_array_equal(getattr(ds, key), getattr(loaded[0], key))
    assert loaded[2].name == "data.tar.gz"
    assert len(files_under(cache_dir / "imagefolder")) == len(sources)
    assert partials(cache_dir) == []


def test_image_folder_via_load_dataset(tmp_path):
    files, expected = image_files()
    check_images(load_dataset(str(write_zip(tmp_path / "d.zip", files))), expected)


def test_image_folder_val_split(tmp_path):
    files, expected = image_files(test_name="val")
    check_images(load_image_folder(write_dir(tmp_path / "d", files)), expected)
    check_images(load_image_folder(write_tar(tmp_path / "d.tar.gz", files, prefix="x/")), expected)


def test_image_folder_missing_test_split(tmp_path, cache_dir):
    files, _ = image_files()
    train_only = {n: d for n, d in files.items() if n.startswith("train/")}
    with pytest.raises(InputError, match=r"test/ \(or val/\)"):
        load_image_folder(write_zip(tmp_path / "d.zip", train_only))
    assert files_under(cache_dir) == []


def test_image_folder_class_mismatch(tmp_path, cache_dir):
    files, _ = image_files(classes={"train": ("cat", "dog", "frog"), "test": ("bird", "cat", "dog")})
    with pytest.raises(InputError) as e:
        load_image_folder(write_dir(tmp_path / "d", files))
    assert "frog" in str(e.value) and "bird" in str(e.value)
    assert files_under(cache_dir) == []


def test_image_folder_truncated_tar(tmp_path, cache_dir):
    files, _ = image_files()
    whole = write_tar(tmp_path / "whole.tar.gz", files).read_bytes()
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(whole[:len(whole) // 2])
    with pytest.raises(InputError, match="corrupt or truncated"):
        load_image_folder(cut)
    assert files_under(cache_dir) == []


def test_image_folder_truncated_zip(tmp_path, cache_dir):
    files, _ = image_files()
    whole = write_zip(tmp_path / "whole.zip", files).read_bytes()
    cut = tmp_path / "cut.zip"
    cut.write_bytes(whole[:len(whole) // 2])
    with pytest.raises(InputError, match="corrupt or truncated"):
        load_image_folder(cut)
    assert files_under(cache_dir) == []


def test_image_folder_corrupt_deflate_stream(tmp_path, cache_dir):
    """Damage inside a member's compressed data makes zipfile raise zlib.error."""
    files, _ = image_files()
    path = write_zip(tmp_path / "d.zip", files)
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        offset = z.infolist()[0].header_offset
    name_len = int.from_bytes(data[offset + 26:offset + 28], "little")
    extra_len = int.from_bytes(data[offset + 28:offset + 30], "little")
    data[offset + 30 + name_len + extra_len] = 0xFF  # final block of the reserved type 3
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match="corrupt or truncated"):
        load_image_folder(path)
    assert files_under(cache_dir) == []


def test_image_folder_wrong_path(tmp_path):
    with pytest.raises(InputError, match="no such file or directory"):
        load_image_folder(tmp_path / "nowhere.tar.gz")


def test_image_folder_not_an_archive(tmp_path, cache_dir):
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    with pytest.raises(InputError, match="not a directory"):
        load_image_folder(notes)
    for fake in tmp_path / "fake.zip", tmp_path / "fake.tar.gz":
        fake.write_bytes(b"not an archive at all" * 20)
        with pytest.raises(InputError, match=r"fake\.\S+: not an archive \(neither tar") as e:
            load_image_folder(fake)
        assert "\n" not in str(e.value), "one line"
    assert files_under(cache_dir) == []


def test_image_folder_no_images(tmp_path):
    (tmp_path / "empty" / "train").mkdir(parents=True)
    with pytest.raises(InputError, match="no .jpg/.jpeg/.png images"):
        load_image_folder(tmp_path / "empty")


def test_image_folder_undecodable_image(tmp_path, cache_dir):
    files, _ = image_files()
    files["train/dog/00.png"] = b"\x89PNG\r\n\x1a\n broken"
    with pytest.raises(InputError, match="train/dog/00.png"):
        load_image_folder(write_tar(tmp_path / "d.tar.gz", files))
    assert files_under(cache_dir) == []


def test_image_folder_second_load_hits_cache(tmp_path, monkeypatch, cache_dir):
    files, expected = image_files()
    sources = [write_dir(tmp_path / "d", files), write_tar(tmp_path / "d.tar.gz", files)]
    for s in sources:
        check_images(load_image_folder(s), expected)

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again instead of using the cache")

    monkeypatch.setattr(imagefolder, "_decode_all", no_decoding)
    for s in sources:
        check_images(load_image_folder(s), expected)
    # Changed content is a different cache entry, so it is decoded again.
    changed = dict(files)
    changed["train/cat/99.png"] = files["train/cat/00.png"]
    with pytest.raises(AssertionError, match="decoded again"):
        load_image_folder(write_tar(tmp_path / "d2.tar.gz", changed))
    # cache=False skips the cache.
    with pytest.raises(AssertionError, match="decoded again"):
        load_image_folder(sources[1], cache=False)
    assert partials(cache_dir) == []


def test_image_folder_archive_copy_reuses_cache(tmp_path, monkeypatch):
    """The archive cache is keyed by name and content, not by where the archive is."""
    files, expected = image_files()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = write_zip(tmp_path / "a" / "d.zip", files)
    check_images(load_image_folder(first), expected)
    second = Path(shutil.copy(first, tmp_path / "b" / "d.zip"))

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again instead of using the cache")

    monkeypatch.setattr(imagefolder, "_decode_all", no_decoding)
    check_images(load_image_folder(second), expected)


# ---------------------------------------------------------------------------------------
# The cache only saves time: a cache that cannot be written is a warning, not a failure


def disk_full(file, **arrays):
    """np.savez on a full disk: part of the file written, then ENOSPC."""
    file.write(b"PK\x03\x04 the first bytes of the archive")
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def read_only(*args, **kwargs):
    """tempfile.mkstemp in a folder on a read-only file system."""
    raise OSError(errno.EROFS, os.strerror(errno.EROFS))


@pytest.mark.parametrize("failure", ["full disk", "read-only", "no permission"])
def test_an_unwritable_cache_is_one_warning_and_the_images_load_from_memory(
        tmp_path, monkeypatch, cache_dir, failure):
    files, expected = image_files()
    source = write_tar(tmp_path / "d.tar.gz", files)
    reason = {"full disk": "No space left on device", "read-only": "Read-only file system",
              "no permission": "Permission denied"}[failure]
    with monkeypatch.context() as patch:
        if failure == "full disk":
            patch.setattr(np, "savez", disk_full)
        elif failure == "read-only":
            patch.setattr(tempfile, "mkstemp", read_only)
        else:
            if os.geteuid() == 0:
                pytest.skip("root writes into a folder of mode 0o500; the read-only case "
                            "covers a folder that refuses the write")
            (cache_dir / "imagefolder").mkdir(parents=True)
            (cache_dir / "imagefolder").chmod(0o500)
        with pytest.warns(CacheNotWritten) as caught:
            ds = load_image_folder(source)
    assert [str(w.message) for w in caught] == [
        f"cannot write the data cache in {cache_dir / 'imagefolder'} ({reason}); going on "
        f"from the images in memory (to cache them, free space there or set FASTCIFAR_DATA "
        f"to a writable folder)"]
    assert files_under(cache_dir) == []  # nothing half-written
    (cache_dir / "imagefolder").chmod(0o755)
    check_images(ds, expected)
    cached = load_image_folder(source)  # a normal load, which writes the cache
    for key in ("train_images", "train_labels", "test_images", "test_labels"):
        np.testing.assert_array_equal(getattr(ds, key), getattr(cached, key))
    assert ds.classes == cached.classes
    assert len(files_under(cache_dir)) == 1


def test_cifar10_with_a_full_cache_disk_loads_from_memory(cache_dir, closed_port_url,
                                                          monkeypatch):
    batches = make_cifar_batches(seed=4)
    archive = cifar_archive_bytes(batches)
    cache_dir.mkdir()
    (cache_dir / "cifar-10-python.tar.gz").write_bytes(archive)
    monkeypatch.setattr(np, "savez", disk_full)
    with pytest.warns(CacheNotWritten, match=re.escape(
            f"cannot write the data cache in {cache_dir} (No space left on device)")):
        ds = load_cifar10(url=closed_port_url, md5=md5_of(archive))
    check_cifar(ds, batches)
    assert files_under(cache_dir) == ["cifar-10-python.tar.gz"]


# ---------------------------------------------------------------------------------------
# Training subsets


def small_dataset(per_class: int = 20) -> ImageData:
    labels = np.repeat(np.arange(10), per_class).astype(np.int64)
    images = np.zeros((len(labels), 2, 2, 3), dtype=np.uint8)
    images[:, 0, 0, 0] = np.arange(len(labels)) % 256  # tells the images apart
    images[:, 0, 0, 1] = np.arange(len(labels)) // 256
    return ImageData(images, labels, images[:10].copy(), labels[:10].copy(),
                     tuple(f"c{i}" for i in range(10)), "small")


def image_ids(images: np.ndarray) -> np.ndarray:
    return images[:, 0, 0, 0].astype(int) + 256 * images[:, 0, 0, 1].astype(int)


def test_train_subset_balanced_and_seeded():
    ds = small_dataset()
    sub = ds.balanced_subset(50, seed=0)
    assert len(sub.train_images) == len(sub.train_labels) == 50
    np.testing.assert_array_equal(np.bincount(sub.train_labels, minlength=10), [5] * 10)
    ids = image_ids(sub.train_images)
    assert len(set(ids)) == 50  # no image twice
    np.testing.assert_array_equal(ds.train_labels[ids], sub.train_labels)  # pairs kept together
    assert sub.test_images is ds.test_images and sub.classes == ds.classes

    same = ds.balanced_subset(50, seed=0)
    np.testing.assert_array_equal(same.train_images, sub.train_images)
    np.testing.assert_array_equal(same.train_labels, sub.train_labels)
    other = ds.balanced_subset(50, seed=1)
    assert not np.array_equal(image_ids(other.train_images), ids)
    np.testing.assert_array_equal(np.bincount(other.train_labels, minlength=10), [5] * 10)

    uneven = ds.balanced_subset(53, seed=0)
    np.testing.assert_array_equal(np.bincount(uneven.train_labels, minlength=10),
                                  [6, 6, 6] + [5] * 7)
    assert len(ds.balanced_subset(200).train_labels) == 200


@pytest.mark.parametrize("n", [0, -5, 201])
def test_train_subset_invalid(n):
    with pytest.raises(InputError, match="--subset"):
        small_dataset().balanced_subset(n)


def test_train_subset_too_few_of_a_class():
    ds = small_dataset()
    keep = ds.train_labels != 3
    keep[np.flatnonzero(ds.train_labels == 3)[:2]] = True  # class 3 has only 2 images
    lopsided = ds.subset(keep)
    with pytest.raises(InputError, match="class 3"):
        lopsided.balanced_subset(50)


def test_cifar10_from_a_mirror_is_md5_checked_and_cached(tmp_path, cache_dir, monkeypatch,
                                                         closed_port_url):
    """$FASTCIFAR_CIFAR10_URL: its URLs in order (an unreachable one gives way to the
    next; file:// too). A mirror serving another file stops with one line naming it and
    its digest, leaving the cache empty; one serving the expected digest (substituted
    here, as the real archive's cannot be made) is used, then cached."""
    batches = make_cifar_batches()
    archive = cifar_archive_bytes(batches)
    mirror = tmp_path / "mirror" / "cifar-10-python.tar.gz"
    mirror.parent.mkdir()
    mirror.write_bytes(archive)
    monkeypatch.setenv("FASTCIFAR_CIFAR10_URL", f"{closed_port_url} {mirror.as_uri()}")
    with pytest.raises(InputError) as refused:
        load_cifar10()  # the official MD5: this mirror's file is another
    message = str(refused.value)
    assert "\n" not in message and mirror.as_uri() in message and md5_of(archive) in message
    assert files_under(cache_dir) == []
    check_cifar(load_cifar10(md5=md5_of(archive)), batches)
    assert files_under(cache_dir) == ["cifar-10-python.tar.gz", "cifar10.npz"]
    assert (cache_dir / "cifar-10-python.tar.gz").read_bytes() == archive
