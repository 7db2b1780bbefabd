"""benchmarks/frontier_results.py: runs into the results folder, and the time-to-accuracy
table against airbench94_muon."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import frontier_results as fr  # noqa: E402


def fake_run(folder: Path, recipe: str, seed: int, accuracy: float, seconds: float) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"recipe": recipe}))
    (folder / "metrics.csv").write_text("run,epoch\n")
    (folder / "summary.json").write_text(json.dumps({
        "recipe": recipe, "precision": "float32",
        "runs": [{"seed": seed, "accuracy": accuracy, "train_seconds": seconds}]}))
    return folder


def test_runs_land_by_seed_and_the_table_divides_by_muons_time(tmp_path, monkeypatch):
    monkeypatch.setattr(fr, "RESULTS", tmp_path / "results")
    load = tmp_path / "load.log"
    load.write_text("".join(f"{t} 2.{t % 10} 2.0 2.0 1/1 1\n" for t in range(0, 10 ** 10,
                                                                             10 ** 9)))
    fr.add_ours(fake_run(tmp_path / "m", "airbench94_muon", 0, 0.90, 400.0), None)
    fr.add_ours(fake_run(tmp_path / "e0", "fable94_e1", 0, 0.89, 300.0), load)
    second = fr.add_ours(fake_run(tmp_path / "e1", "fable94_e1", 1, 0.91, 340.0), None)
    assert second == tmp_path / "results" / "fable94_e1-cpu-standin-float32" / "seed1"
    with pytest.raises(SystemExit, match="seed 0 is there already"):
        fr.add_ours(fake_run(tmp_path / "again", "fable94_e1", 0, 0.5, 1.0), None)
    lines = fr.table()
    assert "| airbench94_muon | 90.00% | 400 | 1.00x | 1 |" in lines[2]
    assert lines[5].startswith("| fable94_e1 | 90.00% | 320 | 0.80x | 2 |")
    assert "| hiverge94 | not run yet |" in lines[3]


def test_a_ports_runs_become_the_reference_beside_ours(tmp_path, monkeypatch):
    monkeypatch.setattr(fr, "RESULTS", tmp_path / "results")
    result = tmp_path / "port.json"
    result.write_text(json.dumps({"runs": [{"run": 0, "accuracy_tta": 0.9, "seconds": 5.0}]}))
    changes = tmp_path / "changes.json"
    changes.write_text(json.dumps({"recipe": "hiverge94", "repository": "hiverge/x",
                                   "commit": "abc", "source": "s.py", "sha256": "0" * 64,
                                   "changes": [{"why": "a"}], "cpu_changes": [{"why": "b"}]}))
    folder = fr.add_reference(result, "hiverge94", changes, "python port.py", "float32",
                              None, None)
    reference = json.loads((folder / "reference.json").read_text())
    assert reference["list_of_changes"] == ["a", "b"]
    assert reference["all_runs"][0]["accuracy_tta"] == 0.9
