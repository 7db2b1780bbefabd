"""The frontier ports (benchmarks/frontier_ports.py) are hiverge's and Fulcrum's originals with
exactly the changes they list, and the rehearsal of each trains on a CPU under the CUDA
stand-in and records its run as the GPU suite reads it."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from conftest import REFERENCES, make_tiny_archive

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import cuda_standin  # noqa: E402
import frontier_ports as fp  # noqa: E402
import reference_ports  # noqa: E402
from airbench_ports import AIRBENCH_PORTS  # noqa: E402
from ports import (Change, ReferenceChanged, apply_changes, derive, derive_all,  # noqa: E402
                   write_data)
from result_files import read_json, theirs  # noqa: E402
from test_reference_ports import check_recorded, derive_ports  # noqa: E402

from fastcifar.data import load_dataset  # noqa: E402
from fastcifar.errors import InputError  # noqa: E402
from fastcifar.recipes import RECIPES  # noqa: E402

needs_references = pytest.mark.skipif(
    not REFERENCES.is_dir(), reason=f"the original scripts are not here ({REFERENCES})")
VARIANTS = [(name, rehearsal) for name in fp.FRONTIER_PORTS for rehearsal in (False, True)]
IDS = [f"{name}{'-rehearsal' if rehearsal else ''}" for name, rehearsal in VARIANTS]


@pytest.fixture(scope="module")
def derived(tmp_path_factory):
    """Every frontier port, plain and rehearsal: (name, rehearsal) -> (original, port), and
    the folder they went to."""
    if not REFERENCES.is_dir():
        pytest.skip(f"the original scripts are not here ({REFERENCES})")
    out = tmp_path_factory.mktemp("frontier")
    return derive_ports(out, fp.FRONTIER_PORTS), out


@needs_references
@pytest.mark.parametrize("name, rehearsal", VARIANTS, ids=IDS)
def test_each_change_is_one_edit_of_the_original_and_is_recorded(derived, name, rehearsal):
    check_recorded(derived, fp.FRONTIER_PORTS[name], name, rehearsal)
    assert name in RECIPES  # the recipe it races


@needs_references
@pytest.mark.parametrize("name", list(fp.FRONTIER_PORTS))
def test_the_gpu_port_compiles_and_keeps_the_originals_speed_settings(derived, name):
    original, port_text = derived[0][name, False]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        compile(port_text, f"{name}.py", "exec")
    for setting in ("max-autotune", ".half()", "float16", "torch.backends.cudnn.benchmark = True",
                    "torch.cuda.Event(enable_timing=True)", "torch.cuda._sleep(",
                    "torch.cuda.CUDAGraph()", "fullgraph=True", "channels_last",
                    'main("warmup", model)'):
        assert port_text.count(setting) == original.count(setting), setting
    assert "max-autotune" in port_text and "torchvision" not in port_text
    assert "time.sleep(" not in port_text  # Fulcrum's harness forbids E1's 60 s sleeps


@needs_references
def test_the_gpu_ports_take_the_suites_options_and_record_every_run(derived):
    ports = {name: derived[0][name, False][1] for name in fp.FRONTIER_PORTS}
    for text in ports.values():
        assert '"--data-dir", default="cifar10"' in text and "default=200" in text
        assert "for run in range(args.runs):" in text
        assert 'os.replace(args.out + ".part", args.out)' in text
    hiverge = ports["hiverge94"]
    assert "torch.cuda._sleep(int(6000000000))" in hiverge  # kept: part of its timing
    assert "CifarLoader(args.data_dir, train=False" in hiverge
    assert '"accuracy_tta": tta_val_acc, "seconds": time_seconds' in hiverge
    for name in ("fable94_e1", "fable94_e5"):
        driver = ports[name][ports[name].index("def tta_accuracy(model, loader):"):]
        assert "DATA_PATH = args.data_dir" in driver and "torch.manual_seed(1234)" in driver
        # Prepare and train timed together; six views weighted equally, after the clock.
        prepare = "reset_all(model, extra[" if name == "fable94_e5" else "setup()\n"
        assert driver.index("start = time.perf_counter()") < driver.index(prepare) < \
            driver.index("train(model, extra, ctx)") < \
            driver.index("seconds = time.perf_counter() - start") < \
            driver.index("= tta_accuracy(model, test_loader)")
        assert "torch.stack([model(view) for view in views]).float().mean(0)" in driver


@needs_references
@pytest.mark.parametrize("mode", ["--rehearsal", "--cpu"])
def test_the_command_derives_the_frontier_ports(tmp_path, capsys, mode):
    assert reference_ports.main(["--out", str(tmp_path), "--references", str(REFERENCES),
                                 "--frontier", mode]) == 0
    out = capsys.readouterr().out
    for name, port in fp.FRONTIER_PORTS.items():
        extra = port.rehearsal_changes if mode == "--rehearsal" else port.cpu_changes
        assert (tmp_path / f"{name}.py").exists() and f"{name}: " in out
        assert all(c.why in out for c in port.changes + extra)
    assert not (tmp_path / "airbench94_muon.py").exists()


@needs_references
def test_the_cpu_ports_run_full_size_in_float32_without_compile(tmp_path):
    derive_all(fp.FRONTIER_PORTS, tmp_path, REFERENCES, cpu=True)
    for name, port in fp.FRONTIER_PORTS.items():
        original = (REFERENCES / port.source).read_text()
        text = (tmp_path / f"{name}.py").read_text()
        for change in port.cpu_changes:
            assert original.count(change.old) == change.count, change.why
        record = json.loads((tmp_path / f"{name}.changes.json").read_text())
        assert record["cpu"] and [c["why"] for c in record["cpu_changes"]] == [
            c.why for c in port.cpu_changes]
        # float32 throughout, compile off, full size: the original's widths and batch.
        assert "torch.half" not in text and ".half()" not in text
        assert text.count("torch.float32") >= original.count("torch.half")
        assert 'os.environ["TORCHDYNAMO_DISABLE"] = "1"' in text
        assert "block1=64, block2=256, block3=256" in text and "1536" in text
        compile(text, f"{name}.py", "exec")
    hiverge = (tmp_path / "hiverge94.py").read_text()
    assert 'main("warmup", model)' not in hiverge and "torch.cuda._sleep(" not in hiverge
    assert "ceil(7.59 * len(train_loader))" in hiverge
    e1 = (tmp_path / "fable94_e1.py").read_text()
    assert all(change.old not in e1 for change in fp.E1_EAGER)  # no graph captured or run
    assert '"train_epochs": 8.875,' in e1 and '"res_schedule": [24, 24, 24, 28, 28, 28' in e1


def test_a_port_is_derived_for_a_rehearsal_or_a_cpu_run_and_only_where_written(tmp_path):
    with pytest.raises(InputError, match="not both"):
        derive(fp.HIVERGE, tmp_path, REFERENCES, rehearsal=True, cpu=True)
    with pytest.raises(InputError, match="no changes for a full run on a CPU"):
        derive(AIRBENCH_PORTS["airbench94_muon"], tmp_path, REFERENCES, cpu=True)
    assert not list(tmp_path.iterdir())


def test_a_change_of_every_occurrence_counts_them():
    change = Change("torch.half", "torch.float32", "all of them", count=2)
    assert apply_changes("p", "a torch.half b torch.half", [change]) == \
        "a torch.float32 b torch.float32"
    with pytest.raises(ReferenceChanged, match="exactly 2 time"):
        apply_changes("p", "a torch.half", [change])


@pytest.fixture(scope="module")
def rehearsal_ports(tmp_path_factory):
    """The rehearsal ports, and 24 training and 6 test images of each of 10 colours in the
    originals' train.pt / test.pt form."""
    if not REFERENCES.is_dir():
        pytest.skip(f"the original scripts are not here ({REFERENCES})")
    out = tmp_path_factory.mktemp("rehearsal")
    archive = make_tiny_archive(out, classes=10, train=24, test=6)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FASTCIFAR_DATA", str(out / "cache"))
        dataset = load_dataset(archive, say=lambda line: None)
    data = write_data(dataset, out / "data")
    return derive_all(fp.FRONTIER_PORTS, out / "ports", REFERENCES, rehearsal=True), data


@needs_references
# (E1's rehearsal runs inside the GPU suite's, tests/test_gpu_suite.py: not twice)
@pytest.mark.parametrize("name", [n for n in fp.FRONTIER_PORTS if n != "fable94_e1"])
def test_the_rehearsal_trains_under_the_stand_in_and_records_its_run(rehearsal_ports, name,
                                                                     tmp_path):
    ports, data = rehearsal_ports
    result = tmp_path / "result.json"
    done = subprocess.run([sys.executable, str(ports[name]), "--data-dir", str(data),
                           "--runs", "1", "--out", str(result), "--logdir", str(tmp_path)],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300,
                          env=cuda_standin.environment(devices=1))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    accuracies, seconds = theirs(read_json(result))
    assert len(accuracies) == 1 and 0 <= accuracies[0] <= 1 and seconds[0] > 0
    record = json.loads(result.read_text())
    assert record["source"] == fp.FRONTIER_PORTS[name].source
