"""How long torch.compile takes for a recipe, cold (an empty Inductor cache) and warm (the
cache a previous process left), each in a process of its own: the part of the GPU suite's
budget a CPU can measure.

    python benchmarks/compile_time.py --recipes airbench94 airbench94_muon --out results.json

Each measurement is one fresh process training the recipe's full-size network, compiled
in --mode, for one epoch of 4 batches of 64 random images on --device; the compile is the
session's untimed warm-up (the compile and a first run) less the timed run. On a CPU Inductor generates
C++ instead of Triton kernels and max-autotune has few GEMM choices to time, so the GPU's
cold compile (Triton's autotuning above all) takes longer: read these as a lower bound.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# One process: the recipe's full-size network on 4 batches of BATCH random images and 200
# test images, so that the warm-up is mostly compile.
BATCH = 64
ONE = f"""
import json, sys, numpy as np
import fastcifar
recipe, mode, device, out = sys.argv[1:5]
rng = np.random.default_rng(0)
n = 4 * {BATCH}
images = rng.integers(0, 256, (n + 200, 32, 32, 3), dtype=np.uint8)
labels = np.arange(n + 200) % 10
data = fastcifar.ImageData(images[:n], labels[:n], images[n:], labels[n:], name="random")
r = fastcifar.train(recipe, data=data, epochs=1, batch_size={BATCH}, device=device,
                    compile=mode, verbose=False, out=out)
print(json.dumps({{"run_seconds": r.runs[0].seconds}}))
"""


def measure(recipe: str, mode: str, device: str, cache: Path) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(cache)}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        t0 = time.monotonic()
        done = subprocess.run([sys.executable, "-c", ONE, recipe, mode, device,
                               f"{folder}/run"], env=env, capture_output=True, text=True)
        wall = time.monotonic() - t0
        if done.returncode != 0:
            return {"error": done.stderr[-2000:], "wall_seconds": wall}
        summary = json.loads((Path(folder) / "run" / "summary.json").read_text())
        run = json.loads(done.stdout.strip().splitlines()[-1])["run_seconds"]
        warmup = summary["untimed_seconds"]["warmup"]
        # The warm-up is the compile and a run like the timed one.
        return {"warmup_seconds": warmup, "run_seconds": run,
                "compile_seconds": warmup - run, "process_wall_seconds": wall}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", nargs="+", default=["airbench94", "airbench94_muon"])
    parser.add_argument("--mode", default="max-autotune")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", required=True, help="the JSON file of results")
    args = parser.parse_args()
    import torch
    results = {"device": args.device, "cpu": platform.processor() or platform.machine(),
               "torch": torch.__version__, "threads": torch.get_num_threads(),
               "mode": args.mode, "recipes": {}}
    for recipe in args.recipes:
        with tempfile.TemporaryDirectory() as cache:
            cold = measure(recipe, args.mode, args.device, Path(cache))
            warm = measure(recipe, args.mode, args.device, Path(cache))
        results["recipes"][recipe] = {"cold": cold, "warm": warm}
        print(recipe, json.dumps(results["recipes"][recipe]), flush=True)
        Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
