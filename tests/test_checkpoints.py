"""Checkpoints: a resumed run ends exactly where an uninterrupted one does, and a damaged
checkpoint is refused without touching the good ones."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

import fastcifar
from fastcifar.cli import main
from fastcifar.errors import InputError
from fastcifar.recipes import get_recipe
from fastcifar.report.records import MODEL, read_finished_runs
from fastcifar.train import loop
from fastcifar.train.checkpoint import BEST, LAST, CheckpointFolder, load_checkpoint
from fastcifar.data.loader import DeviceData
from fastcifar.train.loop import train_run


class Interrupt(Exception):
    pass


def interrupt_after(epochs: int):
    def on_epoch(record):
        if record.epoch == epochs:
            raise Interrupt
    return on_epoch


def small_config(name: str):
    recipe = get_recipe(name)
    changes = dict(batch_size=256, epochs=3, tta_level=0)
    if "widths" in {f.name for f in dataclasses.fields(recipe.config)}:
        changes["widths"] = (16, 32, 32) if name.startswith("airbench") else (8, 16, 16, 32)
    if "select_keep" in {f.name for f in dataclasses.fields(recipe.config)}:
        changes["select_keep"] = 96
    return recipe, dataclasses.replace(recipe.config, **changes)


def assert_same_state(a: dict, b: dict, path="state"):
    assert type(a) is type(b), path
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            assert_same_state(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_state(x, y, f"{path}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), path
    elif ".seconds" in path or "train_seconds" in path:
        pass  # the wall clock differs, of course
    else:
        assert a == b, path


# lookahead + alternating flip + a frozen bias; Muon + a group on its own schedule;
# an EMA evaluation model + GhostBatchNorm; a proxy choosing the examples
@pytest.mark.parametrize("name", ["airbench94", "airbench94_muon", "bag_of_tricks",
                                  "airbench96_faster"])
def test_interrupted_and_resumed_run_ends_with_the_same_weights(name, small_cifar10, tmp_path):
    recipe, config = small_config(name)
    data = DeviceData.from_dataset(small_cifar10.balanced_subset(1024), torch.device("cpu"))
    cpu = torch.device("cpu")

    whole = train_run(recipe, config, data, cpu, seed=5,
                      checkpoints=CheckpointFolder(tmp_path / "whole"))
    with pytest.raises(Interrupt):
        train_run(recipe, config, data, cpu, seed=5, on_epoch=interrupt_after(1),
                  checkpoints=CheckpointFolder(tmp_path / "cut"))
    assert load_checkpoint(tmp_path / "cut" / LAST)["epoch"] == 1
    torch.manual_seed(1234)  # whatever happened in between must not matter
    resumed = train_run(recipe, config, data, cpu, seed=5,
                        checkpoints=CheckpointFolder(tmp_path / "cut"))

    assert resumed.accuracy == whole.accuracy
    assert [e.val_accuracy for e in resumed.epochs] == [e.val_accuracy for e in whole.epochs]
    a, b = (load_checkpoint(tmp_path / run / LAST) for run in ("whole", "cut"))
    assert a["epoch"] == b["epoch"] == 3
    assert_same_state(a, b)


def test_checkpoints_load_with_weights_only_and_hold_the_run_state(small_cifar10, tmp_path):
    recipe, config = small_config("airbench94")
    data = DeviceData.from_dataset(small_cifar10.balanced_subset(512), torch.device("cpu"))
    config = dataclasses.replace(config, epochs=2)
    train_run(recipe, config, data, torch.device("cpu"), seed=0,
              checkpoints=CheckpointFolder(tmp_path))
    state = torch.load(tmp_path / LAST, weights_only=True)
    assert {"model", "optimizers", "schedulers", "average", "loader", "rng", "epoch", "step",
            "config", "records", "recipe", "seed"} <= set(state)
    assert state["recipe"] == "airbench94" and state["config"]["batch_size"] == 256
    assert state["step"] == 2 * (512 // 256) and state["schedulers"][0]["step"] == 4
    assert (tmp_path / BEST).exists()


def test_best_checkpoint_is_replaced_only_by_a_better_epoch(tmp_path):
    folder = CheckpointFolder(tmp_path)
    for epoch, accuracy in enumerate([0.5, 0.7, 0.6], start=1):
        folder.save({"epoch": epoch}, accuracy)
    assert load_checkpoint(tmp_path / LAST)["epoch"] == 3
    assert load_checkpoint(tmp_path / BEST)["epoch"] == 2
    assert CheckpointFolder(tmp_path).resume_state()["best_accuracy"] == 0.7


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_a_damaged_checkpoint_is_refused_and_best_is_left_alone(damage, tmp_path):
    folder = CheckpointFolder(tmp_path)
    folder.save({"epoch": 1, "weights": torch.randn(1000)}, 0.5)
    best = (tmp_path / BEST).read_bytes()
    last = tmp_path / LAST
    last.write_bytes({"truncated": last.read_bytes()[:len(best) // 2],
                      "garbage": b"not a checkpoint at all" * 10, "empty": b""}[damage])
    with pytest.raises(InputError, match="truncated or corrupt.*To go on, delete it and "
                                         "--resume again"):
        CheckpointFolder(tmp_path).resume_state()
    assert (tmp_path / BEST).read_bytes() == best
    last.unlink()  # as the message says: the run then starts again
    assert CheckpointFolder(tmp_path).resume_state() is None


def test_a_file_that_is_not_a_fastcifar_checkpoint_is_refused(tmp_path):
    torch.save({"model": {}}, tmp_path / "other.pt")
    with pytest.raises(InputError, match="not a checkpoint written by `fastcifar train`"):
        load_checkpoint(tmp_path / "other.pt")


TINY = ["--device", "cpu", "--epochs", "3", "--set", "batch_size=30", "--set", "tta_level=0",
        "--set", "widths=8,16,16", "--no-progress"]


def test_cli_resume_continues_an_interrupted_run(tiny_archive, tmp_path, monkeypatch, capsys):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert main(["train", "--data", str(tiny_archive), *TINY, "--checkpoints",
                 "--out", str(whole)]) == 0

    real = loop.evaluation_metrics
    calls = []

    def interrupt_in_epoch_2(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "evaluation_metrics", interrupt_in_epoch_2)
    assert main(["train", "--data", str(tiny_archive), *TINY, "--checkpoints",
                 "--out", str(cut)]) == 130
    assert not (cut / "summary.json").exists()
    assert f"`fastcifar train --resume {cut}` continues" in capsys.readouterr().err
    monkeypatch.setattr(loop, "evaluation_metrics", real)

    # killed after last.pt was written but before the epoch's metrics row: the checkpoint's
    # records are the truth
    (cut / "metrics.jsonl").write_text("")
    assert main(["train", "--resume", str(cut)]) == 0
    printed = capsys.readouterr().out
    assert "resuming" in printed and "continuing from epoch 1" in printed
    a, b = (json.loads((d / "summary.json").read_text()) for d in (whole, cut))
    assert a["runs"][0]["accuracy"] == b["runs"][0]["accuracy"]
    rows = [json.loads(line) for line in (cut / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert_same_state(load_checkpoint(whole / LAST), load_checkpoint(cut / LAST))

    assert main(["train", "--resume", str(cut)]) == 0  # again: there is nothing left to do
    printed = capsys.readouterr().out
    assert "is already finished: 1 of 1 run(s); nothing to train" in printed
    assert "| eval" not in printed


def test_resume_says_when_a_run_kept_no_checkpoints(tiny_archive, tmp_path, monkeypatch,
                                                    capsys):
    real, calls = loop.evaluation_metrics, []

    def interrupt_in_run_2(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:  # run 2's first epoch
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "evaluation_metrics", interrupt_in_run_2)
    out = tmp_path / "run"
    assert main(["train", "--data", str(tiny_archive), *TINY, "--runs", "2",
                 "--out", str(out)]) == 130
    monkeypatch.setattr(loop, "evaluation_metrics", real)
    capsys.readouterr()
    assert main(["train", "--resume", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "1 of 2 run(s) finished; this run kept no checkpoints, so run 2 starts over" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert [r["seed"] for r in summary["runs"]] == [0, 1]


def test_cli_resume_refuses_new_settings_and_non_run_folders(tiny_archive, tmp_path, capsys):
    code = main(["train", "--resume", str(tmp_path), "--recipe", "hlb"])
    assert code == 2 and "drop --recipe" in capsys.readouterr().err
    code = main(["train", "--resume", str(tmp_path)])
    assert code == 2 and "expected a run folder" in capsys.readouterr().err


def test_a_full_disk_while_checkpointing_is_one_message_and_keeps_the_last_checkpoint(
        tmp_path, monkeypatch):
    from fastcifar.errors import RunFailed
    folder = CheckpointFolder(tmp_path)
    folder.save({"epoch": 1}, 0.5)
    before = (tmp_path / LAST).read_bytes()

    def disk_full(*args, **kwargs):
        raise RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(RunFailed, match=f"could not write the checkpoint {tmp_path / LAST}"):
        folder.save({"epoch": 2}, 0.6)
    assert (tmp_path / LAST).read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [BEST, LAST]  # no temporary left


def full_disk_for(name: str, after: int = 0):
    """torch.save failing as it does on a full disk, for the file `name` only, after `after`
    good saves of it."""
    real, saves = torch.save, []

    def save(obj, f, *args, **kwargs):
        if Path(f).name.startswith(f".{name}."):  # atomic_path's temporary name
            saves.append(f)
            if len(saves) > after:
                raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected "
                                   "pos 4416 vs 4310")
        return real(obj, f, *args, **kwargs)
    return save


@pytest.mark.parametrize("runs, failing", [(1, "--checkpoints"), (2, "--no-checkpoints")])
def test_a_full_disk_while_saving_the_model_leaves_the_run_unfinished_for_resume(
        runs, failing, tiny_archive, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    args = ["train", "--data", str(tiny_archive), *TINY, "--runs", str(runs), failing]
    with monkeypatch.context() as patch:  # the disk is full as the last run's model is saved
        patch.setattr(torch, "save", full_disk_for(MODEL, after=runs - 1))
        assert main([*args, "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.splitlines() == [
        f"fastcifar: error: could not write {out / MODEL} ([enforce fail at "
        f"inline_container.cc:672] . unexpected pos 4416 vs 4310); the run that just ended is "
        f"not recorded as finished: free space, then `fastcifar train --resume {out}` "
        f"completes it (runs recorded as finished before it are kept)"]
    # The folder does not contradict itself: model.pt is the last run summary.json records.
    assert [r["seed"] for r in read_finished_runs(out)] == list(range(runs - 1))
    assert (out / MODEL).exists() == (runs > 1)
    assert not list(out.rglob("*.part"))

    # space freed
    assert main(["train", "--resume", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"{runs - 1} of {runs} run(s) finished" in printed
    if failing == "--checkpoints":
        assert "continuing from epoch 3" in printed  # nothing to train again
    assert [r["seed"] for r in read_finished_runs(out)] == list(range(runs))
    assert fastcifar.load_model(out) is not None


def test_resume_trains_again_the_last_run_of_a_folder_recorded_finished_without_its_model(
        tiny_archive, tmp_path, capsys):
    """What a fastcifar that wrote summary.json before model.pt left on a full disk."""
    out = tmp_path / "run"
    assert main(["train", "--data", str(tiny_archive), *TINY, "--out", str(out)]) == 0
    (out / MODEL).unlink()
    capsys.readouterr()
    assert main(["train", "--resume", str(out)]) == 0
    printed = capsys.readouterr().out
    assert (f"resuming {out}: model.pt is missing though summary.json records all 1 run(s) "
            f"finished (writing it failed), so run 1 counts as unfinished; 0 of 1 run(s) "
            f"finished; this run kept no checkpoints, so run 1 starts over") in printed
    assert "already finished" not in printed
    assert (out / MODEL).exists() and len(read_finished_runs(out)) == 1
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]  # run 1's epochs once, not twice
