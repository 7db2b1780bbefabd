"""benchmarks/run_profile.py: a whole run under torch's profiler, after a warm-up run; ours,
and each original's port beside it, counted inside each one's own clock."""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import profile_pairs  # noqa: E402
import profile_spans  # noqa: E402
import run_profile  # noqa: E402
from conftest import REFERENCES, make_tiny_archive  # noqa: E402
from fastcifar.bench.clocks import record_clock  # noqa: E402
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
        span = row["span"]  # what the record's clock covers, counted on the CPU
        assert span["device"] == "cpu" and 0 < span["launches"] < row["operator_calls"]
        assert span["span_names"] == sorted(TIMED + p for p in record_clock("fable94_e5").parts)
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
    (["--pair", "hiverge94"], "one of --recipe, --pair and --original"),
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


def test_the_gpu_s_kernels_are_recorded_only_where_torch_has_cuda(cuda_standin, monkeypatch):
    """Under the stand-in a CPU build has no GPU to record (asking for one took a whole
    profiled run 3 minutes there)."""
    import torch
    from torch.profiler import ProfilerActivity
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert profile_spans.activities(cuda) == profile_spans.activities(cpu) == [ProfilerActivity.CPU]
    monkeypatch.setattr(torch.backends.cuda, "is_built", lambda: True)
    assert ProfilerActivity.CUDA in profile_spans.activities(cuda)
    assert profile_spans.activities(cpu) == [ProfilerActivity.CPU]


def kineto(events):
    """A profile as account() reads it: kineto's raw events, each (name, start, end, and
    optionally its activity, correlation id and linked host operator's)."""
    import torch

    def event(name, start, end, activity="cpu_op", corr=0, linked=0):
        device = "CUDA" if activity in profile_spans.DEVICE_WORK | {"gpu_user_annotation"} \
            else "CPU"
        values = {"name": name, "start_ns": start, "end_ns": end, "duration_ns": end - start,
                  "activity_type": activity, "correlation_id": corr,
                  "linked_correlation_id": linked, "is_async": False, "start_thread_id": 1,
                  "device_type": getattr(torch.autograd.DeviceType, device)}
        return SimpleNamespace(**{key: (lambda v=v: v) for key, v in values.items()})
    made = [event(*e) for e in events]
    return SimpleNamespace(profiler=SimpleNamespace(kineto_results=SimpleNamespace(
        events=lambda: made)))


def test_on_a_gpu_the_kernels_launched_inside_the_clock_s_spans_count():
    """A kernel counts where the host operator that launched it started inside a timed part
    the record's clock covers, with its time on the device and the category of the outermost
    aten operator around it; validation's kernels between the parts and the TTA's, outside
    Fulcrum's clock, do not, nor the GPU's copies of the profiler's ranges."""
    prof = kineto([
        (TIMED + "init", 0, 10), ("aten::mm", 2, 3, "cpu_op", 1),
        ("gemm_kernel", 50, 300, "kernel", 90, 1),
        (TIMED + "train", 20, 100), ("aten::conv2d", 30, 40), ("aten::cudnn_convolution", 31, 32,
                                                                "cpu_op", 2),
        ("sm90_fprop_implicit_gemm", 300, 1800, "kernel", 91, 2),
        ("Memset (Device)", 1800, 1900, "gpu_memset", 92, 2),
        (TIMED + "train", 200, 500, "gpu_user_annotation", 93, 0),
        ("aten::add_", 95, 96, "cpu_op", 3), ("elementwise_kernel", 1900, 1950, "kernel", 94, 3),
        ("aten::convolution", 110, 111, "cpu_op", 4),  # validation, outside every part
        ("conv_kernel", 2000, 6000, "kernel", 95, 4),
        (TIMED + "tta_eval", 120, 130), ("aten::mm", 121, 122, "cpu_op", 5),
        ("tta_kernel", 6000, 6500, "kernel", 96, 5)])
    fulcrum = profile_spans.account(prof, {TIMED + "init", TIMED + "train"})
    assert fulcrum["device"] == "gpu" and fulcrum["launches"] == 4
    assert fulcrum["busy_seconds"] == pytest.approx((250 + 1500 + 100 + 50) / 1e9)
    assert fulcrum["launches_outside"] == 2
    assert {k: v["launches"] for k, v in fulcrum["categories"].items()} == {
        "convolution": 2, "matrix product": 1, "elementwise": 1}
    assert [s["launches"] for s in fulcrum["spans"]] == [1, 3]
    every_part = profile_spans.account(prof, {TIMED + p for p in ("init", "train", "tta_eval")})
    assert every_part["launches"] == 5 and every_part["launches_outside"] == 1


def test_on_a_cpu_the_operators_launched_inside_the_span_count():
    """On a CPU (and under the stand-in) the device is the CPU: what a GPU would launch as a
    kernel counts, with its host time, where it started inside a span; a convolution's
    inner matrix products are the convolution's."""
    import torch
    from torch.profiler import ProfilerActivity, profile
    conv, x = torch.nn.Conv2d(3, 4, 3), torch.randn(2, 3, 8, 8)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        torch.ones(5).sum()
        with torch.profiler.record_function("original timed"):
            conv(x).relu().sum()
        torch.zeros(5).exp()
    counted = profile_spans.account(prof, {"original timed"})
    (span,) = counted["spans"]
    assert counted["device"] == "cpu" and counted["launches"] == span["launches"] > 0
    assert span["start"] <= span["first"] and span["last"] <= span["end"]
    assert counted["launches_outside"] >= 3  # fill, sum, fill and exp: outside
    assert counted["categories"]["convolution"]["launches"] >= 1
    assert {"elementwise", "reduction"} <= counted["categories"].keys()
    assert "matrix product" not in counted["categories"]
    assert sum(c["launches"] for c in counted["categories"].values()) == counted["launches"]


@pytest.mark.skipif(not REFERENCES.is_dir(), reason=f"the original scripts are not here "
                                                    f"({REFERENCES})")
def test_a_pair_profiles_ours_and_the_original_each_inside_its_own_clock(tmp_path,
                                                                        monkeypatch):
    """hiverge94 and its original's port, each in a process of its own on the same tiny data
    (a rehearsal, under the CUDA stand-in): each side's span is found, every launch counted
    lies inside it, and the table puts the two side by side."""
    monkeypatch.setenv("FASTCIFAR_DATA", str(tmp_path / "cache"))
    archive = make_tiny_archive(tmp_path, classes=10, train=12, test=6)
    out = tmp_path / "pair"
    assert run_profile.main(["--pair", "hiverge94", "--data", str(archive), "--rehearsal",
                             "--no-traces", "--out", str(out)]) == 0
    pair = json.loads((out / "pair-hiverge94.json").read_text())
    ours, original = (pair["sides"][side] for side in ("ours", "original"))
    assert ours["span"]["span_names"] == sorted(TIMED + part for part in
                                                record_clock("hiverge94").parts)
    assert original["span"]["span_names"] == ["original timed"]
    for side in (ours, original):
        span = side["span"]
        assert span["device"] == "cpu" and span["spans"] and span["launches"] > 100
        assert sum(s["launches"] for s in span["spans"]) == span["launches"]
        for s in span["spans"]:
            assert s["launches"] and s["start"] <= s["first"] <= s["last"] <= s["end"]
        assert span["launches_outside"] > 0  # the evaluations after (or between) the parts
    changes = json.loads((out / "hiverge94" / "original" / "port" /
                          "hiverge94.changes.json").read_text())["changes"]
    assert sum(c["why"].startswith("profile: ") for c in changes) == 2
    text = (out / "pair-hiverge94.txt").read_text()
    assert text == (out / "pairs.txt").read_text()
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("category"))
    assert lines[at - 1].split() == ["ours", "original"]
    assert lines[at].split().count("launches") == 2
    total = next(line for line in lines if line.startswith("total")).split()
    assert int(total[1].replace(",", "")) == ours["span"]["launches"]
    assert int(total[3].replace(",", "")) == original["span"]["launches"]
    assert pair["differences"]["launches"] and "largest differences" in text


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


@pytest.mark.parametrize("bad, message", [
    (["--pair", "airbench94"], "no original to profile beside airbench94"),
    (["--original", "hiverge94", "--references", "NOWHERE"], "NOWHERE"),
    (["--pair", "hiverge94", "--set", "epochs=1"], "--set is for --recipe"),
])
def test_a_pair_s_bad_input_stops_before_any_work(bad, message, tiny_archive, tmp_path):
    if "NOWHERE" in bad:
        bad[bad.index("NOWHERE")] = str(tmp_path / "NOWHERE")
    with pytest.raises(SystemExit, match=message):
        run_profile.main(["--data", str(tiny_archive), "--out", str(tmp_path / "out"), *bad])
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(not REFERENCES.is_dir(), reason=f"the original scripts are not here "
                                                    f"({REFERENCES})")
def test_a_pair_past_its_budget_stops_its_side_and_starts_no_other(tiny_archive, tmp_path,
                                                                   capsys):
    """As a lease's stage: no process of it left behind to hold the GPU."""
    out = tmp_path / "pair"
    budget = str(profile_pairs.BUDGET_MARGIN + 0.5)
    assert run_profile.main(["--pair", "hiverge94", "--data", str(tiny_archive), "--rehearsal",
                             "--budget", budget, "--no-traces", "--out", str(out)]) == 1
    assert "hiverge94, ours: cut off by --budget" in capsys.readouterr().out
    assert not (out / "pair-hiverge94.json").exists() and (out / "pairs.txt").exists()
