"""One prepared GPU measurement: fastcifar beside the original scripts, in one command.

On a lent GPU (one command of at most --call-seconds, 10 minutes today; no package
registry), from the
repository root, with the stand-in archive and ../shared/references carried in ignored
folders (.data/ and .ref/references/):

    PYTHONPATH=. python benchmarks/gpu_suite.py --out $OUT --data .data/cifar10-jpeg.tar.gz \
        --references .ref/references

What it does, within --budget seconds counted from the process's start:
1. checks every input (CUDA, the data, the original scripts, the output folder) before any
   work, and stops with one line if one is wrong;
2. records the device, torch, the commit, and the peak TFLOP/s of large bfloat16 and
   float16 matrix products;
3. derives the ports of the originals (benchmarks/reference_ports.py) and writes the data
   in their own train.pt / test.pt form, in a fixed shuffled order;
4. the steps, in the order --steps gives (by default pairs, others, ablation, pruning):
   - pairs: the record pairs (--pairs), each recipe beside its original: airbench94_muon
     beside `airbench94_muon.py`, hiverge94 beside hiverge's `cifar10_speedrun.py`,
     fable94_e1 and fable94_e5 beside Fulcrum's E1 and E5 (benchmarks/frontier_ports.py),
     airbench94 beside `legacy/airbench94_compiled.py`: --runs runs a side, each process
     compiled once with max-autotune as the originals are. With a warm Inductor cache
     (--inductor-cache) each side is split into two processes run alternately (ours, the
     original, ours, the original); on a cold one each process pays minutes of compile, so
     each side is one. --uncompiled races both sides uncompiled instead (the originals'
     torch.compile off by TORCHDYNAMO_DISABLE, and each port's uncompiled changes): an
     accuracy comparison that spends no minutes compiling, its seconds not a record's;
   - others: the other speed-run recipes, --other-runs each, uncompiled, as time allows;
   - ablation: airbench94's ablation (`fastcifar ablate`: each trick left out,
     --ablation-runs runs a variant, uncompiled), whose ablation.json and .png come back;
     with --ablation-epochs-for-accuracy also the epochs each variant that lost accuracy
     needs to match the full recipe (the airbench paper's measure of a trick);
   - pruning: examples/pruning.py on the whole training set (score it with 2 runs of
     airbench94's per-example records, keep the hardest half by AUM and a random half,
     --pruning-runs runs on each and on all), uncompiled.
Every step is a process of its own: each starts from a clean Dynamo cache, and the one
that would not end within the budget is cut off (what it finished is kept, since both
sides write their results after every run). Before a step starts, its time is estimated
(suite_steps.py's first estimates at first, then what the same side's earlier process
took): a step that cannot fit is skipped, with the reason.

What comes back in --out (the device tool returns --files-back files, 8 today): suite.json
(rewritten after every step), table.md, suite.log (every process's output, with Dynamo's
recompile and graph-break log), ablation.json and ablation.png, results.tar.gz (each run
folder's summary and per-epoch metrics, the ports' results and changes, the ablation's and
the pruning's tables, scores and pictures), and inductor-cache.tar.gz when it is no larger
than --file-mib (16 MiB today; carry it to the next call and give it to --inductor-cache:
its compiles are then warm). The suite says which of them would not come back. The run
folders, ports and data go in --work. The exit status is 1 when any step failed, or was
cut off before its first run, or when no step finished a run (all skipped: nothing measured).

Accuracy on the stand-in is lower than on the official CIFAR-10 and is never reported as an
official figure. --rehearsal runs the same steps on a tiny data set with narrow networks
and the ports' rehearsal changes: CI runs it on a CPU under the CUDA stand-in
(tests/standin/), so every step of the real call has run before GPU time is spent.
"""

from __future__ import annotations

import time

STARTED = time.monotonic()  # the budget counts from here: imports and set-up included

import functools  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tarfile  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

import torch  # noqa: E402

import device_limits  # noqa: E402
from fastcifar import load_dataset  # noqa: E402
from fastcifar.bench.flops import measure_peak_tflops, run_flops  # noqa: E402
from fastcifar.errors import InputError  # noqa: E402
from fastcifar.files import atomic_path, source_digest  # noqa: E402
from fastcifar.recipes import get_recipe  # noqa: E402
from fastcifar.recipes.fields import with_values  # noqa: E402
from fastcifar.report.records import provenance  # noqa: E402
from fastcifar.train.device import device_name  # noqa: E402
from ports import derive_all, write_data  # noqa: E402
from reference_ports import ALL_PORTS  # noqa: E402
from result_files import SUITE, Runs, bundle_results, write_json  # noqa: E402
from suite_options import MARGIN, check_inputs, parse  # noqa: E402
from suite_steps import (Ablation, Original, Ours, Pruning, Step,  # noqa: E402
                         rehearsal_overrides)


class Suite:
    def __init__(self, args):
        self.args = args
        self.limits = device_limits.from_options(args)
        self.out = Path(args.out)
        self.work = Path(args.work or tempfile.mkdtemp(prefix="gpu-suite-"))
        # Its own cache, whatever TORCHINDUCTOR_CACHE_DIR says (torch sets that variable in
        # a process that has compiled, to its shared default, which may hold gigabytes).
        self.cache = self.work / "inductor-cache"
        self.results: dict = {"started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                              "budget": args.budget, "rehearsal": args.rehearsal,
                              "uncompiled": args.uncompiled, "argv": sys.argv[1:],
                              "steps": [], "rows": []}
        self.steps: list[Step] = []

    # Time.
    def left(self) -> float:
        return self.args.budget - MARGIN - elapsed_since_start()

    def estimate(self, step: Step) -> float:
        """Seconds the step should take: what its side's last process took per run, plus
        its start-up; before its side has run, what the other side of its pair took on
        this machine (a better guess than the default, and one that is too low costs only
        the runs the budget then cuts off); else the first estimate."""
        ran = [s for s in self.steps if s.recipe == step.recipe and s.compile == step.compile
               and s.result.get("runs")]
        done = ([s for s in ran if type(s) is type(step)]
                or [s for s in ran if step.paired_with(s)])
        if done:
            last = done[-1].result
            return last["wall"] / (last["runs"] + 1) * (step.runs + 1)
        return step.first_estimate(self)

    # Output.
    def say(self, line: str) -> None:
        print(line, flush=True)
        with open(self.out / "suite.log", "a") as f:
            f.write(line + "\n")

    def save(self) -> None:
        self.results["steps"] = [s.record() for s in self.steps]
        self.results["rows"] = self.rows()
        self.results["elapsed"] = elapsed_since_start()
        write_json(self.out / SUITE, self.results)

    def keep(self, path: Path) -> None:
        """A file of a step's, copied into --out: it comes back."""
        with atomic_path(self.out / path.name) as tmp:
            tmp.write_bytes(path.read_bytes())

    # Set-up.
    def environment(self) -> None:
        self.device = torch.device("cuda", torch.cuda.current_device())
        size, seconds = (256, 0.05) if self.args.rehearsal else (8192, 0.5)
        peaks = {str(d)[6:]: measure_peak_tflops(self.device, size, seconds, d)
                 for d in (torch.bfloat16, torch.float16)}
        self.peak = peaks["float16"]
        self.results.update(device=device_name(self.device), torch=torch.__version__,
                            cuda=torch.version.cuda, fastcifar=provenance(),
                            benchmarks_sha256=source_digest(ROOT / "benchmarks"),
                            peak_tflops=peaks, data=self.args.data, work=str(self.work))
        self.say(f"device {self.results['device']}, torch {torch.__version__}, peak TFLOP/s "
                 + ", ".join(f"{k} {v:.1f}" for k, v in peaks.items())
                 + f"; work folder {self.work}")
        self.save()

    def prepare(self) -> None:
        """The data (decoded once into fastcifar's cache, then in the originals' form) and
        the ports."""
        t0 = time.monotonic()
        dataset = load_dataset(self.args.data, say=self.say)
        self.train_images, self.test_images = len(dataset.train_images), len(dataset.test_images)
        write_data(dataset, self.work / "data")
        self.ports = derive_all({name: ALL_PORTS[name] for name in self.args.pairs},
                                self.work / "ports", Path(self.args.references),
                                rehearsal=self.args.rehearsal, uncompiled=self.args.uncompiled)
        if self.args.inductor_cache:
            with tarfile.open(self.args.inductor_cache) as t:
                t.extractall(self.cache.parent, filter="data")
        self.say(f"data and ports ready in {time.monotonic() - t0:.0f} s")

    def plan(self) -> list[Step]:
        runs, chunks = self.args.runs, self.args.chunks
        sizes = [runs // chunks + (i < runs % chunks) for i in range(chunks)]
        compiled = not self.args.uncompiled
        pairs = []
        for port in self.args.pairs:
            recipe = ALL_PORTS[port].recipe
            for chunk, n in enumerate(sizes):
                pairs += [Ours(recipe, n, chunk, compile=compiled),
                          Original(recipe, n, chunk, compile=compiled, port=port)]
        by_option = {"pairs": pairs,
                     "others": [Ours(r, self.args.other_runs) for r in self.args.others],
                     "ablation": [Ablation("airbench94", self.args.ablation_runs)]
                     if self.args.ablation_runs else [],
                     "pruning": [Pruning("airbench94", self.args.pruning_runs)]
                     if self.args.pruning_runs else []}
        return [step for option in self.args.steps for step in by_option[option]]

    # The steps.
    def environ(self) -> dict:
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(self.cache),
               "FASTCIFAR_DATA": os.environ.get("FASTCIFAR_DATA") or str(self.work / "cache"),
               "TORCH_LOGS": os.environ.get("TORCH_LOGS", "recompiles,graph_breaks"),
               "PYTHONUNBUFFERED": "1"}
        if self.args.uncompiled:  # the originals' torch.compile calls, off
            env["TORCHDYNAMO_DISABLE"] = "1"
        # Absolute: the processes run in the work folder.
        paths = [str(ROOT), *env.get("PYTHONPATH", "").split(os.pathsep)]
        env["PYTHONPATH"] = os.pathsep.join(os.path.abspath(p) for p in paths if p)
        return env

    def run(self, step: Step) -> None:
        self.steps.append(step)
        need, left = self.estimate(step), self.left()
        if need > left:
            step.result = {"status": "skipped", "note": f"skipped: needs about {need:.0f} s, "
                                                        f"{max(left, 0):.0f} s left"}
            self.say(f"{step.key}: {step.result['note']}")
            self.save()
            return
        command, result_file = step.command(self)
        self.say(f"\n== {step.key}: {step.runs} run(s), about {need:.0f} s of {left:.0f} s "
                 f"left\n$ {' '.join(command)}")
        t0, status, note = time.monotonic(), "done", ""
        with open(self.out / "suite.log", "a") as log:
            try:
                done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT,
                                      cwd=self.work, env=self.environ(), timeout=max(left, 1))
                if done.returncode != 0:
                    status, note = "failed", f"exit {done.returncode} (see suite.log)"
            except subprocess.TimeoutExpired:
                status, note = "cut off", "cut off by the budget"
        runs = Runs([], [])
        if result_file.exists():  # (both sides write their results after every run)
            runs = step.read(result_file)
            step.hand_back(self, result_file)
        if not runs.accuracies and status == "done":
            status, note = "failed", "no run finished"
        step.result = {"status": status, "note": note, "wall": time.monotonic() - t0,
                       "runs": len(runs.accuracies), "accuracies": runs.accuracies,
                       "seconds": runs.seconds,
                       "clock": "record"}  # (each side's seconds on the original's clock)
        self.say(f"{step.key}: {status}, {len(runs.accuracies)} run(s) in "
                 f"{step.result['wall']:.0f} s{', ' + note if note else ''}")
        self.save()

    # Results.
    def rows(self) -> list[dict]:
        """A row per recipe and side: its steps' runs together."""
        rows: dict[tuple[str, str], dict] = {}
        for s in self.steps:
            row = rows.setdefault((s.recipe, s.side), {
                "recipe": s.recipe, "side": s.row_side(), "compile": s.compile,
                "accuracies": [], "seconds": [], "notes": []})
            row["accuracies"] += s.result.get("accuracies", [])
            row["seconds"] += s.result.get("seconds", [])
            if s.result.get("note"):
                row["notes"].append(f"{s.key}: {s.result['note']}")
        for row in rows.values():
            acc, sec = row["accuracies"], row["seconds"]
            row["runs"] = len(acc)
            if acc:
                row.update(accuracy_mean=statistics.mean(acc),
                           accuracy_std=statistics.stdev(acc) if len(acc) > 1 else 0.0,
                           seconds_mean=statistics.mean(sec),
                           seconds_std=statistics.stdev(sec) if len(sec) > 1 else 0.0)
                flops = self.flops(row["recipe"])
                row["flops"] = flops
                row["share_of_peak"] = flops / row["seconds_mean"] / 1e12 / self.peak
        return list(rows.values())

    @functools.cache  # a second or two a recipe, and asked again at every save
    def flops(self, recipe: str) -> float:
        overrides = rehearsal_overrides(recipe) if self.args.rehearsal else {}
        config = with_values(get_recipe(recipe).config, overrides)
        return run_flops(get_recipe(recipe), config, self.train_images, self.test_images).total

    def table(self) -> str:
        lines = (["rehearsal: a check of the suite on tiny data; its numbers mean nothing", ""]
                 if self.args.rehearsal else [])
        lines += ["| recipe | side | runs | accuracy (TTA) | timed seconds | share of fp16 peak "
                  "| notes |", "| --- | --- | --- | --- | --- | --- | --- |"]
        for r in self.results["rows"]:
            acc = sec = share = ""
            if r["runs"]:
                acc = f"{100 * r['accuracy_mean']:.2f}% ± {100 * r['accuracy_std']:.2f}"
                sec = f"{r['seconds_mean']:.3f} ± {r['seconds_std']:.3f}"
                share = f"{100 * r['share_of_peak']:.1f}%"
            side = r["side"] + (" (max-autotune)" if r["compile"] else " (uncompiled)")
            lines.append(f"| {r['recipe']} | {side} | {r['runs']} | {acc} | {sec} | {share} "
                         f"| {'; '.join(r['notes'])} |")
        return "\n".join(lines)

    def bundle(self) -> None:
        files = bundle_results(self.work, self.out / "results.tar.gz")
        size = (self.out / "results.tar.gz").stat().st_size
        self.say(f"results.tar.gz: {files} files, {size / 2 ** 20:.1f} MiB")

    def keep_inductor_cache(self) -> None:
        """Inductor's cache as a tarball in --out, if it is small enough to come back."""
        if not self.cache.is_dir():
            return
        built = self.work / "inductor-cache.tar.gz"
        with tarfile.open(built, "w:gz") as t:
            t.add(self.cache, arcname=self.cache.name)
        size = built.stat().st_size
        returned = size <= self.limits.file_bytes
        if returned:
            os.replace(built, self.out / built.name)
        self.results["inductor_cache"] = {"bytes": size, "returned": returned}
        self.say(f"Inductor's cache: {size / 2 ** 20:.1f} MiB, "
                 + (f"in {self.out / built.name}" if returned else
                    f"too large to return (kept in {built})"))


def elapsed_since_start() -> float:
    return time.monotonic() - STARTED


def main(argv=None) -> int:
    args = parse(argv)
    try:
        check_inputs(args)
        suite = Suite(args)
        suite.environment()
        suite.prepare()
    except InputError as e:
        print(f"gpu_suite: {e}", file=sys.stderr)
        return 2
    for step in suite.plan():
        suite.run(step)
    suite.keep_inductor_cache()
    suite.bundle()
    table = suite.table()
    with atomic_path(suite.out / "table.md") as tmp:
        tmp.write_text(table + "\n")
    suite.save()
    for note in suite.limits.left_behind(suite.out):
        suite.say(f"will not come back: {note}")
    suite.say(f"\n{table}\n\nsuite.json, table.md and suite.log: {suite.out}; run folders, "
              f"ports and data: {suite.work} ({elapsed_since_start():.0f} s)")
    failed = [s.key for s in suite.steps if s.result.get("status") == "failed"
              or s.result.get("status") == "cut off" and not s.result["runs"]]
    if failed:
        suite.say(f"failed: {', '.join(failed)}")
    measured = any(s.result.get("runs") for s in suite.steps)
    if not measured:
        suite.say("measured nothing: no step finished a run")
    return 1 if failed or not measured else 0


if __name__ == "__main__":
    sys.exit(main())
