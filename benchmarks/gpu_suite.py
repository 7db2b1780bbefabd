"""One prepared GPU measurement: fastcifar beside the original scripts, in one command.

On a lent GPU (one command of at most 10 minutes, no package registry), from the
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
(ESTIMATES below at first, then what the same side's earlier process took): a step that
cannot fit is skipped, with the reason.

What comes back in --out (at most 8 files are returned by the device tool): suite.json
(rewritten after every step), table.md, suite.log (every process's output, with Dynamo's
recompile and graph-break log), ablation.json and ablation.png, results.tar.gz (each run
folder's summary and per-epoch metrics, the ports' results and changes, the ablation's and
the pruning's tables, scores and pictures), and inductor-cache.tar.gz when it is under
16 MiB (carry it to the next call and give it to --inductor-cache: its compiles are then
warm). The run
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

import argparse  # noqa: E402
import functools  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tarfile  # noqa: E402
import tempfile  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

import torch  # noqa: E402

from fastcifar import load_dataset  # noqa: E402
from fastcifar.sessions import ablate  # noqa: E402
from fastcifar.bench.flops import measure_peak_tflops, run_flops  # noqa: E402
from fastcifar.errors import InputError  # noqa: E402
from fastcifar.files import atomic_path, check_writable_folder, source_digest  # noqa: E402
from fastcifar.recipes import RECIPES, get_recipe  # noqa: E402
from fastcifar.recipes.fields import with_values  # noqa: E402
from fastcifar.report.records import provenance  # noqa: E402
from fastcifar.train.device import device_name  # noqa: E402
from frontier_ports import FRONTIER_PORTS  # noqa: E402
from reference_ports import PORTS, REFERENCES, derive, derive_all, reference_file, write_data  # noqa: E402

ALL_PORTS = {**PORTS, **FRONTIER_PORTS}
# The ports raced by their recipes, in the order they run: the fastest known recipes first.
PAIRS = ["airbench94_muon", "hiverge94", "fable94_e1", "fable94_e5", "airbench94_compiled"]
STEPS = ["pairs", "others", "ablation", "pruning"]
OTHERS = ["airbench94_bnfree", "hlb", "airbench95", "bag_of_tricks", "hlb_state_sketch",
          "resnet9_dawnbench", "airbench96", "airbench96_faster"]
MARGIN = 20.0  # seconds kept free at the end for the table, the cache's tarball and exit
CACHE_LIMIT = 16 * 2 ** 20  # the largest tarball the device tool returns

# The first estimate of a step, before any process of its side has run: (seconds of start-up
# and compile, seconds a run). Basis: a process imports torch and loads cached data in about
# 10 s; a cold max-autotune compile takes about three minutes (on an H200 airbench94_muon's
# compiling warm-up run took 172 s with ours, 115 s with the original's script, 26 s with
# ours given a warm Inductor cache: results/h200-standin-lease2/); a run takes about its
# published A100 time (an H200 is faster) plus its untimed per-epoch evaluation, a second
# or two.
COMPILED_START = 180.0
UNCOMPILED_START = 30.0
RUN_SECONDS = {"airbench94_muon": 4.0, "airbench94": 5.0, "hiverge94": 3.5, "fable94_e1": 3.5,
               "fable94_e5": 3.5, "airbench94_bnfree": 8.0,
               "hlb": 8.0, "airbench95": 12.0, "bag_of_tricks": 30.0,
               "hlb_state_sketch": 14.0, "resnet9_dawnbench": 80.0, "airbench96": 37.0,
               "airbench96_faster": 30.0}
REHEARSAL = {"epochs": 1, "batch_size": 32}  # and every width at most 16
SCORE_RUNS = 2  # the pruning step's scoring runs
# What results.tar.gz takes from the work folder: small files only (no checkpoints, no
# per-example records: examples.npz is tens of MB at full size).
BUNDLED = ("summary.json", "metrics.csv", "config.json", "*.changes.json", "*-reference-*.json",
           "ablation.csv", "ablation.json", "ablation.png", "pruning.md", "pruning.json",
           "scores.csv", "data_map.png")


@dataclass
class Step:
    """One process: `runs` runs of a recipe (side "fastcifar") or of a port (side
    "reference"), the `chunk`-th of its side."""

    recipe: str
    side: str
    runs: int
    chunk: int = 0
    port: str | None = None
    compile: bool = False
    result: dict = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.recipe}-{self.side}-{self.chunk}"


def rehearsal_overrides(recipe: str) -> dict:
    config = get_recipe(recipe).config
    narrow = {"widths": tuple(min(w, 16) for w in config.widths)} if hasattr(config, "widths") \
        else {}
    if hasattr(config, "select_keep"):  # the hardest half of each rehearsal batch
        narrow["select_keep"] = REHEARSAL["batch_size"] // 2
    return {**REHEARSAL, **narrow}


def set_options(overrides: dict, epochs_option: bool = True) -> list[str]:
    """`--epochs`/`--set` options of `fastcifar train` for a dict of overrides (the epochs a
    `--set` too where `epochs_option` is false)."""
    options = []
    for key, value in overrides.items():
        text = ",".join(map(str, value)) if isinstance(value, tuple) else str(value)
        options += (["--epochs", text] if key == "epochs" and epochs_option
                    else ["--set", f"{key}={text}"])
    return options


class Suite:
    def __init__(self, args):
        self.args = args
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
    def ablation_tricks(self) -> list[str]:
        return self.args.ablation_tricks or [t.name for t in get_recipe("airbench94").tricks]

    def ablation_runs(self, runs: int) -> float:
        """The ablation's runs, in full-recipe runs: each variant's battery, and with
        --ablation-epochs-for-accuracy at most every variant's longer sweep."""
        variants = len(self.ablation_tricks())
        sweep = sum(ablate.SWEEP) * variants * runs if self.args.ablation_epochs_for_accuracy \
            else 0
        return runs * (variants + 1) + sweep

    def left(self) -> float:
        return self.args.budget - MARGIN - elapsed_since_start()

    def estimate(self, step: Step) -> float:
        """Seconds the step should take: what its side's last process took per run, plus
        its start-up; before its side has run, what the other side of its pair took on
        this machine (the two compile nets alike: a better guess than the default, and one
        that is too low costs only the runs the budget then cuts off); else the first
        estimate."""
        ran = [s for s in self.steps if s.recipe == step.recipe and s.compile == step.compile
               and s.result.get("runs")]
        done = ([s for s in ran if s.side == step.side]
                or [s for s in ran if {s.side, step.side} == {"fastcifar", "reference"}])
        if done:
            last = done[-1].result
            return last["wall"] / (last["runs"] + 1) * (step.runs + 1)
        start = COMPILED_START if step.compile else UNCOMPILED_START
        runs = self.ablation_runs(step.runs) if step.side == "ablation" else (
            SCORE_RUNS + 3 * step.runs if step.side == "pruning" else step.runs)
        return start + runs * RUN_SECONDS.get(step.recipe, 30.0)

    # Output.
    def say(self, line: str) -> None:
        print(line, flush=True)
        with open(self.out / "suite.log", "a") as f:
            f.write(line + "\n")

    def save(self) -> None:
        self.results["steps"] = [{"key": s.key, "recipe": s.recipe, "side": s.side,
                                  "chunk": s.chunk, "runs_planned": s.runs,
                                  "compile": s.compile, **s.result} for s in self.steps]
        self.results["rows"] = self.rows()
        self.results["elapsed"] = elapsed_since_start()
        with atomic_path(self.out / "suite.json") as tmp:
            tmp.write_text(json.dumps(self.results, indent=1) + "\n")

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
        self.ports = derive_all(self.work / "ports", Path(self.args.references),
                                rehearsal=self.args.rehearsal,
                                ports={name: ALL_PORTS[name] for name in self.args.pairs},
                                uncompiled=self.args.uncompiled)
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
                pairs += [Step(recipe, "fastcifar", n, chunk, compile=compiled),
                          Step(recipe, "reference", n, chunk, port=port, compile=compiled)]
        kinds = {"pairs": pairs,
                 "others": [Step(r, "fastcifar", self.args.other_runs) for r in self.args.others],
                 "ablation": [Step("airbench94", "ablation", self.args.ablation_runs)]
                 if self.args.ablation_runs else [],
                 "pruning": [Step("airbench94", "pruning", self.args.pruning_runs)]
                 if self.args.pruning_runs else []}
        return [step for kind in self.args.steps for step in kinds[kind]]

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

    def command(self, step: Step) -> tuple[list[str], Path]:
        """The step's command line and the file it leaves its results in."""
        if step.side == "ablation":
            folder = self.work / "ablation"
            command = [sys.executable, "-m", "fastcifar", "ablate", "--recipe", step.recipe,
                       "--data", self.args.data, "--device", "cuda", "--runs", str(step.runs),
                       "--tricks", ",".join(self.ablation_tricks()), "--out", str(folder)]
            if self.args.ablation_epochs_for_accuracy:
                command.append("--epochs-for-accuracy")
            if self.args.rehearsal:
                command += set_options(rehearsal_overrides(step.recipe))
            return command, folder / "ablation.json"
        if step.side == "pruning":
            folder = self.work / "pruning"
            command = [sys.executable, str(ROOT / "examples" / "pruning.py"), "--data",
                       self.args.data, "--device", "cuda", "--recipe", step.recipe,
                       "--score-runs", str(SCORE_RUNS), "--runs", str(step.runs),
                       "--out", str(folder)]
            if self.args.rehearsal:  # half the batch: the kept half makes as many batches
                overrides = {**rehearsal_overrides(step.recipe),
                             "batch_size": REHEARSAL["batch_size"] // 2}
                command += set_options(overrides, epochs_option=False)  # (its epochs a --set)
                command += ["--score-epochs", "2"]  # (a data map needs two epochs)
            return command, folder / "pruning.json"
        if step.side == "reference":
            result = self.work / f"{step.key}.json"
            return [sys.executable, str(self.ports[step.port]), "--data-dir",
                    str(self.work / "data"), "--runs", str(step.runs), "--out", str(result),
                    "--logdir", str(self.work / "reference-logs")], result
        folder = self.work / "runs" / step.key
        command = [sys.executable, "-m", "fastcifar", "train", "--recipe", step.recipe,
                   "--data", self.args.data, "--device", "cuda", "--runs", str(step.runs),
                   "--seed", str(step.chunk * self.args.runs), "--out", str(folder)]
        if step.compile:
            command += ["--compile", "max-autotune"]
        if self.args.rehearsal:
            command += set_options(rehearsal_overrides(step.recipe))
        return command, folder / "summary.json"

    def run(self, step: Step) -> None:
        self.steps.append(step)
        need, left = self.estimate(step), self.left()
        if need > left:
            step.result = {"status": "skipped", "note": f"skipped: needs about {need:.0f} s, "
                                                        f"{max(left, 0):.0f} s left"}
            self.say(f"{step.key}: {step.result['note']}")
            self.save()
            return
        command, result_file = self.command(step)
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
        accuracies, seconds = read_runs(step.side, result_file)
        if step.side == "ablation" and result_file.exists():  # its table and picture back
            for name in ("ablation.json", "ablation.png"):
                with atomic_path(self.out / name) as tmp:
                    tmp.write_bytes((result_file.parent / name).read_bytes())
        if step.side == "pruning" and result_file.exists():  # its table into the log
            self.say((result_file.parent / "pruning.md").read_text().rstrip())
        if not accuracies and status == "done":
            status, note = "failed", "no run finished"
        step.result = {"status": status, "note": note, "wall": time.monotonic() - t0,
                       "runs": len(accuracies), "accuracies": accuracies, "seconds": seconds,
                       "clock": "record"}  # (each side's seconds on the original's clock)
        self.say(f"{step.key}: {status}, {len(accuracies)} run(s) in "
                 f"{step.result['wall']:.0f} s{', ' + note if note else ''}")
        self.save()

    # Results.
    def rows(self) -> list[dict]:
        """A row per recipe and side: its steps' runs together."""
        rows: dict[tuple[str, str], dict] = {}
        for s in self.steps:
            row = rows.setdefault((s.recipe, s.side), {
                "recipe": s.recipe, "side": s.side if s.port is None else
                f"reference {ALL_PORTS[s.port].source}", "compile": s.compile,
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
        """results.tar.gz in --out: the small files of the work folder (BUNDLED), by their
        paths there."""
        files = sorted({p for pattern in BUNDLED for p in self.work.rglob(pattern)
                        if p.is_file() and "inductor-cache" not in p.parts})
        with atomic_path(self.out / "results.tar.gz") as tmp:
            with tarfile.open(tmp, "w:gz") as t:
                for path in files:
                    t.add(path, arcname=str(path.relative_to(self.work)))
        size = (self.out / "results.tar.gz").stat().st_size
        self.say(f"results.tar.gz: {len(files)} files, {size / 2 ** 20:.1f} MiB")

    def keep_inductor_cache(self) -> None:
        """Inductor's cache as a tarball in --out, if it is small enough to come back."""
        if not self.cache.is_dir():
            return
        built = self.work / "inductor-cache.tar.gz"
        with tarfile.open(built, "w:gz") as t:
            t.add(self.cache, arcname=self.cache.name)
        size = built.stat().st_size
        returned = size <= CACHE_LIMIT
        if returned:
            os.replace(built, self.out / built.name)
        self.results["inductor_cache"] = {"bytes": size, "returned": returned}
        self.say(f"Inductor's cache: {size / 2 ** 20:.1f} MiB, "
                 + (f"in {self.out / built.name}" if returned else
                    f"too large to return (kept in {built})"))


def elapsed_since_start() -> float:
    return time.monotonic() - STARTED


def read_runs(side: str, path: Path) -> tuple[list[float], list[float]]:
    """(TTA accuracies, timed seconds) of the runs a process finished, from the JSON that
    both sides rewrite after every run."""
    if not path.exists():
        return [], []
    data = json.loads(path.read_text())
    if side == "reference":
        return ([r["accuracy_tta"] for r in data["runs"]], [r["seconds"] for r in data["runs"]])
    if side == "ablation":  # the full recipe's runs (every variant's are in ablation.json)
        full = data["rows"][0]
        return full["accuracy"], [full["seconds_mean"]] * full["runs"]
    if side == "pruning":  # the runs on all the images (the subsets' are in pruning.json)
        return data["accuracy"]["all"], data["seconds"]["all"]
    # ours on the original's clock (fastcifar/bench/clocks.py): the parts its timer covers
    return ([r["accuracy"] for r in data["runs"]],
            [r.get("record_seconds", r["train_seconds"]) for r in data["runs"]])


def check_inputs(args) -> None:
    """Everything the call needs, before any work: one message for the first that is wrong."""
    if not torch.cuda.is_available():
        raise InputError("no CUDA device here: the suite measures GPUs (CI rehearses it on a "
                         "CPU under the stand-in in tests/standin/)")
    if args.runs < 1 or args.chunks < 1 or args.chunks > args.runs or args.other_runs < 0:
        raise InputError(f"--runs {args.runs}, --chunks {args.chunks}, --other-runs "
                         f"{args.other_runs}: expected runs >= chunks >= 1, other runs >= 0")
    unknown = [s for s in args.steps if s not in STEPS]
    if unknown or not args.steps:
        raise InputError(f"--steps {','.join(args.steps)}: expected some of {', '.join(STEPS)}")
    if args.pruning_runs < 0:
        raise InputError(f"--pruning-runs {args.pruning_runs}: expected 0 (no pruning) or more")
    if args.ablation_runs < 0:
        raise InputError(f"--ablation-runs {args.ablation_runs}: expected 0 (no ablation) or more")
    if args.ablation_tricks:
        ablate.plan(get_recipe("airbench94"), args.ablation_tricks)  # unknown: one line
    unknown = [p for p in args.pairs if p not in ALL_PORTS]
    if unknown:
        raise InputError(f"--pairs {','.join(args.pairs)}: no port {', '.join(unknown)}; "
                         f"expected some of {', '.join(ALL_PORTS)}")
    unknown = [r for r in args.others if r not in RECIPES]
    if unknown:
        raise InputError(f"--others {','.join(args.others)}: no recipe {', '.join(unknown)}; "
                         f"expected some of {', '.join(OTHERS)}")
    if args.budget <= MARGIN:
        raise InputError(f"--budget {args.budget}: expected more than the {MARGIN:.0f} s "
                         f"margin it keeps")
    if args.data != "cifar10" and not Path(args.data).exists():
        raise InputError(f"--data {args.data}: no such file or folder; expected the stand-in "
                         f"archive (copy ../shared/data/cifar10-jpeg.tar.gz into .data/ and "
                         f"carry it) or cifar10")
    for port in args.pairs:
        reference_file(Path(args.references), ALL_PORTS[port])
    if args.inductor_cache and not Path(args.inductor_cache).is_file():
        raise InputError(f"--inductor-cache {args.inductor_cache}: no such file; expected the "
                         f"inductor-cache.tar.gz an earlier call returned")
    check_writable_folder(Path(args.out), "--out")
    earlier = sorted(p.name for pattern in EARLIER_RESULTS
                     for p in Path(args.work or "/nonexistent").glob(pattern))
    if earlier:  # a step that failed would otherwise report the earlier call's runs as its own
        raise InputError(f"--work {args.work} holds an earlier call's results "
                         f"({', '.join(earlier)}); give an empty or new folder")


# What a call leaves in its work folder that a step reads back as its result.
EARLIER_RESULTS = ("runs", "ablation", "pruning", "*.json")


def parse(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for suite.json, table.md, suite.log")
    parser.add_argument("--work", help="folder for run folders, ports and data (default: a "
                                       "new temporary folder)")
    parser.add_argument("--data", default=".data/cifar10-jpeg.tar.gz",
                        help="the stand-in archive (or any --data of fastcifar train)")
    parser.add_argument("--references", default=str(REFERENCES),
                        help="the unmodified original scripts (../shared/references)")
    parser.add_argument("--runs", type=int, default=10, help="runs of each side of a pair")
    parser.add_argument("--chunks", type=int,
                        help="processes each side of a pair is split into, run alternately "
                             "(default 2 with --inductor-cache, else 1: each process of a side "
                             "pays its compile, minutes when the cache is cold)")
    parser.add_argument("--pairs", type=lambda text: [p for p in text.split(",") if p],
                        default=PAIRS, help=f"the originals raced by their recipes, "
                                            f"comma-separated, in order (default "
                                            f"{','.join(PAIRS)})")
    parser.add_argument("--other-runs", type=int, default=2, help="runs of each other recipe")
    parser.add_argument("--others", type=lambda text: [r for r in text.split(",") if r],
                        default=OTHERS, help=f"the other recipes, comma-separated (default "
                                             f"{','.join(OTHERS)})")
    parser.add_argument("--ablation-runs", type=int, default=2,
                        help="runs a variant of airbench94's ablation, last, as time allows "
                             "(0: none)")
    parser.add_argument("--ablation-tricks", type=lambda text: [t for t in text.split(",") if t],
                        help="the tricks it leaves out (default: all airbench94 declares)")
    parser.add_argument("--ablation-epochs-for-accuracy", action="store_true",
                        help="the ablation also sweeps epochs: what each trick is worth in "
                             "epochs, as the airbench paper measures it")
    parser.add_argument("--pruning-runs", type=int, default=2,
                        help="runs on each pruned subset and on all the images, as time "
                             "allows (0: none)")
    parser.add_argument("--steps", type=lambda text: [s for s in text.split(",") if s],
                        default=STEPS, help=f"the kinds of step, comma-separated, in the order "
                                            f"they run (default {','.join(STEPS)})")
    parser.add_argument("--uncompiled", action="store_true",
                        help="race the pairs uncompiled on both sides: accuracy beside the "
                             "originals without minutes of compile a process")
    parser.add_argument("--budget", type=float, default=540.0,
                        help="seconds from the process's start to its end (the device tool "
                             "allows 600 a command)")
    parser.add_argument("--inductor-cache", help="an inductor-cache.tar.gz from an earlier call")
    parser.add_argument("--rehearsal", action="store_true",
                        help="tiny data, narrow networks, the ports' rehearsal changes")
    args = parser.parse_args(argv)
    if args.chunks is None:
        args.chunks = 2 if args.inductor_cache else 1
    if Path(args.data).exists():  # the steps run in the work folder
        args.data = str(Path(args.data).resolve())
    return args


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
