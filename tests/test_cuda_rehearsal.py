"""The CUDA path, rehearsed on a CPU through the stand-in (tests/standin/cuda_standin.py):
what a user's first GPU run does, end to end, so that a defect on it fails here first."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import fastcifar
from fastcifar.cli import main
from fastcifar.data.dataset import ImageData
from fastcifar.train.device import configure_backend, resolve_device
from conftest import make_tiny_archive

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from reference_ports import ALL_PORTS  # noqa: E402
from suite_options import OTHERS, PAIRS  # noqa: E402
from suite_steps import rehearsal_overrides, set_options  # noqa: E402

# The GPU suite's recipes: those raced beside their originals, then the others.
SPEED_RUNS = [*dict.fromkeys(ALL_PORTS[p].recipe for p in PAIRS), *OTHERS]
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


def test_a_network_moved_to_a_standin_gpu_says_its_parameters_are_on_cuda(cuda_standin):
    """So that code keyed on a parameter's is_cuda (fused SGD, Muon's bfloat16 iteration)
    takes the GPU's side here too; what stays on the CPU says so."""
    layer = torch.nn.Linear(2, 2)
    assert not layer.weight.is_cuda
    layer.to("cuda")
    assert layer.weight.is_cuda and layer.bias.is_cuda
    assert torch.zeros(2, device="cuda").is_cuda and torch.ones(2).to("cuda:1").is_cuda
    assert not torch.zeros(2).is_cuda and not torch.ones(2).to(torch.float64).is_cuda


def test_a_tensor_placed_on_a_gpu_that_is_not_there_raises_as_on_a_gpu(cuda_standin):
    assert torch.zeros(2, device="cuda:1").device.type == "cpu"  # two stand-in GPUs
    with pytest.raises(RuntimeError, match="invalid device ordinal"):
        torch.zeros(2, device="cuda:7")
    with pytest.raises(RuntimeError, match="invalid device ordinal"):
        torch.ones(2).to("cuda:9")
    with pytest.raises(RuntimeError, match="invalid device ordinal"):
        torch.ones(2).to(torch.device("cuda", 2))


def test_a_cuda_device_always_has_its_index(cuda_standin):
    assert resolve_device("cuda") == torch.device("cuda", 0)
    assert resolve_device("auto") == torch.device("cuda", 0)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    configure_backend(resolve_device("cuda"))  # crashed before: set_device("cuda")
    assert cuda_standin.calls[-1] == "set_device"
    with pytest.raises(fastcifar.InputError, match="2 CUDA GPU"):
        resolve_device("cuda:2")


def test_every_precision_on_cuda(cuda_standin):
    from fastcifar.train.device import choose_precision
    cuda = resolve_device("cuda")
    assert choose_precision("auto", cuda, recipe_mixed=False).weights == torch.float16
    mixed = choose_precision("auto", cuda, recipe_mixed=True)
    assert mixed.autocast_dtype == torch.bfloat16 and not mixed.scaler.is_enabled()
    assert choose_precision("bfloat16", cuda, recipe_mixed=False).autocast_dtype == torch.bfloat16
    scaled = choose_precision("float16", cuda, recipe_mixed=True)
    assert scaled.autocast_dtype == torch.float16 and scaled.scaler.is_enabled()


@pytest.fixture(scope="module")
def ten_classes(tmp_path_factory) -> Path:
    """The GPU suite rehearsal's data: 24 training and 6 test images of each of 10 colours."""
    return make_tiny_archive(tmp_path_factory.mktemp("ten"), classes=10, train=24, test=6)


@pytest.mark.parametrize("recipe", SPEED_RUNS)
def test_train_on_cuda_runs_each_speed_run(recipe, cuda_standin, ten_classes, tmp_path, capsys):
    """The GPU suite's command line for each recipe, its rehearsal options and all
    (tests/test_gpu_suite.py runs the suite itself, with fewer recipes)."""
    out = tmp_path / "run"
    code, printed, err = train(capsys, "--recipe", recipe, "--data", ten_classes, "--device",
                               "cuda", "--runs", "1", *set_options(
                                   rehearsal_overrides(recipe)), "--out", out)
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


def test_an_ejected_file_runs_on_the_gpu_with_its_warm_up(cuda_standin, tiny_archive,
                                                           tmp_path):
    out = tmp_path / "muon.py"
    assert main(["eject", "airbench94_muon", "--out", str(out), "--set", "batch_size=16",
                 "--set", "widths=8,16,16", "--set", "tta_level=0"]) == 0
    done = subprocess.run([sys.executable, str(out), "--data", str(tiny_archive),
                           "--epochs", "1"], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path)  # the file's default device, auto: cuda
    assert done.returncode == 0, done.stderr[-3000:]
    assert "on cuda" in done.stdout and re.search(r"^accuracy \S+ ", done.stdout, re.M)


def test_an_interrupted_cuda_run_resumes_with_its_generators(cuda_standin, tiny_archive,
                                                            tmp_path, monkeypatch, capsys):
    """The checkpoint keeps the GPU's random generator as well, and resume puts it back."""
    from fastcifar.train import loop
    real, out = loop.evaluation_metrics, tmp_path / "cut"

    def interrupt_in_epoch_2(*args, **kwargs):
        if (out / "last.pt").exists():  # epoch 1's checkpoint
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "evaluation_metrics", interrupt_in_epoch_2)
    code, _, err = train(capsys, "--data", tiny_archive, "--device", "cuda", *TINY,
                         "--epochs", "2", "--checkpoints", "--out", out)
    assert code == 130, err
    monkeypatch.setattr(loop, "evaluation_metrics", real)
    assert "get_rng_state" in cuda_standin.calls
    assert main(["train", "--resume", str(out)]) == 0
    assert "continuing from epoch 1" in capsys.readouterr().out
    assert "set_rng_state" in cuda_standin.calls


# Every place fastcifar branches on CUDA or calls torch.cuda: each is reached by the tests
# of this module (checked by test_every_cuda_branch_is_reached, which traces the lines
# they run), run in a subprocess they start, or said not to be reached and why. A new
# branch fails test_every_cuda_branch_is_listed until it is added here.
REACHED, SUBPROCESS = "reached", "reached in a subprocess"
CUDA_BRANCHES = {
    ("train/device.py", 'name = "cuda" if torch.cuda.is_available()'): REACHED,
    ("train/device.py", 'raise InputError(f"--device {name}: no CUDA GPU'):
        "not reached under the stand-in: tests/test_cli.py asks for cuda on a CPU",
    ("train/device.py", "return _cuda_device(device)"): REACHED,
    ("train/device.py", "count = torch.cuda.device_count()"): REACHED,
    ("train/device.py", "index = torch.cuda.current_device() if device.index"): REACHED,
    ("train/device.py", 'return torch.float16 if device.type == "cuda"'): REACHED,
    ("train/device.py", 'scaled = device.type == "cuda" and autocast_dtype'): REACHED,
    ("train/device.py", 'torch.amp.GradScaler("cuda" if scaled'): REACHED,
    ("train/device.py", 'if device.type != "cuda":'): REACHED,
    ("train/device.py", 'if device.type == "cuda" and not _native_bf16():'): REACHED,
    ("train/device.py", 'if device.type not in ("cuda", "cpu"):'): REACHED,
    ("train/device.py", "return torch.cuda.is_bf16_supported(including_emulation=False)"):
        REACHED,
    ("train/device.py", "torch.backends.cudnn.benchmark = True"): REACHED,
    ("train/device.py", "torch.cuda.set_device(device)"): REACHED,
    ("train/device.py", "return torch.cuda.get_device_name(device)"): REACHED,
    ("train/timing.py", "torch.cuda.synchronize(self.device)"): REACHED,
    ("train/timing.py", "start, end = torch.cuda.Event"): REACHED,
    ("data/memory.py", "return torch.cuda.mem_get_info(device)[0]"): REACHED,
    ("train/checkpoint.py", 'state["cuda"] = torch.cuda.get_rng_state(device)'): REACHED,
    ("train/checkpoint.py", 'torch.cuda.set_rng_state(state["cuda"], device)'): REACHED,
    ("sessions/session.py", 'progress = device.type != "cuda"'): REACHED,
    ("train/warmup.py", 'return compile_ or device.type == "cuda"'): REACHED,
    ("cli/run.py", "have = torch.cuda.device_count() if torch.cuda.is_available()"): SUBPROCESS,
    ("eject/driver.py", 'if device.type == "cuda":  # untimed'): SUBPROCESS,
    ("train/distributed.py", 'return f"cuda:{ranks.local_rank}"'): SUBPROCESS,
    ("train/distributed.py", 'dist.init_process_group("nccl" if device.type == "cuda"'):
        SUBPROCESS + " (NCCL's part is the stand-in's Gloo)",
    ("train/data_parallel.py", 'return [device.index] if device.type == "cuda"'):
        "not reached: --ddp on the stand-in would hand DDP CPU tensors with device_ids, which "
        "DDP refuses; tests/test_data_parallel.py runs --ddp on CPU processes",
    ("bench/flops.py", 'size = 8192 if device.type == "cuda"'):
        "not reached: the suite measures its peaks with its own size",
    ("optim/muon.py", "torch.bfloat16 if params[0].is_cuda"): REACHED,
    ("optim/sgd.py", "fused = bool(params) and all(p.is_cuda"): REACHED,
}
PACKAGE = Path(fastcifar.__file__).parent


def branch_lines() -> dict[tuple[str, str], list[int]]:
    """The line numbers of each listed branch in its file (every one must be reached)."""
    lines = {}
    for file, text in CUDA_BRANCHES:
        source = (PACKAGE / file).read_text().splitlines()
        lines[file, text] = [i for i, line in enumerate(source, 1) if text in line]
        assert lines[file, text], f"{file}: {text!r} is gone; update CUDA_BRANCHES"
    return lines


@pytest.fixture(scope="module")
def lines_run():
    """The lines of the files in CUDA_BRANCHES that this module's tests run (traced only in
    those files, so the rest runs at full speed)."""
    files = {str(PACKAGE / file) for file, _ in CUDA_BRANCHES}
    seen: set[tuple[str, int]] = set()

    def local(frame, event, arg):
        if event == "line":
            seen.add((frame.f_code.co_filename, frame.f_lineno))
        return local

    def trace(frame, event, arg):
        return local if frame.f_code.co_filename in files else None

    previous = sys.gettrace()
    sys.settrace(trace)
    yield seen  # (file name, line number) pairs, filled as the tests run
    sys.settrace(previous)


@pytest.fixture(autouse=True)
def traced(lines_run):
    """Every test of this module runs under the tracer."""


def test_every_cuda_branch_is_listed():
    """Each line that tests for CUDA or calls torch.cuda is listed, or the line after it."""
    pattern = re.compile(r'type [!=]= "cuda"|is_cuda|"cuda" if|"nccl"|torch\.cuda\.\w+\(')
    for path in sorted(PACKAGE.rglob("*.py")):
        file = path.relative_to(PACKAGE).as_posix()
        texts = [text for f, text in CUDA_BRANCHES if f == file]
        source = [line for line in path.read_text().splitlines() if line.strip()]
        for line, after in zip(source, source[1:] + [""]):
            if pattern.search(line) and not line.strip().startswith(("#", '"')):
                assert any(t in line or t in after for t in texts), \
                    f"{file}: a CUDA branch not in CUDA_BRANCHES: {line.strip()}"


def test_every_cuda_branch_is_reached(lines_run, request):
    """Last in this module: the lines its tests ran include every branch marked reached."""
    here = [item for item in request.session.items if item.module is request.module]
    tests = [name for name in globals() if name.startswith("test_")]
    if here[-1] is not request.node or len(here) < len(tests) + len(SPEED_RUNS) - 1:
        pytest.skip("checks what the whole module ran: run all of tests/test_cuda_rehearsal.py")
    missed = [f"{file}:{line} {text}" for (file, text), lines in branch_lines().items()
              for line in lines
              if CUDA_BRANCHES[file, text] == REACHED
              and (str(PACKAGE / file), line) not in lines_run]
    assert not missed, "CUDA branches no test here reached:\n" + "\n".join(missed)
