"""Count the kernels a training step launches: the leaf operators (aten ops that call no
other) that torch's profiler records per step, on any device. On a GPU each is a kernel
launch, whose fixed cost (a few microseconds) dominates a speed run's small layers; on a
CPU the count is the same dispatch, so it can be measured anywhere. One exception: a CPU
runs a fused `_foreach_` operator as one operator per tensor, where a GPU launches one
kernel for the whole list (a few, for very long lists); so each count is given twice,
per operator as the CPU runs it and with each `_foreach_` call counted once, as a GPU
launches it.

    python benchmarks/kernel_launches.py --recipe airbench94_muon --batch-size 64
    python benchmarks/kernel_launches.py --recipe airbench94 --json out.json
    python benchmarks/kernel_launches.py --against-originals --references ../shared/references

Reported per step: the training step (forward, loss, backward, optimisers, schedulers),
and the weight-averaging update (lookahead / EMA) where the recipe has one.

--against-originals counts, by the same rule (a _foreach_ call once), one training step
and one whole timed run of each record recipe and of its original's port, both under the
CUDA stand-in, and prints `RECIPE step ours=N original=M` and `RECIPE run ours=N
original=M` for each, with where the launches go; benchmarks/launch_parity.py says how.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

import torch
from torch.profiler import ProfilerActivity, profile

from fastcifar.recipes import get_recipe
from fastcifar.train.device import resolve_device
from fastcifar.train.loop import training_step
from fastcifar.train.setup import set_up_run
from launch_count import GROUPS, gpu_launches, leaf_ops

# The report's names of the parts a launch falls in (launch_count.GROUPS).
PART_NAMES = {"glue": "rest of the step (loss, lr, metrics)", "init": "init (whitening...)",
              "tta": "TTA", "evaluation": "other evaluation", "other": "other per-run"}


def count(recipe_name: str, device: torch.device, batch_size: int, steps: int) -> dict:
    recipe = get_recipe(recipe_name)
    config = dataclasses.replace(recipe.config, batch_size=batch_size, epochs=1)
    images = torch.randn(batch_size, 3, 32, 32, device=device)
    images = images.contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 10, (batch_size,), device=device)
    run = set_up_run(recipe, config, images, device, "float32",
                     num_train_images=batch_size * (steps + 2))
    t = run.training
    run.model.train()
    step = lambda: training_step(run.model, images, labels, t.loss, t.optimizers,  # noqa: E731
                                 run.schedulers, run.precision)
    step()  # warm-up: lazily made state (momentum buffers) is not a per-step cost
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    result = {"recipe": recipe_name, "batch_size": batch_size, "steps": steps,
              "torch": torch.__version__, "step_ops": leaf_ops(prof) / steps,
              "step_gpu_launches": gpu_launches(prof) / steps}
    if t.average is not None:
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(steps):
                t.average.update(run.model, 0.5)
        result["average_update_ops"] = leaf_ops(prof) / steps
        result["average_update_gpu_launches"] = gpu_launches(prof) / steps
    return result


def against_originals(args) -> int:
    import launch_parity  # (the stand-in's instruments: only for this command)
    from fastcifar.errors import InputError
    try:
        results = launch_parity.compare(args.references, args.recipe or launch_parity.RECIPES,
                                        args.parity_batch_sizes)
    except InputError as e:
        print(f"kernel_launches: error: {e}", file=sys.stderr)
        return e.exit_code
    print(report(results))
    results["command"] = "python benchmarks/kernel_launches.py " + " ".join(args.argv)
    results["commit"] = git_commit()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


def report(results: dict) -> str:
    lines = []
    for name, r in results["recipes"].items():
        ours, original = r["ours"], r["original"]
        lines += [f"{name} step ours={ours['step']} original={original['step']}",
                  f"{name} run ours={ours['run']} original={original['run']}"]
    sizes = results["batch_sizes"]
    for name, r in results["recipes"].items():
        ours, original = r["ours"], r["original"]
        lines += ["", f"{name}: {ours['steps']} steps ours, {original['steps']} the "
                      f"original's. The original's run: {r['original_clock']}",
                  f"  {'where':<40}{'step: ours':>11}{'original':>10}{'run: ours':>11}"
                  f"{'original':>10}{'ours - original':>17}"]
        for group, parts in GROUPS.items():
            rows = [(group, parts)] + ([(PART_NAMES.get(p, p), (p,)) for p in parts]
                                       if len(parts) > 1 else [])
            for k, (label, members) in enumerate(rows):
                values = [sum(side[key].get(p, 0) for p in members)
                          for side, key in ((ours, "step_parts"), (original, "step_parts"),
                                            (ours, "run_parts"), (original, "run_parts"))]
                if k and not any(values):
                    continue
                indent = "    " if k else "  "
                lines.append(f"{indent}{label:<{42 - len(indent)}}{values[0]:>9}{values[1]:>10}"
                             f"{values[2]:>11}{values[3]:>10}{values[2] - values[3]:>+17}")
        values = (ours["conversions_in_step"], original["conversions_in_step"],
                  ours["conversions_in_run"], original["conversions_in_run"])
        lines.append(f"  {'of all these, conversions (.to)':<40}{values[0]:>9}{values[1]:>10}"
                     f"{values[2]:>11}{values[3]:>10}{values[2] - values[3]:>+17}")
        if ours["run_on_record_clock"] != ours["run"]:
            lines.append(f"  ours on the record's clock ({ours['record_clock']['name']}'s: "
                         f"{' + '.join(ours['record_clock']['parts'])}): "
                         f"{ours['run_on_record_clock']}, against the original's "
                         f"{original['run']}")
        if original.get("init_correction_to_real_widths"):
            lines.append(f"  (the original's init: its {original['weight_resets']} reset(s) of "
                         f"the weights on the clock counted at the real widths, "
                         f"{original['init_correction_to_real_widths']:+} launches)")
        if len(sizes) > 1:
            counts = {side: [(r["by_batch_size"][str(b)][side]["step"],
                              r["by_batch_size"][str(b)][side]["run"]) for b in sizes]
                      for side in ("ours", "original")}
            lines.append(f"  (step, run) at batch sizes {', '.join(map(str, sizes))}: ours "
                         f"{counts['ours']}, original {counts['original']}: "
                         + ("the same, part by part" if r["same_at_every_batch_size"]
                            else "NOT THE SAME"))
    return "\n".join(lines)


def git_commit() -> str | None:
    """The checkout's commit, with " (uncommitted changes)" if its tree differs."""
    import subprocess
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root,
                                capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=root, capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + (" (uncommitted changes)" if dirty else "")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", action="append",
                        help="recipe (repeatable; default airbench94 and airbench94_muon, or "
                             "with --against-originals the four record recipes)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--json", help="write the counts to this file")
    parser.add_argument("--against-originals", action="store_true",
                        help="count a step and a whole timed run of ours and of each "
                             "original's port, on the CPU under the CUDA stand-in")
    parser.add_argument("--references", default=None,
                        help="with --against-originals: the folder of original scripts "
                             "(default: ../shared/references)")
    parser.add_argument("--parity-batch-sizes", type=int, nargs="+", default=[2],
                        help="with --against-originals: the tiny batch sizes each side runs "
                             "at (a second one checks that a step's count does not depend "
                             "on it; default 2)")
    args = parser.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else list(argv)
    if args.against_originals:
        return against_originals(args)
    device = resolve_device(args.device)
    results = [count(r, device, args.batch_size, args.steps)
               for r in args.recipe or ["airbench94", "airbench94_muon"]]
    for r in results:
        extra = (f", averaging update {r['average_update_ops']:.0f} "
                 f"({r['average_update_gpu_launches']:.0f})" if "average_update_ops" in r else "")
        print(f"{r['recipe']}: {r['step_ops']:.0f} operators per training step "
              f"({r['step_gpu_launches']:.0f} GPU launches, a _foreach_ call one){extra}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
