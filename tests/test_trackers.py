"""Experiment trackers (report/trackers.py): a session sends W&B or MLflow its settings,
every epoch of every run and each run's results, never from inside a timed span, and a
tracker that is not installed is refused before any work. The trackers' packages are
optional, so their modules are stood in for by recorders of the calls made to them."""

from __future__ import annotations

import contextlib
import sys
from types import SimpleNamespace

import numpy as np
import pytest

import fastcifar
from fastcifar.train import timing

TIMING = {"inside": False}


@pytest.fixture(autouse=True)
def timed_spans_known(monkeypatch):
    """Every timed span sets TIMING["inside"] while it runs."""
    original = timing.Stopwatch.time

    @contextlib.contextmanager
    def watched(self, part):
        with original(self, part):
            TIMING["inside"] = True
            try:
                yield
            finally:
                TIMING["inside"] = False

    monkeypatch.setattr(timing.Stopwatch, "time", watched)


def recorded(calls: list):
    def record(name):
        def call(*args, **kwargs):
            assert not TIMING["inside"], f"{name} called inside a timed span"
            calls.append((name, args, kwargs))
        return call
    return record


def fake_wandb(calls: list):
    record = recorded(calls)

    def init(**kwargs):
        record("init")(**kwargs)
        return SimpleNamespace(log=record("log"), finish=record("finish"),
                               summary=SimpleNamespace(update=record("summary")))

    return SimpleNamespace(init=init)


def fake_mlflow(calls: list):
    record, stack, made = recorded(calls), [], []

    def start_run(run_name=None, nested=False, run_id=None):
        record("start_run")(run_name=run_name, nested=nested, run_id=run_id)
        run = SimpleNamespace(info=SimpleNamespace(run_id=run_id or f"id-{len(made)}"))
        made.append(run)
        stack.append(run)
        return run

    def end_run():
        record("end_run")()
        stack.pop()

    return SimpleNamespace(set_experiment=record("set_experiment"), start_run=start_run,
                           end_run=end_run, active_run=lambda: stack[-1] if stack else None,
                           log_params=record("log_params"), log_metrics=record("log_metrics"))


def tiny_data() -> fastcifar.ImageData:
    rng = np.random.default_rng(0)
    labels = np.arange(100) % 2
    images = rng.integers(0, 100, (100, 32, 32, 3)).astype(np.uint8)
    images[..., 0] += (labels * 120).astype(np.uint8)[:, None, None]
    return fastcifar.ImageData(images[:80], labels[:80], images[80:], labels[80:])


def train(tracker: str, tmp_path):
    return fastcifar.train("airbench94", data=tiny_data(), runs=2, epochs=2, batch_size=16,
                           widths=(8, 16, 16), tta_level=0, tracker=tracker,
                           out=tmp_path / "run", verbose=False)


def test_wandb_gets_one_run_per_run_with_its_epochs_and_results(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setitem(sys.modules, "wandb", fake_wandb(calls))
    result = train("wandb", tmp_path)
    names = [c[0] for c in calls]
    assert names == ["init", "log", "log", "summary", "finish"] * 2
    inits = [kw for name, _, kw in calls if name == "init"]
    assert [i["name"] for i in inits] == ["run-run-1", "run-run-2"]
    assert inits[0]["group"] == "run" and inits[0]["config"]["config.widths"] == "(8, 16, 16)"
    assert inits[0]["config"]["seed"] == 0 and inits[0]["config"]["recipe"] == "airbench94"
    logged = [args[0] for name, args, _ in calls if name == "log"]
    assert [row["epoch"] for row in logged] == [1, 2, 1, 2]
    assert logged[1]["val_accuracy"] == result.runs[0].epochs[1].val_accuracy
    summaries = [args[0] for name, args, _ in calls if name == "summary"]
    assert [s["accuracy"] for s in summaries] == [r.accuracy for r in result.runs]


def test_mlflow_gets_a_parent_run_and_a_nested_run_per_run(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setitem(sys.modules, "mlflow", fake_mlflow(calls))
    result = train("mlflow", tmp_path)
    starts = [kw for name, _, kw in calls if name == "start_run"]
    assert [s["run_name"] for s in starts] == ["run", "run-1", "run-2"]
    assert [s["nested"] for s in starts] == [False, True, True]
    params = next(args[0] for name, args, _ in calls if name == "log_params")
    assert params["config.batch_size"] == 16
    steps = [kw.get("step") for name, _, kw in calls if name == "log_metrics"]
    assert steps == [1, 2, None, 1, 2, None]
    finals = [args[0] for name, args, kw in calls if name == "log_metrics" and "step" not in kw]
    assert [f["accuracy"] for f in finals] == [r.accuracy for r in result.runs]
    assert [c[0] for c in calls].count("end_run") == 3  # both nested runs and the parent


def test_a_tracker_not_installed_is_refused_before_any_work(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb raises ImportError
    with pytest.raises(fastcifar.InputError, match=r"pip install fastcifar\[wandb\]"):
        train("wandb", tmp_path)
    assert not (tmp_path / "run").exists()
    with pytest.raises(fastcifar.InputError, match="tracker must be one of wandb, mlflow"):
        train("neptune", tmp_path)
