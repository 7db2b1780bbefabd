"""The airbench ports (benchmarks/airbench_ports.py, derived by ports.py and the command
reference_ports.py) are the originals with exactly the changes they list, and the data
writer writes what the originals read."""

from __future__ import annotations

import difflib
import hashlib
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from fastcifar.data.dataset import ImageData
from fastcifar.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
REFERENCES = Path(__file__).resolve().parents[2] / "shared" / "references"
sys.path.insert(0, str(ROOT / "benchmarks"))

import reference_ports  # noqa: E402
from airbench_ports import AIRBENCH_PORTS  # noqa: E402
from ports import (Change, ReferenceChanged, apply_changes, derive, derive_all,  # noqa: E402
                   write_data)

needs_references = pytest.mark.skipif(
    not REFERENCES.is_dir(), reason=f"the original scripts are not here ({REFERENCES})")
VARIANTS = [(name, rehearsal) for name in AIRBENCH_PORTS for rehearsal in (False, True)]
IDS = [f"{name}{'-rehearsal' if rehearsal else ''}" for name, rehearsal in VARIANTS]


def all_changes(port, rehearsal):
    return port.changes + (port.rehearsal_changes if rehearsal else ())


def derive_ports(out: Path, ports: dict) -> dict:
    """Every port of `ports`, plain (out/gpu) and rehearsal (out/rehearsal):
    (name, rehearsal) -> (the original's text, the port's)."""
    result = {}
    for rehearsal, folder in ((False, out / "gpu"), (True, out / "rehearsal")):
        paths = derive_all(ports, folder, REFERENCES, rehearsal)
        assert set(paths) == set(ports)
        for name, path in paths.items():
            assert path == folder / f"{name}.py"
            original = (REFERENCES / ports[name].source).read_text()
            result[name, rehearsal] = (original, path.read_text())
    return result


@pytest.fixture(scope="module")
def derived(tmp_path_factory):
    """Every port, plain and rehearsal, derived once: (name, rehearsal) -> (original, port)."""
    if not REFERENCES.is_dir():
        pytest.skip(f"the original scripts are not here ({REFERENCES})")
    out = tmp_path_factory.mktemp("ports")
    return derive_ports(out, AIRBENCH_PORTS), out


@needs_references
@pytest.mark.parametrize("name, rehearsal", VARIANTS, ids=IDS)
def test_each_change_is_one_edit_of_the_original_and_is_recorded(derived, name, rehearsal):
    check_recorded(derived, AIRBENCH_PORTS[name], name, rehearsal)


def check_recorded(derived, port, name: str, rehearsal: bool) -> None:
    """Each change of the port is one edit of the original, and its changes.json lists them
    all, with the original's source, commit and digest."""
    (original, port_text), out = derived[0][name, rehearsal], derived[1]
    for change in all_changes(port, rehearsal):
        assert original.count(change.old) == change.count, change.why
        assert change.new == "" or change.new in port_text, change.why
        assert change.old not in port_text or change.old in change.new, change.why
    folder = out / ("rehearsal" if rehearsal else "gpu")
    record = json.loads((folder / f"{name}.changes.json").read_text())
    source = REFERENCES / port.source
    assert record["repository"] == port.repository and record["commit"] == port.commit
    assert record["source"] == port.source and record["recipe"] == port.recipe
    assert record["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    assert [(c["why"], c["old"], c["new"]) for c in record["changes"]] == [
        (c.why, c.old, c.new) for c in port.changes]
    if rehearsal:
        assert [c["why"] for c in record["rehearsal_changes"]] == [
            c.why for c in port.rehearsal_changes]
    else:
        assert "rehearsal_changes" not in record


def touched_lines(original: str, changes) -> set[int]:
    """The original's line numbers (from 0) that some change's old text covers."""
    lines = set()
    for change in changes:
        start = original.find(change.old)
        while start >= 0:  # every occurrence (a change may name several)
            first = original.count("\n", 0, start)
            last = original.count("\n", 0, start + len(change.old) - 1)
            lines.update(range(first, last + 1))
            start = original.find(change.old, start + 1)
    return lines


@needs_references
@pytest.mark.parametrize("name, rehearsal", VARIANTS, ids=IDS)
def test_the_port_differs_from_the_original_only_where_a_change_says(derived, name, rehearsal):
    original, port_text = derived[0][name, rehearsal]
    changes = all_changes(AIRBENCH_PORTS[name], rehearsal)
    touched = touched_lines(original, changes)
    a, b = original.splitlines(keepends=True), port_text.splitlines(keepends=True)
    hunks = [op for op in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes()
             if op[0] != "equal"]
    assert hunks
    for _, i1, i2, j1, j2 in hunks:
        # Lines taken out or rewritten are lines a change covers; an insertion sits
        # against one.
        removed = set(range(i1, i2)) if i2 > i1 else {i1 - 1, i1} & touched
        assert removed and removed <= touched, f"unlisted difference at line {i1 + 1}"
        for line in b[j1:j2]:
            assert any(line in c.new or any(part.strip() and part.strip() in line
                                            for part in c.new.splitlines())
                       for c in changes), f"line not from any change: {line!r}"


@needs_references
@pytest.mark.parametrize("name, rehearsal", VARIANTS, ids=IDS)
def test_the_port_compiles_and_keeps_the_originals_speed_settings(derived, name, rehearsal):
    original, port_text = derived[0][name, rehearsal]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the originals' docstrings hold escapes like "\\s"
        compile(port_text, f"{name}.py", "exec")
    for setting in ("max-autotune", ".half()", "float16", "torch.backends.cudnn.benchmark = True",
                    "torch.cuda.Event(enable_timing=True)", "torch.cuda.synchronize()",
                    ".cuda()", "main('warmup'", 'main("warmup"'):
        assert port_text.count(setting) == original.count(setting), setting
    assert "max-autotune" in port_text or name in ("airbench95", "airbench96")
    assert "torchvision" not in port_text


@needs_references
def test_the_gpu_ports_record_every_run_and_take_their_options(derived):
    muon = derived[0]["airbench94_muon", False][1]
    assert '"--data-dir", default="cifar10"' in muon and "default=200" in muon
    assert "for run in range(args.runs):" in muon
    assert "return tta_val_acc, time_seconds" in muon
    assert 'os.replace(args.out + ".part", args.out)' in muon
    compiled = derived[0]["airbench94_compiled", False][1]
    assert "default=25" in compiled and "return tta_val_acc, total_time_seconds" in compiled
    assert "main(run, model_trainbias, model_freezebias)" in compiled
    assert AIRBENCH_PORTS["airbench94_muon"].recipe == "airbench94_muon"
    assert AIRBENCH_PORTS["airbench94_compiled"].recipe == "airbench94"


@needs_references
def test_the_rehearsal_narrows_and_shortens_only(derived):
    muon = derived[0]["airbench94_muon", True][1]
    assert "block1=8, block2=16, block3=16" in muon and "batch_size = 64" in muon
    assert "ceil(2 * len(train_loader))" in muon and "ceil(1 * len(train_loader))" in muon
    compiled = derived[0]["airbench94_compiled", True][1]
    for text in ("'block1': 8,", "'batch_size': 64,", "'train_epochs': 2,",
                 "'whiten_bias_epochs': 1,"):
        assert text in compiled


def test_a_change_whose_text_is_absent_or_repeated_stops_the_port():
    missing = Change("no such text", "x", "point the data elsewhere")
    with pytest.raises(ReferenceChanged, match=r"port p: .*'point the data elsewhere'"
                                               r".* found it 0 times.*must have changed"):
        apply_changes("p", "some original text", [missing])
    twice = Change("x = 1\n", "x = 2\n", "set x")
    with pytest.raises(ReferenceChanged, match="'set x'.* found it 2 times"):
        apply_changes("p", "x = 1\nx = 1\n", [twice])
    assert issubclass(ReferenceChanged, InputError)
    assert apply_changes("p", "x = 1\ny = 2\n", [Change("y = 2", "y = 3", "")]) == \
        "x = 1\ny = 3\n"


def test_a_missing_references_folder_or_file_is_one_clear_error(tmp_path):
    port = AIRBENCH_PORTS["airbench94_muon"]
    with pytest.raises(InputError, match=f"{tmp_path / 'nowhere'}: no references folder"):
        derive(port, tmp_path / "out", tmp_path / "nowhere")
    with pytest.raises(InputError, match=f"{tmp_path / port.source}: not found; expected the "
                                         f"unmodified .* of {port.repository} at commit"):
        derive(port, tmp_path / "out", tmp_path)
    assert not (tmp_path / "out").exists()


def tiny_data(n_train=100, n_test=30, side=32) -> ImageData:
    """Training images sorted by class, as the stand-in archive holds them."""
    rng = np.random.default_rng(3)
    labels = np.repeat(np.arange(10), n_train // 10)
    return ImageData(rng.integers(0, 256, (n_train, side, side, 3), dtype=np.uint8), labels,
                     rng.integers(0, 256, (n_test, side, side, 3), dtype=np.uint8),
                     rng.integers(0, 10, n_test), classes=[f"c{i}" for i in range(10)])


def test_the_data_is_written_as_the_originals_read_it_shuffled_by_a_fixed_seed(tmp_path):
    data = tiny_data()
    write_data(data, tmp_path / "a")
    write_data(data, tmp_path / "b")
    loaded = {}
    for split in ("train", "test"):
        a = torch.load(tmp_path / "a" / f"{split}.pt")
        b = torch.load(tmp_path / "b" / f"{split}.pt")
        assert set(a) == {"images", "labels", "classes"}
        assert a["images"].dtype == torch.uint8 and a["labels"].dtype == torch.int64
        assert a["images"].shape[1:] == (32, 32, 3)
        assert a["classes"] == [f"c{i}" for i in range(10)]
        assert torch.equal(a["images"], b["images"]) and torch.equal(a["labels"], b["labels"])
        loaded[split] = a
    order = np.random.default_rng(0).permutation(100)
    assert np.array_equal(loaded["train"]["images"].numpy(), data.train_images[order])
    assert np.array_equal(loaded["train"]["labels"].numpy(), data.train_labels[order])
    assert len(set(loaded["train"]["labels"][:20].tolist())) >= 5  # classes mixed from the start
    assert np.array_equal(loaded["test"]["images"].numpy(), data.test_images)
    assert np.array_equal(loaded["test"]["labels"].numpy(), data.test_labels)
    assert not list((tmp_path / "a").glob(".*"))  # no temporary file left behind


def test_the_data_must_be_32_pixels_square(tmp_path):
    with pytest.raises(InputError, match="read 32x32 images, these are 40x40"):
        write_data(tiny_data(side=40), tmp_path)


@needs_references
def test_the_command_derives_every_port_and_writes_the_data(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(reference_ports, "load_dataset", lambda name: tiny_data())
    assert reference_ports.main(["--out", str(tmp_path), "--references", str(REFERENCES),
                                 "--data", "x", "--rehearsal"]) == 0
    out = capsys.readouterr().out
    for name, port in AIRBENCH_PORTS.items():
        assert (tmp_path / f"{name}.py").exists() and f"{name}: " in out
        assert all(c.why in out for c in port.changes + port.rehearsal_changes)
    assert (tmp_path / "data" / "train.pt").exists() and (tmp_path / "data" / "test.pt").exists()
    assert f"--data-dir {tmp_path / 'data'}" in out
    assert reference_ports.main(["--out", str(tmp_path), "--references",
                                 str(tmp_path / "none")]) == 2
    assert "no references folder" in capsys.readouterr().err
