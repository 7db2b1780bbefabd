"""The Python API: the README's examples run as written, keyword hyperparameters are
checked like --set, and a run folder gives back the network it trained."""

from __future__ import annotations

import dataclasses
import json
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import fastcifar
from fastcifar.errors import InputError
from fastcifar import OddLabels

README = Path(__file__).resolve().parents[1] / "README.md"


NARROW = (16, 64, 64)  # a quarter of airbench94's widths: what these tests check is not width


def learnable_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n uint8 32x32 images whose class (0..9) is their colour, under noise: a net learns
    them in a few steps."""
    labels = np.arange(n) % 10
    colours = np.random.default_rng(0).integers(0, 256, (10, 3))  # the same for every split
    noise = np.random.default_rng(seed).normal(0, 40, (n, 32, 32, 3))
    images = np.clip(colours[labels][:, None, None, :] + noise, 0, 255).astype(np.uint8)
    return images, labels


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the examples' run folders go here
    train_images, train_labels = learnable_images(1000, seed=1)
    test_images, test_labels = learnable_images(100, seed=2)
    return dict(train_images=train_images, train_labels=train_labels,
                test_images=test_images, test_labels=test_labels)


def readme_api_examples() -> list[str]:
    section = README.read_text().split("## Python API", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_the_readme_api_examples_run_as_written(tiny, capsys, monkeypatch):
    """As written, but at a quarter of the width (what they show is not width: at full
    width they took most of a minute)."""
    train = fastcifar.train
    monkeypatch.setattr(fastcifar, "train",
                        lambda *args, **kwargs: train(*args, **{"widths": NARROW, **kwargs}))
    examples = readme_api_examples()
    assert len(examples) >= 4, "the README's Python API section has lost its examples"
    namespace = dict(tiny)
    for example in examples:  # each block continues from the one before, as a reader would
        exec(compile(example, "README.md", "exec"), namespace)
    result = namespace["result"]
    assert isinstance(result, fastcifar.TrainResult) and result.runs[0].seconds > 0
    assert Path("runs/my-run/model.pt").is_file()


def test_a_short_run_on_in_memory_data_learns_and_reports_statistics(tiny):
    data = fastcifar.ImageData(tiny["train_images"], tiny["train_labels"],
                               tiny["test_images"], tiny["test_labels"])
    result = fastcifar.train("airbench94", data=data, runs=2, epochs=1, batch_size=250,
                             widths=NARROW, verbose=False)
    accuracies = [r.accuracy for r in result.runs]
    assert [r.seed for r in result.runs] == [0, 1]
    assert result.accuracy.mean == pytest.approx(np.mean(accuracies))
    low, high = result.accuracy.ci95
    assert low <= result.accuracy.mean <= high
    assert min(accuracies) > 0.5, "ten colours under noise: a chance run would score 0.1"
    assert not Path("runs").exists(), "out=None writes nothing"
    # only the last network is kept: 200 runs would otherwise hold 200 networks
    assert result.runs[0].model is None and result.runs[1].model is result.model


def test_a_run_shorter_than_the_lookahead_period_keeps_its_training(tiny):
    """4 steps, lookahead every 5: the average never updated, so it must not replace the
    trained weights at the end (it once did, and such runs scored at chance)."""
    data = fastcifar.ImageData(tiny["train_images"], tiny["train_labels"],
                               tiny["test_images"], tiny["test_labels"])
    result = fastcifar.train("airbench94", data=data, epochs=1, batch_size=250, widths=NARROW,
                             verbose=False)
    torch.manual_seed(0)
    untrained = fastcifar.RECIPES["airbench94"].build_model(result.config, 10)
    head = result.model.head.weight.detach()
    assert not torch.allclose(head, untrained.head.weight.to(head.dtype))
    assert result.runs[0].accuracy > 0.5


def test_a_subset_trains_on_exactly_the_chosen_images(tiny):
    data = fastcifar.ImageData(tiny["train_images"], tiny["train_labels"],
                               tiny["test_images"], tiny["test_labels"])
    keep = np.flatnonzero(data.train_labels < 5)
    subset = data.subset(keep)
    assert len(subset.train_labels) == len(keep) and set(subset.train_labels) == set(range(5))
    np.testing.assert_array_equal(subset.train_images, data.train_images[keep])
    assert subset.test_images is data.test_images
    mask = data.train_labels < 5
    np.testing.assert_array_equal(data.subset(mask).train_labels, subset.train_labels)
    with pytest.raises(InputError, match="below the 1000 training images"):
        data.subset([0, 1000])


def test_channels_first_tensors_are_taken_as_torchvision_gives_them(tiny):
    nchw = torch.from_numpy(tiny["train_images"]).permute(0, 3, 1, 2)
    data = fastcifar.ImageData(nchw, torch.from_numpy(tiny["train_labels"]),
                               tiny["test_images"], tiny["test_labels"])
    np.testing.assert_array_equal(data.train_images, tiny["train_images"])
    assert data.classes == tuple(str(c) for c in range(10))
    with pytest.raises(InputError, match="uint8 of shape"):
        fastcifar.ImageData(tiny["train_images"].astype(np.float32), tiny["train_labels"],
                            tiny["test_images"], tiny["test_labels"])


def test_labels_not_from_0_or_a_class_without_training_images_are_said(tiny):
    images, labels = tiny["train_images"], tiny["train_labels"]
    with pytest.warns(OddLabels, match=r"labels run 5\.\.14 and no classes were given, so "
                                       r"there are 15 classes, 0\.\.4 without images"):
        data = fastcifar.ImageData(images, labels + 5, tiny["test_images"],
                                   tiny["test_labels"] + 5)
    assert len(data.classes) == 15
    kept = labels != 3
    with pytest.warns(OddLabels, match=r"1 of 10 classes have no training images \('3'\)"):
        fastcifar.ImageData(images[kept], labels[kept], tiny["test_images"], tiny["test_labels"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every class present, from 0: nothing said
        fastcifar.ImageData(images, labels, tiny["test_images"], tiny["test_labels"])


@pytest.mark.parametrize("overrides, message", [
    ({"lr_typo": 1.0}, "has no hyperparameter 'lr_typo'"),
    ({"lr": "fast"}, "lr='fast': expected a number"),
    ({"lr": float("nan")}, "expected a finite number"),
    ({"batch_size": 2.5}, "expected an integer"),
    ({"residual": 1}, "expected true or false"),
    ({"widths": (64, "x")}, "expected a number|expected an integer"),
])
def test_keyword_hyperparameters_are_checked_like_set(tiny, overrides, message):
    with pytest.raises(InputError, match=message):
        fastcifar.train("airbench94", data=fastcifar.ImageData(**{
            k: tiny[k] for k in ("train_images", "train_labels", "test_images",
                                 "test_labels")}), **overrides)


def test_set_refuses_non_finite_numbers(capsys):
    from fastcifar.cli import main
    assert main(["train", "--set", "lr=nan", "--device", "cpu"]) == 2
    assert "fastcifar: error: --set lr=nan: expected a finite number" in capsys.readouterr().err


def test_a_run_folder_gives_back_its_network_and_refuses_a_second_session(tiny):
    data = fastcifar.ImageData(tiny["train_images"], tiny["train_labels"],
                               tiny["test_images"], tiny["test_labels"])
    result = fastcifar.train("airbench94", data=data, epochs=1, batch_size=250, out="run",
                             widths=NARROW, verbose=False)
    model = fastcifar.load_model("run")
    assert not model.training and next(model.parameters()).dtype == torch.float32
    accuracy = fastcifar.evaluate(model, tiny["test_images"], tiny["test_labels"], tta_level=2)
    assert accuracy == pytest.approx(result.runs[0].accuracy, abs=1e-6)
    with pytest.raises(InputError, match="already holds a run.*--resume run"):
        fastcifar.train("airbench94", data=data, out="run")
    with pytest.raises(InputError, match="in-memory data: pass it again"):
        fastcifar.resume("run")


def test_lr_from_finder_applies_without_a_run_folder(tiny, monkeypatch):
    from fastcifar.sessions import session
    calls = []

    def finder(path, recipe, config, *args, save=None, **kwargs):
        calls.append((path, save))
        return dataclasses.replace(config, lr=config.lr / 2), "lr from the finder"

    monkeypatch.setattr(session, "lr_from_finder", finder)
    data = fastcifar.ImageData(**{k: tiny[k] for k in ("train_images", "train_labels",
                                                       "test_images", "test_labels")})
    result = fastcifar.train("airbench94", data=data, epochs=1, batch_size=250, verbose=False,
                             widths=NARROW, lr_from_finder=fastcifar.FINDER)
    assert calls == [(None, None)]  # run (no saved file), and nowhere to save its result
    assert result.config.lr == fastcifar.RECIPES["airbench94"].config.lr / 2


def test_a_subset_is_data_drawn_by_its_own_seed_the_same_for_every_run(tiny):
    """Run 2 of seed=0, runs=2 trains what seed=1 alone trains, bitwise: --subset and
    --test-subset are drawn by subset_seed, not by the run's seed; another subset_seed
    draws other images, and config.json records it."""
    data = fastcifar.ImageData(tiny["train_images"], tiny["train_labels"],
                               tiny["test_images"], tiny["test_labels"])
    quick = dict(data=data, subset=500, test_subset=50, epochs=1, batch_size=100,
                 widths=(16, 32, 32), verbose=False)

    def recorded(run):  # all but the seconds
        epochs = [{k: v for k, v in dataclasses.asdict(e).items() if k != "train_seconds"}
                  for e in run.epochs]
        return run.accuracy, run.accuracy_no_tta, epochs

    battery = fastcifar.train("airbench94", seed=0, runs=2, **quick)
    alone = fastcifar.train("airbench94", seed=1, **quick)
    assert recorded(battery.runs[1]) == recorded(alone.runs[0])
    other = fastcifar.train("airbench94", seed=1, subset_seed=1, out="other", **quick)
    assert recorded(other.runs[0])[2] != recorded(alone.runs[0])[2]
    assert json.loads(Path("other/config.json").read_text())["subset_seed"] == 1
    for bad in ("1", 1.5, -1, True):
        with pytest.raises(InputError, match="subset_seed .*must be an integer of 0 or more"):
            fastcifar.train("airbench94", subset_seed=bad, **quick)


def test_a_run_folder_from_before_subset_seed_resumes_with_the_subsets_it_drew(tiny,
                                                                                monkeypatch):
    """Such a folder drew its subsets with --seed: resumed, it draws the same ones (were
    they others, the data's digest would differ and the resume would be refused)."""
    from fastcifar.sessions import resume as resuming, session
    data = fastcifar.ImageData(tiny["train_images"], tiny["train_labels"],
                               tiny["test_images"], tiny["test_labels"])
    fastcifar.train("airbench94", data=data, seed=3, subset=500, subset_seed=3, epochs=1,
                    batch_size=100, widths=(16, 32, 32), out="old", verbose=False)
    config = json.loads(Path("old/config.json").read_text())
    del config["subset_seed"]
    Path("old/config.json").write_text(json.dumps(config))
    settings = []
    real_session = session.Session
    monkeypatch.setattr(resuming, "Session",
                        lambda *args, **kw: settings.append(args[2]) or real_session(*args, **kw))
    fastcifar.resume("old", data=data, verbose=False)
    assert settings[0].subset_seed == 3
