"""benchmarks/run_profile.py: a whole run under torch's profiler, after a warm-up run."""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import run_profile  # noqa: E402
from fastcifar.train.timing import TIMED  # noqa: E402

TINY = ["--set", "epochs=1", "--set", "batch_size=16", "--set", "widths=8,8,8",
        "--set", "tta_level=0"]


def test_a_profile_names_each_recipe_s_costliest_operators(tiny_archive, tmp_path, capsys):
    out = tmp_path / "profile"
    assert run_profile.main(["--recipe", "fable94_e5", "--data", str(tiny_archive), "--device", "cpu", *TINY,
                             "--out", str(out)]) == 0
    record = json.loads((out / "profile.json").read_text())
    assert [r["recipe"] for r in record["runs"]] == ["fable94_e5"]
    for row in record["runs"]:
        assert row["timed_seconds"] > 0 and row["operator_calls"] > 100
        assert row["device_busy_seconds"] is None  # a CPU: no separate device
        hosts = [op["seconds"] for op in row["top_host"]]
        assert hosts == sorted(hosts, reverse=True) and hosts[0] > 0
        with gzip.open(out / row["trace"]) as f:
            assert json.load(f)["traceEvents"]  # a Chrome trace
    printed = capsys.readouterr().out
    assert printed.startswith("fable94_e5: ") and " host " in printed


@pytest.mark.parametrize("bad, message", [
    (["--set", "batch_size=lots"], "batch_size"),
    (["--recipe", "hiverge95"], "hiverge95"),
    (["--data", "MISSING"], "MISSING"),
])
def test_bad_input_stops_with_one_message_before_any_work(bad, message, tiny_archive, tmp_path):
    args = ["--recipe", "hiverge94", "--data", str(tiny_archive), "--device", "cpu",
            "--out", str(tmp_path / "out")]
    if bad[0] == "--data":
        args[3] = str(tmp_path / bad[1])
        bad = []
    with pytest.raises(SystemExit, match=message) as stopped:
        run_profile.main(args + bad)
    assert str(stopped.value).startswith("run_profile: ")
    assert not (tmp_path / "out").exists()


def test_on_cuda_the_kernels_are_recorded_and_their_time_summed(cuda_standin):
    """The CUDA branches, under the stand-in (a whole profiled run there took 3 minutes of
    this suite: the profiler's CUDA activity on a CPU build)."""
    import torch
    from torch.profiler import ProfilerActivity
    from types import SimpleNamespace
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert ProfilerActivity.CUDA in run_profile.activities(cuda)
    assert run_profile.activities(cpu) == [ProfilerActivity.CPU]
    def event(name, start, end, device_us=0.0):
        return SimpleNamespace(name=name, time_range=SimpleNamespace(start=start, end=end),
                               self_device_time_total=device_us)
    # Kernels launched inside the clock's timed parts count; the validation's between them
    # (outside any timed range) and the TTA's, outside Fulcrum's clock, do not.
    events = [event(TIMED + "init", 0, 10), event("whiten", 2, 3, 0.25e6),
              event(TIMED + "train", 20, 100), event("conv", 30, 31, 1.5e6),
              event("validation conv", 110, 111, 4e6),
              event(TIMED + "tta_eval", 120, 130), event("tta conv", 121, 122, 0.5e6)]
    assert run_profile.busy_seconds(events, ("init", "train", "tta_eval"), cuda) == \
        pytest.approx(2.25)
    assert run_profile.busy_seconds(events, ("init", "train"), cuda) == pytest.approx(1.75)
    assert run_profile.busy_seconds(events, ("init", "train"), cpu) is None


def test_the_stopwatch_marks_each_timed_part_for_the_profiler():
    import torch
    from torch.profiler import ProfilerActivity, profile
    from fastcifar.train.timing import Stopwatch
    watch = Stopwatch(torch.device("cpu"))
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        with watch.time("train"):
            torch.ones(3).sum()
    names = [e.name for e in prof.events()]
    assert TIMED + "train" in names and watch.seconds["train"] > 0
