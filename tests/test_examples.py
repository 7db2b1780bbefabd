"""Per-example records (--record-examples) and their scores (fastcifar examples): the
records are the training step's own outputs, by each image's position; on real data with
known answers, flipped labels end with the lowest AUM and confidence, and an easy image
seen many times is never forgotten."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import fastcifar
from fastcifar.cli import main
from fastcifar.data import ImageData
from fastcifar.errors import InputError
from fastcifar.report.examples import forgetting_events, last_seen, read_examples, score
from fastcifar.train.examples import ExampleRecorder

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


def test_el2n_takes_an_image_from_the_last_epoch_that_showed_it():
    """Recipes drop an epoch's last partial batch: an image unseen at the EL2N epoch keeps
    its error from the epoch before (NaN before this fix: 848 of 50,000 an epoch)."""
    nan = np.nan
    error = np.array([[[0.9, 0.8, 0.7], [0.5, nan, 0.6], [nan, nan, 0.2]],  # run 0
                      [[0.7, nan, 0.9], [0.3, 0.4, nan], [0.1, 0.2, 0.3]]])  # run 1
    assert np.allclose(last_seen(error, 2), [[0.5, 0.8, 0.6], [0.3, 0.4, 0.9]])
    assert np.allclose(last_seen(error, 3), [[0.5, 0.8, 0.2], [0.1, 0.2, 0.3]])
    assert np.isnan(last_seen(error[:, 1:], 1)[0, 1])  # never shown yet: NaN
    examples = {"in_subset": np.ones(3, bool), "loss": np.zeros((2, 3, 3)),
                "correct": np.ones((2, 3, 3), np.int8), "margin": np.ones((2, 3, 3)),
                "error": error, "train_labels": np.zeros(3, int), "classes": np.array(["a"])}
    assert np.allclose(score(examples, el2n_epoch=2).el2n, [0.4, 0.6, 0.75])


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


def test_the_records_are_the_steps_own_outputs(noisy):
    result, _, _ = noisy
    examples = result.examples
    assert examples["loss"].shape == (2, 8, 2040) and examples["test_logits"].shape == (2, 200, 10)
    for run, records in zip(result.runs, examples["loss"]):
        # (no label smoothing: the training loss per example is the recorded cross-entropy)
        recorded = np.nanmean(records, axis=1)
        assert recorded == pytest.approx([e.train_loss for e in run.epochs], rel=1e-4)
        seen = (~np.isnan(records)).sum(1)
        assert (seen == 2040 // 200 * 200).all()  # the last partial batch is dropped
    right = (examples["correct"] == 1).sum(-1) / (examples["correct"] >= 0).sum(-1)
    assert right[0] == pytest.approx([e.train_accuracy for e in result.runs[0].epochs])
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
