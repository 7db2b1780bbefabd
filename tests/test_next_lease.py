"""benchmarks/next_lease.py: the next lease's stages in order, each in the time left, and
what comes back in at most 8 files."""

from __future__ import annotations

import json
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import next_lease  # noqa: E402


def test_the_plan_puts_the_frontier_races_first(tmp_path, capsys):
    data, references = tmp_path / "data.tar.gz", tmp_path / "references"
    data.write_bytes(b"x")
    references.mkdir()
    assert next_lease.main(["--out", str(tmp_path / "out"), "--data", str(data),
                            "--references", str(references), "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" ")[0] for line in lines] == [
        "machine-before", "uncompiled-frontier", "profiles", "compiled-fable94_e5",
        "compiled-airbench94_muon", "airbench96", "search", "machine-after"]
    assert "--pairs fable94_e5,hiverge94 --uncompiled --runs 6 --chunks 2" in lines[1]
    assert "--pair fable94_e5 --pair hiverge94" in lines[2]
    assert "--pairs fable94_e5 --runs 6" in lines[3] and "--uncompiled" not in lines[3]
    # The search, after the races, in the seconds they leave, continuing the committed study.
    assert "benchmarks/search.py run --study" in lines[6]
    assert "--budget {seconds_left}" in lines[6]
    assert "--resume-from " + str(ROOT / "benchmarks/results/search-fable94_e1") in lines[6]
    assert next_lease.main(["--out", str(tmp_path / "out"), "--data", str(data),
                            "--references", str(references), "--dry-run", "--rehearsal"]) == 0
    search = capsys.readouterr().out.splitlines()[6]  # the rehearsal's study is its own
    assert "--rehearsal" in search and "--resume-from" not in search
    assert not (tmp_path / "out").exists()  # a dry run writes nothing
    assert next_lease.main(["--out", str(tmp_path / "out"), "--data", str(data),
                            "--references", str(references), "--dry-run",
                            "--skip", "profiles,machine-after"]) == 0
    assert "profiles" not in capsys.readouterr().out
    assert next_lease.main(["--out", str(tmp_path / "out"), "--data", str(data),
                            "--references", str(references), "--skip", "profile"]) == 2
    assert "--skip profile: no such stage" in capsys.readouterr().err


def test_missing_inputs_are_one_line_before_any_work(tmp_path, capsys):
    assert next_lease.main(["--out", str(tmp_path / "out"), "--data", str(tmp_path / "no"),
                            "--references", str(tmp_path)]) == 2
    assert "expected the stand-in archive" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_stages_run_in_the_time_left_and_their_files_come_back(tmp_path):
    work, out = tmp_path / "work", tmp_path / "out"
    out.mkdir()
    work.mkdir()
    python = sys.executable
    writes = ("import pathlib, sys; d = pathlib.Path(sys.argv[1]); "
              "(d / 'table.md').write_text('| a table |'); (d / 'model.pt').write_bytes(b'0' * 99); "
              "(d / 'work').mkdir(); (d / 'work' / 'cache.bin').write_bytes(b'1')")
    stages = [next_lease.Stage("first", [python, "-c", writes, str(work / "first")], 1,
                               "table.md"),
              next_lease.Stage("given", [python, "-c", "import pathlib, sys; pathlib.Path("
                                         "sys.argv[1]).write_text(sys.argv[2])",
                                         str(work / "given" / "study.json"),
                                         next_lease.SECONDS_LEFT], 1,
                               returns=("study.json", "trials.jsonl")),
              next_lease.Stage("missing", ["no-such-program-here"], 1),
              next_lease.Stage("slow", [python, "-c", "import time; time.sleep(30)"], 1),
              next_lease.Stage("last", [python, "-c", "print('never')"], 5)]
    started = time.monotonic()
    next_lease.run_stages(stages, work, work / "lease.log", next_lease.MARGIN + 4, started)
    next_lease.bundle(stages, work, out, work / "lease.log", started)
    status = {s.name: s.result["status"] for s in stages}
    assert status["first"] == "done" and status["missing"].startswith("not run")
    assert status["slow"] == "cut off by the budget" and status["last"] == "skipped"
    # A stage's `returns` come back beside lease.* (those it wrote); its command was given
    # the seconds left when it started.
    assert sorted(p.name for p in out.iterdir()) == ["lease.json", "lease.log", "lease.md",
                                                     "lease.tar.gz", "study.json"]
    assert 0 < float((out / "study.json").read_text()) <= 4
    assert "| a table |" in (out / "lease.md").read_text()
    assert [s["name"] for s in json.loads((out / "lease.json").read_text())["stages"]] == [
        "first", "given", "missing", "slow", "last"]
    with tarfile.open(out / "lease.tar.gz") as tar:
        names = tar.getnames()
    assert "lease/first/table.md" in names
    assert not any(n.endswith(("model.pt", "cache.bin")) for n in names)  # heavy: left out
