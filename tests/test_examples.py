"""Per-example records (--record-examples) and their scores (fastcifar examples): the
records are the training step's own outputs, by each image's position; on real data with
known answers, flipped labels end with the lowest AUM and confidence, and an easy image
seen many times is never forgotten; an image an epoch's dropped partial batch left out is
scored from the epochs that showed it; a damaged record or a full disk is one line."""

from __future__ import annotations

import csv
import errno

import numpy as np
import pytest
import torch

import fastcifar
from fastcifar.cli import main
from fastcifar.data import ImageData
from fastcifar.errors import InputError
from fastcifar.report.example_scores import (REGIONS, forgetting_events, nearest_seen, read_examples,
                                       score)
from fastcifar.train.example_records import ExampleRecorder

FLIPPED, COPIES = 200, 40
NARROW = dict(widths=(16, 64, 64), batch_size=200, label_smoothing=0.0)


def test_the_recorder_keeps_loss_right_margin_and_error_by_index():
    recorder = ExampleRecorder(5, torch.device("cpu"))
    logits = torch.tensor([[2.0, 0.0, 1.0], [0.0, 3.0, -1.0]])
    recorder.record(torch.tensor([3, 0]), logits, torch.tensor([0, 2]))
    recorder.end_epoch()
    records = recorder.arrays()
    assert records["correct"].tolist() == [[0, -1, -1, 1, -1]]
    assert records["margin"][0, 3] == pytest.approx(1.0)  # 2 - max(0, 1)
    assert records["margin"][0, 0] == pytest.approx(-4.0)  # -1 - 3
    p = logits.softmax(1)
    assert records["loss"][0, 3] == pytest.approx(-p[0, 0].log().item(), rel=1e-6)
    error = (p[1] - torch.tensor([0.0, 0.0, 1.0])).norm().item()
    assert records["error"][0, 0] == pytest.approx(error, rel=1e-6)
    assert np.isnan(records["loss"][0, [1, 2, 4]]).all()  # not seen this epoch


def test_forgetting_counts_right_to_wrong_over_the_epochs_seen():
    # one run, 5 epochs, 4 images: -1 = not seen that epoch
    correct = np.array([[[1, 0, 0, 1], [0, 0, -1, 1], [1, 0, 1, 1], [-1, 0, 0, 1],
                         [0, 0, 1, 1]]])
    # image 0: right, wrong, right, (unseen), wrong: twice; image 1 never learned: 5 epochs
    assert forgetting_events(correct).tolist() == [[2, 5, 1, 0]]


def test_el2n_takes_an_image_from_the_nearest_epoch_that_showed_it():
    """Recipes drop an epoch's last partial batch: an image unseen at the EL2N epoch keeps
    its error from the epoch before, or, shown only later, from the first after (NaN
    before these fixes: 848 of 50,000 an epoch)."""
    nan = np.nan
    error = np.array([[[0.9, 0.8, 0.7], [0.5, nan, 0.6], [nan, nan, 0.2]],  # run 0
                      [[0.7, nan, 0.9], [0.3, 0.4, nan], [0.1, 0.2, 0.3]]])  # run 1
    assert np.allclose(nearest_seen(error, 2), [[0.5, 0.8, 0.6], [0.3, 0.4, 0.9]])
    assert np.allclose(nearest_seen(error, 3), [[0.5, 0.8, 0.2], [0.1, 0.2, 0.3]])
    later = error[:, 1:]  # run 0 shows image 1 in neither epoch, run 1 image 2 only later
    assert np.allclose(nearest_seen(later, 1), [[0.5, nan, 0.6], [0.3, 0.4, 0.3]],
                       equal_nan=True)
    examples = {"in_subset": np.ones(3, bool), "loss": np.zeros((2, 3, 3)),
                "correct": np.ones((2, 3, 3), np.int8), "margin": np.ones((2, 3, 3)),
                "error": error, "train_labels": np.zeros(3, int), "classes": np.array(["a"])}
    assert np.allclose(score(examples, el2n_epoch=2).el2n, [0.4, 0.6, 0.75])
    examples.update(error=later, loss=np.zeros((2, 2, 3)), margin=np.ones((2, 2, 3)),
                    correct=np.where(np.isnan(later), -1, 1).astype(np.int8))
    # each image's mean over the runs that showed it
    assert np.allclose(score(examples, el2n_epoch=1).el2n, [0.4, 0.4, 0.45])


def dropping_record(images: int = 300, batch: int = 160, epochs: int = 2, runs: int = 2,
                    seed: int = 0) -> dict[str, np.ndarray]:
    """A hand-made examples.npz of `runs` runs that each epoch show the images in a new
    order in full batches only, dropping the last partial one (by default nearly half, so
    that some images no epoch of either run shows); its losses, margins and errors agree
    with whether each image was classified right."""
    rng = np.random.default_rng(seed)
    shape = (runs, epochs, images)
    shown = np.zeros(shape, bool)
    for run in range(runs):
        for epoch in range(epochs):
            shown[run, epoch, rng.permutation(images)[:images // batch * batch]] = True
    correct = np.where(shown, rng.random(shape) < 0.6, -1).astype(np.int8)
    p = np.where(correct == 1, rng.uniform(0.5, 1, shape), rng.uniform(0.01, 0.5, shape))
    margin = np.where(correct == 1, 1, -1) * rng.uniform(0.1, 3, shape)
    return {"loss": np.where(shown, -np.log(p), np.nan), "correct": correct,
            "margin": np.where(shown, margin, np.nan),
            "error": np.where(shown, np.sqrt(2) * (1 - p), np.nan),
            "in_subset": np.ones(images, bool), "train_labels": np.arange(images) % 10,
            "classes": np.array([f"class{c}" for c in range(10)])}


def test_every_image_shown_at_least_once_has_every_score():
    """An image some epoch left out is scored over the epochs (and runs) that showed it;
    one no epoch of any run showed is left out and listed, not a NaN in every median."""
    examples = dropping_record()
    shown = (examples["correct"] >= 0).sum(axis=(0, 1))
    assert (shown == 0).any() and (shown == 1).any()  # the case at hand
    scores = score(examples)
    assert scores.never_shown.tolist() == np.flatnonzero(shown == 0).tolist()
    assert scores.index.tolist() == np.flatnonzero(shown > 0).tolist()
    assert scores.seen.tolist() == shown[shown > 0].tolist()
    for name in ("forgetting", "el2n", "aum", "confidence", "variability", "correctness"):
        assert np.isfinite(getattr(scores, name)).all(), name
    once = scores.seen == 1
    assert (scores.variability[once] == 0).all()  # the spread of one value
    assert np.isfinite(scores.borders()).all()
    counts = scores.region_counts()
    assert (counts > 0).all() and counts.sum() == len(scores.index)


@pytest.fixture(scope="module")
def noisy(small_cifar10):
    """small_cifar10 with 200 labels flipped to another class and one image added 40 times,
    trained 2 runs of 8 epochs with records."""
    rng = np.random.default_rng(1)
    data = small_cifar10
    labels = data.train_labels.copy()
    flipped = rng.choice(len(labels), FLIPPED, replace=False)
    labels[flipped] = (labels[flipped] + rng.integers(1, 10, FLIPPED)) % 10
    copy_of = int(np.setdiff1d(np.arange(len(labels)), flipped)[0])
    images = np.concatenate([data.train_images, np.repeat(data.train_images[[copy_of]],
                                                          COPIES, axis=0)])
    labels = np.concatenate([labels, np.repeat(labels[[copy_of]], COPIES)])
    noisy = ImageData(images, labels, data.test_images[:200], data.test_labels[:200],
                      data.classes, data.name)
    result = fastcifar.train("airbench94", data=noisy, runs=2, epochs=8, device="cpu",
                             record_examples=True, verbose=False, progress=False, **NARROW)
    return result, flipped, len(data.train_labels) + np.arange(COPIES)


def test_each_record_is_its_step_s_own_output(tiny_archive, monkeypatch):
    """Every step's outputs, captured as the loop hands them over: the records hold their
    cross-entropy, rightness and margin at the images' places (no label smoothing here)."""
    import torch.nn.functional as F

    from fastcifar.train import example_records as recorder
    steps = []
    real = recorder.ExampleRecorder.record

    def capture(self, index, outputs, labels):
        steps.append((index.clone(), outputs.detach().float().clone(), labels.clone()))
        real(self, index, outputs, labels)

    monkeypatch.setattr(recorder.ExampleRecorder, "record", capture)
    result = fastcifar.train("airbench94", data=tiny_archive, epochs=2, batch_size=30,
                             widths=(8, 16, 16), label_smoothing=0.0, record_examples=True,
                             device="cpu", verbose=False, progress=False)
    records = result.examples
    per_epoch = len(steps) // 2
    for i, (index, logits, labels) in enumerate(steps):
        epoch = i // per_epoch
        loss = F.cross_entropy(logits, labels, reduction="none").numpy()
        assert records["loss"][0, epoch, index.numpy()] == pytest.approx(loss, rel=1e-5)
        right = (logits.argmax(1) == labels).numpy()
        assert (records["correct"][0, epoch, index.numpy()] == right).all()
    # the epoch's table row: its last batch's loss, as airbench logs it
    last = F.cross_entropy(steps[-1][1], steps[-1][2]).item()
    assert result.runs[0].epochs[-1].train_loss == pytest.approx(last, rel=1e-5)


def test_the_records_are_the_steps_own_outputs(noisy):
    result, _, _ = noisy
    examples = result.examples
    assert examples["loss"].shape == (2, 8, 2040) and examples["test_logits"].shape == (2, 200, 10)
    for run, records in zip(result.runs, examples["loss"]):
        seen = (~np.isnan(records)).sum(1)
        assert (seen == 2040 // 200 * 200).all()  # the last partial batch is dropped
    final = examples["test_logits"].argmax(-1) == examples["test_labels"][None]
    assert final.mean(1) == pytest.approx([r.accuracy for r in result.runs])


def test_flipped_labels_have_the_lowest_aum_and_confidence(noisy):
    result, flipped, _ = noisy
    scores = score(result.examples)
    is_flipped = np.isin(scores.index, flipped)
    for name in ("aum", "confidence"):
        values = getattr(scores, name)
        lowest = np.argsort(values)[:FLIPPED]
        assert values[is_flipped].mean() < values[~is_flipped].mean(), name
        assert is_flipped[lowest].mean() > 0.5, name  # 10% of the data, most of the lowest
    assert scores.forgetting[is_flipped].mean() > scores.forgetting[~is_flipped].mean()


def test_an_easy_image_seen_many_times_is_never_forgotten(noisy):
    result, _, copies = noisy
    scores = score(result.examples)
    assert (scores.forgetting[np.isin(scores.index, copies)] == 0).all()
    assert scores.correctness[np.isin(scores.index, copies)].min() > 0.8


def test_the_command_writes_scores_and_a_data_map(noisy, tmp_path, capsys):
    result, _, _ = noisy
    np.savez(tmp_path / "examples.npz", **result.examples)
    assert main(["examples", str(tmp_path), "--per-class", "2"]) == 0
    printed = capsys.readouterr().out
    assert "Toneva et al. 2019" in printed and "Pleiss et al. 2020" in printed
    assert (tmp_path / "data_map.png").stat().st_size > 10_000
    rows = (tmp_path / "scores.csv").read_text().splitlines()
    assert len(rows) == 2041 and rows[0].startswith("index,label,class,forgetting_events")
    assert main(["examples", str(tmp_path / "none")]) == 2
    assert "train with --record-examples" in capsys.readouterr().err
    with pytest.raises(InputError, match="--el2n-epoch must be from 1 to the 8"):
        score(read_examples(tmp_path), el2n_epoch=9)


def test_a_subset_maps_back_to_the_whole_training_set(tmp_path):
    from conftest import make_tiny_archive
    archive = make_tiny_archive(tmp_path, train=40)
    result = fastcifar.train("airbench94", data=archive, subset=60, epochs=2, device="cpu",
                             record_examples=True, verbose=False, progress=False,
                             widths=(8, 16, 16), batch_size=15, out=tmp_path / "run")
    saved = read_examples(tmp_path / "run")
    assert saved["in_subset"].sum() == 60 and saved["loss"].shape == (1, 2, 120)
    assert np.isnan(saved["loss"][..., ~saved["in_subset"]]).all()
    assert not np.isnan(saved["loss"][..., saved["in_subset"]]).any()
    assert np.array_equal(saved["correct"], result.examples["correct"])
    with pytest.raises(InputError, match="not with --ddp"):
        fastcifar.train("airbench94", data=archive, record_examples=True, ddp=True,
                        verbose=False)


@pytest.mark.filterwarnings("error")  # none may reach the user
def test_a_run_that_drops_partial_batches_reports_finite_scores(small_cifar10, tmp_path, capsys):
    """300 real images in batches of 64 drop 44 an epoch: after 2 epochs some images were
    shown once, a few never; the report counts those and scores the others, finitely."""
    data = small_cifar10
    few = ImageData(data.train_images[:300], data.train_labels[:300], data.test_images[:100],
                    data.test_labels[:100], data.classes, data.name)
    fastcifar.train("airbench94", data=few, epochs=2, device="cpu", record_examples=True,
                    verbose=False, progress=False, out=tmp_path / "run",
                    **{**NARROW, "batch_size": 64})
    shown = (read_examples(tmp_path / "run")["correct"] >= 0).sum(axis=(0, 1))
    never = int((shown == 0).sum())
    assert never > 0 and (shown == 1).any()  # the case at hand
    assert main(["examples", str(tmp_path / "run")]) == 0
    printed = capsys.readouterr().out
    assert "nan" not in printed
    assert f"{300 - never} of 300 training images scored ({never} never shown" in printed
    assert f"{(shown == 1).sum()} shown in one epoch only: variability 0" in printed
    rows = list(csv.DictReader((tmp_path / "run" / "scores.csv").read_text().splitlines()))
    assert len(rows) == 300 - never and all(int(r["epochs_seen"]) > 0 for r in rows)
    scores = [float(v) for r in rows for v in list(r.values())[3:9]]
    assert np.isfinite(scores).all()
    assert {r["region"] for r in rows} == set(REGIONS)  # each drawn, and every image in one
    assert (tmp_path / "run" / "data_map.png").stat().st_size > 10_000


@pytest.mark.filterwarnings("error")
def test_a_one_epoch_record_has_no_variability_forgetting_or_data_map(tmp_path, capsys):
    """One epoch gives each image one value: no spread to measure, nothing to forget; the
    report says so instead of drawing a map of zeros."""
    np.savez_compressed(tmp_path / "examples.npz", **dropping_record(epochs=1, runs=1))
    assert main(["examples", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "forgetting events (Toneva et al. 2019): needs 2 epochs, 1 recorded" in printed
    assert "needs 2 epochs, 1 recorded (variability): not drawn" in printed
    assert "nan" not in printed and not (tmp_path / "data_map.png").exists()
    rows = list(csv.DictReader((tmp_path / "scores.csv").read_text().splitlines()))
    assert {(r["forgetting_events"], r["variability"], r["region"]) for r in rows} \
        == {("nan", "nan", "")}
    assert np.isfinite([float(r["aum"]) for r in rows]).all()


def damage(path, how: str) -> None:
    """Write at `path` an examples.npz damaged `how`."""
    if how == "missing margin":
        np.savez_compressed(path, **{k: v for k, v in dropping_record().items()
                                     if k != "margin"})
        return
    if how == "mismatched shapes":
        np.savez_compressed(path, **{**dropping_record(), "in_subset": np.ones(7, bool)})
        return
    np.savez_compressed(path, **dropping_record())
    whole = path.read_bytes()
    middle = slice(len(whole) // 3, len(whole) // 3 + 100)
    damaged = whole[:middle.start] + bytes(b ^ 0x55 for b in whole[middle]) + whole[middle.stop:]
    path.write_bytes({"truncated": whole[:len(whole) // 2], "empty": b"",
                      "damaged": damaged}[how])


@pytest.mark.parametrize("how, expected", [
    ("truncated", "not a readable examples.npz"), ("empty", "not a readable examples.npz"),
    ("damaged", "not a readable examples.npz"),
    ("missing margin", "no margin in it"), ("mismatched shapes", "arrays of the wrong shapes")])
def test_a_damaged_record_is_one_line_naming_it(tmp_path, capsys, how, expected):
    """Exit 2, the file and what was expected in one line, and no --out folder made."""
    damage(tmp_path / "examples.npz", how)
    out = tmp_path / "report"
    assert main(["examples", str(tmp_path / "examples.npz"), "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and str(tmp_path / "examples.npz") in error
    assert expected in error and "expected" in error and not out.exists()


def test_an_unwritable_out_stops_before_the_scores(tmp_path, capsys, monkeypatch):
    np.savez_compressed(tmp_path / "examples.npz", **dropping_record())
    monkeypatch.setattr("fastcifar.report.example_scores.score", lambda *a: pytest.fail("scored"))
    (tmp_path / "a file").write_text("")
    out = tmp_path / "a file" / "report"
    assert main(["examples", str(tmp_path), "--out", str(out)]) == 2
    assert f"--out {out}: cannot write there" in capsys.readouterr().err


@pytest.mark.parametrize("failing", ["scores.csv", "data_map.png"])
def test_a_full_disk_writes_neither_file(tmp_path, capsys, monkeypatch, failing):
    """Both files are renamed into place only once both are written: a full disk leaves
    the report folder as it was, without half-written or temporary files."""
    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr({"scores.csv": "pathlib.Path.write_text",
                         "data_map.png": "matplotlib.figure.Figure.savefig"}[failing], no_space)
    np.savez_compressed(tmp_path / "examples.npz", **dropping_record())
    out = tmp_path / "report"
    assert main(["examples", str(tmp_path), "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert f"{out / failing}: cannot write it (No space left on device)" in error
    assert list(out.iterdir()) == []
