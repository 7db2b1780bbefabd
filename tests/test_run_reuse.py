"""Whatever reads back an earlier run folder (resume, a reused battery, an ablation's
variant) checks that it was made with the same recipe source, data and settings, or says
what differs and stops; and a recipe that cannot build leaves no folder behind."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import pytest

import fastcifar
from fastcifar.cli import main
from fastcifar.errors import InputError
from conftest import make_tiny_archive

QUICK = {"epochs": 1, "batch_size": 30, "widths": (8, 16, 16), "tta_level": 0,
         "device": "cpu", "verbose": False}


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    return make_tiny_archive(tmp_path_factory.mktemp("reuse"))


def test_a_reused_folder_is_read_back_only_when_made_the_same(archive, tmp_path):
    out = tmp_path / "battery"
    first = fastcifar.train("airbench94", data=archive, runs=2, out=out, **QUICK)
    again = fastcifar.train("airbench94", data=archive, runs=2, out=out, reuse=True, **QUICK)
    assert again.read_back == 2 and [r.accuracy for r in again.runs] == \
        [r.accuracy for r in first.runs]
    with pytest.raises(InputError, match=r"holds runs made otherwise \(lr: 11.5 there, 3.0 "
                                         r"here\)"):
        fastcifar.train("airbench94", data=archive, runs=2, out=out, reuse=True,
                        **{**QUICK, "lr": 3.0})
    with pytest.raises(InputError, match="already holds a run"):  # without reuse: refused
        fastcifar.train("airbench94", data=archive, runs=2, out=out, **QUICK)


def test_resume_refuses_changed_data_or_recipe_source(archive, tmp_path):
    data = tmp_path / "data.tar.gz"
    shutil.copy(archive, data)
    out = tmp_path / "run"
    fastcifar.train("airbench94", data=data, runs=2, out=out, **QUICK)
    summary = json.loads((out / "summary.json").read_text())
    summary["runs"] = summary["runs"][:1]  # as if stopped after its first run
    (out / "summary.json").write_text(json.dumps(summary))

    shutil.copy(make_tiny_archive(tmp_path / "other", test=11), data)  # other images, same path
    with pytest.raises(InputError, match=r"holds runs made otherwise \(data: sha256 \w{12}\.\.\. "
                                         r"there, sha256 \w{12}\.\.\. here\)"):
        fastcifar.resume(out, verbose=False)
    shutil.copy(archive, data)
    config = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**config, "recipe_sha256": "0" * 64}))
    with pytest.raises(InputError, match=r"recipe source: sha256 000000000000\.\.\. there"):
        fastcifar.resume(out, verbose=False)
    (out / "config.json").write_text(json.dumps(config))
    assert len(fastcifar.resume(out, verbose=False).runs) == 2  # as it was made: continued


BROKEN = """
    import dataclasses
    from fastcifar.recipes.airbench94 import Airbench94


    class Mine(Airbench94):
        config = dataclasses.replace(Airbench94.config, widths=(8, 16, 16), batch_size=30)

        def {method}(self, *args):
            {body}
"""


@pytest.mark.parametrize("method", ["build_model", "setup"])
def test_a_recipe_that_raises_before_training_leaves_no_run_folder(method, archive, tmp_path):
    path = tmp_path / "mine.py"
    path.write_text(textwrap.dedent(BROKEN.format(
        method=method, body='raise ValueError("a bug in my recipe")')))
    out = tmp_path / "runs" / "mine"
    args = ["train", "--recipe", f"{path}:Mine", "--data", str(archive), "--epochs", "1",
            "--device", "cpu", "--out", str(out)]
    with pytest.raises(ValueError, match="a bug in my recipe"):
        main(args)
    assert not (tmp_path / "runs").exists()
    # fixed, the same --out trains, and the folder keeps the fixed file
    path.write_text(textwrap.dedent(BROKEN.format(
        method=method, body=f"return super().{method}(*args)")))
    assert main(args) == 0
    assert "super()" in (out / "source" / "recipe_file" / "mine.py").read_text()


def test_a_run_whose_recipe_source_changed_is_loaded_with_a_warning(archive, tmp_path):
    """evaluate, predict, export and load_model rebuild the network from today's recipe:
    where its source is not the one the run trained with, they say so."""
    import warnings

    from fastcifar.errors import RecipeChanged
    out = tmp_path / "run"
    fastcifar.train("airbench94", data=archive, out=out, **QUICK)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RecipeChanged)
        fastcifar.load_model(out)  # the same source: silent
    config = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**config, "recipe_sha256": "f" * 64}))
    with pytest.warns(RecipeChanged, match=r"airbench94's source has changed since this run "
                                           r"\(sha256 ffffffffffff\.\.\. there"):
        fastcifar.load_model(out)


def test_the_data_is_hashed_only_for_a_run_folder(tmp_path):
    """A pass over every image: paid where a folder records it (or a caller checks it),
    not by an in-memory session that writes nothing."""
    import numpy as np
    rng = np.random.default_rng(0)
    labels = np.arange(150) % 3
    data = fastcifar.ImageData(rng.integers(0, 255, (120, 32, 32, 3), dtype=np.uint8),
                               labels[:120], rng.integers(0, 255, (30, 32, 32, 3),
                                                          dtype=np.uint8), labels[120:])
    fastcifar.train("airbench94", data=data, **QUICK)
    assert "digest" not in vars(data)
    fastcifar.train("airbench94", data=data, out=tmp_path / "run", **QUICK)
    recorded = json.loads((tmp_path / "run" / "config.json").read_text())["data_sha256"]
    assert recorded == data.digest and "digest" in vars(data)
