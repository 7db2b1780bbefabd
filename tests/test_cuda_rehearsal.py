"""The CUDA path, rehearsed on a CPU through the stand-in (tests/standin/cuda_standin.py):
what a user's first GPU run does, end to end, so that a defect on it fails here first."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import fastcifar
from fastcifar.cli import main
from fastcifar.data.dataset import ImageData
from fastcifar.train.device import configure_backend, resolve_device

AIRBENCH = ["airbench94", "airbench94_muon", "airbench95", "airbench96", "airbench94_bnfree"]
TINY = ["--epochs", "1", "--set", "batch_size=16", "--set", "widths=8,16,16"]


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTCIFAR_DATA", str(tmp_path / "cache"))


def train(capsys, *args):
    code = main(["train", *map(str, args)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_the_standin_refuses_a_cuda_device_without_index_as_torch_does(monkeypatch):
    import cuda_standin
    with pytest.raises(ValueError, match="specified index"):
        torch.cuda.set_device(torch.device("cuda"))  # torch's own check, on this CPU build
    standin = cuda_standin.StandIn(devices=2).install()
    try:
        with pytest.raises(ValueError, match="specified index"):
            torch.cuda.set_device(torch.device("cuda"))
        with pytest.raises(RuntimeError, match="invalid device ordinal"):
            torch.cuda.set_device(2)
        torch.cuda.set_device(torch.device("cuda", 1))
        assert torch.cuda.current_device() == 1
        assert torch.zeros(2, device="cuda:1").device.type == "cpu"
    finally:
        standin.uninstall()
    assert not torch.cuda.is_available()


def test_a_cuda_device_always_has_its_index(cuda_standin):
    assert resolve_device("cuda") == torch.device("cuda", 0)
    assert resolve_device("auto") == torch.device("cuda", 0)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    configure_backend(resolve_device("cuda"))  # crashed before: set_device("cuda")
    assert cuda_standin.calls[-1] == "set_device"
    with pytest.raises(fastcifar.InputError, match="2 CUDA GPU"):
        resolve_device("cuda:2")


@pytest.mark.parametrize("recipe", AIRBENCH)
def test_train_on_cuda_runs_each_airbench_recipe(recipe, cuda_standin, tiny_archive, tmp_path,
                                                capsys):
    out = tmp_path / "run"
    code, printed, err = train(capsys, "--recipe", recipe, "--data", tiny_archive,
                               "--device", "cuda", *TINY, "--out", out)
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert json.loads((out / "config.json").read_text())["device"] == "cuda:0"
    assert summary["device"] == "CUDA stand-in (CPU)"
    # The run was timed with CUDA events, after a warm-up, on the device it asked for.
    assert {"set_device", "Event", "synchronize"} <= set(cuda_standin.calls)
    assert "warm-up run" in printed
    assert 0 <= summary["runs"][0]["accuracy"] <= 1


def test_train_on_the_second_gpu(cuda_standin, tiny_archive, tmp_path, capsys):
    out = tmp_path / "run"
    code, _, err = train(capsys, "--data", tiny_archive, "--device", "cuda:1", *TINY,
                         "--out", out)
    assert code == 0, err
    assert json.loads((out / "config.json").read_text())["device"] == "cuda:1"
    assert cuda_standin.current == 1
    code, _, err = train(capsys, "--data", tiny_archive, "--device", "cuda:2", *TINY,
                         "--out", tmp_path / "none")
    assert code == 2 and "2 CUDA GPU(s)" in err and "Traceback" not in err
    assert not (tmp_path / "none").exists()


def test_train_on_cuda_with_compile(cuda_standin, tiny_archive, tmp_path, capsys):
    out = tmp_path / "run"
    code, printed, err = train(capsys, "--recipe", "airbench94_muon", "--data", tiny_archive,
                               "--device", "cuda", *TINY, "--compile", "max-autotune",
                               "--runs", "2", "--out", out)
    assert code == 0, err
    assert "warm-up run (compile)" in printed
    assert len(json.loads((out / "summary.json").read_text())["runs"]) == 2


def test_the_api_on_cuda(cuda_standin, tmp_path):
    rng = np.random.default_rng(0)
    labels = np.arange(160) % 4
    images = rng.integers(0, 60, (160, 32, 32, 3)).astype(np.uint8)
    images[..., 0] += (labels * 60).astype(np.uint8)[:, None, None]
    data = ImageData(images[:128], labels[:128], images[128:], labels[128:],
                     name="four colours")
    result = fastcifar.train("airbench94", data=data, device="cuda", epochs=1, batch_size=16,
                             widths=(8, 16, 16), out=tmp_path / "run", verbose=False)
    assert result.runs[0].seconds > 0
    accuracy = fastcifar.evaluate(result.model, images[128:], labels[128:], tta_level=2)
    assert accuracy == pytest.approx(result.runs[0].accuracy, abs=1 / 32)
    model = fastcifar.load_model(tmp_path / "run", device="cuda")
    assert fastcifar.evaluate(model, images[128:], labels[128:], tta_level=2) == accuracy


def test_a_battery_over_two_gpus(cuda_standin, tiny_archive, tmp_path):
    out = tmp_path / "battery"
    done = subprocess.run([sys.executable, "-m", "fastcifar", "train", "--gpus", "2",
                           "--data", str(tiny_archive), "--device", "cuda", "--runs", "2",
                           *TINY, "--set", "tta_level=0", "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert [r["rank"] for r in summary["runs"]] == [0, 1]
