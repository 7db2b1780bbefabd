"""benchmarks/reference_table.py --gpu: the GPU suite's pairs as README rows, from the
committed suite.json files of every call."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import reference_table  # noqa: E402
import result_files  # noqa: E402


def suite(steps: list[dict]) -> str:
    return json.dumps({"device": "NVIDIA H200", "torch": "2.11.0+cu130", "steps": steps})


def step(recipe: str, side: str, accuracies: list[float], seconds: list[float],
         compile: bool = False) -> dict:
    return {"recipe": recipe, "side": side, "compile": compile, "accuracies": accuracies,
            "seconds": seconds}


def test_a_row_takes_every_call_s_runs_of_each_side(tmp_path, monkeypatch):
    folder = tmp_path / "h200-standin-uncompiled"
    (folder / "call1").mkdir(parents=True)
    (folder / "call2").mkdir()
    # The first call's own side failed (no runs), its original's ran; the second, both.
    (folder / "call1" / "suite.json").write_text(suite([
        step("hiverge94", "fastcifar", [], []),
        step("hiverge94", "reference", [0.90, 0.92], [1.5, 1.7])]))
    (folder / "call2" / "suite.json").write_text(suite([
        step("hiverge94", "fastcifar", [0.91, 0.93], [1.6, 1.6]),
        step("hiverge94", "reference", [0.91], [1.6]),
        step("airbench94", "ablation", [0.9], [2.0]),  # not a pair: no row
        step("hlb", "fastcifar", [0.9], [2.0]),  # no original beside it: no row
        # Compiled runs never mix with uncompiled ones: a row of their own.
        step("hiverge94", "fastcifar", [0.94], [1.2], compile=True),
        step("hiverge94", "reference", [0.93], [1.4], compile=True)]))
    monkeypatch.setattr(result_files, "RESULTS", tmp_path)
    header, rule, *rows = reference_table.gpu_rows()
    assert header.startswith("| recipe | ours (TTA) | reference (TTA) | difference |")
    clock = "record (ours: a sync each epoch)"  # hiverge's parts; its own syncs and sleep
    assert rows == ["| hiverge94 | 92.00% ± 1.41 | 91.00% ± 1.00 | +1.00 | 2 / 3 | "
                    f"1.60 / 1.60 (medians) | {clock} | no, both sides | NVIDIA H200, torch "
                    "2.11.0+cu130 | h200-standin-uncompiled |",
                    "| hiverge94 | 94.00% | 93.00% | +1.00 | 1 / 1 | 1.20 / 1.40 (medians) | "
                    f"{clock} | max-autotune, both sides | NVIDIA H200, torch 2.11.0+cu130 "
                    "| h200-standin-uncompiled |"]
