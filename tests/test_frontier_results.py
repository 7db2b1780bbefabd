"""benchmarks/frontier_results.py: runs into the results folder, and the time-to-accuracy
table against airbench94_muon."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import frontier_results as fr  # noqa: E402
import result_files  # noqa: E402


def fake_run(folder: Path, recipe: str, seed: int, accuracy: float, seconds: float) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"recipe": recipe}))
    (folder / "metrics.csv").write_text("run,epoch\n")
    (folder / "summary.json").write_text(json.dumps({
        "recipe": recipe, "precision": "float32",
        "runs": [{"seed": seed, "accuracy": accuracy, "train_seconds": seconds}]}))
    return folder


def test_runs_land_by_seed_and_the_table_divides_by_muons_time(tmp_path, monkeypatch):
    monkeypatch.setattr(result_files, "RESULTS", tmp_path / "results")
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
    monkeypatch.setattr(result_files, "RESULTS", tmp_path / "results")
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


def timed_run(folder: Path, recipe: str, accuracy: float, seconds: float, start: float) -> Path:
    """A run folder whose config.json and summary.json carry its start and end times."""
    import os
    fake_run(folder, recipe, 0, accuracy, seconds)
    os.utime(folder / "config.json", (start, start))
    os.utime(folder / "summary.json", (start + seconds, start + seconds))
    return folder


def test_a_series_keeps_one_after_the_other_runs_and_divides_time_and_flops(tmp_path,
                                                                            monkeypatch):
    monkeypatch.setattr(result_files, "RESULTS", tmp_path / "results")
    load = tmp_path / "load.log"
    load.write_text("".join(f"{t} 2.10 2.0 2.0 1/1 1\n" for t in range(1000, 3000, 30)))
    muon = timed_run(tmp_path / "m", "airbench94_muon", 0.90, 1000.0, 1000.0)
    e1 = timed_run(tmp_path / "e", "fable94_e1", 0.91, 700.0, 2010.0)
    fr.add_series("tta-cpu", [muon], load)
    folder = fr.add_series("tta-cpu", [e1], load)  # a later run joins the series
    series = json.loads((folder / "series.json").read_text())
    assert [r["recipe"] for r in series["runs"]] == ["airbench94_muon", "fable94_e1"]
    assert series["runs"][0]["mean"] == 2.1 and series["machine"]["cores"] >= 1
    assert set(series["machine"]["isa"]) == set(fr.ISA_FLAGS)
    lines = fr.table(series="tta-cpu")
    assert len({line.count("|") for line in lines}) == 1  # every row has every column
    assert lines[2].startswith("| airbench94_muon | 90.00% | 1,000 | 1.00x | 1.00x | 1.00x |")
    e1_row = lines[5].split(" | ")
    assert e1_row[:4] == ["| fable94_e1", "91.00%", "700", "0.70x"]
    assert 0.7 < float(e1_row[4].rstrip("x")) < 0.9  # its curriculum's smaller epochs
    assert e1_row[5] == f"{1.828 / 2.59:.2f}x"  # the published A100 times
    assert "| hiverge94 | not run yet |" in lines[3]
    # runs that shared the machine are not a series, nor is one that overlapped its runs
    a = timed_run(tmp_path / "a", "airbench94_muon", 0.9, 100.0, 5000.0)
    b = timed_run(tmp_path / "b", "hiverge94", 0.9, 100.0, 5050.0)
    with pytest.raises(SystemExit, match="started before .* ended"):
        fr.add_series("overlap", [a, b], load)
    with pytest.raises(SystemExit, match="started before .* ended"):
        fr.add_series("tta-cpu", [timed_run(tmp_path / "h", "hiverge94", 0.9, 100.0, 2500.0)],
                      load)
    monkeypatch.setattr(fr, "machine", lambda: {"cpu": "another"})
    with pytest.raises(SystemExit, match="this machine is"):
        fr.add_series("tta-cpu", [b], load)
