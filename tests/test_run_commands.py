"""What a trained run folder is for: `fastcifar evaluate`, `predict`, `export` and
`compare`, and their Python functions."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import fastcifar
from fastcifar import api
from fastcifar.cli import main
from fastcifar.data import load_dataset
from fastcifar.errors import InputError
from fastcifar.report import export as export_module
from fastcifar.report.export import FORMATS, load_exported
from fastcifar.train.evaluate import TTA_FORMULAS
from conftest import make_tiny_archive

CLASSES = ["blue", "green", "red"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(the tiny archive, a run folder of airbench94 trained on it for 3 epochs)."""
    root = tmp_path_factory.mktemp("tiny")
    archive = make_tiny_archive(root)
    fastcifar.train("airbench94", data=archive, epochs=3, batch_size=30, device="cpu",
                    progress=False, verbose=False, out=root / "run")
    return archive, root / "run"


def run(capsys, *args):
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_evaluate_prints_top1_top5_and_classes_and_writes_the_confusion(tiny, tmp_path, capsys):
    archive, folder = tiny
    code, out, err = run(capsys, "evaluate", folder, "--device", "cpu", "--out",
                         tmp_path / "eval")
    assert code == 0, err
    assert "evaluating 30 test images at TTA level 2 on" in out
    saved = json.loads((tmp_path / "eval" / "evaluation.json").read_text())
    confusion = np.array(saved["confusion"])
    assert confusion.shape == (3, 3) and confusion.sum() == 30  # every test image once
    assert saved["classes"] == CLASSES and saved["tta_level"] == 2  # airbench94's
    assert saved["accuracy"] == pytest.approx(np.trace(confusion) / 30)
    assert saved["per_class"] == pytest.approx(list(np.diag(confusion) / 10))
    assert f"top-1 {saved['accuracy']:.2%}" in out and "top-5 100.00%" in out
    assert all(name in out for name in CLASSES)
    assert Image.open(tmp_path / "eval" / "confusion.png").size[0] > 300

    # The same figure as evaluating the loaded network in Python, at the same TTA level.
    data = load_dataset(archive)
    model = fastcifar.load_model(folder)
    assert saved["accuracy"] == pytest.approx(
        fastcifar.evaluate(model, data.test_images, data.test_labels, tta_level=2))


def test_evaluate_tests_on_the_runs_own_test_subset_unless_told(tiny, tmp_path, capsys):
    _, trained = tiny
    folder = tmp_path / "run"
    shutil.copytree(trained, folder)
    settings = json.loads((folder / "config.json").read_text())
    settings.update(test_subset=15, subset_seed=4)  # as `train --test-subset 15 --subset-seed 4`
    (folder / "config.json").write_text(json.dumps(settings))
    code, out, err = run(capsys, "evaluate", folder, "--device", "cpu")
    assert code == 0, err
    assert "the run's own test subset, 15 images (subset seed 4)" in out
    saved = json.loads((folder / "evaluation.json").read_text())
    assert np.array(saved["confusion"]).sum() == 15
    drawn = load_dataset(tiny[0]).balanced_test_subset(15, 4)
    assert np.array(saved["confusion"]).sum(1).tolist() == np.bincount(drawn.test_labels).tolist()
    code, out, err = run(capsys, "evaluate", folder, "--device", "cpu", "--test-subset", "all")
    assert code == 0 and np.array(json.loads((folder / "evaluation.json").read_text())[
        "confusion"]).sum() == 30


def test_evaluate_refuses_an_out_it_cannot_write_before_evaluating(tiny, tmp_path, capsys,
                                                                   monkeypatch):
    _, folder = tiny
    monkeypatch.setattr(api, "evaluate_run", lambda *a: pytest.fail("evaluated first"))
    code, _, err = run(capsys, "evaluate", folder, "--out", tmp_path / "c.png")
    assert code == 2 and "--out" in err and "expected a folder" in err
    (tmp_path / "file").write_text("")
    code, _, err = run(capsys, "evaluate", folder, "--out", tmp_path / "file")
    assert code == 2 and f"--out {tmp_path / 'file'}: cannot write there" in err


def test_evaluate_refuses_data_of_other_classes_and_bad_levels(tiny, tmp_path, capsys):
    _, folder = tiny
    other = tmp_path / "other"
    for split in ("train", "test"):
        for name in ("cat", "dog"):
            (other / split / name).mkdir(parents=True)
            Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(other / split / name / "0.png")
    code, _, err = run(capsys, "evaluate", folder, "--data", other, "--device", "cpu")
    assert code != 0 and "classes ['cat', 'dog'] are not the ones" in err
    code, _, err = run(capsys, "evaluate", tmp_path / "nowhere")
    assert code != 0 and "expected a run folder" in err and "Traceback" not in err
    assert not (tmp_path / "nowhere").exists(), "a wrong run folder is not made"
    with pytest.raises(InputError, match="0, 1, 2 or 3"):
        api.evaluate_run(folder, tta_level=4, device="cpu")


def test_predict_names_the_classes_of_image_files_and_folders(tiny, tmp_path, capsys):
    _, folder = tiny
    images = tmp_path / "images"
    images.mkdir()
    colours = {"red": 0, "green": 1, "blue": 2}  # drawn as the tiny archive's classes are
    rng = np.random.default_rng(1)
    for name, channel in colours.items():
        pixels = rng.integers(0, 80, (32, 32, 3), dtype=np.uint8)
        pixels[..., channel] += 150
        Image.fromarray(pixels).save(images / f"{name}.png")
    Image.fromarray(np.full((40, 48), 200, np.uint8)).save(images / "gray.jpg")  # resized
    assert json.loads((folder / "summary.json").read_text())["accuracy_mean"] == 1.0
    results = api.predict(folder, [images], top=2, device="cpu")
    assert [p.name for p, _ in results] == ["blue.png", "gray.jpg", "green.png", "red.png"]
    for path, best in results:
        assert len(best) == 2 and best[0][1] >= best[1][1] and sum(p for _, p in best) <= 1 + 1e-6
        if path.stem in colours:
            assert best[0][0] == path.stem  # (the run classifies every test image right)
    code, out, err = run(capsys, "predict", folder, images / "red.png", "--device", "cpu")
    assert code == 0, err
    assert out.startswith(f"{images / 'red.png'}: red ") and out.count("%") == 3

    (images / "broken.png").write_bytes(b"not a png")
    code, _, err = run(capsys, "predict", folder, images / "broken.png")
    assert code != 0 and "broken.png: not an image Pillow can decode" in err
    code, _, err = run(capsys, "predict", folder, tmp_path / "missing.jpg")
    assert code != 0 and "missing.jpg: no such image file or folder" in err


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_each_export_loads_back_and_gives_the_same_logits(tiny, tmp_path, fmt, capsys, caplog):
    for module in export_module.NEEDS.get(fmt, ()):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{fmt} needs {module} (the export extra)")
    _, folder = tiny
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code, out, err = run(capsys, "export", folder, "--format", fmt, "--out", tmp_path / "x")
    assert code == 0, err
    # Nothing that reads like an error: torch's onnx exporter logs a line for each torchvision
    # operator it skips, and warns of its own deprecations.
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert not [str(w.message) for w in caught if issubclass(w.category, FutureWarning)]
    assert "loaded back: its logits differ from the network's by at most" in out
    preprocessing = json.loads((tmp_path / "x" / "preprocessing.json").read_text())
    assert preprocessing["classes"] == CLASSES and preprocessing["image_size"] == 32
    assert preprocessing["mean"] == pytest.approx([0.4914, 0.4822, 0.4465])
    assert preprocessing["tta"].endswith(TTA_FORMULAS[preprocessing["tta_level"]])

    # Independently of the command's own check: load the file back and compare.
    model = fastcifar.load_model(folder)
    recipe = fastcifar.RECIPES["airbench94"]
    config = json.loads((folder / "config.json").read_text())
    from fastcifar.recipes.fields import config_from_dict
    build = lambda: recipe.build_model(config_from_dict(recipe.config, config["config"], "config.json"), 3)  # noqa: E731
    exported = load_exported(tmp_path / "x" / FORMATS[fmt], fmt, build)
    images = torch.randn(5, 3, 32, 32)  # another batch size than the export's example
    with torch.no_grad():
        assert torch.allclose(exported(images).float(), model(images), atol=1e-4)


def test_export_refuses_unknown_formats_and_missing_packages(tiny, tmp_path, monkeypatch, capsys):
    _, folder = tiny
    with pytest.raises(SystemExit) as exit_:
        main(["export", str(folder), "--format", "pickle"])
    assert exit_.value.code == 2 and "invalid choice: 'pickle'" in capsys.readouterr().err
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    code, _, err = run(capsys, "export", folder, "--format", "onnx", "--out", tmp_path / "y")
    assert code != 0 and 'pip install "fastcifar[export]"' in err
    assert not (tmp_path / "y").exists()


def test_compare_tabulates_runs_and_what_differs(tiny, tmp_path, capsys):
    archive, first = tiny
    second = tmp_path / "second"
    fastcifar.train("airbench94", data=archive, epochs=3, batch_size=30, runs=2, lr=5.0,
                    device="cpu", progress=False, verbose=False, out=second)
    code, out, err = run(capsys, "compare", first, second, "--out", tmp_path / "cmp.png")
    assert code == 0, err
    lines = out.splitlines()
    assert str(first) in lines[1] and str(second) in lines[2]
    assert "95% CI" in lines[0] and "%-" in lines[2]  # two runs: an interval
    assert any(line.strip().startswith("lr: 1=") and "2=5.0" in line for line in lines)
    assert not any(line.strip().startswith("epochs:") for line in lines)  # the same in both
    assert Image.open(tmp_path / "cmp.png").size[0] > 300

    code, _, err = run(capsys, "compare", first, tmp_path)
    assert code != 0 and "expected a run folder" in err


def test_compare_shows_hyperparameters_of_different_recipes_and_clips_as_ablate(
        tiny, tmp_path, capsys, monkeypatch):
    """A recipe file's narrow net against airbench94: its widths differ, and are shown; a
    two-run interval past 100% is clipped and said so, by the rule ablate follows; the
    plot lands beside the runs (not in the current folder)."""
    archive, first = tiny
    mine = tmp_path / "mine.py"
    mine.write_text("import dataclasses\nfrom fastcifar.recipes.airbench94 import Airbench94\n"
                    "class Narrow(Airbench94):\n"
                    "    config = dataclasses.replace(Airbench94.config, widths=(8, 16, 16))\n")
    other = tmp_path / "runs" / "narrow"
    fastcifar.train(f"{mine}:Narrow", data=archive, epochs=1, batch_size=30, runs=2,
                    device="cpu", progress=False, verbose=False, out=other)
    summary = json.loads((other / "summary.json").read_text())
    summary["runs"][0]["accuracy"], summary["runs"][1]["accuracy"] = 0.9, 1.0
    (other / "summary.json").write_text(json.dumps(summary))
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "compare", other, other)
    assert code == 0, err
    assert "31.47%-100.00%" in out and "(intervals clipped to 0-100%" in out
    code, out, err = run(capsys, "compare", first, other)
    assert code == 0, err
    assert any(line.strip().startswith("widths: 1=[") and "2=[8, 16, 16]" in line
               for line in out.splitlines()), out
    assert not (tmp_path / "compare.png").exists()
    common = Path(os.path.commonpath([first.parent, other.parent]))
    assert f"wrote {common / 'compare.png'}" in out and (common / "compare.png").is_file()
    code, out, err = run(capsys, "compare", other, other, "--out", tmp_path / "plots")
    assert code == 0 and (tmp_path / "plots" / "compare.png").is_file()
