"""benchmarks/kernel_launches.py: a launch is a leaf kernel operator, a _foreach_ call one
(launch_count.py); a whole run counts what its clock covers, step by step; and
--against-originals counts a step and a run of each record recipe beside its original's
port (launch_parity.py)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from conftest import REFERENCES

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import launch_count as lc  # noqa: E402
import launch_parity as lp  # noqa: E402
from standin_instruments import labelled, under_standin  # noqa: E402


def test_a_launch_is_a_leaf_kernel_operator_and_a_foreach_call_is_one():
    net = torch.nn.Sequential(torch.nn.Linear(4, 3, bias=False), torch.nn.ReLU())
    x, buffers = torch.randn(2, 4), [torch.zeros(3) for _ in range(3)]
    with torch.no_grad(), profile(activities=[ProfilerActivity.CPU]) as prof:
        net(x)  # linear: t and matmul are metadata, mm the kernel; relu: its clamp_min
        torch._foreach_add_(buffers, buffers)  # a CPU adds tensor by tensor
    assert lc.gpu_launches(prof) == 3  # mm, clamp_min, the _foreach_ call
    assert lc.leaf_ops(prof) == 5  # mm, clamp_min, and the CPU's three add_
    tree = lc.operator_tree(prof)
    assert [op.name for op in tree if op.gpu_launch] == [
        "aten::mm", "aten::clamp_min", "aten::_foreach_add_"]
    relu = next(i for i, op in enumerate(tree) if op.name == "aten::relu")
    assert tree[relu].kernel_below and not tree[relu].gpu_launch  # its child launches


def test_a_run_counts_what_its_clock_covers_step_by_step():
    """Three timed steps of a linear net, one untimed forward before them: the run is the
    three steps' launches, each step a forward (mm), the loss, the backward and one
    fused SGD launch."""
    with under_standin() as clock:
        net = torch.nn.Linear(4, 3, bias=False).cuda()
        sgd = torch.optim.SGD(net.parameters(), lr=0.1, fused=True)
        x = torch.randn(2, 4, device="cuda")

        def run():
            net(x)  # before the clock: not counted
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(3):
                net(x).sum().backward()
                sgd.step()
                sgd.zero_grad()
            end.record()
            start.elapsed_time(end)

        count = lp.profiled(run, clock)
    assert count["steps"] == 3 and count["timed_spans"] == 1
    assert count["run"] == 3 * count["step"] == 3 * sum(count["step_parts"].values())
    assert count["step_parts"]["forward"] == 1 and count["step_operators"]["forward"] == {
        "aten::mm": 1}
    assert count["step_parts"]["optimisers"] == 1  # _fused_sgd_
    assert count["step_parts"]["backward"] >= 1 and count["step_parts"]["glue"] >= 1
    assert count["run_parts"]["other"] == 0  # nothing timed outside the steps


def test_a_launch_is_put_in_the_outermost_labelled_part():
    with under_standin() as clock:
        net = torch.nn.Linear(4, 3, bias=False).cuda().eval()
        evaluate = labelled(lambda x: net(x.flip(-1)), "tta")
        x = torch.randn(2, 4, device="cuda")

        def run():
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            with torch.no_grad():
                evaluate(x)
            end.record()
            start.elapsed_time(end)

        count = lp.profiled(run, clock)
    # The eval-mode forward inside it is the TTA's; no training forward: no step.
    assert count["run_operators"] == {"tta": {"aten::flip": 1, "aten::mm": 1}}
    assert count["steps"] == 0


@pytest.mark.skipif(not REFERENCES.is_dir(),
                    reason=f"the original scripts are not here ({REFERENCES})")
def test_ours_launches_no_more_than_each_original_per_step_and_per_run(tmp_path):
    """Launch parity, the target of the speed issue: every record recipe's training step
    and whole timed run launch no more kernels than its original's (ours' whole run,
    TTA included, even where the original's clock leaves its TTA out)."""
    out = tmp_path / "counts.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "kernel_launches.py"), "--against-originals",
         "--references", str(REFERENCES), "--json", str(out)],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    lines = dict(((m[1], m[2]), (int(m[3]), int(m[4]))) for m in re.finditer(
        r"^(\S+) (step|run) ours=(\d+) original=(\d+)$", done.stdout, re.MULTILINE))
    assert set(lines) == {(name, kind) for name in lp.RECIPES for kind in ("step", "run")}
    assert all(ours > 0 and original > 0 for ours, original in lines.values())
    for name in lp.RECIPES:  # a run is longer than a step, on each side
        assert all(run > 10 * step for run, step in zip(lines[name, "run"], lines[name, "step"]))
    counts = json.loads(out.read_text())
    for name in lp.RECIPES:
        recipe = counts["recipes"][name]
        for side in ("ours", "original"):
            assert recipe[side]["step"] == lines[name, "step"][side == "original"]
            assert recipe[side]["run"] == sum(recipe[side]["run_parts"].values())
        # The same number of steps as the real run (fable94_e5: ours 8.25 epochs, the
        # original file's 8.125), and each part of a run reported.
        assert recipe["original"]["steps"] == {"airbench94_muon": 200, "hiverge94": 243,
                                               "fable94_e5": 260, "fable94_e1": 284}[name]
        assert recipe["original"]["port_changes"]
    assert "where" in done.stdout and "per-run extras" in done.stdout
    over = {key: counts for key, counts in lines.items() if counts[0] > counts[1]}
    assert not over, f"ours launches more than the original: {over}"
