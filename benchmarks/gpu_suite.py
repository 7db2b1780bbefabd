"""One prepared GPU measurement: fastcifar beside the reference scripts, in one command.

On a lent GPU (one command of at most 10 minutes, no package registry), from the
repository root, with the stand-in archive and the reference ports carried in ignored
folders:

    PYTHONPATH=. python benchmarks/gpu_suite.py --out $OUT/suite --data .data/cifar10-jpeg.tar.gz

and, before spending any GPU time (CI runs it as a test), the same on a CPU in seconds:

    python benchmarks/gpu_suite.py --dry-run --out /tmp/suite

It measures, in this order, while its time budget (--budget, default 520 s) lasts:
1. the device, torch, and the peak TFLOP/s of large bfloat16 and float16 matrix products;
2. fastcifar airbench94 with --compile, then the reference `legacy/airbench94_compiled.py`
   (ported to read the stand-in: .ref/gpu/airbench94_compiled_ref.py), --runs each on the
   same data; then airbench94_muon against the reference `airbench94_muon.py`. Each side
   runs as one process with all its runs, so each pays its compile once (not alternated);
3. the other speed-run recipes, --other-runs each.
Each side's accuracy (TTA) mean and std, timed seconds mean and std, and the share of the
float16 peak its FLOPs used. suite.json is rewritten after every step (a run cut off by the
command's limit leaves what finished), the logs go beside it, and the table is printed last.
Accuracy on the stand-in is lower than on the official CIFAR-10 and is never reported as an
official figure.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fastcifar import ImageData, load_dataset, train  # noqa: E402
from fastcifar.bench.flops import measure_peak_tflops, run_flops  # noqa: E402
from fastcifar.recipes import RECIPES, get_recipe  # noqa: E402
from fastcifar.recipes.base import with_values  # noqa: E402
from fastcifar.report.records import provenance  # noqa: E402
from fastcifar.train.device import device_name  # noqa: E402

# (our recipe, the reference port under --refs, compile ours)
PAIRS = [("airbench94", "airbench94_compiled_ref.py", True),
         ("airbench94_muon", "airbench94_muon_ref.py", True)]
OTHERS = ["airbench94_bnfree", "hlb", "airbench95", "bag_of_tricks", "hlb_state_sketch",
          "resnet9_dawnbench", "airbench96"]
DRY = {"epochs": 1, "batch_size": 32}  # --dry-run: every recipe, a step or ten


def dry_data(seed: int = 0) -> ImageData:
    """128 training and 40 test 32x32 images of 10 classes, each class its own colour."""
    rng = np.random.default_rng(seed)

    def split(n):
        labels = np.arange(n) % 10
        images = rng.integers(0, 100, (n, 32, 32, 3)).astype(np.uint8)
        images[..., 0] += (labels * 15).astype(np.uint8)[:, None, None]
        return images, labels

    (xtr, ytr), (xte, yte) = split(128), split(40)
    return ImageData(xtr, ytr, xte, yte, name="dry-run colours")


class Suite:
    def __init__(self, args):
        self.args, self.start = args, time.monotonic()
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.device = torch.device("cpu" if args.dry_run else "cuda")
        self.results: dict = {"rows": []}

    def left(self) -> float:
        return self.args.budget - (time.monotonic() - self.start)

    def say(self, line: str) -> None:
        print(line, flush=True)
        with open(self.out / "suite.log", "a") as f:
            f.write(line + "\n")

    def save(self) -> None:
        (self.out / "suite.json").write_text(json.dumps(self.results, indent=1) + "\n")

    def environment(self) -> None:
        size, seconds = (1024, 0.2) if self.args.dry_run else (8192, 0.5)
        dtypes = (torch.float32,) if self.args.dry_run else (torch.bfloat16, torch.float16)
        peaks = {str(d)[6:]: measure_peak_tflops(self.device, size, seconds, d) for d in dtypes}
        self.peak = peaks.get("float16", peaks.get("float32"))
        self.results.update(device=device_name(self.device), torch=torch.__version__,
                            fastcifar=provenance(), dry_run=self.args.dry_run,
                            peak_tflops=peaks, data=self.args.data, budget=self.args.budget)
        self.say(f"device {self.results['device']}, torch {torch.__version__}, peak TFLOP/s "
                 + ", ".join(f"{k} {v:.1f}" for k, v in peaks.items()))
        self.save()

    def row(self, recipe: str, side: str, accuracies, seconds, flops: float | None,
            note: str = "") -> None:
        row = {"recipe": recipe, "side": side, "runs": len(accuracies),
               "accuracies": accuracies, "seconds": seconds, "flops": flops, "note": note}
        if accuracies:
            row.update(accuracy_mean=statistics.mean(accuracies),
                       accuracy_std=statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0,
                       seconds_mean=statistics.mean(seconds),
                       seconds_std=statistics.stdev(seconds) if len(seconds) > 1 else 0.0)
            if flops:
                row["share_of_peak"] = flops / row["seconds_mean"] / 1e12 / self.peak
        self.results["rows"].append(row)
        self.save()
        self.say(f"{recipe} ({side}): " + (f"{100 * row['accuracy_mean']:.2f}% over {row['runs']}"
                                          f" runs, {row['seconds_mean']:.2f} s" if accuracies
                                          else note))

    def ours(self, recipe: str, runs: int, compile_: bool, data) -> None:
        overrides = DRY if self.args.dry_run else {}
        config = with_values(get_recipe(recipe).config, overrides)
        train_images = len(data.train_images) if isinstance(data, ImageData) else 50_000
        test_images = len(data.test_images) if isinstance(data, ImageData) else 10_000
        flops = run_flops(get_recipe(recipe), config, train_images, test_images).total
        t0 = time.monotonic()
        try:
            # max-autotune: how the references compile.
            result = train(recipe, data=data, runs=runs, device=str(self.device),
                           compile="max-autotune" if compile_ else False,
                           progress=False, verbose=False, out=self.out / "runs" / recipe,
                           **overrides)
        except Exception as e:  # noqa: BLE001 (a failure is a result: note it, go on)
            self.row(recipe, "fastcifar", [], [], flops, f"failed: {type(e).__name__}: {e}")
            return
        self.row(recipe, "fastcifar" + (" --compile max-autotune" if compile_ else ""),
                 [r.accuracy for r in result.runs], [r.seconds for r in result.runs], flops,
                 f"wall {time.monotonic() - t0:.0f} s, with data loading"
                 + (", compile and its warm-up run" if compile_ else ""))

    def reference(self, recipe: str, script: str, runs: int) -> None:
        path = Path(self.args.refs) / script
        if self.args.dry_run or not path.exists():
            why = "dry run (the references need CUDA)" if self.args.dry_run else f"{path} not found"
            self.row(recipe, "reference", [], [], None, f"skipped: {why}")
            return
        out_json, log = self.out / f"ref-{recipe}.json", self.out / f"ref-{recipe}.log"
        command = [sys.executable, str(path), "--runs", str(runs), "--seed", "0",
                   "--data", self.args.data, "--out", str(out_json),
                   "--logdir", str(self.out / "ref-logs")]
        note = ""
        try:
            with open(log, "w") as f:
                done = subprocess.run(command, stdout=f, stderr=subprocess.STDOUT,
                                      timeout=max(self.left(), 1))
            if done.returncode != 0:
                note = f"exit {done.returncode} ({log})"
        except subprocess.TimeoutExpired:
            note = f"cut off by the budget ({log})"
        # The port rewrites its JSON after every run: a cut-off process leaves what finished.
        ref = json.loads(out_json.read_text()) if out_json.exists() else {"runs": []}
        if not ref["runs"]:
            self.row(recipe, "reference", [], [], None, f"failed: {note or 'no runs'}")
            return
        self.row(recipe, f"reference {ref.get('path', script)}",
                 [r["accuracy_tta"] for r in ref["runs"]], [r["seconds"] for r in ref["runs"]],
                 run_flops(get_recipe(recipe)).total, note)

    def table(self) -> str:
        lines = (["dry run: a check of the script; its numbers mean nothing", ""]
                 if self.args.dry_run else [])
        lines += ["| recipe | side | runs | accuracy (TTA) | seconds | share of fp16 peak | note |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for r in self.results["rows"]:
            if r["accuracies"]:
                acc = f"{100 * r['accuracy_mean']:.2f}% ± {100 * r['accuracy_std']:.2f}"
                sec = f"{r['seconds_mean']:.3f} ± {r['seconds_std']:.3f}"
                share = f"{100 * r['share_of_peak']:.1f}%" if "share_of_peak" in r else ""
            else:
                acc = sec = share = ""
            lines.append(f"| {r['recipe']} | {r['side']} | {r['runs']} | {acc} | {sec} | "
                         f"{share} | {r['note']} |")
        return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for suite.json, logs, run folders")
    parser.add_argument("--data", default=".data/cifar10-jpeg.tar.gz",
                        help="the stand-in archive (or any --data of fastcifar train)")
    parser.add_argument("--refs", default=".ref/gpu", help="the reference ports' folder")
    parser.add_argument("--runs", type=int, default=10, help="runs of each side of a pair")
    parser.add_argument("--other-runs", type=int, default=2, help="runs of each other recipe")
    parser.add_argument("--budget", type=float, default=520.0,
                        help="seconds for everything; steps that would start later are skipped")
    parser.add_argument("--dry-run", action="store_true",
                        help="CPU, tiny synthetic data, one epoch of batch 32, no compile, no "
                             "references: checks the script in seconds")
    args = parser.parse_args(argv)
    if not args.dry_run and not torch.cuda.is_available():
        print("gpu_suite: no CUDA device; use --dry-run to check the script on a CPU",
              file=sys.stderr)
        return 2
    suite = Suite(args)
    suite.environment()
    data = dry_data() if args.dry_run else load_dataset(args.data)
    runs = 2 if args.dry_run else args.runs
    for recipe, script, compile_ in PAIRS:
        suite.ours(recipe, runs, compile_ and not args.dry_run, data)
        suite.reference(recipe, script, runs)
    others = [r for r in OTHERS if r in RECIPES]
    for recipe in others:
        if suite.left() < 30:
            suite.row(recipe, "fastcifar", [], [], None, "skipped: out of time")
            continue
        suite.ours(recipe, 1 if args.dry_run else args.other_runs, False, data)
    table = suite.table()
    (suite.out / "table.md").write_text(table + "\n")
    suite.say(f"\n{table}\n\nsuite.json, table.md and the logs: {suite.out} "
              f"({time.monotonic() - suite.start:.0f} s)")
    failed = [r for r in suite.results["rows"] if r["note"].startswith("failed")]
    return 1 if failed and args.dry_run else 0


if __name__ == "__main__":
    sys.exit(main())
