"""benchmarks/gpu_suite.py, rehearsed on a CPU under the CUDA stand-in: every step of the
real call runs (our recipes compiled, the ports derived from ../shared/references and run,
the budget, the outputs), so that the one call a lent GPU allows works the first time."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from conftest import REFERENCES, make_tiny_archive

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu_suite  # noqa: E402
import suite_steps  # noqa: E402
from fastcifar.sessions import ablate  # noqa: E402
from ports import derive  # noqa: E402
from reference_ports import ALL_PORTS  # noqa: E402

needs_references = pytest.mark.skipif(
    not REFERENCES.is_dir(), reason=f"the original scripts are not at {REFERENCES}")


@pytest.fixture(scope="module")
def ten_classes(tmp_path_factory) -> Path:
    """24 training and 6 test images of each of 10 colours: the ports' nets have 10 outputs."""
    return make_tiny_archive(tmp_path_factory.mktemp("ten"), classes=10, train=24, test=6)


def suite_args(tmp_path: Path, data: Path, *more: str) -> list[str]:
    return ["--rehearsal", "--out", str(tmp_path / "out"), "--work", str(tmp_path / "work"),
            "--data", str(data), "--references", str(REFERENCES), *more]


@needs_references
def test_the_rehearsal_reaches_every_step_and_returns_its_files(cuda_standin, ten_classes,
                                                                  tmp_path, monkeypatch):
    monkeypatch.setenv("FASTCIFAR_DATA", str(tmp_path / "cache"))
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_suite.py"),
                           *suite_args(tmp_path, ten_classes, "--runs", "1", "--chunks", "1",
                                       "--pairs", "fable94_e1", "--others", "",
                                       "--ablation-runs", "1",
                                       "--ablation-tricks", "tta", "--pruning-runs", "1")],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = tmp_path / "out"
    assert {p.name for p in out.iterdir()} <= {"inductor-cache.tar.gz", "suite.json",
                                                "suite.log", "table.md", "ablation.json",
                                                "ablation.png", "results.tar.gz"}
    suite = json.loads((out / "suite.json").read_text())
    keys = [s["key"] for s in suite["steps"]]
    assert keys[:2] == ["fable94_e1-fastcifar-0", "fable94_e1-reference-0"]
    # (each other recipe runs in-process on the suite's command line in test_cuda_rehearsal;
    # an other's step is built as a pair's own side is, test_uncompiled_pairs_...)
    assert keys[2:] == ["airbench94-ablation-0", "airbench94-pruning-0"]
    ablation = json.loads((out / "ablation.json").read_text())  # airbench94 without TTA too
    assert [r["variant"] for r in ablation["rows"]] == ["full recipe", "without tta"]
    assert all(s["status"] == "done" and s["runs"] == s["runs_planned"] for s in suite["steps"])
    rows = {(r["recipe"], r["side"].split()[0]): r for r in suite["rows"]}
    assert rows["fable94_e1", "reference"]["runs"] == 1
    assert rows["fable94_e1", "reference"]["side"].endswith("e1_1.74s_single-gpu_CHAMPION.py")
    assert not (tmp_path / "work" / "ports" / "hiverge94.py").exists()  # only the pairs asked
    assert all(0 <= a <= 1 for r in rows.values() for a in r["accuracies"])
    assert "| fable94_e1 | fastcifar (max-autotune) | 1 |" in (out / "table.md").read_text()
    # The run folders and ports went to the work folder, derived from the originals.
    work = tmp_path / "work"
    changes = json.loads((work / "ports" / "fable94_e1.changes.json").read_text())
    assert changes["source"].endswith("fable-100m/recipes/e1_1.74s_single-gpu_CHAMPION.py")
    assert (work / "runs" / "fable94_e1-fastcifar-0" / "summary.json").exists()
    # The pruning trained on all the images, the hardest half and a random half.
    pruning = json.loads((work / "pruning" / "pruning.json").read_text())
    assert [len(a) for a in pruning["accuracy"].values()] == [1, 1, 1]
    with tarfile.open(out / "results.tar.gz") as t:
        bundled = set(t.getnames())
    assert {"runs/fable94_e1-fastcifar-0/summary.json", "fable94_e1-reference-0.json",
            "ports/fable94_e1.changes.json", "ablation/ablation.png", "pruning/pruning.md",
            "pruning/scoring/data_map.png"} <= bundled
    assert not any(name.endswith((".pt", ".npz")) for name in bundled)


@needs_references
def test_uncompiled_pairs_turn_the_originals_compile_off_and_race_eager(
        cuda_standin, ten_classes, tmp_path, monkeypatch):
    """--uncompiled: neither side compiles (ours without --compile, the originals under
    TORCHDYNAMO_DISABLE), E1's port runs its eager loop, and the steps run in --steps order,
    each given the data by its absolute path (they run in the work folder)."""
    monkeypatch.chdir(ten_classes.parent)
    parser_args = suite_args(tmp_path, Path(ten_classes.name), "--uncompiled", "--pairs",
                             "fable94_e1", "--steps", "pruning,others,pairs", "--runs", "2",
                             "--others", "airbench94_bnfree", "--other-runs", "1")
    (tmp_path / "out").mkdir()
    suite = gpu_suite.Suite(gpu_suite.parse(parser_args))
    suite.prepare()
    steps = suite.plan()
    assert [s.key for s in steps] == ["airbench94-pruning-0", "airbench94_bnfree-fastcifar-0",
                                      "fable94_e1-fastcifar-0", "fable94_e1-reference-0"]
    other, ours, theirs = (s.command(suite)[0] for s in steps[1:])
    assert other[2:6] == ["fastcifar", "train", "--recipe", "airbench94_bnfree"]
    assert "--compile" not in other and other[other.index("--runs") + 1] == "1"
    assert "--compile" not in ours and suite.environ()["TORCHDYNAMO_DISABLE"] == "1"
    assert ours[ours.index("--data") + 1] == str(ten_classes.resolve())
    port = Path(theirs[1]).read_text()
    replay = '    fs = extra["fullstep"]\n    fs.prepare()\n    fs.mega.replay()\n'
    assert replay not in port and "run_steps(model" in port
    record = json.loads((tmp_path / "work" / "ports" / "fable94_e1.changes.json").read_text())
    assert record["uncompiled"] and record["uncompiled_changes"] == []  # the rehearsal's did it
    # At full size the uncompiled changes do it, and are listed.
    full = derive(ALL_PORTS["fable94_e1"], tmp_path / "full", REFERENCES, uncompiled=True)
    assert replay not in full.read_text() and "run_steps(model" in full.read_text()
    record = json.loads((tmp_path / "full" / "fable94_e1.changes.json").read_text())
    assert len(record["uncompiled_changes"]) == 4


@pytest.fixture(autouse=True)
def process_starts_now(monkeypatch):
    """Each test runs main() as a new process would: its budget counts from the test's start,
    not from the module's import at collection (minutes earlier in a full test run)."""
    monkeypatch.setattr(gpu_suite, "STARTED", time.monotonic())


def in_process(capsys, *args) -> tuple[int, str]:
    code = gpu_suite.main(list(args))
    out = capsys.readouterr()
    return code, out.out + out.err


@needs_references
def test_missing_data_is_one_line_before_any_work(cuda_standin, tmp_path, capsys):
    code, printed = in_process(capsys, *suite_args(tmp_path, tmp_path / "nowhere.tar.gz"))
    assert code == 2 and "Traceback" not in printed
    assert printed.strip() == (f"gpu_suite: --data {tmp_path / 'nowhere.tar.gz'}: no such file "
                               f"or folder; expected the stand-in archive (copy "
                               f"../shared/data/cifar10-jpeg.tar.gz into .data/ and carry it) "
                               f"or cifar10")
    assert not (tmp_path / "work").exists()


def test_a_work_folder_with_an_earlier_call_s_results_is_refused(cuda_standin, tiny_archive,
                                                                  tmp_path, capsys):
    """A step that failed would read the earlier call's summary.json as its own runs."""
    (tmp_path / "work" / "runs" / "airbench94_muon-ours").mkdir(parents=True)
    code, printed = in_process(capsys, *suite_args(tmp_path, tiny_archive))
    assert code == 2 and printed.strip() == (f"gpu_suite: --work {tmp_path / 'work'} holds an "
                                             f"earlier call's results (runs); give an empty "
                                             f"or new folder")


def test_missing_references_are_one_line(cuda_standin, tiny_archive, tmp_path, capsys):
    code, printed = in_process(capsys, "--out", str(tmp_path / "out"), "--data",
                               str(tiny_archive), "--references", str(tmp_path / "none"))
    assert code == 2 and "Traceback" not in printed and "no references folder" in printed


def test_an_unknown_pair_is_one_line(cuda_standin, tiny_archive, tmp_path, capsys):
    code, printed = in_process(capsys, "--out", str(tmp_path / "out"), "--data",
                               str(tiny_archive), "--pairs", "hiverge94,airbench99")
    assert code == 2 and printed.strip().startswith("gpu_suite: --pairs hiverge94,airbench99: "
                                                    "no port airbench99; expected some of ")


def test_an_unknown_other_recipe_is_one_line(cuda_standin, tiny_archive, tmp_path, capsys):
    code, printed = in_process(capsys, "--out", str(tmp_path / "out"), "--data",
                               str(tiny_archive), "--others", "hlb,airbench97")
    assert code == 2 and printed.strip().startswith("gpu_suite: --others hlb,airbench97: no "
                                                    "recipe airbench97; expected some of")


def test_without_cuda_the_suite_says_so(tiny_archive, tmp_path, capsys):
    code, printed = in_process(capsys, "--out", str(tmp_path / "out"), "--data",
                               str(tiny_archive))
    assert code == 2 and "no CUDA device" in printed


def fake_steps(monkeypatch, script: str) -> None:
    """Every step's process runs `script` instead of a training."""
    for kind in (suite_steps.Ours, suite_steps.Original, suite_steps.Ablation,
                 suite_steps.Pruning):
        monkeypatch.setattr(kind, "command", lambda self, suite: (
            [sys.executable, "-S", "-c", script], suite.work / f"{self.key}.json"))  # no torch


@needs_references
def test_a_failed_step_makes_the_exit_status_non_zero(cuda_standin, ten_classes, tmp_path,
                                                      monkeypatch, capsys):
    fake_steps(monkeypatch, "raise SystemExit(3)")
    code, printed = in_process(capsys, *suite_args(tmp_path, ten_classes, "--other-runs", "0",
                                                   "--chunks", "2"))
    assert code == 1 and "failed: airbench94_muon-fastcifar-0" in printed
    suite = json.loads((tmp_path / "out" / "suite.json").read_text())
    assert {s["status"] for s in suite["steps"]} == {"failed"}
    # The record pair first, each side in two processes of 5 runs, alternating.
    assert [(s["key"], s["runs_planned"]) for s in suite["steps"]][:4] == [
        ("airbench94_muon-fastcifar-0", 5), ("airbench94_muon-reference-0", 5),
        ("airbench94_muon-fastcifar-1", 5), ("airbench94_muon-reference-1", 5)]
    assert "exit 3" in suite["steps"][0]["note"]


@needs_references
def test_the_budget_holds_from_process_start(cuda_standin, ten_classes, tmp_path, monkeypatch,
                                             capsys):
    """A step that would overrun is cut off where the budget ends, and the steps whose
    estimate no longer fits are skipped, saying why."""
    fake_steps(monkeypatch, "import time; time.sleep(600)")
    monkeypatch.setattr(suite_steps, "COMPILED_START", 1.0)  # so that the first one starts
    monkeypatch.setattr(suite_steps, "RUN_SECONDS", {"airbench94_muon": 0.1})
    budget = gpu_suite.MARGIN + gpu_suite.elapsed_since_start() + 8
    code, printed = in_process(capsys, *suite_args(tmp_path, ten_classes, "--budget",
                                                   str(budget), "--other-runs", "0"))
    suite = json.loads((tmp_path / "out" / "suite.json").read_text())
    first, *rest = suite["steps"]
    assert first["status"] == "cut off" and first["wall"] < 10
    assert rest and all(s["status"] == "skipped" and "needs about" in s["note"] for s in rest)
    assert gpu_suite.elapsed_since_start() < budget
    assert code == 1  # the cut-off step finished no run


@needs_references
def test_a_suite_that_measured_nothing_is_not_a_success(cuda_standin, ten_classes, tmp_path,
                                                        monkeypatch, capsys):
    """Every step skipped (a budget too small for any of them): exit 1, saying so."""
    fake_steps(monkeypatch, "pass")
    budget = gpu_suite.MARGIN + gpu_suite.elapsed_since_start() + 5
    code, printed = in_process(capsys, *suite_args(tmp_path, ten_classes, "--budget",
                                                   str(budget)))
    suite = json.loads((tmp_path / "out" / "suite.json").read_text())
    assert {s["status"] for s in suite["steps"]} == {"skipped"}
    assert code == 1 and "measured nothing" in printed


@needs_references
def test_the_suite_tars_its_own_inductor_cache_only(cuda_standin, ten_classes, tmp_path,
                                                   monkeypatch, capsys):
    """torch points TORCHINDUCTOR_CACHE_DIR at its shared default once a process compiles:
    the suite's steps use, and return, the cache in its work folder alone."""
    shared = tmp_path / "shared-cache"
    (shared / "big").mkdir(parents=True)
    (shared / "big" / "kernel.so").write_bytes(b"x" * 1000)
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(shared))
    fake_steps(monkeypatch, "import os, pathlib; d = pathlib.Path(os.environ["
                            "'TORCHINDUCTOR_CACHE_DIR']); d.mkdir(exist_ok=True); "
                            "(d / 'mine.py').write_text('#')")
    in_process(capsys, *suite_args(tmp_path, ten_classes, "--other-runs", "0", "--runs", "1"))
    with tarfile.open(tmp_path / "out" / "inductor-cache.tar.gz") as t:
        assert [Path(n).name for n in t.getnames() if n.endswith((".py", ".so"))] == ["mine.py"]


def test_the_ablation_can_sweep_epochs_and_counts_their_runs(cuda_standin, ten_classes,
                                                              tmp_path):
    """--ablation-epochs-for-accuracy: the ablation's command sweeps epochs, and its
    estimate counts every variant's longer runs (SWEEP's factors) before it starts."""
    (tmp_path / "out").mkdir()
    plain, sweeping = (gpu_suite.Suite(gpu_suite.parse(suite_args(
        tmp_path, ten_classes, "--steps", "ablation", "--pairs", "", "--others", "",
        "--ablation-runs", "2", "--ablation-tricks", "tta,lookahead", *extra))) for extra in
        ([], ["--ablation-epochs-for-accuracy"]))
    for suite in (plain, sweeping):
        suite.prepare()
    step = plain.plan()[0]
    assert "--epochs-for-accuracy" not in step.command(plain)[0]
    assert "--epochs-for-accuracy" in step.command(sweeping)[0]
    assert step.cost_in_runs(plain) == 6
    assert step.cost_in_runs(sweeping) == 6 + 2 * 2 * sum(ablate.SWEEP)


@needs_references
def test_a_pairs_second_side_is_estimated_from_its_first(ten_classes, tmp_path):
    """Before its own first process, the original's side is expected to take what ours took
    on this machine (per run, with the start-up spread over them), not the cold default."""
    suite = gpu_suite.Suite(gpu_suite.parse(suite_args(tmp_path, ten_classes)))
    ours = suite_steps.Ours("airbench94_muon", 3, compile=True,
                            result={"runs": 3, "wall": 80.0})
    suite.steps = [ours]
    theirs = suite_steps.Original("airbench94_muon", 5, compile=True, port="airbench94_muon")
    assert suite.estimate(theirs) == pytest.approx(80.0 / 4 * 6)
    default = suite_steps.COMPILED_START + 5 * suite_steps.RUN_SECONDS["fable94_e1"]
    assert suite.estimate(suite_steps.Original("fable94_e1", 5, compile=True,
                                               port="fable94_e1")) == default
    uncompiled = suite_steps.Original("airbench94_muon", 5, port="airbench94_muon")
    assert suite.estimate(uncompiled) == suite_steps.UNCOMPILED_START + 5 * 4.0  # ours compiled
