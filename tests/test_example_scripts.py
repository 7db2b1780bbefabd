"""The scripts in examples/ run as a researcher would start them, on small data."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import STAND_IN, make_tiny_archive
from fastcifar.cli import main
from fastcifar.recipes import get_recipe

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def real_data() -> str:
    data = os.environ.get("FASTCIFAR_TEST_DATA") or (str(STAND_IN) if STAND_IN.exists() else None)
    if data is None:
        pytest.skip("real-data test: no FASTCIFAR_TEST_DATA and no stand-in at "
                    f"{STAND_IN} (the pruning example downloads CIFAR-10 otherwise)")
    return data


def test_the_pruning_example_scores_prunes_and_compares(tmp_path, capsys):
    pruning = load("pruning")
    assert pruning.main(["--data", real_data(), "--pool", "1000", "--test-subset", "300",
                         "--keep", "0.5",
                         "--score-runs", "1", "--score-epochs", "2", "--runs", "2",
                         "--device", "cpu", "--set", "widths=16,32,32", "--set",
                         "batch_size=100", "--set", "epochs=3", "--out", str(tmp_path)]) == 0
    table = (tmp_path / "pruning.md").read_text().splitlines()
    assert len(table) == 5 and table[2].startswith("| all | 1,000 |")
    assert table[3].startswith("| hardest 50% by aum | 500 |")
    assert table[4].startswith("| random 50% | 500 |")
    record = json.loads((tmp_path / "pruning.json").read_text())
    assert all(len(v) == 2 and all(0 <= a <= 1 for a in v) for v in record["accuracy"].values())
    assert (tmp_path / "scoring" / "data_map.png").exists()
    assert (tmp_path / "scoring" / "examples.npz").exists()


def test_the_hardest_are_the_lowest_aum_or_the_highest_el2n_and_forgetting():
    pruning = load("pruning")

    class Scores:
        index = np.array([10, 11, 12, 13])
        aum = np.array([0.5, -1.0, 2.0, 0.1])
        el2n = np.array([0.2, 0.9, 0.1, 0.5])
        forgetting = np.array([0, 3, 1, 2])

    assert pruning.hardest(Scores, 2, "aum").tolist() == [11, 13]
    assert pruning.hardest(Scores, 2, "el2n").tolist() == [11, 13]
    assert pruning.hardest(Scores, 2, "forgetting").tolist() == [11, 13]


@pytest.mark.parametrize("spec", ["wider_net.py:WiderDeeper", "adam_filters.py:AdamFilters"])
def test_the_recipe_files_train(spec, tmp_path, capsys):
    archive = make_tiny_archive(tmp_path)
    code = main(["train", "--recipe", str(EXAMPLES / spec), "--data", str(archive),
                 "--epochs", "2", "--device", "cpu", "--no-progress", "--set",
                 "widths=8,16,16", "--set", "batch_size=30", "--out", str(tmp_path / "run")])
    assert code == 0, capsys.readouterr().err
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert 0 <= summary["runs"][0]["accuracy"] <= 1


def test_the_optimiser_example_gives_the_filters_to_adam_and_the_rest_to_sgd():
    recipe = get_recipe(str(EXAMPLES / "adam_filters.py:AdamFilters"))
    config = recipe.config
    model = recipe.build_model(config, 10)
    training = recipe.setup(model, config, torch.randn(64, 3, 32, 32), 100)
    sgd, adam = training.optimizers
    assert isinstance(adam, torch.optim.Adam) and isinstance(sgd, torch.optim.SGD)
    filters = {id(p) for g in adam.param_groups for p in g["params"]}
    rest = {id(p) for g in sgd.param_groups for p in g["params"]}
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert filters.isdisjoint(rest) and filters | rest == {id(p) for p in trainable}
    assert all(p.ndim == 4 for p in trainable if id(p) in filters)
    assert adam.param_groups[0]["lr"] == config.filter_lr  # (the run's schedule scales it)
    wider = get_recipe(str(EXAMPLES / "wider_net.py:WiderDeeper"))
    convs = [m for m in wider.build_model(wider.config, 10).modules()
             if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 1 + 3 * 3 and convs[-1].out_channels == 384


def test_pruning_refuses_a_score_its_scoring_runs_left_undefined():
    """Forgetting needs two epochs: from one-epoch scoring runs it is NaN for every image,
    and sorting NaNs would keep the first images by index, silently."""
    from types import SimpleNamespace
    pruning = load("pruning")
    scores = SimpleNamespace(forgetting=np.full(6, np.nan), aum=np.arange(6.0), epochs=1,
                             index=np.arange(10, 16))
    with pytest.raises(pruning.fastcifar.InputError, match="--score forgetting: not defined"):
        pruning.hardest(scores, 3, "forgetting")
    assert list(pruning.hardest(scores, 3, "aum")) == [10, 11, 12]  # the lowest margins
