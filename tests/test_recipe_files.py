"""A recipe of your own, in a file (`--recipe path.py:Name`) or given to fastcifar.train as a
class or instance: every command that takes --recipe takes it, its run folder keeps the
file, and bad files get one clear line."""

from __future__ import annotations

import contextlib
import io
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import fastcifar
from fastcifar.cli import main
from fastcifar.errors import InputError
from fastcifar.recipes import get_recipe
from fastcifar.recipes.airbench94 import Airbench94
from conftest import make_tiny_archive

NARROW = """
    import dataclasses
    from fastcifar.recipes.airbench94 import Airbench94


    class Narrow(Airbench94):
        \"\"\"airbench94, narrow, for tiny images: batches of 30.\"\"\"
        config = dataclasses.replace(Airbench94.config, widths=(8, 16, 16), batch_size=30,
                                     label_smoothing={smoothing})


    named = Narrow()
    not_a_recipe = 42
"""


def write_recipe(folder: Path, text: str = NARROW, smoothing: float = 0.1,
                 name: str = "mine.py") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text.format(smoothing=smoothing)))
    return path


def cli(capsys, *args) -> tuple[int, str]:
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out + out.err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A run of the file's recipe on a tiny archive, trained by the CLI with checkpoints;
    then the file itself is changed, so only the run folder's copy is the recipe it ran."""
    root = tmp_path_factory.mktemp("file_recipe")
    archive = make_tiny_archive(root)
    path = write_recipe(root)
    assert main(["train", "--recipe", f"{path}:Narrow", "--data", str(archive), "--epochs",
                 "2", "--device", "cpu", "--no-progress", "--checkpoints", "--out",
                 str(root / "run")]) == 0
    write_recipe(root, smoothing=0.3)  # edited after the run
    return archive, root / "run", path


def test_the_run_folder_keeps_the_file_and_its_digest(trained):
    archive, run, path = trained
    saved = json.loads((run / "config.json").read_text())
    assert saved["recipe"] == "mine.py:Narrow"
    assert saved["data"] == str(archive.resolve())  # absolute: evaluate runs from anywhere
    record = saved["recipe_file"]
    assert record["file"] == str(path.resolve()) and record["object"] == "Narrow"
    copy = run / record["copy"]
    assert "label_smoothing=0.1" in copy.read_text()  # the file as it ran
    assert saved["config"]["widths"] == [8, 16, 16] and saved["config"]["label_smoothing"] == 0.1


def test_a_new_process_evaluates_exports_and_resumes_it_from_the_copy(trained, tmp_path):
    archive, run, path = trained
    path.unlink()  # moved away: the folder's copy is what counts
    done = subprocess.run(
        [sys.executable, "-m", "fastcifar", "evaluate", str(run), "--data", str(archive),
         "--out", str(tmp_path / "eval")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "top-1" in done.stdout.lower() or "accuracy" in done.stdout.lower()
    model = fastcifar.load_model(run)
    assert [m.out_channels for m in model.modules() if hasattr(m, "out_channels")][1] == 8
    code, printed = cli_silent(["train", "--resume", str(run)])
    assert code == 0 and "already finished" in printed
    (run / "source" / "recipe_file" / "mine.py").write_text("# changed\n")
    with pytest.raises(InputError, match="copy of the recipe file .* is missing or changed"):
        fastcifar.load_model(run)


def cli_silent(args):
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = main(args)
    return code, out.getvalue()


def test_the_python_api_takes_a_recipe_class_or_instance(tmp_path):
    archive = make_tiny_archive(tmp_path)

    class Tiny(Airbench94):
        name = "tiny"
        config = Airbench94.config.__class__(widths=(8, 16, 16), batch_size=30)

    for recipe in (Tiny, Tiny()):
        result = fastcifar.train(recipe, data=archive, epochs=1, device="cpu", verbose=False,
                                 progress=False)
        assert result.recipe == "tiny" and 0 <= result.accuracy.mean <= 1
    assert get_recipe(Tiny).config.widths == (8, 16, 16)


def test_every_recipe_command_takes_a_file(tmp_path, capsys):
    path = write_recipe(tmp_path)
    spec = f"{path}:Narrow"
    code, printed = cli(capsys, "flops", "--recipe", spec)
    assert code == 0 and "mine.py:Narrow" in printed
    code, printed = cli(capsys, "recipes", "--show", f"{path}:named")
    assert code == 0 and "widths = (8, 16, 16)" in printed
    code, printed = cli(capsys, "schedule", spec, "--out", tmp_path / "s.png")
    assert code == 0 and (tmp_path / "s.png").exists()
    archive = make_tiny_archive(tmp_path)
    code, printed = cli(capsys, "lr-find", "--recipe", spec, "--data", archive, "--device",
                        "cpu", "--steps", "6", "--out", tmp_path / "lr")
    assert code == 0, printed
    assert json.loads((tmp_path / "lr" / "lr_find.json").read_text())["recipe"] == \
        "mine.py:Narrow"


@pytest.mark.parametrize("spec, message", [
    ("{dir}/absent.py:Narrow", "no such file"),
    ("{dir}/mine.py", "expected path/to/file.py:RecipeName"),
    ("{dir}/mine.py:Wide", "mine.py defines no 'Wide'; recipes it defines: Narrow, named"),
    ("{dir}/mine.py:not_a_recipe", "not_a_recipe is an int, not a recipe"),
    ("{dir}/broken.py:Narrow", "importing .*broken.py failed; its traceback:"),
])
def test_a_bad_recipe_file_is_one_clear_error(tmp_path, capsys, spec, message):
    write_recipe(tmp_path)
    write_recipe(tmp_path, "import dataclasses\n\nwidths = (8, 16\n", name="broken.py")
    code, printed = cli(capsys, "flops", "--recipe", spec.format(dir=tmp_path))
    assert code == 2, printed
    assert re.search(message, printed), printed
    assert "Traceback" not in printed or "broken" in spec


def test_an_import_error_shows_the_files_own_traceback(tmp_path, capsys):
    path = write_recipe(tmp_path, "x = 1\nraise ValueError('my own bug')\n", name="bug.py")
    code, printed = cli(capsys, "flops", "--recipe", f"{path}:X")
    assert code == 2
    assert f'File "{path}", line 2' in printed and "ValueError: my own bug" in printed
    assert "importlib" not in printed  # only the user's frames


def test_a_run_records_a_data_path_absolute_and_a_name_as_it_is(tmp_path, monkeypatch):
    from fastcifar.train.inputs import data_name
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cifar10").mkdir()  # a folder named as the official data: still the name
    (tmp_path / "mine.zip").write_bytes(b"")
    assert data_name("cifar10") == "cifar10" and data_name("imagewoof") == "imagewoof"
    assert data_name("mine.zip") == str(tmp_path / "mine.zip") and data_name(None) is None
