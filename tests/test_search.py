"""benchmarks/search.py, rehearsed on a CPU under the CUDA stand-in: a search of a few
candidates through two rungs on images held out of the training set (never the test set),
continued by a second call that trains nothing again, refused when its space or settings
change, and confirmed on the test set with fresh seeds, so that the one GPU call a lease
gives it works the first time."""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import pytest

from fastcifar import load_dataset
from fastcifar.errors import InputError
from fastcifar.recipes import get_recipe

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import search  # noqa: E402
from search_space import DEFAULT_SPACE, draw_candidates, read_space  # noqa: E402
from search_study import BASELINE, Study  # noqa: E402


@pytest.fixture(autouse=True)
def process_starts_now(monkeypatch, tmp_path):
    """Each call runs as a new process would: its budget counts from the test's start."""
    monkeypatch.setattr(search, "STARTED", time.monotonic())
    monkeypatch.setenv("FASTCIFAR_DATA", str(tmp_path / "cache"))


def run_args(study: Path, data: Path, *more: str) -> list[str]:
    """The rehearsal: 3 candidates and the recipe, rungs of 1 and 2 runs, one narrow epoch
    on 90 images, judged on 30 held out."""
    return ["run", "--rehearsal", "--study", str(study), "--data", str(data), "--precision",
            "float32", "--val-images", "30", "--set", "batch_size=16", *more]


def rows(images) -> set[bytes]:
    return {image.tobytes() for image in images}


def test_a_search_halves_on_held_out_images_resumes_refuses_and_confirms(
        cuda_standin, tiny_archive, tmp_path, monkeypatch, capsys):
    seen = []

    def train(recipe, data, **options):  # every trial's data, as it trains
        seen.append(data)
        return real_train(recipe, data=data, **options)

    real_train = search.train
    monkeypatch.setattr(search, "train", train)
    study = tmp_path / "study"
    assert search.main(run_args(study, tiny_archive)) == 0
    # Every trial trained on 90 training images and was judged on the other 30, class-
    # balanced; no image of the test split was in either.
    dataset = load_dataset(tiny_archive)
    assert seen
    for data in seen:
        trained, judged = rows(data.train_images), rows(data.test_images)
        assert (len(trained), len(judged)) == (90, 30) and not trained & judged
        assert trained | judged == rows(dataset.train_images)
        assert not rows(dataset.test_images) & (trained | judged)
        assert sorted(data.test_labels.tolist()) == [0] * 10 + [1] * 10 + [2] * 10
    # Rung 1: the recipe and its 3 candidates, a run each; rung 2: the recipe and the best
    # third (one), to 2 runs; the same seeds for all.
    state = json.loads((study / "study.json").read_text())
    assert state["finished"] and [len(r["candidates"]) for r in state["rungs"]] == [4, 2]
    winner = state["winner"]
    assert state["rungs"][1]["candidates"] == [BASELINE, winner]
    runs = [json.loads(line) for line in (study / "trials.jsonl").read_text().splitlines()]
    assert sorted((r["candidate"], r["seed"]) for r in runs) == sorted(
        [(c, 0) for c in range(4)] + [(BASELINE, 1), (winner, 1)])
    assert all(0 <= r["accuracy"] <= 1 and 0 < r["record_seconds"] <= r["train_seconds"]
               for r in runs)  # (Fulcrum's clock leaves the TTA evaluation out)
    assert f"winner: candidate {winner}" in (study / "table.md").read_text()
    assert sorted(p.name for p in study.iterdir()) == ["search.log", "study.json",
                                                       "table.csv", "table.md", "trials.jsonl"]
    # A second call continues the study: it is finished, so nothing trains.
    seen.clear()
    before = (study / "trials.jsonl").read_text()
    assert search.main(run_args(study, tiny_archive)) == 0
    assert not seen and (study / "trials.jsonl").read_text() == before
    # Another space, or another setting, is refused before anything trains, naming it.
    capsys.readouterr()
    assert search.main(run_args(study, tiny_archive, "--space", "tta_fraction=1.0|0.5")) == 2
    assert "made with other settings (space: " in capsys.readouterr().err
    assert search.main(run_args(study, tiny_archive, "--penalty", "2")) == 2
    assert "penalty: 1.0 there, 2.0 here" in capsys.readouterr().err
    assert not seen and (study / "trials.jsonl").read_text() == before
    # The confirmation: the winner and the recipe, 2 fresh seeds a side, each side in two
    # processes, alternating, on the test set.
    assert search.main(["confirm", "--study", str(study), "--data", str(tiny_archive),
                        "--seed", "1", "--runs", "2"]) == 2  # seed 1: the search's
    assert "outside the search's 0-1" in capsys.readouterr().err
    assert search.main(["confirm", "--study", str(study), "--data", str(tiny_archive),
                        "--runs", "2", "--chunks", "2", "--work", str(tmp_path / "work")]) == 0
    confirmed = json.loads((study / "confirm.json").read_text())
    assert [(p["side"], p["seed"], p["status"]) for p in confirmed["processes"]] == [
        ("winner", 1000, "done"), ("recipe", 1000, "done"), ("recipe", 1001, "done"),
        ("winner", 1001, "done")]
    assert confirmed["candidate"] == winner and confirmed["paired_difference"]["n"] == 2
    assert {s: confirmed["sides"][s]["runs"] for s in ("winner", "recipe")} == {
        "winner": 2, "recipe": 2}
    assert "goal (ratio <= 0.92" in (study / "confirm.md").read_text()
    summary = json.loads((tmp_path / "work" / "winner-0" / "summary.json").read_text())
    assert summary["train_images"] == 120  # the whole training set


def test_a_trial_that_cannot_fit_the_budget_is_not_started(cuda_standin, tiny_archive,
                                                           tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(search, "FIRST_RUN_SECONDS", 1e4)
    study = tmp_path / "study"
    assert search.main(run_args(study, tiny_archive, "--budget", "60")) == 1
    assert "stopped: candidate 0's rung 1 (1 run(s)) needs about 20000 s" in capsys.readouterr().out
    state = json.loads((study / "study.json").read_text())
    assert not state["finished"] and state["next"] == {"candidate": 0, "rung": 1, "seeds": [0]}
    assert not (study / "trials.jsonl").exists()


def test_the_rule_promotes_the_fastest_that_keep_the_recipe_s_accuracy(tmp_path):
    """score = time ratio x (1 + penalty x points short of the recipe on the same seeds)."""
    settings = {"seed": 0, "rungs": [1, 2], "keep": 0.5, "clock": "record",
                "target": "baseline", "penalty": 1.0}
    study = Study(tmp_path, settings, [{"id": i, "values": {}, "overrides": {}}
                                       for i in range(4)])
    figures = {0: (0.900, 2.0), 1: (0.900, 1.8), 2: (0.899, 1.7)}  # accuracy, seconds
    for candidate, (accuracy, seconds) in figures.items():
        study.runs.append({"candidate": candidate, "seed": 0, "accuracy": accuracy,
                           "record_seconds": seconds, "train_seconds": seconds + 0.3})
    study.runs.append({"candidate": 3, "seed": 0, "failed": "the loss became nan"})
    assert study.judge(1, 1)["score"] == pytest.approx(0.9)
    assert study.judge(2, 1)["score"] == pytest.approx(0.85 * 1.1)  # 0.1 point short
    assert math.isinf(study.judge(3, 1)["score"])  # a failed run: out
    ladder, nxt = study.ladder()
    assert ladder == [[0, 1, 2, 3], [0, 1]] and nxt == (0, 1, [1])
    study.runs = [r for r in study.runs if r["candidate"] in (0, 3)]
    study.runs.append({"candidate": 1, "seed": 0, "failed": "out of memory"})
    study.runs.append({"candidate": 2, "seed": 0, "failed": "out of memory"})
    assert study.ladder() == ([[0, 1, 2, 3]], None)  # all out: finished, no winner
    assert study.winner() is None


def test_the_default_space_is_issue_39_s_ideas_for_fable94_e1():
    config = get_recipe("fable94_e1").config
    dims = read_space(None, None, config, DEFAULT_SPACE)
    assert [d.name for d in dims] == ["schedule", "progressive_sizes", "whiten_images",
                                      "tta_fraction", "muon_lr", "lookahead"]
    assert dims[0].choices[0] == {"label": "E1", "epochs": 8.875, "decay_epochs": 8.5}
    drawn = draw_candidates(dims, config, 20, seed=0)
    assert len(drawn) == 20 and len({json.dumps(c["overrides"]) for c in drawn}) == 20
    assert draw_candidates(dims, config, 20, seed=0) == drawn  # seeded
    with pytest.raises(InputError, match="whiten_images"):
        read_space(None, None, config, {"whiten_images": [5000, 0]})
    with pytest.raises(InputError, match="a bundle"):
        read_space(None, None, config, {"schedule": [{"label": "nothing"}]})


def test_a_trials_line_cut_off_by_a_killed_call_is_dropped_and_a_damaged_study_refused(
        tmp_path, capsys):
    settings = {"seed": 0, "rungs": [1], "keep": 0.5, "clock": "record", "target": "baseline",
                "penalty": 1.0}
    study = Study(tmp_path, settings, [{"id": 0, "values": {}, "overrides": {}}])
    study.save()
    study.add_run({"candidate": 0, "seed": 0, "accuracy": 0.5, "record_seconds": 1.0})
    with open(tmp_path / "trials.jsonl", "a") as f:
        f.write('{"candidate": 0, "seed": 1, "accu')  # the call killed mid-line
    assert [r["seed"] for r in Study.read(tmp_path).runs] == [0]
    assert "cut off" in capsys.readouterr().out
    assert (tmp_path / "trials.jsonl").read_text().count("\n") == 1  # rewritten whole
    lines = (tmp_path / "trials.jsonl").read_text()
    (tmp_path / "trials.jsonl").write_text("{damaged\n" + lines)
    with pytest.raises(InputError, match="line 1 is damaged"):
        Study.read(tmp_path)
    (tmp_path / "study.json").write_text('{"settings": ')
    with pytest.raises(InputError, match="study.json is damaged"):
        Study.read(tmp_path)
