"""`fastcifar eject`: a recipe's whole run as one standalone file, generated from the
package's own code, that imports no fastcifar and trains exactly as the package does: from
the same seed, data and settings, the same accuracy, bit for bit."""

from __future__ import annotations

import ast
import inspect
import io
import os
import pickle
import re
import subprocess
import sys
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from fastcifar import train
from fastcifar.cli import main
from fastcifar.data.cifar10 import BATCH_FILES, META, _parse_archive
from fastcifar.data.dataset import balanced_subset_index
from fastcifar.data.imagefolder import load_image_folder
from fastcifar.eject import SECTIONS, eject_source
from fastcifar.eject.driver import read_data
from fastcifar.errors import InputError
from fastcifar.recipes import get_recipe, parse_assignments
from fastcifar.recipes.base import field_notes
from fastcifar.train import loop

# Every recipe narrow and on batches of 64, for 2 epochs of 4 steps: enough for each trick
# to act (a lookahead every 5 steps, Fable's lr floor and lookahead tail, the proxy's
# hardest half), in a second or two of a CPU's time.
NARROW = ["batch_size=64", "widths=8,16,16"]
RECIPES = {
    "airbench94": [], "airbench94_bnfree": [], "airbench94_muon": [], "airbench95": [],
    "airbench96": [], "airbench96_faster": ["select_keep=32", "proxy_widths=4,8,8"],
    "hiverge94": [], "fable94_e5": ["decay_epochs=1.5"], "fable94_e1": ["decay_epochs=1.5"],
}
SUBSET, TEST_SUBSET, EPOCHS, SEED = 256, 100, 2, 0

# Runs a file with every import of fastcifar refused (whatever the interpreter's path holds).
NO_FASTCIFAR = """
import runpy, sys
class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "fastcifar":
            raise ImportError(f"the ejected file imports {name}")
sys.meta_path.insert(0, Refuse())
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@pytest.fixture(scope="module")
def archive(cifar10, tmp_path_factory):
    """A .tar.gz image folder of the real images, 60 training and 25 test images a class,
    as lossless PNGs: both sides decode the same pixels, in a second."""
    path = tmp_path_factory.mktemp("eject") / "cifar10-png.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for split, images, labels, n in (
                ("train", cifar10.train_images, cifar10.train_labels, 600),
                ("test", cifar10.test_images, cifar10.test_labels, 250)):
            for i in balanced_subset_index(labels, n, len(cifar10.classes), seed=1):
                png = io.BytesIO()
                Image.fromarray(images[i]).save(png, format="PNG")
                member = tarfile.TarInfo(f"cifar10-png/{split}/{cifar10.classes[labels[i]]}/"
                                         f"{i:05d}.png")
                member.size = png.tell()
                tar.addfile(member, io.BytesIO(png.getvalue()))
    return path


def test_the_hyperparameters_come_first_every_field_with_its_note():
    text = eject_source("fable94_e1", ["widths=16,32,32"])
    recipe = get_recipe("fable94_e1")
    start = text.index(f"class {type(recipe.config).__name__}:")
    assert start < text.index("# The network")
    config = text[start:text.index("\n\n\n", start)]
    for name, note in field_notes(type(recipe.config)).items():
        assert re.search(rf"^    {name}: .* = ", config, re.M), name
        assert " ".join(note.split()[:3]) in " ".join(config.replace("#", "").split()), name
    assert re.search(r"# \(the recipe's: \(64, 256, 256\)\).*\n    widths: tuple\[int, \.\.\.\] = "
                     r"\(16, 32, 32\)$", config, re.M)
    assert "epochs: float = 8.875" in config


def test_the_sections_follow_a_run_and_every_block_is_the_packages_own_source():
    text = eject_source("airbench94")
    places = [text.index(f"# {title}") for title, _ in SECTIONS]
    assert places == sorted(places)
    for block in (loop.run_epoch, loop.training_step, loop.update_average):
        assert inspect.getsource(block) in text
    # Nothing of checkpoints or per-example records, and no second copy of the loop.
    assert "def state_dict" not in text and "ExampleRecorder" not in text
    assert "def train_epoch" not in text and "def train_run" not in text


def test_eject_refuses_an_unknown_recipe_and_a_bad_value(tmp_path, capsys):
    assert main(["eject", "airbench49", "--out", str(tmp_path / "x.py")]) == 2
    assert "did you mean 'airbench94'" in capsys.readouterr().err
    with pytest.raises(InputError, match="widths"):
        eject_source("airbench94", ["widths=0,1,2"])


def test_the_ejected_file_refuses_bad_input_in_one_line(tmp_path):
    out = tmp_path / "a94.py"
    assert main(["eject", "airbench94", "--out", str(out)]) == 0
    for args, said in ((["--data", str(tmp_path / "missing")], "no such file or folder"),
                       (["--data", str(out)], "not an archive")):
        done = subprocess.run([sys.executable, str(out), *args, "--device", "cpu"],
                              capture_output=True, text=True, timeout=120, cwd=tmp_path)
        assert done.returncode == 2 and said in done.stderr, done.stderr
        assert "Traceback" not in done.stderr and len(done.stderr.splitlines()) == 1


def test_the_file_reads_the_official_batches_folder_as_the_package_reads_their_archive(
        tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in BATCH_FILES:
        batch = ({b"label_names": [f"class{c}".encode() for c in range(10)]} if name == META
                 else {b"data": rng.integers(0, 256, (20, 3072), dtype=np.uint8),
                       b"labels": [int(c) for c in np.arange(20) % 10]})
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    with tarfile.open(tmp_path / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    package = _parse_archive(tmp_path / "cifar-10-python.tar.gz")
    arrays, classes = read_data(tmp_path, 32, None, 10, seed=0)
    assert classes == [f"class{c}" for c in range(10)]
    assert np.array_equal(arrays["train"][0], package["train_images"])
    index = balanced_subset_index(package["test_labels"], 10, 10, seed=0)
    assert np.array_equal(arrays["test"][0], package["test_images"][index])


def imported_modules(tree: ast.Module, top: bool) -> set[str]:
    nodes = tree.body if top else list(ast.walk(tree))
    return ({a.name.split(".")[0] for n in nodes if isinstance(n, ast.Import) for a in n.names}
            | {n.module.split(".")[0] for n in nodes if isinstance(n, ast.ImportFrom)})


@pytest.fixture
def one_thread():
    """One thread here and one in the ejected file's process, each on a core of its own
    (and sums over threads are the same only for the same count of them)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("name", RECIPES)
def test_the_ejected_file_trains_as_the_package_does_bit_for_bit(name, archive, tmp_path,
                                                                  capsys, one_thread):
    overrides = NARROW + RECIPES[name]
    out = tmp_path / f"{name}.py"
    assert main(["eject", name, "--out", str(out),
                 *(arg for o in overrides for arg in ("--set", o))]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    tree = ast.parse(out.read_text())
    assert imported_modules(tree, top=True) <= {*sys.stdlib_module_names, "numpy", "torch"}
    # (inside functions: Pillow to decode images; tqdm on a progress path never taken)
    assert imported_modules(tree, top=False) <= {*sys.stdlib_module_names, "numpy", "torch",
                                                 "PIL", "tqdm"}

    # The file runs from a folder of its own, with every import of fastcifar refused,
    # beside the package's run of the same settings.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["OMP_NUM_THREADS"] = "1"
    ejected = subprocess.Popen(
        [sys.executable, "-c", NO_FASTCIFAR, str(out), "--data", str(archive), "--subset",
         str(SUBSET), "--test-subset", str(TEST_SUBSET), "--epochs", str(EPOCHS), "--device",
         "cpu", "--seed", str(SEED)], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    recipe = get_recipe(name)
    result = train(recipe, load_image_folder(archive, cache=False), subset=SUBSET,
                   test_subset=TEST_SUBSET, subset_seed=0, epochs=float(EPOCHS), seed=SEED,
                   device="cpu", precision="float32", verbose=False,
                   **parse_assignments(recipe.config, overrides))
    stdout, stderr = ejected.communicate(timeout=300)
    assert ejected.returncode == 0, stderr

    # The same operations in the same order (the blocks are the package's, called as its
    # loop calls them): every epoch's losses and accuracies and the TTA accuracy are equal.
    run = result.runs[0]
    rows = [line.split()[:5] for line in stdout.splitlines() if re.match(r"\s+\d+\s", line)]
    assert rows == [[str(r.epoch), f"{r.train_loss:.4f}", f"{r.train_accuracy:.4f}",
                     f"{r.val_loss:.4f}", f"{r.val_accuracy:.4f}"] for r in run.epochs]
    found = re.search(r"^accuracy (\S+) with TTA level \d \((\S+) without\)", stdout, re.M)
    assert found, stdout
    assert (float(found[1]), float(found[2])) == (run.accuracy, run.accuracy_no_tta)
