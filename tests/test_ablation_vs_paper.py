"""benchmarks/ablation_vs_paper.py: an ablation.json set beside the airbench paper's
epochs to 94% without each trick."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import ablation_vs_paper  # noqa: E402


def row(off: list[str], mean: float, ci: tuple[float, float], runs: int = 2) -> dict:
    return {"tricks_off": off, "runs": runs, "accuracy_mean": 0.9 + mean,
            "difference_mean": mean, "difference_ci95": list(ci)}


def write(tmp_path: Path, rows: list[dict], ladder: bool = False) -> Path:
    path = tmp_path / "ablation.json"
    path.write_text(json.dumps({"recipe": "airbench94", "ladder": ladder, "rows": rows}))
    return path


def test_each_trick_beside_the_paper_with_its_direction(tmp_path, capsys):
    path = write(tmp_path, [row([], 0.0, (0.0, 0.0)), row(["tta"], -0.01, (-0.015, -0.005)),
                            row(["label_smoothing"], 0.001, (-0.004, 0.006)),
                            row(["lookahead"], -0.004, (-0.009, 0.001))])
    assert ablation_vs_paper.main([str(path)]) == 0
    table = {line.split(" | ")[0].strip("| "): line for line in capsys.readouterr().out.splitlines()
             if line.startswith("| ") and not line.startswith("| ---")}
    assert "| 11.2 (tta) | +1.3 (x1.13) | -1.00 [-1.50, -0.50] | helps (told apart from 0) |" \
        in table["tta"]
    assert "not ablated" in table["label_smoothing"]
    assert "hurts (within the noise of 2 seeds)" in table["label_smoothing"]
    assert "| 22 (whiten) |" in table["whitening"] and "not measured" in table["whitening"]
    assert "12.7 (dirac)" in table["identity_init"]


def test_the_orders_of_size_of_the_tricks_both_measured(tmp_path):
    lines = ablation_vs_paper.comparison(json.loads(write(tmp_path, [
        row([], 0.0, (0.0, 0.0)), row(["tta"], -0.002, (-0.01, 0.006)),
        row(["whitening"], -0.001, (-0.01, 0.008)), row(["translate"], -0.02, (-0.03, -0.01))
    ]).read_text()))
    assert lines[-2:] == ["- the paper (extra epochs): whitening, tta",
                          "- ours (accuracy lost): tta, whitening"]


def test_a_ladder_or_an_unreadable_file_is_refused(tmp_path, capsys):
    ladder = write(tmp_path, [row([], 0.0, (0.0, 0.0))], ladder=True)
    assert ablation_vs_paper.main([str(ladder)]) == 2
    assert "leave-one-out" in capsys.readouterr().err
    assert ablation_vs_paper.main([str(tmp_path / "missing.json")]) == 2
    assert "missing.json" in capsys.readouterr().err
