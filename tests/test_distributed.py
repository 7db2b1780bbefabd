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
from conftest import torchrun

from fastcifar.train.distributed import Ranks, device_name, from_environment, gather

ARGS = ["--runs", "3", "--epochs", "2", "--set", "batch_size=30", "--set", "widths=16,32,32",
        "--device", "cpu"]


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


def test_gpus_starts_the_command_under_torchrun(one_process, tmp_path):
    archive, alone = one_process
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE")}
    done = subprocess.run([sys.executable, "-m", "fastcifar", "train", "--gpus", "2",
                           "--data", str(archive), *ARGS, "--out", str(tmp_path / "two")],
                          capture_output=True, text=True, timeout=600,
                          env={**env, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    assert "starting 2 processes: torchrun --standalone --nproc-per-node 2" in done.stdout
    runs = runs_of(tmp_path / "two")
    assert [(r["seed"], r["rank"]) for r in runs] == [(0, 0), (1, 1), (2, 0)]
    assert [r["accuracy"] for r in runs] == [r["accuracy"] for r in runs_of(alone)]


def test_gpus_beyond_the_machines_is_refused_before_starting_anything(tmp_path, capsys,
                                                                      monkeypatch):
    import torch
    from fastcifar.cli import main
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["train", "--gpus", "2", "--out", str(tmp_path / "run")]) == 2
    assert "--gpus 2: this machine has 0 CUDA GPU(s); give --device cpu" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def rank_process(launcher: int, rank: int) -> int | None:
    """The pid of torchrun `launcher`'s worker of this rank (Linux /proc), if it runs."""
    from pathlib import Path
    for proc in Path("/proc").iterdir():
        try:
            parent = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            environ = (proc / "environ").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
        if parent == launcher and f"RANK={rank}".encode() in environ:
            return int(proc.name)
    return None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the rank in /proc")
def test_a_dead_rank_stops_the_battery_which_keeps_its_finished_runs(tiny_archive, tmp_path):
    import signal
    import time
    folder = tmp_path / "battery"
    args = ["--data", tiny_archive, "--runs", "4", "--epochs", "30", "--set", "batch_size=30",
            "--set", "widths=8,16,16", "--device", "cpu", "--no-progress", "--out", folder]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE")}
    launcher = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone",
                                 "--nproc-per-node", "2", "-m", "fastcifar", "train",
                                 *map(str, args)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True,
                                env={**env, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 300
    while not ((folder / "summary.json").exists() and len(runs_of(folder)) == 2):
        assert launcher.poll() is None and time.monotonic() < deadline, launcher.stderr.read()
        time.sleep(0.2)
    victim = rank_process(launcher.pid, 1)  # in the second round now
    assert victim is not None
    os.kill(victim, signal.SIGKILL)
    _, stderr = launcher.communicate(timeout=120)
    assert launcher.returncode != 0
    # torchrun stops rank 0 and names the first failure: rank 1, killed.
    cause = stderr.partition("Root Cause")[2]
    assert "rank      : 1" in cause and "SIGKILL" in cause, stderr[-2000:]
    assert [r["seed"] for r in runs_of(folder)] == [0, 1]  # the first round, kept
    done = torchrun(1, "--resume", folder, "--device", "cpu")
    assert done.returncode == 0, done.stderr
    assert "2 of 4 run(s) finished" in done.stdout
    assert [r["seed"] for r in runs_of(folder)] == [0, 1, 2, 3]


def test_an_ablation_shares_each_variant_s_battery_over_the_ranks_and_resumes(tiny_archive,
                                                                            tmp_path):
    """Rank 0 decides for every rank what each variant's folder needs (train, resume, read
    back): the ranks share each battery, and the same command again reads it all back."""
    args = ["--recipe", "airbench94", "--tricks", "tta", "--runs", "2", "--epochs", "1",
            "--set", "batch_size=30", "--set", "widths=8,16,16", "--device", "cpu",
            "--data", tiny_archive, "--out", tmp_path / "ablation"]
    done = torchrun(2, *args, command="ablate")
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads((tmp_path / "ablation" / "ablation.json").read_text())["rows"]
    assert [(r["variant"], r["seeds"]) for r in rows] == [("full recipe", [0, 1]),
                                                          ("without tta", [0, 1])]
    for variant in ("full_recipe", "without_tta"):
        runs = runs_of(tmp_path / "ablation" / "variants" / variant)
        assert [(r["seed"], r["rank"]) for r in runs] == [(0, 0), (1, 1)]
    again = torchrun(2, *args, command="ablate")
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("done before") == 2  # said once, by rank 0
