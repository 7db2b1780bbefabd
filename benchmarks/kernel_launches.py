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
from dataclasses import dataclass

import torch
from torch.profiler import ProfilerActivity, profile

from fastcifar.recipes import get_recipe
from fastcifar.train.device import resolve_device
from fastcifar.train.loop import training_step
from fastcifar.train.setup import set_up_run


# Operators that only make tensor metadata (views, allocations, dispatch wrappers): no kernel.
METADATA = {"view", "as_strided", "_unsafe_view", "_reshape_alias", "reshape", "resolve_conj",
            "resolve_neg", "empty", "empty_strided", "empty_like", "t", "transpose", "permute",
            "expand", "unsqueeze", "squeeze", "select", "slice", "unbind", "detach", "alias",
            "lift_fresh", "to", "contiguous", "flatten", "view_as", "numpy_T", "mT", "split",
            "chunk", "narrow", "_to_copy", "matmul", "linear", "conv2d", "convolution",
            "_convolution", "result_type", "is_nonzero", "item", "_local_scalar_dense"}


# Left out of the tree: metadata operators, whose kernel descendants (a reshape's copy) hang
# from the next operator up instead, which changes no count; but not the conversions (to,
# _to_copy), which say that the copy under them converts a tensor.
SKIPPED = {f"aten::{name}" for name in METADATA - {"to", "_to_copy"}}


def is_kernel(name: str) -> bool:
    return name.startswith("aten::") and name[6:] not in METADATA


def is_foreach(name: str) -> bool:
    return name.startswith("aten::_foreach_")


@dataclass(slots=True)
class Operator:
    """One operator (or labelled range) the profiler recorded on the host, in a tree: the
    ranges that open inside it on its thread are its descendants."""

    name: str
    start: int  # ns
    end: int
    parent: int = -1  # index in the list, -1 for none
    kernel: bool = False  # a kernel operator (is_kernel)
    kernel_below: bool = False  # some descendant is a kernel operator
    inside_foreach: bool = False  # some ancestor is a _foreach_ operator

    @property
    def leaf_kernel(self) -> bool:
        """A kernel operator none of whose descendants is one (those would be the
        launches): a launch, counted per operator as a CPU runs them."""
        return self.kernel and not self.kernel_below

    @property
    def gpu_launch(self) -> bool:
        """As leaf_kernel, but each outermost _foreach_ call is one launch (its per-tensor
        operators on a CPU are none): the counting rule of every figure here."""
        if self.inside_foreach:
            return False
        return is_foreach(self.name) or self.leaf_kernel


def operator_tree(prof) -> list[Operator]:
    """The host operators and labelled ranges of a finished profile, sorted by start, each
    with its parent, less the SKIPPED ones. Read from the profiler's raw events: building
    torch's EventList for a whole run's half a million events takes minutes, this seconds."""
    cpu = torch.autograd.DeviceType.CPU
    rows = []
    for e in prof.profiler.kineto_results.events():
        name = e.name()
        if name not in SKIPPED and e.device_type() == cpu and not e.is_async():
            rows.append((e.start_ns(), -e.end_ns(), e.start_thread_id(), name))
    rows.sort()
    kinds: dict[str, tuple[bool, bool]] = {}  # name -> (is_kernel, is_foreach)
    ops: list[Operator] = []
    foreach: list[bool] = []
    stacks: dict[int, list[int]] = {}  # per thread, the open ranges
    for start, minus_end, thread, name in rows:
        kind = kinds.get(name)
        if kind is None:
            kind = kinds[name] = (is_kernel(name), is_foreach(name))
        stack = stacks.setdefault(thread, [])
        while stack and ops[stack[-1]].end <= start:
            stack.pop()
        parent = stack[-1] if stack else -1
        inside = parent >= 0 and (foreach[parent] or ops[parent].inside_foreach)
        stack.append(len(ops))
        ops.append(Operator(name, start, -minus_end, parent, kind[0], False, inside))
        foreach.append(kind[1])
    for op in reversed(ops):  # children come after their parent
        if op.parent >= 0 and (op.kernel or op.kernel_below):
            ops[op.parent].kernel_below = True
    return ops


def leaf_ops(prof) -> int:
    """The operators that would each be a kernel launch on a GPU, _foreach_ ones apart."""
    return sum(op.leaf_kernel for op in operator_tree(prof))


def gpu_launches(prof) -> int:
    """The launches on a GPU: leaf kernel operators, each outermost _foreach_ call once."""
    return sum(op.gpu_launch for op in operator_tree(prof))


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
    import launch_parity  # (beside this file; it builds on this module)
    from fastcifar.errors import InputError
    try:
        results = launch_parity.compare(args.references, args.recipe or launch_parity.RECIPES,
                                        args.parity_batch_sizes)
    except InputError as e:
        print(f"kernel_launches: error: {e}", file=sys.stderr)
        return e.exit_code
    print(launch_parity.report(results))
    results["command"] = "python benchmarks/kernel_launches.py " + " ".join(args.argv)
    results["commit"] = git_commit()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


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
