"""`fastcifar tune`: an Optuna search whose trials are fastcifar runs, shared by workers."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import types

import pytest
from PIL import Image

optuna = pytest.importorskip("optuna", reason="tuning needs the tune extra (Optuna)")

from fastcifar.cli import main  # noqa: E402
from fastcifar.errors import InputError  # noqa: E402
from fastcifar.sessions.tune import tune  # noqa: E402
from fastcifar.sessions.tune_space import parse_space  # noqa: E402


def test_the_space_takes_ranges_log_ranges_ints_and_choices():
    dims = {d.name: d for d in parse_space(
        "lr=4:20:log, momentum=0.8:0.95, batch_size=64:256, flip=random|alternating",
        "airbench94")}
    assert dims["lr"].log and (dims["lr"].low, dims["lr"].high) == (4.0, 20.0)
    assert not dims["momentum"].log and isinstance(dims["momentum"].low, float)
    assert isinstance(dims["batch_size"].low, int)
    assert dims["flip"].choices == ("random", "alternating")


@pytest.mark.parametrize("space, message", [
    ("lrr=4:20", "has no hyperparameter 'lrr'"),
    ("lr=20:4", "expected low < high"),
    ("lr=0:4:log", "low > 0 on a log scale"),
    ("lr=4:20:exp", "expected lr=low:high"),
    ("lr=a:b", "--space lr=a: expected a number"),
    # each choice, and each end of a range, checked as the run would check it
    ("flip=random|sideways", "--space flip=sideways: flip must be one of"),
    ("tta_level=0|4", "--space tta_level=4: tta_level must be 0, 1, 2 or 3"),
    ("batch_size=0:512", "--space batch_size=0: batch_size must be at least 1"),
    ("flip=1:2", "flip is not a number"),
    ("lr=4:20,lr=5:6", "named twice"),
    ("", "names no hyperparameter"),
])
def test_a_bad_space_is_refused_before_any_work(space, message, tmp_path, capsys):
    code = main(["tune", "--space", space, "--out", str(tmp_path / "t"), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "--set" not in err, err
    assert not (tmp_path / "t").exists()


def test_a_study_left_by_another_space_is_refused_before_a_trial(tmp_path, capsys):
    """As a study from before spaces were checked up front: its trial 0 drew from
    flip=random|sideways and failed. Corrected, the space differs: one line, not Optuna's
    ValueError from the middle of a trial."""
    from optuna.distributions import CategoricalDistribution
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    out = tmp_path / "t"
    out.mkdir()
    storage = JournalStorage(JournalFileBackend(str(out / "study.journal")))
    study = optuna.create_study(storage=storage, study_name="airbench94-tune",
                                direction="maximize")
    trial = study.ask({"flip": CategoricalDistribution(["random", "sideways"])})
    study.tell(trial, state=optuna.trial.TrialState.FAIL)
    code = main(["tune", "--space", "flip=random|alternating", "--out", str(out),
                 "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and len(err.splitlines()) == 1, err
    assert ("searches flip=random|sideways; continue it with that --space, or give a new "
            "--out folder") in err
    assert len(study.get_trials()) == 1 and not (out / "trials").exists()


def test_a_study_keeps_the_space_it_started_with(tmp_path, monkeypatch):
    """Its first worker records the space; a worker given another is refused before its
    first trial, and the same space, written in another order, continues the study."""
    runs = []

    def one_run(recipe, out, **options):  # no training: what tune reads of a result
        runs.append(out)
        accuracy = 0.5 + 0.1 * len(runs)
        run = types.SimpleNamespace(accuracy=accuracy, accuracy_no_tta=accuracy, seconds=1.0)
        return types.SimpleNamespace(runs=[run])

    monkeypatch.setattr("fastcifar.sessions.tune.train", one_run)
    out = tmp_path / "t"
    options = dict(out=out, device="cpu", verbose=False, pruner="none")
    tune("airbench94", "lr=4:20:log,flip=random|alternating", 1, **options)
    for other in ("lr=2:20:log,flip=random|alternating", "lr=4:20,flip=random|alternating",
                  "lr=4:20:log,flip=random|none", "lr=4:20:log"):
        with pytest.raises(InputError, match=r"the study airbench94-tune in .*study.journal "
                           r"searches flip=random\|alternating,lr=4:20:log; continue it"):
            tune("airbench94", other, 2, **options)
    assert len(runs) == 1
    result = tune("airbench94", "flip=random|alternating, lr=4:20:log", 2, **options)
    assert len(runs) == 2 and [r["state"] for r in result.trials] == ["complete"] * 2


def test_pruned_trials_stop_after_the_epoch_that_pruned_them(tiny_archive, tmp_path):
    never_good_enough = optuna.pruners.ThresholdPruner(lower=1.1)  # prunes every trial
    result = tune("airbench94", "lr=2:20:log", 2, out=tmp_path / "t", pruner=never_good_enough,
                  data=str(tiny_archive), epochs=3, batch_size=30, device="cpu", verbose=False)
    assert [r["state"] for r in result.trials] == ["pruned", "pruned"]
    # A pruned trial's mid-run accuracy is not the objective: no value, and no dot in the plots.
    assert [r["value"] for r in result.trials] == [None, None]
    for row in result.trials:
        assert row["epochs"] == 1
        metrics = json.loads((tmp_path / "t" / "trials" / f"{row['number']:04d}" /
                              "metrics.jsonl").read_text().splitlines()[-1])
        assert metrics["epoch"] == 1, "the run stopped after its first epoch"
    assert result.best_value is None


def test_two_workers_share_one_study_and_run_each_trial_once(tiny_archive, tmp_path):
    out = tmp_path / "t"
    command = [sys.executable, "-m", "fastcifar", "tune", "--data", str(tiny_archive),
               "--space", "lr=2:20:log,momentum=0.5:0.9", "--trials", "4", "--epochs", "1",
               "--set", "batch_size=30", "--device", "cpu", "--pruner", "none", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    workers = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=env) for _ in range(2)]
    outputs = [w.communicate(timeout=600) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    rows = list(csv.DictReader((out / "trials.csv").open()))
    complete = [r for r in rows if r["state"] == "complete"]
    assert 4 <= len(complete) <= 5  # two workers may each start the last one at once
    numbers = [int(r["number"]) for r in rows]
    assert len(set(numbers)) == len(numbers)
    folders = sorted(p.name for p in (out / "trials").iterdir())
    assert folders == [f"{n:04d}" for n in sorted(numbers)], "one folder per trial"
    for r in complete:
        folder = out / "trials" / f"{int(r['number']):04d}"
        summary = json.loads((folder / "summary.json").read_text())
        assert len(summary["runs"]) == 1
        assert float(r["value"]) == pytest.approx(summary["runs"][0]["accuracy"])
        assert 2 <= float(r["lr"]) <= 20
    lines = [line for o, _ in outputs for line in o.splitlines()
             if line.startswith("fastcifar train --recipe airbench94")]
    assert lines and "--set batch_size=30" in lines[0] and "--set lr=" in lines[0]
    assert "--epochs 1 " in lines[0] and "--set epochs" not in lines[0]  # once, as given
    for png in ("history.png", "slice.png", "importances.png"):
        assert Image.open(out / png).size[0] > 300
    said = [line for o, _ in outputs for line in o.splitlines() if line.startswith("importances")]
    assert said and "complete trials: too few for fANOVA" in said[-1], "4 trials: a caveat"


def test_tune_refuses_a_storage_it_cannot_open(tmp_path):
    with pytest.raises(InputError, match="--storage"):
        tune("airbench94", "lr=2:20", 1, storage="nosuchdb://x", out=tmp_path / "t",
             device="cpu")


def test_a_diverging_trial_is_recorded_as_failed_and_the_search_goes_on(tiny_archive, tmp_path,
                                                                        capsys):
    """lr=1e30 diverges (the run stops with RunFailed): that trial fails, the others run."""
    every_value = optuna.samplers.BruteForceSampler()
    result = tune("airbench94", "lr=1e-3|1e30", 4, out=tmp_path / "t", data=str(tiny_archive),
                  epochs=1, batch_size=30, device="cpu", sampler=every_value)
    states = {r["lr"]: r["state"] for r in result.trials}
    assert states[1e30] == "fail" and states[1e-3] == "complete"
    failed = next(r for r in result.trials if r["state"] == "fail")
    assert "the loss became" in failed["error"]
    out = capsys.readouterr().out
    assert f"trial {failed['number']}: failed: the loss became" in out
    assert "Traceback" not in out


def test_settings_no_trial_can_run_with_stop_the_search_with_one_message(tiny_archive, tmp_path,
                                                                         capsys):
    code = main(["tune", "--space", "lr=4:20", "--data", str(tiny_archive), "--device", "cpu",
                 "--epochs", "1", "--trials", "3", "--out", str(tmp_path / "t")])
    err = capsys.readouterr().err
    assert code == 2 and "trial 0" in err and "batch_size=" in err, err
    assert "Traceback" not in err and err.count("error") == 1


def test_a_study_continued_with_other_fixed_settings_is_refused_before_it_trains(
        tiny_archive, tmp_path, capsys):
    """The trials of one study differ in their searched values only: a later call with
    other epochs (or data, recipe, seed, ...) stops, naming what differs, and trains
    nothing; the same settings continue the study."""
    args = ["tune", "--space", "lr=2:20:log", "--data", str(tiny_archive), "--device", "cpu",
            "--set", "batch_size=30", "--trials", "1", "--out", str(tmp_path / "t")]
    assert main([*args, "--epochs", "1"]) == 0
    assert "no importances.png: one parameter searched" in capsys.readouterr().out
    assert main([*args, "--epochs", "2", "--trials", "2"]) == 2
    err = capsys.readouterr().err
    assert "was searched with other settings (epochs: 1.0 there, 2.0 here)" in err, err
    assert sorted(p.name for p in (tmp_path / "t" / "trials").iterdir()) == ["0000"]
    assert main([*args, "--epochs", "1", "--trials", "2"]) == 0
    assert len(list(csv.DictReader((tmp_path / "t" / "trials.csv").open()))) == 3
