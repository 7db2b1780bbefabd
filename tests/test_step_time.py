"""benchmarks/step_time.py --interleave: several recipes' steps timed in turn."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import step_time  # noqa: E402


def test_interleaved_steps_time_each_spec_at_its_batch_and_side(tmp_path, capsys):
    out = tmp_path / "steps.json"
    assert step_time.main(["--device", "cpu", "--steps", "2", "--warmup", "0", "--json",
                           str(out), "--interleave", "airbench94:8:32", "fable94_e1:6:24"]) == 0
    result = json.loads(out.read_text())
    assert {k: len(v) for k, v in result["step_seconds"].items()} == {
        "airbench94:8:32": 2, "fable94_e1:6:24": 2}
    assert all(v > 0 for v in result["ms_per_image_median"].values())
    assert "fable94_e1:6:24: steps" in capsys.readouterr().out


def test_a_malformed_spec_is_one_line():
    with pytest.raises(SystemExit, match="expected recipe:batch:side"):
        step_time.main(["--device", "cpu", "--interleave", "airbench94:8"])
