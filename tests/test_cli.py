"""The command line: what a user sees on good runs and on bad input."""

from __future__ import annotations

import csv
import errno
import json
import os
from pathlib import Path

import numpy as np
import pytest

import fastcifar

from fastcifar.cli import main
from fastcifar.errors import InputError
from fastcifar.files import source_digest


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTCIFAR_DATA", str(tmp_path / "cache"))


def run(capsys, *args):
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_train_prints_table_and_writes_the_run_folder(tiny_archive, tmp_path, capsys):
    out_dir = tmp_path / "run"
    code, out, err = run(capsys, "train", "--data", str(tiny_archive), "--device", "cpu",
                         "--epochs", "2", "--runs", "2", "--set", "batch_size=30",
                         "--set", "tta_level=1", "--out", str(out_dir))
    assert code == 0, err
    assert "val_acc" in out and "tta_val_acc" in out and "eval" in out
    assert "mean" in out and "95% CI" in out

    summary = json.loads((out_dir / "summary.json").read_text())
    assert summary["recipe"] == "airbench94" and summary["data"] == str(tiny_archive)
    assert summary["device"] == "cpu" and summary["torch"]
    assert [r["seed"] for r in summary["runs"]] == [0, 1]
    accuracies = [r["accuracy"] for r in summary["runs"]]
    assert all(0 <= a <= 1 for a in accuracies)
    assert summary["accuracy_mean"] == pytest.approx(np.mean(accuracies))
    assert summary["accuracy_std"] == pytest.approx(np.std(accuracies, ddof=1))
    assert summary["train_seconds_mean"] > 0

    config = json.loads((out_dir / "config.json").read_text())
    assert config["config"]["batch_size"] == 30 and config["config"]["epochs"] == 2
    rows = list(csv.DictReader((out_dir / "metrics.csv").open()))
    assert [(r["run"], r["epoch"]) for r in rows] == [("1", "1"), ("1", "2"), ("2", "1"), ("2", "2")]
    # the package as it ran, and which version and commit it was
    assert "class Airbench94" in (out_dir / "source/fastcifar/recipes/airbench94.py").read_text()
    assert "def train_run" in (out_dir / "source/fastcifar/train/loop.py").read_text()
    assert json.loads((out_dir / "config.json").read_text())["size"] is None  # not fast.ai's
    recorded = json.loads((out_dir / "config.json").read_text())["fastcifar"]
    assert recorded["version"] == fastcifar.__version__
    assert recorded["commit"] is None or len(recorded["commit"]) == 40
    # The digest of the source names the code whatever git says: the copy's is the same.
    assert recorded["source_sha256"] == source_digest(out_dir / "source" / "fastcifar")
    assert not list(out_dir.glob("*.part"))


def test_a_data_cache_on_a_full_disk_is_one_warning_and_the_run_trains(tiny_archive, tmp_path,
                                                                       monkeypatch, capsys):
    def disk_full(file, **arrays):
        file.write(b"PK\x03\x04 the first bytes of the archive")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(np, "savez", disk_full)
    out_dir = tmp_path / "run"
    code, _, err = run(capsys, "train", "--data", str(tiny_archive), "--device", "cpu",
                       "--epochs", "1", "--set", "batch_size=30", "--set", "tta_level=0",
                       "--set", "widths=8,16,16", "--no-progress", "--out", str(out_dir))
    assert code == 0, err
    assert err.splitlines() == [
        f"fastcifar: warning: cannot write the data cache in {tmp_path / 'cache' / 'imagefolder'} "
        f"(No space left on device); going on from the images in memory (to cache them, free "
        f"space there or set FASTCIFAR_DATA to a writable folder)"]
    assert (out_dir / "summary.json").exists() and (out_dir / "model.pt").exists()
    assert [p for p in (tmp_path / "cache").rglob("*") if p.is_file()] == []


def test_recipes_lists_targets(capsys):
    code, out, _ = run(capsys, "recipes")
    assert code == 0 and "airbench94" in out and "94.01%" in out


@pytest.mark.parametrize("args, message", [
    (["--recipe", "nope"], "unknown recipe 'nope'"),
    (["--data", "/no/such/place"], "no such file or directory"),
    (["--set", "nope=1"], "no hyperparameter 'nope'"),
    (["--set", "lr=fast"], "expected a number"),
    (["--set", "flip=sideways"], "flip must be one of"),
    (["--set", "tta_level=4"], "tta_level must be 0, 1, 2 or 3"),
    (["--device", "cuda"], "no CUDA GPU"),
    (["--subset", "1000"], "--subset must be between 1 and the 120 training images"),
])
def test_bad_input_is_one_clear_message_and_exit_2(tiny_archive, tmp_path, capsys, args, message):
    out_dir = tmp_path / "run"
    code, _, err = run(capsys, "train", "--data", str(tiny_archive), "--device", "cpu",
                       "--out", str(out_dir), *args)
    assert code == 2
    assert message in err and err.startswith("fastcifar: error:")
    assert "Traceback" not in err
    assert not (out_dir / "summary.json").exists()


@pytest.mark.parametrize("epochs", ["0", "-1", "many"])
def test_bad_epochs_exit_2(capsys, epochs):
    with pytest.raises(SystemExit) as e:
        main(["train", "--epochs", epochs])
    assert e.value.code == 2
    assert "--epochs" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["train", "lr-find", "tune"])
def test_subset_seed_is_passed_on_and_a_bad_one_exits_2(command, monkeypatch, capsys):
    import fastcifar.sessions.tune
    from fastcifar.cli import run as run_commands
    given = []
    for module, name in ((run_commands, "train"), (run_commands, "lr_find"),
                         (fastcifar.sessions.tune, "tune")):
        monkeypatch.setattr(module, name, lambda *args, **options: given.append(options))
    space = ["--space", "lr=4:20"] if command == "tune" else []
    assert main([command, *space, "--subset", "500", "--subset-seed", "7"]) == 0
    assert given[0]["subset_seed"] == 7 and given[0]["subset"] == 500
    for bad in ("x", "-1", "1.5"):
        with pytest.raises(SystemExit) as e:
            main([command, *space, "--subset-seed", bad])
        assert e.value.code == 2
        assert f"--subset-seed: expected an integer of 0 or more, got '{bad}'" in (
            capsys.readouterr().err)


def test_a_diverging_run_stops_with_exit_1(tiny_archive, tmp_path, capsys):
    code, _, err = run(capsys, "train", "--data", str(tiny_archive), "--device", "cpu",
                       "--epochs", "2", "--set", "batch_size=30", "--set", "lr=1e30",
                       "--out", str(tmp_path / "run"))
    assert code == 1
    assert "the run diverged" in err and "nan" in err.lower()


@pytest.mark.parametrize("name, meant", [("AirBench94", None), ("bag-of-tricks", None),
                                         ("airbench49", "airbench94"),
                                         ("airbench94muon", "airbench94_muon")])
def test_recipe_names_forgive_case_and_dashes_and_suggest_the_closest(name, meant):
    from fastcifar.recipes import get_recipe
    if meant is None:
        assert get_recipe(name).name == name.lower().replace("-", "_")
    else:
        with pytest.raises(InputError, match=f"unknown recipe '{name}'; did you mean '{meant}'"):
            get_recipe(name)


def test_size_goes_with_fastais_archives_only(capsys):
    code = main(["train", "--size", "320", "--device", "cpu"])
    assert code == 2 and "--size 320 chooses one of fast.ai's archives" in capsys.readouterr().err


@pytest.mark.parametrize("recipe, widths, expected", [
    ("airbench94", "64", "widths must be 3 positive numbers, one for each of the three conv"),
    ("airbench94", "64,0,256", "--set widths=(64, 0, 256): each of widths must be at least 1"),
    ("bag_of_tricks", "64,128", "widths must be 4 positive numbers, one for each of prep"),
    ("resnet9_dawnbench", "64,128,256", "widths must be 4 positive numbers"),
])
def test_widths_that_cannot_build_the_network_are_refused_before_any_work(
        recipe, widths, expected, capsys):
    code = main(["train", "--recipe", recipe, "--set", f"widths={widths}", "--device", "cpu",
                 "--data", "/nonexistent/never/read.tar.gz"])
    assert code == 2 and expected in capsys.readouterr().err


def test_test_subset_evaluates_on_a_class_balanced_part_of_the_test_set(tiny_archive, tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--data", str(tiny_archive), "--device", "cpu", "--epochs", "1",
                 "--set", "batch_size=30", "--set", "tta_level=0", "--no-progress",
                 "--test-subset", "12", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["test_images"] == 12
    assert json.loads((out / "config.json").read_text())["test_subset"] == 12


def test_test_subset_larger_than_the_test_set_is_refused(tiny_archive, capsys):
    assert main(["train", "--data", str(tiny_archive), "--device", "cpu",
                 "--test-subset", "100000"]) == 2
    assert "--test-subset must be between 1 and the" in capsys.readouterr().err


def test_with_progress_bars_the_table_rows_are_written_through_tqdm(tiny_archive, tmp_path,
                                                                    monkeypatch):
    """A row printed while a bar is on screen would land on the bar's line."""
    from fastcifar.sessions import session
    written = []
    monkeypatch.setattr(session.tqdm, "write", lambda line, **kw: written.append(line))
    assert main(["train", "--data", str(tiny_archive), "--device", "cpu", "--epochs", "2",
                 "--set", "batch_size=30", "--set", "tta_level=0", "--progress",
                 "--out", str(tmp_path / "run")]) == 0
    rows = [line for line in written if line.startswith("|        1 |")]
    assert len(rows) == 3  # epochs 1 and 2, and the final evaluation


def test_an_error_before_anything_is_recorded_leaves_no_run_folder(tmp_path, capsys):
    out = tmp_path / "new" / "run"
    assert main(["train", "--data", str(tmp_path / "missing.tar.gz"), "--device", "cpu",
                 "--out", str(out)]) == 2
    assert "no such file" in capsys.readouterr().err
    assert not out.exists() and not out.parent.exists()  # nor the parent it would have made
    assert main(["lr-find", "--data", str(tmp_path / "missing.tar.gz"), "--device", "cpu",
                 "--out", str(out)]) == 2
    assert not out.exists()


def test_a_subset_too_small_for_the_batch_is_refused_with_a_batch_that_fits(tiny_archive,
                                                                           capsys):
    """120 images at airbench94's batch 1024 make no step at all; at 40, three."""
    for batch in ("1024", "40"):
        assert main(["train", "--data", str(tiny_archive), "--device", "cpu", "--set",
                     f"batch_size={batch}"]) == 2
        err = capsys.readouterr().err
        assert f"120 training images make {120 // int(batch)} full batch(es) of {batch}" in err
        assert "--set batch_size=15" in err


@pytest.mark.parametrize("command", ["train", "lr-find"])
def test_an_unwritable_out_is_refused_before_any_work(command, tmp_path, monkeypatch, capsys):
    """As for a user without write permission (the tests may run as root, which has it
    everywhere, so the permission check itself is made to say no)."""
    import os
    from fastcifar.train import inputs
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != locked and
                        real_access(path, mode))
    monkeypatch.setattr(inputs, "load_dataset", lambda *a, **k: pytest.fail("loaded data"))
    code, _, err = run(capsys, command, "--device", "cpu", "--out", str(locked))
    assert code == 2 and f"run folder {locked}: not writable" in err
    assert list(locked.iterdir()) == []
