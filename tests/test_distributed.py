"""Batteries over torchrun's processes (two Gloo ranks on a CPU): each rank trains its
share of the runs, rank 0 records them all, and a resumed battery trains only what is
missing, on any number of ranks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from fastcifar.train.distributed import Ranks, device_name, from_environment, gather

ARGS = ["--runs", "3", "--epochs", "2", "--set", "batch_size=30", "--device", "cpu"]


def torchrun(nproc: int, *args) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc-per-node", str(nproc), "-m", "fastcifar", "train",
                           *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=600)


def runs_of(folder) -> list[dict]:
    return json.loads((folder / "summary.json").read_text())["runs"]


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    """(the tiny archive, the same battery trained in one process)."""
    from conftest import make_tiny_archive
    root = tmp_path_factory.mktemp("battery")
    archive = make_tiny_archive(root)
    torch_threads = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"
    try:
        done = subprocess.run([sys.executable, "-m", "fastcifar", "train", "--data", str(archive),
                               *ARGS, "--out", str(root / "one")], capture_output=True,
                              text=True, timeout=600)
    finally:
        if torch_threads is None:
            os.environ.pop("OMP_NUM_THREADS")
        else:
            os.environ["OMP_NUM_THREADS"] = torch_threads
    assert done.returncode == 0, done.stderr
    return archive, root / "one"


def test_without_torchrun_a_process_is_a_world_of_one(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    ranks = from_environment()
    assert (ranks.rank, ranks.world, ranks.leader) == (0, 1, True)
    assert gather(ranks, "x") == ["x"]
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert from_environment() == Ranks(2, 4, 0, from_environment().host)


def test_two_ranks_share_a_battery_and_rank_0_records_every_run(one_process, tmp_path):
    archive, alone = one_process
    done = torchrun(2, "--data", archive, *ARGS, "--out", tmp_path / "two")
    assert done.returncode == 0, done.stderr
    runs = runs_of(tmp_path / "two")
    assert [(r["seed"], r["rank"]) for r in runs] == [(0, 0), (1, 1), (2, 0)]
    assert all(r["host"] for r in runs)
    # Each run is the run one process trains with that seed (CPU runs are deterministic).
    assert [r["accuracy"] for r in runs] == [r["accuracy"] for r in runs_of(alone)]
    rows = (tmp_path / "two" / "metrics.csv").read_text().splitlines()[1:]
    assert sorted(r.split(",")[0] for r in rows) == ["1", "1", "2", "2", "3", "3"]
    assert (tmp_path / "two" / "model.pt").exists()


def test_a_resumed_battery_trains_only_the_missing_runs_on_another_world_size(one_process,
                                                                              tmp_path):
    archive, alone = one_process
    folder = tmp_path / "cut"
    shutil.copytree(alone, folder)
    summary = json.loads((folder / "summary.json").read_text())
    summary["runs"] = summary["runs"][:1]  # as if stopped after the first run
    (folder / "summary.json").write_text(json.dumps(summary))
    done = torchrun(2, "--resume", folder, "--device", "cpu")
    assert done.returncode == 0, done.stderr
    runs = runs_of(folder)
    assert [(r["seed"], r["rank"]) for r in runs] == [(0, 0), (1, 0), (2, 1)]
    assert [r["accuracy"] for r in runs] == [r["accuracy"] for r in runs_of(alone)]
    assert "1 of 3 run(s) finished" in done.stdout


def test_each_rank_takes_its_own_gpu_when_the_device_is_auto_or_cuda(monkeypatch):
    """(What `fastcifar tune` workers under torchrun use too.)"""
    import torch
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    rank = Ranks(3, 4, 1, "h")
    assert [device_name(rank, d) for d in ("auto", "cuda", "cpu", "cuda:0")] == \
        ["cuda:1", "cuda:1", "cpu", "cuda:0"]
    assert device_name(Ranks(), "auto") == "auto"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert device_name(rank, "auto") == "auto"
