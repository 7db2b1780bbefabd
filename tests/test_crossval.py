"""fastcifar crossval: every training image's probabilities come from networks that never
trained on it, a second invocation reads everything back, and a folder made otherwise,
or options that cannot work, are refused before any training."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import fastcifar
from conftest import torchrun
from fastcifar.cli import main
from fastcifar.data.loader import evaluation_tensor
from fastcifar.errors import InputError
from fastcifar.recipes import get_recipe
from fastcifar.sessions import crossval as cv
from fastcifar.train.evaluate import predict

TINY = dict(epochs=1, batch_size=20, widths=(8, 16, 16), device="cpu", verbose=False)
TINY_ARGS = ["--epochs", "1", "--set", "batch_size=20", "--set", "widths=8,16,16",
             "--device", "cpu"]


def stamp_of(images: np.ndarray) -> np.ndarray:
    return images[:, 0, 0, 0].astype(np.int64) + 256 * images[:, 0, 0, 1].astype(np.int64)


@pytest.fixture(scope="module")
def stamped(small_cifar10) -> fastcifar.ImageData:
    """150 real training images (15 a class), each carrying its position in two pixel
    values, so that the images a fold's session trains on tell which they are; 50 test."""
    data = small_cifar10.balanced_subset(150, seed=1).balanced_test_subset(50)
    images = data.train_images.copy()
    images[:, 0, 0, 0], images[:, 0, 0, 1] = np.arange(150) % 256, np.arange(150) // 256
    return fastcifar.ImageData(images, data.train_labels, data.test_images, data.test_labels,
                               data.classes, "stamped")


@pytest.fixture(scope="module")
def image_folder(small_cifar10, tmp_path_factory):
    """200 real training and 50 test images as an image folder of PNGs."""
    root = tmp_path_factory.mktemp("crossval") / "images"
    data = small_cifar10.balanced_subset(200, seed=2).balanced_test_subset(50)
    for split, images, labels in (("train", data.train_images, data.train_labels),
                                  ("test", data.test_images, data.test_labels)):
        for i, (image, label) in enumerate(zip(images, labels)):
            folder = root / split / data.classes[label]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(folder / f"{i}.png")
    return root


def test_folds_are_stratified_and_drawn_by_the_seed():
    labels = np.repeat(np.arange(3), [10, 7, 5])
    fold = cv.stratified_folds(labels, 4, seed=0)
    for c in range(3):  # every class spread over the folds as evenly as it can be
        counts = np.bincount(fold[labels == c], minlength=4)
        assert counts.max() - counts.min() <= 1
    sizes = np.bincount(fold)
    assert sizes.sum() == 22 and sizes.max() - sizes.min() <= 1
    assert np.array_equal(fold, cv.stratified_folds(labels, 4, seed=0))
    assert not np.array_equal(fold, cv.stratified_folds(labels, 4, seed=1))
    with pytest.raises(InputError, match="must be an integer of 2 or more, got 1"):
        cv.check_folds(1)
    with pytest.raises(InputError, match="class '2' has 5 training image.*--folds 5 or fewer"):
        cv.check_folds(6, labels, ("0", "1", "2"))


def test_no_image_is_predicted_by_a_network_that_trained_on_it(stamped, tmp_path,
                                                                monkeypatch):
    trained_on, real_train = [], cv.train

    def spy(recipe, data, **options):
        trained_on.append(set(stamp_of(data.train_images).tolist()))
        return real_train(recipe, data, **options)

    monkeypatch.setattr(cv, "train", spy)
    out = tmp_path / "cv"
    options = dict(folds=3, runs=2, subset=120, subset_seed=3, record_examples=True, **TINY)
    result = fastcifar.crossval("airbench94", stamped, out=out, **options)
    assert result.pred_probs.shape == (120, 10) and result.pred_probs.dtype == np.float32
    assert np.allclose(result.pred_probs.sum(1), 1, atol=1e-5)
    assert np.array_equal(result.indices, np.sort(result.indices))  # rows by position
    assert np.array_equal(result.labels, stamped.train_labels[result.indices])
    for k, seen in enumerate(trained_on, 1):  # fold k trained on exactly the other folds
        held = set(result.indices[result.folds == k].tolist())
        assert not seen & held and seen | held == set(result.indices.tolist())
    for name in ("pred_probs", "labels", "indices", "folds"):
        assert np.array_equal(np.load(out / f"{name}.npy"), getattr(result, name))
    # the held-out predictions are the fold's own networks': its last run's, remade
    held = result.folds == 1
    model = fastcifar.load_model(out / "fold-1")
    x = evaluation_tensor(stamped.train_images[result.indices[held]], torch.device("cpu"))
    probabilities = predict(model, x, get_recipe("airbench94").config.tta_level).softmax(1)
    saved = np.load(out / "fold-1" / "held_out" / "seed-1.npz")
    order = np.argsort(saved["indices"])
    assert np.allclose(saved["probabilities"][order], probabilities.numpy(), atol=1e-5)
    rows = (out / "predictions.csv").read_text().splitlines()
    assert rows[0] == ("index,fold,label,predicted,p_label,margin,aum,forgetting,el2n,"
                       "confidence,variability") and len(rows) == 121

    again = fastcifar.crossval("airbench94", stamped, out=out, **options)
    assert (again.trained, again.read_back) == (0, 6)
    assert np.array_equal(again.pred_probs, result.pred_probs)

    calls = len(trained_on)
    with pytest.raises(InputError, match=r"made otherwise \(lr: 11.5 there, 3.0 here\)"):
        fastcifar.crossval("airbench94", stamped, out=out, **{**options, "lr": 3.0})
    with pytest.raises(InputError, match=r"made otherwise \(folds: 3 there, 4 here\)"):
        fastcifar.crossval("airbench94", stamped, out=out, **{**options, "folds": 4})
    assert len(trained_on) == calls  # refused before any fold's session
    # a held-out file of other images is not read back
    path = out / "fold-2" / "held_out" / "seed-0.npz"
    with np.load(path) as saved:
        np.savez(path, probabilities=saved["probabilities"], indices=saved["indices"] + 1,
                 images_sha256=saved["images_sha256"])
    with pytest.raises(InputError, match="holds predictions of other images than fold 2's"):
        fastcifar.crossval("airbench94", stamped, out=out, **options)


def test_the_command_writes_every_file_and_a_second_invocation_trains_nothing(
        image_folder, tmp_path, capsys):
    out = tmp_path / "cv"
    args = ["crossval", "--recipe", "airbench94", "--data", str(image_folder), "--subset",
            "160", "--test-subset", "50", "--folds", "2", *TINY_ARGS, "--out", str(out)]
    assert main(args) == 0
    assert "out-of-fold accuracy" in capsys.readouterr().out
    assert np.load(out / "pred_probs.npy").shape == (160, 10)
    assert np.load(out / "labels.npy").shape == (160,)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["folds"] == 2 and len(summary["fold_accuracy"]) == 2
    first = np.load(out / "pred_probs.npy")
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert printed.count("nothing to train") == 2 and "runs trained now: 0" in printed
    assert np.array_equal(np.load(out / "pred_probs.npy"), first)
    assert main([*args, "--epochs", "2"]) == 2
    assert "epochs: 1.0 there, 2.0 here" in capsys.readouterr().err


@pytest.mark.parametrize("options, said", [
    (["--folds", "1"], "folds (--folds) must be an integer of 2 or more, got 1"),
    (["--folds", "17"], "--folds 17: class 'airplane' has 16 training image(s)"),
    (["--folds", "2", "--set", "batch_size=30"], "80 training images make 2 full batch(es)"),
    (["--set", "nonsense=1"], "nonsense"),
])
def test_bad_options_exit_2_before_any_work(options, said, image_folder, tmp_path,
                                            monkeypatch, capsys):
    monkeypatch.setattr(cv, "train", lambda *a, **k: pytest.fail("trained"))
    out = tmp_path / "cv"
    args = ["crossval", "--data", str(image_folder), "--subset", "160", "--device", "cpu",
            "--epochs", "1", "--set", "widths=8,16,16", *options, "--out", str(out)]
    assert main(args) == 2
    assert said in capsys.readouterr().err
    assert not out.exists()


def test_a_run_folder_is_no_crossval_folder(image_folder, tmp_path, capsys):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text("{}")
    assert main(["crossval", "--data", str(image_folder), "--subset", "160", "--folds", "2",
                 *TINY_ARGS, "--out", str(tmp_path / "run")]) == 2
    assert "holds a training run (config.json)" in capsys.readouterr().err


def test_the_ranks_share_each_fold_s_runs(image_folder, tmp_path):
    """Under torchrun each fold's runs are shared by the ranks, each predicting its own
    runs' held-out images: the same probabilities as one process."""
    args = ["--data", image_folder, "--subset", "80", "--test-subset", "20", "--folds", "2",
            "--runs", "2", *TINY_ARGS, "--set", "batch_size=10", "--out", tmp_path / "two"]
    done = torchrun(2, *args, command="crossval")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("out-of-fold accuracy") == 1  # said by rank 0 alone
    for fold in ("fold-1", "fold-2"):
        ranks = [r["rank"] for r in json.loads(
            (tmp_path / "two" / fold / "summary.json").read_text())["runs"]]
        assert ranks == [0, 1]
    one = fastcifar.crossval("airbench94", image_folder, folds=2, runs=2, subset=80,
                             test_subset=20, out=tmp_path / "one", **{**TINY, "batch_size": 10})
    assert np.allclose(np.load(tmp_path / "two" / "pred_probs.npy"), one.pred_probs,
                       atol=1e-5)


def test_the_label_noise_example_flips_an_exact_seeded_fraction():
    spec = importlib.util.spec_from_file_location(
        "example_label_noise", Path(__file__).resolve().parents[1] / "examples" / "label_noise.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    labels = np.repeat(np.arange(10), 20)
    noisy, flipped = example.flip_labels(labels, 10, 0.25, asymmetric=False, seed=0)
    assert flipped.sum() == 50 and np.all(noisy[flipped] != labels[flipped])
    assert np.array_equal(noisy[~flipped], labels[~flipped])
    again, _ = example.flip_labels(labels, 10, 0.25, asymmetric=False, seed=0)
    assert np.array_equal(noisy, again)
    noisy, flipped = example.flip_labels(labels, 10, 0.25, asymmetric=True, seed=0)
    assert np.array_equal(noisy[flipped], (labels[flipped] + 1) % 10)  # each to the next
    assert example.lowest(np.array([3.0, np.nan, 1.0, 2.0]), 2).tolist() == [
        False, False, True, True]
