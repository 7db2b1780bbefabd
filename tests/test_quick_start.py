"""A newcomer's first commands: `fastcifar train --quick` is a small run, and a session
says when its batches leave out a good share of the images each epoch."""

from __future__ import annotations

import fastcifar
from fastcifar.cli import main, run as run_commands
from conftest import make_tiny_archive


def test_quick_fills_in_a_small_run_unless_told_otherwise(monkeypatch, tmp_path):
    asked = []
    monkeypatch.setattr(run_commands, "train", lambda recipe, **options: asked.append(options))
    assert main(["train", "--quick", "--device", "cpu", "--out", str(tmp_path / "a")]) == 0
    assert main(["train", "--quick", "--epochs", "1", "--subset", "4000", "--set",
                 "batch_size=1000", "--device", "cpu", "--out", str(tmp_path / "b")]) == 0
    assert main(["train", "--device", "cpu", "--out", str(tmp_path / "c")]) == 0
    assert main(["train", "--quick", "--recipe", "resnet18_cifar", "--device", "cpu",
                 "--out", str(tmp_path / "d")]) == 0  # its batch of 128: kept
    keys = ("subset", "test_subset", "epochs", "batch_size")
    picked = [{k: o.get(k) for k in keys} for o in asked]
    assert picked == [{"subset": 2048, "test_subset": 1000, "epochs": 2, "batch_size": 512},
                      {"subset": 4000, "test_subset": 1000, "epochs": 1.0, "batch_size": 1000},
                      {"subset": None, "test_subset": None, "epochs": None, "batch_size": None},
                      {"subset": 2048, "test_subset": 1000, "epochs": 2, "batch_size": None}]


def test_quick_is_no_option_of_a_resume(tmp_path, capsys):
    assert main(["train", "--resume", str(tmp_path), "--quick"]) == 2
    assert "continues that run with its own settings; drop --quick" in capsys.readouterr().err


def test_a_session_says_when_its_batches_leave_images_out(tmp_path, capsys):
    archive = make_tiny_archive(tmp_path)  # 120 training images
    options = {"data": archive, "epochs": 1, "widths": (8, 16, 16), "tta_level": 0,
               "device": "cpu", "progress": False}
    fastcifar.train("airbench94", batch_size=25, **options)  # 20 left out: 17%
    assert ("note: batches of 25 train on 100 of the 120 training images an epoch (a "
            "different 20 left out each epoch" in capsys.readouterr().out)
    fastcifar.train("airbench94", batch_size=30, **options)  # none left out
    assert "note: batches" not in capsys.readouterr().out


def test_a_reader_that_leaves_early_gets_no_traceback():
    """`fastcifar recipes --show R | head -2`: the pipe closes under the command."""
    import subprocess
    import sys
    reader = subprocess.Popen([sys.executable, "-m", "fastcifar", "recipes", "--show",
                               "airbench94"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              bufsize=0)
    reader.stdout.close()  # before anything is printed
    err = reader.stderr.read().decode()
    assert reader.wait(timeout=60) == 141 and err == "", err
