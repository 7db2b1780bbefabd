"""Each record's clock: the parts of our timed run its original's timer covers, and every
run folder's seconds on it beside the whole run's."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

import fastcifar
from fastcifar.bench.clocks import FULCRUM, PARTS, RECORD_CLOCKS, record_clock, record_seconds
from conftest import make_tiny_archive

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from reference_table import clock_cell  # noqa: E402

NARROW = {"epochs": 1, "batch_size": 30, "widths": (8, 16, 16), "device": "cpu",
          "verbose": False, "progress": False}


def test_every_raced_recipe_has_its_originals_clock():
    for recipe in ("airbench94_muon", "hiverge94", "fable94_e5", "fable94_e1",
                   "airbench96_faster"):
        clock = RECORD_CLOCKS[recipe]
        assert set(clock.parts) <= set(PARTS) and clock.starts and clock.stops
    # Fulcrum's harness charges prepare + the training loop; the TTA is graded after it
    assert record_clock("fable94_e1") is FULCRUM and "tta_eval" not in FULCRUM.parts
    parts = {"init": 0.1, "train": 1.5, "tta_eval": 0.2}
    assert record_seconds("fable94_e5", parts) == pytest.approx(1.6)
    assert record_seconds("airbench94_muon", parts) == pytest.approx(1.8)


@pytest.mark.parametrize("recipe, parts", [("airbench94", PARTS),
                                           ("fable94_e5", ("init", "train"))])
def test_a_run_folder_records_its_seconds_on_the_records_clock(recipe, parts, tmp_path):
    archive = make_tiny_archive(tmp_path)
    options = dict(NARROW, widths=(8, 16, 16)) if recipe == "airbench94" else dict(
        NARROW, widths=(8, 16, 16), progressive_sizes=())
    fastcifar.train(recipe, data=archive, out=tmp_path / "run", **options)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["record_clock"]["parts"] == list(parts)
    for run in summary["runs"]:
        assert run["record_seconds"] == pytest.approx(
            sum(run["seconds_by_part"][p] for p in parts))
        assert run["record_seconds"] <= run["train_seconds"]


def test_the_gpu_table_says_which_rows_are_on_the_records_clock():
    assert clock_cell("airbench94_muon", {"whole run"}) == "record"
    assert clock_cell("fable94_e1", {"record"}) == "record"
    assert clock_cell("fable94_e1", {"whole run"}).startswith("not alike")
    assert clock_cell("hiverge94", {"record"}).startswith("record")
